//! The outbox: which of our events each relay still has to acknowledge, and when to retry.
//!
//! Pure bookkeeping (time is an argument), driven by [`super::pool`]. An event stays in the
//! outbox until every configured relay has answered `OK true` or refused it for good
//! (`invalid:`, `blocked:` …). Transport failures and `rate-limited:` are retried with an
//! exponential backoff per relay; a reconnect makes everything due for that relay at once.
//! A newer event with the same address (kind, author, `d`) replaces the older one, so a
//! relay that was down for a while receives only the latest announcement.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use nostr_sdk::prelude::{
    Event, EventId, Kind, MachineReadablePrefix, PublicKey, RelayUrl, Timestamp,
};

/// First retry delay after a transient failure.
pub const RETRY_BASE: Duration = Duration::from_millis(500);
/// Longest delay between two retries to one relay.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Most events the outbox holds; the oldest are dropped beyond this (they were published to at
/// least the relays that answered; losing a retry is a liveness issue, not a safety one).
pub const OUTBOX_CAPACITY: usize = 4_096;

/// How one relay answered one EVENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// `OK true` (including `duplicate:`).
    Accepted,
    /// `OK false` for a reason that retrying will not change.
    Refused(String),
    /// No answer, not connected, or `rate-limited:`: try again later.
    Transient(String),
}

