//! Tests of the kind set: round trips, every typed rejection, replay scope, spec vectors.

use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, SecretKey, Tag, TagKind, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::escrow::{linear_schedule, DealingParams};
use crate::quorum::{eval_seed, round_seed, AttestationBody, Phase, Tolerance, Verdict};

pub(crate) fn keys(i: u8) -> Keys {
    let mut b = [0x11u8; 32];
    b[31] = i;
    Keys::new(SecretKey::from_slice(&b).expect("valid key"))
}

pub(crate) fn rng(i: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([i; 32])
}

const T0: u64 = 1_700_000_000;

fn now() -> Timestamp {
    Timestamp::from_secs(T0)
}

fn run() -> RunId {
    RunId::new("tiny-gpt").unwrap()
}

/// Coordinator = keys(1), validators = keys(10..15), peer = keys(2).
pub(crate) fn round_open(round: u64) -> RoundOpen {
    let prev = BlobHash([round as u8; 32]);
    RoundOpen {
        v: 1,
        run_id: run(),
        round,
        checkpoint: BlobHash([round as u8 + 1; 32]),
        prev_checkpoint: prev,
        seed: round_seed(&run(), round, &prev),
        validators: (10..15).map(|i| keys(i).public_key()).collect(),
        committee: None,
        k: 3,
        submit_deadline: T0 + 100,
        attest_deadline: T0 + 200,
        claim_deadline: T0 + 300,
        holdback: Some(HoldbackWindow {
            reeval_at: T0 + 400,
            attest_deadline: T0 + 500,
            claim_deadline: T0 + 600,
        }),
        tranches: linear_schedule(40_000, 3, Score(30_000), 250_000),
        submission_price_msat: 1_000,
        max_submissions: None,
        tolerance: Tolerance::default(),
    }
}

fn submission(round: u64) -> Submission {
    let ro = round_open(round);
    Submission {
        v: 1,
        run_id: run(),
        round,
        checkpoint: ro.checkpoint,
        coordinator: keys(1).public_key(),
        blob: BlobHash([0xbb; 32]),
        size: 4096,
        claimed_loss: Score(12_000),
        token: "AgEEbDQwMgJC:00".into(),
        nonce: 7,
        refund_invoice: None,
    }
}

fn signed<T: EventContent>(c: &T, k: &Keys) -> Event {
    sign_event(c, k, now(), &mut rng(9)).unwrap()
}

fn node_announcement(author: &Keys) -> NodeAnnouncement {
    let iroh = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let mut ln = [2u8; 33];
    ln[1..].copy_from_slice(&keys(3).public_key().to_bytes());
    let mut a = NodeAnnouncement::new(
        &author.public_key(),
        &iroh,
        ln,
        vec![Role::Peer, Role::Validator],
        Some(ValidatorTerms { fee_msat: 500 }),
    );
    a.iroh_addrs = vec!["127.0.0.1:4433".into()];
    a.relays = vec!["ws://127.0.0.1:7777".into()];
    a
}

fn attestation(round: u64, sub: SubmissionId, validator: &Keys) -> AttestationEvent {
    let ro = round_open(round);
    let body = AttestationBody {
        run_id: run(),
        round,
        phase: Phase::Initial,
        submission: sub,
        checkpoint: ro.checkpoint,
        gradient: BlobHash([0xbb; 32]),
        eval_seed: eval_seed(&ro.seed, &sub),
        score: Score(25_000),
        verdict: Verdict::Accept,
        validator: validator.public_key(),
    };
    AttestationEvent {
        attestation: body.sign(validator, &[3; 32]).unwrap(),
        peer: keys(2).public_key(),
        shares: vec![ReleasedShare {
            tranche: 0,
            ciphertext: "AAAA".into(),
        }],
        fee_invoice: Some("lnbcrt5u1fake".into()),
    }
}

