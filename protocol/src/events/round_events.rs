//! The training-round kinds: round open, submission, escrow offer, escrow lock, attestation and
//! checkpoint, plus the scope check that rejects events replayed from another run or round.
//!
//! Spec: specs/L2T-01-events.md#round-kinds

use super::parse::json_content;
use std::collections::BTreeSet;

use nostr::{EventId, PublicKey, Tag};
use serde::{Deserialize, Serialize};

use super::ids::{BlobHash, PaymentHash, RunId, Score, Seed32, SubmissionId, UnixTime};
use super::parse::{from_json, to_json, EventContent};
use super::{
    tags, L402Kind, RejectReason, Verified, EXPIRY_GRACE_SECS, MAX_BOLT11_LEN,
    MAX_SUBMISSION_BLOB_BYTES, MAX_TOKEN_LEN,
};
use crate::escrow::dealing::MAX_SHARE_CIPHERTEXT_LEN;
use crate::escrow::tranche::{validate_schedule, TrancheSpec, MAX_TRANCHES};
use crate::escrow::{SignedDealing, MAX_VALIDATORS};
use crate::quorum::committee::{self, CommitteeError, CommitteeProof};
use crate::quorum::{round_seed, SignedAttestation, Tolerance, Verdict};

fn schema<T>(s: &str) -> Result<T, RejectReason> {
    Err(RejectReason::Schema(s.into()))
}

fn distinct<T: Ord>(it: impl IntoIterator<Item = T>) -> bool {
    let mut seen = BTreeSet::new();
    it.into_iter().all(|x| seen.insert(x))
}

/// Times of the holdback re-evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldbackWindow {
    /// Validators re-evaluate from this time on.
    pub reeval_at: UnixTime,
    /// Holdback attestations must be published before this time.
    pub attest_deadline: UnixTime,
    /// The holdback tranche is claimed or failed back before this time.
    pub claim_deadline: UnixTime,
}

/// Round open, by the coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundOpen {
    /// Content version (1).
    pub v: u32,
    /// Run.
    pub run_id: RunId,
    /// Round number.
    pub round: u64,
    /// Checkpoint peers train from.
    pub checkpoint: BlobHash,
    /// The previous checkpoint (input of the seed).
    pub prev_checkpoint: BlobHash,
    /// `round_seed(run, round, prev_checkpoint)`; checked by every parser.
    pub seed: Seed32,
    /// The round's validator pool, drawn with `seed` from the opted-in validators. Each
    /// submission's committee is drawn from it ([`crate::quorum::committee`]).
    pub validators: Vec<PublicKey>,
    /// Committee size `n` per submission; absent = the whole pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committee: Option<u32>,
    /// Quorum threshold.
    pub k: u32,
    /// Submissions after this time are ignored.
    pub submit_deadline: UnixTime,
    /// Attestations after this time are ignored.
    pub attest_deadline: UnixTime,
    /// Regular tranches are claimed or failed back before this time.
    pub claim_deadline: UnixTime,
    /// Holdback window, present iff the schedule has a holdback tranche.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdback: Option<HoldbackWindow>,
    /// Tranches per accepted submission.
    pub tranches: Vec<TrancheSpec>,
    /// L402 price of a submission token, in millisatoshis.
    pub submission_price_msat: u64,
    /// Most submissions the coordinator takes this round (a declared run parameter; absent:
    /// no cap). Beyond it, a submission is refused with a [`SubmissionRefusal`] and its toll
    /// refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_submissions: Option<u32>,
    /// Score tolerance.
    pub tolerance: Tolerance,
}

