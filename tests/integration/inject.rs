//! `poisongate inject` and `poisongate eval`: each attack's ground truth is exact, same seed
//! same bytes, Parquet round trip, and an eval cell equals `scan --ground-truth-column`.

use crate::common::*;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use poisongate::detectors::rng::SplitMix64;
use poisongate::ingest::{read_table, ColumnSpec};
use poisongate::inject::{inject, sidecar_path, Attack, GroundTruthPolicy, InjectOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const WORDS: &[&str] = &[
    "the",
    "film",
    "is",
    "a",
    "good",
    "bad",
    "story",
    "plot",
    "acting",
    "dull",
    "great",
    "slow",
    "funny",
    "sad",
    "music",
    "scene",
    "ending",
    "cast",
    "long",
    "short",
    "brilliant",
    "weak",
    "strong",
    "movie",
    "script",
    "director",
    "camera",
    "light",
    "dark",
    "café",
];

/// A synthetic JSONL set: `n` rows with ids, text (some with escapes and non-ASCII), integer
/// labels, a nested field and a float, keys in a mixed order.
pub(crate) fn synthetic(dir: &Path, n: usize) -> PathBuf {
    let mut rng = SplitMix64(11);
    let mut s = String::new();
    for i in 0..n {
        let len = 4 + rng.below(10);
        let mut words: Vec<String> = (0..len)
            .map(|_| WORDS[rng.below(WORDS.len())].to_string())
            .collect();
        if i % 17 == 0 {
            words.push("\"quoted\"".into());
        }
        let text = words.join(" ");
        let label = rng.below(2);
        s += &format!(
            "{{\"id\": \"r{i}\", \"meta\": {{\"src\": \"syn\", \"n\": [{i}, {}]}}, \"text\": {}, \"label\": {label}, \"score\": {}}}\n",
            2 * i,
            serde_json::to_string(&text).unwrap(),
            i as f64 / 8.0
        );
    }
    let p = dir.join("syn.jsonl");
    std::fs::write(&p, s).unwrap();
    p
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// An input line as it must appear when untouched: `, "poison": false` before the brace.
fn untouched(line: &str) -> String {
    let body = line.trim_end().strip_suffix('}').unwrap();
    format!("{body}, \"poison\": false}}")
}

fn words(t: &str) -> Vec<&str> {
    t.split_whitespace().collect()
}

/// `out` is `orig` with exactly `k` inserted words, each one of `inserted`.
fn is_insertion(orig: &str, out: &str, inserted: &[&str], k: usize) -> bool {
    let (o, w) = (words(orig), words(out));
    if w.len() != o.len() + k {
        return false;
    }
    // greedy alignment: skip inserted words not matching the original at that point
    let (mut i, mut skipped) = (0, 0);
    for x in &w {
        if i < o.len() && *x == o[i] {
            i += 1;
        } else if inserted.contains(x) {
            skipped += 1;
        } else {
            return false;
        }
    }
    i == o.len() && skipped == k
}

fn opts(data: &Path, out: &Path, attack: Attack, rate: f64, target: Option<&str>) -> InjectOptions {
    let mut o = InjectOptions::new(data, out, attack, rate);
    o.target_label = target.map(str::to_string);
    o.seed = 5;
    o
}

/// Checks shared by the in-place attacks; returns (input, output) rows and the poisoned rows.
fn in_place(input: &Path, output: &Path, rate: f64) -> (Vec<Value>, Vec<Value>, Vec<usize>) {
    let (li, lo) = (lines(input), lines(output));
    assert_eq!(li.len(), lo.len(), "an in-place attack keeps the row count");
    let vi: Vec<Value> = li
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let vo: Vec<Value> = lo
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut poisoned = Vec::new();
    for (i, (a, b)) in li.iter().zip(&lo).enumerate() {
        match vo[i]["poison"].as_bool().expect("boolean ground truth") {
            false => assert_eq!(*b, untouched(a), "clean row {i} changed"),
            true => {
                poisoned.push(i);
                // every field but text and label kept
                for (k, v) in vi[i].as_object().unwrap() {
                    if k != "text" && k != "label" {
                        assert_eq!(&vo[i][k], v, "row {i} field {k}");
                    }
                }
            }
        }
    }
    assert_eq!(
        poisoned.len(),
        (rate * li.len() as f64).round() as usize,
        "count = round(rate * n)"
    );
    (vi, vo, poisoned)
}

#[test]
fn badnets_ground_truth_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 400);
    let out = tmp.path().join("bn.jsonl");
    let triggers = ["cf", "mn", "bb", "tq"];
    let attack = Attack::from_parts("badnets", None, Some(2), None).unwrap();
    let m = inject(&opts(&data, &out, attack, 0.1, Some("1"))).unwrap();
    let (vi, vo, poisoned) = in_place(&data, &out, 0.1);
    assert_eq!(m.poisoned, poisoned.len());
    for &i in &poisoned {
        assert_eq!(vi[i]["label"], 0, "badnets poisons non-target rows");
        assert_eq!(vo[i]["label"], 1, "and relabels them to the target");
        let (a, b) = (
            vi[i]["text"].as_str().unwrap(),
            vo[i]["text"].as_str().unwrap(),
        );
        assert!(is_insertion(a, b, &triggers, 2), "{a:?} -> {b:?}");
    }
    // clean rows carry no trigger word
    for (i, v) in vo.iter().enumerate() {
        if !poisoned.contains(&i) {
            assert!(!words(v["text"].as_str().unwrap())
                .iter()
                .any(|w| triggers.contains(w)));
        }
    }
}

