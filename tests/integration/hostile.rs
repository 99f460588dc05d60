//! Hostile inputs: each must end in exit 2 with a message naming the problem, in bounded
//! memory, never an abort or an out-of-memory kill. The files are generated here at test time;
//! the child's peak resident memory is read from `wait4`.

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

const MIB: u64 = 1 << 20;

/// What a finished `poisongate` run left: exit code, stderr, peak resident memory.
struct Run {
    code: i32,
    stderr: String,
    peak_bytes: u64,
}

/// Run the binary with `args`, stdout discarded, stderr to a file. The peak resident memory
/// comes from `/usr/bin/time -f %M` where it exists: a child's own `ru_maxrss` would start at
/// this (large) test process's, which Linux carries across the fork and exec; without it the
/// peak is reported as 0 and not asserted.
fn run_measured(dir: &Path, args: &[&str]) -> Run {
    let err_path = dir.join("stderr.txt");
    let rss_path = dir.join("rss.txt");
    let err = File::create(&err_path).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("poisongate");
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_path).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let status = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let code = status.code().unwrap_or(-1);
    // GNU time reports a signal as exit 128 + signal; an abort or OOM kill is never a pass
    assert!(
        (0..=2).contains(&code),
        "poisongate {args:?} did not exit normally ({status}); stderr: {stderr}"
    );
    let peak_kib: u64 = std::fs::read_to_string(&rss_path)
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0);
    let run = Run {
        code,
        stderr,
        peak_bytes: peak_kib * 1024,
    };
    eprintln!(
        "poisongate {}: exit {}, peak RSS {:.1} MiB; {}",
        args.first().copied().unwrap_or(""),
        run.code,
        run.peak_bytes as f64 / MIB as f64,
        run.stderr.trim()
    );
    run
}

/// Exit 2, every listed fragment in the message, and a peak below `max_mib`.
fn assert_refused(run: &Run, fragments: &[&str], max_mib: u64) {
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    assert!(
        run.stderr.starts_with("poisongate: error:"),
        "{}",
        run.stderr
    );
    for f in fragments {
        assert!(run.stderr.contains(f), "missing {f:?} in: {}", run.stderr);
    }
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.peak_bytes <= max_mib * MIB,
        "peak RSS {} MiB above {max_mib} MiB",
        run.peak_bytes / MIB
    );
}

/// Scan `data` with no output folder, plus `extra` arguments.
fn scan(dir: &Path, data: &Path, extra: &[&str]) -> Run {
    let data = data.display().to_string();
    let mut args = vec!["scan", data.as_str(), "--quiet"];
    args.extend_from_slice(extra);
    run_measured(dir, &args)
}

/// A few ordinary rows, so the hostile one is not the first.
fn good_rows(w: &mut impl Write) {
    for i in 0..3 {
        writeln!(
            w,
            r#"{{"text": "an ordinary review number {i}", "label": {}}}"#,
            i % 2
        )
        .unwrap();
    }
}

/// A baseline: a small legitimate scan, for comparison with the hostile cases.
#[test]
fn baseline_small_scan_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ok.jsonl");
    let mut f = BufWriter::new(File::create(&data).unwrap());
    good_rows(&mut f);
    f.flush().unwrap();
    drop(f);
    let run = scan(tmp.path(), &data, &["--select", "DUP001"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.peak_bytes < 256 * MIB);
}

