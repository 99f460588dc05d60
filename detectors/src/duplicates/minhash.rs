//! Near duplicates by MinHash LSH: the band choice, the MinHash permutations and signatures, the
//! LSH banding into candidate pairs, their verification, and the union-find near clusters.

use super::exact::{Core, PerGroup};
use super::link::{group_keys, KeyRange, NearKeys};
use super::{NearParams, CHUNK, MERSENNE};
use crate::rng::splitmix;
use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// ∫ f over [a, b] by composite Simpson rule with `n` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    if b <= a {
        return 0.0;
    }
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        s += w * f(a + i as f64 * h);
    }
    s * h / 3.0
}

/// Bands b and rows r (b·r ≤ `num_perm`) minimising the weighted false-positive area
/// ∫₀ᵗ P(s) ds and false-negative area ∫ₜ¹ (1 − P(s)) ds of the S-curve
/// P(s) = 1 − (1 − s^r)^b.
///
/// The search integrates every (b, r) pair (about 700 for 128 permutations, over a million
/// powers); it depends on the three parameters only, so each distinct triple is searched once
/// per process and remembered (every fit and every partition's task reads the parameters).
pub fn optimal_bands(threshold: f64, num_perm: usize, fp_weight: f64) -> (usize, usize) {
    type Key = (u64, usize, u64);
    static KNOWN: std::sync::Mutex<Vec<(Key, (usize, usize))>> = std::sync::Mutex::new(Vec::new());
    let key = (threshold.to_bits(), num_perm, fp_weight.to_bits());
    let known = |k: &Key| {
        KNOWN
            .lock()
            .ok()
            .and_then(|v| v.iter().find(|(x, _)| x == k).map(|&(_, b)| b))
    };
    if let Some(b) = known(&key) {
        return b;
    }
    let found = search_bands(threshold, num_perm, fp_weight);
    if let Ok(mut v) = KNOWN.lock() {
        if !v.iter().any(|(x, _)| *x == key) {
            v.push((key, found));
        }
    }
    found
}

/// The search behind [`optimal_bands`].
fn search_bands(threshold: f64, num_perm: usize, fp_weight: f64) -> (usize, usize) {
    let mut best = (f64::INFINITY, 1, num_perm.max(1));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let fp = simpson(p, 0.0, threshold, 400);
            let fnr = simpson(|s| 1.0 - p(s), threshold, 1.0, 400);
            let err = fp_weight * fp + (1.0 - fp_weight) * fnr;
            if err < best.0 {
                best = (err, b, r);
            }
        }
    }
    (best.1, best.2)
}

/// x mod (2⁶¹ − 1), for x < 2¹²⁴.
pub(super) fn mod_mersenne(x: u128) -> u64 {
    let p = MERSENNE as u128;
    let mut s = (x & p) + (x >> 61);
    s = (s & p) + (s >> 61);
    let s = s as u64;
    if s >= MERSENNE {
        s - MERSENNE
    } else {
        s
    }
}

/// The MinHash permutations: h_i(x) = (a_i·x + b_i) mod (2⁶¹ − 1).
pub(super) struct Permutations {
    a: Vec<u64>,
    b: Vec<u64>,
    seed: u64,
    shingle_words: usize,
}

impl Permutations {
    pub(super) fn new(near: &NearParams) -> Self {
        let mut state = near.seed ^ 0x5EED_D0D0_1234_5678;
        let mut a = Vec::with_capacity(near.num_perm);
        let mut b = Vec::with_capacity(near.num_perm);
        for _ in 0..near.num_perm {
            a.push(splitmix(&mut state) | 1);
            b.push(splitmix(&mut state));
        }
        Permutations {
            a,
            b,
            seed: near.seed,
            shingle_words: near.shingle_words,
        }
    }

    /// Signature of a normalised text: per permutation the minimum (32 bits).
    pub(super) fn signature(&self, normalized: &str) -> Vec<u32> {
        let words = words(normalized);
        let k = self.shingle_words;
        let mut buf = Vec::new();
        let mut hashes: Vec<u64> = Vec::new();
        let mut shingle = |ws: &[&str]| {
            buf.clear();
            for w in ws {
                buf.extend_from_slice(w.as_bytes());
                buf.push(0x1F);
            }
            hashes.push(xxh3_64_with_seed(&buf, self.seed) & 0xFFFF_FFFF);
        };
        if words.len() < k {
            shingle(&words);
        } else {
            for w in words.windows(k) {
                shingle(w);
            }
        }
        hashes.sort_unstable();
        hashes.dedup();
        // shingle-outer, permutation-inner: independent lanes the CPU can overlap
        let mut mins = vec![u64::MAX; self.a.len()];
        for &x in &hashes {
            for ((m, &a), &b) in mins.iter_mut().zip(&self.a).zip(&self.b) {
                *m = (*m).min(perm_hash(a, x, b));
            }
        }
        mins.into_iter().map(|m| m as u32).collect()
    }
}

