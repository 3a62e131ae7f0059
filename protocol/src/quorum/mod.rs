//! Validator quorum: committee selection, signed attestations, tallies and equivocation evidence.
//!
//! - [`select`]: the round seed (from the previous checkpoint), per-submission eval seeds, and the
//!   deterministic committee draw.
//! - [`committee`]: per-submission committees from the pool, drawn with the coordinator's VRF.
//! - [`attestation`]: the signed statement binding run, round, phase, submission, checkpoint,
//!   gradient hash, eval seed, score and verdict.
//! - [`tally`]: counting a submission's attestations (k-of-n, score tolerance, fees) and
//!   equivocation evidence.
//! - [`audit`]: replaying disputed evaluations, wrong-score evidence and the eligible pool.
//!
//! Spec: specs/L2T-04-attestation.md

pub mod attestation;
pub mod audit;
pub mod committee;
pub mod select;
pub mod tally;

pub use attestation::{
    AttestationBody, AttestationError, Phase, RejectCode, SignedAttestation, Verdict,
    MAX_ATTESTATION_BYTES,
};
pub use audit::{contradicts, disputed, eligible, Replay, WrongScoreError, WrongScoreEvidence};
pub use committee::{CommitteeError, CommitteeProof};
pub use select::{eval_seed, round_seed, select_validators, SelectError};
pub use tally::{
    tally, EquivocationError, EquivocationEvidence, Exclusion, Tally, TallyContext, Tolerance,
};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
