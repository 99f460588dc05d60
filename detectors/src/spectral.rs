//! SPEC001 spectral signatures (Tran, Li, Madry, NeurIPS 2018).

use crate::linalg::{self, CenteredEigen};
use crate::mixture;
use crate::params::ParamReader;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use rayon::prelude::*;
use serde_json::json;

const CODE: &str = "SPEC001";

static META: Meta = Meta {
    code: CODE,
    name: "spectral-signature",
    summary:
        "Rows far out along the top singular direction of their class's centred representations",
    docs: r#"# SPEC001 spectral-signature

## What it detects
Poisoned rows that share a feature the rest of their class lacks (a backdoor trigger, a common
template). In the representation space (embeddings or a model's activations) such rows pull the
class's covariance towards one direction, and sit far out along it. Works on any representation
given with `--embeddings` or `--embedding-column`.

## Method
Per class c with rows X_c (n_c × d):
1. centre: μ_c = mean of X_c; covariance Σ_c = (X_c − μ_c)ᵀ(X_c − μ_c) / (n_c − 1), from sums that
   merge across chunks (one pass of matrix products over the data);
2. v_c = top eigenvector of Σ_c, i.e. the top right-singular vector of the centred matrix;
3. each row's projection p_i = v_c · (x_i − μ_c), on the **centred** row (the paper's outlier
   score is p_i²);
4. robust standardisation: z_i = ±(p_i − median(p)) / (1.4826 · MAD(p)), signed so that the
   heavier tail (q90 − median against median − q10) is positive;
5. the threshold comes from the shape of z, never from a poison rate. A 2-component 1-D
   Gaussian mixture is fitted to z by EM (starts at the 20/50/80 % quantile splits, at most 300 iterations, the best
   log-likelihood wins; above 8192 rows it is fitted to 8192 evenly spaced order statistics of
   z, which keeps the shape and bounds the cost). The class is judged to *split* only when all three hold:
   - BIC(2 components, 5 parameters) < BIC(1 component, 2 parameters): two groups explain the
     projections better than one, after paying for the extra parameters;
   - Ashman's D = √2·|m₁ − m₂| / √(s₁² + s₂²) > `min_separation` (2): the groups are separate
     modes, not a heavy tail modelled by a second wide component;
   - the minor weight ≤ `max_minor_weight` (1/3): the suspect group is a minority, the premise of
     spectral signatures (natural classes often split roughly evenly, poison does not).
   In a split class, z is re-signed towards the minor component and the rows at or beyond the
   point where its posterior passes 0.5 (the smallest such z among the rows) are flagged. A class
   that does not split flags nothing (optionally, `tail_fallback`, the rows beyond the
   Bonferroni cut |z| ≥ Φ⁻¹(1 − α/(2n_c)) of the two-sided Gaussian tail).

Scores: in a split class z / z* (z* the cut), so 1.0 is the threshold; in a class that does not
split, min(|z| / Φ⁻¹(1 − α/(2n_c)), 0.999): the paper's two-sided score p², graded but unflagged. Classes with fewer than
max(`min_class_rows`, `min_rows_per_dim` · d) rows are skipped: with fewer rows than dimensions
the top direction of a clean class is noise and small samples split spuriously.

## Parameters
- `max_minor_weight` (default 1/3): largest share of a class that may be called a poison group.
- `min_separation` (default 2.0): Ashman's D a split needs (2 is the usual bound for clearly
  separated modes).
- `alpha` (default 0.05): family-wise level of the Bonferroni tail, used for the graded score and
  by `tail_fallback`.
- `tail_fallback` (default false): in classes that do not split, also flag the Bonferroni tail.
- `min_class_rows` (default 100) and `min_rows_per_dim` (default 2.0): smaller classes are skipped.
- `report_singular_values` (default 5): top singular values reported per class.
- `max_covariance_rows` (default 262 144; 0 = all): a class larger than this estimates its mean
  and covariance from this many evenly spaced rows (every row is still projected and judged).
  The top direction of a d × d covariance from a quarter of a million rows is already exact to
  well below the spread of the projections, and the Gram product is the one cost that grows with
  n·d², so this caps it; a poison share is the same in an evenly spaced subsample.

## Known false positives
A natural minority sub-population (another language, a topic, boilerplate rows) that dominates a
class's top direction and forms its own mode holding under a third of the class. Such groups are
worth a look anyway: the report lists per class the mixture, D, weights, the decision and a
histogram of z (`z_histogram`: 40 equal-width bins over the range of z clipped to -10…20), which
report.html draws with the cut and the Bonferroni z marked.

