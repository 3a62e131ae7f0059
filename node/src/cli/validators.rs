//! `l402-node validators`: validators announced on the relays, with their bound iroh and Lightning keys (human table or `--json`).

use crate::discovery::listing::{self, ListArgs, Listing};

/// Runs `l402-node validators`.
pub fn run(args: ListArgs) -> anyhow::Result<()> {
    listing::run(Listing::Validators, args)
}
