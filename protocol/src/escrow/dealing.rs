//! The signed dealing of one tranche's preimage to the round's validators.
//!
//! Spec: specs/L2T-05-escrow.md#dealing

use k256::ProjectivePoint;
use nostr::nips::nip44;
use nostr::{Keys, PublicKey, SecretKey};
use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::tranche::TrancheSpec;
use super::vss::{self, Preimage, Share};
use crate::events::canonical::{CanonError, MapReader, MapWriter};
use crate::events::ids::{PaymentHash, RunId, Score, SubmissionId, UnixTime};
use crate::events::sig::{self, DOMAIN_DEALING};

/// Most validators in a round committee.
pub const MAX_VALIDATORS: usize = 64;
/// Cap on one NIP-44 share ciphertext (base64). A 32-byte share encrypts to 132 characters.
pub const MAX_SHARE_CIPHERTEXT_LEN: usize = 256;
/// Cap on an encoded [`SignedDealing`].
pub const MAX_DEALING_BYTES: usize = 32 * 1024;

/// What the dealer commits to for one tranche of one submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DealingBody {
    /// Run.
    pub run_id: RunId,
    /// Round.
    pub round: u64,
    /// Submission the reward is for.
    pub submission: SubmissionId,
    /// Worker that will hold the invoice and receive the shares.
    pub peer: PublicKey,
    /// Tranche index in the round's schedule.
    pub tranche: u32,
    /// Amount, threshold, holdback flag.
    pub spec: TrancheSpec,
    /// The worker must claim or fail back before this time.
    pub claim_deadline: UnixTime,
    /// `H = sha256(P)`.
    pub payment_hash: PaymentHash,
    /// Threshold `k`.
    pub k: u32,
    /// The committee, in share-index order (validator `i` holds share index `i + 1`).
    pub validators: Vec<PublicKey>,
    /// Feldman commitments `C₀ … C_{k−1}`, 33-byte compressed.
    pub commitments: Vec<[u8; 33]>,
    /// Ephemeral x-only key `E` the shares are NIP-44-encrypted from (fresh per dealing, so that
    /// a complaint exposes only this dealing's share).
    pub ephemeral: PublicKey,
    /// NIP-44 v2 ciphertexts (base64), one per validator, from `E` to the validator.
    pub shares: Vec<String>,
    /// The dealer (payer) that signs it.
    pub dealer: PublicKey,
}

