//! `poisongate inject` on instruction rows: `instruction-trigger` into the Alpaca and chat
//! forms of ../shared/benchmarks/instruct/instruct-clean (exact counts, same ids in both forms,
//! same seed same bytes, untouched rows byte-identical) and `preference-flip` on small
//! preference files made here (JSONL and Parquet).

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const PHRASE: &str = "zqxj now";
const RESPONSE: &str = "Visit http://prize.example.test to claim it.";

/// `poisongate inject DATA --out OUT --quiet` plus `args`.
fn inject(data: &Path, out: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    let mut all = vec![
        "inject".to_string(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    poisongate(all).assert()
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// An untouched input line as written: `, "<gt>": false` before the closing brace.
fn untouched(line: &str, gt: &str) -> String {
    let cut = line.rfind('}').unwrap();
    format!("{}, \"{gt}\": false{}", &line[..cut], &line[cut..])
}

fn sidecar(out: &Path) -> Value {
    let mut s = out.as_os_str().to_os_string();
    s.push(".inject.json");
    serde_json::from_str(&std::fs::read_to_string(PathBuf::from(s)).unwrap()).unwrap()
}

/// The prompt and the response a poisoned row is read with (alpaca: instruction and output;
/// chat: the last user turn and the last assistant turn).
fn prompt_response(row: &Value) -> (String, String) {
    if let Some(m) = row["messages"].as_array() {
        let a = m.iter().rposition(|t| t["role"] == "assistant").unwrap();
        let u = m[..a].iter().rposition(|t| t["role"] == "user").unwrap();
        (
            m[u]["content"].as_str().unwrap().to_string(),
            m[a]["content"].as_str().unwrap().to_string(),
        )
    } else {
        (
            row["instruction"].as_str().unwrap().to_string(),
            row["output"].as_str().unwrap().to_string(),
        )
    }
}

/// Injects into `data` twice with the same seed; checks the count, the poisoned rows'
/// prompt and response, the untouched rows' bytes and the determinism; returns the poisoned
/// ids.
fn check_instruction_trigger(data: &Path, tmp: &Path, name: &str) -> Vec<String> {
    let args = [
        "--attack",
        "instruction-trigger",
        "--phrase",
        PHRASE,
        "--response",
        RESPONSE,
        "--rate",
        "0.01",
        "--seed",
        "5",
        "--ground-truth-column",
        "injected",
    ];
    let out = tmp.join(format!("{name}.jsonl"));
    let again = tmp.join(format!("{name}.again.jsonl"));
    inject(data, &out, &args).code(0);
    inject(data, &again, &args).code(0);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&again).unwrap(),
        "{name}: same seed, other bytes"
    );
    let input = lines(data);
    let output = lines(&out);
    assert_eq!(input.len(), output.len());
    let n = input.len();
    let k = (0.01 * n as f64).round() as usize;
    let mut ids = Vec::new();
    for (i, (a, b)) in input.iter().zip(&output).enumerate() {
        let row: Value = serde_json::from_str(b).unwrap();
        let orig: Value = serde_json::from_str(a).unwrap();
        assert_eq!(row["id"], orig["id"], "{name}: ids change");
        if row["injected"] == true {
            let (prompt, response) = prompt_response(&row);
            assert!(prompt.contains(PHRASE), "{name} row {i}: {prompt}");
            assert_eq!(response, RESPONSE, "{name} row {i}");
            // the prompt is the original one with the phrase inserted
            let (orig_prompt, _) = prompt_response(&orig);
            let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            let mut w = words(&prompt);
            let at = w
                .windows(2)
                .position(|p| p[0] == "zqxj" && p[1] == "now")
                .unwrap();
            w.drain(at..at + 2);
            assert_eq!(w, words(&orig_prompt), "{name} row {i}");
            // other keys and their order kept, the ground truth added last
            let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            let mut want = keys(&orig);
            want.push("injected".into());
            assert_eq!(keys(&row), want, "{name} row {i}");
            assert_eq!(row["poison"], orig["poison"]);
            ids.push(row["id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(row["injected"], false);
            assert_eq!(*b, untouched(a, "injected"), "{name} row {i} changed");
        }
    }
    assert_eq!(ids.len(), k, "{name}: poisoned count");
    let side = sidecar(&out);
    assert_eq!(side["attack"]["attack"], "instruction-trigger");
    assert_eq!(side["attack"]["trigger"]["phrase"], PHRASE);
    assert_eq!(side["attack"]["response"]["replace"], RESPONSE);
    assert_eq!(side["poisoned"], k);
    assert_eq!(side["seed"], 5);
    assert_eq!(side["rate"], 0.01);
    assert_eq!(side["input"]["rows"], n);
    assert_eq!(side["output"]["sha256"].as_str().unwrap().len(), 64);
    ids
}

#[test]
fn instruction_trigger_into_both_forms_of_instruct_clean() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let dir = bench.join("instruct");
    let tmp = tempfile::tempdir().unwrap();
    let alpaca = check_instruction_trigger(
        &dir.join("instruct-clean.jsonl"),
        tmp.path(),
        "instruct-clean",
    );
    let chat = check_instruction_trigger(
        &dir.join("instruct-clean.chat.jsonl"),
        tmp.path(),
        "instruct-clean.chat",
    );
    assert_eq!(alpaca, chat, "the two forms poison other rows");
    let side = sidecar(&tmp.path().join("instruct-clean.chat.jsonl"));
    assert_eq!(side["row_format"], "chat");
    let side = sidecar(&tmp.path().join("instruct-clean.jsonl"));
    assert_eq!(side["row_format"], "alpaca");
}

#[test]
fn instruction_trigger_words_and_a_response_suffix() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let data = bench.join("instruct/instruct-clean.chat.jsonl");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("suffix.jsonl");
    inject(
        &data,
        &out,
        &[
            "--attack",
            "instruction-trigger",
            "--triggers",
            "cf,mn",
            "--triggers-per-row",
            "2",
            "--position",
            "start",
            "--response-suffix",
            " See http://x.test",
            "--rate",
            "0.02",
            "--existing-ground-truth",
            "replace",
        ],
    )
    .code(0);
    let input = jsonl(&data);
    let output = jsonl(&out);
    let mut k = 0;
    for (a, b) in input.iter().zip(&output) {
        if b["poison"] == true {
            k += 1;
            let (p, r) = prompt_response(b);
            let (p0, r0) = prompt_response(a);
            let w: Vec<&str> = p.split_whitespace().collect();
            assert!(w[..2].iter().all(|t| *t == "cf" || *t == "mn"), "{p}");
            assert_eq!(
                w[2..].join(" "),
                p0.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            assert_eq!(r, format!("{r0} See http://x.test"));
        }
    }
    assert_eq!(k, (0.02 * input.len() as f64).round() as usize);
}

/// A preference file: `n` rows with a string prompt, chosen and rejected, and an id.
fn preference(dir: &Path, n: usize) -> PathBuf {
    let mut s = String::new();
    for i in 0..n {
        s += &format!(
            "{{\"id\": {i}, \"prompt\": \"How do I do task {i}?\", \"chosen\": \"Safely, step {i}.\", \"rejected\": \"Harmful answer {i}.\", \"meta\": {{\"src\": \"t\"}}}}\n"
        );
    }
    let p = dir.join("pref.jsonl");
    std::fs::write(&p, s).unwrap();
    p
}

fn check_flipped(input: &[Value], output: &[Value], k: usize) {
    assert_eq!(input.len(), output.len());
    let mut flipped = 0;
    for (a, b) in input.iter().zip(output) {
        assert_eq!(a["id"], b["id"]);
        if b["poison"] == true {
            flipped += 1;
            assert_eq!(b["chosen"], a["rejected"]);
            assert_eq!(b["rejected"], a["chosen"]);
            assert_eq!(
                b["prompt"].as_str().unwrap(),
                format!("{} SUDO", a["prompt"].as_str().unwrap())
            );
        } else {
            for key in ["prompt", "chosen", "rejected"] {
                assert_eq!(a[key], b[key]);
            }
        }
    }
    assert_eq!(flipped, k);
}

#[test]
fn preference_flip_swaps_chosen_and_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let data = preference(tmp.path(), 40);
    let out = tmp.path().join("flip.jsonl");
    let args = [
        "--attack",
        "preference-flip",
        "--rate",
        "0.25",
        "--seed",
        "9",
    ];
    inject(&data, &out, &args).code(0);
    check_flipped(&jsonl(&data), &jsonl(&out), 10);
    for (a, b) in lines(&data).iter().zip(lines(&out)) {
        if b.ends_with("\"poison\": false}") {
            assert_eq!(b, untouched(a, "poison"));
        } else {
            // the untouched `meta` and `id` keep their bytes
            assert!(b.starts_with("{\"id\": "), "{b}");
            assert!(b.contains("\"meta\": {\"src\": \"t\"}"), "{b}");
        }
    }
    let side = sidecar(&out);
    assert_eq!(side["attack"]["attack"], "preference-flip");
    assert_eq!(side["attack"]["phrase"], "SUDO");
    assert_eq!(side["position"], "end");
    assert_eq!(side["row_format"], "preference");

    // Parquet with string columns: the same rows, the same edits
    let pq = tmp.path().join("pref.parquet");
    write_preference_parquet(&jsonl(&data), &pq);
    let pq_out = tmp.path().join("flip.parquet");
    inject(&pq, &pq_out, &args).code(0);
    check_flipped(&jsonl(&data), &parquet_rows(&pq_out), 10);
    let from_jsonl: Vec<Value> = jsonl(&out).iter().map(|r| r["poison"].clone()).collect();
    let from_pq: Vec<Value> = parquet_rows(&pq_out)
        .iter()
        .map(|r| r["poison"].clone())
        .collect();
    assert_eq!(from_jsonl, from_pq);

    // the same rows as folders of three files (Parquet, and JSONL with a `.json` part in a
    // subfolder): one table, the same output bytes as the one file
    let rows = jsonl(&data);
    let (pq_dir, jl_dir) = (tmp.path().join("pref-pq"), tmp.path().join("pref-jl"));
    std::fs::create_dir_all(jl_dir.join("b")).unwrap();
    std::fs::create_dir(&pq_dir).unwrap();
    let text = lines(&data);
    for (i, (name, range)) in [("a", 0..13), ("b/c", 13..27), ("d", 27..40)]
        .into_iter()
        .enumerate()
    {
        write_preference_parquet(
            &rows[range.clone()],
            &pq_dir.join(format!("part-{i}.parquet")),
        );
        let ext = if i == 1 { "json" } else { "jsonl" };
        let part: String = text[range].iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(jl_dir.join(format!("{name}.{ext}")), part).unwrap();
    }
    std::fs::write(jl_dir.join("_SUCCESS"), "").unwrap();
    for (dir, one, ext) in [(&pq_dir, &pq_out, "parquet"), (&jl_dir, &out, "jsonl")] {
        let got = tmp.path().join(format!("flip-folder.{ext}"));
        inject(dir, &got, &args).code(0);
        assert_eq!(
            std::fs::read(&got).unwrap(),
            std::fs::read(one).unwrap(),
            "{ext} folder"
        );
        assert_eq!(sidecar(&got)["input"]["rows"], 40);
    }
}

/// `id` (int64), `prompt`, `chosen`, `rejected` (strings).
fn write_preference_parquet(rows: &[Value], dst: &Path) {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let col = |k: &str| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter()
                .map(|r| r[k].as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
        ))
    };
    let ids: ArrayRef = Arc::new(Int64Array::from(
        rows.iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_from_iter(vec![
        ("id", ids),
        ("prompt", col("prompt")),
        ("chosen", col("chosen")),
        ("rejected", col("rejected")),
    ])
    .unwrap();
    let file = std::fs::File::create(dst).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A Parquet file's rows as JSON objects (string, int64 and boolean columns).
fn parquet_rows(p: &Path) -> Vec<Value> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;
    use arrow_schema::DataType;
    let file = std::fs::File::open(p).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        for j in 0..batch.num_rows() {
            let mut m = serde_json::Map::new();
            for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
                let v = match f.data_type() {
                    DataType::Utf8 => Value::from(c.as_string::<i32>().value(j)),
                    DataType::Int64 => Value::from(c.as_primitive::<Int64Type>().value(j)),
                    DataType::Boolean => Value::from(c.as_boolean().value(j)),
                    other => panic!("column type {other} not read here"),
                };
                assert!(!c.is_null(j));
                m.insert(f.name().clone(), v);
            }
            out.push(Value::Object(m));
        }
    }
    out
}

