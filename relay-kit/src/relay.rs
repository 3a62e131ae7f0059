//! [`EmbeddedRelay`]: `LocalRelay` + LMDB (or memory) + the gate, on one TCP listener.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nostr_lmdb::NostrLMDB;
use nostr_relay_builder::prelude::{
    MemoryDatabase, MemoryDatabaseOptions, NostrDatabase, RelayUrl,
};
use nostr_relay_builder::{builder::RateLimit, LocalRelay, RelayBuilder};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::config::RelayConfig;
use crate::gate::{Gate, RelayStats, StatsSnapshot};
use crate::policy::{EventPolicy, GenericChecks};

/// Name of the LMDB directory inside a relay's data dir.
pub const LMDB_DIR: &str = "nostr-lmdb";

/// Errors starting an embedded relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The LMDB store could not be opened.
    #[error("cannot open the relay store in {path}: {source}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// The backend's error.
        source: nostr_relay_builder::prelude::DatabaseError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The listener bound but its address or URL could not be read.
    #[error("the relay listener has no usable address: {0}")]
    Address(String),
}

/// A running relay. Dropping it (or calling [`shutdown`](Self::shutdown)) stops the listener
/// and closes every connection; what was acknowledged with `OK true` is already on disk.
#[derive(Debug)]
pub struct EmbeddedRelay {
    url: RelayUrl,
    addr: SocketAddr,
    stats: Arc<RelayStats>,
    database: Arc<dyn NostrDatabase>,
    shutdown: watch::Sender<bool>,
    accept_task: Option<JoinHandle<()>>,
    relay: LocalRelay,
}

/// Opens the store a relay uses for `config`: LMDB under `data_dir/nostr-lmdb`, or memory.
fn open_database(config: &RelayConfig) -> Result<Arc<dyn NostrDatabase>, RelayError> {
    match &config.data_dir {
        Some(dir) => {
            let path = dir.join(LMDB_DIR);
            let db = NostrLMDB::open(&path).map_err(|source| RelayError::Store {
                path: path.clone(),
                source,
            })?;
            Ok(Arc::new(db))
        }
        None => Ok(Arc::new(MemoryDatabase::with_opts(MemoryDatabaseOptions {
            events: true,
            max_events: Some(crate::config::MEMORY_MAX_EVENTS),
        }))),
    }
}

impl EmbeddedRelay {
    /// Opens the store, binds the listener and starts serving.
    pub async fn start(
        config: RelayConfig,
        policy: Arc<dyn EventPolicy>,
    ) -> Result<Self, RelayError> {
        let database = open_database(&config)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| RelayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|e| RelayError::Address(e.to_string()))?;
        let url = RelayUrl::parse(&format!("ws://{addr}"))
            .map_err(|e| RelayError::Address(e.to_string()))?;

        // The gate enforces the EVENT rate; the inner relay only bounds open subscriptions.
        let builder = RelayBuilder::default()
            .database(database.clone())
            .rate_limit(RateLimit {
                max_reqs: config.rate.max_subscriptions,
                notes_per_minute: u32::MAX,
            })
            .default_filter_limit(crate::config::DEFAULT_FILTER_LIMIT)
            .max_filter_limit(crate::config::MAX_FILTER_LIMIT);
        let relay = LocalRelay::new(builder);

        let stats = Arc::new(RelayStats::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let gate = Arc::new(Gate {
            relay: relay.clone(),
            policy,
            generic: GenericChecks {
                max_event_bytes: config.max_event_bytes,
                max_future_secs: config.max_future_secs,
            },
            config,
            stats: stats.clone(),
        });
        let accept_task = tokio::spawn(accept_loop(listener, gate, connections, shutdown_rx));
        tracing::info!(%url, "embedded relay listening");
        Ok(Self {
            url,
            addr,
            stats,
            database,
            shutdown,
            accept_task: Some(accept_task),
            relay,
        })
    }

    /// The relay's websocket URL, e.g. `ws://127.0.0.1:4869`.
    pub fn url(&self) -> &RelayUrl {
        &self.url
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gate's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The relay's store (for local reads by the embedding node and for tests).
    pub fn database(&self) -> &Arc<dyn NostrDatabase> {
        &self.database
    }

    /// Stops accepting, closes every connection and waits for the listener to stop.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
    }

    fn stop(&self) {
        let _ = self.shutdown.send(true);
        self.relay.shutdown();
    }
}

impl Drop for EmbeddedRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: TcpListener,
    gate: Arc<Gate>,
    connections: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "connection refused: too many connections");
                        continue; // dropping the stream closes it
                    };
                    let _ = stream.set_nodelay(true);
                    let gate = gate.clone();
                    let rx = shutdown.clone();
                    tokio::spawn(async move {
                        gate.serve(stream, peer, rx).await;
                        drop(permit);
                    });
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!("embedded relay stopped");
}

/// Where a node keeps its relay store, given the node's data dir.
pub fn relay_data_dir(node_data_dir: &Path) -> PathBuf {
    node_data_dir.join("relay")
}
