//! The role runtime: the protocol's one [`Driver`] over real IO.
//!
//! - [`store`]: the durable machine store (persist before execute, resume after restart);
//! - [`exec`]: the real executors of the machines' actions (outbox, ldk-node, blob index);
//! - [`work`]: the candle side of `Evaluate` and `Aggregate`;
//! - [`roles`]: opening rounds, selling submission tokens, training a submission.
//!
//! A [`Runtime`] feeds the driver from four sources: verified events of its runs' rounds (a
//! nostr-sdk subscription, each event through `events::validate_event`), Lightning hold-invoice
//! events from the dispatcher, the executors' own reports (`InvoiceCreated` …), and ticks. After
//! every `handle` the driver persists the machine through [`NodeEffects`] and only then are the
//! actions executed, in order.
//!
//! Spec: specs/L2T-03-round.md#driver

pub mod bounty;
pub mod exec;
pub mod roles;
pub mod status;
pub mod store;
pub mod timeline;
pub mod work;

use std::collections::BTreeSet;
use std::time::Duration;

use l402_protocol::events::{validate_event, L402Kind, RunId, UnixTime, VerifiedAny};
use l402_protocol::round::{Action, Delivery, Driver, Effects, Input, Machine, MachineKey};
use nostr_sdk::prelude::{
    Alphabet, Filter, Keys, RelayPoolNotification, SingleLetterTag, Timestamp,
};
use tokio::sync::mpsc;

pub use exec::{check_hold_invoices, lightning_input, Components, ExecError, Report};
pub use status::MachineStatus;
pub use store::{MachineStore, StoreError, Stored};
pub use work::{run_key, BookEntry, SubmissionBook, TrainingWork};

/// How long after a round's last deadline its machines are kept: covers the CLTV margin of
/// the hold invoices and late Lightning reports.
pub const RETIRE_SLACK_SECS: u64 = 600;

/// The kinds of one training round.
pub const ROUND_KINDS: [L402Kind; 7] = [
    L402Kind::RoundOpen,
    L402Kind::Submission,
    L402Kind::EscrowOffer,
    L402Kind::EscrowLock,
    L402Kind::Attestation,
    L402Kind::Checkpoint,
    L402Kind::SubmissionRefusal,
];

/// The subscription filter of the round events of `runs` (the `n` tag names the run).
pub fn round_filter<'a>(runs: impl IntoIterator<Item = &'a RunId>) -> Filter {
    Filter::new()
        .kinds(ROUND_KINDS.iter().map(|k| k.kind()))
        .custom_tags(
            SingleLetterTag::lowercase(Alphabet::N),
            runs.into_iter().map(|r| r.as_str().to_owned()),
        )
}

/// The node's side of the driver: the durable store, and a queue of actions the runtime then
/// executes in order.
#[derive(Debug)]
pub struct NodeEffects {
    store: MachineStore,
    queue: Vec<(MachineKey, Action)>,
}

impl Effects<MachineKey> for NodeEffects {
    type Error = StoreError;

    fn persist(&mut self, key: &MachineKey, machine: &Machine) -> Result<(), StoreError> {
        self.store.put(key, &machine.to_bytes())
    }

    fn execute(&mut self, key: &MachineKey, actions: Vec<Action>) {
        self.queue
            .extend(actions.into_iter().map(|a| (key.clone(), a)));
    }

    fn forget(&mut self, key: &MachineKey) {
        if let Err(e) = self.store.remove(key) {
            tracing::warn!(machine = %key, error = %e, "could not remove a retired machine's state");
        }
    }
}

/// Errors starting the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The machine store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A persisted machine does not restore: the node stops rather than lose an escrow.
    #[error("machine {key}: {source}")]
    Restore {
        /// Which.
        key: MachineKey,
        /// Why.
        source: l402_protocol::round::PersistError,
    },
}

/// Unix seconds now (the node's one wall-clock read for protocol times).
pub(crate) fn unix_now() -> UnixTime {
    Timestamp::now().as_secs()
}

/// What a running runtime talks to besides its components.
#[derive(Debug)]
pub struct RunHooks {
    /// Fires to stop the loop.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// New machines from the role tasks.
    pub machines: Option<mpsc::UnboundedReceiver<(MachineKey, Machine)>>,
    /// Every verified event received, for the role tasks.
    pub events: Option<tokio::sync::broadcast::Sender<VerifiedAny>>,
    /// The machines' status after every step.
    pub status: Option<tokio::sync::watch::Sender<Vec<MachineStatus>>>,
}

