//! The coordinator (payer) of one round: open it, check submission tokens, deal the escrow,
//! pay the hold invoices, tally the attestations, merge exactly the submissions with a passing
//! quorum, replay the disputed evaluations (publishing wrong-score evidence against the
//! validators the replay contradicts) and publish the checkpoint.
//!
//! Spec: specs/L2T-03-round.md#coordinator

use std::collections::{BTreeMap, BTreeSet};

use nostr::{Event, Keys};
use serde::{Deserialize, Serialize};

use super::{ignored, op_seed, persist, restore, sign, Action, Input, PersistError, RoleError};
use crate::escrow::{deal_in_offer, Corruption, DealingParams, OfferCipher};
use crate::events::{
    parse, AttestationEvent, Checkpoint, EscrowLock, EscrowOffer, Evidence, LockState, MergedList,
    MergedSubmission, Refusal, RoundOpen, RoundScope, Submission, SubmissionId, SubmissionRefusal,
    UnixTime, Verified, VerifiedAny,
};
use crate::l402;
use crate::quorum::{
    committee, disputed, eval_seed, tally, Phase, Replay, SignedAttestation, TallyContext,
    WrongScoreEvidence,
};

const ROLE: &str = "coordinator";

/// Coordinator settings besides the round itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoordinatorConfig {
    /// Server secret of the L402 submission tokens.
    pub l402_secret: [u8; 32],
    /// L402 service name of submissions.
    pub service: String,
    /// Uses already consumed per token id (hex), carried across rounds by the node.
    pub token_uses: BTreeMap<String, u64>,
    /// Always [`Corruption::None`] in a real node; the simulator's dishonest-dealer actor (and
    /// the tests) set it to deal bad escrows through the same state machine.
    #[serde(default)]
    pub dealing_corruption: Corruption,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CSub {
    submission: Verified<Submission>,
    offer: Option<Verified<EscrowOffer>>,
    /// The worker's invoices, once accepted (and paid).
    lock: Option<Verified<EscrowLock>>,
    attestations: Vec<Verified<AttestationEvent>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CoordinatorState {
    seed: [u8; 32],
    open: Verified<RoundOpen>,
    config: CoordinatorConfig,
    subs: BTreeMap<SubmissionId, CSub>,
    aggregate: Option<Vec<MergedSubmission>>,
    checkpoint: Option<Verified<Checkpoint>>,
    published: Vec<Event>,
    /// Toll refunds owed for refused submissions (re-requested on resume; paying is idempotent
    /// per payment hash in the shell).
    #[serde(default)]
    refunds: Vec<Refund>,
    /// Disputed submissions being replayed (L2T-04 §audit): the checkpoint waits for them.
    #[serde(default)]
    audits: BTreeMap<SubmissionId, Audit>,
    /// The aggregate, stored while audits are still running.
    #[serde(default)]
    ready: Option<crate::events::BlobHash>,
    /// Validators whose signed scores a replay contradicted (evidence published).
    #[serde(default)]
    convicted: BTreeSet<nostr::PublicKey>,
}

/// A disputed submission's audit: the counted attestations, then the replay.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Audit {
    blob: crate::events::BlobHash,
    /// Canonical encodings of the counted attestations (signature-checked when tallied).
    attestations: Vec<Vec<u8>>,
    replay: Option<Replay>,
}

impl Audit {
    fn action(&self, open: &RoundOpen, submission: SubmissionId) -> Action {
        Action::Audit {
            submission,
            checkpoint: open.checkpoint,
            blob: self.blob,
            eval_seed: eval_seed(&open.seed, &submission),
        }
    }
}

/// A toll refund owed to a refused submission's author.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Refund {
    submission: SubmissionId,
    peer: nostr::PublicKey,
    bolt11: String,
    amount_msat: u64,
}

impl Refund {
    fn action(&self) -> Action {
        Action::RefundToll {
            submission: self.submission,
            peer: self.peer,
            bolt11: self.bolt11.clone(),
            amount_msat: self.amount_msat,
        }
    }
}

