//! `bom.cdx.json`: valid CycloneDX 1.6 (checked by the official JSON schema through
//! cyclonedx-python-lib's strict validator), reproducible, re-made by `poisongate bom`, and
//! checked by `verify`.

use crate::common::*;
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use serde_json::Value;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows of the demo used by the small scans.
const SMALL_ROWS: usize = 400;

/// The pip command that installs the validator (`.ci/run` runs it).
const PIP: &str = "python3 -m pip install 'cyclonedx-python-lib[json-validation]'";

/// Validates every file named on the command line; exit 3 when the library is missing.
const VALIDATOR: &str = r#"
import sys
try:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    validator.validate_str('{"bomFormat": "CycloneDX", "specVersion": "1.6"}')
except Exception as e:
    print(f"cannot load the CycloneDX validator: {e!r}")
    sys.exit(3)
bad = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        errors = list(validator.validate_str(f.read(), all_errors=True) or [])
    for e in errors:
        data = getattr(e, "data", None)
        where = getattr(data, "json_path", "?")
        print(f"INVALID {path}: {getattr(data, 'message', e)} at {where}")
    if errors:
        bad += 1
    else:
        print(f"VALID {path}")
sys.exit(1 if bad else 0)
"#;

/// Runs the strict CycloneDX 1.6 JSON validator on `docs` in one python process.
fn validate(docs: &[PathBuf]) {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(VALIDATOR)
        .args(docs)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); install Python 3, then {PIP}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        panic!("the CycloneDX validator is not installed: run {PIP}\n{stdout}{stderr}");
    }
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.matches("VALID ").count(), docs.len(), "{stdout}");
}

fn sha(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, v: &Value) {
    let mut text = serde_json::to_string_pretty(v).unwrap();
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// The first [`SMALL_ROWS`] rows of the demo as JSONL, Parquet and a row-aligned .npy.
struct Small {
    jsonl: PathBuf,
    parquet: PathBuf,
    npy: PathBuf,
}

fn small(dir: &Path) -> Small {
    let (data, emb) = demo();
    let text = std::fs::read_to_string(data).unwrap();
    let lines: Vec<&str> = text.lines().take(SMALL_ROWS).collect();
    let jsonl = dir.join("small.jsonl");
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let m: ndarray::Array2<f32> = ndarray_npy::read_npy(emb).unwrap();
    let npy = dir.join("small.npy");
    ndarray_npy::write_npy(&npy, &m.slice(ndarray::s![..SMALL_ROWS, ..]).to_owned()).unwrap();
    let rows: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let strings = |k: &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r[k].as_str().unwrap().to_string()),
        ))
    };
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("id", strings("id")),
        ("text", strings("text")),
        (
            "label",
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r["label"].as_i64().unwrap()),
            )),
        ),
        (
            "poison",
            Arc::new(BooleanArray::from(
                rows.iter()
                    .map(|r| r["poison"].as_bool().unwrap())
                    .collect::<Vec<_>>(),
            )),
        ),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let parquet = dir.join("small.parquet");
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    Small {
        jsonl,
        parquet,
        npy,
    }
}

/// `poisongate scan DATA --id-column id --out OUT --quiet EXTRA…`; the gate may pass or fail.
fn scan(data: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "scan".to_string(),
        data.display().to_string(),
        "--id-column".into(),
        "id".into(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let a = poisongate(args).assert();
    let code = a.get_output().status.code();
    assert!(matches!(code, Some(0 | 1)), "{:?}", a.get_output());
}

/// `poisongate verify DIR`'s exit code and output.
fn verify(dir: &Path) -> (Option<i32>, String) {
    let o = poisongate(["verify".to_string(), dir.display().to_string()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), text)
}

/// `poisongate bom DIR` on stdout.
fn bom_stdout(dir: &Path) -> Vec<u8> {
    let a = poisongate(["bom".to_string(), dir.display().to_string()])
        .assert()
        .code(0);
    a.get_output().stdout.clone()
}

fn shared_model() -> Option<PathBuf> {
    let p = root().join("../shared/models/all-MiniLM-L6-v2");
    p.join("model.safetensors").exists().then_some(p)
}

fn component<'v>(doc: &'v Value, bom_ref: &str) -> &'v Value {
    std::iter::once(&doc["metadata"]["component"])
        .chain(doc["components"].as_array().unwrap())
        .find(|c| c["bom-ref"] == bom_ref)
        .unwrap_or_else(|| panic!("no component {bom_ref}"))
}

fn property<'v>(c: &'v Value, key: &str) -> &'v str {
    let name = format!("poisongate:{key}");
    c["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name.as_str())
        .and_then(|p| p["value"].as_str())
        .unwrap_or_else(|| panic!("no property {name}"))
}

