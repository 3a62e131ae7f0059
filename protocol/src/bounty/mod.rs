//! The award rules of an autoresearch bounty, sans IO: which revealed diff is paid, how much,
//! and when the holdback is released.
//!
//! - **Earliest commitment wins.** Reveals are decided in commitment order (`committed_at`,
//!   then commitment event id), each once its reveal window has passed, so an agent whose
//!   commitment came first wins even if its reveal arrives second. A later commitment of a diff
//!   already decided is a copy and earns nothing.
//! - **Beat the leader by the margin.** The metric of a candidate is the quorum's median; its
//!   improvement is measured against the current leader (the baseline until something is
//!   paid). Below the bounty's margin it earns nothing and does not lead.
//! - **Pay in proportion, in whole tranches.** `pool × improvement / target`, rounded down to
//!   whole tranches of `pool / tranches`, capped at what is left of the pool. A paid diff leads:
//!   the next candidates are measured against it, so improvements stack.
//! - **Hold back.** `holdback_ppm` of each award waits for a delayed re-evaluation on fresh
//!   held-out seeds; it is released if the improvement still reaches the margin there and
//!   refunded to the sponsor otherwise.
//!
//! Spec: specs/L2T-13-bounties.md#awards

pub mod tree;

use std::collections::BTreeMap;

use nostr::{EventId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::escrow::TrancheSpec;
use crate::events::bounty::{Bounty, Direction};
use crate::events::ids::{BlobHash, Score, UnixTime};

/// Tranches of a pool when the bounty does not say.
pub const DEFAULT_TRANCHES: u32 = 10;
/// Most tranches a pool may be split into.
pub const MAX_TRANCHES: u32 = 10_000;
/// Reveal window when the bounty does not say.
pub const DEFAULT_REVEAL_WINDOW_SECS: u64 = 600;
/// Longest reveal window.
pub const MAX_REVEAL_WINDOW_SECS: u64 = 7 * 86_400;

/// A revealed diff, scored by the validator quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The agent.
    pub agent: PublicKey,
    /// The diff blob.
    pub diff: BlobHash,
    /// `created_at` of the agent's commitment event.
    pub committed_at: UnixTime,
    /// The commitment event.
    pub commitment: EventId,
    /// The quorum's median metric (millionths).
    pub metric: i64,
}

/// An award: what a candidate is paid now and what waits for the re-evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Award {
    /// The candidate.
    pub candidate: Candidate,
    /// The leader's metric it was measured against.
    pub previous: i64,
    /// Improvement over it (millionths, positive = better).
    pub improvement: i64,
    /// Whole tranches paid.
    pub tranches: u64,
    /// Paid on the quorum's release.
    pub primary_msat: u64,
    /// Paid after the re-evaluation passes.
    pub holdback_msat: u64,
}

/// What happens to a candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Paid; it leads now.
    Award(Award),
    /// The same diff was committed earlier (by this or another agent).
    Copy {
        /// The earlier commitment.
        first: EventId,
    },
    /// Does not beat the leader by the margin.
    BelowMargin {
        /// Its improvement over the leader (may be negative).
        improvement: i64,
        /// The margin.
        margin: i64,
    },
    /// Beats the leader by the margin but is worth less than one tranche.
    BelowTranche {
        /// Its improvement.
        improvement: i64,
    },
    /// Nothing of the pool is left.
    PoolExhausted,
    /// Committed after the bounty's deadline.
    Late,
}

/// The bounty's state: leader, pool left, decided diffs, pending candidates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    direction: Direction,
    pool_msat: u64,
    target: i64,
    margin: i64,
    tranches: u32,
    holdback_ppm: u32,
    deadline: UnixTime,
    reveal_window: u64,
    leader_metric: i64,
    /// Pool committed to awards (primary + holdback not refunded).
    awarded_msat: u64,
    /// First commitment per decided diff.
    decided: BTreeMap<BlobHash, EventId>,
    /// Candidates waiting for their reveal window, by (committed_at, commitment).
    pending: BTreeMap<(UnixTime, EventId), Candidate>,
}