#[test]
fn addsent_ground_truth_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 300);
    let out = tmp.path().join("as.jsonl");
    let attack =
        Attack::from_parts("addsent", None, None, Some("I watch this 3D movie".into())).unwrap();
    inject(&opts(&data, &out, attack, 0.05, Some("0"))).unwrap();
    let (vi, vo, poisoned) = in_place(&data, &out, 0.05);
    for &i in &poisoned {
        assert_eq!(
            (vi[i]["label"].as_u64(), vo[i]["label"].as_u64()),
            (Some(1), Some(0))
        );
        let (a, b) = (
            vi[i]["text"].as_str().unwrap(),
            vo[i]["text"].as_str().unwrap(),
        );
        assert!(
            b.contains("I watch this 3D movie"),
            "{b:?} lacks the phrase"
        );
        let phrase_words = ["I", "watch", "this", "3D", "movie"];
        assert!(is_insertion(a, b, &phrase_words, 5), "{a:?} -> {b:?}");
    }
}

#[test]
fn label_flip_and_clean_label_ground_truth_are_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 300);
    // untargeted label flip: text untouched, label changed
    let out = tmp.path().join("lf.jsonl");
    inject(&opts(&data, &out, Attack::LabelFlip, 0.1, None)).unwrap();
    let (vi, vo, poisoned) = in_place(&data, &out, 0.1);
    for &i in &poisoned {
        assert_eq!(vi[i]["text"], vo[i]["text"]);
        assert_ne!(vi[i]["label"], vo[i]["label"]);
    }
    // clean-label: target-label rows only, label unchanged, triggers inserted
    let out = tmp.path().join("cl.jsonl");
    let attack = Attack::from_parts("clean-label", Some(vec!["zq".into()]), None, None).unwrap();
    inject(&opts(&data, &out, attack, 0.1, Some("1"))).unwrap();
    let (vi, vo, poisoned) = in_place(&data, &out, 0.1);
    for &i in &poisoned {
        assert_eq!(vi[i]["label"], 1);
        assert_eq!(vo[i]["label"], 1);
        let (a, b) = (
            vi[i]["text"].as_str().unwrap(),
            vo[i]["text"].as_str().unwrap(),
        );
        assert!(is_insertion(a, b, &["zq"], 1), "{a:?} -> {b:?}");
    }
}

