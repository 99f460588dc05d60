//! Sentence embeddings computed in the tool from a local model folder: the BERT encoder family
//! (BERT, MiniLM, and the same architecture under other names: e5, bge, gte small/base) laid out
//! as sentence-transformers and Hugging Face lay it out (`config.json`, `tokenizer.json`,
//! `model.safetensors`, optional `modules.json`, `1_Pooling/config.json`,
//! `sentence_bert_config.json`). Inference is candle's BERT (pure Rust, f32 on the CPU); the
//! tokenizer is the `tokenizers` crate reading the folder's `tokenizer.json`. Nothing is
//! downloaded and nothing from the folder is executed: only safetensors weights are read, and
//! their header is checked (offsets inside the file, dtypes, every tensor the architecture needs
//! with the shape `config.json` implies) before any tensor is used. A folder that holds only
//! pickle-based weights (`pytorch_model.bin`, `*.pt`, `*.ckpt`, `*.pkl`) is refused without
//! opening them.
//!
//! Pooling and normalisation follow the folder (mean, CLS or max over the attention mask; L2
//! normalisation when `modules.json` lists a Normalize module); the token budget is the folder's
//! `max_seq_length` unless the caller sets one. Each distinct text is embedded once; texts are
//! batched by padded token count after sorting by length (less padding); batches run in
//! parallel, a few per thread at a time (memory: the model, those batches and the output
//! matrix), and a batch's vectors depend only on its own texts, so the matrix is byte-identical
//! whatever the thread count (tested). Small batches are fastest on a CPU: 256 padded tokens
//! embed sst2 about twice as fast as 4096 (`scripts/embed_speed.sh`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use ndarray::Array2;
use rayon::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// Largest `model.safetensors` read (bytes); a larger file is refused before it is read.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 4 << 30;
/// Padded tokens per forward batch (a longer text is a batch of its own).
pub const DEFAULT_BATCH_TOKENS: usize = 256;

/// Why a model folder could not be used or a text not embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The folder offers only weights that would have to be unpickled.
    #[error("{dir}: {problem}")]
    Refused {
        /// The model folder.
        dir: PathBuf,
        /// What was refused and how to convert.
        problem: String,
    },
    /// A model file is missing, malformed or inconsistent.
    #[error("{file}: {problem}")]
    Model {
        /// The file.
        file: PathBuf,
        /// What is wrong (naming the tensor or key).
        problem: String,
    },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Tokenising or the forward pass failed.
    #[error("embedding failed: {0}")]
    Inference(String),
}

/// How token vectors become one vector per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the attention mask.
    Mean,
    /// The first token ([CLS]).
    Cls,
    /// Element-wise maximum over the attention mask.
    Max,
}

impl Pooling {
    /// The name written in reports.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        }
    }
}

/// One file of the model folder that was read, with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// Path of the file.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the bytes read.
    pub sha256: String,
}

/// What a model folder is and how it embeds: the provenance of a matrix.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The folder.
    pub dir: PathBuf,
    /// Every file read, in a fixed order.
    pub files: Vec<ModelFile>,
    /// `config.json`'s architecture (e.g. BertModel) and model type.
    pub architecture: String,
    /// Pooling.
    pub pooling: Pooling,
    /// L2 normalisation of each vector.
    pub normalize: bool,
    /// Tokens per text after truncation ([CLS] and [SEP] included).
    pub max_tokens: usize,
    /// Output dimensions.
    pub dims: usize,
    /// Layers of the encoder.
    pub layers: usize,
    /// Stored dtype of the weights (computation is f32).
    pub weights_dtype: String,
}

