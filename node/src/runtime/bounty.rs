//! The compute actions of a bounty run, for real: `Evaluate` (fetch the round's tree from the
//! sponsor and the diff from its author over iroh, score it in the sandbox on the held-out set
//! the sponsor sent this validator) and `Aggregate` (apply the merged diffs to the tree and store
//! the next tree). Which run is a bounty is read from the directory: a bounty event with the
//! run's id by the round's coordinator.
//!
//! Spec: specs/L2T-13-bounties.md#the-network

use std::time::Duration;

use l402_protocol::bounty::tree::{BountyTree, TREE_BLOB_BYTES};
use l402_protocol::events::bounty::{Bounty, HeldoutSecrets};
use l402_protocol::events::{
    validate_event, BlobHash, L402Kind, MergedSubmission, RoundOpen, Score, SubmissionId, Verified,
    VerifiedAny,
};
use l402_protocol::quorum::{Phase, RejectCode, Verdict};
use nostr_sdk::prelude::{Alphabet, Filter, PublicKey, SingleLetterTag, Timestamp};

use super::exec::{Components, ExecError};
use super::work::{failed_eval, round_placement};
use crate::bounty::net;

/// How long a validator asks the relays for its held-out secrets.
const SECRETS_TIMEOUT: Duration = Duration::from_secs(10);

impl Components {
    /// The bounty that run `open` belongs to: the bounty with the run's id posted by the
    /// round's coordinator (the open's author), if the directory has one.
    pub fn bounty_of(&self, open: &Verified<RoundOpen>) -> Option<Verified<Bounty>> {
        self.discovery
            .directory()
            .bounties(Timestamp::now())
            .find(|b| b.verified.bounty_id == open.run_id && b.verified.author() == open.author())
            .map(|b| b.verified.clone())
    }

    /// This validator's held-out secrets of `bounty`: remembered, or fetched from the relays
    /// (kind 4031 by the sponsor, `p` = this node), verified, decrypted and checked against the
    /// bounty's commitment.
    pub async fn heldout_secrets(
        &self,
        bounty: &Verified<Bounty>,
    ) -> Result<HeldoutSecrets, ExecError> {
        let sponsor = bounty.author();
        if let Some(s) = self.bounty.secrets(&sponsor, &bounty.bounty_id) {
            return Ok(s);
        }
        let keys = &self.bounty.keys;
        let filter = Filter::new()
            .kind(L402Kind::BountyHeldout.kind())
            .author(sponsor)
            .pubkey(keys.public_key())
            .custom_tag(
                SingleLetterTag::lowercase(Alphabet::N),
                bounty.bounty_id.as_str(),
            );
        let events = self
            .discovery
            .client()
            .fetch_events(filter, SECRETS_TIMEOUT)
            .await
            .map_err(|e| ExecError::Task(format!("held-out secrets: {e}")))?;
        for ev in events {
            let Ok(VerifiedAny::BountyHeldout(h)) = validate_event(&ev, Timestamp::now()) else {
                continue;
            };
            if h.bounty_id != bounty.bounty_id || h.author() != sponsor {
                continue;
            }
            match h.open(keys, &sponsor) {
                Ok(s) if net::secrets_match(bounty, &s) => {
                    self.bounty
                        .learn_secrets(sponsor, &bounty.bounty_id, s.clone());
                    return Ok(s);
                }
                Ok(_) => {
                    tracing::warn!(bounty = %bounty.bounty_id, "held-out secrets do not open the bounty's commitment")
                }
                Err(e) => {
                    tracing::warn!(bounty = %bounty.bounty_id, error = %e, "held-out secrets refused")
                }
            }
        }
        Err(ExecError::Task(format!(
            "no held-out secrets for bounty {} from its sponsor",
            bounty.bounty_id
        )))
    }

    /// The tree blob `hash` of a bounty round (fixed size), fetched from `holders`.
    pub async fn fetch_tree(
        &self,
        open: &RoundOpen,
        hash: &BlobHash,
        holders: &[PublicKey],
    ) -> Result<BountyTree, ExecError> {
        let bytes = self
            .fetch(
                hash,
                TREE_BLOB_BYTES as u64,
                holders,
                round_placement(&open.run_id, open.round),
            )
            .await?;
        BountyTree::decode(&bytes).map_err(|e| ExecError::Task(format!("tree {hash}: {e}")))
    }

    /// `Evaluate` of a bounty submission: its improvement over the round's tree on the
    /// held-out set of `phase` (the holdback re-evaluation uses the fresh seed).
    pub async fn evaluate_bounty(
        &self,
        bounty: &Verified<Bounty>,
        open: &Verified<RoundOpen>,
        submission: SubmissionId,
        phase: Phase,
        checkpoint: BlobHash,
        blob: BlobHash,
    ) -> Result<(Score, Verdict), ExecError> {
        let Some((peer, size)) = self.book.get(&submission) else {
            return Ok(failed_eval(RejectCode::Unavailable));
        };
        if size > bounty.diff_size_cap {
            return Ok((Score(0), Verdict::Reject(RejectCode::Malformed)));
        }
        let secrets = self.heldout_secrets(bounty).await?;
        let tree = self.fetch_tree(open, &checkpoint, &[open.author()]).await?;
        let Some(diff) = self
            .fetch_submission(open, submission, blob, size, peer)
            .await
        else {
            return Ok(failed_eval(RejectCode::Unavailable));
        };
        let seed = match phase {
            Phase::Initial => secrets.heldout_seed,
            Phase::Holdback => secrets.holdback_seed,
        };
        let (work, b) = (self.bounty.clone(), bounty.value().clone());
        tokio::task::spawn_blocking(move || work.score(&b, checkpoint, &tree, &diff, &seed, &peer))
            .await
            .map_err(|e| ExecError::Task(e.to_string()))?
            .map_err(|e| ExecError::Task(format!("bounty evaluation: {e:#}")))
    }

    /// `Aggregate` of a bounty round: the tree with every merged diff applied in submission-id
    /// order, stored as the next round's tree. Anyone who saw the diffs recomputes it.
    pub async fn aggregate_bounty(
        &self,
        bounty: &Verified<Bounty>,
        open: &Verified<RoundOpen>,
        parent: BlobHash,
        merged: &[MergedSubmission],
    ) -> Result<BlobHash, ExecError> {
        if merged.is_empty() {
            return Ok(parent);
        }
        let tree = self.fetch_tree(open, &parent, &[open.author()]).await?;
        let diffs: Vec<Vec<u8>> = self
            .fetch_merged(open, merged)
            .await?
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let b = bounty.value().clone();
        let (next, applied) =
            tokio::task::spawn_blocking(move || net::apply_diffs(&tree, &diffs, &b))
                .await
                .map_err(|e| ExecError::Task(e.to_string()))?
                .map_err(|e| ExecError::Task(format!("applying merged diffs: {e:#}")))?;
        let id = self
            .blobs
            .add_bytes(
                next.encode(),
                &round_placement(&open.run_id, open.round + 1),
            )
            .await?;
        tracing::info!(bounty = %bounty.bounty_id, round = open.round, applied, tree = %id, "next tree");
        Ok(BlobHash(id.0))
    }
}
