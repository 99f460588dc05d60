//! DUP001 / DUP002 / DUP003: duplicates as a poisoning signal.
//!
//! One shared core (normalisation, exact hashing, MinHash LSH, union-find clusters) and three
//! registered detectors that read different verdicts off it: label conflicts among exact
//! duplicates (DUP001), label conflicts among near duplicates (DUP002), and content copied far
//! beyond the dataset's own duplicate baseline (DUP003). Plain redundancy is reported in the
//! summary, never flagged.
//!
//! Each step has its own file: `normalise` (text normalisation), `exact` (the core and its exact
//! groups), `minhash` (MinHash LSH near clusters), `edits` (one-word-edit pairs), `embedding`
//! (DUP002's embedding relation), `contrast` (DUP002's explained contrast pairs), `verdicts`
//! (conflicts and flags read off the core) and `amplification` (DUP003's baseline); this file
//! holds the detectors and their parameters.

mod amplification;
mod contrast;
mod direction;
mod edits;
mod embedding;
mod exact;
mod link;
mod minhash;
pub mod near_rounds;
mod normalise;
mod own_reading;
pub mod reference;
pub mod rounds;
pub use link::{Candidates, KeyRange};
#[cfg(test)]
mod tests;
pub(crate) mod verdicts;

pub use minhash::optimal_bands;
pub use normalise::{normalize, Normalization};

use crate::params::ParamReader;
use crate::{Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError};
use exact::Core;
use serde_json::json;
use verdicts::verdicts;

/// Rows per parallel work item (fixed, so results never depend on the thread count).
const CHUNK: usize = 1024;
/// Longest list (clusters, members) written into a summary.
const LIST_CAP: usize = 50;
/// The Mersenne prime 2⁶¹ − 1, modulus of the MinHash permutations.
const MERSENNE: u64 = (1 << 61) - 1;
/// Most representatives compared when choosing the nearest majority-label row of a cluster.
const NEAREST_CAP: usize = 2000;

static META_DUP001: Meta = Meta {
    code: "DUP001",
    name: "exact-duplicate-label-conflict",
    summary: "Rows whose normalised text also occurs with another label (label flips)",
    docs: concat!(
        r#"# DUP001 exact-duplicate-label-conflict

## What it detects
Label flips by copy: a row whose text (after normalisation) also occurs in the dataset with a
different label. Within such a cluster the minority-label rows are flagged. When the top labels
tie (1:1, 2:2) the text cannot say which row is the copy; the population can: an attacker's
copies carry one target label, so when one label is out of place (by naive Bayes on the other
rows) in far more ties than chance, every tie with that label is resolved against it (the flip
direction test below). Ties the test does not resolve are flagged whole, and the reason says
that it cannot tell which label is right, when the corpus holds more conflicts than natural
annotation noise makes; within that noise they are listed, not flagged (see below).

## Method
Normalise each text (NFKC, case fold, collapse whitespace: see Parameters), hash it with
xxh3-128 (stable across machines; a collision needs about 2⁶⁴ distinct texts), and group rows
by hash (sorted, so the grouping is deterministic). For each group with more than one label:
the label with the most rows is the majority, the others are flagged with
`DUP001:dup_of=<first majority row> jaccard=1.00 threshold=exact labels=<this>:<dup_of>
counts=<label>x<rows>,... minority`; in a tie every row is flagged with `... tie: cannot tell
which label is right`, `dup_of` the first row with another label, unless the flip direction
resolves it.

Flip direction (`direction_alpha`; shared with DUP002): each 1:1 tie asks which of its two
labels the text supports less (the label out of place there), by two naive-Bayes readers
trained on the rows outside the tie, without the class prior: multinomial (word counts, add-one
smoothing) and Bernoulli over the words present (a word's rate in a class smoothed towards its
rate in both classes with 2 pseudo-rows, so that rare words do not favour the smaller class).
A third reader, for near copies (DUP002), reads the words each side's texts have and the
other's lack: the side whose own words are rarer in the rest of the corpus (mean ln(1 + rows
containing the word)) is out of place. A copy whose words were replaced by words drawn from the
vocabulary gets rare words where the original has the words text uses; exact copies give this
reader no reading. On tweeteval-irony with 1 to 3 words replaced (2 %, seeds 1 and 2), where
naive Bayes establishes no direction, it resolves 5 of the 6 cells (precision 0.50 → 1.00).
By chance a tie joins labels a and b with probability ∝ s_a·s_b (class shares s) and either
is out of place with probability ½, so label l is out of place in a tie with probability
π_l = s_l(1 − s_l)/(1 − Σ s²) (½ with two classes). A fourth reader reads the ties as one
population: an attacker's copies are drawn from other classes, so the texts that carry the
target in the ties read less like the target than its own rows do, however little each text
says on its own. Each tied text's reading of the label it carries (multinomial naive Bayes,
that label against the mean of the others, per word, without the tie's rows) is ranked
against the same reading of a sample of that class's rows (each without its own text's rows;
the 4 096 distinct texts per class with the smallest hash, a sample any split of the rows
merges into the same one), by a one-sided Mann–Whitney test stratified by length (1–4, 5–9,
10–19, 20–39 words, ...: copies are chosen by length). It names a label only when it finds
exactly one, the tie-by-tie naive-Bayes readers find that label out of place at least as
often as chance, and the conflicts are beyond natural label noise (below): natural conflicts,
texts annotators disagreed on, may read like one of their labels without being copies.
Otherwise the summary says why it named none (`population_abstained`). Where one tie says little
(tweeteval-irony, whose words barely predict the label), it adds up the evidence of all: on
verbatim copies (2 %, three seeds) naive Bayes reads the copy's label out of place in 55–60 %
of the ties (p 0.07–0.5) and the population reader gives p = 3·10⁻⁵, 9·10⁻⁶ and 1.1·10⁻³.
A label whose count among all N ties has a one-sided binomial p ≤ `direction_alpha` / (4 ·
labels in ties) under any tie-by-tie reader, or whose population p is at most that, is a
target of the flips; a tie with exactly one target label among its top labels is resolved
against it: its rows are flagged with `... tie resolved by the flips' direction: <reader>
<label> out of place in <o> of <N> tied conflicts (p = ...)` (the population reader: `the
texts of <n> tied conflicts read less like <label> than <label>'s own rows do (<o> below
their median; rank test p = ...)`), the other rows are not. Natural ties have no common
direction.

