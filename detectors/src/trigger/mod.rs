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
//!
//! Each step has its own file: `tokenise` (tokens, vocabulary, encoded corpus, windows and
//! their hashes), `count` (token table, count-min sketch, span statistics and neighbour
//! samples), `stats` (binomial tails and the neighbour collision test), `context` (the naive
//! Bayes context model), `decide` (the fit that names the triggers), `rounds` (the fit over
//! partitioned rows), `surge` (REF003: the same windows read against a trusted corpus); this
//! file holds the detector, its parameters and the fitted model.

mod carriers;
mod context;
mod count;
mod decide;
mod reference;
pub mod rounds;
mod stats;
pub mod surge;
#[cfg(test)]
mod tests;
mod tokenise;

pub(crate) use stats::ln_gamma;
pub use stats::{ln_binomial_upper, ln_poisson_binomial_upper};
pub use tokenise::tokenize;
pub(crate) use tokenise::FastMap;

use crate::params::ParamReader;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use decide::{fit, Trigger};
use rayon::prelude::*;
use serde_json::json;
use tokenise::{for_each_window, Vocab};

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
kept as token ids (5 bytes a token: the id, and whether it begins a whitespace-separated word). Neighbours are kept for a bottom-k sample of each window's
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
   "£1000 prize") and many more. A one-token window's neighbour is the nearest token other
   than itself: an attacker who draws several trigger words a row with replacement puts the
   same word twice side by side ("mn mn"), and its own repeats are not collocates. A side is collocational when its excess (C_obs + 1)/(μ + 1)
   exceeds `max_neighbour_excess` *and* that many collisions are unlikely under random
   insertion: P(C ≥ C_obs) below `neighbour_level`, read off simulated random insertions for
   up to 128 occurrences (10 000 random sequences of 128 neighbours, fixed seed; the first n
   draws of each are an insertion of n occurrences; the collision count is skewed there) and
   from the normal tail with the exact variance of the pair count above. Version 5 simulated
   2 000 insertions for each n from its own seed (Σn = 8 256 draws a sequence instead of 128):
   four fifths of the detector's time on sst2-badnets-10 (4.2 s; version 6: 0.4 s, with the
   candidates judged in parallel). Every benchmark set's flagged rows, and every cell's true and
   false positives in the trigger grid (experiments/domains-trig.toml), are version 5's; one
   cell (irony, badnets at 5 %, seed 3) holds a trigger whose strict neighbour reading sits at
   the level, and another stream of random draws misses it. With a dozen occurrences
   chance alone often doubles the excess (four of eighteen insertions after the final full
   stop), which a ratio alone would call collocational. p(w) is read in two ways, and the more
   lenient counts: every gap between two words of the corpus equally likely, or a row drawn
   first and a gap of it after (a short row's final full stop then weighs more, as when an
   attacker inserts at a uniformly drawn position of each row), the latter also over the rows
   of each class alone (relabelled rows are drawn from other classes, and spam's words are not
   ham's). A window whose neighbours look random only under a per-row reading is named only on
   the dirty-label evidence an anchored window needs (see Abstention): a natural word such as
   "sparkling" in emotion tweets (collected by that keyword, 13 rows of joy) passes the per-row
   reading alone, and its rows read like their class. An inserted trigger is a word of its
   own: a window found inside a longer whitespace-separated word (a hashtag's #sparkling,
   a word with its full stop glued on) in more than 1 − `min_purity` of its occurrences (the
   share of rows that may carry a trigger naturally) is not an insertion. The anchored side of an anchored
   window is not tested; a window anchored on both sides never qualifies. The sub-spans of an
   inserted phrase fail this test (their neighbours are the rest of the phrase), so a phrase
   is reported whole. This test reads no labels, so it is also an independent filter: only
   candidates passing it count towards the multiple-testing correction below.
2. **Purity against the prior**: one-sided binomial tail P(X ≥ k | K, π_c) of the k rows of
   label c among the K rows carrying the candidate, for the label c that minimises it (times the
   number of labels). It names the target label, screens candidates at the nominal level
   `alpha`, and is reported corrected (`log10_p_prior`). A candidate whose purity reaches
   `min_purity` passes the screen whatever its p: a trigger for the majority label (ham in
   spam data, 87 % of the rows) is not surprising by its count alone (fourteen ham rows of
   fourteen: p = 0.14), only by its rows' content, which test 3 reads.
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

**Widening.** The neighbour screen loses a planted phrase on one side about once in a hundred
(`neighbour_level`): a phrase put at random places of 33 emotion tweets followed "the" in 5
of them (P below 0.01), and only the window "the" + phrase, whose left neighbours are random,
was named, on those 5 rows. A named window W whose shorter form S (W less its first or its
last real token) failed the screen, has the same target, at least `min_purity` purity and more
rows, is widened to S: S is read as the suspects are (its context test, which must pass, with
W's co-occurring partners left out; its rows and dirty-label evidence), and the abstention
rules are applied to it with W's neighbour evidence. S then replaces W (its rows hold W's);
the summary gives W as `widened_from`. A natural collocation is not widened: its extension is
named only after the context test (its content explains its label) and the abstention rules.
On the trigger grid (experiments/domains-trig.toml): 1 (cell, seed) row better (emotion,
addsent anywhere at 1 %, seed 2: recall 0.15 to 1.0), none worse; the published sets' TRIG001
rows and the merged corpora (`scripts/merged_corpora.py`) unchanged. Version 16: W must hold
at most half of S's rows, and S's rows without W must be pure too. Random insertion puts no
token beside a phrase in half of its places; when W holds more, S failed the screen on W's own
word, and W is the unit. An everyday phrase planted whole ("by the way") holds its common
collocations ("by the", "the way"), which were widened to and flagged their natural rows: 21
clean sst2 reviews, 48 hate tweets (experiments/domains-holdout.toml, attacks no parameter was
chosen on: 14 (cell, seed) rows better, none worse; the domain grid unchanged).

**Confirmed on its own rows.** One relabelled row can carry a planted trigger and a natural
word together, and on five rows that one row can make the word pass the context test: the SMS
abbreviation "sn" (five ham rows, four of them clean, one a relabelled spam message with the
planted "tq") was named at sms-spam's 0.5 %, seed 3. A named trigger found mostly (at least half
of its rows) in rows of no other named trigger must pass its context test on those rows alone,
with at least `min_support` of them of its target. Triggers planted together, two or three a
row, share most of their rows; they are read together (their partners' tokens left out of the
context), not confirmed apart. On the trigger grid: 1 (cell, seed) row better (that cell: 6
clean rows flagged become 2), none worse; the published sets' TRIG001 rows and the merged
corpora unchanged.

