//! SPEC002 robust spectral filtering: SPECTRE (Hayase, Kong, Somani, Oh, ICML 2021), with a cut
//! taken from the score distribution instead of a known poison rate.

use crate::linalg;
use crate::mixture;
use crate::params::ParamReader;
use crate::spectral::{normal_quantile, normal_quantile_upper};
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use faer::{Mat, Side};
use ndarray::ArrayView2;
use rayon::prelude::*;
use serde_json::json;

const CODE: &str = "SPEC002";

/// Candidate PCA dimensions (powers of two, as SPECTRE searches).
const K_CANDIDATES: [usize; 6] = [1, 2, 4, 8, 16, 32];

static META: Meta = Meta {
    code: CODE,
    name: "robust-spectral",
    summary: "Rows with high quantum-entropy scores after whitening by a robust class covariance",
    docs: r#"# SPEC002 robust-spectral (SPECTRE)

## What it detects
The same poison as SPEC001 (rows that share a feature the rest of their class lacks), when it
does not dominate the single top direction: SPECTRE whitens each class with a covariance
estimated robustly (so the poison cannot hide in it) and then scores rows along every direction
in which the class's spread exceeds the robust spread, weighted by the quantum-entropy (QUE)
rule.

## Method
Per class c with rows X_c:
1. PCA: mean and covariance from merged Gram sums, top 32 eigenvectors (Lanczos, `crate::lanczos`); rows are
   projected to y_i ∈ R^k for each candidate k ∈ {1, 2, 4, 8, 16, 32} (k ≤ d).
2. Robust mean μ̂ and covariance Σ̂ in R^k by iterative filtering: start from the half of the rows
   nearest the coordinate-wise median (MAD-scaled), then repeat: mean and covariance of the kept
   rows, the covariance scaled by the Gaussian consistency factor f / F_{χ²(k+2)}(χ²_k(f)) for a
   kept fraction f, keep the rows whose Mahalanobis distance² is at most χ²_k(0.975); stop
   when the kept set no longer changes (at most 30 rounds). At most `max_robust_rows` rows
   (evenly spaced) enter this estimate. SPECTRE's filter needs the poison fraction ε; this one
   does not.
3. Whitening ỹ_i = Σ̂^{-1/2}(y_i − μ̂) and the whitened covariance Σ̃ = mean of ỹ ỹᵀ, with
   eigenvalues λ₁ ≥ … ≥ λ_k. Σ̃ ≈ I on a clean Gaussian class; poison shows as λ₁ > 1.
4. k is chosen, as in SPECTRE, as the candidate whose whitened data separate most: the largest
   λ₁ / mean(λ) (the excess of the top direction over the heavy-tail inflation that all
   directions share; the first k on ties).
5. QUE score with the matrix exponential: U = exp(α (Σ̃ − I) / (λ₁ − 1)) computed exactly from
   the eigendecomposition of Σ̃ (U = Q diag(e^{α(λ_j − 1)/(λ₁ − 1)}) Qᵀ), and
   τ_i = ỹ_iᵀ U ỹ_i / tr U, α = `alpha` (4, the paper's). If λ₁ ≤ 1, U = I.
6. The cut, without ε (the paper removes the top 1.5 ε): t_i = τ_i^{1/3} (the Wilson–Hilferty
   cube root makes a χ²-like quadratic form near Gaussian) is robustly standardised,
   z = (t − median) / (1.4826 MAD), and SPEC001's mixture gate decides: a 2-component 1-D
   Gaussian mixture must beat one component by BIC, have Ashman's D > `min_separation` (2), a
   minor weight ≤ `max_minor_weight` (1/3), and the minor component must be the upper one. Then
   the rows at or above the smallest z whose minor posterior passes 0.5 are flagged. The class
   with a split and the largest separation is reported as `targeted_class`.

Scores: z / z* in a split class (1.0 = the cut); elsewhere min(max(z, 0) / z_B, 0.999) with
z_B = Φ⁻¹(1 − 0.05/n_c), the Bonferroni bound, graded but never flagged. Classes with fewer than
max(`min_class_rows`, `min_rows_per_dim` · d) rows are skipped.

## Parameters
- `alpha` (default 4): QUE exponent (SPECTRE's value; 0 gives the plain Mahalanobis norm, ∞ the
  top direction only).
- `max_components` (default 32): largest candidate k.
- `max_minor_weight` (default 1/3) and `min_separation` (default 2.0): the mixture gate, as
  SPEC001.
- `min_class_rows` (default 100) and `min_rows_per_dim` (default 2.0): smaller classes are skipped.
- `max_robust_rows` (default 20 000): rows per class the robust mean and covariance are estimated
  from (evenly spaced; every row is scored). In ≤ 32 dimensions 20 000 rows fix them well.
- `max_covariance_rows` (default 262 144; 0 = all): rows per class the PCA is estimated from.

## Known false positives
Natural text holds small compact groups (near-duplicate phrasings, one topic) that the robust
covariance excludes and the QUE score then lifts; the mixture gate rejects them when they do
not form their own upper mode (0 rows flagged on sst2-clean and sms-spam-clean, either
representation, docs/evaluation.md), but a larger such group would be flagged. Rows near a
flagged mode along the QUE directions (natural neighbours of the poison) are flagged with it.

## Known limits
The robust filter is a χ² reweighting, not SPECTRE's ε-driven filter; it is consistent for a
Gaussian core and breaks down when the poison is half the class or more. Like SPEC001, SPEC002
finds nothing where a trigger barely moves the representation.

## References
Jonathan Hayase, Weihao Kong, Raghav Somani, Sewoong Oh. SPECTRE: Defending Against Backdoor
Attacks Using Robust Statistics. ICML 2021. Yihe Dong, Samuel B. Hopkins, Jerry Li. Quantum
entropy scoring for fast robust mean estimation and improved outlier detection. NeurIPS 2019.
Peter J. Rousseeuw, Katrien Van Driessen. A fast algorithm for the minimum covariance
determinant estimator. Technometrics 41, 1999 (reweighting with the χ² cut and consistency
factor). Edwin B. Wilson, Margaret M. Hilferty. The distribution of chi-square. PNAS 17, 1931.
"#,
    version: 2,
};

/// SPEC002: robust spectral filtering (SPECTRE). See [`Meta::docs`] of its [`Detector::meta`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RobustSpectral;

/// Checked parameters of SPEC002 (see the detector's docs for their meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct RobustSpectralParams {
    /// QUE exponent.
    pub alpha: f64,
    /// Largest candidate PCA dimension.
    pub max_components: usize,
    /// Largest share of a class that may be called a poison group.
    pub max_minor_weight: f64,
    /// Ashman's D a split needs.
    pub min_separation: f64,
    /// Classes with fewer rows are skipped.
    pub min_class_rows: usize,
    /// Classes with fewer than this many rows per dimension are skipped.
    pub min_rows_per_dim: f64,
    /// Rows per class the robust estimate uses.
    pub max_robust_rows: usize,
    /// Rows per class the PCA is estimated from; 0 = all.
    pub max_covariance_rows: usize,
}