/// The coordinator's state machine for one round.
#[derive(Debug)]
pub struct Coordinator {
    keys: Keys,
    st: CoordinatorState,
    /// Offers a driver computed ahead ([`Coordinator::prepare_offer`]); never persisted.
    prepared: BTreeMap<SubmissionId, PreparedOffer>,
}

/// What [`Coordinator::make_offer`] produced: the signed offer event and the offer as the
/// relays' `parse` would return it.
#[derive(Clone, Debug)]
struct MadeOffer {
    ev: Option<Event>,
    verified: Option<Verified<EscrowOffer>>,
}

/// Why a submission is turned away before any offer work ([`Coordinator::turned_away`]).
enum TurnedAway {
    /// Already held: a duplicate delivery, nothing to say.
    Held,
    /// Out of scope or late: reported as ignored, with this reason.
    Ignored(String),
}

/// An offer computed ahead of its submission's delivery ([`Coordinator::prepare_offer`]).
#[derive(Clone, Debug)]
pub struct PreparedOffer {
    id: SubmissionId,
    now: UnixTime,
    made: Result<MadeOffer, String>,
}

impl PreparedOffer {
    /// The offer event the coordinator will publish, if one could be made (a driver may run
    /// the relays' checks of it ahead too).
    pub fn event(&self) -> Option<&Event> {
        self.made.as_ref().ok().and_then(|m| m.ev.as_ref())
    }
}

impl Coordinator {
    /// Open a round at `now`. The round open is signed here and validated like any received one
    /// (seed derivation, committee, deadlines, schedule); it is published on the first `handle`.
    pub fn new(
        keys: Keys,
        seed: [u8; 32],
        now: UnixTime,
        open: RoundOpen,
        config: CoordinatorConfig,
    ) -> Result<Self, RoleError> {
        let ev = sign(&keys, &seed, now, "round-open", &[], &open)
            .ok_or_else(|| RoleError::RoundOpen("signing failed".into()))?;
        let open =
            parse::<RoundOpen>(&ev, None).map_err(|e| RoleError::RoundOpen(e.to_string()))?;
        Ok(Self {
            keys,
            st: CoordinatorState {
                seed,
                open,
                config,
                subs: BTreeMap::new(),
                aggregate: None,
                checkpoint: None,
                published: Vec::new(),
                refunds: Vec::new(),
                audits: BTreeMap::new(),
                ready: None,
                convicted: BTreeSet::new(),
            },
            prepared: BTreeMap::new(),
        })
    }

    /// The verified round open (what peers and validators are constructed from).
    pub fn round_open(&self) -> &Verified<RoundOpen> {
        &self.st.open
    }

    /// Token uses per token id, to carry into the next round.
    pub fn token_uses(&self) -> &BTreeMap<String, u64> {
        &self.st.config.token_uses
    }

    /// The published checkpoint, once the round is over.
    pub fn checkpoint(&self) -> Option<&Verified<Checkpoint>> {
        self.st.checkpoint.as_ref()
    }

    /// Validators whose signed scores this round's audit contradicted (wrong-score evidence is
    /// published for each): the node leaves them out of the run's later pools.
    pub fn convicted(&self) -> &BTreeSet<nostr::PublicKey> {
        &self.st.convicted
    }

