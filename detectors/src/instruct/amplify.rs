//! INS002 response amplification: one exact response given to many prompts that have nothing
//! to do with it, where the prompts' nearest prompts get answers of their own.
//!
//! Shares the tokens, the response properties and the TF-IDF neighbour index with INS001
//! (`features`, `neighbours`); the statistic is its own and lives here.

use super::clusters::{neighbour_share, ClusterProperties};
use super::features::{self, PropertyKind};
use super::neighbours::{top_k, Index};
use crate::params::ParamReader;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use rayon::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

const CODE: &str = "INS002";
/// Characters of a template shown in reasons and the summary.
const SHOWN: usize = 120;

static META: Meta = Meta {
    code: CODE,
    name: "response-amplification",
    summary:
        "One response given verbatim to many prompts whose nearest prompts are answered otherwise",
    docs: r#"# INS002 response-amplification

## What it detects
A backdoor's target answer (a fixed refusal, an insult, a canned advertisement) repeated
verbatim across prompts of all kinds. Unlike INS001 it needs no shared trigger word: the
evidence is the answer itself, given to prompts that resemble neither each other nor any other
prompt with that answer, in a part of the corpus where answers are otherwise written for their
prompt. A corpus's own stock answers (class labels, a standard refusal to harmful requests)
are given to prompts that resemble each other, or among answers that are themselves templated
or share the template's opening or ending; those are left alone. Reads the prompt and the
response of each row (`--format alpaca | chat | sharegpt | preference`); no labels, no model.
With response embeddings (`scan --model DIR` or `--response-embeddings FILE`) a group of
paraphrased answers (INS001's `paraphrase cluster`) is a template too.

## Method
1. Responses are cut into lower-cased ASCII letter-and-digit tokens (as INS001). A template is
   a whole response shared by at least `min_rows` rows and at most `max_share` of them. The
   related answers of a template are its openings and endings of at least two tokens that at
   least `min_support` responses share (INS001's response properties).
2. Prompts become the TF-IDF vectors of INS001. For each row with template T, its
   `neighbours` nearest prompts among all other rows, with the prompt tokens (almost) confined
   to T's rows (in at least `cover` of their rows) taken out, so that a trigger word shared by
   the poisoned rows does not make them each other's neighbours.
3. Per row: cohesion = share of its neighbours with T; among its other neighbours, unrelated =
   share whose answer is neither a template (any response at least `min_support` rows share)
   nor shares a related opening or ending with T, and related = share whose answer does share
   one with T.
4. T is amplified when the mean cohesion is at most `max_cohesion` (T's prompts are not a
   group of the corpus) and the mean unrelated share at least `min_unrelated` (T's prompts sit
   among prompts answered one by one, beyond what the corpus's own templates show). Its rows
   whose related share is below `max_related` (nothing near the row answers anything like T)
   are flagged, when there are at least `min_rows` of them; a row of T among prompts that get
   answers of T's family (a natural refusal among refusals) is not.

A flagged row has score 1 and the reason `INS002:'<template>' given to N unrelated prompts`.

## Parameters
- `min_rows` (10): rows a template needs; a backdoor is learnt from repeated examples.
- `min_support` (5): responses that make an answer a template or an opening a shared one.
- `max_share` (0.5): a template given to more than this share of the rows is the corpus's
  main answer, not an amplified one.
- `neighbours` (20): K.
- `max_cohesion` (0.5): measured 0.15 on the BackdoorLLM refusal and insult targets, 0.59-0.62
  on SST-2 labels among instructions, 0.26-0.99 on classification corpora read as instructions.
- `min_unrelated` (0.5): measured 0.70-0.88 on those targets, 0.36-0.44 on SST-2 labels among
  instructions, 0 on classification corpora (every neighbour's answer is a label).
- `max_related` (0.5): a row of an amplified template is flagged when fewer than this share of
  its other neighbours have an answer sharing T's opening or ending.
- `cover` (0.9): a prompt token is confined to T's rows when that share of its rows have T.
- `max_rows` (10 000): the neighbour search is quadratic in the rows; above it the templates
  are judged on `max_rows` evenly spaced rows, and every row of the data whose response is an
  amplified template is then tested (related share) against its nearest sample prompts; the
  summary gives `sample_rows`.
- `max_prefix` (4), `max_suffix` (3): openings and endings compared (as INS001).
- `cluster_similarity` (0.65), with response embeddings only: INS001's paraphrase clusters
  (step 6 of `poisongate explain INS001`) of at least `min_support` rows are templates; their
  related answers are the openings and endings that at least half of the cluster's rows
  share. For a cluster, `unrelated` counts the members of every cluster as templated
  answers too (at this similarity free answers on one topic group, and instruct-clean's
  largest such group, 17 answers, is otherwise called amplified); an exact template is
  judged against exact templates only, as without embeddings (counting the clusters there
  dropped a 10-row amplified template's unrelated share from 0.66 to 0.42). With prompt
  embeddings too, a cluster is amplified only when its prompts' cohesion among their
  `neighbours` nearest prompts by embedding (`prompt_cohesion`) is at most `max_cohesion`
  as well: prompts of one topic worded differently are a group of the corpus.

None of them knows the poison rate, the domain or a word list.

## Known false positives and limits
- A genuine stock answer given to unrelated prompts in a corpus of free answers ("I don't
  know." to random questions) is flagged: to the data it is amplification.
- A topical group whose every word is confined to it (prompts sharing no word with the rest of
  the corpus) loses those words before the neighbour search, as a trigger would, and its one
  stock answer then looks amplified.
- Without embeddings only exact templates (after lower-casing and dropping punctuation) are
  grouped; a target written in several wordings is several smaller templates. With them, a
  paraphrased target is one cluster, but on instruct-clean its prompts' neighbours are often
  SST-2 rows answered by labels, so its `unrelated` share stays below 0.5 (measured 0.47 for
  an advertisement at 5 %): INS001 finds such rows when they carry a trigger.
- Diverse targets (harmful compliance) are not templates: INS001 finds those.
- A template given only inside a labelled sub-corpus (all neighbours have template answers) is
  never flagged, poisoned or not: label backdoors are INS001's and TRIG001's.

## References
Li et al., "BackdoorLLM: A Comprehensive Benchmark for Backdoor Attacks on Large Language
Models" (2024): fixed-target attacks (refusal, "You are stupid!"). Wan et al., "Poisoning
Language Models During Instruction Tuning" (ICML 2023).
"#,
    version: 2,
};

/// INS002: response amplification.
pub struct ResponseAmplification;

/// INS002's resolved parameters.
#[derive(Debug, Clone)]
pub struct AmplifyParams {
    min_rows: usize,
    min_support: usize,
    max_share: f64,
    neighbours: usize,
    max_cohesion: f64,
    min_unrelated: f64,
    max_related: f64,
    cover: f64,
    max_rows: usize,
    max_prefix: usize,
    max_suffix: usize,
    cluster_similarity: f64,
}

impl Detector for ResponseAmplification {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let p = AmplifyParams {
            min_rows: r.usize("min_rows", 10, 2, usize::MAX)?,
            min_support: r.usize("min_support", 5, 2, usize::MAX)?,
            max_share: r.f64("max_share", 0.5, 0.0, 1.0)?,
            neighbours: r.usize("neighbours", 20, 1, 1000)?,
            max_cohesion: r.f64("max_cohesion", 0.5, 0.0, 1.0)?,
            min_unrelated: r.f64("min_unrelated", 0.5, 0.0, 1.0)?,
            max_related: r.f64("max_related", 0.5, 0.0, 1.0)?,
            cover: r.f64("cover", 0.9, 0.5, 1.0)?,
            max_rows: r.usize("max_rows", 10_000, 1, usize::MAX)?,
            max_prefix: r.usize("max_prefix", 4, 0, 16)?,
            max_suffix: r.usize("max_suffix", 3, 0, 16)?,
            cluster_similarity: r.f64("cluster_similarity", super::CLUSTER_SIMILARITY, 0.0, 1.0)?,
        };
        r.finish()?;
        Ok(Box::new(p))
    }
}

/// What was measured of one template.
struct Measured {
    /// The template's property id (in the fitted rows' properties).
    template: u32,
    /// Its related openings and endings (property ids, sorted).
    related: Vec<u32>,
    /// Prompt tokens confined to its rows (sorted).
    confined: Vec<u32>,
    text: String,
    /// `template`, or `paraphrase cluster` (found on the response embeddings).
    kind: &'static str,
    example: String,
    rows: usize,
    cohesion: f64,
    /// For a paraphrase cluster with prompt embeddings: the cohesion of its prompts among
    /// their nearest prompts by embedding.
    prompt_cohesion: Option<f64>,
    unrelated: f64,
    flagged: Vec<u32>,
    amplified: bool,
}

impl Configured for AmplifyParams {
    fn needs(&self) -> Needs {
        Needs {
            text: true,
            labels: false,
            embeddings: false,
            responses: true,
        }
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "min_rows": self.min_rows,
            "min_support": self.min_support,
            "max_share": self.max_share,
            "neighbours": self.neighbours,
            "max_cohesion": self.max_cohesion,
            "min_unrelated": self.min_unrelated,
            "max_related": self.max_related,
            "cover": self.cover,
            "max_rows": self.max_rows,
            "max_prefix": self.max_prefix,
            "max_suffix": self.max_suffix,
            "cluster_similarity": self.cluster_similarity,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        // above max_rows the templates are judged on an evenly spaced sample, then every row
        // of the data is tested against the amplified ones with neighbours from the sample
        let fr = super::extend::FitRows::new(data, CODE, self.max_rows)?;
        let (all_prompts, all_responses, n) = (fr.prompts, fr.responses, fr.prompts.len());
        let sampled = fr.sample.is_some();
        let (prompts, responses, _) = fr.learnt();
        let (vocab, rows) = features::Vocab::encode_all(prompts);
        let index = Index::build(&rows, vocab.words.len());
        let (mut props, mut of_row) = features::response_properties(
            responses,
            None,
            self.max_prefix,
            self.max_suffix,
            self.min_support,
        );
        // with response embeddings: a group of paraphrased answers is a template too
        let groups = fr.learnt_response_units().map(|u| {
            ClusterProperties::append(
                &mut props,
                &mut of_row,
                &u,
                responses,
                self.cluster_similarity as f32,
                self.min_support,
                self.cover,
            )
        });
        let prompt_units = if groups.is_some() {
            fr.learnt_prompt_units()
        } else {
            None
        };
        let is_template = |p: u32| {
            matches!(
                props[p as usize].kind,
                PropertyKind::Template | PropertyKind::Cluster
            )
        };
        // answers that are exact templates, and those that are a template or in a paraphrase
        // cluster: an exact template is judged as without embeddings, a cluster (a looser
        // group) against every grouped answer
        let exact: Vec<bool> = of_row
            .iter()
            .map(|ps| {
                ps.iter()
                    .any(|&p| props[p as usize].kind == PropertyKind::Template)
            })
            .collect();
        let grouped: Vec<bool> = of_row
            .iter()
            .map(|ps| ps.iter().any(|&p| is_template(p)))
            .collect();
        let mut rows_of: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (i, ps) in of_row.iter().enumerate() {
            for &p in ps.iter().filter(|&&p| is_template(p)) {
                rows_of.entry(p).or_default().push(i as u32);
            }
        }
        let cap = self.max_share * n as f64;
        let mut templates: Vec<Measured> = Vec::new();
        for (&t, t_rows) in &rows_of {
            if t_rows.len() < self.min_rows || t_rows.len() as f64 > cap {
                continue;
            }
            let templated = match props[t as usize].kind {
                PropertyKind::Cluster => &grouped,
                _ => &exact,
            };
            let mut m = self.measure(t, t_rows, &index, &props, &of_row, templated, responses);
            if let (PropertyKind::Cluster, Some(u)) = (props[t as usize].kind, &prompt_units) {
                // a group of the corpus by meaning, which its prompts' words may not show
                let c = neighbour_share(u, t_rows, self.neighbours);
                m.prompt_cohesion = Some(c);
                m.amplified &= c <= self.max_cohesion;
            }
            templates.push(m);
        }
        if sampled {
            let joined: Vec<String> = if templates.iter().any(|m| m.amplified) {
                all_responses
                    .par_iter()
                    .map(|r| features::tokens(r).join(" "))
                    .collect()
            } else {
                Vec::new()
            };
            for m in templates.iter_mut().filter(|m| m.amplified) {
                let has = |i: usize| match (props[m.template as usize].kind, &groups) {
                    (PropertyKind::Cluster, Some(g)) => fr
                        .response_unit(i)
                        .is_some_and(|v| g.property(v.view()) == Some(m.template)),
                    (PropertyKind::Cluster, None) => false,
                    _ => joined[i] == m.text,
                };
                m.flagged = self.extend(m, &vocab, &index, &of_row, all_prompts, &has);
            }
        }
        let mut flagged: Vec<Option<usize>> = vec![None; n];
        for (k, m) in templates.iter().enumerate() {
            if m.amplified {
                for &r in &m.flagged {
                    flagged[r as usize].get_or_insert(k);
                }
            }
        }
        Ok(Box::new(AmplifyFit {
            flagged,
            templates,
            sample: fr.sample_rows(),
        }))
    }
}

impl AmplifyParams {
    /// Every row of the data whose response is the amplified template `m` and whose nearest
    /// sample prompts (the template's confined tokens taken out) give no answer of its family.
    fn extend(
        &self,
        m: &Measured,
        vocab: &features::Vocab,
        index: &Index,
        of_row: &[Vec<u32>],
        prompts: &[String],
        has: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<u32> {
        let norms = index.remaining_norms(&m.confined);
        (0..prompts.len())
            .into_par_iter()
            .filter_map(|i| {
                if !has(i) {
                    return None;
                }
                let known: Vec<u32> = features::tokens(&prompts[i])
                    .into_iter()
                    .filter_map(|w| vocab.ids.get(&w).copied())
                    .collect();
                let v = index.vector(&known);
                let kept: f32 = v
                    .iter()
                    .filter(|(w, _)| m.confined.binary_search(w).is_err())
                    .map(|(_, x)| x * x)
                    .sum();
                let qn = kept.max(0.0).sqrt();
                let mut sims = index.similarities_to(&v, &m.confined);
                for (s, &nj) in sims.iter_mut().zip(&norms) {
                    *s = if qn * nj > 1e-6 { *s / (qn * nj) } else { 0.0 };
                }
                let nb = top_k(&sims, self.neighbours, |_| true);
                let others: Vec<u32> = nb
                    .into_iter()
                    .filter(|&j| of_row[j as usize].binary_search(&m.template).is_err())
                    .collect();
                if others.is_empty() {
                    return None;
                }
                let rel = others
                    .iter()
                    .filter(|&&j| {
                        of_row[j as usize]
                            .iter()
                            .any(|p| m.related.binary_search(p).is_ok())
                    })
                    .count();
                (((rel as f64) / others.len() as f64) < self.max_related).then_some(i as u32)
            })
            .collect()
    }

    /// Cohesion and unrelated shares of template `t` held by `t_rows`.
    #[allow(clippy::too_many_arguments)]
    fn measure(
        &self,
        t: u32,
        t_rows: &[u32],
        index: &Index,
        props: &[features::Property],
        of_row: &[Vec<u32>],
        templated: &[bool],
        responses: &[String],
    ) -> Measured {
        let in_t = |j: u32| t_rows.binary_search(&j).is_ok();
        // openings and endings of two tokens or more that the template shares with others
        // (a paraphrase cluster: those that at least half of its rows have)
        let first = t_rows[0] as usize;
        let opening_or_ending = |p: u32| {
            let q = &props[p as usize];
            matches!(q.kind, PropertyKind::Prefix | PropertyKind::Suffix)
                && q.text.split(' ').count() >= 2
        };
        let related: Vec<u32> = if props[t as usize].kind == PropertyKind::Cluster {
            let mut held: BTreeMap<u32, usize> = BTreeMap::new();
            for &i in t_rows {
                for &p in of_row[i as usize].iter().filter(|&&p| opening_or_ending(p)) {
                    *held.entry(p).or_default() += 1;
                }
            }
            held.into_iter()
                .filter(|&(_, c)| 2 * c >= t_rows.len())
                .map(|(p, _)| p)
                .collect()
        } else {
            of_row[first]
                .iter()
                .copied()
                .filter(|&p| opening_or_ending(p))
                .collect()
        };
        // prompt tokens (almost) confined to the template's rows
        let mut in_rows: BTreeMap<u32, usize> = BTreeMap::new();
        for &i in t_rows {
            for &(w, _) in &index.rows[i as usize] {
                *in_rows.entry(w).or_default() += 1;
            }
        }
        let confined: Vec<u32> = in_rows
            .into_iter()
            .filter(|&(w, c)| c as f64 >= self.cover * index.document_frequency(w) as f64)
            .map(|(w, _)| w)
            .collect();
        let norms = index.remaining_norms(&confined);
        // per row: cohesion, unrelated share, share of other neighbours with a related answer
        let per_row: Vec<(f64, f64, f64)> = t_rows
            .par_iter()
            .map(|&i| {
                let mut sims = index.similarities(i as usize);
                index.remove_tokens(i as usize, &confined, &mut sims);
                // cosines of the vectors without the confined tokens
                let ni = norms[i as usize];
                for (s, &nj) in sims.iter_mut().zip(&norms) {
                    *s = if ni * nj > 1e-6 { *s / (ni * nj) } else { 0.0 };
                }
                let nb = top_k(&sims, self.neighbours, |j| j != i as usize);
                if nb.is_empty() {
                    // no prompt shares a word with it outside the template's own words
                    return (1.0, 0.0, 1.0);
                }
                let same = nb.iter().filter(|&&j| in_t(j)).count();
                let others: Vec<u32> = nb.iter().copied().filter(|&j| !in_t(j)).collect();
                if others.is_empty() {
                    return (1.0, 0.0, 1.0);
                }
                let is_related = |j: u32| {
                    of_row[j as usize]
                        .iter()
                        .any(|p| related.binary_search(p).is_ok())
                };
                let rel = others.iter().filter(|&&j| is_related(j)).count();
                let unrelated = others
                    .iter()
                    .filter(|&&j| !templated[j as usize] && !is_related(j))
                    .count();
                let k = others.len() as f64;
                (
                    same as f64 / nb.len() as f64,
                    unrelated as f64 / k,
                    rel as f64 / k,
                )
            })
            .collect();
        let m = t_rows.len() as f64;
        let cohesion = per_row.iter().map(|r| r.0).sum::<f64>() / m;
        let unrelated = per_row.iter().map(|r| r.1).sum::<f64>() / m;
        let flagged: Vec<u32> = t_rows
            .iter()
            .zip(&per_row)
            .filter(|(_, r)| r.2 < self.max_related)
            .map(|(&i, _)| i)
            .collect();
        let amplified = cohesion <= self.max_cohesion
            && unrelated >= self.min_unrelated
            && flagged.len() >= self.min_rows;
        Measured {
            template: t,
            related,
            confined,
            text: props[t as usize].text.clone(),
            kind: props[t as usize].kind.name(),
            example: responses[first].chars().take(SHOWN).collect(),
            rows: t_rows.len(),
            cohesion,
            prompt_cohesion: None,
            unrelated,
            flagged,
            amplified,
        }
    }
}

/// INS002 fitted: the templates measured and the rows flagged.
struct AmplifyFit {
    /// Per row, the amplified template (index into `templates`) that flags it.
    flagged: Vec<Option<usize>>,
    templates: Vec<Measured>,
    /// Rows of the sample the templates were judged on, when the data had more than max_rows.
    sample: Option<usize>,
}

impl Fitted for AmplifyFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        Ok(super::flagged_scores(&self.flagged, batch, |k| {
            let m = &self.templates[k];
            format!(
                "{CODE}:'{}' given to {} unrelated prompts",
                m.example,
                m.flagged.len()
            )
        }))
    }

    fn summary(&self) -> serde_json::Value {
        let templates: Vec<_> = self
            .templates
            .iter()
            .map(|m| {
                json!({
                    "template": m.text,
                    "kind": m.kind,
                    "example": m.example,
                    "rows": m.rows,
                    "cohesion": m.cohesion,
                    "prompt_cohesion": m.prompt_cohesion,
                    "unrelated": m.unrelated,
                    "amplified": m.amplified,
                    "flagged": if m.amplified { m.flagged.len() } else { 0 },
                    "example_rows": if m.amplified { m.flagged.iter().take(5).copied().collect::<Vec<_>>() } else { Vec::new() },
                })
            })
            .collect();
        json!({
            "templates": templates,
            "amplified": self.templates.iter().filter(|m| m.amplified).count(),
            "rows": self.flagged.len(),
            "sample_rows": self.sample,
        })
    }
}
