//! DUP001 in rounds whose partial results merge exactly, so that any partitioning of the rows
//! and any merge order give the same state bytes and the same verdicts as one pass.
//!
//! 1. **Keys** ([`KeysPartial`]): per row, the xxh3-128 hash of its normalised text, its row
//!    number and label, sorted by (hash, row). Merging is a merge of sorted lists, so the merged
//!    list is the exact groups, each in row order, whatever the split. Finalised
//!    ([`Rounds::groups`]) into the groups ordered by first row, every row's label, and the 1:1
//!    label ties the flip-direction test reads.
//! 2. **Words** ([`WordsPartial`]), only when there are such ties: the per-class word counts of
//!    every row (integer tables, merged by adding) and the words of each tied group's text.
//! 3. **Verdicts** ([`Rounds::finish`]): the conflicts, the flip direction and every flagged
//!    row's reason, read off the merged state by the same code as the one-pass fit.
//!
//! Round 1's state holds 28 bytes a row: grouping by key is what exact duplicates need. On a
//! cluster the keys would be shuffled by hash range, each range finalised on its own; here the
//! whole list is merged. The scan runs these rounds over parts of the rows (`fit`); DUP001 with a
//! trusted corpus (`scan --reference`) is not run in rounds.

use super::direction::ClassWords;
use super::edits::text_word_hashes;
use super::exact::{Core, GroupList, PerGroup};
use super::link::merge_sorted;
use super::normalise::normalize;
use super::verdicts::verdicts;
use super::{DupParams, Kind, META_DUP001};
use crate::state::{header, Header, StateError};
use crate::{ClassIndex, Configured, DetectError, Fitted};
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_128;

const CODE: &str = "DUP001";

/// The rounds of DUP001.
#[derive(Debug, Clone)]
pub struct Rounds {
    params: DupParams,
    header: Header,
}

/// Round 1's partial state: (text hash, row number, label) per row, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeysPartial {
    rows: Vec<(u128, u64, ClassIndex)>,
}

/// Round 1 finalised: the exact groups, every row's label and the ties round 2 reads.
#[derive(Debug, Clone)]
pub struct Groups {
    /// Exact groups (rows ascending), ordered by first row.
    pub(super) groups: GroupList,
    pub(super) labels: Vec<ClassIndex>,
    /// Groups whose label conflict is a tie between two labels, by text hash.
    ties: BTreeMap<u128, usize>,
}

/// Round 2's partial state: class word counts of every row, and the words of tied groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WordsPartial {
    words: ClassWords,
    /// Words of each tied group's normalised text, by text hash.
    tied: BTreeMap<u128, Vec<u64>>,
}

fn data_error(problem: String) -> DetectError {
    DetectError::Data {
        code: CODE,
        problem,
    }
}

fn take_u32(bytes: &[u8]) -> Result<(u32, &[u8]), StateError> {
    let (v, rest) = header::take_u64(bytes)?;
    u32::try_from(v)
        .map(|v| (v, rest))
        .map_err(|_| StateError::Truncated)
}

pub(super) fn take_u128(bytes: &[u8]) -> Result<(u128, &[u8]), StateError> {
    let (lo, rest) = header::take_u64(bytes)?;
    let (hi, rest) = header::take_u64(rest)?;
    Ok(((u128::from(hi) << 64) | u128::from(lo), rest))
}

pub(super) fn put_u128(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(&(v as u64).to_le_bytes());
    out.extend_from_slice(&((v >> 64) as u64).to_le_bytes());
}

/// Seed of DUP001's word hashes (the one-pass fit's, which has no near-duplicate seed).
const WORD_SEED: u64 = 1;

