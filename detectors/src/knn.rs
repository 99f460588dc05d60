//! k nearest neighbours by cosine similarity, shared by LBL001, DUP002 and DEN001.
//!
//! **Exact** (up to [`KnnOptions::exact_max_rows`] rows): rows are L2-normalised once;
//! similarities come from blocked matrix products (a block of [`ROW_BLOCK`] query rows against
//! a tile of [`COL_TILE`] candidate rows, faer f32 matmul), and each query row keeps its own
//! top-k list. Cost n² · d multiply-adds (about 8·10¹² flops for 100 000 × 384), memory
//! O(n · (d + k)).
//!
//! **Approximate** (more rows): an inverted-file index (IVF; Jégou, Douze, Schmid, "Product
//! quantization for nearest neighbor search", TPAMI 2011, without the quantization). Spherical
//! k-means (Lloyd iterations on unit vectors, seeded initialisation) on an evenly spaced sample
//! of at most `64 · nlist` rows gives `nlist ≈ √n` centroids; every row is assigned to its most
//! similar centroid (its list) and probes its `probes` most similar centroids. Each list is then
//! scanned once against all the rows probing it, with one blocked matrix product, and every
//! (query, candidate) similarity is pushed into the query's top-k. Cost about
//! n · (nlist + probes · n / nlist) · d multiply-adds (for 10⁷ × 384, nlist 3162 and 16
//! probes: about 2·10¹⁴, against 4·10¹⁶ exactly), memory O(n · (k + probes)) beyond the input; the input is not copied (norms are
//! applied to the products). A row whose probed lists hold fewer than k other rows is searched
//! exactly. Neighbours a probe misses are replaced by the next best it saw, so recall is below
//! one: measured by the unit test on clustered data and on the benchmark embeddings by
//! `cargo run --release -p poisongate-detectors --example knn_recall`.
//!
//! Both are deterministic for a seed whatever the thread count: every product runs
//! single-threaded on blocks whose shape depends on the data only, each pair is computed once,
//! and a top-k list under the strict order (similarity, then smaller index) does not depend on
//! the order its candidates arrive in.

/// The documentation of the shared kNN parameters (`knn_exact_max_rows`, `knn_probes`,
/// `knn_seed`), for the docs of every detector that reads them with [`read_options`].
#[macro_export]
macro_rules! knn_params_doc {
    () => {
        "- `knn_exact_max_rows` (default 200 000), `knn_probes` (default 16), `knn_seed` (default 1):\n  \
         the neighbour search is exact up to `knn_exact_max_rows` rows and uses the IVF index beyond\n  \
         (√n spherical k-means lists, each row searching its `knn_probes` nearest lists; recall@10\n  \
         0.96 at 100 000 and 0.79 at 1 000 000 synthetic clustered rows, every cosine ≥ 0.97 pair of\n  \
         the benchmark MiniLM sets; `examples/knn_scale.rs`, `examples/knn_recall.rs`). The summary's\n  \
         `knn` entry says which search ran.\n"
    };
}

use crate::rng::SplitMix64;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use ndarray::ArrayView2;
use rayon::prelude::*;
use std::sync::Mutex;

/// Query rows per parallel block.
const ROW_BLOCK: usize = 1024;
/// Candidate rows per tile of one matrix product (1024 × 4096 f32 = 16 MiB per block).
const COL_TILE: usize = 4096;