impl RoundOpen {
    fn check(&self) -> Result<(), RejectReason> {
        if self.seed != round_seed(&self.run_id, self.round, &self.prev_checkpoint) {
            return schema("seed is not round_seed(run, round, prev_checkpoint)");
        }
        let pool = self.validators.len();
        let n = self.committee_size();
        if self.k == 0 || self.k as usize > n || n > pool || pool > MAX_VALIDATORS {
            return schema("k, committee and pool");
        }
        if !distinct(self.validators.iter()) {
            return schema("duplicate validator");
        }
        if !(self.submit_deadline < self.attest_deadline
            && self.attest_deadline < self.claim_deadline)
        {
            return schema("deadlines must increase: submit < attest < claim");
        }
        validate_schedule(&self.tranches).map_err(|e| RejectReason::Schema(e.to_string()))?;
        let has_holdback = self.tranches.iter().any(|t| t.holdback);
        match (&self.holdback, has_holdback) {
            (None, false) => {}
            (Some(h), true) => {
                if !(self.attest_deadline <= h.reeval_at
                    && h.reeval_at < h.attest_deadline
                    && h.attest_deadline < h.claim_deadline)
                {
                    return schema("holdback window must follow the round");
                }
            }
            _ => return schema("holdback window iff holdback tranche"),
        }
        if self.max_submissions == Some(0) {
            return schema("max_submissions must be at least 1");
        }
        Ok(())
    }

    /// Whether a round that already took `taken` submissions takes another
    /// ([`RoundOpen::max_submissions`]).
    pub fn admits(&self, taken: usize) -> Result<(), Refusal> {
        match self.max_submissions {
            Some(max) if taken >= max as usize => Err(Refusal::RoundFull { max }),
            _ => Ok(()),
        }
    }

    /// Committee size per submission (`committee`, or the whole pool).
    pub fn committee_size(&self) -> usize {
        self.committee.map_or(self.validators.len(), |n| n as usize)
    }

    /// The committee of `submission`, from the coordinator's VRF proof (checked here), in share
    /// order.
    pub fn submission_committee(
        &self,
        coordinator: &PublicKey,
        submission: &SubmissionId,
        proof: &CommitteeProof,
    ) -> Result<Vec<PublicKey>, CommitteeError> {
        let seed = committee::verify(
            coordinator,
            &self.run_id,
            self.round,
            &self.seed,
            submission,
            proof,
        )?;
        self.committee_for_seed(&seed)
    }

    /// The committee of a verified offer: its proof verified when the offer was decoded, over
    /// the round seed it names, which must be this round's.
    pub fn offer_committee(
        &self,
        offer: &Verified<EscrowOffer>,
    ) -> Result<Vec<PublicKey>, CommitteeError> {
        match &offer.round_seed {
            Some(seed) if *seed != self.seed => Err(CommitteeError::OtherRoundSeed),
            Some(_) => self.committee_for_seed(&committee::seed_of(&offer.committee.gamma)),
            // A version-1 offer: its proof was not checked at decode; check it here, over
            // this round's seed.
            None => self.submission_committee(&offer.author(), &offer.submission, &offer.committee),
        }
    }

    /// The committee a committee seed draws from the pool (size [`RoundOpen::committee_size`],
    /// threshold `k`), in share order.
    pub fn committee_for_seed(&self, seed: &Seed32) -> Result<Vec<PublicKey>, CommitteeError> {
        committee::draw(
            &self.validators,
            seed,
            self.committee_size(),
            self.k as usize,
        )
    }

    /// Claim deadline of a tranche.
    pub fn claim_deadline_for(&self, spec: &TrancheSpec) -> UnixTime {
        match (&self.holdback, spec.holdback) {
            (Some(h), true) => h.claim_deadline,
            _ => self.claim_deadline,
        }
    }

    /// The last deadline of the round.
    pub fn last_deadline(&self) -> UnixTime {
        self.holdback
            .map(|h| h.claim_deadline)
            .unwrap_or(self.claim_deadline)
    }

    /// The scope other events of this round must match.
    pub fn scope(&self, coordinator: PublicKey) -> RoundScope {
        RoundScope {
            run_id: self.run_id.clone(),
            round: self.round,
            checkpoint: self.checkpoint,
            coordinator,
            validators: self.validators.clone(),
        }
    }
}

impl EventContent for RoundOpen {
    const KIND: L402Kind = L402Kind::RoundOpen;

