//! The sandbox a validator runs a bounty candidate's code in: bubblewrap (`bwrap`) with every
//! namespace unshared (so no network), all capabilities dropped, an unprivileged uid, a tree of
//! read-only system directories plus one writable scratch directory, and caps on CPU time,
//! address space, file size, processes, wall time and captured output.
//!
//! Where bubblewrap is missing or cannot create its namespaces, [`Isolation::detect`] refuses
//! ([`SandboxError::Unavailable`]) unless the operator passed the override
//! ([`Policy::AllowUnsandboxed`]): then the command runs bare with the same resource caps, which
//! contain loops, fork bombs and memory hogs but not reads or network access, so only for code
//! the operator trusts.
//!
//! Why not a crate: the sandboxing crates on crates.io wrap seccomp or landlock, not the
//! namespaces bubblewrap sets up; the design (DESIGN.md §10) names Debian's `bubblewrap`, so this
//! module builds its command line and applies the rlimits in `pre_exec`.
//!
//! Spec: specs/L2T-13-bounties.md#sandbox

// The only unsafe code of the node: setrlimit(2) between fork and exec, kill(2) of our own
// child's process group and getuid(2), each with its SAFETY note.
#![allow(unsafe_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the scratch directory appears inside the sandbox (also its working directory).
pub const SANDBOX_WORKDIR: &str = "/work";
/// The uid and gid candidate code runs as inside the sandbox (`nobody`).
const SANDBOX_ID: &str = "65534";

/// Resource caps of one sandboxed command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// CPU seconds per process (`RLIMIT_CPU`; SIGXCPU, then SIGKILL).
    pub cpu_secs: u64,
    /// Wall time of the whole command; the sandbox is killed after it.
    pub wall_secs: u64,
    /// Address space per process in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Largest file a process may write, in bytes (`RLIMIT_FSIZE`).
    pub file_bytes: u64,
    /// Processes the command may run at once besides the ones its uid already has
    /// (`RLIMIT_NPROC`, which counts per real uid).
    pub processes: u64,
    /// Bytes of stdout and of stderr kept (the rest is read and dropped).
    pub output_bytes: usize,
}

impl Default for Limits {
    /// What the example bounty's evaluation needs, with room: 60 CPU-s, 120 s wall, 2 GiB,
    /// 256 MiB files, 64 processes, 64 KiB of each output stream.
    fn default() -> Self {
        Self {
            cpu_secs: 60,
            wall_secs: 120,
            memory_bytes: 2 << 30,
            file_bytes: 256 << 20,
            processes: 64,
            output_bytes: 64 << 10,
        }
    }
}

/// Whether untrusted code may run without bubblewrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Refuse when bubblewrap is unavailable (the default).
    RequireBubblewrap,
    /// The operator's override: run bare, with the resource caps only.
    AllowUnsandboxed,
}

/// How commands are isolated on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// bubblewrap at this path, probed to work.
    Bubblewrap(PathBuf),
    /// No isolation besides the resource caps (only with [`Policy::AllowUnsandboxed`]).
    Unsandboxed,
}

/// Why a command could not be run (not: why it failed; see [`Exit`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// No working bubblewrap, and the policy requires it.
    #[error("bubblewrap is unavailable ({why}); refusing to run untrusted code (install Debian's `bubblewrap`, or pass --allow-unsandboxed for code you trust)")]
    Unavailable {
        /// What the probe saw.
        why: String,
    },
    /// The scratch directory or a read-only bind does not exist.
    #[error("sandbox path {0} does not exist")]
    MissingPath(PathBuf),
    /// Spawning or waiting failed.
    #[error("sandbox process: {0}")]
    Io(#[from] std::io::Error),
}

/// How a sandboxed command ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal (SIGXCPU/SIGKILL after the CPU cap, SIGSEGV, …).
    Signal(i32),
    /// Still running at the wall-time cap; killed.
    WallTimeout,
}

/// What a sandboxed command did.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// The first [`Limits::output_bytes`] of stdout (lossy UTF-8). Never read for a metric.
    pub stdout: String,
    /// The first [`Limits::output_bytes`] of stderr (lossy UTF-8).
    pub stderr: String,
    /// Whether either stream was longer than the cap.
    pub output_truncated: bool,
    /// Wall time.
    pub wall_ms: u64,
}

impl Outcome {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }
}

