//! Scenario files: who takes part in a simulated run, how they misbehave, and the network and
//! fault knobs. Scenarios are TOML (`sim/scenarios/*.toml`); every section and field is optional
//! except `name`, unknown fields are an error.
//!
//! Spec: specs/L2T-12-sim.md#scenario-files

use std::path::Path;

use l402_protocol::escrow::MAX_VALIDATORS;
use l402_protocol::events::L402Kind;
use serde::{Deserialize, Serialize};

/// Most honest + adversarial peers (including Sybil identities) in one scenario.
pub const MAX_PEERS: usize = 10_000;
/// Most rounds in one run (every stored event is kept until the end-of-run checks: about
/// 0.5 MB per round for a dozen nodes).
pub const MAX_ROUNDS: u64 = 1_000;
/// Largest scenario file accepted, in bytes.
pub const MAX_SCENARIO_BYTES: u64 = 1024 * 1024;

/// Error loading or checking a scenario.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_SCENARIO_BYTES`].
    #[error("{path} is larger than {MAX_SCENARIO_BYTES} bytes")]
    TooLarge {
        /// File.
        path: String,
    },
    /// Not valid scenario TOML (syntax, unknown field, wrong type).
    #[error("parsing scenario: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range or inconsistent with another.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// The run's thread pool could not be started.
    #[error("starting {threads} simulation threads: {source}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// Cause.
        source: rayon::ThreadPoolBuildError,
    },
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError::Invalid(msg.into()))
}

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (shown in reports).
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Rounds to simulate (`--rounds` overrides).
    #[serde(default = "d_rounds")]
    pub rounds: u64,
    /// Default seed (`--seed` / `L2T_SEED` override).
    #[serde(default)]
    pub seed: u64,
    /// Simulated Nostr relays.
    #[serde(default)]
    pub network: NetworkConfig,
    /// Round timeline, blocks, ticks and latencies.
    #[serde(default)]
    pub timing: TimingConfig,
    /// Reward schedule and prices.
    #[serde(default)]
    pub escrow: EscrowConfig,
    /// Validator pool, committee and Byzantine validators.
    #[serde(default)]
    pub validators: ValidatorConfig,
    /// Honest and adversarial workers.
    #[serde(default)]
    pub peers: PeerConfig,
    /// Crashes and a dishonest dealer.
    #[serde(default)]
    pub faults: FaultConfig,
    /// The fast mode's held-out loss model (defaults calibrated on real mode).
    #[serde(default)]
    pub loss: crate::world::FakeLossModel,
    /// The modes this scenario supports (default: `["fast"]`); `l402-sim run --real` needs
    /// `"real"`.
    #[serde(default = "d_modes")]
    pub modes: Vec<Mode>,
}

fn d_modes() -> Vec<Mode> {
    vec![Mode::Fast]
}

/// How a scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The seeded in-memory world (`engine`).
    Fast,
    /// Real `l402-node up` processes on a regtest chain and an embedded relay (`real`).
    Real,
}

fn d_rounds() -> u64 {
    10
}

/// The simulated relay network (`world::FakeRelays`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Number of relays every node publishes to and reads from.
    pub relays: usize,
    /// Probability that a relay's live push of an event to one subscriber is lost (the
    /// subscriber's periodic re-sync fetches it from the relay's store later).
    pub drop: f64,
    /// Probability that a live push is delivered twice.
    pub duplicate: f64,
    /// Live pushes are delayed uniformly in `0..=max_delay_secs`.
    pub max_delay_secs: u64,
    /// Nodes re-query every relay for stored events they have not seen, this often.
    pub resync_secs: u64,
    /// How many of the relays censor (the first ones).
    pub censoring: usize,
    /// Kinds the censoring relays neither store nor serve: `submission`, `escrow-offer`,
    /// `escrow-lock`, `attestation`, `checkpoint`, `evidence`, `round-open`.
    pub censor_kinds: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            relays: 3,
            drop: 0.02,
            duplicate: 0.02,
            max_delay_secs: 3,
            resync_secs: 20,
            censoring: 0,
            censor_kinds: Vec::new(),
        }
    }
}

