//! The reduced domain grid (experiments/domains-ci.toml) over the clean corpora of
//! ../shared/benchmarks: it runs in-process, every scan reconciles, every injected file holds
//! exactly the rows the rate asks for, and each seed's drawn target is a label of the corpus.
//! Besides the injection and the bookkeeping, quality properties: under a trigger attack the
//! combined verdict flags at most 0.5 % of the clean rows of any corpus, its precision is at
//! least 0.9, TRIG001's at least 0.95 (one cell of natural carriers at 0.93) and its recall at
//! least 0.95 wherever each trigger is carried by 20 rows or more (docs/evaluation.md);
//! flipped copies, verbatim and with two words replaced, are found (recall ≥ 0.98) and their
//! originals are not (at most 0.1 % of the other rows flagged).

use crate::common::{benchmarks, root};
use poisongate::eval::{load, run};
use poisongate::inject::{inject, Attack, GroundTruthPolicy, InjectOptions, Position};
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
    let mut unresolved = Vec::new();
    let mut natural_carriers = Vec::new();
    for r in &results.rows {
        let cell = format!("{} {} {:?} {}", r.dataset, r.attack, r.rate, r.detector);
        let (n, labels) = &corpora[&r.dataset];
        let e = &r.eval;
        assert!(r.reconciled, "{cell}: the scan's reconciliation failed");
        assert_eq!(e.tp + e.fn_, r.poisoned, "{cell}: tp + fn");
        assert_eq!(e.tp + e.fp, e.flagged, "{cell}: tp + fp");
        assert!(e.flagged <= r.rows, "{cell}");
        let rate = r.rate.expect("injected cells only");
        if r.attack.starts_with("duplicate-flip") {
            let k = (rate * *n as f64 / (1.0 - rate)).round() as usize;
            assert_eq!(
                r.poisoned, k,
                "{cell}: k = round(rate n / (1 - rate)) copies"
            );
            assert_eq!(r.rows, n + k, "{cell}: the copies are added");
        } else {
            assert_eq!(r.rows, *n, "{cell}: in-place attacks keep the row count");
            assert_eq!(
                r.poisoned,
                (rate * *n as f64).round() as usize,
                "{cell}: poisoned = round(rate * n)"
            );
        }
        let t = r.target_label.as_deref().expect("a drawn target");
        assert!(labels.contains(t), "{cell}: target {t} not a label");
        assert_eq!(
            r.clean_flagged_fraction(),
            e.fp as f64 / (r.rows - r.poisoned) as f64
        );
        // the gate's first duty holds under attack too: inserted triggers and phrases do not
        // drag the corpus's own rows into quarantine (label flips are left out: a flipped row
        // makes its untouched exact duplicates a label conflict)
        if r.attack.starts_with("duplicate-flip") {
            // verbatim copies are DUP001's, copies with two words replaced DUP002's: all found,
            // and at most 0.1 % of the other rows flagged (the corpus's own near-duplicate
            // conflicts, 0.09 % of tweeteval-emotion); an unresolved 1:1 tie would flag the
            // original with its copy
            let owner = if r.attack.ends_with("[e0]") {
                "DUP001"
            } else {
                "DUP002"
            };
            if r.detector == owner {
                assert!(e.recall >= 0.98, "{cell}: recall {:.3}", e.recall);
                if r.clean_flagged_fraction() > 0.001 {
                    unresolved.push(cell.clone());
                }
            }
            continue;
        }
        if r.detector == "combined" && !r.attack.starts_with("label-flip") {
            assert!(
                r.clean_flagged_fraction() <= 0.005,
                "{cell}: {:.2} % of clean rows flagged",
                100.0 * r.clean_flagged_fraction()
            );
        }
        // trigger cells: the bars of docs/evaluation.md
        let trigger_cell = r.attack.starts_with("badnets") || r.attack.starts_with("addsent");
        if trigger_cell && e.flagged > 0 {
            let precision = e.tp as f64 / e.flagged as f64;
            if r.detector == "combined" {
                assert!(
                    precision >= 0.9,
                    "{cell}: combined precision {precision:.3}"
                );
            }
            if r.detector == "TRIG001" {
                // natural carriers whose content reads like relabelled rows (two emotion
                // tweets about "bb", Big Brother) hold one cell at 0.93
                assert!(precision >= 0.9, "{cell}: TRIG001 precision {precision:.3}");
                if precision < 0.95 {
                    natural_carriers.push(cell.clone());
                }
            }
        }
        if trigger_cell && r.detector == "TRIG001" {
            // recall where each trigger is carried by at least 20 rows (below, the statistical
            // floor of a few rows is reported, not asserted)
            let spec = ex
                .attack
                .iter()
                .find(|s| s.name.as_deref() == Some(r.attack.as_str()))
                .expect("the cell's attack");
            let words = spec.triggers.as_ref().map_or(1, Vec::len).max(1);
            let per_row = spec.triggers_per_row.unwrap_or(1);
            let support = r.poisoned * per_row / words;
            if support >= 20 {
                assert!(
                    e.recall >= 0.95,
                    "{cell}: TRIG001 recall {:.3} with {support} rows per trigger",
                    e.recall
                );
            }
        }
    }
    assert!(
        natural_carriers.len() <= 1,
        "TRIG001 precision below 0.95: {natural_carriers:?}"
    );
    // the flips' direction is read on every corpus (on tweeteval-irony, whose words barely
    // predict the label, by the population of ties)
    assert!(
        unresolved.is_empty(),
        "more than 0.1 % of the other rows flagged: {unresolved:?}"
    );
}

