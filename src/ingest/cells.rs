//! The raw cells of an instruction layout for chosen rows, as JSON values, for the tools that
//! rewrite rows (`inject`) rather than read their prompt and response.

use super::*;

/// The cells of chosen rows.
pub type LayoutCells = Vec<(RowRef, Vec<Option<Value>>)>;

/// For each row index of `rows` (0-based, strictly increasing), where it is in the file and
/// the values of `format`'s keys ([`RowFormat::keys`], `None`: key or column absent), read
/// as `scan` reads them (Parquet cells converted as for a scan). Also the file's SHA-256,
/// so the caller can check it read the file it planned on.
pub fn layout_cells(
    path: &Path,
    format: RowFormat,
    rows: &[usize],
) -> Result<(LayoutCells, String), IngestError> {
    let keys = format.keys();
    match Format::from_path(path)? {
        Format::Jsonl => {
            let folder = path.is_dir();
            let mut lines = JsonlLines::open(path)?;
            let mut out = Vec::with_capacity(rows.len());
            let mut want = rows.iter().peekable();
            let mut row = 0usize;
            while let Some(line_no) = lines.advance()? {
                if want.next_if(|&&r| r == row).is_some() {
                    let bytes = lines.bytes();
                    let values = parse_projected(bytes, keys).map_err(|e| IngestError::Json {
                        path: lines.path().to_path_buf(),
                        line: line_no,
                        message: json_message(&e, bytes),
                    })?;
                    // in a folder a line number names no file: the row number across it does
                    out.push((
                        if folder {
                            RowRef::Row(row + 1)
                        } else {
                            RowRef::Line(line_no)
                        },
                        values,
                    ));
                }
                row += 1;
            }
            let digest = lines.finish()?;
            check_found(path, rows, out.len(), row)?;
            Ok((out, digest.sha256))
        }
        Format::Parquet => {
            // a folder's files in order, rows numbered across them
            let files = table_files(path)?;
            let mut out = Vec::with_capacity(rows.len());
            let mut want = rows.iter().peekable();
            let mut start = 0usize;
            let mut digests = Vec::with_capacity(files.len());
            for (name, part) in &files {
                let file = File::open(part).map_err(|e| IngestError::io(part, e))?;
                let digest = hash_open_file(&file, part)?;
                let builder = parquet_builder(part, file)?;
                let reader = builder
                    .with_batch_size(PARQUET_BATCH_SIZE)
                    .build()
                    .map_err(|e| IngestError::parquet(part, e))?;
                for batch in reader {
                    let batch = batch.map_err(|e| IngestError::arrow(part, e))?;
                    let columns = named_columns(&batch, keys, part)?;
                    while let Some(&r) = want.next_if(|&&r| r < start + batch.num_rows()) {
                        let j = r - start;
                        let at = Some(RowRef::Row(r + 1));
                        let values: Vec<Option<Value>> = columns
                            .iter()
                            .map(|c| c.as_ref().map(|c| cell_json(c.as_ref(), j)).transpose())
                            .collect::<Result<_, _>>()
                            .map_err(|m| IngestError::value(part, at, format.name(), m))?;
                        out.push((RowRef::Row(r + 1), values));
                    }
                    start += batch.num_rows();
                }
                digests.push(PartDigest {
                    name: name.clone(),
                    bytes: digest.bytes,
                    sha256: digest.sha256,
                });
            }
            check_found(path, rows, out.len(), start)?;
            let sha256 = if path.is_dir() {
                folder_digest(path, digests).sha256
            } else {
                digests.pop().map(|d| d.sha256).unwrap_or_default()
            };
            Ok((out, sha256))
        }
    }
}

fn check_found(path: &Path, rows: &[usize], found: usize, n: usize) -> Result<(), IngestError> {
    if found == rows.len() {
        Ok(())
    } else {
        Err(IngestError::InvalidValue {
            path: path.to_path_buf(),
            row: None,
            column: None,
            message: format!(
                "{} rows asked for, {found} found among the {n} rows (row indices must be \
                 increasing and below the row count)",
                rows.len()
            ),
        })
    }
}
