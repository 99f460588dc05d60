//! ACT001 activation clustering (Chen et al. 2018), with a per-class null so that a clean class
//! gives up nothing.

mod cluster;
mod kmeans;
pub mod rounds;
mod silhouette;
#[cfg(test)]
mod tests;

use crate::class_pca::over_parts;
use crate::linalg;
use crate::params::ParamReader;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use cluster::ClassModel;
use ndarray::ArrayView2;
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
1. PCA: mean and covariance of X_c from exact integer sums of the rows and their cross
   products (`state::Moments`, as SPEC001), the top `components` (10) eigenvectors by Lanczos
   iteration (`crate::lanczos`, full reorthogonalisation, residuals ≤ 1e-11 of the largest); every row is projected to z_i = Vᵀ(x_i − μ) (the paper
   reduces to 10 dimensions before clustering). With `ica`, z_i is then whitened and rotated
   into FastICA's independent components (see Parameters).
2. 2-means on the z_i of the class (all of them up to `max_cluster_rows`): k-means++ seeding
   from the seeded SplitMix64 stream, Lloyd iterations until no row moves (at most
   `max_iterations`), `restarts` (5) seedings, the lowest within-cluster sum of squares wins.
   Rows go to the nearer centroid, ties to the smaller cluster.
3. Silhouette s of that partition (Rousseeuw's mean of (b − a)/max(a, b) over every pair's
   Euclidean distance, each taken in f32 and summed in f64: relative error about 1e-6 a
   distance, 1e-7 on s as measured) on `silhouette_rows` (2000) rows drawn without replacement
   with the seed.
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
6. **Specificity.** A backdoor cluster is made of rows the attacker put into one class (a
   trigger on target-class rows, relabelled rows); a natural sub-population (a second source
   merged into the corpus, a topic, a language) reaches into the other classes too. So up to
   `specificity_rows` rows of every other class (chosen by the row hash above) are projected
   into this class's PCA and assigned to the nearer of its two centroids. The class splits
   only when its smaller cluster's share of the class is at least `min_specificity` (2) times
   the share of rows on that cluster's side in every other class. Measured: the clean-label
   trigger cluster of sst2-badnets-cleanlabel-10 (minilm) holds 0.186 of its class against
   0.004 of the other class's rows (46×); sst2-clean and sms-spam-clean merged into one corpus
   (label 1 = positive review or spam) split class 1 into reviews and SMS, 0.173 of the class
   against 0.404 of class 0's rows (the ham messages; 0.43×), and 754 spam messages (6 % of
   the corpus) were flagged before this test. Any value between 0.5 and 40 gives the same
   results on everything measured; 2 reads "twice as common in its class as anywhere else".
   In a split class the rows of the smaller cluster are flagged.

Rounds (`activation::rounds`): (1) rows per class; (2) per class the moments above, finalised
into μ and V; (3) per class the coordinates z of the clustered rows with their row numbers,
merged in row order, from which steps 2-5 run as on one machine; (4) each row's score from its
own z. Every partial serialises behind a header (code, version, parameter digest) and merges
exactly, so a partitioned run gives the single-process state bytes and verdicts (tested for 1,
2, 7 and 16 random partitions in shuffled orders, with whole and hash-sampled classes).

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
  (a class larger than this keeps a row when a hash of its row number falls below max/n_c,
  so the same rows in any partitioning); every row is still projected and scored.
- `max_cluster_rows` (default 262 144; 0 = all): rows per class 2-means, the cluster shares
  and the silhouette sample are taken from (chosen by the same row hash above it); every row
  is still scored against the centroids. The report gives `clustered_rows` per class; the
  cluster sizes, the minor share and `flagged` are counted over those rows.
- `min_specificity` (default 2; 0 turns the test off): how many times as common in its class
  as on its side in any other class the smaller cluster must be (step 6).
- `specificity_rows` (default 2000; 0 = all): rows of each class sampled for the other classes'
  specificity tests.
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
A natural minority sub-population that is compact, separate and found in one class only (a
block of boilerplate rows under one label, messages in another language that all carry one
label) splits its class in the same way and is flagged whole. One the classes share (a second
source, a topic) is not (step 6). The report gives per class the cluster sizes, silhouettes and
the other classes' shares on the smaller cluster's side to check such a finding.

## Known limits
2-means cuts a class once, along its widest structure: in a corpus merged from two sources,
a class's split is the sources' (not specific, so no split) and a trigger cluster inside one
source is not seen. A trigger that moves the representation less than the class's natural spread (single rare words
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
    version: 5,
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
    /// Rows per class the PCA is estimated from (chosen by a hash of the row number above
    /// it); 0 = all.
    pub max_covariance_rows: usize,
    /// Rows per class the clustering sees (hash-sampled above it); 0 = all.
    pub max_cluster_rows: usize,
    /// Reduce with FastICA on the whitened PCA coordinates (Chen et al.'s choice) instead of
    /// clustering the PCA coordinates.
    pub ica: bool,
    /// How many times as common in its class as in any other class the smaller cluster must
    /// be (0 turns the test off).
    pub min_specificity: f64,
    /// Rows of each class sampled (by row hash) to test the other classes' clusters against;
    /// 0 = all.
    pub specificity_rows: usize,
}