impl Detector for RobustSpectral {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let p = RobustSpectralParams {
            alpha: r.f64("alpha", 4.0, 0.0, 100.0)?,
            max_components: r.usize("max_components", 32, 1, 256)?,
            max_minor_weight: r.f64("max_minor_weight", 1.0 / 3.0, 0.01, 0.5)?,
            min_separation: r.f64("min_separation", 2.0, 0.0, 100.0)?,
            min_class_rows: r.usize("min_class_rows", 100, 16, usize::MAX)?,
            min_rows_per_dim: r.f64("min_rows_per_dim", 2.0, 0.0, 1e6)?,
            max_robust_rows: r.usize("max_robust_rows", 20_000, 100, usize::MAX)?,
            max_covariance_rows: r.usize("max_covariance_rows", 262_144, 0, usize::MAX)?,
        };
        r.finish()?;
        Ok(Box::new(p))
    }
}

impl Configured for RobustSpectralParams {
    fn needs(&self) -> Needs {
        Needs {
            text: false,
            labels: true,
            embeddings: true,
            responses: false,
        }
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "alpha": self.alpha,
            "max_components": self.max_components,
            "max_minor_weight": self.max_minor_weight,
            "min_separation": self.min_separation,
            "min_class_rows": self.min_class_rows,
            "min_rows_per_dim": self.min_rows_per_dim,
            "max_robust_rows": self.max_robust_rows,
            "max_covariance_rows": self.max_covariance_rows,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let x = data.require_embeddings(CODE)?;
        let labels = data.require_labels(CODE)?;
        let gate = linalg::ClassGate::new(self.min_class_rows, self.min_rows_per_dim, x.ncols());
        let by_class = linalg::rows_by_class(labels, data.n_classes());
        let mut classes = Vec::with_capacity(by_class.len());
        for (c, rows) in by_class.iter().enumerate() {
            let name = data.class_names.get(c).cloned().unwrap_or_default();
            let skip = |why: String| ClassFit {
                name: name.clone(),
                rows: rows.len(),
                model: None,
                skipped: Some(why),
            };
            if let Some(why) = gate.skip_reason(rows.len()) {
                classes.push(skip(why));
                continue;
            }
            let kmax = self.max_components.min(x.ncols());
            let cov_rows = linalg::evenly_spaced(rows, self.max_covariance_rows);
            let numeric = |problem: String| DetectError::Numeric {
                code: CODE,
                problem: format!("class {name}: {problem}"),
            };
            let eig = linalg::centered_eigen(&x, &cov_rows, kmax).map_err(numeric)?;
            // drop directions without variance: they cannot be whitened
            let top = eig.eigenvalues.first().copied().unwrap_or(0.0);
            let kept = eig
                .eigenvalues
                .iter()
                .take_while(|l| **l > 1e-9 * top && **l > 0.0)
                .count();
            if kept == 0 {
                classes.push(skip("all rows are identical".into()));
                continue;
            }
            let projectors: Vec<linalg::Projector> = eig.eigenvectors[..kept]
                .iter()
                .map(|v| linalg::Projector::new(&eig.mean, v))
                .collect();
            let y = project_all(&x, rows, &projectors);
            let model = fit_class(&y, kept, rows.len(), projectors, self).map_err(numeric)?;
            classes.push(ClassFit {
                name,
                rows: rows.len(),
                model: Some(model),
                skipped: None,
            });
        }
        // the targeted class: a split class with the largest separation
        let targeted = classes
            .iter()
            .filter_map(|c| c.model.as_ref().map(|m| (c, m)))
            .filter(|(_, m)| m.cut.is_some())
            .max_by(|a, b| a.1.separation.total_cmp(&b.1.separation))
            .map(|(c, _)| c.name.clone());
        Ok(Box::new(SpectreFit { classes, targeted }))
    }
}

