//! [`Discovery`]: a nostr-sdk client on several relays (or the embedded relay), publishing our
//! events with acknowledgement tracking and keeping the live [`Directory`] up to date.
//!
//! Reconnects are nostr-sdk's (its retry interval grows with failed attempts, up to 60 s). On
//! top of it a supervisor loop, every [`SUPERVISOR_TICK`]:
//! - re-sends the directory subscription to a relay that has just (re)connected (nostr-sdk only
//!   resubscribes relays on which the first REQ went out, which a relay down at start never got);
//! - re-publishes to that relay whatever it has not acknowledged yet (see [`super::outbox`]);
//! - retries transient failures with exponential backoff;
//! - sweeps expired entries out of the directory.
//!
//! Deduplication happens twice: nostr-sdk notifies an event id once whichever relay delivers it,
//! and the directory keeps one entry per address.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use l402_protocol::events::{self, EventContent, L402Kind};
use l402_relay_kit::{EmbeddedRelay, RelayConfig, RelayError};
use nostr_sdk::prelude::*;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::directory::{Directory, Ingested};
use super::outbox::{Outbox, SendOutcome};

/// How often the supervisor looks at connections, retries and expirations.
pub const SUPERVISOR_TICK: Duration = Duration::from_millis(250);
/// Default base delay of nostr-sdk's reconnect loop.
pub const RECONNECT_BASE: Duration = Duration::from_secs(1);
/// Default wait for a first relay connection before publishing.
pub const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How often expired directory entries are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Most stored events fetched per relay when (re)building the directory.
pub const DIRECTORY_FETCH_LIMIT: usize = 5_000;
/// How long a resync fetch waits for the relays' stored events.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a retried send is considered in flight.
const IN_FLIGHT: Duration = Duration::from_secs(30);

/// The kinds the directory lists.
pub const DIRECTORY_KINDS: [L402Kind; 3] = [
    L402Kind::NodeAnnouncement,
    L402Kind::RunAnnouncement,
    L402Kind::Bounty,
];

/// The filter of the directory subscription.
pub fn directory_filter() -> Filter {
    Filter::new()
        .kinds(DIRECTORY_KINDS.iter().map(|k| k.kind()))
        .limit(DIRECTORY_FETCH_LIMIT)
}

/// Configuration of [`Discovery`].
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Relays to publish to and read from. Empty: run the embedded relay ("no server").
    pub relays: Vec<RelayUrl>,
    /// The embedded relay, used only when `relays` is empty.
    pub embedded: RelayConfig,
    /// Base delay of the reconnect loop.
    pub reconnect_base: Duration,
    /// How long [`Discovery::publish`] waits for a first connection.
    pub connect_wait: Duration,
    /// Whether to subscribe and maintain the directory (a publish-only client can skip it).
    pub directory: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            relays: Vec::new(),
            embedded: RelayConfig::default(),
            reconnect_base: RECONNECT_BASE,
            connect_wait: CONNECT_WAIT,
            directory: true,
        }
    }
}

impl DiscoveryConfig {
    /// A node's configuration: `relays`, or, if empty, the embedded relay on its default address
    /// (`127.0.0.1:4869`, where `l402-node runs|validators|bounties` look for it) persisted in
    /// `<data_dir>/relay`.
    pub fn for_node(relays: Vec<RelayUrl>, data_dir: &std::path::Path) -> Self {
        Self {
            relays,
            embedded: RelayConfig::persistent(
                std::net::SocketAddr::from(([127, 0, 0, 1], l402_relay_kit::config::DEFAULT_PORT)),
                l402_relay_kit::relay::relay_data_dir(data_dir),
            ),
            ..Self::default()
        }
    }
}

/// Errors starting discovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The embedded relay did not start.
    #[error("embedded relay: {0}")]
    Relay(#[from] RelayError),
    /// nostr-sdk refused a relay URL or a subscription.
    #[error("nostr client: {0}")]
    Client(#[from] nostr_sdk::client::Error),
    /// nostr-sdk's relay pool refused a relay.
    #[error("relay pool: {0}")]
    Pool(#[from] nostr_sdk::pool::pool::Error),
}

/// Errors publishing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No relay acknowledged the event. Relays that failed transiently stay queued in the
    /// outbox and will be retried; the report says which.
    #[error("no relay accepted event {}: {report}", report.id)]
    NotAccepted {
        /// Per-relay outcome.
        report: PublishReport,
    },
    /// The event could not be signed.
    #[error("signing: {0}")]
    Sign(String),
}

/// Per-relay outcome of one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The event id.
    pub id: EventId,
    /// Relays that answered `OK true`.
    pub accepted: BTreeSet<RelayUrl>,
    /// Relays that refused it for good, with their NIP-01 reason.
    pub refused: BTreeMap<RelayUrl, String>,
    /// Relays to retry (not connected, no answer, `rate-limited:`), with the last error.
    pub queued: BTreeMap<RelayUrl, String>,
}

