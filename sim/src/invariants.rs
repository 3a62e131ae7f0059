//! The global invariants checked after every run (test-matrix 7.2), as typed violations that
//! carry the seed so a failure can be replayed.
//!
//! Spec: specs/L2T-12-sim.md#invariants

use serde::Serialize;

use crate::actors::ActorKind;
use crate::report::Report;
use crate::world::HtlcState;

/// Largest relative excess of the final held-out loss over the same seed's attack-free run
/// (`--compare-clean`, both modes).
pub const LOSS_GAP_MAX: f64 = 0.05;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// Sats vanished or appeared: `minted ≠ balances + held`, or `locked ≠ settled + refunded +
    /// held` (7.2.1).
    #[error("money not conserved: lost {lost_msat} msat, unaccounted {unaccounted_msat} msat")]
    MoneyNotConserved {
        /// `minted − (balances + held)`.
        lost_msat: i128,
        /// `locked − (settled + refunded + held)`.
        unaccounted_msat: i128,
    },
    /// HTLCs held past their expiry height, or still held at the end of a completed run
    /// (7.2.1: stuck = 0).
    #[error("{stuck} HTLC(s) stuck past expiry, {still_held} still held at the end")]
    Stuck {
        /// Held past expiry.
        stuck: u64,
        /// Held at the end.
        still_held: u64,
    },
    /// The ledger refused a claim (wrong preimage or late): a worker tried to claim what it
    /// could not.
    #[error("{0} claim(s) refused by the ledger")]
    RefusedClaims(u64),
    /// An HTLC expired although its worker was up the whole time (the worker must fail back
    /// before the deadline).
    #[error("round {round}: HTLC {payment_hash} of actor {payee} expired while the worker was up")]
    ExpiredWhileUp {
        /// Round.
        round: u64,
        /// Worker.
        payee: u32,
        /// Hash.
        payment_hash: String,
    },
    /// Bad work (copy, poison, junk) was paid although fewer than `k` committee members were
    /// lazy or colluding (7.2.2).
    #[error(
        "round {round}: {held_msat} msat paid to {kind:?} actor {payee} for bad work with only \
         {dishonest} dishonest validator(s) < k = {k}"
    )]
    PaidForBadWork {
        /// Round.
        round: u64,
        /// Paid actor.
        payee: u32,
        /// Its kind.
        kind: ActorKind,
        /// Amount.
        held_msat: u64,
        /// Lazy + colluding validators in the committee.
        dishonest: usize,
        /// Quorum.
        k: usize,
    },
    /// An honest tranche whose quorum formed was not settled (7.2.3).
    #[error(
        "round {round}: honest actor {payee} tranche {tranche} had a quorum but ended {state:?}"
    )]
    HonestUnpaid {
        /// Round.
        round: u64,
        /// Worker.
        payee: u32,
        /// Tranche.
        tranche: u32,
        /// Final state.
        state: HtlcState,
    },
    /// A machine acted on a replayed event (A2: accepted replays = 0).
    #[error("{0} replayed event(s) were acted on")]
    ReplayAccepted(u64),
    /// An equivocating validator that signed conflicting initial attestations before the attest
    /// deadline is not named in equivocation evidence, or a validator that did not equivocate
    /// is (H9).
    #[error(
        "{unnamed} equivocating validator(s) not named in evidence, {framed} honest one(s) named"
    )]
    EquivocationUnproven {
        /// Equivocators that signed a conflicting attestation but are not named.
        unnamed: u64,
        /// Honest validators named.
        framed: u64,
    },
    /// The coordinator's audit convicted an honest validator (its signed score agreed with the
    /// deterministic reference, yet wrong-score evidence names it).
    #[error("{0} honest validator(s) named in wrong-score evidence")]
    HonestConvicted(u64),
    /// A merged blob no holder could serve with verified bytes (A12: a corrupting provider
    /// must not be able to stall the merge while an honest holder has the blob).
    #[error("{0} merged blob(s) could not be fetched with verified bytes")]
    MergeUnavailable(u64),
    /// A checkpoint event's merged list (fetched by hash) is not what was aggregated.
    #[error("{0} checkpoint(s) name a merged list that does not match the aggregate")]
    MergedListMismatch(u64),
    /// A persisted state failed to restore, or restored to different bytes (F1).
    #[error("{0} restore error(s) after crashes")]
    RestoreFailed(u64),
    /// Fewer rounds completed than asked for (liveness).
    #[error("only {completed} of {wanted} rounds completed: {}", why.join("; "))]
    Stalled {
        /// Completed.
        completed: u64,
        /// Wanted.
        wanted: u64,
        /// What stopped them ([`crate::report::Report::stall_reasons`]).
        why: Vec<String>,
    },
    /// Rounds with honest peers in which no honest submission was published (liveness: a run
    /// that does nothing cannot pass vacuously).
    #[error("no honest submission in round(s) {0:?}")]
    Idle(Vec<u64>),
    /// With `--compare-clean`: the final held-out loss is more than [`LOSS_GAP_MAX`] above
    /// the same seed's run without adversaries.
    #[error(
        "final held-out loss {:.4} vs {:.4} without adversaries: {:+.2} % (limit +5 %)",
        *attacked_micro as f64 / 1e6,
        *clean_micro as f64 / 1e6,
        *gap_ppm as f64 / 1e4
    )]
    LossGap {
        /// Final loss with the adversaries, in millionths.
        attacked_micro: i64,
        /// Final loss without them, in millionths.
        clean_micro: i64,
        /// `(attacked − clean) / clean`, in millionths.
        gap_ppm: i64,
    },
    /// Re-running the seed gave another event-log hash (7.2.5).
    #[error("not replayable: event-log hash {first} then {second}")]
    NotReplayable {
        /// First run.
        first: String,
        /// Second run.
        second: String,
    },
}