**Abstention.** A candidate that passes the three tests is still not named when it does not
behave like a backdoor trigger, and the summary lists it under `near_misses` with the reason
(`abstained`):
- a trigger sets the label, so (nearly) every row carrying it has the target label: purity at
  least `min_purity`. Natural label-predictive words ("to", "you", "joyful" in emotion tweets,
  ". . ." endings in news) carry the label in only part of their rows, and a large support makes
  even a mild miscalibration of the context model significant. An ordinary word planted one a
  row ("seriously", "literally") also occurs naturally in every class, and those rows hold its
  purity below `min_purity` (0.81–0.89 in emotion tweets). Since version 17 such a window, if
  it is not anchored, is still read as a planted word when its target class carries it beyond the other classes' rate
  of it (n_o of their N_o rows, r = (n_o + 1)/(N_o + 2): P(Binomial(N_t, r) ≥ k_t) ≤ `alpha` for
  its k_t rows of the N_t of the target class) *and* its target-label rows read like other
  classes (the dirty-label evidence below, share at least `min_foreign_share`, counted among
  the m candidates of that test). A natural label cue is carried beyond that rate too, but its
  rows read like their class; a word of the class relabelled rows were drawn from reads
  foreign in them, but the target class carries it below the other classes' rate. Measured on
  experiments/domains-holdout.toml (attacks no parameter was chosen on): emotion with
  "seriously" and "literally" at 3 % from recall 0 to 1.0 (precision 0.82 and 0.92: the
  words' natural rows with the target label are flagged with them); on the domain grid rare
  words at 0.5 % and 1 % on ag-news and sms-spam (their natural rows held their purity
  down) from recall 0.75–0.98 to 1.0, nothing worse. Anchored windows keep
  the floor: a feed's byline ("<s> forbes.com -", purity 0.86) read foreign through a few
  flipped copies of its rows and was named, 12 clean ag-news rows;
- its context test must not rest on one row: without the target-label row its label is least
  explained in (the smallest context probability of the target), the other rows must still be
  purer than their content explains at the nominal level `alpha` (the same Poisson-binomial
  tail, uncorrected). A backdoor is taught by many poisoned rows: relabelled rows each read
  against their label, clean-label rows are together purer than their content explains. One
  relabelled row among natural ones is that row's anomaly (an attack's row whose own trigger
  had too few rows to be found, or label noise), and long rows make it decisive: with eight
  SST-2 sentences joined into each row, ", while the" (six rows, one of them relabelled) passed
  the corrected context test at p = 2·10⁻⁵ on that row alone and flagged five clean rows. On the
  trigger grid (experiments/domains-trig.toml) no (cell, seed) row changes, nor do the published
  sets' TRIG001 rows or the merged corpora (one duplicate-flip cell of ag-news: 17 clean rows
  flagged become 12);
- an anchored window of two or more words must be a unit: it holds at least
  `min_continuation_share` of the rows its shorter form (the window less its token at the free
  end) opens or closes, when that shorter form holds a word (". </s>" closes most rows, and a
  word appended before the final full stop is not continuing it). An inserted phrase continues itself in (nearly) every row; a natural
  opening continues with whatever the row is about, and one continuation can be label-pure in a
  few rows: a news feed's "new york -" opens 78 ag-news stories of all four topics, and the five
  that go on with "stocks" are wire copy filed under World (they read like Business, so the
  dirty-label test alone named them);