fn offer(round: u64, sub: SubmissionId, dealer: &Keys) -> EscrowOffer {
    let ro = round_open(round);
    let (proof, cseed) =
        crate::quorum::committee::prove(dealer, &ro.run_id, round, &ro.seed, &sub).unwrap();
    let members =
        crate::quorum::committee::draw(&ro.validators, &cseed, ro.committee_size(), 3).unwrap();
    // One ephemeral key for the offer's dealings, as a coordinator deals (L2T-05 §dealing).
    let cipher = crate::escrow::OfferCipher::new(&[0xee; 32], &members).unwrap();
    let dealings = ro
        .tranches
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let p = DealingParams {
                run_id: &ro.run_id,
                round,
                submission: sub,
                peer: keys(2).public_key(),
                tranche: i as u32,
                spec: *spec,
                claim_deadline: ro.claim_deadline_for(spec),
                validators: &members,
                k: ro.k as usize,
            };
            crate::escrow::deal_in_offer(
                dealer,
                &p,
                &[i as u8; 32],
                &cipher,
                crate::escrow::Corruption::None,
            )
            .unwrap()
            .0
        })
        .collect();
    EscrowOffer {
        run_id: run(),
        round,
        submission: sub,
        peer: keys(2).public_key(),
        dealings,
        committee: proof,
        round_seed: Some(ro.seed),
    }
}

/// Sign arbitrary kind/content/tags (for crafting bad events).
fn raw(kind: u16, content: &str, tags: Vec<Tag>, k: &Keys) -> Event {
    EventBuilder::new(Kind::from_u16(kind), content)
        .tags(tags)
        .custom_created_at(now())
        .allow_self_tagging()
        .build(k.public_key())
        .sign_with_ctx(nostr::SECP256K1, &mut rng(4), k)
        .unwrap()
}

/// One deterministic example of every kind, named as in `specs/vectors/events/`.
fn sample_events() -> Vec<(&'static str, Event)> {
    let c = keys(1);
    let sub_ev = signed(&submission(3), &keys(2));
    let sub = SubmissionId::of_event(&sub_ev);
    let bounty = Bounty {
        v: 1,
        bounty_id: RunId::new("faster-sort").unwrap(),
        title: "Make sort faster".into(),
        baseline: BlobHash([1; 32]),
        mutable_files: vec!["src/sort.rs".into()],
        eval_command: "cargo bench".into(),
        metric: "ns_per_item".into(),
        direction: Direction::Minimize,
        public_eval: BlobHash([2; 32]),
        heldout_commitment: Seed32([3; 32]),
        pool_msat: 1_000_000,
        target_improvement: Score(100_000),
        deadline: T0 + 86_400,
        diff_size_cap: 65_536,
        n: 5,
        k: 3,
        holdback_ppm: 200_000,
        margin: Score(1_000),
        tranches: 10,
        reveal_window_secs: 600,
        gateway: None,
    };
    let commitment = BountyCommitment {
        v: 1,
        bounty_id: bounty.bounty_id.clone(),
        sponsor: c.public_key(),
        commitment: bounty_commitment(
            &bounty.bounty_id,
            &keys(4).public_key(),
            &BlobHash([9; 32]),
            &Seed32([8; 32]),
        ),
    };
    let commit_ev = signed(&commitment, &keys(4));
    let reveal = BountyReveal {
        v: 1,
        bounty_id: bounty.bounty_id.clone(),
        commitment_event: commit_ev.id,
        diff: BlobHash([9; 32]),
        size: 100,
        salt: Seed32([8; 32]),
        claimed_metric: Score(-5),
    };
    vec![
        (
            "node_announcement",
            signed(&node_announcement(&keys(10)), &keys(10)),
        ),
        (
            "run_announcement",
            signed(
                &RunAnnouncement {
                    v: 1,
                    run_id: run(),
                    title: "tiny".into(),
                    model: "byte-gpt L2 d128".into(),
                    genesis_checkpoint: BlobHash([0; 32]),
                    round_secs: 300,
                    n: 5,
                    k: 3,
                    tranches: linear_schedule(40_000, 3, Score(30_000), 250_000),
                    submission_price_msat: 1_000,
                    tolerance: Tolerance::default(),
                    gateway: Some("http://127.0.0.1:8402".into()),
                },
                &c,
            ),
        ),
        ("round_open", signed(&round_open(3), &c)),
        ("submission", sub_ev.clone()),
        ("escrow_offer", signed(&offer(3, sub, &c), &c)),
        (
            "escrow_lock",
            signed(
                &EscrowLock {
                    v: 1,
                    run_id: run(),
                    round: 3,
                    submission: sub,
                    coordinator: c.public_key(),
                    state: LockState::Invoices,
                    invoices: vec![TrancheInvoice {
                        tranche: 0,
                        payment_hash: PaymentHash([4; 32]),
                        bolt11: "lnbcrt1fake".into(),
                    }],
                },
                &keys(2),
            ),
        ),
        (
            "attestation",
            signed(&attestation(3, sub, &keys(10)), &keys(10)),
        ),
        (
            "checkpoint",
            signed(
                &Checkpoint::new(
                    &MergedList::new(
                        run(),
                        3,
                        BlobHash([4; 32]),
                        vec![MergedSubmission {
                            submission: sub,
                            blob: BlobHash([0xbb; 32]),
                        }],
                    ),
                    BlobHash([5; 32]),
                ),
                &c,
            ),
        ),
        ("bounty", signed(&bounty, &c)),
        ("bounty_commitment", commit_ev),
        ("bounty_reveal", signed(&reveal, &keys(4))),
        (
            "submission_refusal",
            signed(
                &crate::events::SubmissionRefusal {
                    v: 1,
                    run_id: run(),
                    round: 3,
                    submission: sub,
                    peer: keys(2).public_key(),
                    refusal: crate::events::Refusal::RoundFull { max: 500 },
                    refund_msat: 1_000,
                },
                &c,
            ),
        ),
    ]
}

