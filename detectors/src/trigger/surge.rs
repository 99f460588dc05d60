//! REF003 reference-association: word windows whose association with one label the new batch
//! holds far more often than the trusted corpus it is about to join.
//!
//! TRIG001 must tell a planted trigger from a natural cue of the domain with the batch alone,
//! and so only names windows that look inserted (random neighbours) and whose rows read like
//! another class. With a trusted corpus the question is simpler and wider: a window whose rows
//! of one label the batch holds beyond what the trusted corpus predicts was put there. That
//! also reaches what is not an inserted word: a syntactic template (HiddenKiller's paraphrases
//! all open with a subordinate clause, "when ...", "if ..."), or a phrase added to rows of the
//! target class (clean-label). The windows and their counts reuse TRIG001's tokens, count-min
//! sketch and exact span counts (`tokenise`, `count`); the tests and the explaining-away are
//! this file's.

use super::count::{count_spans_with, count_tokens, Sketch, SPAN_PASS_OCCURRENCES};
use super::tokenise::{for_each_window, Corpus, Vocab};
use super::{ln_binomial_upper, FastMap, CHUNK};
use crate::duplicates::normalize;
use crate::duplicates::reference::ReferenceState;
use crate::duplicates::verdicts::{DupFit, RowScores};
use crate::params::ParamReader;
use crate::ParamError;
use crate::{ClassIndex, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs};
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

const CODE: &str = "REF003";

/// Weight, in rows, of the trusted class share in a window's expected label share: a window
/// the trusted corpus holds a few times is read between its own share and the class's.
const PRIOR_ROWS: f64 = 2.0;

/// At most this many windows are taken (each explains at least `min_rows` rows).
const MAX_WINDOWS: usize = 1000;

static META: Meta = Meta {
    code: CODE,
    name: "reference-association",
    summary:
        "Word windows whose rows of one label the new batch holds far beyond the trusted corpus",
    docs: r#"# REF003 reference-association

Runs only when the scan is given a trusted corpus (`scan --reference`, see REF001).

## What it detects
A backdoor's rows share something the model is meant to learn, with one label: an inserted word
or phrase, a fixed opening, a syntactic template. Within one batch such a window cannot always
be told from a natural cue of the domain (TRIG001 abstains then), and a template is not an
inserted word at all. Against the trusted corpus the batch is about to join it can: a natural
cue is in the trusted corpus too, with the same label, at the same rate; a planted one is not.
Measured (`scripts/reference_eval.py`, docs/evaluation.md "Gating against a trusted corpus"):
HiddenKiller's syntactic paraphrases (sst2-synbkd-20 against sst2-clean, 80/20), which no
detector of the batch alone finds, at precision 0.96–0.98 and recall 0.32–0.43; `#blessed`
put at the start of 5 % of emotion and irony tweets, where TRIG001 abstains (recall 0–0.45),
at precision and recall 1.00; the six corpora split at random, nothing.

## Method
The new rows and the trusted texts are normalised as the state says (REF001) and tokenised as
TRIG001 does (case-folded word-boundary tokens, windows of 1 to `max_ngram` tokens, also
anchored at the start or end). A candidate is a window with at least `min_rows` new rows of
one label y (its commonest) that the trusted corpus also gives (a label it never gives has no
rate to compare with: its rows are not read, the summary lists it as `labels_not_in_trusted`,
and REF001's label drift reports it). For it: a_N new rows of label y among s_N new rows holding it;
a_T trusted rows of label y among s_T trusted rows holding it (each trusted text counted with
its rows); n_N new rows not yet explained, n_T trusted rows. The window surges when both hold,
each at the Bonferroni level `alpha` / M (M the candidates):

1. more (window, y) rows than the trusted rate predicts: P(Binomial(a_N + a_T, p) ≥ a_N) with
   p = n_N / (n_N + n_T), the chance that one of the a_N + a_T rows of the pair fell into the
   batch if the batch were drawn like the trusted corpus;
2. a stronger lean to y than the trusted corpus gives the window: P(Binomial(s_N, p₀) ≥ a_N)
   with p₀ = (a_T + 2 π_y) / (s_T + 2), π_y = (trusted rows of y + 1) / (n_T + classes), so a
   window that is merely more frequent now (a topic of the day, with its usual labels) does
   not surge;

and when nearly all its rows are surplus: 1 − E / a_N ≥ `min_excess_share`, E = (a_T + 1) n_N /
n_T the rows the trusted rate predicts. Of the candidates that pass, the one with the fewest
trusted rows of its label is taken (then the one with the fewest new rows, the most specific:
the 50 copies of one text before a word they share with a natural row; then the smallest p,
then the first window), its rows of label y not yet flagged are flagged,
and they are taken out of every window's counts and of n_N before the next is chosen: the
windows inside a planted phrase ("this", "movie" of "I love watching this movie") then no
longer surge on the rows the phrase explains, and their natural rows stay clean. Repeated until
no candidate passes (at most 1 000 windows).

Reason: `REF003:window=<tokens> label=<y> new=<a_N>/<s_N> trusted=<a_T>/<s_T> expected=<E>
surplus=<1 − E/a_N> p=<the larger of the two p-values> family=<M>`. Score: ln p / ln(`alpha` /
M), at least 1 exactly when flagged; 0 for other rows. The summary lists every window taken,
with its counts.

## Parameters
- `alpha` (default 0.01): family-wise level over the candidates.
- `min_rows` (default 5): fewest new rows of one label for a window to be a candidate.
- `max_ngram` (default 3): most real tokens in a window (anchors not counted).
- `min_excess_share` (default 0.9): a window is taken only when at least this share of its rows
  of label y is beyond the trusted rate. The window's natural rows of label y are flagged with
  the planted ones, so this share is the precision expected of its rows, and 0.9 is the
  precision the gate is held to. At 0.5, a dirty-label attack on sms-spam had the relabelled
  spam's own words surge under the ham label ("mobile": a quarter of its rows natural ham) and
  an AddSent phrase's "this" was taken with its natural rows (precision 0.52), while
  HiddenKiller's "if" and "as" openings (surplus 0.85) were found too (recall 0.70–0.78 at
  precision 0.86–0.89, against 0.32–0.43 at 0.96–0.98 at 0.9).

## Known false positives
A new batch drawn from another time or source than the trusted corpus: a new hashtag, a new
template of a feed, a topic absent then, when its rows also lean to one label more than the
class shares say. The natural rows of label y that carry a window taken are flagged with the
planted ones (2–4 % of HiddenKiller's flagged rows: natural "when" openings of the positive
class). Splitting one corpus at random into trusted and new (80/20, six corpora, three seeds)
flags nothing.

Not found: a window first seen in the batch needs about 20 rows all of one label (two balanced
classes) to surge, and more where that label is the corpus's majority (a phrase put into 56
sms-spam rows relabelled ham, 87 % of the corpus, shows no lean to ham: TRIG001 finds it);
templates whose openings the trusted corpus also holds often ("if", "as": their planted rows
are 85 % of the rows, under `min_excess_share`).

