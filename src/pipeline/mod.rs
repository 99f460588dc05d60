//! The scan: ingest → align → fit → score (parallel batches) → combine → emit → report.
//!
//! One file per step beside this one: `plan.rs` (which detectors run), `join.rs` (embeddings
//! joined by id), `invalid.rs` (`--invalid-rows quarantine`: the rows set aside unread),
//! `stream.rs` (`--stream`: the detectors fitted in rounds over batches of the input),
//! `conclude.rs` (the verdict, the report and the outputs, whichever engine ran the
//! detectors), `dedup.rs` (`--dedup`'s clusters and kept rows) and `write.rs` (the staged
//! outputs, the output folder renamed into place).

use crate::emit::{self, OutputFile, Quarantine, SparseVerdicts};
use crate::ingest::{
    self, ColumnSpec, FileDigest, IngestError, InvalidPolicy, LabelKind, RowFormat, RowLayout,
    Table,
};
use crate::report::{
    DedupSection, DetectorEntry, EvaluationSection, InputEntry, OutputEntry, QuarantinedRow,
    Reconciliation, Report, Run, Skipped, Tool, Verdict, SCHEMA_VERSION,
};
use crate::{bom, html, provenance};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::Array2;
use poisongate_detectors::{
    duplicates, metrics, registry, Configured, DatasetView, DetectError, Detector, Fitted, Needs,
    ParamError, Scores,
};
use rayon::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod conclude;
mod dedup;
mod invalid;
mod join;
mod plan;
mod reference;
mod stream;
pub use stream::partitioned::{run_task, Plan, Runner, TaskCache};
mod write;

use conclude::{conclude, Detected, Flags, Shown};
use dedup::{dedup_clusters, keep_first};
use join::join_embeddings;
use plan::{plan, Planned};
pub use write::STAGING_MARK;
use write::{check_target, write_outputs};

/// Everything a scan needs to know. Build it from the CLI or a config file; [`scan`] validates it.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// The dataset (JSONL or Parquet).
    pub data: PathBuf,
    /// Text column name.
    pub text_column: String,
    /// Label column name.
    pub label_column: String,
    /// How rows are read (`--format`); `None`: detected from the first row's keys (or read
    /// with [`ScanOptions::fields`] when those are given).
    pub format: Option<ingest::RowFormat>,
    /// Explicit prompt and response paths (`--prompt-field`, `--response-field`); they take
    /// the place of format detection and cannot be combined with [`ScanOptions::format`].
    pub fields: Option<ingest::FieldSpec>,
    /// Optional id column (else the row number identifies a row).
    pub id_column: Option<String>,
    /// Optional ground-truth column (bool or 0/1), used only for evaluation.
    pub ground_truth_column: Option<String>,
    /// Embeddings stored in a list column of the data.
    pub embedding_column: Option<String>,
    /// Embeddings in a separate `.npy` or `.safetensors` file, row-aligned with the data.
    pub embeddings: Option<PathBuf>,
    /// Tensor name inside a safetensors file holding several.
    pub embeddings_tensor: Option<String>,
    /// Embeddings of the responses of instruction, chat and preference rows (the chosen
    /// answer), in a `.npy` or `.safetensors` file row-aligned with the data; `embeddings` then
    /// holds those of the prompts. INS001 and INS002 group paraphrased responses with them.
    pub response_embeddings: Option<PathBuf>,
    /// A model folder whose embeddings of the text column the scan computes (BERT family,
    /// safetensors only; see [`crate::embed`]). Of instruction, chat and preference rows it
    /// embeds the prompts and the responses, separately.
    pub model: Option<PathBuf>,
    /// Loading options for `model` (token budget, size limit, batch tokens).
    pub model_options: crate::embed::LoadOptions,
    /// Code prefixes to run (`SPEC`, `TRIG001`); `None`: every detector whose inputs are given.
    pub select: Option<Vec<String>>,
    /// Raw parameter table per detector code.
    pub detector_params: BTreeMap<String, toml::Table>,
    /// Seed for every randomised step.
    pub seed: u64,
    /// The gate fails when the quarantined fraction exceeds this.
    pub max_quarantine_fraction: f64,
    /// Rows per scoring batch.
    pub batch_rows: usize,
    /// How many quarantined rows the report lists.
    pub report_rows: usize,
    /// Output folder; `None` writes nothing.
    pub out: Option<PathBuf>,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// Leave wall-clock facts (seconds, thread count) out of the report, so that report.json,
    /// report.html and the provenance statement are byte-identical across runs too.
    pub reproducible: bool,
    /// Whether plain redundant rows are removed from the clean output (into `duplicates.<ext>`).
    pub dedup: Dedup,
    /// What a row that cannot be read does (`--invalid-rows`): stop the scan (the default), or
    /// go to the quarantine output unread with the reason `INVALID:<what>` (see
    /// [`crate::ingest::InvalidRow`]; embeddings with a non-finite value count too).
    pub invalid_rows: InvalidPolicy,
    /// A trusted corpus's state (`poisongate fit`) to judge the data against (`--reference`):
    /// adds REF001, REF002 and REF003, and the file to the inputs.
    pub reference: Option<PathBuf>,
    /// Fit the detectors in rounds over batches of `batch_rows` rows, reading the input once
    /// per round (`--stream`): memory holds a batch and the detectors' states, not the rows.
    /// The same verdicts and report as the in-memory scan; what cannot stream is refused.
    pub stream: bool,
    /// With `stream`: exact groups per slice of DUP002's and DUP003's near-duplicate key space;
    /// round 2 holds one slice's keys at a time, the others in temporary files.
    pub near_slice_groups: u64,
}