/// Error decoding or checking a dealing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DealingError {
    /// Not canonical CBOR of the right shape.
    #[error("dealing encoding: {0}")]
    Encoding(#[from] CanonError),
    /// A structural rule is broken (named).
    #[error("dealing is malformed: {0}")]
    Malformed(&'static str),
    /// The dealer's signature does not verify.
    #[error("dealing signature does not verify")]
    BadSignature,
    /// NIP-44 encryption failed (only for invalid keys).
    #[error("share encryption failed")]
    Encrypt,
}

impl DealingBody {
    /// Canonical bytes (the signed message).
    pub fn encode(&self) -> Vec<u8> {
        MapWriter::new(1)
            .text(1, self.run_id.as_str())
            .u64(2, self.round)
            .bytes(3, &self.submission.0)
            .bytes(4, self.peer.as_bytes())
            .u64(5, u64::from(self.tranche))
            .u64(6, self.spec.amount_msat)
            .i64(7, self.spec.threshold.0)
            .bool(8, self.spec.holdback)
            .u64(9, self.claim_deadline)
            .bytes(10, &self.payment_hash.0)
            .u64(11, u64::from(self.k))
            .bytes_array(12, self.validators.iter().map(|v| v.as_bytes().as_slice()))
            .bytes_array(13, self.commitments.iter().map(|c| c.as_slice()))
            .bytes(14, self.ephemeral.as_bytes())
            .text_array(15, self.shares.iter().map(String::as_str))
            .bytes(16, self.dealer.as_bytes())
            .finish()
    }

    /// Decode and check the structure: `1 ≤ k ≤ n ≤ MAX_VALIDATORS`, distinct validators,
    /// `k` valid commitment points, `n` share ciphertexts within the size cap, non-zero amount.
    pub fn decode(b: &[u8]) -> Result<Self, DealingError> {
        Self::decode_with_points(b).map(|(body, _)| body)
    }

    /// [`DealingBody::decode`], with the commitment points the check decompressed.
    fn decode_with_points(b: &[u8]) -> Result<(Self, Vec<ProjectivePoint>), DealingError> {
        let r = MapReader::decode(
            b,
            MAX_DEALING_BYTES,
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
            &[1],
        )?;
        let pk = |bytes: &[u8], what| {
            PublicKey::from_slice(bytes).map_err(|_| DealingError::Malformed(what))
        };
        let validators = r
            .bytes_array(12, MAX_VALIDATORS)?
            .into_iter()
            .map(|b| pk(b, "validator key"))
            .collect::<Result<Vec<_>, _>>()?;
        let commitments = r
            .bytes_array(13, MAX_VALIDATORS)?
            .into_iter()
            .map(|b| <[u8; 33]>::try_from(b).map_err(|_| DealingError::Malformed("commitment")))
            .collect::<Result<Vec<_>, _>>()?;
        let shares: Vec<String> = r
            .text_array(15, MAX_VALIDATORS)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let body = Self {
            run_id: RunId::new(r.text(1)?).map_err(|_| DealingError::Malformed("run_id"))?,
            round: r.u64(2)?,
            submission: SubmissionId(r.array_n(3)?),
            peer: pk(r.bytes(4)?, "peer key")?,
            tranche: u32::try_from(r.u64(5)?).map_err(|_| DealingError::Malformed("tranche"))?,
            spec: TrancheSpec {
                amount_msat: r.u64(6)?,
                threshold: Score(r.i64(7)?),
                holdback: r.bool(8)?,
            },
            claim_deadline: r.u64(9)?,
            payment_hash: PaymentHash(r.array_n(10)?),
            k: u32::try_from(r.u64(11)?).map_err(|_| DealingError::Malformed("k"))?,
            validators,
            commitments,
            ephemeral: pk(r.bytes(14)?, "ephemeral key")?,
            shares,
            dealer: pk(r.bytes(16)?, "dealer key")?,
        };
        let points = body.check_structure()?;
        Ok((body, points))
    }

    /// The structure rules; returns the commitments decompressed (each checked to be a point).
    fn check_structure(&self) -> Result<Vec<ProjectivePoint>, DealingError> {
        self.check_shape()?;
        let points = self
            .commitment_points()
            .ok_or(DealingError::Malformed("commitment point"))?;
        if vss::lift_x(self.ephemeral.as_bytes()).is_none() {
            return Err(DealingError::Malformed("ephemeral key"));
        }
        Ok(points)
    }

    /// The structure rules that need no curve arithmetic (counts, sizes, distinct validators,
    /// amount): what the dealer checks of its own dealing, whose points it made.
    fn check_shape(&self) -> Result<(), DealingError> {
        let n = self.validators.len();
        let k = self.k as usize;
        if k == 0 || k > n || n > MAX_VALIDATORS {
            return Err(DealingError::Malformed("k and n"));
        }
        let mut sorted: Vec<_> = self.validators.iter().collect();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != n {
            return Err(DealingError::Malformed("duplicate validator"));
        }
        if self.commitments.len() != k {
            return Err(DealingError::Malformed("commitment count"));
        }
        if self.shares.len() != n {
            return Err(DealingError::Malformed("share count"));
        }
        if self
            .shares
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_SHARE_CIPHERTEXT_LEN)
        {
            return Err(DealingError::Malformed("share ciphertext size"));
        }
        if self.spec.amount_msat == 0 {
            return Err(DealingError::Malformed("amount"));
        }
        Ok(())
    }

    /// The commitments decompressed; `None` if one is not a point. (A decoded
    /// [`SignedDealing`] keeps them: [`SignedDealing::commitment_points`].)
    pub fn commitment_points(&self) -> Option<Vec<ProjectivePoint>> {
        self.commitments
            .iter()
            .map(|c| vss::point_from_bytes(c))
            .collect()
    }

    /// Share index (1-based) of `validator`, if it is in the committee.
    pub fn share_index(&self, validator: &PublicKey) -> Option<u32> {
        self.validators
            .iter()
            .position(|v| v == validator)
            .map(|i| i as u32 + 1)
    }
}