/// A run broke at least one invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error(
    "scenario {scenario:?} seed {seed}: {} invariant violation(s): {}\n  replay with: \
     l402-sim run <scenario.toml> --seed {seed} --rounds {rounds} (or L2T_SEED={seed})",
    violations.len(),
    violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
)]
pub struct InvariantError {
    /// Scenario.
    pub scenario: String,
    /// Seed that reproduces it.
    pub seed: u64,
    /// Rounds of the run.
    pub rounds: u64,
    /// What broke.
    pub violations: Vec<Violation>,
}

/// `(attacked − clean) / clean` of two held-out losses; `None` unless `clean > 0`.
pub fn relative_gap(attacked: f64, clean: f64) -> Option<f64> {
    (clean > 0.0).then(|| (attacked - clean) / clean)
}

/// [`relative_gap`] of the final held-out losses (0 when the clean one is not positive).
pub fn loss_gap(attacked: &Report, clean: &Report) -> f64 {
    relative_gap(attacked.final_loss(), clean.final_loss()).unwrap_or(0.0)
}

/// The loss invariant of `--compare-clean`: the attacked run's final held-out loss is at most
/// [`LOSS_GAP_MAX`] above the attack-free run's of the same seed.
pub fn check_loss_gap(attacked: &Report, clean: &Report) -> Result<(), InvariantError> {
    let gap = loss_gap(attacked, clean);
    if gap <= LOSS_GAP_MAX {
        return Ok(());
    }
    let micro = |x: f64| (x * 1e6).round() as i64;
    Err(InvariantError {
        scenario: attacked.scenario.clone(),
        seed: attacked.seed,
        rounds: attacked.rounds_wanted,
        violations: vec![Violation::LossGap {
            attacked_micro: micro(attacked.final_loss()),
            clean_micro: micro(clean.final_loss()),
            gap_ppm: micro(gap),
        }],
    })
}

/// Every violation of one run's report (empty = all invariants hold).
pub fn violations(r: &Report) -> Vec<Violation> {
    let mut v = Vec::new();
    let h = &r.htlc;
    if h.lost_msat != 0 || h.unaccounted_msat != 0 {
        v.push(Violation::MoneyNotConserved {
            lost_msat: h.lost_msat,
            unaccounted_msat: h.unaccounted_msat,
        });
    }
    let completed = r.rounds_completed >= r.rounds_wanted;
    if h.stuck > 0 || (completed && h.still_held > 0) {
        v.push(Violation::Stuck {
            stuck: h.stuck,
            still_held: h.still_held,
        });
    }
    if h.refused_claims > 0 {
        v.push(Violation::RefusedClaims(h.refused_claims));
    }
    for f in &r.htlcs {
        if f.state == HtlcState::ExpiredRefunded && !f.payee_was_down {
            v.push(Violation::ExpiredWhileUp {
                round: f.round,
                payee: f.payee,
                payment_hash: f.payment_hash.clone(),
            });
        }
        if f.state == HtlcState::Settled && f.bad_work && f.dishonest_in_committee < f.k {
            v.push(Violation::PaidForBadWork {
                round: f.round,
                payee: f.payee,
                kind: f.payee_kind,
                held_msat: f.held_msat,
                dishonest: f.dishonest_in_committee,
                k: f.k,
            });
        }
        if f.payee_kind == ActorKind::HonestPeer
            && f.quorum_formed
            && !f.dealer_blocked
            && f.state != HtlcState::Settled
        {
            v.push(Violation::HonestUnpaid {
                round: f.round,
                payee: f.payee,
                tranche: f.tranche,
                state: f.state,
            });
        }
    }
    if r.detection.replays_accepted > 0 {
        v.push(Violation::ReplayAccepted(r.detection.replays_accepted));
    }
    let d = &r.detection;
    if d.merge_unavailable > 0 {
        v.push(Violation::MergeUnavailable(d.merge_unavailable));
    }
    if d.honest_convicted > 0 {
        v.push(Violation::HonestConvicted(d.honest_convicted));
    }
    if d.equivocators_unnamed > 0 || d.honest_named_equivocating > 0 {
        v.push(Violation::EquivocationUnproven {
            unnamed: d.equivocators_unnamed,
            framed: d.honest_named_equivocating,
        });
    }
    if r.faults.merged_list_errors > 0 {
        v.push(Violation::MergedListMismatch(r.faults.merged_list_errors));
    }
    if r.faults.restore_errors > 0 {
        v.push(Violation::RestoreFailed(r.faults.restore_errors));
    }
    if !r.idle_rounds.is_empty() {
        v.push(Violation::Idle(r.idle_rounds.clone()));
    }
    if !completed {
        v.push(Violation::Stalled {
            completed: r.rounds_completed,
            wanted: r.rounds_wanted,
            why: r.stall_reasons.clone(),
        });
    }
    v
}

