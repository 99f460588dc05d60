//! The shared core and its first step, exact duplicates (DUP001's relation): normalised texts
//! grouped by their 128-bit hash; the rows and similarity of clusters of exact groups.

use super::edits::word_hashes;
use super::minhash::jaccard;
use super::normalise::{normalize, Normalization};
use super::{NearParams, CHUNK};
use rayon::prelude::*;
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_128;

/// Exact groups and near clusters of one dataset.
pub(super) struct Core {
    pub(super) n_rows: usize,
    /// Exact groups (rows in row order), ordered by first row.
    pub(super) groups: Vec<Vec<usize>>,
    /// Exact group of each row.
    pub(super) group_of: Vec<usize>,
    /// Near clusters as lists of exact groups (ordered by first row), when computed.
    pub(super) clusters: Option<Vec<Vec<usize>>>,
    /// Signature per exact group, when computed.
    pub(super) sigs: Vec<Vec<u32>>,
    /// Verified near pairs of exact groups (a < b): similarity and the measure that found it.
    pub(super) edges: BTreeMap<(usize, usize), (f64, &'static str)>,
    /// Word hashes (mod 2⁶¹ − 1) of each exact group's normalised text.
    pub(super) toks: Vec<Vec<u64>>,
    /// Near-duplicate statistics for the summary.
    pub(super) near_stats: serde_json::Value,
    /// Normalised text of each exact group (near duplicates only).
    pub(super) rep_texts: Vec<String>,
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
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut prev: Option<u128> = None;
        for &(h, row) in &keyed {
            match (prev, groups.last_mut()) {
                (Some(p), Some(g)) if p == h => g.push(row),
                _ => groups.push(vec![row]),
            }
            prev = Some(h);
        }
        // rows within a group are ascending (sorted by (hash, row)); order groups by first row
        groups.sort_unstable_by_key(|g| g[0]);
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
            sigs: Vec::new(),
            edges: BTreeMap::new(),
            toks,
            near_stats: serde_json::Value::Null,
            rep_texts: Vec::new(),
        };
        if let Some(near) = near {
            core.near(&normalized, near);
            core.rep_texts = reps.iter().map(|&r| normalized[r].clone()).collect();
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

    pub(super) fn cluster_rows(&self, cluster: &[usize]) -> Vec<usize> {
        let mut rows: Vec<usize> = cluster
            .iter()
            .flat_map(|&g| self.groups[g].iter().copied())
            .collect();
        rows.sort_unstable();
        rows
    }
}
