//! [`L402Policy`]: the write policy for the l402 kind set.
//!
//! Spec: specs/L2T-07-discovery.md#11-order-of-checks-each-event
//!
//! Our kinds go through `l402_protocol::events::validate_event`, the same validating parser the
//! nodes use (size and tag caps, time window, NIP-40 expiration, id and signature, content
//! schema, tag/content consistency, bindings such as the iroh key's signature over the Nostr
//! key). Its typed reason becomes the NIP-01 `OK` message (`invalid:` or `blocked:`).

use l402_protocol::events::{self, L402Kind, RejectReason};
use nostr_relay_builder::prelude::{Event, Kind};

use crate::config::ForeignKinds;
use crate::policy::{CheckContext, EventPolicy, RejectPrefix, Rejection};

/// Write policy of the embedded relay: our kinds must validate with
/// `l402_protocol::events`; other kinds follow [`ForeignKinds`].
#[derive(Debug, Clone, Copy, Default)]
pub struct L402Policy {
    /// Treatment of kinds outside the l402 set.
    pub foreign: ForeignKinds,
}

/// The relay's rejection for a protocol [`RejectReason`], keeping its NIP-01 prefix.
pub fn rejection_of(reason: &RejectReason) -> Rejection {
    let prefix = if reason.prefix() == RejectPrefix::Blocked.as_str() {
        RejectPrefix::Blocked
    } else {
        RejectPrefix::Invalid
    };
    Rejection {
        prefix,
        reason: reason.to_string(),
    }
}

impl EventPolicy for L402Policy {
    fn check(&self, event: &Event, ctx: &CheckContext) -> Result<(), Rejection> {
        if events::is_l402_kind(event.kind) {
            return events::validate_event(event, ctx.now)
                .map(|_| ())
                .map_err(|r| rejection_of(&r));
        }
        match self.foreign {
            ForeignKinds::Accept => Ok(()),
            _ => Err(Rejection::blocked(format!(
                "kind {} is not an l402 kind",
                event.kind.as_u16()
            ))),
        }
    }

    fn is_ours(&self, kind: Kind) -> bool {
        events::is_l402_kind(kind)
    }

    fn verifies_signature(&self, kind: Kind) -> bool {
        events::is_l402_kind(kind)
    }
}

/// Every kind of the l402 set (what `--censor-l402` censors).
pub fn l402_kinds() -> Vec<Kind> {
    L402Kind::ALL.iter().map(|k| k.kind()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr_relay_builder::prelude::{EventBuilder, Keys, Timestamp};

    fn ctx() -> CheckContext {
        CheckContext {
            raw_len: 100,
            now: Timestamp::now(),
        }
    }

    #[test]
    fn protocol_reasons_keep_their_nip01_prefix() {
        let blocked = rejection_of(&RejectReason::UnknownKind(1));
        assert_eq!(blocked.prefix, RejectPrefix::Blocked);
        assert_eq!(blocked.to_nip01(), RejectReason::UnknownKind(1).to_nip01());
        let invalid = rejection_of(&RejectReason::BadBinding);
        assert_eq!(
            invalid.to_nip01(),
            "invalid: iroh key binding signature does not verify"
        );
    }

    #[test]
    fn foreign_kinds_follow_the_setting_and_our_kinds_are_validated() {
        let keys = Keys::generate();
        let note = EventBuilder::text_note("hi")
            .sign_with_keys(&keys)
            .expect("sign");
        let strict = L402Policy::default();
        assert_eq!(
            strict.check(&note, &ctx()).map_err(|r| r.prefix),
            Err(RejectPrefix::Blocked)
        );
        let open = L402Policy {
            foreign: ForeignKinds::Accept,
        };
        assert_eq!(open.check(&note, &ctx()), Ok(()));
        // An l402 kind with content that is not our schema is invalid even on an open relay.
        let fake = EventBuilder::new(L402Kind::RunAnnouncement.kind(), "{}")
            .sign_with_keys(&keys)
            .expect("sign");
        let r = open.check(&fake, &ctx()).expect_err("rejected");
        assert_eq!(r.prefix, RejectPrefix::Invalid, "{r}");
        assert!(open.is_ours(fake.kind) && open.verifies_signature(fake.kind));
        assert_eq!(l402_kinds().len(), L402Kind::ALL.len());
    }
}
