//! `scan --stream`: the detectors fitted in exact rounds over batches of the input, read once
//! per round, so the scan holds one batch and the detectors' states instead of every row.
//!
//! Rounds (each a pass over the file, with the `.npy` embeddings read row by row beside it, or
//! the data's own embedding column with each batch, when a detector needs them):
//! 0. the labels: the class names (sorted as the in-memory scan sorts them) and the rows per
//!    class, and the ground truth when there is one;
//! 1. SPEC001's and ACT001's class moments, DUP001's, DUP002's and DUP003's exact keys (made
//!    once for the detectors with the same normalisation; they wait on disk while the other
//!    detectors finish the round), TRIG001's sample;
//! 2. SPEC001's projections, ACT001's sample, DUP001's class words (when a conflict needs
//!    them), DUP002's and DUP003's near keys cut into slices of their key space (a slice per
//!    `near_slice_groups` exact groups, 262 144 by default: a million distinct texts make four
//!    slices): the first slice in memory, the others in temporary files ([`slices`]), each
//!    slice's keys turned into candidate pairs before the next is read;
//! 3. DUP002's and DUP003's payload (only when one of them runs);
//! 4. every detector scores each batch; the texts and ids of flagged rows are kept for the
//!    report.
//!
//! Every round's partials merge exactly (see each detector's `rounds` module), so the scores,
//! reasons and summaries are those of the in-memory scan, bit for bit; the tests compare both
//! on every shipped benchmark. What does not stream is refused with a message: another row
//! layout than text-label, `--model`, `--reference`, `--dedup`, `--invalid-rows quarantine`,
//! embeddings in a safetensors file or a table joined by id, a detector without rounds, and
//! DUP002's embedding relation (a nearest-neighbour search over every row).

use super::*;
use crate::ingest::ReadSummary;
use ndarray::Array2;
use poisongate_detectors::activation::{rounds as act, ActivationParams};
use poisongate_detectors::class_pca::MomentsPartial;
use poisongate_detectors::data::Batch as ScoreBatch;
use poisongate_detectors::duplicates::near_rounds::{
    Links, NearKeysPartial, NearRounds, PayloadPartial,
};
use poisongate_detectors::duplicates::{
    rounds as dup, Candidates, DupParams, KeyRange, Normalization,
};
use poisongate_detectors::spectral::{rounds as spec, SpectralParams};
use poisongate_detectors::trigger::{rounds as trig, TriggerParams};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The detectors `--stream` runs.
pub const STREAMED: &[&str] = &["ACT001", "DUP001", "DUP002", "DUP003", "SPEC001", "TRIG001"];

mod driver;
mod engine;
mod exchange;
mod keys;
pub(super) mod partitioned;
mod slices;
mod tree;

use driver::{merge_keys, state_err, Driver};
use engine::Engine;
use keys::{lend_keys, share_keys, spill_keys, unspill_keys};
use partitioned::Runner;
use slices::SliceFiles;
use tree::{Merge, Tree};

/// A batch of readable rows as the rounds take it.
struct Rows {
    /// Row number of the first row.
    start: usize,
    texts: Vec<String>,
    labels: Vec<u32>,
    /// Row numbers, the ids the rounds sample by.
    ids: Vec<u64>,
    x: Option<Array2<f32>>,
    /// The batch as read (ids and texts of flagged rows are kept from it).
    row_ids: Option<Vec<String>>,
}

