//! Canonical CBOR objects for signed payloads (dealings, attestations, evidence).
//!
//! Every object is a CBOR map with small integer keys, `{0: version, 1: …, …}`:
//! - keys are unsigned integers below 24, so each key encodes as one byte and the RFC 8949
//!   §4.2.1 bytewise key order equals numeric order;
//! - an unknown **even** key is rejected ([`CanonError::UnknownRequiredField`]), an unknown
//!   **odd** key is ignored;
//! - decoding re-encodes the parsed value and requires the bytes to be identical, which rejects
//!   indefinite lengths, non-minimal integers, duplicate keys and unsorted maps, so signatures
//!   and hashes over these bytes cannot be malleated.
//!
//! Written with `serde_cbor::Value` rather than derive: serde derive would give string keys, and
//! the canonical check needs the decoded value anyway. The lead's `wire` module has the blob
//! container; this is the small subset needed by signed protocol objects.
//!
//! Spec: specs/L2T-01-events.md#canonical-cbor

use std::collections::BTreeMap;

use serde_cbor::Value;

/// Error decoding a canonical CBOR object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonError {
    /// Input longer than the cap for this object type (checked before parsing).
    #[error("object is {size} bytes, cap is {max}")]
    TooLarge {
        /// Input size.
        size: usize,
        /// Cap.
        max: usize,
    },
    /// Not CBOR, or trailing bytes.
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    /// Not a map with small unsigned integer keys.
    #[error("top level must be a map with integer keys 0..24")]
    NotAMap,
    /// Re-encoding does not give back the same bytes.
    #[error("non-canonical encoding")]
    NonCanonical,
    /// An unknown even key (a field this version must understand).
    #[error("unknown required field {0}")]
    UnknownRequiredField(u64),
    /// A required field is missing.
    #[error("missing field {0}")]
    MissingField(u64),
    /// A field has the wrong CBOR type or length.
    #[error("field {0} has the wrong type or length")]
    WrongType(u64),
    /// The version field is not one this code reads.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u64),
}

/// Largest map key; keys stay single-byte so that key order is numeric order.
const MAX_KEY: u64 = 23;

/// Builder for a canonical map.
#[derive(Debug, Default)]
pub struct MapWriter(BTreeMap<u64, Value>);

impl MapWriter {
    /// A map starting with `{0: version}`.
    pub fn new(version: u64) -> Self {
        let mut w = Self::default();
        w.0.insert(0, Value::Integer(version.into()));
        w
    }

    fn put(mut self, key: u64, v: Value) -> Self {
        debug_assert!(key <= MAX_KEY && key != 0);
        self.0.insert(key, v);
        self
    }

    /// Unsigned integer field.
    pub fn u64(self, key: u64, v: u64) -> Self {
        self.put(key, Value::Integer(v.into()))
    }
    /// Signed integer field.
    pub fn i64(self, key: u64, v: i64) -> Self {
        self.put(key, Value::Integer(v.into()))
    }
    /// Byte string field.
    pub fn bytes(self, key: u64, v: &[u8]) -> Self {
        self.put(key, Value::Bytes(v.to_vec()))
    }
    /// Text field.
    pub fn text(self, key: u64, v: &str) -> Self {
        self.put(key, Value::Text(v.to_owned()))
    }
    /// Boolean field.
    pub fn bool(self, key: u64, v: bool) -> Self {
        self.put(key, Value::Bool(v))
    }
    /// Array of byte strings.
    pub fn bytes_array<'a>(self, key: u64, v: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let arr = v.into_iter().map(|b| Value::Bytes(b.to_vec())).collect();
        self.put(key, Value::Array(arr))
    }
    /// Array of text strings.
    pub fn text_array<'a>(self, key: u64, v: impl IntoIterator<Item = &'a str>) -> Self {
        let arr = v.into_iter().map(|s| Value::Text(s.to_owned())).collect();
        self.put(key, Value::Array(arr))
    }

    /// Canonical bytes.
    pub fn finish(self) -> Vec<u8> {
        let map: BTreeMap<Value, Value> = self
            .0
            .into_iter()
            .map(|(k, v)| (Value::Integer(k.into()), v))
            .collect();
        // Serialising an in-memory Value cannot fail (no I/O, no non-string map keys issue).
        serde_cbor::to_vec(&Value::Map(map)).unwrap_or_default()
    }
}

