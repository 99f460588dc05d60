//! `report.json`: the single source of truth of a scan.
//!
//! Its JSON Schema is `reports/report.schema.json`; [`SCHEMA_VERSION`] changes whenever a field
//! is renamed or removed (additions bump the minor part). Everything in the report is
//! deterministic for the same input, settings and seed, except the fields named `seconds` and
//! the `run` object (wall-clock timings, thread count), which say how this run went.

use poisongate_detectors::metrics::Evaluation;
use serde::Serialize;
use std::collections::BTreeMap;

/// Version of the report format (semantic versioning).
pub const SCHEMA_VERSION: &str = "1.3.0";

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: &'static str,
    /// Which tool wrote it.
    pub tool: Tool,
    /// Every resolved setting, including the seed and each detector's parameters.
    pub settings: serde_json::Value,
    /// SHA-256 of the canonical JSON of `settings`.
    pub settings_digest: String,
    /// Every file read, with its exact digest.
    pub inputs: Vec<InputEntry>,
    /// Every detector that ran.
    pub detectors: Vec<DetectorEntry>,
    /// Detectors not run, and why (only when none was selected explicitly).
    pub skipped_detectors: Vec<Skipped>,
    /// Every file written, with its digest and row count (empty when no `--out` was given).
    pub outputs: Vec<OutputEntry>,
    /// Rows in, rows out: counted from what was written.
    pub reconciliation: Reconciliation,
    /// The most suspicious quarantined rows (at most `settings.report_rows`), by score.
    pub quarantined_rows: Vec<QuarantinedRow>,
    /// The gate's decision.
    pub verdict: Verdict,
    /// What `--dedup` removed (absent with `--dedup none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupSection>,
    /// The rows that could not be read (present with `--invalid-rows quarantine`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<InvalidSection>,
    /// Ground-truth evaluation, when `--ground-truth-column` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationSection>,
    /// How this run went (timings, threads): the only non-deterministic part.
    pub run: Run,
}

impl Report {
    /// Zero every wall-clock field (`seconds`, `run.threads`): with `--reproducible` the whole
    /// report is a function of input, settings and seed.
    pub fn make_reproducible(&mut self) {
        for d in &mut self.detectors {
            d.seconds = 0.0;
        }
        self.run.seconds = 0.0;
        self.run.threads = 0;
    }
}

/// Tool name and version.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// Always `poisongate`.
    pub name: &'static str,
    /// The crate version.
    pub version: &'static str,
}

/// One input file.
#[derive(Debug, Clone, Serialize)]
pub struct InputEntry {
    /// `data`, `embeddings` or `model` (a file of the model folder that computed them).
    pub role: &'static str,
    /// Path as given.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows read (for embeddings: matrix rows).
    pub rows: usize,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// For embeddings: the vector dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dims: Option<usize>,
    /// A folder of Parquet or JSONL files read as one table: its files in row order, each with its
    /// size and SHA-256 (`sha256` above is that of their manifest, see
    /// [`crate::ingest::folder_digest`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::ingest::PartDigest>,
}

/// One detector that ran.
#[derive(Debug, Clone, Serialize)]
pub struct DetectorEntry {
    /// Stable code, e.g. `SPEC001`.
    pub code: &'static str,
    /// Name.
    pub name: &'static str,
    /// Algorithm version.
    pub version: u16,
    /// Resolved parameters.
    pub params: serde_json::Value,
    /// Rows this detector flagged.
    pub flagged: usize,
    /// What the fit found (per-class statistics, thresholds, findings).
    pub summary: serde_json::Value,
    /// Wall-clock seconds for fit and score (not deterministic).
    pub seconds: f64,
}

/// A detector that was not run.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Detector code.
    pub code: &'static str,
    /// Why.
    pub reason: String,
}

