//! The round state machines driven by an in-memory world (a FAKE relay, a FAKE Lightning ledger
//! and FAKE evaluations — this is the simulator's fast mode in miniature), and the property test
//! of the issue: for random interleavings of events, timeouts and restarts, every escrow ends
//! claimed or refunded, never stuck, and nothing is claimed without k passing attestations.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use l402_protocol::escrow::Corruption;
use l402_protocol::events::{
    self, parse, sign_event, BlobHash, EscrowOffer, PaymentHash, RoundOpen, RunId, Score,
    SubmissionId, Verified,
};
use l402_protocol::l402;
use l402_protocol::quorum::{round_seed, select_validators, Phase, RejectCode, Tolerance, Verdict};
use l402_protocol::round::{
    Action, Coordinator, CoordinatorConfig, Input, Peer, PeerWork, Validator,
};
use nostr::{Event, JsonUtil, Keys, PublicKey, SecretKey, Timestamp};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const T0: u64 = 1_000_000;
const END: u64 = T0 + 700;
const L402_SECRET: [u8; 32] = [0x4c; 32];

fn keys(tag: u8, i: u8) -> Keys {
    let mut b = [tag; 32];
    b[31] = i.wrapping_add(1);
    Keys::new(SecretKey::from_slice(&b).unwrap())
}

/// How a validator behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Honest,
    /// Never evaluates (and so never attests).
    Lazy,
    /// Always rejects.
    Harsh,
    /// Accepts everything with a huge score.
    Generous,
    /// Honest on the first evaluation; on the holdback's fresh seeds the gain is gone (an
    /// overfit submission, as a bounty's re-evaluation on a fresh held-out set finds it).
    Overfit,
    /// Evaluates honestly, then also signs and publishes the opposite verdict for the same
    /// evaluation (no shares, no fee invoice): equivocation.
    Equivocating,
}

/// Crash-restarts one case may take before it counts as a runaway.
const MAX_CRASHES: usize = 5_000;

