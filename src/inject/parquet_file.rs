//! Parquet output: the input's columns and values, with the changed cells replaced.

use super::*;

/// The output column: row i is the next value of `repl` (in order) where `replaced(rows[i])`,
/// else the source row's value of `col`.
pub(super) fn splice(
    col: &ArrayRef,
    repl: &ArrayRef,
    rows: &[OutRow],
    replaced: impl Fn(&OutRow) -> bool,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let mut k = 0usize;
    let idx: Vec<(usize, usize)> = rows
        .iter()
        .map(|r| {
            if replaced(r) {
                k += 1;
                (1, k - 1)
            } else {
                (0, r.src)
            }
        })
        .collect();
    arrow_select::interleave::interleave(&[col.as_ref(), repl.as_ref()], &idx)
}

/// The Arrow schema of the Parquet file at `path` (of a folder of Parquet files: of its first
/// file).
pub(super) fn parquet_schema(path: &Path) -> Result<Arc<Schema>, IngestError> {
    let first = ingest::table_files(path)?.swap_remove(0).1;
    let file = std::fs::File::open(&first).map_err(|e| IngestError::io(&first, e))?;
    let builder = ingest::parquet_builder(&first, file)?;
    Ok(builder.schema().clone())
}

/// Every record batch of the Parquet file at `path` (of a folder: of its files in row order,
/// under the first file's schema), whose bytes must still hash to `sha256`.
fn read_batches(
    path: &Path,
    sha256: &str,
) -> Result<(arrow_schema::SchemaRef, Vec<RecordBatch>), InjectError> {
    let folder = path.is_dir();
    let mut schema: Option<arrow_schema::SchemaRef> = None;
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut parts = Vec::new();
    for (name, part) in ingest::table_files(path)? {
        let file = std::fs::File::open(&part).map_err(|e| IngestError::io(&part, e))?;
        let before = ingest::hash_open_file(&file, &part)?;
        if !folder {
            check_same_input(path, sha256, &before.sha256)?;
        }
        let builder = ingest::parquet_builder(&part, file)?;
        let first = schema
            .get_or_insert_with(|| builder.schema().clone())
            .clone();
        if builder.schema().fields() != first.fields() {
            return Err(InjectError::Config(format!(
                "{}: the files of a folder read as one table must have the same columns",
                part.display()
            )));
        }
        let reader = builder
            .build()
            .map_err(|e| IngestError::parquet(&part, e))?;
        for b in reader {
            let b = b.map_err(|e| IngestError::arrow(&part, e))?;
            batches.push(
                RecordBatch::try_new(first.clone(), b.columns().to_vec())
                    .map_err(|e| IngestError::arrow(&part, e))?,
            );
        }
        parts.push(ingest::PartDigest {
            name,
            bytes: before.bytes,
            sha256: before.sha256,
        });
    }
    if folder {
        check_same_input(path, sha256, &ingest::folder_digest(path, parts).sha256)?;
    }
    let schema = schema.ok_or_else(|| InjectError::Config("no Parquet file read".into()))?;
    Ok((schema, batches))
}

