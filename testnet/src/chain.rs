//! The regtest chain: blocks, UTXO set, mempool and the indices the Esplora API needs.
//!
//! Everything here is synchronous and in memory; [`crate::Testnet`] wraps a [`Chain`] in a mutex
//! and serves it over HTTP. The chain starts at the real regtest genesis block
//! (`bitcoin::constants::genesis_block(Network::Regtest)`) because ldk-node seeds LDK and BDK with
//! it, and every mined block is a real regtest block: coinbase first (BIP34 height plus an
//! extranonce, BIP141 witness commitment), correct merkle root, regtest proof of work and a
//! wall-clock timestamp of `max(now, MTP + 1)`.
//!
//! There are no reorgs: the chain only grows, and only when asked to mine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{
    absolute, transaction, Amount, Block, BlockHash, CompactTarget, MerkleBlock, Network, OutPoint,
    ScriptBuf, Sequence, Target, Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness,
};

use crate::validate::{self, TxRejection};

/// Regtest `nSubsidyHalvingInterval` (Bitcoin Core `chainparams.cpp`).
pub const REGTEST_HALVING_INTERVAL: u32 = 150;
/// Blocks a coinbase output must wait before it can be spent (`COINBASE_MATURITY`).
pub const COINBASE_MATURITY: u32 = 100;
/// Regtest proof-of-work limit in compact form; every regtest block uses it.
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// Maximum block weight (BIP141).
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
/// Number of blocks in the median-time-past window (BIP113).
const MTP_WINDOW: usize = 11;
/// BIP141 witness commitment header bytes.
const WITNESS_COMMITMENT_HEADER: [u8; 4] = [0xaa, 0x21, 0xa9, 0xed];

/// A confirmed or unconfirmed output together with what the validator needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// The output itself.
    pub output: TxOut,
    /// Height of the block that confirmed it, `None` while in the mempool.
    pub height: Option<u32>,
    /// Whether it was created by a coinbase transaction.
    pub is_coinbase: bool,
}

/// A transaction as stored: the transaction plus the outputs it spends (for fees and the
/// `vin[].prevout` field of the Esplora JSON).
#[derive(Debug, Clone)]
pub struct TxRecord {
    /// The transaction.
    pub tx: Transaction,
    /// The outputs spent by each input, in input order; empty for a coinbase.
    pub prevouts: Vec<TxOut>,
    /// Fee in satoshis (zero for a coinbase).
    pub fee: u64,
}

/// Where a confirmed transaction sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Height of the confirming block.
    pub height: u32,
    /// Position of the transaction inside the block (coinbase = 0).
    pub pos: usize,
}

/// Who spends an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    /// The spending transaction.
    pub txid: Txid,
    /// The input index inside the spending transaction.
    pub vin: u32,
}

/// A block with cached metadata.
#[derive(Debug, Clone)]
pub struct BlockEntry {
    /// The block.
    pub block: Block,
    /// Its hash.
    pub hash: BlockHash,
    /// Its height.
    pub height: u32,
    /// Median time past of the chain ending at this block (BIP113).
    pub mediantime: u32,
}

/// Result of submitting a transaction that passed (or was already known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Newly added to the mempool.
    New(Txid),
    /// Already in the mempool or the chain; nothing changed.
    AlreadyKnown(Txid),
}

impl Accepted {
    /// The transaction id in either case.
    pub fn txid(&self) -> Txid {
        match self {
            Accepted::New(t) | Accepted::AlreadyKnown(t) => *t,
        }
    }
}

#[derive(Debug, Clone)]
struct MempoolEntry {
    record: TxRecord,
    /// Insertion order: parents always precede children.
    seq: u64,
}

