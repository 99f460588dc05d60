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

/// Values the E step takes at once, one per lane, each lane keeping its own sums.
const LANES: usize = 8;

/// ln 2 split for Cody and Waite's range reduction: the high part has 21 trailing zero bits,
/// so k · `LN2_HI` is exact for every |k| ≤ 1024 (fdlibm's constants).
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);

/// e^x for x ≤ 0, in basic operations only, so that a loop over it vectorises and every
/// instruction set gives the same bits (the C library's `exp` is a call per value, and its
/// vector forms round differently from it and from one another). Arguments below −708 are
/// taken as −708 (e^−708 ≈ 3·10^−308, the smallest the 2^k scaling below keeps normal; the
/// E step adds it to 1). x = k·ln 2 + r with |r| ≤ ln 2 / 2; e^r by its Taylor polynomial to
/// degree 13 (the first term left out is below 5·10^−18 relative); 2^k from the exponent
/// bits. Relative error about 2·10^−16 (tested against `f64::exp`).
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    // 1.5 · 2^52: adding it rounds to an integer (to even), and that integer is then the low
    // bits of the sum's mantissa
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let x = x.max(-708.0);
    let t = x * std::f64::consts::LOG2_E + SHIFTER;
    let k = t - SHIFTER;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // the low 12 bits of t's representation are k mod 4096; k + 1023 in [2, 1023] is the
    // biased exponent of 2^k
    p * f64::from_bits(t.to_bits().wrapping_add(1023) << 52)
}

dispatch! {
    /// One E step over `x` for component means `m`, inverse deviations `inv` and constants
    /// `c` (ln w_k − ln s_k − ln √(2π)): the sums of each component's responsibilities r_k,
    /// of r_k·v and of r_k·v², and the log-likelihood, compiled for the widest vector
    /// instructions the CPU has (`crate::simd`).
    fn e_step(x: &[f64], m: [f64; 2], inv: [f64; 2], c: [f64; 2]) -> [f64; 7] => e_step_portable
}

/// [`e_step`]'s body. With a_k = ln w_k + ln N(v; m_k, s_k) and δ = a_1 − a_0, the
/// responsibility of component 1 is 1 / (1 + e^−δ) and ln(e^a_0 + e^a_1) = max(a_0, a_1) +
/// ln(1 + e^−|δ|): one exponential per value. Σ ln(1 + e^−|δ|) is taken as ln Π(1 + e^−|δ|)
/// over blocks of [`LN_BLOCK`] values per lane: each factor is in [1, 2], so a block's product
/// stays below 2^LN_BLOCK, far from overflow, and one `ln` replaces LN_BLOCK. Value i goes to
/// lane i mod [`LANES`]; the lanes' sums are added in lane order at the end, so the result
/// depends on the values' order only, not on the machine.
#[inline(always)]
fn e_step_portable(x: &[f64], m: [f64; 2], inv: [f64; 2], c: [f64; 2]) -> [f64; 7] {
    // per lane: Σr_0, Σr_1, Σr_0·v, Σr_1·v, Σr_0·v², Σr_1·v², Σ max(a_0, a_1)
    let mut acc = [[0f64; LANES]; 7];
    let mut prod = [1f64; LANES];
    let mut ln_prod = [0f64; LANES];
    let mut in_block = 0usize;
    let lane = |l: usize, v: f64, acc: &mut [[f64; LANES]; 7], prod: &mut [f64; LANES]| {
        let z0 = (v - m[0]) * inv[0];
        let z1 = (v - m[1]) * inv[1];
        let a = c[0] - 0.5 * z0 * z0;
        let b = c[1] - 0.5 * z1 * z1;
        let e = exp_nonpositive(-(b - a).abs());
        let hi = 1.0 / (1.0 + e);
        let r1 = if b >= a { hi } else { e * hi };
        let r0 = 1.0 - r1;
        acc[0][l] += r0;
        acc[1][l] += r1;
        acc[2][l] += r0 * v;
        acc[3][l] += r1 * v;
        acc[4][l] += r0 * v * v;
        acc[5][l] += r1 * v * v;
        acc[6][l] += a.max(b);
        prod[l] *= 1.0 + e;
    };
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        let v: [f64; LANES] = std::array::from_fn(|l| chunk[l]);
        for (l, &v) in v.iter().enumerate() {
            lane(l, v, &mut acc, &mut prod);
        }
        in_block += 1;
        if in_block == LN_BLOCK {
            for (s, p) in ln_prod.iter_mut().zip(prod.iter_mut()) {
                *s += p.ln();
                *p = 1.0;
            }
            in_block = 0;
        }
    }
    for (l, &v) in tail.iter().enumerate() {
        lane(l, v, &mut acc, &mut prod);
    }
    let mut out = [0f64; 7];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = a.iter().sum();
    }
    out[6] += ln_prod
        .iter()
        .zip(&prod)
        .map(|(s, p)| s + p.ln())
        .sum::<f64>();
    out
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
        // E step (see [`e_step`])
        let c = [
            mix.w[0].ln() - mix.s[0].ln() - LN_SQRT_2PI,
            mix.w[1].ln() - mix.s[1].ln() - LN_SQRT_2PI,
        ];
        let inv = [1.0 / mix.s[0], 1.0 / mix.s[1]];
        let [r_sum0, r_sum1, r_x0, r_x1, r_xx0, r_xx1, ll] = e_step(x, mix.m, inv, c);
        let (r_sum, r_x, r_xx) = ([r_sum0, r_sum1], [r_x0, r_x1], [r_xx0, r_xx1]);
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
    fn the_exponential_is_within_two_ulps_of_the_library_one() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -708.0 * f64::from(i) / 200_000.0;
            let (got, want) = (exp_nonpositive(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        for x in [
            0.0,
            -1e-300,
            -0.5,
            -0.346_573_590_279_972_6,
            -1.0,
            -745.0,
            f64::MIN,
        ] {
            let got = exp_nonpositive(x);
            assert!(got > 0.0 && got <= 1.0, "{x}: {got}");
        }
        assert!(worst < 4.5e-16, "relative error {worst:e}");
    }

    #[test]
    fn the_e_step_gives_the_sums_of_the_textbook_formulas() {
        let x = normal_grid(1001, 0.3, 2.0);
        let (m, s, w) = ([-0.5, 1.5], [1.2f64, 0.7f64], [0.4f64, 0.6f64]);
        let c = [
            w[0].ln() - s[0].ln() - LN_SQRT_2PI,
            w[1].ln() - s[1].ln() - LN_SQRT_2PI,
        ];
        let got = e_step(&x, m, [1.0 / s[0], 1.0 / s[1]], c);
        let mut want = [0f64; 7];
        for &v in &x {
            let p = [0, 1].map(|k| w[k] * (log_normal(v, m[k], s[k])).exp());
            let total = p[0] + p[1];
            for k in 0..2 {
                let r = p[k] / total;
                want[k] += r;
                want[2 + k] += r * v;
                want[4 + k] += r * v * v;
            }
            want[6] += total.ln();
        }
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-11 * w.abs().max(1.0),
                "{got:?} {want:?}"
            );
        }
    }

    #[test]
    fn a_single_gaussian_is_not_separated() {
        let x = normal_grid(2000, 1.0, 2.0);
        if let Some(f) = fit_mixture2(&x) {
            assert!(f.ashman_d() < 2.0, "{f:?}");
        }
    }
}
