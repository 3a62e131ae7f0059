//! `FakeRelays`: simulated Nostr relays for the fast mode (the real-swarm mode runs `relay-kit`).
//!
//! Every relay runs the same write policy as the embedded relay (`events::validate_event`: size
//! caps, kind, time window, id and signature, schema and bindings), deduplicates by event id and
//! stores what it accepts in an append-only log. Live pushes to subscribers can be dropped,
//! delayed or duplicated; a subscriber's periodic re-sync reads the log, so a dropped push only
//! adds latency. A censoring relay neither stores nor serves the kinds it censors.
//!
//! Spec: specs/L2T-12-sim.md#fake-relays

use std::collections::{BTreeSet, HashSet};
use std::rc::Rc;

use l402_protocol::events::{validate_event, L402Kind, RejectReason, UnixTime, VerifiedAny};
use nostr::{Event, EventId, Timestamp};
use rand::Rng;

/// One simulated relay.
#[derive(Debug, Default)]
pub struct FakeRelay {
    censor: BTreeSet<L402Kind>,
    /// Every stored id. Only asked for membership, never iterated, so a hash set (its order
    /// reaches no output or hash); a run stores hundreds of thousands.
    ids: HashSet<EventId>,
    log: Vec<Rc<VerifiedAny>>,
}

impl FakeRelay {
    /// Whether this relay censors `kind`.
    pub fn censors(&self, kind: L402Kind) -> bool {
        self.censor.contains(&kind)
    }
    /// Whether this relay stores event `id`.
    pub fn has(&self, id: &EventId) -> bool {
        self.ids.contains(id)
    }
    /// The stored events, in arrival order.
    pub fn log(&self) -> &[Rc<VerifiedAny>] {
        &self.log
    }
    /// Whether this relay censors anything.
    pub fn is_censoring(&self) -> bool {
        !self.censor.is_empty()
    }
}

/// What happened to a published event.
#[derive(Debug)]
pub enum Published {
    /// Stored by these relays (at least one).
    New {
        /// The verified event, shared by every store and delivery.
        event: Rc<VerifiedAny>,
        /// Indexes of the relays that stored it.
        stored_by: Vec<usize>,
    },
    /// Every relay that would store it already has it (relays deduplicate by id).
    Duplicate,
    /// Valid, but every relay censors its kind.
    Censored,
    /// The write policy rejected it.
    Rejected(RejectReason),
}

/// How a live push reaches one subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Push {
    /// Delay of the first copy (the fastest relay that did not drop it).
    pub delay: u64,
    /// A second copy arrives too.
    pub duplicate: bool,
}

/// The relay network.
#[derive(Debug)]
pub struct FakeRelays {
    relays: Vec<FakeRelay>,
    drop: f64,
    duplicate: f64,
    max_delay: u64,
}

impl FakeRelays {
    /// `count` relays; the first `censoring` censor `censor_kinds`.
    pub fn new(
        count: usize,
        censoring: usize,
        censor_kinds: &BTreeSet<L402Kind>,
        drop: f64,
        duplicate: f64,
        max_delay: u64,
    ) -> Self {
        let relays = (0..count)
            .map(|i| FakeRelay {
                censor: if i < censoring {
                    censor_kinds.clone()
                } else {
                    BTreeSet::new()
                },
                ..FakeRelay::default()
            })
            .collect();
        Self {
            relays,
            drop,
            duplicate,
            max_delay,
        }
    }

    /// The relays.
    pub fn relays(&self) -> &[FakeRelay] {
        &self.relays
    }

    /// Whether any relay stores `id`.
    pub fn has(&self, id: &EventId) -> bool {
        self.relays.iter().any(|r| r.has(id))
    }

    /// Publish `ev` to every relay at time `now`. The write policy runs once (it is the same
    /// function on every relay).
    pub fn publish(&mut self, ev: &Event, now: UnixTime) -> Published {
        self.publish_checked(ev, now, None)
    }

