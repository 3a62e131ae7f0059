//! `FakeLedger`: an in-memory Lightning ledger with hold-invoice semantics, for the fast mode
//! only (the real-swarm mode uses ldk-node through `l402-node`).
//!
//! Accounts hold balances in millisatoshis. A hold invoice is created by its payee for a payment
//! hash; paying it moves the amount out of the payer's balance into a *held* HTLC; the payee
//! claims it with the preimage (before the HTLC expiry height) or fails it back; an HTLC still
//! held at its expiry height is failed back automatically (`expire`). Every sat is accounted:
//! `minted = Σ balances + Σ held`, and per HTLC `locked = claimed + refunded + still held`.
//!
//! Spec: specs/L2T-12-sim.md#fake-ledger

use std::collections::{BTreeMap, BTreeSet};

use l402_protocol::escrow::Preimage;
use l402_protocol::events::{PaymentHash, UnixTime};
use serde::Serialize;

/// An account (the simulator's actor id).
pub type AccountId = u32;

/// Where a hold invoice stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HtlcState {
    /// Invoice exists, not paid.
    Invoiced,
    /// Paid: the amount is locked in the HTLC.
    Held,
    /// Claimed by the payee with the preimage.
    Settled,
    /// Failed back by the payee: the payer is refunded.
    FailedBack,
    /// Still held at the expiry height: failed back automatically, the payer is refunded.
    ExpiredRefunded,
    /// Failed before anyone paid it.
    Cancelled,
}

/// One hold invoice and its HTLC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Htlc {
    /// Who created the invoice (and may claim).
    pub payee: AccountId,
    /// Who paid it.
    pub payer: Option<AccountId>,
    /// Invoice amount.
    pub amount_msat: u64,
    /// Amount locked when it was paid.
    pub held_msat: u64,
    /// The protocol's claim deadline for it.
    pub claim_deadline: UnixTime,
    /// Height at which a still-held HTLC is failed back automatically.
    pub expiry_height: u64,
    /// State.
    pub state: HtlcState,
    /// Time of the last state change.
    pub updated_at: UnixTime,
}

/// Why the ledger refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// No invoice for this payment hash.
    #[error("no invoice for this payment hash")]
    UnknownInvoice,
    /// The invoice string does not name this hash and amount (or another payee made it).
    #[error("invoice does not match the expected hash and amount")]
    InvoiceMismatch,
    /// The payer cannot afford it.
    #[error("insufficient funds: balance {balance} msat, needed {needed} msat")]
    InsufficientFunds {
        /// Balance.
        balance: u64,
        /// Needed.
        needed: u64,
    },
    /// The HTLC is not held (never paid, or already resolved).
    #[error("HTLC is not held (state {0:?})")]
    NotHeld(HtlcState),
    /// The preimage does not hash to the payment hash.
    #[error("preimage does not match the payment hash")]
    WrongPreimage,
    /// The HTLC is at or past its expiry height.
    #[error("HTLC expired at height {expiry}, now {height}")]
    Expired {
        /// Expiry height.
        expiry: u64,
        /// Current height.
        height: u64,
    },
    /// Unknown account.
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
}

/// Outcome tally and conservation figures of a ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LedgerAudit {
    /// Money created at account opening.
    pub minted_msat: u64,
    /// Sum of all balances.
    pub balances_msat: u64,
    /// Ever locked in HTLCs.
    pub locked_msat: u64,
    /// Claimed by payees.
    pub settled_msat: u64,
    /// Refunded by fail-back.
    pub failed_back_msat: u64,
    /// Refunded by expiry.
    pub expired_msat: u64,
    /// Still held.
    pub held_msat: u64,
    /// HTLCs settled.
    pub settled: u64,
    /// HTLCs failed back.
    pub failed_back: u64,
    /// HTLCs refunded at expiry.
    pub expired_refunded: u64,
    /// HTLCs still held.
    pub held: u64,
    /// HTLCs held at or past their expiry height (must be 0).
    pub stuck: u64,
    /// Invoices never paid (or cancelled).
    pub unpaid_invoices: u64,
    /// `minted − (balances + held)`: sats that vanished (positive) or appeared (negative).
    pub lost_msat: i128,
    /// `locked − (settled + failed back + expired + held)` (must be 0).
    pub unaccounted_msat: i128,
}

