//! Bounty evaluation throughput and the sandbox's overhead, against the same evaluation run bare
//! in the same process.
//!
//! ```text
//! cargo bench -p l402-node --bench bounty --profile dev     # ~1 minute
//! L402_BENCH_EVALS=20 cargo bench -p l402-node --bench bounty --profile dev
//! ```
//!
//! Each evaluation is the example bounty's full two-phase evaluation of the baseline (copy the
//! tree, run `sh run.sh` — candle trains the byte-GPT — then the harness scores the model on
//! the held-out set). The bare and the sandboxed runs alternate, so load on the shared machine
//! falls on both alike, and
//! which goes first alternates. Reported: median wall time per evaluation, evaluations per hour, and
//! the ratio sandboxed / bare. Needs `bwrap`.

use std::path::Path;
use std::time::{Duration, Instant};

use l402_node::bounty::example::{self, EvalSet, TinyLmHarness};
use l402_node::bounty::example_bench;
use l402_node::bounty::harness::evaluate;
use l402_node::bounty::sandbox::{Isolation, Limits, Policy};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("L402_BENCH_EVALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir()?;
    let baseline = dir.path().join("baseline");
    example::write_baseline(&baseline)?;
    let heldout = EvalSet::generate(&[7; 32], example::EVAL_ROWS).encode();
    let bench = example_bench(
        &baseline,
        Path::new(env!("CARGO_BIN_EXE_l402-node")),
        16 * 1024,
        Limits::default(),
    );
    let sandboxed = Isolation::detect(Policy::RequireBubblewrap)?;
    let bare = Isolation::Unsandboxed;
    // Bare needs the trainer at the path run.sh is given.
    let mut bare_bench = bench.clone();
    bare_bench.env = vec![("L402_NODE".into(), env!("CARGO_BIN_EXE_l402-node").into())];
    let (mut t_bare, mut t_box) = (Vec::new(), Vec::new());
    let mut metrics = std::collections::BTreeSet::new();
    for i in 0..=n {
        for (iso, b, out) in [
            (&bare, &bare_bench, &mut t_bare),
            (&sandboxed, &bench, &mut t_box),
        ] {
            let t = Instant::now();
            let ev = evaluate(iso, b, &TinyLmHarness, None, &heldout)?;
            let dt = t.elapsed();
            anyhow::ensure!(ev.metric.is_some(), "evaluation failed: {ev:?}");
            metrics.insert(ev.metric);
            if i > 0 {
                out.push(dt); // the first pair warms the page cache
            }
        }
    }
    let (b, s) = (median(t_bare), median(t_box));
    println!(
        "bounty evaluation (example bounty tiny-lm, baseline config), {n} runs each, medians:"
    );
    println!(
        "  bare        {:>8.1} ms  {:>6.0} evaluations/hour",
        b.as_secs_f64() * 1e3,
        3600.0 / b.as_secs_f64()
    );
    println!(
        "  bubblewrap  {:>8.1} ms  {:>6.0} evaluations/hour",
        s.as_secs_f64() * 1e3,
        3600.0 / s.as_secs_f64()
    );
    println!(
        "  sandbox overhead: {:+.1} ms per evaluation, ratio {:.3}",
        (s.as_secs_f64() - b.as_secs_f64()) * 1e3,
        s.as_secs_f64() / b.as_secs_f64()
    );
    println!("  distinct metrics across all runs: {}", metrics.len());
    Ok(())
}
