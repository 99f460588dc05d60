//! Ingest: reading input tables (JSONL, Parquet) and embedding files (`.npy`, safetensors).
//!
//! Every input is hashed (SHA-256 of the exact file bytes) as it is read, so the report can
//! name exactly what was scanned and [`crate::emit::write_split`] can check that the input did
//! not change between the scan and the split.
//!
//! Only the requested columns are extracted ([`ColumnSpec`]); every other column is skipped
//! without being materialised.
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

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, Float32Array, Float64Array};
use arrow_schema::{ArrowError, DataType};
use ndarray::{Array2, ShapeBuilder};
use ndarray_npy::ReadNpyExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
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

impl Format {
    /// The format of `path`, from its extension (case-insensitive); any other extension is an
    /// [`IngestError::UnsupportedFormat`].
    pub fn from_path(path: &Path) -> Result<Format, IngestError> {
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
                          .json-lines, .parquet or .pq"
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
    /// SHA-256 of the exact file bytes, lowercase hex.
    pub sha256: String,
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
}

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
            | IngestError::ReservedColumn { path, .. } => path,
        }
    }

    /// The line or row the error is about, when known.
    pub fn row(&self) -> Option<RowRef> {
        match self {
            IngestError::Json { line, .. } => Some(RowRef::Line(*line)),
            IngestError::MissingColumn { row, .. }
            | IngestError::InvalidValue { row, .. }
            | IngestError::ReservedColumn { row, .. } => *row,
            _ => None,
        }
    }

    /// The column the error is about, when relevant.
    pub fn column(&self) -> Option<&str> {
        match self {
            IngestError::MissingColumn { column, .. }
            | IngestError::ReservedColumn { column, .. } => Some(column),
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

// ---------------------------------------------------------------------------------------------
// Hashing

/// A reader that hashes and counts every byte read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Read to the end (so every byte is hashed) and return the digest.
    pub(crate) fn finish(mut self, path: &Path) -> Result<FileDigest, IngestError> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| IngestError::io(path, e))?;
        Ok(FileDigest {
            path: path.to_path_buf(),
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// SHA-256 and size of a file, streamed with a 1 MiB buffer.
pub fn sha256_file(path: &Path) -> Result<FileDigest, IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    hash_reader(file, path)
}

fn hash_reader(reader: impl Read, path: &Path) -> Result<FileDigest, IngestError> {
    let mut reader = HashingReader::new(reader);
    let mut buf = vec![0u8; HASH_BUFFER];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IngestError::io(path, e)),
        }
    }
    reader.finish(path)
}

/// Hash an already opened file from its start, through a handle that is then discarded.
/// Used so that the bytes hashed and the bytes parsed come from the same open file.
pub(crate) fn hash_open_file(file: &File, path: &Path) -> Result<FileDigest, IngestError> {
    let clone = file.try_clone().map_err(|e| IngestError::io(path, e))?;
    let mut clone = clone;
    io::Seek::rewind(&mut clone).map_err(|e| IngestError::io(path, e))?;
    hash_reader(clone, path)
}

// ---------------------------------------------------------------------------------------------
// JSONL lines and projected object parsing (shared with emit)

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// True when a line is empty or only JSON whitespace; such lines are not rows.
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| is_json_whitespace(b))
}

/// Streams the non-blank lines of a JSONL file while hashing every byte.
pub(crate) struct JsonlLines {
    reader: BufReader<HashingReader<File>>,
    buf: Vec<u8>,
    line: usize,
    path: PathBuf,
}

impl JsonlLines {
    pub(crate) fn open(path: &Path) -> Result<Self, IngestError> {
        let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
        Ok(JsonlLines {
            reader: BufReader::with_capacity(HASH_BUFFER, HashingReader::new(file)),
            buf: Vec::new(),
            line: 0,
            path: path.to_path_buf(),
        })
    }

    /// Advance to the next non-blank line; returns its 1-based line number, or `None` at the
    /// end of the file. The line's bytes (terminator included) are then in [`Self::bytes`].
    pub(crate) fn advance(&mut self) -> Result<Option<usize>, IngestError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| IngestError::io(&self.path, e))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            if !is_blank(&self.buf) {
                return Ok(Some(self.line));
            }
        }
    }

    /// The current line's bytes, terminator included.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Hash any remaining bytes and return the file's digest.
    pub(crate) fn finish(self) -> Result<FileDigest, IngestError> {
        let path = self.path;
        let hashing = self.reader.into_inner();
        hashing.finish(&path)
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Deserializes a JSON object keeping only the values of `wanted` keys (others are skipped
/// without being built). A wanted key present twice is an error.
struct ProjectedObject<'w> {
    wanted: &'w [&'w str],
}

