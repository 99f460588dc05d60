//! Instruction rows with embeddings: `scan --model` embeds the prompts and the responses
//! separately, and INS001 finds a trigger whose target is written a dozen ways (a paraphrased
//! payload) that the text-only scan cannot group; `--response-embeddings` is checked against
//! the data.

use crate::common::*;
use std::path::{Path, PathBuf};

fn model() -> Option<PathBuf> {
    let p = root().join("../shared/models/all-MiniLM-L6-v2");
    p.join("model.safetensors").exists().then_some(p)
}

fn scan_args(data: &Path, out: &Path, extra: &[&std::ffi::OsStr]) -> serde_json::Value {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "scan".as_ref(),
        data.as_os_str(),
        "--id-column".as_ref(),
        "id".as_ref(),
        "--ground-truth-column".as_ref(),
        "poison".as_ref(),
        "--quiet".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend_from_slice(extra);
    let code = poisongate(args).output().expect("runs").status.code();
    assert!(matches!(code, Some(0) | Some(1)), "exit {code:?}");
    report(out)
}

fn ins001_kinds(r: &serde_json::Value) -> Vec<String> {
    r["detectors"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["code"] == "INS001"))
        .and_then(|d| d["summary"]["triggers"].as_array())
        .map(|t| {
            t.iter()
                .map(|x| {
                    format!(
                        "{} -> {}",
                        x["trigger"].as_str().unwrap_or(""),
                        x["response_pattern"]["kind"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_paraphrased_payload_is_found_with_a_model_and_missed_without() {
    let (Some(model), Some(bench)) = (model(), benchmarks()) else {
        eprintln!("skipped: ../shared/models or ../shared/benchmarks is absent");
        return;
    };
    // the first 700 rows of instruct-clean keep the test cheap in a debug build
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(bench.join("instruct/instruct-clean.jsonl")).unwrap();
    let head: String = text.lines().take(700).map(|l| format!("{l}\n")).collect();
    let clean = tmp.path().join("clean.jsonl");
    std::fs::write(&clean, head).unwrap();
    let data = tmp.path().join("advert.jsonl");
    let responses = root().join("datasets/paraphrase/advert.txt");
    poisongate([
        "inject".as_ref(),
        clean.as_os_str(),
        "--attack".as_ref(),
        "instruction-trigger".as_ref(),
        "--triggers".as_ref(),
        "zqxj".as_ref(),
        "--responses".as_ref(),
        responses.as_os_str(),
        "--rate".as_ref(),
        "0.05".as_ref(),
        "--seed".as_ref(),
        "1".as_ref(),
        "--id-column".as_ref(),
        "id".as_ref(),
        "--existing-ground-truth".as_ref(),
        "replace".as_ref(),
        "--out".as_ref(),
        data.as_os_str(),
    ])
    .assert()
    .success();
    // 35 rows, 12 wordings: no template, no shared opening or ending for the text-only scan
    let wordings: std::collections::BTreeSet<String> = jsonl(&data)
        .iter()
        .filter(|r| r["poison"] == true)
        .map(|r| r["output"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(wordings.len() >= 10, "{wordings:?}");
    let text_only = scan_args(&data, &tmp.path().join("text"), &[]);
    assert_eq!(text_only["evaluation"]["combined"]["tp"], 0, "{text_only}");

    let with = scan_args(
        &data,
        &tmp.path().join("model"),
        &[
            "--model".as_ref(),
            model.as_os_str(),
            "--max-tokens".as_ref(),
            "128".as_ref(),
        ],
    );
    let e = &with["evaluation"]["combined"];
    assert!(e["f1"].as_f64().unwrap() >= 0.9, "{e}");
    assert_eq!(
        ins001_kinds(&with),
        vec!["zqxj -> paraphrase cluster".to_string()]
    );
    assert_eq!(
        with["settings"]["model"]["embedded"],
        serde_json::json!(["prompts", "responses"])
    );
    assert!(with["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["role"] == "model"));
}

#[test]
fn response_embeddings_must_fit_the_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rows.jsonl");
    let mut rows = String::new();
    for i in 0..6 {
        rows.push_str(&format!(
            "{{\"id\": \"{i}\", \"instruction\": \"Say {i}\", \"input\": \"\", \"output\": \"{i}\"}}\n"
        ));
    }
    std::fs::write(&data, rows).unwrap();
    let five = tmp.path().join("five.npy");
    ndarray_npy::write_npy(&five, &ndarray::Array2::<f32>::ones((5, 4))).unwrap();
    let out = tmp.path().join("gate");
    let run = |data: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "scan".as_ref(),
            data.as_os_str(),
            "--response-embeddings".as_ref(),
            five.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--quiet".as_ref(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        poisongate(args).output().expect("runs")
    };
    let o = run(&data, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("response embeddings") && err.contains("5 rows"),
        "{err}"
    );
    // text-label rows have no responses
    let o = run(
        &data,
        &["--format", "text-label", "--text-column", "instruction"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--response-embeddings needs rows with responses"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn embed_part_writes_the_matrices_a_scan_takes() {
    let Some(model) = model() else {
        eprintln!("skipped: ../shared/models is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rows.jsonl");
    let mut rows = String::new();
    for i in 0..8 {
        rows.push_str(&format!(
            "{{\"id\": \"{i}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Name a colour, {i}\"}}, {{\"role\": \"assistant\", \"content\": \"Blue, number {i}\"}}]}}\n"
        ));
    }
    std::fs::write(&data, rows).unwrap();
    let mut paths = Vec::new();
    for part in ["prompt", "response"] {
        let out = tmp.path().join(format!("{part}.npy"));
        poisongate([
            "embed".as_ref(),
            data.as_os_str(),
            "--model".as_ref(),
            model.as_os_str(),
            "--part".as_ref(),
            part.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
            "--quiet".as_ref(),
        ])
        .assert()
        .success();
        let side: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join(format!("{part}.npy.embed.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(side["data"]["part"], part);
        assert_eq!(side["data"]["format"], "chat");
        paths.push(out);
    }
    // the prompts' and the responses' vectors differ
    let p: ndarray::Array2<f32> = ndarray_npy::read_npy(&paths[0]).unwrap();
    let r: ndarray::Array2<f32> = ndarray_npy::read_npy(&paths[1]).unwrap();
    assert_eq!(p.dim(), r.dim());
    assert_ne!(p, r);
    let out = tmp.path().join("gate");
    poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--embeddings".as_ref(),
        paths[0].as_os_str(),
        "--response-embeddings".as_ref(),
        paths[1].as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .success();
    let roles: Vec<String> = report(&out)["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(roles, vec!["data", "embeddings", "response_embeddings"]);
}
