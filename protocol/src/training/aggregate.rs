//! Robust aggregation of dense pseudo-gradients (one tensor at a time).
//!
//! Spec: specs/L2T-10-training.md#aggregation
//!
//! Sparse SparseLoCo updates are merged by `crate::sparseloco::aggregate` (median-norm clipping,
//! then a per-coordinate mean over the peers that selected each coordinate). This module does
//! the same for dense updates, and adds a coordinate-wise trimmed mean, which tolerates up to
//! `trim` arbitrary values per coordinate. Sums run in f64 in peer order, so every node gets the
//! same bits.

use serde::{Deserialize, Serialize};

/// How to merge the passing updates of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggregationRule {
    /// Scale every update down to at most the median of the updates' L2 norms, then take the
    /// per-coordinate mean (Templar's rule, applied densely).
    MedianClipMean,
    /// Median-norm clipping, then per coordinate drop the `trim` largest and `trim` smallest
    /// values and average the rest.
    MedianClipTrimmedMean {
        /// Values dropped at each end, per coordinate.
        trim: u32,
    },
}

/// Why dense aggregation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateDenseError {
    /// There is nothing to aggregate.
    #[error("no updates to aggregate")]
    Empty,
    /// Updates have different lengths.
    #[error("update {index} has {got} values, expected {expected}")]
    LengthMismatch {
        /// Position of the offending update.
        index: usize,
        /// Length of the first update.
        expected: usize,
        /// Length of the offending one.
        got: usize,
    },
    /// Trimming would drop every value.
    #[error("trim {trim} too large for {n} updates")]
    TrimTooLarge {
        /// Requested trim per end.
        trim: u32,
        /// Number of updates.
        n: usize,
    },
    /// An update holds NaN or infinity.
    #[error("update {0} holds a non-finite value")]
    NonFinite(usize),
}

fn l2(x: &[f32]) -> f64 {
    x.iter()
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum::<f64>()
        .sqrt()
}

/// Median of the L2 norms (the lower median for an even count, so the result is one of the
/// inputs' norms).
pub fn median_norm(updates: &[&[f32]]) -> f64 {
    let mut norms: Vec<f64> = updates.iter().map(|u| l2(u)).collect();
    norms.sort_by(f64::total_cmp);
    norms
        .get(norms.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Merges `updates` (each one tensor's values, all the same length) with `rule`.
pub fn aggregate_dense(
    updates: &[&[f32]],
    rule: AggregationRule,
) -> Result<Vec<f32>, AggregateDenseError> {
    let first = updates.first().ok_or(AggregateDenseError::Empty)?;
    let len = first.len();
    for (i, u) in updates.iter().enumerate() {
        if u.len() != len {
            return Err(AggregateDenseError::LengthMismatch {
                index: i,
                expected: len,
                got: u.len(),
            });
        }
        if u.iter().any(|v| !v.is_finite()) {
            return Err(AggregateDenseError::NonFinite(i));
        }
    }
    let n = updates.len();
    if let AggregationRule::MedianClipTrimmedMean { trim } = rule {
        if 2 * (trim as usize) >= n {
            return Err(AggregateDenseError::TrimTooLarge { trim, n });
        }
    }
    let clip = median_norm(updates);
    let scales: Vec<f64> = updates
        .iter()
        .map(|u| {
            let norm = l2(u);
            if norm > clip {
                clip / (norm + 1e-12)
            } else {
                1.0
            }
        })
        .collect();
    let mut out = Vec::with_capacity(len);
    match rule {
        AggregationRule::MedianClipMean => {
            for j in 0..len {
                let s: f64 = updates
                    .iter()
                    .zip(&scales)
                    .map(|(u, s)| f64::from(u[j]) * s)
                    .sum();
                out.push((s / n as f64) as f32);
            }
        }
        AggregationRule::MedianClipTrimmedMean { trim } => {
            let t = trim as usize;
            let mut col = vec![0f64; n];
            for j in 0..len {
                for (c, (u, s)) in col.iter_mut().zip(updates.iter().zip(&scales)) {
                    *c = f64::from(u[j]) * s;
                }
                col.sort_by(f64::total_cmp);
                let kept = &col[t..n - t];
                out.push((kept.iter().sum::<f64>() / kept.len() as f64) as f32);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_equal_norms_is_plain_mean() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let m = aggregate_dense(&[&a, &b], AggregationRule::MedianClipMean).expect("ok");
        assert_eq!(m, vec![0.5, 0.5]);
    }

    #[test]
    fn a_huge_update_is_clipped_to_the_median() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        let evil = [-1000.0f32, 0.0];
        let m = aggregate_dense(&[&a, &b, &evil], AggregationRule::MedianClipMean).expect("ok");
        // evil is clipped to norm 1: (1 + 0 − 1) / 3 and (0 + 1 + 0) / 3.
        assert!(
            m[0].abs() < 1e-6 && (m[1] - 1.0 / 3.0).abs() < 1e-6,
            "{m:?}"
        );
    }

    #[test]
    fn trimmed_mean_drops_extremes() {
        let us = [[1.0f32], [2.0], [3.0], [-100.0], [100.0]];
        let refs: Vec<&[f32]> = us.iter().map(|u| u.as_slice()).collect();
        let m =
            aggregate_dense(&refs, AggregationRule::MedianClipTrimmedMean { trim: 1 }).expect("ok");
        // Norms 1,2,3,100,100 → median 3; ±100 clip to ±3; sorted −3,1,2,3,3 → trim → 1,2,3.
        assert_eq!(m, vec![2.0]);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert_eq!(
            aggregate_dense(&[], AggregationRule::MedianClipMean),
            Err(AggregateDenseError::Empty)
        );
        let a = [1.0f32];
        let b = [1.0f32, 2.0];
        assert!(matches!(
            aggregate_dense(&[&a, &b], AggregationRule::MedianClipMean),
            Err(AggregateDenseError::LengthMismatch { index: 1, .. })
        ));
        let nan = [f32::NAN];
        assert_eq!(
            aggregate_dense(&[&a, &nan], AggregationRule::MedianClipMean),
            Err(AggregateDenseError::NonFinite(1))
        );
        assert!(matches!(
            aggregate_dense(
                &[&a, &a],
                AggregationRule::MedianClipTrimmedMean { trim: 1 }
            ),
            Err(AggregateDenseError::TrimTooLarge { .. })
        ));
    }
}
