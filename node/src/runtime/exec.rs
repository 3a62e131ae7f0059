//! Executing the actions of the role machines for real: Nostr publications through the
//! discovery outbox, hold invoices, payments, claims and fail-backs on the embedded ldk-node,
//! blob releases through the blob index. What a real action reports back (an invoice, a held
//! HTLC …) returns to the driver as a [`Report`].
//!
//! The simulator's fast mode executes the same actions against fakes
//! (`sim/src/engine/exec.rs`); neither decides anything the protocol decides.

use std::collections::BTreeSet;
use std::sync::Arc;

use l402_protocol::blobmeta::{PeerKey, RoundKey};
use l402_protocol::events::{PaymentHash, TrancheInvoice};
use l402_protocol::round::{Action, Input, MachineKey};
use nostr_sdk::prelude::{PublicKey, Timestamp};
use tokio::sync::mpsc;

use crate::blobs::BlobNode;
use crate::discovery::Discovery;
use crate::lightning::{Invoice, LightningError, LightningEvent, LightningNode};

/// Seconds a hold invoice stays payable: the payer pays right after the lock request, well
/// inside the round's attest deadline.
pub const HOLD_INVOICE_EXPIRY_SECS: u32 = 600;

/// Something the runtime hands back to the driver: to one machine (`key`), or routed by the
/// driver (`None`: Lightning reports, by payment hash).
#[derive(Debug, Clone)]
pub struct Report {
    /// The machine that asked, if the answer is for it alone.
    pub key: Option<MachineKey>,
    /// What happened.
    pub input: Input,
}

