//! Blob metadata: the node's persisted blob index (which rounds a blob belongs to, who may fetch
//! it, when it may be garbage-collected) and the messages of the optional libp2p blob transport.
//!
//! Blobs themselves are opaque BLAKE3-addressed bytes (the container is [`crate::wire`]); this
//! module only decides *who may receive which hash* and *which hashes are dead*. It is pure: the
//! node feeds it requests and applies the decisions to its iroh-blobs store.
//!
//! Spec: specs/L2T-09-blobs.md

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_cbor::Value;

pub use crate::wire::BlobId;

/// An ed25519 public key: the node's iroh `EndpointId`, and the key behind its libp2p `PeerId`.
pub type PeerKey = [u8; 32];

/// Version of the persisted [`BlobIndex`] encoding.
pub const BLOB_INDEX_VERSION: u64 = 1;
/// Largest encoded index accepted by [`BlobIndex::decode`] (checked before parsing).
pub const MAX_INDEX_BYTES: usize = 64 << 20;
/// Longest run id accepted in a [`RoundKey`], in bytes (the container's cap).
pub const MAX_RUN_ID_LEN: usize = crate::wire::MAX_RUN_ID_BYTES;
/// Most peers a restricted blob may name as allowed readers.
pub const MAX_ALLOWED_PER_BLOB: usize = 4096;
/// Most rounds a single blob may be attached to.
pub const MAX_ROUNDS_PER_BLOB: usize = 1024;

/// Names one round of one run: the unit of access control and garbage collection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoundKey {
    /// The run's id (the `d` tag of its run announcement).
    pub run: String,
    /// The round number within the run.
    pub round: u64,
}

impl RoundKey {
    /// Builds a round key, rejecting run ids that are empty or longer than [`MAX_RUN_ID_LEN`].
    pub fn new(run: impl Into<String>, round: u64) -> Result<Self, IndexError> {
        let run = run.into();
        if run.is_empty() || run.len() > MAX_RUN_ID_LEN {
            return Err(IndexError::BadRunId { len: run.len() });
        }
        Ok(Self { run, round })
    }
}

/// Who may fetch a blob from this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone who knows the hash.
    Public,
    /// Only the listed peers, until the blob (or its round) is released.
    Restricted {
        /// The peers allowed to fetch the blob (the round's validators and coordinator).
        allowed: BTreeSet<PeerKey>,
    },
}

impl Access {
    /// A restricted access list naming `peers`.
    pub fn restricted(peers: impl IntoIterator<Item = PeerKey>) -> Self {
        Self::Restricted {
            allowed: peers.into_iter().collect(),
        }
    }

    /// Merges two access rules for the same bytes: public wins (the bytes are public anyway),
    /// restricted lists are united.
    fn merge(&mut self, other: &Access) {
        match (&mut *self, other) {
            (Access::Public, _) => {}
            (_, Access::Public) => *self = Access::Public,
            (Access::Restricted { allowed }, Access::Restricted { allowed: more }) => {
                allowed.extend(more.iter().copied());
            }
        }
    }
}

/// Where a newly stored blob belongs and who may read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The round the blob belongs to; `None` pins it (never collected by round GC).
    pub round: Option<RoundKey>,
    /// Who may fetch it from this node.
    pub access: Access,
}

impl Placement {
    /// A public blob that belongs to no round (a bounty baseline, an eval set).
    pub fn pinned_public() -> Self {
        Self {
            round: None,
            access: Access::Public,
        }
    }

    /// A public blob of `round` (a checkpoint, a released submission).
    pub fn public_in(round: RoundKey) -> Self {
        Self {
            round: Some(round),
            access: Access::Public,
        }
    }

    /// A blob of `round` served only to `allowed` until released (a submission before escrow).
    pub fn restricted_in(round: RoundKey, allowed: impl IntoIterator<Item = PeerKey>) -> Self {
        Self {
            round: Some(round),
            access: Access::restricted(allowed),
        }
    }
}

