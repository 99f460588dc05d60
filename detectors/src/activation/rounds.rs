//! ACT001 in rounds whose partial results merge exactly, so that any partitioning of the rows
//! (threads, streamed batches, a cluster's workers) and any merge order give the same state
//! bytes and the same verdicts as one pass over all rows.
//!
//! 1. **Counts** and 2. **moments**: as SPEC001 ([`crate::class_pca`]): rows per class, then
//!    per class exact integer sums of the rows kept for the covariance, finalised into the
//!    class's mean and top `components` eigenpairs ([`Rounds::reductions`]).
//! 3. **Sample** ([`SamplePartial`]): per class, the PCA coordinates of the rows clustered,
//!    with their row ids, sorted by id, and those of the other classes' rows sampled for its
//!    specificity test (up to `specificity_rows` a class, by the same row hash), with their
//!    labels. A class of at most `max_cluster_rows` rows is clustered
//!    whole; a larger one keeps a row when a hash of its id falls below
//!    `max_cluster_rows / n_class`. Merging is a merge of lists sorted by id, so the merged
//!    sample is the rows in input order, whatever the split. FastICA, 2-means, the silhouette,
//!    its Gaussian null and the decision are functions of it ([`Rounds::finish`]), run as on
//!    one machine.
//! 4. **Scores**: each row from its own coordinates ([`crate::Fitted::score`]), in any batch.
//!
//! The state of round 3 is bounded by `max_cluster_rows` × (8 + 8·`components`) bytes per
//! class, plus `specificity_rows` × (16 + 8·`components`) bytes per pair of classes, whatever
//! the number of rows.

use super::cluster::{check_specificity, fit_class};
use super::{ActivationFit, ActivationParams, ClassFit, Pca, CODE, META};
pub use crate::class_pca::MomentsPartial;
use crate::class_pca::{keep_by_hash, same_classes, ClassPca};
use crate::linalg;
use crate::state::{header, Header, StateError};
use crate::{DetectError, Fitted};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// The rounds of ACT001 for data with `n_classes` classes and `dims` columns.
#[derive(Debug, Clone)]
pub struct Rounds {
    params: ActivationParams,
    n_classes: usize,
    pca: ClassPca,
    header: Header,
}

/// What round 2 finalises to: per class, its PCA map and variances, or why it is skipped.
#[derive(Debug, Clone)]
pub struct Reductions {
    classes: Vec<Result<(Pca, Vec<f64>), String>>,
}

/// Rows of a sample: ids ascending and `k` coordinates per row; either one class's clustered
/// rows (no labels), or the rows of other classes its clusters are tested against, with each
/// row's own class, in this class's PCA.
#[derive(Debug, Clone, PartialEq, Default)]
struct ClassSample {
    ids: Vec<u64>,
    labels: Vec<u32>,
    z: Vec<f64>,
}

impl ClassSample {
    /// Add the rows of `b` (a merge of lists sorted by id, with `k` coordinates a row); a row
    /// id in both is refused: the partitions overlap.
    fn merge(&mut self, b: &ClassSample, k: usize) -> Result<(), StateError> {
        if b.ids.is_empty() {
            return Ok(());
        }
        let a = &*self;
        let labeled = !b.labels.is_empty();
        let mut out = ClassSample {
            ids: Vec::with_capacity(a.ids.len() + b.ids.len()),
            labels: Vec::with_capacity(if labeled {
                a.ids.len() + b.ids.len()
            } else {
                0
            }),
            z: Vec::with_capacity(a.z.len() + b.z.len()),
        };
        let (mut i, mut j) = (0, 0);
        while i < a.ids.len() || j < b.ids.len() {
            let take_a = match (a.ids.get(i), b.ids.get(j)) {
                (Some(x), Some(y)) if x == y => return Err(StateError::DuplicateRow(*x)),
                (Some(x), Some(y)) => x < y,
                (Some(_), None) => true,
                _ => false,
            };
            let (src, t) = if take_a { (a, &mut i) } else { (b, &mut j) };
            out.ids.push(src.ids[*t]);
            if labeled {
                out.labels
                    .push(src.labels.get(*t).copied().ok_or(StateError::Truncated)?);
            }
            out.z.extend_from_slice(&src.z[*t * k..(*t + 1) * k]);
            *t += 1;
        }
        *self = out;
        Ok(())
    }

