//! Shared harness of the blob integration tests: real iroh endpoints on 127.0.0.1, real FsStores
//! in temp dirs, and a misbehaving provider that speaks the real iroh-blobs protocol.
#![allow(dead_code)]

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use iroh::{
    endpoint::{presets, Connection, PortmapperConfig},
    protocol::{AcceptError, ProtocolHandler, Router},
    Endpoint, RelayMode, SecretKey,
};
use iroh_blobs::{
    api::blobs::EncodedItem,
    protocol::Request,
    provider::{
        events::{EventSender, RequestTracker},
        StreamPair,
    },
    store::mem::MemStore,
    Hash,
};
use l402_node::blobs::{AddressBook, BlobConfig, BlobNode, ProviderAddr, ProviderId};
use tokio::sync::Notify;

/// Generous bound for anything a test waits on (a loaded 2-core machine is slow).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Awaits `fut` for at most [`PATIENCE`]. A step that hangs fails the test and names itself,
/// rather than holding the whole CI run until its own limit.
pub async fn step<T>(what: &str, fut: impl std::future::Future<Output = T>) -> Result<T> {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .map_err(|_| anyhow!("{what} did not finish within {PATIENCE:?}"))
}

/// A deterministic secret key for test node `n`.
pub fn key(n: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = n;
    k[31] = 0x5a;
    k
}

/// The ed25519 public key (provider id) of test node `n`.
pub fn provider_id(n: u8) -> ProviderId {
    ProviderId::from(SecretKey::from_bytes(&key(n)).public())
}

/// `len` deterministic pseudo-random bytes (BLAKE3 XOF of `seed`).
pub fn data(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// The test config of node `n`: local mode on 127.0.0.1, fast GC passes, generous timeouts.
pub fn config(dir: &Path, n: u8) -> BlobConfig {
    let mut config = BlobConfig::local(dir.join(format!("node-{n}")), key(n));
    config.gc_interval = Duration::from_millis(200);
    config.stall_timeout = Duration::from_secs(60);
    config.connect_timeout = Duration::from_secs(60);
    config
}

/// Starts node `n` and publishes its address in the shared book (as discovery would).
pub async fn start_node(dir: &Path, n: u8, book: &AddressBook) -> Result<BlobNode> {
    start_with(config(dir, n), book).await
}

/// Installs a test log subscriber once (`RUST_LOG` filters; off by default).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Starts a node from `config` and publishes its address in the shared book.
pub async fn start_with(config: BlobConfig, book: &AddressBook) -> Result<BlobNode> {
    init_tracing();
    let node = step(
        "starting a blob node",
        BlobNode::start(config, book.clone()),
    )
    .await??;
    book.insert(node.local_addr())?;
    Ok(node)
}

/// How a [`FaultyProvider`] misbehaves.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Serves honestly but flips one byte at this offset of the blob.
    FlipByteAt(u64),
    /// Serves honestly until at least this many payload bytes went out, then signals `reached`
    /// and hangs (the test then kills it).
    HangAfter {
        /// Payload bytes to send before hanging.
        bytes: u64,
        /// Signalled once when the threshold is passed.
        reached: Arc<Notify>,
    },
    /// Serves honestly (used to count requests).
    None,
}

/// A provider on a real iroh endpoint that answers iroh-blobs get requests from a MemStore of
/// honest data, with a [`Fault`] applied to the bytes it writes.
#[derive(Debug, Clone)]
pub struct FaultyProvider {
    store: MemStore,
    fault: Fault,
    /// Get requests received.
    pub requests: Arc<AtomicU64>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
}

impl FaultyProvider {
    async fn serve_stream(&self, mut pair: StreamPair) -> Result<()> {
        let request = pair.read_request().await.map_err(|e| anyhow!("{e}"))?;
        let Request::Get(get) = request else {
            return Ok(());
        };
        self.requests.fetch_add(1, Ordering::SeqCst);
        let Some((0, ranges)) = get.ranges.iter_non_empty_infinite().next() else {
            return Ok(());
        };
        let ranges = ranges.clone();
        let mut writer = pair.into_writer(RequestTracker::NONE).await?;
        let out = &mut writer.inner;
        let mut sent = 0u64;
        let mut items = std::pin::pin!(self.store.export_bao(get.hash, ranges).stream());
        while let Some(item) = items.next().await {
            match item {
                EncodedItem::Size(size) => out.write_all(&size.to_le_bytes()).await?,
                EncodedItem::Parent(parent) => {
                    out.write_all(parent.pair.0.as_bytes()).await?;
                    out.write_all(parent.pair.1.as_bytes()).await?;
                }
                EncodedItem::Leaf(leaf) => {
                    let mut bytes = leaf.data.to_vec();
                    let end = leaf.offset + bytes.len() as u64;
                    if let Fault::FlipByteAt(at) = self.fault {
                        if (leaf.offset..end).contains(&at) {
                            bytes[(at - leaf.offset) as usize] ^= 0x01;
                        }
                    }
                    out.write_all(&bytes).await?;
                    sent += bytes.len() as u64;
                    if let Fault::HangAfter {
                        bytes: limit,
                        reached,
                    } = &self.fault
                    {
                        if sent >= *limit {
                            reached.notify_one();
                            std::future::pending::<()>().await;
                        }
                    }
                }
                EncodedItem::Done => break,
                EncodedItem::Error(e) => return Err(anyhow!("export: {e}")),
            }
        }
        out.finish()?;
        out.stopped().await.ok();
        Ok(())
    }
}

impl ProtocolHandler for FaultyProvider {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        self.connections.fetch_add(1, Ordering::SeqCst);
        while let Ok(pair) = StreamPair::accept(&connection, EventSender::DEFAULT).await {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.serve_stream(pair).await {
                    tracing::debug!("faulty provider stream ended: {e:#}");
                }
            });
        }
        Ok(())
    }
}

/// A running faulty provider.
#[derive(Debug)]
pub struct FaultyNode {
    /// The router (shut it down to "kill" the provider).
    pub router: Router,
    /// The handler (for its counters).
    pub handler: FaultyProvider,
}

impl FaultyNode {
    /// The provider id.
    pub fn id(&self) -> ProviderId {
        ProviderId::from(self.router.endpoint().id())
    }
}

/// Starts faulty provider `n` holding `bytes`, and publishes its address in `book`.
pub async fn start_faulty(
    n: u8,
    bytes: &[u8],
    fault: Fault,
    book: &AddressBook,
) -> Result<FaultyNode> {
    let store = MemStore::new();
    let tag = store.add_slice(bytes).await.map_err(|e| anyhow!("{e}"))?;
    assert_eq!(tag.hash, Hash::new(bytes));
    let endpoint = Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Disabled)
        .portmapper_config(PortmapperConfig::Disabled)
        .secret_key(SecretKey::from_bytes(&key(n)))
        .clear_ip_transports()
        .bind_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .context("bind addr")?
        .bind()
        .await
        .map_err(|e| anyhow!("bind: {e}"))?;
    let handler = FaultyProvider {
        store,
        fault,
        requests: Arc::default(),
        connections: Arc::default(),
    };
    let router = Router::builder(endpoint)
        .accept(iroh_blobs::ALPN, handler.clone())
        .spawn();
    let addr = router.endpoint().addr();
    book.insert(ProviderAddr {
        id: ProviderId::from(addr.id),
        addrs: addr.ip_addrs().copied().collect(),
    })?;
    Ok(FaultyNode { router, handler })
}
