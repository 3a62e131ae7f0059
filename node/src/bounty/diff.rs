//! An agent's diff to a bounty's baseline: checked against the bounty's rules before anything
//! touches the disk, then applied to a scratch copy of the baseline.
//!
//! A diff is a unified diff (what `git diff` or `diff -u` print) that only *modifies* files the
//! bounty lists as mutable. Everything else is refused with a typed [`DiffError`] before any
//! byte is written: a diff over the size cap, paths that leave the tree (`..`, absolute paths),
//! paths not in the mutable list, new, deleted or renamed files, mode changes (a symlink is a
//! mode change to 120000), binary patches and hunks that do not apply. Applying re-checks that
//! each target is a regular file inside the scratch tree (never follows a symlink).
//!
//! The file headers and hunk boundaries are split here (a `---` line inside a hunk is a removed
//! line, so the split counts hunk lines); each file's hunks are parsed and applied by `diffy`.
//!
//! Spec: specs/L2T-13-bounties.md#diffs

use std::collections::BTreeSet;
use std::path::{Component, Path};

/// Largest baseline file a diff may modify.
pub const MAX_MUTABLE_FILE_BYTES: u64 = 1 << 20;

/// Why a diff is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DiffError {
    /// Larger than the bounty's cap.
    #[error("diff is {size} bytes, over the bounty's cap of {cap}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Not UTF-8 text.
    #[error("diff is not UTF-8 text")]
    NotText,
    /// Changes nothing.
    #[error("diff changes no file")]
    Empty,
    /// Not a unified diff at this line (1-based).
    #[error("diff line {line}: {why}")]
    Malformed {
        /// Line number.
        line: usize,
        /// What was expected.
        why: String,
    },
    /// A path leaves the tree (`..`, absolute, or a backslash).
    #[error("path {0:?} leaves the tree")]
    Traversal(String),
    /// A path the bounty does not list as mutable.
    #[error("path {0:?} is not one of the bounty's mutable files")]
    NotMutable(String),
    /// Creates, deletes, renames or copies a file.
    #[error(
        "diff creates, deletes, renames or copies {0:?}; only modifying mutable files is allowed"
    )]
    NotAModification(String),
    /// Changes a file's mode (a symlink is mode 120000).
    #[error("diff changes a file mode ({0}); symlinks and mode changes are refused")]
    ModeChange(String),
    /// A binary patch.
    #[error("binary patches are refused")]
    Binary,
    /// The same file twice.
    #[error("diff touches {0:?} twice")]
    Duplicate(String),
    /// A target is not a regular file in the tree (a symlink, a directory, missing, too big).
    #[error("target {path:?} is not a regular file of the tree: {why}")]
    BadTarget {
        /// Path.
        path: String,
        /// What it is.
        why: String,
    },
    /// The hunks do not apply to the baseline.
    #[error("diff does not apply to {0:?}")]
    DoesNotApply(String),
    /// Reading or writing the scratch tree failed.
    #[error("scratch tree: {0}")]
    Io(String),
}

/// One file's part of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDiff {
    /// Path relative to the tree root (one of the mutable files).
    pub path: String,
    /// Its single-file unified diff (`---`/`+++` headers and hunks).
    pub patch: String,
}