    /// Append the rows: their count (u64), then per row its id (u64), its label (u64, when the
    /// sample is labelled) and its `k` coordinates (f64 bits), all little-endian.
    fn write(&self, k: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        for (t, id) in self.ids.iter().enumerate() {
            out.extend_from_slice(&id.to_le_bytes());
            if let Some(l) = self.labels.get(t) {
                out.extend_from_slice(&u64::from(*l).to_le_bytes());
            }
            for v in &self.z[t * k..(t + 1) * k] {
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
    }

    /// Read rows written by [`ClassSample::write`] (with labels when `labeled`); the rest of
    /// the bytes. Ids out of order or repeated are refused.
    fn read(mut rest: &[u8], k: usize, labeled: bool) -> Result<(ClassSample, &[u8]), StateError> {
        let (len, r) = header::take_u64(rest)?;
        rest = r;
        let len = usize::try_from(len).map_err(|_| StateError::Truncated)?;
        let per_row = k + 1 + usize::from(labeled);
        if rest.len() / 8 / per_row < len {
            return Err(StateError::Truncated);
        }
        let mut c = ClassSample {
            ids: Vec::with_capacity(len),
            labels: Vec::with_capacity(if labeled { len } else { 0 }),
            z: Vec::with_capacity(len * k),
        };
        for _ in 0..len {
            let (id, r) = header::take_u64(rest)?;
            rest = r;
            if c.ids.last().is_some_and(|&last| last >= id) {
                return Err(StateError::Unsorted);
            }
            c.ids.push(id);
            if labeled {
                let (label, r) = header::take_u64(rest)?;
                rest = r;
                c.labels
                    .push(u32::try_from(label).map_err(|_| StateError::Truncated)?);
            }
            for _ in 0..k {
                let (bits, r) = header::take_u64(rest)?;
                rest = r;
                c.z.push(f64::from_bits(bits));
            }
        }
        Ok((c, rest))
    }
}

/// Round 3's partial state: per class, the coordinates of its clustered rows, and of the other
/// classes' rows sampled for its specificity test, sorted by row id.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePartial {
    k: usize,
    classes: Vec<ClassSample>,
    others: Vec<ClassSample>,
}

fn numeric(problem: String) -> DetectError {
    DetectError::Numeric {
        code: CODE,
        problem,
    }
}

impl Rounds {
    /// Rounds with the resolved `params`, for `n_classes` classes of `dims`-column rows.
    pub fn new(params: &ActivationParams, n_classes: usize, dims: usize) -> Self {
        use crate::Configured;
        let header = Header::new(CODE, META.version, &params.params());
        let gate = linalg::ClassGate::new(params.min_class_rows, params.min_rows_per_dim, dims);
        Rounds {
            params: params.clone(),
            n_classes,
            pca: ClassPca::new(
                n_classes,
                dims,
                params.components,
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

    /// Round 2 finalised: each fitted class's PCA map and variances.
    pub fn reductions(
        &self,
        counts: &[u64],
        moments: &MomentsPartial,
    ) -> Result<Reductions, DetectError> {
        let classes = self
            .pca
            .eigen(counts, moments)
            .map_err(numeric)?
            .into_iter()
            .map(|e| {
                let eig = e?;
                if eig.eigenvalues.first().is_none_or(|l| *l <= 0.0) {
                    return Err("all rows are identical".to_string());
                }
                let pca = Pca {
                    projectors: eig
                        .eigenvectors
                        .iter()
                        .map(|v| linalg::Projector::new(&eig.mean, v))
                        .collect(),
                    unmix: None,
                };
                Ok((pca, eig.eigenvalues))
            })
            .collect();
        Ok(Reductions { classes })
    }

    /// Coordinates per row in round 3 (the components of the first fitted class; every
    /// fitted class has the same number).
    fn k(&self, red: &Reductions) -> usize {
        red.classes
            .iter()
            .find_map(|c| c.as_ref().ok().map(|(pca, _)| pca.k()))
            .unwrap_or(0)
    }

    /// Round 3 over a batch: the PCA coordinates of the rows each fitted class clusters.
    pub fn sample(
        &self,
        counts: &[u64],
        red: &Reductions,
        x: &ArrayView2<'_, f32>,
        labels: &[u32],
        ids: &[u64],
    ) -> SamplePartial {
        let k = self.k(red);
        let mut classes = vec![ClassSample::default(); self.n_classes];
        let mut order: Vec<usize> = (0..labels.len()).collect();
        // ids ascending within the batch, so each class's list is sorted as it is built
        if ids.windows(2).any(|w| w[1] < w[0]) {
            order.sort_by_key(|&i| ids[i]);
        }
        let mut others = vec![ClassSample::default(); self.n_classes];
        for i in order {
            let c = labels[i] as usize;
            let n = counts.get(c).copied().unwrap_or(0);
            // a row of class c sampled for the other classes' specificity tests: its
            // coordinates in each of their PCAs
            if self.params.min_specificity > 0.0
                && keep_by_hash(ids[i], n, self.params.specificity_rows)
            {
                for (t, o) in others.iter_mut().enumerate() {
                    let Some(Ok((pca, _))) = red.classes.get(t).filter(|_| t != c) else {
                        continue;
                    };
                    o.ids.push(ids[i]);
                    o.labels.push(labels[i]);
                    let start = o.z.len();
                    o.z.resize(start + k, 0.0);
                    pca.project(x, i, &mut o.z[start..]);
                }
            }
            let Some(Ok((pca, _))) = red.classes.get(c) else {
                continue;
            };
            if !keep_by_hash(ids[i], n, self.params.max_cluster_rows) {
                continue;
            }
            let s = &mut classes[c];
            s.ids.push(ids[i]);
            let start = s.z.len();
            s.z.resize(start + k, 0.0);
            pca.project(x, i, &mut s.z[start..]);
        }
        SamplePartial { k, classes, others }
    }

    /// Round 3's partial of no rows (what merging starts from).
    pub fn empty_sample(&self, red: &Reductions) -> SamplePartial {
        SamplePartial {
            k: self.k(red),
            classes: vec![ClassSample::default(); self.n_classes],
            others: vec![ClassSample::default(); self.n_classes],
        }
    }

    /// Round 3 finalised: the fitted detector (class `names`, in class order). Classes are
    /// independent (each seeded by its own index) and fitted in parallel.
    pub fn finish(
        &self,
        names: &[String],
        counts: &[u64],
        red: Reductions,
        sample: SamplePartial,
    ) -> Result<Box<dyn Fitted>, DetectError> {
        let mut coords: Vec<Vec<f64>> = sample.classes.into_iter().map(|c| c.z).collect();
        coords.resize(red.classes.len(), Vec::new());
        let mut others = sample.others;
        others.resize(red.classes.len(), ClassSample::default());
        let fits: Vec<Result<ClassFit, DetectError>> = red
            .classes
            .into_par_iter()
            .zip(coords.into_par_iter().zip(others))
            .enumerate()
            .map(|(c, (r, (z, other)))| {
                let name = names.get(c).cloned().unwrap_or_default();
                let rows = usize::try_from(counts.get(c).copied().unwrap_or(0)).unwrap_or(0);
                let (pca, eigenvalues) = match r {
                    Err(why) => {
                        return Ok(ClassFit {
                            name,
                            rows,
                            clustered: 0,
                            model: None,
                            skipped: Some(why),
                        })
                    }
                    Ok(r) => r,
                };
                let clustered = z.len() / pca.k().max(1);
                if clustered < 2 {
                    return Ok(ClassFit {
                        name,
                        rows,
                        clustered,
                        model: None,
                        skipped: Some("fewer than 2 rows clustered".to_string()),
                    });
                }
                let seed = self.params.seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut model = fit_class(pca, &eigenvalues, z, &self.params, seed)?;
                check_specificity(&mut model, (&other.labels, &other.z), names, &self.params);
                Ok(ClassFit {
                    name,
                    rows,
                    clustered,
                    model: Some(model),
                    skipped: None,
                })
            })
            .collect();
        let mut classes = Vec::with_capacity(fits.len());
        for f in fits {
            classes.push(f?);
        }
        Ok(Box::new(ActivationFit { classes }))
    }
}

impl SamplePartial {
    /// Add another partial's rows (a merge of lists sorted by row id). A row id in both is
    /// refused: the partitions overlap.
    pub fn merge(&mut self, other: &SamplePartial) -> Result<(), StateError> {
        same_classes(self.classes.len(), other.classes.len())?;
        let k = self.k;
        if other.classes.iter().any(|c| !c.ids.is_empty()) && other.k != k {
            return Err(StateError::Shape {
                expected: k,
                got: other.k,
            });
        }
        same_classes(self.others.len(), other.others.len())?;
        for (a, b) in self.classes.iter_mut().zip(&other.classes) {
            a.merge(b, k)?;
        }
        for (a, b) in self.others.iter_mut().zip(&other.others) {
            a.merge(b, k)?;
        }
        Ok(())
    }

    /// Serialised behind `header`: the class count and the coordinates per row (u64 each),
    /// then per class its row count (u64) and per row its id (u64) and coordinates (f64 bits),
    /// all little-endian.
    pub fn to_bytes(&self, header: &Header) -> Vec<u8> {
        let mut out = header.to_bytes();
        out.extend_from_slice(&(self.classes.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.k as u64).to_le_bytes());
        for c in self.classes.iter().chain(&self.others) {
            c.write(self.k, &mut out);
        }
        out
    }

    /// Read a partial written by [`SamplePartial::to_bytes`] behind `expected`; ids out of
    /// order or repeated are refused.
    pub fn from_bytes(bytes: &[u8], expected: &Header) -> Result<SamplePartial, StateError> {
        let rest = expected.check(bytes)?;
        let (n, rest) = header::take_u64(rest)?;
        let (k, mut rest) = header::take_u64(rest)?;
        let k = usize::try_from(k).map_err(|_| StateError::Truncated)?;
        let mut classes = Vec::new();
        for _ in 0..n {
            let (c, r) = ClassSample::read(rest, k, false)?;
            classes.push(c);
            rest = r;
        }
        let mut others = Vec::new();
        for _ in 0..n {
            let (c, r) = ClassSample::read(rest, k, true)?;
            others.push(c);
            rest = r;
        }
        if !rest.is_empty() {
            return Err(StateError::Trailing(rest.len()));
        }
        Ok(SamplePartial { k, classes, others })
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
        let mut rng = Rng(21);
        let (n, d) = (1800, 12);
        let mut x = gaussian(&mut rng, n, d);
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        for i in (1..n).step_by(3) {
            if rng.unit() < 0.12 {
                for k in 0..d {
                    x[[i, k]] += if k % 2 == 0 { 2.5 } else { -2.5 };
                }
            }
        }
        (x, labels)
    }

    fn params(max_cluster_rows: usize) -> ActivationParams {
        ActivationParams {
            components: 10,
            max_minor_share: 0.35,
            min_silhouette_ratio: 1.5,
            restarts: 5,
            max_iterations: 100,
            silhouette_rows: 300,
            null_draws: 2,
            seed: 0,
            min_class_rows: 100,
            min_rows_per_dim: 2.0,
            max_covariance_rows: 262_144,
            max_cluster_rows,
            ica: false,
            min_specificity: 2.0,
            specificity_rows: 2000,
        }
    }

    /// Runs every round over `parts`, each partial through its bytes, merged in the parts'
    /// order; the state digests and the fitted detector.
    fn run_parts(
        r: &Rounds,
        x: &Array2<f32>,
        labels: &[u32],
        parts: &[Vec<usize>],
        names: &[String],
    ) -> ((Vec<u8>, Vec<u8>), Box<dyn Fitted>) {
        let counts = parts.iter().fold(vec![0u64; 3], |mut acc, part| {
            let (_, l, _) = take(x, labels, part);
            for (a, b) in acc.iter_mut().zip(r.pca().counts(&l)) {
                *a += b;
            }
            acc
        });
        let mut moments = r.pca().empty_moments();
        for part in parts {
            let (xp, lp, ip) = take(x, labels, part);
            let m = r.pca().moments(&counts, &xp.view(), &lp, &ip).unwrap();
            let m = MomentsPartial::from_bytes(&m.to_bytes(r.header()), r.header()).unwrap();
            moments.merge(&m).unwrap();
        }
        let red = r.reductions(&counts, &moments).unwrap();
        let mut sample = r.empty_sample(&red);
        for part in parts.iter().rev() {
            let (xp, lp, ip) = take(x, labels, part);
            let s = r.sample(&counts, &red, &xp.view(), &lp, &ip);
            let s = SamplePartial::from_bytes(&s.to_bytes(r.header()), r.header()).unwrap();
            sample.merge(&s).unwrap();
        }
        let digests = (
            sha(&moments.to_bytes(r.header())),
            sha(&sample.to_bytes(r.header())),
        );
        let fitted = r.finish(names, &counts, red, sample).unwrap();
        (digests, fitted)
    }

    #[test]
    fn any_partitioning_and_merge_order_give_the_same_state_and_scores() {
        let (x, labels) = data();
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let view = view(&x, &labels, &names);
        // whole classes clustered, and a hash sample of each (600 rows a class)
        for cap in [262_144usize, 250] {
            let p = params(cap);
            let r = Rounds::new(&p, 3, x.ncols());
            let whole = p.fit(&view).unwrap();
            let whole_scores = whole.score(&view.batch(0, x.nrows())).unwrap();
            let summary = whole.summary();
            assert_eq!(summary["classes"][1]["split"], true, "{summary}");
            assert!(summary["classes"][0]["flagged"] == 0, "{summary}");
            let clustered = summary["classes"][1]["clustered_rows"].as_u64().unwrap();
            if cap < 600 {
                assert!((200..300).contains(&clustered), "{summary}");
            } else {
                assert_eq!(clustered, 600);
            }
            let mut seen = None;
            for (k, seed) in [(1usize, 1u64), (2, 2), (7, 3), (16, 4), (16, 5)] {
                let parts = partition(x.nrows(), k, seed);
                let (digests, fitted) = run_parts(&r, &x, &labels, &parts, &names);
                match &seen {
                    None => seen = Some(digests),
                    Some(d) => assert_eq!(d, &digests, "{k} partitions"),
                }
                let scores = fitted.score(&view.batch(0, x.nrows())).unwrap();
                assert_same_scores(&scores, &whole_scores, &format!("{k} partitions"));
                assert_eq!(fitted.summary(), summary);
            }
        }
    }

    #[test]
    fn overlapping_damaged_or_foreign_partials_are_refused() {
        let (x, labels) = data();
        let p = params(262_144);
        let r = Rounds::new(&p, 3, x.ncols());
        let ids: Vec<u64> = (0..x.nrows() as u64).collect();
        let counts = r.pca().counts(&labels);
        let m = r.pca().moments(&counts, &x.view(), &labels, &ids).unwrap();
        let red = r.reductions(&counts, &m).unwrap();
        let s = r.sample(&counts, &red, &x.view(), &labels, &ids);
        // the same rows twice: the partitions overlap
        let mut twice = s.clone();
        assert!(matches!(twice.merge(&s), Err(StateError::DuplicateRow(_))));
        let bytes = s.to_bytes(r.header());
        assert_eq!(SamplePartial::from_bytes(&bytes, r.header()).unwrap(), s);
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(SamplePartial::from_bytes(&bytes[..cut], r.header()).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SamplePartial::from_bytes(&longer, r.header()).is_err());
        let mut other = p.clone();
        other.seed = 1;
        let r2 = Rounds::new(&other, 3, x.ncols());
        assert!(SamplePartial::from_bytes(&bytes, r2.header()).is_err());
        // ids out of order are not a state this code wrote
        let mut swapped = s.clone();
        if let Some(c) = swapped.classes.iter_mut().find(|c| c.ids.len() > 2) {
            c.ids.swap(0, 1);
        }
        assert_eq!(
            SamplePartial::from_bytes(&swapped.to_bytes(r.header()), r.header()),
            Err(StateError::Unsorted)
        );
        // a partial with another class count is refused, not indexed past its end
        let mut short = s.clone();
        short.classes.truncate(1);
        let mut full = r.empty_sample(&red);
        assert!(full.merge(&short).is_err());
    }
}
