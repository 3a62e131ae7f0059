//! Autoresearch bounties on the validator's side: the sandbox candidate code runs in, the checks
//! and application of an agent's diff, the two-phase evaluation (candidate phase in the sandbox,
//! harness phase outside it), the exploit log, and the example bounty shipped with the repo.
//!
//! Spec: specs/L2T-13-bounties.md

pub mod agent;
pub mod client;
pub mod diff;
pub mod example;
pub mod harness;
pub mod local;
pub mod net;
pub mod sandbox;

use std::path::{Path, PathBuf};

use harness::{Bench, Evaluation, ExploitEntry, ExploitLog};
use sandbox::{Isolation, Limits, Policy};

/// `l402-node bounty …`.
#[derive(Debug, clap::Args)]
pub struct BountyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BountyCommand,
}

/// The subcommands of `l402-node bounty`.
#[derive(Debug, clap::Subcommand)]
pub enum BountyCommand {
    /// Write the example bounty: its baseline tree, public eval set and a fresh held-out set.
    Example(ExampleArgs),
    /// Evaluate a diff against a baseline as a validator does (sandbox, then harness); prints JSON.
    Eval(EvalArgs),
    /// The example bounty's candidate phase (what its `run.sh` runs inside the sandbox).
    Train(example::TrainCandidateArgs),
    /// The reference agent: hill-climb over the mutable files on the public eval set until it
    /// converges; writes the best diff.
    Agent(AgentArgs),
    /// The award flow on one machine: the agent, a copier, a follow-up and a
    /// cheater, evaluated by a committee in the sandbox, decided by the award rules, holdback
    /// settled by a re-evaluation (no Nostr, no Lightning).
    Local(local::LocalArgs),
    /// Sponsor the example bounty from your running node (`up`): it posts the bounty, sends the
    /// validators their held-out secrets and opens the rounds.
    Post(client::PostArgs),
    /// The bounties announced on the relays.
    List(crate::discovery::listing::ListArgs),
    /// A sponsor's bounty board: bounties, leaderboards, awards, exploit log.
    Show(client::ShowArgs),
    /// Submit a diff to a bounty's open round through your running node (it pays the fee over
    /// L402 and runs the submission's escrow).
    Submit(client::SubmitArgs),
}

/// Arguments of `l402-node bounty agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The baseline tree.
    #[arg(long)]
    pub baseline: PathBuf,
    /// The public eval set.
    #[arg(long)]
    pub eval: PathBuf,
    /// Where to write the best diff.
    #[arg(long)]
    pub out: PathBuf,
    /// Proposals at most.
    #[arg(long, default_value_t = 30)]
    pub iterations: u32,
    /// Stop after this many proposals in a row without a gain.
    #[arg(long, default_value_t = 8)]
    pub patience: u32,
    /// Smallest gain kept (millionths of the metric).
    #[arg(long, default_value_t = 1_000)]
    pub min_gain: i64,
    /// Seed of the built-in mutator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// An external command proposing edits (a coding agent), run with `sh -c` in a scratch copy
    /// of the best tree; it edits the mutable files in place.
    #[arg(long)]
    pub propose_cmd: Option<String>,
    /// Evaluate without bubblewrap where it is missing (the agent's own code).
    #[arg(long, env = "L402_ALLOW_UNSANDBOXED")]
    pub allow_unsandboxed: bool,
}

/// Arguments of `l402-node bounty example`.
#[derive(Debug, clap::Args)]
pub struct ExampleArgs {
    /// Directory to write `baseline/`, `public.eval` and `heldout.eval` into.
    #[arg(long)]
    pub out: PathBuf,
    /// Held-out seed (64 hex characters); a fresh random one by default. Keep it secret.
    #[arg(long, env = "L402_HELDOUT_SEED")]
    pub heldout_seed: Option<String>,
}

/// Arguments of `l402-node bounty eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The baseline tree.
    #[arg(long)]
    pub baseline: PathBuf,
    /// The eval set to score on (held-out for a validator, public for an agent).
    #[arg(long)]
    pub eval: PathBuf,
    /// The agent's unified diff (none: evaluate the baseline).
    #[arg(long)]
    pub diff: Option<PathBuf>,
    /// The metric the agent claims (millionths); a better claim than measured is logged.
    #[arg(long)]
    pub claimed: Option<i64>,
    /// Append what the evaluation shows to this exploit log (JSON lines).
    #[arg(long)]
    pub exploit_log: Option<PathBuf>,
    /// Bounty id for the exploit log.
    #[arg(long, default_value = "tiny-lm")]
    pub bounty: String,
    /// Largest diff in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub diff_cap: u64,
    /// Wall-time cap of the candidate phase, in seconds.
    #[arg(long, default_value_t = Limits::default().wall_secs)]
    pub wall_secs: u64,
    /// Run candidates without bubblewrap where it is missing (resource caps only): only for
    /// code you trust.
    #[arg(long, env = "L402_ALLOW_UNSANDBOXED")]
    pub allow_unsandboxed: bool,
}

