//! A two-component one-dimensional Gaussian mixture fitted by EM, with the statistics that
//! decide whether a sample really splits in two (BIC, Ashman's D, the minor weight).

/// A fitted 1-D Gaussian mixture with two components.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mixture2 {
    /// Weights, means and standard deviations of the two components.
    pub w: [f64; 2],
    /// Means.
    pub m: [f64; 2],
    /// Standard deviations.
    pub s: [f64; 2],
    /// Log-likelihood of the data under the mixture.
    pub loglik: f64,
}

use rayon::prelude::*;

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Values per product in the E step's log-likelihood sum (2^512 is far below f64's range).
const LN_BLOCK: usize = 512;

fn log_normal(x: f64, m: f64, s: f64) -> f64 {
    let z = (x - m) / s;
    -0.5 * z * z - s.ln() - LN_SQRT_2PI
}

/// Log-likelihood of `x` under one Gaussian with the sample mean and (ML) variance.
pub(crate) fn single_loglik(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / n;
    let s = v.sqrt().max(1e-300);
    x.iter().map(|&a| log_normal(a, m, s)).sum()
}

impl Mixture2 {
    /// Posterior probability that `x` belongs to component `k`.
    pub(crate) fn posterior(&self, x: f64, k: usize) -> f64 {
        let a = self.w[0].ln() + log_normal(x, self.m[0], self.s[0]);
        let b = self.w[1].ln() + log_normal(x, self.m[1], self.s[1]);
        let (own, other) = if k == 0 { (a, b) } else { (b, a) };
        1.0 / (1.0 + (other - own).exp())
    }

    /// Ashman's D: separation of the two modes in units of their pooled spread.
    pub(crate) fn ashman_d(&self) -> f64 {
        std::f64::consts::SQRT_2 * (self.m[0] - self.m[1]).abs()
            / (self.s[0] * self.s[0] + self.s[1] * self.s[1]).sqrt()
    }

    /// Index of the smaller component (the first on a tie).
    pub(crate) fn minor(&self) -> usize {
        usize::from(self.w[1] < self.w[0])
    }
}

fn em_from_split(x: &[f64], cut: f64, floor: f64) -> Option<Mixture2> {
    let n = x.len() as f64;
    // hard initial assignment
    let mut mix = {
        let (lo, hi): (Vec<f64>, Vec<f64>) = x.iter().partition(|&&v| v <= cut);
        if lo.len() < 2 || hi.len() < 2 {
            return None;
        }
        let stats = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let s = (v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / v.len() as f64)
                .sqrt()
                .max(floor);
            (m, s)
        };
        let (m0, s0) = stats(&lo);
        let (m1, s1) = stats(&hi);
        Mixture2 {
            w: [lo.len() as f64 / n, hi.len() as f64 / n],
            m: [m0, m1],
            s: [s0, s1],
            loglik: f64::NEG_INFINITY,
        }
    };
    let mut prev = f64::NEG_INFINITY;
    for _ in 0..300 {
        // E step. With a_k = ln w_k + ln N(v; m_k, s_k) and δ = a_1 − a_0, the responsibility of
        // component 1 is 1 / (1 + e^−δ) and ln(e^a_0 + e^a_1) = max(a_0, a_1) + ln(1 + e^−|δ|):
        // one exp and one ln_1p per value.
        let c = [
            mix.w[0].ln() - mix.s[0].ln() - LN_SQRT_2PI,
            mix.w[1].ln() - mix.s[1].ln() - LN_SQRT_2PI,
        ];
        let inv = [1.0 / mix.s[0], 1.0 / mix.s[1]];
        let (mut r_sum, mut r_x, mut r_xx) = ([0f64; 2], [0f64; 2], [0f64; 2]);
        let mut ll = 0.0;
        // Σ ln(1 + e) is taken as ln Π(1 + e) over blocks of LN_BLOCK values: each factor is
        // in [1, 2], so a block's product stays below 2^LN_BLOCK, far from overflow, and one
        // `ln` replaces LN_BLOCK calls of `ln_1p` (the costliest step of the fit otherwise).
        let (mut prod, mut in_block) = (1.0f64, 0usize);
        for &v in x {
            let z0 = (v - mix.m[0]) * inv[0];
            let z1 = (v - mix.m[1]) * inv[1];
            let a = c[0] - 0.5 * z0 * z0;
            let b = c[1] - 0.5 * z1 * z1;
            let e = (-(b - a).abs()).exp();
            ll += a.max(b);
            prod *= 1.0 + e;
            in_block += 1;
            if in_block == LN_BLOCK {
                ll += prod.ln();
                (prod, in_block) = (1.0, 0);
            }
            let r1 = if b >= a {
                1.0 / (1.0 + e)
            } else {
                e / (1.0 + e)
            };
            let r = [1.0 - r1, r1];
            for k in 0..2 {
                r_sum[k] += r[k];
                r_x[k] += r[k] * v;
                r_xx[k] += r[k] * v * v;
            }
        }
        ll += prod.ln();
        mix.loglik = ll;
        if (ll - prev).abs() <= 1e-7 * ll.abs().max(1.0) {
            break;
        }
        prev = ll;
        // M step
        for k in 0..2 {
            if r_sum[k] < 1e-9 {
                return None; // a component died: no split
            }
            mix.w[k] = r_sum[k] / n;
            mix.m[k] = r_x[k] / r_sum[k];
            let var = r_xx[k] / r_sum[k] - mix.m[k] * mix.m[k];
            mix.s[k] = var.max(0.0).sqrt().max(floor);
        }
    }
    mix.loglik.is_finite().then_some(mix)
}

