//! `l402-node demo`: a whole local network on embedded defaults. The regtest chain and a Nostr
//! relay run in this process; every node is its own `l402-node up` process with its own data
//! dir, sharing only loopback sockets: 1 coordinator, 3 validators (k = 2) and 4 peers, one of
//! which submits a zero update (`--free-riders 0` turns it off). The demo funds the nodes, has
//! the coordinator open channels with liquidity both ways, starts the run, prints a table per
//! round and writes a JSON report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bitcoin::{Address, Amount};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::lightning::testkit::free_port;

/// Arguments of `l402-node demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Rounds to run.
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
    /// Peers in all.
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    /// Of those, how many submit a zero update.
    #[arg(long, default_value_t = 1)]
    pub free_riders: usize,
    /// Of those, how many submit a copy of an honest peer's blob (handed over as a leak).
    #[arg(long, default_value_t = 0)]
    pub copiers: usize,
    /// Of those, how many submit their negated update (sign-flip poisoners).
    #[arg(long, default_value_t = 0)]
    pub sign_flips: usize,
    /// Of those, how many submit a leaked honest blob plus noise (copycat + noise).
    #[arg(long, default_value_t = 0)]
    pub copycats: usize,
    /// Of those, how many collude in ALIE (mean − z·σ of the leaked honest blobs, z from the
    /// paper for this many peers and attackers).
    #[arg(long, default_value_t = 0)]
    pub alie: usize,
    /// Of those, how many train on round r − 2's checkpoint.
    #[arg(long, default_value_t = 0)]
    pub stale: usize,
    /// Of those, how many rotate through free-rider, copycat + noise, sign-flip and ALIE, one
    /// attack per round.
    #[arg(long, default_value_t = 0)]
    pub mixed: usize,
    /// Of those, how many train honestly but serve a flipped byte to everyone except their
    /// committee (the coordinator's merge fetch catches it and completes from a validator).
    #[arg(long, default_value_t = 0)]
    pub corrupting: usize,
    /// Opted-in validators.
    #[arg(long, default_value_t = 3)]
    pub validators: usize,
    /// Of those, validators colluding with the Byzantine peers: they accept their submissions
    /// unevaluated and reject every honest one (below k they can neither pay bad work nor
    /// block good work).
    #[arg(long, default_value_t = 0)]
    pub colluding: usize,
    /// Of those (after the colluding ones), validators that equivocate: they evaluate honestly,
    /// then also sign and publish the opposite verdict; the coordinator drops both and publishes
    /// the pair as evidence.
    #[arg(long, default_value_t = 0)]
    pub equivocating: usize,
    /// Of those (after the colluding and equivocating ones), lazy validators: they accept
    /// every submission with a fixed score, unevaluated; the coordinator's audit convicts them.
    #[arg(long, default_value_t = 0)]
    pub lazy: usize,
    /// The coordinator corrupts the escrow dealings of round ROUND as KIND (wrong-share,
    /// garbage-ciphertext, wrong-payment-hash); repeatable. Validators and workers publish the
    /// evidence; `l402-node evidence` checks it as a third party.
    #[arg(long, value_name = "ROUND:KIND")]
    pub dealer_fault: Vec<crate::config::DealingFaultAt>,
    /// Committee size n per submission (default: every validator).
    #[arg(long)]
    pub committee: Option<u32>,
    /// Derive every node's keys from this seed and the node's name instead of the OS RNG, so
    /// a swarm and its attack-free twin give their common nodes the same keys (the same honest
    /// peers then train on the same data shards). Test swarms only.
    #[arg(long)]
    pub key_seed: Option<u64>,
    /// Quorum k.
    #[arg(long, default_value_t = 2)]
    pub k: u32,
    /// Seconds from a round's open to its submit deadline (default: 25, more for over 5
    /// peers: they share this machine's cores). Attest: twice this; claim: attest + 60.
    #[arg(long)]
    pub submit_secs: Option<u64>,
    /// Where the nodes' data dirs, logs and the report go (default: a new temp dir, kept).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// SIGKILL the first peer in round 1 once its escrow HTLCs are held, then restart it.
    #[arg(long)]
    pub kill_peer: bool,
    /// SIGKILL the coordinator in the middle of round 2 (escrows locked), then restart it.
    #[arg(long)]
    pub kill_coordinator: bool,
    /// Run the example autoresearch bounty instead of training: the coordinator sponsors it,
    /// and the peers are the reference agent, a copier of its diff and a follow-up (one more
    /// training step on top of the leader, from round 2).
    #[arg(long)]
    pub bounty: bool,
    /// How to start a node: the program and the arguments before `init`/`up` (default: this
    /// executable, no prefix). `l402-sim --real` runs its own `node` subcommand.
    #[arg(skip)]
    pub node_exe: Option<NodeExe>,
}

/// The program that runs a node (`l402-node`, or another binary embedding its CLI).
#[derive(Debug, Clone)]
pub struct NodeExe {
    /// Executable.
    pub path: PathBuf,
    /// Arguments before the `l402-node` subcommand.
    pub prefix: Vec<String>,
}

impl NodeExe {
    /// This executable, no prefix.
    pub fn current() -> anyhow::Result<Self> {
        Ok(Self {
            path: std::env::current_exe().context("the l402-node binary")?,
            prefix: Vec::new(),
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.path);
        c.args(&self.prefix);
        c
    }
}

impl DemoArgs {
    /// Every peer's behaviour, in node order: the honest ones first, then the Byzantine ones.
    pub fn behaviours(&self) -> anyhow::Result<Vec<&'static str>> {
        let bad = [
            ("copier", self.copiers),
            ("sign-flip", self.sign_flips),
            ("copycat-noise", self.copycats),
            ("alie", self.alie),
            ("stale", self.stale),
            ("mixed", self.mixed),
            ("corrupting-provider", self.corrupting),
            ("free-rider", self.free_riders),
        ];
        let n_bad: usize = bad.iter().map(|(_, n)| n).sum();
        let honest = self.peers.checked_sub(n_bad).ok_or_else(|| {
            anyhow!(
                "{n_bad} Byzantine peers do not fit in --peers {}",
                self.peers
            )
        })?;
        Ok(std::iter::repeat_n("honest", honest)
            .chain(bad.iter().flat_map(|(b, n)| std::iter::repeat_n(*b, *n)))
            .collect())
    }