#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    behaviours: Vec<Behaviour>,
    k: usize,
    peers: usize,
    corruption: Corruption,
    drop: f64,
    dup: f64,
    crash: f64,
    max_delay: u64,
    /// Committee size per submission (`None`: the whole pool).
    committee: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    C,
    P(usize),
    V(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HtlcState {
    Invoiced,
    Held,
    Claimed,
    FailedBack,
    Expired,
}

#[derive(Clone, Debug)]
struct Htlc {
    payee: usize,
    claim_deadline: u64,
    state: HtlcState,
    held_amount: u64,
}

#[allow(clippy::large_enum_variant)]
enum Role {
    C(Coordinator),
    P(Peer),
    V(Validator),
}

impl Role {
    fn handle(&mut self, now: u64, i: Input) -> Vec<Action> {
        match self {
            Role::C(r) => r.handle(now, i),
            Role::P(r) => r.handle(now, i),
            Role::V(r) => r.handle(now, i),
        }
    }
    fn bytes(&self) -> Vec<u8> {
        match self {
            Role::C(r) => r.to_bytes(),
            Role::P(r) => r.to_bytes(),
            Role::V(r) => r.to_bytes(),
        }
    }
    fn restart(&mut self, keys: &Keys, bytes: &[u8], now: u64) -> Vec<Action> {
        match self {
            Role::C(_) => {
                let mut r = Coordinator::from_bytes(keys.clone(), bytes).unwrap();
                let a = r.resume(now);
                *self = Role::C(r);
                a
            }
            Role::P(_) => {
                let mut r = Peer::from_bytes(keys.clone(), bytes).unwrap();
                let a = r.resume(now);
                *self = Role::P(r);
                a
            }
            Role::V(_) => {
                let mut r = Validator::from_bytes(keys.clone(), bytes).unwrap();
                let a = r.resume(now);
                *self = Role::V(r);
                a
            }
        }
    }
}

struct World {
    sc: Scenario,
    now: u64,
    rng: ChaCha20Rng,
    nodes: BTreeMap<Node, (Keys, Role)>,
    committee: Vec<PublicKey>,
    open: Verified<RoundOpen>,
    relay: Vec<Event>,
    relay_ids: BTreeSet<nostr::EventId>,
    /// Each equivocated attestation's conflicting twin, by the original's id.
    conflicts: BTreeMap<nostr::EventId, Event>,
    queue: Vec<(u64, u64, Node, Input)>,
    seq: u64,
    ledger: BTreeMap<PaymentHash, Htlc>,
    quality: BTreeMap<SubmissionId, i64>,
    bad_claims: usize,
    ignored: Vec<String>,
    crashes: usize,
    /// Validator fees the coordinator paid: (validator, fake invoice naming its index).
    fees: Vec<(PublicKey, String)>,
    /// Merged-list blobs the coordinator stored, by BLAKE3 hash.
    lists: BTreeMap<BlobHash, Vec<u8>>,
    /// Replays the coordinator asked for.
    audits: usize,
}

impl World {
    fn new(sc: Scenario) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(sc.seed);
        let c = keys(1, 0);
        let run = RunId::new("prop-run").unwrap();
        let prev = BlobHash([7; 32]);
        let seed = round_seed(&run, 9, &prev);
        // Opted-in validators: the behaviours' keys plus two that are never drawn... or are.
        let n = sc.behaviours.len();
        let candidates: Vec<Keys> = (0..n as u8 + 2).map(|i| keys(3, i)).collect();
        let opted_in: BTreeSet<PublicKey> = candidates.iter().map(|k| k.public_key()).collect();
        let committee = select_validators(&opted_in, &seed, n, sc.k).unwrap();
        let tranches = l402_protocol::escrow::linear_schedule(40_000, 3, Score(30_000), 250_000);
        let open = RoundOpen {
            v: 1,
            run_id: run.clone(),
            round: 9,
            checkpoint: BlobHash([8; 32]),
            prev_checkpoint: prev,
            seed,
            validators: committee.clone(),
            committee: sc.committee.map(|n| n as u32),
            k: sc.k as u32,
            submit_deadline: T0 + 100,
            attest_deadline: T0 + 200,
            claim_deadline: T0 + 300,
            holdback: Some(events::HoldbackWindow {
                reeval_at: T0 + 250,
                attest_deadline: T0 + 400,
                claim_deadline: T0 + 500,
            }),
            tranches,
            submission_price_msat: 1000,
            max_submissions: None,
            tolerance: Tolerance::default(),
        };
        let coord = Coordinator::new(
            c.clone(),
            [1; 32],
            T0,
            open,
            CoordinatorConfig {
                l402_secret: L402_SECRET,
                service: "submit".into(),
                token_uses: BTreeMap::new(),
                dealing_corruption: sc.corruption,
            },
        )
        .unwrap();
        let open = coord.round_open().clone();
        let mut nodes = BTreeMap::new();
        nodes.insert(Node::C, (c, Role::C(coord)));
        for p in 0..sc.peers {
            let k = keys(2, p as u8);
            let preimage = l402_protocol::escrow::Preimage(rng.gen());
            let mac = l402::mint(
                &L402_SECRET,
                &l402::MintParams {
                    service: "submit",
                    run: Some(&run),
                    valid_until: Some(END),
                    max_uses: Some(1),
                    pubkey: Some(k.public_key()),
                    payment_hash: preimage.payment_hash(),
                    token_id: rng.gen(),
                    location: None,
                },
            );
            let work = PeerWork {
                blob: BlobHash(rng.gen()),
                size: 1000,
                claimed_loss: Score(0),
                token: format!("{}:{}", mac.to_base64(), hex::encode(preimage.0)),
                refund_invoice: None,
            };
            let peer = Peer::new(k.clone(), rng.gen(), open.clone(), work);
            nodes.insert(Node::P(p), (k, Role::P(peer)));
        }
        for (i, pk) in committee.iter().enumerate() {
            let k = candidates
                .iter()
                .find(|c| &c.public_key() == pk)
                .unwrap()
                .clone();
            let v = Validator::new(k.clone(), rng.gen(), open.clone()).unwrap();
            nodes.insert(Node::V(i), (k, Role::V(v)));
        }
        Self {
            sc,
            now: T0,
            rng,
            nodes,
            committee,
            open,
            relay: Vec::new(),
            relay_ids: BTreeSet::new(),
            conflicts: BTreeMap::new(),
            queue: Vec::new(),
            seq: 0,
            ledger: BTreeMap::new(),
            quality: BTreeMap::new(),
            bad_claims: 0,
            ignored: Vec::new(),
            fees: Vec::new(),
            lists: BTreeMap::new(),
            audits: 0,
            crashes: 0,
        }
    }

    fn schedule(&mut self, delay: u64, to: Node, input: Input) {
        self.seq += 1;
        self.queue.push((self.now + delay, self.seq, to, input));
    }

    fn behaviour(&self, v: usize) -> Behaviour {
        self.sc.behaviours[v]
    }

    fn publish(&mut self, from: Node, ev: Event) {
        if !self.relay_ids.insert(ev.id) {
            return; // relays deduplicate
        }
        // Every receiver runs the real validation pipeline on the JSON a relay would serve.
        let verified = events::parse_json(&ev.as_json(), Some(Timestamp::from_secs(self.now)))
            .expect("honest roles publish valid events");
        self.relay.push(ev);
        let targets: Vec<Node> = self.nodes.keys().copied().filter(|n| *n != from).collect();
        for to in targets {
            if self.rng.gen_bool(self.sc.drop) {
                continue;
            }
            let copies = if self.rng.gen_bool(self.sc.dup) { 2 } else { 1 };
            for _ in 0..copies {
                let d = self.rng.gen_range(0..=self.sc.max_delay);
                self.schedule(d, to, Input::Event(verified.clone()));
            }
        }
    }

    fn execute(&mut self, from: Node, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Publish(ev) => {
                    let conflicting = match from {
                        Node::V(v) if self.behaviour(v) == Behaviour::Equivocating => {
                            self.conflicting(v, &ev)
                        }
                        _ => None,
                    };
                    self.publish(from, ev);
                    if let Some(c) = conflicting {
                        self.publish(from, c);
                    }
                }
                Action::CreateHoldInvoice {
                    payment_hash,
                    amount_msat,
                    claim_deadline,
                    ..
                } => {
                    let Node::P(p) = from else {
                        panic!("only peers invoice")
                    };
                    self.ledger.entry(payment_hash).or_insert(Htlc {
                        payee: p,
                        claim_deadline,
                        state: HtlcState::Invoiced,
                        held_amount: 0,
                    });
                    let bolt11 = format!("fake:{}:{}", payment_hash.to_hex(), amount_msat);
                    let d = self.rng.gen_range(0..=5);
                    self.schedule(
                        d,
                        from,
                        Input::InvoiceCreated {
                            payment_hash,
                            bolt11,
                        },
                    );
                }
                Action::PayHoldInvoices { invoices, .. } => {
                    assert_eq!(from, Node::C);
                    for (inv, amount) in invoices {
                        // The shell checks the BOLT11 names the hash and amount it was told.
                        assert_eq!(
                            inv.bolt11,
                            format!("fake:{}:{}", inv.payment_hash.to_hex(), amount)
                        );
                        let Some(h) = self.ledger.get_mut(&inv.payment_hash) else {
                            continue;
                        };
                        if h.state != HtlcState::Invoiced {
                            continue; // paying twice is a no-op (payment id = hash)
                        }
                        h.state = HtlcState::Held;
                        h.held_amount = amount;
                        let payee = h.payee;
                        let d = self.rng.gen_range(0..=5);
                        self.schedule(
                            d,
                            Node::P(payee),
                            Input::HtlcHeld {
                                payment_hash: inv.payment_hash,
                                amount_msat: amount,
                            },
                        );
                    }
                }
                Action::Claim {
                    payment_hash,
                    preimage,
                    ..
                } => {
                    let now = self.now;
                    let h = self.ledger.get_mut(&payment_hash).unwrap();
                    match h.state {
                        HtlcState::Held
                            if preimage.payment_hash() == payment_hash
                                && now < h.claim_deadline =>
                        {
                            h.state = HtlcState::Claimed;
                            self.schedule(0, from, Input::HtlcClaimed { payment_hash });
                        }
                        HtlcState::Claimed => {
                            self.schedule(0, from, Input::HtlcClaimed { payment_hash })
                        }
                        _ => self.bad_claims += 1,
                    }
                }
                Action::FailBack { payment_hash } => {
                    if let Some(h) = self.ledger.get_mut(&payment_hash) {
                        if matches!(h.state, HtlcState::Held | HtlcState::Invoiced) {
                            h.state = HtlcState::FailedBack;
                        }
                        if h.state != HtlcState::Claimed {
                            self.schedule(0, from, Input::HtlcFailed { payment_hash });
                        }
                    }
                }
                Action::Evaluate {
                    submission, phase, ..
                } => {
                    let Node::V(v) = from else {
                        panic!("only validators evaluate")
                    };
                    let q = *self
                        .quality
                        .entry(submission)
                        .or_insert_with(|| self_quality(submission));
                    let noise = self.rng.gen_range(-40..=40);
                    let (score, verdict) = match self.behaviour(v) {
                        Behaviour::Lazy => continue,
                        Behaviour::Overfit if phase == Phase::Holdback => {
                            (Score(-1), Verdict::Reject(RejectCode::LossIncreased))
                        }
                        Behaviour::Honest | Behaviour::Overfit | Behaviour::Equivocating
                            if q < 0 =>
                        {
                            (Score(q + noise), Verdict::Reject(RejectCode::LossIncreased))
                        }
                        Behaviour::Honest | Behaviour::Overfit | Behaviour::Equivocating => {
                            (Score(q + noise), Verdict::Accept)
                        }
                        Behaviour::Harsh => (Score(-1), Verdict::Reject(RejectCode::Copied)),
                        Behaviour::Generous => (Score(1_000_000), Verdict::Accept),
                    };
                    let d = self.rng.gen_range(1..=self.sc.max_delay.max(1));
                    self.schedule(
                        d,
                        from,
                        Input::EvalDone {
                            submission,
                            phase,
                            score,
                            verdict,
                            fee_invoice: Some(format!("fake-fee/{v}/{submission}/{phase:?}")),
                        },
                    );
                }
                Action::Audit { submission, .. } => {
                    assert_eq!(from, Node::C, "only the coordinator audits");
                    // The noise-free replay of the same evaluation.
                    let q = *self
                        .quality
                        .entry(submission)
                        .or_insert_with(|| self_quality(submission));
                    let verdict = if q < 0 {
                        Verdict::Reject(RejectCode::LossIncreased)
                    } else {
                        Verdict::Accept
                    };
                    let d = self.rng.gen_range(1..=self.sc.max_delay.max(1));
                    self.audits += 1;
                    self.schedule(
                        d,
                        from,
                        Input::Audited {
                            submission,
                            score: Score(q),
                            verdict,
                        },
                    );
                }
                Action::Aggregate { list } => {
                    let mut h = blake3::Hasher::new();
                    for m in &list.merged {
                        h.update(&m.submission.0);
                    }
                    self.lists.insert(list.hash(), list.to_bytes());
                    let checkpoint = BlobHash(*h.finalize().as_bytes());
                    self.schedule(1, from, Input::CheckpointReady { checkpoint });
                }
                Action::Ignored { reason, .. } => self.ignored.push(reason),
                Action::PayValidatorFee { validator, bolt11 } => {
                    self.fees.push((validator, bolt11))
                }
                Action::ReleaseBlob { .. } => {}
                other => panic!("unexpected action {other:?}"),
            }
        }
    }

    /// Deliver one input; with probability `crash` the node crashes right after persisting its
    /// state (its actions are lost), restarts from the bytes and resumes.
    fn deliver(&mut self, to: Node, input: Input) {
        let now = self.now;
        let (keys, role) = self.nodes.get_mut(&to).unwrap();
        let keys = keys.clone();
        let mut actions = role.handle(now, input);
        let bytes = role.bytes();
        if self.rng.gen_bool(self.sc.crash) {
            self.crashes += 1;
            // A case normally crashes a few hundred times; a runaway (restarts feeding restarts)
            // fails here rather than running for hours.
            assert!(
                self.crashes < MAX_CRASHES,
                "runaway restarts: {:?}",
                self.sc
            );
            let (_, role) = self.nodes.get_mut(&to).unwrap();
            actions = role.restart(&keys, &bytes, now);
        }
        self.execute(to, actions);
    }

    fn run(&mut self) {
        while self.now <= END {
            // Expire HTLCs nobody resolved in time (must never happen).
            for h in self.ledger.values_mut() {
                if h.state == HtlcState::Held && self.now >= h.claim_deadline {
                    h.state = HtlcState::Expired;
                }
            }
            loop {
                let now = self.now;
                let mut due: Vec<usize> = (0..self.queue.len())
                    .filter(|&i| self.queue[i].0 <= now)
                    .collect();
                if due.is_empty() {
                    break;
                }
                // Random interleaving of everything due.
                let pick = due.swap_remove(self.rng.gen_range(0..due.len()));
                let (_, _, to, input) = self.queue.swap_remove(pick);
                self.deliver(to, input);
            }
            let nodes: Vec<Node> = self.nodes.keys().copied().collect();
            for n in nodes {
                self.deliver(n, Input::Tick);
            }
            self.now += self.rng.gen_range(1..=15);
        }
    }

    /// The equivocator's opposite attestation to `ev`, signed once per original: a restart
    /// republishes the original (which the relay deduplicates) and must not mint a fresh
    /// conflicting event each time (with several equivocators and frequent crashes those fresh
    /// events fed each other's restarts without bound).
    fn conflicting(&mut self, v: usize, ev: &Event) -> Option<Event> {
        if let Some(c) = self.conflicts.get(&ev.id) {
            return Some(c.clone());
        }
        let c = self.sign_conflicting(v, ev)?;
        self.conflicts.insert(ev.id, c.clone());
        Some(c)
    }

    /// The attestation an equivocating validator `v` signs next to `ev` (if `ev` is one of its
    /// attestations): the same evaluation with the opposite verdict.
    fn sign_conflicting(&mut self, v: usize, ev: &Event) -> Option<Event> {
        let a = parse::<events::AttestationEvent>(ev, None).ok()?;
        let mut body = a.attestation.body().clone();
        body.verdict = if body.verdict.is_accept() {
            Verdict::Reject(RejectCode::LossIncreased)
        } else {
            Verdict::Accept
        };
        let keys = self.nodes[&Node::V(v)].0.clone();
        let content = events::AttestationEvent {
            attestation: body.sign(&keys, &self.rng.gen()).ok()?,
            peer: a.peer,
            shares: Vec::new(),
            fee_invoice: None,
        };
        sign_event(
            &content,
            &keys,
            Timestamp::from_secs(self.now),
            &mut self.rng,
        )
        .ok()
    }

    /// Attestation events on the relay, decoded.
    fn attestations(&self) -> Vec<Verified<events::AttestationEvent>> {
        self.relay
            .iter()
            .filter_map(|e| parse::<events::AttestationEvent>(e, None).ok())
            .collect()
    }
}