/// Row-major `rows.len() × k` PCA coordinates.
fn project_all(
    x: &ArrayView2<'_, f32>,
    rows: &[usize],
    projectors: &[linalg::Projector],
) -> Vec<f64> {
    let k = projectors.len();
    rows.par_chunks(linalg::CHUNK_ROWS)
        .flat_map_iter(|chunk| {
            let mut out = vec![0f64; chunk.len() * k];
            for (o, &r) in out.chunks_exact_mut(k).zip(chunk) {
                for (v, p) in o.iter_mut().zip(projectors) {
                    *v = p.project(x, r);
                }
            }
            out
        })
        .collect()
}

/// Eigen decomposition of a symmetric `k × k` matrix (row-major): eigenvalues ascending and
/// eigenvectors as columns of a row-major matrix.
fn sym_eigen(a: &[f64], k: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let m = Mat::<f64>::from_fn(k, k, |i, j| 0.5 * (a[i * k + j] + a[j * k + i]));
    let evd = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| format!("eigendecomposition failed: {e:?}"))?;
    linalg::clear_upper_simd();
    let s = evd.S().column_vector();
    let u = evd.U();
    let vals = (0..k).map(|i| s[i]).collect();
    let mut vecs = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..k {
            vecs[i * k + j] = u[(i, j)];
        }
    }
    Ok((vals, vecs))
}

