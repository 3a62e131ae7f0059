//! The training-round state machines: coordinator, peer and validator.
//!
//! Each role is `handle(now, input) -> Vec<Action>`: inputs are verified Nostr events, Lightning
//! and evaluation results reported by the shell, and ticks; actions are what the shell executes
//! (publish an event, create/pay/claim/fail a hold invoice, release a blob, evaluate). Nothing in
//! here reads a clock, draws randomness or does IO: `now` is an argument, randomness is derived
//! from the role's seed, keys are passed in. `node` executes the actions for real; the simulator
//! and the property test drive the same machines with an in-memory world.
//!
//! Persistence: each role's state serialises to versioned CBOR ([`Coordinator::to_bytes`] …).
//! The shell writes it after every `handle` call and before executing the returned actions; after
//! a restart, `from_bytes` + [`Peer::resume`] (etc.) re-emits every action that may not have been
//! executed (claims, fail-backs, invoice requests, evaluations, publications); all are
//! idempotent.
//!
//! Spec: specs/L2T-03-round.md

pub mod coordinator;
pub mod driver;
pub mod peer;
pub mod progress;
pub mod validator;

use nostr::{Event, EventId, Keys, PublicKey, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::escrow::Preimage;
use crate::events::{
    sign_event, BlobHash, EventContent, MergedList, PaymentHash, Score, Seed32, SubmissionId,
    TrancheInvoice, UnixTime, VerifiedAny,
};
use crate::quorum::{Phase, Verdict};

pub use coordinator::{Coordinator, CoordinatorConfig, PreparedOffer};
pub use driver::{scope_of, Delivery, Driver, Effects, Machine, MachineKey, Role};
pub use peer::{Peer, PeerWork, TrancheState};
pub use validator::Validator;

/// The worker fails back a held HTLC this many seconds before the tranche's claim deadline and
/// never claims later than that, so a claim cannot race the HTLC timeout. The shell maps claim
/// deadlines to CLTV expiries with its own block margin on top.
pub const CLAIM_SAFETY_MARGIN_SECS: u64 = 60;

/// Most events a role buffers because they arrived before the event they refer to.
pub const MAX_EARLY_EVENTS: usize = 256;

/// Version of the persisted state format.
pub const STATE_VERSION: u32 = 1;

/// Largest persisted state accepted, in bytes.
pub const MAX_STATE_BYTES: usize = 16 * 1024 * 1024;

/// What the shell reports to a role.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)]
pub enum Input {
    /// Time passed (deadlines are checked on every input, a tick just carries `now`).
    Tick,
    /// A verified Nostr event (from any relay; duplicates are fine).
    Event(VerifiedAny),
    /// Worker: the Lightning node created the hold invoice for `payment_hash`.
    InvoiceCreated {
        /// Hash of the invoice.
        payment_hash: PaymentHash,
        /// BOLT11 string.
        bolt11: String,
    },
    /// Worker: an HTLC for `payment_hash` is held (ldk-node `PaymentClaimable`).
    HtlcHeld {
        /// Hash.
        payment_hash: PaymentHash,
        /// Amount held, in millisatoshis.
        amount_msat: u64,
    },
    /// Worker: the claim went through (ldk-node `PaymentReceived`).
    HtlcClaimed {
        /// Hash.
        payment_hash: PaymentHash,
    },
    /// Worker: the HTLC was failed back (or expired).
    HtlcFailed {
        /// Hash.
        payment_hash: PaymentHash,
    },
    /// Validator: the evaluation of a submission finished.
    EvalDone {
        /// Submission.
        submission: SubmissionId,
        /// Which evaluation.
        phase: Phase,
        /// Score in millionths.
        score: Score,
        /// Verdict.
        verdict: Verdict,
        /// The validator's BOLT11 invoice for its fee, created by the shell with the result (the
        /// attestation carries it; the coordinator pays it if the score is within tolerance).
        fee_invoice: Option<String>,
    },
    /// Coordinator: the replay of a disputed submission's evaluation finished (the answer to
    /// [`Action::Audit`]; `Unavailable` if the blob could not be fetched).
    Audited {
        /// Submission.
        submission: SubmissionId,
        /// Replayed score in millionths.
        score: Score,
        /// Replayed verdict.
        verdict: Verdict,
    },
    /// Coordinator: the aggregate of the merged submissions is stored as this blob.
    CheckpointReady {
        /// New checkpoint.
        checkpoint: BlobHash,
    },
}

/// What a role asks the shell to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Publish this signed event to the relays.
    Publish(Event),
    /// Worker: create a hold invoice (`receive_for_hash`).
    CreateHoldInvoice {
        /// Submission.
        submission: SubmissionId,
        /// Tranche index.
        tranche: u32,
        /// `H` from the dealing.
        payment_hash: PaymentHash,
        /// Amount.
        amount_msat: u64,
        /// Claim or fail before this time; the HTLC expiry must be later.
        claim_deadline: UnixTime,
    },
    /// Payer: pay the worker's hold invoices (after checking each BOLT11 names the payment hash
    /// and amount given here).
    PayHoldInvoices {
        /// Submission.
        submission: SubmissionId,
        /// Worker.
        peer: PublicKey,
        /// `(invoice, expected amount)` per tranche.
        invoices: Vec<(TrancheInvoice, u64)>,
    },
    /// Worker: claim the HTLC (`claim_for_hash`).
    Claim {
        /// Hash.
        payment_hash: PaymentHash,
        /// Reconstructed preimage.
        preimage: Preimage,
        /// Amount held.
        amount_msat: u64,
    },
    /// Worker: fail the HTLC back to the payer (`fail_for_hash`).
    FailBack {
        /// Hash.
        payment_hash: PaymentHash,
    },
    /// Worker: serve the blob to these keys (validators and coordinator) from now on.
    ReleaseBlob {
        /// Blob.
        blob: BlobHash,
        /// Allowed fetchers.
        to: Vec<PublicKey>,
    },
    /// Validator: fetch the blob and evaluate it; answer with [`Input::EvalDone`].
    Evaluate {
        /// Submission.
        submission: SubmissionId,
        /// Which evaluation.
        phase: Phase,
        /// Checkpoint to apply it to.
        checkpoint: BlobHash,
        /// Blob to fetch.
        blob: BlobHash,
        /// Seed of the held-out batch.
        eval_seed: Seed32,
    },
    /// Coordinator: replay a disputed submission's evaluation as a validator does (fetch the
    /// checkpoint and the blob, score it on the eval seed's batch, no near-copy check); answer
    /// with [`Input::Audited`]. The checkpoint event waits for every audit of the round.
    Audit {
        /// Submission.
        submission: SubmissionId,
        /// Checkpoint it applies to.
        checkpoint: BlobHash,
        /// Its blob.
        blob: BlobHash,
        /// Seed of the held-out batch.
        eval_seed: Seed32,
    },
    /// Coordinator: aggregate the listed submissions onto the list's parent and store the list
    /// itself as a public blob (the checkpoint event names it by hash); answer with
    /// [`Input::CheckpointReady`].
    Aggregate {
        /// Exactly the submissions with a passing quorum, and the parent.
        list: MergedList,
    },
    /// Coordinator: pay a validator's fee invoice (its score agreed with the quorum).
    PayValidatorFee {
        /// Validator.
        validator: PublicKey,
        /// Its fee invoice.
        bolt11: String,
    },
    /// Coordinator: refund a refused submission's toll by paying the peer's refund invoice
    /// (after checking it asks exactly `amount_msat`).
    RefundToll {
        /// The refused submission.
        submission: SubmissionId,
        /// Its author.
        peer: PublicKey,
        /// The submission's refund invoice.
        bolt11: String,
        /// The toll.
        amount_msat: u64,
    },
    /// Worker: the coordinator refused the submission (and refunded `refund_msat` of its toll);
    /// the machine is done, for logs and status.
    Refused {
        /// The submission.
        submission: SubmissionId,
        /// Why.
        refusal: crate::events::Refusal,
        /// Refunded.
        refund_msat: u64,
    },
    /// An event of this round was not acted on (replay, wrong author, too late …), for logs.
    Ignored {
        /// The event.
        event: EventId,
        /// Why.
        reason: String,
    },
}

