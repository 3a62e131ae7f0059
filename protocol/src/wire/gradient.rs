//! Wire format v1 of a compressed pseudo-gradient.
//!
//! Spec: specs/L2T-02-wire.md#pseudo-gradient
//!
//! Header (content type 1): the common keys with run (3), round (4) and base checkpoint (5)
//! required, plus
//! - `8`: codec parameters `{0: target_chunk, 1: topk, 2: bins, 3: range_sigmas}`;
//! - `10`: tensors, sorted by name, each `{0: name, 1: shape, 2: μ, 3: scale, 4: [lookup × 4]}`.
//!
//! Payload: for each tensor in header order, its packed indices then its packed codes.

use serde_cbor::Value;

use super::cbor::{self, Extensions};
use super::{
    key, peek_header, BlobId, ContentType, Header, WireError, MAX_NAME_BYTES, MAX_TENSORS,
};
use crate::sparseloco::layout::{ChunkLayout, MAX_RANK};
use crate::sparseloco::pack::{packed_code_len, packed_index_len};
use crate::sparseloco::{CodecParams, EncodedTensor, QuantParams};

/// Codec-parameter map keys.
const P_CHUNK: u64 = 0;
const P_TOPK: u64 = 1;
const P_BINS: u64 = 2;
const P_RANGE: u64 = 3;
const PARAM_KEYS: [u64; 4] = [P_CHUNK, P_TOPK, P_BINS, P_RANGE];
/// Tensor map keys.
const T_NAME: u64 = 0;
const T_SHAPE: u64 = 1;
const T_MU: u64 = 2;
const T_SCALE: u64 = 3;
const T_LOOKUP: u64 = 4;
const TENSOR_KEYS: [u64; 5] = [T_NAME, T_SHAPE, T_MU, T_SCALE, T_LOOKUP];

/// One named tensor of a pseudo-gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Parameter name, e.g. `blocks.0.attn.w_q` (1..=256 bytes of UTF-8).
    pub name: String,
    /// The compressed tensor.
    pub tensor: EncodedTensor,
    /// Unknown odd-keyed fields of the tensor's map.
    pub extensions: Extensions,
}

/// A compressed pseudo-gradient: one peer's update for one round of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct PseudoGradient {
    /// Run id.
    pub run: String,
    /// Round number.
    pub round: u64,
    /// The checkpoint the update was computed against.
    pub base_checkpoint: BlobId,
    /// Codec parameters shared by all tensors.
    pub params: CodecParams,
    /// Tensors, sorted by name, each encoded with `params`.
    pub tensors: Vec<NamedTensor>,
    /// Optional label.
    pub label: Option<String>,
    /// Unknown odd-keyed fields of the codec-parameter map.
    pub params_extensions: Extensions,
    /// Unknown odd-keyed fields of the header.
    pub extensions: Extensions,
}

impl PseudoGradient {
    /// A pseudo-gradient with no extensions.
    pub fn new(
        run: impl Into<String>,
        round: u64,
        base_checkpoint: BlobId,
        params: CodecParams,
        tensors: Vec<NamedTensor>,
    ) -> Self {
        Self {
            run: run.into(),
            round,
            base_checkpoint,
            params,
            tensors,
            label: None,
            params_extensions: Extensions::new(),
            extensions: Extensions::new(),
        }
    }

    /// Looks a tensor up by name.
    pub fn tensor(&self, name: &str) -> Option<&EncodedTensor> {
        self.tensors
            .binary_search_by(|t| t.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.tensors[i].tensor)
    }

