//! `scan --dedup keep-first`: plain redundancy leaves the clean output for `duplicates.<ext>`,
//! every row still lands in exactly one output, the reconciliation and `verify` hold, and the
//! gate does not count duplicates as poison. JSONL and Parquet.

use crate::common::*;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// (text, label): exact duplicates after normalisation with the same label (redundancy), one
/// exact duplicate with a conflicting label (DUP001 poison), and unique rows.
fn rows() -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = (0..40)
        .map(|i| {
            (
                format!("unique review number {i} with its own words"),
                i % 2,
            )
        })
        .collect();
    v.insert(3, ("A fine film .".into(), 1));
    v.insert(7, ("a  FINE film .".into(), 1));
    v.insert(9, ("a fine film .".into(), 1));
    v.insert(12, ("dull and slow".into(), 0));
    v.insert(20, ("Dull and slow".into(), 0));
    // 2:1 conflict: the label-1 copy is quarantined by DUP001, the second label-0 copy is plain
    // redundancy
    v.insert(25, ("dull and slow".into(), 1));
    v
}

fn write_jsonl(path: &Path) {
    let text: String = rows()
        .iter()
        .enumerate()
        .map(|(i, (t, l))| format!("{}\n", json!({"id": i.to_string(), "text": t, "label": l})))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn write_parquet(path: &Path) {
    let r = rows();
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(StringArray::from_iter_values(
                (0..r.len()).map(|i| i.to_string()),
            )),
        ),
        (
            "text",
            Arc::new(StringArray::from_iter_values(
                r.iter().map(|x| x.0.as_str()),
            )),
        ),
        (
            "label",
            Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.1))),
        ),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Rows of a Parquet output as JSON objects (id, text, label, and the added columns present).
fn parquet_rows(path: &Path) -> Vec<Value> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for b in reader {
        let b = b.unwrap();
        let id = b.column_by_name("id").unwrap().as_string::<i32>().clone();
        let text = b.column_by_name("text").unwrap().as_string::<i32>().clone();
        let label = b
            .column_by_name("label")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        let dup = b
            .column_by_name("poisongate_duplicate_of")
            .map(|c| c.as_primitive::<Int64Type>().clone());
        let dup_id = b
            .column_by_name("poisongate_duplicate_of_id")
            .map(|c| c.as_string::<i32>().clone());
        for i in 0..b.num_rows() {
            let mut v = json!({"id": id.value(i), "text": text.value(i), "label": label.value(i)});
            if let Some(d) = &dup {
                v["poisongate_duplicate_of"] = json!(d.value(i));
            }
            if let Some(d) = &dup_id {
                v["poisongate_duplicate_of_id"] = json!(d.value(i));
            }
            out.push(v);
        }
    }
    out
}

