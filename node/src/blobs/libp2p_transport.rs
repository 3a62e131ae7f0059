//! The alternative blob transport (cargo feature `libp2p`): libp2p request-response over
//! TCP + noise + yamux, with libp2p's CBOR codec and a response size cap raised to the blob cap.
//!
//! A request names a hash; the answer carries the whole blob, which the requester checks
//! (announced size first, then `BLAKE3(bytes) == hash`) before it is added to the store. There is
//! no partial resume: a provider that fails mid-response is simply replaced by the next one.
//! Access control is the same blob index as for iroh: the libp2p `PeerId` of an ed25519 key
//! carries the key itself, which is the requester's provider id.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures::{future::BoxFuture, FutureExt, StreamExt};
use l402_protocol::blobmeta::{
    BlobId, BlobRequest, BlobResponse, BlobResponseBody, ServeDecision, LIBP2P_BLOB_PROTOCOL,
    LIBP2P_BLOB_VERSION,
};
use libp2p::{
    identity::{self, Keypair},
    multiaddr::Protocol,
    noise,
    request_response::{self, cbor, OutboundRequestId, ProtocolSupport, ResponseChannel},
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::timeout,
};
use tracing::{debug, info, warn};

use super::{
    config::BlobConfig,
    transport::{BlobTransport, FetchReport, FetchRequest, ProviderAttempt},
    AddressBook, BlobError, LocalStore, ProviderAddr, ProviderFailure, ProviderId,
};

/// Largest request accepted (a version and a hash need about 40 bytes).
const MAX_REQUEST_BYTES: u64 = 1024;
/// Bytes of CBOR framing allowed on top of the blob in a response.
const RESPONSE_OVERHEAD: u64 = 1024;

type Behaviour = cbor::Behaviour<BlobRequest, BlobResponse>;

enum Command {
    Fetch {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        hash: BlobId,
        reply: oneshot::Sender<Result<Vec<u8>, ProviderFailure>>,
    },
    Respond {
        channel: ResponseChannel<BlobResponse>,
        response: BlobResponse,
    },
}

/// libp2p request-response transport.
#[derive(Debug)]
pub struct Libp2pTransport {
    commands: mpsc::Sender<Command>,
    local: ProviderAddr,
    store: LocalStore,
    book: AddressBook,
    max_blob_bytes: u64,
    request_timeout: Duration,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Fetch { peer, .. } => write!(f, "Fetch({peer})"),
            Command::Respond { .. } => write!(f, "Respond"),
        }
    }
}

