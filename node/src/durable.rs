//! Atomic, durable file writes: write a temporary file, fsync it, rename it over the target,
//! fsync the directory. A crash leaves either the old or the new contents, never a torn file.
//! (std has no such call and the pinned crates do not export one for plain files.)

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Suffix of the temporary file of an interrupted write; stores delete these on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// Durably replace `dir/name` with `bytes`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Durably remove `dir/name` (absent is fine).
pub fn remove(dir: &Path, name: &str) -> std::io::Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => fs::File::open(dir).and_then(|d| d.sync_all()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The files of a one-file-per-record store: every `dir/<stem><suffix>`, as `(stem, path)` in
/// name order. Temporary files of interrupted writes (`*` + [`TMP_SUFFIX`]) are deleted first;
/// anything else is skipped. An error names the path it happened on.
pub fn entries(
    dir: &Path,
    suffix: &str,
) -> Result<Vec<(String, PathBuf)>, (PathBuf, std::io::Error)> {
    fn at(p: &Path) -> impl FnOnce(std::io::Error) -> (PathBuf, std::io::Error) + '_ {
        move |e| (p.to_path_buf(), e)
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(at(dir))? {
        let path = entry.map_err(at(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            fs::remove_file(&path).map_err(at(&path))?;
            continue;
        }
        if let Some(stem) = name.strip_suffix(suffix) {
            out.push((stem.to_owned(), path.clone()));
        }
    }
    out.sort();
    Ok(out)
}
