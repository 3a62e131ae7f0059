//! The one driver of the role machines, shared by `l402-node` and the simulator.
//!
//! A shell (the node over real IO, the simulator over fakes) owns a [`Driver`] and an
//! [`Effects`] implementation. The driver does what is the same for both:
//!
//! - it keeps a node's machines by key (the simulator keys by `(actor, round)`, the node by
//!   [`MachineKey`]: run, round and role);
//! - it routes each input to the machines it concerns ([`Driver::route`]): events by the run and
//!   round their signed content names, Lightning reports by the payment hash a peer machine owns,
//!   ticks to all;
//! - **persist before execute**: after every `handle` it calls [`Effects::persist`] and executes
//!   the returned actions only if that succeeded, so a crash between the two re-derives the
//!   actions on [`Driver::resume`] (every action is idempotent, L2T-03 §persistence);
//! - after a restart it restores each persisted machine and resumes it;
//! - it retires machines whose round is over, and tells the shell to forget their state.
//!
//! The two shells differ only in [`Effects::execute`]: the node publishes through its outbox,
//! calls ldk-node, iroh-blobs and candle; the simulator's fast mode does the same against
//! in-memory fakes.
//!
//! Spec: specs/L2T-03-round.md#driver

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use nostr::Keys;
use serde::{Deserialize, Serialize};

use super::{Action, Coordinator, Input, Peer, PersistError, PreparedOffer, Validator};
use crate::events::{PaymentHash, RoundOpen, RunId, UnixTime, Verified, VerifiedAny};

/// Which role machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The payer of a round.
    Coordinator,
    /// A worker.
    Peer,
    /// A committee member.
    Validator,
}

impl Role {
    /// Lower-case name, as used in file names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Peer => "peer",
            Role::Validator => "validator",
        }
    }

    /// Parse [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Role::Coordinator, Role::Peer, Role::Validator]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The node's key of a machine: one per (run, round, role).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MachineKey {
    /// Run.
    pub run: RunId,
    /// Round.
    pub round: u64,
    /// Role.
    pub role: Role,
}

impl fmt::Display for MachineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.run, self.round, self.role)
    }
}

/// One role machine: the protocol's own [`Coordinator`], [`Peer`] or [`Validator`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Machine {
    /// Payer.
    Coordinator(Coordinator),
    /// Worker.
    Peer(Peer),
    /// Committee member.
    Validator(Validator),
}

impl Machine {
    /// Its role.
    pub fn role(&self) -> Role {
        match self {
            Machine::Coordinator(_) => Role::Coordinator,
            Machine::Peer(_) => Role::Peer,
            Machine::Validator(_) => Role::Validator,
        }
    }

    /// The round open it was built from.
    pub fn round_open(&self) -> &Verified<RoundOpen> {
        match self {
            Machine::Coordinator(m) => m.round_open(),
            Machine::Peer(m) => m.round_open(),
            Machine::Validator(m) => m.round_open(),
        }
    }

    /// Handle one input.
    pub fn handle(&mut self, now: UnixTime, input: Input) -> Vec<Action> {
        match self {
            Machine::Coordinator(m) => m.handle(now, input),
            Machine::Peer(m) => m.handle(now, input),
            Machine::Validator(m) => m.handle(now, input),
        }
    }

    /// The earliest time an [`Input::Tick`] can do anything to this machine (see
    /// [`Peer::next_wake`]); the coordinator and validators are ticked every time (`Some(0)`).
    pub fn next_wake(&self) -> Option<UnixTime> {
        match self {
            Machine::Peer(m) => m.next_wake(),
            Machine::Coordinator(_) | Machine::Validator(_) => Some(0),
        }
    }

    /// The persisted state.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Machine::Coordinator(m) => m.to_bytes(),
            Machine::Peer(m) => m.to_bytes(),
            Machine::Validator(m) => m.to_bytes(),
        }
    }

    /// Restore a machine of `role` from its persisted state.
    pub fn from_bytes(role: Role, keys: Keys, bytes: &[u8]) -> Result<Self, PersistError> {
        Ok(match role {
            Role::Coordinator => Machine::Coordinator(Coordinator::from_bytes(keys, bytes)?),
            Role::Peer => Machine::Peer(Peer::from_bytes(keys, bytes)?),
            Role::Validator => Machine::Validator(Validator::from_bytes(keys, bytes)?),
        })
    }

    /// After a restore: re-emit every action that may not have run.
    pub fn resume(&mut self, now: UnixTime) -> Vec<Action> {
        match self {
            Machine::Coordinator(m) => m.resume(now),
            Machine::Peer(m) => m.resume(now),
            Machine::Validator(m) => m.resume(now),
        }
    }

    /// Whether a Lightning report about `hash` concerns this machine (a peer's tranche).
    pub fn owns_payment(&self, hash: &PaymentHash) -> bool {
        match self {
            Machine::Peer(p) => p.tranches().iter().any(|t| &t.payment_hash == hash),
            _ => false,
        }
    }
}