/// What the index knows about one stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    /// Size of the blob in bytes.
    pub size: u64,
    /// The rounds the blob belongs to.
    pub rounds: BTreeSet<RoundKey>,
    /// Who may fetch it.
    pub access: Access,
    /// Pinned blobs are never removed by round garbage collection.
    pub pinned: bool,
    /// Unknown odd keys read from a newer encoding, kept and re-emitted unchanged.
    pub extensions: BTreeMap<i128, Value>,
}

/// Whether to serve a request for a hash to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeDecision {
    /// Serve it.
    Serve,
    /// The hash is unknown to the index: refuse (fail closed).
    Unknown,
    /// The blob is restricted and the requester is not on its list.
    NotAllowed,
}

/// Errors of index operations and of decoding a persisted index.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexError {
    /// A run id was empty or too long.
    #[error("run id length {len} is outside 1..={MAX_RUN_ID_LEN}")]
    BadRunId {
        /// Length of the rejected run id.
        len: usize,
    },
    /// The same hash was recorded with two different sizes.
    #[error("blob {hash} recorded with size {known}, now claimed {claimed}")]
    SizeConflict {
        /// Hex hash of the blob.
        hash: String,
        /// Size already in the index.
        known: u64,
        /// Size of the new record.
        claimed: u64,
    },
    /// A cap on allowed peers or rounds per blob was exceeded.
    #[error("blob {hash}: {what} exceeds the cap of {cap}")]
    CapExceeded {
        /// Hex hash of the blob.
        hash: String,
        /// What overflowed.
        what: &'static str,
        /// The cap.
        cap: usize,
    },
    /// The encoded index is larger than [`MAX_INDEX_BYTES`].
    #[error("encoded index of {len} bytes exceeds {MAX_INDEX_BYTES}")]
    TooLarge {
        /// Length of the input.
        len: usize,
    },
    /// The encoded index is not valid CBOR of the expected shape.
    #[error("malformed blob index: {0}")]
    Malformed(String),
    /// The encoded index has a version this code does not know.
    #[error("unsupported blob index version {0}")]
    UnsupportedVersion(u64),
    /// The encoded index has an unknown required (even) field.
    #[error("unknown required field {0} in blob index")]
    UnknownRequiredField(i128),
}

/// The node's record of every blob it stores: the source of truth for access control and GC.
///
/// Ordered maps throughout, so the encoding is deterministic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobIndex {
    entries: BTreeMap<BlobId, BlobEntry>,
    /// Unknown odd top-level keys, kept and re-emitted unchanged.
    extensions: BTreeMap<i128, Value>,
}

