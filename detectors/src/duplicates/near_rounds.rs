//! DUP002 and DUP003 in rounds whose partial results merge exactly, so that any partitioning
//! of the rows and any merge order give the same state bytes and the same verdicts as one pass.
//!
//! 1. **Keys** (DUP001's round 1, [`KeysPartial`]): the exact groups, each row's label.
//! 2. **Near keys** ([`NearKeysPartial`]): for each exact group, from its first row, the LSH
//!    band keys of its MinHash signature and, with `word_edit`, its one-word-edit and aligned
//!    block keys, as `(key, group)` lists sorted by key. A round may keep one slice of the key
//!    space ([`KeyRange`]): the slices are finalised one at a time into their candidate pairs
//!    ([`NearRounds::candidates`], merged with [`Candidates::merge`]), so no pass holds every
//!    key at once.
//! 3. **Payload** ([`PayloadPartial`]): the signature, words and normalised text of every group
//!    in a candidate pair, and for DUP002 the per-class word counts of every row (integer
//!    tables, merged by adding).
//! 4. **Verdicts** ([`NearRounds::finish`]): the candidates verified, the clusters, DUP002's
//!    contrast test and flip direction, every flagged row's reason: the one-pass code
//!    ([`Core::link`], the verdicts) run on the merged state.
//!
//! DUP002's embedding relation (nearest neighbours over all rows) is not part of the rounds:
//! they give the verdicts of a scan without embeddings. DUP002 and DUP003 with a trusted corpus
//! (`scan --reference`) do not run in rounds either.

use super::direction::ClassWords;
use super::edits::text_word_hashes;
use super::exact::{Core, PerGroup};
use super::link::{group_keys, Candidates, KeyRange, NearKeys};
use super::minhash::Permutations;
use super::normalise::normalize;
use super::rounds::{groups_of, keys_of, put_words, take_words, Groups, KeysPartial};
use super::verdicts::verdicts;
use super::{DupParams, Kind, NearParams, META_DUP002, META_DUP003};
use crate::state::{header, Header, StateError};
use crate::{ClassIndex, Configured, DetectError, Fitted};
use std::collections::{BTreeMap, HashMap};

/// The rounds of DUP002 or DUP003.
#[derive(Debug, Clone)]
pub struct NearRounds {
    params: DupParams,
    near: NearParams,
    header: Header,
}

/// Round 2's partial state: the keys of the exact groups whose first row it read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NearKeysPartial {
    keys: NearKeys,
}

/// What round 3 holds of one exact group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupPayload {
    sig: Vec<u32>,
    toks: Vec<u64>,
    text: String,
}

/// Round 3's partial state: the payload of the groups in a candidate pair whose first row it
/// read, by group, and (DUP002) the class word counts of its rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayloadPartial {
    groups: BTreeMap<u64, GroupPayload>,
    words: ClassWords,
}

/// Round 2 finalised: the candidate pairs, and the groups whose payload round 3 collects.
#[derive(Debug, Clone)]
pub struct Links {
    cands: Candidates,
    needed: Vec<bool>,
}

