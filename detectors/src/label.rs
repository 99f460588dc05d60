//! LBL001 label consistency: rows whose label both an out-of-fold linear probe and their
//! nearest neighbours contradict.

use crate::knn::{self, Knn};
use crate::params::ParamReader;
use crate::rng::splitmix;
use crate::{
    Batch, Configured, DatasetView, DetectError, Detector, Fitted, Meta, Needs, ParamError, Scores,
};
use faer::linalg::matmul::matmul;
use faer::linalg::solvers::Solve;
use faer::{Accum, Mat, MatRef, Par, Side};
use rayon::prelude::*;
use serde_json::json;

const CODE: &str = "LBL001";

static META: Meta = Meta {
    code: CODE,
    name: "label-consistency",
    summary: "Rows whose label an out-of-fold probe and their nearest neighbours both contradict",
    docs: concat!(
        r#"# LBL001 label-consistency

## What it detects
Label flips: rows whose text is untouched but whose label was changed (dirty-label poisoning,
random or targeted flips). In an embedding space such a row sits among rows of another class
and a classifier trained without it predicts another class with confidence.

## Method
Two independent pieces of evidence that the given label y_i is wrong, a per-class estimate of how
common wrong labels are, and a Bayes decision:
1. **Out-of-fold linear probe.** Rows are L2-normalised; the rows are split into `folds` folds by
   a seeded permutation; for each fold an L2-regularised logistic regression (one-vs-rest per
   class, Newton's method, penalty `l2`·‖w‖²/2 on the weights, not the intercept) is fitted on
   the other folds and predicts the held-out rows, so no row is judged by a model that saw it.
   P_i = the probe's class probabilities for row i (one-vs-rest probabilities normalised to sum
   to 1); p_i = P_i[y_i].
2. **Nearest neighbours.** k nearest neighbours by cosine (shared kNN module, itself
   excluded; exact up to `knn_exact_max_rows` rows, an IVF index beyond); a_i = share of the k neighbours labelled y_i, smoothed as (agree + 1) / (k + 2).
3. **Evidence against the label.** Treating the two as independent experts, the log-likelihood
   ratio of "the label is wrong" against "the label is right" is
   L_i = −[logit(p_i) + logit(a_i) − logit(π_y)], with π_y the share of class y (each expert's
   posterior already contains the class prior once, so it is taken out once).
4. **How common wrong labels are, per class** (the confident joint of confident learning). With
   t_j the mean of P[j] over the rows labelled j, each row counts towards the pair (given y_i,
   likely j), where j is the class of highest P_i[j] among those with P_i[j] ≥ t_j (rows with
   none are not counted). The estimated share of wrong labels in class c is
   ε_c = (off-diagonal count of row c + ½) / (count of row c + 1), at most ½. A random flip
   lands far more often in a small class than a natural confusion does, so a small class that
   received flips gets a larger ε_c than the same class in clean data.
5. **Decision.** The posterior log-odds that the label is wrong are L_i + logit(ε_{y_i}); a row is
   flagged when the posterior reaches `min_wrong_posterior` (default ½: flag a row when its label
   is more likely wrong than right). Because both experts are fitted on the data as it is,
   naturally ambiguous classes get less confident probes and mixed neighbourhoods.

Score: the posterior that the label is wrong divided by `min_wrong_posterior`, so 1.0 is the
threshold. Classes with fewer than `min_class_rows` rows are not scored (score 0).
When the probe's out-of-fold log-likelihood of the given labels is not above that of the
labels' shares alone (constant or empty vectors, embeddings unrelated to the labels), no row is
scored and the summary's `skipped` says why: every row of a small class would otherwise read as
mislabelled.

## Parameters
- `k` (default 10): neighbours per row.
- `folds` (default 5) and `seed` (default 0): cross-fitting of the probe.
- `l2` (default 1.0): ridge penalty of the probe (the scikit-learn default C = 1 on the same scale).
- `min_wrong_posterior` (default 0.5): posterior that the label is wrong needed to flag.
- `noise_prior` (default 0 = estimated per class as above): a number in (0, ½] fixes the prior
  share of wrong labels of every class instead. `noise_prior = 0.5` with
  `min_wrong_posterior = 0.98` is the strict rule of version 1 (about 0.4 % of clean SST-2
  flagged, recall near 0.1 on 5 % random flips).
- `min_class_rows` (default 20): smaller classes are not scored.
"#,
        crate::knn_params_doc!(),
        r#"
## Known false positives
Genuine label noise of the source data (SST-2 has some), sarcasm and negation that a sentence
embedding reads the wrong way, and rows that belong to a small sub-population surrounded by
another class. Beyond `knn_exact_max_rows` rows the neighbours are approximate (a missed neighbour is replaced by
the next best one the index saw), and the probe holds a normalised copy of the embeddings.

Label noise is part of every corpus, and the estimated ε_c takes in the natural confusion of
the representation as well as the flips: on clean corpora (MiniLM) LBL001 flags a few per cent
of the rows of naturally ambiguous data (sarcasm, hate speech, four emotions), fewer than
cleanlab's `find_label_issues` on the same probe, and a tenth of a per cent of SMS spam
(docs/lbl001-vs-cleanlab.md). That is why it is opt-in: it finds wrong labels, natural or
planted, and a label-noise cleaner and a poisoning gate draw that line differently.

## Known limits
On random flips the best cut with the answer known reaches F1 ≈ 0.45 on sst2-labelflip-5
(MiniLM), because natural ambiguity of SST-2 competes with the flips.

## References
Curtis G. Northcutt, Lu Jiang, Isaac L. Chuang. Confident Learning: Estimating Uncertainty in
Dataset Labels. JAIR 70, 2021 (out-of-fold probabilities). Dennis L. Wilson. Asymptotic
properties of nearest neighbor rules using edited data. IEEE SMC 2(3), 1972 (kNN editing).
"#
    ),
    version: 2,
};

