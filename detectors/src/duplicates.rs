//! DUP001 / DUP002 / DUP003: duplicates as a poisoning signal.
//!
//! One shared core (normalisation, exact hashing, MinHash LSH, union-find clusters) and three
//! registered detectors that read different verdicts off it: label conflicts among exact
//! duplicates (DUP001), label conflicts among near duplicates (DUP002), and content copied far
//! beyond the dataset's own duplicate baseline (DUP003). Plain redundancy is reported in the
//! summary, never flagged.

use crate::params::ParamReader;
use crate::rng::splitmix;
use crate::{
    Batch, ClassIndex, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs,
    ParamError, Scores,
};
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use unicode_normalization::UnicodeNormalization;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64, xxh3_64_with_seed};

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
different label. Within such a cluster the minority-label rows are flagged; when the top labels
tie (1:1, 2:2) every row of the cluster is flagged and the reason says that it cannot tell
which label is right.

## Method
Normalise each text (NFKC, case fold, collapse whitespace: see Parameters), hash it with
xxh3-128 (stable across machines; a collision needs about 2⁶⁴ distinct texts), and group rows
by hash (sorted, so the grouping is deterministic). For each group with more than one label:
the label with the most rows is the majority, the others are flagged with
`DUP001:dup_of=<first majority row> jaccard=1.00 threshold=exact labels=<this>:<dup_of>
counts=<label>x<rows>,... minority`; in a tie every row is flagged with `... tie: cannot tell
which label is right`, `dup_of` the first row with another label. Score: 1 + (majority − this
label's rows) / cluster size for minority rows, 1.0 in a tie, 0 otherwise. The summary lists
every cluster count, the size histogram and the conflicting clusters with their rows (first
50).

## Parameters
"#,
        r#"- `nfkc` (default true): Unicode NFKC (compatibility composition).
- `case_fold` (default true): Unicode lower-casing (Rust's `to_lowercase`).
- `collapse_whitespace` (default true): runs of whitespace become one space, ends trimmed.

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
    version: 1,
};

static META_DUP002: Meta = Meta {
    code: "DUP002",
    name: "near-duplicate-label-conflict",
    summary: "Rows nearly identical (5-gram MinHash or one word edit) to rows with another label",
    docs: concat!(
        r#"# DUP002 near-duplicate-label-conflict

## What it detects
Label flips hidden behind small edits: a near copy (a word changed, added or removed) of a row,
carrying another label. Clusters of near duplicates that contain at least two distinct
normalised texts and more than one label have their minority-label rows flagged; in a tie of
the top labels every row is flagged ("tie: cannot tell which label is right": in a 1:1
conflict the original is flagged with its copy).

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

3. Embeddings, when the scan has them (`--embeddings`, loaded for a detector that needs them,
   e.g. SPEC001): rows among each other's `embedding_k` nearest neighbours by cosine (the
   kNN shared with LBL001: exact blocked products up to `knn_exact_max_rows` rows, an IVF
   index beyond) with cosine ≥
   `embedding_cosine` are near, unless too many rows are (`embedding_max_share`). Cost n²·d
   multiply-adds exactly, about n·17·√n·d with the index (16 probes).

Clusters are connected components (union-find in sorted pair order). Contrast pairs: in
sentiment-like data many one-word pairs differ in exactly the word that carries the label ("it
's funny ." / "it 's drab .", template fillers): consistent examples, not flips. A one-word
pair of label-pure groups with labels a ≠ b whose edit changes the naive-Bayes odds of b
against a by at least `contrast_odds` — ln O(y) − ln O(x) with ln O(w) = ln((df_b(w) + 1)/(n_b
+ 2)) − ln((df_a(w) + 1)/(n_a + 2)), document frequencies of the edited words x → y per class
with the pair's own rows left out — and whose edit is also enough, i.e. the same naive Bayes
over each whole text (prior ln((n_b + 1)/(n_a + 1)), the words both texts share, and the text's
own edited word) names that text's own label, is removed before clustering (counted in the
summary as `explained_contrast_pairs`). So is any near pair of two label-pure groups with other
labels where one text is the other with words added (whatever the relation that found it): the
added words are new content and the likeliest reason for the new label ("good" / "not good", a
closing hashtag that names the emotion: tweeteval-emotion-clean holds 64 such pairs, 128 rows,
3.9 % of the corpus, flagged before this rule), while a flipped copy replaces words. The second condition keeps a random one-word change of a
long message a flip: replacing "MP3" by "keep" in a 25-word spam message moves the word odds
far, but the rest of the message still reads as spam. Reason: `DUP002:dup_of=<nearest majority-label row>
similarity=<s> measure=<minhash_jaccard|word_edit|embedding_cosine> threshold=<t> labels=<this>:<dup_of>
counts=<label>x<rows>,... minority|tie: ...` (the nearest among the majority rows in other
exact groups; through a chain it can be below t). Score: max(1, similarity / t) when flagged,
else 0. Deterministic for a seed whatever the thread count (fixed chunks, order-preserving
parallel maps, sorted pairs).

## Parameters
- `nfkc`, `case_fold`, `collapse_whitespace` (default true): normalisation, as in DUP001.
- `threshold` (default 0.8): Jaccard at which two rows are near duplicates.
- `shingle_words` (default 5): words per shingle; shorter texts are one shingle.
- `word_edit` (default true): relation 2 on or off.
- `edit_min_words` (default 5): fewest words of the longer text for a one-word edit to count.
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

Measured (`cargo run --release -p poisongate-detectors --example dup_eval`): flagged rows
sst2-clean 2 (0.03 %), sms-spam-clean 0, demo 0 (without the contrast test: 139, 4.6 %); on
sst2-clean with 100 exact and 100 one-word-changed flipped copies and 50 copies of one row:
246 of 250 injected rows found (seeds 1–5: 246–248), 0.03 % of the other rows flagged; the
same injection into sms-spam-clean (`DUP_BASE=sms-spam-clean`): every exact copy, 83–99 of the
100 near copies, none of the 50 copies of one row (its own 30-copy message makes 51 copies
ordinary for DUP003's baseline), no other row.

## Known false positives
Natural one-word pairs with opposite labels whose edited words carry little label evidence
elsewhere in the data ("it 's that painful ." / "it 's that good ."); a genuine finding of
label-relevant ambiguity rather than an attack.

## Known limits
A flipped copy made only by adding words to the original is not flagged (see the contrast
pairs). One-word edits of texts with fewer than `edit_min_words` words (3 of the 100 injected near
copies above); random word swaps that leave a text naive Bayes reads as the new label (about 1
of 100 on sst2-clean, more on sms-spam-clean where single words carry the label);
edits of two or more words in texts shorter than about 50 words; scripts written without
spaces form one word per run (exact and 5-gram matches only).

## References
Andrei Z. Broder. On the resemblance and containment of documents. Compression and Complexity
of Sequences, 1997. Jure Leskovec, Anand Rajaraman, Jeffrey D. Ullman. Mining of Massive
Datasets, ch. 3 (banding, the S-curve). Katherine Lee et al. Deduplicating Training Data Makes
Language Models Better. ACL 2022. Martin Dietzfelbinger. Universal hashing and k-wise
independent random variables via integer arithmetic without primes. STACS 1996. Harold
Jeffreys. Theory of Probability, 3rd ed., 1961 (evidence scale).
"#
    ),
    version: 2,
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
    version: 2,
};

// ---------------------------------------------------------------------------------------------
// Parameters

/// How texts are normalised before hashing and shingling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalization {
    /// Unicode NFKC.
    pub nfkc: bool,
    /// Unicode lower-casing.
    pub case_fold: bool,
    /// Collapse runs of whitespace into one space and trim the ends.
    pub collapse_whitespace: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Normalization {
            nfkc: true,
            case_fold: true,
            collapse_whitespace: true,
        }
    }
}

