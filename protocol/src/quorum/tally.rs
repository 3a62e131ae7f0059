//! Tally of a submission's attestations, with the score tolerance and equivocation evidence.
//!
//! Spec: specs/L2T-04-attestation.md#tally

use std::collections::BTreeMap;

use nostr::PublicKey;

use super::attestation::{AttestationError, Phase, SignedAttestation};
use crate::events::canonical::{CanonError, MapReader, MapWriter};
use crate::events::ids::{BlobHash, RunId, Score, Seed32, SubmissionId};

/// Absolute part of the default score tolerance, in millionths (1e-4 nats of loss reduction).
///
/// candle's CPU kernels give bit-identical losses on one machine but may differ in the last bits
/// across CPUs (reference/upstream-apis.md §10); 1e-4 nats is far above that noise and far below a
/// useful loss reduction.
pub const DEFAULT_TOLERANCE_ABS_MICRO: i64 = 100;
/// Relative part of the default score tolerance, in parts per million of the median (1%).
pub const DEFAULT_TOLERANCE_REL_PPM: i64 = 10_000;

/// Score tolerance: a score `s` agrees with the median `m` when
/// `|s − m| ≤ max(abs_micro, |m| · rel_ppm / 10⁶)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tolerance {
    /// Absolute tolerance in millionths.
    pub abs_micro: i64,
    /// Relative tolerance in parts per million.
    pub rel_ppm: i64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            abs_micro: DEFAULT_TOLERANCE_ABS_MICRO,
            rel_ppm: DEFAULT_TOLERANCE_REL_PPM,
        }
    }
}

impl Tolerance {
    /// Whether `s` agrees with median `m`.
    pub fn agrees(&self, s: Score, m: Score) -> bool {
        let m = i128::from(m.0);
        let diff = (i128::from(s.0) - m).abs();
        let rel = m.abs() * i128::from(self.rel_ppm) / 1_000_000;
        diff <= i128::from(self.abs_micro).max(rel)
    }
}

/// What every counted attestation must bind.
#[derive(Clone, Debug)]
pub struct TallyContext<'a> {
    /// Run.
    pub run_id: &'a RunId,
    /// Round.
    pub round: u64,
    /// Phase.
    pub phase: Phase,
    /// Submission.
    pub submission: SubmissionId,
    /// Checkpoint the submission applies to.
    pub checkpoint: BlobHash,
    /// The submitted blob.
    pub gradient: BlobHash,
    /// The evaluation seed the round prescribes for this submission.
    pub eval_seed: Seed32,
    /// The round's selected validators.
    pub validators: &'a [PublicKey],
    /// Quorum threshold.
    pub k: usize,
    /// Score tolerance.
    pub tolerance: Tolerance,
}

/// Why an attestation was not counted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exclusion {
    /// Its validator is not in the round's committee.
    NotSelected,
    /// It names another run, round, phase, submission, checkpoint, blob or eval seed.
    WrongBinding(&'static str),
    /// Its validator signed two conflicting attestations (see the evidence list).
    Equivocated,
}

/// Result of a tally.
#[derive(Clone, Debug)]
pub struct Tally {
    counted: BTreeMap<PublicKey, SignedAttestation>,
    excluded: Vec<(PublicKey, Exclusion)>,
    equivocations: Vec<EquivocationEvidence>,
    k: usize,
    tolerance: Tolerance,
}

/// Count the attestations in `atts` for the submission described by `ctx`.
///
/// Attestations are already signature-checked ([`SignedAttestation`] cannot exist otherwise).
/// Exact duplicates count once; two different bodies from one validator for the same slot are
/// equivocation: both are dropped and the pair becomes evidence.
pub fn tally(ctx: &TallyContext<'_>, atts: &[SignedAttestation]) -> Tally {
    let mut by_validator: BTreeMap<PublicKey, SignedAttestation> = BTreeMap::new();
    let mut excluded = Vec::new();
    let mut equivocations = Vec::new();
    let mut equivocators = std::collections::BTreeSet::new();
    for a in atts {
        let b = a.body();
        let pk = a.validator();
        if !ctx.validators.contains(&pk) {
            excluded.push((pk, Exclusion::NotSelected));
            continue;
        }
        let wrong = if &b.run_id != ctx.run_id {
            Some("run_id")
        } else if b.round != ctx.round {
            Some("round")
        } else if b.phase != ctx.phase {
            Some("phase")
        } else if b.submission != ctx.submission {
            Some("submission")
        } else if b.checkpoint != ctx.checkpoint {
            Some("checkpoint")
        } else if b.gradient != ctx.gradient {
            Some("gradient")
        } else if b.eval_seed != ctx.eval_seed {
            Some("eval_seed")
        } else {
            None
        };
        if let Some(w) = wrong {
            excluded.push((pk, Exclusion::WrongBinding(w)));
            continue;
        }
        if equivocators.contains(&pk) {
            continue;
        }
        match by_validator.get(&pk) {
            Some(prev) if prev.body() == b => {}
            Some(prev) => {
                if let Some(ev) = EquivocationEvidence::new(prev.clone(), a.clone()) {
                    equivocations.push(ev);
                }
                by_validator.remove(&pk);
                equivocators.insert(pk);
                excluded.push((pk, Exclusion::Equivocated));
            }
            None => {
                by_validator.insert(pk, a.clone());
            }
        }
    }
    Tally {
        counted: by_validator,
        excluded,
        equivocations,
        k: ctx.k,
        tolerance: ctx.tolerance,
    }
}

