//! `l402-testnet`: runs the in-process regtest chain and serves its Esplora API on 127.0.0.1.
//!
//! ```text
//! l402-testnet --port 3002 --block-interval-secs 10
//! # prints: esplora http://127.0.0.1:3002
//! curl -s -X POST localhost:3002/faucet -H 'content-type: application/json' \
//!      -d '{"address":"bcrt1q...","amount_sat":1000000,"confirm":true}'
//! curl -s -X POST localhost:3002/mine -H 'content-type: application/json' -d '{"blocks":6}'
//! ```
//!
//! With `--relay 127.0.0.1:4869` it also runs the l402 Nostr relay (`l402_relay_kit`, the same
//! relay `l402-node relay` runs) and prints `relay ws://…`.

use std::time::Duration;

use clap::Parser;
use l402_testnet::{Testnet, TestnetConfig, DEFAULT_FEE_RATE_SAT_VB, DEFAULT_PREMINE};

/// Command line of `l402-testnet`.
#[derive(Debug, Parser)]
#[command(
    name = "l402-testnet",
    version,
    about = "In-process regtest Bitcoin chain with an Esplora API, a miner and a faucet."
)]
struct Args {
    /// TCP port on 127.0.0.1 (0 picks a free port).
    #[arg(long, env = "L402_TESTNET_PORT", default_value_t = 0)]
    port: u16,
    /// Seed of the faucet key.
    #[arg(long, env = "L402_TESTNET_FAUCET_SEED", default_value_t = 0)]
    faucet_seed: u64,
    /// Blocks mined to the faucet before serving.
    #[arg(long, env = "L402_TESTNET_PREMINE", default_value_t = DEFAULT_PREMINE)]
    premine: u32,
    /// Fee rate served by /fee-estimates, sat/vB.
    #[arg(long, env = "L402_TESTNET_FEE_RATE", default_value_t = DEFAULT_FEE_RATE_SAT_VB)]
    fee_rate: f64,
    /// Mine a block every N seconds (0: only on request).
    #[arg(long, env = "L402_TESTNET_BLOCK_INTERVAL", default_value_t = 0)]
    block_interval_secs: u64,
    /// Skip libbitcoinconsensus script verification.
    #[arg(long, env = "L402_TESTNET_NO_SCRIPT_CHECKS")]
    no_script_checks: bool,
    // --- Nostr relay (relay-kit, issue 5) ---
    /// Also run the l402 Nostr relay on this address (port 0 picks a free port).
    #[arg(long, env = "L402_TESTNET_RELAY")]
    relay: Option<std::net::SocketAddr>,
    /// Directory of the relay's LMDB store (memory if absent).
    #[arg(long, env = "L402_TESTNET_RELAY_DATA_DIR", requires = "relay")]
    relay_data_dir: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let testnet = Testnet::start(TestnetConfig {
        port: args.port,
        faucet_seed: args.faucet_seed,
        premine: args.premine,
        fee_rate_sat_vb: args.fee_rate,
        verify_scripts: !args.no_script_checks,
    })
    .await?;
    println!("esplora {}", testnet.url());
    println!("faucet {}", testnet.faucet_address());
    // --- Nostr relay (relay-kit, issue 5): lives until the end of main ---
    let _relay = match args.relay {
        Some(listen) => {
            let relay = l402_relay_kit::spawn_relay(l402_relay_kit::RelayConfig {
                listen,
                data_dir: args.relay_data_dir.clone(),
                ..l402_relay_kit::RelayConfig::default()
            })
            .await?;
            println!("relay {}", relay.url());
            Some(relay)
        }
        None => None,
    };
    if args.block_interval_secs > 0 {
        let mut tick = tokio::time::interval(Duration::from_secs(args.block_interval_secs));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let hash = testnet.mine(1);
                    tracing::info!(height = testnet.height(), hash = ?hash.first(), "mined block");
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    } else {
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
