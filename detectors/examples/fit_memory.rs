//! Peak memory of an embedding detector's fit + score relative to the matrix it reads.
//!
//! `cargo run --release -p poisongate-detectors --example fit_memory -- [ROWS] [DIMS] [CODE]`
//! (default 100000 × 384, SPEC001; ACT001 too). Reads the process's peak resident size (VmHWM, Linux) after building
//! the matrix and after fit + score, and prints both with their ratio to the matrix's bytes, and
//! the wall-clock time of fit + score (`RAYON_NUM_THREADS=1` for one core).

use ndarray::Array2;
use poisongate_detectors::{registry, DatasetView, Scores};

fn vm_hwm_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let code = raw
        .iter()
        .find(|a| a.parse::<usize>().is_err())
        .map_or("SPEC001", String::as_str);
    let n = args.first().copied().unwrap_or(100_000);
    let d = args.get(1).copied().unwrap_or(384);
    let mut s = 7u64;
    let x = Array2::from_shape_fn((n, d), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    });
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let names = vec!["0".to_string(), "1".to_string()];
    let matrix = (n * d * 4) as f64;
    let before = vm_hwm_bytes().unwrap_or(0) as f64;
    let view = DatasetView {
        n_rows: n,
        texts: None,
        labels: Some(&labels),
        class_names: &names,
        embeddings: Some(x.view()),
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let t = std::time::Instant::now();
    let det = registry::find(code).expect("registered");
    let fitted = det
        .configure(&toml::Table::new())
        .expect("defaults")
        .fit(&view)
        .expect("fit");
    let mut all = Scores::with_capacity(n);
    for start in (0..n).step_by(8192) {
        all.extend(
            fitted
                .score(&view.batch(start, (start + 8192).min(n)))
                .expect("score"),
        );
    }
    let secs = t.elapsed().as_secs_f64();
    let after = vm_hwm_bytes().unwrap_or(0) as f64;
    println!(
        "{code} {n} x {d}: fit + score {secs:.2}s ({:.0} rows/s on {} threads); matrix {:.1} MiB; peak RSS with matrix built {:.1} MiB ({:.2}x); after fit + score {:.1} MiB ({:.2}x)",
        n as f64 / secs,
        rayon::current_num_threads(),
        matrix / 1048576.0,
        before / 1048576.0,
        before / matrix,
        after / 1048576.0,
        after / matrix
    );
}
