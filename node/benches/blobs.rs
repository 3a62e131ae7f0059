//! Blob transfer benchmark (bench binary, `harness = false`), loopback only.
//!
//! For each blob size it measures, in the same process and on the same bytes:
//! - `tcp`: a raw TCP copy into memory (the ceiling);
//! - `tcp+blake3`: a TCP copy with BLAKE3 over the received bytes (the fair limit for a verified
//!   transfer);
//! - `iroh`: `BlobNode::fetch` between two nodes (FsStores, size proof + BLAKE3-verified stream).
//!
//! Then the fan-out: a 14 MB blob from one seed to 10 fetchers, (a) every fetcher from the seed
//! at once, and (b) every fetcher from whoever already has it (each holder serves at most
//! `UPLOAD_SLOTS` fetchers at a time; a fetcher that completes becomes a holder).
//!
//! Run: `cargo bench -p l402-node --bench blobs`. Env: `L402_BENCH_LARGE_MB` (default 500; 0
//! skips it), `L402_BENCH_REPS` (default 5, small blob), `L402_BENCH_LARGE_REPS` (default 2).

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use l402_node::blobs::{AddressBook, BlobConfig, BlobNode, FetchRequest, ProviderId};
use l402_protocol::blobmeta::{BlobId, Placement};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, Mutex},
};

/// 14 MB: a 0.5B-parameter pseudo-gradient at 146x compression.
const SMALL: usize = 14_000_000;
/// Concurrent uploads per holder in the "from whoever has it" fan-out.
const UPLOAD_SLOTS: usize = 2;
/// Fetchers in the fan-out.
const FETCHERS: u8 = 10;
const MB: f64 = 1e6;

fn key(n: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = n;
    k[31] = 0xb7;
    k
}

fn data(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"blob bench")
        .finalize_xof()
        .fill(&mut out);
    out
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn start(dir: &Path, n: u8, book: &AddressBook) -> Result<BlobNode> {
    let mut cfg = BlobConfig::local(dir.join(format!("node-{n}")), key(n));
    cfg.stall_timeout = Duration::from_secs(120);
    cfg.connect_timeout = Duration::from_secs(60);
    let node = BlobNode::start(cfg, book.clone()).await?;
    book.insert(node.local_addr())?;
    Ok(node)
}

/// Raw TCP copy of `bytes` over loopback; with `verify`, the receiver BLAKE3-hashes as it reads.
async fn tcp_copy(bytes: Arc<Vec<u8>>, verify: bool) -> Result<Duration> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let addr = listener.local_addr()?;
    let expected = blake3::hash(&bytes);
    let len = bytes.len();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        sock.write_all(&bytes).await?;
        sock.shutdown().await?;
        anyhow::Ok(())
    });
    let started = Instant::now();
    let mut sock = TcpStream::connect(addr).await?;
    let mut received = Vec::with_capacity(len);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if verify {
            hasher.update(&buf[..n]);
        }
        received.extend_from_slice(&buf[..n]);
    }
    let elapsed = started.elapsed();
    server.await??;
    if verify {
        ensure!(hasher.finalize() == expected, "tcp+blake3 hash mismatch");
    }
    ensure!(received.len() == len, "tcp copy lost bytes");
    Ok(elapsed)
}

/// One verified iroh fetch of `id` from `provider` into a fresh node.
async fn iroh_fetch(
    dir: &Path,
    n: u8,
    book: &AddressBook,
    id: BlobId,
    size: usize,
    provider: ProviderId,
) -> Result<Duration> {
    let fetcher = start(dir, n, book).await?;
    let request = FetchRequest {
        hash: id,
        announced_size: size as u64,
        providers: vec![provider],
        placement: Placement::pinned_public(),
    };
    let started = Instant::now();
    let report = fetcher.fetch(&request).await?;
    let elapsed = started.elapsed();
    ensure!(!report.already_held && report.size == size as u64);
    fetcher.shutdown().await?;
    tokio::fs::remove_dir_all(dir.join(format!("node-{n}")))
        .await
        .ok();
    Ok(elapsed)
}

async fn throughput(dir: &Path, label: &str, size: usize, reps: usize) -> Result<()> {
    let bytes = Arc::new(data(size));
    let book = AddressBook::new();
    let provider = start(dir, 1, &book).await?;
    let id = provider
        .add_bytes(bytes.as_ref().clone(), &Placement::pinned_public())
        .await?;
    let (mut tcp, mut tcp_b3, mut iroh) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved so that machine load affects all three alike.
    for rep in 0..reps {
        tcp.push(tcp_copy(bytes.clone(), false).await?);
        tcp_b3.push(tcp_copy(bytes.clone(), true).await?);
        iroh.push(
            iroh_fetch(
                dir,
                100 + rep as u8,
                &book,
                id,
                size,
                provider.provider_id(),
            )
            .await?,
        );
    }
    provider.shutdown().await?;
    let (tcp, tcp_b3, iroh) = (median(tcp), median(tcp_b3), median(iroh));
    let rate = |d: Duration| size as f64 / MB / d.as_secs_f64();
    println!(
        "| {label} | {reps} | {:.0} MB/s ({:.1} ms) | {:.0} MB/s ({:.1} ms) | {:.0} MB/s ({:.1} ms) | {:.0}% | {:.0}% |",
        rate(tcp),
        tcp.as_secs_f64() * 1e3,
        rate(tcp_b3),
        tcp_b3.as_secs_f64() * 1e3,
        rate(iroh),
        iroh.as_secs_f64() * 1e3,
        100.0 * rate(iroh) / rate(tcp_b3),
        100.0 * rate(iroh) / rate(tcp),
    );
    Ok(())
}

