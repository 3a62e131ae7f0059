//! Identifiers shared by every part of the protocol: run ids, 32-byte hashes, scores.
//!
//! Spec: specs/L2T-01-events.md#identifiers

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest run (or bounty) identifier, in bytes.
pub const MAX_RUN_ID_LEN: usize = 64;

/// Error for an identifier that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The run id is empty, too long, or uses a character outside `[A-Za-z0-9._-]`.
    #[error("run id must be 1..={MAX_RUN_ID_LEN} bytes of [A-Za-z0-9._-]")]
    BadRunId,
    /// A hash is not 64 lowercase or uppercase hex digits.
    #[error("expected 64 hex digits")]
    BadHex,
    /// A byte string has the wrong length.
    #[error("expected {expected} bytes, got {got}")]
    BadLength {
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
}

/// A run identifier (also used for bounty ids): 1..=64 bytes of `[A-Za-z0-9._-]`.
///
/// It is the `d` tag of the run announcement and the `n` tag of every event of the run, so it must
/// be printable and short.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

impl RunId {
    /// Parse and validate a run id.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= MAX_RUN_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Self(s))
        } else {
            Err(IdError::BadRunId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RunId::new(s).map_err(serde::de::Error::custom)
    }
}

/// Parse exactly 64 hex digits into 32 bytes.
pub fn parse_hex32(s: &str) -> Result<[u8; 32], IdError> {
    if s.len() != 64 {
        return Err(IdError::BadHex);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| IdError::BadHex)?;
    Ok(out)
}

/// Copy a slice into a 32-byte array, checking its length.
pub fn bytes32(b: &[u8]) -> Result<[u8; 32], IdError> {
    b.try_into().map_err(|_| IdError::BadLength {
        expected: 32,
        got: b.len(),
    })
}

macro_rules! hash32 {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lowercase hex (64 digits).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// Parse 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self, IdError> {
                parse_hex32(s).map(Self)
            }
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hash32!(
    /// BLAKE3 hash naming a blob (checkpoint, pseudo-gradient, diff, eval set).
    BlobHash
);
hash32!(
    /// SHA-256 payment hash of a hold invoice (`H = sha256(P)`).
    PaymentHash
);
hash32!(
    /// A submission's id: the Nostr event id of the submission event.
    SubmissionId
);
hash32!(
    /// A 32-byte seed (round seed, evaluation seed).
    Seed32
);

impl SubmissionId {
    /// The submission id of a Nostr event (its event id).
    pub fn of_event(ev: &nostr::Event) -> Self {
        Self(ev.id.to_bytes())
    }
}

impl PaymentHash {
    /// `sha256(preimage)`.
    pub fn of_preimage(preimage: &[u8; 32]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(preimage).into())
    }
}

/// A validator's score in millionths (fixed point, so that signed bytes never contain floats).
///
/// For training rounds it is the held-out loss reduction in micro-nats (positive = better).
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Score(pub i64);

impl Score {
    /// Scale a float score to millionths, saturating and mapping NaN to the minimum.
    pub fn from_f64(x: f64) -> Self {
        if x.is_nan() {
            return Score(i64::MIN);
        }
        let v = (x * 1e6).round();
        if v >= i64::MAX as f64 {
            Score(i64::MAX)
        } else if v <= i64::MIN as f64 {
            Score(i64::MIN)
        } else {
            Score(v as i64)
        }
    }

    /// The score as a float.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

/// Seconds since the Unix epoch. The protocol never reads a clock: `now` is always an argument.
pub type UnixTime = u64;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn run_id_rules() {
        assert!(RunId::new("shakespeare-gpt.v1_2").is_ok());
        assert_eq!(RunId::new(""), Err(IdError::BadRunId));
        assert_eq!(RunId::new("a b"), Err(IdError::BadRunId));
        assert_eq!(RunId::new("x".repeat(65)), Err(IdError::BadRunId));
        let j = serde_json::to_string(&RunId::new("r1").unwrap()).unwrap();
        assert_eq!(j, "\"r1\"");
        assert!(serde_json::from_str::<RunId>("\"r 1\"").is_err());
    }

    #[test]
    fn hash_hex_roundtrip() {
        let h = BlobHash([0xab; 32]);
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<BlobHash>(&j).unwrap(), h);
        assert!(BlobHash::from_hex("ab").is_err());
        assert!(BlobHash::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn score_fixed_point() {
        assert_eq!(Score::from_f64(0.0123456).0, 12346);
        assert_eq!(Score::from_f64(f64::NAN).0, i64::MIN);
        assert_eq!(Score::from_f64(1e300).0, i64::MAX);
    }
}
