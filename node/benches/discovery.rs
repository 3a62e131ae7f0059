//! Nostr discovery and the embedded relay: latency and flood benchmarks, each with a baseline
//! run in the same invocation.
//!
//! `cargo bench -p l402-node --bench discovery` (or the built binary with `--quick`).
//!
//! 1. Publish-to-discover latency, p50/p95: node A publishes a run announcement, node B's live
//!    directory lists it. Baseline: bare nostr-relay-builder `LocalRelay` (memory, no policy)
//!    and a plain nostr-sdk subscriber notified of a plain event.
//! 2. Relay ingest under a flood of 10,000 EVENTs (half valid l402 announcements, half junk:
//!    bad signatures, broken bindings, bad schemas, oversized, foreign kinds) from 4 pipelined
//!    connections: events/s and the relay process's peak RSS. Each relay runs in its own child
//!    process (this binary re-executed with `--relay-arm`), so that peak RSS is the relay's alone.
//!    Baseline: bare `LocalRelay` with `MemoryDatabase` and no policy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use l402_node::discovery::{samples, Discovery, DiscoveryConfig};
use l402_protocol::events::{self, EventContent, L402Kind};
use l402_relay_kit::{L402Policy, RateLimits, RelayConfig};
use nostr_relay_builder::prelude::{MemoryDatabase, MemoryDatabaseOptions, RateLimit};
use nostr_relay_builder::{LocalRelay, RelayBuilder};
use nostr_sdk::prelude::*;
use tokio_tungstenite::tungstenite::Message;

const SEED: u64 = 0xbe_c4;
const FLOOD: usize = 10_000;
const CONNECTIONS: usize = 4;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Peak resident set size of this process, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// 1. Publish-to-discover latency

async fn latency_baseline(samples_n: usize) -> Vec<Duration> {
    let relay = LocalRelay::new(RelayBuilder::default().rate_limit(RateLimit {
        max_reqs: 500,
        notes_per_minute: u32::MAX,
    }));
    relay.run().await.expect("baseline relay");
    let url = relay.url().await;
    let (ka, kb) = (Keys::generate(), Keys::generate());
    let a = Client::new(ka.clone());
    let b = Client::new(kb);
    for c in [&a, &b] {
        c.add_relay(url.as_str()).await.expect("add");
        c.connect().await;
        c.wait_for_connection(Duration::from_secs(10)).await;
    }
    let mut notes = b.notifications();
    b.subscribe(Filter::new().kind(Kind::Custom(34021)), None)
        .await
        .expect("subscribe");
    tokio::time::sleep(Duration::from_millis(200)).await; // let the REQ land before timing
    let mut out = Vec::with_capacity(samples_n);
    for i in 0..samples_n {
        let ev = EventBuilder::new(Kind::Custom(34021), format!("baseline {i}"))
            .tag(Tag::identifier(format!("run-{i}")))
            .sign_with_keys(&ka)
            .expect("sign");
        let t0 = Instant::now();
        let sent = a.send_event(&ev).await.expect("send");
        assert!(!sent.success.is_empty());
        loop {
            if let Ok(RelayPoolNotification::Event { event, .. }) = notes.recv().await {
                if event.id == ev.id {
                    break;
                }
            }
        }
        out.push(t0.elapsed());
    }
    relay.shutdown();
    out
}