/// LBL001: label consistency. See [`Meta::docs`] of its [`Detector::meta`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelConsistency;

/// Checked parameters of LBL001 (see the detector's docs for their meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelParams {
    /// Neighbours per row.
    pub k: usize,
    /// Folds of the out-of-fold probe.
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Ridge penalty of the probe.
    pub l2: f64,
    /// Posterior that the label is wrong needed to flag.
    pub min_wrong_posterior: f64,
    /// Prior share of wrong labels per class; 0 = estimated from the data.
    pub noise_prior: f64,
    /// Smaller classes are not scored.
    pub min_class_rows: usize,
    /// How the neighbours are searched (exact, or an IVF index on large data).
    pub knn: crate::KnnOptions,
}

impl Detector for LabelConsistency {
    fn meta(&self) -> &'static Meta {
        &META
    }

    fn configure(&self, params: &toml::Table) -> Result<Box<dyn Configured>, ParamError> {
        let mut r = ParamReader::new(CODE, params);
        let p = LabelParams {
            k: r.usize("k", 10, 1, 1000)?,
            folds: r.usize("folds", 5, 2, 100)?,
            seed: r.usize("seed", 0, 0, usize::MAX)? as u64,
            l2: r.f64("l2", 1.0, 1e-6, 1e6)?,
            min_wrong_posterior: r.f64("min_wrong_posterior", 0.5, 0.01, 1.0 - 1e-9)?,
            noise_prior: r.f64("noise_prior", 0.0, 0.0, 0.5)?,
            min_class_rows: r.usize("min_class_rows", 20, 2, usize::MAX)?,
            knn: crate::knn::read_options(&mut r)?,
        };
        r.finish()?;
        Ok(Box::new(p))
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

/// Fold of each row: a seeded Fisher–Yates permutation, position modulo `folds`.
fn fold_of_rows(n: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut st = seed;
    for i in (1..n).rev() {
        let j = (splitmix(&mut st) % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    let mut fold = vec![0; n];
    for (pos, &r) in perm.iter().enumerate() {
        fold[r] = pos % folds;
    }
    fold
}

/// Linear score w·x + b of row `r` of the row-major matrix `x` (`d` columns; `w` has d + 1).
fn linear(x: &[f32], d: usize, r: usize, w: &[f64]) -> f64 {
    let row = &x[r * d..(r + 1) * d];
    row.iter().zip(w).map(|(a, b)| *a as f64 * b).sum::<f64>() + w[d]
}

/// L2-regularised logistic regression of `y` (0/1) on rows `rows` of `x` by Newton's method.
/// Returns d weights and the intercept.
fn logistic_fit(
    x: &[f32],
    d: usize,
    rows: &[usize],
    y: &[bool],
    l2: f64,
) -> Result<Vec<f64>, String> {
    let m = rows.len();
    let mut w = vec![0f64; d + 1];
    let mut xw = vec![0f32; m * (d + 1)];
    for _ in 0..50 {
        let mut g = vec![0f64; d + 1];
        for (t, &r) in rows.iter().enumerate() {
            let p = sigmoid(linear(x, d, r, &w));
            let resid = p - if y[r] { 1.0 } else { 0.0 };
            let sw = (p * (1.0 - p)).max(1e-12).sqrt() as f32;
            let src = &x[r * d..(r + 1) * d];
            let dst = &mut xw[t * (d + 1)..(t + 1) * (d + 1)];
            for (o, v) in dst.iter_mut().zip(src) {
                *o = v * sw;
            }
            dst[d] = sw;
            for (gk, v) in g.iter_mut().zip(src) {
                *gk += resid * *v as f64;
            }
            g[d] += resid;
        }
        for k in 0..d {
            g[k] += l2 * w[k];
        }
        let a = MatRef::from_row_major_slice(&xw, m, d + 1);
        let mut h32 = Mat::<f32>::zeros(d + 1, d + 1);
        matmul(
            h32.as_mut(),
            Accum::Replace,
            a.transpose(),
            a,
            1.0f32,
            Par::Seq,
        );
        crate::linalg::clear_upper_simd();
        let h = Mat::<f64>::from_fn(d + 1, d + 1, |i, j| {
            h32[(i, j)] as f64
                + if i == j {
                    if i < d {
                        l2
                    } else {
                        1e-8
                    }
                } else {
                    0.0
                }
        });
        let llt = h
            .llt(Side::Lower)
            .map_err(|e| format!("probe Hessian not positive definite: {e:?}"))?;
        let rhs = Mat::<f64>::from_fn(d + 1, 1, |i, _| g[i]);
        let step = llt.solve(&rhs);
        let mut biggest = 0f64;
        for (i, wi) in w.iter_mut().enumerate() {
            *wi -= step[(i, 0)];
            biggest = biggest.max(step[(i, 0)].abs());
        }
        if !biggest.is_finite() {
            return Err("probe diverged".into());
        }
        if biggest < 1e-6 {
            break;
        }
    }
    Ok(w)
}

/// Held-out rows of one fold with their class probabilities.
type FoldProbs = Vec<(usize, Vec<f64>)>;

/// Out-of-fold class probabilities of each row (each row sums to 1, or is all 0 when every
/// one-vs-rest model gave 0).
fn probe_probabilities(
    x: &[f32],
    d: usize,
    labels: &[u32],
    n_classes: usize,
    p: &LabelParams,
) -> Result<Vec<Vec<f64>>, String> {
    let n = labels.len();
    let fold = fold_of_rows(n, p.folds, p.seed);
    // classes that get their own one-vs-rest model (with 2 classes, one model suffices)
    let modelled: Vec<usize> = if n_classes == 2 {
        vec![1]
    } else {
        (0..n_classes).collect()
    };
    let per_fold: Vec<Result<FoldProbs, String>> = (0..p.folds)
        .into_par_iter()
        .map(|f| {
            let train: Vec<usize> = (0..n).filter(|&r| fold[r] != f).collect();
            let test: Vec<usize> = (0..n).filter(|&r| fold[r] == f).collect();
            let mut probs = vec![vec![0f64; n_classes]; test.len()];
            for &c in &modelled {
                let y: Vec<bool> = labels.iter().map(|&l| l as usize == c).collect();
                let w = logistic_fit(x, d, &train, &y, p.l2)?;
                for (t, &r) in test.iter().enumerate() {
                    probs[t][c] = sigmoid(linear(x, d, r, &w));
                }
            }
            Ok(test
                .iter()
                .zip(probs)
                .map(|(&r, mut pr)| {
                    if n_classes == 2 {
                        pr[0] = 1.0 - pr[1];
                    }
                    let total: f64 = pr.iter().sum();
                    if total > 0.0 {
                        pr.iter_mut().for_each(|v| *v /= total);
                    }
                    (r, pr)
                })
                .collect())
        })
        .collect();
    let mut out = vec![Vec::new(); n];
    for part in per_fold {
        for (r, v) in part? {
            out[r] = v;
        }
    }
    Ok(out)
}

/// Confident joint of the probe (Northcutt et al. 2021): for each given class, how many rows
/// the probe confidently places in each class. Returns the estimated share of wrong labels per
/// class, (off-diagonal + ½) / (counted + 1) capped at ½, and the counts behind it.
fn class_noise_rates(
    probs: &[Vec<f64>],
    labels: &[u32],
    n_classes: usize,
) -> (Vec<f64>, Vec<Vec<usize>>) {
    let mut sum = vec![0f64; n_classes];
    let mut count = vec![0usize; n_classes];
    for (pr, &l) in probs.iter().zip(labels) {
        let c = l as usize;
        if let Some(v) = pr.get(c) {
            sum[c] += v;
            count[c] += 1;
        }
    }
    // a class with no rows gets an unreachable threshold
    let thresh: Vec<f64> = sum
        .iter()
        .zip(&count)
        .map(|(s, &c)| if c > 0 { s / c as f64 } else { f64::INFINITY })
        .collect();
    let mut joint = vec![vec![0usize; n_classes]; n_classes];
    for (pr, &l) in probs.iter().zip(labels) {
        let mut best: Option<(usize, f64)> = None;
        for (j, (&v, &t)) in pr.iter().zip(&thresh).enumerate() {
            if v >= t && best.is_none_or(|(_, b)| v > b) {
                best = Some((j, v));
            }
        }
        if let Some((j, _)) = best {
            joint[l as usize][j] += 1;
        }
    }
    let rates = joint
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let counted: usize = row.iter().sum();
            let off = counted - row[c];
            ((off as f64 + 0.5) / (counted as f64 + 1.0)).min(0.5)
        })
        .collect();
    (rates, joint)
}

impl Configured for LabelParams {
    fn needs(&self) -> Needs {
        Needs {
            text: false,
            labels: true,
            embeddings: true,
            responses: false,
        }
    }

    fn params(&self) -> serde_json::Value {
        let mut v = json!({
            "k": self.k,
            "folds": self.folds,
            "seed": self.seed,
            "l2": self.l2,
            "min_wrong_posterior": self.min_wrong_posterior,
            "noise_prior": if self.noise_prior > 0.0 { json!(self.noise_prior) } else { json!("estimated") },
            "min_class_rows": self.min_class_rows,
        });
        for (key, val) in crate::knn::options_json(&self.knn)
            .as_object()
            .into_iter()
            .flatten()
        {
            v[key.as_str()] = val.clone();
        }
        v
    }

    fn fit(&self, data: &DatasetView<'_>) -> Result<Box<dyn Fitted>, DetectError> {
        let x = data.require_embeddings(CODE)?;
        let labels = data.require_labels(CODE)?;
        let numeric = |problem: String| DetectError::Numeric {
            code: CODE,
            problem,
        };
        let n = data.n_rows;
        let n_classes = data
            .n_classes()
            .max(labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0));
        let mut counts = vec![0usize; n_classes];
        for &l in labels {
            counts[l as usize] += 1;
        }
        let scored_classes = counts.iter().filter(|&&c| c >= self.min_class_rows).count();
        let mut rows = vec![RowResult::default(); n];
        let mut knn_k = 0;
        let mut knn_method = json!(null);
        let mut noise = vec![self.noise_prior.max(f64::MIN_POSITIVE); n_classes];
        let mut joint = Vec::new();
        let mut skipped = None;
        if scored_classes >= 2 && n > self.k {
            let knn: Knn = knn::knn_search(&x, self.k, &self.knn).map_err(numeric)?;
            knn_k = knn.k;
            knn_method = knn.method.clone();
            let xn = knn::normalised_rows(&x).map_err(numeric)?;
            let probs =
                probe_probabilities(&xn, x.ncols(), labels, n_classes, self).map_err(numeric)?;
            // the probe must predict the labels out of fold better than their shares do, or
            // the embeddings say nothing about the labels (constant or empty vectors) and
            // every row of a small class reads as mislabelled
            let (mut ll_probe, mut ll_prior) = (0.0, 0.0);
            for (i, &l) in labels.iter().enumerate() {
                let c = l as usize;
                if counts[c] >= self.min_class_rows {
                    ll_probe += probs[i].get(c).copied().unwrap_or(0.0).max(1e-12).ln();
                    ll_prior += (counts[c] as f64 / n as f64).ln();
                }
            }
            if ll_probe <= ll_prior {
                skipped = Some(format!(
                    "the embeddings do not predict the labels: the out-of-fold probe's \
                     log-likelihood {ll_probe:.1} is not above the {ll_prior:.1} of the labels' \
                     shares, so no row's label is judged from them"
                ));
            }
            if self.noise_prior == 0.0 {
                (noise, joint) = class_noise_rates(&probs, labels, n_classes);
            }
            for (i, row) in rows.iter_mut().enumerate() {
                if skipped.is_some() {
                    break;
                }
                let c = labels[i] as usize;
                if counts[c] < self.min_class_rows {
                    continue;
                }
                let agree = knn
                    .neighbours(i)
                    .iter()
                    .filter(|&&j| labels[j as usize] == labels[i])
                    .count();
                let a = (agree as f64 + 1.0) / (knn.k as f64 + 2.0);
                let prior = counts[c] as f64 / n as f64;
                let probe = probs[i].get(c).copied().unwrap_or(0.0);
                let l = -(logit(probe) + logit(a) - logit(prior)) + logit(noise[c]);
                *row = RowResult {
                    scored: true,
                    agree: agree as u32,
                    probe,
                    wrong_log_odds: l,
                };
            }
        }
        let cut = logit(self.min_wrong_posterior);
        let mut classes = Vec::with_capacity(n_classes);
        for (c, &count) in counts.iter().enumerate() {
            let name = data
                .class_names
                .get(c)
                .cloned()
                .unwrap_or_else(|| c.to_string());
            let members: Vec<&RowResult> = rows
                .iter()
                .zip(labels)
                .filter(|(r, &l)| r.scored && l as usize == c)
                .map(|(r, _)| r)
                .collect();
            let m = members.len().max(1) as f64;
            classes.push(json!({
                "class": name,
                "rows": count,
                "scored": !members.is_empty(),
                "mean_neighbour_disagreement": members.iter()
                    .map(|r| 1.0 - r.agree as f64 / knn_k.max(1) as f64).sum::<f64>() / m,
                "probe_accuracy": members.iter().filter(|r| r.probe > 0.5).count() as f64 / m,
                "flagged": members.iter().filter(|r| r.wrong_log_odds >= cut).count(),
                "noise_prior": noise.get(c),
                "confident_joint": joint.get(c),
            }));
        }
        Ok(Box::new(LabelFit {
            rows,
            cut,
            k: knn_k,
            names: data.class_names.to_vec(),
            summary: json!({
                "wrong_log_odds_threshold": cut,
                "knn": knn_method,
                "classes": classes,
                "skipped": skipped,
            }),
        }))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RowResult {
    scored: bool,
    agree: u32,
    probe: f64,
    wrong_log_odds: f64,
}

/// Fitted LBL001: per-row evidence computed over the whole dataset.
#[derive(Debug, Clone)]
struct LabelFit {
    rows: Vec<RowResult>,
    cut: f64,
    k: usize,
    names: Vec<String>,
    summary: serde_json::Value,
}

impl Fitted for LabelFit {
    fn score(&self, batch: &Batch<'_>) -> Result<Scores, DetectError> {
        let end = batch.start + batch.rows.n_rows;
        let rows = self.rows.get(batch.start..end).ok_or(DetectError::Data {
            code: CODE,
            problem: format!("batch rows {}..{end} outside the fitted data", batch.start),
        })?;
        let labels = batch.rows.labels;
        let mut out = Scores::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            if !r.scored {
                out.score.push(0.0);
                out.reason.push(None);
                continue;
            }
            out.score
                .push(sigmoid(r.wrong_log_odds) / sigmoid(self.cut));
            out.reason.push((r.wrong_log_odds >= self.cut).then(|| {
                let class = labels
                    .and_then(|l| l.get(i))
                    .and_then(|&l| self.names.get(l as usize))
                    .cloned()
                    .unwrap_or_default();
                format!(
                    "{CODE}:class={class} probe={:.3} agree={}/{} wrong_log_odds={:.2}",
                    r.probe, r.agree, self.k, r.wrong_log_odds
                )
            }));
        }
        Ok(out)
    }

    fn summary(&self) -> serde_json::Value {
        self.summary.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;
    use ndarray::Array2;

    #[test]
    fn planted_flips_are_found_and_clean_is_quiet() {
        let mut rng = Rng(5);
        let (n, d) = (1200, 16);
        let mut x = Array2::<f32>::zeros((n, d));
        let mut labels = vec![0u32; n];
        for i in 0..n {
            let c = (i % 2) as u32;
            labels[i] = c;
            for k in 0..d {
                let centre = if k == 0 {
                    if c == 1 {
                        2.0
                    } else {
                        -2.0
                    }
                } else {
                    0.0
                };
                x[[i, k]] = (centre + rng.gauss()) as f32;
            }
        }
        let names = vec!["0".to_string(), "1".to_string()];
        let cfg = LabelConsistency.configure(&toml::Table::new()).unwrap();
        let view = crate::testutil::embedding_view(&x, &labels, &names);
        let clean = cfg.fit(&view).unwrap().score(&view.as_batch()).unwrap();
        let clean_flags = clean.reason.iter().filter(|r| r.is_some()).count();
        assert!(clean_flags <= n / 100, "{clean_flags}");
        // flip 30 rows that sit deep inside their class
        let mut truth = vec![false; n];
        let mut flipped = labels.clone();
        let mut done = 0;
        for i in 0..n {
            if done < 30 && x[[i, 0]].abs() > 2.0 && rng.unit() < 0.3 {
                flipped[i] = 1 - flipped[i];
                truth[i] = true;
                done += 1;
            }
        }
        let view = DatasetView {
            labels: Some(&flipped),
            ..view
        };
        let fitted = cfg.fit(&view).unwrap();
        let mut s = Scores::default();
        for st in (0..n).step_by(500) {
            s.extend(fitted.score(&view.batch(st, (st + 500).min(n))).unwrap());
        }
        let flags: Vec<bool> = s.reason.iter().map(Option::is_some).collect();
        let e = crate::metrics::evaluate(&flags, &s.score, &truth);
        assert!(e.recall > 0.8 && e.precision > 0.8, "{e:?}");
        let summary = fitted.summary();
        let rows: u64 = (0..2)
            .filter_map(|c| summary["classes"][c]["rows"].as_u64())
            .sum();
        assert_eq!(rows, n as u64);
    }

    #[test]
    fn embeddings_that_say_nothing_of_the_labels_are_abstained_on() {
        // constant vectors: the probe can only learn the labels' shares
        let (n, d) = (600, 8);
        let x = Array2::<f32>::from_elem((n, d), 0.5);
        let labels: Vec<u32> = (0..n).map(|i| u32::from(i % 5 == 0)).collect();
        let names = vec!["0".to_string(), "1".to_string()];
        let cfg = LabelConsistency.configure(&toml::Table::new()).unwrap();
        let view = crate::testutil::embedding_view(&x, &labels, &names);
        let fitted = cfg.fit(&view).unwrap();
        let s = fitted.score(&view.as_batch()).unwrap();
        assert_eq!(s.reason.iter().filter(|r| r.is_some()).count(), 0);
        let why = fitted.summary()["skipped"].to_string();
        assert!(why.contains("do not predict the labels"), "{why}");
    }
}
