//! Exact k nearest neighbours by cosine similarity, shared by LBL001 and DEN001.
//!
//! Rows are L2-normalised once; similarities come from blocked matrix products (a block of
//! [`ROW_BLOCK`] query rows against a tile of [`COL_TILE`] candidate rows, faer f32 matmul),
//! and each query row keeps its own top-k list. Row blocks run in parallel with rayon; every
//! block sees the same tiles in the same order and each product runs single-threaded, so the
//! result is identical with 1 or N threads. Ties are broken by the smaller row index.
//!
//! Cost: n² · d multiply-adds (about 8·10¹² flops for 100 000 × 384), memory O(n · (d + k)).
//! This is meant for up to a few hundred thousand rows; beyond that an approximate index
//! (HNSW, IVF-PQ) is needed, which is not built yet.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Query rows per parallel block.
const ROW_BLOCK: usize = 1024;
/// Candidate rows per tile of one matrix product (1024 × 4096 f32 = 16 MiB per block).
const COL_TILE: usize = 4096;

/// The k nearest neighbours of every row, by cosine similarity, excluding the row itself.
#[derive(Debug, Clone)]
pub(crate) struct Knn {
    /// Neighbours per row (at most n − 1).
    pub k: usize,
    /// Neighbour indices, row-major `n × k`, most similar first (ties: smaller index first).
    pub idx: Vec<u32>,
    /// Matching cosine similarities, row-major `n × k`.
    pub sim: Vec<f32>,
}

impl Knn {
    /// Neighbour indices of row `i`.
    pub fn neighbours(&self, i: usize) -> &[u32] {
        &self.idx[i * self.k..(i + 1) * self.k]
    }

    /// Cosine similarities of row `i` to its neighbours.
    pub fn sims(&self, i: usize) -> &[f32] {
        &self.sim[i * self.k..(i + 1) * self.k]
    }

    /// Number of rows.
    #[cfg(test)]
    pub fn n_rows(&self) -> usize {
        self.idx.len().checked_div(self.k).unwrap_or(0)
    }
}

/// L2-normalised copy of `x`, row-major; all-zero rows stay zero. Errors on non-finite values.
pub(crate) fn normalised_rows(x: &ArrayView2<'_, f32>) -> Result<Vec<f32>, String> {
    let d = x.ncols();
    let mut out = Vec::with_capacity(x.nrows() * d);
    for (r, row) in x.rows().into_iter().enumerate() {
        let mut ss = 0f64;
        for v in row.iter() {
            if !v.is_finite() {
                return Err(format!("row {r} has a non-finite value"));
            }
            ss += (*v as f64) * (*v as f64);
        }
        let inv = if ss > 0.0 { 1.0 / ss.sqrt() } else { 0.0 };
        out.extend(row.iter().map(|v| (*v as f64 * inv) as f32));
    }
    Ok(out)
}

/// `a` ranks before `b`: higher similarity, then smaller index.
fn before(a: (f32, u32), b: (f32, u32)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
}

/// Inserts `cand` into the sorted top-k list `top` (length ≤ k) if it belongs there.
fn push_top(top: &mut Vec<(f32, u32)>, k: usize, cand: (f32, u32)) {
    if top.len() == k {
        match top.last() {
            Some(&last) if before(cand, last) => {
                top.pop();
            }
            _ => return,
        }
    }
    let pos = top.partition_point(|&t| before(t, cand));
    top.insert(pos, cand);
}