/// Why an action could not be executed (logged with its ids; the machines' deadlines then
/// decide: an unpaid escrow is failed back, a missing attestation counts as absent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The BOLT11 string does not parse.
    #[error("invoice for tranche {tranche}: {reason}")]
    BadInvoice {
        /// Tranche.
        tranche: u32,
        /// Why.
        reason: String,
    },
    /// The invoice names another payment hash than the dealing's.
    #[error("invoice for tranche {tranche} names payment hash {got}, the dealing says {expected}")]
    WrongHash {
        /// Tranche.
        tranche: u32,
        /// From the dealing.
        expected: PaymentHash,
        /// From the invoice.
        got: PaymentHash,
    },
    /// The invoice asks another amount than the tranche's.
    #[error("invoice for tranche {tranche} asks {got:?} msat, the tranche is {expected} msat")]
    WrongAmount {
        /// Tranche.
        tranche: u32,
        /// The tranche's amount.
        expected: u64,
        /// The invoice's.
        got: Option<u64>,
    },
    /// The Lightning node refused.
    #[error(transparent)]
    Lightning(#[from] LightningError),
    /// The blob store refused.
    #[error(transparent)]
    Blob(#[from] crate::blobs::BlobError),
}

/// Check each of a worker's hold invoices against the dealing before paying anything: the
/// payment hash must be the dealing's `H` (else the payer would pay for a preimage the quorum
/// does not control) and the amount the tranche's. All or nothing.
pub fn check_hold_invoices(invoices: &[(TrancheInvoice, u64)]) -> Result<Vec<Invoice>, ExecError> {
    invoices
        .iter()
        .map(|(inv, amount)| {
            let parsed: Invoice =
                inv.bolt11
                    .parse()
                    .map_err(|e: LightningError| ExecError::BadInvoice {
                        tranche: inv.tranche,
                        reason: e.to_string(),
                    })?;
            if parsed.payment_hash() != inv.payment_hash {
                return Err(ExecError::WrongHash {
                    tranche: inv.tranche,
                    expected: inv.payment_hash,
                    got: parsed.payment_hash(),
                });
            }
            if parsed.amount_msat() != Some(*amount) {
                return Err(ExecError::WrongAmount {
                    tranche: inv.tranche,
                    expected: *amount,
                    got: parsed.amount_msat(),
                });
            }
            Ok(parsed)
        })
        .collect()
}

/// The Lightning report a hold-invoice event means to the machines, if any.
pub fn lightning_input(ev: &LightningEvent) -> Option<Input> {
    Some(match ev {
        LightningEvent::HoldClaimable {
            payment_hash,
            amount_msat,
            ..
        } => Input::HtlcHeld {
            payment_hash: *payment_hash,
            amount_msat: *amount_msat,
        },
        LightningEvent::HoldClaimed { payment_hash, .. } => Input::HtlcClaimed {
            payment_hash: *payment_hash,
        },
        LightningEvent::HoldFailed { payment_hash, .. } => Input::HtlcFailed {
            payment_hash: *payment_hash,
        },
        _ => return None,
    })
}

/// The real components an executor acts through.
#[derive(Debug, Clone)]
pub struct Components {
    /// The embedded Lightning node.
    pub lightning: Arc<LightningNode>,
    /// Nostr publishing and the directory.
    pub discovery: Arc<Discovery>,
    /// Blob store and transport.
    pub blobs: Arc<BlobNode>,
}

impl Components {
    /// The iroh keys of the given Nostr keys, from their (verified) node announcements.
    fn iroh_keys(&self, nostr: &[PublicKey]) -> BTreeSet<PeerKey> {
        let dir = self.discovery.directory();
        let now = Timestamp::now();
        nostr
            .iter()
            .filter_map(|pk| dir.node(pk, now).map(|n| n.verified.iroh_node_id))
            .collect()
    }

    /// Execute one action of machine `key`; answers go to `reports`.
    pub async fn execute(
        &self,
        key: &MachineKey,
        action: Action,
        reports: &mpsc::UnboundedSender<Report>,
    ) -> Result<(), ExecError> {
        match action {
            Action::Publish(ev) => match self.discovery.publish(&ev).await {
                Ok(r) => {
                    tracing::debug!(machine = %key, event_id = %ev.id, kind = ev.kind.as_u16(), accepted = r.accepted.len(), "published")
                }
                // Queued in the outbox for the relays that did not answer: the supervisor
                // retries, and `resume` re-publishes after a restart.
                Err(e) => {
                    tracing::warn!(machine = %key, event_id = %ev.id, error = %e, "publish not yet accepted")
                }
            },
            Action::CreateHoldInvoice {
                submission,
                tranche,
                payment_hash,
                amount_msat,
                claim_deadline,
            } => {
                let desc = format!("l402 {key} tranche {tranche}");
                let bolt11 = match self.lightning.create_hold_invoice(
                    payment_hash,
                    amount_msat,
                    &desc,
                    HOLD_INVOICE_EXPIRY_SECS,
                ) {
                    Ok(inv) => inv.to_string(),
                    // Idempotent after a restart: the invoice exists; its BOLT11 is in the
                    // lock event we may already have published, or we fail it back below.
                    Err(LightningError::DuplicateHold(_)) => {
                        tracing::debug!(machine = %key, %payment_hash, "hold invoice already exists");
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                tracing::info!(machine = %key, submission = %submission, tranche, %payment_hash, amount_msat, claim_deadline, "hold invoice created");
                let _ = reports.send(Report {
                    key: Some(key.clone()),
                    input: Input::InvoiceCreated {
                        payment_hash,
                        bolt11,
                    },
                });
            }
            Action::PayHoldInvoices {
                submission,
                peer,
                invoices,
            } => {
                let checked = check_hold_invoices(&invoices)?;
                for inv in checked {
                    let hash = inv.payment_hash();
                    if self.lightning.payment_outcome(hash).is_some() {
                        continue; // paid before (a resumed coordinator): idempotent per hash
                    }
                    match self.lightning.pay(&inv) {
                        Ok(_) => {
                            tracing::info!(machine = %key, submission = %submission, peer = %peer, payment_hash = %hash, amount_msat = inv.amount_msat(), "escrow HTLC sent")
                        }
                        Err(e) => {
                            tracing::warn!(machine = %key, payment_hash = %hash, error = %e, "escrow payment refused")
                        }
                    }
                }
            }
            Action::Claim {
                payment_hash,
                preimage,
                amount_msat,
            } => {
                self.lightning.claim(payment_hash, &preimage)?;
                tracing::info!(machine = %key, %payment_hash, amount_msat, "claim requested");
            }
            Action::FailBack { payment_hash } => match self.lightning.fail(payment_hash) {
                Ok(()) => tracing::info!(machine = %key, %payment_hash, "failed back"),
                // Nothing was ever held (the invoice was never created or paid): the payer's
                // money never left; the machine learns it is over.
                Err(LightningError::UnknownHold(_)) => {
                    let _ = reports.send(Report {
                        key: None,
                        input: Input::HtlcFailed { payment_hash },
                    });
                }
                Err(e) => return Err(e.into()),
            },
            Action::ReleaseBlob { blob, to } => {
                let round = RoundKey {
                    run: key.run.as_str().to_owned(),
                    round: key.round,
                };
                let peers = self.iroh_keys(&to);
                let n = self.blobs.allow(&round, &peers).await?;
                tracing::info!(machine = %key, blob = %blob, readers = peers.len(), blobs = n, "blob released to the committee");
            }
            Action::PayValidatorFee { validator, bolt11 } => {
                let inv: Invoice = bolt11.parse()?;
                if self.lightning.payment_outcome(inv.payment_hash()).is_none() {
                    self.lightning.pay(&inv)?;
                    tracing::info!(machine = %key, validator = %validator, payment_hash = %inv.payment_hash(), "validator fee sent");
                }
            }
            Action::Ignored { event, reason } => {
                tracing::debug!(machine = %key, event_id = %event, %reason, "ignored")
            }
            other => {
                tracing::warn!(machine = %key, action = ?other, "action not executed by this runtime")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use ldk_node::bitcoin::hashes::{sha256, Hash};
    use ldk_node::bitcoin::secp256k1::{Secp256k1, SecretKey};
    use ldk_node::lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};

    use super::*;

    /// A real signed regtest BOLT11 invoice (lightning-invoice, as ldk-node builds them).
    fn bolt11(hash: [u8; 32], amount_msat: u64) -> String {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
        InvoiceBuilder::new(Currency::Regtest)
            .description("l402 test".into())
            .payment_hash(sha256::Hash::from_byte_array(hash))
            .payment_secret(PaymentSecret([1; 32]))
            .duration_since_epoch(Duration::from_secs(1_700_000_000))
            .min_final_cltv_expiry_delta(144)
            .amount_milli_satoshis(amount_msat)
            .build_signed(|m| secp.sign_ecdsa_recoverable(m, &sk))
            .unwrap()
            .to_string()
    }

    fn tranche(i: u32, hash: [u8; 32], bolt11: String) -> TrancheInvoice {
        TrancheInvoice {
            tranche: i,
            payment_hash: PaymentHash(hash),
            bolt11,
        }
    }

    #[test]
    fn hold_invoices_are_paid_only_if_every_hash_and_amount_checks_out() {
        let good = vec![
            (tranche(0, [1; 32], bolt11([1; 32], 5_000)), 5_000),
            (tranche(1, [2; 32], bolt11([2; 32], 7_000)), 7_000),
        ];
        let ok = check_hold_invoices(&good).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].payment_hash(), PaymentHash([2; 32]));

        // An invoice for a hash the dealing did not make: the payer would pay for a preimage
        // the worker alone knows. Nothing is paid, not even the good tranche.
        let mut swapped = good.clone();
        swapped[1].0.bolt11 = bolt11([9; 32], 7_000);
        assert!(matches!(
            check_hold_invoices(&swapped),
            Err(ExecError::WrongHash { tranche: 1, .. })
        ));
        let mut greedy = good.clone();
        greedy[0].0.bolt11 = bolt11([1; 32], 5_001);
        assert!(matches!(
            check_hold_invoices(&greedy),
            Err(ExecError::WrongAmount {
                tranche: 0,
                expected: 5_000,
                got: Some(5_001)
            })
        ));
        let mut garbage = good;
        garbage[0].0.bolt11 = "lnbcrt1garbage".into();
        assert!(matches!(
            check_hold_invoices(&garbage),
            Err(ExecError::BadInvoice { tranche: 0, .. })
        ));
    }

    #[test]
    fn hold_invoice_events_become_machine_inputs() {
        let h = PaymentHash([3; 32]);
        assert!(matches!(
            lightning_input(&LightningEvent::HoldClaimable {
                payment_hash: h,
                amount_msat: 9,
                claim_deadline: Some(100)
            }),
            Some(Input::HtlcHeld { payment_hash, amount_msat: 9 }) if payment_hash == h
        ));
        assert!(matches!(
            lightning_input(&LightningEvent::HoldClaimed {
                payment_hash: h,
                amount_msat: 9
            }),
            Some(Input::HtlcClaimed { .. })
        ));
        assert!(lightning_input(&LightningEvent::Lagged { missed: 1 }).is_none());
    }
}