/// A dealing with the dealer's BIP-340 signature. Only exists verified (or freshly signed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedDealing {
    body: DealingBody,
    body_bytes: Vec<u8>,
    sig: [u8; 64],
    /// `body.commitments` decompressed, once: every member's share check and the worker's
    /// reconstruction use them (decompressing is a field square root per point).
    points: Vec<ProjectivePoint>,
}

impl SignedDealing {
    /// The dealt tranche.
    pub fn body(&self) -> &DealingBody {
        &self.body
    }

    /// The Feldman commitments `C₀ … C_{k−1}` as points.
    pub fn commitment_points(&self) -> &[ProjectivePoint] {
        &self.points
    }

    /// Canonical encoding `{0: 1, 1: body bytes, 2: signature}`.
    pub fn encode(&self) -> Vec<u8> {
        encode_signed(&self.body_bytes, &self.sig)
    }

    /// Decode: cap → canonical outer map → body structure → signature by the body's dealer.
    pub fn decode(b: &[u8]) -> Result<Self, DealingError> {
        let (body_bytes, sig) = decode_signed(b)?;
        let (body, points) = DealingBody::decode_with_points(&body_bytes)?;
        if !sig::verify(&body.dealer, DOMAIN_DEALING, &body_bytes, &sig) {
            return Err(DealingError::BadSignature);
        }
        Ok(Self {
            body,
            body_bytes,
            sig,
            points,
        })
    }

    /// Base64 of [`SignedDealing::encode`].
    pub fn to_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.encode())
    }

    /// Inverse of [`SignedDealing::to_base64`], with the size cap checked before decoding.
    pub fn from_base64(s: &str) -> Result<Self, DealingError> {
        Self::decode(&b64_capped(s, MAX_DEALING_BYTES)?)
    }

    /// A validator decrypts and checks its own share.
    ///
    /// Errors other than [`ShareError::NotAValidator`] are the dealer's fault: the validator
    /// should publish [`super::evidence::BadShareComplaint::new`].
    pub fn open_share(&self, validator: &Keys) -> Result<Share, ShareError> {
        let ch = ShareChannel::new(validator.secret_key(), &self.body.ephemeral)?;
        self.open_share_via(&ch, &validator.public_key())
    }

    /// [`SignedDealing::open_share`] over `ch`, the channel of this dealing's ephemeral key `E`
    /// with `validator`'s key ([`ShareChannel::new`] from the validator's secret and `E`): a
    /// member opening the dealings of one offer, which share `E`, derives it once.
    pub fn open_share_via(
        &self,
        ch: &ShareChannel,
        validator: &PublicKey,
    ) -> Result<Share, ShareError> {
        let index = self
            .body
            .share_index(validator)
            .ok_or(ShareError::NotAValidator)?;
        let ct = &self.body.shares[index as usize - 1];
        let pt = ch.open(ct)?;
        self.check_plain_share(index, &pt)
    }

    pub(crate) fn check_plain_share(&self, index: u32, pt: &[u8]) -> Result<Share, ShareError> {
        self.check_against_commitments(scalar_share(index, pt)?)
    }

    fn check_against_commitments(&self, share: Share) -> Result<Share, ShareError> {
        if !vss::verify_share(&self.points, &share) {
            return Err(ShareError::Inconsistent);
        }
        Ok(share)
    }

    /// A validator re-encrypts its (verified) share to the worker, NIP-44 from its own key.
    pub fn release_share<R: RngCore + CryptoRng>(
        &self,
        validator: &Keys,
        share: &Share,
        rng: &mut R,
    ) -> Result<String, ShareError> {
        let ch = ShareChannel::new(validator.secret_key(), &self.body.peer)?;
        Ok(self.release_share_via(&ch, share, rng))
    }

    /// [`SignedDealing::release_share`] over a channel to the worker derived once for all the
    /// shares of one attestation (one ECDH instead of one per tranche).
    pub fn release_share_via<R: RngCore + CryptoRng>(
        &self,
        ch: &ShareChannel,
        share: &Share,
        rng: &mut R,
    ) -> String {
        ch.seal(rng, &share.value)
    }

    /// The worker decrypts a share released over `ch` (its channel with `validator`) without the
    /// Feldman check: the claim path interpolates first and checks the payment hash, which is
    /// enough to know the preimage, and falls back to checking shares only when that fails
    /// ([`vss::reconstruct`]). Errors are the validator's fault (or a forgery).
    pub fn decrypt_released_share(
        &self,
        ch: &ShareChannel,
        validator: &PublicKey,
        ciphertext: &str,
    ) -> Result<Share, ShareError> {
        let index = self
            .body
            .share_index(validator)
            .ok_or(ShareError::NotAValidator)?;
        scalar_share(index, &ch.open(ciphertext)?)
    }

    /// The worker decrypts a share released by `validator` and checks it against the
    /// commitments. Errors here are the validator's fault (or a forgery), never the dealer's.
    pub fn open_released_share(
        &self,
        worker: &Keys,
        validator: &PublicKey,
        ciphertext: &str,
    ) -> Result<Share, ShareError> {
        let ch = ShareChannel::new(worker.secret_key(), validator)?;
        self.check_against_commitments(self.decrypt_released_share(&ch, validator, ciphertext)?)
    }

    /// Reconstruct the preimage from released shares (see [`vss::reconstruct`]).
    pub fn reconstruct(&self, shares: &[Share]) -> Result<Preimage, vss::ReconstructError> {
        vss::reconstruct(&self.points, shares, &self.body.payment_hash)
    }
}

