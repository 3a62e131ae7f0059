//! Node/validator announcements and run announcements (addressable kinds).
//!
//! Spec: specs/L2T-01-events.md#node-announcement

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use nostr::{PublicKey, Tag};
use serde::{Deserialize, Serialize};

use super::ids::{BlobHash, RunId};
use super::parse::{from_json, to_json, EventContent};
use super::{tags, L402Kind, RejectReason, MAX_LIST_LEN, MAX_TEXT_LEN, MAX_URL_LEN};
use crate::escrow::tranche::{validate_schedule, TrancheSpec};
use crate::escrow::MAX_VALIDATORS;
use crate::quorum::Tolerance;

/// A role a node offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs training rounds and pays rewards.
    Coordinator,
    /// Trains and submits pseudo-gradients.
    Peer,
    /// Scores submissions and holds escrow shares.
    Validator,
    /// Posts bounties.
    Sponsor,
    /// Works on bounties.
    Agent,
}

/// What a validator charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorTerms {
    /// Fee per attestation, in millisatoshis.
    pub fee_msat: u64,
}

/// Serde helper: fixed-size byte arrays as hex strings.
pub(crate) mod hexn {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialise as lowercase hex.
    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    /// Deserialise exactly `2N` hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// The message the iroh ed25519 key signs: `"l402/iroh-binding/v1" ‖ 0x00 ‖ nostr x-only key
/// (32) ‖ Lightning node id (33)`.
pub fn iroh_binding_message(nostr: &PublicKey, ln_node_id: &[u8; 33]) -> Vec<u8> {
    let mut m = b"l402/iroh-binding/v1\0".to_vec();
    m.extend_from_slice(nostr.as_bytes());
    m.extend_from_slice(ln_node_id);
    m
}

/// Node announcement: binds the Nostr key (the author), the iroh endpoint key and the Lightning
/// node id, and lists the node's roles and addresses. Validators opt in with the `validator` role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAnnouncement {
    /// Content version (1).
    pub v: u32,
    /// iroh endpoint id (ed25519 public key), hex.
    #[serde(with = "hexn")]
    pub iroh_node_id: [u8; 32],
    /// ed25519 signature by the iroh key over [`iroh_binding_message`].
    #[serde(with = "hexn")]
    pub iroh_sig: [u8; 64],
    /// Lightning node id (33-byte compressed secp256k1 key), hex.
    #[serde(with = "hexn")]
    pub ln_node_id: [u8; 33],
    /// Roles offered.
    pub roles: Vec<Role>,
    /// Direct iroh socket addresses (`ip:port`), for local mode without iroh relays.
    #[serde(default)]
    pub iroh_addrs: Vec<String>,
    /// Nostr relays the node publishes to.
    #[serde(default)]
    pub relays: Vec<String>,
    /// Lightning P2P addresses (`ip:port`) where the node accepts connections, so a channel
    /// partner can (re)dial it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ln_addrs: Vec<String>,
    /// Validator terms (present iff the `validator` role is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<ValidatorTerms>,
}

impl NodeAnnouncement {
    /// Build an announcement for the node whose Nostr key is `nostr`, signing the binding with
    /// its iroh key (ed25519 signing is deterministic: no randomness needed).
    pub fn new(
        nostr: &PublicKey,
        iroh_key: &SigningKey,
        ln_node_id: [u8; 33],
        roles: Vec<Role>,
        validator: Option<ValidatorTerms>,
    ) -> Self {
        let sig = iroh_key.sign(&iroh_binding_message(nostr, &ln_node_id));
        Self {
            v: super::CONTENT_VERSION,
            iroh_node_id: iroh_key.verifying_key().to_bytes(),
            iroh_sig: sig.to_bytes(),
            ln_node_id,
            roles,
            iroh_addrs: Vec::new(),
            relays: Vec::new(),
            ln_addrs: Vec::new(),
            validator,
        }
    }

    /// Whether the node opted in as a validator.
    pub fn is_validator(&self) -> bool {
        self.roles.contains(&Role::Validator)
    }

