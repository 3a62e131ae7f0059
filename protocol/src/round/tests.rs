//! Unit tests of the role state machines' edges (the whole-round behaviour is exercised by
//! `tests/round_world.rs`).

use std::collections::BTreeMap;

use nostr::{Keys, SecretKey};

use super::*;
use crate::escrow::linear_schedule;
use crate::events::{parse, HoldbackWindow, L402Kind, RoundOpen, RunId, Verified};
use crate::quorum::{round_seed, Tolerance};

const T0: u64 = 5_000;

fn keys(i: u8) -> Keys {
    let mut b = [0x44u8; 32];
    b[31] = i;
    Keys::new(SecretKey::from_slice(&b).unwrap())
}

fn open() -> RoundOpen {
    let run = RunId::new("unit").unwrap();
    let prev = BlobHash([1; 32]);
    RoundOpen {
        v: 1,
        run_id: run.clone(),
        round: 2,
        checkpoint: BlobHash([2; 32]),
        prev_checkpoint: prev,
        seed: round_seed(&run, 2, &prev),
        validators: (10..13).map(|i| keys(i).public_key()).collect(),
        committee: None,
        k: 2,
        submit_deadline: T0 + 100,
        attest_deadline: T0 + 200,
        claim_deadline: T0 + 300,
        holdback: Some(HoldbackWindow {
            reeval_at: T0 + 250,
            attest_deadline: T0 + 400,
            claim_deadline: T0 + 500,
        }),
        tranches: linear_schedule(30_000, 2, Score(20_000), 200_000),
        submission_price_msat: 1,
        max_submissions: None,
        tolerance: Tolerance::default(),
    }
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        l402_secret: [7; 32],
        service: "submit".into(),
        token_uses: BTreeMap::new(),
        dealing_corruption: Default::default(),
    }
}

fn verified_open() -> Verified<RoundOpen> {
    Coordinator::new(keys(1), [0; 32], T0, open(), config())
        .unwrap()
        .round_open()
        .clone()
}

fn peer() -> Peer {
    Peer::new(
        keys(2),
        [5; 32],
        verified_open(),
        PeerWork {
            blob: BlobHash([9; 32]),
            size: 10,
            claimed_loss: Score(0),
            token: "AA:00".into(),
            refund_invoice: None,
        },
    )
}

#[test]
fn invalid_round_open_is_refused() {
    let mut o = open();
    o.k = 7;
    assert!(matches!(
        Coordinator::new(keys(1), [0; 32], T0, o, config()),
        Err(RoleError::RoundOpen(_))
    ));
    assert!(matches!(
        Validator::new(keys(99), [0; 32], verified_open()),
        Err(RoleError::NotInCommittee)
    ));
}

#[test]
fn coordinator_publishes_the_round_open_first() {
    let mut c = Coordinator::new(keys(1), [0; 32], T0, open(), config()).unwrap();
    let a = c.handle(T0, Input::Tick);
    let Some(Action::Publish(ev)) = a.first() else {
        panic!("expected the round open, got {a:?}");
    };
    assert!(parse::<RoundOpen>(ev, None).is_ok());
    assert!(c.handle(T0 + 1, Input::Tick).is_empty());
}

#[test]
fn peer_submits_once_before_the_deadline() {
    let mut p = peer();
    let a = p.handle(T0, Input::Tick);
    assert!(matches!(a.as_slice(), [Action::Publish(_)]));
    assert!(p.submission_id().is_some());
    assert!(p.handle(T0 + 1, Input::Tick).is_empty());
    let mut late = peer();
    assert!(late.handle(T0 + 100, Input::Tick).is_empty());
    assert!(late.submission_id().is_none());
}

#[test]
fn persisted_state_is_versioned_and_bound_to_role_and_key() {
    let mut p = peer();
    p.handle(T0, Input::Tick);
    let b = p.to_bytes();
    assert!(Peer::from_bytes(keys(2), &b).is_ok());
    assert_eq!(
        Peer::from_bytes(keys(3), &b).unwrap_err(),
        PersistError::WrongRole
    );
    assert_eq!(
        Validator::from_bytes(keys(2), &b).unwrap_err(),
        PersistError::WrongRole
    );
    assert!(matches!(
        Peer::from_bytes(keys(2), &b[..b.len() / 2]),
        Err(PersistError::Decode(_))
    ));
    // Bump the version field (serde_cbor map key "version": u32 1 → 2).
    let pos = b
        .windows(8)
        .position(|w| w == b"version\x01")
        .expect("version field");
    let mut v2 = b.clone();
    v2[pos + 7] = 2;
    assert_eq!(
        Peer::from_bytes(keys(2), &v2).unwrap_err(),
        PersistError::Version(2)
    );
    // A stored event that no longer verifies is refused (Verified re-verifies on load).
    let pos = b
        .windows(9)
        .position(|w| w == b"\"size\":10")
        .expect("stored submission content");
    let mut bad = b.clone();
    bad[pos + 8] = b'1';
    assert!(matches!(
        Peer::from_bytes(keys(2), &bad),
        Err(PersistError::Decode(_))
    ));
}

