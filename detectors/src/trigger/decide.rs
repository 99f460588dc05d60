//! TRIG001 decision: the fit that tests the candidate windows, extends them into phrases and
//! names the triggers (the `Candidate` and `Trigger` types).

use super::carriers::Carriers;
use super::context::{
    calibrate, co_occurring, context_pass, foreign_evidence, row_scores, sorted_tokens,
    ClassReading, Foreign, NaiveBayes,
};
use super::count::{count_spans_with, count_tokens, Sketch, SpanStats, SPAN_PASS_OCCURRENCES};
use super::stats::{boundary_counts, dominant, edge_counts, ln_binomial_upper, InsertionNull};
use super::tokenise::{real_len, Corpus, FastMap, FastSet, Vocab};
use super::{TriggerFit, TriggerParams, END, START};
use crate::{DetectError, Fitted};
use std::collections::HashSet;

mod abstain;
mod context_test;
pub(super) mod lone;
mod near_misses;
mod siblings;
mod widen;
pub(super) use abstain::foreign_z_needed;
use abstain::*;
use context_test::{ln_p_context, ln_p_one_out};
use near_misses::near_misses;

#[derive(Debug, Clone)]
struct Candidate {
    span: Vec<u32>,
    df: Vec<u32>,
    support: u32,
    target: usize,
    /// (C+1)/(μ+1), worst side; infinite when no side can be tested
    excess: f64,
    ln_p_prior: f64,
    ln_p_context: Option<f64>,
    /// the context test without the target-label row its label is least explained in (see
    /// `abstain::rests_on_one_row`)
    ln_p_one_out: Option<f64>,
    /// which multiple-testing family (window length bucket)
    bucket: usize,
    /// evidence components, filled after the correction
    s_prior: f64,
    s_context: Option<f64>,
    s_random: f64,
    /// the random-neighbour score with every gap of the corpus equally likely only (no
    /// per-row reading): a window random only per row needs dirty-label evidence
    s_random_gap: f64,
    /// found inside longer words in most of its occurrences (a hashtag's "#" without its
    /// word): not an insertion whatever its neighbours, so never widened to
    cuts_words: bool,
    rows: Vec<usize>,
    /// context probability of the target of each of `rows`
    row_q: Vec<f64>,
    /// dirty-label evidence of its target-label rows, once the context test ran
    foreign: Option<Foreign>,
    /// why a candidate whose tests all passed is still not named a trigger
    abstain: Option<String>,
    /// for a window anchored at one end with two or more real tokens: the support of the same
    /// window less its token at the free end (what opens or closes the rows it continues)
    shorter_support: Option<u32>,
    /// for an unanchored window of two or more tokens: the shorter form (one end token
    /// dropped) whose rows outside the window explain its purity, if one does
    explained_by: Option<ShorterForm>,
    /// below `min_purity`, its target class carries it at a rate the other classes' rate of it
    /// cannot explain (see `abstain::beyond_natural_rate`): it may still be a planted word
    /// that also occurs naturally
    beyond_natural: bool,
}

impl Candidate {
    /// Whether the window is anchored at the start or the end of the row.
    fn anchored(&self) -> bool {
        self.span.first() == Some(&START) || self.span.last() == Some(&END)
    }

    /// Share of its rows with its target label.
    fn purity(&self) -> f64 {
        self.df.get(self.target).copied().unwrap_or(0) as f64 / self.support.max(1) as f64
    }

    /// min(s_context, s_random) once the context test ran (the prior test screened it at the
    /// nominal level); before, min(s_prior, s_random), which is below 1 for every candidate
    /// the screen rejected.
    fn evidence(&self) -> f64 {
        match self.s_context {
            Some(c) => c.min(self.s_random),
            None => self.s_prior.min(self.s_random),
        }
        .max(0.0)
    }
}

impl Trigger {
    /// The trigger's token ids (anchors included).
    pub(super) fn span(&self) -> &[u32] {
        &self.span
    }
}

#[derive(Debug, Clone)]
pub(super) struct Trigger {
    pub(super) text: String,
    span: Vec<u32>,
    pub(super) target: usize,
    pub(super) support: u32,
    pub(super) purity: f64,
    pub(super) evidence: f64,
    pub(super) ln_p_prior: f64,
    pub(super) ln_p_context: f64,
    pub(super) excess: f64,
    pub(super) context_agreement: f64,
    pub(super) foreign: Option<Foreign>,
    /// how its natural carriers are told from relabelled rows (dirty-label triggers only)
    pub(super) carriers: Option<Carriers>,
    /// tokens left out of its rows' context besides its own (co-occurring triggers')
    pub(super) exclude: Vec<u32>,
    /// target-label rows of the fit read as natural carriers (not flagged)
    pub(super) natural_rows: usize,
    /// the group of triggers inserted several times a row it belongs to (see `lone`)
    pub(super) repeated: Option<usize>,
    /// target-label rows of the fit that carry it once while its rows are `repeated` (not
    /// flagged)
    pub(super) lone_rows: usize,
    /// for a group's lead trigger: the group's word carriers among the fit's rows (flagged,
    /// see `lone`)
    pub(super) word_rows: Vec<usize>,
    pub(super) rows: Vec<usize>,
    pub(super) co_occurs: Vec<(String, usize)>,
    /// the named window this trigger was widened from (see `widen`)
    pub(super) widened_from: Option<String>,
    /// the trigger it was named beside (see `siblings`)
    pub(super) sibling_of: Option<String>,
}

