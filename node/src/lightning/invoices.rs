//! The invoice book: the BOLT11 string of every invoice this node created or paid, one file per
//! payment hash under `<data_dir>/invoices/` (`<hash>.bolt11`, the invoice text itself).
//!
//! ldk-node 0.7.1's payment store keeps hashes, amounts and states but not the invoice text;
//! `wallet --json` shows it beside each payment, and a hold invoice re-requested after a restart
//! is answered with the invoice created before (same hash, same amount) instead of an error.
//! Written durably before the invoice leaves the node (or before a payment is sent).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use l402_protocol::hold::PaymentHash;

use super::LightningError;

const SUFFIX: &str = ".bolt11";
/// Longer than any invoice this node creates or accepts to pay (BOLT11 has no hard limit; the
/// protocol caps the invoices it carries far below this).
const MAX_INVOICE_FILE: u64 = 8 * 1024;

/// In-memory view of the book, written through on every insert.
#[derive(Debug)]
pub(crate) struct InvoiceBook {
    dir: PathBuf,
    invoices: BTreeMap<PaymentHash, String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LightningError + '_ {
    move |source| LightningError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl InvoiceBook {
    /// Opens (creating) the book. Leftover temporary files are removed; files that are too large
    /// or not named by a hash are skipped (the book is informational, the hold store is not).
    pub fn open(dir: PathBuf) -> Result<Self, LightningError> {
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut invoices = BTreeMap::new();
        let files = crate::durable::entries(&dir, SUFFIX).map_err(|(p, e)| io(&p)(e))?;
        for (stem, path) in files {
            let Ok(hash) = PaymentHash::from_hex(&stem) else {
                continue;
            };
            if fs::metadata(&path).map_err(io(&path))?.len() > MAX_INVOICE_FILE {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(io(&path))?;
            invoices.insert(hash, text.trim().to_owned());
        }
        Ok(Self { dir, invoices })
    }

    /// The invoice of `hash`, if this node created or paid one.
    pub fn get(&self, hash: &PaymentHash) -> Option<&str> {
        self.invoices.get(hash).map(String::as_str)
    }

    /// Durably records `bolt11` under `hash` (the first one stays: a hash names one invoice).
    pub fn put(&mut self, hash: PaymentHash, bolt11: &str) -> Result<(), LightningError> {
        if self.invoices.contains_key(&hash) {
            return Ok(());
        }
        let name = format!("{}{SUFFIX}", hash.to_hex());
        crate::durable::write_atomic(&self.dir, &name, bolt11.as_bytes()).map_err(io(&self.dir))?;
        self.invoices.insert(hash, bolt11.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use l402_protocol::hold::Preimage;

    #[test]
    fn invoices_survive_reopen_and_the_first_stays() -> Result<(), LightningError> {
        let dir = tempfile::tempdir().map_err(io(Path::new("tmp")))?;
        let d = dir.path().join("invoices");
        let h = Preimage([7; 32]).payment_hash();
        {
            let mut b = InvoiceBook::open(d.clone())?;
            b.put(h, "lnbcrt1first")?;
            b.put(h, "lnbcrt1second")?;
        }
        fs::write(d.join("junk.bolt11.tmp"), b"torn").map_err(io(&d))?;
        fs::write(d.join("not-a-hash.bolt11"), b"x").map_err(io(&d))?;
        let b = InvoiceBook::open(d.clone())?;
        assert_eq!(b.get(&h), Some("lnbcrt1first"));
        assert!(!d.join("junk.bolt11.tmp").exists());
        assert_eq!(b.invoices.len(), 1);
        Ok(())
    }
}
