//! The Esplora HTTP API over the in-memory chain (axum).
//!
//! Serves exactly the 13 endpoints ldk-node 0.7.1 calls through esplora-client 0.12.3
//! (`../shared/reference/upstream-apis.md` §2), in the formats that client decodes:
//! text for hashes (no trailing newline), hex for headers and merkle-block proofs, raw bytes for
//! `/tx/{txid}/raw`, Esplora JSON for the rest. "Unknown" or "unconfirmed" is always a 404, never a
//! 500 (esplora-client retries 429/500/503). Malformed path parameters and rejected broadcasts
//! are a 400 with the reason as the body; a duplicate broadcast is a 200.
//!
//! A few extras for people and scripts: `GET /blocks/tip/height`, `GET /tx/{txid}/status`,
//! `GET /tx/{txid}/hex`, `GET /block/{hash}`, `GET /mempool/txids`, and the non-Esplora
//! `POST /mine` and `POST /faucet` (see [`MineRequest`] and [`FaucetRequest`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::consensus::encode::{deserialize, serialize, serialize_hex};
use bitcoin::hashes::sha256;
use bitcoin::hex::DisplayHex;
use bitcoin::{Amount, BlockHash, OutPoint, TxOut, Txid};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::chain::{Chain, TxLocation, TxRecord};
use crate::faucet::{parse_regtest_address, Faucet};
use crate::validate::TxRejection;

/// Confirmed transactions per page of a script-hash history (Esplora's page size).
pub const CHAIN_TXS_PER_PAGE: usize = 25;
/// Mempool transactions listed at most in a script-hash history.
pub const MEMPOOL_TXS_LIMIT: usize = 50;
/// Blocks returned by `GET /blocks`.
pub const BLOCKS_PER_PAGE: u32 = 10;
/// Largest `POST /mine` request.
pub const MAX_MINE_PER_REQUEST: u32 = 10_000;

/// State shared by the HTTP handlers and the [`crate::Testnet`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub chain: Mutex<Chain>,
    pub faucet: Faucet,
    /// Bumped after every mempool or chain change, so that waiters need no polling.
    pub changes: watch::Sender<u64>,
    pub fee_estimates: BTreeMap<u16, f64>,
}

impl Shared {
    pub fn chain(&self) -> MutexGuard<'_, Chain> {
        // A panic while holding the lock cannot leave the chain half-updated in a way that
        // matters for a test chain; keep serving.
        self.chain.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn notify(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// An API error: the status and a plain-text reason.
#[derive(Debug)]
enum ApiError {
    NotFound(&'static str),
    BadRequest(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, what.to_string()).into_response(),
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, why).into_response(),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn parse_txid(s: &str) -> ApiResult<Txid> {
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid txid: {s}")))
}

fn parse_block_hash(s: &str) -> ApiResult<BlockHash> {
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid block hash: {s}")))
}

fn parse_script_hash(s: &str) -> ApiResult<sha256::Hash> {
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid script hash: {s}")))
}

fn parse_u32(s: &str, what: &str) -> ApiResult<u32> {
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid {what}: {s}")))
}

fn text(s: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], s).into_response()
}

/// Builds the router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/fee-estimates", get(fee_estimates))
        .route("/tx", post(broadcast))
        .route("/blocks", get(blocks_tip))
        .route("/blocks/{start}", get(blocks_from))
        .route("/blocks/tip/hash", get(tip_hash))
        .route("/blocks/tip/height", get(tip_height))
        .route("/block-height/{height}", get(block_height))
        .route("/block/{hash}", get(block_info))
        .route("/block/{hash}/header", get(block_header))
        .route("/block/{hash}/status", get(block_status))
        .route("/scripthash/{hash}/txs", get(script_txs))
        .route("/scripthash/{hash}/txs/chain", get(script_txs_chain_first))
        .route(
            "/scripthash/{hash}/txs/chain/{last_seen}",
            get(script_txs_chain),
        )
        .route("/tx/{txid}", get(tx_info))
        .route("/tx/{txid}/status", get(tx_status))
        .route("/tx/{txid}/hex", get(tx_hex))
        .route("/tx/{txid}/raw", get(tx_raw))
        .route("/tx/{txid}/outspend/{vout}", get(outspend))
        .route("/tx/{txid}/merkleblock-proof", get(merkleblock_proof))
        .route("/mempool/txids", get(mempool_txids))
        .route("/mine", post(mine))
        .route("/faucet", post(faucet))
        .route("/faucet/address", get(faucet_address))
        .with_state(shared)
}