impl SendOutcome {
    /// Classifies a failure message from nostr-sdk's `Output::failed`: relay answers carry a
    /// NIP-01 prefix, transport errors do not.
    pub fn from_failure(message: &str) -> Self {
        match MachineReadablePrefix::parse(message) {
            Some(MachineReadablePrefix::RateLimited) | None => Self::Transient(message.to_owned()),
            Some(MachineReadablePrefix::Duplicate) => Self::Accepted,
            Some(_) => Self::Refused(message.to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
struct Retry {
    attempts: u32,
    next_at: Instant,
}

#[derive(Debug, Clone)]
struct Entry {
    event: Event,
    pending: BTreeMap<RelayUrl, Retry>,
    seq: u64,
}

/// Address of a replaceable or addressable event: later events at one address replace earlier ones.
type Address = (Kind, PublicKey, String);

fn address_of(event: &Event) -> Option<Address> {
    if event.kind.is_addressable() {
        Some((
            event.kind,
            event.pubkey,
            event.tags.identifier().unwrap_or("").to_owned(),
        ))
    } else if event.kind.is_replaceable() {
        Some((event.kind, event.pubkey, String::new()))
    } else {
        None
    }
}

/// Backoff before attempt `attempts + 1`.
pub fn backoff(attempts: u32) -> Duration {
    let factor = 1u32.checked_shl(attempts.min(16)).unwrap_or(u32::MAX);
    RETRY_BASE.saturating_mul(factor).min(RETRY_MAX)
}

/// Events still to be acknowledged, per relay.
#[derive(Debug, Default)]
pub struct Outbox {
    entries: BTreeMap<EventId, Entry>,
    by_address: BTreeMap<Address, EventId>,
    seq: u64,
}

impl Outbox {
    /// Tracks `event` for the relays in `pending` (those that have not acknowledged it yet).
    /// Returns the id of an older event at the same address that this one replaces, if any.
    pub fn insert(
        &mut self,
        event: Event,
        pending: impl IntoIterator<Item = RelayUrl>,
        now: Instant,
    ) -> Option<EventId> {
        let mut replaced = None;
        if let Some(addr) = address_of(&event) {
            if let Some(old) = self.by_address.get(&addr).copied() {
                if let Some(old_entry) = self.entries.get(&old) {
                    if old_entry.event.created_at > event.created_at {
                        return None; // ours is older than what we already publish
                    }
                }
                self.entries.remove(&old);
                replaced = Some(old);
            }
            self.by_address.insert(addr, event.id);
        }
        let pending: BTreeMap<RelayUrl, Retry> = pending
            .into_iter()
            .map(|url| {
                (
                    url,
                    Retry {
                        attempts: 0,
                        next_at: now,
                    },
                )
            })
            .collect();
        if pending.is_empty() {
            if let Some(addr) = address_of(&event) {
                self.by_address.remove(&addr);
            }
            return replaced;
        }
        self.seq += 1;
        self.entries.insert(
            event.id,
            Entry {
                event,
                pending,
                seq: self.seq,
            },
        );
        while self.entries.len() > OUTBOX_CAPACITY {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.seq)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => self.remove(&id),
                None => break,
            }
        }
        replaced
    }

    fn remove(&mut self, id: &EventId) {
        if let Some(entry) = self.entries.remove(id) {
            if let Some(addr) = address_of(&entry.event) {
                if self.by_address.get(&addr) == Some(id) {
                    self.by_address.remove(&addr);
                }
            }
        }
    }

    /// Records how `relay` answered `id`.
    pub fn record(&mut self, id: &EventId, relay: &RelayUrl, outcome: &SendOutcome, now: Instant) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        match outcome {
            SendOutcome::Accepted | SendOutcome::Refused(_) => {
                entry.pending.remove(relay);
            }
            SendOutcome::Transient(_) => {
                if let Some(r) = entry.pending.get_mut(relay) {
                    r.attempts = r.attempts.saturating_add(1);
                    r.next_at = now + backoff(r.attempts);
                }
            }
        }
        if entry.pending.is_empty() {
            self.remove(id);
        }
    }

    /// Marks a send to `relay` as in flight until `until` (it is not due again before then,
    /// and the attempt count is unchanged until its outcome is recorded).
    pub fn mark_in_flight(&mut self, id: &EventId, relay: &RelayUrl, until: Instant) {
        if let Some(r) = self
            .entries
            .get_mut(id)
            .and_then(|e| e.pending.get_mut(relay))
        {
            r.next_at = until;
        }
    }

    /// Makes every pending event due now for `relay` (it has just (re)connected).
    pub fn relay_connected(&mut self, relay: &RelayUrl, now: Instant) {
        for entry in self.entries.values_mut() {
            if let Some(r) = entry.pending.get_mut(relay) {
                r.next_at = now;
            }
        }
    }

    /// Drops events whose NIP-40 expiration has passed.
    pub fn prune_expired(&mut self, now: Timestamp) {
        let expired: Vec<EventId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.event.is_expired_at(&now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }

    /// The (relay, event) pairs due at `now`, restricted to relays in `connected`, oldest first.
    pub fn due(&self, now: Instant, connected: &BTreeSet<RelayUrl>) -> Vec<(RelayUrl, Event)> {
        let mut out: Vec<(u64, RelayUrl, Event)> = Vec::new();
        for entry in self.entries.values() {
            for (url, r) in &entry.pending {
                if r.next_at <= now && connected.contains(url) {
                    out.push((entry.seq, url.clone(), entry.event.clone()));
                }
            }
        }
        out.sort_by_key(|(seq, url, _)| (*seq, url.clone()));
        out.into_iter().map(|(_, u, e)| (u, e)).collect()
    }

    /// Relays that still owe an acknowledgement for `id`.
    pub fn pending_for(&self, id: &EventId) -> BTreeSet<RelayUrl> {
        self.entries
            .get(id)
            .map(|e| e.pending.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of events waiting for at least one relay.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr_sdk::prelude::{EventBuilder, Keys, Tag};

    fn url(p: u16) -> RelayUrl {
        RelayUrl::parse(&format!("ws://127.0.0.1:{p}")).expect("url")
    }

    fn addressable(keys: &Keys, d: &str, at: u64) -> Event {
        EventBuilder::new(Kind::Custom(30_999), "x")
            .tag(Tag::identifier(d))
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(keys)
            .expect("sign")
    }

    #[test]
    fn classifies_relay_answers_and_transport_errors() {
        assert_eq!(
            SendOutcome::from_failure("invalid: bad schema"),
            SendOutcome::Refused("invalid: bad schema".into())
        );
        assert!(matches!(
            SendOutcome::from_failure("rate-limited: slow down"),
            SendOutcome::Transient(_)
        ));
        assert!(matches!(
            SendOutcome::from_failure("relay not connected"),
            SendOutcome::Transient(_)
        ));
        assert_eq!(
            SendOutcome::from_failure("duplicate: have it"),
            SendOutcome::Accepted
        );
    }

    #[test]
    fn retries_back_off_and_reconnect_makes_due() {
        let keys = Keys::generate();
        let t0 = Instant::now();
        let mut ob = Outbox::default();
        let ev = addressable(&keys, "a", 1_000);
        ob.insert(ev.clone(), [url(1), url(2)], t0);
        let all = BTreeSet::from([url(1), url(2)]);
        assert_eq!(ob.due(t0, &all).len(), 2);
        assert_eq!(
            ob.due(t0, &BTreeSet::from([url(2)])).len(),
            1,
            "only connected relays"
        );
        ob.record(&ev.id, &url(1), &SendOutcome::Accepted, t0);
        ob.record(
            &ev.id,
            &url(2),
            &SendOutcome::Transient("timeout".into()),
            t0,
        );
        assert!(ob.due(t0, &all).is_empty());
        assert_eq!(ob.due(t0 + backoff(1), &all).len(), 1);
        ob.record(
            &ev.id,
            &url(2),
            &SendOutcome::Transient("timeout".into()),
            t0,
        );
        assert!(
            ob.due(t0 + backoff(1), &all).is_empty(),
            "second failure waits longer"
        );
        ob.relay_connected(&url(2), t0);
        assert_eq!(ob.due(t0, &all).len(), 1);
        ob.record(
            &ev.id,
            &url(2),
            &SendOutcome::Refused("blocked: no".into()),
            t0,
        );
        assert!(ob.is_empty());
        assert_eq!(backoff(30), RETRY_MAX);
    }

    #[test]
    fn newer_announcement_replaces_older_in_the_outbox() {
        let keys = Keys::generate();
        let t0 = Instant::now();
        let mut ob = Outbox::default();
        let old = addressable(&keys, "a", 1_000);
        let new = addressable(&keys, "a", 2_000);
        ob.insert(old.clone(), [url(1)], t0);
        assert_eq!(ob.insert(new.clone(), [url(1)], t0), Some(old.id));
        let due = ob.due(t0, &BTreeSet::from([url(1)]));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.id, new.id);
        // An older one arriving late does not displace the newer.
        assert_eq!(ob.insert(old, [url(1)], t0), None);
        assert_eq!(ob.len(), 1);
        assert_eq!(ob.pending_for(&new.id), BTreeSet::from([url(1)]));
    }
}