Ties read on their own: an attacker may flip copies of rows of every class, each into
another class, so that no label is out of place in more ties than chance. Each such tie still holds a text under the label it was written for and
under one it was not, and its multinomial reading (above) says which, as far as the classes'
words differ. How far is measured on the corpus itself: up to 1 024 sampled texts of each class
of a tie's labels (not in any tie) are read as if tied with a copy under the other label, each
without its own rows; the cut is the weakest strength |log odds| at which the readings at least
that strong put the text's own label out of place at a rate (wrong + 1)/(n + 2) ≤
`direction_alpha`. A tie whose reading is at least that strong is resolved against the label it
puts out of place (`... tie resolved by its own reading: multinomial naive Bayes puts <label>
out of place at log odds <x>, where readings at least <cut> of the corpus's own rows were wrong
in <w> of <n>`) when no target resolves it and the conflicts are beyond natural noise (it would
otherwise be flagged whole); weaker ties stay flagged whole. Where no strength reaches the rate
(SST-2 sentences, most tweets) no tie is read on its own. The reading only ever takes a row of a
tie out of the quarantine. A tie a target resolves keeps that resolution even when its own
reading reaches the cut the other way: overruling the target there (for copies of the other
direction) made 22 (cell, seed) rows of the domain grid worse and 8 better, because the
readings of targeted copies are wrong at that strength more often than the corpus's own rows. The summary's
`flip_direction.own_reading` gives the cut, the calibration counts and the ties resolved.
Measured with copies flipped in every direction (`experiments/domains.toml`,
`duplicate-flip[both-ways,...]`, 2 %, three seeds): see docs/evaluation.md.

