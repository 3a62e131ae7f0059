//! L402 tests: known-answer macaroon vectors, every rejection the issue names, lnget's regex.

use nostr::{Keys, SecretKey};

use super::*;
use crate::escrow::Preimage;
use crate::events::ids::{PaymentHash, RunId};

const SECRET: [u8; 32] = [0x42; 32];
const PREIMAGE: Preimage = Preimage([0x07; 32]);
const NOW: u64 = 1_700_000_000;

fn buyer() -> Keys {
    Keys::new(SecretKey::from_slice(&[0x55; 32]).unwrap())
}

fn run_a() -> RunId {
    RunId::new("run-a").unwrap()
}

fn token() -> Macaroon {
    let run = run_a();
    mint(
        &SECRET,
        &MintParams {
            service: "submit",
            run: Some(&run),
            valid_until: Some(NOW + 3600),
            max_uses: Some(3),
            pubkey: Some(buyer().public_key()),
            payment_hash: PREIMAGE.payment_hash(),
            token_id: [9; 32],
            location: Some("http://127.0.0.1:8402"),
        },
    )
}

fn ctx<'a>(run: &'a RunId, presenter: &'a nostr::PublicKey) -> VerifyContext<'a> {
    VerifyContext {
        service: "submit",
        run: Some(run),
        now: NOW,
        uses_so_far: 0,
        presenter: Some(presenter),
    }
}

/// libmacaroons' README example, reproduced by every macaroon implementation.
#[test]
fn libmacaroons_known_answers() {
    let key = b"this is our super secret key; only we should know it";
    let mut m = Macaroon::mint(key, b"we used our secret key", Some("http://mybank/"));
    assert_eq!(
        hex::encode(m.signature()),
        "e3d9e02908526c4c0039ae15114115d97fdd68bf2ba379b342aaf0f617d0552f"
    );
    for c in [
        "account = 3735928559",
        "time < 2020-01-01T00:00",
        "email = alice@example.org",
    ] {
        m.add_first_party_caveat(c.as_bytes());
    }
    assert_eq!(
        hex::encode(m.signature()),
        "ddf553e46083e55b8d71ab822be3d8fcf21d6bf19c40d617bb9fb438934474b6"
    );
    assert!(m.verify_signature(key));
    assert!(!m.verify_signature(b"another key"));
}