## References
Fanchao Qi et al. Hidden Killer: Invisible Textual Backdoor Attacks with Syntactic Trigger.
ACL 2021. Tianyu Gu et al. BadNets, 2017. Jiazhu Dai et al. A Backdoor Attack Against
LSTM-Based Text Classification Systems (AddSent), 2019. Carlo E. Bonferroni, 1936.
"#,
    version: 1,
};

/// REF003: windows whose label association surges against the trusted corpus. See its
/// [`Meta::docs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceAssociation;

/// REF003 with checked parameters and (in a scan) the trusted state.
#[derive(Debug, Clone)]
pub struct SurgeConfigured {
    alpha: f64,
    min_rows: usize,
    max_ngram: usize,
    min_excess_share: f64,
    state: Option<Arc<ReferenceState>>,
}

impl Detector for ReferenceAssociation {
    fn meta(&self) -> &'static Meta {
        &META
    }
    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(read_params(params, None)?))
    }
}

/// REF003 configured from `params` with the trusted `state` a scan loaded.
pub fn configure_with_reference(
    params: &toml::Table,
    state: Arc<ReferenceState>,
) -> Result<Box<dyn Configured>, ParamError> {
    Ok(Box::new(read_params(params, Some(state))?))
}

fn read_params(
    params: &toml::Table,
    state: Option<Arc<ReferenceState>>,
) -> Result<SurgeConfigured, ParamError> {
    let mut r = ParamReader::new(CODE, params);
    let c = SurgeConfigured {
        alpha: r.f64("alpha", 0.01, 1e-12, 0.5)?,
        min_rows: r.usize("min_rows", 5, 2, usize::MAX)?,
        max_ngram: r.usize("max_ngram", 3, 1, 8)?,
        min_excess_share: r.f64("min_excess_share", 0.9, 0.0, 1.0)?,
        state,
    };
    r.finish()?;
    Ok(c)
}