/// The "true" quality of a submission (deterministic per id): some are bad.
fn self_quality(s: SubmissionId) -> i64 {
    i64::from(s.0[0]) * 200 - 6_000
}

/// Check the invariants; returns the number of claimed HTLCs.
fn check(w: &World) -> usize {
    let k = w.sc.k;
    // 1. Nothing stuck, nothing expired: every held HTLC was claimed or failed back.
    for (h, htlc) in &w.ledger {
        assert!(
            matches!(
                htlc.state,
                HtlcState::Claimed | HtlcState::FailedBack | HtlcState::Invoiced
            ),
            "HTLC {h:?} ended {:?}",
            htlc.state
        );
    }
    // 2. No claim attempt was refused (no wrong preimage, no late claim).
    assert_eq!(w.bad_claims, 0);
    // 3. No claim without k passing attestations (with a released share) for that tranche.
    let atts = w.attestations();
    let offers: Vec<Verified<EscrowOffer>> = w
        .relay
        .iter()
        .filter_map(|e| parse::<EscrowOffer>(e, None).ok())
        .collect();
    let mut claimed = 0;
    for o in &offers {
        for d in &o.dealings {
            let b = d.body();
            let Some(h) = w.ledger.get(&b.payment_hash) else {
                continue;
            };
            let phase = if b.spec.holdback {
                Phase::Holdback
            } else {
                Phase::Initial
            };
            let passing: BTreeSet<PublicKey> = atts
                .iter()
                .filter(|a| {
                    let ab = a.attestation.body();
                    ab.submission == o.submission
                        && ab.phase == phase
                        && ab.verdict.is_accept()
                        && ab.score >= b.spec.threshold
                        && b.validators.contains(&a.author())
                        && a.created_at().as_secs()
                            <= match phase {
                                Phase::Initial => w.open.attest_deadline,
                                Phase::Holdback => w.open.holdback.unwrap().attest_deadline,
                            }
                        && a.shares.iter().any(|s| s.tranche == b.tranche)
                })
                .map(|a| a.author())
                .collect();
            if h.state == HtlcState::Claimed {
                claimed += 1;
                assert!(
                    passing.len() >= k,
                    "claimed with {} < k = {k} passing attestations",
                    passing.len()
                );
                assert_ne!(w.sc.corruption, Corruption::WrongPaymentHash);
            } else if w.sc.drop == 0.0
                && w.sc.corruption != Corruption::WrongPaymentHash
                && h.state != HtlcState::Invoiced
            {
                // Liveness: with no lost messages an honest worker with a quorum is paid.
                assert!(
                    passing.len() < k,
                    "tranche {} had {} ≥ k passing attestations but ended {:?}",
                    b.tranche,
                    passing.len(),
                    h.state
                );
            }
        }
    }
    // 4. Money conservation: held = claimed + failed back.
    let held: u64 = w.ledger.values().map(|h| h.held_amount).sum();
    let settled: u64 = w
        .ledger
        .values()
        .filter(|h| matches!(h.state, HtlcState::Claimed | HtlcState::FailedBack))
        .map(|h| h.held_amount)
        .sum();
    assert_eq!(held, settled);
    claimed
}

