//! Round 1's exact keys: made once for the duplicate detectors with the same normalisation,
//! handed to the others, and kept on disk while the other detectors finish the round.

use super::*;

/// Merge the round-1 keys of every driver that others borrow from into one partial.
pub(super) fn share_keys(drivers: &mut [(&'static str, Driver, f64)]) -> Result<(), ScanError> {
    let owners: BTreeSet<usize> = drivers
        .iter()
        .filter_map(|(_, d, _)| match d {
            Driver::Exact { borrows, .. } | Driver::Near { borrows, .. } => *borrows,
            _ => None,
        })
        .collect();
    for o in owners {
        if let Some(tree) = drivers.get_mut(o).and_then(|(_, d, _)| d.key_tree()) {
            let merged = tree.take(Default::default(), &merge_keys)?;
            tree.push(merged, &merge_keys)?;
        }
    }
    Ok(())
}

/// Round 1's merged exact keys of every driver that owns them, written to anonymous temporary
/// files (their serialised form, 32 bytes a row) and taken out of memory while the drivers
/// without keys finish round 1: TRIG001's fit is the scan's largest state, and the keys, which
/// grow with the rows, would sit beside it.
pub(super) fn spill_keys(
    drivers: &mut [(&'static str, Driver, f64)],
) -> Result<Vec<(usize, std::fs::File)>, ScanError> {
    use std::io::Write;
    let tmp = std::env::temp_dir();
    let mut spilled = Vec::new();
    for (i, (_, d, _)) in drivers.iter_mut().enumerate() {
        let Some(header) = d.owned_key_header() else {
            continue;
        };
        let Some(tree) = d.key_tree() else {
            continue;
        };
        let keys = tree.take(Default::default(), &merge_keys)?;
        let bytes = keys.to_bytes(&header);
        drop(keys);
        let mut f = tempfile::tempfile().map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        spilled.push((i, f));
    }
    Ok(spilled)
}

/// Read back what [`spill_keys`] wrote, each driver's keys into its tree.
pub(super) fn unspill_keys(
    drivers: &mut [(&'static str, Driver, f64)],
    spilled: Vec<(usize, std::fs::File)>,
) -> Result<(), ScanError> {
    use std::io::{Read, Seek};
    let tmp = std::env::temp_dir();
    for (i, mut f) in spilled {
        let Some((code, d, _)) = drivers.get_mut(i) else {
            continue;
        };
        let Some(header) = d.owned_key_header() else {
            continue;
        };
        let mut bytes = Vec::new();
        f.rewind().map_err(io_err(&tmp))?;
        f.read_to_end(&mut bytes).map_err(io_err(&tmp))?;
        let keys = dup::KeysPartial::from_bytes(&bytes, &header).map_err(state_err(code))?;
        drop(bytes);
        if let Some(t) = d.key_tree() {
            t.push(keys, &merge_keys)?;
        }
    }
    Ok(())
}

/// When driver `i` borrows round 1's keys, copy its owner's merged keys into its tree.
pub(super) fn lend_keys(
    drivers: &mut [(&'static str, Driver, f64)],
    i: usize,
) -> Result<(), ScanError> {
    let owner = match drivers.get(i).map(|(_, d, _)| d) {
        Some(
            Driver::Exact {
                borrows: Some(o), ..
            }
            | Driver::Near {
                borrows: Some(o), ..
            },
        ) => *o,
        _ => return Ok(()),
    };
    let copy = drivers
        .get_mut(owner)
        .and_then(|(_, d, _)| d.key_tree())
        .and_then(|t| t.only().cloned())
        .ok_or_else(|| ScanError::Config("the shared duplicate keys were not merged".into()))?;
    if let Some(t) = drivers.get_mut(i).and_then(|(_, d, _)| d.key_tree()) {
        t.push(copy, &merge_keys)?;
    }
    Ok(())
}
