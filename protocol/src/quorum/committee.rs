//! Per-submission committees, drawn with a verifiable random function of the coordinator.
//!
//! A round opens with a **pool** of opted-in validators (`RoundOpen::validators`) and a committee
//! size `n` (`RoundOpen::committee`). Each submission gets its own committee of `n` from the pool,
//! so a validator evaluates about `S·n/V` of a round's `S` submissions instead of all of them.
//!
//! The draw must be unpredictable to the worker (a worker that could predict it would grind its
//! submission nonce until its colluding validators form the committee) and not choosable by the
//! coordinator (which could route work to colluders). Both hold for a VRF of the coordinator's
//! key over the submission: `Γ = x·H(round seed ‖ submission)` with `H` a hash to the curve and
//! `x` the coordinator's key, proven by a Chaum–Pedersen proof that `log_G(X) = log_H(Γ)`
//! ([`crate::escrow::dleq`]). `Γ` is unique for the key and the submission, so the coordinator
//! cannot grind it, and nobody without `x` can compute it before the coordinator deals. The
//! committee seed is `sha256("l402/committee/v1" ‖ Γ)` and the committee is
//! [`super::select_validators`] over the pool with that seed.
//!
//! Spec: specs/L2T-04-attestation.md#per-submission-committees

use std::collections::BTreeSet;

