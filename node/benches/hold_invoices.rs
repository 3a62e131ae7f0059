//! Hold-invoice benchmarks on the in-process regtest chain with real ldk-node instances.
//!
//! ```text
//! cargo bench -p l402-node --bench hold_invoices --profile dev -- [latency|throughput|swarm|all] [N]
//! ```
//!
//! - `latency`: N (default 220) sequential hold payments between two nodes with a direct channel:
//!   send → claimable (payee) and claim → payer success, p50/p95; baseline in the same process:
//!   N ordinary (auto-claimed) invoices, send → payer success.
//! - `throughput`: payments per second between two nodes, 20 in flight (LDK accepts at most 50
//!   HTLCs per channel direction by default), hold and ordinary invoices.
//! - `swarm`: 20 nodes on one machine: start, fund, ring of channels, each pays its successor a
//!   hold invoice; times and memory.
//!
//! Memory: resident set size of this process (`/proc/self/status`), before and after the nodes
//! start, divided by the number of nodes; `VmHWM` is the process peak.

use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use l402_node::lightning::testkit::{Testkit, TestkitConfig, WAIT};
use l402_node::lightning::{LightningNode, PaymentOutcome, Preimage};

/// Payments in flight at once. LDK accepts at most 50 HTLCs per channel direction; with 40 in
/// flight some sends failed with `RouteNotFound` (see BENCHMARKS.md).
const IN_FLIGHT: usize = 20;

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_mib() -> f64 {
    proc_status_kib("VmRSS:") as f64 / 1024.0
}

