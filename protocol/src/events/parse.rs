//! Builders and the validating pipeline shared by every kind.
//!
//! Spec: specs/L2T-01-events.md#validation

use nostr::{Event, EventBuilder, JsonUtil, Keys, PublicKey, Tag, Timestamp, SECP256K1};
use rand::{CryptoRng, RngCore};
use serde::{de::DeserializeOwned, Serialize};

use super::bounty::{Bounty, BountyCommitment, BountyHeldout, BountyReveal};
use super::evidence::Evidence;
use super::node::{NodeAnnouncement, RunAnnouncement};
use super::round_events::{
    AttestationEvent, Checkpoint, EscrowLock, EscrowOffer, RoundOpen, Submission, SubmissionRefusal,
};
use super::{tags, L402Kind, RejectReason, Verified, MAX_CONTENT_BYTES, MAX_EVENT_BYTES};

/// A content type of one l402 kind.
pub trait EventContent: Sized {
    /// Its kind.
    const KIND: L402Kind;

    /// The tags the event must carry, derived from the content alone.
    fn tags(&self) -> Vec<Tag>;

    /// The `content` string.
    fn to_content(&self) -> String;

    /// Decode the `content` string of an event by `author` and check the schema rules and the
    /// bindings to `author` (inner signatures).
    fn from_content(content: &str, author: &PublicKey) -> Result<Self, RejectReason>;
}

/// The `to_content` / `from_content` pair of a JSON content type whose rules are all in its
/// `check(&self) -> Result<(), RejectReason>` method (most kinds).
macro_rules! json_content {
    () => {
        fn to_content(&self) -> String {
            $crate::events::parse::to_json(self)
        }
        fn from_content(
            content: &str,
            _author: &nostr::PublicKey,
        ) -> Result<Self, $crate::events::RejectReason> {
            let a: Self = $crate::events::parse::from_json(content)?;
            a.check()?;
            Ok(a)
        }
    };
}
pub(crate) use json_content;

/// JSON-encode a serde content struct (serde_json cannot fail on these plain structs).
pub(crate) fn to_json<T: Serialize>(t: &T) -> String {
    serde_json::to_string(t).unwrap_or_default()
}

/// JSON-decode content and check the version field `v`.
pub(crate) fn from_json<T: DeserializeOwned>(s: &str) -> Result<T, RejectReason> {
    from_json_versions(s, &[super::CONTENT_VERSION])
}

/// [`from_json`] for a content type that decodes any of `versions` (its `v` tells them apart).
pub(crate) fn from_json_versions<T: DeserializeOwned>(
    s: &str,
    versions: &[u32],
) -> Result<T, RejectReason> {
    #[derive(serde::Deserialize)]
    struct V {
        v: u32,
    }
    let v: V = serde_json::from_str(s).map_err(|e| RejectReason::BadContent(e.to_string()))?;
    if !versions.contains(&v.v) {
        return Err(RejectReason::UnsupportedVersion(v.v));
    }
    serde_json::from_str(s).map_err(|e| RejectReason::BadContent(e.to_string()))
}

/// Base64-decode at most `max` decoded bytes (the length is checked before decoding).
pub(crate) fn b64_decode(s: &str, max: usize) -> Result<Vec<u8>, RejectReason> {
    crate::escrow::dealing::b64_capped(s, max).map_err(|e| RejectReason::Inner(e.to_string()))
}

/// The unsigned event template for `content`, dated `created_at` (no clock is read).
pub fn build<T: EventContent>(content: &T, created_at: Timestamp) -> EventBuilder {
    EventBuilder::new(T::KIND.kind(), content.to_content())
        .tags(content.tags())
        .custom_created_at(created_at)
}

/// Build and sign with `keys`; `rng` supplies the BIP-340 auxiliary randomness.
pub fn sign_event<T: EventContent, R: RngCore + CryptoRng>(
    content: &T,
    keys: &Keys,
    created_at: Timestamp,
    rng: &mut R,
) -> Result<Event, nostr::event::Error> {
    // `build` only reads a clock when no created_at is set; we always set one.
    build(content, created_at)
        .allow_self_tagging()
        .build(keys.public_key())
        .sign_with_ctx(SECP256K1, rng, keys)
}

/// The NIP-01 JSON size of `ev`, estimated without serialising it (JSON escapes are not
/// counted; relays cap raw message sizes before parsing anyway).
fn approx_json_len(ev: &Event) -> usize {
    // id, pubkey, sig, created_at, kind and the JSON punctuation come to under 400 bytes.
    let tags: usize = ev
        .tags
        .iter()
        .map(|t| 2 + t.as_slice().iter().map(|v| v.len() + 3).sum::<usize>())
        .sum();
    400 + ev.content.len() + tags
}

