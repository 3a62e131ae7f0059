//! The network end to end: `l402-node demo` (1 coordinator, 3 validators, 4 peers, each its own
//! process, over loopback) timed phase by phase from the nodes' own timelines, against a
//! baseline run in this process: the same peer round (H inner steps + SparseLoCo compression of
//! the same tiny byte-GPT from the same genesis) with no network at all.
//!
//! ```text
//! cargo bench -p l402-node --bench network --profile dev -- [ROUNDS]   # default 3
//! ```
//!
//! Prints each phase's mean per round and its ratio to the baseline's training time, the round
//! wall time, peer utilisation (training time / round wall time), lock → quorum → claimed
//! latency (p50, p95), the demo's wall time and every process's peak RSS. Figures go to
//! BENCHMARKS.md.

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use l402_node::runtime::roles::{PeerTrainer, RoundOutput};
use l402_node::train::Checkpoint;
use l402_node::up::default_work;
use l402_protocol::events::RunId;
use serde_json::Value;

fn main() -> anyhow::Result<()> {
    let rounds: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);

    // Baseline: one peer round of compute, alone in this process (best of 3).
    let work = default_work();
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&1u64.to_le_bytes());
    let genesis = Checkpoint::init(&work.model, &seed)?;
    let run = RunId::new("demo".to_owned())?;
    let me = nostr_sdk::Keys::generate().public_key();
    let (mut train_ms, mut compress_ms) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let mut t = PeerTrainer::new(&work, &run, &me, &genesis)?;
        let (_, took) =
            t.round_blob_timed(&genesis, 1, RoundOutput::Trained, &ProgressBar::hidden())?;
        train_ms = train_ms.min(took.train.as_secs_f64() * 1e3);
        compress_ms = compress_ms.min(took.compress.as_secs_f64() * 1e3);
    }
    println!(
        "baseline (this process, no network): train {train_ms:.0} ms, compress {compress_ms:.1} ms"
    );

    // The network: the demo, every node its own process.
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_l402-node"))
        .args(["demo", "--rounds", &rounds.to_string(), "--json", "--dir"])
        .arg(dir.path())
        .output()
        .context("running l402-node demo")?;
    let wall = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    let phases = &report["phases"];
    l402_node::cli::demo::print_phases(&report);
    let mut sums: std::collections::BTreeMap<&str, (f64, u32)> = Default::default();
    let keys = [
        "wall_ms",
        "train_ms",
        "compress_ms",
        "submit_ms",
        "evaluate_ms",
        "quorum_ms",
        "settle_ms",
        "peer_utilisation",
    ];
    for p in phases["rounds"].as_array().into_iter().flatten() {
        for k in keys {
            if let Some(v) = p[k].as_f64() {
                let e = sums.entry(k).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    let mean = |k: &str| {
        sums.get(k)
            .map(|(s, n)| s / f64::from(*n))
            .unwrap_or(f64::NAN)
    };
    println!(
        "\nmean per round, and as a multiple of the baseline's training time ({train_ms:.0} ms):"
    );
    for k in &keys[..7] {
        println!(
            "  {:<12} {:>9.0} ms  {:>6.3}×",
            k.trim_end_matches("_ms"),
            mean(k),
            mean(k) / train_ms
        );
    }
    let non_train = mean("compress_ms")
        + mean("submit_ms")
        + mean("evaluate_ms")
        + mean("quorum_ms")
        + mean("settle_ms");
    println!(
        "  everything but training (compress + submit + evaluate + quorum + settle): {non_train:.0} ms = {:.1} % of the round",
        100.0 * non_train / mean("wall_ms")
    );
    println!(
        "  peer utilisation (train / round wall): {:.1} %",
        100.0 * mean("peer_utilisation")
    );
    for k in [
        "lock_to_quorum_ms",
        "quorum_to_claimed_ms",
        "lock_to_claimed_ms",
    ] {
        let l = &phases[k];
        println!(
            "  {k:<22} p50 {} ms  p95 {} ms  (n = {})",
            l["p50"], l["p95"], l["n"]
        );
    }
    println!(
        "\ndemo wall time ({rounds} rounds, incl. start, funding, channels, settle): {:.1} s",
        wall.as_secs_f64()
    );
    println!("peak RSS (VmHWM, KiB): {}", report["peak_rss_kb"]);
    Ok(())
}