/// One command to run: `sh -c command` in `scratch` (mounted read-write at [`SANDBOX_WORKDIR`]).
#[derive(Clone, Debug)]
pub struct Job<'a> {
    /// The writable scratch directory (the candidate's tree).
    pub scratch: &'a Path,
    /// The shell command.
    pub command: &'a str,
    /// Extra read-only files or directories: (host path, path inside the sandbox).
    pub ro_binds: Vec<(PathBuf, PathBuf)>,
    /// Environment (the sandbox starts from an empty one plus `PATH` and `HOME`).
    pub env: Vec<(String, String)>,
}

impl Isolation {
    /// bubblewrap if it is on `PATH` (or at `L402_BWRAP`) and can start a sandbox here; else
    /// what `policy` allows.
    pub fn detect(policy: Policy) -> Result<Self, SandboxError> {
        let candidate = match std::env::var_os("L402_BWRAP") {
            Some(p) => Some(PathBuf::from(p)),
            None => find_on_path("bwrap"),
        };
        Self::detect_at(candidate, policy)
    }

    /// [`Isolation::detect`] with bubblewrap at `candidate` (`None`: not installed).
    pub fn detect_at(candidate: Option<PathBuf>, policy: Policy) -> Result<Self, SandboxError> {
        let probed = candidate
            .ok_or_else(|| "bwrap is not on PATH".to_owned())
            .and_then(probe_bwrap);
        match probed {
            Ok(path) => Ok(Self::Bubblewrap(path)),
            Err(why) => match policy {
                Policy::AllowUnsandboxed => {
                    tracing::warn!(%why, "bubblewrap unavailable; running candidates UNSANDBOXED (operator override)");
                    Ok(Self::Unsandboxed)
                }
                Policy::RequireBubblewrap => Err(SandboxError::Unavailable { why }),
            },
        }
    }

    /// Whether commands run inside bubblewrap.
    pub fn is_sandboxed(&self) -> bool {
        matches!(self, Self::Bubblewrap(_))
    }