/// Check `diff` against the bounty's rules: size, text, headers, paths, hunk structure.
pub fn parse(diff: &[u8], mutable: &[String], size_cap: u64) -> Result<Vec<FileDiff>, DiffError> {
    if diff.len() as u64 > size_cap {
        return Err(DiffError::TooLarge {
            size: diff.len() as u64,
            cap: size_cap,
        });
    }
    let text = std::str::from_utf8(diff).map_err(|_| DiffError::NotText)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let malformed = |i: usize, why: &str| DiffError::Malformed {
        line: i + 1,
        why: why.to_owned(),
    };
    let mut out: Vec<FileDiff> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end_matches(['\n', '\r']);
        if line.starts_with("diff --git ") || line.starts_with("index ") || line.is_empty() {
            i += 1;
            continue;
        }
        if line.starts_with("Binary files ") || line.starts_with("GIT binary patch") {
            return Err(DiffError::Binary);
        }
        for p in [
            "old mode ",
            "new mode ",
            "new file mode ",
            "deleted file mode ",
        ] {
            if let Some(mode) = line.strip_prefix(p) {
                return Err(if p.starts_with("new file") || p.starts_with("deleted") {
                    if mode.starts_with("120") {
                        DiffError::ModeChange(mode.to_owned())
                    } else {
                        DiffError::NotAModification(mode.to_owned())
                    }
                } else {
                    DiffError::ModeChange(mode.to_owned())
                });
            }
        }
        for p in [
            "rename from ",
            "rename to ",
            "copy from ",
            "copy to ",
            "similarity index ",
            "dissimilarity index ",
        ] {
            if let Some(path) = line.strip_prefix(p) {
                return Err(DiffError::NotAModification(path.to_owned()));
            }
        }
        let Some(old) = line.strip_prefix("--- ") else {
            return Err(malformed(i, "expected a `--- ` file header"));
        };
        let new = lines
            .get(i + 1)
            .map(|l| l.trim_end_matches(['\n', '\r']))
            .and_then(|l| l.strip_prefix("+++ "))
            .ok_or_else(|| malformed(i + 1, "expected a `+++ ` file header"))?;
        let path = header_path(old, "a/")?;
        if header_path(new, "b/")? != path {
            return Err(DiffError::NotAModification(path));
        }
        check_path(&path, mutable)?;
        if !seen.insert(path.clone()) {
            return Err(DiffError::Duplicate(path));
        }
        let start = i;
        i += 2;
        let mut hunks = 0;
        while let Some(h) = lines.get(i).filter(|l| l.starts_with("@@")) {
            let (mut old_n, mut new_n) =
                hunk_counts(h).ok_or_else(|| malformed(i, "bad hunk header"))?;
            i += 1;
            hunks += 1;
            while old_n > 0 || new_n > 0 {
                let l = lines
                    .get(i)
                    .ok_or_else(|| malformed(i, "hunk is cut short"))?;
                match l.as_bytes().first() {
                    Some(b' ') | Some(b'\n') | Some(b'\r') if old_n > 0 && new_n > 0 => {
                        old_n -= 1;
                        new_n -= 1;
                    }
                    Some(b'-') if old_n > 0 => old_n -= 1,
                    Some(b'+') if new_n > 0 => new_n -= 1,
                    Some(b'\\') => {}
                    _ => return Err(malformed(i, "hunk line does not match its header's counts")),
                }
                i += 1;
            }
            while lines.get(i).is_some_and(|l| l.starts_with('\\')) {
                i += 1;
            }
        }
        if hunks == 0 {
            return Err(malformed(i, "file header without hunks"));
        }
        out.push(FileDiff {
            path,
            patch: lines[start..i].concat(),
        });
    }
    if out.is_empty() {
        return Err(DiffError::Empty);
    }
    Ok(out)
}

/// Apply checked `diffs` to the tree at `root` (a scratch copy of the baseline).
pub fn apply(root: &Path, diffs: &[FileDiff]) -> Result<(), DiffError> {
    let mut patched = Vec::with_capacity(diffs.len());
    for d in diffs {
        let target = root.join(&d.path);
        let bad = |why: &str| DiffError::BadTarget {
            path: d.path.clone(),
            why: why.to_owned(),
        };
        // Every ancestor inside the tree must be a real directory, and the target a regular file:
        // never follow a symlink out of the tree.
        let mut at = root.to_owned();
        for c in Path::new(&d.path).components() {
            at.push(c);
            let meta = std::fs::symlink_metadata(&at).map_err(|_| bad("missing"))?;
            if meta.file_type().is_symlink() {
                return Err(bad("a symlink"));
            }
            if at != target && !meta.is_dir() {
                return Err(bad("a parent is not a directory"));
            }
        }
        let meta = std::fs::symlink_metadata(&target).map_err(|_| bad("missing"))?;
        if !meta.is_file() {
            return Err(bad("not a regular file"));
        }
        if meta.len() > MAX_MUTABLE_FILE_BYTES {
            return Err(bad("larger than the mutable-file cap"));
        }
        let base = std::fs::read_to_string(&target).map_err(|_| bad("not UTF-8 text"))?;
        let patch = diffy::Patch::from_str(&d.patch)
            .map_err(|_| DiffError::DoesNotApply(d.path.clone()))?;
        let new =
            diffy::apply(&base, &patch).map_err(|_| DiffError::DoesNotApply(d.path.clone()))?;
        patched.push((target, new));
    }
    // All hunks applied in memory before the first write: a refused diff leaves the tree as it was.
    for (target, new) in patched {
        std::fs::write(&target, new).map_err(|e| DiffError::Io(e.to_string()))?;
    }
    Ok(())
}

/// The unified diff turning `old` into `new` at `path` (what the reference agent submits).
pub fn make(path: &str, old: &str, new: &str) -> String {
    diffy::DiffOptions::new()
        .set_original_filename(format!("a/{path}"))
        .set_modified_filename(format!("b/{path}"))
        .create_patch(old, new)
        .to_string()
}

fn header_path(h: &str, prefix: &str) -> Result<String, DiffError> {
    // `--- a/path<TAB>timestamp` (diff -u) or `--- a/path` (git).
    let raw = h.split('\t').next().unwrap_or(h).trim_end();
    if raw == "/dev/null" {
        return Err(DiffError::NotAModification(raw.to_owned()));
    }
    Ok(raw.strip_prefix(prefix).unwrap_or(raw).to_owned())
}

fn check_path(path: &str, mutable: &[String]) -> Result<(), DiffError> {
    let p = Path::new(path);
    if path.is_empty()
        || path.contains('\\')
        || path.contains('\0')
        || p.components().any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(DiffError::Traversal(path.to_owned()));
    }
    if !mutable.iter().any(|m| m == path) {
        return Err(DiffError::NotMutable(path.to_owned()));
    }
    Ok(())
}

