//! Seeded synthetic data for unit tests (SplitMix64 + Box–Muller: stable on every machine).

use ndarray::Array2;

/// SplitMix64 pseudo-random generator.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal.
    pub fn gauss(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }
}

/// `n × d` standard normal matrix with per-dimension scales decaying like 1/sqrt(k+1)
/// (an anisotropic but unimodal "clean" class).
pub fn gaussian(rng: &mut Rng, n: usize, d: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, d), |(_, k)| {
        (rng.gauss() / ((k + 1) as f64).sqrt()) as f32
    })
}
