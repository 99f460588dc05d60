//! Shared numerical building blocks: per-class row grouping, centred covariance by merged
//! Gram sums, and top eigenvectors (faer's self-adjoint eigendecomposition).
//!
//! Determinism: every sum is formed over fixed row chunks (independent of the thread count)
//! and merged in chunk order, so results are bit-identical with 1 or N rayon threads.

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, Mat, MatRef, Par, Side};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Rows per chunk for Gram sums and projections.
pub(crate) const CHUNK_ROWS: usize = 2048;
/// Chunks computed in parallel before their partial sums are merged (in order).
const GROUP_CHUNKS: usize = 8;

/// Clears the upper halves of the CPU's vector registers (`vzeroupper`) on the calling thread.
///
/// faer's matrix products run AVX-512 kernels (the `gemm` crate) that return with the upper
/// register halves in use. Until they are cleared, every later instruction of the default
/// x86-64 build (SSE, no AVX) that mixes with AVX code, such as the FMA builds of glibc's
/// `exp`, `ln` and `ln_1p`, pays a state transition: measured here, `exp` followed by `ln_1p`
/// went from 9 to 311 ns a value, and SPEC001's mixture fit after its Gram sums was 20 times
/// slower than its arithmetic. So every matrix product of the detectors is followed by this
/// on the thread that ran it (they all run sequentially on their caller, `Par::Seq`). It
/// changes no value, only the register state; on CPUs without AVX, and off x86-64, it does
/// nothing. Written by hand because no maintained crate offers it; the one `unsafe` block
/// only calls the instruction once the CPU is known to have it.
pub fn clear_upper_simd() {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: `vzeroupper` needs AVX, and the CPU was just found to support it; it
            // touches only the upper halves of the vector registers, which no Rust value
            // lives in across this call.
            unsafe { std::arch::x86_64::_mm256_zeroupper() }
        }
    }
}

/// Row indices of each class, in row order.
pub(crate) fn rows_by_class(labels: &[u32], n_classes: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n_classes];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(v) = out.get_mut(l as usize) {
            v.push(i);
        }
    }
    out
}

/// `rows` itself when it has at most `max` entries (or `max` is 0), else `max` evenly spaced
/// entries of it (deterministic).
pub(crate) fn evenly_spaced(rows: &[usize], max: usize) -> std::borrow::Cow<'_, [usize]> {
    if max == 0 || rows.len() <= max {
        return std::borrow::Cow::Borrowed(rows);
    }
    let n = rows.len();
    std::borrow::Cow::Owned((0..max).map(|k| rows[k * n / max]).collect())
}

/// The per-class size gate the embedding detectors share: a class is fitted only with at least
/// max(`min_class_rows`, ⌈`min_rows_per_dim` · dims⌉) rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassGate {
    min_rows: usize,
    dims: usize,
}

impl ClassGate {
    pub(crate) fn new(min_class_rows: usize, min_rows_per_dim: f64, dims: usize) -> Self {
        ClassGate {
            min_rows: min_class_rows.max((min_rows_per_dim * dims as f64).ceil() as usize),
            dims,
        }
    }

    /// Why a class of `rows` rows is skipped, or `None` when it is large enough.
    pub(crate) fn skip_reason(&self, rows: usize) -> Option<String> {
        if self.dims > crate::state::MAX_MOMENT_DIMS {
            return Some(crate::state::StateError::TooWide(self.dims).to_string());
        }
        (rows < self.min_rows).then(|| {
            format!(
                "{rows} rows, fewer than the {} needed (min_class_rows, min_rows_per_dim × {} dims)",
                self.min_rows, self.dims
            )
        })
    }
}

/// Mean and covariance of a subset of rows, with the leading eigenpairs of the covariance.
#[derive(Debug, Clone)]
pub(crate) struct CenteredEigen {
    /// Mean of the rows.
    pub mean: Vec<f64>,
    /// Largest eigenvalues of the covariance (divisor n − 1), descending.
    pub eigenvalues: Vec<f64>,
    /// Matching unit eigenvectors, one per entry of `eigenvalues`.
    pub eigenvectors: Vec<Vec<f64>>,
}

