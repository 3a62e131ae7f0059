//! Configuration of a [`super::LightningNode`] and the adapter's tunables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use bitcoin::Network;

/// Default invoice expiry, seconds.
pub const DEFAULT_INVOICE_EXPIRY_SECS: u32 = 3600;
/// How often the dispatcher re-checks held invoices against the chain height, so that expiries are
/// recorded even when nobody calls [`super::LightningNode::sync`] (background sync mode).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
/// Back-off before retrying an event whose handling failed (e.g. the disk refused a write). The
/// event is not acknowledged to the Lightning node until it was handled, so nothing is lost.
pub const EVENT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// How often waiters re-check conditions that no event announces (balances, reconnects, gossip).
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(25);
/// Capacity of the live event broadcast; slower subscribers get [`super::LightningEvent::Lagged`].
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;
/// Sub-directory of the data dir holding the Lightning node's own store.
pub const LDK_DIR: &str = "ldk";
/// Sub-directory of the data dir holding the hold-invoice records.
pub const HOLDS_DIR: &str = "holds";
/// Sub-directory of the data dir holding the BOLT11 text of invoices created or paid.
pub const INVOICES_DIR: &str = "invoices";

/// Everything needed to build a Lightning node.
#[derive(Clone)]
pub struct LightningConfig {
    /// Directory for all state (created if missing).
    pub data_dir: PathBuf,
    /// Bitcoin network.
    pub network: Network,
    /// Esplora base URL, no trailing slash (e.g. `http://127.0.0.1:3002`).
    pub esplora_url: String,
    /// Lightning P2P listening address. Peers must know it, so pick the port explicitly.
    pub listen: SocketAddr,
    /// 64 bytes of entropy the node keys derive from. Keep secret.
    pub seed: [u8; 64],
    /// Node alias. Required to open announced channels (a routing hub), and to accept them.
    pub alias: Option<String>,
    /// Peers whose channels this node accepts with zero confirmations (acceptor side only).
    pub trusted_peers_0conf: Vec<PublicKey>,
    /// Sync wallets in the background. Off: only [`super::LightningNode::sync`] syncs (tests).
    pub background_sync: bool,
    /// Negotiate anchor channels (needs a 25 000-sat on-chain reserve per channel).
    pub anchor_channels: bool,
}

impl LightningConfig {
    /// A regtest node without background sync, alias or anchors.
    pub fn regtest(
        data_dir: PathBuf,
        esplora_url: String,
        listen: SocketAddr,
        seed: [u8; 64],
    ) -> Self {
        LightningConfig {
            data_dir,
            network: Network::Regtest,
            esplora_url,
            listen,
            seed,
            alias: None,
            trusted_peers_0conf: Vec::new(),
            background_sync: false,
            anchor_channels: false,
        }
    }
}

impl std::fmt::Debug for LightningConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LightningConfig")
            .field("data_dir", &self.data_dir)
            .field("network", &self.network)
            .field("esplora_url", &self.esplora_url)
            .field("listen", &self.listen)
            .field("seed", &"<redacted>")
            .field("alias", &self.alias)
            .field("trusted_peers_0conf", &self.trusted_peers_0conf)
            .field("background_sync", &self.background_sync)
            .field("anchor_channels", &self.anchor_channels)
            .finish()
    }
}
