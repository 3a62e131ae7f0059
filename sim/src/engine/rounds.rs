//! Opening rounds and creating each actor's machines: the round open, the committee draw, the
//! work each worker submits, L402 tokens, free-riders' copies and replayers' injections.

use std::collections::BTreeSet;
use std::rc::Rc;

use l402_protocol::escrow::{linear_schedule, Corruption, Preimage, MAX_VALIDATORS};
use l402_protocol::events::{
    BlobHash, HoldbackWindow, RoundOpen, Score, Submission, Verified, VerifiedAny,
};
use l402_protocol::l402;
use l402_protocol::quorum::{round_seed, select_validators, Tolerance};
use l402_protocol::round::{
    Coordinator, CoordinatorConfig, Input, Machine, Peer, PeerWork, Validator,
};
use nostr::PublicKey;
use rand::Rng;

use super::{derive, Item, RoundRecord, Simulation};

/// A stale trainer's true quality relative to an honest update's draw, in thousandths
/// (calibrated on real mode, `sim/scenarios/real-attacks.toml`).
const STALE_QUALITY_PERMILLE: i64 = 700;
use crate::actors::{ActorId, ActorKind};
use crate::scenario::{DealerFault, PoisonKind};
use crate::world::BlobTruth;

/// L402 service name of submissions.
pub(crate) const SUBMIT_SERVICE: &str = "submit";

impl Simulation {
    fn machine_seed(&self, a: ActorId, r: u64) -> [u8; 32] {
        derive(self.seed, "machine", &[&a.to_be_bytes(), &r.to_be_bytes()])
    }

    fn pick_corruption(&mut self, n: usize) -> Corruption {
        let f = &self.sc.faults;
        if f.dealer == DealerFault::None || !self.rng.gen_bool(f.dealer_rounds) {
            return Corruption::None;
        }
        let which = match f.dealer {
            DealerFault::Mixed => self.rng.gen_range(0..3),
            DealerFault::WrongShare => 0,
            DealerFault::GarbageCiphertext => 1,
            _ => 2,
        };
        let i = self.rng.gen_range(0..n.max(1));
        match which {
            0 => Corruption::WrongShare(i),
            1 => Corruption::GarbageCiphertext(i),
            _ => Corruption::WrongPaymentHash,
        }
    }