/// The in-memory regtest chain.
#[derive(Debug)]
pub struct Chain {
    blocks: Vec<BlockEntry>,
    by_hash: HashMap<BlockHash, u32>,
    confirmed: HashMap<Txid, (TxRecord, TxLocation)>,
    utxos: HashMap<OutPoint, Coin>,
    spent_by: HashMap<OutPoint, Spend>,
    /// Confirmed transactions touching each script hash, in chain order.
    script_txs: HashMap<sha256::Hash, Vec<Txid>>,
    mempool: BTreeMap<Txid, MempoolEntry>,
    mempool_spends: HashMap<OutPoint, Spend>,
    next_seq: u64,
    extranonce: u64,
    verify_scripts: bool,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// A chain holding only the regtest genesis block, with script verification on.
    pub fn new() -> Self {
        let genesis = bitcoin::constants::genesis_block(Network::Regtest);
        let mut chain = Chain {
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            confirmed: HashMap::new(),
            utxos: HashMap::new(),
            spent_by: HashMap::new(),
            script_txs: HashMap::new(),
            mempool: BTreeMap::new(),
            mempool_spends: HashMap::new(),
            next_seq: 0,
            extranonce: 0,
            verify_scripts: true,
        };
        chain.connect(genesis, Vec::new());
        chain
    }

    /// Turns script verification (libbitcoinconsensus) on or off. It is on by default.
    pub fn set_verify_scripts(&mut self, on: bool) {
        self.verify_scripts = on;
    }

    /// Whether scripts are verified on acceptance.
    pub fn verify_scripts(&self) -> bool {
        self.verify_scripts
    }

    /// Height of the tip.
    pub fn height(&self) -> u32 {
        (self.blocks.len() - 1) as u32
    }

    /// The tip block.
    pub fn tip(&self) -> &BlockEntry {
        self.blocks.last().expect("the chain always holds genesis")
    }

    /// The block at `height`, if any.
    pub fn block_at(&self, height: u32) -> Option<&BlockEntry> {
        self.blocks.get(height as usize)
    }

    /// The block with `hash`, if it is in the (only, best) chain.
    pub fn block_by_hash(&self, hash: &BlockHash) -> Option<&BlockEntry> {
        self.by_hash.get(hash).and_then(|h| self.block_at(*h))
    }

    /// Median time past of the tip (BIP113).
    pub fn tip_mediantime(&self) -> u32 {
        self.tip().mediantime
    }

    /// Median time past of the chain ending at `height`.
    pub fn mediantime_at(&self, height: u32) -> u32 {
        self.block_at(height).map(|b| b.mediantime).unwrap_or(0)
    }

    fn compute_mediantime(&self, extra: Option<u32>) -> u32 {
        let mut times: Vec<u32> = self
            .blocks
            .iter()
            .rev()
            .take(if extra.is_some() {
                MTP_WINDOW - 1
            } else {
                MTP_WINDOW
            })
            .map(|b| b.block.header.time)
            .collect();
        if let Some(t) = extra {
            times.push(t);
        }
        times.sort_unstable();
        times[times.len() / 2]
    }

    /// A confirmed transaction and its location.
    pub fn confirmed_tx(&self, txid: &Txid) -> Option<(&TxRecord, TxLocation)> {
        self.confirmed.get(txid).map(|(r, l)| (r, *l))
    }

    /// A mempool transaction.
    pub fn mempool_tx(&self, txid: &Txid) -> Option<&TxRecord> {
        self.mempool.get(txid).map(|e| &e.record)
    }

