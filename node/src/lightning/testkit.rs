//! A regtest chain and N funded Lightning nodes in a few lines, in the style of ldk-node's
//! `tests/common`. Used by this crate's tests and benchmarks, and meant for later ones (the round
//! end-to-end tests, the simulator's real mode).
//!
//! ```no_run
//! # async fn demo() -> Result<(), l402_node::lightning::testkit::TestkitError> {
//! use std::time::Duration;
//! use l402_node::lightning::testkit::{Testkit, TestkitConfig};
//! use l402_node::lightning::Preimage;
//!
//! // A chain, 2 nodes funded with 0.1 BTC each (on chain, confirmed, synced).
//! let kit = Testkit::start(TestkitConfig { nodes: 2, ..Default::default() }).await?;
//! // A 1M-sat channel 0 -> 1: opened, 6 blocks mined, everyone synced, ready on both sides.
//! kit.channel(0, 1, 1_000_000, None, false).await?;
//! let (payer, payee) = (kit.node(0), kit.node(1));
//! let preimage = Preimage([7; 32]);
//! let invoice = payee.create_hold_invoice(preimage.payment_hash(), 50_000_000, "demo", 3600)?;
//! let hash = payer.pay(&invoice)?;
//! payee.wait_hold_claimable(hash, Duration::from_secs(30)).await?;
//! payee.claim(hash, &preimage)?;
//! payee.wait_hold_claimed(hash, Duration::from_secs(30)).await?;
//! kit.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Every node listens on an explicitly chosen free port of 127.0.0.1 and has an alias (so it can
//! open and accept announced channels); background sync is off, so [`Testkit::sync_all`] (or
//! [`Testkit::mine_and_sync`]) decides when nodes see new blocks. Waits have generous timeouts and
//! are woken by events, never by sleeping.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::Amount;
use l402_testnet::{Testnet, TestnetConfig, TestnetError};

use super::{LightningConfig, LightningError, LightningNode, LocalChannelId};

/// Generous timeout for any single wait on a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(60);
/// Confirmations LDK requires before a channel is ready (its default `minimum_depth`).
pub const CHANNEL_CONFIRMATIONS: u32 = 6;

/// Errors of the test kit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// The chain failed.
    #[error(transparent)]
    Chain(#[from] TestnetError),
    /// A Lightning node failed.
    #[error(transparent)]
    Lightning(#[from] LightningError),
    /// Filesystem or socket trouble while setting up.
    #[error("test kit setup: {0}")]
    Setup(#[from] std::io::Error),
    /// A check failed.
    #[error("test kit: {0}")]
    Check(String),
}

/// How to start a [`Testkit`].
#[derive(Debug, Clone)]
pub struct TestkitConfig {
    /// Number of Lightning nodes.
    pub nodes: usize,
    /// On-chain funding of each node, in satoshis (confirmed before `start` returns).
    pub funding_sat: u64,
    /// Seed for node keys (node `i` gets a seed derived from this and `i`).
    pub seed: u64,
}

impl Default for TestkitConfig {
    fn default() -> Self {
        TestkitConfig {
            nodes: 2,
            funding_sat: 10_000_000,
            seed: 1,
        }
    }
}

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A free TCP port on 127.0.0.1, never the same twice in one process.
pub fn free_port() -> std::io::Result<u16> {
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        if HANDED_OUT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port)
        {
            return Ok(port);
        }
    }
}

/// The seed of node `index` in a kit seeded with `seed`.
pub fn node_seed(seed: u64, index: usize) -> [u8; 64] {
    let mut s = [0x4cu8; 64];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&(index as u64).to_le_bytes());
    s
}

