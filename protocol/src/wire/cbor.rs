//! Canonical CBOR for headers, on top of `serde_cbor::Value`.
//!
//! Spec: specs/L2T-02-wire.md#header
//!
//! serde_cbor parses any well-formed CBOR; canonicity is enforced by re-encoding what was parsed
//! and comparing bytes (see [`super::peek_header`]). serde_cbor writes definite lengths, shortest
//! integers, the shortest float that is exact (f16/f32/f64), and map keys in `Value` order, which
//! for unsigned integer keys is RFC 8949's bytewise order.

use std::collections::BTreeMap;

use serde_cbor::Value;

use super::{
    key, BlobId, ContentType, Header, WireError, MAX_NAME_BYTES, MAX_RUN_ID_BYTES, VERSION,
};

/// Unknown odd-keyed fields of a map, kept so that re-encoding reproduces the input exactly.
pub type Extensions = BTreeMap<u64, Value>;

/// Converts a CBOR map with unsigned integer keys into a `u64`-keyed map.
pub(crate) fn int_map(v: Value, field: &'static str) -> Result<BTreeMap<u64, Value>, WireError> {
    let Value::Map(m) = v else {
        return Err(WireError::BadField {
            field,
            reason: "not a map",
        });
    };
    m.into_iter()
        .map(|(k, v)| match k {
            Value::Integer(i) => {
                u64::try_from(i)
                    .map(|k| (k, v))
                    .map_err(|_| WireError::BadField {
                        field,
                        reason: "map key is not an unsigned integer",
                    })
            }
            _ => Err(WireError::BadField {
                field,
                reason: "map key is not an unsigned integer",
            }),
        })
        .collect()
}

/// Splits off the keys not in `known`: even ones are an error, odd ones are returned.
pub(crate) fn leftovers(m: BTreeMap<u64, Value>, known: &[u64]) -> Result<Extensions, WireError> {
    let mut ext = Extensions::new();
    for (k, v) in m {
        if known.contains(&k) {
            continue;
        }
        if k % 2 == 0 {
            return Err(WireError::UnknownRequiredField(k));
        }
        ext.insert(k, v);
    }
    Ok(ext)
}

/// Checks that extension keys are odd and unknown before writing them.
pub(crate) fn check_extensions(ext: &Extensions, known: &[u64]) -> Result<(), WireError> {
    match ext.keys().find(|k| *k % 2 == 0 || known.contains(k)) {
        Some(&k) => Err(WireError::BadExtensionKey(k)),
        None => Ok(()),
    }
}

pub(crate) fn as_u64(v: &Value, field: &'static str) -> Result<u64, WireError> {
    match v {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| WireError::BadField {
            field,
            reason: "not an unsigned 64-bit integer",
        }),
        _ => Err(WireError::BadField {
            field,
            reason: "not an integer",
        }),
    }
}

pub(crate) fn as_text(v: Value, field: &'static str, max: usize) -> Result<String, WireError> {
    match v {
        Value::Text(s) if s.len() <= max => Ok(s),
        Value::Text(s) => Err(WireError::Limit {
            what: field,
            got: s.len() as u64,
            cap: max as u64,
        }),
        _ => Err(WireError::BadField {
            field,
            reason: "not a text string",
        }),
    }
}

pub(crate) fn as_f32(v: &Value, field: &'static str) -> Result<f32, WireError> {
    match v {
        Value::Float(f) if f.is_nan() || f64::from(*f as f32) == *f => Ok(*f as f32),
        Value::Float(_) => Err(WireError::BadField {
            field,
            reason: "not representable as f32",
        }),
        _ => Err(WireError::BadField {
            field,
            reason: "not a float",
        }),
    }
}

pub(crate) fn as_array(v: Value, field: &'static str, max: usize) -> Result<Vec<Value>, WireError> {
    match v {
        Value::Array(a) if a.len() <= max => Ok(a),
        Value::Array(a) => Err(WireError::Limit {
            what: field,
            got: a.len() as u64,
            cap: max as u64,
        }),
        _ => Err(WireError::BadField {
            field,
            reason: "not an array",
        }),
    }
}

pub(crate) fn f32_value(f: f32) -> Value {
    Value::Float(f64::from(f))
}

pub(crate) fn int(i: u64) -> Value {
    Value::Integer(i128::from(i))
}