    /// [`FakeRelays::publish`] with the write policy's verdict (`validate_event(ev, now)`)
    /// already computed, if `checked` is given (the engine runs it on its thread pool).
    pub fn publish_checked(
        &mut self,
        ev: &Event,
        now: UnixTime,
        checked: Option<Result<VerifiedAny, RejectReason>>,
    ) -> Published {
        let wanted: Vec<usize> = (0..self.relays.len())
            .filter(|&i| !self.relays[i].has(&ev.id))
            .collect();
        if wanted.is_empty() {
            return Published::Duplicate;
        }
        let checked = checked.unwrap_or_else(|| validate_event(ev, Timestamp::from_secs(now)));
        let verified = match checked {
            Ok(v) => v,
            Err(e) => return Published::Rejected(e),
        };
        let kind = verified.kind();
        let event = Rc::new(verified);
        let mut stored_by = Vec::new();
        for i in wanted {
            let r = &mut self.relays[i];
            if r.censors(kind) {
                continue;
            }
            r.ids.insert(ev.id);
            r.log.push(Rc::clone(&event));
            stored_by.push(i);
        }
        if stored_by.is_empty() {
            if self.relays.iter().any(|r| r.has(&ev.id)) {
                return Published::Duplicate;
            }
            return Published::Censored;
        }
        Published::New { event, stored_by }
    }

    /// Draw the live push of an event stored by `stored_by` to one subscriber: `None` if every
    /// relay dropped it (the subscriber's re-sync will fetch it).
    pub fn push<R: Rng>(&self, stored_by: &[usize], rng: &mut R) -> Option<Push> {
        let mut best: Option<u64> = None;
        for _ in stored_by {
            if self.drop > 0.0 && rng.gen_bool(self.drop) {
                continue;
            }
            let d = rng.gen_range(0..=self.max_delay);
            best = Some(best.map_or(d, |b| b.min(d)));
        }
        let duplicate = self.duplicate > 0.0 && rng.gen_bool(self.duplicate);
        best.map(|delay| Push { delay, duplicate })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use l402_protocol::escrow::{
        deal_with, Corruption, DealingParams, TrancheSpec, WrongPreimageEvidence,
    };
    use l402_protocol::events::{sign_event, Evidence, RunId};
    use l402_protocol::events::{Score, SubmissionId};
    use nostr::{Keys, SecretKey};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn evidence_event(now: u64) -> Event {
        let dealer = Keys::new(SecretKey::from_slice(&[3; 32]).unwrap());
        let v = Keys::new(SecretKey::from_slice(&[4; 32]).unwrap());
        let run = RunId::new("r").unwrap();
        let validators = [v.public_key()];
        let p = DealingParams {
            run_id: &run,
            round: 1,
            submission: SubmissionId([1; 32]),
            peer: v.public_key(),
            tranche: 0,
            spec: TrancheSpec {
                amount_msat: 1000,
                threshold: Score(0),
                holdback: false,
            },
            claim_deadline: now + 100,
            validators: &validators,
            k: 1,
        };
        let (d, _) = deal_with(&dealer, &p, &[5; 32], Corruption::WrongPaymentHash).unwrap();
        // k = 1: the validator's share is the secret, which does not open the wrong hash.
        let share = d.open_share(&v).unwrap();
        let err = d.reconstruct(&[share]).unwrap_err();
        let l402_protocol::escrow::ReconstructError::HashMismatch { secret } = err else {
            panic!("expected a hash mismatch")
        };
        let e = Evidence::WrongPreimage(WrongPreimageEvidence::new(d, secret));
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        sign_event(&e, &v, Timestamp::from_secs(now), &mut rng).unwrap()
    }

    #[test]
    fn relays_validate_dedupe_and_censor() {
        let censored: BTreeSet<L402Kind> = [L402Kind::Evidence].into();
        let mut r = FakeRelays::new(3, 1, &censored, 0.0, 0.0, 0);
        let ev = evidence_event(1_000_000);
        match r.publish(&ev, 1_000_000) {
            Published::New { stored_by, .. } => assert_eq!(stored_by, vec![1, 2]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.publish(&ev, 1_000_000), Published::Duplicate));
        assert!(!r.relays()[0].has(&ev.id));
        // A tampered event fails the write policy.
        let mut bad = ev.clone();
        bad.content.push(' ');
        assert!(matches!(r.publish(&bad, 1_000_000), Published::Rejected(_)));
        // Everything censoring: censored.
        let mut all = FakeRelays::new(1, 1, &censored, 0.0, 0.0, 0);
        assert!(matches!(all.publish(&ev, 1_000_000), Published::Censored));
    }

    #[test]
    fn pushes_drop_only_when_every_relay_drops() {
        let r = FakeRelays::new(3, 0, &BTreeSet::new(), 1.0, 0.0, 5);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        assert_eq!(r.push(&[0, 1, 2], &mut rng), None);
        let r = FakeRelays::new(3, 0, &BTreeSet::new(), 0.0, 1.0, 5);
        let p = r.push(&[0, 1, 2], &mut rng).unwrap();
        assert!(p.delay <= 5 && p.duplicate);
    }
}
