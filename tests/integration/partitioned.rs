//! The rounds over partitions of the input (`poisongate::pipeline::scan_partitioned`, what a
//! cluster engine runs) against the single-machine streaming scan: for 1, 2, 7 and 16
//! partitions, tasks run in a shuffled order by two task processes' worth of caches and their
//! partials absorbed in a shuffled order, every shipped benchmark (as Parquet with its MiniLM
//! embeddings in a column, in row groups of a twentieth of its rows) gives the same combined
//! score bits, the same quarantined rows and reasons, the same outputs byte for byte and the
//! same report (the per-detector entries and evaluation included).

use crate::common::*;
use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use poisongate::pipeline::{
    run_task, scan, scan_partitioned, Plan, Runner, ScanError, ScanOptions, TaskCache,
};
use std::path::Path;
use std::sync::Arc;

/// A benchmark set as Parquet, its `.minilm.npy` rows as an `embedding` column, in row groups
/// of `group_rows` rows.
fn set_parquet(jsonl_path: &Path, npy: &Path, out: &Path, group_rows: usize) {
    set_parquet_with(jsonl_path, Some(npy), out, group_rows)
}

/// [`set_parquet`], the `embedding` column only when `npy` is given.
fn set_parquet_with(jsonl_path: &Path, npy: Option<&Path>, out: &Path, group_rows: usize) {
    set_parquet_rows(jsonl_path, npy, out, group_rows, 0..usize::MAX)
}

/// [`set_parquet_with`] of the rows `range` only.
fn set_parquet_rows(
    jsonl_path: &Path,
    npy: Option<&Path>,
    out: &Path,
    group_rows: usize,
    range: std::ops::Range<usize>,
) {
    let all = jsonl(jsonl_path);
    let range = range.start..range.end.min(all.len());
    let rows = &all[range.clone()];
    let text = |k: &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(
            |v| match &v[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        )))
    };
    let label: ArrayRef = if rows.iter().all(|v| v["label"].is_i64()) {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|v| v["label"].as_i64().unwrap()),
        ))
    } else {
        text("label")
    };
    let poison: ArrayRef = Arc::new(BooleanArray::from(
        rows.iter()
            .map(|v| v["poison"].as_bool().unwrap_or(v["poison"] == 1))
            .collect::<Vec<_>>(),
    ));
    let mut cols: Vec<(&str, ArrayRef)> = vec![
        ("id", text("id")),
        ("text", text("text")),
        ("label", label),
        ("poison", poison),
    ];
    if let Some(npy) = npy {
        let emb: ndarray::Array2<f32> = ndarray_npy::read_npy(npy).unwrap();
        let mut list = FixedSizeListBuilder::new(Float32Builder::new(), emb.ncols() as i32);
        for r in emb.rows().into_iter().skip(range.start).take(range.len()) {
            list.values().append_slice(r.as_slice().unwrap());
            list.append(true);
        }
        cols.push(("embedding", Arc::new(list.finish())));
    }
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let f = std::fs::File::create(out).unwrap();
    let mut w = ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Runs the tasks in this process: in a shuffled order, alternately with two caches (two task
/// processes), the partials returned in another shuffled order.
struct Local<'a> {
    opts: &'a ScanOptions,
    k: usize,
    state: u64,
    caches: [TaskCache; 2],
    tasks: usize,
}

