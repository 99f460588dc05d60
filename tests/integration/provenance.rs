//! `provenance.intoto.json`, `poisongate verify` and `report.html` on scan outputs.

use crate::common::*;
use sha2::Digest;
use std::path::Path;

fn verify(dir: &Path) -> assert_cmd::assert::Assert {
    poisongate(["verify".to_string(), dir.display().to_string()]).assert()
}

fn sha(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn statement(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("provenance.intoto.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The default detectors plus the opt-in SPEC001, whose histograms the report draws.
const WITH_SPEC001: &[&str] = &["--select", "ACT001,DUP,SPEC001,TRIG001"];

#[test]
fn demo_scan_verifies_and_every_flipped_byte_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    scan_demo(&out, &[]).code(1);
    let ok = verify(&out).code(0);
    let stdout = String::from_utf8_lossy(&ok.get_output().stdout).to_string();
    assert!(stdout.starts_with("OK:"), "{stdout}");
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    assert!(stdout.contains(" clean + "), "{stdout}");

    for file in [
        "clean.jsonl",
        "quarantine.jsonl",
        "report.json",
        "report.html",
    ] {
        let bad = tmp.path().join(format!("bad-{file}"));
        copy_dir(&out, &bad);
        let p = bad.join(file);
        let mut bytes = std::fs::read(&p).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&p, bytes).unwrap();
        let a = verify(&bad).code(1);
        let stderr = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(
            stderr.contains(&format!("MISMATCH {file}:")),
            "{file}: {stderr}"
        );
        assert!(
            stderr.contains("expected") && stderr.contains("actual"),
            "{stderr}"
        );
    }
}

#[test]
fn verify_exits_2_on_missing_or_unreadable_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    scan_demo(&out, &[]).code(1);
    let missing = tmp.path().join("missing");
    copy_dir(&out, &missing);
    std::fs::remove_file(missing.join("quarantine.jsonl")).unwrap();
    verify(&missing).code(2);
    let garbled = tmp.path().join("garbled");
    copy_dir(&out, &garbled);
    std::fs::write(garbled.join("provenance.intoto.json"), "{not json").unwrap();
    verify(&garbled).code(2);
    verify(&tmp.path().join("nowhere")).code(2);
}

#[test]
fn reconciliation_tampering_is_a_mismatch() {
    // a consistent-looking report (digests updated) whose counts are wrong still fails
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    scan_demo(&out, &[]).code(1);
    let mut r = report(&out);
    let n = r["reconciliation"]["input_rows"].as_u64().unwrap();
    r["reconciliation"]["input_rows"] = (n + 1).into();
    let mut text = serde_json::to_string_pretty(&r).unwrap();
    text.push('\n');
    std::fs::write(out.join("report.json"), &text).unwrap();
    let mut st = statement(&out);
    for s in st["subject"].as_array_mut().unwrap() {
        if s["name"] == "report.json" {
            s["digest"]["sha256"] = sha(&out.join("report.json")).into();
        }
    }
    std::fs::write(
        out.join("provenance.intoto.json"),
        serde_json::to_string_pretty(&st).unwrap(),
    )
    .unwrap();
    let a = verify(&out).code(1);
    let stderr = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(
        stderr.contains("MISMATCH report.json: reconciliation.input_rows"),
        "{stderr}"
    );
}

#[test]
fn statement_subjects_match_the_files_and_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    scan_demo(&out, &[]).code(1);
    let st = statement(&out);
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], poisongate::provenance::PREDICATE_TYPE);
    let subjects = st["subject"].as_array().unwrap();
    let names: Vec<&str> = subjects
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    for want in [
        "clean.jsonl",
        "quarantine.jsonl",
        "report.json",
        "report.html",
        "bom.cdx.json",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    for s in subjects {
        let name = s["name"].as_str().unwrap();
        assert_eq!(s["digest"]["sha256"], sha(&out.join(name)), "{name}");
    }
    let r = report(&out);
    let p = &st["predicate"];
    assert_eq!(p["settings_digest"], r["settings_digest"]);
    assert_eq!(p["seed"], r["settings"]["seed"]);
    assert_eq!(p["reconciliation"], r["reconciliation"]);
    assert_eq!(p["verdict"]["status"], r["verdict"]["status"]);
    for (pi, ri) in p["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["inputs"].as_array().unwrap())
    {
        for k in ["path", "sha256", "bytes", "rows"] {
            assert_eq!(pi[k], ri[k]);
        }
    }
    let codes: Vec<&str> = p["detectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"ACT001") && codes.contains(&"TRIG001"),
        "{codes:?}"
    );
    assert!(p["detectors"][0]["version"].is_u64());
    // deterministic: a second scan gives the same predicate and the same data subjects
    let again = tmp.path().join("again");
    scan_demo(&again, &[]).code(1);
    let st2 = statement(&again);
    assert_eq!(st2["predicate"], st["predicate"]);
    assert_eq!(st2["subject"][0], st["subject"][0]);
    assert_eq!(st2["subject"][1], st["subject"][1]);
}

#[test]
fn html_has_the_sections_and_no_script() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    scan_demo(&out, WITH_SPEC001).code(1);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for section in [
        "id=\"verdict\"",
        "id=\"reconciliation\"",
        "id=\"files\"",
        "id=\"detectors\"",
        "id=\"triggers\"",
        "id=\"quarantined\"",
        "id=\"evaluation\"",
        "id=\"spectral\"",
    ] {
        assert!(html.contains(section), "{section}");
    }
    assert!(
        html.contains("<svg class=\"hist\""),
        "SPEC001 histograms drawn"
    );
    assert!(html.contains("Bonferroni z = "), "Bonferroni line labelled");
    assert!(
        html.contains("<code>cf</code>"),
        "the TRIG001 trigger is shown"
    );
    assert!(html.contains(&sha(&out.join("clean.jsonl"))));
    let lower = html.to_ascii_lowercase();
    for external in ["<script", "<link", "src=", "http://", "@import", "url("] {
        assert!(!lower.contains(external), "{external}");
    }
}

