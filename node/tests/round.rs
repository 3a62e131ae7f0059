//! One training round over the real network, in one process: the regtest chain, an embedded
//! Nostr relay, six ldk-nodes with real channels, six iroh blob endpoints, candle training and
//! validation. One coordinator, three validators (k = 2), an honest peer and a free-rider that
//! submits a zero update. Every node runs the protocol's machines through its own `Runtime`.
//!
//! Checked by asking each node's ldk-node: the honest peer's HTLCs were claimed, the
//! free-rider's were failed back (the coordinator refunded), nothing is left held; the
//! coordinator's checkpoint is the aggregate of exactly the honest submission.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use candle_core::Device;
use ed25519_dalek::SigningKey;
use indicatif::ProgressBar;
use l402_node::blobs::{AddressBook, BlobConfig, BlobNode};
use l402_node::discovery::{samples, Discovery, DiscoveryConfig};
use l402_node::lightning::testkit::{Testkit, TestkitConfig};
use l402_node::lightning::{HoldState, PaymentOutcome};
use l402_node::runtime::roles::{
    machine_seed, offer_token, open_round, store_submission, token_string, PeerTrainer, RoundPlan,
};
use l402_node::runtime::{
    Components, MachineStore, RunHooks, Runtime, SubmissionBook, TrainingWork,
};
use l402_node::train::Checkpoint;
use l402_protocol::blobmeta::Placement;
use l402_protocol::escrow::linear_schedule;
use l402_protocol::events::{
    validate_event, BlobHash, L402Kind, NodeAnnouncement, Role as Offered, Score, ValidatorTerms,
    VerifiedAny,
};
use l402_protocol::quorum::Tolerance;
use l402_protocol::round::{Machine, MachineKey, Peer, Role, Validator};
use l402_protocol::training::{ModelSpec, ScoringPolicy, TrainingSpec};
use l402_relay_kit::RelayConfig;
use nostr_sdk::prelude::{Filter, Keys, Timestamp};

const SEED: u64 = 0x10e2;
const CHANNEL_SAT: u64 = 2_000_000;
const WAIT: Duration = Duration::from_secs(240);
const COORD: usize = 0;
const VALIDATORS: [usize; 3] = [1, 2, 3];
const HONEST: usize = 4;
const RIDER: usize = 5;

fn iroh_secret(i: usize) -> [u8; 32] {
    *blake3::hash(format!("round test iroh {i}").as_bytes()).as_bytes()
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ldk=off")),
        )
        .with_test_writer()
        .try_init();
}