## Known limits
Only the top direction is used: poison that does not dominate it (weak triggers in a frozen
sentence encoder, e.g. single rare words) is not found; measured per set in docs/evaluation.md.

## References
Brandon Tran, Jerry Li, Aleksander Madry. Spectral Signatures in Backdoor Attacks. NeurIPS 2018.
Keith M. Ashman, Christina M. Bird, Stephen E. Zepf. Detecting bimodality in astronomical
datasets. AJ 108, 1994 (the D statistic). Gideon Schwarz. Estimating the dimension of a model.
Annals of Statistics 6, 1978 (BIC).
"#,
    version: 1,
};

/// SPEC001: spectral signatures. See [`Meta::docs`] of its [`Detector::meta`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SpectralSignature;

/// Checked parameters of SPEC001 (see the detector's docs for their meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralParams {
    /// Largest share of a class that may be called a poison group.
    pub max_minor_weight: f64,
    /// Ashman's D a split needs.
    pub min_separation: f64,
    /// Family-wise level of the Bonferroni tail.
    pub alpha: f64,
    /// Also flag the Bonferroni tail in classes that do not split.
    pub tail_fallback: bool,
    /// Classes with fewer rows are skipped.
    pub min_class_rows: usize,
    /// Classes with fewer than this many rows per dimension are skipped.
    pub min_rows_per_dim: f64,
    /// How many top singular values to report per class.
    pub report_singular_values: usize,
    /// Rows per class the mean and covariance are estimated from (evenly spaced); 0 = all.
    pub max_covariance_rows: usize,
}

impl Detector for SpectralSignature {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let p = SpectralParams {
            max_minor_weight: r.f64("max_minor_weight", 1.0 / 3.0, 0.01, 0.5)?,
            min_separation: r.f64("min_separation", 2.0, 0.0, 100.0)?,
            alpha: r.f64("alpha", 0.05, 1e-12, 0.5)?,
            tail_fallback: r.bool("tail_fallback", false)?,
            min_class_rows: r.usize("min_class_rows", 100, 8, usize::MAX)?,
            min_rows_per_dim: r.f64("min_rows_per_dim", 2.0, 0.0, 1e6)?,
            report_singular_values: r.usize("report_singular_values", 5, 1, 64)?,
            max_covariance_rows: r.usize("max_covariance_rows", 262_144, 0, usize::MAX)?,
        };
        r.finish()?;
        Ok(Box::new(p))
    }
}

impl Configured for SpectralParams {
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
            "max_minor_weight": self.max_minor_weight,
            "min_separation": self.min_separation,
            "alpha": self.alpha,
            "tail_fallback": self.tail_fallback,
            "min_class_rows": self.min_class_rows,
            "min_rows_per_dim": self.min_rows_per_dim,
            "report_singular_values": self.report_singular_values,
            "max_covariance_rows": self.max_covariance_rows,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let x = data.require_embeddings(CODE)?;
        let labels = data.require_labels(CODE)?;
        let gate = linalg::ClassGate::new(self.min_class_rows, self.min_rows_per_dim, x.ncols());
        let by_class = linalg::rows_by_class(labels, data.n_classes());
        // classes are independent: fitted in parallel, taken in class order, errors too
        let fit_one = |(c, rows): (usize, &Vec<usize>)| -> Result<ClassFit, DetectError> {
            let name = data.class_names.get(c).cloned().unwrap_or_default();
            if let Some(why) = gate.skip_reason(rows.len()) {
                return Ok(ClassFit {
                    name,
                    rows: rows.len(),
                    model: None,
                    skipped: Some(why),
                });
            }
            let cov_rows = linalg::evenly_spaced(rows, self.max_covariance_rows);
            let eig = linalg::centered_eigen(&x, &cov_rows, self.report_singular_values).map_err(
                |problem| DetectError::Numeric {
                    code: CODE,
                    problem: format!("class {name}: {problem}"),
                },
            )?;
            let projector = linalg::Projector::new(&eig.mean, &eig.eigenvectors[0]);
            let p = projector.project_rows(&x, rows);
            let decision = decide(&p, self);
            Ok(ClassFit {
                name,
                rows: rows.len(),
                model: Some(ClassModel {
                    eig,
                    projector,
                    decision,
                }),
                skipped: None,
            })
        };
        let fits: Vec<Result<ClassFit, DetectError>> =
            by_class.par_iter().enumerate().map(fit_one).collect();
        let mut classes = Vec::with_capacity(fits.len());
        for f in fits {
            classes.push(f?);
        }
        Ok(Box::new(SpectralFit { classes }))
    }
}