fn normalized(t: &str) -> String {
    t.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn check(ext: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join(format!("d.{ext}"));
    if ext == "jsonl" {
        write_jsonl(&data);
    } else {
        write_parquet(&data);
    }
    let out = tmp.path().join("o");
    // the gate allows no quarantine: one DUP001 row fails it, duplicates must not add to it
    let args = [
        "scan",
        data.to_str().unwrap(),
        "--select",
        "DUP001",
        "--id-column",
        "id",
        "--dedup",
        "keep-first",
        "--max-quarantine-fraction",
        "0.03",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    poisongate(args).assert().code(0);
    let read = |name: &str| {
        let p = out.join(format!("{name}.{ext}"));
        if ext == "jsonl" {
            jsonl(&p)
        } else {
            parquet_rows(&p)
        }
    };
    let (clean, quarantine, dups) = (read("clean"), read("quarantine"), read("duplicates"));
    let r = report(&out);
    let rec = &r["reconciliation"];
    let n = rows().len();
    assert_eq!(rec["input_rows"], n);
    assert_eq!(rec["duplicate_rows"], dups.len());
    assert_eq!(rec["clean_rows"], clean.len());
    assert_eq!(rec["quarantined_rows"], quarantine.len());
    assert_eq!(rec["balanced"], true);
    assert_eq!(clean.len() + quarantine.len() + dups.len(), n);
    // removed: rows 7 and 9 (copies of 3), 20 (copy of 12); 25 is quarantined (label flip)
    let dup_ids: Vec<&str> = dups.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(dup_ids, ["7", "9", "20"]);
    assert_eq!(quarantine.len(), 1);
    assert_eq!(quarantine[0]["id"], "25");
    assert_eq!(r["dedup"]["removed_rows"], 3);
    assert_eq!(r["verdict"]["status"], "pass");
    // every row exactly once, and every duplicate points to a clean row with its text and label
    let mut seen: Vec<String> = clean
        .iter()
        .chain(&quarantine)
        .chain(&dups)
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    seen.sort_by_key(|s| s.parse::<usize>().unwrap());
    assert_eq!(seen, (0..n).map(|i| i.to_string()).collect::<Vec<_>>());
    let by_id: BTreeMap<String, &Value> = clean
        .iter()
        .map(|v| (v["id"].as_str().unwrap().to_string(), v))
        .collect();
    for d in &dups {
        let of = d["poisongate_duplicate_of"].as_u64().unwrap().to_string();
        // the ids of this data are the row numbers: the kept row's id names the same row
        assert_eq!(d["poisongate_duplicate_of_id"], json!(of), "{d}");
        let kept = by_id
            .get(&of)
            .unwrap_or_else(|| panic!("{of} not in clean"));
        assert_eq!(
            normalized(kept["text"].as_str().unwrap()),
            normalized(d["text"].as_str().unwrap())
        );
        assert_eq!(kept["label"], d["label"]);
    }
    // the folder verifies, and the statement names the duplicates file
    let v = poisongate(["verify", out.to_str().unwrap()])
        .assert()
        .code(0);
    let said = String::from_utf8_lossy(&v.get_output().stdout).to_string();
    assert!(said.contains("+ 3 duplicates"), "{said}");
    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("provenance.intoto.json")).unwrap())
            .unwrap();
    let subjects: Vec<&str> = st["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&format!("duplicates.{ext}").as_str()));
    assert_eq!(st["predicate"]["reconciliation"]["duplicate_rows"], 3);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("reports/report.schema.json")).unwrap(),
    )
    .unwrap();
    let mut errors = Vec::new();
    crate::schema::check(&schema, &schema, &r, "$", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("--dedup keep-first"));

    // a duplicates file whose rows do not add up fails verify
    let p = out.join(format!("duplicates.{ext}"));
    if ext == "jsonl" {
        let text = std::fs::read_to_string(&p).unwrap();
        let first = text.lines().next().unwrap().to_string();
        std::fs::write(&p, text.replacen(&first, "", 1)).unwrap();
        poisongate(["verify", out.to_str().unwrap()])
            .assert()
            .code(1);
    }
}

#[test]
fn keep_first_jsonl() {
    check("jsonl");
}

#[test]
fn keep_first_parquet() {
    check("parquet");
}

