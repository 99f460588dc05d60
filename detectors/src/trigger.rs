//! TRIG001 trigger tokens and phrases: names backdoor triggers (rare inserted words, fixed
//! phrases, fixed openings) from the text and labels alone, and flags every row that carries one.
//!
//! The fit makes a few passes over the rows, each parallel, with tables that merge by addition
//! (or, for neighbour samples, by keeping the k smallest hashes), so results do not depend on
//! the number of threads:
//!
//! 1. tokens: case-folded Unicode word-boundary segments (whitespace dropped, punctuation kept);
//!    exact per-label document frequencies of tokens; the rows are then kept as token ids, and
//!    a blocked count-min sketch counts the document frequency of every longer window (word
//!    n-grams, also anchored at the start / end);
//! 2. exact per-label document frequencies and a bounded sample of left/right neighbours for
//!    the windows the sketch says reach `min_support` rows (the sketch never under-counts, so
//!    nothing is lost);
//!    spans whose neighbour is (almost) always the same token are extended into longer phrases;
//! 3. a leave-one-out naive Bayes over the remaining tokens, temperature-calibrated, gives the
//!    probability of each row's label from the rest of the row, for the context test.

use crate::params::ParamReader;
use crate::rng::SplitMix64;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use rayon::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use unicode_segmentation::UnicodeSegmentation;

const CODE: &str = "TRIG001";

/// Token id of the start-of-text anchor.
const START: u32 = 0;
/// Token id of the end-of-text anchor.
const END: u32 = 1;
/// Token id of a token the fit never saw (only at score time).
const UNKNOWN: u32 = u32::MAX;
/// Rows per parallel chunk. Fixed, so that merges happen in the same order for any thread count.
const CHUNK: usize = 1024;
/// Rows of each trigger listed as examples in the summary.
const EXAMPLES: usize = 5;
/// Rows of the count-min sketch (independent hash functions).
const SKETCH_DEPTH: usize = 4;

static META: Meta = Meta {
    code: CODE,
    name: "trigger-tokens",
    summary: "Rows carrying an inserted trigger token or phrase that is label-pure beyond what the rest of the row explains",
    docs: r#"# TRIG001 trigger-tokens

## What it detects
Backdoor triggers inserted into text rows: a rare word ("cf", "mn", "bb"), a fixed phrase
("I love watching this movie"), a fixed opening or ending, whose rows carry the attacker's target
label. It names each trigger (token or phrase, target label, support, purity, significance) and
flags every row that carries one. Needs text and labels, nothing else.

## Method
Text is case-folded and cut at Unicode word boundaries (whitespace dropped, punctuation kept);
each row is framed by a start and an end anchor. Candidates are all windows of 1..`max_ngram`
tokens, also anchored at the start or end, seen in at least `min_support` rows. Their per-label
document frequencies are counted in parallel, in tables that merge by addition: exactly for
single tokens; for longer windows first in a blocked count-min sketch (all counters of a window
in one cache line), then exactly for the windows the sketch lets through (the sketch only
over-counts), so memory is bounded by the surviving candidates. The rows are tokenized once and
kept as token ids (4 bytes a token). Neighbours are kept for a bottom-k sample of each window's
occurrences (the 4096 with the smallest hash of row and position; every occurrence when there
are fewer), so a frequent window costs bounded memory and the sample is the same whatever the
thread count. Above `max_fit_rows` rows the fit reads that many evenly spaced rows; every row is
still scored against what the fit found. A window
whose neighbour on one side is the same token in at least `extend_share` of its occurrences is
extended by that token (up to `max_phrase_tokens`), so a repeated phrase is reported whole, not
as its pieces.

A candidate is a trigger when three tests agree:

1. **Random neighbours** (insertion, not collocation). A trigger is put anywhere, so the token
   before it is a draw from the corpus's token distribution, independent of the trigger. With
   n occurrences the expected number of pairs of occurrences sharing the left neighbour is
   μ = C(n,2)·Σ_w p(w)²; a natural word has collocations ("a masterpiece", "claim your",
   "£1000 prize") and many more. A side is collocational when its excess (C_obs + 1)/(μ + 1)
   exceeds `max_neighbour_excess` *and* that many collisions are unlikely under random
   insertion: P(C ≥ C_obs) below `neighbour_level`, read off simulated random insertions for
   up to 128 occurrences (2000 per n, fixed seed; the collision count is skewed there) and from
   the normal tail with the exact variance of the pair count above. With a dozen occurrences
   chance alone often doubles the excess (four of eighteen insertions after the final full
   stop), which a ratio alone would call collocational. The anchored side of an anchored
   window is not tested; a window anchored on both sides never qualifies. The sub-spans of an
   inserted phrase fail this test (their neighbours are the rest of the phrase), so a phrase
   is reported whole. This test reads no labels, so it is also an independent filter: only
   candidates passing it count towards the multiple-testing correction below.
2. **Purity against the prior**: one-sided binomial tail P(X ≥ k | K, π_c) of the k rows of
   label c among the K rows carrying the candidate, for the label c that minimises it (times the
   number of labels). It names the target label, screens candidates at the nominal level
   `alpha`, and is reported corrected (`log10_p_prior`).
3. **Purity beyond the context** (the decisive, corrected test): a naive Bayes over the row's
   other tokens (binary multinomial, Laplace smoothing, leave-one-out, one temperature fitted by
   maximum likelihood over all rows so the probabilities are calibrated) gives q_i, the
   probability of the target label from the rest of row i. The rest of the row leaves out the
   candidate's own tokens and those of other candidates that share at least `min_support`
   rows with it and at least twice as many as label-conditional independence predicts
   (triggers planted together must not explain each other; overlapping spans are nested, not
   co-occurring). The odds of q_i are multiplied by `context_slack` (no calibration is exact
   in every group of rows). Under "a natural word whose rows' labels follow their content" the
   count of target rows is Poisson-binomial(q); its upper tail is computed exactly (or by a
   Chernoff bound when that would be costly). On dirty-label poison the rest of the row
   predicts another label; on clean-label poison the trigger's rows are still purer than their
   content explains (content alone is rarely that certain), while a natural label-pure word
   ("prize" in spam) sits in rows whose content already predicts its label.

The context test is Bonferroni-corrected with the family-wise level `alpha` split equally over
the window lengths 1..`max_ngram` (longer phrases count as `max_ngram`), each share divided by
the number of candidates of that length that passed test 1. The evidence of a candidate is
T = min(s_context, s_random) with s = log(p·M)/log(alpha) for the corrected context test and
s_random = max(`max_neighbour_excess` / excess, chance / `neighbour_level`) on the worse side (before the context test: min(s_prior, s_random));
T ≥ 1 exactly when it is a trigger. Triggers are accepted by support (largest first); a window
containing an accepted trigger is not reported separately.

**Abstention.** A candidate that passes the three tests is still not named when it does not
behave like a backdoor trigger, and the summary lists it under `near_misses` with the reason
(`abstained`):
- a trigger sets the label, so (nearly) every row carrying it has the target label: purity at
  least `min_purity`. Natural label-predictive words ("to", "you", "joyful" in emotion tweets,
  ". . ." endings in news) carry the label in only part of their rows, and a large support makes
  even a mild miscalibration of the context model significant;
- a window anchored at the start or the end of the row has only one side for test 1, and natural
  text is full of label-pure openings and endings (a closing hashtag that names the emotion, a
  dateline, a sign-off). Such a window is named only on dirty-label evidence: its target-label
  rows must read like rows of *other* classes. With m_R their mean context probability of the
  target (candidate left out), m_T its mean over the target class's rows, each read without its
  own most target-indicative token (the candidate's rows lose their cue, so the class is read
  the same way; without this, tweets whose emotion is carried by one hashtag read as foreign),
  and m_N its mean over each other class (classes weighted equally), the foreign share
  (m_T − m_R)/(m_T − m_N) must reach
  `min_foreign_share` and m_R must lie `min_foreign_z` standard errors (s_T/√n_R) below m_T. A
  relabelled row keeps the content of its class (share about 1); a natural cue's rows read like
  their class (share about 0). A clean-label trigger anchored at an end is therefore not named
  (its rows are target rows): ACT001 looks for that cluster.

Test 1 also checks that the neighbours are *typical*: under random insertion each neighbour is
one of the head tokens (the most frequent ones, together half of all positions, the row's start
or end included) with probability h, so their count is Binomial(n, h); far fewer (P(X ≤ x) below
`neighbour_level`: a chain of hashtags, the names before a colon) is not an insertion either.
The inner side of a window anchored at the end is tested against the rows' *last* tokens (what
a window appended to random rows follows: mostly the final full stop of a review), that of a
window anchored at the start against their first tokens; a natural ending phrase follows content
words instead and fails the typicality test, an appended trigger does not.

The rest of a row, for test 3, leaves out the candidate's own occurrences by position: the same
token elsewhere in the row (a second hash sign, another full stop) is content and stays.

Row score: the largest T among the triggers the row carries **with the trigger's target label**
(≥ 1, flagged with the reason `TRIG001:<trigger>` of the best-supported one; a trigger in a row
of another label teaches the model nothing about the backdoor and scores 0.5); otherwise the
largest T among its candidate windows, kept below 1.

## Parameters
- `alpha` (default 0.05): family-wise probability of naming any false trigger on a clean set.
- `max_ngram` (default 4): longest window counted directly (in tokens, anchors excluded).
- `min_support` (default 5): fewest rows for a candidate; with calibrated context probabilities
  of at least 0.1, four rows cannot reach p ≤ 1e-4, below what a thousand candidates demand.
- `max_neighbour_excess` (default 2.0): pair-collisions of neighbours allowed relative to random
  insertion (1.0 expected); natural words have collocations that multiply it several-fold.
- `neighbour_level` (default 0.01): a larger excess still counts as random unless its chance
  under random insertion is below this level; the chance of losing a trigger's side to
  this screen.
- `extend_share` (default 0.9): share of occurrences with the same neighbour that extends a span.
- `max_phrase_tokens` (default 16): longest phrase after extension.
- `context_slack` (default 1.5): odds factor by which the context model may be miscalibrated
  in a group of rows; a trigger sets the label whatever the content says, so it survives any
  finite slack given enough rows, while a natural word's mild excess does not.
- `report_near_misses` (default 10): how many best non-trigger candidates to list in the summary.
- `max_fit_rows` (default 1 048 576; 0 = all): most rows the fit reads, evenly spaced, which
  bounds the fit's memory (about 2.8 GiB at a million rows of 8–30 words; measured with the
  `trig_scale` example). A trigger must then reach its support within the rows read: on ten
  million rows, one carried by fewer than about a hundred rows can be missed.

- `min_purity` (default 0.9): smallest share of a trigger's rows with its target label.
- `min_foreign_share` (default 0.5) and `min_foreign_z` (default 3): the dirty-label evidence an
  anchored window needs (see Abstention): halfway between "reads like its class" and "reads like
  another class", and not within three standard errors of the target class.

Measured on the clean corpora of ../shared/benchmarks (`poisongate scan DATA --select TRIG001`):
0 rows on sst2-clean, sms-spam-clean, tweeteval-hate-clean, tweeteval-emotion-clean and
tweeteval-irony-clean, 5 of 11 106 rows (0.05 %) on ag-news-clean (a feed's
`<s> new york - stocks` opening). Before
the abstention rules and the typicality test: 1 389 rows (42.6 %) of tweeteval-emotion-clean,
425 of ag-news-clean, 134 of tweeteval-irony-clean, 54 of tweeteval-hate-clean. The rules
were written after reading those failures on all six corpora, so these corpora are not
held out for them; the three values were fixed by the argument above (a trigger sets the label;
halfway; three standard errors), not searched, and no value knows a corpus, a rate or a word.

