//! Autoresearch bounty kinds: bounty (addressable), commitment and reveal.
//!
//! Spec: specs/L2T-01-events.md#bounty-kinds

use super::parse::json_content;
use nostr::nips::nip44;
use nostr::{EventId, Keys, PublicKey, Tag};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::{BlobHash, RunId, Score, Seed32, UnixTime};
use super::parse::{from_json, to_json, EventContent};
use super::round_events::ScopeError;
use super::{tags, L402Kind, RejectReason, Verified, MAX_LIST_LEN, MAX_TEXT_LEN, MAX_URL_LEN};
use crate::escrow::MAX_VALIDATORS;

/// Whether a smaller or larger metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Smaller is better (loss, latency).
    Minimize,
    /// Larger is better (accuracy, throughput).
    Maximize,
}

/// A bounty posted by a sponsor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounty {
    /// Content version (1).
    pub v: u32,
    /// Bounty id (also the `d` and `n` tags).
    pub bounty_id: RunId,
    /// Human title.
    pub title: String,
    /// Baseline blob (the code and data agents start from).
    pub baseline: BlobHash,
    /// Paths agents may change.
    pub mutable_files: Vec<String>,
    /// Command the validators run to compute the metric.
    pub eval_command: String,
    /// Metric name.
    pub metric: String,
    /// Direction of improvement.
    pub direction: Direction,
    /// Public eval set blob.
    pub public_eval: BlobHash,
    /// `sha256` of the hidden held-out set (revealed to validators NIP-44 encrypted).
    pub heldout_commitment: Seed32,
    /// Reward pool in millisatoshis.
    pub pool_msat: u64,
    /// Improvement (in millionths of the metric) that earns the whole pool.
    pub target_improvement: Score,
    /// Reveals after this time are ignored.
    pub deadline: UnixTime,
    /// Largest diff accepted, in bytes.
    pub diff_size_cap: u64,
    /// Committee size.
    pub n: u32,
    /// Quorum threshold.
    pub k: u32,
    /// Share of the pool held back for the delayed re-evaluation, in parts per million.
    pub holdback_ppm: u32,
    /// Improvement over the current leader (millionths of the metric) a diff must reach to be
    /// paid or to lead; absent in older events (0).
    #[serde(default)]
    pub margin: Score,
    /// The pool is paid in this many equal tranches (payments round down to whole tranches).
    #[serde(default = "default_tranches")]
    pub tranches: u32,
    /// Reveals are decided this long after their commitment, in commitment order, so that the
    /// earliest commitment of a diff wins even if its reveal arrives second.
    #[serde(default = "default_reveal_window")]
    pub reveal_window_secs: u64,
    /// The sponsor's gateway (submission tokens over L402, the bounty board), if it runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

fn default_tranches() -> u32 {
    crate::bounty::DEFAULT_TRANCHES
}

fn default_reveal_window() -> u64 {
    crate::bounty::DEFAULT_REVEAL_WINDOW_SECS
}

impl Bounty {
    /// The schema rules every bounty event is parsed with (lengths, paths, `k`/`n`, positive
    /// pool, target and cap, holdback, margin and tranches, gateway): a sponsor checks its terms
    /// with them before posting.
    pub fn check(&self) -> Result<(), RejectReason> {
        let schema = |s: &str| Err(RejectReason::Schema(s.into()));
        if [&self.title, &self.metric]
            .iter()
            .any(|s| s.len() > MAX_TEXT_LEN)
            || self.eval_command.len() > MAX_URL_LEN
        {
            return schema("text too long");
        }
        if self.mutable_files.is_empty()
            || self.mutable_files.len() > MAX_LIST_LEN
            || self.mutable_files.iter().any(|f| {
                f.is_empty() || f.len() > MAX_TEXT_LEN || f.starts_with('/') || f.contains("..")
            })
        {
            return schema("mutable_files");
        }
        if self.k == 0 || self.k > self.n || self.n as usize > MAX_VALIDATORS {
            return schema("k and n");
        }
        if self.pool_msat == 0 || self.target_improvement.0 <= 0 || self.diff_size_cap == 0 {
            return schema("pool, target and cap must be positive");
        }
        if self.holdback_ppm > 1_000_000 {
            return schema("holdback_ppm");
        }
        if self.margin.0 < 0
            || self.tranches == 0
            || u64::from(self.tranches) > self.pool_msat
            || self.tranches > crate::bounty::MAX_TRANCHES
        {
            return schema("margin and tranches");
        }
        if self.reveal_window_secs > crate::bounty::MAX_REVEAL_WINDOW_SECS {
            return schema("reveal_window_secs");
        }
        if self.gateway.as_ref().is_some_and(|g| g.len() > MAX_URL_LEN) {
            return schema("gateway");
        }
        Ok(())
    }
}

