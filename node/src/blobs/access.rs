//! Access control for the iroh-blobs provider: every request is intercepted through
//! iroh-blobs' provider events (`EventSender` with `Intercept` masks) and answered from the
//! blob index, keyed by the requester's authenticated endpoint id.
//!
//! Rules: raw-blob requests only (requests for hash-sequence children are refused, so that a
//! public blob can never be used as a hash sequence that names restricted blobs); unknown hashes
//! are refused; restricted blobs are served only to their allowed peers; pushes are disabled.

use std::collections::HashMap;

use iroh::EndpointId;
use iroh_blobs::provider::events::{
    AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage, RequestMode,
    ThrottleMode,
};
use l402_protocol::blobmeta::{BlobId, ServeDecision};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::store::SharedIndex;

/// Which events the access-control task intercepts.
const MASK: EventMask = EventMask {
    connected: ConnectMode::Intercept,
    get: RequestMode::Intercept,
    get_many: RequestMode::Intercept,
    push: RequestMode::Disabled,
    observe: ObserveMode::Intercept,
    throttle: ThrottleMode::None,
};

/// Spawns the access-control task; the returned sender goes into `BlobsProtocol::new`.
pub(crate) fn spawn(index: SharedIndex) -> (EventSender, JoinHandle<()>) {
    let (sender, mut rx) = EventSender::channel(64, MASK);
    let task = tokio::spawn(async move {
        // connection id -> authenticated remote endpoint id
        let mut peers: HashMap<u64, EndpointId> = HashMap::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                ProviderMessage::ClientConnected(msg) => {
                    if let Some(id) = msg.inner.endpoint_id {
                        peers.insert(msg.inner.connection_id, id);
                    }
                    msg.tx.send(Ok(())).await.ok();
                }
                ProviderMessage::ConnectionClosed(msg) => {
                    peers.remove(&msg.inner.connection_id);
                }
                ProviderMessage::GetRequestReceived(msg) => {
                    let request = &msg.inner.request;
                    let peer = peers.get(&msg.inner.connection_id);
                    let verdict = if request.ranges.is_blob() {
                        decide(&index, peer, [BlobId(*request.hash.as_bytes())])
                    } else {
                        Err(AbortReason::Permission)
                    };
                    msg.tx.send(verdict).await.ok();
                }
                ProviderMessage::GetManyRequestReceived(msg) => {
                    let peer = peers.get(&msg.inner.connection_id);
                    let hashes = msg
                        .inner
                        .request
                        .hashes
                        .iter()
                        .map(|h| BlobId(*h.as_bytes()));
                    let verdict = decide(&index, peer, hashes);
                    msg.tx.send(verdict).await.ok();
                }
                ProviderMessage::ObserveRequestReceived(msg) => {
                    let peer = peers.get(&msg.inner.connection_id);
                    let verdict =
                        decide(&index, peer, [BlobId(*msg.inner.request.hash.as_bytes())]);
                    msg.tx.send(verdict).await.ok();
                }
                ProviderMessage::PushRequestReceived(msg) => {
                    msg.tx.send(Err(AbortReason::Permission)).await.ok();
                }
                ProviderMessage::Throttle(msg) => {
                    msg.tx.send(Ok(())).await.ok();
                }
                // Notify variants are not enabled by MASK; nothing to answer.
                _ => {}
            }
        }
    });
    (sender, task)
}

fn decide(
    index: &SharedIndex,
    peer: Option<&EndpointId>,
    hashes: impl IntoIterator<Item = BlobId>,
) -> Result<(), AbortReason> {
    let Some(peer) = peer else {
        return Err(AbortReason::Permission);
    };
    let index = index.read().unwrap_or_else(|p| p.into_inner());
    for hash in hashes {
        match index.serve_decision(&hash, peer.as_bytes()) {
            ServeDecision::Serve => {
                debug!(blob = %hash.to_hex(), peer = %peer, "serving blob");
            }
            decision => {
                info!(blob = %hash.to_hex(), peer = %peer, ?decision, "blob request refused");
                return Err(AbortReason::Permission);
            }
        }
    }
    Ok(())
}