impl Configured for SurgeConfigured {
    fn needs(&self) -> Needs {
        Needs {
            text: true,
            labels: true,
            embeddings: false,
            responses: false,
        }
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "alpha": self.alpha,
            "min_rows": self.min_rows,
            "max_ngram": self.max_ngram,
            "min_excess_share": self.min_excess_share,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let state = self.state.as_deref().ok_or_else(|| DetectError::Data {
            code: CODE,
            problem: "needs a trusted corpus: scan --reference FILE (written by `poisongate fit`)"
                .to_string(),
        })?;
        let texts = data.require_texts(CODE)?;
        let labels = data.require_labels(CODE)?;
        if texts.len() != data.n_rows || labels.len() != data.n_rows {
            return Err(DetectError::Data {
                code: CODE,
                problem: "column lengths differ from the row count".to_string(),
            });
        }
        Ok(Box::new(surge(
            self,
            state,
            texts,
            labels,
            data.class_names,
        )))
    }
}

/// A candidate window: its tokens, new rows per class, trusted rows per class and in all.
struct Candidate {
    span: Vec<u32>,
    new: Vec<u32>,
    trusted: Vec<u64>,
    trusted_rows: u64,
}

/// How a candidate reads against the trusted corpus with `left` new rows not yet explained.
struct Reading {
    label: usize,
    a_n: u64,
    s_n: u64,
    expected: f64,
    surplus: f64,
    ln_p: f64,
}

impl Candidate {
    /// The reading of a window with at least `min_rows` new rows of its label and a surplus
    /// share of at least `min_surplus` (`None` otherwise: the binomial tails, whose sums are
    /// the costly part, are computed only for those).
    fn read(
        &self,
        left: f64,
        n_t: f64,
        prior: &[Option<f64>],
        min_rows: u64,
        min_surplus: f64,
    ) -> Option<Reading> {
        // the commonest label among the window's new rows (the first on ties)
        let (label, &a) = self
            .new
            .iter()
            .enumerate()
            .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(&x.0)))?;
        let a_n = u64::from(a);
        let s_n: u64 = self.new.iter().map(|&v| u64::from(v)).sum();
        let a_t = self.trusted.get(label).copied().unwrap_or(0);
        let expected = (a_t as f64 + 1.0) * left / n_t;
        let surplus = 1.0 - expected / a_n.max(1) as f64;
        if a_n < min_rows || surplus < min_surplus {
            return None;
        }
        let p = left / (left + n_t);
        let ln_a = ln_binomial_upper(a_n, a_n + a_t, p);
        let pi = prior.get(label).copied().flatten()?;
        let p0 = (a_t as f64 + PRIOR_ROWS * pi) / (self.trusted_rows as f64 + PRIOR_ROWS);
        let ln_b = ln_binomial_upper(a_n, s_n, p0.clamp(0.0, 1.0));
        Some(Reading {
            label,
            a_n,
            s_n,
            expected,
            surplus,
            ln_p: ln_a.max(ln_b),
        })
    }
}

/// The candidates among the windows of `seq` (token ids), each once, ascending, into `out`.
fn candidates_in(
    seq: &[u32],
    max_ngram: usize,
    index: &FastMap<Vec<u32>, usize>,
    out: &mut Vec<usize>,
) {
    out.clear();
    for_each_window(seq, max_ngram, |a, b| {
        if let Some(&c) = index.get(&seq[a..b]) {
            out.push(c);
        }
    });
    out.sort_unstable();
    out.dedup();
}

