//! The rounds over partitions of the input, for an engine that runs them as tasks elsewhere
//! (other processes or machines; see `python/poisongate/ray.py` for Ray Data).
//!
//! The scan that plans the work reads round 0 itself (the labels, and the digest of the whole
//! file, which is read once), cuts the input into partitions: a Parquet file into runs of
//! consecutive row groups from its footer, a JSONL file into byte ranges that each start at
//! a row's line (one more pass over the file finds the starts of up to [`LINE_BLOCKS`] equal
//! blocks of rows, and must hash as round 0 did; each task seeks to its first block's byte,
//! numbers its rows and lines from there, and checks the file's size), and then, round by round, hands a [`Runner`] the plan and the merged
//! partials of the earlier rounds. Each task ([`run_task`]) builds the same engine from the
//! same settings, absorbs and finalises the earlier rounds' merged partials (deterministic:
//! the same state as the planning scan's), folds in its partition's rows and returns its
//! partial; the planning scan absorbs the partials in whatever order they come (every merge
//! is exact, associative and commutative) and finalises the round. Round 4's tasks score
//! their rows; the planning scan puts the scores in row order and writes the outputs and the
//! report as a single-machine scan does. Rows are numbered by their place in the file, so the
//! verdicts are the single-machine scan's, bit for bit, whatever the partitioning.
//!
//! Embeddings come from a column of the data or from a `.npy` file beside it: the planning
//! scan hashes the file once, and each task reads its partition's rows of it (from the row
//! after the earlier row groups' rows) and checks its size. What does not partition yet, and
//! is refused: embeddings in another
//! kind of file, and what `--stream` refuses. Round 2's near-duplicate keys are merged whole on the planning machine (no slices
//! on disk there).

use super::*;
use crate::ingest::RowGroups;
use sha2::{Digest, Sha256};

/// What every task of a partitioned scan needs besides the scan's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Rows in the input.
    pub n_rows: usize,
    /// Class names, in the scan's order, and rows per class.
    pub names: Vec<String>,
    /// Rows per class.
    pub counts: Vec<u64>,
    /// Embedding width (0 without embeddings).
    pub dims: usize,
    /// The input's size in bytes and SHA-256 (each task checks the size of what it reads).
    pub bytes: u64,
    /// SHA-256 of the input, lowercase hex.
    pub sha256: String,
    /// The partitions: runs of consecutive row groups (JSONL: of `lines`' blocks), in file
    /// order.
    pub partitions: Vec<RowGroups>,
    /// JSONL input: where each block of its rows starts (empty for Parquet).
    #[serde(default)]
    pub lines: Vec<ingest::LineBlock>,
    /// The embeddings' `.npy` file's size in bytes and SHA-256, when they are in one (each task
    /// reads its partition's rows of it and checks its size).
    #[serde(default)]
    pub embeddings: Option<(u64, String)>,
}

