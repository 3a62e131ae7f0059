//! The report of one run: who was paid what, HTLC outcomes, detection counts, faults, per-round
//! figures. Serialisable to JSON (`--json`) and printable as text.
//!
//! Spec: specs/L2T-12-sim.md#report

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::actors::{ActorId, ActorKind};
use crate::engine::FraudProof;
use crate::world::HtlcState;

/// Millisatoshis to whole sats (for display).
pub fn sats(msat: u64) -> u64 {
    msat / 1000
}

/// Hold-invoice outcomes (test-matrix 7.6 item 2) and the conservation figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HtlcTally {
    /// Hold invoices created.
    pub invoices: u64,
    /// Claimed by the worker.
    pub settled: u64,
    /// Failed back by the worker (payer refunded).
    pub failed_back: u64,
    /// Failed back automatically at the expiry height (payer refunded).
    pub expired_refunded: u64,
    /// Held past their expiry height (must be 0).
    pub stuck: u64,
    /// Still held when the run ended.
    pub still_held: u64,
    /// Invoices never paid.
    pub unpaid_invoices: u64,
    /// `minted − (balances + held)` in msat (must be 0).
    pub lost_msat: i128,
    /// `locked − (settled + refunded + held)` in msat (must be 0).
    pub unaccounted_msat: i128,
    /// Ever locked.
    pub locked_msat: u64,
    /// Paid out.
    pub settled_msat: u64,
    /// Refunded (failed back or expired).
    pub refunded_msat: u64,
    /// Claims the ledger refused (wrong preimage, late): must be 0.
    pub refused_claims: u64,
}

/// Detection and attack outcome counts (test-matrix 7.3, 7.6 item 3).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Detection {
    /// Paid submissions the coordinator refused at its declared cap (refusals the workers saw).
    pub refused_round_full: u64,
    /// Tolls refunded to them.
    pub tolls_refunded_msat: u64,
    /// Free-rider copies submitted.
    pub copies_submitted: u64,
    /// Copies the quorum did not merge.
    pub copies_rejected: u64,
    /// Sats paid to free-riders.
    pub copies_paid_msat: u64,
    /// Poisoned updates submitted.
    pub poison_submitted: u64,
    /// Poisoned updates not merged.
    pub poison_rejected: u64,
    /// Poisoned updates merged.
    pub poison_merged: u64,
    /// Sats paid to poisoners.
    pub poison_paid_msat: u64,
    /// Submissions of `mixed` attackers (every attack they rotate through).
    pub mixed_submitted: u64,
    /// Of those, not merged.
    pub mixed_rejected: u64,
    /// Sybil identities.
    pub sybil_identities: u64,
    /// Sybil submissions published.
    pub sybil_submissions: u64,
    /// Sybil submissions the coordinator refused for a bad token (before any evaluation).
    pub sybil_token_rejected: u64,
    /// Sybil submissions that reached evaluation (paid token).
    pub sybil_evaluated: u64,
    /// What the Sybils paid in L402 tolls.
    pub sybil_cost_msat: u64,
    /// Sats paid to Sybils.
    pub sybil_paid_msat: u64,
    /// Old events replayers re-injected.
    pub replays_injected: u64,
    /// Deliveries of those into current machines.
    pub replay_deliveries: u64,
    /// Replays a machine acted on (must be 0).
    pub replays_accepted: u64,
    /// Publications relays dropped as duplicates (replays included).
    pub relay_dedupes: u64,
    /// Lazy validators in the pool.
    pub lazy_validators: u64,
    /// Lazy validators proven wrong at least once.
    pub lazy_detected: u64,
    /// Colluding validators in the pool.
    pub colluding_validators: u64,
    /// Colluding validators proven wrong at least once.
    pub colluders_detected: u64,
    /// Validators excluded by the audit.
    pub validators_excluded: u64,
    /// Rounds from the run start until the last Byzantine validator was excluded.
    pub rounds_to_exclude_all: Option<u64>,
    /// Fraud proofs (signed attestations a replay contradicts).
    pub fraud_proofs: u64,
    /// Fraud proofs against honest validators (false positives; must be 0).
    pub honest_validators_flagged: u64,
    /// Disputed evaluations the coordinator replayed (protocol audit, L2T-04 §audit).
    pub audit_replays: u64,
    /// Byzantine validators named in the coordinator's wrong-score evidence.
    pub convicted: u64,
    /// Honest validators named in wrong-score evidence (must be 0).
    pub honest_convicted: u64,
    /// Tally outliers by validator kind (no fee).
    pub outlier_flags: BTreeMap<String, u64>,
    /// Honest validators' signed dissent from the quorum's verdict.
    pub honest_dissent: u64,
    /// Rounds the dealer corrupted.
    pub dealer_corrupt_rounds: u64,
    /// Evidence events against the dealer.
    pub dealer_evidence: u64,
    /// Corrupting providers among the workers.
    pub corrupting_providers: u64,
    /// Merge fetches whose first bytes from a provider failed verification (each caught).
    pub corrupt_transfers: u64,
    /// Merge fetches completed from another holder after a corrupt transfer.
    pub corrupt_recovered: u64,
    /// Merge fetches no holder completed (must be 0).
    pub merge_unavailable: u64,
    /// Equivocating validators in the pool.
    pub equivocating_validators: u64,
    /// Conflicting attestations they signed.
    pub equivocations_signed: u64,
    /// Equivocating validators named in equivocation evidence.
    pub equivocators_named: u64,
    /// Validators that signed conflicting initial attestations in time for the tally but are
    /// not named in evidence (must be 0).
    pub equivocators_unnamed: u64,
    /// Validators named in equivocation evidence that did not equivocate (must be 0).
    pub honest_named_equivocating: u64,
    /// Censoring relays.
    pub censoring_relays: u64,
    /// Censoring relays flagged by the relay comparison.
    pub censoring_detected: u64,
    /// First round a censoring relay was flagged.
    pub first_censor_detection_round: Option<u64>,
    /// Honest relays flagged (false positives; must be 0).
    pub honest_relays_flagged: u64,
    /// Most sats adversaries got in one round.
    pub max_attacker_payout_per_round_msat: u64,
    /// Largest escrow locked in one round.
    pub max_round_escrow_msat: u64,
    /// Rounds in which adversaries were paid.
    pub rounds_with_attacker_payout: u64,
}