#[test]
fn every_kind_round_trips() {
    let events = sample_events();
    let sub_ev = events[3].1.clone();
    let mut kinds = Vec::new();
    for (_, ev) in &events {
        let v = validate_event(ev, now()).unwrap_or_else(|e| panic!("{:?}: {e}", ev.kind));
        kinds.push(v.kind());
        // Round trip through JSON, as a relay would store and serve it.
        let back = parse_json(&ev.as_json(), Some(now())).unwrap();
        assert_eq!(back, v);
    }
    assert_eq!(kinds.len(), 12);
    assert_eq!(kinds[3], L402Kind::Submission);
    // Standard NIP-01: an ordinary client sees our indexed tags.
    let sub_json: serde_json::Value = serde_json::from_str(&sub_ev.as_json()).unwrap();
    assert_eq!(sub_json["kind"], 4022);
    let tags = sub_json["tags"].as_array().unwrap();
    assert!(tags.iter().any(|t| t[0] == "z" && t[1] == "3"));
    assert!(tags.iter().any(|t| t[0] == "n" && t[1] == "tiny-gpt"));
}

#[test]
fn bounty_reveal_opens_commitment() {
    let sponsor = keys(1);
    let agent = keys(4);
    let bounty = Bounty {
        v: 1,
        bounty_id: RunId::new("b1").unwrap(),
        title: "t".into(),
        baseline: BlobHash([1; 32]),
        mutable_files: vec!["a.py".into()],
        eval_command: "python eval.py".into(),
        metric: "acc".into(),
        direction: Direction::Maximize,
        public_eval: BlobHash([2; 32]),
        heldout_commitment: Seed32([3; 32]),
        pool_msat: 1,
        target_improvement: Score(1),
        deadline: T0 + 10,
        diff_size_cap: 1000,
        n: 1,
        k: 1,
        holdback_ppm: 0,
        margin: Score(0),
        tranches: 1,
        reveal_window_secs: 0,
        gateway: None,
    };
    let b = parse::<Bounty>(&signed(&bounty, &sponsor), Some(now())).unwrap();
    let salt = Seed32([7; 32]);
    let diff = BlobHash([6; 32]);
    let c = BountyCommitment {
        v: 1,
        bounty_id: bounty.bounty_id.clone(),
        sponsor: sponsor.public_key(),
        commitment: bounty_commitment(&bounty.bounty_id, &agent.public_key(), &diff, &salt),
    };
    let cv = parse::<BountyCommitment>(&signed(&c, &agent), Some(now())).unwrap();
    let r = BountyReveal {
        v: 1,
        bounty_id: bounty.bounty_id.clone(),
        commitment_event: cv.id(),
        diff,
        size: 10,
        salt,
        claimed_metric: Score(1),
    };
    let rv = parse::<BountyReveal>(&signed(&r, &agent), Some(now())).unwrap();
    assert_eq!(bounty::check_reveal(&b, &cv, &rv), Ok(()));
    // A copycat re-publishing the reveal under its own key does not open the commitment.
    let stolen = parse::<BountyReveal>(&signed(&r, &keys(5)), Some(now())).unwrap();
    assert!(bounty::check_reveal(&b, &cv, &stolen).is_err());
    // A different diff under the same commitment does not open it.
    let mut r2 = r.clone();
    r2.diff = BlobHash([0; 32]);
    let rv2 = parse::<BountyReveal>(&signed(&r2, &agent), Some(now())).unwrap();
    assert_eq!(
        bounty::check_reveal(&b, &cv, &rv2),
        Err(ScopeError::WrongSubmission)
    );
}

