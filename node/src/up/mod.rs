//! `l402-node up`: start every component from the data dir's configuration and run the
//! configured roles until Ctrl-C / SIGTERM.
//!
//! - the embedded Lightning node (ldk-node on the configured Esplora), the blob node (iroh),
//!   Nostr discovery (the configured relays, or the embedded relay);
//! - the node announcement binding the Nostr, iroh and Lightning keys (with the validator role
//!   when the config opts in);
//! - the role runtime (`crate::runtime`), fed new machines by the role tasks in [`roles`];
//! - the HTTP gateway in [`gateway`].

pub mod board;
pub mod bounty;
pub mod gateway;
pub mod roles;

use crate::bounty::net::BountyWork;
use crate::bounty::sandbox::Policy;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use candle_core::Device;
use ed25519_dalek::SigningKey;
use l402_protocol::events::{
    NodeAnnouncement, Role as Offered, RoundOpen, ValidatorTerms, Verified, VerifiedAny,
};
use l402_protocol::round::{Machine, MachineKey};
use l402_protocol::training::{ModelSpec, ScoringPolicy, TrainingSpec};
use nostr_sdk::prelude::{Keys, PublicKey, RelayUrl};
use tokio::sync::{broadcast, mpsc, watch};

use crate::blobs::{AddressBook, BlobConfig, BlobNode};
use crate::config::{self, NodeConfig};
use crate::discovery::{Discovery, DiscoveryConfig};
use crate::lightning::{LightningConfig, LightningNode};
use crate::runtime::{
    Components, MachineStatus, MachineStore, RunHooks, Runtime, SubmissionBook, TrainingWork,
};

/// Arguments of `l402-node up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// The node's data dir (written by `l402-node init`).
    #[arg(long, env = "L402_DATA_DIR", default_value = "l402-data")]
    pub data_dir: PathBuf,
}

/// What the role tasks and the gateway share.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's identity.
    pub keys: Keys,
    /// Its configuration.
    pub config: NodeConfig,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its components.
    pub components: Components,
    /// New machines for the runtime.
    pub machines: mpsc::UnboundedSender<(MachineKey, Machine)>,
    /// Verified events the runtime received.
    pub events: broadcast::Sender<VerifiedAny>,
    /// The machines' status.
    pub status: watch::Receiver<Vec<MachineStatus>>,
    /// Coordinator state the gateway sells tokens from.
    pub coordinator: Arc<Mutex<Option<roles::CoordinatorView>>>,
    /// The bounty board of the bounties this node sponsors.
    pub board: Arc<Mutex<board::Board>>,
    /// The latest round open of every run heard of.
    pub opens:
        Arc<Mutex<std::collections::BTreeMap<l402_protocol::events::RunId, Verified<RoundOpen>>>>,
    /// Fires when an operator says `POST /admin/start`.
    pub start: Arc<tokio::sync::Notify>,
    /// Validator: published checkpoints it recomputed from their merged lists.
    pub checks: Arc<Mutex<Vec<roles::CheckpointCheck>>>,
    /// Round opens of the coordinator machines restored at start (a restarted coordinator
    /// sells tokens for its open round again; the relays will not hand its own events back).
    pub restored_opens: Arc<Vec<Verified<RoundOpen>>>,
}

fn hex32(s: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let b = hex::decode(s).with_context(|| format!("{what}: not hex"))?;
    b.try_into()
        .map_err(|_| anyhow::anyhow!("{what}: not 32 bytes"))
}

/// The training setup every node of a run uses (the tiny byte-GPT, default inner loop and
/// scoring), on the CPU.
pub fn default_work() -> TrainingWork {
    TrainingWork {
        model: ModelSpec::tiny(),
        training: TrainingSpec::default(),
        policy: ScoringPolicy::default(),
        device: Device::Cpu,
    }
}

