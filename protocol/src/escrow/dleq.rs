//! Chaum–Pedersen proof of discrete-log equality, made non-interactive with Fiat–Shamir.
//!
//! Used by a validator to reveal the NIP-44 shared point of one share ciphertext, and prove it is
//! correct, without revealing its secret key: it proves `log_G(V) = log_E(S)` where `V` is its
//! key, `E` the dealing's ephemeral key and `S = v·E` the ECDH point. A third party then derives
//! that one conversation key and decrypts that one share.
//!
//! Spec: specs/L2T-05-escrow.md#bad-share-complaint

use k256::elliptic_curve::ops::{LinearCombination, MulByGenerator};
use k256::elliptic_curve::{BatchNormalize, Group};
use k256::{ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};

use super::vss::{
    affine_to_bytes, point_to_bytes, scalar_from_bytes, scalar_from_hash, scalar_to_bytes,
};

/// A DLEQ proof `(c, z)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DleqProof {
    /// Challenge.
    pub c: [u8; 32],
    /// Response `z = r + c·x`.
    pub z: [u8; 32],
}

impl DleqProof {
    /// `(c, z)` as scalars, if both are canonical.
    fn scalars(&self) -> Option<(Scalar, Scalar)> {
        Some((scalar_from_bytes(&self.c)?, scalar_from_bytes(&self.z)?))
    }
}

/// The Fiat–Shamir challenge over the context and the five encoded points.
fn challenge_of(ctx: &[u8], points: impl IntoIterator<Item = [u8; 33]>) -> Scalar {
    let mut h = Sha256::new();
    h.update(b"l402/dleq/v1\0");
    h.update((ctx.len() as u64).to_be_bytes());
    h.update(ctx);
    for p in points {
        h.update(p);
    }
    scalar_from_hash(h.finalize().into())
}

fn challenge(
    ctx: &[u8],
    p1: &ProjectivePoint,
    base2: &ProjectivePoint,
    p2: &ProjectivePoint,
    a1: &ProjectivePoint,
    a2: &ProjectivePoint,
) -> Scalar {
    let points = [*p1, *base2, *p2, *a1, *a2];
    if points.iter().any(|p| bool::from(p.is_identity())) {
        // k256's batch inversion panics on a point at infinity whose `z` is an unreduced zero
        // (found by the test below), so a steered commitment takes the point-by-point path.
        return challenge_of(ctx, points.iter().map(point_to_bytes));
    }
    // One field inversion for the five points (Montgomery's trick) instead of one each.
    let affine =
        <ProjectivePoint as BatchNormalize<[ProjectivePoint; 5]>>::batch_normalize(&points);
    challenge_of(ctx, affine.iter().map(affine_to_bytes))
}

/// Prove that `p1 = x·G` and `p2 = x·base2` share `x`. The nonce is derived from `x`, the
/// statement and `nonce_seed` (an argument), so the prover needs no RNG.
pub fn prove(x: &Scalar, base2: &ProjectivePoint, ctx: &[u8], nonce_seed: &[u8; 32]) -> DleqProof {
    let p1 = ProjectivePoint::mul_by_generator(x);
    let p2 = *base2 * x;
    prove_for(x, &p1, base2, &p2, ctx, nonce_seed)
}

/// [`prove`] for a prover that already holds `p1 = x·G` and `p2 = x·base2` (the committee VRF
/// computes both on its way): the same proof, without computing them again.
pub fn prove_for(
    x: &Scalar,
    p1: &ProjectivePoint,
    base2: &ProjectivePoint,
    p2: &ProjectivePoint,
    ctx: &[u8],
    nonce_seed: &[u8; 32],
) -> DleqProof {
    let mut h = Sha256::new();
    h.update(b"l402/dleq-nonce/v1\0");
    h.update(scalar_to_bytes(x));
    h.update(nonce_seed);
    h.update(point_to_bytes(base2));
    h.update(ctx);
    let mut r = scalar_from_hash(h.finalize().into());
    if r == Scalar::ZERO {
        r = Scalar::ONE;
    }
    let a1 = ProjectivePoint::mul_by_generator(&r);
    let a2 = *base2 * r;
    let c = challenge(ctx, p1, base2, p2, &a1, &a2);
    let z = r + c * x;
    DleqProof {
        c: scalar_to_bytes(&c),
        z: scalar_to_bytes(&z),
    }
}

