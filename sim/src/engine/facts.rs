//! Turning a finished simulation into its [`Report`]: ledger outcomes, per-HTLC facts for the
//! invariant checker, per-actor, per-kind and per-round figures, detection counts.

use std::collections::{BTreeMap, BTreeSet};

use l402_protocol::escrow::Corruption;
use l402_protocol::events::VerifiedAny;
use l402_protocol::quorum::{Phase, Verdict};

use super::Simulation;
use crate::actors::{ActorId, ActorKind};
use crate::report::{
    ActorReport, Detection, FaultTally, HtlcFact, HtlcTally, KindSummary, Report, RoundReport,
};
use crate::world::HtlcState;

fn bad_work(kind: ActorKind) -> bool {
    matches!(
        kind,
        ActorKind::FreeRider
            | ActorKind::Copycat
            | ActorKind::Alie
            | ActorKind::Poisoner
            | ActorKind::SybilPaid
            | ActorKind::SybilForged
            | ActorKind::Mixed
    )
}

impl Simulation {
    /// Why submission `id` of `worker` in `round` was not merged: the reject code most of its
    /// initial attestations gave, the coordinator's refusal, else `no quorum`.
    fn detected_by(
        &self,
        round: u64,
        id: &l402_protocol::events::SubmissionId,
        worker: ActorId,
        token_refused: &BTreeSet<l402_protocol::events::SubmissionId>,
    ) -> String {
        if token_refused.contains(id) {
            return "refused: bad L402 token".into();
        }
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for ev in self.peer_events.get(&(round, worker)).into_iter().flatten() {
            match &**ev {
                VerifiedAny::SubmissionRefusal(r) if &r.submission == id => {
                    return format!("refused: {}", r.refusal);
                }
                VerifiedAny::Attestation(a) => {
                    let b = a.attestation.body();
                    if &b.submission == id && b.phase == Phase::Initial {
                        if let Verdict::Reject(code) = b.verdict {
                            *codes.entry(format!("{code:?}")).or_insert(0) += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        // The most frequent code; ties go to the first in name order (deterministic).
        let mut best: Option<(&String, usize)> = None;
        for (c, n) in &codes {
            if best.is_none_or(|(_, b)| *n > b) {
                best = Some((c, *n));
            }
        }
        best.map_or_else(|| "no quorum".into(), |(c, _)| c.clone())
    }

    /// Distinct committee members with a passing attestation carrying a share of `tranche`,
    /// published before the phase's attest deadline.
    fn passing_attesters(
        &self,
        round: u64,
        submission: &l402_protocol::events::SubmissionId,
        tranche: u32,
        threshold: l402_protocol::events::Score,
        holdback: bool,
    ) -> usize {
        let Some(rec) = self.rounds.get(&round) else {
            return 0;
        };
        let (phase, deadline) = if holdback {
            (
                Phase::Holdback,
                rec.open.holdback.map_or(0, |h| h.attest_deadline),
            )
        } else {
            (Phase::Initial, rec.open.attest_deadline)
        };
        let mut who = BTreeSet::new();
        // Only the events naming the submission's worker (its offers and attestations): a scan
        // of the whole round would make the run's audit quadratic in the submissions.
        let Some(worker) = self.subs.get(submission).map(|s| s.author) else {
            return 0;
        };
        for ev in self.peer_events.get(&(round, worker)).into_iter().flatten() {
            let VerifiedAny::Attestation(a) = &**ev else {
                continue;
            };
            let b = a.attestation.body();
            if &b.submission == submission
                && b.phase == phase
                && b.verdict.is_accept()
                && b.score >= threshold
                && a.created_at().as_secs() <= deadline
                && rec.open.validators.contains(&a.author())
                && a.shares.iter().any(|s| s.tranche == tranche)
            {
                who.insert(a.author());
            }
        }
        who.len()
    }

    pub(super) fn finish(self) -> Report {
        let height = self.clock.height();
        let audit = self.ledger.audit(height);
        let t = &self.sc.timing;
        let kind_of = |a: ActorId| self.actors[a as usize].kind;

        // Per HTLC.
        let mut htlcs = Vec::new();
        let mut per_actor_earned: BTreeMap<ActorId, u64> = BTreeMap::new();
        let mut per_actor_paid: BTreeMap<ActorId, u64> = BTreeMap::new();
        let mut per_round: BTreeMap<u64, RoundReport> = BTreeMap::new();
        for (hash, h) in self.ledger.htlcs() {
            let Some(meta) = self.htlc_meta.get(hash) else {
                continue;
            };
            let Some(rec) = self.rounds.get(&meta.round) else {
                continue;
            };
            let author_kind = self
                .subs
                .get(&meta.submission)
                .map_or(kind_of(h.payee), |s| kind_of(s.author));
            // The submission's own committee (per-submission draws), else the round's.
            let dishonest = self
                .sub_committees
                .get(&meta.submission)
                .unwrap_or(&rec.committee)
                .iter()
                .filter(|v| kind_of(**v).accepts_bad_work())
                .count();
            let quorum_formed = self.passing_attesters(
                meta.round,
                &meta.submission,
                meta.tranche,
                meta.threshold,
                meta.holdback,
            ) >= rec.k;
            let expiry_time = self.clock.time_of_height(h.expiry_height);
            let fact = HtlcFact {
                payment_hash: hash.to_hex(),
                round: meta.round,
                tranche: meta.tranche,
                payee: h.payee,
                payee_kind: kind_of(h.payee),
                state: h.state,
                held_msat: h.held_msat,
                bad_work: bad_work(author_kind),
                dishonest_in_committee: dishonest,
                k: rec.k,
                quorum_formed,
                dealer_blocked: rec.corruption == Corruption::WrongPaymentHash,
                payee_was_down: self.actors[h.payee as usize]
                    .was_down_during(rec.opened_at, expiry_time),
            };
            let rr = per_round.entry(meta.round).or_default();
            if h.payer.is_some() {
                rr.locked_msat += h.held_msat;
            }
            match h.state {
                HtlcState::Settled => {
                    *per_actor_earned.entry(h.payee).or_insert(0) += h.held_msat;
                    if let Some(p) = h.payer {
                        *per_actor_paid.entry(p).or_insert(0) += h.held_msat;
                    }
                    if kind_of(h.payee).is_adversary() {
                        rr.attacker_paid_msat += h.held_msat;
                    } else {
                        rr.honest_paid_msat += h.held_msat;
                    }
                }
                HtlcState::FailedBack | HtlcState::ExpiredRefunded => {
                    rr.refunded_msat += h.held_msat
                }
                _ => {}
            }
            htlcs.push(fact);
        }

        // Per submission.
        let mut subs_by_actor: BTreeMap<ActorId, (u64, u64)> = BTreeMap::new();
        let merged: BTreeSet<_> = self
            .rounds
            .values()
            .flat_map(|r| r.merged.iter().copied())
            .collect();
        let mut det = Detection::default();
        let token_refused: BTreeSet<_> = self
            .stats
            .sybil_token_rejected
            .iter()
            .filter_map(|e| self.published.get(e))
            .map(|ev| l402_protocol::events::SubmissionId::of_event(ev.event()))
            .collect();
        let mut caught_by: BTreeMap<&'static str, BTreeMap<String, u64>> = BTreeMap::new();
        for (id, s) in &self.subs {
            let e = subs_by_actor.entry(s.author).or_default();
            e.0 += 1;
            let m = merged.contains(id);
            if m {
                e.1 += 1;
            } else {
                let why = self.detected_by(s.round, id, s.author, &token_refused);
                *caught_by
                    .entry(kind_of(s.author).label())
                    .or_default()
                    .entry(why)
                    .or_insert(0) += 1;
            }
            let rr = per_round.entry(s.round).or_default();
            rr.submissions += 1;
            if kind_of(s.author) == ActorKind::HonestPeer {
                rr.honest_submissions += 1;
            }
            if m {
                rr.merged += 1;
            }
            match kind_of(s.author) {
                ActorKind::FreeRider | ActorKind::Copycat | ActorKind::Alie => {
                    det.copies_rejected += u64::from(!m)
                }
                ActorKind::Poisoner => {
                    det.poison_submitted += 1;
                    det.poison_rejected += u64::from(!m);
                    det.poison_merged += u64::from(m);
                }
                ActorKind::SybilPaid | ActorKind::SybilForged => det.sybil_submissions += 1,
                ActorKind::Mixed => {
                    det.mixed_submitted += 1;
                    det.mixed_rejected += u64::from(!m);
                }
                _ => {}
            }
        }
        let mut attestations: BTreeMap<ActorId, u64> = BTreeMap::new();
        for ev in self.published.values() {
            if let VerifiedAny::Attestation(a) = &**ev {
                if let Some(v) = self.by_key.get(&a.author()) {
                    *attestations.entry(*v).or_insert(0) += 1;
                }
            }
        }

        // Per actor and kind.
        let mut actors = Vec::with_capacity(self.actors.len());
        let mut kinds: BTreeMap<String, KindSummary> = BTreeMap::new();
        for a in &self.actors {
            let (subs, acc) = subs_by_actor.get(&a.id).copied().unwrap_or((0, 0));
            let r = ActorReport {
                id: a.id,
                kind: a.kind.label().into(),
                key: a.pubkey.to_hex().chars().take(16).collect(),
                earned_msat: per_actor_earned.get(&a.id).copied().unwrap_or(0),
                escrow_paid_msat: per_actor_paid.get(&a.id).copied().unwrap_or(0),
                tolls_msat: self.stats.tolls_msat.get(&a.id).copied().unwrap_or(0),
                submissions: subs,
                accepted: acc,
                rejected: subs - acc,
                attestations: attestations.get(&a.id).copied().unwrap_or(0),
                excluded_from_round: a.excluded_from,
            };
            let k = kinds.entry(r.kind.clone()).or_default();
            k.actors += 1;
            k.earned_msat += r.earned_msat;
            k.escrow_paid_msat += r.escrow_paid_msat;
            k.tolls_msat += r.tolls_msat;
            k.submissions += r.submissions;
            k.accepted += r.accepted;
            k.rejected += r.rejected;
            actors.push(r);
        }
        for (kind, why) in caught_by {
            if let Some(k) = kinds.get_mut(kind) {
                k.detected_by = why;
            }
        }
        let paid_to = |pred: &dyn Fn(ActorKind) -> bool| -> u64 {
            actors
                .iter()
                .filter(|r| pred(self.actors[r.id as usize].kind))
                .map(|r| r.earned_msat)
                .sum()
        };
        let attacker_payout_msat = paid_to(&|k| k.is_adversary());
        let honest_paid_msat = paid_to(&|k| k == ActorKind::HonestPeer);
        det.copies_submitted = self.stats.copies_submitted;
        det.refused_round_full = self.stats.refusals_seen;
        det.tolls_refunded_msat = self.stats.tolls_refunded_msat.values().sum();
        det.copies_paid_msat = paid_to(&|k| k.copies_others());
        det.poison_paid_msat = paid_to(&|k| k == ActorKind::Poisoner);
        det.sybil_paid_msat =
            paid_to(&|k| matches!(k, ActorKind::SybilPaid | ActorKind::SybilForged));
        det.sybil_identities = self
            .actors
            .iter()
            .filter(|a| matches!(a.kind, ActorKind::SybilPaid | ActorKind::SybilForged))
            .count() as u64;
        det.sybil_token_rejected = self.stats.sybil_token_rejected.len() as u64;
        det.sybil_evaluated = det
            .sybil_submissions
            .saturating_sub(det.sybil_token_rejected);
        det.sybil_cost_msat = actors
            .iter()
            .filter(|r| {
                matches!(
                    self.actors[r.id as usize].kind,
                    ActorKind::SybilPaid | ActorKind::SybilForged
                )
            })
            .map(|r| r.tolls_msat)
            .sum();
        det.replays_injected = self.stats.replays_injected;
        det.replay_deliveries = self.stats.replay_deliveries;
        det.replays_accepted = self.stats.replays_accepted.len() as u64;
        det.relay_dedupes = self.stats.relay_dedupes;
        let count = |k: ActorKind| self.actors.iter().filter(|a| a.kind == k).count() as u64;
        det.lazy_validators = count(ActorKind::LazyValidator);
        det.colluding_validators = count(ActorKind::ColludingValidator);
        let proven: BTreeSet<ActorId> = self
            .stats
            .fraud_proofs
            .iter()
            .map(|f| f.validator)
            .collect();
        let proven_of = |k: ActorKind| proven.iter().filter(|v| kind_of(**v) == k).count() as u64;
        det.lazy_detected = proven_of(ActorKind::LazyValidator);
        det.colluders_detected = proven_of(ActorKind::ColludingValidator);
        det.honest_validators_flagged = proven_of(ActorKind::HonestValidator);
        det.validators_excluded = self.stats.excluded.len() as u64;
        let byz: Vec<&crate::actors::Actor> = self
            .actors
            .iter()
            .filter(|a| a.kind.accepts_bad_work())
            .collect();
        if !byz.is_empty() && byz.iter().all(|a| a.excluded_from.is_some()) {
            det.rounds_to_exclude_all = byz
                .iter()
                .filter_map(|a| a.excluded_from)
                .max()
                .map(|r| r - 1);
        }
        det.fraud_proofs = self.stats.fraud_proofs.len() as u64;
        det.outlier_flags = self
            .stats
            .outlier_flags
            .iter()
            .map(|(k, v)| (k.label().to_string(), *v))
            .collect();
        det.honest_dissent = self.stats.honest_dissent;
        det.dealer_corrupt_rounds = self
            .rounds
            .values()
            .filter(|r| r.corruption != Corruption::None)
            .count() as u64;
        det.dealer_evidence = self.stats.dealer_evidence;
        det.corrupting_providers = count(ActorKind::CorruptingProvider);
        det.corrupt_transfers = self.stats.corrupt_transfers;
        det.corrupt_recovered = self.stats.corrupt_recovered;
        det.merge_unavailable = self.stats.merge_unavailable;
        det.equivocating_validators = count(ActorKind::EquivocatingValidator);
        det.equivocations_signed = self.stats.equivocations_signed;
        let named = |equivocating: bool| {
            self.stats
                .equivocators_named
                .iter()
                .filter(|pk| {
                    self.by_key.get(*pk).is_some_and(|a| {
                        (kind_of(*a) == ActorKind::EquivocatingValidator) == equivocating
                    })
                })
                .count() as u64
        };
        det.equivocators_named = named(true);
        det.equivocators_unnamed = self
            .stats
            .equivocated_in_time
            .difference(&self.stats.equivocators_named)
            .count() as u64;
        det.honest_named_equivocating = named(false);
        det.audit_replays = self.stats.audit_replays;
        let (honest, byz): (Vec<&ActorId>, Vec<&ActorId>) = self
            .stats
            .convicted
            .iter()
            .filter_map(|pk| self.by_key.get(pk))
            .partition(|a| kind_of(**a) == ActorKind::HonestValidator);
        det.convicted = byz.len() as u64;
        det.honest_convicted = honest.len() as u64;
        let relays = self.relays.relays();
        det.censoring_relays = relays.iter().filter(|r| r.is_censoring()).count() as u64;
        for (i, round) in &self.stats.relay_flagged {
            if relays.get(*i).is_some_and(|r| r.is_censoring()) {
                det.censoring_detected += 1;
                det.first_censor_detection_round = Some(
                    det.first_censor_detection_round
                        .map_or(*round, |x: u64| x.min(*round)),
                );
            } else {
                det.honest_relays_flagged += 1;
            }
        }

        // Per round.
        let mut rounds = Vec::new();
        for (n, rec) in &self.rounds {
            let mut rr = per_round.remove(n).unwrap_or_default();
            rr.round = *n;
            rr.n = rec.open.committee_size() as u64;
            rr.k = rec.k as u64;
            rr.dishonest_validators = rec
                .committee
                .iter()
                .filter(|v| kind_of(**v).accepts_bad_work())
                .count() as u64;
            rr.dealing = match rec.corruption {
                Corruption::None => "honest".into(),
                c => format!("{c:?}"),
            };
            rr.model_loss = rec.model_loss;
            det.max_attacker_payout_per_round_msat = det
                .max_attacker_payout_per_round_msat
                .max(rr.attacker_paid_msat);
            det.max_round_escrow_msat = det.max_round_escrow_msat.max(rr.locked_msat);
            det.rounds_with_attacker_payout += u64::from(rr.attacker_paid_msat > 0);
            rounds.push(rr);
        }

        let honest_peers = count(ActorKind::HonestPeer);
        let idle_rounds: Vec<u64> = if honest_peers > 0 {
            rounds
                .iter()
                .filter(|r| r.honest_submissions == 0)
                .map(|r| r.round)
                .collect()
        } else {
            Vec::new()
        };
        let honest_unpaid = htlcs
            .iter()
            .filter(|h| {
                h.payee_kind == ActorKind::HonestPeer
                    && h.quorum_formed
                    && !h.dealer_blocked
                    && h.state != HtlcState::Settled
            })
            .count() as u64;
        let honest_lost_to_dealer = htlcs
            .iter()
            .filter(|h| {
                h.payee_kind == ActorKind::HonestPeer
                    && h.quorum_formed
                    && h.dealer_blocked
                    && h.state != HtlcState::Settled
            })
            .count() as u64;

        let mut notes: Vec<String> = Vec::new();
        notes.extend(self.stats.open_errors.iter().cloned());
        notes.extend(self.stats.restore_errors.iter().cloned());
        notes.extend(self.stats.merged_list_errors.iter().cloned());
        notes.extend(self.stats.replays_accepted.iter().take(10).cloned());
        notes.extend(self.stats.refused_claims.iter().take(10).cloned());

        let htlc = HtlcTally {
            invoices: self.ledger.htlcs().len() as u64,
            settled: audit.settled,
            failed_back: audit.failed_back,
            expired_refunded: audit.expired_refunded,
            stuck: audit.stuck,
            still_held: audit.held,
            unpaid_invoices: audit.unpaid_invoices,
            lost_msat: audit.lost_msat,
            unaccounted_msat: audit.unaccounted_msat,
            locked_msat: audit.locked_msat,
            settled_msat: audit.settled_msat,
            refunded_msat: audit.failed_back_msat + audit.expired_msat,
            refused_claims: self.stats.refused_claims.len() as u64,
        };
        let faults = FaultTally {
            crashes: self.stats.crashes,
            restarts: self.stats.restarts,
            restore_errors: self.stats.restore_errors.len() as u64,
            merged_list_errors: self.stats.merged_list_errors.len() as u64,
            events_published: self.stats.published,
            inputs_handled: self.stats.handled_inputs,
            ignored: self.stats.ignored.clone(),
            relay_rejected: self.stats.relay_rejected.clone(),
            ledger_errors: self.stats.ledger_errors.clone(),
        };
        let _ = t;
        let completed: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| r.checkpoint.is_some())
            .map(|(n, _)| *n)
            .collect();
        let mut stall_reasons = Vec::new();
        if (completed.len() as u64) < self.sc.rounds {
            stall_reasons = self.stats.coordinator_refused.clone();
            if stall_reasons.is_empty() {
                let missing: Vec<u64> = (1..=self.sc.rounds)
                    .filter(|r| !completed.contains(r))
                    .collect();
                stall_reasons.push(format!(
                    "no checkpoint published for round(s) {missing:?} before the simulation ended \
                     (no event of the coordinator was refused: see the round table and notes)"
                ));
            }
        }
        Report {
            scenario: self.sc.name.clone(),
            seed: self.seed,
            rounds_wanted: self.sc.rounds,
            rounds_completed: self
                .rounds
                .values()
                .filter(|r| r.checkpoint.is_some())
                .count() as u64,
            simulated_secs: self.clock.now - super::GENESIS_TIME,
            genesis_loss: self.sc.loss.genesis,
            event_log_hash: self.event_log_hash(),
            htlc,
            attacker_payout_msat,
            honest_paid_msat,
            honest_unpaid,
            honest_lost_to_dealer,
            detection: det,
            faults,
            kinds,
            actors,
            rounds,
            fraud_proofs: self.stats.fraud_proofs.iter().take(50).cloned().collect(),
            notes,
            idle_rounds,
            stall_reasons,
            htlcs,
        }
    }
}
