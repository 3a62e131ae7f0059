//! The simulated participants: one Nostr key and one Lightning account each, and a behaviour.
//! Every actor that takes part in a round drives the protocol's own state machine for its role
//! (`Coordinator`, `Peer`, `Validator`); a behaviour only changes what the actor feeds it (the
//! work it submits, the evaluation results it reports, the events it re-injects).
//!
//! Spec: specs/L2T-12-sim.md#actors

use std::collections::{BTreeMap, BTreeSet};

use nostr::{EventId, Keys, PublicKey};
use serde::Serialize;

use crate::world::ledger::AccountId;

/// An actor's index; also its Lightning account.
pub type ActorId = AccountId;

/// What an actor is and how it behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActorKind {
    /// The run's coordinator and payer (dishonest dealing per the scenario's `faults.dealer`).
    Coordinator,
    /// Trains and submits honest updates.
    HonestPeer,
    /// Resubmits another peer's blob hash under its own key (A1).
    FreeRider,
    /// Resubmits another peer's update plus noise under a new blob hash (A1, perturbed copy).
    Copycat,
    /// ALIE colluder: submits mean − z·σ of the honest updates it saw (not its own training).
    Alie,
    /// Trains honestly on round r − 2's checkpoint (a weaker, still useful update).
    StaleTrainer,
    /// Submits corrupted updates (A3, A4).
    Poisoner,
    /// Re-injects old rounds' signed events (A2).
    Replayer,
    /// One of many cheap identities submitting junk; pays its L402 token (A6).
    SybilPaid,
    /// A Sybil that forges its L402 token (A6).
    SybilForged,
    /// Evaluates honestly.
    HonestValidator,
    /// Attests "accept" with a constant score without evaluating (A7).
    LazyValidator,
    /// Accepts adversaries' work with a top score, rejects honest work (A8, A9).
    ColludingValidator,
    /// Evaluates honestly, then also signs and publishes the opposite verdict for the same
    /// evaluation (H9), as the node's `equivocating` validator does
    /// (`l402_node::runtime::exec::conflicting_attestation`, the same attestation).
    EquivocatingValidator,
    /// Rotates one attack per round through free-rider (a zero update), copycat + noise,
    /// sign-flip and ALIE, as the node's `mixed` peer does
    /// (`l402_node::up::roles::round_behaviour`, the same rotation).
    Mixed,
    /// Trains honestly, but serves its blob with a flipped byte to everyone except its
    /// committee (A12), as the node's `corrupting-provider` does (`l402_node::blobs::corrupting`):
    /// the coordinator's merge fetch catches it and completes from a validator. Its work is
    /// honest, so its payouts are not attacker payout.
    CorruptingProvider,
}

impl ActorKind {
    /// Whether the actor is an adversary (its payouts count as attacker payout).
    pub fn is_adversary(self) -> bool {
        matches!(
            self,
            ActorKind::FreeRider
                | ActorKind::Copycat
                | ActorKind::Alie
                | ActorKind::StaleTrainer
                | ActorKind::Poisoner
                | ActorKind::Replayer
                | ActorKind::SybilPaid
                | ActorKind::SybilForged
                | ActorKind::LazyValidator
                | ActorKind::ColludingValidator
                | ActorKind::EquivocatingValidator
                | ActorKind::Mixed
        )
    }

    /// Whether it submits work (drives a `Peer`).
    pub fn is_worker(self) -> bool {
        matches!(
            self,
            ActorKind::HonestPeer
                | ActorKind::FreeRider
                | ActorKind::Copycat
                | ActorKind::Alie
                | ActorKind::StaleTrainer
                | ActorKind::Poisoner
                | ActorKind::SybilPaid
                | ActorKind::SybilForged
                | ActorKind::Mixed
                | ActorKind::CorruptingProvider
        )
    }

    /// Whether it trains its own update every round (honest or not).
    pub fn trains(self) -> bool {
        matches!(
            self,
            ActorKind::HonestPeer
                | ActorKind::StaleTrainer
                | ActorKind::Poisoner
                | ActorKind::SybilPaid
                | ActorKind::SybilForged
                | ActorKind::CorruptingProvider
        )
    }

    /// Whether it is in the validator pool (drives a `Validator` when drawn).
    pub fn is_validator(self) -> bool {
        matches!(
            self,
            ActorKind::HonestValidator
                | ActorKind::LazyValidator
                | ActorKind::ColludingValidator
                | ActorKind::EquivocatingValidator
        )
    }

    /// Whether it builds its submission from other peers' (seen) submissions instead of
    /// training (a `Mixed` one in its copycat and ALIE rounds): it watches the round's
    /// submissions.
    pub fn copies_others(self) -> bool {
        matches!(
            self,
            ActorKind::FreeRider | ActorKind::Copycat | ActorKind::Alie | ActorKind::Mixed
        )
    }

    /// Whether a validator of this kind may attest "accept" for bad work.
    pub fn accepts_bad_work(self) -> bool {
        matches!(
            self,
            ActorKind::LazyValidator | ActorKind::ColludingValidator
        )
    }

    /// Kebab-case label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            ActorKind::Coordinator => "coordinator",
            ActorKind::HonestPeer => "honest-peer",
            ActorKind::FreeRider => "free-rider",
            ActorKind::Copycat => "copycat",
            ActorKind::Alie => "alie",
            ActorKind::StaleTrainer => "stale",
            ActorKind::Poisoner => "poisoner",
            ActorKind::Replayer => "replayer",
            ActorKind::SybilPaid => "sybil-paid",
            ActorKind::SybilForged => "sybil-forged",
            ActorKind::HonestValidator => "honest-validator",
            ActorKind::LazyValidator => "lazy-validator",
            ActorKind::ColludingValidator => "colluding-validator",
            ActorKind::EquivocatingValidator => "equivocating-validator",
            ActorKind::Mixed => "mixed",
            ActorKind::CorruptingProvider => "corrupting-provider",
        }
    }
}

/// One participant's node: identity, liveness and what it has seen on the relays.
#[derive(Debug)]
pub struct Actor {
    /// Index.
    pub id: ActorId,
    /// Behaviour.
    pub kind: ActorKind,
    /// Nostr identity.
    pub keys: Keys,
    /// Its public key.
    pub pubkey: PublicKey,
    /// Down (crashed) until this time.
    pub down_until: Option<u64>,
    /// `(from, to)` of every downtime.
    pub downtimes: Vec<(u64, u64)>,
    /// Events delivered to it, per round (the client deduplicates by id, as nostr-sdk does).
    /// A retired round's set is dropped: nothing of that round reaches a machine any more.
    pub seen: BTreeMap<u64, BTreeSet<EventId>>,
    /// Validators: round from which the audit excluded it.
    pub excluded_from: Option<u64>,
}

impl Actor {
    /// Whether the actor was down at any time in `[from, to]`.
    pub fn was_down_during(&self, from: u64, to: u64) -> bool {
        self.downtimes.iter().any(|&(a, b)| a <= to && b >= from)
    }

    /// Whether event `id` of round `r` was delivered to it.
    pub fn has_seen(&self, r: u64, id: &EventId) -> bool {
        self.seen.get(&r).is_some_and(|s| s.contains(id))
    }

    /// Record that event `id` of round `r` was delivered to it.
    pub fn mark_seen(&mut self, r: u64, id: EventId) {
        self.seen.entry(r).or_default().insert(id);
    }
}
