//! DUP001 / DUP002's tie-break: the direction of the flips. A flipped copy of a row makes a 1:1
//! label conflict in which the text alone cannot say which row is the copy. An attacker's
//! copies share a purpose, a target label; natural disagreements do not. So each 1:1 conflict
//! asks naive Bayes, trained on every other row, which of its two labels the words its texts
//! share support less (the label out of place there), and the population asks whether one
//! label is out of place in far more of the ties than chance: by chance a tie joins labels a
//! and b with probability ∝ s_a·s_b (class shares s) and either is out of place with
//! probability ½, so label l is out of place with probability π_l = s_l(1 − s_l)/(1 − Σ s²)
//! (½ with two classes); the test is one-sided binomial over all ties, Bonferroni over the
//! labels and the two readers. An attacker's target label both takes part in every injected
//! tie and is the one the text reads as out of place. When a label passes, every tie with that
//! label is resolved against it: its rows are flagged and the other rows are not. Otherwise ties
//! are flagged whole.
//!
//! Two naive-Bayes readers, because neither reads every domain: multinomial (word counts,
//! add-one smoothing) and Bernoulli over present words (a word's rate in a class smoothed
//! towards its rate in both classes, so that words rare everywhere do not favour the smaller
//! class). Measured out-of-place accuracy on injected copies: multinomial 0.71–0.73 on
//! tweeteval-hate where Bernoulli reads 0.58–0.72; Bernoulli the better reader of
//! tweeteval-emotion. Both without the class prior: a class's size must not make a direction.
//!
//! A third reader needs no classes: in a near-copy tie, the side whose own words (those the
//! other side's texts lack) are rarer in the rest of the corpus is out of place, as a copy whose
//! words were replaced by words drawn from the vocabulary is.

use super::exact::Core;
use crate::trigger::ln_binomial_upper;
use crate::trigger::FastMap;
use crate::ClassIndex;
use serde_json::json;
use std::collections::BTreeMap;

/// Per-class document frequencies of words (word hashes of [`Core::toks`]) and rows per class.
/// Integer counts only, so the counts of any split of the rows add up to the same tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ClassWords {
    /// Rows per class containing the word.
    df: FastMap<u64, BTreeMap<ClassIndex, usize>>,
    /// Rows per class.
    n_class: BTreeMap<ClassIndex, usize>,
    /// Occurrences per class of every word.
    tf: FastMap<u64, BTreeMap<ClassIndex, usize>>,
    /// Words (occurrences) per class.
    tokens: BTreeMap<ClassIndex, usize>,
}

impl ClassWords {
    pub(super) fn new(core: &Core, labels: &[ClassIndex]) -> ClassWords {
        let mut words = ClassWords::default();
        for (g, rows) in core.groups.iter().enumerate() {
            let counts = word_counts(&core.toks[g]);
            for &r in rows {
                words.add(&counts, core.toks[g].len(), labels[r]);
            }
        }
        words
    }

    /// Count one row of class `l` whose words are `toks`.
    pub(super) fn add_row(&mut self, toks: &[u64], l: ClassIndex) {
        self.add(&word_counts(toks), toks.len(), l);
    }

    fn add(&mut self, counts: &[(u64, usize)], len: usize, l: ClassIndex) {
        *self.n_class.entry(l).or_default() += 1;
        *self.tokens.entry(l).or_default() += len;
        for &(w, c) in counts {
            *self.df.entry(w).or_default().entry(l).or_default() += 1;
            *self.tf.entry(w).or_default().entry(l).or_default() += c;
        }
    }

    /// Add the counts of other rows.
    pub(super) fn merge(&mut self, other: &ClassWords) {
        let add = |a: &mut BTreeMap<ClassIndex, usize>, b: &BTreeMap<ClassIndex, usize>| {
            for (&l, &c) in b {
                *a.entry(l).or_default() += c;
            }
        };
        add(&mut self.n_class, &other.n_class);
        add(&mut self.tokens, &other.tokens);
        for (w, m) in &other.df {
            add(self.df.entry(*w).or_default(), m);
        }
        for (w, m) in &other.tf {
            add(self.tf.entry(*w).or_default(), m);
        }
    }

