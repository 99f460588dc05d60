//! One class's clustering and verdict: the coordinates reduced (PCA, optionally FastICA), 2-means,
//! the silhouette against its Gaussian null, and the split decision.

use super::kmeans::{kmeans2, sample_without_replacement};
use super::silhouette::silhouette2;
use super::{apply, ActivationParams, Pca, CODE};
use crate::linalg::{self, CHUNK_ROWS};
use crate::rng::SplitMix64;
use crate::DetectError;
use rayon::prelude::*;

/// Most rows of a class FastICA is fitted on (evenly spaced).
const ICA_ROWS: usize = 20_000;
/// FastICA's iteration limit and tolerance.
const ICA_MAX_ITER: usize = 200;
const ICA_TOL: f64 = 1e-4;

/// The class's verdict.
#[derive(Debug, Clone)]
pub(super) struct ClassModel {
    pub(super) pca: Pca,
    /// Centroids of the larger and the smaller cluster, in PCA coordinates.
    pub(super) major: Vec<f64>,
    pub(super) minor: Vec<f64>,
    pub(super) sizes: [usize; 2],
    pub(super) silhouette: f64,
    pub(super) null_silhouette: f64,
    pub(super) null_spread: f64,
    pub(super) explained: f64,
    pub(super) split: bool,
    /// min(1, (s / s₀) / min_silhouette_ratio): scales scores in a class that does not split.
    pub(super) closeness: f64,
    pub(super) decision: String,
    pub(super) flagged: usize,
    /// FastICA iterations, when the reduction is ICA.
    pub(super) ica_iterations: Option<usize>,
    /// The other classes' sampled rows against the clusters: (class name, rows, rows on the
    /// smaller cluster's side), for a class whose clustering passed the split tests.
    pub(super) specificity: Vec<(String, usize, usize)>,
}

impl ClassModel {
    /// Distance ratio ‖z − c_major‖ / ‖z − c_minor‖ (infinite on the minor centroid itself).
    pub(super) fn ratio(&self, z: &[f64]) -> f64 {
        let a = sq_dist(z, &self.major);
        let b = sq_dist(z, &self.minor);
        if b <= 0.0 {
            return if a <= 0.0 { 1.0 } else { f64::INFINITY };
        }
        (a / b).sqrt()
    }

    /// Normalised score and whether the row is flagged.
    pub(super) fn score(&self, z: &[f64]) -> (f64, bool) {
        let r = self.ratio(z);
        if self.split {
            (r.min(1e6), r >= 1.0)
        } else {
            ((r * self.closeness).min(0.999), false)
        }
    }
}

