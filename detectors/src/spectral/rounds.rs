//! SPEC001 in rounds whose partial results merge exactly, so that any partitioning of the rows
//! (threads, streamed batches, a cluster's workers) and any merge order give the same state
//! bytes and the same verdicts as one pass over all rows.
//!
//! 1. **Counts**: rows per class ([`crate::class_pca::ClassPca::counts`]; merged by adding). They decide which
//!    classes are scored and, for a class above `max_covariance_rows`, which of its rows enter
//!    the covariance.
//! 2. **Moments** ([`MomentsPartial`]): per class, exact integer sums of the kept rows and of
//!    their cross products ([`crate::state::Moments`]). Finalised into each class's mean and top
//!    eigenvector ([`Rounds::directions`]).
//! 3. **Projections** ([`ProjectionsPartial`]): per class, every row's projection on its
//!    class's direction, kept sorted. A projection depends only on its row and the direction,
//!    and the sorted multiset is the same however the rows were split; merging is a merge of
//!    sorted lists. The decision (median, MAD, mixture, cut) is a function of that multiset
//!    ([`Rounds::finish`]).
//! 4. **Scores**: each row from its own projection ([`crate::Fitted::score`]), in any batch.
//!
//! Rounds 1 and 2 are shared with ACT001 ([`crate::class_pca`]). Rows are named by a 64-bit
//! id that the caller keeps stable across partitionings (the row's number in the input); it
//! only matters for the covariance subsample of classes larger than `max_covariance_rows`,
//! which keeps a row when a hash of its id falls below `max_covariance_rows / n_class` (a
//! Bernoulli sample with the same expected size as the evenly spaced one of earlier versions,
//! decided by each row alone).

use super::decide::decide;
use super::{ClassFit, ClassModel, SpectralFit, SpectralParams, CODE, META};
pub use crate::class_pca::MomentsPartial;
use crate::class_pca::{same_classes, ClassPca};
use crate::linalg::{self, CenteredEigen};
use crate::state::{header, Header, StateError};
use crate::{DetectError, Fitted};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// The rounds of SPEC001 for data with `n_classes` classes and `dims` columns.
#[derive(Debug, Clone)]
pub struct Rounds {
    params: SpectralParams,
    n_classes: usize,
    pca: ClassPca,
    header: Header,
}

/// Round 3's partial state: per class, the projections of its rows, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionsPartial {
    classes: Vec<Vec<f64>>,
}

/// What round 2 finalises to: per class, its mean and top eigenpairs, or why it is skipped.
#[derive(Debug, Clone)]
pub struct Directions {
    classes: Vec<Result<(CenteredEigen, linalg::Projector), String>>,
}

fn numeric(problem: String) -> DetectError {
    DetectError::Numeric {
        code: CODE,
        problem,
    }
}

impl Rounds {
    /// Rounds with the resolved `params`, for `n_classes` classes of `dims`-column rows.
    pub fn new(params: &SpectralParams, n_classes: usize, dims: usize) -> Self {
        use crate::Configured;
        let header = Header::new(CODE, META.version, &params.params());
        let gate = linalg::ClassGate::new(params.min_class_rows, params.min_rows_per_dim, dims);
        Rounds {
            params: params.clone(),
            n_classes,
            pca: ClassPca::new(
                n_classes,
                dims,
                params.report_singular_values,
                gate,
                params.max_covariance_rows,
            ),
            header,
        }
    }

    /// The header every partial of these rounds is serialised behind.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Rounds 1 (class counts) and 2 (moments), shared with the other embedding detectors.
    pub fn pca(&self) -> &ClassPca {
        &self.pca
    }

    /// Round 3's partial of no rows (what merging starts from).
    pub fn empty_projections(&self) -> ProjectionsPartial {
        ProjectionsPartial {
            classes: vec![Vec::new(); self.n_classes],
        }
    }

    /// Round 2 finalised: each scored class's mean, covariance (divisor n − 1) and top
    /// eigenpairs from the merged moments.
    pub fn directions(
        &self,
        counts: &[u64],
        moments: &MomentsPartial,
    ) -> Result<Directions, DetectError> {
        let classes = self
            .pca
            .eigen(counts, moments)
            .map_err(numeric)?
            .into_iter()
            .map(|e| {
                e.map(|eig| {
                    let projector = linalg::Projector::new(&eig.mean, &eig.eigenvectors[0]);
                    (eig, projector)
                })
            })
            .collect();
        Ok(Directions { classes })
    }