    fn tags(&self) -> Vec<Tag> {
        let mut t = vec![
            tags::run(&self.run_id),
            tags::round(self.round),
            tags::blob(&self.checkpoint),
        ];
        t.extend(self.validators.iter().map(tags::p));
        t.push(tags::t(tags::HASHTAG));
        t.push(tags::expiration(self.last_deadline() + EXPIRY_GRACE_SECS));
        t
    }
    json_content!();
}

/// Submission, by a peer. Its event id is the [`SubmissionId`]; the blob hash is the commitment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Content version (1).
    pub v: u32,
    /// Run.
    pub run_id: RunId,
    /// Round.
    pub round: u64,
    /// Checkpoint the pseudo-gradient was computed from.
    pub checkpoint: BlobHash,
    /// The round's coordinator.
    pub coordinator: PublicKey,
    /// BLAKE3 hash of the pseudo-gradient blob.
    pub blob: BlobHash,
    /// Blob size in bytes.
    pub size: u64,
    /// The peer's own local loss reduction, in millionths (informative only).
    pub claimed_loss: Score,
    /// L402 credential `<base64 macaroon>:<hex preimage>` for the run's submission service; the
    /// macaroon carries a `pubkey` caveat so only this author can use it.
    pub token: String,
    /// Makes otherwise identical submissions distinct events.
    pub nonce: u64,
    /// A BOLT11 invoice of the toll's amount, payable to the peer: the coordinator pays it if it
    /// refuses the submission after taking the toll ([`SubmissionRefusal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_invoice: Option<String>,
}

impl Submission {
    fn check(&self) -> Result<(), RejectReason> {
        if self.size == 0 || self.size > MAX_SUBMISSION_BLOB_BYTES {
            return schema("blob size");
        }
        if self.token.is_empty() || self.token.len() > MAX_TOKEN_LEN {
            return schema("token length");
        }
        if self
            .refund_invoice
            .as_ref()
            .is_some_and(|i| i.is_empty() || i.len() > MAX_BOLT11_LEN)
        {
            return schema("refund invoice length");
        }
        Ok(())
    }
}

impl EventContent for Submission {
    const KIND: L402Kind = L402Kind::Submission;

    fn tags(&self) -> Vec<Tag> {
        vec![
            tags::run(&self.run_id),
            tags::round(self.round),
            tags::blob(&self.blob),
            tags::p(&self.coordinator),
        ]
    }
    json_content!();
}

/// Escrow offer, by the payer: one signed dealing per tranche.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscrowOffer {
    /// Run.
    pub run_id: RunId,
    /// Round.
    pub round: u64,
    /// Submission rewarded.
    pub submission: SubmissionId,
    /// Worker.
    pub peer: PublicKey,
    /// Dealing of tranche `i` at position `i`.
    pub dealings: Vec<SignedDealing>,
    /// The coordinator's VRF proof that draws this submission's committee from the pool; every
    /// dealing's validators must be exactly that committee, in order.
    pub committee: CommitteeProof,
    /// The round seed the proof was made over (the round open's): with it the proof is checked
    /// once, when the event is decoded, rather than by every member and the worker. Content
    /// [`OFFER_CONTENT_VERSION`] carries it; `None` only for a version-1 offer (made before,
    /// e.g. restored from an earlier build's store), whose proof each role checks over its
    /// round's seed ([`RoundOpen::offer_committee`]).
    pub round_seed: Option<Seed32>,
}

/// Content version of [`EscrowOffer`]: 2 names the round seed (`round_seed`). Version 1 (no
/// seed) is still decoded.
pub const OFFER_CONTENT_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct EscrowOfferJson {
    v: u32,
    run_id: RunId,
    round: u64,
    submission: SubmissionId,
    peer: PublicKey,
    dealings: Vec<String>,
    committee: CommitteeProof,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    round_seed: Option<Seed32>,
}