/// Steps 1–2 of the pipeline: size caps, tag caps, kind, time window.
fn cheap_checks(ev: &Event, now: Option<Timestamp>) -> Result<L402Kind, RejectReason> {
    if ev.content.len() > MAX_CONTENT_BYTES {
        return Err(RejectReason::TooLarge {
            size: ev.content.len(),
            max: MAX_CONTENT_BYTES,
        });
    }
    let size = approx_json_len(ev);
    if size > MAX_EVENT_BYTES {
        return Err(RejectReason::TooLarge {
            size,
            max: MAX_EVENT_BYTES,
        });
    }
    tags::check_caps(ev.tags.as_slice())?;
    let kind =
        L402Kind::from_u16(ev.kind.as_u16()).ok_or(RejectReason::UnknownKind(ev.kind.as_u16()))?;
    if let Some(now) = now {
        if ev.created_at.as_secs() > now.as_secs().saturating_add(super::MAX_FUTURE_SKEW_SECS) {
            return Err(RejectReason::FromTheFuture);
        }
        if ev.is_expired_at(&now) {
            return Err(RejectReason::Expired);
        }
    }
    Ok(kind)
}

/// Step 3: id and signature.
fn check_signature(ev: &Event) -> Result<(), RejectReason> {
    if !ev.verify_id() {
        return Err(RejectReason::BadId);
    }
    // `Event::verify_signature`, with the author's key lifted once per process
    // (`sig::xonly`) rather than at every event.
    let msg = nostr::secp256k1::Message::from_digest(ev.id.to_bytes());
    let verified = super::sig::xonly(&ev.pubkey)
        .is_some_and(|pk| nostr::SECP256K1.verify_schnorr(&ev.sig, &msg, &pk).is_ok());
    if !verified {
        return Err(RejectReason::BadSignature);
    }
    Ok(())
}

/// Step 4: content, schema, bindings, tags.
fn decode<T: EventContent>(ev: &Event) -> Result<T, RejectReason> {
    let value = T::from_content(&ev.content, &ev.pubkey)?;
    tags::check_consistent(&value.tags(), ev.tags.as_slice())?;
    Ok(value)
}

/// Validate an event of kind `T`. With `now`, the `created_at` window and NIP-40 expiration are
/// checked too; without, only what does not depend on time (for re-verifying stored events).
pub fn parse<T: EventContent>(
    ev: &Event,
    now: Option<Timestamp>,
) -> Result<Verified<T>, RejectReason> {
    cheap_checks_of::<T>(ev, now)?;
    check_signature(ev)?;
    let value = decode::<T>(ev)?;
    Ok(Verified::new(ev.clone(), value))
}

/// [`cheap_checks`], and the event is of `T`'s kind.
fn cheap_checks_of<T: EventContent>(
    ev: &Event,
    now: Option<Timestamp>,
) -> Result<(), RejectReason> {
    let kind = cheap_checks(ev, now)?;
    if kind != T::KIND {
        return Err(RejectReason::WrongKind {
            expected: T::KIND.as_u16(),
            got: kind.as_u16(),
        });
    }
    Ok(())
}

/// What [`parse`] returns for an event this process has just signed from `content` (the
/// coordinator's own offer), without checking again what it made itself: the size and tag caps,
/// the kind and `check` (the content's schema rule) run; the signatures, the event's and those
/// inside the content, are not verified and the content is not decoded back.
pub(crate) fn own<T: EventContent>(
    ev: &Event,
    content: T,
    check: impl FnOnce(&T, &PublicKey) -> Result<(), RejectReason>,
) -> Result<Verified<T>, RejectReason> {
    cheap_checks_of::<T>(ev, None)?;
    check(&content, &ev.pubkey)?;
    Ok(Verified::new(ev.clone(), content))
}

/// Parse raw NIP-01 JSON, checking its length before parsing it.
pub fn parse_json(json: &str, now: Option<Timestamp>) -> Result<VerifiedAny, RejectReason> {
    if json.len() > MAX_EVENT_BYTES {
        return Err(RejectReason::TooLarge {
            size: json.len(),
            max: MAX_EVENT_BYTES,
        });
    }
    let ev = Event::from_json(json).map_err(|e| RejectReason::Malformed(e.to_string()))?;
    match now {
        Some(now) => validate_event(&ev, now),
        None => verify_event(&ev),
    }
}

