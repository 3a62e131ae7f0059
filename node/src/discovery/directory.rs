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
    match map.get_mut(&key) {
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
        self.nodes(now).filter(|l| l.verified.value().is_validator())
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