/// Fan-out of one blob to FETCHERS nodes. `spread`: fetchers take upload slots of whoever holds
/// the blob; otherwise every fetcher asks the seed at once.
async fn fan_out(dir: &Path, spread: bool) -> Result<(Duration, usize)> {
    let book = AddressBook::new();
    let seed = start(dir, 1, &book).await?;
    let id = seed
        .add_bytes(data(SMALL), &Placement::pinned_public())
        .await?;
    let mut fetchers = Vec::new();
    for n in 0..FETCHERS {
        fetchers.push(Arc::new(start(dir, 10 + n, &book).await?));
    }
    // Upload slots: a token per free slot of each holder.
    let (slots_tx, slots_rx) = mpsc::unbounded_channel::<ProviderId>();
    let slots_rx = Arc::new(Mutex::new(slots_rx));
    let per_holder = if spread {
        UPLOAD_SLOTS
    } else {
        FETCHERS as usize
    };
    for _ in 0..per_holder {
        slots_tx.send(seed.provider_id())?;
    }
    let seed_id = seed.provider_id();
    let served_by_others = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for fetcher in &fetchers {
        let (fetcher, slots_tx, slots_rx) = (fetcher.clone(), slots_tx.clone(), slots_rx.clone());
        let others = served_by_others.clone();
        tasks.push(tokio::spawn(async move {
            let holder = slots_rx.lock().await.recv().await.context("slots closed")?;
            let request = FetchRequest {
                hash: id,
                announced_size: SMALL as u64,
                providers: vec![holder, seed_id],
                placement: Placement::pinned_public(),
            };
            let report = fetcher.fetch(&request).await?;
            if report.attempts.last().map(|a| a.provider) != Some(seed_id) {
                others.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            slots_tx.send(holder).ok();
            if spread {
                for _ in 0..UPLOAD_SLOTS {
                    slots_tx.send(fetcher.provider_id()).ok();
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let mut held = BTreeSet::new();
    for fetcher in &fetchers {
        ensure!(fetcher.store().is_complete(&id).await?);
        held.insert(fetcher.provider_id());
    }
    ensure!(held.len() == FETCHERS as usize);
    drop(slots_tx);
    for fetcher in fetchers {
        if let Ok(node) = Arc::try_unwrap(fetcher) {
            node.shutdown().await?;
        }
    }
    seed.shutdown().await?;
    for n in 0..FETCHERS {
        tokio::fs::remove_dir_all(dir.join(format!("node-{}", 10 + n)))
            .await
            .ok();
    }
    tokio::fs::remove_dir_all(dir.join("node-1")).await.ok();
    Ok((
        elapsed,
        served_by_others.load(std::sync::atomic::Ordering::SeqCst),
    ))
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = tempfile::tempdir()?;
        let large_mb = env_usize("L402_BENCH_LARGE_MB", 500);
        println!("Blobs over iroh, loopback (medians of interleaved runs; iroh into an FsStore):\n");
        println!("| blob | runs | raw TCP | TCP + BLAKE3 | iroh-blobs fetch | iroh / TCP+BLAKE3 | iroh / raw TCP |");
        println!("|---|---|---|---|---|---|---|");
        throughput(dir.path(), "14 MB", SMALL, env_usize("L402_BENCH_REPS", 5)).await?;
        if large_mb > 0 {
            let reps = env_usize("L402_BENCH_LARGE_REPS", 2);
            throughput(dir.path(), &format!("{large_mb} MB"), large_mb * 1_000_000, reps).await?;
        }
        println!("\nFan-out of a 14 MB blob from 1 seed to {FETCHERS} fetchers:\n");
        println!("| strategy | time to all complete | fetches served by non-seed holders |");
        println!("|---|---|---|");
        let (seed_only, _) = fan_out(dir.path(), false).await?;
        println!("| all from the seed at once | {:.0} ms | 0 |", seed_only.as_secs_f64() * 1e3);
        let (spread, others) = fan_out(dir.path(), true).await?;
        println!(
            "| from whoever has it ({UPLOAD_SLOTS} upload slots per holder) | {:.0} ms | {others} |",
            spread.as_secs_f64() * 1e3
        );
        anyhow::Ok(())
    })
}
