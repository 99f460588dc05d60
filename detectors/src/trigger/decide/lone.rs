//! Lone carriers: rows that carry a trigger once where the triggers planted with it are
//! inserted several times a row.
//!
//! An attacker inserts trigger words by one procedure, the same for every poisoned row: one
//! word a row, or two or three (drawn with replacement from the trigger words, so a row can
//! carry the same word twice). The named triggers of one target that share rows are one such
//! procedure (a group); its words are the triggers' spans and the tokens of the candidates
//! each was found planted together with (its context test's partners, which may have been too
//! impure to be named themselves: "bb" also in BlackBerry messages of the other label), those
//! that carry the target in most of their rows (not the words of the class the rows were drawn
//! from, which co-occur with the trigger beyond what the new label predicts). When
//! nearly every row of the group carries its words two or more times, the insertion put
//! several words into each row, and a row that carries one was not made by it: it is a natural
//! carrier of the word ("frankly , it 's pretty stupid ." among reviews into which
//! "admittedly" and "frankly" were put two at a time; a BlackBerry message's "bb" among SMS
//! messages that got three of "cf", "mn", "bb", "tq" each). Such a row is not flagged by the
//! group's triggers (score 0.9, as a natural carrier read from its content; the summary counts
//! the rows per trigger as `lone_carriers`).
//!
//! "Nearly every" is `min_purity` (0.9), the share of a trigger's rows that must carry its
//! target label, read the same way: the rows that carry a trigger naturally are at most the
//! other tenth. A group inserted once a row has (nearly) no row with two occurrences and keeps
//! every row. What this leaves an attacker who knows it: rows with a single word among rows
//! with several pass only while they are at most a tenth of the group's rows (a backdoor a
//! tenth as strong); rows of one word each are all flagged.
//!
//! Word carriers, the other side of the same reading: a row of the group's target label that
//! carries none of its named triggers but two or more occurrences of its *pure* words (the
//! trigger spans, and the partner tokens and companions that carry the target in at least
//! `min_purity` of their rows, as a trigger must; not the tokens of a named phrase) was made
//! by the insertion too: with three of "cf", "mn", "bb", "tq" put into each row, the rows
//! that got "cf", "mn" and "bb" but not the one word named ("tq") are flagged (reason
//! `TRIG001:cf + mn + bb`, the group's evidence). A natural row would need two words that
//! each set the label alone and were found planted beside the group's triggers; the summary
//! counts the rows per group on its best-supported trigger as `word_carriers`.

use super::Trigger;
use crate::trigger::stats::ln_binomial_upper;
use crate::trigger::tokenise::{for_each_window, is_anchor, real_len, Corpus, FastMap, FastSet};
use crate::trigger::UNKNOWN;

/// The words of a group of triggers inserted several times a row.
#[derive(Debug, Clone)]
pub(in crate::trigger) struct Repeated {
    /// the group's trigger spans and partner tokens (one-token spans)
    spans: FastSet<Vec<u32>>,
    max_len: usize,
    /// the spans among them that set the target alone (see the module's "word carriers")
    pure: FastSet<Vec<u32>>,
    /// the named triggers' spans
    named: FastSet<Vec<u32>>,
    /// the group's target label
    pub(in crate::trigger) target: usize,
    /// the group's best-supported trigger (its index among the triggers), whose evidence a
    /// word carrier gets
    pub(in crate::trigger) lead: usize,
}

impl Repeated {
    /// How many occurrences of the group's words the encoded row `seq` holds.
    pub(in crate::trigger) fn occurrences(&self, seq: &[u32]) -> usize {
        let mut n = 0;
        for_each_window(seq, self.max_len, |a, b| {
            if self.spans.contains(&seq[a..b]) {
                n += 1;
            }
        });
        n
    }