/// The in-memory effects of the driver tests: a fake store that can be made to fail, and a log
/// of executed actions.
#[derive(Default)]
struct FakeEffects {
    fail_persist: bool,
    stored: BTreeMap<MachineKey, Vec<u8>>,
    executed: Vec<(MachineKey, Action)>,
    forgotten: Vec<MachineKey>,
}

impl Effects<MachineKey> for FakeEffects {
    type Error = String;
    fn persist(&mut self, key: &MachineKey, m: &Machine) -> Result<(), String> {
        if self.fail_persist {
            return Err("disk full".into());
        }
        self.stored.insert(key.clone(), m.to_bytes());
        Ok(())
    }
    fn execute(&mut self, key: &MachineKey, actions: Vec<Action>) {
        self.executed
            .extend(actions.into_iter().map(|a| (key.clone(), a)));
    }
    fn forget(&mut self, key: &MachineKey) {
        self.stored.remove(key);
        self.forgotten.push(key.clone());
    }
}

fn mkey(round: u64, role: Role) -> MachineKey {
    MachineKey {
        run: RunId::new("unit").unwrap(),
        round,
        role,
    }
}

#[test]
fn driver_executes_nothing_it_could_not_persist_and_resume_re_derives_it() {
    let mut d = Driver::new();
    let key = mkey(2, Role::Peer);
    d.insert(key.clone(), Machine::Peer(peer()));
    let mut fx = FakeEffects {
        fail_persist: true,
        ..Default::default()
    };
    assert!(matches!(
        d.handle(T0, &key, Input::Tick, &mut fx),
        Delivery::PersistFailed(_)
    ));
    assert!(
        fx.executed.is_empty(),
        "an unpersisted submission was published"
    );
    // The machine moved on in memory; a restart restores the last durable state instead.
    fx.fail_persist = false;
    assert_eq!(
        d.handle(T0 + 1, &key, Input::Tick, &mut fx),
        Delivery::Executed(0)
    );
    let bytes = fx.stored.get(&key).unwrap().clone();
    let mut d2: Driver<MachineKey> = Driver::new();
    d2.restore(key.clone(), Role::Peer, keys(2), &bytes)
        .unwrap();
    assert!(matches!(d2.resume(T0 + 2, &key, &mut fx), Delivery::Executed(n) if n >= 1));
    assert!(
        matches!(fx.executed.first(), Some((k, Action::Publish(_))) if *k == key),
        "resume re-publishes the submission: {:?}",
        fx.executed
    );
    assert_eq!(
        d2.restore(key.clone(), Role::Validator, keys(2), &bytes),
        Err(PersistError::WrongRole)
    );
}

#[test]
fn driver_routes_events_by_run_and_round_and_lightning_by_payment_hash() {
    let mut d = Driver::new();
    let mut fx = FakeEffects::default();
    let coord = Coordinator::new(keys(1), [0; 32], T0, open(), config()).unwrap();
    let vo = coord.round_open().clone();
    d.insert(mkey(2, Role::Coordinator), Machine::Coordinator(coord));
    d.insert(
        mkey(2, Role::Validator),
        Machine::Validator(Validator::new(keys(10), [3; 32], vo.clone()).unwrap()),
    );
    let mut other = open();
    other.round = 3;
    other.seed = round_seed(&other.run_id, 3, &other.prev_checkpoint);
    let c3 = Coordinator::new(keys(1), [0; 32], T0, other, config()).unwrap();
    d.insert(mkey(3, Role::Coordinator), Machine::Coordinator(c3));
    // The peer's submission of round 2 concerns round 2's machines only.
    let mut p = peer();
    let Some(Action::Publish(ev)) = p.handle(T0, Input::Tick).into_iter().next() else {
        panic!("no submission");
    };
    let sub = VerifiedAny::Submission(parse(&ev, None).unwrap());
    let targets = d.targets(&Input::Event(sub));
    assert_eq!(
        targets,
        vec![mkey(2, Role::Coordinator), mkey(2, Role::Validator)]
    );
    // Nobody owns an unknown payment hash; ticks reach everyone.
    let held = Input::HtlcHeld {
        payment_hash: PaymentHash([9; 32]),
        amount_msat: 1,
    };
    assert!(d.targets(&held).is_empty());
    assert_eq!(d.route(T0, Input::Tick, &mut fx), 3);
    // Retiring: nothing before the last deadline, everything after it.
    assert!(d.retire_finished(T0 + 500, 10, &mut fx).is_empty());
    let gone = d.retire_finished(T0 + 511, 10, &mut fx);
    assert_eq!(gone.len(), 3);
    assert!(d.is_empty() && fx.stored.is_empty() && fx.forgotten.len() == 3);
}

