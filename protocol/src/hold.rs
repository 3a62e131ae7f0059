//! Hold-invoice records: the payee-side lifecycle of one hold invoice, as the node persists it.
//!
//! Spec: specs/L2T-11-lightning.md#hold-invoice-lifecycle
//!
//! ```text
//! Created ──PaymentClaimable──▶ Claimable{amount, deadline} ──PaymentReceived──▶ Claimed
//!    │                              │
//!    └────── fail / expiry ─────────┴──────────▶ Failed{reason}
//! ```
//!
//! A record only becomes `Claimed` on the Lightning node's "payment received" event: a claim
//! request proves nothing by itself. `Failed` is entered when the payee fails the HTLCs back, when
//! the chain reaches `claim_deadline` (LDK then fails them back by itself), or when an HTLC arrives
//! that cannot be accepted (underpaid, or the record is already failed). Both terminal states are
//! final: a late event can never turn a failed record into a claimable one.
//!
//! Pure: no IO, no clock. Heights and times are arguments. The node stores one record per payment
//! hash, encoded with [`HoldRecord::encode`] (versioned JSON).

use serde::{Deserialize, Serialize};

/// Version of the persisted [`HoldRecord`] encoding.
pub const HOLD_RECORD_VERSION: u16 = 1;
/// Largest encoded record accepted by [`HoldRecord::decode`] (checked before parsing).
pub const MAX_HOLD_RECORD_BYTES: usize = 4096;

/// The payment hash (`H = sha256(P)`) and preimage types shared with the escrow.
pub use crate::escrow::vss::Preimage;
pub use crate::events::ids::PaymentHash;

/// Why a hold invoice ended failed (the payer is refunded in every case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailReason {
    /// The payee failed the HTLCs back on purpose (e.g. no quorum).
    FailedBack,
    /// The chain reached `claim_deadline`; the Lightning node failed the HTLCs back by itself.
    Expired {
        /// The height at which the expiry was observed.
        height: u32,
    },
    /// The HTLCs paid less than the invoice amount and were failed back.
    Underpaid {
        /// What arrived.
        amount_msat: u64,
    },
}

/// The state of one hold invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HoldState {
    /// Invoice issued, no HTLC yet.
    Created,
    /// HTLCs are locked in: the payer can no longer take them back before `claim_deadline`, and
    /// the payee can claim with the preimage.
    Claimable {
        /// Total HTLC amount.
        amount_msat: u64,
        /// Block height from which the HTLCs are failed back automatically; claims must happen
        /// strictly below it. `None` if the node did not report one.
        claim_deadline: Option<u32>,
    },
    /// The payee received the money (terminal).
    Claimed {
        /// Amount received.
        amount_msat: u64,
    },
    /// The HTLCs went back to the payer (terminal).
    Failed(FailReason),
}

impl HoldState {
    /// Whether the state is `Claimed` or `Failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, HoldState::Claimed { .. } | HoldState::Failed(_))
    }
}

/// One hold invoice as persisted by the payee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    /// Encoding version, [`HOLD_RECORD_VERSION`].
    pub version: u16,
    /// The invoice's payment hash.
    pub payment_hash: PaymentHash,
    /// The invoice amount; `None` for a variable-amount invoice.
    pub amount_msat: Option<u64>,
    /// Creation time, UNIX seconds (supplied by the caller).
    pub created_at: u64,
    /// Invoice expiry in seconds after `created_at`.
    pub expiry_secs: u32,
    /// Current state.
    pub state: HoldState,
}

/// What a transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Transition {
    /// The state changed: persist the record, then acknowledge the event.
    Changed,
    /// Nothing changed (a replayed event): acknowledge it.
    Unchanged,
}

/// Refused transitions and bad encodings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HoldError {
    /// The preimage does not hash to the payment hash.
    #[error("preimage does not match payment hash")]
    WrongPreimage,
    /// The HTLCs pay less than the invoice asks.
    #[error("claimable amount {got} msat is below the invoice amount {want} msat")]
    Underpaid {
        /// What arrived.
        got: u64,
        /// The invoice amount.
        want: u64,
    },
    /// The record is already claimed or failed.
    #[error("hold invoice is already {0}")]
    Terminal(&'static str),
    /// No HTLC is held yet.
    #[error("hold invoice is not claimable yet")]
    NotClaimable,
    /// The chain reached the claim deadline; a claim would not be honoured.
    #[error("claim deadline {deadline} reached at height {height}")]
    DeadlinePassed {
        /// The deadline height.
        deadline: u32,
        /// The current height.
        height: u32,
    },
    /// The encoded record exceeds [`MAX_HOLD_RECORD_BYTES`].
    #[error("hold record of {0} bytes exceeds the {MAX_HOLD_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    /// The record has a version this build does not read.
    #[error("hold record version {0} is not supported (this build reads {HOLD_RECORD_VERSION})")]
    UnsupportedVersion(u16),
    /// The bytes are not a record.
    #[error("malformed hold record: {0}")]
    Malformed(String),
}

