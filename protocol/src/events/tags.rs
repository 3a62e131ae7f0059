//! The tags l402 events carry, and the tag/content consistency rule.
//!
//! Spec: specs/L2T-01-events.md#tags

use nostr::{EventId, PublicKey, Tag, TagKind, Timestamp};

use super::ids::{BlobHash, RunId, SubmissionId};
use super::RejectReason;

/// Run (or bounty) id tag.
pub const RUN: &str = "n";
/// Round number tag (decimal).
pub const ROUND: &str = "z";
/// Blob hash tag (hex BLAKE3).
pub const BLOB: &str = "x";
/// Submission id tag (hex event id of the submission).
pub const SUBMISSION: &str = "s";
/// Hashtag on every l402 event that wants to be found by topic.
pub const HASHTAG: &str = "l402";
/// Hashtag of validator announcements.
pub const HASHTAG_VALIDATOR: &str = "l402-validator";
/// Hashtag of run announcements.
pub const HASHTAG_RUN: &str = "l402-run";
/// Hashtag of bounties.
pub const HASHTAG_BOUNTY: &str = "l402-bounty";
/// `d` value of node announcements.
pub const NODE_D: &str = "l402-node";

/// Tag names whose values must be exactly the ones the content implies (no extra values): these
/// are what relays index, so a stray value would file the event under the wrong run, round,
/// blob, submission, key or event.
pub const RESERVED: [&str; 7] = ["d", RUN, ROUND, BLOB, SUBMISSION, "p", "e"];

fn single(name: &str, value: impl Into<String>) -> Tag {
    Tag::custom(TagKind::custom(name.to_owned()), [value.into()])
}

/// `["d", id]`.
pub fn d(id: &str) -> Tag {
    Tag::identifier(id)
}
/// `["n", run]`.
pub fn run(r: &RunId) -> Tag {
    single(RUN, r.as_str())
}
/// `["z", "<round>"]`.
pub fn round(r: u64) -> Tag {
    single(ROUND, r.to_string())
}
/// `["x", hex]`.
pub fn blob(h: &BlobHash) -> Tag {
    single(BLOB, h.to_hex())
}
/// `["s", hex]`.
pub fn submission(s: &SubmissionId) -> Tag {
    single(SUBMISSION, s.to_hex())
}
/// `["p", hex]`.
pub fn p(pk: &PublicKey) -> Tag {
    Tag::public_key(*pk)
}
/// `["e", hex]`.
pub fn e(id: &EventId) -> Tag {
    Tag::event(*id)
}
/// `["t", topic]`.
pub fn t(topic: &str) -> Tag {
    Tag::hashtag(topic)
}
/// `["expiration", secs]`.
pub fn expiration(at: u64) -> Tag {
    Tag::expiration(Timestamp::from_secs(at))
}

/// Cheap structural caps on a tag list (count and sizes), before anything else looks at tags.
pub fn check_caps(tags: &[Tag]) -> Result<(), RejectReason> {
    if tags.len() > super::MAX_TAGS {
        return Err(RejectReason::TooManyTags(tags.len()));
    }
    for t in tags {
        let s = t.as_slice();
        if s.len() > super::MAX_TAG_VALUES || s.iter().any(|v| v.len() > super::MAX_TAG_VALUE_LEN) {
            return Err(RejectReason::TagTooLarge);
        }
    }
    Ok(())
}

/// The first value of the first tag named `name`.
pub fn first<'a>(tags: &'a [Tag], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.as_slice().first().map(String::as_str) == Some(name))
        .and_then(|t| t.as_slice().get(1))
        .map(String::as_str)
}

/// Require `actual` ⊇ `expected`, and, for [`RESERVED`] names (and `expiration` when expected),
/// `actual` ⊆ `expected`. Extra tags of other names (client, alt, extra hashtags) are allowed.
pub fn check_consistent(expected: &[Tag], actual: &[Tag]) -> Result<(), RejectReason> {
    let name = |t: &Tag| t.as_slice().first().cloned().unwrap_or_default();
    let short = |t: &Tag| t.as_slice().iter().take(2).cloned().collect::<Vec<_>>();
    for want in expected {
        if !actual.iter().any(|a| short(a) == short(want)) {
            let n = name(want);
            return Err(if actual.iter().any(|a| name(a) == n) {
                RejectReason::TagMismatch(n)
            } else {
                RejectReason::MissingTag(n)
            });
        }
    }
    let expiration_expected = expected.iter().any(|t| name(t) == "expiration");
    for have in actual {
        let n = name(have);
        let guarded = RESERVED.contains(&n.as_str()) || (expiration_expected && n == "expiration");
        if guarded && !expected.iter().any(|w| short(w) == short(have)) {
            return Err(RejectReason::TagMismatch(n));
        }
    }
    Ok(())
}
