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

use super::Trigger;
use crate::trigger::tokenise::{for_each_window, real_len, Corpus, FastSet};

/// The words of a group of triggers inserted several times a row.
#[derive(Debug, Clone)]
pub(in crate::trigger) struct Repeated {
    /// the group's trigger spans and partner tokens (one-token spans)
    spans: FastSet<Vec<u32>>,
    max_len: usize,
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
}

/// Groups the triggers (same target, sharing a row), marks each trigger of a group whose rows
/// carry its words two or more times in at least `min_purity` of them with the group's index,
/// and takes the rows that carry one occurrence out of its rows. `rows` are dataset rows;
/// `chosen` maps fit rows to dataset rows when the fit read a subset of them; `token_df` gives
/// each token's rows per label.
pub(super) fn mark(
    triggers: &mut [Trigger],
    corpus: &Corpus,
    token_df: &[Vec<u32>],
    chosen: Option<&[usize]>,
    min_purity: f64,
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
    let fit_row = |r: usize| match chosen {
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
        for &i in &members {
            let t = &triggers[i];
            spans.insert(t.span.clone());
            // a partner put into the rows with the trigger carries its target in most of its
            // rows; a word of the class the rows were drawn from (co-occurring with the
            // trigger beyond what its new label predicts) does not, and does not count
            spans.extend(
                t.exclude
                    .iter()
                    .filter(|&&tok| {
                        token_df.get(tok as usize).is_some_and(|df| {
                            let all: u64 = df.iter().map(|&x| u64::from(x)).sum();
                            2 * u64::from(df.get(t.target).copied().unwrap_or(0)) > all
                        })
                    })
                    .map(|&tok| vec![tok]),
            );
        }
        let max_len = spans.iter().map(|s| real_len(s)).max().unwrap_or(1);
        let group = Repeated { spans, max_len };
        let mut rows: Vec<usize> = members
            .iter()
            .flat_map(|&i| triggers[i].rows.iter().copied())
            .collect();
        rows.sort_unstable();
        rows.dedup();
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
        groups.push(group);
    }
    groups
}