/// At most this many values enter the mixture fit; larger samples are summarised by evenly
/// spaced order statistics (a deterministic quantile sketch that keeps the distribution's shape).
pub(crate) const MAX_FIT_VALUES: usize = 8192;

/// `x` itself when short enough, else [`MAX_FIT_VALUES`] evenly spaced order statistics of it.
pub(crate) fn quantile_sketch(x: &[f64]) -> Vec<f64> {
    if x.len() <= MAX_FIT_VALUES {
        return x.to_vec();
    }
    let mut s = x.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let (n, m) = (s.len() as f64, MAX_FIT_VALUES as f64);
    (0..MAX_FIT_VALUES)
        .map(|k| s[(((k as f64 + 0.5) * n / m) as usize).min(s.len() - 1)])
        .collect()
}

/// Best two-component fit of `x` by EM started from hard splits at the 20 %, 50 % and 80 %
/// quantiles (the highest log-likelihood wins; the earlier start on ties). `None` when `x`
/// has fewer than 8 values or no start converges to two live components.
pub(crate) fn fit_mixture2(x: &[f64]) -> Option<Mixture2> {
    if x.len() < 8 {
        return None;
    }
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / n).sqrt();
    let floor = (1e-6 * sd).max(1e-300);
    let fits: Vec<Option<Mixture2>> = [0.2, 0.5, 0.8]
        .par_iter()
        .map(|&q| em_from_split(x, crate::linalg::quantile(x, q), floor))
        .collect();
    let mut best: Option<Mixture2> = None;
    for f in fits.into_iter().flatten() {
        if best.as_ref().is_none_or(|b| f.loglik > b.loglik) {
            best = Some(f);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic normal draws by inverting the CDF on a regular grid.
    fn normal_grid(n: usize, m: f64, s: f64) -> Vec<f64> {
        (0..n)
            .map(|i| m + s * crate::spectral::normal_quantile((i as f64 + 0.5) / n as f64))
            .collect()
    }

    #[test]
    fn recovers_a_shifted_minority() {
        let mut x = normal_grid(900, 0.0, 1.0);
        x.extend(normal_grid(100, 6.0, 0.5));
        let f = fit_mixture2(&x).unwrap();
        let j = f.minor();
        assert!((f.w[j] - 0.1).abs() < 0.01, "{f:?}");
        assert!((f.m[j] - 6.0).abs() < 0.1, "{f:?}");
        assert!(f.ashman_d() > 2.0);
        let bic1 = -2.0 * single_loglik(&x) + 2.0 * (x.len() as f64).ln();
        let bic2 = -2.0 * f.loglik + 5.0 * (x.len() as f64).ln();
        assert!(bic2 < bic1);
        assert!(f.posterior(6.0, j) > 0.99 && f.posterior(0.0, j) < 0.01);
    }

    #[test]
    fn loglik_over_blocks_equals_the_direct_sum() {
        // more values than one product block holds, so block boundaries are crossed
        let mut x = normal_grid(3 * LN_BLOCK + 17, 0.0, 1.0);
        x.extend(normal_grid(300, 4.0, 0.7));
        let f = fit_mixture2(&x).unwrap();
        let direct: f64 = x
            .iter()
            .map(|&v| {
                let a = f.w[0].ln() + log_normal(v, f.m[0], f.s[0]);
                let b = f.w[1].ln() + log_normal(v, f.m[1], f.s[1]);
                a.max(b) + (-(a - b).abs()).exp().ln_1p()
            })
            .sum();
        assert!(
            (direct - f.loglik).abs() <= 1e-12 * direct.abs(),
            "{direct} vs {}",
            f.loglik
        );
    }

    #[test]
    fn a_single_gaussian_is_not_separated() {
        let x = normal_grid(2000, 1.0, 2.0);
        if let Some(f) = fit_mixture2(&x) {
            assert!(f.ashman_d() < 2.0, "{f:?}");
        }
    }
}