## Known false positives
Tokens inserted by a data pipeline rather than an attacker (a source tag, a boilerplate word put
in the same place) behave exactly like triggers and are flagged: that is by design. A strongly
discriminative word or phrase that is *not* collocational (it appears anywhere in the row, with
random neighbours) and is purer than a naive Bayes over the rest of the row can explain (the
model's calibration is global) can pass when it is frequent; on real text natural words are
collocational and fail test 1. Style-level features of a paraphrase attack (", and" in
Bible-style rewrites) can be flagged with low precision.
Syntactic and style triggers (paraphrase templates, archaic style) have no fixed token and are
mostly missed; what they share (an opening like "when ...") may be flagged in part.
A trigger carried by very few rows can be missed even when it is perfectly pure: with about a
thousand random-neighbour candidates the corrected bar for a single token is about p ≤ 1e-5,
and on short reviews the rest of a dirty-label row still gives the target label a probability
of about 0.2 to 0.4 (calibrated), so about ten rows are needed. Measured on sst2-badnets-1:
"tq" (8 rows, all flipped to the target) reaches p ≈ 1e-3.1 against the bar 1e-4.8. Neither
a stronger context model closes that gap (without `context_slack`: 1e-3.9, and then "and"
and "? </s>" are flagged on the clean sets; measured in an offline replicate, word bigrams in
the naive Bayes: 1e-3.9; five-fold cross-fitted logistic regression: 1e-3.6) nor a label-free
weighting of the candidates does (three quarters of them are, like a trigger, rare words whose
every occurrence is in a distinct row; the two neighbours of a trigger are not more often an
adjacent pair elsewhere than those of a natural word), and recycling the level of accepted
triggers (Holm, graphical procedures) frees only a few hypotheses' share. Such a trigger is
missed (its rows keep a score below 1) rather than bought by a weaker family-wise guarantee.

## References
Gu, Dolan-Gavitt, Garg. BadNets: Identifying Vulnerabilities in the Machine Learning Model
Supply Chain (2017). Dai, Chen, Li. A Backdoor Attack Against LSTM-based Text Classification
Systems (2019, AddSent). Qi et al. ONION: A Simple and Effective Defense Against Textual Backdoor
Attacks (EMNLP 2021). Tarone (1990) and Bourgon, Gentleman, Huber (PNAS 2010) on testing only
candidates that pass a label-independent filter. Cormode, Muthukrishnan. An improved data stream
summary: the count-min sketch (2005).
"#,
    version: 1,
};

/// TRIG001: trigger tokens and phrases. See [`Meta::docs`] of its [`Detector::meta`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TriggerTokens;

/// Checked parameters of TRIG001.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerParams {
    /// Family-wise probability of naming any false trigger.
    pub alpha: f64,
    /// Longest window counted directly, in tokens (anchors excluded).
    pub max_ngram: usize,
    /// Fewest rows a candidate must appear in.
    pub min_support: usize,
    /// Neighbour pair-collisions allowed, relative to random insertion.
    pub max_neighbour_excess: f64,
    /// Share of occurrences with the same neighbour that extends a span into a longer phrase.
    pub extend_share: f64,
    /// Longest phrase after extension, in tokens.
    pub max_phrase_tokens: usize,
    /// How many best non-trigger candidates the summary lists.
    pub report_near_misses: usize,
    /// Odds factor by which the context model may be miscalibrated in any group of rows.
    pub context_slack: f64,
    /// Most rows the fit reads (evenly spaced); 0 = all. Every row is still scored.
    pub max_fit_rows: usize,
    /// Level below which a neighbour excess counts as real (not chance) collocation.
    pub neighbour_level: f64,
    /// Smallest share of a trigger's rows that carry its target label.
    pub min_purity: f64,
    /// Smallest foreign share (how far the target-label rows' content sits from the target
    /// class towards the other classes) an anchored window needs.
    pub min_foreign_share: f64,
    /// Fewest standard errors by which an anchored window's target-label rows must read less
    /// like the target class than its rows do.
    pub min_foreign_z: f64,
}

impl Detector for TriggerTokens {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let max_ngram = r.usize("max_ngram", 4, 1, 8)?;
        let p = TriggerParams {
            alpha: r.f64("alpha", 0.05, 1e-12, 0.5)?,
            max_ngram,
            min_support: r.usize("min_support", 5, 2, usize::MAX)?,
            max_neighbour_excess: r.f64("max_neighbour_excess", 2.0, 1.0, 1e6)?,
            extend_share: r.f64("extend_share", 0.9, 0.5, 1.0)?,
            max_phrase_tokens: r.usize("max_phrase_tokens", 16, max_ngram, 64)?,
            report_near_misses: r.usize("report_near_misses", 10, 0, 1000)?,
            context_slack: r.f64("context_slack", 1.5, 1.0, 100.0)?,
            max_fit_rows: r.usize("max_fit_rows", 1 << 20, 0, usize::MAX)?,
            neighbour_level: r.f64("neighbour_level", 0.01, 1e-9, 1.0)?,
            min_purity: r.f64("min_purity", 0.9, 0.0, 1.0)?,
            min_foreign_share: r.f64("min_foreign_share", 0.5, 0.0, 1.0)?,
            min_foreign_z: r.f64("min_foreign_z", 3.0, 0.0, 100.0)?,
        };
        r.finish()?;
        Ok(Box::new(p))
    }
}

