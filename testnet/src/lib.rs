//! l402-testnet: an in-process regtest Bitcoin chain serving the Esplora HTTP API, with a miner and
//! a faucet. No bitcoind needed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), l402_testnet::TestnetError> {
//! let testnet = l402_testnet::Testnet::start(l402_testnet::TestnetConfig::default()).await?;
//! println!("esplora at {}", testnet.url()); // http://127.0.0.1:PORT, no trailing slash
//! let addr = l402_testnet::faucet::parse_regtest_address("bcrt1q...")?;
//! let txid = testnet.fund(&addr, bitcoin::Amount::from_sat(1_000_000))?;
//! testnet.mine(1);
//! # let _ = txid; Ok(()) }
//! ```
//!
//! Module map:
//! - [`chain`]: blocks, UTXO set, mempool, indices and the miner;
//! - [`validate`]: mempool acceptance rules, including libbitcoinconsensus script checks;
//! - [`faucet`]: the key that collects coinbases and pays anyone;
//! - [`esplora`]: the axum router with the 13 endpoints ldk-node 0.7.1 uses (plus a few extras).
//!
//! Limits: no reorgs, no RBF/CPFP, no taproot script-path verification (libbitcoinconsensus 25.1
//! has no taproot flag), no minimum relay fee. Everything LDK and BDK do on regtest with
//! non-anchor channels passes through these rules.

pub mod chain;
pub mod esplora;
pub mod faucet;
pub mod validate;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::{Address, Amount, BlockHash, ScriptBuf, Transaction, Txid};
use tokio::sync::{oneshot, watch};

pub use chain::{Accepted, Chain};
pub use faucet::{Faucet, FaucetError};
pub use validate::TxRejection;

/// Blocks mined to the faucet at start: 101 makes the first coinbase spendable; a few more give
/// the faucet several independent coins.
pub const DEFAULT_PREMINE: u32 = 110;
/// Fee rate served by `/fee-estimates` for every target, in sat/vB.
pub const DEFAULT_FEE_RATE_SAT_VB: f64 = 1.0;
/// Confirmation targets listed by `/fee-estimates` (as Esplora does).
pub const FEE_TARGETS: [u16; 28] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 144,
    504, 1008,
];

/// How to start a [`Testnet`].
#[derive(Debug, Clone)]
pub struct TestnetConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Seed of the faucet key.
    pub faucet_seed: u64,
    /// Blocks mined to the faucet before serving.
    pub premine: u32,
    /// Fee rate served for every confirmation target, sat/vB.
    pub fee_rate_sat_vb: f64,
    /// Verify input scripts with libbitcoinconsensus.
    pub verify_scripts: bool,
}

impl Default for TestnetConfig {
    fn default() -> Self {
        TestnetConfig {
            port: 0,
            faucet_seed: 0,
            premine: DEFAULT_PREMINE,
            fee_rate_sat_vb: DEFAULT_FEE_RATE_SAT_VB,
            verify_scripts: true,
        }
    }
}

