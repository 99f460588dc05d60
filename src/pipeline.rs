//! The scan: ingest → align → fit → score (parallel batches) → combine → emit → report.

use crate::emit::{self, OutputFile, Quarantine};
use crate::ingest::{
    self, ColumnSpec, FileDigest, IngestError, LabelKind, RowFormat, RowLayout, Table,
};
use crate::report::{
    DedupSection, DetectorEntry, EvaluationSection, InputEntry, OutputEntry, QuarantinedRow,
    Reconciliation, Report, Run, Skipped, Tool, Verdict, SCHEMA_VERSION,
};
use crate::{html, provenance};
use indicatif::{ProgressBar, ProgressStyle};
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
    /// A model folder whose embeddings of the text column the scan computes (BERT family,
    /// safetensors only; see [`crate::embed`]).
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
    /// Per row: reasons when quarantined (empty when clean).
    pub reasons: Vec<Vec<String>>,
}

impl ScanOutcome {
    /// Exit code of the verdict: 0 when the gate passed, 1 when it failed.
    pub fn exit_code(&self) -> i32 {
        self.report.verdict.exit_code
    }
}

struct Planned {
    detector: &'static dyn Detector,
    configured: Box<dyn Configured>,
}

/// Decide which detectors run, with their checked parameters. Returns the plan and the
/// detectors left out (only when no explicit selection was made).
fn plan(opts: &ScanOptions, format: &RowLayout) -> Result<(Vec<Planned>, Vec<Skipped>), ScanError> {
    for (code, table) in &opts.detector_params {
        let Some(d) = registry::find(code) else {
            return Err(ScanError::Config(format!(
                "parameters given for unknown detector `{code}` (see `poisongate list`)"
            )));
        };
        // every table is checked, also that of a detector this scan does not run: a misspelt
        // parameter of an opt-in detector must not pass unnoticed
        d.configure(table)?;
    }
    let chosen: Vec<&'static dyn Detector> = match &opts.select {
        Some(prefixes) => {
            let p: Vec<&str> = prefixes.iter().map(String::as_str).collect();
            registry::select(&p).map_err(|bad| {
                ScanError::Config(format!(
                    "--select {bad} matches no detector (see `poisongate list`)"
                ))
            })?
        }
        None => registry::default_selection(),
    };
    let has_embeddings =
        opts.embeddings.is_some() || opts.embedding_column.is_some() || opts.model.is_some();
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    for d in chosen {
        let empty = toml::Table::new();
        let params = opts.detector_params.get(d.meta().code).unwrap_or(&empty);
        let configured = d.configure(params)?;
        let needs = configured.needs();
        let missing = if format.has_responses() && needs.labels {
            Some("needs a label column; instruction, chat and preference rows have none")
        } else if !format.has_responses() && needs.responses {
            Some("needs prompt and response rows (--format alpaca, chat, sharegpt or preference)")
        } else {
            None
        };
        if let Some(reason) = missing {
            if opts.select.is_some() {
                return Err(ScanError::Config(format!(
                    "{} {reason} (the data is read as {})",
                    d.meta().code,
                    format.name()
                )));
            }
            skipped.push(Skipped {
                code: d.meta().code,
                reason: reason.into(),
            });
            continue;
        }
        if configured.needs().embeddings && !has_embeddings {
            if opts.select.is_some() {
                return Err(ScanError::Config(format!(
                    "{} needs embeddings: pass --embeddings FILE, --embedding-column COLUMN or --model DIR",
                    d.meta().code
                )));
            }
            skipped.push(Skipped {
                code: d.meta().code,
                reason:
                    "needs embeddings; none given (--embeddings, --embedding-column or --model)"
                        .into(),
            });
            continue;
        }
        planned.push(Planned {
            detector: d,
            configured,
        });
    }
    if planned.is_empty() {
        return Err(ScanError::Config(
            "no detector can run on the given inputs".into(),
        ));
    }
    Ok((planned, skipped))
}

