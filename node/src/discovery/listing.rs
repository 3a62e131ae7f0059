//! The directory listings behind `l402-node runs`, `validators` and `bounties`.
//!
//! Which relays are read: the `--relay` URLs if given; otherwise the local node's embedded relay
//! on its default address if one is listening; otherwise the node's relay store in its data dir,
//! served for the duration of the command by a temporary embedded relay ("no server").

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use l402_relay_kit::config::DEFAULT_PORT;
use l402_relay_kit::relay::relay_data_dir;
use l402_relay_kit::RelayConfig;
use nostr_sdk::prelude::{Keys, PublicKey, RelayUrl, Timestamp, ToBech32};

use super::directory::{roles_str, Directory, EntryJson};
use super::pool::{Discovery, DiscoveryConfig};

/// Flags shared by the listing commands.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Relay to read (repeat the flag or separate with commas). Default: the local node's
    /// embedded relay, or its store in the data dir.
    #[arg(long = "relay", env = "L402_RELAYS", value_delimiter = ',')]
    pub relays: Vec<String>,
    /// Where the local node's embedded relay listens; read it if no `--relay` is given.
    #[arg(long, env = "L402_LOCAL_RELAY", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub local_relay: SocketAddr,
    /// Node data dir (where the embedded relay keeps its store).
    #[arg(long, env = "L402_DATA_DIR", default_value = "l402-data")]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the relays' stored events, in seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

/// Which listing to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Runs, grouped by coordinator.
    Runs,
    /// Validators with their bound keys.
    Validators,
    /// Bounties.
    Bounties,
}

/// Chooses the relays to read, per the module docs.
fn resolve_relays(args: &ListArgs) -> anyhow::Result<(Vec<RelayUrl>, RelayConfig)> {
    let embedded = RelayConfig::persistent(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        relay_data_dir(&args.data_dir),
    );
    if !args.relays.is_empty() {
        let urls = args
            .relays
            .iter()
            .map(|u| RelayUrl::parse(u).map_err(|e| anyhow::anyhow!("bad relay URL {u}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok((urls, embedded));
    }
    let local = args.local_relay;
    if TcpStream::connect_timeout(&local, Duration::from_millis(300)).is_ok() {
        return Ok((vec![RelayUrl::parse(&format!("ws://{local}"))?], embedded));
    }
    Ok((Vec::new(), embedded))
}

/// A read-only client of the relays `args` name (see the module docs), connected (or given up
/// on, with a warning per unreachable relay): what the listing commands and `l402-node
/// evidence` read through. It needs no identity: a throwaway key signs nothing.
pub(crate) async fn reader(args: &ListArgs) -> anyhow::Result<Discovery> {
    let (relays, embedded) = resolve_relays(args)?;
    let config = DiscoveryConfig {
        relays,
        embedded,
        directory: false,
        ..DiscoveryConfig::default()
    };
    let discovery = Discovery::start(config, Keys::generate()).await?;
    if !discovery
        .wait_connected(Duration::from_secs(args.timeout_secs))
        .await
    {
        let live = discovery.connected_relays().await;
        for url in discovery.relays().iter().filter(|u| !live.contains(*u)) {
            tracing::warn!(relay = %url, "relay not reachable; listing what the others have");
        }
    }
    Ok(discovery)
}

/// Runs one listing command.
pub fn run(listing: Listing, args: ListArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(async move {
        let discovery = reader(&args).await?;
        let dir = discovery
            .fetch_directory(Duration::from_secs(args.timeout_secs))
            .await?;
        discovery.shutdown().await;
        anyhow::Ok(render(listing, &dir, Timestamp::now(), args.json)?)
    })?;
    print!("{out}");
    Ok(())
}

/// Renders a listing of `dir` at `now`, as a table or as JSON.
pub fn render(
    listing: Listing,
    dir: &Directory,
    now: Timestamp,
    json: bool,
) -> Result<String, serde_json::Error> {
    if json {
        let mut s = match listing {
            Listing::Runs => {
                serde_json::to_string_pretty(&dir.runs(now).map(EntryJson::of).collect::<Vec<_>>())?
            }
            Listing::Validators => serde_json::to_string_pretty(
                &dir.validators(now).map(EntryJson::of).collect::<Vec<_>>(),
            )?,
            Listing::Bounties => serde_json::to_string_pretty(
                &dir.bounties(now).map(EntryJson::of).collect::<Vec<_>>(),
            )?,
        };
        s.push('\n');
        return Ok(s);
    }
    Ok(match listing {
        Listing::Runs => runs_table(dir, now),
        Listing::Validators => validators_table(dir, now),
        Listing::Bounties => bounties_table(dir, now),
    })
}

fn npub(pk: &PublicKey) -> String {
    pk.to_bech32().unwrap_or_else(|_| pk.to_hex())
}

fn expiry(at: Option<Timestamp>, now: Timestamp) -> String {
    match at {
        None => "never".into(),
        Some(t) => format!("in {}s", t.as_secs().saturating_sub(now.as_secs())),
    }
}

/// A left-aligned text table.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
    out
}

fn runs_table(dir: &Directory, now: Timestamp) -> String {
    let coordinators = dir.coordinators(now);
    if coordinators.is_empty() {
        return "no runs announced\n".into();
    }
    let mut rows = Vec::new();
    for c in &coordinators {
        for run in &c.runs {
            let r = run.verified.value();
            rows.push(vec![
                r.run_id.to_string(),
                r.title.clone(),
                npub(&c.author),
                format!("{}-of-{}", r.k, r.n),
                format!("{}s", r.round_secs),
                r.submission_price_msat.to_string(),
                r.genesis_checkpoint.to_hex(),
                expiry(run.expires_at, now),
            ]);
        }
    }
    table(
        &[
            "RUN",
            "TITLE",
            "COORDINATOR",
            "QUORUM",
            "ROUND",
            "PRICE_MSAT",
            "GENESIS",
            "EXPIRES",
        ],
        rows,
    )
}

fn validators_table(dir: &Directory, now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = dir
        .validators(now)
        .map(|v| {
            let a = v.verified.value();
            vec![
                npub(&v.author()),
                hex::encode(a.iroh_node_id),
                hex::encode(a.ln_node_id),
                a.validator
                    .map(|t| t.fee_msat.to_string())
                    .unwrap_or_default(),
                roles_str(&a.roles),
                expiry(v.expires_at, now),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no validators announced\n".into();
    }
    table(
        &[
            "NOSTR",
            "IROH_NODE_ID",
            "LN_NODE_ID",
            "FEE_MSAT",
            "ROLES",
            "EXPIRES",
        ],
        rows,
    )
}

fn bounties_table(dir: &Directory, now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = dir
        .bounties(now)
        .map(|b| {
            let v = b.verified.value();
            vec![
                v.bounty_id.to_string(),
                v.title.clone(),
                npub(&b.author()),
                format!("{} ({:?})", v.metric, v.direction).to_lowercase(),
                v.pool_msat.to_string(),
                v.deadline.to_string(),
                expiry(b.expires_at, now),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no bounties announced\n".into();
    }
    table(
        &[
            "BOUNTY",
            "TITLE",
            "SPONSOR",
            "METRIC",
            "POOL_MSAT",
            "DEADLINE",
            "EXPIRES",
        ],
        rows,
    )
}