impl ModelInfo {
    /// The facts as JSON (report, sidecar, in-toto predicate).
    pub fn to_json(&self) -> Value {
        json!({
            "dir": self.dir.display().to_string(),
            "architecture": self.architecture,
            "pooling": self.pooling.name(),
            "normalize": self.normalize,
            "max_tokens": self.max_tokens,
            "dims": self.dims,
            "layers": self.layers,
            "weights_dtype": self.weights_dtype,
            "compute_dtype": "f32",
            "files": self.files.iter().map(|f| json!({
                "path": f.path.display().to_string(),
                "bytes": f.bytes,
                "sha256": f.sha256,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A loaded model: the encoder, its tokenizer and its facts.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    info: ModelInfo,
    batch_tokens: usize,
    /// Width of the feed-forward layers (for [`Embedder::flops`]).
    intermediate: usize,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Read a whole file, at most `limit` bytes (checked before reading).
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, EmbedError> {
    let io = |source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limit {
        return Err(EmbedError::Model {
            file: path.to_path_buf(),
            problem: format!("{len} bytes, more than the limit of {limit} (--max-model-bytes)"),
        });
    }
    std::fs::read(path).map_err(io)
}

/// Weight files that would have to be unpickled (never opened).
fn is_pickle(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".h5",
    ]
    .iter()
    .any(|e| lower.ends_with(e))
}

/// JSON of a small model file, with its digest.
fn read_json(path: &Path, files: &mut Vec<ModelFile>) -> Result<Value, EmbedError> {
    let bytes = read_limited(path, 64 << 20)?;
    files.push(ModelFile {
        path: path.to_path_buf(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    });
    serde_json::from_slice(&bytes).map_err(|e| EmbedError::Model {
        file: path.to_path_buf(),
        problem: format!("not valid JSON: {e}"),
    })
}

/// The tensors a BERT encoder of `cfg` needs, with their shapes.
fn expected_tensors(cfg: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut t = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![cfg.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".to_string(),
            vec![cfg.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![cfg.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}.");
        for (name, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![i, h]),
            ("intermediate.dense.bias", vec![i]),
            ("output.dense.weight", vec![h, i]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            t.push((format!("{p}{name}"), shape));
        }
    }
    t
}

/// The encoder's settings from a `config.json`: a BERT-family config within the size limits
/// this tool accepts. Returns it with the model type and architecture named there.
fn bert_config(path: &Path, config: &Value) -> Result<(BertConfig, String, String), EmbedError> {
    let bad_config = |problem: String| EmbedError::Model {
        file: path.to_path_buf(),
        problem,
    };
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let arch = config
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if model_type != "bert" && !arch.starts_with("Bert") {
        return Err(bad_config(format!(
            "model_type `{model_type}` (architecture `{arch}`) is not the BERT encoder family (bert: BERT, MiniLM, e5, bge, gte small/base)"
        )));
    }
    let cfg: BertConfig = serde_json::from_value(config.clone())
        .map_err(|e| bad_config(format!("not a BERT config: {e}")))?;
    let limits = [
        ("hidden_size", cfg.hidden_size, 1, 8192),
        ("num_hidden_layers", cfg.num_hidden_layers, 1, 128),
        ("num_attention_heads", cfg.num_attention_heads, 1, 256),
        ("intermediate_size", cfg.intermediate_size, 1, 65536),
        ("vocab_size", cfg.vocab_size, 1, 4_000_000),
        (
            "max_position_embeddings",
            cfg.max_position_embeddings,
            2,
            65536,
        ),
        ("type_vocab_size", cfg.type_vocab_size, 1, 1024),
    ];
    for (key, v, lo, hi) in limits {
        if !(lo..=hi).contains(&v) {
            return Err(bad_config(format!("{key} = {v} outside {lo}..={hi}")));
        }
    }
    if !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
        return Err(bad_config(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            cfg.hidden_size, cfg.num_attention_heads
        )));
    }
    Ok((cfg, model_type, arch))
}

/// Check a model's `config.json` and `model.safetensors` bytes as [`Embedder::load`] does
/// before any tensor is used: a BERT-family config within the size limits, a safetensors
/// header that parses with every tensor inside the file, and every tensor the encoder needs
/// present with the shape the config implies and a float dtype. An entry point for fuzzing.
#[doc(hidden)]
pub fn check_weights(config_json: &[u8], weights: &[u8]) -> Result<(), EmbedError> {
    let config_path = Path::new("config.json");
    let weights_path = Path::new("model.safetensors");
    let config: Value = serde_json::from_slice(config_json).map_err(|e| EmbedError::Model {
        file: config_path.to_path_buf(),
        problem: format!("not valid JSON: {e}"),
    })?;
    let (cfg, _, _) = bert_config(config_path, &config)?;
    let st = safetensors::SafeTensors::deserialize(weights).map_err(|e| EmbedError::Model {
        file: weights_path.to_path_buf(),
        problem: format!("not a valid safetensors file: {e}"),
    })?;
    check_tensors(weights_path, &st, &cfg).map(|_| ())
}

/// Check the safetensors header against the architecture: every tensor the encoder needs is
/// there (with or without a `bert.` prefix) with the shape `config.json` implies and a float
/// dtype. Returns the prefix and the dtype. The safetensors crate has already checked that the
/// header parses and every tensor's byte range lies inside the file and matches its shape.
fn check_tensors(
    path: &Path,
    st: &safetensors::SafeTensors<'_>,
    cfg: &BertConfig,
) -> Result<(String, String), EmbedError> {
    let bad = |problem: String| EmbedError::Model {
        file: path.to_path_buf(),
        problem,
    };
    let names: std::collections::BTreeSet<String> =
        st.names().into_iter().map(str::to_string).collect();
    let prefix = ["", "bert."]
        .into_iter()
        .find(|p| names.contains(&format!("{p}embeddings.word_embeddings.weight")))
        .ok_or_else(|| {
            bad("no tensor embeddings.word_embeddings.weight (nor bert.embeddings...): not a BERT encoder".into())
        })?;
    let mut dtypes = std::collections::BTreeSet::new();
    for (name, shape) in expected_tensors(cfg) {
        let full = format!("{prefix}{name}");
        let view = st
            .tensor(&full)
            .map_err(|_| bad(format!("tensor {full} is missing")))?;
        if view.shape() != shape.as_slice() {
            return Err(bad(format!(
                "tensor {full} has shape {:?}, config.json implies {:?}",
                view.shape(),
                shape
            )));
        }
        use safetensors::Dtype as D;
        match view.dtype() {
            D::F32 | D::F16 | D::BF16 => {
                dtypes.insert(format!("{:?}", view.dtype()).to_lowercase());
            }
            other => {
                return Err(bad(format!(
                    "tensor {full} has dtype {other:?}; f32, f16 or bf16 expected"
                )))
            }
        }
    }
    Ok((
        prefix.to_string(),
        dtypes.into_iter().collect::<Vec<_>>().join("+"),
    ))
}

/// Options of [`Embedder::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Tokens per text (None: the folder's `max_seq_length`, else `max_position_embeddings`).
    pub max_tokens: Option<usize>,
    /// Largest `model.safetensors` read.
    pub max_model_bytes: u64,
    /// Padded tokens per forward batch.
    pub batch_tokens: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_tokens: None,
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
            batch_tokens: DEFAULT_BATCH_TOKENS,
        }
    }
}

impl Embedder {
    /// Load and check a model folder (see the module docs).
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Embedder, EmbedError> {
        let refuse = |problem: String| EmbedError::Refused {
            dir: dir.to_path_buf(),
            problem,
        };
        let entries = std::fs::read_dir(dir).map_err(|source| EmbedError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            let pickles: Vec<&String> = names.iter().filter(|n| is_pickle(n)).collect();
            if !pickles.is_empty() {
                return Err(refuse(format!(
                    "only pickle-based weights ({}); poisongate never opens them, since unpickling can run code. Convert them to model.safetensors where you trust the file, e.g. `python -c \"import torch; from safetensors.torch import save_file; save_file(torch.load('pytorch_model.bin', weights_only=True), 'model.safetensors')\"`",
                    pickles.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            return Err(refuse(
                "no model.safetensors: a model folder needs config.json, tokenizer.json and model.safetensors".into(),
            ));
        }
        let mut files = Vec::new();
        let config_path = dir.join("config.json");
        let config = read_json(&config_path, &mut files)?;
        let (cfg, model_type, arch) = bert_config(&config_path, &config)?;

        // pooling, normalisation and token budget as the folder says
        let modules_path = dir.join("modules.json");
        let modules = if modules_path.is_file() {
            Some(read_json(&modules_path, &mut files)?)
        } else {
            None
        };
        let normalize = modules.as_ref().is_some_and(|m| {
            m.as_array().is_some_and(|a| {
                a.iter().any(|x| {
                    x.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.ends_with("Normalize"))
                })
            })
        });
        let pooling_path = dir.join("1_Pooling").join("config.json");
        let pooling = if pooling_path.is_file() {
            let p = read_json(&pooling_path, &mut files)?;
            let on = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(false);
            if on("pooling_mode_cls_token") {
                Pooling::Cls
            } else if on("pooling_mode_max_tokens") {
                Pooling::Max
            } else if on("pooling_mode_mean_tokens") {
                Pooling::Mean
            } else {
                return Err(EmbedError::Model {
                    file: pooling_path,
                    problem: "no supported pooling mode (cls, mean or max tokens) is on".into(),
                });
            }
        } else {
            Pooling::Mean
        };
        let sbert_path = dir.join("sentence_bert_config.json");
        let folder_max = if sbert_path.is_file() {
            read_json(&sbert_path, &mut files)?
                .get("max_seq_length")
                .and_then(Value::as_u64)
                .map(|v| v as usize)
        } else {
            None
        };
        let max_tokens = opts
            .max_tokens
            .or(folder_max)
            .unwrap_or(cfg.max_position_embeddings)
            .clamp(2, cfg.max_position_embeddings);

        // tokenizer
        let tok_path = dir.join("tokenizer.json");
        let tok_bytes = read_limited(&tok_path, 256 << 20)?;
        files.push(ModelFile {
            path: tok_path.clone(),
            bytes: tok_bytes.len() as u64,
            sha256: sha256_hex(&tok_bytes),
        });
        let mut tokenizer = Tokenizer::from_bytes(&tok_bytes).map_err(|e| EmbedError::Model {
            file: tok_path.clone(),
            problem: format!("not a tokenizer this tool reads: {e}"),
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Model {
                file: tok_path.clone(),
                problem: format!("truncation to {max_tokens} tokens: {e}"),
            })?;

        // weights: header and shapes checked before any tensor is used
        let bytes = read_limited(&weights, opts.max_model_bytes)?;
        files.push(ModelFile {
            path: weights.clone(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        });
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| EmbedError::Model {
            file: weights.clone(),
            problem: format!("not a valid safetensors file: {e}"),
        })?;
        let (prefix, weights_dtype) = check_tensors(&weights, &st, &cfg)?;
        let mut tensors = std::collections::HashMap::new();
        for (name, _) in expected_tensors(&cfg) {
            let full = format!("{prefix}{name}");
            let view = st.tensor(&full).map_err(|e| EmbedError::Model {
                file: weights.clone(),
                problem: format!("tensor {full}: {e}"),
            })?;
            let dtype = match view.dtype() {
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::BF16 => DType::BF16,
                _ => DType::F32,
            };
            let t = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| EmbedError::Model {
                    file: weights.clone(),
                    problem: format!("tensor {full}: {e}"),
                })?;
            tensors.insert(name, t);
        }
        drop(st);
        drop(bytes);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let mut load_cfg = cfg.clone();
        load_cfg.model_type = None;
        let model = BertModel::load(vb, &load_cfg).map_err(|e| EmbedError::Model {
            file: weights.clone(),
            problem: format!("loading the encoder: {e}"),
        })?;
        let architecture = if arch.is_empty() {
            model_type.clone()
        } else {
            format!("{arch} ({model_type})")
        };
        Ok(Embedder {
            model,
            tokenizer,
            info: ModelInfo {
                dir: dir.to_path_buf(),
                files,
                architecture,
                pooling,
                normalize,
                max_tokens,
                dims: cfg.hidden_size,
                layers: cfg.num_hidden_layers,
                weights_dtype,
            },
            batch_tokens: opts.batch_tokens.max(1),
            intermediate: cfg.intermediate_size,
        })
    }

    /// The model's facts.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Floating-point operations (a multiply-add counts two) the encoder's matrix products
    /// need for `texts`, each at its own token length (padding not counted): per layer and
    /// text of n tokens, the four h×h projections and the two h×i feed-forward products
    /// (2n(4h² + 2hi)) and the attention scores and their weighted sum (4n²h). Embeddings,
    /// layer norms, softmax and pooling are left out, as they are small next to those. Used
    /// to report the rate reached against the machine's matrix-product rate.
    pub fn flops(&self, texts: &[String]) -> Result<f64, EmbedError> {
        let (h, i) = (self.info.dims as f64, self.intermediate as f64);
        let mut total = 0.0;
        for t in texts {
            let n = self.encode(t)?.len() as f64;
            total += 2.0 * n * (4.0 * h * h + 2.0 * h * i) + 4.0 * n * n * h;
        }
        Ok(total * self.info.layers as f64)
    }

    /// Embed `texts` (one row per text, in order). `progress` is called with the number of
    /// distinct texts done and their total after every batch.
    pub fn embed(
        &self,
        texts: &[String],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Array2<f32>, EmbedError> {
        // each distinct text once: its first row, and each row's distinct text
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut uniq: Vec<&str> = Vec::new();
        let mut first_row: Vec<usize> = Vec::new();
        let mut row_of: Vec<usize> = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            let j = *index.entry(t.as_str()).or_insert_with(|| {
                uniq.push(t.as_str());
                first_row.push(i);
                uniq.len() - 1
            });
            row_of.push(j);
        }
        drop(index);
        // token counts only: a batch's ids are made again when it runs, so the ids of the
        // whole dataset are never held at once
        let lens: Vec<usize> = uniq
            .par_iter()
            .map(|t| self.encode(t).map(|ids| ids.len()))
            .collect::<Result<_, _>>()?;
        let mut order: Vec<usize> = (0..uniq.len()).collect();
        order.sort_by_key(|&j| (lens[j], j));
        let dims = self.info.dims;
        // one matrix: a distinct text's vector goes to its first row, then to its repeats
        let mut out = Array2::<f32>::zeros((texts.len(), dims));
        // batches of at most `batch_tokens` padded tokens, over texts sorted by length
        let mut bounds: Vec<(usize, usize)> = Vec::new();
        let mut pos = 0;
        while pos < order.len() {
            let mut end = pos + 1;
            while end < order.len()
                && (end - pos + 1) * lens[order[end]].max(1) <= self.batch_tokens
            {
                end += 1;
            }
            bounds.push((pos, end));
            pos = end;
        }
        // batches run in parallel in rounds of a few per thread (bounded memory); each batch's
        // vectors depend only on its own texts, so the matrix is the same for any thread count
        let round = 4 * rayon::current_num_threads().max(1);
        for chunk in bounds.chunks(round) {
            let done: Vec<Vec<f32>> = chunk
                .par_iter()
                .map(|&(a, b)| {
                    let ids: Vec<Vec<u32>> = order[a..b]
                        .iter()
                        .map(|&j| self.encode(uniq[j]))
                        .collect::<Result<_, _>>()?;
                    self.forward(ids.iter().map(Vec::as_slice))
                })
                .collect::<Result<_, _>>()?;
            for (&(a, b), vectors) in chunk.iter().zip(done) {
                for (r, &j) in order[a..b].iter().enumerate() {
                    out.row_mut(first_row[j]).assign(&ndarray::ArrayView1::from(
                        &vectors[r * dims..(r + 1) * dims],
                    ));
                }
            }
            progress(chunk.last().map_or(0, |c| c.1), order.len());
        }
        for (i, &j) in row_of.iter().enumerate() {
            let src = first_row[j];
            if src != i {
                let v = out.row(src).to_owned();
                out.row_mut(i).assign(&v);
            }
        }
        Ok(out)
    }

    /// A text's token ids, truncated to the token budget.
    fn encode(&self, text: &str) -> Result<Vec<u32>, EmbedError> {
        self.tokenizer
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EmbedError::Inference(format!("tokenising: {e}")))
    }

    /// One padded batch through the encoder, pooled and normalised: batch × dims values.
    fn forward<'a>(&self, batch: impl Iterator<Item = &'a [u32]>) -> Result<Vec<f32>, EmbedError> {
        let seqs: Vec<&[u32]> = batch.collect();
        let b = seqs.len();
        let l = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut flat = vec![0u32; b * l];
        let mut mask = vec![0u32; b * l];
        for (r, s) in seqs.iter().enumerate() {
            flat[r * l..r * l + s.len()].copy_from_slice(s);
            mask[r * l..r * l + s.len()].fill(1);
        }
        let err = |e: candle_core::Error| EmbedError::Inference(e.to_string());
        let dev = Device::Cpu;
        let input = Tensor::from_vec(flat, (b, l), &dev).map_err(err)?;
        let mask_t = Tensor::from_vec(mask.clone(), (b, l), &dev).map_err(err)?;
        let types = input.zeros_like().map_err(err)?;
        let hidden = self
            .model
            .forward(&input, &types, Some(&mask_t))
            .map_err(err)?;
        let h: Vec<Vec<Vec<f32>>> = hidden.to_vec3().map_err(err)?;
        let dims = self.info.dims;
        let mut out = vec![0f32; b * dims];
        for r in 0..b {
            let v = &mut out[r * dims..(r + 1) * dims];
            let live = (0..l).filter(|&t| mask[r * l + t] == 1);
            match self.info.pooling {
                Pooling::Cls => v.copy_from_slice(&h[r][0]),
                Pooling::Mean => {
                    let mut n = 0f32;
                    for t in live {
                        for (a, x) in v.iter_mut().zip(&h[r][t]) {
                            *a += x;
                        }
                        n += 1.0;
                    }
                    let n = n.max(1e-9);
                    v.iter_mut().for_each(|a| *a /= n);
                }
                Pooling::Max => {
                    v.fill(f32::NEG_INFINITY);
                    for t in live {
                        for (a, x) in v.iter_mut().zip(&h[r][t]) {
                            *a = a.max(*x);
                        }
                    }
                }
            }
            if self.info.normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
            }
        }
        Ok(out)
    }
}

/// Options of [`embed_file`].
#[derive(Debug, Clone)]
pub struct EmbedFileOptions {
    /// The dataset (.jsonl or .parquet).
    pub data: PathBuf,
    /// Its text column.
    pub text_column: String,
    /// The model folder.
    pub model: PathBuf,
    /// Loading options.
    pub load: LoadOptions,
    /// Output: .npy (float32 rows × dims) or .safetensors (tensor `embeddings`).
    pub out: PathBuf,
    /// Show a progress bar.
    pub progress: bool,
    /// Of instruction, chat or preference rows: embed the prompts or the responses (the
    /// matrices `scan --embeddings` and `--response-embeddings` take) instead of a text column.
    pub part: Option<Part>,
    /// How the rows are read with `part` (`None`: detected from the first row's keys).
    pub format: Option<crate::ingest::RowFormat>,
}

/// Which text of an instruction, chat or preference row `embed --part` embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The prompt, as `scan` reads it.
    Prompt,
    /// The response (the chosen answer of a preference row).
    Response,
}

impl Part {
    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            Part::Prompt => "prompt",
            Part::Response => "response",
        }
    }
}