/// Map label values to class indices `0..k`: integers in numeric order, other kinds in
/// lexicographic order.
fn classes(labels: &[String], kind: Option<LabelKind>) -> (Vec<String>, Vec<u32>) {
    let mut names: Vec<String> = labels.to_vec();
    names.sort();
    names.dedup();
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
    json!({
        "data": opts.data.display().to_string(),
        "text_column": opts.text_column,
        "label_column": opts.label_column,
        "id_column": opts.id_column,
        "ground_truth_column": opts.ground_truth_column,
        "embedding_column": opts.embedding_column,
        "embeddings": opts.embeddings.as_ref().map(|p| p.display().to_string()),
        "embeddings_tensor": opts.embeddings_tensor,
        "select": opts.select,
        "detectors": params,
        "seed": opts.seed,
        "max_quarantine_fraction": opts.max_quarantine_fraction,
        "batch_rows": opts.batch_rows,
        "report_rows": opts.report_rows,
        "dedup": opts.dedup.as_str(),
    })
}

fn input_entry(role: &'static str, d: &FileDigest, rows: usize, dims: Option<usize>) -> InputEntry {
    InputEntry {
        role,
        path: d.path.display().to_string(),
        bytes: d.bytes,
        rows,
        sha256: d.sha256.clone(),
        dims,
    }
}

/// Reads embeddings from a JSONL/Parquet table with an id column and a vector column
/// (`--embedding-column`, default `embedding`) and orders them like the data's rows, joined on
/// `--id-column`. Every data id needs exactly one embedding row.
fn join_embeddings(
    opts: &ScanOptions,
    path: &Path,
    table: &Table,
) -> Result<(Array2<f32>, FileDigest), ScanError> {
    let id_col = opts.id_column.clone().ok_or_else(|| {
        ScanError::Config(format!(
            "embeddings table {} is joined by id: pass --id-column, a column of both files",
            path.display()
        ))
    })?;
    let spec = ColumnSpec {
        id: Some(id_col.clone()),
        embedding: Some(
            opts.embedding_column
                .clone()
                .unwrap_or_else(|| "embedding".into()),
        ),
        ..ColumnSpec::default()
    };
    let t = ingest::read_table(path, &spec)?;
    let (Some(ids), Some(m)) = (t.ids.as_ref(), t.embeddings.as_ref()) else {
        return Err(ScanError::Config(format!(
            "embeddings table {} yielded no ids or vectors",
            path.display()
        )));
    };
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(prev) = at.insert(id.as_str(), i) {
            return Err(ScanError::Config(format!(
                "embeddings table {}: id `{id}` appears twice (rows {} and {})",
                path.display(),
                prev + 1,
                i + 1
            )));
        }
    }
    let data_ids = table.ids.as_ref().ok_or_else(|| {
        ScanError::Config(format!(
            "data {} has no id column `{id_col}`",
            opts.data.display()
        ))
    })?;
    let mut out = Array2::<f32>::zeros((data_ids.len(), m.ncols()));
    for (r, id) in data_ids.iter().enumerate() {
        let Some(&src) = at.get(id.as_str()) else {
            return Err(ScanError::Config(format!(
                "row {} of data {}: id `{id}` has no embedding in {} (data has {} rows, embeddings {} rows)",
                r + 1,
                opts.data.display(),
                path.display(),
                data_ids.len(),
                ids.len()
            )));
        };
        out.row_mut(r).assign(&m.row(src));
    }
    Ok((out, t.digest))
}

