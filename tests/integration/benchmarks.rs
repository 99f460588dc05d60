//! Quality on real data: the detectors on ../shared/benchmarks, against the acceptance
//! bars. The full table comes from `poisongate benchmark ../shared/benchmarks` (docs/evaluation.md).

use crate::common::benchmarks;
use poisongate::benchmark::{run, BenchRow};

/// The clean corpora of ../shared/benchmarks, one per domain.
const CLEAN_CORPORA: [&str; 6] = [
    "sst2-clean",
    "sms-spam-clean",
    "ag-news-clean",
    "tweeteval-hate-clean",
    "tweeteval-emotion-clean",
    "tweeteval-irony-clean",
];

fn find<'a>(rows: &'a [BenchRow], set: &str, repr: &str, det: &str) -> &'a BenchRow {
    rows.iter()
        .find(|r| r.set == set && r.representation == repr && r.detector == det)
        .unwrap_or_else(|| panic!("no row for {set} {repr} {det}"))
}

#[test]
fn spec001_on_shared_benchmarks() {
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let rows = run(
        &dir,
        &["SPEC001".to_string()],
        &["mlp", "minilm"],
        &Default::default(),
    )
    .expect("benchmark runs");
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
    let rows =
        run(&dir, &["TRIG001".to_string()], &[], &Default::default()).expect("benchmark runs");
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
    for set in CLEAN_CORPORA {
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
    // the default detectors of text-label data (INS001 and INS002 read prompt and response rows)
    let defaults: Vec<String> = poisongate::detectors::registry::default_selection()
        .iter()
        .filter(|d| {
            !d.configure(&Default::default())
                .expect("defaults validate")
                .needs()
                .responses
        })
        .map(|d| d.meta().code.to_string())
        .collect();
    let mut rows =
        run(&dir, &defaults, &["mlp", "minilm"], &Default::default()).expect("benchmark runs");
    // text only: the default detectors that need no embeddings, as a scan without them runs
    let text_defaults: Vec<String> = poisongate::detectors::registry::default_selection()
        .iter()
        .filter(|d| {
            let needs = d
                .configure(&Default::default())
                .expect("defaults validate")
                .needs();
            !needs.embeddings && !needs.responses
        })
        .map(|d| d.meta().code.to_string())
        .collect();
    rows.extend(run(&dir, &text_defaults, &[], &Default::default()).expect("benchmark runs"));
    // every clean corpus, every domain: text only, with the sentence embeddings, and with the
    // classifier activations where the corpus has them
    for set in CLEAN_CORPORA {
        for repr in ["-", "minilm", "mlp"] {
            if repr == "mlp" && !dir.join(format!("{set}.mlp.npy")).exists() {
                continue;
            }
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

/// One scan of `set` with representation `repr` and detectors `select`; the evaluation per
/// detector code, as `poisongate scan --ground-truth-column poison` reports it.
fn scan_set(
    set: &str,
    repr: &str,
    select: &[&str],
) -> std::collections::BTreeMap<String, poisongate::detectors::metrics::Evaluation> {
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let mut o = poisongate::pipeline::ScanOptions::new(dir.join(format!("{set}.jsonl")));
    o.id_column = Some("id".into());
    o.ground_truth_column = Some("poison".into());
    o.embeddings = Some(dir.join(format!("{set}.{repr}.npy")));
    o.select = Some(select.iter().map(|s| s.to_string()).collect());
    let outcome = poisongate::pipeline::scan(&o).expect("scan runs");
    outcome
        .report
        .evaluation
        .expect("ground truth given")
        .detectors
}

/// ACT001 and SPEC002 on the sets that decide their bars (the full table, every set and
/// representation, is in docs/evaluation.md): the clean-label trigger cluster is found, and on
/// clean data (both corpora, both representations) at most 1 % of rows is flagged.
#[test]
fn act001_and_spec002_on_shared_benchmarks() {
    let e = scan_set(
        "sst2-badnets-cleanlabel-10",
        "minilm",
        &["ACT001", "SPEC002"],
    );
    let (act, spec) = (&e["ACT001"], &e["SPEC002"]);
    assert!(act.f1 >= 0.9, "ACT001 F1 {}", act.f1);
    assert!(spec.f1 >= 0.9, "SPEC002 F1 {}", spec.f1);
    assert!(
        spec.auroc.unwrap() >= 0.95,
        "SPEC002 AUROC {:?}",
        spec.auroc
    );
    for set in ["sst2-clean", "sms-spam-clean"] {
        let rows = if set == "sst2-clean" { 6920.0 } else { 5574.0 };
        for repr in ["mlp", "minilm"] {
            let e = scan_set(set, repr, &["ACT001", "SPEC002"]);
            for code in ["ACT001", "SPEC002"] {
                let f = e[code].flagged as f64 / rows;
                assert!(
                    f <= 0.01,
                    "{code} {set} {repr}: {} flagged",
                    e[code].flagged
                );
            }
        }
    }
    // ART's ActivationDefence flags 30 % of sst2-clean and gets F1 0.21 on sst2-badnets-10
    // (mlp); ACT001 must never flag a fixed share of a class there
    let e = scan_set("sst2-badnets-10", "mlp", &["ACT001"]);
    assert!(e["ACT001"].flagged as f64 / 6920.0 <= 0.2);
}

/// Two clean corpora merged into one (a data engineer's corpus gathered from two sources): the
/// default scan with the sentence embeddings quarantines at most 0.5 % of the rows. The
/// sources differ in everything, so a class holding a minority of one source splits cleanly
/// in two; that split is the sources', found in the other class too, and ACT001 must not take
/// it for a trigger cluster.
#[test]
fn corpora_merged_from_two_sources_are_not_quarantined() {
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let tmp = tempfile::tempdir().unwrap();
    for (a, b) in [
        ("sst2-clean", "sms-spam-clean"),
        ("tweeteval-hate-clean", "tweeteval-irony-clean"),
    ] {
        let name = format!("{a}+{b}");
        let data = tmp.path().join(format!("{name}.jsonl"));
        let mut text = String::new();
        for (tag, set) in [("a", a), ("b", b)] {
            for mut row in crate::common::jsonl(&dir.join(format!("{set}.jsonl"))) {
                row["id"] = format!("{tag}{}", row["id"]).into();
                text.push_str(&row.to_string());
                text.push('\n');
            }
        }
        std::fs::write(&data, text).unwrap();
        let read = |set: &str| -> ndarray::Array2<f32> {
            ndarray_npy::read_npy(dir.join(format!("{set}.minilm.npy"))).unwrap()
        };
        let emb =
            ndarray::concatenate(ndarray::Axis(0), &[read(a).view(), read(b).view()]).unwrap();
        let npy = tmp.path().join(format!("{name}.npy"));
        ndarray_npy::write_npy(&npy, &emb).unwrap();
        let mut o = poisongate::pipeline::ScanOptions::new(&data);
        o.id_column = Some("id".into());
        o.embeddings = Some(npy);
        let outcome = poisongate::pipeline::scan(&o).expect("scan runs");
        let r = &outcome.report;
        let held = r.reconciliation.quarantined_rows;
        assert!(
            held as f64 <= 0.005 * r.reconciliation.input_rows as f64,
            "{name}: {held} quarantined"
        );
    }
}