/// A running chain plus Lightning nodes.
#[derive(Debug)]
pub struct Testkit {
    /// The regtest chain (Esplora on 127.0.0.1).
    pub chain: Testnet,
    nodes: Vec<Option<Arc<LightningNode>>>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Testkit {
    fn drop(&mut self) {
        // Dropped without `shutdown` (a failing test): the nodes may still be writing, so keep
        // their files instead of deleting them under a running SQLite store.
        if self.nodes.iter().any(Option::is_some) {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                tracing::warn!(path = %path.display(), "test kit dropped without shutdown; keeping its data dir");
            }
        }
    }
}

impl Testkit {
    /// Starts the chain and the nodes, funds every node and syncs it.
    pub async fn start(config: TestkitConfig) -> Result<Self, TestkitError> {
        let chain = Testnet::start(TestnetConfig::default()).await?;
        let dir = tempfile::Builder::new().prefix("l402-testkit-").tempdir()?;
        let mut kit = Testkit {
            chain,
            nodes: Vec::new(),
            dir: Some(dir),
        };
        for i in 0..config.nodes {
            let cfg = kit.node_config(i, config.seed)?;
            kit.nodes
                .push(Some(Arc::new(LightningNode::start(cfg).await?)));
        }
        if config.funding_sat > 0 {
            kit.fund_all(config.funding_sat).await?;
        }
        Ok(kit)
    }

    /// The config node `i` gets: its own data dir, a free port, an alias `node-i`.
    fn node_config(&self, i: usize, seed: u64) -> Result<LightningConfig, TestkitError> {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let base = self
            .dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_else(std::env::temp_dir);
        let mut cfg = LightningConfig::regtest(
            base.join(format!("node-{i}")),
            self.chain.url(),
            listen,
            node_seed(seed, i),
        );
        cfg.alias = Some(format!("node-{i}"));
        Ok(cfg)
    }

    /// Adds and starts one more (unfunded) node; returns its index.
    pub async fn add_node(&mut self, seed: u64) -> Result<usize, TestkitError> {
        let i = self.nodes.len();
        let cfg = self.node_config(i, seed)?;
        self.nodes
            .push(Some(Arc::new(LightningNode::start(cfg).await?)));
        Ok(i)
    }

    /// Node `i`. Panics if `i` is out of range or the node is being restarted (a test bug).
    pub fn node(&self, i: usize) -> &LightningNode {
        self.nodes[i].as_deref().expect("node is running")
    }

    /// Node `i`, shared (a role runtime holds it); give it back before [`Self::restart`] or
    /// [`Self::shutdown`] by dropping every clone.
    pub fn shared(&self, i: usize) -> Arc<LightningNode> {
        Arc::clone(self.nodes[i].as_ref().expect("node is running"))
    }

    /// All running nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &LightningNode> {
        self.nodes.iter().flatten().map(|n| &**n)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the kit has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Pays `amount_sat` on chain to every node, confirms it and syncs everyone.
    pub async fn fund_all(&self, amount_sat: u64) -> Result<(), TestkitError> {
        for node in self.nodes() {
            self.chain
                .fund(&node.new_address()?, Amount::from_sat(amount_sat))?;
        }
        self.mine_and_sync(1).await?;
        for node in self.nodes() {
            let b = node.balances();
            if b.onchain_spendable_sat < amount_sat {
                return Err(TestkitError::Check(format!(
                    "{} has {} sat spendable after funding",
                    node.label(),
                    b.onchain_spendable_sat
                )));
            }
        }
        Ok(())
    }

    /// Syncs every running node with the chain.
    pub async fn sync_all(&self) -> Result<(), TestkitError> {
        for node in self.nodes() {
            node.sync().await?;
        }
        Ok(())
    }

    /// Mines `n` blocks and syncs every node.
    pub async fn mine_and_sync(&self, n: u32) -> Result<(), TestkitError> {
        self.chain.mine(n);
        self.sync_all().await
    }

