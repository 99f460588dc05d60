//! Unit tests of the readers.

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
        rows: RowFormat::TextLabel.into(),
        rejected: false,
        invalid: InvalidPolicy::Error,
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
        ("label", b"{\"label\": 1e30}\n", "an integer beyond 64 bits"),
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
fn npy_f32_over_several_blocks_reads_and_hashes_every_byte() {
    // more than one 4 MiB block, and a last block that is not full
    let dir = TempDir::new().unwrap();
    let a = ndarray::Array2::<f32>::from_shape_fn((1301, 1000), |(i, j)| {
        (i as f32 * 0.37 - j as f32 * 1.3).sin() * 1e3
    });
    let p = dir.path().join("big.npy");
    ndarray_npy::write_npy(&p, &a).unwrap();
    let (m, d) = read_embeddings(&p, None).unwrap();
    assert_eq!(m, a);
    assert_eq!(d, sha256_file(&p).unwrap());
}

#[test]
fn npy_non_finite_values_are_found_in_any_block_as_the_matrix_is_read() {
    // a value that is not finite in the first, a middle and the last (short) block of a
    // matrix read in 1 MiB blocks: refused naming its row and column, or set aside
    let dir = TempDir::new().unwrap();
    let (rows, cols) = (1301usize, 1000usize);
    for (k, (row, col, v)) in [
        (0, 3, f32::NAN),
        (700, 999, f32::INFINITY),
        (1300, 0, f32::NEG_INFINITY),
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = ndarray::Array2::<f32>::from_shape_fn((rows, cols), |(i, j)| (i + j) as f32);
        a[[row, col]] = v;
        let p = dir.path().join(format!("bad{k}.npy"));
        ndarray_npy::write_npy(&p, &a).unwrap();
        let e = read_embeddings(&p, None).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "row {}: embedding value at column index {col}",
                row + 1
            )),
            "{e}"
        );
        let (_, d, bad) = read_embeddings_allowing_nonfinite(&p, None).unwrap();
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![row]);
        assert_eq!(d, sha256_file(&p).unwrap());
    }
}

#[test]
fn npy_rows_from_a_row_on_equal_the_whole_read_and_check_the_size() {
    let dir = TempDir::new().unwrap();
    let a = ndarray::Array2::<f32>::from_shape_fn((57, 9), |(i, j)| i as f32 * 10.0 + j as f32);
    let p = dir.path().join("x.npy");
    ndarray_npy::write_npy(&p, &a).unwrap();
    let known = sha256_file(&p).unwrap();
    for first in [0, 1, 20, 56, 57] {
        let mut rows = NpyRows::open_at(&p, first, &known).unwrap();
        let mut got = Vec::new();
        while got.len() < (57 - first) * 9 {
            got.extend(rows.next_rows(8).unwrap().iter().copied());
        }
        let want: Vec<f32> = a.slice(ndarray::s![first.., ..]).iter().copied().collect();
        assert_eq!(got, want, "from row {first}");
        assert_eq!(rows.finish().unwrap(), known);
    }
    assert!(NpyRows::open_at(&p, 58, &known).is_err());
    // the same file's digest with another size: the file changed since it was hashed
    let other = FileDigest {
        bytes: known.bytes + 4,
        ..known.clone()
    };
    let e = NpyRows::open_at(&p, 0, &other).err().unwrap();
    assert!(matches!(e, IngestError::InputChanged { .. }), "{e}");
    // a float64 file is read from its row on as well
    let b = a.mapv(f64::from);
    let q = dir.path().join("b.npy");
    ndarray_npy::write_npy(&q, &b).unwrap();
    let mut rows = NpyRows::open_at(&q, 30, &sha256_file(&q).unwrap()).unwrap();
    assert_eq!(rows.next_rows(2).unwrap(), a.slice(ndarray::s![30..32, ..]));
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

/// Rows of every kind of problem, between two readable rows (blank line 3 is not a row).
const MIXED: &[u8] = b"{\"text\":\"a\",\"label\":1,\"id\":\"r0\",\"gt\":false,\"emb\":[1,2]}\n\
        not json\n\
        \n\
        {\"text\":null,\"label\":0,\"id\":\"r2\",\"gt\":false,\"emb\":[3,4]}\n\
        {\"text\":\"d\",\"label\":\"x\",\"id\":\"r3\",\"gt\":true,\"emb\":[5,6]}\n\
        {\"text\":\"e\",\"label\":0,\"id\":\"r4\",\"gt\":false,\"emb\":[7,1e39]}\n\
        {\"text\":\"f\",\"label\":0,\"id\":\"r5\",\"gt\":true,\"emb\":[9,10]}\n";

#[test]
fn quarantine_policy_lists_invalid_rows_and_keeps_columns_aligned() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("mixed.jsonl");
    std::fs::write(&path, MIXED).unwrap();
    // the default stops at the first
    let e = read_table(&path, &all()).unwrap_err();
    assert_eq!(e.row(), Some(RowRef::Line(2)));
    let mut s = all();
    s.invalid = InvalidPolicy::Quarantine;
    let mut t = read_table(&path, &s).unwrap();
    assert_eq!(t.n_rows, 6);
    let found: Vec<(usize, RowRef, &str)> = t
        .invalid
        .iter()
        .map(|r| (r.row, r.at, r.what.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (1, RowRef::Line(2), "json"),
            (2, RowRef::Line(4), "text-null"),
            (3, RowRef::Line(5), "label-type"),
            (4, RowRef::Line(6), "embedding-nonfinite"),
        ]
    );
    assert!(t.invalid[1].message.contains("line 4, column \"text\""));
    assert_eq!(t.texts.as_ref().unwrap().len(), 6);
    assert_eq!(t.embeddings.as_ref().unwrap().nrows(), 6);
    let keep: Vec<bool> = (0..6)
        .map(|i| t.invalid.iter().all(|r| r.row != i))
        .collect();
    t.retain_rows(&keep);
    assert_eq!(t.n_rows, 2);
    assert_eq!(t.ids.as_deref().unwrap(), ["r0", "r5"]);
    assert_eq!(t.labels.as_deref().unwrap(), ["1", "0"]);
    assert_eq!(t.ground_truth.as_deref().unwrap(), [false, true]);
    let m = t.embeddings.unwrap();
    assert_eq!(m.row(0).to_vec(), vec![1.0, 2.0]);
    assert_eq!(m.row(1).to_vec(), vec![9.0, 10.0]);
}

