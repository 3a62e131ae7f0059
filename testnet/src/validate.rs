//! Mempool acceptance rules.
//!
//! These are the consensus rules that matter for the transactions LDK and BDK make, checked in
//! cheap-first order: structure, inputs exist and are unspent (mempool and chain), no double
//! spends, coinbase maturity, value conservation, absolute lock-time finality (BIP113 median
//! time past), relative lock-times (BIP68), and finally every input script through
//! libbitcoinconsensus (the `bitcoin` crate's `bitcoinconsensus` feature, Bitcoin Core 25.1's
//! interpreter with P2SH, DERSIG, NULLDUMMY, CLTV, CSV and WITNESS flags).
//!
//! Not enforced (documented in the crate docs): taproot script paths (libbitcoinconsensus 25.1
//! has no taproot flag), replace-by-fee, package relay, minimum relay fee, dust and
//! ancestor-count policy. Replacement attempts are rejected as double spends.

use bitcoin::consensus::encode::serialize;
use bitcoin::{OutPoint, Transaction, TxOut, Txid};

use crate::chain::{Chain, CoinLookup, TxRecord, COINBASE_MATURITY};

/// Largest standard transaction weight (Bitcoin Core `MAX_STANDARD_TX_WEIGHT`).
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// 21 million bitcoin in satoshis.
pub const MAX_MONEY: u64 = 21_000_000 * 100_000_000;
/// Lock-time values below this are block heights, above are UNIX times.
const LOCKTIME_THRESHOLD: u32 = 500_000_000;
const SEQUENCE_DISABLE_FLAG: u32 = 1 << 31;
const SEQUENCE_TYPE_FLAG: u32 = 1 << 22;
const SEQUENCE_MASK: u32 = 0xffff;
const SEQUENCE_GRANULARITY_SHIFT: u32 = 9;

/// Why a transaction was refused. The `Display` text starts with Bitcoin Core's reject reason
/// (e.g. `txn-mempool-conflict`) and is what `POST /tx` answers with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxRejection {
    /// The body was not hex or not a consensus-encoded transaction.
    #[error("TX decode failed: {0}")]
    Decode(String),
    /// No inputs.
    #[error("bad-txns-vin-empty")]
    NoInputs,
    /// No outputs.
    #[error("bad-txns-vout-empty")]
    NoOutputs,
    /// Coinbase transactions only come from mining.
    #[error("coinbase: a coinbase transaction cannot be broadcast")]
    Coinbase,
    /// Too heavy for relay.
    #[error("tx-size: weight {0} exceeds {MAX_STANDARD_TX_WEIGHT}")]
    TooLarge(u64),
    /// The same outpoint is spent twice inside the transaction.
    #[error("bad-txns-inputs-duplicate: {0}")]
    DuplicateInput(OutPoint),
    /// An output value, or their sum, exceeds 21 M BTC.
    #[error("bad-txns-vout-toolarge")]
    OutputTooLarge,
    /// An input spends an output already spent by a mempool transaction.
    #[error(
        "txn-mempool-conflict: input {outpoint} is already spent by mempool transaction {spender}"
    )]
    MempoolConflict {
        /// The doubly spent outpoint.
        outpoint: OutPoint,
        /// The mempool transaction already spending it.
        spender: Txid,
    },
    /// An input spends an output already spent in the chain.
    #[error(
        "bad-txns-inputs-missingorspent: input {outpoint} was spent in the chain by {spender}"
    )]
    SpentInChain {
        /// The doubly spent outpoint.
        outpoint: OutPoint,
        /// The confirmed transaction that spent it.
        spender: Txid,
    },
    /// An input refers to an output nobody knows.
    #[error("bad-txns-inputs-missingorspent: input {0} does not exist")]
    MissingInput(OutPoint),
    /// A coinbase output is spent before it is 100 blocks deep.
    #[error("bad-txns-premature-spend-of-coinbase: input {outpoint} has {depth} confirmations, needs {COINBASE_MATURITY}")]
    ImmatureCoinbase {
        /// The coinbase outpoint.
        outpoint: OutPoint,
        /// Its depth at the next block.
        depth: u32,
    },
    /// Outputs are worth more than inputs.
    #[error("bad-txns-in-belowout: inputs {inputs} sat < outputs {outputs} sat")]
    InBelowOut {
        /// Sum of the inputs.
        inputs: u64,
        /// Sum of the outputs.
        outputs: u64,
    },
    /// The absolute lock-time is not yet reached.
    #[error("non-final: lock time {0} not reached")]
    NonFinal(u32),
    /// A BIP68 relative lock-time is not yet reached.
    #[error("non-BIP68-final: input {0} is relatively time-locked")]
    NonBip68Final(usize),
    /// An input script failed libbitcoinconsensus verification.
    #[error("mandatory-script-verify-flag-failed: input {index}: {reason}")]
    Script {
        /// The failing input.
        index: usize,
        /// libbitcoinconsensus's reason.
        reason: String,
    },
}

