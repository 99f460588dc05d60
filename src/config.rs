//! The scan config file (`scan --config FILE.toml`, `benchmark --config`): every setting is
//! optional, unknown keys are refused, and command-line flags take precedence over it.

use crate::pipeline::{Dedup, ScanOptions};
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
    /// Rows per batch when scoring (and, with `--stream`, when reading).
    pub batch_rows: Option<usize>,
    /// Fit the detectors in rounds over batches of the input (`--stream`).
    pub stream: Option<bool>,
    /// `--stream`: exact groups per slice of the near-duplicate key space (fewer: less memory,
    /// more slices waiting in temporary files).
    pub near_slice_groups: Option<u64>,
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

/// A setting whose value cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingError(pub String);

impl ConfigFile {
    /// The options of a scan of `data` with these settings (a setting left out keeps the
    /// default of [`ScanOptions::new`]). The CLI lays its flags over the config file's settings
    /// first, so flags win; the Python package passes its keyword arguments. `threads`,
    /// `max_line_bytes` and `max_page_bytes` are settings of the process, not of the scan:
    /// the caller applies them.
    pub fn scan_options(self, data: impl Into<PathBuf>) -> Result<ScanOptions, SettingError> {
        let mut o = ScanOptions::new(data);
        if let Some(v) = self.text_column {
            o.text_column = v;
        }
        let prompt = self.prompt_field.map(Paths::into_vec).unwrap_or_default();
        o.fields = match (prompt.is_empty(), self.response_field) {
            (true, None) => None,
            (false, Some(r)) => Some(
                crate::ingest::FieldSpec::parse(&prompt, &r)
                    .map_err(|e| SettingError(format!("--prompt-field / --response-field: {e}")))?,
            ),
            (true, Some(_)) => {
                return Err(SettingError("--response-field needs --prompt-field".into()))
            }
            (false, None) => {
                return Err(SettingError("--prompt-field needs --response-field".into()))
            }
        };
        if let Some(f) = self.format {
            o.format = Some(crate::ingest::RowFormat::parse(&f).ok_or_else(|| {
                SettingError(format!(
                    "--format must be text-label, alpaca, chat, sharegpt or preference, not `{f}`"
                ))
            })?);
        }
        if let Some(v) = self.label_column {
            o.label_column = v;
        }
        o.id_column = self.id_column;
        o.ground_truth_column = self.ground_truth_column;
        o.embedding_column = self.embedding_column;
        o.embeddings = self.embeddings;
        o.embeddings_tensor = self.embeddings_tensor;
        o.response_embeddings = self.response_embeddings;
        o.model = self.model;
        o.model_options.max_tokens = self.max_tokens;
        o.select = self.select;
        o.seed = self.seed.unwrap_or(0);
        if let Some(v) = self.max_quarantine_fraction {
            o.max_quarantine_fraction = v;
        }
        if let Some(v) = self.batch_rows {
            o.batch_rows = v;
        }
        if let Some(v) = self.stream {
            o.stream = v;
        }
        if let Some(v) = self.near_slice_groups {
            o.near_slice_groups = v.max(1);
        }
        if let Some(v) = self.report_rows {
            o.report_rows = v;
        }
        o.detector_params = self
            .detectors
            .into_iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v))
            .collect();
        if let Some(d) = self.dedup {
            o.dedup = Dedup::parse(&d).ok_or_else(|| {
                SettingError(format!(
                    "dedup must be none, keep-first or keep-first-near, not `{d}`"
                ))
            })?;
        }
        if let Some(p) = self.invalid_rows {
            o.invalid_rows = crate::ingest::InvalidPolicy::parse(&p).ok_or_else(|| {
                SettingError(format!(
                    "invalid_rows must be error or quarantine, not `{p}`"
                ))
            })?;
        }
        o.reference = self.reference;
        Ok(o)
    }
}