impl Libp2pTransport {
    /// Starts the swarm on `config.bind_addr` (TCP) and serves `store`.
    pub async fn start(
        config: &BlobConfig,
        store: &LocalStore,
        book: &AddressBook,
    ) -> Result<Self, BlobError> {
        let keypair = Keypair::ed25519_from_bytes(config.secret_key)
            .map_err(|e| BlobError::Setup(format!("libp2p key: {e}")))?;
        let request_timeout = config.stall_timeout;
        let codec = cbor::codec::Codec::<BlobRequest, BlobResponse>::default()
            .set_request_size_maximum(MAX_REQUEST_BYTES)
            .set_response_size_maximum(config.max_blob_bytes.saturating_add(RESPONSE_OVERHEAD));
        let behaviour = Behaviour::with_codec(
            codec,
            [(
                StreamProtocol::new(LIBP2P_BLOB_PROTOCOL),
                ProtocolSupport::Full,
            )],
            request_response::Config::default().with_request_timeout(request_timeout),
        );
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| BlobError::Setup(format!("libp2p tcp: {e}")))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| BlobError::Setup(format!("libp2p behaviour: {e}")))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm
            .listen_on(to_multiaddr(config.bind_addr))
            .map_err(|e| BlobError::Setup(format!("libp2p listen: {e}")))?;
        let listen = wait_listen_addr(&mut swarm).await?;
        let id = ProviderId(
            blob_key_of(swarm.local_peer_id())
                .ok_or_else(|| BlobError::Setup("local peer id is not ed25519".into()))?,
        );
        let local = ProviderAddr {
            id,
            addrs: BTreeSet::from([listen]),
        };
        let (commands, rx) = mpsc::channel(64);
        let task = tokio::spawn(run_swarm(swarm, rx, commands.clone(), store.clone()));
        info!(peer = %id, %listen, "libp2p blob transport started");
        Ok(Self {
            commands,
            local,
            store: store.clone(),
            book: book.clone(),
            max_blob_bytes: config.max_blob_bytes,
            request_timeout,
            task,
        })
    }

    async fn fetch_impl(&self, request: &FetchRequest) -> Result<FetchReport, BlobError> {
        let started = Instant::now();
        let hex_hash = request.hash.to_hex();
        if request.announced_size > self.max_blob_bytes {
            return Err(BlobError::SizeOverCap {
                announced: request.announced_size,
                cap: self.max_blob_bytes,
            });
        }
        if self.store.is_complete(&request.hash).await? {
            self.store
                .record(request.hash, request.announced_size, &request.placement)
                .await?;
            self.store.tag(&request.hash).await?;
            return Ok(FetchReport {
                hash: request.hash,
                size: request.announced_size,
                already_held: true,
                attempts: Vec::new(),
                elapsed: started.elapsed(),
            });
        }
        let mut seen = BTreeSet::new();
        let providers: Vec<ProviderId> = request
            .providers
            .iter()
            .copied()
            .filter(|p| *p != self.local.id && seen.insert(*p))
            .collect();
        if providers.is_empty() {
            return Err(BlobError::NoProviders { hash: hex_hash });
        }
        let mut failures = Vec::new();
        let mut attempts = Vec::new();
        for provider in providers {
            match self.fetch_from(provider, request).await {
                Ok(bytes) => {
                    let received = bytes.len() as u64;
                    let hash = self.store.add(bytes, &request.placement).await?;
                    debug_assert_eq!(hash, request.hash);
                    attempts.push(ProviderAttempt {
                        provider,
                        bytes_received: received,
                        failure: None,
                    });
                    info!(blob = %hex_hash, size = received, "blob fetched over libp2p");
                    return Ok(FetchReport {
                        hash: request.hash,
                        size: received,
                        already_held: false,
                        attempts,
                        elapsed: started.elapsed(),
                    });
                }
                Err((received, failure)) => {
                    warn!(blob = %hex_hash, %provider, %failure, "libp2p provider failed");
                    attempts.push(ProviderAttempt {
                        provider,
                        bytes_received: received,
                        failure: Some(failure.clone()),
                    });
                    failures.push((provider, failure));
                }
            }
        }
        Err(BlobError::AllProvidersFailed {
            hash: hex_hash,
            attempts: failures,
        })
    }

    /// One provider: the whole blob, then size and BLAKE3 checks before anything is stored.
    async fn fetch_from(
        &self,
        provider: ProviderId,
        request: &FetchRequest,
    ) -> Result<Vec<u8>, (u64, ProviderFailure)> {
        let peer = peer_id_of(&provider).ok_or((
            0,
            ProviderFailure::Connect("provider id is not an ed25519 key".into()),
        ))?;
        let addrs = self
            .book
            .get(&provider)
            .map(|a| a.addrs.into_iter().map(to_multiaddr).collect())
            .unwrap_or_default();
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Fetch {
                peer,
                addrs,
                hash: request.hash,
                reply,
            })
            .await
            .map_err(|_| (0, ProviderFailure::Transfer("transport stopped".into())))?;
        // The swarm enforces the request timeout; this outer bound only guards the channel.
        let bytes = timeout(self.request_timeout * 2, answer)
            .await
            .map_err(|_| (0, ProviderFailure::Stalled { phase: "response" }))?
            .map_err(|_| (0, ProviderFailure::Transfer("transport stopped".into())))?
            .map_err(|f| (0, f))?;
        let received = bytes.len() as u64;
        if received != request.announced_size {
            return Err((
                received,
                ProviderFailure::SizeMismatch {
                    provided: received,
                    announced: request.announced_size,
                },
            ));
        }
        let actual = blake3::hash(&bytes);
        if actual.as_bytes() != &request.hash.0 {
            return Err((
                received,
                ProviderFailure::Corrupt(format!("received bytes hash to {actual}")),
            ));
        }
        Ok(bytes)
    }
}

async fn wait_listen_addr(swarm: &mut Swarm<Behaviour>) -> Result<SocketAddr, BlobError> {
    let wait = async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                if let Some(addr) = to_socket_addr(&address) {
                    return addr;
                }
            }
        }
    };
    timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| BlobError::Setup("libp2p did not report a listen address".into()))
}

