//! Detector throughput benches, in rows/s.
//!
//! `cargo bench -p poisongate-detectors --bench detectors` (CI only compiles them). Synthetic data is seeded.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use poisongate_detectors::rng::SplitMix64;
use poisongate_detectors::{registry, DatasetView};
use rayon::prelude::*;

mod corpus;
use corpus::text_corpus;

/// Seeded standard normal matrix.
fn synthetic(n: usize, d: usize, seed: u64) -> Array2<f32> {
    let mut rng = SplitMix64(seed);
    Array2::from_shape_fn((n, d), |_| rng.gauss() as f32)
}

/// Benchmarks detector `code` at its defaults: fit on the whole view, then score it in
/// parallel batches of 8192 rows, as a scan does.
fn bench_fit_score(c: &mut Criterion, code: &str, view: &DatasetView<'_>, id: String) {
    let n = view.n_rows;
    let det = registry::find(code).expect("registered");
    let configured = det.configure(&toml::Table::new()).expect("defaults");
    let mut g = c.benchmark_group(code);
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("fit+score", id), |b| {
        b.iter(|| {
            let fitted = configured.fit(view).expect("fit");
            let flagged: usize = (0..n)
                .step_by(8192)
                .collect::<Vec<_>>()
                .par_iter()
                .map(|&s| {
                    let sc = fitted
                        .score(&view.batch(s, (s + 8192).min(n)))
                        .expect("score");
                    sc.reason.iter().filter(|r| r.is_some()).count()
                })
                .sum();
            std::hint::black_box(flagged)
        })
    });
    g.finish();
}

/// [`bench_fit_score`] of `code` on two-class embeddings `x` with `labels` (classes "0", "1").
fn bench_embeddings(c: &mut Criterion, code: &str, x: &Array2<f32>, labels: &[u32]) {
    let names = vec!["0".to_string(), "1".to_string()];
    let view = DatasetView {
        n_rows: x.nrows(),
        texts: None,
        labels: Some(labels),
        class_names: &names,
        embeddings: Some(x.view()),
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    bench_fit_score(c, code, &view, format!("{}x{}", x.nrows(), x.ncols()));
}

fn spec001(c: &mut Criterion) {
    let (n, d) = (100_000, 384);
    let x = synthetic(n, d, 42);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    bench_embeddings(c, "SPEC001", &x, &labels);
}

/// Two classes of 50 000 × 384 with a planted shifted cluster in one, so the embedding
/// detectors that cluster (ACT001) or filter (SPEC002) do their full work.
fn embedding_view_data(n: usize, d: usize) -> (Array2<f32>, Vec<u32>) {
    let mut x = synthetic(n, d, 42);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    let mut rng = SplitMix64(7);
    let dir: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
    let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
    for i in (1..n).step_by(2) {
        if rng.unit() < 0.1 {
            for k in 0..d {
                x[[i, k]] += (6.0 * dir[k] / norm) as f32;
            }
        }
    }
    (x, labels)
}

fn act001(c: &mut Criterion) {
    let (n, d) = (100_000, 384);
    let (x, labels) = embedding_view_data(n, d);
    bench_embeddings(c, "ACT001", &x, &labels);
}

fn spec002(c: &mut Criterion) {
    let (n, d) = (100_000, 384);
    let (x, labels) = embedding_view_data(n, d);
    bench_embeddings(c, "SPEC002", &x, &labels);
}

/// One million rows of Markov-chain text (`TRIG001_BENCH_ROWS` overrides; the `trig_scale`
/// example reports time and peak memory at any size). Ten samples take several minutes.
fn trig001(c: &mut Criterion) {
    let n: usize = std::env::var("TRIG001_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (texts, labels) = text_corpus(n, 7);
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
    bench_fit_score(c, "TRIG001", &view, format!("{n}rows"));
}

/// Synthetic short texts from a 5000-word vocabulary (seeded), with every 20th row a
/// one-word-changed copy of an earlier row, so LSH sees real near duplicates.
fn synthetic_texts(n: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64(seed);
    let mut next = move || rng.next_u64();
    let mut rows: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        if i % 20 == 19 {
            let src = &rows[(next() % i as u64) as usize];
            let mut words: Vec<&str> = src.split(' ').collect();
            let k = (next() % words.len() as u64) as usize;
            words[k] = "changed";
            rows.push(words.join(" "));
            continue;
        }
        let len = 8 + (next() % 25) as usize;
        let words: Vec<String> = (0..len)
            .map(|_| {
                // square of a uniform: small ids are frequent
                let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                format!("w{}", (u * u * 5000.0) as u32)
            })
            .collect();
        rows.push(words.join(" "));
    }
    rows
}

fn dup002(c: &mut Criterion) {
    let n = 100_000;
    let texts = synthetic_texts(n, 42);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
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
    let det = registry::find("DUP002").expect("registered");
    let configured = det.configure(&toml::Table::new()).expect("defaults");
    let mut g = c.benchmark_group("DUP002");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("near-duplicate fit", n), |b| {
        b.iter(|| std::hint::black_box(configured.fit(&view).expect("fit").summary()))
    });
    g.finish();
}

fn lbl001(c: &mut Criterion) {
    // two classes with shifted means: the probe and the neighbours have something to agree on
    let (n, d) = (100_000, 384);
    let mut x = synthetic(n, d, 44);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    for (i, &l) in labels.iter().enumerate() {
        x[[i, 0]] += 2.0 * l as f32;
    }
    bench_embeddings(c, "LBL001", &x, &labels);
}

/// The kNN search shared by LBL001 and DUP002: exact (the default up to 200 000 rows) and the
/// IVF index (beyond), on 100 000 × 384 clustered rows.
fn knn(c: &mut Criterion) {
    use poisongate_detectors::knn::{knn_cosine, knn_ivf};
    let (n, d) = (100_000, 384);
    let mut rng = SplitMix64(45);
    let centres = synthetic(n / 50, d, 46);
    let x = Array2::from_shape_fn((n, d), |(i, j)| {
        centres[[i % (n / 50), j]] + rng.gauss() as f32
    });
    let mut g = c.benchmark_group("knn");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("ivf", format!("{n}x{d}")), |b| {
        b.iter(|| std::hint::black_box(knn_ivf(&x.view(), 10, &Default::default()).expect("ivf").k))
    });
    g.bench_function(BenchmarkId::new("exact", format!("{n}x{d}")), |b| {
        b.iter(|| std::hint::black_box(knn_cosine(&x.view(), 10).expect("exact").k))
    });
    g.finish();
}

/// Exact moments (the mergeable state of SPEC001 and ACT001's covariance) of 6 920 rows of 256
/// columns, the size of sst2-badnets-10's `.mlp.npy`, with values of an activation's range.
fn moments(c: &mut Criterion) {
    use poisongate_detectors::state::Moments;
    let (n, d) = (6920, 256);
    let x = synthetic(n, d, 9).mapv(|v| (v * 3.0).max(0.0));
    let rows = x.as_slice().expect("standard layout");
    let mut g = c.benchmark_group("moments");
    g.sample_size(20);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("update_rows", format!("{n}x{d}")), |b| {
        b.iter(|| {
            let mut m = Moments::new(d);
            m.update_rows(rows).expect("finite");
            std::hint::black_box(m.rows())
        })
    });
    g.finish();
}

criterion_group!(benches, spec001, act001, spec002, trig001, dup002, lbl001, knn, moments);
criterion_main!(benches);
