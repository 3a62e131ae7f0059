//! Every tunable of the embedded relay, as named constants and one [`RelayConfig`].
//!
//! The defaults are sized for an l402 swarm: a coordinator publishes an escrow offer per
//! submission in bursts, validators publish an attestation per submission, and nothing we
//! publish is larger than a few kilobytes (blobs travel over iroh, never over Nostr).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use nostr_relay_builder::prelude::Kind;

/// Default TCP port of the embedded relay when a node runs it on a fixed address.
pub const DEFAULT_PORT: u16 = 4869;

/// Largest event, serialised as the client sent it, that the relay considers (bytes).
/// Larger events are answered `invalid:` without a full parse.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Largest websocket message the relay reads at all (bytes). Beyond this the websocket layer
/// refuses the frame before allocating it and the connection is closed.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// Sustained EVENT rate allowed per connection (events per minute).
///
/// nostr-relay-builder's own default is 60/min, far too low for a coordinator answering a
/// round's submissions (../shared/reference/upstream-apis.md §10), so the gate sets its own.
pub const EVENTS_PER_MINUTE: u32 = 1_200;

/// Burst of EVENTs a connection may send at once before the sustained rate applies.
pub const EVENT_BURST: u32 = 300;

/// Maximum simultaneous open subscriptions (REQs) per connection.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// Maximum simultaneous connections to the relay.
pub const MAX_CONNECTIONS: usize = 1_024;

/// `limit` applied to a REQ filter that carries none (nostr-relay-builder's default is 500,
/// which silently truncates directory listings).
pub const DEFAULT_FILTER_LIMIT: usize = 5_000;

/// Largest `limit` a REQ filter may ask for.
pub const MAX_FILTER_LIMIT: usize = 10_000;

/// Events dated further than this in the future are refused (seconds). Matches strfry's
/// default window and tolerates the clock skew the test matrix (F7) asks for.
pub const MAX_FUTURE_SECS: u64 = 900;

/// Upper bound on events kept by the in-memory backend (used when no data dir is given).
pub const MEMORY_MAX_EVENTS: usize = 200_000;

/// How the relay treats kinds that are not part of the l402 kind set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForeignKinds {
    /// Refuse them with `blocked:`: the embedded relay serves the l402 network only.
    #[default]
    Reject,
    /// Store them after the generic checks (size, signature, expiration).
    Accept,
}

/// How a censoring relay behaves towards the kinds it censors. Used by tests and by the
/// simulator to play the "censoring relay" adversary (test matrix A11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CensorMode {
    /// Answer `OK true` and store nothing: the publisher believes the relay took the event.
    SilentDrop,
    /// Answer `OK false` with a `blocked:` reason.
    Reject,
}

/// A censorship rule: which kinds to censor, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Censor {
    /// The censored kinds.
    pub kinds: BTreeSet<Kind>,
    /// What the relay answers to a censored event.
    pub mode: CensorMode,
}

/// Rate limits enforced by the relay's gate, per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Sustained EVENTs per minute.
    pub events_per_minute: u32,
    /// Burst size (bucket capacity).
    pub event_burst: u32,
    /// Open subscriptions per connection.
    pub max_subscriptions: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            events_per_minute: EVENTS_PER_MINUTE,
            event_burst: EVENT_BURST,
            max_subscriptions: MAX_SUBSCRIPTIONS,
        }
    }
}

impl RateLimits {
    /// Limits high enough never to trigger; for benchmarks that measure raw ingest.
    pub fn unlimited() -> Self {
        Self {
            events_per_minute: u32::MAX,
            event_burst: u32::MAX,
            max_subscriptions: MAX_SUBSCRIPTIONS,
        }
    }
}

/// Configuration of one embedded relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address to listen on. Port 0 picks a free port; the default is `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Directory of the LMDB store. `None` keeps events in memory only.
    pub data_dir: Option<PathBuf>,
    /// Per-connection rate limits.
    pub rate: RateLimits,
    /// Largest event accepted (bytes, as sent).
    pub max_event_bytes: usize,
    /// Largest websocket message read at all (bytes).
    pub max_message_bytes: usize,
    /// Maximum simultaneous connections.
    pub max_connections: usize,
    /// Events dated more than this many seconds ahead are refused.
    pub max_future_secs: u64,
    /// Treatment of kinds outside the l402 set.
    pub foreign_kinds: ForeignKinds,
    /// Optional censorship rule (tests and simulations only).
    pub censor: Option<Censor>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            data_dir: None,
            rate: RateLimits::default(),
            max_event_bytes: MAX_EVENT_BYTES,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_connections: MAX_CONNECTIONS,
            max_future_secs: MAX_FUTURE_SECS,
            foreign_kinds: ForeignKinds::default(),
            censor: None,
        }
    }
}

impl RelayConfig {
    /// A relay persisted in `data_dir`, on `listen`.
    pub fn persistent(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            data_dir: Some(data_dir.into()),
            ..Self::default()
        }
    }

    /// An in-memory relay on a free loopback port.
    pub fn in_memory() -> Self {
        Self::default()
    }
}