impl<'de> DeserializeSeed<'de> for ProjectedObject<'_> {
    type Value = Vec<Option<Value>>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ProjectedObject<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<Option<Value>> = vec![None; self.wanted.len()];
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.wanted.iter().position(|w| *w == key.0) {
                Some(i) => {
                    if out[i].is_some() {
                        return Err(de::Error::custom(format!(
                            "duplicate key \"{}\" in the same object",
                            key.0
                        )));
                    }
                    out[i] = Some(map.next_value::<Value>()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Parse one JSONL line as an object, extracting only the `wanted` keys.
pub(crate) fn parse_projected(
    line: &[u8],
    wanted: &[&str],
) -> Result<Vec<Option<Value>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let out = ProjectedObject { wanted }.deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// Turn a serde_json error into a message without serde_json's "at line 1 column N" suffix
/// (every line is parsed on its own, so its line would always be 1).
pub(crate) fn json_message(err: &serde_json::Error, line: &[u8]) -> String {
    let full = err.to_string();
    let msg = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => &full,
    };
    let mut out = format!("invalid JSON: {msg} (at byte {} of the line)", err.column());
    if line.starts_with(b"\xEF\xBB\xBF") {
        out.push_str("; the line starts with a UTF-8 byte-order mark, which is not accepted");
    }
    out
}

/// The keys of a JSONL object, for "available columns" messages.
fn object_keys(line: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Map<String, Value>>(line)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Column collection shared by both table formats

/// Role of a requested column, used in messages.
#[derive(Clone, Copy)]
enum Role {
    Text,
    Label,
    Id,
    GroundTruth,
    Embedding,
}

/// Accumulates the requested columns, row by row.
struct Collector {
    texts: Option<Vec<String>>,
    labels: Option<Vec<String>>,
    label_kind: Option<LabelKind>,
    ids: Option<Vec<String>>,
    ground_truth: Option<Vec<bool>>,
    embeddings: Option<Vec<f32>>,
    /// Embedding length and the row that set it.
    dim: Option<(usize, RowRef)>,
}

impl Collector {
    fn new(spec: &ColumnSpec) -> Self {
        Collector {
            texts: spec.text.as_ref().map(|_| Vec::new()),
            labels: spec.label.as_ref().map(|_| Vec::new()),
            label_kind: None,
            ids: spec.id.as_ref().map(|_| Vec::new()),
            ground_truth: spec.ground_truth.as_ref().map(|_| Vec::new()),
            embeddings: spec.embedding.as_ref().map(|_| Vec::new()),
            dim: None,
        }
    }

    fn push_label(&mut self, value: String, kind: LabelKind) -> Result<(), String> {
        match self.label_kind {
            None => self.label_kind = Some(kind),
            Some(k) if k != kind => {
                return Err(format!(
                    "label is {kind} but earlier labels are {k}; all labels must have one kind"
                ))
            }
            Some(_) => {}
        }
        if let Some(labels) = self.labels.as_mut() {
            labels.push(value);
        }
        Ok(())
    }

    /// Check a just-pushed embedding row of `len` values against the first row's length.
    fn check_dim(&mut self, len: usize, row: RowRef) -> Result<(), String> {
        if len == 0 {
            return Err("embedding is empty".to_string());
        }
        match self.dim {
            None => {
                self.dim = Some((len, row));
                Ok(())
            }
            Some((d, _)) if d == len => Ok(()),
            Some((d, first)) => Err(format!(
                "embedding has {len} values but the first row ({first}) has {d}; all rows \
                 must have the same length"
            )),
        }
    }

    fn finish(
        self,
        format: Format,
        digest: FileDigest,
        n_rows: usize,
    ) -> Result<Table, IngestError> {
        if n_rows == 0 {
            return Err(IngestError::NoRows { path: digest.path });
        }
        let embeddings = match self.embeddings {
            None => None,
            Some(data) => {
                let d = self.dim.map_or(0, |(d, _)| d);
                let m = Array2::from_shape_vec((n_rows, d), data).map_err(|e| {
                    IngestError::InvalidValue {
                        path: digest.path.clone(),
                        row: None,
                        column: None,
                        message: format!("embedding matrix has an inconsistent shape: {e}"),
                    }
                })?;
                Some(m)
            }
        };
        Ok(Table {
            format,
            digest,
            n_rows,
            texts: self.texts,
            labels: self.labels,
            label_kind: self.label_kind,
            ids: self.ids,
            ground_truth: self.ground_truth,
            embeddings,
        })
    }
}

/// Check an embedding value (already converted to `f32`) is finite.
fn finite(v: f64, k: usize) -> Result<f32, String> {
    let f = v as f32;
    if f.is_finite() {
        Ok(f)
    } else if v.is_finite() {
        Err(format!(
            "embedding element {k} (0-based) is {v}, beyond the range of f32"
        ))
    } else {
        Err(format!(
            "embedding element {k} (0-based) is {v}; non-finite values are refused"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Table reading

/// Read the requested columns of a JSONL or Parquet table (format from the extension), hashing
/// the file as it is read. See the [module docs](self) for the rules of each format.
pub fn read_table(path: &Path, spec: &ColumnSpec) -> Result<Table, IngestError> {
    match Format::from_path(path)? {
        Format::Jsonl => read_jsonl(path, spec),
        Format::Parquet => read_parquet(path, spec),
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

fn read_jsonl(path: &Path, spec: &ColumnSpec) -> Result<Table, IngestError> {
    let (roles, names) = requested(spec);
    let mut lines = JsonlLines::open(path)?;
    let mut out = Collector::new(spec);
    let mut n_rows = 0usize;
    while let Some(line_no) = lines.advance()? {
        let bytes = lines.bytes();
        let values = parse_projected(bytes, &names).map_err(|e| IngestError::Json {
            path: path.to_path_buf(),
            line: line_no,
            message: json_message(&e, bytes),
        })?;
        let row = Some(RowRef::Line(line_no));
        for (role, name) in &roles {
            let slot = names.iter().position(|n| n == name).unwrap_or(0);
            let value = match values.get(slot).and_then(Option::as_ref) {
                Some(v) => v,
                None => {
                    return Err(IngestError::MissingColumn {
                        path: path.to_path_buf(),
                        row,
                        column: name.to_string(),
                        available: object_keys(bytes),
                    })
                }
            };
            json_cell(&mut out, *role, value, RowRef::Line(line_no))
                .map_err(|m| IngestError::value(path, row, name, m))?;
        }
        n_rows += 1;
    }
    let digest = lines.finish()?;
    out.finish(Format::Jsonl, digest, n_rows)
}

/// Store one JSON value of a requested column; errors are messages without location.
fn json_cell(out: &mut Collector, role: Role, value: &Value, row: RowRef) -> Result<(), String> {
    match role {
        Role::Text => match value {
            Value::String(s) => {
                if let Some(t) = out.texts.as_mut() {
                    t.push(s.clone());
                }
                Ok(())
            }
            other => Err(format!("text must be a string, found {}", json_kind(other))),
        },
        Role::Label => {
            let (s, kind) = match value {
                Value::String(s) => (s.clone(), LabelKind::String),
                Value::Bool(b) => (b.to_string(), LabelKind::Bool),
                Value::Number(n) if n.is_i64() || n.is_u64() => (n.to_string(), LabelKind::Integer),
                Value::Number(n) => {
                    return Err(format!(
                        "label {n} is not an integer; labels must be integers, strings or \
                         booleans"
                    ))
                }
                other => {
                    return Err(format!(
                        "label must be an integer, a string or a boolean, found {}",
                        json_kind(other)
                    ))
                }
            };
            out.push_label(s, kind)
        }
        Role::Id => {
            let s = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(format!(
                        "id must be a string, number or boolean, found {}",
                        json_kind(other)
                    ))
                }
            };
            if let Some(ids) = out.ids.as_mut() {
                ids.push(s);
            }
            Ok(())
        }
        Role::GroundTruth => {
            let b = match value {
                Value::Bool(b) => *b,
                Value::Number(n) if n.as_u64() == Some(0) => false,
                Value::Number(n) if n.as_u64() == Some(1) => true,
                Value::String(s) if s == "true" => true,
                Value::String(s) if s == "false" => false,
                other => {
                    return Err(format!(
                        "ground truth must be a boolean, 0/1 or \"true\"/\"false\", found {}",
                        render_json(other)
                    ))
                }
            };
            if let Some(g) = out.ground_truth.as_mut() {
                g.push(b);
            }
            Ok(())
        }
        Role::Embedding => {
            let items = match value {
                Value::Array(items) => items,
                other => {
                    return Err(format!(
                        "embedding must be an array of numbers, found {}",
                        json_kind(other)
                    ))
                }
            };
            let Some(data) = out.embeddings.as_mut() else {
                return Ok(());
            };
            for (k, item) in items.iter().enumerate() {
                match item.as_f64() {
                    Some(v) => data.push(finite(v, k)?),
                    None => {
                        return Err(format!(
                            "embedding element {k} (0-based) is {}, expected a number",
                            json_kind(item)
                        ))
                    }
                }
            }
            out.check_dim(items.len(), row)
        }
    }
}

/// A short rendering of a JSON value for messages.
fn render_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(40).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn read_parquet(path: &Path, spec: &ColumnSpec) -> Result<Table, IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    // Hash through the same open file the reader then parses.
    let digest = hash_open_file(&file, path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| IngestError::parquet(path, e))?;
    let (roles, names) = requested(spec);

    let root_fields = builder.parquet_schema().root_schema().get_fields();
    let available: Vec<String> = root_fields.iter().map(|f| f.name().to_string()).collect();
    let mut indices = Vec::with_capacity(names.len());
    for name in &names {
        let hits: Vec<usize> = available
            .iter()
            .enumerate()
            .filter(|(_, a)| a == name)
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [i] => indices.push(*i),
            [] => {
                return Err(IngestError::MissingColumn {
                    path: path.to_path_buf(),
                    row: None,
                    column: name.to_string(),
                    available,
                })
            }
            _ => {
                return Err(IngestError::InvalidValue {
                    path: path.to_path_buf(),
                    row: None,
                    column: Some(name.to_string()),
                    message: "the schema has more than one top-level column with this name"
                        .to_string(),
                })
            }
        }
    }

    let total = builder.metadata().file_metadata().num_rows();
    let mut out = Collector::new(spec);
    if names.is_empty() {
        let n_rows = usize::try_from(total).map_err(|_| IngestError::InvalidValue {
            path: path.to_path_buf(),
            row: None,
            column: None,
            message: format!("invalid row count {total} in the file metadata"),
        })?;
        return out.finish(Format::Parquet, digest, n_rows);
    }

    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(PARQUET_BATCH_SIZE)
        .build()
        .map_err(|e| IngestError::parquet(path, e))?;

    let mut n_rows = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| IngestError::arrow(path, e))?;
        for (role, name) in &roles {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| IngestError::MissingColumn {
                    path: path.to_path_buf(),
                    row: None,
                    column: name.to_string(),
                    available: batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().to_string())
                        .collect(),
                })?;
            let column = decode_dictionary(column).map_err(|e| IngestError::arrow(path, e))?;
            arrow_column(&mut out, *role, column.as_ref(), n_rows)
                .map_err(|(row, m)| IngestError::value(path, row, name, m))?;
        }
        n_rows += batch.num_rows();
    }
    out.finish(Format::Parquet, digest, n_rows)
}

/// Replace a dictionary-encoded array by its decoded values.
fn decode_dictionary(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match array.as_any_dictionary_opt() {
        Some(dict) => arrow_select::take::take(dict.values().as_ref(), dict.keys(), None),
        None => Ok(array.clone()),
    }
}

fn int_at(array: &dyn Array, j: usize) -> Option<i128> {
    Some(match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().value(j).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(j).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(j).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(j).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(j).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(j).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(j).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(j).into(),
        _ => return None,
    })
}