/// `scan --dedup`: what happens to plain redundancy (duplicates that carry the same label).
///
/// Redundancy is never poison and never fails the gate; with a mode other than
/// [`Dedup::None`], every row that repeats an earlier, not quarantined row of the same label
/// (after DUP001's normalisation; with [`Dedup::KeepFirstNear`] also within DUP002's
/// near-duplicate clusters) is written to `duplicates.<ext>` with the kept row's number,
/// instead of to the clean output. Quarantine takes precedence: a flagged row is never counted
/// as a duplicate, and the row a duplicate points to is always in the clean output.
///
/// Rows with a prompt and a response (every layout but `text-label`) have no label: there a
/// row repeats another when its prompt and its response both do (preference rows: its prompt,
/// chosen and rejected answers), each text compared as the text of a text-label row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dedup {
    /// Keep every row (the default).
    #[default]
    None,
    /// Remove exact duplicates (normalised text, same label) after the first occurrence.
    KeepFirst,
    /// As [`Dedup::KeepFirst`], and near duplicates too: DUP002's clusters (5-gram MinHash at
    /// its threshold and one-word edits, without embeddings). Clusters are transitive, so a
    /// removed row can differ from the kept one by more than one such step.
    KeepFirstNear,
}

impl Dedup {
    /// The CLI spelling: `none`, `keep-first`, `keep-first-near`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dedup::None => "none",
            Dedup::KeepFirst => "keep-first",
            Dedup::KeepFirstNear => "keep-first-near",
        }
    }

    /// Parse the CLI spelling.
    pub fn parse(s: &str) -> Option<Dedup> {
        [Dedup::None, Dedup::KeepFirst, Dedup::KeepFirstNear]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

impl ScanOptions {
    /// Defaults for scanning `data`.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        ScanOptions {
            data: data.into(),
            text_column: "text".into(),
            label_column: "label".into(),
            format: None,
            fields: None,
            id_column: None,
            ground_truth_column: None,
            embedding_column: None,
            embeddings: None,
            embeddings_tensor: None,
            response_embeddings: None,
            model: None,
            model_options: crate::embed::LoadOptions::default(),
            select: None,
            detector_params: BTreeMap::new(),
            seed: 0,
            max_quarantine_fraction: 0.0,
            batch_rows: 8192,
            report_rows: 100,
            out: None,
            progress: false,
            reproducible: false,
            dedup: Dedup::None,
            invalid_rows: InvalidPolicy::Error,
            reference: None,
            stream: false,
            near_slice_groups: 1 << 18,
        }
    }
}