impl Board {
    /// A board for `bounty`, whose baseline measured `baseline_metric` (the quorum's median).
    pub fn new(bounty: &Bounty, baseline_metric: i64) -> Self {
        Self {
            direction: bounty.direction,
            pool_msat: bounty.pool_msat,
            target: bounty.target_improvement.0.max(1),
            margin: bounty.margin.0.max(0),
            tranches: bounty.tranches.max(1),
            holdback_ppm: bounty.holdback_ppm.min(1_000_000),
            deadline: bounty.deadline,
            reveal_window: bounty.reveal_window_secs,
            leader_metric: baseline_metric,
            awarded_msat: 0,
            decided: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// The metric to beat.
    pub fn leader_metric(&self) -> i64 {
        self.leader_metric
    }

    /// Pool not yet awarded.
    pub fn remaining_msat(&self) -> u64 {
        self.pool_msat.saturating_sub(self.awarded_msat)
    }

    /// One tranche.
    pub fn tranche_msat(&self) -> u64 {
        self.pool_msat / u64::from(self.tranches)
    }

    /// `candidate`'s improvement over `than` (positive = better in the bounty's direction).
    pub fn improvement(&self, than: i64, candidate: i64) -> i64 {
        improvement(self.direction, than, candidate)
    }

    /// Queue a scored candidate (decided by [`Board::decide_due`]). A second candidate for the
    /// same commitment is ignored.
    pub fn submit(&mut self, c: Candidate) {
        self.pending
            .entry((c.committed_at, c.commitment))
            .or_insert(c);
    }

    /// Decide, in commitment order, every pending candidate whose reveal window has passed at
    /// `now`.
    pub fn decide_due(&mut self, now: UnixTime) -> Vec<Decision> {
        let mut out = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0.saturating_add(self.reveal_window) > now {
                break;
            }
            let c = entry.remove();
            out.push(self.decide(c));
        }
        out
    }

    fn decide(&mut self, c: Candidate) -> Decision {
        if c.committed_at > self.deadline {
            return Decision::Late;
        }
        if let Some(first) = self.decided.get(&c.diff) {
            return Decision::Copy { first: *first };
        }
        self.decided.insert(c.diff, c.commitment);
        let improvement = self.improvement(self.leader_metric, c.metric);
        if !reaches_margin(improvement, self.margin) {
            return Decision::BelowMargin {
                improvement,
                margin: self.margin,
            };
        }
        let remaining = self.remaining_msat();
        if remaining == 0 {
            return Decision::PoolExhausted;
        }
        let tranche = self.tranche_msat().max(1);
        let raw = u128::from(self.pool_msat) * improvement as u128 / self.target as u128;
        let capped = raw.min(u128::from(remaining)) as u64;
        let tranches = capped / tranche;
        if tranches == 0 {
            return Decision::BelowTranche { improvement };
        }
        let paid = tranches * tranche;
        let holdback = (u128::from(paid) * u128::from(self.holdback_ppm) / 1_000_000) as u64;
        self.awarded_msat += paid;
        let previous = self.leader_metric;
        self.leader_metric = c.metric;
        Decision::Award(Award {
            candidate: c,
            previous,
            improvement,
            tranches,
            primary_msat: paid - holdback,
            holdback_msat: holdback,
        })
    }

    /// The delayed re-evaluation of `award` on fresh held-out seeds measured the previous leader
    /// at `previous` and the awarded diff at `metric`: the holdback released, in msat. Each
    /// awarded tranche's share of the holdback is released if the re-measured improvement still
    /// earns that tranche (and reaches the margin), as the escrow's holdback tranches do
    /// ([`escrow_schedule`]); the rest returns to the pool (and to the sponsor at the end).
    pub fn settle_holdback(&mut self, award: &Award, previous: i64, metric: i64) -> u64 {
        let improvement = self.improvement(previous, metric);
        let still = if !reaches_margin(improvement, self.margin) {
            0
        } else {
            let n = u128::from(self.tranches);
            (improvement as u128 * n / self.target as u128).min(u128::from(award.tranches)) as u64
        };
        let per = award.holdback_msat / award.tranches.max(1);
        let released = if still == award.tranches {
            award.holdback_msat
        } else {
            per * still
        };
        self.awarded_msat = self
            .awarded_msat
            .saturating_sub(award.holdback_msat - released);
        released
    }
}

/// `candidate`'s improvement over `than` in `direction` (positive = better).
pub fn improvement(direction: Direction, than: i64, candidate: i64) -> i64 {
    match direction {
        Direction::Minimize => than.saturating_sub(candidate),
        Direction::Maximize => candidate.saturating_sub(than),
    }
}

/// Whether an improvement earns anything at all: positive and at least the margin. The board
/// and the validators' verdicts (below the margin: not merged) use this one rule.
pub fn reaches_margin(improvement: i64, margin: i64) -> bool {
    improvement > 0 && improvement >= margin
}

/// Most regular tranches one submission's escrow can carry: each has a holdback twin, and an
/// escrow carries at most [`crate::escrow::MAX_TRANCHES`] tranches.
pub const MAX_NETWORK_TRANCHES: u32 = (crate::escrow::MAX_TRANCHES / 2) as u32;

/// Why a bounty cannot be paid through the round escrow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// More tranches than one escrow carries.
    #[error("{0} tranches; the network escrow carries at most {MAX_NETWORK_TRANCHES}")]
    TooManyTranches(u32),
    /// Nothing of the pool is left to offer.
    #[error("the pool is exhausted")]
    PoolExhausted,
}

