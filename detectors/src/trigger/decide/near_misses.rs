//! TRIG001's near misses: the candidates with some evidence that were not named, the strongest
//! first, each with its tests' figures and why it abstained (for the report).

use super::super::tokenise::{FastMap, Vocab};
use super::super::TriggerParams;
use super::Candidate;
use serde_json::json;

/// The report's `near_misses`: at most `report_near_misses` candidates with evidence above 0
/// that are not triggers, by evidence, then support, then span.
pub(super) fn near_misses(
    p: &TriggerParams,
    cands: &[Candidate],
    trigger_of: &FastMap<Vec<u32>, usize>,
    vocab: &Vocab,
    class_names: &[String],
) -> Vec<serde_json::Value> {
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
    near
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
                "uniform_draw_z": c.foreign.map(|f| f.uniform_z),
                "foreign_z_if_relabelled": c.foreign.map(|f| f.relabelled_z),
                "abstained": c.abstain,
            })
        })
        .collect()
}