struct Node {
    keys: Keys,
    components: Components,
    dir: std::path::PathBuf,
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > WAIT {
            return Err(anyhow!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_round_over_nostr_iroh_and_lightning_pays_honest_work_and_refunds_a_free_rider(
) -> anyhow::Result<()> {
    init_tracing();
    let data = tempfile::tempdir()?;
    let kit = Testkit::start(TestkitConfig {
        nodes: 6,
        ..Default::default()
    })
    .await?;
    // The coordinator pays escrows to the peers; the peers pay the coordinator for tokens:
    // half of each channel is pushed to the peer, so liquidity goes both ways.
    for p in [HONEST, RIDER] {
        kit.open_channel(COORD, p, CHANNEL_SAT, Some(CHANNEL_SAT * 500), false)
            .await?;
    }
    kit.confirm_channels().await?;
    let relay = l402_relay_kit::spawn_relay(RelayConfig::in_memory()).await?;
    let url = relay.url().clone();

    let spec = ModelSpec::tiny();
    let work = Arc::new(TrainingWork {
        model: spec.clone(),
        training: TrainingSpec::default(),
        policy: ScoringPolicy::default(),
        device: Device::Cpu,
    });
    let mut nodes = Vec::new();
    for i in 0..6 {
        let keys = samples::keys(SEED, i as u64);
        let discovery = Discovery::start(
            DiscoveryConfig {
                relays: vec![url.clone()],
                ..DiscoveryConfig::default()
            },
            keys.clone(),
        )
        .await?;
        let dir = data.path().join(format!("node-{i}"));
        let blobs =
            BlobNode::start(BlobConfig::local(&dir, iroh_secret(i)), AddressBook::new()).await?;
        let validator = VALIDATORS.contains(&i);
        let mut roles = vec![if validator {
            Offered::Validator
        } else if i == COORD {
            Offered::Coordinator
        } else {
            Offered::Peer
        }];
        roles.sort();
        let mut ann = NodeAnnouncement::new(
            &keys.public_key(),
            &SigningKey::from_bytes(&iroh_secret(i)),
            kit.node(i).node_id().serialize(),
            roles,
            validator.then_some(ValidatorTerms { fee_msat: 1_000 }),
        );
        ann.iroh_addrs = blobs
            .local_addr()
            .addrs
            .iter()
            .map(|a| a.to_string())
            .collect();
        discovery.announce(&ann, None).await?;
        nodes.push(Node {
            keys: keys.clone(),
            components: Components {
                lightning: kit.shared(i),
                discovery: Arc::new(discovery),
                blobs: Arc::new(blobs),
                work: work.clone(),
                book: SubmissionBook::default(),
                timeline: Default::default(),
                validator_fee_msat: if validator { 1_000 } else { 0 },
                collusion: None,
                equivocate: None,
                lazy: false,
                bounty: Arc::new(l402_node::bounty::net::BountyWork::new(
                    &dir,
                    l402_node::bounty::sandbox::Policy::RequireBubblewrap,
                    keys,
                )),
            },
            dir,
        });
    }
    // The coordinator draws the committee from the validators that opted in.
    let coord_dir = nodes[COORD].components.discovery.clone();
    wait_until("three validator announcements", || {
        coord_dir.directory().validators(Timestamp::now()).count() == 3
    })
    .await?;
    // A validator announcement whose key binding is forged (the iroh key signed another Nostr
    // key) is refused by the relay's policy and never listed, so it can never be drawn.
    let forger = samples::keys(SEED, 99);
    let mut forged = NodeAnnouncement::new(
        &nodes[VALIDATORS[0]].keys.public_key(),
        &SigningKey::from_bytes(&iroh_secret(99)),
        kit.node(COORD).node_id().serialize(),
        vec![Offered::Validator],
        Some(ValidatorTerms { fee_msat: 1 }),
    );
    forged.iroh_addrs = vec!["127.0.0.1:9".into()];
    let forger_discovery = Discovery::start(
        DiscoveryConfig {
            relays: vec![url.clone()],
            ..DiscoveryConfig::default()
        },
        forger.clone(),
    )
    .await?;
    assert!(
        forger_discovery.announce(&forged, None).await.is_err(),
        "a forged binding was accepted"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        coord_dir.directory().validators(Timestamp::now()).count(),
        3,
        "only the three opted-in validators are listed"
    );
    let pool: BTreeSet<_> = coord_dir
        .directory()
        .validators(Timestamp::now())
        .map(|v| v.author())
        .collect();
    for n in &nodes {
        let d = n.components.discovery.clone();
        wait_until("every announcement", || {
            d.directory().nodes(Timestamp::now()).count() == 6
        })
        .await?;
    }

    // Genesis checkpoint, served by the coordinator.
    let genesis = Checkpoint::init(&spec, &[7; 32])?;
    let genesis_hash = BlobHash(
        nodes[COORD]
            .components
            .blobs
            .add_bytes(genesis.to_safetensors()?, &Placement::pinned_public())
            .await?
            .0,
    );
    let run = l402_protocol::events::RunId::new("round-test")?;
    // Peers train first (a fresh model improves fast), then the round opens.
    let mut blobs = BTreeMap::new();
    for p in [HONEST, RIDER] {
        let mut t = PeerTrainer::new(&work, &run, &nodes[p].keys.public_key(), &genesis)?;
        blobs.insert(
            p,
            t.round_blob(&genesis, 1, p == RIDER, &ProgressBar::hidden())?,
        );
    }

    let secret = [0x5e; 32];
    let plan = RoundPlan {
        holdback_secs: None,
        dealer_faults: BTreeMap::new(),
        run: run.clone(),
        n: 3,
        k: 2,
        submit_secs: 20,
        attest_secs: 45,
        claim_secs: 110,
        tranches: linear_schedule(200_000_000, 2, Score(5_000), 0),
        submission_price_msat: 10_000,
        max_submissions: None,
        tolerance: Tolerance::default(),
    };
    let now = Timestamp::now().as_secs();
    let coordinator = open_round(
        &nodes[COORD].keys,
        &plan,
        1,
        now,
        genesis_hash,
        BlobHash([0; 32]),
        &pool,
        secret,
        BTreeMap::new(),
    )?;
    let open = coordinator.round_open().clone();
    // Only nodes that opted in sit on the committee: never a peer, the coordinator or the forger.
    for v in &open.validators {
        assert!(
            VALIDATORS.iter().any(|i| nodes[*i].keys.public_key() == *v),
            "{v} is in the committee without having opted in"
        );
    }

    let mut runtimes = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let store = MachineStore::open(&n.dir)?;
        let rt = Runtime::start(n.keys.clone(), store, n.components.clone()).await?;
        runtimes.push((i, rt));
    }
    let key = |role| MachineKey {
        run: run.clone(),
        round: 1,
        role,
    };
    let mut coordinator = Some(coordinator);
    for (i, rt) in runtimes.iter_mut() {
        let keys = nodes[*i].keys.clone();
        if *i == COORD {
            let c = coordinator.take().context("one coordinator")?;
            rt.add(key(Role::Coordinator), Machine::Coordinator(c))
                .await;
        } else if open.validators.contains(&keys.public_key()) {
            let k = key(Role::Validator);
            let v = Validator::new(keys.clone(), machine_seed(&keys, &k), open.clone())?;
            rt.add(k, Machine::Validator(v)).await;
        }
    }
    // Each peer buys a one-use token: a real invoice from the coordinator's node, paid over
    // the channel; the preimage completes the credential.
    for p in [HONEST, RIDER] {
        let pk = nodes[p].keys.public_key();
        let offer = offer_token(
            &nodes[COORD].components.lightning,
            &secret,
            &run,
            pk,
            plan.submission_price_msat,
            open.last_deadline(),
            *blake3::hash(&pk.to_bytes()).as_bytes(),
        )?;
        let ln = &nodes[p].components.lightning;
        ln.pay(&offer.invoice)?;
        let preimage = match ln.wait_payment(offer.invoice.payment_hash(), WAIT).await? {
            PaymentOutcome::Succeeded {
                preimage: Some(p), ..
            } => p,
            other => return Err(anyhow!("token payment: {other:?}")),
        };
        let token = token_string(&offer.macaroon, &preimage);
        let blob = blobs.remove(&p).context("blob")?;
        let pw = store_submission(&nodes[p].components, &open, blob, Score(0), token).await?;
        let k = key(Role::Peer);
        let keys = nodes[p].keys.clone();
        let peer = Peer::new(keys.clone(), machine_seed(&keys, &k), open.clone(), pw);
        let rt = &mut runtimes.iter_mut().find(|(i, _)| *i == p).context("rt")?.1;
        rt.add(k, Machine::Peer(peer)).await;
    }

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (i, rt) in runtimes {
        let rx = stop_rx.clone();
        tasks.push((
            i,
            tokio::spawn(rt.run(Duration::from_millis(500), RunHooks::stop_only(rx))),
        ));
    }
    // The honest peer claims both tranches; the free-rider's escrow is failed back.
    let honest_ln = nodes[HONEST].components.lightning.clone();
    let rider_ln = nodes[RIDER].components.lightning.clone();
    wait_until("the honest peer's claims", || {
        let h = honest_ln.holds();
        h.len() == 2
            && h.iter()
                .all(|r| matches!(r.state, HoldState::Claimed { .. }))
    })
    .await?;
    wait_until("the free-rider's refund", || {
        let h = rider_ln.holds();
        h.len() == 2
            && h.iter()
                .all(|r| matches!(r.state, HoldState::Failed { .. }))
    })
    .await?;
    // After the attest deadline the coordinator aggregates and publishes the checkpoint; a
    // third party reads it from the relay like anyone else.
    let reader = nodes[VALIDATORS[0]].components.discovery.client().clone();
    let filter = Filter::new().kind(L402Kind::Checkpoint.kind());
    let t = Instant::now();
    let published = loop {
        let events = reader
            .fetch_events(filter.clone(), Duration::from_secs(5))
            .await?;
        let found = events
            .iter()
            .find_map(|e| match validate_event(e, Timestamp::now()) {
                Ok(VerifiedAny::Checkpoint(c)) => Some(c),
                _ => None,
            });
        if let Some(c) = found {
            break c;
        }
        if t.elapsed() > WAIT {
            return Err(anyhow!("no checkpoint published"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    stop.send(true)?;
    let mut back = Vec::new();
    for (i, t) in tasks {
        back.push((i, t.await?));
    }
    assert_eq!(published.author(), nodes[COORD].keys.public_key());
    // The event names the merged list by hash: a validator fetches it from the coordinator over
    // iroh and decodes it against the event.
    let list = nodes[VALIDATORS[0]]
        .components
        .fetch_merged_list(&published)
        .await?;
    assert_eq!(
        (published.merged_count, list.merged.len()),
        (1, 1),
        "exactly the honest submission is merged"
    );
    assert_ne!(published.checkpoint, genesis_hash, "the model moved");
    // Anyone can recompute it: the parent plus the merged blob, aggregated with the run's rule.
    let merged_blob = nodes[VALIDATORS[0]]
        .components
        .blobs
        .read(&l402_protocol::wire::BlobId(list.merged[0].blob.0))
        .await?;
    let g = l402_protocol::wire::PseudoGradient::from_blob(&merged_blob)?;
    let next = work.aggregate(&genesis, &[g])?.context("aggregate")?;
    assert_eq!(
        next.id()?.0,
        published.checkpoint.0,
        "checkpoint = recomputed aggregate"
    );
    // Every hold invoice of every node ended claimed or failed back.
    for (i, n) in nodes.iter().enumerate() {
        for h in n.components.lightning.holds() {
            assert!(
                matches!(
                    h.state,
                    HoldState::Claimed { .. } | HoldState::Failed { .. }
                ),
                "node {i}: hold {} ended {:?}",
                h.payment_hash,
                h.state
            );
        }
    }
    drop((back, nodes, honest_ln, rider_ln));
    kit.shutdown().await?;
    relay.shutdown().await;
    Ok(())
}
