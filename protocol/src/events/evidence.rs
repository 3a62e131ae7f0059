//! Evidence events: proofs of misbehaviour anyone can check. A parsed `Verified<Evidence>` has
//! already been checked, so holding one means the accused key provably misbehaved.
//!
//! Spec: specs/L2T-01-events.md#evidence

use nostr::{PublicKey, Tag};
use serde::{Deserialize, Serialize};

use super::parse::{b64_decode, from_json, to_json, EventContent};
use super::{tags, L402Kind, RejectReason};
use crate::escrow::{
    BadShareComplaint, DealerFault, MalformedDealingEvidence, WrongPreimageEvidence,
    MAX_DEALING_BYTES,
};
use crate::quorum::{EquivocationEvidence, WrongScoreEvidence};

/// A proof of misbehaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Evidence {
    /// A validator's share of a dealing is bad.
    BadShare(BadShareComplaint),
    /// A dealing's secret does not open its payment hash.
    WrongPreimage(WrongPreimageEvidence),
    /// A dealer signed a malformed dealing.
    MalformedDealing(MalformedDealingEvidence),
    /// A validator signed two conflicting attestations.
    Equivocation(EquivocationEvidence),
    /// A validator's signed score is contradicted by the publisher's deterministic replay.
    WrongScore(WrongScoreEvidence),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum EvidenceKind {
    BadShare,
    WrongPreimage,
    MalformedDealing,
    Equivocation,
    WrongScore,
}

#[derive(Serialize, Deserialize)]
struct EvidenceJson {
    v: u32,
    kind: EvidenceKind,
    evidence: String,
}

/// What a verified piece of evidence proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proven {
    /// The dealer misbehaved in this way.
    Dealer(DealerFault),
    /// The validator equivocated.
    Equivocation,
    /// The validator signed a score (or verdict) that the publisher's replay of the same
    /// evaluation contradicts; re-running the evaluation confirms it (the attestation names the
    /// checkpoint, the blob and the eval seed).
    WrongScore,
}

impl Evidence {
    /// Who is accused.
    pub fn accused(&self) -> PublicKey {
        match self {
            Evidence::BadShare(c) => c.dealing().body().dealer,
            Evidence::WrongPreimage(w) => w.dealing().body().dealer,
            Evidence::MalformedDealing(m) => m.dealer(),
            Evidence::Equivocation(e) => e.validator(),
            Evidence::WrongScore(w) => w.validator(),
        }
    }

    /// Check the evidence (no secret needed).
    pub fn verify(&self) -> Result<Proven, RejectReason> {
        let not = |e: &dyn std::fmt::Display| RejectReason::EvidenceNotProven(e.to_string());
        match self {
            Evidence::BadShare(c) => c.verify().map(Proven::Dealer).map_err(|e| not(&e)),
            Evidence::WrongPreimage(w) => w.verify().map(Proven::Dealer).map_err(|e| not(&e)),
            Evidence::MalformedDealing(m) => m.verify().map(Proven::Dealer).map_err(|e| not(&e)),
            // Decoding equivocation evidence already checks both signatures and the conflict.
            Evidence::Equivocation(_) => Ok(Proven::Equivocation),
            // Decoding checks the signature and that the replay contradicts it.
            Evidence::WrongScore(_) => Ok(Proven::WrongScore),
        }
    }

    /// The kind name the event content carries: `bad_share`, `wrong_preimage`,
    /// `malformed_dealing`, `equivocation` or `wrong_score`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind() {
            EvidenceKind::BadShare => "bad_share",
            EvidenceKind::WrongPreimage => "wrong_preimage",
            EvidenceKind::MalformedDealing => "malformed_dealing",
            EvidenceKind::Equivocation => "equivocation",
            EvidenceKind::WrongScore => "wrong_score",
        }
    }

    fn kind(&self) -> EvidenceKind {
        match self {
            Evidence::BadShare(_) => EvidenceKind::BadShare,
            Evidence::WrongPreimage(_) => EvidenceKind::WrongPreimage,
            Evidence::MalformedDealing(_) => EvidenceKind::MalformedDealing,
            Evidence::Equivocation(_) => EvidenceKind::Equivocation,
            Evidence::WrongScore(_) => EvidenceKind::WrongScore,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Evidence::BadShare(c) => c.encode(),
            Evidence::WrongPreimage(w) => w.encode(),
            Evidence::MalformedDealing(m) => m.encode(),
            Evidence::Equivocation(e) => e.encode(),
            Evidence::WrongScore(w) => w.encode(),
        }
    }
}

impl EventContent for Evidence {
    const KIND: L402Kind = L402Kind::Evidence;

    fn tags(&self) -> Vec<Tag> {
        let mut t = Vec::new();
        let scope = match self {
            Evidence::BadShare(c) => Some(c.dealing().body()),
            Evidence::WrongPreimage(w) => Some(w.dealing().body()),
            _ => None,
        };
        if let Some(b) = scope {
            t.push(tags::run(&b.run_id));
            t.push(tags::round(b.round));
            t.push(tags::submission(&b.submission));
        }
        let attested = match self {
            Evidence::Equivocation(e) => Some(e.pair().0.body()),
            Evidence::WrongScore(w) => Some(w.attestation().body()),
            _ => None,
        };
        if let Some(b) = attested {
            t.push(tags::run(&b.run_id));
            t.push(tags::round(b.round));
            t.push(tags::submission(&b.submission));
        }
        t.push(tags::p(&self.accused()));
        t.push(tags::t(tags::HASHTAG));
        t
    }

    fn to_content(&self) -> String {
        use base64::Engine;
        to_json(&EvidenceJson {
            v: super::CONTENT_VERSION,
            kind: self.kind(),
            evidence: base64::engine::general_purpose::STANDARD.encode(self.encode()),
        })
    }

    fn from_content(content: &str, _author: &PublicKey) -> Result<Self, RejectReason> {
        let j: EvidenceJson = from_json(content)?;
        let bytes = b64_decode(&j.evidence, MAX_DEALING_BYTES + 1024)?;
        let inner = |e: &dyn std::fmt::Display| RejectReason::Inner(e.to_string());
        let ev = match j.kind {
            EvidenceKind::BadShare => {
                Evidence::BadShare(BadShareComplaint::decode(&bytes).map_err(|e| inner(&e))?)
            }
            EvidenceKind::WrongPreimage => Evidence::WrongPreimage(
                WrongPreimageEvidence::decode(&bytes).map_err(|e| inner(&e))?,
            ),
            EvidenceKind::MalformedDealing => Evidence::MalformedDealing(
                MalformedDealingEvidence::decode(&bytes).map_err(|e| inner(&e))?,
            ),
            EvidenceKind::Equivocation => Evidence::Equivocation(
                EquivocationEvidence::decode(&bytes)
                    .map_err(|e| RejectReason::EvidenceNotProven(e.to_string()))?,
            ),
            EvidenceKind::WrongScore => Evidence::WrongScore(
                WrongScoreEvidence::decode(&bytes)
                    .map_err(|e| RejectReason::EvidenceNotProven(e.to_string()))?,
            ),
        };
        ev.verify()?;
        Ok(ev)
    }
}
