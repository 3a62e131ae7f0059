//! L402 (bLIP-26, formerly LSAT): macaroons bound to a Lightning payment hash, the
//! `WWW-Authenticate` challenge and the `Authorization` credential.
//!
//! - [`macaroon`]: HMAC-SHA256 macaroons, V2 binary format.
//! - [`token`]: identifier `version ‖ payment_hash ‖ token_id`, caveats (service, run, expiry,
//!   uses, buyer key), minting and verification.
//! - [`header`]: challenge and credential headers, `LSAT` and `token=` forms.
//!
//! Sans-IO: the caller supplies the server secret, token ids (from its seeded RNG), the invoice
//! string, the current time and the use counter.
//!
//! Spec: specs/L2T-08-l402.md

pub mod header;
pub mod macaroon;
pub mod token;

pub use header::{
    authorization_header, challenge_header, challenge_with_scheme, parse_authorization,
    parse_challenge, Challenge, Credential, Scheme, MAX_HEADER_LEN,
};
pub use macaroon::{Macaroon, MacaroonError, MAX_CAVEATS, MAX_MACAROON_BYTES};
pub use token::{
    mint, root_key, verify, Identifier, L402Error, MintParams, TokenInfo, VerifyContext,
};

/// Parse an `Authorization` header and verify it: the gateway's one call per request.
pub fn verify_authorization(
    server_secret: &[u8; 32],
    header: &str,
    ctx: &VerifyContext<'_>,
) -> Result<TokenInfo, L402Error> {
    let cred = parse_authorization(header)?;
    verify(server_secret, &cred.macaroon, &cred.preimage, ctx)
}

/// Parse a submission's `token` field (`<base64 macaroon>:<hex preimage>`, the bLIP-26
/// credential without the scheme) and verify it.
pub fn verify_token_string(
    server_secret: &[u8; 32],
    token: &str,
    ctx: &VerifyContext<'_>,
) -> Result<TokenInfo, L402Error> {
    verify_authorization(server_secret, &format!("L402 {token}"), ctx)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
