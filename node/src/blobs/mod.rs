//! BLAKE3-addressed blobs: checkpoints, pseudo-gradients, baselines, diffs and eval sets.
//!
//! - [`BlobNode`]: the node's blob service: store + transport + address book.
//! - [`store`]: the iroh-blobs `FsStore` in `<data_dir>/blobs` and the persisted blob index
//!   (`l402_protocol::blobmeta`) that drives access control and garbage collection.
//! - [`access`]: the provider-side access-control task (iroh-blobs provider events).
//! - [`transport`]: the [`BlobTransport`] trait; [`iroh_transport`] is the default,
//!   `libp2p_transport` the alternative behind the cargo feature `libp2p`.
//! - [`book`]: provider ids and the [`AddressBook`] that discovery fills from node announcements.
//! - [`config`]: every tunable.
//! - [`corrupting`]: the real mode's corrupting provider (serves a flipped byte).
//!
//! Spec: specs/L2T-09-blobs.md

mod access;
pub mod book;
pub mod config;
pub mod corrupting;
mod error;
pub mod iroh_transport;
#[cfg(feature = "libp2p")]
pub mod libp2p_transport;
pub mod store;
pub mod transport;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use l402_protocol::{
    blobmeta::{BlobId, PeerKey, Placement, RoundKey},
    wire,
};
use tracing::info;

pub use book::{AddressBook, ProviderAddr, ProviderId};
pub use config::{BlobConfig, NetMode, TransportKind};
pub use error::{BlobError, ProviderFailure};
pub use store::{GcReport, LocalStore};
pub use transport::{BlobTransport, FetchReport, FetchRequest, ProviderAttempt};

/// A blob this node published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The blob's id: BLAKE3 of its bytes.
    pub id: BlobId,
    /// The blob's size in bytes (what announcements carry next to the id).
    pub size: u64,
}

/// Most corrupt transfers [`FetchStats`] keeps the position of.
const MAX_CORRUPT_SAMPLES: usize = 64;

/// What this node's fetches met (its `/status`, the simulator's real mode).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FetchStats {
    /// Fetches that completed (blobs not already held).
    pub fetched: u64,
    /// Provider attempts whose bytes failed BLAKE3 verification.
    pub corrupt: u64,
    /// Fetches completed from another holder after a corrupt attempt.
    pub recovered: u64,
    /// Fetches no provider completed.
    pub failed: u64,
    /// Per corrupt attempt (the first 64): payload bytes received before the bad chunk group was
    /// caught, and the blob's size.
    pub corrupt_at: Vec<(u64, u64)>,
    /// Providers that served corrupt bytes (hex id) and how often: later fetches try them last.
    /// Filled from the node's strike map when read ([`BlobNode::fetch_stats`]).
    pub strikes: BTreeMap<String, u64>,
}

/// The node's blob service: publishes into its store, serves the store to allowed peers, and
/// fetches from providers (then re-provides what it fetched).
#[derive(Debug)]
pub struct BlobNode {
    store: LocalStore,
    book: AddressBook,
    transport: Box<dyn BlobTransport>,
    spared: Option<corrupting::Spared>,
    stats: std::sync::Mutex<FetchStats>,
    strikes: std::sync::Mutex<BTreeMap<ProviderId, u64>>,
}

impl BlobNode {
    /// Opens the store in `<config.data_dir>/blobs` and starts the configured transport.
    /// `book` is shared with discovery, which inserts the addresses of announced nodes.
    pub async fn start(config: BlobConfig, book: AddressBook) -> Result<Self, BlobError> {
        let store = LocalStore::open(&config.blobs_dir(), config.gc_interval).await?;
        let transport: Box<dyn BlobTransport> = match config.transport {
            TransportKind::Iroh => {
                Box::new(iroh_transport::IrohTransport::start(&config, &store, &book).await?)
            }
            #[cfg(feature = "libp2p")]
            TransportKind::Libp2p => {
                Box::new(libp2p_transport::Libp2pTransport::start(&config, &store, &book).await?)
            }
        };
        let node = Self {
            store,
            book,
            transport,
            spared: config.corrupt.clone(),
            stats: Default::default(),
            strikes: Default::default(),
        };
        info!(provider = %node.provider_id(), transport = node.transport.name(), "blob node started");
        Ok(node)
    }

    /// This node's provider id (its ed25519 endpoint key).
    pub fn provider_id(&self) -> ProviderId {
        self.transport.local_addr().id
    }

    /// This node's id and listening addresses, for its node announcement.
    pub fn local_addr(&self) -> ProviderAddr {
        self.transport.local_addr()
    }

    /// The address book shared with discovery.
    pub fn address_book(&self) -> &AddressBook {
        &self.book
    }

    /// The local store.
    pub fn store(&self) -> &LocalStore {
        &self.store
    }

    /// The transport in use.
    pub fn transport(&self) -> &dyn BlobTransport {
        self.transport.as_ref()
    }

    /// Seals `payload` under `header` into a blob container (`l402_protocol::wire`: canonical
    /// CBOR header + zstd payload), stores it and serves it according to `placement`.
    pub async fn publish(
        &self,
        header: &wire::Header,
        payload: Vec<u8>,
        placement: &Placement,
    ) -> Result<Published, BlobError> {
        let header = header.clone();
        // zstd is CPU-bound: keep it off the async workers.
        let blob = tokio::task::spawn_blocking(move || wire::seal(&header, &payload))
            .await
            .map_err(|e| BlobError::io("seal task", std::io::Error::other(e)))?
            .map_err(BlobError::Seal)?;
        let size = blob.len() as u64;
        let id = self.store.add(blob, placement).await?;
        info!(blob = %id, size, "blob published");
        Ok(Published { id, size })
    }

