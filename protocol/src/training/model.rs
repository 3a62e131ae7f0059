//! The model specification (architecture and sizes) and the training hyperparameters of a run.
//!
//! Spec: specs/L2T-10-training.md#model
//!
//! A [`ModelSpec`] is enough to know every parameter tensor's name and shape
//! ([`ModelSpec::manifest`]) without building the model, so a validator can reject a wrong-shape
//! update before it spends any compute on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the [`ModelSpec`] and [`TrainingSpec`] encodings.
pub const MODEL_SPEC_VERSION: u16 = 1;

/// The only architecture of version 1: a byte-level, pre-norm GPT with learned positions,
/// GELU MLPs, bias-free linear layers and an untied output head.
pub const ARCH_BYTE_GPT: &str = "byte-gpt";

/// Largest number of parameters a spec may declare (2^31 f32 = 8 GiB); checked before allocating.
pub const MAX_PARAMS: u64 = 1 << 31;
/// Largest context length a spec may declare.
pub const MAX_CONTEXT: u32 = 1 << 16;
/// Largest vocabulary a spec may declare.
pub const MAX_VOCAB: u32 = 1 << 20;
/// Largest number of layers a spec may declare.
pub const MAX_LAYERS: u32 = 1024;

/// Architecture and sizes of a model. Stored as `config.json` beside `model.safetensors` and in
/// the checkpoint's safetensors metadata, so a checkpoint's BLAKE3 id covers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Encoding version, [`MODEL_SPEC_VERSION`].
    pub version: u16,
    /// Architecture name, [`ARCH_BYTE_GPT`].
    pub arch: String,
    /// Vocabulary size; at least 256 (one token per byte).
    pub vocab: u32,
    /// Context length in tokens.
    pub context: u32,
    /// Number of transformer blocks.
    pub layers: u32,
    /// Residual width.
    pub width: u32,
    /// Attention heads; must divide `width`.
    pub heads: u32,
    /// MLP hidden width as a multiple of `width`.
    pub mlp_ratio: u32,
}

/// Why a [`ModelSpec`] or [`TrainingSpec`] is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelSpecError {
    /// The version is not one this build understands.
    #[error("unsupported model spec version {0}")]
    UnsupportedVersion(u16),
    /// The architecture is not one this build implements.
    #[error("unsupported architecture {0:?}")]
    UnsupportedArch(String),
    /// A field is out of its allowed range.
    #[error("model spec field {field} out of range: {reason}")]
    OutOfRange {
        /// The offending field.
        field: &'static str,
        /// What the allowed range is.
        reason: &'static str,
    },
}

impl ModelSpec {
    /// A byte-level GPT of the given depth and sizes (vocabulary 256, MLP ratio 4).
    pub fn byte_gpt(layers: u32, width: u32, heads: u32, context: u32) -> Self {
        Self {
            version: MODEL_SPEC_VERSION,
            arch: ARCH_BYTE_GPT.to_owned(),
            vocab: 256,
            context,
            layers,
            width,
            heads,
            mlp_ratio: 4,
        }
    }

    /// The tiny model the tests and benchmarks use: 2 layers, width 64, 4 heads, context 64.
    pub fn tiny() -> Self {
        Self::byte_gpt(2, 64, 4, 64)
    }

    /// Checks every field's range and that the total size stays under [`MAX_PARAMS`].
    pub fn validate(&self) -> Result<(), ModelSpecError> {
        use ModelSpecError::OutOfRange;
        if self.version != MODEL_SPEC_VERSION {
            return Err(ModelSpecError::UnsupportedVersion(self.version));
        }
        if self.arch != ARCH_BYTE_GPT {
            return Err(ModelSpecError::UnsupportedArch(self.arch.clone()));
        }
        if self.vocab < 256 || self.vocab > MAX_VOCAB {
            return Err(OutOfRange {
                field: "vocab",
                reason: "256..=2^20",
            });
        }
        if self.context == 0 || self.context > MAX_CONTEXT {
            return Err(OutOfRange {
                field: "context",
                reason: "1..=65536",
            });
        }
        if self.layers == 0 || self.layers > MAX_LAYERS {
            return Err(OutOfRange {
                field: "layers",
                reason: "1..=1024",
            });
        }
        if self.heads == 0 || self.width == 0 || self.width % self.heads != 0 {
            return Err(OutOfRange {
                field: "heads",
                reason: "non-zero and dividing width",
            });
        }
        if self.mlp_ratio == 0 || self.mlp_ratio > 16 {
            return Err(OutOfRange {
                field: "mlp_ratio",
                reason: "1..=16",
            });
        }
        if self.param_count_u128() > u128::from(MAX_PARAMS) {
            return Err(OutOfRange {
                field: "width",
                reason: "model exceeds 2^31 parameters",
            });
        }
        Ok(())
    }

