//! The default blob transport: an iroh endpoint serving the store with iroh-blobs
//! (`BlobsProtocol` behind the access-control task) and fetching with BLAKE3-verified streaming.
//!
//! Fetching is hand-rolled on iroh-blobs' `Remote` API rather than its `Downloader`, because the
//! node needs what the downloader does not give: the announced size checked against a verified
//! size before the bulk transfer, a stall timeout per provider, and a typed reason for each
//! provider that failed (corrupt, refused, killed, ...). Resume works exactly as in the
//! downloader: each provider is asked only for the ranges still missing locally, and only
//! verified chunks are ever written.

use std::{collections::BTreeSet, pin::pin, time::Instant};

use futures::{future::BoxFuture, FutureExt, StreamExt};
use iroh::{
    endpoint::{presets, Connection, PortmapperConfig},
    protocol::Router,
    Endpoint, RelayMode, SecretKey,
};
use iroh_blobs::{
    api::{blobs::BlobStatus, remote::GetProgressItem},
    get::{
        fsm::{AtBlobHeaderNextError, DecodeError},
        request::get_verified_size,
        GetError,
    },
    protocol::ERR_PERMISSION,
    BlobsProtocol,
};
use l402_protocol::blobmeta::BlobId;
use tokio::{task::JoinHandle, time::timeout};
use tracing::{info, warn};

use super::{
    access,
    config::{BlobConfig, NetMode},
    corrupting::CorruptingProvider,
    store::iroh_hash,
    transport::{BlobTransport, FetchReport, FetchRequest, ProviderAttempt},
    AddressBook, BlobError, LocalStore, ProviderAddr, ProviderFailure, ProviderId,
};

/// How long a clean shutdown waits for the router: its handlers first, then the endpoint's
/// close, which waits until every connection has entered draining. iroh bounds that by each
/// peer's probe timeout, not absolutely; past this wait the router's task is aborted (dropping
/// its handle does that) and the endpoint closes ungracefully, so peers time the connections
/// out. A node's shutdown must end: it is what releases the store's lock for a restart.
pub(crate) const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Fetch limits taken from [`BlobConfig`].
#[derive(Clone, Debug)]
struct Limits {
    max_blob_bytes: u64,
    connect_timeout: std::time::Duration,
    stall_timeout: std::time::Duration,
}

/// iroh + iroh-blobs transport.
#[derive(Debug)]
pub struct IrohTransport {
    router: Router,
    store: LocalStore,
    limits: Limits,
    access_task: JoinHandle<()>,
}

impl IrohTransport {
    /// Binds the endpoint (local or internet mode), and starts serving `store`.
    pub async fn start(
        config: &BlobConfig,
        store: &LocalStore,
        book: &AddressBook,
    ) -> Result<Self, BlobError> {
        let endpoint = bind_endpoint(config, book).await?;
        let (events, access_task) = access::spawn(store.shared_index());
        let router = match &config.corrupt {
            None => {
                let blobs = BlobsProtocol::new(store.api(), Some(events));
                Router::builder(endpoint).accept(iroh_blobs::ALPN, blobs)
            }
            Some(spared) => {
                warn!("this node serves corrupted blobs (real-mode simulation)");
                let bad = CorruptingProvider {
                    store: store.api().clone(),
                    index: store.shared_index(),
                    spared: spared.clone(),
                };
                Router::builder(endpoint).accept(iroh_blobs::ALPN, bad)
            }
        }
        .spawn();
        info!(endpoint = %router.endpoint().id(), "iroh blob transport started");
        Ok(Self {
            router,
            store: store.clone(),
            limits: Limits {
                max_blob_bytes: config.max_blob_bytes,
                connect_timeout: config.connect_timeout,
                stall_timeout: config.stall_timeout,
            },
            access_task,
        })
    }

    /// The iroh endpoint (for tests and tools that speak other ALPNs).
    pub fn endpoint(&self) -> &Endpoint {
        self.router.endpoint()
    }

