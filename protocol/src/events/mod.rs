//! The l402 Nostr kind set: content schemas, builders and validating parsers.
//!
//! Every event is standard NIP-01 JSON signed by its author's Nostr key, readable by any client.
//! Content is JSON (`{"v": 1, …}`); signed protocol objects inside it (escrow dealings,
//! attestations, evidence) are base64 canonical CBOR with their own BIP-340 signature.
//! Tags carry what relays index: `d` (addressable key), `n` (run or bounty id), `z` (round),
//! `x` (blob hash), `s` (submission id), `p` (addressed keys), `e` (referenced event), `t`
//! (hashtags) and `expiration` (NIP-40).
//!
//! Inbound events go through one pipeline ([`parse`], [`validate_event`]): size caps → cheap
//! structure (kind, tags, time window) → id and signature → content decode, schema rules and
//! bindings (tags equal content, inner signer equals author). Only the result, a [`Verified`],
//! reaches a state machine; every rejection is a typed [`RejectReason`] with a NIP-01 prefix.
//!
//! Spec: specs/L2T-01-events.md

pub mod bounty;
pub mod canonical;
pub mod evidence;
pub mod ids;
pub mod node;
pub mod parse;
pub mod round_events;
pub mod sig;
pub mod tags;

use nostr::{Event, EventId, Kind, PublicKey, Timestamp};

pub use bounty::{
    bounty_commitment, check_reveal, Bounty, BountyCommitment, BountyHeldout, BountyReveal,
    Direction, HeldoutError, HeldoutSecrets,
};
pub use evidence::{Evidence, Proven};
pub use ids::{BlobHash, PaymentHash, RunId, Score, Seed32, SubmissionId, UnixTime};
pub use node::{iroh_binding_message, NodeAnnouncement, Role, RunAnnouncement, ValidatorTerms};
pub use parse::{
    build, parse, parse_json, sign_event, validate_event, verify_event, EventContent, VerifiedAny,
};
pub use round_events::{
    AttestationEvent, Checkpoint, EscrowLock, EscrowOffer, HoldbackWindow, LockState, MergedList,
    MergedListError, MergedSubmission, Refusal, ReleasedShare, RoundOpen, RoundScope, ScopeError,
    Submission, SubmissionRefusal, TrancheInvoice, CHECKPOINT_VERSION, MAX_MERGED_LIST_BYTES,
    OFFER_CONTENT_VERSION,
};

/// Largest accepted event, as serialised NIP-01 JSON, in bytes.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Largest accepted `content` field, in bytes.
pub const MAX_CONTENT_BYTES: usize = 60 * 1024;
/// Most tags on one event (a round open carries one `p` tag per validator).
pub const MAX_TAGS: usize = 96;
/// Most values in one tag (name included).
pub const MAX_TAG_VALUES: usize = 4;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE_LEN: usize = 512;
/// How far in the future `created_at` may be (strfry's default window).
pub const MAX_FUTURE_SKEW_SECS: u64 = 900;
/// Longest free-text field (titles, metric names, model descriptions).
pub const MAX_TEXT_LEN: usize = 256;
/// Longest URL or address string.
pub const MAX_URL_LEN: usize = 512;
/// Most entries in a short list (roles, relays, addresses, mutable files).
pub const MAX_LIST_LEN: usize = 16;
/// Longest L402 credential string carried in a submission.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest BOLT11 invoice string.
pub const MAX_BOLT11_LEN: usize = 2048;
/// Largest blob a submission may announce (pseudo-gradient or diff), in bytes.
pub const MAX_SUBMISSION_BLOB_BYTES: u64 = 512 * 1024 * 1024;
/// How long after its last deadline a round-scoped event stays on relays (NIP-40 expiration).
pub const EXPIRY_GRACE_SECS: u64 = 7 * 24 * 3600;
/// Content schema version written and accepted.
pub const CONTENT_VERSION: u32 = 1;

