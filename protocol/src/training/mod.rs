//! Training rules every node must compute identically: the model specification, the training
//! hyperparameters, the seeds that assign data, the scoring of a submission and the robust
//! aggregation of dense updates.
//!
//! Spec: specs/L2T-10-training.md
//!
//! This module is pure: it never touches tensors of a particular framework. `node` runs candle
//! and feeds the numbers it measured into [`scoring::score`]; `sim` can feed simulated numbers
//! into the same function.

pub mod aggregate;
pub mod model;
pub mod scoring;
pub mod seeds;
pub mod similarity;

pub use aggregate::{aggregate_dense, AggregateDenseError, AggregationRule};
pub use model::{ModelSpec, ModelSpecError, TrainingSpec, MODEL_SPEC_VERSION};
pub use scoring::{
    score, FailReason, Measurements, Score, ScoringPolicy, Verdict, SCORE_TOLERANCE,
};
pub use seeds::{EvalSeed, SeedDomain};
