//! L402 tokens: minting macaroons bound to a payment hash, and verifying credentials.
//!
//! Spec: specs/L2T-08-l402.md#tokens

use hmac::{Hmac, Mac};
use nostr::PublicKey;
use sha2::Sha256;

use super::macaroon::{Macaroon, MacaroonError};
use crate::escrow::Preimage;
use crate::events::ids::{PaymentHash, RunId, UnixTime};

/// Identifier version written and accepted.
pub const IDENTIFIER_VERSION: u16 = 0;
/// Identifier length: version (2) ‖ payment hash (32) ‖ token id (32).
pub const IDENTIFIER_LEN: usize = 66;

/// Caveat key: target services, `name:tier[,name:tier…]`.
pub const CAVEAT_SERVICES: &str = "services";
/// Caveat key: the run the token is for.
pub const CAVEAT_RUN: &str = "run";
/// Caveat key: Unix time after which the token is void.
pub const CAVEAT_VALID_UNTIL: &str = "valid_until";
/// Caveat key: how many uses (submissions) the token pays for.
pub const CAVEAT_MAX_USES: &str = "max_uses";
/// Caveat key: the only Nostr key allowed to present the token (hex x-only).
pub const CAVEAT_PUBKEY: &str = "pubkey";

/// The macaroon identifier `version ‖ payment_hash ‖ token_id` (big-endian), as aperture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identifier {
    /// Payment hash of the invoice that buys the token.
    pub payment_hash: PaymentHash,
    /// Random token id (also the user id for metering).
    pub token_id: [u8; 32],
}

impl Identifier {
    /// The 66 identifier bytes.
    pub fn encode(&self) -> [u8; IDENTIFIER_LEN] {
        let mut out = [0u8; IDENTIFIER_LEN];
        out[..2].copy_from_slice(&IDENTIFIER_VERSION.to_be_bytes());
        out[2..34].copy_from_slice(&self.payment_hash.0);
        out[34..].copy_from_slice(&self.token_id);
        out
    }

    /// Parse 66 bytes of version 0.
    pub fn decode(b: &[u8]) -> Result<Self, L402Error> {
        if b.len() != IDENTIFIER_LEN {
            return Err(L402Error::BadIdentifier);
        }
        let version = u16::from_be_bytes([b[0], b[1]]);
        if version != IDENTIFIER_VERSION {
            return Err(L402Error::UnsupportedVersion(version));
        }
        let mut payment_hash = [0u8; 32];
        payment_hash.copy_from_slice(&b[2..34]);
        let mut token_id = [0u8; 32];
        token_id.copy_from_slice(&b[34..]);
        Ok(Self {
            payment_hash: PaymentHash(payment_hash),
            token_id,
        })
    }
}

/// Why a credential is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum L402Error {
    /// No credential, or a header that is not an L402/LSAT credential.
    #[error("malformed L402 header: {0}")]
    Header(&'static str),
    /// The macaroon does not parse.
    #[error("macaroon: {0}")]
    Macaroon(#[from] MacaroonError),
    /// More than one macaroon (discharge macaroons are not used).
    #[error("exactly one macaroon expected")]
    MultipleMacaroons,
    /// Identifier is not 66 bytes.
    #[error("bad macaroon identifier")]
    BadIdentifier,
    /// Identifier version unknown.
    #[error("unsupported identifier version {0}")]
    UnsupportedVersion(u16),
    /// The HMAC chain does not verify (tampered or foreign macaroon).
    #[error("macaroon signature does not verify")]
    BadSignature,
    /// `sha256(preimage)` is not the payment hash: not paid.
    #[error("preimage does not match the payment hash")]
    WrongPreimage,
    /// A caveat is not `key=value` UTF-8, or its value does not parse.
    #[error("malformed caveat {0}")]
    MalformedCaveat(String),
    /// A required caveat is absent.
    #[error("missing caveat {0}")]
    MissingCaveat(&'static str),
    /// The token is not for this service.
    #[error("token is not valid for service {0}")]
    WrongService(String),
    /// The token is for another run.
    #[error("token is for another run")]
    WrongRun,
    /// `valid_until` has passed.
    #[error("token expired")]
    Expired,
    /// All paid uses are spent.
    #[error("token uses exhausted")]
    UsesExhausted,
    /// Presented by another key than the one it was sold to.
    #[error("token is bound to another key")]
    WrongPubkey,
}

impl L402Error {
    /// HTTP status for the gateway: 402 (with a fresh challenge) when the client has to pay
    /// (no credential, expired, uses spent), 401 for an invalid credential.
    pub fn http_status(&self) -> u16 {
        match self {
            L402Error::Header(_) | L402Error::Expired | L402Error::UsesExhausted => 402,
            _ => 401,
        }
    }
}

/// The root key of a token: `HMAC-SHA256(server_secret, "l402/macaroon-root/v1" ‖ token_id)`.
/// Derived, so the server stores one secret instead of one key per token; revoking means
/// rotating the secret.
pub fn root_key(server_secret: &[u8; 32], token_id: &[u8; 32]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(server_secret).expect("any key length");
    m.update(b"l402/macaroon-root/v1");
    m.update(token_id);
    m.finalize().into_bytes().into()
}

/// What a token is minted for.
#[derive(Clone, Debug)]
pub struct MintParams<'a> {
    /// Service name (e.g. `submit`, `checkpoint`).
    pub service: &'a str,
    /// Run, if the token is run-specific.
    pub run: Option<&'a RunId>,
    /// Expiry (Unix seconds).
    pub valid_until: Option<UnixTime>,
    /// Paid uses.
    pub max_uses: Option<u64>,
    /// Buyer's Nostr key, if the token is bound to it.
    pub pubkey: Option<PublicKey>,
    /// Payment hash of the invoice sold with it.
    pub payment_hash: PaymentHash,
    /// Random token id (from the caller's seeded RNG).
    pub token_id: [u8; 32],
    /// Location hint (gateway URL).
    pub location: Option<&'a str>,
}

/// Mint a macaroon for `p` with caveats `services=<service>:0`, then `run`, `valid_until`,
/// `max_uses`, `pubkey` as given.
pub fn mint(server_secret: &[u8; 32], p: &MintParams<'_>) -> Macaroon {
    let id = Identifier {
        payment_hash: p.payment_hash,
        token_id: p.token_id,
    };
    let mut m = Macaroon::mint(
        &root_key(server_secret, &p.token_id),
        &id.encode(),
        p.location,
    );
    m.add_first_party_caveat(format!("{CAVEAT_SERVICES}={}:0", p.service).as_bytes());
    if let Some(r) = p.run {
        m.add_first_party_caveat(format!("{CAVEAT_RUN}={r}").as_bytes());
    }
    if let Some(t) = p.valid_until {
        m.add_first_party_caveat(format!("{CAVEAT_VALID_UNTIL}={t}").as_bytes());
    }
    if let Some(n) = p.max_uses {
        m.add_first_party_caveat(format!("{CAVEAT_MAX_USES}={n}").as_bytes());
    }
    if let Some(pk) = p.pubkey {
        m.add_first_party_caveat(format!("{CAVEAT_PUBKEY}={}", pk.to_hex()).as_bytes());
    }
    m
}

/// The request a credential is checked against.
#[derive(Clone, Debug)]
pub struct VerifyContext<'a> {
    /// Service being accessed.
    pub service: &'a str,
    /// Run being accessed, if any.
    pub run: Option<&'a RunId>,
    /// Current time.
    pub now: UnixTime,
    /// Uses of this token id already consumed (kept by the caller, keyed by token id).
    pub uses_so_far: u64,
    /// Nostr key presenting the token, if known (the submission's author).
    pub presenter: Option<&'a PublicKey>,
}