impl EscrowOffer {
    /// The schema rules between the offer and its dealings (`author`: the event's signer).
    pub(crate) fn check(&self, author: &PublicKey) -> Result<(), RejectReason> {
        if self.dealings.is_empty() || self.dealings.len() > MAX_TRANCHES {
            return schema("dealing count");
        }
        let first = self.dealings[0].body();
        for (i, d) in self.dealings.iter().enumerate() {
            let b = d.body();
            if &b.dealer != author {
                return Err(RejectReason::AuthorMismatch);
            }
            if b.run_id != self.run_id
                || b.round != self.round
                || b.submission != self.submission
                || b.peer != self.peer
            {
                return schema("dealing bound to another run, round, submission or peer");
            }
            if b.tranche as usize != i {
                return schema("dealing tranche index");
            }
            if b.validators != first.validators || b.k != first.k {
                return schema("dealings disagree on the committee");
            }
        }
        if !distinct(self.dealings.iter().map(|d| d.body().payment_hash)) {
            return schema("payment hashes must be distinct");
        }
        Ok(())
    }

    /// The committee proof, checked against the author's key over the offer's round seed
    /// (decoding runs it; the coordinator's own just-made offer skips it). A version-1 offer
    /// names no seed: its proof is left to [`RoundOpen::offer_committee`].
    fn check_committee_proof(&self, author: &PublicKey) -> Result<(), RejectReason> {
        let Some(seed) = &self.round_seed else {
            return Ok(());
        };
        committee::verify(
            author,
            &self.run_id,
            self.round,
            seed,
            &self.submission,
            &self.committee,
        )
        .map(|_| ())
        .map_err(|e| RejectReason::Schema(format!("committee: {e}")))
    }
}

impl EventContent for EscrowOffer {
    const KIND: L402Kind = L402Kind::EscrowOffer;

    fn tags(&self) -> Vec<Tag> {
        vec![
            tags::run(&self.run_id),
            tags::round(self.round),
            tags::submission(&self.submission),
            tags::p(&self.peer),
            tags::e(&EventId::from_byte_array(self.submission.0)),
        ]
        .into_iter()
        // The committee members, so that a validator's relay filter (`#p`) selects only the
        // offers it must act on.
        .chain(
            self.dealings
                .first()
                .into_iter()
                .flat_map(|d| d.body().validators.iter().map(tags::p)),
        )
        .collect()
    }
    fn to_content(&self) -> String {
        to_json(&EscrowOfferJson {
            // A version-1 offer re-encodes as one (its signature covers those bytes).
            v: if self.round_seed.is_some() {
                OFFER_CONTENT_VERSION
            } else {
                super::CONTENT_VERSION
            },
            run_id: self.run_id.clone(),
            round: self.round,
            submission: self.submission,
            peer: self.peer,
            dealings: self.dealings.iter().map(SignedDealing::to_base64).collect(),
            committee: self.committee,
            round_seed: self.round_seed,
        })
    }
    fn from_content(content: &str, author: &PublicKey) -> Result<Self, RejectReason> {
        let j: EscrowOfferJson = super::parse::from_json_versions(
            content,
            &[super::CONTENT_VERSION, OFFER_CONTENT_VERSION],
        )?;
        match (j.v, &j.round_seed) {
            (OFFER_CONTENT_VERSION, None) => {
                return schema("a version-2 offer names its round seed")
            }
            (v, Some(_)) if v != OFFER_CONTENT_VERSION => {
                return schema("only a version-2 offer names a round seed")
            }
            _ => {}
        }
        if j.dealings.len() > MAX_TRANCHES {
            return schema("dealing count");
        }
        let dealings = j
            .dealings
            .iter()
            .map(|d| SignedDealing::from_base64(d).map_err(|e| RejectReason::Inner(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let a = Self {
            run_id: j.run_id,
            round: j.round,
            submission: j.submission,
            peer: j.peer,
            dealings,
            committee: j.committee,
            round_seed: j.round_seed,
        };
        a.check(author)?;
        a.check_committee_proof(author)?;
        Ok(a)
    }
}

/// Progress of the worker's hold invoices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockState {
    /// Invoices created; the payer should pay them.
    Invoices,
    /// Every HTLC is held: the escrow is locked and the blob is released to the validators.
    Locked,
}

/// One hold invoice of a tranche.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrancheInvoice {
    /// Tranche index.
    pub tranche: u32,
    /// Its payment hash (`H` of the dealing).
    pub payment_hash: PaymentHash,
    /// BOLT11 hold invoice (checked against the hash and amount by the payer's node).
    pub bolt11: String,
}

/// Escrow lock progress, by the worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowLock {
    /// Content version (1).
    pub v: u32,
    /// Run.
    pub run_id: RunId,
    /// Round.
    pub round: u64,
    /// Submission.
    pub submission: SubmissionId,
    /// The payer.
    pub coordinator: PublicKey,
    /// Invoices issued, or escrow locked.
    pub state: LockState,
    /// The hold invoices (in the `invoices` state).
    #[serde(default)]
    pub invoices: Vec<TrancheInvoice>,
}