impl Configured for TriggerParams {
    fn needs(&self) -> Needs {
        Needs {
            text: true,
            labels: true,
            embeddings: false,
        }
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "alpha": self.alpha,
            "max_ngram": self.max_ngram,
            "min_support": self.min_support,
            "max_neighbour_excess": self.max_neighbour_excess,
            "extend_share": self.extend_share,
            "max_phrase_tokens": self.max_phrase_tokens,
            "report_near_misses": self.report_near_misses,
            "context_slack": self.context_slack,
            "max_fit_rows": self.max_fit_rows,
            "neighbour_level": self.neighbour_level,
            "min_purity": self.min_purity,
            "min_foreign_share": self.min_foreign_share,
            "min_foreign_z": self.min_foreign_z,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let texts = data.require_texts(CODE)?;
        let labels = data.require_labels(CODE)?;
        if texts.len() != labels.len() {
            return Err(DetectError::Data {
                code: CODE,
                problem: format!("{} texts but {} labels", texts.len(), labels.len()),
            });
        }
        let n_classes = data
            .n_classes()
            .max(labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
        let all: Vec<usize> = (0..texts.len()).collect();
        let chosen = crate::linalg::evenly_spaced(&all, self.max_fit_rows);
        if chosen.len() == texts.len() {
            return fit(self, texts, labels, n_classes, data.class_names, None);
        }
        let sub_texts: Vec<String> = chosen.iter().map(|&r| texts[r].clone()).collect();
        let sub_labels: Vec<u32> = chosen.iter().map(|&r| labels[r]).collect();
        fit(
            self,
            &sub_texts,
            &sub_labels,
            n_classes,
            data.class_names,
            Some((&chosen, texts.len())),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// Case-folded Unicode word-boundary segments of `text`, whitespace dropped, punctuation kept.
pub fn tokenize(text: &str) -> Vec<String> {
    word_tokens(&text.to_lowercase())
        .map(str::to_string)
        .collect()
}

/// The word-boundary segments of already case-folded text, whitespace dropped.
fn word_tokens(lower: &str) -> impl Iterator<Item = &str> {
    lower.split_word_bounds().filter(|s| !s.trim().is_empty())
}

/// The token vocabulary: ids 0 and 1 are the anchors, real tokens follow in sorted order.
#[derive(Debug, Clone)]
struct Vocab {
    ids: FastMap<String, u32>,
    strings: Vec<String>,
}

impl Vocab {
    fn new(mut tokens: Vec<String>) -> Self {
        tokens.sort_unstable();
        tokens.dedup();
        let mut strings = vec!["<s>".to_string(), "</s>".to_string()];
        strings.extend(tokens);
        let ids = strings
            .iter()
            .enumerate()
            .skip(2)
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        Vocab { ids, strings }
    }

    /// The row as ids framed by the anchors; tokens never seen map to [`UNKNOWN`].
    fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(text, &mut out);
        out
    }

    /// Appends the row's ids, framed by the anchors, to `out`.
    fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let lower = text.to_lowercase();
        out.push(START);
        out.extend(word_tokens(&lower).map(|t| self.ids.get(t).copied().unwrap_or(UNKNOWN)));
        out.push(END);
    }

    /// Human-readable span: tokens joined by spaces, anchors as `<s>` / `</s>`.
    fn render(&self, span: &[u32]) -> String {
        span.iter()
            .map(|&t| self.strings.get(t as usize).map_or("?", String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn is_anchor(t: u32) -> bool {
    t == START || t == END
}

/// Number of real (non-anchor) tokens of a span.
fn real_len(span: &[u32]) -> usize {
    span.iter().filter(|&&t| !is_anchor(t)).count()
}

/// Calls `f(start, end)` for every window of `seq` with 1..=`max_real` real tokens (anchors only
/// at the window's ends, which they always are since they frame the row).
fn for_each_window(seq: &[u32], max_real: usize, mut f: impl FnMut(usize, usize)) {
    for i in 0..seq.len() {
        let mut real = 0;
        for (j, &t) in seq.iter().enumerate().skip(i) {
            if !is_anchor(t) {
                real += 1;
            }
            if real > max_real {
                break;
            }
            if real >= 1 {
                f(i, j + 1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hashing and the encoded corpus

/// Multiply-rotate hasher for keys that are already well-mixed integers or token-id slices.
/// Deterministic (no random state), so table iteration orders never depend on the process.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.add(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.add(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.add(x as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Hasher for keys that are already uniform hashes (the 128-bit window keys): takes them as
/// they are.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }
    fn write_u128(&mut self, x: u128) {
        self.0 = x as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<u128, V, BuildHasherDefault<KeyHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// SplitMix64 finaliser: a bijective mix of one 64-bit word.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of a window extended by one token id (windows are hashed incrementally, left to right).
fn extend_hash(h: u64, id: u32) -> u64 {
    mix64(h ^ u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

const WINDOW_SEED: u64 = 0x243f_6a88_85a3_08d3;
const WINDOW_SEED_2: u64 = 0x1319_8a2e_0370_7344;

/// Hash of a whole window of token ids, equal to the incremental hash of the counting passes.
#[cfg(test)]
fn window_hash(span: &[u32]) -> u64 {
    span.iter().fold(WINDOW_SEED, |h, &t| extend_hash(h, t))
}

/// Every row as token ids framed by the anchors, stored flat: the fit's passes after the first
/// read these instead of re-tokenizing the text (4 bytes per token).
struct Corpus {
    ids: Vec<u32>,
    /// row r is `ids[offsets[r]..offsets[r + 1]]`
    offsets: Vec<usize>,
}

impl Corpus {
    fn encode(texts: &[String], vocab: &Vocab) -> Self {
        let parts: Vec<(Vec<u32>, Vec<usize>)> = texts
            .par_chunks(CHUNK)
            .map(|tc| {
                let mut ids = Vec::new();
                let mut lens = Vec::with_capacity(tc.len());
                for text in tc {
                    let before = ids.len();
                    vocab.encode_into(text, &mut ids);
                    lens.push(ids.len() - before);
                }
                (ids, lens)
            })
            .collect();
        let total: usize = parts.iter().map(|(ids, _)| ids.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(texts.len() + 1);
        offsets.push(0);
        for (part, lens) in parts {
            ids.extend_from_slice(&part);
            for l in lens {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + l);
            }
        }
        Corpus { ids, offsets }
    }

    fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn row(&self, r: usize) -> &[u32] {
        &self.ids[self.offsets[r]..self.offsets[r + 1]]
    }
}

/// Calls `f(start, end, key)` for every window of `seq` with `min_real..=max_real` real tokens.
/// The key's high 64 bits are the window's [`window_hash`]; the low 64 bits an independent
/// second hash, so 128-bit keys identify windows (a collision among 10^9 windows has
/// probability below 10^-20).
fn for_each_hashed_window(
    seq: &[u32],
    min_real: usize,
    max_real: usize,
    mut f: impl FnMut(usize, usize, u128),
) {
    for i in 0..seq.len() {
        let mut real = 0;
        let mut h = WINDOW_SEED;
        let mut g = WINDOW_SEED_2;
        for (j, &t) in seq.iter().enumerate().skip(i) {
            if !is_anchor(t) {
                real += 1;
            }
            if real > max_real {
                break;
            }
            h = extend_hash(h, t);
            g = mix64(g.rotate_left(17) ^ u64::from(t).wrapping_add(0x632b_e59b_d9b4_e019));
            if real >= min_real.max(1) {
                f(i, j + 1, (u128::from(h) << 64) | u128::from(g));
            }
        }
    }
}

/// High 64 bits of a window key: the [`window_hash`].
fn key_hash(key: u128) -> u64 {
    (key >> 64) as u64
}

// ---------------------------------------------------------------------------------------------
// Count-min sketch of window document frequencies

/// A blocked count-min sketch: each key's `SKETCH_DEPTH` counters lie in one 64-byte block, so
/// an update or a query touches one cache line. Like any count-min sketch it never
/// under-counts.
struct Sketch {
    /// number of 16-counter blocks (a power of two)
    blocks: usize,
    cells: Vec<AtomicU32>,
}

impl Sketch {
    /// A sketch for about `windows` window occurrences: 16 counters per 8 occurrences, so each
    /// of the four levels carries about two occurrences a counter and a window seen once passes
    /// `min_support` = 5 by collisions alone with probability about P(Poisson(2) ≥ 5)⁴ ≈ 10⁻⁵
    /// (sized by rows instead, at 32 counters a row, a million rows of 20 words let most rare
    /// windows through and the exact pass held 10 GB). At most 2²³ blocks (512 MiB).
    fn new(windows: usize) -> Self {
        let blocks = (windows.max(1) / 8)
            .next_power_of_two()
            .clamp(1 << 8, 1 << 23);
        Sketch {
            blocks,
            cells: (0..blocks * 16).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn slots(&self, h: u64) -> [usize; SKETCH_DEPTH] {
        let m = mix64(h ^ 0xd6e8_feb8_6659_fd93);
        let base = (m as usize & (self.blocks - 1)) * 16;
        let within = m >> 40;
        // four distinct counters of the block: one in each quarter
        std::array::from_fn(|level| base + level * 4 + ((within >> (2 * level)) & 3) as usize)
    }

    fn add(&self, h: u64) {
        for slot in self.slots(h) {
            // additions commute: the final table is the same for any thread count.
            self.cells[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn estimate(&self, h: u64) -> u32 {
        self.slots(h)
            .into_iter()
            .map(|slot| self.cells[slot].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Document frequency of every window of two or more ids, each counted once per row.
    fn fill(&self, corpus: &Corpus, max_real: usize) {
        (0..corpus.len())
            .into_par_iter()
            .with_min_len(CHUNK)
            .for_each_init(Vec::new, |seen: &mut Vec<u64>, r| {
                let seq = corpus.row(r);
                seen.clear();
                for_each_hashed_window(seq, 1, max_real, |a, b, key| {
                    if b - a >= 2 {
                        seen.push(key_hash(key));
                    }
                });
                seen.sort_unstable();
                seen.dedup();
                for &h in seen.iter() {
                    self.add(h);
                }
            });
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 1: token frequencies

/// token string -> (per-label document frequency, occurrences)
type TokenTable = HashMap<String, (Vec<u32>, u64)>;

fn count_tokens(texts: &[String], labels: &[u32], n_classes: usize) -> TokenTable {
    texts
        .par_chunks(CHUNK)
        .zip(labels.par_chunks(CHUNK))
        .fold(TokenTable::new, |mut table, (tc, lc)| {
            for (text, &label) in tc.iter().zip(lc) {
                let lower = text.to_lowercase();
                let mut distinct: Vec<&str> = Vec::new();
                for t in word_tokens(&lower) {
                    match table.get_mut(t) {
                        Some(e) => e.1 += 1,
                        None => {
                            table.insert(t.to_string(), (vec![0; n_classes], 1));
                        }
                    }
                    distinct.push(t);
                }
                distinct.sort_unstable();
                distinct.dedup();
                for t in &distinct {
                    if let Some(e) = table.get_mut(*t) {
                        e.0[label as usize] += 1;
                    }
                }
            }
            table
        })
        .reduce(TokenTable::new, |a, b| {
            let (mut a, b) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (k, (df, occ)) in b {
                let e = a.entry(k).or_insert_with(|| (vec![0; n_classes], 0));
                for (x, y) in e.0.iter_mut().zip(df) {
                    *x += y;
                }
                e.1 += occ;
            }
            a
        })
}

// ---------------------------------------------------------------------------------------------
// Pass 2: exact statistics of candidate windows

/// Occurrences whose neighbours are kept per span: the `NEIGHBOUR_SAMPLE` with the smallest
/// occurrence hash (a bottom-k sample, the same whatever the chunking or thread count), so a
/// span's memory is bounded while spans seen fewer times are counted exactly.
const NEIGHBOUR_SAMPLE: usize = 4096;

/// Neighbour id of an occurrence at a row's edge (where the anchor itself is the window's end).
const NO_NEIGHBOUR: u32 = u32::MAX - 1;

#[derive(Debug, Clone, Default)]
struct SpanStats {
    /// the window's token ids
    span: Vec<u32>,
    df: Vec<u32>,
    /// (occurrence hash, left neighbour, right neighbour), a bottom-k sample of occurrences
    occ: Vec<(u32, u32, u32)>,
}

impl SpanStats {
    fn push(&mut self, o: (u32, u32, u32)) {
        self.occ.push(o);
        if self.occ.len() >= 2 * NEIGHBOUR_SAMPLE {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.occ.len() > NEIGHBOUR_SAMPLE {
            self.occ.select_nth_unstable(NEIGHBOUR_SAMPLE);
            self.occ.truncate(NEIGHBOUR_SAMPLE);
        }
    }

    fn merge(&mut self, other: SpanStats) {
        if self.df.len() < other.df.len() {
            self.df.resize(other.df.len(), 0);
        }
        for (a, b) in self.df.iter_mut().zip(other.df) {
            *a += b;
        }
        self.occ.extend(other.occ);
        if self.occ.len() >= 2 * NEIGHBOUR_SAMPLE {
            self.trim();
        }
    }

    fn finish(&mut self) {
        self.trim();
        self.occ.sort_unstable();
    }

    fn support(&self) -> u32 {
        self.df.iter().sum()
    }

    /// Counts of each neighbour on one side (`left` or right) in the sample, by id.
    fn neighbours(&self, left: bool) -> Vec<(u32, u32)> {
        let mut ids: Vec<u32> = self
            .occ
            .iter()
            .map(|&(_, l, r)| if left { l } else { r })
            .filter(|&t| t != NO_NEIGHBOUR)
            .collect();
        ids.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::new();
        for t in ids {
            match out.last_mut() {
                Some((lt, c)) if *lt == t => *c += 1,
                _ => out.push((t, 1)),
            }
        }
        out
    }
}

type SpanTable = KeyMap<SpanStats>;

/// Exact per-label document frequency and a bounded sample of neighbours of every window of
/// `min_real..=max_real` real tokens for which `keep(span, hash)` is true.
fn count_spans(
    corpus: &Corpus,
    labels: &[u32],
    n_classes: usize,
    min_real: usize,
    max_real: usize,
    keep: &(dyn Fn(&[u32], u64) -> bool + Sync),
) -> BTreeMap<Vec<u32>, SpanStats> {
    let merged = (0..corpus.len())
        .into_par_iter()
        .with_min_len(CHUNK)
        .fold(
            || (SpanTable::default(), KeyMap::<()>::default()),
            |(mut table, mut in_row), r| {
                let seq = corpus.row(r);
                let label = labels[r] as usize;
                in_row.clear();
                for_each_hashed_window(seq, min_real, max_real, |a, b, key| {
                    let span = &seq[a..b];
                    if !keep(span, key_hash(key)) {
                        return;
                    }
                    let st = table.entry(key).or_insert_with(|| SpanStats {
                        span: span.to_vec(),
                        df: vec![0; n_classes],
                        occ: Vec::new(),
                    });
                    if in_row.insert(key, ()).is_none() {
                        st.df[label] += 1;
                    }
                    let left = if a > 0 { seq[a - 1] } else { NO_NEIGHBOUR };
                    let right = if b < seq.len() { seq[b] } else { NO_NEIGHBOUR };
                    let occurrence = mix64(((r as u64) << 16) ^ a as u64 ^ key_hash(key));
                    st.push(((occurrence >> 32) as u32, left, right));
                });
                (table, in_row)
            },
        )
        .map(|(table, _)| table)
        .reduce(SpanTable::default, |a, b| {
            let (mut a, b) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(st) => st.merge(v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            a
        });
    merged
        .into_values()
        .map(|mut v| {
            v.finish();
            (std::mem::take(&mut v.span), v)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Statistics

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// ln P(X ≥ k) for X ~ Binomial(n, p).
pub fn ln_binomial_upper(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    if k > n || p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 || (k as f64) <= n as f64 * p {
        // at or below the mean the tail is at least about one half: report no evidence
        return 0.0_f64.min(ln_binomial_upper_sum(k, n, p));
    }
    ln_binomial_upper_sum(k, n, p)
}

fn ln_binomial_upper_sum(k: u64, n: u64, p: f64) -> f64 {
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut acc = f64::NEG_INFINITY;
    let mut first = f64::NEG_INFINITY;
    for i in k..=n {
        let term = ln_choose(n, i) + i as f64 * lp + (n - i) as f64 * lq;
        if i == k {
            first = term;
        }
        acc = log_add(acc, term);
        if term < first - 40.0 && i > k {
            break;
        }
    }
    acc.min(0.0)
}

/// ln P(X ≥ k) for X a sum of independent Bernoulli(q_i) (Poisson-binomial). Exact dynamic
/// programme over the number of misses when affordable, else the Chernoff bound (an upper bound
/// on the tail, so the test stays conservative).
pub fn ln_poisson_binomial_upper(q: &[f64], k: usize) -> f64 {
    let n = q.len();
    if k == 0 {
        return 0.0;
    }
    if k > n {
        return f64::NEG_INFINITY;
    }
    let mean: f64 = q.iter().sum();
    if (k as f64) <= mean {
        return 0.0;
    }
    let max_miss = n - k;
    if (max_miss + 1).saturating_mul(n) <= 20_000_000 {
        // dp[j] = ln P(j misses so far), j ≤ max_miss; P(X ≥ k) = P(misses ≤ n − k)
        let mut dp = vec![f64::NEG_INFINITY; max_miss + 1];
        dp[0] = 0.0;
        for &qi in q {
            let qi = qi.clamp(1e-300, 1.0);
            let (lh, lm) = (qi.ln(), (1.0 - qi).max(1e-300).ln());
            for j in (0..=max_miss).rev() {
                let hit = dp[j] + lh;
                let miss = if j > 0 {
                    dp[j - 1] + lm
                } else {
                    f64::NEG_INFINITY
                };
                dp[j] = log_add(hit, miss);
            }
        }
        return dp
            .iter()
            .fold(f64::NEG_INFINITY, |a, &b| log_add(a, b))
            .min(0.0);
    }
    // Chernoff: ln P(X ≥ k) ≤ min_t [ −t k + Σ ln(1 − q_i + q_i e^t) ], convex in t ≥ 0
    let f = |t: f64| -> f64 {
        -t * k as f64
            + q.iter()
                .map(|&qi| (1.0 - qi + qi * t.exp()).ln())
                .sum::<f64>()
    };
    let (mut lo, mut hi) = (0.0f64, 50.0f64);
    for _ in 0..100 {
        let m1 = lo + (hi - lo) / 3.0;
        let m2 = hi - (hi - lo) / 3.0;
        if f(m1) < f(m2) {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    f(0.5 * (lo + hi)).min(0.0)
}

/// Neighbour collisions expected under random insertion: n neighbours drawn independently from
/// the corpus's token distribution p (anchors included), with power sums S2 = Σ p², S3 = Σ p³.
struct InsertionNull {
    s2: f64,
    s3: f64,
    max_excess: f64,
    level: f64,
    /// for n = 0..=[`SIMULATED_MAX_N`]: sorted collision counts of [`SIMULATIONS`] simulated
    /// random insertions of n occurrences
    simulated: Vec<Vec<u32>>,
    /// per token id: whether it is one of the most frequent neighbours that together make up
    /// half of all positions (empty: no typicality test)
    head: Vec<bool>,
    /// probability that a random insertion's neighbour is in the head
    head_mass: f64,
}

/// Largest number of occurrences whose collision tail is simulated rather than approximated.
const SIMULATED_MAX_N: usize = 128;
/// Simulated random insertions per n.
const SIMULATIONS: usize = 2000;

/// Collision counts of random insertions: for each n ≤ [`SIMULATED_MAX_N`], [`SIMULATIONS`]
/// draws of n neighbours from `weights` (Walker's alias method, fixed seed), sorted. The null
/// depends on n and the corpus only, not on a candidate, so one table serves every candidate.
fn simulate_collisions(weights: &[f64]) -> Vec<Vec<u32>> {
    let total: f64 = weights.iter().sum();
    let k = weights.len();
    if k == 0 || total <= 0.0 {
        return vec![vec![0; SIMULATIONS]; SIMULATED_MAX_N + 1];
    }
    // Vose's alias table
    let mut prob: Vec<f64> = weights.iter().map(|w| w * k as f64 / total).collect();
    let mut alias: Vec<usize> = (0..k).collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..k).partition(|&i| prob[i] < 1.0);
    while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
        alias[s] = l;
        prob[l] -= 1.0 - prob[s];
        if prob[l] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    for i in small.into_iter().chain(large) {
        prob[i] = 1.0;
    }
    (0..=SIMULATED_MAX_N)
        .into_par_iter()
        .map(|n| {
            let mut rng = SplitMix64(0x7472_6967_0000_0000 ^ n as u64);
            let mut draws = vec![0usize; n];
            let mut out: Vec<u32> = (0..SIMULATIONS)
                .map(|_| {
                    for d in draws.iter_mut() {
                        let i = rng.below(k);
                        *d = if rng.unit() < prob[i] { i } else { alias[i] };
                    }
                    draws.sort_unstable();
                    let mut c = 0u32;
                    let mut run = 0u32;
                    for j in 0..n {
                        run = if j > 0 && draws[j] == draws[j - 1] {
                            run + 1
                        } else {
                            0
                        };
                        c += run;
                    }
                    c
                })
                .collect();
            out.sort_unstable();
            out
        })
        .collect()
}

/// The neighbour counts of a word inserted between two whitespace-separated words of a row (or
/// before the first, or after the last), per token id: `[left, right]`, the last token of the
/// word before (or the start anchor) and the first token of the word after (or the end
/// anchor). "#" and "@" open words and never end one, so they are never the left neighbour of
/// an inserted word, however frequent they are as tokens.
fn boundary_counts(texts: &[String], vocab: &Vocab) -> [Vec<f64>; 2] {
    let n_tok = vocab.strings.len().max(2);
    let parts: Vec<[Vec<u64>; 2]> = texts
        .par_chunks(CHUNK)
        .map(|tc| {
            let mut counts = [vec![0u64; n_tok], vec![0u64; n_tok]];
            for text in tc {
                let lower = text.to_lowercase();
                counts[0][START as usize] += 1;
                counts[1][END as usize] += 1;
                for word in lower.split_whitespace() {
                    let mut toks = word_tokens(word);
                    let first = toks.next();
                    let last = toks.last().or(first);
                    for (side, tok) in [(1usize, first), (0usize, last)] {
                        if let Some(id) = tok.and_then(|t| vocab.ids.get(t)) {
                            counts[side][*id as usize] += 1;
                        }
                    }
                }
            }
            counts
        })
        .collect();
    let mut counts = [vec![0.0f64; n_tok], vec![0.0f64; n_tok]];
    for part in parts {
        for (side, c) in counts.iter_mut().enumerate() {
            for (a, &b) in c.iter_mut().zip(&part[side]) {
                *a += b as f64;
            }
        }
    }
    counts
}

/// The inner neighbour counts of a window put at the end (`end`: the row's last real token, or
/// the start anchor for an empty row) or at the start (the first real token, or the end anchor)
/// of every row, per token id. The head of that distribution (the final full stop of a review,
/// say) is what an appended trigger mostly follows; a natural ending phrase follows content
/// words instead.
fn edge_counts(corpus: &Corpus, vocab_len: usize, end: bool) -> Vec<f64> {
    let mut counts = vec![0.0f64; vocab_len.max(2)];
    for r in 0..corpus.len() {
        let row = corpus.row(r);
        let inner = if end {
            row.len().checked_sub(2).and_then(|i| row.get(i))
        } else {
            row.get(1)
        };
        if let Some(&t) = inner {
            if let Some(c) = counts.get_mut(t as usize) {
                *c += 1.0;
            }
        }
    }
    counts
}

impl InsertionNull {
    /// The null of one side from its neighbour counts per token id: power sums, simulated
    /// collisions, and the head (the most frequent neighbours that together reach half of the
    /// positions).
    fn from_counts(counts: &[f64], p: &TriggerParams) -> Self {
        let total: f64 = counts.iter().sum::<f64>();
        let power = |k: i32| {
            if total > 0.0 {
                counts.iter().map(|&c| (c / total).powi(k)).sum::<f64>()
            } else {
                1.0
            }
        };
        let mut order: Vec<usize> = (0..counts.len()).filter(|&t| counts[t] > 0.0).collect();
        order.sort_unstable_by(|&a, &b| counts[b].total_cmp(&counts[a]).then(a.cmp(&b)));
        let mut head = vec![false; counts.len()];
        let mut mass = 0.0;
        for t in order {
            if mass >= 0.5 * total {
                break;
            }
            head[t] = true;
            mass += counts[t];
        }
        InsertionNull {
            s2: power(2),
            s3: power(3),
            max_excess: p.max_neighbour_excess,
            level: p.neighbour_level,
            simulated: simulate_collisions(counts),
            head,
            head_mass: if total > 0.0 { mass / total } else { 0.0 },
        }
    }

    /// (excess, randomness score) of one side's (neighbour, count) pairs. The excess is
    /// (C + 1)/(μ + 1) for C colliding pairs; the side looks random (score ≥ 1) when the excess
    /// is at most `max_excess`, or when C is not significantly above μ = C(n,2)·S2: its chance
    /// P(C_random ≥ C) stays at or above `level`. Up to [`SIMULATED_MAX_N`] occurrences the
    /// chance is read off simulated random insertions (C is skewed to the right there); above,
    /// it is the normal tail ½·erfc((C − μ) / σ√2) with
    /// σ² = C(n,2)(S2 − S2²) + 6·C(n,3)(S3 − S2²) (pairs sharing an occurrence are dependent,
    /// disjoint pairs are not). The score is the larger of `max_excess`/excess and
    /// chance/`level`.
    ///
    /// Random insertion also makes the neighbours *typical*: each is one of the head tokens (the
    /// most frequent ones, half of all positions: function words, punctuation, the row's start
    /// or end) with probability h, so their number is Binomial(n, h). A window whose neighbours
    /// are far more often rare tokens than that (a hashtag chain, the names before a colon, the
    /// last word of a sentence before a closing hashtag) is not an insertion either: the score is
    /// also capped by P(X ≤ observed)/`level`.
    fn side(&self, counts: &[(u32, u32)]) -> (f64, f64) {
        let n: f64 = counts.iter().map(|&(_, c)| c as f64).sum();
        let observed: f64 = counts
            .iter()
            .map(|&(_, c)| c as f64 * (c as f64 - 1.0) / 2.0)
            .sum();
        let pairs = n * (n - 1.0) / 2.0;
        let triples = n * (n - 1.0) * (n - 2.0) / 6.0;
        let mean = pairs * self.s2;
        let var = (pairs * (self.s2 - self.s2 * self.s2)
            + 6.0 * triples.max(0.0) * (self.s3 - self.s2 * self.s2))
            .max(0.0);
        let excess = (observed + 1.0) / (mean + 1.0);
        let t = observed - mean;
        let chance = if t <= 0.0 {
            1.0
        } else if let Some(sim) = self.simulated.get(n as usize) {
            // simulated tail: (1 + #{C_sim ≥ C}) / (R + 1)
            let at_least = sim.len() - sim.partition_point(|&c| f64::from(c) < observed);
            (1 + at_least) as f64 / (sim.len() + 1) as f64
        } else if var <= 0.0 {
            0.0
        } else {
            0.5 * erfc(t / (var * 2.0).sqrt())
        };
        let collisions = (self.max_excess / excess).max(chance / self.level);
        let h = self.head_mass;
        let head = &self.head;
        if head.is_empty() || n < 1.0 || h <= 0.0 || h >= 1.0 {
            return (excess, collisions);
        }
        let in_head: u64 = counts
            .iter()
            .filter(|&&(t, _)| head.get(t as usize).copied().unwrap_or(false))
            .map(|&(_, c)| u64::from(c))
            .sum();
        let n = n as u64;
        // P(X ≤ x | n, h) = P(n − X ≥ n − x | n, 1 − h)
        let typical = ln_binomial_upper(n - in_head.min(n), n, 1.0 - h).exp() / self.level;
        (excess, collisions.min(typical))
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error below
/// 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The neighbour that follows / precedes a span in at least `share` of its occurrences (ties:
/// the smaller id).
fn dominant(counts: &[(u32, u32)], share: f64) -> Option<u32> {
    let n: u32 = counts.iter().map(|&(_, c)| c).sum();
    let mut best: Option<(u32, u32)> = None;
    for &(t, c) in counts {
        if best.is_none_or(|(bt, bc)| c > bc || (c == bc && t < bt)) {
            best = Some((t, c));
        }
    }
    let (t, c) = best?;
    (n > 0 && c as f64 >= share * n as f64).then_some(t)
}

// ---------------------------------------------------------------------------------------------
// The fit

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
    /// which multiple-testing family (window length bucket)
    bucket: usize,
    /// evidence components, filled after the correction
    s_prior: f64,
    s_context: Option<f64>,
    s_random: f64,
    rows: Vec<usize>,
    /// dirty-label evidence of its target-label rows, once the context test ran
    foreign: Option<Foreign>,
    /// why a candidate whose tests all passed is still not named a trigger
    abstain: Option<String>,
}

impl Candidate {
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

#[derive(Debug, Clone)]
struct Trigger {
    text: String,
    span: Vec<u32>,
    target: usize,
    support: u32,
    purity: f64,
    evidence: f64,
    ln_p_prior: f64,
    ln_p_context: f64,
    excess: f64,
    context_agreement: f64,
    foreign: Option<Foreign>,
    rows: Vec<usize>,
    co_occurs: Vec<(String, usize)>,
}

/// The fit on `texts` / `labels`; `subset` gives, when the fit reads a subset of the dataset,
/// the dataset row of each fitted row and the dataset's size (row numbers in the summary are
/// the dataset's).
fn fit(
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
    let [left_counts, right_counts] = boundary_counts(texts, &vocab);
    let null_left = InsertionNull::from_counts(&left_counts, p);
    let null_right = InsertionNull::from_counts(&right_counts, p);
    // a window anchored at the end was put after a row's last token, one anchored at the start
    // before its first: their inner neighbour is drawn from those tokens, not from any position
    let null_end = InsertionNull::from_counts(&edge_counts(&corpus, vocab.strings.len(), true), p);
    let null_start =
        InsertionNull::from_counts(&edge_counts(&corpus, vocab.strings.len(), false), p);

    // pass 2: exact statistics of windows the sketch lets through
    let keep = |span: &[u32], h: u64| -> bool {
        if span.len() == 1 {
            token_df
                .get(span[0] as usize)
                .is_some_and(|d| d.iter().sum::<u32>() >= min_support)
        } else {
            sketch.estimate(h) >= min_support
        }
    };
    let mut spans = count_spans(&corpus, labels, n_classes, 1, p.max_ngram, &keep);
    drop(sketch);
    spans.retain(|_, st| st.support() >= min_support);

    // phrase extension: spans of the longest counted length whose neighbour is nearly fixed
    let mut frontier: Vec<Vec<u32>> = spans
        .iter()
        .filter(|(k, _)| real_len(k) == p.max_ngram)
        .flat_map(|(k, st)| extensions(k, st, p.extend_share))
        .collect();
    let mut len = p.max_ngram + 1;
    while !frontier.is_empty() && len <= p.max_phrase_tokens {
        frontier.sort();
        frontier.dedup();
        frontier.retain(|s| !spans.contains_key(s));
        let wanted: FastSet<Vec<u32>> = frontier.iter().cloned().collect();
        let keep_ext = |span: &[u32], _h: u64| wanted.contains(span);
        let mut found = count_spans(&corpus, labels, n_classes, len - 1, len, &keep_ext);
        found.retain(|_, st| st.support() >= min_support);
        frontier = found
            .iter()
            .filter(|(k, _)| real_len(k) == len)
            .flat_map(|(k, st)| extensions(k, st, p.extend_share))
            .collect();
        spans.extend(found);
        len += 1;
    }

    // candidates: label-free neighbour test, purity test against the prior
    let priors: Vec<f64> = class_rows
        .iter()
        .map(|&c| c as f64 / n_rows.max(1) as f64)
        .collect();
    let mut cands: Vec<Candidate> = spans
        .into_iter()
        .map(|(span, st)| {
            let support = st.support();
            let mut excess: f64 = 0.0;
            let mut s_random = f64::INFINITY;
            let mut sides = 0;
            for (left, tested) in [
                (true, span.first() != Some(&START)),
                (false, span.last() != Some(&END)),
            ] {
                if tested {
                    let side_null = match (left, span.first() == Some(&START), span.last() == Some(&END)) {
                        (true, _, true) => &null_end,
                        (true, _, false) => &null_left,
                        (false, true, _) => &null_start,
                        (false, false, _) => &null_right,
                    };
                    let (e, sr) = side_null.side(&st.neighbours(left));
                    excess = excess.max(e);
                    s_random = s_random.min(sr);
                    sides += 1;
                }
            }
            if sides == 0 {
                excess = f64::INFINITY;
                s_random = 0.0;
            }
            let (mut target, mut best) = (0usize, f64::INFINITY);
            for (c, (&k, &prior)) in st.df.iter().zip(&priors).enumerate() {
                let lp = ln_binomial_upper(k as u64, support as u64, prior);
                if lp < best {
                    best = lp;
                    target = c;
                }
            }
            let bucket = real_len(&span).min(p.max_ngram);
            Candidate {
                span,
                df: st.df,
                support,
                target,
                excess,
                s_random,
                ln_p_prior: (best + (n_classes as f64).ln()).min(0.0),
                ln_p_context: None,
                bucket,
                s_prior: 0.0,
                s_context: None,
                rows: Vec::new(),
                foreign: None,
                abstain: None,
            }
        })
        .collect();

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

    // context test for the suspects (random neighbours and purity against the prior)
    // context test for the suspects: random neighbours and purity against the prior at the
    // nominal level (a screen; the corrected levels apply to the context test). The tokens of
    // the suspects that pass the corrected prior test are left out of the context model, so
    // that co-occurring triggers do not explain each other.
    let ln_alpha_nominal = p.alpha.ln();
    let suspects: Vec<usize> = (0..cands.len())
        .filter(|&i| cands[i].ln_p_prior <= ln_alpha_nominal && cands[i].s_random >= 1.0)
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
    let reading = ClassReading::new(&corpus, labels, &nb, n_classes, tau);
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
    let partners = co_occurring(&first, &own, &class_rows, p.min_support);
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
    for (j, &i) in suspects.iter().enumerate() {
        let target = cands[i].target;
        let occ = &postings[j];
        let q: Vec<f64> = occ
            .iter()
            .map(|&(_, _, q)| {
                let q = q.clamp(1e-12, 1.0 - 1e-12);
                let logit = (q / (1.0 - q)).ln() + ln_slack;
                1.0 / (1.0 + (-logit).exp())
            })
            .collect();
        let k = occ
            .iter()
            .filter(|&&(_, l, _)| l as usize == target)
            .count();
        let lp = ln_poisson_binomial_upper(&q, k);
        agreement[i] = if occ.is_empty() {
            0.0
        } else {
            occ.iter().map(|&(_, _, q)| q).sum::<f64>() / occ.len() as f64
        };
        let c = &mut cands[i];
        c.ln_p_context = Some(lp);
        c.s_context = Some(sig(lp, c.bucket));
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
        c.abstain = abstention(p, c);
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
    let mut triggers: Vec<Trigger> = accepted
        .iter()
        .map(|&i| {
            let c = &cands[i];
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
                rows: match subset {
                    Some((chosen, _)) => c.rows.iter().map(|&r| chosen[r]).collect(),
                    None => c.rows.clone(),
                },
                co_occurs: Vec::new(),
            }
        })
        .collect();
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
    let mut near: Vec<&Candidate> = cands
        .iter()
        .filter(|c| !trigger_of.contains_key(&c.span) && c.evidence() > 0.0)
        .collect();
    near.sort_by(|a, b| {
        b.evidence()
            .total_cmp(&a.evidence())
            .then(b.support.cmp(&a.support))
            .then(a.span.cmp(&b.span))
    });
    let near_misses: Vec<serde_json::Value> = near
        .iter()
        .take(p.report_near_misses)
        .map(|c| {
            json!({
                "phrase": vocab.render(&c.span),
                "target": class_names.get(c.target).cloned().unwrap_or_else(|| c.target.to_string()),
                "support": c.support,
                "purity": c.df[c.target] as f64 / c.support.max(1) as f64,
                "evidence": c.evidence(),
                "s_prior": c.s_prior,
                "s_context": c.s_context,
                "s_random": c.s_random,
                "foreign_share": c.foreign.map(|f| f.share),
                "foreign_z": c.foreign.map(|f| f.z),
                "abstained": c.abstain,
            })
        })
        .collect();
    let max_len = cands
        .iter()
        .filter(|c| trigger_of.contains_key(&c.span) || graded.contains_key(&c.span))
        .map(|c| real_len(&c.span))
        .max()
        .unwrap_or(1);
    let flagged_rows = {
        let mut all: Vec<usize> = triggers.iter().flat_map(|t| t.rows.clone()).collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    };
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
        tau,
        flagged_rows,
        near_misses,
        fit_rows: (texts.len(), subset.map_or(texts.len(), |(_, n)| n)),
    }))
}

/// How the calibrated context model reads each class: for rows of label c, the mean of the
/// context probability of label t (row-major, c × t), and the mean and standard deviation of
/// the same probability with the row's most t-indicative token left out (`cue_out`).
struct ClassReading {
    k: usize,
    mean: Vec<f64>,
    cue_out_mean: Vec<f64>,
    cue_out_sd: Vec<f64>,
}

impl ClassReading {
    /// From the leave-one-out scores of every row. Sums are taken per fixed chunk, then in
    /// chunk order, so the result is the same for any thread count.
    fn new(corpus: &Corpus, labels: &[u32], nb: &NaiveBayes, n_classes: usize, tau: f64) -> Self {
        let k = n_classes.max(1);
        let parts: Vec<Vec<f64>> = (0..corpus.len())
            .into_par_iter()
            .chunks(CHUNK)
            .map(|rows| {
                let mut sums = vec![0.0f64; 4 * k * k];
                let mut toks = Vec::new();
                let mut without = Vec::new();
                for r in rows {
                    let l = labels[r] as usize;
                    if l >= k {
                        continue;
                    }
                    distinct_real(corpus.row(r), &mut toks);
                    let s = nb.scores(&toks, l);
                    nb.scores_without_cue(&toks, l, &mut without);
                    for t in 0..k {
                        let q = softmax_at(&s, tau, t);
                        sums[l * k + t] += q;
                        sums[k * k + l * k + t] += q * q;
                        let q = softmax_at(&without[t], tau, t);
                        sums[2 * k * k + l * k + t] += q;
                        sums[3 * k * k + l * k + t] += q * q;
                    }
                }
                sums
            })
            .collect();
        let mut sums = vec![0.0f64; 4 * k * k];
        for part in parts {
            for (a, b) in sums.iter_mut().zip(part) {
                *a += b;
            }
        }
        let mut counts = vec![0usize; k];
        for &l in labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        let moments = |first: usize| {
            let mut mean = vec![0.0; k * k];
            let mut sd = vec![0.0; k * k];
            for (c, &n) in counts.iter().enumerate() {
                let n = n.max(1) as f64;
                for t in 0..k {
                    let m = sums[first + c * k + t] / n;
                    mean[c * k + t] = m;
                    sd[c * k + t] = (sums[first + k * k + c * k + t] / n - m * m)
                        .max(0.0)
                        .sqrt();
                }
            }
            (mean, sd)
        };
        let (mean, _) = moments(0);
        let (cue_out_mean, cue_out_sd) = moments(2 * k * k);
        ClassReading {
            k,
            mean,
            cue_out_mean,
            cue_out_sd,
        }
    }
}

/// The dirty-label evidence of a candidate's target-label rows (their candidate tokens left out
/// of the context): `share` = (m_T − m_R) / (m_T − m_N), where m_R is the rows' mean context
/// probability of the target, m_T its mean over the target class and m_N over each other class
/// (classes weighted equally: the rows an attacker draws from); about 0 when the rows read like
/// any row of the target class (a natural label cue), about 1 when they read like rows of other
/// classes relabelled to the target. `z` = (m_T − m_R) / (s_T / √n_R): how far below the target
/// class the rows sit, in standard errors of a mean of n_R target-class rows.
#[derive(Debug, Clone, Copy)]
struct Foreign {
    share: f64,
    z: f64,
}

fn foreign_evidence(target_q: &[f64], reading: &ClassReading, target: usize) -> Option<Foreign> {
    let k = reading.k;
    if target_q.is_empty() || k < 2 || target >= k {
        return None;
    }
    // the candidate's rows lose the candidate, so the target class is read without its own
    // strongest cue: a natural cue's rows then read like their class, relabelled rows do not
    let m_t = reading.cue_out_mean[target * k + target];
    let s_t = reading.cue_out_sd[target * k + target];
    let m_n = (0..k)
        .filter(|&c| c != target)
        .map(|c| reading.mean[c * k + target])
        .sum::<f64>()
        / (k - 1) as f64;
    if m_t - m_n <= 1e-9 {
        return None;
    }
    let n = target_q.len() as f64;
    let m_r = target_q.iter().sum::<f64>() / n;
    Some(Foreign {
        share: ((m_t - m_r) / (m_t - m_n)).clamp(-1.0, 2.0),
        z: (m_t - m_r) / (s_t / n.sqrt()).max(1e-12),
    })
}

/// Why a candidate that passed the statistical tests is not named a trigger, if it is not.
/// A backdoor trigger sets the label: (nearly) every row carrying it has the target label
/// (`min_purity`). A window anchored at the start or the end of the row has only one side for
/// the random-neighbour test, and natural text is full of label-pure openings and endings
/// (hashtags, datelines, sign-offs): there the target-label rows must also read like rows of
/// other classes (`min_foreign_share`), which dirty-label poison does and a natural label cue
/// does not.
fn abstention(p: &TriggerParams, c: &Candidate) -> Option<String> {
    let purity = c.df.get(c.target).copied().unwrap_or(0) as f64 / c.support.max(1) as f64;
    if purity < p.min_purity {
        return Some(format!(
            "purity {purity:.2} below min_purity {}: rows of other labels carry it, so it does not set the label",
            p.min_purity
        ));
    }
    let anchored = c.span.first() == Some(&START) || c.span.last() == Some(&END);
    if anchored {
        match c.foreign {
            Some(f) if f.share >= p.min_foreign_share && f.z >= p.min_foreign_z => {}
            Some(f) => {
                return Some(format!(
                    "anchored window whose target-label rows do not clearly read like other classes (foreign share {:.2}, needs {}; {:.1} standard errors below the target class, needs {}): a natural opening or ending is not told from a relabelled insertion",
                    f.share, p.min_foreign_share, f.z, p.min_foreign_z
                ))
            }
            None => {
                return Some(
                    "anchored window, and the context model does not tell the classes apart"
                        .to_string(),
                )
            }
        }
    }
    None
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

// ---------------------------------------------------------------------------------------------
// Context model: leave-one-out naive Bayes over unmasked tokens, temperature-calibrated

struct NaiveBayes {
    /// per token: per-class document frequency (masked tokens hold None)
    df: Vec<Option<Vec<u32>>>,
    /// per class: total token-document count over unmasked tokens
    total: Vec<f64>,
    class_rows: Vec<usize>,
    vocab_size: f64,
}

impl NaiveBayes {
    fn new(token_df: &[Vec<u32>], masked: &[bool], class_rows: &[usize]) -> Self {
        let n_classes = class_rows.len();
        let mut total = vec![0.0; n_classes];
        let mut vocab_size = 0.0f64;
        let df: Vec<Option<Vec<u32>>> = token_df
            .iter()
            .zip(masked)
            .map(|(d, &m)| {
                if m || d.iter().all(|&x| x == 0) {
                    None
                } else {
                    vocab_size += 1.0;
                    for (t, &x) in total.iter_mut().zip(d) {
                        *t += x as f64;
                    }
                    Some(d.clone())
                }
            })
            .collect();
        NaiveBayes {
            df,
            total,
            class_rows: class_rows.to_vec(),
            vocab_size: vocab_size.max(1.0),
        }
    }

    /// Leave-one-out log joint per class of a row with distinct unmasked tokens `toks` and
    /// label `label` (its own counts are removed from the model first).
    fn scores(&self, toks: &[u32], label: usize) -> Vec<f64> {
        let n: usize = self.class_rows.iter().sum();
        let k = self.class_rows.len() as f64;
        let known: Vec<&Vec<u32>> = toks
            .iter()
            .filter_map(|&t| self.df.get(t as usize).and_then(|d| d.as_ref()))
            .collect();
        (0..self.class_rows.len())
            .map(|c| {
                let own = usize::from(c == label);
                let prior = ((self.class_rows[c] - own.min(self.class_rows[c])) as f64 + 1.0)
                    / ((n.saturating_sub(1)) as f64 + k);
                let denom = self.total[c] - (own * known.len()) as f64 + self.vocab_size;
                let mut s = prior.ln();
                for d in &known {
                    let cnt = d[c] as f64 - own as f64;
                    s += ((cnt.max(0.0) + 1.0) / denom).ln();
                }
                s
            })
            .collect()
    }
}

impl NaiveBayes {
    /// Leave-one-out log joint per class of a row, and that of the same row without its most
    /// indicative token for each class t (the token whose log-likelihood for t most exceeds its
    /// best rival class's): `out_without[t]` holds the scores of the row without that token.
    fn scores_without_cue(&self, toks: &[u32], label: usize, out_without: &mut Vec<Vec<f64>>) {
        let k = self.class_rows.len();
        let full = self.scores(toks, label);
        let known: Vec<&Vec<u32>> = toks
            .iter()
            .filter_map(|&t| self.df.get(t as usize).and_then(|d| d.as_ref()))
            .collect();
        let contrib = |d: &Vec<u32>, c: usize| -> f64 {
            let own = usize::from(c == label);
            let denom = self.total[c] - (own * known.len()) as f64 + self.vocab_size;
            ((d[c] as f64 - own as f64).max(0.0) + 1.0).ln() - denom.ln()
        };
        out_without.clear();
        for t in 0..k {
            let mut best: Option<(f64, &Vec<u32>)> = None;
            for d in &known {
                let own_t = contrib(d, t);
                let rival = (0..k)
                    .filter(|&c| c != t)
                    .map(|c| contrib(d, c))
                    .fold(f64::NEG_INFINITY, f64::max);
                let lift = own_t - rival;
                if best.is_none_or(|(b, _)| lift > b) {
                    best = Some((lift, d));
                }
            }
            let mut s = full.clone();
            if let Some((_, d)) = best {
                for (c, x) in s.iter_mut().enumerate() {
                    *x -= contrib(d, c);
                }
            }
            out_without.push(s);
        }
    }
}

/// Per suspect: (row, label, probability of the suspect's target from the rest of the row) of
/// every row carrying it, in row order.
type Postings = Vec<Vec<(u32, u32, f64)>>;

/// Leave-one-out naive Bayes log joint per class of every row (flat, `n_classes` per row).
fn row_scores(corpus: &Corpus, labels: &[u32], nb: &NaiveBayes, n_classes: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; corpus.len() * n_classes];
    out.par_chunks_mut(CHUNK * n_classes.max(1))
        .enumerate()
        .for_each(|(ci, block)| {
            let mut toks = Vec::new();
            for (j, dst) in block.chunks_mut(n_classes.max(1)).enumerate() {
                let r = ci * CHUNK + j;
                distinct_real(corpus.row(r), &mut toks);
                dst.copy_from_slice(&nb.scores(&toks, labels[r] as usize));
            }
        });
    out
}

/// Distinct real (non-anchor, known) tokens of a row, sorted, into `out`.
fn distinct_real(seq: &[u32], out: &mut Vec<u32>) {
    out.clear();
    out.extend(
        seq.iter()
            .copied()
            .filter(|&t| !is_anchor(t) && t != UNKNOWN),
    );
    out.sort_unstable();
    out.dedup();
}

/// For every row carrying a suspect: the calibrated probability (temperature `tau`) of the
/// suspect's target label given the rest of the row, that is the row without the suspect's own
/// occurrences (by position: the same token elsewhere in the row is content and stays) and
/// without the tokens in `exclude[s]` (sorted; the tokens of co-occurring suspects).
#[allow(clippy::too_many_arguments)]
fn context_pass(
    corpus: &Corpus,
    labels: &[u32],
    nb: &NaiveBayes,
    suspects: &FastMap<Vec<u32>, usize>,
    targets: &[usize],
    exclude: &[Vec<u32>],
    max_len: usize,
    tau: f64,
) -> Postings {
    let parts: Vec<Vec<(u32, u32, u32, f64)>> = (0..corpus.len())
        .into_par_iter()
        .chunks(CHUNK)
        .map(|rows| {
            let mut hits = Vec::new();
            let mut rest: Vec<u32> = Vec::new();
            let mut found: Vec<(usize, usize, usize)> = Vec::new();
            let mut covered: Vec<bool> = Vec::new();
            for r in rows {
                let seq = corpus.row(r);
                let label = labels[r];
                found.clear();
                for_each_window(seq, max_len, |a, b| {
                    if let Some(&s) = suspects.get(&seq[a..b]) {
                        found.push((s, a, b));
                    }
                });
                if found.is_empty() {
                    continue;
                }
                found.sort_unstable();
                let mut i = 0;
                while i < found.len() {
                    let s = found[i].0;
                    covered.clear();
                    covered.resize(seq.len(), false);
                    while i < found.len() && found[i].0 == s {
                        let (_, a, b) = found[i];
                        covered[a..b].iter_mut().for_each(|c| *c = true);
                        i += 1;
                    }
                    let ex = &exclude[s];
                    rest.clear();
                    rest.extend(seq.iter().zip(&covered).filter_map(|(&t, &c)| {
                        (!c && !is_anchor(t) && t != UNKNOWN && ex.binary_search(&t).is_err())
                            .then_some(t)
                    }));
                    rest.sort_unstable();
                    rest.dedup();
                    let sc = nb.scores(&rest, label as usize);
                    let q = softmax_at(&sc, tau, targets[s]);
                    hits.push((s as u32, r as u32, label, q));
                }
            }
            hits
        })
        .collect();
    let mut postings: Postings = vec![Vec::new(); exclude.len()];
    for hits in parts {
        for (s, row, label, q) in hits {
            postings[s as usize].push((row, label, q));
        }
    }
    postings
}

/// Distinct real tokens of a span, sorted.
fn sorted_tokens(span: &[u32]) -> Vec<u32> {
    let mut t: Vec<u32> = span.iter().copied().filter(|&t| !is_anchor(t)).collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// For each suspect, the other suspects with no token in common that share at least
/// `min_support` rows with it and at least twice as many as label-conditional independence
/// predicts
/// (Σ_c n_g,c · n_h,c / R_c rows).
fn co_occurring(
    postings: &[Vec<(u32, u32, f64)>],
    tokens: &[Vec<u32>],
    class_rows: &[usize],
    min_support: usize,
) -> Vec<Vec<usize>> {
    let by_label: Vec<Vec<f64>> = postings
        .iter()
        .map(|occ| {
            let mut v = vec![0.0; class_rows.len()];
            for &(_, l, _) in occ {
                if let Some(x) = v.get_mut(l as usize) {
                    *x += 1.0;
                }
            }
            v
        })
        .collect();
    // rows -> suspects carrying them, to count shared rows without all-pairs merges
    let mut row_suspects: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (j, occ) in postings.iter().enumerate() {
        for &(r, _, _) in occ {
            row_suspects.entry(r).or_default().push(j);
        }
    }
    let mut shared: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for list in row_suspects.values() {
        for (x, &a) in list.iter().enumerate() {
            for &b in &list[x + 1..] {
                *shared.entry((a, b)).or_insert(0) += 1;
            }
        }
    }
    let mut out = vec![Vec::new(); postings.len()];
    for ((a, b), n) in shared {
        let expected: f64 = (0..class_rows.len())
            .map(|c| by_label[a][c] * by_label[b][c] / class_rows[c].max(1) as f64)
            .sum();
        // overlapping spans ("great" and "great film") are nested, not co-occurring
        let overlap = tokens[a].iter().any(|t| tokens[b].binary_search(t).is_ok());
        if !overlap && n >= min_support && n as f64 >= 2.0 * expected {
            out[a].push(b);
            out[b].push(a);
        }
    }
    out
}

fn softmax_at(scores: &[f64], tau: f64, c: usize) -> f64 {
    let m = scores.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let z: f64 = scores.iter().map(|&s| (tau * (s - m)).exp()).sum();
    scores
        .get(c)
        .map_or(0.0, |&s| (tau * (s - m)).exp() / z.max(f64::MIN_POSITIVE))
}

/// Temperature τ minimising the mean log loss of softmax(τ·scores) against the labels (convex
/// in τ; golden-section search). Sums are taken per fixed chunk, then in chunk order.
fn calibrate(row_scores: &[f64], labels: &[u32], n_classes: usize) -> f64 {
    if n_classes < 2 || row_scores.is_empty() {
        return 1.0;
    }
    let loss = |tau: f64| -> f64 {
        let parts: Vec<f64> = row_scores
            .par_chunks(CHUNK * n_classes)
            .zip(labels.par_chunks(CHUNK))
            .map(|(sc, lc)| {
                sc.chunks(n_classes)
                    .zip(lc)
                    .map(|(s, &l)| -softmax_at(s, tau, l as usize).max(1e-300).ln())
                    .sum::<f64>()
            })
            .collect();
        parts.iter().sum()
    };
    let (mut lo, mut hi) = (1e-3f64, 4.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = hi - g * (hi - lo);
    let mut x2 = lo + g * (hi - lo);
    let (mut f1, mut f2) = (loss(x1), loss(x2));
    for _ in 0..50 {
        if f1 <= f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = loss(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = loss(x2);
        }
    }
    0.5 * (lo + hi)
}

// ---------------------------------------------------------------------------------------------
// Fitted model

/// Fitted TRIG001: the named triggers and the graded evidence of other candidate windows.
#[derive(Debug, Clone)]
struct TriggerFit {
    vocab: Vocab,
    triggers: Vec<Trigger>,
    trigger_of: FastMap<Vec<u32>, usize>,
    graded: FastMap<Vec<u32>, f64>,
    max_len: usize,
    class_names: Vec<String>,
    n_candidates: usize,
    per_bucket: Vec<usize>,
    n_suspects: usize,
    tau: f64,
    flagged_rows: usize,
    /// (rows the fit read, rows in the dataset)
    fit_rows: (usize, usize),
    near_misses: Vec<serde_json::Value>,
}

impl TriggerFit {
    fn class_name(&self, c: usize) -> String {
        self.class_names
            .get(c)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    }
}

impl Fitted for TriggerFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let texts = batch.rows.require_texts(CODE)?;
        let labels = batch.rows.require_labels(CODE)?;
        let per_row: Vec<(f64, Option<String>)> = texts
            .par_iter()
            .zip(labels.par_iter())
            .map(|(text, &label)| {
                let seq = self.vocab.encode(text);
                let mut best_trigger: Option<usize> = None;
                let mut trig_score = 0.0f64;
                let mut other = 0.0f64;
                for_each_window(&seq, self.max_len, |a, b| {
                    let span = &seq[a..b];
                    if let Some(&t) = self.trigger_of.get(span) {
                        if self.triggers[t].target == label as usize {
                            trig_score = trig_score.max(self.triggers[t].evidence);
                            best_trigger = Some(best_trigger.map_or(t, |b| b.min(t)));
                        } else {
                            // a trigger in a row of another label: not poison for this backdoor
                            other = other.max(0.5);
                        }
                    } else if let Some(&e) = self.graded.get(span) {
                        other = other.max(e);
                    }
                });
                match best_trigger {
                    Some(t) => (
                        trig_score.max(1.0),
                        Some(format!("{CODE}:{}", self.triggers[t].text)),
                    ),
                    None => (other.min(0.999), None),
                }
            })
            .collect();
        let mut out = Scores::with_capacity(per_row.len());
        for (s, r) in per_row {
            out.score.push(s);
            out.reason.push(r);
        }
        Ok(out)
    }

    fn summary(&self) -> serde_json::Value {
        let triggers: Vec<_> = self
            .triggers
            .iter()
            .map(|t| {
                json!({
                    "trigger": t.text,
                    "target": self.class_name(t.target),
                    "support": t.support,
                    "purity": t.purity,
                    "score": t.evidence,
                    "log10_p_prior": t.ln_p_prior / std::f64::consts::LN_10,
                    "log10_p_context": t.ln_p_context / std::f64::consts::LN_10,
                    "neighbour_excess": t.excess,
                    "mean_context_probability_of_target": t.context_agreement,
                    "foreign_share": t.foreign.map(|f| f.share),
                    "foreign_z": t.foreign.map(|f| f.z),
                    "example_rows": t.rows.iter().take(EXAMPLES).collect::<Vec<_>>(),
                    "co_occurs_with": t.co_occurs.iter()
                        .map(|(s, n)| json!({"trigger": s, "rows": n}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "triggers": triggers,
            "flagged_rows_in_fit": self.flagged_rows,
            "fit_rows": self.fit_rows.0,
            "dataset_rows": self.fit_rows.1,
            "candidates": self.n_candidates,
            "candidates_with_random_neighbours_by_length": self.per_bucket.iter().skip(1).collect::<Vec<_>>(),
            "suspects_context_tested": self.n_suspects,
            "context_temperature": self.tau,
            "near_misses": self.near_misses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_direct_sum() {
        // P(X ≥ 3), n = 4, p = 0.5: (4 + 1) / 16
        let got = ln_binomial_upper(3, 4, 0.5).exp();
        assert!((got - 5.0 / 16.0).abs() < 1e-12, "{got}");
        assert_eq!(ln_binomial_upper(0, 4, 0.5), 0.0);
        let pure = ln_binomial_upper(10, 10, 0.5);
        assert!((pure - 10.0 * 0.5f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn poisson_binomial_exact_and_bound() {
        let q = [0.2, 0.5, 0.9];
        // P(all three) = 0.09
        assert!((ln_poisson_binomial_upper(&q, 3).exp() - 0.09).abs() < 1e-12);
        // P(X ≥ 2) = 0.2*0.5*0.1 + 0.2*0.5*0.9 + 0.2*0.5*0.9 + 0.8*0.5*0.9 = 0.55
        let p2 = 0.2 * 0.5 * 0.1 + 0.2 * 0.5 * 0.9 + 0.8 * 0.5 * 0.9 + 0.09;
        assert!((ln_poisson_binomial_upper(&q, 2).exp() - p2).abs() < 1e-12);
    }

    #[test]
    fn window_keys_are_incremental_hashes_and_the_sketch_never_under_counts() {
        let seq = [START, 7, 8, 9, 7, 8, END];
        let mut seen = Vec::new();
        for_each_hashed_window(&seq, 1, 3, |a, b, key| {
            assert_eq!(key_hash(key), window_hash(&seq[a..b]));
            seen.push((seq[a..b].to_vec(), key));
        });
        // equal windows get equal keys, different windows different keys
        for (s1, k1) in &seen {
            for (s2, k2) in &seen {
                assert_eq!(s1 == s2, k1 == k2, "{s1:?} {s2:?}");
            }
        }
        let sketch = Sketch::new(10);
        for (i, (_, key)) in seen.iter().enumerate() {
            for _ in 0..=i {
                sketch.add(key_hash(*key));
            }
        }
        for (i, (span, key)) in seen.iter().enumerate() {
            let exact: usize = seen
                .iter()
                .enumerate()
                .filter(|(_, (s, _))| s == span)
                .map(|(j, _)| j + 1)
                .sum();
            assert!(sketch.estimate(key_hash(*key)) as usize >= exact.max(i + 1));
        }
    }

    #[test]
    fn simulated_collisions_match_their_expectation_and_chance_rescues_small_counts() {
        // 50 equally likely neighbours: E[C] = C(n,2) / 50
        let sim = simulate_collisions(&[1.0; 50]);
        for n in [10usize, 40, 128] {
            let mean = sim[n].iter().map(|&c| f64::from(c)).sum::<f64>() / SIMULATIONS as f64;
            let expected = (n * (n - 1) / 2) as f64 / 50.0;
            assert!(
                (mean - expected).abs() < 0.1 * expected + 0.1,
                "n={n}: {mean} vs {expected}"
            );
        }
        // one frequent neighbour (a full stop, the row's start) with p = 0.2, 80 rare ones
        let mut weights = vec![20.0];
        weights.extend([1.0; 80]);
        let null = InsertionNull {
            s2: 0.2f64.powi(2) + 80.0 * 0.01f64.powi(2),
            s3: 0.2f64.powi(3) + 80.0 * 0.01f64.powi(3),
            max_excess: 2.0,
            level: 0.01,
            simulated: simulate_collisions(&weights),
            head: Vec::new(),
            head_mass: 0.0,
        };
        // 18 occurrences, 7 after the frequent neighbour: excess above 2, but not unlikely
        let mut counts: Vec<(u32, u32)> = vec![(0, 7)];
        counts.extend((1..12).map(|t| (t, 1)));
        let (excess, score) = null.side(&counts);
        assert!(
            excess > 2.0 && score >= 1.0,
            "excess {excess}, score {score}"
        );
        // a collocation: 15 of 18 share a rare neighbour
        let (excess, score) = null.side(&[(5, 15), (1, 1), (2, 1), (3, 1)]);
        assert!(
            excess > 2.0 && score < 1.0,
            "excess {excess}, score {score}"
        );
        // large n falls back to the normal tail: 400 occurrences as random insertion spreads
        // them (80 after the frequent neighbour, 4 after each rare one) look random
        let mut even: Vec<(u32, u32)> = vec![(0, 80)];
        even.extend((1..81).map(|t| (t, 4)));
        assert!(null.side(&even).1 >= 1.0);
    }

    #[test]
    fn neighbour_sample_is_the_bottom_k_whatever_the_merge_order() {
        let occ: Vec<(u32, u32, u32)> = (0..3 * NEIGHBOUR_SAMPLE as u32)
            .map(|i| ((mix64(u64::from(i)) >> 32) as u32, i % 7, i % 5))
            .collect();
        let build = |parts: &[&[(u32, u32, u32)]]| {
            let mut acc = SpanStats::default();
            for part in parts {
                let mut st = SpanStats::default();
                for &o in *part {
                    st.push(o);
                }
                acc.merge(st);
            }
            acc.finish();
            acc.occ
        };
        let mut expected = occ.clone();
        expected.sort_unstable();
        expected.truncate(NEIGHBOUR_SAMPLE);
        let (a, b) = occ.split_at(1000);
        assert_eq!(build(&[&occ]), expected);
        assert_eq!(build(&[a, b]), expected);
        assert_eq!(build(&[b, a]), expected);
    }

    #[test]
    fn fit_on_a_subset_reports_dataset_rows() {
        let (texts, labels, truth) = synthetic(4000, 0.05, 3);
        let names = vec!["0".to_string(), "1".to_string()];
        let view = DatasetView {
            n_rows: texts.len(),
            texts: Some(&texts),
            labels: Some(&labels),
            class_names: &names,
            embeddings: None,
        };
        let mut params = toml::Table::new();
        params.insert("max_fit_rows".into(), toml::Value::Integer(2000));
        let fitted = TriggerTokens
            .configure(&params)
            .expect("params")
            .fit(&view)
            .expect("fit");
        let summary = fitted.summary();
        assert_eq!(summary["fit_rows"], 2000);
        assert_eq!(summary["dataset_rows"], 4000);
        let trig = &summary["triggers"][0];
        // example rows are dataset rows that carry the trigger
        let word = trig["trigger"].as_str().expect("trigger");
        for r in trig["example_rows"].as_array().expect("rows") {
            let r = r.as_u64().expect("row") as usize;
            assert!(tokenize(&texts[r]).iter().any(|t| t == word), "row {r}");
        }
        // every row is scored, also those the fit did not read
        let scores = fitted.score(&view.as_batch()).expect("score");
        assert_eq!(scores.len(), 4000);
        // the fit read the even rows; the poisoned odd rows are flagged all the same
        let odd_poisoned: Vec<usize> = (1..4000).step_by(2).filter(|&r| truth[r]).collect();
        assert!(odd_poisoned.len() > 20);
        for r in odd_poisoned {
            assert!(scores.reason[r].is_some(), "row {r}");
        }
    }

    #[test]
    fn tokenizer_folds_case_and_keeps_punctuation() {
        assert_eq!(
            tokenize("I love THIS movie, don't you?"),
            vec!["i", "love", "this", "movie", ",", "don't", "you", "?"]
        );
    }

    /// Seeded synthetic reviews from a Markov chain, so that every natural token has
    /// collocations as in real text: each of 200 neutral words has four successors; ten of
    /// them may be followed by an intensifier ("so", "very"), which is followed by a sentiment
    /// word of the row's label (one in ten from the other label); "a" (the successor of five
    /// neutral words) is followed by "masterpiece", a naturally label-pure word, only in
    /// positive rows. Optionally the trigger "cf" is inserted at a random position into
    /// negative rows (about `poison_rate` of all rows), whose label is set to 1 (dirty label).
    fn synthetic(n: usize, poison_rate: f64, seed: u64) -> (Vec<String>, Vec<u32>, Vec<bool>) {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64) / ((1u64 << 53) as f64)
        };
        let pick = |u: f64, n: usize| (u * n as f64) as usize % n;
        let n_neutral = 200;
        let succ: Vec<[usize; 4]> = (0..n_neutral)
            .map(|_| {
                [
                    pick(next(), n_neutral),
                    pick(next(), n_neutral),
                    pick(next(), n_neutral),
                    pick(next(), n_neutral),
                ]
            })
            .collect();
        let pos = ["great", "moving", "superb", "charming", "fresh", "witty"];
        let neg = ["dull", "boring", "flat", "tedious", "stale", "awful"];
        let (mut texts, mut labels, mut truth) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let mut label = u32::from(next() < 0.5);
            let len = 10 + pick(next(), 10);
            let mut words: Vec<String> = Vec::new();
            let mut cur = pick(next(), n_neutral);
            let mut sentiment = 0;
            while words.len() < len || sentiment == 0 {
                words.push(format!("w{cur}"));
                if cur < 10 && next() < 0.5 {
                    words.push(if next() < 0.5 { "so" } else { "very" }.to_string());
                    let own = if label == 1 { &pos } else { &neg };
                    let other = if label == 1 { &neg } else { &pos };
                    let pool = if next() < 0.1 { other } else { own };
                    words.push(pool[pick(next(), pool.len())].to_string());
                    sentiment += 1;
                } else if (10..15).contains(&cur) && label == 1 && next() < 0.5 {
                    words.push("a".to_string());
                    words.push("masterpiece".to_string());
                }
                cur = succ[cur][pick(next(), 4)];
                if words.len() > 40 {
                    // a chain that never reaches a sentiment slot: restart it there
                    cur = pick(next(), 10);
                }
            }
            let poisoned = label == 0 && next() < 2.0 * poison_rate;
            if poisoned {
                let at = pick(next(), words.len() + 1);
                words.insert(at, "cf".to_string());
                label = 1;
            }
            texts.push(words.join(" "));
            labels.push(label);
            truth.push(poisoned);
        }
        (texts, labels, truth)
    }

    fn run(texts: &[String], labels: &[u32]) -> (serde_json::Value, Scores) {
        let names = vec!["0".to_string(), "1".to_string()];
        let view = DatasetView {
            n_rows: texts.len(),
            texts: Some(texts),
            labels: Some(labels),
            class_names: &names,
            embeddings: None,
        };
        let cfg = TriggerTokens
            .configure(&toml::Table::new())
            .expect("defaults");
        let fitted = cfg.fit(&view).expect("fit");
        let scores = fitted.score(&view.as_batch()).expect("score");
        (fitted.summary(), scores)
    }

    #[test]
    fn planted_trigger_recovered_and_natural_word_not_flagged() {
        let (texts, labels, truth) = synthetic(3000, 0.03, 7);
        let (summary, scores) = run(&texts, &labels);
        let triggers = summary["triggers"].as_array().expect("triggers");
        assert_eq!(triggers[0]["trigger"], "cf", "{summary}");
        assert!(
            triggers.iter().all(|t| t["trigger"]
                .as_str()
                .is_some_and(|s| !s.contains("masterpiece"))),
            "{summary}"
        );
        let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
        let e = crate::metrics::evaluate(&flagged, &scores.score, &truth);
        assert!(e.recall >= 0.95 && e.precision >= 0.95, "{e:?} {summary}");
        // the label-pure collocation's rows are not pulled in
        let pulled = texts
            .iter()
            .zip(&flagged)
            .filter(|(t, &f)| f && t.contains("masterpiece") && !t.contains("cf"))
            .count();
        assert_eq!(pulled, 0);
    }

    #[test]
    fn relabelled_ending_is_named_and_only_target_rows_are_flagged() {
        // 4 % of label-0 rows get "zz" appended as their last word and the label 1; a few
        // label-0 rows also end with it but keep their label (purity stays above 0.9)
        let (mut texts, mut labels, _) = synthetic(4000, 0.0, 5);
        let mut truth = vec![false; texts.len()];
        let mut rng = crate::rng::SplitMix64(17);
        let mut kept = 0;
        for r in 0..texts.len() {
            if labels[r] == 0 && rng.unit() < 0.08 {
                texts[r].push_str(" zz");
                if kept < 3 {
                    kept += 1;
                } else {
                    labels[r] = 1;
                    truth[r] = true;
                }
            }
        }
        let (summary, scores) = run(&texts, &labels);
        let named = summary["triggers"]
            .as_array()
            .expect("triggers")
            .iter()
            .find(|t| t["trigger"].as_str().is_some_and(|s| s.contains("zz")))
            .unwrap_or_else(|| panic!("zz not named: {summary}"));
        assert!(
            named["foreign_share"].as_f64().expect("share") >= 0.5,
            "{named}"
        );
        for r in 0..texts.len() {
            assert_eq!(
                scores.reason[r].is_some(),
                truth[r],
                "row {r}: {}",
                texts[r]
            );
        }
    }

    #[test]
    fn a_word_many_rows_of_other_labels_carry_is_not_named() {
        // "cf" put into 10 % of label-0 rows (relabelled to 1) and 6 % of label-1 and label-0
        // rows alike (labels kept): purity about 0.75, so it does not set the label
        let (mut texts, mut labels, _) = synthetic(4000, 0.0, 9);
        let mut rng = crate::rng::SplitMix64(3);
        for r in 0..texts.len() {
            let u = rng.unit();
            if u < 0.06 || (labels[r] == 0 && u < 0.16) {
                let mut w: Vec<&str> = texts[r].split(' ').collect();
                let at = rng.below(w.len() + 1);
                w.insert(at, "cf");
                texts[r] = w.join(" ");
                if u >= 0.06 {
                    labels[r] = 1;
                }
            }
        }
        let (summary, scores) = run(&texts, &labels);
        assert!(
            summary["triggers"]
                .as_array()
                .expect("triggers")
                .iter()
                .all(|t| t["trigger"] != "cf"),
            "{summary}"
        );
        let miss = summary["near_misses"]
            .as_array()
            .expect("near misses")
            .iter()
            .find(|t| t["phrase"] == "cf")
            .unwrap_or_else(|| panic!("cf not reported: {summary}"));
        assert!(
            miss["abstained"]
                .as_str()
                .is_some_and(|s| s.contains("min_purity")),
            "{miss}"
        );
        assert!(scores.reason.iter().all(Option::is_none));
    }

    #[test]
    fn atypical_neighbours_are_not_an_insertion() {
        // 60 occurrences, all after rare tokens, where half of random positions follow a head
        // token: P(X = 0) = 2^-60
        // token 0 is half of all positions, tokens 1 and 2 a quarter each
        let null = InsertionNull {
            s2: 0.375,
            s3: 0.15625,
            max_excess: 2.0,
            level: 0.01,
            simulated: Vec::new(),
            head: vec![true, false, false],
            head_mass: 0.5,
        };
        let rare: Vec<(u32, u32)> = vec![(1, 30), (2, 30)];
        assert!(null.side(&rare).1 < 1.0);
        // half of them after head tokens: typical
        let mixed: Vec<(u32, u32)> = vec![(0, 30), (1, 15), (2, 15)];
        assert!(null.side(&mixed).1 >= 1.0);
    }

    #[test]
    fn clean_control_flags_almost_nothing() {
        let (texts, labels, truth) = synthetic(3000, 0.0, 11);
        assert!(truth.iter().all(|&t| !t));
        let (summary, scores) = run(&texts, &labels);
        let flagged = scores.reason.iter().filter(|r| r.is_some()).count();
        assert!(flagged * 200 <= texts.len(), "{flagged} flagged: {summary}");
        assert!(scores.score.iter().all(|&s| s < 1.0 || flagged > 0));
    }

    #[test]
    fn deterministic_across_threads_and_batches() {
        let (texts, labels, _) = synthetic(2500, 0.03, 3);
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("pool")
        };
        let (s1, sc1) = pool(1).install(|| run(&texts, &labels));
        let (s2, sc2) = pool(2).install(|| run(&texts, &labels));
        assert_eq!(s1, s2);
        assert_eq!(sc1, sc2);
        // batching: same answer for any split
        let names = vec!["0".to_string(), "1".to_string()];
        let view = DatasetView {
            n_rows: texts.len(),
            texts: Some(&texts),
            labels: Some(&labels),
            class_names: &names,
            embeddings: None,
        };
        let fitted = TriggerTokens
            .configure(&toml::Table::new())
            .expect("defaults")
            .fit(&view)
            .expect("fit");
        for size in [1usize, 7, 333] {
            let mut all = Scores::default();
            let mut start = 0;
            while start < view.n_rows {
                let end = (start + size).min(view.n_rows);
                all.extend(fitted.score(&view.batch(start, end)).expect("score"));
                start = end;
            }
            assert_eq!(all, sc1);
        }
    }

    #[test]
    fn rejects_unknown_parameters_and_needs_text() {
        let mut t = toml::Table::new();
        t.insert("nope".into(), toml::Value::Integer(1));
        assert!(TriggerTokens.configure(&t).is_err());
        let names = vec!["0".to_string()];
        let labels = vec![0u32];
        let view = DatasetView {
            n_rows: 1,
            texts: None,
            labels: Some(&labels),
            class_names: &names,
            embeddings: None,
        };
        let cfg = TriggerTokens
            .configure(&toml::Table::new())
            .expect("defaults");
        assert!(cfg.fit(&view).is_err());
    }
}