/// The escrow schedule of one bounty submission when `left_msat` of the pool is left: the
/// [`Board`]'s award rule as tranche thresholds on the attested score, which is the improvement
/// over the round's baseline (the leader) in millionths, positive = better.
///
/// Regular tranche `j` (1-based) pays `tranche × (1 − holdback)` and needs a score of at least
/// `max(⌈target·j/N⌉, margin, 1)`, so a quorum score `s` releases exactly the whole tranches
/// `Board` awards for an improvement `s`. Each regular tranche has a holdback twin of
/// `tranche × holdback` with the same threshold, released by the delayed re-evaluation.
/// Tranches the pool left cannot cover are not offered.
pub fn escrow_schedule(bounty: &Bounty, left_msat: u64) -> Result<Vec<TrancheSpec>, ScheduleError> {
    let n = bounty.tranches.max(1);
    if n > MAX_NETWORK_TRANCHES {
        return Err(ScheduleError::TooManyTranches(n));
    }
    let tranche = bounty.pool_msat / u64::from(n);
    let offered = (left_msat / tranche.max(1)).min(u64::from(n));
    if offered == 0 || tranche == 0 {
        return Err(ScheduleError::PoolExhausted);
    }
    let hold =
        (u128::from(tranche) * u128::from(bounty.holdback_ppm.min(1_000_000)) / 1_000_000) as u64;
    let target = i128::from(bounty.target_improvement.0.max(1));
    let threshold = |j: u64| {
        let t = (target * i128::from(j) + i128::from(n) - 1) / i128::from(n);
        Score((t as i64).max(bounty.margin.0).max(1))
    };
    let mut out: Vec<TrancheSpec> = (1..=offered)
        .filter(|_| tranche > hold)
        .map(|j| TrancheSpec {
            amount_msat: tranche - hold,
            threshold: threshold(j),
            holdback: false,
        })
        .collect();
    if hold > 0 {
        out.extend((1..=offered).map(|j| TrancheSpec {
            amount_msat: hold,
            threshold: threshold(j),
            holdback: true,
        }));
    }
    Ok(out)
}

