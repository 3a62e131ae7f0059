//! The role tasks of `up`: they decide when to create a machine (the protocol decides everything
//! the machine then does).
//!
//! - coordinator: announce the run, open round 1 (after `POST /admin/start` if configured, and
//!   once n validators have opted in), then each next round when the previous checkpoint is
//!   published; sell submission tokens through the gateway;
//! - peer: on a round open of a run it joins, fetch the checkpoint, train, encode, buy a token
//!   over L402 from the coordinator's gateway, submit;
//! - validator: on a round open whose committee names it, start a validator machine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, Context};
use indicatif::ProgressBar;
use l402_protocol::blobmeta::Placement;
use l402_protocol::bounty::escrow_schedule;
use l402_protocol::escrow::linear_schedule;
use l402_protocol::events::{
    BlobHash, RoundOpen, RunAnnouncement, RunId, Score, Verified, VerifiedAny,
};
use l402_protocol::l402;
use l402_protocol::quorum::{eligible, Tolerance};
use l402_protocol::round::progress::{RoundSummary, RunProgress};
use l402_protocol::round::{Machine, MachineKey, Peer, Role, Validator};
use nostr_sdk::prelude::{PublicKey, Timestamp};
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use super::Node;
use crate::config::{CoordinatorRole, PeerRole};
use crate::lightning::{Invoice, PaymentOutcome};
use crate::runtime::roles::{
    machine_seed, open_round, store_submission, token_string, PeerTrainer, RoundOutput, RoundPlan,
};
use crate::runtime::unix_now;
use crate::train::{attack, Checkpoint};

/// How long a peer waits for its token payment to settle.
const PAY_WAIT: Duration = Duration::from_secs(60);
/// How long a token purchase waits for a reconnecting channel partner (the coordinator
/// restarting) before it gives up on the round.
const ROUTE_WAIT: Duration = Duration::from_secs(20);

/// What the gateway needs to sell submission tokens.
#[derive(Debug, Clone)]
pub struct CoordinatorView {
    /// Run.
    pub run: RunId,
    /// L402 root secret of the run's tokens.
    pub secret: [u8; 32],
    /// Price of a token, msat.
    pub price_msat: u64,
    /// The round open accepting submissions, if any.
    pub open: Option<Verified<RoundOpen>>,
    /// The run's announcement.
    pub announcement: RunAnnouncement,
    /// One line per closed round (round 0: the genesis checkpoint).
    pub history: Vec<RoundSummary>,
}

/// Spawn the configured roles.
/// Spawn the configured roles. Call before the runtime runs: each role subscribes to the
/// runtime's events here, so none of the stored events a (re)started runtime replays is missed.
pub fn spawn(node: Node) -> Vec<JoinHandle<()>> {
    let mut out = Vec::new();
    out.push(tokio::spawn(track_opens(
        node.clone(),
        node.events.subscribe(),
    )));
    if let Some(c) = node.config.roles.coordinator.clone() {
        out.extend(spawn_coordinator(node.clone(), c));
    }
    if let Some(p) = node.config.roles.peer.clone() {
        let n = node.clone();
        let rx = node.events.subscribe();
        out.push(tokio::spawn(async move { peer(n, p, rx).await }));
    }
    if node.config.roles.validator.is_some() {
        let n = node.clone();
        let rx = node.events.subscribe();
        out.push(tokio::spawn(async move { validator(n, rx).await }));
    }
    out
}

/// Spawn the coordinator role for `c` (at start, or when an operator posts a bounty).
pub fn spawn_coordinator(node: Node, c: CoordinatorRole) -> Vec<JoinHandle<()>> {
    let rx = node.events.subscribe();
    let n = node.clone();
    vec![
        tokio::spawn(follow_own_opens(node, c.run.clone(), rx)),
        tokio::spawn(async move {
            if let Err(e) = coordinator(n, c).await {
                tracing::error!(error = %format!("{e:#}"), "coordinator role stopped");
            }
        }),
    ]
}