/// Runs one round over every partition of a plan, as tasks.
pub trait Runner {
    /// Partitions wanted (at least 1; at most one per row group is made).
    fn partitions(&self) -> usize;
    /// The engine's name, recorded in the report.
    fn engine(&self) -> String;
    /// Run `round` (1 to 4) over every partition of `plan`: each task is [`run_task`] with the
    /// same settings, `plan`, `round`, its partition and `earlier` (`earlier[r - 1]` is round
    /// r's merged partial, empty when round r had no work). Returns every task's bytes, in
    /// any order.
    fn run(
        &mut self,
        plan: &Plan,
        round: usize,
        earlier: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, ScanError>;
}

/// A task's engine, kept between the tasks one process runs, with the rounds it has finalised:
/// a process that runs several partitions finalises the earlier rounds once.
#[derive(Default)]
pub struct TaskCache {
    key: Vec<u8>,
    stage: usize,
    engine: Option<Engine>,
}

/// Why the options cannot be partitioned, if they cannot.
fn refusal(opts: &ScanOptions) -> Option<String> {
    if let Some(p) = &opts.embeddings {
        if p.extension().is_none_or(|e| !e.eq_ignore_ascii_case("npy")) {
            return Some(format!(
                "a partitioned scan reads embeddings from a column of the data \
                 (--embedding-column) or from a .npy file; {} is neither",
                p.display()
            ));
        }
    }
    None
}

/// Most blocks a JSONL file's rows are cut into for partitioning (so at most this many
/// partitions; the plan holds one start per block).
const LINE_BLOCKS: usize = 4096;

/// Consecutive row groups cut into at most `k` runs of about equal rows.
fn partitions(rows: &[usize], k: usize) -> Vec<RowGroups> {
    let total: usize = rows.iter().sum();
    let k = k.clamp(1, rows.len().max(1));
    let mut out = Vec::with_capacity(k);
    let (mut start, mut seen) = (0, 0usize);
    for (i, r) in rows.iter().enumerate() {
        seen += r;
        // close the run once its share of the rows is reached (the last run takes the rest)
        let due = total * (out.len() + 1) / k;
        if seen >= due && out.len() + 1 < k {
            out.push(RowGroups {
                groups: start..i + 1,
            });
            start = i + 1;
        }
    }
    if start < rows.len() || out.is_empty() {
        out.push(RowGroups {
            groups: start..rows.len(),
        });
    }
    out
}

/// The planning side: round 0 here, rounds 1 to 4 by `runner`.
pub(super) fn detect(
    opts: &ScanOptions,
    format: &RowLayout,
    planned: &[Planned],
    runner: &mut dyn Runner,
) -> Result<Streamed, ScanError> {
    if let Some(why) = refusal(opts) {
        return Err(ScanError::Config(why));
    }
    let setup = Setup::read(opts, format, planned)?;
    // the units partitions are made of: Parquet's row groups, or blocks of a JSONL file's
    // rows (one more pass over the file, which must hash as round 0 found it)
    let (rows, lines) = match ingest::Format::from_path(&opts.data)? {
        ingest::Format::Parquet => (ingest::row_group_rows(&opts.data)?, Vec::new()),
        ingest::Format::Jsonl => {
            let (lines, digest, n) = ingest::line_blocks(&opts.data, LINE_BLOCKS)?;
            if digest.sha256 != setup.read.digest.sha256 {
                return Err(ingest::IngestError::InputChanged {
                    path: opts.data.clone(),
                    expected: setup.read.digest.sha256.clone(),
                    actual: digest.sha256,
                }
                .into());
            }
            let ends = lines.iter().skip(1).map(|b| b.row).chain([n]);
            let rows = lines.iter().zip(ends).map(|(b, e)| e - b.row).collect();
            (rows, lines)
        }
    };
    // the `.npy` file is hashed here, once, when a detector reads it (as the single-machine
    // scan lists it only then); the tasks read their rows of it and check its size
    let reads_x = planned.iter().any(|p| p.configured.needs().embeddings);
    let npy = match setup.npy.as_deref() {
        Some(p) if reads_x => Some(ingest::sha256_file(p)?),
        _ => None,
    };
    let plan = Plan {
        n_rows: setup.n(),
        names: setup.names.clone(),
        counts: setup.counts.clone(),
        dims: setup.dims,
        bytes: setup.read.digest.bytes,
        sha256: setup.read.digest.sha256.clone(),
        partitions: partitions(&rows, runner.partitions()),
        lines,
        embeddings: npy.as_ref().map(|d| (d.bytes, d.sha256.clone())),
    };
    let mut engine = engine_of(opts, planned, &plan)?;
    let mut earlier: Vec<Vec<u8>> = Vec::new();
    // each round is finalised here while the next round's tasks run (they finalise it
    // themselves from the merged partial); this engine never fits what only the scores need:
    // the tasks of round 4 return the fitted detectors' summaries with their scores
    let mut unfinished: Option<usize> = None;
    let mut run = |engine: &mut Engine,
                   round: usize,
                   earlier: &[Vec<u8>],
                   unfinished: Option<usize>|
     -> Result<Vec<Vec<u8>>, ScanError> {
        let Some(prev) = unfinished else {
            return runner.run(&plan, round, earlier);
        };
        std::thread::scope(|s| {
            let finishing = s.spawn(|| engine.finish_round(prev));
            let parts = runner.run(&plan, round, earlier);
            let finished = finishing.join().unwrap_or_else(|_| {
                Err(ScanError::Config(format!("finalising round {prev} failed")))
            });
            finished.and(parts)
        })
    };
    for round in 1..=3 {
        if !engine.has_round(round) {
            earlier.push(Vec::new());
            continue;
        }
        for p in run(&mut engine, round, &earlier, unfinished)? {
            engine.absorb(round, &p)?;
        }
        earlier.push(engine.export(round, true)?);
        unfinished = Some(round);
    }
    let mut summaries: Option<Vec<serde_json::Value>> = None;
    let mut scored: Vec<Scored> = Vec::new();
    for p in run(&mut engine, 4, &earlier, None)? {
        let (sums, batches) = decode_scores(&p, planned.len())?;
        if summaries.as_ref().is_some_and(|s| *s != sums) {
            return Err(ScanError::Config(
                "two tasks fitted the detectors differently".into(),
            ));
        }
        summaries = Some(sums);
        scored.extend(batches);
    }
    let summaries = summaries.ok_or_else(|| ScanError::Config("no task scored".into()))?;
    scored.sort_by_key(|s| s.start);
    let mut gathered = Gathered::new(summaries, engine.seconds(), opts, &setup);
    for s in scored {
        gathered.add(s);
    }
    // the tasks only checked the `.npy` file's size: it must still hash to what the plan holds
    if let (Some(p), Some(d)) = (setup.npy.as_deref(), npy.as_ref()) {
        let now = ingest::sha256_file(p)?;
        if now.sha256 != d.sha256 {
            return Err(ingest::IngestError::InputChanged {
                path: p.to_path_buf(),
                expected: d.sha256.clone(),
                actual: now.sha256,
            }
            .into());
        }
    }
    let mut streamed = gathered.finish(setup, npy)?;
    streamed.partitions = Some(plan.partitions.len());
    Ok(streamed)
}

fn engine_of(opts: &ScanOptions, planned: &[Planned], plan: &Plan) -> Result<Engine, ScanError> {
    // one slice: the merged near keys are finalised whole (see the module docs)
    let pair = (plan.names.clone(), plan.counts.clone());
    Ok(Engine::new(opts, planned, pair, plan.dims, plan.n_rows, u64::MAX)?.deferring())
}

/// One task: round `round` over partition `part` of `plan`, with the scan's settings `opts`
/// (the planning scan's) and the merged partials of the earlier rounds; returns the
/// partition's partial of the round (round 4: its rows' scores).
pub fn run_task(
    opts: &ScanOptions,
    plan: &Plan,
    (round, part): (usize, usize),
    earlier: &[Vec<u8>],
    cache: &mut TaskCache,
) -> Result<Vec<u8>, ScanError> {
    if let Some(why) = refusal(opts) {
        return Err(ScanError::Config(why));
    }
    if !(1..=4).contains(&round) || earlier.len() + 1 < round {
        return Err(ScanError::Config(format!(
            "round {round} needs the merged partials of the {} rounds before it; {} given",
            round.saturating_sub(1),
            earlier.len()
        )));
    }
    let groups = plan.partitions.get(part).ok_or_else(|| {
        ScanError::Config(format!(
            "partition {part} asked for; the plan has {}",
            plan.partitions.len()
        ))
    })?;
    let (format, _) = super::layout(opts)?;
    let (planned, _) = super::plan::plan(opts, &format, None)?;
    let key: Vec<u8> = Sha256::digest(
        format!(
            "{opts:?}\n{}",
            serde_json::to_string(plan).map_err(|e| ScanError::Config(e.to_string()))?
        )
        .as_bytes(),
    )
    .to_vec();
    if cache.key != key || cache.stage + 1 > round || cache.engine.is_none() {
        *cache = TaskCache {
            engine: Some(engine_of(opts, &planned, plan)?),
            key,
            stage: 0,
        };
    }
    let TaskCache { stage, engine, .. } = cache;
    let Some(engine) = engine.as_mut() else {
        return Err(ScanError::Config("the task's engine is missing".into()));
    };
    // the earlier rounds, finalised as the planning scan finalised them
    while *stage + 1 < round {
        let r = *stage + 1;
        if engine.has_round(r) {
            engine.absorb(r, &earlier[r - 1])?;
            engine.finish_round(r)?;
        }
        *stage = r;
    }
    let spec = Setup::spec(opts, &format, &planned);
    let read = ReadSummary {
        format: ingest::Format::from_path(&opts.data)?,
        digest: FileDigest {
            path: opts.data.clone(),
            bytes: plan.bytes,
            sha256: plan.sha256.clone(),
            parts: Vec::new(),
        },
        n_rows: plan.n_rows,
        label_kind: None,
    };
    let setup = Setup::with(
        opts,
        spec,
        &planned,
        read,
        (plan.names.clone(), plan.counts.clone()),
        plan.dims,
    );
    let with_x = if round == 4 {
        planned.iter().any(|p| p.configured.needs().embeddings)
    } else {
        engine.reads_x(round)
    };
    let spec = if with_x && setup.x_spec.embedding.is_some() {
        &setup.x_spec
    } else {
        &setup.spec
    };
    let digest = &setup.read.digest;
    // the partition's rows of the `.npy` file, read beside its row groups
    let mut npy = match (with_x, setup.npy.as_deref(), &plan.embeddings) {
        (true, Some(p), Some((bytes, sha256))) => {
            let first: usize = match plan.lines.get(groups.groups.start) {
                Some(block) => block.row,
                None => ingest::row_group_rows(&opts.data)?
                    .iter()
                    .take(groups.groups.start)
                    .sum(),
            };
            let known = FileDigest {
                path: p.to_path_buf(),
                bytes: *bytes,
                sha256: sha256.clone(),
                parts: Vec::new(),
            };
            let rows = ingest::NpyRows::open_at(p, first, &known)?;
            if rows.rows() != plan.n_rows || rows.cols() != plan.dims {
                return Err(ScanError::Config(format!(
                    "embeddings {} hold {} rows of {} values; the plan has {} rows of {}",
                    p.display(),
                    rows.rows(),
                    rows.cols(),
                    plan.n_rows,
                    plan.dims
                )));
            }
            Some((rows, first))
        }
        (true, Some(p), None) => {
            return Err(ScanError::Config(format!(
                "the plan has no digest of the embeddings {}",
                p.display()
            )))
        }
        _ => None,
    };
    let mut x_of = |b: &ingest::Batch| -> Result<Option<Array2<f32>>, ScanError> {
        let Some((rows, next)) = npy.as_mut() else {
            return Ok(None);
        };
        if b.first_row != *next {
            return Err(ScanError::Config(format!(
                "a partition's batch starts at row {}, its embeddings at row {next}",
                b.first_row
            )));
        }
        *next += b.n_rows;
        let x = rows.next_rows(b.n_rows)?;
        if x.nrows() != b.n_rows {
            return Err(ScanError::Config(format!(
                "the embeddings end before row {}",
                b.first_row + b.n_rows
            )));
        }
        Ok(Some(x))
    };
    // the partition's rows, a batch at a time, with their embeddings
    let mut read = |f: &mut dyn FnMut(Rows) -> Result<(), ScanError>| {
        ingest::read_row_groups(
            &opts.data,
            spec,
            setup.batch_rows,
            digest,
            groups,
            &plan.lines,
            &mut |b| {
                let x = x_of(&b)?;
                f(setup.rows(b, x))
            },
        )
    };
    if round == 4 {
        engine.settle()?;
        let fitted = engine.fitted()?;
        let summaries: Vec<serde_json::Value> = fitted.iter().map(|f| f.summary()).collect();
        let summaries = serde_json::to_string(&summaries)
            .map_err(|e| ScanError::Config(format!("a detector's summary: {e}")))?;
        let mut out = Vec::new();
        let mut batches = 0u64;
        read(&mut |rows| {
            encode_scores(&score(&fitted, &setup.names, rows)?, &mut out);
            batches += 1;
            Ok(())
        })?;
        let mut all = Vec::with_capacity(out.len() + summaries.len() + 16);
        put_str(&mut all, &summaries);
        put_u64(&mut all, batches);
        all.extend_from_slice(&out);
        return Ok(all);
    }
    read(&mut |rows| engine.update(round, &rows))?;
    engine.export(round, false)
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A batch's scores as bytes (after the summaries and the batch count): its first row; per detector the row count, each score's bits,
/// the flagged rows (index in the batch, reason) and the seconds; then the shown texts and
/// ids (row, text).
fn encode_scores(s: &Scored, out: &mut Vec<u8>) {
    put_u64(out, s.start as u64);
    for (part, secs) in &s.parts {
        put_u64(out, part.score.len() as u64);
        for v in &part.score {
            put_u64(out, v.to_bits());
        }
        let flagged: Vec<(usize, &String)> = part
            .reason
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
            .collect();
        put_u64(out, flagged.len() as u64);
        for (i, r) in flagged {
            put_u64(out, i as u64);
            put_str(out, r);
        }
        put_u64(out, secs.to_bits());
    }
    let put_rows = |out: &mut Vec<u8>, rows: &BTreeMap<usize, String>| {
        put_u64(out, rows.len() as u64);
        for (row, t) in rows {
            put_u64(out, *row as u64);
            put_str(out, t);
        }
    };
    put_rows(out, &s.shown.texts);
    match &s.shown.ids {
        None => put_u64(out, u64::MAX),
        Some(ids) => put_rows(out, ids),
    }
}

/// Reads what [`encode_scores`] wrote.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u64(&mut self) -> Result<u64, ScanError> {
        let (v, rest) = self.0.split_at_checked(8).ok_or_else(truncated)?;
        self.0 = rest;
        Ok(u64::from_le_bytes(v.try_into().map_err(|_| truncated())?))
    }

