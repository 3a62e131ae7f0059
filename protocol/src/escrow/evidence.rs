//! Third-party-checkable evidence of a bad dealing.
//!
//! Three kinds, each checkable by anyone holding no secret:
//! - [`BadShareComplaint`]: a validator reveals the ECDH point of its own share ciphertext with a
//!   DLEQ proof; the checker derives that one NIP-44 conversation key, decrypts the share, and
//!   sees that it does not decrypt, is not a scalar, or fails the Feldman check.
//! - [`WrongPreimageEvidence`]: the worker reconstructed `s` from valid shares, `s·G = C₀`, yet
//!   `sha256(s) ≠ H`: the dealer shared a secret that opens no HTLC.
//! - [`MalformedDealingEvidence`]: the dealer signed a dealing that breaks the structure rules.
//!
//! Spec: specs/L2T-05-escrow.md#evidence

use hmac::{Hmac, Mac};
use k256::{ProjectivePoint, Scalar};
use nostr::nips::nip44;
use nostr::{Keys, PublicKey};
use sha2::{Digest, Sha256};

use super::dealing::{
    b64_capped, decode_signed, encode_signed, DealingBody, DealingError, ShareError, SignedDealing,
    MAX_DEALING_BYTES,
};
use super::dleq::{self, DleqProof};
use super::vss::{self, Preimage};
use crate::events::canonical::{CanonError, MapReader, MapWriter};
use crate::events::sig::{self, DOMAIN_DEALING};

/// Cap on encoded dealing evidence.
pub const MAX_DEALING_EVIDENCE_BYTES: usize = MAX_DEALING_BYTES + 512;

/// What a verified piece of evidence proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DealerFault {
    /// A share ciphertext does not decrypt to anything.
    Undecryptable,
    /// A share is not a scalar.
    NotAScalar,
    /// A share fails the Feldman check.
    Inconsistent,
    /// The shared secret does not hash to the payment hash.
    WrongPreimage,
    /// The signed dealing breaks the structure rules.
    Malformed,
}

impl From<ShareError> for Option<DealerFault> {
    fn from(e: ShareError) -> Self {
        match e {
            ShareError::Undecryptable => Some(DealerFault::Undecryptable),
            ShareError::NotAScalar => Some(DealerFault::NotAScalar),
            ShareError::Inconsistent => Some(DealerFault::Inconsistent),
            _ => None,
        }
    }
}

/// Error checking evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Encoding problem.
    #[error("evidence encoding: {0}")]
    Encoding(#[from] CanonError),
    /// The dealing inside does not verify.
    #[error("dealing: {0}")]
    Dealing(#[from] DealingError),
    /// The proof is invalid (bad DLEQ, bad point, wrong index, wrong secret).
    #[error("evidence proof is invalid: {0}")]
    BadProof(&'static str),
    /// The evidence checks out but shows no fault: the accused dealing is fine.
    #[error("the dealing is not faulty")]
    NotFaulty,
}

/// NIP-44 v2 conversation key from the ECDH x-coordinate: `HKDF-extract(salt = "nip44-v2", x)`,
/// which is `HMAC-SHA256(key = "nip44-v2", x)`. Written out because nostr only derives it from a
/// secret key, and the checker has none.
fn conversation_key(shared_x: &[u8; 32]) -> nip44::v2::ConversationKey {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"nip44-v2").expect("hmac key");
    mac.update(shared_x);
    nip44::v2::ConversationKey::new(mac.finalize().into_bytes().into())
}

fn complaint_ctx(dealing_bytes: &[u8], index: u32) -> Vec<u8> {
    let mut c = Sha256::digest(dealing_bytes).to_vec();
    c.extend_from_slice(&index.to_be_bytes());
    c
}

/// A validator's public complaint about its own share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadShareComplaint {
    dealing: SignedDealing,
    index: u32,
    shared_point: [u8; 33],
    proof: DleqProof,
}

