//! `l402-node init`: generate the node's keys and write a commented configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use rand::RngCore;

use crate::config::{self, CoordinatorRole, NodeConfig, NodeKeys, PeerRole, Roles, ValidatorRole};

/// Arguments of `l402-node init`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Data dir to create.
    #[arg(long, env = "L402_DATA_DIR", default_value = "l402-data")]
    pub data_dir: PathBuf,
    /// Nostr relay (repeat for several); none runs the embedded relay.
    #[arg(long = "relay")]
    pub relays: Vec<String>,
    /// Esplora API of the chain.
    #[arg(long, default_value = "http://127.0.0.1:3002")]
    pub esplora: String,
    /// Bitcoin network.
    #[arg(long, default_value = "regtest")]
    pub network: String,
    /// Lightning P2P listen address.
    #[arg(long, default_value = "127.0.0.1:9735")]
    pub lightning_listen: SocketAddr,
    /// iroh bind address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub iroh_bind: SocketAddr,
    /// HTTP gateway address.
    #[arg(long, default_value = "127.0.0.1:8402")]
    pub gateway: SocketAddr,
    /// Coordinate a run with this id.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Rounds the coordinator runs.
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
    /// The coordinator waits for `POST /admin/start` before the first round.
    #[arg(long)]
    pub wait_for_start: bool,
    /// Sponsor the example autoresearch bounty (tiny-lm) as the coordinated run.
    #[arg(long, requires = "coordinator")]
    pub bounty: bool,
    /// Train and submit.
    #[arg(long)]
    pub peer: bool,
    /// Peer behaviour: honest, free-rider, copier, sign-flip, copycat-noise, alie, stale,
    /// corrupting-provider.
    #[arg(long, default_value = "honest")]
    pub behaviour: String,
    /// An `alie` peer's z (mean − z·σ).
    #[arg(long)]
    pub alie_z: Option<f64>,
    /// The coordinator's committee size n (validators per submission).
    #[arg(long, default_value_t = 3)]
    pub committee: u32,
    /// The coordinator's quorum k.
    #[arg(long, default_value_t = 2)]
    pub k: u32,
    /// Seconds from a round's open to its submit deadline (attest: twice this, claim: attest
    /// + 60).
    #[arg(long, default_value_t = 25)]
    pub submit_secs: u64,
    /// Opt in as a validator, charging this fee per attestation (sats).
    #[arg(long)]
    pub validator_fee: Option<u64>,
    /// Validator behaviour (the simulator's real mode): `colluding` accepts the `--favour`
    /// peers' submissions unevaluated and rejects every other one; `equivocating` evaluates
    /// honestly and also publishes the opposite verdict, signed; `lazy` accepts everything
    /// with a fixed score, without fetching or evaluating.
    #[arg(long, requires = "validator_fee", value_parser = ["honest", "colluding", "equivocating", "lazy"])]
    pub validator_behaviour: Option<String>,
    /// A peer (Nostr public key, hex) a colluding validator favours; repeatable.
    #[arg(long, requires = "validator_behaviour")]
    pub favour: Vec<String>,
    /// Byzantine coordinator (the simulator's real mode): corrupt the escrow dealings of round
    /// ROUND as KIND (wrong-share, garbage-ciphertext, wrong-payment-hash); repeatable.
    #[arg(long, value_name = "ROUND:KIND", requires = "coordinator")]
    pub dealer_fault: Vec<crate::config::DealingFaultAt>,
    /// Derive the node's keys (Nostr, iroh, Lightning seed) from this 32-byte hex seed instead
    /// of the OS RNG: for reproducible test swarms only (`demo --key-seed`), never for a node
    /// that holds real money.
    #[arg(long, hide = true, value_name = "HEX")]
    pub key_seed: Option<String>,
}