    fn param_count_u128(&self) -> u128 {
        let (v, c, l, w, m) = (
            u128::from(self.vocab),
            u128::from(self.context),
            u128::from(self.layers),
            u128::from(self.width),
            u128::from(self.mlp_ratio),
        );
        let block = 4 * w + 3 * w * w + w * w + 2 * m * w * w;
        v * w + c * w + l * block + 2 * w + v * w
    }

    /// Total number of parameters. Call [`validate`](Self::validate) first; saturates otherwise.
    pub fn param_count(&self) -> u64 {
        u64::try_from(self.param_count_u128()).unwrap_or(u64::MAX)
    }

    /// Every parameter tensor's name and shape, in name order.
    ///
    /// Names follow the Hugging Face habit (`h.0.attn.qkv.weight`). Matrices are stored
    /// `[out, in]`, like `torch.nn.Linear`.
    pub fn manifest(&self) -> BTreeMap<String, Vec<usize>> {
        let (v, c, w) = (
            self.vocab as usize,
            self.context as usize,
            self.width as usize,
        );
        let m = self.mlp_ratio as usize * w;
        let mut out = BTreeMap::new();
        out.insert("tok_emb.weight".to_owned(), vec![v, w]);
        out.insert("pos_emb.weight".to_owned(), vec![c, w]);
        for i in 0..self.layers {
            let p = format!("h.{i}");
            out.insert(format!("{p}.ln1.weight"), vec![w]);
            out.insert(format!("{p}.ln1.bias"), vec![w]);
            out.insert(format!("{p}.attn.qkv.weight"), vec![3 * w, w]);
            out.insert(format!("{p}.attn.proj.weight"), vec![w, w]);
            out.insert(format!("{p}.ln2.weight"), vec![w]);
            out.insert(format!("{p}.ln2.bias"), vec![w]);
            out.insert(format!("{p}.mlp.fc.weight"), vec![m, w]);
            out.insert(format!("{p}.mlp.proj.weight"), vec![w, m]);
        }
        out.insert("ln_f.weight".to_owned(), vec![w]);
        out.insert("ln_f.bias".to_owned(), vec![w]);
        out.insert("head.weight".to_owned(), vec![v, w]);
        out
    }
}

/// Hyperparameters of the inner loop and the outer step. Every peer of a run uses the same values.
///
/// Defaults follow Templar's `hparams.json` except the inner learning rate, which is larger
/// because our models are tiny and train for few rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Encoding version, [`MODEL_SPEC_VERSION`].
    pub version: u16,
    /// Inner AdamW steps per round, H (Templar `inner_steps` = 30).
    pub inner_steps: u32,
    /// Sequences per inner batch.
    pub batch: u32,
    /// Distinct batches in a peer's shard; the inner loop cycles through them.
    pub shard_batches: u32,
    /// Inner AdamW learning rate.
    pub inner_lr: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Outer SGD learning rate α (Templar `outer_learning_rate` = 1.0).
    pub outer_lr: f32,
    /// Sequences in a validator's held-out batch (a multiple of the corpus's topic count keeps
    /// the batch balanced).
    pub heldout_rows: u32,
    /// Sequences of the assigned and of the random batch in the assigned-data check; at most
    /// `batch × shard_batches`.
    pub check_rows: u32,
    /// SparseLoCo chunk side (Templar `target_chunk` = 64).
    pub target_chunk: u32,
    /// SparseLoCo entries kept per chunk (Templar `topk_compression` = 64).
    pub topk: u32,
    /// Error-feedback decay β (Templar `momentum_decay` = 0.95).
    pub ef_decay: f32,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            version: MODEL_SPEC_VERSION,
            inner_steps: 30,
            batch: 8,
            shard_batches: 6,
            inner_lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            outer_lr: 1.0,
            heldout_rows: 16,
            check_rows: 16,
            target_chunk: crate::sparseloco::DEFAULT_TARGET_CHUNK,
            topk: crate::sparseloco::DEFAULT_TOPK,
            ef_decay: crate::sparseloco::DEFAULT_EF_DECAY,
        }
    }
}