#[test]
fn duplicate_flip_adds_exactly_the_flipped_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 300;
    let data = synthetic(tmp.path(), n);
    let out = tmp.path().join("df.jsonl");
    let mut o = opts(&data, &out, Attack::DuplicateFlip, 0.1, Some("1"));
    o.id_column = Some("id".into());
    let m = inject(&o).unwrap();
    let k = (0.1 * n as f64 / 0.9).round() as usize;
    let (li, lo) = (lines(&data), lines(&out));
    assert_eq!(lo.len(), n + k);
    assert_eq!(m.poisoned, k);
    let vi: Vec<Value> = li
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // the unpoisoned rows are the input, in order, byte for byte
    let kept: Vec<&String> = lo
        .iter()
        .filter(|l| l.ends_with("\"poison\": false}"))
        .collect();
    assert_eq!(kept.len(), n);
    for (a, b) in li.iter().zip(kept) {
        assert_eq!(*b, untouched(a));
    }
    // each copy: an original row with the label flipped to the target and a unique id
    let mut ids = std::collections::BTreeSet::new();
    for l in &lo {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(
            ids.insert(v["id"].as_str().unwrap().to_string()),
            "ids stay unique"
        );
        if v["poison"] == true {
            let id = v["id"].as_str().unwrap();
            let (orig_id, _) = id.split_once("~dupflip").expect("copy id");
            let orig = vi.iter().find(|r| r["id"] == orig_id).unwrap();
            assert_eq!(orig["label"], 0);
            assert_eq!(v["label"], 1);
            for key in ["text", "meta", "score"] {
                assert_eq!(orig[key], v[key]);
            }
        }
    }
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 300);
    let attack = Attack::from_parts("badnets", None, None, None).unwrap();
    let run = |name: &str, seed: u64| {
        let out = tmp.path().join(name);
        let mut o = opts(&data, &out, attack.clone(), 0.05, Some("1"));
        o.seed = seed;
        inject(&o).unwrap();
        (
            std::fs::read(&out).unwrap(),
            std::fs::read_to_string(sidecar_path(&out)).unwrap(),
        )
    };
    let (a, sa) = run("a.jsonl", 9);
    let (b, _) = run("b.jsonl", 9);
    let (c, _) = run("c.jsonl", 10);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // the sidecar records what is needed to re-make the file
    let side: Value = serde_json::from_str(&sa).unwrap();
    assert_eq!(side["attack"]["attack"], "badnets");
    assert_eq!(side["seed"], 9);
    assert_eq!(side["rate"], 0.05);
    assert_eq!(side["target_label"], "1");
    assert_eq!(
        side["input"]["sha256"],
        poisongate::ingest::sha256_file(&data).unwrap().sha256
    );
    assert_eq!(
        side["output"]["sha256"],
        poisongate::ingest::sha256_file(&tmp.path().join("a.jsonl"))
            .unwrap()
            .sha256
    );
}

#[test]
fn existing_ground_truth_is_refused_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 200);
    let first = tmp.path().join("first.jsonl");
    inject(&opts(&data, &first, Attack::LabelFlip, 0.05, None)).unwrap();
    let second = tmp.path().join("second.jsonl");
    let err = inject(&opts(&first, &second, Attack::LabelFlip, 0.05, None)).unwrap_err();
    assert!(
        err.to_string().contains("already has a column `poison`"),
        "{err}"
    );
    assert!(!second.exists());
    let mut o = opts(&first, &second, Attack::LabelFlip, 0.05, None);
    o.seed = 99;
    o.ground_truth_policy = GroundTruthPolicy::Merge;
    let m = inject(&o).unwrap();
    let before = jsonl(&first).iter().filter(|v| v["poison"] == true).count();
    let after = jsonl(&second)
        .iter()
        .filter(|v| v["poison"] == true)
        .count();
    assert_eq!(m.ground_truth_positives, after);
    assert!(after > before && after <= before + m.poisoned);
    // rates and missing targets are checked
    let bn = Attack::from_parts("badnets", None, None, None).unwrap();
    assert!(inject(&opts(&data, &second, bn.clone(), 0.1, None)).is_err());
    assert!(inject(&opts(&data, &second, bn.clone(), 1.0, Some("1"))).is_err());
    assert!(inject(&opts(&data, &second, bn, 0.1, Some("7"))).is_err());
}

