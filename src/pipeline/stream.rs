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
//!    them), DUP002's and DUP003's near keys, one slice of their key space a pass (a slice per
//!    `near_slice_groups` exact groups, 262 144 by default: a million distinct texts take four
//!    passes, each holding a quarter of the keys), each slice's keys turned into candidate
//!    pairs before the next is read;
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

/// One detector's rounds and what they have gathered so far (one per planned detector, so
/// the size of the largest variant does not matter).
#[allow(clippy::large_enum_variant)]
enum Driver {
    Spec {
        r: spec::Rounds,
        moments: MomentsPartial,
        dirs: Option<spec::Directions>,
        proj: Tree<spec::ProjectionsPartial>,
    },
    Act {
        r: act::Rounds,
        moments: MomentsPartial,
        red: Option<act::Reductions>,
        sample: Tree<act::SamplePartial>,
    },
    Exact {
        r: dup::Rounds,
        /// Round 1's keys; empty when an earlier driver with the same normalisation makes them
        /// (`borrows`), which hands them over before round 1 is finalised.
        keys: Tree<dup::KeysPartial>,
        borrows: Option<usize>,
        groups: Option<dup::Groups>,
        words: dup::WordsPartial,
    },
    Near {
        r: NearRounds,
        /// As for `Exact`.
        keys: Tree<dup::KeysPartial>,
        borrows: Option<usize>,
        groups: Option<dup::Groups>,
        /// Round 2 runs once per slice of the key space.
        slices: u64,
        near: Tree<NearKeysPartial>,
        cands: Candidates,
        links: Option<Links>,
        payload: Tree<PayloadPartial>,
    },
    Trig {
        r: trig::Rounds,
        sample: Tree<trig::SamplePartial>,
    },
}

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

/// One round's partials of one detector, merged as they come two of a size at a time (a
/// binary counter): a batch's sorted key lists are not merged into the whole round's again and
/// again, so merging b batches of n rows in all costs O(n log b), not O(n b). The merges are
/// exact, associative and commutative, so the result is the state one merge order gives.
struct Tree<T> {
    /// Partials, each the merge of 2^level batches, levels decreasing.
    stack: Vec<(u32, T)>,
}

impl<T> Default for Tree<T> {
    fn default() -> Self {
        Tree { stack: Vec::new() }
    }
}

/// How two partials of a round merge.
type Merge<'a, T> = &'a dyn Fn(&mut T, &T) -> Result<(), ScanError>;

impl<T> Tree<T> {
    /// Add a batch's partial.
    fn push(&mut self, p: T, merge: Merge<'_, T>) -> Result<(), ScanError> {
        let (mut level, mut p) = (0, p);
        while self.stack.last().is_some_and(|(l, _)| *l == level) {
            if let Some((_, mut a)) = self.stack.pop() {
                merge(&mut a, &p)?;
                p = a;
                level += 1;
            }
        }
        self.stack.push((level, p));
        Ok(())
    }

    /// The one partial of a tree holding exactly one.
    fn only(&self) -> Option<&T> {
        match self.stack.as_slice() {
            [(_, p)] => Some(p),
            _ => None,
        }
    }

    /// The merge of every partial added (`empty` when there was none); the tree is emptied.
    fn take(&mut self, empty: T, merge: Merge<'_, T>) -> Result<T, ScanError> {
        let mut all = empty;
        for (_, p) in std::mem::take(&mut self.stack) {
            merge(&mut all, &p)?;
        }
        Ok(all)
    }
}

/// Merging exact-key partials.
fn merge_keys(a: &mut dup::KeysPartial, b: &dup::KeysPartial) -> Result<(), ScanError> {
    a.merge(b);
    Ok(())
}

/// A detector's state error, as a detection error naming it.
fn state_err(code: &'static str) -> impl Fn(poisongate_detectors::state::StateError) -> ScanError {
    move |e| {
        ScanError::Detect(DetectError::Data {
            code,
            problem: format!("merging its partial states failed: {e}"),
        })
    }
}

