//! `l402-sim`: the Byzantine simulator.
fn main() {}
