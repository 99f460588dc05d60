//! TRIG001 step 3, the context test's tail: how improbable a window's count of target-label rows
//! is when each row's label follows its content (a Poisson-binomial over the rows' context
//! probabilities).

use super::super::stats::ln_poisson_binomial_upper;

/// [`ln_p_context`] without the target-label row of `occ` with the smallest context
/// probability of `target` (the row the label is least explained in); 0 when no row is left.
pub(super) fn ln_p_one_out(occ: &[(u32, u32, f64)], target: usize, ln_slack: f64) -> f64 {
    let least = occ
        .iter()
        .enumerate()
        .filter(|(_, &(_, l, _))| l as usize == target)
        .min_by(|a, b| a.1 .2.total_cmp(&b.1 .2).then(a.0.cmp(&b.0)))
        .map(|(i, _)| i);
    let Some(least) = least else {
        return 0.0;
    };
    let rest: Vec<(u32, u32, f64)> = occ
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != least)
        .map(|(_, &o)| o)
        .collect();
    ln_p_context(&rest, target, ln_slack)
}

/// ln P of at least as many target-label rows among `occ` (row, label, context probability of
/// `target`) as observed, each row's probability widened by the slack's odds factor.
pub(super) fn ln_p_context(occ: &[(u32, u32, f64)], target: usize, ln_slack: f64) -> f64 {
    let q: Vec<f64> = occ
        .iter()
        .map(|&(_, _, q)| {
            let q = q.clamp(1e-12, 1.0 - 1e-12);
            let logit = (q / (1.0 - q)).ln() + ln_slack;
            1.0 / (1.0 + (-logit).exp())
        })
        .collect();
    let k = occ
        .iter()
        .filter(|&&(_, l, _)| l as usize == target)
        .count();
    ln_poisson_binomial_upper(&q, k)
}