/// Check a proof for `p1 = x·G`, `p2 = x·base2`.
pub fn verify(
    p1: &ProjectivePoint,
    base2: &ProjectivePoint,
    p2: &ProjectivePoint,
    ctx: &[u8],
    proof: &DleqProof,
) -> bool {
    let Some((c, z)) = proof.scalars() else {
        return false;
    };
    // `z·G` from k256's precomputed generator table, `c·p1` apart; the second side as one
    // multi-scalar multiplication (k256's interleaved `lincomb`).
    let a1 = ProjectivePoint::mul_by_generator(&z) - *p1 * c;
    let a2 = ProjectivePoint::lincomb(base2, &z, p2, &-c);
    challenge(ctx, p1, base2, p2, &a1, &a2) == c
}

/// The previous [`verify`]: both sides as `lincomb`s, each point normalised on its own. Kept as
/// the benchmark's baseline and as a second oracle in the tests.
pub fn verify_lincomb(
    p1: &ProjectivePoint,
    base2: &ProjectivePoint,
    p2: &ProjectivePoint,
    ctx: &[u8],
    proof: &DleqProof,
) -> bool {
    let Some((c, z)) = proof.scalars() else {
        return false;
    };
    let a1 = ProjectivePoint::lincomb(&ProjectivePoint::GENERATOR, &z, p1, &-c);
    let a2 = ProjectivePoint::lincomb(base2, &z, p2, &-c);
    challenge_of(ctx, [p1, base2, p2, &a1, &a2].map(point_to_bytes)) == c
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prove_verify_and_reject_tampering() {
        let x = Scalar::from(123_456_789u64);
        let e = ProjectivePoint::GENERATOR * Scalar::from(99u64);
        let proof = prove(&x, &e, b"ctx", &[1; 32]);
        let p1 = ProjectivePoint::GENERATOR * x;
        let p2 = e * x;
        assert!(verify(&p1, &e, &p2, b"ctx", &proof));
        assert!(!verify(&p1, &e, &p2, b"other", &proof));
        assert!(!verify(
            &p1,
            &e,
            &(p2 + ProjectivePoint::GENERATOR),
            b"ctx",
            &proof
        ));
        let wrong = ProjectivePoint::GENERATOR * Scalar::from(5u64);
        assert!(!verify(&wrong, &e, &p2, b"ctx", &proof));
        // The previous check agrees on each case.
        assert!(verify_lincomb(&p1, &e, &p2, b"ctx", &proof));
        assert!(!verify_lincomb(&p1, &e, &p2, b"other", &proof));
        assert!(!verify_lincomb(&wrong, &e, &p2, b"ctx", &proof));
    }

    /// `prove_for`, given the two points, is `prove`: the same proof bytes.
    #[test]
    fn prove_for_is_prove() {
        for i in 1..20u64 {
            let x = Scalar::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let e = ProjectivePoint::GENERATOR * Scalar::from(i + 1000);
            let (p1, p2) = (ProjectivePoint::GENERATOR * x, e * x);
            let seed = [i as u8; 32];
            assert_eq!(
                prove_for(&x, &p1, &e, &p2, b"ctx", &seed),
                prove(&x, &e, b"ctx", &seed)
            );
        }
    }

    /// A prover who knows the logs can steer both commitments to the point at infinity
    /// (`z = c·x`); the check then fails instead of panicking on its one-byte encoding.
    #[test]
    fn commitments_at_infinity_fail_without_panicking() {
        let x = Scalar::from(7u64);
        let e = ProjectivePoint::GENERATOR * Scalar::from(11u64);
        let c = Scalar::from(3u64);
        let proof = DleqProof {
            c: scalar_to_bytes(&c),
            z: scalar_to_bytes(&(c * x)),
        };
        let (p1, p2) = (ProjectivePoint::GENERATOR * x, e * x);
        assert!(!verify(&p1, &e, &p2, b"ctx", &proof));
        assert!(!verify_lincomb(&p1, &e, &p2, b"ctx", &proof));
        assert_eq!(point_to_bytes(&ProjectivePoint::IDENTITY), [0u8; 33]);
    }
}