/// `@@ -a[,b] +c[,d] @@` → (b, d), counts defaulting to 1.
fn hunk_counts(h: &str) -> Option<(u64, u64)> {
    let body = h.strip_prefix("@@ ")?;
    let end = body.find(" @@")?;
    let mut parts = body[..end].split(' ');
    let count = |s: &str, sign: char| -> Option<u64> {
        let s = s.strip_prefix(sign)?;
        match s.split_once(',') {
            Some((start, n)) => {
                start.parse::<u64>().ok()?;
                n.parse().ok()
            }
            None => s.parse::<u64>().ok().map(|_| 1),
        }
    };
    let old = count(parts.next()?, '-')?;
    let new = count(parts.next()?, '+')?;
    if parts.next().is_some() {
        return None;
    }
    Some((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutable() -> Vec<String> {
        vec!["train.toml".into(), "run.sh".into()]
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("train.toml"),
            "lr = 0.001\nsteps = 20\n-- x\n",
        )
        .unwrap();
        std::fs::write(d.path().join("run.sh"), "echo one\n").unwrap();
        d
    }

    #[test]
    fn made_diffs_round_trip_and_a_removed_dashes_line_is_not_a_header() {
        let d = tree();
        let old = std::fs::read_to_string(d.path().join("train.toml")).unwrap();
        let new = "lr = 0.003\nsteps = 20\n".to_owned();
        let mut diff = make("train.toml", &old, &new);
        diff.push_str(&make("run.sh", "echo one\n", "echo two\n"));
        assert!(diff.contains("\n--- x\n"), "{diff}");
        let files = parse(diff.as_bytes(), &mutable(), 4096).unwrap();
        assert_eq!(files.len(), 2);
        apply(d.path(), &files).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("train.toml")).unwrap(),
            new
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("run.sh")).unwrap(),
            "echo two\n"
        );
    }

    #[test]
    fn refusals_are_typed() {
        let m = mutable();
        let hunk = "@@ -1 +1 @@\n-a\n+b\n";
        let p = |s: String| parse(s.as_bytes(), &m, 4096);
        assert_eq!(
            p(format!(
                "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n{hunk}"
            )),
            Err(DiffError::Traversal("../../etc/passwd".into()))
        );
        assert_eq!(
            p(format!("--- /etc/passwd\n+++ /etc/passwd\n{hunk}")),
            Err(DiffError::Traversal("/etc/passwd".into()))
        );
        assert_eq!(
            p(format!("--- a/harness.rs\n+++ b/harness.rs\n{hunk}")),
            Err(DiffError::NotMutable("harness.rs".into()))
        );
        assert_eq!(
            p(format!("diff --git a/run.sh b/run.sh\nnew file mode 120000\n--- /dev/null\n+++ b/run.sh\n{hunk}")),
            Err(DiffError::ModeChange("120000".into()))
        );
        assert_eq!(
            p(format!("--- /dev/null\n+++ b/run.sh\n{hunk}")),
            Err(DiffError::NotAModification("/dev/null".into()))
        );
        assert_eq!(
            p("diff --git a/x b/x\nBinary files a/x and b/x differ\n".into()),
            Err(DiffError::Binary)
        );
        assert_eq!(
            p(format!(
                "--- a/run.sh\n+++ b/run.sh\n{hunk}--- a/run.sh\n+++ b/run.sh\n{hunk}"
            )),
            Err(DiffError::Duplicate("run.sh".into()))
        );
        assert!(matches!(
            p("--- a/run.sh\n+++ b/run.sh\n@@ -1,3 +1,1 @@\n-a\n".into()),
            Err(DiffError::Malformed { .. })
        ));
        assert_eq!(p(String::new()), Err(DiffError::Empty));
        assert_eq!(
            parse(&[b'x'; 100], &m, 99),
            Err(DiffError::TooLarge { size: 100, cap: 99 })
        );
    }

    #[test]
    fn apply_never_follows_a_symlink_and_is_all_or_nothing() {
        let d = tree();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "a\n").unwrap();
        std::fs::remove_file(d.path().join("run.sh")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("run.sh")).unwrap();
        let diff = make("run.sh", "a\n", "b\n");
        let files = parse(diff.as_bytes(), &mutable(), 4096).unwrap();
        assert!(matches!(
            apply(d.path(), &files),
            Err(DiffError::BadTarget { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "a\n"
        );

        let d = tree();
        let mut diff = make(
            "train.toml",
            "lr = 0.001\nsteps = 20\n-- x\n",
            "lr = 1\nsteps = 20\n-- x\n",
        );
        diff.push_str(&make("run.sh", "not the baseline\n", "b\n"));
        let files = parse(diff.as_bytes(), &mutable(), 4096).unwrap();
        assert_eq!(
            apply(d.path(), &files),
            Err(DiffError::DoesNotApply("run.sh".into()))
        );
        assert!(std::fs::read_to_string(d.path().join("train.toml"))
            .unwrap()
            .starts_with("lr = 0.001"));
    }
}
