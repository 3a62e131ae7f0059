//! Embedded Lightning: a thin adapter over ldk-node 0.7.1 with persisted hold-invoice states.
//!
//! Spec: specs/L2T-11-lightning.md
//!
//! The rest of the node talks only to [`LightningNode`]; ldk-node's names (`receive_for_hash`,
//! `claim_for_hash`, `fail_for_hash`, `Event`, …) stay in this module because they change in later
//! versions. What it offers:
//! - build a node from a [`LightningConfig`] (data dir, network, Esplora URL, listen address, seed);
//! - fund it ([`LightningNode::new_address`]), [`LightningNode::connect`],
//!   [`LightningNode::open_channel`], and wait for channels ([`LightningNode::wait_channel_ready`]);
//! - hold invoices: [`LightningNode::create_hold_invoice`] for a hash, [`LightningNode::claim`] with
//!   the preimage, [`LightningNode::fail`] to refund;
//! - an async stream of [`LightningEvent`]s ([`LightningNode::subscribe`]) plus state waiters.
//!
//! Hold invoices are tracked as [`HoldRecord`]s (`protocol::hold`): `created → claimable(amount,
//! deadline) → claimed | failed`, advanced only by the node's events (and by the chain height
//! reaching `claim_deadline`), and persisted before the event is acknowledged. This matters
//! because ldk-node does not re-emit `PaymentClaimable` after a restart, and `claim_for_hash`
//! returning `Ok` proves nothing: only the "payment received" event makes a record `Claimed`.
//!
//! Runtime: ldk-node's synchronous calls use `tokio::task::block_in_place`, so every method must
//! run on a multi-thread tokio runtime (`#[tokio::test(flavor = "multi_thread")]`).

pub mod config;
mod error;
mod events;
mod holds;
mod invoices;
mod logging;
pub mod testkit;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, OutPoint};
use futures::Stream;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Description};
use ldk_node::lightning_types::payment::{
    PaymentHash as LdkPaymentHash, PaymentPreimage as LdkPaymentPreimage,
};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use config::LightningConfig;
pub use error::LightningError;
pub use events::{ChannelState, LightningEvent, PaymentOutcome};
pub use l402_protocol::hold::{FailReason, HoldRecord, HoldState, PaymentHash, Preimage};

use events::Tracker;
use holds::HoldStore;
use invoices::InvoiceBook;

/// A peer's node id and listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's Lightning node id.
    pub node_id: PublicKey,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Our local id of a channel (stable across restarts; chosen when the channel is opened or accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalChannelId(pub u128);

/// One Lightning payment as ldk-node records it, with the BOLT11 it was for (when this node
/// created or paid it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInfo {
    /// Payment hash.
    pub payment_hash: PaymentHash,
    /// Sent by this node (else received).
    pub outbound: bool,
    /// `pending`, `succeeded` or `failed` (a held HTLC is pending until claimed or failed); an
    /// ordinary invoice of ours nobody has paid is `open`, or `expired` past its expiry.
    pub status: &'static str,
    /// Amount, msat (unknown for a variable-amount invoice not yet paid).
    pub amount_msat: Option<u64>,
    /// Routing fee paid, msat (outbound, once succeeded).
    pub fee_paid_msat: Option<u64>,
    /// Last update, UNIX seconds.
    pub updated_at: u64,
    /// The invoice text.
    pub bolt11: Option<String>,
}

/// A BOLT11 invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice(Bolt11Invoice);

impl Invoice {
    /// The invoice's payment hash.
    pub fn payment_hash(&self) -> PaymentHash {
        use bitcoin::hashes::Hash;
        PaymentHash(self.0.payment_hash().to_byte_array())
    }

    /// The amount asked, if any.
    pub fn amount_msat(&self) -> Option<u64> {
        self.0.amount_milli_satoshis()
    }

    /// The node that signed it (who gets paid), compressed.
    pub fn payee(&self) -> [u8; 33] {
        self.0.get_payee_pub_key().serialize()
    }

    /// Past its expiry time (payers refuse it).
    pub fn is_expired(&self) -> bool {
        self.0.is_expired()
    }
}