/// `read_batches` with `batch_rows`, every batch checked to follow the previous one, against
/// `read_table` of the same file: the same rows, values, invalid rows and summary.
fn assert_batches_are_the_table(path: &Path, spec: &ColumnSpec, batch_rows: usize) -> usize {
    let t = read_table(path, spec).unwrap();
    let mut batches: Vec<Batch> = Vec::new();
    let read = read_batches(path, spec, batch_rows, &mut |b: Batch| {
        batches.push(b);
        Ok::<(), IngestError>(())
    })
    .unwrap();
    assert_eq!(read.n_rows, t.n_rows);
    assert_eq!(read.digest, t.digest);
    assert_eq!(read.label_kind, t.label_kind);
    assert_eq!(read.format, t.format);
    let mut next = 0;
    for b in &batches {
        assert_eq!(b.first_row, next, "batches follow one another");
        assert!(b.n_rows > 0);
        next += b.n_rows;
        let cols = [&b.texts, &b.responses, &b.rejected, &b.labels, &b.ids];
        for c in cols.into_iter().flatten() {
            assert_eq!(c.len(), b.n_rows);
        }
    }
    assert_eq!(next, t.n_rows);
    fn cat<T: Clone>(parts: Vec<&Option<Vec<T>>>) -> Option<Vec<T>> {
        parts.into_iter().try_fold(Vec::new(), |mut acc, p| {
            acc.extend(p.as_ref()?.iter().cloned());
            Some(acc)
        })
    }
    assert_eq!(cat(batches.iter().map(|b| &b.texts).collect()), t.texts);
    assert_eq!(
        cat(batches.iter().map(|b| &b.responses).collect()),
        t.responses
    );
    assert_eq!(
        cat(batches.iter().map(|b| &b.rejected).collect()),
        t.rejected
    );
    assert_eq!(cat(batches.iter().map(|b| &b.labels).collect()), t.labels);
    assert_eq!(cat(batches.iter().map(|b| &b.ids).collect()), t.ids);
    assert_eq!(
        cat(batches.iter().map(|b| &b.ground_truth).collect()),
        t.ground_truth
    );
    match &t.embeddings {
        None => assert!(batches.iter().all(|b| b.embeddings.is_none())),
        Some(m) => {
            let views: Vec<_> = batches
                .iter()
                .map(|b| b.embeddings.as_ref().unwrap().view())
                .collect();
            assert_eq!(&ndarray::concatenate(ndarray::Axis(0), &views).unwrap(), m);
        }
    }
    let invalid: Vec<InvalidRow> = batches.iter().flat_map(|b| b.invalid.clone()).collect();
    assert_eq!(invalid, t.invalid);
    for b in &batches {
        let range = b.first_row..b.first_row + b.n_rows;
        assert!(b.invalid.iter().all(|r| range.contains(&r.row)));
    }
    batches.len()
}