    /// The submit window: 25 s, plus 3 s per peer beyond 5.
    pub fn submit_secs(&self) -> u64 {
        self.submit_secs
            .unwrap_or(25 + 3 * self.peers.saturating_sub(5) as u64)
    }
}

const FUND_SAT: u64 = 3_000_000;
const CHANNEL_SAT: u64 = 1_000_000;
const WAIT: Duration = Duration::from_secs(300);

/// The coordinator's channel to a peer: half a million sats pushed to the peer (it pays
/// tokens), and enough on the coordinator's side to pay it a whole reward every round.
fn peer_channel_sat(rounds: u64) -> u64 {
    CHANNEL_SAT / 2 + (CHANNEL_SAT / 2).max((rounds + 1) * crate::config::DEFAULT_POOL_SATS)
}

/// One child node.
#[derive(Debug)]
struct DemoNode {
    name: String,
    kind: String,
    exe: NodeExe,
    dir: PathBuf,
    gateway: String,
    ln_listen: String,
    child: Child,
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        // SIGTERM: `up` stops its Lightning node cleanly.
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn spawn_up(exe: &NodeExe, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))?;
    Ok(exe
        .command()
        .args(["up", "--data-dir"])
        .arg(dir)
        .env(
            "RUST_LOG",
            std::env::var("L402_DEMO_LOG").unwrap_or_else(|_| "info,ldk=warn,iroh=warn".into()),
        )
        // Eight nodes share this machine: one compute thread each for candle's rayon pool
        // (with one pool per core per process, training ran 2.6× slower; BENCHMARKS.md).
        .env(
            "RAYON_NUM_THREADS",
            std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "1".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let r = http.post(url).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(anyhow!("{url}: {status} {v}"));
    }
    Ok(v)
}

async fn wait_for(what: &str, f: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
    wait_within(what, WAIT, f).await
}

