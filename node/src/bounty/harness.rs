//! A validator's two-phase evaluation of one bounty candidate, and the exploit log.
//!
//! 1. **Candidate phase**: copy the baseline into a fresh scratch tree, check and apply the
//!    agent's diff ([`super::diff`]), and run the bounty's command in the [`super::sandbox`]. The
//!    held-out set is not in the sandbox, and nothing the candidate prints is read as a result.
//! 2. **Harness phase**: the validator's own [`Harness`] reads the artifact the candidate left
//!    (a regular file inside the tree, never through a symlink, under a size cap) and scores it
//!    on the eval set. The metric is the median of the harness's samples.
//!
//! Everything suspicious an evaluation shows (a refused diff, a cap hit, a denied write or
//! connection, a refused artifact, a claim the harness does not reproduce) is an
//! [`ExploitClass`]; [`ExploitLog`] appends them to the public log of exploits tried and refused.
//!
//! Spec: specs/L2T-13-bounties.md#evaluation

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::diff::{self, DiffError};
use super::sandbox::{Exit, Isolation, Job, Limits, Outcome, SandboxError};

/// A bounty's scoring code, run by the validator outside the sandbox.
pub trait Harness {
    /// The artifact's path relative to the candidate's tree.
    fn artifact(&self) -> &str;
    /// Largest artifact read.
    fn max_artifact_bytes(&self) -> u64;
    /// Score `artifact` on `eval`: one metric sample (millionths) per slice.
    fn score(&self, artifact: &[u8], eval: &[u8]) -> Result<Vec<i64>, ArtifactError>;
}

/// Why an artifact is not scored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ArtifactError {
    /// The candidate left no artifact.
    #[error("no artifact at {0}")]
    Missing(String),
    /// The artifact (or a directory on its path) is a symlink or not a regular file.
    #[error("artifact path {0} is a symlink or not a regular file")]
    NotRegular(String),
    /// Over the harness's cap.
    #[error("artifact is {size} bytes, over the cap of {cap}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Not what the harness scores.
    #[error("artifact rejected: {0}")]
    Malformed(String),
}

/// What one evaluation needs besides the diff and the eval set.
#[derive(Clone, Debug)]
pub struct Bench {
    /// The baseline tree (the current leader's tree once improvements stack).
    pub baseline: PathBuf,
    /// Files agents may change.
    pub mutable_files: Vec<String>,
    /// Largest diff.
    pub diff_cap: u64,
    /// The candidate phase's command.
    pub command: String,
    /// Read-only binds into the sandbox: (host path, sandbox path).
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
    /// Environment of the candidate phase.
    pub env: Vec<(String, String)>,
    /// Caps of the candidate phase.
    pub limits: Limits,
}

/// Something an evaluation showed that the exploit log records.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExploitClass {
    /// The diff broke the bounty's rules (path traversal, symlink, non-mutable file, size…).
    DiffRefused {
        /// Which rule.
        error: DiffError,
    },
    /// Killed at the wall-time cap (an endless loop, a stall).
    WallTimeout,
    /// Killed at the CPU-time cap.
    CpuLimit,
    /// Hit the process cap (a fork bomb).
    ProcessLimit,
    /// Hit the address-space cap (memory exhaustion).
    MemoryLimit,
    /// Tried the network (there is none in the sandbox).
    NetworkDenied,
    /// Tried to write outside its scratch tree (the system tree is read-only).
    WriteDenied,
    /// Printed more than the output cap.
    OutputFlood,
    /// The candidate phase failed otherwise.
    CandidateFailed {
        /// How it ended.
        exit: Exit,
    },
    /// The artifact was refused (a symlink out of the tree, oversize, malformed).
    ArtifactRefused {
        /// Why.
        error: ArtifactError,
    },
    /// The agent claimed a better metric than the harness measured.
    ClaimNotReproduced {
        /// What the reveal claimed.
        claimed: i64,
        /// What the harness measured (`None`: nothing to score).
        measured: Option<i64>,
    },
}

/// One candidate's evaluation.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// BLAKE3 of the diff (hex; of the empty diff for the baseline).
    pub diff_hash: String,
    /// Median of the harness's samples, if the artifact was scored.
    pub metric: Option<i64>,
    /// The harness's samples.
    pub samples: Vec<i64>,
    /// The candidate phase, if it ran.
    pub candidate: Option<Outcome>,
    /// Whether it ran inside bubblewrap.
    pub sandboxed: bool,
    /// What the exploit log records (empty for a clean run).
    pub exploits: Vec<ExploitClass>,
}

