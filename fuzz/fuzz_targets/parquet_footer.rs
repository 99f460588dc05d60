//! Structurally valid Parquet files with hostile metadata: a small valid file is built once
//! (several codecs, a list-of-floats column), then the fuzzer's bytes overwrite or insert bytes
//! in its footer (Thrift metadata) and page headers, keeping the magic and length framing.
#![no_main]

#[path = "common.rs"]
mod common;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use poisongate::ingest::{read_table, ColumnSpec};
use std::sync::{Arc, OnceLock};

#[derive(Arbitrary, Debug)]
struct Edit {
    /// Which base file (codec).
    base: u8,
    /// Byte edits: (position from the end of the metadata, new byte).
    footer: Vec<(u16, u8)>,
    /// Byte edits anywhere in the body (page headers and data).
    body: Vec<(u32, u8)>,
    /// Bytes inserted into the metadata, with the length field fixed up.
    insert: Option<(u16, Vec<u8>)>,
}

fn base(codec: Compression) -> Vec<u8> {
    let n = 40;
    let text: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("row {i} says something")),
    ));
    let label: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 2)));
    let mut emb = FixedSizeListBuilder::new(Float32Builder::new(), 3);
    for i in 0..n {
        for k in 0..3 {
            emb.values().append_value((i * 3 + k) as f32 / 7.0);
        }
        emb.append(true);
    }
    let emb: ArrayRef = Arc::new(emb.finish());
    let batch =
        RecordBatch::try_from_iter([("text", text), ("label", label), ("emb", emb)]).unwrap();
    let props = WriterProperties::builder()
        .set_compression(codec)
        .set_data_page_row_count_limit(16)
        .set_write_batch_size(16)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
static SCRATCH: OnceLock<common::Scratch> = OnceLock::new();

fuzz_target!(|e: Edit| {
    let bases = BASES.get_or_init(|| {
        vec![
            base(Compression::UNCOMPRESSED),
            base(Compression::SNAPPY),
            base(Compression::ZSTD(Default::default())),
            base(Compression::LZ4_RAW),
        ]
    });
    let scratch = SCRATCH.get_or_init(|| common::Scratch::new("rows.parquet"));
    let mut file = bases[e.base as usize % bases.len()].clone();
    let len = file.len();
    let meta_len = u32::from_le_bytes(file[len - 8..len - 4].try_into().unwrap()) as usize;
    let meta_start = len - 8 - meta_len;
    for (pos, b) in &e.footer {
        let i = len - 8 - 1 - (*pos as usize % meta_len);
        file[i] = *b;
    }
    for (pos, b) in &e.body {
        let i = 4 + (*pos as usize % (meta_start - 4));
        file[i] = *b;
    }
    if let Some((pos, bytes)) = &e.insert {
        let at = meta_start + (*pos as usize % meta_len);
        file.splice(at..at, bytes.iter().copied());
        let new_len = (meta_len + bytes.len()) as u32;
        let l = file.len();
        file[l - 8..l - 4].copy_from_slice(&new_len.to_le_bytes());
    }
    let path = scratch.write(&file);
    let spec = ColumnSpec {
        text: Some("text".into()),
        label: Some("label".into()),
        embedding: Some("emb".into()),
        ..Default::default()
    };
    let _ = read_table(path, &spec);
});