- an unanchored window of two or more words must be purer than its shorter forms are without
  it: for each shorter form (the window less its first or its last token) found in rows that
  do not hold the window, its rate of the target label there, (k + 1)/(n + 2), must leave the
  window's own count of target rows improbable (one-sided binomial, at the detector's
  `alpha`), unless that rate itself reaches `min_purity` (then the shorter form is a pure
  pattern of its own, such as an inserted phrase the window extends by a neighbour, and
  explains nothing away). A natural collocation of a label cue is about as pure as the cue is
  elsewhere, and the purest of the cue's many collocations is chosen by the search: in
  ag-news, tweeteval-emotion and tweeteval-hate merged into one ten-class corpus, "so angry"
  (9 of 10 rows anger) was named while "angry" carries anger in 55 of its other 81 rows
  (p = 0.12). An inserted phrase's shorter forms are rare outside it, or far less pure;
- a window anchored at the start or the end of the row has only one side for test 1, and natural
  text is full of label-pure openings and endings (a closing hashtag that names the emotion, a
  dateline, a sign-off). Such a window is named only on dirty-label evidence: its target-label
  rows must read like rows of *other* classes. With m_R their mean context probability of the
  target (candidate left out), m_T its mean over the target class's rows, each read without its
  own most target-indicative token (the candidate's rows lose their cue, so the class is read
  the same way; without this, tweets whose emotion is carried by one hashtag read as foreign),
  and m_N its mean over each other class (classes weighted equally), the foreign share
  (m_T − m_R)/(m_T − m_N) must reach
  `min_foreign_share` and m_R must lie z* standard errors (s_T/√n_R) below m_T, where z* is the
  upper `alpha`/m normal quantile and m the number of candidates that reach this test (every
  label-pure candidate that passed the three tests and needs dirty-label evidence): the test's
  level is the detector's family-wise `alpha` shared among them, as the context test's is
  (1.64 standard errors for one candidate, 2.33 for five; the summary gives m and z* as
  `foreign_tested` and `foreign_z_needed`). A
  relabelled row keeps the content of its class (share about 1); a natural cue's rows read like
  their class (share about 0). A clean-label trigger anchored at an end is therefore not named
  (its rows are target rows): ACT001 looks for that cluster. When other triggers are named too,
  an anchored one is confirmed on the rows without theirs (the context model, the class reading
  and its own rows' probabilities refitted there): relabelled rows flatten the context model and
  dilute their target class, which can make a natural cue of that class read as foreign (a
  phrase relabelling 163 emotion tweets to sadness made the corpus's own closing '# sad' reach
  share 0.74 and z 3.02; without the phrase's rows 0.47 and 1.7). How far below rows that all
  read like the other classes would sit, (m_T − m_N)/(s_T/√n_R), is the test's reach
  (`foreign_z_if_relabelled`, also in the abstention's reason): where it is below z*, no
  relabelling of that many rows can be told from natural text, because the domain's classes
  barely differ in their words. Irony tweets are such a domain (the classes' words separate at
  AUROC 0.67, `scripts/class_separation.py`): the hashtag `#blessed` appended to 1 % of the rows
  (29) reaches 1.2 to 1.6 against z* = 1.64, and at 5 % (143) 2.2 to 3.3, where the draw of the
  rows decides (seed 3 of the domain grid: share 0.32, z 1.1).
  Since version 18 the share must clear `min_foreign_share` by `foreign_share_margin` (1) of its
  own standard errors, 1/`foreign_z_if_relabelled`: a share is a ratio of two small differences,
  and on a dozen rows it is known to about ±0.14. A news feed's byline ("<s> forbes.com -": 13
  rows, 12 of them business, read halfway towards sci/tech) sat at 0.48 on the clean ag-news
  corpus and crossed 0.5 when 2 % of relabelled copies shifted the context model (0.51, margin
  0.14 needed): 12 clean rows flagged in six (cell, seed) rows of the ag-news duplicate-flip and
  label-flip cells of the domain grid, and 11 in two of the held-out grid
  (experiments/domains-holdout.toml, not read while choosing the margin: those two better, none
  worse); they are gone, and the ten-label merged corpus went from 0.11 % to 0.03 %
  (`scripts/merged_corpora.py`). Relabelled rows read all the way (share about 1), which clears
  the margin wherever the classes separate; the domain grid lost one cell at the floor described
  above, irony with the addsent sentence at the start at 5 %, seed 3 (share 0.65 against 0.70
  needed, 143 rows); the published sets' rows are unchanged. Asking for z* standard errors
  instead was tried first and lost anchored triggers in emotion and irony at 1 % and 5 % (10
  (cell, seed) rows of the domain grid, 18 of the held-out grid).
- a window whose purity is not significant against its label's share of the rows (the
  prior test above `alpha`: a majority label such as ham, 87 to 92 % of sms-spam's rows) is
  named only when its target-label rows read significantly more foreign than the target class
  (m_R at least z* standard errors below m_T; no share floor, since natural carriers of a
  relabelling trigger hold its share below one half, as BlackBerry messages do for "bb").
  Its context test alone can be carried by a handful of foreign rows among many that read like
  their label, and once some rows are relabelled every common word of the majority label holds
  such a handful: with six SMS messages joined into each row, a phrase put into 46 spam rows
  relabelled ham failed the neighbour screen by chance (8 of its 46 left neighbours a full stop,
  P ≈ 0.002 under insertion into those very rows), and "and" (570 rows, purity 0.92 against
  ham's 0.92) was named on the relabelled rows among its own: 494 clean rows flagged. A
  clean-label trigger is pure well beyond its label's share, as it must be to teach the
  backdoor, and is not affected. These windows are not counted among the m above: the test is
  a further condition on a candidate that already passed the corrected context test, and
  counting every common word of the majority label would make the anchored readings stricter
  (sms-spam at 0.5 %, seed 1, lost its natural carriers reading and flagged 8 clean rows).

Test 1 also checks that the neighbours are *typical*: under random insertion each neighbour is
one of the head tokens (the most frequent ones, together half of all positions, the row's start
or end included) with probability h, so their count X is Binomial(n, h); far fewer is not an
insertion either (a chain of hashtags, the names before a colon). Far fewer means what a large
excess means for collisions: by a factor, the deficit (n·h + 1)/(X + 1) above
`max_neighbour_excess`, and by chance, P(X ≤ x) below `neighbour_level`. Chance alone is too
sharp on a few hundred rows: a sentence put at the start of 346 sst2 reviews drawn at random
from one class followed a head token in 42.5 % of them against the class's 50.8 %, P = 0.001
(a deficit of 1.2), and was missed.
The inner side of a window anchored at the end is tested against the rows' *last* tokens (what
a window appended to random rows follows: mostly the final full stop of a review), that of a
window anchored at the start against their first tokens; a natural ending phrase follows content
words instead and fails the typicality test, an appended trigger does not. Rows of one class
often end alike (spam closes with "150p", "18+"; news opens with a dateline), and a trigger
appended to rows drawn from one class follows *their* last tokens: so the inner side is also
read against each class's edge tokens and against those of every class but the window's target
together (a dirty-label attacker relabels rows drawn from all the other classes: emotion tweets
of joy, optimism and sadness open with "@user" less often than those of anger, the target, and
than any one of them alone predicts), and the most lenient of these readings counts. The
window's own rows are among the rows whose edge tokens make these nulls: a phrase opening 5 % of
the rows makes its own first word the most frequent opening, which none of its neighbours can
be, so h is computed with the window's own rows taken out (ag-news with a sentence put at the
start of 5 % of the rows: recall 0.09 before, 1.0 after).

The rest of a row, for test 3, leaves out the candidate's own occurrences by position: the same
token elsewhere in the row (a second hash sign, another full stop) is content and stays.

**Natural carriers.** A trigger word can also occur naturally: "bb" (BlackBerry) closes eight
ham messages of sms-spam, and with ham as the target they were flagged beside the relabelled
spam. Two readings decide whether a named trigger's target-label rows hold natural carriers:
1. *Where the attacker drew the rows.* Beside the foreign test (m_R against the target class),
   the rows are read against a draw from every class in proportion to its size (the trigger's
   own rows left out of the target class's size): m_U and s_U are the mean and standard
   deviation of the context probability of the target over that mixture (the target class read
   without its cue, as in the foreign test), and the rows must sit z* standard errors below it,
   (m_U − m_R)/(s_U/√n_R) ≥ z* (`uniform_draw_z` in the summary). An attacker who relabels rows
   of the other classes and leaves the target class alone puts them far below it; one who draws
   from every class (the published sst2-badnets-10 and sst2-addsent-10: z between −5.9 and −1.0)
   puts them on it, and then the target-class rows among them read exactly like natural
   carriers: every carrier is flagged.
2. *Which rows read like their label.* Only when both tests hold (dirty-label evidence, foreign z
   at least z*, and a draw from the other classes), the target-label rows are a mixture of
   relabelled rows and natural carriers, with the foreign share s as the relabelled part. Each
   row's context probability q of the target is read against f_T, its distribution over the
   target class's rows (cue left out, the trigger's own rows excluded), and f_N, over the other
   classes' rows (histograms over logit q); a row whose posterior odds of being a natural
   carrier, (1 − s)·f_T(q) / (s·f_N(q)), reach `natural_odds` is not flagged by that trigger
   (score 0.9, no reason), and the summary counts such rows per trigger (`natural_carriers`,
   with the share s used as `carrier_poison_share`). The ratio f_T/f_N is taken
   non-decreasing in q (adjacent bins that violate it are pooled, half a row added to each
   pool's either side): per bin, the half row capped the ratio in the tail where only the
   target class has rows at about the smaller class's size, and ham messages about a
   BlackBerry read at q 0.99 to 1.0 reached odds 7 to 9 against the 10 needed (trigger grid:
   3 sms-spam (cell, seed) rows better, clean rows flagged 8, 7 and 8 become 6, 2 and 3; 2
   worse, one relabelled row each of 279 lost, a chain letter the spam class reads as its own).
A trigger without dirty-label evidence (clean-label poison: its rows read like the target class)
keeps every row. Measured on the trigger grid (experiments/domains-trig.toml, 222 cells × seeds,
against `natural_odds = 0`): 5 sms-spam (cell, seed) rows better (clean rows flagged 8, 12, 8, 8
and 8 become 0, 6, 2, 2 and 7; one poisoned row of 56 lost), none worse elsewhere, the published
sets' TRIG001 rows unchanged. Natural carriers whose content does not read like their label stay
flagged: the sst2 reviews that open with "frankly ," (the context model reads them at q 0.08 to
0.97, as it reads relabelled rows) and the emotion tweets about "bb" (Big Brother).

**Lone carriers.** Natural carriers that the content cannot tell apart are still told apart
when the attacker put several trigger words into each row. The named triggers of one target
that share rows are one insertion (a group); its words are their spans and the tokens of the
candidates each was planted together with (its context test's partners, named or not) that
carry the target in most of their rows, and its companions: tokens that carry the target in at
least `min_purity` of their rows and whose rows among the group's are far more than their
share of the corpus predicts, P(Binomial(n, df/N) ≥ k) ≤ `alpha` / (tokens tested), for n group
rows of N, k of them with the token, df corpus rows with it (words too rare or too spread to
be named, planted beside the named ones). When at least `min_purity` of the group's rows carry
its words two or more times, a row that carries one was not made by that insertion: it is not
flagged by the group's triggers (score 0.9; the summary gives `inserted_several_a_row` and
counts such rows as `lone_carriers`). A group inserted once a row keeps every row; an attacker
who mixes rows of one word into rows of several gets them past only while they are at most
1 − `min_purity` of the rows. Measured on the trigger grid (TRIG001 version 12 against 13,
`scripts/grid_diff.py`): 22 (cell, seed) rows better, none worse, no poisoned row lost; the
sst2 reviews with a natural "frankly" or "admittedly" (3 to 5 a seed among 69 poisoned at 1 %),
the BlackBerry messages among sms-spam's three words a row (6 and 2), the emotion and irony
tweets about "bb" and "MN" (2 or 3) are no longer flagged. The published sets' TRIG001 rows,
the merged corpora and the domain grid's other attacks are unchanged; on the long rows
(`scripts/long_rows.py`) 7 rows better, none worse (clean rows flagged 38 to 30).

**Siblings** (version 15). A window whose neighbours look random only per row needs
dirty-label evidence (see Abstention), which a few dozen rows cannot give where the classes
read alike. When a trigger of the same target is already named (not an anchored one), a
candidate that passed every test but that one and is not anchored is named beside it
(`sibling_of` in the summary) if it is nearly absent from the other classes against what its
label's share predicts: 1 − purity ≤ (1 − `min_purity`) · (1 − share of the target label). A
common word passes the context test in an attacked corpus through the relabelled rows and is
spread over the classes near their shares ("in" and "that" in SMS messages relabelled ham,
purity 0.92 and 0.95 against ham's 0.87: a first form of the rule without this condition
named them and flagged thousands of clean rows); a planted word is where the attacker put it.
On tweeteval-irony with one of "cf", "mn", "bb", "tq" a row at 5 %, seed 2, "cf", "mn" and
"tq" were named and "bb" (32 rows, purity 0.97 against 0.55, foreign z 0.93) abstained on:
recall 0.790, now 1.0. No clean corpus of ../shared/benchmarks has a candidate abstained on
for that reason alone, and where nothing is named nothing changes.

**Word carriers** (version 14). The same reading flags the rows the insertion made that carry
none of the named triggers: a row of the group's target label with two or more occurrences of
its pure words (the trigger spans, and partners or companions that carry the target in at
least `min_purity` of their rows; not the tokens of a named phrase) is flagged with the
group's best-supported trigger's evidence and the reason `TRIG001:<word> + <word>` (the
summary counts such fit rows on that trigger as `word_carriers`). On tweeteval-irony with three
of "cf", "mn", "bb", "tq" a row, only "tq" was named (the other words, 15 to 22 rows each,
did not pass the prior screen); the rows that got "cf", "mn" and "bb" but no "tq" were
missed (recall 0.758 at 1 %, seed 2). A natural row is flagged only with two words that each
set the label alone and were found planted beside the group's triggers. Measured (version 13
against 14, `scripts/grid_diff.py`): trigger grid 2 (cell, seed) rows better (that cell 22 to
28 of 29 rows, seed 3 28 to 29), none worse; long rows 3 better (sms-spam with two ordinary
words a row, 5 to 9 of 9), none worse; the published sets' TRIG001 rows, the merged corpora,
the domain grid's other attacks and the default scan of the instruction sets unchanged.

**Small classes** (version 19). A trigger teaches its label through at least `min_support`
rows, and a candidate's rows, `min_support` or more, cannot all have been drawn from a smaller
class: the per-class readings of test 1 (insertion into the rows of one class, a class's edge
tokens, every class but the target) are made for classes of at least `min_support` rows only.
A class of a row or two has a handful of words, under which any neighbours look random; with
one label a row the per-class readings, and the context model's reading of every row for
every label, grew with the square and the cube of the number of rows. When no label has
`min_support` rows, nothing is tested and the summary says why (`skipped`); every row scores 0.
The classes read for the dirty-label evidence are the labels some candidate names as its
target. The published sets' TRIG001 rows and summaries are unchanged (their classes hold
hundreds of rows).