    async fn fetch_impl(&self, request: &FetchRequest) -> Result<FetchReport, BlobError> {
        let started = Instant::now();
        let hex_hash = request.hash.to_hex();
        if request.announced_size > self.limits.max_blob_bytes {
            warn!(blob = %hex_hash, announced = request.announced_size, "announced size over cap");
            return Err(BlobError::SizeOverCap {
                announced: request.announced_size,
                cap: self.limits.max_blob_bytes,
            });
        }
        // Protects partial data from the store's GC for the whole fetch.
        let _protect = self.store.protect(&request.hash).await?;
        if let BlobStatus::Complete { size } = self.store.status(&request.hash).await? {
            check_held_size(&hex_hash, size, request.announced_size)?;
            self.finish(request).await?;
            return Ok(FetchReport {
                hash: request.hash,
                size,
                already_held: true,
                attempts: Vec::new(),
                elapsed: started.elapsed(),
            });
        }
        let me = ProviderId::from(self.router.endpoint().id());
        let mut seen = BTreeSet::new();
        let providers: Vec<ProviderId> = request
            .providers
            .iter()
            .copied()
            .filter(|p| *p != me && seen.insert(*p))
            .collect();
        if providers.is_empty() {
            return Err(BlobError::NoProviders { hash: hex_hash });
        }
        let mut attempts = Vec::new();
        for provider in providers {
            let mut received = 0;
            let outcome = self
                .fetch_from(
                    provider,
                    &request.hash,
                    request.announced_size,
                    &mut received,
                )
                .await;
            match outcome {
                Ok(()) => {
                    attempts.push(ProviderAttempt {
                        provider,
                        bytes_received: received,
                        failure: None,
                    });
                    // Defence in depth: only a complete, verified blob of the announced size
                    // is recorded.
                    match self.store.status(&request.hash).await? {
                        BlobStatus::Complete { size } => {
                            check_held_size(&hex_hash, size, request.announced_size)?;
                            self.finish(request).await?;
                            info!(blob = %hex_hash, size, providers = attempts.len(), "blob fetched");
                            return Ok(FetchReport {
                                hash: request.hash,
                                size,
                                already_held: false,
                                attempts,
                                elapsed: started.elapsed(),
                            });
                        }
                        _ => {
                            if let Some(last) = attempts.last_mut() {
                                last.failure = Some(ProviderFailure::Transfer(
                                    "provider finished but blob is incomplete".into(),
                                ));
                            }
                        }
                    }
                }
                Err(failure) => {
                    warn!(blob = %hex_hash, %provider, %failure, received, "provider failed");
                    attempts.push(ProviderAttempt {
                        provider,
                        bytes_received: received,
                        failure: Some(failure),
                    });
                }
            }
        }
        Err(BlobError::AllProvidersFailed {
            hash: hex_hash,
            attempts: attempts
                .into_iter()
                .filter_map(|a| a.failure.map(|f| (a.provider, f)))
                .collect(),
        })
    }

    /// Records and tags a complete blob so that this node re-provides it.
    async fn finish(&self, request: &FetchRequest) -> Result<(), BlobError> {
        self.store
            .record(request.hash, request.announced_size, &request.placement)
            .await?;
        self.store.tag(&request.hash).await
    }

    async fn fetch_from(
        &self,
        provider: ProviderId,
        hash: &BlobId,
        announced_size: u64,
        received: &mut u64,
    ) -> Result<(), ProviderFailure> {
        let id = provider
            .endpoint_id()
            .map_err(|e| ProviderFailure::Connect(e.to_string()))?;
        let endpoint = self.router.endpoint();
        let conn = timeout(
            self.limits.connect_timeout,
            endpoint.connect(id, iroh_blobs::ALPN),
        )
        .await
        .map_err(|_| ProviderFailure::Stalled { phase: "connect" })?
        .map_err(|e| ProviderFailure::Connect(e.to_string()))?;
        let result = self.transfer(&conn, hash, announced_size, received).await;
        conn.close(0u32.into(), b"done");
        result
    }

