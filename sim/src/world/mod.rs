//! The in-memory world of the fast mode: every component here is a FAKE standing in for a real
//! one (relay-kit relays, ldk-node, iroh blobs, candle evaluation), named as such.
//!
//! - [`clock`]: simulated Unix time and block height.
//! - [`relays`]: `FakeRelays`, Nostr relays that validate, deduplicate, store, drop, delay,
//!   duplicate and censor.
//! - [`ledger`]: `FakeLedger`, Lightning balances and hold-invoice HTLCs with expiry.
//! - [`evaluator`]: `FakeBlobs` (who holds which blob) and `FakeEvaluator` (deterministic scores).
//! - [`loss`]: `FakeLossModel`, the held-out loss of the merged checkpoints.
//!
//! Spec: specs/L2T-12-sim.md#world

pub mod clock;
pub mod evaluator;
pub mod ledger;
pub mod loss;
pub mod relays;

pub use clock::SimClock;
pub use evaluator::{BlobTruth, FakeBlobs, FakeEvaluator};
pub use ledger::{FakeLedger, HtlcState, LedgerAudit, LedgerError};
pub use loss::FakeLossModel;
pub use relays::{FakeRelays, Published};