impl std::fmt::Display for Invoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Invoice {
    type Err = LightningError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bolt11Invoice::from_str(s)
            .map(Invoice)
            .map_err(|e| LightningError::InvalidInvoice(e.to_string()))
    }
}

/// A channel as the node sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Our id for it.
    pub id: LocalChannelId,
    /// The peer.
    pub counterparty: PublicKey,
    /// Funding output, once known.
    pub funding: Option<OutPoint>,
    /// Channel size.
    pub capacity_sat: u64,
    /// What we can send now.
    pub outbound_msat: u64,
    /// What we can receive now.
    pub inbound_msat: u64,
    /// Whether both sides consider it ready.
    pub is_ready: bool,
    /// Ready and the peer is connected.
    pub is_usable: bool,
    /// Announced to the network (forwarding channel).
    pub is_announced: bool,
    /// Whether we opened it.
    pub is_outbound: bool,
}

/// Balances in satoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balances {
    /// All on-chain funds, including unconfirmed.
    pub onchain_total_sat: u64,
    /// On-chain funds that can be spent now.
    pub onchain_spendable_sat: u64,
    /// Our side of all channels.
    pub lightning_sat: u64,
}

/// Shared between the handle and the dispatcher task.
pub(crate) struct Inner {
    node: ldk_node::Node,
    label: String,
    listen: SocketAddr,
    holds: Mutex<HoldStore>,
    invoices: Mutex<InvoiceBook>,
    tracker: Mutex<Tracker>,
    changed: watch::Sender<u64>,
    events: broadcast::Sender<LightningEvent>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("label", &self.label)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn holds(&self) -> MutexGuard<'_, HoldStore> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn invoices(&self) -> MutexGuard<'_, InvoiceBook> {
        self.invoices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn height(&self) -> u32 {
        self.node.status().current_best_block.height
    }

    /// Fails the HTLCs of `hash` back to the payer. Idempotent; errors only mean "nothing to fail".
    fn fail_back(&self, hash: PaymentHash) {
        if let Err(e) = self
            .node
            .bolt11_payment()
            .fail_for_hash(LdkPaymentHash(hash.0))
        {
            tracing::debug!(payment_hash = %hash, node = %self.label, error = %e, "fail back: nothing to fail");
        }
    }
}

/// An embedded Lightning node with a hold-invoice store and one event dispatcher.
///
/// Call [`LightningNode::stop`] before dropping it; dropping only signals the dispatcher.
#[derive(Debug)]
pub struct LightningNode {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    dispatcher: Option<JoinHandle<()>>,
    config: LightningConfig,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl LightningNode {
    /// Builds and starts a node, loads its hold records and starts its dispatcher.
    ///
    /// Fails if the Esplora server is unreachable (the node fetches fee rates while starting).
    pub async fn start(config: LightningConfig) -> Result<Self, LightningError> {
        let label = config
            .alias
            .clone()
            .unwrap_or_else(|| format!("ln@{}", config.listen));
        let holds = HoldStore::open(config.data_dir.join(config::HOLDS_DIR))?;
        let invoices = InvoiceBook::open(config.data_dir.join(config::INVOICES_DIR))?;

        let defaults = ldk_node::config::Config::default();
        let ldk_config = ldk_node::config::Config {
            storage_dir_path: config
                .data_dir
                .join(config::LDK_DIR)
                .to_string_lossy()
                .into_owned(),
            network: config.network,
            listening_addresses: Some(vec![SocketAddress::from(config.listen)]),
            trusted_peers_0conf: config.trusted_peers_0conf.clone(),
            anchor_channels_config: if config.anchor_channels {
                defaults.anchor_channels_config.clone()
            } else {
                None
            },
            ..defaults
        };
        let mut builder = ldk_node::Builder::from_config(ldk_config);
        let sync = ldk_node::config::EsploraSyncConfig {
            // On regtest blocks come when someone mines: poll at ldk-node's 10 s minimum so
            // funding and channel confirmations show up promptly.
            background_sync_config: config.background_sync.then(|| {
                let d = ldk_node::config::BackgroundSyncConfig::default();
                if config.network == bitcoin::Network::Regtest {
                    ldk_node::config::BackgroundSyncConfig {
                        onchain_wallet_sync_interval_secs: 10,
                        lightning_wallet_sync_interval_secs: 10,
                        ..d
                    }
                } else {
                    d
                }
            }),
        };
        builder.set_chain_source_esplora(config.esplora_url.clone(), Some(sync));
        builder.set_entropy_seed_bytes(config.seed);
        builder.set_custom_logger(Arc::new(logging::TracingLogWriter {
            node: label.clone(),
        }));
        if let Some(alias) = &config.alias {
            builder
                .set_node_alias(alias.clone())
                .map_err(|e| LightningError::Config(e.to_string()))?;
        }
        let node = builder.build().map_err(|e| LightningError::Start {
            op: "build",
            reason: e.to_string(),
        })?;
        node.start().map_err(|e| LightningError::Start {
            op: "start",
            reason: e.to_string(),
        })?;

        let (changed, _) = watch::channel(0);
        let (events, _) = broadcast::channel(config::EVENT_CHANNEL_CAPACITY);
        let inner = Arc::new(Inner {
            node,
            label,
            listen: config.listen,
            holds: Mutex::new(holds),
            invoices: Mutex::new(invoices),
            tracker: Mutex::new(Tracker::default()),
            changed,
            events,
        });
        // Heal a crash between persisting `Failed` and failing the HTLCs back.
        let failed: Vec<PaymentHash> = inner
            .holds()
            .all()
            .filter(|r| matches!(r.state, HoldState::Failed(_)))
            .map(|r| r.payment_hash)
            .collect();
        for hash in failed {
            inner.fail_back(hash);
        }
        let (stop, stop_rx) = watch::channel(false);
        let dispatcher = tokio::spawn(events::dispatch(Arc::clone(&inner), stop_rx));
        tracing::info!(node = %inner.label, node_id = %inner.node.node_id(), listen = %config.listen, "lightning node started");
        Ok(LightningNode {
            inner,
            stop,
            dispatcher: Some(dispatcher),
            config,
        })
    }

    /// The first half of [`Self::stop`], callable while other tasks still share the node: the
    /// dispatcher stops after the event in hand, and every wait ([`Self::wait_for`],
    /// [`Self::pay_when_routable`]) ends with [`LightningError::Stopping`], so the tasks
    /// holding clones let go. Payments already sent stay in flight; ldk-node resumes them.
    pub fn begin_stop(&self) {
        // `send_replace`: the value flips even when no receiver is left (`send` would not).
        self.stop.send_replace(true);
    }

    /// Stops the dispatcher (after the event in hand is handled) and then the node.
    pub async fn stop(mut self) -> Result<(), LightningError> {
        let _ = self.stop.send(true);
        if let Some(d) = self.dispatcher.take() {
            let _ = d.await;
        }
        self.inner
            .node
            .stop()
            .map_err(|e| LightningError::node("stop", e))
    }

    /// The configuration this node was started with (e.g. to restart it).
    pub fn config(&self) -> &LightningConfig {
        &self.config
    }

    /// Our node id.
    pub fn node_id(&self) -> PublicKey {
        self.inner.node.node_id()
    }

    /// Our node id and listening address.
    pub fn peer_addr(&self) -> PeerAddr {
        PeerAddr {
            node_id: self.node_id(),
            addr: self.inner.listen,
        }
    }

    /// The label used in logs (the alias, or `ln@<listen>`).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Height of the best block the node has synced to.
    pub fn height(&self) -> u32 {
        self.inner.height()
    }

    /// A fresh on-chain address of the node's wallet.
    pub fn new_address(&self) -> Result<Address, LightningError> {
        self.inner
            .node
            .onchain_payment()
            .new_address()
            .map_err(|e| LightningError::node("new_address", e))
    }

    /// Syncs the on-chain and Lightning wallets with the chain, then records hold-invoice expiries.
    pub async fn sync(&self) -> Result<(), LightningError> {
        self.inner
            .node
            .sync_wallets()
            .map_err(|e| LightningError::node("sync", e))?;
        let events = self.inner.reconcile_expiries()?;
        self.inner.publish(events);
        Ok(())
    }

    /// Current balances.
    pub fn balances(&self) -> Balances {
        let b = self.inner.node.list_balances();
        Balances {
            onchain_total_sat: b.total_onchain_balance_sats,
            onchain_spendable_sat: b.spendable_onchain_balance_sats,
            lightning_sat: b.total_lightning_balance_sats,
        }
    }

    /// Connects to a peer and remembers it (redialled after restarts).
    pub async fn connect(&self, peer: &PeerAddr) -> Result<(), LightningError> {
        self.inner
            .node
            .connect(peer.node_id, SocketAddress::from(peer.addr), true)
            .map_err(|e| LightningError::node("connect", e))
    }

    /// Opens a channel of `amount_sat` to `peer`, optionally pushing `push_msat` to it.
    /// `announced` makes it a public forwarding channel (both nodes need an alias).
    pub async fn open_channel(
        &self,
        peer: &PeerAddr,
        amount_sat: u64,
        push_msat: Option<u64>,
        announced: bool,
    ) -> Result<LocalChannelId, LightningError> {
        let node = &self.inner.node;
        let addr = SocketAddress::from(peer.addr);
        let id = if announced {
            node.open_announced_channel(peer.node_id, addr, amount_sat, push_msat, None)
        } else {
            node.open_channel(peer.node_id, addr, amount_sat, push_msat, None)
        }
        .map_err(|e| LightningError::node("open_channel", e))?;
        tracing::info!(node = %self.inner.label, peer = %peer.node_id, amount_sat, announced, "channel open requested");
        Ok(LocalChannelId(id.0))
    }

    /// All channels.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        self.inner
            .node
            .list_channels()
            .into_iter()
            .map(|c| ChannelInfo {
                id: LocalChannelId(c.user_channel_id.0),
                counterparty: c.counterparty_node_id,
                funding: c.funding_txo,
                capacity_sat: c.channel_value_sats,
                outbound_msat: c.outbound_capacity_msat,
                inbound_msat: c.inbound_capacity_msat,
                is_ready: c.is_channel_ready,
                is_usable: c.is_usable,
                is_announced: c.is_announced,
                is_outbound: c.is_outbound,
            })
            .collect()
    }

