//! Seeds that assign data: who trains on what, and what a validator evaluates on.
//!
//! Spec: specs/L2T-10-training.md#seeds
//!
//! Every seed is a BLAKE3 derived key (`blake3::derive_key` with a per-purpose context string)
//! over fixed-width inputs, so anyone can recompute a peer's shard from (run, peer key, round)
//! and a validator's batches from the round's eval seed.

/// What a derived seed is for; each purpose has its own BLAKE3 context string, so seeds of
/// different purposes never collide even for equal inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SeedDomain {
    /// A peer's training shard for one round.
    Shard,
    /// The held-out batch a validator scores on.
    HeldOut,
    /// The "random shard" of the assigned-vs-random check.
    RandomShard,
    /// Which batch of a peer's shard the assigned-data check looks at.
    CheckBatch,
    /// Initial model weights.
    Init,
    /// The synthetic language's lexicon.
    Corpus,
}

impl SeedDomain {
    /// The BLAKE3 `derive_key` context string of this domain.
    pub fn context(self) -> &'static str {
        match self {
            Self::Shard => "l402 training v1 shard",
            Self::HeldOut => "l402 training v1 held-out batch",
            Self::RandomShard => "l402 training v1 random shard",
            Self::CheckBatch => "l402 training v1 check batch",
            Self::Init => "l402 training v1 init",
            Self::Corpus => "l402 training v1 corpus",
        }
    }
}

/// Derives a 32-byte seed for `domain` from the concatenation of `parts`.
///
/// Callers pass fixed-width parts only (32-byte keys, little-endian integers), so the
/// concatenation is unambiguous.
pub fn derive(domain: SeedDomain, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(domain.context());
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// The seed of `peer`'s training shard in `round` of `run`.
pub fn shard_seed(run: &[u8; 32], peer: &[u8; 32], round: u64) -> [u8; 32] {
    derive(SeedDomain::Shard, &[run, peer, &round.to_le_bytes()])
}

/// The seed of a round's validation. It is revealed only after submissions close (how it is
/// drawn, e.g. commit–reveal, is the round protocol's business); everything a validator
/// evaluates on derives from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvalSeed(pub [u8; 32]);

impl EvalSeed {
    /// Seed of the held-out batch.
    pub fn heldout(&self) -> [u8; 32] {
        derive(SeedDomain::HeldOut, &[&self.0])
    }

    /// Seed of the random shard that the assigned-data check compares against. It is shared by
    /// every submission of the round.
    pub fn random_shard(&self) -> [u8; 32] {
        derive(SeedDomain::RandomShard, &[&self.0])
    }

    /// Which of `shard_batches` batches of `peer`'s shard the assigned-data check evaluates.
    pub fn check_batch(&self, peer: &[u8; 32], shard_batches: u32) -> u32 {
        let d = derive(SeedDomain::CheckBatch, &[&self.0, peer]);
        let x = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        // Modulo bias is below 2^-32 for any u32 modulus, irrelevant here.
        u32::try_from(x % u64::from(shard_batches.max(1))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_separate_inputs_and_domains() {
        let run = [1u8; 32];
        let (a, b) = ([2u8; 32], [3u8; 32]);
        assert_ne!(shard_seed(&run, &a, 0), shard_seed(&run, &b, 0));
        assert_ne!(shard_seed(&run, &a, 0), shard_seed(&run, &a, 1));
        assert_eq!(shard_seed(&run, &a, 7), shard_seed(&run, &a, 7));
        let e = EvalSeed([9u8; 32]);
        assert_ne!(e.heldout(), e.random_shard());
        assert!(e.check_batch(&a, 6) < 6);
        assert_eq!(e.check_batch(&a, 0), 0);
    }

    /// Test vector: pins the derivation so that other implementations can check themselves.
    #[test]
    fn shard_seed_vector() {
        let s = shard_seed(&[0u8; 32], &[0u8; 32], 0);
        let mut h = blake3::Hasher::new_derive_key("l402 training v1 shard");
        h.update(&[0u8; 72]);
        assert_eq!(s, *h.finalize().as_bytes());
        // The same values are listed in specs/L2T-10-training.md#seeds.
        assert_eq!(
            hex::encode(s),
            "3a3416414eb1b2f154cb75c5b3b3838a7d5ee47c909979b7376727816f0962a8"
        );
        let mut seed = [0u8; 32];
        seed[0] = 1;
        let e = EvalSeed(seed);
        assert_eq!(
            hex::encode(e.heldout()),
            "9bc43ffabf9d5f7a3e534553341fbe5826f2d51c400b0afac28c7378387e76f3"
        );
        assert_eq!(e.check_batch(&[0u8; 32], 6), 3);
    }
}