pub(super) fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// One class's verdict from `z`, the row-major PCA coordinates (`pca.k()` columns) of the rows
/// clustered, in row order; `eigenvalues` are the class's PCA variances.
pub(super) fn fit_class(
    mut pca: Pca,
    eigenvalues: &[f64],
    mut z: Vec<f64>,
    p: &ActivationParams,
    seed: u64,
) -> Result<ClassModel, DetectError> {
    let k = pca.k();
    let n = z.len() / k.max(1);
    // the Gaussian null has the covariance of the coordinates clustered: the class's PCA
    // covariance, or the identity after whitening and FastICA's rotation
    let mut sd: Vec<f64> = eigenvalues.iter().map(|l| l.max(0.0).sqrt()).collect();
    let mut ica_iterations = None;
    if p.ica {
        let inv: Vec<f64> = sd
            .iter()
            .map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 })
            .collect();
        let m = n.min(ICA_ROWS);
        let y: Vec<f64> = (0..m)
            .flat_map(|t| {
                let i = (t as u128 * n as u128 / m as u128) as usize;
                z[i * k..(i + 1) * k]
                    .iter()
                    .zip(&inv)
                    .map(|(v, s)| v * s)
                    .collect::<Vec<_>>()
            })
            .collect();
        let (w, iters) =
            linalg::fast_ica(&y, m, k, seed ^ 0x1CA, ICA_MAX_ITER, ICA_TOL).map_err(|problem| {
                DetectError::Numeric {
                    code: CODE,
                    problem,
                }
            })?;
        let unmix: Vec<f64> = (0..k * k).map(|t| w[t] * inv[t % k]).collect();
        z.par_chunks_mut(CHUNK_ROWS * k).for_each(|chunk| {
            for r in chunk.chunks_exact_mut(k) {
                apply(&unmix, r);
            }
        });
        pca.unmix = Some(unmix);
        sd = vec![1.0; k];
        ica_iterations = Some(iters);
    }
    let mut rng = SplitMix64(seed);
    let km = kmeans2(&z, k, p.restarts, p.max_iterations, &mut rng);
    // the smaller cluster (first on a tie) is the candidate
    let (minor_c, major_c) = if km.sizes[1] < km.sizes[0] {
        (1, 0)
    } else {
        (0, 1)
    };
    let minor = km.centroids[minor_c].clone();
    let major = km.centroids[major_c].clone();
    // final assignment by the scoring rule (ties to the minor cluster), so flags = scores ≥ 1
    let is_minor: Vec<bool> = z
        .chunks_exact(k)
        .map(|r| sq_dist(r, &minor) <= sq_dist(r, &major))
        .collect();
    let n_minor = is_minor.iter().filter(|v| **v).count();
    let sizes = [n - n_minor, n_minor];
    // silhouette on a seeded subsample
    let m = p.silhouette_rows.min(n);
    let sample = sample_without_replacement(n, m, &mut rng);
    let zs: Vec<f64> = sample
        .iter()
        .flat_map(|&i| z[i * k..(i + 1) * k].iter().copied())
        .collect();
    let ls: Vec<bool> = sample.iter().map(|&i| is_minor[i]).collect();
    // null: the same clustering on Gaussians with the coordinates' covariance. The draws run
    // in parallel, beside the data's silhouette, each from the generator state the one-by-one
    // loop reaches it with: a draw takes 2 numbers per Gaussian value and k-means 2 per
    // restart (1 when every row equals the first centre, which a Gaussian sample does not
    // do); a draw that took another count is redone in order, so the values are the
    // sequential loop's in every case.
    let per_draw = (2 * m * k + 2 * p.restarts) as u64;
    let null_draw = |mut rng: SplitMix64| -> (f64, SplitMix64) {
        let g: Vec<f64> = (0..m * k).map(|t| rng.gauss() * sd[t % k]).collect();
        let km0 = kmeans2(&g, k, p.restarts, p.max_iterations, &mut rng);
        let minor0 = usize::from(km0.sizes[1] < km0.sizes[0]);
        let l0: Vec<bool> = g
            .chunks_exact(k)
            .map(|r| sq_dist(r, &km0.centroids[minor0]) <= sq_dist(r, &km0.centroids[1 - minor0]))
            .collect();
        (silhouette2(&g, k, &l0), rng)
    };
    let (silhouette, drawn) = rayon::join(
        || silhouette2(&zs, k, &ls),
        || -> Vec<(f64, SplitMix64)> {
            (0..p.null_draws as u64)
                .into_par_iter()
                .map(|t| null_draw(rng.ahead(t * per_draw)))
                .collect()
        },
    );
    let mut nulls: Vec<f64> = Vec::with_capacity(p.null_draws);
    for (t, (s, end)) in drawn.into_iter().enumerate() {
        let planned_end = rng.ahead((t as u64 + 1) * per_draw);
        if end.0 == planned_end.0 {
            nulls.push(s);
        } else {
            // the counts differed: the rest runs one by one from where this draw began
            let mut seq = rng.ahead(t as u64 * per_draw);
            for _ in t..p.null_draws {
                let (s, next) = null_draw(seq);
                nulls.push(s);
                seq = next;
            }
            break;
        }
    }
    let null_silhouette = nulls.iter().sum::<f64>() / nulls.len() as f64;
    let null_spread = (nulls
        .iter()
        .map(|s| (s - null_silhouette).powi(2))
        .sum::<f64>()
        / nulls.len() as f64)
        .sqrt();
    let share = n_minor as f64 / n as f64;
    let sil_ratio = if null_silhouette > 0.0 {
        silhouette / null_silhouette
    } else {
        0.0
    };
    let tight = sil_ratio >= p.min_silhouette_ratio;
    let small = n_minor > 0 && share <= p.max_minor_share;
    let split = tight && small;
    let decision = if split {
        format!("split: silhouette {silhouette:.3} is {sil_ratio:.2}× the null's, smaller cluster {share:.3} of the class; its rows are flagged")
    } else if !tight {
        format!("no split: silhouette {silhouette:.3} is {sil_ratio:.2}× the null's {null_silhouette:.3}, below min_silhouette_ratio")
    } else {
        format!("no split: smaller cluster holds {share:.3} of the class, above max_minor_share")
    };
    let total_var: f64 = eigenvalues.iter().sum();
    Ok(ClassModel {
        pca,
        major,
        minor,
        sizes,
        silhouette,
        null_silhouette,
        null_spread,
        explained: total_var,
        split,
        closeness: (sil_ratio / p.min_silhouette_ratio).clamp(0.0, 1.0),
        decision,
        flagged: if split { n_minor } else { 0 },
        ica_iterations,
        specificity: Vec::new(),
    })
}

/// The specificity test of a class whose clustering passed the split tests: `others` holds
/// sampled rows of the other classes (their labels, and their coordinates in this class's PCA,
/// `k` a row, before any ICA unmixing), `names` the class names. The smaller cluster must be at
/// least `min_specificity` times as common in its class as the share of any other class's
/// rows that fall on its side; otherwise the class does not split (see the detector's docs).
pub(super) fn check_specificity(
    m: &mut ClassModel,
    others: (&[u32], &[f64]),
    names: &[String],
    p: &ActivationParams,
) {
    if !m.split {
        return;
    }
    let k = m.pca.k();
    let (labels, z) = others;
    let mut per: std::collections::BTreeMap<u32, (usize, usize)> = Default::default();
    let mut row = vec![0f64; k];
    for (i, &l) in labels.iter().enumerate() {
        row.copy_from_slice(&z[i * k..(i + 1) * k]);
        if let Some(u) = &m.pca.unmix {
            apply(u, &mut row);
        }
        let e = per.entry(l).or_default();
        e.0 += 1;
        if m.ratio(&row) >= 1.0 {
            e.1 += 1;
        }
    }
    m.specificity = per
        .iter()
        .map(|(&l, &(n, on))| {
            let name = names.get(l as usize).cloned().unwrap_or_default();
            (name, n, on)
        })
        .collect();
    let clustered = (m.sizes[0] + m.sizes[1]).max(1);
    let share = m.sizes[1] as f64 / clustered as f64;
    let widest = m
        .specificity
        .iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(name, n, on)| (*on as f64 / *n as f64, name.clone()))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((o, name)) = widest {
        if share < p.min_specificity * o {
            m.split = false;
            m.flagged = 0;
            m.decision = format!(
                "no split: the smaller cluster ({share:.3} of the class) is not specific to it: \
                 {o:.3} of class {name}'s rows fall on its side (min_specificity {}): a \
                 sub-population the classes share (a source, a topic, a language), not rows put \
                 into one class",
                p.min_specificity
            );
        }
    }
}
