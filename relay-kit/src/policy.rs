//! Write policies: what the relay refuses, and the NIP-01 reason it gives.
//!
//! A policy is a plain synchronous check over one event; the [gate](crate::gate) runs it before
//! the event reaches nostr-relay-builder's `LocalRelay`, so that the client gets the exact NIP-01
//! prefix (`invalid:`, `blocked:`, `rate-limited:`). A policy can also be plugged straight into a
//! `RelayBuilder` through [`AsWritePolicy`]; there nostr-relay-builder prefixes every rejection
//! with `blocked:` (its `WritePolicy` has no way to choose the prefix), which is why our relay
//! runs policies in the gate instead.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use nostr_relay_builder::prelude::{BoxedFuture, Event, JsonUtil, Kind, Timestamp};
use nostr_relay_builder::{builder::PolicyResult, builder::WritePolicy};

/// The machine-readable prefix of a NIP-01 `OK false` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum RejectPrefix {
    /// The event is malformed, badly signed, expired, oversized or breaks our schema.
    Invalid,
    /// The event is well formed but this relay does not take it (kind, author, censorship).
    Blocked,
    /// The connection is sending too fast.
    RateLimited,
}

impl RejectPrefix {
    /// The prefix as written on the wire, without the colon.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Blocked => "blocked",
            Self::RateLimited => "rate-limited",
        }
    }
}

impl fmt::Display for RejectPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the relay refused an event: a NIP-01 prefix plus a human reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable category.
    pub prefix: RejectPrefix,
    /// Human-readable reason (no prefix).
    pub reason: String,
}

impl Rejection {
    /// An `invalid:` rejection.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self {
            prefix: RejectPrefix::Invalid,
            reason: reason.into(),
        }
    }

    /// A `blocked:` rejection.
    pub fn blocked(reason: impl Into<String>) -> Self {
        Self {
            prefix: RejectPrefix::Blocked,
            reason: reason.into(),
        }
    }

    /// A `rate-limited:` rejection.
    pub fn rate_limited(reason: impl Into<String>) -> Self {
        Self {
            prefix: RejectPrefix::RateLimited,
            reason: reason.into(),
        }
    }

    /// The full NIP-01 message, e.g. `invalid: event is 70000 bytes, the cap is 65536`.
    pub fn to_nip01(&self) -> String {
        format!("{}: {}", self.prefix, self.reason)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nip01())
    }
}

/// What a policy knows about an event besides the event itself.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext {
    /// Length of the client's `["EVENT", …]` message as received (bytes).
    pub raw_len: usize,
    /// The relay's clock.
    pub now: Timestamp,
}

/// A write policy: accept an event or reject it with a reason.
///
/// Implementations must be cheap to call and must do the cheap checks first
/// (sizes and structure before signatures; see `style-anchors.md` §6).
pub trait EventPolicy: fmt::Debug + Send + Sync + 'static {
    /// Accept (`Ok`) or refuse the event.
    fn check(&self, event: &Event, ctx: &CheckContext) -> Result<(), Rejection>;

    /// Does this policy treat `kind` as one of "our" kinds (used by censor mode and listings)?
    fn is_ours(&self, _kind: Kind) -> bool {
        false
    }

    /// Does [`check`](Self::check) verify the id and signature of events of `kind` itself? The
    /// gate then skips its own verification instead of doing the Schnorr check twice.
    fn verifies_signature(&self, _kind: Kind) -> bool {
        false
    }
}

impl<P: EventPolicy + ?Sized> EventPolicy for Arc<P> {
    fn check(&self, event: &Event, ctx: &CheckContext) -> Result<(), Rejection> {
        (**self).check(event, ctx)
    }
    fn is_ours(&self, kind: Kind) -> bool {
        (**self).is_ours(kind)
    }
    fn verifies_signature(&self, kind: Kind) -> bool {
        (**self).verifies_signature(kind)
    }
}

/// Checks every event gets, whatever its kind: size cap, future-dated `created_at`, NIP-40
/// expiration already passed, then id and signature. `LocalRelay` verifies id and signature
/// too; doing it here keeps the `invalid:` reason precise and guarantees that no policy ever
/// looks at an unsigned event.
#[derive(Debug, Clone, Copy)]
pub struct GenericChecks {
    /// Largest event (bytes as sent).
    pub max_event_bytes: usize,
    /// Refuse events dated more than this far ahead (seconds).
    pub max_future_secs: u64,
}

impl GenericChecks {
    /// Runs the generic checks in order: size, dates, id, signature.
    pub fn check(&self, event: &Event, ctx: &CheckContext) -> Result<(), Rejection> {
        self.check_with(event, ctx, true)
    }

    /// [`check`](Self::check), verifying id and signature only if `verify` is set.
    pub fn check_with(
        &self,
        event: &Event,
        ctx: &CheckContext,
        verify: bool,
    ) -> Result<(), Rejection> {
        if ctx.raw_len > self.max_event_bytes {
            return Err(Rejection::invalid(format!(
                "event is {} bytes, the cap is {}",
                ctx.raw_len, self.max_event_bytes
            )));
        }
        if event.created_at.as_secs() > ctx.now.as_secs().saturating_add(self.max_future_secs) {
            return Err(Rejection::invalid(format!(
                "created_at is more than {} s in the future",
                self.max_future_secs
            )));
        }
        if event.is_expired_at(&ctx.now) {
            return Err(Rejection::invalid("event has expired (NIP-40)"));
        }
        if !verify {
            return Ok(());
        }
        if !event.verify_id() {
            return Err(Rejection::invalid("event id does not match its content"));
        }
        if !event.verify_signature() {
            return Err(Rejection::invalid("bad event signature"));
        }
        Ok(())
    }
}

/// A policy that accepts every kind. The gate still applies the [`GenericChecks`]
/// (size, dates, id, signature) before any policy. Used as the benchmarks' baseline arm and for
/// relays that serve other applications too.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyKind;

impl EventPolicy for AnyKind {
    fn check(&self, _event: &Event, _ctx: &CheckContext) -> Result<(), Rejection> {
        Ok(())
    }
}

/// Adapter that plugs an [`EventPolicy`] into a plain `RelayBuilder::write_policy`.
///
/// nostr-relay-builder prefixes every `WritePolicy` rejection with `blocked:`, so the reason
/// text keeps our own prefix after it (`blocked: invalid: …`). Prefer the gate.
#[derive(Debug, Clone)]
pub struct AsWritePolicy<P> {
    /// Size and date checks (and id/signature, which `LocalRelay` repeats).
    pub generic: GenericChecks,
    /// The kind-specific policy.
    pub policy: P,
}

impl<P: EventPolicy> WritePolicy for AsWritePolicy<P> {
    fn admit_event<'a>(
        &'a self,
        event: &'a Event,
        _addr: &'a SocketAddr,
    ) -> BoxedFuture<'a, PolicyResult> {
        Box::pin(async move {
            let ctx = CheckContext {
                // The builder does not expose the raw message; re-serialising is the only way
                // to size the event here.
                raw_len: event.as_json().len(),
                now: Timestamp::now(),
            };
            match self
                .generic
                .check(event, &ctx)
                .and_then(|()| self.policy.check(event, &ctx))
            {
                Ok(()) => PolicyResult::Accept,
                Err(r) => PolicyResult::Reject(r.to_nip01()),
            }
        })
    }
}
