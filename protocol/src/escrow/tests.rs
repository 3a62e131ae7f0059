//! Escrow tests: honest dealings reconstruct, bad dealings are caught by the validator holding
//! the bad share and proven to a third party holding no secret.

use nostr::{Keys, PublicKey, SecretKey};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::events::ids::{RunId, Score, SubmissionId};

fn keys(i: u8) -> Keys {
    let mut b = [0x22u8; 32];
    b[31] = i;
    Keys::new(SecretKey::from_slice(&b).unwrap())
}

struct Fixture {
    dealer: Keys,
    peer: Keys,
    validators: Vec<Keys>,
    run: RunId,
}

impl Fixture {
    fn new(n: u8) -> Self {
        Self {
            dealer: keys(1),
            peer: keys(2),
            validators: (10..10 + n).map(keys).collect(),
            run: RunId::new("run-x").unwrap(),
        }
    }
    fn pks(&self) -> Vec<PublicKey> {
        self.validators.iter().map(|k| k.public_key()).collect()
    }
    /// Tranche `tranche` of submission `[5; 32]` to `pks` with threshold `k`.
    fn params<'a>(&'a self, pks: &'a [PublicKey], k: usize, tranche: u32) -> DealingParams<'a> {
        DealingParams {
            run_id: &self.run,
            round: 7,
            submission: SubmissionId([5; 32]),
            peer: self.peer.public_key(),
            tranche,
            spec: TrancheSpec {
                amount_msat: 10_000,
                threshold: Score(1_000),
                holdback: false,
            },
            claim_deadline: 1_000,
            validators: pks,
            k,
        }
    }
    fn deal(&self, k: usize, c: Corruption) -> (SignedDealing, Preimage) {
        let pks = self.pks();
        deal_with(&self.dealer, &self.params(&pks, k, 0), &[9; 32], c).unwrap()
    }
}

/// Released shares the worker receives from validators at `positions`.
fn released(f: &Fixture, d: &SignedDealing, positions: &[usize]) -> Vec<Share> {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    positions
        .iter()
        .map(|&i| {
            let v = &f.validators[i];
            let share = d.open_share(v).unwrap();
            let ct = d.release_share(v, &share, &mut rng).unwrap();
            d.open_released_share(&f.peer, &v.public_key(), &ct)
                .unwrap()
        })
        .collect()
}

#[test]
fn honest_dealing_any_k_of_n_reconstructs_and_k_minus_1_does_not() {
    let f = Fixture::new(5);
    let (d, p) = f.deal(3, Corruption::None);
    // The dealing survives its canonical encoding and its signature checks.
    let d = SignedDealing::decode(&d.encode()).unwrap();
    assert_eq!(d.body().payment_hash, p.payment_hash());
    for v in &f.validators {
        assert!(d.open_share(v).is_ok());
    }
    assert_eq!(d.reconstruct(&released(&f, &d, &[0, 2, 4])).unwrap(), p);
    assert_eq!(d.reconstruct(&released(&f, &d, &[4, 3, 1])).unwrap(), p);
    assert_eq!(
        d.reconstruct(&released(&f, &d, &[1, 3])),
        Err(ReconstructError::NotEnoughShares { valid: 2, k: 3 })
    );
    // An outsider holds no share.
    assert_eq!(d.open_share(&keys(99)), Err(ShareError::NotAValidator));
}

#[test]
fn dealing_is_deterministic_in_its_seed_and_tamper_evident() {
    let f = Fixture::new(4);
    let (a, pa) = f.deal(2, Corruption::None);
    let (b, pb) = f.deal(2, Corruption::None);
    assert_eq!(a.encode(), b.encode());
    assert_eq!(pa, pb);
    let mut bytes = a.encode();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    assert!(SignedDealing::decode(&bytes).is_err());
}

