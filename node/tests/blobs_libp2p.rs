//! Integration tests of the libp2p blob transport (cargo feature `libp2p`): real libp2p swarms
//! (TCP + noise + yamux) on 127.0.0.1, real FsStores.
//!
//! Run with `cargo test -p l402-node --features libp2p --test blobs_libp2p`.
#![cfg(feature = "libp2p")]

mod support;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{anyhow, Result};
use futures::StreamExt;
use iroh_blobs::api::blobs::BlobStatus;
use l402_node::blobs::{
    AddressBook, BlobError, BlobNode, FetchRequest, ProviderAddr, ProviderFailure, ProviderId,
    TransportKind,
};
use l402_protocol::blobmeta::{
    BlobId, BlobRequest, BlobResponse, BlobResponseBody, Placement, RoundKey, LIBP2P_BLOB_PROTOCOL,
    LIBP2P_BLOB_VERSION,
};
use libp2p::{
    identity::Keypair,
    multiaddr::Protocol,
    noise,
    request_response::{self, cbor, ProtocolSupport},
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, StreamProtocol, SwarmBuilder,
};
use support::{config, data, key, PATIENCE};
use tokio::time::timeout;

async fn start_libp2p(dir: &std::path::Path, n: u8, book: &AddressBook) -> Result<BlobNode> {
    support::init_tracing();
    let mut cfg = config(dir, n);
    cfg.transport = TransportKind::Libp2p;
    let node = BlobNode::start(cfg, book.clone()).await?;
    book.insert(node.local_addr())?;
    Ok(node)
}

fn request(hash: BlobId, size: usize, providers: Vec<ProviderId>) -> FetchRequest {
    FetchRequest {
        hash,
        announced_size: size as u64,
        providers,
        placement: Placement::pinned_public(),
    }
}

/// A libp2p provider that answers every request with `bytes` with one byte flipped.
async fn start_corrupt_provider(n: u8, bytes: Vec<u8>, book: &AddressBook) -> Result<ProviderId> {
    let keypair = Keypair::ed25519_from_bytes(key(n))?;
    let codec = cbor::codec::Codec::<BlobRequest, BlobResponse>::default()
        .set_response_size_maximum(64 << 20);
    let behaviour = cbor::Behaviour::with_codec(
        codec,
        [(
            StreamProtocol::new(LIBP2P_BLOB_PROTOCOL),
            ProtocolSupport::Full,
        )],
        request_response::Config::default(),
    );
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let listen = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let port = listen
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no tcp port in {listen}"))?;
    let id = ProviderId(support::provider_id(n).0);
    book.insert(ProviderAddr {
        id,
        addrs: BTreeSet::from([SocketAddr::from((Ipv4Addr::LOCALHOST, port))]),
    })?;
    let mut corrupted = bytes;
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x01;
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = swarm.select_next_some().await
            {
                let response = BlobResponse {
                    v: LIBP2P_BLOB_VERSION,
                    body: BlobResponseBody::Blob(corrupted.clone()),
                };
                swarm.behaviour_mut().send_response(channel, response).ok();
            }
        }
    });
    let _: Multiaddr = listen;
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_fetch_verifies_bytes_and_falls_back_to_honest_provider() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let book = AddressBook::new();
    let size = 3 << 20;
    let bytes = data("libp2p", size);
    let corrupt = start_corrupt_provider(20, bytes.clone(), &book).await?;
    let honest = start_libp2p(dir.path(), 1, &book).await?;
    let hash = honest
        .add_bytes(bytes.clone(), &Placement::pinned_public())
        .await?;
    let fetcher = start_libp2p(dir.path(), 2, &book).await?;

    let err = timeout(PATIENCE, fetcher.fetch(&request(hash, size, vec![corrupt])))
        .await?
        .expect_err("corrupt bytes accepted");
    let BlobError::AllProvidersFailed { attempts, .. } = err else {
        panic!("unexpected error {err}");
    };
    assert!(
        matches!(attempts.as_slice(), [(_, ProviderFailure::Corrupt(_))]),
        "{attempts:?}"
    );
    assert_eq!(fetcher.store().status(&hash).await?, BlobStatus::NotFound);
    assert_eq!(
        fetcher.fetch_stats().strikes.get(&corrupt.to_string()),
        Some(&1)
    );

    // The struck provider is asked last.
    let both = request(hash, size, vec![corrupt, honest.provider_id()]);
    let report = timeout(PATIENCE, fetcher.fetch(&both)).await??;
    assert_eq!(report.attempts.len(), 1, "{report:?}");
    assert_eq!(report.attempts[0].provider, honest.provider_id());
    assert_eq!(fetcher.read(&hash).await?, bytes);

    // Without a strike, the given order: caught, then completed by the honest provider.
    let fresh = start_libp2p(dir.path(), 4, &book).await?;
    let report = timeout(PATIENCE, fresh.fetch(&both)).await??;
    assert!(matches!(
        report.attempts[0].failure,
        Some(ProviderFailure::Corrupt(_))
    ));
    assert_eq!(report.attempts[1].failure, None);
    assert_eq!(fresh.read(&hash).await?, bytes);
    fresh.shutdown().await?;

    // The fetcher re-provides over libp2p.
    let third = start_libp2p(dir.path(), 3, &book).await?;
    timeout(
        PATIENCE,
        third.fetch(&request(hash, size, vec![fetcher.provider_id()])),
    )
    .await??;
    assert_eq!(third.read(&hash).await?, bytes);
    for node in [honest, fetcher, third] {
        node.shutdown().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_access_control_and_size_cap() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let book = AddressBook::new();
    let peer = start_libp2p(dir.path(), 1, &book).await?;
    let validator = start_libp2p(dir.path(), 2, &book).await?;
    let outsider = start_libp2p(dir.path(), 3, &book).await?;
    let bytes = data("libp2p round", 100_000);
    let round = RoundKey::new("run-p2p", 1)?;
    let placement = Placement::restricted_in(round.clone(), [validator.provider_id().0]);
    let hash = peer.add_bytes(bytes.clone(), &placement).await?;
    let req = request(hash, bytes.len(), vec![peer.provider_id()]);

    let err = timeout(PATIENCE, outsider.fetch(&req))
        .await?
        .expect_err("outsider served");
    let BlobError::AllProvidersFailed { attempts, .. } = err else {
        panic!("unexpected error {err}");
    };
    assert_eq!(
        attempts,
        vec![(peer.provider_id(), ProviderFailure::Refused)]
    );
    timeout(PATIENCE, validator.fetch(&req)).await??;
    peer.release_round(&round).await?;
    timeout(PATIENCE, outsider.fetch(&req)).await??;
    assert_eq!(outsider.read(&hash).await?, bytes);

    let over = request(BlobId([7; 32]), (1 << 30) + 1, vec![peer.provider_id()]);
    assert!(matches!(
        outsider.fetch(&over).await,
        Err(BlobError::SizeOverCap { .. })
    ));
    for node in [peer, validator, outsider] {
        node.shutdown().await?;
    }
    Ok(())
}