/// Keep the latest round open of every run this node hears of (what `bounty submit` submits
/// into).
async fn track_opens(node: Node, mut rx: broadcast::Receiver<VerifiedAny>) {
    loop {
        match rx.recv().await {
            Ok(VerifiedAny::RoundOpen(o)) => {
                let mut opens = node.opens.lock().unwrap_or_else(|p| p.into_inner());
                let newer = opens.get(&o.run_id).is_none_or(|cur| cur.round < o.round);
                if newer {
                    opens.insert(o.run_id.clone(), o);
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

fn progress_file(run: &RunId) -> String {
    format!("coordinator-{}.json", hex::encode(run.as_str()))
}

/// The run's progress from the data dir (none yet: a new run). A file that does not decode
/// stops the coordinator: guessing would reopen rounds it already paid for.
fn load_progress(node: &Node, run: &RunId) -> anyhow::Result<RunProgress> {
    let path = node.data_dir.join(progress_file(run));
    match std::fs::read(&path) {
        Ok(b) => RunProgress::decode(&b).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunProgress::new()),
        Err(e) => Err(anyhow!("{}: {e}", path.display())),
    }
}

fn save_progress(node: &Node, run: &RunId, p: &RunProgress) -> anyhow::Result<()> {
    crate::durable::write_atomic(&node.data_dir, &progress_file(run), &p.encode())?;
    Ok(())
}

/// The L402 root secret of `run`: derived from the node's key, so it survives restarts.
fn token_secret(node: &Node, run: &RunId) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(&node.keys.secret_key().secret_bytes());
    h.update(b"l402 submission token secret v1\0");
    h.update(run.as_str().as_bytes());
    *h.finalize().as_bytes()
}

async fn coordinator(node: Node, role: CoordinatorRole) -> anyhow::Result<()> {
    let run = RunId::new(role.run.clone())?;
    let work = node.components.work.clone();
    let mut events = node.events.subscribe();
    // A bounty run: the sponsor posts the bounty; its checkpoints are the leader's trees.
    let mut sponsored = None;
    let (genesis_hash, genesis_metric) = if let Some(terms) = &role.bounty {
        let (s, h) = super::bounty::post(&node, &role, terms).await?;
        let m = s.metric(&node, h).await?;
        sponsored = Some(s);
        (h, m)
    } else {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&role.genesis_seed.to_le_bytes());
        let genesis = Checkpoint::init(&work.model, &seed)?;
        let h = BlobHash(
            node.components
                .blobs
                .add_bytes(genesis.to_safetensors()?, &Placement::pinned_public())
                .await?
                .0,
        );
        (h, heldout(&node, &run, genesis).await?)
    };
    let mut plan = RoundPlan {
        run: run.clone(),
        n: role.n as usize,
        k: role.k as usize,
        submit_secs: role.submit_secs,
        attest_secs: role.attest_secs,
        claim_secs: role.claim_secs,
        tranches: match &sponsored {
            Some(s) => escrow_schedule(&s.bounty, s.bounty.pool_msat)?,
            None => linear_schedule(
                role.pool_sats * 1000,
                role.tranches as usize,
                Score(role.target_score),
                0,
            ),
        },
        submission_price_msat: role.submission_price_sats * 1000,
        max_submissions: Some(role.max_submissions.max(1)),
        tolerance: Tolerance::default(),
        holdback_secs: role
            .bounty
            .as_ref()
            .map(|t| [t.reeval_secs, t.reeval_secs + 60, t.reeval_secs + 100]),
        dealer_faults: role
            .dealer_faults
            .iter()
            .map(|f| (f.round, f.kind.corruption()))
            .collect(),
    };
    if !plan.dealer_faults.is_empty() {
        tracing::warn!(run = %run, rounds = ?plan.dealer_faults.keys().collect::<Vec<_>>(), "this coordinator corrupts its escrow dealings (real-mode simulation)");
    }
    let mut pool_left = sponsored.as_ref().map_or(0, |s| s.bounty.pool_msat);
    if let Some(s) = sponsored.as_mut() {
        s.record_round(0, genesis_hash, genesis_metric);
        s.publish(&node);
    }
    let announcement = RunAnnouncement {
        v: 1,
        run_id: run.clone(),
        title: format!("l402 run {run}"),
        model: match &sponsored {
            Some(_) => "bounty: tiny-lm".into(),
            None => serde_json::to_string(&work.model)?,
        },
        genesis_checkpoint: genesis_hash,
        round_secs: role.claim_secs,
        n: role.n,
        k: role.k,
        tranches: plan.tranches.clone(),
        submission_price_msat: plan.submission_price_msat,
        tolerance: plan.tolerance,
        gateway: Some(format!("http://{}", node.config.gateway_listen)),
    };
    // A bounty is announced by its bounty event; a training run by its run announcement.
    if sponsored.is_none() {
        node.components
            .discovery
            .announce(&announcement, None)
            .await
            .context("run announcement")?;
    }
    let secret = token_secret(&node, &run);
    *node.coordinator.lock().unwrap_or_else(|p| p.into_inner()) = Some(CoordinatorView {
        run: run.clone(),
        secret,
        price_msat: plan.submission_price_msat,
        open: None,
        announcement,
        history: Vec::new(),
    });
    record(
        &node,
        RoundSummary {
            round: 0,
            checkpoint: genesis_hash.to_hex(),
            merged: 0,
            heldout_loss: genesis_metric,
        },
    );
    let mut progress = load_progress(&node, &run)?;
    for o in node.restored_opens.iter().filter(|o| o.run_id == run) {
        node.components.timeline.round_at(
            run.as_str(),
            o.round,
            "open",
            o.created_at().as_secs() * 1000,
        );
    }
    for h in progress.history.clone() {
        record(&node, h);
    }
    if role.wait_for_start && progress.opened == 0 {
        tracing::info!(run = %run, "waiting for POST /admin/start");
        node.start.notified().await;
    }
    if let Some(left) = progress.pool_left_msat {
        pool_left = left;
    }
    let mut checkpoint = progress.checkpoint.unwrap_or(genesis_hash);
    let mut prev = progress.prev.unwrap_or(BlobHash([0; 32]));
    let mut status = node.status.clone();
    // A restarted coordinator resumes the round it had opened (its machine was restored).
    let mut round = progress.closed + 1;
    while round <= role.rounds {
        let key = MachineKey {
            run: run.clone(),
            round,
            role: Role::Coordinator,
        };
        if progress.opened < round {
            // The opted-in validators, without those an earlier round's audit convicted
            // (L2T-04 §audit). Wait for n of them; once validators have been convicted, k
            // eligible ones are enough (the committee shrinks to the eligible pool).
            let need = if progress.convicted.is_empty() {
                plan.n
            } else {
                plan.k
            };
            let mut waited = 0u32;
            let pool = loop {
                let opted: BTreeSet<_> = node
                    .components
                    .discovery
                    .directory()
                    .validators(Timestamp::now())
                    .map(|v| v.author())
                    .collect();
                let pool = eligible(&opted, &progress.convicted);
                if pool.len() >= need {
                    break pool;
                }
                if waited % 20 == 0 {
                    tracing::info!(run = %run, round, opted_in = opted.len(), eligible = pool.len(), convicted = progress.convicted.len(), need, "waiting for validators");
                }
                waited += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            if let Some(s) = sponsored.as_mut() {
                s.send_secrets(&node, &pool).await;
                plan.tranches = match escrow_schedule(&s.bounty, pool_left) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::info!(bounty = %run, round, reason = %e, "bounty closed");
                        s.completed = true;
                        s.publish(&node);
                        break;
                    }
                };
                s.schedules.insert(round, plan.tranches.clone());
            }
            let c = open_round(
                &node.keys,
                &plan,
                round,
                unix_now(),
                checkpoint,
                prev,
                &pool,
                secret,
                BTreeMap::new(),
            )?;
            let open = c.round_open().clone();
            tracing::info!(run = %run, round, checkpoint = %checkpoint, committee = open.validators.len(), "round opened");
            node.components.timeline.round_at(
                run.as_str(),
                round,
                "open",
                open.created_at().as_secs() * 1000,
            );
            node.machines
                .send((key.clone(), Machine::Coordinator(c)))
                .map_err(|_| anyhow!("runtime stopped"))?;
            if let Some(v) = node
                .coordinator
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                v.open = Some(open);
            }
            progress.opened = round;
            save_progress(&node, &run, &progress)?;
        }
        // Wait for this round's checkpoint.
        let name = key.to_string();
        let ck = loop {
            let found = status
                .borrow()
                .iter()
                .find(|m| m.machine == name)
                .and_then(|m| m.checkpoint.clone());
            if let Some(ck) = found {
                break BlobHash::from_hex(&ck).map_err(|e| anyhow!("checkpoint hex: {e}"))?;
            }
            status.changed().await?;
            if let Some(s) = sponsored.as_mut() {
                s.absorb(&mut events, &status.borrow(), &node);
            }
        };
        let (merged, convicted) = status
            .borrow()
            .iter()
            .find(|m| m.machine == name)
            .map(|m| (m.merged.unwrap_or(0), m.convicted.clone()))
            .unwrap_or_default();
        for v in convicted {
            let pk = PublicKey::from_hex(&v).map_err(|e| anyhow!("convicted key {v}: {e}"))?;
            if progress.convicted.insert(pk) {
                tracing::warn!(run = %run, round, validator = %pk, "validator convicted by the audit's replay: left out of later rounds");
            }
        }
        let loss = match &sponsored {
            Some(s) => {
                pool_left = s.spend(&plan.tranches, round, pool_left);
                tracing::info!(bounty = %run, round, pool_left_msat = pool_left, "bounty round closed");
                s.metric(&node, ck).await?
            }
            None => {
                let model = node
                    .components
                    .fetch_checkpoint(&run, round + 1, &ck, &[])
                    .await?;
                heldout(&node, &run, model).await?
            }
        };
        let summary = RoundSummary {
            round,
            checkpoint: ck.to_hex(),
            merged,
            heldout_loss: loss,
        };
        progress.record(summary.clone());
        if let Some(s) = sponsored.as_mut() {
            s.absorb(&mut events, &status.borrow(), &node);
            s.record_round(round, ck, loss);
            s.publish(&node);
        }
        record(&node, summary);
        tracing::info!(run = %run, round, checkpoint = %ck, merged, heldout_loss = loss, "round closed");
        node.components
            .timeline
            .round(run.as_str(), round, "closed");
        if ck != checkpoint {
            prev = checkpoint;
            checkpoint = ck;
        }
        progress.checkpoint = Some(checkpoint);
        progress.prev = Some(prev);
        progress.closed = round;
        if sponsored.is_some() {
            progress.pool_left_msat = Some(pool_left);
        }
        save_progress(&node, &run, &progress)?;
        round += 1;
    }
    tracing::info!(run = %run, rounds = role.rounds, "all rounds done");
    if let Some(s) = sponsored.as_mut() {
        // The last round's holdback attestations come after its close: keep the board current.
        s.completed = true;
        s.publish(&node);
        loop {
            match events.recv().await {
                Ok(ev) => {
                    if s.observe(&ev) {
                        s.publish(&node);
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            }
        }
    }
    Ok(())
}

/// Keep the gateway's open round current from the round opens this node published (what a
/// restarted coordinator reads back from the relays), so it sells tokens for it again.
async fn follow_own_opens(node: Node, run: String, mut rx: broadcast::Receiver<VerifiedAny>) {
    let me = node.keys.public_key();
    let mut latest: Option<Verified<RoundOpen>> = node
        .restored_opens
        .iter()
        .filter(|o| o.run_id.as_str() == run)
        .max_by_key(|o| o.round)
        .cloned();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(VerifiedAny::RoundOpen(o)) if o.author() == me && o.run_id.as_str() == run => {
                    if latest.as_ref().is_none_or(|cur| cur.round < o.round) {
                        latest = Some(o);
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
        }
        // The view appears once the run is announced; apply what was seen before that too.
        if let (Some(o), Some(v)) = (
            &latest,
            node.coordinator
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut(),
        ) {
            if v.open.as_ref().is_none_or(|cur| cur.round < o.round) {
                v.open = Some(o.clone());
            }
        }
    }
}

async fn heldout(node: &Node, run: &RunId, ck: Checkpoint) -> anyhow::Result<f32> {
    let work = node.components.work.clone();
    let run = run.clone();
    Ok(tokio::task::spawn_blocking(move || work.heldout_loss(&run, ck)).await??)
}

fn record(node: &Node, s: RoundSummary) {
    if let Some(v) = node
        .coordinator
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        v.history.retain(|h| h.round != s.round);
        v.history.push(s);
    }
}

/// The run's announcement by `coordinator`, from the directory.
fn announcement(node: &Node, run: &RunId) -> Option<Verified<RunAnnouncement>> {
    node.components
        .discovery
        .directory()
        .runs(Timestamp::now())
        .find(|r| &r.verified.run_id == run)
        .map(|r| r.verified.clone())
}

/// Buy a one-use submission token over L402: `GET /l402/submit-token` answers 402 with a
/// macaroon and an invoice; paying the invoice reveals the preimage that completes the
/// credential. The invoice amount is checked against the round's price before paying.
async fn buy_token(node: &Node, gateway: &str, open: &RoundOpen) -> anyhow::Result<String> {
    let me = node.keys.public_key();
    let url = format!(
        "{gateway}/l402/submit-token?run={}&pubkey={}",
        open.run_id,
        me.to_hex()
    );
    let resp = reqwest::get(&url).await?;
    if resp.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
        return Err(anyhow!("{url}: expected 402, got {}", resp.status()));
    }
    let header = resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| anyhow!("402 without WWW-Authenticate"))?
        .to_owned();
    let challenge = l402::parse_challenge(&header)?;
    let invoice: Invoice = challenge.invoice.parse()?;
    if invoice.amount_msat() != Some(open.submission_price_msat) {
        return Err(anyhow!(
            "token invoice asks {:?} msat, the round says {}",
            invoice.amount_msat(),
            open.submission_price_msat
        ));
    }
    let ln = &node.components.lightning;
    ln.pay_when_routable(&invoice, ROUTE_WAIT).await?;
    match ln.wait_payment(invoice.payment_hash(), PAY_WAIT).await? {
        PaymentOutcome::Succeeded {
            preimage: Some(p), ..
        } => Ok(token_string(&challenge.macaroon, &p)),
        other => Err(anyhow!("token payment: {other:?}")),
    }
}

