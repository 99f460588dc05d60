//! `poisongate fit` and `scan --reference`: copies of a trusted corpus's rows written by
//! `inject --copies-from`, found against the trusted state; the state's bytes independent of how
//! the corpus is split; malformed states and missing references refused.

use crate::common::*;
use std::path::{Path, PathBuf};

/// Lines of `src` split by line number: every fifth line is new, the rest trusted.
fn split(src: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(src).expect("corpus readable");
    let (mut trusted, mut new) = (String::new(), String::new());
    for (i, l) in text.lines().enumerate() {
        let to = if i % 5 == 2 { &mut new } else { &mut trusted };
        to.push_str(l);
        to.push('\n');
    }
    let (t, n) = (dir.join("trusted.jsonl"), dir.join("new-clean.jsonl"));
    std::fs::write(&t, trusted).expect("write");
    std::fs::write(&n, new).expect("write");
    (t, n)
}

/// `poisongate fit DATA --state STATE`, which must succeed.
fn fit(data: &Path, state: &Path) {
    poisongate([
        "fit",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ])
    .assert()
    .success();
}

/// The new part with flipped copies of trusted rows (verbatim and with 1 to 3 words replaced,
/// `copies` each) and one trusted row copied 50 times, all written by `inject --copies-from`.
fn poison_new(trusted: &Path, clean: &Path, dir: &Path, copies: usize) -> PathBuf {
    let mut cur = clean.to_path_buf();
    let mut policy = "replace";
    for k in 0..4 {
        let next = dir.join(format!("new-flip{k}.jsonl"));
        poisongate([
            "inject",
            cur.to_str().unwrap(),
            "--attack",
            "duplicate-flip",
            "--count",
            &copies.to_string(),
            "--edits",
            &k.to_string(),
            "--copies-from",
            trusted.to_str().unwrap(),
            "--seed",
            &(7 + k).to_string(),
            "--id-column",
            "id",
            "--existing-ground-truth",
            policy,
            "--out",
            next.to_str().unwrap(),
            "-q",
        ])
        .assert()
        .success();
        cur = next;
        policy = "merge";
    }
    let out = dir.join("new.jsonl");
    poisongate([
        "inject",
        cur.to_str().unwrap(),
        "--attack",
        "amplify",
        "--count",
        "50",
        "--copies-from",
        trusted.to_str().unwrap(),
        "--seed",
        "3",
        "--id-column",
        "id",
        "--existing-ground-truth",
        "merge",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ])
    .assert()
    .success();
    out
}

#[test]
fn copies_from_writes_trusted_rows_flipped_and_amplified() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = demo();
    let (trusted, clean) = split(&data, tmp.path());
    let new = poison_new(&trusted, &clean, tmp.path(), 10);
    let trusted_rows = jsonl(&trusted);
    let by_id = |id: &str| {
        trusted_rows
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("copy of an unknown trusted row {id}"))
            .clone()
    };
    let clean_rows = jsonl(&clean);
    let rows = jsonl(&new);
    assert_eq!(rows.len(), clean_rows.len() + 4 * 10 + 50);
    let (mut flips, mut amplified) = (0, 0);
    for r in &rows {
        let id = r["id"].as_str().unwrap();
        if let Some((src, tag)) = id.split_once('~') {
            assert_eq!(r["poison"], true, "{id}");
            let orig = by_id(src);
            if tag.starts_with("amplify") {
                amplified += 1;
                assert_eq!(r["text"], orig["text"]);
                assert_eq!(r["label"], orig["label"], "amplify keeps the label");
            } else {
                flips += 1;
                assert_ne!(
                    r["label"], orig["label"],
                    "a flipped copy changes the label"
                );
            }
        } else {
            assert_eq!(r["poison"], false, "{id}");
        }
    }
    assert_eq!((flips, amplified), (40, 50));
    // the data's own rows are all there, in order
    let kept: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| !r["id"].as_str().unwrap().contains('~'))
        .map(|r| &r["id"])
        .collect();
    let want: Vec<&serde_json::Value> = clean_rows.iter().map(|r| &r["id"]).collect();
    assert_eq!(kept, want);
    // --copies-from belongs to the attacks that copy
    poisongate([
        "inject",
        clean.to_str().unwrap(),
        "--attack",
        "label-flip",
        "--rate",
        "0.1",
        "--copies-from",
        trusted.to_str().unwrap(),
        "--out",
        tmp.path().join("x.jsonl").to_str().unwrap(),
    ])
    .assert()
    .code(2);
}