impl std::fmt::Display for PublishReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "accepted by {}", self.accepted.len())?;
        for (u, r) in &self.refused {
            write!(f, "; {u} refused: {r}")?;
        }
        for (u, r) in &self.queued {
            write!(f, "; {u} queued: {r}")?;
        }
        Ok(())
    }
}

/// A node's discovery service. Dropping it stops its tasks and, if it runs one, the embedded relay.
#[derive(Debug)]
pub struct Discovery {
    client: Client,
    keys: Keys,
    relays: Vec<RelayUrl>,
    embedded: Option<EmbeddedRelay>,
    outbox: Arc<Mutex<Outbox>>,
    directory: Arc<watch::Sender<Directory>>,
    tasks: Vec<JoinHandle<()>>,
    config: DiscoveryConfig,
}

fn lock(outbox: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    // A panic while holding the lock leaves the outbox consistent (every method is a single
    // update), so a poisoned lock is still usable.
    outbox.lock().unwrap_or_else(|p| p.into_inner())
}

impl Discovery {
    /// Connects to the configured relays (starting the embedded relay if there are none),
    /// subscribes to the directory kinds and starts the supervisor.
    pub async fn start(config: DiscoveryConfig, keys: Keys) -> Result<Self, DiscoveryError> {
        let (embedded, relays) = if config.relays.is_empty() {
            let relay = l402_relay_kit::spawn_relay(config.embedded.clone()).await?;
            let url = relay.url().clone();
            tracing::info!(relay = %url, "no relay configured: running the embedded relay");
            (Some(relay), vec![url])
        } else {
            (None, config.relays.clone())
        };
        let client = Client::builder().signer(keys.clone()).build();
        let opts = RelayOptions::new()
            .reconnect(true)
            .retry_interval(config.reconnect_base)
            .adjust_retry_interval(true);
        for url in &relays {
            client.pool().add_relay(url.clone(), opts.clone()).await?;
        }
        // Take the notification receiver before subscribing (upstream-apis.md §10).
        let notifications = client.notifications();
        client.connect().await;

        let (tx, _) = watch::channel(Directory::new());
        let directory = Arc::new(tx);
        let outbox = Arc::new(Mutex::new(Outbox::default()));
        let sub_id = SubscriptionId::new("l402-directory");
        let mut tasks = Vec::new();
        if config.directory {
            // Long-lived subscription on every relay; the supervisor redoes it per relay on connect.
            let _ = client
                .subscribe_with_id(sub_id.clone(), directory_filter(), None)
                .await;
            tasks.push(tokio::spawn(ingest_loop(
                client.clone(),
                notifications,
                directory.clone(),
            )));
        }
        tasks.push(tokio::spawn(supervisor_loop(
            client.clone(),
            config.directory.then_some(sub_id),
            outbox.clone(),
            directory.clone(),
        )));
        Ok(Self {
            client,
            keys,
            relays,
            embedded,
            outbox,
            directory,
            tasks,
            config,
        })
    }

    /// The relays in use (the embedded relay's URL when none was configured).
    pub fn relays(&self) -> &[RelayUrl] {
        &self.relays
    }

    /// The embedded relay, when this node runs one.
    pub fn embedded_relay(&self) -> Option<&EmbeddedRelay> {
        self.embedded.as_ref()
    }