impl Evaluation {
    /// Record `claimed` against the measurement: a claim better than measured (by more than
    /// `tolerance`, in `direction_sign` units: −1 when lower is better) is an exploit class.
    pub fn check_claim(&mut self, claimed: i64, lower_is_better: bool, tolerance: i64) {
        let better = |a: i64, b: i64| {
            if lower_is_better {
                a + tolerance < b
            } else {
                a > b + tolerance
            }
        };
        let reproduced = self.metric.is_some_and(|m| !better(claimed, m));
        if !reproduced {
            self.exploits.push(ExploitClass::ClaimNotReproduced {
                claimed,
                measured: self.metric,
            });
        }
    }
}

/// Run both phases for `diff` (`None`: the baseline itself) and score on `eval`.
///
/// Errors are the validator's own (no sandbox, no scratch space); everything the candidate
/// does wrong is in the returned [`Evaluation`].
pub fn evaluate(
    iso: &Isolation,
    bench: &Bench,
    harness: &dyn Harness,
    diff: Option<&[u8]>,
    eval: &[u8],
) -> Result<Evaluation, SandboxError> {
    let diff_hash = blake3::hash(diff.unwrap_or_default()).to_hex().to_string();
    let mut ev = Evaluation {
        diff_hash: diff_hash.clone(),
        metric: None,
        samples: Vec::new(),
        candidate: None,
        sandboxed: iso.is_sandboxed(),
        exploits: Vec::new(),
    };
    let scratch = tempfile::Builder::new()
        .prefix("l402-candidate-")
        .tempdir()?;
    copy_tree(&bench.baseline, scratch.path())?;
    if let Some(d) = diff {
        let applied = diff::parse(d, &bench.mutable_files, bench.diff_cap)
            .and_then(|files| diff::apply(scratch.path(), &files));
        if let Err(error) = applied {
            tracing::info!(diff = %diff_hash, %error, "diff refused");
            ev.exploits.push(ExploitClass::DiffRefused { error });
            return Ok(ev);
        }
    }
    let job = Job {
        scratch: scratch.path(),
        command: &bench.command,
        ro_binds: bench.ro_binds.clone(),
        env: bench.env.clone(),
    };
    let out = iso.run(&job, &bench.limits)?;
    tracing::info!(diff = %diff_hash, exit = ?out.exit, wall_ms = out.wall_ms, "candidate phase done");
    ev.exploits.extend(classify(&out));
    let ran = out.success();
    ev.candidate = Some(out);
    if !ran {
        return Ok(ev);
    }
    let scored = read_artifact(
        scratch.path(),
        harness.artifact(),
        harness.max_artifact_bytes(),
    )
    .and_then(|bytes| harness.score(&bytes, eval));
    match scored {
        Ok(mut samples) if !samples.is_empty() => {
            ev.samples = samples.clone();
            samples.sort_unstable();
            ev.metric = Some(samples[samples.len() / 2]);
        }
        Ok(_) => ev.exploits.push(ExploitClass::ArtifactRefused {
            error: ArtifactError::Malformed("no samples".into()),
        }),
        Err(error) => ev.exploits.push(ExploitClass::ArtifactRefused { error }),
    }
    Ok(ev)
}

/// What the candidate phase's exit and stderr show.
fn classify(out: &Outcome) -> Vec<ExploitClass> {
    let mut v = Vec::new();
    let err = out.stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| {
        needles
            .iter()
            .any(|n| err.contains(&n.to_ascii_lowercase()))
    };
    match out.exit {
        Exit::WallTimeout => v.push(ExploitClass::WallTimeout),
        Exit::Signal(s) if s == libc::SIGXCPU => v.push(ExploitClass::CpuLimit),
        Exit::Code(c) if c == 128 + libc::SIGXCPU => v.push(ExploitClass::CpuLimit),
        _ => {}
    }
    if has(&["CPU time limit exceeded"]) && !v.contains(&ExploitClass::CpuLimit) {
        v.push(ExploitClass::CpuLimit);
    }
    if has(&[
        "Cannot fork",
        "fork: Resource temporarily unavailable",
        "fork failed",
    ]) {
        v.push(ExploitClass::ProcessLimit);
    }
    if has(&[
        "Cannot allocate memory",
        "memory allocation of",
        "out of memory",
    ]) {
        v.push(ExploitClass::MemoryLimit);
    }
    if has(&[
        "Network is unreachable",
        "Connection refused",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Could not resolve",
    ]) {
        v.push(ExploitClass::NetworkDenied);
    }
    if has(&["Read-only file system", "Permission denied"]) {
        v.push(ExploitClass::WriteDenied);
    }
    if out.output_truncated {
        v.push(ExploitClass::OutputFlood);
    }
    if !out.success() && v.is_empty() {
        v.push(ExploitClass::CandidateFailed {
            exit: out.exit.clone(),
        });
    }
    v
}