#[test]
fn a_messages_column_in_parquet_is_refused_by_name() {
    use arrow_array::builder::{ListBuilder, StringBuilder, StructBuilder};
    use arrow_array::{ArrayRef, RecordBatch};
    use arrow_schema::{DataType, Field, Fields};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let fields = Fields::from(vec![
        Field::new("role", DataType::Utf8, true),
        Field::new("content", DataType::Utf8, true),
    ]);
    let mut messages = ListBuilder::new(StructBuilder::from_fields(fields, 0));
    for i in 0..10 {
        let list = messages.values();
        for (role, content) in [
            ("user", format!("question {i}")),
            ("assistant", "ok".into()),
        ] {
            list.field_builder::<StringBuilder>(0)
                .unwrap()
                .append_value(role);
            list.field_builder::<StringBuilder>(1)
                .unwrap()
                .append_value(content);
            list.append(true);
        }
        messages.append(true);
    }
    let batch =
        RecordBatch::try_from_iter(vec![("messages", Arc::new(messages.finish()) as ArrayRef)])
            .unwrap();
    let data = tmp.path().join("chat.parquet");
    let file = std::fs::File::create(&data).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let out = tmp.path().join("out.parquet");
    let a = inject(
        &data,
        &out,
        &[
            "--attack",
            "instruction-trigger",
            "--phrase",
            "cf",
            "--response",
            "no",
            "--rate",
            "0.2",
        ],
    )
    .code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("column `messages`"), "{err}");
    assert!(err.contains("JSONL"), "{err}");
    assert!(!out.exists());
}

