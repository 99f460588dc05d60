//! `scan --reference`: the trusted state a new batch is judged against, read before any data.

use super::*;
use poisongate_detectors::duplicates::reference::{reference_configure, ReferenceState};
use poisongate_detectors::state::StateError;
use std::sync::Arc;

/// The trusted state and its file's digest.
pub(super) struct Loaded {
    pub(super) state: Arc<ReferenceState>,
    pub(super) digest: FileDigest,
}

/// Read the state at `path`, keyed by the normalisation REF001 is configured with (its header
/// must match), and check that REF002's normalisation is the same.
pub(super) fn load(opts: &ScanOptions, path: &Path) -> Result<Loaded, ScanError> {
    let empty = toml::Table::new();
    let table = |code: &str| opts.detector_params.get(code).unwrap_or(&empty);
    let norm = reference_configure("REF001", table("REF001"), None)?.normalization();
    let other = reference_configure("REF002", table("REF002"), None)?.normalization();
    if norm != other {
        return Err(ScanError::Config(
            "REF001 and REF002 must use the same normalisation (nfkc, case_fold, \
             collapse_whitespace): the reference state is keyed by it"
                .into(),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| IngestError::io(path, e))?;
    let digest = FileDigest {
        path: path.to_path_buf(),
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        parts: Vec::new(),
    };
    let state = ReferenceState::from_bytes(&bytes, norm).map_err(|e| match e {
        StateError::Mismatch {
            field: "parameters digest",
            ..
        } => ScanError::Config(format!(
            "{}: the state was made with another text normalisation than this scan's \
             (REF001's nfkc, case_fold, collapse_whitespace must be the same for fit and scan)",
            path.display()
        )),
        e => ScanError::Config(format!(
            "{}: not a usable reference state: {e} (write one with `poisongate fit`)",
            path.display()
        )),
    })?;
    Ok(Loaded {
        state: Arc::new(state),
        digest,
    })
}

/// The configured reference detector (REF001, REF002 or REF003) holding the state.
pub(super) fn configured(
    opts: &ScanOptions,
    code: &'static str,
    state: &Arc<ReferenceState>,
) -> Result<Box<dyn poisongate_detectors::Configured>, ScanError> {
    let empty = toml::Table::new();
    let table = opts.detector_params.get(code).unwrap_or(&empty);
    if code == "REF003" {
        return Ok(
            poisongate_detectors::trigger::surge::configure_with_reference(
                table,
                Arc::clone(state),
            )?,
        );
    }
    Ok(Box::new(reference_configure(
        code,
        table,
        Some(Arc::clone(state)),
    )?))
}
