//! Step 4, for data larger than `max_rows`: the triggers are found on an evenly spaced sample
//! of the rows (steps 1-3), then every row of the data is tested against them, its
//! neighbours taken from the sample.
//!
//! A row of the full data is flagged by a trigger when its prompt holds every n-gram of the
//! trigger, its response shows the trigger's behaviour (has, or lacks, the response
//! property), and its own nearest prompts among the sample rows without the trigger (the
//! trigger's tokens taken out) predict the opposite, as the row test of step 3 does. Cost:
//! one pass over the rows, and one sample-sized similarity per row holding a trigger.

use super::clusters::unit_rows;
use super::clusters::ClusterProperties;
use super::decide::{smoothed, Settings, Trigger};
use super::features::{tokens, Property, PropertyKind, Side, Vocab};
use super::neighbours::{top_k, Index};
use crate::{DatasetView, DetectError};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// The prompts and responses of a fit and, above `max_rows`, the evenly spaced sample the
/// fit learns from.
pub(super) struct FitRows<'a> {
    /// Every row's prompt.
    pub prompts: &'a [String],
    /// Every row's response.
    pub responses: &'a [String],
    /// Every row's rejected answer (preference rows).
    pub rejected: Option<&'a [String]>,
    /// The sample's prompts and responses, when the data has more than `max_rows` rows.
    pub sample: Option<(Vec<String>, Vec<String>)>,
    /// The sample's rejected answers.
    pub sample_rejected: Option<Vec<String>>,
    /// The rows of the sample, when there is one.
    pub picked: Option<Vec<usize>>,
    /// Every row's response embedding, when the scan has them.
    pub response_embeddings: Option<ArrayView2<'a, f32>>,
    /// Every row's prompt embedding, when the scan has them.
    pub prompt_embeddings: Option<ArrayView2<'a, f32>>,
}

impl<'a> FitRows<'a> {
    /// Read a view's prompts and responses (detector `code` needs both).
    pub fn new(
        data: &DatasetView<'a>,
        code: &'static str,
        max_rows: usize,
    ) -> Result<FitRows<'a>, DetectError> {
        let prompts = data.require_texts(code)?;
        let responses = data.require_responses(code)?;
        if prompts.len() != responses.len() {
            return Err(DetectError::Data {
                code,
                problem: format!(
                    "{} prompts but {} responses",
                    prompts.len(),
                    responses.len()
                ),
            });
        }
        let rejected = data.rejected.filter(|r| r.len() == prompts.len());
        let picked = evenly_spaced(prompts.len(), max_rows);
        let sampled = picked.len() < prompts.len();
        let sample = sampled.then(|| {
            picked
                .iter()
                .map(|&i| (prompts[i].clone(), responses[i].clone()))
                .unzip()
        });
        let sample_rejected = rejected
            .filter(|_| sampled)
            .map(|r| picked.iter().map(|&i| r[i].clone()).collect());
        let response_embeddings = match data.response_embeddings {
            Some(m) if m.nrows() != prompts.len() => {
                return Err(DetectError::Data {
                    code,
                    problem: format!(
                        "{} response embeddings for {} rows",
                        m.nrows(),
                        prompts.len()
                    ),
                })
            }
            other => other,
        };
        let prompt_embeddings = data.embeddings.filter(|m| m.nrows() == prompts.len());
        Ok(FitRows {
            prompts,
            responses,
            rejected,
            sample,
            sample_rejected,
            picked: sampled.then_some(picked),
            response_embeddings,
            prompt_embeddings,
        })
    }

    /// The rows the fit learns from: the sample, or every row (prompts, responses, rejected
    /// answers).
    pub fn learnt(&self) -> (&[String], &[String], Option<&[String]>) {
        match &self.sample {
            Some((p, r)) => (p, r, self.sample_rejected.as_deref()),
            None => (self.prompts, self.responses, self.rejected),
        }
    }

    /// Unit-length response embeddings of the rows learnt (the sample's, or every row's).
    pub fn learnt_response_units(&self) -> Option<Array2<f32>> {
        self.learnt_units(self.response_embeddings?)
    }

    /// Unit-length prompt embeddings of the rows learnt.
    pub fn learnt_prompt_units(&self) -> Option<Array2<f32>> {
        self.learnt_units(self.prompt_embeddings?)
    }

    fn learnt_units(&self, m: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
        Some(match &self.picked {
            Some(p) => unit_rows(m.select(Axis(0), p).view()),
            None => unit_rows(m),
        })
    }

    /// The unit-length response embedding of row `i` of the data.
    pub fn response_unit(&self, i: usize) -> Option<Array1<f32>> {
        let m = self.response_embeddings?;
        let r = m.row(i);
        let n = r.dot(&r).sqrt();
        Some(if n > 0.0 {
            r.mapv(|x| x / n)
        } else {
            r.to_owned()
        })
    }

    /// Rows of the sample, when there is one.
    pub fn sample_rows(&self) -> Option<usize> {
        self.sample.as_ref().map(|(p, _)| p.len())
    }
}