Natural label noise (`noise_share`, `noise_alpha`; shared with DUP002): two annotations of one
text disagree now and then (annotators of tweets disagree on a fifth to a third of them), so a
clean corpus holds a few conflicting duplicates of its own: 2 of 17 duplicated texts in
ag-news-clean, 2 of 8 in tweeteval-hate-clean, 3 of 208 near clusters in
tweeteval-emotion-clean, the same tweet under anger and sadness. A flipping attacker adds many,
and every copy is a conflict. The number C of conflicting clusters among the D duplicated
clusters is tested against Binomial(D, `noise_share`), one-sided; when P(X ≥ C) >
`noise_alpha` the conflicts are within natural noise and an unresolved tie (at least half of
whose rows are clean) is listed in the summary (`"flagged": false`) but not flagged; majority
conflicts and ties the direction resolves are flagged as before. Beyond noise, unresolved ties
are flagged whole. The summary's `natural_noise` gives D, C, the p value and the ties left
unflagged. Score: 1 +
(majority − this label's rows) / cluster size for minority rows, 1.0 in a tie, 0 otherwise.
The summary lists every cluster count, the size histogram, the conflicting clusters with
their rows (first 50) and `flip_direction` (per label: ties, out-of-place counts and p of
each reader; the targets).

## Parameters
"#,
        r#"- `nfkc` (default true): Unicode NFKC (compatibility composition), word by word when
  whitespace is collapsed, so a mark NFKC turns into a space and a combining mark (`˜`, `´`)
  does not cut a word in two.
- `case_fold` (default true): Unicode lower-casing (Rust's `to_lowercase`).
- `collapse_whitespace` (default true): runs of whitespace become one space, ends trimmed.
- `direction_alpha` (default 0.01; 0 turns the test off): level of the flip direction test.
- `noise_share` (default 0.25; 0 turns the test off, every unresolved tie is flagged): the
  share of duplicated clusters whose labels natural annotation noise may set apart. Chosen as
  the upper end of the disagreement between two annotators of the same short text, not
  fitted: the six clean corpora range from 0 to 0.25 (tweeteval-hate's 2 of 8), a 2 %
  duplicate-flip attack puts 0.8–1.0 of the duplicated clusters in conflict.
- `noise_alpha` (default 0.01): level of that test.

Measured (`poisongate eval experiments/domains.toml`, duplicate-flip at 2 % with verbatim
copies, three seeds, target label drawn per seed; `scripts/domains_summary.py`): every added copy
found on all six corpora; on sst2, sms-spam, ag-news, tweeteval-hate and -emotion precision
0.98–1.00 and at most 0.04 % of the other rows flagged; on tweeteval-irony the tie-by-tie readers
did not establish the direction and ties were flagged whole (precision 0.50, 2.03 % of the other
rows) until the population reader (version 6), which resolves all three seeds (precision 1.00,
recall 1.00). Its per-word reading was chosen on the other five corpora, every row of a class as the
reference (the target's p smaller than per text in 12 of 15 cells, the other labels' lowest
p 0.049 against 0.031 per text), irony left out (`scripts/flip_population.py`).

## Known false positives
Genuinely ambiguous short texts ("ok", "too bad .") that annotators labelled differently: a
real label-noise finding, but not necessarily an attack. Datasets whose label depends on
context outside the text (the same message spam from one sender, ham from another).

## References
"#,
        r#"Katherine Lee et al. Deduplicating Training Data Makes Language Models Better. ACL 2022.
Curtis G. Northcutt, Anish Athalye, Jonas Mueller. Pervasive Label Errors in Test Sets
Destabilize Machine Learning Benchmarks. NeurIPS 2021 Datasets and Benchmarks (label errors).
"#
    ),
    version: 7,
};

static META_DUP002: Meta = Meta {
    code: "DUP002",
    name: "near-duplicate-label-conflict",
    summary: "Rows nearly identical (5-gram MinHash or one word edit) to rows with another label",
    docs: concat!(
        r#"# DUP002 near-duplicate-label-conflict

## What it detects
Label flips hidden behind small edits: a near copy (a word changed, added or removed, or a few
words replaced) of a row, carrying another label. Clusters of near duplicates that contain at
least two distinct normalised texts and more than one label have their minority-label rows
flagged; a tie of the top labels is resolved by the flip direction test of DUP001 (over the
words every text of the cluster keeps), else, when the conflicts exceed natural label noise
(DUP001's test), every row is flagged ("tie: cannot tell which label is right": the original is
flagged with its copy), and within it the tie is listed, not flagged.

## Method
Normalisation and exact grouping as in DUP001; one representative per exact group. Words are
the whitespace-separated tokens of the normalised text. Two relations make a pair near:

1. MinHash over word 5-gram shingles (`shingle_words`; a text with fewer words is one
   shingle), hashed with xxh3-64 (low 32 bits x): `num_perm` 2-independent hashes h_i(x) =
   ((a_i·x + b_i) mod 2⁶⁴) div 2³² (Dietzfelbinger's multiply-add-shift; a_i odd, a_i, b_i from
   SplitMix64(`seed`)), the signature keeping each minimum. LSH with b bands of r rows minimising `fp_weight`·∫₀ᵗ P(s) ds + (1 −
   `fp_weight`)·∫ₜ¹ (1 − P(s)) ds for P(s) = 1 − (1 − s^r)^b (composite Simpson, 400
   intervals; 128 permutations at t = 0.8 give b = 9, r = 13). Candidates sharing a band are
   kept when the estimated Jaccard is ≥ t (`threshold`).
2. Short texts: a one-word edit in the middle of a text of n words leaves 5-gram Jaccard
   (n − 9)/(n + 1), below 0.8 for every n < 49, so relation 1 cannot see one-word edits of
   sentence-length texts. Two texts one word edit apart (substitution, insertion or deletion
   of one whitespace token) are near when the longer has at least `edit_min_words` words
   (default 5 = 1/(1 − 0.8): the edit similarity 1 − 1/n then reaches the same 0.8). Found
   exactly, without misses: every text yields n + 1 keys (itself, and itself with word i
   deleted, polynomial hashes mod 2⁶¹ − 1 in O(n) from prefix and suffix hashes); texts one
   edit apart share a key; candidates are verified word by word. Texts of fewer words match
   only exactly (a one-word change of "great film ." is a different text).
   Word substitutions: two texts of the same length n that differ in 2 to ⌊n / `edit_min_words`⌋
   word positions (similarity 1 − d/n ≥ 1 − 1/`edit_min_words`, the one-word edit's bar) are
   near: a flipped copy with a few words replaced keeps its length and word order, and each
   replaced word breaks five shingles. Found exactly: the positions are cut into d_max + 1
   aligned blocks and each block (with n and its index) is a key; two texts within d_max
   substitutions leave one block untouched (pigeonhole) and share its key; candidates are
   verified word by word. Measure `word_substitution`.

3. Embeddings, when the scan has them (`--embeddings`, loaded for a detector that needs them,
   e.g. SPEC001): rows among each other's `embedding_k` nearest neighbours by cosine (the
   kNN shared with LBL001: exact blocked products up to `knn_exact_max_rows` rows, an IVF
   index beyond) with cosine ≥
   `embedding_cosine` are near, unless too many rows are (`embedding_max_share`). Cost n²·d
   multiply-adds exactly, about n·17·√n·d with the index (16 probes).

Clusters are connected components (union-find in sorted pair order). Contrast pairs: in
sentiment-like data many one-word pairs differ in exactly the word that carries the label ("it
's funny ." / "it 's drab .", template fillers): consistent examples, not flips; so do the
frames of a template filled two ways ("the comedy is at times dull from start to finish ." /
"the cast is at times luminous from start to finish .", two words substituted). A pair of
label-pure groups with labels a ≠ b one word edit apart or with words substituted in place
(the `word_edit` and `word_substitution` relations), each text read as the set of its words,
is read position by position where the texts differ: at each, ln O(y) − ln O(x) for the word
x of a that b does not hold anywhere and the word y of b that a does not (0 for a word the
other text also holds, or none), with ln O(w) = ln((df_b(w) + 1)/(n_b + 2)) − ln((df_a(w) +
1)/(n_a + 2)) from document frequencies per class with the pair's own rows left out, and 0
for a word no other row holds (smoothed, an unseen word would lean to the smaller class: a
random "olol" in a message read as spam at odds 6.4). When the strongest position changes
the odds of b against a by at least `contrast_odds` — and, for words substituted in several
places, it swaps a word of one label for one of the other (each at least half of ln
`contrast_odds` for its own label), as a template's slots do while a random replacement puts
in what it draws — and the edit is also enough, i.e. the same naive Bayes over each whole text
(prior ln((n_b + 1)/(n_a + 1)), the words both texts hold, and the text's own edited words)
names that text's own label, the pair is removed before clustering (counted in the
summary as `explained_contrast_pairs`). So is any near pair of two label-pure groups with other
labels where one text is the other with words added (whatever the relation that found it): the
added words are new content and the likeliest reason for the new label ("good" / "not good", a
closing hashtag that names the emotion: tweeteval-emotion-clean holds 64 such pairs, 128 rows,
3.9 % of the corpus, flagged before this rule), while a flipped copy replaces words. The second condition keeps a random one-word change of a
long message a flip: replacing "MP3" by "keep" in a 25-word spam message moves the word odds
far, but the rest of the message still reads as spam. Once the flips' direction names a target
(see DUP001), an explained one-word edit into the target whose word taken out said little about
the old label (its log odds for that label below half of ln `contrast_odds`) is read again as a
copy and its target-label rows are flagged (`... explained contrast read in the flips'
direction: ...`; counted as `contrasts_in_flip_direction`): a random replacement can put in a
word of the target ("you" → "Mobile" in a ham message copied as spam), but it takes out whatever
word was there, while a natural contrast swaps a word of one label for one of the other
("worst" / "best"). Either text of the pair may be the edited one, whichever the data holds
first, so the word taken out is read both ways (x for an edit of a into b, y for one of b into
a), and a replaced word the edited text still holds elsewhere (one "i" of three became
"Collect") was not taken out of it, and it still counts in the text's naive Bayes. sms-spam with one word replaced, seed 2: 111 → 113 of 114 copies found
(DUP002 version 9; "you" → "Mobile" preceded its original in the data, and the message still
said "i" twice after "i" → "Collect"); "my" → "area" stays explained ("my" reads as ham at odds
3.6, above √10). At the full ln `contrast_odds`, sst2's natural "one of the worst / best movies of
the year ." ("worst" at odds 9.7) was read again and flagged in nine duplicate-flip cells; at
half, in none. Reason: `DUP002:dup_of=<nearest majority-label row>
similarity=<s> measure=<minhash_jaccard|word_edit|embedding_cosine> threshold=<t> labels=<this>:<dup_of>
counts=<label>x<rows>,... minority|tie: ...` (the nearest among the majority rows in other
exact groups; through a chain it can be below t). Score: max(1, similarity / t) when flagged,
else 0. Deterministic for a seed whatever the thread count (fixed chunks, order-preserving
parallel maps, sorted pairs).

## Parameters
- `nfkc`, `case_fold`, `collapse_whitespace` (default true): normalisation, as in DUP001.
- `threshold` (default 0.8): Jaccard at which two rows are near duplicates.
- `shingle_words` (default 5): words per shingle; shorter texts are one shingle.
- `word_edit` (default true): relation 2 (one-word edits and word substitutions) on or off.
- `edit_min_words` (default 5): fewest words of the longer text for a one-word edit to count;
  a text of n words may have ⌊n / `edit_min_words`⌋ words substituted.
- `direction_alpha` (default 0.01; 0: off): level of the flip direction test (see DUP001).
- `noise_share` (default 0.25; 0: off), `noise_alpha` (default 0.01): the natural label noise
  test of DUP001, over the near clusters with several texts.
- `contrast_odds` (default 10, "strong evidence" on Jeffreys' scale): odds change by which an
  edited word explains a label change. 1e300 turns the contrast test off.
- `embedding_cosine` (default 0.97): cosine at which embeddings make two rows near (0: off).
- `embedding_k` (default 10): neighbours searched per row for it.
- `embedding_max_share` (default 0.1): the embedding relation is skipped (the summary says
  why) when more than this share of rows has a neighbour from another exact group at
  `embedding_cosine`: near duplicates are exceptions, and a space where they are the rule does
  not separate copies from class members. Measured share: minilm sst2-clean 0 %,
  sms-spam-clean 3.6 % (templated messages, 111 pairs, 0 rows flagged); mlp (a classifier's
  collapsed activations) 99.6 % of sst2-clean, which without the guard flags 47 % of it.
"#,
        crate::knn_params_doc!(),
        r#"- `num_perm` (default 128): MinHash permutations (standard error ≈ √(J(1−J)/num_perm)).
- `seed` (default 1): seed of permutations and hashes.
- `fp_weight` (default 0.5): weight of false positives against false negatives in the b, r
  choice.
- `max_bucket` (default 100): a larger LSH or edit-key bucket links its members to its first
  member only.

Measured on the domain grid (`poisongate eval experiments/domains.toml`, duplicate-flip at 2 %
with 1 to 3 replaced words, seeds 1–3, worst seed; `scripts/domains_summary.py`): recall
0.982–1.00 of the copies (the lowest sms-spam with two and three words replaced, see the
contrast pairs) and precision 0.96–1.00 on all six corpora, other rows flagged at most 0.09 % (the three
near-duplicate label conflicts tweeteval-emotion-clean holds of its own); tweeteval-irony at
precision 1.00 since the population reader of the flips' direction (DUP001 version 6; 0.50
before, its originals flagged with their copies).
With copies flipped both ways (`cargo run --release -p poisongate-detectors --example dup_eval`:
100 exact and 100 one-word-changed copies of sst2-clean rows, each given the other label, and
50 copies of one row): no row of sst2-clean or sms-spam-clean flagged, nor of the published
sets; on sst2-clean with the copies 246 of 250 injected rows found by one of the three
detectors, no direction established (copies of both labels) and the ties flagged whole, the
originals with their copies.

## Known false positives
Natural one-word pairs with opposite labels whose edited words carry little label evidence
elsewhere in the data ("it 's that painful ." / "it 's that good ."); a genuine finding of
label-relevant ambiguity rather than an attack.

## Known limits
A flipped copy made only by adding words to the original is not flagged (see the contrast
pairs). One-word edits of texts with fewer than `edit_min_words` words (3 of the 100 injected near
copies above); random word swaps that leave a text naive Bayes reads as the new label (about 1
of 100 on sst2-clean, more on sms-spam-clean where single words carry the label);
two or more words inserted or deleted (not substituted) in texts shorter than about 50 words;
scripts written without spaces form one word per run (exact and 5-gram matches only). Ties in
a domain where naive Bayes cannot read the labels (irony) stay unresolved. Copies flipped both
ways (label noise by copy rather than one target label): when one label is named the target, a
tie of the other direction flags its original and misses its copy; when none is named, a tie is
resolved by its own reading only where that reading is strong enough (see DUP001), and is
flagged whole otherwise.

## References
Andrei Z. Broder. On the resemblance and containment of documents. Compression and Complexity
of Sequences, 1997. Jure Leskovec, Anand Rajaraman, Jeffrey D. Ullman. Mining of Massive
Datasets, ch. 3 (banding, the S-curve). Katherine Lee et al. Deduplicating Training Data Makes
Language Models Better. ACL 2022. Martin Dietzfelbinger. Universal hashing and k-wise
independent random variables via integer arithmetic without primes. STACS 1996. Harold
Jeffreys. Theory of Probability, 3rd ed., 1961 (evidence scale). Udi Manber, Sun Wu. Fast text
searching allowing errors. CACM 35(10), 1992 (pigeonhole partitioning for k mismatches).
"#
    ),
    version: 10,
};

static META_DUP003: Meta = Meta {
    code: "DUP003",
    name: "duplicate-amplification",
    summary: "Content copied far more often than the dataset's own duplicates",
    docs: r#"# DUP003 duplicate-amplification

## What it detects
A sample copied many times to amplify its weight in training (a poisoned example repeated, a
spam template stuffed into the data). The cut is derived from the dataset's own duplicate
baseline, so natural redundancy (the same short message sent by many people) is not flagged.

## Method
Near-duplicate clusters as in DUP002 with 5-gram MinHash only (`word_edit` off by default, see
Parameters; no contrast test), which include exact duplicates. The sizes x ≥ 2 of
the duplicated clusters are modelled as a discrete power law P(X = x) ∝ x^(−α), x ≥ 2 (natural
duplicate counts are heavy-tailed), fitted by the Clauset–Shalizi–Newman approximation
α̂ = 1 + m / Σ ln(x_j / 1.5), with tail P(X ≥ k) ≈ ((k − ½) / 1.5)^(−(α̂ − 1)). Outliers are
found sequentially from the largest size down (like a generalised ESD test): for each distinct
size k, α̂ is fitted on the clusters smaller than k only (so an amplified cluster cannot inflate
the tail it is tested against) plus one pseudo-cluster of size 2 (a prior that keeps the fit
defined when the dataset has no other duplicates), and the expected number of clusters of size
≥ k among all M duplicated clusters (+1), E_k = (M + 1)·P(X ≥ k), is computed. Clusters of size
k are flagged (every row) when E_k < `alpha` and k ≥ `min_copies`; the search stops at the
first size that is not an outlier. Score: ln E_k / ln `alpha` (≥ 1 exactly when flagged; for
duplicated rows that are not flagged it is capped at 0.999; 0 for unique rows). Reason:
`DUP003:dup_of=<first row of the cluster> similarity=<s> measure=<m> threshold=<t>
cluster_size=<k> expected=<E_k> alpha=<alpha>`. Plain redundancy (counts, size histogram) is
in the summary, never flagged.

## Parameters
- `nfkc`, `case_fold`, `collapse_whitespace`, `threshold`, `shingle_words`, `word_edit`,
  `edit_min_words`, `num_perm`, `seed`, `fp_weight`, `max_bucket`: as in DUP002
  (`contrast_odds` is accepted and unused: amplification ignores labels), except `word_edit`
  defaults to false here: one-word-edit chains join templated rows (`row number 1 says
  hello`, `row number 2 says hello`, ...) into one large cluster, a template rather than
  copies, which would both be flagged and hide real amplification in the baseline.
- `alpha` (default 0.01): largest expected number of baseline clusters at least this large for
  a cluster to be called amplified (a family-wise level over the clusters tested).
- `min_copies` (default 5): clusters smaller than this are never flagged.

## Known false positives
A dataset whose natural duplicates come in two regimes (many pairs and a few huge boilerplate
clusters, e.g. auto-generated notifications): the boilerplate is flagged. Such clusters are
worth a look anyway; the summary lists them with their rows and E_k. Every row of an amplified
cluster is flagged, including the one copy that may be legitimate.

## References
Nicholas Carlini et al. Poisoning Web-Scale Training Datasets is Practical. IEEE S&P 2024.
Aaron Clauset, Cosma R. Shalizi, M. E. J. Newman. Power-law distributions in empirical data.
SIAM Review 51, 2009. Bernard Rosner. Percentage points for a generalized ESD many-outlier
procedure. Technometrics 25, 1983. Andrei Z. Broder. On the resemblance and containment of
documents, 1997.
"#,
    version: 3,
};

// ---------------------------------------------------------------------------------------------
// Parameters

/// Near-duplicate (MinHash LSH) parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearParams {
    /// Jaccard threshold.
    pub threshold: f64,
    /// Words per shingle.
    pub shingle_words: usize,
    /// Also link texts one word edit apart (the longer having at least `edit_min_words` words).
    pub word_edit: bool,
    /// Fewest words (of the longer text) for a one-word edit to count as a near duplicate.
    pub edit_min_words: usize,
    /// DUP002: a one-word edit whose word-label evidence changes the odds of the new label by at
    /// least this factor explains the label change (a contrast pair, not a flip).
    pub contrast_odds: f64,
    /// DUP002: rows whose embeddings have at least this cosine are near (when the scan has
    /// embeddings; 0 turns it off).
    pub embedding_cosine: f64,
    /// DUP002: neighbours per row searched for the embedding relation.
    pub embedding_k: usize,
    /// DUP002: the embedding relation is skipped when more than this share of rows has a
    /// neighbour (another exact group) at `embedding_cosine`.
    pub embedding_max_share: f64,
    /// DUP002: how the embedding neighbours are searched (exact, or an IVF index on large data).
    pub knn: crate::KnnOptions,
    /// MinHash permutations.
    pub num_perm: usize,
    /// Seed of permutations and shingle hashes.
    pub seed: u64,
    /// Weight of the false-positive area in the band choice.
    pub fp_weight: f64,
    /// Buckets larger than this link to their first member only.
    pub max_bucket: usize,
    /// LSH bands (derived).
    pub bands: usize,
    /// LSH rows per band (derived).
    pub rows: usize,
}

/// Which verdict a configured duplicates detector reads off the shared core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// DUP001: exact-duplicate label conflicts.
    ExactConflict,
    /// DUP002: near-duplicate label conflicts.
    NearConflict,
    /// DUP003: amplification.
    Amplification,
}

