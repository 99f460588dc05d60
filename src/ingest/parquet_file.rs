//! Parquet through the Arrow reader, with a projection of the requested columns.

use super::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;

/// Read a Parquet file. The parquet crate can panic on hostile metadata (a fuzzed file made
/// its byte-array decoder divide by zero); such a panic is caught here and becomes an error
/// naming the file, like any other unreadable file, with the panic's message in it instead of
/// on the terminal.
///
/// `sink` runs inside the guard that turns a panic of the Parquet reader into an error: it
/// must not panic itself.
pub(super) fn read_parquet<E: From<IngestError>>(
    path: &Path,
    spec: &ColumnSpec,
    batch_rows: usize,
    known: Option<&FileDigest>,
    groups: Option<&RowGroups>,
    sink: &mut dyn FnMut(Batch) -> Result<(), E>,
) -> Result<ReadSummary, E> {
    quiet_panics::install();
    let (result, message) = quiet_panics::guarded(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_parquet_inner(path, spec, batch_rows, known, groups, sink)
        }))
    });
    result.unwrap_or_else(|_| {
        let detail = message.map(|m| format!(" ({m})")).unwrap_or_default();
        Err(IngestError::parquet(
            path,
            ParquetError::General(format!(
                "the Parquet reader failed on this file's metadata or pages{detail}"
            )),
        )
        .into())
    })
}

/// A panic hook that stays out of the way of everything but the guarded reader: while a
/// thread runs [`guarded`], a panic on that thread is recorded instead of printed (it is about
/// to be caught and reported as an error); on every other thread, and outside the guard, the
/// hook that was installed before runs as it would have. The standard library has no
/// per-thread hook, hence this small wrapper.
mod quiet_panics {
    use std::cell::{Cell, RefCell};
    use std::sync::Once;

    thread_local! {
        static GUARDED: Cell<bool> = const { Cell::new(false) };
        static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    pub(super) fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if GUARDED.with(Cell::get) {
                    let text = match info.location() {
                        Some(at) => {
                            // a crate's own path, not where cargo keeps it on this machine
                            let file = at.file();
                            let file = file
                                .rsplit_once("/registry/src/")
                                .and_then(|(_, rest)| rest.split_once('/'))
                                .map_or(file, |(_, krate)| krate);
                            format!("{} at {file}:{}", payload(info), at.line())
                        }
                        None => payload(info),
                    };
                    MESSAGE.with(|m| *m.borrow_mut() = Some(text));
                } else {
                    previous(info);
                }
            }));
        });
    }

    fn payload(info: &std::panic::PanicHookInfo<'_>) -> String {
        let p = info.payload();
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    }

    /// Run `f` with this thread's panics recorded; returns its result and the last message.
    pub(super) fn guarded<T>(f: impl FnOnce() -> T) -> (T, Option<String>) {
        let before = GUARDED.with(|g| g.replace(true));
        let out = f();
        GUARDED.with(|g| g.set(before));
        (out, MESSAGE.with(|m| m.borrow_mut().take()))
    }
}

