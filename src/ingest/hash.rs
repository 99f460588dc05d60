//! SHA-256 of input files, computed while they are read.

use super::*;

/// A reader that hashes and counts every byte read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    /// With [`HashingReader::hashing_aside`]: the hasher that takes over from `hasher` at the
    /// first read, on a thread of its own.
    aside: Option<Aside>,
    bytes: u64,
}

/// Where the hashing of a [`HashingReader::hashing_aside`] reader is.
enum Aside {
    /// Not started: nothing read yet.
    Waiting,
    Running(BlockHasher),
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            aside: None,
            bytes: 0,
        }
    }

    /// As [`HashingReader::new`], but the bytes read are hashed on a thread of their own (a
    /// copy of each read is handed over), so that hashing overlaps with what the caller does
    /// with them. For a whole read whose caller keeps one core busy while another is free.
    pub(crate) fn hashing_aside(inner: R) -> Self {
        HashingReader {
            aside: Some(Aside::Waiting),
            ..HashingReader::new(inner)
        }
    }

    /// The reader, the hasher and the count of bytes hashed so far, to go on without the
    /// wrapper (see [`hash_while`]).
    pub(crate) fn into_parts(self) -> io::Result<(R, Sha256, u64)> {
        let hasher = match self.aside {
            Some(Aside::Running(h)) => h.finish()?,
            _ => self.hasher,
        };
        Ok((self.inner, hasher, self.bytes))
    }

    /// Read to the end (so every byte is hashed) and return the digest.
    pub(crate) fn finish(mut self, path: &Path) -> Result<FileDigest, IngestError> {
        io::copy(&mut self, &mut io::sink()).map_err(|e| IngestError::io(path, e))?;
        let bytes = self.bytes;
        let (_, hasher, _) = self.into_parts().map_err(|e| IngestError::io(path, e))?;
        Ok(FileDigest {
            path: path.to_path_buf(),
            bytes,
            sha256: hex::encode(hasher.finalize()),
            parts: Vec::new(),
        })
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match &mut self.aside {
            None => self.hasher.update(&buf[..n]),
            Some(_) if n == 0 => {}
            Some(a) => {
                if matches!(a, Aside::Waiting) {
                    match BlockHasher::start(std::mem::take(&mut self.hasher)) {
                        Ok(h) => *a = Aside::Running(h),
                        // no thread to be had: hashed here, as by `new`
                        Err(hasher) => {
                            self.hasher = hasher;
                            self.aside = None;
                        }
                    }
                }
                match &mut self.aside {
                    Some(Aside::Running(h)) => h.update(&buf[..n])?,
                    _ => self.hasher.update(&buf[..n]),
                }
            }
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Blocks handed to a [`BlockHasher`] and not yet hashed, at most: the memory it takes is
/// bounded by this many blocks (and as many spare ones).
const BLOCKS_IN_FLIGHT: usize = 2;

/// SHA-256 of a stream of blocks, computed on a thread of its own while the caller goes on.
/// Blocks are hashed in the order given; each is handed back for reuse once hashed. A caller
/// that runs ahead waits when [`BLOCKS_IN_FLIGHT`] blocks are not yet hashed.
pub(crate) struct BlockHasher {
    blocks: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    worker: Option<std::thread::JoinHandle<Sha256>>,
}

impl BlockHasher {
    /// Go on from `hasher` on a new thread; `Err(hasher)` back when no thread can be started
    /// (the caller then hashes where it is).
    pub(crate) fn start(hasher: Sha256) -> Result<Self, Sha256> {
        let (blocks, todo) = std::sync::mpsc::sync_channel::<Vec<u8>>(BLOCKS_IN_FLIGHT);
        let (give_back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
        // the hasher reaches the thread through a channel, so that it comes back when the
        // thread cannot be started
        let (handover, first) = std::sync::mpsc::channel::<Sha256>();
        let worker = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || {
                let mut hasher = first.recv().unwrap_or_default();
                for block in todo {
                    hasher.update(&block);
                    // the caller may be gone already: then nobody needs the buffer
                    let _ = give_back.send(block);
                }
                hasher
            });
        let worker = match worker {
            Ok(w) => w,
            // the closure, and the receiving end with it, is gone: nothing was sent yet
            Err(_) => return Err(hasher),
        };
        if let Err(back) = handover.send(hasher) {
            return Err(back.0);
        }
        Ok(BlockHasher {
            blocks: Some(blocks),
            spare,
            worker: Some(worker),
        })
    }

    /// An empty buffer: a hashed block handed back, or a new one.
    pub(crate) fn buffer(&self) -> Vec<u8> {
        match self.spare.try_recv() {
            Ok(mut b) => {
                b.clear();
                b
            }
            Err(_) => Vec::new(),
        }
    }

    /// Hash `block` after every block given before.
    pub(crate) fn push(&mut self, block: Vec<u8>) -> io::Result<()> {
        let gone = || io::Error::other("the hashing thread stopped");
        self.blocks
            .as_ref()
            .ok_or_else(gone)?
            .send(block)
            .map_err(|_| gone())
    }

    /// Hash a copy of `bytes` after every block given before.
    pub(crate) fn update(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut block = self.buffer();
        block.extend_from_slice(bytes);
        self.push(block)
    }

    /// The hasher once every block is hashed.
    pub(crate) fn finish(mut self) -> io::Result<Sha256> {
        self.blocks = None;
        self.worker
            .take()
            .ok_or_else(|| io::Error::other("the hashing thread stopped"))?
            .join()
            .map_err(|_| io::Error::other("the hashing thread failed"))
    }
}

impl Drop for BlockHasher {
    fn drop(&mut self) {
        // the thread ends once the channel closes; nothing is left running
        self.blocks = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
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
/// counting what `hasher` had already seen. Each block is also given to `inspect` right after
/// it is hashed, while it is still in the cache.
pub(crate) fn read_hashing_into(
    mut reader: impl Read + Send,
    mut hasher: Sha256,
    bytes: u64,
    dst: &mut [u8],
    path: &Path,
    inspect: &mut (dyn FnMut(&[u8]) + Send),
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
                    inspect(b);
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
        aside: None,
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
