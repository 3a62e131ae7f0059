//! The bounty side of the `up` roles: the sponsor posts the example bounty and sends each
//! validator of the pool its held-out secrets; the agent fetches the leader's tree, climbs on
//! the public set and submits its diff through the round machines.
//!
//! Spec: specs/L2T-13-bounties.md#the-network

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Context};
use l402_protocol::blobmeta::Placement;
use l402_protocol::bounty::tree::BountyTree;
use l402_protocol::escrow::tranche::{earned_holdback_msat, earned_regular_msat};
use l402_protocol::escrow::TrancheSpec;
use l402_protocol::events::bounty::{Bounty, BountyHeldout, Direction, HeldoutSecrets};
use l402_protocol::events::{
    BlobHash, RoundOpen, RunId, Score, Seed32, SubmissionId, Verified, VerifiedAny,
};
use l402_protocol::quorum::{Phase, Verdict};
use nostr_sdk::prelude::PublicKey;
use rand::SeedableRng;

use super::board::{BoardBounty, BoardEntry, BoardRound};
use super::roles::{leaked, submit_blob};
use super::Node;
use crate::bounty::agent::{self, AgentConfig};
use crate::bounty::example::{self, TinyLmHarness};
use crate::bounty::net::{self, TINY_LM_METRIC};
use crate::bounty::sandbox::{Isolation, Limits};
use crate::bounty::{diff, example_bench, local};
use crate::config::{BountyTerms, CoordinatorRole, PeerRole};
use crate::runtime::status::MachineStatus;
use crate::runtime::unix_now;

/// What a sponsor posted.
#[derive(Debug, Clone)]
pub struct Sponsored {
    /// The bounty event's content.
    pub bounty: Bounty,
    /// Its held-out secrets (never published in the clear).
    pub secrets: HeldoutSecrets,
    /// Validators the secrets were sent to.
    pub sent: BTreeSet<PublicKey>,
    /// Attested scores per (round, submission) of this bounty (initial phase), with whether
    /// the attestation accepted.
    pub scores: BTreeMap<(u64, SubmissionId), Vec<(i64, Verdict)>>,
    /// Submissions seen: author, diff, `created_at`.
    pub subs: Seen,
    /// Submissions the coordinator took, per round. Of two submissions of one diff it takes
    /// the first to arrive, which the `created_at` seconds cannot always tell.
    pub accepted: BTreeSet<(u64, SubmissionId)>,
    /// The escrow schedule each round offered.
    pub schedules: BTreeMap<u64, Vec<TrancheSpec>>,
    /// Each round's tree and its held-out metric (round 0: the baseline).
    pub rounds: Vec<BoardRound>,
    /// Whether the bounty is over (pool exhausted or rounds done).
    pub completed: bool,
}

/// Submissions seen per (round, id): author, diff, `created_at`.
type Seen = BTreeMap<(u64, SubmissionId), (PublicKey, BlobHash, u64)>;

/// One entry of [`Seen`].
type SeenEntry<'a> = (&'a (u64, SubmissionId), &'a (PublicKey, BlobHash, u64));

/// The board's order: by round, then `created_at`; within a second, what the coordinator took
/// before what it did not, then by id.
fn board_order<'a>(subs: &'a Seen, accepted: &BTreeSet<(u64, SubmissionId)>) -> Vec<SeenEntry<'a>> {
    let mut v: Vec<_> = subs.iter().collect();
    v.sort_by_key(|(key @ (round, id), (_, _, at))| (*round, *at, !accepted.contains(key), *id));
    v
}