/// Why a scan could not complete. Every variant means exit code 2 and nothing written.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading or writing a file failed, or its content is malformed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A detector's parameters are invalid.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// A detector failed on this data.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// The options contradict each other or the data.
    #[error("{0}")]
    Config(String),
    /// The model folder could not be used.
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    /// A file-system operation on the output folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ScanError + '_ {
    move |source| ScanError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The result of a scan: the report (also written to `--out`), and the per-row verdicts.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// The report.
    pub report: Report,
    /// Per row: the combined score (highest detector score).
    pub scores: Vec<f64>,
    /// The quarantined rows (by row number in the file) with their reasons.
    pub reasons: BTreeMap<usize, Vec<String>>,
}

impl ScanOutcome {
    /// Exit code of the verdict: 0 when the gate passed, 1 when it failed.
    pub fn exit_code(&self) -> i32 {
        self.report.verdict.exit_code
    }
}

/// Map label values to class indices `0..k`: integers in numeric order, other kinds in
/// lexicographic order.
fn classes(labels: &[String], kind: Option<LabelKind>) -> (Vec<String>, Vec<u32>) {
    // the distinct values, in lexicographic order (borrowed: the labels are not copied)
    let distinct: std::collections::BTreeSet<&str> = labels.iter().map(String::as_str).collect();
    let mut names: Vec<String> = distinct.into_iter().map(str::to_string).collect();
    if kind == Some(LabelKind::Integer) {
        names.sort_by_key(|s| s.parse::<i128>().unwrap_or(0));
    }
    let index: BTreeMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let ids = labels
        .iter()
        .map(|l| index.get(l.as_str()).copied().unwrap_or(0))
        .collect();
    (names, ids)
}