fn scenario(behaviours: Vec<Behaviour>, k: usize) -> Scenario {
    Scenario {
        seed: 1,
        behaviours,
        k,
        peers: 2,
        corruption: Corruption::None,
        drop: 0.0,
        dup: 0.0,
        crash: 0.0,
        max_delay: 15,
        committee: None,
    }
}

/// The holdback tranches' end states, and how many regular tranches were claimed.
fn holdback_outcome(w: &World) -> (Vec<HtlcState>, usize) {
    let mut hold = Vec::new();
    let mut regular = 0;
    for e in &w.relay {
        let Ok(o) = parse::<EscrowOffer>(e, None) else {
            continue;
        };
        for d in &o.dealings {
            let b = d.body();
            let Some(h) = w.ledger.get(&b.payment_hash) else {
                continue;
            };
            if b.spec.holdback {
                hold.push(h.state.clone());
            } else if h.state == HtlcState::Claimed {
                regular += 1;
            }
        }
    }
    (hold, regular)
}

#[test]
fn holdback_is_paid_only_when_the_reevaluation_passes() {
    // Honest validators: the re-evaluation confirms the gain, every earned holdback is claimed.
    let mut w = World::new(scenario(vec![Behaviour::Honest; 5], 3));
    w.run();
    check(&w);
    let (hold, regular) = holdback_outcome(&w);
    assert!(
        regular > 0 && hold.contains(&HtlcState::Claimed),
        "{hold:?}"
    );
    // The gain is gone on the fresh seeds: the regular tranches are still claimed, and every
    // holdback HTLC goes back to the payer.
    let mut w = World::new(scenario(vec![Behaviour::Overfit; 5], 3));
    w.run();
    check(&w);
    let (hold, regular) = holdback_outcome(&w);
    assert!(regular > 0, "the first evaluation still pays");
    assert!(!hold.is_empty());
    assert!(
        hold.iter()
            .all(|s| matches!(s, HtlcState::FailedBack | HtlcState::Expired)),
        "no holdback is claimed after a failed re-evaluation: {hold:?}"
    );
}

