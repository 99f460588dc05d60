//! The Parquet reader on arbitrary bytes.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use poisongate::ingest::{read_table, ColumnSpec};
use std::sync::OnceLock;

static SCRATCH: OnceLock<common::Scratch> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| common::Scratch::new("rows.parquet"));
    let path = scratch.write(data);
    let spec = ColumnSpec {
        text: Some("text".into()),
        label: Some("label".into()),
        id: Some("id".into()),
        embedding: Some("emb".into()),
        ..Default::default()
    };
    let _ = read_table(path, &spec);
    let _ = poisongate::ingest::first_row_keys(path);
});
