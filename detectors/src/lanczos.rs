//! The few largest eigenpairs of a symmetric matrix by the Lanczos method with full
//! reorthogonalisation.
//!
//! SPEC001 needs the top eigenvector of each class's covariance (and reports five eigenvalues),
//! ACT001 the top ten: a full decomposition of a 256 × 256 matrix spends nearly all its time on
//! eigenpairs nobody reads. Lanczos builds an orthonormal basis Q of the Krylov space of a
//! start vector one matrix-vector product at a time, in which the matrix is tridiagonal (T);
//! the eigenpairs of the small T (Ritz pairs, by faer) lifted back by Q converge first for the
//! extreme eigenvalues. Each new basis vector is orthogonalised against all earlier ones twice
//! (classical Gram–Schmidt, "twice is enough"), so the basis stays orthonormal to rounding and
//! no spurious copies of converged eigenvalues appear. A Ritz pair (θ, Qs) has residual
//! ‖A·Qs − θ·Qs‖ = β·|s_last| (β the norm of the next basis direction), so convergence is read
//! without forming it: the k top pairs are accepted when each residual is at most
//! [`TOLERANCE`] times the largest Ritz value. When the Krylov space closes early (β = 0: the
//! start vector lies in an invariant subspace), the basis continues from a fresh vector
//! orthogonal to it. A spectrum too flat for the pairs to settle within half the space
//! (unstructured data) is handed back to the full decomposition, which then costs no more
//! than going on would.
//!
//! Written here because faer, the linear-algebra crate in use, offers full symmetric
//! decompositions only. Everything is sequential and seeded, so the result is
//! the same on every run and thread count. Reference: Cornelius Lanczos. An iteration method
//! for the solution of the eigenvalue problem of linear differential and integral operators.
//! J. Res. Nat. Bur. Standards 45, 1950; Beresford N. Parlett. The Symmetric Eigenvalue
//! Problem, 1980 (ch. 13, full reorthogonalisation).

use crate::rng::SplitMix64;
use faer::{Mat, Side};

/// Largest residual of an accepted Ritz pair, relative to the largest Ritz value.
pub(crate) const TOLERANCE: f64 = 1e-11;

/// Steps taken before convergence is first checked, beyond the pairs wanted.
const FIRST_CHECK: usize = 24;

/// Fewest steps between convergence checks (the gap grows with the basis, a quarter of it, so
/// the Ritz problems solved stay a small share of the work).
const CHECK_EVERY: usize = 8;

