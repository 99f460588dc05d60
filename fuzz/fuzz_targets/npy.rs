//! `.npy` embeddings (header and payload) on arbitrary bytes. Inputs not starting with the
//! magic string get it, with a version byte and a header length taken from the input, so most
//! runs reach the header parser.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use poisongate::ingest::read_embeddings;
use std::sync::OnceLock;

static SCRATCH: OnceLock<common::Scratch> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| common::Scratch::new("emb.npy"));
    let bytes = if data.starts_with(b"\x93NUMPY") || data.is_empty() {
        data.to_vec()
    } else {
        let header_len = (data.len() as u16).saturating_sub(1).min(300);
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&header_len.to_le_bytes());
        v.extend_from_slice(&data[1..]);
        v
    };
    let path = scratch.write(&bytes);
    if let Ok((m, _)) = read_embeddings(path, None) {
        assert!(m.nrows() > 0 && m.ncols() > 0);
        assert!(m.iter().all(|v| v.is_finite()));
    }
});