/// Why the options cannot stream, if they cannot.
fn refusal(opts: &ScanOptions, format: &RowLayout, planned: &[Planned]) -> Option<String> {
    let fixed = [
        (
            format.has_responses() || matches!(format, RowLayout::Fields(_)),
            "rows with a prompt and a response",
        ),
        (opts.model.is_some(), "--model"),
        (opts.reference.is_some(), "--reference"),
        (opts.dedup != Dedup::None, "--dedup"),
        (
            opts.invalid_rows == InvalidPolicy::Quarantine,
            "--invalid-rows quarantine",
        ),
        (opts.response_embeddings.is_some(), "--response-embeddings"),
        (
            opts.embeddings
                .as_deref()
                .is_some_and(|p| p.extension().is_none_or(|e| e != "npy")),
            "embeddings other than a .npy file",
        ),
    ];
    if let Some((_, what)) = fixed.iter().find(|(on, _)| *on) {
        return Some(format!("--stream does not take {what} yet"));
    }
    for p in planned {
        let code = p.detector.meta().code;
        if !STREAMED.contains(&code) {
            return Some(format!(
                "--stream runs {} only: {code} has no rounds (leave it out with --select)",
                STREAMED.join(", ")
            ));
        }
        if code == "DUP002" && (opts.embeddings.is_some() || opts.embedding_column.is_some()) {
            let on = p.configured.params()["embedding_cosine"]
                .as_f64()
                .is_some_and(|c| c > 0.0);
            if on {
                return Some(
                    "--stream does not run DUP002's embedding relation (a nearest-neighbour \
                     search over every row): set [detectors.DUP002] embedding_cosine = 0 in \
                     the config, or leave DUP002 out with --select"
                        .into(),
                );
            }
        }
    }
    if !planned.iter().any(|p| p.configured.needs().labels) {
        return Some(
            "--stream reads the labels of every row, and none of the selected detectors needs \
             them: select one that does"
                .into(),
        );
    }
    None
}

/// Hand the memory a round freed back to the system. glibc keeps freed heap memory for reuse
/// and returns only what lies at the top of an arena, so a round's merged partials, freed when
/// the round is finalised, would stay in the process's resident set through the rounds after.
fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only returns free pages of the allocator's own
    // arenas to the kernel; it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A bar over the rows of one pass (left on the terminal when done: a long scan's log of
/// how long each pass took); hidden unless `show`.
fn pass_bar(show: bool, n: usize, round: usize) -> ProgressBar {
    let pb = progress_bar(show, n as u64, "");
    pb.set_message(format!("round {round}"));
    pb
}

/// The width of the vectors in the data's embedding column: read from the first batch with
/// rows (the later ones are checked against it as they are read); 0 for a file without rows.
fn column_width(
    opts: &ScanOptions,
    spec: &ColumnSpec,
    batch_rows: usize,
    known: &FileDigest,
) -> Result<usize, ScanError> {
    /// Reading stops at the first batch with rows.
    enum Probe {
        Width(usize),
        Failed(ScanError),
    }
    impl From<IngestError> for Probe {
        fn from(e: IngestError) -> Self {
            Probe::Failed(e.into())
        }
    }
    let probe = ingest::read_batches_again(&opts.data, spec, batch_rows, known, &mut |b| match b
        .embeddings
    {
        Some(m) if m.nrows() > 0 => Err(Probe::Width(m.ncols())),
        _ => Ok(()),
    });
    match probe {
        Ok(_) => Ok(0),
        Err(Probe::Width(d)) => Ok(d),
        Err(Probe::Failed(e)) => Err(e),
    }
}

/// What the streamed detectors found, in the form the verdict and the report take.
pub(super) struct Streamed {
    /// The data's digest, row count and ground truth (when asked for); no texts, ids or
    /// embeddings.
    pub(super) table: Table,
    /// The embeddings' input entry.
    pub(super) matrix: Option<InputEntry>,
    /// Per planned detector: its flags.
    pub(super) per_detector: Vec<Flags>,
    /// Per row: the highest score.
    pub(super) combined: Vec<f64>,
    /// The texts and ids of the flagged rows.
    pub(super) shown: Shown,
    /// Partitions, when the rounds ran over partitions.
    pub(super) partitions: Option<usize>,
}

/// What round 0 found, and how the later rounds read the input.
pub(super) struct Setup {
    /// The columns the rounds read, without and with the data's embedding column.
    spec: ColumnSpec,
    x_spec: ColumnSpec,
    /// The embeddings' `.npy` file, when they are in one.
    npy: Option<PathBuf>,
    batch_rows: usize,
    /// The input's digest (round 0 hashed it), rows and label kind.
    read: ReadSummary,
    /// Class names (sorted as the in-memory scan sorts them) and rows per class.
    names: Vec<String>,
    counts: Vec<u64>,
    index: HashMap<String, u32>,
    /// Per row, when a ground-truth column is named.
    truth: Option<Vec<bool>>,
    /// Embedding width (0 without embeddings).
    dims: usize,
}

