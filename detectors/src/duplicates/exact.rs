//! The shared core and its first step, exact duplicates (DUP001's relation): normalised texts
//! grouped by their 128-bit hash; the rows and similarity of clusters of exact groups.

use super::edits::word_hashes;
use super::minhash::{jaccard, UnionFind};
use super::normalise::{normalize, Normalization};
use super::{NearParams, CHUNK};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use xxhash_rust::xxh3::xxh3_128;

/// A value per exact group: every group's (the one-pass fit computes them all), or those of
/// some groups with every other group's value empty (the rounds collect the payload of the
/// groups in a candidate pair only: a per-group vector of empty values was 24 bytes a group
/// for each of signatures, words and texts, most of a scan's memory at ten million rows).
#[derive(Debug, Clone)]
pub(super) enum PerGroup<T> {
    /// Every group's value, by group.
    Dense(Vec<T>),
    /// The values of some groups; every other group's is the second field (empty).
    Sparse(HashMap<usize, T>, T),
}

impl<T: Default> Default for PerGroup<T> {
    fn default() -> Self {
        PerGroup::Dense(Vec::new())
    }
}

impl<T> std::ops::Index<usize> for PerGroup<T> {
    type Output = T;

    fn index(&self, g: usize) -> &T {
        match self {
            PerGroup::Dense(v) => &v[g],
            PerGroup::Sparse(m, empty) => m.get(&g).unwrap_or(empty),
        }
    }
}

impl<T> PerGroup<T> {
    /// Whether any group's value was computed.
    pub(super) fn computed(&self) -> bool {
        match self {
            PerGroup::Dense(v) => !v.is_empty(),
            PerGroup::Sparse(..) => true,
        }
    }
}

/// Groups of rows held flat: each group's rows ascending, the groups in order. A vector per
/// group costs about 48 bytes a row when most groups are one row (a corpus's distinct texts);
/// this costs 16.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct GroupList {
    /// Where each group starts in `rows`, then `rows.len()`.
    starts: Vec<usize>,
    rows: Vec<usize>,
}

impl GroupList {
    /// The groups of `keyed`, (key, row) pairs sorted by key then row: one group per run of
    /// equal keys, ordered by first row. Also returns, per group, the index in `keyed` of its
    /// first pair (where its key is).
    pub(super) fn from_sorted<K: PartialEq>(keyed: &[(K, usize)]) -> (GroupList, Vec<usize>) {
        Self::from_sorted_by(keyed.len(), |i| &keyed[i].0, |i| keyed[i].1)
    }

    /// [`GroupList::from_sorted`] over `n` entries read through `key` and `row` (entry `i`'s
    /// key and row), so that a caller need not copy its entries into pairs.
    pub(super) fn from_sorted_by<K: PartialEq>(
        n: usize,
        key: impl Fn(usize) -> K,
        row: impl Fn(usize) -> usize,
    ) -> (GroupList, Vec<usize>) {
        let mut runs: Vec<(usize, usize)> = Vec::new(); // (start in the entries, len)
        for i in 0..n {
            match runs.last_mut() {
                Some((s, len)) if key(*s) == key(i) => *len += 1,
                _ => runs.push((i, 1)),
            }
        }
        runs.sort_unstable_by_key(|&(s, _)| row(s));
        let mut starts = Vec::with_capacity(runs.len() + 1);
        let mut rows = Vec::with_capacity(n);
        for &(s, len) in &runs {
            starts.push(rows.len());
            rows.extend((s..s + len).map(&row));
        }
        starts.push(rows.len());
        let first = runs.iter().map(|&(s, _)| s).collect();
        (GroupList { starts, rows }, first)
    }

    /// Number of groups.
    pub(super) fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// The group whose first row is `row` (groups are ordered by first row).
    pub(super) fn starting_at(&self, row: usize) -> Option<usize> {
        let first = |g: usize| self.rows[self.starts[g]];
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if first(mid) < row {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < self.len() && first(lo) == row).then_some(lo)
    }

    /// The groups in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &[usize]> + Clone + '_ {
        self.starts.windows(2).map(|w| &self.rows[w[0]..w[1]])
    }

    /// The components of `0..roots.len()` given each element's root (any element of its
    /// component, the same for all of them): one group per component, ordered by root, members
    /// ascending. A counting sort: 24 bytes an element beside `roots`, where a map from root to
    /// a vector of members cost over a hundred (most components are one element).
    pub(super) fn from_roots(roots: &[usize]) -> GroupList {
        let n = roots.len();
        // per root: its count of members, then the next free place of its group in `rows`
        let mut next = vec![0usize; n];
        for &r in roots {
            next[r] += 1;
        }
        let mut starts = Vec::new();
        let mut at = 0usize;
        for slot in next.iter_mut().filter(|c| **c > 0) {
            starts.push(at);
            at += std::mem::replace(slot, at);
        }
        starts.push(at);
        let mut rows = vec![0usize; n];
        for (g, &r) in roots.iter().enumerate() {
            rows[next[r]] = g;
            next[r] += 1;
        }
        GroupList { starts, rows }
    }
}

