//! SplitMix64 (Steele, Lea, Flood 2014): the project's one seeded pseudo-random generator.
//! Tiny, fast and fully specified, so a seed gives the same stream on every machine and in every
//! version; detectors (fold assignment, hash coefficients), tests, benches and the demo
//! generator all draw from it.

/// The increment of SplitMix64's state per draw.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One SplitMix64 step: advances `state` and returns 64 random bits.
pub fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GAMMA);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A SplitMix64 generator; the field is its state (the seed, before the first draw).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The generator `draws` 64-bit draws ahead of this one, without drawing: the state only
    /// counts, so work that would run after `draws` draws can start from here at once (and in
    /// parallel) on exactly the numbers a sequential run gives it.
    pub fn ahead(&self, draws: u64) -> SplitMix64 {
        SplitMix64(self.0.wrapping_add(GAMMA.wrapping_mul(draws)))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix(&mut self.0)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (modulo reduction; `n` must be positive).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal draw (Box–Muller, cosine branch; two uniforms per draw).
    pub fn gauss(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahead_lands_where_drawing_does() {
        let mut r = SplitMix64(42);
        let skipped = r.ahead(1000);
        for _ in 0..1000 {
            r.next_u64();
        }
        assert_eq!(r.0, skipped.0);
        assert_eq!(r.next_u64(), skipped.clone().next_u64());
    }

    #[test]
    fn known_first_outputs() {
        // SplitMix64 seeded with 0: the reference stream's first value
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        let u = SplitMix64(5).unit();
        assert!((0.0..1.0).contains(&u));
    }
}
