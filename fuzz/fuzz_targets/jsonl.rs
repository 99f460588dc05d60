//! The JSONL row reader on arbitrary bytes, with text-label and instruction layouts: any input
//! is either a table or an error, never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use poisongate::ingest::{read_table, ColumnSpec, RowFormat, RowLayout};
use std::sync::OnceLock;

static SCRATCH: OnceLock<common::Scratch> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| common::Scratch::new("rows.jsonl"));
    // the first byte picks the layout; the rest is the file
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let path = scratch.write(body);
    let mut spec = ColumnSpec {
        text: Some("text".into()),
        label: Some("label".into()),
        ..Default::default()
    };
    match mode % 4 {
        0 => {}
        1 => {
            spec.id = Some("id".into());
            spec.ground_truth = Some("poison".into());
            spec.embedding = Some("emb".into());
        }
        2 => spec.rows = RowLayout::Format(RowFormat::Chat),
        _ => {
            spec.rows = RowLayout::Format(RowFormat::Preference);
            spec.rejected = true;
        }
    }
    if let Ok(t) = read_table(path, &spec) {
        assert_eq!(t.texts.as_ref().map_or(t.n_rows, Vec::len), t.n_rows);
    }
    let _ = poisongate::ingest::first_row_keys(path);
});