#[test]
fn size_and_structure_caps() {
    let k = keys(2);
    let big = "x".repeat(MAX_CONTENT_BYTES + 1);
    let e = raw(4022, &big, vec![], &k);
    assert!(matches!(
        validate_event(&e, now()),
        Err(RejectReason::TooLarge { .. })
    ));
    let json = format!("{{\"pad\":\"{}\"}}", "y".repeat(MAX_EVENT_BYTES));
    assert!(matches!(
        parse_json(&json, None),
        Err(RejectReason::TooLarge { .. })
    ));
    let many: Vec<Tag> = (0..=MAX_TAGS).map(|i| tags::t(&format!("t{i}"))).collect();
    let e = raw(4022, "{}", many, &k);
    assert_eq!(
        validate_event(&e, now()),
        Err(RejectReason::TooManyTags(MAX_TAGS + 1))
    );
    let e = raw(
        4022,
        "{}",
        vec![tags::t(&"z".repeat(MAX_TAG_VALUE_LEN + 1))],
        &k,
    );
    assert_eq!(validate_event(&e, now()), Err(RejectReason::TagTooLarge));
    let e = raw(1, "hello", vec![], &k);
    let err = validate_event(&e, now()).unwrap_err();
    assert_eq!(err, RejectReason::UnknownKind(1));
    assert!(err.to_nip01().starts_with("blocked: "));
}

#[test]
fn unsigned_and_badly_signed_events_are_rejected() {
    let ev = signed(&submission(3), &keys(2));
    // Unsigned: a NIP-01 object with no sig field.
    let mut j: serde_json::Value = serde_json::from_str(&ev.as_json()).unwrap();
    j.as_object_mut().unwrap().remove("sig");
    let err = parse_json(&j.to_string(), Some(now())).unwrap_err();
    assert!(matches!(err, RejectReason::Malformed(_)), "{err:?}");
    assert!(err.to_nip01().starts_with("invalid: "));
    // Signature of another event.
    let other = signed(&submission(4), &keys(2));
    let mut forged = ev.clone();
    forged.sig = other.sig;
    assert_eq!(
        validate_event(&forged, now()),
        Err(RejectReason::BadSignature)
    );
    // Content changed after signing: id no longer matches.
    let mut tampered = ev.clone();
    tampered.content = tampered.content.replace("4096", "4097");
    assert_eq!(validate_event(&tampered, now()), Err(RejectReason::BadId));
    // Well-signed by someone else than the key in `pubkey`.
    let mut stolen = ev.clone();
    stolen.pubkey = keys(3).public_key();
    assert_eq!(validate_event(&stolen, now()), Err(RejectReason::BadId));
}

#[test]
fn time_window() {
    let k = keys(2);
    let ev = sign_event(
        &submission(3),
        &k,
        Timestamp::from_secs(T0 + MAX_FUTURE_SKEW_SECS + 1),
        &mut rng(1),
    )
    .unwrap();
    assert_eq!(validate_event(&ev, now()), Err(RejectReason::FromTheFuture));
    // Without a clock (re-verifying stored events) the window is not checked.
    assert!(verify_event(&ev).is_ok());
    let ro = signed(&round_open(3), &keys(1));
    let later = Timestamp::from_secs(round_open(3).last_deadline() + EXPIRY_GRACE_SECS + 1);
    assert_eq!(validate_event(&ro, later), Err(RejectReason::Expired));
}

#[test]
fn content_schema_errors_are_typed() {
    let k = keys(2);
    let s = submission(3);
    let t = s.tags();
    let e = raw(4022, "not json", t.clone(), &k);
    assert!(matches!(
        validate_event(&e, now()),
        Err(RejectReason::BadContent(_))
    ));
    let mut j: serde_json::Value = serde_json::from_str(&s.to_content()).unwrap();
    j["v"] = 2.into();
    let e = raw(4022, &j.to_string(), t.clone(), &k);
    assert_eq!(
        validate_event(&e, now()),
        Err(RejectReason::UnsupportedVersion(2))
    );
    let mut bad = s.clone();
    bad.size = 0;
    let e = raw(4022, &bad.to_content(), t.clone(), &k);
    assert!(matches!(
        validate_event(&e, now()),
        Err(RejectReason::Schema(_))
    ));
    let mut ro = round_open(3);
    ro.k = 9;
    let e = raw(4021, &ro.to_content(), ro.tags(), &keys(1));
    assert!(matches!(
        validate_event(&e, now()),
        Err(RejectReason::Schema(_))
    ));
    // A round open whose seed is not derived from the previous checkpoint (a biased seed).
    let mut ro = round_open(3);
    ro.seed = Seed32([0; 32]);
    let e = raw(4021, &ro.to_content(), ro.tags(), &keys(1));
    assert!(matches!(
        validate_event(&e, now()),
        Err(RejectReason::Schema(_))
    ));
}