/// Checks `tx` for acceptance into the mempool of `chain` (which must not know it yet).
pub(crate) fn check_transaction(chain: &Chain, tx: &Transaction) -> Result<TxRecord, TxRejection> {
    // 1. Structure.
    if tx.input.is_empty() {
        return Err(TxRejection::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(TxRejection::NoOutputs);
    }
    if tx.is_coinbase() {
        return Err(TxRejection::Coinbase);
    }
    let weight = tx.weight().to_wu();
    if weight > MAX_STANDARD_TX_WEIGHT {
        return Err(TxRejection::TooLarge(weight));
    }
    let mut outputs: u64 = 0;
    for o in &tx.output {
        let v = o.value.to_sat();
        outputs = outputs.checked_add(v).ok_or(TxRejection::OutputTooLarge)?;
        if v > MAX_MONEY || outputs > MAX_MONEY {
            return Err(TxRejection::OutputTooLarge);
        }
    }
    let mut seen = std::collections::HashSet::with_capacity(tx.input.len());
    for i in &tx.input {
        if !seen.insert(i.previous_output) {
            return Err(TxRejection::DuplicateInput(i.previous_output));
        }
    }

    // 2. Inputs exist, are unspent, are mature.
    let next_height = chain.height() + 1;
    let mut prevouts: Vec<TxOut> = Vec::with_capacity(tx.input.len());
    let mut heights: Vec<Option<u32>> = Vec::with_capacity(tx.input.len());
    for input in &tx.input {
        let op = input.previous_output;
        let coin = match chain.lookup_coin(&op) {
            CoinLookup::Found(c) => c,
            CoinLookup::SpentInMempool(s) => {
                return Err(TxRejection::MempoolConflict {
                    outpoint: op,
                    spender: s.txid,
                })
            }
            CoinLookup::SpentInChain(s) => {
                return Err(TxRejection::SpentInChain {
                    outpoint: op,
                    spender: s.txid,
                })
            }
            CoinLookup::Missing => return Err(TxRejection::MissingInput(op)),
        };
        if coin.is_coinbase {
            let depth = coin.height.map(|h| next_height - h).unwrap_or(0);
            if depth < COINBASE_MATURITY {
                return Err(TxRejection::ImmatureCoinbase {
                    outpoint: op,
                    depth,
                });
            }
        }
        heights.push(coin.height);
        prevouts.push(coin.output);
    }

    // 3. Value.
    let inputs: u64 = prevouts.iter().map(|o| o.value.to_sat()).sum();
    if inputs < outputs {
        return Err(TxRejection::InBelowOut { inputs, outputs });
    }

    // 4. Absolute lock-time finality (Core `IsFinalTx` with BIP113 median time past).
    let lock = tx.lock_time.to_consensus_u32();
    if lock != 0 && tx.is_lock_time_enabled() {
        let final_ = if lock < LOCKTIME_THRESHOLD {
            lock < next_height
        } else {
            lock < chain.tip_mediantime()
        };
        if !final_ {
            return Err(TxRejection::NonFinal(lock));
        }
    }

    // 5. BIP68 relative lock-times (Core `CalculateSequenceLocks`).
    if tx.version.0 >= 2 {
        let tip_mtp = chain.tip_mediantime();
        for (index, (input, height)) in tx.input.iter().zip(&heights).enumerate() {
            let seq = input.sequence.0;
            if seq & SEQUENCE_DISABLE_FLAG != 0 {
                continue;
            }
            let value = seq & SEQUENCE_MASK;
            let coin_height = height.unwrap_or(next_height);
            let ok = if seq & SEQUENCE_TYPE_FLAG != 0 {
                let base = chain.mediantime_at(coin_height.saturating_sub(1).min(chain.height()));
                let min_time =
                    i64::from(base) + (i64::from(value) << SEQUENCE_GRANULARITY_SHIFT) - 1;
                min_time < i64::from(tip_mtp)
            } else {
                i64::from(coin_height) + i64::from(value) - 1 < i64::from(next_height)
            };
            if !ok {
                return Err(TxRejection::NonBip68Final(index));
            }
        }
    }

    // 6. Scripts, last because they are the expensive part.
    if chain.verify_scripts() {
        let bytes = serialize(tx);
        for (index, prevout) in prevouts.iter().enumerate() {
            prevout
                .script_pubkey
                .verify(index, prevout.value, &bytes)
                .map_err(|e| TxRejection::Script {
                    index,
                    reason: format!("{e:?}"),
                })?;
        }
    }

    Ok(TxRecord {
        tx: tx.clone(),
        prevouts,
        fee: inputs - outputs,
    })
}
