//! The node's configuration (`<data_dir>/l402.toml`) and keys (`<data_dir>/keys.toml`), as
//! `l402-node init` writes them and `l402-node up` reads them.
//!
//! One Nostr key is the node's identity in every role; the iroh key and the Lightning seed are
//! bound to it by the node announcement (L2T-01). Keys are generated from the OS RNG at `init`
//! and never leave the data dir (written with mode 0600).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the configuration inside the data dir.
pub const CONFIG_FILE: &str = "l402.toml";
/// File name of the keys inside the data dir.
pub const KEYS_FILE: &str = "keys.toml";

/// Errors reading or writing the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file does not parse.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `init` would overwrite existing keys.
    #[error("{0} exists: refusing to overwrite a node's keys")]
    Exists(PathBuf),
}

/// The node's secret keys.
#[derive(Clone, Serialize, Deserialize)]
pub struct NodeKeys {
    /// Nostr secret key (hex): the node's identity.
    pub nostr: String,
    /// iroh endpoint secret key (hex, ed25519).
    pub iroh: String,
    /// Lightning seed (hex, 64 bytes).
    pub lightning_seed: String,
}

impl NodeKeys {
    /// The node's Nostr keys, from [`NodeKeys::nostr`].
    pub fn nostr_keys(&self) -> Result<nostr_sdk::prelude::Keys, nostr_sdk::nostr::key::Error> {
        nostr_sdk::prelude::Keys::parse(&self.nostr)
    }
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKeys(..)")
    }
}

/// The coordinator role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorRole {
    /// Run id (the run announcement's `d` tag).
    pub run: String,
    /// Rounds to run, then stop opening new ones.
    pub rounds: u64,
    /// Committee size n.
    pub n: u32,
    /// Quorum k.
    pub k: u32,
    /// Reward pool of each accepted submission, in sats, split into tranches.
    pub pool_sats: u64,
    /// Regular tranches per submission.
    pub tranches: u32,
    /// Score (millionths of relative held-out improvement) the top tranche needs.
    pub target_score: i64,
    /// Price of a submission token, in sats.
    pub submission_price_sats: u64,
    /// Most submissions a round takes (declared in each round open); beyond it a submission is
    /// refused in a signed event and its toll refunded. The default keeps the coordinator's
    /// persisted round state well under `MAX_STATE_BYTES`.
    #[serde(default = "default_max_submissions")]
    pub max_submissions: u32,
    /// Seconds from a round's open to its submit deadline.
    pub submit_secs: u64,
    /// Seconds from the open to the attest deadline.
    pub attest_secs: u64,
    /// Seconds from the open to the claim deadline (minutes, not hours: long-held HTLCs are
    /// jamming to routing nodes).
    pub claim_secs: u64,
    /// Seed of the genesis checkpoint.
    pub genesis_seed: u64,
    /// Open the first round only after `POST /admin/start` (the demo opens channels first).
    #[serde(default)]
    pub wait_for_start: bool,
    /// Run the example autoresearch bounty instead of training: the run id is the bounty id,
    /// `pool_sats` the bounty's whole pool, `tranches` (at most 4) its split, `target_score` the
    /// improvement (millionths of the metric) that earns the whole pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounty: Option<BountyTerms>,
    /// Byzantine coordinator for the simulator's real mode: the rounds whose escrow dealings it
    /// corrupts, and how (`l402_protocol::round::CoordinatorConfig::dealing_corruption`, the
    /// same injection point as the fast mode's dishonest dealer). Empty: honest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dealer_faults: Vec<DealingFaultAt>,
}

/// A round whose dealings a Byzantine coordinator corrupts (`init --dealer-fault ROUND:KIND`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DealingFaultAt {
    /// The round.
    pub round: u64,
    /// What is wrong with each of its dealings.
    pub kind: DealingFault,
}

/// How a Byzantine dealer corrupts a dealing (test-matrix A10 a).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DealingFault {
    /// The first committee member's share is off by one (its Feldman check fails: it publishes
    /// a bad-share complaint).
    WrongShare,
    /// The first committee member's ciphertext is random bytes (it cannot decrypt it: it
    /// publishes a bad-share complaint).
    GarbageCiphertext,
    /// The payment hash does not match the shared secret (the worker reconstructs a secret
    /// that does not open the hash, fails the HTLC back and publishes it as evidence).
    WrongPaymentHash,
}