/// A worker of `open` with a valid paid token (service "submit", one use, bound to its key),
/// submitting `blob`: the machine and its published submission.
fn paid_peer(
    author: u8,
    open: Verified<RoundOpen>,
    blob: BlobHash,
    refund_invoice: Option<String>,
) -> (Peer, VerifiedAny) {
    let preimage = crate::escrow::Preimage([author; 32]);
    let run = RunId::new("unit").unwrap();
    let mac = crate::l402::mint(
        &[7; 32],
        &crate::l402::MintParams {
            service: "submit",
            run: Some(&run),
            valid_until: Some(T0 + 1_000),
            max_uses: Some(1),
            pubkey: Some(keys(author).public_key()),
            payment_hash: preimage.payment_hash(),
            token_id: [author; 32],
            location: None,
        },
    );
    let mut p = Peer::new(
        keys(author),
        [author; 32],
        open,
        PeerWork {
            blob,
            size: 10,
            claimed_loss: Score(0),
            token: format!("{}:{}", mac.to_base64(), hex::encode(preimage.0)),
            refund_invoice,
        },
    );
    let Some(Action::Publish(ev)) = p.handle(T0 + 1, Input::Tick).into_iter().next() else {
        panic!("no submission");
    };
    (p, VerifiedAny::Submission(parse(&ev, None).unwrap()))
}

#[test]
fn a_second_submission_of_the_same_blob_is_refused_as_a_copy() {
    let mut c = Coordinator::new(keys(1), [0; 32], T0, open(), config()).unwrap();
    c.handle(T0, Input::Tick);
    // Two authors, each with a valid paid token, submit the same blob hash.
    let sub = |author: u8| paid_peer(author, verified_open(), BlobHash([9; 32]), None).1;
    let first = c.handle(T0 + 2, Input::Event(sub(2)));
    assert!(
        first.iter().any(|a| matches!(a, Action::Publish(_))),
        "the first gets an escrow offer: {first:?}"
    );
    let second = c.handle(T0 + 3, Input::Event(sub(3)));
    assert!(
        second
            .iter()
            .any(|a| matches!(a, Action::Ignored { reason, .. } if reason.starts_with("copy"))),
        "{second:?}"
    );
}

#[test]
fn beyond_the_declared_cap_a_paid_submission_is_refused_and_its_toll_refunded_once() {
    let capped = || RoundOpen {
        max_submissions: Some(1),
        ..open()
    };
    let mut c = Coordinator::new(keys(1), [0; 32], T0, capped(), config()).unwrap();
    let open_ev = c.handle(T0, Input::Tick);
    let Some(Action::Publish(open_ev)) = open_ev.into_iter().next() else {
        panic!("no round open");
    };
    let vopen: Verified<RoundOpen> = parse(&open_ev, None).unwrap();
    // Peers with paid tokens and refund invoices, distinct blobs per author.
    let peer = |author: u8| {
        let refund = Some(format!("lnbcrt-refund-{author}"));
        paid_peer(author, vopen.clone(), BlobHash([author; 32]), refund)
    };
    let (_, first) = peer(2);
    assert!(c
        .handle(T0 + 2, Input::Event(first))
        .iter()
        .any(|a| matches!(a, Action::Publish(_))));
    let (mut late, second) = peer(3);
    let out = c.handle(T0 + 3, Input::Event(second.clone()));
    let refunds: Vec<_> = out
        .iter()
        .filter(|a| matches!(a, Action::RefundToll { amount_msat: 1, bolt11, .. } if bolt11 == "lnbcrt-refund-3"))
        .collect();
    assert_eq!(refunds.len(), 1, "{out:?}");
    let refusal = out
        .iter()
        .find_map(|a| match a {
            Action::Publish(ev) if ev.kind == L402Kind::SubmissionRefusal.kind() => {
                Some(parse::<crate::events::SubmissionRefusal>(ev, None).unwrap())
            }
            _ => None,
        })
        .expect("a signed refusal");
    assert_eq!(
        refusal.refusal,
        crate::events::Refusal::RoundFull { max: 1 }
    );
    assert_eq!(refusal.refund_msat, 1);
    // The same submission again: its token is spent, so no second refund.
    let again = c.handle(T0 + 4, Input::Event(second));
    assert!(
        !again.iter().any(|a| matches!(a, Action::RefundToll { .. })),
        "{again:?}"
    );
    // A restarted coordinator asks for the refund again (paying is idempotent in the shell).
    let mut restored = Coordinator::from_bytes(keys(1), &c.to_bytes()).unwrap();
    assert!(restored
        .resume(T0 + 5)
        .iter()
        .any(|a| matches!(a, Action::RefundToll { .. })));
    // The peer sees the typed refusal and is done.
    let seen = late.handle(
        T0 + 6,
        Input::Event(VerifiedAny::SubmissionRefusal(refusal)),
    );
    assert!(
        seen.iter()
            .any(|a| matches!(a, Action::Refused { refund_msat: 1, .. })),
        "{seen:?}"
    );
    assert_eq!(
        late.refused(),
        Some(&crate::events::Refusal::RoundFull { max: 1 })
    );
}

