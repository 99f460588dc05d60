//! Seeded synthetic data for unit tests (the crate's SplitMix64: stable on every machine).

use crate::{DatasetView, Detector, Scores};
use ndarray::Array2;

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
