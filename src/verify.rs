//! `poisongate verify DIR`: check a scan's output folder against its own claims.
//!
//! In order, stopping at the first failure:
//! 0. the folder is not a scan's staging folder (`.<name>.poisongate-staging-<random>`, left
//!    behind by a scan that was killed before it renamed its result into place);
//! 1. every subject of `provenance.intoto.json` exists and has the SHA-256 it names (hashed
//!    before `report.json` is parsed, so a corrupted report is reported as a mismatch);
//! 2. every output listed in `report.json` has the size and SHA-256 the report names, and the
//!    statement names the same digest for it;
//! 3. the rows of each output, re-counted (JSONL: non-blank lines; Parquet: the footer's row
//!    count), match the report;
//! 4. the reconciliation holds: `input_rows = clean_rows + quarantined_rows + invalid_rows +
//!    duplicate_rows` (duplicates only with `scan --dedup`, invalid rows only with
//!    `--invalid-rows quarantine`), equal to the counted rows and to the data input's rows; the
//!    quarantine output holds `quarantined_rows + invalid_rows` rows, of which exactly
//!    `invalid_rows` are invalid ones (re-counted: JSONL lines that are not a JSON object or whose
//!    reasons say `INVALID:`, Parquet rows whose reasons do), and the report's `invalid` section
//!    adds up to the same count; the predicate's reconciliation, settings digest, inputs and
//!    verdict agree with the report;
//! 5. when the folder holds `bom.cdx.json` (scans since it was added; its digest is then a
//!    subject, checked in 1): every file it names has the SHA-256, size and rows the report
//!    names, its reference to `report.json` carries that file's digest, and its formulation
//!    records the report's settings digest, detector versions, reconciliation and verdict.
//!
//! [`VerifyError::Mismatch`] means the folder is inconsistent (exit 1); every other variant
//! means it could not be checked (exit 2).

use crate::bom;
use crate::provenance::{self, PREDICATE_TYPE, STATEMENT_TYPE};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Why a folder did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A claim does not hold: `file`'s `what` was expected to be `expected` but is `actual`.
    #[error("MISMATCH {file}: {what}: expected {expected}, actual {actual}")]
    Mismatch {
        /// The file concerned (name inside the folder).
        file: String,
        /// What was compared, e.g. `sha256`.
        what: String,
        /// The claimed value.
        expected: String,
        /// The value found.
        actual: String,
    },
    /// A file named by the statement or the report does not exist.
    #[error("{}: missing", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{}: not valid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A JSON file parsed but lacks a field or has one of the wrong type or value.
    #[error("{}: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A Parquet output's footer could not be read.
    #[error("{}: cannot read the Parquet footer: {message}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        message: String,
    },
}

impl VerifyError {
    /// Process exit code: 1 for a mismatch, 2 for anything that prevented the check.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::Mismatch { .. } => 1,
            _ => 2,
        }
    }
}

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Files whose digests were recomputed.
    pub files: usize,
    /// Rows of the input.
    pub input_rows: usize,
    /// Rows counted in the clean output.
    pub clean_rows: usize,
    /// Rows counted in the quarantine output, invalid rows included.
    pub quarantined_rows: usize,
    /// Invalid rows counted in the quarantine output (0 without `--invalid-rows quarantine`).
    pub invalid_rows: usize,
    /// Rows counted in the duplicates output (0 without `--dedup`).
    pub duplicate_rows: usize,
    /// The report's verdict status (`pass` or `fail`).
    pub verdict: String,
    /// Model files (inputs of role `model`) re-hashed because they are still at their path.
    pub model_files_checked: usize,
    /// Model files no longer at their path (not checked).
    pub model_files_absent: usize,
    /// `bom.cdx.json` was present and agrees with the report.
    pub bom_checked: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OK: {} files match their SHA-256; {} input rows = {} clean + {} quarantined",
            self.files, self.input_rows, self.clean_rows, self.quarantined_rows
        )?;
        if self.invalid_rows > 0 {
            write!(f, " (of which {} invalid)", self.invalid_rows)?;
        }
        if self.duplicate_rows > 0 {
            write!(f, " + {} duplicates", self.duplicate_rows)?;
        }
        write!(f, "; verdict {}", self.verdict)?;
        if self.bom_checked {
            write!(f, "; {} agrees", bom::FILE_NAME)?;
        }
        if self.model_files_checked + self.model_files_absent > 0 {
            write!(
                f,
                "; model files: {} match their SHA-256, {} no longer present",
                self.model_files_checked, self.model_files_absent
            )?;
        }
        Ok(())
    }
}

