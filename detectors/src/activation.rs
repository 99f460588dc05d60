//! ACT001 activation clustering (Chen et al. 2018), with a per-class null so that a clean class
//! gives up nothing.

use crate::linalg::{self, CHUNK_ROWS};
use crate::params::ParamReader;
use crate::rng::SplitMix64;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use ndarray::ArrayView2;
use rayon::prelude::*;
use serde_json::json;

const CODE: &str = "ACT001";

static META: Meta = Meta {
    code: CODE,
    name: "activation-clustering",
    summary: "A class whose representations split into a tight minority cluster and the rest",
    docs: r#"# ACT001 activation-clustering

## What it detects
A class that holds two populations: its own examples and a minority that shares something the
rest lacks (a backdoor trigger inserted into target-class rows, a template). In a model's
activations or a sentence encoder's embeddings such a minority forms its own cluster. Chen et
al. cluster each class in two and call the smaller cluster poison; applied as such, that flags a
cluster in **every** class, clean ones included (IBM ART's default does this, and flags 30 % of
clean SST-2). ACT001 keeps the clustering but only gives up a cluster when the class really
splits, judged against what the same clustering finds in a unimodal class of the same shape.

## Method
Per class c with rows X_c (n_c × d):
1. PCA: mean and covariance of X_c from merged Gram sums, the top `components` (10)
   eigenvectors by faer's self-adjoint eigendecomposition; every row is projected to
   z_i = Vᵀ(x_i − μ) (the paper reduces to 10 dimensions before clustering). With `ica`,
   z_i is then whitened and rotated into FastICA's independent components (see Parameters).
2. 2-means on all z_i: k-means++ seeding from the seeded SplitMix64 stream, Lloyd iterations
   until no row moves (at most `max_iterations`), `restarts` (5) seedings, the lowest
   within-cluster sum of squares wins. Rows go to the nearer centroid, ties to the smaller
   cluster.
3. Silhouette s of that partition (Rousseeuw's mean of (b − a)/max(a, b), exact Euclidean
   distances) on `silhouette_rows` (2000) rows drawn without replacement with the seed.
4. Null: 2-means has a sizeable silhouette even on one Gaussian (about 0.12 for an isotropic
   Gaussian in 10-D; more when one direction dominates). So the same steps 2-3 run on
   `null_draws` (5) samples of the same size from N(0, diag(λ₁…λ_k)), the Gaussian with the
   class's own PCA covariance; s₀ is their mean silhouette.
5. The class **splits** only when both hold:
   - s ≥ `min_silhouette_ratio` · s₀ (1.5): the partition is markedly tighter than a Gaussian of
     the same covariance gives. Real classes are not Gaussian (topics, heavy tails, ReLU
     skew): on ../shared/benchmarks every class that holds no trigger cluster (clean sets and
     the untargeted or weakly moved classes of the poisoned ones, both representations)
     reaches s/s₀ between 1.04 and 1.27, the clean-label trigger cluster 1.78. The
     significance of s against s₀ is useless here (the null's spread is about 0.004, so every
     real class would be "significant"); the ratio is an effect size, set halfway between "as
     clustered as natural text gets" and the one real cluster, and every benchmark result is
     the same for any ratio between 1.3 and 1.75 (docs/evaluation.md).
   - the smaller cluster holds at most `max_minor_share` (0.35) of the class, Chen et al.'s own
     bound: a poison cluster is a minority of its class, while 2-means on a unimodal class
     cuts it near the middle (shares 0.4-0.5 on the Gaussian null).
   In a split class the rows of the smaller cluster are flagged.

Scores: r = ‖z − c_major‖ / ‖z − c_minor‖, the distance ratio to the two centroids, so 1.0 is
the cluster boundary and the threshold. In a class that splits, a row is flagged exactly when
r ≥ 1. In a class that does not split, min(r · g, 0.999) with g = min(1, (s/s₀) /
`min_silhouette_ratio`): graded by how close the row and its class came, never flagged.
Classes with fewer than max(`min_class_rows`, `min_rows_per_dim` · d) rows are skipped, as in
SPEC001. The report lists per class the cluster sizes, s, s₀ and their ratio, and the decision.

k-means is hand-written (about 60 lines) rather than linfa-clustering's: 2 centroids in 10
dimensions need nothing more, and a fixed chunked reduction keeps results bit-identical for
any thread count.

## Parameters
- `components` (default 10): PCA dimensions the clustering sees (Chen et al. use 10).
- `max_minor_share` (default 0.35): largest share of a class the smaller cluster may hold.
- `min_silhouette_ratio` (default 1.5): silhouette over the Gaussian null's a split needs.
- `restarts` (default 5), `max_iterations` (default 100): k-means seedings and Lloyd steps.
- `silhouette_rows` (default 2000): rows the (quadratic) silhouette is computed on, for the data
  and for each null draw.
- `null_draws` (default 5): Gaussian samples the null silhouette averages.
- `seed` (default 0): seeds k-means++, the silhouette subsample and the null draws.
- `min_class_rows` (default 100) and `min_rows_per_dim` (default 2.0): smaller classes are skipped.
- `max_covariance_rows` (default 262 144; 0 = all): rows per class the PCA is estimated from
  (evenly spaced); every row is still clustered.
- `ica` (default false): cluster independent components instead, as Chen et al. do: the PCA
  coordinates are whitened (divided by √λ) and rotated by symmetric FastICA (log-cosh
  contrast, Hyvärinen 1999; fitted on at most 20 000 evenly spaced rows of the class, at most
  200 iterations, tolerance 1e-4, components ordered by |excess kurtosis|); the Gaussian null
  is then N(0, I). 2-means and the Euclidean silhouette do not change under a rotation, so what
  changes the verdict is the whitening: every component weighs the same, and a minority shifted
  along a low-variance direction can split its class. Measured (`poisongate benchmark
  ../shared/benchmarks --select ACT001 --config FILE` with `[detectors.ACT001] ica = true`):
  sst2-addsent-10 on `.mlp.npy` F1 0.963 (PCA: 0; ART's ActivationDefence: 0.38), but
  sst2-badnets-cleanlabel-10 on `.minilm.npy` F1 0 (PCA: 0.972), sst2-synbkd-20 on `.mlp.npy`
  21 % of rows flagged at precision 0.32, and 7.7 % of sms-spam-clean on `.mlp.npy` (a compact
  block of near-identical ham activations, silhouette 4.7× the null). Hence off by default.

## Known false positives
A natural minority sub-population that is compact and separate (messages in another language,
a block of boilerplate rows) splits its class in the same way and is flagged whole. The report
gives per class the cluster sizes and silhouettes to check such a finding.

## Known limits
A trigger that moves the representation less than the class's natural spread (single rare words
in a frozen sentence encoder, the shallow classifier's activations of docs/evaluation.md) forms
no cluster, and nothing is flagged.

## References
Bryant Chen, Wilka Carvalho, Nathalie Baracaldo, Heiko Ludwig, Benjamin Edwards, Taesung Lee,
Ian Molloy, Biplav Srivastava. Detecting Backdoor Attacks on Deep Neural Networks by Activation
Clustering. AAAI SafeAI workshop, 2019 (arXiv:1811.03728, 2018). Aapo Hyvärinen. Fast and
robust fixed-point algorithms for independent component analysis. IEEE Trans. Neural Networks
10(3), 1999. David Arthur, Sergei
Vassilvitskii. k-means++: the advantages of careful seeding. SODA 2007. Peter J. Rousseeuw.
Silhouettes: a graphical aid to the interpretation and validation of cluster analysis. J. Comput.
Appl. Math. 20, 1987.
"#,
    version: 1,
};

/// ACT001: activation clustering. See [`Meta::docs`] of its [`Detector::meta`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivationClustering;

/// Checked parameters of ACT001 (see the detector's docs for their meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationParams {
    /// PCA dimensions the clustering sees.
    pub components: usize,
    /// Largest share of a class the smaller cluster may hold.
    pub max_minor_share: f64,
    /// Silhouette over the Gaussian null's a split needs.
    pub min_silhouette_ratio: f64,
    /// k-means++ seedings.
    pub restarts: usize,
    /// Lloyd iterations per seeding.
    pub max_iterations: usize,
    /// Rows the silhouette is computed on.
    pub silhouette_rows: usize,
    /// Gaussian samples the null silhouette averages.
    pub null_draws: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Classes with fewer rows are skipped.
    pub min_class_rows: usize,
    /// Classes with fewer than this many rows per dimension are skipped.
    pub min_rows_per_dim: f64,
    /// Rows per class the PCA is estimated from (evenly spaced); 0 = all.
    pub max_covariance_rows: usize,
    /// Reduce with FastICA on the whitened PCA coordinates (Chen et al.'s choice) instead of
    /// clustering the PCA coordinates.
    pub ica: bool,
}