// ---------------------------------------------------------------- JSON shapes (Esplora schema)

/// `status` of a transaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxStatusJson {
    /// Whether the transaction is in a block.
    pub confirmed: bool,
    /// Confirming block height.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block_height: Option<u32>,
    /// Confirming block hash.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block_hash: Option<String>,
    /// Confirming block time.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub block_time: Option<u64>,
}

#[derive(Debug, Serialize)]
struct VoutJson {
    value: u64,
    scriptpubkey: String,
}

#[derive(Debug, Serialize)]
struct VinJson {
    txid: String,
    vout: u32,
    prevout: Option<VoutJson>,
    scriptsig: String,
    witness: Vec<String>,
    sequence: u32,
    is_coinbase: bool,
}

#[derive(Debug, Serialize)]
struct TxJson {
    txid: String,
    version: i32,
    locktime: u32,
    vin: Vec<VinJson>,
    vout: Vec<VoutJson>,
    size: usize,
    weight: u64,
    status: TxStatusJson,
    fee: u64,
}

#[derive(Debug, Serialize)]
struct BlockInfoJson {
    id: String,
    height: u32,
    version: i32,
    timestamp: u64,
    tx_count: u64,
    size: usize,
    weight: u64,
    merkle_root: String,
    previousblockhash: Option<String>,
    mediantime: u64,
    nonce: u32,
    bits: u32,
    difficulty: f64,
}

#[derive(Debug, Serialize)]
struct BlockStatusJson {
    in_best_chain: bool,
    height: Option<u32>,
    next_best: Option<String>,
}

#[derive(Debug, Serialize)]
struct OutspendJson {
    spent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    txid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vin: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<TxStatusJson>,
}

fn vout_json(o: &TxOut) -> VoutJson {
    VoutJson {
        value: o.value.to_sat(),
        scriptpubkey: o.script_pubkey.to_hex_string(),
    }
}

fn status_json(chain: &Chain, loc: Option<TxLocation>) -> TxStatusJson {
    match loc.and_then(|l| chain.block_at(l.height)) {
        Some(b) => TxStatusJson {
            confirmed: true,
            block_height: Some(b.height),
            block_hash: Some(b.hash.to_string()),
            block_time: Some(u64::from(b.block.header.time)),
        },
        None => TxStatusJson {
            confirmed: false,
            block_height: None,
            block_hash: None,
            block_time: None,
        },
    }
}

fn tx_json(chain: &Chain, record: &TxRecord, loc: Option<TxLocation>) -> TxJson {
    let tx = &record.tx;
    let coinbase = tx.is_coinbase();
    TxJson {
        txid: tx.compute_txid().to_string(),
        version: tx.version.0,
        locktime: tx.lock_time.to_consensus_u32(),
        vin: tx
            .input
            .iter()
            .enumerate()
            .map(|(i, input)| VinJson {
                txid: input.previous_output.txid.to_string(),
                vout: input.previous_output.vout,
                prevout: if coinbase {
                    None
                } else {
                    record.prevouts.get(i).map(vout_json)
                },
                scriptsig: input.script_sig.to_hex_string(),
                witness: input
                    .witness
                    .iter()
                    .map(|w| w.to_lower_hex_string())
                    .collect(),
                sequence: input.sequence.0,
                is_coinbase: coinbase,
            })
            .collect(),
        vout: tx.output.iter().map(vout_json).collect(),
        size: tx.total_size(),
        weight: tx.weight().to_wu(),
        status: status_json(chain, loc),
        fee: record.fee,
    }
}

fn find_tx(chain: &Chain, txid: &Txid) -> Option<(TxRecord, Option<TxLocation>)> {
    if let Some((r, l)) = chain.confirmed_tx(txid) {
        return Some((r.clone(), Some(l)));
    }
    chain.mempool_tx(txid).map(|r| (r.clone(), None))
}