/// Checked parameters of DUP001, DUP002 or DUP003 (see the detectors' docs).
#[derive(Debug, Clone, PartialEq)]
pub struct DupParams {
    /// Which detector.
    pub kind: Kind,
    /// Text normalisation.
    pub norm: Normalization,
    /// Near-duplicate parameters (DUP002, DUP003).
    pub near: Option<NearParams>,
    /// DUP003: level of the expected count of clusters this large.
    pub alpha: f64,
    /// DUP003: smallest cluster that may be flagged.
    pub min_copies: usize,
    /// DUP001, DUP002: level of the flip-direction test that resolves 1:1 ties (0: off).
    pub direction_alpha: f64,
    /// DUP001, DUP002: share of duplicated clusters whose labels may disagree by natural
    /// annotation noise; unresolved ties are flagged only beyond it (0: always flagged).
    pub noise_share: f64,
    /// DUP001, DUP002: level of the test against `noise_share`.
    pub noise_alpha: f64,
    /// DUP001, DUP002 in a scan with `--reference`: the trusted corpus, which confirms a row
    /// whose normalised text it gives the same label (such a row is never flagged).
    pub reference: Option<std::sync::Arc<reference::ReferenceState>>,
}

fn read_norm(r: &mut ParamReader<'_>) -> Result<Normalization, ParamError> {
    Ok(Normalization {
        nfkc: r.bool("nfkc", true)?,
        case_fold: r.bool("case_fold", true)?,
        collapse_whitespace: r.bool("collapse_whitespace", true)?,
    })
}

