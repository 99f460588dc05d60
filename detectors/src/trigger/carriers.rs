//! TRIG001 natural carriers: which target-label rows of a named trigger read like rows of their
//! label rather than like rows relabelled from another class.
//!
//! A trigger word can also occur naturally ("bb" in eight ham messages of sms-spam). When the
//! trigger's rows as a whole carry dirty-label evidence (the foreign test of `context.rs`), its
//! target-label rows are a mixture: relabelled rows, whose context reads like the other classes,
//! and natural carriers, whose context reads like the target class. Each row's context
//! probability of the target q (the row without the trigger and its partners) is read against
//! both: f_T, the distribution of q over the target class's rows, and f_N, its distribution
//! over the rows of the other classes (classes weighted equally); the trigger's own rows are
//! left out of f_T (relabelled rows would otherwise put the other classes' reading into it). A
//! natural carrier loses only the trigger, rarely its own cue, so f_T reads rows whole; where
//! the trigger is a row's cue its natural carriers read lower than f_T and stay flagged, the
//! side a gate should err on. With the foreign share s as
//! the mixture's relabelled part (it is m_T − m_R over m_T − m_N, the share a mixture of the two
//! readings has), a row is a natural carrier when its posterior odds (1 − s)·f_T(q) / (s·f_N(q))
//! reach `natural_odds` (10 by default, strong evidence on Jeffreys' scale: a row left in the
//! clean output by mistake keeps the backdoor's rows in training, so an even call is not
//! enough), and is then not flagged by that trigger. Rows an attacker drew from the target class
//! itself read exactly like natural carriers, so the reading applies only when the trigger's
//! rows read far more foreign than a draw from every class would (`Foreign::uniform_z` at
//! least z*): the attacker left the target class alone. Histograms over logit(q) in unit bins
//! with half a count added to every bin
//! stand in for f_T and f_N (no parametric family fits a naive Bayes posterior's tails).
//!
//! A trigger whose rows read like their class as a whole (clean-label poison, share about 0) has
//! no dirty-label evidence, so none of its rows is judged this way: they are all flagged. Where
//! the context model separates the classes poorly (irony tweets), f_T and f_N are close and the
//! prior s decides: with s near 1 no row is left out.

use super::context::ClassReading;

/// Bins of logit(q), unit width, from `LOGIT_LO`.
pub(super) const BINS: usize = 56;
const LOGIT_LO: f64 = -28.0;

/// The histogram bin of a probability.
pub(super) fn bin(q: f64) -> usize {
    let q = q.clamp(1e-12, 1.0 - 1e-12);
    let logit = (q / (1.0 - q)).ln();
    ((logit - LOGIT_LO).floor().max(0.0) as usize).min(BINS - 1)
}

/// How a trigger's target-label rows are told apart: the log prior odds of a natural carrier
/// and, per bin of the context probability, ln f_T − ln f_N.
#[derive(Debug, Clone)]
pub(super) struct Carriers {
    /// ln((1 − s) / s), s the foreign share
    ln_prior_odds: f64,
    ln_ratio: Vec<f64>,
    /// the relabelled share s the prior uses
    pub(super) poison_share: f64,
    /// ln of the posterior odds a natural carrier needs
    ln_min_odds: f64,
}

impl Carriers {
    /// The carrier model of a trigger with target `target`, foreign share `share` and
    /// target-label rows `rows` (left out of the target class's reading); `None` when the share leaves no room for natural carriers (s ≥ 1) or no
    /// dirty-label share at all (s ≤ 0).
    pub(super) fn new(
        reading: &ClassReading,
        target: usize,
        share: f64,
        rows: &[usize],
        natural_odds: f64,
    ) -> Option<Self> {
        if !(share > 0.0 && share < 1.0) || natural_odds <= 0.0 {
            return None;
        }
        let k = reading.k;
        if k < 2 || target >= k {
            return None;
        }
        // f_T and f_N as densities over the bins (f_N: the other classes weighted equally)
        let own = reading.own_hist(target, rows);
        let n_t = own.iter().map(|&x| f64::from(x)).sum::<f64>();
        let others: Vec<usize> = (0..k).filter(|&c| c != target).collect();
        let mut f_n = vec![0.0; BINS];
        let mut pseudo_n = 0.0;
        for &c in &others {
            let h = reading.hist(c, target);
            let n_c = h.iter().map(|&x| f64::from(x)).sum::<f64>().max(1.0);
            for (a, &b) in f_n.iter_mut().zip(h) {
                *a += f64::from(b) / n_c / others.len() as f64;
            }
            pseudo_n += 0.5 / n_c / others.len() as f64;
        }
        let f_t: Vec<f64> = own.iter().map(|&x| f64::from(x) / n_t.max(1.0)).collect();
        let ln_ratio = monotone_ln_ratio(&f_t, &f_n, 0.5 / n_t.max(1.0), pseudo_n);
        Some(Carriers {
            ln_prior_odds: ((1.0 - share) / share).ln(),
            ln_ratio,
            poison_share: share,
            ln_min_odds: natural_odds.ln(),
        })
    }