/// Why `embed` failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedFileError {
    /// The model.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Reading the data or writing the output.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// The options.
    #[error("{0}")]
    Config(String),
}

/// `<out>.embed.json`: the sidecar naming the model and data behind a matrix.
pub fn sidecar_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".embed.json");
    PathBuf::from(s)
}

/// A progress bar counting distinct texts (hidden when `show` is false or stderr is no terminal).
pub fn progress_bar(show: bool, total: usize) -> indicatif::ProgressBar {
    if !show || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "embedding {bar:30} {pos}/{len} texts, {per_sec}, ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// Write `matrix` as a safetensors file holding one f32 tensor `embeddings`. On a little-endian
/// machine the tensor's bytes are the matrix's own memory (no copy of the output).
fn write_safetensors(path: &Path, matrix: &Array2<f32>) -> Result<(), EmbedFileError> {
    let shape = vec![matrix.nrows(), matrix.ncols()];
    let owned: Vec<u8>;
    let bytes: &[u8] = match matrix.as_slice() {
        Some(s) if cfg!(target_endian = "little") => bytemuck::cast_slice(s),
        _ => {
            owned = matrix.iter().flat_map(|x| x.to_le_bytes()).collect();
            &owned
        }
    };
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, bytes)
        .map_err(|e| EmbedFileError::Config(format!("cannot build the tensor: {e}")))?;
    safetensors::serialize_to_file([("embeddings", view)], None, path)
        .map_err(|e| EmbedFileError::Config(format!("cannot write {}: {e}", path.display())))
}

