//! `bom.cdx.json`: a [CycloneDX 1.6](https://cyclonedx.org/specification/overview/) bill of
//! materials of a gated dataset, for supply-chain tooling (Dependency-Track, cyclonedx-cli, …).
//!
//! The document is a pure function of `report.json`: [`document`] takes the parsed report and
//! the SHA-256 of its bytes, so `poisongate bom DIR` re-emits, from an existing folder, the very
//! bytes `scan --out DIR` wrote. It holds no timestamp; its serial number is derived from the
//! report's digest ([`serial_number`]), so `--reproducible` scans give identical documents.
//!
//! What it names (field by field in `docs/provenance.md`):
//! * `metadata.component`: the clean output, a `data` component whose `pedigree` names the input
//!   it was derived from; `metadata.tools`: poisongate with its version;
//! * `components`: the input dataset, the quarantine and duplicates outputs (`data`), the
//!   embeddings file (`data`) or the model folder (`machine-learning-model`, one nested `file`
//!   component per model file), each with its SHA-256 and, as `poisongate:` properties, its path,
//!   size, rows and format;
//! * `formulation`: one workflow, the gate: its inputs (the files, the settings digest and seed
//!   as parameters), one task per detector (code, version, rows flagged), the reconciliation and
//!   the verdict, and its outputs;
//! * `externalReferences`: `report.json` (with its SHA-256), `provenance.intoto.json` (which
//!   names this document among its subjects, so it cannot carry that file's digest) and
//!   `report.html`, as paths relative to the output folder.
//!
//! Every `bom-ref` is a fixed name (`input:data`, `output:clean`, `task:SPEC001`, …), so two
//! documents of the same folder layout can be compared reference by reference.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// File name of the document inside the output folder.
pub const FILE_NAME: &str = "bom.cdx.json";

/// The CycloneDX specification version written.
pub const SPEC_VERSION: &str = "1.6";

/// Prefix of every property name poisongate writes (CycloneDX property namespaces).
pub const PROPERTY_PREFIX: &str = "poisongate:";

/// The `bom-ref` of the tool component (poisongate itself).
pub const TOOL_REF: &str = "poisongate";

/// The `bom-ref` of the workflow recording the gate.
pub const WORKFLOW_REF: &str = "workflow:gate";

/// The `bom-ref` of the task recording the reconciliation.
pub const RECONCILE_REF: &str = "task:reconcile";

/// The `bom-ref` of the task recording the verdict.
pub const VERDICT_REF: &str = "task:verdict";

/// Why a document could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BomError {
    /// `report.json` could not be read (the reason is the error's source).
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `report.json` is not JSON (the parser's message is the error's source).
    #[error("{} is not valid JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The report lacks a field the document needs, or has one of the wrong type.
    #[error("report.json: {0}")]
    Malformed(String),
}

/// The `bom-ref` of the input of `role` (`data`, `embeddings` or `model`).
pub fn input_ref(role: &str) -> String {
    format!("input:{role}")
}

/// The `bom-ref` of the output of `role` (`clean`, `quarantine` or `duplicates`).
pub fn output_ref(role: &str) -> String {
    format!("output:{role}")
}

/// The `bom-ref` of the task recording the detector `code`.
pub fn detector_ref(code: &str) -> String {
    format!("task:{code}")
}

/// The serial number: a `urn:uuid:` made of the first 128 bits of `report_sha256` with the
/// version (8, RFC 9562's layout for identifiers of one's own) and variant bits set. Lower-case
/// hex; digits that are not hex count as 0.
pub fn serial_number(report_sha256: &str) -> String {
    let mut b = [0u8; 16];
    let hex = report_sha256.as_bytes();
    for (i, byte) in b.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).unwrap_or(b"00");
        *byte = std::str::from_utf8(pair)
            .ok()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .unwrap_or(0);
    }
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Typed reads from the report, with errors naming the field.
struct Fields;