#[test]
fn json_nested_100_000_deep_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("deep.jsonl");
    let mut f = BufWriter::new(File::create(&data).unwrap());
    good_rows(&mut f);
    let depth = 100_000;
    write!(f, r#"{{"label": 1, "text": "#).unwrap();
    f.write_all(&vec![b'['; depth]).unwrap();
    f.write_all(&vec![b']'; depth]).unwrap();
    writeln!(f, "}}").unwrap();
    // the same depth in a key nobody asked for is skipped with the same limit
    write!(f, r#"{{"label": 1, "text": "x", "other": "#).unwrap();
    f.write_all(&b"{\"a\":".repeat(depth)).unwrap();
    f.write_all(b"0").unwrap();
    f.write_all(&vec![b'}'; depth]).unwrap();
    writeln!(f, "}}").unwrap();
    f.flush().unwrap();
    drop(f);
    let run = scan(tmp.path(), &data, &[]);
    assert_refused(
        &run,
        &[
            "deep.jsonl, line 4",
            "recursion limit exceeded",
            "nested more than 128 deep",
        ],
        128,
    );
}

/// serde_json skips an unrequested value without recursing, so nesting there is harmless:
/// read in bounded memory, never a stack overflow.
#[test]
fn json_nesting_in_an_unrequested_key_is_skipped_without_recursion() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("deep2.jsonl");
    let depth = 100_000;
    let mut f = BufWriter::new(File::create(&data).unwrap());
    write!(f, r#"{{"label": 1, "text": "x", "other": "#).unwrap();
    f.write_all(&b"{\"a\":".repeat(depth)).unwrap();
    f.write_all(b"0").unwrap();
    f.write_all(&vec![b'}'; depth]).unwrap();
    writeln!(f, "}}").unwrap();
    f.flush().unwrap();
    drop(f);
    let run = scan(tmp.path(), &data, &["--select", "DUP001"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.peak_bytes <= 128 * MIB);
}

#[test]
fn number_with_a_million_digits_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, key) in [
        ("digits-label.jsonl", "label"),
        ("digits-other.jsonl", "other"),
    ] {
        let data = tmp.path().join(name);
        let mut f = BufWriter::new(File::create(&data).unwrap());
        good_rows(&mut f);
        write!(f, r#"{{"text": "x", "label": 0, "{key}": 9"#).unwrap();
        f.write_all(&vec![b'7'; 1_000_000]).unwrap();
        writeln!(f, "}}").unwrap();
        f.flush().unwrap();
        drop(f);
        let run = scan(tmp.path(), &data, &["--select", "DUP001"]);
        if key == "label" {
            // a requested value: refused (here as a duplicate key, before its range)
            assert_refused(&run, &["line 4", "label"], 128);
        } else {
            // an unrequested one is skipped without being converted: read, bounded
            assert!(run.code <= 1, "{}", run.stderr);
            assert!(run.peak_bytes <= 128 * MIB);
        }
    }
}

/// One line of `len` bytes of text (no newline until the end), streamed to disk.
fn long_line_file(path: &Path, len: u64) {
    let mut f = BufWriter::new(File::create(path).unwrap());
    good_rows(&mut f);
    f.write_all(br#"{"label": 0, "text": ""#).unwrap();
    let chunk = vec![b'a'; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&chunk[..n as usize]).unwrap();
        left -= n;
    }
    f.write_all(b"\"}\n").unwrap();
    f.flush().unwrap();
}

#[test]
fn a_line_longer_than_the_default_limit_is_refused_without_reading_it_all() {
    // 70 MiB: past the 64 MiB default; a 1 GiB line stops at the same point
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("long.jsonl");
    long_line_file(&data, 70 * MIB);
    let run = scan(tmp.path(), &data, &[]);
    let limit = poisongate::ingest::DEFAULT_MAX_LINE_BYTES.to_string();
    assert_refused(
        &run,
        &["long.jsonl, line 4", &limit, "--max-line-bytes"],
        // the line buffer holds at most the limit (+1 byte)
        2 * 64 + 64,
    );
}

#[test]
fn the_line_limit_is_a_flag_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("long.jsonl");
    long_line_file(&data, 24 * MIB);
    // lowered: refused having read 4 MiB
    let run = scan(tmp.path(), &data, &["--max-line-bytes", "4194304"]);
    assert_refused(&run, &["long.jsonl, line 4", "4194304"], 96);
    // config file too
    let cfg = tmp.path().join("limits.toml");
    std::fs::write(&cfg, "max_line_bytes = 1048576\n").unwrap();
    let run = scan(tmp.path(), &data, &["--config", cfg.to_str().unwrap()]);
    assert_refused(&run, &["long.jsonl, line 4", "1048576"], 96);
    // a short enough line passes under the default
    let run = scan(tmp.path(), &data, &["--select", "DUP001"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// What a patched page header claims.
#[derive(Clone, Copy)]
enum Claim {
    /// the text page's uncompressed size (PageHeader field 2)
    Uncompressed(i32),
    /// the label page's value count (DataPageHeader field 1)
    Values(i32),
}

/// A small Parquet file: text SNAPPY-compressed in one page, then a label column (50 rows).
/// With a `claim`, one page header claims it; the header grows with the claim's varint and the
/// page's compressed bytes shrink by as much, so every offset of the file stays valid.
fn parquet_with_page_claim(path: &Path, claim: Option<Claim>) {
    let n = 50;
    let text: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("an ordinary review number {i}")),
    ));
    let label: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 2)));
    let batch = RecordBatch::try_from_iter([("text", text), ("label", label)]).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let mut bytes = Vec::new();
    let mut w = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    std::fs::write(path, &bytes).unwrap();
    let Some(claim) = claim else {
        return;
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let column = match claim {
        Claim::Uncompressed(_) => 0,
        Claim::Values(_) => 1,
    };
    let (start, len) = builder.metadata().row_group(0).column(column).byte_range();
    let (start, chunk_end) = (start as usize, (start + len) as usize);

    fn varint(b: &[u8], mut i: usize) -> (u64, usize) {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            v |= u64::from(b[i] & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b[i - 1] & 0x80 == 0 {
                return (v, i);
            }
        }
    }
    fn zigzag(v: i64) -> Vec<u8> {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }
    // PageHeader: fields 1 (type), 2 (uncompressed), 3 (compressed), all i32, then field 5
    // (DataPageHeader, a struct) whose field 1 (i32) counts the values
    assert_eq!(&bytes[..4], &b"PAR1"[..]);
    assert_eq!(bytes[start], 0x15);
    let (_, i) = varint(&bytes, start + 1);
    assert_eq!(bytes[i], 0x15);
    let (_, j) = varint(&bytes, i + 1);
    assert_eq!(bytes[j], 0x15);
    let (zc, k) = varint(&bytes, j + 1);
    let compressed = ((zc >> 1) as i64) ^ -((zc & 1) as i64);
    // the span replaced: (first byte, end)
    let (span, value) = match claim {
        Claim::Uncompressed(v) => ((i + 1, j), v),
        Claim::Values(v) => {
            assert_eq!(
                &bytes[k..k + 2],
                &[0x2c, 0x15][..],
                "field 5, then its field 1"
            );
            let (_, e) = varint(&bytes, k + 2);
            ((k + 2, e), v)
        }
    };
    let new_value = zigzag(i64::from(value));
    let grow = new_value.len() - (span.1 - span.0);
    let new_compressed = zigzag(compressed - grow as i64);
    assert_eq!(new_compressed.len(), k - (j + 1), "same width");
    // the one page ends where the chunk does: drop its last `grow` compressed bytes
    let mut trimmed = bytes.clone();
    trimmed.drain(chunk_end - grow..chunk_end);
    let mut out = trimmed[..j + 1].to_vec();
    out.extend_from_slice(&new_compressed);
    out.extend_from_slice(&trimmed[k..]);
    // `out` has the old sizes before `k`: replace the span (its offsets are unchanged)
    let mut patched = out[..span.0].to_vec();
    patched.extend_from_slice(&new_value);
    patched.extend_from_slice(&out[span.1..]);
    assert_eq!(patched.len(), bytes.len());
    std::fs::write(path, patched).unwrap();
}