    /// The tables as sorted `(word or u64::MAX for the per-class totals, class, count)`
    /// triples: document frequencies, then term frequencies.
    pub(super) fn triples(&self) -> [Vec<(u64, ClassIndex, u64)>; 2] {
        let flat = |t: &FastMap<u64, BTreeMap<ClassIndex, usize>>,
                    totals: &BTreeMap<ClassIndex, usize>| {
            let mut v: Vec<(u64, ClassIndex, u64)> = t
                .iter()
                .flat_map(|(&w, m)| m.iter().map(move |(&l, &c)| (w, l, c as u64)))
                .collect();
            v.sort_unstable();
            v.extend(totals.iter().map(|(&l, &c)| (u64::MAX, l, c as u64)));
            v
        };
        [flat(&self.df, &self.n_class), flat(&self.tf, &self.tokens)]
    }

    /// The inverse of [`ClassWords::triples`].
    pub(super) fn from_triples(
        df: &[(u64, ClassIndex, u64)],
        tf: &[(u64, ClassIndex, u64)],
    ) -> Self {
        let mut words = ClassWords::default();
        let fill = |src: &[(u64, ClassIndex, u64)],
                    t: &mut FastMap<u64, BTreeMap<ClassIndex, usize>>,
                    totals: &mut BTreeMap<ClassIndex, usize>| {
            for &(w, l, c) in src {
                let c = usize::try_from(c).unwrap_or(usize::MAX);
                if w == u64::MAX {
                    totals.insert(l, c);
                } else {
                    t.entry(w).or_default().insert(l, c);
                }
            }
        };
        fill(df, &mut words.df, &mut words.n_class);
        fill(tf, &mut words.tf, &mut words.tokens);
        words
    }

    /// Occurrences of `w` in class `l`.
    fn tf(&self, w: u64, l: ClassIndex) -> usize {
        self.tf
            .get(&w)
            .and_then(|m| m.get(&l))
            .copied()
            .unwrap_or(0)
    }

    /// Words in class `l`.
    fn tokens(&self, l: ClassIndex) -> usize {
        self.tokens.get(&l).copied().unwrap_or(0)
    }

    /// Distinct words.
    fn vocabulary(&self) -> usize {
        self.tf.len()
    }

    /// Rows of class `l` containing `w`.
    pub(super) fn df(&self, w: u64, l: ClassIndex) -> usize {
        self.df
            .get(&w)
            .and_then(|m| m.get(&l))
            .copied()
            .unwrap_or(0)
    }

    /// Rows of class `l`.
    pub(super) fn n(&self, l: ClassIndex) -> usize {
        self.n_class.get(&l).copied().unwrap_or(0)
    }
}

/// Per label seen in a 1:1 tie: how often each reader found it out of place.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    /// Ties the label takes part in.
    pub(super) tied: usize,
    /// Ties in which each reader ([`READERS`]) found it out of place.
    pub(super) out_of_place: [usize; N_READERS],
    /// ln p of each reader's count.
    pub(super) ln_p: [f64; N_READERS],
}

impl Tally {
    /// The reader with the smaller p: (its name, its count, its ln p).
    fn best(&self) -> (usize, usize, f64) {
        let mut i = 0;
        for j in 1..N_READERS {
            if self.ln_p[j] < self.ln_p[i] {
                i = j;
            }
        }
        (i, self.out_of_place[i], self.ln_p[i])
    }
}

/// Number of readers of a tie.
const N_READERS: usize = 3;

/// Names of the readers: the two naive-Bayes readers of the shared words, and the rarity of
/// the words each side does not share.
pub(super) const READERS: [&str; N_READERS] = ["multinomial", "bernoulli", "rarity"];

/// How the evidence sentence names each reader.
const READER_PHRASES: [&str; N_READERS] = [
    "multinomial naive Bayes finds",
    "Bernoulli naive Bayes finds",
    "the rarity of the replaced words puts",
];

/// The labels found to be the flips' target, with their evidence.
#[derive(Debug, Clone, Default)]
pub(super) struct Direction {
    /// Per label seen in a 1:1 tie.
    pub(super) tally: BTreeMap<ClassIndex, Tally>,
    /// 1:1 ties read.
    pub(super) ties: usize,
    /// Labels whose ln p is at most ln(alpha / (2 · labels tested)) for either reader, most
    /// significant first.
    pub(super) targets: Vec<ClassIndex>,
    /// The level used.
    pub(super) alpha: f64,
}

impl Direction {
    /// The target label that resolves a tie among `tops`, when exactly one of them is a target.
    pub(super) fn resolves(&self, tops: &[ClassIndex]) -> Option<ClassIndex> {
        let hit: Vec<ClassIndex> = tops
            .iter()
            .copied()
            .filter(|l| self.targets.contains(l))
            .collect();
        (hit.len() == 1).then(|| hit[0])
    }