impl Rounds {
    /// DUP001's rounds with the resolved `params` (DUP001's own, without a trusted corpus).
    pub fn new(params: &DupParams) -> Result<Self, DetectError> {
        if params.kind != Kind::ExactConflict {
            return Err(data_error(format!(
                "{} does not run in rounds (its near-duplicate search needs every row at once)",
                params.code()
            )));
        }
        if params.reference.is_some() {
            return Err(data_error(
                "DUP001 with a trusted corpus does not run in rounds".to_string(),
            ));
        }
        Ok(Rounds {
            header: Header::new(CODE, META_DUP001.version, &params.params()),
            params: params.clone(),
        })
    }

    /// The header every partial of these rounds is serialised behind.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The text normalisation the exact keys are made with: rounds with the same one make the
    /// same round-1 keys, so a driver may compute them once for several detectors.
    pub fn normalization(&self) -> super::Normalization {
        self.params.norm
    }

    /// Round 1 over a batch: `texts`, `labels` and row numbers `ids`, one per row.
    pub fn keys(&self, texts: &[String], labels: &[ClassIndex], ids: &[u64]) -> KeysPartial {
        let normalized: Vec<String> = texts
            .iter()
            .map(|t| normalize(t, &self.params.norm))
            .collect();
        keys_of(&normalized, labels, ids)
    }

    /// Round 1 finalised. The row numbers must be 0..n, each once.
    pub fn groups(&self, keys: KeysPartial) -> Result<Groups, DetectError> {
        groups_of(keys, self.params.direction_alpha > 0.0, CODE)
    }

    /// Round 2 over a batch (needed only when [`Groups::needs_words`]).
    pub fn words(&self, groups: &Groups, texts: &[String], labels: &[ClassIndex]) -> WordsPartial {
        let normalized: Vec<String> = texts
            .iter()
            .map(|t| normalize(t, &self.params.norm))
            .collect();
        words_of(groups, &normalized, labels)
    }

    /// Round 2's partial of no rows (what merging starts from).
    pub fn empty_words(&self) -> WordsPartial {
        WordsPartial::default()
    }

    /// The fitted detector (class `names`, in class order); `words` is round 2's merged
    /// state, or its empty partial when no tie needed it.
    pub fn finish(
        &self,
        names: &[String],
        groups: Groups,
        words: &WordsPartial,
    ) -> Box<dyn Fitted> {
        let mut toks = vec![Vec::new(); groups.groups.len()];
        for (h, &g) in &groups.ties {
            if let Some(t) = words.tied.get(h) {
                toks[g] = t.clone();
            }
        }
        let n = groups.labels.len();
        let mut group_of = vec![0usize; n];
        for (gi, g) in groups.groups.iter().enumerate() {
            for &r in g {
                group_of[r] = gi;
            }
        }
        let core = Core {
            n_rows: n,
            groups: groups.groups,
            group_of,
            clusters: None,
            sigs: PerGroup::default(),
            edges: BTreeMap::new(),
            toks: PerGroup::Dense(toks),
            near_stats: serde_json::Value::Null,
            rep_texts: PerGroup::default(),
            contrasts: Vec::new(),
        };
        Box::new(verdicts(
            &self.params,
            &core,
            Some(&groups.labels),
            names,
            Some(&words.words),
        ))
    }
}