impl Setup {
    /// Round 0: labels, classes, rows per class, ground truth; then the embedding width.
    fn read(
        opts: &ScanOptions,
        format: &RowLayout,
        planned: &[Planned],
    ) -> Result<Setup, ScanError> {
        let spec = Self::spec(opts, format, planned);
        let batch_rows = opts.batch_rows.max(1);
        let mut per_label: HashMap<String, u64> = HashMap::new();
        let mut truth: Option<Vec<bool>> = opts.ground_truth_column.as_ref().map(|_| Vec::new());
        let label_spec = ColumnSpec {
            text: None,
            embedding: None,
            ..spec.clone()
        };
        let read = ingest::read_batches(&opts.data, &label_spec, batch_rows, &mut |b| {
            for l in b.labels.unwrap_or_default() {
                *per_label.entry(l).or_insert(0) += 1;
            }
            if let (Some(t), Some(g)) = (truth.as_mut(), b.ground_truth) {
                t.extend(g);
            }
            Ok::<(), ScanError>(())
        })?;
        let n = read.n_rows;
        let distinct: Vec<String> = per_label
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (names, _) = classes(&distinct, read.label_kind);
        let counts: Vec<u64> = names.iter().map(|l| per_label[l]).collect();
        let mut setup = Self::with(opts, spec, planned, read, (names, counts), 0);
        setup.truth = truth;
        setup.dims = match setup.npy.as_deref() {
            None if setup.x_spec.embedding.is_some() => {
                column_width(opts, &setup.x_spec, batch_rows, &setup.read.digest)?
            }
            Some(p) => {
                let m = ingest::NpyRows::open(p)?;
                if m.rows() != n {
                    return Err(ScanError::Config(format!(
                        "row count mismatch: embeddings {} has {} rows but data {} has {} rows",
                        p.display(),
                        m.rows(),
                        opts.data.display(),
                        n
                    )));
                }
                m.cols()
            }
            None => 0,
        };
        Ok(setup)
    }

    /// The columns the detectors read.
    fn spec(opts: &ScanOptions, format: &RowLayout, planned: &[Planned]) -> ColumnSpec {
        let needs_text = planned.iter().any(|p| p.configured.needs().text);
        ColumnSpec {
            text: needs_text.then(|| opts.text_column.clone()),
            label: Some(opts.label_column.clone()),
            id: opts.id_column.clone(),
            ground_truth: opts.ground_truth_column.clone(),
            embedding: None,
            rows: format.clone(),
            rejected: false,
            invalid: InvalidPolicy::Error,
        }
    }

    /// The setup of what round 0 found (`read`, the classes and their counts, `dims`).
    fn with(
        opts: &ScanOptions,
        spec: ColumnSpec,
        planned: &[Planned],
        read: ReadSummary,
        (names, counts): (Vec<String>, Vec<u64>),
        dims: usize,
    ) -> Setup {
        let npy = opts.embeddings.clone();
        // embeddings in a column of the data itself (read with the rows of each batch)
        let needs_x = planned.iter().any(|p| p.configured.needs().embeddings);
        let column = opts
            .embedding_column
            .clone()
            .filter(|_| npy.is_none() && needs_x);
        let x_spec = ColumnSpec {
            embedding: column,
            ..spec.clone()
        };
        let index = names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        Setup {
            spec,
            x_spec,
            npy,
            batch_rows: opts.batch_rows.max(1),
            read,
            names,
            counts,
            index,
            truth: None,
            dims,
        }
    }

    fn n(&self) -> usize {
        self.read.n_rows
    }

    /// One batch as the rounds take it, `x` its embeddings from the `.npy` file.
    fn rows(&self, b: ingest::Batch, x: Option<Array2<f32>>) -> Rows {
        let labels = b.labels.unwrap_or_default();
        Rows {
            start: b.first_row,
            labels: labels
                .iter()
                .map(|l| self.index.get(l.as_str()).copied().unwrap_or(0))
                .collect(),
            texts: b.texts.unwrap_or_else(|| vec![String::new(); b.n_rows]),
            ids: (b.first_row as u64..(b.first_row + b.n_rows) as u64).collect(),
            x: x.or(b.embeddings),
            row_ids: b.ids,
        }
    }

