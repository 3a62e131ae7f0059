//! Feldman verifiable secret sharing over secp256k1 (k256 arithmetic).
//!
//! The dealer picks `f(x) = s + a₁x + … + a_{k−1}x^{k−1}` over the scalar field, gives validator
//! `i` (1-based) the share `f(i)`, and publishes the commitments `Cⱼ = aⱼ·G` (`C₀ = s·G`).
//! A share is valid iff `f(i)·G = Σⱼ iʲ·Cⱼ`. Any `k` valid shares give `s` by Lagrange
//! interpolation at 0; `k − 1` shares are consistent with every possible `s` (information-
//! theoretic hiding of the polynomial; `C₀` reveals `s·G`, which is harmless because the preimage
//! only has value until the HTLC is claimed).
//!
//! The preimage is `P = s` as 32 big-endian bytes, and `H = sha256(P)`.
//!
//! Spec: specs/L2T-05-escrow.md#feldman-vss

use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use k256::elliptic_curve::{Field, PrimeField};
use k256::{AffinePoint, EncodedPoint, FieldBytes, ProjectivePoint, Scalar, U256};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::events::ids::PaymentHash;

/// A hold-invoice preimage. Debug output is redacted.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage(pub [u8; 32]);

impl std::fmt::Debug for Preimage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Preimage(<redacted>)")
    }
}

impl Preimage {
    /// `sha256(P)`.
    pub fn payment_hash(&self) -> PaymentHash {
        PaymentHash::of_preimage(&self.0)
    }
}

/// One share: the evaluation point `index` (1-based validator position) and `f(index)`.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Evaluation point, 1..=n.
    pub index: u32,
    /// `f(index)` as 32 big-endian bytes.
    pub value: [u8; 32],
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share({}, <redacted>)", self.index)
    }
}

/// A scalar from 32 big-endian bytes, if canonical (below the group order).
pub fn scalar_from_bytes(b: &[u8; 32]) -> Option<Scalar> {
    Option::from(Scalar::from_repr(FieldBytes::from(*b)))
}

/// 32 big-endian bytes of a scalar.
pub fn scalar_to_bytes(s: &Scalar) -> [u8; 32] {
    s.to_bytes().into()
}

/// Hash-to-scalar (SHA-256 reduced mod n; the bias is below 2⁻¹²⁸).
pub fn scalar_from_hash(h: [u8; 32]) -> Scalar {
    <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(h))
}

/// A point from its 33-byte SEC1 compressed encoding (the identity is rejected).
pub fn point_from_bytes(b: &[u8]) -> Option<ProjectivePoint> {
    if b.len() != 33 {
        return None;
    }
    let ep = EncodedPoint::from_bytes(b).ok()?;
    let a: Option<AffinePoint> = AffinePoint::from_encoded_point(&ep).into();
    a.map(ProjectivePoint::from)
}

/// 33-byte SEC1 compressed encoding.
pub fn point_to_bytes(p: &ProjectivePoint) -> [u8; 33] {
    affine_to_bytes(&p.to_affine())
}

/// [`point_to_bytes`] of a point already in affine form. The point at infinity, whose SEC1
/// encoding is the single byte `0x00`, maps to 33 zero bytes, which [`point_from_bytes`]
/// rejects: a proof whose commitment an adversary steered to infinity hashes to something, it
/// does not panic.
pub fn affine_to_bytes(p: &k256::AffinePoint) -> [u8; 33] {
    let ep = p.to_encoded_point(true);
    let mut out = [0u8; 33];
    if let Ok(b) = <[u8; 33]>::try_from(ep.as_bytes()) {
        out = b;
    }
    out
}

/// The even-y point with x-coordinate `x` (BIP-340 `lift_x`), as Nostr x-only keys mean.
pub fn lift_x(x: &[u8; 32]) -> Option<ProjectivePoint> {
    let mut b = [0u8; 33];
    b[0] = 0x02;
    b[1..].copy_from_slice(x);
    point_from_bytes(&b)
}

/// x-coordinate of a point.
pub fn x_coordinate(p: &ProjectivePoint) -> [u8; 32] {
    p.to_affine().x().into()
}

/// Whether the affine y of `p` is odd.
pub fn y_is_odd(p: &ProjectivePoint) -> bool {
    bool::from(p.to_affine().y_is_odd())
}

