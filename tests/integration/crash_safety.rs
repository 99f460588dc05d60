//! A scan's result appears whole or not at all: killed at any moment, on a full file system, or
//! racing another scan for the same `--out`. (An input changed between the scan and the split
//! is refused by `emit`; see its unit tests `*input_changed*`.)

use crate::common::{demo, poisongate};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The first `n` rows of the demo and their embeddings, written into `dir`.
fn small_input(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let (data, emb) = demo();
    let body = std::fs::read(data).unwrap();
    let lines: Vec<&[u8]> = body.split_inclusive(|&b| b == b'\n').take(n).collect();
    let d = dir.join("small.jsonl");
    std::fs::write(&d, lines.concat()).unwrap();
    let npy = std::fs::read(emb).unwrap();
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let values: Vec<f32> = npy[10 + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let cols = values.len() / 3000;
    let e = dir.join("small.npy");
    crate::invalid_rows::write_npy(&e, n, cols, &values[..n * cols]);
    (d, e)
}

fn scan_command(data: &Path, emb: &Path, out: &Path) -> Command {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("poisongate"));
    c.args([
        "scan".as_ref(),
        data.as_os_str(),
        "--embeddings".as_ref(),
        emb.as_os_str(),
        "--id-column".as_ref(),
        "id".as_ref(),
        // the duplicate detectors only: quick, so the kills fall in every phase, the write included
        "--select".as_ref(),
        "DUP".as_ref(),
        "--max-quarantine-fraction".as_ref(),
        "1".as_ref(),
        "--quiet".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

fn verifies(dir: &Path) -> bool {
    poisongate(["verify".as_ref(), dir.as_os_str()])
        .output()
        .map(|o| o.status.code() == Some(0))
        .unwrap_or(false)
}

/// Entries of `dir` other than the inputs.
fn leftovers(dir: &Path, keep: &[&Path]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !keep.contains(&p.as_path()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_scan_killed_at_any_moment_leaves_no_result_or_a_complete_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, emb) = small_input(tmp.path(), 3000);
    // how long one scan takes here
    let t0 = Instant::now();
    let probe = tmp.path().join("probe");
    let status = scan_command(&data, &emb, &probe).status().unwrap();
    assert_eq!(status.code(), Some(0));
    let span = t0.elapsed();
    assert!(verifies(&probe));
    std::fs::remove_dir_all(&probe).unwrap();

    // kill points spread over [0, 1.2 × span), drawn from a fixed seed
    let mut state: u64 = 0x5eed_1234_abcd_0001;
    let runs = 50;
    let (mut absent, mut complete) = (0, 0);
    for run in 0..runs {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let frac = (state >> 11) as f64 / (1u64 << 53) as f64;
        let delay = span.mul_f64(1.2 * frac);
        let out = tmp.path().join(format!("out-{run}"));
        let mut child = scan_command(&data, &emb, &out).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if out.exists() {
            assert!(
                verifies(&out),
                "run {run}: killed after {delay:?}, {} holds a partial result",
                out.display()
            );
            complete += 1;
        } else {
            absent += 1;
        }
        // whatever else is left is a staging folder, recognisable by name, never a result
        for p in leftovers(tmp.path(), &[&data, &emb]) {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("out-") && !name.contains(".poisongate-staging-") {
                continue;
            }
            assert!(
                name.starts_with(&format!(".out-{run}.poisongate-staging-")),
                "run {run}: unexpected {name}"
            );
            assert!(!verifies(&p), "run {run}: staging folder {name} verified");
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    eprintln!(
        "SIGKILL over {runs} runs (scan takes {span:?}): {absent} left no --out, {complete} a complete result that verifies, 0 partial"
    );
    assert_eq!(absent + complete, runs);
}

/// Unmounts on drop.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_scan_onto_a_full_file_system_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // its outputs need more than the 64 KiB of the file system
    let (data, emb) = small_input(tmp.path(), 1500);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return;
    }
    let _guard = Mount(mnt.clone());
    let out = mnt.join("out");
    let o = scan_command(&data, &emb, &out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        leftovers(&mnt, &[]).is_empty(),
        "left behind: {:?}",
        leftovers(&mnt, &[])
    );
}

#[test]
fn two_scans_racing_for_one_out_one_wins_the_other_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, emb) = small_input(tmp.path(), 300);
    for round in 0..3 {
        let out = tmp.path().join(format!("out-{round}"));
        let a = scan_command(&data, &emb, &out).spawn().unwrap();
        let b = scan_command(&data, &emb, &out).spawn().unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let mut codes = [a.status.code(), b.status.code()];
        codes.sort();
        assert_eq!(codes, [Some(0), Some(2)], "round {round}");
        let loser = if a.status.code() == Some(2) { &a } else { &b };
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(err.contains("--out"), "round {round}: {err}");
        assert!(verifies(&out), "round {round}: the winner's result");
        assert_eq!(
            leftovers(tmp.path(), &[&data, &emb])
                .iter()
                .filter(|p| p.to_string_lossy().contains(".poisongate-staging-"))
                .count(),
            0
        );
    }
}

#[test]
fn an_existing_out_must_be_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, emb) = small_input(tmp.path(), 200);
    // an empty folder is taken
    let out = tmp.path().join("empty");
    std::fs::create_dir(&out).unwrap();
    let o = scan_command(&data, &emb, &out).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(verifies(&out));
    // a folder with anything in it, an earlier result included, is left as it is
    let before = std::fs::read(out.join("report.json")).unwrap();
    let o = scan_command(&data, &emb, &out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already exists and is not empty"), "{err}");
    assert_eq!(std::fs::read(out.join("report.json")).unwrap(), before);
}