#[test]
fn html_escapes_hostile_text_and_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("hostile.jsonl");
    let mut lines = vec![
        r#"{"id":"<img src=x onerror=alert(2)>","text":"<script>alert(1)</script> & 'quotes' \"too\"","label":0}"#.to_string(),
        r#"{"id":"b","text":"<script>alert(1)</script> & 'quotes' \"too\"","label":1}"#.to_string(),
    ];
    for i in 0..8 {
        lines.push(format!(
            r#"{{"id":"r{i}","text":"an ordinary review number {i}","label":{}}}"#,
            i % 2
        ));
    }
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    // one conflict is within natural label noise: the test turned off, the tie is flagged whole
    let cfg = tmp.path().join("tie.toml");
    std::fs::write(&cfg, "[detectors.DUP001]\nnoise_share = 0\n").unwrap();
    let out = tmp.path().join("out");
    poisongate([
        "scan".to_string(),
        data.display().to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--select".into(),
        "DUP001".into(),
        "--id-column".into(),
        "id".into(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
    ])
    .assert()
    .code(1);
    assert_eq!(report(&out)["reconciliation"]["quarantined_rows"], 2);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("<script"), "raw script from data");
    assert!(!html.contains("<img"), "raw tag from an id");
    assert!(html
        .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;quotes&#39; &quot;too&quot;"));
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(html.contains("id=\"duplicates\""), "DUP001 clusters listed");
    assert!(
        html.contains("<td>0, 1<div"),
        "the conflicting cluster's member rows"
    );
    verify(&out).code(0);
}

/// `chromium` on PATH, or a failure telling how to get it (CI installs it in `.ci/run`).
fn chromium() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not on PATH: install it (Debian: apt-get install chromium) to run \
                 the headless report.html test; .ci/run installs it in CI"
            )
        })
}

#[test]
fn html_renders_in_headless_chromium() {
    let browser = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    scan_demo(&out, WITH_SPEC001).code(1);
    let html = out.join("report.html").canonicalize().unwrap();
    let profile = tmp.path().join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    // output goes to files: a full pipe cannot stall the browser while we poll it
    let dom_path = tmp.path().join("dom.html");
    let err_path = tmp.path().join("stderr.txt");
    let mut cmd = std::process::Command::new(&browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("--dump-dom")
    .arg(format!("file://{}", html.display()))
    .stdin(std::process::Stdio::null())
    .stdout(std::fs::File::create(&dom_path).unwrap())
    .stderr(std::fs::File::create(&err_path).unwrap());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("chromium starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            // the browser and its helpers are in their own process group: end all of it
            #[cfg(unix)]
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within 60 s; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "chromium exited with {status}: {stderr}");
    for heading in [
        "Reconciliation",
        "Inputs and outputs",
        "Detectors",
        "TRIG001 trigger findings",
        "SPEC001 score distributions per class",
        "Top quarantined rows",
        "Evaluation against",
    ] {
        assert!(
            dom.contains(&format!("<h2>{heading}")),
            "{heading} missing from the rendered DOM"
        );
    }
    assert!(dom.contains("<svg"), "no inline SVG in the rendered DOM");
    assert!(
        dom.contains("<rect"),
        "no histogram bars in the rendered DOM"
    );
    assert!(!stderr.contains("Uncaught"), "JavaScript error: {stderr}");
}
