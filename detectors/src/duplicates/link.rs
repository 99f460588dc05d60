//! Linking exact groups into near clusters, shared by the one-pass fit and the rounds
//! ([`super::near_rounds`]): each group's keys (the LSH bands of its MinHash signature, its
//! one-word-edit keys, its aligned block keys), the candidate pairs of groups that share a key,
//! their verification into near pairs, and the clusters (union-find in sorted pair order).
//!
//! Keys are kept as sorted `(key, group)` lists, so the lists of any split of the groups merge
//! into the same list, and a [`KeyRange`] keeps the keys of one slice of the key space: the
//! candidate pairs of the slices together are those of all keys (a bucket is one key, and every
//! key is in exactly one slice), with the memory of one slice at a time.

use super::edits::{edit_base, text_block_keys, text_edit_keys, verify_edit, verify_substitution};
use super::exact::{Core, PerGroup};
use super::minhash::{bucket_pairs, jaccard};
use super::NearParams;
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_64;

/// A slice of the key space: the keys whose mixed hash is `part` modulo `parts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange {
    /// Which slice (0-based).
    pub part: u64,
    /// Slices in all (at least 1).
    pub parts: u64,
}

impl KeyRange {
    /// The whole key space.
    pub const ALL: KeyRange = KeyRange { part: 0, parts: 1 };

    fn holds(&self, key: u64) -> bool {
        self.parts <= 1 || Self::slice_of(key, self.parts) == self.part
    }

    /// The slice of `parts` that holds `key`.
    fn slice_of(key: u64, parts: u64) -> u64 {
        if parts <= 1 {
            return 0;
        }
        crate::rng::splitmix(&mut key.clone()) % parts
    }
}

/// Sorted `(key, group)` lists of the three relations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct NearKeys {
    /// MinHash LSH: (band, hash of the band's signature values).
    pub(super) band: Vec<((u64, u64), u64)>,
    /// One-word edits: (words, polynomial hash).
    pub(super) edit: Vec<((u64, u64), u64)>,
    /// Word substitutions: aligned block hash.
    pub(super) block: Vec<(u64, u64)>,
}

/// Candidate pairs (a < b, sorted, distinct) of each relation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidates {
    pub(super) minhash: Vec<(usize, usize)>,
    pub(super) edit: Vec<(usize, usize)>,
    pub(super) substitution: Vec<(usize, usize)>,
}

/// The keys of one exact group `g` with MinHash signature `sig` and words `toks` that fall in
/// `range`, appended (unsorted) to `out`.
pub(super) fn group_keys(
    g: usize,
    sig: &[u32],
    toks: &[u64],
    near: &NearParams,
    range: KeyRange,
    out: &mut NearKeys,
) {
    let g = g as u64;
    let r = near.rows;
    let mut bytes = Vec::with_capacity(4 * r + 8);
    for band in 0..near.bands {
        bytes.clear();
        bytes.extend_from_slice(&(band as u64).to_le_bytes());
        for v in &sig[band * r..(band + 1) * r] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let h = xxh3_64(&bytes);
        if range.holds(h) {
            out.band.push(((band as u64, h), g));
        }
    }
    if near.word_edit {
        for (len, h) in text_edit_keys(toks, near.edit_min_words, edit_base(near)) {
            if range.holds(h ^ len as u64) {
                out.edit.push(((len as u64, h), g));
            }
        }
        for h in text_block_keys(toks, near.edit_min_words) {
            if range.holds(h) {
                out.block.push((h, g));
            }
        }
    }
}

/// `a` and `b` (each sorted) as one sorted list.
pub(super) fn merge_sorted<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    crate::state::merge_sorted_by(a, b, |x, y| x < y)
}

