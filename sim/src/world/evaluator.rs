//! `FakeBlobs` and `FakeEvaluator`: submissions' blobs as ground truth (who trained it, its
//! true quality, its norm) and the deterministic evaluation validators run on them, for the fast
//! mode (the real mode scores candle models on held-out data).
//!
//! An honest validator's score is the blob's true quality plus a noise term drawn from
//! `sha256(eval seed ‖ validator key)`, so two runs with one seed agree and validators of one
//! submission differ only by the configured noise. The assigned-data check (Templar's
//! assigned-vs-random test) is modelled by the blob's origin: an update presented by anyone but
//! the peer that trained it is `Copied`.
//!
//! Spec: specs/L2T-12-sim.md#fake-evaluator

use std::collections::{BTreeMap, BTreeSet};

use l402_protocol::events::{BlobHash, Score, Seed32};
use l402_protocol::quorum::{RejectCode, Verdict};
use nostr::PublicKey;

use super::ledger::AccountId;

/// Largest update norm (relative to an honest update, in thousandths) validators accept.
pub const MAX_NORM_MILLI: u64 = 3_000;

/// The truth about a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobTruth {
    /// The actor that trained it.
    pub origin: AccountId,
    /// True held-out loss reduction, in millionths (negative = harmful).
    pub quality: i64,
    /// Norm relative to an honest update, in thousandths.
    pub norm_milli: u64,
}

#[derive(Clone, Debug)]
struct BlobRecord {
    truth: BlobTruth,
    /// Actors holding the bytes (the origin, then validators that fetched it).
    holders: BTreeSet<AccountId>,
    /// Keys a holder agreed to serve it to.
    released_to: BTreeSet<PublicKey>,
    /// Holders that serve it with a flipped byte, and the keys each spares (A12).
    corrupting: BTreeMap<AccountId, BTreeSet<PublicKey>>,
}

/// The outcome of [`FakeBlobs::fetch_from`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// The provider that completed it (`None`: no provider could).
    pub from: Option<AccountId>,
    /// Providers whose bytes failed verification, in the order tried.
    pub corrupt: Vec<AccountId>,
}

/// The blob layer: who holds which blob and to whom it was released (commit-reveal).
#[derive(Clone, Debug, Default)]
pub struct FakeBlobs {
    blobs: BTreeMap<BlobHash, BlobRecord>,
}

impl FakeBlobs {
    /// Record a freshly trained blob held by its origin.
    pub fn add(&mut self, hash: BlobHash, truth: BlobTruth) {
        let origin = truth.origin;
        self.blobs.insert(
            hash,
            BlobRecord {
                truth,
                holders: [origin].into(),
                released_to: BTreeSet::new(),
                corrupting: BTreeMap::new(),
            },
        );
    }

    /// Record a blob `holder` built from others' work (a copycat's, an ALIE colluder's): its
    /// truth names the peer whose training it came from, but `holder` has the bytes.
    pub fn add_derived(&mut self, hash: BlobHash, truth: BlobTruth, holder: AccountId) {
        self.blobs.insert(
            hash,
            BlobRecord {
                truth,
                holders: [holder].into(),
                released_to: BTreeSet::new(),
                corrupting: BTreeMap::new(),
            },
        );
    }

    /// `holder` serves `hash` with a flipped byte to everyone but `spared` (a corrupting
    /// provider).
    pub fn corrupt(&mut self, holder: AccountId, hash: &BlobHash, spared: &[PublicKey]) {
        if let Some(b) = self.blobs.get_mut(hash) {
            b.corrupting
                .entry(holder)
                .or_default()
                .extend(spared.iter().copied());
        }
    }

    /// Who holds `hash`, in id order.
    pub fn holders(&self, hash: &BlobHash) -> impl Iterator<Item = AccountId> + '_ {
        self.blobs
            .get(hash)
            .into_iter()
            .flat_map(|b| b.holders.iter().copied())
    }

    /// `who` (key `pk`) fetches `hash` from `providers` in order, as the node's fetcher does:
    /// a provider that does not hold it (or may not serve it to `pk`) is skipped, one that serves
    /// corrupt bytes is caught by verification and the next one tried; the first honest holder
    /// completes it and `who` holds it too.
    pub fn fetch_from(
        &mut self,
        who: AccountId,
        pk: &PublicKey,
        hash: &BlobHash,
        providers: &[AccountId],
    ) -> Fetched {
        let mut out = Fetched::default();
        let Some(b) = self.blobs.get_mut(hash) else {
            return out;
        };
        if b.holders.contains(&who) {
            out.from = Some(who);
            return out;
        }
        if !b.released_to.contains(pk) {
            return out;
        }
        for p in providers {
            if !b.holders.contains(p) {
                continue;
            }
            if b.corrupting
                .get(p)
                .is_some_and(|spared| !spared.contains(pk))
            {
                out.corrupt.push(*p);
                continue;
            }
            b.holders.insert(who);
            out.from = Some(*p);
            break;
        }
        out
    }

    /// The truth about a blob.
    pub fn truth(&self, hash: &BlobHash) -> Option<&BlobTruth> {
        self.blobs.get(hash).map(|b| &b.truth)
    }

    /// `from` serves `hash` to `to` from now on; a no-op unless `from` holds the bytes (a
    /// free-rider that only saw the hash on Nostr has nothing to serve).
    pub fn release(&mut self, from: AccountId, hash: &BlobHash, to: &[PublicKey]) -> bool {
        match self.blobs.get_mut(hash) {
            Some(b) if b.holders.contains(&from) => {
                b.released_to.extend(to.iter().copied());
                true
            }
            _ => false,
        }
    }

    /// `who` (key `pk`) fetches `hash`: succeeds if it already holds it or it was released to
    /// `pk`; the fetcher then holds it too.
    pub fn fetch(&mut self, who: AccountId, pk: &PublicKey, hash: &BlobHash) -> Option<BlobTruth> {
        let b = self.blobs.get_mut(hash)?;
        if b.holders.contains(&who) || b.released_to.contains(pk) {
            b.holders.insert(who);
            Some(b.truth.clone())
        } else {
            None
        }
    }
}

