//! The hold-invoice store: one versioned JSON file per payment hash under `<data_dir>/holds/`.
//!
//! Writes are atomic and durable (write a temporary file, fsync it, rename it over the record,
//! fsync the directory), so a crash leaves either the old or the new record, never a torn one.
//! The dispatcher persists a transition here *before* acknowledging the Lightning event that
//! caused it: the Lightning node does not replay acknowledged events after a restart.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use l402_protocol::hold::{HoldRecord, PaymentHash};

use super::LightningError;

const SUFFIX: &str = ".json";

/// In-memory view of the store, written through on every change.
#[derive(Debug)]
pub(crate) struct HoldStore {
    dir: PathBuf,
    records: BTreeMap<PaymentHash, HoldRecord>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LightningError + '_ {
    move |source| LightningError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl HoldStore {
    /// Opens (creating) the store and loads every record. Leftover temporary files from an
    /// interrupted write are removed; a record that does not decode is an error.
    pub fn open(dir: PathBuf) -> Result<Self, LightningError> {
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut records = BTreeMap::new();
        let files = crate::durable::entries(&dir, SUFFIX).map_err(|(p, e)| io(&p)(e))?;
        for (stem, path) in files {
            let meta = fs::metadata(&path).map_err(io(&path))?;
            if meta.len() > l402_protocol::hold::MAX_HOLD_RECORD_BYTES as u64 {
                return Err(LightningError::Corrupt {
                    path,
                    source: l402_protocol::hold::HoldError::TooLarge(meta.len() as usize),
                });
            }
            let bytes = fs::read(&path).map_err(io(&path))?;
            let record = HoldRecord::decode(&bytes).map_err(|source| LightningError::Corrupt {
                path: path.clone(),
                source,
            })?;
            if record.payment_hash.to_hex() != stem {
                return Err(LightningError::Corrupt {
                    path,
                    source: l402_protocol::hold::HoldError::Malformed(
                        "file name does not match payment hash".into(),
                    ),
                });
            }
            records.insert(record.payment_hash, record);
        }
        Ok(HoldStore { dir, records })
    }

    pub fn get(&self, hash: &PaymentHash) -> Option<&HoldRecord> {
        self.records.get(hash)
    }

    pub fn all(&self) -> impl Iterator<Item = &HoldRecord> {
        self.records.values()
    }

    /// Durably writes `record`, then updates the in-memory view.
    pub fn put(&mut self, record: HoldRecord) -> Result<(), LightningError> {
        let name = format!("{}{SUFFIX}", record.payment_hash.to_hex());
        crate::durable::write_atomic(&self.dir, &name, &record.encode()).map_err(io(&self.dir))?;
        self.records.insert(record.payment_hash, record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use l402_protocol::hold::{HoldState, Preimage};

    /// `SUFFIX` plus [`crate::durable::TMP_SUFFIX`]: what an interrupted write leaves.
    const TMP_SUFFIX: &str = ".json.tmp";

    #[test]
    fn records_survive_reopen_and_torn_writes_are_dropped() -> Result<(), LightningError> {
        let dir = tempfile::tempdir().map_err(io(Path::new("tmp")))?;
        let holds = dir.path().join("holds");
        let h = Preimage([1; 32]).payment_hash();
        {
            let mut s = HoldStore::open(holds.clone())?;
            let mut r = HoldRecord::new(h, Some(1_000), 1, 60);
            s.put(r.clone())?;
            let _ = r
                .on_claimable(1_000, Some(200))
                .map_err(|source| LightningError::Hold { hash: h, source })?;
            s.put(r)?;
        }
        fs::write(
            holds.join(format!(
                "{}{TMP_SUFFIX}",
                Preimage([2; 32]).payment_hash().to_hex()
            )),
            b"{torn",
        )
        .map_err(io(&holds))?;
        let s = HoldStore::open(holds.clone())?;
        assert_eq!(s.all().count(), 1);
        assert_eq!(
            s.get(&h).map(|r| r.state),
            Some(HoldState::Claimable {
                amount_msat: 1_000,
                claim_deadline: Some(200)
            })
        );
        // A corrupt record stops the node from starting rather than losing track of a payment.
        fs::write(
            holds.join(format!(
                "{}{SUFFIX}",
                Preimage([3; 32]).payment_hash().to_hex()
            )),
            b"{bad",
        )
        .map_err(io(&holds))?;
        assert!(matches!(
            HoldStore::open(holds),
            Err(LightningError::Corrupt { .. })
        ));
        Ok(())
    }
}
