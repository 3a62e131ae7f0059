//! The byte-level GPT: a stateless forward pass over a map of named weights.
//!
//! Spec: specs/L2T-10-training.md#model
//!
//! The model holds no parameters. [`Gpt::forward`] reads them from a [`Weights`] map, so the
//! same code runs on trainable `Var`s (inner loop), on a checkpoint (validation "before") and on
//! a checkpoint minus an update (validation "after") without copying into a `VarMap`.
//!
//! Two of candle's fused CPU ops have no backward pass and cut the autograd graph silently
//! (reference/upstream-apis.md §10): `softmax_last_dim` and the `layer_norm`/`rms_norm` kernels.
//! We use `candle_nn::ops::softmax` and write layer norm out of differentiable ops instead, and
//! `tests/train.rs` asserts that every parameter receives a gradient.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, D};
use l402_protocol::training::ModelSpec;

use super::data::Batch;
use super::TrainError;

/// Named parameter tensors, in name order.
pub type Weights = BTreeMap<String, Tensor>;

/// Layer-norm ε.
const LN_EPS: f64 = 1e-5;
/// Standard deviation of the initial matrices (GPT-2).
pub const INIT_STD: f64 = 0.02;

/// A byte-level GPT of a given [`ModelSpec`].
#[derive(Debug, Clone)]
pub struct Gpt {
    spec: ModelSpec,
    device: Device,
    /// Additive causal mask, `[context, context]`: 0 on and below the diagonal, −1e9 above.
    mask: Tensor,
}

impl Gpt {
    /// Builds the forward pass of `spec` on `device`. Validates the spec first.
    pub fn new(spec: &ModelSpec, device: &Device) -> Result<Self, TrainError> {
        spec.validate()?;
        let c = spec.context as usize;
        let mask: Vec<f32> = (0..c * c)
            .map(|i| if i % c > i / c { -1e9 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (c, c), device)?;
        Ok(Self {
            spec: spec.clone(),
            device: device.clone(),
            mask,
        })
    }

    /// The spec this model was built for.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The device its tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `[batch, seq, vocab]` for `tokens` `[batch, seq]` (u32, seq ≤ context).
    pub fn forward(&self, w: &Weights, tokens: &Tensor) -> Result<Tensor, TrainError> {
        let (b, t) = tokens.dims2()?;
        if t > self.spec.context as usize {
            return Err(TrainError::SequenceTooLong {
                len: t,
                context: self.spec.context as usize,
            });
        }
        let c = self.spec.width as usize;
        let tok = get(w, "tok_emb.weight")?
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, t, c))?;
        let pos = get(w, "pos_emb.weight")?.narrow(0, 0, t)?;
        let mut x = tok.broadcast_add(&pos)?;
        for i in 0..self.spec.layers {
            let p = format!("h.{i}");
            let h = layer_norm(
                &x,
                get(w, &format!("{p}.ln1.weight"))?,
                get(w, &format!("{p}.ln1.bias"))?,
            )?;
            x = (x + self.attention(w, &p, &h)?)?;
            let h = layer_norm(
                &x,
                get(w, &format!("{p}.ln2.weight"))?,
                get(w, &format!("{p}.ln2.bias"))?,
            )?;
            let h = linear(&h, get(w, &format!("{p}.mlp.fc.weight"))?)?.gelu()?;
            x = (x + linear(&h, get(w, &format!("{p}.mlp.proj.weight"))?)?)?;
        }
        let x = layer_norm(&x, get(w, "ln_f.weight")?, get(w, "ln_f.bias")?)?;
        linear(&x, get(w, "head.weight")?)
    }

    fn attention(&self, w: &Weights, p: &str, x: &Tensor) -> Result<Tensor, TrainError> {
        let (b, t, c) = x.dims3()?;
        let nh = self.spec.heads as usize;
        let hd = c / nh;
        let qkv = linear(x, get(w, &format!("{p}.attn.qkv.weight"))?)?
            .reshape((b, t, 3, nh, hd))?
            .permute((2, 0, 3, 1, 4))?; // [3, b, nh, t, hd]
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let att = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let mask = self.mask.narrow(0, 0, t)?.narrow(1, 0, t)?;
        // Not `softmax_last_dim`: that fused kernel has no backward pass.
        let att = candle_nn::ops::softmax(&att.broadcast_add(&mask)?, D::Minus1)?;
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))?;
        linear(&y, get(w, &format!("{p}.attn.proj.weight"))?)
    }

    /// Mean next-token cross-entropy (nats) of `batch`.
    pub fn loss(&self, w: &Weights, batch: &Batch) -> Result<Tensor, TrainError> {
        let (inputs, targets) = batch.tensors(&self.device)?;
        let logits = self.forward(w, &inputs)?;
        let (b, t, v) = logits.dims3()?;
        Ok(candle_nn::loss::cross_entropy(
            &logits.reshape((b * t, v))?,
            &targets.reshape(b * t)?,
        )?)
    }

    /// [`loss`](Self::loss) as an f32.
    pub fn loss_value(&self, w: &Weights, batch: &Batch) -> Result<f32, TrainError> {
        Ok(self
            .loss(w, batch)?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?)
    }

    /// Mean next-token cross-entropy of each row of `batch`, in one forward pass. Validators
    /// evaluate several batches in one call by concatenating them ([`Batch::concat`]).
    pub fn row_losses(&self, w: &Weights, batch: &Batch) -> Result<Vec<f32>, TrainError> {
        let (inputs, targets) = batch.tensors(&self.device)?;
        let logits = self.forward(w, &inputs)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let nll = logp
            .gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
            .squeeze(D::Minus1)?;
        Ok(nll
            .neg()?
            .mean(D::Minus1)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?)
    }
}

/// Mean of `xs` accumulated in f64 (index order), as f32.
pub fn mean(xs: &[f32]) -> f32 {
    (xs.iter().map(|x| f64::from(*x)).sum::<f64>() / xs.len().max(1) as f64) as f32
}

fn get<'a>(w: &'a Weights, name: &str) -> Result<&'a Tensor, TrainError> {
    w.get(name)
        .ok_or_else(|| TrainError::MissingWeight(name.to_owned()))
}

/// `x @ wᵀ` for `x` `[b, t, in]` and `w` `[out, in]` (bias-free, like `torch.nn.Linear`).
fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor, TrainError> {
    let (b, t, i) = x.dims3()?;
    let o = w.dim(0)?;
    Ok(x.reshape((b * t, i))?.matmul(&w.t()?)?.reshape((b, t, o))?)
}

/// Layer norm over the last dimension, written out of differentiable ops: candle's fused
/// `layer_norm` kernel has no backward pass on the CPU.
fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor, TrainError> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
    Ok(normed.broadcast_mul(weight)?.broadcast_add(bias)?)
}