fn is_int(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

fn is_str(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn str_at(array: &dyn Array, j: usize) -> Option<&str> {
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(j)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(j)),
        DataType::Utf8View => Some(array.as_string_view().value(j)),
        _ => None,
    }
}

/// Rendering of an id-like scalar.
fn scalar_at(array: &dyn Array, j: usize) -> Option<String> {
    if let Some(i) = int_at(array, j) {
        return Some(i.to_string());
    }
    if let Some(s) = str_at(array, j) {
        return Some(s.to_string());
    }
    match array.data_type() {
        DataType::Boolean => Some(array.as_boolean().value(j).to_string()),
        DataType::Float32 => Some(array.as_primitive::<Float32Type>().value(j).to_string()),
        DataType::Float64 => Some(array.as_primitive::<Float64Type>().value(j).to_string()),
        _ => None,
    }
}

type CellError = (Option<RowRef>, String);

/// Store one Arrow column of a requested role; `base` is the number of rows before this batch.
fn arrow_column(
    out: &mut Collector,
    role: Role,
    array: &dyn Array,
    base: usize,
) -> Result<(), CellError> {
    let dt = array.data_type().clone();
    let row = |j: usize| Some(RowRef::Row(base + j + 1));
    let null_check = |j: usize| -> Result<(), CellError> {
        if array.is_null(j) {
            Err((row(j), "null value".to_string()))
        } else {
            Ok(())
        }
    };
    match role {
        Role::Text => {
            if !is_str(&dt) {
                return Err((None, format!("text must be a string column, found {dt}")));
            }
            for j in 0..array.len() {
                null_check(j)?;
                if let (Some(t), Some(s)) = (out.texts.as_mut(), str_at(array, j)) {
                    t.push(s.to_string());
                }
            }
        }
        Role::Label => {
            let kind = if is_int(&dt) {
                LabelKind::Integer
            } else if is_str(&dt) {
                LabelKind::String
            } else if dt == DataType::Boolean {
                LabelKind::Bool
            } else {
                return Err((
                    None,
                    format!("labels must be an integer, string or boolean column, found {dt}"),
                ));
            };
            for j in 0..array.len() {
                null_check(j)?;
                let s = match kind {
                    LabelKind::Integer => int_at(array, j).map(|i| i.to_string()),
                    LabelKind::String => str_at(array, j).map(str::to_string),
                    LabelKind::Bool => Some(array.as_boolean().value(j).to_string()),
                };
                let s = s.ok_or_else(|| (row(j), "unreadable label".to_string()))?;
                out.push_label(s, kind).map_err(|m| (row(j), m))?;
            }
        }
        Role::Id => {
            if scalar_at(array, 0).is_none() && !array.is_empty() {
                return Err((
                    None,
                    format!("ids must be an integer, string, boolean or float column, found {dt}"),
                ));
            }
            for j in 0..array.len() {
                null_check(j)?;
                let s = scalar_at(array, j).ok_or_else(|| (row(j), "unreadable id".into()))?;
                if let Some(ids) = out.ids.as_mut() {
                    ids.push(s);
                }
            }
        }
        Role::GroundTruth => {
            if !(is_int(&dt) || is_str(&dt) || dt == DataType::Boolean) {
                return Err((
                    None,
                    format!(
                        "ground truth must be a boolean, 0/1 integer or \"true\"/\"false\" \
                         string column, found {dt}"
                    ),
                ));
            }
            for j in 0..array.len() {
                null_check(j)?;
                let b = if dt == DataType::Boolean {
                    Some(array.as_boolean().value(j))
                } else if let Some(i) = int_at(array, j) {
                    match i {
                        0 => Some(false),
                        1 => Some(true),
                        _ => None,
                    }
                } else {
                    match str_at(array, j) {
                        Some("true") => Some(true),
                        Some("false") => Some(false),
                        _ => None,
                    }
                };
                let b = b.ok_or_else(|| {
                    let shown = scalar_at(array, j).unwrap_or_default();
                    (
                        row(j),
                        format!(
                            "ground truth must be a boolean, 0/1 or \"true\"/\"false\", \
                             found {shown:?}"
                        ),
                    )
                })?;
                if let Some(g) = out.ground_truth.as_mut() {
                    g.push(b);
                }
            }
        }
        Role::Embedding => arrow_embeddings(out, array, base)?,
    }
    Ok(())
}

/// The float child values of a list column.
enum FloatValues<'a> {
    F32(&'a Float32Array),
    F64(&'a Float64Array),
}

impl FloatValues<'_> {
    fn get(&self, k: usize) -> Option<f64> {
        match self {
            FloatValues::F32(a) => (!a.is_null(k)).then(|| f64::from(a.value(k))),
            FloatValues::F64(a) => (!a.is_null(k)).then(|| a.value(k)),
        }
    }

    fn len(&self) -> usize {
        match self {
            FloatValues::F32(a) => a.len(),
            FloatValues::F64(a) => a.len(),
        }
    }
}