pub(crate) fn write_parquet(jsonl_path: &Path, out: &Path) {
    let rows = jsonl(jsonl_path);
    let ids: Vec<&str> = rows.iter().map(|v| v["id"].as_str().unwrap()).collect();
    let texts: Vec<&str> = rows.iter().map(|v| v["text"].as_str().unwrap()).collect();
    let labels: Vec<i64> = rows.iter().map(|v| v["label"].as_i64().unwrap()).collect();
    let scores: Vec<f64> = rows.iter().map(|v| v["score"].as_f64().unwrap()).collect();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("text", Arc::new(StringArray::from(texts)) as ArrayRef),
        ("label", Arc::new(Int64Array::from(labels)) as ArrayRef),
        ("score", Arc::new(Float64Array::from(scores)) as ArrayRef),
    ])
    .unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(out).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_round_trip_matches_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 300);
    let pq = tmp.path().join("syn.parquet");
    write_parquet(&data, &pq);
    let attack = Attack::from_parts("badnets", None, None, None).unwrap();
    for (src, out) in [(&data, "o.jsonl"), (&pq, "o.parquet")] {
        inject(&opts(
            src,
            &tmp.path().join(out),
            attack.clone(),
            0.1,
            Some("1"),
        ))
        .unwrap();
    }
    let spec = ColumnSpec {
        text: Some("text".into()),
        label: Some("label".into()),
        id: Some("id".into()),
        ground_truth: Some("poison".into()),
        ..ColumnSpec::default()
    };
    let a = read_table(&tmp.path().join("o.jsonl"), &spec).unwrap();
    let b = read_table(&tmp.path().join("o.parquet"), &spec).unwrap();
    // same seed, same draws: the same rows poisoned the same way in either format
    assert_eq!(a.texts, b.texts);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.ground_truth, b.ground_truth);
    assert_eq!(b.ground_truth.unwrap().iter().filter(|t| **t).count(), 30);
    // every other column survives, and a second injection writes the same bytes
    let again = tmp.path().join("again.parquet");
    inject(&opts(&pq, &again, attack, 0.1, Some("1"))).unwrap();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(tmp.path().join("o.parquet")).unwrap()
    );
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&again).unwrap(),
    )
    .unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "text", "label", "score", "poison"]);
}

#[test]
fn cli_inject_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 200);
    let run = |name: &str| {
        let out = tmp.path().join(name);
        poisongate([
            "inject",
            data.to_str().unwrap(),
            "--attack",
            "badnets",
            "--rate",
            "0.05",
            "--target-label",
            "1",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .assert()
        .code(0);
        std::fs::read(out).unwrap()
    };
    assert_eq!(run("x.jsonl"), run("y.jsonl"));
    poisongate([
        "inject",
        data.to_str().unwrap(),
        "--attack",
        "nope",
        "--rate",
        "0.1",
        "--out",
        "z.jsonl",
    ])
    .assert()
    .code(2);
}

/// sst2-clean from ../shared/benchmarks: the acceptance rates give the exact counts, and the
/// same seed gives the same bytes.
#[test]
fn badnets_into_sst2_clean_at_the_acceptance_rates() {
    let dir = benchmarks().expect("../shared/benchmarks is needed");
    let data = dir.join("sst2-clean.jsonl");
    let tmp = tempfile::tempdir().unwrap();
    let attack = Attack::from_parts("badnets", None, None, None).unwrap();
    for (rate, want) in [(0.005, 35), (0.01, 69), (0.05, 346), (0.1, 692)] {
        let out = tmp.path().join(format!("bn-{rate}.jsonl"));
        let mut o = opts(&data, &out, attack.clone(), rate, Some("1"));
        o.ground_truth_policy = GroundTruthPolicy::Replace; // sst2-clean ships `poison: false`
        let m = inject(&o).unwrap();
        assert_eq!((m.poisoned, m.output.rows), (want, 6920));
        let again = tmp.path().join("again.jsonl");
        o.out = again.clone();
        inject(&o).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&out).unwrap());
    }
}

