//! The live directory: who is out there, as seen on the relays.
//!
//! Pure state (time is an argument, no IO): [`super::pool`] feeds it every event its
//! subscriptions deliver and sweeps it periodically. Only events that pass
//! `l402_protocol::events::validate_event` (size, id, signature, schema, bindings such as the iroh
//! key's signature over the Nostr key) enter it; every other event is counted under its reason.
//!
//! Entries are keyed by their Nostr address (kind, author, `d`), so a newer announcement replaces
//! an older one (NIP-01 addressable events; ties go to the lower event id, as relays do), and an
//! entry disappears once its NIP-40 `expiration` has passed. The same event arriving from several
//! relays is one entry that remembers every relay it came from.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use l402_protocol::events::{
    self, Bounty, NodeAnnouncement, RejectReason, Role, RunAnnouncement, Verified, VerifiedAny,
};
use nostr_sdk::prelude::{Event, EventId, PublicKey, RelayUrl, Timestamp};
use serde::Serialize;

/// How many recent rejections the directory remembers (for `--json` output and tests).
pub const RECENT_REJECTIONS: usize = 64;

/// Most entries per table (nodes, runs, bounties): identities are free, so a relay serving a
/// Sybil flood of valid announcements must not grow a node's memory without bound. New
/// addresses beyond this are dropped (updates to listed ones still apply).
pub const MAX_ENTRIES_PER_TABLE: usize = 50_000;

/// One directory entry: a verified announcement plus where it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    /// The verified announcement.
    pub verified: Verified<T>,
    /// Relays that delivered this exact event.
    pub relays: BTreeSet<RelayUrl>,
    /// NIP-40 expiration, if the event carries one.
    pub expires_at: Option<Timestamp>,
}

impl<T> Listed<T> {
    fn new(verified: Verified<T>, relay: Option<&RelayUrl>) -> Self {
        let expires_at = verified.event().tags.expiration().copied();
        Self {
            verified,
            relays: relay.cloned().into_iter().collect(),
            expires_at,
        }
    }

    /// The announcement's author (its verified signer).
    pub fn author(&self) -> PublicKey {
        self.verified.author()
    }

    fn live_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// What [`Directory::ingest`] did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ingested {
    /// A new entry.
    Added,
    /// It replaced an older announcement at the same address.
    Replaced {
        /// The replaced event.
        old: EventId,
    },
    /// The exact event was already listed (another relay delivered it too).
    Duplicate,
    /// A newer announcement at the same address is already listed.
    Stale,
    /// The table is at [`MAX_ENTRIES_PER_TABLE`] and this is a new address.
    Full,
    /// A valid l402 event of a kind the directory does not list (round traffic).
    NotListed,
    /// Refused: the event never entered the directory.
    Rejected(RejectReason),
}

/// Directory keys: (author, `d`) within each listed kind.
type Key = (PublicKey, String);

/// The directory of nodes (validators among them), runs and bounties.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    nodes: BTreeMap<PublicKey, Listed<NodeAnnouncement>>,
    runs: BTreeMap<Key, Listed<RunAnnouncement>>,
    bounties: BTreeMap<Key, Listed<Bounty>>,
    rejected: BTreeMap<String, u64>,
    recent_rejections: VecDeque<(EventId, String)>,
}

/// Inserts with NIP-01 replacement rules; `true` in the result when the map changed.
fn upsert<K: Ord, T>(
    map: &mut BTreeMap<K, Listed<T>>,
    key: K,
    verified: Verified<T>,
    relay: Option<&RelayUrl>,
) -> Ingested {
    let full = map.len() >= MAX_ENTRIES_PER_TABLE;
    match map.get_mut(&key) {
        None if full => Ingested::Full,
        None => {
            map.insert(key, Listed::new(verified, relay));
            Ingested::Added
        }
        Some(cur) if cur.verified.id() == verified.id() => {
            if let Some(r) = relay {
                cur.relays.insert(r.clone());
            }
            Ingested::Duplicate
        }
        Some(cur) => {
            let (new_at, cur_at) = (verified.created_at(), cur.verified.created_at());
            let newer = new_at > cur_at || (new_at == cur_at && verified.id() < cur.verified.id());
            if newer {
                let old = cur.verified.id();
                *cur = Listed::new(verified, relay);
                Ingested::Replaced { old }
            } else {
                Ingested::Stale
            }
        }
    }
}