/// Run a scan. Writes `clean.<ext>`, `quarantine.<ext>`, `report.json`, `report.html` and
/// `provenance.intoto.json` into `opts.out` when given (all or nothing), and returns the report.
pub fn scan(opts: &ScanOptions) -> Result<ScanOutcome, ScanError> {
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
    let (format, format_reason): (RowLayout, String) = match (&opts.fields, opts.format) {
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
    };
    let (planned, skipped) = plan(opts, &format)?;
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

    // embeddings computed from the text need the text
    let embed_text = needs.embeddings && opts.model.is_some();
    needs.text |= embed_text;

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
        // preference rows are compared on their rejected answers too
        rejected: dedup_params.is_some(),
    };
    let spinner = progress_bar(opts.progress, 1, "reading");
    let mut table: Table = ingest::read_table(&opts.data, &spec)?;
    let mut inputs = vec![input_entry("data", &table.digest, table.n_rows, None)];
    let n = table.n_rows;
    // moved out, not copied: the matrix is the largest thing a scan holds
    let mut embeddings: Option<Array2<f32>> = table.embeddings.take();
    if needs.embeddings {
        if let Some(path) = &opts.embeddings {
            let (m, digest) = if emb_table {
                join_embeddings(opts, path, &table)?
            } else {
                ingest::read_embeddings(path, opts.embeddings_tensor.as_deref())?
            };
            inputs.push(input_entry(
                "embeddings",
                &digest,
                m.nrows(),
                Some(m.ncols()),
            ));
            if m.nrows() != n {
                return Err(ScanError::Config(format!(
                    "row count mismatch: embeddings {} has {} rows but data {} has {} rows",
                    path.display(),
                    m.nrows(),
                    opts.data.display(),
                    n
                )));
            }
            embeddings = Some(m);
        }
    }
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
            });
        }
        model_info = Some(embedder.info().to_json());
        embeddings = Some(m);
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
        responses: table.responses.as_deref(),
    };

    // ---- fit (barrier) then score (parallel batches) per detector ----
    let starts: Vec<usize> = (0..n).step_by(opts.batch_rows).collect();
    let mut per_detector: Vec<(Scores, f64, serde_json::Value)> = Vec::new();
    for p in &planned {
        let t = Instant::now();
        let fitted: Box<dyn Fitted> = p.configured.fit(&view)?;
        let pb = progress_bar(opts.progress, starts.len() as u64, p.detector.meta().code);
        let parts: Vec<Scores> = starts
            .par_iter()
            .map(|&s| {
                let r = fitted.score(&view.batch(s, (s + opts.batch_rows).min(n)));
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
        per_detector.push((scores, t.elapsed().as_secs_f64(), fitted.summary()));
    }

    // ---- combine: a row is quarantined when any detector flags it ----
    let mut combined = vec![0f64; n];
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); n];
    for (scores, _, _) in &per_detector {
        for i in 0..n {
            combined[i] = combined[i].max(scores.score[i]);
            if let Some(r) = &scores.reason[i] {
                reasons[i].push(r.clone());
            }
        }
    }
    let quarantined = reasons.iter().filter(|r| !r.is_empty()).count();

    // ---- plain redundancy (--dedup): never poison, removed only when asked ----
    let (duplicate_of, dedup_section) = match (&dedup_params, table.texts.as_deref()) {
        (Some(p), Some(texts)) => {
            let flagged: Vec<bool> = reasons.iter().map(|r| !r.is_empty()).collect();
            let (clusters, key) = dedup_clusters(&table, texts, &format, p);
            // rows with responses have no labels: there the clusters hold the whole key
            let (dup, mut section) =
                keep_first(&clusters, label_idx.as_deref(), &flagged, opts.dedup);
            section.key = key.0;
            section.note = key.1;
            (Some(dup), Some(section))
        }
        _ => (None, None),
    };
    let duplicate_rows = duplicate_of
        .as_ref()
        .map_or(0, |d| d.iter().filter(|x| x.is_some()).count());

    // ---- evaluation (ground truth never reaches a detector) ----
    let evaluation = table.ground_truth.as_ref().map(|truth| {
        let flags: Vec<bool> = reasons.iter().map(|r| !r.is_empty()).collect();
        let mut by_code = BTreeMap::new();
        for (p, (scores, _, _)) in planned.iter().zip(&per_detector) {
            let f: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
            by_code.insert(
                p.detector.meta().code.to_string(),
                metrics::evaluate(&f, &scores.score, truth),
            );
        }
        EvaluationSection {
            ground_truth_column: opts.ground_truth_column.clone().unwrap_or_default(),
            positives: truth.iter().filter(|t| **t).count(),
            combined: metrics::evaluate(&flags, &combined, truth),
            detectors: by_code,
        }
    });

    // ---- report body ----
    let mut settings = settings_json(opts, &planned);
    settings["format"] = json!({"name": format.name(), "reason": format_reason});
    if let RowLayout::Fields(fields) = &format {
        // {name: "fields", prompt: [paths], response: path, reason}
        if let (Some(f), serde_json::Value::Object(paths)) =
            (settings["format"].as_object_mut(), fields.to_json())
        {
            f.extend(paths);
        }
    }
    if let Some(mut info) = model_info {
        // the files are inputs (with their digests); the rest is how they were used
        if let Some(o) = info.as_object_mut() {
            o.remove("files");
        }
        settings["model"] = info;
    }
    let settings_digest = hex::encode(Sha256::digest(settings.to_string().as_bytes()));
    let detectors: Vec<DetectorEntry> = planned
        .iter()
        .zip(per_detector)
        .map(|(p, (scores, seconds, summary))| DetectorEntry {
            code: p.detector.meta().code,
            name: p.detector.meta().name,
            version: p.detector.meta().version,
            params: p.configured.params(),
            flagged: scores.reason.iter().filter(|r| r.is_some()).count(),
            summary,
            seconds,
        })
        .collect();
    let mut top: Vec<usize> = (0..n).filter(|&i| !reasons[i].is_empty()).collect();
    top.sort_by(|&a, &b| combined[b].total_cmp(&combined[a]).then(a.cmp(&b)));
    top.truncate(opts.report_rows);
    let quarantined_rows = top
        .into_iter()
        .map(|i| QuarantinedRow {
            row: i,
            id: table.ids.as_ref().and_then(|ids| ids.get(i).cloned()),
            score: combined[i],
            reasons: reasons[i].clone(),
        })
        .collect();
    let fraction = if n == 0 {
        0.0
    } else {
        quarantined as f64 / n as f64
    };
    let passed = fraction <= opts.max_quarantine_fraction;
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        tool: Tool {
            name: "poisongate",
            version: env!("CARGO_PKG_VERSION"),
        },
        settings,
        settings_digest,
        inputs,
        detectors,
        skipped_detectors: skipped,
        outputs: Vec::new(),
        reconciliation: Reconciliation {
            input_rows: n,
            clean_rows: n - quarantined - duplicate_rows,
            quarantined_rows: quarantined,
            duplicate_rows,
            balanced: true,
        },
        dedup: dedup_section,
        quarantined_rows,
        verdict: Verdict {
            status: if passed { "pass" } else { "fail" },
            quarantined_fraction: fraction,
            max_quarantine_fraction: opts.max_quarantine_fraction,
            exit_code: if passed { 0 } else { 1 },
        },
        evaluation,
        run: Run {
            threads: rayon::current_num_threads(),
            seconds: 0.0,
        },
    };

    // ---- emit: all files staged, then renamed into place ----
    if let Some(out) = &opts.out {
        let verdicts: Vec<Option<Quarantine>> = (0..n)
            .map(|i| {
                (!reasons[i].is_empty()).then(|| Quarantine {
                    score: combined[i],
                    reasons: reasons[i].clone(),
                })
            })
            .collect();
        let excerpts: BTreeMap<usize, String> = match &table.texts {
            Some(texts) => report
                .quarantined_rows
                .iter()
                .filter_map(|q| texts.get(q.row).map(|t| (q.row, html::excerpt(t))))
                .collect(),
            None => BTreeMap::new(),
        };
        report.run.seconds = t0.elapsed().as_secs_f64();
        if opts.reproducible {
            report.make_reproducible();
        }
        write_outputs(
            opts,
            &table,
            &verdicts,
            duplicate_of.as_deref(),
            &excerpts,
            out,
            &mut report,
        )?;
    } else {
        report.run.seconds = t0.elapsed().as_secs_f64();
        if opts.reproducible {
            report.make_reproducible();
        }
    }
    Ok(ScanOutcome {
        report,
        scores: combined,
        reasons,
    })
}