    /// The submissions this round took (escrow offered), in id order. A later submission of
    /// the same blob is never among them: first come is kept, the copy is ignored.
    pub fn accepted(&self) -> impl Iterator<Item = SubmissionId> + '_ {
        self.st.subs.keys().copied()
    }

    /// Persist (versioned CBOR).
    pub fn to_bytes(&self) -> Vec<u8> {
        persist(ROLE, self.keys.public_key(), &self.st)
    }

    /// Restore with the same keys, then call [`Coordinator::resume`].
    pub fn from_bytes(keys: Keys, bytes: &[u8]) -> Result<Self, PersistError> {
        let st = restore(ROLE, keys.public_key(), bytes)?;
        Ok(Self {
            keys,
            st,
            prepared: BTreeMap::new(),
        })
    }

    fn scope(&self) -> RoundScope {
        self.st.open.scope(self.keys.public_key())
    }

    fn publish(&mut self, ev: Option<Event>, out: &mut Vec<Action>) {
        if let Some(ev) = ev {
            self.st.published.push(ev.clone());
            out.push(Action::Publish(ev));
        }
    }

    /// After a restart: re-publish, re-request payments (idempotent per payment hash in the
    /// shell) and the aggregate.
    pub fn resume(&mut self, now: UnixTime) -> Vec<Action> {
        let mut out = vec![Action::Publish(self.st.open.event().clone())];
        out.extend(self.st.published.iter().cloned().map(Action::Publish));
        let pays: Vec<SubmissionId> = self
            .st
            .subs
            .iter()
            .filter(|(_, s)| s.lock.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in pays {
            if let Some(a) = self.pay_action(&id) {
                out.push(a);
            }
        }
        out.extend(self.st.refunds.iter().map(Refund::action));
        if let (Some(merged), None) = (&self.st.aggregate, &self.st.checkpoint) {
            if self.st.ready.is_none() {
                out.push(Action::Aggregate {
                    list: self.merged_list(merged.clone()),
                });
            }
            let open = self.st.open.value();
            out.extend(
                self.st
                    .audits
                    .iter()
                    .filter(|(_, a)| a.replay.is_none())
                    .map(|(id, a)| a.action(open, *id)),
            );
        }
        out.extend(self.handle(now, Input::Tick));
        out
    }

    /// Handle one input at time `now`.
    pub fn handle(&mut self, now: UnixTime, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.st.published.is_empty() {
            let ev = self.st.open.event().clone();
            self.publish(Some(ev), &mut out);
        }
        match input {
            Input::Event(VerifiedAny::Submission(s)) => self.on_submission(now, s, &mut out),
            Input::Event(VerifiedAny::EscrowLock(l)) => self.on_lock(now, l, &mut out),
            Input::Event(VerifiedAny::Attestation(a)) => self.on_attestation(a, &mut out),
            Input::CheckpointReady { checkpoint } => self.on_checkpoint(now, checkpoint, &mut out),
            Input::Audited {
                submission,
                score,
                verdict,
            } => self.on_audited(now, submission, Replay { score, verdict }, &mut out),
            // Offers prepared for submissions that never arrived (dropped on the way).
            Input::Tick => self.prepared.retain(|_, p| p.now >= now),
            _ => {}
        }
        if now >= self.st.open.attest_deadline && self.st.aggregate.is_none() {
            self.close(now, &mut out);
        }
        out
    }

    /// Why submission `s` (id `id`) arriving at `now` is turned away before any offer work:
    /// out of this round's scope, or after the submit deadline, or already held. The checks
    /// that come after (a copy, the token, the cap) depend on what arrived before it.
    fn turned_away(
        &self,
        now: UnixTime,
        s: &Verified<Submission>,
        id: &SubmissionId,
    ) -> Result<(), TurnedAway> {
        if let Err(e) = self.scope().check_submission(s) {
            return Err(TurnedAway::Ignored(e.to_string()));
        }
        if self.st.subs.contains_key(id) {
            return Err(TurnedAway::Held);
        }
        if now > self.st.open.submit_deadline {
            let late = "submission after the submit deadline";
            return Err(TurnedAway::Ignored(late.into()));
        }
        Ok(())
    }

    /// The context a submission's L402 token is verified in, given the uses already consumed.
    fn token_context<'a>(
        &'a self,
        now: UnixTime,
        presenter: &'a nostr::PublicKey,
        uses_so_far: u64,
    ) -> l402::VerifyContext<'a> {
        l402::VerifyContext {
            service: &self.st.config.service,
            run: Some(&self.st.open.run_id),
            now,
            uses_so_far,
            presenter: Some(presenter),
        }
    }

    fn on_submission(&mut self, now: UnixTime, s: Verified<Submission>, out: &mut Vec<Action>) {
        let id = SubmissionId::of_event(s.event());
        let prepared = self.prepared.remove(&id);
        match self.turned_away(now, &s, &id) {
            Ok(()) => {}
            Err(TurnedAway::Held) => return,
            Err(TurnedAway::Ignored(reason)) => {
                out.push(ignored(s.event(), reason));
                return;
            }
        }
        // The blob hash is the commitment: the same bits submitted again are a copy of the
        // first submission (a leak), never independent work. First come is kept.
        if let Some(first) = self
            .st
            .subs
            .iter()
            .find(|(_, c)| c.submission.blob == s.blob)
            .map(|(id, _)| *id)
        {
            out.push(ignored(
                s.event(),
                format!("copy: blob already submitted as {first}"),
            ));
            return;
        }
        let author = s.author();
        let uses_key = |t: &[u8; 32]| hex::encode(t);
        let ctx = |uses| self.token_context(now, &author, uses);
        // Learn the token id first (uses 0), then check against the real use count.
        let info = l402::verify_token_string(&self.st.config.l402_secret, &s.token, &ctx(0))
            .and_then(|i| {
                let used = self
                    .st
                    .config
                    .token_uses
                    .get(&uses_key(&i.token_id))
                    .copied()
                    .unwrap_or(0);
                l402::verify_token_string(&self.st.config.l402_secret, &s.token, &ctx(used))
            });
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                out.push(ignored(s.event(), format!("token: {e}")));
                return;
            }
        };
        *self
            .st
            .config
            .token_uses
            .entry(uses_key(&info.token_id))
            .or_insert(0) += 1;
        // The declared cap: a paid submission beyond it is refused in a signed event and its
        // toll refunded (the token is spent either way, so it is refunded once).
        if let Err(refusal) = self.st.open.admits(self.st.subs.len()) {
            self.refuse(now, &s, id, refusal, out);
            return;
        }
        let made = match prepared {
            Some(p) if p.now == now => p.made,
            _ => self.make_offer(now, id, author),
        };
        let MadeOffer { ev, verified } = match made {
            Ok(m) => m,
            Err(e) => {
                out.push(ignored(s.event(), e));
                return;
            }
        };
        self.st.subs.insert(
            id,
            CSub {
                submission: s,
                offer: verified,
                lock: None,
                attestations: Vec::new(),
            },
        );
        self.publish(ev, out);
    }

    /// The offer this coordinator publishes for submission `id` by `author`, received at `now`:
    /// the committee's VRF draw, one dealing per tranche, the signed event. A pure function of
    /// the keys, the seed and the round open, so [`Coordinator::prepare_offer`] may compute it
    /// ahead. `Err` says why no offer could be made (the submission is then ignored).
    fn make_offer(
        &self,
        now: UnixTime,
        id: SubmissionId,
        author: nostr::PublicKey,
    ) -> Result<MadeOffer, String> {
        let open = self.st.open.value().clone();
        // This submission's committee: the VRF of our key over it draws `n` from the pool.
        let drawn = committee::prove(&self.keys, &open.run_id, open.round, &open.seed, &id)
            .ok_or_else(|| "committee: invalid coordinator key".to_owned())
            .and_then(|(proof, seed)| {
                open.committee_for_seed(&seed)
                    .map(|c| (proof, c))
                    .map_err(|e| format!("committee: {e}"))
            });
        let (proof, members) = drawn?;
        // One ephemeral key `E` for every offer of the round (L2T-05 §dealing): its channel with
        // each pool member is derived once per round (`OfferCipher::for_round` remembers it), not once
        // per offer.
        let eph_seed = op_seed(
            &self.st.seed,
            "ephemeral",
            &[open.run_id.as_str().as_bytes(), &open.round.to_be_bytes()],
        );
        let cipher = OfferCipher::for_round(&eph_seed, &members)
            .map_err(|e| format!("dealing failed: {e}"))?;
        let mut dealings = Vec::with_capacity(open.tranches.len());
        for (i, spec) in open.tranches.iter().enumerate() {
            let p = DealingParams {
                run_id: &open.run_id,
                round: open.round,
                submission: id,
                peer: author,
                tranche: i as u32,
                spec: *spec,
                claim_deadline: open.claim_deadline_for(spec),
                validators: &members,
                k: open.k as usize,
            };
            let seed = op_seed(&self.st.seed, "deal", &[&id.0, &(i as u32).to_be_bytes()]);
            let (d, _preimage) = deal_in_offer(
                &self.keys,
                &p,
                &seed,
                &cipher,
                self.st.config.dealing_corruption,
            )
            .map_err(|e| format!("dealing failed: {e}"))?;
            dealings.push(d);
        }
        let offer = EscrowOffer {
            run_id: open.run_id.clone(),
            round: open.round,
            submission: id,
            peer: author,
            dealings,
            committee: proof,
            round_seed: Some(open.seed),
        };
        let ev = sign(&self.keys, &self.st.seed, now, "offer", &[&id.0], &offer);
        // Our own offer, just signed: kept as the relays' `parse` would return it, without
        // verifying our own signatures again (5 Schnorr checks and a decode per submission).
        let verified = ev
            .as_ref()
            .and_then(|e| crate::events::parse::own(e, offer, EscrowOffer::check).ok());
        Ok(MadeOffer { ev, verified })
    }

    /// Computes, changing nothing, the offer [`Coordinator::handle`] would make for `s`
    /// delivered at `now`, or `None` if `s` would be turned away before any offer work (out of
    /// scope, already held, late, a token that does not verify). The offer is a pure function of
    /// this coordinator's keys, seed and round open, so a driver may compute the offers of many
    /// submissions at once, on any threads, and hand each back with
    /// [`Coordinator::stash_offer`]; `handle` then takes it instead of computing it again. It
    /// still applies every rule in order (a copy, the cap, token uses), so an offer prepared for
    /// a submission it then refuses is dropped, and the outcome is the same as without.
    pub fn prepare_offer(&self, now: UnixTime, s: &Verified<Submission>) -> Option<PreparedOffer> {
        let id = SubmissionId::of_event(s.event());
        self.turned_away(now, s, &id).ok()?;
        let author = s.author();
        let ctx = self.token_context(now, &author, 0);
        l402::verify_token_string(&self.st.config.l402_secret, &s.token, &ctx).ok()?;
        Some(PreparedOffer {
            id,
            now,
            made: self.make_offer(now, id, s.author()),
        })
    }

    /// Keeps an offer from [`Coordinator::prepare_offer`] for its submission's delivery. It is
    /// not persisted: after a restart the offer is computed again, with the same result.
    pub fn stash_offer(&mut self, prepared: PreparedOffer) {
        self.prepared.insert(prepared.id, prepared);
    }

    fn refuse(
        &mut self,
        now: UnixTime,
        s: &Verified<Submission>,
        id: SubmissionId,
        refusal: Refusal,
        out: &mut Vec<Action>,
    ) {
        let price = self.st.open.submission_price_msat;
        let refund = s.refund_invoice.clone().filter(|_| price > 0);
        let r = SubmissionRefusal {
            v: crate::events::CONTENT_VERSION,
            run_id: self.st.open.run_id.clone(),
            round: self.st.open.round,
            submission: id,
            peer: s.author(),
            refusal,
            refund_msat: if refund.is_some() { price } else { 0 },
        };
        let ev = sign(&self.keys, &self.st.seed, now, "refusal", &[&id.0], &r);
        self.publish(ev, out);
        out.push(ignored(s.event(), r.refusal.to_string()));
        if let Some(bolt11) = refund {
            let r = Refund {
                submission: id,
                peer: s.author(),
                bolt11,
                amount_msat: price,
            };
            out.push(r.action());
            self.st.refunds.push(r);
        }
    }

    fn pay_action(&self, id: &SubmissionId) -> Option<Action> {
        let sub = self.st.subs.get(id)?;
        let offer = sub.offer.as_ref()?;
        let lock = sub.lock.as_ref()?;
        let invoices = offer
            .dealings
            .iter()
            .filter_map(|d| {
                let b = d.body();
                lock.invoices
                    .iter()
                    .find(|i| i.tranche == b.tranche && i.payment_hash == b.payment_hash)
                    .map(|i| (i.clone(), b.spec.amount_msat))
            })
            .collect();
        Some(Action::PayHoldInvoices {
            submission: *id,
            peer: offer.peer,
            invoices,
        })
    }

    fn on_lock(&mut self, now: UnixTime, l: Verified<EscrowLock>, out: &mut Vec<Action>) {
        if l.state != LockState::Invoices {
            return;
        }
        if let Err(e) = self.scope().check_lock(&l) {
            out.push(ignored(l.event(), e));
            return;
        }
        let deadline = self.st.open.attest_deadline;
        let Some(sub) = self.st.subs.get_mut(&l.submission) else {
            return;
        };
        if l.author() != sub.submission.author() {
            out.push(ignored(l.event(), "invoices not from the worker"));
            return;
        }
        if sub.lock.is_some() {
            return;
        }
        if now >= deadline {
            out.push(ignored(l.event(), "invoices after the lock deadline"));
            return;
        }
        let Some(offer) = &sub.offer else {
            return;
        };
        let ok = l.invoices.len() == offer.dealings.len()
            && offer.dealings.iter().all(|d| {
                l.invoices.iter().any(|i| {
                    i.tranche == d.body().tranche && i.payment_hash == d.body().payment_hash
                })
            });
        if !ok {
            out.push(ignored(l.event(), "invoices do not match the dealings"));
            return;
        }
        sub.lock = Some(l);
        let id = sub.submission.id().to_bytes();
        if let Some(a) = self.pay_action(&SubmissionId(id)) {
            out.push(a);
        }
    }

    fn on_attestation(&mut self, a: Verified<AttestationEvent>, out: &mut Vec<Action>) {
        if let Err(e) = self.scope().check_attestation(&a) {
            out.push(ignored(a.event(), e));
            return;
        }
        let id = a.attestation.body().submission;
        let Some(sub) = self.st.subs.get_mut(&id) else {
            return;
        };
        if !sub.attestations.iter().any(|x| x.id() == a.id()) {
            sub.attestations.push(a);
        }
    }

    /// At the attest deadline: tally, request fees and the aggregate of exactly the submissions
    /// with a passing quorum.
    fn close(&mut self, now: UnixTime, out: &mut Vec<Action>) {
        let open = self.st.open.value().clone();
        let mut merged = Vec::new();
        let mut equivocations = Vec::new();
        let mut audits = BTreeMap::new();
        for (id, sub) in &self.st.subs {
            // The submission's committee, as dealt (no offer: nothing was dealt, nothing passes).
            let members: Vec<nostr::PublicKey> = sub
                .offer
                .as_ref()
                .and_then(|o| o.dealings.first())
                .map(|d| d.body().validators.clone())
                .unwrap_or_default();
            let atts: Vec<_> = sub
                .attestations
                .iter()
                .filter(|a| a.created_at().as_secs() <= open.attest_deadline)
                .map(|a| a.attestation.clone())
                .collect();
            let ctx = TallyContext {
                run_id: &open.run_id,
                round: open.round,
                phase: Phase::Initial,
                submission: *id,
                checkpoint: open.checkpoint,
                gradient: sub.submission.blob,
                eval_seed: eval_seed(&open.seed, id),
                validators: &members,
                k: open.k as usize,
                tolerance: open.tolerance,
            };
            let t = tally(&ctx, &atts);
            equivocations.extend(t.equivocations().iter().cloned().map(|e| (*id, e)));
            if disputed(&t) {
                let a = Audit {
                    blob: sub.submission.blob,
                    attestations: t.counted().map(SignedAttestation::encode).collect(),
                    replay: None,
                };
                out.push(a.action(&open, *id));
                audits.insert(*id, a);
            }
            if t.quorum_accepts() {
                merged.push(MergedSubmission {
                    submission: *id,
                    blob: sub.submission.blob,
                });
            }
            for v in t.within_tolerance() {
                let fee = sub
                    .attestations
                    .iter()
                    .find(|a| a.author() == v)
                    .and_then(|a| a.fee_invoice.clone());
                if let Some(bolt11) = fee {
                    out.push(Action::PayValidatorFee {
                        validator: v,
                        bolt11,
                    });
                }
            }
        }
        // A validator that signed two conflicting attestations was dropped from the tally; the
        // pair is published as evidence anyone can check (no secret needed).
        for (id, e) in equivocations {
            let who = e.validator().to_bytes();
            let ev = sign(
                &self.keys,
                &self.st.seed,
                now,
                "equivocation",
                &[&id.0, &who],
                &Evidence::Equivocation(e),
            );
            self.publish(ev, out);
        }
        // `subs` is a BTreeMap: `merged` is already sorted by submission id, as the spec wants.
        self.st.audits = audits;
        self.st.aggregate = Some(merged.clone());
        out.push(Action::Aggregate {
            list: self.merged_list(merged),
        });
    }

    /// A replay came back: every counted attestation it contradicts becomes signed wrong-score
    /// evidence and convicts its validator; the last replay releases a waiting checkpoint.
    fn on_audited(
        &mut self,
        now: UnixTime,
        id: SubmissionId,
        replay: Replay,
        out: &mut Vec<Action>,
    ) {
        let tolerance = self.st.open.tolerance;
        let Some(audit) = self.st.audits.get_mut(&id) else {
            return;
        };
        if audit.replay.is_some() {
            return;
        }
        audit.replay = Some(replay);
        let wrong: Vec<WrongScoreEvidence> = audit
            .attestations
            .iter()
            .filter_map(|b| SignedAttestation::decode(b).ok())
            .filter_map(|a| WrongScoreEvidence::new(a, replay, tolerance))
            .collect();
        for w in wrong {
            let who = w.validator();
            self.st.convicted.insert(who);
            let ev = sign(
                &self.keys,
                &self.st.seed,
                now,
                "wrong-score",
                &[&id.0, &who.to_bytes()],
                &Evidence::WrongScore(w),
            );
            self.publish(ev, out);
        }
        if let Some(checkpoint) = self.st.ready.take() {
            self.on_checkpoint(now, checkpoint, out);
        }
    }

    fn merged_list(&self, merged: Vec<MergedSubmission>) -> MergedList {
        MergedList::new(
            self.st.open.run_id.clone(),
            self.st.open.round,
            self.st.open.checkpoint,
            merged,
        )
    }

    fn on_checkpoint(
        &mut self,
        now: UnixTime,
        checkpoint: crate::events::BlobHash,
        out: &mut Vec<Action>,
    ) {
        let (Some(merged), None) = (self.st.aggregate.clone(), &self.st.checkpoint) else {
            return;
        };
        // The checkpoint closes the round: it waits until every disputed evaluation is replayed,
        // so the next round's pool already leaves out the convicted validators.
        if self.st.audits.values().any(|a| a.replay.is_none()) {
            self.st.ready = Some(checkpoint);
            return;
        }
        let c = Checkpoint::new(&self.merged_list(merged), checkpoint);
        let ev = sign(&self.keys, &self.st.seed, now, "checkpoint", &[], &c);
        self.st.checkpoint = ev.as_ref().and_then(|e| parse::<Checkpoint>(e, None).ok());
        self.publish(ev, out);
    }
}