async fn latency_l402(samples_n: usize, data_dir: Option<&std::path::Path>) -> Vec<Duration> {
    let (ka, kb) = (samples::keys(SEED, 0), samples::keys(SEED, 1));
    let mut embedded = RelayConfig::in_memory();
    embedded.data_dir = data_dir.map(|d| d.to_path_buf());
    let a = Discovery::start(
        DiscoveryConfig {
            embedded,
            ..DiscoveryConfig::default()
        },
        ka.clone(),
    )
    .await
    .expect("node A with the embedded relay");
    let b = Discovery::start(
        DiscoveryConfig {
            relays: a.relays().to_vec(),
            ..DiscoveryConfig::default()
        },
        kb,
    )
    .await
    .expect("node B");
    assert!(b.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut rx = b.watch_directory();
    let mut out = Vec::with_capacity(samples_n);
    for i in 0..samples_n {
        let ev = a
            .sign(
                &samples::run_announcement(&format!("run-{i}"), "bench"),
                Some(Duration::from_secs(3_600)),
            )
            .expect("sign");
        let t0 = Instant::now();
        a.publish(&ev).await.expect("published");
        rx.wait_for(|d| d.contains(&ev.id))
            .await
            .expect("directory alive");
        out.push(t0.elapsed());
    }
    b.shutdown().await;
    a.shutdown().await;
    out
}

async fn latency(samples_n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut base = latency_baseline(samples_n).await;
    let mut mem = latency_l402(samples_n, None).await;
    let mut lmdb = latency_l402(samples_n, Some(dir.path())).await;
    for v in [&mut base, &mut mem, &mut lmdb] {
        v.sort();
    }
    println!("## publish-to-discover latency ({samples_n} sequential announcements)");
    println!("| path | p50 (ms) | p95 (ms) | max (ms) | p50 vs baseline | p95 vs baseline |");
    println!("|---|---|---|---|---|---|");
    let rows = [
        (
            "baseline: bare LocalRelay (memory, no policy) → plain nostr-sdk subscriber",
            &base,
        ),
        (
            "l402: embedded relay, memory store (gate + L402Policy) → Discovery directory",
            &mem,
        ),
        (
            "l402: embedded relay, LMDB store (the node's default) → Discovery directory",
            &lmdb,
        ),
    ];
    for (label, v) in rows {
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.1}× | {:.1}× |",
            ms(pct(v, 0.5)),
            ms(pct(v, 0.95)),
            ms(pct(v, 1.0)),
            ms(pct(v, 0.5)) / ms(pct(&base, 0.5)),
            ms(pct(v, 0.95)) / ms(pct(&base, 0.95)),
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// 2. Flood

/// The flood: `FLOOD` EVENT messages, valid and junk interleaved, deterministic from the seed.
fn flood_messages() -> (Vec<String>, BTreeMap<&'static str, usize>) {
    let mut msgs = Vec::with_capacity(FLOOD);
    let mut mix: BTreeMap<&'static str, usize> = BTreeMap::new();
    let t = Timestamp::now();
    let exp = Tag::expiration(Timestamp::from(t.as_secs() + 3_600));
    let coordinator = samples::keys(SEED, 999_999);
    for i in 0..FLOOD as u64 {
        let k = samples::keys(SEED, 10_000 + i);
        let (name, ev_json) = match i % 20 {
            // 50 %: valid node announcements (distinct authors) and run announcements.
            0..=6 => {
                let ann = samples::node_announcement(&k, SEED, i, i % 2 == 0);
                (
                    "valid node announcement",
                    events::build(&ann, t)
                        .tag(exp.clone())
                        .sign_with_keys(&k)
                        .expect("sign")
                        .as_json(),
                )
            }
            7..=9 => {
                let run = samples::run_announcement(&format!("flood-{i}"), "flood");
                (
                    "valid run announcement",
                    events::build(&run, t)
                        .tag(exp.clone())
                        .sign_with_keys(&coordinator)
                        .expect("sign")
                        .as_json(),
                )
            }
            // 20 %: bad signature (signature of another event).
            10..=13 => {
                let ann = samples::node_announcement(&k, SEED, i, true);
                let ev = events::build(&ann, t).sign_with_keys(&k).expect("sign");
                let other = EventBuilder::text_note("x")
                    .sign_with_keys(&k)
                    .expect("sign");
                let mut j: serde_json::Value = serde_json::from_str(&ev.as_json()).expect("json");
                j["sig"] = other.sig.to_string().into();
                ("junk: bad signature", j.to_string())
            }
            // 10 %: wrongly bound (iroh signature over another Nostr key).
            14 | 15 => {
                let ann = samples::node_announcement(&samples::keys(SEED, 7), SEED, i, true);
                (
                    "junk: wrongly bound",
                    events::build(&ann, t)
                        .sign_with_keys(&k)
                        .expect("sign")
                        .as_json(),
                )
            }
            // 10 %: schema violation (k > n).
            16 | 17 => {
                let mut run = samples::run_announcement(&format!("bad-{i}"), "bad");
                run.k = run.n + 1;
                (
                    "junk: bad schema",
                    events::build(&run, t)
                        .sign_with_keys(&k)
                        .expect("sign")
                        .as_json(),
                )
            }
            // 5 %: oversized (~100 KB content).
            18 => {
                let run = samples::run_announcement(&format!("big-{i}"), &"x".repeat(100_000));
                (
                    "junk: oversized",
                    EventBuilder::new(L402Kind::RunAnnouncement.kind(), run.to_content())
                        .tags(run.tags())
                        .sign_with_keys(&k)
                        .expect("sign")
                        .as_json(),
                )
            }
            // 5 %: foreign kind.
            _ => (
                "junk: foreign kind",
                EventBuilder::text_note(format!("spam {i}"))
                    .sign_with_keys(&k)
                    .expect("sign")
                    .as_json(),
            ),
        };
        *mix.entry(name).or_default() += 1;
        msgs.push(format!(r#"["EVENT",{ev_json}]"#));
    }
    (msgs, mix)
}

/// Sends `msgs` over `CONNECTIONS` pipelined websockets and waits for every OK.
/// Returns (elapsed, accepted, rejections by prefix).
async fn flood(url: &str, msgs: &[String]) -> (Duration, usize, BTreeMap<String, usize>) {
    let chunks: Vec<Vec<String>> = (0..CONNECTIONS)
        .map(|c| msgs.iter().skip(c).step_by(CONNECTIONS).cloned().collect())
        .collect();
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        conns.push(ws);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (ws, chunk) in conns.into_iter().zip(chunks) {
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let n = chunk.len();
            let sender = tokio::spawn(async move {
                for m in chunk {
                    if tx.send(Message::Text(m.into())).await.is_err() {
                        break;
                    }
                }
                tx
            });
            let (mut ok, mut rejected): (usize, BTreeMap<String, usize>) = (0, BTreeMap::new());
            let mut answered = 0;
            while answered < n {
                let Some(Ok(Message::Text(t))) = rx.next().await else {
                    break;
                };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                match v[0].as_str() {
                    Some("OK") => {
                        answered += 1;
                        if v[2] == true {
                            ok += 1;
                        } else {
                            let prefix = v[3]
                                .as_str()
                                .unwrap_or("")
                                .split(':')
                                .next()
                                .unwrap_or("")
                                .to_owned();
                            *rejected.entry(prefix).or_default() += 1;
                        }
                    }
                    Some("NOTICE") => {
                        answered += 1;
                        *rejected.entry("notice".into()).or_default() += 1;
                    }
                    _ => {}
                }
            }
            let _ = sender.await;
            (ok, rejected)
        }));
    }
    let (mut ok, mut rejected) = (0, BTreeMap::new());
    for t in tasks {
        let (o, r) = t.await.expect("flood task");
        ok += o;
        for (k, v) in r {
            *rejected.entry(k).or_default() += v;
        }
    }
    (t0.elapsed(), ok, rejected)
}

/// One relay arm, in this (child) process: prints `URL <url>`, serves until stdin closes or
/// gets a line, then prints `RSS <peak MiB>`.
async fn relay_arm(arm: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut keep: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    let url = match arm {
        "baseline" => {
            // nostr-relay-builder as it comes, apart from its 60/min limit.
            let relay = LocalRelay::new(
                RelayBuilder::default()
                    .database(MemoryDatabase::with_opts(MemoryDatabaseOptions {
                        events: true,
                        max_events: Some(75_000),
                    }))
                    .rate_limit(RateLimit {
                        max_reqs: 500,
                        notes_per_minute: u32::MAX,
                    }),
            );
            relay.run().await.expect("relay");
            let url = relay.url().await.to_string();
            keep.push(Box::new(relay));
            url
        }
        _ => {
            let mut config = RelayConfig::in_memory();
            if arm.contains("lmdb") {
                config.data_dir = Some(dir.path().to_path_buf());
            }
            if !arm.contains("default-limits") {
                config.rate = RateLimits::unlimited();
            }
            let policy: Arc<dyn l402_relay_kit::EventPolicy> = if arm.contains("anykind") {
                config.foreign_kinds = l402_relay_kit::ForeignKinds::Accept;
                config.max_event_bytes = 1 << 20;
                Arc::new(l402_relay_kit::AnyKind)
            } else {
                Arc::new(L402Policy::default())
            };
            let relay = l402_relay_kit::EmbeddedRelay::start(config, policy)
                .await
                .expect("relay");
            let url = relay.url().to_string();
            keep.push(Box::new(relay));
            url
        }
    };
    println!("URL {url}");
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    println!("RSS {:.1}", peak_rss_mib());
    drop(keep);
}

fn run_flood_arms() {
    use std::io::{BufRead, Write};
    let exe = std::env::current_exe().expect("own path");
    let arms = [
        (
            "baseline",
            "baseline: bare LocalRelay, MemoryDatabase, no policy, no rate limit",
        ),
        (
            "gate-anykind-memory",
            "gate only (generic checks, any kind, 1 MiB cap), memory store, no rate limit",
        ),
        (
            "gate-memory",
            "gate + L402Policy, memory store, no rate limit",
        ),
        (
            "gate-lmdb",
            "gate + L402Policy + LMDB (the node's relay), no rate limit",
        ),
        (
            "gate-lmdb-default-limits",
            "gate + L402Policy + LMDB, default limits (1200/min, burst 300 per connection)",
        ),
    ];
    let (msgs, mix) = flood_messages();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("## relay under a flood of {FLOOD} EVENTs over {CONNECTIONS} pipelined connections");
    println!("mix: {mix:?}");
    println!("| arm | events/s | accepted | rejected (by NIP-01 prefix) | relay peak RSS (MiB) | events/s vs baseline | RSS vs baseline |");
    println!("|---|---|---|---|---|---|---|");
    let mut base: Option<(f64, f64)> = None;
    for (arm, label) in arms {
        let mut child = std::process::Command::new(&exe)
            .args(["--relay-arm", arm])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run arm");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let url = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.strip_prefix("URL ").map(str::to_owned))
            .expect("relay URL");
        let (elapsed, ok, rejected) = rt.block_on(flood(&url, &msgs));
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = writeln!(stdin, "done");
        drop(stdin);
        let rss: f64 = lines
            .find_map(|l| {
                l.ok()
                    .and_then(|l| l.strip_prefix("RSS ").and_then(|v| v.parse().ok()))
            })
            .unwrap_or(f64::NAN);
        let _ = child.wait();
        let rate = FLOOD as f64 / elapsed.as_secs_f64();
        let (brate, brss) = *base.get_or_insert((rate, rss));
        println!(
            "| {label} | {rate:.0} | {ok} | {} | {rss:.1} | {:.2}× | {:.2}× |",
            serde_json::to_string(&rejected).unwrap_or_default(),
            rate / brate,
            rss / brss
        );
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--relay-arm") {
        let arm = args.get(i + 1).cloned().unwrap_or_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(relay_arm(&arm));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(latency(if quick { 50 } else { 300 }));
    }
    run_flood_arms();
}