    /// Number of channels in our view of the public network graph.
    pub fn graph_channel_count(&self) -> usize {
        self.inner.node.network_graph().list_channels().len()
    }

    /// Creates a hold invoice for `payment_hash`: the money is held until [`Self::claim`] with the
    /// preimage, or refunded by [`Self::fail`] or at the claim deadline.
    pub fn create_hold_invoice(
        &self,
        payment_hash: PaymentHash,
        amount_msat: u64,
        description: &str,
        expiry_secs: u32,
    ) -> Result<Invoice, LightningError> {
        let mut holds = self.inner.holds();
        if holds.get(&payment_hash).is_some() {
            return Err(LightningError::DuplicateHold(payment_hash));
        }
        let description = Description::new(description.to_string())
            .map_err(|e| LightningError::InvalidInvoice(format!("description: {e}")))?;
        let invoice = self
            .inner
            .node
            .bolt11_payment()
            .receive_for_hash(
                amount_msat,
                &Bolt11InvoiceDescription::Direct(description),
                expiry_secs,
                LdkPaymentHash(payment_hash.0),
            )
            .map_err(|e| LightningError::node("create_hold_invoice", e))?;
        self.inner
            .invoices()
            .put(payment_hash, &invoice.to_string())?;
        holds.put(HoldRecord::new(
            payment_hash,
            Some(amount_msat),
            now_unix(),
            expiry_secs,
        ))?;
        drop(holds);
        tracing::debug!(payment_hash = %payment_hash, node = %self.inner.label, amount_msat, "hold invoice created");
        Ok(Invoice(invoice))
    }

