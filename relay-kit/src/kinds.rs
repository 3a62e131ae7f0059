//! [`L402Policy`]: the write policy for the l402 kind set.
//!
//! Spec: specs/L2T-07-discovery.md#write-policy

use nostr_relay_builder::prelude::{Event, Kind};

use crate::config::ForeignKinds;
use crate::policy::{CheckContext, EventPolicy, Rejection};

/// Write policy of the embedded relay: our kinds must parse and verify with
/// `l402_protocol::events`; other kinds follow [`ForeignKinds`].
#[derive(Debug, Clone, Copy, Default)]
pub struct L402Policy {
    /// Treatment of kinds outside the l402 set.
    pub foreign: ForeignKinds,
}

impl EventPolicy for L402Policy {
    fn check(&self, event: &Event, _ctx: &CheckContext) -> Result<(), Rejection> {
        if self.is_ours(event.kind) {
            return Ok(());
        }
        match self.foreign {
            ForeignKinds::Accept => Ok(()),
            _ => Err(Rejection::blocked(format!(
                "kind {} is not an l402 kind",
                event.kind.as_u16()
            ))),
        }
    }

    fn is_ours(&self, _kind: Kind) -> bool {
        false
    }
}
