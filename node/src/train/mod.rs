//! Training and validation with candle: the compute the network pays for.
//!
//! Spec: specs/L2T-10-training.md
//!
//! - [`model`]: a byte-level GPT whose forward pass reads named weights (seeded init in
//!   [`checkpoint`]).
//! - [`data`]: a synthetic language generated from the run id; shards from (run, peer, round).
//! - [`inner`]: H AdamW steps and the pseudo-gradient θ_before − θ_after.
//! - [`validate`]: loss before/after on seeded batches, assigned-vs-random check, norm checks.
//! - [`codec`]: SparseLoCo error feedback, wire blobs, checked decoding, sparse aggregation.
//! - [`attack`]: Byzantine training outputs (sign-flip, copycat + noise, ALIE) for the demo
//!   and the simulator's real mode.
//! - [`aggregate`]: robust merging of dense updates (median clip + mean or trimmed mean).
//! - [`checkpoint`]: canonical safetensors, BLAKE3 ids, loading a model directory.
//! - [`device`]: CPU by default; `cuda` and `metal` behind cargo features.
//! - [`local`]: `l402-node train`, the whole round on one machine.
//!
//! The scoring rules and thresholds themselves are pure and live in
//! `l402_protocol::training`, shared with the simulator.
//!
//! Reproducibility: candle's CPU kernels split work across `RAYON_NUM_THREADS` threads. Runs
//! are bit-identical on one machine; pin the variable when comparing runs across machines.

pub mod aggregate;
pub mod attack;
pub mod checkpoint;
pub mod codec;
pub mod data;
pub mod device;
pub mod inner;
pub mod local;
pub mod model;
pub mod rng;
pub mod update;
pub mod validate;

use std::path::PathBuf;

pub use aggregate::aggregate_dense_updates;
pub use checkpoint::{Checkpoint, CheckpointId};
pub use codec::{
    aggregate_submissions, decode_submission, PeerCodec, SubmissionContext, SubmissionError,
};
pub use data::{Batch, Corpus, Shard};
pub use device::{select_device, DeviceChoice};
pub use inner::{InnerReport, InnerTrainer};
pub use model::{Gpt, Weights};
pub use update::{DenseUpdate, UpdateError};
pub use validate::{BeforePass, Evaluation, ValidationError, Validator};

/// Errors of training, validation, aggregation and checkpoint I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A candle operation failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The model or training spec is invalid.
    #[error(transparent)]
    Spec(#[from] l402_protocol::training::ModelSpecError),
    /// Weights do not match their spec.
    #[error("weights do not match the model spec: {0}")]
    BadWeights(UpdateError),
    /// A weight the model needs is absent.
    #[error("missing weight {0:?}")]
    MissingWeight(String),
    /// A checkpoint of another spec was given to a trainer.
    #[error("checkpoint spec differs from the trainer's")]
    SpecMismatch,
    /// An input sequence is longer than the context.
    #[error("sequence of {len} tokens exceeds the context of {context}")]
    SequenceTooLong {
        /// Sequence length.
        len: usize,
        /// Model context.
        context: usize,
    },
    /// A safetensors file is malformed or does not fit the spec.
    #[error("safetensors: {0}")]
    Safetensors(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Aggregation got bad input.
    #[error("aggregation: {0}")]
    Aggregate(#[from] l402_protocol::training::AggregateDenseError),
    /// A submission was rejected before compute.
    #[error(transparent)]
    Submission(#[from] SubmissionError),
    /// The SparseLoCo codec refused its input.
    #[error("codec: {0}")]
    Codec(String),
    /// Aggregation got no updates.
    #[error("no updates to aggregate")]
    NoUpdates,
    /// The device was asked for but its cargo feature is off.
    #[error("device {0} not compiled in: rebuild with --features {0}")]
    DeviceNotCompiled(&'static str),
    /// The device name does not parse.
    #[error("unknown device {0:?}: expected cpu, auto, cuda[:N] or metal[:N]")]
    UnknownDevice(String),
}

impl From<ValidationError> for TrainError {
    fn from(e: ValidationError) -> Self {
        match e {
            ValidationError::Compute(e) => e,
            ValidationError::Submission(e) => Self::Submission(e),
            ValidationError::Rejected(e) => Self::BadWeights(e),
            ValidationError::SeedMismatch => Self::Codec("before pass of another eval seed".into()),
        }
    }
}