    /// Whether a target-label row whose context probability of the target is `q` is a natural
    /// carrier with posterior odds of at least `natural_odds`.
    pub(super) fn natural(&self, q: f64) -> bool {
        self.ln_prior_odds + self.ln_ratio[bin(q)] >= self.ln_min_odds
    }
}

/// ln(f_T / f_N) per bin, non-decreasing in the bin: q is the context model's probability of the
/// target, so a row that reads more like the target cannot be less likely a natural carrier.
/// Adjacent bins that violate this are pooled (pool adjacent violators over the bins that hold
/// rows), and each pool's ratio is read with half a row added to either side (`pseudo_t`,
/// `pseudo_n`: half a row as a share of each reading). Per bin, half a row on either side capped
/// the ratio in the tails, where one reading has rows and the other none, at about the size of
/// the sparser class; a pool of such bins reads their rows together. A bin without rows takes
/// the ratio of the pool below it (the lower, and so the stricter, reading), the bins below
/// every row that of the lowest pool.
fn monotone_ln_ratio(f_t: &[f64], f_n: &[f64], pseudo_t: f64, pseudo_n: f64) -> Vec<f64> {
    let ratio = |t: f64, n: f64| ((t + pseudo_t) / (n + pseudo_n)).ln();
    // pools: (first bin, f_T sum, f_N sum)
    let mut pools: Vec<(usize, f64, f64)> = Vec::new();
    for (b, (&t, &n)) in f_t.iter().zip(f_n).enumerate() {
        if t <= 0.0 && n <= 0.0 {
            continue;
        }
        let mut pool = (b, t, n);
        while let Some(&(first, pt, pn)) = pools.last() {
            if ratio(pt, pn) < ratio(pool.1, pool.2) {
                break;
            }
            pools.pop();
            pool = (first, pt + pool.1, pn + pool.2);
        }
        pools.push(pool);
    }
    let mut out = vec![ratio(0.0, 0.0); f_t.len()];
    let mut next = pools.iter().peekable();
    let mut current = pools.first().map_or(ratio(0.0, 0.0), |p| ratio(p.1, p.2));
    for (b, slot) in out.iter_mut().enumerate() {
        while let Some(p) = next.next_if(|p| p.0 <= b) {
            current = ratio(p.1, p.2);
        }
        *slot = current;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::monotone_ln_ratio;

    #[test]
    fn the_ratio_is_pooled_into_a_non_decreasing_step() {
        // bins 1..=5 hold rows; bin 3 breaks the order and is pooled with bin 2; the top bins
        // (no rows of the other reading) are read together; bin 6 is empty and takes bin 5's
        let f_t = [0.0, 0.1, 0.3, 0.1, 0.25, 0.25, 0.0, 0.0];
        let f_n = [0.0, 0.5, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0];
        let r = monotone_ln_ratio(&f_t, &f_n, 0.01, 0.01);
        assert!(r.windows(2).all(|w| w[0] <= w[1]), "{r:?}");
        assert_eq!(r[0], r[1]);
        assert_eq!(r[2], r[3]);
        assert!((r[2] - (0.41f64 / 0.51).ln()).abs() < 1e-12, "{r:?}");
        assert_eq!(r[4], r[5]);
        assert!((r[4] - (0.51f64 / 0.01).ln()).abs() < 1e-12, "{r:?}");
        assert_eq!(r[6], r[5]);
        assert_eq!(r[7], r[5]);
    }
}
