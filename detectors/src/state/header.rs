//! The versioned header in front of every serialised partial and state.
//!
//! Layout (little-endian): the magic `PGSTATE`, the header format (u16, now 1), the detector
//! code (u8 length, then ASCII), the detector's algorithm version (u16) and the SHA-256 of its
//! resolved parameters as JSON (32 bytes). Merging partials of different detectors, versions or
//! parameters would silently produce a state that belongs to none of them; [`Header::check`]
//! refuses it with the field that differs.

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 7] = b"PGSTATE";
const FORMAT: u16 = 1;

/// Why a state could not be built, merged or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// A value that cannot be summed exactly (not finite, or beyond the grid's range).
    #[error("value {0} cannot be accumulated exactly (not finite, or larger than 2^39)")]
    Value(f64),
    /// Two states or a row and a state do not have the same shape.
    #[error("shape mismatch: expected {expected}, got {got}")]
    Shape {
        /// What the state holds.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// An exact sum would leave the integer range.
    #[error("an exact sum overflowed")]
    Overflow,
    /// Rows too wide for a state of their cross products (see [`super::MAX_MOMENT_DIMS`]).
    #[error(
        "{0} dimensions: the cross products of a label's rows would take {bytes} bytes; at most \
         {max} dimensions (reduce the embeddings' dimension first)",
        bytes = super::moment_bytes(*.0),
        max = super::MAX_MOMENT_DIMS
    )]
    TooWide(usize),
    /// The bytes end before the state does.
    #[error("state bytes are truncated")]
    Truncated,
    /// Bytes follow the end of the state.
    #[error("{0} bytes follow the end of the state")]
    Trailing(usize),
    /// Values that a state keeps sorted are out of order (the bytes were not written by it).
    #[error("state values are out of order")]
    Unsorted,
    /// The same row is in two partials being merged (the partitions overlap).
    #[error("row {0} is in two partials (overlapping partitions)")]
    DuplicateRow(u64),
    /// The bytes do not start with a state header.
    #[error("not a poisongate state (no PGSTATE header)")]
    NotAState,
    /// The header was written by another format, detector, algorithm version or parameters.
    #[error("state was written for {field} {found}, expected {expected}")]
    Mismatch {
        /// Which header field differs.
        field: &'static str,
        /// What the bytes say.
        found: String,
        /// What the reader expects.
        expected: String,
    },
}

/// Identity of a state: whose it is and under which parameters it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Detector code, e.g. `SPEC001`.
    pub code: String,
    /// The detector's algorithm version ([`crate::Meta::version`]).
    pub version: u16,
    /// SHA-256 of the resolved parameters' JSON text.
    pub params_digest: [u8; 32],
}

impl Header {
    /// The header of `code` at `version` with the resolved parameters `params`.
    pub fn new(code: &str, version: u16, params: &serde_json::Value) -> Self {
        let digest = Sha256::digest(params.to_string().as_bytes());
        Header {
            code: code.to_string(),
            version,
            params_digest: digest.into(),
        }
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        let code = self.code.as_bytes();
        out.push(code.len().min(255) as u8);
        out.extend_from_slice(&code[..code.len().min(255)]);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.params_digest);
        out
    }

    /// Read the header at the front of `bytes` and return the rest.
    pub fn read(bytes: &[u8]) -> Result<(Header, &[u8]), StateError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(StateError::NotAState)?;
        let (format, rest) = take_u16(rest)?;
        if format != FORMAT {
            return Err(StateError::Mismatch {
                field: "header format",
                found: format.to_string(),
                expected: FORMAT.to_string(),
            });
        }
        let (&len, rest) = rest.split_first().ok_or(StateError::Truncated)?;
        let len = len as usize;
        if rest.len() < len {
            return Err(StateError::Truncated);
        }
        let code = String::from_utf8_lossy(&rest[..len]).into_owned();
        let (version, rest) = take_u16(&rest[len..])?;
        if rest.len() < 32 {
            return Err(StateError::Truncated);
        }
        let mut params_digest = [0u8; 32];
        params_digest.copy_from_slice(&rest[..32]);
        Ok((
            Header {
                code,
                version,
                params_digest,
            },
            &rest[32..],
        ))
    }

    /// Read the header at the front of `bytes`, require it to equal `self`, return the rest.
    pub fn check<'b>(&self, bytes: &'b [u8]) -> Result<&'b [u8], StateError> {
        let (found, rest) = Header::read(bytes)?;
        let hex = |d: &[u8; 32]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        if found.code != self.code {
            return Err(StateError::Mismatch {
                field: "detector",
                found: found.code,
                expected: self.code.clone(),
            });
        }
        if found.version != self.version {
            return Err(StateError::Mismatch {
                field: "algorithm version",
                found: found.version.to_string(),
                expected: self.version.to_string(),
            });
        }
        if found.params_digest != self.params_digest {
            return Err(StateError::Mismatch {
                field: "parameters digest",
                found: hex(&found.params_digest),
                expected: hex(&self.params_digest),
            });
        }
        Ok(rest)
    }
}

fn take_u16(bytes: &[u8]) -> Result<(u16, &[u8]), StateError> {
    if bytes.len() < 2 {
        return Err(StateError::Truncated);
    }
    Ok((u16::from_le_bytes([bytes[0], bytes[1]]), &bytes[2..]))
}

/// A little-endian u64 from the front of `bytes`, and the rest.
pub(crate) fn take_u64(bytes: &[u8]) -> Result<(u64, &[u8]), StateError> {
    if bytes.len() < 8 {
        return Err(StateError::Truncated);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    Ok((u64::from_le_bytes(b), &bytes[8..]))
}