    async fn transfer(
        &self,
        conn: &Connection,
        hash: &BlobId,
        announced_size: u64,
        received: &mut u64,
    ) -> Result<(), ProviderFailure> {
        let stall = self.limits.stall_timeout;
        let hash = iroh_hash(hash);
        // The last chunk with its proof: the provider's size, verified against the hash, checked
        // against the announcement before any bulk data moves.
        let (size, _) = timeout(stall, get_verified_size(conn, &hash))
            .await
            .map_err(|_| ProviderFailure::Stalled { phase: "size" })?
            .map_err(classify)?;
        if size != announced_size {
            return Err(ProviderFailure::SizeMismatch {
                provided: size,
                announced: announced_size,
            });
        }
        let remote = self.store.api().remote();
        let local = remote
            .local(hash)
            .await
            .map_err(|e| ProviderFailure::Transfer(format!("local state: {e}")))?;
        if local.is_complete() {
            return Ok(());
        }
        let progress = remote.execute_get(conn.clone(), local.missing());
        let mut stream = pin!(progress.stream());
        loop {
            match timeout(stall, stream.next()).await {
                Err(_) => return Err(ProviderFailure::Stalled { phase: "transfer" }),
                Ok(None) => {
                    return Err(ProviderFailure::Transfer(
                        "progress ended without result".into(),
                    ))
                }
                Ok(Some(GetProgressItem::Progress(n))) => *received = n,
                Ok(Some(GetProgressItem::Done(stats))) => {
                    *received = stats.payload_bytes_read;
                    return Ok(());
                }
                Ok(Some(GetProgressItem::Error(e))) => return Err(classify(e)),
            }
        }
    }
}

fn check_held_size(hash: &str, held: u64, announced: u64) -> Result<(), BlobError> {
    if held != announced {
        return Err(BlobError::AnnouncedSizeWrong {
            hash: hash.to_string(),
            announced,
            actual: held,
        });
    }
    Ok(())
}

/// Maps an iroh-blobs get error to a provider failure.
fn classify(e: GetError) -> ProviderFailure {
    if e.iroh_error_code() == Some(ERR_PERMISSION) {
        return ProviderFailure::Refused;
    }
    match &e {
        GetError::AtBlobHeaderNext {
            source: AtBlobHeaderNextError::NotFound { .. },
            ..
        } => ProviderFailure::NotFound,
        GetError::Decode {
            source: DecodeError::LeafHashMismatch { .. } | DecodeError::ParentHashMismatch { .. },
            ..
        } => ProviderFailure::Corrupt(e.to_string()),
        _ => ProviderFailure::Transfer(e.to_string()),
    }
}

/// Builds and binds the endpoint for `config.net`.
async fn bind_endpoint(config: &BlobConfig, book: &AddressBook) -> Result<Endpoint, BlobError> {
    let builder = match config.net {
        // Relays off, no DNS/pkarr lookup, no port mapping: only the address book is used.
        // Never presets::N0 here (it contacts the internet), and never `online()` (it would
        // wait forever without relays).
        NetMode::Local => Endpoint::builder(presets::Minimal)
            .relay_mode(RelayMode::Disabled)
            .portmapper_config(PortmapperConfig::Disabled),
        NetMode::Internet => Endpoint::builder(presets::N0),
    };
    builder
        .secret_key(SecretKey::from_bytes(&config.secret_key))
        .clear_ip_transports()
        .bind_addr(config.bind_addr)
        .map_err(|e| BlobError::Setup(format!("bind address {}: {e}", config.bind_addr)))?
        .address_lookup(book.memory_lookup())
        .bind()
        .await
        .map_err(|e| BlobError::Setup(format!("bind endpoint: {e}")))
}

impl BlobTransport for IrohTransport {
    fn name(&self) -> &'static str {
        "iroh"
    }

    fn local_addr(&self) -> ProviderAddr {
        let addr = self.router.endpoint().addr();
        ProviderAddr {
            id: ProviderId::from(addr.id),
            addrs: addr.ip_addrs().copied().collect(),
        }
    }

    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
    ) -> BoxFuture<'a, Result<FetchReport, BlobError>> {
        self.fetch_impl(request).boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            let endpoint = self.router.endpoint().id();
            match timeout(SHUTDOWN_WAIT, self.router.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(%endpoint, "router shutdown: {e}"),
                Err(_) => warn!(
                    %endpoint,
                    wait_s = SHUTDOWN_WAIT.as_secs(),
                    "router did not shut down in time; aborted it"
                ),
            }
            self.access_task.abort();
        }
        .boxed()
    }
}