fn read_near(r: &mut ParamReader<'_>, word_edit_default: bool) -> Result<NearParams, ParamError> {
    let threshold = r.f64("threshold", 0.8, 0.05, 1.0)?;
    let shingle_words = r.usize("shingle_words", 5, 1, 64)?;
    let word_edit = r.bool("word_edit", word_edit_default)?;
    let edit_min_words = r.usize("edit_min_words", 5, 2, 1_000_000)?;
    let contrast_odds = r.f64("contrast_odds", 10.0, 1.0, 1e300)?;
    let embedding_cosine = r.f64("embedding_cosine", 0.97, 0.0, 1.0)?;
    let embedding_k = r.usize("embedding_k", 10, 1, 1000)?;
    let embedding_max_share = r.f64("embedding_max_share", 0.1, 0.0, 1.0)?;
    let num_perm = r.usize("num_perm", 128, 8, 1024)?;
    let seed = r.usize("seed", 1, 0, u32::MAX as usize)? as u64;
    let fp_weight = r.f64("fp_weight", 0.5, 0.0, 1.0)?;
    let max_bucket = r.usize("max_bucket", 100, 2, 1_000_000)?;
    let knn = crate::knn::read_options(r)?;
    let (bands, rows) = optimal_bands(threshold, num_perm, fp_weight);
    Ok(NearParams {
        threshold,
        shingle_words,
        word_edit,
        edit_min_words,
        contrast_odds,
        embedding_cosine,
        embedding_k,
        embedding_max_share,
        knn,
        num_perm,
        seed,
        fp_weight,
        max_bucket,
        bands,
        rows,
    })
}