impl Local<'_> {
    fn next(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.state >> 33
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

impl Runner for Local<'_> {
    fn partitions(&self) -> usize {
        self.k
    }

    fn engine(&self) -> String {
        "test".into()
    }

    fn run(
        &mut self,
        plan: &Plan,
        round: usize,
        earlier: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, ScanError> {
        let mut parts: Vec<usize> = (0..plan.partitions.len()).collect();
        self.shuffle(&mut parts);
        let mut out = Vec::new();
        for p in parts {
            let cache = &mut self.caches[self.tasks % 2];
            self.tasks += 1;
            out.push(run_task(self.opts, plan, (round, p), earlier, cache)?);
        }
        self.shuffle(&mut out);
        Ok(out)
    }
}

fn options(data: &Path, out: &Path) -> ScanOptions {
    let mut o = ScanOptions::new(data);
    o.id_column = Some("id".into());
    o.ground_truth_column = Some("poison".into());
    o.embedding_column = Some("embedding".into());
    o.select = Some(vec![
        "ACT001".into(),
        "SPEC001".into(),
        "DUP001".into(),
        "DUP002".into(),
        "DUP003".into(),
        "TRIG001".into(),
    ]);
    // DUP002 without its embedding relation, as streaming runs it
    let mut dup002 = toml::Table::new();
    dup002.insert("embedding_cosine".into(), toml::Value::Float(0.0));
    o.detector_params.insert("DUP002".into(), dup002);
    o.batch_rows = 997;
    o.reproducible = true;
    o.out = Some(out.to_path_buf());
    o.stream = true;
    o
}

/// [`options`] with the embeddings read from the `.npy` file `npy` instead of a column.
fn options_with_npy(data: &Path, npy: &Path, out: &Path) -> ScanOptions {
    let mut o = options(data, out);
    o.embedding_column = None;
    o.embeddings = Some(npy.to_path_buf());
    o
}

fn agreed(dir: &Path) -> serde_json::Value {
    let mut r = deterministic(report(dir));
    r["settings"]["engine"] = serde_json::Value::Null;
    r["settings"]["partitions"] = serde_json::Value::Null;
    serde_json::json!({
        "detectors": r["detectors"],
        "reconciliation": r["reconciliation"],
        "verdict": r["verdict"],
        "evaluation": r["evaluation"],
        "quarantined_rows": r["quarantined_rows"],
        "inputs": r["inputs"],
    })
}

/// Scans `opts` over `k` partitions (tasks shuffled from `seed`) and checks it against the
/// single-machine scan `base`, written to `one`: the score bits, reasons, outputs byte for byte
/// and the report.
fn same_as_one_machine(
    opts: &ScanOptions,
    (k, seed): (usize, u64),
    base: &poisongate::pipeline::ScanOutcome,
    one: &Path,
    name: &str,
) {
    let mut runner = Local {
        opts,
        k,
        state: seed,
        caches: Default::default(),
        tasks: 0,
    };
    let got = scan_partitioned(opts, &mut runner).unwrap();
    let bits = |s: &[f64]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got.scores), bits(&base.scores), "{name}, {k}: scores");
    assert_eq!(got.reasons, base.reasons, "{name}, {k}: reasons");
    let out = opts.out.as_deref().expect("an output folder");
    let ext = poisongate::ingest::Format::from_path(&opts.data)
        .unwrap()
        .extension();
    for f in [format!("clean.{ext}"), format!("quarantine.{ext}")] {
        assert!(
            std::fs::read(out.join(&f)).unwrap() == std::fs::read(one.join(&f)).unwrap(),
            "{name}, {k}: {f} differs"
        );
    }
    assert_eq!(agreed(out), agreed(one), "{name}, {k}: reports differ");
}

#[test]
fn partitioned_scans_equal_the_single_machine_scan_on_every_benchmark() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sets = 0;
    let mut flagged = 0;
    for set in benchmark_sets() {
        let npy = set.with_extension("minilm.npy");
        if !npy.exists() {
            continue;
        }
        let name = set.file_stem().unwrap().to_str().unwrap().to_string();
        let n = jsonl(&set).len();
        let pq = tmp.path().join(format!("{name}.parquet"));
        set_parquet(&set, &npy, &pq, n.div_ceil(20));
        let one = tmp.path().join(format!("{name}-one"));
        let base = scan(&options(&pq, &one)).unwrap();
        flagged += base.reasons.len();
        for (k, seed) in [(1, 1), (2, 2), (7, 3), (16, 4)] {
            let out = tmp.path().join(format!("{name}-{k}"));
            same_as_one_machine(&options(&pq, &out), (k, seed), &base, &one, &name);
            let r = report(&out);
            assert_eq!(r["settings"]["engine"], "test");
            assert_eq!(r["settings"]["partitions"], k);
        }
        sets += 1;
    }
    assert!(
        sets >= 12 && flagged > 500,
        "{sets} sets, {flagged} rows flagged"
    );
}

