//! A coordinator's progress through its run, persisted beside its round machines so a restarted
//! coordinator neither reopens a round nor loses the chain of checkpoints.
//!
//! Spec: specs/L2T-03-round.md#persistence-and-restart

use serde::{Deserialize, Serialize};

use crate::events::BlobHash;

/// Version of [`RunProgress`]'s encoding.
pub const RUN_PROGRESS_VERSION: u32 = 1;
/// Largest encoded [`RunProgress`] accepted (a run of ~10 000 rounds of history).
pub const MAX_RUN_PROGRESS_BYTES: usize = 4 * 1024 * 1024;

/// What a closed round produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    /// Round (0 = genesis).
    pub round: u64,
    /// Its checkpoint (hex).
    pub checkpoint: String,
    /// Submissions merged.
    pub merged: usize,
    /// Held-out loss of the checkpoint (fixed batch).
    pub heldout_loss: f32,
}

/// The coordinator's progress through one run (JSON, versioned).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunProgress {
    /// Encoding version, [`RUN_PROGRESS_VERSION`].
    pub v: u32,
    /// Last round opened.
    pub opened: u64,
    /// Last round whose checkpoint was published.
    pub closed: u64,
    /// Checkpoint the next round starts from.
    pub checkpoint: Option<BlobHash>,
    /// Its parent.
    pub prev: Option<BlobHash>,
    /// One line per closed round.
    #[serde(default)]
    pub history: Vec<RoundSummary>,
    /// A bounty run: what is left of the pool after the closed rounds' awards, in msat (a
    /// restarted sponsor offers no more than this; L2T-13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_left_msat: Option<u64>,
    /// Validators convicted by the run's audits (wrong-score evidence): never drawn again in
    /// this run (L2T-04 §audit).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub convicted: std::collections::BTreeSet<nostr::PublicKey>,
}

/// Why stored progress was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProgressError {
    /// Larger than [`MAX_RUN_PROGRESS_BYTES`].
    #[error("run progress of {0} bytes exceeds the cap")]
    TooLarge(usize),
    /// Not the JSON of a [`RunProgress`].
    #[error("run progress: {0}")]
    Malformed(String),
    /// Written by another version.
    #[error("run progress version {0} is not {RUN_PROGRESS_VERSION}")]
    Version(u32),
    /// `closed` is ahead of `opened`.
    #[error("run progress closed round {closed} after opening only {opened}")]
    Inconsistent {
        /// Last opened.
        opened: u64,
        /// Last closed.
        closed: u64,
    },
}

impl RunProgress {
    /// A run that has not opened a round yet.
    pub fn new() -> Self {
        Self {
            v: RUN_PROGRESS_VERSION,
            ..Self::default()
        }
    }

    /// Encode (JSON: operators read it).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decode and check: size before parsing, version, `closed ≤ opened`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProgressError> {
        if bytes.len() > MAX_RUN_PROGRESS_BYTES {
            return Err(ProgressError::TooLarge(bytes.len()));
        }
        let p: Self =
            serde_json::from_slice(bytes).map_err(|e| ProgressError::Malformed(e.to_string()))?;
        if p.v != RUN_PROGRESS_VERSION {
            return Err(ProgressError::Version(p.v));
        }
        if p.closed > p.opened {
            return Err(ProgressError::Inconsistent {
                opened: p.opened,
                closed: p.closed,
            });
        }
        Ok(p)
    }

    /// Record `summary` (replacing an earlier line for its round).
    pub fn record(&mut self, summary: RoundSummary) {
        self.history.retain(|h| h.round != summary.round);
        self.history.push(summary);
        self.history.sort_by_key(|h| h.round);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_and_bad_input_is_refused() {
        let mut p = RunProgress::new();
        p.opened = 2;
        p.closed = 1;
        p.checkpoint = Some(BlobHash([3; 32]));
        p.record(RoundSummary {
            round: 1,
            checkpoint: "ab".into(),
            merged: 2,
            heldout_loss: 5.0,
        });
        p.record(RoundSummary {
            round: 1,
            checkpoint: "cd".into(),
            merged: 3,
            heldout_loss: 4.0,
        });
        assert_eq!(p.history.len(), 1);
        assert_eq!(RunProgress::decode(&p.encode()).unwrap(), p);
        let mut bad = p.clone();
        bad.closed = 3;
        assert!(matches!(
            RunProgress::decode(&bad.encode()),
            Err(ProgressError::Inconsistent { .. })
        ));
        let mut old = p.clone();
        old.v = 0;
        assert_eq!(
            RunProgress::decode(&old.encode()),
            Err(ProgressError::Version(0))
        );
        assert!(matches!(
            RunProgress::decode(b"{\"v\":1,\"opened\":1,\"closed\":0,\"surprise\":1}"),
            Err(ProgressError::Malformed(_))
        ));
        assert!(matches!(
            RunProgress::decode(&vec![b' '; MAX_RUN_PROGRESS_BYTES + 1]),
            Err(ProgressError::TooLarge(_))
        ));
    }
}
