//! Unit tests of the role state machines' edges (the whole-round behaviour is exercised by
//! `tests/round_world.rs`).

use std::collections::BTreeMap;

use nostr::{Keys, SecretKey};

use super::*;
use crate::escrow::linear_schedule;
use crate::events::{parse, HoldbackWindow, RoundOpen, RunId, Verified};
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
