//! Cost of the trust core: event ingest, escrow dealing and checks, L402 verification. Each group
//! carries its baseline, measured in the same process:
//!
//! - `ingest`: the full `validate_event` pipeline vs the bare NIP-01 id + Schnorr check it
//!   contains, and the rejection of an oversized event (caps run before the signature check);
//! - `escrow`: dealing a tranche (n = 5 and 16) vs one NIP-44 encryption and one Schnorr
//!   signature; a validator's share check; reconstruction; a third party checking a complaint;
//!   per paid submission (3 tranches, n = 5, k = 3): the worker claiming, against the previous
//!   release's way (every released share checked, one ECDH per share), and the committee VRF;
//! - `l402`: verifying an `Authorization` header vs one SHA-256 of the preimage.
//!
//! Run: `cargo bench -p l402-protocol --bench trust`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use l402_protocol::escrow::{self, vss};
use l402_protocol::escrow::{
    deal, deal_in_offer, deal_with, BadShareComplaint, Corruption, DealingParams, OfferCipher,
    ShareChannel, TrancheSpec,
};
use l402_protocol::events::{
    sig, sign_event, validate_event, BlobHash, RunId, Score, SubmissionId,
};
use l402_protocol::l402;
use l402_protocol::quorum::{self, AttestationBody, Phase, Verdict};
use nostr::nips::nip44;
use nostr::{EventBuilder, Keys, Kind, SecretKey, Timestamp};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::time::Duration;

fn key(tag: u8, i: u8) -> Keys {
    let mut b = [tag; 32];
    b[31] = i;
    Keys::new(SecretKey::from_slice(&b).expect("valid key"))
}

fn attestation_event() -> nostr::Event {
    let v = key(1, 1);
    let body = AttestationBody {
        run_id: RunId::new("bench").expect("run id"),
        round: 1,
        phase: Phase::Initial,
        submission: SubmissionId([1; 32]),
        checkpoint: BlobHash([2; 32]),
        gradient: BlobHash([3; 32]),
        eval_seed: l402_protocol::events::Seed32([4; 32]),
        score: Score(1000),
        verdict: Verdict::Accept,
        validator: v.public_key(),
    };
    let content = l402_protocol::events::AttestationEvent {
        attestation: body.sign(&v, &[0; 32]).expect("sign"),
        peer: key(2, 1).public_key(),
        shares: vec![],
        fee_invoice: None,
    };
    sign_event(
        &content,
        &v,
        Timestamp::from_secs(1_000),
        &mut ChaCha20Rng::from_seed([0; 32]),
    )
    .expect("sign event")
}

fn ingest(c: &mut Criterion) {
    let ev = attestation_event();
    let now = Timestamp::from_secs(1_000);
    let big = EventBuilder::new(Kind::from_u16(4025), "x".repeat(70_000))
        .custom_created_at(now)
        .build(ev.pubkey);
    let big = big
        .sign_with_ctx(
            nostr::SECP256K1,
            &mut ChaCha20Rng::from_seed([1; 32]),
            &key(1, 1),
        )
        .expect("sign");
    let mut g = c.benchmark_group("ingest");
    g.bench_function("baseline_nip01_verify", |b| {
        b.iter(|| black_box(&ev).verify())
    });
    g.bench_function("validate_event_attestation", |b| {
        b.iter(|| validate_event(black_box(&ev), now).expect("valid"))
    });
    g.bench_function("reject_oversized", |b| {
        b.iter(|| validate_event(black_box(&big), now).expect_err("too large"))
    });
    g.finish();
}