fn configure(
    kind: Kind,
    code: &'static str,
    params: &toml::Table,
) -> Result<DupParams, ParamError> {
    let mut r = ParamReader::new(code, params);
    let norm = read_norm(&mut r)?;
    let near = match kind {
        Kind::ExactConflict => None,
        Kind::NearConflict => Some(read_near(&mut r, true)?),
        Kind::Amplification => Some(read_near(&mut r, false)?),
    };
    let (alpha, min_copies) = match kind {
        Kind::Amplification => (
            r.f64("alpha", 0.01, 1e-12, 1.0)?,
            r.usize("min_copies", 5, 2, usize::MAX)?,
        ),
        _ => (0.01, 5),
    };
    let (direction_alpha, noise_share, noise_alpha) = match kind {
        Kind::Amplification => (0.0, 0.0, 0.01),
        _ => (
            r.f64("direction_alpha", 0.01, 0.0, 1.0)?,
            r.f64("noise_share", 0.25, 0.0, 1.0)?,
            r.f64("noise_alpha", 0.01, 1e-12, 1.0)?,
        ),
    };
    r.finish()?;
    Ok(DupParams {
        kind,
        norm,
        near,
        alpha,
        min_copies,
        direction_alpha,
        noise_share,
        noise_alpha,
        reference: None,
    })
}