/// Mean and covariance (divisor n) of the rows `sel` of row-major `y` (first `k` of `stride`
/// columns).
fn mean_cov(y: &[f64], stride: usize, k: usize, sel: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let n = sel.len().max(1) as f64;
    let mut mu = vec![0f64; k];
    for &i in sel {
        for (m, v) in mu.iter_mut().zip(&y[i * stride..i * stride + k]) {
            *m += v;
        }
    }
    mu.iter_mut().for_each(|m| *m /= n);
    let mut cov = vec![0f64; k * k];
    for &i in sel {
        let r = &y[i * stride..i * stride + k];
        for a in 0..k {
            let da = r[a] - mu[a];
            for b in 0..=a {
                cov[a * k + b] += da * (r[b] - mu[b]);
            }
        }
    }
    for a in 0..k {
        for b in 0..=a {
            cov[a * k + b] /= n;
            cov[b * k + a] = cov[a * k + b];
        }
    }
    (mu, cov)
}

/// Whitening of a covariance: W = Σ^{-1/2} (row-major), or an error when Σ is singular.
fn inv_sqrt(cov: &[f64], k: usize) -> Result<Vec<f64>, String> {
    let (vals, vecs) = sym_eigen(cov, k)?;
    let top = vals.iter().copied().fold(0.0, f64::max);
    if vals.iter().any(|v| *v <= 1e-12 * top.max(1e-300)) {
        return Err("robust covariance is singular".into());
    }
    let mut w = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..k {
            w[i * k + j] = (0..k)
                .map(|t| vecs[i * k + t] * vecs[j * k + t] / vals[t].sqrt())
                .sum();
        }
    }
    Ok(w)
}

use crate::linalg::chi2_cdf;
#[cfg(test)]
use crate::linalg::normal_cdf;

/// χ²_k quantile by the Wilson–Hilferty cube-root approximation (the CDF is
/// [`crate::linalg::chi2_cdf`]).
fn chi2_quantile(k: f64, p: f64) -> f64 {
    let h = 2.0 / (9.0 * k);
    (k * (1.0 - h + normal_quantile(p) * h.sqrt()).powi(3)).max(0.0)
}

/// Robust mean and covariance of the first `k` columns of `y` (row-major, `stride` columns) on
/// the rows `sel`, and the fraction of them kept.
fn robust_estimate(
    y: &[f64],
    stride: usize,
    k: usize,
    sel: &[usize],
) -> Result<(Vec<f64>, Vec<f64>, f64), String> {
    let kf = k as f64;
    // start: the half nearest the coordinate-wise median, MAD-scaled
    let mut med = vec![0f64; k];
    let mut mad = vec![0f64; k];
    for j in 0..k {
        let col: Vec<f64> = sel.iter().map(|&i| y[i * stride + j]).collect();
        med[j] = linalg::median(&col);
        let dev: Vec<f64> = col.iter().map(|v| (v - med[j]).abs()).collect();
        mad[j] = (1.4826 * linalg::median(&dev)).max(1e-300);
    }
    let d0: Vec<f64> = sel
        .iter()
        .map(|&i| {
            (0..k)
                .map(|j| ((y[i * stride + j] - med[j]) / mad[j]).powi(2))
                .sum()
        })
        .collect();
    let half = linalg::median(&d0);
    let mut keep: Vec<bool> = d0.iter().map(|d| *d <= half).collect();
    let cut = chi2_quantile(kf, 0.975);
    let mut mu = Vec::new();
    let mut cov = Vec::new();
    for _ in 0..30 {
        let kept: Vec<usize> = sel
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(i, _)| *i)
            .collect();
        if kept.len() <= k + 1 {
            return Err("too few rows kept by the robust filter".into());
        }
        let f = kept.len() as f64 / sel.len() as f64;
        let (m, mut c) = mean_cov(y, stride, k, &kept);
        let consistency = f / chi2_cdf(kf + 2.0, chi2_quantile(kf, f)).max(1e-12);
        c.iter_mut().for_each(|v| *v *= consistency);
        let w = inv_sqrt(&c, k)?;
        let new: Vec<bool> = sel
            .par_iter()
            .map(|&i| mahalanobis2(&y[i * stride..i * stride + k], &m, &w, k) <= cut)
            .collect();
        mu = m;
        cov = c;
        if new == keep {
            break;
        }
        keep = new;
    }
    let f = keep.iter().filter(|v| **v).count() as f64 / sel.len() as f64;
    Ok((mu, cov, f))
}

