//! The coordinator's audit of disputed submissions by deterministic replay, and the evidence it
//! publishes against a validator whose signed score the replay contradicts.
//!
//! A validator's score is a deterministic function of `(checkpoint, blob, eval seed)` (candle's
//! CPU kernels give bit-identical losses on one machine; the round's [`Tolerance`] covers the
//! rest). A submission is **disputed** when its committee disagrees: some counted attestation
//! is an outlier of the median, or its verdict is on the other side of the quorum's outcome.
//! The coordinator replays every disputed evaluation before it publishes the checkpoint; each
//! signed attestation the replay contradicts becomes [`WrongScoreEvidence`], and its validator is
//! left out of the run's later validator pools (L2T-04 §audit). This is how k or more colluding
//! validators are stopped after one round: they can release one round's escrow, but the honest
//! members' dissent makes the round disputed and their signed scores convict them.
//!
//! Spec: specs/L2T-04-attestation.md#audit

use std::collections::BTreeSet;

use nostr::PublicKey;

use super::attestation::{AttestationBody, AttestationError, SignedAttestation, Verdict};
use super::tally::{Tally, Tolerance};
use super::RejectCode;
use crate::events::canonical::{CanonError, MapReader, MapWriter};
use crate::events::ids::Score;

/// Cap on encoded wrong-score evidence.
pub const MAX_WRONG_SCORE_BYTES: usize = super::attestation::MAX_ATTESTATION_BYTES + 96;

/// What a deterministic replay of one evaluation gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replay {
    /// Score in millionths.
    pub score: Score,
    /// Verdict.
    pub verdict: Verdict,
}

/// Whether the committee of a tallied submission disagrees, so the coordinator must replay it:
/// an outlier of the median, or a counted verdict on the other side of the quorum's outcome
/// (`Unavailable` is not a judgement of the blob and never disputes).
pub fn disputed(t: &Tally) -> bool {
    let quorum = t.quorum_accepts();
    !t.outliers().is_empty()
        || t.counted().any(|a| {
            let v = a.body().verdict;
            v != Verdict::Reject(RejectCode::Unavailable) && v.is_accept() != quorum
        })
}

/// Whether the signed attestation `body` contradicts `replay` of the same evaluation:
///
/// - `Unavailable` (on either side) says nothing about the blob: never;
/// - `Copied` depends on which earlier submissions the validator held, which a replay does not
///   see: never (a limit: SAFETY.md H10);
/// - `Malformed` is deterministic: contradicted unless the replay fails to decode too;
/// - accepting what the replay finds malformed or copied is contradicted;
/// - otherwise the scores must agree within the round's tolerance.
pub fn contradicts(body: &AttestationBody, replay: &Replay, tolerance: &Tolerance) -> bool {
    use RejectCode::{Copied, Malformed, Unavailable};
    match (body.verdict, replay.verdict) {
        (Verdict::Reject(Unavailable), _) | (_, Verdict::Reject(Unavailable)) => false,
        (Verdict::Reject(Copied), _) => false,
        (Verdict::Reject(Malformed), r) => r != Verdict::Reject(Malformed),
        (a, Verdict::Reject(Malformed | Copied)) => a.is_accept(),
        _ => !tolerance.agrees(body.score, replay.score),
    }
}

/// The validators a coordinator may draw: the opted-in `pool` without those `convicted` by
/// wrong-score evidence earlier in the run.
pub fn eligible(
    pool: &BTreeSet<PublicKey>,
    convicted: &BTreeSet<PublicKey>,
) -> BTreeSet<PublicKey> {
    pool.difference(convicted).copied().collect()
}

/// A validator's signed attestation and the replay of the same evaluation that contradicts it,
/// published (signed) by the coordinator that replayed it. Decoding checks the attestation's
/// signature and the contradiction; the replay itself is the publisher's claim, which anyone
/// holding the checkpoint and the blob can re-run (the attestation names both by hash and the
/// eval seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongScoreEvidence {
    attestation: SignedAttestation,
    replay: Replay,
    tolerance: Tolerance,
}

