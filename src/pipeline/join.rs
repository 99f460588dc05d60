//! Embeddings from a table, joined to the data's rows by id.

use super::*;

/// Reads embeddings from a JSONL/Parquet table with an id column and a vector column
/// (`--embedding-column`, default `embedding`) and orders them like the data's rows, joined on
/// `--id-column`. Every data id needs exactly one embedding row, except the rows `skip` names
/// (invalid rows, whose ids are placeholders: they get zeros and are dropped).
pub(super) fn join_embeddings(
    opts: &ScanOptions,
    path: &Path,
    table: &Table,
    skip: &dyn Fn(usize) -> bool,
) -> Result<(Array2<f32>, FileDigest), ScanError> {
    let id_col = opts.id_column.clone().ok_or_else(|| {
        ScanError::Config(format!(
            "embeddings table {} is joined by id: pass --id-column, a column of both files",
            path.display()
        ))
    })?;
    let spec = ColumnSpec {
        id: Some(id_col.clone()),
        embedding: Some(
            opts.embedding_column
                .clone()
                .unwrap_or_else(|| "embedding".into()),
        ),
        ..ColumnSpec::default()
    };
    let t = ingest::read_table(path, &spec)?;
    let (Some(ids), Some(m)) = (t.ids.as_ref(), t.embeddings.as_ref()) else {
        return Err(ScanError::Config(format!(
            "embeddings table {} yielded no ids or vectors",
            path.display()
        )));
    };
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(prev) = at.insert(id.as_str(), i) {
            return Err(ScanError::Config(format!(
                "embeddings table {}: id `{id}` appears twice (rows {} and {})",
                path.display(),
                prev + 1,
                i + 1
            )));
        }
    }
    let data_ids = table.ids.as_ref().ok_or_else(|| {
        ScanError::Config(format!(
            "data {} has no id column `{id_col}`",
            opts.data.display()
        ))
    })?;
    let mut out = Array2::<f32>::zeros((data_ids.len(), m.ncols()));
    // a data id found twice would give both rows one vector, whatever their texts
    let mut joined: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (r, id) in data_ids.iter().enumerate() {
        if skip(r) {
            continue;
        }
        if let Some(prev) = joined.insert(id.as_str(), r) {
            return Err(ScanError::Config(format!(
                "data {}: id `{id}` appears twice (rows {} and {}), so it cannot be joined to one \
                 row of the embeddings table {}",
                opts.data.display(),
                prev + 1,
                r + 1,
                path.display()
            )));
        }
        let Some(&src) = at.get(id.as_str()) else {
            return Err(ScanError::Config(format!(
                "row {} of data {}: id `{id}` has no embedding in {} (data has {} rows, embeddings {} rows)",
                r + 1,
                opts.data.display(),
                path.display(),
                data_ids.len(),
                ids.len()
            )));
        };
        out.row_mut(r).assign(&m.row(src));
    }
    Ok((out, t.digest))
}