/// Errors of the [`Testnet`] handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestnetError {
    /// The listening socket could not be bound.
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind {
        /// The requested port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
    /// The faucet could not pay.
    #[error(transparent)]
    Faucet(#[from] FaucetError),
    /// A transaction was refused.
    #[error(transparent)]
    Rejected(#[from] TxRejection),
    /// A wait timed out.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// A running regtest chain with its Esplora server on 127.0.0.1. Dropping it stops the server.
#[derive(Debug)]
pub struct Testnet {
    shared: Arc<esplora::Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Testnet {
    /// Builds the chain, premines to the faucet and starts serving.
    ///
    /// Must be called inside a tokio runtime; the server runs as a task on it.
    pub async fn start(config: TestnetConfig) -> Result<Self, TestnetError> {
        let mut chain = Chain::new();
        chain.set_verify_scripts(config.verify_scripts);
        let faucet = Faucet::from_seed(config.faucet_seed);
        chain.mine_many(config.premine, &faucet.script_pubkey());
        let fee_estimates: BTreeMap<u16, f64> = FEE_TARGETS
            .iter()
            .map(|t| (*t, config.fee_rate_sat_vb))
            .collect();
        let (changes, _) = watch::channel(0u64);
        let shared = Arc::new(esplora::Shared {
            chain: Mutex::new(chain),
            faucet,
            changes,
            fee_estimates,
        });

        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.port))
            .await
            .map_err(|source| TestnetError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| TestnetError::Bind {
            port: config.port,
            source,
        })?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = esplora::router(Arc::clone(&shared));
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "esplora server stopped");
            }
        });
        tracing::info!(url = %format!("http://{addr}"), height = config.premine, "regtest chain serving");
        Ok(Testnet {
            shared,
            addr,
            shutdown: Some(tx),
        })
    }

    /// The Esplora base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Current tip height.
    pub fn height(&self) -> u32 {
        self.shared.chain().height()
    }

    /// Current tip hash.
    pub fn tip_hash(&self) -> BlockHash {
        self.shared.chain().tip().hash
    }

    /// The faucet's address.
    pub fn faucet_address(&self) -> Address {
        self.shared.faucet.address().clone()
    }

    /// Spendable faucet balance in satoshis.
    pub fn faucet_balance(&self) -> u64 {
        let chain = self.shared.chain();
        self.shared.faucet.balance(&chain)
    }

    /// Mines `n` blocks to the faucet, confirming the mempool.
    pub fn mine(&self, n: u32) -> Vec<BlockHash> {
        let script = self.shared.faucet.script_pubkey();
        self.mine_to(n, &script)
    }

    /// Mines `n` blocks whose coinbases pay `script`.
    pub fn mine_to(&self, n: u32, script: &ScriptBuf) -> Vec<BlockHash> {
        let hashes = self.shared.chain().mine_many(n, script);
        self.shared.notify();
        hashes
    }

    /// Pays `amount` from the faucet to `address` (unconfirmed; mine to confirm).
    pub fn fund(&self, address: &Address, amount: Amount) -> Result<Txid, TestnetError> {
        let tx = {
            let mut chain = self.shared.chain();
            self.shared
                .faucet
                .pay(&mut chain, address.script_pubkey(), amount)?
        };
        self.shared.notify();
        Ok(tx.compute_txid())
    }

    /// Submits a transaction as `POST /tx` would.
    pub fn submit(&self, tx: Transaction) -> Result<Accepted, TestnetError> {
        let accepted = self.shared.chain().accept(tx)?;
        if matches!(accepted, Accepted::New(_)) {
            self.shared.notify();
        }
        Ok(accepted)
    }

    /// Whether `txid` is in the mempool or the chain.
    pub fn knows_tx(&self, txid: &Txid) -> bool {
        self.shared.chain().knows_tx(txid)
    }

    /// Number of transactions in the mempool.
    pub fn mempool_len(&self) -> usize {
        self.shared.chain().mempool_len()
    }

    /// Waits until `txid` is in the mempool or the chain (woken by chain changes, no polling).
    pub async fn wait_for_tx(&self, txid: Txid, timeout: Duration) -> Result<(), TestnetError> {
        self.wait_until(timeout, &format!("transaction {txid}"), |c| {
            c.knows_tx(&txid)
        })
        .await
    }

    /// Waits until the mempool holds at least `n` transactions.
    pub async fn wait_for_mempool(&self, n: usize, timeout: Duration) -> Result<(), TestnetError> {
        self.wait_until(timeout, &format!("{n} mempool transactions"), |c| {
            c.mempool_len() >= n
        })
        .await
    }

    /// Waits until `cond` holds on the chain, re-checking after every change.
    pub async fn wait_until<F: Fn(&Chain) -> bool>(
        &self,
        timeout: Duration,
        what: &str,
        cond: F,
    ) -> Result<(), TestnetError> {
        let mut rx = self.shared.changes.subscribe();
        let fut = async {
            loop {
                let _ = rx.borrow_and_update();
                if cond(&self.shared.chain()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The sender lives in `self.shared`, so this cannot happen while we borrow it.
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| TestnetError::Timeout(timeout, what.to_string()))
    }

    /// Runs `f` with the chain locked (read or modify; call [`Testnet::mine`] to notify waiters).
    pub fn with_chain<R>(&self, f: impl FnOnce(&mut Chain) -> R) -> R {
        let r = f(&mut self.shared.chain());
        self.shared.notify();
        r
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