/// The k nearest neighbours of every row, by cosine similarity, excluding the row itself.
#[derive(Debug, Clone)]
pub struct Knn {
    /// Neighbours per row (at most n − 1).
    pub k: usize,
    /// Neighbour indices, row-major `n × k`, most similar first (ties: smaller index first).
    pub idx: Vec<u32>,
    /// Matching cosine similarities, row-major `n × k`.
    pub sim: Vec<f32>,
    /// How the neighbours were found, for the report: `{"method": "exact"}` or the IVF
    /// settings.
    pub method: serde_json::Value,
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
    let inv = inverse_norms(x)?;
    let all: Vec<u32> = (0..x.nrows() as u32).collect();
    Ok(gather_unit(x, &inv, &all))
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
pub fn knn_cosine(x: &ArrayView2<'_, f32>, k: usize) -> Result<Knn, String> {
    let n = x.nrows();
    let d = x.ncols();
    let k = k.min(n.saturating_sub(1));
    if k == 0 || d == 0 {
        return Ok(Knn {
            k: 0,
            idx: Vec::new(),
            sim: Vec::new(),
            method: serde_json::json!({"method": "exact"}),
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
                crate::linalg::clear_upper_simd();
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
    Ok(Knn {
        k,
        idx,
        sim,
        method: serde_json::json!({"method": "exact"}),
    })
}

/// How [`knn_search`] finds neighbours: exactly up to `exact_max_rows` rows, by an IVF index
/// beyond.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnOptions {
    /// Most rows searched exactly (quadratic cost); more rows use the IVF index.
    pub exact_max_rows: usize,
    /// Lists of the IVF index each row searches.
    pub probes: usize,
    /// Seed of the k-means initialisation.
    pub seed: u64,
}

impl Default for KnnOptions {
    fn default() -> Self {
        KnnOptions {
            exact_max_rows: DEFAULT_EXACT_MAX_ROWS,
            probes: DEFAULT_PROBES,
            seed: 1,
        }
    }
}

/// Default [`KnnOptions::exact_max_rows`]: 200 000 rows × 384 dims is about 1.5·10¹³
/// multiply-adds exactly, minutes on two cores.
pub const DEFAULT_EXACT_MAX_ROWS: usize = 200_000;
/// Default [`KnnOptions::probes`].
pub const DEFAULT_PROBES: usize = 16;
/// Lloyd iterations of the IVF k-means.
const KMEANS_ITERS: usize = 10;
/// Training rows per IVF list.
const TRAIN_PER_LIST: usize = 64;

/// Reads the shared kNN parameters (`knn_exact_max_rows`, `knn_probes`, `knn_seed`) of a
/// detector that uses [`knn_search`].
pub(crate) fn read_options(
    r: &mut crate::params::ParamReader<'_>,
) -> Result<KnnOptions, crate::ParamError> {
    Ok(KnnOptions {
        exact_max_rows: r.usize("knn_exact_max_rows", DEFAULT_EXACT_MAX_ROWS, 0, usize::MAX)?,
        probes: r.usize("knn_probes", DEFAULT_PROBES, 1, 4096)?,
        seed: r.usize("knn_seed", 1, 0, usize::MAX)? as u64,
    })
}

/// The options as report parameters.
pub(crate) fn options_json(o: &KnnOptions) -> serde_json::Value {
    serde_json::json!({
        "knn_exact_max_rows": o.exact_max_rows,
        "knn_probes": o.probes,
        "knn_seed": o.seed,
    })
}

/// k nearest neighbours (cosine) of every row of `x`, excluding itself: exact up to
/// `opts.exact_max_rows` rows, by the IVF index beyond ([`Knn::method`] says which).
pub fn knn_search(x: &ArrayView2<'_, f32>, k: usize, opts: &KnnOptions) -> Result<Knn, String> {
    if x.nrows() <= opts.exact_max_rows {
        knn_cosine(x, k)
    } else {
        knn_ivf(x, k, opts)
    }
}

/// Reciprocal L2 norm of every row (0 for an all-zero row). Errors on non-finite values.
fn inverse_norms(x: &ArrayView2<'_, f32>) -> Result<Vec<f64>, String> {
    let bad = (0..x.nrows())
        .into_par_iter()
        .find_first(|&r| x.row(r).iter().any(|v| !v.is_finite()));
    if let Some(r) = bad {
        return Err(format!("row {r} has a non-finite value"));
    }
    Ok((0..x.nrows())
        .into_par_iter()
        .map(|r| {
            let ss: f64 = x.row(r).iter().map(|&v| v as f64 * v as f64).sum();
            if ss > 0.0 {
                1.0 / ss.sqrt()
            } else {
                0.0
            }
        })
        .collect())
}

/// Unit-length copies of rows `rows` of `x`, row-major.
fn gather_unit(x: &ArrayView2<'_, f32>, inv: &[f64], rows: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * x.ncols());
    for &r in rows {
        let s = inv[r as usize];
        out.extend(x.row(r as usize).iter().map(|&v| (v as f64 * s) as f32));
    }
    out
}

/// For each row of the row-major unit matrix `q` (`nq × d`), the indices of its `p` most
/// similar centroids (`c`, `nc × d`, unit rows), most similar first (ties: smaller index).
fn nearest_centroids(q: &[f32], nq: usize, c: &[f32], nc: usize, d: usize, p: usize) -> Vec<u32> {
    let cm = MatRef::from_row_major_slice(c, nc, d);
    let starts: Vec<usize> = (0..nq).step_by(ROW_BLOCK).collect();
    let parts: Vec<Vec<u32>> = starts
        .par_iter()
        .map(|&s| {
            let e = (s + ROW_BLOCK).min(nq);
            let qm = MatRef::from_row_major_slice(&q[s * d..e * d], e - s, d);
            let mut prod = Mat::<f32>::zeros(e - s, nc);
            matmul(
                prod.as_mut(),
                Accum::Replace,
                qm,
                cm.transpose(),
                1.0f32,
                Par::Seq,
            );
            crate::linalg::clear_upper_simd();
            let mut out = Vec::with_capacity((e - s) * p);
            let mut top = Vec::with_capacity(p + 1);
            for i in 0..e - s {
                top.clear();
                for j in 0..nc {
                    let v = prod[(i, j)];
                    let v = if v.is_nan() { f32::NEG_INFINITY } else { v };
                    push_top(&mut top, p, (v, j as u32));
                }
                out.extend(top.iter().map(|t| t.1));
            }
            out
        })
        .collect();
    parts.concat()
}

/// Spherical k-means on the unit rows `sample` (`ns × d`): `nc` unit centroids, row-major.
/// Initial centroids are distinct sample rows drawn with `seed`; sums are taken per cluster in
/// row order, so the result does not depend on the thread count. A cluster left empty keeps its
/// centroid.
fn spherical_kmeans(sample: &[f32], ns: usize, d: usize, nc: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64(seed);
    let mut picked = std::collections::BTreeSet::new();
    let mut cent = Vec::with_capacity(nc * d);
    while picked.len() < nc {
        let r = rng.below(ns);
        if picked.insert(r) {
            cent.extend_from_slice(&sample[r * d..(r + 1) * d]);
        }
    }
    for _ in 0..KMEANS_ITERS {
        let assign = nearest_centroids(sample, ns, &cent, nc, d, 1);
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); nc];
        for (r, &c) in assign.iter().enumerate() {
            members[c as usize].push(r as u32);
        }
        let updated: Vec<Option<Vec<f32>>> = members
            .par_iter()
            .map(|rows| {
                if rows.is_empty() {
                    return None;
                }
                let mut acc = vec![0f64; d];
                for &r in rows {
                    for (a, &v) in acc
                        .iter_mut()
                        .zip(&sample[r as usize * d..(r as usize + 1) * d])
                    {
                        *a += v as f64;
                    }
                }
                let norm = acc.iter().map(|a| a * a).sum::<f64>().sqrt();
                (norm > 0.0).then(|| acc.iter().map(|a| (a / norm) as f32).collect())
            })
            .collect();
        for (c, u) in updated.into_iter().enumerate() {
            if let Some(u) = u {
                cent[c * d..(c + 1) * d].copy_from_slice(&u);
            }
        }
    }
    cent
}

/// Top-k lists of a chunk of [`ROW_BLOCK`] rows, flat, padded with (−∞, `u32::MAX`).
struct TopChunk {
    sim: Vec<f32>,
    idx: Vec<u32>,
}

impl TopChunk {
    /// Pushes `cand` into the sorted top-k list of local row `i`.
    fn push(&mut self, k: usize, i: usize, cand: (f32, u32)) {
        let sim = &mut self.sim[i * k..(i + 1) * k];
        let idx = &mut self.idx[i * k..(i + 1) * k];
        if !before(cand, (sim[k - 1], idx[k - 1])) {
            return;
        }
        let mut pos = k - 1;
        while pos > 0 && before(cand, (sim[pos - 1], idx[pos - 1])) {
            sim[pos] = sim[pos - 1];
            idx[pos] = idx[pos - 1];
            pos -= 1;
        }
        sim[pos] = cand.0;
        idx[pos] = cand.1;
    }
}

/// Approximate k nearest neighbours by the IVF index described in the module docs.
pub fn knn_ivf(x: &ArrayView2<'_, f32>, k: usize, opts: &KnnOptions) -> Result<Knn, String> {
    let n = x.nrows();
    let d = x.ncols();
    let k = k.min(n.saturating_sub(1));
    if n > u32::MAX as usize {
        return Err("more rows than a u32 index holds".into());
    }
    let nlist = ((n as f64).sqrt().round() as usize).clamp(1, n.max(1));
    let probes = opts.probes.clamp(1, nlist);
    let method = serde_json::json!({
        "method": "ivf",
        "lists": nlist,
        "probes": probes,
        "kmeans_iterations": KMEANS_ITERS,
        "seed": opts.seed,
    });
    if k == 0 || d == 0 {
        return Ok(Knn {
            k: 0,
            idx: Vec::new(),
            sim: Vec::new(),
            method,
        });
    }
    let inv = inverse_norms(x)?;
    // train on evenly spaced rows
    let ns = (TRAIN_PER_LIST * nlist).min(n);
    let sample_rows: Vec<u32> = (0..ns)
        .map(|i| ((i as u128 * n as u128) / ns as u128) as u32)
        .collect();
    let sample = gather_unit(x, &inv, &sample_rows);
    let cent = spherical_kmeans(&sample, ns, d, nlist, opts.seed);
    drop(sample);
    // every row: its list (nearest centroid) and its probes, in row blocks
    let mut probe_of = vec![0u32; n * probes];
    probe_of
        .par_chunks_mut(ROW_BLOCK * probes)
        .enumerate()
        .for_each(|(b, dst)| {
            let s = b * ROW_BLOCK;
            let rows: Vec<u32> = (s as u32..(s + dst.len() / probes) as u32).collect();
            let q = gather_unit(x, &inv, &rows);
            dst.copy_from_slice(&nearest_centroids(&q, rows.len(), &cent, nlist, d, probes));
        });
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); nlist];
    let mut queries: Vec<Vec<u32>> = vec![Vec::new(); nlist];
    for r in 0..n {
        let p = &probe_of[r * probes..(r + 1) * probes];
        members[p[0] as usize].push(r as u32);
        for &l in p {
            queries[l as usize].push(r as u32);
        }
    }
    drop(probe_of);
    let chunks: Vec<Mutex<TopChunk>> = (0..n)
        .step_by(ROW_BLOCK)
        .map(|s| {
            let len = (ROW_BLOCK.min(n - s)) * k;
            Mutex::new(TopChunk {
                sim: vec![f32::NEG_INFINITY; len],
                idx: vec![u32::MAX; len],
            })
        })
        .collect();
    // each list against the rows probing it
    (0..nlist).into_par_iter().for_each(|l| {
        let mem = &members[l];
        if mem.is_empty() {
            return;
        }
        // a list can be large (many identical rows): its members are gathered and scanned in
        // tiles, so a task never holds more than ROW_BLOCK × COL_TILE similarities and one tile
        for qrows in queries[l].chunks(ROW_BLOCK) {
            let q = gather_unit(x, &inv, qrows);
            let qm = MatRef::from_row_major_slice(&q, qrows.len(), d);
            // local top-k per query, then one locked merge per chunk of query rows
            let mut local: Vec<Vec<(f32, u32)>> = vec![Vec::with_capacity(k + 1); qrows.len()];
            for tile in mem.chunks(COL_TILE) {
                let cand = gather_unit(x, &inv, tile);
                let cm = MatRef::from_row_major_slice(&cand, tile.len(), d);
                let mut prod = Mat::<f32>::zeros(qrows.len(), tile.len());
                matmul(
                    prod.as_mut(),
                    Accum::Replace,
                    qm,
                    cm.transpose(),
                    1.0f32,
                    Par::Seq,
                );
                crate::linalg::clear_upper_simd();
                for (qi, top) in local.iter_mut().enumerate() {
                    for (cj, &c) in tile.iter().enumerate() {
                        if c == qrows[qi] {
                            continue;
                        }
                        let v = prod[(qi, cj)];
                        let v = if v.is_nan() { f32::NEG_INFINITY } else { v };
                        push_top(top, k, (v, c));
                    }
                }
            }
            let mut qi = 0;
            while qi < qrows.len() {
                let chunk = qrows[qi] as usize / ROW_BLOCK;
                let mut guard = match chunks[chunk].lock() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                while qi < qrows.len() && qrows[qi] as usize / ROW_BLOCK == chunk {
                    let local_row = qrows[qi] as usize - chunk * ROW_BLOCK;
                    for &cand in &local[qi] {
                        guard.push(k, local_row, cand);
                    }
                    qi += 1;
                }
            }
        }
    });
    let mut idx = Vec::with_capacity(n * k);
    let mut sim = Vec::with_capacity(n * k);
    for c in chunks {
        let c = match c.into_inner() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        idx.extend(c.idx);
        sim.extend(c.sim);
    }
    // rows whose probed lists held fewer than k other rows: searched exactly
    let short: Vec<usize> = (0..n).filter(|&r| idx[r * k + k - 1] == u32::MAX).collect();
    if !short.is_empty() {
        let q = gather_unit(
            x,
            &inv,
            &short.iter().map(|&r| r as u32).collect::<Vec<_>>(),
        );
        let fixed: Vec<Vec<(f32, u32)>> = short
            .par_iter()
            .enumerate()
            .map(|(qi, &r)| {
                let qv = &q[qi * d..(qi + 1) * d];
                let mut top = Vec::with_capacity(k + 1);
                for (j, &s) in inv.iter().enumerate() {
                    if j == r {
                        continue;
                    }
                    let v: f32 = x
                        .row(j)
                        .iter()
                        .zip(qv)
                        .map(|(&a, &b)| (a as f64 * s) as f32 * b)
                        .sum();
                    let v = if v.is_nan() { f32::NEG_INFINITY } else { v };
                    push_top(&mut top, k, (v, j as u32));
                }
                top
            })
            .collect();
        for (&r, top) in short.iter().zip(fixed) {
            for (t, (v, j)) in top.into_iter().enumerate() {
                sim[r * k + t] = v;
                idx[r * k + t] = j;
            }
        }
    }
    let mut method = method;
    method["rows_searched_exactly"] = serde_json::json!(short.len());
    Ok(Knn {
        k,
        idx,
        sim,
        method,
    })
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

    /// `n` rows around `centres` random unit centres, with noise `spread`, in `d` dims.
    fn clustered(
        rng: &mut Rng,
        n: usize,
        d: usize,
        centres: usize,
        spread: f64,
    ) -> ndarray::Array2<f32> {
        let c = gaussian(rng, centres, d);
        ndarray::Array2::from_shape_fn((n, d), |(i, j)| {
            c[[i % centres, j]] + (spread * rng.gauss()) as f32
        })
    }

    #[test]
    fn ivf_recalls_most_neighbours_and_every_near_copy() {
        let mut rng = Rng(3);
        let mut x = clustered(&mut rng, 6000, 24, 40, 0.3);
        // twenty near copies of other rows
        for t in 0..20 {
            let src = 37 * t + 5;
            let dst = 5000 + t;
            for j in 0..24 {
                x[[dst, j]] = x[[src, j]] * 1.001;
            }
        }
        let exact = knn_cosine(&x.view(), 10).unwrap();
        let opts = KnnOptions {
            exact_max_rows: 0,
            ..KnnOptions::default()
        };
        let ivf = knn_search(&x.view(), 10, &opts).unwrap();
        assert_eq!(ivf.method["method"], "ivf");
        assert_eq!(ivf.k, 10);
        let mut hit = 0;
        for i in 0..6000 {
            assert!(!ivf.neighbours(i).contains(&(i as u32)));
            assert!(ivf.sims(i).windows(2).all(|w| w[0] >= w[1]));
            hit += exact
                .neighbours(i)
                .iter()
                .filter(|j| ivf.neighbours(i).contains(j))
                .count();
        }
        let recall = hit as f64 / 60_000.0;
        assert!(recall > 0.9, "recall {recall}");
        for t in 0..20 {
            assert_eq!(ivf.neighbours(5000 + t)[0], (37 * t + 5) as u32);
        }
        // below the row limit the search is exact
        let small = knn_search(&x.view(), 10, &KnnOptions::default()).unwrap();
        assert_eq!(small.method["method"], "exact");
        assert_eq!(small.idx, exact.idx);
    }

    #[test]
    fn ivf_is_identical_on_one_and_three_threads() {
        let mut rng = Rng(9);
        let x = clustered(&mut rng, 3000, 16, 25, 0.5);
        let opts = KnnOptions {
            exact_max_rows: 0,
            probes: 3,
            seed: 4,
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| knn_search(&x.view(), 7, &opts).unwrap())
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.idx, b.idx);
        assert_eq!(
            a.sim.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.sim.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn ivf_rows_with_short_probes_are_searched_exactly() {
        // 30 rows, 5 lists, one probe each: some lists hold fewer than k = 8 other rows
        let mut rng = Rng(2);
        let x = clustered(&mut rng, 30, 4, 5, 0.01);
        let opts = KnnOptions {
            exact_max_rows: 0,
            probes: 1,
            seed: 1,
        };
        let ivf = knn_search(&x.view(), 8, &opts).unwrap();
        let exact = knn_cosine(&x.view(), 8).unwrap();
        assert!(ivf.method["rows_searched_exactly"].as_u64().unwrap() > 0);
        for i in 0..30 {
            assert!(ivf
                .neighbours(i)
                .iter()
                .all(|&j| (j as usize) < 30 && j != i as u32));
        }
        let mut bad = x.clone();
        bad[[3, 1]] = f32::INFINITY;
        assert!(knn_search(&bad.view(), 2, &opts).is_err());
        assert_eq!(exact.k, 8);
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