/// Round 1 finalised into the exact groups (the row numbers must be 0..n, each once), with the
/// 1:1 label ties when `ties` is set.
pub(super) fn groups_of(
    keys: KeysPartial,
    with_ties: bool,
    code: &'static str,
) -> Result<Groups, DetectError> {
    let data_error = |problem: String| DetectError::Data { code, problem };
    let n = keys.rows.len();
    let mut labels = vec![0 as ClassIndex; n];
    let mut seen = vec![false; n];
    for &(_, id, l) in &keys.rows {
        let row = usize::try_from(id)
            .ok()
            .filter(|&r| r < n)
            .ok_or_else(|| data_error(format!("row number {id} outside the {n} rows merged")))?;
        if std::mem::replace(&mut seen[row], true) {
            return Err(data_error(format!("row {row} is in two partitions")));
        }
        labels[row] = l;
    }
    drop(seen);
    // the keys are sorted by text hash, then row: the groups are read off them in place
    // (every row number was checked above)
    let rows = &keys.rows;
    let (groups, first) = GroupList::from_sorted_by(n, |i| rows[i].0, |i| rows[i].1 as usize);
    let mut ties = BTreeMap::new();
    if with_ties {
        for (gi, (g, &f)) in groups.iter().zip(&first).enumerate() {
            let h = &rows[f].0;
            if g.len() < 2 {
                continue;
            }
            let mut counts: BTreeMap<ClassIndex, usize> = BTreeMap::new();
            for &r in g {
                *counts.entry(labels[r]).or_default() += 1;
            }
            let top = counts.values().copied().max().unwrap_or(0);
            let tops = counts.values().filter(|&&c| c == top).count();
            if counts.len() >= 2 && tops == 2 {
                ties.insert(*h, gi);
            }
        }
    }
    Ok(Groups {
        groups,
        labels,
        ties,
    })
}

/// Round 1 over normalised texts.
pub(super) fn keys_of(normalized: &[String], labels: &[ClassIndex], ids: &[u64]) -> KeysPartial {
    let mut rows: Vec<(u128, u64, ClassIndex)> = normalized
        .iter()
        .zip(labels)
        .zip(ids)
        .map(|((t, &l), &id)| (xxh3_128(t.as_bytes()), id, l))
        .collect();
    rows.sort_unstable();
    KeysPartial { rows }
}

/// Round 2 over normalised texts.
fn words_of(groups: &Groups, normalized: &[String], labels: &[ClassIndex]) -> WordsPartial {
    let mut out = WordsPartial::default();
    for (t, &l) in normalized.iter().zip(labels) {
        let toks = text_word_hashes(t, WORD_SEED);
        out.words.add_row(&toks, l);
        if !groups.ties.is_empty() {
            let h = xxh3_128(t.as_bytes());
            if groups.ties.contains_key(&h) {
                out.tied.entry(h).or_insert(toks);
            }
        }
    }
    out
}

/// DUP001 as the scan runs it: the rounds over parts of the rows, in parallel (their merges
/// are exact, so the result is that of one pass whatever the chunking and the thread count).
pub(super) fn fit(
    p: &DupParams,
    texts: &[String],
    labels: &[ClassIndex],
    names: &[String],
) -> Result<Box<dyn Fitted>, DetectError> {
    use crate::class_pca::over_parts;
    use rayon::prelude::*;
    let r = Rounds::new(p)?;
    let n = texts.len();
    let ids: Vec<u64> = (0..n as u64).collect();
    // every text normalised once, for both rounds
    let normalized: Vec<String> = texts.par_iter().map(|t| normalize(t, &p.norm)).collect();
    let keys = over_parts(
        n,
        |s, e| Ok::<_, DetectError>(keys_of(&normalized[s..e], &labels[s..e], &ids[s..e])),
        KeysPartial::default,
        |a, b| {
            a.merge(&b);
            Ok(())
        },
    )?;
    let groups = r.groups(keys)?;
    let words = if groups.needs_words() {
        over_parts(
            n,
            |s, e| Ok::<_, DetectError>(words_of(&groups, &normalized[s..e], &labels[s..e])),
            WordsPartial::default,
            |a, b| {
                a.merge(&b);
                Ok(())
            },
        )?
    } else {
        WordsPartial::default()
    };
    Ok(r.finish(names, groups, &words))
}

impl Groups {
    /// Whether round 2 is needed: some label conflict is a tie the flip direction reads.
    pub fn needs_words(&self) -> bool {
        !self.ties.is_empty()
    }

    /// The number of exact groups (distinct normalised texts).
    pub fn count(&self) -> usize {
        self.groups.len()
    }
}

impl KeysPartial {
    /// Add another partial's rows (a merge of sorted lists).
    pub fn merge(&mut self, other: &KeysPartial) {
        self.rows = merge_sorted(&self.rows, &other.rows);
    }