impl TrainingSpec {
    /// Checks the ranges of every field.
    pub fn validate(&self) -> Result<(), ModelSpecError> {
        use ModelSpecError::OutOfRange;
        if self.version != MODEL_SPEC_VERSION {
            return Err(ModelSpecError::UnsupportedVersion(self.version));
        }
        if self.inner_steps == 0 || self.inner_steps > 100_000 {
            return Err(OutOfRange {
                field: "inner_steps",
                reason: "1..=100000",
            });
        }
        if self.batch == 0 || self.batch > 4096 {
            return Err(OutOfRange {
                field: "batch",
                reason: "1..=4096",
            });
        }
        if self.shard_batches == 0 || self.shard_batches > 100_000 {
            return Err(OutOfRange {
                field: "shard_batches",
                reason: "1..=100000",
            });
        }
        let finite_pos = |x: f64| x.is_finite() && x > 0.0;
        if !finite_pos(self.inner_lr) || !finite_pos(self.eps) {
            return Err(OutOfRange {
                field: "inner_lr",
                reason: "finite and positive",
            });
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(OutOfRange {
                field: "beta1",
                reason: "in [0, 1)",
            });
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return Err(OutOfRange {
                field: "weight_decay",
                reason: "in [0, 1)",
            });
        }
        if !(self.outer_lr.is_finite() && self.outer_lr > 0.0) {
            return Err(OutOfRange {
                field: "outer_lr",
                reason: "finite and positive",
            });
        }
        if self.heldout_rows == 0 || self.heldout_rows > 4096 {
            return Err(OutOfRange {
                field: "heldout_rows",
                reason: "1..=4096",
            });
        }
        if self.check_rows == 0 || self.check_rows > self.batch.saturating_mul(self.shard_batches) {
            return Err(OutOfRange {
                field: "check_rows",
                reason: "1..=batch×shard_batches",
            });
        }
        if self.codec_params().validate().is_err() {
            return Err(OutOfRange {
                field: "topk",
                reason: "codec parameters out of range",
            });
        }
        if !(0.0..=1.0).contains(&self.ef_decay) {
            return Err(OutOfRange {
                field: "ef_decay",
                reason: "in [0, 1]",
            });
        }
        Ok(())
    }

    /// The SparseLoCo codec parameters of this run.
    pub fn codec_params(&self) -> crate::sparseloco::CodecParams {
        crate::sparseloco::CodecParams {
            target_chunk: self.target_chunk,
            topk: self.topk,
            ..crate::sparseloco::CodecParams::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_matches_param_count() {
        for spec in [ModelSpec::tiny(), ModelSpec::byte_gpt(3, 96, 6, 32)] {
            spec.validate().expect("valid");
            let n: usize = spec
                .manifest()
                .values()
                .map(|s| s.iter().product::<usize>())
                .sum();
            assert_eq!(n as u64, spec.param_count());
        }
    }

    #[test]
    fn rejects_bad_specs() {
        let mut s = ModelSpec::tiny();
        s.heads = 3;
        assert!(matches!(
            s.validate(),
            Err(ModelSpecError::OutOfRange { field: "heads", .. })
        ));
        let mut s = ModelSpec::tiny();
        s.width = 1 << 20;
        s.heads = 1;
        assert!(s.validate().is_err());
        let mut s = ModelSpec::tiny();
        s.version = 2;
        assert_eq!(s.validate(), Err(ModelSpecError::UnsupportedVersion(2)));
        let t = TrainingSpec {
            inner_lr: f64::NAN,
            ..TrainingSpec::default()
        };
        assert!(t.validate().is_err());
        TrainingSpec::default()
            .validate()
            .expect("default is valid");
    }

    #[test]
    fn spec_json_round_trips_and_rejects_unknown_fields() {
        let s = ModelSpec::tiny();
        let j = serde_json::to_string(&s).expect("encode");
        assert_eq!(serde_json::from_str::<ModelSpec>(&j).expect("decode"), s);
        let bad = j.replace("\"mlp_ratio\"", "\"extra\":1,\"mlp_ratio\"");
        assert!(serde_json::from_str::<ModelSpec>(&bad).is_err());
    }
}