/// Gathers `rows` of `x`, minus `shift`, into a row-major f32 buffer.
fn gather(x: &ArrayView2<'_, f32>, rows: &[usize], shift: &[f32], buf: &mut Vec<f32>) {
    buf.clear();
    for &r in rows {
        let row = x.row(r);
        let start = buf.len();
        match row.as_slice() {
            Some(s) => buf.extend_from_slice(s),
            None => buf.extend(row.iter().copied()),
        }
        for (b, s) in buf[start..].iter_mut().zip(shift) {
            *b -= s;
        }
    }
}

/// Mean, covariance and top-`k` eigenpairs of the rows `rows` of `x`.
///
/// The covariance comes from mergeable sums: Σ(x − s) and Σ(x − s)(x − s)ᵀ around a fixed
/// shift `s` (the mean of the first rows), accumulated per chunk in f32 by a matrix product and
/// merged in f64, so that the cost is one pass of matrix products over the data.
pub(crate) fn centered_eigen(
    x: &ArrayView2<'_, f32>,
    rows: &[usize],
    k: usize,
) -> Result<CenteredEigen, String> {
    let d = x.ncols();
    let n = rows.len();
    if n < 2 {
        return Err("fewer than 2 rows".into());
    }
    let head = &rows[..n.min(256)];
    let mut shift = vec![0f64; d];
    for &r in head {
        for (s, v) in shift.iter_mut().zip(x.row(r)) {
            *s += *v as f64;
        }
    }
    let shift32: Vec<f32> = shift
        .iter()
        .map(|s| (*s / head.len() as f64) as f32)
        .collect();

    let mut sum = vec![0f64; d];
    let mut gram = Mat::<f64>::zeros(d, d);
    let chunks: Vec<&[usize]> = rows.chunks(CHUNK_ROWS).collect();
    for group in chunks.chunks(GROUP_CHUNKS) {
        let partials: Vec<(Vec<f64>, Mat<f32>)> = group
            .par_iter()
            .map(|chunk| {
                let mut buf = Vec::with_capacity(chunk.len() * d);
                gather(x, chunk, &shift32, &mut buf);
                let m = MatRef::from_row_major_slice(&buf, chunk.len(), d);
                let mut g = Mat::<f32>::zeros(d, d);
                // lower triangle only: the Gram matrix is symmetric, half the work
                matmul(
                    &mut g,
                    BlockStructure::TriangularLower,
                    Accum::Replace,
                    m.transpose(),
                    BlockStructure::Rectangular,
                    m,
                    BlockStructure::Rectangular,
                    1.0f32,
                    Par::Seq,
                );
                clear_upper_simd();
                // column sums of the shifted chunk: f32 within the chunk, f64 across chunks
                let mut s32 = vec![0f32; d];
                for row in buf.chunks_exact(d) {
                    for (a, v) in s32.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                (s32.into_iter().map(f64::from).collect::<Vec<f64>>(), g)
            })
            .collect();
        for (s, g) in partials {
            for (a, v) in sum.iter_mut().zip(&s) {
                *a += v;
            }
            for j in 0..d {
                for i in j..d {
                    gram[(i, j)] += g[(i, j)] as f64;
                }
            }
        }
    }
    let nf = n as f64;
    let m: Vec<f64> = sum.iter().map(|s| s / nf).collect();
    // covariance of (x − s): (G − n m mᵀ) / (n − 1), from G's lower triangle.
    let cov = Mat::<f64>::from_fn(d, d, |i, j| {
        let gij = if i >= j { gram[(i, j)] } else { gram[(j, i)] };
        (gij - nf * m[i] * m[j]) / (nf - 1.0)
    });
    let (eigenvalues, eigenvectors) = top_eigenpairs(&cov, k)?;
    let mean = shift32.iter().zip(&m).map(|(s, m)| *s as f64 + m).collect();
    Ok(CenteredEigen {
        mean,
        eigenvalues,
        eigenvectors,
    })
}

/// The `k` largest eigenvalues of the symmetric matrix `cov` (descending, clamped at 0) and
/// their unit eigenvectors (sign made canonical): by Lanczos ([`crate::lanczos`]) when `cov` is
/// large enough for it to pay, else by faer's full self-adjoint eigendecomposition.
pub(crate) fn top_eigenpairs(
    cov: &Mat<f64>,
    k: usize,
) -> Result<(Vec<f64>, Vec<Vec<f64>>), String> {
    if let Some((values, mut vectors)) = crate::lanczos::top_eigenpairs(cov, k)? {
        vectors.iter_mut().for_each(|v| canonical_sign(v));
        return Ok((values.into_iter().map(|v| v.max(0.0)).collect(), vectors));
    }
    let d = cov.nrows();
    let evd = cov
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
    clear_upper_simd();
    let s = evd.S().column_vector();
    let u = evd.U();
    let k = k.min(d);
    let mut eigenvalues = Vec::with_capacity(k);
    let mut eigenvectors = Vec::with_capacity(k);
    for t in 0..k {
        let idx = d - 1 - t; // ascending order from faer
        eigenvalues.push(s[idx].max(0.0));
        let mut v: Vec<f64> = (0..d).map(|i| u[(i, idx)]).collect();
        canonical_sign(&mut v);
        eigenvectors.push(v);
    }
    Ok((eigenvalues, eigenvectors))
}

/// Flip `v` so that its entry of largest magnitude is positive (first such entry on ties):
/// eigenvectors are defined up to sign, and results must not depend on the solver's choice.
pub(crate) fn canonical_sign(v: &mut [f64]) {
    let mut best = 0usize;
    for (i, x) in v.iter().enumerate() {
        if x.abs() > v[best].abs() {
            best = i;
        }
    }
    if v.get(best).is_some_and(|x| *x < 0.0) {
        v.iter_mut().for_each(|x| *x = -*x);
    }
}

/// A fixed direction and centre to project rows on: p = (x − μ)·v, computed as x·v − μ·v with
/// f32 products summed in a fixed order (the same in fit and score, so both agree exactly).
#[derive(Debug, Clone)]
pub(crate) struct Projector {
    dir32: Vec<f32>,
    offset: f64,
}

impl Projector {
    pub(crate) fn new(mean: &[f64], dir: &[f64]) -> Self {
        Projector {
            dir32: dir.iter().map(|v| *v as f32).collect(),
            offset: mean.iter().zip(dir).map(|(m, v)| m * v).sum(),
        }
    }

    /// Projection of row `r` of `x`.
    pub(crate) fn project(&self, x: &ArrayView2<'_, f32>, r: usize) -> f64 {
        let row = x.row(r);
        dot32(row.as_slice(), &row, &self.dir32) - self.offset
    }
}

/// Dot product of one row with `dir`, accumulated in f64 over f32 products.
pub(crate) fn dot32(
    contiguous: Option<&[f32]>,
    row: &ndarray::ArrayView1<'_, f32>,
    dir: &[f32],
) -> f64 {
    match contiguous {
        Some(s) => {
            // 8 independent lanes so the compiler can vectorise; fixed order, so deterministic.
            let mut acc = [0f32; 8];
            let mut it = s.chunks_exact(8);
            let mut dit = dir.chunks_exact(8);
            for (a, b) in (&mut it).zip(&mut dit) {
                for l in 0..8 {
                    acc[l] += a[l] * b[l];
                }
            }
            let mut tail = 0f64;
            for (a, b) in it.remainder().iter().zip(dit.remainder()) {
                tail += (*a as f64) * (*b as f64);
            }
            acc.iter().map(|v| *v as f64).sum::<f64>() + tail
        }
        None => row
            .iter()
            .zip(dir)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum(),
    }
}

/// Standard normal CDF through [`erfc`].
pub(crate) fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// χ²_k CDF by the Wilson–Hilferty cube-root approximation.
pub(crate) fn chi2_cdf(k: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let h = 2.0 / (9.0 * k);
    normal_cdf(((x / k).cbrt() - (1.0 - h)) / h.sqrt())
}

/// The regularised incomplete beta function I_x(a, b), by its continued fraction (modified
/// Lentz), on the side where it converges fast (x < (a + 1) / (a + b + 2), else through
/// I_x(a, b) = 1 − I_{1−x}(b, a)). Written here because the crates that have it bring a linear
/// algebra stack of their own; checked against closed forms in the tests.
pub(crate) fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    use crate::trigger::ln_gamma;
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    let cf = |x: f64, a: f64, b: f64| -> f64 {
        const TINY: f64 = 1e-300;
        let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
        let mut c = 1.0;
        let mut d = 1.0 - qab * x / qap;
        if d.abs() < TINY {
            d = TINY;
        }
        d = 1.0 / d;
        let mut h = d;
        // one Lentz step with the partial numerator `aa`: the factor h is multiplied by
        let step = |aa: f64, c: &mut f64, d: &mut f64| -> f64 {
            *d = 1.0 + aa * *d;
            if d.abs() < TINY {
                *d = TINY;
            }
            *c = 1.0 + aa / *c;
            if c.abs() < TINY {
                *c = TINY;
            }
            *d = 1.0 / *d;
            *d * *c
        };
        for m in 1..=10_000 {
            let m = m as f64;
            let m2 = 2.0 * m;
            h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)), &mut c, &mut d);
            let del = step(
                -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
                &mut c,
                &mut d,
            );
            h *= del;
            if (del - 1.0).abs() < 1e-14 {
                break;
            }
        }
        h
    };
    if x < (a + 1.0) / (a + b + 2.0) {
        front * cf(x, a, b) / a
    } else {
        1.0 - front * cf(1.0 - x, b, a) / b
    }
}

