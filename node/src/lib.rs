//! l402-node: the library behind the `l402-node` binary.
//!
//! `node` executes what the sans-IO `l402-protocol` decides, with real IO:
//! - [`lightning`]: a thin adapter over ldk-node 0.7.1 with persisted hold-invoice states;
//! - [`discovery`]: nostr-sdk publishing, subscriptions and the live directory;
//! - [`blobs`]: BLAKE3-addressed blobs over iroh-blobs (libp2p behind a feature);
//! - [`train`]: candle training and validation;
//! - [`runtime`]: the role runtime: the protocol's driver over the real components;
//! - [`config`]: the data dir's configuration and keys;
//! - [`up`]: `l402-node up`: the components, the role tasks, the HTTP gateway;
//! - [`cli`]: the clap command line.

pub mod blobs;
pub mod bounty;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod durable;
pub mod lightning;
pub mod runtime;
pub mod train;
pub mod up;
