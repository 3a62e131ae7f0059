//! 2-bit quantisation of the selected values (Templar's `_quantize_values` with 4 bins).
//!
//! Spec: specs/L2T-06-sparseloco.md#quantisation
//!
//! Statistics are over all selected values of one tensor:
//!
//! ```text
//! μ      = mean(v);  c = v − μ
//! σ      = ‖c‖₂ / sqrt(N − 1)
//! scale  = range·σ / bins        (= 1.5σ; 1.0 if it is 0, NaN or infinite)
//! q      = clamp(round_half_even(c / scale + 2), 0, 3)
//! lookup[b] = mean of c over entries with q = b (0 if none)
//! v̂      = lookup[q] + μ
//! ```
//!
//! Templar computes the sums in PyTorch's reduction order; we accumulate in `f64` in index order and
//! round once to `f32`, so results can differ from Templar's in the last bit of μ, σ and the lookup
//! table, but are identical on every machine that runs this code.

use thiserror::Error;

use super::QUANT_BINS;

/// Largest magnitude accepted for an input value; keeps every intermediate (centring, squares,
/// lookup means) finite. Gradients are many orders of magnitude below it.
pub const MAX_ABS_VALUE: f32 = 1e30;
/// Largest magnitude accepted for μ and the lookup entries on the wire, so that `lookup + μ` is finite.
pub const MAX_ABS_PARAM: f32 = 1e31;

/// Per-tensor quantisation parameters, as carried in the blob header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantParams {
    /// Mean of the selected values (Templar's `shift`).
    pub mu: f32,
    /// Bin width (Templar's `scale`); only needed to quantise, carried for auditing.
    pub scale: f32,
    /// Mean centred value of each bin (Templar's `lookup`).
    pub lookup: [f32; QUANT_BINS as usize],
}

/// Quantisation parameters that cannot come from a real encoder.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuantError {
    /// μ, the scale or a lookup entry is NaN or infinite.
    #[error("non-finite quantisation parameter")]
    NonFinite,
    /// μ or a lookup entry exceeds [`MAX_ABS_PARAM`] in magnitude.
    #[error("quantisation parameter out of range")]
    OutOfRange,
    /// The scale is zero or negative.
    #[error("quantisation scale must be positive")]
    BadScale,
}

impl QuantParams {
    /// The dequantised value of code `q` (0..=3).
    #[inline]
    pub fn dequantize(&self, q: u8) -> f32 {
        self.lookup[usize::from(q & 3)] + self.mu
    }

    /// Checks parameters received from a peer.
    pub fn validate(&self) -> Result<(), QuantError> {
        let all = [
            self.mu,
            self.scale,
            self.lookup[0],
            self.lookup[1],
            self.lookup[2],
            self.lookup[3],
        ];
        if all.iter().any(|v| !v.is_finite()) {
            return Err(QuantError::NonFinite);
        }
        if self.mu.abs() > MAX_ABS_PARAM || self.lookup.iter().any(|v| v.abs() > MAX_ABS_PARAM) {
            return Err(QuantError::OutOfRange);
        }
        if self.scale <= 0.0 {
            return Err(QuantError::BadScale);
        }
        Ok(())
    }
}

/// Quantises `values` (finite, |v| ≤ [`MAX_ABS_VALUE`]) to codes 0..=3, appended to `codes`.
pub fn quantize(values: &[f32], range_sigmas: u32, codes: &mut Vec<u8>) -> QuantParams {
    let n = values.len();
    let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
    let mu = if n == 0 { 0.0 } else { (sum / n as f64) as f32 };
    let sq: f64 = values
        .iter()
        .map(|&v| {
            let c = f64::from(v - mu);
            c * c
        })
        .sum();
    let norm = sq.sqrt() as f32;
    // N = 1 gives 0/0 or x/0 here, as in Templar, and falls back to a scale of 1.
    let std = norm / ((n as f32) - 1.0).sqrt();
    let mut scale = (range_sigmas as f32 * std) / QUANT_BINS as f32;
    if scale == 0.0 || !scale.is_finite() {
        scale = 1.0;
    }
    let offset = (QUANT_BINS / 2) as f32;
    let top = (QUANT_BINS - 1) as f32;
    let mut sums = [0f64; QUANT_BINS as usize];
    let mut counts = [0u64; QUANT_BINS as usize];
    codes.reserve(n);
    for &v in values {
        let c = v - mu;
        let q = (c / scale + offset).round_ties_even().clamp(0.0, top) as u8;
        sums[usize::from(q)] += f64::from(c);
        counts[usize::from(q)] += 1;
        codes.push(q);
    }
    let mut lookup = [0f32; QUANT_BINS as usize];
    for b in 0..QUANT_BINS as usize {
        if counts[b] > 0 {
            lookup[b] = (sums[b] / counts[b] as f64) as f32;
        }
    }
    QuantParams { mu, scale, lookup }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_templar() {
        // Symmetric values: μ = 0, σ = ‖v‖/sqrt(3).
        let v = [-3.0f32, -1.0, 1.0, 3.0];
        let mut codes = Vec::new();
        let q = quantize(&v, 6, &mut codes);
        assert_eq!(q.mu, 0.0);
        let std = (20.0f32).sqrt() / 3.0f32.sqrt();
        assert_eq!(q.scale, 6.0 * std / 4.0);
        // c/scale = ∓0.775, ∓0.258 → +2 → 1.23, 1.74, 2.26, 2.77 → 1, 2, 2, 3.
        assert_eq!(codes, [1, 2, 2, 3]);
        assert_eq!(q.lookup, [0.0, -3.0, 0.0, 3.0]);
        assert_eq!(q.dequantize(3), 3.0);
    }

    #[test]
    fn single_value_scale_falls_back_to_one() {
        let mut codes = Vec::new();
        let q = quantize(&[5.0], 6, &mut codes);
        assert_eq!((q.mu, q.scale, codes[0]), (5.0, 1.0, 2));
        assert_eq!(q.dequantize(codes[0]), 5.0);
    }

    #[test]
    fn rejects_hostile_params() {
        let ok = QuantParams {
            mu: 0.0,
            scale: 1.0,
            lookup: [0.0; 4],
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            QuantParams { mu: f32::NAN, ..ok }.validate(),
            Err(QuantError::NonFinite)
        );
        assert_eq!(
            QuantParams { scale: 0.0, ..ok }.validate(),
            Err(QuantError::BadScale)
        );
        assert_eq!(
            QuantParams {
                lookup: [f32::MAX, 0.0, 0.0, 0.0],
                ..ok
            }
            .validate(),
            Err(QuantError::OutOfRange)
        );
    }
}