#[test]
fn tags_must_match_content() {
    let k = keys(2);
    let s = submission(3);
    // Round tag says 4, content says 3.
    let mut t = s.tags();
    t[1] = tags::round(4);
    let e = raw(4022, &s.to_content(), t, &k);
    assert_eq!(
        validate_event(&e, now()),
        Err(RejectReason::TagMismatch("z".into()))
    );
    // Missing run tag.
    let t: Vec<Tag> = s.tags().into_iter().skip(1).collect();
    let e = raw(4022, &s.to_content(), t, &k);
    assert_eq!(
        validate_event(&e, now()),
        Err(RejectReason::MissingTag("n".into()))
    );
    // An extra indexed tag (would file the event under another blob).
    let mut t = s.tags();
    t.push(tags::blob(&BlobHash([1; 32])));
    let e = raw(4022, &s.to_content(), t, &k);
    assert_eq!(
        validate_event(&e, now()),
        Err(RejectReason::TagMismatch("x".into()))
    );
    // Extra non-indexed tags are fine.
    let mut t = s.tags();
    t.push(Tag::custom(TagKind::custom("client"), ["l402-node"]));
    let e = raw(4022, &s.to_content(), t, &k);
    assert!(validate_event(&e, now()).is_ok());
}

/// The coordinator keeps its own just-signed offer without re-verifying it (`parse::own`): the
/// result equals what `parse` gives, and the schema rule still runs.
#[test]
fn own_offer_is_what_parse_returns() {
    let o = offer(3, SubmissionId([1; 32]), &keys(1));
    let e = signed(&o, &keys(1));
    assert_eq!(
        parse::own(&e, o.clone(), EscrowOffer::check),
        parse::parse::<EscrowOffer>(&e, None)
    );
    let mut unbound = o.clone();
    unbound.submission = SubmissionId([2; 32]);
    assert!(parse::own(&e, unbound, EscrowOffer::check).is_err());
}

/// `ro` with a seed no offer of the tests was made over.
fn with_other_seed(ro: &RoundOpen) -> RoundOpen {
    let mut other = ro.clone();
    other.seed = Seed32([9; 32]);
    other
}

/// The offer's committee proof is checked once, at decode, over the round seed the offer names;
/// a role then only compares that seed with its round's.
#[test]
fn offer_committee_proof_is_checked_at_decode_over_its_round_seed() {
    let c = keys(1);
    let o = offer(3, SubmissionId([1; 32]), &c);
    let v = parse::parse::<EscrowOffer>(&signed(&o, &c), None).unwrap();
    let ro = round_open(3);
    assert_eq!(
        ro.offer_committee(&v).unwrap(),
        v.dealings[0].body().validators
    );
    // A round open with another seed does not take the committee from this offer.
    assert_eq!(
        with_other_seed(&ro).offer_committee(&v),
        Err(crate::quorum::committee::CommitteeError::OtherRoundSeed)
    );
    // An offer naming a seed its proof was not made over is refused at decode.
    let mut wrong = o.clone();
    wrong.round_seed = Some(Seed32([9; 32]));
    assert!(matches!(
        validate_event(&signed(&wrong, &c), now()),
        Err(RejectReason::Schema(_))
    ));
    // So is a proof by another key than the author's.
    let mut forged = o;
    forged.committee = offer(3, SubmissionId([1; 32]), &keys(2)).committee;
    assert!(validate_event(&signed(&forged, &c), now()).is_err());
}

