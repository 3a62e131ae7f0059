//! The faucet: a P2WPKH key that receives the coinbase of every block mined without an explicit
//! destination, and pays anyone with an ordinary signed transaction.
//!
//! Funding nodes with a normal transaction (rather than a coinbase to their address) matters:
//! BDK only spends a coinbase once it is 100 blocks deep, while a faucet payment is spendable as
//! soon as it has one confirmation.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey, SignOnly};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute, ecdsa, transaction, Address, Amount, CompressedPublicKey, Network, OutPoint,
    ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};

use crate::chain::{Chain, COINBASE_MATURITY};
use crate::validate::TxRejection;

/// Fee rate the faucet pays, in sat/vB.
pub const FAUCET_FEE_RATE_SAT_VB: u64 = 2;
/// Outputs below this are not created (change is folded into the fee instead).
pub const DUST_LIMIT_SAT: u64 = 546;

/// Why the faucet could not pay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FaucetError {
    /// The amount is below the dust limit.
    #[error("amount {0} sat is below the dust limit of {DUST_LIMIT_SAT} sat")]
    Dust(u64),
    /// Not enough mature coins; mine more blocks.
    #[error("faucet has {available} sat spendable, {needed} sat needed: mine more blocks")]
    InsufficientFunds {
        /// Spendable satoshis.
        available: u64,
        /// Satoshis needed including the fee.
        needed: u64,
    },
    /// The address is not a regtest address.
    #[error("address is not valid on regtest: {0}")]
    WrongNetwork(String),
    /// The chain refused the faucet's own transaction (a bug).
    #[error("faucet transaction rejected: {0}")]
    Rejected(#[from] TxRejection),
}

/// The faucet key and its script.
#[derive(Debug, Clone)]
pub struct Faucet {
    secret: SecretKey,
    public: CompressedPublicKey,
    address: Address,
    secp: Secp256k1<SignOnly>,
}

impl Faucet {
    /// Derives the faucet key from `seed` (deterministic: same seed, same faucet address).
    pub fn from_seed(seed: u64) -> Self {
        let secp = Secp256k1::signing_only();
        let mut counter = 0u32;
        let secret = loop {
            let mut pre = b"l402-testnet faucet".to_vec();
            pre.extend_from_slice(&seed.to_le_bytes());
            pre.extend_from_slice(&counter.to_le_bytes());
            let h = sha256::Hash::hash(&pre);
            if let Ok(sk) = SecretKey::from_slice(h.as_byte_array()) {
                break sk;
            }
            counter += 1;
        };
        let public = CompressedPublicKey(secret.public_key(&secp));
        let address = Address::p2wpkh(&public, Network::Regtest);
        Faucet {
            secret,
            public,
            address,
            secp,
        }
    }

    /// The faucet's regtest address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The faucet's output script.
    pub fn script_pubkey(&self) -> ScriptBuf {
        self.address.script_pubkey()
    }

    /// Satoshis the faucet can spend now (mature coinbases, confirmed and mempool change).
    pub fn balance(&self, chain: &Chain) -> u64 {
        self.spendable(chain)
            .iter()
            .map(|(_, o)| o.value.to_sat())
            .sum()
    }

    fn spendable(&self, chain: &Chain) -> Vec<(OutPoint, TxOut)> {
        let next = chain.height() + 1;
        let mut coins: Vec<(OutPoint, TxOut, u32)> = chain
            .unspent_for_script(&self.script_pubkey())
            .into_iter()
            .filter(|(_, c)| {
                !c.is_coinbase || c.height.is_some_and(|h| next - h >= COINBASE_MATURITY)
            })
            .map(|(op, c)| (op, c.output, c.height.unwrap_or(u32::MAX)))
            .collect();
        // Oldest first (keeps mempool chains short), then by outpoint for determinism.
        coins.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
        coins.into_iter().map(|(op, o, _)| (op, o)).collect()
    }

    /// Pays `amount` to `script_pubkey`, adding the transaction to the mempool.
    pub fn pay(
        &self,
        chain: &mut Chain,
        script_pubkey: ScriptBuf,
        amount: Amount,
    ) -> Result<Transaction, FaucetError> {
        let amount_sat = amount.to_sat();
        if amount_sat < DUST_LIMIT_SAT {
            return Err(FaucetError::Dust(amount_sat));
        }
        let coins = self.spendable(chain);
        let available: u64 = coins.iter().map(|(_, o)| o.value.to_sat()).sum();
        let mut selected = Vec::new();
        let mut total = 0u64;
        let mut fee = 0u64;
        for coin in coins {
            total += coin.1.value.to_sat();
            selected.push(coin);
            // P2WPKH input ≈ 68 vB, output ≈ 31 vB, overhead ≈ 11 vB; two outputs.
            fee = FAUCET_FEE_RATE_SAT_VB * (11 + 68 * selected.len() as u64 + 2 * 31);
            if total >= amount_sat + fee {
                break;
            }
        }
        if total < amount_sat + fee {
            return Err(FaucetError::InsufficientFunds {
                available,
                needed: amount_sat + fee,
            });
        }
        let mut output = vec![TxOut {
            value: amount,
            script_pubkey,
        }];
        let change = total - amount_sat - fee;
        if change >= DUST_LIMIT_SAT {
            output.push(TxOut {
                value: Amount::from_sat(change),
                script_pubkey: self.script_pubkey(),
            });
        }
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: selected
                .iter()
                .map(|(op, _)| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output,
        };
        let mut witnesses = Vec::with_capacity(selected.len());
        {
            let mut cache = SighashCache::new(&tx);
            for (i, (_, prev)) in selected.iter().enumerate() {
                let sighash = cache
                    .p2wpkh_signature_hash(
                        i,
                        &prev.script_pubkey,
                        prev.value,
                        EcdsaSighashType::All,
                    )
                    .expect("faucet coins are P2WPKH");
                let msg = Message::from(sighash);
                let signature = self.secp.sign_ecdsa(&msg, &self.secret);
                let sig = ecdsa::Signature {
                    signature,
                    sighash_type: EcdsaSighashType::All,
                };
                witnesses.push(Witness::p2wpkh(&sig, &self.public.0));
            }
        }
        for (input, w) in tx.input.iter_mut().zip(witnesses) {
            input.witness = w;
        }
        chain.accept(tx.clone())?;
        Ok(tx)
    }
}

/// Parses a regtest address.
pub fn parse_regtest_address(s: &str) -> Result<Address, FaucetError> {
    s.parse::<Address<bitcoin::address::NetworkUnchecked>>()
        .map_err(|e| FaucetError::WrongNetwork(e.to_string()))?
        .require_network(Network::Regtest)
        .map_err(|e| FaucetError::WrongNetwork(e.to_string()))
}
