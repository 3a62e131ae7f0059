//! The blob transport trait: how a node serves its store and fetches blobs from providers.
//! iroh ([`super::iroh_transport::IrohTransport`]) is the default; libp2p is behind a feature.

use std::time::Duration;

use futures::future::BoxFuture;
use l402_protocol::blobmeta::{BlobId, Placement};

use super::{BlobError, ProviderAddr, ProviderFailure, ProviderId};

/// A request to fetch one blob.
#[derive(Clone, Debug)]
pub struct FetchRequest {
    /// The BLAKE3 hash of the blob.
    pub hash: BlobId,
    /// The size announced with the hash (in the Nostr event); checked against the cap before
    /// any download, and against what providers prove.
    pub announced_size: u64,
    /// Providers to try, in order. Each one resumes where the previous ones stopped.
    pub providers: Vec<ProviderId>,
    /// How the fetched blob is recorded and re-provided.
    pub placement: Placement,
}

/// What happened with one provider during a fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAttempt {
    /// The provider.
    pub provider: ProviderId,
    /// Payload bytes received from it (verified, or counted before verification failed).
    pub bytes_received: u64,
    /// `None` if it completed the blob, else why it failed.
    pub failure: Option<ProviderFailure>,
}

/// The outcome of a successful fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchReport {
    /// The fetched blob.
    pub hash: BlobId,
    /// Its size in bytes.
    pub size: u64,
    /// True if it was already held completely and nothing was fetched.
    pub already_held: bool,
    /// Providers tried, in order; the last one completed the blob.
    pub attempts: Vec<ProviderAttempt>,
    /// Wall time of the fetch.
    pub elapsed: Duration,
}

/// A network transport for blobs. Implementations serve the node's [`super::LocalStore`]
/// (honouring its access control) and fetch into it with verification.
pub trait BlobTransport: Send + Sync + std::fmt::Debug {
    /// A short name for logs and reports.
    fn name(&self) -> &'static str;

    /// This node's provider id and the addresses it listens on (for its node announcement).
    fn local_addr(&self) -> ProviderAddr;

    /// Fetches a blob: cap check, then providers in order, resuming across them where the
    /// transport supports it. Nothing unverified is ever marked complete.
    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
    ) -> BoxFuture<'a, Result<FetchReport, BlobError>>;

    /// Stops serving and closes connections.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}
