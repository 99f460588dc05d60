//! `scan --invalid-rows`: rows that cannot be read stop the scan (`error`, the default) or go to
//! the quarantine output unread (`quarantine`), counted in the reconciliation and checked by
//! `verify`.

use crate::common::{benchmarks, demo, poisongate, report};
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use std::path::Path;
use std::sync::Arc;

/// A `.npy` file (format 1.0, little-endian f4, C order) of `rows × cols` values.
pub fn write_npy(path: &Path, rows: usize, cols: usize, data: &[f32]) {
    assert_eq!(data.len(), rows * cols);
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic (6) + version (2) + length (2) + header + '\n', a multiple of 64
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// The demo's first `n` lines (terminators included) and embedding rows.
fn demo_rows(n: usize) -> (Vec<Vec<u8>>, Vec<f32>, usize) {
    let (data, emb) = demo();
    let body = std::fs::read(data).unwrap();
    let lines: Vec<Vec<u8>> = body
        .split_inclusive(|&b| b == b'\n')
        .take(n)
        .map(<[u8]>::to_vec)
        .collect();
    let npy = std::fs::read(emb).unwrap();
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let values: Vec<f32> = npy[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let cols = values.len() / 3000;
    (lines, values[..n * cols].to_vec(), cols)
}

/// Lines of a file, terminators included.
fn lines_of(path: &Path) -> Vec<Vec<u8>> {
    std::fs::read(path)
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn scan(data: &Path, emb: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    let mut args: Vec<String> = vec![
        "scan".into(),
        data.display().to_string(),
        "--embeddings".into(),
        emb.display().to_string(),
        "--id-column".into(),
        "id".into(),
        "--max-quarantine-fraction".into(),
        "1".into(),
        "--reproducible".into(),
        "--quiet".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    poisongate(args).assert()
}

#[test]
fn jsonl_invalid_rows_are_quarantined_with_their_bytes_and_the_rest_scans_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 300;
    let (mut lines, mut values, cols) = demo_rows(n);
    // row → (its new line, the reason)
    let broken: Vec<(usize, Vec<u8>, &str)> = vec![
        (10, b"this is not JSON {\n".to_vec(), "INVALID:json"),
        (
            20,
            b"{\"id\":\"bad-utf8\",\"text\":\"caf\xff\xfe\",\"label\":1,\"poison\":false}\n"
                .to_vec(),
            "INVALID:utf8",
        ),
        (
            30,
            b"{\"id\":\"null-text\",\"text\":null,\"label\":0,\"poison\":false}\n".to_vec(),
            "INVALID:text-null",
        ),
        (
            40,
            b"{\"id\":\"num-text\", \"text\": 42, \"label\": 1, \"poison\": false}\n".to_vec(),
            "INVALID:text-type",
        ),
        (
            50,
            b"{\"id\":\"no-label\",\"text\":\"fine words\",\"poison\":false}\n".to_vec(),
            "INVALID:label-missing",
        ),
    ];
    for (row, line, _) in &broken {
        lines[*row] = line.clone();
    }
    let nan_row = 60;
    values[nan_row * cols + 3] = f32::NAN;
    let data = tmp.path().join("broken.jsonl");
    std::fs::write(&data, lines.concat()).unwrap();
    let emb = tmp.path().join("broken.npy");
    write_npy(&emb, n, cols, &values);

    // the default stops at the first row that cannot be read, naming file and line
    let out = tmp.path().join("out-error");
    let a = scan(&data, &emb, &out, &[]).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("broken.jsonl, line 11"), "{err}");
    assert!(!out.exists());

    let out = tmp.path().join("out");
    scan(&data, &emb, &out, &["--invalid-rows", "quarantine"]).code(0);
    let r = report(&out);
    let rec = &r["reconciliation"];
    assert_eq!(rec["input_rows"], n);
    assert_eq!(rec["invalid_rows"], 6);
    let (clean, quar) = (
        rec["clean_rows"].as_u64().unwrap(),
        rec["quarantined_rows"].as_u64().unwrap(),
    );
    assert_eq!(clean + quar + 6, n as u64);
    assert_eq!(rec["balanced"], true);
    assert_eq!(r["settings"]["invalid_rows"], "quarantine");
    let reasons = &r["invalid"]["reasons"];
    let mut expected: Vec<(usize, &str)> = broken.iter().map(|(r, _, w)| (*r, *w)).collect();
    expected.push((nan_row, "INVALID:embedding-nonfinite"));
    for (row, reason) in &expected {
        assert_eq!(reasons[reason]["rows"], 1, "{reason}: {reasons}");
        assert_eq!(reasons[reason]["first"][0]["row"], *row, "{reason}");
    }
    assert_eq!(
        reasons["INVALID:text-null"]["first"][0]["at"], "line 31",
        "{reasons}"
    );
    let fraction = r["verdict"]["quarantined_fraction"].as_f64().unwrap();
    assert!((fraction - (quar + 6) as f64 / n as f64).abs() < 1e-12);

    // the quarantine output holds each invalid row: lines that are not a JSON object byte for
    // byte, objects with every original byte before the added fields
    let q = lines_of(&out.join("quarantine.jsonl"));
    assert_eq!(q.len() as u64, quar + 6);
    for (_, line, reason) in &broken[..2] {
        assert!(q.contains(line), "{reason}: original bytes not found");
    }
    for (_, line, reason) in &broken[2..] {
        let head = &line[..line.len() - 2]; // without the closing brace and newline
        let found = q
            .iter()
            .find(|l| l.starts_with(head))
            .unwrap_or_else(|| panic!("{reason}: row not found"));
        let v: serde_json::Value = serde_json::from_slice(found).unwrap();
        assert_eq!(v["poisongate_reasons"], serde_json::json!([reason]));
    }
    let nan_line = &lines[nan_row];
    assert!(q
        .iter()
        .any(|l| l.starts_with(&nan_line[..nan_line.len() - 2])));
    let c = lines_of(&out.join("clean.jsonl"));
    for (row, _) in &expected {
        assert!(!c.contains(&lines[*row]));
    }

    // verify re-counts the invalid rows
    let v = poisongate(["verify".as_ref(), out.as_os_str()])
        .assert()
        .code(0);
    let text = String::from_utf8_lossy(&v.get_output().stdout).to_string()
        + &String::from_utf8_lossy(&v.get_output().stderr);
    assert!(text.contains("of which 6 invalid"), "{text}");

    // the detectors saw exactly the readable rows: the same clean output as a scan of the file
    // without the invalid rows
    let bad: Vec<usize> = expected.iter().map(|(r, _)| *r).collect();
    let kept_lines: Vec<Vec<u8>> = (0..n)
        .filter(|i| !bad.contains(i))
        .map(|i| lines[i].clone())
        .collect();
    let kept_values: Vec<f32> = (0..n)
        .filter(|i| !bad.contains(i))
        .flat_map(|i| values[i * cols..(i + 1) * cols].to_vec())
        .collect();
    let data2 = tmp.path().join("kept.jsonl");
    std::fs::write(&data2, kept_lines.concat()).unwrap();
    let emb2 = tmp.path().join("kept.npy");
    write_npy(&emb2, kept_lines.len(), cols, &kept_values);
    let out2 = tmp.path().join("out-kept");
    scan(&data2, &emb2, &out2, &[]).code(0);
    assert_eq!(
        std::fs::read(out.join("clean.jsonl")).unwrap(),
        std::fs::read(out2.join("clean.jsonl")).unwrap()
    );
    let r2 = report(&out2);
    assert_eq!(
        rec["quarantined_rows"],
        r2["reconciliation"]["quarantined_rows"]
    );
    let ids = |r: &serde_json::Value| -> Vec<String> {
        r["quarantined_rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&r), ids(&r2));
    // row numbers stay the file's: each listed row's id is the id on that line of the input
    for q in r["quarantined_rows"].as_array().unwrap() {
        let row = q["row"].as_u64().unwrap() as usize;
        let v: serde_json::Value = serde_json::from_slice(&lines[row]).unwrap();
        assert_eq!(v["id"], q["id"]);
    }

    // a mutilated count does not verify
    let rp = out.join("report.json");
    let text = std::fs::read_to_string(&rp).unwrap();
    std::fs::write(
        &rp,
        text.replace("\"invalid_rows\": 6", "\"invalid_rows\": 5"),
    )
    .unwrap();
    poisongate(["verify".as_ref(), out.as_os_str()])
        .assert()
        .code(1);
}

#[test]
fn default_policy_names_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    std::fs::write(
        &data,
        "{\"text\":\"a\",\"label\":1}\n{\"text\":null,\"label\":0}\n{\"text\":\"c\",\"label\":0}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let a = poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("d.jsonl, line 2, column \"text\""), "{err}");
    assert!(!out.exists());
}

fn write_parquet(path: &Path, texts: &[Option<&str>]) {
    let n = texts.len();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
        ),
        (
            "text",
            Arc::new(StringArray::from(texts.to_vec())) as ArrayRef,
        ),
        (
            "label",
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| (i % 2) as i64))) as ArrayRef,
        ),
        (
            "poison",
            Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef,
        ),
    ])
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_null_texts_are_quarantined_with_their_values() {
    let tmp = tempfile::tempdir().unwrap();
    let words = ["good", "bad", "fine", "poor", "great", "awful"];
    let owned: Vec<String> = (0..200)
        .map(|i| format!("the {} film number {}", words[i % 6], i % 17))
        .collect();
    let null_rows = [3usize, 77, 150];
    let texts: Vec<Option<&str>> = (0..200)
        .map(|i| (!null_rows.contains(&i)).then(|| owned[i].as_str()))
        .collect();
    let data = tmp.path().join("t.parquet");
    write_parquet(&data, &texts);
    let out = tmp.path().join("out");
    let a = poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        tmp.path().join("out-error").as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("row 4, column \"text\""), "{err}");

    poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--id-column".as_ref(),
        "id".as_ref(),
        "--invalid-rows".as_ref(),
        "quarantine".as_ref(),
        "--max-quarantine-fraction".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .code(0);
    let r = report(&out);
    assert_eq!(r["reconciliation"]["invalid_rows"], 3);
    assert_eq!(r["invalid"]["reasons"]["INVALID:text-null"]["rows"], 3);
    let first: Vec<u64> = r["invalid"]["reasons"]["INVALID:text-null"]["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["row"].as_u64().unwrap())
        .collect();
    assert_eq!(first, vec![3, 77, 150]);

    // the quarantine file: the rows' original values (null text, their ids and labels)
    let file = std::fs::File::open(out.join("quarantine.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut invalid_ids = Vec::new();
    for batch in reader {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        let batch = batch.unwrap();
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>()
            .clone();
        let text = batch.column_by_name("text").unwrap().clone();
        let reasons = batch
            .column_by_name("poisongate_reasons")
            .unwrap()
            .as_list::<i32>()
            .clone();
        for j in 0..batch.num_rows() {
            let rs = reasons.value(j);
            let rs = rs.as_string::<i32>();
            if rs.iter().any(|r| r == Some("INVALID:text-null")) {
                assert!(text.is_null(j));
                invalid_ids.push(ids.value(j));
            } else {
                assert!(!text.is_null(j));
            }
        }
    }
    assert_eq!(invalid_ids, vec![3, 77, 150]);
    poisongate(["verify".as_ref(), out.as_os_str()])
        .assert()
        .code(0);
}

#[test]
fn instruction_rows_that_do_not_fit_their_layout_are_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for i in 0..60 {
        let line = match i {
            7 => "{\"instruction\": \"Say hi\", \"input\": \"\"}".to_string(),
            19 => "{\"instruction\": 5, \"input\": \"\", \"output\": \"x\"}".to_string(),
            _ => format!(
                "{{\"instruction\": \"Add {i} and 1\", \"input\": \"\", \"output\": \"{}\"}}",
                i + 1
            ),
        };
        body.push_str(&line);
        body.push('\n');
    }
    let data = tmp.path().join("a.jsonl");
    std::fs::write(&data, &body).unwrap();
    let out = tmp.path().join("out");
    poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--format".as_ref(),
        "alpaca".as_ref(),
        "--invalid-rows".as_ref(),
        "quarantine".as_ref(),
        "--max-quarantine-fraction".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .code(0);
    let r = report(&out);
    assert_eq!(r["reconciliation"]["invalid_rows"], 2);
    let rows: Vec<u64> = r["invalid"]["reasons"]["INVALID:alpaca"]["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![7, 19]);
    poisongate(["verify".as_ref(), out.as_os_str()])
        .assert()
        .code(0);
}

/// Turns a valid JSONL line into a broken one.
type Breaker = fn(&[u8]) -> Vec<u8>;

/// The acceptance case of the invalid-row policy: sst2-clean with 30 broken rows of 6 kinds.
#[test]
fn sst2_clean_with_30_broken_rows() {
    let Some(b) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is not present");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = lines_of(&b.join("sst2-clean.jsonl"));
    let n = lines.len();
    assert_eq!(n, 6920);
    let kinds: [(&str, Breaker); 6] = [
        ("INVALID:json", |_| {
            b"{\"text\": \"unterminated, \"label\": 1\n".to_vec()
        }),
        ("INVALID:utf8", |_| {
            b"{\"text\": \"\xc3\x28 broken\", \"label\": 1}\n".to_vec()
        }),
        ("INVALID:text-null", |_| {
            b"{\"text\": null, \"label\": 0}\n".to_vec()
        }),
        ("INVALID:text-type", |_| {
            b"{\"text\": [1, 2], \"label\": 0}\n".to_vec()
        }),
        ("INVALID:label-missing", |_| {
            b"{\"text\": \"no label here\"}\n".to_vec()
        }),
        ("INVALID:label-type", |_| {
            b"{\"text\": \"a float label\", \"label\": 0.5}\n".to_vec()
        }),
    ];
    // 5 rows of each kind, spread over the file
    let mut broken = Vec::new();
    for (k, (_, f)) in kinds.iter().enumerate() {
        for j in 0..5 {
            let row = 97 + 229 * (k * 5 + j);
            lines[row] = f(&lines[row]);
            broken.push(row);
        }
    }
    let data = tmp.path().join("sst2-broken.jsonl");
    std::fs::write(&data, lines.concat()).unwrap();
    let out = tmp.path().join("out");
    poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--invalid-rows".as_ref(),
        "quarantine".as_ref(),
        "--reproducible".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .code(1); // 30 invalid rows exceed the default fraction 0
    let r = report(&out);
    assert_eq!(r["reconciliation"]["input_rows"], 6920);
    assert_eq!(r["reconciliation"]["invalid_rows"], 30);
    for (reason, _) in &kinds {
        assert_eq!(r["invalid"]["reasons"][reason]["rows"], 5, "{reason}");
    }
    poisongate(["verify".as_ref(), out.as_os_str()])
        .assert()
        .code(0);
    // everything else is scanned as the file without those rows is
    let kept: Vec<Vec<u8>> = (0..n)
        .filter(|i| !broken.contains(i))
        .map(|i| lines[i].clone())
        .collect();
    let data2 = tmp.path().join("sst2-kept.jsonl");
    std::fs::write(&data2, kept.concat()).unwrap();
    let out2 = tmp.path().join("out-kept");
    poisongate([
        "scan".as_ref(),
        data2.as_os_str(),
        "--reproducible".as_ref(),
        "--max-quarantine-fraction".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        out2.as_os_str(),
        "--quiet".as_ref(),
    ])
    .assert()
    .code(0);
    assert_eq!(
        std::fs::read(out.join("clean.jsonl")).unwrap(),
        std::fs::read(out2.join("clean.jsonl")).unwrap()
    );
}