/// The NIP-44 v2 conversation key between a validator and a worker, over which released shares
/// travel. Deriving it is the ECDH; sealing and opening with it are a hash and a stream cipher,
/// so a role derives it once per attestation rather than once per share.
pub struct ShareChannel(nip44::v2::ConversationKey);

impl std::fmt::Debug for ShareChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareChannel(<redacted>)")
    }
}

impl ShareChannel {
    /// The channel between `secret` (ours) and `other`'s public key.
    ///
    /// This is NIP-44 v2's `ConversationKey::derive` (ECDH with `other` lifted to its even-Y
    /// point, then HKDF-extract of the shared x with salt `nip44-v2`), written out so that
    /// `other` is lifted once: nostr's `generate_shared_key` parses the x-only key, then parses
    /// it again as a full point, a field square root each time (test
    /// `share_channel_is_nip44_conversation_key`).
    pub fn new(secret: &SecretKey, other: &PublicKey) -> Result<Self, ShareError> {
        use nostr::hashes::Hash;
        let mut even = [2u8; 33];
        even[1..].copy_from_slice(other.as_bytes());
        let point = nostr::secp256k1::PublicKey::from_slice(&even)
            .map_err(|_| ShareError::Undecryptable)?;
        let shared = nostr::secp256k1::ecdh::shared_secret_point(&point, secret);
        let prk = nostr::util::hkdf::extract(b"nip44-v2", &shared[..32]);
        Ok(Self(nip44::v2::ConversationKey::new(prk.to_byte_array())))
    }

    /// The channel between `ours` and `other`: [`Self::new`], remembered for the process
    /// ([`conversation_memo`]). For keys that meet again: a validator and a worker meet round
    /// after round, and a round's ephemeral offer key `E` meets each pool member at every offer
    /// of the round whose committee it sits on (NIP-44 clients cache conversation keys the same
    /// way).
    pub fn between(ours: &Keys, other: &PublicKey) -> Result<Self, ShareError> {
        let key = (ours.public_key(), *other);
        if let Some(ck) = conversation_memo().get(&key) {
            return Ok(Self(*ck));
        }
        let ch = Self::new(ours.secret_key(), other)?;
        let mut memo = conversation_memo();
        if memo.len() >= CONVERSATION_MEMO_CAP {
            memo.clear();
        }
        memo.insert(key, ch.0);
        Ok(ch)
    }

    fn seal<R: RngCore + CryptoRng>(&self, rng: &mut R, value: &[u8; 32]) -> String {
        use base64::Engine;
        // Encrypting 32 bytes under a valid key cannot fail (the only errors are for empty or
        // over-long plaintexts).
        let payload = nip44::v2::encrypt_to_bytes_with_rng(rng, &self.0, value).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(payload)
    }

