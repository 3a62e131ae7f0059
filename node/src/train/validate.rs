//! Validation: a pure function of (checkpoint, pseudo-gradient, eval seed) — plus the
//! submitter's key and round, which fix its assigned shard.
//!
//! Spec: specs/L2T-10-training.md#validation
//!
//! For a submission Δ̂ a validator measures the loss of θ and of θ − α·Δ̂ on
//! - the round's held-out batch (from the eval seed; never a training shard),
//! - a batch of the submitter's own shard (which one, the eval seed decides),
//! - a random batch mixing all topics (from the eval seed; the same for every submission),
//!
//! and hands the six losses and the norms to `l402_protocol::training::score`. The losses at θ
//! on the held-out and random batches are the same for every submission of a round: the
//! [`BeforePass`] computes them once. Cheap checks (names, shapes, finiteness) run before any
//! forward pass; [`Validator::forward_passes`] counts the passes so tests can prove it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::Device;
use l402_protocol::training::seeds::shard_seed;
use l402_protocol::training::{score, EvalSeed, Measurements, Score, ScoringPolicy, TrainingSpec};

use super::checkpoint::{Checkpoint, CheckpointId};
use super::codec::{decode_submission, SubmissionContext, SubmissionError};
use super::data::{Batch, Corpus};
use super::model::{mean, Gpt, Weights};
use super::update::{DenseUpdate, UpdateError};
use super::TrainError;
use l402_protocol::wire::PseudoGradient;