    /// Creates an ordinary invoice that is claimed automatically (the node knows the preimage).
    pub fn create_invoice(
        &self,
        amount_msat: u64,
        description: &str,
        expiry_secs: u32,
    ) -> Result<Invoice, LightningError> {
        let description = Description::new(description.to_string())
            .map_err(|e| LightningError::InvalidInvoice(format!("description: {e}")))?;
        let invoice = self
            .inner
            .node
            .bolt11_payment()
            .receive(
                amount_msat,
                &Bolt11InvoiceDescription::Direct(description),
                expiry_secs,
            )
            .map(Invoice)
            .map_err(|e| LightningError::node("create_invoice", e))?;
        self.inner
            .invoices()
            .put(invoice.payment_hash(), &invoice.to_string())?;
        Ok(invoice)
    }

    /// The invoice this node created or paid for `payment_hash`, from the invoice book.
    pub fn invoice(&self, payment_hash: &PaymentHash) -> Option<Invoice> {
        self.bolt11(payment_hash)?.parse().ok()
    }

    /// Its text, as stored (no parsing: for display).
    pub fn bolt11(&self, payment_hash: &PaymentHash) -> Option<String> {
        self.inner.invoices().get(payment_hash).map(str::to_owned)
    }

    /// Every Lightning payment ldk-node knows (sent and received, hold invoices included), with
    /// its BOLT11 from the invoice book, ordered by last update then hash.
    pub fn payments(&self) -> Vec<PaymentInfo> {
        use ldk_node::payment::{PaymentDirection, PaymentKind, PaymentStatus};
        let book = self.inner.invoices();
        let holds = self.inner.holds();
        let mut out: Vec<PaymentInfo> = self
            .inner
            .node
            .list_payments()
            .into_iter()
            .filter_map(|p| {
                let hash = match p.kind {
                    PaymentKind::Bolt11 { hash, .. } | PaymentKind::Bolt11Jit { hash, .. } => {
                        PaymentHash(hash.0)
                    }
                    PaymentKind::Spontaneous { hash, .. } => PaymentHash(hash.0),
                    _ => return None,
                };
                let outbound = p.direction == PaymentDirection::Outbound;
                let bolt11 = book.get(&hash).map(str::to_owned);
                // ldk-node reports an inbound invoice nobody has paid as `Pending`; only a hold
                // invoice (our hold store) can be pending with an HTLC in flight. An unpaid
                // ordinary invoice (a toll-refund invoice, say) is `open`, or `expired`.
                let unpaid_invoice =
                    !outbound && p.status == PaymentStatus::Pending && holds.get(&hash).is_none();
                let expired = || {
                    bolt11
                        .as_deref()
                        .and_then(|b| b.parse::<Invoice>().ok())
                        .is_some_and(|i| i.is_expired())
                };
                Some(PaymentInfo {
                    payment_hash: hash,
                    outbound,
                    status: match p.status {
                        PaymentStatus::Pending if unpaid_invoice && expired() => "expired",
                        PaymentStatus::Pending if unpaid_invoice => "open",
                        PaymentStatus::Pending => "pending",
                        PaymentStatus::Succeeded => "succeeded",
                        PaymentStatus::Failed => "failed",
                    },
                    amount_msat: p.amount_msat,
                    fee_paid_msat: p.fee_paid_msat,
                    updated_at: p.latest_update_timestamp,
                    bolt11,
                })
            })
            .collect();
        out.sort_by_key(|p| (p.updated_at, p.payment_hash));
        out
    }