/// Reader over a decoded canonical map.
#[derive(Debug)]
pub struct MapReader {
    map: BTreeMap<u64, Value>,
}

impl MapReader {
    /// Decode `bytes` (at most `max` long) as a canonical map whose known keys are `known`
    /// (besides 0) and whose version must be one of `versions`.
    pub fn decode(
        bytes: &[u8],
        max: usize,
        known: &[u64],
        versions: &[u64],
    ) -> Result<Self, CanonError> {
        if bytes.len() > max {
            return Err(CanonError::TooLarge {
                size: bytes.len(),
                max,
            });
        }
        let value: Value =
            serde_cbor::from_slice(bytes).map_err(|e| CanonError::Malformed(e.to_string()))?;
        let reencoded = serde_cbor::to_vec(&value).map_err(|_| CanonError::NonCanonical)?;
        if reencoded != bytes {
            return Err(CanonError::NonCanonical);
        }
        let Value::Map(m) = value else {
            return Err(CanonError::NotAMap);
        };
        let mut map = BTreeMap::new();
        for (k, v) in m {
            let Value::Integer(k) = k else {
                return Err(CanonError::NotAMap);
            };
            if !(0..=MAX_KEY as i128).contains(&k) {
                return Err(CanonError::NotAMap);
            }
            let k = k as u64;
            if k == 0 || known.contains(&k) {
                map.insert(k, v);
            } else if k % 2 == 0 {
                return Err(CanonError::UnknownRequiredField(k));
            }
            // Unknown odd key: optional field of a later version, ignored.
        }
        let r = Self { map };
        let v = r.u64(0)?;
        if !versions.contains(&v) {
            return Err(CanonError::UnsupportedVersion(v));
        }
        Ok(r)
    }

    fn get(&self, key: u64) -> Result<&Value, CanonError> {
        self.map.get(&key).ok_or(CanonError::MissingField(key))
    }