/// Test-only corruptions of the ledger, to prove the conservation check catches them.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LedgerFault {
    /// A claim credits the payee twice.
    DoubleCredit,
    /// A fail-back forgets to refund the payer.
    ForgetRefund,
}

/// The in-memory Lightning ledger.
#[derive(Clone, Debug, Default)]
pub struct FakeLedger {
    balances: BTreeMap<AccountId, u64>,
    htlcs: BTreeMap<PaymentHash, Htlc>,
    /// The hashes of the HTLCs in state `Held`: what [`FakeLedger::expire`] scans each tick,
    /// instead of every HTLC of the run.
    held: BTreeSet<PaymentHash>,
    minted_msat: u64,
    transfers_msat: u64,
    #[cfg(test)]
    pub(crate) fault: Option<LedgerFault>,
}

/// The fake BOLT11 string of a hold invoice (names hash and amount so the payer can check it).
pub fn fake_bolt11(hash: &PaymentHash, amount_msat: u64) -> String {
    format!("lnfake1{}x{}", hash.to_hex(), amount_msat)
}

impl FakeLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open `account` with `balance_msat` (minted; opening twice adds).
    pub fn open_account(&mut self, account: AccountId, balance_msat: u64) {
        *self.balances.entry(account).or_insert(0) += balance_msat;
        self.minted_msat += balance_msat;
    }

    /// Balance of an account.
    pub fn balance(&self, account: AccountId) -> u64 {
        self.balances.get(&account).copied().unwrap_or(0)
    }

    /// All HTLCs by payment hash.
    pub fn htlcs(&self) -> &BTreeMap<PaymentHash, Htlc> {
        &self.htlcs
    }

    /// A plain payment (an L402 token purchase).
    pub fn transfer(
        &mut self,
        from: AccountId,
        to: AccountId,
        amount_msat: u64,
    ) -> Result<(), LedgerError> {
        let bal = self
            .balances
            .get_mut(&from)
            .ok_or(LedgerError::UnknownAccount(from))?;
        if *bal < amount_msat {
            return Err(LedgerError::InsufficientFunds {
                balance: *bal,
                needed: amount_msat,
            });
        }
        *bal -= amount_msat;
        *self.balances.entry(to).or_insert(0) += amount_msat;
        self.transfers_msat += amount_msat;
        Ok(())
    }

    /// The payee creates a hold invoice for `hash` (`receive_for_hash`). Idempotent for the same
    /// payee and amount; returns the invoice string.
    pub fn create_hold_invoice(
        &mut self,
        payee: AccountId,
        hash: PaymentHash,
        amount_msat: u64,
        claim_deadline: UnixTime,
        expiry_height: u64,
        now: UnixTime,
    ) -> Result<String, LedgerError> {
        if let Some(h) = self.htlcs.get(&hash) {
            if h.payee != payee || h.amount_msat != amount_msat {
                return Err(LedgerError::InvoiceMismatch);
            }
            return Ok(fake_bolt11(&hash, amount_msat));
        }
        self.htlcs.insert(
            hash,
            Htlc {
                payee,
                payer: None,
                amount_msat,
                held_msat: 0,
                claim_deadline,
                expiry_height,
                state: HtlcState::Invoiced,
                updated_at: now,
            },
        );
        Ok(fake_bolt11(&hash, amount_msat))
    }

    /// The payer pays `bolt11`, which must name `hash` and `amount_msat`. Returns the payee if
    /// this locked a new HTLC, `None` if it was already paid (paying is idempotent per hash).
    pub fn pay_hold_invoice(
        &mut self,
        payer: AccountId,
        bolt11: &str,
        hash: PaymentHash,
        amount_msat: u64,
        now: UnixTime,
    ) -> Result<Option<AccountId>, LedgerError> {
        if bolt11 != fake_bolt11(&hash, amount_msat) {
            return Err(LedgerError::InvoiceMismatch);
        }
        let h = self
            .htlcs
            .get_mut(&hash)
            .ok_or(LedgerError::UnknownInvoice)?;
        if h.amount_msat != amount_msat {
            return Err(LedgerError::InvoiceMismatch);
        }
        if h.state != HtlcState::Invoiced {
            return Ok(None);
        }
        let bal = self
            .balances
            .get_mut(&payer)
            .ok_or(LedgerError::UnknownAccount(payer))?;
        if *bal < amount_msat {
            return Err(LedgerError::InsufficientFunds {
                balance: *bal,
                needed: amount_msat,
            });
        }
        *bal -= amount_msat;
        h.payer = Some(payer);
        h.held_msat = amount_msat;
        h.state = HtlcState::Held;
        h.updated_at = now;
        self.held.insert(hash);
        Ok(Some(h.payee))
    }

    /// The payee claims with `preimage` at `height` (`claim_for_hash`). Claiming a settled HTLC
    /// again is a no-op success.
    pub fn claim(
        &mut self,
        hash: PaymentHash,
        preimage: &Preimage,
        height: u64,
        now: UnixTime,
    ) -> Result<AccountId, LedgerError> {
        let h = self
            .htlcs
            .get_mut(&hash)
            .ok_or(LedgerError::UnknownInvoice)?;
        match h.state {
            HtlcState::Settled => return Ok(h.payee),
            HtlcState::Held => {}
            s => return Err(LedgerError::NotHeld(s)),
        }
        if preimage.payment_hash() != hash {
            return Err(LedgerError::WrongPreimage);
        }
        if height >= h.expiry_height {
            return Err(LedgerError::Expired {
                expiry: h.expiry_height,
                height,
            });
        }
        h.state = HtlcState::Settled;
        h.updated_at = now;
        self.held.remove(&hash);
        let (payee, amount) = (h.payee, h.held_msat);
        *self.balances.entry(payee).or_insert(0) += amount;
        #[cfg(test)]
        if self.fault == Some(LedgerFault::DoubleCredit) {
            *self.balances.entry(payee).or_insert(0) += amount;
        }
        Ok(payee)
    }

    /// The payee fails the HTLC back (`fail_for_hash`): a held one refunds the payer, an unpaid
    /// invoice is cancelled. Returns the state it ends in.
    pub fn fail_back(
        &mut self,
        hash: PaymentHash,
        now: UnixTime,
    ) -> Result<HtlcState, LedgerError> {
        let h = self
            .htlcs
            .get_mut(&hash)
            .ok_or(LedgerError::UnknownInvoice)?;
        match h.state {
            HtlcState::Held => {
                h.state = HtlcState::FailedBack;
                h.updated_at = now;
                self.held.remove(&hash);
                let refund = h.held_msat;
                let payer = h.payer;
                #[cfg(test)]
                if self.fault == Some(LedgerFault::ForgetRefund) {
                    return Ok(HtlcState::FailedBack);
                }
                if let Some(p) = payer {
                    *self.balances.entry(p).or_insert(0) += refund;
                }
                Ok(HtlcState::FailedBack)
            }
            HtlcState::Invoiced => {
                h.state = HtlcState::Cancelled;
                h.updated_at = now;
                Ok(HtlcState::Cancelled)
            }
            s => Ok(s),
        }
    }

    /// Fail back every HTLC still held at or past its expiry height (the Lightning node does
    /// this before the CLTV timeout). Returns the payees to notify.
    pub fn expire(&mut self, height: u64, now: UnixTime) -> Vec<(PaymentHash, AccountId)> {
        let mut out = Vec::new();
        let due: Vec<PaymentHash> = self
            .held
            .iter()
            .filter(|hash| {
                self.htlcs
                    .get(hash)
                    .is_some_and(|h| height >= h.expiry_height)
            })
            .copied()
            .collect();
        for hash in due {
            self.held.remove(&hash);
            let Some(h) = self.htlcs.get_mut(&hash) else {
                continue;
            };
            h.state = HtlcState::ExpiredRefunded;
            h.updated_at = now;
            if let Some(p) = h.payer {
                *self.balances.entry(p).or_insert(0) += h.held_msat;
            }
            out.push((hash, h.payee));
        }
        out
    }

    /// Conservation figures and the outcome tally at `height`.
    pub fn audit(&self, height: u64) -> LedgerAudit {
        let mut a = LedgerAudit {
            minted_msat: self.minted_msat,
            balances_msat: self.balances.values().sum(),
            ..LedgerAudit::default()
        };
        for h in self.htlcs.values() {
            if h.payer.is_some() {
                a.locked_msat += h.held_msat;
            }
            match h.state {
                HtlcState::Invoiced | HtlcState::Cancelled => a.unpaid_invoices += 1,
                HtlcState::Held => {
                    a.held += 1;
                    a.held_msat += h.held_msat;
                    if height >= h.expiry_height {
                        a.stuck += 1;
                    }
                }
                HtlcState::Settled => {
                    a.settled += 1;
                    a.settled_msat += h.held_msat;
                }
                HtlcState::FailedBack => {
                    a.failed_back += 1;
                    a.failed_back_msat += h.held_msat;
                }
                HtlcState::ExpiredRefunded => {
                    a.expired_refunded += 1;
                    a.expired_msat += h.held_msat;
                }
            }
        }
        a.lost_msat =
            i128::from(a.minted_msat) - (i128::from(a.balances_msat) + i128::from(a.held_msat));
        a.unaccounted_msat = i128::from(a.locked_msat)
            - (i128::from(a.settled_msat)
                + i128::from(a.failed_back_msat)
                + i128::from(a.expired_msat)
                + i128::from(a.held_msat));
        a
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(b: u8) -> Preimage {
        Preimage([b; 32])
    }

    #[test]
    fn hold_invoice_lifecycle_conserves_money() {
        let mut l = FakeLedger::new();
        l.open_account(0, 1_000_000);
        l.open_account(1, 0);
        let (h1, h2, h3) = (
            p(1).payment_hash(),
            p(2).payment_hash(),
            p(3).payment_hash(),
        );
        for h in [h1, h2, h3] {
            let b = l.create_hold_invoice(1, h, 1000, 100, 10, 0).unwrap();
            assert_eq!(l.pay_hold_invoice(0, &b, h, 1000, 0).unwrap(), Some(1));
            // Paying twice is a no-op.
            assert_eq!(l.pay_hold_invoice(0, &b, h, 1000, 0).unwrap(), None);
        }
        assert_eq!(l.balance(0), 997_000);
        assert_eq!(l.claim(h1, &p(9), 1, 0), Err(LedgerError::WrongPreimage));
        assert_eq!(l.claim(h1, &p(1), 1, 0).unwrap(), 1);
        assert_eq!(l.fail_back(h2, 0).unwrap(), HtlcState::FailedBack);
        assert_eq!(l.expire(9, 0), vec![]);
        assert_eq!(l.expire(10, 0), vec![(h3, 1)]);
        assert!(matches!(
            l.claim(h3, &p(3), 10, 0),
            Err(LedgerError::NotHeld(HtlcState::ExpiredRefunded))
        ));
        let a = l.audit(20);
        assert_eq!((a.settled, a.failed_back, a.expired_refunded), (1, 1, 1));
        assert_eq!((a.lost_msat, a.unaccounted_msat, a.stuck), (0, 0, 0));
        assert_eq!(l.balance(1), 1000);
        assert_eq!(l.balance(0), 999_000);
    }

    #[test]
    fn late_claims_and_mismatched_invoices_are_refused() {
        let mut l = FakeLedger::new();
        l.open_account(0, 5000);
        let h = p(1).payment_hash();
        let b = l.create_hold_invoice(1, h, 1000, 100, 10, 0).unwrap();
        assert_eq!(
            l.pay_hold_invoice(0, &b, h, 999, 0),
            Err(LedgerError::InvoiceMismatch)
        );
        l.pay_hold_invoice(0, &b, h, 1000, 0).unwrap();
        assert!(matches!(
            l.claim(h, &p(1), 10, 0),
            Err(LedgerError::Expired { .. })
        ));
        // Not expired by `expire` yet: it is held past its expiry, i.e. stuck.
        assert_eq!(l.audit(10).stuck, 1);
        let h2 = p(2).payment_hash();
        let b2 = l.create_hold_invoice(1, h2, 10_000, 100, 10, 0).unwrap();
        assert!(matches!(
            l.pay_hold_invoice(0, &b2, h2, 10_000, 0),
            Err(LedgerError::InsufficientFunds { .. })
        ));
    }
}
