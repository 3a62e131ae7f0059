//! Sample announcements, derived deterministically from a seed: for tests, benchmarks and demos.
//!
//! Keys come from BLAKE3 of a label and the seed, so the same seed gives the same identities.
//! Each sample is a valid l402 announcement (it passes `validate_event`).

use ed25519_dalek::SigningKey;
use l402_protocol::escrow::linear_schedule;
use l402_protocol::events::{
    BlobHash, Bounty, Direction, NodeAnnouncement, Role, RunAnnouncement, RunId, Score, Seed32,
    ValidatorTerms,
};
use l402_protocol::quorum::Tolerance;
use nostr_sdk::prelude::{Keys, SecretKey};

fn derive(label: &str, seed: u64, i: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(label.as_bytes());
    h.update(&seed.to_le_bytes());
    h.update(&i.to_le_bytes());
    *h.finalize().as_bytes()
}

/// The `i`-th Nostr identity of `seed`.
pub fn keys(seed: u64, i: u64) -> Keys {
    let mut ctr = 0u64;
    loop {
        // A 32-byte hash is a valid secp256k1 secret key with overwhelming probability.
        if let Ok(sk) = SecretKey::from_slice(&derive("l402/sample/nostr", seed, i ^ (ctr << 48))) {
            return Keys::new(sk);
        }
        ctr += 1;
    }
}

/// The `i`-th iroh (ed25519) key of `seed`.
pub fn iroh_key(seed: u64, i: u64) -> SigningKey {
    SigningKey::from_bytes(&derive("l402/sample/iroh", seed, i))
}

/// A Lightning node id (compressed secp256k1 point) for the `i`-th node of `seed`.
pub fn ln_node_id(seed: u64, i: u64) -> [u8; 33] {
    let mut out = [2u8; 33];
    out[1..].copy_from_slice(&keys(seed ^ 0x4c4e, i).public_key().to_bytes());
    out
}

/// A node announcement for `author`, as node `i` of `seed`; a validator if `validator`.
pub fn node_announcement(author: &Keys, seed: u64, i: u64, validator: bool) -> NodeAnnouncement {
    let mut roles = vec![Role::Peer];
    if validator {
        roles.push(Role::Validator);
    }
    let mut a = NodeAnnouncement::new(
        &author.public_key(),
        &iroh_key(seed, i),
        ln_node_id(seed, i),
        roles,
        validator.then_some(ValidatorTerms { fee_msat: 500 }),
    );
    a.iroh_addrs = vec![format!("127.0.0.1:{}", 40_000 + (i % 20_000))];
    a
}

/// A coordinator's node announcement.
pub fn coordinator_announcement(author: &Keys, seed: u64, i: u64) -> NodeAnnouncement {
    NodeAnnouncement::new(
        &author.public_key(),
        &iroh_key(seed, i),
        ln_node_id(seed, i),
        vec![Role::Coordinator],
        None,
    )
}

/// A run announcement with id `run_id`.
///
/// # Panics
/// If `run_id` is not a valid run id (see `RunId::new`); samples use fixed valid ids.
pub fn run_announcement(run_id: &str, title: &str) -> RunAnnouncement {
    RunAnnouncement {
        v: 1,
        run_id: RunId::new(run_id).expect("sample run ids are valid"),
        title: title.into(),
        model: "byte-gpt L2 d128".into(),
        genesis_checkpoint: BlobHash(derive("l402/sample/genesis", 0, 0)),
        round_secs: 300,
        n: 3,
        k: 2,
        tranches: linear_schedule(40_000, 3, Score(30_000), 250_000),
        submission_price_msat: 1_000,
        tolerance: Tolerance::default(),
        gateway: None,
    }
}

/// A bounty with id `bounty_id`.
///
/// # Panics
/// If `bounty_id` is not a valid id; samples use fixed valid ids.
pub fn bounty(bounty_id: &str, title: &str, deadline: u64) -> Bounty {
    Bounty {
        v: 1,
        bounty_id: RunId::new(bounty_id).expect("sample bounty ids are valid"),
        title: title.into(),
        baseline: BlobHash(derive("l402/sample/baseline", 0, 0)),
        mutable_files: vec!["train.py".into()],
        eval_command: "python eval.py".into(),
        metric: "val_loss".into(),
        direction: Direction::Minimize,
        public_eval: BlobHash(derive("l402/sample/public-eval", 0, 0)),
        heldout_commitment: Seed32(derive("l402/sample/heldout", 0, 0)),
        pool_msat: 1_000_000,
        target_improvement: Score(50_000),
        deadline,
        diff_size_cap: 65_536,
        n: 3,
        k: 2,
        holdback_ppm: 200_000,
        margin: Score(1_000),
        tranches: 10,
        reveal_window_secs: 600,
        gateway: None,
    }
}
