//! SPEC001 spectral signatures (Tran, Li, Madry, NeurIPS 2018).

use crate::linalg::{self, CenteredEigen};
use crate::params::ParamReader;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
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
3. each row's projection p_i = v_c · (x_i − μ_c) on the **centred** row; the paper's score is
   p_i²;
4. threshold from the distribution of p itself, never from a poison rate: a robust z-score
   z_i = (p_i − median(p)) / (1.4826 · MAD(p)); a row is flagged when |z_i| ≥ c_n, where
   c_n = Φ⁻¹(1 − α / (2 n_c)) is the Bonferroni-corrected two-sided Gaussian cut-off for n_c tests
   at family-wise level α. Median and MAD ignore up to half the class, so a poison lump cannot
   hide itself by inflating the scale as it inflates the variance.

The reported score is |z_i| / c_n, so 1.0 is the threshold. Classes with fewer than
`min_class_rows` rows are not scored.

## Parameters
- `alpha` (default 0.05): family-wise false-alarm rate per class for a clean, Gaussian class.
- `min_class_rows` (default 30): smaller classes are skipped (reported as such).
- `report_singular_values` (default 5): how many top singular values per class to report.

## Known false positives
Natural sub-populations (e.g. very short texts, another language) that dominate a class's top
direction and sit in a heavy tail of it; near-duplicate clusters. On data where the top direction
is natural variation, few rows pass the Bonferroni cut.

## References
Brandon Tran, Jerry Li, Aleksander Madry. Spectral Signatures in Backdoor Attacks. NeurIPS 2018.
"#,
    version: 1,
};

/// SPEC001: spectral signatures. See [`Meta::docs`] of its [`Detector::meta`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SpectralSignature;

/// Checked parameters of SPEC001.
#[derive(Debug, Clone, PartialEq)]
pub struct SpectralParams {
    /// Family-wise false-alarm rate per class under a Gaussian clean class.
    pub alpha: f64,
    /// Classes with fewer rows are skipped.
    pub min_class_rows: usize,
    /// How many top singular values to report per class.
    pub report_singular_values: usize,
}

impl Detector for SpectralSignature {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let p = SpectralParams {
            alpha: r.f64("alpha", 0.05, 1e-12, 0.5)?,
            min_class_rows: r.usize("min_class_rows", 30, 3, usize::MAX)?,
            report_singular_values: r.usize("report_singular_values", 5, 1, 64)?,
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
        }
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "alpha": self.alpha,
            "min_class_rows": self.min_class_rows,
            "report_singular_values": self.report_singular_values,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let x = data.embeddings.ok_or(DetectError::Missing {
            code: CODE,
            what: "embeddings",
        })?;
        let labels = data.labels.ok_or(DetectError::Missing {
            code: CODE,
            what: "labels",
        })?;
        let by_class = linalg::rows_by_class(labels, data.n_classes());
        let mut classes = Vec::with_capacity(by_class.len());
        for (c, rows) in by_class.iter().enumerate() {
            let name = data.class_names.get(c).cloned().unwrap_or_default();
            if rows.len() < self.min_class_rows {
                classes.push(ClassFit::skipped(name, rows.len()));
                continue;
            }
            let eig = linalg::centered_eigen(&x, rows, self.report_singular_values).map_err(
                |problem| DetectError::Numeric {
                    code: CODE,
                    problem: format!("class {name}: {problem}"),
                },
            )?;
            let projector = linalg::Projector::new(&eig.mean, &eig.eigenvectors[0]);
            let p = projector.project_rows(&x, rows);
            let center = linalg::median(&p);
            let dev: Vec<f64> = p.iter().map(|v| (v - center).abs()).collect();
            let scale = 1.4826 * linalg::median(&dev);
            let cut = normal_quantile_upper(self.alpha / (2.0 * rows.len() as f64));
            let flagged = if scale > 0.0 {
                p.iter()
                    .filter(|v| ((*v - center) / scale).abs() >= cut)
                    .count()
            } else {
                0
            };
            classes.push(ClassFit {
                name,
                rows: rows.len(),
                model: Some(ClassModel {
                    eig,
                    projector,
                    center,
                    scale,
                    cut,
                }),
                flagged,
            });
        }
        Ok(Box::new(SpectralFit { classes }))
    }
}

#[derive(Debug, Clone)]
struct ClassModel {
    eig: CenteredEigen,
    projector: linalg::Projector,
    center: f64,
    scale: f64,
    cut: f64,
}

#[derive(Debug, Clone)]
struct ClassFit {
    name: String,
    rows: usize,
    model: Option<ClassModel>,
    flagged: usize,
}

impl ClassFit {
    fn skipped(name: String, rows: usize) -> Self {
        ClassFit {
            name,
            rows,
            model: None,
            flagged: 0,
        }
    }
}

/// Fitted SPEC001: per-class mean, direction and threshold.
#[derive(Debug, Clone)]
struct SpectralFit {
    classes: Vec<ClassFit>,
}

impl Fitted for SpectralFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let rows = &batch.rows;
        let x = rows.embeddings.ok_or(DetectError::Missing {
            code: CODE,
            what: "embeddings",
        })?;
        let labels = rows.labels.ok_or(DetectError::Missing {
            code: CODE,
            what: "labels",
        })?;
        let mut out = Scores::with_capacity(rows.n_rows);
        for (i, &l) in labels.iter().enumerate() {
            let model = self.classes.get(l as usize).and_then(|c| c.model.as_ref());
            let Some(m) = model.filter(|m| m.scale > 0.0) else {
                out.score.push(0.0);
                out.reason.push(None);
                continue;
            };
            let p = m.projector.project(&x, i);
            let z = ((p - m.center) / m.scale).abs();
            let s = z / m.cut;
            out.score.push(s);
            out.reason.push(
                (s >= 1.0)
                    .then(|| format!("{CODE}:class={} z={z:.1}", self.classes[l as usize].name)),
            );
        }
        Ok(out)
    }

    fn summary(&self) -> serde_json::Value {
        let classes: Vec<_> = self
            .classes
            .iter()
            .map(|c| match &c.model {
                None => json!({"class": c.name, "rows": c.rows, "skipped": "fewer rows than min_class_rows"}),
                Some(m) => json!({
                    "class": c.name,
                    "rows": c.rows,
                    "top_singular_values": m.eig.eigenvalues.iter()
                        .map(|l| (l * (c.rows as f64 - 1.0)).sqrt()).collect::<Vec<_>>(),
                    "projection_median": m.center,
                    "projection_robust_scale": m.scale,
                    "z_threshold": m.cut,
                    "flagged": c.flagged,
                }),
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
