//! The simulator's side of the shared driver (`l402_protocol::round::Driver`): its fake store and
//! its executor. The loop itself — routing, persist before execute, resume, retirement — is the
//! protocol's, exactly as `l402-node` runs it.

use std::convert::Infallible;
use std::rc::Rc;

use l402_protocol::events::VerifiedAny;
use l402_protocol::round::{Action, Effects, Machine};
use rand::Rng;

use super::Simulation;
use crate::actors::ActorId;

/// The simulator's effects for one delivery.
pub(crate) struct SimEffects<'a> {
    pub(crate) sim: &'a mut Simulation,
    /// The scenario's crash probability applies to this input (not to ticks).
    pub(crate) crashable: bool,
    /// The input was an old event served by a stale relay: acting on it is a replay accepted.
    pub(crate) replay: Option<Rc<VerifiedAny>>,
}

impl Effects<(ActorId, u64)> for SimEffects<'_> {
    type Error = Infallible;

    /// The fake store (`Simulation::persisted`) is written when an actor crashes, from the live
    /// machine: nothing mutates a machine between the end of `handle` and the crash, so those
    /// are the same bytes a durable write here would hold, without serialising every machine on
    /// every input.
    fn persist(&mut self, _key: &(ActorId, u64), _machine: &Machine) -> Result<(), Infallible> {
        Ok(())
    }

    /// Execute in order; with the scenario's crash probability the node crashes after a random
    /// prefix of the actions.
    fn execute(&mut self, key: &(ActorId, u64), actions: Vec<Action>) {
        let (a, r) = *key;
        if let Some(ev) = &self.replay {
            if actions.iter().any(|x| !matches!(x, Action::Ignored { .. })) {
                self.sim.stats.replays_accepted.push(format!(
                    "round {r}: actor {a} acted on replayed event {} ({:?})",
                    ev.event().id,
                    ev.kind()
                ));
            }
        }
        let crash = self.sim.sc.faults.crash;
        if self.crashable && crash > 0.0 && self.sim.rng.gen_bool(crash) {
            let cut = self.sim.rng.gen_range(0..=actions.len());
            let done: Vec<Action> = actions.into_iter().take(cut).collect();
            self.sim.execute(a, r, done);
            self.sim.crash(a);
        } else {
            self.sim.execute(a, r, actions);
        }
    }

    fn forget(&mut self, key: &(ActorId, u64)) {
        self.sim.persisted.remove(key);
    }
}