/// A fresh sharing: the polynomial's commitments and the `n` shares. The secret is `shares`'
/// interpolation at 0 and is returned as the preimage.
#[derive(Clone)]
pub struct Sharing {
    /// `C₀ … C_{k−1}`.
    pub commitments: Vec<ProjectivePoint>,
    /// Shares for indices 1..=n.
    pub shares: Vec<Share>,
    /// The secret as a preimage.
    pub preimage: Preimage,
}

impl std::fmt::Debug for Sharing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharing")
            .field("k", &self.commitments.len())
            .field("n", &self.shares.len())
            .finish_non_exhaustive()
    }
}

/// Share a fresh random secret k-of-n. Randomness comes from `rng` (seeded by the caller).
///
/// Requires `1 ≤ k ≤ n` (checked by callers; a violation here panics only in debug builds and
/// otherwise yields a degenerate sharing that [`verify_share`] rejects).
pub fn share_random<R: RngCore + CryptoRng>(rng: &mut R, k: usize, n: usize) -> Sharing {
    debug_assert!(k >= 1 && k <= n);
    let coeffs: Vec<Scalar> = (0..k).map(|_| Scalar::random(&mut *rng)).collect();
    let commitments = coeffs
        .iter()
        .map(|a| {
            // k256's precomputed generator table (the `precomputed-tables` feature), several
            // times faster than the generic `GENERATOR * a`.
            <ProjectivePoint as k256::elliptic_curve::ops::MulByGenerator>::mul_by_generator(a)
        })
        .collect();
    let shares = (1..=n as u32)
        .map(|i| Share {
            index: i,
            value: scalar_to_bytes(&eval_poly(&coeffs, Scalar::from(u64::from(i)))),
        })
        .collect();
    Sharing {
        commitments,
        shares,
        preimage: Preimage(scalar_to_bytes(&coeffs[0])),
    }
}

fn eval_poly(coeffs: &[Scalar], x: Scalar) -> Scalar {
    coeffs.iter().rev().fold(Scalar::ZERO, |acc, c| acc * x + c)
}

/// A share's value, if the share can be checked at all: its index is at least 1 (`f(0)` is the
/// secret, never a share) and its value a canonical scalar. Every Feldman check starts here.
fn share_value(share: &Share) -> Option<Scalar> {
    if share.index == 0 {
        return None;
    }
    scalar_from_bytes(&share.value)
}

/// Feldman check: `f(i)·G = Σⱼ iʲ·Cⱼ`. The share index `i` is public and small (at most
/// [`super::dealing::MAX_VALIDATORS`]), so the right side is evaluated by Horner's rule,
/// `(…(C_{k−1}·i + C_{k−2})·i + …)·i + C₀`, with each `·i` a short double-and-add over the bits
/// of `i` (about a dozen point additions in all for k = 3), instead of a full-width multi-scalar
/// multiplication; `f(i)·G` comes from k256's precomputed generator table. Variable time in `i`
/// only, which is public; the share value is used only in the constant-time generator
/// multiplication.
pub fn verify_share(commitments: &[ProjectivePoint], share: &Share) -> bool {
    use k256::elliptic_curve::ops::MulByGenerator;
    let Some(v) = share_value(share) else {
        return false;
    };
    let Some((top, lower)) = commitments.split_last() else {
        return false;
    };
    let sum = lower
        .iter()
        .rev()
        .fold(*top, |acc, c| mul_small(&acc, share.index) + c);
    sum == ProjectivePoint::mul_by_generator(&v)
}

/// `i·P` for a small public `i`, by double-and-add over its bits (variable time in `i` only).
fn mul_small(p: &ProjectivePoint, i: u32) -> ProjectivePoint {
    let mut acc = ProjectivePoint::IDENTITY;
    for bit in (0..u32::BITS - i.leading_zeros()).rev() {
        acc = acc.double();
        if (i >> bit) & 1 == 1 {
            acc += p;
        }
    }
    acc
}

/// The previous [`verify_share`]: `Σⱼ iʲ·Cⱼ − f(i)·G = O` as one multi-scalar multiplication
/// (k256's interleaved `lincomb`, full-width scalars). Kept as the escrow benchmark's baseline
/// and as a second oracle in the tests.
pub fn verify_share_msm(commitments: &[ProjectivePoint], share: &Share) -> bool {
    use k256::elliptic_curve::ops::{LinearCombinationExt, MulByGenerator};
    let Some(v) = share_value(share) else {
        return false;
    };
    let x = Scalar::from(u64::from(share.index));
    let Some((c0, rest)) = commitments.split_first() else {
        return false;
    };
    let mut xp = x;
    let mut terms = Vec::with_capacity(rest.len());
    for c in rest {
        terms.push((*c, xp));
        xp *= x;
    }
    let sum = ProjectivePoint::lincomb_ext(terms.as_slice()) + c0;
    sum == ProjectivePoint::mul_by_generator(&v)
}

