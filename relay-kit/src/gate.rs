//! The gate: the relay's front door, one task per websocket connection.
//!
//! Why a gate in front of nostr-relay-builder's `LocalRelay` rather than only a `WritePolicy`:
//! - `LocalRelay` prefixes every `WritePolicy` rejection with `blocked:`; NIP-01 clients need
//!   `invalid:` for malformed events and `rate-limited:` for floods to react correctly;
//! - `LocalRelay` reads websocket messages of up to 64 MiB and parses them before any check;
//!   the gate caps the websocket message size (refused before allocation) and answers an
//!   oversized EVENT with `invalid:` after reading only its id;
//! - `LocalRelay` closes the connection on the first unparseable message; the gate answers it
//!   (`OK false` when an event id can be read, `NOTICE` otherwise) and keeps the connection;
//! - its rate limiter has no configurable burst (see [`crate::rate`]).
//!
//! Everything else (storage, replaceable and addressable events, subscriptions, fan-out, COUNT,
//! negentropy) stays in `LocalRelay`: the gate hands it an in-memory duplex pipe through
//! `LocalRelay::take_connection` and relays the client's accepted messages verbatim. Websocket
//! framing on both sides is tungstenite's (the same crate `LocalRelay` uses); nothing here
//! parses websocket frames by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use nostr_relay_builder::prelude::{ClientMessage, EventId, JsonUtil, RelayMessage, Timestamp};
use nostr_relay_builder::LocalRelay;
use serde::Deserialize;
use std::borrow::Cow;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::config::{Censor, CensorMode, RelayConfig};
use crate::policy::{CheckContext, EventPolicy, GenericChecks, RejectPrefix, Rejection};
use crate::rate::TokenBucket;

/// Size of the in-memory pipe between the gate and `LocalRelay` (bytes each way).
const PIPE_BYTES: usize = 256 * 1024;

/// How long the gate waits to hand `LocalRelay` a close frame when a connection ends.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Counters kept by the gate, readable while the relay runs.
#[derive(Debug, Default)]
pub struct RelayStats {
    connections: AtomicU64,
    forwarded: AtomicU64,
    invalid: AtomicU64,
    blocked: AtomicU64,
    rate_limited: AtomicU64,
    censored: AtomicU64,
    notices: AtomicU64,
}

/// A snapshot of [`RelayStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Connections accepted since start.
    pub connections: u64,
    /// EVENTs that passed the gate and were handed to the store.
    pub forwarded: u64,
    /// EVENTs refused with `invalid:`.
    pub invalid: u64,
    /// EVENTs refused with `blocked:` (kind not served, censored with `Reject`).
    pub blocked: u64,
    /// EVENTs refused with `rate-limited:`.
    pub rate_limited: u64,
    /// EVENTs censored (either mode).
    pub censored: u64,
    /// Unparseable messages answered with a NOTICE.
    pub notices: u64,
}

impl RelayStats {
    /// Reads all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
            blocked: self.blocked.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            censored: self.censored.load(Ordering::Relaxed),
            notices: self.notices.load(Ordering::Relaxed),
        }
    }

    fn count_rejection(&self, r: &Rejection) {
        let c = match r.prefix {
            RejectPrefix::Invalid => &self.invalid,
            RejectPrefix::Blocked => &self.blocked,
            RejectPrefix::RateLimited => &self.rate_limited,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the gate shares between connections.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) relay: LocalRelay,
    pub(crate) policy: Arc<dyn EventPolicy>,
    pub(crate) generic: GenericChecks,
    pub(crate) config: RelayConfig,
    pub(crate) stats: Arc<RelayStats>,
}

/// The gate's decision about one client message.
enum Screened {
    /// Hand the message to `LocalRelay` unchanged.
    Forward,
    /// Answer the client directly with this JSON message.
    Reply(String),
}

/// The first two fields of an `["EVENT", {"id": …}]` message, read without parsing the rest
/// (serde skips the other fields without allocating them).
#[derive(Deserialize)]
struct EnvelopeHead(String, IdOnly);

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

fn ok_false(id: EventId, r: &Rejection) -> String {
    RelayMessage::Ok {
        event_id: id,
        status: false,
        message: Cow::Owned(r.to_nip01()),
    }
    .as_json()
}

fn notice(text: String) -> String {
    RelayMessage::Notice(Cow::Owned(text)).as_json()
}

/// Reads the id of an EVENT message without trusting the rest of it.
fn event_id_of(text: &str) -> Option<EventId> {
    let head: EnvelopeHead = serde_json::from_str(text).ok()?;
    if head.0 != "EVENT" {
        return None;
    }
    EventId::from_hex(&head.1.id).ok()
}