#[test]
fn v2_binary_layout() {
    let mut m = Macaroon::mint(b"k", b"id", Some("loc"));
    m.add_first_party_caveat(b"a=b");
    let b = m.serialize();
    let mut want = vec![
        2, 1, 3, b'l', b'o', b'c', 2, 2, b'i', b'd', 0, 2, 3, b'a', b'=', b'b', 0, 0, 6, 32,
    ];
    want.extend_from_slice(m.signature());
    assert_eq!(b, want);
    assert_eq!(Macaroon::deserialize(&b).unwrap(), m);
    assert_eq!(Macaroon::from_base64(&m.to_base64()).unwrap(), m);
    // Truncations and trailing bytes are errors, never panics.
    for cut in 0..b.len() {
        assert!(Macaroon::deserialize(&b[..cut]).is_err());
    }
    let mut long = b.clone();
    long.push(0);
    assert!(Macaroon::deserialize(&long).is_err());
    // A field claiming a huge length is rejected without allocating.
    let huge = [2u8, 2, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(Macaroon::deserialize(&huge).is_err());
    assert_eq!(
        Macaroon::deserialize(&vec![2; MAX_MACAROON_BYTES + 1]),
        Err(MacaroonError::TooLarge)
    );
}

#[test]
fn valid_credential_verifies() {
    let run = run_a();
    let pk = buyer().public_key();
    let h = authorization_header(&token(), &PREIMAGE);
    let info = verify_authorization(&SECRET, &h, &ctx(&run, &pk)).unwrap();
    assert_eq!(info.payment_hash, PREIMAGE.payment_hash());
    assert_eq!(info.max_uses, Some(3));
    assert_eq!(info.token_id, [9; 32]);
}

#[test]
fn wrong_preimage_is_rejected() {
    let run = run_a();
    let pk = buyer().public_key();
    let h = authorization_header(&token(), &Preimage([8; 32]));
    let e = verify_authorization(&SECRET, &h, &ctx(&run, &pk)).unwrap_err();
    assert_eq!(e, L402Error::WrongPreimage);
    assert_eq!(e.http_status(), 401);
}

#[test]
fn expired_token_is_rejected() {
    let run = run_a();
    let pk = buyer().public_key();
    let mut c = ctx(&run, &pk);
    c.now = NOW + 3601;
    let e = verify(&SECRET, &token(), &PREIMAGE, &c).unwrap_err();
    assert_eq!(e, L402Error::Expired);
    assert_eq!(e.http_status(), 402);
    c.now = NOW + 3600;
    assert!(verify(&SECRET, &token(), &PREIMAGE, &c).is_ok());
}

#[test]
fn token_for_another_run_is_rejected() {
    let other = RunId::new("run-b").unwrap();
    let pk = buyer().public_key();
    assert_eq!(
        verify(&SECRET, &token(), &PREIMAGE, &ctx(&other, &pk)),
        Err(L402Error::WrongRun)
    );
}

#[test]
fn tampered_caveat_is_rejected() {
    let run_b = RunId::new("run-b").unwrap();
    let pk = buyer().public_key();
    let orig = token().serialize();
    // Rewrite "run=run-a" into "run=run-b" in the serialised macaroon, keeping its signature.
    let pos = orig
        .windows(9)
        .position(|w| w == b"run=run-a")
        .expect("caveat present");
    let mut tampered = orig.clone();
    tampered[pos + 8] = b'b';
    let m = Macaroon::deserialize(&tampered).unwrap();
    assert_eq!(
        verify(&SECRET, &m, &PREIMAGE, &ctx(&run_b, &pk)),
        Err(L402Error::BadSignature)
    );
    // Raising max_uses 3 → 9 is caught the same way.
    let pos = orig.windows(10).position(|w| w == b"max_uses=3").unwrap();
    let mut tampered = orig.clone();
    tampered[pos + 9] = b'9';
    let m = Macaroon::deserialize(&tampered).unwrap();
    assert_eq!(
        verify(&SECRET, &m, &PREIMAGE, &ctx(&run_a(), &pk)),
        Err(L402Error::BadSignature)
    );
    // A macaroon minted under another server secret.
    assert_eq!(
        verify(&[1; 32], &token(), &PREIMAGE, &ctx(&run_a(), &pk)),
        Err(L402Error::BadSignature)
    );
}

#[test]
fn attenuation_only_restricts() {
    let run = run_a();
    let pk = buyer().public_key();
    let mut m = token();
    m.add_first_party_caveat(b"valid_until=1700000010");
    m.add_first_party_caveat(b"othersvc_capabilities=read"); // unknown: skipped
    let mut c = ctx(&run, &pk);
    assert!(verify(&SECRET, &m, &PREIMAGE, &c).is_ok());
    c.now = NOW + 11;
    assert_eq!(verify(&SECRET, &m, &PREIMAGE, &c), Err(L402Error::Expired));
    let mut m = token();
    m.add_first_party_caveat(b"max_uses=1");
    let mut c = ctx(&run, &pk);
    assert_eq!(
        verify(&SECRET, &m, &PREIMAGE, &c).unwrap().max_uses,
        Some(1)
    );
    c.uses_so_far = 1;
    assert_eq!(
        verify(&SECRET, &m, &PREIMAGE, &c),
        Err(L402Error::UsesExhausted)
    );
}

#[test]
fn uses_service_and_buyer_key_are_enforced() {
    let run = run_a();
    let pk = buyer().public_key();
    let mut c = ctx(&run, &pk);
    c.uses_so_far = 3;
    assert_eq!(
        verify(&SECRET, &token(), &PREIMAGE, &c),
        Err(L402Error::UsesExhausted)
    );
    let mut c = ctx(&run, &pk);
    c.service = "checkpoint";
    assert_eq!(
        verify(&SECRET, &token(), &PREIMAGE, &c),
        Err(L402Error::WrongService("checkpoint".into()))
    );
    // A copy of the token published in a submission is useless to another Nostr key.
    let thief = Keys::new(SecretKey::from_slice(&[0x66; 32]).unwrap()).public_key();
    assert_eq!(
        verify(&SECRET, &token(), &PREIMAGE, &ctx(&run, &thief)),
        Err(L402Error::WrongPubkey)
    );
    // A macaroon without a services caveat is refused.
    let id = Identifier {
        payment_hash: PREIMAGE.payment_hash(),
        token_id: [1; 32],
    };
    let bare = Macaroon::mint(&root_key(&SECRET, &[1; 32]), &id.encode(), None);
    assert_eq!(
        verify(&SECRET, &bare, &PREIMAGE, &ctx(&run, &pk)),
        Err(L402Error::MissingCaveat("services"))
    );
    // Identifier of another version or length.
    let mut bad_id = id.encode();
    bad_id[1] = 1;
    let m = Macaroon::mint(&root_key(&SECRET, &[1; 32]), &bad_id, None);
    assert_eq!(
        verify(&SECRET, &m, &PREIMAGE, &ctx(&run, &pk)),
        Err(L402Error::UnsupportedVersion(1))
    );
    let m = Macaroon::mint(b"k", b"short", None);
    assert_eq!(
        verify(&SECRET, &m, &PREIMAGE, &ctx(&run, &pk)),
        Err(L402Error::BadIdentifier)
    );
}

/// lnget's challenge parser (lightninglabs/lightning-agent-tools), verbatim.
const LNGET_REGEX: &str = r#"(?i)(LSAT|L402)\s+macaroon="([^"]+)",\s*invoice="([^"]+)""#;

#[test]
fn challenge_matches_lnget_regex() {
    let re = regex::Regex::new(LNGET_REGEX).unwrap();
    let invoice = "lnbcrt10u1pjexampleinvoice";
    for h in [
        challenge_header(&token(), invoice),
        challenge_with_scheme(Scheme::Lsat, &token(), invoice),
    ] {
        let caps = re.captures(&h).expect("lnget parses our challenge");
        assert_eq!(&caps[2], token().to_base64());
        assert_eq!(&caps[3], invoice);
        let parsed = parse_challenge(&h).unwrap();
        assert_eq!(parsed.macaroon, token());
        assert_eq!(parsed.invoice, invoice);
    }
}

#[test]
fn challenge_parser_accepts_token_form_and_any_case() {
    let b64 = token().to_base64();
    for h in [
        format!("L402 token=\"{b64}\", invoice=\"lnbc1x\""),
        format!("l402 version=\"0\", token=\"{b64}\", invoice=\"lnbc1x\""),
        format!("LSAT macaroon=\"{b64}\",invoice=\"lnbc1x\""),
        format!("lsat   invoice=\"lnbc1x\", macaroon={b64}"),
    ] {
        let c = parse_challenge(&h).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(c.macaroon, token());
        assert_eq!(c.invoice, "lnbc1x");
    }
    assert!(parse_challenge("Bearer realm=\"x\"").is_err());
    assert!(parse_challenge(&format!("L402 macaroon=\"{b64}\"")).is_err());
    assert!(parse_challenge(&format!(
        "L402 version=\"1\", macaroon=\"{b64}\", invoice=\"x\""
    ))
    .is_err());
}

#[test]
fn authorization_forms() {
    let b64 = token().to_base64();
    let hexp = hex::encode(PREIMAGE.0);
    let b64p = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, PREIMAGE.0);
    for h in [
        format!("L402 {b64}:{hexp}"),
        format!("LSAT {b64}:{hexp}"),
        format!("lsat {b64}:{b64p}"),
        format!("L402 token=\"{b64}:{hexp}\""),
        format!("L402 macaroon=\"{b64}\", preimage=\"{hexp}\""),
        format!("L402 token=\"{b64}\", preimage=\"{hexp}\""),
    ] {
        let c = parse_authorization(&h).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(c.macaroon, token());
        assert_eq!(c.preimage, PREIMAGE);
    }
    assert_eq!(
        parse_authorization(&format!("L402 {b64},{b64}:{hexp}")),
        Err(L402Error::MultipleMacaroons)
    );
    for bad in [
        String::new(),
        "L402".into(),
        format!("Basic {b64}:{hexp}"),
        format!("L402 {b64}"),
        format!("L402 {b64}:zz"),
        format!("L402 !!!:{hexp}"),
        format!("L402 {}:{hexp}", "A".repeat(MAX_HEADER_LEN)),
    ] {
        let e = parse_authorization(&bad).unwrap_err();
        assert!(
            matches!(e, L402Error::Header(_) | L402Error::Macaroon(_)),
            "{bad:.40}: {e:?}"
        );
    }
}

#[test]
fn submission_token_string() {
    let run = run_a();
    let pk = buyer().public_key();
    let s = format!("{}:{}", token().to_base64(), hex::encode(PREIMAGE.0));
    assert!(verify_token_string(&SECRET, &s, &ctx(&run, &pk)).is_ok());
    assert_eq!(
        PaymentHash::of_preimage(&PREIMAGE.0),
        PREIMAGE.payment_hash()
    );
}