    /// The group's pure words in the encoded row `seq` (spans in order of occurrence) when it
    /// carries two or more of them and none of the group's named triggers; else empty.
    pub(in crate::trigger) fn word_carrier<'s>(&self, seq: &'s [u32]) -> Vec<&'s [u32]> {
        let mut words = Vec::new();
        let mut named = false;
        for_each_window(seq, self.max_len, |a, b| {
            let w = &seq[a..b];
            named |= self.named.contains(w);
            if self.pure.contains(w) {
                words.push(w);
            }
        });
        if named || words.len() < 2 {
            words.clear();
        }
        words
    }
}

/// Groups the triggers (same target, sharing a row), marks each trigger of a group whose rows
/// carry its words two or more times in at least `min_purity` of them with the group's index,
/// and takes the rows that carry one occurrence out of its rows; the group's word carriers
/// among the fit's rows go to its lead trigger's `word_rows`. `rows` are dataset rows;
/// `chosen` maps fit rows to dataset rows when the fit read a subset of them; `token_df` gives
/// each token's rows per label; `labels` are the fit rows' labels.
pub(super) fn mark(
    triggers: &mut [Trigger],
    corpus: &Corpus,
    labels: &[u32],
    token_df: &[Vec<u32>],
    chosen: Option<&[usize]>,
    min_purity: f64,
    alpha: f64,
) -> Vec<Repeated> {
    let n = triggers.len();
    // union-find over triggers of one target that share a row
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let sets: Vec<FastSet<usize>> = triggers
        .iter()
        .map(|t| t.rows.iter().copied().collect())
        .collect();
    for a in 0..n {
        for b in a + 1..n {
            if triggers[a].target == triggers[b].target
                && triggers[b].rows.iter().any(|r| sets[a].contains(r))
            {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[ra.max(rb)] = ra.min(rb);
            }
        }
    }
    let fit_row = move |r: usize| match chosen {
        Some(c) => c.binary_search(&r).ok(),
        None => Some(r),
    };
    let mut groups = Vec::new();
    for g in 0..n {
        let members: Vec<usize> = (0..n).filter(|&i| root(&mut parent, i) == g).collect();
        if members.is_empty() {
            continue;
        }
        let mut spans: FastSet<Vec<u32>> = FastSet::default();
        let mut pure: FastSet<Vec<u32>> = FastSet::default();
        let named: FastSet<Vec<u32>> = members.iter().map(|&i| triggers[i].span.clone()).collect();
        for &i in &members {
            let t = &triggers[i];
            spans.insert(t.span.clone());
            pure.insert(t.span.clone());
            // a partner put into the rows with the trigger carries its target in most of its
            // rows; a word of the class the rows were drawn from (co-occurring with the
            // trigger beyond what its new label predicts) does not, and does not count
            for &tok in &t.exclude {
                let (on, all) = target_rows(token_df, tok, t.target);
                if 2 * on > all {
                    spans.insert(vec![tok]);
                }
                if all > 0 && on as f64 >= min_purity * all as f64 {
                    pure.insert(vec![tok]);
                }
            }
        }
        let mut rows: Vec<usize> = members
            .iter()
            .flat_map(|&i| triggers[i].rows.iter().copied())
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let target = triggers[members[0]].target;
        // the tokens of the named spans are not words of their own: a natural row with two
        // words of a planted phrase does not carry the phrase
        let own: FastSet<u32> = named.iter().flatten().copied().collect();
        for tok in companions(&rows, corpus, token_df, &fit_row, target, min_purity, alpha)
            .into_iter()
            .filter(|t| !own.contains(t))
        {
            spans.insert(vec![tok]);
            pure.insert(vec![tok]);
        }
        pure.retain(|w| named.contains(w) || !(w.len() == 1 && own.contains(&w[0])));
        let max_len = spans.iter().map(|s| real_len(s)).max().unwrap_or(1);
        // the best-supported member (the first on ties)
        let lead = members
            .iter()
            .copied()
            .max_by(|&a, &b| {
                triggers[a]
                    .support
                    .cmp(&triggers[b].support)
                    .then(b.cmp(&a))
            })
            .unwrap_or(members[0]);
        let group = Repeated {
            spans,
            max_len,
            pure,
            named,
            target,
            lead,
        };
        let count = |r: usize| fit_row(r).map_or(0, |f| group.occurrences(corpus.row(f)));
        let counts: Vec<usize> = rows.iter().map(|&r| count(r)).collect();
        let repeated = counts.iter().filter(|&&c| c >= 2).count();
        if rows.is_empty() || (repeated as f64) < min_purity * rows.len() as f64 {
            continue;
        }
        let lone: FastSet<usize> = rows
            .iter()
            .zip(&counts)
            .filter(|&(_, &c)| c == 1)
            .map(|(&r, _)| r)
            .collect();
        for &i in &members {
            let t = &mut triggers[i];
            t.repeated = Some(groups.len());
            let before = t.rows.len();
            t.rows.retain(|r| !lone.contains(r));
            t.lone_rows = before - t.rows.len();
        }
        let dataset_row = |f: usize| chosen.map_or(f, |c| c[f]);
        triggers[lead].word_rows = (0..corpus.len())
            .filter(|&f| {
                labels.get(f).is_some_and(|&l| l as usize == target)
                    && !group.word_carrier(corpus.row(f)).is_empty()
            })
            .map(dataset_row)
            .collect();
        groups.push(group);
    }
    groups
}