#[test]
fn the_state_does_not_depend_on_how_the_corpus_is_split() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = demo();
    let text = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 3);
    let (pa, pb) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    std::fs::write(&pa, a.join("\n") + "\n").unwrap();
    std::fs::write(&pb, b.join("\n") + "\n").unwrap();
    let one = tmp.path().join("one.pgstate");
    let two = tmp.path().join("two.pgstate");
    for threads in ["1", "2"] {
        poisongate([
            "fit",
            data.to_str().unwrap(),
            "--state",
            one.to_str().unwrap(),
        ])
        .env("RAYON_NUM_THREADS", threads)
        .assert()
        .success();
        poisongate([
            "fit",
            pa.to_str().unwrap(),
            pb.to_str().unwrap(),
            "--state",
            two.to_str().unwrap(),
        ])
        .env("RAYON_NUM_THREADS", threads)
        .assert()
        .success();
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    }
}

#[test]
fn the_state_does_not_depend_on_the_batches_it_is_read_in() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, emb) = demo();
    for embeddings in [vec![], vec![emb.clone()]] {
        let mut states = Vec::new();
        for batch_rows in [1, 7, 1000, poisongate::fit::FIT_BATCH_ROWS] {
            let state = tmp.path().join(format!("s{batch_rows}.pgstate"));
            let done = poisongate::fit::fit(&poisongate::fit::FitOptions {
                data: vec![data.clone()],
                text_column: "text".into(),
                label_column: "label".into(),
                params: toml::Table::new(),
                state: state.clone(),
                embeddings: embeddings.clone(),
                batch_rows,
            })
            .unwrap();
            assert!(done.rows > 1000, "the demo spans several batches");
            states.push(std::fs::read(&state).unwrap());
        }
        assert!(states.windows(2).all(|w| w[0] == w[1]));
    }
    // embeddings with fewer rows than the data are refused, and nothing is written
    let short = tmp.path().join("short.npy");
    let (x, _) = poisongate::ingest::read_embeddings(&emb, None).unwrap();
    ndarray_npy::write_npy(&short, &x.slice(ndarray::s![..10, ..]).to_owned()).unwrap();
    let state = tmp.path().join("never.pgstate");
    let e = poisongate::fit::fit(&poisongate::fit::FitOptions {
        data: vec![data.clone()],
        text_column: "text".into(),
        label_column: "label".into(),
        params: toml::Table::new(),
        state: state.clone(),
        embeddings: vec![short],
        batch_rows: 7,
    })
    .unwrap_err();
    assert!(e.to_string().contains("10 rows, but"), "{e}");
    assert!(!state.exists());
}

#[test]
fn malformed_states_and_missing_references_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = demo();
    let state = tmp.path().join("demo.pgstate");
    fit(&data, &state);
    let bytes = std::fs::read(&state).unwrap();
    let bad = tmp.path().join("bad.pgstate");
    std::fs::write(&bad, &bytes[..bytes.len() - 5]).unwrap();
    let out = tmp.path().join("o");
    let a = poisongate([
        "scan",
        data.to_str().unwrap(),
        "--reference",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "-q",
    ])
    .assert()
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        err.contains("bad.pgstate") && err.contains("truncated"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    // a state keyed by another normalisation
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[detectors.REF001]\ncase_fold = false\n[detectors.REF002]\ncase_fold = false\n",
    )
    .unwrap();
    let a = poisongate([
        "scan",
        data.to_str().unwrap(),
        "--reference",
        state.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "-q",
    ])
    .assert()
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("another text normalisation"), "{err}");
    // the reference detectors without a reference
    poisongate(["scan", data.to_str().unwrap(), "--select", "REF001", "-q"])
        .assert()
        .code(2);
    // instruction rows have no label to check against a text-label corpus
    let alpaca = tmp.path().join("alpaca.jsonl");
    std::fs::write(
        &alpaca,
        "{\"instruction\": \"say hi\", \"input\": \"\", \"output\": \"hi\"}\n".repeat(3),
    )
    .unwrap();
    let a = poisongate([
        "scan",
        alpaca.to_str().unwrap(),
        "--reference",
        state.to_str().unwrap(),
        "-q",
    ])
    .assert()
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("text-label"), "{err}");
}

