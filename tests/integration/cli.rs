//! The CLI end to end on the demo dataset and on malformed inputs.

use crate::common::*;
use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

#[test]
fn demo_scan_quarantines_the_backdoor_and_reconciles() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // the planted backdoor is found, so the default gate (no quarantine allowed) fails: exit 1
    scan_demo(&out, &[]).code(1);
    let r = report(&out);
    assert_eq!(r["schema_version"], poisongate::report::SCHEMA_VERSION);
    let input: Vec<_> = jsonl(&demo().0);
    let clean = jsonl(&out.join("clean.jsonl"));
    let quarantine = jsonl(&out.join("quarantine.jsonl"));
    // reconciliation: counted, balanced, and every input row lands in exactly one output
    let rec = &r["reconciliation"];
    assert_eq!(rec["input_rows"], input.len());
    assert_eq!(rec["clean_rows"], clean.len());
    assert_eq!(rec["quarantined_rows"], quarantine.len());
    assert_eq!(rec["balanced"], true);
    let ids = |rows: &[serde_json::Value]| -> Vec<String> {
        rows.iter()
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut all: Vec<String> = ids(&clean);
    all.extend(ids(&quarantine));
    all.sort();
    let mut want = ids(&input);
    want.sort();
    assert_eq!(all, want);
    // every original value unchanged; quarantine rows gain score and reasons
    let by_id: std::collections::HashMap<String, &serde_json::Value> = input
        .iter()
        .map(|v| (v["id"].as_str().unwrap().to_string(), v))
        .collect();
    for q in &quarantine {
        let orig = by_id[q["id"].as_str().unwrap()];
        for (k, v) in orig.as_object().unwrap() {
            assert_eq!(&q[k], v);
        }
        assert!(q["poisongate_score"].as_f64().unwrap() >= 1.0);
        let reasons = q["poisongate_reasons"].as_array().unwrap();
        assert!(!reasons.is_empty());
        for reason in reasons {
            let reason = reason.as_str().unwrap();
            let code = reason.split(':').next().unwrap();
            assert!(poisongate::detectors::find(code).is_some(), "{reason}");
        }
    }
    // TRIG001 finds most of the planted rows and few others, and names the trigger; so does the
    // opt-in SPEC001 when selected
    let spec = tmp.path().join("spec");
    scan_demo(&spec, &["--select", "SPEC001"]).code(1);
    for (code, r) in [("TRIG001", &r), ("SPEC001", &report(&spec))] {
        let ev = &r["evaluation"]["detectors"][code];
        assert!(ev["recall"].as_f64().unwrap() > 0.8, "{code} {ev}");
        assert!(ev["precision"].as_f64().unwrap() > 0.8, "{code} {ev}");
    }
    // and the default scan as a whole holds back few clean rows: the demo's templated reviews
    // (the same sentence frame filled with other words under the other label) are consistent
    // examples, not flipped copies
    let combined = &r["evaluation"]["combined"];
    assert!(combined["precision"].as_f64().unwrap() >= 0.9, "{combined}");
    let trig = r["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "TRIG001")
        .unwrap();
    assert!(
        trig["summary"].to_string().contains("\"cf\""),
        "{}",
        trig["summary"]
    );
    // provenance: digests of the inputs and outputs
    let data_sha = &r["inputs"][0]["sha256"];
    assert_eq!(data_sha.as_str().unwrap().len(), 64);
    for o in r["outputs"].as_array().unwrap() {
        let bytes = std::fs::read(out.join(o["path"].as_str().unwrap())).unwrap();
        use sha2::Digest;
        assert_eq!(o["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    }
    assert_eq!(r["verdict"]["status"], "fail");
}

#[test]
fn gate_passes_within_the_policy() {
    let tmp = tempfile::tempdir().unwrap();
    // the demo's planted rows are 3.5 % of it
    scan_demo(
        &tmp.path().join("o"),
        &["--max-quarantine-fraction", "0.05"],
    )
    .code(0);
}

#[test]
fn one_and_two_threads_give_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    scan_demo(&a, &["--threads", "1"]).code(1);
    scan_demo(&b, &["--threads", "2"]).code(1);
    for f in ["clean.jsonl", "quarantine.jsonl"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(deterministic(report(&a)), deterministic(report(&b)));
}

/// Writes the demo as Parquet with the embeddings in a fixed-size-list column.
pub(crate) fn demo_parquet(path: &Path) {
    let rows = jsonl(&demo().0);
    let emb: ndarray::Array2<f32> = ndarray_npy::read_npy(demo().1).unwrap();
    let d = emb.ncols() as i32;
    let mut list = FixedSizeListBuilder::new(Float32Builder::new(), d);
    for r in emb.rows() {
        list.values().append_slice(r.as_slice().unwrap());
        list.append(true);
    }
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|v| v["id"].as_str().unwrap()),
            )),
        ),
        (
            "text",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|v| v["text"].as_str().unwrap()),
            )),
        ),
        (
            "label",
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|v| v["label"].as_i64().unwrap()),
            )),
        ),
        (
            "poison",
            Arc::new(BooleanArray::from(
                rows.iter()
                    .map(|v| v["poison"].as_bool().unwrap())
                    .collect::<Vec<_>>(),
            )),
        ),
        ("embedding", Arc::new(list.finish())),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn parquet_ids(path: &Path) -> BTreeSet<String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut ids = BTreeSet::new();
    for b in reader {
        let b = b.unwrap();
        let col = b.column_by_name("id").unwrap();
        let s = col.as_any().downcast_ref::<StringArray>().unwrap();
        ids.extend(s.iter().map(|x| x.unwrap().to_string()));
    }
    ids
}