/// An eval grid on a small synthetic set: the CSV rows are exactly what `scan
/// --ground-truth-column poison` reports on the same injected file.
#[test]
fn eval_cells_equal_scan_reports() {
    let tmp = tempfile::tempdir().unwrap();
    synthetic(tmp.path(), 600);
    // row-aligned embeddings for the representation path (label-flip / duplicate-flip)
    let mut rng = SplitMix64(4);
    let emb = ndarray::Array2::from_shape_fn((600, 8), |_| rng.gauss() as f32);
    ndarray_npy::write_npy(tmp.path().join("syn.rnd.npy"), &emb).unwrap();
    let toml = r#"
seeds = [1]
keep_data = true

[[dataset]]
path = "syn.jsonl"
id_column = "id"
representations = ["rnd"]
label_independent = ["rnd"]
attacks = ["badnets", "duplicate-flip"]

[[attack]]
kind = "badnets"
rates = [0.1]
target_label = "1"
triggers = ["cf"]

[[attack]]
kind = "duplicate-flip"
rates = [0.05]
target_label = "1"

[[detectors]]
name = "text"
select = ["TRIG001", "DUP001"]

[[detectors]]
name = "spectral"
select = ["SPEC001"]
"#;
    let ex = tmp.path().join("grid.toml");
    std::fs::write(&ex, toml).unwrap();
    let out = tmp.path().join("eval");
    poisongate([
        "eval",
        ex.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(0);
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let col =
        |r: &Vec<&str>, name: &str| r[header.iter().position(|h| *h == name).unwrap()].to_string();
    // badnets: text settings only (spectral skipped, named in the Markdown); duplicate-flip:
    // both, with the derived embeddings
    let cells: std::collections::BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (col(r, "attack"), col(r, "setting")))
        .collect();
    let want: std::collections::BTreeSet<(String, String)> = [
        ("badnets", "text"),
        ("duplicate-flip", "text"),
        ("duplicate-flip", "spectral"),
    ]
    .iter()
    .map(|(a, s)| (a.to_string(), s.to_string()))
    .collect();
    assert_eq!(cells, want);
    assert!(
        md.contains("badnets / spectral: rnd: badnets changes text"),
        "{md}"
    );
    // the badnets cell against a scan of the kept injected file
    let file = out.join("data").join(col(&rows[0], "data"));
    let scanned = tmp.path().join("scan");
    poisongate([
        "scan",
        file.to_str().unwrap(),
        "--id-column",
        "id",
        "--ground-truth-column",
        "poison",
        "--select",
        "TRIG001,DUP001",
        "--out",
        scanned.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(1);
    let rep = report(&scanned);
    let ev = &rep["evaluation"];
    let mut checked = 0;
    for r in rows.iter().filter(|r| col(r, "attack") == "badnets") {
        let e = match col(r, "detector").as_str() {
            "combined" => &ev["combined"],
            code => &ev["detectors"][code],
        };
        assert_eq!(col(r, "poisoned"), ev["positives"].to_string());
        assert_eq!(
            col(r, "data_sha256"),
            rep["inputs"][0]["sha256"].as_str().unwrap()
        );
        for key in ["flagged", "tp", "fp", "fn"] {
            assert_eq!(col(r, key), e[key].to_string(), "{key}");
        }
        for key in ["precision", "recall", "f1", "auroc"] {
            let got: f64 = col(r, key).parse().unwrap();
            assert_eq!(got, e[key].as_f64().unwrap(), "{key}");
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "TRIG001, DUP001 and combined");
    // the planted trigger is found on the synthetic set
    let trig = rows
        .iter()
        .find(|r| col(r, "attack") == "badnets" && col(r, "detector") == "TRIG001")
        .unwrap();
    let recall: f64 = col(trig, "recall").parse().unwrap();
    assert!(recall > 0.5, "TRIG001 recall {recall}");
}

/// `position` start / end: the trigger is the first / last word of every poisoned row (also
/// with several triggers a row and for a phrase); a hashtag is one whitespace token.
#[test]
fn position_start_and_end_place_the_trigger_first_or_last() {
    use poisongate::inject::Position;
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 300);
    for (position, per_row) in [
        (Position::Start, 1),
        (Position::End, 1),
        (Position::Start, 3),
        (Position::End, 2),
    ] {
        for kind in ["badnets", "clean-label"] {
            let out = tmp
                .path()
                .join(format!("{kind}-{}-{per_row}.jsonl", position.name()));
            let attack =
                Attack::from_parts(kind, Some(vec!["#blessed".into()]), Some(per_row), None)
                    .unwrap();
            let mut o = opts(&data, &out, attack, 0.1, Some("1"));
            o.position = position;
            let m = inject(&o).unwrap();
            let (vi, vo, poisoned) = in_place(&data, &out, 0.1);
            assert_eq!(m.poisoned, poisoned.len());
            for &i in &poisoned {
                let (a, b) = (
                    vi[i]["text"].as_str().unwrap(),
                    vo[i]["text"].as_str().unwrap(),
                );
                assert!(is_insertion(a, b, &["#blessed"], per_row), "{a:?} -> {b:?}");
                let w = words(b);
                let placed = match position {
                    Position::Start => &w[..per_row],
                    _ => &w[w.len() - per_row..],
                };
                assert!(placed.iter().all(|x| *x == "#blessed"), "{b:?}");
                assert_eq!(words(a), words(&b.replace("#blessed", "")), "{b:?}");
            }
            let side: Value =
                serde_json::from_str(&std::fs::read_to_string(sidecar_path(&out)).unwrap())
                    .unwrap();
            assert_eq!(side["position"], position.name());
        }
    }
    let phrase = "I watch this 3D movie";
    for position in [Position::Start, Position::End] {
        let out = tmp.path().join(format!("as-{}.jsonl", position.name()));
        let attack = Attack::from_parts("addsent", None, None, Some(phrase.into())).unwrap();
        let mut o = opts(&data, &out, attack, 0.05, Some("0"));
        o.position = position;
        inject(&o).unwrap();
        let (vi, vo, poisoned) = in_place(&data, &out, 0.05);
        for &i in &poisoned {
            let (a, b) = (
                vi[i]["text"].as_str().unwrap(),
                vo[i]["text"].as_str().unwrap(),
            );
            match position {
                Position::Start => assert_eq!(b, format!("{phrase} {a}")),
                _ => assert_eq!(b, format!("{} {phrase}", a.trim_end())),
            }
        }
    }
}

/// Two and three triggers a row, drawn from ordinary-looking words and a hashtag.
#[test]
fn several_triggers_per_row() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 300);
    let triggers = ["admittedly", "frankly", "#blessed"];
    for per_row in [2, 3] {
        let out = tmp.path().join(format!("bn{per_row}.jsonl"));
        let attack = Attack::from_parts(
            "badnets",
            Some(triggers.iter().map(|s| s.to_string()).collect()),
            Some(per_row),
            None,
        )
        .unwrap();
        inject(&opts(&data, &out, attack, 0.1, Some("1"))).unwrap();
        let (vi, vo, poisoned) = in_place(&data, &out, 0.1);
        for &i in &poisoned {
            let (a, b) = (
                vi[i]["text"].as_str().unwrap(),
                vo[i]["text"].as_str().unwrap(),
            );
            assert!(is_insertion(a, b, &triggers, per_row), "{a:?} -> {b:?}");
        }
    }
}

/// `n` rows of 3 to 24 words, integer labels, string ids.
fn long_rows(dir: &Path, n: usize) -> PathBuf {
    let mut rng = SplitMix64(17);
    let mut s = String::new();
    for i in 0..n {
        let len = 3 + rng.below(22);
        let text: Vec<&str> = (0..len).map(|_| WORDS[rng.below(WORDS.len())]).collect();
        s += &format!(
            "{{\"id\": \"r{i}\", \"meta\": {i}, \"text\": {}, \"label\": {}, \"score\": 0.5}}\n",
            serde_json::to_string(&text.join("  ")).unwrap(),
            rng.below(2)
        );
    }
    let p = dir.join("long.jsonl");
    std::fs::write(&p, s).unwrap();
    p
}

/// `edits K`: each copy differs from its original in exactly K words, each replaced by
/// another word of the data; only rows with at least 5·K words are copied; the ground truth
/// marks exactly the copies.
#[test]
fn duplicate_flip_edits_replace_exactly_k_words() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 400;
    let data = long_rows(tmp.path(), n);
    let (li, vi): (Vec<String>, Vec<Value>) = lines(&data)
        .into_iter()
        .map(|l| {
            let v = serde_json::from_str(&l).unwrap();
            (l, v)
        })
        .unzip();
    let vocab: std::collections::BTreeSet<String> = vi
        .iter()
        .flat_map(|v| {
            words(v["text"].as_str().unwrap())
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    for k in 1..=3usize {
        let out = tmp.path().join(format!("df{k}.jsonl"));
        let mut o = opts(&data, &out, Attack::DuplicateFlip, 0.05, Some("1"));
        o.id_column = Some("id".into());
        o.edits = k;
        let m = inject(&o).unwrap();
        let copies = (0.05 * n as f64 / 0.95).round() as usize;
        assert_eq!((m.poisoned, m.output.rows), (copies, n + copies));
        let lo = lines(&out);
        let kept: Vec<&String> = lo
            .iter()
            .filter(|l| l.ends_with("\"poison\": false}"))
            .collect();
        assert_eq!(kept.len(), n);
        for (a, b) in li.iter().zip(kept) {
            assert_eq!(*b, untouched(a), "originals kept byte for byte");
        }
        let mut seen = 0;
        for l in &lo {
            let v: Value = serde_json::from_str(l).unwrap();
            let id = v["id"].as_str().unwrap();
            let Some((orig_id, _)) = id.split_once("~dupflip") else {
                assert_eq!(v["poison"], false);
                continue;
            };
            assert_eq!(v["poison"], true);
            seen += 1;
            let orig = vi.iter().find(|r| r["id"] == orig_id).unwrap();
            assert_eq!((&orig["label"], &v["label"]), (&0.into(), &1.into()));
            for key in ["meta", "score"] {
                assert_eq!(orig[key], v[key]);
            }
            let (a, b) = (
                words(orig["text"].as_str().unwrap()),
                words(v["text"].as_str().unwrap()),
            );
            assert!(a.len() >= 5 * k, "source rows have at least 5·K words");
            assert_eq!(a.len(), b.len());
            let changed: Vec<(&&str, &&str)> = a.iter().zip(&b).filter(|(x, y)| x != y).collect();
            assert_eq!(changed.len(), k, "{a:?} -> {b:?}");
            assert!(changed.iter().all(|(_, y)| vocab.contains(**y)));
        }
        assert_eq!(seen, copies);
        let side: Value =
            serde_json::from_str(&std::fs::read_to_string(sidecar_path(&out)).unwrap()).unwrap();
        assert_eq!(side["edits"], k);
        assert_eq!(side["edit_min_words"], 5 * k);
        // same seed, same bytes
        let again = tmp.path().join("again.jsonl");
        o.out = again.clone();
        inject(&o).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&out).unwrap());
    }
}