/// The short name of a rejection, used as the counter key (`"BadBinding"`, `"TooLarge"` …).
fn reason_key(r: &RejectReason) -> String {
    let dbg = format!("{r:?}");
    dbg.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates `event` at `now` and, if it is an announcement we list, files it.
    pub fn ingest(&mut self, event: &Event, relay: Option<&RelayUrl>, now: Timestamp) -> Ingested {
        let verified = match events::validate_event(event, now) {
            Ok(v) => v,
            Err(reason) => {
                self.record_rejection(event.id, &reason);
                return Ingested::Rejected(reason);
            }
        };
        match verified {
            VerifiedAny::NodeAnnouncement(v) => upsert(&mut self.nodes, v.author(), v, relay),
            VerifiedAny::RunAnnouncement(v) => {
                let key = (v.author(), v.value().run_id.as_str().to_owned());
                upsert(&mut self.runs, key, v, relay)
            }
            VerifiedAny::Bounty(v) => {
                let key = (v.author(), v.value().bounty_id.as_str().to_owned());
                upsert(&mut self.bounties, key, v, relay)
            }
            _ => Ingested::NotListed,
        }
    }

    fn record_rejection(&mut self, id: EventId, reason: &RejectReason) {
        *self.rejected.entry(reason_key(reason)).or_default() += 1;
        if self.recent_rejections.len() == RECENT_REJECTIONS {
            self.recent_rejections.pop_front();
        }
        self.recent_rejections.push_back((id, reason.to_nip01()));
    }

    /// Drops every entry whose expiration has passed; returns how many were dropped.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let before = self.len();
        self.nodes.retain(|_, l| l.live_at(now));
        self.runs.retain(|_, l| l.live_at(now));
        self.bounties.retain(|_, l| l.live_at(now));
        before - self.len()
    }

    /// Number of entries (nodes, runs and bounties).
    pub fn len(&self) -> usize {
        self.nodes.len() + self.runs.len() + self.bounties.len()
    }

    /// Whether the directory lists nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every announced node, live at `now`, by Nostr key.
    pub fn nodes(&self, now: Timestamp) -> impl Iterator<Item = &Listed<NodeAnnouncement>> {
        self.nodes.values().filter(move |l| l.live_at(now))
    }

    /// The node announcement of `author`, if live.
    pub fn node(&self, author: &PublicKey, now: Timestamp) -> Option<&Listed<NodeAnnouncement>> {
        self.nodes.get(author).filter(|l| l.live_at(now))
    }

    /// Nodes that opted in as validators, live at `now`.
    pub fn validators(&self, now: Timestamp) -> impl Iterator<Item = &Listed<NodeAnnouncement>> {
        self.nodes(now)
            .filter(|l| l.verified.value().is_validator())
    }

    /// Runs live at `now`, by (coordinator, run id).
    pub fn runs(&self, now: Timestamp) -> impl Iterator<Item = &Listed<RunAnnouncement>> {
        self.runs.values().filter(move |l| l.live_at(now))
    }

    /// Bounties live at `now`, by (sponsor, bounty id).
    pub fn bounties(&self, now: Timestamp) -> impl Iterator<Item = &Listed<Bounty>> {
        self.bounties.values().filter(move |l| l.live_at(now))
    }

    /// Coordinators: authors of live runs, with their live runs and (if any) node announcement.
    pub fn coordinators(&self, now: Timestamp) -> Vec<Coordinator<'_>> {
        let mut by_author: BTreeMap<PublicKey, Vec<&Listed<RunAnnouncement>>> = BTreeMap::new();
        for run in self.runs(now) {
            by_author.entry(run.author()).or_default().push(run);
        }
        by_author
            .into_iter()
            .map(|(author, runs)| Coordinator {
                author,
                node: self.node(&author, now),
                runs,
            })
            .collect()
    }

    /// Rejections so far, by reason.
    pub fn rejections(&self) -> &BTreeMap<String, u64> {
        &self.rejected
    }

    /// The last [`RECENT_REJECTIONS`] rejections: event id and NIP-01 reason.
    pub fn recent_rejections(&self) -> impl Iterator<Item = &(EventId, String)> {
        self.recent_rejections.iter()
    }

    /// A one-line summary for logs and test failures.
    pub fn summary(&self, now: Timestamp) -> String {
        format!(
            "nodes={} validators={} runs={} bounties={} rejected={:?}",
            self.nodes(now).count(),
            self.validators(now).count(),
            self.runs(now).count(),
            self.bounties(now).count(),
            self.rejected
        )
    }

    /// Whether `id` is listed (in any table).
    pub fn contains(&self, id: &EventId) -> bool {
        self.nodes.values().any(|l| l.verified.id() == *id)
            || self.runs.values().any(|l| l.verified.id() == *id)
            || self.bounties.values().any(|l| l.verified.id() == *id)
    }
}