/// The fit on `texts` / `labels`; `subset` gives, when the fit reads a subset of the dataset,
/// the dataset row of each fitted row and the dataset's size (row numbers in the summary are
/// the dataset's).
pub(super) fn fit(
    p: &TriggerParams,
    texts: &[String],
    labels: &[u32],
    n_classes: usize,
    class_names: &[String],
    subset: Option<(&[usize], usize)>,
) -> Result<Box<dyn Fitted>, DetectError> {
    let n_rows = texts.len();
    let class_rows: Vec<usize> = (0..n_classes)
        .map(|c| labels.iter().filter(|&&l| l as usize == c).count())
        .collect();
    let min_support = p.min_support as u32;
    // a trigger teaches its label through at least `min_support` rows of it, drawn from one
    // class or several: without a class that large there is no trigger to name, and the
    // context model (a reading per label of every row) would only grow with the labels
    if class_rows.iter().all(|&n| n < p.min_support) {
        return Ok(Box::new(TriggerFit::skipped(
            format!(
                "no label has min_support = {} rows ({} labels, the largest {} rows)",
                p.min_support,
                class_rows.iter().filter(|&&n| n > 0).count(),
                class_rows.iter().max().copied().unwrap_or(0)
            ),
            class_names,
            (texts.len(), subset.map_or(texts.len(), |(_, n)| n)),
        )));
    }

    // pass 1: token counts, the vocabulary, the encoded corpus, the sketch of longer windows
    let tokens = count_tokens(texts, labels, n_classes);
    let vocab = Vocab::new(tokens.keys().cloned().collect());
    let mut token_df = vec![vec![0u32; n_classes]; vocab.strings.len()];
    let mut token_occ = vec![0u64; vocab.strings.len()];
    for (s, (df, occ)) in tokens {
        if let Some(&id) = vocab.ids.get(&s) {
            token_df[id as usize] = df;
            token_occ[id as usize] = occ;
        }
    }
    let corpus = Corpus::encode(texts, &vocab);
    // occurrences of windows of two or more real tokens (anchored ones included), for the size
    let windows: usize = (0..corpus.len())
        .map(|r| corpus.row(r).len() * p.max_ngram.saturating_sub(1))
        .sum();
    let sketch = Sketch::new(windows);
    sketch.fill(&corpus, p.max_ngram);
    // neighbour distributions under random insertion of a word between two whitespace-separated
    // words: on the left the last token of the word before (or the start anchor), on the right
    // the first token of the word after (or the end anchor). Their second and third power sums
    // give the mean and variance of neighbour collisions, their heads the typicality test.
    let [left_counts, right_counts] = boundary_counts(texts, &vocab, false, None);
    let null_left = InsertionNull::from_counts(&left_counts, p);
    let null_right = InsertionNull::from_counts(&right_counts, p);
    // an insertion at a uniformly drawn word position of each row lands after a short row's
    // final full stop more often than a uniformly drawn gap of the corpus does, and one into
    // rows drawn from one class meets that class's words (spam's "claim", "reply"): an
    // unanchored side is also read against those nulls, and the most lenient reading counts.
    // A window random only under them must show dirty-label evidence (see `abstention`).
    let (mut left_lenient, mut right_lenient) = (Vec::new(), Vec::new());
    // only classes of at least `min_support` rows: the rows of a candidate, `min_support` or
    // more, cannot all have been drawn from a smaller class, and the null of a class of a row
    // or two (its handful of words) reads most neighbours as random; with one label a row
    // their nulls (each a table over the vocabulary, and its simulated collisions) grew with
    // the square of the rows
    let classes_present: Vec<u32> = (0..n_classes as u32)
        .filter(|&c| class_rows[c as usize] >= p.min_support)
        .collect();
    for class in std::iter::once(None).chain(classes_present.iter().map(|&c| Some(c))) {
        let [l, r] = boundary_counts(texts, &vocab, true, class.map(|c| (labels, c)));
        left_lenient.push(InsertionNull::from_counts(&l, p));
        right_lenient.push(InsertionNull::from_counts(&r, p));
    }
    // a window anchored at the end was put after a row's last token, one anchored at the start
    // before its first: their inner neighbour is drawn from those tokens, not from any position.
    // Rows of one class often end (or open) alike (a spam template's closing "150p", a
    // dateline): a trigger put at the end of rows drawn from one class collides as those rows'
    // last tokens do, so an anchored window's inner side is also read against each class's
    // edge tokens. A dirty-label attacker relabels rows drawn from the other classes, so it is
    // also read against the edge tokens of every class but its target together (one class alone
    // can be far from that pool: an insertion into joy, optimism and sadness tweets opens with
    // "@user" less often than anger tweets, and less often than the corpus does). The most
    // lenient reading counts. Per side: (all rows, each class, every class but one).
    type ByClass = Vec<(u32, InsertionNull)>;
    let edge_nulls = |end: bool| -> (InsertionNull, ByClass, ByClass) {
        let all = edge_counts(&corpus, vocab.strings.len(), end, None);
        let (mut by_class, mut others) = (Vec::new(), Vec::new());
        for &c in &classes_present {
            let own = edge_counts(&corpus, vocab.strings.len(), end, Some((labels, c)));
            let rest: Vec<f64> = all
                .iter()
                .zip(&own)
                .map(|(a, o)| (a - o).max(0.0))
                .collect();
            by_class.push((c, InsertionNull::from_counts(&own, p)));
            others.push((c, InsertionNull::from_counts(&rest, p)));
        }
        (InsertionNull::from_counts(&all, p), by_class, others)
    };
    let (null_end, end_by_class, end_others) = edge_nulls(true);
    let (null_start, start_by_class, start_others) = edge_nulls(false);

    // pass 2: exact statistics of windows the sketch lets through
    let keep = |span: &[u32], h: u64| -> bool {
        if span.len() == 1 {
            token_df
                .get(span[0] as usize)
                .is_some_and(|d| d.iter().sum::<u32>() >= min_support)
        } else {
            sketch.may_reach(h, min_support)
        }
    };
    // candidates: label-free neighbour test, purity test against the prior; each window is
    // judged as soon as its slice of the key space is counted, and its neighbour sample dropped
    let priors: Vec<f64> = class_rows
        .iter()
        .map(|&c| c as f64 / n_rows.max(1) as f64)
        .collect();
    let judge = |span: Vec<u32>, st: SpanStats| -> Candidate {
        let support = st.support();
        let (mut target, mut best) = (0usize, f64::INFINITY);
        for (c, (&k, &prior)) in st.df.iter().zip(&priors).enumerate() {
            let lp = ln_binomial_upper(k as u64, support as u64, prior);
            if lp < best {
                best = lp;
                target = c;
            }
        }
        let mut excess: f64 = 0.0;
        let mut s_random = f64::INFINITY;
        let mut s_random_gap = f64::INFINITY;
        let mut sides = 0;
        for (left, tested) in [
            (true, span.first() != Some(&START)),
            (false, span.last() != Some(&END)),
        ] {
            if tested {
                let side_null = match (
                    left,
                    span.first() == Some(&START),
                    span.last() == Some(&END),
                ) {
                    (true, _, true) => &null_end,
                    (true, _, false) => &null_left,
                    (false, true, _) => &null_start,
                    (false, false, _) => &null_right,
                };
                let neighbours = st.neighbours(left);
                // the inner side of an anchored window is read against the edge tokens of
                // the rows, the window's own rows among them: its own inner token is taken
                // out of the null (each of its rows put it there once)
                let own_token = match (
                    left,
                    span.first() == Some(&START),
                    span.last() == Some(&END),
                ) {
                    (true, _, true) => span.len().checked_sub(2).and_then(|i| span.get(i)),
                    (false, true, _) => span.get(1),
                    _ => None,
                }
                .copied();
                let own = |class: Option<u32>| {
                    own_token.map(|t| {
                        let k = match class {
                            Some(c) => st.df.get(c as usize).copied().unwrap_or(0),
                            None => support,
                        };
                        (t, f64::from(k))
                    })
                };
                let mut reading = side_null.side(&neighbours, own(None));
                let strict = reading.1;
                let edge_classes = match (
                    left,
                    span.first() == Some(&START),
                    span.last() == Some(&END),
                ) {
                    (true, _, true) => Some((&end_by_class[..], &end_others[..])),
                    (false, true, _) => Some((&start_by_class[..], &start_others[..])),
                    _ => None,
                };
                if let Some((classes, others)) = edge_classes {
                    for (c, null) in classes {
                        let r = null.side(&neighbours, own(Some(*c)));
                        if r.1 > reading.1 {
                            reading = r;
                        }
                    }
                    // the other classes together: the window's rows outside its target
                    if let Some((_, null)) = others.iter().find(|(c, _)| *c as usize == target) {
                        let outside =
                            support.saturating_sub(st.df.get(target).copied().unwrap_or(0));
                        let r = null.side(&neighbours, own_token.map(|t| (t, f64::from(outside))));
                        if r.1 > reading.1 {
                            reading = r;
                        }
                    }
                } else {
                    let lenient = if left { &left_lenient } else { &right_lenient };
                    for null in lenient {
                        let r = null.side(&neighbours, None);
                        if r.1 > reading.1 {
                            reading = r;
                        }
                    }
                }
                let (e, sr) = reading;
                excess = excess.max(e);
                s_random = s_random.min(sr);
                // per-class edge readings are part of an anchored side's null; the per-row
                // reading of an unanchored side is the lenient alternative
                let inner_side_of_anchored = if left {
                    span.last() == Some(&END)
                } else {
                    span.first() == Some(&START)
                };
                let per_row_side = !inner_side_of_anchored;
                s_random_gap = s_random_gap.min(if per_row_side { strict } else { sr });
                sides += 1;
            }
        }
        if sides == 0 {
            excess = f64::INFINITY;
            s_random = 0.0;
            s_random_gap = 0.0;
        }
        // an inserted word is a word of its own: a window found inside longer words ("#" and
        // "sparkling" in "#sparkling", a word with its full stop glued on) in more of its
        // occurrences than rows of other labels may carry a trigger is not an insertion
        let (inside, sampled) = st.inside_words();
        let cuts_words = inside as f64 > (1.0 - p.min_purity) * sampled as f64;
        if cuts_words {
            s_random = 0.0;
            s_random_gap = 0.0;
        }
        let bucket = real_len(&span).min(p.max_ngram);
        Candidate {
            span,
            df: st.df,
            support,
            target,
            excess,
            s_random,
            s_random_gap,
            cuts_words,
            ln_p_prior: (best + (n_classes as f64).ln()).min(0.0),
            ln_p_context: None,
            ln_p_one_out: None,
            bucket,
            s_prior: 0.0,
            s_context: None,
            rows: Vec::new(),
            row_q: Vec::new(),
            foreign: None,
            abstain: None,
            shorter_support: None,
            explained_by: None,
            beyond_natural: false,
        }
    };
    // the candidate, and for a window of `ext_len` real tokens the phrases one token longer
    // whose neighbour is nearly fixed (phrase extension)
    let judged = |ext_len: usize, span: &[u32], st: SpanStats| -> (Candidate, Vec<Vec<u32>>) {
        let ext = if real_len(span) == ext_len {
            extensions(span, &st, p.extend_share)
        } else {
            Vec::new()
        };
        (judge(span.to_vec(), st), ext)
    };
    // every window occurrence up to max_ngram real tokens, single tokens included
    let occurrences: usize = (0..corpus.len())
        .map(|r| corpus.row(r).len() * p.max_ngram)
        .sum();
    let mut spans = count_spans_with(
        &corpus,
        labels,
        n_classes,
        (1, p.max_ngram),
        min_support,
        occurrences.div_ceil(SPAN_PASS_OCCURRENCES),
        &keep,
        &|span, st| judged(p.max_ngram, span, st),
    );
    drop(sketch);

    // phrase extension: spans of the longest counted length whose neighbour is nearly fixed
    let mut frontier: Vec<Vec<u32>> = spans
        .values_mut()
        .flat_map(|(_, ext)| std::mem::take(ext))
        .collect();
    let mut len = p.max_ngram + 1;
    while !frontier.is_empty() && len <= p.max_phrase_tokens {
        frontier.sort();
        frontier.dedup();
        frontier.retain(|s| !spans.contains_key(s));
        let wanted: FastSet<Vec<u32>> = frontier.iter().cloned().collect();
        let keep_ext = |span: &[u32], _h: u64| wanted.contains(span);
        let mut found = count_spans_with(
            &corpus,
            labels,
            n_classes,
            (len - 1, len),
            min_support,
            1,
            &keep_ext,
            &|span, st| judged(len, span, st),
        );
        frontier = found
            .values_mut()
            .flat_map(|(_, ext)| std::mem::take(ext))
            .collect();
        spans.extend(found);
        len += 1;
    }
    // candidates in span order
    let mut cands: Vec<Candidate> = spans.into_values().map(|(c, _)| c).collect();
    // an anchored window's shorter form (its free-end token dropped), for the continuation test
    let support_of: FastMap<&[u32], u32> = cands
        .iter()
        .map(|c| (c.span.as_slice(), c.support))
        .collect();
    let shorter: Vec<Option<u32>> = cands
        .iter()
        .map(|c| {
            shorter_span(&c.span)
                // an ending or opening of punctuation alone ("." before the end) is every
                // row's: a word appended before it is not continuing an opening
                .filter(|s| {
                    s.iter().any(|&t| {
                        vocab.strings.get(t as usize).is_some_and(|w| {
                            t != START && t != END && w.chars().any(char::is_alphanumeric)
                        })
                    })
                })
                .and_then(|s| support_of.get(s).copied())
        })
        .collect();
    drop(support_of);
    for (c, s) in cands.iter_mut().zip(shorter) {
        c.shorter_support = s;
    }
    // an unanchored window's shorter forms, read in the rows outside it (see `shorter_forms`)
    let explained = shorter_forms(p, &cands);
    for (c, e) in cands.iter_mut().zip(explained) {
        c.explained_by = e;
    }
    // read only where it is used: windows below `min_purity`
    for c in cands.iter_mut() {
        c.beyond_natural = c.purity() < p.min_purity && beyond_natural_rate(p, c, &class_rows);
    }
    // the shorter forms a named window may be widened to (see `widen`)
    let widen_from = widen::extensions_of(p, &cands);

    // multiple testing: alpha split equally over the window-length buckets, each share divided
    // by the candidates of that bucket that passed the (label-free) neighbour filter
    let mut per_bucket = vec![0usize; p.max_ngram + 1];
    for c in &cands {
        if c.s_random >= 1.0 {
            per_bucket[c.bucket] += 1;
        }
    }
    let n_buckets = per_bucket.iter().filter(|&&m| m > 0).count().max(1);
    let ln_alpha = p.alpha.ln();
    let ln_m: Vec<f64> = per_bucket
        .iter()
        .map(|&m| ((m.max(1) * n_buckets) as f64).ln())
        .collect();
    let sig = |ln_p: f64, bucket: usize| -> f64 { ((ln_p + ln_m[bucket]) / ln_alpha).max(0.0) };
    for c in &mut cands {
        c.s_prior = sig(c.ln_p_prior, c.bucket);
    }

    // context test for the suspects: random neighbours and purity against the prior at the
    // nominal level (a screen; the corrected levels apply to the context test). The tokens of
    // the suspects that pass the corrected prior test are left out of the context model, so
    // that co-occurring triggers do not explain each other.
    let ln_alpha_nominal = p.alpha.ln();
    let suspects: Vec<usize> = (0..cands.len())
        .filter(|&i| {
            let c = &cands[i];
            let pure = c.df[c.target] as f64 >= p.min_purity * c.support as f64;
            (c.ln_p_prior <= ln_alpha_nominal || pure) && c.s_random >= 1.0
        })
        .collect();
    let mut masked = vec![false; vocab.strings.len()];
    masked[START as usize] = true;
    masked[END as usize] = true;
    let nb = NaiveBayes::new(&token_df, &masked, &class_rows);
    let tau = calibrate(
        &row_scores(&corpus, labels, &nb, n_classes),
        labels,
        n_classes,
    );
    // the classes are read for the labels candidates name as their target (see `ClassReading`)
    let cand_targets: Vec<usize> = cands.iter().map(|c| c.target).collect();
    let reading = ClassReading::new(&corpus, labels, &nb, n_classes, tau, &cand_targets);
    let suspect_spans: Vec<Vec<u32>> = suspects.iter().map(|&i| cands[i].span.clone()).collect();
    let targets: Vec<usize> = suspects.iter().map(|&i| cands[i].target).collect();
    let suspect_index: FastMap<Vec<u32>, usize> = suspect_spans
        .iter()
        .enumerate()
        .map(|(j, s)| (s.clone(), j))
        .collect();
    let max_len = cands.iter().map(|c| real_len(&c.span)).max().unwrap_or(1);
    // first pass: the rest of the row is the row without the candidate's own tokens
    let own: Vec<Vec<u32>> = suspect_spans.iter().map(|s| sorted_tokens(s)).collect();
    let pass = |exclude: &[Vec<u32>]| {
        context_pass(
            &corpus,
            labels,
            &nb,
            &suspect_index,
            &targets,
            exclude,
            max_len,
            tau,
        )
    };
    let none: Vec<Vec<u32>> = vec![Vec::new(); suspect_spans.len()];
    let first = pass(&none);
    // suspects that co-occur far beyond what their labels explain (several triggers planted
    // together) must not explain each other: leave the partners' tokens out as well
    let partners = co_occurring(&first, &own, &targets, &class_rows, p.min_support);
    let exclude: Vec<Vec<u32>> = (0..suspect_spans.len())
        .map(|j| {
            let mut t = Vec::new();
            for &h in &partners[j] {
                t.extend_from_slice(&own[h]);
            }
            t.sort_unstable();
            t.dedup();
            t
        })
        .collect();
    let postings = if partners.iter().any(|p| !p.is_empty()) {
        drop(first);
        pass(&exclude)
    } else {
        first
    };
    let ln_slack = p.context_slack.ln();
    let mut agreement = vec![0.0f64; cands.len()];
    // a suspect's context test, rows and dirty-label evidence from its postings
    let read = |c: &mut Candidate, occ: &[(u32, u32, f64)]| -> f64 {
        let target = c.target;
        let lp = ln_p_context(occ, target, ln_slack);
        c.ln_p_context = Some(lp);
        c.s_context = Some(sig(lp, c.bucket));
        // read only where the context test passed: a window that fails it is not named anyway
        c.ln_p_one_out = (sig(lp, c.bucket) >= 1.0).then(|| ln_p_one_out(occ, target, ln_slack));
        // only rows of the target label can be poison: a trigger's other rows are flagged by
        // no one (they teach the model nothing about the trigger)
        c.rows = occ
            .iter()
            .filter(|&&(_, l, _)| l as usize == target)
            .map(|&(r, _, _)| r as usize)
            .collect();
        let target_q: Vec<f64> = occ
            .iter()
            .filter(|&&(_, l, _)| l as usize == target)
            .map(|&(_, _, q)| q)
            .collect();
        c.foreign = foreign_evidence(&target_q, &reading, target);
        c.row_q = target_q;
        if occ.is_empty() {
            0.0
        } else {
            occ.iter().map(|&(_, _, q)| q).sum::<f64>() / occ.len() as f64
        }
    };
    for (j, &i) in suspects.iter().enumerate() {
        agreement[i] = read(&mut cands[i], &postings[j]);
    }
    // the foreign test is one more test of every anchored or row-random candidate that
    // reaches it: its level is the detector's `alpha` shared among them (Bonferroni), as the
    // context test's is. For a window whose purity is not significant against its label's
    // share it is a further condition on a candidate that already passed the corrected
    // context test, and read at that same level; counting those (every common word of the
    // majority class in long rows) would make the other readings stricter by their number
    let foreign_tested = suspects
        .iter()
        .filter(|&&i| {
            cands[i].evidence() >= 1.0
                && needs_foreign(p, &cands[i]).is_some_and(|n| n.share)
                && natural_continuation(p, &cands[i]).is_none()
                && cands[i].explained_by.is_none()
        })
        .count();
    let z_needed = foreign_z_needed(p, foreign_tested);
    for &i in &suspects {
        cands[i].abstain = abstention(p, &cands[i], z_needed);
    }

    // accept triggers by support; a window containing an accepted trigger is not separate
    let mut order: Vec<usize> = (0..cands.len())
        .filter(|&i| cands[i].evidence() >= 1.0 && cands[i].abstain.is_none())
        .collect();
    order.sort_by(|&a, &b| {
        cands[b]
            .support
            .cmp(&cands[a].support)
            .then(real_len(&cands[a].span).cmp(&real_len(&cands[b].span)))
            .then(cands[a].span.cmp(&cands[b].span))
    });
    let mut accepted: Vec<usize> = Vec::new();
    for i in order {
        let core = strip(&cands[i].span);
        if accepted
            .iter()
            .any(|&a| contains(core, strip(&cands[a].span)))
        {
            continue;
        }
        accepted.push(i);
    }
    // an anchored trigger named on dirty-label evidence is confirmed without the rows of the
    // other triggers: a phrase relabelling 163 emotion tweets to sadness flattens the context
    // model and dilutes the sadness class, and the corpus's own closing "# sad" then read as
    // foreign (share 0.74, z 3.02; 0.38 and 1.3 without the phrase's rows)
    if accepted.len() > 1 {
        let mut rejected = Vec::new();
        for &i in &accepted {
            let c = &cands[i];
            if !c.anchored() {
                continue;
            }
            let own_rows: HashSet<usize> = c.rows.iter().copied().collect();
            let others = rows_of_others(&cands, &accepted, i);
            let keep: Vec<usize> = (0..n_rows)
                .filter(|r| own_rows.contains(r) || !others.contains(r))
                .collect();
            if keep.len() == n_rows {
                continue;
            }
            let j = suspects.iter().position(|&s| s == i);
            let excluded = j.map(|j| exclude[j].clone()).unwrap_or_default();
            let foreign = foreign_without(
                texts, labels, &keep, n_classes, &vocab, &masked, c, &excluded, max_len,
            );
            let probe = Candidate {
                span: c.span.clone(),
                df: c.df.clone(),
                rows: Vec::new(),
                row_q: Vec::new(),
                foreign,
                abstain: None,
                ..*c
            };
            if let Some(reason) = abstention(p, &probe, z_needed) {
                let reason = format!("{reason}, once the rows of the other triggers are left out");
                rejected.push((i, reason, foreign));
            }
        }
        for (i, reason, foreign) in rejected {
            accepted.retain(|&a| a != i);
            cands[i].abstain = Some(reason);
            cands[i].foreign = foreign;
        }
    }
    // a trigger seen mostly in rows of no other trigger is confirmed on those rows: one
    // relabelled row carrying a planted trigger had made an SMS abbreviation ("sn", five ham
    // rows, four of them clean) pass the context test. Triggers planted together (two or three
    // a row) share most of their rows and are read together, as the partners above.
    if accepted.len() > 1 {
        let mut rejected = Vec::new();
        for &i in &accepted {
            let Some(j) = suspects.iter().position(|&s| s == i) else {
                continue;
            };
            let others = rows_of_others(&cands, &accepted, i);
            let alone: Vec<(u32, u32, f64)> = postings[j]
                .iter()
                .filter(|&&(r, _, _)| !others.contains(&(r as usize)))
                .copied()
                .collect();
            if alone.len() == postings[j].len() || 2 * alone.len() < postings[j].len() {
                continue;
            }
            let c = &cands[i];
            let support = alone
                .iter()
                .filter(|&&(_, l, _)| l as usize == c.target)
                .count();
            let s_alone = sig(ln_p_context(&alone, c.target, ln_slack), c.bucket);
            if support < p.min_support || s_alone < 1.0 {
                rejected.push((
                    i,
                    format!(
                        "context test fails on its {support} target-label rows without the \
                         other triggers (evidence {s_alone:.2})"
                    ),
                ));
            }
        }
        for (i, reason) in rejected {
            accepted.retain(|&a| a != i);
            cands[i].abstain = Some(reason);
        }
    }
    // a word abstained on only for want of dirty-label evidence, planted one a row beside the
    // named triggers of its target
    let siblings = siblings::name(p, &mut cands, &mut accepted, &suspects, &class_rows);
    // the shorter forms the accepted triggers may be widened to: read as the suspects were
    // (the same context model; their extension's partners left out), then judged
    let shorter: Vec<(usize, usize)> = accepted
        .iter()
        .filter_map(|&w| {
            (0..cands.len())
                .find(|&s| widen_from[s] == Some(w))
                .map(|s| (s, w))
        })
        .filter(|(s, _)| !accepted.contains(s))
        .collect();
    if !shorter.is_empty() {
        let spans: FastMap<Vec<u32>, usize> = shorter
            .iter()
            .enumerate()
            .map(|(j, &(s, _))| (cands[s].span.clone(), j))
            .collect();
        let targets: Vec<usize> = shorter.iter().map(|&(s, _)| cands[s].target).collect();
        let partners: Vec<Vec<u32>> = shorter
            .iter()
            .map(|&(_, w)| {
                suspects
                    .iter()
                    .position(|&x| x == w)
                    .map(|j| exclude[j].clone())
                    .unwrap_or_default()
            })
            .collect();
        let occ = context_pass(
            &corpus, labels, &nb, &spans, &targets, &partners, max_len, tau,
        );
        for (j, &(s, _)) in shorter.iter().enumerate() {
            agreement[s] = read(&mut cands[s], &occ[j]);
        }
    }
    let widened = widen::widen(p, &mut cands, &mut accepted, &widen_from, z_needed);
    let mut triggers: Vec<Trigger> = accepted
        .iter()
        .map(|&i| {
            let c = &cands[i];
            let widened_from = widened
                .iter()
                .find(|&&(s, _)| s == i)
                .map(|&(_, w)| vocab.render(&cands[w].span));
            let sibling_of = siblings
                .iter()
                .find(|&&(s, _)| s == i)
                .map(|&(_, a)| vocab.render(&cands[a].span));
            // a trigger whose rows carry dirty-label evidence: its rows that read like their
            // label are natural carriers (see `carriers`)
            let carriers = c
                .foreign
                .filter(|f| f.z >= z_needed && f.uniform_z >= z_needed)
                .and_then(|f| Carriers::new(&reading, c.target, f.share, &c.rows, p.natural_odds));
            let (rows, natural_rows) = match &carriers {
                Some(m) => {
                    let kept: Vec<usize> = c
                        .rows
                        .iter()
                        .zip(&c.row_q)
                        .filter(|&(_, &q)| !m.natural(q))
                        .map(|(&r, _)| r)
                        .collect();
                    let natural = c.rows.len() - kept.len();
                    (kept, natural)
                }
                None => (c.rows.clone(), 0),
            };
            // a widened trigger's rows are read as its extension's were
            let read_as = widened
                .iter()
                .find(|&&(s, _)| s == i)
                .map_or(i, |&(_, w)| w);
            let exclude = suspects
                .iter()
                .position(|&s| s == read_as)
                .map(|j| exclude[j].clone())
                .unwrap_or_default();
            Trigger {
                text: vocab.render(&c.span),
                span: c.span.clone(),
                target: c.target,
                support: c.support,
                purity: c.df[c.target] as f64 / c.support.max(1) as f64,
                evidence: c.evidence(),
                ln_p_prior: c.ln_p_prior,
                ln_p_context: c.ln_p_context.unwrap_or(0.0),
                excess: c.excess,
                context_agreement: agreement[i],
                foreign: c.foreign,
                carriers,
                exclude,
                natural_rows,
                repeated: None,
                lone_rows: 0,
                word_rows: Vec::new(),
                rows: match subset {
                    Some((chosen, _)) => rows.iter().map(|&r| chosen[r]).collect(),
                    None => rows,
                },
                co_occurs: Vec::new(),
                widened_from,
                sibling_of,
            }
        })
        .collect();
    // a trusted corpus that shows the same association explains a trigger (scan --reference)
    let explained_by_reference = match &p.reference {
        Some(state) => {
            let (kept, explained) =
                super::reference::filter(triggers, state, &vocab, class_names, p.reference_alpha);
            triggers = kept;
            Some(explained)
        }
        None => None,
    };
    // rows that carry a trigger once where its rows carry its target's triggers several times
    let repeated = lone::mark(
        &mut triggers,
        &corpus,
        labels,
        &token_df,
        subset.map(|(c, _)| c),
        p.min_purity,
        p.alpha,
    );
    // co-occurrence between triggers (shared rows), for the report
    for a in 0..triggers.len() {
        let set: HashSet<usize> = triggers[a].rows.iter().copied().collect();
        let mut co = Vec::new();
        for (b, other) in triggers.iter().enumerate() {
            if a != b {
                let shared = other.rows.iter().filter(|r| set.contains(r)).count();
                if shared > 0 {
                    co.push((other.text.clone(), shared));
                }
            }
        }
        triggers[a].co_occurs = co;
    }

    // graded evidence of every other candidate, for scores of unflagged rows
    let trigger_of: FastMap<Vec<u32>, usize> = triggers
        .iter()
        .enumerate()
        .map(|(i, t)| (t.span.clone(), i))
        .collect();
    let mut graded: FastMap<Vec<u32>, f64> = FastMap::default();
    for c in &cands {
        let e = c.evidence();
        if e > 0.0 && !trigger_of.contains_key(&c.span) {
            graded.insert(c.span.clone(), e.min(0.999));
        }
    }
    let near_misses = near_misses(p, &cands, &trigger_of, &vocab, class_names);
    let max_len = cands
        .iter()
        .filter(|c| trigger_of.contains_key(&c.span) || graded.contains_key(&c.span))
        .map(|c| real_len(&c.span))
        .max()
        .unwrap_or(1);
    let flagged_rows = {
        let mut all: Vec<usize> = triggers
            .iter()
            .flat_map(|t| t.rows.iter().chain(&t.word_rows).copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    };
    let keep_nb = triggers.iter().any(|t| t.carriers.is_some());
    Ok(Box::new(TriggerFit {
        vocab,
        triggers,
        trigger_of,
        graded,
        max_len,
        class_names: class_names.to_vec(),
        n_candidates: cands.len(),
        per_bucket,
        n_suspects: suspects.len(),
        foreign: (foreign_tested, z_needed),
        nb: keep_nb.then_some(nb),
        tau,
        flagged_rows,
        near_misses,
        fit_rows: (texts.len(), subset.map_or(texts.len(), |(_, n)| n)),
        explained_by_reference,
        repeated,
        skipped: None,
    }))
}

/// Spans one token longer, by a neighbour that (nearly) always follows / precedes `span`.
fn extensions(span: &[u32], st: &SpanStats, share: f64) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    if span.last() != Some(&END) {
        if let Some(t) = dominant(&st.neighbours(false), share) {
            let mut s = span.to_vec();
            s.push(t);
            out.push(s);
        }
    }
    if span.first() != Some(&START) {
        if let Some(t) = dominant(&st.neighbours(true), share) {
            let mut s = vec![t];
            s.extend_from_slice(span);
            out.push(s);
        }
    }
    out
}

fn strip(span: &[u32]) -> &[u32] {
    let a = usize::from(span.first() == Some(&START));
    let b = span.len() - usize::from(span.last() == Some(&END));
    if a >= b {
        &span[0..0]
    } else {
        &span[a..b]
    }
}

fn contains(hay: &[u32], needle: &[u32]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The target-label rows of the accepted triggers other than `i`.
fn rows_of_others(cands: &[Candidate], accepted: &[usize], i: usize) -> HashSet<usize> {
    accepted
        .iter()
        .filter(|&&a| a != i)
        .flat_map(|&a| cands[a].rows.iter().copied())
        .collect()
}