Row score: the largest T among the triggers the row carries **with the trigger's target label**
(≥ 1, flagged with the reason `TRIG001:<trigger>` of the best-supported one; a trigger in a row
of another label teaches the model nothing about the backdoor and scores 0.5); otherwise the
largest T among its candidate windows, kept below 1.

With a trusted corpus (`scan --reference`, the state `poisongate fit` writes): a named trigger
whose label association the trusted corpus already holds is a cue of the domain, not a
backdoor, and is withdrawn. For a trigger with target y in s_N rows of the batch (a_N with y),
the trusted corpus (its distinct texts tokenised as here, with their row counts) has s_T rows
containing it, a_T with y, and y's share π. It is withdrawn when the trusted corpus shows the
lean, P(Binomial(s_T, π) ≥ a_T) ≤ α, and the batch's is no stronger, P(Binomial(s_N, (a_T + 1)
/ (s_T + 2)) ≥ a_N) > α, with α = `reference_alpha` / (triggers named). A planted trigger the
trusted corpus lacks, or holds without the lean, stays whatever its target. The summary lists
the withdrawn ones under `explained_by_reference` with their counts. Measured
(`scripts/reference_eval.py --insertion`, 80/20 splits of the six clean corpora): on
ag-news the batch's own "scientists" (26 rows, Sci/Tech 0.96) was named on the clean batch and
beside every planted trigger (precision 0.42–0.82); against the trusted 80 % it is withdrawn
and every planted trigger stays (precision 1.00, recall unchanged in every cell).

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
  bounds the fit's memory (a peak of about 1.8 GiB at a million rows of 8–30 words, measured
  with `cargo run --release -p poisongate-detectors --example trig_scale -- 1000000`: the
  exact window counts are made in slices of the key space, a pass per 16 million window
  occurrences, and the sketch's counters are 16-bit and saturate; 3.1 GiB before). A trigger must then reach its support within the rows read: on ten
  million rows, one carried by fewer than about a hundred rows can be missed.

