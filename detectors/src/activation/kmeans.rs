//! 2-means with k-means++ seeding, hand-written (see the detector's docs for why), and the
//! seeded subsample the silhouette is computed on.

use super::cluster::sq_dist;
use crate::linalg::CHUNK_ROWS;
use crate::rng::SplitMix64;
use rayon::prelude::*;

/// `m` distinct indices of `0..n`, sorted (partial Fisher-Yates with the seeded stream).
pub(super) fn sample_without_replacement(n: usize, m: usize, rng: &mut SplitMix64) -> Vec<usize> {
    if m >= n {
        return (0..n).collect();
    }
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    let mut s = idx[..m].to_vec();
    s.sort_unstable();
    s
}

/// Result of 2-means.
#[derive(Debug, Clone)]
pub(super) struct KMeans2 {
    pub(super) centroids: [Vec<f64>; 2],
    pub(super) sizes: [usize; 2],
}

/// One Lloyd pass over row-major `z` (`k` columns): assignment to the nearer of `c`, then
/// per-cluster sums, counts and the within sum of squares. Fixed chunks merged in order, so the
/// result does not depend on the thread count.
fn lloyd_pass(z: &[f64], k: usize, c: &[Vec<f64>; 2]) -> ([Vec<f64>; 2], [usize; 2], f64) {
    let parts: Vec<([Vec<f64>; 2], [usize; 2], f64)> = z
        .par_chunks(CHUNK_ROWS * k)
        .map(|chunk| {
            let mut sums = [vec![0f64; k], vec![0f64; k]];
            let mut counts = [0usize; 2];
            let mut wss = 0.0;
            for r in chunk.chunks_exact(k) {
                let d0 = sq_dist(r, &c[0]);
                let d1 = sq_dist(r, &c[1]);
                let j = usize::from(d1 < d0);
                counts[j] += 1;
                wss += d0.min(d1);
                for (s, v) in sums[j].iter_mut().zip(r) {
                    *s += v;
                }
            }
            (sums, counts, wss)
        })
        .collect();
    let mut sums = [vec![0f64; k], vec![0f64; k]];
    let mut counts = [0usize; 2];
    let mut wss = 0.0;
    for (s, n, w) in parts {
        for j in 0..2 {
            for (a, b) in sums[j].iter_mut().zip(&s[j]) {
                *a += b;
            }
            counts[j] += n[j];
        }
        wss += w;
    }
    (sums, counts, wss)
}

/// 2-means of the rows of `z` (row-major, `k` columns) with k-means++ seeding, `restarts`
/// seedings, at most `max_iter` Lloyd steps each; the lowest within sum of squares wins.
pub(super) fn kmeans2(
    z: &[f64],
    k: usize,
    restarts: usize,
    max_iter: usize,
    rng: &mut SplitMix64,
) -> KMeans2 {
    let n = z.len() / k;
    let row = |i: usize| &z[i * k..(i + 1) * k];
    let mut best: Option<(f64, KMeans2)> = None;
    for _ in 0..restarts {
        // k-means++: first centre uniform, second with probability ∝ squared distance
        let first = row(rng.below(n)).to_vec();
        let d2: Vec<f64> = (0..n).map(|i| sq_dist(row(i), &first)).collect();
        let total: f64 = d2.iter().sum();
        let second = if total > 0.0 {
            let target = rng.unit() * total;
            let mut acc = 0.0;
            let mut pick = n - 1;
            for (i, d) in d2.iter().enumerate() {
                acc += d;
                if acc > target {
                    pick = i;
                    break;
                }
            }
            row(pick).to_vec()
        } else {
            first.clone()
        };
        let mut c = [first, second];
        let mut counts = [0usize; 2];
        let mut wss = f64::INFINITY;
        for _ in 0..max_iter {
            let (sums, cnt, w) = lloyd_pass(z, k, &c);
            counts = cnt;
            wss = w;
            let mut moved = false;
            for j in 0..2 {
                if cnt[j] == 0 {
                    continue;
                }
                let new: Vec<f64> = sums[j].iter().map(|s| s / cnt[j] as f64).collect();
                if new != c[j] {
                    moved = true;
                    c[j] = new;
                }
            }
            if !moved {
                break;
            }
        }
        if best.as_ref().is_none_or(|(bw, _)| wss < *bw) {
            best = Some((
                wss,
                KMeans2 {
                    centroids: c,
                    sizes: counts,
                },
            ));
        }
    }
    best.map(|(_, km)| km).unwrap_or(KMeans2 {
        centroids: [vec![0.0; k], vec![0.0; k]],
        sizes: [n, 0],
    })
}