impl BadShareComplaint {
    /// Build a complaint as validator `validator` (whose share failed to open). `nonce_seed`
    /// feeds the DLEQ nonce. Returns `None` if the key is not in the committee.
    pub fn new(dealing: &SignedDealing, validator: &Keys, nonce_seed: &[u8; 32]) -> Option<Self> {
        let body = dealing.body();
        let index = body.share_index(&validator.public_key())?;
        let mut v = vss::scalar_from_bytes(&validator.secret_key().to_secret_bytes())?;
        if vss::y_is_odd(&(ProjectivePoint::GENERATOR * v)) {
            v = -v;
        }
        let e = vss::lift_x(body.ephemeral.as_bytes())?;
        let s = e * v;
        let ctx = complaint_ctx(&dealing.encode(), index);
        let proof = dleq::prove(&v, &e, &ctx, nonce_seed);
        Some(Self {
            dealing: dealing.clone(),
            index,
            shared_point: vss::point_to_bytes(&s),
            proof,
        })
    }

    /// The accused dealing.
    pub fn dealing(&self) -> &SignedDealing {
        &self.dealing
    }

    /// The complaining validator.
    pub fn validator(&self) -> Option<PublicKey> {
        self.dealing
            .body()
            .validators
            .get(self.index as usize - 1)
            .copied()
    }

    /// Check with no secret: the DLEQ proof, then decrypt the one share and test it.
    pub fn verify(&self) -> Result<DealerFault, EvidenceError> {
        let body = self.dealing.body();
        let i = self.index as usize;
        if i == 0 || i > body.validators.len() {
            return Err(EvidenceError::BadProof("share index"));
        }
        let v = vss::lift_x(body.validators[i - 1].as_bytes())
            .ok_or(EvidenceError::BadProof("validator key"))?;
        let e = vss::lift_x(body.ephemeral.as_bytes())
            .ok_or(EvidenceError::BadProof("ephemeral key"))?;
        let s = vss::point_from_bytes(&self.shared_point)
            .ok_or(EvidenceError::BadProof("shared point"))?;
        let ctx = complaint_ctx(&self.dealing.encode(), self.index);
        if !dleq::verify(&v, &e, &s, &ctx, &self.proof) {
            return Err(EvidenceError::BadProof("dleq"));
        }
        let ck = conversation_key(&vss::x_coordinate(&s));
        let ct = &body.shares[i - 1];
        let pt = b64_capped(ct, MAX_DEALING_BYTES)
            .ok()
            .and_then(|payload| nip44::v2::decrypt_to_bytes(&ck, &payload).ok());
        let Some(pt) = pt else {
            return Ok(DealerFault::Undecryptable);
        };
        match self.dealing.check_plain_share(self.index, &pt) {
            Ok(_) => Err(EvidenceError::NotFaulty),
            Err(e) => Option::<DealerFault>::from(e).ok_or(EvidenceError::NotFaulty),
        }
    }

    /// Canonical encoding `{0: 1, 1: dealing, 2: index, 4: S, 6: c, 8: z}`.
    pub fn encode(&self) -> Vec<u8> {
        MapWriter::new(1)
            .bytes(1, &self.dealing.encode())
            .u64(2, u64::from(self.index))
            .bytes(4, &self.shared_point)
            .bytes(6, &self.proof.c)
            .bytes(8, &self.proof.z)
            .finish()
    }

    /// Decode (the dealing's signature is checked; call [`BadShareComplaint::verify`] for the
    /// fault itself).
    pub fn decode(b: &[u8]) -> Result<Self, EvidenceError> {
        let r = MapReader::decode(b, MAX_DEALING_EVIDENCE_BYTES, &[1, 2, 4, 6, 8], &[1])?;
        Ok(Self {
            dealing: SignedDealing::decode(r.bytes(1)?)?,
            index: u32::try_from(r.u64(2)?).map_err(|_| EvidenceError::BadProof("share index"))?,
            shared_point: r.array_n(4)?,
            proof: DleqProof {
                c: r.array_n(6)?,
                z: r.array_n(8)?,
            },
        })
    }
}

/// The worker's proof that the dealt secret does not open the payment hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongPreimageEvidence {
    dealing: SignedDealing,
    secret: Preimage,
}