    /// One pass over the data (and the embeddings, when `with_x`), each batch to `f`; the
    /// `.npy` file's digest when it was read.
    fn pass_over(
        &self,
        opts: &ScanOptions,
        with_x: bool,
        f: &mut dyn FnMut(Rows) -> Result<(), ScanError>,
    ) -> Result<Option<FileDigest>, ScanError> {
        let mut x = match (with_x, self.npy.as_deref()) {
            (true, Some(p)) => Some(ingest::NpyRows::open(p)?),
            _ => None,
        };
        let spec = if with_x && self.x_spec.embedding.is_some() {
            &self.x_spec
        } else {
            &self.spec
        };
        // round 0 hashed the input; the later passes only check that it is the same
        let digest = &self.read.digest;
        ingest::read_batches_again(&opts.data, spec, self.batch_rows, digest, &mut |b| {
            let m = match x.as_mut() {
                Some(x) => Some(x.next_rows(b.n_rows)?),
                None => None,
            };
            f(self.rows(b, m))
        })?;
        x.map(|x| x.finish()).transpose().map_err(ScanError::from)
    }
}

/// One batch's scores: per detector its scores and the seconds they took, and the texts and
/// ids of the rows some detector flagged.
pub(super) struct Scored {
    start: usize,
    parts: Vec<(Scores, f64)>,
    shown: Shown,
}

/// Score one batch with every fitted detector.
fn score(fitted: &[&dyn Fitted], names: &[String], rows: Rows) -> Result<Scored, ScanError> {
    let view = DatasetView {
        n_rows: rows.labels.len(),
        texts: Some(&rows.texts),
        responses: None,
        rejected: None,
        labels: Some(&rows.labels),
        class_names: names,
        embeddings: rows.x.as_ref().map(|m| m.view()),
        response_embeddings: None,
    };
    let batch = ScoreBatch {
        start: rows.start,
        rows: view,
    };
    let parts: Vec<(Scores, f64)> = fitted
        .par_iter()
        .map(|f| {
            let t = Instant::now();
            let s = f.score(&batch)?;
            Ok::<_, ScanError>((s, t.elapsed().as_secs_f64()))
        })
        .collect::<Result<_, _>>()?;
    let mut flagged = vec![false; view.n_rows];
    for (part, _) in &parts {
        if part.len() != view.n_rows {
            return Err(ScanError::Config(format!(
                "a detector scored {} rows of a batch of {}",
                part.len(),
                view.n_rows
            )));
        }
        for (i, r) in part.reason.iter().enumerate() {
            flagged[i] |= r.is_some();
        }
    }
    let mut shown = Shown {
        texts: BTreeMap::new(),
        ids: rows.row_ids.as_ref().map(|_| BTreeMap::new()),
    };
    let mut row_ids = rows.row_ids;
    for (i, (t, f)) in rows.texts.into_iter().zip(&flagged).enumerate() {
        if !*f {
            continue;
        }
        shown.texts.insert(rows.start + i, t);
        if let (Some(ids), Some(r)) = (shown.ids.as_mut(), row_ids.as_mut()) {
            ids.insert(rows.start + i, std::mem::take(&mut r[i]));
        }
    }
    Ok(Scored {
        start: rows.start,
        parts,
        shown,
    })
}

/// The scores of the batches, in row order, gathered into the verdict's form.
struct Gathered {
    flags: Vec<Flags>,
    combined: Vec<f64>,
    shown: Shown,
    scored: usize,
}

impl Gathered {
    /// Per detector its summary and the seconds spent so far.
    fn new(
        summaries: Vec<serde_json::Value>,
        seconds: Vec<f64>,
        opts: &ScanOptions,
        setup: &Setup,
    ) -> Self {
        let keep_scores = setup.truth.is_some();
        Gathered {
            flags: seconds
                .into_iter()
                .zip(summaries)
                .map(|(secs, summary)| {
                    let mut fl = Flags::new(keep_scores, summary);
                    fl.seconds = secs;
                    fl
                })
                .collect(),
            combined: vec![0.0; setup.n()],
            shown: Shown {
                texts: BTreeMap::new(),
                ids: opts.id_column.as_ref().map(|_| BTreeMap::new()),
            },
            scored: 0,
        }
    }

