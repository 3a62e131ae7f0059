//! BIP-340 signatures over domain-separated canonical bytes, made with a node's Nostr key.
//!
//! Signed protocol objects (dealings, attestations) carry their own signature so that they stay
//! checkable outside the Nostr event that carried them (in evidence, in a checkpoint, in a tally).
//! The message is `sha256(domain ‖ 0x00 ‖ bytes)`; domains are distinct per object type, so a
//! signature over one type can never be replayed as another.
//!
//! Spec: specs/L2T-01-events.md#signed-objects

use nostr::secp256k1::{schnorr, Message, XOnlyPublicKey};
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
    // `Keys` keeps its keypair; signing through it spares deriving the keypair again (a
    // generator multiplication per signature). `Aux` hands BIP-340 exactly `aux`, so the
    // signature is the one `sign_schnorr_with_aux_rand` makes.
    keys.sign_schnorr_with_ctx(SECP256K1, &msg, &mut Aux(*aux))
        .serialize()
}

/// An "RNG" that yields the given BIP-340 auxiliary bytes: secp256k1's `sign_schnorr_with_rng`
/// draws exactly 32 bytes of aux from it. (Deterministic on purpose: all randomness in this
/// crate is an argument.)
struct Aux([u8; 32]);

impl rand::RngCore for Aux {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for (d, a) in dest.iter_mut().zip(self.0.iter().cycle()) {
            *d = *a;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand::CryptoRng for Aux {}

/// Check a signature made by [`sign`].
pub fn verify(pk: &PublicKey, domain: &str, bytes: &[u8], sig: &[u8; 64]) -> bool {
    let Some(xonly) = xonly(pk) else {
        return false;
    };
    let Ok(sig) = schnorr::Signature::from_slice(sig) else {
        return false;
    };
    let msg = Message::from_digest(signing_digest(domain, bytes));
    SECP256K1.verify_schnorr(&sig, &msg, &xonly).is_ok()
}

/// `pk` as the curve point BIP-340 checks against, or `None` if no point has that x.
///
/// Lifting an x-only key takes a field square root (about 5 µs), and nostr's
/// `PublicKey::xonly` lifts it again at every check. The same few thousand keys (validators,
/// coordinators, peers) sign every round, so the lifts are remembered for the process, as
/// [`crate::escrow::ShareChannel::between`] remembers conversation keys: a pure memo, capped,
/// forgotten whole when full.
pub fn xonly(pk: &PublicKey) -> Option<XOnlyPublicKey> {
    if let Some(x) = xonly_memo().get(pk) {
        return Some(*x);
    }
    let x = pk.xonly().ok()?;
    let mut memo = xonly_memo();
    if memo.len() >= XONLY_MEMO_CAP {
        memo.clear();
    }
    memo.insert(*pk, x);
    Some(x)
}

/// Most lifted keys [`xonly`] remembers.
pub const XONLY_MEMO_CAP: usize = 1 << 16;

/// The process's lifted keys, locked. A `BTreeMap`: std's `HashMap` seeds itself from the OS,
/// and this crate reads no RNG.
fn xonly_memo(
) -> std::sync::MutexGuard<'static, std::collections::BTreeMap<PublicKey, XOnlyPublicKey>> {
    static MEMO: std::sync::Mutex<std::collections::BTreeMap<PublicKey, XOnlyPublicKey>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    MEMO.lock().unwrap_or_else(|p| p.into_inner())
}

/// A key whose x is on no curve point (the first such small x), for tests of refusals.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn off_curve_key() -> PublicKey {
    (1..=255u8)
        .map(|i| {
            let mut x = [0u8; 32];
            x[31] = i;
            PublicKey::from_byte_array(x)
        })
        .find(|pk| pk.xonly().is_err())
        .unwrap()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nostr::SecretKey;

    #[test]
    fn signs_as_bip340_with_the_given_aux() {
        let keys = Keys::new(SecretKey::from_slice(&[7u8; 32]).unwrap());
        let kp = nostr::secp256k1::Keypair::from_secret_key(SECP256K1, keys.secret_key());
        for aux in [[0u8; 32], [0x5a; 32]] {
            let msg = Message::from_digest(signing_digest(DOMAIN_DEALING, b"abc"));
            let want = SECP256K1.sign_schnorr_with_aux_rand(&msg, &kp, &aux);
            assert_eq!(sign(&keys, DOMAIN_DEALING, b"abc", &aux), want.serialize());
        }
    }

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

    #[test]
    fn remembered_lift_is_nostrs_and_an_x_off_the_curve_stays_refused() {
        for i in 1..40u8 {
            let pk = Keys::new(SecretKey::from_slice(&[i; 32]).unwrap()).public_key();
            // Twice: the lift, then the remembered one.
            assert_eq!(xonly(&pk), Some(pk.xonly().unwrap()));
            assert_eq!(xonly(&pk), Some(pk.xonly().unwrap()));
        }
        let off_curve = off_curve_key();
        assert_eq!(xonly(&off_curve), None);
        assert_eq!(xonly(&off_curve), None);
        assert!(!verify(&off_curve, DOMAIN_DEALING, b"abc", &[1; 64]));
    }
}