impl EscrowLock {
    fn check(&self) -> Result<(), RejectReason> {
        if self.invoices.len() > MAX_TRANCHES {
            return schema("invoice count");
        }
        if self.state == LockState::Invoices && self.invoices.is_empty() {
            return schema("no invoices");
        }
        if self
            .invoices
            .iter()
            .any(|i| i.bolt11.is_empty() || i.bolt11.len() > MAX_BOLT11_LEN)
        {
            return schema("bolt11 length");
        }
        if !distinct(self.invoices.iter().map(|i| i.tranche)) {
            return schema("duplicate tranche");
        }
        Ok(())
    }
}

impl EventContent for EscrowLock {
    const KIND: L402Kind = L402Kind::EscrowLock;

    fn tags(&self) -> Vec<Tag> {
        vec![
            tags::run(&self.run_id),
            tags::round(self.round),
            tags::submission(&self.submission),
            tags::p(&self.coordinator),
        ]
    }
    json_content!();
}

/// Why a coordinator refused a submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// The round already took its declared [`RoundOpen::max_submissions`].
    #[error("round full: it takes at most {max} submissions")]
    RoundFull {
        /// The cap.
        max: u32,
    },
}

/// A coordinator's refusal of a submission whose token it took, by the coordinator: why, and
/// the refund of the toll (paid to the submission's `refund_invoice`, if it had one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionRefusal {
    /// Content version (1).
    pub v: u32,
    /// Run.
    pub run_id: RunId,
    /// Round.
    pub round: u64,
    /// The refused submission.
    pub submission: SubmissionId,
    /// Its author.
    pub peer: PublicKey,
    /// Why.
    pub refusal: Refusal,
    /// The toll refunded to the submission's refund invoice (0: it had none).
    pub refund_msat: u64,
}

impl SubmissionRefusal {
    fn check(&self) -> Result<(), RejectReason> {
        Ok(())
    }
}

impl EventContent for SubmissionRefusal {
    const KIND: L402Kind = L402Kind::SubmissionRefusal;

    fn tags(&self) -> Vec<Tag> {
        vec![
            tags::run(&self.run_id),
            tags::round(self.round),
            tags::submission(&self.submission),
            tags::p(&self.peer),
        ]
    }
    json_content!();
}

/// A validator's share of one tranche, NIP-44-encrypted to the worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedShare {
    /// Tranche index.
    pub tranche: u32,
    /// NIP-44 v2 ciphertext (base64), from the validator's key to the worker's.
    pub ciphertext: String,
}

/// Attestation, by a validator: the signed attestation, the shares it releases (tranches whose
/// threshold its score meets) and its fee invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationEvent {
    /// The signed attestation (signed by the event author).
    pub attestation: SignedAttestation,
    /// The worker.
    pub peer: PublicKey,
    /// Released shares.
    pub shares: Vec<ReleasedShare>,
    /// BOLT11 invoice for the validation fee.
    pub fee_invoice: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct AttestationJson {
    v: u32,
    attestation: String,
    peer: PublicKey,
    #[serde(default)]
    shares: Vec<ReleasedShare>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fee_invoice: Option<String>,
}

