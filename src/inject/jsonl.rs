//! JSONL output: each row's members spliced, every other byte kept.

use super::*;

/// A top-level member of a JSON object line: its key and the byte range of its value.
pub(super) struct Member {
    pub(super) key: String,
    pub(super) value: std::ops::Range<usize>,
}

pub(super) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// End (exclusive) of the JSON string starting at `b[i] == b'"'`.
pub(super) fn string_end(b: &[u8], i: usize) -> Result<usize, String> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err("unterminated string".into())
}

/// End (exclusive) of the JSON value starting at `b[i]`.
pub(super) fn value_end(b: &[u8], i: usize) -> Result<usize, String> {
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(b'{') | Some(b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err("unterminated array or object".into())
        }
        Some(_) => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            if j == i {
                Err("missing value".into())
            } else {
                Ok(j)
            }
        }
        None => Err("missing value".into()),
    }
}

/// The top-level members of an object line and the position of its closing brace.
pub(super) fn members(line: &[u8]) -> Result<(Vec<Member>, usize, usize), String> {
    let open = skip_ws(line, 0);
    if line.get(open) != Some(&b'{') {
        return Err("line is not a JSON object".into());
    }
    let mut out = Vec::new();
    let mut i = skip_ws(line, open + 1);
    if line.get(i) == Some(&b'}') {
        return Ok((out, open, i));
    }
    loop {
        if line.get(i) != Some(&b'"') {
            return Err("expected a key".into());
        }
        let kend = string_end(line, i)?;
        let key: String = serde_json::from_slice(&line[i..kend]).map_err(|e| e.to_string())?;
        i = skip_ws(line, kend);
        if line.get(i) != Some(&b':') {
            return Err("expected `:`".into());
        }
        let vstart = skip_ws(line, i + 1);
        let vend = value_end(line, vstart)?;
        if out.iter().any(|m: &Member| m.key == key) {
            return Err(format!("key `{key}` appears twice"));
        }
        out.push(Member {
            key,
            value: vstart..vend,
        });
        i = skip_ws(line, vend);
        match line.get(i) {
            Some(b',') => i = skip_ws(line, i + 1),
            Some(b'}') => return Ok((out, open, i)),
            _ => return Err("expected `,` or `}`".into()),
        }
    }
}

/// Non-blank lines with their 1-based line numbers.
pub(super) type Lines = Vec<(usize, Vec<u8>)>;

pub(super) fn read_lines(path: &Path) -> Result<(Lines, String), IngestError> {
    let mut lines = ingest::JsonlLines::open(path)?;
    let mut out = Vec::new();
    while let Some(no) = lines.advance()? {
        out.push((no, lines.bytes().to_vec()));
    }
    let digest = lines.finish()?;
    Ok((out, digest.sha256))
}

pub(super) fn jsonl_has_key(path: &Path, key: &str) -> Result<bool, InjectError> {
    let (lines, _) = read_lines(path)?;
    for (no, line) in &lines {
        let (m, _, _) = members(line).map_err(|message| InjectError::Json {
            path: path.to_path_buf(),
            line: *no,
            message,
        })?;
        if m.iter().any(|m| m.key == key) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A label value as JSON, in the input's label kind.
pub(super) fn label_json(value: &str, kind: Option<LabelKind>) -> String {
    match kind {
        Some(LabelKind::Integer) | Some(LabelKind::Bool) => value.to_string(),
        _ => serde_json::Value::String(value.to_string()).to_string(),
    }
}

pub(super) fn jsonl_output(
    opts: &InjectOptions,
    table: &Table,
    rows: &[OutRow],
    values: &[String],
    copies: Option<&FileRecord>,
) -> Result<Vec<u8>, InjectError> {
    let (mut lines, sha) = read_lines(&opts.data)?;
    check_same_input(&opts.data, &table.digest.sha256, &sha)?;
    // the copies' source lines follow the data's, as their rows do in the table
    let data_lines = lines.len();
    if let (Some(c), Some(path)) = (copies, &opts.copies_from) {
        let (more, sha) = read_lines(path)?;
        check_same_input(path, &c.sha256, &sha)?;
        lines.extend(more);
    }
    if lines.len() != table.n_rows {
        return Err(InjectError::Config(format!(
            "{}: {} lines re-read but {} rows read before",
            opts.data.display(),
            lines.len(),
            table.n_rows
        )));
    }
    let gt = &opts.ground_truth_column;
    let mut out = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 20).sum());
    for r in rows {
        let (no, line) = &lines[r.src];
        let source = match &opts.copies_from {
            Some(p) if r.src >= data_lines => p,
            _ => &opts.data,
        };
        let err = |message: String| InjectError::Json {
            path: source.clone(),
            line: *no,
            message,
        };
        let (ms, open, close) = members(line).map_err(err)?;
        let span = |key: &str| ms.iter().find(|m| m.key == key).map(|m| m.value.clone());
        // (range, replacement), applied in order of position
        let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
        if let Some(t) = &r.text {
            let s = span(&opts.text_column)
                .ok_or_else(|| err(format!("no `{}` key", opts.text_column)))?;
            edits.push((s, serde_json::Value::String(t.clone()).to_string()));
        }
        if let Some(l) = r.label {
            let s = span(&opts.label_column)
                .ok_or_else(|| err(format!("no `{}` key", opts.label_column)))?;
            edits.push((s, label_json(&values[l], table.label_kind)));
        }
        if let (Some(c), Some(id_col)) = (&r.id_suffix, &opts.id_column) {
            let s = span(id_col).ok_or_else(|| err(format!("no `{id_col}` key")))?;
            let old: serde_json::Value =
                serde_json::from_slice(&line[s.clone()]).map_err(|e| err(e.to_string()))?;
            let serde_json::Value::String(id) = old else {
                return Err(err(format!(
                    "id `{old}` is not a string; duplicate-flip can only make string ids unique \
                     (omit --id-column to copy ids verbatim)"
                )));
            };
            edits.push((s, serde_json::Value::String(format!("{id}{c}")).to_string()));
        }
        for (key, value) in &r.cells {
            let s = span(key).ok_or_else(|| err(format!("no `{key}` key")))?;
            let json = serde_json::to_string(value).map_err(|e| err(e.to_string()))?;
            edits.push((s, json));
        }
        let truth = if r.truth { "true" } else { "false" };
        let gt_span = span(gt);
        if let Some(s) = gt_span.clone() {
            edits.push((s, truth.to_string()));
        }
        edits.sort_by_key(|(s, _)| s.start);
        let mut line_out = Vec::with_capacity(line.len() + 32);
        let mut at = 0;
        for (s, rep) in &edits {
            line_out.extend_from_slice(&line[at..s.start]);
            line_out.extend_from_slice(rep.as_bytes());
            at = s.end;
        }
        if gt_span.is_none() {
            // insert before the closing brace, after the last non-whitespace byte
            let inner_end = line[..close]
                .iter()
                .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .map_or(close, |p| p + 1);
            line_out.extend_from_slice(&line[at..inner_end]);
            let key = serde_json::Value::String(gt.clone()).to_string();
            if inner_end > open + 1 {
                line_out.extend_from_slice(b", ");
            }
            line_out.extend_from_slice(format!("{key}: {truth}").as_bytes());
            at = close;
        }
        line_out.extend_from_slice(&line[at..]);
        if !line_out.ends_with(b"\n") {
            line_out.push(b'\n');
        }
        out.extend_from_slice(&line_out);
    }
    Ok(out)
}
