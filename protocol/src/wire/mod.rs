//! The blob container: a versioned, canonical CBOR header plus a zstd payload.
//!
//! Spec: specs/L2T-02-wire.md
//!
//! ```text
//! blob   = magic "L2TB" ‖ header_len: u32 big-endian ‖ header (CBOR map) ‖ payload (one zstd frame)
//! id     = BLAKE3(blob)
//! ```
//!
//! The header is a CBOR map with unsigned integer keys: `{0: version, 1: content type, 2: payload
//! length, …}`. An unknown even key is rejected (a field the reader must understand), an unknown odd
//! key is kept and re-emitted (a field it may ignore). Encoding is canonical: the header uses CBOR's
//! deterministic encoding (RFC 8949 §4.2: shortest integers and floats, definite lengths, keys in
//! order), and the payload is compressed at a fixed zstd level, so `encode(decode(b)) == b` for every
//! accepted blob `b` — a decoder re-encodes and rejects anything else, which makes blob ids and
//! signatures over them non-malleable. Every length is checked against a named cap before anything
//! is allocated for it.

mod cbor;
mod gradient;

use std::collections::BTreeMap;

use thiserror::Error;

pub use cbor::Extensions;
pub use gradient::{NamedTensor, PseudoGradient};

use crate::sparseloco::TensorError;

/// The four bytes every blob starts with.
pub const MAGIC: [u8; 4] = *b"L2TB";
/// The container version this code reads and writes.
pub const VERSION: u64 = 1;
/// Bytes before the header: magic and header length.
pub const PREAMBLE_BYTES: usize = 8;
/// Largest header accepted, in bytes.
pub const MAX_HEADER_BYTES: usize = 1 << 20;
/// Largest decompressed payload accepted, in bytes (4 GiB).
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 32;
/// Longest run id, in bytes of UTF-8.
pub const MAX_RUN_ID_BYTES: usize = 64;
/// Longest label or tensor name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;
/// Most tensors in one pseudo-gradient.
pub const MAX_TENSORS: usize = 4096;
/// zstd level of every payload; part of the canonical form.
pub const ZSTD_LEVEL: i32 = 3;

/// Header keys shared by every content type.
pub mod key {
    /// Container version (uint, required).
    pub const VERSION: u64 = 0;
    /// Content type (uint, required), see [`super::ContentType`].
    pub const CONTENT_TYPE: u64 = 1;
    /// Decompressed payload length in bytes (uint, required).
    pub const PAYLOAD_LEN: u64 = 2;
    /// Run id (text, ≤ 64 bytes).
    pub const RUN: u64 = 3;
    /// Round number (uint).
    pub const ROUND: u64 = 4;
    /// BLAKE3 id of the checkpoint this blob builds on (32-byte bytes).
    pub const BASE_CHECKPOINT: u64 = 5;
    /// Free-form label such as a file name (text, ≤ 256 bytes).
    pub const LABEL: u64 = 6;
    /// SparseLoCo codec parameters (map; pseudo-gradients only).
    pub const CODEC: u64 = 8;
    /// Tensors (array of maps; pseudo-gradients only).
    pub const TENSORS: u64 = 10;
}

/// What a blob's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// A SparseLoCo-compressed pseudo-gradient ([`PseudoGradient`]).
    PseudoGradient,
    /// A model checkpoint (safetensors bytes).
    Checkpoint,
    /// A bounty submission diff (unified diff text).
    Diff,
    /// An evaluation data set.
    EvalSet,
    /// Opaque bytes.
    Bytes,
}

impl ContentType {
    /// The wire code.
    pub fn code(self) -> u64 {
        match self {
            Self::PseudoGradient => 1,
            Self::Checkpoint => 2,
            Self::Diff => 3,
            Self::EvalSet => 4,
            Self::Bytes => 5,
        }
    }

    /// Parses a wire code.
    pub fn from_code(code: u64) -> Result<Self, WireError> {
        Ok(match code {
            1 => Self::PseudoGradient,
            2 => Self::Checkpoint,
            3 => Self::Diff,
            4 => Self::EvalSet,
            5 => Self::Bytes,
            other => return Err(WireError::UnknownContentType(other)),
        })
    }
}