    /// Serialises to a blob. Tensors must be sorted by name and share `params`.
    pub fn to_blob(&self) -> Result<Vec<u8>, WireError> {
        check_names(self.tensors.iter().map(|t| t.name.as_str()))?;
        if self.run.len() > super::MAX_RUN_ID_BYTES {
            return Err(WireError::Limit {
                what: "run",
                got: self.run.len() as u64,
                cap: super::MAX_RUN_ID_BYTES as u64,
            });
        }
        if self.tensors.len() > MAX_TENSORS {
            return Err(WireError::Limit {
                what: "tensor count",
                got: self.tensors.len() as u64,
                cap: MAX_TENSORS as u64,
            });
        }
        cbor::check_extensions(&self.params_extensions, &PARAM_KEYS)?;
        let mut params = self.params_extensions.clone();
        params.insert(P_CHUNK, cbor::int(self.params.target_chunk.into()));
        params.insert(P_TOPK, cbor::int(self.params.topk.into()));
        params.insert(P_BINS, cbor::int(self.params.bins.into()));
        params.insert(P_RANGE, cbor::int(self.params.range_sigmas.into()));
        let mut tensors = Vec::with_capacity(self.tensors.len());
        let mut payload = Vec::new();
        for (index, t) in self.tensors.iter().enumerate() {
            if *t.tensor.params() != self.params {
                return Err(WireError::BadField {
                    field: "tensors",
                    reason: "codec parameters differ",
                });
            }
            let _ = index;
            cbor::check_extensions(&t.extensions, &TENSOR_KEYS)?;
            let q = t.tensor.quant();
            let mut m = t.extensions.clone();
            m.insert(T_NAME, Value::Text(t.name.clone()));
            m.insert(
                T_SHAPE,
                Value::Array(t.tensor.shape().iter().map(|&d| cbor::int(d)).collect()),
            );
            m.insert(T_MU, cbor::f32_value(q.mu));
            m.insert(T_SCALE, cbor::f32_value(q.scale));
            m.insert(
                T_LOOKUP,
                Value::Array(q.lookup.iter().map(|&f| cbor::f32_value(f)).collect()),
            );
            tensors.push(cbor::to_map(m));
            payload.extend_from_slice(t.tensor.packed_indices());
            payload.extend_from_slice(t.tensor.packed_codes());
        }
        let mut header = Header::new(ContentType::PseudoGradient);
        header.run = Some(self.run.clone());
        header.round = Some(self.round);
        header.base_checkpoint = Some(self.base_checkpoint);
        header.label = self.label.clone();
        header.fields = self.extensions.clone();
        cbor::check_extensions(&header.fields, &cbor::GRADIENT_KEYS)?;
        header.fields.insert(key::CODEC, cbor::to_map(params));
        header.fields.insert(key::TENSORS, Value::Array(tensors));
        super::seal(&header, &payload)
    }

    /// Parses and validates a blob, accepting payloads up to [`super::MAX_PAYLOAD_BYTES`].
    pub fn from_blob(blob: &[u8]) -> Result<Self, WireError> {
        Self::from_blob_with_limit(blob, super::MAX_PAYLOAD_BYTES)
    }

    /// Parses and validates a blob, rejecting a payload above `max_payload` bytes before
    /// decompressing it. Order: frame and header caps, canonical header, schema, payload size
    /// against the tensors' shapes, decompression, canonical payload, per-tensor checks.
    pub fn from_blob_with_limit(blob: &[u8], max_payload: u64) -> Result<Self, WireError> {
        let (header, end) = peek_header(blob)?;
        if header.content_type != ContentType::PseudoGradient {
            return Err(WireError::WrongContentType {
                expected: ContentType::PseudoGradient,
                found: header.content_type,
            });
        }
        let run = header.run.ok_or(WireError::MissingField("run"))?;
        let round = header.round.ok_or(WireError::MissingField("round"))?;
        let base_checkpoint = header
            .base_checkpoint
            .ok_or(WireError::MissingField("base checkpoint"))?;
        let mut fields = header.fields;
        let params_v = fields
            .remove(&key::CODEC)
            .ok_or(WireError::MissingField("codec parameters"))?;
        let tensors_v = fields
            .remove(&key::TENSORS)
            .ok_or(WireError::MissingField("tensors"))?;
        let extensions = fields;
        let (params, params_extensions) = read_params(params_v)?;
        let raw = cbor::as_array(tensors_v, "tensor count", MAX_TENSORS)?;
        let mut metas = Vec::with_capacity(raw.len());
        let mut total: u64 = 0;
        for (index, v) in raw.into_iter().enumerate() {
            let meta = read_tensor_meta(v, &params, index)?;
            let n = meta.layout.n_entries();
            total = total
                .checked_add((packed_index_len(n) + packed_code_len(n)) as u64)
                .ok_or(WireError::Limit {
                    what: "payload length",
                    got: u64::MAX,
                    cap: super::MAX_PAYLOAD_BYTES,
                })?;
            metas.push(meta);
        }
        check_names(metas.iter().map(|m| m.name.as_str()))?;
        if total != header.payload_len {
            return Err(WireError::BadField {
                field: "payload length",
                reason: "does not match the tensors' shapes",
            });
        }
        let payload = super::decompress_exact(&blob[end..], header.payload_len, max_payload)?;
        let mut at = 0usize;
        let mut tensors = Vec::with_capacity(metas.len());
        for (index, m) in metas.into_iter().enumerate() {
            let n = m.layout.n_entries();
            let (il, cl) = (packed_index_len(n), packed_code_len(n));
            let indices = payload[at..at + il].to_vec();
            let codes = payload[at + il..at + il + cl].to_vec();
            at += il + cl;
            let tensor = EncodedTensor::from_parts(m.shape, params, m.quant, indices, codes)
                .map_err(|source| WireError::Tensor { index, source })?;
            tensors.push(NamedTensor {
                name: m.name,
                tensor,
                extensions: m.extensions,
            });
        }
        Ok(Self {
            run,
            round,
            base_checkpoint,
            params,
            tensors,
            label: header.label,
            params_extensions,
            extensions,
        })
    }
}

