//! SparseLoCo: the pseudo-gradient compressor, bit for bit as Templar ships it.
//!
//! Spec: specs/L2T-06-sparseloco.md
//!
//! A tensor is cut into chunks of at most 64×64 = 4096 values ([`layout`]), the 64 entries of
//! largest magnitude of each chunk are kept ([`select`]), their values are quantised to 2 bits with
//! per-tensor statistics ([`quant`]), and indices and codes are bit-packed ([`pack`]). The result is
//! an [`EncodedTensor`]; [`decode`] turns it back into a dense tensor. [`ErrorFeedback`] keeps the
//! residual between rounds, and [`aggregate`] merges many peers' updates robustly.
//!
//! Everything here is deterministic and single-threaded: the same input gives the same bytes on
//! every machine (floating-point statistics are accumulated in `f64` in a fixed order).

mod aggregate;
mod encode;
mod feedback;
pub mod layout;
pub mod pack;
pub mod quant;
pub mod select;

pub use aggregate::{aggregate, aggregate_into, AggregateError};
pub use encode::{decode, decode_into, encode, EncodeError, EncodedTensor, TensorError};
pub use feedback::ErrorFeedback;
pub use layout::{ChunkLayout, LayoutError};
pub use quant::QuantParams;

/// Templar's `target_chunk`: chunk sides are the largest divisors of each dimension ≤ 64.
pub const DEFAULT_TARGET_CHUNK: u32 = 64;
/// Templar's `topk_compression`: entries kept per chunk.
pub const DEFAULT_TOPK: u32 = 64;
/// Templar's `quantization_bins`: 4 bins, i.e. 2-bit values.
pub const QUANT_BINS: u32 = 4;
/// Templar's `quantization_range`: the bins span 6 standard deviations (scale = 1.5σ).
pub const DEFAULT_RANGE_SIGMAS: u32 = 6;
/// Templar's `momentum_decay`: the error-feedback buffer decays by 0.95 each round.
pub const DEFAULT_EF_DECAY: f32 = 0.95;
/// Chunk sides above this would overflow 12-bit indices (64 × 64 = 4096 = 2^12).
pub const MAX_TARGET_CHUNK: u32 = 64;

/// The codec's tunables; every peer of a run uses the same values (they travel in the blob header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecParams {
    /// Largest chunk side (Templar `target_chunk`), 1..=64.
    pub target_chunk: u32,
    /// Entries kept per chunk before clamping to the chunk size (Templar `topk_compression`), ≥ 1.
    pub topk: u32,
    /// Quantisation bins. Only 4 (2-bit codes) is supported by wire format v1.
    pub bins: u32,
    /// Quantisation range in standard deviations (Templar `quantization_range`), ≥ 1.
    pub range_sigmas: u32,
}

impl Default for CodecParams {
    fn default() -> Self {
        Self {
            target_chunk: DEFAULT_TARGET_CHUNK,
            topk: DEFAULT_TOPK,
            bins: QUANT_BINS,
            range_sigmas: DEFAULT_RANGE_SIGMAS,
        }
    }
}

impl CodecParams {
    /// Checks the parameters against what the codec and wire format v1 support.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if self.target_chunk == 0 || self.target_chunk > MAX_TARGET_CHUNK {
            return Err(LayoutError::BadParams("target_chunk must be 1..=64"));
        }
        if self.topk == 0 || self.topk > MAX_TARGET_CHUNK * MAX_TARGET_CHUNK {
            return Err(LayoutError::BadParams("topk must be 1..=4096"));
        }
        if self.bins != QUANT_BINS {
            return Err(LayoutError::BadParams(
                "only 4 quantisation bins (2-bit codes) are supported",
            ));
        }
        if self.range_sigmas == 0 || self.range_sigmas > 64 {
            return Err(LayoutError::BadParams("range_sigmas must be 1..=64"));
        }
        Ok(())
    }
}