impl EventContent for Bounty {
    const KIND: L402Kind = L402Kind::Bounty;

    fn tags(&self) -> Vec<Tag> {
        vec![
            tags::d(self.bounty_id.as_str()),
            tags::run(&self.bounty_id),
            tags::blob(&self.baseline),
            tags::t(tags::HASHTAG),
            tags::t(tags::HASHTAG_BOUNTY),
        ]
    }
    json_content!();
}

/// The commitment an agent publishes before revealing:
/// `sha256("l402/bounty-commit/v1" ‖ 0 ‖ bounty id ‖ 0 ‖ agent key ‖ diff hash ‖ salt)`.
pub fn bounty_commitment(
    bounty: &RunId,
    agent: &PublicKey,
    diff: &BlobHash,
    salt: &Seed32,
) -> Seed32 {
    let mut h = Sha256::new();
    h.update(b"l402/bounty-commit/v1\0");
    h.update(bounty.as_str().as_bytes());
    h.update([0u8]);
    h.update(agent.as_bytes());
    h.update(diff.0);
    h.update(salt.0);
    Seed32(h.finalize().into())
}

/// Bounty commitment, by an agent (its `created_at` orders agents that found the same diff).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BountyCommitment {
    /// Content version (1).
    pub v: u32,
    /// Bounty.
    pub bounty_id: RunId,
    /// The sponsor.
    pub sponsor: PublicKey,
    /// [`bounty_commitment`] of the diff.
    pub commitment: Seed32,
}

impl EventContent for BountyCommitment {
    const KIND: L402Kind = L402Kind::BountyCommitment;

    fn tags(&self) -> Vec<Tag> {
        vec![tags::run(&self.bounty_id), tags::p(&self.sponsor)]
    }
    fn to_content(&self) -> String {
        to_json(self)
    }
    fn from_content(content: &str, _author: &PublicKey) -> Result<Self, RejectReason> {
        from_json(content)
    }
}

/// Bounty reveal, by the agent that committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BountyReveal {
    /// Content version (1).
    pub v: u32,
    /// Bounty.
    pub bounty_id: RunId,
    /// The commitment event.
    pub commitment_event: EventId,
    /// Diff blob.
    pub diff: BlobHash,
    /// Diff size in bytes.
    pub size: u64,
    /// Salt of the commitment.
    pub salt: Seed32,
    /// The agent's own measurement on the public eval set, in millionths (informative only).
    pub claimed_metric: Score,
}

impl EventContent for BountyReveal {
    const KIND: L402Kind = L402Kind::BountyReveal;

    fn tags(&self) -> Vec<Tag> {
        vec![
            tags::run(&self.bounty_id),
            tags::blob(&self.diff),
            tags::e(&self.commitment_event),
        ]
    }
    fn to_content(&self) -> String {
        to_json(self)
    }
    fn from_content(content: &str, _author: &PublicKey) -> Result<Self, RejectReason> {
        let a: Self = from_json(content)?;
        if a.size == 0 {
            return Err(RejectReason::Schema("diff size".into()));
        }
        Ok(a)
    }
}

/// Check that `reveal` opens `commitment` for `bounty`: same author and bounty, the reveal names
/// the commitment event, the commitment was published before the deadline, the hash opens, and
/// the diff fits the cap.
pub fn check_reveal(
    bounty: &Verified<Bounty>,
    commitment: &Verified<BountyCommitment>,
    reveal: &Verified<BountyReveal>,
) -> Result<(), ScopeError> {
    if commitment.bounty_id != bounty.bounty_id || reveal.bounty_id != bounty.bounty_id {
        return Err(ScopeError::WrongRun);
    }
    if commitment.sponsor != bounty.author() {
        return Err(ScopeError::WrongAuthor);
    }
    if commitment.author() != reveal.author() || reveal.commitment_event != commitment.id() {
        return Err(ScopeError::WrongAuthor);
    }
    if commitment.created_at().as_secs() > bounty.deadline {
        return Err(ScopeError::WrongRound);
    }
    if reveal.size > bounty.diff_size_cap
        || bounty_commitment(
            &bounty.bounty_id,
            &reveal.author(),
            &reveal.diff,
            &reveal.salt,
        ) != commitment.commitment
    {
        return Err(ScopeError::WrongSubmission);
    }
    Ok(())
}