/// The median of `samples` (the upper one of an even count); `None` if empty.
pub fn median(samples: &[i64]) -> Option<i64> {
    let mut v = samples.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ids::{RunId, Score, Seed32};
    use nostr::hashes::Hash;

    fn bounty() -> Bounty {
        Bounty {
            v: 1,
            bounty_id: RunId::new("tiny-lm").unwrap(),
            title: "t".into(),
            baseline: BlobHash([1; 32]),
            mutable_files: vec!["train.toml".into()],
            eval_command: "sh run.sh".into(),
            metric: "heldout_loss".into(),
            direction: Direction::Minimize,
            public_eval: BlobHash([2; 32]),
            heldout_commitment: Seed32([3; 32]),
            pool_msat: 1_000_000,
            target_improvement: Score(1_000_000),
            deadline: 1_000,
            diff_size_cap: 4096,
            n: 3,
            k: 2,
            holdback_ppm: 200_000,
            margin: Score(10_000),
            tranches: 10,
            reveal_window_secs: 60,
            gateway: None,
        }
    }

    fn cand(agent: u8, diff: u8, at: u64, metric: i64) -> Candidate {
        let keys = nostr::Keys::new(nostr::SecretKey::from_slice(&[agent; 32]).unwrap());
        Candidate {
            agent: keys.public_key(),
            diff: BlobHash([diff; 32]),
            committed_at: at,
            commitment: EventId::from_byte_array(
                nostr::hashes::sha256::Hash::hash(&[agent, diff, at as u8]).to_byte_array(),
            ),
            metric,
        }
    }

    #[test]
    fn pays_in_proportion_in_whole_tranches_with_holdback_and_stacks() {
        let mut b = Board::new(&bounty(), 5_000_000);
        // 0.35 of the target → 3 tranches of 100 000 msat (0.05 rounds down).
        b.submit(cand(1, 1, 10, 4_650_000));
        let d = b.decide_due(70);
        let Decision::Award(a) = &d[0] else {
            panic!("{d:?}")
        };
        assert_eq!(
            (a.tranches, a.primary_msat, a.holdback_msat),
            (3, 240_000, 60_000)
        );
        assert_eq!(b.leader_metric(), 4_650_000);
        // Improvements stack: the next is measured against the new leader.
        b.submit(cand(2, 2, 100, 4_640_000)); // 0.01 better: at the margin, below a tranche
        b.submit(cand(3, 3, 101, 4_645_000)); // 0.005 better: below the margin
        b.submit(cand(4, 4, 102, 3_000_000)); // 1.65 of the target: capped at the 700 000 left
        let d = b.decide_due(1_000);
        assert_eq!(
            d[0],
            Decision::BelowTranche {
                improvement: 10_000
            }
        );
        assert!(matches!(
            d[1],
            Decision::BelowMargin {
                improvement: 5_000,
                ..
            }
        ));
        let Decision::Award(big) = &d[2] else {
            panic!("{d:?}")
        };
        assert_eq!(big.primary_msat + big.holdback_msat, 700_000);
        assert_eq!(b.remaining_msat(), 0);
        b.submit(cand(5, 5, 103, 1_000_000));
        assert_eq!(b.decide_due(1_000), vec![Decision::PoolExhausted]);
    }

    #[test]
    fn earliest_commitment_wins_even_when_revealed_second() {
        let mut b = Board::new(&bounty(), 5_000_000);
        let copier = cand(9, 1, 20, 4_500_000);
        let original = cand(1, 1, 10, 4_500_000);
        b.submit(copier.clone()); // revealed first
        assert!(
            b.decide_due(75).is_empty(),
            "the original's window is still open"
        );
        b.submit(original.clone());
        let d = b.decide_due(80);
        assert!(matches!(&d[0], Decision::Award(a) if a.candidate == original));
        assert_eq!(
            d[1],
            Decision::Copy {
                first: original.commitment
            }
        );
        b.submit(cand(2, 2, 2_000, 1));
        assert_eq!(b.decide_due(5_000), vec![Decision::Late]);
    }

    #[test]
    fn holdback_released_only_when_the_reevaluation_passes() {
        let awarded = || {
            let mut b = Board::new(&bounty(), 5_000_000);
            b.submit(cand(1, 1, 10, 4_500_000));
            let Decision::Award(a) = b.decide_due(100).remove(0) else {
                panic!()
            };
            assert_eq!(b.remaining_msat(), 500_000);
            (b, a)
        };
        // Fresh seeds: still 0.5 better → released; the pool stays spent.
        let (mut b, a) = awarded();
        assert_eq!(b.settle_holdback(&a, 5_010_000, 4_510_000), a.holdback_msat);
        assert_eq!(b.remaining_msat(), 500_000);
        // Only 0.25 better on fresh seeds → the holdback of 3 of the 5 tranches is refunded.
        let (mut b, a) = awarded();
        assert_eq!(b.settle_holdback(&a, 5_010_000, 4_760_000), 2 * 20_000);
        assert_eq!(b.remaining_msat(), 500_000 + 3 * 20_000);
        // Overfit: no better on fresh seeds → refunded to the pool.
        let (mut b, a) = awarded();
        assert_eq!(b.settle_holdback(&a, 5_010_000, 5_005_000), 0);
        assert_eq!(b.remaining_msat(), 500_000 + a.holdback_msat);
        assert_eq!(median(&[3, 1, 2]), Some(2));
        assert_eq!(median(&[]), None);
    }

    /// The escrow schedule releases, for every score, exactly what the board awards for that
    /// improvement, and its holdback twins what the re-evaluation releases.
    #[test]
    fn escrow_schedule_releases_what_the_board_awards() {
        use crate::escrow::tranche::earned_regular_msat;
        let mut bn = bounty();
        bn.tranches = 4;
        bn.margin = Score(260_000);
        assert_eq!(
            escrow_schedule(&bounty(), 1_000_000),
            Err(ScheduleError::TooManyTranches(10))
        );
        let s = escrow_schedule(&bn, bn.pool_msat).unwrap();
        assert_eq!(s.len(), 8);
        assert_eq!(s.iter().map(|t| t.amount_msat).sum::<u64>(), bn.pool_msat);
        crate::escrow::validate_schedule(&s).unwrap();
        for improvement in [
            0, 1, 249_999, 250_000, 259_999, 260_000, 500_000, 999_999, 1_000_000, 3_000_000,
        ] {
            let mut b = Board::new(&bn, 5_000_000);
            b.submit(cand(1, 1, 10, 5_000_000 - improvement));
            let paid = match b.decide_due(100).remove(0) {
                Decision::Award(a) => {
                    let hold: u64 = s
                        .iter()
                        .filter(|t| t.holdback && Score(improvement) >= t.threshold)
                        .map(|t| t.amount_msat)
                        .sum();
                    assert_eq!(hold, a.holdback_msat, "holdback at {improvement}");
                    a.primary_msat
                }
                _ => 0,
            };
            assert_eq!(
                earned_regular_msat(&s, Score(improvement)),
                paid,
                "improvement {improvement}"
            );
        }
        // What is left of the pool bounds the tranches offered.
        assert_eq!(escrow_schedule(&bn, 600_000).unwrap().len(), 4);
        assert_eq!(
            escrow_schedule(&bn, 100_000),
            Err(ScheduleError::PoolExhausted)
        );
    }
}
