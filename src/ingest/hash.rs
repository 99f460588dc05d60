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

    /// The reader, the hasher and the count of bytes hashed so far, to go on without the
    /// wrapper (see [`hash_while`]).
    pub(crate) fn into_parts(self) -> (R, Sha256, u64) {
        (self.inner, self.hasher, self.bytes)
    }

    /// Read to the end (so every byte is hashed) and return the digest.
    pub(crate) fn finish(mut self, path: &Path) -> Result<FileDigest, IngestError> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| IngestError::io(path, e))?;
        Ok(FileDigest {
            path: path.to_path_buf(),
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
            parts: Vec::new(),
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

/// Fills `dst` from `reader` in blocks, hashing each block with `hasher` on one thread while
/// the next is read on another (SHA-256 of a large matrix took as long as reading it). Then
/// reads on to the end: bytes past `dst` are an error (the file grew or changed since its
/// size was checked), named by `path`. Returns the digest of everything hashed, `bytes`
/// counting what `hasher` had already seen.
pub(crate) fn read_hashing_into(
    mut reader: impl Read + Send,
    mut hasher: Sha256,
    bytes: u64,
    dst: &mut [u8],
    path: &Path,
) -> Result<FileDigest, IngestError> {
    const BLOCK: usize = 1 << 20;
    let len = dst.len() as u64;
    let mut blocks = dst.chunks_mut(BLOCK);
    let mut last: Option<&[u8]> = None;
    loop {
        let next = blocks.next();
        let (read, ()) = rayon::join(
            || match next {
                Some(block) => reader.read_exact(block).map(|()| Some(&*block)),
                None => Ok(None),
            },
            || {
                if let Some(b) = last {
                    hasher.update(b);
                }
            },
        );
        match read.map_err(|e| IngestError::io(path, e))? {
            Some(block) => last = Some(block),
            None => break,
        }
    }
    let mut rest = HashingReader {
        inner: reader,
        hasher,
        bytes: bytes + len,
    };
    let mut probe = [0u8; 1];
    if rest
        .read(&mut probe)
        .map_err(|e| IngestError::io(path, e))?
        > 0
    {
        return Err(IngestError::io(
            path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the file is longer than when its size was read (it changed during the scan)",
            ),
        ));
    }
    rest.finish(path)
}