/// Crashes, restarts and what the machines ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FaultTally {
    /// Node crashes.
    pub crashes: u64,
    /// Restarts (persisted state restored and resumed).
    pub restarts: u64,
    /// Restores that failed or changed the state (must be 0).
    pub restore_errors: u64,
    /// Checkpoint events whose merged-list blob did not decode against them or differed from
    /// what the coordinator aggregated (must be 0).
    #[serde(default)]
    pub merged_list_errors: u64,
    /// Events stored by relays.
    pub events_published: u64,
    /// Inputs handed to machines.
    pub inputs_handled: u64,
    /// Events the machines ignored, by reason.
    pub ignored: BTreeMap<String, u64>,
    /// Publications the relays' write policy refused, by reason.
    pub relay_rejected: BTreeMap<String, u64>,
    /// Ledger errors, by operation.
    pub ledger_errors: BTreeMap<String, u64>,
}

/// One actor's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ActorReport {
    /// Actor id.
    pub id: ActorId,
    /// Kind.
    pub kind: String,
    /// Nostr key (hex, first 16 digits).
    pub key: String,
    /// Escrow it claimed.
    pub earned_msat: u64,
    /// Escrow it paid out (coordinator).
    pub escrow_paid_msat: u64,
    /// L402 tolls it paid.
    pub tolls_msat: u64,
    /// Submissions it published.
    pub submissions: u64,
    /// Of which merged (quorum accepted).
    pub accepted: u64,
    /// Of which not merged.
    pub rejected: u64,
    /// Attestations it published.
    pub attestations: u64,
    /// Round from which the audit excluded it.
    pub excluded_from_round: Option<u64>,
}

/// Totals per actor kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KindSummary {
    /// Actors of this kind.
    pub actors: u64,
    /// Escrow claimed.
    pub earned_msat: u64,
    /// Escrow paid out.
    pub escrow_paid_msat: u64,
    /// Tolls paid.
    pub tolls_msat: u64,
    /// Submissions.
    pub submissions: u64,
    /// Merged.
    pub accepted: u64,
    /// Not merged.
    pub rejected: u64,
    /// Why the unmerged ones were not merged: the reject code most of the submission's
    /// attestations gave (the check that caught it), `refused: …` when the coordinator refused
    /// it before any evaluation (a bad L402 token, the round's cap), else `no quorum` (no
    /// verdict reached `k` in time).
    pub detected_by: BTreeMap<String, u64>,
}

