//! The node's HTTP gateway (axum):
//!
//! - `GET /` — status page (HTML): machines, escrows, hold invoices, channels;
//! - `GET /status` — the same as JSON (what `l402-node status` and the demo read);
//! - `GET /reward-schedule` — public: the run's tranches, price, n and k;
//! - `GET /l402/submit-token?run=…&pubkey=…` — L402: `402 Payment Required` with
//!   `WWW-Authenticate: L402 macaroon="…", invoice="…"` (a one-use submission token bound to
//!   `pubkey`, the run and the round's submit deadline);
//! - `GET /checkpoint/{hash}` — L402-gated: a checkpoint blob this node holds. Without a
//!   credential (or with an expired one) `402` and a fresh challenge; with an invalid one
//!   (forged, wrong preimage, another service) `401`; accepts `L402`/`LSAT` with the
//!   `<macaroon>:<preimage>`, `token="…"` and `macaroon="…", preimage="…"` forms, as aperture and
//!   lnget do;
//! - `POST /admin/start`, `POST /admin/channel`, `GET /admin/address`, `POST /admin/sync`,
//!   `POST /admin/pay` — operator calls, answered only to loopback clients.
//!
//! Spec: specs/L2T-08-l402.md

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use l402_protocol::l402;
use nostr_sdk::prelude::PublicKey;
use serde::Deserialize;
use serde_json::{json, Value};

use super::board::esc;
use super::Node;
use crate::lightning::PeerAddr;
use crate::runtime::roles::offer_token;

/// Serve the gateway on the configured address until `stop` fires.
pub async fn serve(node: Node, mut stop: tokio::sync::watch::Receiver<bool>) -> anyhow::Result<()> {
    let addr = node.config.gateway_listen;
    let app = router(node);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(gateway = %listener.local_addr()?, "HTTP gateway listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.changed().await;
    })
    .await?;
    Ok(())
}

/// The gateway's routes.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/reward-schedule", get(reward_schedule))
        .route("/l402/submit-token", get(submit_token))
        .route("/checkpoint/{hash}", get(checkpoint))
        .route("/bounties", get(bounties_page))
        .route("/bounties.json", get(bounties_json))
        .route("/admin/bounty/post", post(super::bounty::admin_post))
        .route("/admin/bounty/submit", post(super::bounty::admin_submit))
        .route("/admin/pay", post(admin_pay))
        .route("/admin/start", post(admin_start))
        .route("/admin/channel", post(admin_channel))
        .route("/admin/address", get(admin_address))
        .route("/admin/sync", post(admin_sync))
        .with_state(node)
}