    /// Requests the claim of a claimable hold invoice with its preimage.
    ///
    /// `Ok` means the claim was handed to the Lightning node, not that it happened: wait for
    /// [`HoldState::Claimed`] ([`Self::wait_hold_claimed`]). Refused if the preimage is wrong, no
    /// HTLC is held, the record is finished, or the chain reached `claim_deadline`.
    pub fn claim(
        &self,
        payment_hash: PaymentHash,
        preimage: &Preimage,
    ) -> Result<(), LightningError> {
        let holds = self.inner.holds();
        let record = holds
            .get(&payment_hash)
            .ok_or(LightningError::UnknownHold(payment_hash))?;
        let amount = record
            .check_claim(preimage, self.inner.height())
            .map_err(|source| LightningError::Hold {
                hash: payment_hash,
                source,
            })?;
        drop(holds);
        self.inner
            .node
            .bolt11_payment()
            .claim_for_hash(
                LdkPaymentHash(payment_hash.0),
                amount,
                LdkPaymentPreimage(preimage.0),
            )
            .map_err(|e| LightningError::node("claim", e))?;
        tracing::debug!(payment_hash = %payment_hash, node = %self.inner.label, amount_msat = amount, "claim requested");
        Ok(())
    }

    /// Fails a hold invoice back: the payer is refunded. Persisted as `Failed(FailedBack)` first,
    /// so a crash in between is healed at the next start. Refused once claimed.
    pub fn fail(&self, payment_hash: PaymentHash) -> Result<(), LightningError> {
        let mut holds = self.inner.holds();
        let mut record = holds
            .get(&payment_hash)
            .cloned()
            .ok_or(LightningError::UnknownHold(payment_hash))?;
        let t = record
            .fail(FailReason::FailedBack)
            .map_err(|source| LightningError::Hold {
                hash: payment_hash,
                source,
            })?;
        if t == l402_protocol::hold::Transition::Changed {
            holds.put(record)?;
        }
        drop(holds);
        self.inner.fail_back(payment_hash);
        tracing::debug!(payment_hash = %payment_hash, node = %self.inner.label, "hold invoice failed back");
        self.inner.publish(vec![LightningEvent::HoldFailed {
            payment_hash,
            reason: FailReason::FailedBack,
        }]);
        Ok(())
    }

