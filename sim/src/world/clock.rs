//! The simulated clock: Unix seconds and a block height that advances every `block_secs`.
//!
//! Spec: specs/L2T-12-sim.md#world

use l402_protocol::events::UnixTime;

/// Simulated time and chain height. Nothing in the simulator reads the real clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimClock {
    /// Current time, Unix seconds.
    pub now: UnixTime,
    genesis: UnixTime,
    block_secs: u64,
}

impl SimClock {
    /// A clock at `genesis` (height 0) with one block every `block_secs` (clamped to ≥ 1).
    pub fn new(genesis: UnixTime, block_secs: u64) -> Self {
        Self {
            now: genesis,
            genesis,
            block_secs: block_secs.max(1),
        }
    }

    /// Height of the chain tip at time `t`.
    pub fn height_at(&self, t: UnixTime) -> u64 {
        t.saturating_sub(self.genesis) / self.block_secs
    }

    /// Height of the chain tip now.
    pub fn height(&self) -> u64 {
        self.height_at(self.now)
    }

    /// Time at which block `h` is mined.
    pub fn time_of_height(&self, h: u64) -> UnixTime {
        self.genesis
            .saturating_add(h.saturating_mul(self.block_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights_follow_time() {
        let mut c = SimClock::new(1000, 30);
        assert_eq!(c.height(), 0);
        c.now = 1059;
        assert_eq!(c.height(), 1);
        assert_eq!(c.time_of_height(2), 1060);
        assert_eq!(c.height_at(1060), 2);
    }
}