impl BlobIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of blobs recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no blob is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `hash`, if recorded.
    pub fn get(&self, hash: &BlobId) -> Option<&BlobEntry> {
        self.entries.get(hash)
    }

    /// Iterates over all entries in hash order.
    pub fn iter(&self) -> impl Iterator<Item = (&BlobId, &BlobEntry)> {
        self.entries.iter()
    }

    /// Records that the node stores `hash` (`size` bytes) with `placement`. Recording the same
    /// hash again merges: rounds are united, access is merged (public wins), pinned sticks.
    pub fn insert(
        &mut self,
        hash: BlobId,
        size: u64,
        placement: &Placement,
    ) -> Result<(), IndexError> {
        let hex_hash = || hash.to_hex();
        if let Some(round) = &placement.round {
            RoundKey::new(round.run.clone(), round.round)?;
        }
        if let Access::Restricted { allowed } = &placement.access {
            if allowed.len() > MAX_ALLOWED_PER_BLOB {
                return Err(IndexError::CapExceeded {
                    hash: hex_hash(),
                    what: "allowed peers",
                    cap: MAX_ALLOWED_PER_BLOB,
                });
            }
        }
        let mut entry = match self.entries.get(&hash) {
            Some(known) if known.size != size => {
                return Err(IndexError::SizeConflict {
                    hash: hex_hash(),
                    known: known.size,
                    claimed: size,
                })
            }
            Some(known) => {
                let mut entry = known.clone();
                entry.access.merge(&placement.access);
                entry
            }
            None => BlobEntry {
                size,
                rounds: BTreeSet::new(),
                access: placement.access.clone(),
                pinned: false,
                extensions: BTreeMap::new(),
            },
        };
        match &placement.round {
            Some(round) => {
                entry.rounds.insert(round.clone());
            }
            None => entry.pinned = true,
        }
        check_entry_caps(&hash, &entry)?;
        self.entries.insert(hash, entry);
        Ok(())
    }

    /// Decides whether to serve `hash` to `requester`. Unknown hashes are refused.
    pub fn serve_decision(&self, hash: &BlobId, requester: &PeerKey) -> ServeDecision {
        match self.entries.get(hash) {
            None => ServeDecision::Unknown,
            Some(BlobEntry {
                access: Access::Public,
                ..
            }) => ServeDecision::Serve,
            Some(BlobEntry {
                access: Access::Restricted { allowed },
                ..
            }) if allowed.contains(requester) => ServeDecision::Serve,
            Some(_) => ServeDecision::NotAllowed,
        }
    }

    /// Adds `peers` to the allowed list of every restricted blob of `round`. Returns how many
    /// blobs changed.
    pub fn allow(
        &mut self,
        round: &RoundKey,
        peers: &BTreeSet<PeerKey>,
    ) -> Result<usize, IndexError> {
        let mut changed = 0;
        for (hash, entry) in self.entries.iter_mut() {
            if !entry.rounds.contains(round) {
                continue;
            }
            if let Access::Restricted { allowed } = &mut entry.access {
                let before = allowed.len();
                let union: BTreeSet<PeerKey> = allowed.union(peers).copied().collect();
                if union.len() > MAX_ALLOWED_PER_BLOB {
                    return Err(IndexError::CapExceeded {
                        hash: hash.to_hex(),
                        what: "allowed peers",
                        cap: MAX_ALLOWED_PER_BLOB,
                    });
                }
                *allowed = union;
                if allowed.len() != before {
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    /// Makes every restricted blob of `round` public (the escrow is locked: commit-reveal is
    /// over). Returns the hashes released, in order.
    pub fn release_round(&mut self, round: &RoundKey) -> Vec<BlobId> {
        let mut released = Vec::new();
        for (hash, entry) in self.entries.iter_mut() {
            if entry.rounds.contains(round) && entry.access != Access::Public {
                entry.access = Access::Public;
                released.push(*hash);
            }
        }
        released
    }

    /// Makes one blob public. Returns false if the hash is unknown.
    pub fn release_blob(&mut self, hash: &BlobId) -> bool {
        match self.entries.get_mut(hash) {
            Some(entry) => {
                entry.access = Access::Public;
                true
            }
            None => false,
        }
    }

    /// Garbage-collects the rounds of `run` older than `keep_from_round`: detaches them from
    /// every blob, and removes the blobs that are left with no round and are not pinned.
    /// Returns the removed hashes, in order; the node then deletes their bytes.
    pub fn collect_rounds_before(&mut self, run: &str, keep_from_round: u64) -> Vec<BlobId> {
        let mut dead = Vec::new();
        for (hash, entry) in self.entries.iter_mut() {
            let before = entry.rounds.len();
            entry
                .rounds
                .retain(|r| r.run != run || r.round >= keep_from_round);
            if entry.rounds.len() != before && entry.rounds.is_empty() && !entry.pinned {
                dead.push(*hash);
            }
        }
        for hash in &dead {
            self.entries.remove(hash);
        }
        dead
    }

    /// Forgets one blob regardless of rounds or pins. Returns its entry if it was recorded.
    pub fn remove(&mut self, hash: &BlobId) -> Option<BlobEntry> {
        self.entries.remove(hash)
    }

    /// Encodes the index as deterministic CBOR with integer keys (`{0: version, 1: entries}`).
    pub fn encode(&self) -> Vec<u8> {
        let entries = self
            .entries
            .iter()
            .map(|(hash, entry)| encode_entry(hash, entry))
            .collect();
        let top = with_extensions(
            int_map([
                (0, Value::Integer(BLOB_INDEX_VERSION.into())),
                (1, Value::Array(entries)),
            ]),
            &self.extensions,
        );
        // Writing a Value into a Vec cannot fail: every map key is an integer.
        serde_cbor::to_vec(&top).unwrap_or_default()
    }

    /// Decodes a persisted index: size cap first, then version, then fields. Unknown even keys
    /// are rejected, unknown odd keys kept (and re-emitted by [`Self::encode`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, IndexError> {
        if bytes.len() > MAX_INDEX_BYTES {
            return Err(IndexError::TooLarge { len: bytes.len() });
        }
        let value: Value =
            serde_cbor::from_slice(bytes).map_err(|e| IndexError::Malformed(e.to_string()))?;
        let top = as_int_map(value, "index")?;
        let version = top
            .get(&0)
            .and_then(as_u64)
            .ok_or_else(|| malformed("index version"))?;
        if version != BLOB_INDEX_VERSION {
            return Err(IndexError::UnsupportedVersion(version));
        }
        check_known_keys(&top, &[0, 1])?;
        let Some(Value::Array(items)) = top.get(&1).cloned() else {
            return Err(malformed("index entries"));
        };
        let mut index = BlobIndex {
            entries: BTreeMap::new(),
            extensions: odd_extensions(&top, &[0, 1]),
        };
        for item in items {
            let (hash, entry) = decode_entry(item)?;
            check_entry_caps(&hash, &entry)?;
            if index.entries.insert(hash, entry).is_some() {
                return Err(malformed("duplicate hash in index"));
            }
        }
        Ok(index)
    }
}

fn check_entry_caps(hash: &BlobId, entry: &BlobEntry) -> Result<(), IndexError> {
    if entry.rounds.len() > MAX_ROUNDS_PER_BLOB {
        return Err(IndexError::CapExceeded {
            hash: hash.to_hex(),
            what: "rounds",
            cap: MAX_ROUNDS_PER_BLOB,
        });
    }
    if let Access::Restricted { allowed } = &entry.access {
        if allowed.len() > MAX_ALLOWED_PER_BLOB {
            return Err(IndexError::CapExceeded {
                hash: hash.to_hex(),
                what: "allowed peers",
                cap: MAX_ALLOWED_PER_BLOB,
            });
        }
    }
    Ok(())
}

fn malformed(what: &str) -> IndexError {
    IndexError::Malformed(format!("bad or missing {what}"))
}

fn int_map<const N: usize>(pairs: [(i128, Value); N]) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::Integer(k), v))
            .collect(),
    )
}

