//! The `l402-node` command line: clap derive, every flag overridable from the environment.
//!
//! Each subcommand lives in its own module under `cli/` and is listed once in [`Command`].

use clap::{Parser, Subcommand};

pub mod bounties;
pub mod charts;
pub mod demo;
pub mod evidence;
pub mod init;
pub mod relay;
pub mod runs;
pub mod status;
pub mod validators;

/// Command-line interface of `l402-node`.
#[derive(Debug, Parser)]
#[command(
    name = "l402-node",
    version,
    about = "A node of the l402 network: train, validate, pay and get paid in bitcoin."
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `l402-node`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the build's version and exit.
    Version,
    /// Run the embedded Nostr relay on its own (standalone relay server).
    Relay(relay::RelayArgs),
    /// List the runs announced on the relays, by coordinator.
    Runs(crate::discovery::listing::ListArgs),
    /// List the validators announced on the relays, with their bound iroh and Lightning keys.
    Validators(crate::discovery::listing::ListArgs),
    /// List the bounties announced on the relays.
    Bounties(crate::discovery::listing::ListArgs),
    /// List the evidence events on the relays, each checked here (signature and proof): who
    /// provably misbehaved (a bad dealing, an equivocation).
    Evidence(crate::discovery::listing::ListArgs),
    /// Train a model locally: peers, SparseLoCo, validation and aggregation on one machine.
    Train(crate::train::local::TrainArgs),
    /// Generate a node's keys and write a commented configuration into its data dir.
    Init(init::InitArgs),
    /// Run the configured roles (coordinator, peer, validator) until Ctrl-C.
    Up(crate::up::UpArgs),
    /// A whole local network: regtest chain, relay, 1 coordinator, 3 validators, 4 peers, each
    /// node its own `up` process; runs the rounds and writes a report.
    Demo(demo::DemoArgs),
    /// Ask a running node for its roles, rounds and escrows.
    Status(status::StatusArgs),
    /// Ask a running node for its balances, channels and hold invoices.
    Wallet(status::StatusArgs),
    /// Autoresearch bounties: post, list, show, submit; the reference agent; evaluate a diff in
    /// the sandbox; the example bounty.
    Bounty(crate::bounty::BountyArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Version => {
            println!("l402-node {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Relay(args) => relay::run(args),
        Command::Runs(args) => runs::run(args),
        Command::Validators(args) => validators::run(args),
        Command::Bounties(args) => bounties::run(args),
        Command::Evidence(args) => evidence::run(args),
        Command::Train(args) => crate::train::local::run_cli(args),
        Command::Init(args) => init::run(args),
        Command::Up(args) => crate::up::run_cli(args),
        Command::Demo(args) => demo::run(args),
        Command::Status(args) => status::run_status(args),
        Command::Wallet(args) => status::run_wallet(args),
        Command::Bounty(args) => crate::bounty::run(args),
    }
}