    /// Round 3 over a batch: each row's projection on its class's direction.
    pub fn projections(
        &self,
        dirs: &Directions,
        x: &ArrayView2<'_, f32>,
        labels: &[u32],
    ) -> ProjectionsPartial {
        let mut classes: Vec<Vec<f64>> = vec![Vec::new(); self.n_classes];
        for (i, &l) in labels.iter().enumerate() {
            if let Some(Ok((_, projector))) = dirs.classes.get(l as usize) {
                classes[l as usize].push(projector.project(x, i));
            }
        }
        for c in &mut classes {
            c.sort_by(f64::total_cmp);
        }
        ProjectionsPartial { classes }
    }

    /// Round 3 finalised: the fitted detector (class `names`, in class order).
    pub fn finish(
        &self,
        names: &[String],
        counts: &[u64],
        dirs: Directions,
        projections: &ProjectionsPartial,
    ) -> Box<dyn Fitted> {
        // the classes are decided independently (each mixture fit also runs its starts in
        // parallel) and collected in class order
        let classes = dirs
            .classes
            .into_par_iter()
            .enumerate()
            .map(|(c, dir)| {
                let name = names.get(c).cloned().unwrap_or_default();
                let rows = usize::try_from(counts.get(c).copied().unwrap_or(0)).unwrap_or(0);
                match dir {
                    Err(why) => ClassFit {
                        name,
                        rows,
                        model: None,
                        skipped: Some(why),
                    },
                    Ok((eig, projector)) => ClassFit {
                        name,
                        rows,
                        model: Some(ClassModel {
                            eig,
                            projector,
                            decision: decide(
                                projections.classes.get(c).map_or(&[][..], Vec::as_slice),
                                &self.params,
                            ),
                        }),
                        skipped: None,
                    },
                }
            })
            .collect();
        Box::new(SpectralFit { classes })
    }
}

impl ProjectionsPartial {
    /// Add another partial's projections (a merge of sorted lists).
    pub fn merge(&mut self, other: &ProjectionsPartial) -> Result<(), StateError> {
        same_classes(self.classes.len(), other.classes.len())?;
        for (a, b) in self.classes.iter_mut().zip(&other.classes) {
            *a = crate::state::merge_sorted_by(a, b, |x, y| x.total_cmp(y).is_lt());
        }
        Ok(())
    }