fn hwm_mib() -> f64 {
    proc_status_kib("VmHWM:") as f64 / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Stats {
    p50: Duration,
    p95: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    Stats {
        p50: percentile(&v, 0.5),
        p95: percentile(&v, 0.95),
        mean,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}

fn preimage(tag: u8, i: usize) -> Preimage {
    let mut p = [tag; 32];
    p[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Preimage(p)
}

/// One hold payment end to end; returns (send → claimable, claim → payer success).
async fn hold_payment(
    payer: &LightningNode,
    payee: &LightningNode,
    p: Preimage,
    amount_msat: u64,
) -> anyhow::Result<(Duration, Duration)> {
    let hash = p.payment_hash();
    let invoice = payee.create_hold_invoice(hash, amount_msat, "bench", 3600)?;
    let t0 = Instant::now();
    payer.pay(&invoice)?;
    payee.wait_hold_claimable(hash, WAIT).await?;
    let t1 = Instant::now();
    payee.claim(hash, &p)?;
    match payer.wait_payment(hash, WAIT).await? {
        PaymentOutcome::Succeeded { .. } => {}
        other => anyhow::bail!("hold payment failed: {other:?}"),
    }
    let t2 = Instant::now();
    payee.wait_hold_claimed(hash, WAIT).await?;
    Ok((t1 - t0, t2 - t1))
}

/// One ordinary (auto-claimed) payment; returns send → payer success.
async fn plain_payment(
    payer: &LightningNode,
    payee: &LightningNode,
    amount_msat: u64,
) -> anyhow::Result<Duration> {
    let invoice = payee.create_invoice(amount_msat, "bench", 3600)?;
    let t0 = Instant::now();
    let hash = payer.pay(&invoice)?;
    match payer.wait_payment(hash, WAIT).await? {
        PaymentOutcome::Succeeded { .. } => {}
        other => anyhow::bail!("payment failed: {other:?}"),
    }
    let d = t0.elapsed();
    payee.wait_received(hash, WAIT).await?;
    Ok(d)
}

async fn two_node_kit() -> anyhow::Result<Testkit> {
    let kit = Testkit::start(TestkitConfig {
        nodes: 2,
        funding_sat: 50_000_000,
        ..Default::default()
    })
    .await?;
    // The largest channel without `option_support_large_channel` is 2^24 - 1 sat.
    kit.channel(0, 1, 16_000_000, None, false).await?;
    Ok(kit)
}

async fn latency(n: usize) -> anyhow::Result<()> {
    let rss0 = rss_mib();
    let kit = two_node_kit().await?;
    let rss_nodes = rss_mib();
    let (payer, payee) = (kit.node(0), kit.node(1));
    // Warm-up: the first payments after a start are slow (1–1.5 s).
    for i in 0..5 {
        hold_payment(payer, payee, preimage(0xee, i), 5_000_000).await?;
        plain_payment(payer, payee, 5_000_000).await?;
    }
    let pb = bar(n, "plain (baseline)");
    let mut plain = Vec::with_capacity(n);
    for _ in 0..n {
        plain.push(plain_payment(payer, payee, 5_000_000).await?);
        pb.inc(1);
    }
    pb.finish();
    let pb = bar(n, "hold");
    let (mut to_claimable, mut to_success) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (a, b) = hold_payment(payer, payee, preimage(0x01, i), 5_000_000).await?;
        to_claimable.push(a);
        to_success.push(b);
        pb.inc(1);
    }
    pb.finish();
    let totals: Vec<Duration> = to_claimable
        .iter()
        .zip(&to_success)
        .map(|(a, b)| *a + *b)
        .collect();
    let (plain, c, s, t) = (
        stats(plain),
        stats(to_claimable),
        stats(to_success),
        stats(totals),
    );
    println!("\n### Hold-invoice latency, two nodes, direct channel, {n} sequential payments\n");
    println!("| leg | p50 | p95 | mean |\n|---|---|---|---|");
    println!(
        "| hold: send → claimable | {} | {} | {} |",
        ms(c.p50),
        ms(c.p95),
        ms(c.mean)
    );
    println!(
        "| hold: claim → payer success | {} | {} | {} |",
        ms(s.p50),
        ms(s.p95),
        ms(s.mean)
    );
    println!(
        "| hold: total | {} | {} | {} |",
        ms(t.p50),
        ms(t.p95),
        ms(t.mean)
    );
    println!(
        "| baseline: ordinary invoice, send → payer success | {} | {} | {} |",
        ms(plain.p50),
        ms(plain.p95),
        ms(plain.mean)
    );
    println!(
        "\nratio hold total / ordinary (p50): {:.2}",
        t.p50.as_secs_f64() / plain.p50.as_secs_f64().max(1e-9)
    );
    println!(
        "memory: RSS before nodes {rss0:.0} MiB, with 2 nodes {rss_nodes:.0} MiB ({:.0} MiB per node), after payments {:.0} MiB, peak {:.0} MiB",
        (rss_nodes - rss0) / 2.0,
        rss_mib(),
        hwm_mib()
    );
    kit.shutdown().await?;
    Ok(())
}

async fn throughput(n: usize) -> anyhow::Result<()> {
    let kit = two_node_kit().await?;
    let (payer, payee) = (kit.node(0), kit.node(1));
    for i in 0..5 {
        hold_payment(payer, payee, preimage(0xef, i), 5_000_000).await?;
    }
    // Sequential baseline, same process.
    let t = Instant::now();
    for _ in 0..n / 4 {
        plain_payment(payer, payee, 5_000_000).await?;
    }
    let seq_pps = (n / 4) as f64 / t.elapsed().as_secs_f64();

    let pb = bar(n, &format!("plain, {IN_FLIGHT} in flight"));
    let t = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..n)
        .map(|_| {
            let pb = &pb;
            async move {
                let r = plain_payment(payer, payee, 5_000_000).await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let plain_secs = t.elapsed().as_secs_f64();
    pb.finish();
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    let pb = bar(n, &format!("hold, {IN_FLIGHT} in flight"));
    let t = Instant::now();
    let results: Vec<anyhow::Result<(Duration, Duration)>> = futures::stream::iter(0..n)
        .map(|i| {
            let pb = &pb;
            async move {
                let r = hold_payment(payer, payee, preimage(0x02, i), 5_000_000).await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let hold_secs = t.elapsed().as_secs_f64();
    pb.finish();
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    println!("\n### Payments per second between two nodes ({n} payments, {IN_FLIGHT} in flight)\n");
    println!("| mode | payments/s |\n|---|---|");
    println!("| baseline: ordinary invoices, one at a time | {seq_pps:.1} |");
    println!(
        "| ordinary invoices, {IN_FLIGHT} in flight | {:.1} |",
        n as f64 / plain_secs
    );
    println!(
        "| hold invoices (create, pay, claimable, claim, success), {IN_FLIGHT} in flight | {:.1} |",
        n as f64 / hold_secs
    );
    kit.shutdown().await?;
    Ok(())
}

async fn swarm(n: usize) -> anyhow::Result<()> {
    let rss0 = rss_mib();
    let t = Instant::now();
    let kit = Testkit::start(TestkitConfig {
        nodes: n,
        funding_sat: 5_000_000,
        ..Default::default()
    })
    .await?;
    let start_and_fund = t.elapsed();
    let rss_started = rss_mib();
    let t = Instant::now();
    for i in 0..n {
        kit.open_channel(i, (i + 1) % n, 1_000_000, None, false)
            .await?;
    }
    kit.confirm_channels().await?;
    let channels = t.elapsed();
    // Everyone pays its successor a hold invoice at once; everyone claims.
    let t = Instant::now();
    let results: Vec<anyhow::Result<(Duration, Duration)>> = futures::stream::iter(0..n)
        .map(|i| {
            let kit = &kit;
            async move {
                hold_payment(
                    kit.node(i),
                    kit.node((i + 1) % n),
                    preimage(0x03, i),
                    20_000_000,
                )
                .await
            }
        })
        .buffer_unordered(n)
        .collect()
        .await;
    let pay = t.elapsed();
    let legs = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let c = stats(legs.iter().map(|l| l.0).collect());
    // A full sync round of all nodes after one block.
    let t = Instant::now();
    kit.mine_and_sync(1).await?;
    let sync_round = t.elapsed();
    println!("\n### {n} ldk-nodes in one process on the 2-core machine\n");
    println!("| step | time |\n|---|---|");
    println!(
        "| start chain + {n} nodes, fund each on chain, confirm, sync | {:.1} s |",
        start_and_fund.as_secs_f64()
    );
    println!(
        "| open a ring of {n} channels, 6 confirmations, all ready and usable | {:.1} s |",
        channels.as_secs_f64()
    );
    println!("| {n} concurrent hold payments (each to its successor), all claimed and settled | {:.2} s (send → claimable p50 {}, p95 {}) |", pay.as_secs_f64(), ms(c.p50), ms(c.p95));
    println!(
        "| mine 1 block, sync all {n} nodes | {:.2} s |",
        sync_round.as_secs_f64()
    );
    println!(
        "\nmemory: RSS before {rss0:.0} MiB, after starting {n} nodes {rss_started:.0} MiB ({:.1} MiB per node), now {:.0} MiB ({:.1} MiB per node), peak {:.0} MiB",
        (rss_started - rss0) / n as f64,
        rss_mib(),
        (rss_mib() - rss0) / n as f64,
        hwm_mib()
    );
    kit.shutdown().await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ldk=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    // `cargo bench` passes `--bench`; ignore flags.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let what = args.first().map(String::as_str).unwrap_or("all");
    let n: Option<usize> = args.get(1).and_then(|s| s.parse().ok());
    if matches!(what, "latency" | "all") {
        latency(n.unwrap_or(220)).await?;
    }
    if matches!(what, "throughput" | "all") {
        throughput(n.unwrap_or(400)).await?;
    }
    if matches!(what, "swarm" | "all") {
        swarm(n.unwrap_or(20)).await?;
    }
    Ok(())
}