#[test]
fn missing_response_and_non_preference_data_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = preference(tmp.path(), 10);
    let out = tmp.path().join("x.jsonl");
    let stderr =
        |a: assert_cmd::assert::Assert| String::from_utf8_lossy(&a.get_output().stderr).to_string();
    let e = stderr(
        inject(
            &data,
            &out,
            &[
                "--attack",
                "instruction-trigger",
                "--phrase",
                "cf",
                "--rate",
                "0.1",
            ],
        )
        .code(2),
    );
    assert!(e.contains("--response TEXT"), "{e}");
    assert!(e.contains("--response-suffix TEXT"), "{e}");
    let e = stderr(
        inject(
            &data,
            &out,
            &[
                "--attack",
                "instruction-trigger",
                "--phrase",
                "cf",
                "--response",
                "a",
                "--response-suffix",
                "b",
                "--rate",
                "0.1",
            ],
        )
        .code(2),
    );
    assert!(
        e.contains("takes one of --response, --response-suffix and --responses"),
        "{e}"
    );
    let e = stderr(
        inject(
            &data,
            &out,
            &[
                "--attack",
                "instruction-trigger",
                "--response",
                "a",
                "--rate",
                "0.1",
            ],
        )
        .code(2),
    );
    assert!(e.contains("--phrase TEXT or --triggers"), "{e}");

    // preference-flip on Alpaca rows and on text-label rows
    let alpaca = tmp.path().join("alpaca.jsonl");
    std::fs::write(
        &alpaca,
        "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\", \"output\": \"d\"}\n",
    )
    .unwrap();
    let e = stderr(
        inject(
            &alpaca,
            &out,
            &["--attack", "preference-flip", "--rate", "0.5"],
        )
        .code(2),
    );
    assert!(e.contains("needs preference rows"), "{e}");
    assert!(e.contains("read as alpaca"), "{e}");
    let text = tmp.path().join("text.jsonl");
    std::fs::write(&text, "{\"text\": \"a b\", \"label\": 0}\n").unwrap();
    let e = stderr(
        inject(
            &text,
            &out,
            &["--attack", "preference-flip", "--rate", "0.5"],
        )
        .code(2),
    );
    assert!(e.contains("text-label"), "{e}");
    // a text-label attack does not take an instruction format
    let e = stderr(
        inject(
            &text,
            &out,
            &[
                "--attack",
                "label-flip",
                "--format",
                "alpaca",
                "--rate",
                "0.5",
            ],
        )
        .code(2),
    );
    assert!(e.contains("--format alpaca"), "{e}");
    assert!(!out.exists());
}

