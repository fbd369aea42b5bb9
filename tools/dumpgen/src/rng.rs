//! Deterministic pseudo-random numbers: SplitMix64 and key hashing.
//!
//! The series must come out byte-identical on every machine and with every version of
//! every dependency, so this module owns the only random source of the crate; nothing
//! here may depend on `rand`, the platform or the time.

/// Golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a strong 64-bit mixer; a bijection).
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of words into one well-mixed 64-bit key.
#[inline]
pub fn key(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64; // digits of pi, an arbitrary start
    for &p in parts {
        h = mix64(h.wrapping_add(GAMMA) ^ p);
    }
    h
}

/// SplitMix64: one add and one mix per output, enough for synthetic data and sampling.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-32 for the sizes used here).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)` with 53 bits.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `x` rounded to an integer at random so that the expectation is exactly `x`.
    pub fn round(&mut self, x: f64) -> u64 {
        if x <= 0.0 {
            return 0;
        }
        let floor = x.floor();
        let extra = u64::from(self.unit() < x - floor);
        floor as u64 + extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation by S. Vigna).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range_and_round_is_unbiased() {
        let mut r = Rng::new(7);
        for n in [1u64, 2, 3, 10, 1000] {
            for _ in 0..1000 {
                assert!(r.below(n) < n);
            }
        }
        let total: u64 = (0..100_000).map(|_| r.round(0.25)).sum();
        assert!((23_000..27_000).contains(&total), "{total}");
        assert_eq!(r.round(3.0), 3);
        assert_eq!(r.round(0.0), 0);
    }

    #[test]
    fn key_depends_on_every_part_and_order() {
        assert_ne!(key(&[1, 2]), key(&[2, 1]));
        assert_ne!(key(&[1, 2]), key(&[1, 2, 0]));
        assert_eq!(key(&[5, 6, 7]), key(&[5, 6, 7]));
    }
}
