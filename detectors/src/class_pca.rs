//! Per-class mean and leading principal directions in exact, mergeable rounds: the first two
//! rounds of the embedding detectors (SPEC001, ACT001).
//!
//! 1. **Counts**: rows per class ([`ClassPca::counts`]; merged by adding). They decide which
//!    classes are fitted (the size gate) and, for a class above `max_covariance_rows`, which of
//!    its rows enter the covariance.
//! 2. **Moments** ([`MomentsPartial`]): per class, exact integer sums of the kept rows and of
//!    their cross products ([`crate::state::Moments`]), finalised into each class's mean and
//!    top eigenpairs (`ClassPca::eigen`).
//!
//! Rows are named by a 64-bit id the caller keeps stable across partitionings (the row's number
//! in the input). A class larger than `max_covariance_rows` keeps a row for its covariance when
//! a hash of the id falls below `max_covariance_rows / n_class` (`keep_by_hash`): a Bernoulli
//! sample of that expected size, decided by each row alone, so the same in any partitioning.

use crate::linalg::{self, CenteredEigen, ClassGate};
use crate::state::{header, Header, Moments, StateError};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Rounds 1 and 2 for data with `n_classes` classes of `dims`-column rows (each detector's
/// rounds hand theirs out with `pca()`).
#[derive(Debug, Clone)]
pub struct ClassPca {
    n_classes: usize,
    dims: usize,
    components: usize,
    gate: ClassGate,
    max_covariance_rows: usize,
}

/// Round 2's partial state: per class, the moments of the rows kept for its covariance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MomentsPartial {
    dims: usize,
    /// `None`: no row of the class yet (allocated on its first row: a class's moments hold
    /// d(d+1)/2 sums, and most batches see few classes).
    classes: Vec<Option<Moments>>,
}

/// Whether row `id` of a class of `n` rows is kept when at most about `max` may be (0: all).
pub(crate) fn keep_by_hash(id: u64, n: u64, max: usize) -> bool {
    if max == 0 || n <= max as u64 {
        return true;
    }
    let mut state = id ^ 0x5bd1_e995_9e37_79b9;
    let h = crate::rng::splitmix(&mut state);
    let threshold = ((max as u128) << 64) / n as u128;
    (h as u128) < threshold
}

/// Two partials of the same rounds hold the same number of classes.
pub(crate) fn same_classes(mine: usize, theirs: usize) -> Result<(), StateError> {
    if mine == theirs {
        Ok(())
    } else {
        Err(StateError::Shape {
            expected: mine,
            got: theirs,
        })
    }
}

/// The most rows [`over_parts`] gives one part (about).
const PART_ROWS: usize = 1 << 16;

/// One round over `n` rows as the scan runs it: the rows cut into consecutive parts of equal
/// length (±1) mapped in parallel (`map(start, end)`) and merged. The merges of every round
/// are exact, so the result is that of one pass whatever the parts and the thread count.
///
/// Parts hold at most about [`PART_ROWS`] rows, and their number is a multiple of the thread
/// count, so that every thread gets the same share of rows: 6 920 rows on 2 threads are 2 parts
/// of 3 460, where parts of 2 048 rows left one thread 4 096 rows and the other 2 824. Each
/// part's partial is a fresh state (SPEC001's: d(d+1)/2 integers a class), so fewer parts take
/// fewer of them; the bound keeps a part's own lists of rows small.
pub(crate) fn over_parts<P, E>(
    n: usize,
    map: impl Fn(usize, usize) -> Result<P, E> + Sync,
    empty: impl Fn() -> P + Sync,
    merge: impl Fn(&mut P, P) -> Result<(), E> + Sync,
) -> Result<P, E>
where
    P: Send,
    E: Send,
{
    let threads = rayon::current_num_threads().max(1);
    let parts = n.div_ceil(PART_ROWS).div_ceil(threads) * threads;
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .into_par_iter()
        .map(|t| map(t * n / parts, (t + 1) * n / parts))
        .try_reduce(&empty, |mut a, b| {
            merge(&mut a, b)?;
            Ok(a)
        })
}

