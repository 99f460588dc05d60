//! Page-size limits of Parquet files, checked before any page is decompressed.
//!
//! A page header states the page's uncompressed size and the Parquet reader allocates (and for
//! some codecs zero-fills) that much before it finds out whether the compressed bytes really
//! hold it. A few hostile bytes can therefore claim gigabytes. Every page header of every
//! column chunk is read here first (a small Thrift compact-protocol walk that extracts the sizes
//! and the value count and skips everything else, in time linear in the chunk's bytes) and a
//! claim above the limit, or a header that does not parse, is an error.
//!
//! The footer is walked the same way before the reader decodes it: the parquet crate builds the
//! schema tree with a vector sized by each schema element's child count, so a footer whose root
//! claims 400 million children asked for 3 GiB at once (found by the `parquet_footer` fuzz
//! target; a claim near 2^31 can fail the allocation, which aborts the process). No container
//! may count more elements than the bytes after it hold, and every child count must fit in the
//! schema's own element count.

use super::*;
use std::io::{Seek, SeekFrom};

/// Default largest uncompressed Parquet page accepted, in bytes: 256 MiB (writers default to
/// pages of about 1 MiB).
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 256 << 20;

static MAX_PAGE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PAGE_BYTES);

/// Set the largest uncompressed Parquet page every reader of this process accepts
/// (`--max-page-bytes`).
pub fn set_max_page_bytes(limit: u64) {
    MAX_PAGE_BYTES.store(limit.max(1), Ordering::Relaxed);
}

/// The largest uncompressed Parquet page accepted (see [`set_max_page_bytes`]).
pub fn max_page_bytes() -> u64 {
    MAX_PAGE_BYTES.load(Ordering::Relaxed)
}

/// Deepest nesting of Thrift structs and containers walked in a page header.
const MAX_DEPTH: usize = 32;

/// Reads the compact protocol from a byte source, counting the bytes consumed.
struct Compact<R> {
    inner: R,
    read: u64,
    /// Bytes the source holds (`u64::MAX` when unknown): no container counts more elements.
    limit: u64,
}

/// The header is not well-formed (the Parquet reader reports it properly later).
struct Malformed;

impl<R: Read> Compact<R> {
    fn byte(&mut self) -> Result<u8, Malformed> {
        let mut b = [0u8; 1];
        self.inner.read_exact(&mut b).map_err(|_| Malformed)?;
        self.read += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(Malformed);
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn zigzag(&mut self) -> Result<i64, Malformed> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), Malformed> {
        let copied =
            io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(|_| Malformed)?;
        if copied != n {
            return Err(Malformed);
        }
        self.read += n;
        Ok(())
    }

    /// Skip one value of compact type `ty`.
    /// A container count, refused when the bytes left cannot hold that many elements (each
    /// takes at least one byte).
    fn count(&mut self, n: u64) -> Result<u64, Malformed> {
        if n > self.limit.saturating_sub(self.read) {
            return Err(Malformed);
        }
        Ok(n)
    }

    /// A list or set header: (element type, element count).
    fn list_header(&mut self) -> Result<(u8, u64), Malformed> {
        let h = self.byte()?;
        let n = match h >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        Ok((h & 0x0f, self.count(n)?))
    }

