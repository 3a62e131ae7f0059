//! Running one seed (with its invariants and, optionally, the replay check) and sweeping many
//! seeds into a summary with throughput figures.
//!
//! Spec: specs/L2T-12-sim.md#sweeps

use std::time::Instant;

use serde::Serialize;

use crate::engine::Simulation;
use crate::invariants::{check, check_replay, InvariantError, Violation};
use crate::report::{HtlcTally, Report};
use crate::scenario::{Scenario, ScenarioError};

/// Run `scenario` with `seed` (and `rounds`, if given) once, on this thread.
pub fn run_one(
    scenario: &Scenario,
    seed: u64,
    rounds: Option<u64>,
) -> Result<Report, ScenarioError> {
    run_threads(scenario, seed, rounds, 1)
}

/// [`run_one`] with the machines' handling spread over `threads` threads; the report (and its
/// event-log hash) is the same for any thread count.
pub fn run_threads(
    scenario: &Scenario,
    seed: u64,
    rounds: Option<u64>,
    threads: usize,
) -> Result<Report, ScenarioError> {
    run_with_progress(scenario, seed, rounds, threads, |_| {})
}

/// [`run_threads`], telling `progress` the number of rounds checkpointed so far each time it
/// grows (for a progress bar; the run does not depend on it).
pub fn run_with_progress(
    scenario: &Scenario,
    seed: u64,
    rounds: Option<u64>,
    threads: usize,
    progress: impl FnMut(u64) + 'static,
) -> Result<Report, ScenarioError> {
    let mut sc = scenario.clone();
    if let Some(r) = rounds {
        sc.rounds = r;
    }
    let sim = Simulation::new(&sc, seed)?
        .with_threads(threads)
        .map_err(|source| ScenarioError::Threads { threads, source })?
        .with_progress(progress);
    Ok(sim.run())
}

/// The thread count a replay check re-runs with: another one than the first run's, so the
/// check also shows the outcome does not depend on it.
pub fn replay_threads(threads: usize) -> usize {
    if threads > 1 {
        1
    } else {
        2
    }
}

/// A run's report and the outcome of its invariant checks.
pub type Checked = (Report, Result<(), InvariantError>);

/// Run once on `threads` threads, check the invariants and, with `replay`, run again on
/// [`replay_threads`] threads and compare event-log hashes.
pub fn run_checked(
    scenario: &Scenario,
    seed: u64,
    rounds: Option<u64>,
    replay: bool,
    threads: usize,
) -> Result<Checked, ScenarioError> {
    run_checked_with_progress(scenario, seed, rounds, replay, threads, |_, _| {})
}

/// [`run_checked`], telling `progress` which run (0, then 1 for the replay) has how many
/// rounds checkpointed, each time that grows.
pub fn run_checked_with_progress(
    scenario: &Scenario,
    seed: u64,
    rounds: Option<u64>,
    replay: bool,
    threads: usize,
    progress: impl Fn(usize, u64) + Clone + 'static,
) -> Result<Checked, ScenarioError> {
    let first = progress.clone();
    let report = run_with_progress(scenario, seed, rounds, threads, move |n| first(0, n))?;
    let mut result = check(&report);
    if replay {
        let again = run_with_progress(scenario, seed, rounds, replay_threads(threads), move |n| {
            progress(1, n)
        })?;
        if let Err(e) = check_replay(&report, &again) {
            result = match result {
                Ok(()) => Err(e),
                Err(mut first) => {
                    first.violations.extend(e.violations);
                    Err(first)
                }
            };
        }
    }
    Ok((report, result))
}

