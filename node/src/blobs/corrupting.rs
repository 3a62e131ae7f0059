//! A corrupting blob provider, for the simulator's real mode (test-matrix A12): the node answers
//! iroh-blobs get requests with the real protocol, but flips one byte in the middle of every blob
//! it serves — except to the keys it chose to spare. A peer that spares its committee gets its
//! work evaluated (and paid) and serves wrong bytes to the coordinator that merges it: a
//! data-availability attack on the aggregate. The fetcher's BLAKE3-verified streaming catches the
//! bad chunk group (≤ 16 KiB after the flipped byte), keeps the verified prefix, marks nothing
//! complete, and resumes from the next holder (`iroh_transport`).
//!
//! It honours the node's access control like the honest provider (`access::decide`): what it
//! would refuse, it refuses. Hand-written on iroh-blobs' provider primitives (`StreamPair`,
//! `export_bao`) because `BlobsProtocol` has no hook to alter the bytes it streams.
//!
//! Spec: specs/L2T-12-sim.md#attacks

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, RwLock},
};

use futures::StreamExt;
use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler},
};
use iroh_blobs::{
    api::{blobs::EncodedItem, Store},
    protocol::Request,
    provider::{
        events::{EventSender, RequestTracker},
        StreamPair,
    },
};
use l402_protocol::blobmeta::{BlobId, PeerKey, ServeDecision};
use tracing::{debug, info};

use super::store::SharedIndex;

/// Per blob, the endpoint keys served honest bytes. Clones share the map.
#[derive(Clone, Debug, Default)]
pub struct Spared(Arc<RwLock<BTreeMap<BlobId, BTreeSet<PeerKey>>>>);

impl Spared {
    /// Serve `blob` honestly to `peers` from now on.
    pub fn spare(&self, blob: BlobId, peers: impl IntoIterator<Item = PeerKey>) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        m.entry(blob).or_default().extend(peers);
    }

    fn spares(&self, blob: &BlobId, peer: &PeerKey) -> bool {
        let m = self.0.read().unwrap_or_else(|p| p.into_inner());
        m.get(blob).is_some_and(|s| s.contains(peer))
    }
}

/// The iroh-blobs ALPN handler of a corrupting node.
#[derive(Clone, Debug)]
pub(crate) struct CorruptingProvider {
    pub(crate) store: Store,
    pub(crate) index: SharedIndex,
    pub(crate) spared: Spared,
}

impl CorruptingProvider {
    async fn serve(&self, peer: PeerKey, mut pair: StreamPair) -> anyhow::Result<()> {
        let request = pair
            .read_request()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let Request::Get(get) = request else {
            return Ok(());
        };
        let blob = BlobId(*get.hash.as_bytes());
        let decision = {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            let size = index.get(&blob).map(|e| e.size);
            (index.serve_decision(&blob, &peer), size)
        };
        let (ServeDecision::Serve, Some(size)) = decision else {
            debug!(blob = %blob.to_hex(), "corrupting provider: not served");
            return Ok(());
        };
        let Some((0, ranges)) = get.ranges.iter_non_empty_infinite().next() else {
            return Ok(());
        };
        let ranges = ranges.clone();
        // The byte to flip: the middle of the blob (so a fetcher keeps a verified prefix).
        let flip = (!self.spared.spares(&blob, &peer)).then_some(size / 2);
        let mut writer = pair.into_writer(RequestTracker::NONE).await?;
        let out = &mut writer.inner;
        let mut flipped = false;
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
                    if let Some(at) = flip.filter(|at| (leaf.offset..end).contains(at)) {
                        bytes[(at - leaf.offset) as usize] ^= 0x01;
                        flipped = true;
                    }
                    out.write_all(&bytes).await?;
                }
                EncodedItem::Done => break,
                EncodedItem::Error(e) => return Err(anyhow::anyhow!("export: {e}")),
            }
        }
        if flipped {
            info!(blob = %blob.to_hex(), peer = %hex::encode(peer), "served a corrupted blob (real-mode simulation)");
        }
        out.finish()?;
        out.stopped().await.ok();
        Ok(())
    }
}

impl ProtocolHandler for CorruptingProvider {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let peer: PeerKey = *connection.remote_id().as_bytes();
        while let Ok(pair) = StreamPair::accept(&connection, EventSender::DEFAULT).await {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.serve(peer, pair).await {
                    debug!("corrupting provider stream ended: {e:#}");
                }
            });
        }
        Ok(())
    }
}
