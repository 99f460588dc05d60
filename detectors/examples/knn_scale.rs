//! Time and recall of the kNN search at scale on synthetic clustered embeddings (unit-norm
//! mixtures of `N / 50` centres in `D` dims, one SplitMix64 seed). Prints the IVF time, its
//! recall@10 on 500 evenly spaced rows against a brute-force search of those rows, and the exact
//! search's time when `EXACT=1`. Usage: `cargo run --release -p poisongate-detectors --example
//! knn_scale -- N [D] [PROBES]`.

use ndarray::Array2;
use poisongate_detectors::knn::{knn_cosine, knn_ivf};
use poisongate_detectors::rng::SplitMix64;
use poisongate_detectors::KnnOptions;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .ok_or("usage: knn_scale N [D] [PROBES]")?
        .parse()?;
    let d: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(384);
    let probes: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(16);
    let k = 10;
    let mut rng = SplitMix64(7);
    let centres = (n / 50).max(1);
    let c: Vec<f32> = (0..centres * d).map(|_| rng.gauss() as f32).collect();
    let mut x = Array2::<f32>::zeros((n, d));
    for i in 0..n {
        let z = rng.below(centres);
        let spread = 0.5 + rng.unit();
        for j in 0..d {
            x[[i, j]] = c[z * d + j] + (spread * rng.gauss()) as f32;
        }
    }
    let opts = KnnOptions {
        exact_max_rows: 0,
        probes,
        seed: 1,
    };
    let t = Instant::now();
    let ivf = knn_ivf(&x.view(), k, &opts)?;
    let t_ivf = t.elapsed().as_secs_f64();
    // brute force for 500 evenly spaced rows
    let norms: Vec<f32> = (0..n)
        .map(|i| {
            x.row(i)
                .iter()
                .map(|v| v * v)
                .sum::<f32>()
                .sqrt()
                .max(1e-30)
        })
        .collect();
    let (mut hit, mut total) = (0usize, 0usize);
    for s in 0..500usize {
        let q = s * n / 500;
        let mut best: Vec<(f32, usize)> = (0..n)
            .filter(|&j| j != q)
            .map(|j| {
                let dot: f32 = x
                    .row(q)
                    .iter()
                    .zip(x.row(j).iter())
                    .map(|(a, b)| a * b)
                    .sum();
                (dot / (norms[q] * norms[j]), j)
            })
            .collect();
        best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, j) in best.iter().take(k) {
            total += 1;
            hit += usize::from(ivf.neighbours(q).contains(&(j as u32)));
        }
    }
    println!(
        "rows {n} dims {d} ivf {} : {t_ivf:.1} s, recall@{k} {:.3} (500 rows)",
        ivf.method,
        hit as f64 / total as f64
    );
    if std::env::var("EXACT").is_ok() {
        let t = Instant::now();
        let _ = knn_cosine(&x.view(), k)?;
        println!("exact: {:.1} s", t.elapsed().as_secs_f64());
    }
    Ok(())
}
