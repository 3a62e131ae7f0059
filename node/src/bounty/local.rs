//! `l402-node bounty local`: a bounty's award flow on one machine, as `l402-node train` is for
//! training: the example bounty, the reference agent, a copier, a follow-up (one more training
//! step on top of the agent's config, paid only if it beats the new leader by the margin) and a
//! cheater, each candidate evaluated by every validator of a committee in the sandbox, the
//! awards decided by `protocol::bounty::Board`, and the holdback settled by a re-evaluation on a
//! fresh held-out set. No Nostr, no Lightning: it shows who would be paid what.
//!
//! Spec: specs/L2T-13-bounties.md

use std::path::{Path, PathBuf};

use l402_protocol::bounty::{median, Board, Candidate, Decision};
use l402_protocol::events::bounty::{Bounty, Direction};
use l402_protocol::events::ids::{BlobHash, RunId, Score, Seed32};
use nostr_sdk::nostr::{EventId, Keys, SecretKey};
use serde::Serialize;

use super::agent::{self, AgentConfig};
use super::example::{self, EvalSet, TinyLmHarness};
use super::harness::{self, Bench, Evaluation, ExploitEntry, ExploitLog};
use super::sandbox::{Isolation, Limits};
use super::{diff, example_bench};

/// Arguments of `l402-node bounty local`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// Working directory (baseline, eval sets, exploit log, report).
    #[arg(long)]
    pub out: PathBuf,
    /// Validators evaluating each candidate.
    #[arg(long, default_value_t = 3)]
    pub validators: u32,
    /// Proposals the reference agent may make.
    #[arg(long, default_value_t = 12)]
    pub agent_iterations: u32,
    /// Seed of the held-out sets and the agent.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One candidate's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Who submitted it.
    pub who: String,
    /// Seconds after the bounty opened that it was committed.
    pub committed_at: u64,
    /// Every validator's metric (millionths; `None`: not scored).
    pub validator_metrics: Vec<Option<i64>>,
    /// The committee's metric: the median of the validators' (when every one scored).
    pub metric: Option<i64>,
    /// What the board decided (`None`: not scored, not submitted to the board).
    pub decision: Option<Decision>,
    /// Exploit classes the evaluation showed.
    pub exploits: Vec<harness::ExploitClass>,
}

/// What `bounty local` did.
#[derive(Debug, Clone, Serialize)]
pub struct LocalReport {
    /// The baseline's metric.
    pub baseline_metric: i64,
    /// The candidates, in commitment order.
    pub entries: Vec<Entry>,
    /// Paid on release, per candidate who (msat).
    pub primary_msat: u64,
    /// Holdback released after the re-evaluation (msat).
    pub holdback_released_msat: u64,
    /// Holdback refunded to the sponsor (msat).
    pub holdback_refunded_msat: u64,
    /// The exploit log's path.
    pub exploit_log: PathBuf,
}

fn seed32(tag: &str, seed: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("l402 bounty local v1");
    h.update(tag.as_bytes());
    h.update(&seed.to_le_bytes());
    *h.finalize().as_bytes()
}

/// The example bounty as a sponsor would post it (pool 100 000 sats, target one nat per byte,
/// margin 0.02 nat, 100 tranches of 1 %, 20 % held back).
pub fn example_bounty(heldout: &[u8], deadline: u64) -> Bounty {
    use sha2::Digest;
    Bounty {
        v: 1,
        bounty_id: RunId::new("tiny-lm").expect("a valid id"),
        title: "Lower the held-out loss of the tiny byte-GPT".into(),
        baseline: BlobHash([0; 32]),
        mutable_files: example::MUTABLE_FILES.iter().map(|s| (*s).into()).collect(),
        eval_command: example::EVAL_COMMAND.into(),
        metric: "heldout_loss_micro_nats_per_byte".into(),
        direction: Direction::Minimize,
        public_eval: BlobHash(*blake3::hash(b"public").as_bytes()),
        heldout_commitment: Seed32(sha2::Sha256::digest(heldout).into()),
        pool_msat: 100_000_000,
        target_improvement: Score(1_000_000),
        deadline,
        diff_size_cap: 16 * 1024,
        n: 3,
        k: 2,
        holdback_ppm: 200_000,
        margin: Score(20_000),
        tranches: 100,
        reveal_window_secs: 60,
        gateway: None,
    }
}

