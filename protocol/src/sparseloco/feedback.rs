//! The error-feedback buffer that carries what was not transmitted into the next round.
//!
//! Spec: specs/L2T-06-sparseloco.md#error-feedback
//!
//! Per round, with decay β (0.95) and outer learning rate 1 (Templar's `neurons.py`):
//!
//! ```text
//! e ← β·e + Δ
//! T = encode(e)
//! e ← e − decode(T)        (the residual keeps the quantisation error too)
//! ```
//!
//! Hence, over rounds t = 1..R: `Σ decode(T_t) + e_R + (1 − β)·Σ e_{t−1} = Σ Δ_t`; with β = 1 the
//! transmitted updates plus the final residual are exactly the sum of the inputs.

use super::encode::{encode, EncodeError, EncodedTensor};
use super::layout::ChunkLayout;
use super::quant::MAX_ABS_VALUE;
use super::CodecParams;

/// One tensor's error-feedback state.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorFeedback {
    shape: Vec<u64>,
    params: CodecParams,
    decay: f32,
    buf: Vec<f32>,
}

impl ErrorFeedback {
    /// A zeroed buffer for a tensor of `shape`.
    pub fn new(shape: &[u64], params: CodecParams, decay: f32) -> Result<Self, EncodeError> {
        let layout = ChunkLayout::new(shape, &params)?;
        Ok(Self {
            shape: shape.to_vec(),
            params,
            decay,
            buf: vec![0.0; layout.len()],
        })
    }

    /// Restores a buffer saved earlier (e.g. after a restart).
    pub fn from_residual(
        shape: &[u64],
        params: CodecParams,
        decay: f32,
        residual: Vec<f32>,
    ) -> Result<Self, EncodeError> {
        let mut s = Self::new(shape, params, decay)?;
        if residual.len() != s.buf.len() {
            return Err(EncodeError::LengthMismatch {
                expected: s.buf.len(),
                got: residual.len(),
            });
        }
        s.buf = residual;
        Ok(s)
    }

    /// The current residual `e`.
    pub fn residual(&self) -> &[f32] {
        &self.buf
    }

    /// The decay β.
    pub fn decay(&self) -> f32 {
        self.decay
    }

    /// Folds a pseudo-gradient into the buffer, encodes it and keeps the residual.
    ///
    /// `delta` is checked before anything changes: on an error the buffer is untouched.
    pub fn step(&mut self, delta: &[f32]) -> Result<EncodedTensor, EncodeError> {
        if delta.len() != self.buf.len() {
            return Err(EncodeError::LengthMismatch {
                expected: self.buf.len(),
                got: delta.len(),
            });
        }
        if let Some(bad) = delta.iter().find(|d| d.is_nan() || d.abs() > MAX_ABS_VALUE) {
            return Err(if bad.is_finite() {
                EncodeError::ValueTooLarge
            } else {
                EncodeError::NonFinite
            });
        }
        let before = self.buf.clone();
        for (e, &d) in self.buf.iter_mut().zip(delta) {
            *e = *e * self.decay + d;
        }
        match encode(&self.buf, &self.shape, &self.params) {
            Ok(t) => {
                let buf = &mut self.buf;
                t.for_each_entry(|p, v| buf[p] -= v);
                Ok(t)
            }
            Err(e) => {
                self.buf = before;
                Err(e)
            }
        }
    }
}
