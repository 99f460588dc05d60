//! The reduced domain grid (experiments/domains-ci.toml) over the clean corpora of
//! ../shared/benchmarks: it runs in-process, every scan reconciles, every injected file holds
//! exactly the rows the rate asks for, and each seed's drawn target is a label of the corpus.
//! Besides the injection and the bookkeeping, one quality property: under a trigger attack the
//! combined verdict flags at most 0.5 % of the clean rows of any corpus (the detection bars
//! are in benchmarks.rs and docs/evaluation.md).

use crate::common::{benchmarks, root};
use poisongate::eval::{load, run};
use std::collections::{BTreeMap, BTreeSet};

/// Rows and sorted labels of a JSONL corpus.
fn corpus(path: &std::path::Path) -> (usize, BTreeSet<String>) {
    let text = std::fs::read_to_string(path).expect("corpus readable");
    let mut labels = BTreeSet::new();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        labels.insert(match &v["label"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        n += 1;
    }
    (n, labels)
}

#[test]
fn domain_grid_runs_and_reconciles() {
    if benchmarks().is_none() {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    }
    let grid = root().join("experiments/domains-ci.toml");
    let ex = load(&grid).expect("the grid parses");
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let results = run(&grid, tmp.path(), &mut |_| {}).expect("the grid runs");
    eprintln!(
        "domains-ci: {} rows in {:.1} s",
        results.rows.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        results.skipped.is_empty(),
        "every cell runs: {:?}",
        results.skipped
    );
    let base = grid.parent().unwrap();
    let mut corpora = BTreeMap::new();
    for d in &ex.dataset {
        let path = base.join(&d.path);
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        corpora.insert(name, corpus(&path));
    }
    // every (corpus, attack, rate) cell of the file has rows
    let mut want = BTreeSet::new();
    for d in &ex.dataset {
        let name = base
            .join(&d.path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for a in &d.attacks {
            let spec = ex
                .attack
                .iter()
                .find(|s| s.name.as_deref() == Some(a.as_str()))
                .unwrap();
            for &rate in &spec.rates {
                want.insert((name.clone(), a.clone(), rate.to_string()));
            }
        }
    }
    let got: BTreeSet<(String, String, String)> = results
        .rows
        .iter()
        .map(|r| {
            (
                r.dataset.clone(),
                r.attack.clone(),
                r.rate.map(|x| x.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(got, want);
    for r in &results.rows {
        let cell = format!("{} {} {:?} {}", r.dataset, r.attack, r.rate, r.detector);
        let (n, labels) = &corpora[&r.dataset];
        let e = &r.eval;
        assert!(r.reconciled, "{cell}: the scan's reconciliation failed");
        assert_eq!(e.tp + e.fn_, r.poisoned, "{cell}: tp + fn");
        assert_eq!(e.tp + e.fp, e.flagged, "{cell}: tp + fp");
        assert!(e.flagged <= r.rows, "{cell}");
        assert_eq!(r.rows, *n, "{cell}: in-place attacks keep the row count");
        let rate = r.rate.expect("injected cells only");
        assert_eq!(
            r.poisoned,
            (rate * *n as f64).round() as usize,
            "{cell}: poisoned = round(rate * n)"
        );
        let t = r.target_label.as_deref().expect("a drawn target");
        assert!(labels.contains(t), "{cell}: target {t} not a label");
        assert_eq!(
            r.clean_flagged_fraction(),
            e.fp as f64 / (r.rows - r.poisoned) as f64
        );
        // the gate's first duty holds under attack too: inserted triggers and phrases do not
        // drag the corpus's own rows into quarantine (label flips are left out: a flipped row
        // makes its untouched exact duplicates a label conflict)
        if r.detector == "combined" && !r.attack.starts_with("label-flip") {
            assert!(
                r.clean_flagged_fraction() <= 0.005,
                "{cell}: {:.2} % of clean rows flagged",
                100.0 * r.clean_flagged_fraction()
            );
        }
    }
}