/// Candidate pairs of the groups sharing a key in a sorted list.
fn pairs<K: PartialEq>(keys: &[(K, u64)], max_bucket: usize) -> Vec<(usize, usize)> {
    let as_usize: Vec<(&K, usize)> = keys.iter().map(|(k, g)| (k, *g as usize)).collect();
    let mut out = Vec::new();
    bucket_pairs(&as_usize, max_bucket, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

impl NearKeys {
    /// Sort every list (after [`group_keys`]).
    pub(super) fn sort(&mut self) {
        self.band.par_sort_unstable();
        self.edit.par_sort_unstable();
        self.block.par_sort_unstable();
    }

    /// Add another sorted set of keys.
    pub(super) fn merge(&mut self, other: &NearKeys) {
        self.band = merge_sorted(&self.band, &other.band);
        self.edit = merge_sorted(&self.edit, &other.edit);
        self.block = merge_sorted(&self.block, &other.block);
    }

    /// The keys cut into the `parts` slices of [`KeyRange`], each in its order: slice `p` is
    /// what [`group_keys`] keeps with `KeyRange { part: p, parts }`.
    pub(super) fn split(self, parts: u64) -> Vec<NearKeys> {
        let parts = parts.max(1);
        let mut out: Vec<NearKeys> = (0..parts).map(|_| NearKeys::default()).collect();
        let at = |key: u64| KeyRange::slice_of(key, parts) as usize;
        for k in self.band {
            out[at(k.0 .1)].band.push(k);
        }
        for k in self.edit {
            out[at(k.0 .1 ^ k.0 .0)].edit.push(k);
        }
        for k in self.block {
            out[at(k.0)].block.push(k);
        }
        out
    }

    /// The candidate pairs of the merged keys.
    pub(super) fn candidates(&self, max_bucket: usize) -> Candidates {
        Candidates {
            minhash: pairs(&self.band, max_bucket),
            edit: pairs(&self.edit, max_bucket),
            substitution: pairs(&self.block, max_bucket),
        }
    }
}

impl Candidates {
    /// Add the candidates of another slice of the key space.
    pub fn merge(&mut self, other: &Candidates) {
        for (mine, theirs) in [
            (&mut self.minhash, &other.minhash),
            (&mut self.edit, &other.edit),
            (&mut self.substitution, &other.substitution),
        ] {
            let mut m = merge_sorted(mine, theirs);
            m.dedup();
            *mine = m;
        }
    }

    /// Every group in some candidate pair.
    pub(super) fn groups(&self) -> impl Iterator<Item = usize> + '_ {
        self.minhash
            .iter()
            .chain(&self.edit)
            .chain(&self.substitution)
            .flat_map(|&(a, b)| [a, b])
    }
}

impl Core {
    /// Verify the candidate pairs (`sigs` and [`Core::toks`] of every group in one), keep the
    /// near pairs and join them into clusters. Groups in no candidate pair may have empty
    /// signatures and words.
    pub(super) fn link(&mut self, sigs: PerGroup<Vec<u32>>, cands: &Candidates, near: &NearParams) {
        let verified: Vec<((usize, usize), f64)> = cands
            .minhash
            .par_iter()
            .map(|&(a, b)| ((a, b), jaccard(&sigs[a], &sigs[b])))
            .filter(|&(_, j)| j >= near.threshold)
            .collect();
        let n_verified = verified.len();
        let mut edges: BTreeMap<(usize, usize), (f64, &'static str)> = verified
            .into_iter()
            .map(|(pair, j)| (pair, (j, "minhash_jaccard")))
            .collect();
        let toks = &self.toks;
        let mut add = |pairs: &[(usize, usize)],
                       verify: fn(&[u64], &[u64], usize) -> Option<f64>,
                       measure: &'static str| {
            let found: Vec<((usize, usize), f64)> = pairs
                .par_iter()
                .filter_map(|&(a, b)| {
                    verify(&toks[a], &toks[b], near.edit_min_words).map(|sim| ((a, b), sim))
                })
                .collect();
            for &(pair, sim) in &found {
                let e = edges.entry(pair).or_insert((sim, measure));
                if sim > e.0 {
                    *e = (sim, measure);
                }
            }
            found.len()
        };
        let edit_pairs = add(&cands.edit, verify_edit, "word_edit");
        let substitution_pairs = add(
            &cands.substitution,
            verify_substitution,
            "word_substitution",
        );
        self.sigs = sigs;
        self.near_stats = json!({
            "lsh_bands": near.bands,
            "lsh_rows": near.rows,
            "candidate_pairs": cands.minhash.len(),
            "verified_pairs": n_verified,
            "word_edit_pairs": edit_pairs,
            "word_substitution_pairs": substitution_pairs,
            "near_pairs": edges.len(),
        });
        self.edges = edges;
        self.cluster_edges();
    }
}