/// The run and round an event's signed content names, for the round's own kinds.
pub fn scope_of(ev: &VerifiedAny) -> Option<(&RunId, u64)> {
    Some(match ev {
        VerifiedAny::RoundOpen(o) => (&o.run_id, o.round),
        VerifiedAny::Submission(s) => (&s.run_id, s.round),
        VerifiedAny::EscrowOffer(o) => (&o.run_id, o.round),
        VerifiedAny::EscrowLock(l) => (&l.run_id, l.round),
        VerifiedAny::Attestation(a) => {
            let b = a.attestation.body();
            (&b.run_id, b.round)
        }
        VerifiedAny::Checkpoint(c) => (&c.run_id, c.round),
        VerifiedAny::SubmissionRefusal(r) => (&r.run_id, r.round),
        _ => return None,
    })
}

/// What differs between the node and the simulator: where state is persisted and how actions
/// are executed.
pub trait Effects<K> {
    /// Why persisting failed.
    type Error: fmt::Display;

    /// Durably store `machine`'s state ([`Machine::to_bytes`]) under `key`. The returned
    /// actions are executed only if this succeeds.
    fn persist(&mut self, key: &K, machine: &Machine) -> Result<(), Self::Error>;

    /// Execute the actions machine `key` returned, in order.
    fn execute(&mut self, key: &K, actions: Vec<Action>);

    /// Machine `key` was retired: its persisted state may go.
    fn forget(&mut self, key: &K) {
        let _ = key;
    }
}

/// What became of one input handed to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// No machine has this key (not ours, or retired).
    NoMachine,
    /// Handled, persisted and executed (this many actions).
    Executed(usize),
    /// Handled, but persisting failed: nothing was executed; [`Driver::resume`] after a
    /// restart re-derives the actions.
    PersistFailed(String),
}

/// A node's role machines and the loop around them.
#[derive(Debug)]
pub struct Driver<K: Ord> {
    /// Boxed: a map node moves its entries on insert and remove, and a machine is large.
    machines: BTreeMap<K, Box<Machine>>,
}