    /// Run `job` under `limits`.
    pub fn run(&self, job: &Job<'_>, limits: &Limits) -> Result<Outcome, SandboxError> {
        if !job.scratch.is_dir() {
            return Err(SandboxError::MissingPath(job.scratch.to_owned()));
        }
        for (host, _) in &job.ro_binds {
            if !host.exists() {
                return Err(SandboxError::MissingPath(host.clone()));
            }
        }
        let mut cmd = match self {
            Self::Bubblewrap(bwrap) => bwrap_command(bwrap, job),
            Self::Unsandboxed => {
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(job.command).current_dir(job.scratch);
                c.env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .env("HOME", job.scratch);
                for (k, v) in &job.env {
                    c.env(k, v);
                }
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let nproc = processes_of_current_uid().saturating_add(limits.processes);
        let rl = *limits;
        let cgroup = PidsCgroup::create(limits.processes);
        if cgroup.is_none() {
            tracing::debug!("no writable pids cgroup; the process cap is RLIMIT_NPROC only");
        }
        let procs = cgroup.as_ref().map(|c| c.procs.clone());
        // SAFETY: only async-signal-safe calls (open/write/close, setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(p) = &procs {
                    PidsCgroup::enter(p)?;
                }
                apply_rlimits(&rl, nproc)
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let cap = limits.output_bytes;
        let out = child.stdout.take().map(|s| capped_reader(s, cap));
        let err = child.stderr.take().map(|s| capped_reader(s, cap));
        let deadline = started + Duration::from_secs(limits.wall_secs);
        let exit = loop {
            if let Some(status) = child.try_wait()? {
                break exit_of(status);
            }
            if Instant::now() >= deadline {
                // bwrap runs with --die-with-parent, so killing its process group tears the
                // sandbox's pid namespace (and every process in it) down.
                // SAFETY: plain kill(2) on our own child's process group.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                break Exit::WallTimeout;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // Whatever the command left running in its process group (a background job of a bare
        // run; in bubblewrap the pid namespace is already gone) dies with it, and so does
        // anything left in the cgroup.
        // SAFETY: plain kill(2) on our own child's process group.
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGKILL);
        }
        drop(cgroup);
        // A process that escaped the group (setsid in a bare run) may still hold the pipes: wait
        // for the readers briefly, then keep what they have read.
        let grace = Instant::now() + OUTPUT_GRACE;
        let (stdout, t1) = collect(out, grace);
        let (stderr, t2) = collect(err, grace);
        Ok(Outcome {
            exit,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            output_truncated: t1 || t2,
            wall_ms: started.elapsed().as_millis() as u64,
        })
    }
}

fn bwrap_command(bwrap: &Path, job: &Job<'_>) -> Command {
    let mut c = Command::new(bwrap);
    c.args(["--unshare-all", "--die-with-parent", "--new-session"])
        .args([
            "--uid",
            SANDBOX_ID,
            "--gid",
            SANDBOX_ID,
            "--cap-drop",
            "ALL",
        ])
        .arg("--clearenv")
        .args(["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"])
        .args(["--setenv", "HOME", SANDBOX_WORKDIR]);
    // System binaries and libraries only: nothing of the validator's home, data dir or held-out
    // set exists inside.
    for dir in ["/usr", "/etc/alternatives"] {
        if Path::new(dir).exists() {
            c.args(["--ro-bind", dir, dir]);
        }
    }
    for link in ["bin", "sbin", "lib", "lib64", "lib32"] {
        let host = Path::new("/").join(link);
        match std::fs::read_link(&host) {
            Ok(target) => {
                c.arg("--symlink").arg(target).arg(&host);
            }
            Err(_) if host.is_dir() => {
                c.arg("--ro-bind").arg(&host).arg(&host);
            }
            Err(_) => {}
        }
    }
    c.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
    for (host, inside) in &job.ro_binds {
        c.arg("--ro-bind").arg(host).arg(inside);
    }
    c.arg("--bind")
        .arg(job.scratch)
        .arg(SANDBOX_WORKDIR)
        .args(["--chdir", SANDBOX_WORKDIR]);
    for (k, v) in &job.env {
        c.arg("--setenv").arg(k).arg(v);
    }
    c.args(["--", "/bin/sh", "-c", job.command]);
    c
}

fn apply_rlimits(l: &Limits, nproc: u64) -> std::io::Result<()> {
    let set = |res, soft: u64, hard: u64| {
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit with a valid pointer to a local struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SIGXCPU at the soft limit (the shell reports "CPU time limit exceeded"), SIGKILL a second
    // later.
    set(libc::RLIMIT_CPU, l.cpu_secs, l.cpu_secs + 1)?;
    set(libc::RLIMIT_AS, l.memory_bytes, l.memory_bytes)?;
    set(libc::RLIMIT_FSIZE, l.file_bytes, l.file_bytes)?;
    set(libc::RLIMIT_NPROC, nproc, nproc)?;
    set(libc::RLIMIT_CORE, 0, 0)?;
    Ok(())
}

/// A pids cgroup holding the sandbox: the process cap that holds inside user namespaces (where
/// `RLIMIT_NPROC` is counted per namespace and a fork bomb gets past it). Created under our
/// own cgroup, in the v1 `pids` hierarchy or in the unified (v2) one, where we may write; when
/// neither is writable the sandbox falls back to `RLIMIT_NPROC` alone.
#[derive(Debug)]
struct PidsCgroup {
    dir: PathBuf,
    /// `<dir>/cgroup.procs` as a C string, for the `pre_exec` write.
    procs: std::ffi::CString,
}

impl PidsCgroup {
    fn create(max: u64) -> Option<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let name = format!(
            "l402-sandbox-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let v1 = own.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctl, path) = (it.next()?, it.next()?, it.next()?);
            ctl.split(',')
                .any(|c| c == "pids")
                .then(|| Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/')))
        });
        let v2 = own.lines().find_map(|l| {
            l.strip_prefix("0::")
                .map(|p| Path::new("/sys/fs/cgroup").join(p.trim_start_matches('/')))
        });
        for parent in v1.into_iter().chain(v2) {
            let dir = parent.join(&name);
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            let ok = std::fs::write(dir.join("pids.max"), max.to_string()).is_ok();
            let procs =
                std::ffi::CString::new(dir.join("cgroup.procs").as_os_str().as_encoded_bytes())
                    .ok();
            match (ok, procs) {
                (true, Some(procs)) => return Some(Self { dir, procs }),
                _ => {
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        None
    }

    /// In the child before exec: move ourselves in (writing "0" moves the writer).
    fn enter(procs: &std::ffi::CStr) -> std::io::Result<()> {
        // SAFETY: open/write/close on a valid C string and a 1-byte buffer; async-signal-safe.
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if n != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Anything still inside (there should be nothing once the pid namespace is gone) is
        // killed before the group is removed.
        for _ in 0..100 {
            let pids = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: kill(2) of a process in our own sandbox cgroup.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %e, "could not remove the sandbox cgroup");
        }
    }
}

/// Processes (threads count too) of our real uid: `RLIMIT_NPROC` counts them all, so the cap is
/// this plus [`Limits::processes`].
fn processes_of_current_uid() -> u64 {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0u64;
    for e in dir.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(1);
        if real == Some(uid) {
            n += threads;
        }
    }
    n
}

/// How long the output readers may take after the command ended.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What a reader has kept so far: (bytes, truncated, done).
type Captured = std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool, bool)>>;

fn capped_reader<R: Read + Send + 'static>(mut r: R, cap: usize) -> Captured {
    let shared: Captured = Default::default();
    let mine = shared.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut g = mine.lock().unwrap_or_else(|p| p.into_inner());
            let room = cap.saturating_sub(g.0.len());
            g.0.extend_from_slice(&buf[..n.min(room)]);
            g.1 |= n > room;
        }
        mine.lock().unwrap_or_else(|p| p.into_inner()).2 = true;
    });
    shared
}