/// A verified token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Payment hash it was bought with.
    pub payment_hash: PaymentHash,
    /// Token id (meter uses by it).
    pub token_id: [u8; 32],
    /// Paid uses, if limited.
    pub max_uses: Option<u64>,
}

/// Verify `macaroon` + `preimage` for `ctx`: identifier → HMAC chain → payment → caveats.
///
/// Caveats: `services` is required and must list `ctx.service`; `run`, `valid_until`,
/// `max_uses`, `pubkey` must each hold at every occurrence (so later caveats can only restrict);
/// unknown keys are skipped as bLIP-26 requires (the holder may attenuate for other services).
pub fn verify(
    server_secret: &[u8; 32],
    macaroon: &Macaroon,
    preimage: &Preimage,
    ctx: &VerifyContext<'_>,
) -> Result<TokenInfo, L402Error> {
    let id = Identifier::decode(macaroon.identifier())?;
    if !macaroon.verify_signature(&root_key(server_secret, &id.token_id)) {
        return Err(L402Error::BadSignature);
    }
    if preimage.payment_hash() != id.payment_hash {
        return Err(L402Error::WrongPreimage);
    }
    let mut saw_services = false;
    let mut max_uses: Option<u64> = None;
    for c in macaroon.caveats() {
        let text = std::str::from_utf8(c)
            .map_err(|_| L402Error::MalformedCaveat(String::from_utf8_lossy(c).into_owned()))?;
        let (key, value) = text
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| L402Error::MalformedCaveat(text.to_owned()))?;
        let bad = || L402Error::MalformedCaveat(text.to_owned());
        match key {
            CAVEAT_SERVICES => {
                saw_services = true;
                let ok = value.split(',').any(|svc| {
                    svc.trim().split_once(':').map_or(svc.trim(), |(n, _)| n) == ctx.service
                });
                if !ok {
                    return Err(L402Error::WrongService(ctx.service.to_owned()));
                }
            }
            CAVEAT_RUN if ctx.run.map(RunId::as_str) != Some(value) => {
                return Err(L402Error::WrongRun);
            }
            CAVEAT_RUN => {}
            CAVEAT_VALID_UNTIL => {
                let t: u64 = value.parse().map_err(|_| bad())?;
                if ctx.now > t {
                    return Err(L402Error::Expired);
                }
            }
            CAVEAT_MAX_USES => {
                let n: u64 = value.parse().map_err(|_| bad())?;
                if ctx.uses_so_far >= n {
                    return Err(L402Error::UsesExhausted);
                }
                max_uses = Some(max_uses.map_or(n, |m| m.min(n)));
            }
            CAVEAT_PUBKEY => {
                let pk = PublicKey::from_hex(value).map_err(|_| bad())?;
                if ctx.presenter != Some(&pk) {
                    return Err(L402Error::WrongPubkey);
                }
            }
            _ => {} // unknown caveat: skipped (bLIP-26 "Macaroon Verification")
        }
    }
    if !saw_services {
        return Err(L402Error::MissingCaveat(CAVEAT_SERVICES));
    }
    Ok(TokenInfo {
        payment_hash: id.payment_hash,
        token_id: id.token_id,
        max_uses,
    })
}
