//! `l402-node runs`: runs announced on the relays, grouped by coordinator (human table or `--json`).

use crate::discovery::listing::{self, ListArgs, Listing};

/// Runs `l402-node runs`.
pub fn run(args: ListArgs) -> anyhow::Result<()> {
    listing::run(Listing::Runs, args)
}
