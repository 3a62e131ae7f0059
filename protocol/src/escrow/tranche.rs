//! Reward tranches: several `(amount, score threshold, H)` hold invoices plus a holdback, so that
//! all-or-nothing HTLCs still pay in proportion to quality.
//!
//! Spec: specs/L2T-05-escrow.md#tranches

use serde::{Deserialize, Serialize};

use crate::events::ids::Score;

/// Most tranches per submission.
pub const MAX_TRANCHES: usize = 8;

/// One tranche of a reward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrancheSpec {
    /// Amount of the hold invoice, in millisatoshis.
    pub amount_msat: u64,
    /// A validator releases its share of this tranche only if it accepts with at least this score.
    pub threshold: Score,
    /// Holdback tranche: released only by the delayed re-evaluation.
    pub holdback: bool,
}

/// Error in a tranche schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrancheError {
    /// No tranche, or more than [`MAX_TRANCHES`].
    #[error("a schedule has 1..={MAX_TRANCHES} tranches, got {0}")]
    Count(usize),
    /// A zero amount.
    #[error("tranche {0} has a zero amount")]
    ZeroAmount(usize),
    /// A regular tranche after a holdback tranche.
    #[error("holdback tranches must come after every regular tranche")]
    Holdback,
    /// Regular thresholds must not decrease.
    #[error("regular tranche thresholds must be non-decreasing")]
    Order,
    /// The total overflows.
    #[error("total amount overflows")]
    Overflow,
}

/// Check a schedule: 1..=MAX_TRANCHES tranches, non-zero amounts, non-decreasing regular
/// thresholds, holdback tranches (one, or one per regular tranche as bounties use) after every
/// regular tranche.
pub fn validate_schedule(s: &[TrancheSpec]) -> Result<u64, TrancheError> {
    if s.is_empty() || s.len() > MAX_TRANCHES {
        return Err(TrancheError::Count(s.len()));
    }
    let mut total: u64 = 0;
    let mut prev: Option<Score> = None;
    let mut held = false;
    for (i, t) in s.iter().enumerate() {
        if t.amount_msat == 0 {
            return Err(TrancheError::ZeroAmount(i));
        }
        if held && !t.holdback {
            return Err(TrancheError::Holdback);
        }
        held |= t.holdback;
        if !t.holdback {
            if prev.is_some_and(|p| t.threshold < p) {
                return Err(TrancheError::Order);
            }
            prev = Some(t.threshold);
        }
        total = total
            .checked_add(t.amount_msat)
            .ok_or(TrancheError::Overflow)?;
    }
    Ok(total)
}

/// A linear schedule: `pool_msat` split into `regular` equal tranches with thresholds
/// `target·1/regular, …, target·regular/regular`, plus a holdback of `holdback_ppm` parts per
/// million of the pool whose threshold is the first regular threshold. A score of `x·target`
/// therefore earns about `x` of the regular pool: payment proportional to quality.
pub fn linear_schedule(
    pool_msat: u64,
    regular: usize,
    target: Score,
    holdback_ppm: u32,
) -> Vec<TrancheSpec> {
    let regular = regular.clamp(1, MAX_TRANCHES - 1);
    let holdback =
        (u128::from(pool_msat) * u128::from(holdback_ppm.min(1_000_000)) / 1_000_000) as u64;
    let each = (pool_msat - holdback) / regular as u64;
    let mut out: Vec<TrancheSpec> = (1..=regular as i64)
        .map(|i| TrancheSpec {
            amount_msat: each.max(1),
            threshold: Score(target.0.saturating_mul(i) / regular as i64),
            holdback: false,
        })
        .collect();
    if holdback > 0 {
        out.push(TrancheSpec {
            amount_msat: holdback,
            threshold: out[0].threshold,
            holdback: true,
        });
    }
    out
}

/// What a quorum score earns from the regular tranches (the holdback depends on the later
/// re-evaluation).
pub fn earned_regular_msat(s: &[TrancheSpec], score: Score) -> u64 {
    earned_msat(s, score, false)
}

/// The holdback tranches a score reaches (released only if the re-evaluation reaches them too).
pub fn earned_holdback_msat(s: &[TrancheSpec], score: Score) -> u64 {
    earned_msat(s, score, true)
}

fn earned_msat(s: &[TrancheSpec], score: Score, holdback: bool) -> u64 {
    s.iter()
        .filter(|t| t.holdback == holdback && score >= t.threshold)
        .map(|t| t.amount_msat)
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn linear_is_valid_and_proportional() {
        let s = linear_schedule(100_000, 4, Score(1_000_000), 200_000);
        assert_eq!(validate_schedule(&s).unwrap(), 100_000);
        assert_eq!(s.len(), 5);
        assert!(s[4].holdback);
        assert_eq!(earned_regular_msat(&s, Score(0)), 0);
        assert_eq!(earned_regular_msat(&s, Score(500_000)), 40_000);
        assert_eq!(earned_regular_msat(&s, Score(2_000_000)), 80_000);
    }

    #[test]
    fn invalid_schedules() {
        let t = |a, th, h| TrancheSpec {
            amount_msat: a,
            threshold: Score(th),
            holdback: h,
        };
        assert_eq!(validate_schedule(&[]), Err(TrancheError::Count(0)));
        assert_eq!(
            validate_schedule(&[t(0, 1, false)]),
            Err(TrancheError::ZeroAmount(0))
        );
        assert_eq!(
            validate_schedule(&[t(1, 5, false), t(1, 4, false)]),
            Err(TrancheError::Order)
        );
        assert_eq!(
            validate_schedule(&[t(1, 1, true), t(1, 4, false)]),
            Err(TrancheError::Holdback)
        );
        assert_eq!(
            validate_schedule(&[t(u64::MAX, 1, false), t(1, 4, false)]),
            Err(TrancheError::Overflow)
        );
    }
}
