//! Runs LBL001 and DEN001 on the benchmark sets with both representations and prints flagged
//! rows, precision, recall, F1 and AUROC. Usage: `cargo run --release -p poisongate-detectors
//! --example knn_eval [DIR]` (DIR defaults to /work/shared/benchmarks). Detector parameters can
//! be given as TOML in `LBL_PARAMS` / `DEN_PARAMS`.

use ndarray::Array2;
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

/// Reads a float32 C-order 2-D `.npy` file (format 1.0 to 3.0).
fn read_npy(path: &str) -> Result<Array2<f32>, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{path}: not an npy file").into());
    }
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        let b: [u8; 4] = bytes[8..12].try_into()?;
        (u32::from_le_bytes(b) as usize, 12)
    };
    let header = std::str::from_utf8(bytes.get(start..start + hlen).ok_or("short header")?)?;
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(format!("{path}: need little-endian float32 in C order: {header}").into());
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let [n, d] = dims[..] else {
        return Err(format!("{path}: not 2-D").into());
    };
    let data: Vec<f32> = bytes[start + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Array2::from_shape_vec((n, d), data)?)
}

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
            let x = read_npy(&path)?;
            let view = DatasetView {
                n_rows: labels.len(),
                texts: None,
                labels: Some(&labels),
                class_names: &class_names,
                embeddings: Some(x.view()),
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