/// Embeddings in a `.npy` file beside the Parquet data: each task reads its partition's rows
/// of it. Three sets (one where ACT001 finds the clean-label cluster), 1, 2, 7 and 16
/// partitions: the single-machine streaming scan's scores, flags, outputs and report, the
/// `.npy` file listed among the inputs with its digest.
#[test]
fn partitioned_scans_read_embeddings_from_a_npy_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let mut flagged = 0;
    for name in [
        "sst2-badnets-cleanlabel-10",
        "sst2-badnets-10",
        "sms-spam-clean",
    ] {
        let set = dir.join(format!("{name}.jsonl"));
        let npy = dir.join(format!("{name}.minilm.npy"));
        let n = jsonl(&set).len();
        let pq = tmp.path().join(format!("{name}.parquet"));
        set_parquet_with(&set, None, &pq, n.div_ceil(20));
        let with_npy = |out: &Path| options_with_npy(&pq, &npy, out);
        let one = tmp.path().join(format!("{name}-npy-one"));
        let base = scan(&with_npy(&one)).unwrap();
        flagged += base.reasons.len();
        for (k, seed) in [(1, 5), (2, 6), (7, 7), (16, 8)] {
            let out = tmp.path().join(format!("{name}-npy-{k}"));
            same_as_one_machine(&with_npy(&out), (k, seed), &base, &one, name);
            let r = report(&out);
            let inputs = r["inputs"].as_array().unwrap();
            assert!(
                inputs.iter().any(|i| i["role"] == "embeddings"),
                "{name}, {k}: {inputs:?}"
            );
        }
    }
    assert!(flagged > 600, "{flagged} rows flagged");
    // no detector reads the embeddings: neither scan lists the file among its inputs
    let name = "sms-spam-clean";
    let pq = tmp.path().join(format!("{name}.parquet"));
    let text_only = |out: &Path| {
        let mut o = options(&pq, out);
        o.embedding_column = None;
        o.embeddings = Some(dir.join(format!("{name}.minilm.npy")));
        o.select = Some(vec!["TRIG001".into(), "DUP001".into()]);
        o
    };
    let one = tmp.path().join("text-one");
    let base = scan(&text_only(&one)).unwrap();
    let out = tmp.path().join("text-2");
    same_as_one_machine(&text_only(&out), (2, 9), &base, &one, name);
    let inputs = report(&out)["inputs"].clone();
    assert!(
        inputs
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["role"] != "embeddings"),
        "{inputs}"
    );
}

/// Runs the tasks as [`Local`] does, and changes one byte of `file` before round `round`.
struct Tampering<'a> {
    inner: Local<'a>,
    file: std::path::PathBuf,
    round: usize,
}

impl Runner for Tampering<'_> {
    fn partitions(&self) -> usize {
        self.inner.partitions()
    }

    fn engine(&self) -> String {
        self.inner.engine()
    }

    fn run(
        &mut self,
        plan: &Plan,
        round: usize,
        earlier: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, ScanError> {
        if round == self.round {
            let mut bytes = std::fs::read(&self.file).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
            std::fs::write(&self.file, bytes).unwrap();
        }
        self.inner.run(plan, round, earlier)
    }
}

