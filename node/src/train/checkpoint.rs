//! Checkpoints: the model's weights as canonical safetensors bytes, named by their BLAKE3 hash.
//!
//! Spec: specs/L2T-10-training.md#checkpoints
//!
//! A checkpoint is a directory with `model.safetensors` (f32 tensors named as in
//! [`ModelSpec::manifest`], the spec as JSON under the metadata key [`SPEC_METADATA_KEY`]) and a
//! human-readable copy of the spec in `config.json`. The bytes are canonical: tensors sorted by
//! name (the safetensors crate sorts them) and exactly one metadata key, so equal weights give
//! equal bytes and the [`CheckpointId`] — the BLAKE3 hash of `model.safetensors` — names them.
//!
//! [`Checkpoint::load_dir`] also loads a model someone else wrote ("bring your own model"): any
//! float dtype safetensors candle reads, with the spec taken from `config.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use l402_protocol::training::seeds::{derive, SeedDomain};
use l402_protocol::training::ModelSpec;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::model::{Weights, INIT_STD};
use super::rng::SeedRng;
use super::update::{DenseUpdate, UpdateError};
use super::TrainError;

/// Metadata key under which `model.safetensors` carries its [`ModelSpec`] as JSON.
pub const SPEC_METADATA_KEY: &str = "l402.model_spec";
/// File name of the weights inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the spec inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";
/// Largest `model.safetensors` we read (8 GiB + header); checked before reading it.
pub const MAX_CHECKPOINT_BYTES: u64 = (1 << 33) + (1 << 20);

/// BLAKE3 hash of a checkpoint's canonical `model.safetensors` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId(pub [u8; 32]);