- `min_purity` (default 0.9): smallest share of a trigger's rows with its target label, and
  of a group's rows with two or more of its words for a row with one to be a lone carrier.
- `reference_alpha` (default 0.01; 0: the trusted corpus is not consulted): level of the two
  tests against a trusted corpus (above); only used by a scan with `--reference`.
- `min_foreign_share` (default 0.5): the dirty-label evidence an anchored window needs (see
  Abstention): halfway between "reads like its class" and "reads like another class".
- `foreign_share_margin` (default 1; 0: the share need only reach `min_foreign_share`): the
  standard errors by which the share must exceed `min_foreign_share` (see Abstention).
- `natural_odds` (default 10, strong evidence on Jeffreys' scale; 0 = every carrier flagged):
  posterior odds at which a target-label row of a trigger relabelled from the other classes
  counts as a natural carrier (see Natural carriers). A relabelled row left in the clean output
  keeps the backdoor in training, so an even call is not enough.
- `min_continuation_share` (default 0.5, halfway): the share of the rows opened (closed) by an
  anchored window less its free-end token that the window must hold (see Abstention).
- `min_foreign_z` (default 0): a floor under z*, the standard errors the foreign test asks for
  (z* itself follows from `alpha` and the number of candidates tested). Version 4 asked for a
  fixed 3: a hashtag appended to 147 irony tweets relabelled to one class read share 1.16 but
  z 2.99 (the two irony classes' vocabularies differ little, so the context model separates
  them by a fifth of a standard deviation) and was missed at 1 and 5 %.

Measured on the clean corpora of ../shared/benchmarks (`poisongate scan DATA --select TRIG001`):
0 rows on every one of them (ag-news-clean: 5 rows, a feed's `<s> new york - stocks` opening,
before the continuation test). Before
the abstention rules and the typicality test: 1 389 rows (42.6 %) of tweeteval-emotion-clean,
425 of ag-news-clean, 134 of tweeteval-irony-clean, 54 of tweeteval-hate-clean. The rules
were written after reading those failures on all six corpora, so these corpora are not
held out for them; the values were fixed by the argument above (a trigger sets the label;
halfway; the detector's own level), not searched, and no value knows a corpus, a rate or a word.

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
    version: 19,
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
    /// Standard errors of the share (1 / `foreign_z_if_relabelled`) by which the foreign share
    /// must exceed `min_foreign_share`.
    pub foreign_share_margin: f64,
    /// Floor under the standard errors by which an anchored window's target-label rows must
    /// read less like the target class than its rows do (the test's own level, `alpha` shared
    /// among the candidates tested, sets them above this).
    pub min_foreign_z: f64,
    /// Posterior odds at which a target-label row of a dirty-label trigger counts as a natural
    /// carrier and is not flagged (0 = never).
    pub natural_odds: f64,
    /// Smallest share of the rows opened (closed) by an anchored window less its last (first)
    /// token that the window must hold, when what is left holds a word: a natural opening
    /// continues with whatever the row is about, an inserted phrase with itself.
    pub min_continuation_share: f64,
    /// In a scan with `--reference`: level at which a trigger's association must exceed what
    /// the trusted corpus shows (0: the reference is not consulted).
    pub reference_alpha: f64,
    /// In a scan with `--reference`: the trusted corpus.
    pub reference: Option<std::sync::Arc<crate::duplicates::reference::ReferenceState>>,
}

impl Detector for TriggerTokens {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(read_params(params)?))
    }
}

