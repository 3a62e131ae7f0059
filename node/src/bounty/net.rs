//! Bounties over the network, on the round machines: a bounty is a run whose rounds each take
//! diffs against the current leader's tree.
//!
//! - The sponsor is the run's coordinator. A round's checkpoint is the leader's tree
//!   ([`BountyTree`], a fixed-size blob); its reward schedule is
//!   [`l402_protocol::bounty::escrow_schedule`] of what is left of the pool.
//! - An agent is a peer: its submission blob is a unified diff, its token the submission fee.
//!   The signed submission names the diff by hash (the commitment, first come kept: a later copy
//!   of the same bytes is refused by the coordinator), and the diff is revealed to the
//!   submission's committee only once the escrow is locked.
//! - A validator scores a diff as the improvement, in millionths of the metric, of the
//!   candidate's held-out metric over the tree's, both measured by the two-phase evaluation on
//!   the held-out set drawn from the seed the sponsor sent it NIP-44-encrypted (kind 4031); the
//!   holdback re-evaluation uses the second, fresh seed.
//! - The next round's tree is the tree with every merged diff applied in submission-id order (a
//!   diff that no longer applies is skipped): improvements stack, and anyone recomputes it.
//!
//! Spec: specs/L2T-13-bounties.md#the-network

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use l402_protocol::bounty::tree::BountyTree;
use l402_protocol::events::bounty::{Bounty, HeldoutSecrets};
use l402_protocol::events::{BlobHash, RunId, Score, Seed32};
use l402_protocol::quorum::{RejectCode, Verdict};
use nostr_sdk::prelude::{Keys, PublicKey};

use super::example::{self, EvalSet, TinyLmHarness};
use super::harness::{self, Evaluation, ExploitEntry, ExploitLog};
use super::sandbox::{Isolation, Limits, Policy};
use super::{diff, example_bench};

/// The metric name of the example bounty (the only harness this node ships).
pub const TINY_LM_METRIC: &str = "heldout_loss_micro_nats_per_byte";

/// A validator's verdict on a diff whose candidate phase or artifact failed.
pub const REJECT_CANDIDATE_FAILED: RejectCode = RejectCode::CandidateFailed;
/// A validator's verdict on a diff that does not beat the round's tree by the bounty's margin:
/// it earns nothing, and is not merged into the next tree.
pub const REJECT_BELOW_MARGIN: RejectCode = RejectCode::BelowMargin;

/// A tree of the files under `dir` (recursively, regular files only).
pub fn tree_from_dir(dir: &Path) -> anyhow::Result<BountyTree> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
        for e in std::fs::read_dir(d)? {
            let e = e?;
            let ty = e.file_type()?;
            let p = e.path();
            if ty.is_dir() {
                walk(root, &p, out)?;
            } else if ty.is_file() {
                let rel = p
                    .strip_prefix(root)?
                    .to_str()
                    .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", p.display()))?
                    .to_owned();
                out.insert(rel, std::fs::read_to_string(&p)?);
            }
        }
        Ok(())
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files)?;
    Ok(BountyTree::new(files)?)
}

