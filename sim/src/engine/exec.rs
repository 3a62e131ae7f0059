//! Executing the actions a role machine returns, against the fake world: what `l402-node` does
//! with nostr-sdk, ldk-node, iroh-blobs and candle, done in memory.

use std::rc::Rc;

use l402_protocol::events::{BlobHash, Evidence, SubmissionId, VerifiedAny};
use l402_protocol::events::{MergedList, MergedSubmission, Score, Seed32};
use l402_protocol::quorum::{Phase, RejectCode, Verdict};
use l402_protocol::round::{Action, Input};
use nostr::{Event, EventId, PublicKey};
use rand::Rng;

use super::{round_of, HtlcMeta, Item, Simulation, SubInfo};
use crate::actors::{ActorId, ActorKind};
use crate::world::{FakeEvaluator, HtlcState, Published};

/// A short label of an action for logs.
fn action_label(a: &Action) -> String {
    match a {
        Action::Publish(ev) => format!("publish kind {} {}", ev.kind.as_u16(), ev.id),
        Action::Claim { payment_hash, .. } => format!("claim {}", &payment_hash.to_hex()[..12]),
        Action::FailBack { payment_hash } => format!("fail-back {}", &payment_hash.to_hex()[..12]),
        Action::CreateHoldInvoice {
            payment_hash,
            tranche,
            ..
        } => format!("create-invoice t{tranche} {}", &payment_hash.to_hex()[..12]),
        other => {
            let s = format!("{other:?}");
            s.chars().take(120).collect()
        }
    }
}

impl Simulation {
    fn ln_delay(&mut self) -> u64 {
        self.rng.gen_range(0..=self.sc.timing.ln_delay_secs)
    }

    fn compute(&mut self, delay: u64, to: ActorId, round: u64, input: Input) {
        let epoch = self.epochs[to as usize];
        self.schedule(
            delay,
            Item::Compute {
                to,
                round,
                input,
                epoch,
            },
        );
    }

    fn ln(&mut self, delay: u64, to: ActorId, round: u64, input: Input) {
        self.schedule(delay, Item::Ln { to, round, input });
    }

    /// Execute `actions` returned by actor `from`'s machine of round `round`, in order.
    pub(crate) fn execute(&mut self, from: ActorId, round: u64, actions: Vec<Action>) {
        for a in actions {
            match &a {
                Action::Publish(ev) => {
                    let id = ev.id.to_bytes();
                    self.log_bytes(16, from, round, &id);
                }
                other => {
                    let s = format!("{other:?}");
                    self.log_bytes(17, from, round, s.as_bytes());
                }
            }
            self.execute_one(from, round, a);
        }
    }