fn arrow_embeddings(out: &mut Collector, array: &dyn Array, base: usize) -> Result<(), CellError> {
    let dt = array.data_type().clone();
    let bad_type = || {
        (
            None,
            format!(
                "embeddings must be a List, LargeList or FixedSizeList of Float32 or Float64, \
                 found {dt}"
            ),
        )
    };
    // Per-row [start, end) ranges into the child values.
    let (values, ranges): (&ArrayRef, Vec<(usize, usize)>) = match &dt {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            let offs = l.value_offsets();
            let ranges = offs
                .windows(2)
                .map(|w| (w[0].max(0) as usize, w[1].max(0) as usize))
                .collect();
            (l.values(), ranges)
        }
        DataType::LargeList(_) => {
            let l = array.as_list::<i64>();
            let offs = l.value_offsets();
            let ranges = offs
                .windows(2)
                .map(|w| (w[0].max(0) as usize, w[1].max(0) as usize))
                .collect();
            (l.values(), ranges)
        }
        DataType::FixedSizeList(_, n) => {
            let l = array.as_fixed_size_list();
            let n = (*n).max(0) as usize;
            let ranges = (0..l.len())
                .map(|j| {
                    let s = l.value_offset_at(j);
                    (s, s + n)
                })
                .collect();
            (l.values(), ranges)
        }
        _ => return Err(bad_type()),
    };
    let floats = match values.data_type() {
        DataType::Float32 => FloatValues::F32(values.as_primitive::<Float32Type>()),
        DataType::Float64 => FloatValues::F64(values.as_primitive::<Float64Type>()),
        _ => return Err(bad_type()),
    };
    for (j, (start, end)) in ranges.into_iter().enumerate() {
        let row = RowRef::Row(base + j + 1);
        if array.is_null(j) {
            return Err((Some(row), "null value".to_string()));
        }
        if end < start || end > floats.len() {
            return Err((Some(row), "list offsets out of range".to_string()));
        }
        let Some(data) = out.embeddings.as_mut() else {
            return Ok(());
        };
        for (k, idx) in (start..end).enumerate() {
            let v = floats.get(idx).ok_or_else(|| {
                (
                    Some(row),
                    format!("embedding element {k} (0-based) is null"),
                )
            })?;
            data.push(finite(v, k).map_err(|m| (Some(row), m))?);
        }
        out.check_dim(end - start, row)
            .map_err(|m| (Some(row), m))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Embedding files

/// Read a 2-D embedding matrix from a `.npy` or `.safetensors` file, with the file's digest.
///
/// `tensor` names the safetensors tensor to read; without it the file must hold exactly one
/// 2-D tensor. It is ignored for `.npy`. See the [module docs](self) for the accepted dtypes.
pub fn read_embeddings(
    path: &Path,
    tensor: Option<&str>,
) -> Result<(Array2<f32>, FileDigest), IngestError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (matrix, digest) = match ext.as_deref() {
        Some("npy") => read_npy_file(path)?,
        Some("safetensors") => read_safetensors_file(path, tensor)?,
        _ => {
            return Err(IngestError::UnsupportedFormat {
                path: path.to_path_buf(),
                message: "unsupported embedding format: expected a file ending in .npy or \
                          .safetensors"
                    .to_string(),
            })
        }
    };
    check_matrix(path, &matrix)?;
    Ok((matrix, digest))
}

/// Non-empty, and every value finite.
fn check_matrix(path: &Path, m: &Array2<f32>) -> Result<(), IngestError> {
    if m.nrows() == 0 {
        return Err(IngestError::NoRows {
            path: path.to_path_buf(),
        });
    }
    if m.ncols() == 0 {
        return Err(IngestError::InvalidValue {
            path: path.to_path_buf(),
            row: None,
            column: None,
            message: "embeddings have zero columns".to_string(),
        });
    }
    for (i, row) in m.outer_iter().enumerate() {
        if let Some((j, v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(IngestError::InvalidValue {
                path: path.to_path_buf(),
                row: Some(RowRef::Row(i + 1)),
                column: None,
                message: format!(
                    "embedding value at column index {j} (0-based) is {v}; non-finite values \
                     are refused"
                ),
            });
        }
    }
    Ok(())
}

fn f64_to_f32(m: Array2<f64>, path: &Path) -> Result<Array2<f32>, IngestError> {
    // Find values that overflow f32 before converting, so the message shows the original.
    for (i, row) in m.outer_iter().enumerate() {
        if let Some((j, v)) = row
            .iter()
            .enumerate()
            .find(|(_, v)| v.is_finite() && !(**v as f32).is_finite())
        {
            return Err(IngestError::InvalidValue {
                path: path.to_path_buf(),
                row: Some(RowRef::Row(i + 1)),
                column: None,
                message: format!(
                    "embedding value at column index {j} (0-based) is {v}, beyond the range \
                     of f32"
                ),
            });
        }
    }
    Ok(m.mapv(|v| v as f32))
}

/// Header fields of a `.npy` file that matter here.
#[derive(Debug)]
struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
    /// Bytes of magic, version, length field and header dict.
    prefix_len: usize,
}

/// A tiny parser for the Python literal of a `.npy` header dict (strings, booleans, integers,
/// tuples, lists, dicts, None). Never evaluates anything.
#[derive(Debug, Clone, PartialEq)]
enum PyLit {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Seq(Vec<PyLit>),
    Dict(Vec<(PyLit, PyLit)>),
}

struct PyParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl PyParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyLit, String> {
        if depth > 16 {
            return Err("header nested too deeply".to_string());
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != q {
                    if self.s[self.i] == b'\\' {
                        return Err("escapes in header strings are not supported".to_string());
                    }
                    self.i += 1;
                }
                if self.i >= self.s.len() {
                    return Err("unterminated string in header".to_string());
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                Ok(PyLit::Str(text))
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(close) {
                        self.i += 1;
                        return Ok(PyLit::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {}
                        _ => return Err(format!("expected ',' at byte {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(PyLit::Dict(items));
                    }
                    let k = self.value(depth + 1)?;
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("expected ',' at byte {}", self.i)),
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                    self.i += 1;
                }
                // Python 2 long suffix, as written by old numpy.
                if self.i < self.s.len() && self.s[self.i] == b'L' {
                    self.i += 1;
                }
                let digits = String::from_utf8_lossy(&self.s[start..self.i]);
                digits
                    .trim_end_matches('L')
                    .parse::<u64>()
                    .map(PyLit::Int)
                    .map_err(|_| format!("integer {digits} out of range"))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Ok(PyLit::Bool(true)),
                    b"False" => Ok(PyLit::Bool(false)),
                    b"None" => Ok(PyLit::None),
                    other => Err(format!(
                        "unexpected name {:?} in header",
                        String::from_utf8_lossy(other)
                    )),
                }
            }
            Some(c) => Err(format!(
                "unexpected character {:?} at byte {}",
                c as char, self.i
            )),
            None => Err("header ends early".to_string()),
        }
    }
}