#[test]
fn parquet_page_claiming_gigabytes_is_refused_before_decompression() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("claim.parquet");
    // the largest claim a page header can hold (an i32): 2 GiB. A column chunk's total
    // (an i64, which could say 100 GB) never sizes an allocation; the page's claim does.
    parquet_with_page_claim(&data, Some(Claim::Uncompressed(i32::MAX)));
    let run = scan(tmp.path(), &data, &[]);
    assert_refused(
        &run,
        &[
            "claim.parquet",
            "text",
            "2147483647 bytes uncompressed",
            "--max-page-bytes",
        ],
        128,
    );
}

#[test]
fn the_page_limit_is_a_flag_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ok.parquet");
    parquet_with_page_claim(&data, None);
    let run = scan(tmp.path(), &data, &["--max-page-bytes", "256"]);
    assert_refused(&run, &["ok.parquet", "text", "256 accepted"], 128);
    let run = scan(tmp.path(), &data, &["--select", "DUP001"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn parquet_page_claiming_more_values_than_rows_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // run-length encoding lets a few bytes expand to billions of levels or dictionary indices:
    // a page's value count is bounded by its decoded size, and a flat column's by the rows
    let data = tmp.path().join("values.parquet");
    parquet_with_page_claim(&data, Some(Claim::Values(i32::MAX)));
    let run = scan(tmp.path(), &data, &[]);
    assert_refused(
        &run,
        &[
            "values.parquet",
            "label",
            "2147483647 values",
            "--max-page-bytes",
        ],
        128,
    );
    // within the page limit, but more than the group's 50 rows in a one-value-per-row column
    parquet_with_page_claim(&data, Some(Claim::Values(51)));
    let run = scan(tmp.path(), &data, &[]);
    assert_refused(
        &run,
        &["values.parquet", "label", "51 values", "50 rows"],
        128,
    );
}

/// Every Parquet file the fuzz targets found a crash or a slow input with
/// (`fuzz/regressions/<target>/`: for `parquet_bytes` the input is the file itself; for
/// `parquet_footer` the `.parquet` the target wrote out with `POISONGATE_FUZZ_KEEP`), read with
/// the columns the target asks for: refused with one line naming the file, never a panic message
/// or an abort. The first made the parquet crate divide by zero in its byte-array decoder; the
/// second (1 336 bytes) had a page header whose container count the parquet crate's header
/// reader walked one `read` call per element, 18 s to refuse, now refused by the page walk
/// before the reader starts.
#[test]
fn parquet_files_that_crashed_the_fuzz_targets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for target in ["parquet_bytes", "parquet_footer"] {
        let dir = crate::common::root().join("fuzz/regressions").join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| target == "parquet_bytes" || p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        files.sort();
        for file in files {
            let mut args = vec!["--text-column", "text", "--label-column", "label"];
            if target == "parquet_bytes" {
                args.extend(["--id-column", "id", "--embedding-column", "emb"]);
            }
            let run = scan(tmp.path(), &file, &args);
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            assert_refused(&run, &[name.as_str()], 128);
            assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
            seen += 1;
        }
    }
    assert!(seen >= 2, "regression files missing: {seen}");
}