impl Driver {
    fn new(
        code: &'static str,
        params: &toml::Table,
        n_classes: usize,
        dims: usize,
        n_rows: usize,
    ) -> Result<Driver, ScanError> {
        Ok(match code {
            "SPEC001" => {
                let r = spec::Rounds::new(&SpectralParams::from_table(params)?, n_classes, dims);
                Driver::Spec {
                    moments: r.pca().empty_moments(),
                    proj: Tree::default(),
                    dirs: None,
                    r,
                }
            }
            "ACT001" => {
                let r = act::Rounds::new(&ActivationParams::from_table(params)?, n_classes, dims);
                Driver::Act {
                    moments: r.pca().empty_moments(),
                    red: None,
                    sample: Tree::default(),
                    r,
                }
            }
            "DUP001" => {
                let r = dup::Rounds::new(&DupParams::dup001(params)?)?;
                Driver::Exact {
                    words: r.empty_words(),
                    keys: Tree::default(),
                    borrows: None,
                    groups: None,
                    r,
                }
            }
            "DUP002" | "DUP003" => {
                let p = if code == "DUP002" {
                    DupParams::dup002(params)?
                } else {
                    DupParams::dup003(params)?
                };
                Driver::Near {
                    r: NearRounds::new(&p)?,
                    keys: Tree::default(),
                    borrows: None,
                    groups: None,
                    slices: 1,
                    near: Tree::default(),
                    cands: Candidates::default(),
                    links: None,
                    payload: Tree::default(),
                }
            }
            "TRIG001" => Driver::Trig {
                r: trig::Rounds::new(
                    &TriggerParams::from_table(params)?,
                    n_classes,
                    n_rows as u64,
                ),
                sample: Tree::default(),
            },
            other => {
                return Err(ScanError::Config(format!(
                    "--stream runs {} only: {other} has no rounds",
                    STREAMED.join(", ")
                )))
            }
        })
    }

    /// The normalisation of a duplicate detector's exact keys.
    fn key_normalization(&self) -> Option<Normalization> {
        match self {
            Driver::Exact { r, .. } => Some(r.normalization()),
            Driver::Near { r, .. } => Some(r.normalization()),
            _ => None,
        }
    }

    /// Make round 1's keys here, or take them from driver `owner`.
    fn set_borrows(&mut self, owner: Option<usize>) {
        if let Driver::Exact { borrows, .. } | Driver::Near { borrows, .. } = self {
            *borrows = owner;
        }
    }

    /// The header of round 1's keys, for a duplicate detector that makes its own.
    fn owned_key_header(&self) -> Option<poisongate_detectors::state::Header> {
        match self {
            Driver::Exact {
                r, borrows: None, ..
            } => Some(r.header().clone()),
            Driver::Near {
                r, borrows: None, ..
            } => Some(r.header().clone()),
            _ => None,
        }
    }

    /// The round-1 key tree of a duplicate detector.
    fn key_tree(&mut self) -> Option<&mut Tree<dup::KeysPartial>> {
        match self {
            Driver::Exact { keys, .. } | Driver::Near { keys, .. } => Some(keys),
            _ => None,
        }
    }

    /// Whether round `round` reads the embeddings.
    fn reads_x(&self, round: usize) -> bool {
        matches!(self, Driver::Spec { .. } | Driver::Act { .. }) && (round == 1 || round == 2)
    }

    /// Whether round 3 has work.
    fn has_round_3(&self) -> bool {
        matches!(self, Driver::Near { .. })
    }

    /// Passes round 2 takes (the near-duplicate keys, one slice of the key space a pass).
    fn round_2_passes(&self) -> u64 {
        match self {
            Driver::Near { slices, .. } => *slices,
            _ => 1,
        }
    }

