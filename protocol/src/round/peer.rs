//! The worker (peer) of one submission: submit, lock the escrow, collect shares, claim or fail
//! back every HTLC before its deadline.
//!
//! Spec: specs/L2T-03-round.md#peer

use std::collections::{BTreeMap, BTreeSet};

use nostr::{Event, Keys, PublicKey};
use serde::{Deserialize, Serialize};

use super::{
    ignored, op_seed, persist, restore, sign, Action, Input, PersistError, CLAIM_SAFETY_MARGIN_SECS,
};
use crate::escrow::{
    vss, ReconstructError, Share, ShareChannel, TrancheSpec, WrongPreimageEvidence,
};
use crate::events::{
    parse, AttestationEvent, BlobHash, EscrowLock, EscrowOffer, Evidence, LockState, PaymentHash,
    Refusal, RoundOpen, RoundScope, Score, Submission, SubmissionId, SubmissionRefusal,
    TrancheInvoice, UnixTime, Verified, VerifiedAny,
};
use crate::quorum::{eval_seed, Phase};

const ROLE: &str = "peer";

/// What the worker submits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerWork {
    /// The pseudo-gradient blob (already added to the local blob store).
    pub blob: BlobHash,
    /// Its size.
    pub size: u64,
    /// Local loss reduction, informative.
    pub claimed_loss: Score,
    /// L402 submission token `<macaroon>:<preimage>`.
    pub token: String,
    /// A BOLT11 invoice of the toll's amount to the worker, for the refund if the coordinator
    /// refuses the submission.
    #[serde(default)]
    pub refund_invoice: Option<String>,
}

/// Where one tranche's hold invoice stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HtlcState {
    /// Invoice requested from the Lightning node.
    InvoiceRequested,
    /// Invoice exists.
    InvoiceIssued {
        /// BOLT11.
        bolt11: String,
    },
    /// The payer's HTLC is held.
    Held {
        /// Amount held.
        amount_msat: u64,
    },
    /// Claim issued with the reconstructed preimage.
    ClaimRequested {
        /// Amount held.
        amount_msat: u64,
        /// Preimage.
        preimage: crate::escrow::Preimage,
    },
    /// Claimed: paid.
    Claimed,
    /// Fail-back issued.
    FailRequested,
    /// Failed back: the payer is refunded.
    FailedBack,
}

/// One tranche of the worker's reward.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrancheState {
    /// Tranche index.
    pub index: u32,
    /// Terms.
    pub spec: TrancheSpec,
    /// `H`.
    pub payment_hash: PaymentHash,
    /// Claim deadline.
    pub claim_deadline: UnixTime,
    /// HTLC state.
    pub htlc: HtlcState,
    /// Verified shares by share index.
    pub shares: BTreeMap<u32, Share>,
    /// Validators whose attestation passed this tranche's threshold and whose share verified.
    pub passing: BTreeSet<PublicKey>,
    /// The dealing was proven bad (evidence published).
    pub bad_dealing: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PeerState {
    seed: [u8; 32],
    open: Verified<RoundOpen>,
    work: PeerWork,
    submission: Option<Verified<Submission>>,
    offer: Option<Verified<EscrowOffer>>,
    tranches: Vec<TrancheState>,
    invoices_published: bool,
    locked: bool,
    lock_failed: bool,
    published: Vec<Event>,
    /// Attestations that arrived before the escrow offer.
    early_attestations: Vec<Verified<AttestationEvent>>,
    /// The coordinator's refusal of our submission, if it refused it.
    #[serde(default)]
    refused: Option<Refusal>,
}

/// The worker's state machine for one submission.
#[derive(Debug)]
pub struct Peer {
    keys: Keys,
    st: PeerState,
}