impl Fields {
    fn get<'v>(v: &'v Value, at: &str, key: &str) -> Result<&'v Value, BomError> {
        v.get(key)
            .ok_or_else(|| BomError::Malformed(format!("missing field `{at}{key}`")))
    }
    fn str<'v>(v: &'v Value, at: &str, key: &str) -> Result<&'v str, BomError> {
        Self::get(v, at, key)?
            .as_str()
            .ok_or_else(|| BomError::Malformed(format!("field `{at}{key}` is not a string")))
    }
    fn u64(v: &Value, at: &str, key: &str) -> Result<u64, BomError> {
        Self::get(v, at, key)?.as_u64().ok_or_else(|| {
            BomError::Malformed(format!("field `{at}{key}` is not a non-negative integer"))
        })
    }
    fn array<'v>(v: &'v Value, at: &str, key: &str) -> Result<&'v Vec<Value>, BomError> {
        Self::get(v, at, key)?
            .as_array()
            .ok_or_else(|| BomError::Malformed(format!("field `{at}{key}` is not an array")))
    }
    /// A SHA-256 as CycloneDX wants it: 64 hex digits.
    fn sha256<'v>(v: &'v Value, at: &str) -> Result<&'v str, BomError> {
        let s = Self::str(v, at, "sha256")?;
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(s)
        } else {
            Err(BomError::Malformed(format!(
                "field `{at}sha256` is not a SHA-256 (64 hex digits): `{s}`"
            )))
        }
    }
}

/// A file of the report (`inputs[]` or `outputs[]`).
struct FileEntry<'a> {
    role: &'a str,
    path: &'a str,
    sha256: &'a str,
    bytes: u64,
    rows: u64,
    dims: Option<u64>,
}

impl<'a> FileEntry<'a> {
    fn read(v: &'a Value, at: &str) -> Result<FileEntry<'a>, BomError> {
        Ok(FileEntry {
            role: Fields::str(v, at, "role")?,
            path: Fields::str(v, at, "path")?,
            sha256: Fields::sha256(v, at)?,
            bytes: Fields::u64(v, at, "bytes")?,
            rows: Fields::u64(v, at, "rows")?,
            dims: v.get("dims").and_then(Value::as_u64),
        })
    }

    /// The last path component (the whole path when it has none).
    fn name(&self) -> String {
        Path::new(self.path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.to_string())
    }

    /// `jsonl`, `parquet`, `npy` or `safetensors`, from the extension.
    fn format(&self) -> Option<&'static str> {
        let ext = Path::new(self.path).extension()?.to_str()?;
        ["jsonl", "parquet", "npy", "safetensors"]
            .into_iter()
            .find(|f| ext.eq_ignore_ascii_case(f))
    }
}

/// `{name: "poisongate:<key>", value}`.
fn property(key: &str, value: impl ToString) -> Value {
    json!({"name": format!("{PROPERTY_PREFIX}{key}"), "value": value.to_string()})
}

fn sha256_hash(hex: &str) -> Value {
    json!([{"alg": "SHA-256", "content": hex.to_ascii_lowercase()}])
}

/// A `data` component for a dataset file of the report.
fn data_component(f: &FileEntry<'_>, bom_ref: &str, extra: Vec<Value>) -> Value {
    let mut props = vec![property("role", f.role), property("path", f.path)];
    if let Some(fmt) = f.format() {
        props.push(property("format", fmt));
    }
    props.push(property("rows", f.rows));
    props.push(property("bytes", f.bytes));
    if let Some(d) = f.dims {
        props.push(property("dims", d));
    }
    props.extend(extra);
    json!({
        "type": "data",
        "bom-ref": bom_ref,
        "name": f.name(),
        "hashes": sha256_hash(f.sha256),
        "data": [{"type": "dataset", "name": f.name()}],
        "properties": props,
    })
}

