//! Replay determinism (test-matrix 7.2.5) and the documented break of SAFETY.md H10 (row A9):
//! k or more colluding validators can misdirect at most one round's escrow and leave signed,
//! checkable evidence.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use l402_protocol::events::{verify_event, VerifiedAny};
use l402_sim::{check, run_checked, run_one, Scenario, Violation};
use nostr::{Event, JsonUtil};

fn scenario(name: &str) -> Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&p).unwrap()
}

#[test]
fn a_seed_replays_to_the_same_event_log_hash() {
    // The most random scenario: crashes, drops, duplicates, every adversary.
    let sc = scenario("mixed");
    // Three threads, then the replay check's re-run on one; then one thread again.
    let (a, res) = run_checked(&sc, 42, Some(3), true, 3).unwrap();
    res.unwrap();
    let b = run_one(&sc, 42, Some(3)).unwrap();
    assert_eq!(a.event_log_hash, b.event_log_hash);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    // Another seed is another run.
    let c = run_one(&sc, 43, Some(3)).unwrap();
    assert_ne!(a.event_log_hash, c.event_log_hash);
    // The replay check reports a mismatch as a typed violation with the seed.
    let err = l402_sim::invariants::check_replay(&a, &c).unwrap_err();
    assert_eq!(err.seed, 42);
    assert!(matches!(err.violations[0], Violation::NotReplayable { .. }));
}

#[test]
fn collusion_at_k_is_bounded_to_one_round_and_leaves_signed_evidence() {
    let sc = scenario("colluding-at-k");
    let mut struck = 0;
    for seed in 2000..2008 {
        let r = run_one(&sc, seed, Some(4)).unwrap();
        // Everything but the bad-work rule (allowed at >= k) still holds.
        check(&r).unwrap();
        let d = &r.detection;
        assert!(
            d.rounds_with_attacker_payout <= 1,
            "seed {seed}: paid in {} rounds",
            d.rounds_with_attacker_payout
        );
        assert!(
            d.max_attacker_payout_per_round_msat <= d.max_round_escrow_msat,
            "seed {seed}: damage above one round's escrow"
        );
        assert_eq!(r.attacker_payout_msat, d.max_attacker_payout_per_round_msat);
        if r.attacker_payout_msat == 0 {
            continue;
        }
        struck += 1;
        // The coalition sat in a committee: its signed attestations contradict the replay...
        assert!(d.colluders_detected >= 3, "seed {seed}: {}", r.to_text());
        assert_eq!(d.honest_validators_flagged, 0);
        // ...and the coordinator's replay of the disputed evaluations convicted them in signed
        // wrong-score evidence (the protocol's audit), which is what excluded them.
        assert!(d.audit_replays > 0 && d.convicted >= 3, "seed {seed}");
        assert_eq!(d.honest_convicted, 0);
        // ...and the honest validators signed their dissent.
        assert!(d.honest_dissent > 0, "seed {seed}");
        // The evidence is the signed events themselves: anyone can verify them.
        let proof = r
            .fraud_proofs
            .iter()
            .find(|p| p.attested_accept && !p.replayed_accept)
            .expect("a false accept is proven");
        let ev = Event::from_json(&proof.event_json).unwrap();
        let VerifiedAny::Attestation(a) = verify_event(&ev).unwrap() else {
            panic!("evidence is an attestation")
        };
        assert!(a.attestation.body().verdict.is_accept());
        // Excluded after the round they struck: every later round pays adversaries nothing.
        let strike = r
            .rounds
            .iter()
            .find(|x| x.attacker_paid_msat > 0)
            .unwrap()
            .round;
        assert!(r.rounds.iter().all(
            |x| x.round <= strike || (x.attacker_paid_msat == 0 && x.dishonest_validators == 0)
        ));
    }
    assert!(struck > 0, "k colluders do break safety in some round");
}
