//! A round's partials as bytes, for rounds run over partitions of the input elsewhere (another
//! process or machine): each partition's engine exports its merged partial of the round, the
//! engine that plans the scan absorbs them in any order (every merge is exact, associative and
//! commutative, so the merged state is the same), and the partitions' engines of the next round
//! absorb the merged partial and finalise it themselves, as the planning engine does.

use super::*;
use poisongate_detectors::state::{Header, StateError};

/// One tree's merged partial, serialised; with `keep`, the merged partial is put back.
fn export_tree<T>(
    tree: &mut Tree<T>,
    (empty, merge): (T, Merge<'_, T>),
    bytes: impl Fn(&T) -> Vec<u8>,
    keep: bool,
) -> Result<Vec<u8>, ScanError> {
    let p = tree.take(empty, merge)?;
    let out = bytes(&p);
    if keep {
        tree.push(p, merge)?;
    }
    Ok(out)
}

impl Driver {
    /// Round `round`'s partial of this detector, merged and serialised behind its header;
    /// empty when it has none that round. With `keep` the partial stays, so the round can be
    /// finalised here; without, it is taken and the next rows start from nothing.
    pub(super) fn export(
        &mut self,
        code: &'static str,
        round: usize,
        keep: bool,
    ) -> Result<Vec<u8>, ScanError> {
        let err = state_err(code);
        // a duplicate detector's own round-1 keys (one that borrows them has none)
        if round == 1 {
            if let Some(h) = self.owned_key_header() {
                let tree = self.key_tree().ok_or_else(|| err(StateError::Truncated))?;
                let bytes = |p: &dup::KeysPartial| p.to_bytes(&h);
                return export_tree(tree, (Default::default(), &merge_keys), bytes, keep);
            }
        }
        let near_merge: Merge<'_, NearKeysPartial> = &|a, b| {
            a.merge(b);
            Ok(())
        };
        Ok(match (self, round) {
            (Driver::Spec { r, moments, .. }, 1) => {
                let b = moments.to_bytes(r.header());
                if !keep {
                    *moments = r.pca().empty_moments();
                }
                b
            }
            (Driver::Act { r, moments, .. }, 1) => {
                let b = moments.to_bytes(r.header());
                if !keep {
                    *moments = r.pca().empty_moments();
                }
                b
            }
            (Driver::Trig { r, sample }, 1) => export_tree(
                sample,
                (Default::default(), &|a, b| a.merge(b).map_err(&err)),
                |p| p.to_bytes(r.header()),
                keep,
            )?,
            (
                Driver::Spec {
                    r,
                    dirs: Some(_),
                    proj,
                    ..
                },
                2,
            ) => export_tree(
                proj,
                (r.empty_projections(), &|a, b| a.merge(b).map_err(&err)),
                |p| p.to_bytes(r.header()),
                keep,
            )?,
            (
                Driver::Act {
                    r,
                    red: Some(red),
                    sample,
                    ..
                },
                2,
            ) => export_tree(
                sample,
                (r.empty_sample(red), &|a, b| a.merge(b).map_err(&err)),
                |p| p.to_bytes(r.header()),
                keep,
            )?,
            (
                Driver::Exact {
                    r,
                    groups: Some(_),
                    words,
                    ..
                },
                2,
            ) => {
                let b = words.to_bytes(r.header());
                if !keep {
                    *words = r.empty_words();
                }
                b
            }
            (
                Driver::Near {
                    r,
                    groups: Some(_),
                    near,
                    ..
                },
                2,
            ) => export_tree(
                near,
                (Default::default(), near_merge),
                |p| p.to_bytes(r.header()),
                keep,
            )?,
            (
                Driver::Near {
                    r,
                    links: Some(_),
                    payload,
                    ..
                },
                3,
            ) => export_tree(
                payload,
                (Default::default(), &|a, b| a.merge(b).map_err(&err)),
                |p| p.to_bytes(r.header()),
                keep,
            )?,
            _ => Vec::new(),
        })
    }

    /// Merge a partial of round `round` written by [`Driver::export`] into this detector's.
    pub(super) fn absorb(
        &mut self,
        code: &'static str,
        round: usize,
        bytes: &[u8],
    ) -> Result<(), ScanError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let err = state_err(code);
        if round == 1 {
            if let Some(h) = self.owned_key_header() {
                let p = dup::KeysPartial::from_bytes(bytes, &h).map_err(&err)?;
                let tree = self.key_tree().ok_or_else(|| err(StateError::Truncated))?;
                return tree.push(p, &merge_keys);
            }
        }
        let h = |r: &Header| r.clone();
        match (self, round) {
            (Driver::Spec { r, moments, .. }, 1) => {
                let p = MomentsPartial::from_bytes(bytes, &h(r.header())).map_err(&err)?;
                moments.merge(&p).map_err(&err)?;
            }
            (Driver::Act { r, moments, .. }, 1) => {
                let p = MomentsPartial::from_bytes(bytes, &h(r.header())).map_err(&err)?;
                moments.merge(&p).map_err(&err)?;
            }
            (Driver::Trig { r, sample }, 1) => {
                let p = trig::SamplePartial::from_bytes(bytes, r.header()).map_err(&err)?;
                sample.push(p, &|a, b| a.merge(b).map_err(&err))?;
            }
            (Driver::Spec { r, proj, .. }, 2) => {
                let p = spec::ProjectionsPartial::from_bytes(bytes, r.header()).map_err(&err)?;
                proj.push(p, &|a, b| a.merge(b).map_err(&err))?;
            }
            (Driver::Act { r, sample, .. }, 2) => {
                let p = act::SamplePartial::from_bytes(bytes, r.header()).map_err(&err)?;
                sample.push(p, &|a, b| a.merge(b).map_err(&err))?;
            }
            (Driver::Exact { r, words, .. }, 2) => {
                let p = dup::WordsPartial::from_bytes(bytes, r.header()).map_err(&err)?;
                words.merge(&p);
            }
            (Driver::Near { r, near, .. }, 2) => {
                let p = NearKeysPartial::from_bytes(bytes, r.header()).map_err(&err)?;
                near.push(p, &|a, b| {
                    a.merge(b);
                    Ok(())
                })?;
            }
            (Driver::Near { r, payload, .. }, 3) => {
                let p = PayloadPartial::from_bytes(bytes, r.header()).map_err(&err)?;
                payload.push(p, &|a, b| a.merge(b).map_err(&err))?;
            }
            (_, round) => {
                return Err(ScanError::Detect(DetectError::Data {
                    code,
                    problem: format!("it has no partial state in round {round}"),
                }))
            }
        }
        Ok(())
    }
}
