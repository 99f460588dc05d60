//! Seeded synthetic data for unit tests (the crate's SplitMix64: stable on every machine).

use ndarray::Array2;

pub use crate::rng::SplitMix64 as Rng;

/// `n × d` standard normal matrix with per-dimension scales decaying like 1/sqrt(k+1)
/// (an anisotropic but unimodal "clean" class).
pub fn gaussian(rng: &mut Rng, n: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, d), |(_, k)| {
        (rng.gauss() / ((k + 1) as f64).sqrt()) as f32
    })
}