/// A version-1 offer (no round seed; what builds before content version 2 signed and stored)
/// still decodes, and each role checks its committee proof over the round's seed instead.
/// Version 2 must name the seed; other versions are refused, typed.
#[test]
fn version_1_offers_still_decode_and_their_proof_is_checked_by_the_role() {
    let c = keys(1);
    let mut v1 = offer(3, SubmissionId([1; 32]), &c);
    v1.round_seed = None;
    let e = signed(&v1, &c);
    assert!(e.content.contains("\"v\":1") && !e.content.contains("round_seed"));
    let v = parse::parse::<EscrowOffer>(&e, None).unwrap();
    assert_eq!(v.round_seed, None);
    let ro = round_open(3);
    assert_eq!(
        ro.offer_committee(&v).unwrap(),
        v.dealings[0].body().validators
    );
    // Its proof is checked by the role: another round's seed does not verify it ...
    assert!(with_other_seed(&ro).offer_committee(&v).is_err());
    // ... nor does a proof by another key than the author's (which decodes: nothing to check
    // it over at decode).
    let mut forged = v1.clone();
    forged.committee = offer(3, SubmissionId([1; 32]), &keys(2)).committee;
    let forged = parse::parse::<EscrowOffer>(&signed(&forged, &c), None).unwrap();
    assert!(ro.offer_committee(&forged).is_err());
    // Version 2 without the seed, version 1 with one, and an unknown version: refused.
    let with_v = |from: &str, to: &str| {
        let content = e.content.replace(from, to);
        raw(e.kind.as_u16(), &content, e.tags.clone().to_vec(), &c)
    };
    let v2_no_seed = with_v("\"v\":1", &format!("\"v\":{OFFER_CONTENT_VERSION}"));
    assert!(matches!(
        validate_event(&v2_no_seed, now()),
        Err(RejectReason::Schema(_))
    ));
    let v9 = with_v("\"v\":1", "\"v\":9");
    assert_eq!(
        validate_event(&v9, now()).err(),
        Some(RejectReason::UnsupportedVersion(9))
    );
    let current = signed(&offer(3, SubmissionId([1; 32]), &c), &c);
    assert!(current
        .content
        .contains(&format!("\"v\":{OFFER_CONTENT_VERSION}")));
    let v1_with_seed = raw(
        current.kind.as_u16(),
        &current
            .content
            .replace(&format!("\"v\":{OFFER_CONTENT_VERSION}"), "\"v\":1"),
        current.tags.clone().to_vec(),
        &c,
    );
    assert!(matches!(
        validate_event(&v1_with_seed, now()),
        Err(RejectReason::Schema(_))
    ));
}

#[test]
fn wrongly_bound_events_are_rejected() {
    // Attestation signed (inside) by validator 10 but published by validator 11.
    let a = attestation(3, SubmissionId([1; 32]), &keys(10));
    let e = raw(4025, &a.to_content(), a.tags(), &keys(11));
    assert_eq!(validate_event(&e, now()), Err(RejectReason::AuthorMismatch));
    // Escrow offer whose dealings were signed by someone else than the publisher.
    let o = offer(3, SubmissionId([1; 32]), &keys(1));
    let e = raw(4023, &o.to_content(), o.tags(), &keys(7));
    assert_eq!(validate_event(&e, now()), Err(RejectReason::AuthorMismatch));
    // Node announcement whose iroh signature binds another Nostr key.
    let na = node_announcement(&keys(10));
    let e = raw(34020, &na.to_content(), na.tags(), &keys(11));
    assert_eq!(validate_event(&e, now()), Err(RejectReason::BadBinding));
    // ... or whose Lightning node id was swapped after signing.
    let mut na = node_announcement(&keys(10));
    na.ln_node_id[1] ^= 1;
    let e = raw(34020, &na.to_content(), na.tags(), &keys(10));
    let err = validate_event(&e, now()).unwrap_err();
    assert!(
        matches!(err, RejectReason::BadBinding | RejectReason::Schema(_)),
        "{err:?}"
    );
    // An attestation with a corrupted inner signature.
    let a = attestation(3, SubmissionId([1; 32]), &keys(10));
    let mut j: serde_json::Value = serde_json::from_str(&a.to_content()).unwrap();
    let mut bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        j["attestation"].as_str().unwrap(),
    )
    .unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    j["attestation"] =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes).into();
    let e = raw(4025, &j.to_string(), a.tags(), &keys(10));
    assert!(matches!(
        validate_event(&e, now()),
        Err(RejectReason::Inner(_))
    ));
}