fn block_info_json(chain: &Chain, height: u32) -> Option<BlockInfoJson> {
    let e = chain.block_at(height)?;
    let h = &e.block.header;
    Some(BlockInfoJson {
        id: e.hash.to_string(),
        height,
        version: h.version.to_consensus(),
        timestamp: u64::from(h.time),
        tx_count: e.block.txdata.len() as u64,
        size: e.block.total_size(),
        weight: e.block.weight().to_wu(),
        merkle_root: h.merkle_root.to_string(),
        previousblockhash: (height > 0).then(|| h.prev_blockhash.to_string()),
        mediantime: u64::from(e.mediantime),
        nonce: h.nonce,
        bits: h.bits.to_consensus(),
        difficulty: h.difficulty_float(),
    })
}

// ---------------------------------------------------------------- handlers

async fn fee_estimates(State(s): State<Arc<Shared>>) -> Json<BTreeMap<String, f64>> {
    Json(
        s.fee_estimates
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    )
}

async fn broadcast(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let result = decode_tx_hex(&body).and_then(|tx| s.chain().accept(tx));
    match result {
        Ok(accepted) => {
            if matches!(accepted, crate::chain::Accepted::New(_)) {
                tracing::debug!(txid = %accepted.txid(), "accepted transaction");
                s.notify();
            }
            text(accepted.txid().to_string())
        }
        Err(reason) => {
            tracing::debug!(%reason, "rejected transaction");
            (StatusCode::BAD_REQUEST, reason.to_string()).into_response()
        }
    }
}

/// Decodes a `POST /tx` body: a hex-encoded consensus transaction, surrounding whitespace allowed.
pub fn decode_tx_hex(body: &[u8]) -> Result<bitcoin::Transaction, TxRejection> {
    let s =
        std::str::from_utf8(body).map_err(|_| TxRejection::Decode("body is not UTF-8".into()))?;
    let bytes =
        hex::decode(s.trim()).map_err(|e| TxRejection::Decode(format!("invalid hex: {e}")))?;
    deserialize(&bytes).map_err(|e| match e {
        bitcoin::consensus::encode::Error::Io(_) => {
            TxRejection::Decode("truncated transaction (unexpected end of data)".into())
        }
        other => TxRejection::Decode(other.to_string()),
    })
}

async fn blocks_tip(State(s): State<Arc<Shared>>) -> Json<Vec<BlockInfoJson>> {
    let chain = s.chain();
    Json(blocks_page(&chain, chain.height()))
}

async fn blocks_from(
    State(s): State<Arc<Shared>>,
    Path(start): Path<String>,
) -> ApiResult<Json<Vec<BlockInfoJson>>> {
    let start = parse_u32(&start, "height")?;
    let chain = s.chain();
    if start > chain.height() {
        return Err(ApiError::NotFound("Block not found"));
    }
    Ok(Json(blocks_page(&chain, start)))
}

fn blocks_page(chain: &Chain, start: u32) -> Vec<BlockInfoJson> {
    (0..BLOCKS_PER_PAGE)
        .filter_map(|i| start.checked_sub(i))
        .filter_map(|h| block_info_json(chain, h))
        .collect()
}

async fn tip_hash(State(s): State<Arc<Shared>>) -> Response {
    text(s.chain().tip().hash.to_string())
}

async fn tip_height(State(s): State<Arc<Shared>>) -> Response {
    text(s.chain().height().to_string())
}

async fn block_height(State(s): State<Arc<Shared>>, Path(h): Path<String>) -> ApiResult<Response> {
    let h = parse_u32(&h, "height")?;
    let chain = s.chain();
    chain
        .block_at(h)
        .map(|b| text(b.hash.to_string()))
        .ok_or(ApiError::NotFound("Block not found"))
}

async fn block_info(
    State(s): State<Arc<Shared>>,
    Path(hash): Path<String>,
) -> ApiResult<Json<BlockInfoJson>> {
    let hash = parse_block_hash(&hash)?;
    let chain = s.chain();
    let height = chain
        .block_by_hash(&hash)
        .map(|b| b.height)
        .ok_or(ApiError::NotFound("Block not found"))?;
    block_info_json(&chain, height)
        .map(Json)
        .ok_or(ApiError::NotFound("Block not found"))
}

