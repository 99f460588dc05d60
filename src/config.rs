//! The scan config file (`scan --config FILE.toml`, `benchmark --config`): every setting is
//! optional, unknown keys are refused, and command-line flags take precedence over it.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Settings a config file may hold; every key is optional and flags take precedence.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// How rows are read (`--format`).
    pub format: Option<String>,
    /// Where the prompt is (`--prompt-field`).
    pub prompt_field: Option<Paths>,
    /// Where the response is (`--response-field`).
    pub response_field: Option<String>,
    /// Column holding the text (`--text-column`).
    pub text_column: Option<String>,
    /// Column holding the label (`--label-column`).
    pub label_column: Option<String>,
    /// Column identifying a row (`--id-column`).
    pub id_column: Option<String>,
    /// Column with ground truth (`--ground-truth-column`).
    pub ground_truth_column: Option<String>,
    /// List-of-floats column holding the embeddings (`--embedding-column`).
    pub embedding_column: Option<String>,
    /// Embeddings file (`--embeddings`).
    pub embeddings: Option<PathBuf>,
    /// Tensor name in a safetensors embeddings file (`--embeddings-tensor`).
    pub embeddings_tensor: Option<String>,
    /// Embeddings of the responses (`--response-embeddings`).
    pub response_embeddings: Option<PathBuf>,
    /// Model folder (`--model`).
    pub model: Option<PathBuf>,
    /// Tokens per text for the model (`--max-tokens`).
    pub max_tokens: Option<usize>,
    /// Detector code prefixes to run (`--select`).
    pub select: Option<Vec<String>>,
    /// Seed of every randomised step (`--seed`).
    pub seed: Option<u64>,
    /// Worker threads (`--threads`).
    pub threads: Option<usize>,
    /// The gate's largest quarantined fraction (`--max-quarantine-fraction`).
    pub max_quarantine_fraction: Option<f64>,
    /// Longest JSONL line accepted, in bytes (`--max-line-bytes`).
    pub max_line_bytes: Option<u64>,
    /// Largest uncompressed Parquet page accepted, in bytes (`--max-page-bytes`).
    pub max_page_bytes: Option<u64>,
    /// Rows per batch when writing outputs.
    pub batch_rows: Option<usize>,
    /// Rows listed per detector in the report.
    pub report_rows: Option<usize>,
    /// Plain redundancy policy (`--dedup`).
    pub dedup: Option<String>,
    /// What to do with rows that cannot be read (`--invalid-rows`).
    pub invalid_rows: Option<String>,
    /// A trusted corpus's state to judge the data against (`--reference`).
    pub reference: Option<std::path::PathBuf>,
    /// Per-detector parameter tables, `[detectors.SPEC001]`.
    #[serde(default)]
    pub detectors: BTreeMap<String, toml::Table>,
}

/// `prompt_field` in a config file: `"instruction,input"` or `["instruction", "input"]`.
#[derive(serde::Deserialize, Debug)]
#[serde(untagged)]
pub enum Paths {
    /// One path (or several, comma-separated).
    One(String),
    /// Several paths.
    Many(Vec<String>),
}

impl Paths {
    /// The paths as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Paths::One(s) => vec![s],
            Paths::Many(v) => v,
        }
    }
}

impl ConfigFile {
    /// Parse a config file's text.
    pub fn parse(text: &str) -> Result<ConfigFile, toml::de::Error> {
        toml::from_str(text)
    }
}