/// Stage every output in a temporary folder inside `out`, check the reconciliation against
/// what was written, render `report.html`, attest everything in `provenance.intoto.json`, then
/// rename the files into place. On error nothing is left behind (a folder this call created is
/// removed again; in an existing folder, the files this call already renamed are removed).
fn write_outputs(
    opts: &ScanOptions,
    table: &Table,
    verdicts: &[Option<Quarantine>],
    duplicate_of: Option<&[Option<usize>]>,
    excerpts: &BTreeMap<usize, String>,
    out: &Path,
    report: &mut Report,
) -> Result<(), ScanError> {
    let created = !out.exists();
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let mut renamed: Vec<PathBuf> = Vec::new();
    let result = (|| {
        let staging = tempfile::Builder::new()
            .prefix(".poisongate-staging-")
            .tempdir_in(out)
            .map_err(io_err(out))?;
        let split = emit::write_split_dedup(
            &opts.data,
            table.format,
            &table.digest.sha256,
            verdicts,
            duplicate_of,
            table.ids.as_deref(),
            staging.path(),
        )?;
        let (clean, quarantine): (OutputFile, OutputFile) = (split.clean, split.quarantine);
        let dups = split.duplicates;
        let dup_rows = dups.as_ref().map_or(0, |d| d.rows);
        let rec = &mut report.reconciliation;
        rec.clean_rows = clean.rows;
        rec.quarantined_rows = quarantine.rows;
        rec.balanced = clean.rows + quarantine.rows + dup_rows == rec.input_rows
            && dup_rows == rec.duplicate_rows;
        if !rec.balanced {
            return Err(ScanError::Config(format!(
                "reconciliation failed: {} input rows, but {} clean + {} quarantined + {} duplicates written ({} duplicates expected)",
                rec.input_rows, clean.rows, quarantine.rows, dup_rows, rec.duplicate_rows
            )));
        }
        report.outputs = [("clean", &clean), ("quarantine", &quarantine)]
            .into_iter()
            .chain(dups.as_ref().map(|d| ("duplicates", d)))
            .map(|(role, f)| OutputEntry {
                role,
                path: file_name(&f.path),
                rows: f.rows,
                bytes: f.bytes,
                sha256: f.sha256.clone(),
            })
            .collect();
        let report_path = staging.path().join("report.json");
        let mut text = serde_json::to_string_pretty(report)
            .map_err(|e| ScanError::Config(format!("cannot serialise the report: {e}")))?;
        text.push('\n');
        let report_sha = hex::encode(Sha256::digest(text.as_bytes()));
        std::fs::write(&report_path, text).map_err(io_err(&report_path))?;
        let html_path = staging.path().join(html::FILE_NAME);
        let page = html::render(report, excerpts);
        let html_sha = hex::encode(Sha256::digest(page.as_bytes()));
        std::fs::write(&html_path, page).map_err(io_err(&html_path))?;
        let subjects: Vec<provenance::Subject> = [
            (file_name(&clean.path), clean.sha256.clone()),
            (file_name(&quarantine.path), quarantine.sha256.clone()),
        ]
        .into_iter()
        .chain(
            dups.as_ref()
                .map(|d| (file_name(&d.path), d.sha256.clone())),
        )
        .chain([
            ("report.json".to_string(), report_sha),
            (html::FILE_NAME.to_string(), html_sha),
        ])
        .map(|(name, sha256)| provenance::Subject { name, sha256 })
        .collect();
        let prov_path = staging.path().join(provenance::FILE_NAME);
        let statement = provenance::statement(report, &subjects);
        std::fs::write(&prov_path, provenance::to_bytes(&statement)).map_err(io_err(&prov_path))?;
        // the statement last: a folder holding it holds everything it names
        let mut files = vec![&clean.path, &quarantine.path];
        files.extend(dups.as_ref().map(|d| &d.path));
        files.extend([&report_path, &html_path, &prov_path]);
        for f in files {
            let dest = out.join(file_name(f));
            std::fs::rename(f, &dest).map_err(io_err(&dest))?;
            renamed.push(dest);
        }
        Ok(())
    })();
    if result.is_err() {
        if created {
            let _ = std::fs::remove_dir_all(out);
        } else {
            for f in &renamed {
                let _ = std::fs::remove_file(f);
            }
        }
    }
    result
}

