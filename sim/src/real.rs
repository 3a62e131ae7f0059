//! Real mode (`l402-sim run --real`): the scenario's swarm as real nodes. A regtest chain
//! (`l402-testnet`) and an embedded Nostr relay run in this process; every coordinator,
//! validator and peer is its own `l402-node up` process (this binary's `node` subcommand, the
//! same library code) with its own ldk-node, iroh endpoint, relay connection and data dir. The
//! orchestration is `l402-node demo`'s (`l402_node::cli::demo::run_demo`): fund, open channels,
//! run the rounds, wait until every hold invoice is claimed or refunded, snapshot each node.
//!
//! Byzantine peers get a behaviour (`l402_node::train::attack`): it changes only their training
//! output, never the protocol machines. This module turns the nodes' own reports into the
//! figures the fast mode prints, and checks the invariants:
//!
//! - honest peers receive ≥ 95 % of the sats paid to peers, attackers ≤ 1 %;
//! - every hold invoice on every node ended claimed or refunded (asked of each ldk-node);
//! - each round's merged list is exactly the submissions a quorum (≥ k) attested "accept",
//!   and every validator recomputed the published checkpoint from it;
//! - with `--compare-clean`, the final held-out loss is within 5 % of the same swarm without
//!   attackers;
//! - colluding validators are named in proven wrong-score evidence (the coordinator's audit
//!   replay); at k or above, instead of the 95 % / 1 % shares, the damage is bounded: attackers
//!   are paid only up to the round the colluders are convicted in, at most one round's escrow,
//!   the convicted sit in no later committee, and honest peers get ≥ 95 % of every later round.
//!
//! Every node's keys are derived from the scenario's seed and the node's name (`demo
//! --key-seed`), so a swarm and its attack-free twin share their honest peers' keys and data
//! shards, and the loss gap measures the attack rather than another draw of shards. Real runs
//! are still not bit-reproducible: rounds follow wall-clock deadlines, and which submissions
//! make them depends on the machine's load. The replay command re-runs the same swarm.
//!
//! Spec: specs/L2T-12-sim.md#real-mode

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use l402_node::cli::demo::{run_demo, DemoArgs, NodeExe};
use l402_node::config::{DealingFault, DealingFaultAt};
use serde::Serialize;
use serde_json::Value;

use crate::scenario::{Mode, Scenario};

/// Most nodes a real-mode swarm starts on one machine (coordinator, validators and peers).
pub const MAX_REAL_NODES: usize = 24;
/// Honest peers' least share of the sats paid to peers.
pub const HONEST_SHARE_MIN: f64 = 0.95;
/// Attackers' largest share of the sats paid to peers.
pub const ATTACKER_SHARE_MAX: f64 = 0.01;
pub use crate::invariants::LOSS_GAP_MAX;
/// Behaviours whose submissions are honest work: their sats count as honest. A corrupting
/// provider trains honestly; its attack is on the availability of its blob, not on the model.
pub const HONEST_WORK: [&str; 2] = ["honest", "corrupting-provider"];

/// Options of one real-mode run.
#[derive(Clone, Debug, Default)]
pub struct RealOptions {
    /// Rounds (default: the scenario's).
    pub rounds: Option<u64>,
    /// Where the nodes' data dirs and the reports go (default: a new temp dir, kept).
    pub dir: Option<PathBuf>,
    /// Also run the swarm without its attackers and compare the final held-out loss.
    pub compare_clean: bool,
}

/// The `l402-node demo` arguments of a scenario's swarm.
pub fn swarm_args(
    sc: &Scenario,
    rounds: u64,
    dir: PathBuf,
    exe: NodeExe,
) -> anyhow::Result<DemoArgs> {
    sc.check_mode(Mode::Real)?;
    let p = &sc.peers;
    let v = &sc.validators;
    // `check_mode` refused Sybils and replayers: every worker is a node.
    let peers = p.workers();
    let nodes = 1 + v.pool + peers;
    if nodes > MAX_REAL_NODES {
        anyhow::bail!("real mode starts at most {MAX_REAL_NODES} nodes on one machine; this swarm has {nodes}");
    }
    if p.honest == 0 {
        anyhow::bail!("real mode needs at least one honest peer (the others copy its blobs)");
    }
    if v.lazy > 0 && v.lazy_score != l402_node::runtime::exec::LAZY_SCORE {
        anyhow::bail!(
            "real mode's lazy validators attest {} (validators.lazy_score = {})",
            l402_node::runtime::exec::LAZY_SCORE,
            v.lazy_score
        );
    }
    Ok(DemoArgs {
        rounds,
        peers,
        // The scenario's free-riders resubmit another peer's blob (test-matrix A1), as in fast
        // mode: the node's `copier`. (The node's `free-rider` submits a zero update; a `mixed`
        // peer does that in its free-rider rounds.)
        free_riders: 0,
        copiers: p.free_riders,
        sign_flips: p.poisoners,
        copycats: p.copycats,
        alie: p.alie,
        stale: p.stale,
        mixed: p.mixed,
        corrupting: p.corrupting,
        validators: v.pool,
        colluding: v.colluding,
        equivocating: v.equivocating,
        lazy: v.lazy,
        dealer_fault: dealer_faults(sc, rounds),
        committee: Some(v.committee.min(v.pool) as u32),
        k: v.k as u32,
        submit_secs: None,
        dir: Some(dir),
        // Keys from the scenario's seed and each node's name: the attack-free twin of a swarm
        // (`--compare-clean`, the heatmap's real column) has the same honest peers, with the
        // same data shards.
        key_seed: Some(sc.seed),
        json: true,
        // `faults.crash`: the demo SIGKILLs the first peer once its round-1 escrow HTLCs are
        // held and the coordinator mid-round 2 (escrows locked), and restarts both from their
        // data dirs — the moments a crash could lose sats or accepted work.
        kill_peer: sc.faults.crash > 0.0,
        kill_coordinator: sc.faults.crash > 0.0,
        bounty: false,
        node_exe: Some(exe),
    })
}