    /// The record of a hold invoice.
    pub fn hold(&self, payment_hash: &PaymentHash) -> Option<HoldRecord> {
        self.inner.holds().get(payment_hash).cloned()
    }

    /// All hold-invoice records, ordered by payment hash.
    pub fn holds(&self) -> Vec<HoldRecord> {
        self.inner.holds().all().cloned().collect()
    }

    /// Pays a BOLT11 invoice. The outcome arrives as an event ([`Self::wait_payment`]).
    pub fn pay(&self, invoice: &Invoice) -> Result<PaymentHash, LightningError> {
        let hash = invoice.payment_hash();
        self.inner.invoices().put(hash, &invoice.to_string())?;
        {
            let mut tracker = self.inner.tracker();
            tracker.outbound.remove(&hash);
            tracker.sent.insert(hash);
        }
        self.inner
            .node
            .bolt11_payment()
            .send(&invoice.0, None)
            .map_err(|e| match e {
                // ldk-node's word for `RetryableSendFailure::{RouteNotFound, PaymentExpired,
                // OnionPacketSizeExceeded}`: refused before any HTLC left, so not started.
                ldk_node::NodeError::PaymentSendingFailed => {
                    self.inner.tracker().sent.remove(&hash);
                    LightningError::NoRoute(hash)
                }
                e => LightningError::node("pay", e),
            })?;
        tracing::debug!(payment_hash = %hash, node = %self.inner.label, "payment sent");
        Ok(hash)
    }

    /// Pays like [`Self::pay`]; but when the node finds no route while some of its channels
    /// are ready with their partner not connected (the partner restarting, or this node just
    /// restarted and the redial is in flight), it waits for a partner to come back and tries
    /// again, until `within` has passed. A wallet does the same: a payment refused only
    /// because a channel is reconnecting is not a failed payment. Other refusals return at once;
    /// a wait cut short by [`Self::begin_stop`] returns [`LightningError::Stopping`].
    pub async fn pay_when_routable(
        &self,
        invoice: &Invoice,
        within: Duration,
    ) -> Result<PaymentHash, LightningError> {
        let start = tokio::time::Instant::now();
        loop {
            let err = match self.pay(invoice) {
                Ok(hash) => return Ok(hash),
                Err(e @ LightningError::NoRoute(_)) => e,
                Err(e) => return Err(e),
            };
            let down = self.reconnecting_partners().len();
            let left = within.saturating_sub(start.elapsed());
            if down == 0 || left.is_zero() {
                return Err(err);
            }
            tracing::info!(payment_hash = %invoice.payment_hash(), node = %self.inner.label, reconnecting = down, "no route while channel partners reconnect: waiting for one");
            let back = self
                .wait_for(left, "a channel partner to reconnect", |n| {
                    (n.reconnecting_partners().len() < down).then_some(())
                })
                .await;
            match back {
                Ok(()) => {}
                Err(stopping @ LightningError::Stopping(_)) => return Err(stopping),
                Err(_) => return Err(err),
            }
        }
    }