fn as_int_map(value: Value, what: &str) -> Result<BTreeMap<i128, Value>, IndexError> {
    let Value::Map(map) = value else {
        return Err(malformed(what));
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Value::Integer(k) = k else {
            return Err(malformed(what));
        };
        out.insert(k, v);
    }
    Ok(out)
}

fn check_known_keys(map: &BTreeMap<i128, Value>, known: &[i128]) -> Result<(), IndexError> {
    for key in map.keys() {
        if !known.contains(key) && key % 2 == 0 {
            return Err(IndexError::UnknownRequiredField(*key));
        }
    }
    Ok(())
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Integer(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn as_key(value: &Value) -> Option<[u8; 32]> {
    match value {
        Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice()).ok(),
        _ => None,
    }
}

// Entry layout: {0: hash(bytes32), 1: size, 2: [[run, round]...], 3: allowed([bytes32...]) or null
// for public, 4: pinned(bool)}.
fn encode_entry(hash: &BlobId, entry: &BlobEntry) -> Value {
    let rounds = entry
        .rounds
        .iter()
        .map(|r| {
            Value::Array(vec![
                Value::Text(r.run.clone()),
                Value::Integer(r.round.into()),
            ])
        })
        .collect();
    let access = match &entry.access {
        Access::Public => Value::Null,
        Access::Restricted { allowed } => {
            Value::Array(allowed.iter().map(|k| Value::Bytes(k.to_vec())).collect())
        }
    };
    with_extensions(
        int_map([
            (0, Value::Bytes(hash.0.to_vec())),
            (1, Value::Integer(entry.size.into())),
            (2, Value::Array(rounds)),
            (3, access),
            (4, Value::Bool(entry.pinned)),
        ]),
        &entry.extensions,
    )
}

fn with_extensions(map: Value, extensions: &BTreeMap<i128, Value>) -> Value {
    let Value::Map(mut map) = map else {
        return map;
    };
    for (k, v) in extensions {
        map.entry(Value::Integer(*k)).or_insert_with(|| v.clone());
    }
    Value::Map(map)
}

fn odd_extensions(map: &BTreeMap<i128, Value>, known: &[i128]) -> BTreeMap<i128, Value> {
    map.iter()
        .filter(|(k, _)| !known.contains(k) && *k % 2 != 0)
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

fn decode_entry(value: Value) -> Result<(BlobId, BlobEntry), IndexError> {
    let map = as_int_map(value, "entry")?;
    check_known_keys(&map, &[0, 1, 2, 3, 4])?;
    let hash = map
        .get(&0)
        .and_then(as_key)
        .map(BlobId)
        .ok_or_else(|| malformed("entry hash"))?;
    let size = map
        .get(&1)
        .and_then(as_u64)
        .ok_or_else(|| malformed("entry size"))?;
    let Some(Value::Array(round_values)) = map.get(&2) else {
        return Err(malformed("entry rounds"));
    };
    if round_values.len() > MAX_ROUNDS_PER_BLOB {
        return Err(IndexError::CapExceeded {
            hash: hash.to_hex(),
            what: "rounds",
            cap: MAX_ROUNDS_PER_BLOB,
        });
    }
    let mut rounds = BTreeSet::new();
    for r in round_values {
        let Value::Array(pair) = r else {
            return Err(malformed("round"));
        };
        let [Value::Text(run), round] = pair.as_slice() else {
            return Err(malformed("round"));
        };
        let round = as_u64(round).ok_or_else(|| malformed("round number"))?;
        rounds.insert(RoundKey::new(run.clone(), round)?);
    }
    let access = match map.get(&3) {
        Some(Value::Null) => Access::Public,
        Some(Value::Array(keys)) => {
            if keys.len() > MAX_ALLOWED_PER_BLOB {
                return Err(IndexError::CapExceeded {
                    hash: hash.to_hex(),
                    what: "allowed peers",
                    cap: MAX_ALLOWED_PER_BLOB,
                });
            }
            let allowed = keys
                .iter()
                .map(|k| as_key(k).ok_or_else(|| malformed("allowed peer")))
                .collect::<Result<BTreeSet<_>, _>>()?;
            Access::Restricted { allowed }
        }
        _ => return Err(malformed("entry access")),
    };
    let pinned = match map.get(&4) {
        Some(Value::Bool(b)) => *b,
        _ => return Err(malformed("entry pinned")),
    };
    Ok((
        hash,
        BlobEntry {
            size,
            rounds,
            access,
            pinned,
            extensions: odd_extensions(&map, &[0, 1, 2, 3, 4]),
        },
    ))
}

/// Version of the libp2p blob request/response messages.
pub const LIBP2P_BLOB_VERSION: u16 = 1;
/// The libp2p stream protocol name of the blob transport.
pub const LIBP2P_BLOB_PROTOCOL: &str = "/l402/blob/1";

/// A libp2p request for the whole blob `hash` (CBOR via libp2p's request-response codec).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRequest {
    /// Message version: [`LIBP2P_BLOB_VERSION`].
    pub v: u16,
    /// The requested blob.
    #[serde(with = "serde_bytes")]
    pub hash: [u8; 32],
}

/// The answer to a [`BlobRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobResponse {
    /// Message version: [`LIBP2P_BLOB_VERSION`].
    pub v: u16,
    /// The outcome.
    pub body: BlobResponseBody,
}

