// Shared by the targets: one temporary file per process, rewritten for every input, so the
// readers are fuzzed through the same path-based entry points the CLI uses.

use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    pub fn new(file_name: &str) -> Scratch {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(file_name);
        Scratch { _dir: dir, path }
    }

    pub fn write(&self, bytes: &[u8]) -> &Path {
        let mut f = std::fs::File::create(&self.path).expect("scratch file");
        f.write_all(bytes).expect("scratch write");
        // POISONGATE_FUZZ_KEEP=FILE keeps a copy of the file the reader was given, so that a
        // crash found through a generated input becomes a plain file for a regression test.
        if let Some(keep) = std::env::var_os("POISONGATE_FUZZ_KEEP") {
            std::fs::write(keep, bytes).expect("copy of the scratch file");
        }
        &self.path
    }
}