/// DUP001 or DUP002 (`code`) configured from `table`, with the trusted corpus of a scan with
/// `--reference`: a row whose normalised text the trusted corpus gives the same label is
/// confirmed, and not flagged (in a tie with a flipped copy of a trusted row, the natural copy
/// is right). `None` for any other code.
pub fn configure_with_reference(
    code: &str,
    table: &toml::Table,
    state: std::sync::Arc<reference::ReferenceState>,
) -> Result<Option<Box<dyn Configured>>, ParamError> {
    let (kind, code) = match code {
        "DUP001" => (Kind::ExactConflict, "DUP001"),
        "DUP002" => (Kind::NearConflict, "DUP002"),
        _ => return Ok(None),
    };
    let mut p = configure(kind, code, table)?;
    p.reference = Some(state);
    Ok(Some(Box::new(p)))
}

/// Parameters for removing plain redundancy (`scan --dedup`): DUP001's normalisation read from
/// `table` (exact duplicates only), or with `near` DUP002's normalisation and MinHash LSH
/// parameters, checked exactly as those detectors check them.
pub fn dedup_params(near: bool, table: &toml::Table) -> Result<DupParams, ParamError> {
    if near {
        configure(Kind::NearConflict, "DUP002", table)
    } else {
        configure(Kind::ExactConflict, "DUP001", table)
    }
}

/// Duplicate clusters of `texts`: row lists (ascending), ordered by their first row; every row
/// is in exactly one cluster (unique rows are clusters of one). Without near parameters the
/// clusters are the exact groups of normalised text; with them, DUP002's near-duplicate
/// clusters (which contain the exact groups). Deterministic whatever the thread count.
pub fn duplicate_clusters(texts: &[String], p: &DupParams) -> Vec<Vec<usize>> {
    let core = Core::build(texts, &p.norm, p.near.as_ref());
    match &core.clusters {
        Some(cs) => cs.iter().map(|c| core.cluster_rows(c)).collect(),
        None => core.groups.iter().map(<[usize]>::to_vec).collect(),
    }
}

/// Near-duplicate row pairs (i < j, sorted) of `texts` under `p` (see [`dedup_params`]): every
/// pair of rows in one exact group, and every pair of rows of two exact groups whose similarity
/// was verified (MinHash Jaccard estimate ≥ threshold, or one word edit when `word_edit`), with
/// that similarity (1 for exact). Pairs only, no transitive closure: this is what the
/// `minhash_pairs` example compares with other MinHash LSH implementations.
pub fn near_duplicate_pairs(texts: &[String], p: &DupParams) -> Vec<(usize, usize, f64)> {
    let core = Core::build(texts, &p.norm, p.near.as_ref());
    let mut out = Vec::new();
    for g in core.groups.iter() {
        for (i, &a) in g.iter().enumerate() {
            for &b in &g[i + 1..] {
                out.push((a, b, 1.0));
            }
        }
    }
    for (&(ga, gb), &(sim, _)) in &core.edges {
        for &a in &core.groups[ga] {
            for &b in &core.groups[gb] {
                out.push((a.min(b), a.max(b), sim));
            }
        }
    }
    out.sort_by_key(|x| (x.0, x.1));
    out
}

/// DUP001: label conflicts among exact duplicates. See its [`Meta::docs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ExactDuplicateConflict;

/// DUP002: label conflicts among near duplicates. See its [`Meta::docs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NearDuplicateConflict;

/// DUP003: duplication far beyond the dataset's own baseline. See its [`Meta::docs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DuplicateAmplification;

impl Detector for ExactDuplicateConflict {
    fn meta(&self) -> &'static Meta {
        &META_DUP001
    }
    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(configure(Kind::ExactConflict, "DUP001", params)?))
    }
}

impl Detector for NearDuplicateConflict {
    fn meta(&self) -> &'static Meta {
        &META_DUP002
    }
    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(configure(Kind::NearConflict, "DUP002", params)?))
    }
}

impl Detector for DuplicateAmplification {
    fn meta(&self) -> &'static Meta {
        &META_DUP003
    }
    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(configure(Kind::Amplification, "DUP003", params)?))
    }
}

impl DupParams {
    /// DUP001's parameters as a `[detectors.DUP001]` table sets them, defaults for the rest.
    pub fn dup001(table: &toml::Table) -> Result<DupParams, ParamError> {
        configure(Kind::ExactConflict, "DUP001", table)
    }