    /// Add the next batch's scores (batches must come in row order).
    fn add(&mut self, s: Scored) {
        let mut n = 0;
        for ((part, secs), fl) in s.parts.into_iter().zip(self.flags.iter_mut()) {
            n = part.len();
            fl.add(s.start, part, &mut self.combined);
            fl.seconds += secs;
        }
        self.scored += n;
        self.shown.texts.extend(s.shown.texts);
        if let (Some(all), Some(ids)) = (self.shown.ids.as_mut(), s.shown.ids) {
            all.extend(ids);
        }
    }

    fn finish(
        self,
        setup: Setup,
        matrix_digest: Option<FileDigest>,
    ) -> Result<Streamed, ScanError> {
        let n = setup.n();
        if self.scored != n || self.combined.len() != n {
            return Err(ScanError::Config(format!(
                "scored {} rows of {n}",
                self.scored
            )));
        }
        let matrix = match (setup.npy.as_ref(), matrix_digest) {
            (Some(_), Some(d)) => Some(input_entry("embeddings", &d, n, Some(setup.dims))),
            _ => None,
        };
        Ok(Streamed {
            table: Table {
                format: setup.read.format,
                digest: setup.read.digest,
                n_rows: n,
                texts: None,
                responses: None,
                rejected: None,
                labels: None,
                label_kind: setup.read.label_kind,
                ids: None,
                ground_truth: setup.truth,
                embeddings: None,
                invalid: Vec::new(),
            },
            matrix,
            per_detector: self.flags,
            combined: self.combined,
            shown: self.shown,
            partitions: None,
        })
    }
}

/// Run the planned detectors over the input in rounds, on this machine, or over partitions of
/// the input by `runner`.
pub(super) fn detect(
    opts: &ScanOptions,
    format: &RowLayout,
    planned: &[Planned],
    runner: Option<&mut dyn Runner>,
) -> Result<Streamed, ScanError> {
    if let Some(why) = refusal(opts, format, planned) {
        return Err(ScanError::Config(why));
    }
    if let Some(runner) = runner {
        return partitioned::detect(opts, format, planned, runner);
    }
    let setup = Setup::read(opts, format, planned)?;
    let n = setup.n();
    let mut engine = Engine::new(
        opts,
        planned,
        (setup.names.clone(), setup.counts.clone()),
        setup.dims,
        n,
        opts.near_slice_groups,
    )?;
    let mut matrix_digest: Option<FileDigest> = None;
    for round in 1..=3 {
        if !engine.has_round(round) {
            continue;
        }
        let pb = pass_bar(opts.progress, n, round);
        let digest = setup.pass_over(opts, engine.reads_x(round), &mut |rows| {
            engine.update(round, &rows)?;
            pb.inc(rows.labels.len() as u64);
            Ok(())
        })?;
        pb.finish();
        matrix_digest = same_matrix(matrix_digest, digest)?;
        engine.finish_round(round)?;
    }
    let fitted = engine.fitted()?;

    // round 4: scores, batch by batch; the flagged rows' texts and ids kept
    let with_x = planned.iter().any(|p| p.configured.needs().embeddings);
    let summaries = fitted.iter().map(|f| f.summary()).collect();
    let mut gathered = Gathered::new(summaries, engine.seconds(), opts, &setup);
    let pb = pass_bar(opts.progress, n, 4);
    let digest = setup.pass_over(opts, with_x, &mut |rows| {
        pb.inc(rows.labels.len() as u64);
        gathered.add(score(&fitted, &setup.names, rows)?);
        Ok(())
    })?;
    pb.finish();
    let matrix_digest = same_matrix(matrix_digest, digest)?;
    gathered.finish(setup, matrix_digest)
}

/// The `.npy` file's digest over the passes that read it: every pass must hash it alike (a
/// file changed between two passes is an error).
fn same_matrix(
    before: Option<FileDigest>,
    now: Option<FileDigest>,
) -> Result<Option<FileDigest>, ScanError> {
    match (before, now) {
        (Some(a), Some(b)) if a.sha256 != b.sha256 => Err(ingest::IngestError::InputChanged {
            path: b.path,
            expected: a.sha256,
            actual: b.sha256,
        }
        .into()),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}