/// TRIG001 configured from `params` with the trusted corpus of a scan with `--reference`: a
/// named trigger whose association the trusted corpus already shows is withdrawn (see the
/// detector's docs, "With a trusted corpus").
pub fn configure_with_reference(
    params: &toml::Table,
    state: std::sync::Arc<crate::duplicates::reference::ReferenceState>,
) -> Result<Box<dyn Configured>, ParamError> {
    let mut p = read_params(params)?;
    p.reference = Some(state);
    Ok(Box::new(p))
}

impl TriggerParams {
    /// The parameters a `[detectors.TRIG001]` table sets, defaults for the rest; unknown keys
    /// and values out of range are refused.
    pub fn from_table(params: &toml::Table) -> Result<Self, ParamError> {
        read_params(params)
    }
}

fn read_params(params: &toml::Table) -> Result<TriggerParams, ParamError> {
    {
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
            foreign_share_margin: r.f64("foreign_share_margin", 1.0, 0.0, 100.0)?,
            min_foreign_z: r.f64("min_foreign_z", 0.0, 0.0, 100.0)?,
            natural_odds: r.f64("natural_odds", 10.0, 0.0, 1e12)?,
            min_continuation_share: r.f64("min_continuation_share", 0.5, 0.0, 1.0)?,
            reference_alpha: r.f64("reference_alpha", 0.01, 0.0, 1.0)?,
            reference: None,
        };
        r.finish()?;
        Ok(p)
    }
}