/// Normalise `text` as `norm` says (NFKC, then case fold, then whitespace).
pub fn normalize(text: &str, norm: &Normalization) -> String {
    // ASCII is its own NFKC form, and lower-cases byte by byte: the common case skips both
    // Unicode passes
    let ascii = text.is_ascii();
    let mut s: String = if norm.nfkc && !ascii {
        text.nfkc().collect()
    } else {
        text.to_string()
    };
    if norm.case_fold {
        if ascii {
            s.make_ascii_lowercase();
        } else {
            s = s.to_lowercase();
        }
    }
    if norm.collapse_whitespace {
        s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    s
}

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
    r.finish()?;
    Ok(DupParams {
        kind,
        norm,
        near,
        alpha,
        min_copies,
    })
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
        None => core.groups.clone(),
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
    for g in &core.groups {
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
        let mut core = Core::build(texts, &self.norm, self.near.as_ref());
        if let (Kind::NearConflict, Some(l), Some(n)) = (self.kind, labels, &self.near) {
            if let (Some(x), true) = (data.embeddings, n.embedding_cosine > 0.0) {
                if x.nrows() != data.n_rows {
                    return Err(DetectError::Data {
                        code,
                        problem: "embedding rows differ from the row count".to_string(),
                    });
                }
                let knn = crate::knn::knn_search(&x, n.embedding_k, &n.knn).map_err(|problem| {
                    DetectError::Data {
                        code,
                        problem: format!("embeddings: {problem}"),
                    }
                })?;
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
            let dropped = core.drop_explained_contrasts(l, n.contrast_odds);
            core.near_stats["explained_contrast_pairs"] = json!(dropped);
        }
        Ok(Box::new(verdicts(self, &core, labels, data.class_names)))
    }
}

// ---------------------------------------------------------------------------------------------
// LSH band choice

/// ∫ f over [a, b] by composite Simpson rule with `n` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    if b <= a {
        return 0.0;
    }
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        s += w * f(a + i as f64 * h);
    }
    s * h / 3.0
}

/// Bands b and rows r (b·r ≤ `num_perm`) minimising the weighted false-positive area
/// ∫₀ᵗ P(s) ds and false-negative area ∫ₜ¹ (1 − P(s)) ds of the S-curve
/// P(s) = 1 − (1 − s^r)^b.
pub fn optimal_bands(threshold: f64, num_perm: usize, fp_weight: f64) -> (usize, usize) {
    let mut best = (f64::INFINITY, 1, num_perm.max(1));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let fp = simpson(p, 0.0, threshold, 400);
            let fnr = simpson(|s| 1.0 - p(s), threshold, 1.0, 400);
            let err = fp_weight * fp + (1.0 - fp_weight) * fnr;
            if err < best.0 {
                best = (err, b, r);
            }
        }
    }
    (best.1, best.2)
}

// ---------------------------------------------------------------------------------------------
// MinHash

/// x mod (2⁶¹ − 1), for x < 2¹²⁴.
fn mod_mersenne(x: u128) -> u64 {
    let p = MERSENNE as u128;
    let mut s = (x & p) + (x >> 61);
    s = (s & p) + (s >> 61);
    let s = s as u64;
    if s >= MERSENNE {
        s - MERSENNE
    } else {
        s
    }
}

/// The MinHash permutations: h_i(x) = (a_i·x + b_i) mod (2⁶¹ − 1).
struct Permutations {
    a: Vec<u64>,
    b: Vec<u64>,
    seed: u64,
    shingle_words: usize,
}

impl Permutations {
    fn new(near: &NearParams) -> Self {
        let mut state = near.seed ^ 0x5EED_D0D0_1234_5678;
        let mut a = Vec::with_capacity(near.num_perm);
        let mut b = Vec::with_capacity(near.num_perm);
        for _ in 0..near.num_perm {
            a.push(splitmix(&mut state) | 1);
            b.push(splitmix(&mut state));
        }
        Permutations {
            a,
            b,
            seed: near.seed,
            shingle_words: near.shingle_words,
        }
    }

    /// Signature of a normalised text: per permutation the minimum (32 bits).
    fn signature(&self, normalized: &str) -> Vec<u32> {
        let words = words(normalized);
        let k = self.shingle_words;
        let mut buf = Vec::new();
        let mut hashes: Vec<u64> = Vec::new();
        let mut shingle = |ws: &[&str]| {
            buf.clear();
            for w in ws {
                buf.extend_from_slice(w.as_bytes());
                buf.push(0x1F);
            }
            hashes.push(xxh3_64_with_seed(&buf, self.seed) & 0xFFFF_FFFF);
        };
        if words.len() < k {
            shingle(&words);
        } else {
            for w in words.windows(k) {
                shingle(w);
            }
        }
        hashes.sort_unstable();
        hashes.dedup();
        // shingle-outer, permutation-inner: independent lanes the CPU can overlap
        let mut mins = vec![u64::MAX; self.a.len()];
        for &x in &hashes {
            for ((m, &a), &b) in mins.iter_mut().zip(&self.a).zip(&self.b) {
                *m = (*m).min(perm_hash(a, x, b));
            }
        }
        mins.into_iter().map(|m| m as u32).collect()
    }
}

/// Dietzfelbinger's multiply-add-shift: ((a·x + b) mod 2⁶⁴) div 2³² for a 32-bit key x, a
/// 2-independent family of 32-bit hashes (a odd, a and b uniform 64-bit).
#[inline]
fn perm_hash(a: u64, x: u64, b: u64) -> u64 {
    a.wrapping_mul(x).wrapping_add(b) >> 32
}

/// The words of a normalised text: its whitespace-separated tokens (punctuation stays part of
/// its token, so `film.` and `film .` differ by one word).
fn words(normalized: &str) -> Vec<&str> {
    normalized.split_whitespace().collect()
}

/// The word of `a` replaced in `b` (None for an insertion or deletion) and the word of `b` that
/// replaced it, for sequences one word edit apart.
fn edited_words(a: &[u64], b: &[u64]) -> Option<(Option<u64>, Option<u64>)> {
    let p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    match (a.len() as isize) - (b.len() as isize) {
        0 => Some((a.get(p).copied(), b.get(p).copied())),
        1 => Some((a.get(p).copied(), None)),
        -1 => Some((None, b.get(p).copied())),
        _ => None,
    }
}