/// The swarm loop: answers inbound requests (after access control), routes responses to
/// waiting fetches.
async fn run_swarm(
    mut swarm: Swarm<Behaviour>,
    mut commands: mpsc::Receiver<Command>,
    loopback: mpsc::Sender<Command>,
    store: LocalStore,
) {
    let mut pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, ProviderFailure>>> =
        HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Fetch { peer, addrs, hash, reply }) => {
                    let request = BlobRequest { v: LIBP2P_BLOB_VERSION, hash: hash.0 };
                    let id = swarm
                        .behaviour_mut()
                        .send_request_with_addresses(&peer, request, addrs);
                    pending.insert(id, reply);
                }
                Some(Command::Respond { channel, response }) => {
                    if swarm.behaviour_mut().send_response(channel, response).is_err() {
                        debug!("requester went away before the response");
                    }
                }
            },
            event = swarm.select_next_some() => {
                let SwarmEvent::Behaviour(event) = event else { continue };
                match event {
                    request_response::Event::Message { peer, message, .. } => match message {
                        request_response::Message::Request { request, channel, .. } => {
                            // Reading the blob is async: answer from a task, back through the loop.
                            let store = store.clone();
                            let loopback = loopback.clone();
                            tokio::spawn(async move {
                                let response = answer(&store, &peer, &request).await;
                                loopback.send(Command::Respond { channel, response }).await.ok();
                            });
                        }
                        request_response::Message::Response { request_id, response } => {
                            if let Some(reply) = pending.remove(&request_id) {
                                reply.send(into_bytes(response)).ok();
                            }
                        }
                    },
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = pending.remove(&request_id) {
                            let failure = match error {
                                request_response::OutboundFailure::DialFailure => {
                                    ProviderFailure::Connect("dial failed".into())
                                }
                                request_response::OutboundFailure::Timeout => {
                                    ProviderFailure::Stalled { phase: "response" }
                                }
                                other => ProviderFailure::Transfer(other.to_string()),
                            };
                            reply.send(Err(failure)).ok();
                        }
                    }
                    request_response::Event::InboundFailure { peer, error, .. } => {
                        debug!(%peer, %error, "inbound blob request failed");
                    }
                    request_response::Event::ResponseSent { .. } => {}
                }
            }
        }
    }
}

/// The provider side: the requester's key decides, exactly as for iroh.
async fn answer(store: &LocalStore, peer: &PeerId, request: &BlobRequest) -> BlobResponse {
    let body = if request.v != LIBP2P_BLOB_VERSION {
        BlobResponseBody::UnsupportedVersion
    } else {
        match blob_key_of(peer).map(|key| store.serve_decision(&BlobId(request.hash), &key)) {
            Some(ServeDecision::Serve) => match store.read(&BlobId(request.hash)).await {
                Ok(bytes) => BlobResponseBody::Blob(bytes),
                Err(_) => BlobResponseBody::NotFound,
            },
            Some(ServeDecision::Unknown) | Some(ServeDecision::NotAllowed) | None => {
                info!(blob = %hex::encode(request.hash), %peer, "libp2p blob request refused");
                BlobResponseBody::Denied
            }
        }
    };
    BlobResponse {
        v: LIBP2P_BLOB_VERSION,
        body,
    }
}

fn into_bytes(response: BlobResponse) -> Result<Vec<u8>, ProviderFailure> {
    if response.v != LIBP2P_BLOB_VERSION {
        return Err(ProviderFailure::Transfer(format!(
            "unsupported response version {}",
            response.v
        )));
    }
    match response.body {
        BlobResponseBody::Blob(bytes) => Ok(bytes),
        BlobResponseBody::Denied => Err(ProviderFailure::Refused),
        BlobResponseBody::NotFound => Err(ProviderFailure::NotFound),
        other => Err(ProviderFailure::Transfer(format!("{other:?}"))),
    }
}

/// The ed25519 key inside a `PeerId` (identity multihash of the protobuf-encoded key).
fn blob_key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let multihash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if multihash.code() != 0 {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

fn peer_id_of(provider: &ProviderId) -> Option<PeerId> {
    let key = identity::ed25519::PublicKey::try_from_bytes(&provider.0).ok()?;
    Some(identity::PublicKey::from(key).to_peer_id())
}

fn to_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => Protocol::Ip4(v4),
        std::net::IpAddr::V6(v6) => Protocol::Ip6(v6),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

fn to_socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(v4) => ip = Some(std::net::IpAddr::V4(v4)),
            Protocol::Ip6(v6) => ip = Some(std::net::IpAddr::V6(v6)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

impl BlobTransport for Libp2pTransport {
    fn name(&self) -> &'static str {
        "libp2p"
    }

    fn local_addr(&self) -> ProviderAddr {
        self.local.clone()
    }

    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
    ) -> BoxFuture<'a, Result<FetchReport, BlobError>> {
        self.fetch_impl(request).boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move { self.task.abort() }.boxed()
    }
}
