//! Quorum tests: signed attestations, tallies with tolerance, equivocation evidence.

use nostr::{Keys, PublicKey, SecretKey};

use super::*;
use crate::events::ids::{BlobHash, RunId, Score, Seed32, SubmissionId};

fn keys(i: u8) -> Keys {
    let mut b = [0x33u8; 32];
    b[31] = i;
    Keys::new(SecretKey::from_slice(&b).unwrap())
}

fn run() -> RunId {
    RunId::new("r").unwrap()
}

fn body(v: &Keys, score: i64, verdict: Verdict) -> AttestationBody {
    AttestationBody {
        run_id: run(),
        round: 4,
        phase: Phase::Initial,
        submission: SubmissionId([1; 32]),
        checkpoint: BlobHash([2; 32]),
        gradient: BlobHash([3; 32]),
        eval_seed: Seed32([4; 32]),
        score: Score(score),
        verdict,
        validator: v.public_key(),
    }
}

fn signed(v: &Keys, score: i64, verdict: Verdict) -> SignedAttestation {
    body(v, score, verdict).sign(v, &[0; 32]).unwrap()
}

fn ctx(validators: &[PublicKey]) -> TallyContext<'_> {
    TallyContext {
        run_id: Box::leak(Box::new(run())),
        round: 4,
        phase: Phase::Initial,
        submission: SubmissionId([1; 32]),
        checkpoint: BlobHash([2; 32]),
        gradient: BlobHash([3; 32]),
        eval_seed: Seed32([4; 32]),
        validators,
        k: 3,
        tolerance: Tolerance::default(),
    }
}

#[test]
fn attestation_roundtrip_and_tamper() {
    let v = keys(1);
    let a = signed(&v, 12_345, Verdict::Accept);
    let b = SignedAttestation::decode(&a.encode()).unwrap();
    assert_eq!(a, b);
    assert_eq!(SignedAttestation::from_base64(&a.to_base64()).unwrap(), a);
    let mut bytes = a.encode();
    // Flip a bit inside the score field of the body.
    let pos = bytes.len() - 80;
    bytes[pos] ^= 1;
    assert!(SignedAttestation::decode(&bytes).is_err());
    // Signing a body that names another validator is refused.
    assert!(body(&keys(2), 1, Verdict::Accept)
        .sign(&v, &[0; 32])
        .is_err());
    let rej = signed(&v, -5, Verdict::Reject(RejectCode::Copied));
    assert_eq!(
        SignedAttestation::decode(&rej.encode())
            .unwrap()
            .body()
            .verdict,
        Verdict::Reject(RejectCode::Copied)
    );
}

#[test]
fn tally_counts_k_of_n_within_tolerance() {
    let vs: Vec<Keys> = (1..=5).map(keys).collect();
    let pks: Vec<PublicKey> = vs.iter().map(|k| k.public_key()).collect();
    let c = ctx(&pks);
    let two = [
        signed(&vs[0], 20_000, Verdict::Accept),
        signed(&vs[1], 20_050, Verdict::Accept),
    ];
    let t = tally(&c, &two);
    assert!(!t.quorum_accepts());
    let mut three = two.to_vec();
    three.push(signed(&vs[2], 20_010, Verdict::Accept));
    three.push(signed(&vs[3], 90_000, Verdict::Accept)); // outlier
    three.push(signed(
        &vs[4],
        0,
        Verdict::Reject(RejectCode::LossIncreased),
    ));
    let t = tally(&c, &three);
    assert!(t.quorum_accepts());
    assert!(t.passes(Score(20_000)));
    assert_eq!(t.accepts_at(Score(20_040)), 2);
    assert!(!t.passes(Score(20_040)));
    assert_eq!(t.median(), Some(Score(20_010)));
    let ok = t.within_tolerance();
    assert_eq!(ok.len(), 3);
    assert!(t.outliers().contains(&pks[3]));
    assert!(t.outliers().contains(&pks[4]));
}

#[test]
fn tally_excludes_outsiders_wrong_bindings_and_duplicates() {
    let vs: Vec<Keys> = (1..=5).map(keys).collect();
    let pks: Vec<PublicKey> = vs.iter().map(|k| k.public_key()).collect();
    let c = ctx(&pks);
    let outsider = signed(&keys(9), 20_000, Verdict::Accept);
    let mut wrong_round = body(&vs[1], 20_000, Verdict::Accept);
    wrong_round.round = 5;
    let wrong_round = wrong_round.sign(&vs[1], &[0; 32]).unwrap();
    let mut wrong_seed = body(&vs[2], 20_000, Verdict::Accept);
    wrong_seed.eval_seed = Seed32([0; 32]);
    let wrong_seed = wrong_seed.sign(&vs[2], &[0; 32]).unwrap();
    let a0 = signed(&vs[0], 20_000, Verdict::Accept);
    let t = tally(&c, &[outsider, wrong_round, wrong_seed, a0.clone(), a0]);
    assert_eq!(t.counted().count(), 1);
    let ex: Vec<&Exclusion> = t.excluded().iter().map(|(_, e)| e).collect();
    assert_eq!(
        ex,
        [
            &Exclusion::NotSelected,
            &Exclusion::WrongBinding("round"),
            &Exclusion::WrongBinding("eval_seed")
        ]
    );
}

#[test]
fn equivocation_is_excluded_and_proven() {
    let vs: Vec<Keys> = (1..=5).map(keys).collect();
    let pks: Vec<PublicKey> = vs.iter().map(|k| k.public_key()).collect();
    let c = ctx(&pks);
    let yes = signed(&vs[0], 20_000, Verdict::Accept);
    let no = signed(&vs[0], 20_000, Verdict::Reject(RejectCode::NormOutOfRange));
    let t = tally(
        &c,
        &[
            yes.clone(),
            signed(&vs[1], 20_000, Verdict::Accept),
            no.clone(),
            signed(&vs[2], 20_000, Verdict::Accept),
        ],
    );
    assert_eq!(t.counted().count(), 2);
    assert!(!t.quorum_accepts(), "the equivocator's vote does not count");
    let ev = &t.equivocations()[0];
    assert_eq!(ev.validator(), pks[0]);
    // Third-party check from the published bytes.
    let checked = EquivocationEvidence::decode(&ev.encode()).unwrap();
    assert_eq!(&checked, ev);
    // Not evidence: two identical attestations, or two validators' attestations.
    assert!(EquivocationEvidence::new(yes.clone(), yes.clone()).is_none());
    assert!(EquivocationEvidence::new(yes, signed(&vs[1], 1, Verdict::Accept)).is_none());
    // The holdback re-evaluation may legitimately differ from the initial one.
    let mut later = body(&vs[0], 1, Verdict::Accept);
    later.phase = Phase::Holdback;
    assert!(EquivocationEvidence::new(no, later.sign(&vs[0], &[0; 32]).unwrap()).is_none());
}

#[test]
fn tolerance_rule() {
    let t = Tolerance::default();
    assert!(t.agrees(Score(1_000_100), Score(1_000_000)));
    assert!(t.agrees(Score(1_010_000), Score(1_000_000)), "1% relative");
    assert!(!t.agrees(Score(1_010_001), Score(1_000_000)));
    assert!(t.agrees(Score(100), Score(0)), "absolute floor near zero");
    assert!(!t.agrees(Score(101), Score(0)));
    assert!(t.agrees(Score(i64::MIN), Score(i64::MIN)));
}