async fn wait_within(
    what: &str,
    limit: Duration,
    mut f: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    let t = Instant::now();
    while !f().await {
        if t.elapsed() > limit {
            return Err(anyhow!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        pb.set_style(style);
    }
    pb.set_message(msg.to_owned());
    pb
}

/// Run the demo and return its report.
pub async fn run_demo(args: &DemoArgs) -> anyhow::Result<Value> {
    let started = Instant::now();
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new()
            .prefix("l402-demo-")
            .tempdir()?
            .keep(),
    };
    std::fs::create_dir_all(&dir)?;
    let chain = l402_testnet::Testnet::start(l402_testnet::TestnetConfig::default()).await?;
    let relay = l402_relay_kit::spawn_relay(l402_relay_kit::RelayConfig::persistent(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        dir.join("relay"),
    ))
    .await?;
    eprintln!(
        "demo: chain {} · relay {} · data {}",
        chain.url(),
        relay.url(),
        dir.display()
    );
    let exe = match &args.node_exe {
        Some(e) => e.clone(),
        None => NodeExe::current()?,
    };
    let validators = args.validators;
    let committee = args.committee.unwrap_or(validators as u32);
    if validators == 0 || committee as usize > validators || args.k == 0 || args.k > committee {
        return Err(anyhow!(
            "need 1 ≤ k ≤ committee ≤ validators (k {}, committee {committee}, validators {validators})",
            args.k
        ));
    }
    if args.colluding + args.equivocating + args.lazy > validators {
        return Err(anyhow!(
            "--colluding {}, --equivocating {} and --lazy {} exceed --validators {validators}",
            args.colluding,
            args.equivocating,
            args.lazy
        ));
    }
    // Peers are initialised before the validators, so that colluding validators know their
    // coalition's keys.
    let mut kinds = vec![("coordinator".to_owned(), "coordinator".to_owned())];
    let behaviours = if args.bounty {
        vec!["agent", "manual", "follow-up"]
    } else {
        args.behaviours()?
    };
    let peers = behaviours.len();
    // ALIE's z for this swarm (Baruch et al.): n workers, m colluders.
    let alie_z = crate::train::attack::alie_z(peers, args.alie + args.mixed);
    for (p, behaviour) in behaviours.iter().enumerate() {
        kinds.push((format!("peer-{p}"), (*behaviour).into()));
    }
    for v in 0..validators {
        kinds.push((format!("validator-{v}"), "validator".into()));
    }
    // The Byzantine peers' Nostr keys (hex), for colluding validators.
    let mut coalition: Vec<String> = Vec::new();
    let mut nodes = Vec::new();
    let pb = bar(kinds.len() as u64, "starting nodes");
    for (name, kind) in &kinds {
        let ndir = dir.join(name);
        let ln_port = free_port()?;
        let gw_port = free_port()?;
        let mut init = exe.command();
        init.args(["init", "--data-dir"])
            .arg(&ndir)
            .args(["--relay", relay.url().as_str()])
            .args(["--esplora", &chain.url()])
            .args(["--lightning-listen", &format!("127.0.0.1:{ln_port}")])
            .args(["--gateway", &format!("127.0.0.1:{gw_port}")]);
        if let Some(seed) = args.key_seed {
            let mut h = blake3::Hasher::new_derive_key("l402-node demo key seed v1");
            h.update(&seed.to_be_bytes());
            h.update(name.as_bytes());
            init.args(["--key-seed", h.finalize().to_hex().as_str()]);
        }
        match kind.as_str() {
            "coordinator" => {
                // A sponsor posts its bounty on the running node (`bounty post`, below).
                if !args.bounty {
                    init.args(["--coordinator", "demo", "--wait-for-start", "--rounds"])
                        .arg(args.rounds.to_string())
                        .args(["--committee", &committee.to_string()])
                        .args(["--k", &args.k.to_string()])
                        .args(["--submit-secs", &args.submit_secs().to_string()]);
                }
                for f in &args.dealer_fault {
                    init.args(["--dealer-fault", &f.to_string()]);
                }
            }
            "validator" => {
                init.args(["--validator-fee", &VALIDATOR_FEE_SAT.to_string()]);
                // validator-0 … validator-{colluding − 1} collude with the Byzantine peers.
                let v: usize = name["validator-".len()..].parse()?;
                if v < args.colluding {
                    init.args(["--validator-behaviour", "colluding"]);
                    for k in &coalition {
                        init.args(["--favour", k]);
                    }
                } else if v < args.colluding + args.equivocating {
                    init.args(["--validator-behaviour", "equivocating"]);
                } else if v < args.colluding + args.equivocating + args.lazy {
                    init.args(["--validator-behaviour", "lazy"]);
                }
            }
            b => {
                init.args(["--peer", "--behaviour", b]);
                if b == "alie" || b == "mixed" {
                    init.args(["--alie-z", &alie_z.to_string()]);
                }
            }
        }
        let out = init.stdout(Stdio::null()).status()?;
        if !out.success() {
            return Err(anyhow!("init {name} failed"));
        }
        if !matches!(kind.as_str(), "coordinator" | "honest" | "validator") {
            let (_, keys) = crate::config::load(&ndir)?;
            let keys = keys
                .nostr_keys()
                .map_err(|e| anyhow!("{name}'s nostr key: {e}"))?;
            coalition.push(keys.public_key().to_hex());
        }
        let child = spawn_up(&exe, &ndir)?;
        nodes.push(DemoNode {
            name: name.clone(),
            kind: kind.clone(),
            exe: exe.clone(),
            dir: ndir,
            gateway: format!("http://127.0.0.1:{gw_port}"),
            ln_listen: format!("127.0.0.1:{ln_port}"),
            child,
        });
    }
    // Back to coordinator, validators, peers (initialised peers first): what the code below
    // indexes by (`nodes[1 + validators]` is the first peer).
    nodes.sort_by_key(|n| match n.kind.as_str() {
        "coordinator" => 0,
        "validator" => 1,
        _ => 2,
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    for n in &mut nodes {
        let url = format!("{}/status", n.gateway);
        let name = n.name.clone();
        let child = &mut n.child;
        wait_for(&format!("{name} to come up"), async || {
            if let Ok(Some(s)) = child.try_wait() {
                eprintln!("demo: {name} exited: {s}");
                return false;
            }
            get(&http, &url).await.is_ok()
        })
        .await?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    // Fund every node on chain, confirm, and let the wallets see it.
    for n in &nodes {
        let a = get(&http, &format!("{}/admin/address", n.gateway)).await?;
        let addr: Address<bitcoin::address::NetworkUnchecked> =
            a["address"].as_str().context("address")?.parse()?;
        let addr = addr.assume_checked();
        chain.fund(&addr, Amount::from_sat(FUND_SAT))?;
        if n.kind == "coordinator" {
            // One UTXO per channel the coordinator opens.
            for _ in 0..peers + validators {
                let sat = FUND_SAT.max(peer_channel_sat(args.rounds) + 100_000);
                chain.fund(&addr, Amount::from_sat(sat))?;
            }
        }
    }
    chain.mine(1);
    for n in &nodes {
        post(&http, &format!("{}/admin/sync", n.gateway), json!({})).await?;
    }
    // The coordinator opens a channel to every peer (half a million sats pushed to the peer: it
    // pays tokens; and enough on the coordinator's side to pay it a whole reward every round)
    // and every validator.
    let channel_sat = peer_channel_sat(args.rounds);
    let coord = nodes[0].gateway.clone();
    let pb = bar((nodes.len() - 1) as u64, "opening channels");
    for n in nodes.iter().skip(1) {
        let st = get(&http, &format!("{}/status", n.gateway)).await?;
        let push = if n.kind == "validator" {
            0
        } else {
            CHANNEL_SAT * 1000 / 2
        };
        let sat = if n.kind == "validator" {
            CHANNEL_SAT
        } else {
            channel_sat
        };
        post(
            &http,
            &format!("{coord}/admin/channel"),
            json!({
                "node_id": st["lightning"]["node_id"],
                "addr": n.ln_listen,
                "sat": sat,
                "push_msat": push,
            }),
        )
        .await
        .with_context(|| format!("channel to {}", n.name))?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    chain.mine(6);
    for n in &nodes {
        post(&http, &format!("{}/admin/sync", n.gateway), json!({})).await?;
    }
    let want = nodes.len() - 1;
    wait_for("usable channels", async || {
        let Ok(st) = get(&http, &format!("{coord}/status")).await else {
            return false;
        };
        st["channels"]
            .as_array()
            .map(|c| c.iter().filter(|c| c["usable"] == json!(true)).count() == want)
            .unwrap_or(false)
    })
    .await?;
    let before = snapshot(&http, &nodes).await?;
    if args.bounty {
        // The sponsor posts the bounty from the command line, as an operator would.
        l402_cli(
            &exe,
            &[
                "bounty",
                "post",
                "--data-dir",
                &nodes[0].dir.display().to_string(),
                "--id",
                "demo",
                "--rounds",
                &args.rounds.to_string(),
            ],
        )
        .await?;
    } else {
        post(&http, &format!("{coord}/admin/start"), json!({})).await?;
    }
    eprintln!("demo: run started ({} rounds)", args.rounds);
    let pb = bar(args.rounds, "rounds");
    let rounds = args.rounds;
    let mut last_leaked = 0;
    let mut restarts: Vec<Value> = Vec::new();
    let (mut peer_killed, mut coord_killed) = (!args.kill_peer, !args.kill_coordinator);
    // Each round lasts up to its claim window (2 × submit + 60 s) plus the close.
    let round_secs = 3 * args.submit_secs() + 90;
    let limit = WAIT + Duration::from_secs(rounds * round_secs);
    wait_within("every round to close", limit, async || {
        if !peer_killed {
            if let Some(state) = escrow_state(&http, &nodes[1 + validators], 1).await {
                if kill_and_restart(&mut nodes[1 + validators]).is_ok() {
                    restarts.push(json!({"node": nodes[1 + validators].name, "round": 1, "escrow_at_kill": state}));
                    peer_killed = true;
                }
            }
        }
        if !coord_killed {
            let mut locked = None;
            for n in nodes.iter().skip(1 + validators) {
                if let Some(s) = escrow_state(&http, n, 2).await {
                    locked = Some(s);
                    break;
                }
            }
            if let Some(state) = locked {
                if kill_and_restart(&mut nodes[0]).is_ok() {
                    restarts.push(json!({"node": "coordinator", "round": 2, "escrow_at_kill": state}));
                    coord_killed = true;
                }
            }
        }
        let Ok(st) = get(&http, &format!("{coord}/status")).await else {
            return false;
        };
        let closed = st["run"]["history"]
            .as_array()
            .map(|h| h.iter().filter(|r| r["round"].as_u64() > Some(0)).count() as u64)
            .unwrap_or(0);
        pb.set_position(closed);
        // Hand the copiers an honest peer's blob of the current round, as a leak would.
        if let Some(r) = st["run"]["current_round"].as_u64() {
            // ALIE peers collect every honest blob of the round as it locks.
            let alie = nodes.iter().any(|n| n.kind == "alie" || n.kind == "mixed");
            let first = r > last_leaked;
            let leaked = (first || alie) && leak(&http, &nodes, r).await.unwrap_or(false);
            if leaked && first {
                last_leaked = r;
                // A bounty's copier submits the leaked diff from the command line.
                for n in nodes.iter().filter(|n| n.kind == "manual") {
                    let diff = n.dir.join("leak").join(leak_name(r));
                    let sent = l402_cli(&exe, &[
                        "bounty",
                        "submit",
                        "--data-dir",
                        &n.dir.display().to_string(),
                        "--bounty",
                        "demo",
                        "--diff",
                        &diff.display().to_string(),
                    ])
                    .await;
                    if let Err(e) = sent {
                        eprintln!("demo: {} could not submit the copy: {e:#}", n.name);
                    }
                }
            }
        }
        closed >= rounds
    })
    .await?;
    pb.finish_and_clear();
    // Every hold invoice of every node ends claimed or refunded.
    wait_for("every escrow to settle", async || {
        for n in &nodes {
            let Ok(st) = get(&http, &format!("{}/status", n.gateway)).await else {
                return false;
            };
            let open = st["machines"].as_array().into_iter().flatten().any(|m| {
                m["tranches"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| !matches!(t["state"].as_str(), Some("claimed") | Some("refunded")))
            });
            let held = st["holds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|h| h["terminal"] != json!(true));
            if open || held {
                return false;
            }
        }
        true
    })
    .await?;
    // Balances move a moment after a hold ends (the channel update with the payer): take the
    // final snapshot once every node's Lightning balance held still for two polls.
    let mut after = snapshot(&http, &nodes).await?;
    let t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again = snapshot(&http, &nodes).await?;
        let same = after
            .iter()
            .zip(&again)
            .all(|(a, b)| a["balances"]["lightning_sat"] == b["balances"]["lightning_sat"]);
        after = again;
        if same || t.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    // Then an outsider downloads the last checkpoint from the coordinator's L402 gateway,
    // paying from a peer's wallet (after the snapshot: the round accounting stays exact); bad
    // credentials never get the resource.
    let gateway = gateway_checks(&http, &nodes).await?;
    let board = if args.bounty {
        let mut b = board_checks(&http, &nodes[0], &dir).await?;
        // What an agent's operator sees from the command line: the bounties on the relay, and
        // the sponsor's board.
        b["cli_list"] =
            json!(l402_cli(&exe, &["bounty", "list", "--relay", relay.url().as_str()]).await?);
        b["cli_show"] = json!(
            l402_cli(
                &exe,
                &["bounty", "show", "--gateway", nodes[0].gateway.as_str()]
            )
            .await?
        );
        b
    } else {
        Value::Null
    };
    // A third party checks the evidence on the relay: `l402-node evidence`, which holds no key
    // of the run and re-verifies every proof.
    let evidence = run_cli(
        &exe,
        &["evidence", "--relay", relay.url().as_str(), "--json"],
    )
    .await
    .and_then(|out| Ok(serde_json::from_str::<Value>(&out)?))
    .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    let mut report = report(args, &dir, &before, &after, started.elapsed());
    report["evidence"] = evidence;
    report["board"] = board;
    report["restarts"] = json!(restarts);
    report["gateway"] = gateway;
    // Peak resident memory of every process (Linux: VmHWM), before they stop.
    let mut rss = serde_json::Map::new();
    rss.insert("demo".into(), json!(peak_rss_kb(std::process::id())));
    for n in &nodes {
        rss.insert(n.name.clone(), json!(peak_rss_kb(n.child.id())));
    }
    report["peak_rss_kb"] = Value::Object(rss);
    report["charts"] = charts(&report, &dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    drop(nodes);
    relay.shutdown().await;
    Ok(report)
}

/// Draw the report's charts next to it: held-out loss per round, sats per node.
fn charts(report: &Value, dir: &Path) -> anyhow::Result<Value> {
    let mut loss: Vec<(u64, f64)> = report["genesis_heldout_loss"]
        .as_f64()
        .map(|l| (0, l))
        .into_iter()
        .collect();
    for r in report["rounds"].as_array().into_iter().flatten() {
        if let (Some(n), Some(l)) = (r["round"].as_u64(), r["heldout_loss"].as_f64()) {
            loss.push((n, l));
        }
    }
    let sats: Vec<(String, i64)> = report["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_owned(),
                n["delta_sat"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let (l, s) = (dir.join("heldout_loss.svg"), dir.join("sats_per_node.svg"));
    super::charts::loss_svg(&loss, &l)?;
    super::charts::sats_svg(&sats, &s)?;
    Ok(json!({"heldout_loss": l.display().to_string(), "sats_per_node": s.display().to_string()}))
}

/// Fee each demo validator asks per attestation (paid when its score agrees with the quorum).
const VALIDATOR_FEE_SAT: u64 = 2;

/// The L402 flow against `GET /checkpoint/{hash}` on the coordinator: request → 402 → pay the
/// invoice from a peer's wallet → retry with the credential, in the `L402 <mac>:<preimage>` and
/// `LSAT token="…"` forms; missing, malformed and wrong-preimage credentials get 402/401.
async fn gateway_checks(http: &reqwest::Client, nodes: &[DemoNode]) -> anyhow::Result<Value> {
    let coord = &nodes[0].gateway;
    let st = get(http, &format!("{coord}/status")).await?;
    let ck = st["run"]["history"]
        .as_array()
        .and_then(|h| h.iter().max_by_key(|r| r["round"].as_u64()))
        .and_then(|r| r["checkpoint"].as_str())
        .context("a checkpoint")?
        .to_owned();
    let url = format!("{coord}/checkpoint/{ck}");
    // The client an outsider would use: curl where it is installed, else reqwest.
    let curl = Command::new("curl")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        });
    let scratch = tempfile::tempdir()?;
    let status_of = async |auth: Option<String>| -> anyhow::Result<(u16, Vec<u8>, Option<String>)> {
        if curl.is_some() {
            let (hdr, body) = (scratch.path().join("headers"), scratch.path().join("body"));
            let mut c = tokio::process::Command::new("curl");
            c.args(["-sS", "-o"]).arg(&body).arg("-D").arg(&hdr);
            c.args(["-w", "%{http_code}"]);
            if let Some(a) = &auth {
                c.args(["-H", &format!("Authorization: {a}")]);
            }
            let out = c.arg(&url).output().await?;
            anyhow::ensure!(
                out.status.success(),
                "curl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let code: u16 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
            let headers = std::fs::read_to_string(&hdr)?;
            let chal = headers.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("www-authenticate")
                    .then(|| v.trim().to_owned())
            });
            return Ok((code, std::fs::read(&body)?, chal));
        }
        let mut rq = http.get(&url);
        if let Some(a) = auth {
            rq = rq.header(reqwest::header::AUTHORIZATION, a);
        }
        let r = rq.send().await?;
        let code = r.status().as_u16();
        let chal = r
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        Ok((code, r.bytes().await?.to_vec(), chal))
    };
    let (missing, _, chal) = status_of(None).await?;
    let chal = chal.context("402 without a challenge")?;
    let parsed = l402_protocol::l402::parse_challenge(&chal)?;
    let mac = parsed.macaroon.to_base64();
    let (garbage, _, _) = status_of(Some("L402 not-a-credential".into())).await?;
    let (wrong_preimage, _, _) = status_of(Some(format!("L402 {mac}:{}", "00".repeat(32)))).await?;
    let payer = &nodes
        .iter()
        .find(|n| n.kind != "coordinator" && n.kind != "validator")
        .context("no peer to pay from")?
        .gateway;
    let paid = match post(
        http,
        &format!("{payer}/admin/pay"),
        json!({"bolt11": parsed.invoice}),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => {
            // Say what the payer's channels looked like: the first thing to read when it fails.
            let channels = get(http, &format!("{payer}/status"))
                .await
                .map(|st| st["channels"].clone())
                .unwrap_or(Value::Null);
            return Err(e.context(format!(
                "paying the checkpoint; the payer's channels: {channels}"
            )));
        }
    };
    let preimage = paid["preimage"].as_str().context("preimage")?.to_owned();
    let (ok, body, _) = status_of(Some(format!("L402 {mac}:{preimage}"))).await?;
    let (ok_lsat, body2, _) = status_of(Some(format!("LSAT token=\"{mac}:{preimage}\""))).await?;
    let verified = blake3::hash(&body).to_hex().to_string() == ck && body == body2;
    Ok(json!({
        "checkpoint": ck,
        "missing_credential": missing,
        "malformed_credential": garbage,
        "wrong_preimage": wrong_preimage,
        "paid_l402": ok,
        "paid_lsat_token_form": ok_lsat,
        "bytes": body.len(),
        "blake3_matches": verified,
        "client": curl.unwrap_or_else(|| "reqwest".to_owned()),
    }))
}

/// The escrow state of `n`'s submission in round `r` once its HTLCs are held (or later).
async fn escrow_state(http: &reqwest::Client, n: &DemoNode, r: u64) -> Option<String> {
    let st = get(http, &format!("{}/status", n.gateway)).await.ok()?;
    st["machines"].as_array()?.iter().find_map(|m| {
        let t = m["tranches"].as_array()?;
        let held = m["round"].as_u64() == Some(r)
            && !t.is_empty()
            && t.iter().all(|t| {
                matches!(
                    t["state"].as_str(),
                    Some("held" | "claiming" | "claimed" | "failing" | "refunded")
                )
            });
        held.then(|| {
            t.iter()
                .filter_map(|t| t["state"].as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
    })
}

/// SIGKILL a node (no clean shutdown: what a crash or power cut does) and start it again on the
/// same data dir.
fn kill_and_restart(n: &mut DemoNode) -> anyhow::Result<()> {
    n.child.kill()?;
    n.child.wait()?;
    eprintln!("demo: killed {} (SIGKILL), restarting it", n.name);
    n.child = spawn_up(&n.exe, &n.dir)?;
    Ok(())
}

/// Peak resident set size of process `pid` in KiB (`VmHWM`), where `/proc` has it.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The sponsor's bounty board: its JSON, and the page as headless Chromium renders it (a
/// screenshot and the DOM's text), when a Chromium is installed (`.ci/run` installs Debian's).
async fn board_checks(
    http: &reqwest::Client,
    sponsor: &DemoNode,
    dir: &Path,
) -> anyhow::Result<Value> {
    let json = get(http, &format!("{}/bounties.json", sponsor.gateway)).await?;
    let url = format!("{}/bounties", sponsor.gateway);
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| crate::bounty::sandbox::find_on_path(b).is_some())
    else {
        return Ok(json!({"json": json, "chromium": null}));
    };
    let shot = dir.join("board.png");
    let profile = dir.join("chromium-profile");
    let chromium = |extra: &[String]| {
        let mut c = tokio::process::Command::new(browser);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        c
    };
    let run = |mut c: tokio::process::Command| async move {
        tokio::time::timeout(Duration::from_secs(90), c.output())
            .await
            .map_err(|_| anyhow!("chromium timed out"))?
            .map_err(anyhow::Error::from)
    };
    let out = run(chromium(&[format!("--screenshot={}", shot.display())])).await?;
    if !out.status.success() {
        return Err(anyhow!(
            "chromium screenshot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let dom = run(chromium(&["--dump-dom".to_owned()])).await?;
    Ok(json!({
        "json": json,
        "chromium": browser,
        "screenshot": shot.display().to_string(),
        "dom": String::from_utf8_lossy(&dom.stdout),
    }))
}

/// Run this binary with `args` (an operator's command), failing with its stderr; echoes its
/// output.
async fn l402_cli(exe: &NodeExe, args: &[&str]) -> anyhow::Result<String> {
    let stdout = run_cli(exe, args).await?;
    eprintln!("demo: {stdout}");
    Ok(stdout)
}

/// Run this binary with `args`, failing with its stderr; returns its output.
async fn run_cli(exe: &NodeExe, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::from(exe.command())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await?;
    if !out.status.success() {
        return Err(anyhow!(
            "l402-node {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The file name of a node's submission of the demo run's round `r` (as `up` writes it).
fn leak_name(r: u64) -> String {
    format!("{}-{r}.blob", hex::encode("demo"))
}

/// Copy an honest peer's submission of round `r` to every copier and copycat, and every honest
/// submission of the round to every ALIE peer (`leak/<name>.d/<peer>.blob`): what a leak would
/// hand them. Only once the coordinator has accepted that submission (the peer's HTLCs are
/// held): a blob leaks after its owner released it, and before that the copy would be the first
/// submission of it (the copy rule keeps the first). Returns whether the copiers got theirs;
/// ALIE peers get more on each call as more honest escrows lock.
async fn leak(http: &reqwest::Client, nodes: &[DemoNode], r: u64) -> anyhow::Result<bool> {
    let name = leak_name(r);
    let mut held = Vec::new();
    for n in nodes
        .iter()
        .filter(|n| n.kind == "honest" || n.kind == "agent")
    {
        let p = n.dir.join("submissions").join(&name);
        if p.exists() && escrow_state(http, n, r).await.is_some() {
            held.push((n, p));
        }
    }
    let Some((_, first)) = held.first() else {
        return Ok(false);
    };
    let bytes = std::fs::read(first)?;
    for n in nodes.iter().filter(|n| {
        matches!(
            n.kind.as_str(),
            "copier" | "manual" | "copycat-noise" | "mixed"
        )
    }) {
        let d = n.dir.join("leak");
        std::fs::create_dir_all(&d)?;
        crate::durable::write_atomic(&d, &name, &bytes)?;
    }
    for n in nodes
        .iter()
        .filter(|n| n.kind == "alie" || n.kind == "mixed")
    {
        let d = n.dir.join("leak").join(format!("{name}.d"));
        std::fs::create_dir_all(&d)?;
        for (src, p) in &held {
            let file = format!("{}.blob", src.name);
            if !d.join(&file).exists() {
                crate::durable::write_atomic(&d, &file, &std::fs::read(p)?)?;
            }
        }
    }
    Ok(true)
}

async fn snapshot(http: &reqwest::Client, nodes: &[DemoNode]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for n in nodes {
        let mut st = get(http, &format!("{}/status", n.gateway)).await?;
        st["name"] = json!(n.name);
        st["kind"] = json!(n.kind);
        out.push(st);
    }
    Ok(out)
}

fn report(args: &DemoArgs, dir: &Path, before: &[Value], after: &[Value], wall: Duration) -> Value {
    let coord = &after[0];
    let history = coord["run"]["history"].clone();
    let mut rounds = Vec::new();
    for r in 1..=args.rounds {
        let mut subs = Vec::new();
        for n in after.iter().filter(|n| n["roles"]["peer"].is_string()) {
            for m in n["machines"].as_array().into_iter().flatten() {
                if m["round"].as_u64() != Some(r) || m["role"] != json!("peer") {
                    continue;
                }
                let tranches = m["tranches"].as_array().cloned().unwrap_or_default();
                let paid: u64 = tranches
                    .iter()
                    .filter(|t| t["state"] == json!("claimed"))
                    .filter_map(|t| t["amount_msat"].as_u64())
                    .sum();
                let refunded: u64 = tranches
                    .iter()
                    .filter(|t| t["state"] == json!("refunded"))
                    .filter_map(|t| t["amount_msat"].as_u64())
                    .sum();
                // What each validator attested for it (initial evaluation).
                let evals: Vec<Value> = after
                    .iter()
                    .filter(|v| v["kind"] == json!("validator"))
                    .flat_map(|v| {
                        v["machines"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|vm| vm["round"].as_u64() == Some(r))
                            .flat_map(|vm| vm["evaluations"].as_array().into_iter().flatten())
                            .filter(|e| e["submission"] == m["submission"])
                            .map(|e| json!({"validator": v["name"], "score": e["score"], "verdict": e["verdict"], "state": e["state"]}))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                subs.push(json!({
                    "peer": n["name"],
                    "behaviour": n["kind"],
                    "submission": m["submission"],
                    "evaluations": evals,
                    "paid_sat": paid / 1000,
                    "refunded_sat": refunded / 1000,
                }));
            }
        }
        let h = history
            .as_array()
            .and_then(|h| h.iter().find(|x| x["round"].as_u64() == Some(r)))
            .cloned()
            .unwrap_or(Value::Null);
        rounds.push(json!({ "round": r, "checkpoint": h["checkpoint"], "merged": h["merged"], "heldout_loss": h["heldout_loss"], "submissions": subs }));
    }
    let nodes: Vec<Value> = before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let ln = |v: &Value| v["balances"]["lightning_sat"].as_i64().unwrap_or(0);
            // Sums of the payments ldk-node records as succeeded, this run only.
            let settled = |dir: &str| -> u64 {
                let old: Vec<&Value> = b["payments"].as_array().into_iter().flatten().collect();
                a["payments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["direction"] == json!(dir) && p["status"] == json!("succeeded"))
                    .filter(|p| !old.iter().any(|o| o["payment_hash"] == p["payment_hash"]))
                    .filter_map(|p| p["amount_msat"].as_u64())
                    .sum()
            };
            json!({
                "name": a["name"],
                "kind": a["kind"],
                "nostr": a["nostr"],
                "roles": a["roles"],
                "lightning_sat_before": ln(b),
                "lightning_sat_after": ln(a),
                "delta_sat": ln(a) - ln(b),
                "received_msat": settled("received"),
                "sent_msat": settled("sent"),
                "holds": a["holds"],
                "payments": a["payments"],
                "blob_fetches": a["blob_fetches"],
            })
        })
        .collect();
    let checks: Vec<Value> = after
        .iter()
        .filter(|n| n["kind"] == json!("validator"))
        .flat_map(|n| {
            n["checkpoint_checks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    c["validator"] = n["name"].clone();
                    c
                })
        })
        .collect();
    json!({
        "dir": dir.display().to_string(),
        "phases": phases(after, args.rounds),
        "committees": coord["machines"].as_array().into_iter().flatten()
            .filter(|m| m["role"] == json!("coordinator"))
            .map(|m| json!({"round": m["round"], "committee": m["committee"]}))
            .collect::<Vec<_>>(),
        "checkpoint_checks": checks,
        "wall_secs": wall.as_secs_f64(),
        "genesis_heldout_loss": history.as_array().and_then(|h| h.iter().find(|x| x["round"] == json!(0))).map(|x| x["heldout_loss"].clone()),
        "rounds": rounds,
        "nodes": nodes,
    })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1)) - 1;
    v.get(i).copied()
}

/// Where each round's wall time went, from the nodes' timelines (milliseconds): training and
/// compression on the honest peers, their submission (token purchase, blob store, publish),
/// validators' evaluations (fetch over iroh + scoring), lock → claim requested (quorum: the
/// attestations with k shares) and claim → claimed (settle), per honest tranche. A node that
/// was restarted lost its marks before the restart (they are not persisted): its entries are
/// missing, not wrong.
fn phases(after: &[Value], rounds: u64) -> Value {
    let ms = |v: &Value| v.as_u64().map(|x| x as f64);
    let coord = &after[0]["timeline"];
    let honest: Vec<&Value> = after
        .iter()
        .filter(|n| n["kind"] == json!("honest"))
        .collect();
    let validators: Vec<&Value> = after
        .iter()
        .filter(|n| n["kind"] == json!("validator"))
        .collect();
    let mut per_round = Vec::new();
    let (mut all_quorum, mut all_settle, mut all_lock_claimed) = (vec![], vec![], vec![]);
    for r in 1..=rounds {
        let key = format!("demo/{r}");
        let wall = match (
            ms(&coord["rounds"][&key]["open"]),
            ms(&coord["rounds"][&key]["closed"]),
        ) {
            (Some(a), Some(b)) if b >= a => Some(b - a),
            _ => None,
        };
        let dur = |nodes: &[&Value], what: &str| -> Vec<f64> {
            nodes
                .iter()
                .flat_map(|n| {
                    n["timeline"]["durations"][&key][what]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|v| ms(&v))
                .collect()
        };
        let submit: Vec<f64> = honest
            .iter()
            .filter_map(|n| {
                let m = &n["timeline"]["rounds"][&key];
                Some(ms(&m["submitted"])? - ms(&m["blob_ready"])?)
            })
            .collect();
        let (mut quorum, mut settle) = (vec![], vec![]);
        for n in &honest {
            let tranches = n["machines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["round"].as_u64() == Some(r) && m["role"] == json!("peer"))
                .flat_map(|m| m["tranches"].as_array().cloned().unwrap_or_default());
            for t in tranches {
                let h = &n["timeline"]["holds"][t["payment_hash"].as_str().unwrap_or("")];
                let (held, asked, done) =
                    (ms(&h["held"]), ms(&h["claim_requested"]), ms(&h["claimed"]));
                if let (Some(a), Some(b)) = (held, asked) {
                    quorum.push(b - a);
                }
                if let (Some(b), Some(c)) = (asked, done) {
                    settle.push(c - b);
                }
                if let (Some(a), Some(c)) = (held, done) {
                    all_lock_claimed.push(c - a);
                }
            }
        }
        all_quorum.extend(&quorum);
        all_settle.extend(&settle);
        let train = mean(&dur(&honest, "train"));
        per_round.push(json!({
            "round": r,
            "wall_ms": wall,
            "train_ms": train,
            "compress_ms": mean(&dur(&honest, "compress")),
            "submit_ms": mean(&submit),
            "evaluate_ms": mean(&dur(&validators, "evaluate")),
            "quorum_ms": mean(&quorum),
            "settle_ms": mean(&settle),
            "peer_utilisation": match (train, wall) {
                (Some(t), Some(w)) if w > 0.0 => Some(t / w),
                _ => None,
            },
        }));
    }
    json!({
        "rounds": per_round,
        "lock_to_quorum_ms": {"p50": quantile(&all_quorum, 0.5), "p95": quantile(&all_quorum, 0.95), "n": all_quorum.len()},
        "quorum_to_claimed_ms": {"p50": quantile(&all_settle, 0.5), "p95": quantile(&all_settle, 0.95), "n": all_settle.len()},
        "lock_to_claimed_ms": {"p50": quantile(&all_lock_claimed, 0.5), "p95": quantile(&all_lock_claimed, 0.95), "n": all_lock_claimed.len()},
    })
}

/// Print the report's phase table: where each round's time went (the demo and the network
/// bench print the same).
pub fn print_phases(report: &Value) {
    println!(
        "\n{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "round", "wall ms", "train", "compress", "submit", "evaluate", "quorum", "settle", "util"
    );
    for p in report["phases"]["rounds"].as_array().into_iter().flatten() {
        let f = |k: &str| p[k].as_f64().map_or("-".to_owned(), |v| format!("{v:.0}"));
        println!(
            "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            p["round"].as_u64().unwrap_or(0),
            f("wall_ms"),
            f("train_ms"),
            f("compress_ms"),
            f("submit_ms"),
            f("evaluate_ms"),
            f("quorum_ms"),
            f("settle_ms"),
            p["peer_utilisation"]
                .as_f64()
                .map_or("-".to_owned(), |u| format!("{:.0}%", u * 100.0))
        );
    }
}

/// Print the per-round table.
pub fn print_table(report: &Value) {
    println!(
        "{:<6} {:<8} {:<11} {:<10} {:<26} {:<22} {:>9} {:>10}",
        "round",
        "peer",
        "behaviour",
        "submission",
        "scores (millionths)",
        "verdicts",
        "paid sat",
        "refund sat"
    );
    for r in report["rounds"].as_array().into_iter().flatten() {
        for s in r["submissions"].as_array().into_iter().flatten() {
            let evals = s["evaluations"].as_array().cloned().unwrap_or_default();
            let scores: Vec<String> = evals
                .iter()
                .map(|e| e["score"].as_i64().map_or("-".into(), |x| x.to_string()))
                .collect();
            let mut verdicts: Vec<String> = evals
                .iter()
                .map(|e| e["verdict"].as_str().unwrap_or("none").to_owned())
                .collect();
            verdicts.dedup();
            let sub = s["submission"].as_str().unwrap_or("");
            println!(
                "{:<6} {:<8} {:<11} {:<10} {:<26} {:<22} {:>9} {:>10}",
                r["round"].as_u64().unwrap_or(0),
                s["peer"].as_str().unwrap_or(""),
                s["behaviour"].as_str().unwrap_or(""),
                &sub[..sub.len().min(8)],
                if scores.is_empty() {
                    "(not evaluated)".to_owned()
                } else {
                    scores.join(" ")
                },
                verdicts.join(","),
                s["paid_sat"],
                s["refunded_sat"]
            );
        }
        println!(
            "round {} merged {} → checkpoint {} held-out loss {}",
            r["round"].as_u64().unwrap_or(0),
            r["merged"],
            r["checkpoint"]
                .as_str()
                .map(|c| &c[..c.len().min(16)])
                .unwrap_or("-"),
            r["heldout_loss"]
        );
    }
    print_phases(report);
    let l = &report["phases"]["lock_to_claimed_ms"];
    println!(
        "lock → claimed: p50 {} ms, p95 {} ms ({} tranches)",
        l["p50"], l["p95"], l["n"]
    );
    let checks = report["checkpoint_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!(
        "\ncheckpoints recomputed by validators: {} of {} equal",
        checks.iter().filter(|c| c["ok"] == json!(true)).count(),
        checks.len()
    );
    println!(
        "\n  {:<14} {:<12} {:>14} {:>14} {:>14}",
        "node", "kind", "balance Δ sat", "received sat", "sent sat"
    );
    for n in report["nodes"].as_array().into_iter().flatten() {
        println!(
            "  {:<14} {:<12} {:>+14} {:>14} {:>14}",
            n["name"].as_str().unwrap_or(""),
            n["kind"].as_str().unwrap_or(""),
            n["delta_sat"].as_i64().unwrap_or(0),
            n["received_msat"].as_u64().unwrap_or(0) / 1000,
            n["sent_msat"].as_u64().unwrap_or(0) / 1000
        );
    }
}

/// Run `demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(run_demo(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    eprintln!(
        "report: {}",
        Path::new(report["dir"].as_str().unwrap_or("."))
            .join("report.json")
            .display()
    );
    eprintln!(
        "charts: {} {}",
        report["charts"]["heldout_loss"].as_str().unwrap_or(""),
        report["charts"]["sats_per_node"].as_str().unwrap_or("")
    );
    Ok(())
}
