//! What each role does besides driving its machines: the coordinator opens rounds and sells
//! submission tokens, a peer trains and prepares its submission, a validator joins the rounds
//! whose committee names it. Every protocol decision stays in `l402_protocol::round`; this is the
//! work around it (candle training, token sale over Lightning, machine creation).
//!
//! Spec: specs/L2T-03-round.md, specs/L2T-08-l402.md

use std::collections::{BTreeMap, BTreeSet};

use indicatif::ProgressBar;
use l402_protocol::blobmeta::{Placement, RoundKey};
use l402_protocol::escrow::{Corruption, Preimage, TrancheSpec};
use l402_protocol::events::{
    BlobHash, HoldbackWindow, RoundOpen, RunId, Score, UnixTime, Verified,
};
use l402_protocol::l402;
use l402_protocol::quorum::{round_seed, select_validators, Tolerance};
use l402_protocol::round::{Coordinator, CoordinatorConfig, MachineKey, PeerWork, Role, RoleError};
use nostr_sdk::prelude::{Keys, PublicKey};

use super::exec::{Components, ExecError};
use super::work::{run_key, TrainingWork};
use crate::lightning::{Invoice, LightningNode};
use crate::train::{Checkpoint, CheckpointId, Corpus, DenseUpdate, InnerTrainer, PeerCodec};

/// L402 service name of submission tokens.
pub const SUBMIT_SERVICE: &str = "submit";

/// The seed of a node's machine: secret (keyed by the node's secret key) and reproducible, so a
/// restarted node re-derives the same nonces and dealings.
pub fn machine_seed(keys: &Keys, key: &MachineKey) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(&keys.secret_key().secret_bytes());
    h.update(b"l402 machine seed v1\0");
    h.update(key.run.as_str().as_bytes());
    h.update(&[0]);
    h.update(&key.round.to_be_bytes());
    h.update(key.role.as_str().as_bytes());
    *h.finalize().as_bytes()
}

/// A coordinator's plan of the rounds it opens.
#[derive(Debug, Clone)]
pub struct RoundPlan {
    /// Run.
    pub run: RunId,
    /// Committee size.
    pub n: usize,
    /// Quorum.
    pub k: usize,
    /// Seconds from the open to the submit deadline.
    pub submit_secs: u64,
    /// Seconds from the open to the attest deadline.
    pub attest_secs: u64,
    /// Seconds from the open to the claim deadline (keep it within minutes: long holds are
    /// jamming to routing nodes, and NIP-47 says a few minutes).
    pub claim_secs: u64,
    /// Reward tranches of each accepted submission.
    pub tranches: Vec<TrancheSpec>,
    /// Price of a submission token.
    pub submission_price_msat: u64,
    /// Most submissions a round takes (declared in the round open); beyond it they are refused
    /// and their tolls refunded.
    pub max_submissions: Option<u32>,
    /// Score tolerance validators are held to.
    pub tolerance: Tolerance,
    /// Seconds from the open to the holdback's re-evaluation, attest and claim deadlines, if
    /// the schedule holds some back.
    pub holdback_secs: Option<[u64; 3]>,
    /// Byzantine coordinator (the simulator's real mode): the rounds whose dealings it
    /// corrupts. Empty in an honest node.
    pub dealer_faults: BTreeMap<u64, Corruption>,
}