    /// Serialised behind `header`: the row count (u64), then per row the hash (two u64, low
    /// half first), the row number and the label (u64 each), little-endian.
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        out.extend_from_slice(&(self.rows.len() as u64).to_le_bytes());
        for &(h, id, l) in &self.rows {
            put_u128(&mut out, h);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&u64::from(l).to_le_bytes());
        }
        out
    }

    /// Read a partial written by [`KeysPartial::to_bytes`] behind `expected`; rows out of order
    /// are refused.
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<KeysPartial, StateError> {
        let rest = expected.check(bytes)?;
        let (n, mut rest) = header::take_u64(rest)?;
        let n = usize::try_from(n).map_err(|_| StateError::Truncated)?;
        if rest.len() / 32 < n {
            return Err(StateError::Truncated);
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            let (h, r) = take_u128(rest)?;
            let (id, r) = header::take_u64(r)?;
            let (l, r) = take_u32(r)?;
            rest = r;
            if rows.last().is_some_and(|last| *last >= (h, id, l)) {
                return Err(StateError::Unsorted);
            }
            rows.push((h, id, l));
        }
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        Ok(KeysPartial { rows })
    }
}

/// Class word counts serialised: the document-frequency and the term-frequency tables, each as
/// a count (u64) of sorted (word, class, count) triples (u64 each; word u64::MAX holds the
/// class's rows and words), then the sample of texts per class: a count (u64) of sorted
/// entries, each its class, key, rows, word count and words (u64 each).
pub(super) fn put_words(out: &mut Vec<u8>, words: &ClassWords) {
    for table in words.triples() {
        out.extend_from_slice(&(table.len() as u64).to_le_bytes());
        for (w, l, c) in table {
            for v in [w, u64::from(l), c] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    let entries: Vec<_> = words.sample_entries().collect();
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (l, key, rows, toks) in entries {
        for v in [u64::from(l), key, rows as u64, toks.len() as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for w in toks {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
}

/// Read what [`put_words`] wrote; unsorted tables are refused.
pub(super) fn take_words(bytes: &[u8]) -> Result<(ClassWords, &[u8]), StateError> {
    let mut rest = bytes;
    let mut tables: [Vec<(u64, ClassIndex, u64)>; 2] = [Vec::new(), Vec::new()];
    for table in &mut tables {
        let (n, r) = header::take_u64(rest)?;
        rest = r;
        let n = usize::try_from(n).map_err(|_| StateError::Truncated)?;
        if rest.len() / 24 < n {
            return Err(StateError::Truncated);
        }
        for _ in 0..n {
            let (w, r) = header::take_u64(rest)?;
            let (l, r) = take_u32(r)?;
            let (c, r) = header::take_u64(r)?;
            rest = r;
            // words ascending, then the totals (word u64::MAX) by class
            if table.last().is_some_and(|last| (last.0, last.1) >= (w, l)) {
                return Err(StateError::Unsorted);
            }
            table.push((w, l, c));
        }
    }
    let mut words = ClassWords::from_triples(&tables[0], &tables[1]);
    let (n, r) = header::take_u64(rest)?;
    rest = r;
    let n = usize::try_from(n).map_err(|_| StateError::Truncated)?;
    if rest.len() / 32 < n {
        return Err(StateError::Truncated);
    }
    let mut last: Option<(ClassIndex, u64, Vec<u64>)> = None;
    for _ in 0..n {
        let (l, r) = take_u32(rest)?;
        let (key, r) = header::take_u64(r)?;
        let (rows, r) = header::take_u64(r)?;
        let (len, r) = header::take_u64(r)?;
        let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
        if r.len() / 8 < len {
            return Err(StateError::Truncated);
        }
        let mut toks = Vec::with_capacity(len);
        let mut r = r;
        for _ in 0..len {
            let (w, rr) = header::take_u64(r)?;
            toks.push(w);
            r = rr;
        }
        rest = r;
        // by class, then key and words
        if last
            .as_ref()
            .is_some_and(|(pl, pk, pt)| (*pl, *pk, pt.as_slice()) >= (l, key, toks.as_slice()))
        {
            return Err(StateError::Unsorted);
        }
        let rows = usize::try_from(rows).map_err(|_| StateError::Truncated)?;
        last = Some((l, key, toks.clone()));
        words.insert_sample(l, key, rows, toks);
    }
    Ok((words, rest))
}

impl WordsPartial {
    /// Add another partial's counts, and the tied groups' words it has.
    pub fn merge(&mut self, other: &WordsPartial) {
        self.words.merge(&other.words);
        for (h, t) in &other.tied {
            self.tied.entry(*h).or_insert_with(|| t.clone());
        }
    }

    /// Serialised behind `header`: the document-frequency and the term-frequency tables, each
    /// as a count (u64) of sorted (word, class, count) triples (u64 each; word u64::MAX holds
    /// the class's rows and words), then the tied groups' words: a count, and per group its
    /// hash (two u64), its word count and words (u64 each), in hash order.
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        put_words(&mut out, &self.words);
        out.extend_from_slice(&(self.tied.len() as u64).to_le_bytes());
        for (h, t) in &self.tied {
            put_u128(&mut out, *h);
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
            for w in t {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// Read a partial written by [`WordsPartial::to_bytes`] behind `expected`.
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<WordsPartial, StateError> {
        let (words, mut rest) = take_words(expected.check(bytes)?)?;
        let (n, r) = header::take_u64(rest)?;
        rest = r;
        let mut tied = BTreeMap::new();
        let mut last: Option<u128> = None;
        for _ in 0..n {
            let (h, r) = take_u128(rest)?;
            let (len, r) = header::take_u64(r)?;
            rest = r;
            if last.is_some_and(|l| l >= h) {
                return Err(StateError::Unsorted);
            }
            last = Some(h);
            let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
            if rest.len() / 8 < len {
                return Err(StateError::Truncated);
            }
            let mut t = Vec::with_capacity(len);
            for _ in 0..len {
                let (w, r) = header::take_u64(rest)?;
                rest = r;
                t.push(w);
            }
            tied.insert(h, t);
        }
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        Ok(WordsPartial { words, tied })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::testutil::{assert_same_scores, partition, sha, take_texts};
    use crate::DatasetView;

    /// Two classes with their own words; exact copies of class-0 rows relabelled 1 (1:1 ties
    /// the flip direction resolves), a few 2:1 conflicts and plain duplicates.
    fn data() -> (Vec<String>, Vec<u32>) {
        let mut rng = SplitMix64(5);
        let vocab = |c: u32, i: usize| format!("w{c}x{i}");
        let mut texts = Vec::new();
        let mut labels = Vec::new();
        for i in 0..900 {
            let c = (i % 2) as u32;
            let words: Vec<String> = (0..8)
                .map(|_| {
                    if rng.unit() < 0.6 {
                        vocab(c, rng.below(40))
                    } else {
                        format!("common{}", rng.below(60))
                    }
                })
                .collect();
            texts.push(words.join(" "));
            labels.push(c);
        }
        for i in 0..40 {
            let src = 2 * (i * 7 % 450);
            texts.push(texts[src].to_uppercase());
            labels.push(1);
        }
        for i in 0..10 {
            let src = 2 * i + 1;
            texts.push(format!("  {}  ", texts[src]));
            labels.push(1);
            texts.push(texts[src].clone());
            labels.push(0);
        }
        for i in 0..20 {
            texts.push(texts[100 + 2 * i].clone());
            labels.push(0);
        }
        (texts, labels)
    }

    #[test]
    fn any_partitioning_and_merge_order_give_the_same_state_and_verdicts() {
        let (texts, labels) = data();
        let names: Vec<String> = vec!["0".into(), "1".into()];
        let p = DupParams::dup001(&toml::Table::new()).unwrap();
        let view = DatasetView {
            n_rows: texts.len(),
            texts: Some(&texts),
            labels: Some(&labels),
            class_names: &names,
            embeddings: None,
            response_embeddings: None,
            responses: None,
            rejected: None,
        };
        let whole = p.fit(&view).unwrap();
        let all = view.batch(0, texts.len());
        let whole_scores = whole.score(&all).unwrap();
        let summary = whole.summary();
        assert!(summary["flip_direction"]["targets"][0] == "1", "{summary}");
        assert!(whole_scores.reason.iter().flatten().count() >= 50);
        let r = Rounds::new(&p).unwrap();
        let mut seen = None;
        for (k, seed) in [(1usize, 1u64), (2, 2), (7, 3), (16, 4), (16, 5)] {
            let parts = partition(texts.len(), k, seed);
            let pick = |part: &[usize]| take_texts(&texts, &labels, part);
            let mut keys = KeysPartial::default();
            for part in &parts {
                let (t, l, ids) = pick(part);
                let b = r.keys(&t, &l, &ids).to_bytes(r.header());
                keys.merge(&KeysPartial::from_bytes(&b, r.header()).unwrap());
            }
            let key_bytes = keys.to_bytes(r.header());
            let groups = r.groups(keys).unwrap();
            assert!(groups.needs_words());
            let mut words = r.empty_words();
            for part in parts.iter().rev() {
                let (t, l, _) = pick(part);
                let b = r.words(&groups, &t, &l).to_bytes(r.header());
                words.merge(&WordsPartial::from_bytes(&b, r.header()).unwrap());
            }
            let digests = (sha(&key_bytes), sha(&words.to_bytes(r.header())));
            match &seen {
                None => seen = Some(digests),
                Some(d) => assert_eq!(d, &digests, "{k} partitions"),
            }
            let fitted = r.finish(&names, groups, &words);
            let scores = fitted.score(&all).unwrap();
            assert_same_scores(&scores, &whole_scores, &format!("{k} partitions"));
            assert_eq!(fitted.summary(), summary, "{k} partitions");
        }
    }

    #[test]
    fn overlapping_missing_damaged_or_foreign_partials_are_refused() {
        let (texts, labels) = data();
        let p = DupParams::dup001(&toml::Table::new()).unwrap();
        let r = Rounds::new(&p).unwrap();
        let ids: Vec<u64> = (0..texts.len() as u64).collect();
        let keys = r.keys(&texts, &labels, &ids);
        // the same rows twice, or a row missing
        let mut twice = keys.clone();
        twice.merge(&keys);
        assert!(r.groups(twice).is_err());
        let short = r.keys(&texts[1..], &labels[1..], &ids[1..]);
        assert!(r.groups(short).is_err());
        let bytes = keys.to_bytes(r.header());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(KeysPartial::from_bytes(&bytes[..cut], r.header()).is_err());
        }
        let mut other = toml::Table::new();
        other.insert("case_fold".into(), toml::Value::Boolean(false));
        let r2 = Rounds::new(&DupParams::dup001(&other).unwrap()).unwrap();
        assert!(KeysPartial::from_bytes(&bytes, r2.header()).is_err());
        let mut swapped = keys.clone();
        swapped.rows.swap(0, 1);
        assert_eq!(
            KeysPartial::from_bytes(&swapped.to_bytes(r.header()), r.header()),
            Err(StateError::Unsorted)
        );
        let groups = r.groups(keys).unwrap();
        let w = r.words(&groups, &texts, &labels).to_bytes(r.header());
        assert!(WordsPartial::from_bytes(&w[..w.len() - 1], r.header()).is_err());
        // the near-duplicate detectors do not run in rounds
        let near = crate::find("DUP002").unwrap();
        assert!(near.configure(&toml::Table::new()).is_ok());
        let mut dup002 = p.clone();
        dup002.kind = Kind::NearConflict;
        assert!(Rounds::new(&dup002).is_err());
    }
}
