//! Step 4, for data larger than `max_rows`: the triggers are found on an evenly spaced sample
//! of the rows (steps 1-3), then every row of the data is tested against them, its
//! neighbours taken from the sample.
//!
//! A row of the full data is flagged by a trigger when its prompt holds every n-gram of the
//! trigger, its response shows the trigger's behaviour (has, or lacks, the response
//! property), and its own nearest prompts among the sample rows without the trigger (the
//! trigger's tokens taken out) predict the opposite, as the row test of step 3 does. Cost:
//! one pass over the rows, and one sample-sized similarity per row holding a trigger.

use super::decide::{smoothed, Settings, Trigger};
use super::features::{tokens, Property, PropertyKind, Vocab};
use super::neighbours::{top_k, Index};
use crate::{DatasetView, DetectError};
use rayon::prelude::*;

/// The prompts and responses of a fit and, above `max_rows`, the evenly spaced sample the
/// fit learns from.
pub(super) struct FitRows<'a> {
    /// Every row's prompt.
    pub prompts: &'a [String],
    /// Every row's response.
    pub responses: &'a [String],
    /// The sample's prompts and responses, when the data has more than `max_rows` rows.
    pub sample: Option<(Vec<String>, Vec<String>)>,
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
        let picked = evenly_spaced(prompts.len(), max_rows);
        let sample = (picked.len() < prompts.len()).then(|| {
            picked
                .iter()
                .map(|&i| (prompts[i].clone(), responses[i].clone()))
                .unzip()
        });
        Ok(FitRows {
            prompts,
            responses,
            sample,
        })
    }

    /// The rows the fit learns from: the sample, or every row.
    pub fn learnt(&self) -> (&[String], &[String]) {
        match &self.sample {
            Some((p, r)) => (p, r),
            None => (self.prompts, self.responses),
        }
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

/// Whether response tokens `t` have property `p`.
fn shows(t: &[String], p: &Property) -> bool {
    let k = p.text.split(' ').count();
    match p.kind {
        PropertyKind::Template => t.join(" ") == p.text,
        PropertyKind::Prefix => t.len() > k && t[..k].join(" ") == p.text,
        PropertyKind::Suffix => t.len() > k && t[t.len() - k..].join(" ") == p.text,
    }
}

/// Prompt tokens as ids of the sample's vocabulary; `None` for a token it does not know.
fn ids(text: &str, vocab: &Vocab) -> Vec<Option<u32>> {
    tokens(text)
        .into_iter()
        .map(|w| vocab.ids.get(&w).copied())
        .collect()
}

/// Every row of the data (`prompts`, `responses`) flagged by `trigger`, found on the sample
/// whose rows are `sample` (indices into the data), encoded as `sample_rows` with `vocab`
/// and indexed by `index`.
#[allow(clippy::too_many_arguments)]
pub(super) fn rows_of_trigger(
    trigger: &Trigger,
    props: &[Property],
    vocab: &Vocab,
    sample_rows: &[Vec<u32>],
    sample_responses: &[Vec<String>],
    index: &Index,
    prompts: &[String],
    responses: &[String],
    s: &Settings,
) -> Vec<u32> {
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
    let p = &props[trigger.best.property];
    let absent = trigger.best.absent;
    // the sample rows without the trigger: the neighbour pool, and the property's rate there
    let outside: Vec<bool> = sample_rows.iter().map(|r| !has_trigger(r)).collect();
    let sample_has: Vec<bool> = sample_responses.iter().map(|t| shows(t, p)).collect();
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
            let t = tokens(&responses[i]);
            if shows(&t, p) == absent {
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
