//! `l402-testnet`: runs the in-process regtest chain.
fn main() {}
