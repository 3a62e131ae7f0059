//! Signed validator attestations.
//!
//! Spec: specs/L2T-04-attestation.md#attestation

use nostr::{Keys, PublicKey};

use crate::events::canonical::{CanonError, MapReader, MapWriter};
use crate::events::ids::{BlobHash, RunId, Score, Seed32, SubmissionId};
use crate::events::sig::{self, DOMAIN_ATTESTATION};

/// Cap on an encoded [`SignedAttestation`].
pub const MAX_ATTESTATION_BYTES: usize = 1024;

/// Which evaluation an attestation reports.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Phase {
    /// The evaluation in the round (releases the regular tranches).
    Initial,
    /// The delayed re-evaluation (releases the holdback tranche).
    Holdback,
}

impl Phase {
    fn code(self) -> u64 {
        match self {
            Phase::Initial => 0,
            Phase::Holdback => 1,
        }
    }
    fn from_code(c: u64) -> Option<Self> {
        match c {
            0 => Some(Phase::Initial),
            1 => Some(Phase::Holdback),
            _ => None,
        }
    }
}

/// Why a validator rejected a submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum RejectCode {
    /// Applying the update did not reduce held-out loss enough.
    LossIncreased,
    /// The update is a copy of another peer's (assigned-vs-random data check).
    Copied,
    /// The update's norm is out of the accepted range.
    NormOutOfRange,
    /// The blob does not decode.
    Malformed,
    /// The blob could not be fetched before the attest deadline.
    Unavailable,
    /// Bounty: the diff does not beat the round's tree by the bounty's margin (L2T-13).
    BelowMargin,
    /// Bounty: the candidate phase or its artifact failed (the exploit log says how).
    CandidateFailed,
    /// A reason code from a later version (above 7; lower codes decode as the named ones).
    Other(u8),
}

/// A validator's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// The submission passes the checks; the score decides which tranches it earns.
    Accept,
    /// The submission fails.
    Reject(RejectCode),
}

impl Verdict {
    pub(crate) fn code(self) -> u64 {
        match self {
            Verdict::Accept => 0,
            Verdict::Reject(r) => match r {
                RejectCode::LossIncreased => 1,
                RejectCode::Copied => 2,
                RejectCode::NormOutOfRange => 3,
                RejectCode::Malformed => 4,
                RejectCode::Unavailable => 5,
                RejectCode::BelowMargin => 6,
                RejectCode::CandidateFailed => 7,
                RejectCode::Other(n) => u64::from(n),
            },
        }
    }
    pub(crate) fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            0 => Verdict::Accept,
            1 => Verdict::Reject(RejectCode::LossIncreased),
            2 => Verdict::Reject(RejectCode::Copied),
            3 => Verdict::Reject(RejectCode::NormOutOfRange),
            4 => Verdict::Reject(RejectCode::Malformed),
            5 => Verdict::Reject(RejectCode::Unavailable),
            6 => Verdict::Reject(RejectCode::BelowMargin),
            7 => Verdict::Reject(RejectCode::CandidateFailed),
            n if n <= 255 => Verdict::Reject(RejectCode::Other(n as u8)),
            _ => return None,
        })
    }

    /// Whether this is [`Verdict::Accept`].
    pub fn is_accept(self) -> bool {
        matches!(self, Verdict::Accept)
    }
}

/// What a validator attests. Every field is inside the signed bytes, so an attestation cannot be
/// replayed into another run, round, phase, submission, checkpoint or blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationBody {
    /// Run.
    pub run_id: RunId,
    /// Round.
    pub round: u64,
    /// Initial evaluation or holdback re-evaluation.
    pub phase: Phase,
    /// Submission (its Nostr event id).
    pub submission: SubmissionId,
    /// Checkpoint the update applies to.
    pub checkpoint: BlobHash,
    /// BLAKE3 hash of the evaluated pseudo-gradient (or diff) blob.
    pub gradient: BlobHash,
    /// Seed of the held-out evaluation batch.
    pub eval_seed: Seed32,
    /// Score in millionths.
    pub score: Score,
    /// Verdict.
    pub verdict: Verdict,
    /// The validator (x-only Nostr key) that signs it.
    pub validator: PublicKey,
}