    /// Fold one batch into round `round`'s partial.
    fn update(
        &mut self,
        code: &'static str,
        (round, pass): (usize, u64),
        rows: &Rows,
        counts: &[u64],
    ) -> Result<(), ScanError> {
        // a second pass of round 2 is the near-duplicate keys' next slice, nothing else's
        if round == 2 && pass > 0 && !matches!(self, Driver::Near { .. }) {
            return Ok(());
        }
        let err = state_err(code);
        let x = || {
            rows.x.as_ref().map(|m| m.view()).ok_or_else(|| {
                ScanError::Config(format!("{code} needs embeddings (--embeddings FILE.npy)"))
            })
        };
        match (self, round) {
            (Driver::Spec { r, moments, .. }, 1) => {
                let m = r
                    .pca()
                    .moments(counts, &x()?, &rows.labels, &rows.ids)
                    .map_err(&err)?;
                moments.merge(&m).map_err(&err)?;
            }
            (Driver::Act { r, moments, .. }, 1) => {
                let m = r
                    .pca()
                    .moments(counts, &x()?, &rows.labels, &rows.ids)
                    .map_err(&err)?;
                moments.merge(&m).map_err(&err)?;
            }
            (
                Driver::Exact {
                    r,
                    keys,
                    borrows: None,
                    ..
                },
                1,
            ) => {
                keys.push(r.keys(&rows.texts, &rows.labels, &rows.ids), &merge_keys)?;
            }
            (
                Driver::Near {
                    r,
                    keys,
                    borrows: None,
                    ..
                },
                1,
            ) => {
                keys.push(r.keys(&rows.texts, &rows.labels, &rows.ids), &merge_keys)?;
            }
            (Driver::Trig { r, sample }, 1) => {
                let s = r.sample(&rows.texts, &rows.labels, &rows.ids)?;
                sample.push(s, &|a, b| a.merge(b).map_err(&err))?;
            }
            (
                Driver::Spec {
                    r,
                    dirs: Some(d),
                    proj,
                    ..
                },
                2,
            ) => {
                let p = r.projections(d, &x()?, &rows.labels);
                proj.push(p, &|a, b| a.merge(b).map_err(&err))?;
            }
            (Driver::Act { r, red, sample, .. }, 2) => {
                if let Some(red) = red.as_ref() {
                    let s = r.sample(counts, red, &x()?, &rows.labels, &rows.ids);
                    sample.push(s, &|a, b| a.merge(b).map_err(&err))?;
                }
            }
            (
                Driver::Exact {
                    r, groups, words, ..
                },
                2,
            ) => {
                if let Some(g) = groups.as_ref().filter(|g| g.needs_words()) {
                    words.merge(&r.words(g, &rows.texts, &rows.labels));
                }
            }
            (
                Driver::Near {
                    r,
                    groups: Some(g),
                    near,
                    slices,
                    ..
                },
                2,
            ) => {
                if pass >= *slices {
                    return Ok(());
                }
                let range = KeyRange {
                    part: pass,
                    parts: *slices,
                };
                let k = r.near_keys(g, &rows.texts, &rows.ids, range);
                near.push(k, &|a, b| {
                    a.merge(b);
                    Ok(())
                })?;
            }
            (
                Driver::Near {
                    r,
                    groups,
                    links,
                    payload,
                    ..
                },
                3,
            ) => {
                if let (Some(g), Some(l)) = (groups, links) {
                    let p = r.payload(g, l, &rows.texts, &rows.labels, &rows.ids);
                    payload.push(p, &|a, b| a.merge(b).map_err(&err))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Finalise round `round`; after the detector's last round, its fitted form.
    fn finish_round(
        &mut self,
        code: &'static str,
        (round, pass): (usize, u64),
        names: &[String],
        counts: &[u64],
        slice_groups: u64,
    ) -> Result<Option<Box<dyn Fitted>>, ScanError> {
        let err = state_err(code);
        if round == 2 && pass > 0 && !matches!(self, Driver::Near { .. }) {
            return Ok(None);
        }
        Ok(match (self, round) {
            (
                Driver::Spec {
                    r, moments, dirs, ..
                },
                1,
            ) => {
                *dirs = Some(r.directions(counts, moments)?);
                None
            }
            (
                Driver::Act {
                    r,
                    moments,
                    red,
                    sample,
                },
                1,
            ) => {
                *red = Some(r.reductions(counts, moments)?);
                *sample = Tree::default();
                None
            }
            (
                Driver::Exact {
                    r, keys, groups, ..
                },
                1,
            ) => {
                *groups = Some(r.groups(keys.take(Default::default(), &merge_keys)?)?);
                None
            }
            (
                Driver::Near {
                    r,
                    keys,
                    groups,
                    slices,
                    ..
                },
                1,
            ) => {
                let g = r.groups(keys.take(Default::default(), &merge_keys)?)?;
                *slices = (g.count() as u64).div_ceil(slice_groups.max(1)).max(1);
                *groups = Some(g);
                None
            }
            (Driver::Trig { r, sample }, 1) => {
                let s = sample.take(Default::default(), &|a, b| a.merge(b).map_err(&err))?;
                Some(r.finish(names, s)?)
            }
            (Driver::Spec { r, dirs, proj, .. }, 2) => match dirs.take() {
                Some(d) => {
                    let p = proj.take(r.empty_projections(), &|a, b| a.merge(b).map_err(&err))?;
                    Some(r.finish(names, counts, d, &p))
                }
                None => None,
            },
            (Driver::Act { r, red, sample, .. }, 2) => match red.take() {
                Some(red) => {
                    let empty = r.empty_sample(&red);
                    let s = sample.take(empty, &|a, b| a.merge(b).map_err(&err))?;
                    Some(r.finish(names, counts, red, s)?)
                }
                None => None,
            },
            (
                Driver::Exact {
                    r, groups, words, ..
                },
                2,
            ) => groups.take().map(|g| r.finish(names, g, words)),
            (
                Driver::Near {
                    r,
                    groups,
                    slices,
                    near,
                    cands,
                    links,
                    ..
                },
                2,
            ) => {
                if let (Some(g), true) = (groups.as_ref(), pass < *slices) {
                    let keys = near.take(Default::default(), &|a, b| {
                        a.merge(b);
                        Ok(())
                    })?;
                    cands.merge(&r.candidates(&keys));
                    if pass + 1 == *slices {
                        *links = Some(r.links(g, std::mem::take(cands)));
                    }
                }
                None
            }
            (
                Driver::Near {
                    r,
                    groups,
                    links,
                    payload,
                    ..
                },
                3,
            ) => match (groups.take(), links.take()) {
                (Some(g), Some(l)) => {
                    let p = payload.take(Default::default(), &|a, b| a.merge(b).map_err(&err))?;
                    Some(r.finish(names, g, l, p, true)?)
                }
                _ => None,
            },
            _ => None,
        })
    }
}

/// Merge the round-1 keys of every driver that others borrow from into one partial.
fn share_keys(drivers: &mut [(&'static str, Driver, f64)]) -> Result<(), ScanError> {
    let owners: BTreeSet<usize> = drivers
        .iter()
        .filter_map(|(_, d, _)| match d {
            Driver::Exact { borrows, .. } | Driver::Near { borrows, .. } => *borrows,
            _ => None,
        })
        .collect();
    for o in owners {
        if let Some(tree) = drivers.get_mut(o).and_then(|(_, d, _)| d.key_tree()) {
            let merged = tree.take(Default::default(), &merge_keys)?;
            tree.push(merged, &merge_keys)?;
        }
    }
    Ok(())
}

/// Round 1's merged exact keys of every driver that owns them, written to anonymous temporary
/// files (their serialised form, 32 bytes a row) and taken out of memory while the drivers
/// without keys finish round 1: TRIG001's fit is the scan's largest state, and the keys, which
/// grow with the rows, would sit beside it.
fn spill_keys(
    drivers: &mut [(&'static str, Driver, f64)],
) -> Result<Vec<(usize, std::fs::File)>, ScanError> {
    use std::io::Write;
    let tmp = std::env::temp_dir();
    let mut spilled = Vec::new();
    for (i, (_, d, _)) in drivers.iter_mut().enumerate() {
        let Some(header) = d.owned_key_header() else {
            continue;
        };
        let Some(tree) = d.key_tree() else {
            continue;
        };
        let keys = tree.take(Default::default(), &merge_keys)?;
        let bytes = keys.to_bytes(&header);
        drop(keys);
        let mut f = tempfile::tempfile().map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        spilled.push((i, f));
    }
    Ok(spilled)
}

/// Read back what [`spill_keys`] wrote, each driver's keys into its tree.
fn unspill_keys(
    drivers: &mut [(&'static str, Driver, f64)],
    spilled: Vec<(usize, std::fs::File)>,
) -> Result<(), ScanError> {
    use std::io::{Read, Seek};
    let tmp = std::env::temp_dir();
    for (i, mut f) in spilled {
        let Some((code, d, _)) = drivers.get_mut(i) else {
            continue;
        };
        let Some(header) = d.owned_key_header() else {
            continue;
        };
        let mut bytes = Vec::new();
        f.rewind().map_err(io_err(&tmp))?;
        f.read_to_end(&mut bytes).map_err(io_err(&tmp))?;
        let keys = dup::KeysPartial::from_bytes(&bytes, &header).map_err(state_err(code))?;
        drop(bytes);
        if let Some(t) = d.key_tree() {
            t.push(keys, &merge_keys)?;
        }
    }
    Ok(())
}

/// When driver `i` borrows round 1's keys, copy its owner's merged keys into its tree.
fn lend_keys(drivers: &mut [(&'static str, Driver, f64)], i: usize) -> Result<(), ScanError> {
    let owner = match drivers.get(i).map(|(_, d, _)| d) {
        Some(
            Driver::Exact {
                borrows: Some(o), ..
            }
            | Driver::Near {
                borrows: Some(o), ..
            },
        ) => *o,
        _ => return Ok(()),
    };
    let copy = drivers
        .get_mut(owner)
        .and_then(|(_, d, _)| d.key_tree())
        .and_then(|t| t.only().cloned())
        .ok_or_else(|| ScanError::Config("the shared duplicate keys were not merged".into()))?;
    if let Some(t) = drivers.get_mut(i).and_then(|(_, d, _)| d.key_tree()) {
        t.push(copy, &merge_keys)?;
    }
    Ok(())
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
fn pass_bar(show: bool, n: usize, round: usize, (pass, passes): (u64, u64)) -> ProgressBar {
    let pb = progress_bar(show, n as u64, "");
    pb.set_message(if passes > 1 {
        format!("round {round} ({}/{passes})", pass + 1)
    } else {
        format!("round {round}")
    });
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
    let probe = ingest::read_batches_again(&opts.data, spec, batch_rows, known, &mut |b| {
        match b.embeddings {
            Some(m) if m.nrows() > 0 => Err(Probe::Width(m.ncols())),
            _ => Ok(()),
        }
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
        let passes = match round {
            2 => drivers
                .iter()
                .map(|(_, d, _)| d.round_2_passes())
                .max()
                .unwrap_or(1),
            _ => 1,
        };
        for pass in 0..passes {
            let with_x = pass == 0 && drivers.iter().any(|(_, d, _)| d.reads_x(round));
            let pb = pass_bar(opts.progress, n, round, (pass, passes));
            let digest = pass_over(with_x, &spec, &mut |rows| {
                let len = rows.labels.len() as u64;
                drivers.par_iter_mut().try_for_each(|(code, d, secs)| {
                    let t = Instant::now();
                    d.update(code, (round, pass), &rows, &counts)?;
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
                    d.finish_round(code, (round, pass), &names, &counts, opts.near_slice_groups)?
                {
                    fitted[i] = Some(done);
                }
                *secs += t.elapsed().as_secs_f64();
                release_freed();
            }
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
    let pb = pass_bar(opts.progress, n, 4, (0, 1));
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
