//! `l402-node bounties`: bounties announced on the relays (human table or `--json`).

use crate::discovery::listing::{self, ListArgs, Listing};

/// Runs `l402-node bounties`.
pub fn run(args: ListArgs) -> anyhow::Result<()> {
    listing::run(Listing::Bounties, args)
}
