//! `l402-node status` and `l402-node wallet`: ask a running node (`up`) through its gateway.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

/// Arguments of `status` and `wallet`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The node's data dir (its gateway address is read from `l402.toml`).
    #[arg(long, env = "L402_DATA_DIR", default_value = "l402-data")]
    pub data_dir: PathBuf,
    /// Print the gateway's JSON as it is.
    #[arg(long)]
    pub json: bool,
}

fn fetch(args: &StatusArgs) -> anyhow::Result<Value> {
    let (cfg, _) = crate::config::load(&args.data_dir)?;
    let url = format!("http://{}/status", cfg.gateway_listen);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let r = reqwest::get(&url)
            .await
            .with_context(|| format!("{url}: is `l402-node up` running?"))?;
        Ok(r.error_for_status()?.json().await?)
    })
}

/// `status`: roles, machines (rounds, escrows) and the run's history.
pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let st = fetch(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    println!("nostr     {}", st["nostr"].as_str().unwrap_or(""));
    println!(
        "lightning {}",
        st["lightning"]["node_id"].as_str().unwrap_or("")
    );
    println!("roles     {}", st["roles"]);
    for m in st["machines"].as_array().into_iter().flatten() {
        let tranches: Vec<String> = m["tranches"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{} sat {}",
                    t["amount_msat"].as_u64().unwrap_or(0) / 1000,
                    t["state"].as_str().unwrap_or("")
                )
            })
            .collect();
        println!(
            "{:<28} {} {}",
            m["machine"].as_str().unwrap_or(""),
            m["checkpoint"]
                .as_str()
                .map(|c| format!("checkpoint {}", &c[..c.len().min(16)]))
                .unwrap_or_default(),
            tranches.join(", ")
        );
    }
    for h in st["run"]["history"].as_array().into_iter().flatten() {
        println!(
            "round {:>3}  merged {}  held-out loss {}",
            h["round"], h["merged"], h["heldout_loss"]
        );
    }
    Ok(())
}

/// `wallet`: balances, channels, hold invoices and payments with their states (`--json`: with
/// each one's BOLT11).
pub fn run_wallet(args: StatusArgs) -> anyhow::Result<()> {
    let st = fetch(&args)?;
    if args.json {
        let w = serde_json::json!({
            "balances": st["balances"],
            "channels": st["channels"],
            "holds": st["holds"],
            "payments": st["payments"],
        });
        println!("{}", serde_json::to_string_pretty(&w)?);
        return Ok(());
    }
    let b = &st["balances"];
    println!(
        "on-chain {} sat ({} spendable) · lightning {} sat",
        b["onchain_total_sat"], b["onchain_spendable_sat"], b["lightning_sat"]
    );
    for c in st["channels"].as_array().into_iter().flatten() {
        println!(
            "channel {}  {} sat  out {} msat  in {} msat  {}",
            c["counterparty"].as_str().unwrap_or(""),
            c["capacity_sat"],
            c["outbound_msat"],
            c["inbound_msat"],
            if c["usable"] == Value::Bool(true) {
                "usable"
            } else {
                "not usable"
            }
        );
    }
    for h in st["holds"].as_array().into_iter().flatten() {
        println!(
            "hold {}  {} msat  {}",
            h["payment_hash"].as_str().unwrap_or(""),
            h["amount_msat"],
            h["state"].as_str().unwrap_or("")
        );
    }
    for p in st["payments"].as_array().into_iter().flatten() {
        println!(
            "{:<8} {}  {} msat  {}",
            p["direction"].as_str().unwrap_or(""),
            p["payment_hash"].as_str().unwrap_or(""),
            p["amount_msat"],
            p["status"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
