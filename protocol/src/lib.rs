//! l402-protocol: the sans-IO core of the l402 network.
//!
//! Everything here is pure: no sockets, no files, no clock, no RNG. Time and randomness are
//! arguments. `node` (live) and `sim` (simulated) drive these types and state machines.
//!
//! Module map (each module names its `specs/` section in a `//! Spec:` line):
//! - [`sparseloco`]: the SparseLoCo compressor (chunking, top-k, 12-bit indices, 2-bit values,
//!   error feedback, robust aggregation).
//! - [`wire`]: the versioned, canonical CBOR + zstd blob container and the pseudo-gradient format v1.
//! - [`escrow`]: k-of-n verifiable secret sharing of hold-invoice preimages, tranches.
//! - [`quorum`]: validator selection, attestations, tallies, equivocation evidence.
//! - [`l402`]: macaroons, L402 challenges and credentials.
//! - [`events`]: the Nostr kind set, content schemas, builders and validating parsers.
//! - [`hold`]: the persisted payee-side lifecycle of a hold invoice.
//! - [`round`]: coordinator, peer and validator state machines for a training round.
//! - [`training`]: model spec, data-assignment seeds, Gauntlet-style scoring, dense aggregation.
//! - [`bounty`]: the award rules of autoresearch bounties (earliest commitment, margin,
//!   tranches, holdback).
//!
//! Spec: specs/README.md
#![forbid(unsafe_code)]

pub mod blobmeta;
pub mod bounty;
pub mod escrow;
pub mod events;
pub mod hold;
pub mod l402;
pub mod quorum;
pub mod round;
pub mod sparseloco;
pub mod training;
pub mod wire;