fn escrow(c: &mut Criterion) {
    let dealer = key(3, 1);
    let run = RunId::new("bench").expect("run id");
    let vs16: Vec<Keys> = (1..=16).map(|i| key(4, i)).collect();
    let pks16: Vec<_> = vs16.iter().map(|k| k.public_key()).collect();
    let params = |validators, k| DealingParams {
        run_id: &run,
        round: 1,
        submission: SubmissionId([5; 32]),
        peer: key(6, 1).public_key(),
        tranche: 0,
        spec: TrancheSpec {
            amount_msat: 1000,
            threshold: Score(1),
            holdback: false,
        },
        claim_deadline: 2_000,
        validators,
        k,
    };
    let p5 = params(&pks16[..5], 3);
    let p16 = params(&pks16[..], 11);
    let mut g = c.benchmark_group("escrow");
    g.bench_function("baseline_nip44_encrypt", |b| {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        b.iter(|| {
            nip44::encrypt_with_rng(
                &mut rng,
                dealer.secret_key(),
                &pks16[0],
                [7u8; 32],
                nip44::Version::V2,
            )
            .expect("encrypt")
        })
    });
    g.bench_function("baseline_schnorr_sign", |b| {
        let msg = nostr::secp256k1::Message::from_digest([9; 32]);
        let kp = nostr::secp256k1::Keypair::from_secret_key(nostr::SECP256K1, dealer.secret_key());
        b.iter(|| nostr::SECP256K1.sign_schnorr_with_aux_rand(black_box(&msg), &kp, &[0; 32]))
    });
    g.bench_function("deal_n5_k3", |b| {
        b.iter(|| deal(&dealer, &p5, &[1; 32]).expect("deal"))
    });
    g.bench_function("deal_n16_k11", |b| {
        b.iter(|| deal(&dealer, &p16, &[1; 32]).expect("deal"))
    });
    // One offer's 4 dealings (3 tranches and a holdback) to a committee of 5: each with an
    // ephemeral key of its own (the previous way: 20 ECDH) against one for the offer (5 ECDH);
    // then one member opening its 4 shares, one ECDH per dealing against one per offer.
    let offer_params: Vec<_> = (0..4u32)
        .map(|t| DealingParams {
            tranche: t,
            ..params(&pks16[..5], 3)
        })
        .collect();
    g.bench_function("baseline_offer_4_dealings_own_ephemerals_n5_k3", |b| {
        b.iter(|| {
            offer_params
                .iter()
                .map(|p| deal(&dealer, p, &[1; 32]).expect("deal"))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("offer_4_dealings_one_ephemeral_n5_k3", |b| {
        b.iter(|| {
            let cipher = OfferCipher::new(&[2; 32], &pks16[..5]).expect("cipher");
            offer_params
                .iter()
                .map(|p| {
                    deal_in_offer(&dealer, p, &[1; 32], &cipher, Corruption::None).expect("deal")
                })
                .collect::<Vec<_>>()
        })
    });
    let own: Vec<_> = offer_params
        .iter()
        .map(|p| deal(&dealer, p, &[1; 32]).expect("deal").0)
        .collect();
    let cipher = OfferCipher::new(&[2; 32], &pks16[..5]).expect("cipher");
    let shared: Vec<_> = offer_params
        .iter()
        .map(|p| {
            deal_in_offer(&dealer, p, &[1; 32], &cipher, Corruption::None)
                .expect("deal")
                .0
        })
        .collect();
    g.bench_function("baseline_member_opens_4_dealings_own_ephemerals", |b| {
        b.iter(|| {
            own.iter()
                .map(|d| d.open_share(black_box(&vs16[0])).expect("share"))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("member_opens_4_dealings_one_ephemeral", |b| {
        b.iter(|| {
            let me = vs16[0].public_key();
            let ch = ShareChannel::new(vs16[0].secret_key(), &cipher.ephemeral()).expect("channel");
            shared
                .iter()
                .map(|d| d.open_share_via(&ch, black_box(&me)).expect("share"))
                .collect::<Vec<_>>()
        })
    });
    // A member's 4 Feldman checks: the commitments decompressed at each check (as before) vs
    // the points the dealing decompressed once when it was decoded.
    let me = vs16[0].public_key();
    let ch = ShareChannel::new(vs16[0].secret_key(), &cipher.ephemeral()).expect("channel");
    let opened: Vec<_> = shared
        .iter()
        .map(|d| d.open_share_via(&ch, &me).expect("share"))
        .collect();
    g.bench_function("baseline_member_checks_4_shares_decompressing", |b| {
        b.iter(|| {
            shared.iter().zip(&opened).all(|(d, s)| {
                vss::verify_share(&d.body().commitment_points().expect("points"), black_box(s))
            })
        })
    });
    g.bench_function("member_checks_4_shares_points_kept", |b| {
        b.iter(|| {
            shared
                .iter()
                .zip(&opened)
                .all(|(d, s)| vss::verify_share(d.commitment_points(), black_box(s)))
        })
    });
    // Signing a protocol object: deriving the keypair from the secret each time (as before) vs
    // the keypair `Keys` keeps; the same BIP-340 signature.
    g.bench_function("baseline_sign_object_deriving_keypair", |b| {
        b.iter(|| {
            let msg = nostr::secp256k1::Message::from_digest(sig::signing_digest(
                sig::DOMAIN_ATTESTATION,
                black_box(b"bench"),
            ));
            let kp =
                nostr::secp256k1::Keypair::from_secret_key(nostr::SECP256K1, dealer.secret_key());
            nostr::SECP256K1
                .sign_schnorr_with_aux_rand(&msg, &kp, &[0; 32])
                .serialize()
        })
    });
    g.bench_function("sign_object_kept_keypair", |b| {
        b.iter(|| {
            sig::sign(
                &dealer,
                sig::DOMAIN_ATTESTATION,
                black_box(b"bench"),
                &[0; 32],
            )
        })
    });
    // A validator's release channel to a worker it met in an earlier round: the ECDH again
    // (as before) vs the remembered conversation key.
    let worker = key(9, 9).public_key();
    g.bench_function("baseline_release_channel_derived", |b| {
        b.iter(|| ShareChannel::new(vs16[0].secret_key(), black_box(&worker)).expect("channel"))
    });
    // The derivation itself: nostr's NIP-44 `ConversationKey::derive` (the key lifted twice)
    // vs `ShareChannel::new` (the same key, lifted once).
    g.bench_function("baseline_channel_nip44_derive", |b| {
        b.iter(|| {
            nostr::nips::nip44::v2::ConversationKey::derive(
                vs16[0].secret_key(),
                black_box(&worker),
            )
            .expect("channel")
        })
    });
    ShareChannel::between(&vs16[0], &worker).expect("channel");
    g.bench_function("release_channel_remembered", |b| {
        b.iter(|| ShareChannel::between(&vs16[0], black_box(&worker)).expect("channel"))
    });
    let (d5, _) = deal(&dealer, &p5, &[1; 32]).expect("deal");
    g.bench_function("open_and_check_share_k3", |b| {
        b.iter(|| d5.open_share(black_box(&vs16[0])).expect("share"))
    });
    let shares: Vec<_> = vs16[..3]
        .iter()
        .map(|v| d5.open_share(v).expect("share"))
        .collect();
    g.bench_function("reconstruct_k3", |b| {
        b.iter(|| d5.reconstruct(black_box(&shares)).expect("preimage"))
    });
    // Share checks alone: the textbook Feldman check (baseline), the one-MSM check (the
    // previous way), Horner's rule over the small index (today's `verify_share`, at the largest
    // index n), and k shares checked one by one against one batch check (what reconstruction
    // does).
    for (k, n) in [(3, 5), (11, 16)] {
        let s = vss::share_random(&mut ChaCha20Rng::from_seed([3; 32]), k, n);
        g.bench_function(format!("baseline_verify_share_reference_k{k}"), |b| {
            b.iter(|| vss::verify_share_reference(&s.commitments, black_box(&s.shares[0])))
        });
        g.bench_function(format!("verify_share_msm_k{k}"), |b| {
            b.iter(|| vss::verify_share_msm(&s.commitments, black_box(&s.shares[n - 1])))
        });
        g.bench_function(format!("verify_share_horner_k{k}"), |b| {
            b.iter(|| vss::verify_share(&s.commitments, black_box(&s.shares[n - 1])))
        });
        g.bench_function(format!("baseline_verify_{k}_shares_one_by_one_k{k}"), |b| {
            b.iter(|| {
                s.shares[..k]
                    .iter()
                    .all(|sh| vss::verify_share_reference(&s.commitments, black_box(sh)))
            })
        });
        g.bench_function(format!("verify_{k}_shares_batch_k{k}"), |b| {
            b.iter(|| vss::verify_shares_batch(&s.commitments, black_box(&s.shares[..k])))
        });
    }
    // Per paid submission with 3 tranches, n = 5, k = 3: what the worker spends to claim, the
    // way the previous release did it (baseline) and now.
    let worker = key(6, 1);
    let offer: Vec<_> = (0..3u32)
        .map(|t| {
            let p = DealingParams {
                tranche: t,
                ..p5.clone()
            };
            deal(&dealer, &p, &[t as u8 + 1; 32]).expect("deal").0
        })
        .collect();
    // Each of 3 members releases its share of each tranche to the worker.
    let released: Vec<Vec<String>> = vs16[..3]
        .iter()
        .map(|v| {
            let mut rng = ChaCha20Rng::from_seed([4; 32]);
            offer
                .iter()
                .map(|d| {
                    let s = d.open_share(v).expect("share");
                    d.release_share(v, &s, &mut rng).expect("release")
                })
                .collect()
        })
        .collect();
    g.bench_function("baseline_worker_claims_t3_checked_shares", |b| {
        b.iter(|| {
            for (t, d) in offer.iter().enumerate() {
                let shares: Vec<_> = vs16[..3]
                    .iter()
                    .zip(&released)
                    .map(|(v, cts)| {
                        d.open_released_share(&worker, &v.public_key(), &cts[t])
                            .expect("share")
                    })
                    .collect();
                black_box(d.reconstruct(&shares).expect("preimage"));
            }
        })
    });
    g.bench_function("worker_claims_t3_hash_first", |b| {
        b.iter(|| {
            let chans: Vec<_> = vs16[..3]
                .iter()
                .map(|v| {
                    escrow::ShareChannel::new(worker.secret_key(), &v.public_key()).expect("ch")
                })
                .collect();
            for (t, d) in offer.iter().enumerate() {
                let shares: Vec<_> = vs16[..3]
                    .iter()
                    .zip(&released)
                    .zip(&chans)
                    .map(|((v, cts), ch)| {
                        d.decrypt_released_share(ch, &v.public_key(), &cts[t])
                            .expect("share")
                    })
                    .collect();
                black_box(d.reconstruct(&shares).expect("preimage"));
            }
        })
    });
    let seed = quorum::round_seed(&run, 1, &BlobHash([1; 32]));
    let sub = SubmissionId([5; 32]);
    g.bench_function("baseline_committee_vrf_prove_recomputing", |b| {
        b.iter(|| {
            quorum::committee::prove_recomputing(&dealer, &run, 1, &seed, black_box(&sub))
                .expect("vrf")
        })
    });
    g.bench_function("committee_vrf_prove", |b| {
        b.iter(|| quorum::committee::prove(&dealer, &run, 1, &seed, black_box(&sub)).expect("vrf"))
    });
    let (proof, _) = quorum::committee::prove(&dealer, &run, 1, &seed, &sub).expect("vrf");
    g.bench_function("committee_vrf_verify", |b| {
        b.iter(|| {
            quorum::committee::verify(
                &dealer.public_key(),
                &run,
                1,
                &seed,
                &sub,
                black_box(&proof),
            )
            .expect("valid")
        })
    });
    // The DLEQ check inside the VRF check and the complaint check: both sides as `lincomb`s with
    // one inversion per hashed point (baseline, the previous way) against `z·G` from the
    // generator table and one batch inversion.
    {
        use k256::{ProjectivePoint, Scalar};
        let x = Scalar::from(0x1234_5678_9abc_def0u64);
        let base2 = ProjectivePoint::GENERATOR * Scalar::from(99u64);
        let (p1, p2) = (ProjectivePoint::GENERATOR * x, base2 * x);
        let proof = escrow::dleq::prove(&x, &base2, b"bench", &[7; 32]);
        g.bench_function("baseline_dleq_verify_lincomb", |b| {
            b.iter(|| escrow::dleq::verify_lincomb(&p1, &base2, &p2, b"bench", black_box(&proof)))
        });
        g.bench_function("dleq_verify", |b| {
            b.iter(|| escrow::dleq::verify(&p1, &base2, &p2, b"bench", black_box(&proof)))
        });
    }
    let (bad, _) = deal_with(&dealer, &p5, &[1; 32], Corruption::WrongShare(0)).expect("deal");
    let complaint = BadShareComplaint::new(&bad, &vs16[0], &[3; 32]).expect("complaint");
    g.bench_function("third_party_checks_complaint", |b| {
        b.iter(|| black_box(&complaint).verify().expect("proven"))
    });
    g.finish();
}

fn l402_bench(c: &mut Criterion) {
    let secret = [1u8; 32];
    let run = RunId::new("bench").expect("run id");
    let preimage = l402_protocol::escrow::Preimage([2; 32]);
    let buyer = key(7, 1).public_key();
    let mac = l402::mint(
        &secret,
        &l402::MintParams {
            service: "submit",
            run: Some(&run),
            valid_until: Some(10_000),
            max_uses: Some(5),
            pubkey: Some(buyer),
            payment_hash: preimage.payment_hash(),
            token_id: [3; 32],
            location: None,
        },
    );
    let header = l402::authorization_header(&mac, &preimage);
    let ctx = l402::VerifyContext {
        service: "submit",
        run: Some(&run),
        now: 1,
        uses_so_far: 0,
        presenter: Some(&buyer),
    };
    let mut g = c.benchmark_group("l402");
    g.bench_function("baseline_sha256_preimage", |b| {
        b.iter(|| black_box(&preimage).payment_hash())
    });
    g.bench_function("verify_authorization", |b| {
        b.iter(|| l402::verify_authorization(&secret, black_box(&header), &ctx).expect("valid"))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group!(name = benches; config = config(); targets = ingest, escrow, l402_bench);
criterion_main!(benches);