impl Detector for ActivationClustering {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let p = ActivationParams {
            components: r.usize("components", 10, 1, 256)?,
            max_minor_share: r.f64("max_minor_share", 0.35, 0.01, 0.5)?,
            min_silhouette_ratio: r.f64("min_silhouette_ratio", 1.5, 1.0, 100.0)?,
            restarts: r.usize("restarts", 5, 1, 100)?,
            max_iterations: r.usize("max_iterations", 100, 1, 10_000)?,
            silhouette_rows: r.usize("silhouette_rows", 2000, 50, 100_000)?,
            null_draws: r.usize("null_draws", 5, 1, 100)?,
            seed: r.usize("seed", 0, 0, usize::MAX)? as u64,
            min_class_rows: r.usize("min_class_rows", 100, 8, usize::MAX)?,
            min_rows_per_dim: r.f64("min_rows_per_dim", 2.0, 0.0, 1e6)?,
            max_covariance_rows: r.usize("max_covariance_rows", 262_144, 0, usize::MAX)?,
            ica: r.bool("ica", false)?,
        };
        r.finish()?;
        Ok(Box::new(p))
    }
}

impl Configured for ActivationParams {
    fn needs(&self) -> Needs {
        Needs {
            text: false,
            labels: true,
            embeddings: true,
            responses: false,
        }
    }