    /// Serialised behind `header`: the class count (u64), then per class the number of
    /// values (u64) and their f64 bits (little-endian).
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        out.extend_from_slice(&(self.classes.len() as u64).to_le_bytes());
        for c in &self.classes {
            out.extend_from_slice(&(c.len() as u64).to_le_bytes());
            for v in c {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        out
    }

    /// Read a partial written by [`ProjectionsPartial::to_bytes`] behind `expected`; values
    /// out of order are refused.
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<ProjectionsPartial, StateError> {
        let mut rest = expected.check(bytes)?;
        let (n, r) = header::take_u64(rest)?;
        rest = r;
        let mut classes = Vec::new();
        for _ in 0..n {
            let (len, r) = header::take_u64(rest)?;
            rest = r;
            let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
            if rest.len() / 8 < len {
                return Err(StateError::Truncated);
            }
            let mut values = Vec::with_capacity(len);
            for _ in 0..len {
                let (bits, r) = header::take_u64(rest)?;
                rest = r;
                values.push(f64::from_bits(bits));
            }
            if values.windows(2).any(|w| w[1].total_cmp(&w[0]).is_lt()) {
                return Err(StateError::Unsorted);
            }
            classes.push(values);
        }
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        Ok(ProjectionsPartial { classes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{
        assert_same_scores, embedding_view as view, gaussian, partition, sha, take, Rng,
    };
    use crate::Configured;
    use ndarray::Array2;

    /// Three classes, one of them with a planted shifted minority, so that a class splits.
    fn data() -> (Array2<f32>, Vec<u32>) {
        let mut rng = Rng(11);
        let (n, d) = (1500, 12);
        let mut x = gaussian(&mut rng, n, d);
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        for i in (1..n).step_by(3) {
            if rng.unit() < 0.1 {
                for k in 0..d {
                    x[[i, k]] += if k % 2 == 0 { 3.0 } else { -3.0 };
                }
            }
        }
        (x, labels)
    }

    fn params() -> SpectralParams {
        // the defaults, but small classes here are scored too
        SpectralParams {
            max_minor_weight: 1.0 / 3.0,
            min_separation: 2.0,
            alpha: 0.05,
            tail_fallback: false,
            min_class_rows: 10,
            min_rows_per_dim: 2.0,
            report_singular_values: 5,
            max_covariance_rows: 262_144,
        }
    }

    #[test]
    fn any_partitioning_and_merge_order_give_the_same_state_and_scores() {
        let (x, labels) = data();
        let p = params();
        let r = Rounds::new(&p, 3, x.ncols());
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // one pass through the detector, as the scan runs it
        let view = view(&x, &labels, &names);
        let whole = p.fit(&view).unwrap();
        let whole_scores = whole.score(&view.batch(0, x.nrows())).unwrap();
        assert!(
            whole_scores.reason.iter().any(Option::is_some),
            "a class splits"
        );

        let mut seen: Option<(Vec<u8>, Vec<u8>)> = None;
        for (k, seed) in [(1usize, 1u64), (2, 2), (7, 3), (16, 4), (16, 5)] {
            let parts = partition(x.nrows(), k, seed);
            let counts = parts.iter().fold(vec![0u64; 3], |mut acc, part| {
                let (_, l, _) = take(&x, &labels, part);
                for (a, b) in acc.iter_mut().zip(r.pca().counts(&l)) {
                    *a += b;
                }
                acc
            });
            let mut moments = r.pca().empty_moments();
            for part in &parts {
                let (xp, lp, ip) = take(&x, &labels, part);
                let m = r.pca().moments(&counts, &xp.view(), &lp, &ip).unwrap();
                // every partial goes through its bytes, as between machines
                let m = MomentsPartial::from_bytes(&m.to_bytes(r.header()), r.header()).unwrap();
                moments.merge(&m).unwrap();
            }
            let dirs = r.directions(&counts, &moments).unwrap();
            let mut proj = r.empty_projections();
            for part in parts.iter().rev() {
                let (xp, lp, _) = take(&x, &labels, part);
                let q = r.projections(&dirs, &xp.view(), &lp);
                let q =
                    ProjectionsPartial::from_bytes(&q.to_bytes(r.header()), r.header()).unwrap();
                proj.merge(&q).unwrap();
            }
            let digests = (
                sha(&moments.to_bytes(r.header())),
                sha(&proj.to_bytes(r.header())),
            );
            match &seen {
                None => seen = Some(digests),
                Some(d) => assert_eq!(d, &digests, "{k} partitions"),
            }
            let fitted = r.finish(&names, &counts, dirs, &proj);
            let scores = fitted.score(&view.batch(0, x.nrows())).unwrap();
            assert_same_scores(&scores, &whole_scores, &format!("{k} partitions"));
            assert_eq!(fitted.summary(), whole.summary());
        }
    }

    #[test]
    fn partials_from_other_parameters_or_damaged_bytes_are_refused() {
        let (x, labels) = data();
        let p = params();
        let r = Rounds::new(&p, 3, x.ncols());
        let ids: Vec<u64> = (0..x.nrows() as u64).collect();
        let counts = r.pca().counts(&labels);
        let m = r.pca().moments(&counts, &x.view(), &labels, &ids).unwrap();
        let bytes = m.to_bytes(r.header());
        let mut other = p.clone();
        other.alpha = 0.01;
        let r2 = Rounds::new(&other, 3, x.ncols());
        assert!(MomentsPartial::from_bytes(&bytes, r2.header()).is_err());
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(MomentsPartial::from_bytes(&bytes[..cut], r.header()).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(MomentsPartial::from_bytes(&longer, r.header()).is_err());
        let dirs = r.directions(&counts, &m).unwrap();
        let q = r.projections(&dirs, &x.view(), &labels);
        let qb = q.to_bytes(r.header());
        assert_eq!(ProjectionsPartial::from_bytes(&qb, r.header()).unwrap(), q);
        assert!(ProjectionsPartial::from_bytes(&qb[..qb.len() - 3], r.header()).is_err());
        // values out of order are not a state this code wrote
        let mut swapped = q.clone();
        if let Some(c) = swapped.classes.iter_mut().find(|c| c.len() > 2) {
            c.swap(0, 1);
        }
        let sb = swapped.to_bytes(r.header());
        assert_eq!(
            ProjectionsPartial::from_bytes(&sb, r.header()),
            Err(StateError::Unsorted)
        );
        // partials that disagree with the rounds' class count: no panic, nothing flagged
        let short = r
            .pca()
            .moments(&counts[..1], &x.view(), &labels, &ids)
            .unwrap();
        assert!(short.classes().iter().skip(1).all(Option::is_none));
        let none = ProjectionsPartial { classes: vec![] };
        let names: Vec<String> = vec![];
        let fitted = r.finish(&names, &counts, dirs, &none);
        let view = view(&x, &labels, &names);
        let s = fitted.score(&view.batch(0, x.nrows())).unwrap();
        assert!(s.reason.iter().all(Option::is_none));
    }
}
