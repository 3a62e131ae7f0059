//! `l402-node relay`: run the embedded relay on its own, as a standalone Nostr relay.
//!
//! The same relay a node embeds when no relay is configured (`l402_relay_kit`), on a fixed
//! address, persisted in `<data-dir>/relay`. Prints `relay listening on ws://…` on stdout once it
//! listens, then runs until Ctrl-C or SIGTERM.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use l402_relay_kit::config::{DEFAULT_PORT, EVENTS_PER_MINUTE, EVENT_BURST, MAX_EVENT_BYTES};
use l402_relay_kit::relay::relay_data_dir;
use l402_relay_kit::{Censor, CensorMode, ForeignKinds, RateLimits, RelayConfig};
use nostr_sdk::Kind;

/// What a censoring relay answers (for tests and simulations of censoring relays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CensorArg {
    /// Answer `OK true` and store nothing.
    Drop,
    /// Answer `OK false` with `blocked:`.
    Reject,
}

/// Flags of `l402-node relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "L402_RELAY_LISTEN", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub listen: SocketAddr,
    /// Node data dir; the relay store lives in `<data-dir>/relay`.
    #[arg(long, env = "L402_DATA_DIR", default_value = "l402-data")]
    pub data_dir: PathBuf,
    /// Keep events in memory only (nothing written to disk).
    #[arg(long)]
    pub memory: bool,
    /// Sustained EVENTs per minute per connection.
    #[arg(long, default_value_t = EVENTS_PER_MINUTE)]
    pub events_per_minute: u32,
    /// EVENT burst per connection.
    #[arg(long, default_value_t = EVENT_BURST)]
    pub burst: u32,
    /// Largest event accepted, in bytes.
    #[arg(long, default_value_t = MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,
    /// Also store kinds outside the l402 set (after size, date and signature checks).
    #[arg(long)]
    pub accept_foreign_kinds: bool,
    /// Censor these kinds (comma-separated numbers). For tests of censoring relays.
    #[arg(long, value_delimiter = ',')]
    pub censor_kinds: Vec<u16>,
    /// Censor every l402 kind. For tests of censoring relays.
    #[arg(long)]
    pub censor_l402: bool,
    /// How censored events are answered.
    #[arg(long, value_enum, default_value_t = CensorArg::Drop)]
    pub censor_mode: CensorArg,
}

impl RelayArgs {
    /// The relay configuration these flags describe.
    pub fn config(&self) -> RelayConfig {
        let mut kinds: BTreeSet<Kind> = self.censor_kinds.iter().map(|k| Kind::from(*k)).collect();
        if self.censor_l402 {
            kinds.extend(l402_relay_kit::kinds::l402_kinds());
        }
        let censor = (!kinds.is_empty()).then_some(Censor {
            kinds,
            mode: match self.censor_mode {
                CensorArg::Drop => CensorMode::SilentDrop,
                CensorArg::Reject => CensorMode::Reject,
            },
        });
        RelayConfig {
            listen: self.listen,
            data_dir: (!self.memory).then(|| relay_data_dir(&self.data_dir)),
            rate: RateLimits {
                events_per_minute: self.events_per_minute,
                event_burst: self.burst,
                ..RateLimits::default()
            },
            max_event_bytes: self.max_event_bytes,
            foreign_kinds: if self.accept_foreign_kinds {
                ForeignKinds::Accept
            } else {
                ForeignKinds::Reject
            },
            censor,
            ..RelayConfig::default()
        }
    }
}

/// Resolves when the process gets Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `l402-node relay`.
pub fn run(args: RelayArgs) -> anyhow::Result<()> {
    let config = args.config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(l402_relay_kit::serve_until(
        config,
        shutdown_signal(),
        |relay| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "relay listening on {}", relay.url());
            let _ = out.flush();
        },
    ))?;
    Ok(())
}