/// Evaluate `diff` with every validator; the committee's metric is the median when all scored.
fn committee_eval(
    iso: &Isolation,
    bench: &Bench,
    validators: u32,
    diff: Option<&str>,
    heldout: &[u8],
) -> anyhow::Result<(Vec<Option<i64>>, Option<i64>, Evaluation)> {
    let mut metrics = Vec::new();
    let mut last = None;
    for _ in 0..validators.max(1) {
        let ev = harness::evaluate(iso, bench, &TinyLmHarness, diff.map(str::as_bytes), heldout)?;
        metrics.push(ev.metric);
        last = Some(ev);
    }
    let scored: Vec<i64> = metrics.iter().flatten().copied().collect();
    let metric = (scored.len() == metrics.len())
        .then(|| median(&scored))
        .flatten();
    Ok((metrics, metric, last.expect("at least one validator")))
}

/// Run the flow in `args.out` with `iso`; `node_bin` is the `l402-node` binary the candidates'
/// `run.sh` calls inside the sandbox.
pub fn run_local(
    iso: &Isolation,
    args: &LocalArgs,
    node_bin: &Path,
) -> anyhow::Result<LocalReport> {
    let baseline = args.out.join("baseline");
    example::write_baseline(&baseline)?;
    let public = EvalSet::generate(&example::public_seed(), example::EVAL_ROWS).encode();
    let heldout = EvalSet::generate(&seed32("heldout", args.seed), example::EVAL_ROWS).encode();
    let fresh = EvalSet::generate(&seed32("reeval", args.seed), example::EVAL_ROWS).encode();
    let log = ExploitLog::new(args.out.join("exploits.jsonl"));
    let bounty = example_bounty(&heldout, 3_600);

    let bench = example_bench(&baseline, node_bin, 16 * 1024, Limits::default());
    let (_, base_metric, _) = committee_eval(iso, &bench, args.validators, None, &heldout)?;
    let base_metric = base_metric.ok_or_else(|| anyhow::anyhow!("the baseline did not score"))?;
    let mut board = Board::new(&bounty, base_metric);

    // The reference agent climbs on the public set.
    let found = agent::run(
        iso,
        &bench,
        &TinyLmHarness,
        &public,
        &AgentConfig {
            max_iterations: args.agent_iterations,
            patience: args.agent_iterations / 2 + 1,
            min_gain: 1_000,
            seed: args.seed,
            propose_cmd: None,
            lower_is_better: true,
        },
        &indicatif::ProgressBar::hidden(),
    )?;
    anyhow::ensure!(!found.diff.is_empty(), "the agent found no improvement");
    // A follow-up on top of the agent's config: one more training step, a gain below the margin
    // (or none).
    let agent_toml = apply_to(&baseline, &found.diff, "train.toml")?;
    let follow_up = diff::make(
        "train.toml",
        &std::fs::read_to_string(baseline.join("train.toml"))?,
        &bump_steps(&agent_toml, 1),
    );
    let cheat = diff::make(
        "run.sh",
        &std::fs::read_to_string(baseline.join("run.sh"))?,
        "\"$L402_NODE\" bounty train --config train.toml --out out\necho 'heldout_loss: 0.001'\n",
    );
    // (who, committed at, diff, claimed metric)
    let submissions = [
        ("reference agent", 10, found.diff.clone(), None),
        ("copier (same diff, later)", 20, found.diff.clone(), None),
        ("follow-up (one more step)", 30, follow_up, None),
        ("cheater (prints a metric)", 40, cheat, Some(1_000)),
    ];
    let mut entries = Vec::new();
    for (i, (who, at, d, claim)) in submissions.iter().enumerate() {
        let (validator_metrics, metric, mut ev) =
            committee_eval(iso, &bench, args.validators, Some(d), &heldout)?;
        if let Some(c) = claim {
            ev.check_claim(*c, true, 0);
        }
        let agent = Keys::new(SecretKey::from_slice(&seed32(who, args.seed))?);
        if let Some(e) = ExploitEntry::of(&ev, "tiny-lm", Some(agent.public_key().to_hex()), *at) {
            log.record(&e)?;
        }
        if let Some(m) = metric {
            board.submit(Candidate {
                agent: agent.public_key(),
                diff: BlobHash(*blake3::hash(d.as_bytes()).as_bytes()),
                committed_at: *at,
                commitment: EventId::from_byte_array(seed32(&format!("commit {i}"), args.seed)),
                metric: m,
            });
        }
        entries.push(Entry {
            who: (*who).into(),
            committed_at: *at,
            validator_metrics,
            metric,
            decision: None,
            exploits: ev.exploits,
        });
    }
    // Every reveal window has passed: decide in commitment order.
    let decisions = board.decide_due(3_600);
    let mut decided = decisions.into_iter();
    for e in entries.iter_mut().filter(|e| e.metric.is_some()) {
        e.decision = decided.next();
    }
    // The holdback: a second committee re-measures the previous leader and each awarded diff
    // on a fresh held-out set.
    let (mut primary, mut released, mut refunded) = (0, 0, 0);
    for e in &entries {
        let Some(Decision::Award(a)) = &e.decision else {
            continue;
        };
        primary += a.primary_msat;
        let d = &submissions
            .iter()
            .find(|s| s.0 == e.who)
            .expect("the entry's submission")
            .2;
        let (_, prev, _) = committee_eval(iso, &bench, args.validators, None, &fresh)?;
        let (_, now, _) = committee_eval(iso, &bench, args.validators, Some(d), &fresh)?;
        let freed = match (prev, now) {
            (Some(p), Some(n)) => board.settle_holdback(a, p, n),
            _ => 0,
        };
        released += freed;
        refunded += a.holdback_msat - freed;
    }
    Ok(LocalReport {
        baseline_metric: base_metric,
        entries,
        primary_msat: primary,
        holdback_released_msat: released,
        holdback_refunded_msat: refunded,
        exploit_log: args.out.join("exploits.jsonl"),
    })
}

