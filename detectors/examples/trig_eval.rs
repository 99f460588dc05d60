//! Runs TRIG001 on the benchmark sets and prints flagged rows, precision, recall, F1, AUROC and
//! the top findings. Usage: `cargo run --release -p poisongate-detectors --example trig_eval
//! [DIR] [SET ...]` (DIR defaults to /work/shared/benchmarks).

use poisongate_detectors::metrics::evaluate;
use poisongate_detectors::{find, DatasetView};
use std::io::BufRead;
use std::time::Instant;

const SETS: &[&str] = &[
    "sst2-badnets-10",
    "sst2-badnets-1",
    "sst2-addsent-10",
    "sst2-badnets-cleanlabel-10",
    "sst2-synbkd-20",
    "sst2-stylebkd-10",
    "sst2-clean",
    "sms-spam-clean",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .cloned()
        .unwrap_or_else(|| "/work/shared/benchmarks".to_string());
    let sets: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        SETS.iter().map(|s| s.to_string()).collect()
    };
    let det = find("TRIG001").ok_or("TRIG001 not registered")?;
    // optional parameters as a TOML table, e.g. TRIG_PARAMS='alpha = 0.01'
    let table: toml::Table = match std::env::var("TRIG_PARAMS") {
        Ok(s) => s.parse()?,
        Err(_) => toml::Table::new(),
    };
    let cfg = det.configure(&table)?;
    let show_near: usize = std::env::var("TRIG_NEAR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!(
        "| set | rows | poisoned | flagged | flagged % | precision | recall | F1 | AUROC | fit s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut details = Vec::new();
    for set in &sets {
        let path = format!("{dir}/{set}.jsonl");
        let file = std::fs::File::open(&path)?;
        let (mut texts, mut labels, mut truth) = (Vec::new(), Vec::new(), Vec::new());
        for line in std::io::BufReader::new(file).lines() {
            let v: serde_json::Value = serde_json::from_str(&line?)?;
            texts.push(v["text"].as_str().unwrap_or_default().to_string());
            labels.push(v["label"].as_u64().unwrap_or(0) as u32);
            truth.push(v["poison"].as_bool().unwrap_or(false));
        }
        let class_names = vec!["0".to_string(), "1".to_string()];
        let view = DatasetView {
            n_rows: texts.len(),
            texts: Some(&texts),
            labels: Some(&labels),
            class_names: &class_names,
            embeddings: None,
            response_embeddings: None,
            responses: None,
            rejected: None,
        };
        let t0 = Instant::now();
        let fitted = cfg.fit(&view)?;
        let secs = t0.elapsed().as_secs_f64();
        let scores = fitted.score(&view.as_batch())?;
        let flagged: Vec<bool> = scores.reason.iter().map(Option::is_some).collect();
        let e = evaluate(&flagged, &scores.score, &truth);
        let n_pois = truth.iter().filter(|&&t| t).count();
        println!(
            "| {set} | {} | {n_pois} | {} | {:.2} | {:.3} | {:.3} | {:.3} | {} | {secs:.1} |",
            texts.len(),
            e.flagged,
            100.0 * e.flagged as f64 / texts.len() as f64,
            e.precision,
            e.recall,
            e.f1,
            e.auroc.map_or("-".to_string(), |a| format!("{a:.3}")),
        );
        details.push((set.clone(), fitted.summary()));
    }
    for (set, summary) in details {
        println!("\n## {set}");
        let empty = Vec::new();
        let trig = summary["triggers"].as_array().unwrap_or(&empty);
        for t in trig.iter().take(10) {
            println!(
                "- {:?} target={} support={} purity={:.3} score={:.2} log10p_prior={:.1} log10p_ctx={:.1} excess={:.2} ctx_q={:.2} rows={}",
                t["trigger"].as_str().unwrap_or(""),
                t["target"].as_str().unwrap_or(""),
                t["support"],
                t["purity"].as_f64().unwrap_or(0.0),
                t["score"].as_f64().unwrap_or(0.0),
                t["log10_p_prior"].as_f64().unwrap_or(0.0),
                t["log10_p_context"].as_f64().unwrap_or(0.0),
                t["neighbour_excess"].as_f64().unwrap_or(0.0),
                t["mean_context_probability_of_target"].as_f64().unwrap_or(0.0),
                t["example_rows"],
            );
        }
        if trig.len() > 10 {
            println!("- ... {} triggers in all", trig.len());
        }
        println!(
            "  candidates={} random-by-length={} suspects={} tau={:.3}",
            summary["candidates"],
            summary["candidates_with_random_neighbours_by_length"],
            summary["suspects_context_tested"],
            summary["context_temperature"].as_f64().unwrap_or(0.0)
        );
        for m in summary["near_misses"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .take(show_near)
        {
            println!("  near miss: {m}");
        }
    }
    Ok(())
}