impl NearRounds {
    /// The rounds of DUP002 or DUP003 with the resolved `params` (without a trusted corpus).
    pub fn new(params: &DupParams) -> Result<Self, DetectError> {
        let code = params.code();
        let meta = match params.kind {
            Kind::NearConflict => &META_DUP002,
            Kind::Amplification => &META_DUP003,
            Kind::ExactConflict => {
                return Err(DetectError::Data {
                    code,
                    problem: "DUP001 runs in its own rounds (duplicates::rounds)".to_string(),
                })
            }
        };
        let (Some(near), None) = (params.near, &params.reference) else {
            return Err(DetectError::Data {
                code,
                problem: format!("{code} with a trusted corpus does not run in rounds"),
            });
        };
        Ok(NearRounds {
            header: Header::new(code, meta.version, &params.params()),
            params: params.clone(),
            near,
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

    fn normalized(&self, texts: &[String]) -> Vec<String> {
        texts
            .iter()
            .map(|t| normalize(t, &self.params.norm))
            .collect()
    }

    /// The seed of the word hashes (the one-pass fit's).
    fn word_seed(&self) -> u64 {
        self.near.seed
    }

    /// Round 1 over a batch: `texts`, their `labels` (DUP003 may have none: pass zeros) and
    /// row numbers `ids`, one per row.
    pub fn keys(&self, texts: &[String], labels: &[ClassIndex], ids: &[u64]) -> KeysPartial {
        keys_of(&self.normalized(texts), labels, ids)
    }

    /// Round 1 finalised. The row numbers must be 0..n, each once.
    pub fn groups(&self, keys: KeysPartial) -> Result<Groups, DetectError> {
        groups_of(keys, false, self.params.code())
    }

    /// Round 2 over a batch: the keys in `range` of the exact groups whose first row is in it.
    pub fn near_keys(
        &self,
        groups: &Groups,
        texts: &[String],
        ids: &[u64],
        range: KeyRange,
    ) -> NearKeysPartial {
        let perms = Permutations::new(&self.near);
        let mut keys = NearKeys::default();
        for (t, &id) in texts.iter().zip(ids) {
            let Some(g) = groups.group_first_at(id) else {
                continue;
            };
            let n = normalize(t, &self.params.norm);
            let sig = perms.signature(&n);
            let toks = text_word_hashes(&n, self.word_seed());
            group_keys(g, &sig, &toks, &self.near, range, &mut keys);
        }
        keys.sort();
        NearKeysPartial { keys }
    }

    /// Round 2 over a batch for every slice of the key space at once: entry `p` is
    /// [`Self::near_keys`] with `KeyRange { part: p, parts }`, each text's signature and words
    /// computed once. For a caller that keeps the slices apart (on disk) in one pass.
    pub fn near_keys_sliced(
        &self,
        groups: &Groups,
        texts: &[String],
        ids: &[u64],
        parts: u64,
    ) -> Vec<NearKeysPartial> {
        self.near_keys(groups, texts, ids, KeyRange::ALL)
            .keys
            .split(parts)
            .into_iter()
            .map(|keys| NearKeysPartial { keys })
            .collect()
    }

    /// Round 2's merged keys (of one key range) finalised into their candidate pairs.
    pub fn candidates(&self, keys: &NearKeysPartial) -> Candidates {
        keys.keys.candidates(self.near.max_bucket)
    }

    /// The candidates of every key range, merged, with the groups round 3 reads.
    pub fn links(&self, groups: &Groups, cands: Candidates) -> Links {
        let mut needed = vec![false; groups.groups.len()];
        for g in cands.groups() {
            if let Some(n) = needed.get_mut(g) {
                *n = true;
            }
        }
        Links { cands, needed }
    }

    /// Round 3 over a batch: `texts`, `labels` and `ids` one per row.
    pub fn payload(
        &self,
        groups: &Groups,
        links: &Links,
        texts: &[String],
        labels: &[ClassIndex],
        ids: &[u64],
    ) -> PayloadPartial {
        let perms = Permutations::new(&self.near);
        let conflict = self.params.kind == Kind::NearConflict;
        let mut out = PayloadPartial::default();
        for ((t, &l), &id) in texts.iter().zip(labels).zip(ids) {
            let first = groups.group_first_at(id).filter(|&g| links.needed[g]);
            if !conflict && first.is_none() {
                continue;
            }
            let n = normalize(t, &self.params.norm);
            let toks = text_word_hashes(&n, self.word_seed());
            if conflict {
                out.words.add_row(&toks, l);
            }
            if let Some(g) = first {
                let sig = perms.signature(&n);
                out.groups
                    .insert(g as u64, GroupPayload { sig, toks, text: n });
            }
        }
        out
    }

    /// The fitted detector (class `names`, in class order), from round 1's groups, round 2's
    /// links and round 3's merged payload. `labelled`: whether the rows had labels (DUP003 may
    /// run without).
    pub fn finish(
        &self,
        names: &[String],
        groups: Groups,
        links: Links,
        payload: PayloadPartial,
        labelled: bool,
    ) -> Result<Box<dyn Fitted>, DetectError> {
        let code = self.params.code();
        let n_groups = groups.groups.len();
        let held = payload.groups.len();
        let mut sigs = HashMap::with_capacity(held);
        let mut toks = HashMap::with_capacity(held);
        let mut rep_texts = HashMap::with_capacity(held);
        for (g, p) in payload.groups {
            let g = usize::try_from(g)
                .ok()
                .filter(|&g| g < n_groups && links.needed[g])
                .ok_or_else(|| DetectError::Data {
                    code,
                    problem: format!("round 3 holds group {g}, which no candidate pair names"),
                })?;
            sigs.insert(g, p.sig);
            toks.insert(g, p.toks);
            rep_texts.insert(g, p.text);
        }
        if let Some(g) = (0..n_groups).find(|&g| links.needed[g] && !sigs.contains_key(&g)) {
            return Err(DetectError::Data {
                code,
                problem: format!(
                    "round 3 lacks the group of row {} (its first row was in no partial)",
                    groups.groups[g][0]
                ),
            });
        }
        let n = groups.labels.len();
        let mut group_of = vec![0usize; n];
        for (gi, g) in groups.groups.iter().enumerate() {
            for &r in g {
                group_of[r] = gi;
            }
        }
        let mut core = Core {
            n_rows: n,
            groups: groups.groups,
            group_of,
            clusters: None,
            sigs: PerGroup::default(),
            edges: BTreeMap::new(),
            toks: PerGroup::Sparse(toks, Vec::new()),
            near_stats: serde_json::Value::Null,
            rep_texts: PerGroup::Sparse(rep_texts, String::new()),
            contrasts: Vec::new(),
        };
        core.link(PerGroup::Sparse(sigs, Vec::new()), &links.cands, &self.near);
        let labels = labelled.then_some(groups.labels.as_slice());
        let words = (self.params.kind == Kind::NearConflict).then_some(&payload.words);
        if let (Some(l), Some(w)) = (labels, words) {
            let dropped = core.drop_explained_contrasts(l, self.near.contrast_odds, Some(w));
            core.near_stats["explained_contrast_pairs"] = serde_json::json!(dropped);
        }
        Ok(Box::new(verdicts(
            &self.params,
            &core,
            labels,
            names,
            words,
        )))
    }
}

impl Groups {
    /// The exact group whose first row is row `id`, if it is one.
    pub(super) fn group_first_at(&self, id: u64) -> Option<usize> {
        let row = usize::try_from(id).ok()?;
        self.groups.starting_at(row)
    }
}

/// `count` u64 values, the count first (little-endian).
fn put_u64s(out: &mut Vec<u8>, count: usize, values: impl Iterator<Item = u64>) {
    out.extend_from_slice(&(count as u64).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A list of `width`-tuples of u64 written by [`put_u64s`], each tuple strictly after the last.
fn take_tuples(bytes: &[u8], width: usize) -> Result<(Vec<Vec<u64>>, &[u8]), StateError> {
    let (n, mut rest) = header::take_u64(bytes)?;
    let n = usize::try_from(n).map_err(|_| StateError::Truncated)?;
    if n % width != 0 || rest.len() / 8 < n {
        return Err(StateError::Truncated);
    }
    let mut out: Vec<Vec<u64>> = Vec::with_capacity(n / width);
    for _ in 0..n / width {
        let mut t = Vec::with_capacity(width);
        for _ in 0..width {
            let (v, r) = header::take_u64(rest)?;
            rest = r;
            t.push(v);
        }
        if out.last().is_some_and(|last| *last >= t) {
            return Err(StateError::Unsorted);
        }
        out.push(t);
    }
    Ok((out, rest))
}

impl NearKeysPartial {
    /// Add another partial's keys (a merge of sorted lists).
    pub fn merge(&mut self, other: &NearKeysPartial) {
        self.keys.merge(&other.keys);
    }

    /// Serialised behind `header`: the band, edit and block lists, each as a count of u64
    /// values (three per band or edit key: band or words, hash, group; two per block key:
    /// hash, group), little-endian, in sorted order.
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        let k = &self.keys;
        let band = k.band.iter().flat_map(|&((b, h), g)| [b, h, g]);
        put_u64s(&mut out, 3 * k.band.len(), band);
        let edit = k.edit.iter().flat_map(|&((l, h), g)| [l, h, g]);
        put_u64s(&mut out, 3 * k.edit.len(), edit);
        let block = k.block.iter().flat_map(|&(h, g)| [h, g]);
        put_u64s(&mut out, 2 * k.block.len(), block);
        out
    }

    /// Read a partial written by [`NearKeysPartial::to_bytes`] behind `expected`.
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<NearKeysPartial, StateError> {
        let rest = expected.check(bytes)?;
        let (band, rest) = take_tuples(rest, 3)?;
        let (edit, rest) = take_tuples(rest, 3)?;
        let (block, rest) = take_tuples(rest, 2)?;
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        Ok(NearKeysPartial {
            keys: NearKeys {
                band: band.iter().map(|t| ((t[0], t[1]), t[2])).collect(),
                edit: edit.iter().map(|t| ((t[0], t[1]), t[2])).collect(),
                block: block.iter().map(|t| (t[0], t[1])).collect(),
            },
        })
    }
}

impl PayloadPartial {
    /// Add another partial's groups and counts. A group in both is refused (its first row was
    /// in two partitions).
    pub fn merge(&mut self, other: &PayloadPartial) -> Result<(), StateError> {
        for (g, p) in &other.groups {
            if self.groups.insert(*g, p.clone()).is_some() {
                return Err(StateError::DuplicateRow(*g));
            }
        }
        self.words.merge(&other.words);
        Ok(())
    }

    /// Serialised behind `header`: the group count, then per group (ascending) its index, its
    /// signature (a count, then u32 values), its words (a count, then u64 values) and its
    /// normalised text (a byte count, then UTF-8); then the class word counts. Little-endian.
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        out.extend_from_slice(&(self.groups.len() as u64).to_le_bytes());
        for (g, p) in &self.groups {
            out.extend_from_slice(&g.to_le_bytes());
            out.extend_from_slice(&(p.sig.len() as u64).to_le_bytes());
            for v in &p.sig {
                out.extend_from_slice(&v.to_le_bytes());
            }
            put_u64s(&mut out, p.toks.len(), p.toks.iter().copied());
            out.extend_from_slice(&(p.text.len() as u64).to_le_bytes());
            out.extend_from_slice(p.text.as_bytes());
        }
        put_words(&mut out, &self.words);
        out
    }

    /// Read a partial written by [`PayloadPartial::to_bytes`] behind `expected`.
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<PayloadPartial, StateError> {
        let rest = expected.check(bytes)?;
        let (n, mut rest) = header::take_u64(rest)?;
        let mut groups = BTreeMap::new();
        let mut last: Option<u64> = None;
        for _ in 0..n {
            let (g, r) = header::take_u64(rest)?;
            if last.is_some_and(|l| l >= g) {
                return Err(StateError::Unsorted);
            }
            last = Some(g);
            let (len, r) = header::take_u64(r)?;
            let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
            if r.len() / 4 < len {
                return Err(StateError::Truncated);
            }
            let (sig_bytes, r) = r.split_at(4 * len);
            let sig = sig_bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let (toks, r) = take_u64s(r)?;
            let (len, r) = header::take_u64(r)?;
            let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
            if r.len() < len {
                return Err(StateError::Truncated);
            }
            let (text, r) = r.split_at(len);
            let text = String::from_utf8(text.to_vec()).map_err(|_| StateError::Truncated)?;
            rest = r;
            groups.insert(g, GroupPayload { sig, toks, text });
        }
        let (words, rest) = take_words(rest)?;
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        Ok(PayloadPartial { groups, words })
    }
}

/// Values written by [`put_u64s`], in any order.
fn take_u64s(bytes: &[u8]) -> Result<(Vec<u64>, &[u8]), StateError> {
    let (n, mut rest) = header::take_u64(bytes)?;
    let n = usize::try_from(n).map_err(|_| StateError::Truncated)?;
    if rest.len() / 8 < n {
        return Err(StateError::Truncated);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (v, r) = header::take_u64(rest)?;
        rest = r;
        out.push(v);
    }
    Ok((out, rest))
}

/// DUP002 (without its embedding relation) or DUP003 as the rounds compute it over fixed
/// chunks of rows, with the key space cut into `key_ranges` slices: what the tests and a
/// streaming scan run.
pub fn fit_in_rounds(
    p: &DupParams,
    texts: &[String],
    labels: Option<&[ClassIndex]>,
    names: &[String],
    chunk: usize,
    key_ranges: u64,
) -> Result<Box<dyn Fitted>, DetectError> {
    let r = NearRounds::new(p)?;
    let n = texts.len();
    let zeros = vec![0 as ClassIndex; n];
    let labs = labels.unwrap_or(&zeros);
    let ids: Vec<u64> = (0..n as u64).collect();
    let chunks: Vec<(usize, usize)> = (0..n)
        .step_by(chunk.max(1))
        .map(|s| (s, (s + chunk.max(1)).min(n)))
        .collect();
    let mut keys = KeysPartial::default();
    for &(s, e) in &chunks {
        keys.merge(&r.keys(&texts[s..e], &labs[s..e], &ids[s..e]));
    }
    let groups = r.groups(keys)?;
    let mut cands = Candidates::default();
    for part in 0..key_ranges.max(1) {
        let range = KeyRange {
            part,
            parts: key_ranges.max(1),
        };
        let mut nk = NearKeysPartial::default();
        for &(s, e) in &chunks {
            nk.merge(&r.near_keys(&groups, &texts[s..e], &ids[s..e], range));
        }
        cands.merge(&r.candidates(&nk));
    }
    let links = r.links(&groups, cands);
    let mut payload = PayloadPartial::default();
    for &(s, e) in &chunks {
        payload
            .merge(&r.payload(&groups, &links, &texts[s..e], &labs[s..e], &ids[s..e]))
            .map_err(|e| DetectError::Data {
                code: p.code(),
                problem: e.to_string(),
            })?;
    }
    r.finish(names, groups, links, payload, labels.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use crate::testutil::{assert_same_scores, partition, sha, take_texts};
    use crate::DatasetView;

    /// Two classes of 12-word texts with their own words; flipped copies with 0 to 2 words
    /// replaced, texts with words added, one text copied 30 times (amplification), long texts
    /// with flipped copies one word apart, and contrast pairs (a word added under the other
    /// label).
    fn data() -> (Vec<String>, Vec<u32>) {
        let mut rng = SplitMix64(11);
        let mut texts = Vec::new();
        let mut labels = Vec::new();
        for i in 0..1200 {
            let c = (i % 2) as u32;
            let words: Vec<String> = (0..12)
                .map(|_| {
                    if rng.unit() < 0.5 {
                        format!("w{c}x{}", rng.below(80))
                    } else {
                        format!("common{}", rng.below(300))
                    }
                })
                .collect();
            texts.push(words.join(" "));
            labels.push(c);
        }
        for i in 0..60 {
            let src = 2 * (i * 7 % 600);
            let mut w: Vec<String> = texts[src].split(' ').map(String::from).collect();
            for k in 0..(i % 3) {
                w[3 + 4 * k] = format!("swap{}", rng.below(50));
            }
            texts.push(w.join(" "));
            labels.push(1);
        }
        for i in 0..30 {
            texts.push(format!("{} extra tail words here", texts[1 + 2 * i]));
            labels.push(0);
        }
        for _ in 0..30 {
            texts.push(texts[7].clone());
            labels.push(1);
        }
        // long texts and their flipped copies with the last word changed (MinHash finds them)
        for i in 0..20 {
            let c = (i % 2) as u32;
            let long: Vec<String> = (0..60).map(|_| format!("w{c}x{}", rng.below(80))).collect();
            texts.push(long.join(" "));
            labels.push(c);
            texts.push(format!("{} last{i}", long[..59].join(" ")));
            labels.push(1 - c);
        }
        // a word added under the other label (a contrast pair, not a flip)
        for i in 0..10 {
            texts.push(format!("{} not", texts[2 * i + 1]));
            labels.push(0);
        }
        (texts, labels)
    }

    fn check(params: &toml::Table, code: &'static str, labelled: bool) {
        let (texts, labels) = data();
        let names: Vec<String> = vec!["0".into(), "1".into()];
        let kind = if code == "DUP002" {
            Kind::NearConflict
        } else {
            Kind::Amplification
        };
        let p = super::super::configure(kind, code, params).unwrap();
        let view = DatasetView {
            n_rows: texts.len(),
            texts: Some(&texts),
            labels: labelled.then_some(&labels[..]),
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
        assert!(
            whole_scores.reason.iter().flatten().count() >= 25,
            "{code}: {summary}"
        );
        // every relation and the contrast test take part
        let lsh = &summary["near"]["lsh"];
        assert!(lsh["verified_pairs"].as_u64() >= Some(20), "{lsh}");
        if params.contains_key("word_edit") || code == "DUP002" {
            assert!(lsh["word_edit_pairs"].as_u64() >= Some(20), "{lsh}");
            assert!(lsh["word_substitution_pairs"].as_u64() >= Some(20), "{lsh}");
        }
        if code == "DUP002" {
            assert!(
                lsh["explained_contrast_pairs"].as_u64() >= Some(10),
                "{lsh}"
            );
        }
        let r = NearRounds::new(&p).unwrap();
        let zeros = vec![0u32; texts.len()];
        let labs = if labelled { &labels } else { &zeros };
        let mut seen = None;
        for (k, seed, ranges) in [(1usize, 1u64, 1u64), (2, 2, 3), (7, 3, 1), (16, 4, 5)] {
            let parts = partition(texts.len(), k, seed);
            let pick = |part: &[usize]| take_texts(&texts, labs, part);
            let mut keys = KeysPartial::default();
            for part in &parts {
                let (t, l, ids) = pick(part);
                keys.merge(&r.keys(&t, &l, &ids));
            }
            let groups = r.groups(keys).unwrap();
            let mut cands = Candidates::default();
            let mut key_digests = Vec::new();
            for part in 0..ranges {
                let range = KeyRange {
                    part,
                    parts: ranges,
                };
                let mut nk = NearKeysPartial::default();
                for p in parts.iter().rev() {
                    let (t, _, ids) = pick(p);
                    let b = r.near_keys(&groups, &t, &ids, range).to_bytes(r.header());
                    nk.merge(&NearKeysPartial::from_bytes(&b, r.header()).unwrap());
                }
                key_digests.push(sha(&nk.to_bytes(r.header())));
                cands.merge(&r.candidates(&nk));
            }
            let links = r.links(&groups, cands.clone());
            let mut payload = PayloadPartial::default();
            for p in &parts {
                let (t, l, ids) = pick(p);
                let b = r
                    .payload(&groups, &links, &t, &l, &ids)
                    .to_bytes(r.header());
                payload
                    .merge(&PayloadPartial::from_bytes(&b, r.header()).unwrap())
                    .unwrap();
            }
            let digests = (cands.clone(), sha(&payload.to_bytes(r.header())));
            if ranges == 1 {
                match &seen {
                    None => seen = Some((digests, key_digests)),
                    Some(d) => assert_eq!(d, &(digests, key_digests), "{k} partitions"),
                }
            } else if let Some((d, _)) = &seen {
                assert_eq!(d, &digests, "{k} partitions, {ranges} key ranges");
            }
            let fitted = r.finish(&names, groups, links, payload, labelled).unwrap();
            let scores = fitted.score(&all).unwrap();
            assert_same_scores(&scores, &whole_scores, &format!("{code}, {k} partitions"));
            assert_eq!(fitted.summary(), summary, "{code}, {k} partitions");
        }
        let fitted =
            fit_in_rounds(&p, &texts, labelled.then_some(&labels[..]), &names, 100, 4).unwrap();
        assert_eq!(fitted.summary(), summary);
    }

    #[test]
    fn any_partitioning_key_ranges_and_merge_order_give_the_one_pass_verdicts() {
        check(&toml::Table::new(), "DUP002", true);
        check(&toml::Table::new(), "DUP003", false);
        let mut edits = toml::Table::new();
        edits.insert("word_edit".into(), toml::Value::Boolean(true));
        check(&edits, "DUP003", true);
    }

    #[test]
    fn keys_of_every_slice_at_once_are_each_slice_s_keys() {
        let (texts, labels) = data();
        let p = super::super::configure(Kind::NearConflict, "DUP002", &toml::Table::new()).unwrap();
        let r = NearRounds::new(&p).unwrap();
        let ids: Vec<u64> = (0..texts.len() as u64).collect();
        let groups = r.groups(r.keys(&texts, &labels, &ids)).unwrap();
        for parts in [1, 3, 7] {
            let all = r.near_keys_sliced(&groups, &texts, &ids, parts);
            assert_eq!(all.len(), parts as usize);
            for (part, keys) in all.iter().enumerate() {
                let range = KeyRange {
                    part: part as u64,
                    parts,
                };
                assert_eq!(keys, &r.near_keys(&groups, &texts, &ids, range));
            }
        }
    }

    #[test]
    fn damaged_overlapping_or_missing_partials_are_refused() {
        let (texts, labels) = data();
        let p = super::super::configure(Kind::NearConflict, "DUP002", &toml::Table::new()).unwrap();
        let r = NearRounds::new(&p).unwrap();
        let ids: Vec<u64> = (0..texts.len() as u64).collect();
        let groups = r.groups(r.keys(&texts, &labels, &ids)).unwrap();
        let nk = r.near_keys(&groups, &texts, &ids, KeyRange::ALL);
        let b = nk.to_bytes(r.header());
        for cut in [0, 10, b.len() / 2, b.len() - 1] {
            assert!(NearKeysPartial::from_bytes(&b[..cut], r.header()).is_err());
        }
        let links = r.links(&groups, r.candidates(&nk));
        let pay = r.payload(&groups, &links, &texts, &labels, &ids);
        let b = pay.to_bytes(r.header());
        for cut in [0, 10, b.len() / 2, b.len() - 1] {
            assert!(PayloadPartial::from_bytes(&b[..cut], r.header()).is_err());
        }
        let mut twice = pay.clone();
        assert!(twice.merge(&pay).is_err());
        // a payload without the first half of the rows lacks groups a candidate names
        let half = texts.len() / 2;
        let part = r.payload(
            &groups,
            &links,
            &texts[half..],
            &labels[half..],
            &ids[half..],
        );
        let names: Vec<String> = vec!["0".into(), "1".into()];
        assert!(r.finish(&names, groups, links, part, true).is_err());
        let dup001 = DupParams::dup001(&toml::Table::new()).unwrap();
        assert!(NearRounds::new(&dup001).is_err());
    }
}
