//! The outputs: staged in a folder beside `--out`, reconciled, described, attested, then the
//! folder renamed into place in one step.
//!
//! A result appears whole or not at all. Every file is written into a new folder in the same
//! parent as `--out` (so on the same file system), named `.<name>.poisongate-staging-<random>`,
//! fsynced, and the folder is renamed to `--out` with one `rename(2)`. A scan killed before
//! that leaves at most such a staging folder: never a result (`poisongate verify` refuses a
//! folder with that name). `--out` must not exist or be an empty folder (renamed over); a
//! folder with anything in it is refused, so an earlier result is never mixed with, or
//! silently replaced by, a new one. When two scans race for the same `--out`, the first rename
//! wins and the other scan fails (its rename meets a folder that is no longer empty) and
//! removes its staging folder.

use super::*;

/// What marks a staging folder's name: `.<name>` + this + random characters.
pub const STAGING_MARK: &str = ".poisongate-staging-";

/// Refuse an `--out` that exists and is not an empty folder.
pub(super) fn check_target(out: &Path) -> Result<(), ScanError> {
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(out)(e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries = std::fs::read_dir(out).map_err(io_err(out))?;
            if entries.next().is_none() {
                Ok(())
            } else {
                Err(ScanError::Config(format!(
                    "--out {} already exists and is not empty: a scan writes a new folder in \
                     one step and never mixes its files with others; remove it or give another \
                     folder",
                    out.display()
                )))
            }
        }
        Ok(_) => Err(ScanError::Config(format!(
            "--out {} exists and is not a folder",
            out.display()
        ))),
    }
}

fn fsync_dir(dir: &Path) -> Result<(), ScanError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Write a small file (fsynced later with the rest of the folder, [`FolderSync`]).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ScanError> {
    std::fs::write(path, bytes).map_err(io_err(path))
}

/// fsyncs of the files of a folder, one thread each (each `fsync(2)` waits on the device,
/// and the waits overlap), started file by file ([`FolderSync::add`]) as soon as a file is
/// complete, and awaited by [`FolderSync::wait`], which then fsyncs the folder itself.
struct FolderSync {
    dir: PathBuf,
    /// Each file, with its fsync's thread (`Err`: the thread could not be started, so the
    /// file is fsynced in [`FolderSync::wait`]).
    files: Vec<(
        PathBuf,
        std::io::Result<std::thread::JoinHandle<std::io::Result<()>>>,
    )>,
}

impl FolderSync {
    fn new(dir: &Path) -> FolderSync {
        FolderSync {
            dir: dir.to_path_buf(),
            files: Vec::new(),
        }
    }

    /// Start fsyncing `file`, which is written whole.
    fn add(&mut self, file: &Path) {
        let path = file.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("fsync".into())
            .spawn(move || std::fs::File::open(&path).and_then(|h| h.sync_all()));
        self.files.push((file.to_path_buf(), thread));
    }

    /// Start fsyncing every file of the folder not added yet.
    fn add_rest(&mut self) -> Result<(), ScanError> {
        let dir = self.dir.clone();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io_err(&dir))?;
        paths.sort();
        for p in paths {
            if !self.files.iter().any(|(f, _)| *f == p) {
                self.add(&p);
            }
        }
        Ok(())
    }

    /// Wait for every file's fsync (errors reported in file-name order), then fsync the
    /// folder.
    fn wait(mut self) -> Result<(), ScanError> {
        let mut first: Option<ScanError> = None;
        let mut files = std::mem::take(&mut self.files);
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (f, thread) in files {
            let done = match thread {
                Ok(t) => t.join().unwrap_or_else(|_| {
                    Err(std::io::Error::other(format!(
                        "fsync of {} failed",
                        f.display()
                    )))
                }),
                Err(_) => std::fs::File::open(&f).and_then(|h| h.sync_all()),
            };
            if let (Err(e), None) = (done, &first) {
                first = Some(io_err(&f)(e));
            }
        }
        match first {
            Some(e) => Err(e),
            None => fsync_dir(&self.dir),
        }
    }
}

impl Drop for FolderSync {
    fn drop(&mut self) {
        // not awaited (an error came first): the threads still end before the folder goes
        for (_, thread) in self.files.drain(..) {
            if let Ok(t) = thread {
                let _ = t.join();
            }
        }
    }
}

/// Outputs written into a staging folder whose files are being fsynced:
/// [`Staged::publish`] renames the folder into place once they are. Dropped unpublished, the
/// staging folder is removed.
pub(super) struct Staged {
    // declared first, so dropped first: the fsyncs end before the folder is removed
    sync: FolderSync,
    staging: tempfile::TempDir,
    out: PathBuf,
    parent: PathBuf,
}

impl Staged {
    /// Wait for the fsyncs, then rename the staging folder to `--out` (see the module
    /// documentation).
    pub(super) fn publish(self) -> Result<(), ScanError> {
        let Staged {
            sync,
            staging,
            out,
            parent,
        } = self;
        sync.wait()?;
        match std::fs::rename(staging.path(), &out) {
            Ok(()) => {
                // the folder is `out` now: nothing left to remove
                let _ = staging.keep();
                fsync_dir(&parent)
            }
            Err(e) if out.is_dir() => Err(ScanError::Config(format!(
                "--out {} was created by another process while this scan ran (another scan \
                 of the same --out?); this scan's result was discarded ({e})",
                out.display()
            ))),
            Err(e) => Err(io_err(&out)(e)),
        }
    }
}