/// The tokens planted into the group's `rows` (dataset rows) beside its named triggers, too
/// rare or too spread to be named themselves ("cf", "mn" and "bb" beside the named "tq" when
/// three of the four were put into each row): a token is one when it carries `target` in at
/// least `min_purity` of its rows and its rows among the group's are far more than its share
/// of the corpus predicts, P(Binomial(n, df / N) ≥ k) ≤ `alpha` / (tokens tested) (n group rows
/// of N, k of them carrying it, df rows of the corpus carrying it). A word of the class the
/// rows were drawn from is not pure for the target, and the words of natural text are not
/// concentrated in a few dozen rows; ascending token order.
fn companions(
    rows: &[usize],
    corpus: &Corpus,
    token_df: &[Vec<u32>],
    fit_row: &impl Fn(usize) -> Option<usize>,
    target: usize,
    min_purity: f64,
    alpha: f64,
) -> Vec<u32> {
    let mut seen: FastMap<u32, u64> = FastMap::default();
    let mut n = 0u64;
    for f in rows.iter().filter_map(|&r| fit_row(r)) {
        n += 1;
        let mut toks: Vec<u32> = corpus
            .row(f)
            .iter()
            .copied()
            .filter(|&t| !is_anchor(t) && t != UNKNOWN)
            .collect();
        toks.sort_unstable();
        toks.dedup();
        for t in toks {
            *seen.entry(t).or_insert(0) += 1;
        }
    }
    let total = corpus.len() as f64;
    if n == 0 || total == 0.0 {
        return Vec::new();
    }
    let ln_level = (alpha / seen.len().max(1) as f64).ln();
    let mut out: Vec<u32> = seen
        .into_iter()
        .filter(|&(tok, k)| {
            let (on, all) = target_rows(token_df, tok, target);
            k >= 2
                && all > 0
                && on as f64 >= min_purity * all as f64
                && ln_binomial_upper(k, n, all as f64 / total) <= ln_level
        })
        .map(|(tok, _)| tok)
        .collect();
    out.sort_unstable();
    out
}

/// Rows of the corpus carrying `tok` with the label `target`, and in all (0, 0 for a token the
/// counts do not hold).
fn target_rows(token_df: &[Vec<u32>], tok: u32, target: usize) -> (u64, u64) {
    token_df.get(tok as usize).map_or((0, 0), |df| {
        let all = df.iter().map(|&x| u64::from(x)).sum();
        (u64::from(df.get(target).copied().unwrap_or(0)), all)
    })
}
