//! DUP001 / DUP002's last tie-break: a tie read on its own, when the flips' direction names no
//! target for it. An attacker need not flip every copy into one label: copies of rows drawn
//! from every class, each flipped into another class, make ties in both directions, and no
//! label is out of place in more of them than chance. Each such tie still holds one text
//! under the label it was written for and one under a label it was not written for, and where
//! the classes' words differ, naive Bayes reads which is which.
//!
//! How far one reading can be trusted is measured on the corpus itself, never assumed: rows of
//! the class samples in [`ClassWords`] (texts not in any tie) are read as if they were tied
//! with a copy under another class of a tie (the text under its own label and under the
//! other), each read without its own rows, and the reading is wrong when it puts the text's
//! own label out of place. Sorted by the reading's strength (its absolute log odds), the cut is
//! the weakest strength at which the readings at least that strong are wrong at a rate
//! (wrong + 1) / (n + 2) ≤ `alpha` (the direction test's level, so no new parameter). A tie
//! whose own reading is at least that strong is resolved against the label the reading puts out
//! of place; a weaker tie stays flagged whole. Only ties that would otherwise be flagged whole
//! are read this way (more conflicts than natural label noise makes), so this reading only
//! ever takes a row out of the quarantine, never puts one in.
//!
//! Where the classes barely differ in their words (ironic and plain tweets), readings that
//! strong are too few or too often wrong: no cut is found and every tie stays flagged whole.

use super::direction::{multinomial_log_odds, word_counts, ClassWords};
use crate::ClassIndex;
use std::collections::BTreeSet;

/// Texts of each class sample read per class pair of a tie.
const PER_SIDE: usize = 1024;

/// Calibration readings made at most (pairs are taken in order until this is reached).
const MAX_READINGS: usize = 1 << 18;

/// The calibration of the per-tie reading: the cut on its strength and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct OwnCut {
    /// Ties whose |log odds| is at least this are resolved by their own reading.
    pub(super) cut: f64,
    /// Calibration readings at least that strong.
    pub(super) tail: usize,
    /// Of those, readings that put the text's own label out of place.
    pub(super) wrong: usize,
    /// Calibration readings made.
    pub(super) readings: usize,
}

/// The cut for the class pairs `pairs` (each unordered pair once, sorted), from the class
/// samples less the tied texts `excluded` (sorted `(sample key, words)`), at error rate
/// `alpha`; `None` when no strength reaches it.
pub(super) fn own_cut(
    words: &ClassWords,
    pairs: &BTreeSet<(ClassIndex, ClassIndex)>,
    excluded: &[(u64, &[u64])],
    alpha: f64,
) -> Option<OwnCut> {
    if alpha <= 0.0 {
        return None;
    }
    // (strength, wrong) of every calibration reading
    let mut read: Vec<(f64, bool)> = Vec::new();
    'pairs: for &(a, b) in pairs {
        for (own, other) in [(a, b), (b, a)] {
            let texts = words
                .sample_of(own)
                .filter(|(key, toks, _)| excluded.binary_search(&(*key, *toks)).is_err())
                .take(PER_SIDE);
            for (_, toks, rows) in texts {
                // the text's own rows, all of class `own`, are taken out of its counts
                let counts = word_counts(toks);
                let len = toks.len();
                let own_rows = |l: ClassIndex, w: Option<u64>| -> usize {
                    if l != own {
                        return 0;
                    }
                    rows * w.map_or(len, |w| {
                        counts
                            .binary_search_by_key(&w, |&(x, _)| x)
                            .map_or(0, |i| counts[i].1)
                    })
                };
                // positive log odds of `other`: the text's own label out of place, wrong
                let x = multinomial_log_odds(words, &counts, (own, other), &own_rows);
                if x != 0.0 {
                    read.push((x.abs(), x > 0.0));
                }
            }
            if read.len() >= MAX_READINGS {
                break 'pairs;
            }
        }
    }
    // strongest first; equal strengths are taken together
    read.sort_by(|x, y| y.0.total_cmp(&x.0));
    let mut best = None;
    let (mut n, mut wrong) = (0usize, 0usize);
    let mut i = 0;
    while i < read.len() {
        let s = read[i].0;
        while i < read.len() && read[i].0 == s {
            n += 1;
            wrong += usize::from(read[i].1);
            i += 1;
        }
        if (wrong as f64 + 1.0) / (n as f64 + 2.0) <= alpha {
            best = Some(OwnCut {
                cut: s,
                tail: n,
                wrong,
                readings: read.len(),
            });
        }
    }
    best
}