/// The first submission of each diff in each round: the one the coordinator took (it keeps the
/// first to arrive and ignores a later copy), else, none taken yet, the first in `ordered`
/// ([`board_order`]). Two submissions in the same second are told apart only by the first.
fn first_of_each_diff(
    ordered: &[SeenEntry<'_>],
    accepted: &BTreeSet<(u64, SubmissionId)>,
) -> BTreeMap<(u64, BlobHash), SubmissionId> {
    let mut first: BTreeMap<(u64, BlobHash), SubmissionId> = BTreeMap::new();
    for (key @ (round, id), (_, diff, _)) in ordered {
        if accepted.contains(key) {
            first.insert((*round, *diff), *id);
        }
    }
    for ((round, id), (_, diff, _)) in ordered {
        first.entry((*round, *diff)).or_insert(*id);
    }
    first
}

/// Post the example bounty `role.run` with the baseline tree stored as a pinned public blob;
/// returns it and the tree's hash.
pub async fn post(
    node: &Node,
    role: &CoordinatorRole,
    terms: &BountyTerms,
) -> anyhow::Result<(Sponsored, BlobHash)> {
    let run = RunId::new(role.run.clone())?;
    let dir = tempfile::tempdir()?;
    example::write_baseline(dir.path())?;
    let tree = net::tree_from_dir(dir.path())?;
    let baseline = BlobHash(
        node.components
            .blobs
            .add_bytes(tree.encode(), &Placement::pinned_public())
            .await?
            .0,
    );
    let secrets = net::example_secrets(&node.keys, &run);
    use sha2::Digest;
    let bounty = example_bounty(
        role,
        terms,
        baseline,
        Seed32(sha2::Sha256::digest(net::eval_set(&secrets.heldout_seed)).into()),
        Some(format!("http://{}", node.config.gateway_listen)),
    )?;
    node.components
        .discovery
        .announce(&bounty, None)
        .await
        .context("bounty event")?;
    tracing::info!(bounty = %run, tree = %baseline, pool_msat = bounty.pool_msat, "bounty posted");
    Ok((
        Sponsored {
            bounty,
            secrets,
            sent: BTreeSet::new(),
            scores: BTreeMap::new(),
            subs: BTreeMap::new(),
            accepted: BTreeSet::new(),
            schedules: BTreeMap::new(),
            rounds: Vec::new(),
            completed: false,
        },
        baseline,
    ))
}

/// The example bounty with the sponsor's terms, checked with the bounty event's schema rules and
/// the escrow's (what `bounty post` refuses before anything is written).
pub fn example_bounty(
    role: &CoordinatorRole,
    terms: &BountyTerms,
    baseline: BlobHash,
    heldout_commitment: Seed32,
    gateway: Option<String>,
) -> anyhow::Result<Bounty> {
    let bounty = Bounty {
        v: 1,
        bounty_id: RunId::new(role.run.clone())?,
        title: "Lower the held-out loss of the tiny byte-GPT".into(),
        baseline,
        mutable_files: example::MUTABLE_FILES.iter().map(|s| (*s).into()).collect(),
        eval_command: example::EVAL_COMMAND.into(),
        metric: TINY_LM_METRIC.into(),
        direction: Direction::Minimize,
        public_eval: BlobHash(*blake3::hash(&net::public_eval()).as_bytes()),
        heldout_commitment,
        pool_msat: role.pool_sats.saturating_mul(1000),
        target_improvement: Score(role.target_score),
        deadline: unix_now() + role.rounds * role.claim_secs * 2 + 3600,
        diff_size_cap: 16 * 1024,
        n: role.n,
        k: role.k,
        holdback_ppm: terms.holdback_ppm,
        margin: Score(terms.margin),
        tranches: role.tranches,
        reveal_window_secs: 0,
        gateway,
    };
    bounty.check().map_err(|e| anyhow!("bounty terms: {e}"))?;
    l402_protocol::bounty::escrow_schedule(&bounty, bounty.pool_msat)?;
    Ok(bounty)
}

impl Sponsored {
    /// Send the held-out secrets, NIP-44-encrypted, to every validator of `pool` not sent yet.
    pub async fn send_secrets(&mut self, node: &Node, pool: &BTreeSet<PublicKey>) {
        for v in pool.difference(&self.sent.clone()) {
            let mut rng = rand_chacha::ChaCha20Rng::from_entropy();
            let sealed = BountyHeldout::seal(
                &mut rng,
                &node.keys,
                self.bounty.bounty_id.clone(),
                *v,
                &self.secrets,
            );
            match node.components.discovery.announce(&sealed, None).await {
                Ok(_) => {
                    self.sent.insert(*v);
                    tracing::info!(bounty = %self.bounty.bounty_id, validator = %v, "held-out secrets sent");
                }
                Err(e) => tracing::warn!(validator = %v, error = %e, "held-out secrets not sent"),
            }
        }
    }

    /// Record a submission or an attestation of this bounty's rounds (its initial score);
    /// whether it was one.
    pub fn observe(&mut self, ev: &VerifiedAny) -> bool {
        match ev {
            VerifiedAny::Attestation(a) => {
                let body = a.attestation.body();
                if body.run_id != self.bounty.bounty_id || body.phase != Phase::Initial {
                    return false;
                }
                self.scores
                    .entry((body.round, body.submission))
                    .or_default()
                    .push((body.score.0, body.verdict));
                true
            }
            VerifiedAny::Submission(sub) if sub.run_id == self.bounty.bounty_id => {
                self.subs.insert(
                    (sub.round, SubmissionId::of_event(sub.event())),
                    (sub.author(), sub.blob, sub.created_at().as_secs()),
                );
                true
            }
            _ => false,
        }
    }

    /// Record every event waiting on `rx` and what this bounty's coordinator machines took
    /// (`status`), and show the board again if anything changed.
    pub fn absorb(
        &mut self,
        rx: &mut tokio::sync::broadcast::Receiver<VerifiedAny>,
        status: &[MachineStatus],
        node: &Node,
    ) {
        let mut seen = false;
        while let Ok(ev) = rx.try_recv() {
            seen |= self.observe(&ev);
        }
        let run = self.bounty.bounty_id.as_str();
        for m in status
            .iter()
            .filter(|m| m.run == run && m.role == "coordinator")
        {
            for id in &m.accepted {
                if let Ok(id) = SubmissionId::from_hex(id) {
                    seen |= self.accepted.insert((m.round, id));
                }
            }
        }
        if seen {
            self.publish(node);
        }
    }

    /// The board's view of this bounty.
    pub fn board(&self) -> BoardBounty {
        let b = &self.bounty;
        let mut leaderboard = Vec::new();
        let subs = board_order(&self.subs, &self.accepted);
        let first_of = first_of_each_diff(&subs, &self.accepted);
        for ((round, id), (agent, diff, at)) in subs {
            let copy_of = first_of
                .get(&(*round, *diff))
                .copied()
                .filter(|first| first != id);
            let atts = self.scores.get(&(*round, *id)).cloned().unwrap_or_default();
            let scores: Vec<i64> = atts.iter().map(|(s, _)| *s).collect();
            let median = l402_protocol::bounty::median(&scores);
            let count = |v: Verdict| atts.iter().filter(|(_, x)| *x == v).count() * 2 > atts.len();
            let accepted = count(Verdict::Accept);
            let below = count(Verdict::Reject(net::REJECT_BELOW_MARGIN));
            let schedule = self.schedules.get(round).cloned().unwrap_or_default();
            let m = Score(median.filter(|_| accepted).unwrap_or(i64::MIN));
            let (award_sat, holdback_sat) = (
                earned_regular_msat(&schedule, m) / 1000,
                earned_holdback_msat(&schedule, m) / 1000,
            );
            let outcome = match (copy_of, median) {
                (Some(first), None) => format!("copy of {}…: not paid", &first.to_string()[..8]),
                (None, None) => "not evaluated".into(),
                (_, Some(_)) if below => "below the margin: not paid".into(),
                (_, Some(_)) if !accepted => "refused by the quorum".into(),
                (_, Some(_)) if award_sat == 0 => "below a tranche: not paid".into(),
                (_, Some(_)) => {
                    let n = schedule
                        .iter()
                        .filter(|t| !t.holdback && Score(median.unwrap_or(0)) >= t.threshold)
                        .count();
                    format!("awarded {n} tranche(s)")
                }
            };
            leaderboard.push(BoardEntry {
                round: *round,
                agent: agent.to_hex(),
                diff: diff.to_hex(),
                committed_at: *at,
                scores,
                median,
                outcome,
                award_sat,
                holdback_sat,
            });
        }
        BoardBounty {
            id: b.bounty_id.to_string(),
            title: b.title.clone(),
            metric: b.metric.clone(),
            direction: match b.direction {
                Direction::Minimize => "minimize".into(),
                Direction::Maximize => "maximize".into(),
            },
            pool_sat: b.pool_msat / 1000,
            awarded_sat: leaderboard
                .iter()
                .map(|e| e.award_sat + e.holdback_sat)
                .sum(),
            target: b.target_improvement.0,
            margin: b.margin.0,
            deadline: b.deadline,
            status: if self.completed {
                "completed"
            } else {
                "active"
            }
            .into(),
            baseline_metric: self.rounds.first().map(|r| r.metric),
            best_metric: self.rounds.last().map(|r| r.metric),
            rounds: self.rounds.clone(),
            leaderboard,
        }
    }

    /// Show the current state on the node's board.
    pub fn publish(&self, node: &Node) {
        let view = self.board();
        node.board
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sponsored
            .insert(view.id.clone(), view);
    }

    /// Record round `round`'s tree and its metric (millionths).
    pub fn record_round(&mut self, round: u64, tree: BlobHash, metric: f32) {
        self.rounds.retain(|r| r.round != round);
        self.rounds.push(BoardRound {
            round,
            tree: tree.to_hex(),
            metric: (f64::from(metric) * 1e6).round() as i64,
        });
    }

    /// What is left of the pool after the awards of round `round` under `schedule`: each
    /// attested submission counted at the regular and holdback tranches its median score
    /// reaches (an upper bound: the holdback may return).
    pub fn spend(&self, schedule: &[TrancheSpec], round: u64, left: u64) -> u64 {
        let spent: u64 = self
            .scores
            .range((round, SubmissionId([0; 32]))..=(round, SubmissionId([0xff; 32])))
            .map(|(_, v)| {
                let scores: Vec<i64> = v.iter().map(|(s, _)| *s).collect();
                let s = Score(l402_protocol::bounty::median(&scores).unwrap_or(0));
                earned_regular_msat(schedule, s) + earned_holdback_msat(schedule, s)
            })
            .sum();
        left.saturating_sub(spent)
    }

    /// The held-out metric of tree `hash` (stored here), in nats per byte.
    pub async fn metric(&self, node: &Node, hash: BlobHash) -> anyhow::Result<f32> {
        let bytes = node
            .components
            .blobs
            .read(&l402_protocol::wire::BlobId(hash.0))
            .await?;
        let tree = BountyTree::decode(&bytes)?;
        let (work, b, seed) = (
            node.components.bounty.clone(),
            self.bounty.clone(),
            self.secrets.heldout_seed,
        );
        let m = tokio::task::spawn_blocking(move || work.tree_metric(&b, hash, &tree, &seed))
            .await??
            .ok_or_else(|| anyhow!("tree {hash} does not evaluate"))?;
        Ok(m as f32 / 1e6)
    }
}

/// The agent's turn in a bounty round: a diff against the round's tree, by behaviour, then
/// submitted through the round machines. `done` holds the bounties it already submitted to
/// (the reference agent spends its budget once per bounty).
pub async fn agent_submit(
    node: &Node,
    role: &PeerRole,
    open: &Verified<RoundOpen>,
    bounty: &Verified<Bounty>,
    done: &mut BTreeSet<RunId>,
) -> anyhow::Result<()> {
    if role.behaviour == "manual" {
        return Err(anyhow!(
            "this node submits only what its operator sends (`l402-node bounty submit`)"
        ));
    }
    if done.contains(&open.run_id) && role.behaviour != "follow-up" {
        return Err(anyhow!("already submitted to this bounty"));
    }
    if role.behaviour == "follow-up" && open.round < 2 {
        return Err(anyhow!("a follow-up waits for a leader"));
    }
    let tree = node
        .components
        .fetch_tree(open, &open.checkpoint, &[open.author()])
        .await?;
    let public = net::public_eval();
    if blake3::hash(&public).as_bytes() != &bounty.public_eval.0 {
        return Err(anyhow!("the bounty's public eval set is not the example's"));
    }
    let (blob, claimed) = match role.behaviour.as_str() {
        "copier" => (leaked(node, open).await?, Score(0)),
        "follow-up" => {
            let toml = tree
                .files
                .get("train.toml")
                .ok_or_else(|| anyhow!("the tree has no train.toml"))?;
            let d = diff::make("train.toml", toml, &local::bump_steps(toml, 1));
            (d.into_bytes(), Score(0))
        }
        _ => {
            // Seeded by the round: the reference agent's climb is reproducible.
            let (policy, node_bin, seed, margin) = (
                node.components.bounty.policy,
                node.components.bounty.node_bin.clone(),
                open.round,
                bounty.margin.0,
            );
            let found = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let dir = tempfile::tempdir()?;
                net::write_tree(&tree, dir.path())?;
                let iso = Isolation::detect(policy)?;
                let bench = example_bench(dir.path(), &node_bin, 16 * 1024, Limits::default());
                Ok(agent::run(
                    &iso,
                    &bench,
                    &TinyLmHarness,
                    &public,
                    &AgentConfig {
                        max_iterations: 14,
                        patience: 7,
                        min_gain: 1_000,
                        seed,
                        propose_cmd: None,
                        lower_is_better: true,
                    },
                    &indicatif::ProgressBar::hidden(),
                )?)
            })
            .await??;
            let gain = found.baseline_metric - found.best_metric;
            tracing::info!(bounty = %open.run_id, round = open.round, public_baseline = found.baseline_metric, public_best = found.best_metric, gain, margin, "agent climbed");
            if found.diff.is_empty() || gain < margin {
                return Err(anyhow!(
                    "no diff beats the leader by the margin on the public set"
                ));
            }
            (found.diff.into_bytes(), Score(found.best_metric))
        }
    };
    submit_blob(node, open, blob, claimed).await?;
    done.insert(open.run_id.clone());
    Ok(())
}