/// The `machine-learning-model` component of a `--model` scan: the folder, its files nested as
/// `file` components, and how it was used (`settings.model`).
fn model_component(files: &[&FileEntry<'_>], settings_model: Option<&Value>) -> Value {
    let dir = settings_model
        .and_then(|m| m.get("dir"))
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .unwrap_or_else(|| common_parent(files.iter().map(|f| Path::new(f.path))));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let nested: Vec<Value> = files
        .iter()
        .map(|f| {
            let rel = Path::new(f.path)
                .strip_prefix(&dir)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| f.path.to_string());
            json!({
                "type": "file",
                "bom-ref": format!("{}:{rel}", input_ref("model")),
                "name": rel,
                "hashes": sha256_hash(f.sha256),
                "properties": [property("path", f.path), property("bytes", f.bytes)],
            })
        })
        .collect();
    let mut props = vec![property("role", "model"), property("path", dir.display())];
    let mut card = Map::new();
    if let Some(Value::Object(m)) = settings_model {
        for (k, v) in m {
            if k == "dir" || k == "files" {
                continue;
            }
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            props.push(property(k, text));
        }
        if let Some(arch) = m.get("architecture").and_then(Value::as_str) {
            card.insert(
                "modelParameters".into(),
                json!({
                    "task": "sentence embedding",
                    "modelArchitecture": arch,
                    "inputs": [{"format": "string"}],
                    "outputs": [{"format": "vector"}],
                }),
            );
        }
    }
    let mut c = json!({
        "type": "machine-learning-model",
        "bom-ref": input_ref("model"),
        "name": name,
    });
    if let Some(o) = c.as_object_mut() {
        if !card.is_empty() {
            o.insert("modelCard".into(), Value::Object(card));
        }
        o.insert("components".into(), Value::from(nested));
        o.insert("properties".into(), Value::from(props));
    }
    c
}

