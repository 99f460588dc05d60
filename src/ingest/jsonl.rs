//! JSONL: streamed lines, projected object parsing (shared with emit) and the reader.

use super::*;

pub(super) fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// True when a line is empty or only JSON whitespace; such lines are not rows.
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| is_json_whitespace(b))
}

/// Default longest JSONL line accepted, in bytes (terminator included): 64 MiB.
pub const DEFAULT_MAX_LINE_BYTES: u64 = 64 << 20;

static MAX_LINE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_LINE_BYTES);

/// Set the longest JSONL line every reader of this process accepts (`scan --max-line-bytes`).
/// A longer line is an error naming the file and line, found after reading at most `limit + 1`
/// of its bytes, so memory stays bounded whatever the file holds.
pub fn set_max_line_bytes(limit: u64) {
    MAX_LINE_BYTES.store(limit.max(1), Ordering::Relaxed);
}

/// The read buffer of [`JsonlLines::open_hashing_aside`]: each read is a block handed to the
/// hashing thread, and blocks are recycled, so a few of this size are all it takes.
const ASIDE_BLOCK: usize = 1 << 18;

/// The read buffer of [`JsonlLines::open_for_first_lines`]: 64 KiB.
const FIRST_LINES_BUFFER: usize = 1 << 16;

/// The longest JSONL line accepted (see [`set_max_line_bytes`]).
pub fn max_line_bytes() -> u64 {
    MAX_LINE_BYTES.load(Ordering::Relaxed)
}

/// Streams the non-blank lines of a JSONL file, or of a folder's JSONL files one after the
/// other (see [`super::folder`]), while hashing every byte. Line numbers and byte offsets are
/// those of the file being read ([`Self::path`]).
pub(crate) struct JsonlLines {
    reader: BufReader<HashingReader<std::io::Take<File>>>,
    /// The read buffer's size.
    capacity: usize,
    /// Hash on a thread of its own ([`HashingReader::hashing_aside`]).
    aside: bool,
    buf: Vec<u8>,
    line: usize,
    path: PathBuf,
    limit: u64,
    /// Bytes of the file before the next line.
    pos: u64,
    /// Bytes of the file before the current line.
    line_start: u64,
    /// The folder being read, when the input is one.
    folder: Option<FolderLines>,
}

/// Where a read of a folder's JSONL files is: its files, the one being read, the digests of
/// those read before and, for a range, the (file, byte) where the range ends.
struct FolderLines {
    dir: PathBuf,
    parts: Vec<(String, PathBuf)>,
    current: usize,
    digests: Vec<PartDigest>,
    end: Option<(usize, u64)>,
}

/// Where a block of a JSONL table's rows begins: the file it is in (its place among a
/// folder's files; 0 for one file), the byte its first row's line starts at in that file, that
/// row's number in the table (0-based) and its line's number in the file (1-based). A
/// partitioned scan reads the rows of consecutive blocks from these places ([`line_blocks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LineBlock {
    /// The file of a folder the block starts in, from 0.
    #[serde(default)]
    pub file: usize,
    /// Byte offset of the block's first line in its file.
    pub byte: u64,
    /// Its row's number in the table, from 0.
    pub row: usize,
    /// Its line's number in its file, from 1.
    pub line: usize,
}

/// Blocks of equal numbers of rows of a JSONL file or folder (the last one shorter), at most
/// `max_blocks` of them and as many as that allows, found in one pass that hashes the input:
/// the block starts, the input's digest and its row count. Memory is O(`max_blocks`): rows are
/// taken one block each, and whenever the blocks would pass `max_blocks` every other start is
/// dropped and the block length doubles.
pub fn line_blocks(
    path: &Path,
    max_blocks: usize,
) -> Result<(Vec<LineBlock>, FileDigest, usize), IngestError> {
    let max_blocks = max_blocks.max(1);
    let mut lines = JsonlLines::open(path)?;
    let (mut blocks, mut every, mut rows) = (Vec::new(), 1usize, 0usize);
    while let Some(line) = lines.advance()? {
        if rows.is_multiple_of(every) {
            if blocks.len() == max_blocks {
                // blocks of twice the rows: the starts at even multiples stay
                let mut k = 0usize;
                blocks.retain(|_| {
                    k += 1;
                    k % 2 == 1
                });
                every *= 2;
            }
            if rows.is_multiple_of(every) {
                blocks.push(LineBlock {
                    file: lines.file(),
                    byte: lines.line_start,
                    row: rows,
                    line,
                });
            }
        }
        rows += 1;
    }
    let digest = lines.finish()?;
    Ok((blocks, digest, rows))
}

