//! Gauntlet-style scoring: from the losses a validator measured to a score and a verdict.
//!
//! Spec: specs/L2T-10-training.md#scoring
//!
//! A validator applies a submission's decoded pseudo-gradient Δ̂ to the round's checkpoint θ
//! (θ' = θ − α·Δ̂) and measures the mean next-byte cross-entropy of θ and θ' on three batches:
//! the round's held-out batch, a batch of the submitter's own shard ("assigned") and a batch of a
//! random shard. [`score`] turns those six losses and two norms into a [`Score`]. The function is
//! pure, so anyone holding the same inputs can re-derive a validator's verdict.

use serde::{Deserialize, Serialize};

/// Two honest validators' scores of the same submission may differ by at most this much
/// (absolute, in units of relative loss reduction).
///
/// Why not zero: losses are f32 sums over thousands of logits computed by gemm kernels that
/// pick their instruction set (AVX2, AVX-512, NEON, CUDA) at run time, and different kernels
/// associate additions differently. On one machine with `RAYON_NUM_THREADS` pinned the scores
/// are bit-identical; across machines they differ in the last few ULPs of each loss (about 1e-7
/// relative for a loss of 2–6 nats). 1e-4 leaves three orders of magnitude of headroom while
/// staying far below the score of any update worth paying for.
pub const SCORE_TOLERANCE: f32 = 1e-4;

/// Whether two validators' scores agree within [`SCORE_TOLERANCE`].
pub fn scores_agree(a: f32, b: f32) -> bool {
    (a - b).abs() <= SCORE_TOLERANCE
}

/// What a validator measured for one submission. Losses are mean cross-entropies in nats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// Held-out loss at the checkpoint θ (shared by every submission of the round).
    pub heldout_before: f32,
    /// Held-out loss at θ − α·Δ̂.
    pub heldout_after: f32,
    /// Loss on the submitter's assigned batch at θ.
    pub assigned_before: f32,
    /// Loss on the submitter's assigned batch at θ − α·Δ̂.
    pub assigned_after: f32,
    /// Loss on the random shard's batch at θ (shared by every submission of the round).
    pub random_before: f32,
    /// Loss on the random shard's batch at θ − α·Δ̂.
    pub random_after: f32,
    /// L2 norm of α·Δ̂ over all tensors.
    pub update_norm: f32,
    /// L2 norm of θ over all tensors.
    pub model_norm: f32,
}

/// The thresholds of a run's scoring. Published with the run; every validator uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoringPolicy {
    /// Smallest relative held-out improvement `(before − after) / before` that passes.
    pub pass_threshold: f32,
    /// Smallest `‖α·Δ̂‖ / ‖θ‖` that passes; below it the update is empty or negligible.
    pub min_relative_norm: f32,
    /// Largest `‖α·Δ̂‖ / ‖θ‖` that passes; above it the update moves the model too far.
    pub max_relative_norm: f32,
    /// Smallest assigned-vs-random advantage that passes (see [`Score::assigned_advantage`]).
    /// An update trained on someone else's shard helps the submitter's shard no more than a
    /// random batch, so its advantage is near zero.
    pub min_assigned_advantage: f32,
}

impl Default for ScoringPolicy {
    /// Thresholds calibrated on the tiny byte-level GPT and synthetic corpus of `node::train`
    /// with SparseLoCo-compressed updates; the measurements behind them are in
    /// specs/L2T-10-training.md#calibration. A run with another model or data publishes its own.
    fn default() -> Self {
        Self {
            pass_threshold: 5e-3,
            min_relative_norm: 1e-6,
            max_relative_norm: 0.3,
            min_assigned_advantage: 0.12,
        }
    }
}

/// Why a submission fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailReason {
    /// A loss or norm is NaN or infinite.
    NonFinite,
    /// The update is (nearly) all zeros.
    NormTooSmall,
    /// The update is too large relative to the model.
    NormTooLarge,
    /// The held-out loss did not improve by the pass threshold.
    NoImprovement,
    /// The update helps the submitter's own shard no more than a random shard: it was not
    /// trained on the assigned data (copied, or trained elsewhere).
    NotTrainedOnAssignedData,
}

/// A validator's verdict on a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The update is merged and paid.
    Pass,
    /// The update is dropped and not paid, for the first failing check in the order of
    /// [`FailReason`].
    Fail(FailReason),
}

/// The result of [`score`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The score: relative held-out improvement `(before − after) / before`. Higher is better;
    /// an update that hurts the model scores below zero.
    pub value: f32,
    /// How much more the update helps the submitter's assigned batch than the random batch,
    /// relative to how much it helps the random batch:
    /// `(gain_assigned − gain_random) / max(gain_random, pass_threshold)`, each gain a relative
    /// loss reduction. Normalising by the random gain keeps the threshold meaningful as the
    /// model trains and updates' absolute gains shrink or grow.
    pub assigned_advantage: f32,
    /// `‖α·Δ̂‖ / ‖θ‖`.
    pub relative_norm: f32,
    /// Pass or fail, and why.
    pub verdict: Verdict,
}

impl Score {
    /// Whether the verdict is [`Verdict::Pass`].
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// What a validator attests for this score (L2T-04): the value in millionths (non-finite
    /// values attest as the lowest score) and the verdict with its reject code.
    pub fn attested(&self) -> (crate::events::Score, crate::quorum::Verdict) {
        use crate::quorum::{RejectCode, Verdict as Attested};
        let millionths = if self.value.is_finite() {
            (f64::from(self.value) * 1e6).round() as i64
        } else {
            i64::MIN / 2
        };
        let verdict = match self.verdict {
            Verdict::Pass => Attested::Accept,
            Verdict::Fail(FailReason::NoImprovement) => Attested::Reject(RejectCode::LossIncreased),
            Verdict::Fail(FailReason::NotTrainedOnAssignedData) => {
                Attested::Reject(RejectCode::Copied)
            }
            Verdict::Fail(FailReason::NormTooSmall | FailReason::NormTooLarge) => {
                Attested::Reject(RejectCode::NormOutOfRange)
            }
            Verdict::Fail(FailReason::NonFinite) => Attested::Reject(RejectCode::Malformed),
        };
        (crate::events::Score(millionths), verdict)
    }