async fn peer(node: Node, role: PeerRole, mut rx: broadcast::Receiver<VerifiedAny>) {
    let mut trainers: BTreeMap<RunId, PeerTrainer> = BTreeMap::new();
    let mut stale_checkpoints = BTreeMap::new();
    let mut bounties_done = BTreeSet::new();
    let mut joined: BTreeSet<(RunId, u64)> = BTreeSet::new();
    loop {
        let open = match rx.recv().await {
            Ok(VerifiedAny::RoundOpen(o)) => o,
            Ok(_) | Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        if !role.runs.is_empty() && !role.runs.iter().any(|r| r == open.run_id.as_str()) {
            continue;
        }
        if unix_now() >= open.submit_deadline || !joined.insert((open.run_id.clone(), open.round)) {
            continue;
        }
        let (run, round) = (open.run_id.clone(), open.round);
        let done = match node.components.bounty_of(&open) {
            Some(b) => {
                super::bounty::agent_submit(&node, &role, &open, &b, &mut bounties_done).await
            }
            None => submit(&node, &role, &open, &mut trainers, &mut stale_checkpoints).await,
        };
        match done {
            Ok(()) => tracing::info!(run = %run, round, "submitted"),
            Err(e) => {
                tracing::warn!(run = %run, round, error = %format!("{e:#}"), "not submitting this round")
            }
        }
    }
}

async fn submit(
    node: &Node,
    role: &PeerRole,
    open: &Verified<RoundOpen>,
    trainers: &mut BTreeMap<RunId, PeerTrainer>,
    stale_checkpoints: &mut BTreeMap<RunId, BTreeMap<u64, Checkpoint>>,
) -> anyhow::Result<()> {
    let run = open.run_id.clone();
    let ann = announcement(node, &run).context("no announcement of this run")?;
    if ann.author() != open.author() {
        return Err(anyhow!("round open not by the run's coordinator"));
    }
    // The run announcement names the architecture (L2T-01: `model` is the ModelSpec as JSON).
    let model: l402_protocol::training::ModelSpec =
        serde_json::from_str(&ann.model).context("the run's model is not a ModelSpec")?;
    if model != node.components.work.model {
        return Err(anyhow!(
            "the run trains a model this node does not build: {}",
            ann.model
        ));
    }
    let ck = node
        .components
        .fetch_checkpoint(&open.run_id, open.round, &open.checkpoint, &[open.author()])
        .await?;
    let me = node.keys.public_key();
    let mut trainer = match trainers.remove(&run) {
        Some(t) => t,
        None => PeerTrainer::new(&node.components.work, &run, &me, &ck)?,
    };
    let round = open.round;
    let behaviour = round_behaviour(&role.behaviour, &node.keys.public_key(), round).to_owned();
    // A stale trainer keeps the checkpoints it saw and trains on round r − 2's (or the
    // oldest it has).
    let stale = if behaviour == "stale" {
        let seen = stale_checkpoints.entry(run.clone()).or_default();
        seen.insert(round, ck.clone());
        while seen.len() > 3 {
            seen.pop_first();
        }
        seen.range(..=round.saturating_sub(2))
            .next_back()
            .or_else(|| seen.first_key_value())
            .map(|(_, c)| c.clone())
    } else {
        None
    };
    let timeline = node.components.timeline.clone();
    timeline.round(run.as_str(), round, "train_start");
    let b = behaviour.clone();
    let (trainer, ck, blob) = tokio::task::spawn_blocking(move || {
        let output = match (b.as_str(), &stale) {
            // Cheaters that submit others' work do not train.
            ("free-rider" | "copycat-noise" | "alie", _) => RoundOutput::Zero,
            ("sign-flip", _) => RoundOutput::SignFlip,
            ("stale", Some(old)) => RoundOutput::Stale(old),
            _ => RoundOutput::Trained,
        };
        let r = trainer.round_blob_timed(&ck, round, output, &ProgressBar::hidden());
        (trainer, ck, r)
    })
    .await?;
    let (mut blob, took) = blob?;
    timeline.duration(run.as_str(), round, "train", took.train.as_millis() as u64);
    timeline.duration(
        run.as_str(),
        round,
        "compress",
        took.compress.as_millis() as u64,
    );
    timeline.round(run.as_str(), round, "blob_ready");
    match behaviour.as_str() {
        "copier" => blob = leaked(node, open).await?,
        "copycat-noise" | "alie" => {
            let work = &node.components.work;
            let params = work.training.codec_params();
            let decode = |b: &[u8]| attack::decode_blob(b, &work.model, &params);
            let delta = if behaviour == "alie" {
                let seen = leaked_all(node, open).await?;
                let honest = seen
                    .iter()
                    .map(|b| decode(b))
                    .collect::<Result<Vec<_>, _>>()?;
                let z = role
                    .alie_z
                    .unwrap_or_else(|| attack::alie_z(honest.len() + 1, 1));
                tracing::info!(run = %run, round, leaked = honest.len(), z, "ALIE update");
                attack::alie(&honest, z)?
            } else {
                let mut d = decode(&leaked(node, open).await?)?;
                let mut seed = blake3::Hasher::new();
                seed.update(&node.keys.public_key().to_bytes());
                seed.update(&round.to_be_bytes());
                attack::add_noise(&mut d, COPYCAT_SIGMA, *seed.finalize().as_bytes());
                d
            };
            let mut trainer = trainer;
            blob = trainer.encode(&ck, round, &delta)?;
            trainers.insert(run.clone(), trainer);
            return submit_blob(node, open, blob, Score(0)).await;
        }
        _ => {}
    }
    trainers.insert(run.clone(), trainer);
    submit_blob(node, open, blob, Score(0)).await
}

/// The attacks a `mixed` Byzantine peer rotates through, one per round.
pub const MIXED: [&str; 4] = ["free-rider", "copycat-noise", "sign-flip", "alie"];

/// The behaviour a peer with `configured` behaviour shows in `round`: `mixed` takes one of
/// [`MIXED`] per round, starting at an offset from its key (so several mixed peers differ).
pub fn round_behaviour<'a>(configured: &'a str, key: &PublicKey, round: u64) -> &'a str {
    if configured != "mixed" {
        return configured;
    }
    let offset = u64::from(key.to_bytes()[0]);
    MIXED[((offset + round) % MIXED.len() as u64) as usize]
}

