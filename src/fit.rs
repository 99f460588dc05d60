//! `poisongate fit`: a trusted corpus turned into the state `scan --reference` judges new
//! batches against.
//!
//! Each input file is read (text and label columns only), made into a partial state, and the
//! partials are merged in the order given. The merge is exact (see
//! `poisongate_detectors::duplicates::reference`), so the bytes do not depend on how the corpus
//! is split into files or on the thread count; row numbers run on across the files.

use crate::ingest::{self, Batch, ColumnSpec, IngestError, RowLayout};
use poisongate_detectors::duplicates::reference::{reference_configure, ReferenceState};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What `fit` reads and writes.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// The trusted corpus, in one or more files (.jsonl or .parquet).
    pub data: Vec<PathBuf>,
    /// Column holding the text.
    pub text_column: String,
    /// Column holding the label.
    pub label_column: String,
    /// REF001's parameter table (its normalisation keys the state).
    pub params: toml::Table,
    /// Where the state is written.
    pub state: PathBuf,
    /// Row-aligned embeddings of each data file (.npy or .safetensors), in the same order; empty
    /// for a state without embeddings. With them the state keeps per-label moments, and a scan
    /// with embeddings reports its classes' drift against them.
    pub embeddings: Vec<PathBuf>,
    /// Rows read at a time ([`FIT_BATCH_ROWS`] by default): the text and label columns are
    /// never held whole, only one batch and the state (embedding files are read whole).
    pub batch_rows: usize,
}

/// Rows per batch `fit` reads by default.
pub const FIT_BATCH_ROWS: usize = 1 << 16;

/// Why a fit failed (nothing is written then).
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Reading an input or writing the state failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// REF001's parameters are invalid.
    #[error(transparent)]
    Params(#[from] poisongate_detectors::ParamError),
    /// The state could not be built.
    #[error("{0}")]
    State(String),
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// Rows read, over all files.
    pub rows: u64,
    /// Distinct normalised texts.
    pub texts: usize,
    /// Label names.
    pub labels: Vec<String>,
    /// Size of the state file.
    pub bytes: usize,
    /// SHA-256 of the state file (what a scan's report records).
    pub sha256: String,
}

/// Build and write the state (atomically: a temporary file renamed into place).
pub fn fit(opts: &FitOptions) -> Result<Fitted, FitError> {
    if opts.data.is_empty() {
        return Err(FitError::State("no input file given".into()));
    }
    if !opts.embeddings.is_empty() && opts.embeddings.len() != opts.data.len() {
        return Err(FitError::State(format!(
            "{} embedding files for {} data files: give one per data file, in the same order",
            opts.embeddings.len(),
            opts.data.len()
        )));
    }
    // the state is written over an existing file: never over one of the inputs
    for input in opts.data.iter().chain(&opts.embeddings) {
        if ingest::same_file(input, &opts.state) {
            return Err(FitError::State(format!(
                "refusing to overwrite the input {} with the state",
                input.display()
            )));
        }
    }
    let norm = reference_configure("REF001", &opts.params, None)?.normalization();
    let mut state = ReferenceState::empty(norm);
    for (fi, path) in opts.data.iter().enumerate() {
        let spec = ColumnSpec {
            text: Some(opts.text_column.clone()),
            label: Some(opts.label_column.clone()),
            rows: RowLayout::default(),
            ..ColumnSpec::default()
        };
        let x = match opts.embeddings.get(fi) {
            Some(emb) => Some((emb, ingest::read_embeddings(emb, None)?.0)),
            None => None,
        };
        let read = ingest::read_batches(path, &spec, opts.batch_rows, &mut |b: Batch| {
            let texts = b.texts.unwrap_or_default();
            let labels = b.labels.unwrap_or_default();
            let (idx, names) = label_indices(&labels);
            let mut part = ReferenceState::from_rows(&texts, &idx, &names, state.rows(), norm)
                .map_err(|e| FitError::State(format!("{}: {e}", path.display())))?;
            if let Some((emb, x)) = &x {
                let end = b.first_row + b.n_rows;
                if end > x.nrows() {
                    return Err(FitError::State(format!(
                        "{}: {} rows, but {} has more",
                        emb.display(),
                        x.nrows(),
                        path.display()
                    )));
                }
                let rows = x.slice(ndarray::s![b.first_row..end, ..]);
                let flat: Vec<f32> = rows.iter().copied().collect();
                part.add_embeddings(&flat, x.ncols(), &idx, &names)
                    .map_err(|e| FitError::State(format!("{}: {e}", emb.display())))?;
            }
            state = std::mem::replace(&mut state, ReferenceState::empty(norm))
                .merge(part)
                .map_err(|e| FitError::State(format!("{}: {e}", path.display())))?;
            Ok(())
        })?;
        if let Some((emb, x)) = &x {
            if x.nrows() != read.n_rows {
                return Err(FitError::State(format!(
                    "{}: {} rows, but {} has {}",
                    emb.display(),
                    x.nrows(),
                    path.display(),
                    read.n_rows
                )));
            }
        }
    }
    let bytes = state.to_bytes();
    write_atomic(&opts.state, &bytes)?;
    Ok(Fitted {
        rows: state.rows(),
        texts: state.entries().len(),
        labels: state.labels().to_vec(),
        bytes: bytes.len(),
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

/// Class indices of `labels` and the class names (the distinct labels, sorted).
fn label_indices(labels: &[String]) -> (Vec<u32>, Vec<String>) {
    let mut names: Vec<String> = labels.to_vec();
    names.sort_unstable();
    names.dedup();
    let index: BTreeMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let idx = labels
        .iter()
        .map(|l| index.get(l.as_str()).copied().unwrap_or(0))
        .collect();
    (idx, names)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IngestError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".poisongate-fit-")
        .tempfile_in(&dir)
        .map_err(|e| IngestError::io(&dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| IngestError::io(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| IngestError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| IngestError::io(path, e.error))?;
    Ok(())
}