    /// This node's Nostr public key.
    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }

    /// The underlying nostr-sdk client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Relays currently connected.
    pub async fn connected_relays(&self) -> BTreeSet<RelayUrl> {
        connected(&self.client).await
    }

    /// Waits until every configured relay is connected, or `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.connected_relays().await.len() == self.relays.len() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signs `content` as an l402 event dated now, with a NIP-40 expiration `ttl` from now.
    pub fn sign<T: EventContent>(
        &self,
        content: &T,
        ttl: Option<Duration>,
    ) -> Result<Event, PublishError> {
        let now = Timestamp::now();
        let mut builder = events::build(content, now);
        if let Some(ttl) = ttl {
            builder = builder.tag(Tag::expiration(Timestamp::from(
                now.as_secs() + ttl.as_secs(),
            )));
        }
        builder
            .sign_with_keys(&self.keys)
            .map_err(|e| PublishError::Sign(e.to_string()))
    }

    /// Signs and publishes an announcement (or any l402 content) with an optional lifetime.
    pub async fn announce<T: EventContent>(
        &self,
        content: &T,
        ttl: Option<Duration>,
    ) -> Result<PublishReport, PublishError> {
        let event = self.sign(content, ttl)?;
        self.publish(&event).await
    }

    /// Publishes `event` to every relay. Succeeds if at least one relay answered `OK true`
    /// (nostr-sdk's `send_event` is `Ok` even when all refused: we look at `success`).
    /// Relays that were down or did not answer keep it queued and get it when they come back.
    pub async fn publish(&self, event: &Event) -> Result<PublishReport, PublishError> {
        let mut live = connected(&self.client).await;
        if live.is_empty() {
            self.client
                .wait_for_connection(self.config.connect_wait)
                .await;
            live = connected(&self.client).await;
        }
        let mut report = PublishReport {
            id: event.id,
            accepted: BTreeSet::new(),
            refused: BTreeMap::new(),
            queued: BTreeMap::new(),
        };
        let mut outcomes: Vec<(RelayUrl, SendOutcome)> = Vec::new();
        if !live.is_empty() {
            match self.client.send_event_to(live.iter().cloned(), event).await {
                Ok(out) => {
                    for url in out.success {
                        outcomes.push((url, SendOutcome::Accepted));
                    }
                    for (url, msg) in out.failed {
                        outcomes.push((url, SendOutcome::from_failure(&msg)));
                    }
                }
                Err(e) => {
                    for url in &live {
                        outcomes.push((url.clone(), SendOutcome::Transient(e.to_string())));
                    }
                }
            }
        }
        for url in &self.relays {
            if !outcomes.iter().any(|(u, _)| u == url) {
                outcomes.push((url.clone(), SendOutcome::Transient("not connected".into())));
            }
        }
        for (url, outcome) in &outcomes {
            match outcome {
                SendOutcome::Accepted => {
                    report.accepted.insert(url.clone());
                }
                SendOutcome::Refused(r) => {
                    report.refused.insert(url.clone(), r.clone());
                }
                SendOutcome::Transient(r) => {
                    report.queued.insert(url.clone(), r.clone());
                }
            }
        }
        {
            let now = Instant::now();
            let mut ob = lock(&self.outbox);
            ob.insert(event.clone(), report.queued.keys().cloned(), now);
            for (url, outcome) in &outcomes {
                if matches!(outcome, SendOutcome::Transient(_)) && live.contains(url) {
                    ob.record(&event.id, url, outcome, now);
                }
            }
        }
        tracing::debug!(event_id = %event.id, kind = event.kind.as_u16(), %report, "published");
        if report.accepted.is_empty() {
            return Err(PublishError::NotAccepted { report });
        }
        // nostr-sdk marks what it sends as seen, so the subscription will not hand our own
        // event back: file it here, through the same validation as anyone else's.
        if self.config.directory && DIRECTORY_KINDS.iter().any(|k| k.kind() == event.kind) {
            let now = Timestamp::now();
            let first = report.accepted.iter().next().cloned();
            self.directory.send_if_modified(|d| {
                !matches!(
                    d.ingest(event, first.as_ref(), now),
                    Ingested::Stale | Ingested::NotListed | Ingested::Full
                )
            });
        }
        Ok(report)
    }

    /// Relays that have not acknowledged `id` yet.
    pub fn pending(&self, id: &EventId) -> BTreeSet<RelayUrl> {
        lock(&self.outbox).pending_for(id)
    }

    /// A snapshot of the directory.
    pub fn directory(&self) -> Directory {
        self.directory.borrow().clone()
    }

    /// A receiver that sees every directory change.
    pub fn watch_directory(&self) -> watch::Receiver<Directory> {
        self.directory.subscribe()
    }

    /// Waits until `pred` holds on the directory, or `timeout`. Returns whether it held.
    pub async fn wait_for<F>(&self, timeout: Duration, mut pred: F) -> bool
    where
        F: FnMut(&Directory) -> bool,
    {
        let mut rx = self.directory.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|d| pred(d)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Reads the relays' stored directory events once (without waiting for the subscription)
    /// and files them. Used by one-shot CLI listings.
    pub async fn fetch_directory(&self, timeout: Duration) -> Result<Directory, DiscoveryError> {
        let events = self
            .client
            .fetch_events(directory_filter(), timeout)
            .await?;
        let now = Timestamp::now();
        self.directory.send_modify(|d| {
            for ev in events.iter() {
                d.ingest(ev, None, now);
            }
        });
        Ok(self.directory())
    }

    /// Stops the tasks, disconnects, and stops the embedded relay if any.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.client.shutdown().await;
        if let Some(relay) = self.embedded.take() {
            relay.shutdown().await;
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn connected(client: &Client) -> BTreeSet<RelayUrl> {
    client
        .relays()
        .await
        .into_iter()
        .filter(|(_, r)| r.is_connected())
        .map(|(u, _)| u)
        .collect()
}

/// Files every event the subscription delivers. On lag (the broadcast channel overflowed) it
/// re-reads the relays' stored announcements so that nothing is missed.
async fn ingest_loop(
    client: Client,
    mut notifications: broadcast::Receiver<RelayPoolNotification>,
    directory: Arc<watch::Sender<Directory>>,
) {
    loop {
        match notifications.recv().await {
            Ok(RelayPoolNotification::Event {
                relay_url, event, ..
            }) => {
                let kind = event.kind;
                if !DIRECTORY_KINDS.iter().any(|k| k.kind() == kind) {
                    continue;
                }
                let now = Timestamp::now();
                directory.send_if_modified(|d| {
                    match d.ingest(&event, Some(&relay_url), now) {
                        Ingested::Added | Ingested::Replaced { .. } => {
                            tracing::debug!(event_id = %event.id, relay = %relay_url, kind = kind.as_u16(), "directory updated");
                            true
                        }
                        Ingested::Rejected(reason) => {
                            tracing::warn!(event_id = %event.id, relay = %relay_url, %reason, "relay served an invalid l402 event");
                            true
                        }
                        Ingested::Duplicate => true,
                        Ingested::Full => {
                            tracing::warn!(event_id = %event.id, relay = %relay_url, "directory table full; announcement dropped");
                            false
                        }
                        _ => false,
                    }
                });
            }
            Ok(RelayPoolNotification::Shutdown) => break,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "notification channel lagged; re-reading the relays"
                );
                if let Ok(events) = client.fetch_events(directory_filter(), FETCH_TIMEOUT).await {
                    let now = Timestamp::now();
                    directory.send_modify(|d| {
                        for ev in events.iter() {
                            d.ingest(ev, None, now);
                        }
                    });
                }
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

async fn supervisor_loop(
    client: Client,
    sub_id: Option<SubscriptionId>,
    outbox: Arc<Mutex<Outbox>>,
    directory: Arc<watch::Sender<Directory>>,
) {
    let mut was_connected: BTreeSet<RelayUrl> = BTreeSet::new();
    let mut ticker = tokio::time::interval(SUPERVISOR_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = Instant::now();
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let live = connected(&client).await;
        for url in live.difference(&was_connected) {
            tracing::info!(relay = %url, "relay connected");
            if let Some(id) = &sub_id {
                if let Ok(relay) = client.relay(url).await {
                    if let Err(e) = relay
                        .subscribe_with_id(
                            id.clone(),
                            directory_filter(),
                            SubscribeOptions::default(),
                        )
                        .await
                    {
                        tracing::debug!(relay = %url, error = %e, "resubscribe failed");
                    }
                }
            }
            lock(&outbox).relay_connected(url, now);
        }
        for url in was_connected.difference(&live) {
            tracing::info!(relay = %url, "relay disconnected");
        }
        was_connected = live.clone();

        let due = {
            let mut ob = lock(&outbox);
            ob.prune_expired(Timestamp::now());
            let due = ob.due(now, &live);
            // In flight until its outcome is recorded below (nostr-sdk waits at most 10 s for OK).
            for (url, ev) in &due {
                ob.mark_in_flight(&ev.id, url, now + IN_FLIGHT);
            }
            due
        };
        for (url, event) in due {
            let outcome = match client.send_event_to([url.clone()], &event).await {
                Ok(out) if out.success.contains(&url) => SendOutcome::Accepted,
                Ok(out) => out
                    .failed
                    .get(&url)
                    .map(|m| SendOutcome::from_failure(m))
                    .unwrap_or_else(|| SendOutcome::Transient("no answer".into())),
                Err(e) => SendOutcome::Transient(e.to_string()),
            };
            tracing::debug!(event_id = %event.id, relay = %url, ?outcome, "outbox retry");
            lock(&outbox).record(&event.id, &url, &outcome, Instant::now());
        }

        if now.duration_since(last_sweep) >= SWEEP_INTERVAL {
            last_sweep = now;
            let ts = Timestamp::now();
            directory.send_if_modified(|d| d.expire(ts) > 0);
        }
    }
}
