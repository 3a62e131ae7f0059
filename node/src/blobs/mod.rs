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
//!
//! Spec: specs/L2T-09-blobs.md

mod access;
pub mod book;
pub mod config;
mod error;
pub mod iroh_transport;
#[cfg(feature = "libp2p")]
pub mod libp2p_transport;
pub mod store;
pub mod transport;

use std::{collections::BTreeSet, path::Path};

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

/// The node's blob service: publishes into its store, serves the store to allowed peers, and
/// fetches from providers (then re-provides what it fetched).
#[derive(Debug)]
pub struct BlobNode {
    store: LocalStore,
    book: AddressBook,
    transport: Box<dyn BlobTransport>,
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
    pub async fn fetch(&self, request: &FetchRequest) -> Result<FetchReport, BlobError> {
        self.transport.fetch(request).await
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
        // shutdown then finds the store's actor gone, which is the state we want.
        if let Err(e) = self.store.shutdown().await {
            tracing::debug!("store already shut down: {e}");
        }
        Ok(())
    }
}