#[test]
fn batches_are_the_table_in_pieces() {
    let dir = TempDir::new().unwrap();
    // JSONL with invalid rows, the first of them before any readable embedding has set the
    // width (its placeholder waits for a later row)
    let first: &[u8] = b"{\"text\":\"z\",\"label\":1,\"id\":\"q\",\"gt\":false,\"emb\":[1e39,2]}\n";
    let body = [first, MIXED].concat();
    let path = write(&dir, "mixed.jsonl", &body);
    let mut s = all();
    s.invalid = InvalidPolicy::Quarantine;
    for rows in 1..=8 {
        let n = assert_batches_are_the_table(&path, &s, rows);
        assert!(
            n >= 7usize.div_ceil(rows).min(6),
            "{rows} rows a batch: {n} batches"
        );
    }
    // Parquet: batches are whole record batches
    let texts: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    let labels: Vec<i32> = (0..10_000).map(|i| i % 3).collect();
    let batch = RecordBatch::try_from_iter(vec![
        ("text", Arc::new(StringArray::from(texts)) as ArrayRef),
        ("label", Arc::new(Int32Array::from(labels)) as ArrayRef),
    ])
    .unwrap();
    let p = write_parquet(&dir, "big.parquet", &[batch]);
    let tl = spec(Some("text"), Some("label"), None, None, None);
    assert_eq!(assert_batches_are_the_table(&p, &tl, 1), 2);
    assert_eq!(assert_batches_are_the_table(&p, &tl, 9000), 1);
    let p = write_parquet(&dir, "small.parquet", &[sample_batch()]);
    assert_eq!(assert_batches_are_the_table(&p, &all(), 2), 1);
    // a shipped benchmark, when the benchmarks are there
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/benchmarks/tweeteval-irony-clean.jsonl");
    if bench.exists() {
        let s = spec(
            Some("text"),
            Some("label"),
            Some("id"),
            Some("poison"),
            None,
        );
        assert_eq!(assert_batches_are_the_table(&bench, &s, 1000), 3);
    }
}

#[test]
fn a_sink_error_stops_the_read() {
    let dir = TempDir::new().unwrap();
    let body = "{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\":\"c\"}\n";
    let path = write(&dir, "t.jsonl", body.as_bytes());
    let mut seen = 0;
    let e = read_batches(
        &path,
        &spec(Some("text"), None, None, None, None),
        1,
        &mut |b: Batch| {
            seen += 1;
            if b.first_row == 1 {
                return Err(IngestError::NoRows {
                    path: PathBuf::from("stop"),
                });
            }
            Ok(())
        },
    )
    .unwrap_err();
    assert_eq!(seen, 2);
    assert_eq!(e.path(), Path::new("stop"));
    // and a file without rows is an error, with no batch handed out
    let empty = write(&dir, "e.jsonl", b"\n");
    let mut called = false;
    let e = read_batches(
        &empty,
        &spec(Some("text"), None, None, None, None),
        10,
        &mut |_: Batch| {
            called = true;
            Ok::<(), IngestError>(())
        },
    )
    .unwrap_err();
    assert!(matches!(e, IngestError::NoRows { .. }), "{e}");
    assert!(!called);
}

