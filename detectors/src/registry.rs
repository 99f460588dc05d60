//! The explicit registry of detectors, and selection by code prefix.

use crate::Detector;

/// Every detector poisongate knows, in code order. Adding a detector is one file and one line
/// here; `poisongate list` prints this slice.
pub static REGISTRY: &[&dyn Detector] = &[
    &crate::activation::ActivationClustering,
    &crate::duplicates::ExactDuplicateConflict,
    &crate::duplicates::NearDuplicateConflict,
    &crate::duplicates::DuplicateAmplification,
    &crate::instruct::PromptTriggerResponse,
    &crate::instruct::ResponseAmplification,
    &crate::label::LabelConsistency,
    &crate::duplicates::reference::ReferenceConflict,
    &crate::duplicates::reference::ReferenceAmplification,
    &crate::trigger::surge::ReferenceAssociation,
    &crate::spectral::SpectralSignature,
    &crate::spectre::RobustSpectral,
    &crate::trigger::TriggerTokens,
    // DEN001 (crate::density::DenseCluster) is deliberately not registered: at its defaults it
    // flags more than 1 % of clean data (templates and duplicates); see density.rs.
];

/// Registered detectors that run only when `--select` names them: they work and are measured,
/// but do not yet meet their quality bar (docs/evaluation.md), so a default scan leaves them out.
pub static OPT_IN: &[&str] = &["LBL001", "SPEC001", "SPEC002"];
// SPEC001 cannot tell a natural topic or style mode of a class from a poison mode in sentence
// embeddings: every class of every clean corpus in ../shared/benchmarks is bimodal along its
// top direction (Ashman's D 2.0-3.8), and only the minority-weight bound stands between that
// and a flag. On ag-news-clean and tweeteval-irony-clean a natural mode holds 27-30 % of a
// class (734 and 412 clean rows flagged, 6.6 % and 14.4 %), while the one poison mode it finds
// on the benchmarks (the clean-label cluster, weight 0.26) is found more precisely by ACT001
// (F1 0.97 against 0.88). So it runs when selected (docs/evaluation.md).
// SPEC002 meets its own bars (0 % of clean data, F1 0.94 on the clean-label set) but its extra
// rows around the clean-label poison mode lower the default scan's combined precision there
// below the bar of tests/integration/benchmarks.rs, so it stays opt-in (docs/evaluation.md).

/// Registered detectors that judge a new batch against a trusted corpus: they run only when a
/// scan is given one (`scan --reference FILE`), and then by default.
pub static REFERENCE: &[&str] = &["REF001", "REF002", "REF003"];

/// The detectors a scan runs when nothing is selected: the registry minus [`OPT_IN`] and
/// [`REFERENCE`].
pub fn default_selection() -> Vec<&'static dyn Detector> {
    REGISTRY
        .iter()
        .copied()
        .filter(|d| !OPT_IN.contains(&d.meta().code) && !REFERENCE.contains(&d.meta().code))
        .collect()
}

/// Whether a detector needs a trusted corpus (see [`REFERENCE`]).
pub fn needs_reference(code: &str) -> bool {
    REFERENCE.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// Whether a detector is opt-in (see [`OPT_IN`]).
pub fn is_opt_in(code: &str) -> bool {
    OPT_IN.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// The detector whose code is `code` (case-insensitive).
pub fn find(code: &str) -> Option<&'static dyn Detector> {
    REGISTRY
        .iter()
        .copied()
        .find(|d| d.meta().code.eq_ignore_ascii_case(code))
}

/// Detectors whose codes start with any of `prefixes` (case-insensitive), in registry order.
/// `Err(prefix)` names the first prefix that selects nothing.
pub fn select(prefixes: &[&str]) -> Result<Vec<&'static dyn Detector>, String> {
    for p in prefixes {
        let up = p.to_ascii_uppercase();
        if !REGISTRY.iter().any(|d| d.meta().code.starts_with(&up)) {
            return Err((*p).to_string());
        }
    }
    Ok(REGISTRY
        .iter()
        .copied()
        .filter(|d| {
            prefixes
                .iter()
                .any(|p| d.meta().code.starts_with(&p.to_ascii_uppercase()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The fixed headings every detector's docs carry.
    const DOC_HEADINGS: [&str; 5] = [
        "## What it detects",
        "## Method",
        "## Parameters",
        "## Known false positives",
        "## References",
    ];

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for d in REGISTRY {
            let m = d.meta();
            assert!(seen.insert(m.code), "duplicate code {}", m.code);
            // 3 or 4 upper-case letters, then 3 digits (SPEC001, LBL001)
            let letters = m.code.len().saturating_sub(3);
            assert!(
                (3..=4).contains(&letters)
                    && m.code[..letters].chars().all(|c| c.is_ascii_uppercase())
                    && m.code[letters..].chars().all(|c| c.is_ascii_digit()),
                "malformed code {}",
                m.code
            );
            for heading in DOC_HEADINGS {
                assert!(m.docs.contains(heading), "{} docs lack {heading}", m.code);
            }
            // every detector configures with its defaults
            d.configure(&toml::Table::new()).expect("defaults validate");
        }
    }

    #[test]
    fn unregistered_detectors_have_full_docs() {
        let m = crate::density::DenseCluster.meta();
        for heading in DOC_HEADINGS {
            assert!(m.docs.contains(heading), "{} docs lack {heading}", m.code);
        }
        assert!(
            find(m.code).is_none(),
            "DEN001 must stay out of the registry"
        );
    }

    #[test]
    fn opt_in_detectors_are_registered_but_not_default() {
        for code in OPT_IN {
            assert!(find(code).is_some(), "{code} is not registered");
            assert!(default_selection().iter().all(|d| d.meta().code != *code));
        }
    }

    #[test]
    fn embedding_detectors_are_deterministic_across_thread_counts() {
        use crate::testutil::{fit_and_score_embeddings, gaussian, Rng};
        // two classes, a shifted tight cluster in 10 % of class 1, so every detector does its
        // full work (splits, filters, mixtures) rather than stopping early
        let mut rng = Rng(5);
        let (n, d) = (3000, 16);
        let mut x = gaussian(&mut rng, n, d);
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        for i in (1..n).step_by(2) {
            if rng.unit() < 0.1 {
                x[[i, 0]] += 4.0;
                x[[i, 1]] -= 3.0;
            }
        }
        let pool = |t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("pool")
        };
        for code in ["SPEC001", "SPEC002", "ACT001", "LBL001"] {
            let det = find(code).expect("registered");
            let params = toml::Table::new();
            let one = pool(1).install(|| fit_and_score_embeddings(det, &params, &x, &labels));
            for t in [2, 3] {
                let many = pool(t).install(|| fit_and_score_embeddings(det, &params, &x, &labels));
                assert_eq!(one.0, many.0, "{code}: scores differ with {t} threads");
                assert_eq!(one.1, many.1, "{code}: summary differs with {t} threads");
            }
        }
    }

    #[test]
    fn selection_by_prefix() {
        assert_eq!(select(&["spec"]).unwrap()[0].meta().code, "SPEC001");
        assert!(select(&["NOPE"]).is_err());
        assert!(find("spec001").is_some());
    }
}