pub(super) fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// The node's status as JSON.
pub fn status_json(node: &Node) -> Value {
    let ln = &node.components.lightning;
    let b = ln.balances();
    let channels: Vec<Value> = ln
        .channels()
        .iter()
        .map(|c| {
            json!({
                "counterparty": c.counterparty.to_string(),
                "capacity_sat": c.capacity_sat,
                "outbound_msat": c.outbound_msat,
                "inbound_msat": c.inbound_msat,
                "ready": c.is_ready,
                "usable": c.is_usable,
            })
        })
        .collect();
    let holds: Vec<Value> = ln
        .holds()
        .iter()
        .map(|h| {
            json!({
                "payment_hash": h.payment_hash.to_hex(),
                "amount_msat": h.amount_msat,
                "state": format!("{:?}", h.state),
                "terminal": h.state.is_terminal(),
                "claimed": matches!(h.state, l402_protocol::hold::HoldState::Claimed { .. }),
                "bolt11": ln.bolt11(&h.payment_hash),
            })
        })
        .collect();
    let payments: Vec<Value> = ln
        .payments()
        .iter()
        .map(|p| {
            json!({
                "payment_hash": p.payment_hash.to_hex(),
                "direction": if p.outbound { "sent" } else { "received" },
                "status": p.status,
                "amount_msat": p.amount_msat,
                "fee_paid_msat": p.fee_paid_msat,
                "updated_at": p.updated_at,
                "bolt11": p.bolt11,
            })
        })
        .collect();
    json!({
        "nostr": node.keys.public_key().to_hex(),
        "lightning": {
            "node_id": ln.node_id().to_string(),
            "listen": node.config.lightning_listen.to_string(),
            "height": ln.height(),
        },
        "balances": {
            "onchain_total_sat": b.onchain_total_sat,
            "onchain_spendable_sat": b.onchain_spendable_sat,
            "lightning_sat": b.lightning_sat,
        },
        "channels": channels,
        "holds": holds,
        "payments": payments,
        "timeline": node.components.timeline.snapshot(),
        "roles": {
            "coordinator": node.config.roles.coordinator.is_some(),
            "peer": node.config.roles.peer.as_ref().map(|p| p.behaviour.clone()),
            "validator": node.config.roles.validator.is_some(),
            "validator_behaviour": node.config.roles.validator.as_ref().and_then(|v| v.behaviour.clone()),
            "dealer_faults": node.config.roles.coordinator.as_ref().map(|c| c.dealer_faults.iter().map(ToString::to_string).collect::<Vec<_>>()),
        },
        "machines": *node.status.borrow(),
        "blob_fetches": node.components.blobs.fetch_stats(),
        "checkpoint_checks": *node.checks.lock().unwrap_or_else(|p| p.into_inner()),
        "run": node.coordinator.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|v| json!({
            "run": v.run.as_str(),
            "current_round": v.open.as_ref().map(|o| o.round),
            "history": v.history,
        })),
    })
}

async fn status(State(node): State<Node>) -> Json<Value> {
    Json(status_json(&node))
}

async fn page(State(node): State<Node>) -> Html<String> {
    let st = status_json(&node);
    let mut rows = String::new();
    for m in node.status.borrow().iter() {
        let tranches: Vec<String> = m
            .tranches
            .iter()
            .map(|t| format!("{} sat {}", t.amount_msat / 1000, t.state))
            .collect();
        let evals: Vec<String> = m
            .evaluations
            .iter()
            .map(|e| {
                format!(
                    "{}…: {} {}",
                    &e.submission[..e.submission.len().min(8)],
                    e.score.map(|s| s.to_string()).unwrap_or_default(),
                    e.verdict.as_deref().unwrap_or(e.state)
                )
            })
            .collect();
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.machine),
            esc(m.submission.as_deref().unwrap_or("")),
            esc(&evals.join("; ")),
            esc(m.checkpoint.as_deref().unwrap_or("")),
            m.merged.map(|n| n.to_string()).unwrap_or_default(),
            esc(&tranches.join(", "))
        ));
    }
    let mut payments = String::new();
    for p in st["payments"].as_array().into_iter().flatten() {
        payments.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(p["direction"].as_str().unwrap_or("")),
            esc(p["payment_hash"].as_str().unwrap_or("")),
            p["amount_msat"].as_u64().unwrap_or(0) / 1000,
            esc(p["status"].as_str().unwrap_or(""))
        ));
    }
    let mut holds = String::new();
    for h in st["holds"].as_array().into_iter().flatten() {
        holds.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(h["payment_hash"].as_str().unwrap_or("")),
            h["amount_msat"].as_u64().unwrap_or(0) / 1000,
            esc(h["state"].as_str().unwrap_or(""))
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>l402 node</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style></head><body>\
         <h1>l402 node <code>{}</code></h1>\
         <p>Lightning {} · on-chain {} sat · channels {} sat</p>\
         <h2>Rounds</h2><table><tr><th>machine</th><th>submission</th><th>scores (millionths) and verdicts</th><th>checkpoint</th><th>merged</th><th>escrow</th></tr>{rows}</table>\
         <h2>Hold invoices</h2><table><tr><th>payment hash</th><th>sat</th><th>state</th></tr>{holds}</table>\
         <h2>Payments</h2><table><tr><th>direction</th><th>payment hash</th><th>sat</th><th>status</th></tr>{payments}</table>\
         </body></html>",
        esc(st["nostr"].as_str().unwrap_or("")),
        esc(st["lightning"]["node_id"].as_str().unwrap_or("")),
        st["balances"]["onchain_total_sat"],
        st["balances"]["lightning_sat"],
    ))
}

