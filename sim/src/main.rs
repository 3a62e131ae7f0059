//! `l402-sim`: the Byzantine simulator, fast seeded mode and real mode.
//!
//! ```text
//! l402-sim run sim/scenarios/honest.toml --seed 7 [--rounds 10] [--json] [--plot out.svg] [--check-replay] [--threads N]
//! l402-sim run --real sim/scenarios/real-mixed.toml [--rounds 5] [--dir d] [--compare-clean] [--json]
//! l402-sim sweep sim/scenarios/poisoners-30pct.toml --seeds 256 [--check-replay] [--baseline] [--threads N]
//! l402-sim heatmap [sim/scenarios/heatmap.toml] [--seeds 3] [--real-report d/sim-report.json] [--real-column sim/scenarios/real-heatmap.toml] [--dir out]
//! ```
//!
//! Exit status: 0 when every invariant holds, 1 when one breaks (the seed and the command that
//! replays it are printed), 2 on a usage or scenario error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use l402_sim::{
    heatmap, plot, real, run_checked_with_progress, run_with_progress, sweep, InvariantError,
    Scenario,
};

#[derive(Parser, Debug)]
#[command(
    name = "l402-sim",
    version,
    about = "Byzantine simulator of the l402 protocol (fast seeded mode, or --real nodes)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one seed of a scenario and print its report.
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Seed (default: the scenario's `seed`).
        #[arg(long, env = "L2T_SEED")]
        seed: Option<u64>,
        /// Rounds (default: the scenario's `rounds`).
        #[arg(long)]
        rounds: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Write an SVG plot of payouts per round.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Run the seed twice and check both give the same event-log hash (the second run
        /// on another thread count).
        #[arg(long)]
        check_replay: bool,
        /// Threads to spread the machines' work over (default: every core). The outcome is
        /// the same for any count.
        #[arg(long)]
        threads: Option<usize>,
        /// Real mode: a regtest chain, an embedded relay and one `l402-node up` process per
        /// node (the scenario must list `"real"` in `modes`).
        #[arg(long)]
        real: bool,
        /// Write sim-report.{json,md}, loss.svg and sats.svg here (real mode: also the nodes'
        /// data dirs; default there: a new temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also run the scenario without its adversaries (same seed) and check the final
        /// held-out loss is within 5 % of it.
        #[arg(long)]
        compare_clean: bool,
    },
    /// Run an `l402-node` command (`init`, `up`, …): how real mode starts its nodes.
    #[command(hide = true)]
    Node {
        /// The `l402-node` arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The final held-out loss gap over Byzantine share (0–40 %) × attack type, in fast mode
    /// (writes heatmap.{json,md,svg}).
    Heatmap {
        /// Base scenario: its honest peers are the workers a share of which attacks.
        #[arg(default_value = "sim/scenarios/heatmap.toml")]
        scenario: PathBuf,
        /// Seeds per cell.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// First seed.
        #[arg(long, env = "L2T_SEED", default_value_t = 1)]
        first_seed: u64,
        /// Rounds per run (default: the scenario's).
        #[arg(long)]
        rounds: Option<u64>,
        /// Threads per run (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Add a real-mode run's measured cell (its sim-report.json from `run --real
        /// --compare-clean`); repeatable.
        #[arg(long)]
        real_report: Vec<PathBuf>,
        /// Also measure a real-mode column on this base scenario (its honest peers are the
        /// workers): one real swarm per attack real nodes can show at `--real-share`, against
        /// one attack-free swarm; data dirs and reports under `<dir>/real/`.
        #[arg(long)]
        real_column: Option<PathBuf>,
        /// The real column's Byzantine share, percent.
        #[arg(long, default_value_t = 30)]
        real_share: u32,
        /// Rounds of each real swarm (default: the real base's).
        #[arg(long)]
        real_rounds: Option<u64>,
        /// Only these attacks in the real column (e.g. `copycat,stale`; default: every attack
        /// real nodes can show).
        #[arg(long, value_delimiter = ',')]
        real_attacks: Vec<String>,
        /// Where to write heatmap.{json,md,svg}.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Run many seeds and summarise (with a progress bar).
    Sweep {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Number of seeds.
        #[arg(long, default_value_t = 256)]
        seeds: u64,
        /// First seed.
        #[arg(long, env = "L2T_SEED", default_value_t = 0)]
        first_seed: u64,
        /// Rounds per seed (default: the scenario's `rounds`).
        #[arg(long)]
        rounds: Option<u64>,
        /// Re-run every seed (on another thread count) and compare event-log hashes.
        #[arg(long)]
        check_replay: bool,
        /// Threads per seed (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// First sweep the same seeds with every adversary removed, and report the throughput
        /// ratio against it.
        #[arg(long)]
        baseline: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn load(path: &Path) -> anyhow::Result<Scenario> {
    // The scenario error's message already names its cause; no error chain to repeat it.
    Scenario::load(path).map_err(|e| anyhow::anyhow!("loading scenario {}: {e}", path.display()))
}

fn report_failure(path: &Path, e: &InvariantError) {
    eprintln!("INVARIANT VIOLATION: {e}");
    eprintln!(
        "replay: l402-sim run {} --seed {} --rounds {}",
        path.display(),
        e.seed,
        e.rounds
    );
}

/// The machine's cores (the default thread count).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A bar over `seeds` runs of a sweep or heatmap.
fn progress(seeds: u64, label: &str) -> ProgressBar {
    bar(seeds, label, "seeds")
}

/// A bar over `rounds` simulated rounds (a long single run: 1 000 peers take seconds a round).
fn rounds_bar(rounds: u64, label: &str) -> ProgressBar {
    bar(rounds, label, "rounds")
}

fn bar(len: u64, label: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}}) {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(label.to_string());
    pb
}

/// mimalloc, not glibc's malloc: a thousand-peer run keeps gigabytes of small objects alive
/// across rounds, and glibc's allocator slowed with the fragmented heap (its share of the
/// profile grew from 5 % to 13 % over 25 rounds; BENCHMARKS.md, issue 12).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the 16th entry of `mi_option_e` in mimalloc.h, v2 and
/// v3 alike; libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory instead of handing it back to the OS after mimalloc's default second. A
/// round frees and reallocates gigabytes, and each purged huge page came back as a page fault
/// and 2 MiB of zeroing: 4 953 faults in 3 rounds of `honest-1000`, against 1 104 with this,
/// and 5 % of the profile in the kernel's `clear_page` (BENCHMARKS.md, issue 12).
fn keep_freed_memory() {
    // SAFETY: sets one integer in mimalloc's option table; `mi_option_set` has no precondition
    // beyond a valid option index, which `purge_delay_is_mimallocs_option_15` checks.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `l402-sim run --real`.
fn run_real(
    scenario: &Path,
    rounds: Option<u64>,
    dir: Option<PathBuf>,
    compare_clean: bool,
    json: bool,
) -> anyhow::Result<bool> {
    let sc = load(scenario)?;
    let exe = l402_node::cli::demo::NodeExe {
        path: std::env::current_exe()?,
        prefix: vec!["node".into()],
    };
    let opts = real::RealOptions {
        rounds,
        dir,
        compare_clean,
    };
    let report = real::run_real(&sc, &opts, exe)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_markdown());
    }
    eprintln!(
        "reports: {}/sim-report.{{json,md}}",
        Path::new(&report.dir)
            .parent()
            .unwrap_or(Path::new("."))
            .display()
    );
    if report.ok() {
        return Ok(true);
    }
    for i in report.invariants.iter().filter(|i| !i.holds) {
        eprintln!("INVARIANT VIOLATION: {}: {}", i.name, i.detail);
    }
    eprintln!(
        "seed {}; re-run: {}",
        report.seed,
        real::replay_command(scenario, report.rounds, compare_clean)
    );
    Ok(false)
}

/// `Ok(false)` when an invariant broke.
fn real_main() -> anyhow::Result<bool> {
    match Cli::parse().cmd {
        Cmd::Node { args } => {
            use clap::Parser as _;
            let cli = l402_node::cli::Cli::try_parse_from(
                std::iter::once("l402-node".to_owned()).chain(args),
            )?;
            l402_node::cli::run(cli)?;
            Ok(true)
        }
        Cmd::Run {
            scenario,
            rounds,
            json,
            real: true,
            dir,
            compare_clean,
            ..
        } => run_real(&scenario, rounds, dir, compare_clean, json),
        Cmd::Run {
            scenario,
            seed,
            rounds,
            json,
            plot,
            check_replay,
            threads,
            dir,
            compare_clean,
            ..
        } => {
            let sc = load(&scenario)?;
            let seed = seed.unwrap_or(sc.seed);
            let threads = threads.unwrap_or_else(cores);
            // One bar over every run this command makes, in rounds checkpointed.
            let per_run = rounds.unwrap_or(sc.rounds);
            let runs = 1 + u64::from(check_replay) + u64::from(compare_clean);
            let pb = rounds_bar(per_run * runs, &sc.name);
            let bar = pb.clone();
            let (report, mut result) = run_checked_with_progress(
                &sc,
                seed,
                rounds,
                check_replay,
                threads,
                move |run, n| bar.set_position(run as u64 * per_run + n),
            )?;
            let clean = if compare_clean {
                let bar = pb.clone();
                let before = (runs - 1) * per_run;
                let clean = run_with_progress(
                    &sc.without_adversaries(),
                    seed,
                    rounds,
                    threads,
                    move |n| bar.set_position(before + n),
                )?;
                if let Err(e) = l402_sim::invariants::check_loss_gap(&report, &clean) {
                    match &mut result {
                        Ok(()) => result = Err(e),
                        Err(first) => first.violations.extend(e.violations),
                    }
                }
                Some(clean)
            } else {
                None
            };
            pb.finish_and_clear();
            if let Some(d) = &dir {
                l402_sim::outputs::write_fast(d, &report, clean.as_ref(), &result)?;
                eprintln!(
                    "reports: {}/sim-report.{{json,md}}, loss.svg, sats.svg",
                    d.display()
                );
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
                if let Some(c) = &clean {
                    println!(
                        "final held-out loss {:.4} vs {:.4} without adversaries ({:+.2} %)",
                        report.final_loss(),
                        c.final_loss(),
                        l402_sim::invariants::loss_gap(&report, c) * 100.0
                    );
                }
                if check_replay && result.is_ok() {
                    println!(
                        "replay determinism: a re-run on {} thread(s) gave the same event-log hash",
                        l402_sim::replay_threads(threads)
                    );
                }
            }
            if let Some(p) = plot {
                plot::payouts_svg(&report, &p)?;
                eprintln!("wrote {}", p.display());
            }
            match result {
                Ok(()) => {
                    if !json {
                        println!("invariants: all hold");
                    }
                    Ok(true)
                }
                Err(e) => {
                    report_failure(&scenario, &e);
                    Ok(false)
                }
            }
        }
        Cmd::Heatmap {
            scenario,
            seeds,
            first_seed,
            rounds,
            threads,
            real_report,
            real_column,
            real_share,
            real_rounds,
            real_attacks,
            dir,
        } => {
            let sc = load(&scenario)?;
            let threads = threads.unwrap_or_else(cores);
            let shares = heatmap::SHARES.len() as u64;
            let runs = seeds * (shares + heatmap::Attack::ALL.len() as u64 * (shares - 1));
            let pb = progress(runs, "heatmap");
            let mut h = heatmap::run(&sc, first_seed, seeds, rounds, threads, || pb.inc(1))?;
            pb.finish_and_clear();
            for p in &real_report {
                let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p)?)?;
                let cell = heatmap::real_cell(&v).ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: not a real-mode report with an attack-free comparison",
                        p.display()
                    )
                })?;
                h.real.push(cell);
            }
            std::fs::create_dir_all(&dir)?;
            if let Some(base) = &real_column {
                let base = load(base)?;
                let exe = l402_node::cli::demo::NodeExe {
                    path: std::env::current_exe()?,
                    prefix: vec!["node".into()],
                };
                let started = std::time::Instant::now();
                let cells = heatmap::real_column(
                    &base,
                    real_share,
                    real_rounds,
                    &dir.join("real"),
                    exe,
                    &real_attacks,
                    |what| {
                        eprintln!(
                            "real column: {what} ({:.0} s so far)",
                            started.elapsed().as_secs_f64()
                        )
                    },
                )?;
                eprintln!(
                    "real column: {} swarms and the baseline in {:.0} s",
                    cells.len(),
                    started.elapsed().as_secs_f64()
                );
                for c in cells.iter().filter(|c| !c.invariants_hold) {
                    eprintln!(
                        "INVARIANT VIOLATION (real mode): {}; see {}/real/",
                        c.scenario,
                        dir.display()
                    );
                }
                h.real.extend(cells);
            }
            std::fs::write(dir.join("heatmap.json"), serde_json::to_vec_pretty(&h)?)?;
            std::fs::write(dir.join("heatmap.md"), h.to_markdown())?;
            h.to_svg(&dir.join("heatmap.svg"))?;
            print!("{}", h.to_markdown());
            eprintln!("wrote {}/heatmap.{{json,md,svg}}", dir.display());
            // A failing cell's scenario is written out so its seeds replay with `run`.
            let mut failing = 0usize;
            for c in h.cells.iter().filter(|c| !c.failing_seeds.is_empty()) {
                failing += 1;
                let cell = heatmap::scenario_for(&sc, c.attack, c.share_pct);
                let file = dir.join(format!("cell-{:?}-{}.toml", c.attack, c.share_pct));
                std::fs::write(&file, toml::to_string(&cell)?)?;
                for seed in &c.failing_seeds {
                    eprintln!(
                        "INVARIANT VIOLATION: {} at {} %, seed {seed}; replay: l402-sim run {} --seed {seed} --rounds {}",
                        c.attack.label(),
                        c.share_pct,
                        file.display(),
                        h.rounds
                    );
                }
            }
            Ok(failing == 0 && h.real.iter().all(|c| c.invariants_hold))
        }
        Cmd::Sweep {
            scenario,
            seeds,
            first_seed,
            rounds,
            check_replay,
            threads,
            baseline,
            json,
        } => {
            let sc = load(&scenario)?;
            let threads = threads.unwrap_or_else(cores);
            let base = if baseline {
                let b = sc.without_adversaries();
                let pb = progress(seeds, "baseline");
                let s = sweep(&b, first_seed, seeds, rounds, check_replay, threads, |_| {
                    pb.inc(1)
                })?;
                pb.finish_and_clear();
                Some(s)
            } else {
                None
            };
            let pb = progress(seeds, &sc.name);
            let mut failures = 0u64;
            let s = sweep(&sc, first_seed, seeds, rounds, check_replay, threads, |r| {
                if l402_sim::check(r).is_err() {
                    failures += 1;
                    pb.set_message(format!("{failures} failing (last seed {})", r.seed));
                }
                pb.inc(1);
            })?;
            pb.finish_and_clear();
            if json {
                let v = serde_json::json!({ "sweep": s, "baseline": base });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                if let Some(b) = &base {
                    print!("{}", b.to_text());
                    println!();
                }
                print!("{}", s.to_text());
                if let Some(b) = &base {
                    if b.rounds_per_sec > 0.0 {
                        println!(
                            "throughput vs the no-adversary baseline: {:.2}x rounds/s ({:.2} vs \
                             {:.2}), {:.2}x submissions/s ({:.1} vs {:.1})",
                            s.rounds_per_sec / b.rounds_per_sec,
                            s.rounds_per_sec,
                            b.rounds_per_sec,
                            s.submissions_per_sec / b.submissions_per_sec.max(f64::MIN_POSITIVE),
                            s.submissions_per_sec,
                            b.submissions_per_sec
                        );
                    }
                }
            }
            for e in &s.failing {
                report_failure(&scenario, e);
            }
            Ok(s.failing.is_empty())
        }
    }
}

#[cfg(test)]
mod tests {
    /// The index is mimalloc's purge delay: it reads v3's default 1 000 ms (`options.c`; unless
    /// the environment sets `MIMALLOC_PURGE_DELAY`), and the option after it, the NUMA node
    /// count, reads 0.
    #[test]
    fn purge_delay_is_mimallocs_option_15() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        #[allow(unsafe_code)]
        // SAFETY: reads two entries of mimalloc's option table.
        let (delay, numa) = unsafe {
            (
                libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(libmimalloc_sys::mi_option_use_numa_nodes),
            )
        };
        assert_eq!((delay, numa), (1_000, 0));
    }
}
