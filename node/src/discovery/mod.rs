//! Discovery over Nostr: publish and read the l402 kinds on several relays, and keep a live
//! directory of coordinators and their runs, validators (with their bound iroh and Lightning
//! keys) and bounties.
//!
//! Spec: specs/L2T-07-discovery.md
//!
//! - [`pool`]: [`Discovery`], the nostr-sdk client, publishing with acknowledgement tracking,
//!   the embedded relay when none is configured ("no server");
//! - [`outbox`]: what each relay still owes an `OK` for, and the retry backoff;
//! - [`directory`]: the directory itself, pure state fed with verified events;
//! - [`listing`]: the `runs`, `validators` and `bounties` listings (human and JSON);
//! - [`samples`]: deterministic sample announcements for tests, benchmarks and demos.

pub mod directory;
pub mod listing;
pub mod outbox;
pub mod pool;
pub mod samples;

pub use directory::{Directory, Ingested, Listed};
pub use pool::{Discovery, DiscoveryConfig, DiscoveryError, PublishError, PublishReport};
