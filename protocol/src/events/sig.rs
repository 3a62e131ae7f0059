//! BIP-340 signatures over domain-separated canonical bytes, made with a node's Nostr key.
//!
//! Signed protocol objects (dealings, attestations) carry their own signature so that they stay
//! checkable outside the Nostr event that carried them (in evidence, in a checkpoint, in a tally).
//! The message is `sha256(domain ‖ 0x00 ‖ bytes)`; domains are distinct per object type, so a
//! signature over one type can never be replayed as another.
//!
//! Spec: specs/L2T-01-events.md#signed-objects

use nostr::secp256k1::{schnorr, Keypair, Message, XOnlyPublicKey};
use nostr::{Keys, PublicKey, SECP256K1};
use sha2::{Digest, Sha256};

/// Domain of escrow dealings.
pub const DOMAIN_DEALING: &str = "l402/dealing/v1";
/// Domain of validator attestations.
pub const DOMAIN_ATTESTATION: &str = "l402/attestation/v1";

/// The 32-byte message signed for `bytes` in `domain`.
pub fn signing_digest(domain: &str, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

/// Sign `bytes` in `domain` with `keys`; `aux` is the BIP-340 auxiliary randomness (an argument,
/// as everything random in this crate).
pub fn sign(keys: &Keys, domain: &str, bytes: &[u8], aux: &[u8; 32]) -> [u8; 64] {
    let msg = Message::from_digest(signing_digest(domain, bytes));
    let kp = Keypair::from_secret_key(SECP256K1, keys.secret_key());
    SECP256K1
        .sign_schnorr_with_aux_rand(&msg, &kp, aux)
        .serialize()
}

/// Check a signature made by [`sign`].
pub fn verify(pk: &PublicKey, domain: &str, bytes: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(xonly): Result<XOnlyPublicKey, _> = pk.xonly() else {
        return false;
    };
    let Ok(sig) = schnorr::Signature::from_slice(sig) else {
        return false;
    };
    let msg = Message::from_digest(signing_digest(domain, bytes));
    SECP256K1.verify_schnorr(&sig, &msg, &xonly).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nostr::SecretKey;

    #[test]
    fn sign_verify_domain_separated() {
        let keys = Keys::new(SecretKey::from_slice(&[7u8; 32]).unwrap());
        let sig = sign(&keys, DOMAIN_DEALING, b"abc", &[1; 32]);
        assert!(verify(&keys.public_key(), DOMAIN_DEALING, b"abc", &sig));
        assert!(!verify(
            &keys.public_key(),
            DOMAIN_ATTESTATION,
            b"abc",
            &sig
        ));
        assert!(!verify(&keys.public_key(), DOMAIN_DEALING, b"abd", &sig));
        let other = Keys::new(SecretKey::from_slice(&[8u8; 32]).unwrap());
        assert!(!verify(&other.public_key(), DOMAIN_DEALING, b"abc", &sig));
    }
}