    fn skip(&mut self, ty: u8, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        match ty {
            1 | 2 => Ok(()),
            3 => self.byte().map(drop),
            4..=6 => self.varint().map(drop),
            7 => self.skip_bytes(8),
            8 => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            9 | 10 => {
                let (elem, n) = self.list_header()?;
                for _ in 0..n {
                    match elem {
                        // booleans in containers take a byte each
                        1 | 2 => self.skip_bytes(1)?,
                        t => self.skip(t, depth + 1)?,
                    }
                }
                Ok(())
            }
            11 => {
                let n = self.varint()?;
                let n = self.count(n)?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    for t in [kv >> 4, kv & 0x0f] {
                        match t {
                            1 | 2 => self.skip_bytes(1)?,
                            t => self.skip(t, depth + 1)?,
                        }
                    }
                }
                Ok(())
            }
            12 => self.skip_struct(depth + 1),
            _ => Err(Malformed),
        }
    }

    fn skip_struct(&mut self, depth: usize) -> Result<(), Malformed> {
        let mut id = 0i64;
        loop {
            let (ty, next) = self.field_header(id)?;
            if ty == 0 {
                return Ok(());
            }
            id = next;
            self.skip(ty, depth)?;
        }
    }

    /// A field header after field `last`: (type, field id); type 0 is the struct's end.
    fn field_header(&mut self, last: i64) -> Result<(u8, i64), Malformed> {
        let b = self.byte()?;
        if b == 0 {
            return Ok((0, last));
        }
        let ty = b & 0x0f;
        let id = match b >> 4 {
            0 => self.zigzag()?,
            delta => last + i64::from(delta),
        };
        Ok((ty, id))
    }

    /// The fields of a `PageHeader` that bound what its page costs to decode: the sizes
    /// (fields 2 and 3) and the value count of a data page (v1, field 5, or v2, field 8; the
    /// count is field 1 of either) or a dictionary page (field 7, its field 1).
    fn page_header(&mut self) -> Result<Page, Malformed> {
        let (mut uncompressed, mut compressed, mut values) = (None, None, None);
        let mut id = 0i64;
        loop {
            let (ty, next) = self.field_header(id)?;
            if ty == 0 {
                break;
            }
            id = next;
            match (id, ty) {
                (2, 5) => uncompressed = Some(self.zigzag()?),
                (3, 5) => compressed = Some(self.zigzag()?),
                (5 | 7 | 8, 12) => values = self.first_i32(id)?,
                _ => self.skip(ty, 1)?,
            }
        }
        match (uncompressed, compressed) {
            (Some(uncompressed), Some(compressed)) => Ok(Page {
                uncompressed,
                compressed,
                values,
            }),
            _ => Err(Malformed),
        }
    }

    /// Field 1 (an i32) of the nested header struct in field `id`, skipping the rest; with it,
    /// whether it counts a data page's values (fields 5 and 8) or a dictionary's (field 7).
    fn first_i32(&mut self, id: i64) -> Result<Option<(i64, bool)>, Malformed> {
        let mut found = None;
        let mut inner = 0i64;
        loop {
            let (ty, next) = self.field_header(inner)?;
            if ty == 0 {
                return Ok(found);
            }
            inner = next;
            if (inner, ty) == (1, 5) {
                found = Some((self.zigzag()?, id != 7));
            } else {
                self.skip(ty, 2)?;
            }
        }
    }
}

/// What one page header says about the page.
struct Page {
    uncompressed: i64,
    compressed: i64,
    /// The value count, and whether the page holds data (not a dictionary).
    values: Option<(i64, bool)>,
}

/// Bytes one decoded value of `ty` occupies at least in an Arrow array (a byte array's offset;
/// a boolean is counted as a byte, its validity slot).
fn decoded_width(ty: parquet::basic::Type, type_length: i32) -> u64 {
    use parquet::basic::Type;
    match ty {
        Type::BOOLEAN => 1,
        Type::INT32 | Type::FLOAT | Type::BYTE_ARRAY => 4,
        Type::INT64 | Type::DOUBLE => 8,
        Type::INT96 => 12,
        Type::FIXED_LEN_BYTE_ARRAY => u64::try_from(type_length).unwrap_or(1).max(1),
    }
}