/// Error checking wrong-score evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WrongScoreError {
    /// Not canonical CBOR of the right shape, or a bad inner attestation.
    #[error("evidence encoding: {0}")]
    Attestation(#[from] AttestationError),
    /// A field is out of range.
    #[error("evidence field {0} is invalid")]
    BadField(&'static str),
    /// The replay does not contradict the attestation.
    #[error("the replay does not contradict the signed attestation")]
    NoContradiction,
}

impl From<CanonError> for WrongScoreError {
    fn from(e: CanonError) -> Self {
        Self::Attestation(e.into())
    }
}

impl WrongScoreEvidence {
    /// Evidence if `replay` contradicts `attestation` under `tolerance`; `None` otherwise.
    pub fn new(
        attestation: SignedAttestation,
        replay: Replay,
        tolerance: Tolerance,
    ) -> Option<Self> {
        contradicts(attestation.body(), &replay, &tolerance).then_some(Self {
            attestation,
            replay,
            tolerance,
        })
    }

    /// The validator whose signed score is contradicted.
    pub fn validator(&self) -> PublicKey {
        self.attestation.validator()
    }

    /// The contradicted attestation.
    pub fn attestation(&self) -> &SignedAttestation {
        &self.attestation
    }

    /// The replay the publisher ran.
    pub fn replay(&self) -> Replay {
        self.replay
    }

    /// The tolerance the scores were compared with (the round's).
    pub fn tolerance(&self) -> Tolerance {
        self.tolerance
    }

    /// Canonical encoding `{0: 1, 1: attestation, 2: replayed score, 3: replayed verdict,
    /// 4: tolerance abs, 5: tolerance rel}`.
    pub fn encode(&self) -> Vec<u8> {
        MapWriter::new(1)
            .bytes(1, &self.attestation.encode())
            .i64(2, self.replay.score.0)
            .u64(3, self.replay.verdict.code())
            .i64(4, self.tolerance.abs_micro)
            .i64(5, self.tolerance.rel_ppm)
            .finish()
    }

    /// Decode and check: the attestation's signature verifies and the replay contradicts it.
    pub fn decode(b: &[u8]) -> Result<Self, WrongScoreError> {
        let r = MapReader::decode(b, MAX_WRONG_SCORE_BYTES, &[1, 2, 3, 4, 5], &[1])?;
        let attestation = SignedAttestation::decode(r.bytes(1)?)?;
        let verdict = Verdict::from_code(r.u64(3)?).ok_or(WrongScoreError::BadField("verdict"))?;
        let tolerance = Tolerance {
            abs_micro: r.i64(4)?,
            rel_ppm: r.i64(5)?,
        };
        if tolerance.abs_micro < 0 || tolerance.rel_ppm < 0 {
            return Err(WrongScoreError::BadField("tolerance"));
        }
        let replay = Replay {
            score: Score(r.i64(2)?),
            verdict,
        };
        Self::new(attestation, replay, tolerance).ok_or(WrongScoreError::NoContradiction)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::events::ids::{BlobHash, RunId, Seed32, SubmissionId};
    use crate::quorum::attestation::Phase;
    use nostr::{Keys, SecretKey};

    fn signed(keys: &Keys, score: i64, verdict: Verdict) -> SignedAttestation {
        AttestationBody {
            run_id: RunId::new("run").unwrap(),
            round: 1,
            phase: Phase::Initial,
            submission: SubmissionId([1; 32]),
            checkpoint: BlobHash([2; 32]),
            gradient: BlobHash([3; 32]),
            eval_seed: Seed32([4; 32]),
            score: Score(score),
            verdict,
            validator: keys.public_key(),
        }
        .sign(keys, &[5; 32])
        .unwrap()
    }

    #[test]
    fn only_a_replayable_disagreement_contradicts() {
        let tol = Tolerance::default();
        let accept = |s| Replay {
            score: Score(s),
            verdict: Verdict::Accept,
        };
        let b = |s, v| {
            let k = Keys::new(SecretKey::from_slice(&[9; 32]).unwrap());
            signed(&k, s, v).body().clone()
        };
        // Within tolerance (1e-4 absolute, 1 % relative): no contradiction.
        assert!(!contradicts(
            &b(50_000, Verdict::Accept),
            &accept(50_400),
            &tol
        ));
        // A colluder's inflated score, or its rejection of good work with a made-up score.
        assert!(contradicts(
            &b(1_000_000, Verdict::Accept),
            &accept(50_000),
            &tol
        ));
        let loss = Verdict::Reject(RejectCode::LossIncreased);
        assert!(contradicts(&b(-1_000_000, loss), &accept(50_000), &tol));
        // Unavailable and Copied are not replayable judgements.
        let unavail = Verdict::Reject(RejectCode::Unavailable);
        assert!(!contradicts(&b(0, unavail), &accept(50_000), &tol));
        assert!(!contradicts(
            &b(0, Verdict::Reject(RejectCode::Copied)),
            &accept(50_000),
            &tol
        ));
        let replay_unavail = Replay {
            score: Score(0),
            verdict: unavail,
        };
        assert!(!contradicts(
            &b(1_000_000, Verdict::Accept),
            &replay_unavail,
            &tol
        ));
        // Accepting a blob that does not decode.
        let malformed = Replay {
            score: Score(0),
            verdict: Verdict::Reject(RejectCode::Malformed),
        };
        assert!(contradicts(&b(9, Verdict::Accept), &malformed, &tol));
        assert!(!contradicts(
            &b(0, Verdict::Reject(RejectCode::Malformed)),
            &malformed,
            &tol
        ));
    }

    #[test]
    fn evidence_round_trips_and_a_non_contradiction_or_forgery_is_refused() {
        let k = Keys::new(SecretKey::from_slice(&[9; 32]).unwrap());
        let tol = Tolerance::default();
        let replay = Replay {
            score: Score(50_000),
            verdict: Verdict::Accept,
        };
        let e =
            WrongScoreEvidence::new(signed(&k, 1_000_000, Verdict::Accept), replay, tol).unwrap();
        let back = WrongScoreEvidence::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.validator(), k.public_key());
        // An agreeing replay proves nothing.
        assert!(
            WrongScoreEvidence::new(signed(&k, 50_100, Verdict::Accept), replay, tol).is_none()
        );
        let fake = WrongScoreEvidence {
            attestation: signed(&k, 50_100, Verdict::Accept),
            replay,
            tolerance: tol,
        };
        assert_eq!(
            WrongScoreEvidence::decode(&fake.encode()),
            Err(WrongScoreError::NoContradiction)
        );
        // A tampered signature is refused before anything else.
        let mut att = e.attestation.encode();
        let last = att.len() - 1;
        att[last] ^= 1;
        let bytes = MapWriter::new(1)
            .bytes(1, &att)
            .i64(2, 50_000)
            .u64(3, Verdict::Accept.code())
            .i64(4, tol.abs_micro)
            .i64(5, tol.rel_ppm)
            .finish();
        assert!(matches!(
            WrongScoreEvidence::decode(&bytes),
            Err(WrongScoreError::Attestation(_))
        ));
    }
}