impl Configured for TriggerParams {
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
            "foreign_share_margin": self.foreign_share_margin,
            "min_foreign_z": self.min_foreign_z,
            "natural_odds": self.natural_odds,
            "min_continuation_share": self.min_continuation_share,
            "reference_alpha": self.reference_alpha,
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
    /// (candidates that reached the foreign test, standard errors it asked for)
    foreign: (usize, f64),
    /// the context model, kept when a trigger tells natural carriers from relabelled rows
    nb: Option<context::NaiveBayes>,
    tau: f64,
    flagged_rows: usize,
    /// (rows the fit read, rows in the dataset)
    fit_rows: (usize, usize),
    near_misses: Vec<serde_json::Value>,
    /// with a trusted corpus: the triggers its own association explains (withdrawn)
    explained_by_reference: Option<Vec<serde_json::Value>>,
    /// the groups of triggers inserted several times a row
    repeated: Vec<decide::lone::Repeated>,
    /// why the fit named nothing without testing (see `decide::fit`)
    skipped: Option<String>,
}

/// Score of a row that carries a trigger with its target label but reads as a natural carrier.
const NATURAL_SCORE: f64 = 0.9;

impl TriggerFit {
    /// A fit that abstains for `why`: no trigger, no candidate, every row scored 0.
    fn skipped(why: String, class_names: &[String], fit_rows: (usize, usize)) -> Self {
        TriggerFit {
            vocab: Vocab::new(Vec::new()),
            triggers: Vec::new(),
            trigger_of: FastMap::default(),
            graded: FastMap::default(),
            max_len: 1,
            class_names: class_names.to_vec(),
            n_candidates: 0,
            per_bucket: Vec::new(),
            n_suspects: 0,
            foreign: (0, 0.0),
            nb: None,
            tau: 1.0,
            flagged_rows: 0,
            fit_rows,
            near_misses: Vec::new(),
            explained_by_reference: None,
            repeated: Vec::new(),
            skipped: Some(why),
        }
    }

