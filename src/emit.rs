//! Emit: split the input into a clean file and a quarantine file, in the input's format.
//!
//! The input is never rewritten. Both outputs carry every original column and value; rows
//! keep their input order. Quarantined rows gain two columns:
//!
//! * `poisongate_score` — the combined score (a finite `f64`);
//! * `poisongate_reasons` — the reasons, as a JSON array of strings (JSONL) or a
//!   `List<Utf8>` column (Parquet). A list rather than a `"; "`-joined string so that reasons
//!   containing `;` survive, and so both formats carry the same shape.
//!
//! JSONL: a clean row is written as the original line's exact bytes (a missing final newline is
//! added); a quarantined row is the original object text with the two fields inserted before
//! its closing brace, so the bytes of every existing field stay identical. Blank lines are not
//! rows and are not copied (see [`crate::ingest`]). An invalid row ([`Quarantine::invalid`])
//! whose line is not a JSON object (not JSON, not UTF-8) cannot carry the fields: its bytes are
//! copied unchanged, and its reason is in the report only. Every other quarantined line has
//! the fields, so a line of the quarantine file without them is such a row.
//!
//! Parquet: all columns are re-read as Arrow record batches, split with a boolean mask and
//! written with zstd compression. The clean file has exactly the input's Arrow schema; the
//! quarantine file has the input's schema plus the two columns.
//!
//! With `scan --dedup`, plain redundant rows (see [`crate::pipeline::Dedup`]) go to a third
//! file, `duplicates.<ext>`, with one added column `poisongate_duplicate_of`: the 0-based row
//! number of the row kept in the clean output (an integer; `Int64` in Parquet), and with an id
//! column also `poisongate_duplicate_of_id`, that row's id (a string). A quarantined
//! row is never a duplicate: quarantine takes precedence.
//!
//! The caller owns the staging directory and the final renames: [`write_split`] only creates
//! the two files there (refusing to overwrite existing files) and fsyncs them. On error the
//! files may be partly written; the caller discards the staging directory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::ingest::{
    folder_digest, hash_open_file, is_blank, json_message, parse_projected, table_files,
    BlockHasher, Format, IngestError, JsonlLines, PartDigest, RowRef, PARQUET_BATCH_SIZE,
};

/// An output Parquet file's row group is closed once its buffered data reaches this many bytes
/// (or the writer's own limit of rows): a writer holds its row group in memory until then, and
/// a million rows with a 384-dim embedding column are 1.5 GB.
pub const OUTPUT_ROW_GROUP_BYTES: usize = 64 << 20;

/// Rows handed to the Parquet writer at a time. The writer's pages (and, through
/// [`OUTPUT_ROW_GROUP_BYTES`], its row groups) end where the batches written to it end, so
/// rows are written in runs of this many, cut from the sequence of rows written and not from
/// the input's batches: the output bytes then depend only on the rows, whether they came from
/// one file or a folder of files, and whatever the scan's engine or thread count.
const OUTPUT_WRITE_ROWS: usize = 8192;

/// A Parquet writer fed in runs of [`OUTPUT_WRITE_ROWS`] rows, closing the row group when its
/// buffered data reaches [`OUTPUT_ROW_GROUP_BYTES`].
struct Bounded<W: std::io::Write + Send> {
    w: ArrowWriter<W>,
    /// Rows not written yet (fewer than [`OUTPUT_WRITE_ROWS`] once a write returns).
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl<W: std::io::Write + Send> Bounded<W> {
    fn new(w: ArrowWriter<W>) -> Self {
        Bounded {
            w,
            pending: Vec::new(),
            pending_rows: 0,
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), parquet::errors::ParquetError> {
        self.pending_rows += batch.num_rows();
        self.pending.push(batch.clone());
        if self.pending_rows >= OUTPUT_WRITE_ROWS {
            let all = arrow_select::concat::concat_batches(&batch.schema(), &self.pending)?;
            self.pending.clear();
            let mut at = 0;
            while all.num_rows() - at >= OUTPUT_WRITE_ROWS {
                self.write_run(&all.slice(at, OUTPUT_WRITE_ROWS))?;
                at += OUTPUT_WRITE_ROWS;
            }
            self.pending_rows = all.num_rows() - at;
            if self.pending_rows > 0 {
                self.pending.push(all.slice(at, self.pending_rows));
            }
        }
        Ok(())
    }

    fn write_run(&mut self, run: &RecordBatch) -> Result<(), parquet::errors::ParquetError> {
        self.w.write(run)?;
        if self.w.memory_size() >= OUTPUT_ROW_GROUP_BYTES {
            self.w.flush()?;
        }
        Ok(())
    }

    /// Write what is pending and close the file.
    fn close(
        mut self,
    ) -> Result<parquet::file::metadata::ParquetMetaData, parquet::errors::ParquetError> {
        if self.pending_rows > 0 {
            let schema = self.pending[0].schema();
            let rest = arrow_select::concat::concat_batches(&schema, &self.pending)?;
            self.pending.clear();
            self.write_run(&rest)?;
        }
        self.w.close()
    }
}

/// Name of the score column added to quarantined rows.
pub const SCORE_COLUMN: &str = "poisongate_score";
/// Name of the reasons column added to quarantined rows.
pub const REASONS_COLUMN: &str = "poisongate_reasons";

/// Name of the column added to removed duplicate rows (`scan --dedup`).
pub const DUPLICATE_OF_COLUMN: &str = "poisongate_duplicate_of";
/// Column added to duplicate rows when the scan has an id column: the id of the row kept in the
/// clean output (the id's text; `Utf8` in Parquet).
pub const DUPLICATE_OF_ID_COLUMN: &str = "poisongate_duplicate_of_id";

/// One written output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Where it was written (inside the staging directory).
    pub path: PathBuf,
    /// Rows written, counted from what was actually written.
    pub rows: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the written bytes, lowercase hex.
    pub sha256: String,
}

/// The verdict for a quarantined row.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantine {
    /// Combined suspicion score; must be finite.
    pub score: f64,
    /// Human-readable reasons, e.g. `SPEC001:class=1`.
    pub reasons: Vec<String>,
    /// The row could not be read (`scan --invalid-rows quarantine`; its reason is
    /// `INVALID:<what>`). A JSONL line that is not a JSON object is then copied byte for byte,
    /// without the two added fields, instead of being an error.
    pub invalid: bool,
}

/// The verdicts of a file's rows: which are quarantined, and why.
pub trait RowVerdicts {
    /// Rows of the file.
    fn rows(&self) -> usize;
    /// The verdict of `row`, when it is quarantined.
    fn get(&self, row: usize) -> Option<&Quarantine>;
    /// The quarantined rows, in row order.
    fn quarantined(&self) -> Box<dyn Iterator<Item = (usize, &Quarantine)> + '_>;
}