/// ‖W (r − μ)‖².
fn mahalanobis2(r: &[f64], mu: &[f64], w: &[f64], k: usize) -> f64 {
    let mut s = 0.0;
    for a in 0..k {
        let v: f64 = (0..k).map(|b| w[a * k + b] * (r[b] - mu[b])).sum();
        s += v * v;
    }
    s
}

/// One class's QUE model at a fixed k.
#[derive(Debug, Clone)]
struct Que {
    k: usize,
    mu: Vec<f64>,
    /// Σ̂^{-1/2}, row-major.
    w: Vec<f64>,
    /// Eigenvectors of Σ̃ as rows (`k × k`).
    q: Vec<f64>,
    /// e^{α(λ_j − 1)/(λ₁ − 1)} / tr U per eigenvector.
    weight: Vec<f64>,
    top: f64,
    separation: f64,
    kept_fraction: f64,
}

impl Que {
    /// τ = ỹᵀ U ỹ / tr U for a row's first `k` PCA coordinates.
    fn tau(&self, y: &[f64]) -> f64 {
        let k = self.k;
        let yt: Vec<f64> = (0..k)
            .map(|a| {
                (0..k)
                    .map(|b| self.w[a * k + b] * (y[b] - self.mu[b]))
                    .sum()
            })
            .collect();
        (0..k)
            .map(|j| {
                let p: f64 = (0..k).map(|t| self.q[j * k + t] * yt[t]).sum();
                self.weight[j] * p * p
            })
            .sum()
    }
}

fn fit_que(
    y: &[f64],
    stride: usize,
    k: usize,
    n: usize,
    p: &RobustSpectralParams,
) -> Result<Que, String> {
    let all: Vec<usize> = (0..n).collect();
    let sel = linalg::evenly_spaced(&all, p.max_robust_rows);
    let (mu, cov, kept_fraction) = robust_estimate(y, stride, k, &sel)?;
    let w = inv_sqrt(&cov, k)?;
    // whitened covariance (second moment about the robust mean) over all rows
    let mut st = vec![0f64; k * k];
    for i in 0..n {
        let r = &y[i * stride..i * stride + k];
        let yt: Vec<f64> = (0..k)
            .map(|a| (0..k).map(|b| w[a * k + b] * (r[b] - mu[b])).sum())
            .collect();
        for a in 0..k {
            for b in 0..=a {
                st[a * k + b] += yt[a] * yt[b];
            }
        }
    }
    for a in 0..k {
        for b in 0..=a {
            st[a * k + b] /= n as f64;
            st[b * k + a] = st[a * k + b];
        }
    }
    let (vals, vecs) = sym_eigen(&st, k)?;
    let top = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = vals.iter().sum::<f64>() / k as f64;
    let expo: Vec<f64> = vals
        .iter()
        .map(|l| {
            if top > 1.0 {
                (p.alpha * (l - 1.0) / (top - 1.0)).exp()
            } else {
                1.0
            }
        })
        .collect();
    let tr: f64 = expo.iter().sum();
    let mut q = vec![0f64; k * k];
    for j in 0..k {
        for t in 0..k {
            q[j * k + t] = vecs[t * k + j];
        }
    }
    Ok(Que {
        k,
        mu,
        w,
        q,
        weight: expo.iter().map(|e| e / tr).collect(),
        top,
        separation: if mean > 0.0 { top / mean } else { 0.0 },
        kept_fraction,
    })
}

#[derive(Debug, Clone)]
struct ClassModel {
    projectors: Vec<linalg::Projector>,
    que: Que,
    separation: f64,
    by_k: Vec<serde_json::Value>,
    center: f64,
    scale: f64,
    bonferroni: f64,
    cut: Option<f64>,
    diagnostics: serde_json::Value,
    flagged: usize,
}

impl ClassModel {
    fn z(&self, tau: f64) -> f64 {
        (tau.max(0.0).cbrt() - self.center) / self.scale
    }

    fn score(&self, tau: f64) -> (f64, bool) {
        if self.scale <= 0.0 {
            return (0.0, false);
        }
        let z = self.z(tau);
        match self.cut {
            Some(cut) => {
                let s = if cut > 0.0 { z / cut } else { 1.0 + z - cut };
                (s.max(0.0), z >= cut)
            }
            None => ((z.max(0.0) / self.bonferroni).min(0.999), false),
        }
    }
}

