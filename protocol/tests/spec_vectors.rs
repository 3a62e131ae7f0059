//! Test vectors of specs L2T-04 (quorum), L2T-05 (escrow) and L2T-08 (L402): each file in
//! `specs/vectors/` is exactly what the code produces from fixed inputs, and decoding the stored
//! bytes gives back what the spec says. `L2T_BLESS=1` rewrites the files after an intentional
//! format change. (Event vectors, L2T-01, are checked in `events::tests::spec_vectors`.)
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use l402_protocol::escrow::{
    deal_with, BadShareComplaint, Corruption, DealerFault, DealingParams, SignedDealing,
    TrancheSpec,
};
use l402_protocol::events::{BlobHash, RunId, Score, Seed32, SubmissionId};
use l402_protocol::l402;
use l402_protocol::quorum::{
    eval_seed, round_seed, select_validators, AttestationBody, EquivocationEvidence, Phase,
    RejectCode, SignedAttestation, Verdict,
};
use nostr::{Keys, PublicKey, SecretKey};
use serde_json::{json, Value};

fn key(tag: u8, i: u8) -> Keys {
    let mut b = [tag; 32];
    b[31] = i;
    Keys::new(SecretKey::from_slice(&b).unwrap())
}

fn check_vector(rel: &str, fresh: Value) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../specs/vectors")
        .join(rel);
    if std::env::var("L2T_BLESS").is_ok() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with L2T_BLESS=1)", path.display()));
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stored, fresh, "{rel} differs from what the code produces");
    stored
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn dealing_inputs(validators: &[PublicKey]) -> DealingParams<'_> {
    DealingParams {
        run_id: Box::leak(Box::new(RunId::new("vector-run").unwrap())),
        round: 1,
        submission: SubmissionId([0x5a; 32]),
        peer: key(0x20, 1).public_key(),
        tranche: 0,
        spec: TrancheSpec {
            amount_msat: 25_000,
            threshold: Score(10_000),
            holdback: false,
        },
        claim_deadline: 1_700_000_300,
        validators,
        k: 2,
    }
}