    /// The partners of channels that are ready but not usable: not connected (restarting, or
    /// a redial in flight).
    pub fn reconnecting_partners(&self) -> Vec<PublicKey> {
        self.channels()
            .into_iter()
            .filter(|c| c.is_ready && !c.is_usable)
            .map(|c| c.counterparty)
            .collect()
    }

    /// A live stream of events from now on. A subscriber that falls more than
    /// [`config::EVENT_CHANNEL_CAPACITY`] events behind gets [`LightningEvent::Lagged`].
    pub fn subscribe(&self) -> impl Stream<Item = LightningEvent> + Send + 'static {
        let rx = self.inner.events.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(e) => Some((e, rx)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((LightningEvent::Lagged { missed }, rx))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }

    /// Waits until `probe` returns `Some`. Re-checks after every state change the dispatcher
    /// publishes and, for conditions no event announces (balances after the commitment dance,
    /// peer reconnection, gossip), every [`config::RECHECK_INTERVAL`]. Ends with
    /// [`LightningError::Stopping`] once the node begins to stop.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, LightningError> {
        let mut rx = self.inner.changed.subscribe();
        let mut stop = self.stop.subscribe();
        let fut = async {
            loop {
                if *stop.borrow_and_update() {
                    return Err(LightningError::Stopping(what.to_string()));
                }
                let _ = rx.borrow_and_update();
                if let Some(v) = probe(self) {
                    return Ok(v);
                }
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(config::RECHECK_INTERVAL) => {}
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(LightningError::Timeout {
                    what: what.to_string(),
                    after: timeout,
                })
            })
    }

