//! The per-round audit, run when the coordinator closes a round:
//!
//! - **Fraud proofs by deterministic replay** (A7, A9), the simulator's omniscient oracle: a
//!   signed attestation whose verdict or score (beyond the round's tolerance) disagrees with the
//!   noise-free reference proves its validator wrong. This only measures; the exclusion itself
//!   is the protocol's: the coordinator replays disputed evaluations (`Action::Audit`) and
//!   publishes wrong-score evidence, and with `validators.audit` the engine leaves the accused
//!   out of the following rounds' pools when that evidence is published (`exec.rs`), as the
//!   node's coordinator does.
//! - **Outliers** as the protocol's own tally flags them (no validation fee).
//! - **Honest dissent**: honest validators whose signed verdict differs from the quorum's.
//! - **Censoring relays** (A11): a relay missing events of the round that another relay stores
//!   is flagged, as a client comparing its relays would.

use std::collections::BTreeMap;

use l402_protocol::events::{AttestationEvent, SubmissionId, Verified, VerifiedAny};
use l402_protocol::quorum::{eval_seed, tally, Phase, RejectCode, TallyContext, Verdict};
use nostr::PublicKey;

use super::{FraudProof, Simulation};
use crate::actors::ActorKind;
use crate::world::FakeEvaluator;

impl Simulation {
    pub(super) fn audit_round(&mut self, r: u64) {
        let Some(rec) = self.rounds.get_mut(&r) else {
            return;
        };
        if rec.audited {
            return;
        }
        rec.audited = true;
        let open = rec.open.value().clone();
        let committee = rec.committee.clone();
        let evs = self.round_events.get(&r).cloned().unwrap_or_default();
        let mut by_sub: BTreeMap<SubmissionId, Vec<Verified<AttestationEvent>>> = BTreeMap::new();
        for ev in &evs {
            let VerifiedAny::Attestation(a) = &**ev else {
                continue;
            };
            let b = a.attestation.body();
            if b.phase == Phase::Initial
                && a.created_at().as_secs() <= open.attest_deadline
                && self
                    .by_key
                    .get(&a.author())
                    .is_some_and(|v| committee.contains(v))
            {
                by_sub.entry(b.submission).or_default().push(a.clone());
            }
        }
        for (sid, atts) in by_sub {
            let Some(sub) = self.subs.get(&sid).cloned() else {
                continue;
            };
            let Some(truth) = self.blobs.truth(&sub.blob).cloned() else {
                continue;
            };
            let (ref_score, ref_verdict) = FakeEvaluator::reference(&truth, sub.author);
            // The submission's committee as dealt (per-submission draws), else the round's.
            let members: Vec<PublicKey> = match self.sub_committees.get(&sid) {
                Some(ids) => ids
                    .iter()
                    .map(|a| self.actors[*a as usize].pubkey)
                    .collect(),
                None => open.validators.clone(),
            };
            let ctx = TallyContext {
                run_id: &open.run_id,
                round: open.round,
                phase: Phase::Initial,
                submission: sid,
                checkpoint: open.checkpoint,
                gradient: sub.blob,
                eval_seed: eval_seed(&open.seed, &sid),
                validators: &members,
                k: open.k as usize,
                tolerance: open.tolerance,
            };
            let signed: Vec<_> = atts.iter().map(|a| a.attestation.clone()).collect();
            let t = tally(&ctx, &signed);
            let quorum = t.quorum_accepts();
            for pk in t.outliers() {
                if let Some(v) = self.by_key.get(&pk) {
                    *self
                        .stats
                        .outlier_flags
                        .entry(self.actors[*v as usize].kind)
                        .or_insert(0) += 1;
                }
            }
            for a in &atts {
                let Some(&v) = self.by_key.get(&a.author()) else {
                    continue;
                };
                let b = a.attestation.body();
                let kind = self.actors[v as usize].kind;
                let accept = b.verdict.is_accept();
                if kind == ActorKind::HonestValidator && accept != quorum {
                    self.stats.honest_dissent += 1;
                }
                // "Unavailable" is not replayable (nobody can prove a blob was served), so it is
                // never a fraud proof; it can only cost the worker the tranche.
                let unavailable = b.verdict == Verdict::Reject(RejectCode::Unavailable);
                let wrong = !unavailable
                    && (accept != ref_verdict.is_accept()
                        || (accept && !open.tolerance.agrees(b.score, ref_score)));
                if !wrong {
                    continue;
                }
                self.stats.fraud_proofs.push(FraudProof {
                    round: r,
                    validator: v,
                    kind,
                    event: a.id().to_hex(),
                    event_json: nostr::JsonUtil::as_json(a.event()),
                    attested: b.score.0,
                    attested_accept: accept,
                    replayed: ref_score.0,
                    replayed_accept: ref_verdict.is_accept(),
                });
            }
        }
        // Censoring relays: compare what each relay stores for this round.
        for (i, relay) in self.relays.relays().iter().enumerate() {
            if self.stats.relay_flagged.contains_key(&i) {
                continue;
            }
            if evs.iter().any(|ev| !relay.has(&ev.event().id)) {
                self.stats.relay_flagged.insert(i, r);
            }
        }
    }
}
