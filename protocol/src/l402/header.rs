//! `WWW-Authenticate` challenges and `Authorization` credentials (bLIP-26), including the `LSAT`
//! scheme and the `token=` forms.
//!
//! Spec: specs/L2T-08-l402.md#headers

use super::macaroon::Macaroon;
use super::token::L402Error;
use crate::escrow::Preimage;

/// Longest header value parsed, in bytes (checked first).
pub const MAX_HEADER_LEN: usize = 8192;

/// Authentication scheme name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `L402`.
    L402,
    /// `LSAT` (the former name; still accepted).
    Lsat,
}

impl Scheme {
    fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("L402") {
            Some(Scheme::L402)
        } else if s.eq_ignore_ascii_case("LSAT") {
            Some(Scheme::Lsat)
        } else {
            None
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Scheme::L402 => "L402",
            Scheme::Lsat => "LSAT",
        }
    }
}

/// The `WWW-Authenticate` value: `L402 macaroon="<base64>", invoice="<bolt11>"`.
pub fn challenge_header(macaroon: &Macaroon, invoice: &str) -> String {
    challenge_with_scheme(Scheme::L402, macaroon, invoice)
}

/// The same challenge under a given scheme (servers may also emit an `LSAT` one for old clients).
pub fn challenge_with_scheme(scheme: Scheme, macaroon: &Macaroon, invoice: &str) -> String {
    format!(
        "{} macaroon=\"{}\", invoice=\"{}\"",
        scheme.as_str(),
        macaroon.to_base64(),
        invoice
    )
}

/// The `Authorization` value: `L402 <base64 macaroon>:<hex preimage>`.
pub fn authorization_header(macaroon: &Macaroon, preimage: &Preimage) -> String {
    format!("L402 {}:{}", macaroon.to_base64(), hex::encode(preimage.0))
}

/// A parsed challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Scheme used.
    pub scheme: Scheme,
    /// The macaroon to pay for.
    pub macaroon: Macaroon,
    /// BOLT11 invoice.
    pub invoice: String,
}

/// A parsed credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// Scheme used.
    pub scheme: Scheme,
    /// The macaroon.
    pub macaroon: Macaroon,
    /// Proof of payment.
    pub preimage: Preimage,
}

fn split_scheme(h: &str) -> Result<(Scheme, &str), L402Error> {
    if h.len() > MAX_HEADER_LEN {
        return Err(L402Error::Header("too long"));
    }
    let h = h.trim();
    let (scheme, rest) = h
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or(L402Error::Header("no credentials after the scheme"))?;
    let scheme = Scheme::parse(scheme).ok_or(L402Error::Header("scheme is not L402 or LSAT"))?;
    Ok((scheme, rest.trim()))
}

/// `key="value"` / `key=value` pairs separated by commas (RFC 7235 auth-params, no escapes:
/// base64, hex and bolt11 never contain quotes or backslashes).
fn auth_params(s: &str) -> Result<Vec<(String, String)>, L402Error> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once('=')
            .ok_or(L402Error::Header("auth-param without '='"))?;
        let key = k.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(|c: char| c.is_ascii_whitespace() || c == ',') {
            return Err(L402Error::Header("bad auth-param name"));
        }
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').ok_or(L402Error::Header("unterminated quote"))?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        out.push((key, value.to_owned()));
        rest = tail.trim_start();
        if let Some(t) = rest.strip_prefix(',') {
            rest = t.trim_start();
        } else if !rest.is_empty() {
            return Err(L402Error::Header("expected ',' between auth-params"));
        }
    }
    Ok(out)
}

fn param<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
}

/// Parse a `WWW-Authenticate` challenge: scheme `L402` or `LSAT` (any case), the macaroon as
/// `macaroon="…"` or `token="…"`, `invoice="…"`, optional `version="0"`.
pub fn parse_challenge(h: &str) -> Result<Challenge, L402Error> {
    let (scheme, rest) = split_scheme(h)?;
    let params = auth_params(rest)?;
    if let Some(v) = param(&params, &["version"]) {
        if v != "0" {
            return Err(L402Error::Header("unsupported challenge version"));
        }
    }
    let mac = param(&params, &["macaroon", "token"]).ok_or(L402Error::Header("no macaroon"))?;
    let invoice = param(&params, &["invoice"]).ok_or(L402Error::Header("no invoice"))?;
    if invoice.is_empty() {
        return Err(L402Error::Header("empty invoice"));
    }
    Ok(Challenge {
        scheme,
        macaroon: Macaroon::from_base64(mac)?,
        invoice: invoice.to_owned(),
    })
}

fn parse_preimage(s: &str) -> Result<Preimage, L402Error> {
    let s = s.trim();
    let mut p = [0u8; 32];
    if s.len() == 64 && hex::decode_to_slice(s, &mut p).is_ok() {
        return Ok(Preimage(p));
    }
    // The original LSAT spec used base64 preimages.
    use base64::Engine;
    if s.len() <= 44 {
        if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(s) {
            if let Ok(p) = <[u8; 32]>::try_from(b.as_slice()) {
                return Ok(Preimage(p));
            }
        }
    }
    Err(L402Error::Header("preimage is not 32 bytes of hex"))
}

fn one_macaroon(s: &str) -> Result<Macaroon, L402Error> {
    let s = s.trim();
    if s.contains(',') {
        return Err(L402Error::MultipleMacaroons);
    }
    if s.is_empty() {
        return Err(L402Error::Header("no macaroon"));
    }
    Ok(Macaroon::from_base64(s)?)
}

/// Parse an `Authorization` credential. Accepted forms (scheme `L402` or `LSAT`, any case):
/// - `L402 <base64 macaroon>:<hex preimage>` (bLIP-26);
/// - `L402 token="<base64 macaroon>:<hex preimage>"`;
/// - `L402 macaroon="<base64>", preimage="<hex>"` (or `token="<base64>", preimage="<hex>"`).
pub fn parse_authorization(h: &str) -> Result<Credential, L402Error> {
    let (scheme, rest) = split_scheme(h)?;
    let quoted_params = rest.contains("=\"");
    let (mac, pre) = if quoted_params {
        let params = auth_params(rest)?;
        match param(&params, &["preimage"]) {
            Some(pre) => (
                param(&params, &["macaroon", "token"])
                    .ok_or(L402Error::Header("no macaroon"))?
                    .to_owned(),
                pre.to_owned(),
            ),
            None => {
                let tok = param(&params, &["token"]).ok_or(L402Error::Header("no token"))?;
                let (m, p) = tok
                    .rsplit_once(':')
                    .ok_or(L402Error::Header("token is not macaroon:preimage"))?;
                (m.to_owned(), p.to_owned())
            }
        }
    } else {
        let (m, p) = rest
            .rsplit_once(':')
            .ok_or(L402Error::Header("credential is not macaroon:preimage"))?;
        (m.to_owned(), p.to_owned())
    };
    Ok(Credential {
        scheme,
        macaroon: one_macaroon(&mac)?,
        preimage: parse_preimage(&pre)?,
    })
}