/// `m` row indices evenly spaced over `0..n` (all of them when `m ≥ n`).
pub(super) fn evenly_spaced(n: usize, m: usize) -> Vec<usize> {
    if m >= n {
        return (0..n).collect();
    }
    (0..m).map(|k| k * n / m).collect()
}

/// Whether `seq` holds `gram` as a contiguous run.
fn holds(seq: &[u32], gram: &[u32]) -> bool {
    !gram.is_empty() && seq.windows(gram.len()).any(|w| w == gram)
}

/// Prompt tokens as ids of the sample's vocabulary; `None` for a token it does not know.
fn ids(text: &str, vocab: &Vocab) -> Vec<Option<u32>> {
    tokens(text)
        .into_iter()
        .map(|w| vocab.ids.get(&w).copied())
        .collect()
}

/// Every row of the data flagged by `trigger`, found on the sample `fr.learnt()`, whose prompts
/// are encoded as `sample_rows` with `vocab` and indexed by `index`. A paraphrase cluster's
/// rows are read from `groups` (the clusters and the sample rows' properties).
#[allow(clippy::too_many_arguments)]
pub(super) fn rows_of_trigger(
    trigger: &Trigger,
    props: &[Property],
    vocab: &Vocab,
    sample_rows: &[Vec<u32>],
    index: &Index,
    fr: &FitRows<'_>,
    s: &Settings,
    groups: Option<(&ClusterProperties, &[Vec<u32>])>,
) -> Vec<u32> {
    let p = &props[trigger.best.property];
    let pid = trigger.best.property as u32;
    // a paraphrase cluster is decided on the response embeddings: the sample's members, and
    // a row of the data by the nearest centre
    let cluster = match (p.kind, groups) {
        (PropertyKind::Cluster, Some(g)) => Some(g),
        (PropertyKind::Cluster, None) => return Vec::new(),
        _ => None,
    };
    let row_shows = |i: usize, answer: &str| match cluster {
        Some((c, _)) => fr
            .response_unit(i)
            .is_some_and(|v| c.property(v.view()) == Some(pid)),
        None => p.shown_by(&tokens(answer)),
    };
    // the answers the property looks at, in the sample and in the data
    let (_, s_resp, s_rej) = fr.learnt();
    let (sample_answers, answers) = match (p.side, s_rej, fr.rejected) {
        (Side::Rejected, Some(a), Some(b)) => (a, b),
        (Side::Rejected, _, _) => return Vec::new(),
        (Side::Response, _, _) => (s_resp, fr.responses),
    };
    let prompts = fr.prompts;
    let grams: Vec<Vec<u32>> = trigger
        .names
        .iter()
        .map(|g| {
            g.split(' ')
                .filter_map(|w| vocab.ids.get(w).copied())
                .collect()
        })
        .collect();
    let mut removed: Vec<u32> = grams.iter().flatten().copied().collect();
    removed.sort_unstable();
    removed.dedup();
    let has_trigger = |seq: &[u32]| grams.iter().all(|g| holds(seq, g));
    let absent = trigger.best.absent;
    // the sample rows without the trigger: the neighbour pool, and the property's rate there
    let outside: Vec<bool> = sample_rows.iter().map(|r| !has_trigger(r)).collect();
    let sample_has: Vec<bool> = match cluster {
        Some((_, of_row)) => of_row
            .iter()
            .map(|ps| ps.binary_search(&pid).is_ok())
            .collect(),
        None => sample_answers
            .iter()
            .map(|a| p.shown_by(&tokens(a)))
            .collect(),
    };
    let n_out = outside.iter().filter(|&&o| o).count();
    let prior = if n_out == 0 {
        0.0
    } else {
        outside
            .iter()
            .zip(&sample_has)
            .filter(|(&o, &h)| o && h)
            .count() as f64
            / n_out as f64
    };
    (0..prompts.len())
        .into_par_iter()
        .filter_map(|i| {
            let known = ids(&prompts[i], vocab);
            // an n-gram must be a run of known tokens, so unknown ones break runs
            let seq: Vec<u32> = known.iter().map(|t| t.unwrap_or(u32::MAX)).collect();
            if !has_trigger(&seq) {
                return None;
            }
            if row_shows(i, &answers[i]) == absent {
                return None;
            }
            let v = index.vector(&known.iter().flatten().copied().collect::<Vec<_>>());
            let sims = index.similarities_to(&v, &removed);
            let nb = top_k(&sims, s.neighbours, |j| outside[j]);
            let c = nb.iter().filter(|&&j| sample_has[j as usize]).count() as f64;
            let ph = smoothed(c, nb.len(), s.neighbours, prior);
            let pd = if absent { 1.0 - ph } else { ph };
            (pd < s.row_probability).then_some(i as u32)
        })
        .collect()
}
