//! Time and peak memory of TRIG001 fit + score on N synthetic rows (the bench's corpus).
//! `cargo run --release -p poisongate-detectors --example trig_scale -- N`
use poisongate_detectors::{registry, DatasetView};
use std::time::Instant;

#[path = "../benches/corpus.rs"]
mod corpus;

fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// User + system CPU seconds of this process so far (from /proc/self/stat, 100 ticks a second):
/// less sensitive than wall time to other work on the machine.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let (texts, labels) = corpus::text_corpus(n, 7);
    let text_mib = texts.iter().map(|t| t.len()).sum::<usize>() as f64 / 1048576.0;
    let base = vm_hwm_mib();
    let names = vec!["0".to_string(), "1".to_string()];
    let view = DatasetView {
        n_rows: n,
        texts: Some(&texts),
        labels: Some(&labels),
        class_names: &names,
        embeddings: None,
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let fitted = registry::find("TRIG001")
        .expect("registered")
        .configure(&toml::Table::new())
        .expect("defaults")
        .fit(&view)
        .expect("fit");
    let fit_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let scores = fitted.score(&view.as_batch()).expect("score");
    let flagged = scores.reason.iter().filter(|r| r.is_some()).count();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{n} rows ({text_mib:.1} MiB text): fit {fit_s:.2}s, score {:.2}s, {:.0} rows/s; CPU {cpu:.1}s ({:.0} rows per CPU-second); flagged {flagged}; peak RSS {:.0} MiB (corpus built: {base:.0} MiB)",
        t.elapsed().as_secs_f64(),
        n as f64 / (fit_s + t.elapsed().as_secs_f64()),
        n as f64 / cpu.max(1e-9),
        vm_hwm_mib()
    );
}
