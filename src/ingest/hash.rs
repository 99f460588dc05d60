//! SHA-256 of input files, computed while they are read.

use super::*;

/// A reader that hashes and counts every byte read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Read to the end (so every byte is hashed) and return the digest.
    pub(crate) fn finish(mut self, path: &Path) -> Result<FileDigest, IngestError> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| IngestError::io(path, e))?;
        Ok(FileDigest {
            path: path.to_path_buf(),
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// SHA-256 and size of a file, streamed with a 1 MiB buffer.
pub fn sha256_file(path: &Path) -> Result<FileDigest, IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    hash_reader(file, path)
}

pub(super) fn hash_reader(reader: impl Read, path: &Path) -> Result<FileDigest, IngestError> {
    let mut reader = HashingReader::new(reader);
    let mut buf = vec![0u8; HASH_BUFFER];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IngestError::io(path, e)),
        }
    }
    reader.finish(path)
}

/// Hash an already opened file from its start, through a handle that is then discarded.
/// Used so that the bytes hashed and the bytes parsed come from the same open file.
pub(crate) fn hash_open_file(file: &File, path: &Path) -> Result<FileDigest, IngestError> {
    let clone = file.try_clone().map_err(|e| IngestError::io(path, e))?;
    let mut clone = clone;
    io::Seek::rewind(&mut clone).map_err(|e| IngestError::io(path, e))?;
    hash_reader(clone, path)
}