impl ClassPca {
    /// The rounds for `n_classes` classes of `dims`-column rows, keeping `components`
    /// eigenpairs per class.
    pub(crate) fn new(
        n_classes: usize,
        dims: usize,
        components: usize,
        gate: ClassGate,
        max_covariance_rows: usize,
    ) -> Self {
        ClassPca {
            n_classes,
            dims,
            components: components.min(dims),
            gate,
            max_covariance_rows,
        }
    }

    /// Round 1 over a batch: rows per class (labels past `n_classes` are not counted).
    pub fn counts(&self, labels: &[u32]) -> Vec<u64> {
        let mut c = vec![0u64; self.n_classes];
        for &l in labels {
            if let Some(v) = c.get_mut(l as usize) {
                *v += 1;
            }
        }
        c
    }

    /// Why `class` is not fitted, given the merged counts.
    pub(crate) fn skip_reason(&self, counts: &[u64], class: usize) -> Option<String> {
        let n = counts.get(class).copied().unwrap_or(0);
        self.gate
            .skip_reason(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Round 2 over a batch: `x` its rows, `labels` and `ids` one per row, `counts` the
    /// merged result of round 1.
    pub fn moments(
        &self,
        counts: &[u64],
        x: &ArrayView2<'_, f32>,
        labels: &[u32],
        ids: &[u64],
    ) -> Result<MomentsPartial, StateError> {
        let fitted: Vec<bool> = (0..self.n_classes)
            .map(|c| self.skip_reason(counts, c).is_none())
            .collect();
        let kept: Vec<Option<usize>> = labels
            .iter()
            .zip(ids)
            .map(|(&l, &id)| {
                let c = l as usize;
                let n = counts.get(c).copied().unwrap_or(0);
                (fitted.get(c) == Some(&true) && keep_by_hash(id, n, self.max_covariance_rows))
                    .then_some(c)
            })
            .collect();
        // each class's rows where they lie in `x` (copied only when `x` is not row-major)
        let owned;
        let x = match x.as_slice() {
            Some(_) => x.view(),
            None => {
                owned = x.as_standard_layout().into_owned();
                owned.view()
            }
        };
        let flat = x.as_slice().unwrap_or_default();
        let d = x.ncols();
        let mut by_class: Vec<Vec<&[f32]>> = vec![Vec::new(); self.n_classes];
        for (i, c) in kept.iter().enumerate() {
            if let Some(c) = c {
                by_class[*c].push(&flat[i * d..(i + 1) * d]);
            }
        }
        let mut classes = Vec::with_capacity(self.n_classes);
        for rows in &by_class {
            if rows.is_empty() {
                classes.push(None);
                continue;
            }
            let mut m = Moments::new(self.dims);
            m.update_row_slices(rows)?;
            classes.push(Some(m));
        }
        Ok(MomentsPartial {
            dims: self.dims,
            classes,
        })
    }

    /// Rounds 1 and 2 over all rows of `x` as the scan runs them (parts of the rows in parallel,
    /// merged): the class counts and the merged moments. Rows are named by their number.
    pub(crate) fn scan(
        &self,
        x: &ArrayView2<'_, f32>,
        labels: &[u32],
    ) -> Result<(Vec<u64>, MomentsPartial), StateError> {
        let n = labels.len();
        let counts = self.counts(labels);
        let ids: Vec<u64> = (0..n as u64).collect();
        let moments = over_parts(
            n,
            |s, e| {
                let rows = x.slice(ndarray::s![s..e, ..]);
                self.moments(&counts, &rows, &labels[s..e], &ids[s..e])
            },
            || self.empty_moments(),
            |a, b| a.merge_owned(b),
        )?;
        Ok((counts, moments))
    }

    /// Round 2's partial of no rows (what merging starts from).
    pub fn empty_moments(&self) -> MomentsPartial {
        MomentsPartial {
            dims: self.dims,
            classes: vec![None; self.n_classes],
        }
    }

    /// Round 2 finalised: per class, its mean, and the top eigenpairs of its covariance
    /// (divisor n − 1) from the merged moments, or why the class is skipped. A failed
    /// eigendecomposition is an error naming the class.
    pub(crate) fn eigen(
        &self,
        counts: &[u64],
        moments: &MomentsPartial,
    ) -> Result<Vec<Result<CenteredEigen, String>>, String> {
        let d = self.dims;
        // classes are independent: decomposed in parallel, taken in class order, errors too
        let one = |c: usize| -> Result<Result<CenteredEigen, String>, String> {
            if let Some(why) = self.skip_reason(counts, c) {
                return Ok(Err(why));
            }
            let too_few = || Ok(Err("fewer than 2 rows enter the covariance".to_string()));
            let Some(m) = moments.classes.get(c).and_then(Option::as_ref) else {
                return too_few();
            };
            let n = m.rows() as f64;
            if n < 2.0 {
                return too_few();
            }
            let cov = m.covariance();
            let unbias = n / (n - 1.0);
            let mat = faer::Mat::<f64>::from_fn(d, d, |i, j| cov[i * d + j] * unbias);
            let (eigenvalues, eigenvectors) = linalg::top_eigenpairs(&mat, self.components)
                .map_err(|problem| format!("class {c}: {problem}"))?;
            Ok(Ok(CenteredEigen {
                mean: m.mean(),
                eigenvalues,
                eigenvectors,
            }))
        };
        (0..self.n_classes).into_par_iter().map(one).collect()
    }
}

impl MomentsPartial {
    /// The per-class moments (`None`: no row of the class).
    #[cfg(test)]
    pub(crate) fn classes(&self) -> &[Option<Moments>] {
        &self.classes
    }

    /// Add another partial's moments. Exact, associative and commutative.
    pub fn merge(&mut self, other: &MomentsPartial) -> Result<(), StateError> {
        same_classes(self.classes.len(), other.classes.len())?;
        for (a, b) in self.classes.iter_mut().zip(&other.classes) {
            match (a.as_mut(), b) {
                (_, None) => {}
                (None, Some(b)) => *a = Some(b.clone()),
                (Some(a), Some(b)) => a.merge(b)?,
            }
        }
        Ok(())
    }

    /// [`Self::merge`], taking `other`'s moments where this partial has none instead of
    /// copying them.
    pub fn merge_owned(&mut self, other: MomentsPartial) -> Result<(), StateError> {
        same_classes(self.classes.len(), other.classes.len())?;
        for (a, b) in self.classes.iter_mut().zip(other.classes) {
            match (a.as_mut(), b) {
                (_, None) => {}
                (None, Some(b)) => *a = Some(b),
                (Some(a), Some(b)) => a.merge(&b)?,
            }
        }
        Ok(())
    }

    /// Serialised behind `header`: the class count (u64), then each class's moments, each
    /// preceded by its length in bytes (u64).
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        out.extend_from_slice(&(self.classes.len() as u64).to_le_bytes());
        let empty = Moments::new(self.dims);
        for m in &self.classes {
            let b = m.as_ref().unwrap_or(&empty).to_bytes(header);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(&b);
        }
        out
    }

    /// Read a partial written by [`MomentsPartial::to_bytes`] behind `expected`.
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<MomentsPartial, StateError> {
        let mut rest = expected.check(bytes)?;
        let (n, r) = header::take_u64(rest)?;
        rest = r;
        let mut classes = Vec::new();
        let mut dims = None;
        for _ in 0..n {
            let (len, r) = header::take_u64(rest)?;
            let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
            if r.len() < len {
                return Err(StateError::Truncated);
            }
            let m = Moments::from_bytes(&r[..len], expected)?;
            if *dims.get_or_insert(m.dims()) != m.dims() {
                return Err(StateError::Shape {
                    expected: dims.unwrap_or(0),
                    got: m.dims(),
                });
            }
            classes.push((m.rows() > 0).then_some(m));
            rest = &r[len..];
        }
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        Ok(MomentsPartial {
            dims: dims.unwrap_or(0),
            classes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_class_keeps_about_max_rows_by_row_id() {
        let kept = (0..100_000u64)
            .filter(|&id| keep_by_hash(id, 100_000, 10_000))
            .count();
        assert!((9_500..10_500).contains(&kept), "{kept}");
        assert!((0..500u64).all(|id| keep_by_hash(id, 500, 10_000)));
        assert!((0..500u64).all(|id| keep_by_hash(id, 500, 0)));
    }
}
