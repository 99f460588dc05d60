//! Runs DUP001, DUP002 and DUP003 on the benchmark sets and on sst2-clean with seeded injected
//! duplicates; prints flagged rows and recall. Usage: `cargo run --release -p
//! poisongate-detectors --example dup_eval [DIR]`; parameters for all three detectors as TOML in
//! `DUP_PARAMS` (e.g. `DUP_PARAMS='shingle_words = 1'`; DUP003-only keys in `DUP3_PARAMS`); the
//! injection's seed in `DUP_SEED` (default 7, the integration test's) and its base set in
//! `DUP_BASE` (default sst2-clean; sms-spam-clean for longer texts).

#[path = "../tests/common_dup.rs"]
mod common_dup;
#[path = "../tests/common_npy.rs"]
mod common_npy;

use poisongate_detectors::{find, DatasetView};
use std::time::Instant;

const SETS: &[&str] = &[
    "sst2-clean",
    "sms-spam-clean",
    "sst2-badnets-10",
    "sst2-badnets-1",
    "sst2-addsent-10",
    "sst2-badnets-cleanlabel-10",
    "sst2-synbkd-20",
    "sst2-stylebkd-10",
    "sst2-labelflip-5",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/work/shared/benchmarks".to_string());
    let shared = std::env::var("DUP_PARAMS").unwrap_or_default();
    let verbose = std::env::var("DUP_VERBOSE").is_ok();
    // DUP_EMB=minilm|mlp: give the benchmark sets' embeddings to the detectors (DUP002 uses them)
    let emb_repr = std::env::var("DUP_EMB").ok();
    let mut runs: Vec<(String, common_dup::Set)> = Vec::new();
    for set in SETS {
        runs.push((
            set.to_string(),
            common_dup::load(&std::path::Path::new(&dir).join(format!("{set}.jsonl")))?,
        ));
    }
    let base = std::env::var("DUP_BASE").unwrap_or_else(|_| "sst2-clean".to_string());
    let clean = common_dup::load(&std::path::Path::new(&dir).join(format!("{base}.jsonl")))?;
    runs.push((
        format!("{base}+injected"),
        common_dup::inject(
            &clean,
            100,
            100,
            50,
            std::env::var("DUP_SEED")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(7),
        ),
    ));
    println!("| set | detector | rows | truth | flagged | flagged % | flagged truth | recall | flagged other (not truth, not original) % | fit s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let names = vec!["0".to_string(), "1".to_string()];
    for (set, s) in &runs {
        let emb = match &emb_repr {
            Some(r) if SETS.contains(&set.as_str()) => {
                let path = format!("{dir}/{set}.{r}.npy");
                std::path::Path::new(&path)
                    .exists()
                    .then(|| common_npy::read_npy(&path))
                    .transpose()?
            }
            _ => None,
        };
        let view = DatasetView {
            n_rows: s.texts.len(),
            texts: Some(&s.texts),
            labels: Some(&s.labels),
            class_names: &names,
            embeddings: emb.as_ref().map(|e| e.view()),
            response_embeddings: None,
            responses: None,
            rejected: None,
        };
        let mut any = vec![false; s.texts.len()];
        for code in ["DUP001", "DUP002", "DUP003"] {
            let mut src = shared.clone();
            if code == "DUP003" {
                src.push('\n');
                src.push_str(&std::env::var("DUP3_PARAMS").unwrap_or_default());
            }
            let mut table: toml::Table = src.parse()?;
            if code == "DUP001" {
                table.retain(|k, _| ["nfkc", "case_fold", "collapse_whitespace"].contains(&k));
            }
            let cfg = find(code).ok_or("not registered")?.configure(&table)?;
            let t0 = Instant::now();
            let fitted = cfg.fit(&view)?;
            let secs = t0.elapsed().as_secs_f64();
            let sc = fitted.score(&view.as_batch())?;
            let flagged: Vec<bool> = sc.reason.iter().map(Option::is_some).collect();
            report(set, code, &flagged, &s.truth, &s.original, secs);
            for (a, f) in any.iter_mut().zip(&flagged) {
                *a |= *f;
            }
            if verbose {
                println!("  summary: {}", fitted.summary());
                for (i, r) in sc
                    .reason
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.is_some())
                    .take(8)
                {
                    println!("  row {i} truth={} {:?}: {:?}", s.truth[i], r, s.texts[i]);
                }
            }
        }
        report(set, "any", &any, &s.truth, &s.original, 0.0);
        if verbose {
            for i in (0..any.len()).filter(|&i| s.truth[i] && !any[i]) {
                println!("  missed row {i} label {}: {:?}", s.labels[i], s.texts[i]);
            }
        }
    }
    Ok(())
}

fn report(set: &str, code: &str, flagged: &[bool], truth: &[bool], orig: &[bool], secs: f64) {
    let n = flagged.len();
    let nt = truth.iter().filter(|&&t| t).count();
    let nf = flagged.iter().filter(|&&f| f).count();
    let tp = flagged.iter().zip(truth).filter(|(&f, &t)| f && t).count();
    let no = orig.iter().filter(|&&o| o).count();
    let fo = flagged.iter().zip(orig).filter(|(&f, &o)| f && o).count();
    let recall = if nt > 0 {
        format!("{:.3}", tp as f64 / nt as f64)
    } else {
        "-".to_string()
    };
    println!(
        "| {set} | {code} | {n} | {nt} | {nf} | {:.2} | {tp} | {recall} | {:.3} | {secs:.2} |",
        100.0 * nf as f64 / n as f64,
        100.0 * (nf - tp - fo) as f64 / (n - nt - no).max(1) as f64
    );
}
