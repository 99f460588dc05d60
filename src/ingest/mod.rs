//! Ingest: reading input tables (JSONL, Parquet) and embedding files (`.npy`, safetensors).
//!
//! Every input is hashed (SHA-256 of the exact file bytes) as it is read, so the report can
//! name exactly what was scanned and [`crate::emit::write_split`] can check that the input did
//! not change between the scan and the split.
//!
//! Only the requested columns are extracted ([`ColumnSpec`]); every other column is skipped
//! without being materialised. A table is read whole ([`read_table`]) or handed out in batches
//! of consecutive rows ([`read_batches`]), so a caller that folds each batch into a state holds
//! one batch at a time; both are one reader, so rows, values and errors are the same.
//!
//! # JSONL
//!
//! One JSON object per line. Lines that are empty or contain only JSON whitespace (space, tab,
//! `\r`, `\n`) are skipped: they are not rows, and row numbers in errors are reported as
//! *line* numbers (1-based) so they can be found in an editor. A requested key that appears
//! twice in the same object is an error (different JSON parsers disagree on which value wins,
//! which is exactly the kind of ambiguity a poisoned row could exploit). A UTF-8 byte-order
//! mark is not accepted.
//!
//! # Parquet
//!
//! Read through the `parquet` crate's Arrow reader with a projection of just the requested
//! top-level columns, in record batches of [`PARQUET_BATCH_SIZE`] rows. Dictionary-encoded
//! columns are accepted and decoded. Row numbers in errors are 1-based.
//!
//! # Embeddings
//!
//! `.npy` files must hold a 2-D little-endian `f4` or `f8` array (C or Fortran order).
//! Object arrays (`|O`) are refused: loading them would require unpickling, i.e. running code
//! chosen by whoever wrote the file. safetensors files must hold a 2-D `F32` or `F64` tensor.
//! `f64` values are converted to `f32`. Any non-finite value (NaN, ±inf, or an `f64` beyond
//! the `f32` range) is an error: one such value silently poisons every statistic downstream.
//!
//! # Invalid rows
//!
//! By default ([`InvalidPolicy::Error`]) the first row that cannot be read stops the read with
//! an error naming the file, line or row, and column. With [`InvalidPolicy::Quarantine`] such a
//! row is recorded in [`Table::invalid`] instead (with the error it would have raised) and every
//! column gets a placeholder for it (an empty string, `false`, a zero vector), so the columns
//! stay aligned with the file's rows; the caller drops those rows with [`Table::retain_rows`]
//! before any value is used. A row is invalid when its line does not parse as a JSON object
//! (`json`; `utf8` when the line is not UTF-8 either), when a requested column is missing, null
//! or of an unusable type (`text-missing`, `text-null`, `label-type`, ...), when an embedding
//! holds a non-finite value (`embedding-nonfinite`) or has another length than the first
//! readable one (`embedding-dims`), or when an instruction row does not fit its layout (the
//! layout's name: `alpaca`, `chat`, `sharegpt`, `preference`, `fields`). Problems of the whole
//! file (unreadable, a column of the wrong type in a Parquet schema) stay errors.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, Float32Array, Float64Array};
use arrow_schema::{ArrowError, DataType};
use ndarray::{Array2, ShapeBuilder};
use ndarray_npy::ReadNpyExt;
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Rows per record batch when reading Parquet.
pub const PARQUET_BATCH_SIZE: usize = 8192;

/// Buffer size used when hashing whole files.
const HASH_BUFFER: usize = 1 << 20;

/// Largest `.npy` header accepted (numpy itself refuses headers over 10 000 bytes by default).
const NPY_MAX_HEADER: usize = 1 << 20;

/// Input table format, decided by the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON Lines: `.jsonl`, `.ndjson`, `.json-lines`.
    Jsonl,
    /// Apache Parquet: `.parquet`, `.pq`.
    Parquet,
}