/// The textbook Feldman check, one scalar multiplication per commitment: the baseline of the
/// escrow benchmark and the oracle of [`verify_share`]'s tests.
pub fn verify_share_reference(commitments: &[ProjectivePoint], share: &Share) -> bool {
    let Some(v) = share_value(share) else {
        return false;
    };
    let x = Scalar::from(u64::from(share.index));
    let mut xp = Scalar::ONE;
    let mut acc = ProjectivePoint::IDENTITY;
    for c in commitments {
        acc += *c * xp;
        xp *= x;
    }
    acc == ProjectivePoint::GENERATOR * v
}

/// Check several shares of one dealing at once: with weights `rₘ` derived by hashing the
/// commitments and every share (Fiat–Shamir; the protocol reads no RNG), all are valid iff
/// `Σⱼ (Σₘ rₘ·iₘʲ)·Cⱼ − (Σₘ rₘ·fₘ)·G = O`, one multi-scalar multiplication of `k + 1` points
/// whatever the number of shares. An invalid share makes it fail except with probability about
/// 2⁻¹²⁸ over the weights. `false` says only that some share is invalid; check them one by one
/// to learn which.
pub fn verify_shares_batch(commitments: &[ProjectivePoint], shares: &[Share]) -> bool {
    use k256::elliptic_curve::ops::{LinearCombinationExt, MulByGenerator};
    if shares.is_empty() {
        return true;
    }
    if shares.len() == 1 {
        return verify_share(commitments, &shares[0]);
    }
    let mut h = blake3::Hasher::new();
    h.update(b"l402/vss/batch-weights/v1");
    for c in commitments {
        h.update(c.to_affine().to_encoded_point(true).as_bytes());
    }
    for s in shares {
        h.update(&s.index.to_be_bytes());
        h.update(&s.value);
    }
    let mut xof = h.finalize_xof();
    let mut coeff = vec![Scalar::ZERO; commitments.len()];
    let mut value = Scalar::ZERO;
    for s in shares {
        let Some(v) = share_value(s) else {
            return false;
        };
        // A 128-bit weight (enough for the soundness bound, and half the scalar work).
        let mut w = [0u8; 32];
        xof.fill(&mut w[16..]);
        let r = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(w));
        let x = Scalar::from(u64::from(s.index));
        let mut xp = r;
        for c in coeff.iter_mut() {
            *c += xp;
            xp *= x;
        }
        value += r * v;
    }
    let terms: Vec<(ProjectivePoint, Scalar)> = commitments.iter().copied().zip(coeff).collect();
    ProjectivePoint::lincomb_ext(terms.as_slice()) == ProjectivePoint::mul_by_generator(&value)
}

/// Lagrange interpolation at 0 of the given shares (distinct indices assumed by the caller).
/// Returns `None` if two indices coincide or a value is not a canonical scalar.
pub fn interpolate_at_zero(shares: &[Share]) -> Option<Scalar> {
    let xs: Vec<Scalar> = shares
        .iter()
        .map(|s| Scalar::from(u64::from(s.index)))
        .collect();
    let mut acc = Scalar::ZERO;
    for (i, s) in shares.iter().enumerate() {
        let v = scalar_from_bytes(&s.value)?;
        let mut num = Scalar::ONE;
        let mut den = Scalar::ONE;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                num *= xj;
                den *= *xj - xs[i];
            }
        }
        let inv: Option<Scalar> = den.invert().into();
        acc += v * num * inv?;
    }
    Some(acc)
}

/// Error reconstructing a preimage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReconstructError {
    /// Fewer than `k` distinct valid shares.
    #[error("{valid} valid shares, {k} needed")]
    NotEnoughShares {
        /// Distinct valid shares given.
        valid: usize,
        /// Threshold.
        k: usize,
    },
    /// The shares are consistent with the commitments but the secret does not hash to the
    /// payment hash: the dealer cheated. `secret` is the evidence.
    #[error("reconstructed secret does not hash to the payment hash")]
    HashMismatch {
        /// The reconstructed secret (worthless: it opens no HTLC).
        secret: Preimage,
    },
}