struct TensorMeta {
    name: String,
    shape: Vec<u64>,
    layout: ChunkLayout,
    quant: QuantParams,
    extensions: Extensions,
}

fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), WireError> {
    let mut prev: Option<&str> = None;
    for n in names {
        if n.is_empty() || n.len() > MAX_NAME_BYTES {
            return Err(WireError::BadField {
                field: "tensor name",
                reason: "must be 1..=256 bytes",
            });
        }
        if prev.is_some_and(|p| p >= n) {
            return Err(WireError::TensorOrder);
        }
        prev = Some(n);
    }
    Ok(())
}

fn read_params(v: Value) -> Result<(CodecParams, Extensions), WireError> {
    let m = cbor::int_map(v, "codec parameters")?;
    let get = |k: u64, field: &'static str| -> Result<u32, WireError> {
        let v = m.get(&k).ok_or(WireError::MissingField(field))?;
        u32::try_from(cbor::as_u64(v, field)?).map_err(|_| WireError::BadField {
            field,
            reason: "too large",
        })
    };
    let params = CodecParams {
        target_chunk: get(P_CHUNK, "target_chunk")?,
        topk: get(P_TOPK, "topk")?,
        bins: get(P_BINS, "bins")?,
        range_sigmas: get(P_RANGE, "range_sigmas")?,
    };
    params.validate().map_err(|_| WireError::BadField {
        field: "codec parameters",
        reason: "out of the supported range",
    })?;
    Ok((params, cbor::leftovers(m, &PARAM_KEYS)?))
}

fn read_tensor_meta(v: Value, params: &CodecParams, index: usize) -> Result<TensorMeta, WireError> {
    let mut m = cbor::int_map(v, "tensor")?;
    let name = cbor::as_text(
        m.remove(&T_NAME)
            .ok_or(WireError::MissingField("tensor name"))?,
        "tensor name",
        MAX_NAME_BYTES,
    )?;
    let dims = cbor::as_array(
        m.remove(&T_SHAPE)
            .ok_or(WireError::MissingField("tensor shape"))?,
        "tensor rank",
        MAX_RANK,
    )?;
    let shape = dims
        .iter()
        .map(|d| cbor::as_u64(d, "tensor shape"))
        .collect::<Result<Vec<_>, _>>()?;
    let layout = ChunkLayout::new(&shape, params).map_err(|e| WireError::Tensor {
        index,
        source: e.into(),
    })?;
    let mu = cbor::as_f32(
        m.get(&T_MU).ok_or(WireError::MissingField("tensor mu"))?,
        "tensor mu",
    )?;
    let scale = cbor::as_f32(
        m.get(&T_SCALE)
            .ok_or(WireError::MissingField("tensor scale"))?,
        "tensor scale",
    )?;
    let lut = cbor::as_array(
        m.remove(&T_LOOKUP)
            .ok_or(WireError::MissingField("tensor lookup"))?,
        "tensor lookup",
        4,
    )?;
    if lut.len() != 4 {
        return Err(WireError::BadField {
            field: "tensor lookup",
            reason: "needs exactly 4 entries",
        });
    }
    let mut lookup = [0f32; 4];
    for (slot, v) in lookup.iter_mut().zip(&lut) {
        *slot = cbor::as_f32(v, "tensor lookup")?;
    }
    let quant = QuantParams { mu, scale, lookup };
    quant.validate().map_err(|e| WireError::Tensor {
        index,
        source: e.into(),
    })?;
    let extensions = cbor::leftovers(m, &TENSOR_KEYS)?;
    Ok(TensorMeta {
        name,
        shape,
        layout,
        quant,
        extensions,
    })
}
