//! A peer's inner loop: H AdamW steps on its shard from the round's checkpoint, then the
//! pseudo-gradient Δ = θ_before − θ_after.
//!
//! Spec: specs/L2T-10-training.md#inner-loop
//!
//! The AdamW moments persist across rounds (as in DiLoCo); the weights restart from each new
//! checkpoint.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use candle_core::{Device, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use indicatif::ProgressBar;
use l402_protocol::training::seeds::shard_seed;
use l402_protocol::training::TrainingSpec;

use super::checkpoint::Checkpoint;
use super::data::{Batch, Corpus, Shard};
use super::model::{Gpt, Weights};
use super::update::DenseUpdate;
use super::TrainError;

/// What one inner loop did.
#[derive(Debug, Clone, PartialEq)]
pub struct InnerReport {
    /// The round.
    pub round: u64,
    /// Training loss of the first step.
    pub first_loss: f32,
    /// Training loss of the last step.
    pub last_loss: f32,
    /// Steps taken.
    pub steps: u32,
    /// Tokens predicted over all steps.
    pub tokens: usize,
    /// Wall time of the steps (forward, backward, optimiser), excluding setup.
    pub train_time: Duration,
}

/// A peer's trainer: model, trainable variables and AdamW state.
#[derive(Debug)]
pub struct InnerTrainer {
    run: [u8; 32],
    key: [u8; 32],
    gpt: Gpt,
    spec: TrainingSpec,
    vars: BTreeMap<String, Var>,
    view: Weights,
    opt: AdamW,
}

impl InnerTrainer {
    /// A trainer for peer `key` of run `run`, starting from `checkpoint`.
    pub fn new(
        run: [u8; 32],
        key: [u8; 32],
        checkpoint: &Checkpoint,
        spec: TrainingSpec,
        device: &Device,
    ) -> Result<Self, TrainError> {
        spec.validate()?;
        let gpt = Gpt::new(checkpoint.spec(), device)?;
        let mut vars = BTreeMap::new();
        for (name, t) in checkpoint.weights(device)? {
            vars.insert(name, Var::from_tensor(&t)?);
        }
        let view = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let params = ParamsAdamW {
            lr: spec.inner_lr,
            beta1: spec.beta1,
            beta2: spec.beta2,
            eps: spec.eps,
            weight_decay: spec.weight_decay,
        };
        // Vars go to AdamW in name order; its state is a Vec, so the order is fixed.
        let opt = AdamW::new(vars.values().cloned().collect(), params)?;
        Ok(Self {
            run,
            key,
            gpt,
            spec,
            vars,
            view,
            opt,
        })
    }

    /// The peer's key.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// The model.
    pub fn gpt(&self) -> &Gpt {
        &self.gpt
    }

    /// The peer's shard in `round`.
    pub fn shard(&self, corpus: &Corpus, round: u64) -> Shard {
        corpus.shard(shard_seed(&self.run, &self.key, round))
    }

    /// Batch `step` of the inner loop in `round` (the loop cycles through the shard's batches).
    pub fn batch(&self, corpus: &Corpus, shard: &Shard, step: u32) -> Batch {
        corpus.shard_batch(
            shard,
            step % self.spec.shard_batches,
            self.spec.batch as usize,
            self.gpt.spec().context as usize,
        )
    }

    fn load(&mut self, checkpoint: &Checkpoint) -> Result<(), TrainError> {
        if checkpoint.spec() != self.gpt.spec() {
            return Err(TrainError::SpecMismatch);
        }
        for (name, values) in checkpoint.tensors() {
            let var = self
                .vars
                .get(name)
                .ok_or_else(|| TrainError::MissingWeight(name.clone()))?;
            var.set(&candle_core::Tensor::from_slice(
                values,
                var.shape(),
                var.device(),
            )?)?;
        }
        Ok(())
    }

    /// Runs H inner steps from `checkpoint` on this peer's shard of `round` and returns the
    /// pseudo-gradient θ_before − θ_after. `progress` advances once per step.
    pub fn inner_loop(
        &mut self,
        checkpoint: &Checkpoint,
        round: u64,
        corpus: &Corpus,
        progress: &ProgressBar,
    ) -> Result<(DenseUpdate, InnerReport), TrainError> {
        self.load(checkpoint)?;
        let shard = self.shard(corpus, round);
        let batches: Vec<Batch> = (0..self.spec.shard_batches.min(self.spec.inner_steps))
            .map(|i| self.batch(corpus, &shard, i))
            .collect();
        let started = Instant::now();
        let (mut first_loss, mut last_loss) = (f32::NAN, f32::NAN);
        let mut tokens = 0;
        for step in 0..self.spec.inner_steps {
            let batch = &batches[(step % self.spec.shard_batches) as usize % batches.len()];
            let loss = self.gpt.loss(&self.view, batch)?;
            self.opt.backward_step(&loss)?;
            last_loss = loss.to_scalar::<f32>()?;
            if step == 0 {
                first_loss = last_loss;
            }
            tokens += batch.tokens();
            progress.inc(1);
        }
        let train_time = started.elapsed();
        let mut delta = BTreeMap::new();
        for (name, before) in checkpoint.tensors() {
            let var = self
                .vars
                .get(name)
                .ok_or_else(|| TrainError::MissingWeight(name.clone()))?;
            let after = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            delta.insert(
                name.clone(),
                before.iter().zip(&after).map(|(b, a)| b - a).collect(),
            );
        }
        tracing::debug!(round, peer = %hex::encode(&self.key[..8]), first_loss, last_loss, ?train_time, "inner loop done");
        Ok((
            DenseUpdate { tensors: delta },
            InnerReport {
                round,
                first_loss,
                last_loss,
                steps: self.spec.inner_steps,
                tokens,
                train_time,
            },
        ))
    }

    /// The L2 norm of each parameter's gradient of the loss on `batch` at the current weights
    /// (`None` if the parameter received no gradient). Used to prove the graph is not cut.
    pub fn gradient_norms(
        &self,
        batch: &Batch,
    ) -> Result<BTreeMap<String, Option<f32>>, TrainError> {
        let loss = self.gpt.loss(&self.view, batch)?;
        let grads = loss.backward()?;
        let mut out = BTreeMap::new();
        for (name, var) in &self.vars {
            let norm = match grads.get(var) {
                Some(g) => Some(g.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?),
                None => None,
            };
            out.insert(name.clone(), norm);
        }
        Ok(out)
    }
}
