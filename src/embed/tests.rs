//! A tiny BERT written by the tests themselves (random weights, its own WordPiece
//! tokenizer.json) covers loading, pooling, determinism and every refusal without the 90 MB
//! model; tests/integration/embed.rs checks the real model against the shipped matrices.

use super::*;

const HIDDEN: usize = 8;
const LAYERS: usize = 2;
const INTER: usize = 16;
const MAX_POS: usize = 32;
const WORDS: [&str; 12] = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "film", "is", "good", "bad", "very", "##s", "a",
];

fn config() -> Value {
    json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": WORDS.len(),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": INTER,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": MAX_POS,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0
    })
}

/// Random weights for every tensor the tiny config needs, as safetensors bytes.
fn weights(skip: Option<&str>, reshape: Option<(&str, Vec<usize>)>) -> Vec<u8> {
    let cfg: BertConfig = serde_json::from_value(config()).expect("config");
    let mut state = 42u64;
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, mut shape) in expected_tensors(&cfg) {
        if skip == Some(name.as_str()) {
            continue;
        }
        if let Some((n, s)) = &reshape {
            if *n == name {
                shape = s.clone();
            }
        }
        let len: usize = shape.iter().product();
        let bytes: Vec<u8> = (0..len)
            .flat_map(|_| {
                let x =
                    (poisongate_detectors::rng::splitmix(&mut state) % 2001) as f32 / 1000.0 - 1.0;
                let x = if name.ends_with("LayerNorm.weight") {
                    1.0 + 0.1 * x
                } else {
                    0.5 * x
                };
                x.to_le_bytes()
            })
            .collect();
        data.push((name, shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("view"),
            )
        })
        .collect();
    safetensors::serialize(views, None).expect("serialise")
}

fn tokenizer_json(path: &Path) {
    // the serialised form of a BERT WordPiece tokenizer, as Hugging Face writes it
    let vocab: serde_json::Map<String, Value> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), json!(i)))
        .collect();
    let special: Vec<Value> = WORDS[..4]
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({"id": i, "content": w, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let t = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": special,
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
                       "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(path, t.to_string()).expect("tokenizer.json");
}

/// A complete tiny model folder.
fn folder(dir: &Path, pooling: &str, normalize: bool) {
    std::fs::write(dir.join("config.json"), config().to_string()).expect("config");
    tokenizer_json(&dir.join("tokenizer.json"));
    std::fs::write(dir.join("model.safetensors"), weights(None, None)).expect("weights");
    std::fs::create_dir_all(dir.join("1_Pooling")).expect("dir");
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        json!({
            "word_embedding_dimension": HIDDEN,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": pooling == "max",
        })
        .to_string(),
    )
    .expect("pooling");
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if normalize {
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
    }
    std::fs::write(dir.join("modules.json"), Value::from(modules).to_string()).expect("modules");
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        json!({"max_seq_length": 16, "do_lower_case": false}).to_string(),
    )
    .expect("sbert");
}