    /// Waits until a hold invoice is claimable; returns `(amount_msat, claim_deadline)`.
    /// Fails early if it ends failed.
    pub async fn wait_hold_claimable(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<(u64, Option<u32>), LightningError> {
        let state = self
            .wait_for(timeout, &format!("hold {payment_hash} claimable"), |n| {
                n.hold(&payment_hash)
                    .map(|r| r.state)
                    .filter(|s| !matches!(s, HoldState::Created))
            })
            .await?;
        match state {
            HoldState::Claimable {
                amount_msat,
                claim_deadline,
            } => Ok((amount_msat, claim_deadline)),
            _ => Err(LightningError::Hold {
                hash: payment_hash,
                source: l402_protocol::hold::HoldError::Terminal(
                    if matches!(state, HoldState::Claimed { .. }) {
                        "claimed"
                    } else {
                        "failed"
                    },
                ),
            }),
        }
    }

    /// Waits until a hold invoice reaches a terminal state and returns it.
    pub async fn wait_hold_finished(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<HoldState, LightningError> {
        self.wait_for(timeout, &format!("hold {payment_hash} finished"), |n| {
            n.hold(&payment_hash)
                .map(|r| r.state)
                .filter(|s| s.is_terminal())
        })
        .await
    }

    /// Waits for the `Claimed` state and returns the amount received.
    pub async fn wait_hold_claimed(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<u64, LightningError> {
        match self.wait_hold_finished(payment_hash, timeout).await? {
            HoldState::Claimed { amount_msat } => Ok(amount_msat),
            _ => Err(LightningError::Hold {
                hash: payment_hash,
                source: l402_protocol::hold::HoldError::Terminal("failed"),
            }),
        }
    }

    /// The outcome of an outgoing payment, if it finished: from this run's events, or from the
    /// Lightning node's own payment store (which survives restarts; it keeps no failure reason).
    pub fn payment_outcome(&self, payment_hash: PaymentHash) -> Option<PaymentOutcome> {
        {
            let tracker = self.inner.tracker();
            if let Some(o) = tracker.outbound.get(&payment_hash) {
                return Some(o.clone());
            }
            // Sent in this run: the event is the answer (the store may be updated before the
            // event carrying the failure reason is handled).
            if tracker.sent.contains(&payment_hash) {
                return None;
            }
        }
        use ldk_node::payment::{PaymentDirection, PaymentKind, PaymentStatus};
        let details =
            self.inner
                .node
                .payment(&ldk_node::lightning::ln::channelmanager::PaymentId(
                    payment_hash.0,
                ))?;
        if details.direction != PaymentDirection::Outbound {
            return None;
        }
        match details.status {
            PaymentStatus::Succeeded => Some(PaymentOutcome::Succeeded {
                fee_paid_msat: details.fee_paid_msat,
                preimage: match details.kind {
                    PaymentKind::Bolt11 { preimage, .. } => preimage.map(|p| Preimage(p.0)),
                    _ => None,
                },
            }),
            PaymentStatus::Failed => Some(PaymentOutcome::Failed {
                reason: "failed (reason not stored across restarts)".into(),
            }),
            PaymentStatus::Pending => None,
        }
    }

    /// Whether an outgoing payment of `payment_hash` was started in this run, or is pending or
    /// succeeded from before a restart: paying it again would be a duplicate. A payment that
    /// failed before a restart moved nothing (ldk-node reports `Failed` only once every HTLC
    /// is resolved back, or none left), so a restarted node may try it again, and ldk-node
    /// itself refuses a second payment only while one is pending or after success.
    pub fn outbound_started(&self, payment_hash: PaymentHash) -> bool {
        if self.inner.tracker().sent.contains(&payment_hash) {
            return true;
        }
        self.inner
            .node
            .payment(&ldk_node::lightning::ln::channelmanager::PaymentId(
                payment_hash.0,
            ))
            .is_some_and(|d| {
                d.direction == ldk_node::payment::PaymentDirection::Outbound
                    && d.status != ldk_node::payment::PaymentStatus::Failed
            })
    }

    /// Waits for the outcome of an outgoing payment.
    pub async fn wait_payment(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<PaymentOutcome, LightningError> {
        self.wait_for(timeout, &format!("payment {payment_hash}"), |n| {
            n.payment_outcome(payment_hash)
        })
        .await
    }

    /// Waits until an ordinary invoice was paid to us; returns the amount.
    pub async fn wait_received(
        &self,
        payment_hash: PaymentHash,
        timeout: Duration,
    ) -> Result<u64, LightningError> {
        self.wait_for(timeout, &format!("payment {payment_hash} received"), |n| {
            n.inner.tracker().received.get(&payment_hash).copied()
        })
        .await
    }

    /// Waits for the `ChannelPending` event of a channel; returns the funding output.
    pub async fn wait_channel_pending(
        &self,
        channel: LocalChannelId,
        timeout: Duration,
    ) -> Result<OutPoint, LightningError> {
        self.wait_for(timeout, "channel pending", |n| {
            match n.inner.tracker().channels.get(&channel) {
                Some(ChannelState::Pending { funding, .. }) => Some(*funding),
                _ => None,
            }
        })
        .await
    }

    /// Waits until a channel with `counterparty` is ready (by event, or already ready after a restart).
    pub async fn wait_channel_ready(
        &self,
        counterparty: PublicKey,
        timeout: Duration,
    ) -> Result<LocalChannelId, LightningError> {
        self.wait_for(
            timeout,
            &format!("channel with {counterparty} ready"),
            |n| {
                n.channels()
                    .into_iter()
                    .find(|c| c.counterparty == counterparty && c.is_ready)
                    .map(|c| c.id)
            },
        )
        .await
    }

    /// Waits until a channel with `counterparty` is usable (ready and the peer connected).
    pub async fn wait_channel_usable(
        &self,
        counterparty: PublicKey,
        timeout: Duration,
    ) -> Result<(), LightningError> {
        self.wait_for(
            timeout,
            &format!("channel with {counterparty} usable"),
            |n| {
                n.channels()
                    .iter()
                    .any(|c| c.counterparty == counterparty && c.is_usable)
                    .then_some(())
            },
        )
        .await
    }

    /// Waits until our view of the public graph has at least `n` channels.
    pub async fn wait_graph_channels(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(), LightningError> {
        self.wait_for(
            timeout,
            &format!("{n} channels in the gossip graph"),
            |node| (node.graph_channel_count() >= n).then_some(()),
        )
        .await
    }

    /// Number of payments this node forwarded since it started.
    pub fn forwarded_count(&self) -> u64 {
        self.inner.tracker().forwarded
    }
}

impl Drop for LightningNode {
    fn drop(&mut self) {
        // Best effort: stop the dispatcher so that it releases the node. Prefer `stop().await`.
        let _ = self.stop.send(true);
    }
}
