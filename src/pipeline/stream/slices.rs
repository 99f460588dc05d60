//! Round 2's near-duplicate keys in one pass over the input. Each batch's keys are cut into the
//! slices of the key space ([`KeyRange`]); the first slice is merged in memory as the batches
//! come, every other slice's batch partials are appended to that slice's anonymous temporary
//! file (in `TMPDIR`, gone when the scan ends). When the pass is over, the slices are read back
//! one at a time, each merged and turned into candidate pairs before the next is read: memory
//! holds one slice's keys, and the input (signatures and word keys included) is read and
//! computed once.
//!
//! The batch partials of a slice are merged in the order they were written, with the same
//! exact merges, so the candidates are those of all the keys merged at once, bit for bit.

use super::*;
use poisongate_detectors::state::Header;
use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};

/// The temporary files of slices 1.. of one detector's round 2, each a sequence of batch
/// partials (a little-endian u64 byte count, then [`NearKeysPartial::to_bytes`]).
pub(super) struct SliceFiles {
    files: Vec<File>,
}

fn tmp_err(source: std::io::Error) -> ScanError {
    ScanError::Io {
        path: std::env::temp_dir(),
        source,
    }
}

impl SliceFiles {
    /// Files for the slices 1..`parts`.
    pub(super) fn new(parts: u64) -> Result<SliceFiles, ScanError> {
        let files = (1..parts.max(1))
            .map(|_| tempfile::tempfile().map_err(tmp_err))
            .collect::<Result<_, _>>()?;
        Ok(SliceFiles { files })
    }

    /// Append one batch's partial of slice `part` (1 or more).
    pub(super) fn append(
        &mut self,
        part: usize,
        keys: &NearKeysPartial,
        header: &Header,
    ) -> Result<(), ScanError> {
        let Some(f) = part.checked_sub(1).and_then(|i| self.files.get_mut(i)) else {
            return Ok(());
        };
        let bytes = keys.to_bytes(header);
        f.write_all(&(bytes.len() as u64).to_le_bytes())
            .and_then(|()| f.write_all(&bytes))
            .map_err(tmp_err)
    }

    /// Read slice `part`'s partials back, in the order they were appended, each to `each`.
    pub(super) fn read(
        &mut self,
        part: usize,
        header: &Header,
        code: &'static str,
        each: &mut dyn FnMut(NearKeysPartial) -> Result<(), ScanError>,
    ) -> Result<(), ScanError> {
        let Some(f) = part.checked_sub(1).and_then(|i| self.files.get_mut(i)) else {
            return Ok(());
        };
        f.rewind().map_err(tmp_err)?;
        let mut r = BufReader::with_capacity(1 << 20, &*f);
        let mut len = [0u8; 8];
        let mut bytes = Vec::new();
        loop {
            match r.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(tmp_err(e)),
            }
            let n = usize::try_from(u64::from_le_bytes(len)).map_err(|_| {
                tmp_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a spilled slice record is too long",
                ))
            })?;
            bytes.resize(n, 0);
            r.read_exact(&mut bytes).map_err(tmp_err)?;
            each(NearKeysPartial::from_bytes(&bytes, header).map_err(state_err(code))?)?;
        }
        // the slice is done with: its disk space goes back before the next is read
        f.set_len(0).map_err(tmp_err)?;
        Ok(())
    }
}