#[test]
fn honest_round_pays_every_earned_tranche() {
    let mut w = World::new(scenario(vec![Behaviour::Honest; 5], 3));
    w.run();
    let claimed = check(&w);
    assert!(claimed > 0, "an honest round pays something");
    // The coordinator published a checkpoint merging exactly the accepted submissions.
    let cps: Vec<_> = w
        .relay
        .iter()
        .filter_map(|e| parse::<events::Checkpoint>(e, None).ok())
        .collect();
    assert_eq!(cps.len(), 1);
    let accepted: Vec<SubmissionId> = w
        .quality
        .iter()
        .filter(|(_, q)| **q >= 0)
        .map(|(s, _)| *s)
        .collect();
    // The event names the list by hash; the blob the coordinator stored decodes against it.
    let blob = &w.lists[&cps[0].merged_list];
    let list = events::MergedList::from_bytes(blob, &cps[0]).unwrap();
    let merged: Vec<SubmissionId> = list.merged.iter().map(|m| m.submission).collect();
    let mut tampered = blob.clone();
    tampered[10] ^= 1;
    assert_eq!(
        events::MergedList::from_bytes(&tampered, &cps[0]),
        Err(events::MergedListError::HashMismatch)
    );
    assert_eq!(merged, accepted);
}

#[test]
fn colluding_minority_cannot_pay_and_lazy_minority_cannot_block() {
    // k = 3 of 5: two generous colluders cannot release a bad submission's escrow, and two lazy
    // validators cannot block an honest quorum of three.
    let b = vec![
        Behaviour::Generous,
        Behaviour::Generous,
        Behaviour::Honest,
        Behaviour::Honest,
        Behaviour::Honest,
    ];
    let mut w = World::new(scenario(b, 3));
    w.run();
    check(&w);
    // Fees go to the validators whose score agreed with the quorum, never to the colluders,
    // each invoice once, and each to the validator whose attestation carried it.
    assert!(!w.fees.is_empty(), "honest validators earn their fees");
    let mut seen = BTreeSet::new();
    for (v, inv) in &w.fees {
        let i: usize = inv.split('/').nth(1).and_then(|i| i.parse().ok()).unwrap();
        assert_eq!(w.committee[i], *v, "fee paid to the validator that asked");
        assert_eq!(w.sc.behaviours[i], Behaviour::Honest, "outlier paid: {inv}");
        assert!(seen.insert(inv), "fee invoice paid twice: {inv}");
    }
    let b = vec![
        Behaviour::Lazy,
        Behaviour::Lazy,
        Behaviour::Honest,
        Behaviour::Honest,
        Behaviour::Honest,
    ];
    let mut w = World::new(scenario(b, 3));
    w.run();
    assert!(check(&w) > 0);
}

