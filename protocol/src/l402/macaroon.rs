//! Macaroons with first-party caveats: the HMAC-SHA256 chain and the libmacaroons V2 binary
//! format (what aperture and Go's `gopkg.in/macaroon.v2` emit, base64 in L402 headers).
//!
//! Hand-written (≈150 lines with `hmac` + `sha2`) because the `macaroon` crate pulls in
//! sodiumoxide/libsodium and takes fn-pointer verifiers; we only need first-party caveats.
//!
//! Spec: specs/L2T-08-l402.md#macaroons

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Largest serialised macaroon accepted, in bytes (checked before parsing).
pub const MAX_MACAROON_BYTES: usize = 4096;
/// Most caveats on one macaroon.
pub const MAX_CAVEATS: usize = 32;

const FIELD_EOS: u64 = 0;
const FIELD_LOCATION: u64 = 1;
const FIELD_IDENTIFIER: u64 = 2;
const FIELD_VID: u64 = 4;
const FIELD_SIGNATURE: u64 = 6;

/// Error parsing a macaroon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MacaroonError {
    /// Larger than [`MAX_MACAROON_BYTES`].
    #[error("macaroon too large")]
    TooLarge,
    /// Not base64.
    #[error("macaroon is not base64")]
    Base64,
    /// Not the V2 binary format (or truncated, or trailing bytes).
    #[error("malformed macaroon: {0}")]
    Malformed(&'static str),
    /// More than [`MAX_CAVEATS`] caveats.
    #[error("too many caveats")]
    TooManyCaveats,
    /// A third-party caveat (we never issue them).
    #[error("third-party caveats are not supported")]
    ThirdPartyCaveat,
}

/// A macaroon with first-party caveats.
#[derive(Clone, PartialEq, Eq)]
pub struct Macaroon {
    location: Option<String>,
    identifier: Vec<u8>,
    caveats: Vec<Vec<u8>>,
    signature: [u8; 32],
}