#[test]
fn inconsistent_share_is_caught_by_its_holder_and_proven_to_a_third_party() {
    let f = Fixture::new(5);
    let (d, _) = f.deal(3, Corruption::WrongShare(1));
    // Validator 1 catches it; the others' shares are fine.
    assert_eq!(
        d.open_share(&f.validators[1]),
        Err(ShareError::Inconsistent)
    );
    assert!(d.open_share(&f.validators[0]).is_ok());
    let complaint = BadShareComplaint::new(&d, &f.validators[1], &[3; 32]).unwrap();
    // A third party decodes the published bytes and checks them with no secret at all.
    let published = complaint.encode();
    let checked = BadShareComplaint::decode(&published).unwrap();
    assert_eq!(checked.verify(), Ok(DealerFault::Inconsistent));
    assert_eq!(checked.validator(), Some(f.validators[1].public_key()));
    // The honest shares still reconstruct with k valid ones.
    let shares = released(&f, &d, &[0, 2, 3]);
    assert!(d.reconstruct(&shares).is_ok());
}

#[test]
fn offer_dealings_share_one_ephemeral_and_complaints_still_prove_the_dealer() {
    let f = Fixture::new(4);
    let pks = f.pks();
    let params = |tranche: u32| f.params(&pks, 2, tranche);
    let cipher = OfferCipher::new(&[0x33; 32], &pks).unwrap();
    let deal = |t: u32, seed: u8, c: Corruption| {
        deal_in_offer(&f.dealer, &params(t), &[seed; 32], &cipher, c).unwrap()
    };
    let (bad, _) = deal(0, 1, Corruption::WrongShare(1));
    let (good, preimage) = deal(1, 2, Corruption::None);
    assert_eq!(bad.body().ephemeral, cipher.ephemeral());
    assert_eq!(good.body().ephemeral, cipher.ephemeral());
    // Same seeds, same bytes (a restarted dealer re-deals the offer identically).
    assert_eq!(deal(1, 2, Corruption::None).0.encode(), good.encode());
    // Each member opens the offer's dealings over one channel, as `open_share` would.
    for v in &f.validators {
        let ch = ShareChannel::new(v.secret_key(), &cipher.ephemeral()).unwrap();
        for d in [&bad, &good] {
            assert_eq!(d.open_share_via(&ch, &v.public_key()), d.open_share(v));
        }
    }
    // The bad share is proven against the dealer with the shared `E`; the same member cannot
    // accuse the offer's good dealing.
    let c = BadShareComplaint::new(&bad, &f.validators[1], &[3; 32]).unwrap();
    assert_eq!(
        BadShareComplaint::decode(&c.encode()).unwrap().verify(),
        Ok(DealerFault::Inconsistent)
    );
    let false_claim = BadShareComplaint::new(&good, &f.validators[1], &[3; 32]).unwrap();
    assert_eq!(false_claim.verify(), Err(EvidenceError::NotFaulty));
    // The good dealing still pays out with k released shares.
    let shares = released(&f, &good, &[0, 3]);
    assert_eq!(good.reconstruct(&shares), Ok(preimage));
    // A cipher made for another committee is refused.
    let other = OfferCipher::new(&[0x33; 32], &pks[..3]).unwrap();
    assert!(matches!(
        deal_in_offer(&f.dealer, &params(1), &[2; 32], &other, Corruption::None),
        Err(DealingError::Malformed(_))
    ));
}

#[test]
fn undecryptable_share_is_proven() {
    let f = Fixture::new(4);
    let (d, _) = f.deal(2, Corruption::GarbageCiphertext(2));
    assert_eq!(
        d.open_share(&f.validators[2]),
        Err(ShareError::Undecryptable)
    );
    let c = BadShareComplaint::new(&d, &f.validators[2], &[4; 32]).unwrap();
    assert_eq!(
        BadShareComplaint::decode(&c.encode()).unwrap().verify(),
        Ok(DealerFault::Undecryptable)
    );
}

