//! Dense pseudo-gradients: one f32 vector per parameter tensor.
//!
//! Spec: specs/L2T-10-training.md#updates

use std::collections::BTreeMap;

use l402_protocol::training::ModelSpec;

/// Why an update does not fit the model it claims to update. Raised before any compute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// A parameter of the model has no entry in the update.
    #[error("update lacks tensor {0:?}")]
    MissingTensor(String),
    /// The update names a tensor the model does not have.
    #[error("update names unknown tensor {0:?}")]
    UnknownTensor(String),
    /// A tensor has the wrong shape or number of values.
    #[error("tensor {name:?} has shape {got:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// What the update holds.
        got: Vec<usize>,
    },
    /// A tensor holds NaN or infinity.
    #[error("tensor {0:?} holds a non-finite value")]
    NonFinite(String),
}

/// A dense update Δ, keyed by parameter name, in name order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DenseUpdate {
    /// Values of each tensor, row-major.
    pub tensors: BTreeMap<String, Vec<f32>>,
}

impl DenseUpdate {
    /// An all-zero update for `spec`.
    pub fn zeros(spec: &ModelSpec) -> Self {
        let tensors = spec
            .manifest()
            .into_iter()
            .map(|(n, s)| (n, vec![0.0; s.iter().product()]))
            .collect();
        Self { tensors }
    }

    /// Checks names, sizes and finiteness against `spec`: the cheap checks a validator runs
    /// before it spends compute on a submission.
    pub fn check(&self, spec: &ModelSpec) -> Result<(), UpdateError> {
        let manifest = spec.manifest();
        if let Some(name) = self.tensors.keys().find(|n| !manifest.contains_key(*n)) {
            return Err(UpdateError::UnknownTensor(name.clone()));
        }
        for (name, shape) in &manifest {
            let values = self
                .tensors
                .get(name)
                .ok_or_else(|| UpdateError::MissingTensor(name.clone()))?;
            if values.len() != shape.iter().product::<usize>() {
                return Err(UpdateError::ShapeMismatch {
                    name: name.clone(),
                    expected: shape.clone(),
                    got: vec![values.len()],
                });
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(UpdateError::NonFinite(name.clone()));
            }
        }
        Ok(())
    }

    /// L2 norm over all tensors (accumulated in f64 in name order).
    pub fn norm(&self) -> f32 {
        self.tensors
            .values()
            .flatten()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt() as f32
    }

    /// This update times `k`.
    pub fn scaled(&self, k: f32) -> Self {
        Self {
            tensors: self
                .tensors
                .iter()
                .map(|(n, v)| (n.clone(), v.iter().map(|x| x * k).collect()))
                .collect(),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.tensors.values().map(Vec::len).sum()
    }

    /// Whether the update holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