#[test]
fn replays_from_another_round_or_run_are_out_of_scope() {
    let c = keys(1);
    let scope3 = round_open(3).scope(c.public_key());
    let scope4 = round_open(4).scope(c.public_key());
    let sub3 = parse::<Submission>(&signed(&submission(3), &keys(2)), Some(now())).unwrap();
    assert_eq!(scope3.check_submission(&sub3), Ok(()));
    assert_eq!(scope4.check_submission(&sub3), Err(ScopeError::WrongRound));
    let mut other_run = scope3.clone();
    other_run.run_id = RunId::new("other-run").unwrap();
    assert_eq!(other_run.check_submission(&sub3), Err(ScopeError::WrongRun));

    let sid = sub3.id();
    let att3 = parse::<AttestationEvent>(
        &signed(
            &attestation(3, SubmissionId(sid.to_bytes()), &keys(10)),
            &keys(10),
        ),
        Some(now()),
    )
    .unwrap();
    assert_eq!(scope3.check_attestation(&att3), Ok(()));
    assert_eq!(scope4.check_attestation(&att3), Err(ScopeError::WrongRound));
    assert_eq!(
        other_run.check_attestation(&att3),
        Err(ScopeError::WrongRun)
    );
    // Re-wrapping the signed round-3 attestation in an event tagged for round 4 does not help:
    // the tags must match the signed content.
    let a = attestation(3, SubmissionId(sid.to_bytes()), &keys(10));
    let mut t = a.tags();
    t[1] = tags::round(4);
    let e = raw(4025, &a.to_content(), t, &keys(10));
    assert_eq!(
        validate_event(&e, now()),
        Err(RejectReason::TagMismatch("z".into()))
    );
    // A validator outside the committee.
    let outsider = parse::<AttestationEvent>(
        &signed(
            &attestation(3, SubmissionId(sid.to_bytes()), &keys(30)),
            &keys(30),
        ),
        Some(now()),
    )
    .unwrap();
    assert_eq!(
        scope3.check_attestation(&outsider),
        Err(ScopeError::WrongAuthor)
    );
}

#[test]
fn verified_reverifies_on_deserialize() {
    let v = parse::<Submission>(&signed(&submission(3), &keys(2)), None).unwrap();
    let json = serde_json::to_string(&v).unwrap();
    let back: Verified<Submission> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v);
    let tampered = json.replace("4096", "4097");
    assert!(serde_json::from_str::<Verified<Submission>>(&tampered).is_err());
}

#[test]
fn kinds_are_stable() {
    let nums: Vec<u16> = L402Kind::ALL.iter().map(|k| k.as_u16()).collect();
    assert_eq!(
        nums,
        [34020, 34021, 34022, 4021, 4022, 4023, 4024, 4025, 4026, 4027, 4028, 4029, 4030, 4031]
    );
    for k in L402Kind::ALL {
        assert_eq!(L402Kind::from_u16(k.as_u16()), Some(k));
        assert_eq!(k.kind().is_addressable(), k.is_addressable());
        assert!(k.kind().is_regular() || k.kind().is_addressable());
    }
}

/// The examples in `specs/vectors/events/*.json` are exactly what this code produces and they
/// validate. `L2T_BLESS=1` rewrites them after an intentional format change.
#[test]
fn spec_vectors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/vectors/events");
    let bless = std::env::var("L2T_BLESS").is_ok();
    for (name, ev) in sample_events() {
        let path = dir.join(format!("{name}.json"));
        let fresh: serde_json::Value = serde_json::from_str(&ev.as_json()).unwrap();
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
        }
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with L2T_BLESS=1)", path.display()));
        let stored: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(stored, fresh, "{name} vector differs from the code");
        let v = parse_json(&stored.to_string(), None).unwrap();
        assert_eq!(v.event(), &ev);
    }
}

#[test]
fn evidence_events_carry_proofs() {
    use crate::escrow::{deal_with, BadShareComplaint, Corruption};
    let ro = round_open(3);
    let p = DealingParams {
        run_id: &ro.run_id,
        round: 3,
        submission: SubmissionId([1; 32]),
        peer: keys(2).public_key(),
        tranche: 0,
        spec: ro.tranches[0],
        claim_deadline: ro.claim_deadline,
        validators: &ro.validators,
        k: 3,
    };
    let (bad, _) = deal_with(&keys(1), &p, &[1; 32], Corruption::WrongShare(0)).unwrap();
    let complaint = BadShareComplaint::new(&bad, &keys(10), &[2; 32]).unwrap();
    let ev = signed(&Evidence::BadShare(complaint), &keys(10));
    let v = parse::<Evidence>(&ev, Some(now())).unwrap();
    assert_eq!(v.accused(), keys(1).public_key());
    assert_eq!(
        v.verify(),
        Ok(Proven::Dealer(crate::escrow::DealerFault::Inconsistent))
    );
    // The same complaint against an honest dealing is not evidence: the relay rejects it.
    let (good, _) = deal_with(&keys(1), &p, &[1; 32], Corruption::None).unwrap();
    let false_claim = BadShareComplaint::new(&good, &keys(10), &[2; 32]).unwrap();
    let ev = signed(&Evidence::BadShare(false_claim), &keys(10));
    assert!(matches!(
        validate_event(&ev, now()),
        Err(RejectReason::EvidenceNotProven(_))
    ));
}