/// A copycat's noise, relative to each tensor's RMS.
const COPYCAT_SIGMA: f64 = 0.1;

/// Every honest blob leaked to an ALIE peer for `open`'s round (`leak/<submission name>.d/`):
/// what it collected 6 s before the submit deadline, at least one.
async fn leaked_all(node: &Node, open: &RoundOpen) -> anyhow::Result<Vec<Vec<u8>>> {
    let dir = node
        .data_dir
        .join("leak")
        .join(format!("{}.d", submission_name(open)));
    loop {
        let near = unix_now() + 6 >= open.submit_deadline;
        let mut blobs = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths {
                blobs.push(std::fs::read(&p)?);
            }
        }
        if near && !blobs.is_empty() {
            return Ok(blobs);
        }
        if unix_now() + 2 >= open.submit_deadline {
            return Err(anyhow!("nothing leaked to an ALIE peer"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The name of this node's submission file of `open`'s round (what the demo leaks to copiers).
pub(super) fn submission_name(open: &RoundOpen) -> String {
    format!("{}-{}.blob", hex::encode(open.run_id.as_str()), open.round)
}

/// The copier's blob: what leaked to it (the demo hands it another peer's submission).
pub(super) async fn leaked(node: &Node, open: &RoundOpen) -> anyhow::Result<Vec<u8>> {
    let leak = node.data_dir.join("leak").join(submission_name(open));
    loop {
        if let Ok(b) = std::fs::read(&leak) {
            return Ok(b);
        }
        if unix_now() + 2 >= open.submit_deadline {
            return Err(anyhow!("nothing leaked to copy"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Keep `blob` as this node's submission of the round (the file the demo leaks), buy a
/// submission token from the run's gateway, store the blob and start the peer machine that
/// submits it.
pub(super) async fn submit_blob(
    node: &Node,
    open: &Verified<RoundOpen>,
    blob: Vec<u8>,
    claimed: Score,
) -> anyhow::Result<()> {
    let subs = node.data_dir.join("submissions");
    std::fs::create_dir_all(&subs)?;
    crate::durable::write_atomic(&subs, &submission_name(open), &blob)?;
    let gateway = gateway_of(node, open).context("the run has no gateway")?;
    // The coordinator's gateway may be briefly down (a restart): retry until the deadline.
    let token = loop {
        match buy_token(node, &gateway, open).await {
            Ok(t) => break t,
            Err(e) if unix_now() + 3 < open.submit_deadline => {
                tracing::debug!(error = %format!("{e:#}"), "token purchase failed, retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let work = store_submission(&node.components, open, blob, claimed, token).await?;
    let key = MachineKey {
        run: open.run_id.clone(),
        round: open.round,
        role: Role::Peer,
    };
    let peer = Peer::new(
        node.keys.clone(),
        machine_seed(&node.keys, &key),
        open.clone(),
        work,
    );
    node.components
        .timeline
        .round(key.run.as_str(), open.round, "submitted");
    node.machines
        .send((key, Machine::Peer(peer)))
        .map_err(|_| anyhow!("runtime stopped"))
}

/// The gateway of `open`'s run: from the run announcement or the bounty, by the round's
/// coordinator.
fn gateway_of(node: &Node, open: &Verified<RoundOpen>) -> Option<String> {
    if let Some(b) = node.components.bounty_of(open) {
        return b.gateway.clone();
    }
    announcement(node, &open.run_id)
        .filter(|a| a.author() == open.author())
        .and_then(|a| a.gateway.clone())
}

/// A validator's check of a published checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointCheck {
    /// Run.
    pub run: String,
    /// Round.
    pub round: u64,
    /// Published checkpoint (hex).
    pub published: String,
    /// What this validator recomputed from the parent and the merged list (hex).
    pub recomputed: String,
    /// Whether they are equal.
    pub ok: bool,
    /// The merged list's submission ids (what the sim compares with the attested quorums).
    pub merged: Vec<String>,
}

async fn validator(node: Node, mut rx: broadcast::Receiver<VerifiedAny>) {
    let me = node.keys.public_key();
    let mut opens: BTreeMap<(RunId, u64), Verified<RoundOpen>> = BTreeMap::new();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        match ev {
            VerifiedAny::RoundOpen(open) => {
                if !open.validators.contains(&me) || unix_now() >= open.attest_deadline {
                    continue;
                }
                opens.insert((open.run_id.clone(), open.round), open.clone());
                let key = MachineKey {
                    run: open.run_id.clone(),
                    round: open.round,
                    role: Role::Validator,
                };
                match Validator::new(node.keys.clone(), machine_seed(&node.keys, &key), open) {
                    Ok(v) => {
                        let _ = node.machines.send((key, Machine::Validator(v)));
                    }
                    Err(e) => tracing::warn!(error = %e, "validator machine refused"),
                }
            }
            // Recompute every checkpoint of a round it validated: the parent plus exactly the
            // merged submissions, with the run's aggregation rule.
            VerifiedAny::Checkpoint(c) => {
                let Some(open) = opens.get(&(c.run_id.clone(), c.round)).cloned() else {
                    continue;
                };
                if c.author() != open.author() || c.parent != open.checkpoint {
                    continue;
                }
                let mut merged = Vec::new();
                let recomputed = match node.components.fetch_merged_list(&c).await {
                    Ok(l) if l.merged.is_empty() => Ok(c.parent),
                    Ok(l) => {
                        merged = l.merged.iter().map(|m| m.submission.to_string()).collect();
                        node.components.aggregate(&open, c.parent, &l.merged).await
                    }
                    Err(e) => Err(e),
                };
                let check = match recomputed {
                    Ok(h) => CheckpointCheck {
                        merged,
                        run: c.run_id.to_string(),
                        round: c.round,
                        published: c.checkpoint.to_hex(),
                        recomputed: h.to_hex(),
                        ok: h == c.checkpoint,
                    },
                    Err(e) => {
                        tracing::warn!(round = c.round, error = %e, "could not recompute the checkpoint");
                        continue;
                    }
                };
                if check.ok {
                    tracing::info!(round = c.round, checkpoint = %c.checkpoint, "published checkpoint recomputed");
                } else {
                    tracing::error!(round = c.round, published = %check.published, recomputed = %check.recomputed, "published checkpoint differs from the aggregate");
                }
                node.checks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(check);
            }
            _ => {}
        }
    }
}