/// The example bounty's bench for the baseline at `baseline`, with `node_bin` (this binary)
/// bound read-only into the sandbox as the trainer.
pub fn example_bench(baseline: &Path, node_bin: &Path, diff_cap: u64, limits: Limits) -> Bench {
    Bench {
        baseline: baseline.to_owned(),
        mutable_files: example::MUTABLE_FILES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        diff_cap,
        command: example::EVAL_COMMAND.to_owned(),
        ro_binds: vec![(
            node_bin.to_owned(),
            PathBuf::from(example::SANDBOX_NODE_BIN),
        )],
        env: vec![("L402_NODE".into(), example::SANDBOX_NODE_BIN.into())],
        limits,
    }
}

/// Runs `l402-node bounty …`.
pub fn run(args: BountyArgs) -> anyhow::Result<()> {
    match args.command {
        BountyCommand::Train(a) => example::run_train(&a),
        BountyCommand::Example(a) => run_example(&a),
        BountyCommand::Eval(a) => run_eval(&a),
        BountyCommand::Agent(a) => run_agent(&a),
        BountyCommand::Post(a) => client::post(&a),
        BountyCommand::List(a) => {
            crate::discovery::listing::run(crate::discovery::listing::Listing::Bounties, a)
        }
        BountyCommand::Show(a) => client::show(&a),
        BountyCommand::Submit(a) => client::submit(&a),
        BountyCommand::Local(a) => {
            let iso = Isolation::detect(Policy::RequireBubblewrap)?;
            std::fs::create_dir_all(&a.out)?;
            let report = local::run_local(&iso, &a, &std::env::current_exe()?)?;
            local::print(&report);
            let path = a.out.join("report.json");
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
            println!("report: {}", path.display());
            Ok(())
        }
    }
}

fn run_example(a: &ExampleArgs) -> anyhow::Result<()> {
    let seed: [u8; 32] = match &a.heldout_seed {
        Some(h) => hex::decode(h)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("--heldout-seed must be 32 bytes of hex"))?,
        None => rand::random(),
    };
    example::write_baseline(&a.out.join("baseline"))?;
    let public = example::EvalSet::generate(&example::public_seed(), example::EVAL_ROWS).encode();
    let heldout = example::EvalSet::generate(&seed, example::EVAL_ROWS).encode();
    std::fs::write(a.out.join("public.eval"), &public)?;
    std::fs::write(a.out.join("heldout.eval"), &heldout)?;
    use sha2::Digest;
    println!(
        "wrote {}/{{baseline/,public.eval,heldout.eval}}; held-out commitment sha256 {}",
        a.out.display(),
        hex::encode(sha2::Sha256::digest(&heldout))
    );
    Ok(())
}

fn policy(allow_unsandboxed: bool) -> Policy {
    if allow_unsandboxed {
        Policy::AllowUnsandboxed
    } else {
        Policy::RequireBubblewrap
    }
}

fn run_agent(a: &AgentArgs) -> anyhow::Result<()> {
    let iso = Isolation::detect(policy(a.allow_unsandboxed))?;
    let exe = std::env::current_exe()?;
    let bench = example_bench(&a.baseline, &exe, 16 * 1024, Limits::default());
    let public = std::fs::read(&a.eval)?;
    let config = agent::AgentConfig {
        max_iterations: a.iterations,
        patience: a.patience,
        min_gain: a.min_gain,
        seed: a.seed,
        propose_cmd: a.propose_cmd.clone(),
        lower_is_better: true,
    };
    let pb = agent::progress_bar(false);
    let report = agent::run(&iso, &bench, &example::TinyLmHarness, &public, &config, &pb)?;
    pb.finish_and_clear();
    std::fs::write(&a.out, &report.diff)?;
    for s in &report.steps {
        println!(
            "{:>3}  {:<40} {:>10}  {}",
            s.iteration,
            s.change,
            s.metric
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into()),
            if s.kept { "kept" } else { "" }
        );
    }
    println!(
        "public metric {} → {} ({}); diff written to {}",
        report.baseline_metric,
        report.best_metric,
        if report.converged {
            "converged"
        } else {
            "iteration budget used"
        },
        a.out.display()
    );
    Ok(())
}

fn run_eval(a: &EvalArgs) -> anyhow::Result<()> {
    let iso = Isolation::detect(policy(a.allow_unsandboxed))?;
    let exe = std::env::current_exe()?;
    let limits = Limits {
        wall_secs: a.wall_secs,
        ..Limits::default()
    };
    let bench = example_bench(&a.baseline, &exe, a.diff_cap, limits);
    let diff = a.diff.as_ref().map(std::fs::read).transpose()?;
    let eval = std::fs::read(&a.eval)?;
    let mut ev: Evaluation = harness::evaluate(
        &iso,
        &bench,
        &example::TinyLmHarness,
        diff.as_deref(),
        &eval,
    )?;
    if let Some(c) = a.claimed {
        ev.check_claim(c, true, 0);
    }
    if let (Some(path), Some(entry)) = (
        &a.exploit_log,
        ExploitEntry::of(&ev, &a.bounty, None, crate::runtime::unix_now()),
    ) {
        ExploitLog::new(path).record(&entry)?;
    }
    println!("{}", serde_json::to_string_pretty(&ev)?);
    Ok(())
}