/// Stage every output in a new folder beside `out`, check the reconciliation against what was
/// written, render `report.html`, describe everything in `bom.cdx.json` (CycloneDX), attest
/// everything in `provenance.intoto.json`, and start fsyncing the files; [`Staged::publish`]
/// then renames the folder to `out` (see the module documentation), and the caller can free
/// what it no longer needs in between. On error nothing is left behind. `ids` holds the id of
/// every row of the file, when the scan has an id column.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_outputs(
    opts: &ScanOptions,
    table: &Table,
    verdicts: &SparseVerdicts,
    duplicate_of: Option<&[Option<usize>]>,
    ids: Option<&[String]>,
    excerpts: &BTreeMap<usize, String>,
    out: &Path,
    report: &mut Report,
) -> Result<Staged, ScanError> {
    check_target(out)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            ScanError::Config(format!("--out {} does not name a folder", out.display()))
        })?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    // removed again on any error (the guard's drop); kept only by the final rename
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}{STAGING_MARK}"))
        .tempdir_in(&parent)
        .map_err(io_err(&parent))?;
    let mut sync = FolderSync::new(staging.path());
    stage(
        opts,
        table,
        verdicts,
        duplicate_of,
        ids,
        excerpts,
        staging.path(),
        report,
        &mut sync,
    )?;
    sync.add_rest()?;
    Ok(Staged {
        sync,
        staging,
        out: out.to_path_buf(),
        parent,
    })
}

/// Write every output file into `dir`, starting the fsyncs of the rows' files in `sync`.
#[allow(clippy::too_many_arguments)]
fn stage(
    opts: &ScanOptions,
    table: &Table,
    verdicts: &SparseVerdicts,
    duplicate_of: Option<&[Option<usize>]>,
    ids: Option<&[String]>,
    excerpts: &BTreeMap<usize, String>,
    dir: &Path,
    report: &mut Report,
    sync: &mut FolderSync,
) -> Result<(), ScanError> {
    let split = emit::write_split_dedup(
        &opts.data,
        table.format,
        &table.digest.sha256,
        verdicts,
        duplicate_of,
        ids,
        dir,
    )?;
    let (clean, quarantine): (OutputFile, OutputFile) = (split.clean, split.quarantine);
    let dups = split.duplicates;
    // the rows' files are fsynced while the report and the files describing them are made
    for f in [Some(&clean), Some(&quarantine), dups.as_ref()]
        .into_iter()
        .flatten()
    {
        sync.add(&f.path);
    }
    let dup_rows = dups.as_ref().map_or(0, |d| d.rows);
    let rec = &mut report.reconciliation;
    rec.clean_rows = clean.rows;
    // the quarantine output holds the flagged rows and the invalid ones
    rec.quarantined_rows = quarantine.rows.saturating_sub(rec.invalid_rows);
    rec.balanced = clean.rows + quarantine.rows + dup_rows == rec.input_rows
        && dup_rows == rec.duplicate_rows
        && quarantine.rows >= rec.invalid_rows;
    if !rec.balanced {
        return Err(ScanError::Config(format!(
            "reconciliation failed: {} input rows, but {} clean + {} quarantined (of which {} invalid expected) + {} duplicates written ({} duplicates expected)",
            rec.input_rows, clean.rows, quarantine.rows, rec.invalid_rows, dup_rows, rec.duplicate_rows
        )));
    }
    report.outputs = [("clean", &clean), ("quarantine", &quarantine)]
        .into_iter()
        .chain(dups.as_ref().map(|d| ("duplicates", d)))
        .map(|(role, f)| OutputEntry {
            role,
            path: file_name(&f.path),
            rows: f.rows,
            bytes: f.bytes,
            sha256: f.sha256.clone(),
        })
        .collect();
    let report_path = dir.join("report.json");
    let mut text = serde_json::to_string_pretty(report)
        .map_err(|e| ScanError::Config(format!("cannot serialise the report: {e}")))?;
    text.push('\n');
    let report_sha = hex::encode(Sha256::digest(text.as_bytes()));
    write_file(&report_path, text.as_bytes())?;
    let html_path = dir.join(html::FILE_NAME);
    // the page and the bill of materials are made side by side; the bill is a function of
    // the report's bytes, as `poisongate bom` makes it
    let shown: &Report = report;
    let (page, bom_bytes) = rayon::join(
        || html::render(shown, excerpts),
        || bom::from_report_text(&text),
    );
    let html_sha = hex::encode(Sha256::digest(page.as_bytes()));
    write_file(&html_path, page.as_bytes())?;
    let bom_path = dir.join(bom::FILE_NAME);
    let bom_bytes =
        bom_bytes.map_err(|e| ScanError::Config(format!("cannot make {}: {e}", bom::FILE_NAME)))?;
    let bom_sha = hex::encode(Sha256::digest(&bom_bytes));
    write_file(&bom_path, &bom_bytes)?;
    let subjects: Vec<provenance::Subject> = [
        (file_name(&clean.path), clean.sha256.clone()),
        (file_name(&quarantine.path), quarantine.sha256.clone()),
    ]
    .into_iter()
    .chain(
        dups.as_ref()
            .map(|d| (file_name(&d.path), d.sha256.clone())),
    )
    .chain([
        ("report.json".to_string(), report_sha),
        (html::FILE_NAME.to_string(), html_sha),
        (bom::FILE_NAME.to_string(), bom_sha),
    ])
    .map(|(name, sha256)| provenance::Subject { name, sha256 })
    .collect();
    let prov_path = dir.join(provenance::FILE_NAME);
    let statement = provenance::statement(report, &subjects);
    write_file(&prov_path, &provenance::to_bytes(&statement))?;
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