/// Read and check the `.npy` header from `reader`, returning it with the exact bytes read.
fn read_npy_header(reader: &mut impl Read) -> Result<(NpyHeader, Vec<u8>), String> {
    let mut prefix = vec![0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|e| format!("not a .npy file (cannot read the magic string: {e})"))?;
    if &prefix[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic string)".to_string());
    }
    let (major, minor) = (prefix[6], prefix[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(format!("unsupported .npy format version {major}.{minor}")),
    };
    let mut len_buf = vec![0u8; len_bytes];
    reader
        .read_exact(&mut len_buf)
        .map_err(|e| format!("truncated .npy header: {e}"))?;
    prefix.extend_from_slice(&len_buf);
    let header_len = len_buf
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if header_len > NPY_MAX_HEADER {
        return Err(format!(
            ".npy header of {header_len} bytes is larger than the {NPY_MAX_HEADER} accepted"
        ));
    }
    let mut header = vec![0u8; header_len];
    reader
        .read_exact(&mut header)
        .map_err(|e| format!("truncated .npy header: {e}"))?;
    prefix.extend_from_slice(&header);

    let mut parser = PyParser { s: &header, i: 0 };
    let dict = match parser.value(0) {
        Ok(PyLit::Dict(items)) => items,
        Ok(_) => return Err(".npy header is not a dict".to_string()),
        Err(e) => return Err(format!("cannot parse the .npy header: {e}")),
    };
    let get = |key: &str| {
        dict.iter()
            .find(|(k, _)| *k == PyLit::Str(key.to_string()))
            .map(|(_, v)| v)
    };
    let descr = match get("descr") {
        Some(PyLit::Str(s)) => s.clone(),
        Some(_) => {
            return Err(
                "structured (record) dtypes are not supported; expected a 2-D float array"
                    .to_string(),
            )
        }
        None => return Err(".npy header has no 'descr'".to_string()),
    };
    if descr.contains('O') {
        return Err(format!(
            "dtype '{descr}' is an object array; object/pickled arrays are refused because \
             loading them would require unpickling (running code from the file)"
        ));
    }
    if descr != "<f4" && descr != "<f8" {
        return Err(format!(
            "unsupported dtype '{descr}'; only little-endian float32 ('<f4') and float64 \
             ('<f8') are accepted"
        ));
    }
    let fortran_order = match get("fortran_order") {
        Some(PyLit::Bool(b)) => *b,
        _ => return Err(".npy header has no boolean 'fortran_order'".to_string()),
    };
    let shape = match get("shape") {
        Some(PyLit::Seq(items)) => items
            .iter()
            .map(|v| match v {
                PyLit::Int(n) => usize::try_from(*n).map_err(|_| "shape too large".to_string()),
                _ => Err("'shape' must be a tuple of integers".to_string()),
            })
            .collect::<Result<Vec<usize>, String>>()?,
        _ => return Err(".npy header has no tuple 'shape'".to_string()),
    };
    if shape.len() != 2 {
        return Err(format!(
            "array has {} dimensions (shape {shape:?}); embeddings must be 2-D (rows × dims)",
            shape.len()
        ));
    }
    let prefix_len = prefix.len();
    Ok((
        NpyHeader {
            descr,
            fortran_order,
            shape,
            prefix_len,
        },
        prefix,
    ))
}

fn read_npy_file(path: &Path) -> Result<(Array2<f32>, FileDigest), IngestError> {
    let npy_err = |message: String| IngestError::Npy {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| IngestError::io(path, e))?.len();
    let mut reader = HashingReader::new(BufReader::with_capacity(HASH_BUFFER, file));
    let (header, prefix) = read_npy_header(&mut reader).map_err(npy_err)?;

    // Check the data size against the file size before anything is allocated for it.
    let item = if header.descr == "<f4" { 4u64 } else { 8u64 };
    let expected = header
        .shape
        .iter()
        .try_fold(item, |acc, &d| acc.checked_mul(d as u64))
        .and_then(|data| data.checked_add(header.prefix_len as u64));
    match expected {
        Some(e) if e == file_len => {}
        Some(e) => {
            return Err(npy_err(format!(
                "file is {file_len} bytes but its header (shape {:?}, dtype '{}') implies \
                 {e}; the file is truncated or has trailing bytes",
                header.shape, header.descr
            )))
        }
        None => return Err(npy_err(format!("shape {:?} is too large", header.shape))),
    }

    let matrix = {
        let mut chained = io::Cursor::new(prefix).chain(&mut reader);
        if header.descr == "<f4" {
            Array2::<f32>::read_npy(&mut chained)
                .map_err(|e| npy_err(format!("cannot read the array: {e}")))?
        } else {
            let m = Array2::<f64>::read_npy(&mut chained)
                .map_err(|e| npy_err(format!("cannot read the array: {e}")))?;
            f64_to_f32(m, path)?
        }
    };
    let digest = reader.finish(path)?;
    let matrix = if header.fortran_order {
        // Same logical matrix; store it in row-major order for the detectors.
        let mut c = Array2::<f32>::zeros(matrix.raw_dim().set_f(false));
        c.assign(&matrix);
        c
    } else {
        matrix
    };
    Ok((matrix, digest))
}