/// `a` times `v` for the symmetric `d × d` matrix `a` (column-major, as faer stores it).
fn mat_vec(a: &Mat<f64>, v: &[f64], out: &mut [f64]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for (j, &vj) in v.iter().enumerate() {
        let col = a.col(j);
        for (i, o) in out.iter_mut().enumerate() {
            *o += col[i] * vj;
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Orthogonalise `w` against the rows of `basis` twice.
fn reorthogonalise(basis: &[Vec<f64>], w: &mut [f64]) {
    for _ in 0..2 {
        for q in basis {
            let c = dot(q, w);
            w.iter_mut().zip(q).for_each(|(x, y)| *x -= c * y);
        }
    }
}

/// A unit vector orthogonal to `basis`, drawn from `rng` (`None` when the basis already spans
/// the space, to rounding).
fn fresh_direction(basis: &[Vec<f64>], d: usize, rng: &mut SplitMix64) -> Option<Vec<f64>> {
    for _ in 0..4 {
        let mut w: Vec<f64> = (0..d).map(|_| rng.unit() - 0.5).collect();
        reorthogonalise(basis, &mut w);
        let norm = dot(&w, &w).sqrt();
        if norm > 1e-8 {
            w.iter_mut().for_each(|x| *x /= norm);
            return Some(w);
        }
    }
    None
}

/// Ritz values (descending) and their vectors' coordinates in the basis, for the leading
/// `m × m` block of the tridiagonal (`alpha` diagonal, `beta` off-diagonal).
fn ritz(alpha: &[f64], beta: &[f64], m: usize) -> Result<Pairs, String> {
    let t = Mat::<f64>::from_fn(m, m, |i, j| {
        if i == j {
            alpha[i]
        } else if i == j + 1 {
            beta[j]
        } else if j == i + 1 {
            beta[i]
        } else {
            0.0
        }
    });
    let evd = t
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
    crate::linalg::clear_upper_simd();
    let s = evd.S().column_vector();
    let u = evd.U();
    let values = (0..m).rev().map(|i| s[i]).collect();
    let vectors = (0..m)
        .rev()
        .map(|c| (0..m).map(|r| u[(r, c)]).collect())
        .collect();
    Ok((values, vectors))
}

/// Eigenvalues (descending) and their unit eigenvectors.
pub(crate) type Pairs = (Vec<f64>, Vec<Vec<f64>>);

/// The `k` largest eigenvalues of the symmetric matrix `a` (descending) and unit eigenvectors
/// (sign not yet canonical). `None` when the matrix is too small for the method to pay
/// (a full decomposition is then as cheap).
pub(crate) fn top_eigenpairs(a: &Mat<f64>, k: usize) -> Result<Option<Pairs>, String> {
    let d = a.nrows();
    let k = k.min(d);
    if k == 0 || d < 2 * (k + FIRST_CHECK) {
        return Ok(None);
    }
    let mut rng = SplitMix64(0x1A2C_2050_0000_0001);
    let mut basis: Vec<Vec<f64>> = Vec::with_capacity(d);
    let (mut alpha, mut beta) = (Vec::with_capacity(d), Vec::with_capacity(d));
    let Some(first) = fresh_direction(&basis, d, &mut rng) else {
        return Ok(None);
    };
    basis.push(first);
    let mut w = vec![0f64; d];
    let mut next_check = k + FIRST_CHECK;
    loop {
        let j = basis.len() - 1;
        mat_vec(a, &basis[j], &mut w);
        alpha.push(dot(&basis[j], &w));
        reorthogonalise(&basis, &mut w);
        let b = dot(&w, &w).sqrt();
        let m = basis.len();
        let scale = alpha.iter().fold(0f64, |s, x| s.max(x.abs()));
        let closed = b <= 1e-13 * scale.max(f64::MIN_POSITIVE);
        if m == d || m >= next_check {
            let (values, vectors) = ritz(&alpha, &beta, m)?;
            let top = values.first().map_or(0.0, |v| v.abs());
            let residual = |s: &Vec<f64>| if closed { 0.0 } else { b * s[m - 1].abs() };
            let done =
                m == d || (m >= k && vectors[..k].iter().all(|s| residual(s) <= TOLERANCE * top));
            if done {
                let vecs = vectors[..k]
                    .iter()
                    .map(|s| {
                        let mut x = vec![0f64; d];
                        for (q, &c) in basis.iter().zip(s) {
                            x.iter_mut().zip(q).for_each(|(xi, qi)| *xi += c * qi);
                        }
                        let norm = dot(&x, &x).sqrt();
                        x.iter_mut().for_each(|v| *v /= norm);
                        x
                    })
                    .collect();
                return Ok(Some((values[..k].to_vec(), vecs)));
            }
            if 2 * m >= d {
                // a flat spectrum: half the space built and the pairs not yet settled; the
                // full decomposition costs no more than going on
                return Ok(None);
            }
            next_check = m + CHECK_EVERY.max(m / 4);
        }
        if closed {
            // an invariant subspace: go on from a new direction (T is block diagonal there)
            let Some(q) = fresh_direction(&basis, d, &mut rng) else {
                return Ok(None);
            };
            beta.push(0.0);
            basis.push(q);
        } else {
            beta.push(b);
            basis.push(w.iter().map(|x| x / b).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric matrix with a known spectrum: Q diag(λ) Qᵀ for an orthogonal Q from
    /// Householder reflections of seeded vectors.
    fn known(d: usize, lambda: &[f64]) -> Mat<f64> {
        let mut rng = SplitMix64(7);
        let mut q = Mat::<f64>::identity(d, d);
        for _ in 0..3 {
            let v: Vec<f64> = (0..d).map(|_| rng.unit() - 0.5).collect();
            let vv = dot(&v, &v);
            let h = Mat::<f64>::from_fn(d, d, |i, j| {
                f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv
            });
            q = &h * &q;
        }
        let l = Mat::<f64>::from_fn(d, d, |i, j| if i == j { lambda[i] } else { 0.0 });
        &q * &l * q.transpose()
    }

    #[test]
    fn the_top_pairs_match_the_full_decomposition() {
        let d = 120;
        // a decaying spectrum with a repeated pair beyond the ones asked for
        let lambda: Vec<f64> = (0..d)
            .map(|i| {
                if i == 6 || i == 7 {
                    0.5
                } else {
                    10.0 / (1.0 + i as f64)
                }
            })
            .collect();
        let a = known(d, &lambda);
        let (vals, vecs) = top_eigenpairs(&a, 5).unwrap().expect("large enough");
        let mut sorted = lambda.clone();
        sorted.sort_by(|x, y| y.total_cmp(x));
        for t in 0..5 {
            assert!(
                (vals[t] - sorted[t]).abs() < 1e-10,
                "{t}: {} {}",
                vals[t],
                sorted[t]
            );
            let mut av = vec![0f64; d];
            mat_vec(&a, &vecs[t], &mut av);
            let r: f64 = av
                .iter()
                .zip(&vecs[t])
                .map(|(x, v)| (x - vals[t] * v).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(r < 1e-9, "{t}: residual {r:e}");
        }
    }

    #[test]
    fn evenly_spaced_and_nearly_equal_spectra_give_the_right_values() {
        let d = 120;
        for spread in [1.0, 1e-9] {
            let lambda: Vec<f64> = (0..d).map(|i| 1.0 + spread * i as f64 / d as f64).collect();
            let a = known(d, &lambda);
            // by Lanczos or, when the pairs do not settle within half the space, the full
            // decomposition
            let (vals, _) = crate::linalg::top_eigenpairs(&a, 5).unwrap();
            for (t, v) in vals.iter().enumerate() {
                let want = 1.0 + spread * (d - 1 - t) as f64 / d as f64;
                assert!((v - want).abs() < 1e-10, "{spread}: {t}: {v} {want}");
            }
        }
    }

    #[test]
    fn a_low_rank_matrix_closes_the_krylov_space_and_still_gives_every_pair() {
        let d = 100;
        let lambda: Vec<f64> = (0..d)
            .map(|i| if i < 3 { 3.0 - i as f64 } else { 0.0 })
            .collect();
        let a = known(d, &lambda);
        let (vals, _) = top_eigenpairs(&a, 5).unwrap().expect("large enough");
        for (got, want) in vals.iter().zip([3.0, 2.0, 1.0, 0.0, 0.0]) {
            assert!((got - want).abs() < 1e-10, "{vals:?}");
        }
    }
}