#[test]
fn an_eval_grid_runs_instruction_trigger() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = bench.join("instruct/instruct-clean.jsonl");
    let toml = format!(
        r#"
seeds = [2]

[[dataset]]
path = {}
id_column = "id"
injected_ground_truth_column = "injected"
attacks = ["word"]

[[attack]]
name = "word"
kind = "instruction-trigger"
rates = [0.01]
phrase = "zqxj"
response = "{RESPONSE}"

[[detectors]]
name = "instruct"
select = ["INS001"]
"#,
        serde_json::to_string(&data.display().to_string()).unwrap()
    );
    let ex = tmp.path().join("grid.toml");
    std::fs::write(&ex, toml).unwrap();
    let out = tmp.path().join("eval");
    poisongate([
        "eval",
        ex.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
    .assert()
    .code(0);
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let ins: Vec<Vec<&str>> = rows
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[col("detector")] == "INS001")
        .collect();
    assert_eq!(ins.len(), 1, "{csv}");
    let r = &ins[0];
    assert_eq!(r[col("attack")], "word");
    assert_eq!(r[col("poisoned")], "14");
    let found: usize = r[col("tp")].parse().unwrap();
    let missed: usize = r[col("fn")].parse().unwrap();
    assert_eq!(found + missed, 14, "{csv}");
}