impl RunHooks {
    /// Only a stop signal.
    pub fn stop_only(stop: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            stop,
            machines: None,
            events: None,
            status: None,
        }
    }
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A node's role machines over its real components.
#[derive(Debug)]
pub struct Runtime {
    keys: Keys,
    driver: Driver<MachineKey>,
    store: MachineStore,
    components: Components,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports_rx: mpsc::UnboundedReceiver<Report>,
}

impl Runtime {
    /// Start: restore every persisted machine and resume it (re-executing what may not have
    /// run), then re-report the state of every hold invoice, so a worker that crashed while its
    /// HTLCs were held learns of them again.
    pub async fn start(
        keys: Keys,
        store: MachineStore,
        components: Components,
    ) -> Result<Self, RuntimeError> {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let mut rt = Self {
            keys,
            driver: Driver::new(),
            store,
            components,
            reports_tx,
            reports_rx,
        };
        let stored = rt.store.load()?;
        for s in &stored {
            rt.driver
                .restore(s.key.clone(), s.key.role, rt.keys.clone(), &s.bytes)
                .map_err(|source| RuntimeError::Restore {
                    key: s.key.clone(),
                    source,
                })?;
        }
        let now = unix_now();
        for s in stored {
            tracing::info!(machine = %s.key, "resuming");
            let mut fx = rt.effects();
            let d = rt.driver.resume(now, &s.key, &mut fx);
            rt.after(d, fx).await;
        }
        for h in rt.components.lightning.holds() {
            let input = match h.state {
                l402_protocol::hold::HoldState::Claimable { amount_msat, .. } => Input::HtlcHeld {
                    payment_hash: h.payment_hash,
                    amount_msat,
                },
                l402_protocol::hold::HoldState::Claimed { .. } => Input::HtlcClaimed {
                    payment_hash: h.payment_hash,
                },
                l402_protocol::hold::HoldState::Failed { .. } => Input::HtlcFailed {
                    payment_hash: h.payment_hash,
                },
                _ => continue,
            };
            rt.route(input).await;
        }
        Ok(rt)
    }

    fn effects(&self) -> NodeEffects {
        // The store is a directory path: cloning it keeps the borrow off `self`, so the driver
        // can be borrowed mutably beside the effects.
        NodeEffects {
            store: self.store.clone(),
            queue: Vec::new(),
        }
    }

    /// The live machines.
    pub fn driver(&self) -> &Driver<MachineKey> {
        &self.driver
    }

    /// The runs this node has machines in.
    pub fn runs(&self) -> BTreeSet<RunId> {
        self.driver.iter().map(|(k, _)| k.run.clone()).collect()
    }

    async fn after(&mut self, delivery: Delivery, fx: NodeEffects) {
        if let Delivery::PersistFailed(e) = &delivery {
            tracing::error!(error = %e, "machine state not persisted: its actions were not executed");
        }
        for (key, action) in fx.queue {
            // Each action runs in the context of the round open of the machine that returned it.
            let Some(open) = self.driver.get(&key).map(|m| m.round_open().clone()) else {
                tracing::debug!(machine = %key, "action of a retired machine dropped");
                continue;
            };
            if let Err(e) = self
                .components
                .execute(&key, &open, action, &self.reports_tx)
                .await
            {
                tracing::warn!(machine = %key, error = %e, "action failed");
            }
        }
    }

    /// Add a new machine and give it its first tick.
    pub async fn add(&mut self, key: MachineKey, machine: Machine) {
        tracing::info!(machine = %key, "machine started");
        self.driver.insert(key.clone(), machine);
        self.handle(key, Input::Tick).await;
    }

    /// Hand `input` to one machine.
    pub async fn handle(&mut self, key: MachineKey, input: Input) {
        let mut fx = self.effects();
        let d = self.driver.handle(unix_now(), &key, input, &mut fx);
        self.after(d, fx).await;
    }

    /// Route `input` to every machine it concerns.
    pub async fn route(&mut self, input: Input) {
        let now = unix_now();
        for key in self.driver.targets(&input) {
            let mut fx = self.effects();
            let d = self.driver.handle(now, &key, input.clone(), &mut fx);
            self.after(d, fx).await;
        }
    }