pub(super) fn parquet_output(
    opts: &InjectOptions,
    table: &Table,
    rows: &[OutRow],
    copies: Option<&FileRecord>,
    out: &mut std::fs::File,
) -> Result<(), InjectError> {
    let path = &opts.data;
    let (mut schema, mut batches) = read_batches(path, &table.digest.sha256)?;
    // the copies' source rows follow the data's, as they do in the table; the ground-truth
    // column is rewritten anyway, so either file may lack it
    if let (Some(c), Some(from)) = (copies, &opts.copies_from) {
        let (other, more) = read_batches(from, &c.sha256)?;
        let gt = opts.ground_truth_column.as_str();
        let keep = |s: &arrow_schema::Schema| -> Vec<usize> {
            (0..s.fields().len())
                .filter(|&i| s.field(i).name() != gt)
                .collect()
        };
        let (ka, kb) = (keep(&schema), keep(&other));
        let projected = Arc::new(
            schema
                .project(&ka)
                .map_err(|e| IngestError::arrow(path, e))?,
        );
        let other = other
            .project(&kb)
            .map_err(|e| IngestError::arrow(from, e))?;
        if other.fields() != projected.fields() {
            return Err(InjectError::Config(format!(
                "--copies-from {}: its columns differ from the data's",
                from.display()
            )));
        }
        let mut all = Vec::with_capacity(batches.len() + more.len());
        for b in &batches {
            all.push(b.project(&ka).map_err(|e| IngestError::arrow(path, e))?);
        }
        for b in &more {
            all.push(b.project(&kb).map_err(|e| IngestError::arrow(from, e))?);
        }
        batches = all;
        schema = projected;
    }
    let all = arrow_select::concat::concat_batches(&schema, &batches)
        .map_err(|e| IngestError::arrow(path, e))?;
    if all.num_rows() != table.n_rows {
        return Err(InjectError::Config(format!(
            "{}: {} rows re-read but {} read before",
            path.display(),
            all.num_rows(),
            table.n_rows
        )));
    }
    // a donor row for each label value, so new labels keep the column's type
    let labels = table.labels.as_deref().unwrap_or_default();
    let values = label_values(labels, table.label_kind);
    let donor: Vec<usize> = values
        .iter()
        .map(|v| labels.iter().position(|l| l == v).unwrap_or(0))
        .collect();
    let unsupported = |column: &str, message: String| InjectError::Unsupported {
        path: path.clone(),
        column: column.to_string(),
        message,
    };
    let arrow = |e| InjectError::from(IngestError::arrow(path, e));

    let mut fields: Vec<Arc<Field>> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let gt = &opts.ground_truth_column;
    for (f, col) in schema.fields().iter().zip(all.columns()) {
        if f.name() == gt {
            continue; // rewritten below
        }
        let name = f.name().as_str();
        let edited = |r: &OutRow| r.cells.iter().any(|(k, _)| k == name);
        let new: ArrayRef = if rows.iter().any(edited) {
            // an instruction attack's rewritten cells: strings into a string column
            let mut texts: Vec<&str> = Vec::new();
            for (k, v) in rows.iter().flat_map(|r| &r.cells) {
                if k == name {
                    match v {
                        serde_json::Value::String(t) => texts.push(t),
                        _ => {
                            return Err(unsupported(
                                name,
                                format!(
                                    "a {} column cannot be rewritten by {} (only string \
                                     columns can); inject the JSONL form of the data instead",
                                    col.data_type(),
                                    opts.attack.name()
                                ),
                            ))
                        }
                    }
                }
            }
            let Some(repl) = string_column(col.data_type(), texts) else {
                return Err(unsupported(
                    name,
                    format!(
                        "a {} column cannot be rewritten by {} (only string columns can); \
                         inject the JSONL form of the data instead",
                        col.data_type(),
                        opts.attack.name()
                    ),
                ));
            };
            splice(col, &repl, rows, edited).map_err(arrow)?
        } else if name == opts.text_column {
            let texts: Vec<&str> = rows.iter().filter_map(|r| r.text.as_deref()).collect();
            let Some(repl) = string_column(col.data_type(), texts) else {
                return Err(unsupported(
                    name,
                    format!(
                        "text of type {} cannot be rewritten; use a plain string column",
                        col.data_type()
                    ),
                ));
            };
            splice(col, &repl, rows, |r| r.text.is_some()).map_err(arrow)?
        } else if name == opts.label_column {
            let idx: Vec<(usize, usize)> = rows
                .iter()
                .map(|r| (0, r.label.map_or(r.src, |l| donor[l])))
                .collect();
            arrow_select::interleave::interleave(&[col.as_ref()], &idx).map_err(arrow)?
        } else if opts.id_column.as_deref() == Some(name)
            && rows.iter().any(|r| r.id_suffix.is_some())
        {
            let ids: Vec<String> = rows
                .iter()
                .filter_map(|r| {
                    r.id_suffix.as_ref().map(|c| {
                        table
                            .ids
                            .as_ref()
                            .and_then(|ids| ids.get(r.src))
                            .map_or(String::new(), |id| format!("{id}{c}"))
                    })
                })
                .collect();
            let repl: ArrayRef = match col.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from(ids)),
                DataType::LargeUtf8 => Arc::new(LargeStringArray::from(ids)),
                other => {
                    return Err(unsupported(
                        name,
                        format!(
                            "id of type {other}: duplicate-flip can only make string ids unique \
                             (omit --id-column to copy ids verbatim)"
                        ),
                    ))
                }
            };
            splice(col, &repl, rows, |r| r.id_suffix.is_some()).map_err(arrow)?
        } else {
            let idx: Vec<(usize, usize)> = rows.iter().map(|r| (0, r.src)).collect();
            arrow_select::interleave::interleave(&[col.as_ref()], &idx).map_err(arrow)?
        };
        fields.push(f.clone());
        columns.push(new);
    }
    let truth: BooleanArray = rows.iter().map(|r| Some(r.truth)).collect();
    fields.push(Arc::new(Field::new(gt, DataType::Boolean, false)));
    columns.push(Arc::new(truth));
    let out_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batch = RecordBatch::try_new(out_schema.clone(), columns).map_err(arrow)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let pq = |e| InjectError::from(IngestError::parquet(&opts.out, e));
    let mut w = ArrowWriter::try_new(out, out_schema, Some(props)).map_err(pq)?;
    for start in (0..batch.num_rows()).step_by(ingest::PARQUET_BATCH_SIZE) {
        let len = ingest::PARQUET_BATCH_SIZE.min(batch.num_rows() - start);
        w.write(&batch.slice(start, len)).map_err(pq)?;
    }
    w.close().map_err(pq)?;
    Ok(())
}

/// `texts` as a column of the string type `t` (`None` for any other type).
fn string_column(t: &DataType, texts: Vec<&str>) -> Option<ArrayRef> {
    match t {
        DataType::Utf8 => Some(Arc::new(StringArray::from(texts))),
        DataType::LargeUtf8 => Some(Arc::new(LargeStringArray::from(texts))),
        DataType::Utf8View => Some(Arc::new(StringViewArray::from(texts))),
        _ => None,
    }
}