fn mismatch(file: &str, what: &str, expected: impl ToString, actual: impl ToString) -> VerifyError {
    VerifyError::Mismatch {
        file: file.to_string(),
        what: what.to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    }
}

fn open(path: &Path) -> Result<std::fs::File, VerifyError> {
    std::fs::File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            VerifyError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            VerifyError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// SHA-256 (lower-case hex) and size of a file.
fn digest(path: &Path) -> Result<(String, u64), VerifyError> {
    let mut file = open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|source| VerifyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

fn read_json(path: &Path) -> Result<Value, VerifyError> {
    let file = open(path)?;
    serde_json::from_reader(BufReader::new(file)).map_err(|source| VerifyError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Typed access to fields of a parsed JSON file, with errors naming the file.
struct Doc<'a> {
    path: &'a Path,
}

impl Doc<'_> {
    fn bad(&self, problem: String) -> VerifyError {
        VerifyError::Malformed {
            path: self.path.to_path_buf(),
            problem,
        }
    }
    fn get<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Value, VerifyError> {
        v.get(key)
            .ok_or_else(|| self.bad(format!("missing field `{key}`")))
    }
    fn str<'v>(&self, v: &'v Value, key: &str) -> Result<&'v str, VerifyError> {
        self.get(v, key)?
            .as_str()
            .ok_or_else(|| self.bad(format!("field `{key}` is not a string")))
    }
    fn u64(&self, v: &Value, key: &str) -> Result<u64, VerifyError> {
        self.get(v, key)?
            .as_u64()
            .ok_or_else(|| self.bad(format!("field `{key}` is not a non-negative integer")))
    }
    fn array<'v>(&self, v: &'v Value, key: &str) -> Result<&'v Vec<Value>, VerifyError> {
        self.get(v, key)?
            .as_array()
            .ok_or_else(|| self.bad(format!("field `{key}` is not an array")))
    }
}

/// A plain file name (no folders, no `..`), so that verification never leaves `dir`.
fn inside(dir: &Path, doc: &Doc<'_>, name: &str) -> Result<PathBuf, VerifyError> {
    let p = Path::new(name);
    let plain = p.components().count() == 1
        && matches!(p.components().next(), Some(std::path::Component::Normal(_)));
    if !plain {
        return Err(doc.bad(format!("`{name}` is not a plain file name")));
    }
    Ok(dir.join(p))
}

/// Rows in an output file: JSONL non-blank lines, or the Parquet footer's row count.
fn count_rows(path: &Path) -> Result<u64, VerifyError> {
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let file = open(path)?;
    if is_parquet {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        crate::ingest::check_footer(path, &file).map_err(|e| VerifyError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let reader = SerializedFileReader::new(file).map_err(|e| VerifyError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let rows = reader.metadata().file_metadata().num_rows();
        return u64::try_from(rows).map_err(|_| VerifyError::Parquet {
            path: path.to_path_buf(),
            message: format!("negative row count {rows}"),
        });
    }
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut rows = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| VerifyError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            rows += 1;
        }
    }
    Ok(rows)
}

/// Invalid rows in a quarantine output: JSONL lines that are not a JSON object, lack
/// `poisongate_reasons` (invalid rows copied byte for byte) or whose reasons say `INVALID:`;
/// Parquet rows whose reasons do.
fn count_invalid(path: &Path) -> Result<u64, VerifyError> {
    use crate::emit::REASONS_COLUMN;
    use crate::ingest::INVALID_PREFIX;
    fn is_invalid<'a>(mut reasons: impl Iterator<Item = Option<&'a str>>) -> bool {
        reasons.any(|r| r.is_some_and(|r| r.starts_with(INVALID_PREFIX)))
    }
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let file = open(path)?;
    if is_parquet {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use parquet::arrow::ProjectionMask;
        let bad = |e: &dyn std::fmt::Display| VerifyError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        crate::ingest::check_footer(path, &file).map_err(|e| bad(&e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
        let Some(index) = builder
            .schema()
            .fields()
            .iter()
            .position(|f| f.name() == REASONS_COLUMN)
        else {
            return Err(bad(&format!("no column `{REASONS_COLUMN}`")));
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder.with_projection(mask).build().map_err(|e| bad(&e))?;
        let mut n = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            let Some(list) = batch.column(0).as_list_opt::<i32>() else {
                return Err(bad(&format!("`{REASONS_COLUMN}` is not a list of strings")));
            };
            for j in 0..list.len() {
                let items = list.value(j);
                let Some(strings) = items.as_string_opt::<i32>() else {
                    return Err(bad(&format!("`{REASONS_COLUMN}` is not a list of strings")));
                };
                if is_invalid(strings.iter()) {
                    n += 1;
                }
            }
        }
        return Ok(n);
    }
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| VerifyError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if read == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let invalid = match crate::ingest::parse_projected(&line, &[REASONS_COLUMN]) {
            Err(_) => true,
            Ok(values) => match values.first().and_then(Option::as_ref) {
                Some(Value::Array(reasons)) => is_invalid(reasons.iter().map(Value::as_str)),
                // every quarantined line gains the reasons but an invalid row copied as it was
                _ => true,
            },
        };
        if invalid {
            n += 1;
        }
    }
    Ok(n)
}

