//! Atomic, durable file writes: write a temporary file, fsync it, rename it over the target,
//! fsync the directory. A crash leaves either the old or the new contents, never a torn file.
//! (std has no such call and the pinned crates do not export one for plain files.)

use std::fs;
use std::io::Write;
use std::path::Path;

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