/// `Ok` when `path` is a regular file or a folder (or a symbolic link to one), or does not exist
/// (the caller reports that as it opens it); an error for a pipe, a socket or a device. A scan
/// reads its input more than once (rounds, then the outputs are copied from it), and a second
/// open of a pipe waits for a writer that never comes.
pub(crate) fn regular_or_absent(path: &Path) -> Result<(), IngestError> {
    match std::fs::metadata(path) {
        Ok(m) if !(m.is_file() || m.is_dir()) => Err(IngestError::io(
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (a pipe or a device): the input is read more than once, \
                 so write it to a file first",
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether `a` and `b` name the same existing file (after following links).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl Format {
    /// The format of `path`, from its extension (case-insensitive); any other extension is an
    /// [`IngestError::UnsupportedFormat`].
    pub fn from_path(path: &Path) -> Result<Format, IngestError> {
        regular_or_absent(path)?;
        if path.is_dir() {
            // a folder is read as one table of its files, all of one format
            return Ok(folder_parts(path)?.0);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json-lines") => Ok(Format::Jsonl),
            Some("parquet" | "pq") => Ok(Format::Parquet),
            _ => Err(IngestError::UnsupportedFormat {
                path: path.to_path_buf(),
                message: "unsupported table format: expected a file ending in .jsonl, .ndjson, \
                          .json-lines, .parquet or .pq, or a folder of Parquet or JSONL files"
                    .to_string(),
            }),
        }
    }

    /// The canonical file extension written for this format (`jsonl` or `parquet`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Jsonl => "JSONL",
            Format::Parquet => "Parquet",
        })
    }
}

/// Identity of a file as read: its path, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// The path as given by the caller.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the exact file bytes, lowercase hex (of a folder: of its manifest, see
    /// [`folder_digest`]).
    pub sha256: String,
    /// A folder read as one table: its Parquet files, in row order (empty for a file).
    pub parts: Vec<PartDigest>,
}

/// Which columns of the input table to extract. `None` means "not needed".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Column holding the row's text (a string).
    pub text: Option<String>,
    /// Column holding the class label (integer, string or boolean).
    pub label: Option<String>,
    /// Column holding a row identifier (any scalar).
    pub id: Option<String>,
    /// Column holding ground truth "is poisoned" (boolean, 0/1, or "true"/"false").
    pub ground_truth: Option<String>,
    /// Column holding an embedding vector per row (an array of numbers).
    pub embedding: Option<String>,
    /// How rows are read: `text-label`, or a prompt and a response from a preset layout or
    /// explicit field paths (then [`Table::texts`] holds the prompts, [`Table::responses`] the
    /// responses, and `text` and `label` are ignored).
    pub rows: RowLayout,
    /// Keep the rejected answers of preference rows in [`Table::rejected`] (`scan --dedup`
    /// keys on them).
    pub rejected: bool,
    /// What a row that cannot be read does: stop the read, or go to [`Table::invalid`].
    pub invalid: InvalidPolicy,
}

/// What a read does with a row it cannot read (`scan --invalid-rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InvalidPolicy {
    /// The first such row is an error (the default).
    #[default]
    Error,
    /// Such rows are listed in [`Table::invalid`] and the read goes on.
    Quarantine,
}

