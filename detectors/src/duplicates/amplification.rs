//! DUP003's statistics: the power-law baseline of duplicate cluster sizes and the sequential
//! search for clusters far larger than it predicts.

/// Power-law exponent (x ≥ 2) of `sizes` plus one pseudo-cluster of size 2, by the
/// Clauset–Shalizi–Newman approximation α̂ = 1 + m / Σ ln(x / 1.5).
pub(super) fn power_law_alpha(sizes: &[usize]) -> f64 {
    let m = sizes.len() + 1;
    let s: f64 = (2.0f64 / 1.5).ln() + sizes.iter().map(|&x| (x as f64 / 1.5).ln()).sum::<f64>();
    1.0 + m as f64 / s
}

/// E_k: expected number of duplicated clusters of size ≥ k (among all, +1) under the power law
/// fitted to the clusters smaller than k.
pub(super) fn expected_at_least(sizes: &[usize], k: usize) -> f64 {
    let base: Vec<usize> = sizes.iter().copied().filter(|&s| s < k).collect();
    let a = power_law_alpha(&base);
    let tail = ((k as f64 - 0.5) / 1.5).powf(-(a - 1.0)).min(1.0);
    (sizes.len() + 1) as f64 * tail
}

/// The smallest flagged cluster size of the sequential outlier search, if any.
pub(super) fn amplification(sizes: &[usize], alpha: f64, min_copies: usize) -> Option<usize> {
    let mut distinct: Vec<usize> = sizes.to_vec();
    distinct.sort_unstable_by(|a, b| b.cmp(a));
    distinct.dedup();
    let mut cut = None;
    for k in distinct {
        if k < min_copies || expected_at_least(sizes, k) >= alpha {
            break;
        }
        cut = Some(k);
    }
    cut
}