impl Detector for ActivationClustering {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        Ok(Box::new(ActivationParams::from_table(params)?))
    }
}

impl ActivationParams {
    /// The parameters a `[detectors.ACT001]` table sets, defaults for the rest; unknown keys and
    /// values out of range are refused.
    pub fn from_table(params: &toml::Table) -> Result<Self, ParamError> {
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
            max_cluster_rows: r.usize("max_cluster_rows", 262_144, 0, usize::MAX)?,
            ica: r.bool("ica", false)?,
            min_specificity: r.f64("min_specificity", 2.0, 0.0, 1e6)?,
            specificity_rows: r.usize("specificity_rows", 2000, 0, usize::MAX)?,
        };
        r.finish()?;
        Ok(p)
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
            "max_cluster_rows": self.max_cluster_rows,
            "ica": self.ica,
            "min_specificity": self.min_specificity,
            "specificity_rows": self.specificity_rows,
        })
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let x = data.require_embeddings(CODE)?;
        let labels = data.require_labels(CODE)?;
        let n = labels.len();
        let r = rounds::Rounds::new(self, data.n_classes(), x.ncols());
        // the rounds over parts of the rows, in parallel; their merges are exact, so the
        // result is that of one pass whatever the chunking and the thread count
        let state = |e: crate::state::StateError| DetectError::Numeric {
            code: CODE,
            problem: format!("state: {e}"),
        };
        let (counts, moments) = r.pca().scan(&x, labels).map_err(state)?;
        let ids: Vec<u64> = (0..n as u64).collect();
        let rows = |s: usize, e: usize| x.slice(ndarray::s![s..e, ..]);
        let red = r.reductions(&counts, &moments)?;
        let sample = over_parts(
            n,
            |s, e| Ok(r.sample(&counts, &red, &rows(s, e), &labels[s..e], &ids[s..e])),
            || r.empty_sample(&red),
            |a, b| a.merge(&b).map_err(state),
        )?;
        r.finish(data.class_names, &counts, red, sample)
    }
}

/// A fitted PCA map: rows of the input to `k`-dimensional coordinates.
#[derive(Debug, Clone)]
pub(crate) struct Pca {
    projectors: Vec<linalg::Projector>,
    /// With `ica`: the `k × k` row-major map from PCA coordinates to independent components
    /// (FastICA's unmixing times the whitening).
    unmix: Option<Vec<f64>>,
}

impl Pca {
    pub(crate) fn k(&self) -> usize {
        self.projectors.len()
    }

    pub(crate) fn project(&self, x: &ArrayView2<'_, f32>, r: usize, out: &mut [f64]) {
        for (o, p) in out.iter_mut().zip(&self.projectors) {
            *o = p.project(x, r);
        }
        if let Some(u) = &self.unmix {
            apply(u, out);
        }
    }
}

/// `z ← U z` for the row-major square matrix `u`.
pub(crate) fn apply(u: &[f64], z: &mut [f64]) {
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

#[derive(Debug, Clone)]
struct ClassFit {
    name: String,
    rows: usize,
    /// Rows the clustering saw (all of the class up to `max_cluster_rows`).
    clustered: usize,
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
                    "clustered_rows": c.clustered,
                    "components": m.pca.k(),
                    "reduction": if m.pca.unmix.is_some() { "fastica" } else { "pca" },
                    "ica_iterations": m.ica_iterations,
                    "pca_variance": m.explained,
                    "cluster_sizes": {"major": m.sizes[0], "minor": m.sizes[1]},
                    "minor_share": m.sizes[1] as f64 / c.clustered.max(1) as f64,
                    "silhouette": m.silhouette,
                    "null_silhouette": m.null_silhouette,
                    "null_silhouette_sd": m.null_spread,
                    "silhouette_ratio": if m.null_silhouette > 0.0 {
                        m.silhouette / m.null_silhouette
                    } else {
                        0.0
                    },
                    "split": m.split,
                    "specificity": (!m.specificity.is_empty()).then(|| json!({
                        "minor_share": m.sizes[1] as f64 / c.clustered.max(1) as f64,
                        "other_classes": m.specificity.iter().map(|(name, n, on)| json!({
                            "class": name,
                            "sampled_rows": n,
                            "on_minor_side": on,
                            "share": *on as f64 / (*n).max(1) as f64,
                        })).collect::<Vec<_>>(),
                    })),
                    "decision": m.decision,
                    "flagged": m.flagged,
                }),
            })
            .collect();
        json!({ "classes": classes })
    }
}