#[test]
fn dishonest_dealer_is_caught_and_nothing_is_lost() {
    for c in [Corruption::WrongShare(0), Corruption::WrongPaymentHash] {
        let mut sc = scenario(vec![Behaviour::Honest; 4], 2);
        sc.corruption = c;
        let mut w = World::new(sc);
        w.run();
        check(&w);
        let evidence: Vec<_> = w
            .relay
            .iter()
            .filter_map(|e| parse::<events::Evidence>(e, None).ok())
            .collect();
        assert!(!evidence.is_empty(), "{c:?} leaves evidence");
        assert!(evidence
            .iter()
            .all(|e| e.accused() == w.nodes[&Node::C].0.public_key()));
    }
}

#[test]
fn equivocating_validator_is_dropped_and_named_in_checkable_evidence() {
    let mut b = vec![Behaviour::Honest; 5];
    b[1] = Behaviour::Equivocating;
    let mut sc = scenario(b, 3);
    sc.peers = 3;
    let mut w = World::new(sc);
    w.run();
    assert!(check(&w) > 0, "the honest quorum still pays");
    let equivocator = w.committee[1];
    let evidence: Vec<_> = w
        .relay
        .iter()
        .filter_map(|e| parse::<events::Evidence>(e, None).ok())
        .collect();
    // One piece per submission it evaluated, published by the coordinator, each checkable
    // without any secret.
    assert!(!evidence.is_empty(), "no equivocation evidence");
    for e in &evidence {
        assert_eq!(e.accused(), equivocator);
        assert_eq!(e.author(), w.nodes[&Node::C].0.public_key());
        assert!(matches!(e.verify(), Ok(events::Proven::Equivocation)));
    }
    // Dropped from the tally: no fee for either of its attestations.
    assert!(w.fees.iter().all(|(v, _)| *v != equivocator));
}

