//! SPEC001 spectral signatures (Tran, Li, Madry, NeurIPS 2018).

mod decide;
pub mod rounds;

use crate::class_pca::over_parts;
use crate::linalg::{self, CenteredEigen};
use crate::params::ParamReader;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use decide::Decision;
pub use decide::{
    normal_quantile, normal_quantile_upper, ZHistogram, Z_HISTOGRAM_BINS, Z_HISTOGRAM_CLIP,
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
1. centre: μ_c = mean of X_c; covariance Σ_c = (X_c − μ_c)ᵀ(X_c − μ_c) / (n_c − 1), from exact
   integer sums of the rows and their cross products (each value rounded once to a grid of
   2^-20, then added as integers: `state::Moments`), so that any split of the rows into batches
   or machines, merged in any order, gives the same Σ_c to the bit (see "Rounds" below);
2. v_c = top eigenvector of Σ_c, i.e. the top right-singular vector of the centred matrix (by
   Lanczos iteration, `crate::lanczos`, with the next four eigenvalues for the report);
3. each row's projection p_i = v_c · (x_i − μ_c), on the **centred** row (the paper's outlier
   score is p_i²);
4. robust standardisation: z_i = ±(p_i − median(p)) / (1.4826 · MAD(p)), signed so that the
   heavier tail (q90 − median against median − q10) is positive;
5. the threshold comes from the shape of z, never from a poison rate. A 2-component 1-D
   Gaussian mixture is fitted to z by EM (starts at the 20/50/80 % quantile splits, at most 300 iterations; the E step's
   exponential is a polynomial in basic operations, eight values at a time; the best
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

Rounds (`spectral::rounds`): (1) rows per class; (2) per class the moments above, finalised
into μ_c and v_c; (3) per class the sorted multiset of projections p_i, from which steps 4-5
decide; (4) each row's score from its own p_i. Every partial serialises behind a header (code,
version, parameter digest) and merges exactly, so a partitioned run gives the single-process
state bytes and verdicts (tested for 1, 2, 7 and 16 random partitions in shuffled orders).

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
  and covariance from about this many rows, each kept when a hash of its row number falls below
  max/n_c (decided by the row alone, so the same in any partitioning; every row is still
  projected and judged).
  The top direction of a d × d covariance from a quarter of a million rows is already exact to
  well below the spread of the projections, and the Gram product is the one cost that grows with
  n·d², so this caps it; a poison share is the same in a random subsample.

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
    version: 3,
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
    /// Rows per class the mean and covariance are estimated from (chosen by a hash of the row
    /// number above it); 0 = all.
    pub max_covariance_rows: usize,
}

impl Detector for SpectralSignature {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(SpectralParams::from_table(params)?))
    }
}

impl SpectralParams {
    /// The parameters a `[detectors.SPEC001]` table sets, defaults for the rest; unknown keys and
    /// values out of range are refused.
    pub fn from_table(params: &toml::Table) -> Result<Self, ParamError> {
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
        Ok(p)
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
        let n = labels.len();
        let r = rounds::Rounds::new(self, data.n_classes(), x.ncols());
        // the rounds over parts of the rows, in parallel; their merges are exact, so the
        // result is that of one pass whatever the chunking and the thread count
        let state = |e: crate::state::StateError| DetectError::Numeric {
            code: CODE,
            problem: format!("state: {e}"),
        };
        let (counts, moments) = r.pca().scan(&x, labels).map_err(state)?;
        let rows = |s: usize, e: usize| x.slice(ndarray::s![s..e, ..]);
        let dirs = r.directions(&counts, &moments)?;
        let projections = over_parts(
            n,
            |s, e| Ok(r.projections(&dirs, &rows(s, e), &labels[s..e])),
            || r.empty_projections(),
            |a, b| a.merge(&b).map_err(state),
        )?;
        Ok(r.finish(data.class_names, &counts, dirs, &projections))
    }
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
