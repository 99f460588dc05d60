//! Seeded synthetic data for unit tests (the crate's SplitMix64: stable on every machine).

use crate::rng::SplitMix64;
use crate::{DatasetView, Detector, Scores};
use ndarray::{Array2, Axis};
use sha2::{Digest, Sha256};

pub use crate::rng::SplitMix64 as Rng;

/// `n × d` standard normal matrix with per-dimension scales decaying like 1/sqrt(k+1)
/// (an anisotropic but unimodal "clean" class).
pub fn gaussian(rng: &mut Rng, n: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, d), |(_, k)| {
        (rng.gauss() / ((k + 1) as f64).sqrt()) as f32
    })
}

/// Fits `detector` with `params` on two-class embeddings `x` (labels `labels`, classes "0" and
/// "1"), scores every row in batches of 333 (so batch boundaries fall inside classes), and
/// returns the scores with the fit's summary.
pub fn fit_and_score_embeddings(
    detector: &dyn Detector,
    params: &toml::Table,
    x: &Array2<f32>,
    labels: &[u32],
) -> (Scores, serde_json::Value) {
    let names = vec!["0".to_string(), "1".to_string()];
    let view = DatasetView {
        n_rows: x.nrows(),
        texts: None,
        labels: Some(labels),
        class_names: &names,
        embeddings: Some(x.view()),
        response_embeddings: None,
        responses: None,
        rejected: None,
    };
    let fitted = detector
        .configure(params)
        .expect("params")
        .fit(&view)
        .expect("fit");
    let mut all = Scores::default();
    for s in (0..x.nrows()).step_by(333) {
        all.extend(
            fitted
                .score(&view.batch(s, (s + 333).min(x.nrows())))
                .expect("score"),
        );
    }
    (all, fitted.summary())
}

/// Fits a configured detector on `view` and scores all its rows in one batch; the scores and
/// the fit's summary.
pub fn fit_and_score(
    det: &dyn crate::Configured,
    view: DatasetView<'_>,
) -> (Scores, serde_json::Value) {
    let fitted = det.fit(&view).expect("fit");
    let scores = fitted
        .score(&crate::Batch {
            start: 0,
            rows: view,
        })
        .expect("score");
    (scores, fitted.summary())
}

/// The rows of `x` in `part`, with their labels and ids (their row numbers in `x`).
pub fn take(x: &Array2<f32>, labels: &[u32], part: &[usize]) -> (Array2<f32>, Vec<u32>, Vec<u64>) {
    (
        x.select(Axis(0), part),
        part.iter().map(|&i| labels[i]).collect(),
        part.iter().map(|&i| i as u64).collect(),
    )
}

/// Every row's score bits and reason in `got` equal those in `want` (`what` names the case).
pub fn assert_same_scores(got: &crate::Scores, want: &crate::Scores, what: &str) {
    assert_eq!(got.score.len(), want.score.len(), "{what}");
    for i in 0..want.score.len() {
        assert_eq!(
            got.score[i].to_bits(),
            want.score[i].to_bits(),
            "row {i}, {what}"
        );
        assert_eq!(got.reason[i], want.reason[i], "row {i}, {what}");
    }
}

/// The texts, labels and row numbers of the rows `part` (a partition of a text dataset).
pub fn take_texts(
    texts: &[String],
    labels: &[u32],
    part: &[usize],
) -> (Vec<String>, Vec<u32>, Vec<u64>) {
    (
        part.iter().map(|&i| texts[i].clone()).collect(),
        part.iter().map(|&i| labels[i]).collect(),
        part.iter().map(|&i| i as u64).collect(),
    )
}

/// Random partition of 0..n into `k` parts (every part keeps row order inside it, which
/// does not matter), and the parts in a shuffled order.
pub fn partition(n: usize, k: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64(seed);
    let mut parts = vec![Vec::new(); k];
    for i in 0..n {
        parts[rng.below(k)].push(i);
    }
    for i in (1..k).rev() {
        parts.swap(i, rng.below(i + 1));
    }
    parts
}

/// All rows as the scan shows them to an embedding detector.
pub fn embedding_view<'a>(
    x: &'a Array2<f32>,
    labels: &'a [u32],
    names: &'a [String],
) -> DatasetView<'a> {
    DatasetView {
        n_rows: x.nrows(),
        texts: None,
        labels: Some(labels),
        class_names: names,
        embeddings: Some(x.view()),
        response_embeddings: None,
        responses: None,
        rejected: None,
    }
}

/// All rows as the scan shows them to a text detector (text and labels).
pub fn text_view<'a>(
    texts: &'a [String],
    labels: &'a [u32],
    names: &'a [String],
) -> DatasetView<'a> {
    DatasetView {
        n_rows: texts.len(),
        texts: Some(texts),
        labels: Some(labels),
        class_names: names,
        embeddings: None,
        response_embeddings: None,
        responses: None,
        rejected: None,
    }
}

/// SHA-256 of `b`.
pub fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}