/// The board: this node's bounties (kept by its sponsor role), the bounties the directory lists
/// from other sponsors, and this node's exploit log.
fn board(node: &Node) -> super::board::Board {
    let mut b = node.board.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let me = node.keys.public_key();
    b.listed = node
        .components
        .discovery
        .directory()
        .bounties(nostr_sdk::prelude::Timestamp::now())
        .filter(|l| l.verified.author() != me)
        .map(|l| {
            let v = l.verified.value();
            (
                v.bounty_id.to_string(),
                v.title.clone(),
                v.pool_msat / 1000,
                v.deadline,
                v.gateway.clone(),
            )
        })
        .collect();
    b.exploits = node
        .components
        .bounty
        .exploits
        .entries()
        .unwrap_or_default();
    b
}

async fn bounties_page(State(node): State<Node>) -> Html<String> {
    Html(super::board::html(
        &board(&node),
        nostr_sdk::prelude::Timestamp::now().as_secs(),
    ))
}

async fn bounties_json(State(node): State<Node>) -> Json<Value> {
    Json(serde_json::to_value(board(&node)).unwrap_or_default())
}

async fn reward_schedule(State(node): State<Node>) -> Response {
    let view = node
        .coordinator
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match view {
        Some(v) => Json(json!({
            "run": v.run.as_str(),
            "n": v.announcement.n,
            "k": v.announcement.k,
            "tranches": v.announcement.tranches,
            "submission_price_msat": v.price_msat,
            "current_round": v.open.as_ref().map(|o| o.round),
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "this node coordinates no run"),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    run: String,
    pubkey: String,
}

async fn submit_token(State(node): State<Node>, Query(q): Query<TokenQuery>) -> Response {
    let view = node
        .coordinator
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(v) = view else {
        return error(StatusCode::NOT_FOUND, "this node coordinates no run");
    };
    if v.run.as_str() != q.run {
        return error(StatusCode::NOT_FOUND, "unknown run");
    }
    let Ok(buyer) = PublicKey::from_hex(&q.pubkey) else {
        return error(StatusCode::BAD_REQUEST, "pubkey: not an x-only hex key");
    };
    let Some(open) = v.open else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no round is open");
    };
    let now = nostr_sdk::prelude::Timestamp::now().as_secs();
    if now >= open.submit_deadline {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the round's submissions are closed",
        );
    }
    let mut id = [0u8; 32];
    if let Err(e) = getrandom_fill(&mut id) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    match offer_token(
        &node.components.lightning,
        &v.secret,
        &v.run,
        buyer,
        v.price_msat,
        open.submit_deadline,
        id,
    ) {
        Ok(offer) => {
            let challenge = l402::challenge_header(&offer.macaroon, &offer.invoice.to_string());
            let mut h = HeaderMap::new();
            match HeaderValue::from_str(&challenge) {
                Ok(v) => {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
            (
                StatusCode::PAYMENT_REQUIRED,
                h,
                Json(json!({"error": "payment required", "round": open.round})),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Token ids are random (the OS RNG through `rand`): they only need to be unique.
fn getrandom_fill(buf: &mut [u8; 32]) -> Result<(), String> {
    use rand::RngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| e.to_string())
}

/// L402 service name of checkpoint downloads.
pub const CHECKPOINT_SERVICE: &str = "checkpoint";
/// Price of one checkpoint download, msat.
pub const CHECKPOINT_PRICE_MSAT: u64 = 5_000;
/// How long a checkpoint token stays valid, seconds.
pub const CHECKPOINT_TOKEN_SECS: u64 = 3_600;

/// The root secret of this node's checkpoint tokens (derived from its key: survives restarts).
fn checkpoint_secret(node: &Node) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(&node.keys.secret_key().secret_bytes());
    h.update(b"l402 checkpoint token secret v1");
    *h.finalize().as_bytes()
}

fn challenge(node: &Node) -> Response {
    let mut id = [0u8; 32];
    if let Err(e) = getrandom_fill(&mut id) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    let ln = &node.components.lightning;
    let invoice = match ln.create_invoice(CHECKPOINT_PRICE_MSAT, "l402 checkpoint download", 600) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let now = nostr_sdk::prelude::Timestamp::now().as_secs();
    let mac = l402::mint(
        &checkpoint_secret(node),
        &l402::MintParams {
            service: CHECKPOINT_SERVICE,
            run: None,
            valid_until: Some(now + CHECKPOINT_TOKEN_SECS),
            max_uses: None,
            pubkey: None,
            payment_hash: invoice.payment_hash(),
            token_id: id,
            location: None,
        },
    );
    let value = l402::challenge_header(&mac, &invoice.to_string());
    match HeaderValue::from_str(&value) {
        Ok(v) => {
            let mut h = HeaderMap::new();
            h.insert(header::WWW_AUTHENTICATE, v);
            (
                StatusCode::PAYMENT_REQUIRED,
                h,
                Json(json!({"error": "payment required"})),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Check an `Authorization` header for a checkpoint download at time `now`: a macaroon this
/// node minted for [`CHECKPOINT_SERVICE`], not expired, with the preimage of its invoice.
/// [`l402::L402Error::http_status`] of the error is what the client gets (402: pay again; 401).
fn authorize_checkpoint(secret: &[u8; 32], auth: &str, now: u64) -> Result<(), l402::L402Error> {
    let ctx = l402::VerifyContext {
        service: CHECKPOINT_SERVICE,
        run: None,
        now,
        uses_so_far: 0,
        presenter: None,
    };
    l402::verify_authorization(secret, auth, &ctx).map(|_| ())
}

async fn checkpoint(
    State(node): State<Node>,
    axum::extract::Path(hash): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(hash) = l402_protocol::events::BlobHash::from_hex(&hash) else {
        return error(StatusCode::BAD_REQUEST, "not a BLAKE3 hash");
    };
    let id = l402_protocol::wire::BlobId(hash.0);
    match node.components.blobs.store().is_complete(&id).await {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::NOT_FOUND, "no such checkpoint here"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    else {
        return challenge(&node);
    };
    let now = nostr_sdk::prelude::Timestamp::now().as_secs();
    if let Err(e) = authorize_checkpoint(&checkpoint_secret(&node), auth, now) {
        tracing::info!(reason = %e, "checkpoint credential refused");
        return if e.http_status() == 402 {
            challenge(&node)
        } else {
            error(StatusCode::UNAUTHORIZED, e)
        };
    }
    match node.components.blobs.read(&id).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// How long `/admin/pay` waits for a reconnecting channel partner before it reports no route.
const ADMIN_PAY_ROUTE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Deserialize)]
struct PayRequest {
    bolt11: String,
}

/// Pay an invoice from this node's wallet and return the preimage (what an L402 client's
/// wallet does between the 402 and the retry).
async fn admin_pay(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Json(req): Json<PayRequest>,
) -> Response {
    if let Some(r) = loopback_only(&from) {
        return r;
    }
    let inv: crate::lightning::Invoice = match req.bolt11.parse() {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let ln = &node.components.lightning;
    if let Err(e) = ln.pay_when_routable(&inv, ADMIN_PAY_ROUTE_WAIT).await {
        return error(StatusCode::BAD_REQUEST, e);
    }
    match ln
        .wait_payment(inv.payment_hash(), std::time::Duration::from_secs(60))
        .await
    {
        Ok(crate::lightning::PaymentOutcome::Succeeded {
            preimage: Some(p), ..
        }) => Json(json!({"preimage": hex::encode(p.0)})).into_response(),
        Ok(other) => error(StatusCode::BAD_GATEWAY, format!("{other:?}")),
        Err(e) => error(StatusCode::GATEWAY_TIMEOUT, e),
    }
}

pub(super) fn loopback_only(from: &SocketAddr) -> Option<Response> {
    (!from.ip().is_loopback())
        .then(|| error(StatusCode::FORBIDDEN, "operator calls are loopback-only"))
}

async fn admin_start(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(r) = loopback_only(&from) {
        return r;
    }
    node.start.notify_one();
    Json(json!({"started": true})).into_response()
}

async fn admin_address(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(r) = loopback_only(&from) {
        return r;
    }
    match node.components.lightning.new_address() {
        Ok(a) => Json(json!({"address": a.to_string()})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

#[derive(Deserialize)]
struct ChannelRequest {
    node_id: String,
    addr: SocketAddr,
    sat: u64,
    push_msat: Option<u64>,
}

async fn admin_channel(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Json(req): Json<ChannelRequest>,
) -> Response {
    if let Some(r) = loopback_only(&from) {
        return r;
    }
    let Ok(node_id) = req.node_id.parse() else {
        return error(StatusCode::BAD_REQUEST, "node_id");
    };
    let ln = &node.components.lightning;
    let peer = PeerAddr {
        node_id,
        addr: req.addr,
    };
    if let Err(e) = ln.sync().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e);
    }
    let id = match ln.open_channel(&peer, req.sat, req.push_msat, false).await {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // Wait for the funding transaction and let the wallet see it, so the next open does not
    // pick the same inputs.
    if let Err(e) = ln
        .wait_channel_pending(id, std::time::Duration::from_secs(60))
        .await
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, e);
    }
    if let Err(e) = ln.sync().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e);
    }
    Json(json!({"channel": id.0.to_string()})).into_response()
}

async fn admin_sync(
    State(node): State<Node>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(r) = loopback_only(&from) {
        return r;
    }
    match node.components.lightning.sync().await {
        Ok(()) => Json(json!({"synced": true})).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use l402_protocol::events::RunId;
    use l402_protocol::hold::Preimage;

    use super::*;

    const SECRET: [u8; 32] = [9; 32];
    const NOW: u64 = 1_800_000_000;

    fn credential(secret: &[u8; 32], service: &str, run: Option<&RunId>, until: u64) -> String {
        let preimage = Preimage([4; 32]);
        let mac = l402::mint(
            secret,
            &l402::MintParams {
                service,
                run,
                valid_until: Some(until),
                max_uses: None,
                pubkey: None,
                payment_hash: preimage.payment_hash(),
                token_id: [1; 32],
                location: None,
            },
        );
        l402::authorization_header(&mac, &preimage)
    }

    /// Every credential case of `GET /checkpoint/{hash}` (the demo shows missing, malformed,
    /// wrong preimage and the paid flow against a running node; these are the ones a demo cannot
    /// produce without waiting an hour or holding the node's secret).
    #[test]
    fn checkpoint_credentials_get_402_or_401_never_the_resource() {
        let ok = credential(&SECRET, CHECKPOINT_SERVICE, None, NOW + 60);
        assert!(authorize_checkpoint(&SECRET, &ok, NOW).is_ok());
        let status = |auth: &str| {
            authorize_checkpoint(&SECRET, auth, NOW)
                .unwrap_err()
                .http_status()
        };
        // Expired: pay again.
        assert_eq!(
            status(&credential(&SECRET, CHECKPOINT_SERVICE, None, NOW - 1)),
            402
        );
        // Another service of the same node (a submission token): refused.
        let run = RunId::new("demo".to_owned()).unwrap();
        assert_eq!(
            status(&credential(&SECRET, "submit", Some(&run), NOW + 60)),
            401
        );
        // Minted by someone else.
        assert_eq!(
            status(&credential(&[8; 32], CHECKPOINT_SERVICE, None, NOW + 60)),
            401
        );
        // Wrong preimage, malformed, wrong scheme.
        let mac = ok.split_once(' ').unwrap().1.split_once(':').unwrap().0;
        assert_eq!(status(&format!("L402 {mac}:{}", "00".repeat(32))), 401);
        assert!(matches!(status("L402 garbage"), 401 | 402));
        assert_eq!(status("Bearer abc"), 402);
    }
}