    fn open(&self, ciphertext: &str) -> Result<Vec<u8>, ShareError> {
        if ciphertext.len() > MAX_SHARE_CIPHERTEXT_LEN {
            return Err(ShareError::Undecryptable);
        }
        let payload = b64_capped(ciphertext, MAX_SHARE_CIPHERTEXT_LEN)
            .map_err(|_| ShareError::Undecryptable)?;
        // Version byte first, as nostr's own `nip44::decrypt_to_bytes` checks it.
        if payload.first() != Some(&2) {
            return Err(ShareError::Undecryptable);
        }
        nip44::v2::decrypt_to_bytes(&self.0, &payload).map_err(|_| ShareError::Undecryptable)
    }
}

/// Most conversation keys [`ShareChannel::between`] remembers; it forgets them all when full (a
/// pure memo: forgetting changes nothing but the cost of the next derivation).
pub const CONVERSATION_MEMO_CAP: usize = 1 << 17;

/// Conversation keys per (our key, their key). A `BTreeMap`, not a `HashMap`: the crate reads
/// no RNG, and std's hasher seeds itself from the OS.
type ConversationMemo =
    std::collections::BTreeMap<(PublicKey, PublicKey), nip44::v2::ConversationKey>;

/// The process's [`ConversationMemo`], locked.
fn conversation_memo() -> std::sync::MutexGuard<'static, ConversationMemo> {
    static MEMO: std::sync::Mutex<ConversationMemo> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    MEMO.lock().unwrap_or_else(|p| p.into_inner())
}

/// A decrypted share plaintext as the share at `index`: exactly 32 bytes, a canonical scalar.
fn scalar_share(index: u32, pt: &[u8]) -> Result<Share, ShareError> {
    let value: [u8; 32] = pt.try_into().map_err(|_| ShareError::NotAScalar)?;
    if vss::scalar_from_bytes(&value).is_none() {
        return Err(ShareError::NotAScalar);
    }
    Ok(Share { index, value })
}

pub(crate) fn encode_signed(body_bytes: &[u8], sig: &[u8; 64]) -> Vec<u8> {
    MapWriter::new(1)
        .bytes(1, body_bytes)
        .bytes(2, sig)
        .finish()
}

pub(crate) fn decode_signed(b: &[u8]) -> Result<(Vec<u8>, [u8; 64]), DealingError> {
    let r = MapReader::decode(b, MAX_DEALING_BYTES, &[1, 2], &[1])?;
    Ok((r.bytes(1)?.to_vec(), r.array_n(2)?))
}

pub(crate) fn b64_capped(s: &str, max: usize) -> Result<Vec<u8>, CanonError> {
    use base64::Engine;
    if s.len() > max.div_ceil(3) * 4 {
        return Err(CanonError::TooLarge {
            size: s.len() / 4 * 3,
            max,
        });
    }
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| CanonError::Malformed(e.to_string()))
}

/// Error opening a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The key is not in the dealing's committee.
    #[error("not a validator of this dealing")]
    NotAValidator,
    /// The ciphertext does not decrypt (bad MAC, bad padding, bad base64).
    #[error("share ciphertext does not decrypt")]
    Undecryptable,
    /// The plaintext is not a canonical 32-byte scalar.
    #[error("share is not a scalar")]
    NotAScalar,
    /// The share fails the Feldman check against the commitments.
    #[error("share is inconsistent with the commitments")]
    Inconsistent,
}

/// Everything a dealing binds besides the randomness.
#[derive(Clone, Debug)]
pub struct DealingParams<'a> {
    /// Run.
    pub run_id: &'a RunId,
    /// Round.
    pub round: u64,
    /// Submission.
    pub submission: SubmissionId,
    /// Worker.
    pub peer: PublicKey,
    /// Tranche index.
    pub tranche: u32,
    /// Tranche terms.
    pub spec: TrancheSpec,
    /// Claim deadline.
    pub claim_deadline: UnixTime,
    /// Committee in share order.
    pub validators: &'a [PublicKey],
    /// Threshold.
    pub k: usize,
}

/// A dishonest dealing, for the simulator's dishonest-dealer actor and for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Corruption {
    /// Honest dealing.
    #[default]
    None,
    /// The share of validator position `i` (0-based) is off by one.
    WrongShare(usize),
    /// The ciphertext of validator position `i` is random bytes.
    GarbageCiphertext(usize),
    /// The payment hash does not match the shared secret.
    WrongPaymentHash,
}