/// A blob's id: the BLAKE3 hash of all of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// The id of `blob`.
    pub fn of(blob: &[u8]) -> Self {
        Self(*blake3::hash(blob).as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a blob was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("truncated: need {needed} bytes, have {got}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The blob does not start with [`MAGIC`].
    #[error("not an l402 blob (bad magic)")]
    BadMagic,
    /// The declared header length is 0 or above [`MAX_HEADER_BYTES`].
    #[error("header length {0} is outside 1..={MAX_HEADER_BYTES}")]
    HeaderLength(u64),
    /// The header is not well-formed CBOR.
    #[error("malformed CBOR header: {0}")]
    Cbor(String),
    /// The container version is not [`VERSION`].
    #[error("unsupported container version {0}")]
    UnsupportedVersion(u64),
    /// The content type is not one we know.
    #[error("unknown content type {0}")]
    UnknownContentType(u64),
    /// The content type is not the one the caller asked for.
    #[error("expected content type {expected:?}, found {found:?}")]
    WrongContentType {
        /// Expected type.
        expected: ContentType,
        /// Type found.
        found: ContentType,
    },
    /// A required field is missing.
    #[error("missing required field {0}")]
    MissingField(&'static str),
    /// A field has the wrong CBOR type or an impossible value.
    #[error("field {field}: {reason}")]
    BadField {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// An unknown even key: a field this reader must understand but does not.
    #[error("unknown required field {0} (even key)")]
    UnknownRequiredField(u64),
    /// A length or count exceeds its cap.
    #[error("{what} is {got}, above the cap of {cap}")]
    Limit {
        /// What was counted.
        what: &'static str,
        /// The value found.
        got: u64,
        /// The cap.
        cap: u64,
    },
    /// The payload does not decompress, or not to the declared length.
    #[error("payload: {0}")]
    Payload(String),
    /// The bytes are valid but not in canonical form.
    #[error("non-canonical encoding: {0}")]
    NonCanonical(&'static str),
    /// Tensor names are not strictly ascending (sorted, no duplicates).
    #[error("tensor names must be unique and sorted")]
    TensorOrder,
    /// A tensor's parts are invalid.
    #[error("tensor {index}: {source}")]
    Tensor {
        /// Position of the tensor in the header.
        index: usize,
        /// What is wrong with it.
        source: TensorError,
    },
    /// A caller-supplied extension key is even or collides with a known key.
    #[error("extension key {0} must be odd and not a known key")]
    BadExtensionKey(u64),
}

/// The common part of every header, plus type-specific fields still in CBOR form.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// What the payload holds.
    pub content_type: ContentType,
    /// Decompressed payload length.
    pub payload_len: u64,
    /// Run id, if the blob belongs to a run.
    pub run: Option<String>,
    /// Round number, if the blob belongs to a round.
    pub round: Option<u64>,
    /// The checkpoint the blob builds on.
    pub base_checkpoint: Option<BlobId>,
    /// A free-form label.
    pub label: Option<String>,
    /// Known type-specific fields (keys 8 and 10) and unknown odd keys, by key.
    pub fields: BTreeMap<u64, serde_cbor::Value>,
}

impl Header {
    /// A header for `content_type` with no optional fields; `payload_len` is filled in by [`seal`].
    pub fn new(content_type: ContentType) -> Self {
        Self {
            content_type,
            payload_len: 0,
            run: None,
            round: None,
            base_checkpoint: None,
            label: None,
            fields: BTreeMap::new(),
        }
    }
}

/// Seals a payload under `header` into a blob (the header's `payload_len` is set from `payload`).
pub fn seal(header: &Header, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let payload_len = payload.len() as u64;
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(WireError::Limit {
            what: "payload length",
            got: payload_len,
            cap: MAX_PAYLOAD_BYTES,
        });
    }
    let mut h = header.clone();
    h.payload_len = payload_len;
    let head = cbor::write_header(&h)?;
    if head.len() > MAX_HEADER_BYTES {
        return Err(WireError::Limit {
            what: "header length",
            got: head.len() as u64,
            cap: MAX_HEADER_BYTES as u64,
        });
    }
    let body =
        zstd::bulk::compress(payload, ZSTD_LEVEL).map_err(|e| WireError::Payload(e.to_string()))?;
    let mut out = Vec::with_capacity(PREAMBLE_BYTES + head.len() + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads only the header of a blob: cheap, allocates at most the header's size. Use it to check an
/// announced blob's type and payload size before fetching or decompressing the rest.
pub fn peek_header(blob: &[u8]) -> Result<(Header, usize), WireError> {
    if blob.len() < PREAMBLE_BYTES {
        return Err(WireError::Truncated {
            needed: PREAMBLE_BYTES,
            got: blob.len(),
        });
    }
    if blob[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let len = u32::from_be_bytes([blob[4], blob[5], blob[6], blob[7]]) as u64;
    if len == 0 || len > MAX_HEADER_BYTES as u64 {
        return Err(WireError::HeaderLength(len));
    }
    let end = PREAMBLE_BYTES + len as usize;
    if blob.len() < end {
        return Err(WireError::Truncated {
            needed: end,
            got: blob.len(),
        });
    }
    let head_bytes = &blob[PREAMBLE_BYTES..end];
    let header = cbor::read_header(head_bytes)?;
    if cbor::write_header(&header)? != head_bytes {
        return Err(WireError::NonCanonical("header"));
    }
    Ok((header, end))
}

/// Opens a blob: checks the header, decompresses the payload and checks that the blob is canonical.
/// The payload may be at most [`MAX_PAYLOAD_BYTES`]; use [`open_with_limit`] for a tighter cap.
pub fn open(blob: &[u8]) -> Result<(Header, Vec<u8>), WireError> {
    open_with_limit(blob, MAX_PAYLOAD_BYTES)
}

/// Like [`open`], rejecting a declared payload above `max_payload` bytes before decompressing.
pub fn open_with_limit(blob: &[u8], max_payload: u64) -> Result<(Header, Vec<u8>), WireError> {
    let (header, end) = peek_header(blob)?;
    let payload = decompress_exact(&blob[end..], header.payload_len, max_payload)?;
    Ok((header, payload))
}

/// First allocation for a payload; the buffer then grows only as decompressed bytes arrive.
const INITIAL_PAYLOAD_ALLOC: u64 = 1 << 24;

/// Decompresses one zstd frame into exactly `len` bytes and checks it is our canonical frame.
pub(crate) fn decompress_exact(
    frame: &[u8],
    len: u64,
    max_payload: u64,
) -> Result<Vec<u8>, WireError> {
    let cap = max_payload.min(MAX_PAYLOAD_BYTES);
    if len > cap {
        return Err(WireError::Limit {
            what: "payload length",
            got: len,
            cap,
        });
    }
    if frame.is_empty() {
        return Err(WireError::Truncated { needed: 1, got: 0 });
    }
    // Stream into a buffer that grows with the data actually produced (never past len + 1 bytes),
    // so a header or frame that lies about its size cannot make us reserve memory up front.
    let mut payload = Vec::with_capacity(len.min(INITIAL_PAYLOAD_ALLOC) as usize);
    let decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| WireError::Payload(e.to_string()))?;
    std::io::Read::read_to_end(&mut std::io::Read::take(decoder, len + 1), &mut payload)
        .map_err(|e| WireError::Payload(e.to_string()))?;
    if payload.len() as u64 != len {
        return Err(WireError::Payload(format!(
            "decompressed to {}{} bytes, header says {len}",
            payload.len(),
            if payload.len() as u64 > len { "+" } else { "" }
        )));
    }
    let again = zstd::bulk::compress(&payload, ZSTD_LEVEL)
        .map_err(|e| WireError::Payload(e.to_string()))?;
    if again != frame {
        return Err(WireError::NonCanonical("payload frame"));
    }
    Ok(payload)
}