/// The rows' texts `--dedup` compares, and why (see [`DedupKey`]).
type DedupKey = (Vec<&'static str>, Option<String>);

/// `--dedup`'s duplicate clusters and what they are keyed on. Text-label rows: the clusters of
/// the text (the label is compared by [`keep_first`]). Rows with a response: rows whose
/// prompts share a cluster and whose responses share a cluster (and, for preference rows,
/// whose rejected answers do), each text clustered on its own so that no joined string can
/// make two different rows look alike.
fn dedup_clusters(
    table: &Table,
    texts: &[String],
    layout: &RowLayout,
    p: &duplicates::DupParams,
) -> (Vec<Vec<usize>>, DedupKey) {
    let Some(responses) = table.responses.as_deref() else {
        return (
            duplicates::duplicate_clusters(texts, p),
            (vec!["text", "label"], None),
        );
    };
    let (key, note): DedupKey = match &table.rejected {
        Some(_) => (vec!["prompt", "chosen", "rejected"], None),
        None if *layout == RowLayout::Format(RowFormat::Preference) => (
            vec!["prompt", "chosen"],
            Some("the rejected answers were not read: rows are compared on prompt and chosen answer only".into()),
        ),
        None => (vec!["prompt", "response"], None),
    };
    let mut parts = vec![
        duplicates::duplicate_clusters(texts, p),
        duplicates::duplicate_clusters(responses, p),
    ];
    if let Some(rejected) = table.rejected.as_deref() {
        parts.push(duplicates::duplicate_clusters(rejected, p));
    }
    (joint_clusters(&parts, table.n_rows), (key, note))
}

/// Rows in one cluster of every partition, ordered by their first row.
fn joint_clusters(parts: &[Vec<Vec<usize>>], n: usize) -> Vec<Vec<usize>> {
    let mut ids: Vec<Vec<usize>> = vec![Vec::with_capacity(parts.len()); n];
    for clusters in parts {
        for (c, rows) in clusters.iter().enumerate() {
            for &r in rows {
                if let Some(x) = ids.get_mut(r) {
                    x.push(c);
                }
            }
        }
    }
    let mut at: std::collections::HashMap<&[usize], usize> = std::collections::HashMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (r, key) in ids.iter().enumerate() {
        match at.get(key.as_slice()) {
            Some(&k) => out[k].push(r),
            None => {
                at.insert(key.as_slice(), out.len());
                out.push(vec![r]);
            }
        }
    }
    out
}

/// `--dedup`: per row the row it repeats (kept in the clean output), and the report section.
/// Within each duplicate cluster, the first not quarantined row of each label is kept; every
/// later not quarantined row of that label points to it. Quarantined rows are left alone, so
/// a duplicate never points to a row that is not clean.
fn keep_first(
    clusters: &[Vec<usize>],
    labels: Option<&[u32]>,
    quarantined: &[bool],
    mode: Dedup,
) -> (Vec<Option<usize>>, DedupSection) {
    let mut dup = vec![None; quarantined.len()];
    let mut removed_clusters = 0usize;
    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for c in clusters.iter().filter(|c| c.len() > 1) {
        let mut kept: BTreeMap<u32, usize> = BTreeMap::new();
        let mut removed = 0usize;
        for &r in c {
            if quarantined[r] {
                continue;
            }
            let label = labels.map_or(0, |l| l[r]);
            match kept.get(&label) {
                Some(&k) => {
                    dup[r] = Some(k);
                    removed += 1;
                }
                None => {
                    kept.insert(label, r);
                }
            }
        }
        if removed > 0 {
            removed_clusters += 1;
            *sizes.entry(removed).or_default() += 1;
        }
    }
    let removed_rows = dup.iter().filter(|d| d.is_some()).count();
    let section = DedupSection {
        mode: mode.as_str(),
        removed_rows,
        clusters_with_removals: removed_clusters,
        removed_per_cluster_histogram: sizes,
        key: vec!["text", "label"],
        note: None,
    };
    (dup, section)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
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

    #[test]
    fn joint_clusters_need_every_partition_to_agree() {
        // prompts: {0, 1, 3}, {2}; responses: {0, 1}, {2, 3}
        let prompts = vec![vec![0, 1, 3], vec![2]];
        let responses = vec![vec![0, 1], vec![2, 3]];
        assert_eq!(
            joint_clusters(&[prompts, responses], 4),
            vec![vec![0, 1], vec![2], vec![3]]
        );
    }
}