impl EventContent for AttestationEvent {
    const KIND: L402Kind = L402Kind::Attestation;

    fn tags(&self) -> Vec<Tag> {
        let b = self.attestation.body();
        vec![
            tags::run(&b.run_id),
            tags::round(b.round),
            tags::submission(&b.submission),
            tags::blob(&b.gradient),
            tags::p(&self.peer),
        ]
    }
    fn to_content(&self) -> String {
        to_json(&AttestationJson {
            v: super::CONTENT_VERSION,
            attestation: self.attestation.to_base64(),
            peer: self.peer,
            shares: self.shares.clone(),
            fee_invoice: self.fee_invoice.clone(),
        })
    }
    fn from_content(content: &str, author: &PublicKey) -> Result<Self, RejectReason> {
        let j: AttestationJson = from_json(content)?;
        let attestation = SignedAttestation::from_base64(&j.attestation)
            .map_err(|e| RejectReason::Inner(e.to_string()))?;
        if &attestation.validator() != author {
            return Err(RejectReason::AuthorMismatch);
        }
        if j.shares.len() > MAX_TRANCHES
            || j.shares
                .iter()
                .any(|s| s.ciphertext.is_empty() || s.ciphertext.len() > MAX_SHARE_CIPHERTEXT_LEN)
            || !distinct(j.shares.iter().map(|s| s.tranche))
        {
            return schema("released shares");
        }
        if matches!(attestation.body().verdict, Verdict::Reject(_)) && !j.shares.is_empty() {
            return schema("a rejecting attestation releases no share");
        }
        if j.fee_invoice
            .as_ref()
            .is_some_and(|f| f.len() > MAX_BOLT11_LEN)
        {
            return schema("fee invoice length");
        }
        Ok(Self {
            attestation,
            peer: j.peer,
            shares: j.shares,
            fee_invoice: j.fee_invoice,
        })
    }
}

/// A submission merged into a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedSubmission {
    /// Submission id.
    pub submission: SubmissionId,
    /// Its blob.
    pub blob: BlobHash,
}

/// Content version of [`Checkpoint`]: 2 names the merged list by hash (version 1 inlined it and
/// capped it at 256 entries; it is refused as unsupported).
pub const CHECKPOINT_VERSION: u32 = 2;

/// Largest merged-list blob accepted, in bytes: about 440 000 entries. A resource bound on the
/// parser, far above any declared submission cap ([`RoundOpen::max_submissions`]).
pub const MAX_MERGED_LIST_BYTES: u64 = 64 * 1024 * 1024;

/// Content version of [`MergedList`].
pub const MERGED_LIST_VERSION: u32 = 1;

/// Checkpoint publication, by the coordinator: the new checkpoint and the BLAKE3 hash of the
/// [`MergedList`] blob naming exactly the submissions with a passing quorum, so anyone can fetch
/// the list and recompute the aggregate. The event stays small whatever the number of merged
/// submissions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Content version ([`CHECKPOINT_VERSION`]).
    pub v: u32,
    /// Run.
    pub run_id: RunId,
    /// Round that produced it.
    pub round: u64,
    /// New checkpoint blob.
    pub checkpoint: BlobHash,
    /// Checkpoint the round started from.
    pub parent: BlobHash,
    /// BLAKE3 hash of the canonical [`MergedList`] blob.
    pub merged_list: BlobHash,
    /// Its size in bytes (what a fetcher allows).
    pub merged_list_size: u64,
    /// Number of merged submissions in it.
    pub merged_count: u64,
}

impl Checkpoint {
    /// The checkpoint event of `list` producing `checkpoint`.
    pub fn new(list: &MergedList, checkpoint: BlobHash) -> Self {
        let (hash, bytes) = list.blob();
        Self {
            v: CHECKPOINT_VERSION,
            run_id: list.run_id.clone(),
            round: list.round,
            checkpoint,
            parent: list.parent,
            merged_list: hash,
            merged_list_size: bytes.len() as u64,
            merged_count: list.merged.len() as u64,
        }
    }
}

