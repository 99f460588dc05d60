//! REF001 / REF002: a new batch judged against the trusted corpus it is about to join.
//!
//! `poisongate fit TRUSTED --state F` turns the curated corpus into a [`ReferenceState`] (each
//! distinct normalised text once, with its label counts: `state`); `poisongate scan NEW
//! --reference F` runs these two detectors on the new batch beside the others (`judge`). Both
//! read the same duplicate core as DUP001–DUP003, built over the trusted texts and the new rows
//! together, and flag new rows only: the trusted corpus is the baseline, never judged.

mod judge;
mod state;
#[cfg(test)]
mod tests;

pub use state::{normalization_json, state_header, Entry, ReferenceState};

use super::{configure, DupParams, Kind};
use crate::{Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError};
use std::sync::Arc;

static META_REF001: Meta = Meta {
    code: "REF001",
    name: "reference-label-conflict",
    summary: "New rows that copy a trusted row (exactly or nearly) under another label",
    docs: r#"# REF001 reference-label-conflict

Runs only when the scan is given a trusted corpus: `poisongate fit TRUSTED --state trusted.pgstate`,
then `poisongate scan NEW --reference trusted.pgstate`.

## What it detects
Label flips of the corpus's own rows: a new row whose text is a trusted row's text (after
normalisation), or a near copy of it (a word changed, added or removed, a few words replaced, or
5-gram MinHash Jaccard at the threshold), with a label the trusted corpus never gives that text.
Inside one batch a flipped copy and its original are a tie that only the population can break
(DUP001, DUP002); against the trusted corpus there is no tie: the trusted label is the reference,
and the new row is the one out of place.

## Method
The state holds every distinct normalised text of the trusted corpus with its label counts
(module `state`). The duplicate core of DUP002 (normalisation, xxh3-128 exact groups, MinHash
LSH, one-word edits and word substitutions found exactly, the contrast test) is built over the
trusted texts followed by the new rows, each trusted text carrying its majority label. A new row
is flagged when
1. its exact group holds a trusted text and none of that text's trusted rows has the new row's
   label: `REF001:trusted_row=<first trusted row> similarity=1.00 measure=exact
   labels=<this>:<trusted> trusted_counts=<label>x<rows>,...`; or
2. it has no trusted text in its exact group, is near (a verified pair, not a chain) to at least
   one trusted text, and no trusted text it is near to has its label: the reason names the most
   similar, with `similarity=<s> measure=<minhash_jaccard|word_edit|word_substitution>
   threshold=<t>`.
A new row whose text the trusted corpus also gives its label is never flagged, whatever else it
is near to. Pairs the contrast test explains (an edited word that carries the label change, or
words only added: see DUP002) are removed first, so "it 's funny ." against a trusted "it 's
drab ." is a contrast, not a flip. Score: max(1, similarity / threshold) when flagged, else 0.
Flips among the new rows themselves are DUP001's and DUP002's.

The summary also reports the class statistics' drift (`label_drift`, no row is flagged for
it): per label the trusted and the new share and the two-sided binomial p of the batch's count
under the trusted share; labels with p ≤ 0.01 / (labels) are listed as `drifted` (a batch
relabelled towards one class, or drawn from another population). When the trusted corpus was
fitted with embeddings (`fit --embeddings`, per-label moments kept as exact sums) and the scan
has embeddings of the same dimension, `embedding_drift` gives per class Hotelling's T² of the
batch's class mean against the trusted class mean and covariance (pseudo-inverse over the
eigenvalues above 1e-9 of the largest) with its χ² p-value (Wilson–Hilferty), and the classes
with p ≤ 0.01 / (classes).

## Parameters
Those of DUP002 (`nfkc`, `case_fold`, `collapse_whitespace`, `threshold`, `shingle_words`,
`word_edit`, `edit_min_words`, `contrast_odds`, `num_perm`, `seed`, `fp_weight`,
`max_bucket`), with the same defaults; `direction_alpha`, `embedding_*` and the kNN options
are accepted and unused (the trusted label gives the direction; the state holds no
embeddings). The normalisation must be the one the state was made with (its header says; a
mismatch is an error, not a silent re-keying).

Measured (`scripts/reference_eval.py`, docs/evaluation.md "Gating against a trusted corpus"):
the six clean corpora split 80/20 at random (seeds 1–3), the new 20 % given 40 flipped copies
of trusted rows verbatim and 40 each with 1, 2 and 3 words replaced, and one trusted row 50
times. REF001 and REF002 together: recall 0.986–1.000 of the 210 added rows in every cell;
the new part's own rows flagged at most 0.07 % on sst2, 0.09 % on sms-spam, 0.17 % on ag-news
and tweeteval-hate, 0.31 % on tweeteval-emotion (natural label noise: texts the trusted part
holds under another label), 0 on tweeteval-irony. The misses are one-word edits whose new
word carries the new label (the contrast test's known limit).

## Known false positives
A text the trusted corpus labels one way and the new batch, rightly, another (a corrected
label): the reference is trusted by definition, so the correction is held for a person to
confirm. Natural near pairs with opposite labels whose edited words carry little label evidence
(as DUP002).

## References
Katherine Lee et al. Deduplicating Training Data Makes Language Models Better. ACL 2022.
Andrei Z. Broder. On the resemblance and containment of documents, 1997. Udi Manber, Sun Wu.
Fast text searching allowing errors. CACM 35(10), 1992.
"#,
    version: 3,
};