impl std::fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A model's weights, host-side, with the spec they belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    spec: ModelSpec,
    tensors: BTreeMap<String, Vec<f32>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Checkpoint {
    /// Fresh weights for `spec` from `seed`: matrices N(0, 0.02²) (output projections scaled by
    /// 1/√(2·layers), as in GPT-2), layer-norm weights 1 and biases 0. Tensors are filled in
    /// name order from one ChaCha20 stream, so the result does not depend on the platform.
    pub fn init(spec: &ModelSpec, seed: &[u8; 32]) -> Result<Self, TrainError> {
        spec.validate()?;
        let mut rng = SeedRng::new(derive(SeedDomain::Init, &[seed]));
        let proj_std = INIT_STD / (2.0 * f64::from(spec.layers)).sqrt();
        let tensors = spec
            .manifest()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let values = if name.contains(".ln") || name.starts_with("ln_f") {
                    vec![if name.ends_with(".weight") { 1.0 } else { 0.0 }; n]
                } else {
                    let std = if name.ends_with("proj.weight") {
                        proj_std
                    } else {
                        INIT_STD
                    };
                    (0..n).map(|_| (rng.normal() * std) as f32).collect()
                };
                (name, values)
            })
            .collect();
        Ok(Self {
            spec: spec.clone(),
            tensors,
        })
    }

    /// Wraps tensors after checking them against `spec` (names, sizes, finiteness).
    pub fn from_tensors(
        spec: ModelSpec,
        tensors: BTreeMap<String, Vec<f32>>,
    ) -> Result<Self, TrainError> {
        spec.validate()?;
        let as_update = DenseUpdate { tensors };
        as_update.check(&spec).map_err(TrainError::BadWeights)?;
        Ok(Self {
            spec,
            tensors: as_update.tensors,
        })
    }

    /// The model spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The weights, by name.
    pub fn tensors(&self) -> &BTreeMap<String, Vec<f32>> {
        &self.tensors
    }

    /// L2 norm of all weights (f64 accumulation in name order).
    pub fn norm(&self) -> f32 {
        self.tensors
            .values()
            .flatten()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt() as f32
    }

    /// The weights as candle tensors on `device`.
    pub fn weights(&self, device: &Device) -> Result<Weights, TrainError> {
        let manifest = self.spec.manifest();
        let mut out = Weights::new();
        for (name, values) in &self.tensors {
            let shape = manifest
                .get(name)
                .ok_or_else(|| TrainError::MissingWeight(name.clone()))?;
            out.insert(
                name.clone(),
                Tensor::from_slice(values, shape.as_slice(), device)?,
            );
        }
        Ok(out)
    }

    /// The outer step θ − α·Δ, computed in plain Rust f32 so every node gets the same bits.
    /// The update is checked against the spec first.
    pub fn apply(&self, update: &DenseUpdate, alpha: f32) -> Result<Self, UpdateError> {
        update.check(&self.spec)?;
        let tensors = self
            .tensors
            .iter()
            .map(|(name, theta)| {
                let d = &update.tensors[name];
                (
                    name.clone(),
                    theta.iter().zip(d).map(|(t, d)| t - alpha * d).collect(),
                )
            })
            .collect();
        Ok(Self {
            spec: self.spec.clone(),
            tensors,
        })
    }

    /// The canonical `model.safetensors` bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, TrainError> {
        let manifest = self.spec.manifest();
        let bytes: BTreeMap<&str, Vec<u8>> = self
            .tensors
            .iter()
            .map(|(n, v)| (n.as_str(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (name, data) in &bytes {
            let shape = manifest
                .get(*name)
                .ok_or_else(|| TrainError::MissingWeight((*name).to_owned()))?
                .clone();
            views.push((
                *name,
                TensorView::new(Dtype::F32, shape, data).map_err(st_err)?,
            ));
        }
        let spec_json = serde_json::to_string(&self.spec)
            .map_err(|e| TrainError::Safetensors(e.to_string()))?;
        let meta = HashMap::from([(SPEC_METADATA_KEY.to_owned(), spec_json)]);
        safetensors::serialize(views, Some(meta)).map_err(st_err)
    }

    /// The checkpoint's id: BLAKE3 of [`to_safetensors`](Self::to_safetensors).
    pub fn id(&self) -> Result<CheckpointId, TrainError> {
        Ok(CheckpointId(
            *blake3::hash(&self.to_safetensors()?).as_bytes(),
        ))
    }

    /// Parses `model.safetensors` bytes. The spec comes from `spec` if given, else from the
    /// file's metadata. Names, shapes and dtypes are checked against the spec from the header
    /// alone, before any tensor is converted.
    pub fn from_safetensors(bytes: &[u8], spec: Option<ModelSpec>) -> Result<Self, TrainError> {
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(st_err)?;
        let spec = match spec {
            Some(s) => s,
            None => {
                let json = metadata
                    .metadata()
                    .as_ref()
                    .and_then(|m| m.get(SPEC_METADATA_KEY))
                    .ok_or_else(|| {
                        TrainError::Safetensors(format!(
                            "no {SPEC_METADATA_KEY} metadata and no config.json"
                        ))
                    })?;
                serde_json::from_str(json)
                    .map_err(|e| TrainError::Safetensors(format!("bad model spec: {e}")))?
            }
        };
        spec.validate()?;
        let manifest = spec.manifest();
        let st = SafeTensors::deserialize(bytes).map_err(st_err)?;
        let names: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
        if let Some(extra) = names.iter().find(|n| !manifest.contains_key(*n)) {
            return Err(TrainError::BadWeights(UpdateError::UnknownTensor(
                extra.clone(),
            )));
        }
        let mut tensors = BTreeMap::new();
        for (name, shape) in &manifest {
            let view = st
                .tensor(name)
                .map_err(|_| TrainError::BadWeights(UpdateError::MissingTensor(name.clone())))?;
            if view.shape() != shape.as_slice() {
                return Err(TrainError::BadWeights(UpdateError::ShapeMismatch {
                    name: name.clone(),
                    expected: shape.clone(),
                    got: view.shape().to_vec(),
                }));
            }
            let values = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 | Dtype::BF16 | Dtype::F64 => {
                    let dtype = match view.dtype() {
                        Dtype::F16 => DType::F16,
                        Dtype::BF16 => DType::BF16,
                        _ => DType::F64,
                    };
                    Tensor::from_raw_buffer(view.data(), dtype, shape, &Device::Cpu)?
                        .to_dtype(DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()?
                }
                other => {
                    return Err(TrainError::Safetensors(format!(
                        "tensor {name:?} has unsupported dtype {other:?}"
                    )))
                }
            };
            tensors.insert(name.clone(), values);
        }
        Self::from_tensors(spec, tensors)
    }

    /// Writes `model.safetensors` and `config.json` into `dir` (created if missing) and returns
    /// the checkpoint id. The weights file is written to a temporary name and renamed, so a
    /// crash never leaves a torn checkpoint.
    pub fn save_dir(&self, dir: &Path) -> Result<CheckpointId, TrainError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let bytes = self.to_safetensors()?;
        let path = dir.join(WEIGHTS_FILE);
        let tmp = dir.join(format!("{WEIGHTS_FILE}.tmp"));
        std::fs::write(&tmp, &bytes).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        let config = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(&self.spec)
            .map_err(|e| TrainError::Safetensors(e.to_string()))?;
        std::fs::write(&config, json).map_err(io_err(&config))?;
        Ok(CheckpointId(*blake3::hash(&bytes).as_bytes()))
    }

    /// Loads a model directory: `model.safetensors`, with the spec from `config.json` if present
    /// (else from the safetensors metadata).
    pub fn load_dir(dir: &Path) -> Result<Self, TrainError> {
        let path: PathBuf = dir.join(WEIGHTS_FILE);
        let len = std::fs::metadata(&path).map_err(io_err(&path))?.len();
        if len > MAX_CHECKPOINT_BYTES {
            return Err(TrainError::Safetensors(format!(
                "{} is {len} bytes, over the {MAX_CHECKPOINT_BYTES}-byte cap",
                path.display()
            )));
        }
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let config = dir.join(CONFIG_FILE);
        let spec = match std::fs::read_to_string(&config) {
            Ok(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| TrainError::Safetensors(format!("{}: {e}", config.display())))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(TrainError::Io {
                    path: config,
                    source: e,
                })
            }
        };
        Self::from_safetensors(&bytes, spec)
    }
}

fn st_err(e: safetensors::SafeTensorError) -> TrainError {
    TrainError::Safetensors(format!("{e:?}"))
}
