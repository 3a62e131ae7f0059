//! Merging a round's passing updates into the next checkpoint.
//!
//! Spec: specs/L2T-10-training.md#aggregation

use std::collections::BTreeMap;

use l402_protocol::training::{aggregate_dense, AggregationRule};

use super::checkpoint::Checkpoint;
use super::update::DenseUpdate;
use super::TrainError;

/// Aggregates `updates` tensor by tensor with `rule`, then takes the outer step
/// θ' = θ − α·aggregate. Every update is checked against the checkpoint's spec first.
pub fn aggregate_dense_updates(
    checkpoint: &Checkpoint,
    updates: &[&DenseUpdate],
    rule: AggregationRule,
    alpha: f32,
) -> Result<(Checkpoint, DenseUpdate), TrainError> {
    if updates.is_empty() {
        return Err(TrainError::NoUpdates);
    }
    for u in updates {
        u.check(checkpoint.spec()).map_err(TrainError::BadWeights)?;
    }
    let mut merged = BTreeMap::new();
    for name in checkpoint.tensors().keys() {
        let columns: Vec<&[f32]> = updates.iter().map(|u| u.tensors[name].as_slice()).collect();
        merged.insert(name.clone(), aggregate_dense(&columns, rule)?);
    }
    let merged = DenseUpdate { tensors: merged };
    let next = checkpoint
        .apply(&merged, alpha)
        .map_err(TrainError::BadWeights)?;
    Ok((next, merged))
}