#[test]
fn bom_validates_against_the_cyclonedx_1_6_schema_for_jsonl_parquet_embeddings_and_models() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let s = small(t);
    let (_, demo_npy) = demo();
    let npy = s.npy.to_str().unwrap();
    let mut dirs = vec![
        (t.join("jsonl"), s.jsonl.clone(), vec![]),
        (
            t.join("jsonl-emb-dedup"),
            demo().0,
            vec![
                "--embeddings",
                demo_npy.to_str().unwrap(),
                "--dedup",
                "keep-first",
            ],
        ),
        (t.join("parquet"), s.parquet.clone(), vec![]),
        (
            t.join("parquet-emb"),
            s.parquet.clone(),
            vec!["--embeddings", npy],
        ),
    ];
    let model = shared_model();
    match &model {
        Some(m) => dirs.push((
            t.join("jsonl-model"),
            s.jsonl.clone(),
            vec!["--model", m.to_str().unwrap(), "--max-tokens", "32"],
        )),
        None => eprintln!("the --model case is skipped: ../shared/models is absent"),
    }
    for (out, data, extra) in &dirs {
        scan(data, out, extra);
    }
    let docs: Vec<PathBuf> = dirs.iter().map(|d| d.0.join("bom.cdx.json")).collect();
    validate(&docs);

    for (out, data, _) in &dirs {
        let name = out.display();
        let doc = json_file(&out.join("bom.cdx.json"));
        let r = report(out);
        // re-made from report.json alone: the same bytes
        assert_eq!(
            bom_stdout(out),
            std::fs::read(out.join("bom.cdx.json")).unwrap(),
            "{name}"
        );
        let (code, said) = verify(out);
        assert_eq!(code, Some(0), "{name}: {said}");
        assert!(said.contains("bom.cdx.json agrees"), "{name}: {said}");
        // the statement attests it
        let st = json_file(&out.join("provenance.intoto.json"));
        assert!(
            st["subject"].as_array().unwrap().iter().any(|s| {
                s["name"] == "bom.cdx.json"
                    && s["digest"]["sha256"] == sha(&out.join("bom.cdx.json"))
            }),
            "{name}"
        );
        // what it names
        assert_eq!(
            doc["metadata"]["tools"]["components"][0]["name"],
            "poisongate"
        );
        assert_eq!(
            doc["metadata"]["tools"]["components"][0]["version"],
            env!("CARGO_PKG_VERSION")
        );
        let input = component(&doc, "input:data");
        assert_eq!(input["hashes"][0]["content"], sha(data), "{name}");
        assert_eq!(
            property(input, "rows"),
            r["reconciliation"]["input_rows"].to_string()
        );
        for o in r["outputs"].as_array().unwrap() {
            let c = component(&doc, &format!("output:{}", o["role"].as_str().unwrap()));
            assert_eq!(c["type"], "data");
            assert_eq!(c["hashes"][0]["content"], o["sha256"]);
            assert_eq!(property(c, "rows"), o["rows"].to_string());
            assert_eq!(property(c, "bytes"), o["bytes"].to_string());
            let ext = if data.extension().unwrap() == "parquet" {
                "parquet"
            } else {
                "jsonl"
            };
            assert_eq!(property(c, "format"), ext);
        }
        let clean = &doc["metadata"]["component"];
        assert_eq!(clean["bom-ref"], "output:clean");
        assert_eq!(
            clean["pedigree"]["ancestors"][0]["hashes"][0]["content"],
            sha(data)
        );
        let wf = &doc["formulation"][0]["workflows"][0];
        let codes: Vec<&str> = wf["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["uid"].as_str())
            .collect();
        for d in r["detectors"].as_array().unwrap() {
            assert!(codes.contains(&d["code"].as_str().unwrap()), "{codes:?}");
        }
        let refs: Vec<&str> = doc["externalReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            refs,
            ["report.json", "provenance.intoto.json", "report.html"]
        );
        assert_eq!(
            doc["externalReferences"][0]["hashes"][0]["content"],
            sha(&out.join("report.json"))
        );
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("<a href=\"bom.cdx.json\">"), "{name}");
    }
    let emb = json_file(&dirs[3].0.join("bom.cdx.json"));
    assert_eq!(
        component(&emb, "input:embeddings")["hashes"][0]["content"],
        sha(&s.npy)
    );
    let dedup = json_file(&dirs[1].0.join("bom.cdx.json"));
    assert_eq!(component(&dedup, "output:duplicates")["type"], "data");
    if model.is_some() {
        let doc = json_file(&dirs[4].0.join("bom.cdx.json"));
        let m = component(&doc, "input:model");
        assert_eq!(m["type"], "machine-learning-model");
        let files = m["components"].as_array().unwrap();
        let r = report(&dirs[4].0);
        let model_inputs: Vec<&Value> = r["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["role"] == "model")
            .collect();
        assert_eq!(files.len(), model_inputs.len());
        for (f, i) in files.iter().zip(model_inputs) {
            assert_eq!(f["type"], "file");
            assert_eq!(f["hashes"][0]["content"], i["sha256"]);
        }
    }
}