/// Any verified l402 event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)]
pub enum VerifiedAny {
    /// Node/validator announcement.
    NodeAnnouncement(Verified<NodeAnnouncement>),
    /// Run announcement.
    RunAnnouncement(Verified<RunAnnouncement>),
    /// Bounty.
    Bounty(Verified<Bounty>),
    /// Round open.
    RoundOpen(Verified<RoundOpen>),
    /// Submission.
    Submission(Verified<Submission>),
    /// Escrow offer.
    EscrowOffer(Verified<EscrowOffer>),
    /// Escrow lock.
    EscrowLock(Verified<EscrowLock>),
    /// Attestation.
    Attestation(Verified<AttestationEvent>),
    /// Checkpoint.
    Checkpoint(Verified<Checkpoint>),
    /// Bounty commitment.
    BountyCommitment(Verified<BountyCommitment>),
    /// Bounty reveal.
    BountyReveal(Verified<BountyReveal>),
    /// Held-out secrets for one validator.
    BountyHeldout(Verified<BountyHeldout>),
    /// Evidence (already proven).
    Evidence(Verified<Evidence>),
    /// Submission refusal.
    SubmissionRefusal(Verified<SubmissionRefusal>),
}

impl VerifiedAny {
    /// The underlying event.
    pub fn event(&self) -> &Event {
        match self {
            VerifiedAny::NodeAnnouncement(v) => v.event(),
            VerifiedAny::RunAnnouncement(v) => v.event(),
            VerifiedAny::Bounty(v) => v.event(),
            VerifiedAny::RoundOpen(v) => v.event(),
            VerifiedAny::Submission(v) => v.event(),
            VerifiedAny::EscrowOffer(v) => v.event(),
            VerifiedAny::EscrowLock(v) => v.event(),
            VerifiedAny::Attestation(v) => v.event(),
            VerifiedAny::Checkpoint(v) => v.event(),
            VerifiedAny::BountyCommitment(v) => v.event(),
            VerifiedAny::BountyReveal(v) => v.event(),
            VerifiedAny::BountyHeldout(v) => v.event(),
            VerifiedAny::Evidence(v) => v.event(),
            VerifiedAny::SubmissionRefusal(v) => v.event(),
        }
    }

    /// The l402 kind.
    pub fn kind(&self) -> L402Kind {
        L402Kind::from_u16(self.event().kind.as_u16()).unwrap_or(L402Kind::Evidence)
    }
}

fn dispatch(ev: &Event, kind: L402Kind) -> Result<VerifiedAny, RejectReason> {
    Ok(match kind {
        L402Kind::NodeAnnouncement => {
            VerifiedAny::NodeAnnouncement(Verified::new(ev.clone(), decode(ev)?))
        }
        L402Kind::RunAnnouncement => {
            VerifiedAny::RunAnnouncement(Verified::new(ev.clone(), decode(ev)?))
        }
        L402Kind::Bounty => VerifiedAny::Bounty(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::RoundOpen => VerifiedAny::RoundOpen(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::Submission => VerifiedAny::Submission(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::EscrowOffer => VerifiedAny::EscrowOffer(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::EscrowLock => VerifiedAny::EscrowLock(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::Attestation => VerifiedAny::Attestation(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::Checkpoint => VerifiedAny::Checkpoint(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::BountyCommitment => {
            VerifiedAny::BountyCommitment(Verified::new(ev.clone(), decode(ev)?))
        }
        L402Kind::BountyReveal => VerifiedAny::BountyReveal(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::BountyHeldout => {
            VerifiedAny::BountyHeldout(Verified::new(ev.clone(), decode(ev)?))
        }
        L402Kind::Evidence => VerifiedAny::Evidence(Verified::new(ev.clone(), decode(ev)?)),
        L402Kind::SubmissionRefusal => {
            VerifiedAny::SubmissionRefusal(Verified::new(ev.clone(), decode(ev)?))
        }
    })
}

/// The relay write policy's entry point: validate any event of the l402 kind set at time `now`.
///
/// Order: size caps → tag caps → kind (`blocked:` if not ours) → `created_at` window and
/// expiration → id and signature → content schema and bindings. Use
/// [`RejectReason::to_nip01`] for the `OK` message.
pub fn validate_event(ev: &Event, now: Timestamp) -> Result<VerifiedAny, RejectReason> {
    let kind = cheap_checks(ev, Some(now))?;
    check_signature(ev)?;
    dispatch(ev, kind)
}

/// [`validate_event`] without the time checks (for re-verifying stored events).
pub fn verify_event(ev: &Event) -> Result<VerifiedAny, RejectReason> {
    let kind = cheap_checks(ev, None)?;
    check_signature(ev)?;
    dispatch(ev, kind)
}