    /// Whether a field is present.
    pub fn has(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    /// Unsigned integer field.
    pub fn u64(&self, key: u64) -> Result<u64, CanonError> {
        match self.get(key)? {
            Value::Integer(i) => u64::try_from(*i).map_err(|_| CanonError::WrongType(key)),
            _ => Err(CanonError::WrongType(key)),
        }
    }
    /// Signed integer field.
    pub fn i64(&self, key: u64) -> Result<i64, CanonError> {
        match self.get(key)? {
            Value::Integer(i) => i64::try_from(*i).map_err(|_| CanonError::WrongType(key)),
            _ => Err(CanonError::WrongType(key)),
        }
    }
    /// Boolean field.
    pub fn bool(&self, key: u64) -> Result<bool, CanonError> {
        match self.get(key)? {
            Value::Bool(b) => Ok(*b),
            _ => Err(CanonError::WrongType(key)),
        }
    }
    /// Byte string field.
    pub fn bytes(&self, key: u64) -> Result<&[u8], CanonError> {
        match self.get(key)? {
            Value::Bytes(b) => Ok(b),
            _ => Err(CanonError::WrongType(key)),
        }
    }
    /// Fixed-length byte string field.
    pub fn array_n<const N: usize>(&self, key: u64) -> Result<[u8; N], CanonError> {
        self.bytes(key)?
            .try_into()
            .map_err(|_| CanonError::WrongType(key))
    }
    /// Text field.
    pub fn text(&self, key: u64) -> Result<&str, CanonError> {
        match self.get(key)? {
            Value::Text(s) => Ok(s),
            _ => Err(CanonError::WrongType(key)),
        }
    }
    /// Array of byte strings, at most `max` items.
    pub fn bytes_array(&self, key: u64, max: usize) -> Result<Vec<&[u8]>, CanonError> {
        match self.get(key)? {
            Value::Array(a) if a.len() <= max => a
                .iter()
                .map(|v| match v {
                    Value::Bytes(b) => Ok(b.as_slice()),
                    _ => Err(CanonError::WrongType(key)),
                })
                .collect(),
            _ => Err(CanonError::WrongType(key)),
        }
    }
    /// Array of text strings, at most `max` items.
    pub fn text_array(&self, key: u64, max: usize) -> Result<Vec<&str>, CanonError> {
        match self.get(key)? {
            Value::Array(a) if a.len() <= max => a
                .iter()
                .map(|v| match v {
                    Value::Text(s) => Ok(s.as_str()),
                    _ => Err(CanonError::WrongType(key)),
                })
                .collect(),
            _ => Err(CanonError::WrongType(key)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        MapWriter::new(1)
            .u64(1, 300)
            .i64(2, -5)
            .bytes(4, &[1, 2, 3])
            .text(6, "hi")
            .finish()
    }

    #[test]
    fn roundtrip_and_fields() {
        let b = sample();
        let r = MapReader::decode(&b, 1000, &[1, 2, 4, 6], &[1]).unwrap();
        assert_eq!(r.u64(1).unwrap(), 300);
        assert_eq!(r.i64(2).unwrap(), -5);
        assert_eq!(r.bytes(4).unwrap(), &[1, 2, 3]);
        assert_eq!(r.text(6).unwrap(), "hi");
        assert_eq!(r.u64(8), Err(CanonError::MissingField(8)));
        assert_eq!(r.text(1), Err(CanonError::WrongType(1)));
    }

    #[test]
    fn unknown_even_rejected_odd_ignored() {
        let b = sample();
        assert_eq!(
            MapReader::decode(&b, 1000, &[1, 2, 6], &[1]).unwrap_err(),
            CanonError::UnknownRequiredField(4)
        );
        let b = MapWriter::new(1).u64(1, 1).u64(7, 9).finish();
        let r = MapReader::decode(&b, 1000, &[1], &[1]).unwrap();
        assert!(!r.has(7));
    }

    #[test]
    fn rejects_noncanonical_and_oversize() {
        // {0: 1} with the integer 1 encoded in two bytes (0x18 0x01): non-minimal.
        let b = [0xa1, 0x00, 0x18, 0x01];
        assert_eq!(
            MapReader::decode(&b, 100, &[], &[1]).unwrap_err(),
            CanonError::NonCanonical
        );
        // Indefinite-length map {0: 1}.
        let b = [0xbf, 0x00, 0x01, 0xff];
        assert_eq!(
            MapReader::decode(&b, 100, &[], &[1]).unwrap_err(),
            CanonError::NonCanonical
        );
        // Duplicate key {0: 1, 0: 1}.
        let b = [0xa2, 0x00, 0x01, 0x00, 0x01];
        assert!(MapReader::decode(&b, 100, &[], &[1]).is_err());
        // Unsorted keys {1: 0, 0: 1}.
        let b = [0xa2, 0x01, 0x00, 0x00, 0x01];
        assert_eq!(
            MapReader::decode(&b, 100, &[1], &[1]).unwrap_err(),
            CanonError::NonCanonical
        );
        let b = sample();
        assert!(matches!(
            MapReader::decode(&b, 3, &[1, 2, 4, 6], &[1]),
            Err(CanonError::TooLarge { .. })
        ));
        // Trailing byte.
        let mut b = sample();
        b.push(0);
        assert!(matches!(
            MapReader::decode(&b, 1000, &[1, 2, 4, 6], &[1]),
            Err(CanonError::Malformed(_))
        ));
        // Wrong version.
        let b = MapWriter::new(9).finish();
        assert_eq!(
            MapReader::decode(&b, 100, &[], &[1]).unwrap_err(),
            CanonError::UnsupportedVersion(9)
        );
    }
}