impl DealingFault {
    /// The protocol's corruption of a dealing.
    pub fn corruption(self) -> l402_protocol::escrow::Corruption {
        use l402_protocol::escrow::Corruption;
        match self {
            Self::WrongShare => Corruption::WrongShare(0),
            Self::GarbageCiphertext => Corruption::GarbageCiphertext(0),
            Self::WrongPaymentHash => Corruption::WrongPaymentHash,
        }
    }
}

impl std::fmt::Display for DealingFaultAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let kind = self
            .kind
            .to_possible_value()
            .map(|v| v.get_name().to_owned());
        write!(f, "{}:{}", self.round, kind.unwrap_or_default())
    }
}

impl std::str::FromStr for DealingFaultAt {
    type Err = String;

    /// `ROUND:KIND`, e.g. `2:wrong-share`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use clap::ValueEnum;
        let (round, kind) = s
            .split_once(':')
            .ok_or_else(|| format!("{s}: expected ROUND:KIND"))?;
        let round = round.parse().map_err(|e| format!("{s}: bad round: {e}"))?;
        let kind = DealingFault::from_str(kind, false)?;
        Ok(Self { round, kind })
    }
}

/// The terms of a sponsored bounty beyond the run's (L2T-13).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BountyTerms {
    /// A diff must beat the leader by this much (millionths of the metric) to earn anything.
    pub margin: i64,
    /// Parts per million of each award held back until the re-evaluation on fresh seeds.
    pub holdback_ppm: u32,
    /// Seconds from a round's open to the re-evaluation; its attestations and claims follow
    /// 60 and 100 seconds later.
    pub reeval_secs: u64,
}

/// The default declared cap on submissions per round: a coordinator's persisted round state
/// grows by about 16 KiB per submission (offer, lock, attestations), so 500 stay near half of
/// `l402_protocol::round::MAX_STATE_BYTES`.
pub const DEFAULT_MAX_SUBMISSIONS: u32 = 500;

/// The reward pool of each accepted submission `init` writes for a training coordinator, in sats.
pub const DEFAULT_POOL_SATS: u64 = 100_000;

fn default_max_submissions() -> u32 {
    DEFAULT_MAX_SUBMISSIONS
}

/// The peer role.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeerRole {
    /// Runs to join (empty: every announced run).
    #[serde(default)]
    pub runs: Vec<String>,
    /// Demo behaviour: `honest` (default), `free-rider` (submits a zero update), `copier`
    /// (submits a copy of another peer's blob, handed over as a leak would be), and the
    /// simulator's real-mode attacks (`crate::train::attack`): `sign-flip` (the negated
    /// update), `copycat-noise` (a leaked blob plus noise), `alie` (mean − z·σ of the leaked
    /// honest blobs), `stale` (trains on round r − 2's checkpoint), `corrupting-provider`
    /// (trains honestly; its blob service flips a byte for everyone but its committee,
    /// `crate::blobs::corrupting`). In a bounty:
    /// `agent` (the reference hill-climbing agent; submits its best diff once), `copier`, or
    /// `follow-up` (from the second round on, one more training step on top of the leader).
    #[serde(default)]
    pub behaviour: String,
    /// `alie`: the z of mean − z·σ (default: `attack::alie_z` of the leaked count, one attacker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alie_z: Option<f64>,
}

/// The validator role (opting in publishes a validator announcement).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValidatorRole {
    /// Fee per attestation, in sats.
    pub fee_sats: u64,
    /// Byzantine behaviour for the simulator's real mode: `colluding` attests "accept" with
    /// the top score for the `favoured` peers' submissions without evaluating them, and
    /// "reject" for every other one; `equivocating` evaluates honestly, then also signs and
    /// publishes the opposite verdict for the same evaluation; `lazy` attests "accept" with a
    /// fixed score for everything, unevaluated (default: honest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<String>,
    /// The coalition's peers (Nostr public keys, hex) a `colluding` validator favours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub favoured: Vec<String>,
}

