//! `provenance.intoto.json`: an [in-toto Statement v1](https://github.com/in-toto/attestation)
//! naming the scan's output files by SHA-256 (its `subject`) and carrying what the scan checked,
//! on which inputs, with which settings, as its `predicate`.
//!
//! The predicate type is [`PREDICATE_TYPE`]; its fields are documented in `docs/provenance.md`.
//! The statement holds no timestamps: it is a deterministic function of the report and the
//! output files (note that `report.json` itself carries wall-clock `seconds`, so its digest
//! differs between runs; the other subjects and the predicate do not).

use crate::report::Report;
use serde_json::{json, Value};

/// The in-toto Statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// The predicate type of a poisongate scan attestation (documented in `docs/provenance.md`).
pub const PREDICATE_TYPE: &str = "https://poisongate.dev/attestation/scan/v1";

/// File name of the statement inside the output folder.
pub const FILE_NAME: &str = "provenance.intoto.json";

/// One attested file: its name inside the output folder and its lower-case hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// File name inside the output folder, e.g. `clean.jsonl`.
    pub name: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The predicate: inputs, settings digest, seed, detectors, verdict and reconciliation.
pub fn predicate(report: &Report) -> Value {
    let inputs: Vec<Value> = report
        .inputs
        .iter()
        .map(|i| {
            let mut v = json!({
                "role": i.role,
                "path": i.path,
                "sha256": i.sha256,
                "bytes": i.bytes,
                "rows": i.rows,
            });
            if let (Some(d), Some(m)) = (i.dims, v.as_object_mut()) {
                m.insert("dims".into(), json!(d));
            }
            if let (false, Some(m)) = (i.files.is_empty(), v.as_object_mut()) {
                m.insert("files".into(), json!(i.files));
            }
            v
        })
        .collect();
    let detectors: Vec<Value> = report
        .detectors
        .iter()
        .map(
            |d| json!({"code": d.code, "name": d.name, "version": d.version, "flagged": d.flagged}),
        )
        .collect();
    let outputs: Vec<Value> = report
        .outputs
        .iter()
        .map(|o| json!({"role": o.role, "path": o.path, "rows": o.rows, "bytes": o.bytes}))
        .collect();
    let rec = &report.reconciliation;
    json!({
        "tool": {"name": report.tool.name, "version": report.tool.version},
        "report_schema_version": report.schema_version,
        "inputs": inputs,
        "settings_digest": report.settings_digest,
        "seed": report.settings.get("seed").cloned().unwrap_or(Value::Null),
        "detectors": detectors,
        "outputs": outputs,
        "reconciliation": {
            "input_rows": rec.input_rows,
            "clean_rows": rec.clean_rows,
            "quarantined_rows": rec.quarantined_rows,
            "invalid_rows": rec.invalid_rows,
            "duplicate_rows": rec.duplicate_rows,
            "balanced": rec.balanced,
        },
        "verdict": {
            "status": report.verdict.status,
            "quarantined_fraction": report.verdict.quarantined_fraction,
            "max_quarantine_fraction": report.verdict.max_quarantine_fraction,
        },
    })
}

/// The whole in-toto Statement for `subjects` (in the given order) and the report.
pub fn statement(report: &Report, subjects: &[Subject]) -> Value {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|s| json!({"name": s.name, "digest": {"sha256": s.sha256}}))
        .collect();
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate(report),
    })
}

/// The statement's bytes as written: pretty JSON with a trailing newline.
pub fn to_bytes(statement: &Value) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(statement).unwrap_or_else(|_| statement.to_string());
    s.push('\n');
    s.into_bytes()
}
