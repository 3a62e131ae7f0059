//! The durable state of a node's role machines: one file per machine under
//! `<data_dir>/rounds/<hex(run)>/<round>-<role>.cbor`, holding exactly
//! [`Machine::to_bytes`](l402_protocol::round::Machine::to_bytes).
//!
//! The runtime writes a machine's file after every `handle` and before executing the actions
//! (the driver's persist-before-execute); on start it loads every file and resumes the machine.
//! A file that is too large or does not restore stops the node rather than losing track of an
//! escrow.

use std::fs;
use std::path::{Path, PathBuf};

use l402_protocol::events::RunId;
use l402_protocol::round::{MachineKey, Role, MAX_STATE_BYTES};

use crate::durable;

const SUFFIX: &str = ".cbor";

/// Errors of the machine store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A state file is larger than [`MAX_STATE_BYTES`].
    #[error("{0}: state file larger than {MAX_STATE_BYTES} bytes")]
    TooLarge(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One persisted machine found on start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its key.
    pub key: MachineKey,
    /// Its state.
    pub bytes: Vec<u8>,
}

/// The machine store of one node.
#[derive(Debug, Clone)]
pub struct MachineStore {
    dir: PathBuf,
}

impl MachineStore {
    /// Open (creating) `<data_dir>/rounds`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let dir = data_dir.join("rounds");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self { dir })
    }

    fn run_dir(&self, run: &RunId) -> PathBuf {
        self.dir.join(hex::encode(run.as_str()))
    }

    fn file_name(key: &MachineKey) -> String {
        format!("{}-{}{SUFFIX}", key.round, key.role.as_str())
    }

    /// Durably write machine `key`'s state.
    pub fn put(&self, key: &MachineKey, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.run_dir(&key.run);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        durable::write_atomic(&dir, &Self::file_name(key), bytes).map_err(io(&dir))
    }

    /// Forget a retired machine.
    pub fn remove(&self, key: &MachineKey) -> Result<(), StoreError> {
        let dir = self.run_dir(&key.run);
        durable::remove(&dir, &Self::file_name(key)).map_err(io(&dir))
    }

    /// Every stored machine, in key order. Temporary files of interrupted writes are deleted;
    /// files that are not ours are skipped.
    pub fn load(&self) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        for run_entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let run_dir = run_entry.map_err(io(&self.dir))?.path();
            let run = run_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| RunId::new(s).ok());
            let Some(run) = run else { continue };
            let files = durable::entries(&run_dir, SUFFIX).map_err(|(p, e)| io(&p)(e))?;
            for (stem, path) in files {
                let Some((round, role)) = stem
                    .split_once('-')
                    .and_then(|(r, role)| Some((r.parse::<u64>().ok()?, Role::parse(role)?)))
                else {
                    continue;
                };
                let len = fs::metadata(&path).map_err(io(&path))?.len();
                if len > MAX_STATE_BYTES as u64 {
                    return Err(StoreError::TooLarge(path));
                }
                let bytes = fs::read(&path).map_err(io(&path))?;
                let key = MachineKey {
                    run: run.clone(),
                    round,
                    role,
                };
                out.push(Stored { key, bytes });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_reopen_torn_writes_are_dropped_and_oversize_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = MachineStore::open(dir.path()).unwrap();
        let key = |round, role| MachineKey {
            run: RunId::new("run.1").unwrap(),
            round,
            role,
        };
        s.put(&key(2, Role::Peer), b"peer-state").unwrap();
        s.put(&key(2, Role::Peer), b"peer-state-2").unwrap();
        s.put(&key(1, Role::Validator), b"v").unwrap();
        let run_dir = s.run_dir(&RunId::new("run.1").unwrap());
        fs::write(run_dir.join("3-peer.cbor.tmp"), b"torn").unwrap();
        fs::write(run_dir.join("README"), b"not ours").unwrap();
        let s = MachineStore::open(dir.path()).unwrap();
        let got = s.load().unwrap();
        assert_eq!(
            got,
            vec![
                Stored {
                    key: key(1, Role::Validator),
                    bytes: b"v".to_vec()
                },
                Stored {
                    key: key(2, Role::Peer),
                    bytes: b"peer-state-2".to_vec()
                },
            ]
        );
        assert!(!run_dir.join("3-peer.cbor.tmp").exists());
        s.remove(&key(1, Role::Validator)).unwrap();
        s.remove(&key(1, Role::Validator)).unwrap();
        assert_eq!(s.load().unwrap().len(), 1);
        let big = fs::File::create(run_dir.join("9-coordinator.cbor")).unwrap();
        big.set_len(MAX_STATE_BYTES as u64 + 1).unwrap();
        assert!(matches!(s.load(), Err(StoreError::TooLarge(_))));
    }
}