/// Check one run's report.
pub fn check(r: &Report) -> Result<(), InvariantError> {
    let violations = violations(r);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(InvariantError {
            scenario: r.scenario.clone(),
            seed: r.seed,
            rounds: r.rounds_wanted,
            violations,
        })
    }
}

/// Compare the event-log hashes of two runs of one seed.
pub fn check_replay(first: &Report, second: &Report) -> Result<(), InvariantError> {
    if first.event_log_hash == second.event_log_hash {
        return Ok(());
    }
    Err(InvariantError {
        scenario: first.scenario.clone(),
        seed: first.seed,
        rounds: first.rounds_wanted,
        violations: vec![Violation::NotReplayable {
            first: first.event_log_hash.clone(),
            second: second.event_log_hash.clone(),
        }],
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::Simulation;
    use crate::scenario::Scenario;
    use crate::world::ledger::LedgerFault;

    fn small() -> Scenario {
        Scenario::from_toml(
            "name = \"checker\"\nrounds = 2\n[peers]\nhonest = 3\n[validators]\npool = 3\n\
             committee = 3\nk = 2",
        )
        .unwrap()
    }

    #[test]
    fn a_correct_ledger_passes() {
        let r = Simulation::new(&small(), 5).unwrap().run();
        check(&r).unwrap();
        assert!(r.htlc.settled > 0);
    }

    #[test]
    fn conservation_check_catches_a_broken_ledger() {
        for (fault, what) in [
            (LedgerFault::DoubleCredit, "double credit"),
            (LedgerFault::ForgetRefund, "forgotten refund"),
        ] {
            let mut sim = Simulation::new(&small(), 5).unwrap();
            sim.ledger.fault = Some(fault);
            let r = sim.run();
            let err = check(&r).unwrap_err();
            assert!(
                err.violations
                    .iter()
                    .any(|v| matches!(v, Violation::MoneyNotConserved { .. })),
                "{what} not caught: {err}"
            );
            assert_eq!(err.seed, 5);
            assert!(err.to_string().contains("--seed 5"), "{err}");
        }
    }

    #[test]
    fn stuck_idle_and_stalled_runs_are_flagged() {
        let mut r = Simulation::new(&small(), 6).unwrap().run();
        check(&r).unwrap();
        r.htlc.stuck = 1;
        assert!(matches!(
            check(&r).unwrap_err().violations[0],
            Violation::Stuck { stuck: 1, .. }
        ));
        r.htlc.stuck = 0;
        r.idle_rounds = vec![2];
        assert!(matches!(&check(&r).unwrap_err().violations[0], Violation::Idle(v) if v == &[2]));
        r.idle_rounds.clear();
        r.rounds_completed = 1;
        r.stall_reasons = vec!["round 2: the checkpoint was refused".into()];
        let e = check(&r).unwrap_err().violations[0].to_string();
        assert!(
            e.ends_with("rounds completed: round 2: the checkpoint was refused"),
            "{e}"
        );
        assert!(matches!(
            check(&r).unwrap_err().violations[0],
            Violation::Stalled {
                completed: 1,
                wanted: 2,
                ..
            }
        ));
    }

    #[test]
    fn payment_invariants_catch_wrong_outcomes() {
        let mut r = Simulation::new(&small(), 7).unwrap().run();
        check(&r).unwrap();
        let settled = r
            .htlcs
            .iter()
            .position(|h| h.state == HtlcState::Settled)
            .unwrap();
        // Pretend the settled tranche was bad work with an honest committee.
        r.htlcs[settled].bad_work = true;
        assert!(matches!(
            check(&r).unwrap_err().violations[0],
            Violation::PaidForBadWork { .. }
        ));
        r.htlcs[settled].bad_work = false;
        // Pretend a quorum-backed honest tranche was failed back.
        r.htlcs[settled].state = HtlcState::FailedBack;
        r.htlcs[settled].quorum_formed = true;
        assert!(matches!(
            check(&r).unwrap_err().violations[0],
            Violation::HonestUnpaid { .. }
        ));
    }
}
