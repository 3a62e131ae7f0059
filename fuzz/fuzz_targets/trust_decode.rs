//! Fuzz target: the CBOR decoders of the trust core (specs/L2T-04, L2T-05, L2T-08): escrow
//! dealings and evidence, attestations, equivocation evidence, macaroons.
//!
//! Properties: no input panics; anything accepted re-encodes to the same bytes (canonical).
#![no_main]

use l402_protocol::escrow::{BadShareComplaint, MalformedDealingEvidence, SignedDealing, WrongPreimageEvidence};
use l402_protocol::l402::Macaroon;
use l402_protocol::quorum::{EquivocationEvidence, SignedAttestation};
use libfuzzer_sys::fuzz_target;

macro_rules! canonical {
    ($ty:ty, $data:expr, $encode:ident) => {
        if let Ok(v) = <$ty>::decode($data) {
            assert_eq!(v.$encode(), $data, concat!(stringify!($ty), " is canonical"));
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let (tag, data) = match data.split_first() {
        Some(x) => x,
        None => return,
    };
    match tag % 6 {
        0 => canonical!(SignedDealing, data, encode),
        1 => canonical!(SignedAttestation, data, encode),
        2 => canonical!(BadShareComplaint, data, encode),
        3 => canonical!(WrongPreimageEvidence, data, encode),
        4 => canonical!(MalformedDealingEvidence, data, encode),
        _ => {
            let _ = EquivocationEvidence::decode(data);
            if let Ok(m) = Macaroon::deserialize(data) {
                let _ = m.serialize();
            }
        }
    }
});