/// Round timeline (seconds after the round open), blocks and latencies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimingConfig {
    /// Submissions close.
    pub submit_secs: u64,
    /// Escrows must be locked and attestations published by then.
    pub attest_secs: u64,
    /// Regular tranches are claimed or failed back by then.
    pub claim_secs: u64,
    /// Holdback re-evaluation starts (0 = no holdback tranche).
    pub reeval_secs: u64,
    /// Holdback attestations close.
    pub holdback_attest_secs: u64,
    /// The holdback tranche is claimed or failed back by then.
    pub holdback_claim_secs: u64,
    /// Seconds per simulated block.
    pub block_secs: u64,
    /// Blocks between a tranche's claim deadline and its HTLC expiry (the node's CLTV margin).
    pub cltv_margin_blocks: u64,
    /// Every node gets a clock tick this often.
    pub tick_secs: u64,
    /// Evaluations take `1..=eval_delay_secs`.
    pub eval_delay_secs: u64,
    /// Lightning operations (invoice, HTLC arrival, settle) take `0..=ln_delay_secs`.
    pub ln_delay_secs: u64,
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            submit_secs: 100,
            attest_secs: 200,
            claim_secs: 300,
            reeval_secs: 250,
            holdback_attest_secs: 400,
            holdback_claim_secs: 500,
            block_secs: 30,
            cltv_margin_blocks: 6,
            tick_secs: 5,
            eval_delay_secs: 20,
            ln_delay_secs: 3,
        }
    }
}

/// Reward schedule: `linear_schedule(pool, tranches, target, holdback)` per submission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscrowConfig {
    /// Reward pool per submission, in sats.
    pub pool_sats: u64,
    /// Regular tranches (1–7).
    pub tranches: usize,
    /// Score (millionths of loss reduction) that earns the whole regular pool.
    pub target_score: i64,
    /// Share of the pool held back for the re-evaluation, in ppm (needs `reeval_secs > 0`).
    pub holdback_ppm: u32,
    /// L402 price of one submission token, in sats.
    pub submission_price_sats: u64,
    /// Starting balance of every worker, in sats (tokens are paid from it).
    pub worker_balance_sats: u64,
    /// The coordinator's declared cap on submissions per round (`RoundOpen.max_submissions`);
    /// 0: no cap. Beyond it submissions are refused and their tolls refunded.
    pub max_submissions: u32,
}

impl Default for EscrowConfig {
    fn default() -> Self {
        Self {
            pool_sats: 40_000,
            tranches: 3,
            target_score: 30_000,
            holdback_ppm: 250_000,
            submission_price_sats: 10,
            worker_balance_sats: 100_000,
            max_submissions: 0,
        }
    }
}

/// Validators: the opted-in pool, the committee drawn per round, and the Byzantine ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidatorConfig {
    /// Opted-in validators (lazy and colluding ones included).
    pub pool: usize,
    /// Committee size `n` (shrinks to the pool if validators are excluded).
    pub committee: usize,
    /// Draw a committee of `n` per submission from the whole pool (the coordinator's VRF,
    /// L2T-04), instead of one committee of `n` per round.
    pub per_submission: bool,
    /// Quorum `k`.
    pub k: usize,
    /// Honest validators' score noise: uniform in `±noise` millionths, per (eval seed, key).
    pub noise: i64,
    /// Lazy validators: attest "accept" with `lazy_score` without evaluating.
    pub lazy: usize,
    /// The constant score lazy validators attest.
    pub lazy_score: i64,
    /// Colluding validators: accept every adversary's submission with a top score, reject every
    /// honest one.
    pub colluding: usize,
    /// Equivocating validators: evaluate honestly, then also sign and publish the
    /// opposite verdict for the same evaluation; the coordinator drops both and publishes the
    /// pair as evidence.
    pub equivocating: usize,
    /// Leave validators named in the coordinator's wrong-score evidence (its replay of a
    /// disputed evaluation contradicts their signed score, L2T-04 §audit) out of the following
    /// rounds' pools, as `l402-node` always does (SAFETY.md H10). Fast mode only: `false` shows
    /// what the colluders do without it; real nodes have no switch.
    pub audit: bool,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            pool: 5,
            committee: 5,
            per_submission: false,
            k: 3,
            noise: 40,
            lazy: 0,
            lazy_score: 30_000,
            colluding: 0,
            equivocating: 0,
            audit: true,
        }
    }
}

/// How a poisoner corrupts its update (test-matrix A3, A4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, tag = "kind")]
pub enum PoisonKind {
    /// The honest update times `lambda` (λ = −1, 10, 1000 …).
    Scaled {
        /// Scale factor.
        lambda: f64,
    },
    /// The negated honest update.
    #[default]
    SignFlip,
    /// Gaussian noise with standard deviation `sigma` (relative to the honest update's norm).
    Noise {
        /// Noise level.
        sigma: f64,
    },
}

/// Workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerConfig {
    /// Honest peers.
    pub honest: usize,
    /// Mean true quality of an honest update (millionths of loss reduction); each update draws
    /// uniformly in `[quality/2, 3·quality/2]`.
    pub quality: i64,
    /// Free-riders: resubmit another peer's blob hash under their own key (A1).
    pub free_riders: usize,
    /// Poisoners: submit a corrupted update (A3, A4).
    pub poisoners: usize,
    /// How poisoners corrupt.
    pub poison: PoisonKind,
    /// Replayers: re-inject old rounds' signed events (A2).
    pub replayers: usize,
    /// Old events each replayer injects per round.
    pub replays_per_round: usize,
    /// Sybil identities submitting junk (A6).
    pub sybils: usize,
    /// Copycats: submit a seen honest update plus noise under a new blob hash.
    pub copycats: usize,
    /// ALIE colluders: submit mean − z·σ of the honest updates they saw.
    pub alie: usize,
    /// Stale trainers: train on round r − 2's checkpoint.
    pub stale: usize,
    /// Mixed attackers: rotate through free-rider (a zero update), copycat + noise, sign-flip
    /// and ALIE, one attack per round (the node's rotation, in both modes).
    pub mixed: usize,
    /// Corrupting providers (A12): train honestly, but serve their blob with a flipped byte to
    /// everyone except their committee — the coordinator's merge fetch must catch it and
    /// complete from a validator that holds the verified bytes.
    pub corrupting: usize,
    /// Fraction of Sybils that pay for their L402 token (the rest forge one).
    pub sybil_paid_fraction: f64,
}

impl PeerConfig {
    /// Every worker: honest peers and each kind of Byzantine one.
    pub fn workers(&self) -> usize {
        self.honest
            + self.free_riders
            + self.poisoners
            + self.sybils
            + self.replayers
            + self.copycats
            + self.alie
            + self.stale
            + self.mixed
            + self.corrupting
    }
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            honest: 6,
            quality: 30_000,
            free_riders: 0,
            poisoners: 0,
            poison: PoisonKind::default(),
            replayers: 0,
            replays_per_round: 5,
            sybils: 0,
            copycats: 0,
            alie: 0,
            stale: 0,
            mixed: 0,
            corrupting: 0,
            sybil_paid_fraction: 0.5,
        }
    }
}

/// How a dishonest dealer corrupts its escrow dealings (A10, via
/// `CoordinatorConfig::dealing_corruption`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DealerFault {
    /// Honest dealer.
    #[default]
    None,
    /// One validator's share is wrong (the validator publishes a complaint).
    WrongShare,
    /// One validator's ciphertext is garbage (complaint).
    GarbageCiphertext,
    /// The payment hash does not match the shared secret (the worker publishes evidence).
    WrongPaymentHash,
    /// A random one of the three per corrupted round.
    Mixed,
}

/// Crashes and a dishonest dealer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Probability that a node crashes right after persisting its state for one input (the
    /// input's actions are lost); it restarts from the persisted bytes and resumes.
    pub crash: f64,
    /// A crashed node stays down `1..=max_downtime_secs` (events reach it after the restart).
    pub max_downtime_secs: u64,
    /// Dealer misbehaviour.
    pub dealer: DealerFault,
    /// Fraction of rounds the dealer corrupts.
    pub dealer_rounds: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            crash: 0.0,
            max_downtime_secs: 20,
            dealer: DealerFault::None,
            dealer_rounds: 1.0,
        }
    }
}

/// Kind names accepted in `censor_kinds`.
pub fn kind_by_name(name: &str) -> Option<L402Kind> {
    Some(match name {
        "round-open" => L402Kind::RoundOpen,
        "submission" => L402Kind::Submission,
        "escrow-offer" => L402Kind::EscrowOffer,
        "escrow-lock" => L402Kind::EscrowLock,
        "attestation" => L402Kind::Attestation,
        "checkpoint" => L402Kind::Checkpoint,
        "evidence" => L402Kind::Evidence,
        "submission-refusal" => L402Kind::SubmissionRefusal,
        _ => return None,
    })
}

fn prob(name: &str, p: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        invalid(format!("{name} must be a probability in [0, 1], got {p}"))
    }
}