    fn execute_one(&mut self, from: ActorId, round: u64, a: Action) {
        let now = self.clock.now;
        tracing::trace!(seed = self.seed, actor = from, round, now, action = %action_label(&a), "execute");
        match a {
            Action::Publish(ev) => {
                let second = self.equivocation(from, &ev);
                self.publish(from, ev);
                if let Some(e) = second {
                    self.stats.equivocations_signed += 1;
                    self.publish(from, e);
                }
            }
            Action::CreateHoldInvoice {
                submission,
                tranche,
                payment_hash,
                amount_msat,
                claim_deadline,
            } => {
                let t = &self.sc.timing;
                let expiry = self.clock.height_at(claim_deadline) + t.cltv_margin_blocks;
                match self.ledger.create_hold_invoice(
                    from,
                    payment_hash,
                    amount_msat,
                    claim_deadline,
                    expiry,
                    now,
                ) {
                    Ok(bolt11) => {
                        let spec = self
                            .rounds
                            .get(&round)
                            .and_then(|r| r.open.tranches.get(tranche as usize).copied());
                        if let Some(spec) = spec {
                            self.htlc_meta.entry(payment_hash).or_insert(HtlcMeta {
                                round,
                                submission,
                                tranche,
                                threshold: spec.threshold,
                                holdback: spec.holdback,
                            });
                        }
                        let d = self.ln_delay();
                        self.compute(
                            d,
                            from,
                            round,
                            Input::InvoiceCreated {
                                payment_hash,
                                bolt11,
                            },
                        );
                    }
                    Err(e) => self.ledger_error("create invoice", &e),
                }
            }
            Action::PayHoldInvoices { invoices, .. } => {
                for (inv, amount) in invoices {
                    match self.ledger.pay_hold_invoice(
                        from,
                        &inv.bolt11,
                        inv.payment_hash,
                        amount,
                        now,
                    ) {
                        Ok(Some(payee)) => {
                            let r = self
                                .htlc_meta
                                .get(&inv.payment_hash)
                                .map_or(round, |m| m.round);
                            let d = self.ln_delay();
                            self.ln(
                                d,
                                payee,
                                r,
                                Input::HtlcHeld {
                                    payment_hash: inv.payment_hash,
                                    amount_msat: amount,
                                },
                            );
                        }
                        Ok(None) => {}
                        Err(e) => self.ledger_error("pay", &e),
                    }
                }
            }
            Action::Claim {
                payment_hash,
                preimage,
                ..
            } => {
                let height = self.clock.height();
                match self.ledger.claim(payment_hash, &preimage, height, now) {
                    Ok(_) => {
                        let d = self.ln_delay();
                        self.ln(d, from, round, Input::HtlcClaimed { payment_hash });
                    }
                    Err(e) => self.stats.refused_claims.push(format!(
                        "round {round}: actor {from} claim of {} refused: {e}",
                        payment_hash.to_hex()
                    )),
                }
            }
            Action::FailBack { payment_hash } => match self.ledger.fail_back(payment_hash, now) {
                Ok(HtlcState::Settled) => {
                    self.ln(0, from, round, Input::HtlcClaimed { payment_hash });
                }
                Ok(_) => {
                    let d = self.ln_delay();
                    self.ln(d, from, round, Input::HtlcFailed { payment_hash });
                }
                Err(e) => self.ledger_error("fail back", &e),
            },
            Action::ReleaseBlob { blob, to } => {
                self.blobs.release(from, &blob, &to);
                if self.actors[from as usize].kind == ActorKind::CorruptingProvider {
                    // Honest bytes for the committee only (not the coordinator).
                    let coordinator = self.actors[self.coordinator as usize].pubkey;
                    let committee: Vec<PublicKey> =
                        to.iter().copied().filter(|k| *k != coordinator).collect();
                    self.blobs.corrupt(from, &blob, &committee);
                }
            }
            Action::Evaluate {
                submission,
                phase,
                blob,
                eval_seed,
                ..
            } => self.evaluate(from, round, submission, phase, blob, eval_seed),
            Action::Audit { submission, .. } => {
                // The coordinator's replay of a disputed evaluation: the noise-free reference
                // anyone can recompute from (checkpoint, blob, eval seed).
                self.stats.audit_replays += 1;
                let (score, verdict) = self
                    .subs
                    .get(&submission)
                    .and_then(|s| {
                        let t = self.blobs.truth(&s.blob)?;
                        Some(FakeEvaluator::reference(t, s.author))
                    })
                    .unwrap_or((Score(0), Verdict::Reject(RejectCode::Unavailable)));
                let d = self.rng.gen_range(1..=self.sc.timing.eval_delay_secs);
                self.compute(
                    d,
                    from,
                    round,
                    Input::Audited {
                        submission,
                        score,
                        verdict,
                    },
                );
            }
            Action::Aggregate { list } => {
                let checkpoint = self.aggregate(round, list.parent, &list.merged);
                let (hash, bytes) = list.blob();
                self.merged_lists.insert(hash, bytes);
                self.compute(1, from, round, Input::CheckpointReady { checkpoint });
            }
            Action::PayValidatorFee { .. } => self.stats.validator_fees += 1,
            Action::RefundToll {
                peer,
                amount_msat,
                bolt11,
                ..
            } => {
                // The fake Lightning: the refund invoice names the peer; pay it once.
                let first = self.stats.refund_invoices_paid.insert(bolt11);
                if let Some(to) = self.by_key.get(&peer).copied().filter(|_| first) {
                    match self.ledger.transfer(from, to, amount_msat) {
                        Ok(()) => {
                            *self.stats.tolls_refunded_msat.entry(to).or_insert(0) += amount_msat
                        }
                        Err(e) => {
                            *self
                                .stats
                                .ledger_errors
                                .entry(format!("refund: {e}"))
                                .or_insert(0) += 1
                        }
                    }
                }
            }
            Action::Refused { .. } => self.stats.refusals_seen += 1,
            Action::Ignored { event, reason } => self.on_ignored(from, event, reason),
            _ => {
                *self
                    .stats
                    .ignored
                    .entry("unknown action".into())
                    .or_insert(0) += 1
            }
        }
    }