/// Exact k nearest neighbours (cosine) of every row of `x`, excluding itself; `k` is capped at
/// n − 1. Errors on non-finite input.
pub(crate) fn knn_cosine(x: &ArrayView2<'_, f32>, k: usize) -> Result<Knn, String> {
    let n = x.nrows();
    let d = x.ncols();
    let k = k.min(n.saturating_sub(1));
    if k == 0 || d == 0 {
        return Ok(Knn {
            k: 0,
            idx: Vec::new(),
            sim: Vec::new(),
        });
    }
    if n > u32::MAX as usize {
        return Err("more rows than a u32 index holds".into());
    }
    let xn = normalised_rows(x)?;
    let all = MatRef::from_row_major_slice(&xn, n, d);
    let starts: Vec<usize> = (0..n).step_by(ROW_BLOCK).collect();
    let blocks: Vec<(Vec<u32>, Vec<f32>)> = starts
        .par_iter()
        .map(|&s| {
            let e = (s + ROW_BLOCK).min(n);
            let q = all.subrows(s, e - s);
            let mut tops: Vec<Vec<(f32, u32)>> = vec![Vec::with_capacity(k + 1); e - s];
            let mut prod = Mat::<f32>::zeros(e - s, COL_TILE.min(n));
            for c0 in (0..n).step_by(COL_TILE) {
                let c1 = (c0 + COL_TILE).min(n);
                let cand = all.subrows(c0, c1 - c0);
                let mut dst = prod.as_mut().subcols_mut(0, c1 - c0);
                matmul(
                    dst.as_mut(),
                    Accum::Replace,
                    q,
                    cand.transpose(),
                    1.0f32,
                    Par::Seq,
                );
                for (qi, top) in tops.iter_mut().enumerate() {
                    let gi = s + qi;
                    for cj in 0..c1 - c0 {
                        let gj = c0 + cj;
                        if gj == gi {
                            continue;
                        }
                        let v = dst[(qi, cj)];
                        let v = if v.is_nan() { f32::NEG_INFINITY } else { v };
                        push_top(top, k, (v, gj as u32));
                    }
                }
            }
            let mut idx = Vec::with_capacity((e - s) * k);
            let mut sim = Vec::with_capacity((e - s) * k);
            for top in tops {
                for (v, j) in top {
                    idx.push(j);
                    sim.push(v);
                }
            }
            (idx, sim)
        })
        .collect();
    let mut idx = Vec::with_capacity(n * k);
    let mut sim = Vec::with_capacity(n * k);
    for (i, s) in blocks {
        idx.extend(i);
        sim.extend(s);
    }
    Ok(Knn { k, idx, sim })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gaussian, Rng};

    fn brute(x: &ndarray::Array2<f32>, k: usize) -> Vec<Vec<u32>> {
        let xn = normalised_rows(&x.view()).unwrap();
        let (n, d) = (x.nrows(), x.ncols());
        (0..n)
            .map(|i| {
                let mut c: Vec<(f32, u32)> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| {
                        let s: f32 = (0..d).map(|t| xn[i * d + t] * xn[j * d + t]).sum();
                        (s, j as u32)
                    })
                    .collect();
                c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                c.truncate(k);
                c.into_iter().map(|t| t.1).collect()
            })
            .collect()
    }

    #[test]
    fn matches_brute_force() {
        let mut rng = Rng(11);
        // more rows than one block and one tile, to cross both boundaries
        let x = gaussian(&mut rng, 4500, 8);
        let knn = knn_cosine(&x.view(), 5).unwrap();
        let b = brute(&x, 5);
        let mut same = 0;
        for (i, want) in b.iter().enumerate() {
            if knn.neighbours(i) == want.as_slice() {
                same += 1;
            }
            assert!(!knn.neighbours(i).contains(&(i as u32)));
            assert!(knn.sims(i).windows(2).all(|w| w[0] >= w[1]));
        }
        // float summation order may swap near-ties; almost every list must agree exactly
        assert!(same as f64 > 0.99 * b.len() as f64, "{same}");
        assert_eq!(knn.n_rows(), 4500);
    }

    #[test]
    fn ties_break_by_index_and_k_is_capped() {
        // four identical rows: neighbours ordered by index
        let x = ndarray::Array2::from_elem((4, 3), 1.0f32);
        let knn = knn_cosine(&x.view(), 10).unwrap();
        assert_eq!(knn.k, 3);
        assert_eq!(knn.neighbours(0), &[1, 2, 3]);
        assert_eq!(knn.neighbours(2), &[0, 1, 3]);
        let mut bad = x.clone();
        bad[[1, 1]] = f32::NAN;
        assert!(knn_cosine(&bad.view(), 2).is_err());
    }
}