#[test]
fn reproducible_bom_is_byte_identical_across_thread_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let npy = s.npy.to_str().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    scan(
        &s.jsonl,
        &a,
        &["--embeddings", npy, "--reproducible", "--threads", "1"],
    );
    scan(
        &s.jsonl,
        &b,
        &["--embeddings", npy, "--reproducible", "--threads", "2"],
    );
    let bom = std::fs::read(a.join("bom.cdx.json")).unwrap();
    assert_eq!(bom, std::fs::read(b.join("bom.cdx.json")).unwrap());
    let doc: Value = serde_json::from_slice(&bom).unwrap();
    let serial = doc["serialNumber"].as_str().unwrap();
    assert!(serial.starts_with("urn:uuid:"), "{serial}");
    assert!(
        !String::from_utf8_lossy(&bom).contains("timestamp"),
        "no wall-clock time in the document"
    );
}

#[test]
fn tampering_with_the_bom_is_caught_by_verify_and_old_folders_get_one() {
    let tmp = tempfile::tempdir().unwrap();
    let s = small(tmp.path());
    let out = tmp.path().join("out");
    scan(&s.jsonl, &out, &["--embeddings", s.npy.to_str().unwrap()]);
    let original = std::fs::read(out.join("bom.cdx.json")).unwrap();
    let copy = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for e in std::fs::read_dir(&out).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), d.join(e.file_name())).unwrap();
        }
        d
    };
    // a flipped byte: the statement's digest no longer matches
    let flipped = copy("flipped");
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(flipped.join("bom.cdx.json"), bytes).unwrap();
    let (code, said) = verify(&flipped);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("MISMATCH bom.cdx.json: sha256 (provenance subject)"),
        "{said}"
    );

    // a consistent-looking forgery (the statement's digest updated) whose claims are wrong
    let forge = |name: &str, edit: &dyn Fn(&mut Value)| -> String {
        let d = copy(name);
        let mut doc: Value = serde_json::from_slice(&original).unwrap();
        edit(&mut doc);
        write_json(&d.join("bom.cdx.json"), &doc);
        let mut st = json_file(&d.join("provenance.intoto.json"));
        for s in st["subject"].as_array_mut().unwrap() {
            if s["name"] == "bom.cdx.json" {
                s["digest"]["sha256"] = sha(&d.join("bom.cdx.json")).into();
            }
        }
        write_json(&d.join("provenance.intoto.json"), &st);
        let (code, said) = verify(&d);
        assert_eq!(code, Some(1), "{name}: {said}");
        said
    };
    let set_property = |c: &mut Value, key: &str, value: &str| {
        for p in c["properties"].as_array_mut().unwrap() {
            if p["name"] == format!("poisongate:{key}").as_str() {
                p["value"] = value.into();
            }
        }
    };
    let said = forge("rows", &|doc| {
        let c = &mut doc["metadata"]["component"];
        let rows: u64 = property(c, "rows").parse().unwrap();
        set_property(c, "rows", &(rows + 1).to_string());
    });
    assert!(
        said.contains("MISMATCH bom.cdx.json: output:clean rows (vs report.json)"),
        "{said}"
    );
    let said = forge("input-hash", &|doc| {
        doc["components"][0]["hashes"][0]["content"] = "0".repeat(64).into();
    });
    assert!(
        said.contains("MISMATCH bom.cdx.json: input:data sha256 (vs report.json)"),
        "{said}"
    );
    let said = forge("verdict", &|doc| {
        for t in doc["formulation"][0]["workflows"][0]["tasks"]
            .as_array_mut()
            .unwrap()
        {
            if t["bom-ref"] == "task:verdict" {
                let flipped = if property(t, "status") == "pass" {
                    "fail"
                } else {
                    "pass"
                };
                set_property(t, "status", flipped);
            }
        }
    });
    assert!(
        said.contains("MISMATCH bom.cdx.json: verdict status"),
        "{said}"
    );

    // a folder written before scans made the document: verify passes without it, and
    // `poisongate bom DIR --out` makes the same bytes from report.json
    let old = copy("old");
    std::fs::remove_file(old.join("bom.cdx.json")).unwrap();
    let mut st = json_file(&old.join("provenance.intoto.json"));
    st["subject"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["name"] != "bom.cdx.json");
    write_json(&old.join("provenance.intoto.json"), &st);
    let (code, said) = verify(&old);
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains("bom.cdx.json"), "{said}");
    let target = old.join("bom.cdx.json");
    poisongate([
        "bom".to_string(),
        old.display().to_string(),
        "--out".into(),
        target.display().to_string(),
    ])
    .assert()
    .code(0);
    assert_eq!(std::fs::read(&target).unwrap(), original);
    let (code, said) = verify(&old);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("bom.cdx.json agrees"), "{said}");
    // no report.json: exit 2, naming it
    let a = poisongate([
        "bom".to_string(),
        tmp.path().join("nowhere").display().to_string(),
    ])
    .assert()
    .code(2);
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(stderr.contains("report.json"), "{stderr}");
}