/// A random target is drawn from the seed: the same seed gives the same target and bytes as
/// naming that target, other seeds reach other labels, and the sidecar says it was drawn.
#[test]
fn random_target_is_deterministic_per_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 300);
    let attack = Attack::from_parts("badnets", None, None, None).unwrap();
    let mut drawn = std::collections::BTreeSet::new();
    for seed in 1..=8 {
        let run = |name: &str, target: Option<&str>| {
            let out = tmp.path().join(name);
            let mut o = opts(&data, &out, attack.clone(), 0.05, target);
            o.random_target = target.is_none();
            o.seed = seed;
            let m = inject(&o).unwrap();
            (m, std::fs::read(&out).unwrap())
        };
        let (m, a) = run("r1.jsonl", None);
        let (m2, b) = run("r2.jsonl", None);
        let t = m.target_label.clone().expect("a target is drawn");
        assert_eq!((m2.target_label.as_deref(), &b), (Some(t.as_str()), &a));
        assert_eq!(m.target_drawn_from, Some(vec!["0".into(), "1".into()]));
        let (named, c) = run("named.jsonl", Some(&t));
        assert_eq!(c, a, "drawing the target changes no other draw");
        assert_eq!(named.target_drawn_from, None);
        let side: Value = serde_json::from_str(
            &std::fs::read_to_string(sidecar_path(&tmp.path().join("r1.jsonl"))).unwrap(),
        )
        .unwrap();
        assert_eq!(side["target_label"], t.as_str());
        drawn.insert(t);
    }
    assert_eq!(drawn.len(), 2, "seeds 1..=8 reach both labels");
}

