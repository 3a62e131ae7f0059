//! A token bucket per connection.
//!
//! nostr-relay-builder has its own limiter, but it refills in whole-second steps with a
//! capacity equal to the per-minute rate and cannot be given a burst size, so the gate keeps
//! its own and configures the inner relay as unlimited.

use std::time::Instant;

/// A token bucket: `capacity` tokens, refilled at `per_minute / 60` tokens per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    refill_per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_minute: u32, burst: u32, now: Instant) -> Self {
        let capacity = f64::from(burst.max(1));
        Self {
            capacity,
            tokens: capacity,
            refill_per_sec: f64::from(per_minute) / 60.0,
            last: now,
        }
    }

    /// Takes one token if there is one; `false` means "rate limited".
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(60, 5, t0);
        for _ in 0..5 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0), "the burst is spent");
        // 60/min = one token per second.
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        assert!(b.try_take(t0 + Duration::from_millis(1_000)));
        assert!(!b.try_take(t0 + Duration::from_millis(1_100)));
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(3_600);
        for _ in 0..5 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
    }
}