/// The checkpoint event names its merged list by hash and stays small at any size: 5 000
/// merged submissions fit in one event; the blob decodes only against the event that names it,
/// and a version-1 checkpoint (inline list) is refused as unsupported.
#[test]
fn merged_list_by_hash_has_no_ceiling() {
    let c = keys(1);
    let merged: Vec<MergedSubmission> = (0..5000u32)
        .rev()
        .map(|i| {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_be_bytes());
            MergedSubmission {
                submission: SubmissionId(s),
                blob: BlobHash(*blake3::hash(&s).as_bytes()),
            }
        })
        .collect();
    let list = MergedList::new(run(), 9, BlobHash([4; 32]), merged);
    assert!(list
        .merged
        .windows(2)
        .all(|w| w[0].submission < w[1].submission));
    let cp = Checkpoint::new(&list, BlobHash([5; 32]));
    assert_eq!(cp.merged_count, 5000);
    assert_eq!(cp.merged_list, list.hash());
    let ev = signed(&cp, &c);
    assert!(
        ev.as_json().len() < 1024,
        "the event does not grow with the list"
    );
    let back = parse::<Checkpoint>(&ev, Some(now())).unwrap();
    let bytes = list.to_bytes();
    assert_eq!(MergedList::from_bytes(&bytes, &back).unwrap(), list);
    // Size is checked before hashing; the count, the parent and canonical order are checked too.
    let mut small = back.value().clone();
    small.merged_list_size = 10;
    assert!(matches!(
        MergedList::from_bytes(&bytes, &small),
        Err(MergedListError::TooLarge { .. })
    ));
    let other = MergedList::new(run(), 9, BlobHash([6; 32]), list.merged.clone());
    let other_cp = Checkpoint::new(&other, BlobHash([5; 32]));
    assert_eq!(
        MergedList::from_bytes(
            &other.to_bytes(),
            &Checkpoint {
                parent: BlobHash([4; 32]),
                ..other_cp
            }
        ),
        Err(MergedListError::Invalid("another run, round or parent"))
    );
    let pretty = serde_json::to_vec_pretty(&list).unwrap();
    let pretty_cp = Checkpoint {
        merged_list: BlobHash(*blake3::hash(&pretty).as_bytes()),
        merged_list_size: pretty.len() as u64,
        ..back.value().clone()
    };
    assert!(matches!(
        MergedList::from_bytes(&pretty, &pretty_cp),
        Err(MergedListError::Decode(_))
    ));
    // Version 1 carried the list inline; it is refused as such.
    let v1 = serde_json::json!({"v": 1, "run_id": "r", "round": 1, "checkpoint": BlobHash([5; 32]),
        "parent": BlobHash([4; 32]), "merged": []});
    assert_eq!(
        Checkpoint::from_content(&v1.to_string(), &c.public_key()),
        Err(RejectReason::UnsupportedVersion(1))
    );
}

#[test]
fn heldout_secrets_open_only_for_their_validator() {
    use crate::events::{BountyHeldout, HeldoutError, HeldoutSecrets};
    let (sponsor, v, other) = (keys(1), keys(2), keys(3));
    let secrets = HeldoutSecrets {
        v: 1,
        heldout_seed: Seed32([7; 32]),
        holdback_seed: Seed32([8; 32]),
    };
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([5; 32]);
    let h = BountyHeldout::seal(
        &mut rng,
        &sponsor,
        RunId::new("tiny-lm").unwrap(),
        v.public_key(),
        &secrets,
    );
    let ev = parse::<BountyHeldout>(&signed(&h, &sponsor), Some(now())).unwrap();
    assert!(!ev.ciphertext.contains("0707"), "not in the clear");
    assert_eq!(ev.open(&v, &ev.author()), Ok(secrets));
    assert_eq!(ev.open(&other, &ev.author()), Err(HeldoutError::NotForUs));
    assert_eq!(
        ev.open(&v, &other.public_key()),
        Err(HeldoutError::Undecryptable)
    );
}