/// A reader of `path` from byte `from` up to `len` bytes, hashing what it reads (on a thread
/// of its own with `aside`) through a buffer of `capacity` bytes.
fn open_part(
    path: &Path,
    from: u64,
    len: u64,
    capacity: usize,
    aside: bool,
) -> Result<BufReader<HashingReader<std::io::Take<File>>>, IngestError> {
    use std::io::Seek;
    let mut file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    if from > 0 {
        file.seek(std::io::SeekFrom::Start(from))
            .map_err(|e| IngestError::io(path, e))?;
    }
    let part = file.take(len);
    Ok(BufReader::with_capacity(
        capacity,
        if aside {
            HashingReader::hashing_aside(part)
        } else {
            HashingReader::new(part)
        },
    ))
}

impl JsonlLines {
    pub(crate) fn open(path: &Path) -> Result<Self, IngestError> {
        Self::open_with_limit(path, max_line_bytes())
    }

    /// As [`Self::open`], through a small buffer: for reading the first lines only (a whole
    /// file's read takes [`HASH_BUFFER`] bytes at a time, and filling that buffer once costs
    /// more than the first line of most files).
    pub(crate) fn open_for_first_lines(path: &Path) -> Result<Self, IngestError> {
        Self::open_at(
            path,
            None,
            None,
            max_line_bytes(),
            FIRST_LINES_BUFFER,
            false,
        )
    }

    /// As [`Self::open`], refusing lines longer than `limit` bytes.
    pub(crate) fn open_with_limit(path: &Path, limit: u64) -> Result<Self, IngestError> {
        Self::open_at(path, None, None, limit, HASH_BUFFER, false)
    }

    /// As [`Self::open`], hashing on a thread of its own while the lines are used
    /// ([`HashingReader::hashing_aside`]).
    pub(crate) fn open_hashing_aside(path: &Path) -> Result<Self, IngestError> {
        Self::open_at(path, None, None, max_line_bytes(), ASIDE_BLOCK, true)
    }

    /// The lines from `from` up to `end`, (file, byte), the end of the input without one;
    /// only those bytes are read (and hashed: the digest is of the range).
    pub(crate) fn open_range(
        path: &Path,
        from: &LineBlock,
        end: Option<(usize, u64)>,
    ) -> Result<Self, IngestError> {
        Self::open_at(path, Some(from), end, max_line_bytes(), HASH_BUFFER, false)
    }

    fn open_at(
        path: &Path,
        from: Option<&LineBlock>,
        end: Option<(usize, u64)>,
        limit: u64,
        capacity: usize,
        aside: bool,
    ) -> Result<Self, IngestError> {
        let (file, byte, line) =
            from.map_or((0, 0, 0), |b| (b.file, b.byte, b.line.saturating_sub(1)));
        let (part, folder) =
            if path.is_dir() {
                let (format, parts) = folder_parts(path)?;
                if format != Format::Jsonl {
                    return Err(IngestError::UnsupportedFormat {
                        path: path.to_path_buf(),
                        message: format!("a folder of {format} files read as JSONL"),
                    });
                }
                let part = parts.get(file).map(|p| p.1.clone()).ok_or_else(|| {
                    IngestError::InvalidValue {
                        path: path.to_path_buf(),
                        row: None,
                        column: None,
                        message: format!(
                            "file {file} of the folder asked for; it holds {}",
                            parts.len()
                        ),
                    }
                })?;
                (
                    part,
                    Some(FolderLines {
                        dir: path.to_path_buf(),
                        parts,
                        current: file,
                        digests: Vec::new(),
                        end,
                    }),
                )
            } else {
                (path.to_path_buf(), None)
            };
        let len = match end {
            Some((f, e)) if f == file => e.saturating_sub(byte),
            _ => u64::MAX,
        };
        Ok(JsonlLines {
            reader: open_part(&part, byte, len, capacity, aside)?,
            capacity,
            aside,
            buf: Vec::new(),
            line,
            path: part,
            limit: limit.max(1),
            pos: byte,
            line_start: byte,
            folder,
        })
    }

    /// The file being read (a folder's file, for a folder).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The place among a folder's files of the file being read (0 for one file).
    pub(crate) fn file(&self) -> usize {
        self.folder.as_ref().map_or(0, |f| f.current)
    }

