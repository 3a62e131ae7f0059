//! SparseLoCo glue: per-tensor error feedback on the peer, wire blobs, checked decoding on the
//! validator, sparse aggregation into the next checkpoint.
//!
//! Spec: specs/L2T-10-training.md#updates (codec: specs/L2T-06-sparseloco.md)
//!
//! The codec itself (chunking, top-k, packing, error feedback, aggregation) is
//! `l402_protocol::sparseloco`; the blob format is `l402_protocol::wire::PseudoGradient`.

use std::collections::BTreeMap;

use l402_protocol::sparseloco::layout::ChunkLayout;
use l402_protocol::sparseloco::pack::{packed_code_len, packed_index_len};
use l402_protocol::sparseloco::{self, CodecParams, ErrorFeedback};
use l402_protocol::training::{ModelSpec, TrainingSpec};
use l402_protocol::wire::{BlobId, NamedTensor, PseudoGradient, WireError};

use super::checkpoint::{Checkpoint, CheckpointId};
use super::update::{DenseUpdate, UpdateError};
use super::TrainError;

/// Why a submitted blob is not a usable update for this round. Every variant is raised before
/// any forward pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmissionError {
    /// The blob does not parse (bad frame, CBOR, caps, packing …).
    #[error("malformed blob: {0}")]
    Wire(#[from] WireError),
    /// The blob is for another run.
    #[error("blob is for run {got:?}, not {expected:?}")]
    WrongRun {
        /// Our run label.
        expected: String,
        /// The blob's.
        got: String,
    },
    /// The blob is for another round.
    #[error("blob is for round {got}, not {expected}")]
    WrongRound {
        /// The round being validated.
        expected: u64,
        /// The blob's.
        got: u64,
    },
    /// The blob builds on another checkpoint.
    #[error("blob builds on checkpoint {got}, not {expected}")]
    WrongBase {
        /// The round's checkpoint.
        expected: BlobId,
        /// The blob's.
        got: BlobId,
    },
    /// The blob uses other codec parameters than the run.
    #[error("blob uses codec parameters {got:?}, the run uses {expected:?}")]
    WrongCodec {
        /// The run's parameters.
        expected: CodecParams,
        /// The blob's.
        got: CodecParams,
    },
    /// The tensors do not match the model.
    #[error(transparent)]
    Shape(#[from] UpdateError),
}

/// The wire `run` label of a 32-byte run id: its lowercase hex (64 characters).
pub fn run_label(run: &[u8; 32]) -> String {
    hex::encode(run)
}

/// The wire id of a checkpoint (the same BLAKE3 hash).
pub fn base_id(id: CheckpointId) -> BlobId {
    BlobId(id.0)
}

/// Exact payload size of a pseudo-gradient of `spec` under `params`: the cap passed to the
/// wire decoder, so an oversized payload is refused before it is decompressed.
pub fn payload_bytes(spec: &ModelSpec, params: &CodecParams) -> Result<u64, TrainError> {
    let mut total = 0u64;
    for shape in spec.manifest().values() {
        let shape: Vec<u64> = shape.iter().map(|d| *d as u64).collect();
        let n = ChunkLayout::new(&shape, params)
            .map_err(|e| TrainError::Codec(e.to_string()))?
            .n_entries();
        total += (packed_index_len(n) + packed_code_len(n)) as u64;
    }
    Ok(total)
}

/// A peer's SparseLoCo state: one error-feedback buffer per parameter tensor.
#[derive(Debug, Clone)]
pub struct PeerCodec {
    params: CodecParams,
    feedback: BTreeMap<String, ErrorFeedback>,
}

impl PeerCodec {
    /// Zeroed buffers for every tensor of `spec`.
    pub fn new(spec: &ModelSpec, training: &TrainingSpec) -> Result<Self, TrainError> {
        let params = training.codec_params();
        let mut feedback = BTreeMap::new();
        for (name, shape) in spec.manifest() {
            let shape: Vec<u64> = shape.iter().map(|d| *d as u64).collect();
            let ef = ErrorFeedback::new(&shape, params, training.ef_decay)
                .map_err(|e| TrainError::Codec(e.to_string()))?;
            feedback.insert(name, ef);
        }
        Ok(Self { params, feedback })
    }

    /// Folds `delta` into the buffers (e ← β·e + Δ), encodes them and keeps the residuals,
    /// returning the round's submission.
    pub fn compress(
        &mut self,
        delta: &DenseUpdate,
        run: &[u8; 32],
        round: u64,
        base: CheckpointId,
    ) -> Result<PseudoGradient, TrainError> {
        if let Some(extra) = delta
            .tensors
            .keys()
            .find(|n| !self.feedback.contains_key(*n))
        {
            return Err(TrainError::BadWeights(UpdateError::UnknownTensor(
                extra.clone(),
            )));
        }
        let mut tensors = Vec::with_capacity(self.feedback.len());
        for (name, ef) in &mut self.feedback {
            let d = delta
                .tensors
                .get(name)
                .ok_or_else(|| TrainError::BadWeights(UpdateError::MissingTensor(name.clone())))?;
            let tensor = ef.step(d).map_err(|e| TrainError::Codec(e.to_string()))?;
            tensors.push(NamedTensor {
                name: name.clone(),
                tensor,
                extensions: Default::default(),
            });
        }
        Ok(PseudoGradient::new(
            run_label(run),
            round,
            base_id(base),
            self.params,
            tensors,
        ))
    }

    /// L2 norm of all residuals.
    pub fn residual_norm(&self) -> f32 {
        self.feedback
            .values()
            .flat_map(|e| e.residual())
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt() as f32
    }
}

/// What a submission for this round must match.
#[derive(Debug, Clone)]
pub struct SubmissionContext {
    /// Run id.
    pub run: [u8; 32],
    /// Round being validated.
    pub round: u64,
    /// Id of the round's checkpoint.
    pub base: CheckpointId,
    /// The run's model.
    pub spec: ModelSpec,
    /// The run's codec parameters.
    pub params: CodecParams,
}

/// Checks that `g` belongs to this round and fits the model: run, round, base, codec
/// parameters, then every tensor's name and shape.
pub fn check_submission(
    g: &PseudoGradient,
    ctx: &SubmissionContext,
) -> Result<(), SubmissionError> {
    let label = run_label(&ctx.run);
    if g.run != label {
        return Err(SubmissionError::WrongRun {
            expected: label,
            got: g.run.clone(),
        });
    }
    if g.round != ctx.round {
        return Err(SubmissionError::WrongRound {
            expected: ctx.round,
            got: g.round,
        });
    }
    if g.base_checkpoint != base_id(ctx.base) {
        return Err(SubmissionError::WrongBase {
            expected: base_id(ctx.base),
            got: g.base_checkpoint,
        });
    }
    if g.params != ctx.params {
        return Err(SubmissionError::WrongCodec {
            expected: ctx.params,
            got: g.params,
        });
    }
    let manifest = ctx.spec.manifest();
    if let Some(t) = g.tensors.iter().find(|t| !manifest.contains_key(&t.name)) {
        return Err(UpdateError::UnknownTensor(t.name.clone()).into());
    }
    for (name, shape) in &manifest {
        let t = g
            .tensor(name)
            .ok_or_else(|| UpdateError::MissingTensor(name.clone()))?;
        let got: Vec<usize> = t
            .shape()
            .iter()
            .map(|d| usize::try_from(*d).unwrap_or(usize::MAX))
            .collect();
        if &got != shape {
            return Err(UpdateError::ShapeMismatch {
                name: name.clone(),
                expected: shape.clone(),
                got,
            }
            .into());
        }
    }
    Ok(())
}

/// Parses a submitted blob with the payload capped at the model's exact size, checks it
/// against the round, and decodes it to a dense update. No model compute happens here.
pub fn decode_submission(
    blob: &[u8],
    ctx: &SubmissionContext,
) -> Result<(PseudoGradient, DenseUpdate), SubmissionError> {
    let cap = payload_bytes(&ctx.spec, &ctx.params).map_err(|_| SubmissionError::WrongCodec {
        expected: ctx.params,
        got: ctx.params,
    })?;
    let g = PseudoGradient::from_blob_with_limit(blob, cap)?;
    check_submission(&g, ctx)?;
    let tensors = g
        .tensors
        .iter()
        .map(|t| (t.name.clone(), sparseloco::decode(&t.tensor)))
        .collect();
    Ok((g, DenseUpdate { tensors }))
}

/// Merges the passing submissions (in a canonical order, e.g. by submitter key) with
/// `sparseloco::aggregate` — median-norm clipping, then per-coordinate mean over the peers that
/// selected each coordinate — and takes the outer step θ' = θ − α·aggregate.
pub fn aggregate_submissions(
    checkpoint: &Checkpoint,
    passing: &[&PseudoGradient],
    alpha: f32,
) -> Result<(Checkpoint, DenseUpdate), TrainError> {
    if passing.is_empty() {
        return Err(TrainError::NoUpdates);
    }
    let mut merged = BTreeMap::new();
    for name in checkpoint.tensors().keys() {
        let parts = passing
            .iter()
            .map(|g| {
                g.tensor(name)
                    .ok_or_else(|| TrainError::BadWeights(UpdateError::MissingTensor(name.clone())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        merged.insert(
            name.clone(),
            sparseloco::aggregate(&parts).map_err(|e| TrainError::Codec(e.to_string()))?,
        );
    }
    let merged = DenseUpdate { tensors: merged };
    let next = checkpoint
        .apply(&merged, alpha)
        .map_err(TrainError::BadWeights)?;
    Ok((next, merged))
}