/// Read `rel` under `root`: every component a real directory or (last) a regular file, never
/// a symlink, at most `cap` bytes.
pub fn read_artifact(root: &Path, rel: &str, cap: u64) -> Result<Vec<u8>, ArtifactError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut at = root.to_owned();
    let comps: Vec<_> = Path::new(rel).components().collect();
    for (i, c) in comps.iter().enumerate() {
        at.push(c);
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(_) => return Err(ArtifactError::Missing(rel.to_owned())),
        };
        let last = i + 1 == comps.len();
        if meta.file_type().is_symlink() || (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return Err(ArtifactError::NotRegular(rel.to_owned()));
        }
        if last && meta.len() > cap {
            return Err(ArtifactError::TooLarge {
                size: meta.len(),
                cap,
            });
        }
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&at)
        .map_err(|_| ArtifactError::NotRegular(rel.to_owned()))?;
    let mut bytes = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ArtifactError::Malformed(e.to_string()))?;
    if bytes.len() as u64 > cap {
        return Err(ArtifactError::TooLarge {
            size: bytes.len() as u64,
            cap,
        });
    }
    Ok(bytes)
}

/// Copy the regular files and directories of `from` into `to`; a symlink in the baseline is an
/// error (the sponsor's tree must not point outside itself).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ty.is_symlink() {
            return Err(std::io::Error::other(format!(
                "baseline contains a symlink: {}",
                entry.path().display()
            )));
        } else if ty.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_tree(&entry.path(), &dest)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// One line of the exploit log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExploitEntry {
    /// Unix seconds.
    pub time: u64,
    /// Bounty id.
    pub bounty: String,
    /// The agent's Nostr key (hex), if known.
    pub agent: Option<String>,
    /// BLAKE3 of the diff.
    pub diff_hash: String,
    /// What was tried and refused.
    pub classes: Vec<ExploitClass>,
    /// The tail of the candidate's stderr (at most 1 KiB), for the reader.
    pub stderr_tail: String,
}

impl ExploitEntry {
    /// The entry for `ev`, or `None` for a clean evaluation.
    pub fn of(ev: &Evaluation, bounty: &str, agent: Option<String>, time: u64) -> Option<Self> {
        if ev.exploits.is_empty() {
            return None;
        }
        let err = ev
            .candidate
            .as_ref()
            .map(|c| c.stderr.as_str())
            .unwrap_or("");
        let mut start = err.len().saturating_sub(1024);
        while !err.is_char_boundary(start) {
            start += 1;
        }
        Some(Self {
            time,
            bounty: bounty.to_owned(),
            agent,
            diff_hash: ev.diff_hash.clone(),
            classes: ev.exploits.clone(),
            stderr_tail: err[start..].to_owned(),
        })
    }
}

/// The public log of exploits tried and refused: JSON lines, append-only.
#[derive(Debug, Clone)]
pub struct ExploitLog {
    path: PathBuf,
}

impl ExploitLog {
    /// The log at `path` (created on the first record).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Append `entry` (one line, flushed and synced).
    pub fn record(&self, entry: &ExploitEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()
    }

    /// Every entry, oldest first (lines that do not parse are skipped with a warning).
    pub fn entries(&self) -> std::io::Result<Vec<ExploitEntry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .filter_map(|l| {
                serde_json::from_str(l)
                    .map_err(
                        |e| tracing::warn!(path = %self.path.display(), %e, "bad exploit-log line"),
                    )
                    .ok()
            })
            .collect())
    }
}