/// Verify the output folder `dir` of a scan (see the module documentation for the checks).
pub fn verify(dir: &Path) -> Result<Summary, VerifyError> {
    // 0. a staging folder is never a result, whatever it holds
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if name.contains(crate::pipeline::STAGING_MARK) {
        return Err(VerifyError::Malformed {
            path: dir.to_path_buf(),
            problem: "this is the staging folder of a scan that did not finish (it was \
                      stopped before renaming its result into place); it is not a result"
                .into(),
        });
    }
    // 1. the statement's subjects, hashed before anything else is parsed
    let st_path = dir.join(provenance::FILE_NAME);
    let statement = read_json(&st_path)?;
    let st = Doc { path: &st_path };
    let ty = st.str(&statement, "_type")?;
    if ty != STATEMENT_TYPE {
        return Err(st.bad(format!("`_type` is `{ty}`, not `{STATEMENT_TYPE}`")));
    }
    let pt = st.str(&statement, "predicateType")?;
    if pt != PREDICATE_TYPE {
        return Err(st.bad(format!("`predicateType` is `{pt}`, not `{PREDICATE_TYPE}`")));
    }
    let mut attested: BTreeMap<String, String> = BTreeMap::new();
    for s in st.array(&statement, "subject")? {
        let name = st.str(s, "name")?;
        let want = st.str(st.get(s, "digest")?, "sha256")?;
        let (got, _) = digest(&inside(dir, &st, name)?)?;
        if got != want {
            return Err(mismatch(name, "sha256 (provenance subject)", want, got));
        }
        attested.insert(name.to_string(), want.to_string());
    }
    if !attested.contains_key("report.json") {
        return Err(st.bad("no subject names report.json".into()));
    }

    // 2. the report's outputs: size, digest, agreement with the statement
    let rp_path = dir.join("report.json");
    let report = read_json(&rp_path)?;
    let rp = Doc { path: &rp_path };
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    let outputs = rp.array(&report, "outputs")?;
    for o in outputs {
        let name = rp.str(o, "path")?;
        let role = rp.str(o, "role")?;
        let path = inside(dir, &rp, name)?;
        let want = rp.str(o, "sha256")?;
        let (got, bytes) = digest(&path)?;
        let want_bytes = rp.u64(o, "bytes")?;
        if bytes != want_bytes {
            return Err(mismatch(name, "bytes (report.json)", want_bytes, bytes));
        }
        if got != want {
            return Err(mismatch(name, "sha256 (report.json)", want, got));
        }
        match attested.get(name) {
            Some(a) if a == want => {}
            Some(a) => {
                return Err(mismatch(
                    name,
                    "sha256 (provenance vs report.json)",
                    a,
                    want,
                ))
            }
            None => {
                return Err(mismatch(
                    provenance::FILE_NAME,
                    &format!("subject for {name}"),
                    "present",
                    "absent",
                ))
            }
        }
        // 3. rows re-counted
        let rows = count_rows(&path)?;
        let want_rows = rp.u64(o, "rows")?;
        if rows != want_rows {
            return Err(mismatch(name, "rows (report.json)", want_rows, rows));
        }
        counted.insert(role.to_string(), rows);
    }
    let (Some(&clean), Some(&quarantined)) = (counted.get("clean"), counted.get("quarantine"))
    else {
        return Err(rp.bad("`outputs` lacks a clean or a quarantine entry".into()));
    };

    // 4. reconciliation, and the predicate against the report
    let rec = rp.get(&report, "reconciliation")?;
    let input_rows = rp.u64(rec, "input_rows")?;
    let rec_clean = rp.u64(rec, "clean_rows")?;
    let rec_quar = rp.u64(rec, "quarantined_rows")?;
    // absent in reports written before --dedup existed: then there is no duplicates output
    let rec_dup = match rec.get("duplicate_rows") {
        None => 0,
        Some(_) => rp.u64(rec, "duplicate_rows")?,
    };
    // absent in reports written before --invalid-rows existed: then there are none
    let rec_invalid = match rec.get("invalid_rows") {
        None => 0,
        Some(_) => rp.u64(rec, "invalid_rows")?,
    };
    let duplicates = counted.get("duplicates").copied().unwrap_or(0);
    if rec_dup != duplicates {
        return Err(mismatch(
            "report.json",
            "reconciliation.duplicate_rows",
            rec_dup,
            duplicates,
        ));
    }
    if rec_clean != clean {
        return Err(mismatch(
            "report.json",
            "reconciliation.clean_rows",
            rec_clean,
            clean,
        ));
    }
    if rec_quar + rec_invalid != quarantined {
        return Err(mismatch(
            "report.json",
            "reconciliation.quarantined_rows + invalid_rows (= rows of the quarantine output)",
            rec_quar + rec_invalid,
            quarantined,
        ));
    }
    if input_rows != clean + quarantined + duplicates {
        return Err(mismatch(
            "report.json",
            "reconciliation.input_rows (= clean + quarantined + invalid + duplicates)",
            input_rows,
            clean + quarantined + duplicates,
        ));
    }
    let quarantine_name = outputs
        .iter()
        .find(|o| o.get("role") == Some(&"quarantine".into()))
        .and_then(|o| o.get("path"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let invalid_counted = count_invalid(&inside(dir, &rp, quarantine_name)?)?;
    if invalid_counted != rec_invalid {
        return Err(mismatch(
            quarantine_name,
            "invalid rows (reconciliation.invalid_rows)",
            rec_invalid,
            invalid_counted,
        ));
    }
    if let Some(section) = report.get("invalid") {
        let rows = rp.u64(section, "rows")?;
        let by_reason: u64 = match section.get("reasons").and_then(Value::as_object) {
            Some(m) => m
                .values()
                .map(|r| r.get("rows").and_then(Value::as_u64).unwrap_or(0))
                .sum(),
            None => return Err(rp.bad("`invalid.reasons` is not an object".into())),
        };
        if rows != rec_invalid || by_reason != rec_invalid {
            return Err(mismatch(
                "report.json",
                "invalid.rows and the sum over invalid.reasons (= reconciliation.invalid_rows)",
                rec_invalid,
                format!("{rows} and {by_reason}"),
            ));
        }
    } else if rec_invalid > 0 {
        return Err(rp.bad("invalid rows are counted but there is no `invalid` section".into()));
    }
    if rec.get("balanced") != Some(&Value::Bool(true)) {
        return Err(mismatch(
            "report.json",
            "reconciliation.balanced",
            true,
            false,
        ));
    }
    let inputs = rp.array(&report, "inputs")?;
    if let Some(data) = inputs
        .iter()
        .find(|i| i.get("role") == Some(&"data".into()))
    {
        let rows = rp.u64(data, "rows")?;
        if rows != input_rows {
            return Err(mismatch(
                "report.json",
                "inputs[data].rows (= reconciliation.input_rows)",
                input_rows,
                rows,
            ));
        }
    }
    let pred = st.get(&statement, "predicate")?;
    let agree = |key: &str, p: Option<&Value>, r: Option<&Value>| -> Result<(), VerifyError> {
        if p != r {
            let show = |v: Option<&Value>| v.map_or("(absent)".to_string(), Value::to_string);
            return Err(mismatch(
                provenance::FILE_NAME,
                &format!("predicate.{key} (vs report.json)"),
                show(r),
                show(p),
            ));
        }
        Ok(())
    };
    agree(
        "settings_digest",
        pred.get("settings_digest"),
        report.get("settings_digest"),
    )?;
    for key in [
        "input_rows",
        "clean_rows",
        "quarantined_rows",
        "invalid_rows",
        "duplicate_rows",
        "balanced",
    ] {
        agree(
            &format!("reconciliation.{key}"),
            pred.get("reconciliation").and_then(|v| v.get(key)),
            rec.get(key),
        )?;
    }
    agree(
        "verdict.status",
        pred.get("verdict").and_then(|v| v.get("status")),
        report.get("verdict").and_then(|v| v.get("status")),
    )?;
    let pred_inputs = st.array(pred, "inputs")?;
    if pred_inputs.len() != inputs.len() {
        return Err(mismatch(
            provenance::FILE_NAME,
            "predicate.inputs (count, vs report.json)",
            inputs.len(),
            pred_inputs.len(),
        ));
    }
    for (i, (p, r)) in pred_inputs.iter().zip(inputs).enumerate() {
        for key in ["path", "sha256", "bytes", "rows"] {
            agree(&format!("inputs[{i}].{key}"), p.get(key), r.get(key))?;
        }
    }
    // 5. the bill of materials, when there is one
    let report_sha = attested.get("report.json").map_or("", String::as_str);
    let bom_checked = check_bom(dir, &report, report_sha)?;
    // the model that computed the embeddings is an input too: re-hash its files when they are
    // still where the scan read them
    let (mut model_files_checked, mut model_files_absent) = (0, 0);
    for (i, input) in inputs.iter().enumerate() {
        if input.get("role") != Some(&"model".into()) {
            continue;
        }
        let path = Path::new(input.get("path").and_then(Value::as_str).unwrap_or(""));
        let Ok(bytes) = std::fs::read(path) else {
            model_files_absent += 1;
            continue;
        };
        let digest = hex::encode(Sha256::digest(&bytes));
        let want = input.get("sha256").and_then(Value::as_str).unwrap_or("");
        if digest != want {
            return Err(mismatch(
                &path.display().to_string(),
                &format!("sha256 (report.json inputs[{i}], a model file)"),
                want,
                digest,
            ));
        }
        model_files_checked += 1;
    }
    let verdict = report
        .get("verdict")
        .and_then(|v| v.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    Ok(Summary {
        bom_checked,
        model_files_checked,
        model_files_absent,
        files: attested.len(),
        input_rows: input_rows as usize,
        clean_rows: clean as usize,
        quarantined_rows: quarantined as usize,
        invalid_rows: rec_invalid as usize,
        duplicate_rows: duplicates as usize,
        verdict,
    })
}

/// Every component of a CycloneDX document (`metadata.component`, `components`, nested ones) by
/// its `bom-ref`.
fn components_by_ref(doc: &Value) -> BTreeMap<String, &Value> {
    fn collect<'v>(v: &'v Value, out: &mut BTreeMap<String, &'v Value>) {
        if let Some(r) = v.get("bom-ref").and_then(Value::as_str) {
            out.insert(r.to_string(), v);
        }
        for c in v
            .get("components")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect(c, out);
        }
    }
    let mut out = BTreeMap::new();
    if let Some(m) = doc.get("metadata").and_then(|m| m.get("component")) {
        collect(m, &mut out);
    }
    for c in doc
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect(c, &mut out);
    }
    out
}