/// One round's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RoundReport {
    /// Round.
    pub round: u64,
    /// Committee size.
    pub n: u64,
    /// Quorum.
    pub k: u64,
    /// Lazy or colluding validators in the committee.
    pub dishonest_validators: u64,
    /// Dealing corruption (`None` = honest).
    pub dealing: String,
    /// Submissions.
    pub submissions: u64,
    /// Submissions by honest peers.
    pub honest_submissions: u64,
    /// Merged.
    pub merged: u64,
    /// Escrow locked.
    pub locked_msat: u64,
    /// Paid to honest workers.
    pub honest_paid_msat: u64,
    /// Paid to adversaries.
    pub attacker_paid_msat: u64,
    /// Refunded to the payer.
    pub refunded_msat: u64,
    /// Model loss after the round.
    pub model_loss: f64,
}

/// What the invariant checker needs about one hold invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HtlcFact {
    /// Payment hash (hex).
    pub payment_hash: String,
    /// Round.
    pub round: u64,
    /// Tranche index.
    pub tranche: u32,
    /// Worker.
    pub payee: ActorId,
    /// Worker kind.
    pub payee_kind: ActorKind,
    /// Final state.
    pub state: HtlcState,
    /// Amount held (0 if never paid).
    pub held_msat: u64,
    /// The submission is bad work (copy, poison, junk).
    pub bad_work: bool,
    /// Lazy or colluding validators in the round's committee.
    pub dishonest_in_committee: usize,
    /// Quorum.
    pub k: usize,
    /// At least `k` committee members published a passing attestation with a share for this
    /// tranche before its attest deadline.
    pub quorum_formed: bool,
    /// The round's dealing had a wrong payment hash (no claim possible).
    pub dealer_blocked: bool,
    /// The worker was down at some point between the round open and the HTLC's expiry.
    pub payee_was_down: bool,
}

/// The report of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Rounds asked for.
    pub rounds_wanted: u64,
    /// Rounds that published a checkpoint.
    pub rounds_completed: u64,
    /// Simulated seconds.
    pub simulated_secs: u64,
    /// Held-out loss of the genesis checkpoint (the loss model's, `world::FakeLossModel`).
    pub genesis_loss: f64,
    /// Hash of every processed input and executed action, in order (replay determinism).
    pub event_log_hash: String,
    /// Hold-invoice outcomes.
    pub htlc: HtlcTally,
    /// Sats adversaries were paid.
    pub attacker_payout_msat: u64,
    /// Sats honest workers were paid.
    pub honest_paid_msat: u64,
    /// Honest tranches with a quorum that were not settled (dealer fraud excepted).
    pub honest_unpaid: u64,
    /// Honest tranches a wrong-hash dealing made unclaimable (worker loses one round's work).
    pub honest_lost_to_dealer: u64,
    /// Detection counts.
    pub detection: Detection,
    /// Faults.
    pub faults: FaultTally,
    /// Per kind.
    pub kinds: BTreeMap<String, KindSummary>,
    /// Per actor.
    pub actors: Vec<ActorReport>,
    /// Per round.
    pub rounds: Vec<RoundReport>,
    /// Fraud proofs (first 50).
    pub fraud_proofs: Vec<FraudProof>,
    /// Problems worth a look (open errors, restore errors, accepted replays, refused claims).
    pub notes: Vec<String>,
    /// Rounds in which no honest peer's submission was published although there are honest
    /// peers (the run did nothing useful: a network or liveness failure).
    pub idle_rounds: Vec<u64>,
    /// Why rounds did not complete, when some did not: each rule that refused one of the
    /// coordinator's own events, else the rounds that never published a checkpoint.
    #[serde(default)]
    pub stall_reasons: Vec<String>,
    /// Per hold invoice, for the invariant checker.
    #[serde(skip)]
    pub htlcs: Vec<HtlcFact>,
}

