//! `FakeLossModel`: the fast mode's held-out loss, a FAKE standing in for candle's evaluation of the
//! merged checkpoint (real mode measures it).
//!
//! The checkpoint applies the mean of the round's merged updates. An update's true quality `q`
//! ([`super::BlobTruth`]) is the held-out loss reduction it gives alone; relative to an honest
//! update's mean quality `q₀` (`peers.quality`) the mean of the merged ones is the round's step
//! `s = clamp(mean(q) / q₀, −2, 2)`: about 1 for an honest round, 0.7 with only stale trainers
//! merged, 0 when nothing merged, negative when merged sign-flips outweigh the honest updates.
//! The model's progress `P` along the attack-free trajectory adds up the steps, and the loss is
//! a function of it:
//!
//! ```text
//! P_r = P_{r−1} + s_r
//! L(P) = floor + (genesis − floor) · (w · exp(−(P / tau)^shape) + (1 − w) · exp(−P / tail))
//!                                                                for P ≥ 0
//! L(P) = 2 · genesis − L(−P)                                     for P < 0
//! ```
//!
//! The curve is the real swarm's: slow in the first round (SparseLoCo's error feedback and the
//! outer momentum build up), steepest in rounds 2–4 (the S-shaped first term), then a slow tail
//! (the second term) as fewer honest updates clear the pass threshold. A round that merged
//! nothing leaves the loss where it was, stale updates slow it, a merged harmful update walks it
//! back (below genesis, a reverse step raises the loss as much as a forward step lowers it).
//!
//! The defaults are fitted to real-mode runs (`sim/scenarios/real-calibration.toml`,
//! `real-mixed.toml`, `real-20.toml`); L2T-12 §Loss model gives the data and the fit.
//!
//! Spec: specs/L2T-12-sim.md#loss-model

use serde::{Deserialize, Serialize};

/// The loss model's parameters (scenario section `[loss]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FakeLossModel {
    /// Held-out loss of the genesis checkpoint (nats per byte in real mode).
    pub genesis: f64,
    /// The loss the model tends to with honest rounds.
    pub floor: f64,
    /// Weight of the fast, S-shaped term (the rest is the slow tail).
    pub weight: f64,
    /// Honest rounds the fast term takes to fall to 1/e.
    pub tau: f64,
    /// Shape of the fast term (1: exponential decay; above 1: a slow start).
    pub shape: f64,
    /// Honest rounds the slow tail takes to fall to 1/e.
    pub tail: f64,
}

/// Genesis held-out loss of the real model (`l402-node`'s byte-GPT on the shipped corpus).
pub const CALIBRATED_GENESIS: f64 = 5.5637;
/// Floor fitted to the real-mode runs (an extrapolation: the runs end at round 10, 2.58).
pub const CALIBRATED_FLOOR: f64 = 1.83;
/// Weight of the fast term, fitted.
pub const CALIBRATED_WEIGHT: f64 = 0.50;
/// Time constant of the fast term, fitted, in honest rounds.
pub const CALIBRATED_TAU: f64 = 2.69;
/// Shape of the fast term, fitted.
pub const CALIBRATED_SHAPE: f64 = 2.86;
/// Time constant of the slow tail, fitted, in honest rounds.
pub const CALIBRATED_TAIL: f64 = 10.1;
/// Largest step one round's merged updates take, in honest rounds (either way).
pub const MAX_STEP: f64 = 2.0;

impl Default for FakeLossModel {
    fn default() -> Self {
        Self {
            genesis: CALIBRATED_GENESIS,
            floor: CALIBRATED_FLOOR,
            weight: CALIBRATED_WEIGHT,
            tau: CALIBRATED_TAU,
            shape: CALIBRATED_SHAPE,
            tail: CALIBRATED_TAIL,
        }
    }
}

impl FakeLossModel {
    /// Whether the parameters make a model: finite, `0 ≤ floor < genesis`, `0 ≤ weight ≤ 1`,
    /// `tau > 0`, `0 < shape ≤ 8`, `tail > 0`.
    pub fn check(&self) -> Result<(), String> {
        let all = [
            self.genesis,
            self.floor,
            self.weight,
            self.tau,
            self.shape,
            self.tail,
        ];
        if all.iter().any(|x| !x.is_finite()) || !(0.0 <= self.floor && self.floor < self.genesis) {
            return Err("loss: need finite 0 <= floor < genesis".into());
        }
        if !(0.0..=1.0).contains(&self.weight)
            || self.tau <= 0.0
            || self.tail <= 0.0
            || !(0.0 < self.shape && self.shape <= 8.0)
        {
            return Err("loss: need 0 <= weight <= 1, tau > 0, tail > 0 and 0 < shape <= 8".into());
        }
        Ok(())
    }