    /// Open round `r`: draw the committee from the validators not excluded, start the
    /// coordinator (which publishes the round open on its first input).
    pub(super) fn open_round(&mut self, r: u64) {
        let now = self.clock.now;
        if self.rounds.contains_key(&r) {
            return;
        }
        let available: BTreeSet<PublicKey> = self
            .actors
            .iter()
            .filter(|a| a.kind.is_validator() && a.excluded_from.is_none_or(|x| x > r))
            .map(|a| a.pubkey)
            .collect();
        let n = self.sc.validators.committee.min(available.len());
        let k = self.sc.validators.k.min(n);
        if n == 0 {
            self.stats
                .open_errors
                .push(format!("round {r}: no validator left"));
            return;
        }
        let seed = round_seed(&self.run_id, r, &self.prev_checkpoint);
        // Per-submission draws: the round names the whole pool (up to the protocol's cap) and
        // each submission's committee of `n` is drawn from it by the coordinator's VRF.
        let per_sub = self.sc.validators.per_submission;
        let drawn = if per_sub {
            available.len().min(MAX_VALIDATORS)
        } else {
            n
        };
        let committee = match select_validators(&available, &seed, drawn, k) {
            Ok(c) => c,
            Err(e) => {
                self.stats.open_errors.push(format!("round {r}: {e}"));
                return;
            }
        };
        let t = &self.sc.timing;
        let e = &self.sc.escrow;
        let holdback = (t.reeval_secs > 0).then(|| HoldbackWindow {
            reeval_at: now + t.reeval_secs,
            attest_deadline: now + t.holdback_attest_secs,
            claim_deadline: now + t.holdback_claim_secs,
        });
        let open = RoundOpen {
            v: 1,
            run_id: self.run_id.clone(),
            round: r,
            checkpoint: self.last_checkpoint,
            prev_checkpoint: self.prev_checkpoint,
            seed,
            validators: committee.clone(),
            committee: per_sub.then_some(n as u32),
            k: k as u32,
            submit_deadline: now + t.submit_secs,
            attest_deadline: now + t.attest_secs,
            claim_deadline: now + t.claim_secs,
            holdback,
            tranches: linear_schedule(
                e.pool_sats * 1000,
                e.tranches,
                Score(e.target_score),
                e.holdback_ppm,
            ),
            submission_price_msat: e.submission_price_sats * 1000,
            max_submissions: (e.max_submissions > 0).then_some(e.max_submissions),
            tolerance: Tolerance::default(),
        };
        let corruption = self.pick_corruption(n);
        let c = self.coordinator;
        if let Some(Machine::Coordinator(prev)) = self.driver.get(&(c, r.saturating_sub(1))) {
            self.token_uses = prev.token_uses().clone();
        }
        let config = CoordinatorConfig {
            l402_secret: self.l402_secret,
            service: SUBMIT_SERVICE.into(),
            token_uses: self.token_uses.clone(),
            dealing_corruption: corruption,
        };
        let keys = self.actors[c as usize].keys.clone();
        let coord = match Coordinator::new(keys, self.machine_seed(c, r), now, open, config) {
            Ok(m) => m,
            Err(e) => {
                self.stats.open_errors.push(format!("round {r}: {e}"));
                return;
            }
        };
        let committee_ids: Vec<ActorId> = committee
            .iter()
            .filter_map(|pk| self.by_key.get(pk).copied())
            .collect();
        let last_deadline = coord.round_open().last_deadline();
        self.rounds.insert(
            r,
            RoundRecord {
                open: coord.round_open().clone(),
                opened_at: now,
                committee_set: committee_ids.iter().copied().collect(),
                committee: committee_ids,
                k,
                corruption,
                checkpoint: None,
                merged: Vec::new(),
                retired: false,
                audited: false,
                riders_ready: BTreeSet::new(),
                riders_done: BTreeSet::new(),
                model_loss: self.model_loss,
            },
        );
        self.driver.insert((c, r), Machine::Coordinator(coord));
        if r >= self.sc.rounds {
            let t = &self.sc.timing;
            self.end_time =
                Some(last_deadline + (t.cltv_margin_blocks + 2) * t.block_secs + t.tick_secs);
        }
        self.deliver_input(c, r, Input::Tick, false);
    }

    /// The round open reached actor `a`: start its machine for the round, hand it its first
    /// input, and catch up on the round's stored events.
    pub(super) fn on_round_open(&mut self, a: ActorId, open: Verified<RoundOpen>) {
        if let Some(r) = self.start_machine(a, open) {
            self.deliver_input(a, r, Input::Tick, true);
            self.catch_up(a, r);
        }
    }

