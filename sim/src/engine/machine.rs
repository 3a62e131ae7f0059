//! One role state machine of one actor in one round: the protocol's own `Coordinator`, `Peer`
//! or `Validator`, unchanged. The simulator only calls `handle`, `to_bytes`, `from_bytes` and
//! `resume`, exactly as `l402-node` does.

use l402_protocol::round::{Action, Coordinator, Input, Peer, PersistError, Validator};
use nostr::Keys;

/// A role machine.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Machine {
    Coordinator(Coordinator),
    Peer(Peer),
    Validator(Validator),
}

impl Machine {
    pub(crate) fn handle(&mut self, now: u64, input: Input) -> Vec<Action> {
        match self {
            Machine::Coordinator(m) => m.handle(now, input),
            Machine::Peer(m) => m.handle(now, input),
            Machine::Validator(m) => m.handle(now, input),
        }
    }

    /// The persisted state (what the shell writes after every `handle`).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        match self {
            Machine::Coordinator(m) => m.to_bytes(),
            Machine::Peer(m) => m.to_bytes(),
            Machine::Validator(m) => m.to_bytes(),
        }
    }

    /// Restore a machine of the same role from `bytes` (what the shell does after a crash).
    pub(crate) fn restore(&self, keys: Keys, bytes: &[u8]) -> Result<Machine, PersistError> {
        Ok(match self {
            Machine::Coordinator(_) => Machine::Coordinator(Coordinator::from_bytes(keys, bytes)?),
            Machine::Peer(_) => Machine::Peer(Peer::from_bytes(keys, bytes)?),
            Machine::Validator(_) => Machine::Validator(Validator::from_bytes(keys, bytes)?),
        })
    }

    /// After a restore: re-emit every action that may not have run.
    pub(crate) fn resume(&mut self, now: u64) -> Vec<Action> {
        match self {
            Machine::Coordinator(m) => m.resume(now),
            Machine::Peer(m) => m.resume(now),
            Machine::Validator(m) => m.resume(now),
        }
    }
}