/// Error decoding or checking an attestation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// Not canonical CBOR of the right shape.
    #[error("attestation encoding: {0}")]
    Encoding(#[from] CanonError),
    /// A field has an invalid value.
    #[error("attestation field {0} is invalid")]
    BadField(&'static str),
    /// The signature does not verify against the validator key in the body.
    #[error("attestation signature does not verify")]
    BadSignature,
}

impl AttestationBody {
    /// Canonical CBOR bytes (the signed message).
    pub fn encode(&self) -> Vec<u8> {
        MapWriter::new(1)
            .text(1, self.run_id.as_str())
            .u64(2, self.round)
            .u64(3, self.phase.code())
            .bytes(4, &self.submission.0)
            .bytes(5, &self.checkpoint.0)
            .bytes(6, &self.gradient.0)
            .bytes(8, &self.eval_seed.0)
            .i64(10, self.score.0)
            .u64(12, self.verdict.code())
            .bytes(14, self.validator.as_bytes())
            .finish()
    }

    /// Decode canonical bytes.
    pub fn decode(b: &[u8]) -> Result<Self, AttestationError> {
        let r = MapReader::decode(
            b,
            MAX_ATTESTATION_BYTES,
            &[1, 2, 3, 4, 5, 6, 8, 10, 12, 14],
            &[1],
        )?;
        Ok(Self {
            run_id: RunId::new(r.text(1)?).map_err(|_| AttestationError::BadField("run_id"))?,
            round: r.u64(2)?,
            phase: Phase::from_code(r.u64(3)?).ok_or(AttestationError::BadField("phase"))?,
            submission: SubmissionId(r.array_n(4)?),
            checkpoint: BlobHash(r.array_n(5)?),
            gradient: BlobHash(r.array_n(6)?),
            eval_seed: Seed32(r.array_n(8)?),
            score: Score(r.i64(10)?),
            verdict: Verdict::from_code(r.u64(12)?).ok_or(AttestationError::BadField("verdict"))?,
            validator: PublicKey::from_slice(r.bytes(14)?)
                .map_err(|_| AttestationError::BadField("validator"))?,
        })
    }

    /// Sign with the validator's keys. `aux` is BIP-340 auxiliary randomness.
    ///
    /// Returns `BadField("validator")` if `keys` is not the body's validator.
    pub fn sign(self, keys: &Keys, aux: &[u8; 32]) -> Result<SignedAttestation, AttestationError> {
        if keys.public_key() != self.validator {
            return Err(AttestationError::BadField("validator"));
        }
        let body_bytes = self.encode();
        let sig = sig::sign(keys, DOMAIN_ATTESTATION, &body_bytes, aux);
        Ok(SignedAttestation {
            body: self,
            body_bytes,
            sig,
        })
    }

    /// The part that two honest attestations of one validator for one evaluation share: two
    /// signed bodies with the same [`AttestationBody::slot`] and different contents are
    /// equivocation.
    pub fn slot(&self) -> (RunId, u64, Phase, SubmissionId, PublicKey) {
        (
            self.run_id.clone(),
            self.round,
            self.phase,
            self.submission,
            self.validator,
        )
    }
}

/// An attestation with its validator's BIP-340 signature. Only constructed after the signature
/// verified (or by signing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAttestation {
    body: AttestationBody,
    body_bytes: Vec<u8>,
    sig: [u8; 64],
}

impl SignedAttestation {
    /// The attested content.
    pub fn body(&self) -> &AttestationBody {
        &self.body
    }
    /// The validator that signed it.
    pub fn validator(&self) -> PublicKey {
        self.body.validator
    }
    /// The signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.sig
    }

    /// Canonical encoding `{0: 1, 1: body bytes, 2: signature}`.
    pub fn encode(&self) -> Vec<u8> {
        MapWriter::new(1)
            .bytes(1, &self.body_bytes)
            .bytes(2, &self.sig)
            .finish()
    }

    /// Decode and verify the signature (cap → canonical structure → signature → body).
    pub fn decode(b: &[u8]) -> Result<Self, AttestationError> {
        let r = MapReader::decode(b, MAX_ATTESTATION_BYTES, &[1, 2], &[1])?;
        let body_bytes = r.bytes(1)?.to_vec();
        let sig: [u8; 64] = r.array_n(2)?;
        // The validator key sits at a fixed field of the body; decode the body (cheap, bounded)
        // to learn it, then check the signature before anything uses the contents.
        let body = AttestationBody::decode(&body_bytes)?;
        if !sig::verify(&body.validator, DOMAIN_ATTESTATION, &body_bytes, &sig) {
            return Err(AttestationError::BadSignature);
        }
        Ok(Self {
            body,
            body_bytes,
            sig,
        })
    }

    /// Base64 of [`SignedAttestation::encode`] (how it travels in JSON event content).
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.encode())
    }

    /// Inverse of [`SignedAttestation::to_base64`], with a size cap before decoding.
    pub fn from_base64(s: &str) -> Result<Self, AttestationError> {
        use base64::Engine;
        if s.len() > MAX_ATTESTATION_BYTES * 4 / 3 + 4 {
            return Err(CanonError::TooLarge {
                size: s.len() * 3 / 4,
                max: MAX_ATTESTATION_BYTES,
            }
            .into());
        }
        let b = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| CanonError::Malformed(e.to_string()))?;
        Self::decode(&b)
    }
}