async fn block_header(
    State(s): State<Arc<Shared>>,
    Path(hash): Path<String>,
) -> ApiResult<Response> {
    let hash = parse_block_hash(&hash)?;
    let chain = s.chain();
    let b = chain
        .block_by_hash(&hash)
        .ok_or(ApiError::NotFound("Block not found"))?;
    Ok(text(serialize_hex(&b.block.header)))
}

async fn block_status(
    State(s): State<Arc<Shared>>,
    Path(hash): Path<String>,
) -> ApiResult<Json<BlockStatusJson>> {
    let hash = parse_block_hash(&hash)?;
    let chain = s.chain();
    let b = chain
        .block_by_hash(&hash)
        .ok_or(ApiError::NotFound("Block not found"))?;
    Ok(Json(BlockStatusJson {
        in_best_chain: true,
        height: Some(b.height),
        next_best: chain.block_at(b.height + 1).map(|n| n.hash.to_string()),
    }))
}

async fn script_txs(
    State(s): State<Arc<Shared>>,
    Path(hash): Path<String>,
) -> ApiResult<Json<Vec<TxJson>>> {
    let sh = parse_script_hash(&hash)?;
    let chain = s.chain();
    let (mempool, confirmed) = chain.script_history(&sh);
    let txids = mempool
        .into_iter()
        .take(MEMPOOL_TXS_LIMIT)
        .chain(confirmed.into_iter().take(CHAIN_TXS_PER_PAGE));
    Ok(Json(
        txids
            .filter_map(|t| find_tx(&chain, &t).map(|(r, l)| tx_json(&chain, &r, l)))
            .collect(),
    ))
}

async fn script_txs_chain_first(
    State(s): State<Arc<Shared>>,
    Path(hash): Path<String>,
) -> ApiResult<Json<Vec<TxJson>>> {
    chain_page(&s, &hash, None)
}

async fn script_txs_chain(
    State(s): State<Arc<Shared>>,
    Path((hash, last_seen)): Path<(String, String)>,
) -> ApiResult<Json<Vec<TxJson>>> {
    let last_seen = parse_txid(&last_seen)?;
    chain_page(&s, &hash, Some(last_seen))
}

fn chain_page(s: &Shared, hash: &str, last_seen: Option<Txid>) -> ApiResult<Json<Vec<TxJson>>> {
    let sh = parse_script_hash(hash)?;
    let chain = s.chain();
    let (_, confirmed) = chain.script_history(&sh);
    // Confirmed history after `last_seen`; a `last_seen` that is not a confirmed tx of this
    // script (e.g. a mempool tx ending the first page) restarts at the newest confirmed one.
    let start = last_seen
        .and_then(|l| confirmed.iter().position(|t| *t == l).map(|p| p + 1))
        .unwrap_or(0);
    Ok(Json(
        confirmed
            .iter()
            .skip(start)
            .take(CHAIN_TXS_PER_PAGE)
            .filter_map(|t| find_tx(&chain, t).map(|(r, l)| tx_json(&chain, &r, l)))
            .collect(),
    ))
}

async fn tx_info(
    State(s): State<Arc<Shared>>,
    Path(txid): Path<String>,
) -> ApiResult<Json<TxJson>> {
    let txid = parse_txid(&txid)?;
    let chain = s.chain();
    let (r, l) = find_tx(&chain, &txid).ok_or(ApiError::NotFound("Transaction not found"))?;
    Ok(Json(tx_json(&chain, &r, l)))
}

async fn tx_status(
    State(s): State<Arc<Shared>>,
    Path(txid): Path<String>,
) -> ApiResult<Json<TxStatusJson>> {
    let txid = parse_txid(&txid)?;
    let chain = s.chain();
    let (_, l) = find_tx(&chain, &txid).ok_or(ApiError::NotFound("Transaction not found"))?;
    Ok(Json(status_json(&chain, l)))
}

