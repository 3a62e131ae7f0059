//! Provider ids and the address book that discovery fills from Nostr node announcements.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::SocketAddr,
    str::FromStr,
    sync::{Arc, RwLock},
};

use iroh::{address_lookup::MemoryLookup, EndpointAddr, EndpointId, TransportAddr};

use super::BlobError;

/// A blob provider's id: its ed25519 public key. The same 32 bytes are its iroh `EndpointId`
/// and the key of its libp2p `PeerId`, and the node announcement binds them to a Nostr key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderId(pub [u8; 32]);

impl ProviderId {
    /// The iroh endpoint id; fails if the bytes are not a valid ed25519 point.
    pub fn endpoint_id(&self) -> Result<EndpointId, BlobError> {
        EndpointId::from_bytes(&self.0).map_err(|_| BlobError::InvalidProviderId(self.to_string()))
    }
}

impl From<EndpointId> for ProviderId {
    fn from(id: EndpointId) -> Self {
        Self(*id.as_bytes())
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderId({})", &hex::encode(self.0)[..12])
    }
}

impl FromStr for ProviderId {
    type Err = BlobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| BlobError::InvalidProviderId(s.to_string()))?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| BlobError::InvalidProviderId(s.to_string()))?;
        Ok(Self(bytes))
    }
}

/// A provider's id and the socket addresses it announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAddr {
    /// The provider.
    pub id: ProviderId,
    /// Where to dial it (direct UDP for iroh, TCP for libp2p), in order.
    pub addrs: BTreeSet<SocketAddr>,
}

/// Where each known provider can be dialled. Discovery inserts what node announcements carry;
/// both transports read it. Clones share the same book.
#[derive(Clone, Debug, Default)]
pub struct AddressBook {
    addrs: Arc<RwLock<BTreeMap<ProviderId, BTreeSet<SocketAddr>>>>,
    iroh: MemoryLookup,
}

impl AddressBook {
    /// An empty address book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records (or replaces) a provider's addresses.
    pub fn insert(&self, provider: ProviderAddr) -> Result<(), BlobError> {
        let endpoint_id = provider.id.endpoint_id()?;
        self.iroh.set_endpoint_info(EndpointAddr::from_parts(
            endpoint_id,
            provider.addrs.iter().copied().map(TransportAddr::Ip),
        ));
        let mut addrs = self.addrs.write().unwrap_or_else(|p| p.into_inner());
        addrs.insert(provider.id, provider.addrs);
        Ok(())
    }

    /// The addresses recorded for `id`.
    pub fn get(&self, id: &ProviderId) -> Option<ProviderAddr> {
        let addrs = self.addrs.read().unwrap_or_else(|p| p.into_inner());
        addrs.get(id).map(|a| ProviderAddr {
            id: *id,
            addrs: a.clone(),
        })
    }

    /// The iroh address lookup backed by this book.
    pub(crate) fn memory_lookup(&self) -> MemoryLookup {
        self.iroh.clone()
    }
}