/// P(F > f) for F ~ F(d1, d2) (Fisher–Snedecor), through [`incomplete_beta`].
pub(crate) fn f_survival(f: f64, d1: f64, d2: f64) -> f64 {
    if f <= 0.0 {
        return 1.0;
    }
    incomplete_beta(d2 / (d2 + d1 * f), d2 / 2.0, d1 / 2.0)
}

/// Inverse of a symmetric positive semi-definite `d × d` matrix (row-major) applied as a
/// quadratic form: vᵀ A⁺ v over the eigenvalues above `floor` times the largest, with the
/// number of eigenvalues kept.
pub(crate) fn pseudo_quadratic(
    a: &[f64],
    d: usize,
    v: &[f64],
    floor: f64,
) -> Result<(f64, usize), String> {
    let m = Mat::<f64>::from_fn(d, d, |i, j| a[i * d + j]);
    let evd = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
    clear_upper_simd();
    let s = evd.S().column_vector();
    let u = evd.U();
    let top = (0..d).map(|i| s[i]).fold(0f64, f64::max);
    let (mut q, mut kept) = (0.0, 0usize);
    for k in 0..d {
        if s[k] > floor * top && s[k] > 0.0 {
            let proj: f64 = (0..d).map(|i| u[(i, k)] * v[i]).sum();
            q += proj * proj / s[k];
            kept += 1;
        }
    }
    Ok((q, kept))
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error below
/// 1.2e-7 everywhere).
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Median of a slice (NaN-free input); 0 for an empty slice.
pub(crate) fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Linear-interpolated quantile `q` in [0, 1] of a slice (NaN-free input); 0 when empty.
pub(crate) fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    sorted_quantile(&s, q)
}