/// Whether one word sequence is the other with words added (the shorter is a subsequence of
/// the longer, and they differ).
fn only_added(a: &[u64], b: &[u64]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.len() == long.len() {
        return false;
    }
    let mut it = long.iter();
    short.iter().all(|w| it.any(|x| x == w))
}

/// Whether two word sequences are at most one word edit apart (substitution, insertion or
/// deletion) and not equal.
fn one_word_edit(a: &[u64], b: &[u64]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => short.iter().zip(long).filter(|(x, y)| x != y).count() == 1,
        1 => {
            let p = short.iter().zip(long).take_while(|(x, y)| x == y).count();
            short[p..] == long[p + 1..]
        }
        _ => false,
    }
}

/// One-word-edit neighbourhood keys of a word-hash sequence: the whole sequence and each
/// sequence with one word deleted, as polynomial hashes mod 2⁶¹ − 1 (with the length). Two
/// sequences one edit apart share a key (a substitution at i: both minus word i; an insertion:
/// the longer minus the inserted word equals the shorter), so no such pair is missed; keys can
/// also be shared by sequences two edits apart or by hash collisions, so candidates are
/// verified with [`one_word_edit`]. O(n) per text through prefix and suffix hashes.
fn edit_keys(w: &[u64], base: u64) -> Vec<(usize, u64)> {
    let n = w.len();
    let mulmod = |a: u64, b: u64| mod_mersenne(a as u128 * b as u128);
    let addmod = |a: u64, b: u64| mod_mersenne(a as u128 + b as u128);
    // pow[k] = base^k, prefix[i] = hash of w[..i], suffix[i] = hash of w[i..]
    let mut pow = vec![1u64; n + 1];
    for k in 1..=n {
        pow[k] = mulmod(pow[k - 1], base);
    }
    let mut prefix = vec![0u64; n + 1];
    for i in 0..n {
        prefix[i + 1] = addmod(mulmod(prefix[i], base), w[i]);
    }
    let mut suffix = vec![0u64; n + 1];
    for i in (0..n).rev() {
        suffix[i] = addmod(mulmod(w[i], pow[n - 1 - i]), suffix[i + 1]);
    }
    let mut keys = Vec::with_capacity(n + 1);
    keys.push((n, prefix[n]));
    for i in 0..n {
        // w[..i] then w[i+1..]: prefix shifted by the n − 1 − i words that follow
        keys.push((
            n - 1,
            addmod(mulmod(prefix[i], pow[n - 1 - i]), suffix[i + 1]),
        ));
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Share of equal positions of two signatures (the MinHash Jaccard estimate).
fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Union-find with path halving and union by smaller index (so roots are deterministic).
struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi] = lo;
        }
    }
}