    fn ledger_error(&mut self, op: &str, e: &crate::world::LedgerError) {
        *self
            .stats
            .ledger_errors
            .entry(format!("{op}: {e}"))
            .or_insert(0) += 1;
    }

    fn on_ignored(&mut self, from: ActorId, event: EventId, reason: String) {
        let author_kind = self
            .published
            .get(&event)
            .and_then(|e| self.by_key.get(&e.event().pubkey))
            .map(|a| self.actors[*a as usize].kind);
        if from == self.coordinator
            && reason.starts_with("token:")
            && matches!(
                author_kind,
                Some(ActorKind::SybilForged | ActorKind::SybilPaid)
            )
        {
            self.stats.sybil_token_rejected.insert(event);
        }
        // Bucket by the reason's prefix so the map stays small.
        let key: String = reason
            .split(':')
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        *self.stats.ignored.entry(key).or_insert(0) += 1;
    }

    /// Publish to every relay; schedule live pushes to subscribers.
    pub(super) fn publish(&mut self, from: ActorId, ev: Event) {
        let now = self.clock.now;
        let checked = self.prevalidated.remove(&ev.id);
        match self.relays.publish_checked(&ev, now, checked) {
            Published::New { event, stored_by } => {
                self.stats.published += 1;
                let id = ev.id;
                self.published.insert(id, Rc::clone(&event));
                let round = round_of(&event);
                if let Some(r) = round {
                    self.round_events
                        .entry(r)
                        .or_default()
                        .push(Rc::clone(&event));
                    let named = match &*event {
                        VerifiedAny::EscrowOffer(o) => Some(o.peer),
                        VerifiedAny::Attestation(a) => Some(a.peer),
                        VerifiedAny::SubmissionRefusal(r) => Some(r.peer),
                        _ => None,
                    };
                    if let Some(a) = named.and_then(|pk| self.by_key.get(&pk).copied()) {
                        self.peer_events
                            .entry((r, a))
                            .or_default()
                            .push(Rc::clone(&event));
                    }
                }
                self.on_published(from, &event);
                let submission = match (&*event, round) {
                    (VerifiedAny::Submission(s), Some(r)) if self.pool.is_some() => Some((s, r)),
                    _ => None,
                };
                let subscribers = self.subscribers(&event, from);
                if let Some(r) = round {
                    self.index_event(r, &event, from, &subscribers);
                }
                for to in subscribers {
                    let Some(push) = self.relays.push(&stored_by, &mut self.rng) else {
                        continue;
                    };
                    if let Some((s, r)) = submission.filter(|_| to == self.coordinator) {
                        // Its offer is computed ahead with the others (`prepare_offers`).
                        self.offer_backlog
                            .push((now + push.delay, (to, r), s.clone()));
                    }
                    self.schedule(
                        push.delay,
                        Item::Event {
                            to,
                            ev: Rc::clone(&event),
                            dup: false,
                        },
                    );
                    if push.duplicate {
                        self.schedule(
                            push.delay + 1,
                            Item::Event {
                                to,
                                ev: Rc::clone(&event),
                                dup: true,
                            },
                        );
                    }
                }
            }
            Published::Duplicate => self.stats.relay_dedupes += 1,
            Published::Censored => self.stats.censored_everywhere += 1,
            Published::Rejected(e) => {
                if from == self.coordinator && self.stats.coordinator_refused.len() < 16 {
                    let round = ev
                        .tags
                        .iter()
                        .find(|t| t.kind().as_str() == l402_protocol::events::tags::ROUND)
                        .and_then(|t| t.content())
                        .unwrap_or("?")
                        .to_owned();
                    self.stats.coordinator_refused.push(format!(
                        "round {round}: the coordinator's kind-{} event was refused by every relay: {e}",
                        ev.kind.as_u16()
                    ));
                }
                *self
                    .stats
                    .relay_rejected
                    .entry(e.to_nip01().chars().take(60).collect())
                    .or_insert(0) += 1
            }
        }
    }