fn read_safetensors_file(
    path: &Path,
    name: Option<&str>,
) -> Result<(Array2<f32>, FileDigest), IngestError> {
    use safetensors::{Dtype, SafeTensors};
    let st_err = |message: String| IngestError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let mut reader = HashingReader::new(file);
    let mut buf = Vec::new();
    reader
        .read_to_end(&mut buf)
        .map_err(|e| IngestError::io(path, e))?;
    let digest = reader.finish(path)?;

    let st = SafeTensors::deserialize(&buf)
        .map_err(|e| st_err(format!("not a valid safetensors file: {e}")))?;
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    let describe = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| match st.tensor(n) {
                Ok(t) => format!("\"{n}\" {:?} {:?}", t.dtype(), t.shape()),
                Err(_) => format!("\"{n}\""),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match name {
        Some(n) => {
            if !names.contains(&n) {
                return Err(st_err(format!(
                    "no tensor named \"{n}\"; available tensors: {}",
                    describe(&names)
                )));
            }
            n
        }
        None => {
            let two_d: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| st.tensor(n).is_ok_and(|t| t.shape().len() == 2))
                .collect();
            match two_d.as_slice() {
                [one] => *one,
                [] => {
                    return Err(st_err(format!(
                        "no 2-D tensor found; available tensors: {}",
                        describe(&names)
                    )))
                }
                _ => {
                    return Err(st_err(format!(
                        "{} 2-D tensors found; name the one to use. Available tensors: {}",
                        two_d.len(),
                        describe(&names)
                    )))
                }
            }
        }
    };
    let t = st
        .tensor(chosen)
        .map_err(|e| st_err(format!("cannot read tensor \"{chosen}\": {e}")))?;
    let (rows, cols) = match t.shape() {
        [r, c] => (*r, *c),
        other => {
            return Err(st_err(format!(
                "tensor \"{chosen}\" has shape {other:?}; embeddings must be 2-D (rows × dims)"
            )))
        }
    };
    let bad_shape = |e: ndarray::ShapeError| st_err(format!("tensor \"{chosen}\": {e}"));
    let matrix = match t.dtype() {
        Dtype::F32 => {
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Array2::from_shape_vec((rows, cols), v).map_err(bad_shape)?
        }
        Dtype::F64 => {
            let v: Vec<f64> = t
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect();
            f64_to_f32(
                Array2::from_shape_vec((rows, cols), v).map_err(bad_shape)?,
                path,
            )?
        }
        other => {
            return Err(st_err(format!(
                "tensor \"{chosen}\" has dtype {other:?}; only F32 and F64 are accepted"
            )))
        }
    };
    Ok((matrix, digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{FixedSizeListBuilder, Float64Builder};
    use arrow_array::{
        BooleanArray, DictionaryArray, FixedSizeListArray, Int32Array, Int64Array, ListArray,
        RecordBatch, StringArray,
    };
    use parquet::arrow::ArrowWriter;
    use std::sync::Arc;
    use tempfile::TempDir;

    fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn write_parquet(dir: &TempDir, name: &str, batches: &[RecordBatch]) -> PathBuf {
        let p = dir.path().join(name);
        let f = File::create(&p).unwrap();
        let mut w = ArrowWriter::try_new(f, batches[0].schema(), None).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        p
    }

    fn spec(
        text: Option<&str>,
        label: Option<&str>,
        id: Option<&str>,
        gt: Option<&str>,
        emb: Option<&str>,
    ) -> ColumnSpec {
        ColumnSpec {
            text: text.map(str::to_string),
            label: label.map(str::to_string),
            id: id.map(str::to_string),
            ground_truth: gt.map(str::to_string),
            embedding: emb.map(str::to_string),
        }
    }

    fn all() -> ColumnSpec {
        spec(
            Some("text"),
            Some("label"),
            Some("id"),
            Some("gt"),
            Some("emb"),
        )
    }

    fn sha_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(
            Format::from_path(Path::new("a.jsonl")).unwrap(),
            Format::Jsonl
        );
        assert_eq!(
            Format::from_path(Path::new("a.NDJSON")).unwrap(),
            Format::Jsonl
        );
        assert_eq!(
            Format::from_path(Path::new("a.json-lines")).unwrap(),
            Format::Jsonl
        );
        assert_eq!(
            Format::from_path(Path::new("a.pq")).unwrap(),
            Format::Parquet
        );
        assert_eq!(
            Format::from_path(Path::new("a.parquet")).unwrap(),
            Format::Parquet
        );
        let e = Format::from_path(Path::new("data.csv")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("data.csv: unsupported table format"),
            "{e}"
        );
    }

    #[test]
    fn jsonl_reads_requested_columns_and_hashes_exact_bytes() {
        let dir = TempDir::new().unwrap();
        let body = concat!(
            "{\"id\": 7, \"text\": \"hello\", \"label\": 1, \"gt\": false, \"emb\": [1, 2.5], \"other\": {\"x\": [1]}}\n",
            "\n",
            "   \t\r\n",
            "{\"id\": \"r2\", \"text\": \"w\\u00e9\", \"label\": 0, \"gt\": 1, \"emb\": [-1e-3, 0]}\r\n",
            "{\"emb\": [3, 4], \"gt\": \"true\", \"label\": 10, \"text\": \"\", \"id\": true}"
        );
        let p = write(&dir, "d.jsonl", body.as_bytes());
        let t = read_table(&p, &all()).unwrap();
        assert_eq!(t.format, Format::Jsonl);
        assert_eq!(t.n_rows, 3);
        assert_eq!(t.texts.unwrap(), vec!["hello", "wé", ""]);
        assert_eq!(t.labels.unwrap(), vec!["1", "0", "10"]);
        assert_eq!(t.label_kind, Some(LabelKind::Integer));
        assert_eq!(t.ids.unwrap(), vec!["7", "r2", "true"]);
        assert_eq!(t.ground_truth.unwrap(), vec![false, true, true]);
        let e = t.embeddings.unwrap();
        assert_eq!(e.shape(), &[3, 2]);
        assert_eq!(e.row(0).to_vec(), vec![1.0, 2.5]);
        assert_eq!(e.row(1).to_vec(), vec![-1e-3, 0.0]);
        assert_eq!(t.digest.bytes, body.len() as u64);
        assert_eq!(t.digest.sha256, sha_hex(body.as_bytes()));
        assert_eq!(sha256_file(&p).unwrap(), t.digest);
    }

    #[test]
    fn jsonl_projection_ignores_other_columns() {
        let dir = TempDir::new().unwrap();
        let p = write(
            &dir,
            "d.jsonl",
            b"{\"label\": \"cat\", \"junk\": [1, {\"a\": null}]}\n{\"label\": \"dog\"}\n",
        );
        let t = read_table(&p, &spec(None, Some("label"), None, None, None)).unwrap();
        assert_eq!(t.labels.unwrap(), vec!["cat", "dog"]);
        assert_eq!(t.label_kind, Some(LabelKind::String));
        assert!(t.texts.is_none() && t.ids.is_none() && t.embeddings.is_none());
        // Bool labels.
        let p = write(&dir, "b.jsonl", b"{\"label\": true}\n{\"label\": false}\n");
        let t = read_table(&p, &spec(None, Some("label"), None, None, None)).unwrap();
        assert_eq!(t.labels.unwrap(), vec!["true", "false"]);
        assert_eq!(t.label_kind, Some(LabelKind::Bool));
        // No columns requested: rows are still counted.
        let t = read_table(&p, &ColumnSpec::default()).unwrap();
        assert_eq!(t.n_rows, 2);
    }

    #[test]
    fn jsonl_truncated_line_names_the_line() {
        let dir = TempDir::new().unwrap();
        let p = write(&dir, "t.jsonl", b"{\"text\": \"a\"}\n\n{\"text\": \"ab");
        let e = read_table(&p, &spec(Some("text"), None, None, None, None)).unwrap_err();
        assert!(matches!(e, IngestError::Json { line: 3, .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("t.jsonl, line 3: invalid JSON"), "{msg}");
        assert!(!msg.contains("at line 1"), "{msg}");
    }

    #[test]
    fn jsonl_not_an_object_or_duplicate_key() {
        let dir = TempDir::new().unwrap();
        let p = write(&dir, "a.jsonl", b"{\"text\": \"a\"}\n[1, 2]\n");
        let e = read_table(&p, &spec(Some("text"), None, None, None, None)).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.to_string().contains("a JSON object"), "{e}");
        let p = write(&dir, "d.jsonl", b"{\"text\": \"a\", \"text\": \"b\"}\n");
        let e = read_table(&p, &spec(Some("text"), None, None, None, None)).unwrap_err();
        assert!(e.to_string().contains("duplicate key \"text\""), "{e}");
        let p = write(&dir, "bom.jsonl", b"\xEF\xBB\xBF{\"text\": \"a\"}\n");
        let e = read_table(&p, &spec(Some("text"), None, None, None, None)).unwrap_err();
        assert!(e.to_string().contains("byte-order mark"), "{e}");
    }

    #[test]
    fn jsonl_missing_column_names_column_line_and_available() {
        let dir = TempDir::new().unwrap();
        let p = write(
            &dir,
            "m.jsonl",
            b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n",
        );
        let e = read_table(&p, &spec(Some("text"), Some("label"), None, None, None)).unwrap_err();
        assert_eq!(e.row(), Some(RowRef::Line(2)));
        assert_eq!(e.column(), Some("label"));
        let msg = e.to_string();
        assert!(
            msg.contains("m.jsonl, line 2: column \"label\" not found"),
            "{msg}"
        );
        assert!(msg.contains("available columns: \"text\""), "{msg}");
    }

    #[test]
    fn jsonl_bad_values_are_errors_naming_line_and_column() {
        let dir = TempDir::new().unwrap();
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "emb",
                b"{\"emb\": [1, 2]}\n{\"emb\": [1, \"x\"]}\n",
                "element 1 (0-based) is a string",
            ),
            (
                "emb",
                b"{\"emb\": [1, 2]}\n{\"emb\": [1, 2, 3]}\n",
                "has 3 values but the first row (line 1) has 2",
            ),
            ("emb", b"{\"emb\": 5}\n", "must be an array"),
            ("emb", b"{\"emb\": [1e300]}\n", "beyond the range of f32"),
            ("text", b"{\"text\": null}\n", "found null"),
            ("label", b"{\"label\": null}\n", "found null"),
            ("label", b"{\"label\": 1.5}\n", "not an integer"),
            (
                "label",
                b"{\"label\": 1}\n{\"label\": \"a\"}\n",
                "label is string but earlier labels are integer",
            ),
            ("gt", b"{\"gt\": 2}\n", "ground truth must be"),
            ("gt", b"{\"gt\": null}\n", "ground truth must be"),
            ("id", b"{\"id\": [1]}\n", "id must be"),
        ];
        for (col, body, want) in cases {
            let p = write(&dir, "v.jsonl", body);
            let s = match *col {
                "emb" => spec(None, None, None, None, Some("emb")),
                "text" => spec(Some("text"), None, None, None, None),
                "label" => spec(None, Some("label"), None, None, None),
                "gt" => spec(None, None, None, Some("gt"), None),
                _ => spec(None, None, Some("id"), None, None),
            };
            let e = read_table(&p, &s).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want), "{col}: {msg}");
            assert!(msg.contains(&format!("column \"{col}\"")), "{msg}");
            assert!(msg.starts_with(&format!("{}, line ", p.display())), "{msg}");
            assert!(e.row().is_some(), "{msg}");
        }
    }

    #[test]
    fn empty_inputs_have_no_rows() {
        let dir = TempDir::new().unwrap();
        for body in [&b""[..], b"\n  \n\r\n"] {
            let p = write(&dir, "e.jsonl", body);
            let e = read_table(&p, &all()).unwrap_err();
            assert!(matches!(e, IngestError::NoRows { .. }), "{e:?}");
            assert_eq!(e.to_string(), format!("{}: no rows", p.display()));
        }
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "text",
            DataType::Utf8,
            false,
        )]));
        let batch = RecordBatch::new_empty(schema);
        let p = write_parquet(&dir, "e.parquet", &[batch]);
        let e = read_table(&p, &spec(Some("text"), None, None, None, None)).unwrap_err();
        assert!(matches!(e, IngestError::NoRows { .. }), "{e:?}");
    }

    fn sample_batch() -> RecordBatch {
        let emb = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![Some(3.0), Some(4.0)]),
            Some(vec![Some(5.0), Some(6.5)]),
        ]);
        RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![10, 11, 12])) as ArrayRef,
            ),
            (
                "text",
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            ),
            (
                "label",
                Arc::new(Int32Array::from(vec![2, 0, 2])) as ArrayRef,
            ),
            (
                "gt",
                Arc::new(BooleanArray::from(vec![false, true, false])) as ArrayRef,
            ),
            ("emb", Arc::new(emb) as ArrayRef),
            (
                "unused",
                Arc::new(StringArray::from(vec!["x", "y", "z"])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn parquet_reads_list_embeddings_and_integer_labels() {
        let dir = TempDir::new().unwrap();
        let p = write_parquet(&dir, "d.parquet", &[sample_batch()]);
        let t = read_table(&p, &all()).unwrap();
        assert_eq!(t.format, Format::Parquet);
        assert_eq!(t.n_rows, 3);
        assert_eq!(t.ids.unwrap(), vec!["10", "11", "12"]);
        assert_eq!(t.texts.unwrap(), vec!["a", "b", "c"]);
        assert_eq!(t.labels.unwrap(), vec!["2", "0", "2"]);
        assert_eq!(t.label_kind, Some(LabelKind::Integer));
        assert_eq!(t.ground_truth.unwrap(), vec![false, true, false]);
        let e = t.embeddings.unwrap();
        assert_eq!(e.shape(), &[3, 2]);
        assert_eq!(e.row(2).to_vec(), vec![5.0, 6.5]);
        assert_eq!(t.digest, sha256_file(&p).unwrap());
        assert_eq!(t.digest.sha256, sha_hex(&std::fs::read(&p).unwrap()));
    }

    #[test]
    fn parquet_fixed_size_list_string_dictionary_labels_and_01_ground_truth() {
        let dir = TempDir::new().unwrap();
        let mut fsl = FixedSizeListBuilder::new(Float64Builder::new(), 3);
        for r in 0..4 {
            for k in 0..3 {
                fsl.values().append_value(f64::from(r * 10 + k));
            }
            fsl.append(true);
        }
        let fsl: FixedSizeListArray = fsl.finish();
        let labels: DictionaryArray<Int32Type> =
            vec!["spam", "ham", "spam", "eggs"].into_iter().collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("emb", Arc::new(fsl) as ArrayRef),
            ("label", Arc::new(labels) as ArrayRef),
            (
                "gt",
                Arc::new(Int32Array::from(vec![0, 1, 1, 0])) as ArrayRef,
            ),
            (
                "id",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let p = write_parquet(&dir, "f.parquet", &[batch]);
        let t = read_table(
            &p,
            &spec(None, Some("label"), Some("id"), Some("gt"), Some("emb")),
        )
        .unwrap();
        assert_eq!(t.labels.unwrap(), vec!["spam", "ham", "spam", "eggs"]);
        assert_eq!(t.label_kind, Some(LabelKind::String));
        assert_eq!(t.ground_truth.unwrap(), vec![false, true, true, false]);
        let e = t.embeddings.unwrap();
        assert_eq!(e.shape(), &[4, 3]);
        assert_eq!(e.row(3).to_vec(), vec![30.0, 31.0, 32.0]);
    }

    #[test]
    fn parquet_missing_column_lists_available() {
        let dir = TempDir::new().unwrap();
        let p = write_parquet(&dir, "d.parquet", &[sample_batch()]);
        let e = read_table(&p, &spec(Some("body"), None, None, None, None)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("column \"body\" not found"), "{msg}");
        assert!(
            msg.contains("\"id\", \"text\", \"label\", \"gt\", \"emb\", \"unused\""),
            "{msg}"
        );
    }

    #[test]
    fn parquet_errors_name_the_row_across_batches() {
        let dir = TempDir::new().unwrap();
        // Null text at 1-based row 9000, past the first 8192-row batch.
        let texts: Vec<Option<String>> = (0..10_000)
            .map(|i| (i != 8999).then(|| format!("t{i}")))
            .collect();
        let batch = RecordBatch::try_from_iter(vec![(
            "text",
            Arc::new(StringArray::from(texts)) as ArrayRef,
        )])
        .unwrap();
        let p = write_parquet(&dir, "n.parquet", &[batch]);
        let e = read_table(&p, &spec(Some("text"), None, None, None, None)).unwrap_err();
        assert_eq!(e.row(), Some(RowRef::Row(9000)), "{e}");
        assert!(
            e.to_string()
                .contains("row 9000, column \"text\": null value"),
            "{e}"
        );

        // NaN inside an embedding list.
        let emb = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![Some(1.0), Some(f32::NAN)]),
        ]);
        let batch = RecordBatch::try_from_iter(vec![("emb", Arc::new(emb) as ArrayRef)]).unwrap();
        let p = write_parquet(&dir, "nan.parquet", &[batch]);
        let e = read_table(&p, &spec(None, None, None, None, Some("emb"))).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("row 2, column \"emb\": embedding element 1"),
            "{msg}"
        );
        assert!(msg.contains("NaN"), "{msg}");

        // Unsupported label type.
        let batch = RecordBatch::try_from_iter(vec![(
            "label",
            Arc::new(Float64Array::from(vec![1.0])) as ArrayRef,
        )])
        .unwrap();
        let p = write_parquet(&dir, "f.parquet", &[batch]);
        let e = read_table(&p, &spec(None, Some("label"), None, None, None)).unwrap_err();
        assert!(e.to_string().contains("found Float64"), "{e}");
    }

    #[test]
    fn npy_f32_f64_and_fortran_order() {
        let dir = TempDir::new().unwrap();
        let a = ndarray::array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let p = dir.path().join("a.npy");
        ndarray_npy::write_npy(&p, &a).unwrap();
        let (m, d) = read_embeddings(&p, None).unwrap();
        assert_eq!(m, a);
        assert_eq!(d, sha256_file(&p).unwrap());

        let b = ndarray::array![[1.5f64, -2.0], [0.25, 8.0]];
        let p = dir.path().join("b.npy");
        ndarray_npy::write_npy(&p, &b).unwrap();
        let (m, _) = read_embeddings(&p, None).unwrap();
        assert_eq!(m, b.mapv(|v| v as f32));

        // Fortran order: the same logical matrix comes back, in standard layout.
        let f = a.t().as_standard_layout().into_owned().reversed_axes();
        assert!(f.t().is_standard_layout());
        let p = dir.path().join("f.npy");
        ndarray_npy::write_npy(&p, &f).unwrap();
        let head = std::fs::read(&p).unwrap();
        assert!(String::from_utf8_lossy(&head[..80]).contains("'fortran_order': True"));
        let (m, _) = read_embeddings(&p, None).unwrap();
        assert_eq!(m, a);
        assert!(m.is_standard_layout());
    }

    /// A hand-made `.npy` v1.0 file with the given header dict and data bytes.
    fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn npy_object_dtype_and_others_refused() {
        let dir = TempDir::new().unwrap();
        let obj = npy_bytes(
            "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
            b"\x80\x02cos\nsystem\nq\x00.",
        );
        let p = write(&dir, "o.npy", &obj);
        let e = read_embeddings(&p, None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{}: ", p.display())), "{msg}");
        assert!(msg.contains("object/pickled arrays are refused"), "{msg}");
        assert!(msg.contains("unpickling"), "{msg}");

        let cases = [
            (
                "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1), }",
                4,
                "'>f4'",
            ),
            (
                "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1), }",
                8,
                "'<i8'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1), }",
                4,
                "2-D",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                4,
                "truncated",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                4,
                "structured",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }",
                0,
                "no rows",
            ),
        ];
        for (dict, n, want) in cases {
            let p = write(&dir, "x.npy", &npy_bytes(dict, &vec![0u8; n]));
            let e = read_embeddings(&p, None).unwrap_err();
            assert!(e.to_string().contains(want), "{dict}: {e}");
        }
        let p = write(&dir, "bad.npy", b"not numpy at all");
        assert!(read_embeddings(&p, None).is_err());
        let p = write(&dir, "x.npz", b"");
        let e = read_embeddings(&p, None).unwrap_err();
        assert!(
            e.to_string().contains("unsupported embedding format"),
            "{e}"
        );
    }

    #[test]
    fn npy_nan_names_row_and_column_index() {
        let dir = TempDir::new().unwrap();
        let a = ndarray::array![[1.0f32, 2.0], [3.0, 4.0], [5.0, f32::INFINITY]];
        let p = dir.path().join("n.npy");
        ndarray_npy::write_npy(&p, &a).unwrap();
        let e = read_embeddings(&p, None).unwrap_err();
        assert_eq!(e.row(), Some(RowRef::Row(3)));
        let msg = e.to_string();
        assert!(
            msg.contains("row 3: embedding value at column index 1"),
            "{msg}"
        );
        assert!(msg.contains("inf"), "{msg}");
    }

    fn safetensors_file(
        dir: &TempDir,
        name: &str,
        tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
    ) -> PathBuf {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, dt, shape, data)| {
                (
                    n.to_string(),
                    safetensors::tensor::TensorView::new(*dt, shape.clone(), data).unwrap(),
                )
            })
            .collect();
        let bytes = safetensors::serialize(views, None).unwrap();
        write(dir, name, &bytes)
    }

    use safetensors::Dtype;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn safetensors_one_and_two_tensors() {
        let dir = TempDir::new().unwrap();
        let p = safetensors_file(
            &dir,
            "one.safetensors",
            &[(
                "emb",
                Dtype::F32,
                vec![2, 2],
                f32_bytes(&[1.0, 2.0, 3.0, 4.0]),
            )],
        );
        let (m, d) = read_embeddings(&p, None).unwrap();
        assert_eq!(m, ndarray::array![[1.0f32, 2.0], [3.0, 4.0]]);
        assert_eq!(d, sha256_file(&p).unwrap());

        let f64s: Vec<u8> = [0.5f64, 1.5, 2.5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let p = safetensors_file(
            &dir,
            "two.safetensors",
            &[
                ("a", Dtype::F32, vec![1, 2], f32_bytes(&[1.0, 2.0])),
                ("b", Dtype::F64, vec![3, 1], f64s),
                ("ids", Dtype::I32, vec![3], vec![0u8; 12]),
            ],
        );
        let e = read_embeddings(&p, None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("2 2-D tensors found"), "{msg}");
        assert!(
            msg.contains("\"a\" F32 [1, 2]") && msg.contains("\"b\" F64 [3, 1]"),
            "{msg}"
        );
        let (m, _) = read_embeddings(&p, Some("b")).unwrap();
        assert_eq!(m, ndarray::array![[0.5f32], [1.5], [2.5]]);
        let e = read_embeddings(&p, Some("c")).unwrap_err();
        assert!(
            e.to_string()
                .contains("no tensor named \"c\"; available tensors"),
            "{e}"
        );
        let e = read_embeddings(&p, Some("ids")).unwrap_err();
        assert!(e.to_string().contains("must be 2-D"), "{e}");

        let p = safetensors_file(
            &dir,
            "i.safetensors",
            &[("x", Dtype::I32, vec![1, 1], vec![0u8; 4])],
        );
        let e = read_embeddings(&p, None).unwrap_err();
        assert!(e.to_string().contains("dtype I32; only F32 and F64"), "{e}");

        let p = safetensors_file(
            &dir,
            "nan.safetensors",
            &[(
                "x",
                Dtype::F32,
                vec![2, 2],
                f32_bytes(&[1.0, 2.0, f32::NAN, 4.0]),
            )],
        );
        let e = read_embeddings(&p, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("row 2: embedding value at column index 0"),
            "{e}"
        );
    }
}