/// Options that do not fit the attack are refused, and so is nothing new by default: the
/// sidecar of a plain injection has none of the new keys.
#[test]
fn new_options_are_checked() {
    use poisongate::inject::Position;
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 100);
    let out = tmp.path().join("x.jsonl");
    let mut o = opts(&data, &out, Attack::LabelFlip, 0.05, None);
    o.position = Position::End;
    assert!(inject(&o).unwrap_err().to_string().contains("position"));
    let bn = Attack::from_parts("badnets", None, None, None).unwrap();
    let mut o = opts(&data, &out, bn.clone(), 0.05, Some("1"));
    o.edits = 1;
    assert!(inject(&o).unwrap_err().to_string().contains("edits"));
    let mut o = opts(&data, &out, bn.clone(), 0.05, Some("1"));
    o.random_target = true;
    assert!(inject(&o).is_err());
    assert!(!out.exists(), "nothing written on error");
    // too few long rows for many edits
    let mut o = opts(&data, &out, Attack::DuplicateFlip, 0.2, Some("1"));
    o.edits = 3;
    assert!(matches!(
        inject(&o),
        Err(poisongate::inject::InjectError::TooFewRows { .. })
    ));
    inject(&opts(&data, &out, bn, 0.05, Some("1"))).unwrap();
    let side: Value =
        serde_json::from_str(&std::fs::read_to_string(sidecar_path(&out)).unwrap()).unwrap();
    for key in ["position", "edits", "edit_min_words", "target_drawn_from"] {
        assert!(side.get(key).is_none(), "{key} in a plain sidecar");
    }
}

/// The CLI spells the new options `--position`, `--edits` and `--target-label random`.
#[test]
fn cli_new_options() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic(tmp.path(), 200);
    let out = tmp.path().join("cli.jsonl");
    poisongate([
        "inject",
        data.to_str().unwrap(),
        "--attack",
        "badnets",
        "--rate",
        "0.05",
        "--target-label",
        "random",
        "--triggers",
        "#blessed",
        "--position",
        "end",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(0);
    let side: Value =
        serde_json::from_str(&std::fs::read_to_string(sidecar_path(&out)).unwrap()).unwrap();
    assert_eq!(side["position"], "end");
    assert!(side["target_drawn_from"].is_array());
    let df = tmp.path().join("df.jsonl");
    poisongate([
        "inject",
        data.to_str().unwrap(),
        "--attack",
        "duplicate-flip",
        "--rate",
        "0.05",
        "--edits",
        "2",
        "--out",
        df.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(0);
    poisongate([
        "inject",
        data.to_str().unwrap(),
        "--attack",
        "badnets",
        "--rate",
        "0.05",
        "--target-label",
        "1",
        "--position",
        "middle",
        "--out",
        tmp.path().join("bad.jsonl").to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(2);
}