    /// The round open reached actor `a`: start its machine for the round. The round, if a
    /// machine was started (it then wants its first input, then the round's stored events);
    /// `None` otherwise (not in the round, or an actor that only watches: a free-rider catches
    /// up here, a replayer schedules its turns).
    pub(super) fn start_machine(&mut self, a: ActorId, open: Verified<RoundOpen>) -> Option<u64> {
        let r = open.round;
        let rec = self.rounds.get(&r)?;
        if rec.retired || rec.open.id() != open.id() || self.driver.contains(&(a, r)) {
            return None;
        }
        let kind = self.actors[a as usize].kind;
        let keys = self.actors[a as usize].keys.clone();
        let seed = self.machine_seed(a, r);
        match kind {
            k if k.is_validator() => {
                if !rec.committee_set.contains(&a) {
                    return None;
                }
                match Validator::new(keys, seed, open) {
                    Ok(v) => {
                        self.driver.insert((a, r), Machine::Validator(v));
                    }
                    Err(e) => {
                        self.stats.open_errors.push(format!("validator {a}: {e}"));
                        return None;
                    }
                }
            }
            k if k.trains() || (k == ActorKind::Mixed && !self.mixed_copies(a, r)) => {
                if self.clock.now >= open.submit_deadline {
                    return None;
                }
                let work = self.make_work(a, &open);
                let peer = Peer::new(keys, seed, open, work);
                self.driver.insert((a, r), Machine::Peer(peer));
            }
            k if k.copies_others() => {
                if let Some(rec) = self.rounds.get_mut(&r) {
                    rec.riders_ready.insert(a);
                }
                self.catch_up(a, r);
                return None;
            }
            ActorKind::Replayer => {
                if r >= 2 {
                    let span = self.sc.timing.submit_secs.max(1);
                    for _ in 0..self.sc.peers.replays_per_round {
                        let d = self.rng.gen_range(0..span);
                        self.schedule(
                            d,
                            Item::ReplayTurn {
                                replayer: a,
                                round: r,
                            },
                        );
                    }
                }
                return None;
            }
            _ => return None,
        }
        Some(r)
    }

    /// Buy (or, for a forging Sybil, forge) an L402 submission token for round `open`.
    fn buy_token(&mut self, a: ActorId, open: &RoundOpen, pay: bool) -> String {
        let preimage = Preimage(self.rng.gen());
        let token_id: [u8; 32] = self.rng.gen();
        let price = open.submission_price_msat;
        let paid = pay
            && self
                .ledger
                .transfer(a, self.coordinator, price)
                .map_err(|e| {
                    *self
                        .stats
                        .ledger_errors
                        .entry(format!("token: {e}"))
                        .or_insert(0) += 1;
                })
                .is_ok();
        let secret = if paid {
            *self.stats.tolls_msat.entry(a).or_insert(0) += price;
            self.l402_secret
        } else {
            self.rng.gen() // forged: signed with a key the coordinator does not have
        };
        let mac = l402::mint(
            &secret,
            &l402::MintParams {
                service: SUBMIT_SERVICE,
                run: Some(&open.run_id),
                valid_until: Some(open.last_deadline()),
                max_uses: Some(1),
                pubkey: Some(self.actors[a as usize].pubkey),
                payment_hash: preimage.payment_hash(),
                token_id,
                location: None,
            },
        );
        format!("{}:{}", mac.to_base64(), hex::encode(preimage.0))
    }

