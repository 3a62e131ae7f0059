//! Reward escrow released by a k-of-n validator quorum.
//!
//! The payer deals each tranche's preimage `P` (with `H = sha256(P)`) to the round's validators
//! as Feldman shares, each NIP-44-encrypted to one validator, in a dealing it signs. The worker
//! holds a hold invoice for `H`; validators that accept the work release their shares to the
//! worker, who reconstructs `P` from any `k`, checks `sha256(P) = H` and claims. A bad dealing
//! leaves evidence anyone can check.
//!
//! - [`vss`]: Feldman VSS over secp256k1 (k256), reconstruction with the hash check.
//! - [`dealing`]: the signed dealing; validators open shares, release them to the worker.
//! - [`dleq`]: the Chaum–Pedersen proof used by share complaints.
//! - [`evidence`]: bad-share complaints, wrong-preimage and malformed-dealing evidence.
//! - [`tranche`]: tranche schedules and the holdback.
//!
//! Spec: specs/L2T-05-escrow.md

pub mod dealing;
pub mod dleq;
pub mod evidence;
pub mod tranche;
pub mod vss;

pub use dealing::{
    deal, deal_in_offer, deal_with, Corruption, DealingBody, DealingError, DealingParams,
    OfferCipher, ShareChannel, ShareError, SignedDealing, MAX_DEALING_BYTES, MAX_VALIDATORS,
};
pub use evidence::{
    BadShareComplaint, DealerFault, EvidenceError, MalformedDealingEvidence, WrongPreimageEvidence,
};
pub use tranche::{linear_schedule, validate_schedule, TrancheError, TrancheSpec, MAX_TRANCHES};
pub use vss::{Preimage, ReconstructError, Share};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