/// A coordinator: the author of at least one live run.
#[derive(Debug, Clone)]
pub struct Coordinator<'a> {
    /// Its Nostr key.
    pub author: PublicKey,
    /// Its node announcement, if it published one.
    pub node: Option<&'a Listed<NodeAnnouncement>>,
    /// Its live runs.
    pub runs: Vec<&'a Listed<RunAnnouncement>>,
}

/// Envelope of a directory entry in `--json` output: the standard event fields that matter,
/// the decoded announcement, and where it was seen.
#[derive(Debug, Clone, Serialize)]
pub struct EntryJson<'a, T: Serialize> {
    /// Author, hex.
    pub author: String,
    /// Author, NIP-19 `npub`.
    pub npub: String,
    /// Event id, hex.
    pub event_id: String,
    /// `created_at`, Unix seconds.
    pub created_at: u64,
    /// NIP-40 expiration, Unix seconds.
    pub expires_at: Option<u64>,
    /// Relays that delivered it.
    pub relays: Vec<String>,
    /// The announcement's content.
    pub announcement: &'a T,
}

impl<'a, T: Serialize> EntryJson<'a, T> {
    /// The JSON envelope of `listed`.
    pub fn of(listed: &'a Listed<T>) -> Self {
        use nostr_sdk::prelude::ToBech32;
        let author = listed.author();
        Self {
            author: author.to_hex(),
            npub: author.to_bech32().unwrap_or_default(),
            event_id: listed.verified.id().to_hex(),
            created_at: listed.verified.created_at().as_secs(),
            expires_at: listed.expires_at.map(|t| t.as_secs()),
            relays: listed.relays.iter().map(|r| r.to_string()).collect(),
            announcement: listed.verified.value(),
        }
    }
}

