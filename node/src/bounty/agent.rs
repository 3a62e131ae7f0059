//! The reference agent: a loop that needs no LLM. It proposes an edit to the bounty's mutable
//! files, evaluates the edited tree on the **public** eval set with the same two-phase
//! evaluation validators use, keeps the edit if it beats the best so far by `min_gain`, and
//! discards it otherwise (hill climbing). It stops when it has converged — `patience` proposals
//! in a row without a gain, as MAGNET's loop stops when its experiments stop paying off — or
//! after `max_iterations`. Its result is one diff against the baseline.
//!
//! Proposals come from the built-in mutator (a seeded random numeric value of a mutable TOML
//! file scaled up or down) or from a hook: any external command (a coding agent) run in a
//! scratch copy of the current best tree, which edits the files in place.
//!
//! Spec: specs/L2T-13-bounties.md#reference-agent

use std::collections::BTreeMap;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::diff;
use super::harness::{self, Bench, Harness};
use super::sandbox::{Isolation, SandboxError};

/// How the agent searches.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Proposals at most.
    pub max_iterations: u32,
    /// Stop after this many proposals in a row without a gain.
    pub patience: u32,
    /// A proposal must beat the best by this much (millionths) to be kept.
    pub min_gain: i64,
    /// Seed of the built-in mutator.
    pub seed: u64,
    /// External proposal command, run with `sh -c` in a scratch copy of the best tree.
    pub propose_cmd: Option<String>,
    /// Whether a lower metric is better.
    pub lower_is_better: bool,
}

/// One proposal and what it measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Step {
    /// Iteration (1-based).
    pub iteration: u32,
    /// What changed (`file: key old → new`, or the hook).
    pub change: String,
    /// Public metric, if it was scored.
    pub metric: Option<i64>,
    /// Whether it was kept.
    pub kept: bool,
}

/// The agent's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AgentReport {
    /// The baseline's public metric.
    pub baseline_metric: i64,
    /// The best public metric found.
    pub best_metric: i64,
    /// The diff against the baseline that reaches it (empty if nothing beat the baseline).
    pub diff: String,
    /// Every proposal.
    pub steps: Vec<Step>,
    /// Whether it stopped because it converged (else: the iteration budget ran out).
    pub converged: bool,
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The sandbox could not run.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The baseline itself does not evaluate.
    #[error("the baseline does not evaluate: {0}")]
    Baseline(String),
    /// Reading the trees failed.
    #[error("agent I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the loop on `bench` (whose baseline is the tree agents start from) against `public`.
pub fn run(
    iso: &Isolation,
    bench: &Bench,
    harness: &dyn Harness,
    public: &[u8],
    config: &AgentConfig,
    progress: &ProgressBar,
) -> Result<AgentReport, AgentError> {
    let baseline = read_mutable(&bench.baseline, &bench.mutable_files)?;
    let base = harness::evaluate(iso, bench, harness, None, public)?;
    let baseline_metric = base
        .metric
        .ok_or_else(|| AgentError::Baseline(format!("{:?}", base.exploits)))?;
    let better = |a: i64, b: i64| {
        if config.lower_is_better {
            a + config.min_gain <= b
        } else {
            a >= b + config.min_gain
        }
    };
    let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
    let mut best = baseline.clone();
    let mut best_metric = baseline_metric;
    let mut steps = Vec::new();
    let mut misses = 0;
    // Diffs already measured: proposing one again costs a miss, not an evaluation.
    let mut tried = std::collections::BTreeSet::new();
    progress.set_length(u64::from(config.max_iterations));
    for iteration in 1..=config.max_iterations {
        progress.inc(1);
        let proposal = match &config.propose_cmd {
            Some(cmd) => propose_with_hook(cmd, &bench.baseline, &best, &bench.mutable_files)?,
            None => mutate(&best, &mut rng),
        };
        let Some((files, change)) = proposal else {
            misses += 1;
            steps.push(Step {
                iteration,
                change: "no proposal".into(),
                metric: None,
                kept: false,
            });
            continue;
        };
        let d = make_diff(&baseline, &files);
        let metric = if d.is_empty() || !tried.insert(*blake3::hash(d.as_bytes()).as_bytes()) {
            None
        } else {
            harness::evaluate(iso, bench, harness, Some(d.as_bytes()), public)?.metric
        };
        let kept = metric.is_some_and(|m| better(m, best_metric));
        tracing::info!(iteration, %change, ?metric, best = best_metric, kept, "agent step");
        progress.set_message(format!("best {best_metric}"));
        if let (true, Some(m)) = (kept, metric) {
            best = files;
            best_metric = m;
            misses = 0;
        } else {
            misses += 1;
        }
        steps.push(Step {
            iteration,
            change,
            metric,
            kept,
        });
        if misses >= config.patience {
            progress.finish_and_clear();
            return Ok(AgentReport {
                baseline_metric,
                best_metric,
                diff: make_diff(&baseline, &best),
                steps,
                converged: true,
            });
        }
    }
    Ok(AgentReport {
        baseline_metric,
        best_metric,
        diff: make_diff(&baseline, &best),
        steps,
        converged: false,
    })
}