    /// A tick: deadlines, then retirement of finished rounds.
    pub async fn tick(&mut self) {
        self.route(Input::Tick).await;
        let mut fx = self.effects();
        let gone = self
            .driver
            .retire_finished(unix_now(), RETIRE_SLACK_SECS, &mut fx);
        for k in gone {
            tracing::info!(machine = %k, "retired");
        }
    }

    /// Hand a report to the driver.
    pub async fn report(&mut self, r: Report) {
        match r.key {
            Some(key) => self.handle(key, r.input).await,
            None => self.route(r.input).await,
        }
    }

    /// Run until `stop` fires: relay notifications (round opens of every run, and every round
    /// event of the runs this node has machines in), Lightning events, reports, new machines
    /// from the role tasks, and ticks every `tick`. Every verified event is also handed to
    /// `hooks.events` (the role tasks decide from round opens whether to join), and after every
    /// step the machines' status is published on `hooks.status`.
    pub async fn run(mut self, tick: Duration, mut hooks: RunHooks) -> Self {
        let client = self.components.discovery.client().clone();
        let mut notes = client.notifications();
        let opens_id = nostr_sdk::prelude::SubscriptionId::new("l402-round-opens");
        let rounds_id = nostr_sdk::prelude::SubscriptionId::new("l402-rounds");
        if let Err(e) = client
            .subscribe_with_id(
                opens_id,
                Filter::new().kinds([L402Kind::RoundOpen.kind(), L402Kind::Checkpoint.kind()]),
                None,
            )
            .await
        {
            tracing::warn!(error = %e, "round-open subscription failed");
        }
        let mut subscribed: BTreeSet<RunId> = BTreeSet::new();
        let mut ln = Box::pin(self.components.lightning.subscribe());
        let mut ticker = tokio::time::interval(tick);
        self.publish_status(&hooks);
        loop {
            let runs = self.runs();
            if runs != subscribed && !runs.is_empty() {
                match client
                    .subscribe_with_id(rounds_id.clone(), round_filter(&runs), None)
                    .await
                {
                    Ok(_) => subscribed = runs,
                    Err(e) => tracing::warn!(error = %e, "round subscription failed"),
                }
            }
            tokio::select! {
                _ = hooks.stop.changed() => break,
                Some(r) = self.reports_rx.recv() => self.report(r).await,
                Some((key, machine)) = recv_opt(&mut hooks.machines) => {
                    if !self.driver.contains(&key) {
                        self.add(key, machine).await;
                    }
                }
                Some(ev) = futures::StreamExt::next(&mut ln) => {
                    if let Some(input) = lightning_input(&ev) {
                        let mark = match &input {
                            Input::HtlcHeld { payment_hash, .. } => Some((payment_hash, "held")),
                            Input::HtlcClaimed { payment_hash } => Some((payment_hash, "claimed")),
                            Input::HtlcFailed { payment_hash } => Some((payment_hash, "failed")),
                            _ => None,
                        };
                        if let Some((h, what)) = mark {
                            self.components.timeline.hold(&h.to_hex(), what);
                        }
                        self.route(input).await;
                    }
                }
                Ok(note) = notes.recv() => {
                    if let RelayPoolNotification::Event { event, .. } = note {
                        match validate_event(&event, Timestamp::now()) {
                            Ok(v) => {
                                if let Some(tx) = &hooks.events {
                                    let _ = tx.send(v.clone());
                                }
                                self.on_event(v).await;
                            }
                            Err(e) => tracing::debug!(event_id = %event.id, reason = %e, "event refused"),
                        }
                    }
                }
                _ = ticker.tick() => self.tick().await,
            }
            self.publish_status(&hooks);
        }
        self
    }

    fn publish_status(&self, hooks: &RunHooks) {
        if let Some(tx) = &hooks.status {
            let st = status::machines(&self.driver);
            tx.send_if_modified(|old| {
                if *old == st {
                    false
                } else {
                    *old = st;
                    true
                }
            });
        }
    }

    /// A verified event reached the node.
    pub async fn on_event(&mut self, ev: VerifiedAny) {
        if let VerifiedAny::Submission(s) = &ev {
            self.components.book.insert(
                l402_protocol::events::SubmissionId::of_event(s.event()),
                work::BookEntry {
                    author: s.author(),
                    size: s.size,
                    round: (s.run_id.clone(), s.round),
                    blob: s.blob,
                    created_at: s.event().created_at.as_secs(),
                },
            );
        }
        self.route(Input::Event(ev)).await;
    }
}