/// The deepest folder holding every path (empty when they share none).
fn common_parent<'p>(paths: impl Iterator<Item = &'p Path>) -> PathBuf {
    let mut common: Option<PathBuf> = None;
    for p in paths {
        let parent = p.parent().unwrap_or(Path::new(""));
        common = Some(match common {
            None => parent.to_path_buf(),
            Some(c) => c
                .components()
                .zip(parent.components())
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    common.unwrap_or_default()
}

/// What each output holds, for its `pedigree.notes`.
fn derivation(role: &str) -> &'static str {
    match role {
        "clean" => "the input's rows that no detector flagged (with --dedup: that repeat no earlier clean row), in input order, values unchanged",
        "quarantine" => "the input's rows that a detector flagged, in input order, values unchanged, with the added columns poisongate_score and poisongate_reasons",
        "duplicates" => "the input's plain redundant rows (--dedup), in input order, values unchanged, with the added column poisongate_duplicate_of",
        _ => "rows of the input",
    }
}

/// The CycloneDX 1.6 document for a parsed `report.json` whose bytes have the SHA-256
/// `report_sha256` (lower-case hex).
pub fn document(report: &Value, report_sha256: &str) -> Result<Value, BomError> {
    let tool = Fields::get(report, "", "tool")?;
    let tool_name = Fields::str(tool, "tool.", "name")?;
    let tool_version = Fields::str(tool, "tool.", "version")?;
    let settings = report.get("settings").unwrap_or(&Value::Null);
    let settings_digest = Fields::str(report, "", "settings_digest")?;

    // inputs: one component per data or embeddings file, one for the model folder
    let inputs: Vec<FileEntry<'_>> = Fields::array(report, "", "inputs")?
        .iter()
        .enumerate()
        .map(|(i, v)| FileEntry::read(v, &format!("inputs[{i}].")))
        .collect::<Result<_, _>>()?;
    let data = inputs
        .iter()
        .find(|f| f.role == "data")
        .ok_or_else(|| BomError::Malformed("`inputs` has no entry of role `data`".into()))?;
    let mut components = Vec::new();
    let mut input_refs = Vec::new();
    let row_format = settings
        .get("format")
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .map(|n| vec![property("row_format", n)])
        .unwrap_or_default();
    components.push(data_component(data, &input_ref("data"), row_format));
    input_refs.push(input_ref("data"));
    let mut seen_roles = vec!["data"];
    for f in &inputs {
        if f.role == "data" || f.role == "model" {
            continue;
        }
        // one component per role; a second file of the same role gets its index
        let r = if seen_roles.contains(&f.role) {
            format!("{}:{}", input_ref(f.role), input_refs.len())
        } else {
            input_ref(f.role)
        };
        seen_roles.push(f.role);
        components.push(data_component(f, &r, Vec::new()));
        input_refs.push(r);
    }
    let model_files: Vec<&FileEntry<'_>> = inputs.iter().filter(|f| f.role == "model").collect();
    if !model_files.is_empty() {
        components.push(model_component(&model_files, settings.get("model")));
        input_refs.push(input_ref("model"));
    }

    // outputs: the clean one is what the document is about
    let ancestor = json!({
        "type": "data",
        "name": data.name(),
        "hashes": sha256_hash(data.sha256),
        "properties": [property("path", data.path)],
    });
    let mut clean = None;
    let mut output_refs = Vec::new();
    for (i, v) in Fields::array(report, "", "outputs")?.iter().enumerate() {
        let f = FileEntry::read(v, &format!("outputs[{i}]."))?;
        let r = output_ref(f.role);
        let mut c = data_component(&f, &r, Vec::new());
        if let Some(o) = c.as_object_mut() {
            o.insert(
                "pedigree".into(),
                json!({"ancestors": [ancestor.clone()], "notes": derivation(f.role)}),
            );
        }
        output_refs.push(r);
        if f.role == "clean" && clean.is_none() {
            clean = Some(c);
        } else {
            components.push(c);
        }
    }
    let clean = clean
        .ok_or_else(|| BomError::Malformed("`outputs` has no entry of role `clean`".into()))?;

    // the gate
    let mut tasks = Vec::new();
    let mut detector_refs = Vec::new();
    for (i, d) in Fields::array(report, "", "detectors")?.iter().enumerate() {
        let at = format!("detectors[{i}].");
        let code = Fields::str(d, &at, "code")?;
        let name = Fields::str(d, &at, "name")?;
        let version = Fields::u64(d, &at, "version")?;
        let flagged = Fields::u64(d, &at, "flagged")?;
        let r = detector_ref(code);
        tasks.push(json!({
            "bom-ref": r,
            "uid": code,
            "name": format!("{code} {name} v{version}"),
            "taskTypes": ["scan"],
            "properties": [
                property("code", code),
                property("name", name),
                property("version", version),
                property("flagged", flagged),
            ],
        }));
        detector_refs.push(r);
    }
    let rec = Fields::get(report, "", "reconciliation")?;
    let mut rec_props = Vec::new();
    for key in ["input_rows", "clean_rows", "quarantined_rows"] {
        rec_props.push(property(key, Fields::u64(rec, "reconciliation.", key)?));
    }
    // absent in reports written before --dedup existed
    let dup_rows = match rec.get("duplicate_rows") {
        None => 0,
        Some(_) => Fields::u64(rec, "reconciliation.", "duplicate_rows")?,
    };
    rec_props.push(property("duplicate_rows", dup_rows));
    // absent in reports written before --invalid-rows existed
    let invalid_rows = match rec.get("invalid_rows") {
        None => 0,
        Some(_) => Fields::u64(rec, "reconciliation.", "invalid_rows")?,
    };
    rec_props.push(property("invalid_rows", invalid_rows));
    let balanced = Fields::get(rec, "reconciliation.", "balanced")?
        .as_bool()
        .ok_or_else(|| {
            BomError::Malformed("field `reconciliation.balanced` is not a boolean".into())
        })?;
    rec_props.push(property("balanced", balanced));
    tasks.push(json!({
        "bom-ref": RECONCILE_REF,
        "uid": "reconcile",
        "name": "reconciliation: input rows = clean + quarantined + invalid + duplicate rows, counted from what was written",
        "taskTypes": ["test"],
        "properties": rec_props,
    }));
    let verdict = Fields::get(report, "", "verdict")?;
    let status = Fields::str(verdict, "verdict.", "status")?;
    let mut verdict_props = vec![property("status", status)];
    for key in ["quarantined_fraction", "max_quarantine_fraction"] {
        let v = Fields::get(verdict, "verdict.", key)?;
        if !v.is_number() {
            return Err(BomError::Malformed(format!(
                "field `verdict.{key}` is not a number"
            )));
        }
        verdict_props.push(property(key, v));
    }
    tasks.push(json!({
        "bom-ref": VERDICT_REF,
        "uid": "verdict",
        "name": "verdict: the gate fails when the quarantined fraction exceeds the policy",
        "taskTypes": ["test"],
        "properties": verdict_props,
    }));
    let mut task_deps = Vec::new();
    let with_deps = |r: &str, on: &[String]| {
        let mut d = json!({"ref": r});
        if let (false, Some(o)) = (on.is_empty(), d.as_object_mut()) {
            o.insert("dependsOn".into(), json!(on));
        }
        d
    };
    task_deps.push(with_deps(RECONCILE_REF, &detector_refs));
    let mut before_verdict = detector_refs.clone();
    before_verdict.push(RECONCILE_REF.to_string());
    task_deps.push(with_deps(VERDICT_REF, &before_verdict));

    let seed = settings
        .get("seed")
        .map_or_else(|| "null".to_string(), Value::to_string);
    let mut wf_inputs: Vec<Value> = input_refs
        .iter()
        .map(|r| json!({"resource": {"ref": r}}))
        .collect();
    wf_inputs.push(json!({"parameters": [
        {"name": "settings_digest", "value": settings_digest, "dataType": "hex SHA-256"},
        {"name": "seed", "value": seed, "dataType": "integer"},
    ]}));
    let mut wf_outputs: Vec<Value> = output_refs
        .iter()
        .map(|r| json!({"type": "artifact", "resource": {"ref": r}}))
        .collect();
    wf_outputs.push(json!({"type": "evidence", "resource": {"externalReference": report_reference(report_sha256)}}));
    let schema_version = report
        .get("schema_version")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut wf_props = vec![property("report_schema_version", schema_version)];
    if let Some(d) = settings.get("dedup").and_then(Value::as_str) {
        wf_props.push(property("dedup", d));
    }
    let workflow = json!({
        "bom-ref": WORKFLOW_REF,
        "uid": format!("poisongate-scan-{report_sha256}"),
        "name": "poisongate scan: the gate a dataset goes through before training",
        "resourceReferences": [{"ref": TOOL_REF}],
        "tasks": tasks,
        "taskDependencies": task_deps,
        "taskTypes": ["scan"],
        "inputs": wf_inputs,
        "outputs": wf_outputs,
        "properties": wf_props,
    });

    let mut dependencies: Vec<Value> = output_refs
        .iter()
        .map(|r| json!({"ref": r, "dependsOn": input_refs}))
        .collect();
    dependencies.extend(input_refs.iter().map(|r| json!({"ref": r})));

    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": serial_number(report_sha256),
        "version": 1,
        "metadata": {
            "tools": {"components": [{
                "type": "application",
                "bom-ref": TOOL_REF,
                "name": tool_name,
                "version": tool_version,
            }]},
            "component": clean,
            "properties": [property("verdict", status)],
        },
        "components": components,
        "externalReferences": [
            report_reference(report_sha256),
            {
                "type": "attestation",
                "url": crate::provenance::FILE_NAME,
                "comment": "in-toto Statement v1 of the scan; it names this document among its subjects, with this document's digest",
            },
            {
                "type": "documentation",
                "url": crate::html::FILE_NAME,
                "comment": "the scan report for people (its digest is in the in-toto statement)",
            },
        ],
        "dependencies": dependencies,
        "formulation": [{
            "bom-ref": "formula:gate",
            "workflows": [workflow],
        }],
    }))
}