#[test]
fn an_offer_prepared_ahead_is_the_one_handle_makes_and_changes_no_rule() {
    let sub =
        |author: u8, blob: u8| paid_peer(author, verified_open(), BlobHash([blob; 32]), None).1;
    let submission = |v: &VerifiedAny| match v {
        VerifiedAny::Submission(s) => s.clone(),
        other => panic!("not a submission: {other:?}"),
    };
    let fresh = || {
        let mut c = Coordinator::new(keys(1), [0; 32], T0, open(), config()).unwrap();
        c.handle(T0, Input::Tick);
        c
    };
    // Two submissions, then a copy of the first (same blob).
    let deliveries = [
        (sub(2, 9), T0 + 2),
        (sub(3, 8), T0 + 3),
        (sub(4, 9), T0 + 3),
    ];
    let mut plain = fresh();
    let want: Vec<Vec<Action>> = deliveries
        .iter()
        .map(|(s, at)| plain.handle(*at, Input::Event(s.clone())))
        .collect();

    let mut ahead = fresh();
    // Each offer prepared ahead; the second one for another second than it arrives in.
    let prepared_for = [T0 + 2, T0 + 9, T0 + 3];
    for ((s, _), at) in deliveries.iter().zip(prepared_for) {
        let p = ahead.prepare_offer(at, &submission(s)).expect("an offer");
        ahead.stash_offer(p);
    }
    let got: Vec<Vec<Action>> = deliveries
        .iter()
        .map(|(s, at)| ahead.handle(*at, Input::Event(s.clone())))
        .collect();
    // The same actions, byte for byte: the offers, and the copy still ignored as a copy.
    assert_eq!(got, want);
    assert!(got[0].iter().any(|a| matches!(a, Action::Publish(_))));
    assert!(
        got[2]
            .iter()
            .any(|a| matches!(a, Action::Ignored { reason, .. } if reason.starts_with("copy"))),
        "{:?}",
        got[2]
    );
    // Nothing is prepared for a submission already held, or one past the deadline.
    assert!(ahead
        .prepare_offer(T0 + 4, &submission(&deliveries[0].0))
        .is_none());
    let late = paid_peer(5, verified_open(), BlobHash([5; 32]), None).1;
    let deadline = verified_open().submit_deadline;
    assert!(ahead
        .prepare_offer(deadline + 1, &submission(&late))
        .is_none());
}

#[test]
fn a_rounds_offers_share_one_ephemeral_key_and_another_round_draws_another() {
    // The ephemeral keys `E` of the dealings a coordinator with machine seed [0; 32] publishes
    // for two submissions to `open`.
    let ephemerals = |open: RoundOpen| {
        let mut c = Coordinator::new(keys(1), [0; 32], T0, open, config()).unwrap();
        c.handle(T0, Input::Tick);
        let vopen = c.round_open().clone();
        [(2u8, 9u8), (3, 8)]
            .iter()
            .flat_map(|&(author, blob)| {
                let s = paid_peer(author, vopen.clone(), BlobHash([blob; 32]), None).1;
                c.handle(T0 + 2, Input::Event(s))
            })
            .filter_map(|a| match a {
                Action::Publish(ev) => parse::<crate::events::EscrowOffer>(&ev, None).ok(),
                _ => None,
            })
            .flat_map(|o| {
                o.dealings
                    .iter()
                    .map(|d| d.body().ephemeral)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let this_round = ephemerals(open());
    // Two offers, a dealing per tranche each, all under one `E` (L2T-05 §dealing).
    assert_eq!(this_round.len(), 2 * open().tranches.len());
    assert!(this_round.iter().all(|e| *e == this_round[0]));
    // The next round, same machine seed: its own `E`.
    let next = RoundOpen {
        round: 3,
        seed: round_seed(&open().run_id, 3, &open().prev_checkpoint),
        ..open()
    };
    let next_round = ephemerals(next);
    assert_eq!(next_round.len(), this_round.len());
    assert!(next_round.iter().all(|e| *e != this_round[0]));
}
