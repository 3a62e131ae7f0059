//! A validator of one round: check its shares, evaluate locked submissions, attest and release
//! shares of the tranches the score earns; re-evaluate for the holdback.
//!
//! Spec: specs/L2T-03-round.md#validator

use std::collections::{BTreeMap, BTreeSet};

use nostr::{Event, Keys};
use serde::{Deserialize, Serialize};

use super::{
    ignored, op_rng, op_seed, persist, restore, sign, Action, Input, PersistError, RoleError,
};
use crate::escrow::{BadShareComplaint, Share, ShareChannel, ShareError};
use crate::events::{
    AttestationEvent, EscrowLock, EscrowOffer, Evidence, LockState, ReleasedShare, RoundOpen,
    RoundScope, Score, Submission, SubmissionId, UnixTime, Verified, VerifiedAny, MAX_BOLT11_LEN,
};
use crate::quorum::{eval_seed, AttestationBody, Phase, Verdict};

const ROLE: &str = "validator";

/// A finished evaluation, as the shell reports it.
struct Eval {
    id: SubmissionId,
    phase: Phase,
    score: Score,
    verdict: Verdict,
    fee_invoice: Option<String>,
}

/// Progress of one evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvalState {
    /// Not asked yet.
    NotStarted,
    /// Evaluation requested from the shell.
    Requested,
    /// Attested with this result.
    Attested {
        /// Score.
        score: Score,
        /// Verdict.
        verdict: Verdict,
    },
    /// Result came after the deadline: no attestation.
    Missed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct VSub {
    submission: Verified<Submission>,
    offer: Option<Verified<EscrowOffer>>,
    shares: Vec<Option<Share>>,
    locked: bool,
    initial: EvalState,
    holdback: EvalState,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ValidatorState {
    seed: [u8; 32],
    open: Verified<RoundOpen>,
    subs: BTreeMap<SubmissionId, VSub>,
    published: Vec<Event>,
    /// Offers and locks that arrived before their submission (relays do not order events of
    /// different authors).
    early_offers: Vec<Verified<EscrowOffer>>,
    early_locks: Vec<Verified<EscrowLock>>,
    /// Submissions whose offer did not list this validator (another committee's): their later
    /// events are dropped, not buffered.
    #[serde(default)]
    foreign: BTreeSet<SubmissionId>,
}

/// A validator's state machine for one round.
#[derive(Debug)]
pub struct Validator {
    keys: Keys,
    st: ValidatorState,
}

impl Validator {
    /// A validator of the round opened by `open` (must be in its committee).
    pub fn new(keys: Keys, seed: [u8; 32], open: Verified<RoundOpen>) -> Result<Self, RoleError> {
        if !open.validators.contains(&keys.public_key()) {
            return Err(RoleError::NotInCommittee);
        }
        Ok(Self {
            keys,
            st: ValidatorState {
                seed,
                open,
                subs: BTreeMap::new(),
                published: Vec::new(),
                early_offers: Vec::new(),
                early_locks: Vec::new(),
                foreign: BTreeSet::new(),
            },
        })
    }

    /// The round open this machine was built from.
    pub fn round_open(&self) -> &Verified<RoundOpen> {
        &self.st.open
    }

    /// Each submission this validator saw, in id order: its worker and where its initial and
    /// holdback evaluations stand (for status pages; the machine's decisions do not read this).
    pub fn evaluations(
        &self,
    ) -> impl Iterator<Item = (SubmissionId, nostr::PublicKey, EvalState, EvalState)> + '_ {
        self.st
            .subs
            .iter()
            .map(|(id, s)| (*id, s.submission.author(), s.initial, s.holdback))
    }

    /// Persist (versioned CBOR).
    pub fn to_bytes(&self) -> Vec<u8> {
        persist(ROLE, self.keys.public_key(), &self.st)
    }

    /// Restore with the same keys, then call [`Validator::resume`].
    pub fn from_bytes(keys: Keys, bytes: &[u8]) -> Result<Self, PersistError> {
        let st = restore(ROLE, keys.public_key(), bytes)?;
        Ok(Self { keys, st })
    }

    fn scope(&self) -> RoundScope {
        self.st.open.scope(self.st.open.author())
    }

    fn publish(&mut self, ev: Option<Event>, out: &mut Vec<Action>) {
        if let Some(ev) = ev {
            self.st.published.push(ev.clone());
            out.push(Action::Publish(ev));
        }
    }

    /// After a restart: re-publish and re-request pending evaluations.
    pub fn resume(&mut self, now: UnixTime) -> Vec<Action> {
        let mut out: Vec<Action> = self
            .st
            .published
            .iter()
            .cloned()
            .map(Action::Publish)
            .collect();
        let ids: Vec<SubmissionId> = self.st.subs.keys().copied().collect();
        for id in ids {
            for phase in [Phase::Initial, Phase::Holdback] {
                let state = self.eval_state(&id, phase);
                if state == Some(EvalState::Requested) {
                    out.push(self.evaluate_action(id, phase));
                }
            }
        }
        out.extend(self.handle(now, Input::Tick));
        out
    }

    fn eval_state(&self, id: &SubmissionId, phase: Phase) -> Option<EvalState> {
        self.st.subs.get(id).map(|s| match phase {
            Phase::Initial => s.initial,
            Phase::Holdback => s.holdback,
        })
    }

    fn evaluate_action(&self, id: SubmissionId, phase: Phase) -> Action {
        let blob = self
            .st
            .subs
            .get(&id)
            .map(|s| s.submission.blob)
            .unwrap_or(crate::events::BlobHash([0; 32]));
        Action::Evaluate {
            submission: id,
            phase,
            checkpoint: self.st.open.checkpoint,
            blob,
            eval_seed: eval_seed(&self.st.open.seed, &id),
        }
    }

    /// Handle one input at time `now`.
    pub fn handle(&mut self, now: UnixTime, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Event(VerifiedAny::Submission(s)) => self.on_submission(now, s, &mut out),
            Input::Event(VerifiedAny::EscrowOffer(o)) => self.on_offer(now, o, &mut out),
            Input::Event(VerifiedAny::EscrowLock(l)) => self.on_lock(now, l, &mut out),
            Input::EvalDone {
                submission,
                phase,
                score,
                verdict,
                fee_invoice,
            } => self.on_eval(
                now,
                Eval {
                    id: submission,
                    phase,
                    score,
                    verdict,
                    fee_invoice,
                },
                &mut out,
            ),
            _ => {}
        }
        self.holdback_tick(now, &mut out);
        out
    }

    fn on_submission(&mut self, now: UnixTime, s: Verified<Submission>, out: &mut Vec<Action>) {
        if let Err(e) = self.scope().check_submission(&s) {
            out.push(ignored(s.event(), e));
            return;
        }
        if now > self.st.open.submit_deadline {
            out.push(ignored(s.event(), "submission after the submit deadline"));
            return;
        }
        let id = SubmissionId::of_event(s.event());
        if self.st.subs.contains_key(&id) || self.st.foreign.contains(&id) {
            return;
        }
        self.st.subs.insert(
            id,
            VSub {
                submission: s,
                offer: None,
                shares: Vec::new(),
                locked: false,
                initial: EvalState::NotStarted,
                holdback: EvalState::NotStarted,
            },
        );
        let offers = std::mem::take(&mut self.st.early_offers);
        let (mine, rest): (Vec<_>, Vec<_>) = offers.into_iter().partition(|o| o.submission == id);
        self.st.early_offers = rest;
        for o in mine {
            self.on_offer(now, o, out);
        }
        let locks = std::mem::take(&mut self.st.early_locks);
        let (mine, rest): (Vec<_>, Vec<_>) = locks.into_iter().partition(|l| l.submission == id);
        self.st.early_locks = rest;
        for l in mine {
            self.on_lock(now, l, out);
        }
    }

    fn on_offer(&mut self, now: UnixTime, o: Verified<EscrowOffer>, out: &mut Vec<Action>) {
        if let Err(e) = self.scope().check_offer(&o) {
            out.push(ignored(o.event(), e));
            return;
        }
        let open = self.st.open.value().clone();
        if !self.st.subs.contains_key(&o.submission) {
            if self.st.early_offers.len() < super::MAX_EARLY_EVENTS {
                self.st.early_offers.push(o);
            }
            return;
        }
        let Some(sub) = self.st.subs.get_mut(&o.submission) else {
            return;
        };
        if sub.offer.is_some() {
            return;
        }
        if o.peer != sub.submission.author() {
            out.push(ignored(o.event(), "offer names another worker"));
            return;
        }
        // Not listed in the dealings: not on this submission's committee (a coordinator that
        // drops a drawn member is caught by the members it listed and by the worker, who check
        // the draw). Forget the submission; only members pay for the proof check below.
        let me = self.keys.public_key();
        let listed = o
            .dealings
            .first()
            .is_some_and(|d| d.body().validators.contains(&me));
        if !listed {
            self.st.subs.remove(&o.submission);
            self.st.foreign.insert(o.submission);
            return;
        }
        let members = match open.offer_committee(&o) {
            Ok(m) => m,
            Err(e) => {
                out.push(ignored(o.event(), format!("committee: {e}")));
                return;
            }
        };
        let matches = o.dealings.len() == open.tranches.len()
            && o.dealings.iter().zip(&open.tranches).all(|(d, spec)| {
                let b = d.body();
                &b.spec == spec
                    && b.claim_deadline == open.claim_deadline_for(spec)
                    && b.validators == members
                    && b.k == open.k
            });
        if !matches {
            out.push(ignored(
                o.event(),
                "offer does not match the round's schedule",
            ));
            return;
        }
        let mut complaints = Vec::new();
        // The round's offers share one ephemeral key `E` (L2T-05): one ECDH per distinct `E`,
        // remembered across this round's offers (`ShareChannel::between`).
        let mut channels: Vec<(nostr::PublicKey, ShareChannel)> = Vec::new();
        let mut shares = Vec::with_capacity(o.dealings.len());
        for d in &o.dealings {
            let e = d.body().ephemeral;
            if !channels.iter().any(|(k, _)| *k == e) {
                if let Ok(c) = ShareChannel::between(&self.keys, &e) {
                    channels.push((e, c));
                }
            }
            let opened = match channels.iter().find(|(k, _)| *k == e) {
                Some((_, ch)) => d.open_share_via(ch, &me),
                None => Err(ShareError::Undecryptable),
            };
            shares.push(match opened {
                Ok(s) => Some(s),
                Err(ShareError::NotAValidator) => None,
                Err(_) => {
                    let nonce = op_seed(&self.st.seed, "complaint", &[&d.body().payment_hash.0]);
                    if let Some(c) = BadShareComplaint::new(d, &self.keys, &nonce) {
                        complaints.push((d.body().tranche, c));
                    }
                    None
                }
            });
        }
        sub.shares = shares;
        sub.offer = Some(o);
        let id = sub.submission.id().to_bytes();
        for (i, c) in complaints {
            let ev = sign(
                &self.keys,
                &self.st.seed,
                now,
                "complaint",
                &[&id, &i.to_be_bytes()],
                &Evidence::BadShare(c),
            );
            self.publish(ev, out);
        }
        // A lock seen before the offer (out-of-order delivery) can start the evaluation now.
        self.maybe_evaluate(now, SubmissionId(id), out);
    }

    fn on_lock(&mut self, now: UnixTime, l: Verified<EscrowLock>, out: &mut Vec<Action>) {
        if l.state != LockState::Locked {
            return;
        }
        if let Err(e) = self.scope().check_lock(&l) {
            out.push(ignored(l.event(), e));
            return;
        }
        if self.st.foreign.contains(&l.submission) {
            return;
        }
        if !self.st.subs.contains_key(&l.submission) {
            if self.st.early_locks.len() < super::MAX_EARLY_EVENTS {
                self.st.early_locks.push(l);
            }
            return;
        }
        let Some(sub) = self.st.subs.get_mut(&l.submission) else {
            return;
        };
        if l.author() != sub.submission.author() {
            out.push(ignored(l.event(), "lock not by the worker"));
            return;
        }
        sub.locked = true;
        self.maybe_evaluate(now, l.submission, out);
    }

    fn maybe_evaluate(&mut self, now: UnixTime, id: SubmissionId, out: &mut Vec<Action>) {
        let deadline = self.st.open.attest_deadline;
        let Some(sub) = self.st.subs.get_mut(&id) else {
            return;
        };
        if sub.locked
            && sub.offer.is_some()
            && sub.initial == EvalState::NotStarted
            && now < deadline
        {
            sub.initial = EvalState::Requested;
            out.push(self.evaluate_action(id, Phase::Initial));
        }
    }

    fn holdback_tick(&mut self, now: UnixTime, out: &mut Vec<Action>) {
        let Some(h) = self.st.open.holdback else {
            return;
        };
        if now < h.reeval_at || now >= h.attest_deadline {
            return;
        }
        let due: Vec<SubmissionId> = self
            .st
            .subs
            .iter()
            .filter(|(_, s)| {
                s.holdback == EvalState::NotStarted
                    && matches!(
                        s.initial,
                        EvalState::Attested {
                            verdict: Verdict::Accept,
                            ..
                        }
                    )
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(s) = self.st.subs.get_mut(&id) {
                s.holdback = EvalState::Requested;
            }
            out.push(self.evaluate_action(id, Phase::Holdback));
        }
    }

    fn on_eval(&mut self, now: UnixTime, eval: Eval, out: &mut Vec<Action>) {
        let Eval {
            id,
            phase,
            score,
            verdict,
            fee_invoice,
        } = eval;
        let open = self.st.open.value().clone();
        let deadline = match phase {
            Phase::Initial => open.attest_deadline,
            Phase::Holdback => open.holdback.map(|h| h.attest_deadline).unwrap_or(0),
        };
        let Some(sub) = self.st.subs.get_mut(&id) else {
            return;
        };
        let state = match phase {
            Phase::Initial => &mut sub.initial,
            Phase::Holdback => &mut sub.holdback,
        };
        if *state != EvalState::Requested {
            return;
        }
        if now >= deadline {
            *state = EvalState::Missed;
            return;
        }
        *state = EvalState::Attested { score, verdict };
        let Some(offer) = sub.offer.clone() else {
            return;
        };
        let body = AttestationBody {
            run_id: open.run_id.clone(),
            round: open.round,
            phase,
            submission: id,
            checkpoint: open.checkpoint,
            gradient: sub.submission.blob,
            eval_seed: eval_seed(&open.seed, &id),
            score,
            verdict,
            validator: self.keys.public_key(),
        };
        let label_parts: [&[u8]; 2] = [&id.0, &[phase as u8]];
        let aux = op_seed(&self.st.seed, "attest-aux", &label_parts);
        let Ok(attestation) = body.sign(&self.keys, &aux) else {
            return;
        };
        let mut rng = op_rng(&self.st.seed, "release", &label_parts);
        let mut shares = Vec::new();
        // Only an accepting attestation releases shares (the channel is remembered across
        // rounds: `ShareChannel::between`).
        let channel = verdict
            .is_accept()
            .then(|| ShareChannel::between(&self.keys, &sub.submission.author()).ok())
            .flatten();
        if let Some(ch) = channel {
            for (i, (d, share)) in offer.dealings.iter().zip(&sub.shares).enumerate() {
                let spec = d.body().spec;
                let phase_ok = spec.holdback == (phase == Phase::Holdback);
                if let (true, true, Some(share)) = (phase_ok, score >= spec.threshold, share) {
                    shares.push(ReleasedShare {
                        tranche: i as u32,
                        ciphertext: d.release_share_via(&ch, share, &mut rng),
                    });
                }
            }
        }
        let content = AttestationEvent {
            attestation,
            peer: sub.submission.author(),
            shares,
            fee_invoice: fee_invoice.filter(|f| f.len() <= MAX_BOLT11_LEN),
        };
        let ev = sign(
            &self.keys,
            &self.st.seed,
            now,
            "attestation",
            &label_parts,
            &content,
        );
        self.publish(ev, out);
    }
}