    /// Bookkeeping of a newly stored event.
    fn on_published(&mut self, from: ActorId, ev: &VerifiedAny) {
        match ev {
            VerifiedAny::Submission(s) => {
                self.subs.insert(
                    SubmissionId::of_event(s.event()),
                    SubInfo {
                        author: from,
                        round: s.round,
                        blob: s.blob,
                    },
                );
            }
            VerifiedAny::EscrowOffer(o) if from == self.coordinator => {
                if let Some(d) = o.dealings.first() {
                    let ids = d
                        .body()
                        .validators
                        .iter()
                        .filter_map(|pk| self.by_key.get(pk).copied())
                        .collect();
                    self.sub_committees.entry(o.submission).or_insert(ids);
                }
            }
            VerifiedAny::Checkpoint(c) if from == self.coordinator => {
                let r = c.round;
                if self
                    .rounds
                    .get(&r)
                    .is_some_and(|rec| rec.checkpoint.is_some())
                {
                    return;
                }
                // What anyone recomputing the checkpoint does: fetch the list the event names by
                // hash and decode it against the event.
                let listed = self
                    .merged_lists
                    .get(&c.merged_list)
                    .ok_or_else(|| "blob not stored".to_owned())
                    .and_then(|b| MergedList::from_bytes(b, c).map_err(|e| e.to_string()));
                if let Some(rec) = self.rounds.get_mut(&r) {
                    rec.checkpoint = Some(c.checkpoint);
                    let err = match listed {
                        Ok(l)
                            if l.merged
                                .iter()
                                .map(|m| m.submission)
                                .eq(rec.merged.iter().copied()) =>
                        {
                            None
                        }
                        Ok(_) => Some(format!("round {r}: merged list differs from the aggregate")),
                        Err(e) => Some(format!("round {r}: merged list: {e}")),
                    };
                    self.stats.merged_list_errors.extend(err);
                }
                self.report_progress();
                self.prev_checkpoint = self.last_checkpoint;
                self.last_checkpoint = c.checkpoint;
                if r < self.sc.rounds {
                    self.schedule(1, Item::OpenRound(r + 1));
                }
            }
            VerifiedAny::Evidence(e) => {
                let accused = e.accused();
                let dealer = matches!(
                    **e,
                    Evidence::BadShare(_)
                        | Evidence::WrongPreimage(_)
                        | Evidence::MalformedDealing(_)
                );
                if dealer && accused == self.actors[self.coordinator as usize].pubkey {
                    self.stats.dealer_evidence += 1;
                } else if matches!(**e, Evidence::Equivocation(_)) {
                    self.stats.equivocators_named.insert(accused);
                } else if let Evidence::WrongScore(w) = &**e {
                    // The coordinator's audit convicted a validator: with `validators.audit`
                    // the next rounds' pools leave it out, as the node's coordinator does.
                    self.stats.convicted.insert(accused);
                    let round = w.attestation().body().round;
                    if let Some(&v) = self.by_key.get(&accused) {
                        let actor = &mut self.actors[v as usize];
                        if self.sc.validators.audit && actor.excluded_from.is_none() {
                            actor.excluded_from = Some(round + 1);
                            self.stats.excluded.push((v, round));
                        }
                    }
                } else {
                    self.stats.other_evidence += 1;
                }
            }
            _ => {}
        }
    }

    /// The coordinator fetches a merged blob as the node does (`Components::fetch_merged`): its
    /// author first, then the committee members that hold it, providers with earlier corrupt
    /// transfers last; a corrupt transfer is caught and the next holder tried.
    fn fetch_merged(&mut self, m: &MergedSubmission) {
        let c = self.coordinator;
        let Some(author) = self.subs.get(&m.submission).map(|s| s.author) else {
            return;
        };
        let mut providers = vec![author];
        providers.extend(
            self.blobs
                .holders(&m.blob)
                .filter(|h| *h != author && *h != c),
        );
        providers.sort_by_key(|p| self.stats.strikes.get(p).copied().unwrap_or(0));
        let pk = self.actors[c as usize].pubkey;
        let got = self.blobs.fetch_from(c, &pk, &m.blob, &providers);
        for p in &got.corrupt {
            *self.stats.strikes.entry(*p).or_insert(0) += 1;
        }
        self.stats.corrupt_transfers += got.corrupt.len() as u64;
        match got.from {
            Some(_) if !got.corrupt.is_empty() => self.stats.corrupt_recovered += 1,
            Some(_) => {}
            None => self.stats.merge_unavailable += 1,
        }
    }

