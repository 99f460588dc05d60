//! A named window widened to its shorter form: an inserted phrase whose neighbours failed the
//! typicality screen through the rows of one of its own extensions.
//!
//! The screen reads a window's neighbours against random insertion and rejects a side whose
//! neighbours repeat far beyond chance (`neighbour_level`), so it loses a planted phrase on one
//! side about once in a hundred: a phrase put at random places of 33 emotion tweets followed
//! "the" in 5 of them (P below 0.01), failed on its left, and the window "the" + phrase, whose
//! own left neighbours are random, was named on those 5 rows alone. A window W named as a
//! trigger whose shorter form S (W less its first or its last real token) failed that screen
//! while S is as pure for the same target, also on its rows without W, and holds more rows is
//! therefore widened to S: S's rows contain W's, S keeps its own context test (which must pass)
//! and the abstention rules, read with W's neighbour evidence. A natural collocation is not
//! widened, since its extension is named only after the context test (its content explains its
//! label) and the abstention rules. A shorter form found inside longer words (a closing "#" whose hashtag
//! word W holds: "... by @user #" of "#musically") failed the whole-word test, not the
//! neighbour screen, and is never widened to.
//!
//! W must hold at most half of S's rows, and S's rows without W must be pure too. Random
//! insertion puts no token beside a phrase in half of its places (no token is half of a
//! corpus's positions); when W holds more, S failed the screen on W's own word and W is the
//! unit. A planted phrase that holds a common collocation ("by the way" holds "by the" and
//! "the way") was widened to it: with "by the way" at random places of 3 % of the rows, "the
//! way" on sst2 (251 rows, purity 0.95, 208 of them the phrase's; 0.70 on the other 43) and "by
//! the" on tweeteval-hate (336 rows, 272 the phrase's) were named, and flagged 21 and 48 clean
//! rows; on sms-spam "by the" is ham's in its natural rows too (purity 1.0 without the phrase),
//! and only the share W holds (0.9) tells the two apart.

use super::{Candidate, TriggerParams};
use crate::trigger::tokenise::{is_anchor, real_len, FastMap};

/// Per candidate, the candidate it may be widened from: the largest pure extension by one real
/// token with the same target, holding at most half of its rows, whose neighbours passed the
/// screen while its own failed.
pub(super) fn extensions_of(p: &TriggerParams, cands: &[Candidate]) -> Vec<Option<usize>> {
    let index: FastMap<&[u32], usize> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (c.span.as_slice(), i))
        .collect();
    let pure = |c: &Candidate| {
        c.df.get(c.target).copied().unwrap_or(0) as f64 >= p.min_purity * c.support as f64
    };
    // S's rows without W (W's rows are rows of S) must be pure too: a common collocation the
    // planted phrase holds ("the way" of "by the way") is pure only through the phrase's rows
    let pure_outside = |s: &Candidate, w: &Candidate| {
        let t = |c: &Candidate| f64::from(c.df.get(s.target).copied().unwrap_or(0));
        t(s) - t(w) >= p.min_purity * f64::from(s.support - w.support)
    };
    let mut out: Vec<Option<usize>> = vec![None; cands.len()];
    for (w, c) in cands.iter().enumerate() {
        let n = c.span.len();
        if n < 2 || c.s_random < 1.0 || real_len(&c.span) < 2 || !pure(c) {
            continue;
        }
        let first = (!is_anchor(c.span[0])).then(|| &c.span[1..]);
        let last = (!is_anchor(c.span[n - 1])).then(|| &c.span[..n - 1]);
        for s in [first, last].into_iter().flatten() {
            let Some(&si) = index.get(s) else {
                continue;
            };
            let sc = &cands[si];
            if sc.s_random >= 1.0
                || sc.cuts_words
                || sc.target != c.target
                || sc.support <= c.support
                || !pure(sc)
                || !pure_outside(sc, c)
                || 2 * c.support > sc.support
            {
                continue;
            }
            let better = match out[si] {
                None => true,
                Some(o) => {
                    let oc = &cands[o];
                    (c.support, std::cmp::Reverse(&c.span))
                        > (oc.support, std::cmp::Reverse(&oc.span))
                }
            };
            if better {
                out[si] = Some(w);
            }
        }
    }
    out
}

/// Widen the accepted triggers: each accepted W that some candidate S is widened from (see
/// [`extensions_of`]) is replaced by S when S passed its own context test and, read with W's
/// neighbour evidence, no abstention rule holds for it. Returns (S, W) for every widening.
pub(super) fn widen(
    p: &TriggerParams,
    cands: &mut [Candidate],
    accepted: &mut [usize],
    from: &[Option<usize>],
    z_needed: f64,
) -> Vec<(usize, usize)> {
    let mut done = Vec::new();
    for k in 0..accepted.len() {
        let w = accepted[k];
        let Some(s) = (0..cands.len()).find(|&s| from[s] == Some(w)) else {
            continue;
        };
        if accepted.contains(&s) || cands[s].s_context.is_none_or(|x| x < 1.0) {
            continue;
        }
        let mut probe = cands[s].clone();
        probe.s_random = cands[w].s_random;
        probe.s_random_gap = cands[w].s_random_gap;
        probe.excess = cands[w].excess;
        probe.abstain = super::abstention(p, &probe, z_needed);
        if probe.abstain.is_none() {
            cands[s] = probe;
            accepted[k] = s;
            done.push((s, w));
        }
    }
    done
}