/// The node's keys from the OS RNG, or derived from `seed` (BLAKE3 in key-derivation mode, one
/// context per key; a Nostr secret outside the curve order is re-derived with a counter).
fn node_keys(seed: Option<&str>) -> anyhow::Result<NodeKeys> {
    let Some(seed) = seed else {
        let mut rng = rand::rngs::OsRng;
        let nostr = nostr_sdk::prelude::Keys::generate();
        let mut iroh = [0u8; 32];
        rng.fill_bytes(&mut iroh);
        let mut ln = [0u8; 64];
        rng.fill_bytes(&mut ln);
        return Ok(NodeKeys {
            nostr: nostr.secret_key().to_secret_hex(),
            iroh: hex::encode(iroh),
            lightning_seed: hex::encode(ln),
        });
    };
    let seed: [u8; 32] = hex::decode(seed)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("--key-seed: want 64 hex characters"))?;
    let derive = |ctx: &str, out: &mut [u8]| {
        let mut h = blake3::Hasher::new_derive_key(ctx);
        h.update(&seed);
        h.finalize_xof().fill(out);
    };
    let nostr = (0u32..)
        .find_map(|i| {
            let mut k = [0u8; 32];
            derive(&format!("l402-node init key-seed nostr {i}"), &mut k);
            nostr_sdk::prelude::SecretKey::from_slice(&k).ok()
        })
        .ok_or_else(|| anyhow::anyhow!("--key-seed: no valid Nostr key"))?;
    let mut iroh = [0u8; 32];
    derive("l402-node init key-seed iroh", &mut iroh);
    let mut ln = [0u8; 64];
    derive("l402-node init key-seed lightning", &mut ln);
    Ok(NodeKeys {
        nostr: nostr.to_secret_hex(),
        iroh: hex::encode(iroh),
        lightning_seed: hex::encode(ln),
    })
}

/// Run `init`.
pub fn run(args: InitArgs) -> anyhow::Result<()> {
    for k in &args.favour {
        nostr_sdk::prelude::PublicKey::from_hex(k)
            .map_err(|e| anyhow::anyhow!("--favour {k}: not a Nostr public key: {e}"))?;
    }
    let keys = node_keys(args.key_seed.as_deref())?;
    let config = NodeConfig {
        relays: args.relays,
        esplora_url: args.esplora,
        network: args.network,
        lightning_listen: args.lightning_listen,
        iroh_bind: args.iroh_bind,
        gateway_listen: args.gateway,
        roles: Roles {
            coordinator: args.coordinator.map(|run| {
                let training = CoordinatorRole {
                    run,
                    rounds: args.rounds,
                    n: args.committee,
                    k: args.k,
                    pool_sats: crate::config::DEFAULT_POOL_SATS,
                    tranches: 2,
                    target_score: 5_000,
                    submission_price_sats: 10,
                    max_submissions: crate::config::DEFAULT_MAX_SUBMISSIONS,
                    submit_secs: args.submit_secs,
                    attest_secs: 2 * args.submit_secs,
                    claim_secs: 2 * args.submit_secs + 60,
                    genesis_seed: 1,
                    wait_for_start: args.wait_for_start,
                    bounty: None,
                    dealer_faults: args.dealer_fault.clone(),
                };
                if !args.bounty {
                    return training;
                }
                let mut role =
                    crate::up::bounty::default_terms(&training.run, training.rounds).role();
                role.wait_for_start = training.wait_for_start;
                role.dealer_faults = training.dealer_faults;
                role
            }),
            peer: args.peer.then(|| PeerRole {
                runs: Vec::new(),
                behaviour: args.behaviour,
                alie_z: args.alie_z,
            }),
            validator: args.validator_fee.map(|fee_sats| ValidatorRole {
                fee_sats,
                behaviour: args.validator_behaviour.clone(),
                favoured: args.favour.clone(),
            }),
        },
    };
    config::write_new(&args.data_dir, &config, &keys)?;
    println!(
        "initialised {} (nostr {})",
        args.data_dir.display(),
        keys.nostr_keys()?.public_key().to_hex()
    );
    Ok(())
}