/// The reader's bytes once it is done, or at `until`, whichever comes first.
fn collect(c: Option<Captured>, until: Instant) -> (Vec<u8>, bool) {
    let Some(c) = c else {
        return (Vec::new(), false);
    };
    loop {
        let g = c.lock().unwrap_or_else(|p| p.into_inner());
        if g.2 || Instant::now() >= until {
            return (g.0.clone(), g.1 || !g.2);
        }
        drop(g);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        (None, None) => Exit::Code(-1),
    }
}

fn probe_bwrap(path: PathBuf) -> Result<PathBuf, String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("probe scratch: {e}"))?;
    let job = Job {
        scratch: scratch.path(),
        command: "exit 0",
        ro_binds: Vec::new(),
        env: Vec::new(),
    };
    let out = Isolation::Bubblewrap(path.clone())
        .run(
            &job,
            &Limits {
                wall_secs: 20,
                ..Limits::default()
            },
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !out.success() {
        return Err(format!(
            "{} cannot start a sandbox here ({:?}): {}",
            path.display(),
            out.exit,
            out.stderr.trim()
        ));
    }
    Ok(path)
}

/// The first executable file `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bwrap() -> Isolation {
        Isolation::detect(Policy::RequireBubblewrap).expect("bubblewrap (.ci/run installs it)")
    }

    fn run(cmd: &str, limits: Limits) -> (Outcome, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let job = Job {
            scratch: dir.path(),
            command: cmd,
            ro_binds: Vec::new(),
            env: vec![("GREETING".into(), "hi".into())],
        };
        (bwrap().run(&job, &limits).unwrap(), dir)
    }

    #[test]
    fn runs_in_the_scratch_dir_as_nobody_with_a_clean_env() {
        let (out, dir) = run(
            "echo $GREETING; id -u; pwd; echo x > made; ls /; echo ${SECRET:-none}",
            Limits::default(),
        );
        assert!(out.success(), "{out:?}");
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(&lines[..3], &["hi", "65534", "/work"]);
        assert_eq!(lines.last(), Some(&"none"));
        assert!(
            !out.stdout.contains("root\n"),
            "host / is not visible: {}",
            out.stdout
        );
        assert!(dir.path().join("made").exists());
    }

    #[test]
    fn wall_cap_kills_a_loop_and_output_is_capped() {
        let (out, _d) = run(
            "yes spam; while :; do :; done",
            Limits {
                wall_secs: 1,
                cpu_secs: 30,
                output_bytes: 1000,
                ..Limits::default()
            },
        );
        assert_eq!(out.exit, Exit::WallTimeout);
        assert!(out.output_truncated);
        assert_eq!(out.stdout.len(), 1000);
    }

    #[test]
    fn a_background_job_does_not_outlive_the_command_or_hold_the_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job {
            scratch: dir.path(),
            command: "sleep 30 & echo started",
            ro_binds: Vec::new(),
            env: Vec::new(),
        };
        for iso in [bwrap(), Isolation::Unsandboxed] {
            let t = Instant::now();
            let out = iso.run(&job, &Limits::default()).unwrap();
            assert!(out.success(), "{out:?}");
            assert_eq!(out.stdout, "started\n");
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{iso:?}: {:?}",
                t.elapsed()
            );
        }
    }

    #[test]
    fn unsandboxed_is_refused_without_the_override() {
        let missing = || Some(PathBuf::from("/nonexistent/bwrap"));
        let refused = Isolation::detect_at(missing(), Policy::RequireBubblewrap);
        let allowed = Isolation::detect_at(missing(), Policy::AllowUnsandboxed);
        assert!(matches!(
            Isolation::detect_at(None, Policy::RequireBubblewrap),
            Err(SandboxError::Unavailable { .. })
        ));
        assert!(matches!(refused, Err(SandboxError::Unavailable { .. })));
        assert_eq!(allowed.unwrap(), Isolation::Unsandboxed);
    }
}