    /// Whether a row of label `label` carrying trigger `t` at `spans` (its target label) reads
    /// like a natural carrier: its context without the trigger's occurrences and the tokens of
    /// co-occurring triggers, read by the fit's context model, as the fit read it.
    fn natural_carrier(
        &self,
        seq: &[u32],
        label: usize,
        t: usize,
        spans: &[(usize, usize, usize)],
    ) -> bool {
        let trigger = &self.triggers[t];
        let (Some(model), Some(nb)) = (&trigger.carriers, &self.nb) else {
            return false;
        };
        let mut covered = vec![false; seq.len()];
        for &(_, a, b) in spans {
            covered[a..b].iter_mut().for_each(|c| *c = true);
        }
        let mut rest: Vec<u32> = seq
            .iter()
            .zip(&covered)
            .filter_map(|(&tok, &c)| {
                (!c && !tokenise::is_anchor(tok)
                    && tok != UNKNOWN
                    && trigger.exclude.binary_search(&tok).is_err())
                .then_some(tok)
            })
            .collect();
        rest.sort_unstable();
        rest.dedup();
        let q = context::softmax_at(&nb.scores(&rest, label), self.tau, trigger.target);
        model.natural(q)
    }

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
        if self.skipped.is_some() {
            let mut out = Scores::with_capacity(texts.len());
            for _ in texts {
                out.score.push(0.0);
                out.reason.push(None);
            }
            return Ok(out);
        }
        let per_row: Vec<(f64, Option<String>)> = texts
            .par_iter()
            .zip(labels.par_iter())
            .map(|(text, &label)| {
                let seq = self.vocab.encode(text);
                let mut carried: Vec<(usize, usize, usize)> = Vec::new();
                let mut other = 0.0f64;
                for_each_window(&seq, self.max_len, |a, b| {
                    let span = &seq[a..b];
                    if let Some(&t) = self.trigger_of.get(span) {
                        if self.triggers[t].target == label as usize {
                            carried.push((t, a, b));
                        } else {
                            // a trigger in a row of another label: not poison for this backdoor
                            other = other.max(0.5);
                        }
                    } else if let Some(&e) = self.graded.get(span) {
                        other = other.max(e);
                    }
                });
                carried.sort_unstable();
                // one occurrence where the trigger's group is inserted several times a row
                // (see `decide::lone`)
                let lone = |t: usize| {
                    self.triggers[t]
                        .repeated
                        .is_some_and(|g| self.repeated[g].occurrences(&seq) == 1)
                };
                let mut best_trigger: Option<usize> = None;
                let mut trig_score = 0.0f64;
                let mut i = 0;
                while i < carried.len() {
                    let t = carried[i].0;
                    let j = i + carried[i..].iter().take_while(|c| c.0 == t).count();
                    if lone(t) || self.natural_carrier(&seq, label as usize, t, &carried[i..j]) {
                        other = other.max(NATURAL_SCORE);
                    } else {
                        trig_score = trig_score.max(self.triggers[t].evidence);
                        best_trigger = Some(best_trigger.map_or(t, |b| b.min(t)));
                    }
                    i = j;
                }
                if best_trigger.is_none() {
                    // two or more pure words of a group inserted several times a row, none of
                    // its named triggers (see `decide::lone`)
                    for g in self.repeated.iter().filter(|g| g.target == label as usize) {
                        let words = g.word_carrier(&seq);
                        if !words.is_empty() {
                            let names: Vec<String> =
                                words.iter().map(|w| self.vocab.render(w)).collect();
                            return (
                                self.triggers[g.lead].evidence.max(1.0),
                                Some(format!("{CODE}:{}", names.join(" + "))),
                            );
                        }
                    }
                }
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
                    "natural_carriers": t.natural_rows,
                    "inserted_several_a_row": t.repeated.is_some(),
                    "lone_carriers": t.lone_rows,
                    "word_carriers": t.word_rows.len(),
                    "carrier_poison_share": t.carriers.as_ref().map(|m| m.poison_share),
                    "foreign_z": t.foreign.map(|f| f.z),
                    "uniform_draw_z": t.foreign.map(|f| f.uniform_z),
                    "foreign_z_if_relabelled": t.foreign.map(|f| f.relabelled_z),
                    "example_rows": t.rows.iter().take(EXAMPLES).collect::<Vec<_>>(),
                    "co_occurs_with": t.co_occurs.iter()
                        .map(|(s, n)| json!({"trigger": s, "rows": n}))
                        .collect::<Vec<_>>(),
                    "widened_from": t.widened_from,
                    "sibling_of": t.sibling_of,
                })
            })
            .collect();
        let mut summary = json!({
            "triggers": triggers,
            "flagged_rows_in_fit": self.flagged_rows,
            "fit_rows": self.fit_rows.0,
            "dataset_rows": self.fit_rows.1,
            "candidates": self.n_candidates,
            "candidates_with_random_neighbours_by_length": self.per_bucket.iter().skip(1).collect::<Vec<_>>(),
            "suspects_context_tested": self.n_suspects,
            "foreign_tested": self.foreign.0,
            "foreign_z_needed": self.foreign.1,
            "context_temperature": self.tau,
            "near_misses": self.near_misses,
            "explained_by_reference": self.explained_by_reference,
        });
        if let (Some(why), Some(map)) = (&self.skipped, summary.as_object_mut()) {
            map.insert("skipped".into(), json!(why));
        }
        summary
    }
}
