//! DUP002's contrast test: pairs a few words apart whose label change the edited words explain
//! (consistent contrast pairs, not flips) are removed before the clusters are judged.

use super::direction::ClassWords;
use super::edits::{only_added, only_added_words};
use super::exact::{Contrast, Core};
use crate::ClassIndex;

/// Two exact groups (a < b).
type Pair = (usize, usize);

impl Core {
    /// DUP002: remove the pairs a few words apart (one word edited, or words substituted in
    /// place) whose label change the edited words explain, and recompute the clusters. For a
    /// pair of label-pure groups with labels a ≠ b, each text read as the set of its words,
    /// the change is read at each position where the texts differ: ln O(y) − ln O(x) for the
    /// word x of a that b does not hold and the word y of b that a does not (0 for none), with
    /// ln O(w) = ln((df_b(w) + 1)/(n_b + 2)) − ln((df_a(w) + 1)/(n_a + 2)) from the documents
    /// of each class containing w (0 for a word no other row holds). When the strongest
    /// position reaches ln `contrast_odds` (and, for words substituted in several places,
    /// swaps a word of one label for one of the other), and naive Bayes over each whole text
    /// (prior, shared words, own edited words) names that text's own label, the edit itself
    /// accounts for the new label (`it 's funny .` / `it 's drab .`): a consistent contrast
    /// pair, not a flip. Returns the number of pairs removed.
    /// `words`: the class word counts of every row, when already counted (else counted from
    /// [`Core::toks`]).
    pub(super) fn drop_explained_contrasts(
        &mut self,
        labels: &[ClassIndex],
        contrast_odds: f64,
        words: Option<&ClassWords>,
    ) -> usize {
        let (removed, edits) = if !self.toks.computed() {
            (Vec::new(), Vec::new())
        } else {
            self.explained_contrasts(labels, contrast_odds, words)
        };
        for e in removed.iter().chain(edits.iter().map(|(e, _)| e)) {
            self.edges.remove(e);
        }
        self.cluster_edges();
        let n = removed.len() + edits.len();
        self.contrasts = edits;
        n
    }

