//! Fuzz target: the pseudo-gradient wire decoder (specs/L2T-02-wire.md).
//!
//! Properties: no input panics or exhausts memory; every accepted blob is canonical (re-encoding
//! gives the same bytes) and its tensors decode.
#![no_main]

use l402_protocol::sparseloco::decode;
use l402_protocol::wire::{self, PseudoGradient};
use libfuzzer_sys::fuzz_target;

/// Payload cap for the fuzzer, as a node would set from its model's size.
const MAX_PAYLOAD: u64 = 64 << 20;
/// Largest dense tensor the target materialises.
const MAX_DENSE: usize = 1 << 24;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = PseudoGradient::from_blob_with_limit(data, MAX_PAYLOAD) {
        let again = g.to_blob().expect("an accepted blob re-encodes");
        assert_eq!(again, data, "an accepted blob is canonical");
        for t in &g.tensors {
            if t.tensor.len() <= MAX_DENSE {
                let dense = decode(&t.tensor);
                assert!(dense.iter().all(|v| v.is_finite()), "decoded values are finite");
            }
        }
    }
    if let Ok((header, payload)) = wire::open_with_limit(data, MAX_PAYLOAD) {
        assert_eq!(payload.len() as u64, header.payload_len);
        assert_eq!(wire::seal(&header, &payload).expect("reseals"), data, "container is canonical");
    }
});