/// The secrets a sponsor gives each validator: the seeds its held-out sets are drawn from (the
/// first set scores submissions, the second, fresh one the delayed re-evaluation of the holdback).
/// They are never published in the clear; agents only ever see the public eval set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldoutSecrets {
    /// Content version (1).
    pub v: u32,
    /// Seed of the held-out set (its encoding hashes to the bounty's `heldout_commitment`).
    pub heldout_seed: Seed32,
    /// Seed of the fresh held-out set of the holdback re-evaluation.
    pub holdback_seed: Seed32,
}

/// Held-out delivery, by the sponsor to one validator: [`HeldoutSecrets`] NIP-44 v2 encrypted
/// from the sponsor's key to the validator's (`p` tag), so only that validator can read them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BountyHeldout {
    /// Content version (1).
    pub v: u32,
    /// Bounty.
    pub bounty_id: RunId,
    /// The validator it is encrypted to.
    pub validator: PublicKey,
    /// NIP-44 v2 ciphertext (base64) of the JSON [`HeldoutSecrets`].
    pub ciphertext: String,
}

/// Longest held-out ciphertext (the plaintext is two seeds in JSON).
pub const MAX_HELDOUT_CIPHERTEXT: usize = 1024;

/// Why held-out secrets could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeldoutError {
    /// Encrypted to another key.
    #[error("held-out secrets are for another validator")]
    NotForUs,
    /// Does not decrypt with the sponsor's and our keys.
    #[error("held-out secrets do not decrypt")]
    Undecryptable,
    /// Not the JSON of [`HeldoutSecrets`] v1.
    #[error("held-out secrets malformed: {0}")]
    Malformed(String),
}

impl BountyHeldout {
    /// Encrypt `secrets` of `bounty_id` from `sponsor` to `validator`.
    pub fn seal<R: RngCore + CryptoRng>(
        rng: &mut R,
        sponsor: &Keys,
        bounty_id: RunId,
        validator: PublicKey,
        secrets: &HeldoutSecrets,
    ) -> Self {
        // Encrypting a short JSON string to a valid key cannot fail.
        let ciphertext = nip44::encrypt_with_rng(
            rng,
            sponsor.secret_key(),
            &validator,
            to_json(secrets),
            nip44::Version::V2,
        )
        .unwrap_or_default();
        Self {
            v: 1,
            bounty_id,
            validator,
            ciphertext,
        }
    }

    /// Decrypt with the validator's `keys`; `sponsor` is the event's (verified) author.
    pub fn open(&self, keys: &Keys, sponsor: &PublicKey) -> Result<HeldoutSecrets, HeldoutError> {
        if self.validator != keys.public_key() {
            return Err(HeldoutError::NotForUs);
        }
        let pt = nip44::decrypt(keys.secret_key(), sponsor, &self.ciphertext)
            .map_err(|_| HeldoutError::Undecryptable)?;
        let s: HeldoutSecrets =
            serde_json::from_str(&pt).map_err(|e| HeldoutError::Malformed(e.to_string()))?;
        if s.v != 1 {
            return Err(HeldoutError::Malformed(format!("version {}", s.v)));
        }
        Ok(s)
    }

    fn check(&self) -> Result<(), RejectReason> {
        if self.ciphertext.is_empty() || self.ciphertext.len() > MAX_HELDOUT_CIPHERTEXT {
            return Err(RejectReason::Schema("ciphertext".into()));
        }
        Ok(())
    }
}

impl EventContent for BountyHeldout {
    const KIND: L402Kind = L402Kind::BountyHeldout;

    fn tags(&self) -> Vec<Tag> {
        vec![tags::run(&self.bounty_id), tags::p(&self.validator)]
    }
    json_content!();
}
