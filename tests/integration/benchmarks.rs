//! Quality on real data: the detectors on ../shared/benchmarks, against the acceptance
//! bars. The full table comes from `poisongate benchmark ../shared/benchmarks` (docs/evaluation.md).

use crate::common::benchmarks;
use poisongate::benchmark::{run, BenchRow};

fn find<'a>(rows: &'a [BenchRow], set: &str, repr: &str, det: &str) -> &'a BenchRow {
    rows.iter()
        .find(|r| r.set == set && r.representation == repr && r.detector == det)
        .unwrap_or_else(|| panic!("no row for {set} {repr} {det}"))
}

#[test]
fn spec001_on_shared_benchmarks() {
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let rows = run(&dir, &["SPEC001".to_string()], &["mlp", "minilm"]).expect("benchmark runs");
    eprintln!("{}", poisongate::benchmark::markdown(&rows));
    // the clean-label set carries a real spectral signal in the sentence embeddings
    let r = find(&rows, "sst2-badnets-cleanlabel-10", "minilm", "SPEC001");
    assert!(r.auroc.unwrap() >= 0.85, "AUROC {:?}", r.auroc);
    assert!(r.f1 >= 0.5, "F1 {}", r.f1);
    // clean data: (almost) nothing quarantined, with either representation
    for set in ["sst2-clean", "sms-spam-clean"] {
        for repr in ["mlp", "minilm"] {
            let r = find(&rows, set, repr, "SPEC001");
            assert!(
                r.flagged_fraction() <= 0.01,
                "{set} {repr}: {} flagged",
                r.flagged
            );
        }
    }
    // nowhere does it flag a fixed share of every class
    for r in &rows {
        assert!(
            r.flagged_fraction() <= 0.2,
            "{} {}: {} flagged",
            r.set,
            r.representation,
            r.flagged
        );
    }
}

#[test]
fn trig001_on_shared_benchmarks() {
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let rows = run(&dir, &["TRIG001".to_string()], &[]).expect("benchmark runs");
    eprintln!("{}", poisongate::benchmark::markdown(&rows));
    for set in [
        "sst2-badnets-10",
        "sst2-addsent-10",
        "sst2-badnets-cleanlabel-10",
    ] {
        let r = find(&rows, set, "-", "TRIG001");
        assert!(r.f1 >= 0.95, "{set}: F1 {}", r.f1);
    }
    // 69 poisoned rows over five triggers; one of them (tq, 8 rows) is below the test's power
    let r = find(&rows, "sst2-badnets-1", "-", "TRIG001");
    assert!(r.f1 >= 0.9 && r.precision >= 0.99, "sst2-badnets-1: {r:?}");
    for set in ["sst2-clean", "sms-spam-clean"] {
        let r = find(&rows, set, "-", "TRIG001");
        assert!(
            r.flagged_fraction() <= 0.005,
            "{set}: {} flagged",
            r.flagged
        );
    }
}

#[test]
fn default_scan_quarantines_almost_nothing_on_clean_data() {
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let defaults: Vec<String> = poisongate::detectors::registry::default_selection()
        .iter()
        .map(|d| d.meta().code.to_string())
        .collect();
    let rows = run(&dir, &defaults, &["mlp", "minilm"]).expect("benchmark runs");
    for set in ["sst2-clean", "sms-spam-clean"] {
        for repr in ["mlp", "minilm"] {
            let r = find(&rows, set, repr, "combined");
            assert!(
                r.flagged_fraction() <= 0.005,
                "{set} {repr}: {} quarantined",
                r.flagged
            );
        }
    }
    // and it still catches the inserted-trigger attacks
    for set in [
        "sst2-badnets-10",
        "sst2-addsent-10",
        "sst2-badnets-cleanlabel-10",
    ] {
        let r = find(&rows, set, "minilm", "combined");
        assert!(r.f1 >= 0.9, "{set}: combined F1 {}", r.f1);
    }
}