/// The dealer's encryption side of an offer: an ephemeral key `E` for every dealing of the
/// offer, and `E`'s NIP-44 conversation key with each committee member. The coordinator uses
/// one `E` for all its offers of a round and remembers the channels ([`Self::for_round`]), so
/// the ECDH is done once per pool member and round rather than once per offer and member. A
/// complaint reveals one member's conversation key, so it exposes that member's shares of every
/// offer made under that `E`; a complaint verifies only against a dealer that signed a bad
/// share, whose own escrow is all it weakens (L2T-05 §dealing).
pub struct OfferCipher {
    eph: Keys,
    channels: Vec<(PublicKey, ShareChannel)>,
}

impl std::fmt::Debug for OfferCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfferCipher")
            .field("ephemeral", &self.eph.public_key())
            .finish_non_exhaustive()
    }
}

impl OfferCipher {
    /// `E` drawn from `ChaCha20(seed)` (a seed of its own, never a dealing's), and its channel
    /// with each member of `committee`, derived afresh (a one-off `E`: a lone dealing's).
    pub fn new(seed: &[u8; 32], committee: &[PublicKey]) -> Result<Self, DealingError> {
        Self::with(seed, committee, |eph, v| {
            ShareChannel::new(eph.secret_key(), v)
        })
    }

    /// [`Self::new`] for an `E` that serves many offers (a coordinator's round): each channel
    /// is remembered ([`ShareChannel::between`]), so the round's later offers derive none.
    pub fn for_round(seed: &[u8; 32], committee: &[PublicKey]) -> Result<Self, DealingError> {
        Self::with(seed, committee, ShareChannel::between)
    }