/// Roles as a short comma-separated string (`validator,peer`), spelled as in the JSON content.
pub fn roles_str(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| match serde_json::to_value(r) {
            Ok(serde_json::Value::String(s)) => s,
            _ => format!("{r:?}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::samples;
    use l402_protocol::events::{EventContent, L402Kind};
    use nostr_sdk::prelude::{EventBuilder, JsonUtil, Keys, Tag};

    fn url(p: u16) -> RelayUrl {
        RelayUrl::parse(&format!("ws://127.0.0.1:{p}")).expect("url")
    }

    fn signed<T: EventContent>(c: &T, k: &Keys, at: u64, expires: Option<u64>) -> Event {
        let mut b = events::build(c, Timestamp::from(at));
        if let Some(e) = expires {
            b = b.tag(Tag::expiration(Timestamp::from(e)));
        }
        b.sign_with_keys(k).expect("sign")
    }

    const T0: u64 = 1_800_000_000;

    #[test]
    fn newer_replaces_older_and_duplicates_merge_relays() {
        let k = samples::keys(7, 0);
        let now = Timestamp::from(T0 + 10);
        let mut d = Directory::new();
        let v1 = signed(&samples::run_announcement("r", "v1"), &k, T0, None);
        let v2 = signed(&samples::run_announcement("r", "v2"), &k, T0 + 1, None);
        assert_eq!(d.ingest(&v1, Some(&url(1)), now), Ingested::Added);
        assert_eq!(d.ingest(&v1, Some(&url(2)), now), Ingested::Duplicate);
        assert_eq!(
            d.ingest(&v2, Some(&url(1)), now),
            Ingested::Replaced { old: v1.id }
        );
        assert_eq!(d.ingest(&v1, Some(&url(1)), now), Ingested::Stale);
        let runs: Vec<_> = d.runs(now).collect();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].verified.value().title, "v2");
        assert_eq!(runs[0].relays, BTreeSet::from([url(1)]));
        // Another coordinator's run with the same id is a separate entry.
        let other = signed(
            &samples::run_announcement("r", "x"),
            &samples::keys(7, 1),
            T0,
            None,
        );
        assert_eq!(d.ingest(&other, None, now), Ingested::Added);
        assert_eq!(d.coordinators(now).len(), 2);
    }

    #[test]
    fn entries_expire_with_their_announcement() {
        let k = samples::keys(7, 2);
        let ann = samples::node_announcement(&k, 7, 2, true);
        let ev = signed(&ann, &k, T0, Some(T0 + 60));
        let mut d = Directory::new();
        assert_eq!(d.ingest(&ev, None, Timestamp::from(T0)), Ingested::Added);
        assert_eq!(d.validators(Timestamp::from(T0 + 59)).count(), 1);
        assert_eq!(
            d.validators(Timestamp::from(T0 + 60)).count(),
            0,
            "hidden once expired"
        );
        assert_eq!(d.expire(Timestamp::from(T0 + 60)), 1);
        assert!(d.is_empty());
        // Arriving after its expiration, it never enters.
        assert!(matches!(
            d.ingest(&ev, None, Timestamp::from(T0 + 61)),
            Ingested::Rejected(RejectReason::Expired)
        ));
    }

    #[test]
    fn invalid_events_never_enter_and_are_counted_by_reason() {
        let now = Timestamp::from(T0);
        let (k, other) = (samples::keys(8, 0), samples::keys(8, 1));
        let mut d = Directory::new();
        // Wrongly bound: the iroh signature binds `other`, the event is signed by `k`.
        let bound_to_other = samples::node_announcement(&other, 8, 1, true);
        let wrong = signed(&bound_to_other, &k, T0, None);
        // Bad signature: valid event, signature of another event.
        let good = signed(&samples::run_announcement("r", "t"), &k, T0, None);
        let mut j: serde_json::Value = serde_json::from_str(&good.as_json()).expect("json");
        j["sig"] = wrong.sig.to_string().into();
        let badsig = Event::from_json(j.to_string()).expect("structurally valid");
        // Schema: k > n.
        let mut run = samples::run_announcement("r2", "t");
        run.k = 9;
        let schema = signed(&run, &k, T0, None);
        // Oversized content.
        let big = signed(
            &samples::run_announcement("r3", &"x".repeat(70_000)),
            &k,
            T0,
            None,
        );
        // Tags that disagree with the content (d tag of another run).
        let r4 = samples::run_announcement("r4", "t");
        let mismatch = EventBuilder::new(L402Kind::RunAnnouncement.kind(), r4.to_content())
            .tags(samples::run_announcement("r5", "t").tags())
            .custom_created_at(now)
            .sign_with_keys(&k)
            .expect("sign");
        for ev in [&wrong, &badsig, &schema, &big, &mismatch] {
            assert!(
                matches!(d.ingest(ev, None, now), Ingested::Rejected(_)),
                "{}",
                ev.id
            );
            assert!(!d.contains(&ev.id));
        }
        assert!(d.is_empty());
        let keys: Vec<&str> = d.rejections().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "BadBinding",
                "BadSignature",
                "Schema",
                "TagMismatch",
                "TooLarge"
            ]
        );
        assert_eq!(d.recent_rejections().count(), 5);
        assert_eq!(
            d.ingest(&good, None, now),
            Ingested::Added,
            "control: a valid run is listed"
        );
    }
}