impl InvalidPolicy {
    /// The CLI spelling: `error` or `quarantine`.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidPolicy::Error => "error",
            InvalidPolicy::Quarantine => "quarantine",
        }
    }

    /// Parse the CLI spelling.
    pub fn parse(s: &str) -> Option<InvalidPolicy> {
        [InvalidPolicy::Error, InvalidPolicy::Quarantine]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A row that could not be read, kept under [`InvalidPolicy::Quarantine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRow {
    /// 0-based row number in the input (blank JSONL lines are not rows).
    pub row: usize,
    /// Where the problem is: the JSONL line or Parquet row, or the row of an embedding matrix.
    pub at: RowRef,
    /// What is wrong, e.g. `json`, `utf8`, `text-null`, `label-type`, `embedding-nonfinite`.
    pub what: String,
    /// The error [`InvalidPolicy::Error`] would have raised (file, line or row, column).
    pub message: String,
}

impl InvalidRow {
    /// The reason written beside the row in the quarantine output: `INVALID:<what>`.
    pub fn reason(&self) -> String {
        format!("{INVALID_PREFIX}{}", self.what)
    }
}

/// The prefix of an invalid row's reason.
pub const INVALID_PREFIX: &str = "INVALID:";

/// The original type of the label column's values, so integer classes can be sorted
/// numerically rather than as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelKind {
    /// Integers, rendered in decimal (`"0"`, `"-3"`).
    Integer,
    /// Strings, kept as-is.
    String,
    /// Booleans, rendered `"true"` / `"false"`.
    Bool,
}

impl fmt::Display for LabelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LabelKind::Integer => "integer",
            LabelKind::String => "string",
            LabelKind::Bool => "boolean",
        })
    }
}

/// The requested columns of an input table, fully loaded. Every present column has exactly
/// `n_rows` entries, in file order.
#[derive(Debug, Clone)]
pub struct Table {
    /// Format the table was read as.
    pub format: Format,
    /// Path, size and SHA-256 of the input file.
    pub digest: FileDigest,
    /// Number of rows (for JSONL: non-blank lines).
    pub n_rows: usize,
    /// Text per row, when [`ColumnSpec::text`] was given.
    pub texts: Option<Vec<String>>,
    /// Response per row, for instruction, chat and preference formats.
    pub responses: Option<Vec<String>>,
    /// Rejected answer per row, for preference rows when [`ColumnSpec::rejected`] was set.
    pub rejected: Option<Vec<String>>,
    /// Label per row canonicalised to a string, when [`ColumnSpec::label`] was given:
    /// integers in decimal, strings as-is, booleans `"true"`/`"false"`.
    pub labels: Option<Vec<String>>,
    /// The label column's original kind, when labels were read.
    pub label_kind: Option<LabelKind>,
    /// Identifier per row rendered as a string, when [`ColumnSpec::id`] was given.
    pub ids: Option<Vec<String>>,
    /// Ground truth ("row is poisoned") per row, when [`ColumnSpec::ground_truth`] was given.
    pub ground_truth: Option<Vec<bool>>,
    /// Embedding matrix, `n_rows × d`, when [`ColumnSpec::embedding`] was given.
    pub embeddings: Option<Array2<f32>>,
    /// Rows that could not be read, by row number (only under [`InvalidPolicy::Quarantine`];
    /// their entries in the columns above are placeholders).
    pub invalid: Vec<InvalidRow>,
}

/// Consecutive rows of an input table, as [`read_batches`] hands them out: the same columns as
/// [`Table`], for rows `first_row..first_row + n_rows` of the file.
#[derive(Debug, Clone)]
pub struct Batch {
    /// 0-based number of the batch's first row in the file.
    pub first_row: usize,
    /// Rows in the batch (at least one).
    pub n_rows: usize,
    /// See [`Table::texts`].
    pub texts: Option<Vec<String>>,
    /// See [`Table::responses`].
    pub responses: Option<Vec<String>>,
    /// See [`Table::rejected`].
    pub rejected: Option<Vec<String>>,
    /// See [`Table::labels`].
    pub labels: Option<Vec<String>>,
    /// See [`Table::ids`].
    pub ids: Option<Vec<String>>,
    /// See [`Table::ground_truth`].
    pub ground_truth: Option<Vec<bool>>,
    /// See [`Table::embeddings`]: `n_rows × d`.
    pub embeddings: Option<Array2<f32>>,
    /// The batch's rows that could not be read, numbered in the file (see [`Table::invalid`]).
    pub invalid: Vec<InvalidRow>,
}

/// What [`read_batches`] read, once every batch was handed out.
#[derive(Debug, Clone)]
pub struct ReadSummary {
    /// Format the table was read as.
    pub format: Format,
    /// Path, size and SHA-256 of the input file.
    pub digest: FileDigest,
    /// Rows read, over all batches.
    pub n_rows: usize,
    /// The label column's original kind, when labels were read.
    pub label_kind: Option<LabelKind>,
}

impl Table {
    /// One batch holding every row, and the summary of its read, as a table.
    fn from_batch(batch: Batch, read: ReadSummary) -> Table {
        Table {
            format: read.format,
            digest: read.digest,
            n_rows: read.n_rows,
            texts: batch.texts,
            responses: batch.responses,
            rejected: batch.rejected,
            labels: batch.labels,
            label_kind: read.label_kind,
            ids: batch.ids,
            ground_truth: batch.ground_truth,
            embeddings: batch.embeddings,
            invalid: batch.invalid,
        }
    }

    /// Keep only the rows whose `keep` entry is true (one entry per row), in order: every
    /// column and the embedding matrix are filtered and `n_rows` becomes the count kept.
    /// [`Table::invalid`] is left as it is (it names rows of the file).
    pub fn retain_rows(&mut self, keep: &[bool]) {
        fn filter<T>(v: &mut Option<Vec<T>>, keep: &[bool]) {
            if let Some(v) = v.as_mut() {
                let mut i = 0;
                v.retain(|_| {
                    let k = keep.get(i).copied().unwrap_or(false);
                    i += 1;
                    k
                });
            }
        }
        filter(&mut self.texts, keep);
        filter(&mut self.responses, keep);
        filter(&mut self.rejected, keep);
        filter(&mut self.labels, keep);
        filter(&mut self.ids, keep);
        filter(&mut self.ground_truth, keep);
        if let Some(m) = self.embeddings.as_mut() {
            *m = select_rows(m, keep);
        }
        self.n_rows = keep.iter().filter(|k| **k).count();
    }
}

/// The rows of `m` whose `keep` entry is true.
pub fn select_rows(m: &Array2<f32>, keep: &[bool]) -> Array2<f32> {
    let rows: Vec<usize> = (0..m.nrows())
        .filter(|&i| keep.get(i).copied().unwrap_or(false))
        .collect();
    m.select(ndarray::Axis(0), &rows)
}

/// Where in a file a problem is: a 1-based JSONL line or a 1-based table row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRef {
    /// 1-based line number of a JSONL file (blank lines count as lines).
    Line(usize),
    /// 1-based row number (Parquet rows, rows of an embedding matrix).
    Row(usize),
}

impl RowRef {
    /// The 1-based number, whether line or row.
    pub fn number(self) -> usize {
        match self {
            RowRef::Line(n) | RowRef::Row(n) => n,
        }
    }
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowRef::Line(n) => write!(f, "line {n}"),
            RowRef::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Errors from reading inputs and writing outputs. Every message starts with the file's path,
/// followed where relevant by the 1-based line or row and the column.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file's extension names no supported format.
    #[error("{}: {message}", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What was expected.
        message: String,
    },
    /// A JSONL line is not valid JSON, not an object, or not UTF-8.
    #[error("{}, line {line}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A requested column does not exist (in the Parquet schema, or in one JSONL object).
    #[error("{}: column \"{column}\" not found; available columns: {}",
            location(path, row, &None), list(available))]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The JSONL line lacking the key (`None` for a schema-level miss).
        row: Option<RowRef>,
        /// The missing column.
        column: String,
        /// Columns that do exist (in that JSONL object, or in the Parquet schema).
        available: Vec<String>,
    },
    /// A value has the wrong type, is null, is not finite, or has the wrong length.
    #[error("{}: {message}", location(path, row, column))]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// Where, when known.
        row: Option<RowRef>,
        /// The column, when relevant.
        column: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The file holds no rows.
    #[error("{}: no rows", path.display())]
    NoRows {
        /// The file.
        path: PathBuf,
    },
    /// The Parquet reader or writer failed.
    #[error("{}: Parquet error: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: ParquetError,
    },
    /// An Arrow operation failed.
    #[error("{}: Arrow error: {source}", path.display())]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: ArrowError,
    },
    /// A `.npy` file is malformed or holds an unsupported (or refused) array.
    #[error("{}: {message}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A safetensors file is malformed, holds an unsupported dtype, or the tensor to read is
    /// ambiguous or missing.
    #[error("{}: {message}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The input's SHA-256 when re-read differs from the one recorded during the scan.
    #[error("{}: the input changed during the scan: SHA-256 was {expected} when scanned, \
             {actual} when re-read", path.display())]
    InputChanged {
        /// The input file.
        path: PathBuf,
        /// SHA-256 recorded by the scan.
        expected: String,
        /// SHA-256 found on re-reading.
        actual: String,
    },
    /// The number of verdicts differs from the number of rows in the input.
    #[error("{}: {verdicts} verdicts were given but the input has {rows} rows", path.display())]
    RowCountMismatch {
        /// The input file.
        path: PathBuf,
        /// Number of verdicts given.
        verdicts: usize,
        /// Number of rows re-read.
        rows: usize,
    },
    /// A `--prompt-field` or `--response-field` path leads nowhere in a row, or not to a
    /// string.
    #[error("{}: field `{field}`: {message}", location(path, row, &None))]
    Field {
        /// The file.
        path: PathBuf,
        /// The line or row (`None` when a Parquet file has no column for the path).
        row: Option<RowRef>,
        /// The path, as written.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An input column already uses a name that poisongate adds to quarantined rows.
    #[error("{}: input column \"{column}\" clashes with a column poisongate adds to \
             quarantined rows", location(path, row, &None))]
    ReservedColumn {
        /// The input file.
        path: PathBuf,
        /// The JSONL line holding the key (`None` for a Parquet schema).
        row: Option<RowRef>,
        /// The clashing column.
        column: String,
    },
}

impl IngestError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            IngestError::Io { path, .. }
            | IngestError::UnsupportedFormat { path, .. }
            | IngestError::Json { path, .. }
            | IngestError::MissingColumn { path, .. }
            | IngestError::InvalidValue { path, .. }
            | IngestError::NoRows { path }
            | IngestError::Parquet { path, .. }
            | IngestError::Arrow { path, .. }
            | IngestError::Npy { path, .. }
            | IngestError::Safetensors { path, .. }
            | IngestError::InputChanged { path, .. }
            | IngestError::RowCountMismatch { path, .. }
            | IngestError::Field { path, .. }
            | IngestError::ReservedColumn { path, .. } => path,
        }
    }

    /// The line or row the error is about, when known.
    pub fn row(&self) -> Option<RowRef> {
        match self {
            IngestError::Json { line, .. } => Some(RowRef::Line(*line)),
            IngestError::MissingColumn { row, .. }
            | IngestError::InvalidValue { row, .. }
            | IngestError::Field { row, .. }
            | IngestError::ReservedColumn { row, .. } => *row,
            _ => None,
        }
    }

    /// The column (or, for [`IngestError::Field`], the field path) the error is about, when
    /// relevant.
    pub fn column(&self) -> Option<&str> {
        match self {
            IngestError::MissingColumn { column, .. }
            | IngestError::ReservedColumn { column, .. }
            | IngestError::Field { field: column, .. } => Some(column),
            IngestError::InvalidValue { column, .. } => column.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> IngestError {
        IngestError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parquet(path: &Path, source: ParquetError) -> IngestError {
        IngestError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn arrow(path: &Path, source: ArrowError) -> IngestError {
        IngestError::Arrow {
            path: path.to_path_buf(),
            source,
        }
    }

    fn value(path: &Path, row: Option<RowRef>, column: &str, message: String) -> IngestError {
        IngestError::InvalidValue {
            path: path.to_path_buf(),
            row,
            column: Some(column.to_string()),
            message,
        }
    }
}

fn location(path: &Path, row: &Option<RowRef>, column: &Option<String>) -> String {
    let mut s = path.display().to_string();
    if let Some(row) = row {
        s.push_str(&format!(", {row}"));
    }
    if let Some(column) = column {
        s.push_str(&format!(", column \"{column}\""));
    }
    s
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

mod cells;
mod collect;
mod conversation;
mod embeddings;
mod field_path;
mod fields;
mod folder;
mod hash;
mod jsonl;
mod parquet_file;
mod parquet_pages;
#[cfg(test)]
mod tests;

pub use cells::*;
use collect::*;
pub(crate) use conversation::is_assistant;
pub use conversation::RowFormat;
pub use embeddings::*;
pub use field_path::{FieldPath, PathError, Step};
use fields::Turn;
pub use fields::{FieldSpec, FieldSpecError, RowLayout};
pub use folder::{folder_digest, folder_parts, hash_folder, table_files, PartDigest};
use folder::{hash_parts, table_bytes};
pub use hash::*;
pub(crate) use jsonl::*;
pub use jsonl::{
    line_blocks, max_line_bytes, set_max_line_bytes, LineBlock, DEFAULT_MAX_LINE_BYTES,
};
use parquet_file::*;
use parquet_pages::check_page_sizes;
pub use parquet_pages::{check_footer, parquet_builder};
pub use parquet_pages::{max_page_bytes, set_max_page_bytes, DEFAULT_MAX_PAGE_BYTES};

// ---------------------------------------------------------------------------------------------
// Table reading

/// Read the requested columns of a JSONL or Parquet table (format from the extension), hashing
/// the file as it is read. See the [module docs](self) for the rules of each format.
pub fn read_table(path: &Path, spec: &ColumnSpec) -> Result<Table, IngestError> {
    let mut all: Option<Batch> = None;
    let read = read_batches(path, spec, usize::MAX, &mut |b: Batch| {
        all = Some(b);
        Ok::<(), IngestError>(())
    })?;
    let batch = all.ok_or_else(|| IngestError::NoRows {
        path: path.to_path_buf(),
    })?;
    Ok(Table::from_batch(batch, read))
}

/// Read the requested columns of a JSONL or Parquet table in batches of `batch_rows` rows (the
/// last one shorter; Parquet's rounded up to whole record batches of [`PARQUET_BATCH_SIZE`]),
/// handing each one to `sink` in file order, so memory holds one batch and not the table. The
/// rows, values, invalid rows and errors are those of [`read_table`], which is this with one
/// batch: row numbers, and the errors that depend on earlier rows (a label of another kind, an
/// embedding of another length), run on across batches. An error of `sink` stops the read.
pub fn read_batches<E: From<IngestError>>(
    path: &Path,
    spec: &ColumnSpec,
    batch_rows: usize,
    sink: &mut dyn FnMut(Batch) -> Result<(), E>,
) -> Result<ReadSummary, E> {
    match Format::from_path(path)? {
        Format::Jsonl => read_jsonl(path, spec, batch_rows, None, sink),
        Format::Parquet => read_parquet(path, spec, batch_rows, None, None, sink),
    }
}

/// [`read_batches`] again over a file an earlier read hashed as `known`, for callers that
/// read the same input several times (a streamed scan's rounds). Parquet is not hashed again
/// (only projected columns are read, while hashing reads every byte: with an embedding column
/// that was most of each pass); its size must still be `known`'s. JSONL is hashed as it is
/// read anyway, and must hash to `known`. A difference is [`IngestError::InputChanged`]. The
/// summary's digest is `known`.
pub fn read_batches_again<E: From<IngestError>>(
    path: &Path,
    spec: &ColumnSpec,
    batch_rows: usize,
    known: &FileDigest,
    sink: &mut dyn FnMut(Batch) -> Result<(), E>,
) -> Result<ReadSummary, E> {
    match Format::from_path(path)? {
        Format::Jsonl => {
            let read = match read_jsonl(path, spec, batch_rows, None, sink) {
                Ok(read) => read,
                Err(e) => {
                    // the sink may have failed because the file changed (rows appended since
                    // the first read go past the rows fitted): that, when it did, is the error
                    if let Ok(now) = sha256_file(path) {
                        if now.sha256 != known.sha256 {
                            return Err(IngestError::InputChanged {
                                path: path.to_path_buf(),
                                expected: known.sha256.clone(),
                                actual: now.sha256,
                            }
                            .into());
                        }
                    }
                    return Err(e);
                }
            };
            if read.digest.sha256 != known.sha256 {
                return Err(IngestError::InputChanged {
                    path: path.to_path_buf(),
                    expected: known.sha256.clone(),
                    actual: read.digest.sha256,
                }
                .into());
            }
            Ok(read)
        }
        Format::Parquet => read_parquet(path, spec, batch_rows, Some(known), None, sink),
    }
}

/// A run of consecutive row groups of a Parquet file: one partition of a scan whose rounds run
/// over partitions ([`read_row_groups`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowGroups {
    /// Row groups `start..end`, as numbered in the footer.
    pub groups: std::ops::Range<usize>,
}

/// The rows of each row group of a Parquet file, from its footer (nothing else is read); of a
/// folder of Parquet files, of every file's row groups in row order (a folder of JSONL files has
/// no row groups: see [`line_blocks`]).
pub fn row_group_rows(path: &Path) -> Result<Vec<usize>, IngestError> {
    let mut out = Vec::new();
    for (_, part) in table_files(path)? {
        let file = File::open(&part).map_err(|e| IngestError::io(&part, e))?;
        let builder = parquet_builder(&part, file)?;
        let meta = builder.metadata();
        for i in 0..meta.num_row_groups() {
            let n = meta.row_group(i).num_rows();
            out.push(usize::try_from(n).map_err(|_| IngestError::InvalidValue {
                path: part.clone(),
                row: None,
                column: None,
                message: format!("invalid row count {n} of row group {i} in the file metadata"),
            })?);
        }
    }
    Ok(out)
}

/// [`read_batches_again`] over one partition of the input: of a Parquet file, its row groups
/// `groups` (of a folder: row groups numbered across its files in row order); of a JSONL
/// file, the blocks `groups` of `lines` (its [`line_blocks`]), read from the first one's byte
/// up to the next block's. Batches are numbered by their rows' places in the whole input,
/// and the summary's row count is the row after the last one read. The file's size must be
/// `known`'s; the summary's digest is `known`.
pub fn read_row_groups<E: From<IngestError>>(
    path: &Path,
    spec: &ColumnSpec,
    batch_rows: usize,
    known: &FileDigest,
    groups: &RowGroups,
    lines: &[LineBlock],
    sink: &mut dyn FnMut(Batch) -> Result<(), E>,
) -> Result<ReadSummary, E> {
    match Format::from_path(path)? {
        Format::Jsonl => {
            let size = table_bytes(path)?;
            if size != known.bytes {
                return Err(IngestError::InputChanged {
                    path: path.to_path_buf(),
                    expected: known.sha256.clone(),
                    actual: format!("a file of {size} bytes, not {}", known.bytes),
                }
                .into());
            }
            let from = lines
                .get(groups.groups.start)
                .ok_or_else(|| IngestError::InvalidValue {
                    path: path.to_path_buf(),
                    row: None,
                    column: None,
                    message: format!(
                        "block {} of the rows asked for; the plan has {}",
                        groups.groups.start,
                        lines.len()
                    ),
                })?;
            let end = lines.get(groups.groups.end).map(|b| (b.file, b.byte));
            let mut read = read_jsonl(path, spec, batch_rows, Some((from, end)), sink)?;
            read.digest = known.clone();
            Ok(read)
        }
        Format::Parquet => read_parquet(path, spec, batch_rows, Some(known), Some(groups), sink),
    }
}

/// The top-level keys of a file's first row (JSONL: the first non-blank line's keys; Parquet:
/// the schema's top-level columns), for [`RowFormat::detect`].
pub fn first_row_keys(path: &Path) -> Result<Vec<String>, IngestError> {
    match Format::from_path(path)? {
        Format::Jsonl => {
            let mut lines = JsonlLines::open_for_first_lines(path)?;
            Ok(match lines.advance()? {
                Some(_) => object_keys(lines.bytes()),
                None => Vec::new(),
            })
        }
        Format::Parquet => {
            let files = table_files(path)?;
            let path = files.first().map_or(path, |(_, p)| p.as_path());
            let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
            let builder = parquet_builder(path, file)?;
            Ok(builder
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect())
        }
    }
}

/// The requested columns as (role, name) pairs, plus the distinct names to project.
fn requested(spec: &ColumnSpec) -> (Vec<(Role, &str)>, Vec<&str>) {
    let roles: Vec<(Role, &str)> = [
        (Role::Text, spec.text.as_deref()),
        (Role::Label, spec.label.as_deref()),
        (Role::Id, spec.id.as_deref()),
        (Role::GroundTruth, spec.ground_truth.as_deref()),
        (Role::Embedding, spec.embedding.as_deref()),
    ]
    .into_iter()
    .filter_map(|(r, n)| n.map(|n| (r, n)))
    .collect();
    let mut names: Vec<&str> = Vec::new();
    for (_, n) in &roles {
        if !names.contains(n) {
            names.push(n);
        }
    }
    (roles, names)
}