impl Scenario {
    /// Parse and check a scenario from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Read, parse and check a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let p = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| ScenarioError::Io {
            path: p.clone(),
            source,
        })?;
        if meta.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError::TooLarge { path: p });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Io { path: p, source })?;
        Self::from_toml(&text)
    }

    /// The same scenario with every adversary removed (the attack-free baseline): no
    /// free-riders, poisoners, replayers, Sybils, lazy or colluding validators, no dishonest
    /// dealer, no censoring relay. Crashes and network faults stay.
    pub fn without_adversaries(&self) -> Self {
        let mut s = self.clone();
        s.name = format!("{} (no adversaries)", self.name);
        s.peers.free_riders = 0;
        s.peers.poisoners = 0;
        s.peers.replayers = 0;
        s.peers.sybils = 0;
        s.peers.copycats = 0;
        s.peers.alie = 0;
        s.peers.stale = 0;
        s.peers.mixed = 0;
        s.peers.corrupting = 0;
        s.validators.lazy = 0;
        s.validators.colluding = 0;
        s.validators.equivocating = 0;
        s.faults.dealer = DealerFault::None;
        s.network.censoring = 0;
        s
    }

    /// Whether this scenario runs in `mode`: listed in `modes`, and using only what that mode
    /// simulates. Real mode runs
    /// peer attacks (free-riders, sign-flip poisoners, copycats, ALIE, stale trainers) and
    /// colluding validators below `k` on one embedded relay, and not yet replayers, Sybils,
    /// lazy validators, colluders at `k` or above, a dishonest dealer, crashes or the
    /// relay-network knobs.
    pub fn check_mode(&self, mode: Mode) -> Result<(), ScenarioError> {
        if !self.modes.contains(&mode) {
            return invalid(format!(
                "scenario {:?} does not support {mode:?} mode (modes = {:?})",
                self.name, self.modes
            ));
        }
        let p = &self.peers;
        let unsupported: Vec<&str> = match mode {
            Mode::Fast => Vec::new(),
            Mode::Real => {
                let mut u: Vec<&str> =
                    [("peers.replayers", p.replayers), ("peers.sybils", p.sybils)]
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(k, _)| k)
                        .collect();
                if p.poisoners > 0 && p.poison != PoisonKind::SignFlip {
                    u.push("peers.poison other than sign-flip");
                }
                u
            }
        };
        if !unsupported.is_empty() {
            return invalid(format!(
                "{mode:?} mode does not simulate {}",
                unsupported.join(", ")
            ));
        }
        Ok(())
    }

    /// Check ranges and consistency.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.is_empty() {
            return invalid("name is empty");
        }
        if self.rounds == 0 || self.rounds > MAX_ROUNDS {
            return invalid(format!("rounds must be 1..={MAX_ROUNDS}"));
        }
        self.loss.check().map_err(ScenarioError::Invalid)?;
        let n = &self.network;
        if n.relays == 0 || n.relays > 64 {
            return invalid("network.relays must be 1..=64");
        }
        if n.censoring >= n.relays {
            return invalid("network.censoring must leave at least one honest relay");
        }
        prob("network.drop", n.drop)?;
        prob("network.duplicate", n.duplicate)?;
        if n.resync_secs == 0 {
            return invalid("network.resync_secs must be positive");
        }
        for k in &n.censor_kinds {
            if kind_by_name(k).is_none() {
                return invalid(format!("network.censor_kinds: unknown kind {k:?}"));
            }
        }
        let t = &self.timing;
        if !(0 < t.submit_secs && t.submit_secs < t.attest_secs && t.attest_secs < t.claim_secs) {
            return invalid("timing: need 0 < submit_secs < attest_secs < claim_secs");
        }
        let margin = l402_protocol::round::CLAIM_SAFETY_MARGIN_SECS;
        if t.claim_secs <= t.attest_secs + margin {
            return invalid(
                "timing: claim_secs must leave more than the claim margin after attest_secs",
            );
        }
        if t.reeval_secs > 0
            && !(t.attest_secs <= t.reeval_secs
                && t.reeval_secs < t.holdback_attest_secs
                && t.holdback_attest_secs + margin < t.holdback_claim_secs)
        {
            return invalid(
                "timing: need attest_secs <= reeval_secs < holdback_attest_secs and more than \
                 the claim margin before holdback_claim_secs",
            );
        }
        if t.block_secs == 0 || t.tick_secs == 0 || t.eval_delay_secs == 0 {
            return invalid("timing: block_secs, tick_secs and eval_delay_secs must be positive");
        }
        if t.eval_delay_secs + n.max_delay_secs * 4 + t.ln_delay_secs * 4 >= t.attest_secs {
            return invalid("timing: latencies leave no time to attest");
        }
        let e = &self.escrow;
        if e.pool_sats == 0 || !(1..=7).contains(&e.tranches) || e.target_score <= 0 {
            return invalid("escrow: need pool_sats > 0, tranches 1..=7, target_score > 0");
        }
        if e.holdback_ppm >= 1_000_000 {
            return invalid("escrow.holdback_ppm must be below 1 000 000");
        }
        if (e.holdback_ppm > 0) != (t.reeval_secs > 0) {
            return invalid("escrow.holdback_ppm > 0 exactly when timing.reeval_secs > 0");
        }
        let v = &self.validators;
        if v.k == 0 || v.k > v.committee || v.committee > v.pool || v.pool > MAX_VALIDATORS * 4 {
            return invalid("validators: need 1 <= k <= committee <= pool");
        }
        if v.committee > MAX_VALIDATORS {
            return invalid(format!("validators.committee must be <= {MAX_VALIDATORS}"));
        }
        if v.lazy + v.colluding + v.equivocating > v.pool {
            return invalid("validators: lazy + colluding + equivocating exceed the pool");
        }
        if v.noise < 0 {
            return invalid("validators.noise must be >= 0");
        }
        let p = &self.peers;
        let workers = p.workers();
        if workers == 0 || workers > MAX_PEERS {
            return invalid(format!("peers: 1..={MAX_PEERS} workers in total"));
        }
        if p.quality <= 0 {
            return invalid("peers.quality must be positive");
        }
        prob("peers.sybil_paid_fraction", p.sybil_paid_fraction)?;
        match p.poison {
            PoisonKind::Scaled { lambda } if !lambda.is_finite() => {
                return invalid("peers.poison.lambda must be finite")
            }
            PoisonKind::Noise { sigma } if !(sigma.is_finite() && sigma > 0.0) => {
                return invalid("peers.poison.sigma must be positive")
            }
            _ => {}
        }
        if self.modes.is_empty() {
            return invalid("modes: name at least one of fast, real");
        }
        let f = &self.faults;
        prob("faults.crash", f.crash)?;
        prob("faults.dealer_rounds", f.dealer_rounds)?;
        if f.crash > 0.0 && f.max_downtime_secs == 0 {
            return invalid("faults.max_downtime_secs must be positive with crashes");
        }
        if f.max_downtime_secs * 2 >= l402_protocol::round::CLAIM_SAFETY_MARGIN_SECS + t.tick_secs
            && f.crash > 0.0
        {
            return invalid("faults.max_downtime_secs must stay under half the claim margin");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::from_toml("name = \"x\"").unwrap();
        assert_eq!(s.rounds, 10);
        assert_eq!(s.validators.k, 3);
        assert_eq!(s.peers.honest, 6);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_typed_errors() {
        assert!(matches!(
            Scenario::from_toml("name = \"x\"\nbogus = 1"),
            Err(ScenarioError::Toml(_))
        ));
        assert!(matches!(
            Scenario::from_toml("name = \"x\"\n[validators]\nk = 9"),
            Err(ScenarioError::Invalid(_))
        ));
        assert!(matches!(
            Scenario::from_toml("name = \"x\"\n[network]\nrelays = 2\ncensoring = 2"),
            Err(ScenarioError::Invalid(_))
        ));
        assert!(matches!(
            Scenario::from_toml("name = \"x\"\n[network]\ncensor_kinds = [\"bogus\"]"),
            Err(ScenarioError::Invalid(_))
        ));
        assert!(matches!(
            Scenario::from_toml(
                "name = \"x\"\n[peers]\npoison = { kind = \"noise\", sigma = -1.0 }"
            ),
            Err(ScenarioError::Invalid(_))
        ));
    }

    #[test]
    fn poison_kinds_parse() {
        let s = Scenario::from_toml(
            "name = \"x\"\n[peers]\npoisoners = 2\npoison = { kind = \"scaled\", lambda = 10.0 }",
        )
        .unwrap();
        assert_eq!(s.peers.poison, PoisonKind::Scaled { lambda: 10.0 });
    }
}