/// How a class's projections are turned into scores and flags.
#[derive(Debug, Clone)]
struct Decision {
    /// Median of the projections.
    center: f64,
    /// Robust scale (1.4826 · MAD); 0 means the class is degenerate and is not scored.
    scale: f64,
    /// +1 or −1: z = sign · (p − center) / scale.
    sign: f64,
    /// Bonferroni two-sided cut Φ⁻¹(1 − α/(2n)) on |z|.
    bonferroni: f64,
    /// The flagging cut on z, when the class splits.
    cut: Option<f64>,
    /// Flag |z| ≥ `bonferroni` in a class that does not split.
    tail_fallback: bool,
    /// Whether the class split into a bulk and a minority mode.
    split: bool,
    /// Rows of the class at or beyond the cut.
    flagged: usize,
    /// Mixture diagnostics for the report.
    diagnostics: serde_json::Value,
    /// Histogram of the class's z values (final sign), for the report.
    histogram: Option<ZHistogram>,
}

/// Bins of the per-class z histogram in the report.
pub const Z_HISTOGRAM_BINS: usize = 40;
/// z values are clipped to this range before binning, so one extreme row cannot flatten the rest.
pub const Z_HISTOGRAM_CLIP: (f64, f64) = (-10.0, 20.0);

/// Equal-width histogram of z clipped to [`Z_HISTOGRAM_CLIP`], over [min, max] of the clipped
/// values, in [`Z_HISTOGRAM_BINS`] bins (the last bin is closed). Deterministic: it depends
/// only on the values, not on their order.
#[derive(Debug, Clone, PartialEq)]
pub struct ZHistogram {
    /// Lower edge of the first bin.
    pub lo: f64,
    /// Upper edge of the last bin.
    pub hi: f64,
    /// Rows per bin.
    pub counts: Vec<u64>,
}

impl ZHistogram {
    /// Histogram of the finite values of `z` (None when there are none).
    pub fn of(z: &[f64]) -> Option<ZHistogram> {
        let (cl, ch) = Z_HISTOGRAM_CLIP;
        let clipped: Vec<f64> = z
            .iter()
            .filter(|v| v.is_finite())
            .map(|v| v.clamp(cl, ch))
            .collect();
        let lo = clipped.iter().copied().fold(f64::INFINITY, f64::min);
        let mut hi = clipped.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() || !hi.is_finite() {
            return None;
        }
        if hi <= lo {
            hi = lo + 1.0;
        }
        let mut counts = vec![0u64; Z_HISTOGRAM_BINS];
        let width = (hi - lo) / Z_HISTOGRAM_BINS as f64;
        for v in clipped {
            let b = (((v - lo) / width).floor() as usize).min(Z_HISTOGRAM_BINS - 1);
            counts[b] += 1;
        }
        Some(ZHistogram { lo, hi, counts })
    }

    fn to_json(&self) -> serde_json::Value {
        json!({ "lo": self.lo, "hi": self.hi, "counts": self.counts })
    }
}

impl Decision {
    fn z(&self, p: f64) -> f64 {
        self.sign * (p - self.center) / self.scale
    }

    /// Normalised score (1.0 = threshold) and whether the row is flagged.
    fn score(&self, p: f64) -> (f64, bool) {
        if self.scale <= 0.0 {
            return (0.0, false);
        }
        let z = self.z(p);
        match self.cut {
            Some(cut) => {
                let s = if cut > 0.0 { z / cut } else { 1.0 + z - cut };
                (s.max(0.0), z >= cut)
            }
            None if self.tail_fallback => (z.abs() / self.bonferroni, z.abs() >= self.bonferroni),
            None => ((z.abs() / self.bonferroni).min(0.999), false),
        }
    }
}