/// Check every page header of every column chunk before the Parquet reader sees it:
/// - the header parses (a Thrift struct inside the chunk's byte range; the parquet crate's own
///   header reader walks a hostile container count element by element, one `read` call each,
///   which made a 1 336-byte file take 18 s to refuse);
/// - no page claims more than the limit uncompressed, nor more values than the limit holds
///   decoded (run-length encoding turns a few bytes into billions of levels or dictionary
///   indices);
/// - a column that is not repeated has at most one value per row: its data pages together
///   count no more values than the row group has rows.
pub(super) fn check_page_sizes(
    path: &Path,
    file: &File,
    metadata: &parquet::file::metadata::ParquetMetaData,
) -> Result<(), IngestError> {
    let limit = max_page_bytes();
    let mut reader = BufReader::with_capacity(8 << 10, file);
    for (g, group) in metadata.row_groups().iter().enumerate() {
        let rows = group.num_rows();
        for column in group.columns() {
            let descr = column.column_descr();
            let width = decoded_width(descr.physical_type(), descr.type_length());
            let flat = descr.max_rep_level() == 0;
            let refuse = |message: String| IngestError::InvalidValue {
                path: path.to_path_buf(),
                row: None,
                column: Some(column.column_path().string()),
                message: format!("row group {g}: {message}"),
            };
            let (start, len) = column.byte_range();
            let end = start.saturating_add(len);
            let mut pos = start;
            let mut data_values = 0i64;
            while pos < end {
                reader
                    .seek(SeekFrom::Start(pos))
                    .map_err(|e| IngestError::io(path, e))?;
                let mut c = Compact {
                    inner: (&mut reader).take(end - pos),
                    read: 0,
                    limit: end - pos,
                };
                let Ok(page) = c.page_header() else {
                    return Err(refuse(format!(
                        "the page header at byte {pos} is malformed (not a Thrift page header \
                         within the column chunk's {len} bytes)"
                    )));
                };
                if page.uncompressed > 0 && page.uncompressed as u64 > limit {
                    return Err(refuse(format!(
                        "the page at byte {pos} claims {} bytes uncompressed, more than the \
                         {limit} accepted (raise it with --max-page-bytes)",
                        page.uncompressed
                    )));
                }
                if let Some((n, data)) = page.values {
                    if n < 0 {
                        return Err(refuse(format!("the page at byte {pos} claims {n} values")));
                    }
                    let decoded = (n as u64).saturating_mul(width);
                    if decoded > limit {
                        return Err(refuse(format!(
                            "the page at byte {pos} claims {n} values ({decoded} bytes or more \
                             decoded), more than the {limit} accepted (raise it with \
                             --max-page-bytes)"
                        )));
                    }
                    if data {
                        data_values = data_values.saturating_add(n);
                        if flat && data_values > rows {
                            return Err(refuse(format!(
                                "the pages up to byte {pos} claim {data_values} values, more \
                                 than the group's {rows} rows in a column with one value per row"
                            )));
                        }
                    }
                }
                if page.compressed < 0 {
                    return Err(refuse(format!(
                        "the page at byte {pos} claims {} bytes compressed",
                        page.compressed
                    )));
                }
                pos = pos
                    .saturating_add(c.read)
                    .saturating_add(page.compressed as u64);
            }
        }
    }
    Ok(())
}

/// Why a footer is refused.
#[derive(Debug, PartialEq)]
enum FooterFault {
    /// Not Thrift `FileMetaData`, or a container counts more elements than its bytes hold.
    Malformed,
    /// A schema element claims more children than the schema has elements.
    Children {
        element: u64,
        claimed: i64,
        elements: u64,
    },
}

impl From<Malformed> for FooterFault {
    fn from(_: Malformed) -> Self {
        FooterFault::Malformed
    }
}

/// Walk a footer's `FileMetaData` (compact protocol): every container count bounded by the
/// bytes left, and the child counts of the schema list (field 2; `num_children`, field 5 of a
/// `SchemaElement`) non-negative and together within the list's own length.
fn check_footer_bytes(meta: &[u8]) -> Result<(), FooterFault> {
    let mut c = Compact {
        inner: meta,
        read: 0,
        limit: meta.len() as u64,
    };
    let mut id = 0i64;
    loop {
        let (ty, next) = c.field_header(id)?;
        if ty == 0 {
            return Ok(());
        }
        id = next;
        if (id, ty) != (2, 9) {
            c.skip(ty, 1)?;
            continue;
        }
        let (elem, elements) = c.list_header()?;
        if elem != 12 {
            return Err(FooterFault::Malformed);
        }
        let mut children_total = 0i64;
        for element in 0..elements {
            let mut field = 0i64;
            loop {
                let (ty, next) = c.field_header(field)?;
                if ty == 0 {
                    break;
                }
                field = next;
                if (field, ty) == (5, 5) {
                    let claimed = c.zigzag()?;
                    children_total = children_total.saturating_add(claimed.max(0));
                    let room = i64::try_from(elements).unwrap_or(i64::MAX) - 1;
                    if claimed < 0 || claimed > room || children_total > room {
                        return Err(FooterFault::Children {
                            element,
                            claimed,
                            elements,
                        });
                    }
                } else {
                    c.skip(ty, 2)?;
                }
            }
        }
    }
}

/// A Parquet reader builder over `file` (at `path`), opened only after its footer passed
/// [`check_footer`]: every reader of files poisongate did not just write goes through here.
pub fn parquet_builder(
    path: &Path,
    file: File,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<File>, IngestError> {
    check_footer(path, &file)?;
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| IngestError::parquet(path, e))
}