/// One verdict per row, `Some` for the quarantined rows.
fn dense_quarantined(
    v: &[Option<Quarantine>],
) -> Box<dyn Iterator<Item = (usize, &Quarantine)> + '_> {
    Box::new(
        v.iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|q| (i, q))),
    )
}

impl RowVerdicts for Vec<Option<Quarantine>> {
    fn rows(&self) -> usize {
        self.len()
    }
    fn get(&self, row: usize) -> Option<&Quarantine> {
        self.as_slice().get(row).and_then(Option::as_ref)
    }
    fn quarantined(&self) -> Box<dyn Iterator<Item = (usize, &Quarantine)> + '_> {
        dense_quarantined(self)
    }
}

impl<const N: usize> RowVerdicts for [Option<Quarantine>; N] {
    fn rows(&self) -> usize {
        N
    }
    fn get(&self, row: usize) -> Option<&Quarantine> {
        self.as_slice().get(row).and_then(Option::as_ref)
    }
    fn quarantined(&self) -> Box<dyn Iterator<Item = (usize, &Quarantine)> + '_> {
        dense_quarantined(self)
    }
}

/// Verdicts held for the quarantined rows only: what a scan of ten million rows keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVerdicts {
    /// Rows of the file.
    pub rows: usize,
    /// The quarantined rows by row number.
    pub quarantined: BTreeMap<usize, Quarantine>,
}

impl RowVerdicts for SparseVerdicts {
    fn rows(&self) -> usize {
        self.rows
    }
    fn get(&self, row: usize) -> Option<&Quarantine> {
        self.quarantined.get(&row)
    }
    fn quarantined(&self) -> Box<dyn Iterator<Item = (usize, &Quarantine)> + '_> {
        Box::new(self.quarantined.iter().map(|(&i, q)| (i, q)))
    }
}

/// Re-reads the input (verifying its SHA-256 still equals `expected_sha256`, else error: the
/// input changed during the scan), and writes `clean.<ext>` and `quarantine.<ext>` into
/// `staging_dir` (ext = `jsonl` or `parquet`, same format as the input).
///
/// `verdicts[i]` is `Some` for quarantined rows; its length must equal the number of rows
/// re-read. Returns `(clean, quarantine)`, with row counts counted from what was actually
/// written. Existing files of those names in `staging_dir` are an error, not overwritten.
pub fn write_split(
    input: &Path,
    format: Format,
    expected_sha256: &str,
    verdicts: &dyn RowVerdicts,
    staging_dir: &Path,
) -> Result<(OutputFile, OutputFile), IngestError> {
    let s = write_split_dedup(
        input,
        format,
        expected_sha256,
        verdicts,
        None,
        None,
        staging_dir,
    )?;
    Ok((s.clean, s.quarantine))
}

/// The files [`write_split_dedup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// `clean.<ext>`.
    pub clean: OutputFile,
    /// `quarantine.<ext>`.
    pub quarantine: OutputFile,
    /// `duplicates.<ext>`, when duplicates were asked for.
    pub duplicates: Option<OutputFile>,
}

/// [`write_split`], plus `duplicates.<ext>` when `duplicate_of` is given: a row that is not
/// quarantined and has `duplicate_of[i] = Some(k)` goes there with the column
/// [`DUPLICATE_OF_COLUMN`] = `k` (the row kept in the clean output) instead of into the clean
/// file. `duplicate_of` must have one entry per row, like `verdicts`. With `ids` (one per row),
/// duplicate rows also get [`DUPLICATE_OF_ID_COLUMN`] = `ids[k]`.
pub fn write_split_dedup(
    input: &Path,
    format: Format,
    expected_sha256: &str,
    verdicts: &dyn RowVerdicts,
    duplicate_of: Option<&[Option<usize>]>,
    ids: Option<&[String]>,
    staging_dir: &Path,
) -> Result<Split, IngestError> {
    for (i, q) in verdicts.quarantined() {
        if !q.score.is_finite() {
            return Err(IngestError::InvalidValue {
                path: input.to_path_buf(),
                row: Some(RowRef::Row(i + 1)),
                column: Some(SCORE_COLUMN.to_string()),
                message: format!("quarantine score {} is not finite", q.score),
            });
        }
    }
    if let Some(d) = duplicate_of {
        check_count(input, verdicts.rows(), d.len())?;
    }
    let ids = match (duplicate_of, ids) {
        (Some(_), Some(ids)) => {
            check_count(input, verdicts.rows(), ids.len())?;
            Some(ids)
        }
        _ => None,
    };
    let fates = Fates {
        verdicts,
        duplicate_of,
        ids,
    };
    let ext = format.extension();
    let paths = Paths {
        clean: staging_dir.join(format!("clean.{ext}")),
        quarantine: staging_dir.join(format!("quarantine.{ext}")),
        duplicates: duplicate_of
            .is_some()
            .then(|| staging_dir.join(format!("duplicates.{ext}"))),
        with_ids: ids.is_some(),
    };
    match format {
        Format::Jsonl => split_jsonl(input, expected_sha256, &fates, &paths),
        Format::Parquet => split_parquet(input, expected_sha256, &fates, &paths),
    }
}

/// Each row's fate, read off the verdicts as the rows are written (no per-row table).
struct Fates<'a> {
    verdicts: &'a dyn RowVerdicts,
    duplicate_of: Option<&'a [Option<usize>]>,
    ids: Option<&'a [String]>,
}

impl<'a> Fates<'a> {
    /// Rows with a fate.
    fn len(&self) -> usize {
        self.verdicts.rows()
    }

    /// The fate of `row` (None past the verdicts).
    fn get(&self, row: usize) -> Option<Fate<'a>> {
        if row >= self.len() {
            return None;
        }
        let dup = self
            .duplicate_of
            .and_then(|d| d.get(row).copied().flatten());
        Some(match (self.verdicts.get(row), dup) {
            (Some(q), _) => Fate::Quarantine(q),
            (None, Some(k)) => {
                Fate::Duplicate(k, self.ids.and_then(|ids| ids.get(k)).map(String::as_str))
            }
            (None, None) => Fate::Clean,
        })
    }

    /// The fates of rows `start..start + n`, when every one of them has one.
    fn range(&self, start: usize, n: usize) -> Option<Vec<Fate<'a>>> {
        (start.checked_add(n)? <= self.len())
            .then(|| (start..start + n).filter_map(|r| self.get(r)).collect())
    }
}