impl<K: Ord> Default for Driver<K> {
    fn default() -> Self {
        Self {
            machines: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone> Driver<K> {
    /// No machines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live machines.
    pub fn len(&self) -> usize {
        self.machines.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    /// Whether `key` has a machine.
    pub fn contains(&self, key: &K) -> bool {
        self.machines.contains_key(key)
    }

    /// The machine of `key`.
    pub fn get(&self, key: &K) -> Option<&Machine> {
        self.machines.get(key).map(|m| &**m)
    }

    /// Hands machine `key`, a coordinator, an offer computed ahead with
    /// [`Coordinator::prepare_offer`] on a shared borrow (see there); nothing happens until the
    /// submission's delivery. Ignored for any other machine.
    pub fn stash_offer(&mut self, key: &K, offer: PreparedOffer) {
        if let Some(Machine::Coordinator(c)) = self.machines.get_mut(key).map(|m| &mut **m) {
            c.stash_offer(offer);
        }
    }

    /// Every machine, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Machine)> {
        self.machines.iter().map(|(k, m)| (k, &**m))
    }

    /// The machines a tick at `now` can do anything to (their [`Machine::next_wake`] has come),
    /// in key order: a shell ticks these and skips the rest, which the tick would leave as they
    /// are. A thousand peers waiting for their validators then cost no tick.
    pub fn tick_targets(&self, now: UnixTime) -> Vec<K> {
        self.machines
            .iter()
            .filter(|(_, m)| m.next_wake().is_some_and(|w| w <= now))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Add a new machine. It acts on its first input (give it a [`Input::Tick`] to start).
    pub fn insert(&mut self, key: K, machine: Machine) {
        self.machines.insert(key, Box::new(machine));
    }

    /// Hand `input` to machine `key`: handle, persist, then execute.
    pub fn handle<E: Effects<K>>(
        &mut self,
        now: UnixTime,
        key: &K,
        input: Input,
        fx: &mut E,
    ) -> Delivery {
        let Some(m) = self.machines.get_mut(key) else {
            return Delivery::NoMachine;
        };
        let actions = m.handle(now, input);
        self.finish(key, actions, fx)
    }

    /// The machines of `keys` (those that exist), taken out of the driver in key order. This
    /// is [`Driver::handle`] split in two for a shell that hands inputs to distinct machines at
    /// once (the simulator spreads [`Machine::handle`] over threads): call `handle` on each,
    /// give every machine back with [`Driver::put_back`], then [`Driver::finish`] each result
    /// in the shell's order. Handling is pure, so the outcome does not depend on how the calls
    /// were spread. (Taken rather than borrowed: a batch touches a few machines of many, and
    /// a map hands out several mutable borrows only by walking every entry between them.)
    pub fn take_machines(&mut self, keys: &BTreeSet<K>) -> Vec<(K, Box<Machine>)> {
        keys.iter()
            .filter_map(|k| self.machines.remove_entry(k))
            .collect()
    }

    /// Give back machines [`Driver::take_machines`] took.
    pub fn put_back(&mut self, machines: impl IntoIterator<Item = (K, Box<Machine>)>) {
        self.machines.extend(machines);
    }

    /// The second half of [`Driver::handle`]: persist machine `key` as it is now, then execute
    /// the `actions` its last `handle` returned (nothing if persisting fails).
    pub fn finish<E: Effects<K>>(&mut self, key: &K, actions: Vec<Action>, fx: &mut E) -> Delivery {
        let Some(m) = self.machines.get(key) else {
            return Delivery::NoMachine;
        };
        if let Err(e) = fx.persist(key, m) {
            return Delivery::PersistFailed(e.to_string());
        }
        let n = actions.len();
        fx.execute(key, actions);
        Delivery::Executed(n)
    }

    /// The keys `input` concerns: events by the run and round they name, Lightning reports by
    /// the payment hash a peer machine owns, ticks every machine. `EvalDone` and
    /// `CheckpointReady` answer one machine's request: the shell hands them to that key.
    pub fn targets(&self, input: &Input) -> Vec<K> {
        let pick = |f: &dyn Fn(&Machine) -> bool| -> Vec<K> {
            self.machines
                .iter()
                .filter(|(_, m)| f(m))
                .map(|(k, _)| k.clone())
                .collect()
        };
        match input {
            Input::Tick => self.machines.keys().cloned().collect(),
            Input::Event(ev) => match scope_of(ev) {
                Some((run, round)) => pick(&|m| {
                    let o = m.round_open();
                    o.round == round && &o.run_id == run
                }),
                None => Vec::new(),
            },
            Input::InvoiceCreated { payment_hash, .. }
            | Input::HtlcHeld { payment_hash, .. }
            | Input::HtlcClaimed { payment_hash }
            | Input::HtlcFailed { payment_hash } => pick(&|m| m.owns_payment(payment_hash)),
            _ => Vec::new(),
        }
    }

    /// Route `input` to every machine it concerns ([`Driver::targets`]); returns how many
    /// machines handled it.
    pub fn route<E: Effects<K>>(&mut self, now: UnixTime, input: Input, fx: &mut E) -> usize {
        let keys = self.targets(&input);
        let mut handled = 0;
        for key in &keys {
            if matches!(
                self.handle(now, key, input.clone(), fx),
                Delivery::Executed(_)
            ) {
                handled += 1;
            }
        }
        handled
    }

    /// Restore machine `key` of `role` from its persisted bytes (after a restart); call
    /// [`Driver::resume`] next.
    pub fn restore(
        &mut self,
        key: K,
        role: Role,
        keys: Keys,
        bytes: &[u8],
    ) -> Result<(), PersistError> {
        let m = Machine::from_bytes(role, keys, bytes)?;
        self.machines.insert(key, Box::new(m));
        Ok(())
    }

    /// Resume machine `key` after a restore: persist, then execute every action that may not
    /// have run before the crash.
    pub fn resume<E: Effects<K>>(&mut self, now: UnixTime, key: &K, fx: &mut E) -> Delivery {
        let Some(m) = self.machines.get_mut(key) else {
            return Delivery::NoMachine;
        };
        let actions = m.resume(now);
        if let Err(e) = fx.persist(key, m) {
            return Delivery::PersistFailed(e.to_string());
        }
        let n = actions.len();
        fx.execute(key, actions);
        Delivery::Executed(n)
    }

    /// Retire every machine `done` selects; the shell forgets their persisted state. The
    /// retired machines are handed back, so that a shell may drop them where it likes (a
    /// thousand-peer round's machines take a while to free; the simulator frees them on an idle
    /// core).
    pub fn retire_where<E: Effects<K>>(
        &mut self,
        fx: &mut E,
        mut done: impl FnMut(&K, &Machine) -> bool,
    ) -> Vec<(K, Box<Machine>)> {
        let gone: Vec<K> = self
            .machines
            .iter()
            .filter(|(k, m)| done(k, m))
            .map(|(k, _)| k.clone())
            .collect();
        gone.into_iter()
            .filter_map(|k| {
                let m = self.machines.remove(&k)?;
                fx.forget(&k);
                Some((k, m))
            })
            .collect()
    }

    /// Retire machines whose round is over: every deadline (holdback included) passed more than
    /// `slack` seconds ago, so no HTLC of theirs can still be pending.
    pub fn retire_finished<E: Effects<K>>(
        &mut self,
        now: UnixTime,
        slack: u64,
        fx: &mut E,
    ) -> Vec<K> {
        self.retire_where(fx, |_, m| {
            now > m.round_open().last_deadline().saturating_add(slack)
        })
        .into_iter()
        .map(|(k, _)| k)
        .collect()
    }
}