    /// Opens a complete blob container: header checks, payload of at most `max_payload` bytes,
    /// canonical form.
    pub async fn open(
        &self,
        id: &BlobId,
        max_payload: u64,
    ) -> Result<(wire::Header, Vec<u8>), BlobError> {
        let bytes = self.store.read(id).await?;
        let id = *id;
        tokio::task::spawn_blocking(move || wire::open_with_limit(&bytes, max_payload))
            .await
            .map_err(|e| BlobError::io("open task", std::io::Error::other(e)))?
            .map_err(|e| BlobError::BadContainer {
                hash: id.to_hex(),
                reason: e.to_string(),
            })
    }

    /// Stores raw bytes as a blob and serves them according to `placement`. Returns the hash.
    pub async fn add_bytes(
        &self,
        bytes: Vec<u8>,
        placement: &Placement,
    ) -> Result<BlobId, BlobError> {
        self.store.add(bytes, placement).await
    }

    /// Fetches a blob (see [`BlobTransport::fetch`]); afterwards this node provides it too.
    /// Providers that served corrupt bytes before are tried last (in the order given otherwise).
    pub async fn fetch(&self, request: &FetchRequest) -> Result<FetchReport, BlobError> {
        let mut request = request.clone();
        {
            let strikes = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
            request
                .providers
                .sort_by_key(|p| strikes.get(p).copied().unwrap_or(0));
        }
        let result = self.transport.fetch(&request).await;
        let corrupt: Vec<(ProviderId, u64)> = match &result {
            Ok(r) => r
                .attempts
                .iter()
                .filter(|a| matches!(a.failure, Some(ProviderFailure::Corrupt(_))))
                .map(|a| (a.provider, a.bytes_received))
                .collect(),
            Err(BlobError::AllProvidersFailed { attempts, .. }) => attempts
                .iter()
                .filter(|(_, f)| matches!(f, ProviderFailure::Corrupt(_)))
                .map(|(p, _)| (*p, 0))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(r) if !r.already_held => {
                stats.fetched += 1;
                if !corrupt.is_empty() {
                    stats.recovered += 1;
                    info!(blob = %r.hash, corrupt = corrupt.len(), providers = r.attempts.len(), "corrupt bytes caught; completed from another holder");
                }
            }
            Ok(_) => {}
            Err(_) => stats.failed += 1,
        }
        let mut strikes = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        for (p, received) in corrupt {
            stats.corrupt += 1;
            if stats.corrupt_at.len() < MAX_CORRUPT_SAMPLES {
                stats.corrupt_at.push((received, request.announced_size));
            }
            *strikes.entry(p).or_default() += 1;
        }
        result
    }

    /// What this node's fetches met so far.
    pub fn fetch_stats(&self) -> FetchStats {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let strikes = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        stats.strikes = strikes.iter().map(|(p, n)| (p.to_string(), *n)).collect();
        stats
    }

    /// A corrupting node (the simulator's real mode) serves `blob` honestly to `peers` from now
    /// on; a no-op on an honest node.
    pub fn spare(&self, blob: BlobId, peers: impl IntoIterator<Item = PeerKey>) {
        if let Some(s) = &self.spared {
            s.spare(blob, peers);
        }
    }

    /// The bytes of a complete blob.
    pub async fn read(&self, hash: &BlobId) -> Result<Vec<u8>, BlobError> {
        self.store.read(hash).await
    }

    /// Copies a complete blob to an absolute path.
    pub async fn export(&self, hash: &BlobId, target: &Path) -> Result<u64, BlobError> {
        self.store.export(hash, target).await
    }

    /// Lets `peers` fetch the restricted blobs of `round` (validators and coordinator).
    pub async fn allow(
        &self,
        round: &RoundKey,
        peers: &BTreeSet<PeerKey>,
    ) -> Result<usize, BlobError> {
        self.store.allow(round, peers).await
    }

    /// Releases a round: all its blobs become public.
    pub async fn release_round(&self, round: &RoundKey) -> Result<Vec<BlobId>, BlobError> {
        self.store.release_round(round).await
    }

    /// Garbage-collects `run`'s rounds before `keep_from_round` and waits for their bytes to go.
    pub async fn collect_rounds_before(
        &self,
        run: &str,
        keep_from_round: u64,
    ) -> Result<GcReport, BlobError> {
        self.store.collect_rounds_before(run, keep_from_round).await
    }

    /// Stops the transport and flushes the store.
    pub async fn shutdown(self) -> Result<(), BlobError> {
        self.transport.shutdown().await;
        // iroh's `BlobsProtocol` already shuts the store down with the router; a second
        // shutdown then finds the store's actor gone, which is the state we want. Bounded like
        // the router's: the store is an actor, and a shutdown that never answers must not hang
        // the node (its own runtime is torn down in the background when the last handle drops).
        match tokio::time::timeout(iroh_transport::SHUTDOWN_WAIT, self.store.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("store already shut down: {e}"),
            Err(_) => tracing::warn!("blob store did not answer its shutdown in time"),
        }
        Ok(())
    }
}