    fn usize(&mut self) -> Result<usize, ScanError> {
        usize::try_from(self.u64()?).map_err(|_| truncated())
    }

    /// `n` (row, text) entries.
    fn rows(&mut self, n: usize) -> Result<BTreeMap<usize, String>, ScanError> {
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let row = self.usize()?;
            out.insert(row, self.string()?);
        }
        Ok(out)
    }

    fn string(&mut self) -> Result<String, ScanError> {
        let n = self.usize()?;
        let (v, rest) = self.0.split_at_checked(n).ok_or_else(truncated)?;
        self.0 = rest;
        String::from_utf8(v.to_vec()).map_err(|_| truncated())
    }
}

fn truncated() -> ScanError {
    ScanError::Config("a task's scores are truncated or damaged".into())
}

/// A round-4 task's result: the fitted detectors' summaries, then its batches' scores.
fn decode_scores(
    bytes: &[u8],
    detectors: usize,
) -> Result<(Vec<serde_json::Value>, Vec<Scored>), ScanError> {
    let mut r = Reader(bytes);
    let summaries: Vec<serde_json::Value> =
        serde_json::from_str(&r.string()?).map_err(|_| truncated())?;
    if summaries.len() != detectors {
        return Err(truncated());
    }
    let batches = r.usize()?;
    let mut out = Vec::new();
    for _ in 0..batches {
        let start = r.usize()?;
        let mut parts = Vec::with_capacity(detectors);
        for _ in 0..detectors {
            let n = r.usize()?;
            if n > r.0.len() / 8 {
                return Err(truncated());
            }
            let mut s = Scores::with_capacity(n);
            for _ in 0..n {
                s.score.push(f64::from_bits(r.u64()?));
            }
            s.reason = vec![None; n];
            for _ in 0..r.usize()? {
                let i = r.usize()?;
                let reason = r.string()?;
                *s.reason.get_mut(i).ok_or_else(truncated)? = Some(reason);
            }
            let secs = f64::from_bits(r.u64()?);
            parts.push((s, secs));
        }
        let n = r.usize()?;
        let texts = r.rows(n)?;
        let ids = match r.u64()? {
            u64::MAX => None,
            k => Some(r.rows(usize::try_from(k).map_err(|_| truncated())?)?),
        };
        out.push(Scored {
            start,
            parts,
            shown: Shown { texts, ids },
        });
    }
    if !r.0.is_empty() {
        return Err(truncated());
    }
    Ok((summaries, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_consecutive_runs_of_about_equal_rows() {
        let rows = [10, 10, 10, 10, 10, 10, 10];
        for k in [1, 2, 3, 7, 16] {
            let p = partitions(&rows, k);
            assert_eq!(p.len(), k.min(7), "{k}");
            assert_eq!(p[0].groups.start, 0);
            assert_eq!(p.last().map(|g| g.groups.end), Some(7));
            for w in p.windows(2) {
                assert_eq!(w[0].groups.end, w[1].groups.start);
                assert!(!w[0].groups.is_empty());
            }
        }
        assert_eq!(partitions(&[5], 4), vec![RowGroups { groups: 0..1 }]);
    }
}