fn read_parquet_inner<E: From<IngestError>>(
    path: &Path,
    spec: &ColumnSpec,
    batch_rows: usize,
    known: Option<&FileDigest>,
    groups: Option<&RowGroups>,
    sink: &mut dyn FnMut(Batch) -> Result<(), E>,
) -> Result<ReadSummary, E> {
    let folder = path.is_dir();
    let parts = table_files(path)?;
    // A file is hashed through the same open file the reader then parses, unless an earlier
    // read of the same scan hashed it: then only its size is checked here (the digest is
    // checked again where the outputs are written). A folder's files are hashed one by one
    // first (a folder may hold more files than a process may open at once), then read.
    let single = if folder {
        None
    } else {
        Some(File::open(path).map_err(|e| IngestError::io(path, e))?)
    };
    let digest = match (known, &single) {
        (None, Some(file)) => hash_open_file(file, path)?,
        // the files listed above, so the digest covers exactly the files read
        (None, None) => hash_parts(path, &parts)?,
        (Some(known), _) => {
            let bytes = match &single {
                Some(file) => file.metadata().map_err(|e| IngestError::io(path, e))?.len(),
                None => table_bytes(path)?,
            };
            if bytes != known.bytes {
                return Err(IngestError::InputChanged {
                    path: path.to_path_buf(),
                    expected: known.sha256.clone(),
                    actual: format!(
                        "unknown (the input is now {bytes} bytes, was {})",
                        known.bytes
                    ),
                }
                .into());
            }
            known.clone()
        }
    };
    let mut batcher = Batcher::new(spec, path, batch_rows, sink);
    let want = groups.map(|g| g.groups.clone());
    if let Some(w) = want.as_ref().filter(|w| w.start > w.end) {
        return Err(IngestError::InvalidValue {
            path: path.to_path_buf(),
            row: None,
            column: None,
            message: format!("row groups {}..{} asked for", w.start, w.end),
        }
        .into());
    }
    // rows and row groups of the files before the one being read
    let (mut n_rows, mut g0) = (0usize, 0usize);
    let mut started = false;
    let mut reached_end = false;
    let mut single = single;
    for (_, part) in &parts {
        let file = match single.take() {
            Some(f) => f,
            None => File::open(part).map_err(|e| IngestError::io(part, e))?,
        };
        let builder = parquet_builder(
            part,
            file.try_clone().map_err(|e| IngestError::io(part, e))?,
        )?;
        check_page_sizes(part, &file, builder.metadata())?;
        let meta = builder.metadata();
        let group_rows = (0..meta.num_row_groups())
            .map(|i| {
                let n = meta.row_group(i).num_rows();
                usize::try_from(n).map_err(|_| IngestError::InvalidValue {
                    path: part.to_path_buf(),
                    row: None,
                    column: None,
                    message: format!("invalid row count {n} of row group {i} in the file metadata"),
                })
            })
            .collect::<Result<Vec<usize>, IngestError>>()?;
        let n_groups = group_rows.len();
        let Some(w) = &want else {
            let total = meta.file_metadata().num_rows();
            let rows = usize::try_from(total).map_err(|_| IngestError::InvalidValue {
                path: part.to_path_buf(),
                row: None,
                column: None,
                message: format!("invalid row count {total} in the file metadata"),
            })?;
            let at = Place {
                first: n_rows,
                file_first: n_rows,
                rows,
                start: !started,
            };
            n_rows = read_part(part, builder, spec, &mut batcher, at)?;
            started = true;
            continue;
        };
        // this file's row groups are g0..g0 + n_groups of the input's
        let local = (w.start.clamp(g0, g0 + n_groups) - g0)..(w.end.clamp(g0, g0 + n_groups) - g0);
        let before: usize = group_rows[..local.start].iter().sum();
        if local.is_empty() {
            n_rows += before;
            g0 += n_groups;
            if g0 > w.start || (w.start == w.end && g0 == w.start) {
                reached_end = true;
                break;
            }
            continue;
        }
        let at = Place {
            first: n_rows + before,
            file_first: n_rows,
            rows: group_rows[local.clone()].iter().sum(),
            start: !started,
        };
        let builder = builder.with_row_groups(local.clone().collect());
        n_rows = read_part(part, builder, spec, &mut batcher, at)?;
        started = true;
        g0 += n_groups;
        if w.end <= g0 {
            reached_end = true;
            break;
        }
    }
    if let Some(w) = &want {
        if !reached_end && w.end > g0 {
            return Err(IngestError::InvalidValue {
                path: path.to_path_buf(),
                row: None,
                column: None,
                message: format!(
                    "row groups {}..{} asked for, the input has {g0}",
                    w.start, w.end
                ),
            }
            .into());
        }
    }
    if !started {
        batcher.start_at(n_rows);
    }
    batcher.finish(Format::Parquet, digest, n_rows)
}

/// Where the rows a [`read_part`] reads sit in the input.
struct Place {
    /// The input's row number of the first row read.
    first: usize,
    /// The input's row number of the file's first row (errors name rows of the file).
    file_first: usize,
    /// Rows selected, from the footer.
    rows: usize,
    /// The first read of the input: the batcher starts at `first`.
    start: bool,
}

