//! Encoding a dense tensor into an [`EncodedTensor`] and decoding it back.
//!
//! Spec: specs/L2T-06-sparseloco.md#encoding

use thiserror::Error;

use super::layout::{ChunkLayout, LayoutError};
use super::pack::{self, PackError};
use super::quant::{self, QuantError, QuantParams, MAX_ABS_VALUE};
use super::select::{Selector, ABS_MASK};
use super::CodecParams;

/// Why a dense tensor cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The shape or parameters are unusable.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The number of values does not match the shape.
    #[error("tensor has {got} values, its shape needs {expected}")]
    LengthMismatch {
        /// Elements the shape implies.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error("tensor contains NaN or infinite values")]
    NonFinite,
    /// A value exceeds [`MAX_ABS_VALUE`] in magnitude.
    #[error("tensor value exceeds {MAX_ABS_VALUE:e} in magnitude")]
    ValueTooLarge,
}

/// Why received encoded parts do not form a valid tensor.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TensorError {
    /// The shape or parameters are unusable.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A packed stream has the wrong length or non-zero padding.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The quantisation parameters are not finite or out of range.
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// An index is not below the chunk size.
    #[error("chunk {chunk}: index {index} is outside the chunk of {chunk_len}")]
    IndexOutOfRange {
        /// Chunk number.
        chunk: usize,
        /// Offending index.
        index: u16,
        /// Elements in the chunk.
        chunk_len: usize,
    },
    /// Indices of a chunk are not strictly ascending (duplicates included).
    #[error("chunk {chunk}: indices are not strictly ascending (duplicate or unordered)")]
    IndicesNotAscending {
        /// Chunk number.
        chunk: usize,
    },
}

/// One compressed tensor: its layout, quantisation parameters and packed streams.
///
/// Invariant (checked by [`EncodedTensor::from_parts`] and guaranteed by [`encode`]): the streams
/// have the lengths the layout implies, padding is zero, each chunk's indices are strictly ascending
/// and inside the chunk, and the quantisation parameters are finite.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTensor {
    shape: Vec<u64>,
    params: CodecParams,
    layout: ChunkLayout,
    quant: QuantParams,
    indices: Vec<u8>,
    codes: Vec<u8>,
}

impl EncodedTensor {
    /// Assembles and validates a tensor received from a peer.
    pub fn from_parts(
        shape: Vec<u64>,
        params: CodecParams,
        quant: QuantParams,
        indices: Vec<u8>,
        codes: Vec<u8>,
    ) -> Result<Self, TensorError> {
        let layout = ChunkLayout::new(&shape, &params)?;
        quant.validate()?;
        let n = layout.n_entries();
        // Lengths first: nothing below allocates more than the layout implies.
        let want = pack::packed_index_len(n);
        if indices.len() != want {
            return Err(PackError::WrongLength {
                expected: want,
                got: indices.len(),
            }
            .into());
        }
        let want = pack::packed_code_len(n);
        if codes.len() != want {
            return Err(PackError::WrongLength {
                expected: want,
                got: codes.len(),
            }
            .into());
        }
        let mut idx = Vec::new();
        pack::unpack_indices(&indices, n, &mut idx)?;
        let mut q = Vec::new();
        pack::unpack_codes(&codes, n, &mut q)?;
        let (k, chunk_len) = (layout.k, layout.chunk_len());
        for (c, chunk) in idx.chunks_exact(k).enumerate() {
            let mut prev: Option<u16> = None;
            for &j in chunk {
                if usize::from(j) >= chunk_len {
                    return Err(TensorError::IndexOutOfRange {
                        chunk: c,
                        index: j,
                        chunk_len,
                    });
                }
                if prev.is_some_and(|p| j <= p) {
                    return Err(TensorError::IndicesNotAscending { chunk: c });
                }
                prev = Some(j);
            }
        }
        Ok(Self {
            shape,
            params,
            layout,
            quant,
            indices,
            codes,
        })
    }

    /// The tensor's shape.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The codec parameters it was encoded with.
    pub fn params(&self) -> &CodecParams {
        &self.params
    }

    /// Its chunk layout.
    pub fn layout(&self) -> &ChunkLayout {
        &self.layout
    }

    /// Its quantisation parameters.
    pub fn quant(&self) -> &QuantParams {
        &self.quant
    }

    /// Packed 12-bit indices (chunk by chunk, ascending within each chunk).
    pub fn packed_indices(&self) -> &[u8] {
        &self.indices
    }

    /// Packed 2-bit codes, in the same order as the indices.
    pub fn packed_codes(&self) -> &[u8] {
        &self.codes
    }

    /// Number of dense elements.
    pub fn len(&self) -> usize {
        self.layout.len()
    }