/// A `.npy` file changed while the tasks read it (same size, one byte) fails the scan: the
/// tasks check its size only, and the planning side hashes it again before writing anything.
#[test]
fn a_npy_file_changed_during_a_partitioned_scan_is_an_error() {
    let (data, emb) = demo();
    let tmp = tempfile::tempdir().unwrap();
    let pq = tmp.path().join("reviews.parquet");
    set_parquet_with(&data, None, &pq, 300);
    let npy = tmp.path().join("reviews.npy");
    std::fs::copy(&emb, &npy).unwrap();
    let out = tmp.path().join("out");
    let mut o = options(&pq, &out);
    o.embedding_column = None;
    o.embeddings = Some(npy.clone());
    o.ground_truth_column = None;
    let mut runner = Tampering {
        inner: Local {
            opts: &o,
            k: 2,
            state: 3,
            caches: Default::default(),
            tasks: 0,
        },
        file: npy.clone(),
        round: 3,
    };
    let e = scan_partitioned(&o, &mut runner).unwrap_err().to_string();
    assert!(
        e.contains("reviews.npy: the input changed during the scan"),
        "{e}"
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn partitioned_scans_refuse_what_they_cannot_split() {
    let (data, _) = demo();
    let tmp = tempfile::tempdir().unwrap();
    // embeddings in a JSON file: no task can read its rows of it alone
    let emb = tmp.path().join("embeddings.json");
    std::fs::write(&emb, "[]").unwrap();
    let mut o = options(&data, &tmp.path().join("out"));
    o.embedding_column = None;
    o.embeddings = Some(emb);
    let mut runner = Local {
        opts: &o,
        k: 2,
        state: 1,
        caches: Default::default(),
        tasks: 0,
    };
    let e = scan_partitioned(&o, &mut runner).unwrap_err().to_string();
    assert!(e.contains(".npy"), "{e}");
}

/// JSONL is partitioned by byte ranges: the planning scan finds where blocks of rows begin,
/// and each task reads its lines from there. Three sets with their `.npy` embeddings, one of
/// them with blank lines and a line-ending mix (rows and error lines are numbered as the
/// single-machine scan numbers them), over 1, 2, 7 and 16 partitions: the single-machine
/// streaming scan's scores, flags, output bytes and report.
#[test]
fn partitioned_scans_read_jsonl_by_byte_ranges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let mut flagged = 0;
    for name in [
        "sst2-badnets-cleanlabel-10",
        "sst2-badnets-10",
        "sms-spam-clean",
    ] {
        let src = dir.join(format!("{name}.jsonl"));
        let npy = dir.join(format!("{name}.minilm.npy"));
        let data = tmp.path().join(format!("{name}.jsonl"));
        if name == "sst2-badnets-10" {
            // blank lines here and there, and CRLF line ends on some rows
            let text = std::fs::read_to_string(&src).unwrap();
            let mut out = String::from("\n");
            for (i, line) in text.lines().enumerate() {
                out.push_str(line);
                out.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
                if i % 97 == 0 {
                    out.push_str("  \n\n");
                }
            }
            std::fs::write(&data, out).unwrap();
        } else {
            std::fs::copy(&src, &data).unwrap();
        }
        let with_npy = |out: &Path| options_with_npy(&data, &npy, out);
        let one = tmp.path().join(format!("{name}-jsonl-one"));
        let base = scan(&with_npy(&one)).unwrap();
        flagged += base.reasons.len();
        for (k, seed) in [(1, 11), (2, 12), (7, 13), (16, 14)] {
            let out = tmp.path().join(format!("{name}-jsonl-{k}"));
            same_as_one_machine(&with_npy(&out), (k, seed), &base, &one, name);
            let r = report(&out);
            assert_eq!(r["settings"]["partitions"], k, "{name}");
        }
    }
    assert!(flagged > 600, "{flagged} rows flagged");
}

/// Checks the report in `out` lists a folder's files `names` in row order, its digest being
/// that of their manifest (`<sha256>  <name>` lines), its size theirs and its rows `n`.
fn assert_manifest(out: &Path, names: &[&str], n: usize) {
    let input = report(out)["inputs"][0].clone();
    let files = input["files"].as_array().unwrap();
    let got: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(got, names);
    let manifest: String = files
        .iter()
        .map(|f| {
            format!(
                "{}  {}\n",
                f["sha256"].as_str().unwrap(),
                f["name"].as_str().unwrap()
            )
        })
        .collect();
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(manifest.as_bytes()));
    assert_eq!(input["sha256"], want.as_str());
    assert_eq!(input["rows"], n);
    assert_eq!(
        input["bytes"].as_u64().unwrap(),
        files
            .iter()
            .map(|f| f["bytes"].as_u64().unwrap())
            .sum::<u64>()
    );
}

/// The bytes `inject` writes to `out` for badnets at 1 % into `data`.
fn injected(data: &Path, out: &Path) -> Vec<u8> {
    use poisongate::inject::{inject, Attack, GroundTruthPolicy, InjectOptions};
    let attack = Attack::from_parts("badnets", None, None, None).unwrap();
    let mut o = InjectOptions::new(data, out, attack, 0.01);
    o.target_label = Some("1".into());
    o.ground_truth_policy = GroundTruthPolicy::Replace;
    inject(&o).unwrap();
    std::fs::read(out).unwrap()
}