impl EventContent for Checkpoint {
    const KIND: L402Kind = L402Kind::Checkpoint;

    fn tags(&self) -> Vec<Tag> {
        vec![
            tags::run(&self.run_id),
            tags::round(self.round),
            tags::blob(&self.checkpoint),
            tags::t(tags::HASHTAG),
        ]
    }
    fn to_content(&self) -> String {
        to_json(self)
    }
    fn from_content(content: &str, _author: &PublicKey) -> Result<Self, RejectReason> {
        #[derive(Deserialize)]
        struct V {
            v: u32,
        }
        let v: V =
            serde_json::from_str(content).map_err(|e| RejectReason::BadContent(e.to_string()))?;
        if v.v != CHECKPOINT_VERSION {
            return Err(RejectReason::UnsupportedVersion(v.v));
        }
        let a: Self =
            serde_json::from_str(content).map_err(|e| RejectReason::BadContent(e.to_string()))?;
        if a.merged_list_size > MAX_MERGED_LIST_BYTES {
            return schema("merged list too large");
        }
        Ok(a)
    }
}

/// The merged submissions of one checkpoint, as a canonical blob (compact JSON, entries sorted
/// by submission id and distinct) whose BLAKE3 hash the [`Checkpoint`] event names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedList {
    /// Content version ([`MERGED_LIST_VERSION`]).
    pub v: u32,
    /// Run.
    pub run_id: RunId,
    /// Round.
    pub round: u64,
    /// Checkpoint the round started from.
    pub parent: BlobHash,
    /// Merged submissions, sorted by submission id.
    pub merged: Vec<MergedSubmission>,
}

/// Why a merged-list blob does not match its checkpoint event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergedListError {
    /// Larger than the event says (or than [`MAX_MERGED_LIST_BYTES`]); checked before decoding.
    #[error("merged list of {size} bytes, at most {max} allowed")]
    TooLarge {
        /// Bytes given.
        size: u64,
        /// Allowed.
        max: u64,
    },
    /// BLAKE3 of the bytes is not the hash the event names.
    #[error("merged list hash differs from the checkpoint event's")]
    HashMismatch,
    /// Not the canonical encoding of a merged list of this version.
    #[error("merged list does not decode: {0}")]
    Decode(String),
    /// Decodes, but breaks a rule (named).
    #[error("merged list is invalid: {0}")]
    Invalid(&'static str),
}

impl MergedList {
    /// The list of `merged` (sorted here) for round `round` of `run` from `parent`.
    pub fn new(
        run_id: RunId,
        round: u64,
        parent: BlobHash,
        mut merged: Vec<MergedSubmission>,
    ) -> Self {
        merged.sort_by_key(|m| m.submission);
        merged.dedup_by(|a, b| a.submission == b.submission);
        Self {
            v: MERGED_LIST_VERSION,
            run_id,
            round,
            parent,
            merged,
        }
    }

    /// Canonical bytes (compact JSON in field order).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// BLAKE3 hash of [`MergedList::to_bytes`].
    pub fn hash(&self) -> BlobHash {
        self.blob().0
    }

    /// The blob to store and its hash, serialised once.
    pub fn blob(&self) -> (BlobHash, Vec<u8>) {
        let bytes = self.to_bytes();
        (BlobHash(*blake3::hash(&bytes).as_bytes()), bytes)
    }