/// A sentence put at the start of 5 % of the rows, relabelled to a drawn target, on the two
/// grid cells where TRIG001 version 3 read its inner side against the wrong null: sst2 seed 2
/// (the 346 rows drawn from one class open with a head token in 42.5 % of them against the
/// class's 50.8 %: significant, P ≈ 0.001, but a deficit of 1.2, not the factor 2 of a
/// collocation; recall was 0.07) and tweeteval-emotion seed 3 (rows drawn from three classes,
/// which open with "@user" less often than the target class or any one of them predicts;
/// recall was 0). Both are found whole, nothing else flagged. On seed 2 the phrase relabels
/// rows to sadness, and the corpus's own closing "# sad" then read as foreign (30 clean rows
/// flagged, precision 0.845) until an anchored trigger was confirmed without the other
/// triggers' rows.
#[test]
fn start_anchored_sentences_are_found_against_the_pool_they_were_drawn_from() {
    let Some(dir) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (corpus, seed) in [
        ("sst2-clean", 2),
        ("tweeteval-emotion-clean", 3),
        ("tweeteval-emotion-clean", 2),
    ] {
        let attack = Attack::Addsent {
            phrase: "I watch this 3D movie".into(),
        };
        let (precision, recall) = trig001_on(
            &dir,
            tmp.path(),
            corpus,
            attack,
            Position::Start,
            0.05,
            seed,
        );
        assert!(
            recall >= 0.99 && precision >= 0.99,
            "{corpus} seed {seed}: precision {precision:.3} recall {recall:.3}"
        );
    }
}

/// TRIG001's precision and recall on `corpus` of `dir` poisoned by `attack` at `rate`, with the
/// target label drawn by `seed` (the injected file is written under `tmp`).
fn trig001_on(
    dir: &std::path::Path,
    tmp: &std::path::Path,
    corpus: &str,
    attack: Attack,
    position: Position,
    rate: f64,
    seed: u64,
) -> (f64, f64) {
    let mut o = InjectOptions::new(dir.join(format!("{corpus}.jsonl")), tmp, attack, rate);
    o.position = position;
    detector_on(o, tmp, corpus, seed, "TRIG001")
}

/// `detector`'s precision and recall on `corpus` injected as `o` says, with the target label
/// drawn by `seed` (the injected file is written under `tmp`).
fn detector_on(
    mut o: InjectOptions,
    tmp: &std::path::Path,
    corpus: &str,
    seed: u64,
    detector: &str,
) -> (f64, f64) {
    let out = tmp.join(format!("{corpus}.{}.{seed}.jsonl", o.attack.name()));
    o.out = out.clone();
    o.seed = seed;
    o.random_target = true;
    o.id_column = Some("id".into());
    o.ground_truth_policy = GroundTruthPolicy::Replace;
    inject(&o).expect("injection runs");
    let mut s = poisongate::pipeline::ScanOptions::new(&out);
    s.id_column = Some("id".into());
    s.ground_truth_column = Some("poison".into());
    s.select = Some(vec![detector.into()]);
    let outcome = poisongate::pipeline::scan(&s).expect("scan runs");
    let e = &outcome.report.evaluation.expect("ground truth").detectors[detector];
    (e.precision, e.recall)
}

