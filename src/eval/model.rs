//! Representations computed in the grid from a local model (`representations =
//! ["model:DIR"]`): every scanned file, injected or not, gets the embeddings of its own text,
//! so the embedding detectors are judged on the text an attack wrote.
//!
//! Embedding a corpus is the slow step (about 150 texts/s for MiniLM on 2 cores), so each
//! dataset's texts are embedded once and kept in a table from text to vector; an injected
//! variant then needs only its new texts (the poisoned rows, usually a few percent). The new
//! texts of one variant are embedded together and not kept, so a variant's matrix depends only
//! on the dataset and the variant itself, never on which variants ran before it.

use super::EvalError;
use crate::embed::{EmbedError, Embedder, LoadOptions};
use crate::ingest::{read_table, ColumnSpec};
use crate::pipeline::ScanError;
use ndarray::Array2;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The name a `model:DIR` representation has in the table: `model:` and the folder's name.
pub(super) fn display_name(dir: &Path) -> String {
    let folder = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    format!("model:{folder}")
}

/// A loaded model and the vectors of one dataset's texts.
pub(super) struct ModelRepresentation {
    /// Name in the table.
    pub name: String,
    dir: PathBuf,
    embedder: Embedder,
    /// (dataset file, text → vector) of the dataset whose texts are kept.
    base: Option<(PathBuf, HashMap<String, Vec<f32>>)>,
}

fn model_error(dir: &Path, e: EmbedError) -> EvalError {
    EvalError::Model {
        dir: dir.to_path_buf(),
        source: Box::new(e),
    }
}

fn read_texts(data: &Path, text_column: &str) -> Result<Vec<String>, EvalError> {
    let spec = ColumnSpec {
        text: Some(text_column.to_string()),
        ..ColumnSpec::default()
    };
    let table = read_table(data, &spec).map_err(|e| EvalError::Scan {
        data: data.display().to_string(),
        source: Box::new(ScanError::Ingest(e)),
    })?;
    Ok(table.texts.unwrap_or_default())
}

impl ModelRepresentation {
    /// Load the model folder `dir` (checked as `poisongate embed` checks it).
    pub fn load(dir: &Path, max_tokens: Option<usize>) -> Result<Self, EvalError> {
        let opts = LoadOptions {
            max_tokens,
            ..LoadOptions::default()
        };
        let embedder = Embedder::load(dir, &opts).map_err(|e| model_error(dir, e))?;
        Ok(ModelRepresentation {
            name: display_name(dir),
            dir: dir.to_path_buf(),
            embedder,
            base: None,
        })
    }

    /// Write to `dst` the embeddings of `data`'s texts (`.npy`, one row per row), reusing the
    /// vectors of `dataset`'s texts. Returns how many texts had to be embedded for this file.
    pub fn write(
        &mut self,
        dataset: &Path,
        data: &Path,
        text_column: &str,
        dst: &Path,
        log: &mut dyn FnMut(&str),
    ) -> Result<usize, EvalError> {
        if self.base.as_ref().is_none_or(|(p, _)| p != dataset) {
            self.base = None;
            let texts = read_texts(dataset, text_column)?;
            log(&format!(
                "embed {} texts of {} with {}",
                texts.len(),
                dataset.display(),
                self.name
            ));
            let m = self
                .embedder
                .embed(&texts, &mut |_, _| {})
                .map_err(|e| model_error(&self.dir, e))?;
            let mut table = HashMap::with_capacity(texts.len());
            for (t, row) in texts.into_iter().zip(m.rows()) {
                table.entry(t).or_insert_with(|| row.to_vec());
            }
            self.base = Some((dataset.to_path_buf(), table));
        }
        let Some((_, base)) = &self.base else {
            return Ok(0);
        };
        let texts = read_texts(data, text_column)?;
        // the variant's own texts, in order of first appearance
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<String> = texts
            .iter()
            .filter(|t| !base.contains_key(t.as_str()) && seen.insert(t.as_str()))
            .cloned()
            .collect();
        let fresh_m = if fresh.is_empty() {
            Array2::zeros((0, self.embedder.info().dims))
        } else {
            self.embedder
                .embed(&fresh, &mut |_, _| {})
                .map_err(|e| model_error(&self.dir, e))?
        };
        let fresh_row: HashMap<&str, usize> = fresh
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let dims = self.embedder.info().dims;
        let mut out = Array2::<f32>::zeros((texts.len(), dims));
        for (i, t) in texts.iter().enumerate() {
            let mut row = out.row_mut(i);
            if let Some(v) = base.get(t.as_str()) {
                row.assign(&ndarray::ArrayView1::from(v.as_slice()));
            } else if let Some(&j) = fresh_row.get(t.as_str()) {
                row.assign(&fresh_m.row(j));
            }
        }
        ndarray_npy::write_npy(dst, &out).map_err(|e| EvalError::Write {
            path: dst.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(fresh.len())
    }
}