fn texts() -> Vec<String> {
    [
        "the film is good",
        "The film is very very bad",
        "a film",
        "the film is good",
        "unknownword films",
        "",
        "the the the the the the the the the the the the the the the the the the the",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn tiny_bert_embeds_with_the_folders_pooling_and_normalisation() {
    let tmp = tempfile::tempdir().expect("tmp");
    folder(tmp.path(), "mean", true);
    let e = Embedder::load(tmp.path(), &LoadOptions::default()).expect("load");
    assert_eq!(e.info().pooling, Pooling::Mean);
    assert!(e.info().normalize);
    assert_eq!(e.info().max_tokens, 16, "the folder's max_seq_length");
    assert_eq!(e.info().files.len(), 6, "every file read is listed");
    let t = texts();
    let m = e.embed(&t, &mut |_, _| {}).expect("embed");
    assert_eq!(m.dim(), (t.len(), HIDDEN));
    for r in m.rows() {
        let norm: f32 = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5 && r.iter().all(|x| x.is_finite()));
    }
    assert_eq!(m.row(0), m.row(3), "the same text, the same vector");
    assert_ne!(m.row(0), m.row(1));
    // a long text is truncated, not refused; a batch of one equals the same row in a batch
    let one = e.embed(&t[1..2], &mut |_, _| {}).expect("embed one");
    for (a, b) in one.row(0).iter().zip(m.row(1)) {
        assert!((a - b).abs() < 1e-5, "{a} {b}");
    }
    // CLS and max pooling without normalisation
    for (pooling, want) in [("cls", Pooling::Cls), ("max", Pooling::Max)] {
        let d = tempfile::tempdir().expect("tmp");
        folder(d.path(), pooling, false);
        let e = Embedder::load(d.path(), &LoadOptions::default()).expect("load");
        assert_eq!(e.info().pooling, want);
        assert!(!e.info().normalize);
        let m = e.embed(&t, &mut |_, _| {}).expect("embed");
        assert!(m.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn the_matrix_does_not_depend_on_the_thread_count() {
    let tmp = tempfile::tempdir().expect("tmp");
    folder(tmp.path(), "mean", true);
    let mut t = texts();
    for i in 0..200 {
        t.push(format!(
            "the film is {} good {}",
            "very ".repeat(i % 9),
            i % 7
        ));
    }
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            let opts = LoadOptions {
                batch_tokens: 64,
                ..LoadOptions::default()
            };
            let e = Embedder::load(tmp.path(), &opts).expect("load");
            e.embed(&t, &mut |_, _| {}).expect("embed")
        })
    };
    let (a, b) = (run(1), run(2));
    let bits = |m: &Array2<f32>| m.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}

fn refused(dir: &Path) -> String {
    match Embedder::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_or_broken_folders_are_refused_with_the_reason() {
    // pickle only: refused without opening it (its bytes are not even a pickle)
    let d = tempfile::tempdir().expect("tmp");
    folder(d.path(), "mean", true);
    std::fs::remove_file(d.path().join("model.safetensors")).expect("rm");
    std::fs::write(d.path().join("pytorch_model.bin"), b"not opened").expect("bin");
    let msg = refused(d.path());
    assert!(
        msg.contains("pickle") && msg.contains("pytorch_model.bin") && msg.contains("safetensors"),
        "{msg}"
    );

    // truncated safetensors
    let d = tempfile::tempdir().expect("tmp");
    folder(d.path(), "mean", true);
    let w = weights(None, None);
    std::fs::write(d.path().join("model.safetensors"), &w[..w.len() / 2]).expect("w");
    let msg = refused(d.path());
    assert!(
        msg.contains("model.safetensors") && msg.contains("not a valid safetensors"),
        "{msg}"
    );

    // a header whose offsets point past the end of the file
    let header = json!({"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [1_000_000_000u64, 8], "data_offsets": [0, 32_000_000_000u64]}}).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(d.path().join("model.safetensors"), &bytes).expect("w");
    let msg = refused(d.path());
    assert!(msg.contains("not a valid safetensors"), "{msg}");

    // a header claiming an absurd header length
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(d.path().join("model.safetensors"), &bytes).expect("w");
    let msg = refused(d.path());
    assert!(msg.contains("not a valid safetensors"), "{msg}");

    // a tensor of the wrong shape, and a missing one: named
    let w = weights(
        None,
        Some((
            "encoder.layer.1.output.dense.weight",
            vec![HIDDEN, INTER + 1],
        )),
    );
    std::fs::write(d.path().join("model.safetensors"), w).expect("w");
    let msg = refused(d.path());
    assert!(
        msg.contains("encoder.layer.1.output.dense.weight") && msg.contains("shape"),
        "{msg}"
    );
    std::fs::write(
        d.path().join("model.safetensors"),
        weights(Some("encoder.layer.0.attention.self.key.bias"), None),
    )
    .expect("w");
    let msg = refused(d.path());
    assert!(
        msg.contains("encoder.layer.0.attention.self.key.bias") && msg.contains("missing"),
        "{msg}"
    );

    // a tokenizer.json that does not parse
    let d = tempfile::tempdir().expect("tmp");
    folder(d.path(), "mean", true);
    std::fs::write(d.path().join("tokenizer.json"), b"{\"model\": 3").expect("tok");
    let msg = refused(d.path());
    assert!(msg.contains("tokenizer.json"), "{msg}");

    // not a BERT, and a config whose sizes do not fit
    let d = tempfile::tempdir().expect("tmp");
    folder(d.path(), "mean", true);
    let mut c = config();
    c["model_type"] = json!("gpt2");
    c["architectures"] = json!(["GPT2LMHeadModel"]);
    std::fs::write(d.path().join("config.json"), c.to_string()).expect("c");
    assert!(refused(d.path()).contains("not the BERT encoder family"));
    let mut c = config();
    c["num_attention_heads"] = json!(3);
    std::fs::write(d.path().join("config.json"), c.to_string()).expect("c");
    assert!(refused(d.path()).contains("num_attention_heads"));

    // a model file above the size limit is refused before it is read
    let d = tempfile::tempdir().expect("tmp");
    folder(d.path(), "mean", true);
    let opts = LoadOptions {
        max_model_bytes: 100,
        ..LoadOptions::default()
    };
    let msg = match Embedder::load(d.path(), &opts) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("limit"), "{msg}");
}