/// `file` of the baseline with `d` applied (in a scratch copy).
fn apply_to(baseline: &Path, d: &str, file: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    for f in example::MUTABLE_FILES {
        std::fs::copy(baseline.join(f), dir.path().join(f))?;
    }
    let files = diff::parse(
        d.as_bytes(),
        &example::MUTABLE_FILES.map(String::from),
        16 * 1024,
    )?;
    diff::apply(dir.path(), &files)?;
    Ok(std::fs::read_to_string(dir.path().join(file))?)
}

/// The config with `steps` raised by `by`.
pub fn bump_steps(toml_text: &str, by: u32) -> String {
    let mut out: Vec<String> = Vec::new();
    for line in toml_text.lines() {
        let bumped = line.strip_prefix("steps = ").and_then(|rest| {
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let v: u32 = n.parse().ok()?;
            Some(format!("steps = {}{}", v + by, &rest[n.len()..]))
        });
        out.push(bumped.unwrap_or_else(|| line.to_owned()));
    }
    out.join("\n") + "\n"
}

/// Print `r` as a table.
pub fn print(r: &LocalReport) {
    println!(
        "baseline held-out metric {} (micro-nats per byte)",
        r.baseline_metric
    );
    println!("{:<30} {:>5} {:>10}  decision", "candidate", "at", "metric");
    for e in &r.entries {
        let decision = match &e.decision {
            Some(Decision::Award(a)) => format!(
                "award: {} tranches, {} sats now + {} sats held back (improvement {})",
                a.tranches,
                a.primary_msat / 1000,
                a.holdback_msat / 1000,
                a.improvement
            ),
            Some(d) => format!("{d:?}"),
            None => format!("not scored; exploit log: {:?}", e.exploits),
        };
        println!(
            "{:<30} {:>5} {:>10}  {decision}",
            e.who,
            e.committed_at,
            e.metric
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    println!(
        "paid {} sats on release; holdback {} sats released, {} sats refunded; exploit log {}",
        r.primary_msat / 1000,
        r.holdback_released_msat / 1000,
        r.holdback_refunded_msat / 1000,
        r.exploit_log.display()
    );
}
