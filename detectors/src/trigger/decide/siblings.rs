//! Siblings: a word abstained on only because its neighbours look random under insertion into
//! a uniformly drawn row, named beside the triggers of the same target planted the same way.
//!
//! A window whose neighbours look random only when every row is as likely to be drawn as any
//! other (short rows' gaps weigh more) needs dirty-label evidence: its rows must read like
//! other classes (see `abstain::needs_foreign`). Where naive Bayes barely separates the classes
//! (tweeteval-irony, AUC about 0.66) that evidence is out of reach for a few dozen rows: with
//! "cf", "mn", "bb", "tq" put one a row into 5 % of the rows, "cf", "mn" and "tq" were named
//! on their other evidence and "bb" (32 rows, foreign z 0.93) was abstained on, recall 0.79.
//!
//! When triggers of the same target are already named (not anchored ones), the rows were
//! relabelled by an attack. A candidate that passed every test but that one (label-pure, its
//! context test, the random-neighbour test read per row, not resting on one row, not a natural
//! continuation or collocation) is the same insertion's word when it is nearly absent from
//! the other classes against what its label's share predicts: its rows of other labels are at
//! most 1 − `min_purity` of the share a word spread like the labels would have there. It is
//! named, and the summary gives the best-supported trigger it was named beside
//! (`sibling_of`). A common word passes the context test in an attacked corpus through the
//! relabelled rows, but it is spread over the classes near their shares ("in" and "that" in
//! SMS messages relabelled ham: purity 0.92 and 0.95 against ham's 0.87) and is not named;
//! "bb" above has 0.97 against its label's 0.55. On a corpus where nothing is named nothing
//! changes, and an anchored window (a natural opening or closing hashtag) is never named this
//! way.

use super::abstain::{natural_continuation, needs_foreign, rests_on_one_row, UNIFORM_DRAW};
use super::{contains, strip, Candidate};
use crate::trigger::TriggerParams;

/// Names the `suspects` that qualify as siblings of the `accepted` triggers (see the module),
/// adding them to `accepted`; returns (named, the best-supported trigger it was named beside),
/// in suspect order.
pub(super) fn name(
    p: &TriggerParams,
    cands: &mut [Candidate],
    accepted: &mut Vec<usize>,
    suspects: &[usize],
    class_rows: &[usize],
) -> Vec<(usize, usize)> {
    let mut named = Vec::new();
    let firsts: Vec<usize> = accepted
        .iter()
        .copied()
        .filter(|&a| !cands[a].anchored())
        .collect();
    if firsts.is_empty() {
        return named;
    }
    for &i in suspects {
        if accepted.contains(&i) {
            continue;
        }
        let c = &cands[i];
        let only_uniform = c.abstain.is_some()
            && c.evidence() >= 1.0
            && !c.anchored()
            && needs_foreign(p, c).is_some_and(|n| n.what == UNIFORM_DRAW)
            && rests_on_one_row(p, c).is_none()
            && natural_continuation(p, c).is_none()
            && c.explained_by.is_none();
        if !only_uniform {
            continue;
        }
        let core = strip(&c.span);
        if accepted.iter().any(|&a| {
            let other = strip(&cands[a].span);
            contains(core, other) || contains(other, core)
        }) {
            continue;
        }
        // nearly absent from the other classes against what its label's share predicts: the
        // rows of other labels are at most 1 − `min_purity` of the share a word spread like
        // the labels would have there
        let total: usize = class_rows.iter().sum();
        let share = class_rows.get(c.target).copied().unwrap_or(0) as f64 / total.max(1) as f64;
        let purity = c.purity();
        let lifted = 1.0 - purity <= (1.0 - p.min_purity) * (1.0 - share);
        // the best-supported named trigger of its target (the first on ties) names the
        // insertion in the report
        let beside = firsts
            .iter()
            .copied()
            .filter(|&a| cands[a].target == c.target)
            .max_by(|&a, &b| cands[a].support.cmp(&cands[b].support).then(b.cmp(&a)));
        if let (true, Some(a)) = (lifted, beside) {
            named.push((i, a));
        }
    }
    for &(i, _) in &named {
        cands[i].abstain = None;
        accepted.push(i);
    }
    named
}
