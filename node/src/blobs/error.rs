//! Typed errors of the blob layer.

use std::fmt;

use l402_protocol::blobmeta::IndexError;

use super::ProviderId;

/// Why one provider could not deliver a blob. The fetch then moves on to the next provider.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderFailure {
    /// No connection could be made (unknown address, refused, handshake failed).
    Connect(String),
    /// The provider made no progress for the stall timeout.
    Stalled {
        /// The phase that stalled.
        phase: &'static str,
    },
    /// The provider refused the request (access control).
    Refused,
    /// The provider does not hold the blob.
    NotFound,
    /// The provider's (verified) size differs from the announced size.
    SizeMismatch {
        /// The size the provider proved.
        provided: u64,
        /// The size that was announced.
        announced: u64,
    },
    /// The provider sent bytes that do not hash to the requested BLAKE3 hash.
    Corrupt(String),
    /// The transfer broke off (connection closed, provider killed, stream reset).
    Transfer(String),
}

impl fmt::Display for ProviderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::Stalled { phase } => write!(f, "stalled during {phase}"),
            Self::Refused => write!(f, "refused by access control"),
            Self::NotFound => write!(f, "blob not found at provider"),
            Self::SizeMismatch {
                provided,
                announced,
            } => write!(f, "provider size {provided} != announced {announced}"),
            Self::Corrupt(e) => write!(f, "corrupt data: {e}"),
            Self::Transfer(e) => write!(f, "transfer broke off: {e}"),
        }
    }
}

/// Errors of the blob layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The iroh-blobs store failed.
    #[error("blob store: {0}")]
    Store(String),
    /// The blob index refused an operation or could not be decoded.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The endpoint or the transport could not be started.
    #[error("transport setup: {0}")]
    Setup(String),
    /// A provider id is not a valid ed25519 public key.
    #[error("invalid provider id {0}")]
    InvalidProviderId(String),
    /// The announced size is over the configured cap: refused before any download.
    #[error("announced size {announced} exceeds the cap of {cap} bytes")]
    SizeOverCap {
        /// The announced size.
        announced: u64,
        /// The configured cap.
        cap: u64,
    },
    /// A fetch was asked with no provider to try.
    #[error("no provider to fetch {hash} from")]
    NoProviders {
        /// Hex hash of the blob.
        hash: String,
    },
    /// Every provider failed; nothing was marked complete.
    #[error("all {} providers failed for {hash}: {}", attempts.len(), describe(attempts))]
    AllProvidersFailed {
        /// Hex hash of the blob.
        hash: String,
        /// Each provider tried and why it failed, in order.
        attempts: Vec<(ProviderId, ProviderFailure)>,
    },
    /// The blob held under the hash has a different size than announced: the announcement is
    /// wrong (a BLAKE3 hash fixes the size).
    #[error("blob {hash} has {actual} bytes, announced {announced}")]
    AnnouncedSizeWrong {
        /// Hex hash of the blob.
        hash: String,
        /// The announced size.
        announced: u64,
        /// The verified size.
        actual: u64,
    },
    /// The blob is not (completely) held locally.
    #[error("blob {hash} is not held completely")]
    NotHeld {
        /// Hex hash of the blob.
        hash: String,
    },
    /// A payload could not be sealed into a container.
    #[error("cannot seal blob: {0}")]
    Seal(#[source] l402_protocol::wire::WireError),
    /// The blob's bytes are not a valid container.
    #[error("blob {hash} is not a valid container: {reason}")]
    BadContainer {
        /// Hex hash of the blob.
        hash: String,
        /// Why decoding failed.
        reason: String,
    },
    /// The transport has shut down.
    #[error("blob transport is shut down")]
    Shutdown,
}

fn describe(attempts: &[(ProviderId, ProviderFailure)]) -> String {
    attempts
        .iter()
        .map(|(id, why)| format!("{id}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl BlobError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn store(e: impl fmt::Display) -> Self {
        Self::Store(e.to_string())
    }
}
