//! Reader throughput: JSONL and Parquet ingest in bytes/s, on a seeded synthetic corpus.
//!
//! `cargo bench --bench throughput` (CI only compiles it).

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parquet::arrow::ArrowWriter;
use poisongate::ingest::{read_table, ColumnSpec};
use std::sync::Arc;

const WORDS: &[&str] = &[
    "the", "film", "is", "a", "moving", "story", "of", "love", "and", "loss", "told", "with",
    "grace", "but", "its", "second", "half", "drags", "on", "far", "too", "long",
];

/// `n` rows of 8–30 words, labels alternating, seeded by a linear congruential generator.
fn corpus(n: usize) -> (Vec<String>, Vec<i64>) {
    let mut s = 12345u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    let texts = (0..n)
        .map(|_| {
            let len = 8 + next() % 23;
            (0..len)
                .map(|_| WORDS[next() % WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (texts, (0..n as i64).map(|i| i % 2).collect())
}

fn readers(c: &mut Criterion) {
    let n = 200_000;
    let (texts, labels) = corpus(n);
    let dir = tempfile::tempdir().expect("temp dir");
    let jsonl = dir.path().join("bench.jsonl");
    let mut body = String::new();
    for (i, (t, l)) in texts.iter().zip(&labels).enumerate() {
        body += &serde_json::json!({"id": format!("r{i}"), "text": t, "label": l, "extra": i})
            .to_string();
        body.push('\n');
    }
    std::fs::write(&jsonl, &body).expect("write jsonl");
    let pq = dir.path().join("bench.parquet");
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("r{i}")),
            )),
        ),
        (
            "text",
            Arc::new(StringArray::from_iter_values(texts.iter())),
        ),
        ("label", Arc::new(Int64Array::from(labels.clone()))),
    ];
    let batch = RecordBatch::try_from_iter(cols).expect("batch");
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&pq).expect("create"),
        batch.schema(),
        None,
    )
    .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let spec = ColumnSpec {
        text: Some("text".into()),
        label: Some("label".into()),
        id: Some("id".into()),
        ..Default::default()
    };
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    for (name, path) in [("jsonl", &jsonl), ("parquet", &pq)] {
        let bytes = std::fs::metadata(path).expect("size").len();
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function(format!("{name}/{n}rows"), |b| {
            b.iter(|| read_table(path, &spec).expect("read").n_rows)
        });
    }
    g.finish();
}

criterion_group!(benches, readers);
criterion_main!(benches);