/// Dietzfelbinger's multiply-add-shift: ((a·x + b) mod 2⁶⁴) div 2³² for a 32-bit key x, a
/// 2-independent family of 32-bit hashes (a odd, a and b uniform 64-bit).
#[inline]
fn perm_hash(a: u64, x: u64, b: u64) -> u64 {
    a.wrapping_mul(x).wrapping_add(b) >> 32
}

/// The words of a normalised text: its whitespace-separated tokens (punctuation stays part of
/// its token, so `film.` and `film .` differ by one word).
pub(super) fn words(normalized: &str) -> Vec<&str> {
    normalized.split_whitespace().collect()
}

/// Share of equal positions of two signatures (the MinHash Jaccard estimate).
pub(super) fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Union-find with path halving and union by smaller index (so roots are deterministic).
pub(super) struct UnionFind(pub(super) Vec<usize>);

impl UnionFind {
    pub(super) fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    pub(super) fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi] = lo;
        }
    }
}

/// Candidate pairs from `(key, item)` pairs sorted by key: every pair within a bucket of equal
/// keys, or, in a bucket larger than `max_bucket`, its first item paired with each other one (a
/// star keeps huge buckets linear; union-find still joins them).
pub(super) fn bucket_pairs<K: PartialEq>(
    keys: &[(K, usize)],
    max_bucket: usize,
    out: &mut Vec<(usize, usize)>,
) {
    for bucket in keys.chunk_by(|a, b| a.0 == b.0) {
        if bucket.len() > max_bucket {
            for &(_, g) in &bucket[1..] {
                out.push((bucket[0].1, g));
            }
        } else {
            for (i, a) in bucket.iter().enumerate() {
                for b in &bucket[i + 1..] {
                    out.push((a.1, b.1));
                }
            }
        }
    }
}

impl Core {
    /// Near clusters of the exact groups: signatures and keys of every group, the candidate
    /// pairs, their verification and the clusters ([`Core::link`]).
    pub(super) fn near(&mut self, normalized: &[String], near: &NearParams) {
        let perms = Permutations::new(near);
        let reps: Vec<usize> = self.groups.iter().map(|g| g[0]).collect();
        let sigs: Vec<Vec<u32>> = reps
            .par_chunks(CHUNK)
            .flat_map_iter(|c| {
                c.iter()
                    .map(|&r| perms.signature(&normalized[r]))
                    .collect::<Vec<_>>()
            })
            .collect();
        let toks = &self.toks;
        let mut keys = sigs
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(ci, c)| {
                let mut k = NearKeys::default();
                for (j, s) in c.iter().enumerate() {
                    let g = ci * CHUNK + j;
                    group_keys(g, s, &toks[g], near, KeyRange::ALL, &mut k);
                }
                k
            })
            .reduce(NearKeys::default, |mut a, b| {
                a.band.extend(b.band);
                a.edit.extend(b.edit);
                a.block.extend(b.block);
                a
            });
        keys.sort();
        let cands = keys.candidates(near.max_bucket);
        drop(keys);
        self.link(PerGroup::Dense(sigs), &cands, near);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{configure, Kind};
    use super::*;

    #[test]
    fn bands_for_point_eight() {
        assert_eq!(optimal_bands(0.8, 128, 0.5), (9, 13));
        assert_eq!(optimal_bands(0.5, 128, 0.5), (25, 5));
        let (b, r) = optimal_bands(0.5, 128, 0.5);
        assert!(b * r <= 128);
    }

    #[test]
    fn minhash_estimates_jaccard() {
        let p = match configure(Kind::NearConflict, "DUP002", &toml::Table::new()) {
            Ok(p) => p.near.expect("near"),
            Err(e) => panic!("{e}"),
        };
        let perms = Permutations::new(&NearParams { num_perm: 512, ..p });
        let a: String = (0..60).map(|i| format!("w{i} ")).collect();
        let b: String = (10..70).map(|i| format!("w{i} ")).collect();
        // 5-shingles: 56 each, 46 shared -> J = 46 / 66
        let j = jaccard(&perms.signature(a.trim()), &perms.signature(b.trim()));
        assert!((j - 46.0 / 66.0).abs() < 0.07, "{j}");
        assert_eq!(
            jaccard(&perms.signature("x y"), &perms.signature("x y")),
            1.0
        );
        assert!(jaccard(&perms.signature("x y"), &perms.signature("x z")) < 0.1);
    }
}