/// Split, poison, fit and scan one corpus of ../shared/benchmarks; returns (recall of the added
/// rows, share of the new batch's own rows flagged) for the reference detectors.
fn reference_cell(corpus: &str) -> Option<(f64, f64, serde_json::Value)> {
    let bench = benchmarks()?;
    let tmp = tempfile::tempdir().unwrap();
    let (trusted, clean) = split(&bench.join(format!("{corpus}-clean.jsonl")), tmp.path());
    let new = poison_new(&trusted, &clean, tmp.path(), 40);
    let state = tmp.path().join("trusted.pgstate");
    fit(&trusted, &state);
    let out = tmp.path().join("scan");
    poisongate([
        "scan",
        new.to_str().unwrap(),
        "--reference",
        state.to_str().unwrap(),
        "--select",
        "REF",
        "--id-column",
        "id",
        "--ground-truth-column",
        "poison",
        "--out",
        out.to_str().unwrap(),
        "-q",
    ])
    .assert()
    .code(1);
    let r = report(&out);
    // the state is an input of the report and of the provenance statement
    let digest = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(std::fs::read(&state).unwrap()))
    };
    let input = r["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["role"] == "reference")
        .expect("the reference is an input");
    assert_eq!(input["sha256"], digest.as_str());
    poisongate(["verify", out.to_str().unwrap()])
        .assert()
        .success();
    // report.html shows the batch against the trusted corpus
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("<section id=\"reference\">") && html.contains("trusted share"),
        "report.html lacks the reference section"
    );
    let e = &r["evaluation"];
    let c = &e["combined"];
    let positives = e["positives"].as_f64().unwrap();
    let clean_rows = r["reconciliation"]["input_rows"].as_f64().unwrap() - positives;
    Some((
        c["recall"].as_f64().unwrap(),
        c["fp"].as_f64().unwrap() / clean_rows,
        e.clone(),
    ))
}

#[test]
fn flipped_and_amplified_trusted_rows_are_found_in_sst2_and_sms() {
    for corpus in ["sst2", "sms-spam"] {
        let Some((recall, other, e)) = reference_cell(corpus) else {
            eprintln!("skipped: ../shared/benchmarks is absent");
            return;
        };
        assert!(recall >= 0.98, "{corpus}: recall {recall}: {e}");
        assert!(
            other <= 0.001,
            "{corpus}: {other} of the other rows flagged: {e}"
        );
        // the 50 copies of one trusted row are REF002's, also on SMS, whose own duplicates
        // hide them from DUP003
        assert_eq!(e["detectors"]["REF002"]["tp"], 50, "{corpus}: {e}");
    }
}