use k256::{ProjectivePoint, Scalar};
use nostr::{Keys, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::select::{select_validators, SelectError};
use crate::escrow::dleq::{self, DleqProof};
use crate::escrow::vss::{lift_x, point_from_bytes, point_to_bytes, scalar_from_bytes, y_is_odd};
use crate::events::ids::{RunId, Seed32, SubmissionId};

/// The coordinator's VRF output for one submission and its proof, carried in the escrow offer
/// (JSON: `{"gamma": "<66 hex>", "c": "<64 hex>", "z": "<64 hex>"}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ProofJson", into = "ProofJson")]
pub struct CommitteeProof {
    /// `Γ = x·H`, 33-byte compressed.
    pub gamma: [u8; 33],
    /// Chaum–Pedersen challenge.
    pub c: [u8; 32],
    /// Chaum–Pedersen response.
    pub z: [u8; 32],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofJson {
    gamma: String,
    c: String,
    z: String,
}

impl From<CommitteeProof> for ProofJson {
    fn from(p: CommitteeProof) -> Self {
        Self {
            gamma: hex::encode(p.gamma),
            c: hex::encode(p.c),
            z: hex::encode(p.z),
        }
    }
}

impl TryFrom<ProofJson> for CommitteeProof {
    type Error = String;
    fn try_from(j: ProofJson) -> Result<Self, String> {
        fn fixed<const N: usize>(s: &str) -> Result<[u8; N], String> {
            // Length first: nothing longer than the fixed size is decoded.
            if s.len() != 2 * N {
                return Err(format!("expected {} hex characters", 2 * N));
            }
            let mut out = [0u8; N];
            hex::decode_to_slice(s, &mut out).map_err(|e| e.to_string())?;
            Ok(out)
        }
        Ok(Self {
            gamma: fixed(&j.gamma)?,
            c: fixed(&j.c)?,
            z: fixed(&j.z)?,
        })
    }
}

/// Why a submission's committee cannot be derived or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitteeError {
    /// The VRF proof does not verify for the coordinator's key and this submission.
    #[error("committee proof does not verify")]
    BadProof,
    /// The coordinator's key is not a valid curve point (never for a parsed Nostr key).
    #[error("coordinator key is not a curve point")]
    BadKey,
    /// The offer's proof was made over another round seed than this round's.
    #[error("committee proof made over another round seed")]
    OtherRoundSeed,
    /// The draw itself failed (pool smaller than `n`, bad `k`).
    #[error(transparent)]
    Select(#[from] SelectError),
}

fn vrf_context(run: &RunId, round: u64, submission: &SubmissionId) -> Vec<u8> {
    let mut ctx = b"l402/committee-vrf/v1\0".to_vec();
    ctx.extend_from_slice(&(run.as_str().len() as u64).to_be_bytes());
    ctx.extend_from_slice(run.as_str().as_bytes());
    ctx.extend_from_slice(&round.to_be_bytes());
    ctx.extend_from_slice(&submission.0);
    ctx
}

/// `H(round seed ‖ submission)`: try-and-increment onto secp256k1 (the first counter whose
/// SHA-256 is the x-coordinate of a point, even y). Nobody knows its discrete logarithm. Public
/// inputs only, so the data-dependent loop leaks nothing; about two tries on average.
pub fn vrf_base(round_seed: &Seed32, submission: &SubmissionId) -> ProjectivePoint {
    let mut ctr: u32 = 0;
    loop {
        let mut h = Sha256::new();
        h.update(b"l402/committee-h2c/v1\0");
        h.update(round_seed.0);
        h.update(submission.0);
        h.update(ctr.to_be_bytes());
        let x: [u8; 32] = h.finalize().into();
        if let Some(p) = lift_x(&x) {
            return p;
        }
        ctr = ctr.wrapping_add(1);
    }
}

/// The committee seed a proof's output `gamma` names (a hash: cheap). It means something only
/// for a proof that verified; an `events::EscrowOffer` is verified when it is decoded.
pub fn seed_of(gamma: &[u8; 33]) -> Seed32 {
    let mut h = Sha256::new();
    h.update(b"l402/committee/v1\0");
    h.update(gamma);
    Seed32(h.finalize().into())
}

/// The coordinator's secret as the scalar `x` with `x·G = lift_x(pubkey)` (BIP-340 keys are
/// x-only: negate when the full point has odd y), and that point `x·G`.
fn signing_scalar(keys: &Keys) -> Option<(Scalar, ProjectivePoint)> {
    let sk = scalar_from_bytes(&keys.secret_key().secret_bytes())?;
    let p = <ProjectivePoint as k256::elliptic_curve::ops::MulByGenerator>::mul_by_generator(&sk);
    Some(if y_is_odd(&p) { (-sk, -p) } else { (sk, p) })
}

/// Coordinator: the VRF output and proof for `submission` of round (`run`, `round`) with seed
/// `round_seed`, and the committee seed it gives. `None` only for an invalid secret key.
pub fn prove(
    coordinator: &Keys,
    run: &RunId,
    round: u64,
    round_seed: &Seed32,
    submission: &SubmissionId,
) -> Option<(CommitteeProof, Seed32)> {
    prove_as(coordinator, (run, round, round_seed, submission), false)
}

/// The previous [`prove`]: the DLEQ proof computes `x·G` and `Γ = x·H` again (one more
/// variable-base and two more fixed-base multiplications). The same output; kept as the
/// benchmark's baseline and as a test oracle.
pub fn prove_recomputing(
    coordinator: &Keys,
    run: &RunId,
    round: u64,
    round_seed: &Seed32,
    submission: &SubmissionId,
) -> Option<(CommitteeProof, Seed32)> {
    prove_as(coordinator, (run, round, round_seed, submission), true)
}

/// [`prove`], or with `recompute` [`prove_recomputing`].
fn prove_as(
    coordinator: &Keys,
    (run, round, round_seed, submission): (&RunId, u64, &Seed32, &SubmissionId),
    recompute: bool,
) -> Option<(CommitteeProof, Seed32)> {
    let (x, key) = signing_scalar(coordinator)?;
    let base = vrf_base(round_seed, submission);
    let gamma_point = base * x;
    let gamma = point_to_bytes(&gamma_point);
    let ctx = vrf_context(run, round, submission);
    // The proof's nonce is derived from the key and the statement: deterministic, no RNG. `x·G`
    // and `Γ` are at hand: the proof need not compute them again.
    let p = if recompute {
        dleq::prove(&x, &base, &ctx, &submission.0)
    } else {
        dleq::prove_for(&x, &key, &base, &gamma_point, &ctx, &submission.0)
    };
    Some((
        CommitteeProof {
            gamma,
            c: p.c,
            z: p.z,
        },
        seed_of(&gamma),
    ))
}

/// Anyone: check the coordinator's proof for `submission` and return the committee seed.
pub fn verify(
    coordinator: &PublicKey,
    run: &RunId,
    round: u64,
    round_seed: &Seed32,
    submission: &SubmissionId,
    proof: &CommitteeProof,
) -> Result<Seed32, CommitteeError> {
    let key = lift_x(coordinator.as_bytes()).ok_or(CommitteeError::BadKey)?;
    let gamma = point_from_bytes(&proof.gamma).ok_or(CommitteeError::BadProof)?;
    let base = vrf_base(round_seed, submission);
    let ctx = vrf_context(run, round, submission);
    let p = DleqProof {
        c: proof.c,
        z: proof.z,
    };
    if !dleq::verify(&key, &base, &gamma, &ctx, &p) {
        return Err(CommitteeError::BadProof);
    }
    Ok(seed_of(&proof.gamma))
}

/// The committee of `n` (threshold `k`) drawn from `pool` with a verified committee seed, in
/// share order.
pub fn draw(
    pool: &[PublicKey],
    seed: &Seed32,
    n: usize,
    k: usize,
) -> Result<Vec<PublicKey>, CommitteeError> {
    let set: BTreeSet<PublicKey> = pool.iter().copied().collect();
    Ok(select_validators(&set, seed, n, k)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::quorum::round_seed;
    use nostr::SecretKey;

    fn keys(i: u8) -> Keys {
        let mut b = [0u8; 32];
        b[31] = i;
        b[0] = 7;
        Keys::new(SecretKey::from_slice(&b).unwrap())
    }

    /// The proof verifies for its key and submission only; the output is unique per key and
    /// submission; a forged gamma fails; committees spread over the pool.
    #[test]
    fn vrf_committees() {
        let run = RunId::new("run").unwrap();
        let seed = round_seed(&run, 4, &crate::events::BlobHash([1; 32]));
        let pool: Vec<PublicKey> = (1..=30).map(|i| keys(i).public_key()).collect();
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..200u32 {
            let coordinator = keys(200 + (i % 3) as u8);
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_be_bytes());
            let sub = SubmissionId(s);
            let (proof, cseed) = prove(&coordinator, &run, 4, &seed, &sub).unwrap();
            let pk = coordinator.public_key();
            assert_eq!(verify(&pk, &run, 4, &seed, &sub, &proof), Ok(cseed));
            // Deterministic: proving again gives the same output, and the previous way of
            // proving (recomputing `x·G` and `Γ`) gives the same proof.
            assert_eq!(prove(&coordinator, &run, 4, &seed, &sub).unwrap().1, cseed);
            assert_eq!(
                prove_recomputing(&coordinator, &run, 4, &seed, &sub),
                Some((proof, cseed))
            );
            if i < 5 {
                let other = SubmissionId([0xee; 32]);
                assert_eq!(
                    verify(&pk, &run, 4, &seed, &other, &proof),
                    Err(CommitteeError::BadProof)
                );
                assert_eq!(
                    verify(&keys(99).public_key(), &run, 4, &seed, &sub, &proof),
                    Err(CommitteeError::BadProof)
                );
                let mut forged = proof;
                forged.gamma = point_to_bytes(&vrf_base(&seed, &other));
                assert_eq!(
                    verify(&pk, &run, 4, &seed, &sub, &forged),
                    Err(CommitteeError::BadProof)
                );
            }
            let c = draw(&pool, &cseed, 5, 3).unwrap();
            assert_eq!(c.iter().collect::<BTreeSet<_>>().len(), 5);
            for v in c {
                *counts.entry(v).or_insert(0u32) += 1;
            }
        }
        // 200 committees of 5 from 30: each validator sits on about 33; none is starved.
        assert_eq!(counts.len(), 30);
        assert!(
            counts.values().all(|&c| (12..=60).contains(&c)),
            "{counts:?}"
        );
    }
}