impl std::fmt::Debug for Macaroon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Macaroon")
            .field("identifier", &hex::encode(&self.identifier))
            .field(
                "caveats",
                &self
                    .caveats
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC-SHA256 takes keys of any length: `new_from_slice` never fails.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// libmacaroons' key derivation: `HMAC-SHA256("macaroons-key-generator", root_key)`.
fn derive_key(root_key: &[u8]) -> [u8; 32] {
    hmac(b"macaroons-key-generator", root_key)
}

impl Macaroon {
    /// Mint: `sig₀ = HMAC(derive(root_key), identifier)`.
    pub fn mint(root_key: &[u8], identifier: &[u8], location: Option<&str>) -> Self {
        Self {
            location: location.map(str::to_owned),
            identifier: identifier.to_vec(),
            caveats: Vec::new(),
            signature: hmac(&derive_key(root_key), identifier),
        }
    }

    /// Attenuate with a first-party caveat: `sigᵢ = HMAC(sigᵢ₋₁, caveat)`. Anyone holding the
    /// macaroon can add caveats; nobody can remove one.
    pub fn add_first_party_caveat(&mut self, predicate: &[u8]) {
        self.signature = hmac(&self.signature, predicate);
        self.caveats.push(predicate.to_vec());
    }

    /// The identifier.
    pub fn identifier(&self) -> &[u8] {
        &self.identifier
    }
    /// The caveat predicates, in order.
    pub fn caveats(&self) -> &[Vec<u8>] {
        &self.caveats
    }
    /// The location hint.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }
    /// The final signature.
    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }

    /// Recompute the chain from `root_key` and compare in constant time (the last HMAC step is
    /// checked with `Mac::verify_slice`).
    pub fn verify_signature(&self, root_key: &[u8]) -> bool {
        let mut key = derive_key(root_key);
        let mut data: &[u8] = &self.identifier;
        for c in &self.caveats {
            key = hmac(&key, data);
            data = c;
        }
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        m.update(data);
        m.verify_slice(&self.signature).is_ok()
    }

    /// V2 binary serialisation.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = vec![2u8];
        if let Some(l) = &self.location {
            put_field(&mut out, FIELD_LOCATION, l.as_bytes());
        }
        put_field(&mut out, FIELD_IDENTIFIER, &self.identifier);
        out.push(FIELD_EOS as u8);
        for c in &self.caveats {
            put_field(&mut out, FIELD_IDENTIFIER, c);
            out.push(FIELD_EOS as u8);
        }
        out.push(FIELD_EOS as u8);
        put_field(&mut out, FIELD_SIGNATURE, &self.signature);
        out
    }

    /// Parse the V2 binary format (first-party caveats only).
    pub fn deserialize(b: &[u8]) -> Result<Self, MacaroonError> {
        if b.len() > MAX_MACAROON_BYTES {
            return Err(MacaroonError::TooLarge);
        }
        let mut r = Reader { b, pos: 0 };
        if r.byte()? != 2 {
            return Err(MacaroonError::Malformed("not a V2 macaroon"));
        }
        let (mut t, mut data) = r.field()?;
        let mut location = None;
        if t == FIELD_LOCATION {
            location = Some(
                String::from_utf8(data.to_vec())
                    .map_err(|_| MacaroonError::Malformed("location"))?,
            );
            (t, data) = r.field()?;
        }
        if t != FIELD_IDENTIFIER {
            return Err(MacaroonError::Malformed("identifier"));
        }
        let identifier = data.to_vec();
        if r.field()?.0 != FIELD_EOS {
            return Err(MacaroonError::Malformed("header end"));
        }
        let mut caveats = Vec::new();
        loop {
            let (mut t, mut data) = r.field()?;
            if t == FIELD_EOS {
                break;
            }
            if caveats.len() == MAX_CAVEATS {
                return Err(MacaroonError::TooManyCaveats);
            }
            if t == FIELD_LOCATION {
                (t, data) = r.field()?;
            }
            if t != FIELD_IDENTIFIER {
                return Err(MacaroonError::Malformed("caveat identifier"));
            }
            let cid = data.to_vec();
            let (t, _) = r.field()?;
            if t == FIELD_VID {
                return Err(MacaroonError::ThirdPartyCaveat);
            }
            if t != FIELD_EOS {
                return Err(MacaroonError::Malformed("caveat end"));
            }
            caveats.push(cid);
        }
        let (t, sig) = r.field()?;
        if t != FIELD_SIGNATURE {
            return Err(MacaroonError::Malformed("signature"));
        }
        let signature: [u8; 32] = sig
            .try_into()
            .map_err(|_| MacaroonError::Malformed("signature length"))?;
        if r.pos != b.len() {
            return Err(MacaroonError::Malformed("trailing bytes"));
        }
        Ok(Self {
            location,
            identifier,
            caveats,
            signature,
        })
    }

    /// Standard base64 (padded) of the V2 bytes, as in L402 headers.
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.serialize())
    }

    /// Parse base64 (standard or URL-safe alphabet, padded or not), with the size cap checked
    /// before decoding.
    pub fn from_base64(s: &str) -> Result<Self, MacaroonError> {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        use base64::Engine;
        if s.len() > MAX_MACAROON_BYTES.div_ceil(3) * 4 {
            return Err(MacaroonError::TooLarge);
        }
        let b = STANDARD
            .decode(s)
            .or_else(|_| STANDARD_NO_PAD.decode(s))
            .or_else(|_| URL_SAFE.decode(s))
            .or_else(|_| URL_SAFE_NO_PAD.decode(s))
            .map_err(|_| MacaroonError::Base64)?;
        Self::deserialize(&b)
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_field(out: &mut Vec<u8>, t: u64, data: &[u8]) {
    put_uvarint(out, t);
    put_uvarint(out, data.len() as u64);
    out.extend_from_slice(data);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, MacaroonError> {
        let v = *self
            .b
            .get(self.pos)
            .ok_or(MacaroonError::Malformed("truncated"))?;
        self.pos += 1;
        Ok(v)
    }

    fn uvarint(&mut self) -> Result<u64, MacaroonError> {
        let mut v: u64 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(MacaroonError::Malformed("varint too long"))
    }

    /// `(type, data)`; EOS has no length or data.
    fn field(&mut self) -> Result<(u64, &'a [u8]), MacaroonError> {
        let t = self.uvarint()?;
        if t == FIELD_EOS {
            return Ok((t, &[]));
        }
        let len = usize::try_from(self.uvarint()?).map_err(|_| MacaroonError::TooLarge)?;
        // Length is checked against the remaining input before slicing: no allocation from it.
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.b.len())
            .ok_or(MacaroonError::Malformed("field length"))?;
        let data = &self.b[self.pos..end];
        self.pos = end;
        Ok((t, data))
    }
}