    /// Go on to the folder's next file, if the read goes on there: the file read so far is
    /// hashed to its end and its digest kept.
    fn next_part(&mut self) -> Result<bool, IngestError> {
        let Some(f) = self.folder.as_mut() else {
            return Ok(false);
        };
        let next = f.current + 1;
        let last = f
            .end
            .map_or(f.parts.len(), |(file, _)| (file + 1).min(f.parts.len()));
        if next >= last {
            return Ok(false);
        }
        let Some((_, path)) = f.parts.get(next).cloned() else {
            return Ok(false);
        };
        let len = match f.end {
            Some((file, e)) if file == next => e,
            _ => u64::MAX,
        };
        let reader = std::mem::replace(
            &mut self.reader,
            open_part(&path, 0, len, self.capacity, self.aside)?,
        );
        let done = reader.into_inner().finish(&self.path)?;
        f.digests.push(PartDigest {
            name: f.parts[f.current].0.clone(),
            bytes: done.bytes,
            sha256: done.sha256,
        });
        f.current = next;
        self.path = path;
        self.line = 0;
        self.pos = 0;
        self.line_start = 0;
        Ok(true)
    }

    /// Advance to the next non-blank line; returns its 1-based line number in its file, or
    /// `None` at the end of the input. The line's bytes (terminator included) are then in
    /// [`Self::bytes`].
    pub(crate) fn advance(&mut self) -> Result<Option<usize>, IngestError> {
        loop {
            self.buf.clear();
            // at most limit + 1 bytes, so a longer line is known without reading it all
            let n = (&mut self.reader)
                .take(self.limit.saturating_add(1))
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| IngestError::io(&self.path, e))?;
            if n == 0 {
                if self.next_part()? {
                    continue;
                }
                return Ok(None);
            }
            self.line_start = self.pos;
            self.pos += n as u64;
            self.line += 1;
            if n as u64 > self.limit {
                return Err(IngestError::Json {
                    path: self.path.clone(),
                    line: self.line,
                    message: format!(
                        "line is longer than {} bytes, the longest line accepted (raise it \
                         with --max-line-bytes)",
                        self.limit
                    ),
                });
            }
            if !is_blank(&self.buf) {
                return Ok(Some(self.line));
            }
        }
    }

    /// The current line's bytes, terminator included.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Hash any remaining bytes and return the input's digest (a folder's: that of its
    /// manifest, every file hashed to its end).
    pub(crate) fn finish(mut self) -> Result<FileDigest, IngestError> {
        while self.next_part()? {}
        let path = self.path;
        let hashing = self.reader.into_inner();
        let last = hashing.finish(&path)?;
        match self.folder {
            None => Ok(last),
            Some(mut f) => {
                f.digests.push(PartDigest {
                    name: f.parts[f.current].0.clone(),
                    bytes: last.bytes,
                    sha256: last.sha256,
                });
                Ok(folder_digest(&f.dir, f.digests))
            }
        }
    }
}

/// A map key, borrowed from the input when it has no escapes.
pub(super) struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Deserializes a JSON object keeping only the values of `wanted` keys (others are skipped
/// without being built). A wanted key present twice is an error.
pub(super) struct ProjectedObject<'w> {
    wanted: &'w [&'w str],
}