#[test]
fn escrow_dealing_vector() {
    let dealer = key(0x10, 1);
    let vs: Vec<Keys> = (1..=3).map(|i| key(0x30, i)).collect();
    let pks: Vec<PublicKey> = vs.iter().map(|k| k.public_key()).collect();
    let seed = [0x77u8; 32];
    let (d, p) = deal_with(&dealer, &dealing_inputs(&pks), &seed, Corruption::None).unwrap();
    let shares: Vec<String> = vs
        .iter()
        .map(|v| hex::encode(d.open_share(v).unwrap().value))
        .collect();
    let fresh = json!({
        "description": "2-of-3 Feldman dealing of one tranche (L2T-05 §dealing)",
        "dealer_secret": hex::encode(dealer.secret_key().to_secret_bytes()),
        "validator_secrets": vs.iter().map(|v| hex::encode(v.secret_key().to_secret_bytes())).collect::<Vec<_>>(),
        "deal_seed": hex::encode(seed),
        "signed_dealing": hex::encode(d.encode()),
        "payment_hash": d.body().payment_hash.to_hex(),
        "preimage": hex::encode(p.0),
        "shares": shares,
    });
    let v = check_vector("escrow/dealing.json", fresh);
    // From the stored bytes alone: signature, shares, reconstruction, hash.
    let d = SignedDealing::decode(&hx(&v["signed_dealing"])).unwrap();
    assert_eq!(d.body().k, 2);
    let secrets: Vec<Keys> = v["validator_secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Keys::new(SecretKey::from_slice(&hx(s)).unwrap()))
        .collect();
    let opened: Vec<_> = secrets.iter().map(|k| d.open_share(k).unwrap()).collect();
    for (s, want) in opened.iter().zip(v["shares"].as_array().unwrap()) {
        assert_eq!(hex::encode(s.value), want.as_str().unwrap());
    }
    let p = d.reconstruct(&opened[1..]).unwrap();
    assert_eq!(hex::encode(p.0), v["preimage"].as_str().unwrap());
    assert_eq!(
        p.payment_hash().to_hex(),
        v["payment_hash"].as_str().unwrap()
    );
}

#[test]
fn escrow_complaint_vector() {
    let dealer = key(0x10, 1);
    let vs: Vec<Keys> = (1..=3).map(|i| key(0x30, i)).collect();
    let pks: Vec<PublicKey> = vs.iter().map(|k| k.public_key()).collect();
    let (d, _) = deal_with(
        &dealer,
        &dealing_inputs(&pks),
        &[0x78; 32],
        Corruption::WrongShare(1),
    )
    .unwrap();
    let c = BadShareComplaint::new(&d, &vs[1], &[0x79; 32]).unwrap();
    let fresh = json!({
        "description": "validator 1's share is off by one; its complaint reveals S = v·E with a DLEQ proof (L2T-05 §evidence). Check with no secret.",
        "complaint": hex::encode(c.encode()),
        "expected_fault": "Inconsistent",
    });
    let v = check_vector("escrow/complaint.json", fresh);
    let c = BadShareComplaint::decode(&hx(&v["complaint"])).unwrap();
    assert_eq!(c.verify(), Ok(DealerFault::Inconsistent));
}

#[test]
fn quorum_vectors() {
    let run = RunId::new("vector-run").unwrap();
    let seed = round_seed(&run, 7, &BlobHash([0xcc; 32]));
    let candidates: BTreeSet<PublicKey> = (1..=8).map(|i| key(0x40, i).public_key()).collect();
    let committee = select_validators(&candidates, &seed, 3, 2).unwrap();
    let sub = SubmissionId([0x5b; 32]);
    let v1 = key(0x40, 1);
    let body = AttestationBody {
        run_id: run.clone(),
        round: 7,
        phase: Phase::Initial,
        submission: sub,
        checkpoint: BlobHash([0xcd; 32]),
        gradient: BlobHash([0xce; 32]),
        eval_seed: eval_seed(&seed, &sub),
        score: Score(12_345),
        verdict: Verdict::Accept,
        validator: v1.public_key(),
    };
    let a = body.clone().sign(&v1, &[0x01; 32]).unwrap();
    let b = AttestationBody {
        verdict: Verdict::Reject(RejectCode::Copied),
        ..body
    }
    .sign(&v1, &[0x02; 32])
    .unwrap();
    let eq = EquivocationEvidence::new(a.clone(), b).unwrap();
    let fresh = json!({
        "description": "round seed, committee draw, eval seed, a signed attestation and equivocation evidence (L2T-04)",
        "run_id": "vector-run",
        "round": 7,
        "prev_checkpoint": "cc".repeat(32),
        "round_seed": seed.to_hex(),
        "candidates": candidates.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
        "n": 3,
        "committee": committee.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
        "submission": sub.to_hex(),
        "eval_seed": eval_seed(&seed, &sub).to_hex(),
        "attestation": hex::encode(a.encode()),
        "equivocation": hex::encode(eq.encode()),
    });
    let v = check_vector("quorum/vectors.json", fresh);
    let a = SignedAttestation::decode(&hx(&v["attestation"])).unwrap();
    assert_eq!(a.body().score, Score(12_345));
    assert_eq!(
        a.body().eval_seed,
        Seed32::from_hex(v["eval_seed"].as_str().unwrap()).unwrap()
    );
    let eq = EquivocationEvidence::decode(&hx(&v["equivocation"])).unwrap();
    assert_eq!(eq.validator(), v1.public_key());
}

#[test]
fn l402_vector() {
    let secret = [0x42u8; 32];
    let run = RunId::new("vector-run").unwrap();
    let preimage = l402_protocol::escrow::Preimage([0x07; 32]);
    let buyer = key(0x50, 1).public_key();
    let mac = l402::mint(
        &secret,
        &l402::MintParams {
            service: "submit",
            run: Some(&run),
            valid_until: Some(1_700_003_600),
            max_uses: Some(3),
            pubkey: Some(buyer),
            payment_hash: preimage.payment_hash(),
            token_id: [0x09; 32],
            location: Some("http://127.0.0.1:8402"),
        },
    );
    let fresh = json!({
        "description": "an L402 submission token (L2T-08): server secret, macaroon, headers",
        "server_secret": hex::encode(secret),
        "preimage": hex::encode(preimage.0),
        "buyer": buyer.to_hex(),
        "macaroon_hex": hex::encode(mac.serialize()),
        "caveats": mac.caveats().iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>(),
        "challenge": l402::challenge_header(&mac, "lnbcrt250n1vector"),
        "authorization": l402::authorization_header(&mac, &preimage),
    });
    let v = check_vector("l402/token.json", fresh);
    let buyer = PublicKey::from_hex(v["buyer"].as_str().unwrap()).unwrap();
    let ctx = l402::VerifyContext {
        service: "submit",
        run: Some(&run),
        now: 1_700_000_000,
        uses_so_far: 0,
        presenter: Some(&buyer),
    };
    let secret: [u8; 32] = hx(&v["server_secret"]).try_into().unwrap();
    let info =
        l402::verify_authorization(&secret, v["authorization"].as_str().unwrap(), &ctx).unwrap();
    assert_eq!(info.max_uses, Some(3));
    let c = l402::parse_challenge(v["challenge"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex::encode(c.macaroon.serialize()),
        v["macaroon_hex"].as_str().unwrap()
    );
}
