//! Safetensors headers: as an embeddings file (`scan --embeddings x.safetensors`) and as model
//! weights checked against a small BERT config (`--model`), on arbitrary bytes. Inputs not
//! starting with a plausible 8-byte header length get one, so most runs reach the JSON header.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use poisongate::ingest::read_embeddings;
use std::sync::OnceLock;

static SCRATCH: OnceLock<common::Scratch> = OnceLock::new();

const CONFIG: &[u8] = br#"{"model_type": "bert", "hidden_size": 4, "num_hidden_layers": 1,
"num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 10,
"max_position_embeddings": 8, "type_vocab_size": 2, "hidden_act": "gelu",
"layer_norm_eps": 1e-12, "pad_token_id": 0, "hidden_dropout_prob": 0.1,
"initializer_range": 0.02}"#;

fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| common::Scratch::new("emb.safetensors"));
    let bytes = match data.first() {
        Some(b'{') => {
            // a bare JSON header: frame it, the rest of the input after it being the data
            let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
            let mut v = (end as u64).to_le_bytes().to_vec();
            v.extend_from_slice(data);
            v
        }
        _ => data.to_vec(),
    };
    let path = scratch.write(&bytes);
    let _ = read_embeddings(path, None);
    let _ = read_embeddings(path, Some("embeddings"));
    let _ = poisongate::embed::check_weights(CONFIG, &bytes);
});