/// The roles this node runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Coordinator of a run.
    pub coordinator: Option<CoordinatorRole>,
    /// Peer (trains and submits).
    pub peer: Option<PeerRole>,
    /// Validator (opted in).
    pub validator: Option<ValidatorRole>,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Nostr relays (empty: run the embedded relay on 127.0.0.1:4869).
    pub relays: Vec<String>,
    /// Esplora base URL of the chain.
    pub esplora_url: String,
    /// Bitcoin network: regtest, signet, testnet or bitcoin.
    pub network: String,
    /// Lightning P2P listen address.
    pub lightning_listen: SocketAddr,
    /// iroh bind address (port 0: any free port).
    pub iroh_bind: SocketAddr,
    /// HTTP gateway listen address (L402, status page).
    pub gateway_listen: SocketAddr,
    /// Roles.
    pub roles: Roles,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The commented TOML `init` writes.
pub fn render(config: &NodeConfig) -> Result<String, ConfigError> {
    let body = toml::to_string_pretty(config).map_err(|e| ConfigError::Parse {
        path: PathBuf::from(CONFIG_FILE),
        reason: e.to_string(),
    })?;
    Ok(format!(
        "# l402-node configuration (written by `l402-node init`; edit freely).\n\
         #\n\
         # relays           Nostr relays to publish to and read from; [] runs the embedded relay.\n\
         # esplora_url      Esplora API of the chain (the regtest chain of `l402-testnet`, or a\n\
         #                  signet/mainnet Esplora).\n\
         # network          regtest | signet | testnet | bitcoin\n\
         # lightning_listen Lightning P2P address other nodes dial.\n\
         # iroh_bind        iroh endpoint address (blobs); port 0 picks one.\n\
         # gateway_listen   HTTP: GET /reward-schedule, the L402 token sale, GET / (status page),\n\
         #                  GET /status (JSON).\n\
         # [roles.*]        coordinator, peer, validator: any combination.\n\
         #\n\
         # Keys are in {KEYS_FILE} (mode 0600): the Nostr key is the node's identity.\n\n{body}"
    ))
}

/// Write `config` and fresh `keys` into `data_dir` (refuses to overwrite keys).
pub fn write_new(data_dir: &Path, config: &NodeConfig, keys: &NodeKeys) -> Result<(), ConfigError> {
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let keys_path = data_dir.join(KEYS_FILE);
    if keys_path.exists() {
        return Err(ConfigError::Exists(keys_path));
    }
    let k = toml::to_string(keys).map_err(|e| ConfigError::Parse {
        path: keys_path.clone(),
        reason: e.to_string(),
    })?;
    crate::durable::write_atomic(data_dir, KEYS_FILE, k.as_bytes()).map_err(io(&keys_path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys_path, std::fs::Permissions::from_mode(0o600))
            .map_err(io(&keys_path))?;
    }
    crate::durable::write_atomic(data_dir, CONFIG_FILE, render(config)?.as_bytes())
        .map_err(io(&data_dir.join(CONFIG_FILE)))
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Read the configuration and keys of `data_dir`.
pub fn load(data_dir: &Path) -> Result<(NodeConfig, NodeKeys), ConfigError> {
    Ok((
        read_toml(&data_dir.join(CONFIG_FILE))?,
        read_toml(&data_dir.join(KEYS_FILE))?,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_config_that_loads_back_and_never_overwrites_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = NodeConfig {
            relays: vec!["ws://127.0.0.1:4869".into()],
            esplora_url: "http://127.0.0.1:3002".into(),
            network: "regtest".into(),
            lightning_listen: "127.0.0.1:9735".parse().unwrap(),
            iroh_bind: "127.0.0.1:0".parse().unwrap(),
            gateway_listen: "127.0.0.1:8402".parse().unwrap(),
            roles: Roles {
                validator: Some(ValidatorRole {
                    fee_sats: 1,
                    behaviour: None,
                    favoured: Vec::new(),
                }),
                ..Roles::default()
            },
        };
        let keys = NodeKeys {
            nostr: "11".repeat(32),
            iroh: "22".repeat(32),
            lightning_seed: "33".repeat(64),
        };
        write_new(dir.path(), &cfg, &keys).unwrap();
        let text = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        assert!(text.starts_with("# l402-node configuration"));
        let (back, k) = load(dir.path()).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(k.nostr, keys.nostr);
        assert!(matches!(
            write_new(dir.path(), &cfg, &keys),
            Err(ConfigError::Exists(_))
        ));
        std::fs::write(dir.path().join(CONFIG_FILE), "relays = 3").unwrap();
        assert!(matches!(load(dir.path()), Err(ConfigError::Parse { .. })));
    }
}