/// The summary of a sweep.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepSummary {
    /// Scenario.
    pub scenario: String,
    /// First seed.
    pub first_seed: u64,
    /// Seeds run.
    pub seeds: u64,
    /// Rounds per seed.
    pub rounds_per_seed: u64,
    /// Rounds completed over all seeds.
    pub rounds_simulated: u64,
    /// Submissions published over all seeds.
    pub submissions: u64,
    /// Hold invoices over all seeds.
    pub htlcs: u64,
    /// Wall time of the sweep.
    pub wall_secs: f64,
    /// Throughput.
    pub rounds_per_sec: f64,
    /// Throughput.
    pub seeds_per_min: f64,
    /// Throughput (each submission carries one escrow offer with a dealing per tranche).
    pub submissions_per_sec: f64,
    /// Summed HTLC outcomes.
    pub htlc: HtlcTally,
    /// Summed attacker payout.
    pub attacker_payout_msat: u64,
    /// Summed honest pay.
    pub honest_paid_msat: u64,
    /// Summed honest-unpaid tranches.
    pub honest_unpaid: u64,
    /// Summed tranches lost to wrong-hash dealings.
    pub honest_lost_to_dealer: u64,
    /// Largest attacker payout in one round, over all seeds.
    pub max_attacker_payout_per_round_msat: u64,
    /// Copies, poisoned updates, Sybil submissions: submitted / rejected.
    pub bad_submissions: u64,
    /// Of which not merged.
    pub bad_rejected: u64,
    /// Replays injected / accepted.
    pub replays_injected: u64,
    /// Replays accepted (0).
    pub replays_accepted: u64,
    /// Fraud proofs.
    pub fraud_proofs: u64,
    /// Byzantine validators in the pools / proven wrong.
    pub byzantine_validators: u64,
    /// Proven wrong at least once.
    pub byzantine_detected: u64,
    /// Censoring relays / flagged.
    pub censoring_relays: u64,
    /// Flagged.
    pub censoring_detected: u64,
    /// Dealer evidence events.
    pub dealer_evidence: u64,
    /// Crashes.
    pub crashes: u64,
    /// Seeds that were replayed and matched.
    pub replay_checked: u64,
    /// Failing seeds.
    pub failing: Vec<InvariantError>,
}

impl SweepSummary {
    fn add(&mut self, r: &Report) {
        let h = &mut self.htlc;
        let x = &r.htlc;
        h.invoices += x.invoices;
        h.settled += x.settled;
        h.failed_back += x.failed_back;
        h.expired_refunded += x.expired_refunded;
        h.stuck += x.stuck;
        h.still_held += x.still_held;
        h.unpaid_invoices += x.unpaid_invoices;
        h.lost_msat += x.lost_msat;
        h.unaccounted_msat += x.unaccounted_msat;
        h.locked_msat += x.locked_msat;
        h.settled_msat += x.settled_msat;
        h.refunded_msat += x.refunded_msat;
        h.refused_claims += x.refused_claims;
        self.rounds_simulated += r.rounds_completed;
        self.submissions += r.rounds.iter().map(|x| x.submissions).sum::<u64>();
        self.htlcs += r.htlc.invoices;
        self.attacker_payout_msat += r.attacker_payout_msat;
        self.honest_paid_msat += r.honest_paid_msat;
        self.honest_unpaid += r.honest_unpaid;
        self.honest_lost_to_dealer += r.honest_lost_to_dealer;
        let d = &r.detection;
        self.max_attacker_payout_per_round_msat = self
            .max_attacker_payout_per_round_msat
            .max(d.max_attacker_payout_per_round_msat);
        self.bad_submissions +=
            d.copies_submitted + d.poison_submitted + d.sybil_submissions + d.mixed_submitted;
        self.bad_rejected += d.copies_rejected + d.poison_rejected + d.mixed_rejected;
        let sybil_merged: u64 = r
            .kinds
            .iter()
            .filter(|(k, _)| k.starts_with("sybil"))
            .map(|(_, v)| v.accepted)
            .sum();
        self.bad_rejected += d.sybil_submissions - sybil_merged.min(d.sybil_submissions);
        self.replays_injected += d.replays_injected;
        self.replays_accepted += d.replays_accepted;
        self.fraud_proofs += d.fraud_proofs;
        self.byzantine_validators += d.lazy_validators + d.colluding_validators;
        self.byzantine_detected += d.lazy_detected + d.colluders_detected;
        self.censoring_relays += d.censoring_relays;
        self.censoring_detected += d.censoring_detected;
        self.dealer_evidence += d.dealer_evidence;
        self.crashes += r.faults.crashes;
    }

