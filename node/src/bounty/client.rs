//! The bounty commands that talk to the network: `bounty post` and `bounty submit` ask the
//! operator's own running node (loopback operator calls on its gateway), `bounty list` reads the
//! directory from the relays, `bounty show` reads a sponsor's board.
//!
//! Spec: specs/L2T-13-bounties.md#the-network

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

/// Arguments of `l402-node bounty post`.
#[derive(Debug, Clone, clap::Args)]
pub struct PostArgs {
    /// The sponsor node's data dir (its gateway address is read from `l402.toml`).
    #[arg(long, env = "L402_DATA_DIR", default_value = "l402-data")]
    pub data_dir: PathBuf,
    /// Bounty id.
    #[arg(long, default_value = "tiny-lm")]
    pub id: String,
    /// The whole pool, in sats.
    #[arg(long, default_value_t = 40_000)]
    pub pool_sats: u64,
    /// Tranches of the pool (at most 4: each has a holdback twin in the escrow).
    #[arg(long, default_value_t = 4)]
    pub tranches: u32,
    /// Improvement (millionths of the metric) that earns the whole pool.
    #[arg(long, default_value_t = 400_000)]
    pub target: i64,
    /// A diff must beat the leader by this much (millionths of the metric).
    #[arg(long, default_value_t = 60_000)]
    pub margin: i64,
    /// Rounds (each measures one candidate against the leader by default).
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
    /// Submission fee, in sats.
    #[arg(long, default_value_t = 20)]
    pub fee_sats: u64,
}

/// Arguments of `l402-node bounty submit`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// The agent node's data dir (it pays the fee and runs the submission's escrow).
    #[arg(long, env = "L402_DATA_DIR", default_value = "l402-data")]
    pub data_dir: PathBuf,
    /// Bounty id.
    #[arg(long)]
    pub bounty: String,
    /// The unified diff against the current leader's tree (e.g. from `bounty agent`).
    #[arg(long)]
    pub diff: PathBuf,
}

/// Arguments of `l402-node bounty show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The sponsor's gateway (the bounty event's `gateway`), e.g. `http://127.0.0.1:8402`.
    #[arg(long)]
    pub gateway: String,
    /// Only this bounty.
    #[arg(long)]
    pub id: Option<String>,
    /// Print the board's JSON as it is.
    #[arg(long)]
    pub json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn operator_call(data_dir: &std::path::Path, path: &str, body: Value) -> anyhow::Result<Value> {
    let (cfg, _) = crate::config::load(data_dir)?;
    let url = format!("http://{}{path}", cfg.gateway_listen);
    runtime()?.block_on(async {
        let r = reqwest::Client::new()
            .post(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("{url}: is `l402-node up` running?"))?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("{url}: {status}: {}", v["error"].as_str().unwrap_or(""));
        }
        Ok(v)
    })
}

/// `bounty post`: the running node sponsors the example bounty.
pub fn post(a: &PostArgs) -> anyhow::Result<()> {
    let v = operator_call(
        &a.data_dir,
        "/admin/bounty/post",
        json!({
            "id": a.id, "rounds": a.rounds, "pool_sats": a.pool_sats, "tranches": a.tranches,
            "target": a.target, "margin": a.margin, "fee_sats": a.fee_sats,
        }),
    )?;
    println!(
        "posted bounty {} · board {}",
        v["bounty"].as_str().unwrap_or(""),
        v["board"].as_str().unwrap_or("")
    );
    Ok(())
}

/// `bounty submit`: the running node pays the fee and submits the diff to the open round.
pub fn submit(a: &SubmitArgs) -> anyhow::Result<()> {
    let diff = std::fs::read_to_string(&a.diff)
        .with_context(|| format!("{}: a unified diff (UTF-8)", a.diff.display()))?;
    let v = operator_call(
        &a.data_dir,
        "/admin/bounty/submit",
        json!({"bounty": a.bounty, "diff": diff}),
    )?;
    println!(
        "submitted diff {} to bounty {} round {}",
        v["diff"].as_str().unwrap_or(""),
        v["bounty"].as_str().unwrap_or(""),
        v["round"]
    );
    Ok(())
}

/// `bounty show`: a sponsor's board as tables.
pub fn show(a: &ShowArgs) -> anyhow::Result<()> {
    let url = format!("{}/bounties.json", a.gateway.trim_end_matches('/'));
    let board: Value = runtime()?.block_on(async {
        let r = reqwest::get(&url)
            .await
            .with_context(|| format!("{url}: the sponsor's gateway"))?;
        anyhow::Ok(r.error_for_status()?.json().await?)
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&board)?);
        return Ok(());
    }
    let empty = serde_json::Map::new();
    for (id, b) in board["sponsored"].as_object().unwrap_or(&empty) {
        if a.id.as_ref().is_some_and(|want| want != id) {
            continue;
        }
        println!(
            "{id}: {} [{}]\n  metric {} ({}) · pool {} sat · awarded {} sat · margin {} · target {} · deadline {}\n  baseline {} · current best {}",
            b["title"].as_str().unwrap_or(""),
            b["status"].as_str().unwrap_or(""),
            b["metric"].as_str().unwrap_or(""),
            b["direction"].as_str().unwrap_or(""),
            b["pool_sat"],
            b["awarded_sat"],
            b["margin"],
            b["target"],
            b["deadline"],
            b["baseline_metric"],
            b["best_metric"],
        );
        println!(
            "  {:>5} {:<12} {:<12} {:>11} {:>7} {:>9}  outcome",
            "round", "agent", "diff", "improvement", "award", "holdback"
        );
        for e in b["leaderboard"].as_array().into_iter().flatten() {
            let short = |k: &str| {
                e[k].as_str()
                    .unwrap_or("")
                    .chars()
                    .take(12)
                    .collect::<String>()
            };
            println!(
                "  {:>5} {:<12} {:<12} {:>11} {:>7} {:>9}  {}",
                e["round"],
                short("agent"),
                short("diff"),
                e["median"]
                    .as_i64()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "—".into()),
                e["award_sat"],
                e["holdback_sat"],
                e["outcome"].as_str().unwrap_or(""),
            );
        }
    }
    for e in board["exploits"].as_array().into_iter().flatten() {
        println!(
            "exploit: bounty {} agent {} diff {} tried {}",
            e["bounty"].as_str().unwrap_or(""),
            e["agent"].as_str().unwrap_or(""),
            e["diff_hash"].as_str().unwrap_or(""),
            e["classes"]
        );
    }
    Ok(())
}