#[test]
fn false_or_forged_complaints_are_rejected() {
    let f = Fixture::new(4);
    let (d, _) = f.deal(2, Corruption::None);
    // An honest dealing: a validator's complaint shows no fault.
    let c = BadShareComplaint::new(&d, &f.validators[0], &[5; 32]).unwrap();
    assert_eq!(c.verify(), Err(EvidenceError::NotFaulty));
    // A complaint whose DLEQ proof is altered does not verify.
    let (bad, _) = f.deal(2, Corruption::WrongShare(0));
    let c = BadShareComplaint::new(&bad, &f.validators[0], &[5; 32]).unwrap();
    let mut bytes = c.encode();
    let n = bytes.len();
    bytes[n - 1] ^= 1; // last byte of z
    assert!(matches!(
        BadShareComplaint::decode(&bytes).unwrap().verify(),
        Err(EvidenceError::BadProof(_))
    ));
    // Another validator cannot complain on behalf of validator 0: its own share is fine.
    let c = BadShareComplaint::new(&bad, &f.validators[1], &[5; 32]).unwrap();
    assert_eq!(c.verify(), Err(EvidenceError::NotFaulty));
}

#[test]
fn wrong_payment_hash_is_proven_by_the_worker() {
    let f = Fixture::new(3);
    let (d, p) = f.deal(2, Corruption::WrongPaymentHash);
    // Every share checks out, yet the secret does not open H.
    let shares = released(&f, &d, &[0, 1]);
    let Err(ReconstructError::HashMismatch { secret }) = d.reconstruct(&shares) else {
        panic!("expected a hash mismatch");
    };
    assert_eq!(secret, p);
    let ev = WrongPreimageEvidence::new(d.clone(), secret);
    let checked = WrongPreimageEvidence::decode(&ev.encode()).unwrap();
    assert_eq!(checked.verify(), Ok(DealerFault::WrongPreimage));
    // A made-up secret is not evidence.
    let fake = WrongPreimageEvidence::new(d, Preimage([7; 32]));
    assert!(matches!(fake.verify(), Err(EvidenceError::BadProof(_))));
    // Nor is the right secret of an honest dealing.
    let (h, hp) = f.deal(2, Corruption::None);
    assert_eq!(
        WrongPreimageEvidence::new(h, hp).verify(),
        Err(EvidenceError::NotFaulty)
    );
}

#[test]
fn malformed_dealing_is_proven() {
    let f = Fixture::new(3);
    let (good, _) = f.deal(2, Corruption::None);
    // Same body with k raised above n, signed by the dealer.
    let mut body = good.body().clone();
    body.k = 5;
    let signed =
        MalformedDealingEvidence::sign_malformed_for_tests(&f.dealer, &body.encode(), &[1; 32]);
    assert!(matches!(
        SignedDealing::decode(&signed),
        Err(DealingError::Malformed(_))
    ));
    let ev = MalformedDealingEvidence::new(f.dealer.public_key(), signed.clone());
    let checked = MalformedDealingEvidence::decode(&ev.encode()).unwrap();
    assert_eq!(checked.verify(), Ok(DealerFault::Malformed));
    // Blaming another key fails; a well-formed dealing is not evidence.
    let wrong = MalformedDealingEvidence::new(f.peer.public_key(), signed);
    assert!(matches!(wrong.verify(), Err(EvidenceError::BadProof(_))));
    let fine = MalformedDealingEvidence::new(f.dealer.public_key(), good.encode());
    assert_eq!(fine.verify(), Err(EvidenceError::NotFaulty));
}

#[test]
fn released_shares_are_checked_by_the_worker() {
    let f = Fixture::new(3);
    let (d, _) = f.deal(2, Corruption::None);
    let v = &f.validators[0];
    let share = d.open_share(v).unwrap();
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    // A validator releasing a wrong value is caught by the Feldman check.
    let mut wrong = share;
    wrong.value[31] ^= 1;
    let ct = d.release_share(v, &wrong, &mut rng).unwrap();
    assert!(d
        .open_released_share(&f.peer, &v.public_key(), &ct)
        .is_err());
    // A share released under another validator's name does not decrypt.
    let ct = d.release_share(v, &share, &mut rng).unwrap();
    assert_eq!(
        d.open_released_share(&f.peer, &f.validators[1].public_key(), &ct),
        Err(ShareError::Undecryptable)
    );
    // Only the worker can read it.
    assert_eq!(
        d.open_released_share(&keys(77), &v.public_key(), &ct),
        Err(ShareError::Undecryptable)
    );
}
