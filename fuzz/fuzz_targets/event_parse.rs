//! Fuzz target: the Nostr event pipeline (specs/L2T-01-events.md) and the L402 header parsers
//! (specs/L2T-08-l402.md), on arbitrary text.
//!
//! Property: no input panics; every rejection is a typed reason with a NIP-01 prefix.
#![no_main]

use l402_protocol::events::parse_json;
use l402_protocol::l402::{parse_authorization, parse_challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(reason) = parse_json(text, None) {
        let msg = reason.to_nip01();
        assert!(msg.starts_with("invalid:") || msg.starts_with("blocked:"), "{msg}");
    }
    let _ = parse_challenge(text);
    let _ = parse_authorization(text);
});