impl std::ops::Index<usize> for GroupList {
    type Output = [usize];
    fn index(&self, g: usize) -> &[usize] {
        &self.rows[self.starts[g]..self.starts[g + 1]]
    }
}

/// A pair of exact groups (a < b) with its edge: similarity and the relation that found it.
pub(super) type Contrast = ((usize, usize), (f64, &'static str));

/// Exact groups and near clusters of one dataset.
pub(super) struct Core {
    pub(super) n_rows: usize,
    /// Exact groups (rows in row order), ordered by first row.
    pub(super) groups: GroupList,
    /// Exact group of each row.
    pub(super) group_of: Vec<usize>,
    /// Near clusters as lists of exact groups (ordered by first row), when computed.
    pub(super) clusters: Option<GroupList>,
    /// Signature per exact group, when computed.
    pub(super) sigs: PerGroup<Vec<u32>>,
    /// Verified near pairs of exact groups (a < b): similarity and the measure that found it.
    pub(super) edges: BTreeMap<(usize, usize), (f64, &'static str)>,
    /// Word hashes (mod 2⁶¹ − 1) of each exact group's normalised text.
    pub(super) toks: PerGroup<Vec<u64>>,
    /// Near-duplicate statistics for the summary.
    pub(super) near_stats: serde_json::Value,
    /// Normalised text of each exact group (near duplicates only).
    pub(super) rep_texts: PerGroup<String>,
    /// Pairs of exact groups a few words apart removed as explained contrasts (DUP002) whose
    /// new words account for the label change while the words taken out were neutral, with
    /// their edge (similarity, measure). Kept so that the flips' direction can reread them.
    pub(super) contrasts: Vec<Contrast>,
}

impl Core {
    pub(super) fn build(texts: &[String], norm: &Normalization, near: Option<&NearParams>) -> Core {
        let n = texts.len();
        let normalized: Vec<String> = texts
            .par_chunks(CHUNK)
            .flat_map_iter(|c| c.iter().map(|t| normalize(t, norm)).collect::<Vec<_>>())
            .collect();
        let mut keyed: Vec<(u128, usize)> = normalized
            .par_chunks(CHUNK)
            .enumerate()
            .flat_map_iter(|(ci, c)| {
                c.iter()
                    .enumerate()
                    .map(|(j, t)| (xxh3_128(t.as_bytes()), ci * CHUNK + j))
                    .collect::<Vec<_>>()
            })
            .collect();
        keyed.par_sort_unstable();
        // rows within a group are ascending (sorted by (hash, row)); groups by first row
        let (groups, _) = GroupList::from_sorted(&keyed);
        drop(keyed);
        let mut group_of = vec![0usize; n];
        for (gi, g) in groups.iter().enumerate() {
            for &r in g {
                group_of[r] = gi;
            }
        }
        let reps: Vec<usize> = groups.iter().map(|g| g[0]).collect();
        let toks = word_hashes(&normalized, &reps, near.map_or(1, |p| p.seed));
        let mut core = Core {
            n_rows: n,
            groups,
            group_of,
            clusters: None,
            sigs: PerGroup::default(),
            edges: BTreeMap::new(),
            toks: PerGroup::Dense(toks),
            near_stats: serde_json::Value::Null,
            rep_texts: PerGroup::default(),
            contrasts: Vec::new(),
        };
        if let Some(near) = near {
            core.near(&normalized, near);
            core.rep_texts = PerGroup::Dense(reps.iter().map(|&r| normalized[r].clone()).collect());
        }
        core
    }

    /// Similarity of two exact groups and its measure: the verified pair's when they are one,
    /// else the MinHash estimate.
    pub(super) fn sim(&self, a: usize, b: usize) -> (f64, &'static str) {
        let key = if a < b { (a, b) } else { (b, a) };
        match self.edges.get(&key) {
            Some(&e) => e,
            None => (jaccard(&self.sigs[a], &self.sigs[b]), "minhash_jaccard"),
        }
    }

    /// The near clusters of the groups joined by `edges`: components ordered by their first
    /// group (the union-find root is the smallest member).
    pub(super) fn cluster_edges(&mut self) {
        let n = self.groups.len();
        let mut uf = UnionFind((0..n).collect());
        for &(a, b) in self.edges.keys() {
            uf.union(a, b);
        }
        let roots: Vec<usize> = (0..n).map(|g| uf.find(g)).collect();
        drop(uf);
        self.clusters = Some(GroupList::from_roots(&roots));
    }

    /// Number of rows of each near cluster (none before the clusters are computed).
    pub(super) fn cluster_sizes(&self) -> Vec<usize> {
        self.clusters
            .iter()
            .flat_map(|cs| cs.iter())
            .map(|c| c.iter().map(|&g| self.groups[g].len()).sum())
            .collect()
    }

    /// The rows of a near cluster (the rows of its exact groups), ascending.
    pub(super) fn cluster_rows(&self, cluster: &[usize]) -> Vec<usize> {
        let mut rows: Vec<usize> = cluster
            .iter()
            .flat_map(|&g| self.groups[g].iter().copied())
            .collect();
        rows.sort_unstable();
        rows
    }
}
