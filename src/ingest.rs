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
fn json_cell(
    out: &mut Collector,
    role: Role,
    value: &Value,
    row: RowRef,
) -> Result<(), String> {
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
                Value::Number(n) if n.is_i64() || n.is_u64() => {
                    (n.to_string(), LabelKind::Integer)
                }
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
    matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
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
                    format!(
                        "ids must be an integer, string, boolean or float column, found {dt}"
                    ),
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
            let v = floats
                .get(idx)
                .ok_or_else(|| (Some(row), format!("embedding element {k} (0-based) is null")))?;
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
    let file_len = file
        .metadata()
        .map_err(|e| IngestError::io(path, e))?
        .len();
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
