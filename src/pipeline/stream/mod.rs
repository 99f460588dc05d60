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
mod keys;
mod slices;
mod tree;

use driver::{merge_keys, state_err, Driver};
use keys::{lend_keys, share_keys, spill_keys, unspill_keys};
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
}

/// Run the planned detectors over the input in rounds.
pub(super) fn detect(
    opts: &ScanOptions,
    format: &RowLayout,
    planned: &[Planned],
) -> Result<Streamed, ScanError> {
    if let Some(why) = refusal(opts, format, planned) {
        return Err(ScanError::Config(why));
    }
    let needs_text = planned.iter().any(|p| p.configured.needs().text);
    let spec = ColumnSpec {
        text: needs_text.then(|| opts.text_column.clone()),
        label: Some(opts.label_column.clone()),
        id: opts.id_column.clone(),
        ground_truth: opts.ground_truth_column.clone(),
        embedding: None,
        rows: format.clone(),
        rejected: false,
        invalid: InvalidPolicy::Error,
    };
    let batch_rows = opts.batch_rows.max(1);

    // round 0: labels, classes, rows per class, ground truth
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
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    let class_of = |l: &str| index.get(l).copied().unwrap_or(0);
    let counts: Vec<u64> = names.iter().map(|l| per_label[l]).collect();

    let npy = opts.embeddings.as_deref();
    // embeddings in a column of the data itself (read with the rows of each batch)
    let needs_x = planned.iter().any(|p| p.configured.needs().embeddings);
    let column = opts
        .embedding_column
        .as_deref()
        .filter(|_| npy.is_none() && needs_x);
    let x_spec = ColumnSpec {
        embedding: column.map(str::to_string),
        ..spec.clone()
    };
    let dims = match npy {
        None if column.is_some() => column_width(opts, &x_spec, batch_rows, &read.digest)?,
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
    let mut drivers: Vec<(&'static str, Driver, f64)> = Vec::with_capacity(planned.len());
    let empty = toml::Table::new();
    for p in planned {
        let code = p.detector.meta().code;
        let params = opts.detector_params.get(code).unwrap_or(&empty);
        drivers.push((code, Driver::new(code, params, names.len(), dims, n)?, 0.0));
    }
    // duplicate detectors with the same normalisation share round 1's exact keys: the first
    // makes them, the others are handed a copy when the round is finalised
    for i in 0..drivers.len() {
        let Some(norm) = drivers[i].1.key_normalization() else {
            continue;
        };
        let owner = (0..i).find(|&j| drivers[j].1.key_normalization() == Some(norm));
        drivers[i].1.set_borrows(owner);
    }
    let mut fitted: Vec<Option<Box<dyn Fitted>>> = planned.iter().map(|_| None).collect();
    let mut matrix_digest: Option<FileDigest> = None;

    // one pass over the data (and the embeddings, when `with_x`), each batch to `f`
    let pass_over = |with_x: bool,
                     spec: &ColumnSpec,
                     f: &mut dyn FnMut(Rows) -> Result<(), ScanError>|
     -> Result<Option<FileDigest>, ScanError> {
        let mut x = match (with_x, npy) {
            (true, Some(p)) => Some(ingest::NpyRows::open(p)?),
            _ => None,
        };
        let spec = if with_x && column.is_some() {
            &x_spec
        } else {
            spec
        };
        // round 0 hashed the input; the later passes only check that it is the same
        ingest::read_batches_again(&opts.data, spec, batch_rows, &read.digest, &mut |b| {
            let m = match x.as_mut() {
                Some(x) => Some(x.next_rows(b.n_rows)?),
                None => b.embeddings,
            };
            let labels = b.labels.unwrap_or_default();
            f(Rows {
                start: b.first_row,
                labels: labels.iter().map(|l| class_of(l)).collect(),
                texts: b.texts.unwrap_or_else(|| vec![String::new(); b.n_rows]),
                ids: (b.first_row as u64..(b.first_row + b.n_rows) as u64).collect(),
                x: m,
                row_ids: b.ids,
            })
        })?;
        x.map(|x| x.finish()).transpose().map_err(ScanError::from)
    };

    for round in 1..=3 {
        if round == 3 && !drivers.iter().any(|(_, d, _)| d.has_round_3()) {
            continue;
        }
        let with_x = drivers.iter().any(|(_, d, _)| d.reads_x(round));
        let pb = pass_bar(opts.progress, n, round);
        let digest = pass_over(with_x, &spec, &mut |rows| {
            let len = rows.labels.len() as u64;
            drivers.par_iter_mut().try_for_each(|(code, d, secs)| {
                let t = Instant::now();
                d.update(code, round, &rows, &counts)?;
                *secs += t.elapsed().as_secs_f64();
                Ok::<(), ScanError>(())
            })?;
            pb.inc(len);
            Ok(())
        })?;
        pb.finish();
        if digest.is_some() && matrix_digest.is_none() {
            matrix_digest = digest;
        }
        if round == 1 {
            share_keys(&mut drivers)?;
        }
        // round 1 is finalised first by the drivers without exact keys, while the keys
        // wait on disk, then by the duplicate detectors last first, so that a detector that
        // borrows the keys copies them from their owner (an earlier driver) just before its
        // own groups are built: one copy beside the owner's at a time
        let order: Vec<usize> = if round == 1 {
            let (keyed, other): (Vec<usize>, Vec<usize>) = (0..drivers.len())
                .rev()
                .partition(|&i| drivers[i].1.key_normalization().is_some());
            other.into_iter().chain(keyed).collect()
        } else {
            (0..drivers.len()).collect()
        };
        let mut spilled = if round == 1
            && drivers
                .iter()
                .any(|(_, d, _)| d.key_normalization().is_none())
        {
            Some(spill_keys(&mut drivers)?)
        } else {
            None
        };
        for i in order {
            if round == 1 {
                if drivers[i].1.key_normalization().is_some() {
                    if let Some(s) = spilled.take() {
                        unspill_keys(&mut drivers, s)?;
                    }
                }
                lend_keys(&mut drivers, i)?;
            }
            let (code, d, secs) = &mut drivers[i];
            let t = Instant::now();
            if let Some(done) =
                d.finish_round(code, round, &names, &counts, opts.near_slice_groups)?
            {
                fitted[i] = Some(done);
            }
            *secs += t.elapsed().as_secs_f64();
            release_freed();
        }
    }
    let fitted: Vec<Box<dyn Fitted>> = fitted
        .into_iter()
        .zip(&drivers)
        .map(|(f, (code, _, _))| {
            f.ok_or_else(|| {
                ScanError::Detect(DetectError::Data {
                    code,
                    problem: "its rounds did not finish".into(),
                })
            })
        })
        .collect::<Result<_, _>>()?;

    // round 4: scores, batch by batch; the flagged rows' texts and ids kept
    let with_x = planned.iter().any(|p| p.configured.needs().embeddings);
    let keep_scores = truth.is_some();
    let mut flags: Vec<Flags> = drivers
        .iter()
        .zip(&fitted)
        .map(|((_, _, secs), f)| {
            let mut fl = Flags::new(keep_scores, f.summary());
            fl.seconds = *secs;
            fl
        })
        .collect();
    let mut combined: Vec<f64> = vec![0.0; n];
    let mut scored = 0usize;
    let mut shown = Shown {
        texts: BTreeMap::new(),
        ids: opts.id_column.as_ref().map(|_| BTreeMap::new()),
    };
    let pb = pass_bar(opts.progress, n, 4);
    pass_over(with_x, &spec, &mut |rows| {
        pb.inc(rows.labels.len() as u64);
        let view = DatasetView {
            n_rows: rows.labels.len(),
            texts: Some(&rows.texts),
            responses: None,
            rejected: None,
            labels: Some(&rows.labels),
            class_names: &names,
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
        for ((part, secs), fl) in parts.into_iter().zip(flags.iter_mut()) {
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
            fl.add(rows.start, part, &mut combined);
            fl.seconds += secs;
        }
        scored += view.n_rows;
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
        Ok(())
    })?;
    pb.finish();
    if scored != n || combined.len() != n {
        return Err(ScanError::Config(format!("scored {scored} rows of {n}")));
    }
    let matrix = match (npy, matrix_digest) {
        (Some(_), Some(d)) => Some(input_entry("embeddings", &d, n, Some(dims))),
        _ => None,
    };
    Ok(Streamed {
        table: Table {
            format: read.format,
            digest: read.digest,
            n_rows: n,
            texts: None,
            responses: None,
            rejected: None,
            labels: None,
            label_kind: read.label_kind,
            ids: None,
            ground_truth: truth,
            embeddings: None,
            invalid: Vec::new(),
        },
        matrix,
        per_detector: flags,
        combined,
        shown,
    })
}