/// The rounds a real-mode coordinator corrupts (`faults.dealer`, `faults.dealer_rounds`): evenly
/// spread, the fraction `dealer_rounds` of `rounds`; `mixed` rotates wrong share, garbage
/// ciphertext and wrong payment hash over them.
pub fn dealer_faults(sc: &Scenario, rounds: u64) -> Vec<DealingFaultAt> {
    use crate::scenario::DealerFault as F;
    let f = &sc.faults;
    let kinds: &[DealingFault] = match f.dealer {
        F::None => return Vec::new(),
        F::WrongShare => &[DealingFault::WrongShare],
        F::GarbageCiphertext => &[DealingFault::GarbageCiphertext],
        F::WrongPaymentHash => &[DealingFault::WrongPaymentHash],
        F::Mixed => &[
            DealingFault::WrongShare,
            DealingFault::GarbageCiphertext,
            DealingFault::WrongPaymentHash,
        ],
    };
    let frac = f.dealer_rounds.clamp(0.0, 1.0);
    (1..=rounds)
        .filter(|r| ((*r as f64) * frac).floor() > ((*r - 1) as f64 * frac).floor())
        .enumerate()
        .map(|(i, round)| DealingFaultAt {
            round,
            kind: kinds[i % kinds.len()],
        })
        .collect()
}

/// What one behaviour's peers submitted and earned.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct BehaviourTally {
    /// Nodes with this behaviour.
    pub nodes: usize,
    /// Submissions (rounds × nodes that submitted).
    pub submitted: u64,
    /// Submissions a quorum attested "accept" (merged).
    pub accepted: u64,
    /// Submissions a quorum rejected.
    pub rejected: u64,
    /// Submissions refused before any evaluation (no escrow: the copy rule, a cap …).
    pub refused: u64,
    /// Sats claimed by these peers.
    pub paid_sat: u64,
    /// Sats of their tranches refunded to the coordinator.
    pub refunded_sat: u64,
    /// Which check rejected them: the validators' majority reject code, counted.
    pub detected_by: BTreeMap<String, u64>,
}

/// One round's merge check.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MergeCheck {
    /// Round.
    pub round: u64,
    /// Submissions in the coordinator's merged list (as the validators fetched it).
    pub merged: Vec<String>,
    /// Submissions with ≥ k "accept" attestations.
    pub attested: Vec<String>,
    /// Validators that recomputed the checkpoint, and how many of them matched it.
    pub recomputed: usize,
    /// Of those, matching.
    pub recomputed_ok: usize,
}

/// One checked invariant.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RealInvariant {
    /// What it asks.
    pub name: String,
    /// Whether it holds.
    pub holds: bool,
    /// The figures behind it.
    pub detail: String,
}

/// One evidence event on the relay, as `l402-node evidence` (a third party: no key of the run)
/// checked it, with keys named by node.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvidenceSeen {
    /// Round (its tag).
    pub round: Option<u64>,
    /// `bad_share`, `wrong_preimage`, `malformed_dealing`, `equivocation`.
    pub kind: String,
    /// The accused node (its name, or the key if no node of the swarm has it).
    pub accused: String,
    /// The node that published it.
    pub published_by: String,
    /// What the proof shows, or why it shows nothing.
    pub proves: String,
    /// Whether the proof checked.
    pub verified: bool,
}

/// A real-mode run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct RealReport {
    /// Scenario name.
    pub scenario: String,
    /// Scenario seed (real runs are not bit-reproducible; see the module doc).
    pub seed: u64,
    /// Rounds run.
    pub rounds: u64,
    /// Nodes started.
    pub nodes: usize,
    /// The swarm's data dir (node logs, `report.json`, charts).
    pub dir: String,
    /// Wall time of the swarm, seconds.
    pub wall_secs: f64,
    /// Peak RSS of all processes together, KiB (Linux).
    pub peak_rss_kb: u64,
    /// Per behaviour.
    pub by_behaviour: BTreeMap<String, BehaviourTally>,
    /// Honest peers' share of the sats paid to peers.
    pub honest_share: f64,
    /// Attackers' share.
    pub attacker_share: f64,
    /// Hold invoices seen on every node, and how many ended (claimed or refunded).
    pub holds: (usize, usize),
    /// Held-out loss per round (round 0: genesis).
    pub heldout_loss: Vec<(u64, f64)>,
    /// The same swarm without attackers, when compared.
    pub clean_heldout_loss: Option<Vec<(u64, f64)>>,
    /// Per round.
    pub merges: Vec<MergeCheck>,
    /// The evidence on the relay, checked by a third party.
    pub evidence: Vec<EvidenceSeen>,
    /// The checks.
    pub invariants: Vec<RealInvariant>,
}

impl RealReport {
    /// Whether every invariant holds.
    pub fn ok(&self) -> bool {
        self.invariants.iter().all(|i| i.holds)
    }