/// The external reference to `report.json`, with its digest.
fn report_reference(report_sha256: &str) -> Value {
    json!({
        "type": "evidence",
        "url": "report.json",
        "comment": "the scan report: every setting, detector finding and count (the source of truth)",
        "hashes": sha256_hash(report_sha256),
    })
}

/// The document's bytes as written: pretty JSON with a trailing newline.
pub fn to_bytes(doc: &Value) -> Vec<u8> {
    crate::provenance::to_bytes(doc)
}

/// The document for report text `report_json` (the bytes of a `report.json`), as written.
pub fn from_report_text(report_json: &str) -> Result<Vec<u8>, BomError> {
    let report: Value = serde_json::from_str(report_json).map_err(|source| BomError::Json {
        path: PathBuf::from("report.json"),
        source,
    })?;
    let sha = hex::encode(Sha256::digest(report_json.as_bytes()));
    Ok(to_bytes(&document(&report, &sha)?))
}

/// The document of an existing output folder, re-made from its `report.json` (the bytes
/// `scan --out DIR` wrote as `bom.cdx.json`, for the same poisongate version).
pub fn from_dir(dir: &Path) -> Result<Vec<u8>, BomError> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path).map_err(|source| BomError::Io {
        path: path.clone(),
        source,
    })?;
    from_report_text(&text).map_err(|e| match e {
        BomError::Json { source, .. } => BomError::Json { path, source },
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Value {
        let sha = |c: char| c.to_string().repeat(64);
        json!({
            "schema_version": "1.2.0",
            "tool": {"name": "poisongate", "version": "9.9.9"},
            "settings": {
                "seed": 7,
                "dedup": "keep-first",
                "format": {"name": "text-label", "reason": "…"},
                "model": {"dir": "/m/minilm", "architecture": "BertModel (bert)", "dims": 8, "normalize": true},
            },
            "settings_digest": sha('d'),
            "inputs": [
                {"role": "data", "path": "in/rows.parquet", "bytes": 10, "rows": 4, "sha256": sha('a')},
                {"role": "model", "path": "/m/minilm/config.json", "bytes": 2, "rows": 0, "sha256": sha('b')},
                {"role": "model", "path": "/m/minilm/1_Pooling/config.json", "bytes": 3, "rows": 0, "sha256": sha('c')},
            ],
            "detectors": [{"code": "DUP001", "name": "exact-duplicates", "version": 2, "flagged": 1}],
            "outputs": [
                {"role": "clean", "path": "clean.parquet", "rows": 2, "bytes": 5, "sha256": sha('e')},
                {"role": "quarantine", "path": "quarantine.parquet", "rows": 1, "bytes": 6, "sha256": sha('f')},
                {"role": "duplicates", "path": "duplicates.parquet", "rows": 1, "bytes": 7, "sha256": sha('0')},
            ],
            "reconciliation": {"input_rows": 4, "clean_rows": 2, "quarantined_rows": 1, "duplicate_rows": 1, "balanced": true},
            "verdict": {"status": "fail", "quarantined_fraction": 0.25, "max_quarantine_fraction": 0.0, "exit_code": 1},
        })
    }

    fn props(c: &Value) -> Vec<(String, String)> {
        c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("bom-ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn serial_number_is_a_version_8_uuid_of_the_digest() {
        let s = serial_number(&"f".repeat(64));
        assert_eq!(s, "urn:uuid:ffffffff-ffff-8fff-bfff-ffffffffffff");
        let s = serial_number(&"0".repeat(64));
        assert_eq!(s, "urn:uuid:00000000-0000-8000-8000-000000000000");
        let a = serial_number(&hex::encode(Sha256::digest(b"a")));
        assert_ne!(a, serial_number(&hex::encode(Sha256::digest(b"b"))));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
    }

    #[test]
    fn components_outputs_model_and_gate() {
        let doc = document(&report(), &"9".repeat(64)).unwrap();
        assert_eq!(doc["specVersion"], "1.6");
        assert_eq!(
            doc["metadata"]["tools"]["components"][0]["version"],
            "9.9.9"
        );
        let clean = &doc["metadata"]["component"];
        assert_eq!(clean["bom-ref"], "output:clean");
        assert_eq!(
            clean["pedigree"]["ancestors"][0]["hashes"][0]["content"],
            "a".repeat(64)
        );
        assert!(props(clean).contains(&("poisongate:rows".into(), "2".into())));
        assert!(props(clean).contains(&("poisongate:format".into(), "parquet".into())));
        let comps = doc["components"].as_array().unwrap();
        let by_ref = |r: &str| comps.iter().find(|c| c["bom-ref"] == r).unwrap();
        assert!(props(by_ref("input:data"))
            .contains(&("poisongate:row_format".into(), "text-label".into())));
        let model = by_ref("input:model");
        assert_eq!(model["type"], "machine-learning-model");
        assert_eq!(model["name"], "minilm");
        assert_eq!(
            model["modelCard"]["modelParameters"]["modelArchitecture"],
            "BertModel (bert)"
        );
        let files: Vec<&str> = model["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(files, ["config.json", "1_Pooling/config.json"]);
        assert_eq!(
            model["components"][1]["hashes"][0]["content"],
            "c".repeat(64)
        );
        assert_eq!(
            by_ref("output:duplicates")["pedigree"]["ancestors"][0]["name"],
            "rows.parquet"
        );
        let wf = &doc["formulation"][0]["workflows"][0];
        let params = &wf["inputs"].as_array().unwrap().last().unwrap()["parameters"];
        assert_eq!(params[0]["value"], "d".repeat(64));
        assert_eq!(params[1]["value"], "7");
        let tasks = wf["tasks"].as_array().unwrap();
        assert_eq!(tasks[0]["bom-ref"], "task:DUP001");
        assert!(props(&tasks[0]).contains(&("poisongate:version".into(), "2".into())));
        assert!(props(&tasks[1]).contains(&("poisongate:duplicate_rows".into(), "1".into())));
        assert!(
            props(&tasks[2]).contains(&("poisongate:quarantined_fraction".into(), "0.25".into()))
        );
        assert_eq!(
            doc["externalReferences"][0]["hashes"][0]["content"],
            "9".repeat(64)
        );
        // every bom-ref is unique
        let mut all = Vec::new();
        refs(&doc, &mut all);
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "{all:?}");
    }

    #[test]
    fn a_report_lacking_what_the_document_needs_is_an_error_not_a_panic() {
        let mut r = report();
        r["outputs"].as_array_mut().unwrap().remove(0);
        let e = document(&r, &"9".repeat(64)).unwrap_err();
        assert!(e.to_string().contains("no entry of role `clean`"), "{e}");
        let mut r = report();
        r["inputs"][0]["sha256"] = "xyz".into();
        let e = document(&r, &"9".repeat(64)).unwrap_err();
        assert!(e.to_string().contains("inputs[0].sha256"), "{e}");
        let mut r = report();
        r["verdict"].as_object_mut().unwrap().remove("status");
        assert!(matches!(document(&r, "9"), Err(BomError::Malformed(_))));
        assert!(matches!(from_report_text("{"), Err(BomError::Json { .. })));
        // reports written before --dedup have no duplicate_rows
        let mut r = report();
        r["reconciliation"]
            .as_object_mut()
            .unwrap()
            .remove("duplicate_rows");
        assert!(document(&r, &"9".repeat(64)).is_ok());
    }

    #[test]
    fn common_parent_of_paths() {
        let p = [Path::new("/m/a/x.json"), Path::new("/m/a/b/y.json")];
        assert_eq!(common_parent(p.into_iter()), PathBuf::from("/m/a"));
        assert_eq!(common_parent(std::iter::empty()), PathBuf::new());
    }
}