/// A folder of Parquet files is one table, its files in the order of their paths: the same
/// verdicts, scores and output bytes as the same rows in one file, in memory, streamed and
/// over 1, 2, 7 and 16 partitions (row groups counted across the files); the report lists
/// each file with its digest, the folder's digest being that of their manifest.
#[test]
fn a_folder_of_parquet_files_is_one_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    for name in ["sst2-badnets-cleanlabel-10", "sst2-addsent-10"] {
        let set = dir.join(format!("{name}.jsonl"));
        let npy = dir.join(format!("{name}.minilm.npy"));
        let n = jsonl(&set).len();
        let pq = tmp.path().join(format!("{name}.parquet"));
        set_parquet(&set, &npy, &pq, n.div_ceil(20));
        // three files of uneven rows and row groups, one in a subfolder, and what a writer
        // leaves beside them
        let folder = tmp.path().join(format!("{name}-parts"));
        std::fs::create_dir_all(folder.join("b")).unwrap();
        let (a, b) = (n / 5, n / 5 + n / 2);
        set_parquet_rows(&set, Some(&npy), &folder.join("a-0.parquet"), 97, 0..a);
        set_parquet_rows(&set, Some(&npy), &folder.join("a-1.parquet"), 1000, a..b);
        set_parquet_rows(
            &set,
            Some(&npy),
            &folder.join("b/part-0.parquet"),
            333,
            b..n,
        );
        std::fs::write(folder.join("_SUCCESS"), b"").unwrap();
        std::fs::write(folder.join(".a-0.parquet.crc"), b"crc").unwrap();

        let file_one = tmp.path().join(format!("{name}-file"));
        let file_base = scan(&options(&pq, &file_one)).unwrap();
        let one = tmp.path().join(format!("{name}-folder"));
        let base = scan(&options(&folder, &one)).unwrap();
        let bits = |s: &[f64]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&base.scores), bits(&file_base.scores), "{name}");
        assert_eq!(base.reasons, file_base.reasons, "{name}");
        assert!(!base.reasons.is_empty(), "{name}");
        for f in ["clean.parquet", "quarantine.parquet"] {
            assert!(
                std::fs::read(one.join(f)).unwrap() == std::fs::read(file_one.join(f)).unwrap(),
                "{name}: {f} differs from the one file's"
            );
        }
        let mut in_memory = options(&folder, &tmp.path().join(format!("{name}-memory")));
        in_memory.stream = false;
        let m = scan(&in_memory).unwrap();
        assert_eq!(m.reasons, base.reasons, "{name}: in memory");

        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root().join("reports/report.schema.json")).unwrap(),
        )
        .unwrap();
        let mut errors = Vec::new();
        crate::schema::check(&schema, &schema, &report(&one), "$", &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
        assert_manifest(&one, &["a-0.parquet", "a-1.parquet", "b/part-0.parquet"], n);

        for (k, seed) in [(1, 11), (2, 12), (7, 13), (16, 14)] {
            let out = tmp.path().join(format!("{name}-folder-{k}"));
            same_as_one_machine(&options(&folder, &out), (k, seed), &base, &one, name);
        }
        // inject reads a folder as it reads the one file: the same output bytes
        assert!(
            injected(
                &folder,
                &tmp.path().join(format!("{name}-inj-folder.parquet"))
            ) == injected(&pq, &tmp.path().join(format!("{name}-inj-file.parquet"))),
            "{name}: inject"
        );
    }
}