/// [`quantile`] of a slice already sorted ascending (no copy, no sort).
pub(crate) fn sorted_quantile(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Symmetric FastICA (Hyvärinen, "Fast and robust fixed-point algorithms for independent
/// component analysis", IEEE TNN 1999) with the log-cosh contrast, on `m` whitened rows `y`
/// (row-major, `k` columns, zero mean, identity covariance). Returns the orthogonal unmixing
/// matrix W (row-major `k × k`; source i of a row is Σ_j W[i][j]·y_j) and the iterations run.
///
/// Each step replaces every row w of W by E[y·g(wᵀy)] − E[g′(wᵀy)]·w with g = tanh, then
/// decorrelates symmetrically, W ← (W Wᵀ)^(−1/2) W; it stops when every row's direction moved
/// less than `tol` (|1 − |⟨w_new, w_old⟩|| < tol) or after `max_iter` steps. W starts from a
/// seeded Gaussian matrix, decorrelated. Sums run in row order on one thread: deterministic.
/// Rows are given a canonical sign (largest-magnitude entry positive) and sorted by decreasing
/// |excess kurtosis| of their source, so the result does not depend on the solver's order.
pub(crate) fn fast_ica(
    y: &[f64],
    m: usize,
    k: usize,
    seed: u64,
    max_iter: usize,
    tol: f64,
) -> Result<(Vec<f64>, usize), String> {
    let mut rng = crate::rng::SplitMix64(seed);
    let mut w: Vec<f64> = (0..k * k).map(|_| rng.gauss()).collect();
    w = sym_decorrelate(&w, k)?;
    let mut iters = 0;
    let mf = m.max(1) as f64;
    for _ in 0..max_iter {
        iters += 1;
        let mut next = vec![0f64; k * k];
        let mut gp = vec![0f64; k];
        let mut u = vec![0f64; k];
        for row in y.chunks_exact(k) {
            for i in 0..k {
                u[i] = (0..k).map(|j| w[i * k + j] * row[j]).sum::<f64>().tanh();
            }
            for i in 0..k {
                gp[i] += 1.0 - u[i] * u[i];
                for j in 0..k {
                    next[i * k + j] += row[j] * u[i];
                }
            }
        }
        for i in 0..k {
            for j in 0..k {
                next[i * k + j] = next[i * k + j] / mf - gp[i] / mf * w[i * k + j];
            }
        }
        let next = sym_decorrelate(&next, k)?;
        let moved = (0..k)
            .map(|i| {
                let d: f64 = (0..k).map(|j| next[i * k + j] * w[i * k + j]).sum();
                (1.0 - d.abs()).abs()
            })
            .fold(0.0, f64::max);
        w = next;
        if moved < tol {
            break;
        }
    }
    // canonical order and sign
    let kurt = |i: usize| -> f64 {
        let (mut s2, mut s4) = (0.0, 0.0);
        for row in y.chunks_exact(k) {
            let s: f64 = (0..k).map(|j| w[i * k + j] * row[j]).sum();
            s2 += s * s;
            s4 += s * s * s * s;
        }
        let v = s2 / mf;
        if v > 0.0 {
            (s4 / mf) / (v * v) - 3.0
        } else {
            0.0
        }
    };
    let mut rows: Vec<(f64, Vec<f64>)> = (0..k)
        .map(|i| {
            let mut r = w[i * k..(i + 1) * k].to_vec();
            canonical_sign(&mut r);
            (kurt(i).abs(), r)
        })
        .collect();
    rows.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
    });
    Ok((rows.into_iter().flat_map(|(_, r)| r).collect(), iters))
}