    fn check(&self, author: &PublicKey) -> Result<(), RejectReason> {
        let schema = |s: &str| Err(RejectReason::Schema(s.into()));
        if self.roles.is_empty() || self.roles.len() > MAX_LIST_LEN {
            return schema("roles");
        }
        if self.iroh_addrs.len() > MAX_LIST_LEN
            || self.relays.len() > MAX_LIST_LEN
            || self.ln_addrs.len() > MAX_LIST_LEN
        {
            return schema("address list too long");
        }
        if self
            .iroh_addrs
            .iter()
            .chain(&self.relays)
            .chain(&self.ln_addrs)
            .any(|a| a.is_empty() || a.len() > MAX_URL_LEN)
        {
            return schema("address length");
        }
        if self
            .iroh_addrs
            .iter()
            .chain(&self.ln_addrs)
            .any(|a| a.parse::<std::net::SocketAddr>().is_err())
        {
            return schema("iroh or lightning address is not ip:port");
        }
        if self.is_validator() != self.validator.is_some() {
            return schema("validator terms iff validator role");
        }
        if crate::escrow::vss::point_from_bytes(&self.ln_node_id).is_none() {
            return schema("ln_node_id is not a compressed secp256k1 key");
        }
        let vk =
            VerifyingKey::from_bytes(&self.iroh_node_id).map_err(|_| RejectReason::BadBinding)?;
        let sig = Signature::from_bytes(&self.iroh_sig);
        vk.verify(&iroh_binding_message(author, &self.ln_node_id), &sig)
            .map_err(|_| RejectReason::BadBinding)
    }
}

impl EventContent for NodeAnnouncement {
    const KIND: L402Kind = L402Kind::NodeAnnouncement;

    fn tags(&self) -> Vec<Tag> {
        let mut t = vec![tags::d(tags::NODE_D), tags::t(tags::HASHTAG)];
        if self.is_validator() {
            t.push(tags::t(tags::HASHTAG_VALIDATOR));
        }
        t
    }

    fn to_content(&self) -> String {
        to_json(self)
    }

    fn from_content(content: &str, author: &PublicKey) -> Result<Self, RejectReason> {
        let a: Self = from_json(content)?;
        a.check(author)?;
        Ok(a)
    }
}

/// Run announcement by a coordinator: what is trained, how rounds are paid and validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAnnouncement {
    /// Content version (1).
    pub v: u32,
    /// Run id (also the `d` tag).
    pub run_id: RunId,
    /// Human title.
    pub title: String,
    /// Model description (architecture, size).
    pub model: String,
    /// The first checkpoint blob.
    pub genesis_checkpoint: BlobHash,
    /// Nominal round length in seconds.
    pub round_secs: u64,
    /// Committee size.
    pub n: u32,
    /// Quorum threshold.
    pub k: u32,
    /// Reward tranches per accepted submission.
    pub tranches: Vec<TrancheSpec>,
    /// L402 price of a submission token, in millisatoshis.
    pub submission_price_msat: u64,
    /// Score tolerance validators are held to.
    pub tolerance: Tolerance,
    /// L402 HTTP gateway URL, if the coordinator runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

impl RunAnnouncement {
    fn check(&self) -> Result<(), RejectReason> {
        let schema = |s: &str| Err(RejectReason::Schema(s.into()));
        if self.title.len() > MAX_TEXT_LEN || self.model.len() > MAX_TEXT_LEN {
            return schema("text too long");
        }
        if self.k == 0 || self.k > self.n || self.n as usize > MAX_VALIDATORS {
            return schema("k and n");
        }
        if self.round_secs == 0 {
            return schema("round_secs");
        }
        validate_schedule(&self.tranches).map_err(|e| RejectReason::Schema(e.to_string()))?;
        if self.gateway.as_ref().is_some_and(|g| g.len() > MAX_URL_LEN) {
            return schema("gateway url");
        }
        Ok(())
    }
}

impl EventContent for RunAnnouncement {
    const KIND: L402Kind = L402Kind::RunAnnouncement;

    fn tags(&self) -> Vec<Tag> {
        vec![
            tags::d(self.run_id.as_str()),
            tags::run(&self.run_id),
            tags::blob(&self.genesis_checkpoint),
            tags::t(tags::HASHTAG),
            tags::t(tags::HASHTAG_RUN),
        ]
    }

    fn to_content(&self) -> String {
        to_json(self)
    }

    fn from_content(content: &str, _author: &PublicKey) -> Result<Self, RejectReason> {
        let a: Self = from_json(content)?;
        a.check()?;
        Ok(a)
    }
}