impl Peer {
    /// A worker that will submit `work` in the round opened by `open`. `seed` feeds every random
    /// choice (nonces, NIP-44, signatures).
    pub fn new(keys: Keys, seed: [u8; 32], open: Verified<RoundOpen>, work: PeerWork) -> Self {
        Self {
            keys,
            st: PeerState {
                seed,
                open,
                work,
                submission: None,
                offer: None,
                tranches: Vec::new(),
                invoices_published: false,
                locked: false,
                lock_failed: false,
                published: Vec::new(),
                early_attestations: Vec::new(),
                refused: None,
            },
        }
    }

    /// Persist (versioned CBOR).
    pub fn to_bytes(&self) -> Vec<u8> {
        persist(ROLE, self.keys.public_key(), &self.st)
    }

    /// Restore with the same keys, then call [`Peer::resume`].
    pub fn from_bytes(keys: Keys, bytes: &[u8]) -> Result<Self, PersistError> {
        let st = restore(ROLE, keys.public_key(), bytes)?;
        Ok(Self { keys, st })
    }

    /// The round open this machine was built from.
    pub fn round_open(&self) -> &Verified<RoundOpen> {
        &self.st.open
    }

    /// The submission id, once submitted.
    pub fn submission_id(&self) -> Option<SubmissionId> {
        self.st
            .submission
            .as_ref()
            .map(|s| SubmissionId::of_event(s.event()))
    }

    /// Tranche states (empty until the escrow offer arrives).
    pub fn tranches(&self) -> &[TrancheState] {
        &self.st.tranches
    }