    /// Payment weight: the score if passed, else zero.
    pub fn weight(&self) -> f32 {
        if self.passed() {
            self.value.max(0.0)
        } else {
            0.0
        }
    }
}

fn relative_gain(before: f32, after: f32) -> f32 {
    (before - after) / before
}

/// Scores one submission. Checks run cheapest first: finiteness, norms, held-out improvement,
/// then the assigned-vs-random data check.
pub fn score(m: &Measurements, policy: &ScoringPolicy) -> Score {
    let value = relative_gain(m.heldout_before, m.heldout_after);
    let random_gain = relative_gain(m.random_before, m.random_after);
    let assigned_advantage = (relative_gain(m.assigned_before, m.assigned_after) - random_gain)
        / random_gain.max(policy.pass_threshold);
    let relative_norm = m.update_norm / m.model_norm;
    let all = [
        m.heldout_before,
        m.heldout_after,
        m.assigned_before,
        m.assigned_after,
        m.random_before,
        m.random_after,
        m.update_norm,
        m.model_norm,
        value,
        assigned_advantage,
        relative_norm,
    ];
    let positive_losses = [m.heldout_before, m.assigned_before, m.random_before];
    let verdict = if all.iter().any(|x| !x.is_finite()) || positive_losses.iter().any(|x| *x <= 0.0)
    {
        Verdict::Fail(FailReason::NonFinite)
    } else if relative_norm < policy.min_relative_norm {
        Verdict::Fail(FailReason::NormTooSmall)
    } else if relative_norm > policy.max_relative_norm {
        Verdict::Fail(FailReason::NormTooLarge)
    } else if value < policy.pass_threshold {
        Verdict::Fail(FailReason::NoImprovement)
    } else if assigned_advantage < policy.min_assigned_advantage {
        Verdict::Fail(FailReason::NotTrainedOnAssignedData)
    } else {
        Verdict::Pass
    };
    Score {
        value: if value.is_finite() {
            value
        } else {
            f32::NEG_INFINITY
        },
        assigned_advantage,
        relative_norm,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn honest() -> Measurements {
        Measurements {
            heldout_before: 3.0,
            heldout_after: 2.9,
            assigned_before: 3.0,
            assigned_after: 2.7,
            random_before: 3.0,
            random_after: 2.9,
            update_norm: 0.1,
            model_norm: 10.0,
        }
    }

    #[test]
    fn honest_passes_with_its_gain_as_score() {
        let s = score(&honest(), &ScoringPolicy::default());
        assert_eq!(s.verdict, Verdict::Pass);
        assert!((s.value - 0.1 / 3.0).abs() < 1e-6);
        assert!(s.weight() > 0.0);
    }

    #[test]
    fn attested_scores_are_millionths_with_the_matching_reject_code() {
        use crate::quorum::{RejectCode, Verdict as A};
        let p = ScoringPolicy::default();
        let (v, verdict) = score(&honest(), &p).attested();
        assert_eq!((v.0, verdict), (33_333, A::Accept));
        let copied = score(
            &Measurements {
                assigned_after: 2.9,
                ..honest()
            },
            &p,
        );
        assert_eq!(copied.attested().1, A::Reject(RejectCode::Copied));
        let zero = score(
            &Measurements {
                update_norm: 0.0,
                ..honest()
            },
            &p,
        );
        assert_eq!(zero.attested().1, A::Reject(RejectCode::NormOutOfRange));
        let nan = score(
            &Measurements {
                heldout_after: f32::NAN,
                ..honest()
            },
            &p,
        );
        assert!(nan.attested().0 .0 < -1_000_000_000);
    }

    #[test]
    fn each_check_fails_on_its_own() {
        let p = ScoringPolicy::default();
        let fail = |m: Measurements| score(&m, &p).verdict;
        assert_eq!(
            fail(Measurements {
                heldout_after: f32::NAN,
                ..honest()
            }),
            Verdict::Fail(FailReason::NonFinite)
        );
        assert_eq!(
            fail(Measurements {
                update_norm: 0.0,
                ..honest()
            }),
            Verdict::Fail(FailReason::NormTooSmall)
        );
        assert_eq!(
            fail(Measurements {
                update_norm: 5.0,
                ..honest()
            }),
            Verdict::Fail(FailReason::NormTooLarge)
        );
        assert_eq!(
            fail(Measurements {
                heldout_after: 3.1,
                ..honest()
            }),
            Verdict::Fail(FailReason::NoImprovement)
        );
        assert_eq!(
            fail(Measurements {
                assigned_after: 2.9,
                ..honest()
            }),
            Verdict::Fail(FailReason::NotTrainedOnAssignedData)
        );
        assert_eq!(
            fail(Measurements {
                model_norm: 0.0,
                ..honest()
            }),
            Verdict::Fail(FailReason::NonFinite)
        );
        assert_eq!(
            score(
                &Measurements {
                    heldout_after: 3.1,
                    ..honest()
                },
                &p
            )
            .weight(),
            0.0
        );
    }

    #[test]
    fn agreement_is_within_tolerance() {
        assert!(scores_agree(0.01, 0.01 + SCORE_TOLERANCE / 2.0));
        assert!(!scores_agree(0.01, 0.01 + 2.0 * SCORE_TOLERANCE));
    }
}