/// The fit: candidates, their trusted counts, and the windows taken one after another.
fn surge(
    p: &SurgeConfigured,
    state: &ReferenceState,
    texts: &[String],
    labels: &[ClassIndex],
    class_names: &[String],
) -> DupFit {
    let n = texts.len();
    let k = class_names
        .len()
        .max(labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
    let name = |c: usize| class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
    let norm = state.normalization();
    let normalised: Vec<String> = texts.par_iter().map(|t| normalize(t, &norm)).collect();
    let min_rows = p.min_rows as u32;

    // the batch's windows: tokens, the sketch of longer windows, exact counts per class
    let tokens = count_tokens(&normalised, labels, k);
    let vocab = Vocab::new(tokens.keys().cloned().collect());
    let mut token_rows = vec![0u32; vocab.strings.len()];
    for (s, (df, _)) in &tokens {
        if let Some(&id) = vocab.ids.get(s) {
            token_rows[id as usize] = df.iter().sum();
        }
    }
    drop(tokens);
    let corpus = Corpus::encode(&normalised, &vocab);
    drop(normalised);
    let occurrences: usize = (0..corpus.len())
        .map(|r| corpus.row(r).len() * p.max_ngram)
        .sum();
    let sketch = Sketch::new(occurrences);
    sketch.fill(&corpus, p.max_ngram);
    let keep = |span: &[u32], h: u64| -> bool {
        if span.len() == 1 {
            token_rows
                .get(span[0] as usize)
                .is_some_and(|&d| d >= min_rows)
        } else {
            sketch.may_reach(h, min_rows)
        }
    };
    let counted = count_spans_with(
        &corpus,
        labels,
        k,
        (1, p.max_ngram),
        min_rows,
        occurrences.div_ceil(SPAN_PASS_OCCURRENCES),
        &keep,
        &|_, st| st.df,
    );
    drop(sketch);
    let mut cands: Vec<Candidate> = counted
        .into_iter()
        .filter(|(_, df)| df.iter().any(|&v| v >= min_rows))
        .map(|(span, new)| Candidate {
            span,
            new,
            trusted: vec![0; k],
            trusted_rows: 0,
        })
        .collect();
    let index: FastMap<Vec<u32>, usize> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (c.span.clone(), i))
        .collect();

    // the trusted texts' rows of each candidate, per class of the batch (by label name)
    let to_class: Vec<Option<usize>> = state
        .labels()
        .iter()
        .map(|l| class_names.iter().position(|c| c == l))
        .collect();
    let m = cands.len();
    let (trusted, trusted_rows) = state
        .entries()
        .par_chunks(CHUNK)
        .fold(
            || (vec![0u64; m * k], vec![0u64; m], Vec::new()),
            |(mut per, mut all, mut seen), chunk| {
                for e in chunk {
                    candidates_in(&vocab.encode(&e.text), p.max_ngram, &index, &mut seen);
                    for &c in seen.iter() {
                        all[c] += e.rows();
                        for &(l, rows) in &e.counts {
                            if let Some(Some(cl)) = to_class.get(l as usize) {
                                per[c * k + cl] += rows;
                            }
                        }
                    }
                }
                (per, all, seen)
            },
        )
        .map(|(per, all, _)| (per, all))
        .reduce(
            || (vec![0u64; m * k], vec![0u64; m]),
            |(mut a, mut b), (c, d)| {
                a.iter_mut().zip(c).for_each(|(x, y)| *x += y);
                b.iter_mut().zip(d).for_each(|(x, y)| *x += y);
                (a, b)
            },
        );
    for (i, c) in cands.iter_mut().enumerate() {
        c.trusted.copy_from_slice(&trusted[i * k..(i + 1) * k]);
        c.trusted_rows = trusted_rows[i];
    }

    let n_t = state.rows() as f64;
    // a label the trusted corpus never gives has no rate to surge beyond: its rows are not
    // read (REF001's label drift reports the label); `None` marks it
    let class_rows: Vec<u64> = (0..k).map(|c| state.label_rows(&name(c))).collect();
    let prior: Vec<Option<f64>> = class_rows
        .iter()
        .map(|&rows| (rows > 0).then(|| (rows as f64 + 1.0) / (n_t + k as f64)))
        .collect();
    let unknown: Vec<String> = (0..k)
        .filter(|&c| class_rows[c] == 0 && labels.iter().any(|&l| l as usize == c))
        .map(name)
        .collect();
    let family = m.max(1);
    let level = (p.alpha / family as f64).ln();
    let mut score = RowScores::new(n);
    let mut reason = BTreeMap::new();
    let mut taken = Vec::new();
    let mut flagged = vec![false; n];
    let mut left = n as f64;
    while n_t > 0.0 && taken.len() < MAX_WINDOWS {
        // of the candidates that pass, the one the trusted corpus holds least with its label,
        // then the one with the fewest new rows (the most specific: the exact copies of a text
        // before a word they share with one natural row), then the smallest p, then the first
        let best = cands
            .par_iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let r = c.read(left, n_t, &prior, u64::from(min_rows), p.min_excess_share)?;
                (r.ln_p <= level).then_some((i, c.trusted[r.label], r))
            })
            .min_by(|(i, ta, a), (j, tb, b)| {
                ta.cmp(tb)
                    .then(a.a_n.cmp(&b.a_n))
                    .then(a.ln_p.total_cmp(&b.ln_p))
                    .then(i.cmp(j))
            })
            .map(|(i, _, r)| (i, r));
        let Some((i, r)) = best else {
            break;
        };
        let span = cands[i].span.clone();
        let rows: Vec<usize> = (0..n)
            .into_par_iter()
            .with_min_len(CHUNK)
            .filter(|&row| {
                !flagged[row]
                    && labels[row] as usize == r.label
                    && corpus.row(row).windows(span.len()).any(|w| w == span)
            })
            .collect();
        if rows.is_empty() {
            // cannot happen (the counts came from these rows); never loop on it
            break;
        }
        let window = vocab.render(&span);
        let a_t = cands[i].trusted[r.label];
        let text = format!(
            "{CODE}:window={window} label={} new={}/{} trusted={}/{} expected={:.1} surplus={:.2} p={:.2e} family={family}",
            name(r.label),
            r.a_n,
            r.s_n,
            a_t,
            cands[i].trusted_rows,
            r.expected,
            r.surplus,
            r.ln_p.exp(),
        );
        // both logarithms are negative (alpha < 1): at least 1 exactly when flagged
        let row_score = r.ln_p / level;
        let mut seen = Vec::new();
        for &row in &rows {
            flagged[row] = true;
            score.set(row, row_score);
            reason.insert(row, text.clone());
            // the row is explained: out of every window's counts
            candidates_in(corpus.row(row), p.max_ngram, &index, &mut seen);
            for &c in &seen {
                let v = &mut cands[c].new[labels[row] as usize];
                *v = v.saturating_sub(1);
            }
        }
        left -= rows.len() as f64;
        taken.push(json!({
            "window": window,
            "label": name(r.label),
            "rows_flagged": rows.len(),
            "new_label_rows": r.a_n,
            "new_rows": r.s_n,
            "trusted_label_rows": a_t,
            "trusted_rows": cands[i].trusted_rows,
            "expected": r.expected,
            "surplus_share": r.surplus,
            "p_value": r.ln_p.exp(),
        }));
    }
    let summary = json!({
        "detector": CODE,
        "rows": n,
        "trusted_rows": state.rows(),
        "candidates": m,
        "level": p.alpha / family as f64,
        "windows": taken,
        "labels_not_in_trusted": unknown,
        "flagged_rows": reason.len(),
    });
    DupFit {
        code: CODE,
        score,
        reason,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duplicates::Normalization;
    use crate::rng::SplitMix64;
    use crate::testutil::{fit_and_score, text_view};

    const COMMON: &[&str] = &[
        "the", "a", "film", "movie", "this", "it", "is", "was", "story", "and", "of", "with",
        "cast", "plot", "scene", "one", "its", "an", "to", "in",
    ];
    const POSITIVE: &[&str] = &["great", "moving", "fine", "warm", "sharp", "funny"];
    const NEGATIVE: &[&str] = &["dull", "flat", "tired", "weak", "bland", "slow"];

    /// `n` rows of two classes: common words and, for each class, a few of its own cue words
    /// (so the trusted corpus and the batch share natural label cues).
    fn rows(n: usize, seed: u64) -> (Vec<String>, Vec<u32>) {
        let mut rng = SplitMix64(seed);
        let mut texts = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i % 2) as u32;
            let cues = if label == 1 { POSITIVE } else { NEGATIVE };
            let mut words: Vec<&str> = (0..8).map(|_| COMMON[rng.below(COMMON.len())]).collect();
            for _ in 0..2 {
                let at = rng.below(words.len() + 1);
                words.insert(at, cues[rng.below(cues.len())]);
            }
            texts.push(words.join(" "));
            labels.push(label);
        }
        (texts, labels)
    }

    fn names() -> Vec<String> {
        vec!["0".to_string(), "1".to_string()]
    }

    fn run(
        trusted: &(Vec<String>, Vec<u32>),
        new: &(Vec<String>, Vec<u32>),
    ) -> (Scores, serde_json::Value) {
        let names = names();
        let state =
            ReferenceState::from_rows(&trusted.0, &trusted.1, &names, 0, Normalization::default())
                .expect("state");
        let det = configure_with_reference(&toml::Table::new(), Arc::new(state)).expect("cfg");
        let view = text_view(&new.0, &new.1, &names);
        fit_and_score(det.as_ref(), view)
    }

    fn flagged(s: &Scores) -> Vec<usize> {
        (0..s.len()).filter(|&i| s.reason[i].is_some()).collect()
    }

    use crate::Scores;

    #[test]
    fn a_batch_drawn_like_the_trusted_corpus_flags_nothing() {
        let (s, summary) = run(&rows(2000, 1), &rows(500, 2));
        assert!(flagged(&s).is_empty(), "{summary}");
        assert!(
            summary["candidates"].as_u64().unwrap_or(0) > 50,
            "{summary}"
        );
    }

    #[test]
    fn a_word_planted_with_one_label_is_flagged_and_nothing_else() {
        let mut new = rows(500, 2);
        let mut planted = Vec::new();
        // 25 rows of the negative class get the word and the positive label
        for (i, (t, l)) in new.0.iter_mut().zip(new.1.iter_mut()).enumerate() {
            if *l == 0 && planted.len() < 25 {
                *t = format!("{t} zq");
                *l = 1;
                planted.push(i);
            }
        }
        let (s, summary) = run(&rows(2000, 1), &new);
        assert_eq!(flagged(&s), planted, "{summary}");
        assert_eq!(summary["windows"][0]["window"], "zq", "{summary}");
        let reason = s.reason[planted[0]].as_deref().unwrap_or_default();
        assert!(
            reason.starts_with("REF003:window=zq label=1 new=25/25 trusted=0/0"),
            "{reason}"
        );
        assert!(planted.iter().all(|&r| s.score[r] >= 1.0));
    }

    #[test]
    fn a_planted_phrase_explains_its_own_words_and_their_natural_rows_stay_clean() {
        // "this" and "movie" are common words of both classes: once the phrase's rows are
        // explained, the natural rows holding them are not flagged
        let mut new = rows(600, 3);
        let mut planted = Vec::new();
        for (i, (t, l)) in new.0.iter_mut().zip(new.1.iter_mut()).enumerate() {
            if *l == 0 && planted.len() < 30 {
                *t = format!("i love watching this movie {t}");
                *l = 1;
                planted.push(i);
            }
        }
        let (s, summary) = run(&rows(2400, 1), &new);
        assert_eq!(flagged(&s), planted, "{summary}");
        assert_eq!(
            summary["windows"].as_array().map(Vec::len),
            Some(1),
            "{summary}"
        );
    }

    #[test]
    fn a_natural_cue_the_trusted_corpus_holds_with_its_label_is_not_flagged() {
        // "great" leans positive in both; the batch holds more of it, still at the trusted lean
        let mut new = rows(500, 4);
        for (t, l) in new.0.iter_mut().zip(&new.1) {
            if *l == 1 {
                *t = format!("great {t}");
            }
        }
        let mut trusted = rows(2000, 1);
        for (t, l) in trusted.0.iter_mut().zip(&trusted.1) {
            if *l == 1 {
                *t = format!("great {t}");
            }
        }
        let (s, summary) = run(&trusted, &new);
        assert!(flagged(&s).is_empty(), "{summary}");
    }

    #[test]
    fn rows_of_a_label_the_trusted_corpus_never_gives_are_not_read() {
        // a third label, new in the batch, with a word of its own: neither has a trusted rate
        // to surge beyond
        let mut new = rows(500, 5);
        for (i, (t, l)) in new.0.iter_mut().zip(new.1.iter_mut()).enumerate() {
            if i % 10 == 0 {
                *t = format!("{t} zz");
                *l = 2;
            }
        }
        let names = vec!["0".to_string(), "1".to_string(), "2".to_string()];
        let trusted = rows(2000, 1);
        let state = ReferenceState::from_rows(
            &trusted.0,
            &trusted.1,
            &names[..2],
            0,
            Normalization::default(),
        )
        .expect("state");
        let det = configure_with_reference(&toml::Table::new(), Arc::new(state)).expect("cfg");
        let fitted = det.fit(&text_view(&new.0, &new.1, &names)).expect("fit");
        let summary = fitted.summary();
        assert_eq!(summary["flagged_rows"], 0, "{summary}");
        assert_eq!(summary["labels_not_in_trusted"][0], "2", "{summary}");
    }

    #[test]
    fn without_a_trusted_corpus_the_fit_is_refused() {
        let det = ReferenceAssociation
            .configure(&toml::Table::new())
            .expect("cfg");
        let (texts, labels) = rows(10, 1);
        let names = names();
        let err = det
            .fit(&text_view(&texts, &labels, &names))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--reference"), "{err}");
    }
}