    /// DUP002's parameters as a `[detectors.DUP002]` table sets them, defaults for the rest.
    pub fn dup002(table: &toml::Table) -> Result<DupParams, ParamError> {
        configure(Kind::NearConflict, "DUP002", table)
    }

    /// DUP003's parameters as a `[detectors.DUP003]` table sets them, defaults for the rest.
    pub fn dup003(table: &toml::Table) -> Result<DupParams, ParamError> {
        configure(Kind::Amplification, "DUP003", table)
    }

    fn code(&self) -> &'static str {
        match self.kind {
            Kind::ExactConflict => "DUP001",
            Kind::NearConflict => "DUP002",
            Kind::Amplification => "DUP003",
        }
    }
}

impl Configured for DupParams {
    fn needs(&self) -> Needs {
        Needs {
            text: true,
            labels: self.kind != Kind::Amplification,
            embeddings: false,
            responses: false,
        }
    }

    fn params(&self) -> serde_json::Value {
        let mut v = json!({
            "normalization": {
                "nfkc": self.norm.nfkc,
                "case_fold": self.norm.case_fold,
                "collapse_whitespace": self.norm.collapse_whitespace,
            },
            "hash": "xxh3-128",
        });
        if let Some(n) = &self.near {
            v["threshold"] = json!(n.threshold);
            v["shingle_words"] = json!(n.shingle_words);
            v["word_edit"] = json!(n.word_edit);
            v["edit_min_words"] = json!(n.edit_min_words);
            v["contrast_odds"] = json!(n.contrast_odds);
            if self.kind == Kind::NearConflict {
                v["embedding_cosine"] = json!(n.embedding_cosine);
                v["embedding_k"] = json!(n.embedding_k);
                v["embedding_max_share"] = json!(n.embedding_max_share);
                for (key, val) in crate::knn::options_json(&n.knn)
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    v[key.as_str()] = val.clone();
                }
            }
            v["num_perm"] = json!(n.num_perm);
            v["seed"] = json!(n.seed);
            v["fp_weight"] = json!(n.fp_weight);
            v["max_bucket"] = json!(n.max_bucket);
            v["lsh_bands"] = json!(n.bands);
            v["lsh_rows"] = json!(n.rows);
        }
        if self.kind != Kind::Amplification {
            v["direction_alpha"] = json!(self.direction_alpha);
            v["noise_share"] = json!(self.noise_share);
            v["noise_alpha"] = json!(self.noise_alpha);
        }
        if self.kind == Kind::Amplification {
            v["alpha"] = json!(self.alpha);
            v["min_copies"] = json!(self.min_copies);
        }
        v
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let code = self.code();
        let texts = data.require_texts(code)?;
        let labels = match self.kind {
            Kind::Amplification => data.labels,
            _ => Some(data.require_labels(code)?),
        };
        if texts.len() != data.n_rows || labels.is_some_and(|l| l.len() != data.n_rows) {
            return Err(DetectError::Data {
                code,
                problem: "column lengths differ from the row count".to_string(),
            });
        }
        if let (Kind::ExactConflict, None, Some(l)) = (self.kind, &self.reference, labels) {
            return rounds::fit(self, texts, l, data.class_names);
        }
        // the embedding neighbours first: the search's index is freed before the core's
        // signatures and keys are built, so the two working sets do not add up
        let knn = match (self.kind, labels, &self.near, data.embeddings) {
            (Kind::NearConflict, Some(_), Some(n), Some(x)) if n.embedding_cosine > 0.0 => {
                if x.nrows() != data.n_rows {
                    return Err(DetectError::Data {
                        code,
                        problem: "embedding rows differ from the row count".to_string(),
                    });
                }
                Some(
                    crate::knn::knn_search(&x, n.embedding_k, &n.knn).map_err(|problem| {
                        DetectError::Data {
                            code,
                            problem: format!("embeddings: {problem}"),
                        }
                    })?,
                )
            }
            _ => None,
        };
        let mut core = Core::build(texts, &self.norm, self.near.as_ref());
        if let (Kind::NearConflict, Some(l), Some(n)) = (self.kind, labels, &self.near) {
            if let Some(knn) = knn {
                // near duplicates are exceptions: when a large share of rows has a neighbour this
                // close, the space does not tell copies from class members (e.g. a classifier's
                // collapsed activations) and the relation is not used
                let linked = core.rows_with_embedding_neighbour(&knn, n.embedding_cosine);
                let share = linked as f64 / data.n_rows.max(1) as f64;
                core.near_stats["embedding_knn"] = knn.method.clone();
                if share <= n.embedding_max_share {
                    let added = core.add_embedding_pairs(&knn, n.embedding_cosine);
                    core.near_stats["embedding_pairs"] = json!(added);
                } else {
                    core.near_stats["embedding_pairs"] = json!(0);
                    core.near_stats["embedding_skipped"] = json!(format!(
                        "{linked} rows ({:.1} %) have a neighbour at cosine >= {}: more than embedding_max_share = {}, so embeddings do not separate near duplicates here",
                        100.0 * share,
                        n.embedding_cosine,
                        n.embedding_max_share
                    ));
                }
            }
            let dropped = core.drop_explained_contrasts(l, n.contrast_odds, None);
            core.near_stats["explained_contrast_pairs"] = json!(dropped);
        }
        let mut fit = verdicts(self, &core, labels, data.class_names, None);
        if let (Some(state), Some(l)) = (&self.reference, labels) {
            fit.confirm_by_reference(state, texts, l, data.class_names, &self.norm);
        }
        Ok(Box::new(fit))
    }
}