/// One output file.
#[derive(Debug, Clone, Serialize)]
pub struct OutputEntry {
    /// `clean`, `quarantine` or `duplicates`.
    pub role: &'static str,
    /// File name inside the output folder.
    pub path: String,
    /// Rows written, counted by reading back what was written.
    pub rows: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// Rows in versus rows out.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    /// Rows in the input.
    pub input_rows: usize,
    /// Rows written to the clean output (or that would be, without `--out`).
    pub clean_rows: usize,
    /// Rows a detector flagged, written to the quarantine output.
    pub quarantined_rows: usize,
    /// Rows that could not be read (`--invalid-rows quarantine`; else 0), also written to the
    /// quarantine output, which therefore holds `quarantined_rows + invalid_rows` rows. No
    /// detector saw them.
    pub invalid_rows: usize,
    /// Plain redundant rows written to the duplicates output (`--dedup`; else 0). Not poison:
    /// they do not count towards the quarantined fraction.
    pub duplicate_rows: usize,
    /// `input_rows == clean_rows + quarantined_rows + invalid_rows + duplicate_rows`.
    pub balanced: bool,
}

/// How many rows of the first ones of each reason [`InvalidSection`] lists.
pub const INVALID_EXAMPLES: usize = 5;

/// The rows `--invalid-rows quarantine` moved to the quarantine output unread.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidSection {
    /// The policy: always `quarantine` (without it an invalid row is an error).
    pub policy: &'static str,
    /// Invalid rows (= `reconciliation.invalid_rows`).
    pub rows: usize,
    /// Per reason (`INVALID:json`, `INVALID:text-null`, ...): how many rows, and the first ones.
    pub reasons: BTreeMap<String, InvalidReason>,
}

/// The invalid rows of one reason.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidReason {
    /// How many rows have this reason.
    pub rows: usize,
    /// The first of them (at most [`INVALID_EXAMPLES`]), in row order.
    pub first: Vec<InvalidExample>,
}

/// One invalid row.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidExample {
    /// 0-based row number in the input.
    pub row: usize,
    /// Where the problem was found: `line N` of a JSONL file, `row N` of a Parquet file or
    /// of an embedding matrix (1-based).
    pub at: String,
    /// The error `--invalid-rows error` would have stopped the scan with.
    pub message: String,
}

/// What `--dedup` removed from the clean output.
#[derive(Debug, Clone, Serialize)]
pub struct DedupSection {
    /// `keep-first` or `keep-first-near`.
    pub mode: &'static str,
    /// Rows moved to the duplicates output.
    pub removed_rows: usize,
    /// Duplicate clusters that lost at least one row.
    pub clusters_with_removals: usize,
    /// Rows removed from one cluster → how many clusters.
    pub removed_per_cluster_histogram: BTreeMap<usize, usize>,
    /// What a row must repeat to be removed: `text`, `label` (text-label rows); `prompt`,
    /// `response` (instruction and chat rows, `--prompt-field`); `prompt`, `chosen`,
    /// `rejected` (preference rows).
    pub key: Vec<&'static str>,
    /// Why the key is narrower than the rows' layout allows, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One quarantined row, with why it was held back.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedRow {
    /// 0-based row number in the input.
    pub row: usize,
    /// Value of the id column, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Combined score (the highest detector score; 1.0 is a detector's threshold).
    pub score: f64,
    /// Every detector's reason.
    pub reasons: Vec<String>,
}

/// The gate's decision.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `pass` or `fail`.
    pub status: &'static str,
    /// (Quarantined rows + invalid rows) / input rows: a row that could not be read did not
    /// pass the gate either.
    pub quarantined_fraction: f64,
    /// The policy: the gate fails when `quarantined_fraction` exceeds it.
    pub max_quarantine_fraction: f64,
    /// Process exit code for this verdict (0 pass, 1 fail).
    pub exit_code: i32,
}

/// Ground-truth evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluationSection {
    /// The ground-truth column (never shown to a detector).
    pub ground_truth_column: String,
    /// Rows marked poisoned in the ground truth.
    pub positives: usize,
    /// The combined verdict.
    pub combined: Evaluation,
    /// Each detector on its own, by code.
    pub detectors: BTreeMap<String, Evaluation>,
}

/// Non-deterministic facts about this run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Rayon worker threads used (0 with `--reproducible`).
    pub threads: usize,
    /// Wall-clock seconds of the whole scan (0 with `--reproducible`).
    pub seconds: f64,
}