#[test]
fn npy_header_claiming_a_trillion_rows_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rows.jsonl");
    let mut f = File::create(&data).unwrap();
    good_rows(&mut f);
    drop(f);
    let emb = tmp.path().join("huge.npy");
    let mut header =
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 384), }".to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&[0u8; 3 * 384 * 4]);
    std::fs::write(&emb, bytes).unwrap();
    let run = scan(tmp.path(), &data, &["--embeddings", emb.to_str().unwrap()]);
    assert_refused(&run, &["huge.npy", "1000000000000", "truncated"], 128);
}

#[test]
fn safetensors_header_claiming_a_2_pow_60_byte_tensor_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rows.jsonl");
    let mut f = File::create(&data).unwrap();
    good_rows(&mut f);
    drop(f);
    // 2^58 rows x 1 f32 = 2^60 bytes, claimed by offsets over 16 real bytes
    let cases = [
        (
            "offsets.safetensors",
            r#"{"embeddings":{"dtype":"F32","shape":[288230376151711744,1],"data_offsets":[0,1152921504606846976]}}"#,
        ),
        (
            "shape.safetensors",
            r#"{"embeddings":{"dtype":"F32","shape":[288230376151711744,1],"data_offsets":[0,16]}}"#,
        ),
        (
            "overflow.safetensors",
            r#"{"embeddings":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#,
        ),
    ];
    for (name, header) in cases {
        let emb = tmp.path().join(name);
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 16]);
        std::fs::write(&emb, bytes).unwrap();
        let run = scan(tmp.path(), &data, &["--embeddings", emb.to_str().unwrap()]);
        assert_refused(&run, &[name, "not a valid safetensors file"], 128);
    }
    // a header length field claiming 2^60 bytes of header
    let emb = tmp.path().join("header.safetensors");
    let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&emb, bytes).unwrap();
    let run = scan(tmp.path(), &data, &["--embeddings", emb.to_str().unwrap()]);
    assert_refused(
        &run,
        &["header.safetensors", "not a valid safetensors file"],
        128,
    );
}

#[test]
fn model_weights_claiming_a_2_pow_60_byte_tensor_are_refused() {
    // the model folder's own check, on the same kind of header
    let config = br#"{"model_type": "bert", "hidden_size": 4, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 10,
        "max_position_embeddings": 8, "type_vocab_size": 2, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "hidden_dropout_prob": 0.1,
        "initializer_range": 0.02}"#;
    let header = r#"{"embeddings.word_embeddings.weight":{"dtype":"F32","shape":[288230376151711744,1],"data_offsets":[0,1152921504606846976]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 16]);
    let err = poisongate::embed::check_weights(config, &bytes).unwrap_err();
    assert!(
        err.to_string().contains("not a valid safetensors file"),
        "{err}"
    );
}

