//! The compute actions, for real: `Evaluate` (a validator fetches the checkpoint and the
//! submitted pseudo-gradient over iroh and scores it with candle) and `Aggregate` (the
//! coordinator fetches the merged pseudo-gradients, aggregates them with SparseLoCo's robust
//! rule, takes the outer step and stores the new checkpoint as a blob).
//!
//! Candle work runs on the blocking pool; its result returns to the driver as `EvalDone` or
//! `CheckpointReady`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::Device;
use l402_protocol::blobmeta::{Placement, RoundKey};
use l402_protocol::events::{BlobHash, MergedSubmission, RunId, SubmissionId};
use l402_protocol::quorum::{Phase, RejectCode, Verdict};
use l402_protocol::training::{similarity, EvalSeed, ModelSpec, ScoringPolicy, TrainingSpec};
use l402_protocol::wire::{BlobId, PseudoGradient};
use nostr_sdk::prelude::PublicKey;

use crate::train::{aggregate_submissions, Checkpoint, TrainError, Validator};

/// The 32-byte training run key of a run id (seeds the corpus and names the wire `run`).
pub fn run_key(run: &RunId) -> [u8; 32] {
    blake3::derive_key("l402 run key v1", run.as_str().as_bytes())
}

/// Exact size of a checkpoint blob of `spec` (canonical safetensors: the header depends only on
/// names, dtypes and shapes), the announced size of every checkpoint fetch.
pub fn checkpoint_size(spec: &ModelSpec) -> Result<u64, TrainError> {
    let zeros = spec
        .manifest()
        .into_iter()
        .map(|(name, shape)| (name, vec![0f32; shape.iter().product()]))
        .collect();
    Ok(Checkpoint::from_tensors(spec.clone(), zeros)?
        .to_safetensors()?
        .len() as u64)
}

/// The training side of a node: model, inner-loop and scoring settings, device.
#[derive(Debug, Clone)]
pub struct TrainingWork {
    /// The run's model.
    pub model: ModelSpec,
    /// Inner loop and codec settings.
    pub training: TrainingSpec,
    /// Score thresholds.
    pub policy: ScoringPolicy,
    /// Where candle computes.
    pub device: Device,
}

/// What the near-copy check found ([`TrainingWork::near_copy`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NearCopy {
    /// A near-copy of this earlier submission, at this cosine.
    Of(SubmissionId, f64),
    /// Close to the mean of the `earlier` submissions held, at this cosine.
    OfMean {
        /// How many earlier submissions the mean is over.
        earlier: usize,
        /// Cosine to their mean.
        cosine: f64,
    },
}

impl std::fmt::Display for NearCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NearCopy::Of(id, cos) => write!(f, "near-copy of {id} (cosine {cos:.3})"),
            NearCopy::OfMean { earlier, cosine } => write!(
                f,
                "close to the mean of {earlier} earlier submissions (cosine {cosine:.3})"
            ),
        }
    }
}

/// What a node knows of the submissions it has seen: their author and announced size, which
/// the executors need to fetch a blob from its holder, and their round, blob and time, which
/// the near-copy check needs.
#[derive(Debug, Clone, Default)]
pub struct SubmissionBook(Arc<Mutex<BTreeMap<SubmissionId, BookEntry>>>);

/// One submission in the [`SubmissionBook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookEntry {
    /// Author.
    pub author: PublicKey,
    /// Announced blob size.
    pub size: u64,
    /// Run and round.
    pub round: (RunId, u64),
    /// Blob.
    pub blob: BlobHash,
    /// The submission event's `created_at`.
    pub created_at: u64,
}

impl SubmissionBook {
    /// Record a verified submission.
    pub fn insert(&self, id: SubmissionId, entry: BookEntry) {
        self.lock().insert(id, entry);
    }

    /// Author and size of a submission.
    pub fn get(&self, id: &SubmissionId) -> Option<(PublicKey, u64)> {
        self.lock().get(id).map(|e| (e.author, e.size))
    }

