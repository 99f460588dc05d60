//! A folder of Parquet or JSONL files read as one table, the layout Spark, Ray Data, pyarrow's
//! `write_dataset` and most lakes write: `part-00000.parquet`, `part-00001.parquet`, ...
//! (or `part-00000.json`, ...), possibly in subfolders (`date=2026-12-01/part-0.parquet`).
//!
//! - **Which files.** Every file ending in `.parquet` or `.pq`, or every file ending in
//!   `.jsonl`, `.ndjson`, `.json-lines` or `.json` (case-insensitive; Spark's and Ray Data's
//!   `write_json` write JSON lines into `.json` files), in the folder and its subfolders. One
//!   folder holds one format: a file of the other is an error naming it. Names starting with
//!   `.` or `_` are skipped, files and folders alike (`_SUCCESS`, `_metadata`, `.part-0.crc`,
//!   staging folders). Any other file is an error naming it: rows are never left out silently.
//!   Symbolic links to folders are not followed (no cycles); links to files are read.
//! - **Row order.** Files in the byte order of their paths relative to the folder (`/` between
//!   components), rows in file order within each: row `k` of the table is the same row on every
//!   machine and in every partitioning, as with one file.
//! - **Identity.** The folder's SHA-256 is that of its manifest, one line per file in row order,
//!   `<sha256 of the file>  <relative path>\n` (the format `sha256sum` prints), so
//!   `cd DIR && sha256sum part-0.parquet part-1.parquet | sha256sum` gives the same digest; its
//!   size is the sum of the files' sizes. The report lists every file with its own digest.
//! - **One schema.** Each file is read with the same projection; a file without a requested
//!   column is an error naming that file (JSONL: its line). The Parquet outputs (one
//!   `clean.parquet`, one `quarantine.parquet`) need the files' columns to be the same, names,
//!   types and nullability; key-value metadata (pandas writes a different index range per
//!   file) may differ and is taken from the first file. The JSONL outputs are the lines of
//!   every file in row order, as with one file.

use super::*;

/// One file of a folder read as a table: its path relative to the folder, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartDigest {
    /// Path relative to the folder, components joined by `/`.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

/// The table files of the folder `dir` in row order, (relative name, path), and their format.
pub fn folder_parts(dir: &Path) -> Result<(Format, Vec<(String, PathBuf)>), IngestError> {
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let Some(format) = out.first().map(|p| p.2) else {
        return Err(IngestError::UnsupportedFormat {
            path: dir.to_path_buf(),
            message: "the folder holds no Parquet file (.parquet, .pq) and no JSONL file \
                      (.jsonl, .ndjson, .json-lines, .json); a folder is read as one table of \
                      its files"
                .to_string(),
        });
    };
    if let Some(other) = out.iter().find(|p| p.2 != format) {
        return Err(IngestError::UnsupportedFormat {
            path: other.1.clone(),
            message: format!(
                "a {} file in a folder of {format} files ({} first); a folder read as a table \
                 holds files of one format",
                other.2, out[0].0
            ),
        });
    }
    Ok((format, out.into_iter().map(|(n, p, _)| (n, p)).collect()))
}

/// The format of a file in a folder read as a table, from its extension: besides the
/// extensions one file is read by, `.json` (Spark's and Ray Data's JSON lines).
fn part_format(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "json" => Some(Format::Jsonl),
        _ => Format::from_path(path).ok(),
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf, Format)>,
) -> Result<(), IngestError> {
    let entries = std::fs::read_dir(dir).map_err(|e| IngestError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(IngestError::UnsupportedFormat {
                path,
                message: "a file name that is not UTF-8 in a folder read as a table".to_string(),
            });
        };
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let kind = entry.file_type().map_err(|e| IngestError::io(&path, e))?;
        if kind.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        if kind.is_symlink() && path.is_dir() {
            continue;
        }
        match part_format(&path) {
            Some(format) => {
                let rel = path
                    .strip_prefix(root)
                    .map(|r| {
                        r.components()
                            .map(|c| c.as_os_str().to_string_lossy())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_else(|_| name.to_string());
                out.push((rel, path, format));
            }
            None => {
                return Err(IngestError::UnsupportedFormat {
                    path,
                    message: "a folder read as a table holds Parquet files (.parquet, .pq) or \
                              JSONL files (.jsonl, .ndjson, .json-lines, .json) only, besides \
                              names starting with `.` or `_`; move this file out or rename it"
                        .to_string(),
                })
            }
        }
    }
    Ok(())
}

/// The folder's digest from its files' digests, in row order (see the [module docs](self)).
pub fn folder_digest(dir: &Path, parts: Vec<PartDigest>) -> FileDigest {
    let mut manifest = Sha256::new();
    for p in &parts {
        manifest.update(format!("{}  {}\n", p.sha256, p.name).as_bytes());
    }
    FileDigest {
        path: dir.to_path_buf(),
        bytes: parts.iter().map(|p| p.bytes).sum(),
        sha256: hex::encode(manifest.finalize()),
        parts,
    }
}

/// Hash every table file of the folder `dir`: its digest, with the files'.
pub fn hash_folder(dir: &Path) -> Result<FileDigest, IngestError> {
    hash_parts(dir, &folder_parts(dir)?.1)
}

/// The digest of the folder `dir` from its files `parts` (as [`parquet_parts`] lists them),
/// each hashed once.
pub(super) fn hash_parts(
    dir: &Path,
    parts: &[(String, PathBuf)],
) -> Result<FileDigest, IngestError> {
    let digests = parts
        .iter()
        .map(|(name, path)| {
            let d = sha256_file(path)?;
            Ok(PartDigest {
                name: name.clone(),
                bytes: d.bytes,
                sha256: d.sha256,
            })
        })
        .collect::<Result<Vec<_>, IngestError>>()?;
    Ok(folder_digest(dir, digests))
}

/// The files of `path` read as one table: the file itself, or a folder's files.
pub fn table_files(path: &Path) -> Result<Vec<(String, PathBuf)>, IngestError> {
    if path.is_dir() {
        Ok(folder_parts(path)?.1)
    } else {
        Ok(vec![(String::new(), path.to_path_buf())])
    }
}

/// The size on disk of what `path` names as a table (a file, or a folder's files).
pub(super) fn table_bytes(path: &Path) -> Result<u64, IngestError> {
    let mut total = 0u64;
    for (_, p) in table_files(path)? {
        total += std::fs::metadata(&p)
            .map_err(|e| IngestError::io(&p, e))?
            .len();
    }
    Ok(total)
}