/// Open round `round` of `plan` at `now` from `checkpoint`. The round's validator pool is the
/// opted-in validators `pool` (at most `escrow::MAX_VALIDATORS`, drawn without bias by the seed of
/// the previous checkpoint when there are more); each submission gets its own committee of
/// `plan.n` from it, drawn by the coordinator's VRF (L2T-04).
#[allow(clippy::too_many_arguments)]
pub fn open_round(
    keys: &Keys,
    plan: &RoundPlan,
    round: u64,
    now: UnixTime,
    checkpoint: BlobHash,
    prev_checkpoint: BlobHash,
    pool: &BTreeSet<PublicKey>,
    l402_secret: [u8; 32],
    token_uses: BTreeMap<String, u64>,
) -> Result<Coordinator, RoleError> {
    let n = plan.n.min(pool.len());
    let seed = round_seed(&plan.run, round, &prev_checkpoint);
    let drawn = pool.len().min(l402_protocol::escrow::MAX_VALIDATORS);
    let validators = select_validators(pool, &seed, drawn, plan.k.min(n))
        .map_err(|e| RoleError::RoundOpen(format!("validator pool: {e}")))?;
    let open = RoundOpen {
        v: 1,
        run_id: plan.run.clone(),
        round,
        checkpoint,
        prev_checkpoint,
        seed,
        validators,
        committee: Some(n as u32),
        k: plan.k as u32,
        submit_deadline: now + plan.submit_secs,
        attest_deadline: now + plan.attest_secs,
        claim_deadline: now + plan.claim_secs,
        holdback: plan.holdback_secs.map(|[r, a, c]| HoldbackWindow {
            reeval_at: now + r,
            attest_deadline: now + a,
            claim_deadline: now + c,
        }),
        tranches: plan.tranches.clone(),
        submission_price_msat: plan.submission_price_msat,
        max_submissions: plan.max_submissions,
        tolerance: plan.tolerance,
    };
    let key = MachineKey {
        run: plan.run.clone(),
        round,
        role: Role::Coordinator,
    };
    Coordinator::new(
        keys.clone(),
        machine_seed(keys, &key),
        now,
        open,
        CoordinatorConfig {
            l402_secret,
            service: SUBMIT_SERVICE.into(),
            token_uses,
            dealing_corruption: plan.dealer_faults.get(&round).copied().unwrap_or_default(),
        },
    )
}

/// An L402 submission token offered for sale: the macaroon and the invoice whose preimage
/// completes it.
#[derive(Debug, Clone)]
pub struct TokenOffer {
    /// The macaroon, bound to the buyer's key, the run and an expiry.
    pub macaroon: l402::Macaroon,
    /// Pay this to learn the preimage.
    pub invoice: Invoice,
}

/// Coordinator: offer a one-use submission token of `run` to `buyer`, valid until `valid_until`,
/// against an invoice of `price_msat` on its Lightning node (the preimage is the node's: it is
/// revealed only by paying).
pub fn offer_token(
    ln: &LightningNode,
    l402_secret: &[u8; 32],
    run: &RunId,
    buyer: PublicKey,
    price_msat: u64,
    valid_until: UnixTime,
    token_id: [u8; 32],
) -> Result<TokenOffer, ExecError> {
    let invoice = ln.create_invoice(price_msat, &format!("l402 submit {run}"), 600)?;
    let macaroon = l402::mint(
        l402_secret,
        &l402::MintParams {
            service: SUBMIT_SERVICE,
            run: Some(run),
            valid_until: Some(valid_until),
            max_uses: Some(1),
            pubkey: Some(buyer),
            payment_hash: invoice.payment_hash(),
            token_id,
            location: None,
        },
    );
    Ok(TokenOffer { macaroon, invoice })
}

/// Peer: the credential `<macaroon>:<preimage>` once the token's invoice is paid.
pub fn token_string(macaroon: &l402::Macaroon, preimage: &Preimage) -> String {
    format!("{}:{}", macaroon.to_base64(), hex::encode(preimage.0))
}

/// A peer's training state across rounds: its trainer and its error-feedback buffers.
#[derive(Debug)]
pub struct PeerTrainer {
    run: [u8; 32],
    trainer: InnerTrainer,
    codec: PeerCodec,
    corpus: Corpus,
}

impl PeerTrainer {
    /// A trainer of `run` for the peer with Nostr key `peer`, starting from `checkpoint`.
    pub fn new(
        work: &TrainingWork,
        run: &RunId,
        peer: &PublicKey,
        checkpoint: &Checkpoint,
    ) -> Result<Self, crate::train::TrainError> {
        let rk = run_key(run);
        Ok(Self {
            run: rk,
            trainer: InnerTrainer::new(
                rk,
                peer.to_bytes(),
                checkpoint,
                work.training.clone(),
                &work.device,
            )?,
            codec: PeerCodec::new(checkpoint.spec(), &work.training)?,
            corpus: Corpus::new(&rk),
        })
    }

    /// Train H inner steps on this round's shard from `checkpoint` and encode the
    /// pseudo-gradient with error feedback; `zero` submits an all-zero update instead (a
    /// free-rider, for demos and tests). Returns the blob bytes.
    pub fn round_blob(
        &mut self,
        checkpoint: &Checkpoint,
        round: u64,
        zero: bool,
        progress: &ProgressBar,
    ) -> Result<Vec<u8>, crate::train::TrainError> {
        let output = if zero {
            RoundOutput::Zero
        } else {
            RoundOutput::Trained
        };
        self.round_blob_timed(checkpoint, round, output, progress)
            .map(|(b, _)| b)
    }