/// Word hashes (mod 2⁶¹ − 1) of each representative's normalised text.
fn word_hashes(normalized: &[String], reps: &[usize], seed: u64) -> Vec<Vec<u64>> {
    reps.par_chunks(CHUNK)
        .flat_map_iter(|c| {
            c.iter()
                .map(|&r| {
                    words(&normalized[r])
                        .iter()
                        .map(|w| xxh3_64_with_seed(w.as_bytes(), seed) % MERSENNE)
                        .collect::<Vec<u64>>()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Pairs of exact groups (indices into `toks`) one word edit apart, the longer text having at
/// least `edit_min_words` words, with their edit similarity 1 − 1/max(words). Sorted.
fn word_edit_pairs(toks: &[Vec<u64>], near: &NearParams) -> Vec<((usize, usize), f64)> {
    let min_words = near.edit_min_words;
    let mut state = near.seed ^ 0xED17_0000_0000_0001;
    let base = splitmix(&mut state) % (MERSENNE - 2) + 2;
    // a pair needs max(words) ≥ min_words, so the shorter text has at least min_words − 1
    let mut keys: Vec<((usize, u64), usize)> = toks
        .par_chunks(CHUNK)
        .enumerate()
        .flat_map_iter(|(ci, c)| {
            let mut out = Vec::new();
            for (j, t) in c.iter().enumerate() {
                if t.len() + 1 >= min_words && !t.is_empty() {
                    out.extend(edit_keys(t, base).into_iter().map(|k| (k, ci * CHUNK + j)));
                }
            }
            out
        })
        .collect();
    keys.par_sort_unstable();
    let mut cand: Vec<(usize, usize)> = Vec::new();
    bucket_pairs(&keys, near.max_bucket, &mut cand);
    cand.par_sort_unstable();
    cand.dedup();
    cand.into_par_iter()
        .filter_map(|(a, b)| {
            let (ta, tb) = (&toks[a], &toks[b]);
            let longest = ta.len().max(tb.len());
            (longest >= min_words && one_word_edit(ta, tb))
                .then(|| ((a.min(b), a.max(b)), 1.0 - 1.0 / longest as f64))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Shared core

/// Exact groups and near clusters of one dataset.
struct Core {
    n_rows: usize,
    /// Exact groups (rows in row order), ordered by first row.
    groups: Vec<Vec<usize>>,
    /// Exact group of each row.
    group_of: Vec<usize>,
    /// Near clusters as lists of exact groups (ordered by first row), when computed.
    clusters: Option<Vec<Vec<usize>>>,
    /// Signature per exact group, when computed.
    sigs: Vec<Vec<u32>>,
    /// Verified near pairs of exact groups (a < b): similarity and the measure that found it.
    edges: BTreeMap<(usize, usize), (f64, &'static str)>,
    /// Word hashes per exact group (near duplicates only).
    toks: Vec<Vec<u64>>,
    /// Near-duplicate statistics for the summary.
    near_stats: serde_json::Value,
}

impl Core {
    fn build(texts: &[String], norm: &Normalization, near: Option<&NearParams>) -> Core {
        let n = texts.len();
        let normalized: Vec<String> = texts
            .par_chunks(CHUNK)
            .flat_map_iter(|c| c.iter().map(|t| normalize(t, norm)).collect::<Vec<_>>())
            .collect();
        let mut keyed: Vec<(u128, usize)> = normalized
            .par_chunks(CHUNK)
            .enumerate()
            .flat_map_iter(|(ci, c)| {
                c.iter()
                    .enumerate()
                    .map(|(j, t)| (xxh3_128(t.as_bytes()), ci * CHUNK + j))
                    .collect::<Vec<_>>()
            })
            .collect();
        keyed.par_sort_unstable();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut prev: Option<u128> = None;
        for &(h, row) in &keyed {
            match (prev, groups.last_mut()) {
                (Some(p), Some(g)) if p == h => g.push(row),
                _ => groups.push(vec![row]),
            }
            prev = Some(h);
        }
        // rows within a group are ascending (sorted by (hash, row)); order groups by first row
        groups.sort_unstable_by_key(|g| g[0]);
        let mut group_of = vec![0usize; n];
        for (gi, g) in groups.iter().enumerate() {
            for &r in g {
                group_of[r] = gi;
            }
        }
        let mut core = Core {
            n_rows: n,
            groups,
            group_of,
            clusters: None,
            sigs: Vec::new(),
            edges: BTreeMap::new(),
            toks: Vec::new(),
            near_stats: serde_json::Value::Null,
        };
        if let Some(near) = near {
            core.near(&normalized, near);
        }
        core
    }

    fn near(&mut self, normalized: &[String], near: &NearParams) {
        let perms = Permutations::new(near);
        let reps: Vec<usize> = self.groups.iter().map(|g| g[0]).collect();
        let sigs: Vec<Vec<u32>> = reps
            .par_chunks(CHUNK)
            .flat_map_iter(|c| {
                c.iter()
                    .map(|&r| perms.signature(&normalized[r]))
                    .collect::<Vec<_>>()
            })
            .collect();
        let (b, r) = (near.bands, near.rows);
        let mut pairs: Vec<(usize, usize)> = (0..b)
            .into_par_iter()
            .flat_map_iter(|band| {
                let mut keys: Vec<(u64, usize)> = Vec::with_capacity(sigs.len());
                let mut bytes = Vec::with_capacity(4 * r + 8);
                for (g, s) in sigs.iter().enumerate() {
                    bytes.clear();
                    bytes.extend_from_slice(&(band as u64).to_le_bytes());
                    for v in &s[band * r..(band + 1) * r] {
                        bytes.extend_from_slice(&v.to_le_bytes());
                    }
                    keys.push((xxh3_64(&bytes), g));
                }
                keys.sort_unstable();
                let mut out = Vec::new();
                bucket_pairs(&keys, near.max_bucket, &mut out);
                out
            })
            .collect();
        pairs.par_sort_unstable();
        pairs.dedup();
        let candidates = pairs.len();
        let verified: Vec<(usize, usize)> = pairs
            .par_iter()
            .copied()
            .filter(|&(a, b)| jaccard(&sigs[a], &sigs[b]) >= near.threshold)
            .collect();
        let mut edges: BTreeMap<(usize, usize), (f64, &'static str)> = verified
            .iter()
            .map(|&(a, b)| ((a, b), (jaccard(&sigs[a], &sigs[b]), "minhash_jaccard")))
            .collect();
        let mut edit_pairs = 0usize;
        let toks = if near.word_edit {
            word_hashes(normalized, &reps, near.seed)
        } else {
            Vec::new()
        };
        if near.word_edit {
            for (pair, sim) in word_edit_pairs(&toks, near) {
                edit_pairs += 1;
                let e = edges.entry(pair).or_insert((sim, "word_edit"));
                if sim > e.0 {
                    *e = (sim, "word_edit");
                }
            }
        }
        let mut uf = UnionFind((0..sigs.len()).collect());
        for &(a, b) in edges.keys() {
            uf.union(a, b);
        }
        let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for g in 0..sigs.len() {
            let root = uf.find(g);
            by_root.entry(root).or_default().push(g);
        }
        // roots are the smallest group index of each component, so this is first-row order
        self.clusters = Some(by_root.into_values().collect());
        self.sigs = sigs;
        self.near_stats = json!({
            "lsh_bands": b,
            "lsh_rows": r,
            "candidate_pairs": candidates,
            "verified_pairs": verified.len(),
            "word_edit_pairs": edit_pairs,
            "near_pairs": edges.len(),
        });
        self.edges = edges;
        self.toks = toks;
    }

    /// DUP002: link exact groups whose rows are among each other's `knn` neighbours with
    /// cosine ≥ `cosine` (measure `embedding_cosine`; a pair already found by text keeps its
    /// text similarity). Returns the number of new group pairs; the clusters are recomputed by
    /// [`Core::drop_explained_contrasts`].
    fn rows_with_embedding_neighbour(&self, knn: &crate::knn::Knn, cosine: f64) -> usize {
        (0..self.n_rows)
            .filter(|&i| {
                knn.neighbours(i)
                    .iter()
                    .zip(knn.sims(i))
                    .take_while(|(_, &c)| c as f64 >= cosine)
                    .any(|(&j, _)| self.group_of[j as usize] != self.group_of[i])
            })
            .count()
    }

    fn add_embedding_pairs(&mut self, knn: &crate::knn::Knn, cosine: f64) -> usize {
        let mut added = 0;
        for i in 0..self.n_rows {
            for (&j, &c) in knn.neighbours(i).iter().zip(knn.sims(i)) {
                if (c as f64) < cosine {
                    break;
                }
                let (gi, gj) = (self.group_of[i], self.group_of[j as usize]);
                if gi == gj {
                    continue;
                }
                let key = (gi.min(gj), gi.max(gj));
                if let std::collections::btree_map::Entry::Vacant(e) = self.edges.entry(key) {
                    e.insert((c as f64, "embedding_cosine"));
                    added += 1;
                }
            }
        }
        added
    }

    /// DUP002: remove the one-word-edit pairs whose label change the edited word explains, and
    /// recompute the clusters. For a pair of label-pure groups with labels a ≠ b where word x
    /// (or nothing) became y (or nothing), the evidence is the change of naive-Bayes log odds
    /// of b against a, ln O(y) − ln O(x), with ln O(w) = ln((df_b(w) + 1)/(n_b + 2)) −
    /// ln((df_a(w) + 1)/(n_a + 2)) from the documents of each class containing w (0 for no
    /// word). When it is at least ln `contrast_odds`, and naive Bayes over each whole text
    /// (prior, shared words, own edited word) names that text's own label, the edit itself
    /// accounts for the new label (`it 's funny .` / `it 's drab .`): a consistent contrast
    /// pair, not a flip. Returns the number of pairs removed.
    fn drop_explained_contrasts(&mut self, labels: &[ClassIndex], contrast_odds: f64) -> usize {
        let removed = if self.toks.is_empty() {
            Vec::new()
        } else {
            self.explained_contrasts(labels, contrast_odds)
        };
        for e in &removed {
            self.edges.remove(e);
        }
        let mut uf = UnionFind((0..self.groups.len()).collect());
        for &(a, b) in self.edges.keys() {
            uf.union(a, b);
        }
        let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for g in 0..self.groups.len() {
            let root = uf.find(g);
            by_root.entry(root).or_default().push(g);
        }
        self.clusters = Some(by_root.into_values().collect());
        removed.len()
    }

    /// The one-word-edit pairs whose label change the edited word explains (see
    /// [`Core::drop_explained_contrasts`]).
    fn explained_contrasts(
        &self,
        labels: &[ClassIndex],
        contrast_odds: f64,
    ) -> Vec<(usize, usize)> {
        // document frequency per class of every word, and the rows per class
        let mut df: std::collections::HashMap<u64, BTreeMap<ClassIndex, usize>> =
            std::collections::HashMap::new();
        let mut n_class: BTreeMap<ClassIndex, usize> = BTreeMap::new();
        for (g, rows) in self.groups.iter().enumerate() {
            let mut uniq = self.toks[g].clone();
            uniq.sort_unstable();
            uniq.dedup();
            for &r in rows {
                let l = labels[r];
                *n_class.entry(l).or_default() += 1;
                for &w in &uniq {
                    *df.entry(w).or_default().entry(l).or_default() += 1;
                }
            }
        }
        let pure = |g: usize| -> Option<ClassIndex> {
            let first = labels[self.groups[g][0]];
            self.groups[g]
                .iter()
                .all(|&r| labels[r] == first)
                .then_some(first)
        };
        // evidence from the rest of the data: the pair's own rows are left out, so that a rare
        // word does not explain a label through the very rows being judged
        let log_odds = |w: Option<u64>, a: ClassIndex, b: ClassIndex, pair: [usize; 2]| -> f64 {
            let Some(w) = w else { return 0.0 };
            let c = df.get(&w);
            let own = |l: ClassIndex, with_word: bool| -> f64 {
                pair.iter()
                    .filter(|&&g| !with_word || self.toks[g].contains(&w))
                    .map(|&g| self.groups[g].iter().filter(|&&r| labels[r] == l).count())
                    .sum::<usize>() as f64
            };
            let d = |l| c.and_then(|m| m.get(&l)).copied().unwrap_or(0) as f64 - own(l, true);
            let n = |l| n_class.get(&l).copied().unwrap_or(0) as f64 - own(l, false);
            ((d(b) + 1.0) / (n(b) + 2.0)).ln() - ((d(a) + 1.0) / (n(a) + 2.0)).ln()
        };
        let cut = contrast_odds.ln();
        let mut removed = Vec::new();
        for (&(ga, gb), &(_, measure)) in &self.edges {
            let (Some(a), Some(b)) = (pure(ga), pure(gb)) else {
                continue;
            };
            if a == b {
                continue;
            }
            // words added to the same text are new content, and the likeliest reason for the
            // new label ("good" / "not good", a closing tag that names the emotion): a flipped
            // copy replaces words, it does not only grow the text
            if only_added(&self.toks[ga], &self.toks[gb]) {
                removed.push((ga, gb));
                continue;
            }
            if measure != "word_edit" {
                continue;
            }
            let Some((x, y)) = edited_words(&self.toks[ga], &self.toks[gb]) else {
                continue;
            };
            let (ex, ey) = (log_odds(x, a, b, [ga, gb]), log_odds(y, a, b, [ga, gb]));
            if ey - ex < cut {
                continue;
            }
            // the edit must also be enough: naive Bayes over each whole text (prior, the words
            // both share, and its own edited word) names that text's own label. One changed
            // word does not turn a long spam message into ham.
            let mut shared: Vec<u64> = self.toks[ga]
                .iter()
                .copied()
                .filter(|w| Some(*w) != x && self.toks[gb].contains(w))
                .collect();
            shared.sort_unstable();
            shared.dedup();
            let prior = ((n_class.get(&b).copied().unwrap_or(0) as f64 + 1.0)
                / (n_class.get(&a).copied().unwrap_or(0) as f64 + 1.0))
                .ln();
            let rest = prior
                + shared
                    .iter()
                    .map(|&w| log_odds(Some(w), a, b, [ga, gb]))
                    .sum::<f64>();
            if rest + ey > 0.0 && rest + ex < 0.0 {
                removed.push((ga, gb));
            }
        }
        removed
    }

    /// Similarity of two exact groups and its measure: the verified pair's when they are one,
    /// else the MinHash estimate.
    fn sim(&self, a: usize, b: usize) -> (f64, &'static str) {
        let key = if a < b { (a, b) } else { (b, a) };
        match self.edges.get(&key) {
            Some(&e) => e,
            None => (jaccard(&self.sigs[a], &self.sigs[b]), "minhash_jaccard"),
        }
    }

    fn cluster_rows(&self, cluster: &[usize]) -> Vec<usize> {
        let mut rows: Vec<usize> = cluster
            .iter()
            .flat_map(|&g| self.groups[g].iter().copied())
            .collect();
        rows.sort_unstable();
        rows
    }
}

/// Histogram of cluster sizes: sizes 1 to 10 exactly, then powers-of-two bins.
fn size_histogram(sizes: impl Iterator<Item = usize>) -> serde_json::Value {
    let mut h: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for s in sizes {
        let bin = if s <= 10 {
            (s, s)
        } else {
            let hi = s.next_power_of_two().max(16);
            ((hi / 2 + 1).max(11), hi)
        };
        *h.entry(bin).or_default() += 1;
    }
    let mut m = serde_json::Map::new();
    for ((lo, hi), c) in h {
        let key = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        };
        m.insert(key, json!(c));
    }
    serde_json::Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Verdicts

/// Per-row result of a fit: scores of every row, reasons of flagged rows.
struct DupFit {
    code: &'static str,
    score: Vec<f64>,
    reason: BTreeMap<usize, String>,
    summary: serde_json::Value,
}

impl Fitted for DupFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let (start, n) = (batch.start, batch.rows.n_rows);
        let end = start.checked_add(n).filter(|&e| e <= self.score.len());
        let end = end.ok_or(DetectError::Data {
            code: self.code,
            problem: format!(
                "batch rows {start}..{} outside the {} fitted rows",
                start.saturating_add(n),
                self.score.len()
            ),
        })?;
        let mut out = Scores::with_capacity(n);
        for row in start..end {
            out.score.push(self.score[row]);
            out.reason.push(self.reason.get(&row).cloned());
        }
        Ok(out)
    }

    fn summary(&self) -> serde_json::Value {
        self.summary.clone()
    }
}

fn label_name(names: &[String], l: ClassIndex) -> String {
    names
        .get(l as usize)
        .cloned()
        .unwrap_or_else(|| l.to_string())
}

/// Label counts of `rows`, in class order.
fn label_counts(rows: &[usize], labels: &[ClassIndex]) -> BTreeMap<ClassIndex, usize> {
    let mut c = BTreeMap::new();
    for &r in rows {
        *c.entry(labels[r]).or_insert(0) += 1;
    }
    c
}

/// Label counts as `<name>x<count>` joined by commas, e.g. `posx3,negx1`.
fn counts_text(counts: &BTreeMap<ClassIndex, usize>, names: &[String]) -> String {
    counts
        .iter()
        .map(|(&l, c)| format!("{}x{c}", label_name(names, l)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label conflict in one cluster: the majority label (None in a tie) and the counts.
struct Conflict {
    counts: BTreeMap<ClassIndex, usize>,
    majority: Option<ClassIndex>,
}

impl Conflict {
    fn of(rows: &[usize], labels: &[ClassIndex]) -> Option<Conflict> {
        let counts = label_counts(rows, labels);
        if counts.len() < 2 {
            return None;
        }
        let top = counts.values().copied().max().unwrap_or(0);
        let tops: Vec<ClassIndex> = counts
            .iter()
            .filter(|(_, &c)| c == top)
            .map(|(&l, _)| l)
            .collect();
        let majority = if tops.len() == 1 { Some(tops[0]) } else { None };
        Some(Conflict { counts, majority })
    }

    fn flags(&self, label: ClassIndex) -> bool {
        self.majority != Some(label)
    }

    fn counts_text(&self, names: &[String]) -> String {
        counts_text(&self.counts, names)
    }

    fn verdict(&self) -> &'static str {
        if self.majority.is_some() {
            "minority"
        } else {
            "tie: cannot tell which label is right"
        }
    }

    fn score(&self, label: ClassIndex, size: usize) -> f64 {
        match self.majority {
            Some(m) => {
                let top = self.counts.get(&m).copied().unwrap_or(0);
                let mine = self.counts.get(&label).copied().unwrap_or(0);
                1.0 + top.saturating_sub(mine) as f64 / size.max(1) as f64
            }
            None => 1.0,
        }
    }

    /// Can `other_label` serve as the row a flagged row duplicates?
    fn is_reference(&self, mine: ClassIndex, other_label: ClassIndex) -> bool {
        match self.majority {
            Some(m) => other_label == m,
            None => other_label != mine,
        }
    }
}

fn verdicts(p: &DupParams, core: &Core, labels: Option<&[ClassIndex]>, names: &[String]) -> DupFit {
    let n = core.n_rows;
    let code = p.code();
    let mut score = vec![0.0; n];
    let mut reason = BTreeMap::new();
    let exact_sizes = core.groups.iter().map(Vec::len);
    let mut summary = json!({
        "detector": code,
        "rows": n,
        "exact": {
            "groups": core.groups.len(),
            "duplicated_groups": core.groups.iter().filter(|g| g.len() > 1).count(),
            "duplicate_rows": n - core.groups.len(),
            "size_histogram": size_histogram(exact_sizes),
        },
    });
    let near_rows: Vec<Vec<usize>> = core
        .clusters
        .as_ref()
        .map(|cs| cs.iter().map(|c| core.cluster_rows(c)).collect())
        .unwrap_or_default();
    if let Some(cs) = &core.clusters {
        summary["near"] = json!({
            "clusters": cs.len(),
            "duplicated_clusters": near_rows.iter().filter(|r| r.len() > 1).count(),
            "rows_in_duplicated_clusters": near_rows.iter().filter(|r| r.len() > 1).map(Vec::len).sum::<usize>(),
            "clusters_with_several_texts": cs.iter().filter(|c| c.len() > 1).count(),
            "size_histogram": size_histogram(near_rows.iter().map(Vec::len)),
            "lsh": core.near_stats,
        });
    }
    let threshold = p.near.map_or(1.0, |nr| nr.threshold);
    match p.kind {
        Kind::ExactConflict | Kind::NearConflict => {
            let Some(labels) = labels else {
                return DupFit {
                    code,
                    score,
                    reason,
                    summary,
                };
            };
            let mut listed = Vec::new();
            let mut n_conflicts = 0usize;
            let exact = p.kind == Kind::ExactConflict;
            let clusters: Vec<(Vec<usize>, &[usize])> = if exact {
                core.groups
                    .iter()
                    .filter(|g| g.len() > 1)
                    .map(|g| (g.clone(), &[][..]))
                    .collect()
            } else {
                core.clusters
                    .as_ref()
                    .map(|cs| {
                        cs.iter()
                            .zip(&near_rows)
                            .filter(|(c, _)| c.len() > 1)
                            .map(|(c, rows)| (rows.clone(), c.as_slice()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for (rows, cgroups) in &clusters {
                let Some(conflict) = Conflict::of(rows, labels) else {
                    continue;
                };
                n_conflicts += 1;
                if listed.len() < LIST_CAP {
                    listed.push(json!({
                        "rows": rows.iter().take(LIST_CAP).collect::<Vec<_>>(),
                        "size": rows.len(),
                        "labels": conflict.counts_text(names),
                        "distinct_texts": if exact { 1 } else { cgroups.len() },
                    }));
                }
                for &row in rows {
                    let mine = labels[row];
                    if !conflict.flags(mine) {
                        continue;
                    }
                    // the row it duplicates: for exact, the first reference row; for near, the
                    // most similar reference row in another exact group (else any reference)
                    let (dup_of, jac, measure) = if exact {
                        let d = rows
                            .iter()
                            .copied()
                            .find(|&o| o != row && conflict.is_reference(mine, labels[o]));
                        (d, 1.0, "exact")
                    } else {
                        let g_me = core.group_of[row];
                        let mut best: Option<(f64, usize, &str)> = None;
                        for &g in cgroups.iter().take(NEAREST_CAP) {
                            if g == g_me {
                                continue;
                            }
                            let Some(&o) = core.groups[g]
                                .iter()
                                .find(|&&o| conflict.is_reference(mine, labels[o]))
                            else {
                                continue;
                            };
                            let (j, m) = core.sim(g_me, g);
                            if best.is_none_or(|(bj, bo, _)| j > bj || (j == bj && o < bo)) {
                                best = Some((j, o, m));
                            }
                        }
                        match best {
                            Some((j, o, m)) => (Some(o), j, m),
                            None => (
                                rows.iter()
                                    .copied()
                                    .find(|&o| o != row && conflict.is_reference(mine, labels[o])),
                                1.0,
                                "exact",
                            ),
                        }
                    };
                    let Some(dup_of) = dup_of else { continue };
                    let (sim, thr) = if exact {
                        ("jaccard=1.00".to_string(), "exact".to_string())
                    } else {
                        (
                            format!("similarity={jac:.2} measure={measure}"),
                            format!("{threshold:.2}"),
                        )
                    };
                    reason.insert(
                        row,
                        format!(
                            "{code}:dup_of={dup_of} {sim} threshold={thr} labels={}:{} counts={} {}",
                            label_name(names, mine),
                            label_name(names, labels[dup_of]),
                            conflict.counts_text(names),
                            conflict.verdict()
                        ),
                    );
                    score[row] = if exact {
                        conflict.score(mine, rows.len())
                    } else {
                        (jac / threshold).max(1.0)
                    };
                }
            }
            summary["conflicting_clusters"] = json!(n_conflicts);
            summary["conflicts"] = json!(listed);
        }
        Kind::Amplification => {
            let sizes: Vec<usize> = near_rows.iter().map(Vec::len).filter(|&s| s > 1).collect();
            let cut = amplification(&sizes, p.alpha, p.min_copies);
            let mut listed = Vec::new();
            let mut n_amp = 0;
            let cs = core.clusters.as_deref().unwrap_or(&[]);
            for (c, rows) in cs.iter().zip(&near_rows) {
                if rows.len() < 2 {
                    continue;
                }
                let k = rows.len();
                let e = expected_at_least(&sizes, k);
                let s = if e > 0.0 {
                    e.ln() / p.alpha.ln()
                } else {
                    f64::INFINITY
                };
                let flagged = cut.is_some_and(|c| k >= c);
                let s = if flagged {
                    s.max(1.0)
                } else {
                    s.clamp(0.0, 0.999)
                };
                for &r in rows {
                    score[r] = s;
                }
                if !flagged {
                    continue;
                }
                n_amp += 1;
                let first = rows[0];
                let g_first = core.group_of[first];
                if listed.len() < LIST_CAP {
                    listed.push(json!({
                        "rows": rows.iter().take(LIST_CAP).collect::<Vec<_>>(),
                        "size": k,
                        "distinct_texts": c.len(),
                        "expected_clusters_this_large": e,
                        "labels": labels.map(|l| counts_text(&label_counts(rows, l), names)),
                    }));
                }
                for &r in rows {
                    let g = core.group_of[r];
                    let (j, m) = if g == g_first {
                        (1.0, "exact")
                    } else {
                        core.sim(g, g_first)
                    };
                    reason.insert(
                        r,
                        format!(
                            "{code}:dup_of={first} similarity={j:.2} measure={m} threshold={threshold:.2} cluster_size={k} expected={e:.2e} alpha={}",
                            p.alpha
                        ),
                    );
                }
            }
            let fit = sizes
                .iter()
                .filter(|&&s| cut.is_none_or(|c| s < c))
                .copied()
                .collect::<Vec<_>>();
            let mut largest = sizes.clone();
            largest.sort_unstable_by(|a, b| b.cmp(a));
            largest.truncate(10);
            summary["amplification"] = json!({
                "cut_cluster_size": cut,
                "baseline_power_law_alpha": power_law_alpha(&fit),
                "largest_clusters": largest,
                "amplified_clusters": n_amp,
                "clusters": listed,
            });
        }
    }
    summary["flagged_rows"] = json!(reason.len());
    DupFit {
        code,
        score,
        reason,
        summary,
    }
}

/// Power-law exponent (x ≥ 2) of `sizes` plus one pseudo-cluster of size 2, by the
/// Clauset–Shalizi–Newman approximation α̂ = 1 + m / Σ ln(x / 1.5).
fn power_law_alpha(sizes: &[usize]) -> f64 {
    let m = sizes.len() + 1;
    let s: f64 = (2.0f64 / 1.5).ln() + sizes.iter().map(|&x| (x as f64 / 1.5).ln()).sum::<f64>();
    1.0 + m as f64 / s
}

/// E_k: expected number of duplicated clusters of size ≥ k (among all, +1) under the power law
/// fitted to the clusters smaller than k.
fn expected_at_least(sizes: &[usize], k: usize) -> f64 {
    let base: Vec<usize> = sizes.iter().copied().filter(|&s| s < k).collect();
    let a = power_law_alpha(&base);
    let tail = ((k as f64 - 0.5) / 1.5).powf(-(a - 1.0)).min(1.0);
    (sizes.len() + 1) as f64 * tail
}

/// The smallest flagged cluster size of the sequential outlier search, if any.
fn amplification(sizes: &[usize], alpha: f64, min_copies: usize) -> Option<usize> {
    let mut distinct: Vec<usize> = sizes.to_vec();
    distinct.sort_unstable_by(|a, b| b.cmp(a));
    distinct.dedup();
    let mut cut = None;
    for k in distinct {
        if k < min_copies || expected_at_least(sizes, k) >= alpha {
            break;
        }
        cut = Some(k);
    }
    cut
}

/// Candidate pairs from `(key, item)` pairs sorted by key: every pair within a bucket of equal
/// keys, or, in a bucket larger than `max_bucket`, its first item paired with each other one (a
/// star keeps huge buckets linear; union-find still joins them).
fn bucket_pairs<K: PartialEq>(
    keys: &[(K, usize)],
    max_bucket: usize,
    out: &mut Vec<(usize, usize)>,
) {
    for bucket in keys.chunk_by(|a, b| a.0 == b.0) {
        if bucket.len() > max_bucket {
            for &(_, g) in &bucket[1..] {
                out.push((bucket[0].1, g));
            }
        } else {
            for (i, a) in bucket.iter().enumerate() {
                for b in &bucket[i + 1..] {
                    out.push((a.1, b.1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(
        code: &str,
        texts: &[&str],
        labels: &[u32],
        params: &str,
    ) -> (Scores, serde_json::Value) {
        let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
        let names = vec!["0".to_string(), "1".to_string()];
        let view = DatasetView {
            n_rows: texts.len(),
            texts: Some(&texts),
            labels: Some(labels),
            class_names: &names,
            embeddings: None,
        };
        let det = crate::find(code).expect("registered");
        let table: toml::Table = params.parse().expect("toml");
        let f = det
            .configure(&table)
            .expect("configure")
            .fit(&view)
            .expect("fit");
        (f.score(&view.as_batch()).expect("score"), f.summary())
    }

    #[test]
    fn bands_for_point_eight() {
        assert_eq!(optimal_bands(0.8, 128, 0.5), (9, 13));
        assert_eq!(optimal_bands(0.5, 128, 0.5), (25, 5));
        let (b, r) = optimal_bands(0.5, 128, 0.5);
        assert!(b * r <= 128);
    }

    #[test]
    fn normalization_nfkc_case_space() {
        let n = Normalization::default();
        assert_eq!(normalize("  Ｈello\t WORLD \n", &n), "hello world");
        let raw = Normalization {
            nfkc: false,
            case_fold: false,
            collapse_whitespace: false,
        };
        assert_eq!(normalize(" A  b", &raw), " A  b");
    }

    #[test]
    fn minhash_estimates_jaccard() {
        let p = match configure(Kind::NearConflict, "DUP002", &toml::Table::new()) {
            Ok(p) => p.near.expect("near"),
            Err(e) => panic!("{e}"),
        };
        let perms = Permutations::new(&NearParams { num_perm: 512, ..p });
        let a: String = (0..60).map(|i| format!("w{i} ")).collect();
        let b: String = (10..70).map(|i| format!("w{i} ")).collect();
        // 5-shingles: 56 each, 46 shared -> J = 46 / 66
        let j = jaccard(&perms.signature(a.trim()), &perms.signature(b.trim()));
        assert!((j - 46.0 / 66.0).abs() < 0.07, "{j}");
        assert_eq!(
            jaccard(&perms.signature("x y"), &perms.signature("x y")),
            1.0
        );
        assert!(jaccard(&perms.signature("x y"), &perms.signature("x z")) < 0.1);
    }

    #[test]
    fn exact_conflict_minority_and_tie() {
        let texts = [
            "Great film",
            "great  FILM",
            "great film",
            "bad film",
            "Bad film",
            "other",
            "x",
        ];
        let labels = [1, 1, 0, 0, 1, 0, 1];
        let (s, summary) = fit("DUP001", &texts, &labels, "");
        let flagged: Vec<usize> = (0..texts.len())
            .filter(|&i| s.reason[i].is_some())
            .collect();
        assert_eq!(flagged, vec![2, 3, 4]);
        let r2 = s.reason[2].as_deref().unwrap_or("");
        assert!(
            r2.starts_with("DUP001:dup_of=0 ") && r2.ends_with("minority"),
            "{r2}"
        );
        assert!(s.reason[3].as_deref().unwrap_or("").contains("tie"));
        assert_eq!(summary["conflicting_clusters"], 2);
        assert!(s.score[2] >= 1.0 && s.score[0] == 0.0);
    }

    #[test]
    fn near_conflict_and_determinism() {
        let base = "the quick brown fox jumps over the lazy dog near the quiet river bank on a warm sunny afternoon in late summer";
        let near = base.replace("lazy", "sleepy");
        let texts = [
            base,
            near.as_str(),
            "something else entirely with many words in it ok",
        ];
        let labels = [0, 1, 0];
        let p = "shingle_words = 1\nthreshold = 0.7";
        let (s, _) = fit("DUP002", &texts, &labels, p);
        assert!(s.reason[0].as_deref().unwrap_or("").contains("tie"));
        assert!(s.reason[1]
            .as_deref()
            .unwrap_or("")
            .starts_with("DUP002:dup_of=0 similarity="));
        assert!(s.reason[2].is_none());
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let (s1, sum1) = one.install(|| fit("DUP002", &texts, &labels, p));
        let (s2, sum2) = fit("DUP002", &texts, &labels, p);
        assert_eq!(s1, s2);
        assert_eq!(sum1, sum2);
    }

    #[test]
    fn one_word_edit_keys_find_every_edit() {
        let base = 0x1234_5678_9abc;
        let a: Vec<u64> = vec![1, 2, 3, 4, 5];
        let sub = vec![1, 2, 9, 4, 5];
        let ins = vec![1, 2, 3, 9, 4, 5];
        let del = vec![1, 3, 4, 5];
        let two = vec![1, 9, 3, 9, 5];
        let shares = |x: &[u64], y: &[u64]| {
            let kx = edit_keys(x, base);
            edit_keys(y, base).iter().any(|k| kx.contains(k))
        };
        for b in [&sub, &ins, &del] {
            assert!(shares(&a, b) && one_word_edit(&a, b), "{b:?}");
        }
        assert!(!one_word_edit(&a, &two) && !one_word_edit(&a, &a));
        assert_eq!(edited_words(&a, &sub), Some((Some(3), Some(9))));
        assert_eq!(edited_words(&a, &ins), Some((None, Some(9))));
        assert_eq!(edited_words(&a, &del), Some((Some(2), None)));
    }

    #[test]
    fn short_one_word_flip_found_and_explained_contrast_kept() {
        // a flipped near copy of a 6-word text (5-gram Jaccard 0) is found by the word edit
        let mut texts: Vec<String> = vec![
            "the plot holds up quite well".into(),
            "the plot holds up rather well".into(),
        ];
        let mut labels = vec![1, 0];
        // a contrast pair whose edited words carry the labels in the rest of the data
        texts.push("the ending is truly wonderful .".into());
        texts.push("the ending is truly awful .".into());
        labels.extend([1, 0]);
        for i in 0..30 {
            texts.push(format!("wonderful acting in scene {i}"));
            labels.push(1);
            texts.push(format!("awful pacing in part {i}"));
            labels.push(0);
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (s, summary) = fit("DUP002", &refs, &labels, "");
        let flagged: Vec<usize> = (0..refs.len()).filter(|&i| s.reason[i].is_some()).collect();
        assert_eq!(flagged, vec![0, 1], "{summary}");
        assert!(s.reason[1]
            .as_deref()
            .unwrap_or("")
            .contains("measure=word_edit"));
        // with the contrast test off, the contrast pair is flagged too
        let (s, _) = fit("DUP002", &refs, &labels, "contrast_odds = 1e300");
        assert!(s.reason[2].is_some() && s.reason[3].is_some());
    }

    #[test]
    fn a_one_word_change_of_a_long_text_is_not_explained_by_that_word() {
        // a long "spam" message whose copy swapped one spam word for a "ham" word and took the
        // ham label: the edit moves the word odds far, but the rest still reads as spam
        let mut texts: Vec<String> = vec![
            "win cash prize now claim your free prize call now to claim cash".into(),
            "win cash prize now claim your free home call now to claim cash".into(),
        ];
        let mut labels = vec![1, 0];
        for i in 0..30 {
            texts.push(format!("free prize cash claim win offer {i}"));
            labels.push(1);
            texts.push(format!("see you at home later tonight {i}"));
            labels.push(0);
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (s, summary) = fit("DUP002", &refs, &labels, "");
        assert!(s.reason[0].is_some() && s.reason[1].is_some(), "{summary}");
        assert_eq!(
            summary["near"]["lsh"]["explained_contrast_pairs"], 0,
            "{summary}"
        );
    }

    #[test]
    fn embedding_near_duplicates_and_the_share_guard() {
        // four unrelated texts; rows 0 and 1 have nearly the same embedding and other labels
        let texts = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta"];
        let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
        let labels = [0, 1, 0, 1];
        let names = vec!["0".to_string(), "1".to_string()];
        let x = ndarray::array![
            [1.0f32, 0.0, 0.0, 0.0],
            [0.99, 0.05, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0]
        ];
        let view = DatasetView {
            n_rows: 4,
            texts: Some(&texts),
            labels: Some(&labels),
            class_names: &names,
            embeddings: Some(x.view()),
        };
        let run = |params: &str| {
            let table: toml::Table = params.parse().expect("toml");
            let f = crate::find("DUP002")
                .expect("registered")
                .configure(&table)
                .expect("configure")
                .fit(&view)
                .expect("fit");
            let s = f.score(&view.as_batch()).expect("score");
            (s.reason, f.summary())
        };
        // two of four rows linked: allowed with a share bound of 1
        let (r, _) = run("embedding_max_share = 1.0");
        assert!(r[0]
            .as_deref()
            .unwrap_or("")
            .contains("measure=embedding_cosine"));
        assert!(r[1].is_some() && r[2].is_none() && r[3].is_none());
        // at the default bound (10 %) half of the rows with such a neighbour is too many
        let (r, summary) = run("");
        assert!(r.iter().all(Option::is_none), "{summary}");
        assert!(summary["near"]["lsh"]["embedding_skipped"].is_string());
    }

    #[test]
    fn amplification_relative_to_baseline() {
        // baseline of pairs: a 40-copy cluster is flagged, pairs are not
        let mut texts: Vec<String> = (0..200)
            .map(|i| format!("row number {i} says hello"))
            .collect();
        for i in 0..20 {
            texts.push(format!("row number {i} says hello"));
        }
        for _ in 0..40 {
            texts.push("buy cheap pills now".to_string());
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let labels = vec![0; refs.len()];
        let (s, summary) = fit("DUP003", &refs, &labels, "");
        let flagged = s.reason.iter().filter(|r| r.is_some()).count();
        assert_eq!(flagged, 40, "{summary}");
        // natural heavy tail (sizes 2, 3, 4, 10): nothing flagged
        let sizes: Vec<usize> = std::iter::repeat_n(2, 200)
            .chain(std::iter::repeat_n(3, 60))
            .chain([4, 4, 4, 4, 10, 12, 30])
            .collect();
        assert_eq!(amplification(&sizes, 0.01, 5), None);
        let mut with = sizes.clone();
        with.push(500);
        assert_eq!(amplification(&with, 0.01, 5), Some(500));
    }
}