/// The example bounty's terms as `init --bounty` and `bounty post` set them by default.
pub fn default_terms(id: &str, rounds: u64) -> PostRequest {
    PostRequest {
        id: id.to_owned(),
        rounds,
        pool_sats: 40_000,
        tranches: default_tranches(),
        target: 400_000,
        margin: 60_000,
        holdback_ppm: default_holdback(),
        fee_sats: default_fee(),
        max_submissions: default_per_round(),
    }
}

/// `POST /admin/bounty/post` (loopback only): sponsor the example bounty with these terms.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostRequest {
    /// Bounty id.
    pub id: String,
    /// Rounds (one candidate measured against the leader per round by default).
    #[serde(default = "default_rounds")]
    pub rounds: u64,
    /// The whole pool, in sats.
    pub pool_sats: u64,
    /// Tranches of the pool (at most 4).
    #[serde(default = "default_tranches")]
    pub tranches: u32,
    /// Improvement (millionths of the metric) that earns the whole pool.
    pub target: i64,
    /// A diff must beat the leader by this much.
    pub margin: i64,
    /// Parts per million of each award held back for the re-evaluation.
    #[serde(default = "default_holdback")]
    pub holdback_ppm: u32,
    /// Submission fee, in sats.
    #[serde(default = "default_fee")]
    pub fee_sats: u64,
    /// Candidates per round.
    #[serde(default = "default_per_round")]
    pub max_submissions: u32,
}

