//! Executing the actions of the role machines for real: Nostr publications through the
//! discovery outbox, hold invoices, payments, claims and fail-backs on the embedded ldk-node,
//! blob releases through the blob index. What a real action reports back (an invoice, a held
//! HTLC …) returns to the driver as a [`Report`].
//!
//! The simulator's fast mode executes the same actions against fakes
//! (`sim/src/engine/exec.rs`); neither decides anything the protocol decides.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use l402_protocol::blobmeta::{PeerKey, Placement, RoundKey};
use l402_protocol::events::{
    AttestationEvent, BlobHash, MergedList, MergedSubmission, PaymentHash, RoundOpen, RunId, Score,
    SubmissionId, TrancheInvoice, Verified,
};
use l402_protocol::quorum::{Phase, RejectCode, Verdict};
use l402_protocol::round::{Action, Input, MachineKey};
use l402_protocol::wire::PseudoGradient;
use nostr_sdk::prelude::{Keys, PublicKey, Timestamp};
use tokio::sync::mpsc;

use super::work::{
    blob_id, checkpoint_size, failed_eval, merge_order, phase_label, round_placement,
    SubmissionBook, TrainingWork,
};
use crate::blobs::{BlobError, BlobNode, FetchRequest, ProviderAddr, ProviderFailure, ProviderId};
use crate::discovery::{Discovery, PublishError};
use crate::lightning::{Invoice, LightningError, LightningEvent, LightningNode};
use crate::train::codec::payload_bytes;
use crate::train::{Checkpoint, TrainError};

/// Seconds a hold invoice stays payable: the payer pays right after the lock request, well
/// inside the round's attest deadline.
pub const HOLD_INVOICE_EXPIRY_SECS: u32 = 600;

/// Something the runtime hands back to the driver: to one machine (`key`), or routed by the
/// driver (`None`: Lightning reports, by payment hash).
#[derive(Debug, Clone)]
pub struct Report {
    /// The machine that asked, if the answer is for it alone.
    pub key: Option<MachineKey>,
    /// What happened.
    pub input: Input,
}

/// How long a validator's fee invoice stays payable: the coordinator pays at the attest
/// deadline (minutes after the attestation); a restarted coordinator pays within this.
const FEE_INVOICE_EXPIRY_SECS: u32 = 3600;