/// What a provider answers to a [`BlobRequest`]. The requester verifies `BLAKE3(bytes)` itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BlobResponseBody {
    /// The blob's bytes.
    Blob(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The provider holds the blob but the requester may not fetch it (yet).
    Denied,
    /// The provider does not hold the blob.
    NotFound,
    /// The request's version is not supported.
    UnsupportedVersion,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> [u8; 32] {
        [b; 32]
    }

    fn id(b: u8) -> BlobId {
        BlobId(key(b))
    }

    fn round(n: u64) -> RoundKey {
        RoundKey::new("run-a", n).expect("valid run id")
    }

    #[test]
    fn restricted_blob_is_served_only_to_allowed_until_released() {
        let mut index = BlobIndex::new();
        index
            .insert(id(1), 10, &Placement::restricted_in(round(3), [key(7)]))
            .expect("insert");
        assert_eq!(index.serve_decision(&id(1), &key(7)), ServeDecision::Serve);
        assert_eq!(
            index.serve_decision(&id(1), &key(8)),
            ServeDecision::NotAllowed
        );
        assert_eq!(
            index.serve_decision(&id(2), &key(7)),
            ServeDecision::Unknown
        );
        assert_eq!(index.allow(&round(3), &[key(8)].into()).expect("allow"), 1);
        assert_eq!(index.serve_decision(&id(1), &key(8)), ServeDecision::Serve);
        assert_eq!(index.release_round(&round(4)), Vec::<BlobId>::new());
        assert_eq!(index.release_round(&round(3)), vec![id(1)]);
        assert_eq!(index.serve_decision(&id(1), &key(9)), ServeDecision::Serve);
    }

    #[test]
    fn merge_public_wins_and_size_conflicts_are_rejected() {
        let mut index = BlobIndex::new();
        index
            .insert(id(1), 10, &Placement::restricted_in(round(1), [key(7)]))
            .expect("insert");
        index
            .insert(id(1), 10, &Placement::restricted_in(round(2), [key(8)]))
            .expect("merge");
        let entry = index.get(&id(1)).expect("entry");
        assert_eq!(entry.access, Access::restricted([key(7), key(8)]));
        assert_eq!(entry.rounds.len(), 2);
        index
            .insert(id(1), 10, &Placement::public_in(round(2)))
            .expect("merge public");
        assert_eq!(index.get(&id(1)).expect("entry").access, Access::Public);
        assert!(matches!(
            index.insert(id(1), 11, &Placement::public_in(round(2))),
            Err(IndexError::SizeConflict { .. })
        ));
    }

    #[test]
    fn gc_removes_only_blobs_whose_every_round_is_old_and_not_pinned() {
        let mut index = BlobIndex::new();
        index
            .insert(id(1), 1, &Placement::public_in(round(1)))
            .expect("1");
        index
            .insert(id(2), 1, &Placement::public_in(round(1)))
            .expect("2");
        index
            .insert(id(2), 1, &Placement::public_in(round(5)))
            .expect("2b");
        index
            .insert(id(3), 1, &Placement::pinned_public())
            .expect("3");
        index
            .insert(id(3), 1, &Placement::public_in(round(1)))
            .expect("3b");
        let other = RoundKey::new("run-b", 0).expect("run");
        index
            .insert(id(4), 1, &Placement::public_in(other))
            .expect("4");
        assert_eq!(index.collect_rounds_before("run-a", 4), vec![id(1)]);
        assert!(index.get(&id(2)).is_some());
        assert!(index.get(&id(3)).is_some());
        assert!(index.get(&id(4)).is_some());
        assert_eq!(index.collect_rounds_before("run-a", 6), vec![id(2)]);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn encoding_round_trips_and_is_deterministic() {
        let mut index = BlobIndex::new();
        index
            .insert(
                id(9),
                1 << 40,
                &Placement::restricted_in(round(3), [key(2), key(1)]),
            )
            .expect("insert");
        index
            .insert(id(1), 0, &Placement::pinned_public())
            .expect("insert");
        let bytes = index.encode();
        let decoded = BlobIndex::decode(&bytes).expect("decode");
        assert_eq!(decoded, index);
        assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn decode_rejects_bad_versions_unknown_even_keys_and_oversize() {
        let v2 = serde_cbor::to_vec(&int_map([
            (0, Value::Integer(2)),
            (1, Value::Array(vec![])),
        ]))
        .expect("cbor");
        assert_eq!(
            BlobIndex::decode(&v2),
            Err(IndexError::UnsupportedVersion(2))
        );
        let even = serde_cbor::to_vec(&int_map([
            (0, Value::Integer(1)),
            (1, Value::Array(vec![])),
            (6, Value::Null),
        ]))
        .expect("cbor");
        assert_eq!(
            BlobIndex::decode(&even),
            Err(IndexError::UnknownRequiredField(6))
        );
        let odd = serde_cbor::to_vec(&int_map([
            (0, Value::Integer(1)),
            (1, Value::Array(vec![])),
            (7, Value::Null),
        ]))
        .expect("cbor");
        let kept = BlobIndex::decode(&odd).expect("odd key is ignored");
        assert!(kept.is_empty());
        assert_eq!(
            kept.encode(),
            odd,
            "unknown odd keys are re-emitted unchanged"
        );
        let huge = vec![0u8; MAX_INDEX_BYTES + 1];
        assert!(matches!(
            BlobIndex::decode(&huge),
            Err(IndexError::TooLarge { .. })
        ));
        assert!(matches!(
            BlobIndex::decode(b"\xff\x00"),
            Err(IndexError::Malformed(_))
        ));
    }

    #[test]
    fn run_ids_are_bounded() {
        assert!(RoundKey::new("", 0).is_err());
        assert!(RoundKey::new("x".repeat(MAX_RUN_ID_LEN + 1), 0).is_err());
        assert!(RoundKey::new("x".repeat(MAX_RUN_ID_LEN), 0).is_ok());
    }

    #[test]
    fn libp2p_messages_round_trip() {
        let req = BlobRequest {
            v: LIBP2P_BLOB_VERSION,
            hash: key(5),
        };
        let bytes = serde_cbor::to_vec(&req).expect("encode");
        assert_eq!(
            serde_cbor::from_slice::<BlobRequest>(&bytes).expect("decode"),
            req
        );
        let resp = BlobResponse {
            v: LIBP2P_BLOB_VERSION,
            body: BlobResponseBody::Blob(vec![1, 2, 3]),
        };
        let bytes = serde_cbor::to_vec(&resp).expect("encode");
        assert_eq!(
            serde_cbor::from_slice::<BlobResponse>(&bytes).expect("decode"),
            resp
        );
    }
}
#[cfg(test)]
mod vector {
    use super::*;

    /// The example of specs/L2T-09-blobs.md#blob-index.
    pub(super) fn example() -> BlobIndex {
        let mut index = BlobIndex::new();
        let round = RoundKey::new("run-a", 3).expect("run id");
        index
            .insert(
                BlobId([0x11; 32]),
                1000,
                &Placement::restricted_in(round, [[0x22; 32]]),
            )
            .expect("insert");
        index
    }

    /// Annotated in the spec: map(2) {0: 1, 1: [map(5) {0: hash, 1: 1000, 2: [["run-a", 3]],
    /// 3: [allowed key], 4: false}]}.
    const EXAMPLE_HEX: &str = concat!(
        "a2",
        "0001",
        "0181",
        "a5",
        "005820",
        "1111111111111111111111111111111111111111111111111111111111111111",
        "011903e8",
        "0281826572756e2d6103",
        "03815820",
        "2222222222222222222222222222222222222222222222222222222222222222",
        "04f4"
    );

    #[test]
    fn example_matches_the_spec_vector() {
        let expected = hex::decode(EXAMPLE_HEX).expect("hex");
        assert_eq!(example().encode(), expected);
        assert_eq!(BlobIndex::decode(&expected).expect("decode"), example());
    }
}