fn fit_class(
    y: &[f64],
    kmax: usize,
    n: usize,
    projectors: Vec<linalg::Projector>,
    p: &RobustSpectralParams,
) -> Result<ClassModel, String> {
    let mut best: Option<Que> = None;
    let mut by_k = Vec::new();
    for &k in K_CANDIDATES.iter().filter(|&&k| k <= kmax) {
        match fit_que(y, kmax, k, n, p) {
            Ok(q) => {
                by_k.push(
                    json!({"k": k, "top_eigenvalue": q.top, "separation": q.separation,
                                 "kept_fraction": q.kept_fraction}),
                );
                if best.as_ref().is_none_or(|b| q.separation > b.separation) {
                    best = Some(q);
                }
            }
            Err(e) => by_k.push(json!({"k": k, "error": e})),
        }
    }
    let que = best.ok_or("no candidate dimension gave a robust estimate")?;
    let k = que.k;
    let tau: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| que.tau(&y[i * kmax..i * kmax + k]))
        .collect();
    let t: Vec<f64> = tau.iter().map(|v| v.max(0.0).cbrt()).collect();
    let center = linalg::median(&t);
    let dev: Vec<f64> = t.iter().map(|v| (v - center).abs()).collect();
    let scale = 1.4826 * linalg::median(&dev);
    let mut m = ClassModel {
        projectors: projectors[..k].to_vec(),
        separation: que.separation,
        que,
        by_k,
        center,
        scale,
        bonferroni: normal_quantile_upper(0.05 / n as f64),
        cut: None,
        diagnostics: json!({"decision": "degenerate: robust scale is 0"}),
        flagged: 0,
    };
    if scale <= 0.0 || !scale.is_finite() {
        return Ok(m);
    }
    let z: Vec<f64> = t.iter().map(|v| (v - center) / scale).collect();
    let zs = mixture::quantile_sketch(&z);
    let nf = zs.len() as f64;
    let bic1 = -2.0 * mixture::single_loglik(&zs) + 2.0 * nf.ln();
    let mut reason = "no split: no two-component fit".to_string();
    if let Some(f) = mixture::fit_mixture2(&zs) {
        let j = f.minor();
        let i = 1 - j;
        let bic2 = -2.0 * f.loglik + 5.0 * nf.ln();
        let dd = f.ashman_d();
        let upper = f.m[j] > f.m[i];
        let accepted =
            bic2 < bic1 && dd > p.min_separation && f.w[j] <= p.max_minor_weight && upper;
        reason = if accepted {
            "split: upper minority mode flagged".into()
        } else if bic2 >= bic1 {
            "no split: one component fits better (BIC)".into()
        } else if dd <= p.min_separation {
            format!("no split: modes not separated (D = {dd:.2})")
        } else if f.w[j] > p.max_minor_weight {
            format!(
                "no split: minor weight {:.2} above max_minor_weight",
                f.w[j]
            )
        } else {
            "no split: the minority mode has the lower scores".into()
        };
        m.diagnostics = json!({"weights": f.w, "means": f.m, "sds": f.s,
                               "bic_one": bic1, "bic_two": bic2, "ashman_d": dd});
        if accepted {
            let cut = z
                .iter()
                .copied()
                .filter(|&v| v >= f.m[i] && f.posterior(v, j) > 0.5)
                .fold(f64::INFINITY, f64::min);
            if cut.is_finite() {
                m.cut = Some(cut);
            }
        }
    }
    if let serde_json::Value::Object(o) = &mut m.diagnostics {
        o.insert("decision".into(), json!(reason));
    }
    m.flagged = tau.iter().filter(|&&v| m.score(v).1).count();
    Ok(m)
}

#[derive(Debug, Clone)]
struct ClassFit {
    name: String,
    rows: usize,
    model: Option<ClassModel>,
    skipped: Option<String>,
}

/// Fitted SPEC002.
#[derive(Debug, Clone)]
struct SpectreFit {
    classes: Vec<ClassFit>,
    targeted: Option<String>,
}

