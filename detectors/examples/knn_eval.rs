//! Runs LBL001 and DEN001 on the benchmark sets with both representations and prints flagged
//! rows, precision, recall, F1 and AUROC. Usage: `cargo run --release -p poisongate-detectors
//! --example knn_eval [DIR]` (DIR defaults to /work/shared/benchmarks). Detector parameters can
//! be given as TOML in `LBL_PARAMS` / `DEN_PARAMS`.

#[path = "../tests/common_npy.rs"]
mod common_npy;

use poisongate_detectors::density::DenseCluster;
use poisongate_detectors::label::LabelConsistency;
use poisongate_detectors::metrics::evaluate;
use poisongate_detectors::{DatasetView, Detector};
use std::io::BufRead;
use std::time::Instant;

const SETS: &[&str] = &[
    "sst2-labelflip-5",
    "sst2-addsent-10",
    "sst2-badnets-cleanlabel-10",
    "sst2-badnets-10",
    "sst2-badnets-1",
    "sst2-synbkd-20",
    "sst2-stylebkd-10",
    "sst2-clean",
    "sms-spam-clean",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/work/shared/benchmarks".to_string());
    let table = |var: &str| -> Result<toml::Table, Box<dyn std::error::Error>> {
        Ok(match std::env::var(var) {
            Ok(s) => s.parse()?,
            Err(_) => toml::Table::new(),
        })
    };
    let dets: Vec<(&str, Box<dyn poisongate_detectors::Configured>)> = vec![
        ("LBL001", LabelConsistency.configure(&table("LBL_PARAMS")?)?),
        ("DEN001", DenseCluster.configure(&table("DEN_PARAMS")?)?),
    ];
    let only: Option<String> = std::env::var("ONLY").ok();
    println!("| detector | set | repr | rows | poisoned | flagged | flagged % | precision | recall | F1 | AUROC | fit s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for set in SETS {
        let file = std::fs::File::open(format!("{dir}/{set}.jsonl"))?;
        let (mut labels, mut truth) = (Vec::new(), Vec::new());
        for line in std::io::BufReader::new(file).lines() {
            let v: serde_json::Value = serde_json::from_str(&line?)?;
            labels.push(v["label"].as_u64().unwrap_or(0) as u32);
            truth.push(v["poison"].as_bool().unwrap_or(false));
        }
        let class_names = vec!["0".to_string(), "1".to_string()];
        for repr in ["minilm", "mlp"] {
            let path = format!("{dir}/{set}.{repr}.npy");
            if !std::path::Path::new(&path).exists() {
                continue;
            }
            let x = common_npy::read_npy(&path)?;
            let view = DatasetView {
                n_rows: labels.len(),
                texts: None,
                labels: Some(&labels),
                class_names: &class_names,
                embeddings: Some(x.view()),
                response_embeddings: None,
                responses: None,
                rejected: None,
            };
            for (code, cfg) in &dets {
                if only.as_deref().is_some_and(|o| o != *code) {
                    continue;
                }
                let t0 = Instant::now();
                let fitted = cfg.fit(&view)?;
                let secs = t0.elapsed().as_secs_f64();
                let scores = fitted.score(&view.as_batch())?;
                let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
                let e = evaluate(&flagged, &scores.score, &truth);
                let n_pois = truth.iter().filter(|&&t| t).count();
                println!(
                    "| {code} | {set} | {repr} | {} | {n_pois} | {} | {:.2} | {:.3} | {:.3} | {:.3} | {} | {secs:.1} |",
                    labels.len(),
                    e.flagged,
                    100.0 * e.flagged as f64 / labels.len() as f64,
                    e.precision,
                    e.recall,
                    e.f1,
                    e.auroc.map_or("-".to_string(), |a| format!("{a:.3}")),
                );
                if std::env::var("SUMMARY").is_ok() {
                    println!("{}", fitted.summary());
                }
            }
        }
    }
    Ok(())
}