/// Embed the text column of a dataset into `out` and write `<out>.embed.json` beside it (both
/// through temporary files renamed into place; nothing is written on error). Returns the sidecar.
pub fn embed_file(o: &EmbedFileOptions) -> Result<Value, EmbedFileError> {
    use crate::ingest::{read_table, ColumnSpec, IngestError};
    let kind = match o.out.extension().and_then(|e| e.to_str()) {
        Some("npy") => "npy",
        Some("safetensors") => "safetensors",
        _ => {
            return Err(EmbedFileError::Config(format!(
                "{}: the output must end in .npy or .safetensors",
                o.out.display()
            )))
        }
    };
    let embedder = Embedder::load(&o.model, &o.load)?;
    let format = match (o.part, o.format) {
        (None, _) => None,
        (Some(_), Some(f)) => Some(f),
        (Some(_), None) => {
            let keys = crate::ingest::first_row_keys(&o.data)?;
            Some(crate::ingest::RowFormat::detect(&keys, &o.text_column).0)
        }
    };
    let spec = match format {
        Some(crate::ingest::RowFormat::TextLabel) => {
            return Err(EmbedFileError::Config(format!(
                "{}: --part needs instruction, chat or preference rows, but they read as \
                 text-label (give --format, or embed --text-column instead)",
                o.data.display()
            )))
        }
        Some(f) => ColumnSpec {
            rows: f.into(),
            ..ColumnSpec::default()
        },
        None => ColumnSpec {
            text: Some(o.text_column.clone()),
            ..ColumnSpec::default()
        },
    };
    let table = read_table(&o.data, &spec)?;
    let texts = match o.part {
        Some(Part::Response) => table.responses.as_deref().unwrap_or_default(),
        _ => table.texts.as_deref().unwrap_or_default(),
    };
    let pb = progress_bar(o.progress, 0);
    let matrix = embedder.embed(texts, &mut |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })?;
    pb.finish_and_clear();
    let dir = o
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let tmp = tempfile::Builder::new()
        .prefix(".poisongate-embed-")
        .tempfile_in(&dir)
        .map_err(|e| IngestError::io(&dir, e))?;
    match kind {
        "npy" => ndarray_npy::write_npy(tmp.path(), &matrix).map_err(|e| {
            EmbedFileError::Config(format!("cannot write {}: {e}", o.out.display()))
        })?,
        _ => write_safetensors(tmp.path(), &matrix)?,
    }
    // hashed from the file, streamed: the output is never held twice
    let out_digest = crate::ingest::sha256_file(tmp.path())?;
    let sidecar = json!({
        "output": {
            "path": o.out.display().to_string(),
            "format": kind,
            "rows": matrix.nrows(),
            "dims": matrix.ncols(),
            "dtype": "f32",
            "bytes": out_digest.bytes,
            "sha256": out_digest.sha256,
        },
        "data": {
            "path": o.data.display().to_string(),
            "text_column": if o.part.is_some() { None } else { Some(&o.text_column) },
            "part": o.part.map(Part::name),
            "format": format.map(|f| f.name()),
            "rows": table.n_rows,
            "bytes": table.digest.bytes,
            "sha256": table.digest.sha256,
        },
        "model": embedder.info().to_json(),
        "tool": {"name": "poisongate", "version": env!("CARGO_PKG_VERSION")},
    });
    let side = sidecar_path(&o.out);
    let mut side_tmp = tempfile::Builder::new()
        .prefix(".poisongate-embed-")
        .tempfile_in(&dir)
        .map_err(|e| IngestError::io(&dir, e))?;
    let mut text = serde_json::to_string_pretty(&sidecar)
        .map_err(|e| EmbedFileError::Config(format!("cannot serialise the sidecar: {e}")))?;
    text.push('\n');
    std::io::Write::write_all(&mut side_tmp, text.as_bytes())
        .map_err(|e| IngestError::io(side_tmp.path(), e))?;
    tmp.persist(&o.out)
        .map_err(|e| IngestError::io(&o.out, e.error))?;
    side_tmp
        .persist(&side)
        .map_err(|e| IngestError::io(&side, e.error))?;
    Ok(sidecar)
}

#[cfg(test)]
mod tests;