impl Gate {
    fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.config.max_message_bytes))
            .max_frame_size(Some(self.config.max_message_bytes))
    }

    /// Decides what to do with one text message from a client.
    fn screen(&self, text: &str, bucket: &mut TokenBucket) -> Screened {
        let too_big = text.len() > self.config.max_event_bytes;
        let parsed = if too_big {
            None
        } else {
            Some(ClientMessage::from_json(text))
        };
        let event = match parsed {
            Some(Ok(ClientMessage::Event(event))) => event,
            Some(Ok(_)) => return Screened::Forward,
            None | Some(Err(_)) => {
                let rejection = if too_big {
                    Rejection::invalid(format!(
                        "message is {} bytes, the cap is {}",
                        text.len(),
                        self.config.max_event_bytes
                    ))
                } else {
                    let err = parsed
                        .and_then(|p| p.err())
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    Rejection::invalid(format!("malformed message: {err}"))
                };
                self.stats.count_rejection(&rejection);
                return match event_id_of(text) {
                    Some(id) => Screened::Reply(ok_false(id, &rejection)),
                    None => {
                        self.stats.notices.fetch_add(1, Ordering::Relaxed);
                        Screened::Reply(notice(rejection.to_nip01()))
                    }
                };
            }
        };

        let id = event.id;
        if !bucket.try_take(Instant::now()) {
            let r = Rejection::rate_limited(format!(
                "more than {} events/min (burst {}) on this connection",
                self.config.rate.events_per_minute, self.config.rate.event_burst
            ));
            self.stats.count_rejection(&r);
            return Screened::Reply(ok_false(id, &r));
        }
        let ctx = CheckContext {
            raw_len: text.len(),
            now: Timestamp::now(),
        };
        let verify = !self.policy.verifies_signature(event.kind);
        if let Err(r) = self
            .generic
            .check_with(&event, &ctx, verify)
            .and_then(|()| self.policy.check(&event, &ctx))
        {
            tracing::debug!(event_id = %id, kind = event.kind.as_u16(), reason = %r, "event rejected");
            self.stats.count_rejection(&r);
            return Screened::Reply(ok_false(id, &r));
        }
        if let Some(Censor { kinds, mode }) = &self.config.censor {
            if kinds.contains(&event.kind) {
                self.stats.censored.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(event_id = %id, kind = event.kind.as_u16(), "event censored");
                return match mode {
                    CensorMode::SilentDrop => Screened::Reply(
                        RelayMessage::Ok {
                            event_id: id,
                            status: true,
                            message: Cow::Borrowed(""),
                        }
                        .as_json(),
                    ),
                    CensorMode::Reject => {
                        let r = Rejection::blocked("this relay censors the kind");
                        self.stats.count_rejection(&r);
                        Screened::Reply(ok_false(id, &r))
                    }
                };
            }
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Screened::Forward
    }

    /// Serves one TCP connection until either side closes or the relay shuts down.
    pub(crate) async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let outer =
            match tokio_tungstenite::accept_async_with_config(stream, Some(self.ws_config())).await
            {
                Ok(ws) => ws,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "websocket handshake failed");
                    return;
                }
            };
        let (client_end, relay_end) = tokio::io::duplex(PIPE_BYTES);
        let relay = self.relay.clone();
        let relay_task = tokio::spawn(async move {
            if let Err(e) = relay.take_connection(relay_end, peer).await {
                tracing::debug!(%peer, error = %e, "relay session ended with an error");
            }
        });
        // The inner pipe only carries messages the gate already read and sized.
        let inner = WebSocketStream::from_raw_socket(client_end, Role::Client, None).await;
        let (mut outer_tx, mut outer_rx) = outer.split();
        let (mut inner_tx, mut inner_rx) = inner.split();
        let mut bucket = TokenBucket::new(
            self.config.rate.events_per_minute,
            self.config.rate.event_burst,
            Instant::now(),
        );
        loop {
            tokio::select! {
                msg = outer_rx.next() => {
                    let text = match msg {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            self.stats.notices.fetch_add(1, Ordering::Relaxed);
                            let n = notice("invalid: binary messages are not accepted".into());
                            if outer_tx.send(Message::Text(n.into())).await.is_err() { break; }
                            continue;
                        }
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Ok(_)) => continue, // ping/pong are answered by tungstenite
                        Some(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "client websocket error");
                            break;
                        }
                    };
                    let out = match self.screen(text.as_str(), &mut bucket) {
                        Screened::Forward => inner_tx.send(Message::Text(text)).await,
                        Screened::Reply(json) => outer_tx.send(Message::Text(json.into())).await,
                    };
                    if out.is_err() { break; }
                }
                msg = inner_rx.next() => {
                    match msg {
                        Some(Ok(m @ Message::Text(_))) => {
                            if outer_tx.send(m).await.is_err() { break; }
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(_)) | None => break,
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        let _ = outer_tx.close().await;
        // A close frame lets the relay's session end cleanly (a bare EOF makes LocalRelay log an
        // error per connection). Bounded: the relay may be blocked writing to us.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if inner_tx.send(Message::Close(None)).await.is_ok() {
                // Drain until the relay answers the close and the pipe ends.
                while let Some(Ok(_)) = inner_rx.next().await {}
            }
        })
        .await;
        // Dropping both halves of the pipe ends the relay's session in any case (it reads EOF,
        // or its next write fails), even if it is blocked writing to us.
        drop(inner_tx);
        drop(inner_rx);
        if tokio::time::timeout(std::time::Duration::from_secs(5), relay_task)
            .await
            .is_err()
        {
            tracing::warn!(%peer, "relay session did not end within 5 s of the client leaving");
        }
        tracing::debug!(%peer, "connection closed");
    }
}
