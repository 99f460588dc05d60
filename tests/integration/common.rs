//! Helpers shared by the integration tests.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled demo dataset.
pub fn demo() -> (PathBuf, PathBuf) {
    let d = root().join("datasets/demo");
    (d.join("reviews.jsonl"), d.join("reviews.npy"))
}

/// The `.jsonl` sets of the shared benchmark folder, sorted (panics without the folder: the
/// quality tests need it).
pub fn benchmark_sets() -> Vec<PathBuf> {
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("benchmark folder readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    sets.sort();
    sets
}

/// The shared benchmark folder, when present beside the checkout.
pub fn benchmarks() -> Option<PathBuf> {
    let p = root().join("../shared/benchmarks");
    p.join("INDEX.tsv").exists().then_some(p)
}

/// `poisongate` with arguments.
pub fn poisongate<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::cargo_bin("poisongate").expect("binary built");
    c.args(args);
    c
}

/// Parsed report.json of an output folder.
pub fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// The report without its non-deterministic parts (`run`, every `seconds`).
pub fn deterministic(mut v: serde_json::Value) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("seconds");
                m.remove("run");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Lines of a JSONL file, parsed.
pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("readable")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// `poisongate scan` of the demo with its embeddings, id and ground-truth columns, into `out`,
/// quietly, plus `extra` arguments.
pub fn scan_demo(out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    let (data, emb) = demo();
    let mut args = vec![
        "scan".to_string(),
        data.display().to_string(),
        "--embeddings".into(),
        emb.display().to_string(),
        "--id-column".into(),
        "id".into(),
        "--ground-truth-column".into(),
        "poison".into(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    poisongate(args).assert()
}