    /// The step of a round that merged updates of true qualities `merged` (millionths), with
    /// `honest_quality` the honest mean `q₀`: in honest rounds, within ±[`MAX_STEP`].
    pub fn step(&self, merged: &[i64], honest_quality: i64) -> f64 {
        if merged.is_empty() || honest_quality <= 0 {
            return 0.0;
        }
        let mean = merged.iter().map(|q| *q as f64).sum::<f64>() / merged.len() as f64;
        (mean / honest_quality as f64).clamp(-MAX_STEP, MAX_STEP)
    }

    /// Held-out loss at progress `p` (honest rounds' worth of steps).
    pub fn at(&self, p: f64) -> f64 {
        let forward = |p: f64| {
            let fast = (-(p / self.tau).powf(self.shape)).exp();
            let slow = (-p / self.tail).exp();
            self.floor
                + (self.genesis - self.floor) * (self.weight * fast + (1.0 - self.weight) * slow)
        };
        if p >= 0.0 {
            forward(p)
        } else {
            2.0 * self.genesis - forward(-p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: i64 = 30_000;

    #[test]
    fn honest_rounds_follow_the_fitted_curve() {
        let m = FakeLossModel::default();
        assert_eq!(m.at(0.0), m.genesis);
        let mut p = 0.0;
        let mut last = m.genesis;
        for _ in 1..=10 {
            p += m.step(&[Q, Q / 2, 3 * Q / 2], Q);
            let l = m.at(p);
            assert!(l < last && l > m.floor, "{l}");
            last = l;
        }
        assert!((p - 10.0).abs() < 1e-9);
        // The calibration run (`real-calibration.toml`, L2T-12 §Loss model) within 0.1.
        let real = [
            5.2337, 4.6002, 3.7045, 3.0873, 2.9201, 2.8186, 2.7607, 2.6629, 2.6056, 2.5807,
        ];
        for (r, l) in real.iter().enumerate() {
            let fit = m.at(r as f64 + 1.0);
            assert!((fit - l).abs() < 0.1, "round {}: {fit} vs {l}", r + 1);
        }
    }

    #[test]
    fn the_loss_responds_to_what_was_merged() {
        let m = FakeLossModel::default();
        assert_eq!(m.step(&[], Q), 0.0, "nothing merged: no progress");
        let honest = m.step(&[Q; 7], Q);
        let stale = m.step(&[Q * 7 / 10; 7], Q);
        let one_flip = m.step(&[Q, Q, Q, Q, Q, Q, -Q], Q);
        let flips = m.step(&[Q, -Q, -Q], Q);
        assert!(honest > stale && stale > 0.0 && honest > one_flip && one_flip > 0.0);
        assert!(flips < 0.0, "a harmful majority walks the progress back");
        let l = |p: f64| m.at(p);
        assert!(l(3.0 + honest) < l(3.0 + stale) && l(3.0 + stale) < l(3.0));
        assert!(l(3.0 + flips) > l(3.0));
        // Below genesis the reverse step raises the loss; the clamp keeps it finite.
        assert!(l(-1.0) > m.genesis);
        assert_eq!(m.step(&[-1_000_000_000], Q), -MAX_STEP);
        assert!(l(-1e9).is_finite() && l(-1e9) <= 2.0 * m.genesis - m.floor + 1e-9);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let bad = [
            FakeLossModel {
                floor: 6.0,
                ..FakeLossModel::default()
            },
            FakeLossModel {
                floor: -1.0,
                ..FakeLossModel::default()
            },
            FakeLossModel {
                tau: 0.0,
                ..FakeLossModel::default()
            },
            FakeLossModel {
                shape: 0.0,
                ..FakeLossModel::default()
            },
            FakeLossModel {
                weight: 1.5,
                ..FakeLossModel::default()
            },
            FakeLossModel {
                tail: -1.0,
                ..FakeLossModel::default()
            },
            FakeLossModel {
                genesis: f64::NAN,
                ..FakeLossModel::default()
            },
        ];
        for m in bad {
            assert!(m.check().is_err(), "{m:?}");
        }
        assert!(FakeLossModel::default().check().is_ok());
    }
}
