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
        let density = |h: &[u32]| -> Vec<f64> {
            let n: f64 = h.iter().map(|&x| f64::from(x)).sum::<f64>() + 0.5 * BINS as f64;
            h.iter().map(|&x| (f64::from(x) + 0.5) / n).collect()
        };
        let f_t = density(&reading.own_hist(target, rows));
        let mut f_n = vec![0.0; BINS];
        let others = (0..k).filter(|&c| c != target).count() as f64;
        for c in (0..k).filter(|&c| c != target) {
            for (a, b) in f_n.iter_mut().zip(density(reading.hist(c, target))) {
                *a += b / others;
            }
        }
        Some(Carriers {
            ln_prior_odds: ((1.0 - share) / share).ln(),
            ln_ratio: f_t.iter().zip(&f_n).map(|(t, n)| t.ln() - n.ln()).collect(),
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