/// The l402 kinds. Addressable kinds (3xxxx) are replaced per `(kind, author, d)`; the others are
/// regular events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum L402Kind {
    /// Node/validator announcement (addressable, `d = "l402-node"`).
    NodeAnnouncement,
    /// Run announcement by a coordinator (addressable, `d = run id`).
    RunAnnouncement,
    /// Bounty by a sponsor (addressable, `d = bounty id`).
    Bounty,
    /// Round open by the coordinator.
    RoundOpen,
    /// Submission by a peer.
    Submission,
    /// Escrow offer (signed dealings) by the payer.
    EscrowOffer,
    /// Escrow lock progress (invoices, then locked) by the worker.
    EscrowLock,
    /// Attestation (plus released shares) by a validator.
    Attestation,
    /// Checkpoint publication by the coordinator.
    Checkpoint,
    /// Bounty commitment by an agent.
    BountyCommitment,
    /// Bounty reveal by an agent.
    BountyReveal,
    /// Evidence of misbehaviour, by anyone.
    Evidence,
    /// A coordinator's refusal of a submission (round full), with the toll's refund.
    SubmissionRefusal,
    /// A bounty's held-out secrets, by the sponsor, NIP-44-encrypted to one validator.
    BountyHeldout,
}

impl L402Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [L402Kind; 14] = [
        L402Kind::NodeAnnouncement,
        L402Kind::RunAnnouncement,
        L402Kind::Bounty,
        L402Kind::RoundOpen,
        L402Kind::Submission,
        L402Kind::EscrowOffer,
        L402Kind::EscrowLock,
        L402Kind::Attestation,
        L402Kind::Checkpoint,
        L402Kind::BountyCommitment,
        L402Kind::BountyReveal,
        L402Kind::Evidence,
        L402Kind::SubmissionRefusal,
        L402Kind::BountyHeldout,
    ];

    /// The numeric kind.
    pub const fn as_u16(self) -> u16 {
        match self {
            L402Kind::NodeAnnouncement => 34020,
            L402Kind::RunAnnouncement => 34021,
            L402Kind::Bounty => 34022,
            L402Kind::RoundOpen => 4021,
            L402Kind::Submission => 4022,
            L402Kind::EscrowOffer => 4023,
            L402Kind::EscrowLock => 4024,
            L402Kind::Attestation => 4025,
            L402Kind::Checkpoint => 4026,
            L402Kind::BountyCommitment => 4027,
            L402Kind::BountyReveal => 4028,
            L402Kind::Evidence => 4029,
            L402Kind::SubmissionRefusal => 4030,
            L402Kind::BountyHeldout => 4031,
        }
    }

    /// The nostr [`Kind`].
    pub fn kind(self) -> Kind {
        Kind::from_u16(self.as_u16())
    }

    /// The l402 kind of a numeric kind, if it is one of ours.
    pub fn from_u16(k: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_u16() == k)
    }

    /// Whether the kind is addressable (30000–39999).
    pub const fn is_addressable(self) -> bool {
        self.as_u16() >= 30000
    }
}

/// Whether `kind` belongs to the l402 kind set (for a relay's write policy).
pub fn is_l402_kind(kind: Kind) -> bool {
    L402Kind::from_u16(kind.as_u16()).is_some()
}

/// An event that passed the whole pipeline, with its decoded content.
///
/// Only this module constructs it. Deserialising one re-runs the verification (without the time
/// window), so persisted state cannot smuggle in an unchecked event. Immutable and shared: a
/// clone is a reference count, so every machine an event reaches (the worker, five committee
/// members, the coordinator) holds the one copy.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified<T> {
    inner: std::sync::Arc<VerifiedInner<T>>,
}

#[derive(Debug, PartialEq, Eq)]
struct VerifiedInner<T> {
    event: Event,
    value: T,
}

impl<T> Clone for Verified<T> {
    fn clone(&self) -> Self {
        Self {
            inner: std::sync::Arc::clone(&self.inner),
        }
    }
}