fn progress_bar(show: bool, len: u64, msg: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({elapsed})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

fn settings_json(opts: &ScanOptions, planned: &[Planned]) -> serde_json::Value {
    let params: serde_json::Map<String, serde_json::Value> = planned
        .iter()
        .map(|p| (p.detector.meta().code.to_string(), p.configured.params()))
        .collect();
    let mut settings = json!({
        "data": opts.data.display().to_string(),
        "text_column": opts.text_column,
        "label_column": opts.label_column,
        "id_column": opts.id_column,
        "ground_truth_column": opts.ground_truth_column,
        "embedding_column": opts.embedding_column,
        "embeddings": opts.embeddings.as_ref().map(|p| p.display().to_string()),
        "embeddings_tensor": opts.embeddings_tensor,
        "response_embeddings": opts.response_embeddings.as_ref().map(|p| p.display().to_string()),
        "select": opts.select,
        "detectors": params,
        "seed": opts.seed,
        "max_quarantine_fraction": opts.max_quarantine_fraction,
        "batch_rows": opts.batch_rows,
        "report_rows": opts.report_rows,
        "dedup": opts.dedup.as_str(),
        "invalid_rows": opts.invalid_rows.as_str(),
        "reference": opts.reference.as_ref().map(|p| p.display().to_string()),
        "engine": if opts.stream { "streaming" } else { "in-memory" },
    });
    if opts.stream {
        settings["near_slice_groups"] = json!(opts.near_slice_groups);
    }
    settings
}

/// The input entry of an embedding matrix read from `path` for the role `role`, once its row
/// count is checked against the data's `n` rows.
fn checked_matrix(
    opts: &ScanOptions,
    role: &'static str,
    path: &std::path::Path,
    m: &Array2<f32>,
    digest: &FileDigest,
    n: usize,
) -> Result<InputEntry, ScanError> {
    if m.nrows() != n {
        return Err(ScanError::Config(format!(
            "row count mismatch: {} {} has {} rows but data {} has {} rows",
            role.replace('_', " "),
            path.display(),
            m.nrows(),
            opts.data.display(),
            n
        )));
    }
    Ok(input_entry(role, digest, m.nrows(), Some(m.ncols())))
}

fn input_entry(role: &'static str, d: &FileDigest, rows: usize, dims: Option<usize>) -> InputEntry {
    InputEntry {
        role,
        path: d.path.display().to_string(),
        bytes: d.bytes,
        rows,
        sha256: d.sha256.clone(),
        dims,
        files: d.parts.clone(),
    }
}

/// The row layout of the input and why: given, or detected from its first row.
fn layout(opts: &ScanOptions) -> Result<(RowLayout, String), ScanError> {
    Ok(match (&opts.fields, opts.format) {
        (Some(_), Some(f)) => {
            return Err(ScanError::Config(format!(
                "give either --format ({}) or --prompt-field and --response-field, not both",
                f.name()
            )))
        }
        (Some(fields), None) => (
            RowLayout::Fields(fields.clone()),
            "given (--prompt-field, --response-field); the format is not detected".to_string(),
        ),
        (None, Some(f)) => (f.into(), "given (--format)".to_string()),
        (None, None) => {
            let keys = ingest::first_row_keys(&opts.data)?;
            let (f, reason) = RowFormat::detect(&keys, &opts.text_column);
            (f.into(), reason)
        }
    })
}

/// Run a scan. Writes `clean.<ext>`, `quarantine.<ext>`, `report.json`, `report.html` and
/// `provenance.intoto.json` into `opts.out` when given (all or nothing), and returns the report.
pub fn scan(opts: &ScanOptions) -> Result<ScanOutcome, ScanError> {
    scan_with(opts, None)
}

/// [`scan`] with the detectors' rounds run over partitions of the input by `runner` (a cluster
/// engine; see [`Runner`]): the verdicts and report of `scan` with `stream`, and the engine
/// and partition count in the report's settings.
pub fn scan_partitioned(
    opts: &ScanOptions,
    runner: &mut dyn Runner,
) -> Result<ScanOutcome, ScanError> {
    let mut o = opts.clone();
    o.stream = true;
    scan_with(&o, Some(runner))
}

fn scan_with(
    opts: &ScanOptions,
    runner: Option<&mut dyn Runner>,
) -> Result<ScanOutcome, ScanError> {
    let t0 = Instant::now();
    if !(0.0..=1.0).contains(&opts.max_quarantine_fraction) {
        return Err(ScanError::Config(format!(
            "--max-quarantine-fraction must be in [0, 1], got {}",
            opts.max_quarantine_fraction
        )));
    }
    if opts.batch_rows == 0 {
        return Err(ScanError::Config("batch_rows must be at least 1".into()));
    }
    // an --out that cannot take the result is refused before any work (and again at the end)
    if let Some(out) = &opts.out {
        check_target(out)?;
    }
    // an embeddings *table* (.jsonl/.parquet) is joined by id; --embedding-column then names its
    // vector column
    let emb_table = opts
        .embeddings
        .as_ref()
        .is_some_and(|p| ingest::Format::from_path(p).is_ok());
    if opts.embeddings.is_some() && opts.embedding_column.is_some() && !emb_table {
        return Err(ScanError::Config(
            "give either --embeddings FILE.npy|.safetensors or --embedding-column, not both".into(),
        ));
    }
    if opts.model.is_some() && (opts.embeddings.is_some() || opts.embedding_column.is_some()) {
        return Err(ScanError::Config(
            "give either --model DIR or --embeddings / --embedding-column, not both".into(),
        ));
    }
    if let Some(gt) = &opts.ground_truth_column {
        if gt == &opts.label_column || gt == &opts.text_column {
            return Err(ScanError::Config(format!(
                "the ground-truth column `{gt}` cannot also be the text or label column"
            )));
        }
    }
    let (format, format_reason) = layout(opts)?;
    let reference = opts
        .reference
        .as_deref()
        .map(|p| reference::load(opts, p))
        .transpose()?;
    let (planned, skipped) = plan(opts, &format, reference.as_ref().map(|r| &r.state))?;
    let mut needs = planned
        .iter()
        .fold(Needs::default(), |n, p| n.union(p.configured.needs()));
    let dedup_params = match opts.dedup {
        Dedup::None => None,
        mode => {
            let near = mode == Dedup::KeepFirstNear;
            let empty = toml::Table::new();
            let code = if near { "DUP002" } else { "DUP001" };
            let table = opts.detector_params.get(code).unwrap_or(&empty);
            // redundancy is judged on text and label together (prompt and response, when the
            // rows have them)
            needs.text = true;
            needs.labels = true;
            Some(duplicates::dedup_params(near, table)?)
        }
    };

    // instruction rows: the detectors of prompts and responses (INS001, INS002) use the
    // response embeddings when the scan has them, and the prompts' are read or computed too
    let instruct_embed = format.has_responses()
        && planned.iter().any(|p| p.configured.needs().responses)
        && (opts.model.is_some()
            || opts.embeddings.is_some()
            || opts.embedding_column.is_some()
            || opts.response_embeddings.is_some());
    if opts.response_embeddings.is_some() {
        if !format.has_responses() {
            return Err(ScanError::Config(format!(
                "--response-embeddings needs rows with responses (alpaca, chat, sharegpt, \
                 preference); the data is read as {}",
                format.name()
            )));
        }
        if opts.model.is_some() {
            return Err(ScanError::Config(
                "give either --model DIR or --response-embeddings FILE, not both".into(),
            ));
        }
    }
    needs.embeddings |= instruct_embed
        && (opts.model.is_some() || opts.embeddings.is_some() || opts.embedding_column.is_some());
    // embeddings computed from the text need the text
    let embed_text = needs.embeddings && opts.model.is_some();
    needs.text |= embed_text;

    if opts.stream {
        let name = runner.as_ref().map(|r| r.engine());
        let streamed = stream::detect(opts, &format, &planned, runner)?;
        let engine = name.zip(streamed.partitions);
        let total = streamed.table.n_rows;
        let mut inputs = vec![input_entry("data", &streamed.table.digest, total, None)];
        inputs.extend(streamed.matrix);
        return conclude(
            opts,
            Detected {
                t0,
                planned,
                skipped,
                format,
                format_reason,
                inputs,
                rows: invalid::Rows::new(total, Vec::new()),
                table: streamed.table,
                label_idx: None,
                model_info: None,
                dedup_params,
                per_detector: streamed.per_detector,
                combined: streamed.combined,
                shown: Some(streamed.shown),
                total,
                quarantine_invalid: false,
                engine,
            },
        );
    }

    // ---- ingest (only the columns some detector needs) ----
    let spec = ColumnSpec {
        text: (needs.text && !format.has_responses()).then(|| opts.text_column.clone()),
        label: (needs.labels && !format.has_responses()).then(|| opts.label_column.clone()),
        id: opts.id_column.clone(),
        ground_truth: opts.ground_truth_column.clone(),
        embedding: if needs.embeddings && opts.embeddings.is_none() {
            opts.embedding_column.clone()
        } else {
            None
        },
        rows: format.clone(),
        // preference rows: INS001 reads the rejected answers, and --dedup compares them
        rejected: true,
        invalid: opts.invalid_rows,
    };
    let quarantine_invalid = opts.invalid_rows == InvalidPolicy::Quarantine;
    let spinner = progress_bar(opts.progress, 1, "reading");
    // a matrix file does not depend on the table: both are read (and hashed) at once
    let read_matrix = |path: &Path| {
        if quarantine_invalid {
            ingest::read_embeddings_allowing_nonfinite(path, opts.embeddings_tensor.as_deref())
        } else {
            ingest::read_embeddings(path, opts.embeddings_tensor.as_deref())
                .map(|(m, d)| (m, d, Vec::new()))
        }
    };
    let matrix_path = opts
        .embeddings
        .as_deref()
        .filter(|_| needs.embeddings && !emb_table);
    let (table, matrix) = rayon::join(
        || ingest::read_table(&opts.data, &spec),
        || matrix_path.map(read_matrix),
    );
    // the table's error first, as when read one after the other
    let mut table: Table = table?;
    let mut matrix = matrix.transpose()?;
    let mut inputs = vec![input_entry("data", &table.digest, table.n_rows, None)];
    if let Some(r) = &reference {
        inputs.push(input_entry(
            "reference",
            &r.digest,
            usize::try_from(r.state.rows()).unwrap_or(usize::MAX),
            None,
        ));
    }
    let total = table.n_rows;
    let mut rows = invalid::Rows::new(total, std::mem::take(&mut table.invalid));
    // a matrix file's rows with a non-finite value: invalid rows too (or the error)
    let nonfinite = |bad: Vec<(usize, IngestError)>| {
        bad.into_iter()
            .map(|(i, e)| (i, "embedding-nonfinite", e, ingest::RowRef::Row(i + 1)))
            .collect::<Vec<_>>()
    };
    // moved out, not copied: the matrix is the largest thing a scan holds
    let mut embeddings: Option<Array2<f32>> = table.embeddings.take();
    if needs.embeddings {
        if let Some(path) = &opts.embeddings {
            let (m, digest, bad) = match matrix.take() {
                Some(read) => read,
                None => {
                    let (m, d) =
                        join_embeddings(opts, path, &table, &|r| rows.invalid.contains_key(&r))?;
                    (m, d, Vec::new())
                }
            };
            inputs.push(checked_matrix(
                opts,
                "embeddings",
                path,
                &m,
                &digest,
                total,
            )?);
            rows.mark(nonfinite(bad));
            embeddings = Some(m);
        }
    }
    let mut response_embeddings: Option<Array2<f32>> = None;
    if let (true, Some(path)) = (instruct_embed, &opts.response_embeddings) {
        let (m, digest, bad) = read_matrix(path)?;
        inputs.push(checked_matrix(
            opts,
            "response_embeddings",
            path,
            &m,
            &digest,
            total,
        )?);
        rows.mark(nonfinite(bad));
        response_embeddings = Some(m);
    }
    // the detectors see the readable rows only
    rows.drop_invalid(&mut table, &mut [&mut embeddings, &mut response_embeddings]);
    spinner.finish_and_clear();
    let mut model_info = None;
    if let (true, Some(dir)) = (embed_text, &opts.model) {
        let embedder = crate::embed::Embedder::load(dir, &opts.model_options)?;
        let texts = table.texts.as_deref().unwrap_or_default();
        let pb = crate::embed::progress_bar(opts.progress, 0);
        let m = embedder.embed(texts, &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        })?;
        pb.finish_and_clear();
        for f in &embedder.info().files {
            inputs.push(InputEntry {
                role: "model",
                path: f.path.display().to_string(),
                bytes: f.bytes,
                rows: 0,
                sha256: f.sha256.clone(),
                dims: None,
                files: Vec::new(),
            });
        }
        model_info = Some(embedder.info().to_json());
        let bad = computed_nonfinite(opts, &m, quarantine_invalid, &rows.orig)?;
        rows.mark(bad);
        embeddings = Some(m);
        if let (true, Some(responses)) = (instruct_embed, table.responses.as_deref()) {
            let pb = crate::embed::progress_bar(opts.progress, 0);
            let r = embedder.embed(responses, &mut |done, total| {
                pb.set_length(total as u64);
                pb.set_position(done as u64);
            })?;
            pb.finish_and_clear();
            let bad = computed_nonfinite(opts, &r, quarantine_invalid, &rows.orig)?;
            rows.mark(bad);
            response_embeddings = Some(r);
            if let Some(o) = model_info.as_mut().and_then(|v| v.as_object_mut()) {
                o.insert("embedded".into(), json!(["prompts", "responses"]));
            }
        }
    }
    rows.drop_invalid(&mut table, &mut [&mut embeddings, &mut response_embeddings]);
    let n = table.n_rows;
    if n == 0 {
        let first = rows
            .invalid
            .values()
            .next()
            .map_or_else(String::new, |r| format!(" (the first: {})", r.message));
        return Err(ScanError::Config(format!(
            "{}: none of the {total} rows can be read{first}",
            opts.data.display()
        )));
    }
    let (class_names, label_idx) = match &table.labels {
        Some(l) => {
            let (names, idx) = classes(l, table.label_kind);
            (names, Some(idx))
        }
        None => (Vec::new(), None),
    };
    let view = DatasetView {
        n_rows: n,
        texts: table.texts.as_deref(),
        labels: label_idx.as_deref(),
        class_names: &class_names,
        embeddings: embeddings.as_ref().map(|e| e.view()),
        response_embeddings: response_embeddings.as_ref().map(|e| e.view()),
        responses: table.responses.as_deref(),
        rejected: table.rejected.as_deref(),
    };

    // ---- fit (barrier) then score (parallel batches) per detector ----
    // The detectors are independent of one another: they run concurrently (each also spreads
    // its own work over the thread pool), and each one's result does not depend on what runs
    // beside it. Results are taken in plan order, errors too, so the first failing detector
    // of the plan is the one reported whatever finished first.
    // the embedding model's matrix products leave the vector registers' upper halves in use
    // on the threads that ran them; cleared on every thread before the detectors' arithmetic
    // (see `clear_upper_simd`)
    rayon::broadcast(|_| poisongate_detectors::clear_upper_simd());
    poisongate_detectors::clear_upper_simd();
    // scored in batches of at most batch_rows rows, and in at least one batch per thread when
    // there are rows enough (a row's score does not depend on the batch it is scored in)
    let step = opts
        .batch_rows
        .min(n.div_ceil(rayon::current_num_threads().max(1)))
        .max(1);
    let starts: Vec<usize> = (0..n).step_by(step).collect();
    let bars = if opts.progress {
        MultiProgress::new()
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    };
    let run_one = |p: &Planned| -> Result<(Scores, f64, serde_json::Value), ScanError> {
        let t = Instant::now();
        let fitted: Box<dyn Fitted> = p.configured.fit(&view)?;
        let pb = bars.add(progress_bar(
            opts.progress,
            starts.len() as u64,
            p.detector.meta().code,
        ));
        let parts: Vec<Scores> = starts
            .par_iter()
            .map(|&s| {
                let r = fitted.score(&view.batch(s, (s + step).min(n)));
                pb.inc(1);
                r
            })
            .collect::<Result<_, _>>()?;
        pb.finish_and_clear();
        let mut scores = Scores::with_capacity(n);
        for part in parts {
            scores.extend(part);
        }
        if scores.len() != n {
            return Err(ScanError::Detect(DetectError::Data {
                code: p.detector.meta().code,
                problem: format!("scored {} rows of {n}", scores.len()),
            }));
        }
        Ok((scores, t.elapsed().as_secs_f64(), fitted.summary()))
    };
    let results: Vec<Result<(Scores, f64, serde_json::Value), ScanError>> =
        planned.par_iter().map(run_one).collect();
    let mut per_detector: Vec<Flags> = Vec::with_capacity(results.len());
    let mut combined = vec![0f64; n];
    for r in results {
        let (scores, seconds, summary) = r?;
        let mut f = Flags::new(table.ground_truth.is_some(), summary);
        f.seconds = seconds;
        f.add(0, scores, &mut combined);
        per_detector.push(f);
    }

    conclude(
        opts,
        Detected {
            t0,
            planned,
            skipped,
            format,
            format_reason,
            inputs,
            table,
            rows,
            label_idx,
            model_info,
            dedup_params,
            per_detector,
            combined,
            shown: None,
            total,
            quarantine_invalid,
            engine: None,
        },
    )
}