    /// The evidence for `label` as a sentence fragment.
    pub(super) fn evidence(&self, label: &str, l: ClassIndex) -> String {
        let (i, o, lp) = self.tally.get(&l).copied().unwrap_or_default().best();
        let reader = READER_PHRASES[i];
        format!(
            "tie resolved by the flips' direction: {reader} {label} out of place in {o} of {} tied conflicts (p = {:.1e})",
            self.ties,
            lp.exp()
        )
    }

    /// The summary entry.
    pub(super) fn summary(&self, name: impl Fn(ClassIndex) -> String) -> serde_json::Value {
        json!({
            "alpha": self.alpha,
            "tied_conflicts": self.ties,
            "labels": self.tally.iter().map(|(&l, t)| json!({
                "label": name(l),
                "tied": t.tied,
                "out_of_place": READERS.iter().zip(t.out_of_place).map(|(r, o)| (r.to_string(), json!(o))).collect::<serde_json::Map<_, _>>(),
                "p_value": READERS.iter().zip(t.ln_p).map(|(r, lp)| (r.to_string(), json!(lp.exp()))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "targets": self.targets.iter().map(|&l| name(l)).collect::<Vec<_>>(),
        })
    }
}

/// Each distinct word of a word sequence with its count, sorted by word.
fn word_counts(toks: &[u64]) -> Vec<(u64, usize)> {
    let mut sorted = toks.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, usize)> = Vec::new();
    for w in sorted {
        match out.last_mut() {
            Some((x, c)) if *x == w => *c += 1,
            _ => out.push((w, 1)),
        }
    }
    out
}

/// Words present in every exact group of a cluster (the words a copy kept), sorted.
fn shared_words(core: &Core, groups: &[usize]) -> Vec<u64> {
    let mut shared: Vec<u64> = core.toks[groups[0]].clone();
    shared.sort_unstable();
    shared.dedup();
    for &g in &groups[1..] {
        shared.retain(|w| core.toks[g].contains(w));
    }
    shared
}

/// Log odds of label b against a for one tie, by each reader, trained on the rows outside it.
fn readings(
    core: &Core,
    words: &ClassWords,
    labels: &[ClassIndex],
    (rows, groups): (&[usize], &[usize]),
    (a, b): (ClassIndex, ClassIndex),
) -> [f64; N_READERS] {
    let shared = shared_words(core, groups);
    // the cluster's own rows of class l: their words, and those containing w
    let own_tokens = |l: ClassIndex, w: Option<u64>| -> usize {
        rows.iter()
            .filter(|&&r| labels[r] == l)
            .map(|&r| {
                let t = &core.toks[core.group_of[r]];
                w.map_or(t.len(), |w| t.iter().filter(|&&x| x == w).count())
            })
            .sum()
    };
    let own_rows = |l: ClassIndex, w: Option<u64>| -> usize {
        rows.iter()
            .filter(|&&r| {
                labels[r] == l && w.is_none_or(|w| core.toks[core.group_of[r]].contains(&w))
            })
            .count()
    };
    // multinomial, over the shared words with their counts in the first text
    let v = words.vocabulary() as f64;
    let z = |l: ClassIndex| (words.tokens(l).saturating_sub(own_tokens(l, None)) as f64 + v).ln();
    let (za, zb) = (z(a), z(b));
    let multinomial: f64 = word_counts(&core.toks[groups[0]])
        .iter()
        .filter(|(w, _)| shared.binary_search(w).is_ok())
        .map(|&(w, c)| {
            let ta = words.tf(w, a).saturating_sub(own_tokens(a, Some(w))) as f64;
            let tb = words.tf(w, b).saturating_sub(own_tokens(b, Some(w))) as f64;
            c as f64 * (((tb + 1.0).ln() - zb) - ((ta + 1.0).ln() - za))
        })
        .sum();
    // Bernoulli over present words, smoothed towards the pooled rate
    let na = words.n(a).saturating_sub(own_rows(a, None)) as f64;
    let nb = words.n(b).saturating_sub(own_rows(b, None)) as f64;
    let bernoulli: f64 = shared
        .iter()
        .map(|&w| {
            let da = words.df(w, a).saturating_sub(own_rows(a, Some(w))) as f64;
            let db = words.df(w, b).saturating_sub(own_rows(b, Some(w))) as f64;
            let pooled = (da + db + 1.0) / (na + nb + 2.0);
            ((db + POOLED_ROWS * pooled) / (nb + POOLED_ROWS)).ln()
                - ((da + POOLED_ROWS * pooled) / (na + POOLED_ROWS)).ln()
        })
        .sum();
    // rarity: the words one side's texts have and the other's lack. A copy made by replacing
    // words with words drawn from the vocabulary gets rare words (most of a vocabulary's words
    // are rare) where the original has the words text uses; the side whose own words are rarer
    // in the rest of the corpus is the copy. Exact copies have no such words: no reading.
    let side_words = |l: ClassIndex| -> Vec<u64> {
        let mut w: Vec<u64> = rows
            .iter()
            .filter(|&&r| labels[r] == l)
            .flat_map(|&r| core.toks[core.group_of[r]].iter().copied())
            .collect();
        w.sort_unstable();
        w.dedup();
        w
    };
    let (wa, wb) = (side_words(a), side_words(b));
    let rest_df = |w: u64| -> f64 {
        let all: usize = words.df.get(&w).map_or(0, |m| m.values().sum());
        let own = rows
            .iter()
            .filter(|&&r| core.toks[core.group_of[r]].contains(&w))
            .count();
        all.saturating_sub(own) as f64
    };
    let mean_log_df = |mine: &[u64], other: &[u64]| -> Option<f64> {
        let own: Vec<f64> = mine
            .iter()
            .filter(|w| other.binary_search(w).is_err())
            .map(|&w| (1.0 + rest_df(w)).ln())
            .collect();
        (!own.is_empty()).then(|| own.iter().sum::<f64>() / own.len() as f64)
    };
    let rarity = match (mean_log_df(&wa, &wb), mean_log_df(&wb, &wa)) {
        (Some(ra), Some(rb)) => rb - ra,
        _ => 0.0,
    };
    [multinomial, bernoulli, rarity]
}

/// Pseudo-rows of the Bernoulli reader's smoothing towards a word's pooled rate.
const POOLED_ROWS: f64 = 2.0;

/// Find the flips' direction from the 1:1 ties among `clusters` (rows, exact groups, and the
/// tied top labels). `alpha` 0 turns the test off.
pub(super) fn flip_direction(
    core: &Core,
    clusters: &[(&[usize], Vec<usize>, Vec<ClassIndex>)],
    labels: &[ClassIndex],
    alpha: f64,
    words: Option<&ClassWords>,
) -> Direction {
    let pairs: Vec<_> = clusters.iter().filter(|c| c.2.len() == 2).collect();
    let mut dir = Direction {
        alpha,
        ties: pairs.len(),
        ..Direction::default()
    };
    if alpha <= 0.0 || pairs.is_empty() {
        return dir;
    }
    let built;
    let words = match words {
        Some(w) => w,
        None => {
            built = ClassWords::new(core, labels);
            &built
        }
    };
    for (rows, groups, tops) in &pairs {
        let (a, b) = (tops[0], tops[1]);
        let lo = readings(core, words, labels, (rows, groups), (a, b));
        for l in [a, b] {
            dir.tally.entry(l).or_default().tied += 1;
        }
        for (i, &x) in lo.iter().enumerate() {
            // positive log odds of b: a is out of place
            let out = if x > 0.0 {
                Some(a)
            } else if x < 0.0 {
                Some(b)
            } else {
                None
            };
            if let Some(o) = out {
                dir.tally.entry(o).or_default().out_of_place[i] += 1;
            }
        }
    }
    let total: usize = words.n_class.values().sum();
    let share = |l: ClassIndex| words.n(l) as f64 / total.max(1) as f64;
    let sum_sq: f64 = words.n_class.keys().map(|&l| share(l) * share(l)).sum();
    let cut = (alpha / (N_READERS * dir.tally.len()).max(1) as f64).ln();
    let n_ties = dir.ties as u64;
    for (&l, t) in dir.tally.iter_mut() {
        let pi = (share(l) * (1.0 - share(l)) / (1.0 - sum_sq).max(f64::MIN_POSITIVE)).min(1.0);
        for i in 0..N_READERS {
            t.ln_p[i] = ln_binomial_upper(t.out_of_place[i] as u64, n_ties, pi);
        }
        if t.ln_p.iter().any(|&lp| lp <= cut) {
            dir.targets.push(l);
        }
    }
    let best = |l: &ClassIndex| dir.tally[l].best().2;
    dir.targets
        .sort_by(|x, y| best(x).total_cmp(&best(y)).then(x.cmp(y)));
    dir
}