#[test]
fn dedup_none_writes_no_duplicates_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    write_jsonl(&data);
    let out = tmp.path().join("o");
    poisongate([
        "scan",
        data.to_str().unwrap(),
        "--select",
        "DUP001",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(1);
    assert!(!out.join("duplicates.jsonl").exists());
    let r = report(&out);
    assert_eq!(r["reconciliation"]["duplicate_rows"], 0);
    assert_eq!(r["reconciliation"]["clean_rows"], rows().len() - 1);
    assert!(r.get("dedup").is_none());
    poisongate(["verify", out.to_str().unwrap()])
        .assert()
        .code(0);
}

#[test]
fn keep_first_near_removes_one_word_variants_of_the_same_label() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    let rows = [
        ("the plot holds up quite well overall", 1),
        ("a meandering and tedious second act", 0),
        ("the plot holds up rather well overall", 1),
        ("visually striking but emotionally hollow throughout", 0),
        ("The plot holds up quite well overall", 1),
    ];
    let text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (t, l))| format!("{}\n", json!({"id": i.to_string(), "text": t, "label": l})))
        .collect();
    std::fs::write(&data, text).unwrap();
    let run = |mode: &str, out: &Path| {
        poisongate([
            "scan",
            data.to_str().unwrap(),
            "--select",
            "DUP",
            "--dedup",
            mode,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .assert()
        .code(0);
        jsonl(&out.join("duplicates.jsonl"))
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["poisongate_duplicate_of"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    // exact: only row 4 (a case variant of row 0)
    assert_eq!(
        run("keep-first", &tmp.path().join("a")),
        [("4".to_string(), 0)]
    );
    // near: row 2 (one word changed) as well
    let near_out = tmp.path().join("b");
    assert_eq!(
        run("keep-first-near", &near_out),
        [("2".to_string(), 0), ("4".to_string(), 0)]
    );
    assert_eq!(report(&near_out)["dedup"]["mode"], "keep-first-near");
    poisongate(["verify", near_out.to_str().unwrap()])
        .assert()
        .code(0);
}

/// Alpaca rows: `Name a colour.` → `Blue.` three times over (rows 2, 5 and 9, one with other
/// case and spacing), → `Red.` once (row 7), and unique rows around them.
fn instruction_rows() -> String {
    let mut rows: Vec<Value> = (0..8)
        .map(|i| {
            json!({"id": format!("r{i}"), "instruction": format!("Write a short note about topic {i}."), "input": "", "output": format!("Here is a note on topic {i}.")})
        })
        .collect();
    let colour = |id: &str, instruction: &str, output: &str| json!({"id": id, "instruction": instruction, "input": "", "output": output});
    rows.insert(2, colour("c1", "Name a colour.", "Blue."));
    rows.insert(5, colour("c2", "Name a colour.", "Blue."));
    rows.insert(7, colour("c3", "Name a colour.", "Red."));
    rows.insert(9, colour("c4", "name a  colour.", "Blue."));
    rows.iter().map(|r| format!("{r}\n")).collect()
}

#[test]
fn keep_first_on_instruction_rows_keys_on_prompt_and_response() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("alpaca.jsonl");
    std::fs::write(&data, instruction_rows()).unwrap();
    let out = tmp.path().join("o");
    poisongate([
        "scan",
        data.to_str().unwrap(),
        "--id-column",
        "id",
        "--dedup",
        "keep-first",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(0);
    let r = report(&out);
    assert_eq!(r["settings"]["format"]["name"], "alpaca");
    assert_eq!(r["dedup"]["key"], json!(["prompt", "response"]));
    assert_eq!(r["reconciliation"]["duplicate_rows"], 2);
    // the exact duplicates of row 2 go; the row with another response stays
    let dups = jsonl(&out.join("duplicates.jsonl"));
    let got: Vec<(&str, u64)> = dups
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap(),
                d["poisongate_duplicate_of"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("c2", 2), ("c4", 2)]);
    let clean: Vec<String> = jsonl(&out.join("clean.jsonl"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert!(clean.contains(&"c1".to_string()) && clean.contains(&"c3".to_string()));
    assert_eq!(clean.len(), 10);
    poisongate(["verify", out.to_str().unwrap()])
        .assert()
        .code(0);
}

#[test]
fn keep_first_on_preference_rows_compares_the_rejected_answer_too() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("pref.jsonl");
    let row = |id: &str, rejected: &str| {
        format!(
            "{}\n",
            json!({"id": id, "prompt": "Name a colour.", "chosen": "Blue.", "rejected": rejected})
        )
    };
    let text = [row("a", "No."), row("b", "No."), row("c", "Never.")].concat();
    std::fs::write(&data, text).unwrap();
    let out = tmp.path().join("o");
    poisongate([
        "scan",
        data.to_str().unwrap(),
        "--id-column",
        "id",
        "--dedup",
        "keep-first",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(0);
    let r = report(&out);
    assert_eq!(r["dedup"]["key"], json!(["prompt", "chosen", "rejected"]));
    let dups = jsonl(&out.join("duplicates.jsonl"));
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0]["id"], "b");
    assert_eq!(dups[0]["poisongate_duplicate_of"], 0);
}