/// (W Wᵀ)^(−1/2) W for a row-major `k × k` matrix W.
fn sym_decorrelate(w: &[f64], k: usize) -> Result<Vec<f64>, String> {
    let g = Mat::<f64>::from_fn(k, k, |i, j| {
        (0..k).map(|t| w[i * k + t] * w[j * k + t]).sum()
    });
    let evd = g
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
    clear_upper_simd();
    let s = evd.S().column_vector();
    let u = evd.U();
    let inv_sqrt: Vec<f64> = (0..k)
        .map(|t| {
            let l = s[t];
            if l > 1e-300 {
                1.0 / l.sqrt()
            } else {
                0.0
            }
        })
        .collect();
    // M = U diag(inv_sqrt) Uᵀ; result M W
    let mut out = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..k {
            let mij: f64 = (0..k).map(|t| u[(i, t)] * inv_sqrt[t] * u[(j, t)]).sum();
            for c in 0..k {
                out[i * k + c] += mij * w[j * k + c];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn incomplete_beta_and_f_survival_match_closed_forms() {
        // I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1 - x)^b
        for &x in &[0.01, 0.3, 0.5, 0.9] {
            assert!((incomplete_beta(x, 1.0, 1.0) - x).abs() < 1e-12);
            assert!((incomplete_beta(x, 3.5, 1.0) - x.powf(3.5)).abs() < 1e-12);
            assert!((incomplete_beta(x, 1.0, 7.0) - (1.0 - (1.0 - x).powi(7))).abs() < 1e-12);
        }
        // F(2, m): P(F > f) = (1 + 2f/m)^(-m/2)
        for &(f, m) in &[(0.5, 10.0), (3.0, 40.0), (9.0, 400.0)] {
            let want = (1.0f64 + 2.0 * f / m).powf(-m / 2.0);
            assert!((f_survival(f, 2.0, m) - want).abs() < 1e-10 * want.max(1e-300) + 1e-14);
        }
        // F(381, 2000) near its mean: about one half, and the far tail small
        let mid = f_survival(1.0, 381.0, 2000.0);
        assert!((0.4..0.6).contains(&mid), "{mid}");
        assert!(f_survival(1.5, 381.0, 2000.0) < 1e-6);
    }

    #[test]
    fn fast_ica_unmixes_a_rotation_of_independent_sources() {
        // two unit-variance non-Gaussian sources (uniform, and ±1 with noise), rotated by 30°
        let mut rng = crate::rng::SplitMix64(21);
        let m = 4000;
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let mut y = Vec::with_capacity(2 * m);
        for _ in 0..m {
            let a = (rng.unit() - 0.5) * 12f64.sqrt();
            let b = (if rng.unit() < 0.5 { -1.0 } else { 1.0 }) * 0.95 + 0.1 * rng.gauss();
            y.push(c * a - s * b);
            y.push(s * a + c * b);
        }
        let (w, iters) = fast_ica(&y, m, 2, 1, 200, 1e-6).unwrap();
        assert!(iters < 200);
        // W times the mixing matrix is a signed permutation
        let mix = [[c, -s], [s, c]];
        for i in 0..2 {
            let row: Vec<f64> = (0..2)
                .map(|j| (0..2).map(|t| w[i * 2 + t] * mix[t][j]).sum::<f64>().abs())
                .collect();
            let (hi, lo) = (row[0].max(row[1]), row[0].min(row[1]));
            assert!(hi > 0.99 && lo < 0.1, "{w:?}");
        }
        // rows are orthonormal
        let dot: f64 = (0..2).map(|t| w[t] * w[2 + t]).sum();
        assert!(dot.abs() < 1e-9);
    }

    #[test]
    fn eigen_of_known_covariance() {
        // points spread along (1, 1, 0) / sqrt(2) with small noise elsewhere
        let n = 500;
        let mut x = Array2::<f32>::zeros((n, 3));
        for i in 0..n {
            let t = (i as f32 / n as f32 - 0.5) * 10.0;
            let e = ((i * 7919) % 101) as f32 / 101.0 - 0.5;
            x[[i, 0]] = t + 0.1 * e + 3.0;
            x[[i, 1]] = t - 0.1 * e - 2.0;
            x[[i, 2]] = 0.05 * e;
        }
        let rows: Vec<usize> = (0..n).collect();
        let ce = centered_eigen(&x.view(), &rows, 2).unwrap();
        let v = &ce.eigenvectors[0];
        let s = std::f64::consts::FRAC_1_SQRT_2;
        assert!((v[0] - s).abs() < 1e-3 && (v[1] - s).abs() < 1e-3, "{v:?}");
        assert!((ce.mean[0] - 3.0).abs() < 0.05 && (ce.mean[1] + 2.0).abs() < 0.05);
        assert!(ce.eigenvalues[0] > 100.0 * ce.eigenvalues[1]);
        let pr = Projector::new(&ce.mean, v);
        let p: Vec<f64> = rows.iter().map(|&r| pr.project(&x.view(), r)).collect();
        let mean_p: f64 = p.iter().sum::<f64>() / n as f64;
        assert!(
            mean_p.abs() < 1e-3,
            "projections of centred rows average to 0"
        );
    }

    #[test]
    fn quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(quantile(&[0.0, 10.0], 0.25), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
