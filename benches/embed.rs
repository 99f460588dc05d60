//! Embedding speed as a rate of floating-point operations, against the machine's own
//! matrix-product rate (the bar for `poisongate embed`: report the GFLOP/s reached).
//!
//! `cargo bench --bench embed` (CI only compiles it). Criterion's "elements/s" are FLOP/s
//! here (a multiply-add counts two):
//! - `matmul/feed-forward 256x384x1536`: candle's f32 matrix product of one batch's shape
//!   (256 padded tokens through MiniLM's first feed-forward layer), the products of a round
//!   run on all threads as `embed` runs its batches;
//! - `matmul/large 2048x384x1536`: one large product, candle's own threading;
//! - `embed/minilm 512 texts`: [`Embedder::embed`] on the first 512 rows of sst2-clean with
//!   ../shared/models/all-MiniLM-L6-v2 at 128 tokens, counted with [`Embedder::flops`]
//!   (the matrix products of the unpadded tokens; padding and the small steps not counted).
//!
//! The embedding bench is left out when ../shared is absent.

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use poisongate::embed::{Embedder, LoadOptions};
use rayon::prelude::*;
use std::path::Path;

fn matmul(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut g = c.benchmark_group("matmul");
    let (m, k, n) = (256usize, 384usize, 1536usize);
    let threads = rayon::current_num_threads().max(1);
    let per_round = 4 * threads;
    let pairs: Vec<(Tensor, Tensor)> = (0..per_round)
        .map(|_| {
            let a = Tensor::rand(-1f32, 1f32, (m, k), &dev).expect("tensor");
            let b = Tensor::rand(-1f32, 1f32, (k, n), &dev).expect("tensor");
            (a, b)
        })
        .collect();
    g.throughput(Throughput::Elements((2 * m * k * n * per_round) as u64));
    g.bench_function("feed-forward 256x384x1536", |bch| {
        bch.iter(|| {
            pairs
                .par_iter()
                .map(|(a, b)| a.matmul(b).expect("matmul"))
                .collect::<Vec<_>>()
        })
    });
    let big_m = 2048usize;
    let a = Tensor::rand(-1f32, 1f32, (big_m, k), &dev).expect("tensor");
    let b = Tensor::rand(-1f32, 1f32, (k, n), &dev).expect("tensor");
    g.throughput(Throughput::Elements((2 * big_m * k * n) as u64));
    g.bench_function("large 2048x384x1536", |bch| {
        bch.iter(|| a.matmul(&b).expect("matmul"))
    });
    g.finish();
}

fn embed(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("../shared/models/all-MiniLM-L6-v2");
    let data = root.join("../shared/benchmarks/sst2-clean.jsonl");
    let (Ok(text), true) = (std::fs::read_to_string(&data), model.is_dir()) else {
        eprintln!("embed bench left out: ../shared is absent");
        return;
    };
    let texts: Vec<String> = text
        .lines()
        .take(512)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    let opts = LoadOptions {
        max_tokens: Some(128),
        ..LoadOptions::default()
    };
    let embedder = Embedder::load(&model, &opts).expect("the model loads");
    let flops = embedder.flops(&texts).expect("texts tokenise");
    let mut g = c.benchmark_group("embed");
    g.sample_size(10);
    g.throughput(Throughput::Elements(flops as u64));
    g.bench_function("minilm 512 texts", |bch| {
        bch.iter(|| embedder.embed(&texts, &mut |_, _| {}).expect("embeds"))
    });
    g.finish();
}

criterion_group!(benches, matmul, embed);
criterion_main!(benches);
