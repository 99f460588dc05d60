//! `scan --stream` against the in-memory scan: the same clean and quarantine bytes and the same
//! detector entries, verdict, evaluation and listed rows, on every shipped benchmark (text only,
//! and with MiniLM embeddings for every streamed detector but DUP002's embedding relation), on
//! Parquet, in batches that do not divide the rows; what cannot stream is refused.

use crate::cli::demo_parquet;
use crate::common::*;
use std::path::Path;

/// The parts of a report both engines must agree on.
fn agreed(dir: &Path) -> serde_json::Value {
    let r = deterministic(report(dir));
    serde_json::json!({
        "detectors": r["detectors"],
        "skipped": r["skipped_detectors"],
        "reconciliation": r["reconciliation"],
        "verdict": r["verdict"],
        "evaluation": r["evaluation"],
        "quarantined_rows": r["quarantined_rows"],
        "inputs": r["inputs"],
    })
}

/// Scans `args` into `dir/mem` and `dir/stream` (with `--stream`) and compares them.
fn same_both_ways(dir: &Path, name: &str, args: &[&str], ext: &str) -> serde_json::Value {
    let (mem, st) = (
        dir.join(format!("{name}-mem")),
        dir.join(format!("{name}-stream")),
    );
    for (out, extra) in [(&mem, None), (&st, Some("--stream"))] {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--out", out.to_str().unwrap(), "--quiet", "--reproducible"]);
        a.extend(extra);
        let code = poisongate(&a).output().unwrap().status.code();
        assert!(
            matches!(code, Some(0 | 1)),
            "{name} {extra:?}: exit {code:?}"
        );
    }
    for f in ["clean", "quarantine"] {
        let f = format!("{f}.{ext}");
        assert!(
            std::fs::read(mem.join(&f)).unwrap() == std::fs::read(st.join(&f)).unwrap(),
            "{name}: {f} differs"
        );
    }
    let a = agreed(&mem);
    assert_eq!(a, agreed(&st), "{name}: reports differ");
    assert_eq!(report(&st)["settings"]["engine"], "streaming");
    a
}

#[test]
fn streaming_scans_equal_in_memory_scans_on_every_benchmark() {
    let tmp = tempfile::tempdir().unwrap();
    // batches of 997 rows (no benchmark's row count is a multiple), and the near-duplicate
    // keys in slices of 1500 groups (2 to 8 passes of round 2)
    let config = tmp.path().join("batches.toml");
    std::fs::write(&config, "batch_rows = 997\nnear_slice_groups = 1500\n").unwrap();
    let config = config.to_str().unwrap();
    let sets = benchmark_sets();
    let (mut flagged, mut with_embeddings) = (0, 0);
    for set in &sets {
        let name = set.file_stem().unwrap().to_str().unwrap();
        let data = set.to_str().unwrap();
        let common = ["scan", data, "--id-column", "id", "--config", config];
        let mut text = common.to_vec();
        text.extend(["--ground-truth-column", "poison"]);
        let r = same_both_ways(tmp.path(), name, &text, "jsonl");
        flagged += r["reconciliation"]["quarantined_rows"].as_u64().unwrap();
        let npy = set.with_extension("minilm.npy");
        if npy.exists() {
            let mut a = common.to_vec();
            a.extend([
                "--embeddings",
                npy.to_str().unwrap(),
                "--select",
                "ACT001,SPEC001,DUP001,DUP003,TRIG001",
            ]);
            same_both_ways(tmp.path(), &format!("{name}-minilm"), &a, "jsonl");
            with_embeddings += 1;
        }
    }
    assert!(
        sets.len() >= 12 && with_embeddings >= 12 && flagged > 1000,
        "{} sets, {with_embeddings} with embeddings, {flagged} rows flagged",
        sets.len()
    );
}

#[test]
fn streaming_reads_parquet_and_refuses_what_does_not_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let pq = tmp.path().join("demo.parquet");
    demo_parquet(&pq);
    let (data, emb) = demo();
    let config = tmp.path().join("batches.toml");
    std::fs::write(&config, "batch_rows = 333\n").unwrap();
    // the embeddings from a .npy file, then from a column of the Parquet file itself (read
    // with each batch's rows)
    let with = |embeddings: [&str; 2], name: &str| {
        let mut a = vec!["scan", pq.to_str().unwrap()];
        a.extend(embeddings);
        a.extend([
            "--select",
            "ACT001,SPEC001,DUP001,DUP003,TRIG001",
            "--id-column",
            "id",
            "--ground-truth-column",
            "poison",
            "--config",
            config.to_str().unwrap(),
        ]);
        same_both_ways(tmp.path(), name, &a, "parquet")
    };
    let r = with(["--embeddings", emb.to_str().unwrap()], "demo-parquet");
    assert!(r["reconciliation"]["quarantined_rows"].as_u64().unwrap() > 0);
    let c = with(["--embedding-column", "embedding"], "demo-parquet-column");
    assert_eq!(c["detectors"], r["detectors"], "column and .npy agree");
    let column_dup002 = tmp.path().join("column-dup002");
    let o = poisongate([
        "scan",
        pq.to_str().unwrap(),
        "--embedding-column",
        "embedding",
        "--stream",
        "--out",
        column_dup002.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("embedding relation"));
    let refused = [
        (
            vec!["--embeddings", emb.to_str().unwrap()],
            "embedding relation",
        ),
        (vec!["--dedup", "keep-first"], "--dedup"),
        (
            vec!["--invalid-rows", "quarantine"],
            "--invalid-rows quarantine",
        ),
        (
            vec!["--select", "LBL001", "--embeddings", emb.to_str().unwrap()],
            "LBL001 has no rounds",
        ),
    ];
    for (extra, why) in refused {
        let out = tmp.path().join("refused");
        let mut a = vec!["scan", data.to_str().unwrap(), "--stream", "--out"];
        a.push(out.to_str().unwrap());
        a.extend(extra);
        let o = poisongate(&a).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{why}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{why}: {err}");
        assert!(!out.exists(), "nothing written when refused");
    }
}