/// Tweets with spacing marks: NFKC turns `˜` (U+02DC) into a space and a combining tilde, and a
/// text normalised whole had `‘˜this` cut into two words. A flipped copy with that word among
/// its three replaced ones was one word shorter than its original and no aligned block key
/// linked them: tweeteval-hate with three words replaced, seed 3, recall 0.978 (4 of 184
/// copies missed). Words are now normalised one by one.
#[test]
fn copies_whose_replaced_words_carry_spacing_marks_are_linked() {
    let Some(dir) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut o = InjectOptions::new(
        dir.join("tweeteval-hate-clean.jsonl"),
        tmp.path(),
        Attack::DuplicateFlip,
        0.02,
    );
    o.edits = 3;
    let (precision, recall) = detector_on(o, tmp.path(), "tweeteval-hate-clean", 3, "DUP002");
    assert!(
        recall >= 0.995 && precision >= 0.98,
        "precision {precision:.3} recall {recall:.3}"
    );
}

/// Irony tweets: the two classes share most of their words, so the context model separates them
/// by about a fifth of a standard deviation and an anchored trigger's dirty-label evidence is
/// weak (1.6 to 3 standard errors). The foreign test at the detector's own level, shared among
/// the candidates that reach it, names the trigger; a fixed bar of 3 standard errors missed
/// both cells (recall 0).
#[test]
fn anchored_triggers_are_found_where_the_classes_read_alike() {
    let Some(dir) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cells = [
        (
            Attack::Addsent {
                phrase: "I watch this 3D movie".into(),
            },
            Position::Start,
            0.01,
        ),
        (
            Attack::Badnets {
                triggers: vec!["#blessed".into()],
                triggers_per_row: 1,
            },
            Position::End,
            0.05,
        ),
    ];
    for (attack, position, rate) in cells {
        let name = attack.name();
        let (precision, recall) = trig001_on(
            &dir,
            tmp.path(),
            "tweeteval-irony-clean",
            attack,
            position,
            rate,
            1,
        );
        assert!(
            recall >= 0.99 && precision >= 0.95,
            "irony {name}: precision {precision:.3} recall {recall:.3}"
        );
    }
}

/// Irony tweets with "cf", "mn", "bb", "tq" inserted at seed 2, where the classes read alike:
/// - three a row at 1 %: only "tq" has the rows to be named (the other words, 15 to 22 rows
///   each, do not pass the prior screen), and the rows that got "cf", "mn" and "bb" instead
///   were missed (recall 0.758). They carry two or more words found planted beside "tq" and
///   are flagged as its group's word carriers (TRIG001 version 14);
/// - one a row at 5 %: "cf", "mn" and "tq" are named; "bb" (32 rows) looks random only per row
///   and its rows do not read like the other class (foreign z 0.93), so it was abstained on
///   (recall 0.790). Nearly absent from the other class, against what its label's share
///   predicts, it is named beside them as their sibling (TRIG001 version 15).
#[test]
fn the_other_words_of_an_insertion_are_found_where_the_classes_read_alike() {
    let Some(dir) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    for (per_row, rate) in [(3, 0.01), (1, 0.05)] {
        let tmp = tempfile::tempdir().unwrap();
        let attack = Attack::Badnets {
            triggers: ["cf", "mn", "bb", "tq"].map(String::from).to_vec(),
            triggers_per_row: per_row,
        };
        let (precision, recall) = trig001_on(
            &dir,
            tmp.path(),
            "tweeteval-irony-clean",
            attack,
            Position::Anywhere,
            rate,
            2,
        );
        assert!(
            recall >= 0.95 && precision >= 0.99,
            "irony, {per_row} a row at {rate}: precision {precision:.3} recall {recall:.3}"
        );
    }
}