    /// What an equivocating validator publishes next to `ev`, if `ev` is one of its
    /// attestations: the node's conflicting attestation, signed with the run's RNG.
    fn equivocation(&mut self, from: ActorId, ev: &nostr::Event) -> Option<nostr::Event> {
        let a = &self.actors[from as usize];
        if a.kind != ActorKind::EquivocatingValidator {
            return None;
        }
        let keys = a.keys.clone();
        let att = l402_protocol::events::parse::<l402_protocol::events::AttestationEvent>(ev, None)
            .ok()?;
        let content = l402_node::runtime::exec::conflicting_attestation(&keys, &att)?;
        let b = content.attestation.body();
        let in_time = self.rounds.get(&b.round).is_some_and(|r| {
            b.phase == l402_protocol::quorum::Phase::Initial
                && self.clock.now <= r.open.attest_deadline
        });
        if in_time {
            self.stats.equivocated_in_time.insert(keys.public_key());
        }
        let at = nostr::Timestamp::from_secs(self.clock.now);
        l402_protocol::events::sign_event(&content, &keys, at, &mut self.rng).ok()
    }

    /// A validator evaluates a submission according to its behaviour; the result comes back
    /// as `EvalDone` after the evaluation delay.
    fn evaluate(
        &mut self,
        v: ActorId,
        round: u64,
        submission: SubmissionId,
        phase: Phase,
        blob: BlobHash,
        eval_seed: Seed32,
    ) {
        self.stats.evaluations += 1;
        let kind = self.actors[v as usize].kind;
        let pk = self.actors[v as usize].pubkey;
        let sub = self.subs.get(&submission).cloned();
        let (score, verdict) = match (kind, sub) {
            (_, None) => (Score(0), Verdict::Reject(RejectCode::Malformed)),
            (ActorKind::LazyValidator, _) => {
                (Score(self.sc.validators.lazy_score), Verdict::Accept)
            }
            (ActorKind::ColludingValidator, Some(s)) => {
                if self.actors[s.author as usize].kind.is_adversary() {
                    (Score(self.sc.escrow.target_score * 2), Verdict::Accept)
                } else {
                    (Score(-1000), Verdict::Reject(RejectCode::LossIncreased))
                }
            }
            (_, Some(s)) => {
                let truth = self.blobs.fetch(v, &pk, &blob);
                self.evaluator
                    .evaluate(truth.as_ref(), s.author, &eval_seed, &pk)
            }
        };
        let d = self.rng.gen_range(1..=self.sc.timing.eval_delay_secs);
        self.compute(
            d,
            v,
            round,
            Input::EvalDone {
                submission,
                phase,
                score,
                verdict,
                // Fast mode has no Lightning: a fake fee invoice, so the coordinator's fee
                // decisions run (and are counted) as they do in the node.
                fee_invoice: Some(format!("fake-fee-invoice/{v}/{submission}/{}", phase as u8)),
            },
        );
    }

    /// The coordinator aggregates the merged submissions: the checkpoint hash commits to the
    /// parent and the merged blobs; the held-out loss moves by the loss model
    /// (`world::FakeLossModel`) with the merged updates' true qualities.
    fn aggregate(&mut self, round: u64, parent: BlobHash, merged: &[MergedSubmission]) -> BlobHash {
        let mut h = blake3::Hasher::new();
        h.update(b"l402-sim/checkpoint/v1");
        h.update(&parent.0);
        let first = self
            .rounds
            .get(&round)
            .is_some_and(|r| r.merged.is_empty() && !r.audited);
        let mut qualities = Vec::with_capacity(merged.len());
        for m in merged {
            h.update(&m.submission.0);
            h.update(&m.blob.0);
            if first {
                self.fetch_merged(m);
            }
            qualities.push(self.blobs.truth(&m.blob).map_or(0, |t| t.quality));
        }
        if first {
            self.model_progress += self.sc.loss.step(&qualities, self.sc.peers.quality);
            self.model_loss = self.sc.loss.at(self.model_progress);
            let loss = self.model_loss;
            if let Some(rec) = self.rounds.get_mut(&round) {
                rec.merged = merged.iter().map(|m| m.submission).collect();
                rec.model_loss = loss;
            }
            self.audit_round(round);
        }
        BlobHash(*h.finalize().as_bytes())
    }
}