#[test]
fn parquet_and_jsonl_give_the_same_copies_and_the_same_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = crate::inject::synthetic(tmp.path(), 200);
    let text = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let p = |name: &str| tmp.path().join(name);
    std::fs::write(p("trusted.jsonl"), lines[..150].join("\n") + "\n").unwrap();
    std::fs::write(p("new.jsonl"), lines[150..].join("\n") + "\n").unwrap();
    for stem in ["trusted", "new"] {
        crate::inject::write_parquet(&p(&format!("{stem}.jsonl")), &p(&format!("{stem}.parquet")));
    }
    let spec = poisongate::ingest::ColumnSpec {
        text: Some("text".into()),
        label: Some("label".into()),
        id: Some("id".into()),
        ground_truth: Some("poison".into()),
        ..Default::default()
    };
    let mut tables = Vec::new();
    for ext in ["jsonl", "parquet"] {
        let flipped = p(&format!("flip.{ext}"));
        let out = p(&format!("out.{ext}"));
        let src = |s: &str| p(&format!("{s}.{ext}")).display().to_string();
        poisongate([
            "inject",
            &src("new"),
            "--attack",
            "duplicate-flip",
            "--count",
            "10",
            "--edits",
            "1",
            "--copies-from",
            &src("trusted"),
            "--seed",
            "4",
            "--id-column",
            "id",
            "--out",
            flipped.to_str().unwrap(),
            "-q",
        ])
        .assert()
        .success();
        poisongate([
            "inject",
            flipped.to_str().unwrap(),
            "--attack",
            "amplify",
            "--count",
            "15",
            "--copies-from",
            &src("trusted"),
            "--seed",
            "5",
            "--id-column",
            "id",
            "--existing-ground-truth",
            "merge",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ])
        .assert()
        .success();
        let t = poisongate::ingest::read_table(&out, &spec).unwrap();
        assert_eq!(t.n_rows, 50 + 10 + 15);
        assert_eq!(
            t.ground_truth
                .as_ref()
                .unwrap()
                .iter()
                .filter(|&&g| g)
                .count(),
            25
        );
        tables.push(t);
        poisongate([
            "fit",
            &src("trusted"),
            "--state",
            p(&format!("{ext}.pgstate")).to_str().unwrap(),
        ])
        .assert()
        .success();
    }
    // the same draws in either format
    assert_eq!(tables[0].texts, tables[1].texts);
    assert_eq!(tables[0].labels, tables[1].labels);
    assert_eq!(tables[0].ids, tables[1].ids);
    assert_eq!(tables[0].ground_truth, tables[1].ground_truth);
    // and the same trusted state: integer labels read the same from either format
    assert_eq!(
        std::fs::read(p("jsonl.pgstate")).unwrap(),
        std::fs::read(p("parquet.pgstate")).unwrap()
    );
}

/// HiddenKiller's syntactic paraphrases (sst2-synbkd-20, whose rows line up with sst2-clean's,
/// a fifth of them rewritten to open with a subordinate clause and labelled positive): the
/// batch alone shows no trigger, while against the trusted clean rows REF003 finds the
/// openings; a clean batch drawn from the same corpus surges nowhere.
#[test]
fn syntactic_paraphrases_surge_against_the_trusted_corpus() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (clean_dir, poisoned_dir) = (tmp.path().join("clean"), tmp.path().join("poisoned"));
    std::fs::create_dir_all(&clean_dir).unwrap();
    std::fs::create_dir_all(&poisoned_dir).unwrap();
    let (trusted, clean_new) = split(&bench.join("sst2-clean.jsonl"), &clean_dir);
    let (_, new) = split(&bench.join("sst2-synbkd-20.jsonl"), &poisoned_dir);
    let state = tmp.path().join("trusted.pgstate");
    fit(&trusted, &state);
    let scan = |data: &Path, out: &str, select: &str, code: i32| {
        let out = tmp.path().join(out);
        let mut args = vec![
            "scan",
            data.to_str().unwrap(),
            "--reference",
            state.to_str().unwrap(),
            "--select",
            select,
            "--id-column",
            "id",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ];
        if code == 1 {
            args.extend(["--ground-truth-column", "poison"]);
        }
        poisongate(args).assert().code(code);
        report(&out)
    };
    let r = scan(&clean_new, "scan-clean", "REF003", 0);
    let det = &r["detectors"][0];
    assert_eq!(det["code"], "REF003");
    assert_eq!(det["flagged"], 0, "{det}");
    let r = scan(&new, "scan-poisoned", "TRIG001,REF003", 1);
    let e = &r["evaluation"]["detectors"];
    assert_eq!(e["TRIG001"]["tp"], 0, "{e}");
    let (precision, recall) = (
        e["REF003"]["precision"].as_f64().unwrap(),
        e["REF003"]["recall"].as_f64().unwrap(),
    );
    assert!(precision >= 0.9 && recall >= 0.25, "{e}");
    // report.html lists the windows taken, their text escaped
    let html =
        std::fs::read_to_string(tmp.path().join("scan-poisoned").join("report.html")).unwrap();
    assert!(
        html.contains("REF003: ") && html.contains("<code>&lt;s&gt; when"),
        "report.html lacks REF003's windows"
    );
}