impl Tally {
    /// Attestations that count, one per validator.
    pub fn counted(&self) -> impl Iterator<Item = &SignedAttestation> {
        self.counted.values()
    }
    /// Attestations that do not count, and why.
    pub fn excluded(&self) -> &[(PublicKey, Exclusion)] {
        &self.excluded
    }
    /// Equivocation evidence found while tallying.
    pub fn equivocations(&self) -> &[EquivocationEvidence] {
        &self.equivocations
    }

    /// Number of counted `Accept` attestations with score at least `threshold`.
    pub fn accepts_at(&self, threshold: Score) -> usize {
        self.counted
            .values()
            .filter(|a| a.body().verdict.is_accept() && a.body().score >= threshold)
            .count()
    }

    /// Whether at least `k` validators accept with score at least `threshold` (a tranche with
    /// this threshold is released).
    pub fn passes(&self, threshold: Score) -> bool {
        self.accepts_at(threshold) >= self.k
    }

    /// Whether the submission has a passing quorum (at least `k` `Accept` verdicts); exactly
    /// these submissions are merged into the next checkpoint.
    pub fn quorum_accepts(&self) -> bool {
        self.passes(Score(i64::MIN))
    }

    /// Median of the counted scores (lower median for an even count).
    pub fn median(&self) -> Option<Score> {
        let mut s: Vec<Score> = self.counted.values().map(|a| a.body().score).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_unstable();
        Some(s[(s.len() - 1) / 2])
    }

    /// Validators whose score agrees with the median within the tolerance: they earn the
    /// validation fee.
    pub fn within_tolerance(&self) -> Vec<PublicKey> {
        let Some(m) = self.median() else {
            return Vec::new();
        };
        self.counted
            .iter()
            .filter(|(_, a)| self.tolerance.agrees(a.body().score, m))
            .map(|(pk, _)| *pk)
            .collect()
    }

    /// Validators whose score disagrees with the median: no fee, flagged for the simulator's
    /// lazy-validator detection.
    pub fn outliers(&self) -> Vec<PublicKey> {
        let ok = self.within_tolerance();
        self.counted
            .keys()
            .filter(|pk| !ok.contains(pk))
            .copied()
            .collect()
    }
}

/// Cap on encoded equivocation evidence.
pub const MAX_EQUIVOCATION_BYTES: usize = 2 * super::attestation::MAX_ATTESTATION_BYTES + 64;

/// Two attestations signed by one validator for the same (run, round, phase, submission) with
/// different contents. Anyone can check it with [`EquivocationEvidence::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EquivocationEvidence {
    a: SignedAttestation,
    b: SignedAttestation,
}

/// Error checking equivocation evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EquivocationError {
    /// Not canonical CBOR of the right shape, or a bad inner attestation.
    #[error("evidence encoding: {0}")]
    Attestation(#[from] AttestationError),
    /// The two attestations do not conflict (different validator or slot, or identical bodies).
    #[error("the two attestations do not conflict")]
    NoConflict,
}

impl From<CanonError> for EquivocationError {
    fn from(e: CanonError) -> Self {
        Self::Attestation(e.into())
    }
}

impl EquivocationEvidence {
    /// Evidence if `a` and `b` conflict, in a canonical order; `None` otherwise.
    pub fn new(a: SignedAttestation, b: SignedAttestation) -> Option<Self> {
        if a.body().slot() != b.body().slot() || a.body() == b.body() {
            return None;
        }
        let (a, b) = if a.encode() <= b.encode() {
            (a, b)
        } else {
            (b, a)
        };
        Some(Self { a, b })
    }

    /// The validator that equivocated.
    pub fn validator(&self) -> PublicKey {
        self.a.validator()
    }

    /// The two attestations.
    pub fn pair(&self) -> (&SignedAttestation, &SignedAttestation) {
        (&self.a, &self.b)
    }

    /// Canonical encoding `{0: 1, 1: a, 2: b}`.
    pub fn encode(&self) -> Vec<u8> {
        MapWriter::new(1)
            .bytes(1, &self.a.encode())
            .bytes(2, &self.b.encode())
            .finish()
    }

    /// Decode and check: both signatures verify, same validator and slot, different bodies.
    pub fn decode(b: &[u8]) -> Result<Self, EquivocationError> {
        let r = MapReader::decode(b, MAX_EQUIVOCATION_BYTES, &[1, 2], &[1])?;
        let a = SignedAttestation::decode(r.bytes(1)?)?;
        let b = SignedAttestation::decode(r.bytes(2)?)?;
        Self::new(a, b).ok_or(EquivocationError::NoConflict)
    }
}