#[test]
fn jsonl_and_parquet_give_the_same_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let pq = tmp.path().join("reviews.parquet");
    demo_parquet(&pq);
    let (jo, po) = (tmp.path().join("j"), tmp.path().join("p"));
    scan_demo(&jo, &[]).code(1);
    poisongate([
        "scan",
        pq.to_str().unwrap(),
        "--embedding-column",
        "embedding",
        "--id-column",
        "id",
        "--ground-truth-column",
        "poison",
        "--out",
        po.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(1);
    let jq: BTreeSet<String> = jsonl(&jo.join("quarantine.jsonl"))
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    let pqids = parquet_ids(&po.join("quarantine.parquet"));
    assert!(!jq.is_empty());
    assert_eq!(jq, pqids);
    let (rj, rp) = (report(&jo), report(&po));
    assert_eq!(rj["evaluation"]["combined"], rp["evaluation"]["combined"]);
    assert_eq!(rp["reconciliation"]["balanced"], true);
    let clean = parquet_ids(&po.join("clean.parquet"));
    assert_eq!(clean.len() + pqids.len(), 3000);
    assert!(clean.is_disjoint(&pqids));
    // verify re-counts Parquet rows from the footers
    let ok = poisongate(["verify", po.to_str().unwrap()])
        .assert()
        .code(0);
    let stdout = String::from_utf8_lossy(&ok.get_output().stdout).to_string();
    assert!(stdout.contains("3000 input rows"), "{stdout}");
}

/// Runs a scan expected to fail with exit 2, and checks the message and the empty output.
fn expect_error(args: &[&str], out: &Path, needle: &str) {
    let mut all: Vec<&str> = vec!["scan"];
    all.extend_from_slice(args);
    let o = out.to_str().unwrap();
    all.extend_from_slice(&["--out", o, "--quiet"]);
    let assert = poisongate(all).assert().code(2);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(stderr.contains(needle), "stderr lacks `{needle}`: {stderr}");
    let left: Vec<_> = std::fs::read_dir(out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "output folder not empty after an error: {left:?}"
    );
}

#[test]
fn malformed_inputs_exit_2_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (_, emb) = demo();
    let emb = emb.to_str().unwrap();
    let out = t.join("out");

    let truncated = t.join("truncated.jsonl");
    std::fs::write(
        &truncated,
        "{\"text\": \"a b\", \"label\": 1}\n{\"text\": \"c d\", \"lab",
    )
    .unwrap();
    expect_error(
        &[truncated.to_str().unwrap(), "--embeddings", emb],
        &out,
        "line 2",
    );

    let missing = t.join("missing.jsonl");
    std::fs::write(&missing, "{\"text\": \"a b\", \"y\": 1}\n").unwrap();
    expect_error(
        &[missing.to_str().unwrap(), "--embeddings", emb],
        &out,
        "label",
    );

    let empty = t.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    expect_error(
        &[empty.to_str().unwrap(), "--embeddings", emb],
        &out,
        "no rows",
    );

    let nonnum = t.join("nonnum.jsonl");
    std::fs::write(
        &nonnum,
        "{\"text\": \"a\", \"label\": 1, \"e\": [0.1, 0.2]}\n{\"text\": \"b\", \"label\": 0, \"e\": [0.1, \"x\"]}\n",
    )
    .unwrap();
    expect_error(
        &[nonnum.to_str().unwrap(), "--embedding-column", "e"],
        &out,
        "line 2",
    );

    let obj = t.join("object.npy");
    let mut header = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(b"\x80\x04N.");
    std::fs::write(&obj, bytes).unwrap();
    let data = demo().0;
    expect_error(
        &[
            data.to_str().unwrap(),
            "--embeddings",
            obj.to_str().unwrap(),
        ],
        &out,
        "object",
    );

    let short = t.join("short.jsonl");
    std::fs::write(
        &short,
        "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 0}\n",
    )
    .unwrap();
    expect_error(
        &[short.to_str().unwrap(), "--embeddings", emb],
        &out,
        "3000",
    );

    // an existing output folder keeps its other files and gains nothing
    std::fs::create_dir_all(&out).unwrap();
    expect_error(
        &[short.to_str().unwrap(), "--embeddings", emb],
        &out,
        "row count mismatch",
    );
}