/// The threshold rule of the docs, step 4 and 5, on one class's projections.
fn decide(p: &[f64], params: &SpectralParams) -> Decision {
    let n = p.len();
    let center = linalg::median(p);
    let dev: Vec<f64> = p.iter().map(|v| (v - center).abs()).collect();
    let scale = 1.4826 * linalg::median(&dev);
    let bonferroni = normal_quantile_upper(params.alpha / (2.0 * n as f64));
    let heavier_up = linalg::quantile(p, 0.9) - center >= center - linalg::quantile(p, 0.1);
    let mut d = Decision {
        center,
        scale,
        sign: if heavier_up { 1.0 } else { -1.0 },
        bonferroni,
        cut: None,
        tail_fallback: false,
        split: false,
        flagged: 0,
        diagnostics: json!({"decision": "degenerate: robust scale is 0"}),
        histogram: None,
    };
    if scale <= 0.0 || !scale.is_finite() {
        return d;
    }
    let z: Vec<f64> = p.iter().map(|&v| d.z(v)).collect();
    // the mixture is fitted on at most 8192 values (evenly spaced order statistics beyond)
    let zs = mixture::quantile_sketch(&z);
    let nf = zs.len() as f64;
    let bic1 = -2.0 * mixture::single_loglik(&zs) + 2.0 * nf.ln();
    let mix = mixture::fit_mixture2(&zs);
    let mut reason = "no two-component fit".to_string();
    if let Some(f) = &mix {
        let j = f.minor();
        let i = 1 - j;
        let bic2 = -2.0 * f.loglik + 5.0 * nf.ln();
        let dd = f.ashman_d();
        let accepted =
            bic2 < bic1 && dd > params.min_separation && f.w[j] <= params.max_minor_weight;
        reason = if accepted {
            "split: minority mode flagged".into()
        } else if bic2 >= bic1 {
            "no split: one component fits better (BIC)".into()
        } else if dd <= params.min_separation {
            format!("no split: modes not separated (D = {dd:.2})")
        } else {
            format!(
                "no split: minor weight {:.2} above max_minor_weight",
                f.w[j]
            )
        };
        d.diagnostics = json!({
            "weights": f.w, "means": f.m, "sds": f.s,
            "bic_one": bic1, "bic_two": bic2, "ashman_d": dd,
        });
        if accepted {
            // re-sign towards the minor component
            let towards = if f.m[j] >= f.m[i] { 1.0 } else { -1.0 };
            d.sign *= towards;
            let lo = towards * f.m[i];
            let cut = z
                .iter()
                .map(|&v| towards * v)
                .filter(|&v| v >= lo && f.posterior(towards * v, j) > 0.5)
                .fold(f64::INFINITY, f64::min);
            if cut.is_finite() {
                d.cut = Some(cut);
                d.split = true;
            }
        }
    }
    d.tail_fallback = !d.split && params.tail_fallback;
    // z with its final sign, so the histogram shares its axis with the cut
    let z_final: Vec<f64> = p.iter().map(|&v| d.z(v)).collect();
    d.histogram = ZHistogram::of(&z_final);
    d.flagged = p.iter().filter(|&&v| d.score(v).1).count();
    if let serde_json::Value::Object(m) = &mut d.diagnostics {
        m.insert("decision".into(), json!(reason));
    }
    d
}

#[derive(Debug, Clone)]
struct ClassModel {
    eig: CenteredEigen,
    projector: linalg::Projector,
    decision: Decision,
}

#[derive(Debug, Clone)]
struct ClassFit {
    name: String,
    rows: usize,
    model: Option<ClassModel>,
    skipped: Option<String>,
}

/// Fitted SPEC001: per-class mean, direction and threshold.
#[derive(Debug, Clone)]
struct SpectralFit {
    classes: Vec<ClassFit>,
}

