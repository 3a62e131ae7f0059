//! l402-sim: the Byzantine simulator: a fast seeded mode, and a real mode of `l402-node`
//! processes ([`real`]).
//!
//! It drives the protocol's own role state machines (`l402_protocol::round::{Coordinator, Peer,
//! Validator}`) — the same code `l402-node` runs — with honest and adversarial actors, in an
//! in-memory world of fakes: relays, a Lightning ledger with hold invoices, blobs and
//! evaluations. Everything random flows from one seed, so a seed replays to the same
//! event-log hash; after every run the global invariants (money conservation, no pay for bad
//! work, no honest work unpaid, replayability) are checked.
//!
//! Module map:
//! - [`scenario`]: the TOML scenario format (`sim/scenarios/*.toml`).
//! - [`world`]: the fakes (`FakeRelays`, `FakeLedger`, `FakeBlobs`, `FakeEvaluator`, clock).
//! - [`actors`]: actor kinds and behaviours.
//! - [`engine`]: the discrete-event engine that drives the machines.
//! - [`report`]: the run report; [`invariants`]: the checks; [`sweep`]: many seeds;
//!   [`plot`]: SVG charts; [`outputs`]: the report files of `--dir`.
//! - [`heatmap`]: the final loss gap over Byzantine share × attack type.
//! - [`real`]: real mode, the scenario's swarm as `l402-node up` processes on a regtest chain.
//!
//! Spec: specs/L2T-12-sim.md
#![warn(missing_docs)]

pub mod actors;
pub mod engine;
pub mod heatmap;
pub mod invariants;
pub mod outputs;
pub mod plot;
pub mod real;
pub mod report;
pub mod scenario;
pub mod sweep;
pub mod world;

pub use engine::Simulation;
pub use invariants::{check, InvariantError, Violation};
pub use report::Report;
pub use scenario::Scenario;
pub use sweep::{
    replay_threads, run_checked, run_checked_with_progress, run_one, run_threads,
    run_with_progress, sweep, Checked, SweepSummary,
};