#[test]
fn list_and_explain() {
    let a = poisongate(["list"]).assert().success();
    assert!(String::from_utf8_lossy(&a.get_output().stdout).contains("SPEC001"));
    let a = poisongate(["explain", "spec001"]).assert().success();
    assert!(String::from_utf8_lossy(&a.get_output().stdout).contains("## Method"));
    poisongate(["explain", "NOPE999"]).assert().code(2);
    poisongate(["scan"]).assert().code(2);
}

#[test]
fn embeddings_table_is_joined_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = jsonl(&demo().0);
    let emb: ndarray::Array2<f32> = ndarray_npy::read_npy(demo().1).unwrap();
    // the embeddings in another order, keyed by id
    let mut body = String::new();
    for i in (0..rows.len()).rev() {
        let v: Vec<f32> = emb.row(i).to_vec();
        body += &serde_json::json!({"id": rows[i]["id"], "vec": v}).to_string();
        body.push('\n');
    }
    let table = tmp.path().join("emb.jsonl");
    std::fs::write(&table, body).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    scan_demo(&a, &["--select", "SPEC001"]).code(1);
    let (data, _) = demo();
    let args = |out: &Path| {
        vec![
            "scan".to_string(),
            data.display().to_string(),
            "--embeddings".into(),
            table.display().to_string(),
            "--embedding-column".into(),
            "vec".into(),
            "--id-column".into(),
            "id".into(),
            "--select".into(),
            "SPEC001".into(),
            "--out".into(),
            out.display().to_string(),
            "--quiet".into(),
        ]
    };
    poisongate(args(&b)).assert().code(1);
    assert_eq!(
        std::fs::read(a.join("quarantine.jsonl")).unwrap(),
        std::fs::read(b.join("quarantine.jsonl")).unwrap()
    );
    // an id without an embedding is an error naming it
    let short: String = std::fs::read_to_string(&table)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&table, short).unwrap();
    let c = tmp.path().join("c");
    let out = poisongate(args(&c)).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("has no embedding"), "{stderr}");
    assert!(!c.exists());
}

#[test]
fn config_file_settings_reach_the_report_and_bad_params_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("poisongate.toml");
    std::fs::write(
        &cfg,
        "seed = 11\nmax_quarantine_fraction = 0.5\nselect = [\"SPEC001\"]\n[detectors.SPEC001]\nmax_minor_weight = 0.2\n",
    )
    .unwrap();
    let out = tmp.path().join("o");
    scan_demo(&out, &["--config", cfg.to_str().unwrap()]).code(0);
    let r = report(&out);
    assert_eq!(r["settings"]["seed"], 11);
    assert_eq!(
        r["settings"]["detectors"]["SPEC001"]["max_minor_weight"],
        0.2
    );
    assert_eq!(r["detectors"].as_array().unwrap().len(), 1);
    // a flag wins over the file
    let out2 = tmp.path().join("o2");
    scan_demo(&out2, &["--config", cfg.to_str().unwrap(), "--seed", "12"]).code(0);
    assert_eq!(report(&out2)["settings"]["seed"], 12);
    // unknown detector parameter: exit 2, nothing written
    std::fs::write(&cfg, "[detectors.SPEC001]\nmax_minor_wieght = 0.2\n").unwrap();
    let out3 = tmp.path().join("o3");
    let a = scan_demo(&out3, &["--config", cfg.to_str().unwrap()]).code(2);
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(stderr.contains("max_minor_wieght"), "{stderr}");
    assert!(!out3.exists());
}

#[test]
fn reproducible_reports_are_byte_identical_across_thread_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    scan_demo(&a, &["--threads", "1", "--reproducible"]).code(1);
    scan_demo(&b, &["--threads", "2", "--reproducible"]).code(1);
    for f in [
        "report.json",
        "report.html",
        "bom.cdx.json",
        "provenance.intoto.json",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(report(&a)["run"]["seconds"], 0.0);
}