/// Rows found invalid: (index in the filtered table, what, the error, where).
type Found = Vec<(usize, &'static str, IngestError, ingest::RowRef)>;

/// The rows of a computed embedding matrix holding a non-finite value (`orig`: each matrix
/// row's row number in the file), as invalid rows under `--invalid-rows quarantine`, else the
/// error naming the first.
fn computed_nonfinite(
    opts: &ScanOptions,
    m: &Array2<f32>,
    quarantine: bool,
    orig: &[usize],
) -> Result<Found, ScanError> {
    let model = opts
        .model
        .as_deref()
        .map_or_else(String::new, |p| p.display().to_string());
    let mut found = Vec::new();
    for (i, row) in m.outer_iter().enumerate() {
        let Some((j, v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) else {
            continue;
        };
        let at = ingest::RowRef::Row(orig.get(i).map_or(i, |r| *r) + 1);
        let err = IngestError::InvalidValue {
            path: opts.data.clone(),
            row: Some(at),
            column: None,
            message: format!(
                "the embedding computed by {model} holds {v} at index {j} (0-based); \
                 non-finite values are refused"
            ),
        };
        if !quarantine {
            return Err(ScanError::Ingest(err));
        }
        found.push((i, "embedding-nonfinite", err, at));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_classes_sort_numerically() {
        let labels: Vec<String> = ["10", "2", "2", "-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (names, idx) = classes(&labels, Some(LabelKind::Integer));
        assert_eq!(names, vec!["-1", "2", "10"]);
        assert_eq!(idx, vec![2, 1, 1, 0]);
    }
}