impl Fitted for SpectralFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let rows = &batch.rows;
        let x = rows.require_embeddings(CODE)?;
        let labels = rows.require_labels(CODE)?;
        let mut out = Scores::with_capacity(rows.n_rows);
        for (i, &l) in labels.iter().enumerate() {
            let class = self.classes.get(l as usize);
            let Some((c, m)) = class.and_then(|c| c.model.as_ref().map(|m| (c, m))) else {
                out.score.push(0.0);
                out.reason.push(None);
                continue;
            };
            let p = m.projector.project(&x, i);
            let (s, flagged) = m.decision.score(p);
            out.score.push(s);
            out.reason.push(flagged.then(|| {
                format!(
                    "{CODE}:class={} z={:.2} cut={:.2}",
                    c.name,
                    m.decision.z(p),
                    m.decision.cut.unwrap_or(f64::NAN)
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
                None => json!({
                    "class": c.name,
                    "rows": c.rows,
                    "skipped": c.skipped,
                }),
                Some(m) => {
                    let d = &m.decision;
                    json!({
                        "class": c.name,
                        "rows": c.rows,
                        "top_singular_values": m.eig.eigenvalues.iter()
                            .map(|l| (l * (c.rows as f64 - 1.0)).sqrt()).collect::<Vec<_>>(),
                        "projection_median": d.center,
                        "projection_robust_scale": d.scale,
                        "split": d.split,
                        "z_threshold": d.cut,
                        "bonferroni_z": d.bonferroni,
                        "mixture": d.diagnostics,
                        "flagged": d.flagged,
                        "z_histogram": d.histogram.as_ref().map(ZHistogram::to_json),
                    })
                }
            })
            .collect();
        json!({ "classes": classes })
    }
}

/// Upper-tail standard normal quantile: z with P(Z ≥ z) = p, for p in (0, 0.5].
/// Acklam's rational approximation (relative error below 1.2e-9).
pub fn normal_quantile_upper(p: f64) -> f64 {
    -normal_quantile(p)
}

/// Standard normal quantile Φ⁻¹(p) for p in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let plow = 0.02425;
    if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fit_and_score_embeddings, gaussian, Rng};
    use ndarray::Array2;

    fn run(x: &Array2<f32>, labels: &[u32]) -> (Scores, serde_json::Value) {
        fit_and_score_embeddings(&SpectralSignature, &toml::Table::new(), x, labels)
    }

    #[test]
    fn clean_classes_flag_nothing() {
        let mut rng = Rng(1);
        let x = gaussian(&mut rng, 4000, 32);
        let labels: Vec<u32> = (0..4000).map(|i| (i % 2) as u32).collect();
        let (s, summary) = run(&x, &labels);
        assert_eq!(
            s.reason.iter().filter(|r| r.is_some()).count(),
            0,
            "{summary}"
        );
    }

    #[test]
    fn planted_shifted_cluster_is_found() {
        let mut rng = Rng(2);
        let (n, d) = (4000, 32);
        let mut x = gaussian(&mut rng, n, d);
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        // 8 % of class 1 carries a trigger: a fixed offset along a random unit direction
        let dir: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut truth = vec![false; n];
        for i in (1..n).step_by(2) {
            if rng.unit() < 0.08 {
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
        assert!(e.auroc.unwrap() > 0.97);
        // flags match the reported per-class count, and the clean class flags nothing
        assert_eq!(summary["classes"][0]["flagged"], 0);
        assert_eq!(summary["classes"][1]["flagged"], e.flagged);
        assert!((0..n).step_by(2).all(|i| !flags[i]));
    }

    #[test]
    fn small_classes_are_skipped() {
        let mut rng = Rng(3);
        let x = gaussian(&mut rng, 150, 100);
        let labels = vec![0u32; 150];
        let (s, summary) = run(&x, &labels);
        assert!(s.score.iter().all(|v| *v == 0.0));
        assert!(summary["classes"][0]["skipped"].is_string());
    }

    #[test]
    fn z_histogram_bins_clip_and_sum() {
        let z = [-50.0, 0.0, 0.5, 1.0, 30.0, f64::NAN];
        let h = ZHistogram::of(&z).unwrap();
        assert_eq!((h.lo, h.hi), (-10.0, 20.0));
        assert_eq!(h.counts.len(), Z_HISTOGRAM_BINS);
        assert_eq!(h.counts.iter().sum::<u64>(), 5);
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[Z_HISTOGRAM_BINS - 1], 1);
        // order does not matter
        let mut r = z;
        r.reverse();
        assert_eq!(ZHistogram::of(&r), Some(h));
        let flat = ZHistogram::of(&[2.0, 2.0]).unwrap();
        assert_eq!((flat.lo, flat.hi, flat.counts[0]), (2.0, 3.0, 2));
        assert!(ZHistogram::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn summary_has_a_z_histogram_per_scored_class() {
        let mut rng = Rng(4);
        let x = gaussian(&mut rng, 1000, 8);
        let labels: Vec<u32> = (0..1000).map(|i| (i % 2) as u32).collect();
        let (_, summary) = run(&x, &labels);
        for c in summary["classes"].as_array().unwrap() {
            let h = &c["z_histogram"];
            let total: u64 = h["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum();
            assert_eq!(total, c["rows"].as_u64().unwrap());
            assert!(h["lo"].as_f64().unwrap() < h["hi"].as_f64().unwrap());
        }
    }

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile_upper(0.025) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile_upper(1e-6) - 4.753424).abs() < 1e-5);
        assert!(normal_quantile(0.5).abs() < 1e-12);
    }
}