/// Read the rows `builder` selects of the Parquet file `part` into `batcher`. Returns the
/// input's row number after the last one read.
fn read_part<E: From<IngestError>>(
    part: &Path,
    builder: ParquetRecordBatchReaderBuilder<File>,
    spec: &ColumnSpec,
    batcher: &mut Batcher<'_, E>,
    at: Place,
) -> Result<usize, E> {
    let path = part;
    let first = at.first;
    if at.start {
        batcher.start_at(first);
    }
    let (roles, mut names) = requested(spec);
    let root_fields = builder.parquet_schema().root_schema().get_fields();
    let available: Vec<String> = root_fields.iter().map(|f| f.name().to_string()).collect();
    // instruction layouts: their required keys, and the optional ones the file has
    let (layout, n_required) = spec.rows.keys();
    for (i, k) in layout.iter().enumerate() {
        let present = available.iter().any(|a| a == k);
        if !present {
            if let RowLayout::Fields(fields) = &spec.rows {
                // the first path starting from the missing column names it
                let field = fields
                    .prompt
                    .iter()
                    .chain(std::iter::once(&fields.response))
                    .find(|p| p.column() == *k)
                    .map_or_else(|| k.to_string(), |p| p.as_str().to_string());
                return Err(IngestError::Field {
                    path: path.to_path_buf(),
                    row: None,
                    field,
                    message: format!(
                        "the file has no column `{k}`; columns: {}",
                        list(&available)
                    ),
                }
                .into());
            }
        }
        if (i < n_required || present) && !names.contains(k) {
            names.push(k);
        }
    }
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
                }
                .into())
            }
            _ => {
                return Err(IngestError::InvalidValue {
                    path: path.to_path_buf(),
                    row: None,
                    column: Some(name.to_string()),
                    message: "the schema has more than one top-level column with this name"
                        .to_string(),
                }
                .into())
            }
        }
    }
    if names.is_empty() {
        // nothing to read: the rows the footer counts
        return Ok(first + at.rows);
    }

    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(PARQUET_BATCH_SIZE)
        .build()
        .map_err(|e| IngestError::parquet(path, e))?;

    let quarantine = spec.invalid == InvalidPolicy::Quarantine;
    let mut n_rows = first;
    for batch in reader {
        let batch = batch.map_err(|e| IngestError::arrow(path, e))?;
        // the first problem of each invalid row of the batch: (what, error)
        let mut bad: BTreeMap<usize, (String, IngestError)> = BTreeMap::new();
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
            let mut on_bad = |j: usize, problem: &'static str, m: String| {
                let row = Some(RowRef::Row(n_rows - at.file_first + j + 1));
                if !quarantine {
                    return Err((row, m));
                }
                bad.entry(j).or_insert_with(|| {
                    (
                        format!("{}-{problem}", role.name()),
                        IngestError::value(path, row, name, m),
                    )
                });
                Ok(())
            };
            arrow_column(
                &mut batcher.out,
                *role,
                column.as_ref(),
                n_rows,
                &mut on_bad,
            )
            .map_err(|(row, m)| IngestError::value(path, row, name, m))?;
        }
        if spec.rows.has_responses() {
            let columns = named_columns(&batch, &layout, path)?;
            for j in 0..batch.num_rows() {
                let row = Some(RowRef::Row(n_rows - at.file_first + j + 1));
                let values: Result<Vec<Option<Value>>, IngestError> = columns
                    .iter()
                    .zip(&layout)
                    .map(|(c, k)| {
                        c.as_ref()
                            .map(|c| cell_json(c.as_ref(), j))
                            .transpose()
                            .map_err(|m| IngestError::value(path, row, k, m))
                    })
                    .collect();
                let turn = values.and_then(|values| {
                    let refs: Vec<Option<&Value>> = values.iter().map(Option::as_ref).collect();
                    spec.rows.read(&refs).map_err(|e| e.at(path, row))
                });
                match turn {
                    Ok(turn) => batcher.out.push_turn(turn),
                    Err(err) if quarantine => {
                        batcher.out.push_turn_placeholder();
                        bad.entry(j)
                            .or_insert_with(|| (spec.rows.name().to_string(), err));
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
        for (j, (what, err)) in bad {
            batcher.invalid(InvalidRow {
                row: n_rows + j,
                at: RowRef::Row(n_rows + j + 1),
                what,
                message: err.to_string(),
            });
        }
        n_rows += batch.num_rows();
        batcher.rows_read(n_rows)?;
    }
    Ok(n_rows)
}

/// One Arrow cell as JSON: strings, integers, floats, booleans, nulls, lists and structs, the
/// cells instruction layouts are made of (a `messages` column is a list of structs). Written
/// here because the one conversion this needs is small and arrow-json is not a dependency.
pub(super) fn cell_json(array: &dyn Array, j: usize) -> Result<Value, String> {
    if array.is_null(j) {
        return Ok(Value::Null);
    }
    if let Some(s) = str_at(array, j) {
        return Ok(Value::String(s.to_string()));
    }
    if let Some(i) = int_at(array, j) {
        return Ok(match i64::try_from(i) {
            Ok(v) => Value::from(v),
            Err(_) => Value::from(u64::try_from(i).unwrap_or(u64::MAX)),
        });
    }
    match array.data_type() {
        DataType::Boolean => Ok(Value::Bool(array.as_boolean().value(j))),
        DataType::Float32 => Ok(Value::from(f64::from(
            array.as_primitive::<Float32Type>().value(j),
        ))),
        DataType::Float64 => Ok(Value::from(array.as_primitive::<Float64Type>().value(j))),
        DataType::List(_) | DataType::LargeList(_) => {
            let items = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(j),
                _ => array.as_list::<i64>().value(j),
            };
            (0..items.len())
                .map(|k| cell_json(items.as_ref(), k))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        DataType::Struct(fields) => {
            let st = array.as_struct();
            let mut map = serde_json::Map::new();
            for (f, col) in fields.iter().zip(st.columns()) {
                map.insert(f.name().clone(), cell_json(col.as_ref(), j)?);
            }
            Ok(Value::Object(map))
        }
        other => Err(format!("a {other} value is not read in an instruction row")),
    }
}

/// Replace a dictionary-encoded array by its decoded values.
/// The batch's columns named `keys` (`None` for a key it lacks), dictionaries decoded.
pub(super) fn named_columns<K: AsRef<str>>(
    batch: &arrow_array::RecordBatch,
    keys: &[K],
    path: &Path,
) -> Result<Vec<Option<ArrayRef>>, IngestError> {
    keys.iter()
        .map(|k| {
            batch
                .column_by_name(k.as_ref())
                .map(decode_dictionary)
                .transpose()
                .map_err(|e| IngestError::arrow(path, e))
        })
        .collect()
}

pub(super) fn decode_dictionary(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match array.as_any_dictionary_opt() {
        Some(dict) => arrow_select::take::take(dict.values().as_ref(), dict.keys(), None),
        None => Ok(array.clone()),
    }
}

pub(super) fn int_at(array: &dyn Array, j: usize) -> Option<i128> {
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

pub(super) fn is_int(dt: &DataType) -> bool {
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

pub(super) fn is_str(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

pub(super) fn str_at(array: &dyn Array, j: usize) -> Option<&str> {
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(j)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(j)),
        DataType::Utf8View => Some(array.as_string_view().value(j)),
        _ => None,
    }
}

/// Rendering of an id-like scalar.
pub(super) fn scalar_at(array: &dyn Array, j: usize) -> Option<String> {
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

/// Called with a row of the batch (0-based), what is wrong with its cell and the message: an
/// error stops the read, `Ok` stores a placeholder and goes on.
pub(super) type OnBad<'a> = dyn FnMut(usize, &'static str, String) -> Result<(), CellError> + 'a;

/// Store one Arrow column of a requested role; `base` is the number of rows before this batch.
/// A cell that cannot be read goes to `on_bad`; a column of the wrong type is an error.
pub(super) fn arrow_column(
    out: &mut Collector,
    role: Role,
    array: &dyn Array,
    base: usize,
    on_bad: &mut OnBad<'_>,
) -> Result<(), CellError> {
    let dt = array.data_type().clone();
    match role {
        Role::Text => {
            if !is_str(&dt) {
                return Err((None, format!("text must be a string column, found {dt}")));
            }
            for j in 0..array.len() {
                match str_at(array, j) {
                    Some(s) if !array.is_null(j) => {
                        if let Some(t) = out.texts.as_mut() {
                            t.push(s.to_string());
                        }
                    }
                    _ => {
                        on_bad(j, "null", "null value".to_string())?;
                        out.push_role_placeholder(role, base + j);
                    }
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
                if array.is_null(j) {
                    on_bad(j, "null", "null value".to_string())?;
                    out.push_role_placeholder(role, base + j);
                    continue;
                }
                let s = match kind {
                    LabelKind::Integer => int_at(array, j).map(|i| i.to_string()),
                    LabelKind::String => str_at(array, j).map(str::to_string),
                    LabelKind::Bool => Some(array.as_boolean().value(j).to_string()),
                };
                let pushed = match s {
                    Some(s) => out.push_label(s, kind),
                    None => Err("unreadable label".to_string()),
                };
                if let Err(m) = pushed {
                    on_bad(j, "type", m)?;
                    out.push_role_placeholder(role, base + j);
                }
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
                match scalar_at(array, j) {
                    Some(s) if !array.is_null(j) => {
                        if let Some(ids) = out.ids.as_mut() {
                            ids.push(s);
                        }
                    }
                    other => {
                        let (problem, m) = match other {
                            None => ("type", "unreadable id"),
                            Some(_) => ("null", "null value"),
                        };
                        on_bad(j, problem, m.to_string())?;
                        out.push_role_placeholder(role, base + j);
                    }
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
                if array.is_null(j) {
                    on_bad(j, "null", "null value".to_string())?;
                    out.push_role_placeholder(role, base + j);
                    continue;
                }
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
                match b {
                    Some(b) => {
                        if let Some(g) = out.ground_truth.as_mut() {
                            g.push(b);
                        }
                    }
                    None => {
                        let shown = scalar_at(array, j).unwrap_or_default();
                        on_bad(
                            j,
                            "type",
                            format!(
                                "ground truth must be a boolean, 0/1 or \"true\"/\"false\", \
                                 found {shown:?}"
                            ),
                        )?;
                        out.push_role_placeholder(role, base + j);
                    }
                }
            }
        }
        Role::Embedding => arrow_embeddings(out, array, base, on_bad)?,
    }
    Ok(())
}

/// The float child values of a list column.
pub(super) enum FloatValues<'a> {
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

pub(super) fn arrow_embeddings(
    out: &mut Collector,
    array: &dyn Array,
    base: usize,
    on_bad: &mut OnBad<'_>,
) -> Result<(), CellError> {
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
        let problem = if array.is_null(j) {
            Some(("null", "null value".to_string()))
        } else if end < start || end > floats.len() {
            Some(("type", "list offsets out of range".to_string()))
        } else {
            None
        };
        if let Some((problem, m)) = problem {
            on_bad(j, problem, m)?;
            out.push_role_placeholder(Role::Embedding, base + j);
            continue;
        }
        let Some(data) = out.embeddings.as_mut() else {
            return Ok(());
        };
        let first = data.len();
        let mut result: Result<(), CellProblem> = Ok(());
        for (k, idx) in (start..end).enumerate() {
            let v = floats
                .get(idx)
                .ok_or_else(|| ("type", format!("embedding element {k} (0-based) is null")));
            match v.and_then(|v| finite(v, k).map_err(|m| ("nonfinite", m))) {
                Ok(v) => data.push(v),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let result = result.and_then(|()| out.check_dim(end - start, row).map_err(|m| ("dims", m)));
        if let Err((problem, m)) = result {
            if let Some(data) = out.embeddings.as_mut() {
                data.truncate(first);
            }
            on_bad(j, problem, m)?;
            out.push_role_placeholder(Role::Embedding, base + j);
        }
    }
    Ok(())
}