/// Where one row goes.
#[derive(Debug, Clone, Copy)]
enum Fate<'a> {
    Clean,
    Quarantine(&'a Quarantine),
    /// The kept row's number, and its id when the scan has ids.
    Duplicate(usize, Option<&'a str>),
}

/// The output paths (duplicates only with `--dedup`).
struct Paths {
    clean: PathBuf,
    quarantine: PathBuf,
    duplicates: Option<PathBuf>,
    /// Duplicate rows get [`DUPLICATE_OF_ID_COLUMN`] too.
    with_ids: bool,
}

impl Paths {
    fn reserved(&self) -> Vec<&'static str> {
        let mut r = vec![SCORE_COLUMN, REASONS_COLUMN];
        if self.duplicates.is_some() {
            r.push(DUPLICATE_OF_COLUMN);
            if self.with_ids {
                r.push(DUPLICATE_OF_ID_COLUMN);
            }
        }
        r
    }
}

/// A quick test that a JSON line holds none of some keys, without parsing it.
///
/// A key is a JSON string, and the only escapes that stand for an ASCII letter, digit or `_`
/// are `\uXXXX` ones (the short escapes stand for `"`, `\\`, `/` and control characters). So
/// when every key sought is made of those characters, a line that holds one of them as a key
/// holds either the keys' common first bytes literally or the two bytes `\u`: a line with
/// neither holds none of the keys. When a key has other characters the test excludes nothing.
struct KeyScreen {
    prefix: Option<memchr::memmem::Finder<'static>>,
    /// `\u`, the start of a `\uXXXX` escape.
    escape: memchr::memmem::Finder<'static>,
}

impl KeyScreen {
    fn new(keys: &[&str]) -> Self {
        let plain = keys
            .iter()
            .all(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        let prefix = keys.first().filter(|_| plain).map(|first| {
            let len = keys.iter().fold(first.len(), |len, k| {
                first
                    .bytes()
                    .zip(k.bytes())
                    .take(len)
                    .take_while(|(a, b)| a == b)
                    .count()
            });
            memchr::memmem::Finder::new(&first.as_bytes()[..len]).into_owned()
        });
        KeyScreen {
            prefix,
            escape: memchr::memmem::Finder::new(b"\\u"),
        }
    }

    /// True when `line` surely holds none of the keys as a key (false: it may).
    fn excludes(&self, line: &[u8]) -> bool {
        self.prefix
            .as_ref()
            .is_some_and(|p| p.find(line).is_none() && self.escape.find(line).is_none())
    }
}

/// Bytes an [`Output`] gathers before writing them to its file (and handing them to its
/// hashing thread, which hands the buffer back for reuse).
const OUTPUT_BLOCK: usize = 1 << 18;

/// A new output file that hashes and counts everything written to it. Once a first full block
/// is written, its hashing goes on a thread of its own ([`BlockHasher`]), beside the rows still
/// to be cut; an output smaller than a block is hashed where it is finished.
struct Output {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// The hash of the bytes written before the first full block.
    hasher: Sha256,
    /// The hash from the first full block on.
    aside: Option<BlockHasher>,
    bytes: u64,
}

impl Output {
    fn create(path: &Path) -> Result<Output, IngestError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| IngestError::io(path, e))?;
        Ok(Output {
            path: path.to_path_buf(),
            file,
            buf: Vec::with_capacity(OUTPUT_BLOCK),
            hasher: Sha256::new(),
            aside: None,
            bytes: 0,
        })
    }

    /// Write the gathered bytes to the file and hand them to the hashing thread (started by
    /// the first call; without one, they are hashed here).
    fn write_block(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        if self.aside.is_none() {
            match BlockHasher::start(std::mem::take(&mut self.hasher)) {
                Ok(a) => self.aside = Some(a),
                // no thread to be had: this block is hashed here (the next one tries again)
                Err(hasher) => {
                    self.hasher = hasher;
                    self.hasher.update(&self.buf);
                    self.buf.clear();
                    return Ok(());
                }
            }
        }
        let Some(aside) = self.aside.as_mut() else {
            return Ok(());
        };
        let mut next = aside.buffer();
        next.reserve(OUTPUT_BLOCK);
        aside.push(std::mem::replace(&mut self.buf, next))
    }

    /// Write what is left and describe the file. Not fsynced here: the scan syncs every file
    /// of its staging folder at once before renaming it into place.
    fn finish(mut self, rows: usize) -> Result<OutputFile, IngestError> {
        let path = std::mem::take(&mut self.path);
        self.file
            .write_all(&self.buf)
            .map_err(|e| IngestError::io(&path, e))?;
        let hasher = match self.aside.take() {
            None => {
                self.hasher.update(&self.buf);
                self.hasher
            }
            Some(mut a) => {
                a.push(std::mem::take(&mut self.buf))
                    .map_err(|e| IngestError::io(&path, e))?;
                a.finish().map_err(|e| IngestError::io(&path, e))?
            }
        };
        Ok(OutputFile {
            path,
            rows,
            bytes: self.bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

impl Write for Output {
    /// Gathers `data` into blocks of exactly [`OUTPUT_BLOCK`] bytes, each written and handed
    /// over when full: a large write (a Parquet column chunk, a long line) is cut into blocks
    /// too, so no buffer grows past a block and the memory held stays a few blocks.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            let room = OUTPUT_BLOCK.saturating_sub(self.buf.len());
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            if self.buf.len() >= OUTPUT_BLOCK {
                self.write_block()?;
            }
            rest = later;
        }
        self.bytes += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_block()
    }
}

fn check_hash(input: &Path, expected: &str, actual: &str) -> Result<(), IngestError> {
    if expected.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        Err(IngestError::InputChanged {
            path: input.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            actual: actual.to_string(),
        })
    }
}