/// Start the components of the node in `data_dir`.
pub async fn start(data_dir: &Path) -> anyhow::Result<(Node, Runtime, Arc<LightningNode>)> {
    let (cfg, keys) = config::load(data_dir)?;
    let nostr = keys.nostr_keys().context("nostr key")?;
    let iroh = hex32(&keys.iroh, "iroh key")?;
    let seed: [u8; 64] = hex::decode(&keys.lightning_seed)
        .context("lightning seed")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("lightning seed: not 64 bytes"))?;
    let mut ln_cfg = LightningConfig::regtest(
        data_dir.join("lightning"),
        cfg.esplora_url.clone(),
        cfg.lightning_listen,
        seed,
    );
    ln_cfg.network = bitcoin::Network::from_str(&cfg.network).context("network")?;
    ln_cfg.background_sync = true;
    ln_cfg.alias = Some(format!("l402-{}", &nostr.public_key().to_hex()[..8]));
    let lightning = Arc::new(LightningNode::start(ln_cfg).await?);
    let relays = cfg
        .relays
        .iter()
        .map(|r| RelayUrl::parse(r).with_context(|| format!("relay {r}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let discovery = Arc::new(
        Discovery::start(DiscoveryConfig::for_node(relays, data_dir), nostr.clone()).await?,
    );
    let mut blob_cfg = BlobConfig::local(data_dir, iroh);
    blob_cfg.bind_addr = cfg.iroh_bind;
    if cfg.roles.peer.as_ref().map(|p| p.behaviour.as_str()) == Some("corrupting-provider") {
        blob_cfg.corrupt = Some(Default::default());
    }
    let blobs = Arc::new(BlobNode::start(blob_cfg, AddressBook::new()).await?);
    // Opt-in: the announcement binds the three keys; the validator role is in it only if the
    // operator configured it, and only announced validators are ever drawn into a committee.
    let mut offered = Vec::new();
    if cfg.roles.coordinator.is_some() {
        offered.push(Offered::Coordinator);
    }
    if cfg.roles.peer.is_some() {
        offered.push(Offered::Peer);
    }
    if cfg.roles.validator.is_some() {
        offered.push(Offered::Validator);
    }
    if offered.is_empty() {
        offered.push(Offered::Peer);
    }
    let mut ann = NodeAnnouncement::new(
        &nostr.public_key(),
        &SigningKey::from_bytes(&iroh),
        lightning.node_id().serialize(),
        offered,
        cfg.roles.validator.as_ref().map(|v| ValidatorTerms {
            fee_msat: v.fee_sats * 1000,
        }),
    );
    ann.iroh_addrs = blobs
        .local_addr()
        .addrs
        .iter()
        .map(|a| a.to_string())
        .collect();
    ann.relays = discovery.relays().iter().map(|r| r.to_string()).collect();
    ann.ln_addrs = vec![cfg.lightning_listen.to_string()];
    discovery
        .announce(&ann, None)
        .await
        .context("publishing the node announcement")?;
    tracing::info!(nostr = %nostr.public_key(), ln = %lightning.node_id(), iroh = %blobs.provider_id(), validator = cfg.roles.validator.is_some(), "announced");
    let collusion = match &cfg.roles.validator {
        Some(v) if v.behaviour.as_deref() == Some("colluding") => Some(
            v.favoured
                .iter()
                .map(|k| PublicKey::from_hex(k).with_context(|| format!("favoured peer {k}")))
                .collect::<anyhow::Result<std::collections::BTreeSet<_>>>()?,
        ),
        _ => None,
    };
    if collusion.is_some() {
        tracing::warn!("this validator colludes (real-mode simulation): it does not evaluate");
    }
    let equivocate = match &cfg.roles.validator {
        Some(v) if v.behaviour.as_deref() == Some("equivocating") => {
            tracing::warn!(
                "this validator equivocates (real-mode simulation): it signs both verdicts"
            );
            Some(nostr.clone())
        }
        _ => None,
    };
    let lazy = matches!(&cfg.roles.validator, Some(v) if v.behaviour.as_deref() == Some("lazy"));
    if lazy {
        tracing::warn!(
            "this validator is lazy (real-mode simulation): it accepts everything unevaluated"
        );
    }
    let components = Components {
        collusion,
        lazy,
        equivocate,
        lightning: lightning.clone(),
        discovery,
        blobs,
        work: Arc::new(default_work()),
        book: SubmissionBook::default(),
        timeline: Default::default(),
        validator_fee_msat: cfg
            .roles
            .validator
            .as_ref()
            .map_or(0, |v| v.fee_sats * 1000),
        bounty: Arc::new(BountyWork::new(
            data_dir,
            if std::env::var_os("L402_ALLOW_UNSANDBOXED").is_some() {
                Policy::AllowUnsandboxed
            } else {
                Policy::RequireBubblewrap
            },
            nostr.clone(),
        )),
    };
    let runtime = Runtime::start(
        nostr.clone(),
        MachineStore::open(data_dir)?,
        components.clone(),
    )
    .await?;
    let restored_opens: Vec<_> = runtime
        .driver()
        .iter()
        .filter(|(k, _)| k.role == l402_protocol::round::Role::Coordinator)
        .map(|(_, m)| m.round_open().clone())
        .collect();
    let (machines, _) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(1024);
    let (_, status) = watch::channel(Vec::new());
    Ok((
        Node {
            keys: nostr,
            config: cfg,
            data_dir: data_dir.to_path_buf(),
            components,
            machines,
            events,
            status,
            coordinator: Arc::new(Mutex::new(None)),
            board: Arc::new(Mutex::new(board::Board::default())),
            opens: Arc::new(Mutex::new(Default::default())),
            start: Arc::new(tokio::sync::Notify::new()),
            checks: Arc::new(Mutex::new(Vec::new())),
            restored_opens: Arc::new(restored_opens),
        },
        runtime,
        lightning,
    ))
}

/// Run `up` until a signal.
pub fn run_cli(args: UpArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: UpArgs) -> anyhow::Result<()> {
    let (mut node, runtime, lightning) = start(&args.data_dir).await?;
    let (machines_tx, machines_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(Vec::new());
    node.machines = machines_tx;
    node.status = status_rx;
    let (stop_tx, stop_rx) = watch::channel(false);
    let hooks = RunHooks {
        stop: stop_rx.clone(),
        machines: Some(machines_rx),
        events: Some(node.events.clone()),
        status: Some(status_tx),
    };
    let gateway = tokio::spawn(gateway::serve(node.clone(), stop_rx.clone()));
    let mut roles = roles::spawn(node.clone());
    roles.push(tokio::spawn(redial(node.clone())));
    let runtime = tokio::spawn(runtime.run(Duration::from_millis(500), hooks));
    crate::cli::relay::shutdown_signal().await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    for r in roles {
        r.abort();
        let _ = r.await;
    }
    let runtime = runtime.await?;
    drop(runtime);
    let _ = gateway.await;
    let (discovery, blobs) = {
        let Node { components, .. } = node;
        (components.discovery, components.blobs)
    };
    // The last clones went with the runtime, the gateway and the role tasks.
    if let Ok(b) = Arc::try_unwrap(blobs) {
        b.shutdown().await?;
    }
    if let Ok(d) = Arc::try_unwrap(discovery) {
        d.shutdown().await;
    }
    // A payment waiting for its route (`Components::pay_or_retry`) holds a clone: ending the
    // node's waits makes it let go (the restart's `resume` asks for that payment again).
    lightning.begin_stop();
    let mut lightning = lightning;
    let deadline = tokio::time::Instant::now() + SHUTDOWN_RELEASE_WAIT;
    loop {
        match Arc::try_unwrap(lightning) {
            Ok(ln) => break ln.stop().await?,
            Err(shared) if tokio::time::Instant::now() < deadline => {
                lightning = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(shared) => {
                tracing::warn!(
                    clones = Arc::strong_count(&shared) - 1,
                    "lightning node still shared at shutdown: not stopped cleanly"
                );
                break;
            }
        }
    }
    Ok(())
}

/// How long a shutdown waits for the tasks sharing the Lightning node to let go of it.
const SHUTDOWN_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Redial channel partners that are not connected, at the Lightning addresses their node
/// announcements give: ldk-node redials only every 60 s, and the side that accepted a channel
/// does not know its partner's address after a restart.
async fn redial(node: Node) {
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    loop {
        tick.tick().await;
        let ln = &node.components.lightning;
        let down = ln.reconnecting_partners();
        if down.is_empty() {
            continue;
        }
        let dir = node.components.discovery.directory();
        let now = nostr_sdk::prelude::Timestamp::now();
        for n in dir.nodes(now) {
            let Ok(id) = bitcoin::secp256k1::PublicKey::from_slice(&n.verified.ln_node_id) else {
                continue;
            };
            if !down.contains(&id) {
                continue;
            }
            for a in n.verified.ln_addrs.iter().filter_map(|a| a.parse().ok()) {
                let peer = crate::lightning::PeerAddr {
                    node_id: id,
                    addr: a,
                };
                match ln.connect(&peer).await {
                    Ok(()) => tracing::info!(peer = %id, addr = %a, "redialled channel partner"),
                    Err(e) => tracing::debug!(peer = %id, error = %e, "redial failed"),
                }
            }
        }
    }
}