impl<'de> DeserializeSeed<'de> for ProjectedObject<'_> {
    type Value = Vec<Option<Value>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ProjectedObject<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<Option<Value>> = vec![None; self.wanted.len()];
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.wanted.iter().position(|w| *w == key.0) {
                Some(i) => {
                    if out[i].is_some() {
                        return Err(de::Error::custom(format!(
                            "duplicate key \"{}\" in the same object",
                            key.0
                        )));
                    }
                    out[i] = Some(map.next_value::<Value>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Parse one JSONL line as an object, extracting only the `wanted` keys.
pub(crate) fn parse_projected(
    line: &[u8],
    wanted: &[&str],
) -> Result<Vec<Option<Value>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let out = ProjectedObject { wanted }.deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// Turn a serde_json error into a message without serde_json's "at line 1 column N" suffix
/// (every line is parsed on its own, so its line would always be 1).
pub(crate) fn json_message(err: &serde_json::Error, line: &[u8]) -> String {
    let full = err.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => &full,
    };
    // the line is parsed with its line break, so an error at its end (a truncated line) is
    // placed by serde_json on the next line, column 0: that is the end of this one
    let at = if err.line() > 1 {
        line.trim_ascii_end().len()
    } else {
        err.column()
    };
    let mut out = format!("invalid JSON: {msg} (at byte {at} of the line)");
    if msg.starts_with("recursion limit exceeded") {
        out.push_str("; arrays and objects nested more than 128 deep are refused");
    }
    if line.starts_with(b"\xEF\xBB\xBF") {
        out.push_str("; the line starts with a UTF-8 byte-order mark, which is not accepted");
    }
    out
}

/// The keys of a JSONL object, for "available columns" messages.
pub(super) fn object_keys(line: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Map<String, Value>>(line)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The rows of a JSONL file, or with `range` only those of its lines from a block's start up
/// to a byte (numbered from the block's row and line; the summary's digest is then of the
/// range only, and its row count the row after the last one read).
pub(super) fn read_jsonl<E: From<IngestError>>(
    path: &Path,
    spec: &ColumnSpec,
    batch_rows: usize,
    range: Option<(&LineBlock, Option<(usize, u64)>)>,
    sink: &mut dyn FnMut(Batch) -> Result<(), E>,
) -> Result<ReadSummary, E> {
    let (roles, mut names) = requested(spec);
    // instruction layouts: their keys (or the fields' top-level keys), after the columns of
    // other roles; a key that is also such a column is read once
    let (layout_keys, _) = spec.rows.keys();
    for k in &layout_keys {
        if !names.contains(k) {
            names.push(k);
        }
    }
    let layout_slots: Vec<usize> = layout_keys
        .iter()
        .map(|k| names.iter().position(|n| n == k).unwrap_or(0))
        .collect();
    let quarantine = spec.invalid == InvalidPolicy::Quarantine;
    let turns = spec.rows.has_responses();
    let mut lines = match range {
        Some((from, end)) => JsonlLines::open_range(path, from, end)?,
        None => JsonlLines::open(path)?,
    };
    let mut batcher = Batcher::new(spec, path, batch_rows, sink);
    let mut n_rows = range.map_or(0, |(from, _)| from.row);
    batcher.start_at(n_rows);
    while let Some(line_no) = lines.advance()? {
        let bytes = lines.bytes();
        // errors name the file the line is in (a folder's file)
        let path = lines.path();
        let row = Some(RowRef::Line(line_no));
        // the first problem of the row: (what, error)
        let mut bad: Option<(String, IngestError)> = None;
        match parse_projected(bytes, &names) {
            Err(e) => {
                let err = IngestError::Json {
                    path: path.to_path_buf(),
                    line: line_no,
                    message: json_message(&e, bytes),
                };
                if !quarantine {
                    return Err(err.into());
                }
                let what = if std::str::from_utf8(bytes).is_err() {
                    "utf8"
                } else {
                    "json"
                };
                batcher.out.push_row_placeholder(&roles, n_rows, turns);
                bad = Some((what.to_string(), err));
            }
            Ok(values) => {
                for (role, name) in &roles {
                    let slot = names.iter().position(|n| n == name).unwrap_or(0);
                    let result = match values.get(slot).and_then(Option::as_ref) {
                        Some(v) => json_cell(&mut batcher.out, *role, v, RowRef::Line(line_no))
                            .map_err(|(problem, m)| {
                                (
                                    format!("{}-{problem}", role.name()),
                                    IngestError::value(path, row, name, m),
                                )
                            }),
                        None => Err((
                            format!("{}-missing", role.name()),
                            IngestError::MissingColumn {
                                path: path.to_path_buf(),
                                row,
                                column: name.to_string(),
                                available: object_keys(bytes),
                            },
                        )),
                    };
                    if let Err((what, err)) = result {
                        if !quarantine {
                            return Err(err.into());
                        }
                        batcher.out.push_role_placeholder(*role, n_rows);
                        bad.get_or_insert((what, err));
                    }
                }
                if turns {
                    let layout: Vec<Option<&Value>> = layout_slots
                        .iter()
                        .map(|&i| values.get(i).and_then(Option::as_ref))
                        .collect();
                    match spec.rows.read(&layout) {
                        Ok(turn) => batcher.out.push_turn(turn),
                        Err(e) => {
                            let what = e.what().to_string();
                            let err = e.at(path, row);
                            if !quarantine {
                                return Err(err.into());
                            }
                            batcher.out.push_turn_placeholder();
                            bad.get_or_insert((what, err));
                        }
                    }
                }
            }
        }
        if let Some((what, err)) = bad {
            batcher.invalid(InvalidRow {
                row: n_rows,
                at: RowRef::Line(line_no),
                what,
                message: err.to_string(),
            });
        }
        n_rows += 1;
        batcher.rows_read(n_rows)?;
    }
    let digest = lines.finish()?;
    batcher.finish(Format::Jsonl, digest, n_rows)
}

/// What is wrong with a cell: a short name for an invalid row's reason (`null`, `type`,
/// `nonfinite`, `dims`), and the message without location.
pub(super) type CellProblem = (&'static str, String);

/// Store one JSON value of a requested column; on error nothing is stored.
pub(super) fn json_cell(
    out: &mut Collector,
    role: Role,
    value: &Value,
    row: RowRef,
) -> Result<(), CellProblem> {
    let kind_of = |v: &Value| if v.is_null() { "null" } else { "type" };
    match role {
        Role::Text => match value {
            Value::String(s) => {
                if let Some(t) = out.texts.as_mut() {
                    t.push(s.clone());
                }
                Ok(())
            }
            other => Err((
                kind_of(other),
                format!("text must be a string, found {}", json_kind(other)),
            )),
        },
        Role::Label => {
            let (s, kind) = match value {
                Value::String(s) => (s.clone(), LabelKind::String),
                Value::Bool(b) => (b.to_string(), LabelKind::Bool),
                Value::Number(n) if n.is_i64() || n.is_u64() => (n.to_string(), LabelKind::Integer),
                Value::Number(n) => {
                    // a whole number past 64 bits reaches here as a float
                    let what = if n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                        "is an integer beyond 64 bits"
                    } else {
                        "is not an integer"
                    };
                    return Err((
                        "type",
                        format!(
                            "label {n} {what}; labels must be integers of at most 64 bits, \
                             strings or booleans"
                        ),
                    ));
                }
                other => {
                    return Err((
                        kind_of(other),
                        format!(
                            "label must be an integer, a string or a boolean, found {}",
                            json_kind(other)
                        ),
                    ))
                }
            };
            out.push_label(s, kind).map_err(|m| ("type", m))
        }
        Role::Id => {
            let s = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err((
                        kind_of(other),
                        format!(
                            "id must be a string, number or boolean, found {}",
                            json_kind(other)
                        ),
                    ))
                }
            };
            if let Some(ids) = out.ids.as_mut() {
                ids.push(s);
            }
            Ok(())
        }
        Role::GroundTruth => {
            let b = match value {
                Value::Bool(b) => *b,
                Value::Number(n) if n.as_u64() == Some(0) => false,
                Value::Number(n) if n.as_u64() == Some(1) => true,
                Value::String(s) if s == "true" => true,
                Value::String(s) if s == "false" => false,
                other => {
                    return Err((
                        kind_of(other),
                        format!(
                            "ground truth must be a boolean, 0/1 or \"true\"/\"false\", found {}",
                            render_json(other)
                        ),
                    ))
                }
            };
            if let Some(g) = out.ground_truth.as_mut() {
                g.push(b);
            }
            Ok(())
        }
        Role::Embedding => {
            let items = match value {
                Value::Array(items) => items,
                other => {
                    return Err((
                        kind_of(other),
                        format!(
                            "embedding must be an array of numbers, found {}",
                            json_kind(other)
                        ),
                    ))
                }
            };
            let Some(data) = out.embeddings.as_mut() else {
                return Ok(());
            };
            let start = data.len();
            let pushed = (|| {
                for (k, item) in items.iter().enumerate() {
                    match item.as_f64() {
                        Some(v) => data.push(finite(v, k).map_err(|m| ("nonfinite", m))?),
                        None => {
                            return Err((
                                "type",
                                format!(
                                    "embedding element {k} (0-based) is {}, expected a number",
                                    json_kind(item)
                                ),
                            ))
                        }
                    }
                }
                Ok(())
            })();
            let result =
                pushed.and_then(|()| out.check_dim(items.len(), row).map_err(|m| ("dims", m)));
            if result.is_err() {
                if let Some(data) = out.embeddings.as_mut() {
                    data.truncate(start);
                }
            }
            result
        }
    }
}

/// A short rendering of a JSON value for messages.
pub(super) fn render_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(40).collect();
        format!("{cut}…")
    } else {
        s
    }
}