type Files = BTreeMap<String, String>;

fn read_mutable(root: &Path, mutable: &[String]) -> std::io::Result<Files> {
    mutable
        .iter()
        .map(|f| Ok((f.clone(), std::fs::read_to_string(root.join(f))?)))
        .collect()
}

fn make_diff(baseline: &Files, files: &Files) -> String {
    files
        .iter()
        .filter(|(f, text)| baseline.get(*f) != Some(*text))
        .map(|(f, text)| diff::make(f, &baseline[f], text))
        .collect()
}

/// Scale one numeric value of one mutable TOML file: integers by ×/÷ 1.5 (at least ±1, never
/// below 1), floats by ×/÷ 2. `None` if no mutable TOML file has a numeric value.
fn mutate(files: &Files, rng: &mut ChaCha20Rng) -> Option<(Files, String)> {
    let mut sites = Vec::new();
    for (f, text) in files.iter().filter(|(f, _)| f.ends_with(".toml")) {
        for (i, line) in text.lines().enumerate() {
            if let Some((key, value)) = numeric_assignment(line) {
                sites.push((f.clone(), i, key.to_owned(), value.to_owned()));
            }
        }
    }
    if sites.is_empty() {
        return None;
    }
    let (file, line_no, key, value) = sites[rng.gen_range(0..sites.len())].clone();
    let up = rng.gen_bool(0.5);
    let new = if let Ok(n) = value.parse::<i64>() {
        let scaled = if up {
            (n as f64 * 1.5).round() as i64
        } else {
            (n as f64 / 1.5).round() as i64
        };
        let step = if up { n + 1 } else { n - 1 };
        let v = if up {
            scaled.max(step)
        } else {
            scaled.min(step)
        };
        v.max(1).to_string()
    } else {
        let x: f64 = value.parse().ok()?;
        let v = if x == 0.0 {
            if up {
                0.01
            } else {
                0.0
            }
        } else if up {
            x * 2.0
        } else {
            x / 2.0
        };
        format!("{v:e}")
    };
    if new == value {
        return None;
    }
    let text = &files[&file];
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[line_no] = lines[line_no].replacen(&value, &new, 1);
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    let mut next = files.clone();
    next.insert(file.clone(), out);
    Some((next, format!("{file}: {key} {value} → {new}")))
}

/// `key = number` (with an optional trailing comment) → (key, number).
fn numeric_assignment(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let value = rest.split('#').next()?.trim();
    value.parse::<f64>().ok().filter(|x| x.is_finite())?;
    Some((key, value))
}

/// Run the hook in a scratch copy of the baseline with the best files written in; the mutable
/// files it leaves are the proposal.
fn propose_with_hook(
    cmd: &str,
    baseline: &Path,
    best: &Files,
    mutable: &[String],
) -> Result<Option<(Files, String)>, AgentError> {
    let dir = tempfile::Builder::new().prefix("l402-agent-").tempdir()?;
    harness::copy_tree(baseline, dir.path())?;
    for (f, text) in best {
        std::fs::write(dir.path().join(f), text)?;
    }
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir.path())
        .status()?;
    if !status.success() {
        tracing::warn!(%cmd, ?status, "proposal hook failed");
        return Ok(None);
    }
    let files = read_mutable(dir.path(), mutable)?;
    Ok(Some((files, format!("hook: {cmd}"))))
}

/// The progress bar of `l402-node bounty agent`.
pub fn progress_bar(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("agent {bar:30} {pos}/{len} proposals {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutator_changes_one_number_and_keeps_comments() {
        let mut files = Files::new();
        files.insert(
            "train.toml".into(),
            "steps = 12          # AdamW steps\nlr = 0.0005 # rate\nname = \"x\"\n".into(),
        );
        files.insert("run.sh".into(), "exec x\n".into());
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for _ in 0..20 {
            let (next, change) = mutate(&files, &mut rng).unwrap();
            let t = &next["train.toml"];
            assert_eq!(next["run.sh"], "exec x\n");
            assert!(
                t.contains("# AdamW steps") && t.contains("name = \"x\""),
                "{t}"
            );
            let differing = t
                .lines()
                .zip(files["train.toml"].lines())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differing, 1, "{change}: {t}");
        }
        assert_eq!(numeric_assignment("a = -3 # x"), Some(("a", "-3")));
        assert_eq!(numeric_assignment("a = \"3\""), None);
    }
}
