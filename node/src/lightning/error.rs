//! The adapter's error type.

use std::path::PathBuf;
use std::time::Duration;

use l402_protocol::hold::{HoldError, PaymentHash};

/// Errors of [`super::LightningNode`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LightningError {
    /// The configuration was refused by the Lightning node builder.
    #[error("invalid lightning config: {0}")]
    Config(String),
    /// The Lightning node could not be built or started.
    #[error("lightning node failed to {op}: {reason}")]
    Start {
        /// `build` or `start`.
        op: &'static str,
        /// The node's reason.
        reason: String,
    },
    /// A Lightning node operation failed.
    #[error("lightning {op} failed: {reason}")]
    Node {
        /// The operation.
        op: &'static str,
        /// The node's reason.
        reason: String,
    },
    /// Reading or writing the hold-invoice store failed.
    #[error("hold store I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored hold record could not be read.
    #[error("hold record {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        source: HoldError,
    },
    /// The hold-invoice state machine refused the operation.
    #[error("hold invoice {hash}: {source}")]
    Hold {
        /// The payment hash.
        hash: PaymentHash,
        /// The refusal.
        source: HoldError,
    },
    /// No hold invoice with this hash.
    #[error("no hold invoice for payment hash {0}")]
    UnknownHold(PaymentHash),
    /// A hold invoice with this hash already exists.
    #[error("a hold invoice for payment hash {0} already exists")]
    DuplicateHold(PaymentHash),
    /// Not a BOLT11 invoice for this network.
    #[error("invalid invoice: {0}")]
    InvalidInvoice(String),
    /// The node found no route for a payment now: no usable channel with enough outbound
    /// liquidity (a channel partner offline or reconnecting, or too little balance), or the
    /// invoice has expired. Nothing left the node; the same invoice may be paid again.
    #[error("lightning pay failed: no route for payment {0} now (no usable channel with enough outbound, or the invoice expired)")]
    NoRoute(PaymentHash),
    /// The node is stopping ([`super::LightningNode::begin_stop`]): a wait ended unmet.
    #[error("the lightning node is stopping: stopped waiting for {0}")]
    Stopping(String),
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        after: Duration,
    },
}

impl LightningError {
    pub(crate) fn node(op: &'static str, e: impl std::fmt::Display) -> Self {
        LightningError::Node {
            op,
            reason: e.to_string(),
        }
    }
}