/// The deterministic evaluation.
#[derive(Clone, Copy, Debug)]
pub struct FakeEvaluator {
    /// Honest validators' noise bound, in millionths.
    pub noise: i64,
}

impl FakeEvaluator {
    /// Noise of validator `pk` on the batch `eval_seed`, uniform in `±noise`.
    pub fn noise_of(&self, eval_seed: &Seed32, pk: &PublicKey) -> i64 {
        if self.noise == 0 {
            return 0;
        }
        let mut h = blake3::Hasher::new();
        h.update(b"l402-sim/eval-noise/v1");
        h.update(&eval_seed.0);
        h.update(&pk.to_bytes());
        let x = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]));
        let span = 2 * self.noise as u64 + 1;
        (x % span) as i64 - self.noise
    }

    /// What an honest evaluation of `truth`, submitted by `submitter`, gives with `noise`.
    pub fn judge(truth: &BlobTruth, submitter: AccountId, noise: i64) -> (Score, Verdict) {
        if truth.origin != submitter {
            return (Score(0), Verdict::Reject(RejectCode::Copied));
        }
        let score = Score(truth.quality.saturating_add(noise));
        // An all-zero update (norm 0) is below the smallest norm that passes.
        if truth.norm_milli == 0 || truth.norm_milli > MAX_NORM_MILLI {
            return (score, Verdict::Reject(RejectCode::NormOutOfRange));
        }
        if score.0 < 0 {
            return (score, Verdict::Reject(RejectCode::LossIncreased));
        }
        (score, Verdict::Accept)
    }

    /// An honest validator's evaluation (the blob fetched, or `None` if unavailable).
    pub fn evaluate(
        &self,
        truth: Option<&BlobTruth>,
        submitter: AccountId,
        eval_seed: &Seed32,
        validator: &PublicKey,
    ) -> (Score, Verdict) {
        match truth {
            None => (Score(0), Verdict::Reject(RejectCode::Unavailable)),
            Some(t) => Self::judge(t, submitter, self.noise_of(eval_seed, validator)),
        }
    }

    /// The noise-free reference anyone can recompute from `(checkpoint, blob, eval seed)`: what
    /// an audit compares signed attestations against.
    pub fn reference(truth: &BlobTruth, submitter: AccountId) -> (Score, Verdict) {
        Self::judge(truth, submitter, 0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nostr::{Keys, SecretKey};

    #[test]
    fn evaluation_is_deterministic_and_bounded() {
        let e = FakeEvaluator { noise: 40 };
        let pk = Keys::new(SecretKey::from_slice(&[7; 32]).unwrap()).public_key();
        let t = BlobTruth {
            origin: 1,
            quality: 1000,
            norm_milli: 1000,
        };
        let a = e.evaluate(Some(&t), 1, &Seed32([1; 32]), &pk);
        assert_eq!(a, e.evaluate(Some(&t), 1, &Seed32([1; 32]), &pk));
        assert!((a.0 .0 - 1000).abs() <= 40);
        assert_eq!(a.1, Verdict::Accept);
        assert_eq!(
            e.evaluate(Some(&t), 2, &Seed32([1; 32]), &pk).1,
            Verdict::Reject(RejectCode::Copied)
        );
        let big = BlobTruth {
            norm_milli: 10_000,
            ..t.clone()
        };
        assert_eq!(
            FakeEvaluator::reference(&big, 1).1,
            Verdict::Reject(RejectCode::NormOutOfRange)
        );
    }

    #[test]
    fn a_corrupt_provider_is_skipped_for_the_next_holder() {
        let pk = |i: u8| Keys::new(SecretKey::from_slice(&[i; 32]).unwrap()).public_key();
        let t = BlobTruth {
            origin: 1,
            quality: 10,
            norm_milli: 1000,
        };
        let mut b = FakeBlobs::default();
        let h = BlobHash([9; 32]);
        b.add(h, t);
        b.release(1, &h, &[pk(2), pk(3)]);
        b.corrupt(1, &h, &[pk(2)]);
        // The spared validator gets honest bytes from the author and holds them.
        assert_eq!(b.fetch_from(2, &pk(2), &h, &[1]).from, Some(1));
        // The coordinator (not spared) catches the author's bytes and completes from 2.
        let got = b.fetch_from(3, &pk(3), &h, &[1, 2]);
        assert_eq!((got.from, got.corrupt), (Some(2), vec![1]));
        // With the author the only holder, nobody else completes it.
        let mut alone = FakeBlobs::default();
        alone.add(h, b.truth(&h).unwrap().clone());
        alone.release(1, &h, &[pk(3)]);
        alone.corrupt(1, &h, &[]);
        assert_eq!(alone.fetch_from(3, &pk(3), &h, &[1]).from, None);
    }

    #[test]
    fn copies_cannot_be_served_by_the_copier() {
        let mut b = FakeBlobs::default();
        let v = Keys::new(SecretKey::from_slice(&[7; 32]).unwrap()).public_key();
        let h = BlobHash([1; 32]);
        b.add(
            h,
            BlobTruth {
                origin: 1,
                quality: 5,
                norm_milli: 1000,
            },
        );
        assert!(!b.release(2, &h, &[v]));
        assert!(b.fetch(9, &v, &h).is_none());
        assert!(b.release(1, &h, &[v]));
        assert!(b.fetch(9, &v, &h).is_some());
    }
}
