//! The seeded random stream behind weight initialisation and the synthetic corpus.
//!
//! Spec: specs/L2T-10-training.md#seeds
//!
//! candle's CPU RNG cannot be seeded (`Device::Cpu.set_seed` bails), so every random number we
//! use comes from ChaCha20 keyed by a 32-byte seed. The float conversions and the normal
//! sampler are written out here rather than taken from `rand_distr`, because their exact
//! algorithms are part of our protocol (anyone must regenerate the same weights and the same
//! text) and `rand`'s distributions do not promise stable output across versions.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A reproducible random stream: ChaCha20 with a 32-byte key and nonce 0.
#[derive(Debug, Clone)]
pub struct SeedRng(ChaCha20Rng);

impl SeedRng {
    /// The stream of `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// The stream of `blake3::keyed_hash(seed, tag ‖ index_le)`: a sub-stream for item `index`
    /// of kind `tag` under `seed`.
    pub fn sub(seed: &[u8; 32], tag: &[u8], index: u64) -> Self {
        let mut h = blake3::Hasher::new_keyed(seed);
        h.update(tag);
        h.update(&index.to_le_bytes());
        Self::new(*h.finalize().as_bytes())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform integer in `0..n` (`n` > 0), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let n = n.max(1);
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// A uniform f64 in `[0, 1)` from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal sample by the Box–Muller transform (one draw per call; the second
    /// value is discarded so that the stream position does not depend on call history).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// An index drawn with probability proportional to `cumulative[i] − cumulative[i−1]`
    /// (`cumulative` is non-decreasing and ends with the total weight).
    pub fn weighted(&mut self, cumulative: &[f64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(0.0);
        let x = self.unit() * total;
        cumulative
            .partition_point(|c| *c <= x)
            .min(cumulative.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let mut a = SeedRng::new([1; 32]);
        let mut b = SeedRng::new([1; 32]);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = SeedRng::sub(&[1; 32], b"x", 0);
        let mut d = SeedRng::sub(&[1; 32], b"x", 1);
        assert_ne!(c.next_u64(), d.next_u64());
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = SeedRng::new([7; 32]);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "mean {mean} var {var}"
        );
    }

    #[test]
    fn weighted_respects_weights() {
        let mut r = SeedRng::new([3; 32]);
        let cum = [1.0, 1.0, 4.0]; // weights 1, 0, 3
        let mut counts = [0usize; 3];
        for _ in 0..4000 {
            counts[r.weighted(&cum)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[2] > 2 * counts[0], "{counts:?}");
    }
}
