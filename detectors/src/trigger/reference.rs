//! TRIG001 with a trusted corpus (`scan --reference`): a named trigger whose label association
//! the trusted corpus already shows is a natural cue of the domain, not a trigger.
//!
//! For a trigger t with target label y, found in s_N rows of the new batch of which a_N carry y,
//! the trusted corpus gives s_T rows containing t (its distinct texts, each with its row counts,
//! tokenised like the batch) of which a_T carry y; π_y is the trusted share of y. With the
//! level α = `reference_alpha` / (triggers named), the trigger is withdrawn when both hold:
//!
//! 1. the trusted corpus shows the association: P(Binomial(s_T, π_y) ≥ a_T) ≤ α (a window the
//!    trusted corpus lacks, or holds without a lean towards y, shows nothing);
//! 2. the batch's association is no stronger than the trusted one: P(Binomial(s_N, p₀) ≥ a_N)
//!    > α with p₀ = (a_T + 1) / (s_T + 2).
//!
//! Withdrawn triggers are listed in the summary as `explained_by_reference` with their counts.
//! A planted trigger absent from the trusted corpus, or present there without the association,
//! stays, whatever its target.

use super::decide::Trigger;
use super::stats::ln_binomial_upper;
use super::tokenise::Vocab;
use crate::duplicates::reference::ReferenceState;
use rayon::prelude::*;
use serde_json::json;

/// Whether `needle` occurs contiguously in `hay`.
fn contains(hay: &[u32], needle: &[u32]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Split `triggers` into those the trusted corpus does not explain, and the reports of those it
/// does.
pub(super) fn filter(
    triggers: Vec<Trigger>,
    state: &ReferenceState,
    vocab: &Vocab,
    class_names: &[String],
    alpha: f64,
) -> (Vec<Trigger>, Vec<serde_json::Value>) {
    if triggers.is_empty() || alpha <= 0.0 {
        return (triggers, Vec::new());
    }
    let entries = state.entries();
    let encoded: Vec<Vec<u32>> = entries.par_iter().map(|e| vocab.encode(&e.text)).collect();
    let total = state.rows().max(1) as f64;
    let level = (alpha / triggers.len() as f64).ln();
    let mut kept = Vec::with_capacity(triggers.len());
    let mut explained = Vec::new();
    for t in triggers {
        let name = class_names
            .get(t.target)
            .cloned()
            .unwrap_or_else(|| t.target.to_string());
        let label = state.labels().binary_search(&name).ok().map(|l| l as u32);
        let rows_of = |e: &crate::duplicates::reference::Entry| -> u64 {
            label.map_or(0, |l| {
                e.counts.iter().filter(|c| c.0 == l).map(|c| c.1).sum()
            })
        };
        let class_share = state.label_rows(&name) as f64 / total;
        let (mut s_t, mut a_t) = (0u64, 0u64);
        for (e, seq) in entries.iter().zip(&encoded) {
            if contains(seq, t.span()) {
                s_t += e.rows();
                a_t += rows_of(e);
            }
        }
        let ln_p_trusted = ln_binomial_upper(a_t, s_t, class_share.clamp(0.0, 1.0));
        let p0 = (a_t as f64 + 1.0) / (s_t as f64 + 2.0);
        let s_n = u64::from(t.support);
        let a_n = (t.purity * s_n as f64).round() as u64;
        let ln_p = ln_binomial_upper(a_n, s_n, p0);
        if ln_p_trusted > level || ln_p <= level {
            kept.push(t);
        } else {
            explained.push(json!({
                "trigger": t.text,
                "target": name,
                "support": s_n,
                "target_rows": a_n,
                "trusted_support": s_t,
                "trusted_target_rows": a_t,
                "trusted_class_share": class_share,
                "p_value_trusted_association": ln_p_trusted.exp(),
                "p_value_stronger_than_trusted": ln_p.exp(),
            }));
        }
    }
    (kept, explained)
}
