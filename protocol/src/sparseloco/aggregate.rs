//! Aggregating many peers' compressed updates into one dense update.
//!
//! Spec: specs/L2T-06-sparseloco.md#aggregation
//!
//! Templar's `batch_decompress`: each peer's dequantised values are scaled by
//! `min(1, median_norm / (norm + 1e-8))` (median of the peers' L2 norms, the lower middle value for
//! an even count, as `torch.median`), then every coordinate becomes the mean over the peers that
//! selected it (`scatter_reduce(mean, include_self=False)`); coordinates nobody selected stay 0.
//!
//! Why this variant rather than the paper's plain `1/R` mean: clipping to the median norm bounds
//! what any one peer can add (a ×1000 update counts no more than a typical one), and averaging over
//! the selecting peers keeps a coordinate's step independent of how many peers happened to choose
//! it, so the outer learning rate of 1 means the same thing for 3 peers or 300. The price is that a
//! coordinate chosen by a single peer takes that peer's (clipped) value whole; validators' loss
//! checks gate which updates are merged at all.

use thiserror::Error;

use super::encode::EncodedTensor;

/// Why a set of updates cannot be aggregated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// No update was given.
    #[error("no updates to aggregate")]
    NoPeers,
    /// Updates differ in shape or codec parameters.
    #[error("update {0} differs in shape or codec parameters from the first")]
    Mismatch(usize),
    /// The output buffer has the wrong length.
    #[error("output holds {got} values, the tensor has {expected}")]
    LengthMismatch {
        /// Elements of the tensor.
        expected: usize,
        /// Elements of the output buffer.
        got: usize,
    },
}

/// Aggregates `peers` (same shape and parameters, in a canonical order) into a new dense tensor.
pub fn aggregate(peers: &[&EncodedTensor]) -> Result<Vec<f32>, AggregateError> {
    let first = peers.first().ok_or(AggregateError::NoPeers)?;
    let mut out = vec![0f32; first.len()];
    aggregate_into(peers, &mut out)?;
    Ok(out)
}

/// Aggregates into `out` (overwritten). See the module documentation for the rule.
pub fn aggregate_into(peers: &[&EncodedTensor], out: &mut [f32]) -> Result<(), AggregateError> {
    let first = peers.first().ok_or(AggregateError::NoPeers)?;
    for (i, p) in peers.iter().enumerate() {
        if p.shape() != first.shape() || p.params() != first.params() {
            return Err(AggregateError::Mismatch(i));
        }
    }
    if out.len() != first.len() {
        return Err(AggregateError::LengthMismatch {
            expected: first.len(),
            got: out.len(),
        });
    }
    let norms: Vec<f32> = peers.iter().map(|p| p.norm() as f32).collect();
    let mut sorted = norms.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[(sorted.len() - 1) / 2];
    out.fill(0.0);
    let mut counts = vec![0u32; out.len()];
    for (p, &norm) in peers.iter().zip(&norms) {
        let factor = (median / (norm + 1e-8)).min(1.0);
        p.for_each_entry(|pos, v| {
            out[pos] += v * factor;
            counts[pos] += 1;
        });
    }
    for (o, &c) in out.iter_mut().zip(&counts) {
        if c > 1 {
            *o /= c as f32;
        }
    }
    Ok(())
}