    /// [`Self::round_blob`] for any [`RoundOutput`], also returning how long the inner loop
    /// (training) and the compression took.
    pub fn round_blob_timed(
        &mut self,
        checkpoint: &Checkpoint,
        round: u64,
        output: RoundOutput<'_>,
        progress: &ProgressBar,
    ) -> Result<(Vec<u8>, BlobTimings), crate::train::TrainError> {
        let t = std::time::Instant::now();
        let delta = match output {
            RoundOutput::Zero => DenseUpdate {
                tensors: checkpoint
                    .tensors()
                    .iter()
                    .map(|(n, v)| (n.clone(), vec![0f32; v.len()]))
                    .collect(),
            },
            RoundOutput::Trained => {
                self.trainer
                    .inner_loop(checkpoint, round, &self.corpus, progress)?
                    .0
            }
            RoundOutput::SignFlip => {
                let mut d = self
                    .trainer
                    .inner_loop(checkpoint, round, &self.corpus, progress)?
                    .0;
                crate::train::attack::sign_flip(&mut d);
                d
            }
            RoundOutput::Stale(old) => {
                self.trainer
                    .inner_loop(old, round, &self.corpus, progress)?
                    .0
            }
        };
        let train = t.elapsed();
        let blob = self.encode(checkpoint, round, &delta)?;
        Ok((
            blob,
            BlobTimings {
                train,
                compress: t.elapsed() - train,
            },
        ))
    }

    /// Encode `delta` as this peer's submission of `round` on `checkpoint` (error feedback
    /// included): the blob bytes.
    pub fn encode(
        &mut self,
        checkpoint: &Checkpoint,
        round: u64,
        delta: &DenseUpdate,
    ) -> Result<Vec<u8>, crate::train::TrainError> {
        let base: CheckpointId = checkpoint.id()?;
        let g = self.codec.compress(delta, &self.run, round, base)?;
        g.to_blob()
            .map_err(|e| crate::train::TrainError::Codec(e.to_string()))
    }
}

/// What a peer's round produces. Everything but [`RoundOutput::Trained`] is Byzantine
/// behaviour for the demo and the simulator's real mode (`crate::train::attack`).
#[derive(Debug, Clone, Copy)]
pub enum RoundOutput<'a> {
    /// H honest inner steps on the round's checkpoint.
    Trained,
    /// An all-zero update (a free-rider).
    Zero,
    /// The negated honest update (a sign-flip poisoner).
    SignFlip,
    /// Honest steps from an older checkpoint, submitted against the current one (a
    /// stale-checkpoint trainer).
    Stale(&'a Checkpoint),
}

/// Where a peer's round went before upload.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlobTimings {
    /// The inner loop (local training steps).
    pub train: std::time::Duration,
    /// SparseLoCo compression with error feedback, and encoding the blob.
    pub compress: std::time::Duration,
}

/// Peer: store the submission blob, readable only by the round's committee and coordinator
/// until the escrow is locked, and describe it for the peer machine.
pub async fn store_submission(
    components: &Components,
    open: &Verified<RoundOpen>,
    blob: Vec<u8>,
    claimed_loss: Score,
    token: String,
) -> Result<PeerWork, ExecError> {
    let size = blob.len() as u64;
    let round = RoundKey {
        run: open.run_id.as_str().to_owned(),
        round: open.round,
    };
    // Nobody may read it before the lock: `ReleaseBlob` names the committee afterwards.
    let id = components
        .blobs
        .add_bytes(blob, &Placement::restricted_in(round, []))
        .await?;
    // A plain invoice of the toll to this node, for the refund if the coordinator refuses the
    // submission; it lives until the round's last deadline (and an hour more).
    let refund_invoice = if open.submission_price_msat > 0 {
        let secs = open
            .last_deadline()
            .saturating_sub(super::unix_now())
            .saturating_add(3600);
        let inv = components.lightning.create_invoice(
            open.submission_price_msat,
            &format!("l402 toll refund {} round {}", open.run_id, open.round),
            u32::try_from(secs).unwrap_or(u32::MAX),
        )?;
        Some(inv.to_string())
    } else {
        None
    };
    Ok(PeerWork {
        blob: BlobHash(id.0),
        size,
        claimed_loss,
        token,
        refund_invoice,
    })
}
