//! Embedded Nostr relay for the l402 network.
//!
//! Spec: specs/L2T-07-discovery.md#1-the-embedded-relay
//!
//! One [`EmbeddedRelay`] is nostr-relay-builder's `LocalRelay` (NIP-01 storage, subscriptions,
//! replaceable and addressable events), persisted with nostr-lmdb in a data dir (or in memory),
//! behind a [gate](gate) that enforces our limits and write policy with exact NIP-01 reasons:
//!
//! ```text
//! client ──ws──▶ gate: size cap ▸ parse ▸ rate limit ▸ generic checks ▸ policy ▸ censor ──pipe──▶ LocalRelay ──▶ LMDB
//!         ◀──────────────── OK false "invalid:" / "blocked:" / "rate-limited:" ◀┘
//! ```
//!
//! - [`config`]: every limit as a named constant and a [`RelayConfig`];
//! - [`policy`]: the [`EventPolicy`] trait, rejections, the generic checks;
//! - [`kinds`]: [`L402Policy`], the write policy for the l402 kind set;
//! - [`gate`]: the per-connection front door;
//! - [`relay`]: start/stop, the store;
//! - [`standalone`]: run a relay until Ctrl-C (used by `l402-node relay` and `l402-testnet`).

pub mod config;
pub mod gate;
pub mod kinds;
pub mod policy;
pub mod rate;
pub mod relay;
pub mod standalone;

pub use config::{Censor, CensorMode, ForeignKinds, RateLimits, RelayConfig};
pub use gate::StatsSnapshot;
pub use kinds::L402Policy;
pub use policy::{AnyKind, AsWritePolicy, CheckContext, EventPolicy, RejectPrefix, Rejection};
pub use relay::{EmbeddedRelay, RelayError};
pub use standalone::{serve_until, spawn_relay};