#[test]
fn colluders_at_k_release_one_round_and_the_replay_convicts_them() {
    // k = 3 of 5 with three generous colluders: they can pass bad work this round (the bounded
    // break), but the two honest members dissent, the coordinator replays every disputed
    // evaluation before the checkpoint, and each colluder is convicted by wrong-score evidence
    // anyone can check against the signed attestation.
    let mut b = vec![Behaviour::Generous; 3];
    b.extend([Behaviour::Honest; 2]);
    let mut sc = scenario(b, 3);
    sc.peers = 3;
    let mut w = World::new(sc);
    w.run();
    check(&w);
    assert!(
        w.audits >= 3,
        "every submission is disputed: {} audits",
        w.audits
    );
    let coordinator = w.nodes[&Node::C].0.public_key();
    let evidence: Vec<_> = w
        .relay
        .iter()
        .filter_map(|e| parse::<events::Evidence>(e, None).ok())
        .collect();
    let accused: BTreeSet<PublicKey> = evidence.iter().map(|e| e.accused()).collect();
    assert_eq!(accused, w.committee[..3].iter().copied().collect());
    for e in &evidence {
        assert_eq!(e.author(), coordinator);
        assert!(matches!(e.verify(), Ok(events::Proven::WrongScore)));
    }
    let Role::C(c) = &w.nodes[&Node::C].1 else {
        panic!("the coordinator")
    };
    assert_eq!(c.convicted(), &accused, "the machine convicts exactly them");
    // The checkpoint waited for the audits, and was published.
    assert!(w
        .relay
        .iter()
        .any(|e| parse::<events::Checkpoint>(e, None).is_ok()));
    // An honest committee raises no dispute: nothing is replayed, nobody is accused.
    let mut w = World::new(scenario(vec![Behaviour::Honest; 5], 3));
    w.run();
    check(&w);
    assert_eq!(w.audits, 0);
    assert!(!w
        .relay
        .iter()
        .any(|e| parse::<events::Evidence>(e, None).is_ok()));
}

#[test]
fn replayed_events_from_another_round_are_ignored() {
    let mut w = World::new(scenario(vec![Behaviour::Honest; 3], 2));
    w.run();
    check(&w);
    // Replay every round-9 attestation and submission into a fresh round 10 of the same run.
    let mut sc = scenario(vec![Behaviour::Honest; 3], 2);
    sc.peers = 1;
    let mut w10 = World::new(sc);
    let old: Vec<Event> = w.relay.clone();
    let mut open10 = w10.open.value().clone();
    open10.round = 10;
    open10.seed = round_seed(&open10.run_id, 10, &open10.prev_checkpoint);
    let c = w10.nodes[&Node::C].0.clone();
    let ev = sign_event(&open10, &c, Timestamp::from_secs(T0), &mut w10.rng).unwrap();
    let open10 = parse::<RoundOpen>(&ev, None).unwrap();
    let pk = w10.nodes[&Node::P(0)].0.clone();
    let mut peer = Peer::new(
        pk,
        [3; 32],
        open10.clone(),
        PeerWork {
            blob: BlobHash([1; 32]),
            size: 1,
            claimed_loss: Score(0),
            token: "x:00".into(),
            refund_invoice: None,
        },
    );
    let vk = w10.nodes[&Node::V(0)].0.clone();
    let mut v = Validator::new(vk, [4; 32], open10).unwrap();
    let mut ignored = 0;
    for e in &old {
        let Ok(any) = events::verify_event(e) else {
            continue;
        };
        for a in peer
            .handle(T0 + 1, Input::Event(any.clone()))
            .into_iter()
            .chain(v.handle(T0 + 1, Input::Event(any)))
        {
            match a {
                Action::Ignored { reason, .. } => {
                    assert!(reason.contains("another round"), "{reason}");
                    ignored += 1;
                }
                Action::Evaluate { .. }
                | Action::CreateHoldInvoice { .. }
                | Action::Claim { .. } => {
                    panic!("a replay triggered {a:?}")
                }
                _ => {}
            }
        }
    }
    assert!(ignored > 0);
}

#[test]
fn state_survives_restart_byte_identically() {
    let mut w = World::new(scenario(vec![Behaviour::Honest; 3], 2));
    for _ in 0..20 {
        w.now += 7;
        let nodes: Vec<Node> = w.nodes.keys().copied().collect();
        for n in nodes {
            w.deliver(n, Input::Tick);
        }
        let due: Vec<_> = std::mem::take(&mut w.queue);
        for (_, _, to, input) in due {
            w.deliver(to, input);
        }
    }
    for (keys, role) in w.nodes.values() {
        let b = role.bytes();
        let restored = match role {
            Role::C(_) => Coordinator::from_bytes(keys.clone(), &b)
                .unwrap()
                .to_bytes(),
            Role::P(_) => Peer::from_bytes(keys.clone(), &b).unwrap().to_bytes(),
            Role::V(_) => Validator::from_bytes(keys.clone(), &b).unwrap().to_bytes(),
        };
        assert_eq!(restored, b);
        // Another key cannot load it.
        assert!(Peer::from_bytes(keys::other(), &b).is_err());
    }
}