/// The footer limit never goes below this, whatever the page limit (16 MiB).
const MIN_FOOTER_LIMIT: u64 = 16 << 20;

/// Check a Parquet file's footer before the reader decodes it (see the module's notes); a
/// footer whose framing is wrong is left to the reader, which refuses it cleanly.
pub fn check_footer(path: &Path, file: &File) -> Result<(), IngestError> {
    let len = file.metadata().map_err(|e| IngestError::io(path, e))?.len();
    if len < 12 {
        return Ok(());
    }
    let mut reader = file;
    let mut tail = [0u8; 8];
    reader
        .seek(SeekFrom::Start(len - 8))
        .and_then(|_| reader.read_exact(&mut tail))
        .map_err(|e| IngestError::io(path, e))?;
    let meta_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if &tail[4..] != b"PAR1" || meta_len + 8 > len - 4 {
        return Ok(());
    }
    let refuse = |message: String| IngestError::InvalidValue {
        path: path.to_path_buf(),
        row: None,
        column: None,
        message,
    };
    // the page limit bounds the footer too, but a limit lowered to refuse large pages must not
    // refuse an ordinary footer (a few KB to a few MB with many columns and row groups)
    let limit = max_page_bytes().max(MIN_FOOTER_LIMIT);
    if meta_len > limit {
        return Err(refuse(format!(
            "the footer claims {meta_len} bytes of metadata, more than the {limit} accepted \
             (raise it with --max-page-bytes)"
        )));
    }
    let mut meta = vec![0u8; meta_len as usize];
    reader
        .seek(SeekFrom::Start(len - 8 - meta_len))
        .and_then(|_| reader.read_exact(&mut meta))
        .map_err(|e| IngestError::io(path, e))?;
    match check_footer_bytes(&meta) {
        Ok(()) => Ok(()),
        Err(FooterFault::Malformed) => Err(refuse(format!(
            "the footer's {meta_len} bytes are not Parquet file metadata (Thrift that does not \
             parse, or a list counting more elements than its bytes hold)"
        ))),
        Err(FooterFault::Children {
            element,
            claimed,
            elements,
        }) => Err(refuse(format!(
            "schema element {element} of the footer claims {claimed} children, in a schema of \
             {elements} elements"
        ))),
    }
}

#[cfg(test)]
mod footer_tests {
    use super::*;

    /// A compact-protocol field header with a short delta.
    fn field(delta: u8, ty: u8) -> u8 {
        (delta << 4) | ty
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn zigzag(v: i64, out: &mut Vec<u8>) {
        varint(((v << 1) ^ (v >> 63)) as u64, out);
    }

    /// FileMetaData { version: 1, schema: [root with `root_children`, leaves...] }
    fn footer(root_children: i64, leaves: usize) -> Vec<u8> {
        let mut m = vec![field(1, 5)];
        zigzag(1, &mut m);
        m.push(field(1, 9));
        let n = 1 + leaves;
        if n < 15 {
            m.push(((n as u8) << 4) | 12);
        } else {
            m.push(0xf0 | 12);
            varint(n as u64, &mut m);
        }
        for i in 0..n {
            // name (field 4, binary), then num_children (field 5) on the root
            m.push(field(4, 8));
            let name = format!("c{i}");
            varint(name.len() as u64, &mut m);
            m.extend_from_slice(name.as_bytes());
            if i == 0 {
                m.push(field(1, 5));
                zigzag(root_children, &mut m);
            }
            m.push(0);
        }
        m.push(0);
        m
    }

    #[test]
    fn a_valid_schema_passes() {
        assert_eq!(check_footer_bytes(&footer(3, 3)), Ok(()));
    }

    #[test]
    fn a_child_count_beyond_the_schema_is_refused() {
        for claimed in [4, 402_653_183, i64::from(i32::MAX), -1] {
            assert_eq!(
                check_footer_bytes(&footer(claimed, 3)),
                Err(FooterFault::Children {
                    element: 0,
                    claimed,
                    elements: 4
                })
            );
        }
    }

    #[test]
    fn a_list_counting_more_elements_than_bytes_is_refused() {
        let mut m = vec![field(1, 5)];
        zigzag(1, &mut m);
        m.push(field(1, 9));
        m.push(0xf0 | 12);
        varint(1 << 40, &mut m);
        m.push(0);
        assert_eq!(check_footer_bytes(&m), Err(FooterFault::Malformed));
    }
}