fn default_rounds() -> u64 {
    3
}
fn default_tranches() -> u32 {
    4
}
fn default_holdback() -> u32 {
    200_000
}
fn default_fee() -> u64 {
    20
}
fn default_per_round() -> u32 {
    1
}

impl PostRequest {
    /// The bounty's own terms.
    pub fn terms(&self) -> BountyTerms {
        BountyTerms {
            margin: self.margin,
            holdback_ppm: self.holdback_ppm,
            reeval_secs: 70,
        }
    }

    /// The sponsor role these terms make.
    pub fn role(&self) -> CoordinatorRole {
        CoordinatorRole {
            run: self.id.clone(),
            rounds: self.rounds,
            n: 3,
            k: 2,
            pool_sats: self.pool_sats,
            tranches: self.tranches,
            target_score: self.target,
            submission_price_sats: self.fee_sats,
            max_submissions: self.max_submissions.max(1),
            submit_secs: 40,
            attest_secs: 65,
            claim_secs: 100,
            genesis_seed: 1,
            wait_for_start: false,
            dealer_faults: Vec::new(),
            bounty: Some(self.terms()),
        }
    }
}

/// Sponsor a bounty from a running node: check the terms, write the sponsor role into
/// `l402.toml` (a restart resumes it) and start it.
pub async fn admin_post(
    axum::extract::State(node): axum::extract::State<Node>,
    axum::extract::ConnectInfo(from): axum::extract::ConnectInfo<std::net::SocketAddr>,
    axum::Json(req): axum::Json<PostRequest>,
) -> axum::response::Response {
    use super::gateway::{error, loopback_only};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    if let Some(r) = loopback_only(&from) {
        return r;
    }
    let id = match RunId::new(req.id.clone()) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let role = req.role();
    let (mut cfg, _) = match crate::config::load(&node.data_dir) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let busy = cfg.roles.coordinator.is_some()
        || node
            .coordinator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
    if busy {
        return error(
            StatusCode::CONFLICT,
            "this node already coordinates a run (one run per node)",
        );
    }
    // The terms must make a valid bounty and an escrow schedule before anything is written.
    if let Err(e) = example_bounty(
        &role,
        &req.terms(),
        BlobHash([0; 32]),
        Seed32([0; 32]),
        None,
    ) {
        return error(StatusCode::BAD_REQUEST, format!("{e:#}"));
    }
    cfg.roles.coordinator = Some(role.clone());
    let written = crate::config::render(&cfg)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            crate::durable::write_atomic(&node.data_dir, crate::config::CONFIG_FILE, t.as_bytes())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    super::roles::spawn_coordinator(node.clone(), role);
    tracing::info!(bounty = %id, "bounty posted by the operator");
    axum::Json(serde_json::json!({"bounty": id.as_str(), "board": format!("http://{}/bounties", node.config.gateway_listen)}))
        .into_response()
}