impl HoldRecord {
    /// A new record in state `Created`.
    pub fn new(
        payment_hash: PaymentHash,
        amount_msat: Option<u64>,
        created_at: u64,
        expiry_secs: u32,
    ) -> Self {
        HoldRecord {
            version: HOLD_RECORD_VERSION,
            payment_hash,
            amount_msat,
            created_at,
            expiry_secs,
            state: HoldState::Created,
        }
    }

    fn terminal_name(&self) -> &'static str {
        match self.state {
            HoldState::Claimed { .. } => "claimed",
            _ => "failed",
        }
    }

    /// The node reported the HTLCs as claimable.
    ///
    /// `Err(Underpaid)` and `Err(Terminal)` mean the HTLCs must be failed back (after recording
    /// [`HoldRecord::fail`] for the underpaid case). A replay with the same values is `Unchanged`.
    pub fn on_claimable(
        &mut self,
        amount_msat: u64,
        claim_deadline: Option<u32>,
    ) -> Result<Transition, HoldError> {
        if self.state.is_terminal() {
            return Err(HoldError::Terminal(self.terminal_name()));
        }
        if let Some(want) = self.amount_msat {
            if amount_msat < want {
                return Err(HoldError::Underpaid {
                    got: amount_msat,
                    want,
                });
            }
        }
        let next = HoldState::Claimable {
            amount_msat,
            claim_deadline,
        };
        if self.state == next {
            return Ok(Transition::Unchanged);
        }
        self.state = next;
        Ok(Transition::Changed)
    }

    /// The node reported the payment as received: the only way to `Claimed`.
    ///
    /// Accepted from any state, because the money did arrive: the event is the ground truth even
    /// if the record had been marked failed locally.
    pub fn on_received(&mut self, amount_msat: u64) -> Transition {
        let next = HoldState::Claimed { amount_msat };
        if self.state == next {
            return Transition::Unchanged;
        }
        self.state = next;
        Transition::Changed
    }

    /// Checks that a claim with `preimage` at chain height `height` can be honoured, and returns
    /// the claimable amount to pass to the node.
    pub fn check_claim(&self, preimage: &Preimage, height: u32) -> Result<u64, HoldError> {
        if preimage.payment_hash() != self.payment_hash {
            return Err(HoldError::WrongPreimage);
        }
        match self.state {
            HoldState::Claimable {
                amount_msat,
                claim_deadline,
            } => {
                if let Some(deadline) = claim_deadline {
                    if height >= deadline {
                        return Err(HoldError::DeadlinePassed { deadline, height });
                    }
                }
                Ok(amount_msat)
            }
            HoldState::Created => Err(HoldError::NotClaimable),
            _ => Err(HoldError::Terminal(self.terminal_name())),
        }
    }

    /// Records that the HTLCs go (or went) back to the payer. Refused once claimed.
    pub fn fail(&mut self, reason: FailReason) -> Result<Transition, HoldError> {
        match self.state {
            HoldState::Claimed { .. } => Err(HoldError::Terminal("claimed")),
            HoldState::Failed(_) => Ok(Transition::Unchanged),
            _ => {
                self.state = HoldState::Failed(reason);
                Ok(Transition::Changed)
            }
        }
    }

    /// At chain height `height`, a claimable record whose deadline is reached becomes
    /// `Failed(Expired)`: the Lightning node has failed its HTLCs back.
    pub fn expire(&mut self, height: u32) -> Transition {
        match self.state {
            HoldState::Claimable {
                claim_deadline: Some(d),
                ..
            } if height >= d => {
                self.state = HoldState::Failed(FailReason::Expired { height });
                Transition::Changed
            }
            _ => Transition::Unchanged,
        }
    }

    /// Versioned JSON encoding.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a record always serialises")
    }

    /// Decodes a record, checking the size first and the version before the rest.
    pub fn decode(bytes: &[u8]) -> Result<Self, HoldError> {
        if bytes.len() > MAX_HOLD_RECORD_BYTES {
            return Err(HoldError::TooLarge(bytes.len()));
        }
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u16,
        }
        let v: VersionOnly =
            serde_json::from_slice(bytes).map_err(|e| HoldError::Malformed(e.to_string()))?;
        if v.version != HOLD_RECORD_VERSION {
            return Err(HoldError::UnsupportedVersion(v.version));
        }
        serde_json::from_slice(bytes).map_err(|e| HoldError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> (HoldRecord, Preimage) {
        let p = Preimage([7; 32]);
        (
            HoldRecord::new(p.payment_hash(), Some(10_000), 1_700_000_000, 3600),
            p,
        )
    }

    #[test]
    fn claim_path() {
        let (mut r, p) = record();
        assert_eq!(r.check_claim(&p, 100), Err(HoldError::NotClaimable));
        assert_eq!(r.on_claimable(10_000, Some(150)), Ok(Transition::Changed));
        assert_eq!(r.on_claimable(10_000, Some(150)), Ok(Transition::Unchanged));
        assert_eq!(r.check_claim(&p, 149), Ok(10_000));
        assert_eq!(
            r.check_claim(&Preimage([8; 32]), 149),
            Err(HoldError::WrongPreimage)
        );
        assert_eq!(
            r.check_claim(&p, 150),
            Err(HoldError::DeadlinePassed {
                deadline: 150,
                height: 150
            })
        );
        assert_eq!(r.on_received(10_000), Transition::Changed);
        assert_eq!(r.on_received(10_000), Transition::Unchanged);
        assert_eq!(
            r.fail(FailReason::FailedBack),
            Err(HoldError::Terminal("claimed"))
        );
        assert_eq!(
            r.on_claimable(10_000, Some(150)),
            Err(HoldError::Terminal("claimed"))
        );
    }

    #[test]
    fn failed_is_final() {
        let (mut r, p) = record();
        assert_eq!(r.on_claimable(10_000, Some(150)), Ok(Transition::Changed));
        assert_eq!(r.fail(FailReason::FailedBack), Ok(Transition::Changed));
        assert_eq!(r.fail(FailReason::FailedBack), Ok(Transition::Unchanged));
        assert_eq!(
            r.on_claimable(10_000, Some(150)),
            Err(HoldError::Terminal("failed"))
        );
        assert_eq!(r.check_claim(&p, 1), Err(HoldError::Terminal("failed")));
        assert_eq!(r.expire(1_000), Transition::Unchanged);
    }

    #[test]
    fn underpaid_is_refused() {
        let (mut r, _) = record();
        assert_eq!(
            r.on_claimable(9_999, Some(150)),
            Err(HoldError::Underpaid {
                got: 9_999,
                want: 10_000
            })
        );
        assert_eq!(r.state, HoldState::Created);
    }

    #[test]
    fn expiry_at_deadline() {
        let (mut r, _) = record();
        assert_eq!(r.on_claimable(10_000, Some(150)), Ok(Transition::Changed));
        assert_eq!(r.expire(149), Transition::Unchanged);
        assert_eq!(r.expire(150), Transition::Changed);
        assert_eq!(
            r.state,
            HoldState::Failed(FailReason::Expired { height: 150 })
        );
    }

    #[test]
    fn encoding_round_trips_and_is_versioned() {
        let (mut r, _) = record();
        assert_eq!(r.on_claimable(12_000, Some(150)), Ok(Transition::Changed));
        let bytes = r.encode();
        assert_eq!(HoldRecord::decode(&bytes), Ok(r.clone()));
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.contains("\"kind\": \"claimable\""), "{text}");
        let v2 = text.replace("\"version\": 1", "\"version\": 2");
        assert_eq!(
            HoldRecord::decode(v2.as_bytes()),
            Err(HoldError::UnsupportedVersion(2))
        );
        assert_eq!(
            HoldRecord::decode(&vec![b' '; MAX_HOLD_RECORD_BYTES + 1]),
            Err(HoldError::TooLarge(4097))
        );
        assert!(matches!(
            HoldRecord::decode(b"{\"version\":1}"),
            Err(HoldError::Malformed(_))
        ));
    }

    #[test]
    fn vector_matches_spec() {
        // specs/L2T-11-lightning.md shows this record.
        let p = Preimage([0x42; 32]);
        let mut r = HoldRecord::new(p.payment_hash(), Some(5_000_000), 1_700_000_000, 3600);
        assert_eq!(
            r.on_claimable(5_000_000, Some(264)),
            Ok(Transition::Changed)
        );
        let text = String::from_utf8(r.encode()).expect("utf8");
        let spec = include_str!("../../specs/vectors/hold/claimable.json");
        assert_eq!(text.trim(), spec.trim());
    }
}