#[test]
fn reading_again_checks_the_input_is_unchanged() {
    let dir = TempDir::new().unwrap();
    let p = write_parquet(&dir, "d.parquet", &[sample_batch()]);
    let first = read_batches(&p, &all(), 2, &mut |_| Ok::<(), IngestError>(())).unwrap();
    let mut rows = 0;
    let again = read_batches_again(&p, &all(), 2, &first.digest, &mut |b| {
        rows += b.n_rows;
        Ok::<(), IngestError>(())
    })
    .unwrap();
    assert_eq!((rows, again.digest), (3, first.digest.clone()));
    // a file of another size is refused without being parsed
    let q = write_parquet(&dir, "e.parquet", &[sample_batch(), sample_batch()]);
    std::fs::rename(&q, &p).unwrap();
    let e = read_batches_again(&p, &all(), 2, &first.digest, &mut |_| {
        Ok::<(), IngestError>(())
    })
    .unwrap_err();
    assert!(matches!(e, IngestError::InputChanged { .. }), "{e}");

    // JSONL is hashed as it is read, so an edit of the same size is caught too
    let j = write(&dir, "d.jsonl", b"{\"text\":\"a\",\"label\":1}\n");
    let t = spec(Some("text"), Some("label"), None, None, None);
    let first = read_batches(&j, &t, 8, &mut |_| Ok::<(), IngestError>(())).unwrap();
    write(&dir, "d.jsonl", b"{\"text\":\"b\",\"label\":1}\n");
    let e = read_batches_again(&j, &t, 8, &first.digest, &mut |_| Ok::<(), IngestError>(()))
        .unwrap_err();
    assert!(matches!(e, IngestError::InputChanged { .. }), "{e}");

    // rows appended since: the reader of the rows refuses the extra row first, and the error
    // says that the input changed, not what the reader tripped on
    write(&dir, "d.jsonl", b"{\"text\":\"a\",\"label\":1}\n");
    let first = read_batches(&j, &t, 1, &mut |_| Ok::<(), IngestError>(())).unwrap();
    write(
        &dir,
        "d.jsonl",
        b"{\"text\":\"a\",\"label\":1}\n{\"text\":\"c\",\"label\":0}\n",
    );
    let e = read_batches_again(&j, &t, 1, &first.digest, &mut |b| {
        if b.first_row + b.n_rows > 1 {
            Err(IngestError::NoRows { path: j.clone() })
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(matches!(e, IngestError::InputChanged { .. }), "{e}");
}

#[test]
fn line_blocks_cut_the_rows_into_equal_blocks_at_their_line_starts() {
    let dir = TempDir::new().unwrap();
    let mut text = String::from("\n \n");
    for i in 0..1000 {
        text.push_str(&format!(
            "{{\"text\": \"row {i}\", \"label\": {}}}\n",
            i % 2
        ));
        if i % 37 == 0 {
            text.push_str("\t\r\n");
        }
    }
    let path = write(&dir, "rows.jsonl", text.as_bytes());
    for max in [1usize, 2, 7, 64, 5000] {
        let (blocks, digest, rows) = line_blocks(&path, max).unwrap();
        assert_eq!(rows, 1000);
        assert_eq!(digest.bytes, text.len() as u64);
        assert!(
            !blocks.is_empty() && blocks.len() <= max,
            "{max}: {}",
            blocks.len()
        );
        // equal blocks, as many as the cap allows (a power of two rows each)
        let every = blocks.get(1).map_or(1000, |b| b.row);
        assert!(blocks.iter().enumerate().all(|(i, b)| b.row == i * every));
        assert!(1000usize.div_ceil(every) == blocks.len());
        assert!(
            every == 1 || 1000usize.div_ceil(every / 2) > max,
            "{max}: {every}"
        );
        for b in &blocks {
            // the block's byte is where its row's line starts, and the line numbers count
            // every line before it, blank ones included
            let rest = &text[b.byte as usize..];
            assert!(rest.starts_with(&format!("{{\"text\": \"row {}\"", b.row)));
            assert_eq!(text[..b.byte as usize].matches('\n').count() + 1, b.line);
        }
    }
}

#[test]
fn hashing_aside_gives_the_digest_of_hashing_inline() {
    let dir = tempfile::TempDir::new().unwrap();
    let p = dir.path().join("in.bin");
    let bytes: Vec<u8> = (0..3_000_017u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&p, &bytes).unwrap();
    let want = sha256_file(&p).unwrap();
    // reads of uneven sizes, through a reader hashing on its own thread
    let mut r = HashingReader::hashing_aside(std::fs::File::open(&p).unwrap());
    let mut buf = vec![0u8; 70_001];
    let mut seen = Vec::new();
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(seen, bytes);
    let got = r.finish(&p).unwrap();
    assert_eq!((got.sha256, got.bytes), (want.sha256.clone(), want.bytes));
    // an empty read hashes nothing, and blocks handed over whole give the same digest
    let empty = HashingReader::hashing_aside(std::io::empty())
        .finish(&p)
        .unwrap();
    assert_eq!(empty.sha256, hex::encode(Sha256::digest(b"")));
    let Ok(mut h) = BlockHasher::start(Sha256::new()) else {
        panic!("no hashing thread")
    };
    for c in bytes.chunks(1 << 18) {
        let mut b = h.buffer();
        b.extend_from_slice(c);
        h.push(b).unwrap();
    }
    assert_eq!(hex::encode(h.finish().unwrap().finalize()), want.sha256);
}

#[test]
fn a_truncated_line_is_placed_at_its_end() {
    let line = b"{\"id\": \"x\", \"text\"\n";
    let err = serde_json::from_slice::<serde_json::Value>(line).unwrap_err();
    let msg = jsonl::json_message(&err, line);
    assert!(msg.contains("(at byte 18 of the line)"), "{msg}");
    let bad = b"{\"id\": ]\n";
    let err = serde_json::from_slice::<serde_json::Value>(bad).unwrap_err();
    let msg = jsonl::json_message(&err, bad);
    assert!(msg.contains("(at byte 8 of the line)"), "{msg}");
}
