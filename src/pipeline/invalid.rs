//! `--invalid-rows quarantine`: which rows of the file the detectors see, and the report's
//! account of the others.

use super::*;
use crate::ingest::{InvalidRow, RowRef};
use crate::report::{InvalidExample, InvalidReason, InvalidSection, INVALID_EXAMPLES};

/// The rows still in play and the rows set aside as invalid, by their row number in the file.
pub(super) struct Rows {
    /// Rows of the file.
    pub(super) total: usize,
    /// For each row of the (filtered) table, its row number in the file.
    pub(super) orig: Vec<usize>,
    /// Invalid rows by row number in the file (the first problem found for each).
    pub(super) invalid: BTreeMap<usize, InvalidRow>,
}

impl Rows {
    /// Every row of a table of `total` rows, of which `invalid` could not be read.
    pub(super) fn new(total: usize, invalid: Vec<InvalidRow>) -> Rows {
        Rows {
            total,
            orig: (0..total).collect(),
            invalid: invalid.into_iter().map(|r| (r.row, r)).collect(),
        }
    }

    /// Mark more rows invalid: `found` holds indices into the current (filtered) table with
    /// their problem (`what`, the error, where it was found).
    pub(super) fn mark(&mut self, found: Vec<(usize, &str, IngestError, RowRef)>) {
        for (i, what, err, at) in found {
            let Some(&row) = self.orig.get(i) else {
                continue;
            };
            self.invalid.entry(row).or_insert_with(|| InvalidRow {
                row,
                at,
                what: what.to_string(),
                message: err.to_string(),
            });
        }
    }

    /// Drop the invalid rows still in `table` and the matrices (which have one row per row of
    /// the table).
    pub(super) fn drop_invalid(
        &mut self,
        table: &mut Table,
        matrices: &mut [&mut Option<Array2<f32>>],
    ) {
        let keep: Vec<bool> = self
            .orig
            .iter()
            .map(|r| !self.invalid.contains_key(r))
            .collect();
        if keep.iter().all(|k| *k) {
            return;
        }
        table.retain_rows(&keep);
        for m in matrices.iter_mut() {
            if let Some(m) = m.as_mut() {
                *m = ingest::select_rows(m, &keep);
            }
        }
        let mut i = 0;
        self.orig.retain(|_| {
            let k = keep[i];
            i += 1;
            k
        });
    }

    /// The report's section on the invalid rows.
    pub(super) fn section(&self) -> InvalidSection {
        let mut reasons: BTreeMap<String, InvalidReason> = BTreeMap::new();
        for r in self.invalid.values() {
            let e = reasons.entry(r.reason()).or_insert_with(|| InvalidReason {
                rows: 0,
                first: Vec::new(),
            });
            e.rows += 1;
            if e.first.len() < INVALID_EXAMPLES {
                e.first.push(InvalidExample {
                    row: r.row,
                    at: r.at.to_string(),
                    message: r.message.clone(),
                });
            }
        }
        InvalidSection {
            policy: InvalidPolicy::Quarantine.as_str(),
            rows: self.invalid.len(),
            reasons,
        }
    }

    /// The verdicts of the rows of the file: the invalid rows' from their reason, the others'
    /// from `valid` (indexed like the filtered table), held for the quarantined rows only.
    pub(super) fn verdicts(
        &self,
        valid: impl Iterator<Item = (usize, Quarantine)>,
    ) -> SparseVerdicts {
        let mut quarantined = BTreeMap::new();
        for (i, q) in valid {
            if let Some(&row) = self.orig.get(i) {
                quarantined.insert(row, q);
            }
        }
        for (&row, r) in &self.invalid {
            quarantined.insert(
                row,
                Quarantine {
                    score: 0.0,
                    reasons: vec![r.reason()],
                    invalid: true,
                },
            );
        }
        SparseVerdicts {
            rows: self.total,
            quarantined,
        }
    }

    /// [`Rows::spread`] taking the values: when every row of the file is in the table, they
    /// are returned as they are.
    pub(super) fn spread_owned<T: Clone>(&self, values: Vec<T>, fill: T) -> Vec<T> {
        if self.spreads_to_itself(values.len()) {
            return values;
        }
        self.spread(&values, fill)
    }

    /// Whether spreading `len` values gives them back unchanged: every row of the file is in
    /// the table, in order.
    fn spreads_to_itself(&self, len: usize) -> bool {
        self.orig.len() == self.total && len == self.total && self.invalid.is_empty()
    }

    /// [`Self::spread`], borrowing `values` when no row was set aside.
    pub(super) fn spread_borrowed<'v, T: Clone>(
        &self,
        values: &'v [T],
        fill: T,
    ) -> std::borrow::Cow<'v, [T]> {
        if self.spreads_to_itself(values.len()) {
            return std::borrow::Cow::Borrowed(values);
        }
        std::borrow::Cow::Owned(self.spread(values, fill))
    }

    /// A per-row value of the filtered table spread over every row of the file (`fill` for the
    /// invalid rows).
    pub(super) fn spread<T: Clone>(&self, values: &[T], fill: T) -> Vec<T> {
        let mut out = vec![fill; self.total];
        for (&row, v) in self.orig.iter().zip(values) {
            if let Some(slot) = out.get_mut(row) {
                *slot = v.clone();
            }
        }
        out
    }
}