    /// Whether every tranche is settled one way or the other.
    pub fn is_done(&self) -> bool {
        self.st
            .tranches
            .iter()
            .all(|t| matches!(t.htlc, HtlcState::Claimed | HtlcState::FailedBack))
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

    /// After a restart: re-emit every action that may not have been executed.
    pub fn resume(&mut self, now: UnixTime) -> Vec<Action> {
        let mut out: Vec<Action> = self
            .st
            .published
            .iter()
            .cloned()
            .map(Action::Publish)
            .collect();
        let sub = self.submission_id();
        for t in &self.st.tranches {
            match &t.htlc {
                HtlcState::InvoiceRequested => {
                    if let Some(sub) = sub {
                        out.push(Action::CreateHoldInvoice {
                            submission: sub,
                            tranche: t.index,
                            payment_hash: t.payment_hash,
                            amount_msat: t.spec.amount_msat,
                            claim_deadline: t.claim_deadline,
                        });
                    }
                }
                HtlcState::ClaimRequested {
                    amount_msat,
                    preimage,
                } if now < t.claim_deadline => out.push(Action::Claim {
                    payment_hash: t.payment_hash,
                    preimage: *preimage,
                    amount_msat: *amount_msat,
                }),
                HtlcState::ClaimRequested { .. } | HtlcState::FailRequested => {
                    out.push(Action::FailBack {
                        payment_hash: t.payment_hash,
                    })
                }
                _ => {}
            }
        }
        if self.st.locked {
            out.push(self.release_action());
        }
        out.extend(self.handle(now, Input::Tick));
        out
    }

    fn release_action(&self) -> Action {
        // The submission's committee (as dealt; the blob is released only once the escrow,
        // hence the offer, is locked) and the coordinator.
        let mut to = self
            .st
            .offer
            .as_ref()
            .and_then(|o| o.dealings.first())
            .map(|d| d.body().validators.clone())
            .unwrap_or_else(|| self.st.open.validators.clone());
        to.push(self.st.open.author());
        Action::ReleaseBlob {
            blob: self.st.work.blob,
            to,
        }
    }

    /// Handle one input at time `now`.
    pub fn handle(&mut self, now: UnixTime, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.st.submission.is_none() && now < self.st.open.submit_deadline {
            self.submit(now, &mut out);
        }
        match input {
            Input::Event(VerifiedAny::EscrowOffer(o)) => self.on_offer(now, o, &mut out),
            Input::Event(VerifiedAny::Attestation(a)) => self.on_attestation(now, a, &mut out),
            Input::Event(VerifiedAny::SubmissionRefusal(r)) => self.on_refusal(r, &mut out),
            Input::InvoiceCreated {
                payment_hash,
                bolt11,
            } => self.on_invoice(now, payment_hash, bolt11, &mut out),
            Input::HtlcHeld {
                payment_hash,
                amount_msat,
            } => self.on_held(now, payment_hash, amount_msat, &mut out),
            Input::HtlcClaimed { payment_hash } => {
                if let Some(t) = self.tranche_mut(&payment_hash) {
                    t.htlc = HtlcState::Claimed;
                }
            }
            Input::HtlcFailed { payment_hash } => {
                if let Some(t) = self.tranche_mut(&payment_hash) {
                    if t.htlc != HtlcState::Claimed {
                        t.htlc = HtlcState::FailedBack;
                    }
                }
            }
            _ => {}
        }
        self.try_claims(now, &mut out);
        self.check_deadlines(now, &mut out);
        out
    }

    /// The earliest time an [`Input::Tick`] can do anything: a tick before it returns no action
    /// and changes no state, so a driver may skip it ([`super::Driver::tick_targets`]). `None`:
    /// no tick ever will (only an input can). Conservative: it may name a time at which the
    /// tick still does nothing, never one after a tick would act.
    ///
    /// What a tick does here is [`Peer::handle`]'s part for every input: submit before the
    /// submission deadline, claim a held tranche with `k` passing shares, mark the lock failed at
    /// the attest deadline, and fail back a held tranche at its claim deadline less the margin
    /// (at once once the lock failed).
    pub fn next_wake(&self) -> Option<UnixTime> {
        let st = &self.st;
        if st.submission.is_none() {
            return Some(0);
        }
        let k = st.open.k as usize;
        let mut wake = (!st.locked && !st.lock_failed).then_some(st.open.attest_deadline);
        for t in &st.tranches {
            if let HtlcState::Held { .. } = t.htlc {
                if st.lock_failed || t.passing.len() >= k {
                    return Some(0);
                }
                let at = t.claim_deadline.saturating_sub(CLAIM_SAFETY_MARGIN_SECS);
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        wake
    }

    fn tranche_mut(&mut self, h: &PaymentHash) -> Option<&mut TrancheState> {
        self.st.tranches.iter_mut().find(|t| &t.payment_hash == h)
    }

    fn submit(&mut self, now: UnixTime, out: &mut Vec<Action>) {
        let o = &self.st.open;
        let nonce_seed = op_seed(&self.st.seed, "nonce", &[]);
        let s = Submission {
            v: crate::events::CONTENT_VERSION,
            run_id: o.run_id.clone(),
            round: o.round,
            checkpoint: o.checkpoint,
            coordinator: o.author(),
            blob: self.st.work.blob,
            size: self.st.work.size,
            claimed_loss: self.st.work.claimed_loss,
            token: self.st.work.token.clone(),
            nonce: u64::from_be_bytes(nonce_seed[..8].try_into().unwrap_or_default()),
            refund_invoice: self.st.work.refund_invoice.clone(),
        };
        let ev = sign(&self.keys, &self.st.seed, now, "submission", &[], &s);
        if let Some(v) = ev.as_ref().and_then(|e| parse::<Submission>(e, None).ok()) {
            self.st.submission = Some(v);
            self.publish(ev, out);
        }
    }

    fn on_refusal(&mut self, r: Verified<SubmissionRefusal>, out: &mut Vec<Action>) {
        if self.submission_id() != Some(r.submission) || self.st.refused.is_some() {
            return;
        }
        if let Err(e) = self.scope().check_refusal(&r) {
            out.push(ignored(r.event(), e));
            return;
        }
        if self.st.offer.is_some() {
            out.push(ignored(r.event(), "refusal after the escrow offer"));
            return;
        }
        self.st.refused = Some(r.refusal.clone());
        out.push(Action::Refused {
            submission: r.submission,
            refusal: r.refusal.clone(),
            refund_msat: r.refund_msat,
        });
    }

    /// The coordinator's refusal of this worker's submission, if it refused it.
    pub fn refused(&self) -> Option<&Refusal> {
        self.st.refused.as_ref()
    }

    fn on_offer(&mut self, now: UnixTime, o: Verified<EscrowOffer>, out: &mut Vec<Action>) {
        let Some(sub) = self.submission_id() else {
            return;
        };
        if o.submission != sub {
            return;
        }
        if self.st.offer.is_some() {
            return; // duplicate or a second offer: the first one stands
        }
        if let Err(e) = self.scope().check_offer(&o) {
            out.push(ignored(o.event(), e));
            return;
        }
        if o.peer != self.keys.public_key() {
            out.push(ignored(o.event(), "offer names another worker"));
            return;
        }
        let open = &self.st.open;
        let members = match open.offer_committee(&o) {
            Ok(m) => m,
            Err(e) => {
                out.push(ignored(o.event(), format!("committee: {e}")));
                return;
            }
        };
        if o.dealings.len() != open.tranches.len() {
            out.push(ignored(
                o.event(),
                "offer does not match the round's schedule",
            ));
            return;
        }
        for (d, spec) in o.dealings.iter().zip(&open.tranches) {
            let b = d.body();
            if &b.spec != spec
                || b.claim_deadline != open.claim_deadline_for(spec)
                || b.validators != members
                || b.k != open.k
            {
                out.push(ignored(
                    o.event(),
                    "offer does not match the round's schedule",
                ));
                return;
            }
        }
        if now >= open.attest_deadline {
            out.push(ignored(o.event(), "offer arrived after the lock deadline"));
            return;
        }
        self.st.tranches = o
            .dealings
            .iter()
            .map(|d| {
                let b = d.body();
                TrancheState {
                    index: b.tranche,
                    spec: b.spec,
                    payment_hash: b.payment_hash,
                    claim_deadline: b.claim_deadline,
                    htlc: HtlcState::InvoiceRequested,
                    shares: BTreeMap::new(),
                    passing: BTreeSet::new(),
                    bad_dealing: false,
                }
            })
            .collect();
        for t in &self.st.tranches {
            out.push(Action::CreateHoldInvoice {
                submission: sub,
                tranche: t.index,
                payment_hash: t.payment_hash,
                amount_msat: t.spec.amount_msat,
                claim_deadline: t.claim_deadline,
            });
        }
        self.st.offer = Some(o);
        for a in std::mem::take(&mut self.st.early_attestations) {
            self.on_attestation(now, a, out);
        }
    }

    fn on_invoice(&mut self, now: UnixTime, h: PaymentHash, bolt11: String, out: &mut Vec<Action>) {
        if let Some(t) = self.tranche_mut(&h) {
            if t.htlc == HtlcState::InvoiceRequested {
                t.htlc = HtlcState::InvoiceIssued { bolt11 };
            }
        }
        let all_issued = !self.st.tranches.is_empty()
            && self
                .st
                .tranches
                .iter()
                .all(|t| !matches!(t.htlc, HtlcState::InvoiceRequested));
        if all_issued && !self.st.invoices_published && !self.st.lock_failed {
            let invoices: Vec<TrancheInvoice> = self
                .st
                .tranches
                .iter()
                .filter_map(|t| match &t.htlc {
                    HtlcState::InvoiceIssued { bolt11 } => Some(TrancheInvoice {
                        tranche: t.index,
                        payment_hash: t.payment_hash,
                        bolt11: bolt11.clone(),
                    }),
                    _ => None,
                })
                .collect();
            let (Some(sub), true) = (
                self.submission_id(),
                invoices.len() == self.st.tranches.len(),
            ) else {
                return;
            };
            let lock = EscrowLock {
                v: crate::events::CONTENT_VERSION,
                run_id: self.st.open.run_id.clone(),
                round: self.st.open.round,
                submission: sub,
                coordinator: self.st.open.author(),
                state: LockState::Invoices,
                invoices,
            };
            let ev = sign(&self.keys, &self.st.seed, now, "lock-invoices", &[], &lock);
            self.st.invoices_published = true;
            self.publish(ev, out);
        }
    }

    fn on_held(&mut self, now: UnixTime, h: PaymentHash, amount: u64, out: &mut Vec<Action>) {
        let lock_failed = self.st.lock_failed;
        let lock_deadline = self.st.open.attest_deadline;
        let Some(t) = self.tranche_mut(&h) else {
            return; // not ours: the shell routes HTLCs by payment hash
        };
        match t.htlc {
            HtlcState::InvoiceRequested | HtlcState::InvoiceIssued { .. } => {
                let late =
                    now >= lock_deadline || now + CLAIM_SAFETY_MARGIN_SECS >= t.claim_deadline;
                if amount < t.spec.amount_msat || lock_failed || late {
                    t.htlc = HtlcState::FailRequested;
                    out.push(Action::FailBack { payment_hash: h });
                } else {
                    t.htlc = HtlcState::Held {
                        amount_msat: amount,
                    };
                }
            }
            HtlcState::FailRequested | HtlcState::FailedBack => {
                out.push(Action::FailBack { payment_hash: h });
            }
            _ => {}
        }
        let all_held = self
            .st
            .tranches
            .iter()
            .all(|t| matches!(t.htlc, HtlcState::Held { .. }));
        if all_held && !self.st.locked && !self.st.lock_failed {
            self.st.locked = true;
            if let Some(sub) = self.submission_id() {
                let lock = EscrowLock {
                    v: crate::events::CONTENT_VERSION,
                    run_id: self.st.open.run_id.clone(),
                    round: self.st.open.round,
                    submission: sub,
                    coordinator: self.st.open.author(),
                    state: LockState::Locked,
                    invoices: Vec::new(),
                };
                let ev = sign(&self.keys, &self.st.seed, now, "lock-locked", &[], &lock);
                self.publish(ev, out);
            }
            out.push(self.release_action());
        }
    }

    fn on_attestation(
        &mut self,
        _now: UnixTime,
        a: Verified<AttestationEvent>,
        out: &mut Vec<Action>,
    ) {
        let Some(sub) = self.submission_id() else {
            return;
        };
        let b = a.attestation.body();
        if b.submission != sub {
            return;
        }
        if let Err(e) = self.scope().check_attestation(&a) {
            out.push(ignored(a.event(), e));
            return;
        }
        let expected_seed = eval_seed(&self.st.open.seed, &sub);
        if b.gradient != self.st.work.blob
            || b.eval_seed != expected_seed
            || a.peer != self.keys.public_key()
        {
            out.push(ignored(
                a.event(),
                "attestation binds another blob, seed or worker",
            ));
            return;
        }
        let deadline = match b.phase {
            Phase::Initial => self.st.open.attest_deadline,
            Phase::Holdback => self
                .st
                .open
                .holdback
                .map(|h| h.attest_deadline)
                .unwrap_or(0),
        };
        if a.created_at().as_secs() > deadline {
            out.push(ignored(a.event(), "attestation after the attest deadline"));
            return;
        }
        let Some(offer) = self.st.offer.clone() else {
            if self.st.early_attestations.len() < super::MAX_EARLY_EVENTS {
                self.st.early_attestations.push(a);
            }
            return;
        };
        let validator = a.author();
        // One conversation key for all the shares of this attestation, derived at the first
        // share to open (remembered across rounds: `ShareChannel::between`).
        let keys = &self.keys;
        let mut channel = None;
        for rs in &a.shares {
            let Some(t) = self.st.tranches.get_mut(rs.tranche as usize) else {
                continue;
            };
            let phase_ok = t.spec.holdback == (b.phase == Phase::Holdback);
            let passes = b.verdict.is_accept() && b.score >= t.spec.threshold;
            if !phase_ok || !passes {
                continue;
            }
            let Some(d) = offer.dealings.get(rs.tranche as usize) else {
                continue;
            };
            // Decrypted only: the claim checks the interpolated preimage against the payment
            // hash, and checks shares against the commitments only if that fails.
            let share = channel
                .get_or_insert_with(|| ShareChannel::between(keys, &validator))
                .as_ref()
                .map_err(|e| *e)
                .and_then(|ch| d.decrypt_released_share(ch, &validator, &rs.ciphertext));
            match share {
                Ok(share) => {
                    t.shares.insert(share.index, share);
                    t.passing.insert(validator);
                }
                Err(e) => out.push(ignored(a.event(), e)),
            }
        }
    }

    fn try_claims(&mut self, now: UnixTime, out: &mut Vec<Action>) {
        let k = self.st.open.k as usize;
        let st = &mut self.st;
        let Some(offer) = st.offer.as_ref() else {
            return;
        };
        let mut evidence = Vec::new();
        for t in &mut st.tranches {
            let HtlcState::Held { amount_msat } = t.htlc else {
                continue;
            };
            if t.passing.len() < k || now + CLAIM_SAFETY_MARGIN_SECS >= t.claim_deadline {
                continue;
            }
            let Some(d) = offer.dealings.get(t.index as usize) else {
                continue;
            };
            let shares: Vec<Share> = t.shares.values().copied().collect();
            match d.reconstruct(&shares) {
                Ok(preimage) => {
                    t.htlc = HtlcState::ClaimRequested {
                        amount_msat,
                        preimage,
                    };
                    out.push(Action::Claim {
                        payment_hash: t.payment_hash,
                        preimage,
                        amount_msat,
                    });
                }
                Err(ReconstructError::HashMismatch { secret }) => {
                    t.bad_dealing = true;
                    t.htlc = HtlcState::FailRequested;
                    out.push(Action::FailBack {
                        payment_hash: t.payment_hash,
                    });
                    evidence.push((t.index, WrongPreimageEvidence::new(d.clone(), secret)));
                }
                Err(_) => {
                    // Fewer than k shares pass the Feldman check: drop the bad ones (and their
                    // validators from the passing set) so the claim waits for good ones.
                    let points = d.commitment_points();
                    let bad: Vec<u32> = t
                        .shares
                        .values()
                        .filter(|s| !vss::verify_share(points, s))
                        .map(|s| s.index)
                        .collect();
                    for i in bad {
                        t.shares.remove(&i);
                        let pos = (i as usize).checked_sub(1);
                        if let Some(v) = pos.and_then(|p| d.body().validators.get(p)) {
                            t.passing.remove(v);
                        }
                    }
                }
            }
        }
        for (i, ev) in evidence {
            let e = sign(
                &self.keys,
                &self.st.seed,
                now,
                "evidence",
                &[&i.to_be_bytes()],
                &Evidence::WrongPreimage(ev),
            );
            self.publish(e, out);
        }
    }

    fn check_deadlines(&mut self, now: UnixTime, out: &mut Vec<Action>) {
        if !self.st.locked && !self.st.lock_failed && now >= self.st.open.attest_deadline {
            self.st.lock_failed = true;
        }
        let lock_failed = self.st.lock_failed;
        for t in &mut self.st.tranches {
            if let HtlcState::Held { .. } = t.htlc {
                if lock_failed || now + CLAIM_SAFETY_MARGIN_SECS >= t.claim_deadline {
                    t.htlc = HtlcState::FailRequested;
                    out.push(Action::FailBack {
                        payment_hash: t.payment_hash,
                    });
                }
            }
        }
    }
}