    /// Human-readable text.
    pub fn to_text(&self) -> String {
        use crate::report::sats;
        let h = &self.htlc;
        let mut s = format!(
            "sweep {:?}: {} seeds from {} x {} rounds = {} rounds, {} submissions, {} HTLCs in \
             {:.1} s ({:.2} rounds/s, {:.1} seeds/min, {:.1} submissions/s)\n",
            self.scenario,
            self.seeds,
            self.first_seed,
            self.rounds_per_seed,
            self.rounds_simulated,
            self.submissions,
            self.htlcs,
            self.wall_secs,
            self.rounds_per_sec,
            self.seeds_per_min,
            self.submissions_per_sec
        );
        s += &format!(
            "HTLCs  settled {}  failed-back {}  expired-refunded {}  stuck {}  still-held {}  \
             lost {} msat  refused claims {}\n",
            h.settled,
            h.failed_back,
            h.expired_refunded,
            h.stuck,
            h.still_held,
            h.lost_msat,
            h.refused_claims
        );
        s += &format!(
            "honest paid {} sats  attacker payout {} sats (max {} in one round)  honest-unpaid \
             {}  lost-to-dealer {}\n",
            sats(self.honest_paid_msat),
            sats(self.attacker_payout_msat),
            sats(self.max_attacker_payout_per_round_msat),
            self.honest_unpaid,
            self.honest_lost_to_dealer
        );
        s += &format!(
            "bad submissions {} (not merged {})  replays {} (accepted {})  fraud proofs {}  \
             byzantine validators {} (proven {})  censoring relays {} (flagged {})  dealer \
             evidence {}  crashes {}\n",
            self.bad_submissions,
            self.bad_rejected,
            self.replays_injected,
            self.replays_accepted,
            self.fraud_proofs,
            self.byzantine_validators,
            self.byzantine_detected,
            self.censoring_relays,
            self.censoring_detected,
            self.dealer_evidence,
            self.crashes
        );
        if self.replay_checked > 0 {
            s += &format!(
                "replay determinism: {} seeds re-run, event-log hashes equal\n",
                self.replay_checked
            );
        }
        if self.failing.is_empty() {
            s += "invariants: all hold\n";
        } else {
            s += &format!("invariants: {} failing seed(s)\n", self.failing.len());
            for f in &self.failing {
                s += &format!("  {f}\n");
            }
        }
        s
    }
}

/// Run seeds `first_seed .. first_seed + seeds`, each on `threads` threads; `progress` is
/// called after each seed.
pub fn sweep(
    scenario: &Scenario,
    first_seed: u64,
    seeds: u64,
    rounds: Option<u64>,
    replay: bool,
    threads: usize,
    mut progress: impl FnMut(&Report),
) -> Result<SweepSummary, ScenarioError> {
    let mut s = SweepSummary {
        scenario: scenario.name.clone(),
        first_seed,
        seeds,
        rounds_per_seed: rounds.unwrap_or(scenario.rounds),
        ..SweepSummary::default()
    };
    let start = Instant::now();
    for seed in first_seed..first_seed.saturating_add(seeds) {
        let (report, result) = run_checked(scenario, seed, rounds, replay, threads)?;
        s.add(&report);
        if replay
            && !result.as_ref().err().is_some_and(|e| {
                e.violations
                    .iter()
                    .any(|v| matches!(v, Violation::NotReplayable { .. }))
            })
        {
            s.replay_checked += 1;
        }
        if let Err(e) = result {
            s.failing.push(e);
        }
        progress(&report);
    }
    s.wall_secs = start.elapsed().as_secs_f64();
    if s.wall_secs > 0.0 {
        s.rounds_per_sec = s.rounds_simulated as f64 / s.wall_secs;
        s.seeds_per_min = seeds as f64 * 60.0 / s.wall_secs;
        s.submissions_per_sec = s.submissions as f64 / s.wall_secs;
    }
    Ok(s)
}
