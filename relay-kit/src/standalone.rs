//! Running a relay as a service: until a shutdown signal, with a periodic stats line.
//!
//! Used by `l402-node relay` and by `l402-testnet`, so both run the exact same relay.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::RelayConfig;
use crate::kinds::L402Policy;
use crate::relay::{EmbeddedRelay, RelayError};

/// How often a standalone relay logs its counters.
pub const STATS_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Starts a relay with the l402 write policy (foreign kinds per `config.foreign_kinds`).
///
/// This is the one-call entry point for embedding: `l402-testnet` and the node use it.
pub async fn spawn_relay(config: RelayConfig) -> Result<EmbeddedRelay, RelayError> {
    let policy = L402Policy {
        foreign: config.foreign_kinds,
    };
    EmbeddedRelay::start(config, Arc::new(policy)).await
}

/// Runs a relay until `shutdown` completes, logging its counters every minute. `on_ready`
/// receives the relay once it listens (to print its URL, for instance).
pub async fn serve_until<S, R>(
    config: RelayConfig,
    shutdown: S,
    on_ready: R,
) -> Result<(), RelayError>
where
    S: Future<Output = ()>,
    R: FnOnce(&EmbeddedRelay),
{
    let relay = spawn_relay(config).await?;
    on_ready(&relay);
    let mut ticker = tokio::time::interval(STATS_LOG_INTERVAL);
    ticker.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {
                let s = relay.stats();
                tracing::info!(
                    connections = s.connections,
                    forwarded = s.forwarded,
                    invalid = s.invalid,
                    blocked = s.blocked,
                    rate_limited = s.rate_limited,
                    censored = s.censored,
                    "relay stats"
                );
            }
        }
    }
    relay.shutdown().await;
    Ok(())
}