    fn params(&self) -> serde_json::Value {
        json!({
            "components": self.components,
            "max_minor_share": self.max_minor_share,
            "min_silhouette_ratio": self.min_silhouette_ratio,
            "restarts": self.restarts,
            "max_iterations": self.max_iterations,
            "silhouette_rows": self.silhouette_rows,
            "null_draws": self.null_draws,
            "seed": self.seed,
            "min_class_rows": self.min_class_rows,
            "min_rows_per_dim": self.min_rows_per_dim,
            "max_covariance_rows": self.max_covariance_rows,
            "ica": self.ica,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let x = data.require_embeddings(CODE)?;
        let labels = data.require_labels(CODE)?;
        let gate = linalg::ClassGate::new(self.min_class_rows, self.min_rows_per_dim, x.ncols());
        let by_class = linalg::rows_by_class(labels, data.n_classes());
        // classes are independent (each seeded by its own index): fitted in parallel, taken
        // in class order, errors too
        let fit_one = |(c, rows): (usize, &Vec<usize>)| -> Result<ClassFit, DetectError> {
            let name = data.class_names.get(c).cloned().unwrap_or_default();
            let skip = |why: String| ClassFit {
                name: name.clone(),
                rows: rows.len(),
                model: None,
                skipped: Some(why),
            };
            if let Some(why) = gate.skip_reason(rows.len()) {
                return Ok(skip(why));
            }
            let k = self.components.min(x.ncols());
            let cov_rows = linalg::evenly_spaced(rows, self.max_covariance_rows);
            let eig = linalg::centered_eigen(&x, &cov_rows, k).map_err(|problem| {
                DetectError::Numeric {
                    code: CODE,
                    problem: format!("class {name}: {problem}"),
                }
            })?;
            if eig.eigenvalues.first().is_none_or(|l| *l <= 0.0) {
                return Ok(skip("all rows are identical".into()));
            }
            let class_seed = self.seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let model = fit_class(&x, rows, eig, self, class_seed)?;
            Ok(ClassFit {
                name,
                rows: rows.len(),
                model: Some(model),
                skipped: None,
            })
        };
        let fits: Vec<Result<ClassFit, DetectError>> =
            by_class.par_iter().enumerate().map(fit_one).collect();
        let mut classes = Vec::with_capacity(fits.len());
        for f in fits {
            classes.push(f?);
        }
        Ok(Box::new(ActivationFit { classes }))
    }
}

/// A fitted PCA map: rows of the input to `k`-dimensional coordinates.
#[derive(Debug, Clone)]
struct Pca {
    projectors: Vec<linalg::Projector>,
    /// With `ica`: the `k × k` row-major map from PCA coordinates to independent components
    /// (FastICA's unmixing times the whitening).
    unmix: Option<Vec<f64>>,
}

impl Pca {
    fn k(&self) -> usize {
        self.projectors.len()
    }

    fn project(&self, x: &ArrayView2<'_, f32>, r: usize, out: &mut [f64]) {
        for (o, p) in out.iter_mut().zip(&self.projectors) {
            *o = p.project(x, r);
        }
        if let Some(u) = &self.unmix {
            apply(u, out);
        }
    }

    /// Row-major `rows.len() × k` coordinates, in parallel over fixed chunks.
    fn project_rows(&self, x: &ArrayView2<'_, f32>, rows: &[usize]) -> Vec<f64> {
        let k = self.k();
        rows.par_chunks(CHUNK_ROWS)
            .flat_map_iter(|chunk| {
                let mut out = vec![0f64; chunk.len() * k];
                for (o, &r) in out.chunks_exact_mut(k).zip(chunk) {
                    self.project(x, r, o);
                }
                out
            })
            .collect()
    }
}

/// `z ← U z` for the row-major square matrix `u`.
fn apply(u: &[f64], z: &mut [f64]) {
    let k = z.len();
    let pca: Vec<f64> = z.to_vec();
    for (i, o) in z.iter_mut().enumerate() {
        *o = u[i * k..(i + 1) * k]
            .iter()
            .zip(&pca)
            .map(|(a, b)| a * b)
            .sum();
    }
}

/// Most rows of a class FastICA is fitted on (evenly spaced).
const ICA_ROWS: usize = 20_000;
/// FastICA's iteration limit and tolerance.
const ICA_MAX_ITER: usize = 200;
const ICA_TOL: f64 = 1e-4;

/// The class's verdict.
#[derive(Debug, Clone)]
struct ClassModel {
    pca: Pca,
    /// Centroids of the larger and the smaller cluster, in PCA coordinates.
    major: Vec<f64>,
    minor: Vec<f64>,
    sizes: [usize; 2],
    silhouette: f64,
    null_silhouette: f64,
    null_spread: f64,
    explained: f64,
    split: bool,
    /// min(1, (s / s₀) / min_silhouette_ratio): scales scores in a class that does not split.
    closeness: f64,
    decision: String,
    flagged: usize,
    /// FastICA iterations, when the reduction is ICA.
    ica_iterations: Option<usize>,
}

impl ClassModel {
    /// Distance ratio ‖z − c_major‖ / ‖z − c_minor‖ (infinite on the minor centroid itself).
    fn ratio(&self, z: &[f64]) -> f64 {
        let a = sq_dist(z, &self.major);
        let b = sq_dist(z, &self.minor);
        if b <= 0.0 {
            return if a <= 0.0 { 1.0 } else { f64::INFINITY };
        }
        (a / b).sqrt()
    }

    /// Normalised score and whether the row is flagged.
    fn score(&self, z: &[f64]) -> (f64, bool) {
        let r = self.ratio(z);
        if self.split {
            (r.min(1e6), r >= 1.0)
        } else {
            ((r * self.closeness).min(0.999), false)
        }
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn fit_class(
    x: &ArrayView2<'_, f32>,
    rows: &[usize],
    eig: linalg::CenteredEigen,
    p: &ActivationParams,
    seed: u64,
) -> Result<ClassModel, DetectError> {
    let mut pca = Pca {
        projectors: eig
            .eigenvectors
            .iter()
            .map(|v| linalg::Projector::new(&eig.mean, v))
            .collect(),
        unmix: None,
    };
    let k = pca.k();
    let mut z = pca.project_rows(x, rows);
    let n = rows.len();
    // the Gaussian null has the covariance of the coordinates clustered: the class's PCA
    // covariance, or the identity after whitening and FastICA's rotation
    let mut sd: Vec<f64> = eig.eigenvalues.iter().map(|l| l.max(0.0).sqrt()).collect();
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
    let total_var: f64 = eig.eigenvalues.iter().sum();
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
    })
}

/// `m` distinct indices of `0..n`, sorted (partial Fisher-Yates with the seeded stream).
fn sample_without_replacement(n: usize, m: usize, rng: &mut SplitMix64) -> Vec<usize> {
    if m >= n {
        return (0..n).collect();
    }
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..m {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    let mut s = idx[..m].to_vec();
    s.sort_unstable();
    s
}

/// Result of 2-means.
#[derive(Debug, Clone)]
struct KMeans2 {
    centroids: [Vec<f64>; 2],
    sizes: [usize; 2],
}

/// One Lloyd pass over row-major `z` (`k` columns): assignment to the nearer of `c`, then
/// per-cluster sums, counts and the within sum of squares. Fixed chunks merged in order, so the
/// result does not depend on the thread count.
fn lloyd_pass(z: &[f64], k: usize, c: &[Vec<f64>; 2]) -> ([Vec<f64>; 2], [usize; 2], f64) {
    let parts: Vec<([Vec<f64>; 2], [usize; 2], f64)> = z
        .par_chunks(CHUNK_ROWS * k)
        .map(|chunk| {
            let mut sums = [vec![0f64; k], vec![0f64; k]];
            let mut counts = [0usize; 2];
            let mut wss = 0.0;
            for r in chunk.chunks_exact(k) {
                let d0 = sq_dist(r, &c[0]);
                let d1 = sq_dist(r, &c[1]);
                let j = usize::from(d1 < d0);
                counts[j] += 1;
                wss += d0.min(d1);
                for (s, v) in sums[j].iter_mut().zip(r) {
                    *s += v;
                }
            }
            (sums, counts, wss)
        })
        .collect();
    let mut sums = [vec![0f64; k], vec![0f64; k]];
    let mut counts = [0usize; 2];
    let mut wss = 0.0;
    for (s, n, w) in parts {
        for j in 0..2 {
            for (a, b) in sums[j].iter_mut().zip(&s[j]) {
                *a += b;
            }
            counts[j] += n[j];
        }
        wss += w;
    }
    (sums, counts, wss)
}

/// 2-means of the rows of `z` (row-major, `k` columns) with k-means++ seeding, `restarts`
/// seedings, at most `max_iter` Lloyd steps each; the lowest within sum of squares wins.
fn kmeans2(z: &[f64], k: usize, restarts: usize, max_iter: usize, rng: &mut SplitMix64) -> KMeans2 {
    let n = z.len() / k;
    let row = |i: usize| &z[i * k..(i + 1) * k];
    let mut best: Option<(f64, KMeans2)> = None;
    for _ in 0..restarts {
        // k-means++: first centre uniform, second with probability ∝ squared distance
        let first = row(rng.below(n)).to_vec();
        let d2: Vec<f64> = (0..n).map(|i| sq_dist(row(i), &first)).collect();
        let total: f64 = d2.iter().sum();
        let second = if total > 0.0 {
            let target = rng.unit() * total;
            let mut acc = 0.0;
            let mut pick = n - 1;
            for (i, d) in d2.iter().enumerate() {
                acc += d;
                if acc > target {
                    pick = i;
                    break;
                }
            }
            row(pick).to_vec()
        } else {
            first.clone()
        };
        let mut c = [first, second];
        let mut counts = [0usize; 2];
        let mut wss = f64::INFINITY;
        for _ in 0..max_iter {
            let (sums, cnt, w) = lloyd_pass(z, k, &c);
            counts = cnt;
            wss = w;
            let mut moved = false;
            for j in 0..2 {
                if cnt[j] == 0 {
                    continue;
                }
                let new: Vec<f64> = sums[j].iter().map(|s| s / cnt[j] as f64).collect();
                if new != c[j] {
                    moved = true;
                    c[j] = new;
                }
            }
            if !moved {
                break;
            }
        }
        if best.as_ref().is_none_or(|(bw, _)| wss < *bw) {
            best = Some((
                wss,
                KMeans2 {
                    centroids: c,
                    sizes: counts,
                },
            ));
        }
    }
    best.map(|(_, km)| km).unwrap_or(KMeans2 {
        centroids: [vec![0.0; k], vec![0.0; k]],
        sizes: [n, 0],
    })
}

/// Distances computed side by side in the silhouette's inner loop (one AVX-512 register of
/// f64).
const SILHOUETTE_LANES: usize = 8;
/// Pieces the silhouette's pairs are cut into: fixed, so the merge order, and with it every
/// bit of the result, does not depend on the thread count.
const SILHOUETTE_TASKS: usize = 16;

/// Mean silhouette of a two-cluster partition (`in_b[i]`: row i is in the second cluster) of
/// row-major `z`; 0 when a cluster is empty. Exact O(m²k) (Rousseeuw's a and b from every
/// distance), no sampling.
///
/// Each distance is computed once, for the pair i < j, and added to both rows' cluster sums:
/// half the square roots of the row-at-a-time form, which is bound by them. The rows are cut
/// into [`SILHOUETTE_TASKS`] ranges with about equal numbers of pairs; each range sums into
/// its own per-row arrays, merged in range order, so the result is the same for any thread
/// count (it differs from the row-at-a-time sum, which adds in another order, by rounding
/// only; a unit test bounds it).
fn silhouette2(z: &[f64], k: usize, in_b: &[bool]) -> f64 {
    let m = in_b.len();
    let nb = in_b.iter().filter(|v| **v).count();
    let na = m - nb;
    if na == 0 || nb == 0 || k == 0 {
        return 0.0;
    }
    // coordinate-major copy, so the distances from row i to rows j.. load contiguously
    let zt: Vec<Vec<f64>> = (0..k)
        .map(|c| (0..m).map(|j| z[j * k + c]).collect())
        .collect();
    let in_b_f: Vec<f64> = in_b.iter().map(|&b| f64::from(u8::from(b))).collect();
    // range t holds rows [cut[t], cut[t + 1]); row i pairs with the m − 1 − i rows after it
    let total = (m * (m - 1) / 2) as u128;
    let mut cut = [0usize; SILHOUETTE_TASKS + 1];
    let (mut row, mut done) = (0usize, 0u128);
    for (t, c) in cut.iter_mut().enumerate().skip(1) {
        let goal = total * t as u128 / SILHOUETTE_TASKS as u128;
        while row < m && done < goal {
            done += (m - 1 - row) as u128;
            row += 1;
        }
        *c = if t == SILHOUETTE_TASKS { m } else { row };
    }
    let parts: Vec<[Vec<f64>; 2]> = (0..SILHOUETTE_TASKS)
        .into_par_iter()
        .map(|t| {
            let mut sums = [vec![0f64; m], vec![0f64; m]];
            for i in cut[t]..cut[t + 1] {
                let zi: Vec<f64> = (0..k).map(|c| zt[c][i]).collect();
                let own = usize::from(in_b[i]);
                pair_row(&zi, &zt, i + 1, &in_b_f, &mut sums, own, i);
            }
            sums
        })
        .collect();
    let mut sums = [vec![0f64; m], vec![0f64; m]];
    for part in &parts {
        for c in 0..2 {
            for (a, v) in sums[c].iter_mut().zip(&part[c]) {
                *a += v;
            }
        }
    }
    let mut total = 0.0;
    for i in 0..m {
        let own = usize::from(in_b[i]);
        let own_n = if own == 1 { nb } else { na };
        let other_n = if own == 1 { na } else { nb };
        if own_n <= 1 {
            continue;
        }
        let a = sums[own][i] / (own_n - 1) as f64;
        let b = sums[1 - own][i] / other_n as f64;
        let mx = a.max(b);
        if mx > 0.0 {
            total += (b - a) / mx;
        }
    }
    total / m as f64
}

/// Distances from row `i` (coordinates `zi`) to the rows `from..` of `zt` (coordinate-major):
/// each is added to row j's sum for i's cluster (`own`), and, per cluster of j, to row i's.
///
/// The same code is compiled for AVX-512 and AVX2 and picked at run time, where the portable
/// build has two-wide SSE2. Rust never fuses a multiply and an add on its own and the square
/// root is correctly rounded, so every version gives the same bits.
fn pair_row(
    zi: &[f64],
    zt: &[Vec<f64>],
    from: usize,
    in_b: &[f64],
    sums: &mut [Vec<f64>; 2],
    own: usize,
    i: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU was just found to support AVX-512F, all the function needs
            return unsafe { pair_row_avx512(zi, zt, from, in_b, sums, own, i) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU was just found to support AVX2, all the function needs
            return unsafe { pair_row_avx2(zi, zt, from, in_b, sums, own, i) };
        }
    }
    pair_row_portable(zi, zt, from, in_b, sums, own, i)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn pair_row_avx512(
    zi: &[f64],
    zt: &[Vec<f64>],
    from: usize,
    in_b: &[f64],
    sums: &mut [Vec<f64>; 2],
    own: usize,
    i: usize,
) {
    pair_row_portable(zi, zt, from, in_b, sums, own, i)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pair_row_avx2(
    zi: &[f64],
    zt: &[Vec<f64>],
    from: usize,
    in_b: &[f64],
    sums: &mut [Vec<f64>; 2],
    own: usize,
    i: usize,
) {
    pair_row_portable(zi, zt, from, in_b, sums, own, i)
}

#[inline(always)]
fn pair_row_portable(
    zi: &[f64],
    zt: &[Vec<f64>],
    from: usize,
    in_b: &[f64],
    sums: &mut [Vec<f64>; 2],
    own: usize,
    i: usize,
) {
    const L: usize = SILHOUETTE_LANES;
    let m = in_b.len();
    // row i's sums to cluster 0 and cluster 1, lane by lane
    let mut to = [[0f64; L]; 2];
    let mut j = from;
    // whole groups of L rows: fixed-size arrays, so every step is one vector operation
    while j + L <= m {
        let mut acc = [0f64; L];
        for (col, &y) in zt.iter().zip(zi) {
            let lanes = &col[j..j + L];
            for l in 0..L {
                let t = lanes[l] - y;
                acc[l] += t * t;
            }
        }
        let side = &mut sums[own][j..j + L];
        let b = &in_b[j..j + L];
        for l in 0..L {
            let d = acc[l].sqrt();
            side[l] += d;
            to[1][l] += d * b[l];
            to[0][l] += d * (1.0 - b[l]);
        }
        j += L;
    }
    // the last rows, one at a time
    for j in j..m {
        let mut acc = 0f64;
        for (col, &y) in zt.iter().zip(zi) {
            let t = col[j] - y;
            acc += t * t;
        }
        let d = acc.sqrt();
        sums[own][j] += d;
        to[1][0] += d * in_b[j];
        to[0][0] += d * (1.0 - in_b[j]);
    }
    for c in 0..2 {
        sums[c][i] += to[c].iter().sum::<f64>();
    }
}

/// The row-at-a-time silhouette [`silhouette2`] must equal up to rounding.
#[cfg(test)]
fn silhouette2_rowwise(z: &[f64], k: usize, in_b: &[bool]) -> f64 {
    let m = in_b.len();
    let nb = in_b.iter().filter(|v| **v).count();
    let na = m - nb;
    if na == 0 || nb == 0 {
        return 0.0;
    }
    let s: Vec<f64> = (0..m)
        .map(|i| {
            let zi = &z[i * k..(i + 1) * k];
            let mut sum = [0f64; 2];
            for (j, zj) in z.chunks_exact(k).enumerate() {
                sum[usize::from(in_b[j])] += sq_dist(zi, zj).sqrt();
            }
            let own = usize::from(in_b[i]);
            let own_n = if own == 1 { nb } else { na };
            let other_n = if own == 1 { na } else { nb };
            if own_n <= 1 {
                return 0.0;
            }
            let a = sum[own] / (own_n - 1) as f64;
            let b = sum[1 - own] / other_n as f64;
            let mx = a.max(b);
            if mx > 0.0 {
                (b - a) / mx
            } else {
                0.0
            }
        })
        .collect();
    s.iter().sum::<f64>() / m as f64
}

#[derive(Debug, Clone)]
struct ClassFit {
    name: String,
    rows: usize,
    model: Option<ClassModel>,
    skipped: Option<String>,
}

/// Fitted ACT001: per-class PCA, centroids and decision.
#[derive(Debug, Clone)]
struct ActivationFit {
    classes: Vec<ClassFit>,
}

impl Fitted for ActivationFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let rows = &batch.rows;
        let x = rows.require_embeddings(CODE)?;
        let labels = rows.require_labels(CODE)?;
        let mut out = Scores::with_capacity(rows.n_rows);
        let mut z = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            let class = self.classes.get(l as usize);
            let Some((c, m)) = class.and_then(|c| c.model.as_ref().map(|m| (c, m))) else {
                out.score.push(0.0);
                out.reason.push(None);
                continue;
            };
            z.resize(m.pca.k(), 0.0);
            m.pca.project(&x, i, &mut z);
            let (s, flagged) = m.score(&z);
            out.score.push(s);
            out.reason.push(
                flagged.then(|| format!("{CODE}:class={} cluster=minor ratio={s:.2}", c.name)),
            );
        }
        Ok(out)
    }

    fn summary(&self) -> serde_json::Value {
        let classes: Vec<_> = self
            .classes
            .iter()
            .map(|c| match &c.model {
                None => json!({"class": c.name, "rows": c.rows, "skipped": c.skipped}),
                Some(m) => json!({
                    "class": c.name,
                    "rows": c.rows,
                    "components": m.pca.k(),
                    "reduction": if m.pca.unmix.is_some() { "fastica" } else { "pca" },
                    "ica_iterations": m.ica_iterations,
                    "pca_variance": m.explained,
                    "cluster_sizes": {"major": m.sizes[0], "minor": m.sizes[1]},
                    "minor_share": m.sizes[1] as f64 / c.rows.max(1) as f64,
                    "silhouette": m.silhouette,
                    "null_silhouette": m.null_silhouette,
                    "null_silhouette_sd": m.null_spread,
                    "silhouette_ratio": if m.null_silhouette > 0.0 {
                        m.silhouette / m.null_silhouette
                    } else {
                        0.0
                    },
                    "split": m.split,
                    "decision": m.decision,
                    "flagged": m.flagged,
                }),
            })
            .collect();
        json!({ "classes": classes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{fit_and_score_embeddings, gaussian, Rng};
    use ndarray::Array2;

    fn run(x: &Array2<f32>, labels: &[u32]) -> (Scores, serde_json::Value) {
        let mut t = toml::Table::new();
        t.insert("silhouette_rows".into(), toml::Value::Integer(600));
        t.insert("null_draws".into(), toml::Value::Integer(2));
        fit_and_score_embeddings(&ActivationClustering, &t, x, labels)
    }

    #[test]
    fn clean_classes_flag_nothing() {
        let mut rng = Rng(11);
        let x = gaussian(&mut rng, 3000, 32);
        let labels: Vec<u32> = (0..3000).map(|i| (i % 2) as u32).collect();
        let (s, summary) = run(&x, &labels);
        assert_eq!(
            s.reason.iter().filter(|r| r.is_some()).count(),
            0,
            "{summary}"
        );
        assert!(s.score.iter().all(|v| *v < 1.0));
        for c in summary["classes"].as_array().unwrap() {
            assert_eq!(c["split"], false, "{c}");
        }
    }

    #[test]
    fn planted_cluster_is_flagged_and_only_in_its_class() {
        let mut rng = Rng(12);
        let (n, d) = (3000, 32);
        let mut x = gaussian(&mut rng, n, d);
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let dir: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut truth = vec![false; n];
        for i in (1..n).step_by(2) {
            if rng.unit() < 0.12 {
                truth[i] = true;
                for k in 0..d {
                    x[[i, k]] += (5.0 * dir[k] / norm) as f32;
                }
            }
        }
        let (s, summary) = run(&x, &labels);
        let flags: Vec<bool> = s.reason.iter().map(Option::is_some).collect();
        let e = crate::metrics::evaluate(&flags, &s.score, &truth);
        assert!(e.recall > 0.95 && e.precision > 0.95, "{e:?} {summary}");
        assert!(e.auroc.unwrap() > 0.98);
        assert_eq!(summary["classes"][0]["flagged"], 0);
        assert_eq!(summary["classes"][1]["flagged"], e.flagged);
        // flagged exactly when the score reaches 1
        for (f, v) in flags.iter().zip(&s.score) {
            assert_eq!(*f, *v >= 1.0);
        }
    }

    #[test]
    fn fastica_weighs_every_component_equally() {
        // one high-variance Gaussian axis and a minority shifted along a low-variance one: on
        // the PCA coordinates 2-means cuts the wide axis (no minority, no split); FastICA's
        // coordinates are whitened (unit variance each, then rotated, which 2-means and the
        // silhouette do not see), so the shifted axis carries the split
        let mut rng = Rng(14);
        let (n, d) = (3000, 4);
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let mut truth = vec![false; n];
        let mut x = Array2::<f32>::zeros((n, d));
        for i in 0..n {
            x[[i, 0]] = (4.0 * rng.gauss()) as f32;
            for k in 1..d {
                x[[i, k]] = (0.3 * rng.gauss()) as f32;
            }
            if i % 2 == 1 && rng.unit() < 0.15 {
                truth[i] = true;
                x[[i, d - 1]] += 1.8;
            }
        }
        let mut t = toml::Table::new();
        t.insert("silhouette_rows".into(), toml::Value::Integer(600));
        t.insert("null_draws".into(), toml::Value::Integer(2));
        t.insert("min_rows_per_dim".into(), toml::Value::Integer(0));
        let (pca, _) = fit_and_score_embeddings(&ActivationClustering, &t, &x, &labels);
        t.insert("ica".into(), toml::Value::Boolean(true));
        let (ica, summary) = fit_and_score_embeddings(&ActivationClustering, &t, &x, &labels);
        let flags = |s: &Scores| s.reason.iter().map(Option::is_some).collect::<Vec<_>>();
        let e_pca = crate::metrics::evaluate(&flags(&pca), &pca.score, &truth);
        let e_ica = crate::metrics::evaluate(&flags(&ica), &ica.score, &truth);
        assert!(e_pca.f1 < 0.5, "{e_pca:?}");
        assert!(e_ica.f1 > 0.9, "{e_ica:?} {summary}");
        assert_eq!(summary["classes"][0]["flagged"], 0, "{summary}");
        assert_eq!(summary["classes"][1]["reduction"], "fastica");
    }

    #[test]
    fn an_even_split_is_not_poison() {
        // two equal, well separated halves: a natural bimodal class, not a minority
        let mut rng = Rng(13);
        let (n, d) = (2000, 16);
        let mut x = gaussian(&mut rng, n, d);
        for i in 0..n / 2 {
            x[[2 * i, 3]] += 8.0;
        }
        let labels = vec![0u32; n];
        let (s, summary) = run(&x, &labels);
        assert!(s.reason.iter().all(Option::is_none), "{summary}");
        assert!(summary["classes"][0]["decision"]
            .as_str()
            .unwrap()
            .contains("max_minor_share"));
    }

    #[test]
    fn silhouette_and_kmeans_basics() {
        // two tight blobs far apart: silhouette near 1, 2-means finds them
        let z: Vec<f64> = (0..200)
            .flat_map(|i| {
                let off = if i < 150 { 0.0 } else { 100.0 };
                [off + (i % 7) as f64 * 0.01, (i % 5) as f64 * 0.01]
            })
            .collect();
        let km = kmeans2(&z, 2, 3, 100, &mut SplitMix64(1));
        let mut sizes = km.sizes;
        sizes.sort_unstable();
        assert_eq!(sizes, [50, 150]);
        let lab: Vec<bool> = (0..200).map(|i| i >= 150).collect();
        assert!(silhouette2(&z, 2, &lab) > 0.99);
        assert_eq!(silhouette2(&z, 2, &[false; 100]), 0.0);
        // pairs computed once give the row-at-a-time value up to rounding, whatever m mod 8
        // and however few rows each of the fixed pieces gets
        let mut rng = SplitMix64(7);
        for (m, k) in [
            (1usize, 3usize),
            (7, 10),
            (8, 1),
            (17, 2),
            (61, 10),
            (200, 4),
            (999, 10),
        ] {
            let z: Vec<f64> = (0..m * k).map(|_| rng.gauss() * 3.0).collect();
            let lab: Vec<bool> = (0..m).map(|_| rng.unit() < 0.3).collect();
            let (fast, slow) = (silhouette2(&z, k, &lab), silhouette2_rowwise(&z, k, &lab));
            assert!(
                (fast - slow).abs() <= 1e-12,
                "m={m} k={k}: {fast} vs {slow}"
            );
        }
        let s = sample_without_replacement(100, 10, &mut SplitMix64(2));
        assert_eq!(s.len(), 10);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn small_and_constant_classes_are_skipped() {
        let x = Array2::<f32>::zeros((300, 4));
        let labels = vec![0u32; 300];
        let (s, summary) = run(&x, &labels);
        assert!(s.score.iter().all(|v| *v == 0.0));
        assert!(summary["classes"][0]["skipped"].is_string(), "{summary}");
        let x = Array2::<f32>::ones((50, 4));
        let (_, summary) = run(&x, &[1u32; 50]);
        assert!(summary["classes"][1]["skipped"].is_string());
    }
}