impl Fitted for SpectreFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let rows = &batch.rows;
        let x = rows.require_embeddings(CODE)?;
        let labels = rows.require_labels(CODE)?;
        let mut out = Scores::with_capacity(rows.n_rows);
        let mut y = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            let class = self.classes.get(l as usize);
            let Some((c, m)) = class.and_then(|c| c.model.as_ref().map(|m| (c, m))) else {
                out.score.push(0.0);
                out.reason.push(None);
                continue;
            };
            y.clear();
            y.extend(m.projectors.iter().map(|p| p.project(&x, i)));
            let tau = m.que.tau(&y);
            let (s, flagged) = m.score(tau);
            out.score.push(s);
            out.reason.push(flagged.then(|| {
                format!(
                    "{CODE}:class={} k={} z={:.2} cut={:.2}",
                    c.name,
                    m.que.k,
                    m.z(tau),
                    m.cut.unwrap_or(f64::NAN)
                )
            }));
        }
        Ok(out)
    }

    fn summary(&self) -> serde_json::Value {
        let classes: Vec<_> = self
            .classes
            .iter()
            .map(|c| match &c.model {
                None => json!({"class": c.name, "rows": c.rows, "skipped": c.skipped}),
                Some(m) => json!({
                    "class": c.name,
                    "rows": c.rows,
                    "k": m.que.k,
                    "candidates": m.by_k,
                    "whitened_top_eigenvalue": m.que.top,
                    "separation": m.separation,
                    "robust_kept_fraction": m.que.kept_fraction,
                    "split": m.cut.is_some(),
                    "z_threshold": m.cut,
                    "bonferroni_z": m.bonferroni,
                    "mixture": m.diagnostics,
                    "flagged": m.flagged,
                }),
            })
            .collect();
        json!({ "targeted_class": self.targeted, "classes": classes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fit_and_score_embeddings, gaussian, Rng};
    use ndarray::Array2;

    fn run(x: &Array2<f32>, labels: &[u32]) -> (Scores, serde_json::Value) {
        fit_and_score_embeddings(&RobustSpectral, &toml::Table::new(), x, labels)
    }

    #[test]
    fn clean_classes_flag_nothing() {
        let mut rng = Rng(21);
        let x = gaussian(&mut rng, 4000, 24);
        let labels: Vec<u32> = (0..4000).map(|i| (i % 2) as u32).collect();
        let (s, summary) = run(&x, &labels);
        assert_eq!(
            s.reason.iter().filter(|r| r.is_some()).count(),
            0,
            "{summary}"
        );
        assert!(summary["targeted_class"].is_null());
    }

    #[test]
    fn planted_poison_is_found_and_its_class_named() {
        let mut rng = Rng(22);
        let (n, d) = (4000, 24);
        let mut x = gaussian(&mut rng, n, d);
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let dir: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut truth = vec![false; n];
        for i in (1..n).step_by(2) {
            if rng.unit() < 0.1 {
                truth[i] = true;
                for k in 0..d {
                    x[[i, k]] += (4.0 * dir[k] / norm) as f32;
                }
            }
        }
        let (s, summary) = run(&x, &labels);
        let flags: Vec<bool> = s.reason.iter().map(Option::is_some).collect();
        let e = crate::metrics::evaluate(&flags, &s.score, &truth);
        assert!(e.recall > 0.9 && e.precision > 0.9, "{e:?} {summary}");
        assert_eq!(summary["targeted_class"], "1");
        assert_eq!(summary["classes"][0]["flagged"], 0);
        for (f, v) in flags.iter().zip(&s.score) {
            assert_eq!(*f, *v >= 1.0);
        }
    }

    #[test]
    fn matrix_exponential_weights_and_chi2() {
        // whitening of a known covariance
        let w = inv_sqrt(&[4.0, 0.0, 0.0, 1.0], 2).unwrap();
        assert!((w[0] - 0.5).abs() < 1e-12 && (w[3] - 1.0).abs() < 1e-12);
        assert!((chi2_quantile(4.0, 0.975) - 11.143).abs() < 0.05);
        assert!((chi2_cdf(10.0, 18.307) - 0.95).abs() < 0.003);
        assert!((normal_cdf(1.959964) - 0.975).abs() < 1e-6);
    }
}
