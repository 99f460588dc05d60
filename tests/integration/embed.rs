//! `poisongate embed` and `scan --model` with the real all-MiniLM-L6-v2 folder of ../shared:
//! rows of two shipped corpora match the reference matrices (a sample of them by default, every
//! row in an ignored test), a scan with `--model` finds
//! what a scan with the matrix `embed` wrote finds, and a broken folder writes nothing.

use crate::common::*;
use std::path::PathBuf;

fn model() -> Option<PathBuf> {
    let p = root().join("../shared/models/all-MiniLM-L6-v2");
    p.join("model.safetensors").exists().then_some(p)
}

/// Rows of an f32 .npy file (little-endian, C order) as vectors.
fn npy_rows(path: &std::path::Path) -> Vec<Vec<f32>> {
    let a: ndarray::Array2<f32> = ndarray_npy::read_npy(path).expect("npy");
    a.rows().into_iter().map(|r| r.to_vec()).collect()
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `poisongate embed DATA --model MODEL --max-tokens 128 --out OUT`, which must succeed.
fn embed_128(data: &std::path::Path, model: &std::path::Path, out: &std::path::Path) {
    poisongate([
        "embed".as_ref(),
        data.as_os_str(),
        "--model".as_ref(),
        model.as_os_str(),
        "--max-tokens".as_ref(),
        "128".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .success();
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

/// Embeds the rows of `set` that `keep` selects (by row number) and checks each against the
/// same row of the shipped `.minilm.npy`: cosine ≥ 0.9999, and a sidecar naming the data and
/// every model file by SHA-256.
fn embed_matches_reference(set: &str, keep: impl Fn(usize, &str) -> bool) {
    let (Some(model), Some(bench)) = (model(), benchmarks()) else {
        eprintln!("skipped: ../shared/models or ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(bench.join(format!("{set}.jsonl")))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let all = npy_rows(&bench.join(format!("{set}.minilm.npy")));
    assert_eq!(lines.len(), all.len(), "{set}: rows of the shipped matrix");
    let rows: Vec<usize> = (0..lines.len()).filter(|&i| keep(i, &lines[i])).collect();
    let data = tmp.path().join(format!("{set}.jsonl"));
    let text: String = rows.iter().map(|&i| format!("{}\n", lines[i])).collect();
    std::fs::write(&data, text).unwrap();
    let out = tmp.path().join(format!("{set}.npy"));
    embed_128(&data, &model, &out);
    let got = npy_rows(&out);
    assert_eq!(got.len(), rows.len(), "{set}: rows");
    let worst = got
        .iter()
        .zip(&rows)
        .map(|(a, &i)| cosine(a, &all[i]))
        .fold(f64::INFINITY, f64::min);
    assert!(worst >= 0.9999, "{set}: lowest cosine {worst}");
    // the sidecar names the data and every model file by SHA-256
    let side: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join(format!("{set}.npy.embed.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(side["data"]["rows"], rows.len());
    assert_eq!(side["model"]["max_tokens"], 128);
    assert_eq!(side["model"]["pooling"], "mean");
    assert_eq!(side["model"]["normalize"], true);
    let files = side["model"]["files"].as_array().unwrap();
    assert!(files.iter().any(
        |f| f["path"].as_str().unwrap().ends_with("model.safetensors")
            && f["sha256"].as_str().unwrap().len() == 64
    ));
}

/// Every 16th row of two shipped corpora, and every row long enough to be cut at 128 tokens or
/// near it (over 400 bytes of JSON), matches the shipped matrices. The check of every row is the
/// ignored test below (a few minutes in the test profile).
#[test]
fn embed_matches_the_reference_matrices_on_a_sample_of_rows() {
    for set in ["sst2-clean", "sms-spam-clean"] {
        embed_matches_reference(set, |i, line| i % 16 == 0 || line.len() > 400);
    }
}

/// Every row of sst2-clean (6 920) and sms-spam-clean (5 574) matches the shipped matrices:
/// `cargo test --release --test integration embed -- --include-ignored`.
#[test]
#[ignore = "every row of two corpora: a few minutes; run with --include-ignored"]
fn embed_matches_the_reference_matrices_row_by_row() {
    for set in ["sst2-clean", "sms-spam-clean"] {
        embed_matches_reference(set, |_, _| true);
    }
}

#[test]
fn scan_with_a_model_finds_what_the_embedded_matrix_finds() {
    let Some(shared) = model() else {
        eprintln!("skipped: ../shared/models is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // a copy of the folder, so that a changed model file can be shown to fail `verify`
    let model = tmp.path().join("minilm");
    for f in walk(&shared) {
        let to = model.join(f.strip_prefix(&shared).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&f, &to).unwrap();
    }
    // every third row of the demo, backdoor included (each embedding of a row is the slow part)
    let (demo, _) = demo();
    let data = tmp.path().join("demo-third.jsonl");
    let rows: String = std::fs::read_to_string(&demo)
        .unwrap()
        .lines()
        .step_by(3)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&data, rows).unwrap();
    let matrix = tmp.path().join("demo.safetensors");
    poisongate([
        "embed".as_ref(),
        data.as_os_str(),
        "--model".as_ref(),
        model.as_os_str(),
        "--out".as_ref(),
        matrix.as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .success();
    let scan = |out: &std::path::Path, extra: [&std::ffi::OsStr; 2]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "scan".as_ref(),
            data.as_os_str(),
            "--id-column".as_ref(),
            "id".as_ref(),
            "--reproducible".as_ref(),
            "--quiet".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ];
        args.extend(extra);
        poisongate(args).assert().code(1);
    };
    let (a, b) = (tmp.path().join("model"), tmp.path().join("matrix"));
    scan(&a, ["--model".as_ref(), model.as_os_str()]);
    scan(&b, ["--embeddings".as_ref(), matrix.as_os_str()]);
    assert_eq!(
        std::fs::read(a.join("quarantine.jsonl")).unwrap(),
        std::fs::read(b.join("quarantine.jsonl")).unwrap()
    );
    let (ra, rb) = (report(&a), report(&b));
    assert_eq!(ra["quarantined_rows"], rb["quarantined_rows"]);
    assert_eq!(ra["reconciliation"], rb["reconciliation"]);
    // the model is an input: every file read, with its digest; the settings say how it was used
    let inputs = ra["inputs"].as_array().unwrap();
    let models: Vec<&serde_json::Value> = inputs.iter().filter(|i| i["role"] == "model").collect();
    assert!(models.len() >= 3, "{inputs:?}");
    assert_eq!(ra["settings"]["model"]["architecture"], "BertModel (bert)");
    assert_eq!(ra["settings"]["model"]["max_tokens"], 256);
    let ok = poisongate(["verify".as_ref(), a.as_os_str()])
        .assert()
        .success();
    let said = String::from_utf8_lossy(&ok.get_output().stdout).into_owned();
    assert!(
        said.contains(&format!("model files: {} match", models.len())),
        "{said}"
    );
    let mut cfg = std::fs::read(model.join("config.json")).unwrap();
    cfg.push(b'\n');
    std::fs::write(model.join("config.json"), cfg).unwrap();
    poisongate(["verify".as_ref(), a.as_os_str()])
        .assert()
        .code(1);
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("reports/report.schema.json")).unwrap(),
    )
    .unwrap();
    let mut errors = Vec::new();
    crate::schema::check(&schema, &schema, &ra, "report", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_pickle_only_folder_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("model");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("config.json"), "{\"model_type\": \"bert\"}").unwrap();
    std::fs::write(folder.join("pytorch_model.bin"), b"\x80\x04not opened").unwrap();
    let (data, _) = demo();
    let out = tmp.path().join("e.npy");
    let assert = poisongate([
        "embed".as_ref(),
        data.as_os_str(),
        "--model".as_ref(),
        folder.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .assert()
    .code(2);
    let err = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        err.contains("pickle") && err.contains("safetensors"),
        "{err}"
    );
    assert!(!out.exists());
    let scan_out = tmp.path().join("scan");
    poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--model".as_ref(),
        folder.as_os_str(),
        "--out".as_ref(),
        scan_out.as_os_str(),
    ])
    .assert()
    .code(2);
    assert!(!scan_out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn eval_embeds_each_injected_file_from_its_own_text() {
    let (Some(model), Some(bench)) = (model(), benchmarks()) else {
        eprintln!("skipped: ../shared/models or ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("small.jsonl");
    let text = std::fs::read_to_string(bench.join("sst2-clean.jsonl")).unwrap();
    let head: Vec<&str> = text.lines().take(300).collect();
    std::fs::write(&data, head.join("\n") + "\n").unwrap();
    let grid = tmp.path().join("grid.toml");
    std::fs::write(
        &grid,
        format!(
            r#"seeds = [1]
keep_data = true
model_max_tokens = 128

[[dataset]]
path = "{}"
id_column = "id"
ground_truth_column = "poison"
representations = ["model:{}"]
attacks = ["badnets"]

[[attack]]
kind = "badnets"
rates = [0.05]
target_label = "1"
triggers = ["cf"]

[[detectors]]
name = "spectral"
select = ["SPEC001"]

[[detectors]]
name = "text"
select = ["TRIG001"]
"#,
            data.display(),
            model.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("eval");
    let results = poisongate::eval::run(&grid, &out, &mut |_| {}).expect("the grid runs");
    assert!(results.skipped.is_empty(), "{:?}", results.skipped);
    let spectral: Vec<_> = results
        .rows
        .iter()
        .filter(|r| r.setting == "spectral")
        .collect();
    assert_eq!(spectral.len(), 1);
    assert_eq!(spectral[0].representation, "model:all-MiniLM-L6-v2");
    assert_eq!(spectral[0].attack, "badnets");
    assert!(spectral[0].reconciled);
    let text_rows: Vec<_> = results
        .rows
        .iter()
        .filter(|r| r.setting == "text")
        .collect();
    assert_eq!(text_rows.len(), 1);
    assert_eq!(text_rows[0].representation, "-");
    // the grid's matrix of the injected file is the embedding of that file's own text
    let files: Vec<PathBuf> = walk(&out.join("data"));
    let injected = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("the injected file is kept");
    let grid_matrix = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".model_all-MiniLM-L6-v2.npy"))
        .expect("the computed matrix is kept");
    let direct = tmp.path().join("direct.npy");
    embed_128(injected, &model, &direct);
    let (got, want) = (npy_rows(grid_matrix), npy_rows(&direct));
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| cosine(a, b))
        .fold(f64::INFINITY, f64::min);
    assert!(worst >= 0.9999, "lowest cosine {worst}");
    // and the poisoned rows' vectors are not their originals' (the trigger changed the text)
    let orig = tmp.path().join("orig.npy");
    embed_128(&data, &model, &orig);
    let orig_rows = npy_rows(&orig);
    let changed = got
        .iter()
        .filter(|v| !orig_rows.iter().any(|o| cosine(v, o) > 0.99999))
        .count();
    assert_eq!(
        changed, spectral[0].poisoned,
        "one new vector per poisoned row"
    );
}