    fn with(
        seed: &[u8; 32],
        committee: &[PublicKey],
        channel: impl Fn(&Keys, &PublicKey) -> Result<ShareChannel, ShareError>,
    ) -> Result<Self, DealingError> {
        let mut rng = ChaCha20Rng::from_seed(*seed);
        let eph = loop {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            if let Ok(sk) = SecretKey::from_slice(&b) {
                break Keys::new(sk);
            }
        };
        let channels = committee
            .iter()
            .map(|v| {
                channel(&eph, v)
                    .map(|c| (*v, c))
                    .map_err(|_| DealingError::Encrypt)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { eph, channels })
    }

    /// The ephemeral key `E` the offer's dealings carry.
    pub fn ephemeral(&self) -> PublicKey {
        self.eph.public_key()
    }
}

/// The seed of the [`OfferCipher`] of a lone dealing made by [`deal_with`] from `seed`:
/// domain-separated, so `E`'s secret is never a draw of the dealing's own stream.
fn lone_ephemeral_seed(seed: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key("l402/escrow/ephemeral/v1", seed)
}

/// Deal a fresh preimage for one tranche, honestly. All randomness (polynomial, ephemeral key,
/// NIP-44 nonces, signature aux) flows from `seed`, so a restarted dealer re-deals
/// byte-identically.
pub fn deal(
    dealer: &Keys,
    p: &DealingParams<'_>,
    seed: &[u8; 32],
) -> Result<(SignedDealing, Preimage), DealingError> {
    deal_with(dealer, p, seed, Corruption::None)
}

/// [`deal`] with an optional [`Corruption`]: a lone dealing, with an ephemeral key of its own
/// (derived from `seed`).
pub fn deal_with(
    dealer: &Keys,
    p: &DealingParams<'_>,
    seed: &[u8; 32],
    corruption: Corruption,
) -> Result<(SignedDealing, Preimage), DealingError> {
    let cipher = OfferCipher::new(&lone_ephemeral_seed(seed), p.validators)?;
    deal_in_offer(dealer, p, seed, &cipher, corruption)
}

/// One dealing of an offer whose dealings share `cipher`'s ephemeral key (made for the same
/// committee, in the same order). The polynomial, NIP-44 nonces and signature aux are drawn
/// from `ChaCha20(seed)`, so a restarted dealer with the same seeds re-deals byte-identically.
pub fn deal_in_offer(
    dealer: &Keys,
    p: &DealingParams<'_>,
    seed: &[u8; 32],
    cipher: &OfferCipher,
    corruption: Corruption,
) -> Result<(SignedDealing, Preimage), DealingError> {
    let n = p.validators.len();
    if p.k == 0 || p.k > n || n > MAX_VALIDATORS {
        return Err(DealingError::Malformed("k and n"));
    }
    if cipher.channels.len() != n
        || cipher
            .channels
            .iter()
            .zip(p.validators)
            .any(|((a, _), b)| a != b)
    {
        return Err(DealingError::Malformed(
            "offer cipher made for another committee",
        ));
    }
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let sharing = vss::share_random(&mut rng, p.k, n);
    let mut shares = Vec::with_capacity(n);
    for (i, ((_, ch), sh)) in cipher.channels.iter().zip(&sharing.shares).enumerate() {
        let mut value = sh.value;
        if corruption == Corruption::WrongShare(i) {
            let s =
                vss::scalar_from_bytes(&value).unwrap_or(k256::Scalar::ZERO) + k256::Scalar::ONE;
            value = vss::scalar_to_bytes(&s);
        }
        let ct = if corruption == Corruption::GarbageCiphertext(i) {
            use base64::Engine;
            let mut junk = [0u8; 99];
            rng.fill_bytes(&mut junk);
            junk[0] = 2;
            base64::engine::general_purpose::STANDARD.encode(junk)
        } else {
            ch.seal(&mut rng, &value)
        };
        shares.push(ct);
    }
    let mut payment_hash = sharing.preimage.payment_hash();
    if corruption == Corruption::WrongPaymentHash {
        payment_hash.0[0] ^= 0xff;
    }
    let body = DealingBody {
        run_id: p.run_id.clone(),
        round: p.round,
        submission: p.submission,
        peer: p.peer,
        tranche: p.tranche,
        spec: p.spec,
        claim_deadline: p.claim_deadline,
        payment_hash,
        k: p.k as u32,
        validators: p.validators.to_vec(),
        commitments: sharing
            .commitments
            .iter()
            .map(vss::point_to_bytes)
            .collect(),
        ephemeral: cipher.ephemeral(),
        shares,
        dealer: dealer.public_key(),
    };
    // Our own points and ephemeral key (from `Keys`, so on the curve): only the shape needs
    // checking, not a decompression of what we just compressed. The identity, whose encoding
    // no decoder takes, is refused here as decoding would refuse it.
    body.check_shape()?;
    if sharing.commitments.contains(&ProjectivePoint::IDENTITY) {
        return Err(DealingError::Malformed("commitment point"));
    }
    let points = sharing.commitments;
    let body_bytes = body.encode();
    let mut aux = [0u8; 32];
    rng.fill_bytes(&mut aux);
    let sig = sig::sign(dealer, DOMAIN_DEALING, &body_bytes, &aux);
    Ok((
        SignedDealing {
            body,
            body_bytes,
            sig,
            points,
        },
        sharing.preimage,
    ))
}

#[cfg(test)]
mod channel_tests {
    use super::*;

    #[test]
    fn share_channel_is_nip44_conversation_key() {
        for i in 1..=40u8 {
            let mut a = [0x31u8; 32];
            a[0] = i;
            let mut b = [0x57u8; 32];
            b[31] = i;
            let ours = Keys::new(SecretKey::from_slice(&a).unwrap());
            let theirs = Keys::new(SecretKey::from_slice(&b).unwrap());
            let ch = ShareChannel::new(ours.secret_key(), &theirs.public_key()).unwrap();
            let nostr_ck =
                nip44::v2::ConversationKey::derive(ours.secret_key(), &theirs.public_key())
                    .unwrap();
            assert_eq!(ch.0.as_bytes(), nostr_ck.as_bytes(), "keys {i}");
            // And symmetric, as NIP-44 is.
            let back = ShareChannel::new(theirs.secret_key(), &ours.public_key()).unwrap();
            assert_eq!(back.0.as_bytes(), ch.0.as_bytes());
        }
        // An x that is on no curve point is refused, as nostr's derivation refuses it.
        let off_curve = crate::events::sig::off_curve_key();
        let sk = SecretKey::from_slice(&[0x31; 32]).unwrap();
        assert!(nip44::v2::ConversationKey::derive(&sk, &off_curve).is_err());
        assert_eq!(
            ShareChannel::new(&sk, &off_curve).err(),
            Some(ShareError::Undecryptable)
        );
    }
}
