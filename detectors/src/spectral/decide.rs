//! How one class's projections become a decision: robust standardisation, the two-component
//! mixture and its split rule, the cut, the scores (steps 4 and 5 of SPEC001's method).

use super::SpectralParams;
use crate::linalg;
use crate::mixture;
use serde_json::json;

/// How a class's projections are turned into scores and flags.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// Median of the projections.
    pub(crate) center: f64,
    /// Robust scale (1.4826 · MAD); 0 means the class is degenerate and is not scored.
    pub(crate) scale: f64,
    /// +1 or −1: z = sign · (p − center) / scale.
    pub(crate) sign: f64,
    /// Bonferroni two-sided cut Φ⁻¹(1 − α/(2n)) on |z|.
    pub(crate) bonferroni: f64,
    /// The flagging cut on z, when the class splits.
    pub(crate) cut: Option<f64>,
    /// Flag |z| ≥ `bonferroni` in a class that does not split.
    pub(crate) tail_fallback: bool,
    /// Whether the class split into a bulk and a minority mode.
    pub(crate) split: bool,
    /// Rows of the class at or beyond the cut.
    pub(crate) flagged: usize,
    /// Mixture diagnostics for the report.
    pub(crate) diagnostics: serde_json::Value,
    /// Histogram of the class's z values (final sign), for the report.
    pub(crate) histogram: Option<ZHistogram>,
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

    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({ "lo": self.lo, "hi": self.hi, "counts": self.counts })
    }
}

impl Decision {
    pub(crate) fn z(&self, p: f64) -> f64 {
        self.sign * (p - self.center) / self.scale
    }

    /// Normalised score (1.0 = threshold) and whether the row is flagged.
    pub(crate) fn score(&self, p: f64) -> (f64, bool) {
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

/// The threshold rule of the docs, step 4 and 5, on one class's projections, sorted ascending
/// (the multiset round 3 of [`super::rounds`] keeps).
pub(crate) fn decide(p: &[f64], params: &SpectralParams) -> Decision {
    debug_assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "projections come sorted"
    );
    let n = p.len();
    let center = linalg::sorted_quantile(p, 0.5);
    let dev: Vec<f64> = p.iter().map(|v| (v - center).abs()).collect();
    let scale = 1.4826 * linalg::median(&dev);
    let bonferroni = normal_quantile_upper(params.alpha / (2.0 * n as f64));
    let heavier_up =
        linalg::sorted_quantile(p, 0.9) - center >= center - linalg::sorted_quantile(p, 0.1);
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