impl<T> Verified<T> {
    pub(crate) fn new(event: Event, value: T) -> Self {
        Self {
            inner: std::sync::Arc::new(VerifiedInner { event, value }),
        }
    }
    /// The signed event.
    pub fn event(&self) -> &Event {
        &self.inner.event
    }
    /// The decoded content.
    pub fn value(&self) -> &T {
        &self.inner.value
    }
    /// Author (verified signer).
    pub fn author(&self) -> PublicKey {
        self.inner.event.pubkey
    }
    /// Event id.
    pub fn id(&self) -> EventId {
        self.inner.event.id
    }
    /// `created_at`.
    pub fn created_at(&self) -> Timestamp {
        self.inner.event.created_at
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T> serde::Serialize for Verified<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.event.serialize(s)
    }
}

impl<'de, T: EventContent> serde::Deserialize<'de> for Verified<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ev = Event::deserialize(d)?;
        parse::parse::<T>(&ev, None).map_err(serde::de::Error::custom)
    }
}

/// Why an event was rejected. [`RejectReason::to_nip01`] gives the relay `OK` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Serialised event larger than [`MAX_EVENT_BYTES`] (or content over [`MAX_CONTENT_BYTES`]).
    #[error("event too large: {size} bytes, max {max}")]
    TooLarge {
        /// Size found.
        size: usize,
        /// Cap.
        max: usize,
    },
    /// More than [`MAX_TAGS`] tags.
    #[error("too many tags: {0}")]
    TooManyTags(usize),
    /// A tag with too many values or a value over [`MAX_TAG_VALUE_LEN`].
    #[error("tag too large")]
    TagTooLarge,
    /// Not one of the l402 kinds.
    #[error("kind {0} is not an l402 kind")]
    UnknownKind(u16),
    /// The parser for one kind was given another kind.
    #[error("expected kind {expected}, got {got}")]
    WrongKind {
        /// Expected kind.
        expected: u16,
        /// Kind found.
        got: u16,
    },
    /// `created_at` more than [`MAX_FUTURE_SKEW_SECS`] ahead.
    #[error("created_at is in the future")]
    FromTheFuture,
    /// NIP-40 expiration has passed.
    #[error("event has expired")]
    Expired,
    /// The JSON is not a NIP-01 event (missing fields, missing signature, bad hex).
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The id is not the hash of the event.
    #[error("event id does not match its contents")]
    BadId,
    /// The Schnorr signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A required tag is missing.
    #[error("missing tag {0}")]
    MissingTag(String),
    /// A tag disagrees with the content, or an indexed tag is present that the content does not
    /// justify.
    #[error("tag {0} does not match the content")]
    TagMismatch(String),
    /// Content is not the expected JSON.
    #[error("bad content: {0}")]
    BadContent(String),
    /// Content version not supported.
    #[error("unsupported content version {0}")]
    UnsupportedVersion(u32),
    /// A schema rule is broken (named).
    #[error("schema: {0}")]
    Schema(String),
    /// An inner signed object (dealing, attestation) is signed by someone else than the author.
    #[error("inner object is not signed by the event author")]
    AuthorMismatch,
    /// The iroh ed25519 binding signature in a node announcement does not verify.
    #[error("iroh key binding signature does not verify")]
    BadBinding,
    /// An inner signed object does not decode or verify.
    #[error("inner object: {0}")]
    Inner(String),
    /// Evidence that does not prove what it claims.
    #[error("evidence does not verify: {0}")]
    EvidenceNotProven(String),
}

impl RejectReason {
    /// The NIP-01 machine-readable prefix: `blocked` for kinds outside our set, `invalid` for
    /// everything else.
    pub fn prefix(&self) -> &'static str {
        match self {
            RejectReason::UnknownKind(_) => "blocked",
            _ => "invalid",
        }
    }

    /// `"<prefix>: <message>"`, the relay `OK` message.
    pub fn to_nip01(&self) -> String {
        format!("{}: {}", self.prefix(), self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