async fn tx_hex(State(s): State<Arc<Shared>>, Path(txid): Path<String>) -> ApiResult<Response> {
    let txid = parse_txid(&txid)?;
    let chain = s.chain();
    let (r, _) = find_tx(&chain, &txid).ok_or(ApiError::NotFound("Transaction not found"))?;
    Ok(text(serialize_hex(&r.tx)))
}

async fn tx_raw(State(s): State<Arc<Shared>>, Path(txid): Path<String>) -> ApiResult<Response> {
    let txid = parse_txid(&txid)?;
    let chain = s.chain();
    let (r, _) = find_tx(&chain, &txid).ok_or(ApiError::NotFound("Transaction not found"))?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        serialize(&r.tx),
    )
        .into_response())
}

async fn outspend(
    State(s): State<Arc<Shared>>,
    Path((txid, vout)): Path<(String, String)>,
) -> ApiResult<Json<OutspendJson>> {
    let txid = parse_txid(&txid)?;
    let vout = parse_u32(&vout, "output index")?;
    let chain = s.chain();
    let op = OutPoint { txid, vout };
    if !chain.output_exists(&op) {
        return Err(ApiError::NotFound("Output not found"));
    }
    Ok(Json(match chain.spender(&op) {
        None => OutspendJson {
            spent: false,
            txid: None,
            vin: None,
            status: None,
        },
        Some((spend, _)) => {
            let loc = chain.confirmed_tx(&spend.txid).map(|(_, l)| l);
            OutspendJson {
                spent: true,
                txid: Some(spend.txid.to_string()),
                vin: Some(spend.vin),
                status: Some(status_json(&chain, loc)),
            }
        }
    }))
}

async fn merkleblock_proof(
    State(s): State<Arc<Shared>>,
    Path(txid): Path<String>,
) -> ApiResult<Response> {
    let txid = parse_txid(&txid)?;
    let chain = s.chain();
    let mb = chain
        .merkle_block(&txid)
        .ok_or(ApiError::NotFound("Transaction not found or not confirmed"))?;
    Ok(text(serialize_hex(&mb)))
}

async fn mempool_txids(State(s): State<Arc<Shared>>) -> Json<Vec<String>> {
    Json(
        s.chain()
            .mempool_txids()
            .iter()
            .map(|t| t.to_string())
            .collect(),
    )
}

/// Body of `POST /mine`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MineRequest {
    /// How many blocks to mine.
    pub blocks: u32,
    /// Where the coinbases go; the faucet if absent.
    #[serde(default)]
    pub address: Option<String>,
}

/// Body of `POST /faucet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaucetRequest {
    /// A regtest address.
    pub address: String,
    /// Amount in satoshis.
    pub amount_sat: u64,
    /// Mine one block after paying, so that the payment is confirmed.
    #[serde(default)]
    pub confirm: bool,
}

async fn mine(
    State(s): State<Arc<Shared>>,
    Json(req): Json<MineRequest>,
) -> ApiResult<Json<Vec<String>>> {
    if req.blocks > MAX_MINE_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_MINE_PER_REQUEST} blocks per request"
        )));
    }
    let script = match &req.address {
        Some(a) => parse_regtest_address(a)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?
            .script_pubkey(),
        None => s.faucet.script_pubkey(),
    };
    let hashes = s.chain().mine_many(req.blocks, &script);
    s.notify();
    Ok(Json(hashes.iter().map(|h| h.to_string()).collect()))
}

async fn faucet(
    State(s): State<Arc<Shared>>,
    Json(req): Json<FaucetRequest>,
) -> ApiResult<Response> {
    let address =
        parse_regtest_address(&req.address).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let txid = {
        let mut chain = s.chain();
        let tx = s
            .faucet
            .pay(
                &mut chain,
                address.script_pubkey(),
                Amount::from_sat(req.amount_sat),
            )
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if req.confirm {
            chain.mine(&s.faucet.script_pubkey());
        }
        tx.compute_txid()
    };
    s.notify();
    Ok(text(txid.to_string()))
}

async fn faucet_address(State(s): State<Arc<Shared>>) -> Response {
    text(s.faucet.address().to_string())
}