    /// Transaction ids in the mempool, in acceptance order.
    pub fn mempool_txids(&self) -> Vec<Txid> {
        let mut v: Vec<_> = self
            .mempool
            .values()
            .map(|e| (e.seq, e.record.tx.compute_txid()))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, t)| t).collect()
    }

    /// Number of transactions waiting in the mempool.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// Whether `txid` is known (mempool or chain).
    pub fn knows_tx(&self, txid: &Txid) -> bool {
        self.mempool.contains_key(txid) || self.confirmed.contains_key(txid)
    }

    /// Who spends `outpoint`, and whether that spend is confirmed (`Some(height)`).
    pub fn spender(&self, outpoint: &OutPoint) -> Option<(Spend, Option<u32>)> {
        if let Some(s) = self.spent_by.get(outpoint) {
            let h = self.confirmed.get(&s.txid).map(|(_, l)| l.height);
            return Some((*s, h));
        }
        self.mempool_spends.get(outpoint).map(|s| (*s, None))
    }

    /// Whether the output exists at all (confirmed or in the mempool), spent or not.
    pub fn output_exists(&self, outpoint: &OutPoint) -> bool {
        let check = |tx: &Transaction| (outpoint.vout as usize) < tx.output.len();
        self.confirmed
            .get(&outpoint.txid)
            .map(|(r, _)| check(&r.tx))
            .unwrap_or(false)
            || self
                .mempool
                .get(&outpoint.txid)
                .map(|e| check(&e.record.tx))
                .unwrap_or(false)
    }

    /// An unspent coin usable by a new mempool transaction: confirmed and unspent, or created
    /// by a mempool transaction; in both cases not already spent by another mempool
    /// transaction. Returns the conflicting spend if there is one.
    pub(crate) fn lookup_coin(&self, outpoint: &OutPoint) -> CoinLookup {
        if let Some(s) = self.mempool_spends.get(outpoint) {
            return CoinLookup::SpentInMempool(*s);
        }
        if let Some(c) = self.utxos.get(outpoint) {
            return CoinLookup::Found(c.clone());
        }
        if let Some(e) = self.mempool.get(&outpoint.txid) {
            if let Some(out) = e.record.tx.output.get(outpoint.vout as usize) {
                return CoinLookup::Found(Coin {
                    output: out.clone(),
                    height: None,
                    is_coinbase: false,
                });
            }
        }
        if let Some(s) = self.spent_by.get(outpoint) {
            return CoinLookup::SpentInChain(*s);
        }
        CoinLookup::Missing
    }

    /// Unspent outputs paying `script`, confirmed or in the mempool, not spent by the mempool.
    pub fn unspent_for_script(&self, script: &ScriptBuf) -> Vec<(OutPoint, Coin)> {
        let sh = sha256::Hash::hash(script.as_bytes());
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let confirmed = self.script_txs.get(&sh).into_iter().flatten();
        let mempool = self.mempool_txids();
        for txid in confirmed.chain(mempool.iter()) {
            if !seen.insert(*txid) {
                continue;
            }
            let tx = match self.confirmed.get(txid) {
                Some((r, _)) => &r.tx,
                None => match self.mempool.get(txid) {
                    Some(e) => &e.record.tx,
                    None => continue,
                },
            };
            for (vout, o) in tx.output.iter().enumerate() {
                if &o.script_pubkey != script {
                    continue;
                }
                let op = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
                if let CoinLookup::Found(c) = self.lookup_coin(&op) {
                    out.push((op, c));
                }
            }
        }
        out
    }

    /// All transactions touching `script_hash` (as output or spent prevout): mempool ones
    /// (newest first) and confirmed ones (newest first).
    pub fn script_history(&self, script_hash: &sha256::Hash) -> (Vec<Txid>, Vec<Txid>) {
        let mut mempool: Vec<(u64, Txid)> = self
            .mempool
            .iter()
            .filter(|(_, e)| touches(&e.record, script_hash))
            .map(|(t, e)| (e.seq, *t))
            .collect();
        mempool.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        let confirmed: Vec<Txid> = self
            .script_txs
            .get(script_hash)
            .map(|v| v.iter().rev().copied().collect())
            .unwrap_or_default();
        (mempool.into_iter().map(|(_, t)| t).collect(), confirmed)
    }

    /// A merkle-block proof for a confirmed transaction.
    pub fn merkle_block(&self, txid: &Txid) -> Option<MerkleBlock> {
        let (_, loc) = self.confirmed.get(txid)?;
        let entry = self.block_at(loc.height)?;
        Some(MerkleBlock::from_block_with_predicate(&entry.block, |t| {
            t == txid
        }))
    }

    /// Validates `tx` against the UTXO set and mempool and adds it to the mempool.
    ///
    /// A transaction that is already known is answered with [`Accepted::AlreadyKnown`], so that
    /// rebroadcasts (LDK rebroadcasts funding transactions several times) are harmless.
    pub fn accept(&mut self, tx: Transaction) -> Result<Accepted, TxRejection> {
        let txid = tx.compute_txid();
        if self.knows_tx(&txid) {
            return Ok(Accepted::AlreadyKnown(txid));
        }
        let record = validate::check_transaction(self, &tx)?;
        for (vin, input) in tx.input.iter().enumerate() {
            self.mempool_spends.insert(
                input.previous_output,
                Spend {
                    txid,
                    vin: vin as u32,
                },
            );
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.mempool.insert(txid, MempoolEntry { record, seq });
        Ok(Accepted::New(txid))
    }

    /// Mines one block paying the subsidy plus fees to `coinbase_script`, including the mempool
    /// (in acceptance order, up to the block weight limit). Returns the new block's hash.
    pub fn mine(&mut self, coinbase_script: &ScriptBuf) -> BlockHash {
        let height = self.height() + 1;
        // Select mempool transactions in acceptance order; a child is skipped if its parent was.
        let mut entries: Vec<(u64, Txid)> = self.mempool.iter().map(|(t, e)| (e.seq, *t)).collect();
        entries.sort_unstable();
        let mut weight: u64 = 4_000; // header, coinbase and varints, generously
        let mut skipped: HashSet<Txid> = HashSet::new();
        let mut selected: Vec<TxRecord> = Vec::new();
        let mut fees = 0u64;
        for (_, txid) in entries {
            let Some(entry) = self.mempool.get(&txid) else {
                continue;
            };
            let tx = &entry.record.tx;
            let w = tx.weight().to_wu();
            let depends_on_skipped = tx
                .input
                .iter()
                .any(|i| skipped.contains(&i.previous_output.txid));
            if depends_on_skipped || weight + w > MAX_BLOCK_WEIGHT {
                skipped.insert(txid);
                continue;
            }
            weight += w;
            fees += entry.record.fee;
            selected.push(entry.record.clone());
        }

        let subsidy = block_subsidy(height);
        self.extranonce += 1;
        let script_sig = Builder::new()
            .push_int(i64::from(height))
            .push_slice(self.extranonce.to_le_bytes())
            .into_script();
        let coinbase = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                // BIP141 witness reserved value.
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value: subsidy + Amount::from_sat(fees),
                script_pubkey: coinbase_script.clone(),
            }],
        };
        let mut txdata = Vec::with_capacity(selected.len() + 1);
        txdata.push(coinbase);
        txdata.extend(selected.iter().map(|r| r.tx.clone()));

        let prev = self.tip();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0) as u32;
        let time = now.max(prev.mediantime + 1);
        let mut block = Block {
            header: Header {
                version: BlockVersion::from_consensus(0x2000_0000),
                prev_blockhash: prev.hash,
                merkle_root: TxMerkleNode::all_zeros(),
                time,
                bits: CompactTarget::from_consensus(REGTEST_BITS),
                nonce: 0,
            },
            txdata,
        };
        // Witness commitment (BIP141): the coinbase's own wtxid counts as zero, so the commitment
        // output can be added after computing the witness root.
        let witness_root = block.witness_root().expect("block has a coinbase");
        let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
        let mut data = WITNESS_COMMITMENT_HEADER.to_vec();
        data.extend_from_slice(commitment.as_byte_array());
        let push = PushBytesBuf::try_from(data).expect("36 bytes fit a push");
        block.txdata[0].output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::new_op_return(push),
        });
        block.header.merkle_root = block.compute_merkle_root().expect("non-empty");
        // Regtest proof of work: about two tries. Nobody checks it, but it is free to do right.
        let target = Target::from_compact(block.header.bits);
        while block.header.validate_pow(target).is_err() {
            block.header.nonce = block.header.nonce.wrapping_add(1);
        }
        let mut prevouts = Vec::with_capacity(block.txdata.len());
        prevouts.push(Vec::new());
        prevouts.extend(selected.into_iter().map(|r| r.prevouts));
        self.connect(block, prevouts)
    }

    /// Mines `n` blocks to `coinbase_script`.
    pub fn mine_many(&mut self, n: u32, coinbase_script: &ScriptBuf) -> Vec<BlockHash> {
        (0..n).map(|_| self.mine(coinbase_script)).collect()
    }

    /// Appends a block whose transactions were validated (or the genesis block).
    fn connect(&mut self, block: Block, mut prevouts: Vec<Vec<TxOut>>) -> BlockHash {
        let height = self.blocks.len() as u32;
        let hash = block.block_hash();
        prevouts.resize(block.txdata.len(), Vec::new());
        for (pos, (tx, prevouts)) in block.txdata.iter().zip(prevouts).enumerate() {
            let txid = tx.compute_txid();
            let is_coinbase = tx.is_coinbase();
            if !is_coinbase {
                for (vin, input) in tx.input.iter().enumerate() {
                    self.utxos.remove(&input.previous_output);
                    self.mempool_spends.remove(&input.previous_output);
                    self.spent_by.insert(
                        input.previous_output,
                        Spend {
                            txid,
                            vin: vin as u32,
                        },
                    );
                }
            }
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                self.utxos.insert(
                    OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    Coin {
                        output: out.clone(),
                        height: Some(height),
                        is_coinbase,
                    },
                );
            }
            let in_value: u64 = prevouts.iter().map(|o| o.value.to_sat()).sum();
            let out_value: u64 = tx.output.iter().map(|o| o.value.to_sat()).sum();
            let fee = if is_coinbase {
                0
            } else {
                in_value.saturating_sub(out_value)
            };
            let record = TxRecord {
                tx: tx.clone(),
                prevouts,
                fee,
            };
            let mut hashes: Vec<sha256::Hash> = script_hashes(&record);
            hashes.sort_unstable();
            hashes.dedup();
            for sh in hashes {
                self.script_txs.entry(sh).or_default().push(txid);
            }
            self.mempool.remove(&txid);
            self.confirmed
                .insert(txid, (record, TxLocation { height, pos }));
        }
        let mediantime = if self.blocks.is_empty() {
            block.header.time
        } else {
            self.compute_mediantime(Some(block.header.time))
        };
        self.by_hash.insert(hash, height);
        self.blocks.push(BlockEntry {
            block,
            hash,
            height,
            mediantime,
        });
        hash
    }
}