    /// Whether the dense tensor is empty (never, for a valid tensor).
    pub fn is_empty(&self) -> bool {
        self.layout.is_empty()
    }

    /// Calls `f(position, value)` for every transmitted entry, in chunk order. Positions are
    /// row-major offsets into the dense tensor and are distinct.
    pub fn for_each_entry(&self, mut f: impl FnMut(usize, f32)) {
        let n = self.layout.n_entries();
        let (mut idx, mut q) = (Vec::new(), Vec::new());
        // Both streams were validated at construction, so unpacking cannot fail.
        if pack::unpack_indices(&self.indices, n, &mut idx).is_err()
            || pack::unpack_codes(&self.codes, n, &mut q).is_err()
        {
            debug_assert!(false, "EncodedTensor invariant broken");
            return;
        }
        let l = &self.layout;
        let (k, w, cols, chunk_cols) = (l.k, l.w, l.cols, l.chunk_cols());
        let lut = [0u8, 1, 2, 3].map(|b| self.quant.dequantize(b));
        for (c, (ci, cq)) in idx.chunks_exact(k).zip(q.chunks_exact(k)).enumerate() {
            let base = (c / chunk_cols) * l.h * cols + (c % chunk_cols) * w;
            for (&j, &b) in ci.iter().zip(cq) {
                let j = usize::from(j);
                f(base + (j / w) * cols + j % w, lut[usize::from(b)]);
            }
        }
    }

    /// The L2 norm of the dequantised values (used for median-norm clipping).
    pub fn norm(&self) -> f64 {
        let mut sq = 0f64;
        self.for_each_entry(|_, v| sq += f64::from(v) * f64::from(v));
        sq.sqrt()
    }
}

/// Compresses a dense, row-major tensor.
pub fn encode(
    values: &[f32],
    shape: &[u64],
    params: &CodecParams,
) -> Result<EncodedTensor, EncodeError> {
    let layout = ChunkLayout::new(shape, params)?;
    if values.len() != layout.len() {
        return Err(EncodeError::LengthMismatch {
            expected: layout.len(),
            got: values.len(),
        });
    }
    let (h, w, k, cols) = (layout.h, layout.w, layout.k, layout.cols);
    let n_entries = layout.n_entries();
    let mut selector = Selector::new();
    let mut raw = vec![0u32; layout.chunk_len()];
    let mut picked = Vec::with_capacity(k);
    let mut idx = Vec::with_capacity(n_entries);
    let mut vals = Vec::with_capacity(n_entries);
    let limit = MAX_ABS_VALUE.to_bits();
    for cy in 0..layout.chunk_rows() {
        for cx in 0..layout.chunk_cols() {
            for ih in 0..h {
                let start = (cy * h + ih) * cols + cx * w;
                let src = &values[start..start + w];
                for (d, s) in raw[ih * w..(ih + 1) * w].iter_mut().zip(src) {
                    *d = s.to_bits();
                }
            }
            let max = selector.select(&raw, k, &mut picked);
            if max > limit {
                return Err(if max >= f32::INFINITY.to_bits() {
                    EncodeError::NonFinite
                } else {
                    EncodeError::ValueTooLarge
                });
            }
            for &j in &picked {
                idx.push(j);
                vals.push(f32::from_bits(raw[usize::from(j)]));
            }
        }
    }
    debug_assert_eq!(idx.len(), n_entries);
    let mut q = Vec::with_capacity(n_entries);
    let quant = quant::quantize(&vals, params.range_sigmas, &mut q);
    let mut indices = Vec::new();
    pack::pack_indices(&idx, &mut indices);
    let mut codes = Vec::new();
    pack::pack_codes(&q, &mut codes);
    debug_assert!(vals.iter().all(|v| v.to_bits() & ABS_MASK <= limit));
    Ok(EncodedTensor {
        shape: shape.to_vec(),
        params: *params,
        layout,
        quant,
        indices,
        codes,
    })
}

/// Decodes into a new dense tensor (zeros where nothing was transmitted).
pub fn decode(t: &EncodedTensor) -> Vec<f32> {
    let mut out = vec![0f32; t.len()];
    t.for_each_entry(|p, v| out[p] = v);
    out
}

/// Decodes into `out`, which must hold exactly `t.len()` values; untransmitted entries are zeroed.
pub fn decode_into(t: &EncodedTensor, out: &mut [f32]) -> Result<(), EncodeError> {
    if out.len() != t.len() {
        return Err(EncodeError::LengthMismatch {
            expected: t.len(),
            got: out.len(),
        });
    }
    out.fill(0.0);
    t.for_each_entry(|p, v| out[p] = v);
    Ok(())
}