/// `POST /admin/bounty/submit` (loopback only): submit a diff to a bounty's open round.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Bounty id.
    pub bounty: String,
    /// The unified diff against the round's tree.
    pub diff: String,
}

/// Submit an operator's diff (its own agent's, or any coding agent's) to the bounty's open
/// round: the fee is paid over L402, the peer machine does the rest.
pub async fn admin_submit(
    axum::extract::State(node): axum::extract::State<Node>,
    axum::extract::ConnectInfo(from): axum::extract::ConnectInfo<std::net::SocketAddr>,
    axum::Json(req): axum::Json<SubmitRequest>,
) -> axum::response::Response {
    use super::gateway::{error, loopback_only};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    if let Some(r) = loopback_only(&from) {
        return r;
    }
    let Ok(id) = RunId::new(req.bounty.clone()) else {
        return error(StatusCode::BAD_REQUEST, "not a bounty id");
    };
    let open = node
        .opens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned();
    let Some(open) = open else {
        return error(
            StatusCode::NOT_FOUND,
            "no open round of this bounty heard yet",
        );
    };
    let Some(bounty) = node.components.bounty_of(&open) else {
        return error(
            StatusCode::NOT_FOUND,
            "no bounty event by the round's coordinator",
        );
    };
    if unix_now() >= open.submit_deadline {
        return error(
            StatusCode::CONFLICT,
            format!(
                "round {} no longer takes submissions; retry in the next",
                open.round
            ),
        );
    }
    // The bounty's own rules, the size cap first, as every validator will check them.
    if let Err(e) = diff::parse(
        req.diff.as_bytes(),
        &bounty.mutable_files,
        bounty.diff_size_cap,
    ) {
        let code = match e {
            diff::DiffError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        return error(code, e);
    }
    let blob = req.diff.into_bytes();
    let hash = blake3::hash(&blob).to_hex().to_string();
    match submit_blob(&node, &open, blob, Score(0)).await {
        Ok(()) => axum::Json(
            serde_json::json!({"bounty": id.as_str(), "round": open.round, "diff": hash}),
        )
        .into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_the_one_the_coordinator_did_not_take_even_in_the_same_second() {
        let author = nostr_sdk::prelude::Keys::generate().public_key();
        let diff = BlobHash([7; 32]);
        let (low, high) = (SubmissionId([1; 32]), SubmissionId([2; 32]));
        let subs: Seen = [
            ((1, low), (author, diff, 100)),
            ((1, high), (author, diff, 100)),
        ]
        .into_iter()
        .collect();
        let first = |taken: &BTreeSet<(u64, SubmissionId)>| {
            first_of_each_diff(&board_order(&subs, taken), taken)
        };
        // Nothing taken yet: the earliest by (created_at, id).
        assert_eq!(first(&BTreeSet::new()).get(&(1, diff)), Some(&low));
        // The coordinator took the higher id (it arrived first): that one is the original.
        let taken = [(1, high)].into_iter().collect();
        assert_eq!(first(&taken).get(&(1, diff)), Some(&high));
        // Another round's diff is its own.
        assert_eq!(first(&taken).get(&(2, diff)), None);
    }
}