    /// The submissions of `id`'s round announced before it (by `created_at`, then id) by other
    /// authors: what a near-copy is compared with (the later announcer is the copier).
    pub fn earlier(&self, id: &SubmissionId) -> Vec<(SubmissionId, BookEntry)> {
        let book = self.lock();
        let Some(me) = book.get(id) else {
            return Vec::new();
        };
        book.iter()
            .filter(|(i, e)| {
                e.round == me.round
                    && e.author != me.author
                    && (e.created_at, *i) < (me.created_at, id)
            })
            .map(|(i, e)| (*i, e.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SubmissionId, BookEntry>> {
        // Every method is one map operation: a poisoned lock still holds a consistent map.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A score that could not be computed: the validator attests it as a rejection with this code
/// (an unreachable or undecodable blob earns nothing).
pub fn failed_eval(code: RejectCode) -> (l402_protocol::events::Score, Verdict) {
    (
        l402_protocol::events::Score(i64::MIN / 2),
        Verdict::Reject(code),
    )
}

impl TrainingWork {
    fn validator(&self, run: &RunId, checkpoint: Checkpoint) -> Result<Validator, TrainError> {
        Validator::new(
            run_key(run),
            checkpoint,
            self.training.clone(),
            self.policy,
            &self.device,
        )
    }

    /// Score `blob` (bytes of the submission by `peer`) against `checkpoint` on the held-out
    /// batch of `eval_seed`: the pure function of L2T-10.
    pub fn evaluate(
        &self,
        run: &RunId,
        round: u64,
        checkpoint: Checkpoint,
        peer: &PublicKey,
        eval_seed: [u8; 32],
        blob: &[u8],
    ) -> Result<(l402_protocol::events::Score, Verdict), TrainError> {
        let v = self.validator(run, checkpoint)?;
        let before = v.before_pass(EvalSeed(eval_seed))?;
        match v.evaluate_blob(&before, &peer.to_bytes(), round, blob) {
            Ok((e, _)) => Ok(e.score.attested()),
            Err(crate::train::ValidationError::Compute(e)) => Err(e),
            Err(e) => {
                tracing::info!(%run, round, peer = %peer, reason = %e, "submission refused before any forward pass");
                Ok(failed_eval(RejectCode::Malformed))
            }
        }
    }

    /// Whether `blob` is a near-copy of one of `earlier` (submission, blob bytes), the first
    /// such with its cosine, else of their mean (an ALIE-style update;
    /// `training::similarity`). Blobs that do not parse are skipped (`blob` itself parsed
    /// when it was scored).
    pub fn near_copy(&self, blob: &[u8], earlier: &[(SubmissionId, Vec<u8>)]) -> Option<NearCopy> {
        let cap =
            crate::train::codec::payload_bytes(&self.model, &self.training.codec_params()).ok()?;
        let me = PseudoGradient::from_blob_with_limit(blob, cap).ok()?;
        let others: Vec<(SubmissionId, PseudoGradient)> = earlier
            .iter()
            .filter_map(|(id, b)| Some((*id, PseudoGradient::from_blob_with_limit(b, cap).ok()?)))
            .collect();
        for (id, other) in &others {
            let cos = similarity::cosine(&me, other);
            if cos >= similarity::NEAR_COPY_COSINE {
                return Some(NearCopy::Of(*id, cos));
            }
        }
        let grads: Vec<PseudoGradient> = others.into_iter().map(|(_, g)| g).collect();
        similarity::near_mean(&me, &grads).map(|cosine| NearCopy::OfMean {
            earlier: grads.len(),
            cosine,
        })
    }

    /// Held-out loss of `checkpoint` on a fixed batch of `run` (the same batch every round, so
    /// the numbers compare across rounds): what reports plot.
    pub fn heldout_loss(&self, run: &RunId, checkpoint: Checkpoint) -> Result<f32, TrainError> {
        let v = self.validator(run, checkpoint)?;
        let seed = blake3::derive_key("l402 report held-out batch v1", run.as_str().as_bytes());
        Ok(v.before_pass(EvalSeed(seed))?.heldout_loss)
    }

    /// Aggregate the merged pseudo-gradients onto `parent` and take the outer step; `None` if
    /// nothing was merged (the checkpoint stays).
    pub fn aggregate(
        &self,
        parent: &Checkpoint,
        merged: &[PseudoGradient],
    ) -> Result<Option<Checkpoint>, TrainError> {
        if merged.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&PseudoGradient> = merged.iter().collect();
        Ok(Some(
            aggregate_submissions(parent, &refs, self.training.outer_lr)?.0,
        ))
    }
}

/// The blob-store placement of a round's public blob (checkpoint, fetched submission).
pub fn round_placement(run: &RunId, round: u64) -> Placement {
    Placement::public_in(RoundKey {
        run: run.as_str().to_owned(),
        round,
    })
}

/// The wire blob id of an event's blob hash.
pub fn blob_id(h: &BlobHash) -> BlobId {
    BlobId(h.0)
}

/// Sort merged submissions canonically (by submission id, as the checkpoint event lists them)
/// and pair each with its decoded pseudo-gradient.
pub fn merge_order(merged: &[MergedSubmission]) -> Vec<MergedSubmission> {
    let mut m = merged.to_vec();
    m.sort_by_key(|x| x.submission);
    m
}

/// Evaluation phase label for logs.
pub fn phase_label(p: Phase) -> &'static str {
    match p {
        Phase::Initial => "initial",
        Phase::Holdback => "holdback",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_size_is_exact_for_any_weights() {
        let spec = ModelSpec::tiny();
        let ck = Checkpoint::init(&spec, &[7; 32]).unwrap();
        assert_eq!(
            checkpoint_size(&spec).unwrap(),
            ck.to_safetensors().unwrap().len() as u64
        );
        assert_ne!(
            run_key(&RunId::new("a").unwrap()),
            run_key(&RunId::new("b").unwrap())
        );
    }
}