    /// The near pairs whose label change is explained (see
    /// [`Core::drop_explained_contrasts`]): (pairs where one text only adds words or whose
    /// edit swaps words of one label for words of the other, edits whose new words explain
    /// the change while the words taken out were neutral, with their edge).
    fn explained_contrasts(
        &self,
        labels: &[ClassIndex],
        contrast_odds: f64,
        words: Option<&ClassWords>,
    ) -> (Vec<Pair>, Vec<Contrast>) {
        let built;
        let words = match words {
            Some(w) => w,
            None => {
                built = ClassWords::new(self, labels);
                &built
            }
        };
        let pure = |g: usize| -> Option<ClassIndex> {
            let first = labels[self.groups[g][0]];
            self.groups[g]
                .iter()
                .all(|&r| labels[r] == first)
                .then_some(first)
        };
        // evidence from the rest of the data: the pair's own rows are left out, so that a rare
        // word does not explain a label through the very rows being judged
        let log_odds = |w: u64, a: ClassIndex, b: ClassIndex, pair: [usize; 2]| -> f64 {
            let own = |l: ClassIndex, with_word: bool| -> f64 {
                pair.iter()
                    .filter(|&&g| !with_word || self.toks[g].contains(&w))
                    .map(|&g| self.groups[g].iter().filter(|&&r| labels[r] == l).count())
                    .sum::<usize>() as f64
            };
            let d = |l| words.df(w, l) as f64 - own(l, true);
            let n = |l| words.n(l) as f64 - own(l, false);
            // a word no other row holds says nothing of either label (smoothed, it would lean
            // to the smaller class: a message's random word "olol" read as spam at odds 6.4)
            if d(a) <= 0.0 && d(b) <= 0.0 {
                return 0.0;
            }
            ((d(b) + 1.0) / (n(b) + 2.0)).ln() - ((d(a) + 1.0) / (n(a) + 2.0)).ln()
        };
        let cut = contrast_odds.ln();
        let (mut removed, mut edits) = (Vec::new(), Vec::new());
        for (&(ga, gb), &(sim, measure)) in &self.edges {
            let (Some(a), Some(b)) = (pure(ga), pure(gb)) else {
                continue;
            };
            if a == b {
                continue;
            }
            // words added to the same text are new content, and the likeliest reason for the
            // new label ("good" / "not good", a closing tag that names the emotion): a flipped
            // copy replaces words, it does not only grow the text
            if only_added(&self.toks[ga], &self.toks[gb])
                || (measure == "word_substitution"
                    && only_added_words(&self.rep_texts[ga], &self.rep_texts[gb]))
            {
                removed.push((ga, gb));
                continue;
            }
            // a few words apart: one word edited, or a few substituted in place (a template's
            // slots filled two ways: "the comedy is at times dull ..." / "the cast is at times
            // luminous ...")
            if measure != "word_edit" && measure != "word_substitution" {
                continue;
            }
            // each text is read as the set of its words: the words taken out are those of a
            // that b does not hold anywhere, the words put in those of b that a does not (a
            // replaced word that still occurs elsewhere in the edited text, as when one "i" of
            // three became "Collect", was not taken out of it)
            let (ta, tb) = (&self.toks[ga], &self.toks[gb]);
            let lo = |w: u64, other: &[u64]| -> f64 {
                if other.contains(&w) {
                    0.0
                } else {
                    log_odds(w, a, b, [ga, gb])
                }
            };
            // the change is read where the texts differ, position by position (the words of a
            // one-word edit's insertion or deletion, or of each substituted position), and the
            // strongest one must explain the new label by itself
            let (mut best, mut swap) = (f64::NEG_INFINITY, false);
            for (x, y) in differing(ta, tb) {
                let (dx, dy) = (x.map_or(0.0, |w| lo(w, tb)), y.map_or(0.0, |w| lo(w, ta)));
                if dy - dx > best {
                    best = dy - dx;
                    swap = -dx >= cut / 2.0 && dy >= cut / 2.0;
                }
            }
            if best < cut {
                continue;
            }
            // words substituted in several places are a contrast only where the strongest
            // position swaps a word of one label for a word of the other, as a template's frame
            // filled two ways does ("the comedy is at times dull ..." / "the cast is at times
            // luminous ..."): a random replacement puts in what it draws, and a word that leans
            // to the new label beside another taken out read as a contrast in 52 (cell, seed)
            // rows of the domain grid's copies with 2 and 3 words replaced
            let substituted = measure == "word_substitution";
            if substituted && !swap {
                continue;
            }
            // the distinct words of t that `other` holds (`held`) or does not
            let pick = |t: &[u64], other: &[u64], held: bool| -> Vec<u64> {
                let mut v: Vec<u64> = t
                    .iter()
                    .copied()
                    .filter(|w| other.contains(w) == held)
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let sum =
                |ws: Vec<u64>| -> f64 { ws.into_iter().map(|w| log_odds(w, a, b, [ga, gb])).sum() };
            // every word taken out and every word put in, for the whole texts' reading below
            let (ex, ey) = (sum(pick(ta, tb, false)), sum(pick(tb, ta, false)));
            // the edit must also be enough: naive Bayes over each whole text (prior, the words
            // both hold, and its own edited words) names that text's own label. One changed
            // word does not turn a long spam message into ham.
            let prior = ((words.n(b) as f64 + 1.0) / (words.n(a) as f64 + 1.0)).ln();
            let rest = prior + sum(pick(ta, tb, true));
            if rest + ey > 0.0 && rest + ex < 0.0 {
                // kept for the flips' direction only when the words taken out say little
                // about the old label (less than half the log odds the pair needs): a natural
                // contrast swaps a word of one label for one of the other ("worst" / "best"),
                // a random replacement takes out whatever word was there. (At the full odds,
                // sst2's natural "one of the worst / best movies of the year ." is reread and
                // flagged in nine duplicate-flip cells; at half, none.) Either text may be the
                // edited one, whichever comes first in the data: an edit of a into b takes out
                // x (its log odds for a are −ex), one of b into a takes out y (ey for b). Words
                // substituted in several places are a contrast only as a swap of label words,
                // never read again.
                if !substituted && (-ex < cut / 2.0 || ey < cut / 2.0) {
                    edits.push(((ga, gb), (sim, measure)));
                } else {
                    removed.push((ga, gb));
                }
            }
        }
        (removed, edits)
    }
}

/// The words at which two texts a few words apart differ, position by position: each
/// substituted position of two equally long texts (a's word, b's word), or the one word a
/// one-word insertion or deletion adds or takes out.
fn differing(ta: &[u64], tb: &[u64]) -> Vec<(Option<u64>, Option<u64>)> {
    if ta.len() == tb.len() {
        return ta
            .iter()
            .zip(tb)
            .filter(|(x, y)| x != y)
            .map(|(&x, &y)| (Some(x), Some(y)))
            .collect();
    }
    // one word more on one side: the first position where they part
    let p = ta.iter().zip(tb).take_while(|(x, y)| x == y).count();
    if ta.len() > tb.len() {
        vec![(ta.get(p).copied(), None)]
    } else {
        vec![(None, tb.get(p).copied())]
    }
}