/// Error restoring persisted state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// Larger than [`MAX_STATE_BYTES`].
    #[error("state too large")]
    TooLarge,
    /// Not the expected CBOR (or a stored event no longer verifies).
    #[error("state does not decode: {0}")]
    Decode(String),
    /// Another format version.
    #[error("unsupported state version {0}")]
    Version(u32),
    /// State of another role, or for other keys.
    #[error("state belongs to another role or key")]
    WrongRole,
}

/// Error constructing a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// The round open does not validate.
    #[error("round open: {0}")]
    RoundOpen(String),
    /// This key is not in the round's committee.
    #[error("not a validator of this round")]
    NotInCommittee,
}

#[derive(Serialize, Deserialize)]
struct Persisted<S> {
    version: u32,
    role: String,
    key: PublicKey,
    state: S,
}

pub(crate) fn persist<S: Serialize>(role: &str, key: PublicKey, state: &S) -> Vec<u8> {
    let p = Persisted {
        version: STATE_VERSION,
        role: role.to_owned(),
        key,
        state,
    };
    // Serialising plain in-memory state to a Vec cannot fail.
    serde_cbor::to_vec(&p).unwrap_or_default()
}

pub(crate) fn restore<S: DeserializeOwned>(
    role: &str,
    key: PublicKey,
    bytes: &[u8],
) -> Result<S, PersistError> {
    if bytes.len() > MAX_STATE_BYTES {
        return Err(PersistError::TooLarge);
    }
    // Header first (version, role, key), so a wrong file is reported as such rather than as a
    // decode error of the state.
    let head: Persisted<serde::de::IgnoredAny> =
        serde_cbor::from_slice(bytes).map_err(|e| PersistError::Decode(e.to_string()))?;
    if head.version != STATE_VERSION {
        return Err(PersistError::Version(head.version));
    }
    if head.role != role || head.key != key {
        return Err(PersistError::WrongRole);
    }
    let p: Persisted<S> =
        serde_cbor::from_slice(bytes).map_err(|e| PersistError::Decode(e.to_string()))?;
    Ok(p.state)
}

/// A ChaCha20 RNG derived from the role seed and a label: every random choice is reproducible
/// from `(seed, label)`, so a restarted role re-derives exactly the same values.
pub(crate) fn op_rng(seed: &[u8; 32], label: &str, parts: &[&[u8]]) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(op_seed(seed, label, parts))
}

pub(crate) fn op_seed(seed: &[u8; 32], label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"l402/round-rng/v1\0");
    h.update(seed);
    h.update(label.as_bytes());
    h.update([0u8]);
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Sign `content` as `keys` at `now`, with aux randomness from `(seed, label, parts)`.
pub(crate) fn sign<T: EventContent>(
    keys: &Keys,
    seed: &[u8; 32],
    now: UnixTime,
    label: &str,
    parts: &[&[u8]],
    content: &T,
) -> Option<Event> {
    let mut rng = op_rng(seed, label, parts);
    sign_event(content, keys, Timestamp::from_secs(now), &mut rng).ok()
}

pub(crate) fn ignored(ev: &Event, reason: impl std::fmt::Display) -> Action {
    Action::Ignored {
        event: ev.id,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