/// A folder of JSONL files (`.jsonl`, and `.json` as Spark and Ray Data write JSON lines) is
/// one table, as a folder of Parquet files is: the same verdicts, scores and output bytes as
/// the same lines in one file, in memory, streamed and over 1, 2, 7 and 16 partitions (blocks
/// of rows cut across the files); the report lists each file with its digest; inject gives
/// the one file's bytes; an error in a later file names that file and its own line.
#[test]
fn a_folder_of_jsonl_files_is_one_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = benchmarks().expect("../shared/benchmarks is needed for the quality tests");
    let name = "sst2-badnets-cleanlabel-10";
    let src = dir.join(format!("{name}.jsonl"));
    let npy = dir.join(format!("{name}.minilm.npy"));
    let text = std::fs::read_to_string(&src).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    let (a, b) = (n / 5, n / 5 + n / 2);
    let folder = tmp.path().join("parts");
    std::fs::create_dir_all(folder.join("b")).unwrap();
    let write = |path: &Path, rows: &[&str]| {
        let mut out = rows.join("\n");
        out.push('\n');
        std::fs::write(path, out).unwrap();
    };
    write(&folder.join("a-0.jsonl"), &lines[..a]);
    write(&folder.join("a-1.json"), &lines[a..b]);
    write(&folder.join("b/part-0.jsonl"), &lines[b..]);
    std::fs::write(folder.join("_SUCCESS"), b"").unwrap();
    let file = tmp.path().join("one.jsonl");
    write(&file, &lines);

    let file_one = tmp.path().join("file-out");
    let file_base = scan(&options_with_npy(&file, &npy, &file_one)).unwrap();
    let one = tmp.path().join("folder-out");
    let base = scan(&options_with_npy(&folder, &npy, &one)).unwrap();
    let bits = |s: &[f64]| s.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&base.scores), bits(&file_base.scores));
    assert_eq!(base.reasons, file_base.reasons);
    assert!(!base.reasons.is_empty());
    for f in ["clean.jsonl", "quarantine.jsonl"] {
        assert!(
            std::fs::read(one.join(f)).unwrap() == std::fs::read(file_one.join(f)).unwrap(),
            "{f} differs from the one file's"
        );
    }
    let mut in_memory = options_with_npy(&folder, &npy, &tmp.path().join("memory"));
    in_memory.stream = false;
    assert_eq!(scan(&in_memory).unwrap().reasons, base.reasons, "in memory");

    assert_manifest(&one, &["a-0.jsonl", "a-1.json", "b/part-0.jsonl"], n);

    for (k, seed) in [(1, 11), (2, 12), (7, 13), (16, 14)] {
        let out = tmp.path().join(format!("folder-{k}"));
        same_as_one_machine(
            &options_with_npy(&folder, &npy, &out),
            (k, seed),
            &base,
            &one,
            name,
        );
    }
    assert!(
        injected(&folder, &tmp.path().join("inj-folder.jsonl"))
            == injected(&file, &tmp.path().join("inj-file.jsonl")),
        "inject"
    );

    // a broken line in the second file: the error names that file and its line
    let mut broken: Vec<&str> = lines[a..b].to_vec();
    broken[4] = "{\"id\": \"x\", \"text\": ";
    write(&folder.join("a-1.json"), &broken);
    let out = tmp.path().join("broken-out");
    let e = scan(&options_with_npy(&folder, &npy, &out))
        .unwrap_err()
        .to_string();
    assert!(e.contains("a-1.json") && e.contains("line 5"), "{e}");
    assert!(!out.exists(), "nothing is written");
    // one folder, one format
    set_parquet_rows(&src, None, &folder.join("c.parquet"), 100, 0..10);
    let e = scan(&options_with_npy(&folder, &npy, &tmp.path().join("mixed")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("c.parquet") && e.contains("one format"), "{e}");
}

/// A folder's files must make one table: a stray file, a file without a requested column, a
/// file with other columns and an empty folder are errors naming the file, and nothing is
/// written.
#[test]
fn a_folder_that_is_not_one_table_is_an_error() {
    let (data, _) = demo();
    let tmp = tempfile::tempdir().unwrap();
    let scan_folder = |folder: &Path, what: &str| -> String {
        let out = tmp.path().join(format!("out-{what}"));
        let mut o = options(folder, &out);
        o.embedding_column = None;
        o.ground_truth_column = None;
        o.select = Some(vec!["DUP001".into()]);
        let e = scan(&o).unwrap_err().to_string();
        assert!(!out.exists(), "{what}: nothing is written");
        e
    };
    let folder = tmp.path().join("parts");
    std::fs::create_dir_all(&folder).unwrap();
    let e = scan_folder(&folder, "empty");
    assert!(e.contains("no Parquet file"), "{e}");
    set_parquet_rows(&data, None, &folder.join("p0.parquet"), 100, 0..300);
    set_parquet_rows(
        &data,
        None,
        &folder.join("p1.parquet"),
        100,
        300..usize::MAX,
    );
    std::fs::write(folder.join("notes.csv"), b"a,b").unwrap();
    let e = scan_folder(&folder, "stray");
    assert!(
        e.contains("notes.csv") && e.contains("Parquet files"),
        "{e}"
    );
    std::fs::remove_file(folder.join("notes.csv")).unwrap();
    // a file without the label column
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        (
            "text",
            Arc::new(StringArray::from(vec!["a text"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let f = std::fs::File::create(folder.join("p2.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let e = scan_folder(&folder, "missing");
    assert!(e.contains("p2.parquet") && e.contains("label"), "{e}");
    // a file with one more column
    let rows = jsonl(&data);
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        (
            "text",
            Arc::new(StringArray::from(vec!["a text"])) as ArrayRef,
        ),
        (
            "label",
            Arc::new(Int64Array::from(vec![rows[0]["label"].as_i64().unwrap()])) as ArrayRef,
        ),
        (
            "poison",
            Arc::new(BooleanArray::from(vec![false])) as ArrayRef,
        ),
        ("extra", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
    ])
    .unwrap();
    let f = std::fs::File::create(folder.join("p2.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let e = scan_folder(&folder, "columns");
    assert!(
        e.contains("p2.parquet") && e.contains("same columns"),
        "{e}"
    );
}