impl WrongPreimageEvidence {
    /// Evidence from a [`vss::ReconstructError::HashMismatch`].
    pub fn new(dealing: SignedDealing, secret: Preimage) -> Self {
        Self { dealing, secret }
    }

    /// The accused dealing.
    pub fn dealing(&self) -> &SignedDealing {
        &self.dealing
    }

    /// Check: `s·G = C₀` (so `s` is the dealt secret) and `sha256(s) ≠ H`.
    pub fn verify(&self) -> Result<DealerFault, EvidenceError> {
        let body = self.dealing.body();
        let s: Scalar =
            vss::scalar_from_bytes(&self.secret.0).ok_or(EvidenceError::BadProof("secret"))?;
        let c0 = self
            .dealing
            .commitment_points()
            .first()
            .copied()
            .ok_or(EvidenceError::BadProof("commitments"))?;
        if ProjectivePoint::GENERATOR * s != c0 {
            return Err(EvidenceError::BadProof("secret does not match C0"));
        }
        if self.secret.payment_hash() == body.payment_hash {
            return Err(EvidenceError::NotFaulty);
        }
        Ok(DealerFault::WrongPreimage)
    }

    /// Canonical encoding `{0: 1, 1: dealing, 2: secret}`.
    pub fn encode(&self) -> Vec<u8> {
        MapWriter::new(1)
            .bytes(1, &self.dealing.encode())
            .bytes(2, &self.secret.0)
            .finish()
    }

    /// Decode (signature checked; call verify for the fault).
    pub fn decode(b: &[u8]) -> Result<Self, EvidenceError> {
        let r = MapReader::decode(b, MAX_DEALING_EVIDENCE_BYTES, &[1, 2], &[1])?;
        Ok(Self {
            dealing: SignedDealing::decode(r.bytes(1)?)?,
            secret: Preimage(r.array_n(2)?),
        })
    }
}

/// A dealer-signed dealing whose body breaks the structure rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedDealingEvidence {
    dealer: PublicKey,
    signed: Vec<u8>,
}

impl MalformedDealingEvidence {
    /// Wrap the raw signed dealing bytes and the key that signed them.
    pub fn new(dealer: PublicKey, signed_dealing_bytes: Vec<u8>) -> Self {
        Self {
            dealer,
            signed: signed_dealing_bytes,
        }
    }

    /// The accused dealer.
    pub fn dealer(&self) -> PublicKey {
        self.dealer
    }

    /// Check: the dealer's signature over the body verifies, and the body does not decode.
    pub fn verify(&self) -> Result<DealerFault, EvidenceError> {
        let (body_bytes, sig_bytes) = decode_signed(&self.signed)?;
        if !sig::verify(&self.dealer, DOMAIN_DEALING, &body_bytes, &sig_bytes) {
            return Err(EvidenceError::BadProof("dealer signature"));
        }
        match DealingBody::decode(&body_bytes) {
            Ok(_) => Err(EvidenceError::NotFaulty),
            Err(_) => Ok(DealerFault::Malformed),
        }
    }

    /// Canonical encoding `{0: 1, 1: dealer, 2: signed dealing bytes}`.
    pub fn encode(&self) -> Vec<u8> {
        MapWriter::new(1)
            .bytes(1, self.dealer.as_bytes())
            .bytes(2, &self.signed)
            .finish()
    }

    /// Decode.
    pub fn decode(b: &[u8]) -> Result<Self, EvidenceError> {
        let r = MapReader::decode(b, MAX_DEALING_EVIDENCE_BYTES, &[1, 2], &[1])?;
        Ok(Self {
            dealer: PublicKey::from_slice(r.bytes(1)?)
                .map_err(|_| EvidenceError::BadProof("dealer key"))?,
            signed: r.bytes(2)?.to_vec(),
        })
    }

    /// Sign a malformed body (only the simulator's dishonest dealer and tests need this).
    pub fn sign_malformed_for_tests(dealer: &Keys, body_bytes: &[u8], aux: &[u8; 32]) -> Vec<u8> {
        let s = sig::sign(dealer, DOMAIN_DEALING, body_bytes, aux);
        encode_signed(body_bytes, &s)
    }
}