/// Write `tree` under `dir` (its paths are plain relative paths, checked on decode).
pub fn write_tree(tree: &BountyTree, dir: &Path) -> std::io::Result<()> {
    for (p, text) in &tree.files {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

/// `tree` with each of `diffs` applied in order; a diff the bounty's rules refuse or that no
/// longer applies (it conflicts with an earlier one) is skipped. Returns the tree and how many
/// applied.
pub fn apply_diffs(
    tree: &BountyTree,
    diffs: &[Vec<u8>],
    bounty: &Bounty,
) -> anyhow::Result<(BountyTree, usize)> {
    let dir = tempfile::tempdir()?;
    write_tree(tree, dir.path())?;
    let mut applied = 0;
    for d in diffs {
        let ok = diff::parse(d, &bounty.mutable_files, bounty.diff_size_cap)
            .and_then(|files| diff::apply(dir.path(), &files));
        match ok {
            Ok(()) => applied += 1,
            Err(e) => tracing::info!(error = %e, "merged diff skipped: it no longer applies"),
        }
    }
    Ok((tree_from_dir(dir.path())?, applied))
}

/// The held-out seeds of the example bounty posted by `sponsor` as `id`: derived from the
/// sponsor's secret key, so a restarted sponsor sends the same ones.
pub fn example_secrets(sponsor: &Keys, id: &RunId) -> HeldoutSecrets {
    let seed = |label: &str| {
        let mut h = blake3::Hasher::new_keyed(&sponsor.secret_key().secret_bytes());
        h.update(b"l402 bounty held-out seed v1\0");
        h.update(id.as_str().as_bytes());
        h.update(&[0]);
        h.update(label.as_bytes());
        Seed32(*h.finalize().as_bytes())
    };
    HeldoutSecrets {
        v: 1,
        heldout_seed: seed("heldout"),
        holdback_seed: seed("holdback"),
    }
}

/// The held-out set of `seed`, encoded (what the harness scores on).
pub fn eval_set(seed: &Seed32) -> Vec<u8> {
    EvalSet::generate(&seed.0, example::EVAL_ROWS).encode()
}

/// The public eval set of the example bounty, encoded; its BLAKE3 is the bounty's
/// `public_eval`.
pub fn public_eval() -> Vec<u8> {
    EvalSet::generate(&example::public_seed(), example::EVAL_ROWS).encode()
}

/// Whether `secrets` open the bounty's held-out commitment.
pub fn secrets_match(bounty: &Bounty, secrets: &HeldoutSecrets) -> bool {
    use sha2::Digest;
    sha2::Sha256::digest(eval_set(&secrets.heldout_seed)).as_slice()
        == bounty.heldout_commitment.0.as_slice()
}

/// A tree's held-out metric per (tree, held-out seed); `None`: the tree does not evaluate.
type TreeMetrics = BTreeMap<(BlobHash, [u8; 32]), Option<i64>>;

/// A node's bounty side: the sandbox policy, the binary candidates call, the exploit log, and
/// the secrets and baseline metrics learnt so far.
#[derive(Debug)]
pub struct BountyWork {
    /// Whether untrusted diffs may run without bubblewrap (operator override).
    pub policy: Policy,
    /// The `l402-node` binary bound read-only into the sandbox as the trainer.
    pub node_bin: PathBuf,
    /// Caps of each candidate phase.
    pub limits: Limits,
    /// Where refused exploits are recorded.
    pub exploits: ExploitLog,
    /// The node's Nostr keys (held-out secrets are encrypted to them).
    pub keys: Keys,
    secrets: Mutex<BTreeMap<(PublicKey, String), HeldoutSecrets>>,
    metrics: Mutex<TreeMetrics>,
}

impl BountyWork {
    /// The bounty side of the node with `keys`, logging exploits to
    /// `data_dir/bounty-exploits.jsonl`.
    pub fn new(data_dir: &Path, policy: Policy, keys: Keys) -> Self {
        Self {
            policy,
            keys,
            node_bin: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("l402-node")),
            limits: Limits::default(),
            exploits: ExploitLog::new(data_dir.join("bounty-exploits.jsonl")),
            secrets: Mutex::new(BTreeMap::new()),
            metrics: Mutex::new(BTreeMap::new()),
        }
    }

    /// Remember the held-out secrets of `bounty` by `sponsor` (already opened and checked).
    pub fn learn_secrets(&self, sponsor: PublicKey, bounty: &RunId, s: HeldoutSecrets) {
        lock(&self.secrets).insert((sponsor, bounty.as_str().to_owned()), s);
    }

    /// The held-out secrets of `bounty` by `sponsor`, if known.
    pub fn secrets(&self, sponsor: &PublicKey, bounty: &RunId) -> Option<HeldoutSecrets> {
        lock(&self.secrets)
            .get(&(*sponsor, bounty.as_str().to_owned()))
            .cloned()
    }

    fn isolation(&self) -> anyhow::Result<Isolation> {
        Ok(Isolation::detect(self.policy)?)
    }

    fn eval(
        &self,
        iso: &Isolation,
        bounty: &Bounty,
        tree: &Path,
        diff: Option<&[u8]>,
        set: &[u8],
    ) -> anyhow::Result<Evaluation> {
        let mut bench = example_bench(tree, &self.node_bin, bounty.diff_size_cap, self.limits);
        bench.mutable_files = bounty.mutable_files.clone();
        bench.command = bounty.eval_command.clone();
        Ok(harness::evaluate(iso, &bench, &TinyLmHarness, diff, set)?)
    }

    /// The held-out metric of `tree` itself on the set of `seed` (cached per tree and seed).
    pub fn tree_metric(
        &self,
        bounty: &Bounty,
        tree_hash: BlobHash,
        tree: &BountyTree,
        seed: &Seed32,
    ) -> anyhow::Result<Option<i64>> {
        if let Some(m) = lock(&self.metrics).get(&(tree_hash, seed.0)) {
            return Ok(*m);
        }
        let dir = tempfile::tempdir()?;
        write_tree(tree, dir.path())?;
        let set = eval_set(seed);
        self.metric_at(
            &self.isolation()?,
            bounty,
            tree_hash,
            dir.path(),
            seed,
            &set,
        )
    }

    /// [`BountyWork::tree_metric`] of the tree written at `dir`, with `set` drawn from `seed`.
    fn metric_at(
        &self,
        iso: &Isolation,
        bounty: &Bounty,
        tree_hash: BlobHash,
        dir: &Path,
        seed: &Seed32,
        set: &[u8],
    ) -> anyhow::Result<Option<i64>> {
        if let Some(m) = lock(&self.metrics).get(&(tree_hash, seed.0)) {
            return Ok(*m);
        }
        let m = self.eval(iso, bounty, dir, None, set)?.metric;
        lock(&self.metrics).insert((tree_hash, seed.0), m);
        Ok(m)
    }

    /// Score `diff` by `agent` against `tree` on the held-out set of `seed`: the improvement
    /// over the tree's own metric in millionths (positive = better). A diff whose candidate
    /// phase or artifact fails is a rejection, and is written to the exploit log with what it
    /// tried.
    pub fn score(
        &self,
        bounty: &Bounty,
        tree_hash: BlobHash,
        tree: &BountyTree,
        diff: &[u8],
        seed: &Seed32,
        agent: &PublicKey,
    ) -> anyhow::Result<(Score, Verdict)> {
        if bounty.metric != TINY_LM_METRIC {
            tracing::warn!(bounty = %bounty.bounty_id, metric = %bounty.metric, "no harness for this metric");
            return Ok(crate::runtime::work::failed_eval(RejectCode::Unavailable));
        }
        // One sandbox probe, one copy of the tree and one held-out set for both evaluations.
        let iso = self.isolation()?;
        let dir = tempfile::tempdir()?;
        write_tree(tree, dir.path())?;
        let set = eval_set(seed);
        let Some(base) = self.metric_at(&iso, bounty, tree_hash, dir.path(), seed, &set)? else {
            anyhow::bail!("the round's tree does not evaluate");
        };
        let ev = self.eval(&iso, bounty, dir.path(), Some(diff), &set)?;
        let now = crate::runtime::unix_now();
        if let Some(e) = ExploitEntry::of(&ev, bounty.bounty_id.as_str(), Some(agent.to_hex()), now)
        {
            if let Err(err) = self.exploits.record(&e) {
                tracing::error!(error = %err, "exploit log not written");
            }
        }
        let Some(m) = ev.metric else {
            let code = if ev
                .exploits
                .iter()
                .any(|c| matches!(c, harness::ExploitClass::DiffRefused { .. }))
            {
                RejectCode::Malformed
            } else {
                REJECT_CANDIDATE_FAILED
            };
            return Ok((Score(0), Verdict::Reject(code)));
        };
        let improvement = l402_protocol::bounty::improvement(bounty.direction, base, m);
        tracing::info!(bounty = %bounty.bounty_id, tree = %tree_hash, baseline_metric = base, metric = m, improvement, "diff scored");
        let verdict = if l402_protocol::bounty::reaches_margin(improvement, bounty.margin.0) {
            Verdict::Accept
        } else {
            Verdict::Reject(REJECT_BELOW_MARGIN)
        };
        Ok((Score(improvement), verdict))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every use is one map operation: a poisoned lock still holds a consistent map.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trees_round_trip_through_directories_and_diffs_stack() {
        let dir = tempfile::tempdir().unwrap();
        example::write_baseline(dir.path()).unwrap();
        let tree = tree_from_dir(dir.path()).unwrap();
        assert_eq!(
            BountyTree::decode(&tree.encode()).unwrap(),
            tree,
            "the tree blob decodes"
        );
        let toml = &tree.files["train.toml"];
        let bumped = super::super::local::bump_steps(toml, 1);
        let d = diff::make("train.toml", toml, &bumped);
        let bounty = super::super::local::example_bounty(b"x", 0);
        let (next, n) =
            apply_diffs(&tree, &[d.clone().into_bytes(), d.into_bytes()], &bounty).unwrap();
        assert_eq!(n, 1, "the second copy no longer applies and is skipped");
        assert_eq!(next.files["train.toml"], bumped);
        assert_eq!(next.files["run.sh"], tree.files["run.sh"]);
    }
}