    /// A `Mixed` actor's attack in round `r`: the node's rotation
    /// (`l402_node::up::roles::round_behaviour`), so both modes rotate alike.
    pub(super) fn mixed_attack(&self, a: ActorId, r: u64) -> &'static str {
        l402_node::up::roles::round_behaviour("mixed", &self.actors[a as usize].pubkey, r)
    }

    /// Whether a `Mixed` actor builds round `r`'s update from others' (copycat, ALIE).
    pub(super) fn mixed_copies(&self, a: ActorId, r: u64) -> bool {
        matches!(self.mixed_attack(a, r), "copycat-noise" | "alie")
    }

    /// The update a worker trains this round, registered as a blob with its true quality.
    fn make_work(&mut self, a: ActorId, open: &RoundOpen) -> PeerWork {
        let kind = self.actors[a as usize].kind;
        let q0 = self.sc.peers.quality;
        let q = self.rng.gen_range(q0 / 2..=q0 + q0 / 2);
        let (quality, norm_milli) = match kind {
            ActorKind::Poisoner => match self.sc.peers.poison {
                PoisonKind::SignFlip => (-q, 1000),
                PoisonKind::Scaled { lambda } => {
                    // Quadratic loss model: a step of λ times the honest one changes the loss by
                    // q·(2λ − λ²) (λ = 1 is the honest update, λ = 2 is break-even).
                    let delta = q as f64 * (2.0 * lambda - lambda * lambda);
                    (
                        delta.clamp(-1e15, 1e15) as i64,
                        (lambda.abs() * 1000.0).min(1e15) as u64,
                    )
                }
                PoisonKind::Noise { sigma } => (
                    (-(q as f64) * sigma * sigma).clamp(-1e15, 1e15) as i64,
                    ((1.0 + sigma) * 1000.0).min(1e15) as u64,
                ),
            },
            ActorKind::SybilPaid | ActorKind::SybilForged => (-q, 1000),
            // Calibrated on real mode (`real-attacks`): a stale trainer's update scored about
            // 0.7 of the honest mean on the current checkpoint.
            ActorKind::StaleTrainer => (q * STALE_QUALITY_PERMILLE / 1000, 1000),
            // Its sign-flip rounds negate the update; its free-rider rounds submit zeros.
            ActorKind::Mixed if self.mixed_attack(a, open.round) == "sign-flip" => (-q, 1000),
            ActorKind::Mixed => (0, 0),
            _ => (q, 1000),
        };
        let blob = BlobHash(derive(
            self.seed,
            "blob",
            &[&a.to_be_bytes(), &open.round.to_be_bytes()],
        ));
        self.blobs.add(
            blob,
            BlobTruth {
                origin: a,
                quality,
                norm_milli,
            },
        );
        let pay = kind != ActorKind::SybilForged;
        PeerWork {
            blob,
            size: 2_631_224,
            claimed_loss: Score(q),
            token: self.buy_token(a, open, pay),
            refund_invoice: Some(refund_invoice(a, open.round)),
        }
    }

    /// Whether free-rider `a`, seeing submission `s` now, copies it ([`Simulation::maybe_copy`]):
    /// it is ready in a live round, has not copied yet this round, the submission window is
    /// open, and the victim is an honest peer.
    pub(super) fn would_copy(&self, a: ActorId, s: &Verified<Submission>) -> bool {
        let r = s.round;
        let Some(rec) = self.rounds.get(&r) else {
            return false;
        };
        let ready = !rec.retired
            && rec.riders_ready.contains(&a)
            && !rec.riders_done.contains(&a)
            && self.clock.now < rec.open.submit_deadline
            && !self.driver.contains(&(a, r));
        ready
            && self
                .by_key
                .get(&s.author())
                .is_some_and(|v| self.actors[*v as usize].kind == ActorKind::HonestPeer)
    }

    /// A free-rider saw a submission: copy the first honest one of each round it can (A1).
    pub(super) fn maybe_copy(&mut self, a: ActorId, s: Verified<Submission>) {
        let r = s.round;
        if !self.would_copy(a, &s) {
            return;
        }
        let Some(rec) = self.rounds.get(&r) else {
            return;
        };
        let open = rec.open.clone();
        if let Some(rec) = self.rounds.get_mut(&r) {
            rec.riders_done.insert(a);
        }
        // A copycat's and an ALIE colluder's update is a new blob built from the victim's
        // (perturbed, or averaged with the others it saw): its true quality is the victim's,
        // and it was not trained on the presenter's assigned data, which the evaluator's
        // assigned-data check sees (`origin`).
        let blob = match self.actors[a as usize].kind {
            ActorKind::Copycat | ActorKind::Alie | ActorKind::Mixed => {
                let Some(truth) = self.blobs.truth(&s.blob).cloned() else {
                    return;
                };
                let b = BlobHash(derive(
                    self.seed,
                    "derived-blob",
                    &[&a.to_be_bytes(), &r.to_be_bytes()],
                ));
                self.blobs.add_derived(b, truth, a);
                b
            }
            _ => s.blob,
        };
        let work = PeerWork {
            blob,
            size: s.size,
            claimed_loss: s.claimed_loss,
            token: self.buy_token(a, &open, true),
            refund_invoice: Some(refund_invoice(a, r)),
        };
        let keys = self.actors[a as usize].keys.clone();
        let peer = Peer::new(keys, self.machine_seed(a, r), open, work);
        self.driver.insert((a, r), Machine::Peer(peer));
        // (A `Mixed` actor's submissions are counted as its own, `Detection::mixed_submitted`.)
        if self.actors[a as usize].kind != ActorKind::Mixed {
            self.stats.copies_submitted += 1;
        }
        self.deliver_input(a, r, Input::Tick, true);
        self.catch_up(a, r);
    }

    /// A replayer re-injects one old signed event into round `r` (A2): to the relays (which
    /// deduplicate it) and through a stale relay straight into the current machines.
    pub(super) fn replay_turn(&mut self, replayer: ActorId, r: u64) {
        if r < 2 || self.is_down(replayer) {
            return;
        }
        let mut pick = None;
        for _ in 0..8 {
            let old = self.rng.gen_range(1..r);
            let Some(evs) = self.round_events.get(&old) else {
                continue;
            };
            if evs.is_empty() {
                continue;
            }
            let ev = &evs[self.rng.gen_range(0..evs.len())];
            if matches!(
                **ev,
                VerifiedAny::Submission(_)
                    | VerifiedAny::EscrowOffer(_)
                    | VerifiedAny::EscrowLock(_)
                    | VerifiedAny::Attestation(_)
            ) {
                pick = Some(Rc::clone(ev));
                break;
            }
        }
        let Some(ev) = pick else {
            return;
        };
        self.stats.replays_injected += 1;
        let now = self.clock.now;
        match self.relays.publish(ev.event(), now) {
            crate::world::Published::Duplicate => self.stats.relay_dedupes += 1,
            other => {
                *self
                    .stats
                    .relay_rejected
                    .entry(format!("replay: {other:?}").chars().take(60).collect())
                    .or_insert(0) += 1
            }
        }
        let Some(rec) = self.rounds.get(&r) else {
            return;
        };
        let mut targets: Vec<ActorId> = match &*ev {
            VerifiedAny::Submission(_) | VerifiedAny::EscrowLock(_) => {
                let mut v = vec![self.coordinator];
                v.extend(rec.committee.iter().copied());
                v
            }
            VerifiedAny::EscrowOffer(o) => {
                let mut v: Vec<ActorId> = rec.committee.clone();
                v.extend(self.by_key.get(&o.peer).copied());
                v
            }
            VerifiedAny::Attestation(x) => {
                let mut v = vec![self.coordinator];
                v.extend(self.by_key.get(&x.peer).copied());
                v
            }
            _ => Vec::new(),
        };
        targets.retain(|t| self.driver.contains(&(*t, r)));
        for to in targets {
            let d = self.rng.gen_range(0..=self.sc.network.max_delay_secs);
            self.stats.replay_deliveries += 1;
            self.schedule(
                d,
                Item::Replay {
                    to,
                    round: r,
                    ev: Rc::clone(&ev),
                },
            );
        }
    }

    /// A stale relay serves an old event to `to`'s machine of round `r`. The machine first sees
    /// a tick at the same time (so time-driven actions are not blamed on the replay); any
    /// action but `Ignored` in answer to the replay itself counts as an accepted replay.
    pub(super) fn deliver_replay(&mut self, to: ActorId, r: u64, ev: &Rc<VerifiedAny>) {
        if self.is_down(to) || !self.driver.contains(&(to, r)) {
            return;
        }
        self.deliver_input(to, r, Input::Tick, false);
        self.deliver(
            to,
            r,
            Input::Event((**ev).clone()),
            false,
            Some(Rc::clone(ev)),
        );
    }
}

/// The fake refund invoice of actor `a` in round `r` (the fake Lightning pays it to `a`).
fn refund_invoice(a: ActorId, r: u64) -> String {
    format!("lnsim-refund-{a}-{r}")
}
