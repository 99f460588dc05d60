//! Data-derived text on the terminal: ANSI escape sequences, control characters and newlines
//! in ids, keys and labels are shown escaped, never raw, on stdout and stderr.

use crate::common::*;

const ESC: char = '\u{1b}';

fn assert_no_raw_controls(what: &str, s: &str) {
    assert!(
        !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{what} holds raw control characters: {s:?}"
    );
}

#[test]
fn error_messages_escape_keys_from_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("keys.jsonl");
    // the row has no "text" key, so the error lists the keys it does have
    std::fs::write(
        &data,
        "{\"te\\u001b[31mxt\\nverdict: PASS\": \"a\", \"label\": 0}\n",
    )
    .unwrap();
    let out = poisongate(["scan", data.to_str().unwrap()])
        .assert()
        .code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_no_raw_controls("stderr", &stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("te\\x1b[31mxt\\nverdict: PASS"), "{stderr}");
    assert!(stderr.contains("keys.jsonl, line 1"), "{stderr}");
}

#[test]
fn scan_output_and_report_on_stdout_never_carry_raw_escapes() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, emb) = demo();
    // the demo with every id and text carrying an escape sequence and a newline
    let mut rows = String::new();
    for mut v in jsonl(&data) {
        let id = format!("{ESC}[31m{}\nOK", v["id"].as_str().unwrap());
        let text = format!("{} {ESC}]0;title{}", v["text"].as_str().unwrap(), '\u{7}');
        v["id"] = id.into();
        v["text"] = text.into();
        rows += &serde_json::to_string(&v).unwrap();
        rows.push('\n');
    }
    let hostile = tmp.path().join("reviews.jsonl");
    std::fs::write(&hostile, rows).unwrap();
    let out_dir = tmp.path().join("out");
    let args = [
        "scan",
        hostile.to_str().unwrap(),
        "--embeddings",
        emb.to_str().unwrap(),
        "--id-column",
        "id",
        "--ground-truth-column",
        "poison",
        "--reproducible",
        "--json",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let out = poisongate(args).assert().code(1);
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_no_raw_controls("stdout", &stdout);
    assert_no_raw_controls("stderr", &stderr);
    assert!(stderr.contains("verdict: FAIL"), "{stderr}");
    // the report keeps the data exactly; only its rendering is escaped
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(report.to_string().contains("\\u001b[31m"));
    let flagged = report["quarantined_rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect::<Vec<_>>();
    assert!(
        flagged
            .iter()
            .any(|id| id.starts_with(ESC) && id.ends_with("\nOK")),
        "{flagged:?}"
    );
    // verify's summary and a verify failure quoting a tampered field
    let ok = poisongate(["verify", out_dir.to_str().unwrap()])
        .assert()
        .code(0);
    assert_no_raw_controls("verify", &String::from_utf8_lossy(&ok.get_output().stdout));
    let st_path = out_dir.join("provenance.intoto.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&st_path).unwrap()).unwrap();
    st["_type"] = format!("x{ESC}[2J\nOK: all files match").into();
    std::fs::write(&st_path, serde_json::to_string(&st).unwrap()).unwrap();
    let bad = poisongate(["verify", out_dir.to_str().unwrap()]).assert();
    let code = bad.get_output().status.code();
    assert!(matches!(code, Some(1 | 2)), "{code:?}");
    let stderr = String::from_utf8(bad.get_output().stderr.clone()).unwrap();
    assert_no_raw_controls("verify stderr", &stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("x\\x1b[2J\\nOK: all files match"),
        "{stderr}"
    );
}

#[test]
fn explain_of_an_unknown_code_escapes_it() {
    let out = poisongate(["explain", "X\u{1b}[31m\u{7}"]).assert().code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert_no_raw_controls("stderr", &stderr);
    assert!(stderr.contains("X\\x1b[31m\\x07"), "{stderr}");
}