/// Reconstruct the preimage from shares: invalid shares (Feldman check) and duplicate indices are
/// skipped, the first `k` valid ones are interpolated, and the result must hash to
/// `payment_hash`.
pub fn reconstruct(
    commitments: &[ProjectivePoint],
    shares: &[Share],
    payment_hash: &PaymentHash,
) -> Result<Preimage, ReconstructError> {
    let k = commitments.len();
    let mut first: Vec<Share> = Vec::with_capacity(k);
    for s in shares {
        if first.len() == k {
            break;
        }
        if !first.iter().any(|c| c.index == s.index) {
            first.push(*s);
        }
    }
    // Fastest path, no curve arithmetic: if the first k distinct shares interpolate to a secret
    // that hashes to the payment hash, that secret is the preimage (finding another would break
    // SHA-256), whatever the commitments say. Otherwise some share is bad (or the dealer
    // cheated): check them against the commitments, together first, then one by one (skipping
    // the bad ones).
    if k > 0 && first.len() == k {
        if let Some(secret) = interpolate_at_zero(&first) {
            let p = Preimage(scalar_to_bytes(&secret));
            if &p.payment_hash() == payment_hash {
                return Ok(p);
            }
        }
    }
    let batch_ok = k > 0 && first.len() == k && verify_shares_batch(commitments, &first);
    let mut chosen: Vec<Share> = Vec::with_capacity(k);
    if batch_ok {
        chosen = first;
    }
    for s in shares.iter().filter(|_| !batch_ok) {
        if chosen.len() == k {
            break;
        }
        if chosen.iter().any(|c| c.index == s.index) || !verify_share(commitments, s) {
            continue;
        }
        chosen.push(*s);
    }
    if chosen.len() < k || k == 0 {
        return Err(ReconstructError::NotEnoughShares {
            valid: chosen.len(),
            k,
        });
    }
    let secret = interpolate_at_zero(&chosen).ok_or(ReconstructError::NotEnoughShares {
        valid: chosen.len(),
        k,
    })?;
    let p = Preimage(scalar_to_bytes(&secret));
    if &p.payment_hash() != payment_hash {
        return Err(ReconstructError::HashMismatch { secret: p });
    }
    Ok(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn sharing(k: usize, n: usize, seed: u8) -> Sharing {
        share_random(&mut ChaCha20Rng::from_seed([seed; 32]), k, n)
    }

    /// The Horner and MSM checks agree with the textbook one on valid, tampered, zero-index and
    /// out-of-range shares (up to the largest index, 64); the batch check accepts exactly the
    /// all-valid sets.
    #[test]
    fn horner_msm_and_batch_checks_agree_with_the_reference() {
        for (k, n, seed) in [(1, 1, 3), (2, 3, 4), (3, 5, 5), (5, 9, 6), (4, 64, 7)] {
            let s = sharing(k, n, seed);
            for sh in &s.shares {
                assert!(verify_share(&s.commitments, sh));
                assert!(verify_share_msm(&s.commitments, sh));
                assert!(verify_share_reference(&s.commitments, sh));
                let mut bad = *sh;
                bad.value[31] ^= 1;
                assert_eq!(
                    verify_share(&s.commitments, &bad),
                    verify_share_reference(&s.commitments, &bad)
                );
                assert!(!verify_share(&s.commitments, &bad));
                assert!(!verify_share_msm(&s.commitments, &bad));
                let moved = Share {
                    index: sh.index % n as u32 + 1,
                    ..*sh
                };
                assert_eq!(
                    verify_share(&s.commitments, &moved),
                    verify_share_reference(&s.commitments, &moved)
                );
            }
            assert!(!verify_share(
                &s.commitments,
                &Share {
                    index: 0,
                    ..s.shares[0]
                }
            ));
            assert!(!verify_share(
                &s.commitments,
                &Share {
                    index: 1,
                    value: [0xff; 32]
                }
            ));
            assert!(verify_shares_batch(&s.commitments, &s.shares));
            for m in 0..n {
                let mut bad = s.shares.clone();
                bad[m].value[0] ^= 0x40;
                assert!(
                    !verify_shares_batch(&s.commitments, &bad),
                    "k {k} share {m}"
                );
                // Reconstruction skips the bad share when enough good ones remain.
                let h = s.preimage.payment_hash();
                if n > k {
                    assert_eq!(reconstruct(&s.commitments, &bad, &h).unwrap(), s.preimage);
                }
            }
        }
    }

    #[test]
    fn any_k_reconstruct() {
        let s = sharing(3, 5, 1);
        let h = s.preimage.payment_hash();
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let sub = [s.shares[a], s.shares[b], s.shares[c]];
                    assert_eq!(reconstruct(&s.commitments, &sub, &h).unwrap(), s.preimage);
                }
            }
        }
    }

    #[test]
    fn k_minus_one_reconstruct_nothing_usable() {
        let s = sharing(3, 5, 2);
        let h = s.preimage.payment_hash();
        let two = [s.shares[0], s.shares[3]];
        assert_eq!(
            reconstruct(&s.commitments, &two, &h),
            Err(ReconstructError::NotEnoughShares { valid: 2, k: 3 })
        );
        // Forcing an interpolation through k−1 shares gives a value that opens nothing.
        let guess = interpolate_at_zero(&two).unwrap();
        assert_ne!(PaymentHash::of_preimage(&scalar_to_bytes(&guess)), h);
        // And k−1 shares are consistent with ANY secret: for an arbitrary candidate c there is a
        // degree-(k−1) polynomial through (0, c) and the two shares. Evaluate it at the third
        // point: interpolating {(0,c), share0, share3} reproduces share0 and share3 exactly.
        for c in [Scalar::ONE, Scalar::from(42u64), scalar_from_hash([9; 32])] {
            let pts = [
                Share {
                    index: 0,
                    value: scalar_to_bytes(&c),
                },
                two[0],
                two[1],
            ];
            // Lagrange through x = 0, 1, 4 evaluated at each share's x gives the share back.
            for target in &two {
                let x = Scalar::from(u64::from(target.index));
                let mut acc = Scalar::ZERO;
                for (i, p) in pts.iter().enumerate() {
                    let xi = Scalar::from(u64::from(p.index));
                    let mut l = Scalar::ONE;
                    for (j, q) in pts.iter().enumerate() {
                        if i != j {
                            let xj = Scalar::from(u64::from(q.index));
                            l *= (x - xj) * Option::<Scalar>::from((xi - xj).invert()).unwrap();
                        }
                    }
                    acc += scalar_from_bytes(&p.value).unwrap() * l;
                }
                assert_eq!(scalar_to_bytes(&acc), target.value);
            }
        }
    }

    #[test]
    fn bad_shares_are_detected_and_skipped() {
        let s = sharing(2, 4, 3);
        let h = s.preimage.payment_hash();
        let mut bad = s.shares[0];
        bad.value[31] ^= 1;
        assert!(!verify_share(&s.commitments, &bad));
        assert!(s.shares.iter().all(|sh| verify_share(&s.commitments, sh)));
        // A bad share plus one good one is not enough; adding a second good one is.
        assert!(reconstruct(&s.commitments, &[bad, s.shares[1]], &h).is_err());
        assert_eq!(
            reconstruct(&s.commitments, &[bad, s.shares[1], s.shares[2]], &h).unwrap(),
            s.preimage
        );
        // Duplicates count once.
        assert!(reconstruct(&s.commitments, &[s.shares[1], s.shares[1]], &h).is_err());
    }

    #[test]
    fn wrong_hash_is_reported_with_secret() {
        let s = sharing(2, 3, 4);
        let err = reconstruct(&s.commitments, &s.shares, &PaymentHash([0; 32])).unwrap_err();
        assert_eq!(err, ReconstructError::HashMismatch { secret: s.preimage });
    }

    #[test]
    fn k_equals_one_and_n() {
        let s = sharing(1, 1, 5);
        let h = s.preimage.payment_hash();
        assert_eq!(
            reconstruct(&s.commitments, &s.shares, &h).unwrap(),
            s.preimage
        );
        let s = sharing(4, 4, 6);
        let h = s.preimage.payment_hash();
        assert_eq!(
            reconstruct(&s.commitments, &s.shares, &h).unwrap(),
            s.preimage
        );
    }

    #[test]
    fn point_encoding() {
        let p = ProjectivePoint::GENERATOR * Scalar::from(7u64);
        assert_eq!(point_from_bytes(&point_to_bytes(&p)).unwrap(), p);
        assert!(point_from_bytes(&[0u8; 33]).is_none());
        assert!(point_from_bytes(&[2u8; 32]).is_none());
        let x = x_coordinate(&p);
        let l = lift_x(&x).unwrap();
        assert!(!y_is_odd(&l));
        assert!(l == p || l == -p);
    }
}
