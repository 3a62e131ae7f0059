//! Embedded Nostr relay for the l402 network.