pub(crate) fn to_map(m: BTreeMap<u64, Value>) -> Value {
    Value::Map(m.into_iter().map(|(k, v)| (int(k), v)).collect())
}

pub(crate) fn to_bytes(v: &Value) -> Result<Vec<u8>, WireError> {
    serde_cbor::to_vec(v).map_err(|e| WireError::Cbor(e.to_string()))
}

/// Keys every header may carry besides type-specific ones.
const COMMON: [u64; 7] = [
    key::VERSION,
    key::CONTENT_TYPE,
    key::PAYLOAD_LEN,
    key::RUN,
    key::ROUND,
    key::BASE_CHECKPOINT,
    key::LABEL,
];
/// Type-specific keys of pseudo-gradients.
pub(crate) const GRADIENT_KEYS: [u64; 2] = [key::CODEC, key::TENSORS];

fn type_keys(t: ContentType) -> &'static [u64] {
    match t {
        ContentType::PseudoGradient => &GRADIENT_KEYS,
        _ => &[],
    }
}

/// Serialises a header canonically.
pub(crate) fn write_header(h: &Header) -> Result<Vec<u8>, WireError> {
    let specific = type_keys(h.content_type);
    let mut m = BTreeMap::new();
    for (&k, v) in &h.fields {
        if COMMON.contains(&k) || (k % 2 == 0 && !specific.contains(&k)) {
            return Err(WireError::BadExtensionKey(k));
        }
        m.insert(k, v.clone());
    }
    m.insert(key::VERSION, int(VERSION));
    m.insert(key::CONTENT_TYPE, int(h.content_type.code()));
    m.insert(key::PAYLOAD_LEN, int(h.payload_len));
    if let Some(run) = &h.run {
        m.insert(key::RUN, Value::Text(run.clone()));
    }
    if let Some(round) = h.round {
        m.insert(key::ROUND, int(round));
    }
    if let Some(base) = h.base_checkpoint {
        m.insert(key::BASE_CHECKPOINT, Value::Bytes(base.0.to_vec()));
    }
    if let Some(label) = &h.label {
        m.insert(key::LABEL, Value::Text(label.clone()));
    }
    to_bytes(&to_map(m))
}

/// Parses a header (not yet checked for canonical form).
pub(crate) fn read_header(bytes: &[u8]) -> Result<Header, WireError> {
    let v: Value = serde_cbor::from_slice(bytes).map_err(|e| WireError::Cbor(e.to_string()))?;
    let mut m = int_map(v, "header")?;
    // The version decides how to read everything else, so it is checked first.
    let version = as_u64(
        m.get(&key::VERSION)
            .ok_or(WireError::MissingField("version"))?,
        "version",
    )?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let ct = as_u64(
        m.get(&key::CONTENT_TYPE)
            .ok_or(WireError::MissingField("content type"))?,
        "content type",
    )?;
    let content_type = ContentType::from_code(ct)?;
    let payload_len = as_u64(
        m.get(&key::PAYLOAD_LEN)
            .ok_or(WireError::MissingField("payload length"))?,
        "payload length",
    )?;
    let run = m
        .remove(&key::RUN)
        .map(|v| as_text(v, "run", MAX_RUN_ID_BYTES))
        .transpose()?;
    let round = m.get(&key::ROUND).map(|v| as_u64(v, "round")).transpose()?;
    let base_checkpoint = match m.remove(&key::BASE_CHECKPOINT) {
        None => None,
        Some(Value::Bytes(b)) => Some(BlobId(b.try_into().map_err(|_| WireError::BadField {
            field: "base checkpoint",
            reason: "not 32 bytes",
        })?)),
        Some(_) => {
            return Err(WireError::BadField {
                field: "base checkpoint",
                reason: "not a byte string",
            })
        }
    };
    let label = m
        .remove(&key::LABEL)
        .map(|v| as_text(v, "label", MAX_NAME_BYTES))
        .transpose()?;
    let specific = type_keys(content_type);
    let mut fields = BTreeMap::new();
    for (k, v) in m {
        if COMMON.contains(&k) {
            continue;
        }
        if k % 2 == 0 && !specific.contains(&k) {
            return Err(WireError::UnknownRequiredField(k));
        }
        fields.insert(k, v);
    }
    Ok(Header {
        content_type,
        payload_len,
        run,
        round,
        base_checkpoint,
        label,
        fields,
    })
}
