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

/// Rows whose distances to the two centres [`lloyd_pass`] computes side by side (one AVX-512
/// register of f64).
const LANES: usize = 8;

/// One Lloyd pass over row-major `z` (`k` columns; `zt` the same rows coordinate-major): the
/// assignment to the nearer of `c`, then per-cluster sums, counts and the within sum of
/// squares. Fixed chunks merged in order, so the result does not depend on the thread count.
///
/// Every number is the one the plain loop gives (each row's squared distance summed over its
/// coordinates in order, each cluster's sums over its rows in order): the distances of
/// [`LANES`] rows are computed side by side, one row per lane, and a row is added to both
/// clusters' sums, multiplied by 1 or 0 (adding ±0 leaves a sum that started at +0 unchanged),
/// so the loop has no branch to mispredict.
fn lloyd_pass(
    z: &[f64],
    zt: &[f64],
    k: usize,
    c: &[Vec<f64>; 2],
) -> ([Vec<f64>; 2], [usize; 2], f64) {
    let n = z.len().checked_div(k).unwrap_or(0);
    let starts: Vec<usize> = (0..n).step_by(CHUNK_ROWS).collect();
    let chunk = |&s: &usize| lloyd_chunk(z, zt, n, k, c, s, (s + CHUNK_ROWS).min(n));
    // one chunk runs where it is: a pass over a few thousand rows takes tens of microseconds,
    // the order of handing it to another thread
    let parts: Vec<([Vec<f64>; 2], [usize; 2], f64)> = if starts.len() > 1 {
        starts.par_iter().map(chunk).collect()
    } else {
        starts.iter().map(chunk).collect()
    };
    merge_parts(parts, k)
}

/// The chunks' sums, counts and within sums of squares of a Lloyd pass, added in chunk order.
fn merge_parts(
    parts: Vec<([Vec<f64>; 2], [usize; 2], f64)>,
    k: usize,
) -> ([Vec<f64>; 2], [usize; 2], f64) {
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

dispatch! {
    /// [`lloyd_pass`] over rows `s..e`, compiled for the widest vector instructions the CPU has
    /// (`crate::simd`).
    fn lloyd_chunk(
        z: &[f64],
        zt: &[f64],
        n: usize,
        k: usize,
        c: &[Vec<f64>; 2],
        s: usize,
        e: usize,
    ) -> ([Vec<f64>; 2], [usize; 2], f64) => lloyd_chunk_portable
}

#[inline(always)]
fn lloyd_chunk_portable(
    z: &[f64],
    zt: &[f64],
    n: usize,
    k: usize,
    c: &[Vec<f64>; 2],
    s: usize,
    e: usize,
) -> ([Vec<f64>; 2], [usize; 2], f64) {
    let mut sums = [vec![0f64; k], vec![0f64; k]];
    let mut counts = [0usize; 2];
    let mut wss = 0.0;
    let mut d = [[0f64; LANES]; 2];
    let mut j = s;
    while j < e {
        let lanes = LANES.min(e - j);
        if lanes == LANES {
            // one row per lane: each lane sums its row's squares in coordinate order
            for (centre, out) in c.iter().zip(d.iter_mut()) {
                let mut acc = [0f64; LANES];
                for (col, &y) in centre.iter().enumerate() {
                    let v = &zt[col * n + j..col * n + j + LANES];
                    for l in 0..LANES {
                        let t = v[l] - y;
                        acc[l] += t * t;
                    }
                }
                *out = acc;
            }
        } else {
            for l in 0..lanes {
                let r = &z[(j + l) * k..(j + l + 1) * k];
                d[0][l] = sq_dist(r, &c[0]);
                d[1][l] = sq_dist(r, &c[1]);
            }
        }
        for l in 0..lanes {
            let (d0, d1) = (d[0][l], d[1][l]);
            let to_1 = d1 < d0;
            counts[usize::from(to_1)] += 1;
            wss += d0.min(d1);
            let w1 = f64::from(u8::from(to_1));
            let w0 = 1.0 - w1;
            let r = &z[(j + l) * k..(j + l + 1) * k];
            let [s0, s1] = &mut sums;
            for ((a, b), &v) in s0.iter_mut().zip(s1.iter_mut()).zip(r) {
                *a += v * w0;
                *b += v * w1;
            }
        }
        j += lanes;
    }
    (sums, counts, wss)
}

/// `z` (row-major, `k` columns) coordinate-major: coordinate c of row j at `c · n + j`.
fn transpose(z: &[f64], k: usize) -> Vec<f64> {
    let n = z.len().checked_div(k).unwrap_or(0);
    let mut t = vec![0f64; z.len()];
    for (j, r) in z.chunks_exact(k.max(1)).enumerate() {
        for (col, &v) in r.iter().enumerate() {
            t[col * n + j] = v;
        }
    }
    t
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
    let zt = transpose(z, k);
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
            let (sums, cnt, w) = lloyd_pass(z, &zt, k, &c);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain per-chunk loop [`lloyd_pass`] must give bit for bit (chunks merged alike).
    fn lloyd_plain(z: &[f64], k: usize, c: &[Vec<f64>; 2]) -> ([Vec<f64>; 2], [usize; 2], f64) {
        let parts: Vec<([Vec<f64>; 2], [usize; 2], f64)> = z
            .chunks(CHUNK_ROWS * k)
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
        merge_parts(parts, k)
    }

    #[test]
    fn the_vector_pass_equals_the_plain_loop_bit_for_bit() {
        let mut rng = SplitMix64(11);
        // row counts off the lane width, over several chunks; negative values and exact zeros
        for (n, k) in [
            (1usize, 3usize),
            (13, 10),
            (2 * CHUNK_ROWS + 5, 10),
            (700, 1),
            (97, 17),
        ] {
            let z: Vec<f64> = (0..n * k)
                .map(|t| if t % 29 == 0 { 0.0 } else { rng.gauss() * 3.0 })
                .collect();
            let zt = transpose(&z, k);
            let c = [
                (0..k).map(|_| rng.gauss()).collect::<Vec<f64>>(),
                (0..k).map(|_| rng.gauss()).collect::<Vec<f64>>(),
            ];
            let (a, b) = (lloyd_pass(&z, &zt, k, &c), lloyd_plain(&z, k, &c));
            assert_eq!(a.1, b.1, "n {n} k {k}");
            assert_eq!(a.2.to_bits(), b.2.to_bits(), "n {n} k {k}");
            for j in 0..2 {
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
                assert_eq!(bits(&a.0[j]), bits(&b.0[j]), "n {n} k {k}");
            }
        }
    }
}