static META_REF002: Meta = Meta {
    code: "REF002",
    name: "reference-amplification",
    summary: "Content the new batch copies far more often than the trusted corpus predicts",
    docs: r#"# REF002 reference-amplification

Runs only when the scan is given a trusted corpus (`scan --reference`, see REF001).

## What it detects
A row copied many times into the new batch to amplify its weight in training: a trusted row
repeated fifty times, or a new text stuffed in. DUP003 judges a batch against its own
duplicate baseline, which fails where natural duplicates are heavy-tailed (SMS: the same short
message sent by many people); here the baseline is the trusted corpus, where that natural
redundancy already shows.

## Method
Near-duplicate clusters as in DUP003 (exact groups joined by 5-gram MinHash at the threshold;
`word_edit` off by default) over the trusted texts and the new rows together. If the new batch
were drawn like the trusted corpus, a cluster's c = t + m rows (t trusted, with their
multiplicities; m new) would fall into the new batch independently with probability
p = n_new / (n_new + n_trusted), so m ~ Binomial(c, p). A cluster with m ≥ `min_copies` new
rows is amplified when P(Binomial(c, p) ≥ m) ≤ `alpha` / M, M the number of clusters holding a
new row and at least two rows (a Bonferroni family); every new row of it is flagged:
`REF002:trusted_row=<first trusted row, or none> cluster_rows=<c> trusted=<t> new=<m>
expected_new=<c·p> p_value=<P> family=<M> alpha=<alpha>`. Score ln(P·M) / ln(`alpha`) (≥ 1
exactly when flagged; capped at 0.999 otherwise; 0 for rows in no duplicate cluster).

## Parameters
- Those of DUP003 (`nfkc`, `case_fold`, `collapse_whitespace`, `threshold`, `shingle_words`,
  `word_edit` (default false), `edit_min_words`, `num_perm`, `seed`, `fp_weight`,
  `max_bucket`; `contrast_odds` and the embedding and kNN options accepted and unused).
- `alpha` (default 0.01): family-wise level.
- `min_copies` (default 5): fewest new rows in a cluster for it to be flagged.

Measured in the same cells: the 50 copies of one trusted row are found in every one, also on
sms-spam, whose own duplicates hide them from DUP003; one cell (sms-spam seed 3) also flags
the batch's single natural copy of that row.

## Known false positives
A new batch from another time or source than the trusted corpus: a text that is popular now
and absent then (a viral message, a new template) is copied beyond what the trusted corpus
predicts. The summary lists each flagged cluster with its counts.

## References
Nicholas Carlini et al. Poisoning Web-Scale Training Datasets is Practical. IEEE S&P 2024.
Carlo E. Bonferroni, Teoria statistica delle classi e calcolo delle probabilità, 1936.
"#,
    version: 1,
};

/// REF001: new rows that copy a trusted row under another label. See its [`Meta::docs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceConflict;

/// REF002: new rows copied beyond the trusted corpus's baseline. See its [`Meta::docs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceAmplification;

/// A reference detector with checked parameters and (in a scan) the trusted state.
#[derive(Debug, Clone)]
pub struct ReferenceConfigured {
    code: &'static str,
    params: DupParams,
    state: Option<Arc<ReferenceState>>,
}

impl ReferenceConfigured {
    /// The text normalisation the state must have been made with.
    pub fn normalization(&self) -> super::Normalization {
        self.params.norm
    }
}

impl Detector for ReferenceConflict {
    fn meta(&self) -> &'static Meta {
        &META_REF001
    }
    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(reference_configure("REF001", params, None)?))
    }
}

impl Detector for ReferenceAmplification {
    fn meta(&self) -> &'static Meta {
        &META_REF002
    }
    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(reference_configure("REF002", params, None)?))
    }
}

/// Configure REF001 or REF002 (`code`) from `params`, with the trusted `state` a scan loaded.
pub fn reference_configure(
    code: &'static str,
    params: &toml::Table,
    state: Option<Arc<ReferenceState>>,
) -> Result<ReferenceConfigured, ParamError> {
    let kind = if code == "REF002" {
        Kind::Amplification
    } else {
        Kind::NearConflict
    };
    Ok(ReferenceConfigured {
        code,
        params: configure(kind, code, params)?,
        state,
    })
}

impl Configured for ReferenceConfigured {
    fn needs(&self) -> Needs {
        Needs {
            text: true,
            labels: self.code == "REF001",
            embeddings: false,
            responses: false,
        }
    }

    fn params(&self) -> serde_json::Value {
        let mut v = self.params.params();
        if let Some(o) = v.as_object_mut() {
            // what the reference detectors do not use is not echoed as if it mattered
            for k in ["direction_alpha", "noise_share", "noise_alpha"] {
                o.remove(k);
            }
            o.retain(|k, _| !k.starts_with("embedding_") && !k.starts_with("knn"));
        }
        v
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let code = self.code;
        let state = self.state.as_deref().ok_or_else(|| DetectError::Data {
            code,
            problem: "needs a trusted corpus: scan --reference FILE (written by `poisongate fit`)"
                .to_string(),
        })?;
        if state.normalization() != self.params.norm {
            return Err(DetectError::Data {
                code,
                problem: format!(
                    "the reference was made with normalisation {}, this scan uses {}",
                    normalization_json(&state.normalization()),
                    normalization_json(&self.params.norm)
                ),
            });
        }
        let texts = data.require_texts(code)?;
        if texts.len() != data.n_rows {
            return Err(DetectError::Data {
                code,
                problem: "column lengths differ from the row count".to_string(),
            });
        }
        let fit = if code == "REF001" {
            let labels = data.require_labels(code)?;
            if labels.len() != data.n_rows {
                return Err(DetectError::Data {
                    code,
                    problem: "column lengths differ from the row count".to_string(),
                });
            }
            judge::conflicts(
                state,
                texts,
                labels,
                data.class_names,
                data.embeddings,
                &self.params,
            )
        } else {
            judge::amplified(state, texts, &self.params)
        };
        Ok(Box::new(fit))
    }
}