    /// Write `sim-report.{json,md}` and the plots into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(
            dir.join("sim-report.json"),
            serde_json::to_vec_pretty(self)?,
        )?;
        std::fs::write(dir.join("sim-report.md"), self.to_markdown())?;
        self.plots(dir)
    }

    /// Write `loss.svg` (held-out loss per round, with the attack-free swarm's when compared)
    /// and `sats.svg` (sats paid per actor type) into `dir`.
    pub fn plots(&self, dir: &Path) -> anyhow::Result<()> {
        let mut series: Vec<(&str, &[(u64, f64)])> = vec![("with attackers", &self.heldout_loss)];
        if let Some(c) = &self.clean_heldout_loss {
            series.push(("without attackers", c));
        }
        let title = format!("{}: held-out loss per round (real mode)", self.scenario);
        crate::plot::loss_svg(&title, &series, &dir.join("loss.svg"))?;
        let bars: Vec<(String, u64)> = self
            .by_behaviour
            .iter()
            .map(|(b, t)| (b.clone(), t.paid_sat))
            .collect();
        let title = format!("{}: sats paid per actor type (real mode)", self.scenario);
        crate::plot::sats_by_kind_svg(&title, &bars, &dir.join("sats.svg"))?;
        Ok(())
    }

    /// Markdown: the summary, the detection table and the invariants.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# l402-sim real mode: {}\n\nseed {} · {} rounds · {} nodes · {:.0} s wall · peak RSS {:.0} MiB (all processes) · data `{}`\n\n",
            self.scenario,
            self.seed,
            self.rounds,
            self.nodes,
            self.wall_secs,
            self.peak_rss_kb as f64 / 1024.0,
            self.dir
        );
        s.push_str("| behaviour | nodes | submitted | accepted | rejected | refused | paid sats | refunded sats | detected by |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for (b, t) in &self.by_behaviour {
            let det = t
                .detected_by
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!(
                "| {b} | {} | {} | {} | {} | {} | {} | {} | {det} |\n",
                t.nodes, t.submitted, t.accepted, t.rejected, t.refused, t.paid_sat, t.refunded_sat
            ));
        }
        s.push_str(&format!(
            "\nhonest share {:.2} % · attacker share {:.2} % · hold invoices {}/{} ended\n\n",
            self.honest_share * 100.0,
            self.attacker_share * 100.0,
            self.holds.1,
            self.holds.0
        ));
        s.push_str("| round | held-out loss | without attackers | merged | attested by a quorum | checkpoint recomputed |\n|---:|---:|---:|---:|---:|---:|\n");
        for (r, l) in &self.heldout_loss {
            let clean = self
                .clean_heldout_loss
                .as_ref()
                .and_then(|c| c.iter().find(|(cr, _)| cr == r))
                .map_or("–".to_owned(), |(_, c)| format!("{c:.4}"));
            let m = self.merges.iter().find(|m| m.round == *r);
            s.push_str(&format!(
                "| {r} | {l:.4} | {clean} | {} | {} | {} |\n",
                m.map_or("–".into(), |m| m.merged.len().to_string()),
                m.map_or("–".into(), |m| m.attested.len().to_string()),
                m.map_or("–".into(), |m| format!(
                    "{}/{}",
                    m.recomputed_ok, m.recomputed
                )),
            ));
        }
        if !self.evidence.is_empty() {
            s.push_str("\n| round | evidence | accused | published by | checked by `l402-node evidence` |\n|---:|---|---|---|---|\n");
            for e in &self.evidence {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    e.round.map_or("–".into(), |r| r.to_string()),
                    e.kind,
                    e.accused,
                    e.published_by,
                    if e.verified {
                        format!("proven ({})", e.proves)
                    } else {
                        format!("**not proven**: {}", e.proves)
                    }
                ));
            }
        }
        s.push_str("\n| invariant | holds | detail |\n|---|---|---|\n");
        for i in &self.invariants {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                i.name,
                if i.holds { "yes" } else { "**no**" },
                i.detail
            ));
        }
        s
    }
}

/// Run `sc` in real mode: start the swarm, run it, and check the invariants. The reports are
/// written to `<dir>/sim-report.json` and `<dir>/sim-report.md`.
pub fn run_real(sc: &Scenario, opts: &RealOptions, exe: NodeExe) -> anyhow::Result<RealReport> {
    let rounds = opts.rounds.unwrap_or(sc.rounds);
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => tempfile_dir()?,
    };
    let demo = swarm(sc, rounds, &dir.join("swarm"), exe.clone()).context("the real-mode swarm")?;
    let clean = if opts.compare_clean {
        let c = sc.without_adversaries();
        Some(swarm(&c, rounds, &dir.join("clean"), exe).context("the attack-free swarm")?)
    } else {
        None
    };
    let report = figures(sc, rounds, &demo, clean.as_ref());
    report.write(&dir)?;
    Ok(report)
}

/// Run `sc`'s swarm for `rounds` rounds with its nodes' data dirs under `dir`; the demo's JSON
/// report (what [`figures`] reads).
pub fn swarm(sc: &Scenario, rounds: u64, dir: &Path, exe: NodeExe) -> anyhow::Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let args = swarm_args(sc, rounds, dir.to_path_buf(), exe)?;
    rt.block_on(run_demo(&args))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0u32.. {
        let d = base.join(format!("l402-sim-real-{}-{i}", std::process::id()));
        if std::fs::create_dir(&d).is_ok() {
            return Ok(d);
        }
    }
    unreachable!("u32 exhausted")
}

/// The behaviour a submission showed: its node's, or for a `mixed` node the attack of that
/// round (`l402_node::up::roles::round_behaviour`), as `mixed:<attack>`.
fn behaviour_of(demo: &Value, sub: &Value, round: u64) -> String {
    let kind = sub["behaviour"].as_str().unwrap_or("?");
    if kind != "mixed" {
        return kind.to_owned();
    }
    let key = demo["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == sub["peer"])
        .and_then(|n| n["nostr"].as_str())
        .and_then(|k| nostr::PublicKey::from_hex(k).ok());
    match key {
        Some(k) => format!(
            "mixed:{}",
            l402_node::up::roles::round_behaviour(kind, &k, round)
        ),
        None => kind.to_owned(),
    }
}

fn losses(demo: &Value) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    if let Some(g) = demo["genesis_heldout_loss"].as_f64() {
        out.push((0, g));
    }
    for r in demo["rounds"].as_array().into_iter().flatten() {
        if let (Some(n), Some(l)) = (r["round"].as_u64(), r["heldout_loss"].as_f64()) {
            out.push((n, l));
        }
    }
    out
}

