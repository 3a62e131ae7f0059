//! Every tunable of the blob layer, as named constants and one [`BlobConfig`].

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

/// Default cap on a blob's announced size: 1 GiB. A fetch of anything larger is refused before
/// any byte moves.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 1 << 30;
/// Default time to establish a connection to one provider.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default time a provider may go without delivering a byte before it is dropped and the next
/// provider is tried. Generous: tests run on loaded 2-core machines.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default interval between garbage-collection passes of the blob store.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(60);
/// Sub-directory of the node's data dir that holds the blob store and its index.
pub const BLOBS_DIR: &str = "blobs";
/// File name of the persisted blob index inside [`BLOBS_DIR`].
pub const INDEX_FILE: &str = "index.cbor";
/// Prefix of the iroh-blobs tags that keep the node's blobs alive.
pub const TAG_PREFIX: &str = "l402/blob/";

/// How the iroh endpoint reaches other nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetMode {
    /// Relays disabled, no address lookup service, no port mapping: peers are dialled only at
    /// the addresses fed into the [`super::AddressBook`] (from Nostr node announcements).
    /// Tests and the demo bind to 127.0.0.1.
    Local,
    /// n0's relays and DNS/pkarr address lookup, plus the address book. Contacts the internet:
    /// never used by tests.
    Internet,
}

/// Which network transport serves and fetches blobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// iroh + iroh-blobs: BLAKE3-verified streaming, resumable, multi-provider (default).
    Iroh,
    /// libp2p request-response (cargo feature `libp2p`): whole-blob responses, BLAKE3-checked.
    #[cfg(feature = "libp2p")]
    Libp2p,
}

/// Configuration of a node's blob layer. Every address, key and directory comes from here.
#[derive(Clone, Debug)]
pub struct BlobConfig {
    /// The node's data dir; blobs live in `<data_dir>/blobs`.
    pub data_dir: PathBuf,
    /// The ed25519 secret key of the endpoint (the iroh `EndpointId` and libp2p `PeerId`).
    pub secret_key: [u8; 32],
    /// Local or internet mode.
    pub net: NetMode,
    /// The transport to run.
    pub transport: TransportKind,
    /// Socket address to bind; port 0 picks a free port.
    pub bind_addr: SocketAddr,
    /// Cap on a blob's announced size.
    pub max_blob_bytes: u64,
    /// Time to connect to one provider.
    pub connect_timeout: Duration,
    /// Time a provider may go without progress.
    pub stall_timeout: Duration,
    /// Interval between store garbage-collection passes.
    pub gc_interval: Duration,
    /// Byzantine (the simulator's real mode): serve a flipped byte in every blob, except to the
    /// spared keys (`super::corrupting`). `None`: honest. iroh only.
    pub corrupt: Option<super::corrupting::Spared>,
}

impl BlobConfig {
    /// A local-mode iroh configuration bound to 127.0.0.1 on a free port, with default caps.
    pub fn local(data_dir: impl Into<PathBuf>, secret_key: [u8; 32]) -> Self {
        Self {
            data_dir: data_dir.into(),
            secret_key,
            net: NetMode::Local,
            transport: TransportKind::Iroh,
            bind_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            gc_interval: DEFAULT_GC_INTERVAL,
            corrupt: None,
        }
    }

    /// The directory of the blob store and index.
    pub fn blobs_dir(&self) -> PathBuf {
        self.data_dir.join(BLOBS_DIR)
    }
}
