//! Deterministic, unbiased selection of a round's validators.
//!
//! Spec: specs/L2T-04-attestation.md#selection

use std::collections::BTreeSet;

use nostr::PublicKey;
use sha2::{Digest, Sha256};

use crate::events::ids::{BlobHash, RunId, Seed32, SubmissionId};

/// Error selecting validators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// Fewer opted-in validators than the round needs.
    #[error("{available} validators opted in, the round needs {needed}")]
    NotEnoughValidators {
        /// Opted-in count.
        available: usize,
        /// Requested `n`.
        needed: usize,
    },
    /// `k` is zero or larger than `n`.
    #[error("quorum k={k} is invalid for n={n}")]
    BadQuorum {
        /// Threshold.
        k: usize,
        /// Committee size.
        n: usize,
    },
}

fn tagged(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag.as_bytes());
    h.update([0u8]);
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The seed of round `round` of `run`: `sha256("l402/round-seed/v1" ‖ run ‖ round ‖ previous
/// checkpoint hash)` (length-prefixed parts).
///
/// The previous checkpoint is fixed before the round opens and is recomputable by anyone from the
/// merged submissions, so the coordinator cannot pick the seed; it could only grind it by changing
/// which submissions it merges, which the checkpoint rule (exactly the submissions with a passing
/// quorum) forbids.
pub fn round_seed(run: &RunId, round: u64, prev_checkpoint: &BlobHash) -> Seed32 {
    Seed32(tagged(
        "l402/round-seed/v1",
        &[
            run.as_str().as_bytes(),
            &round.to_be_bytes(),
            &prev_checkpoint.0,
        ],
    ))
}

/// The evaluation seed for one submission: every validator of the round evaluates it on the same
/// held-out batch, so their scores are comparable within the tolerance.
pub fn eval_seed(round_seed: &Seed32, submission: &SubmissionId) -> Seed32 {
    Seed32(tagged("l402/eval-seed/v1", &[&round_seed.0, &submission.0]))
}

/// Select `n` validators out of `opted_in` for a round with `seed`.
///
/// Each candidate gets the ticket `sha256("l402/select/v1" ‖ seed ‖ pubkey)`; the `n` lowest
/// tickets win, returned in ticket order (that order is the share index order of the escrow
/// dealing). Under the random-oracle model this is a uniform sample without replacement, and it
/// does not depend on the order in which candidates were learnt.
pub fn select_validators(
    opted_in: &BTreeSet<PublicKey>,
    seed: &Seed32,
    n: usize,
    k: usize,
) -> Result<Vec<PublicKey>, SelectError> {
    if k == 0 || k > n {
        return Err(SelectError::BadQuorum { k, n });
    }
    if opted_in.len() < n {
        return Err(SelectError::NotEnoughValidators {
            available: opted_in.len(),
            needed: n,
        });
    }
    let mut tickets: Vec<([u8; 32], PublicKey)> = opted_in
        .iter()
        .map(|pk| (tagged("l402/select/v1", &[&seed.0, pk.as_bytes()]), *pk))
        .collect();
    tickets.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(tickets.into_iter().take(n).map(|(_, pk)| pk).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nostr::{Keys, SecretKey};

    fn pks(m: usize) -> BTreeSet<PublicKey> {
        (1..=m)
            .map(|i| {
                let mut b = [0u8; 32];
                b[31] = i as u8;
                b[0] = 1;
                Keys::new(SecretKey::from_slice(&b).unwrap()).public_key()
            })
            .collect()
    }

    #[test]
    fn deterministic_and_order_independent() {
        let set = pks(20);
        let seed = Seed32([3; 32]);
        let a = select_validators(&set, &seed, 5, 3).unwrap();
        let b = select_validators(&set.iter().rev().copied().collect(), &seed, 5, 3).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        let uniq: BTreeSet<_> = a.iter().collect();
        assert_eq!(uniq.len(), 5);
        let c = select_validators(&set, &Seed32([4; 32]), 5, 3).unwrap();
        assert_ne!(a, c, "a different seed draws a different committee");
    }

    #[test]
    fn errors() {
        let set = pks(3);
        assert!(matches!(
            select_validators(&set, &Seed32([0; 32]), 5, 3),
            Err(SelectError::NotEnoughValidators { .. })
        ));
        assert!(matches!(
            select_validators(&set, &Seed32([0; 32]), 3, 4),
            Err(SelectError::BadQuorum { .. })
        ));
    }

    /// Over many seeds each of 10 candidates is picked for a 3-seat committee about 30% of the
    /// time: the ranking has no bias towards any key.
    #[test]
    fn roughly_uniform() {
        let set = pks(10);
        let mut counts = std::collections::BTreeMap::new();
        let trials = 3000u32;
        for t in 0..trials {
            let seed = round_seed(&RunId::new("r").unwrap(), u64::from(t), &BlobHash([0; 32]));
            for pk in select_validators(&set, &seed, 3, 2).unwrap() {
                *counts.entry(pk).or_insert(0u32) += 1;
            }
        }
        for (_, c) in counts {
            let frac = f64::from(c) / f64::from(trials);
            assert!((0.25..0.35).contains(&frac), "frac {frac}");
        }
    }
}