/// The figures and invariants of a finished swarm, from the demo's report (each node's own
/// `/status`: its machines, its ldk-node's hold invoices, its checkpoint checks).
pub fn figures(sc: &Scenario, rounds: u64, demo: &Value, clean: Option<&Value>) -> RealReport {
    let k = sc.validators.k;
    let mut by: BTreeMap<String, BehaviourTally> = BTreeMap::new();
    for n in demo["nodes"].as_array().into_iter().flatten() {
        let kind = n["kind"].as_str().unwrap_or("?");
        // A mixed node's rows are per attack (`mixed:<attack>`), counted by submission.
        if kind != "coordinator" && kind != "validator" && kind != "mixed" {
            by.entry(kind.to_owned()).or_default().nodes += 1;
        }
    }
    // A mixed node's rows count the nodes that showed that attack.
    let mut mixed_nodes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut merges = Vec::new();
    for r in demo["rounds"].as_array().into_iter().flatten() {
        let round = r["round"].as_u64().unwrap_or(0);
        let mut attested = BTreeSet::new();
        for s in r["submissions"].as_array().into_iter().flatten() {
            let b = behaviour_of(demo, s, round);
            if b.starts_with("mixed:") {
                let peer = s["peer"].as_str().unwrap_or("?").to_owned();
                mixed_nodes.entry(b.clone()).or_default().insert(peer);
            }
            let t = by.entry(b).or_default();
            t.submitted += 1;
            t.paid_sat += s["paid_sat"].as_u64().unwrap_or(0);
            t.refunded_sat += s["refunded_sat"].as_u64().unwrap_or(0);
            let verdicts: Vec<&str> = s["evaluations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["verdict"].as_str())
                .collect();
            let accepts = verdicts.iter().filter(|v| **v == "accept").count();
            if verdicts.is_empty() {
                t.refused += 1;
            } else if accepts >= k {
                t.accepted += 1;
                if let Some(id) = s["submission"].as_str() {
                    attested.insert(id.to_owned());
                }
            } else {
                t.rejected += 1;
                // The reject code most validators gave.
                let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
                for v in verdicts.iter().filter(|v| **v != "accept") {
                    *codes.entry(v.trim_start_matches("reject: ")).or_default() += 1;
                }
                if let Some((code, _)) = codes.iter().max_by_key(|(_, n)| **n) {
                    *t.detected_by.entry((*code).to_owned()).or_default() += 1;
                }
            }
        }
        let checks: Vec<&Value> = demo["checkpoint_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["round"].as_u64() == Some(round))
            .collect();
        let merged = checks
            .first()
            .and_then(|c| c["merged"].as_array())
            .map(|m| {
                m.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        merges.push(MergeCheck {
            round,
            merged,
            attested: attested.into_iter().collect(),
            recomputed: checks.len(),
            recomputed_ok: checks
                .iter()
                .filter(|c| c["ok"] == Value::Bool(true))
                .count(),
        });
    }
    for (b, peers) in mixed_nodes {
        if let Some(t) = by.get_mut(&b) {
            t.nodes = peers.len();
        }
    }
    let honest: u64 = HONEST_WORK
        .iter()
        .filter_map(|b| by.get(*b))
        .map(|t| t.paid_sat)
        .sum();
    let total: u64 = by.values().map(|t| t.paid_sat).sum();
    let share = |x: u64| {
        if total == 0 {
            0.0
        } else {
            x as f64 / total as f64
        }
    };
    let (honest_share, attacker_share) = (share(honest), share(total - honest));
    let mut holds = (0usize, 0usize);
    let mut stuck = Vec::new();
    for n in demo["nodes"].as_array().into_iter().flatten() {
        for h in n["holds"].as_array().into_iter().flatten() {
            holds.0 += 1;
            if h["terminal"] == Value::Bool(true) {
                holds.1 += 1;
            } else {
                stuck.push(format!("{}:{}", n["name"], h["payment_hash"]));
            }
        }
    }
    let heldout_loss = losses(demo);
    let clean_heldout_loss = clean.map(losses);
    let evidence = evidence_seen(demo);
    let mut invariants = if sc.validators.colluding >= k {
        bounded_break(demo, &evidence)
    } else {
        vec![
            RealInvariant {
                name: "honest peers get ≥ 95 % of the sats paid".into(),
                holds: total > 0 && honest_share >= HONEST_SHARE_MIN,
                detail: format!(
                    "{honest} of {total} sats ({:.2} %; honest work: {})",
                    honest_share * 100.0,
                    HONEST_WORK.join(", ")
                ),
            },
            RealInvariant {
                name: "attackers get ≤ 1 %".into(),
                holds: attacker_share <= ATTACKER_SHARE_MAX,
                detail: format!("{} sats ({:.2} %)", total - honest, attacker_share * 100.0),
            },
        ]
    };
    invariants.extend([
        RealInvariant {
            name: "every hold invoice ended claimed or refunded (each ldk-node)".into(),
            holds: holds.0 > 0 && stuck.is_empty(),
            detail: if stuck.is_empty() {
                format!("{} of {} ended", holds.1, holds.0)
            } else {
                format!("still open: {}", stuck.join(", "))
            },
        },
        RealInvariant {
            name: "every round closed".into(),
            holds: merges.len() as u64 == rounds,
            detail: format!("{} of {rounds}", merges.len()),
        },
    ]);
    let bad_merge: Vec<String> = merges
        .iter()
        .filter(|m| m.merged != m.attested || m.recomputed == 0 || m.recomputed_ok != m.recomputed)
        .map(|m| {
            format!(
                "round {}: merged {} / attested {} / recomputed {}/{}",
                m.round,
                m.merged.len(),
                m.attested.len(),
                m.recomputed_ok,
                m.recomputed
            )
        })
        .collect();
    invariants.push(RealInvariant {
        name: "the merged update is what the quorum attested, recomputed by the validators".into(),
        holds: bad_merge.is_empty(),
        detail: if bad_merge.is_empty() {
            format!("{} rounds", merges.len())
        } else {
            bad_merge.join("; ")
        },
    });
    invariants.extend(evidence_invariants(sc, rounds, demo, &evidence));
    invariants.extend(crash_invariant(sc, rounds, demo));
    invariants.extend(corruption_invariant(demo, &by));
    if let Some(c) = &clean_heldout_loss {
        let last = |v: &[(u64, f64)]| v.iter().find(|(r, _)| *r == rounds).map(|(_, l)| *l);
        let (a, b) = (last(&heldout_loss), last(c));
        let gap = a
            .zip(b)
            .and_then(|(a, b)| crate::invariants::relative_gap(a, b));
        invariants.push(RealInvariant {
            name: "final held-out loss within 5 % of the run without attackers".into(),
            holds: gap.is_some_and(|g| g <= LOSS_GAP_MAX),
            detail: format!(
                "{} vs {} ({})",
                a.map_or("–".into(), |a| format!("{a:.4}")),
                b.map_or("–".into(), |b| format!("{b:.4}")),
                gap.map_or("–".into(), |g| format!("{:+.2} %", g * 100.0))
            ),
        });
    }
    let peak_rss_kb = demo["peak_rss_kb"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    RealReport {
        scenario: sc.name.clone(),
        seed: sc.seed,
        rounds,
        nodes: demo["nodes"].as_array().map_or(0, Vec::len),
        dir: demo["dir"].as_str().unwrap_or("").to_owned(),
        wall_secs: demo["wall_secs"].as_f64().unwrap_or(0.0),
        peak_rss_kb,
        by_behaviour: by,
        honest_share,
        attacker_share,
        holds,
        heldout_loss,
        clean_heldout_loss,
        merges,
        evidence,
        invariants,
    }
}

/// With `faults.crash`: the peer killed with its escrow held and the coordinator killed
/// mid-round restarted (the demo records each kill); that nothing was lost is the hold-invoice
/// and round invariants.
fn crash_invariant(sc: &Scenario, rounds: u64, demo: &Value) -> Option<RealInvariant> {
    if sc.faults.crash <= 0.0 {
        return None;
    }
    let restarts: Vec<String> = demo["restarts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} in round {} ({})",
                r["node"].as_str().unwrap_or("?"),
                r["round"],
                r["escrow_at_kill"]
            )
        })
        .collect();
    let expected = if rounds >= 2 { 2 } else { 1 };
    Some(RealInvariant {
        name: "SIGKILLed nodes restarted from their data dirs and the run went on".into(),
        holds: restarts.len() == expected,
        detail: if restarts.is_empty() {
            "no node was killed".into()
        } else {
            restarts.join("; ")
        },
    })
}

/// With corrupting providers whose work was merged: the coordinator caught their bytes (BLAKE3
/// verification), never failed a fetch, and completed each blob from another holder.
fn corruption_invariant(
    demo: &Value,
    by: &BTreeMap<String, BehaviourTally>,
) -> Option<RealInvariant> {
    let merged = by.get("corrupting-provider")?.accepted;
    let coord = demo["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["kind"] == "coordinator")?;
    let f = &coord["blob_fetches"];
    let n = |k: &str| f[k].as_u64().unwrap_or(0);
    let (corrupt, recovered, failed) = (n("corrupt"), n("recovered"), n("failed"));
    let at: Vec<String> = f["corrupt_at"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some(format!("{} of {}", p[0].as_u64()?, p[1].as_u64()?)))
        .collect();
    Some(RealInvariant {
        name: "corrupt bytes are caught and the blob completed from another holder".into(),
        holds: failed == 0 && (merged == 0 || (corrupt > 0 && recovered > 0)),
        detail: format!(
            "{merged} merged submissions of corrupting providers; the coordinator caught {corrupt} corrupt transfers (bytes received before the bad chunk: {}), completed {recovered} fetches from another holder, failed {failed}; strikes {}",
            if at.is_empty() { "–".into() } else { at.join(", ") },
            f["strikes"]
        ),
    })
}

/// The validators a demo ran with `behaviour` (by node name).
fn validators_behaving(demo: &Value, behaviour: &str) -> Vec<String> {
    demo["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["roles"]["validator_behaviour"] == behaviour)
        .filter_map(|n| n["name"].as_str().map(str::to_owned))
        .collect()
}

/// The validators a demo ran as colluders (by node name).
fn colluders(demo: &Value) -> Vec<String> {
    validators_behaving(demo, "colluding")
}

/// Colluders at or above k (A9): they can release bad work while they hold a quorum, so the
/// shares are not the bound; the bound is the audit. Attackers are paid only in rounds up to the
/// last one whose replay convicted a colluder, at most one round's escrow in all; no convicted
/// validator sits in a later round's pool; every later round pays honest peers ≥ 95 %.
fn bounded_break(demo: &Value, evidence: &[EvidenceSeen]) -> Vec<RealInvariant> {
    let colluders = colluders(demo);
    let convicted_in: BTreeMap<&str, u64> = evidence
        .iter()
        .filter(|e| e.verified && e.kind == "wrong_score" && colluders.contains(&e.accused))
        .filter_map(|e| Some((e.accused.as_str(), e.round?)))
        .fold(BTreeMap::new(), |mut m, (v, r)| {
            let x = m.entry(v).or_insert(r);
            *x = (*x).min(r);
            m
        });
    let last = convicted_in.values().copied().max();
    // Per round: sats locked (paid + refunded) and paid to honest and attacking work.
    let mut per_round: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    for r in demo["rounds"].as_array().into_iter().flatten() {
        let round = r["round"].as_u64().unwrap_or(0);
        let e = per_round.entry(round).or_default();
        for s in r["submissions"].as_array().into_iter().flatten() {
            let paid = s["paid_sat"].as_u64().unwrap_or(0);
            e.0 += paid + s["refunded_sat"].as_u64().unwrap_or(0);
            let behaviour = behaviour_of(demo, s, round);
            if HONEST_WORK.contains(&behaviour.as_str()) {
                e.1 += paid;
            } else {
                e.2 += paid;
            }
        }
    }
    let round_escrow = per_round.values().map(|x| x.0).max().unwrap_or(0);
    let attacker_paid: u64 = per_round.values().map(|x| x.2).sum();
    let paid_late: Vec<String> = per_round
        .iter()
        .filter(|(r, x)| x.2 > 0 && last.is_none_or(|l| **r > l))
        .map(|(r, x)| format!("round {r}: {} sats", x.2))
        .collect();
    let names = names(demo);
    let seated_late: Vec<String> = demo["committees"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let round = c["round"].as_u64().unwrap_or(0);
            c["committee"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| names.get(k.as_str()?))
                .filter(|n| convicted_in.get(n.as_str()).is_some_and(|cr| round > *cr))
                .map(move |n| format!("{n} in round {round}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let later: Vec<(u64, u64)> = per_round
        .iter()
        .filter(|(r, _)| last.is_some_and(|l| **r > l))
        .map(|(_, x)| (x.1, x.1 + x.2))
        .collect();
    let (later_honest, later_total) = later.iter().fold((0, 0), |(h, t), (a, b)| (h + a, t + b));
    let conv = convicted_in
        .iter()
        .map(|(v, r)| format!("{v} in round {r}"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        RealInvariant {
            name: "colluders at k are convicted by the audit's replay".into(),
            holds: !colluders.is_empty() && convicted_in.len() == colluders.len(),
            detail: format!(
                "{} of {} colluders convicted: {}",
                convicted_in.len(),
                colluders.len(),
                if conv.is_empty() { "–".into() } else { conv }
            ),
        },
        RealInvariant {
            name: "the damage is bounded to one round's escrow".into(),
            holds: paid_late.is_empty() && attacker_paid <= round_escrow,
            detail: if paid_late.is_empty() {
                format!(
                    "attackers paid {attacker_paid} sats, all by round {}; one round's escrow is {round_escrow} sats",
                    last.map_or("–".into(), |l| l.to_string())
                )
            } else {
                format!(
                    "attackers paid after the conviction: {}",
                    paid_late.join(", ")
                )
            },
        },
        RealInvariant {
            name: "convicted validators sit in no later committee".into(),
            holds: seated_late.is_empty(),
            detail: if seated_late.is_empty() {
                format!("{} rounds after the conviction", later.len())
            } else {
                seated_late.join(", ")
            },
        },
        RealInvariant {
            name: "after the conviction, honest peers get ≥ 95 % of the sats paid".into(),
            holds: later_total > 0 && later_honest as f64 >= HONEST_SHARE_MIN * later_total as f64,
            detail: format!(
                "{later_honest} of {later_total} sats in {} later round(s)",
                later.len()
            ),
        },
    ]
}

/// Node names by Nostr key (hex).
fn names(demo: &Value) -> BTreeMap<String, String> {
    demo["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            Some((
                n["nostr"].as_str()?.to_owned(),
                n["name"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The evidence the demo's third party (`l402-node evidence`) checked, keys named by node.
fn evidence_seen(demo: &Value) -> Vec<EvidenceSeen> {
    let names = names(demo);
    let name = |k: &Value| {
        k.as_str()
            .map(|k| names.get(k).cloned().unwrap_or_else(|| k.to_owned()))
            .unwrap_or_else(|| "–".into())
    };
    demo["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| EvidenceSeen {
            round: e["round"].as_u64(),
            kind: e["kind"].as_str().unwrap_or("?").to_owned(),
            accused: name(&e["accused"]),
            published_by: name(&e["author"]),
            proves: e["proves"].as_str().unwrap_or("").to_owned(),
            verified: e["verified"] == Value::Bool(true),
        })
        .collect()
}

/// The evidence checks: each corrupted dealing round and each equivocating validator is named
/// in proven evidence, and no proven evidence accuses a node that did not misbehave.
fn evidence_invariants(
    sc: &Scenario,
    rounds: u64,
    demo: &Value,
    evidence: &[EvidenceSeen],
) -> Vec<RealInvariant> {
    let mut out = Vec::new();
    if let Some(e) = demo["evidence"].get("error") {
        out.push(RealInvariant {
            name: "a third party read the evidence on the relay".into(),
            holds: false,
            detail: e.to_string(),
        });
        return out;
    }
    let nodes: Vec<&Value> = demo["nodes"].as_array().into_iter().flatten().collect();
    let proven: Vec<&EvidenceSeen> = evidence.iter().filter(|e| e.verified).collect();
    let faults = dealer_faults(sc, rounds);
    let mut byzantine: BTreeSet<String> = BTreeSet::new();
    if !faults.is_empty() {
        byzantine.insert("coordinator".into());
        let missing: Vec<String> = faults
            .iter()
            .filter(|f| {
                !proven
                    .iter()
                    .any(|e| e.accused == "coordinator" && e.round == Some(f.round))
            })
            .map(ToString::to_string)
            .collect();
        out.push(RealInvariant {
            name: "every corrupted dealing round has proven evidence against the coordinator"
                .into(),
            holds: missing.is_empty(),
            detail: if missing.is_empty() {
                format!(
                    "{} ({} pieces)",
                    faults
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    proven.iter().filter(|e| e.accused == "coordinator").count()
                )
            } else {
                format!("none for {}", missing.join(", "))
            },
        });
    }
    let equivocators: Vec<String> = nodes
        .iter()
        .filter(|n| n["roles"]["validator_behaviour"] == "equivocating")
        .filter_map(|n| n["name"].as_str().map(str::to_owned))
        .collect();
    if !equivocators.is_empty() {
        let missing: Vec<&String> = equivocators
            .iter()
            .filter(|v| {
                !proven
                    .iter()
                    .any(|e| e.kind == "equivocation" && &e.accused == *v)
            })
            .collect();
        out.push(RealInvariant {
            name: "every equivocating validator is named in proven equivocation evidence".into(),
            holds: missing.is_empty(),
            detail: if missing.is_empty() {
                format!(
                    "{} ({} pieces)",
                    equivocators.join(", "),
                    proven.iter().filter(|e| e.kind == "equivocation").count()
                )
            } else {
                format!("none against {missing:?}")
            },
        });
        byzantine.extend(equivocators);
    }
    for behaviour in ["colluding", "lazy"] {
        let cheats = validators_behaving(demo, behaviour);
        if cheats.is_empty() {
            continue;
        }
        let missing: Vec<&String> = cheats
            .iter()
            .filter(|v| {
                !proven
                    .iter()
                    .any(|e| e.kind == "wrong_score" && &e.accused == *v)
            })
            .collect();
        out.push(RealInvariant {
            name: format!("every {behaviour} validator is named in proven wrong-score evidence"),
            holds: missing.is_empty(),
            detail: if missing.is_empty() {
                format!(
                    "{} ({} pieces against them, published by the coordinator's audit)",
                    cheats.join(", "),
                    proven
                        .iter()
                        .filter(|e| e.kind == "wrong_score" && cheats.contains(&e.accused))
                        .count()
                )
            } else {
                format!("none against {missing:?}")
            },
        });
        byzantine.extend(cheats);
    }
    let framed: Vec<String> = proven
        .iter()
        .filter(|e| !byzantine.contains(&e.accused))
        .map(|e| format!("{} accused by {} ({})", e.accused, e.published_by, e.kind))
        .collect();
    let unproven = evidence.len() - proven.len();
    out.push(RealInvariant {
        name: "no proven evidence accuses an honest node; every piece proves what it claims".into(),
        holds: framed.is_empty() && unproven == 0,
        detail: if framed.is_empty() && unproven == 0 {
            format!("{} pieces on the relay, all proven", evidence.len())
        } else {
            format!("{unproven} unproven; {}", framed.join("; "))
        },
    });
    out
}

/// The command that re-runs a real-mode scenario.
pub fn replay_command(path: &Path, rounds: u64, compare_clean: bool) -> String {
    format!(
        "l402-sim run --real {} --rounds {rounds}{}",
        path.display(),
        if compare_clean {
            " --compare-clean"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scenario() -> Scenario {
        Scenario::from_toml(
            "name = \"t\"\nmodes = [\"real\"]\nrounds = 1\n[peers]\nhonest = 1\npoisoners = 1\n[validators]\npool = 3\ncommittee = 3\nk = 2",
        )
        .unwrap()
    }

    fn eval(v: &str) -> Value {
        json!({"verdict": v})
    }

    /// A one-round swarm report as `run_demo` writes it.
    fn demo(merged: &[&str], attacker_paid: u64, terminal: bool) -> Value {
        json!({
            "dir": "/d/swarm",
            "wall_secs": 10.0,
            "genesis_heldout_loss": 5.5,
            "peak_rss_kb": {"demo": 100, "peer-0": 200},
            "rounds": [{"round": 1, "heldout_loss": 5.2, "submissions": [
                {"peer": "peer-0", "behaviour": "honest", "submission": "a", "paid_sat": 100, "refunded_sat": 0,
                 "evaluations": [eval("accept"), eval("accept"), eval("reject: LossIncreased")]},
                {"peer": "peer-1", "behaviour": "sign-flip", "submission": "b", "paid_sat": attacker_paid, "refunded_sat": 100,
                 "evaluations": [eval("reject: LossIncreased"), eval("reject: LossIncreased"), eval("accept")]},
            ]}],
            "checkpoint_checks": [{"round": 1, "ok": true, "merged": merged}],
            "nodes": [
                {"name": "coordinator", "kind": "coordinator", "holds": []},
                {"name": "peer-0", "kind": "honest", "holds": [{"payment_hash": "h", "terminal": terminal}]},
                {"name": "peer-1", "kind": "sign-flip", "holds": []},
            ],
        })
    }

    #[test]
    fn figures_count_quorums_detections_and_shares() {
        let r = figures(&scenario(), 1, &demo(&["a"], 0, true), None);
        assert!(r.ok(), "{:?}", r.invariants);
        let h = &r.by_behaviour["honest"];
        assert_eq!(
            (h.nodes, h.submitted, h.accepted, h.paid_sat),
            (1, 1, 1, 100)
        );
        let p = &r.by_behaviour["sign-flip"];
        assert_eq!((p.rejected, p.refunded_sat), (1, 100));
        assert_eq!(p.detected_by["LossIncreased"], 1);
        assert_eq!(r.merges[0].attested, vec!["a".to_owned()]);
        assert_eq!((r.honest_share, r.attacker_share), (1.0, 0.0));
        assert_eq!(r.holds, (1, 1));
        assert_eq!(r.peak_rss_kb, 300);
        assert!(r
            .to_markdown()
            .contains("| sign-flip | 1 | 1 | 0 | 1 | 0 | 0 | 100 | LossIncreased ×1 |"));
    }

    #[test]
    fn plots_are_written() {
        let mut clean = demo(&["a"], 0, true);
        clean["rounds"][0]["heldout_loss"] = json!(5.1);
        let r = figures(&scenario(), 1, &demo(&["a"], 0, true), Some(&clean));
        let dir = tempfile::tempdir().unwrap();
        r.plots(dir.path()).unwrap();
        for f in ["loss.svg", "sats.svg"] {
            let svg = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("sign-flip") == (f == "sats.svg"),
                "{f}"
            );
        }
    }

    #[test]
    fn figures_flag_a_paid_attacker_a_wrong_merge_and_an_open_hold() {
        let r = figures(&scenario(), 1, &demo(&["a", "b"], 50, false), None);
        let broken: Vec<&str> = r
            .invariants
            .iter()
            .filter(|i| !i.holds)
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(broken.len(), 4, "{broken:?}");
        assert!(r.attacker_share > 0.3);
    }

    #[test]
    fn a_loss_gap_over_five_percent_fails() {
        let mut clean = demo(&["a"], 0, true);
        clean["rounds"][0]["heldout_loss"] = json!(4.8);
        let r = figures(&scenario(), 1, &demo(&["a"], 0, true), Some(&clean));
        let gap = r.invariants.last().unwrap();
        assert!(!gap.holds && gap.detail.contains("+8.33 %"), "{gap:?}");
        // The heatmap's real column reads the report as a `--real-report` file is read.
        let cell = crate::heatmap::real_cell(&serde_json::to_value(&r).unwrap()).unwrap();
        assert!((cell.loss_gap - 0.4 / 4.8).abs() < 1e-9, "{cell:?}");
        assert_eq!((cell.share_pct, cell.invariants_hold), (50, false));
    }

    #[test]
    fn a_corrupting_providers_work_is_honest_and_its_bytes_must_be_caught() {
        let mut d = demo(&["a", "b"], 100, true);
        d["rounds"][0]["submissions"][1]["behaviour"] = json!("corrupting-provider");
        d["rounds"][0]["submissions"][1]["evaluations"] = json!([eval("accept"), eval("accept")]);
        d["nodes"][2]["kind"] = json!("corrupting-provider");
        d["nodes"][0]["blob_fetches"] = json!({"corrupt": 1, "recovered": 1, "failed": 0, "corrupt_at": [[300, 600]], "strikes": {"ab": 1}});
        let r = figures(&scenario(), 1, &d, None);
        assert!(r.ok(), "{:?}", r.invariants);
        assert_eq!(r.honest_share, 1.0, "its sats count as honest work");
        let c = r
            .invariants
            .iter()
            .find(|i| i.name.starts_with("corrupt"))
            .unwrap();
        assert!(c.detail.contains("300 of 600"), "{c:?}");
        // Merged, but the coordinator never caught a corrupt transfer: the check fails.
        d["nodes"][0]["blob_fetches"] = json!({"corrupt": 0, "recovered": 0, "failed": 0});
        assert!(!figures(&scenario(), 1, &d, None).ok());
    }

    #[test]
    fn dealer_faults_spread_over_the_rounds() {
        use crate::scenario::DealerFault as F;
        let mut sc = scenario();
        sc.faults.dealer = F::Mixed;
        sc.faults.dealer_rounds = 1.0;
        let f: Vec<String> = dealer_faults(&sc, 3)
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(
            f,
            [
                "1:wrong-share",
                "2:garbage-ciphertext",
                "3:wrong-payment-hash"
            ]
        );
        sc.faults.dealer = F::WrongShare;
        sc.faults.dealer_rounds = 0.5;
        let rounds: Vec<u64> = dealer_faults(&sc, 5).iter().map(|f| f.round).collect();
        assert_eq!(rounds, [2, 4]);
        sc.faults.dealer = F::None;
        assert!(dealer_faults(&sc, 5).is_empty());
    }

    #[test]
    fn evidence_must_name_exactly_the_cheaters() {
        use crate::scenario::DealerFault as F;
        let mut sc = scenario();
        sc.faults.dealer = F::WrongShare;
        sc.faults.dealer_rounds = 1.0;
        let mut d = demo(&["a"], 0, true);
        d["nodes"][0]["nostr"] = json!("c0");
        d["nodes"][1]["nostr"] = json!("p0");
        d["nodes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "validator-0", "kind": "validator", "nostr": "v0", "roles": {"validator_behaviour": "equivocating"}, "holds": []}));
        let piece = |kind: &str, accused: &str, author: &str, verified: bool| json!({"round": 1, "kind": kind, "accused": accused, "author": author, "proves": "x", "verified": verified});
        d["evidence"] = json!([
            piece("bad_share", "c0", "v0", true),
            piece("equivocation", "v0", "c0", true),
        ]);
        let r = figures(&sc, 1, &d, None);
        assert!(r.ok(), "{:?}", r.invariants);
        assert_eq!(r.evidence[0].accused, "coordinator");
        assert!(r
            .to_markdown()
            .contains("| 1 | equivocation | validator-0 | coordinator | proven (x) |"));
        // A proven piece against an honest peer, an unproven piece, and no evidence for the
        // corrupted round each fail.
        d["evidence"] = json!([
            piece("equivocation", "v0", "c0", true),
            piece("bad_share", "p0", "v0", true),
            piece("bad_share", "c0", "v0", false),
        ]);
        let r = figures(&sc, 1, &d, None);
        let broken: Vec<&str> = r
            .invariants
            .iter()
            .filter(|i| !i.holds)
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(broken.len(), 2, "{broken:?}");
    }

    #[test]
    fn colluders_at_k_are_held_to_the_bounded_break_and_crashes_to_their_restarts() {
        let mut sc = scenario();
        sc.validators.colluding = 2;
        let sub = |peer: &str, b: &str, id: &str, paid: u64, refunded: u64| json!({"peer": peer, "behaviour": b, "submission": id, "paid_sat": paid, "refunded_sat": refunded, "evaluations": [eval("accept"), eval("accept")]});
        let two_rounds = |late_attacker: u64, committee2: &[&str]| {
            let mut d = demo(&["a"], 100, true);
            d["rounds"] = json!([
                {"round": 1, "heldout_loss": 5.2, "submissions": [sub("peer-0", "honest", "a", 0, 100), sub("peer-1", "sign-flip", "b", 100, 0)]},
                {"round": 2, "heldout_loss": 5.0, "submissions": [sub("peer-0", "honest", "c", 100, 0), sub("peer-1", "sign-flip", "d", late_attacker, 100 - late_attacker)]},
            ]);
            d["checkpoint_checks"] = json!([
                {"round": 1, "ok": true, "merged": ["a", "b"]},
                {"round": 2, "ok": true, "merged": ["c", "d"]},
            ]);
            d["committees"] = json!([{"round": 1, "committee": ["v0", "v1", "v2"]}, {"round": 2, "committee": committee2}]);
            for (i, b) in ["colluding", "colluding", "honest"].iter().enumerate() {
                d["nodes"].as_array_mut().unwrap().push(json!({"name": format!("validator-{i}"), "kind": "validator", "nostr": format!("v{i}"), "roles": {"validator_behaviour": b}, "holds": []}));
            }
            let piece = |accused: &str| json!({"round": 1, "kind": "wrong_score", "accused": accused, "author": "c0", "proves": "x", "verified": true});
            d["evidence"] = json!([piece("v0"), piece("v1")]);
            d
        };
        let r = figures(&sc, 2, &two_rounds(0, &["v2"]), None);
        let broken = |r: &RealReport| -> Vec<String> {
            r.invariants
                .iter()
                .filter(|i| !i.holds)
                .map(|i| i.name.clone())
                .collect()
        };
        assert!(broken(&r).is_empty(), "{:?}", r.invariants);
        // Paid after the conviction, or a convicted validator drawn again: the break is not
        // bounded.
        let r = figures(&sc, 2, &two_rounds(100, &["v2"]), None);
        assert!(broken(&r).contains(&"the damage is bounded to one round's escrow".to_owned()));
        let r = figures(&sc, 2, &two_rounds(0, &["v0", "v2"]), None);
        assert_eq!(
            broken(&r),
            vec!["convicted validators sit in no later committee"]
        );
        // Crashes: both kills must be on record.
        sc.faults.crash = 0.1;
        let mut d = two_rounds(0, &["v2"]);
        let r = figures(&sc, 2, &d, None);
        assert_eq!(
            broken(&r),
            vec!["SIGKILLed nodes restarted from their data dirs and the run went on"]
        );
        d["restarts"] = json!([{"node": "peer-0", "round": 1, "escrow_at_kill": "held"}, {"node": "coordinator", "round": 2, "escrow_at_kill": "locked"}]);
        assert!(figures(&sc, 2, &d, None).ok());
    }

    #[test]
    fn swarm_args_map_the_scenario_and_refuse_what_real_mode_lacks() {
        let exe = NodeExe {
            path: "x".into(),
            prefix: vec![],
        };
        let a = swarm_args(&scenario(), 2, "/d".into(), exe.clone()).unwrap();
        assert_eq!(
            (a.peers, a.sign_flips, a.validators, a.k, a.committee),
            (2, 1, 3, 2, Some(3))
        );
        assert_eq!(a.behaviours().unwrap(), vec!["honest", "sign-flip"]);
        let mut sc = scenario();
        sc.peers.sybils = 2;
        assert!(swarm_args(&sc, 2, "/d".into(), exe.clone()).is_err());
        let mut fast = scenario();
        fast.modes = vec![Mode::Fast];
        assert!(swarm_args(&fast, 2, "/d".into(), exe).is_err());
    }
}