    /// Opens a channel `from → to` and waits until it is pending on both sides, its funding
    /// transaction is in the mempool, and the opener's wallet has seen it (so that the next open
    /// does not reuse its inputs). Does not mine: call [`Self::confirm_channels`].
    pub async fn open_channel(
        &self,
        from: usize,
        to: usize,
        amount_sat: u64,
        push_msat: Option<u64>,
        announced: bool,
    ) -> Result<LocalChannelId, TestkitError> {
        let (a, b) = (self.node(from), self.node(to));
        let id = a
            .open_channel(&b.peer_addr(), amount_sat, push_msat, announced)
            .await?;
        let funding = a.wait_channel_pending(id, WAIT).await?;
        let opener = a.node_id();
        b.wait_for(WAIT, "inbound channel pending", |n| {
            n.channels()
                .into_iter()
                .find(|c| c.counterparty == opener && c.funding == Some(funding))
        })
        .await?;
        self.chain.wait_for_tx(funding.txid, WAIT).await?;
        a.sync().await?;
        Ok(id)
    }

    /// Mines the confirmations channels need, syncs everyone, and waits until every channel of
    /// every node is ready and usable.
    pub async fn confirm_channels(&self) -> Result<(), TestkitError> {
        self.mine_and_sync(CHANNEL_CONFIRMATIONS).await?;
        for node in self.nodes() {
            for c in node.channels() {
                node.wait_channel_ready(c.counterparty, WAIT).await?;
                node.wait_channel_usable(c.counterparty, WAIT).await?;
            }
        }
        Ok(())
    }

    /// Opens one channel and confirms it.
    pub async fn channel(
        &self,
        from: usize,
        to: usize,
        amount_sat: u64,
        push_msat: Option<u64>,
        announced: bool,
    ) -> Result<LocalChannelId, TestkitError> {
        let id = self
            .open_channel(from, to, amount_sat, push_msat, announced)
            .await?;
        self.confirm_channels().await?;
        Ok(id)
    }

    /// Stops node `i` and starts it again from the same data dir, then redials every other node
    /// (ldk-node itself redials only every 60 s, and an acceptor does not know its opener's
    /// address) and waits until its channels are usable again.
    pub async fn restart(&mut self, i: usize) -> Result<(), TestkitError> {
        let config = self.stop(i).await?;
        self.start_again(i, config).await
    }

    /// Stops node `i` (its partners see it go offline) and returns its config, for
    /// [`Self::start_again`].
    pub async fn stop(&mut self, i: usize) -> Result<LightningConfig, TestkitError> {
        let node = self.nodes[i]
            .take()
            .ok_or_else(|| TestkitError::Check(format!("node {i} is not running")))?;
        let node = unshare(node)?;
        let config = node.config().clone();
        node.stop().await?;
        Ok(config)
    }

    /// Starts a node stopped by [`Self::stop`] from the same data dir, redials every other
    /// node and waits until its channels are usable again.
    pub async fn start_again(
        &mut self,
        i: usize,
        config: LightningConfig,
    ) -> Result<(), TestkitError> {
        if self.nodes[i].is_some() {
            return Err(TestkitError::Check(format!("node {i} is running")));
        }
        let node = LightningNode::start(config).await?;
        for (j, other) in self.nodes.iter().enumerate() {
            if let (true, Some(other)) = (j != i, other) {
                node.connect(&other.peer_addr()).await?;
            }
        }
        node.sync().await?;
        for c in node.channels() {
            node.wait_channel_usable(c.counterparty, WAIT).await?;
        }
        self.nodes[i] = Some(Arc::new(node));
        Ok(())
    }

    /// Stops every node (the chain stops when the kit is dropped).
    pub async fn shutdown(mut self) -> Result<(), TestkitError> {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            unshare(node)?.stop().await?;
        }
        Ok(())
    }
}

/// The node behind `node`, once no runtime holds a clone any more.
fn unshare(node: Arc<LightningNode>) -> Result<LightningNode, TestkitError> {
    Arc::try_unwrap(node).map_err(|n| {
        TestkitError::Check(format!(
            "{} is still shared: drop its runtime first",
            n.label()
        ))
    })
}