/// Result of looking up an input for a new mempool transaction.
#[derive(Debug, Clone)]
pub(crate) enum CoinLookup {
    Found(Coin),
    SpentInMempool(Spend),
    SpentInChain(Spend),
    Missing,
}

/// Block subsidy at `height` on regtest (halving every 150 blocks).
pub fn block_subsidy(height: u32) -> Amount {
    let halvings = height / REGTEST_HALVING_INTERVAL;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat((50 * 100_000_000u64) >> halvings)
}

fn script_hashes(record: &TxRecord) -> Vec<sha256::Hash> {
    record
        .tx
        .output
        .iter()
        .map(|o| &o.script_pubkey)
        .chain(record.prevouts.iter().map(|o| &o.script_pubkey))
        .map(|s| sha256::Hash::hash(s.as_bytes()))
        .collect()
}

fn touches(record: &TxRecord, script_hash: &sha256::Hash) -> bool {
    script_hashes(record).iter().any(|h| h == script_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_real_regtest_genesis() {
        let chain = Chain::new();
        assert_eq!(chain.height(), 0);
        assert_eq!(
            chain.tip().hash.to_string(),
            "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
        );
    }

    #[test]
    fn mined_blocks_link_and_commit() {
        let mut chain = Chain::new();
        let spk = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros());
        let hashes = chain.mine_many(20, &spk);
        assert_eq!(chain.height(), 20);
        let b20 = &chain.block_at(20).expect("20").block;
        assert_eq!(b20.bip34_block_height().expect("bip34"), 20);
        for (i, h) in hashes.iter().enumerate() {
            let b = &chain.block_at(i as u32 + 1).expect("block").block;
            assert_eq!(&b.block_hash(), h);
            assert_eq!(
                b.header.prev_blockhash,
                chain.block_at(i as u32).expect("prev").hash
            );
            assert!(b.check_merkle_root());
            assert!(b.check_witness_commitment());
            // BIP34 exactly as Core writes it (`CScript() << nHeight`: OP_N for 1..=16).
            let height_push = Builder::new().push_int(i as i64 + 1).into_script();
            assert!(b.txdata[0].input[0]
                .script_sig
                .as_bytes()
                .starts_with(height_push.as_bytes()));
            assert!(b.header.time > chain.mediantime_at(i as u32));
        }
    }

    #[test]
    fn two_coinbases_to_the_same_script_differ() {
        let mut chain = Chain::new();
        let spk = ScriptBuf::new_p2wsh(&bitcoin::WScriptHash::all_zeros());
        chain.mine_many(2, &spk);
        let a = chain.block_at(1).expect("1").block.txdata[0].compute_txid();
        let b = chain.block_at(2).expect("2").block.txdata[0].compute_txid();
        assert_ne!(a, b);
    }

    #[test]
    fn subsidy_halves_every_150_blocks() {
        assert_eq!(block_subsidy(1), Amount::from_btc(50.0).expect("amount"));
        assert_eq!(block_subsidy(150), Amount::from_btc(25.0).expect("amount"));
        assert_eq!(block_subsidy(150 * 64), Amount::ZERO);
    }
}