/// Why a submission could not be evaluated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The update does not fit the model; rejected before any compute.
    #[error("update rejected: {0}")]
    Rejected(#[from] UpdateError),
    /// The submitted blob is malformed or not for this round; rejected before any compute.
    #[error("submission rejected: {0}")]
    Submission(#[from] SubmissionError),
    /// The before pass belongs to another round's eval seed.
    #[error("before pass is for another eval seed")]
    SeedMismatch,
    /// The model failed to run.
    #[error(transparent)]
    Compute(#[from] TrainError),
}

/// The losses at θ that every submission of a round shares.
#[derive(Debug, Clone)]
pub struct BeforePass {
    seed: EvalSeed,
    heldout: Batch,
    random: Batch,
    /// Assigned batches and their losses at θ, by (peer, round), prepared ahead of submissions.
    assigned: BTreeMap<([u8; 32], u64), (Batch, f32)>,
    /// Held-out loss at θ.
    pub heldout_loss: f32,
    /// Random-shard loss at θ.
    pub random_loss: f32,
}

/// A validator's measurements and score of one submission.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// What was measured.
    pub measurements: Measurements,
    /// The score and verdict.
    pub score: Score,
}

/// A validator for one round's checkpoint.
#[derive(Debug)]
pub struct Validator {
    run: [u8; 32],
    gpt: Gpt,
    spec: TrainingSpec,
    policy: ScoringPolicy,
    checkpoint: Checkpoint,
    checkpoint_id: CheckpointId,
    weights: Weights,
    model_norm: f32,
    corpus: Corpus,
    passes: AtomicU64,
}

impl Validator {
    /// A validator of run `run` at `checkpoint`.
    pub fn new(
        run: [u8; 32],
        checkpoint: Checkpoint,
        spec: TrainingSpec,
        policy: ScoringPolicy,
        device: &Device,
    ) -> Result<Self, TrainError> {
        spec.validate()?;
        let gpt = Gpt::new(checkpoint.spec(), device)?;
        let weights = checkpoint.weights(device)?;
        let model_norm = checkpoint.norm();
        let checkpoint_id = checkpoint.id()?;
        Ok(Self {
            run,
            gpt,
            spec,
            policy,
            checkpoint,
            checkpoint_id,
            weights,
            model_norm,
            corpus: Corpus::new(&run),
            passes: AtomicU64::new(0),
        })
    }

    /// The checkpoint being validated against.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The id of that checkpoint.
    pub fn checkpoint_id(&self) -> CheckpointId {
        self.checkpoint_id
    }

    /// What a submission for `round` must match.
    pub fn context(&self, round: u64) -> SubmissionContext {
        SubmissionContext {
            run: self.run,
            round,
            base: self.checkpoint_id,
            spec: self.checkpoint.spec().clone(),
            params: self.spec.codec_params(),
        }
    }

    /// Evaluates a submitted SparseLoCo blob: parse with the payload capped at the model's size,
    /// check run, round, base checkpoint, codec and shapes, decode, then evaluate.
    pub fn evaluate_blob(
        &self,
        before: &BeforePass,
        peer: &[u8; 32],
        round: u64,
        blob: &[u8],
    ) -> Result<(Evaluation, PseudoGradient), ValidationError> {
        let (g, dense) = decode_submission(blob, &self.context(round))?;
        Ok((self.evaluate(before, peer, round, &dense)?, g))
    }

    /// Forward passes run so far.
    pub fn forward_passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    fn row_losses(&self, w: &Weights, batch: &Batch) -> Result<Vec<f32>, TrainError> {
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.gpt.row_losses(w, batch)
    }

    fn cols(&self) -> usize {
        self.gpt.spec().context as usize
    }

    /// The losses at θ on the round's held-out and random batches, shared by all submissions.
    pub fn before_pass(&self, seed: EvalSeed) -> Result<BeforePass, TrainError> {
        let heldout = self.corpus.mixed_batch(
            &seed.heldout(),
            self.spec.heldout_rows as usize,
            self.cols(),
        );
        let random = self.corpus.mixed_batch(
            &seed.random_shard(),
            self.spec.check_rows as usize,
            self.cols(),
        );
        // One forward pass over both batches.
        let rows = self.row_losses(&self.weights, &Batch::concat(&[&heldout, &random]))?;
        let (h, r) = rows.split_at(heldout.rows);
        Ok(BeforePass {
            seed,
            heldout_loss: mean(h),
            random_loss: mean(r),
            heldout,
            random,
            assigned: BTreeMap::new(),
        })
    }

    fn assigned_batch(&self, seed: &EvalSeed, peer: &[u8; 32], round: u64) -> Batch {
        let shard = self.corpus.shard(shard_seed(&self.run, peer, round));
        let start = seed.check_batch(peer, self.spec.shard_batches);
        self.corpus.assigned_rows(
            &shard,
            start,
            self.spec.shard_batches,
            self.spec.batch as usize,
            self.spec.check_rows as usize,
            self.cols(),
        )
    }

    /// Computes `peer`'s assigned batch and its loss at θ ahead of its submission, so that only
    /// the pass at θ − α·Δ̂ remains once the submission arrives. A validator calls this for the
    /// round's expected submitters while they train (the eval seed stays unpublished until
    /// submissions close, so this gives peers nothing).
    pub fn prepare(
        &self,
        before: &mut BeforePass,
        peer: &[u8; 32],
        round: u64,
    ) -> Result<(), TrainError> {
        let batch = self.assigned_batch(&before.seed, peer, round);
        let loss = mean(&self.row_losses(&self.weights, &batch)?);
        before.assigned.insert((*peer, round), (batch, loss));
        Ok(())
    }

    /// Evaluates `update`, submitted by `peer` for `round`, using the shared `before` pass.
    pub fn evaluate(
        &self,
        before: &BeforePass,
        peer: &[u8; 32],
        round: u64,
        update: &DenseUpdate,
    ) -> Result<Evaluation, ValidationError> {
        // Cheap checks first: names, shapes, finiteness. No forward pass has run yet.
        let after = self.checkpoint.apply(update, self.spec.outer_lr)?;
        let after = after
            .weights(self.gpt.device())
            .map_err(ValidationError::Compute)?;
        let (assigned, assigned_before) = match before.assigned.get(&(*peer, round)) {
            Some((batch, loss)) => (batch.clone(), *loss),
            None => {
                let batch = self.assigned_batch(&before.seed, peer, round);
                let loss = mean(&self.row_losses(&self.weights, &batch)?);
                (batch, loss)
            }
        };
        // One forward pass at θ − α·Δ̂ over the held-out, assigned and random rows.
        let all = Batch::concat(&[&before.heldout, &assigned, &before.random]);
        let rows = self.row_losses(&after, &all)?;
        let (h, rest) = rows.split_at(before.heldout.rows);
        let (a, r) = rest.split_at(assigned.rows);
        let measurements = Measurements {
            heldout_before: before.heldout_loss,
            heldout_after: mean(h),
            assigned_before,
            assigned_after: mean(a),
            random_before: before.random_loss,
            random_after: mean(r),
            update_norm: update.norm() * self.spec.outer_lr,
            model_norm: self.model_norm,
        };
        let score = score(&measurements, &self.policy);
        tracing::debug!(round, peer = %hex::encode(&peer[..8]), score = score.value, verdict = ?score.verdict, "evaluated");
        Ok(Evaluation {
            measurements,
            score,
        })
    }

    /// Evaluates `update` without a shared before pass: the pure function
    /// (checkpoint, update, eval seed) → evaluation. Costs two extra forward passes.
    pub fn evaluate_alone(
        &self,
        seed: EvalSeed,
        peer: &[u8; 32],
        round: u64,
        update: &DenseUpdate,
    ) -> Result<Evaluation, ValidationError> {
        update.check(self.checkpoint.spec())?;
        let before = self.before_pass(seed)?;
        self.evaluate(&before, peer, round, update)
    }
}

impl BeforePass {
    /// The eval seed this pass was computed for.
    pub fn seed(&self) -> EvalSeed {
        self.seed
    }

    /// Checks that this pass belongs to `seed`.
    pub fn check_seed(&self, seed: EvalSeed) -> Result<(), ValidationError> {
        if self.seed == seed {
            Ok(())
        } else {
            Err(ValidationError::SeedMismatch)
        }
    }
}