/// The SHA-256 listed in an object's `hashes`.
fn bom_sha256(v: &Value) -> Option<&str> {
    v.get("hashes")?
        .as_array()?
        .iter()
        .find(|h| h.get("alg").and_then(Value::as_str) == Some("SHA-256"))?
        .get("content")?
        .as_str()
}

/// The value of the property `poisongate:<key>` of an object.
fn bom_property<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    let name = format!("{}{key}", bom::PROPERTY_PREFIX);
    v.get("properties")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))?
        .get("value")?
        .as_str()
}

/// Step 5: `bom.cdx.json` against the report (`Ok(false)` when the folder has none).
fn check_bom(dir: &Path, report: &Value, report_sha: &str) -> Result<bool, VerifyError> {
    let path = dir.join(bom::FILE_NAME);
    if !path.exists() {
        return Ok(false);
    }
    let doc = read_json(&path)?;
    let file = bom::FILE_NAME;
    let rp_path = dir.join("report.json");
    let rp = Doc { path: &rp_path };
    let by_ref = components_by_ref(&doc);
    let component = |r: &str| {
        by_ref
            .get(r)
            .copied()
            .ok_or_else(|| mismatch(file, &format!("component {r}"), "present", "absent"))
    };
    let same = |what: String, want: String, got: Option<&str>| {
        if got == Some(want.as_str()) {
            Ok(())
        } else {
            Err(mismatch(
                file,
                &format!("{what} (vs report.json)"),
                want,
                got.unwrap_or("(absent)"),
            ))
        }
    };
    // the files: outputs, then data and embeddings inputs, then the model's files
    let mut seen_roles: Vec<&str> = Vec::new();
    let files = rp
        .array(report, "outputs")?
        .iter()
        .map(|o| (o, bom::output_ref(rp.str(o, "role").unwrap_or(""))))
        .chain(rp.array(report, "inputs")?.iter().filter_map(|i| {
            let role = i.get("role").and_then(Value::as_str)?;
            if role == "model" || seen_roles.contains(&role) {
                return None;
            }
            seen_roles.push(role);
            Some((i, bom::input_ref(role)))
        }))
        .collect::<Vec<_>>();
    for (entry, r) in files {
        let c = component(&r)?;
        same(
            format!("{r} sha256"),
            rp.str(entry, "sha256")?.into(),
            bom_sha256(c),
        )?;
        for key in ["bytes", "rows"] {
            same(
                format!("{r} {key}"),
                rp.u64(entry, key)?.to_string(),
                bom_property(c, key),
            )?;
        }
    }
    let model_files: Vec<&Value> = rp
        .array(report, "inputs")?
        .iter()
        .filter(|i| i.get("role").and_then(Value::as_str) == Some("model"))
        .collect();
    if !model_files.is_empty() {
        let model = component(&bom::input_ref("model"))?;
        let nested: Vec<&Value> = model
            .get("components")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        for m in model_files {
            let p = rp.str(m, "path")?;
            let got = nested
                .iter()
                .find(|c| bom_property(c, "path") == Some(p))
                .and_then(|c| bom_sha256(c));
            same(
                format!("model file {p} sha256"),
                rp.str(m, "sha256")?.into(),
                got,
            )?;
        }
    }
    let report_ref = doc
        .get("externalReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("url").and_then(Value::as_str) == Some("report.json"));
    same(
        "externalReferences[report.json] sha256".into(),
        report_sha.into(),
        report_ref.and_then(bom_sha256),
    )?;
    // the gate: settings digest, detectors, reconciliation, verdict
    let workflows: Vec<&Value> = doc
        .get("formulation")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("workflows").and_then(Value::as_array))
        .flatten()
        .collect();
    let task = |r: &str| {
        workflows
            .iter()
            .filter_map(|w| w.get("tasks").and_then(Value::as_array))
            .flatten()
            .find(|t| t.get("bom-ref").and_then(Value::as_str) == Some(r))
            .ok_or_else(|| mismatch(file, &format!("formulation task {r}"), "present", "absent"))
    };
    let digest_param = workflows
        .iter()
        .filter_map(|w| w.get("inputs").and_then(Value::as_array))
        .flatten()
        .filter_map(|i| i.get("parameters").and_then(Value::as_array))
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some("settings_digest"))
        .and_then(|p| p.get("value"))
        .and_then(Value::as_str);
    same(
        "formulation settings_digest".into(),
        rp.str(report, "settings_digest")?.into(),
        digest_param,
    )?;
    for d in rp.array(report, "detectors")? {
        let code = rp.str(d, "code")?;
        let t = task(&bom::detector_ref(code))?;
        for key in ["version", "flagged"] {
            same(
                format!("formulation task {code} {key}"),
                rp.u64(d, key)?.to_string(),
                bom_property(t, key),
            )?;
        }
    }
    let rec = rp.get(report, "reconciliation")?;
    let t = task(bom::RECONCILE_REF)?;
    for key in [
        "input_rows",
        "clean_rows",
        "quarantined_rows",
        "invalid_rows",
        "duplicate_rows",
        "balanced",
    ] {
        let want = match (key, rec.get(key)) {
            ("duplicate_rows" | "invalid_rows", None) => "0".to_string(),
            (_, Some(Value::Bool(b))) => b.to_string(),
            _ => rp.u64(rec, key)?.to_string(),
        };
        same(format!("reconciliation {key}"), want, bom_property(t, key))?;
    }
    let verdict = rp.get(report, "verdict")?;
    same(
        "verdict status".into(),
        rp.str(verdict, "status")?.into(),
        bom_property(task(bom::VERDICT_REF)?, "status"),
    )?;
    Ok(true)
}