impl KindSummary {
    /// `code ×n, …` of [`KindSummary::detected_by`].
    pub fn detected_text(&self) -> String {
        self.detected_by
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Report {
    /// Held-out loss per round of the loss model, round 0 being the genesis checkpoint.
    pub fn loss_curve(&self) -> Vec<(u64, f64)> {
        std::iter::once((0, self.genesis_loss))
            .chain(self.rounds.iter().map(|r| (r.round, r.model_loss)))
            .collect()
    }

    /// Held-out loss after the last round.
    pub fn final_loss(&self) -> f64 {
        self.rounds
            .last()
            .map_or(self.genesis_loss, |r| r.model_loss)
    }

    /// Honest peers' and adversaries' shares of the sats paid to workers (0 when none).
    pub fn shares(&self) -> (f64, f64) {
        let total = (self.honest_paid_msat + self.attacker_payout_msat) as f64;
        if total == 0.0 {
            return (0.0, 0.0);
        }
        (
            self.honest_paid_msat as f64 / total,
            self.attacker_payout_msat as f64 / total,
        )
    }

    /// Human-readable text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {:?}  seed {}  rounds {}/{}  simulated {} s",
            self.scenario,
            self.seed,
            self.rounds_completed,
            self.rounds_wanted,
            self.simulated_secs
        );
        let _ = writeln!(s, "event-log hash {}", self.event_log_hash);
        let h = &self.htlc;
        let _ = writeln!(
            s,
            "\nHTLCs  invoices {}  settled {}  failed-back {}  expired-refunded {}  stuck {}  \
             still-held {}  lost {} msat  unaccounted {} msat  refused-claims {}",
            h.invoices,
            h.settled,
            h.failed_back,
            h.expired_refunded,
            h.stuck,
            h.still_held,
            h.lost_msat,
            h.unaccounted_msat,
            h.refused_claims
        );
        let _ = writeln!(
            s,
            "escrow locked {} sats = settled {} + refunded {}",
            sats(h.locked_msat),
            sats(h.settled_msat),
            sats(h.refunded_msat)
        );
        let _ = writeln!(
            s,
            "honest paid {} sats  attacker payout {} sats  honest-unpaid {}  lost-to-dealer {}",
            sats(self.honest_paid_msat),
            sats(self.attacker_payout_msat),
            self.honest_unpaid,
            self.honest_lost_to_dealer
        );
        let _ = writeln!(
            s,
            "\n{:<20} {:>6} {:>12} {:>12} {:>8} {:>6} {:>8} {:>8}",
            "kind", "actors", "earned sats", "paid sats", "tolls", "subs", "accepted", "rejected"
        );
        for (k, v) in &self.kinds {
            let _ = writeln!(
                s,
                "{:<20} {:>6} {:>12} {:>12} {:>8} {:>6} {:>8} {:>8}",
                k,
                v.actors,
                sats(v.earned_msat),
                sats(v.escrow_paid_msat),
                sats(v.tolls_msat),
                v.submissions,
                v.accepted,
                v.rejected
            );
            if !v.detected_by.is_empty() {
                let _ = writeln!(s, "{:<20} not merged: {}", "", v.detected_text());
            }
        }
        let d = &self.detection;
        let _ = writeln!(s, "\ndetection");
        let mut line = |name: &str, on: bool, text: String| {
            if on {
                let _ = writeln!(s, "  {name:<18} {text}");
            }
        };
        line(
            "round full",
            d.refused_round_full > 0,
            format!(
                "refused {}  tolls refunded {} sats",
                d.refused_round_full,
                sats(d.tolls_refunded_msat)
            ),
        );
        line(
            "free-riders",
            d.copies_submitted > 0,
            format!(
                "copies {}  rejected {}  paid {} sats",
                d.copies_submitted,
                d.copies_rejected,
                sats(d.copies_paid_msat)
            ),
        );
        line(
            "poisoners",
            d.poison_submitted > 0,
            format!(
                "submitted {}  rejected {}  merged {}  paid {} sats",
                d.poison_submitted,
                d.poison_rejected,
                d.poison_merged,
                sats(d.poison_paid_msat)
            ),
        );
        line(
            "sybils",
            d.sybil_identities > 0,
            format!(
                "identities {}  submissions {}  refused (token) {}  evaluated {}  cost {} sats  \
                 paid {} sats",
                d.sybil_identities,
                d.sybil_submissions,
                d.sybil_token_rejected,
                d.sybil_evaluated,
                sats(d.sybil_cost_msat),
                sats(d.sybil_paid_msat)
            ),
        );
        line(
            "replays",
            d.replays_injected > 0,
            format!(
                "injected {}  deliveries {}  accepted {}  relay dedupes {}",
                d.replays_injected, d.replay_deliveries, d.replays_accepted, d.relay_dedupes
            ),
        );
        line(
            "validators",
            d.lazy_validators + d.colluding_validators > 0 || d.fraud_proofs > 0,
            format!(
                "lazy {} (detected {})  colluding {} (detected {})  excluded {}  fraud proofs {}  \
                 honest flagged {}  honest dissent {}  rounds to exclude all {}",
                d.lazy_validators,
                d.lazy_detected,
                d.colluding_validators,
                d.colluders_detected,
                d.validators_excluded,
                d.fraud_proofs,
                d.honest_validators_flagged,
                d.honest_dissent,
                d.rounds_to_exclude_all
                    .map_or("-".to_string(), |r| r.to_string())
            ),
        );
        line(
            "collusion damage",
            d.rounds_with_attacker_payout > 0,
            format!(
                "max attacker payout in one round {} sats (largest round escrow {} sats), in {} \
                 round(s)",
                sats(d.max_attacker_payout_per_round_msat),
                sats(d.max_round_escrow_msat),
                d.rounds_with_attacker_payout
            ),
        );
        line(
            "dealer",
            d.dealer_corrupt_rounds > 0 || d.dealer_evidence > 0,
            format!(
                "corrupt rounds {}  evidence events {}",
                d.dealer_corrupt_rounds, d.dealer_evidence
            ),
        );
        line(
            "corrupt blobs",
            d.corrupting_providers > 0 || d.merge_unavailable > 0,
            format!(
                "providers {}  corrupt transfers caught {}  completed from another holder {}  unavailable {}",
                d.corrupting_providers, d.corrupt_transfers, d.corrupt_recovered, d.merge_unavailable
            ),
        );
        line(
            "audit replays",
            d.audit_replays > 0 || d.honest_convicted > 0,
            format!(
                "disputed evaluations replayed {}  validators convicted {}  honest convicted {}",
                d.audit_replays, d.convicted, d.honest_convicted
            ),
        );
        line(
            "equivocation",
            d.equivocating_validators > 0 || d.honest_named_equivocating > 0,
            format!(
                "validators {}  conflicting attestations {}  named in evidence {}  honest named {}",
                d.equivocating_validators,
                d.equivocations_signed,
                d.equivocators_named,
                d.honest_named_equivocating
            ),
        );
        line(
            "relays",
            d.censoring_relays > 0 || d.honest_relays_flagged > 0,
            format!(
                "censoring {}  detected {} (first in round {})  honest flagged {}",
                d.censoring_relays,
                d.censoring_detected,
                d.first_censor_detection_round
                    .map_or("-".to_string(), |r| r.to_string()),
                d.honest_relays_flagged
            ),
        );
        let f = &self.faults;
        let _ = writeln!(
            s,
            "\nfaults  crashes {}  restarts {}  restore errors {}  events {}  inputs {}",
            f.crashes, f.restarts, f.restore_errors, f.events_published, f.inputs_handled
        );
        if !f.ignored.is_empty() {
            let list: Vec<String> = f.ignored.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(s, "ignored by the machines  {}", list.join("; "));
        }
        let _ = writeln!(
            s,
            "\n{:>5} {:>3} {:>3} {:>4} {:<22} {:>5} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "round",
            "n",
            "k",
            "byz",
            "dealing",
            "subs",
            "merged",
            "locked",
            "honest",
            "attacker",
            "refunded",
            "loss"
        );
        for r in &self.rounds {
            let _ = writeln!(
                s,
                "{:>5} {:>3} {:>3} {:>4} {:<22} {:>5} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8.4}",
                r.round,
                r.n,
                r.k,
                r.dishonest_validators,
                r.dealing,
                r.submissions,
                r.merged,
                sats(r.locked_msat),
                sats(r.honest_paid_msat),
                sats(r.attacker_paid_msat),
                sats(r.refunded_msat),
                r.model_loss
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}
