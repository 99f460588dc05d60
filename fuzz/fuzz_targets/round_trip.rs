//! Any valid generated dataset → `scan --out` → `verify` passes and the reconciliation is
//! exact: every row lands in exactly one output, with its bytes unchanged.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use poisongate::pipeline::{scan, Dedup, ScanOptions};
use std::io::Write;

#[derive(Arbitrary, Debug)]
struct Row {
    text: String,
    label: u8,
    id_kind: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    rows: Vec<Row>,
    dedup: u8,
    seed: u8,
    /// Extra blank lines and a missing final newline.
    blank_after: Option<u8>,
    no_final_newline: bool,
}

fuzz_target!(|inp: Input| {
    if inp.rows.is_empty() || inp.rows.len() > 64 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    let mut bytes = Vec::new();
    for (i, r) in inp.rows.iter().enumerate() {
        let id = match r.id_kind % 3 {
            0 => serde_json::json!(format!("r{i}")),
            1 => serde_json::json!(i),
            _ => serde_json::json!(format!("{}\u{1b}[31m{i}", r.text.chars().take(3).collect::<String>())),
        };
        let label = if r.label % 2 == 0 {
            serde_json::json!(r.label % 3)
        } else {
            serde_json::json!(format!("c{}", r.label % 3))
        };
        let mut row = serde_json::Map::new();
        row.insert("id".into(), id);
        row.insert("text".into(), serde_json::json!(r.text));
        row.insert("label".into(), label);
        bytes.extend_from_slice(serde_json::to_string(&row).unwrap().as_bytes());
        bytes.push(b'\n');
        if inp.blank_after == Some(i as u8) {
            bytes.extend_from_slice(b"  \n\n");
        }
    }
    if inp.no_final_newline {
        bytes.pop();
    }
    std::fs::File::create(&data)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let out = dir.path().join("out");
    let mut o = ScanOptions::new(&data);
    o.id_column = Some("id".into());
    o.out = Some(out.clone());
    o.seed = u64::from(inp.seed);
    o.reproducible = true;
    o.dedup = match inp.dedup % 3 {
        0 => Dedup::None,
        1 => Dedup::KeepFirst,
        _ => Dedup::KeepFirstNear,
    };
    // mixed label types or duplicate ids are clean errors, not findings
    let outcome = match scan(&o) {
        Ok(outcome) => outcome,
        Err(_) => return,
    };
    let rec = &outcome.report.reconciliation;
    assert!(rec.balanced);
    assert_eq!(rec.input_rows, inp.rows.len());
    assert_eq!(
        rec.input_rows,
        rec.clean_rows + rec.quarantined_rows + rec.duplicate_rows
    );
    let summary = poisongate::verify::verify(&out).expect("verify of a fresh scan");
    assert_eq!(summary.input_rows, rec.input_rows);
    assert_eq!(summary.clean_rows, rec.clean_rows);
    assert_eq!(summary.quarantined_rows, rec.quarantined_rows);
    assert_eq!(summary.duplicate_rows, rec.duplicate_rows);
});
