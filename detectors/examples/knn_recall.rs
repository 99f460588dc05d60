//! Recall of the IVF kNN index against the exact search on the benchmark embeddings: for every
//! `<set>.<repr>.npy` in the directory, the share of each row's exact 10 nearest neighbours that
//! the index returns, the share of pairs at cosine ≥ 0.97 (DUP002's relation) it finds, and both
//! times. Usage: `cargo run --release -p poisongate-detectors --example knn_recall [DIR]
//! [PROBES]`.

#[path = "../tests/common_npy.rs"]
mod common_npy;

use poisongate_detectors::knn::{knn_cosine, knn_ivf};
use poisongate_detectors::KnnOptions;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "/work/shared/benchmarks".to_string());
    let probes: usize = args.next().map(|p| p.parse()).transpose()?.unwrap_or(8);
    let opts = KnnOptions {
        exact_max_rows: 0,
        probes,
        seed: 1,
    };
    let k = 10;
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .collect();
    files.sort();
    println!(
        "| file | rows | lists | probes | recall@{k} | pairs ≥ 0.97 | found | exact s | ivf s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for f in files {
        let x = common_npy::read_npy(&f.to_string_lossy())?;
        let t0 = Instant::now();
        let exact = knn_cosine(&x.view(), k)?;
        let t_exact = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let ivf = knn_ivf(&x.view(), k, &opts)?;
        let t_ivf = t1.elapsed().as_secs_f64();
        let n = x.nrows();
        let mut hit = 0usize;
        let (mut close, mut close_found) = (0usize, 0usize);
        for i in 0..n {
            let got = ivf.neighbours(i);
            for (j, s) in exact.neighbours(i).iter().zip(exact.sims(i)) {
                let found = got.contains(j);
                hit += usize::from(found);
                if *s >= 0.97 {
                    close += 1;
                    close_found += usize::from(found);
                }
            }
        }
        println!(
            "| {} | {n} | {} | {} | {:.4} | {close} | {close_found} | {t_exact:.2} | {t_ivf:.2} |",
            f.file_name().unwrap_or_default().to_string_lossy(),
            ivf.method["lists"],
            ivf.method["probes"],
            hit as f64 / (n * exact.k).max(1) as f64,
        );
    }
    Ok(())
}