/// Three ordinary rows with ids, for the tests below.
fn rows_with_ids(path: &Path) {
    let mut f = BufWriter::new(File::create(path).unwrap());
    for i in 0..3 {
        writeln!(
            f,
            r#"{{"id": "r{i}", "text": "an ordinary review number {i}", "label": {}}}"#,
            i % 2
        )
        .unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn embeddings_too_wide_for_a_covariance_are_abstained_on_not_allocated() {
    // 3 rows × 100 000 dims (1.2 MB): the cross products of one class would take 80 GB
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    rows_with_ids(&data);
    let emb = tmp.path().join("wide.npy");
    let x = ndarray::Array2::<f32>::from_shape_fn((3, 100_000), |(i, j)| ((i + j) % 7) as f32);
    ndarray_npy::write_npy(&emb, &x).unwrap();
    let out = tmp.path().join("out");
    let e = emb.to_str().unwrap();
    let o = out.to_str().unwrap();
    for select in ["ACT001", "SPEC001"] {
        let run = scan(
            tmp.path(),
            &data,
            &["--embeddings", e, "--select", select, "--out", o],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.peak_bytes < 512 * MIB,
            "{select}: {} bytes",
            run.peak_bytes
        );
        let report = crate::common::report(&out);
        let summary = report["detectors"][0]["summary"].to_string();
        assert!(summary.contains("100000 dimensions"), "{summary}");
        std::fs::remove_dir_all(&out).unwrap();
    }
    // the trusted corpus's state refuses them
    let state = tmp.path().join("t.pgstate");
    let run = run_measured(
        tmp.path(),
        &[
            "fit",
            data.to_str().unwrap(),
            "--embeddings",
            e,
            "--state",
            state.to_str().unwrap(),
        ],
    );
    assert_refused(
        &run,
        &["wide.npy", "100000 dimensions", "at most 8192"],
        512,
    );
    assert!(!state.exists());
}

#[test]
fn a_pipe_as_input_is_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.jsonl");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("no mkfifo here: skipped");
        return;
    }
    let out = tmp.path().join("out");
    let run = scan(tmp.path(), &fifo, &["--out", out.to_str().unwrap()]);
    assert_refused(&run, &["pipe.jsonl", "not a regular file"], 128);
    assert!(!out.exists());
}

#[test]
fn fit_refuses_to_write_its_state_over_an_input() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    rows_with_ids(&data);
    let before = std::fs::read(&data).unwrap();
    let d = data.to_str().unwrap();
    let run = run_measured(tmp.path(), &["fit", d, "--state", d]);
    assert_refused(&run, &["refusing to overwrite the input", "d.jsonl"], 128);
    assert_eq!(std::fs::read(&data).unwrap(), before);
}

#[test]
fn thread_counts_beyond_any_machine_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    rows_with_ids(&data);
    let out = tmp.path().join("out");
    let run = scan(
        tmp.path(),
        &data,
        &["--threads", "100000", "--out", out.to_str().unwrap()],
    );
    assert_refused(&run, &["--threads 100000", "at most 1024"], 128);
    assert!(!out.exists());
}

#[test]
fn copies_and_trigger_words_beyond_memory_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    rows_with_ids(&data);
    let d = data.to_str().unwrap();
    let out = tmp.path().join("y.jsonl");
    let o = out.to_str().unwrap();
    let common = [
        "--id-column",
        "id",
        "--existing-ground-truth",
        "replace",
        "--out",
        o,
    ];
    for (attack, fragments) in [
        (
            vec!["--attack", "amplify", "--count", "18446744073709551615"],
            vec!["would add 18446744073709551615 copies", "at most 1000000"],
        ),
        (
            vec!["--attack", "amplify", "--rate", "0.9999999999"],
            vec!["would add", "at most 1000000"],
        ),
        (
            vec![
                "--attack",
                "badnets",
                "--rate",
                "0.3",
                "--target-label",
                "1",
                "--triggers-per-row",
                "18446744073709551615",
            ],
            vec!["at most 100 trigger words a row"],
        ),
    ] {
        let mut args = vec!["inject", d];
        args.extend(attack);
        args.extend(common);
        let run = run_measured(tmp.path(), &args);
        assert_refused(&run, &fragments, 256);
        assert!(!out.exists());
    }
}

#[test]
fn a_data_id_found_twice_is_not_joined_to_one_embedding() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"text\": \"one review\", \"label\": 0}\n\
         {\"id\": \"a\", \"text\": \"another review\", \"label\": 1}\n",
    )
    .unwrap();
    let emb = tmp.path().join("e.jsonl");
    std::fs::write(&emb, "{\"id\": \"a\", \"vec\": [0.5, 0.25]}\n").unwrap();
    let out = tmp.path().join("out");
    let run = scan(
        tmp.path(),
        &data,
        &[
            "--id-column",
            "id",
            "--embeddings",
            emb.to_str().unwrap(),
            "--embedding-column",
            "vec",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_refused(
        &run,
        &["d.jsonl", "id `a` appears twice (rows 1 and 2)"],
        128,
    );
    assert!(!out.exists());
}