fn check_count(input: &Path, verdicts: usize, rows: usize) -> Result<(), IngestError> {
    if verdicts == rows {
        Ok(())
    } else {
        Err(IngestError::RowCountMismatch {
            path: input.to_path_buf(),
            verdicts,
            rows,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// JSONL

fn split_jsonl(
    input: &Path,
    expected_sha256: &str,
    fates: &Fates<'_>,
    paths: &Paths,
) -> Result<Split, IngestError> {
    // the input is hashed again (it must be the bytes the scan read) beside the cutting
    let mut lines = JsonlLines::open_hashing_aside(input)?;
    let mut clean = Output::create(&paths.clean)?;
    let mut quarantine = Output::create(&paths.quarantine)?;
    let mut duplicates = match &paths.duplicates {
        Some(p) => Some(Output::create(p)?),
        None => None,
    };
    let (mut clean_rows, mut quarantine_rows, mut duplicate_rows) = (0usize, 0usize, 0usize);
    let mut row = 0usize;
    let reserved = paths.reserved();
    let unnamed = KeyScreen::new(&reserved);
    while let Some(line_no) = lines.advance()? {
        let bytes = lines.bytes();
        let invalid = matches!(fates.get(row), Some(Fate::Quarantine(q)) if q.invalid);
        // a row the scan read is a JSON object (the input's digest, checked at the end, is
        // that of the bytes it read); it is parsed again only when it may hold a reserved key
        let parsed = if !invalid && unnamed.excludes(bytes) {
            Ok(vec![None; reserved.len()])
        } else {
            parse_projected(bytes, &reserved)
        };
        let parsed = match parsed {
            // JSON is UTF-8: a line that is not is no JSON object either, whatever part of it
            // the projection skipped
            Ok(_) if invalid && std::str::from_utf8(bytes).is_err() => None,
            Ok(found) => Some(Ok(found)),
            Err(_) if invalid => None,
            Err(e) => Some(Err(e)),
        };
        let found = match parsed {
            Some(Ok(found)) => found,
            None => {
                // not a JSON object: nothing can be added to it
                write_line(&mut quarantine, bytes)?;
                quarantine_rows += 1;
                row += 1;
                continue;
            }
            Some(Err(e)) => {
                return Err(IngestError::Json {
                    path: input.to_path_buf(),
                    line: line_no,
                    message: json_message(&e, bytes),
                })
            }
        };
        if let Some(i) = found.iter().position(Option::is_some) {
            return Err(IngestError::ReservedColumn {
                path: input.to_path_buf(),
                row: Some(RowRef::Line(line_no)),
                column: reserved[i].to_string(),
            });
        }
        let bad_line = |message| IngestError::Json {
            path: input.to_path_buf(),
            line: line_no,
            message,
        };
        match fates.get(row) {
            Some(Fate::Clean) => {
                write_line(&mut clean, bytes)?;
                clean_rows += 1;
            }
            Some(Fate::Quarantine(q)) => {
                let line = quarantined_line(bytes, q).map_err(bad_line)?;
                quarantine
                    .write_all(&line)
                    .map_err(|e| IngestError::io(&paths.quarantine, e))?;
                quarantine_rows += 1;
            }
            Some(Fate::Duplicate(k, id)) => {
                if let Some(d) = duplicates.as_mut() {
                    let mut field = format!("\"{DUPLICATE_OF_COLUMN}\": {k}");
                    if let Some(id) = id {
                        let quoted =
                            serde_json::to_string(id).map_err(|e| bad_line(e.to_string()))?;
                        field.push_str(&format!(", \"{DUPLICATE_OF_ID_COLUMN}\": {quoted}"));
                    }
                    let line = line_with_fields(bytes, &field).map_err(bad_line)?;
                    d.write_all(&line)
                        .map_err(|e| IngestError::io(&d.path, e))?;
                    duplicate_rows += 1;
                }
            }
            // More rows than verdicts: keep counting, the mismatch is reported below.
            None => {}
        }
        row += 1;
    }
    let digest = lines.finish()?;
    check_hash(input, expected_sha256, &digest.sha256)?;
    check_count(input, fates.len(), row)?;
    Ok(Split {
        clean: clean.finish(clean_rows)?,
        quarantine: quarantine.finish(quarantine_rows)?,
        duplicates: match duplicates {
            Some(d) => Some(d.finish(duplicate_rows)?),
            None => None,
        },
    })
}

fn write_line(out: &mut Output, bytes: &[u8]) -> Result<(), IngestError> {
    out.write_all(bytes)
        .map_err(|e| IngestError::io(&out.path, e))?;
    if !bytes.ends_with(b"\n") {
        out.write_all(b"\n")
            .map_err(|e| IngestError::io(&out.path, e))?;
    }
    Ok(())
}

/// The original line with the score and reasons inserted before the object's closing brace.
fn quarantined_line(line: &[u8], q: &Quarantine) -> Result<Vec<u8>, String> {
    let score = serde_json::Number::from_f64(q.score)
        .ok_or_else(|| format!("quarantine score {} is not finite", q.score))?;
    let reasons = serde_json::to_string(&q.reasons).map_err(|e| e.to_string())?;
    line_with_fields(
        line,
        &format!("\"{SCORE_COLUMN}\": {score}, \"{REASONS_COLUMN}\": {reasons}"),
    )
}

/// The original line with `fields` (JSON members, `"k": v, ...`) inserted before the object's
/// closing brace. Bytes before the insertion point (every existing field) and after the brace
/// (the line terminator) are kept; only whitespace just before the closing brace is dropped.
fn line_with_fields(line: &[u8], fields: &str) -> Result<Vec<u8>, String> {
    let not_ws = |b: &u8| !matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let open = line.iter().position(not_ws);
    let close = line.iter().rposition(not_ws);
    let (open, close) = match (open, close) {
        (Some(o), Some(c)) if o < c && line[o] == b'{' && line[c] == b'}' => (o, c),
        _ => return Err("line is not a JSON object".to_string()),
    };
    let inner = &line[open + 1..close];
    let head_end = if is_blank(inner) {
        open + 1
    } else {
        // Last non-whitespace byte before the closing brace, inclusive.
        open + 1 + inner.iter().rposition(not_ws).map_or(0, |i| i + 1)
    };
    let mut out = Vec::with_capacity(line.len() + fields.len() + 8);
    out.extend_from_slice(&line[..head_end]);
    if head_end != open + 1 {
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(fields.as_bytes());
    out.push(b'}');
    out.extend_from_slice(&line[close + 1..]);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parquet

fn split_parquet(
    input: &Path,
    expected_sha256: &str,
    fates: &Fates<'_>,
    paths: &Paths,
) -> Result<Split, IngestError> {
    let (clean_path, quarantine_path) = (&paths.clean, &paths.quarantine);
    // a folder is read as one table of its Parquet files, in row order
    let folder = input.is_dir();
    let parts = table_files(input)?;
    let schema = {
        let first = &parts[0].1;
        let file = File::open(first).map_err(|e| IngestError::io(first, e))?;
        crate::ingest::parquet_builder(first, file)?
            .schema()
            .clone()
    };
    for name in paths.reserved() {
        if schema.fields().iter().any(|f| f.name() == name) {
            return Err(IngestError::ReservedColumn {
                path: input.to_path_buf(),
                row: None,
                column: name.to_string(),
            });
        }
    }
    let reasons_type = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let mut q_fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    q_fields.push(Arc::new(Field::new(SCORE_COLUMN, DataType::Float64, false)));
    q_fields.push(Arc::new(Field::new(REASONS_COLUMN, reasons_type, false)));
    let q_schema = Arc::new(Schema::new_with_metadata(
        q_fields,
        schema.metadata().clone(),
    ));
    let mut d_fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    d_fields.push(Arc::new(Field::new(
        DUPLICATE_OF_COLUMN,
        DataType::Int64,
        false,
    )));
    if paths.with_ids {
        d_fields.push(Arc::new(Field::new(
            DUPLICATE_OF_ID_COLUMN,
            DataType::Utf8,
            false,
        )));
    }
    let d_schema = Arc::new(Schema::new_with_metadata(
        d_fields,
        schema.metadata().clone(),
    ));

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut clean = Output::create(clean_path)?;
    let mut quarantine = Output::create(quarantine_path)?;
    let mut duplicates = match &paths.duplicates {
        Some(p) => Some(Output::create(p)?),
        None => None,
    };
    let pq_clean = |e| IngestError::parquet(clean_path, e);
    let pq_quarantine = |e| IngestError::parquet(quarantine_path, e);
    let dup_path = paths.duplicates.clone().unwrap_or_default();
    let pq_dup = |e| IngestError::parquet(&dup_path, e);
    let mut clean_w = ArrowWriter::try_new(&mut clean, schema.clone(), Some(props.clone()))
        .map(Bounded::new)
        .map_err(pq_clean)?;
    let mut quarantine_w =
        ArrowWriter::try_new(&mut quarantine, q_schema.clone(), Some(props.clone()))
            .map(Bounded::new)
            .map_err(pq_quarantine)?;
    let mut dup_w = match duplicates.as_mut() {
        Some(d) => Some(
            ArrowWriter::try_new(d, d_schema.clone(), Some(props))
                .map(Bounded::new)
                .map_err(pq_dup)?,
        ),
        None => None,
    };

    let mut row = 0usize;
    let mut digests: Vec<PartDigest> = Vec::with_capacity(parts.len());
    for (name, part) in &parts {
        let file = File::open(part).map_err(|e| IngestError::io(part, e))?;
        // Hash the open file before and after reading it: the reader parses the same open
        // file, so a replaced path cannot slip in, and an in-place change shows up in either
        // hash. A folder's digest is its files' manifest, checked once they are all read.
        let before = hash_open_file(&file, part)?;
        if !folder {
            check_hash(input, expected_sha256, &before.sha256)?;
        }
        let reader_file = file.try_clone().map_err(|e| IngestError::io(part, e))?;
        let builder = crate::ingest::parquet_builder(part, reader_file)?;
        if builder.schema().fields() != schema.fields() {
            return Err(IngestError::InvalidValue {
                path: part.to_path_buf(),
                row: None,
                column: None,
                message: format!(
                    "the files of a folder read as one table must have the same columns \
                     (names, types, nullability); this file's are {}, {}'s are {}",
                    field_list(builder.schema()),
                    parts[0].0,
                    field_list(&schema)
                ),
            });
        }
        let reader = builder
            .with_batch_size(PARQUET_BATCH_SIZE)
            .build()
            .map_err(|e| IngestError::parquet(part, e))?;
        row = split_batches(
            part,
            reader,
            row,
            fates,
            &schema,
            (&mut clean_w, &mut quarantine_w, dup_w.as_mut()),
            (&q_schema, &d_schema),
            paths,
        )?;
        let after = hash_open_file(&file, part)?;
        if !folder {
            check_hash(input, expected_sha256, &after.sha256)?;
        } else if after.sha256 != before.sha256 {
            return Err(IngestError::InputChanged {
                path: part.to_path_buf(),
                expected: before.sha256,
                actual: after.sha256,
            });
        }
        digests.push(PartDigest {
            name: name.clone(),
            bytes: after.bytes,
            sha256: after.sha256,
        });
    }
    if folder {
        let digest = folder_digest(input, digests);
        check_hash(input, expected_sha256, &digest.sha256)?;
    }
    check_count(input, fates.len(), row)?;

    let clean_meta = clean_w.close().map_err(pq_clean)?;
    let quarantine_meta = quarantine_w.close().map_err(pq_quarantine)?;
    let dup_meta = dup_w.map(Bounded::close).transpose().map_err(pq_dup)?;
    let rows = |n: i64, path: &Path| {
        usize::try_from(n).map_err(|_| IngestError::InvalidValue {
            path: path.to_path_buf(),
            row: None,
            column: None,
            message: format!("writer reported an invalid row count {n}"),
        })
    };
    let clean_rows = rows(clean_meta.file_metadata().num_rows(), clean_path)?;
    let quarantine_rows = rows(quarantine_meta.file_metadata().num_rows(), quarantine_path)?;
    let duplicates = match (duplicates, dup_meta) {
        (Some(d), Some(m)) => {
            let n = rows(m.file_metadata().num_rows(), &dup_path)?;
            Some(d.finish(n)?)
        }
        _ => None,
    };
    Ok(Split {
        clean: clean.finish(clean_rows)?,
        quarantine: quarantine.finish(quarantine_rows)?,
        duplicates,
    })
}

/// The writers of a split: clean, quarantine, and duplicates when asked for.
type Writers<'a, 'w> = (
    &'a mut Bounded<&'w mut Output>,
    &'a mut Bounded<&'w mut Output>,
    Option<&'a mut Bounded<&'w mut Output>>,
);

/// Split one Parquet file's batches, its first row being the input's row `row`, among the
/// writers. Returns the input's row after its last one.
#[allow(clippy::too_many_arguments)]
fn split_batches(
    part: &Path,
    reader: ParquetRecordBatchReader,
    mut row: usize,
    fates: &Fates<'_>,
    schema: &SchemaRef,
    (clean_w, quarantine_w, mut dup_w): Writers<'_, '_>,
    (q_schema, d_schema): (&SchemaRef, &SchemaRef),
    paths: &Paths,
) -> Result<usize, IngestError> {
    let quarantine_path = &paths.quarantine;
    let pq_clean = |e| IngestError::parquet(&paths.clean, e);
    let pq_quarantine = |e| IngestError::parquet(quarantine_path, e);
    let dup_path = paths.duplicates.clone().unwrap_or_default();
    let pq_dup = |e| IngestError::parquet(&dup_path, e);
    for batch in reader {
        let batch = batch.map_err(|e| IngestError::arrow(part, e))?;
        // every file's batches under the first file's schema (its key-value metadata)
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
            .map_err(|e| IngestError::arrow(part, e))?;
        let n = batch.num_rows();
        let Some(fs) = fates.range(row, n) else {
            // More rows than verdicts: keep counting, the mismatch is reported below.
            row += n;
            continue;
        };
        row += n;

        let keep: BooleanArray = fs.iter().map(|f| Some(matches!(f, Fate::Clean))).collect();
        let clean_batch =
            filter_record_batch(&batch, &keep).map_err(|e| IngestError::arrow(part, e))?;
        if clean_batch.num_rows() > 0 {
            clean_w.write(&clean_batch).map_err(pq_clean)?;
        }

        let dups: Vec<i64> = fs
            .iter()
            .filter_map(|f| match f {
                Fate::Duplicate(k, _) => Some(*k as i64),
                _ => None,
            })
            .collect();
        if let (Some(w), false) = (dup_w.as_deref_mut(), dups.is_empty()) {
            let take: BooleanArray = fs
                .iter()
                .map(|f| Some(matches!(f, Fate::Duplicate(..))))
                .collect();
            let d_batch =
                filter_record_batch(&batch, &take).map_err(|e| IngestError::arrow(part, e))?;
            let mut columns: Vec<ArrayRef> = d_batch.columns().to_vec();
            columns.push(Arc::new(Int64Array::from(dups)));
            if paths.with_ids {
                let kept: StringArray = fs
                    .iter()
                    .filter_map(|f| match f {
                        Fate::Duplicate(_, id) => Some(Some(id.unwrap_or_default())),
                        _ => None,
                    })
                    .collect();
                columns.push(Arc::new(kept));
            }
            let d_batch = RecordBatch::try_new(d_schema.clone(), columns)
                .map_err(|e| IngestError::arrow(&dup_path, e))?;
            w.write(&d_batch).map_err(pq_dup)?;
        }

        let flagged: Vec<&Quarantine> = fs
            .iter()
            .filter_map(|f| match f {
                Fate::Quarantine(q) => Some(*q),
                _ => None,
            })
            .collect();
        if flagged.is_empty() {
            continue;
        }
        let take: BooleanArray = fs
            .iter()
            .map(|f| Some(matches!(f, Fate::Quarantine(_))))
            .collect();
        let q_batch =
            filter_record_batch(&batch, &take).map_err(|e| IngestError::arrow(part, e))?;
        let scores: Float64Array = flagged.iter().map(|q| Some(q.score)).collect();
        let mut reasons = ListBuilder::new(StringBuilder::new());
        for q in &flagged {
            for r in &q.reasons {
                reasons.values().append_value(r);
            }
            reasons.append(true);
        }
        let mut columns: Vec<ArrayRef> = q_batch.columns().to_vec();
        columns.push(Arc::new(scores));
        columns.push(Arc::new(reasons.finish()));
        let q_batch = RecordBatch::try_new(q_schema.clone(), columns)
            .map_err(|e| IngestError::arrow(quarantine_path, e))?;
        quarantine_w.write(&q_batch).map_err(pq_quarantine)?;
    }

    Ok(row)
}

fn field_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| {
            let null = if f.is_nullable() { "" } else { " not null" };
            format!("{} {}{null}", f.name(), f.data_type())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::sha256_file;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float32Type;
    use arrow_array::{Array, ListArray};
    use serde_json::Value;
    use tempfile::TempDir;

    fn q(score: f64, reasons: &[&str]) -> Option<Quarantine> {
        Some(Quarantine {
            score,
            reasons: reasons.iter().map(|s| s.to_string()).collect(),
            invalid: false,
        })
    }

    fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn jsonl_round_trip_keeps_bytes_and_adds_score_and_reasons() {
        let dir = TempDir::new().unwrap();
        let input = dir.path().join("in.jsonl");
        let rows: [&[u8]; 6] = [
            b"{\"id\":1,\"text\":\"caf\\u00e9\",\"x\":1.000}\n",
            b"  {\"id\": 2, \"nested\": {\"a\": [1, 2]} }  \r\n",
            b"{}\n",
            b"{ \t}\n",
            b"{\"id\":5, \"label\": \"1\"}\n",
            b"{\"id\":6}",
        ];
        let mut body = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            body.extend_from_slice(r);
            if i == 2 {
                body.extend_from_slice(b"\n   \n"); // blank lines are not rows
            }
        }
        std::fs::write(&input, &body).unwrap();
        let sha = sha256_file(&input).unwrap().sha256;
        let verdicts = vec![
            None,
            q(1.5, &["SPEC001:class=1"]),
            q(2.0, &[]),
            q(0.5, &["A", "B \"quoted\""]),
            None,
            q(3.25, &["Z"]),
        ];
        let staging = dir.path().join("stage");
        std::fs::create_dir(&staging).unwrap();
        let (clean, quar) = write_split(&input, Format::Jsonl, &sha, &verdicts, &staging).unwrap();
        assert_eq!(clean.path, staging.join("clean.jsonl"));
        assert_eq!(quar.path, staging.join("quarantine.jsonl"));
        assert_eq!((clean.rows, quar.rows), (2, 4));

        let clean_bytes = std::fs::read(&clean.path).unwrap();
        assert_eq!(clean_bytes, [rows[0], rows[4]].concat());
        assert_eq!(clean.bytes, clean_bytes.len() as u64);
        assert_eq!(clean.sha256, sha256_file(&clean.path).unwrap().sha256);

        let quar_bytes = std::fs::read(&quar.path).unwrap();
        assert_eq!(quar.sha256, sha256_file(&quar.path).unwrap().sha256);
        assert_eq!(quar.bytes, quar_bytes.len() as u64);
        let qlines = lines(&quar_bytes);
        assert_eq!(qlines.len(), 4);
        assert_eq!(
            qlines[0],
            b"  {\"id\": 2, \"nested\": {\"a\": [1, 2]}, \"poisongate_score\": 1.5, \
              \"poisongate_reasons\": [\"SPEC001:class=1\"]}  \r\n"
        );
        assert_eq!(
            qlines[1],
            b"{\"poisongate_score\": 2.0, \"poisongate_reasons\": []}\n"
        );
        for (line, orig_idx) in qlines.iter().zip([1usize, 2, 3, 5]) {
            let v: Value = serde_json::from_slice(line).unwrap();
            let orig: Value = serde_json::from_slice(rows[orig_idx]).unwrap();
            let mut obj = v.as_object().unwrap().clone();
            let score = obj.remove(SCORE_COLUMN).unwrap();
            let reasons = obj.remove(REASONS_COLUMN).unwrap();
            assert_eq!(Value::Object(obj), orig);
            let want = verdicts[orig_idx].as_ref().unwrap();
            assert_eq!(score.as_f64(), Some(want.score));
            assert_eq!(reasons, serde_json::json!(want.reasons));
            assert!(line.ends_with(b"\n"));
        }
        // Every original field's bytes are unchanged (prefix preserved).
        assert!(qlines[3].starts_with(b"{\"id\":6"));
        assert!(lines(&quar_bytes)[2].starts_with(b"{"));
    }

    #[test]
    fn outputs_larger_than_a_block_are_written_and_hashed_whole() {
        // several read blocks of input and several output blocks of each kind, so the rows
        // and both hashes cross block boundaries on their threads
        let dir = TempDir::new().unwrap();
        let input = dir.path().join("in.jsonl");
        let n = 12_000;
        let mut body = Vec::new();
        for i in 0..n {
            body.extend_from_slice(
                format!(
                    "{{\"id\": {i}, \"text\": \"{}\"}}\n",
                    "w".repeat(40 + i % 97)
                )
                .as_bytes(),
            );
        }
        assert!(body.len() > 3 * OUTPUT_BLOCK);
        std::fs::write(&input, &body).unwrap();
        let sha = sha256_file(&input).unwrap().sha256;
        let verdicts: Vec<Option<Quarantine>> = (0..n)
            .map(|i| if i % 3 == 0 { q(1.0, &["A"]) } else { None })
            .collect();
        let staging = dir.path().join("stage");
        std::fs::create_dir(&staging).unwrap();
        let (clean, quar) = write_split(&input, Format::Jsonl, &sha, &verdicts, &staging).unwrap();
        assert_eq!((clean.rows, quar.rows), (n - n.div_ceil(3), n.div_ceil(3)));
        for f in [&clean, &quar] {
            let bytes = std::fs::read(&f.path).unwrap();
            assert!(bytes.len() > OUTPUT_BLOCK, "{}", bytes.len());
            assert_eq!(f.bytes, bytes.len() as u64);
            assert_eq!(f.sha256, sha256_file(&f.path).unwrap().sha256);
        }
        let want: Vec<u8> = lines(&body)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .flat_map(|(_, l)| l)
            .collect();
        assert_eq!(std::fs::read(&clean.path).unwrap(), want);
        // the input's second read, hashed on its own thread, must still be the bytes scanned
        let other = "0".repeat(64);
        let staging2 = dir.path().join("stage2");
        std::fs::create_dir(&staging2).unwrap();
        assert!(matches!(
            write_split(&input, Format::Jsonl, &other, &verdicts, &staging2),
            Err(IngestError::InputChanged { .. })
        ));
    }

    #[test]
    fn an_output_cuts_large_writes_into_blocks_and_hashes_them_in_order() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("o.bin");
        let data: Vec<u8> = (0..5 * OUTPUT_BLOCK + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut out = Output::create(&path).unwrap();
        out.write_all(&data[..10]).unwrap();
        // one write of several blocks, then small ones across a block boundary
        out.write_all(&data[10..4 * OUTPUT_BLOCK + 3]).unwrap();
        assert!(
            out.buf.capacity() <= 2 * OUTPUT_BLOCK,
            "{}",
            out.buf.capacity()
        );
        for piece in data[4 * OUTPUT_BLOCK + 3..].chunks(1000) {
            out.write_all(piece).unwrap();
        }
        let f = out.finish(1).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(f.bytes, data.len() as u64);
        assert_eq!(f.sha256, hex::encode(Sha256::digest(&data)));
        // smaller than a block: hashed where it ends
        let small = dir.path().join("s.bin");
        let mut out = Output::create(&small).unwrap();
        out.write_all(b"abc").unwrap();
        assert!(out.aside.is_none());
        assert_eq!(
            out.finish(1).unwrap().sha256,
            hex::encode(Sha256::digest(b"abc"))
        );
    }

    #[test]
    fn jsonl_changed_input_count_mismatch_and_reserved_columns() {
        let dir = TempDir::new().unwrap();
        let input = dir.path().join("in.jsonl");
        std::fs::write(&input, b"{\"a\":1}\n{\"a\":2}\n").unwrap();
        let sha = sha256_file(&input).unwrap().sha256;

        let stage = |name: &str| {
            let s = dir.path().join(name);
            std::fs::create_dir(&s).unwrap();
            s
        };
        let e = write_split(
            &input,
            Format::Jsonl,
            &"0".repeat(64),
            &[None, None],
            &stage("s1"),
        )
        .unwrap_err();
        assert!(matches!(e, IngestError::InputChanged { .. }), "{e:?}");
        assert!(
            e.to_string().contains("the input changed during the scan"),
            "{e}"
        );

        let e = write_split(&input, Format::Jsonl, &sha, &[None], &stage("s2")).unwrap_err();
        assert!(
            e.to_string()
                .contains("1 verdicts were given but the input has 2 rows"),
            "{e}"
        );
        let e = write_split(
            &input,
            Format::Jsonl,
            &sha,
            &[None, None, None],
            &stage("s3"),
        )
        .unwrap_err();
        assert!(matches!(
            e,
            IngestError::RowCountMismatch {
                verdicts: 3,
                rows: 2,
                ..
            }
        ));

        let e = write_split(
            &input,
            Format::Jsonl,
            &sha,
            &[None, q(f64::NAN, &[])],
            &stage("s4"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not finite"), "{e}");

        // Outputs already present are not overwritten.
        let s5 = stage("s5");
        std::fs::write(s5.join("clean.jsonl"), b"keep").unwrap();
        let e = write_split(&input, Format::Jsonl, &sha, &[None, None], &s5).unwrap_err();
        assert!(matches!(e, IngestError::Io { .. }), "{e:?}");
        assert_eq!(std::fs::read(s5.join("clean.jsonl")).unwrap(), b"keep");

        std::fs::write(&input, b"{\"a\":1}\n{\"a\":2, \"poisongate_score\": 1}\n").unwrap();
        let sha = sha256_file(&input).unwrap().sha256;
        let e = write_split(&input, Format::Jsonl, &sha, &[None, None], &stage("s6")).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 2: input column \"poisongate_score\" clashes"),
            "{e}"
        );

        // a reserved key spelled with an escape is found too
        std::fs::write(
            &input,
            b"{\"a\":1}\n{\"a\":2, \"poisongate\\u005freasons\": 1}\n",
        )
        .unwrap();
        let sha = sha256_file(&input).unwrap().sha256;
        let e = write_split(&input, Format::Jsonl, &sha, &[None, None], &stage("s7")).unwrap_err();
        assert!(
            e.to_string()
                .contains("line 2: input column \"poisongate_reasons\" clashes"),
            "{e}"
        );
    }

    #[test]
    fn the_key_screen_excludes_only_lines_that_cannot_hold_the_keys() {
        let screen = KeyScreen::new(&[SCORE_COLUMN, REASONS_COLUMN, DUPLICATE_OF_COLUMN]);
        assert!(screen.excludes(b"{\"text\": \"a \\\"quoted\\\" word\", \"label\": 1}\n"));
        assert!(!screen.excludes(b"{\"poisongate_score\": 1}"));
        // the prefix anywhere (a value too) or any \u escape: parsed, to be sure
        assert!(!screen.excludes(b"{\"text\": \"poisongate_ is a tool\"}"));
        assert!(!screen.excludes(b"{\"poisongate\\u005fscore\": 1}"));
        assert!(!screen.excludes(b"{\"text\": \"caf\\u00e9\"}"));
        // keys with characters a short escape can stand for: nothing excluded
        assert!(!KeyScreen::new(&["a/b"]).excludes(b"{\"x\": 1}"));
        // keys with no common first bytes: nothing excluded
        assert!(!KeyScreen::new(&["ab", "cd"]).excludes(b"{\"x\": 1}"));
    }

    fn write_parquet(path: &Path, batch: &RecordBatch) {
        let f = File::create(path).unwrap();
        let mut w = ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
    }

    fn read_parquet(path: &Path) -> RecordBatch {
        let f = File::open(path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let schema = batches
            .first()
            .map(RecordBatch::schema)
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        arrow_select::concat::concat_batches(&schema, &batches).unwrap()
    }

    #[test]
    fn parquet_round_trip_partitions_rows_and_keeps_values() {
        let dir = TempDir::new().unwrap();
        let input = dir.path().join("in.parquet");
        let n = 10_000usize; // more than one record batch
        let ids = Int64Array::from_iter_values(0..n as i64);
        let texts =
            StringArray::from_iter((0..n).map(|i| (i % 7 != 3).then(|| format!("row {i}"))));
        let emb = ListArray::from_iter_primitive::<Float32Type, _, _>(
            (0..n).map(|i| Some(vec![Some(i as f32), Some(-(i as f32))])),
        );
        let batch = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(ids) as ArrayRef),
            ("text", Arc::new(texts) as ArrayRef),
            ("emb", Arc::new(emb) as ArrayRef),
        ])
        .unwrap();
        write_parquet(&input, &batch);
        let sha = sha256_file(&input).unwrap().sha256;
        let verdicts: Vec<Option<Quarantine>> = (0..n)
            .map(|i| {
                (i % 10 == 0).then(|| Quarantine {
                    score: i as f64 / 100.0,
                    reasons: vec![format!("R{i}"), "X; Y".to_string()],
                    invalid: false,
                })
            })
            .collect();
        let staging = dir.path().join("stage");
        std::fs::create_dir(&staging).unwrap();
        let (clean, quar) =
            write_split(&input, Format::Parquet, &sha, &verdicts, &staging).unwrap();
        assert_eq!(clean.path, staging.join("clean.parquet"));
        assert_eq!((clean.rows, quar.rows), (9_000, 1_000));
        assert_eq!(clean.sha256, sha256_file(&clean.path).unwrap().sha256);
        assert_eq!(quar.sha256, sha256_file(&quar.path).unwrap().sha256);
        assert_eq!(quar.bytes, std::fs::metadata(&quar.path).unwrap().len());

        let c = read_parquet(&clean.path);
        assert_eq!(c.schema().fields(), batch.schema().fields());
        let qb = read_parquet(&quar.path);
        assert_eq!(qb.num_columns(), 5);
        assert_eq!(qb.schema().field(3).name(), SCORE_COLUMN);
        assert_eq!(qb.schema().field(4).name(), REASONS_COLUMN);

        // Every input row lands in exactly one output, with its values unchanged.
        let mut seen = vec![0u8; n];
        for b in [&c, &qb] {
            let ids = b.column(0).as_primitive::<arrow_array::types::Int64Type>();
            let texts = b.column(1).as_string::<i32>();
            let emb = b.column(2).as_list::<i32>();
            for j in 0..b.num_rows() {
                let i = ids.value(j) as usize;
                seen[i] += 1;
                assert_eq!(texts.is_null(j), i % 7 == 3);
                if !texts.is_null(j) {
                    assert_eq!(texts.value(j), format!("row {i}"));
                }
                let e = emb.value(j);
                let e = e.as_primitive::<Float32Type>();
                assert_eq!(e.values().to_vec(), vec![i as f32, -(i as f32)]);
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        let scores = qb
            .column(3)
            .as_primitive::<arrow_array::types::Float64Type>();
        let reasons = qb.column(4).as_list::<i32>();
        let ids = qb.column(0).as_primitive::<arrow_array::types::Int64Type>();
        for j in 0..qb.num_rows() {
            let i = ids.value(j) as usize;
            assert_eq!(i % 10, 0);
            assert_eq!(scores.value(j), i as f64 / 100.0);
            let r = reasons.value(j);
            let r = r.as_string::<i32>();
            assert_eq!(r.len(), 2);
            assert_eq!(r.value(0), format!("R{i}"));
            assert_eq!(r.value(1), "X; Y");
        }
    }

    #[test]
    fn parquet_changed_input_count_mismatch_and_reserved_columns() {
        let dir = TempDir::new().unwrap();
        let input = dir.path().join("in.parquet");
        let batch = RecordBatch::try_from_iter(vec![(
            "a",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )])
        .unwrap();
        write_parquet(&input, &batch);
        let sha = sha256_file(&input).unwrap().sha256;
        let stage = |name: &str| {
            let s = dir.path().join(name);
            std::fs::create_dir(&s).unwrap();
            s
        };
        let e = write_split(
            &input,
            Format::Parquet,
            &"ab".repeat(32),
            &[None, None, None],
            &stage("s1"),
        )
        .unwrap_err();
        assert!(matches!(e, IngestError::InputChanged { .. }), "{e:?}");
        let e =
            write_split(&input, Format::Parquet, &sha, &[None, None], &stage("s2")).unwrap_err();
        assert!(
            matches!(
                e,
                IngestError::RowCountMismatch {
                    verdicts: 2,
                    rows: 3,
                    ..
                }
            ),
            "{e:?}"
        );
        // All clean: the quarantine file is a valid, empty Parquet file.
        let (c, qf) = write_split(
            &input,
            Format::Parquet,
            &sha,
            &[None, None, None],
            &stage("s3"),
        )
        .unwrap();
        assert_eq!((c.rows, qf.rows), (3, 0));
        assert_eq!(read_parquet(&qf.path).num_rows(), 0);

        let batch = RecordBatch::try_from_iter(vec![(
            REASONS_COLUMN,
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )])
        .unwrap();
        write_parquet(&input, &batch);
        let sha = sha256_file(&input).unwrap().sha256;
        let e = write_split(&input, Format::Parquet, &sha, &[None], &stage("s4")).unwrap_err();
        assert!(
            e.to_string()
                .contains("input column \"poisongate_reasons\" clashes"),
            "{e}"
        );
    }
}
