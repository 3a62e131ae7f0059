//! Wall-clock marks of what this node did in each round and to each hold invoice, for the
//! status JSON and the demo's phase breakdown (train, compress, upload, validate, quorum,
//! settle). Observability only: no machine reads it, and it is not persisted (a restarted node
//! starts a new timeline).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Marks per round and per payment hash, in UNIX milliseconds (the first of each name wins),
/// and durations of repeated work (validator evaluations).
#[derive(Debug, Clone, Default)]
pub struct Timeline(Arc<Mutex<Marks>>);

/// What [`Timeline::snapshot`] returns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Marks {
    /// `run/round` → mark → UNIX ms.
    pub rounds: BTreeMap<String, BTreeMap<String, u64>>,
    /// Payment hash (hex) → `held` / `claim_requested` / `claimed` / `failed` → UNIX ms.
    pub holds: BTreeMap<String, BTreeMap<String, u64>>,
    /// `run/round` → work name → durations, ms.
    pub durations: BTreeMap<String, BTreeMap<String, Vec<u64>>>,
}

/// The wall clock in UNIX milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Marks kept per map before the oldest entries are dropped (a long-running node).
const MAX_ENTRIES: usize = 4096;

fn first<K: Ord + Clone>(m: &mut BTreeMap<K, BTreeMap<String, u64>>, k: K, what: &str, at: u64) {
    if m.len() >= MAX_ENTRIES && !m.contains_key(&k) {
        if let Some(oldest) = m.keys().next().cloned() {
            m.remove(&oldest);
        }
    }
    m.entry(k).or_default().entry(what.to_owned()).or_insert(at);
}

impl Timeline {
    fn lock(&self) -> MutexGuard<'_, Marks> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark `what` in round `round` of `run` now.
    pub fn round(&self, run: &str, round: u64, what: &str) {
        self.round_at(run, round, what, now_ms());
    }

    /// Mark `what` in round `round` of `run` at `at_ms`.
    pub fn round_at(&self, run: &str, round: u64, what: &str, at_ms: u64) {
        first(
            &mut self.lock().rounds,
            format!("{run}/{round}"),
            what,
            at_ms,
        );
    }

    /// Mark `what` for the hold invoice (or HTLC) of `payment_hash` now.
    pub fn hold(&self, payment_hash: &str, what: &str) {
        first(
            &mut self.lock().holds,
            payment_hash.to_owned(),
            what,
            now_ms(),
        );
    }

    /// Record one duration of `what` in round `round` of `run`.
    pub fn duration(&self, run: &str, round: u64, what: &str, ms: u64) {
        let mut m = self.lock();
        let v = m
            .durations
            .entry(format!("{run}/{round}"))
            .or_default()
            .entry(what.to_owned())
            .or_default();
        if v.len() < MAX_ENTRIES {
            v.push(ms);
        }
    }

    /// A copy of every mark.
    pub fn snapshot(&self) -> Marks {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_mark_wins_and_durations_accumulate() {
        let t = Timeline::default();
        t.round_at("r", 1, "open", 10);
        t.round_at("r", 1, "open", 20);
        t.hold("ab", "held");
        t.duration("r", 1, "evaluate", 5);
        t.duration("r", 1, "evaluate", 7);
        let s = t.snapshot();
        assert_eq!(s.rounds["r/1"]["open"], 10);
        assert!(s.holds["ab"].contains_key("held"));
        assert_eq!(s.durations["r/1"]["evaluate"], vec![5, 7]);
    }
}