    /// Decode the blob a checkpoint event names and check it against the event: size before
    /// anything else, then hash, canonical encoding, version, order, count, run, round and
    /// parent.
    pub fn from_bytes(bytes: &[u8], event: &Checkpoint) -> Result<Self, MergedListError> {
        let size = bytes.len() as u64;
        let max = event.merged_list_size.min(MAX_MERGED_LIST_BYTES);
        if size > max {
            return Err(MergedListError::TooLarge { size, max });
        }
        if *blake3::hash(bytes).as_bytes() != event.merged_list.0 {
            return Err(MergedListError::HashMismatch);
        }
        let l: Self =
            serde_json::from_slice(bytes).map_err(|e| MergedListError::Decode(e.to_string()))?;
        if l.to_bytes() != bytes {
            return Err(MergedListError::Decode("not the canonical encoding".into()));
        }
        if l.v != MERGED_LIST_VERSION {
            return Err(MergedListError::Invalid("unsupported version"));
        }
        if !l
            .merged
            .windows(2)
            .all(|w| w[0].submission < w[1].submission)
        {
            return Err(MergedListError::Invalid(
                "entries must be sorted and distinct",
            ));
        }
        if l.merged.len() as u64 != event.merged_count {
            return Err(MergedListError::Invalid(
                "entry count differs from the event's",
            ));
        }
        if l.run_id != event.run_id || l.round != event.round || l.parent != event.parent {
            return Err(MergedListError::Invalid("another run, round or parent"));
        }
        Ok(l)
    }
}

/// Why a verified event does not belong to the round at hand (replays, foreign runs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Another run.
    #[error("event belongs to another run")]
    WrongRun,
    /// Another round.
    #[error("event belongs to another round")]
    WrongRound,
    /// Another checkpoint.
    #[error("event names another checkpoint")]
    WrongCheckpoint,
    /// Another submission.
    #[error("event names another submission")]
    WrongSubmission,
    /// Signed by someone without that role in the round.
    #[error("author has no such role in this round")]
    WrongAuthor,
}

/// What identifies a round; events of another run, round or checkpoint are rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundScope {
    /// Run.
    pub run_id: RunId,
    /// Round.
    pub round: u64,
    /// Checkpoint of the round.
    pub checkpoint: BlobHash,
    /// Coordinator (author of the round open, payer).
    pub coordinator: PublicKey,
    /// Committee.
    pub validators: Vec<PublicKey>,
}

impl RoundScope {
    fn run_round(&self, run: &RunId, round: u64) -> Result<(), ScopeError> {
        if run != &self.run_id {
            return Err(ScopeError::WrongRun);
        }
        if round != self.round {
            return Err(ScopeError::WrongRound);
        }
        Ok(())
    }

    /// A submission for this round.
    pub fn check_submission(&self, s: &Verified<Submission>) -> Result<(), ScopeError> {
        self.run_round(&s.run_id, s.round)?;
        if s.checkpoint != self.checkpoint {
            return Err(ScopeError::WrongCheckpoint);
        }
        if s.coordinator != self.coordinator {
            return Err(ScopeError::WrongAuthor);
        }
        Ok(())
    }

    /// An escrow offer of this round's coordinator.
    pub fn check_offer(&self, o: &Verified<EscrowOffer>) -> Result<(), ScopeError> {
        self.run_round(&o.run_id, o.round)?;
        if o.author() != self.coordinator {
            return Err(ScopeError::WrongAuthor);
        }
        Ok(())
    }

    /// A refusal by this round's coordinator.
    pub fn check_refusal(&self, r: &Verified<SubmissionRefusal>) -> Result<(), ScopeError> {
        self.run_round(&r.run_id, r.round)?;
        if r.author() != self.coordinator {
            return Err(ScopeError::WrongAuthor);
        }
        Ok(())
    }

    /// An escrow lock addressed to this round's coordinator.
    pub fn check_lock(&self, l: &Verified<EscrowLock>) -> Result<(), ScopeError> {
        self.run_round(&l.run_id, l.round)?;
        if l.coordinator != self.coordinator {
            return Err(ScopeError::WrongAuthor);
        }
        Ok(())
    }

    /// An attestation by a committee member, for this round's checkpoint.
    pub fn check_attestation(&self, a: &Verified<AttestationEvent>) -> Result<(), ScopeError> {
        let b = a.attestation.body();
        self.run_round(&b.run_id, b.round)?;
        if b.checkpoint != self.checkpoint {
            return Err(ScopeError::WrongCheckpoint);
        }
        if !self.validators.contains(&a.author()) {
            return Err(ScopeError::WrongAuthor);
        }
        Ok(())
    }
}