mod keys {
    pub fn other() -> nostr::Keys {
        super::keys(9, 9)
    }
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        6 => Just(Behaviour::Honest),
        1 => Just(Behaviour::Lazy),
        1 => Just(Behaviour::Harsh),
        1 => Just(Behaviour::Generous),
        1 => Just(Behaviour::Overfit),
        1 => Just(Behaviour::Equivocating),
    ]
}

fn corruption(n: usize) -> impl Strategy<Value = Corruption> {
    prop_oneof![
        6 => Just(Corruption::None),
        1 => (0..n).prop_map(Corruption::WrongShare),
        1 => (0..n).prop_map(Corruption::GarbageCiphertext),
        1 => Just(Corruption::WrongPaymentHash),
    ]
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=5)
        .prop_flat_map(|n| {
            (
                any::<u64>(),
                proptest::collection::vec(behaviour(), n),
                1..=n,
                1usize..=2,
                corruption(n),
                prop_oneof![2 => Just(0.0), 1 => Just(0.15)],
                prop_oneof![Just(0.0), Just(0.2)],
                prop_oneof![Just(0.0), Just(0.05), Just(0.25)],
            )
        })
        .prop_map(
            |(seed, behaviours, k, peers, corruption, drop, dup, crash)| Scenario {
                seed,
                behaviours,
                k,
                peers,
                corruption,
                drop,
                dup,
                crash,
                max_delay: 15,
                committee: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random interleavings, drops, duplicates, delays, Byzantine validators, dishonest dealers
    /// and crash-restarts: every escrow ends claimed or refunded (never stuck or expired), no
    /// claim happens without k passing attestations, held = claimed + refunded, and with no lost
    /// messages every tranche with a quorum is paid.
    #[test]
    fn escrows_always_settle(sc in arb_scenario()) {
        let mut w = World::new(sc);
        w.run();
        check(&w);
    }
}

/// Per-submission committees: a pool of 7, a committee of 3 per submission (k = 2). Every
/// submission is evaluated only by its own committee (drawn by the coordinator's VRF, checked by
/// the worker and the members), the committees differ across submissions, and every invariant
/// holds.
#[test]
fn per_submission_committees_spread_the_load() {
    let mut sc = scenario(vec![Behaviour::Honest; 7], 2);
    sc.peers = 6;
    sc.committee = Some(3);
    let mut w = World::new(sc);
    w.run();
    assert!(check(&w) > 0, "honest work is paid");
    let offers: Vec<_> = w
        .relay
        .iter()
        .filter_map(|e| parse::<events::EscrowOffer>(e, None).ok())
        .collect();
    assert_eq!(offers.len(), 6);
    let mut committees = BTreeSet::new();
    for o in &offers {
        let members = o.dealings[0].body().validators.clone();
        assert_eq!(members.len(), 3);
        assert_eq!(
            w.open
                .submission_committee(&o.author(), &o.submission, &o.committee)
                .unwrap(),
            members,
            "the dealt committee is the VRF draw"
        );
        for a in w
            .relay
            .iter()
            .filter_map(|e| parse::<events::AttestationEvent>(e, None).ok())
            .filter(|a| a.attestation.body().submission == o.submission)
        {
            assert!(members.contains(&a.author()), "only members attest");
        }
        committees.insert(members);
    }
    assert!(committees.len() > 1, "committees differ across submissions");
}

/// Found by `escrows_always_settle` (it ran for over 20 minutes): three equivocators, frequent
/// crashes and duplicates. Each restart republished the equivocators' attestations, and each
/// republish minted a fresh conflicting event that crashed other equivocators into restarting,
/// a branching process above 1. With one conflicting twin per attestation it ends like any
/// other case.
#[test]
fn equivocators_restarting_do_not_feed_each_other() {
    let sc = Scenario {
        seed: 9780612738380839795,
        behaviours: vec![
            Behaviour::Equivocating,
            Behaviour::Generous,
            Behaviour::Lazy,
            Behaviour::Equivocating,
            Behaviour::Equivocating,
        ],
        k: 5,
        peers: 1,
        corruption: Corruption::GarbageCiphertext(1),
        drop: 0.0,
        dup: 0.2,
        crash: 0.25,
        max_delay: 15,
        committee: None,
    };
    let mut w = World::new(sc);
    w.run();
    check(&w);
    assert!(w.crashes < 1_000, "{} crashes", w.crashes);
}