/// Why an action could not be executed (logged with its ids; the machines' deadlines then
/// decide: an unpaid escrow is failed back, a missing attestation counts as absent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The BOLT11 string does not parse.
    #[error("invoice for tranche {tranche}: {reason}")]
    BadInvoice {
        /// Tranche.
        tranche: u32,
        /// Why.
        reason: String,
    },
    /// The invoice names another payment hash than the dealing's.
    #[error("invoice for tranche {tranche} names payment hash {got}, the dealing says {expected}")]
    WrongHash {
        /// Tranche.
        tranche: u32,
        /// From the dealing.
        expected: PaymentHash,
        /// From the invoice.
        got: PaymentHash,
    },
    /// The invoice asks another amount than the tranche's.
    #[error("invoice for tranche {tranche} asks {got:?} msat, the tranche is {expected} msat")]
    WrongAmount {
        /// Tranche.
        tranche: u32,
        /// The tranche's amount.
        expected: u64,
        /// The invoice's.
        got: Option<u64>,
    },
    /// A validator's fee invoice is not what its opt-in announced (amount above its fee, paid
    /// to another node, expired, or it never opted in).
    #[error("fee invoice of validator {validator}: {reason}")]
    BadFeeInvoice {
        /// Validator (Nostr key).
        validator: PublicKey,
        /// Why.
        reason: String,
    },
    /// A refused submission's refund invoice is unusable (malformed, not exactly the toll,
    /// expired, or our own).
    #[error("refund invoice of submission {submission}: {reason}")]
    BadRefundInvoice {
        /// The refused submission.
        submission: SubmissionId,
        /// Why.
        reason: String,
    },
    /// The Lightning node refused.
    #[error(transparent)]
    Lightning(#[from] LightningError),
    /// The blob store refused.
    #[error(transparent)]
    Blob(#[from] crate::blobs::BlobError),
    /// Candle or the checkpoint format failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A merged submission this node never saw.
    #[error("merged submission {0} was never seen")]
    UnknownSubmission(SubmissionId),
    /// A compute task failed.
    #[error("task: {0}")]
    Task(String),
}

/// Check each of a worker's hold invoices against the dealing before paying anything: the
/// payment hash must be the dealing's `H` (else the payer would pay for a preimage the quorum
/// does not control) and the amount the tranche's. All or nothing.
pub fn check_hold_invoices(invoices: &[(TrancheInvoice, u64)]) -> Result<Vec<Invoice>, ExecError> {
    invoices
        .iter()
        .map(|(inv, amount)| {
            let parsed: Invoice =
                inv.bolt11
                    .parse()
                    .map_err(|e: LightningError| ExecError::BadInvoice {
                        tranche: inv.tranche,
                        reason: e.to_string(),
                    })?;
            if parsed.payment_hash() != inv.payment_hash {
                return Err(ExecError::WrongHash {
                    tranche: inv.tranche,
                    expected: inv.payment_hash,
                    got: parsed.payment_hash(),
                });
            }
            if parsed.amount_msat() != Some(*amount) {
                return Err(ExecError::WrongAmount {
                    tranche: inv.tranche,
                    expected: *amount,
                    got: parsed.amount_msat(),
                });
            }
            Ok(parsed)
        })
        .collect()
}

/// The Lightning report a hold-invoice event means to the machines, if any.
pub fn lightning_input(ev: &LightningEvent) -> Option<Input> {
    Some(match ev {
        LightningEvent::HoldClaimable {
            payment_hash,
            amount_msat,
            ..
        } => Input::HtlcHeld {
            payment_hash: *payment_hash,
            amount_msat: *amount_msat,
        },
        LightningEvent::HoldClaimed { payment_hash, .. } => Input::HtlcClaimed {
            payment_hash: *payment_hash,
        },
        LightningEvent::HoldFailed { payment_hash, .. } => Input::HtlcFailed {
            payment_hash: *payment_hash,
        },
        _ => return None,
    })
}

/// The real components an executor acts through.
#[derive(Debug, Clone)]
pub struct Components {
    /// The embedded Lightning node.
    pub lightning: Arc<LightningNode>,
    /// Nostr publishing and the directory.
    pub discovery: Arc<Discovery>,
    /// Blob store and transport.
    pub blobs: Arc<BlobNode>,
    /// Candle training, scoring and aggregation.
    pub work: Arc<TrainingWork>,
    /// Authors and sizes of the submissions seen.
    pub book: SubmissionBook,
    /// Wall-clock marks of rounds and hold invoices (status JSON, the demo's phase table).
    pub timeline: super::timeline::Timeline,
    /// The fee this node asks per attestation when it validates (its announced
    /// `validator.fee_msat`; 0: no fee invoice).
    pub validator_fee_msat: u64,
    /// The bounty side: sandbox policy, held-out secrets, exploit log.
    pub bounty: Arc<crate::bounty::net::BountyWork>,
    /// A colluding validator's coalition (the simulator's real mode, `ValidatorRole::behaviour`):
    /// it accepts these peers' submissions unevaluated and rejects every other one. `None`:
    /// honest.
    pub collusion: Option<std::collections::BTreeSet<PublicKey>>,
    /// An equivocating validator's keys (the simulator's real mode, `ValidatorRole::behaviour`):
    /// after each attestation its machine publishes, it signs and publishes the opposite verdict
    /// for the same evaluation. `None`: honest.
    pub equivocate: Option<Keys>,
    /// A lazy validator (the simulator's real mode, `ValidatorRole::behaviour`): it attests
    /// "accept" with [`LAZY_SCORE`] for every submission without fetching or evaluating it.
    pub lazy: bool,
}

/// What an equivocating validator signs next to its attestation `a`: the same evaluation (run,
/// round, phase, submission, checkpoint, blob, eval seed) with the opposite verdict and score.
pub fn conflicting_attestation(keys: &Keys, a: &AttestationEvent) -> Option<AttestationEvent> {
    let mut body = a.attestation.body().clone();
    body.verdict = if body.verdict.is_accept() {
        Verdict::Reject(RejectCode::LossIncreased)
    } else {
        Verdict::Accept
    };
    body.score = Score(-body.score.0);
    let aux = *blake3::hash(a.attestation.signature()).as_bytes();
    Some(AttestationEvent {
        attestation: body.sign(keys, &aux).ok()?,
        peer: a.peer,
        shares: Vec::new(),
        fee_invoice: None,
    })
}

/// The score a colluding validator attests for its coalition (a 10 % held-out gain, above
/// every tranche threshold of the default schedule), and minus it for everyone else.
pub const COLLUDING_SCORE: i64 = 100_000;

/// How long the near-copy check waits for an earlier submission's blob it does not hold yet.
pub const EARLIER_FETCH_SECS: u64 = 10;

/// The score a lazy validator attests for every submission, unevaluated (0.03 nats, the fast
/// mode's `validators.lazy_score`).
pub const LAZY_SCORE: i64 = 30_000;

/// How long a payment the executor makes (an escrow HTLC, a toll refund, a validator fee) keeps
/// waiting in the background for a reconnecting channel partner before it is given up (then a
/// restart asks for it again: `outbound_started` does not count a payment that never left).
pub const PAY_ROUTE_WAIT: Duration = Duration::from_secs(120);

impl Components {
    /// Pay `inv`. A send refused for want of a route while channel partners reconnect (the
    /// payee or this node restarting) is tried again in the background as they come back, for
    /// up to [`PAY_ROUTE_WAIT`], so the executor never waits on a reconnect and the payment is
    /// not dropped at the first refusal. Any other refusal is returned. `Ok(true)`: sent now;
    /// `Ok(false)`: left to the background retry.
    fn pay_or_retry(
        &self,
        key: &MachineKey,
        inv: &Invoice,
        what: &'static str,
    ) -> Result<bool, LightningError> {
        let hash = inv.payment_hash();
        match self.lightning.pay(inv) {
            Ok(_) => Ok(true),
            Err(LightningError::NoRoute(_)) => {
                tracing::info!(machine = %key, payment_hash = %hash, what, "no route now: retrying as channel partners reconnect");
                let (ln, inv, key) = (self.lightning.clone(), inv.clone(), key.clone());
                tokio::spawn(async move {
                    match ln.pay_when_routable(&inv, PAY_ROUTE_WAIT).await {
                        Ok(_) => {
                            tracing::info!(machine = %key, payment_hash = %hash, what, "sent after a partner reconnected")
                        }
                        Err(e) => {
                            tracing::warn!(machine = %key, payment_hash = %hash, what, error = %e, "payment given up (a restart asks for it again)")
                        }
                    }
                });
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Check a validator's fee invoice against its signed opt-in before paying it: the amount
    /// at most the `fee_msat` it announced, the payee its announced Lightning key, not expired.
    /// (The attestation that carries it is signed by the validator; this keeps a validator from
    /// asking more than it announced and a relayed copy from paying someone else.)
    pub fn fee_invoice_checked(
        &self,
        validator: &PublicKey,
        bolt11: &str,
    ) -> Result<Invoice, ExecError> {
        let bad = |reason: String| ExecError::BadFeeInvoice {
            validator: *validator,
            reason,
        };
        let inv: Invoice = bolt11
            .parse()
            .map_err(|e: LightningError| bad(e.to_string()))?;
        let dir = self.discovery.directory();
        let ann = dir
            .node(validator, Timestamp::now())
            .ok_or_else(|| bad("no node announcement".into()))?;
        let terms = ann
            .verified
            .validator
            .as_ref()
            .ok_or_else(|| bad("not opted in as a validator".into()))?;
        match inv.amount_msat() {
            Some(a) if a > 0 && a <= terms.fee_msat => {}
            other => {
                return Err(bad(format!(
                    "asks {other:?} msat, announced fee is {} msat",
                    terms.fee_msat
                )))
            }
        }
        if inv.payee() != ann.verified.ln_node_id {
            return Err(bad("payee is not the announced Lightning node".into()));
        }
        if inv.is_expired() {
            return Err(bad("expired".into()));
        }
        Ok(inv)
    }

    /// This node's fee invoice for an attestation, if it charges a fee (a failure only costs
    /// the fee: the attestation goes out without one).
    fn fee_invoice(
        &self,
        key: &MachineKey,
        submission: SubmissionId,
        phase: Phase,
    ) -> Option<String> {
        if self.validator_fee_msat == 0 {
            return None;
        }
        let what = format!(
            "l402 validation fee {key} {submission} {}",
            phase_label(phase)
        );
        match self
            .lightning
            .create_invoice(self.validator_fee_msat, &what, FEE_INVOICE_EXPIRY_SECS)
        {
            Ok(inv) => Some(inv.to_string()),
            Err(e) => {
                tracing::warn!(machine = %key, submission = %submission, error = %e, "fee invoice not created");
                None
            }
        }
    }

    /// The iroh keys of the given Nostr keys, from their (verified) node announcements.
    fn iroh_keys(&self, nostr: &[PublicKey]) -> BTreeSet<PeerKey> {
        let dir = self.discovery.directory();
        let now = Timestamp::now();
        nostr
            .iter()
            .filter_map(|pk| dir.node(pk, now).map(|n| n.verified.iroh_node_id))
            .collect()
    }

    /// The blob providers of the given Nostr keys: their announced iroh ids, whose direct
    /// addresses go into the address book.
    fn providers(&self, holders: &[PublicKey]) -> Vec<ProviderId> {
        let dir = self.discovery.directory();
        let now = Timestamp::now();
        let mut out = Vec::new();
        for pk in holders {
            let Some(n) = dir.node(pk, now) else {
                tracing::debug!(holder = %pk, "no node announcement: cannot fetch from it");
                continue;
            };
            let id = ProviderId(n.verified.iroh_node_id);
            let addrs = n
                .verified
                .iroh_addrs
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            if let Err(e) = self.blobs.address_book().insert(ProviderAddr { id, addrs }) {
                tracing::debug!(holder = %pk, error = %e, "bad provider address");
                continue;
            }
            out.push(id);
        }
        out
    }

    /// The bytes of blob `hash`: from the local store, else fetched (BLAKE3-verified, size
    /// checked against `size` before any download) from the holders and re-provided.
    pub async fn fetch(
        &self,
        hash: &BlobHash,
        size: u64,
        holders: &[PublicKey],
        placement: Placement,
    ) -> Result<Vec<u8>, ExecError> {
        let id = blob_id(hash);
        if !self.blobs.store().is_complete(&id).await? {
            let providers = self.providers(holders);
            let report = self
                .blobs
                .fetch(&FetchRequest {
                    hash: id,
                    announced_size: size,
                    providers,
                    placement,
                })
                .await?;
            tracing::debug!(blob = %id, size, attempts = report.attempts.len(), "blob fetched");
        }
        Ok(self.blobs.read(&id).await?)
    }

    /// The checkpoint `hash` used in round `round` of `run`: local, or fetched from `holders`,
    /// then parsed as the run's model.
    pub async fn fetch_checkpoint(
        &self,
        run: &RunId,
        round: u64,
        hash: &BlobHash,
        holders: &[PublicKey],
    ) -> Result<Checkpoint, ExecError> {
        let size = checkpoint_size(&self.work.model)?;
        let bytes = self
            .fetch(hash, size, holders, round_placement(run, round))
            .await?;
        let spec = self.work.model.clone();
        Ok(
            tokio::task::spawn_blocking(move || Checkpoint::from_safetensors(&bytes, Some(spec)))
                .await
                .map_err(|e| ExecError::Task(e.to_string()))??,
        )
    }

    /// The merged list a checkpoint event names, fetched by its hash from the coordinator
    /// (size-capped by the event) and decoded against the event.
    pub async fn fetch_merged_list(
        &self,
        c: &Verified<l402_protocol::events::Checkpoint>,
    ) -> Result<MergedList, ExecError> {
        let bytes = self
            .fetch(
                &c.merged_list,
                c.merged_list_size,
                &[c.author()],
                round_placement(&c.run_id, c.round + 1),
            )
            .await?;
        MergedList::from_bytes(&bytes, c)
            .map_err(|e| ExecError::Task(format!("merged list {}: {e}", c.merged_list)))
    }

    /// The blob of `submission` by `peer`, who released it to the committee; `None` (logged) if
    /// it cannot be fetched, transient failures retried through the first half of what is left
    /// of the attest window (SAFETY H40): the validator attests it as unavailable.
    pub async fn fetch_submission(
        &self,
        open: &RoundOpen,
        submission: SubmissionId,
        blob: BlobHash,
        size: u64,
        peer: PublicKey,
    ) -> Option<Vec<u8>> {
        // An author that is restarting (a crash, an upgrade) or has not opened its blob to the
        // committee yet answers again within seconds: transient failures are retried through
        // the first half of what is left of the attest window (the other half is for scoring
        // and attesting) instead of scoring honest work `Unavailable` at the first refusal.
        let start = super::unix_now();
        let give_up = start + open.attest_deadline.saturating_sub(start) / 2;
        let mut tries = 1u32;
        loop {
            let placement = round_placement(&open.run_id, open.round);
            match self.fetch(&blob, size, &[peer], placement).await {
                Ok(b) => return Some(b),
                Err(e) if is_transient(&e) && super::unix_now() + REFETCH_SECS < give_up => {
                    tracing::info!(submission = %submission, blob = %blob, tries, error = %e, "submission blob not served yet; retrying");
                    tokio::time::sleep(Duration::from_secs(REFETCH_SECS)).await;
                    tries += 1;
                }
                Err(e) => {
                    tracing::warn!(submission = %submission, blob = %blob, tries, error = %e, "submission blob unavailable");
                    return None;
                }
            }
        }
    }

    /// The blobs of the merged submissions in merge order, each fetched from its author or any
    /// committee member that fetched it.
    pub async fn fetch_merged(
        &self,
        open: &RoundOpen,
        merged: &[MergedSubmission],
    ) -> Result<Vec<(MergedSubmission, Vec<u8>)>, ExecError> {
        let mut out = Vec::new();
        for m in merge_order(merged) {
            let (author, size) = self
                .book
                .get(&m.submission)
                .ok_or(ExecError::UnknownSubmission(m.submission))?;
            let mut holders = vec![author];
            holders.extend(open.validators.iter().copied());
            let bytes = self
                .fetch(
                    &m.blob,
                    size,
                    &holders,
                    round_placement(&open.run_id, open.round),
                )
                .await?;
            out.push((m, bytes));
        }
        Ok(out)
    }

    /// `Evaluate`: fetch the checkpoint (from the coordinator) and the submission (from its
    /// author, who released it to the committee), then score with candle.
    async fn evaluate(
        &self,
        open: &Verified<RoundOpen>,
        submission: SubmissionId,
        phase: Phase,
        checkpoint: BlobHash,
        blob: BlobHash,
        eval_seed: [u8; 32],
    ) -> Result<(Score, Verdict), ExecError> {
        if let Some(b) = self.bounty_of(open) {
            return self
                .evaluate_bounty(&b, open, submission, phase, checkpoint, blob)
                .await;
        }
        let Some((peer, size)) = self.book.get(&submission) else {
            return Ok(failed_eval(RejectCode::Unavailable));
        };
        if self.lazy {
            tracing::info!(run = %open.run_id, round = open.round, submission = %submission, peer = %peer, "lazy attestation (not fetched, not evaluated)");
            return Ok((Score(LAZY_SCORE), Verdict::Accept));
        }
        if let Some(coalition) = &self.collusion {
            // Byzantine (real mode): what this validator feeds its own machine; the machine,
            // the quorum and the escrow are unchanged.
            let favoured = coalition.contains(&peer);
            tracing::info!(run = %open.run_id, round = open.round, submission = %submission, peer = %peer, favoured, "colluding attestation (not evaluated)");
            return Ok(if favoured {
                (Score(COLLUDING_SCORE), Verdict::Accept)
            } else {
                (
                    Score(-COLLUDING_SCORE),
                    Verdict::Reject(RejectCode::LossIncreased),
                )
            });
        }
        let ck = self
            .fetch_checkpoint(&open.run_id, open.round, &checkpoint, &[open.author()])
            .await?;
        let Some(bytes) = self
            .fetch_submission(open, submission, blob, size, peer)
            .await
        else {
            return Ok(failed_eval(RejectCode::Unavailable));
        };
        let earlier = self.held_earlier(open, &submission).await;
        let work = self.work.clone();
        let (run, round) = (open.run_id.clone(), open.round);
        let (score, verdict) = tokio::task::spawn_blocking(move || {
            let scored = work.evaluate(&run, round, ck, &peer, eval_seed, &bytes)?;
            if scored.1 != Verdict::Accept {
                return Ok(scored);
            }
            // A near-copy of an earlier submission of the round, or of their mean (ALIE), is
            // `Copied`, however well it scores (the later announcer is the copier).
            Ok::<_, TrainError>(match work.near_copy(&bytes, &earlier) {
                Some(found) => {
                    tracing::info!(run = %run, round, submission = %submission, %found, "near-copy of earlier submissions");
                    (scored.0, Verdict::Reject(RejectCode::Copied))
                }
                None => scored,
            })
        })
        .await
        .map_err(|e| ExecError::Task(e.to_string()))??;
        Ok((score, verdict))
    }

    /// Await a scoring job of machine `key` (an evaluation, or an audit's replay): a failure is
    /// logged and scores as `Unavailable`; the duration goes to the timeline as `step`. Returns
    /// the score, the verdict and the milliseconds taken.
    async fn timed(
        &self,
        key: &MachineKey,
        submission: SubmissionId,
        step: &'static str,
        job: impl std::future::Future<Output = Result<(Score, Verdict), ExecError>>,
    ) -> (Score, Verdict, u64) {
        let t = std::time::Instant::now();
        let (score, verdict) = job.await.unwrap_or_else(|e| {
            tracing::warn!(machine = %key, submission = %submission, step, error = %e, "scoring failed: answered as unavailable");
            failed_eval(RejectCode::Unavailable)
        });
        let ms = t.elapsed().as_millis() as u64;
        self.timeline
            .duration(key.run.as_str(), key.round, step, ms);
        (score, verdict, ms)
    }

    /// `Audit` (the coordinator): replay a disputed submission's evaluation exactly as a
    /// validator scores it — the checkpoint, the blob (from its author or any committee member
    /// that fetched it), candle on the eval seed's batch — without the near-copy check, whose
    /// outcome depends on what each validator held (L2T-04 §audit).
    async fn replay(
        &self,
        open: &Verified<RoundOpen>,
        submission: SubmissionId,
        checkpoint: BlobHash,
        blob: BlobHash,
        eval_seed: [u8; 32],
    ) -> Result<(Score, Verdict), ExecError> {
        if let Some(b) = self.bounty_of(open) {
            return self
                .evaluate_bounty(&b, open, submission, Phase::Initial, checkpoint, blob)
                .await;
        }
        let Some((peer, size)) = self.book.get(&submission) else {
            return Ok(failed_eval(RejectCode::Unavailable));
        };
        let ck = self
            .fetch_checkpoint(&open.run_id, open.round, &checkpoint, &[open.author()])
            .await?;
        let mut holders = vec![peer];
        holders.extend(open.validators.iter().copied());
        let bytes = self
            .fetch(
                &blob,
                size,
                &holders,
                round_placement(&open.run_id, open.round),
            )
            .await?;
        let work = self.work.clone();
        let run = open.run_id.clone();
        let round = open.round;
        tokio::task::spawn_blocking(move || {
            work.evaluate(&run, round, ck, &peer, eval_seed, &bytes)
        })
        .await
        .map_err(|e| ExecError::Task(e.to_string()))?
        .map_err(ExecError::from)
    }

    /// The blobs of `submission`'s round announced before it that this node holds or can fetch:
    /// what the near-copy check compares with. Evaluations run concurrently, so an earlier blob
    /// this validator is about to evaluate may not be held yet (a copycat's copy was once
    /// evaluated alongside its victim, compared with nothing and paid): each earlier blob not
    /// held is asked of its author, which serves it only if it was released to this node (it is
    /// on that submission's committee) and refuses at once otherwise; each ask is bounded by
    /// [`EARLIER_FETCH_SECS`].
    async fn held_earlier(
        &self,
        open: &RoundOpen,
        submission: &SubmissionId,
    ) -> Vec<(SubmissionId, Vec<u8>)> {
        let mut out = Vec::new();
        let placement = round_placement(&open.run_id, open.round);
        for (id, e) in self.book.earlier(submission) {
            if e.round != (open.run_id.clone(), open.round) {
                continue;
            }
            let blob = blob_id(&e.blob);
            let held = matches!(self.blobs.store().is_complete(&blob).await, Ok(true));
            let bytes = if held {
                self.blobs.read(&blob).await.ok()
            } else {
                let author = [e.author];
                let ask = self.fetch(&e.blob, e.size, &author, placement.clone());
                match tokio::time::timeout(Duration::from_secs(EARLIER_FETCH_SECS), ask).await {
                    Ok(Ok(b)) => Some(b),
                    Ok(Err(err)) => {
                        tracing::debug!(submission = %submission, earlier = %id, error = %err, "earlier blob not released to us: not compared");
                        None
                    }
                    Err(_) => {
                        tracing::debug!(submission = %submission, earlier = %id, "earlier blob not fetched in time: not compared");
                        None
                    }
                }
            };
            if let Some(b) = bytes {
                out.push((id, b));
            }
        }
        out
    }

    /// `Aggregate`: fetch every merged pseudo-gradient (from its author or any committee member
    /// that fetched it), aggregate onto the parent, store the new checkpoint blob. Anyone who
    /// saw the submissions recomputes a published checkpoint with the same call.
    pub async fn aggregate(
        &self,
        open: &Verified<RoundOpen>,
        parent: BlobHash,
        merged: &[MergedSubmission],
    ) -> Result<BlobHash, ExecError> {
        if let Some(b) = self.bounty_of(open) {
            return self.aggregate_bounty(&b, open, parent, merged).await;
        }
        let parent_ck = self
            .fetch_checkpoint(&open.run_id, open.round, &parent, &[open.author()])
            .await?;
        let cap = payload_bytes(&self.work.model, &self.work.training.codec_params())?;
        let mut grads = Vec::new();
        for (m, bytes) in self.fetch_merged(open, merged).await? {
            let g = PseudoGradient::from_blob_with_limit(&bytes, cap)
                .map_err(|e| ExecError::Task(format!("merged blob {}: {e}", m.blob)))?;
            grads.push(g);
        }
        let work = self.work.clone();
        let next = tokio::task::spawn_blocking(move || work.aggregate(&parent_ck, &grads))
            .await
            .map_err(|e| ExecError::Task(e.to_string()))??;
        let Some(next) = next else {
            return Ok(parent);
        };
        let bytes = next.to_safetensors()?;
        let id = self
            .blobs
            .add_bytes(bytes, &round_placement(&open.run_id, open.round + 1))
            .await?;
        Ok(BlobHash(id.0))
    }

    /// Byzantine (real mode): if `ev` is an attestation, sign and publish the opposite verdict
    /// for the same evaluation, without shares or fee invoice. The machine never sees it; the
    /// coordinator's tally drops both and publishes the pair as evidence.
    async fn equivocate(&self, keys: &Keys, key: &MachineKey, ev: &nostr_sdk::prelude::Event) {
        let Ok(a) = l402_protocol::events::parse::<AttestationEvent>(ev, None) else {
            return;
        };
        let Some(content) = conflicting_attestation(keys, &a) else {
            return;
        };
        match self.discovery.sign(&content, None) {
            Ok(second) => {
                let sent = self.discovery.publish(&second).await;
                tracing::warn!(machine = %key, submission = %content.attestation.body().submission, first = %ev.id, second = %second.id, published = sent.is_ok(), "equivocated (real-mode simulation)");
            }
            Err(e) => {
                tracing::warn!(machine = %key, error = %e, "could not sign the conflicting attestation")
            }
        }
    }

    /// Execute one action of machine `key` (whose round open is `open`); answers go to
    /// `reports`. Evaluations and aggregation run as tasks: the runtime keeps handling inputs.
    pub async fn execute(
        &self,
        key: &MachineKey,
        open: &Verified<RoundOpen>,
        action: Action,
        reports: &mpsc::UnboundedSender<Report>,
    ) -> Result<(), ExecError> {
        match action {
            Action::Publish(ev) => match self.discovery.publish(&ev).await {
                Ok(r) => {
                    tracing::debug!(machine = %key, event_id = %ev.id, kind = ev.kind.as_u16(), accepted = r.accepted.len(), "published");
                    if let Some(keys) = &self.equivocate {
                        self.equivocate(keys, key, &ev).await;
                    }
                }
                // Every relay refused it for good (a rule, not a network fault): nothing will
                // retry it, and a round that needs it stalls. Say which rule.
                Err(PublishError::NotAccepted { report })
                    if report.queued.is_empty() && !report.refused.is_empty() =>
                {
                    let rules: Vec<&str> = report.refused.values().map(String::as_str).collect();
                    tracing::error!(machine = %key, event_id = %ev.id, kind = ev.kind.as_u16(), refused = ?rules, "every relay refused this machine's event for good: the round stalls unless it is not needed")
                }
                // Queued in the outbox for the relays that did not answer: the supervisor
                // retries, and `resume` re-publishes after a restart.
                Err(e) => {
                    tracing::warn!(machine = %key, event_id = %ev.id, error = %e, "publish not yet accepted")
                }
            },
            Action::CreateHoldInvoice {
                submission,
                tranche,
                payment_hash,
                amount_msat,
                claim_deadline,
            } => {
                let desc = format!("l402 {key} tranche {tranche}");
                let bolt11 = match self.lightning.create_hold_invoice(
                    payment_hash,
                    amount_msat,
                    &desc,
                    HOLD_INVOICE_EXPIRY_SECS,
                ) {
                    Ok(inv) => inv.to_string(),
                    // Created before a restart (the machine persisted its request, then the
                    // process died before it learnt the invoice): tell it the same invoice
                    // again, from the invoice book, if it is the one asked for.
                    Err(LightningError::DuplicateHold(_)) => {
                        match self.lightning.invoice(&payment_hash) {
                            Some(inv) if inv.amount_msat() == Some(amount_msat) => {
                                tracing::debug!(machine = %key, %payment_hash, "hold invoice already exists: reporting it again");
                                inv.to_string()
                            }
                            _ => {
                                return Err(ExecError::Lightning(LightningError::DuplicateHold(
                                    payment_hash,
                                )))
                            }
                        }
                    }
                    Err(e) => return Err(e.into()),
                };
                tracing::info!(machine = %key, submission = %submission, tranche, %payment_hash, amount_msat, claim_deadline, "hold invoice created");
                let _ = reports.send(Report {
                    key: Some(key.clone()),
                    input: Input::InvoiceCreated {
                        payment_hash,
                        bolt11,
                    },
                });
            }
            Action::PayHoldInvoices {
                submission,
                peer,
                invoices,
            } => {
                let checked = check_hold_invoices(&invoices)?;
                for inv in checked {
                    let hash = inv.payment_hash();
                    if self.lightning.outbound_started(hash) {
                        continue; // paid before (a resumed coordinator): idempotent per hash
                    }
                    match self.pay_or_retry(key, &inv, "escrow HTLC") {
                        Ok(false) => {}
                        Ok(true) => {
                            tracing::info!(machine = %key, submission = %submission, peer = %peer, payment_hash = %hash, amount_msat = inv.amount_msat(), "escrow HTLC sent")
                        }
                        Err(e) => {
                            tracing::warn!(machine = %key, payment_hash = %hash, error = %e, "escrow payment refused")
                        }
                    }
                }
            }
            Action::Claim {
                payment_hash,
                preimage,
                amount_msat,
            } => {
                self.lightning.claim(payment_hash, &preimage)?;
                self.timeline
                    .hold(&payment_hash.to_hex(), "claim_requested");
                tracing::info!(machine = %key, %payment_hash, amount_msat, "claim requested");
            }
            Action::FailBack { payment_hash } => match self.lightning.fail(payment_hash) {
                Ok(()) => tracing::info!(machine = %key, %payment_hash, "failed back"),
                // Nothing was ever held (the invoice was never created or paid): the payer's
                // money never left; the machine learns it is over.
                Err(LightningError::UnknownHold(_)) => {
                    let _ = reports.send(Report {
                        key: None,
                        input: Input::HtlcFailed { payment_hash },
                    });
                }
                Err(e) => return Err(e.into()),
            },
            Action::ReleaseBlob { blob, to } => {
                let round = RoundKey {
                    run: key.run.as_str().to_owned(),
                    round: key.round,
                };
                let peers = self.iroh_keys(&to);
                let n = self.blobs.allow(&round, &peers).await?;
                // A corrupting node (real mode) serves its committee honest bytes, so its work is
                // evaluated, and everyone else — the coordinator that merges it — a flipped byte.
                let committee: Vec<PublicKey> =
                    to.iter().copied().filter(|k| *k != open.author()).collect();
                self.blobs.spare(blob_id(&blob), self.iroh_keys(&committee));
                tracing::info!(machine = %key, blob = %blob, readers = peers.len(), blobs = n, "blob released to the committee");
            }
            Action::RefundToll {
                submission,
                peer,
                bolt11,
                amount_msat,
            } => {
                let inv = check_refund_invoice(
                    submission,
                    &bolt11,
                    amount_msat,
                    &self.lightning.node_id().serialize(),
                )?;
                if !self.lightning.outbound_started(inv.payment_hash())
                    && self.pay_or_retry(key, &inv, "toll refund")?
                {
                    tracing::info!(machine = %key, submission = %submission, peer = %peer, payment_hash = %inv.payment_hash(), amount_msat, "toll refunded (submission refused)");
                }
            }
            Action::Refused {
                submission,
                refusal,
                refund_msat,
            } => {
                tracing::warn!(machine = %key, submission = %submission, %refusal, refund_msat, "the coordinator refused our submission");
            }
            Action::PayValidatorFee { validator, bolt11 } => {
                let inv = self.fee_invoice_checked(&validator, &bolt11)?;
                if !self.lightning.outbound_started(inv.payment_hash())
                    && self.pay_or_retry(key, &inv, "validator fee")?
                {
                    tracing::info!(machine = %key, validator = %validator, payment_hash = %inv.payment_hash(), amount_msat = inv.amount_msat(), "validator fee sent");
                }
            }
            Action::Evaluate {
                submission,
                phase,
                checkpoint,
                blob,
                eval_seed,
            } => {
                let (this, open, key, reports) =
                    (self.clone(), open.clone(), key.clone(), reports.clone());
                tokio::spawn(async move {
                    let job =
                        this.evaluate(&open, submission, phase, checkpoint, blob, eval_seed.0);
                    let (score, verdict, ms) = this.timed(&key, submission, "evaluate", job).await;
                    tracing::info!(machine = %key, submission = %submission, blob = %blob, phase = phase_label(phase), score = score.0, verdict = ?verdict, ms, "evaluated");
                    let fee_invoice = this.fee_invoice(&key, submission, phase);
                    let _ = reports.send(Report {
                        key: Some(key),
                        input: Input::EvalDone {
                            submission,
                            phase,
                            score,
                            verdict,
                            fee_invoice,
                        },
                    });
                });
            }
            Action::Audit {
                submission,
                checkpoint,
                blob,
                eval_seed,
            } => {
                let (this, open, key, reports) =
                    (self.clone(), open.clone(), key.clone(), reports.clone());
                tokio::spawn(async move {
                    // A failed replay answers `Unavailable`: nobody is convicted on it.
                    let job = this.replay(&open, submission, checkpoint, blob, eval_seed.0);
                    let (score, verdict, ms) = this.timed(&key, submission, "audit", job).await;
                    tracing::info!(machine = %key, submission = %submission, blob = %blob, score = score.0, verdict = ?verdict, ms, "audited a disputed evaluation by replay");
                    let _ = reports.send(Report {
                        key: Some(key),
                        input: Input::Audited {
                            submission,
                            score,
                            verdict,
                        },
                    });
                });
            }
            Action::Aggregate { list } => {
                let (this, open, key, reports) =
                    (self.clone(), open.clone(), key.clone(), reports.clone());
                tokio::spawn(async move {
                    // The merged list first: the checkpoint event names it by hash, so it must be
                    // fetchable (public, like the checkpoint) before the event is published.
                    let (list_hash, list_bytes) = list.blob();
                    let stored = this
                        .blobs
                        .add_bytes(list_bytes, &round_placement(&open.run_id, open.round + 1))
                        .await;
                    if let Err(e) = stored {
                        tracing::error!(machine = %key, error = %e, "storing the merged list failed");
                        return;
                    }
                    match this.aggregate(&open, list.parent, &list.merged).await {
                        Ok(checkpoint) => {
                            tracing::info!(machine = %key, merged = list.merged.len(), merged_list = %list_hash, checkpoint = %checkpoint, "aggregated");
                            let _ = reports.send(Report {
                                key: Some(key),
                                input: Input::CheckpointReady { checkpoint },
                            });
                        }
                        // Retried by `resume` after a restart (the machine re-asks while no
                        // checkpoint is published).
                        Err(e) => tracing::error!(machine = %key, error = %e, "aggregation failed"),
                    }
                });
            }
            Action::Ignored { event, reason } => {
                tracing::debug!(machine = %key, event_id = %event, %reason, "ignored")
            }
            other => {
                tracing::warn!(machine = %key, action = ?other, "unknown action: not executed")
            }
        }
        Ok(())
    }
}

/// A refused submission's refund invoice, checked before paying: a BOLT11 asking exactly the
/// toll `amount_msat`, not expired, not payable to this node (`own`).
pub fn check_refund_invoice(
    submission: SubmissionId,
    bolt11: &str,
    amount_msat: u64,
    own: &[u8; 33],
) -> Result<Invoice, ExecError> {
    let bad = |reason: String| ExecError::BadRefundInvoice { submission, reason };
    let inv: Invoice = bolt11
        .parse()
        .map_err(|e: LightningError| bad(e.to_string()))?;
    if inv.amount_msat() != Some(amount_msat) {
        return Err(bad(format!(
            "asks {:?} msat, the toll was {amount_msat}",
            inv.amount_msat()
        )));
    }
    if inv.is_expired() {
        return Err(bad("expired".into()));
    }
    if &inv.payee() == own {
        return Err(bad("payable to this node".into()));
    }
    Ok(inv)
}

/// Seconds between attempts to fetch a submission its author did not serve.
const REFETCH_SECS: u64 = 2;

/// Whether a failed fetch may succeed when tried again: every provider was unreachable,
/// stalled, broke off, refused or did not hold the blob (yet); none sent bytes that fail the
/// BLAKE3 check or proved another size (a provider that does that is not retried).
fn is_transient(e: &ExecError) -> bool {
    match e {
        ExecError::Blob(BlobError::AllProvidersFailed { attempts, .. }) => {
            attempts.iter().all(|(_, f)| {
                !matches!(
                    f,
                    ProviderFailure::Corrupt(_) | ProviderFailure::SizeMismatch { .. }
                )
            })
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use ldk_node::bitcoin::hashes::{sha256, Hash};
    use ldk_node::bitcoin::secp256k1::{Secp256k1, SecretKey};
    use ldk_node::lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};

    use super::*;

    /// A fetch is retried when its author could not serve the blob yet (unreachable, killed
    /// mid-transfer, stalled, refused, not holding it), never after wrong bytes or a wrong size.
    #[test]
    fn only_transient_fetch_failures_are_retried() {
        let failed = |f: ProviderFailure| {
            ExecError::Blob(BlobError::AllProvidersFailed {
                hash: "ab".into(),
                attempts: vec![
                    (ProviderId([1; 32]), ProviderFailure::NotFound),
                    (ProviderId([2; 32]), f),
                ],
            })
        };
        for f in [
            ProviderFailure::Connect("refused".into()),
            ProviderFailure::Stalled { phase: "body" },
            ProviderFailure::Refused,
            ProviderFailure::NotFound,
            ProviderFailure::Transfer("reset".into()),
        ] {
            assert!(is_transient(&failed(f.clone())), "{f}");
        }
        for f in [
            ProviderFailure::Corrupt("bad chunk".into()),
            ProviderFailure::SizeMismatch {
                provided: 1,
                announced: 2,
            },
        ] {
            assert!(!is_transient(&failed(f.clone())), "{f}");
        }
        let capped = ExecError::Blob(BlobError::SizeOverCap {
            announced: 9,
            cap: 1,
        });
        assert!(!is_transient(&capped));
    }

    /// A real signed regtest BOLT11 invoice (lightning-invoice, as ldk-node builds them).
    fn bolt11(hash: [u8; 32], amount_msat: u64) -> String {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
        InvoiceBuilder::new(Currency::Regtest)
            .description("l402 test".into())
            .payment_hash(sha256::Hash::from_byte_array(hash))
            .payment_secret(PaymentSecret([1; 32]))
            .duration_since_epoch(Duration::from_secs(1_700_000_000))
            .min_final_cltv_expiry_delta(144)
            .amount_milli_satoshis(amount_msat)
            .build_signed(|m| secp.sign_ecdsa_recoverable(m, &sk))
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_refund_invoice_is_paid_only_for_exactly_the_toll_unexpired_and_not_to_ourselves() {
        let sub = SubmissionId([3; 32]);
        let fresh = |amount: u64| {
            let secp = Secp256k1::new();
            let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            InvoiceBuilder::new(Currency::Regtest)
                .description("l402 toll refund".into())
                .payment_hash(sha256::Hash::from_byte_array([5; 32]))
                .payment_secret(PaymentSecret([1; 32]))
                .duration_since_epoch(now)
                .min_final_cltv_expiry_delta(144)
                .amount_milli_satoshis(amount)
                .build_signed(|m| secp.sign_ecdsa_recoverable(m, &sk))
                .unwrap()
                .to_string()
        };
        let other = [2u8; 33];
        assert!(check_refund_invoice(sub, &fresh(10_000), 10_000, &other).is_ok());
        let refused = |b: &str, own: &[u8; 33]| {
            matches!(
                check_refund_invoice(sub, b, 10_000, own),
                Err(ExecError::BadRefundInvoice { .. })
            )
        };
        assert!(refused(&fresh(10_001), &other), "more than the toll");
        assert!(refused(&bolt11([5; 32], 10_000), &other), "expired (2023)");
        assert!(refused("lnbcrt1garbage", &other));
        let ours = check_refund_invoice(sub, &fresh(10_000), 10_000, &other)
            .unwrap()
            .payee();
        assert!(
            refused(&fresh(10_000), &ours),
            "payable to the coordinator itself"
        );
    }

    fn tranche(i: u32, hash: [u8; 32], bolt11: String) -> TrancheInvoice {
        TrancheInvoice {
            tranche: i,
            payment_hash: PaymentHash(hash),
            bolt11,
        }
    }

    #[test]
    fn hold_invoices_are_paid_only_if_every_hash_and_amount_checks_out() {
        let good = vec![
            (tranche(0, [1; 32], bolt11([1; 32], 5_000)), 5_000),
            (tranche(1, [2; 32], bolt11([2; 32], 7_000)), 7_000),
        ];
        let ok = check_hold_invoices(&good).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].payment_hash(), PaymentHash([2; 32]));

        // An invoice for a hash the dealing did not make: the payer would pay for a preimage
        // the worker alone knows. Nothing is paid, not even the good tranche.
        let mut swapped = good.clone();
        swapped[1].0.bolt11 = bolt11([9; 32], 7_000);
        assert!(matches!(
            check_hold_invoices(&swapped),
            Err(ExecError::WrongHash { tranche: 1, .. })
        ));
        let mut greedy = good.clone();
        greedy[0].0.bolt11 = bolt11([1; 32], 5_001);
        assert!(matches!(
            check_hold_invoices(&greedy),
            Err(ExecError::WrongAmount {
                tranche: 0,
                expected: 5_000,
                got: Some(5_001)
            })
        ));
        let mut garbage = good;
        garbage[0].0.bolt11 = "lnbcrt1garbage".into();
        assert!(matches!(
            check_hold_invoices(&garbage),
            Err(ExecError::BadInvoice { tranche: 0, .. })
        ));
    }

    #[test]
    fn hold_invoice_events_become_machine_inputs() {
        let h = PaymentHash([3; 32]);
        assert!(matches!(
            lightning_input(&LightningEvent::HoldClaimable {
                payment_hash: h,
                amount_msat: 9,
                claim_deadline: Some(100)
            }),
            Some(Input::HtlcHeld { payment_hash, amount_msat: 9 }) if payment_hash == h
        ));
        assert!(matches!(
            lightning_input(&LightningEvent::HoldClaimed {
                payment_hash: h,
                amount_msat: 9
            }),
            Some(Input::HtlcClaimed { .. })
        ));
        assert!(lightning_input(&LightningEvent::Lagged { missed: 1 }).is_none());
    }
}
