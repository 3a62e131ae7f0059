//! The gate against real clients on loopback: a nostr-sdk client and a raw websocket.
//!
//! These tests use kind-agnostic relays (`AnyKind`); the l402 kind policy has its own tests.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use l402_relay_kit::{AnyKind, Censor, CensorMode, EmbeddedRelay, RateLimits, RelayConfig};
use nostr_sdk::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(20);

async fn relay(config: RelayConfig) -> EmbeddedRelay {
    EmbeddedRelay::start(config, Arc::new(AnyKind))
        .await
        .expect("relay starts")
}

async fn client(url: &RelayUrl, keys: &Keys) -> Client {
    let client = Client::new(keys.clone());
    client.add_relay(url.as_str()).await.expect("add relay");
    client.connect().await;
    client.wait_for_connection(WAIT).await;
    client
}

fn note(keys: &Keys, text: &str) -> Event {
    EventBuilder::text_note(text)
        .sign_with_keys(keys)
        .expect("sign")
}

/// Opens a raw websocket (no nostr-sdk) and returns a function-like pair of halves.
async fn raw(
    url: &RelayUrl,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("raw websocket connects");
    ws
}

async fn next_text<S>(ws: &mut S) -> serde_json::Value
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("relay answers in time")
            .expect("stream open")
            .expect("no websocket error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("relay sends JSON");
        }
    }
}

#[tokio::test]
async fn publish_reaches_a_subscriber_through_the_gate() {
    let relay = relay(RelayConfig::in_memory()).await;
    let (alice, bob) = (Keys::generate(), Keys::generate());
    let reader = client(relay.url(), &bob).await;
    let mut notes = reader.notifications();
    reader
        .subscribe(
            Filter::new()
                .kind(Kind::TextNote)
                .author(alice.public_key()),
            None,
        )
        .await
        .expect("subscribe");

    let writer = client(relay.url(), &alice).await;
    let ev = note(&alice, "hello through the gate");
    let out = writer.send_event(&ev).await.expect("send");
    assert!(out.success.contains(relay.url()), "accepted: {out:?}");

    let got = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(RelayPoolNotification::Event { event, .. }) = notes.recv().await {
                if event.id == ev.id {
                    return *event;
                }
            }
        }
    })
    .await
    .expect("subscriber sees the event");
    assert_eq!(got.content, "hello through the gate");
    assert_eq!(relay.stats().forwarded, 1);
}

#[tokio::test]
async fn oversized_event_is_invalid_and_not_stored() {
    let relay = relay(RelayConfig {
        max_event_bytes: 4_096,
        ..RelayConfig::in_memory()
    })
    .await;
    let keys = Keys::generate();
    let writer = client(relay.url(), &keys).await;
    let big = note(&keys, &"x".repeat(5_000));
    let out = writer.send_event(&big).await.expect("send returns");
    assert!(out.success.is_empty(), "must not be accepted: {out:?}");
    let reason = out.failed.get(relay.url()).expect("a reason");
    assert!(reason.starts_with("invalid: "), "{reason}");
    assert!(reason.contains("cap is 4096"), "{reason}");
    let stored = relay
        .database()
        .count(Filter::new().id(big.id))
        .await
        .expect("count");
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn flood_is_rate_limited_per_connection() {
    let relay = relay(RelayConfig {
        rate: RateLimits {
            events_per_minute: 6, // one token every 10 s: no refill during the test
            event_burst: 5,
            ..RateLimits::default()
        },
        ..RelayConfig::in_memory()
    })
    .await;
    let keys = Keys::generate();
    let writer = client(relay.url(), &keys).await;
    let (mut ok, mut limited) = (0, 0);
    for i in 0..8 {
        let out = writer
            .send_event(&note(&keys, &format!("flood {i}")))
            .await
            .expect("send returns");
        if out.success.contains(relay.url()) {
            ok += 1;
        } else {
            let reason = out.failed.get(relay.url()).expect("reason");
            assert!(reason.starts_with("rate-limited: "), "{reason}");
            limited += 1;
        }
    }
    assert_eq!((ok, limited), (5, 3));
    assert_eq!(relay.stats().rate_limited, 3);
}

#[tokio::test]
async fn raw_client_gets_exact_nip01_reasons_and_keeps_its_connection() {
    let relay = relay(RelayConfig::in_memory()).await;
    let keys = Keys::generate();
    let mut ws = raw(relay.url()).await;

    // 1. Unsigned: a well-formed event object without "sig".
    let ev = note(&keys, "unsigned");
    let mut obj: serde_json::Value = serde_json::from_str(&ev.as_json()).expect("json");
    obj.as_object_mut().expect("object").remove("sig");
    ws.send(Message::Text(
        serde_json::json!(["EVENT", obj]).to_string().into(),
    ))
    .await
    .expect("send");
    let ok = next_text(&mut ws).await;
    assert_eq!(ok[0], "OK");
    assert_eq!(ok[1], ev.id.to_hex());
    assert_eq!(ok[2], false);
    assert!(
        ok[3].as_str().expect("reason").starts_with("invalid: "),
        "{ok}"
    );

    // 2. Tampered content: the id no longer matches.
    let mut obj: serde_json::Value = serde_json::from_str(&ev.as_json()).expect("json");
    obj["content"] = "tampered".into();
    ws.send(Message::Text(
        serde_json::json!(["EVENT", obj]).to_string().into(),
    ))
    .await
    .expect("send");
    let ok = next_text(&mut ws).await;
    assert_eq!(ok[2], false);
    assert_eq!(ok[3], "invalid: event id does not match its content");

    // 3. Valid id, signature by another key.
    let other = note(&Keys::generate(), "unsigned");
    let mut obj: serde_json::Value = serde_json::from_str(&ev.as_json()).expect("json");
    obj["sig"] = other.sig.to_string().into();
    ws.send(Message::Text(
        serde_json::json!(["EVENT", obj]).to_string().into(),
    ))
    .await
    .expect("send");
    let ok = next_text(&mut ws).await;
    assert_eq!(ok[3], "invalid: bad event signature");

    // 4. Not JSON at all: a NOTICE, and the connection stays open.
    ws.send(Message::Text("this is not json".into()))
        .await
        .expect("send");
    let n = next_text(&mut ws).await;
    assert_eq!(n[0], "NOTICE");
    assert!(n[1].as_str().expect("text").starts_with("invalid: "), "{n}");

    // 5. A valid event on the same connection is still accepted and then served to a REQ.
    let good = note(&keys, "signed");
    ws.send(Message::Text(
        serde_json::json!([
            "EVENT",
            serde_json::from_str::<serde_json::Value>(&good.as_json()).expect("json")
        ])
        .to_string()
        .into(),
    ))
    .await
    .expect("send");
    let ok = next_text(&mut ws).await;
    assert_eq!(ok, serde_json::json!(["OK", good.id.to_hex(), true, ""]));
    ws.send(Message::Text(
        serde_json::json!(["REQ", "s1", {"authors": [keys.public_key().to_hex()]}])
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    let first = next_text(&mut ws).await;
    assert_eq!(first[0], "EVENT");
    assert_eq!(first[2]["id"], good.id.to_hex());
    assert_eq!(next_text(&mut ws).await, serde_json::json!(["EOSE", "s1"]));
    let s = relay.stats();
    assert_eq!((s.invalid, s.notices, s.forwarded), (4, 1, 1), "{s:?}");
}

#[tokio::test]
async fn expired_and_future_events_are_invalid() {
    let relay = relay(RelayConfig::in_memory()).await;
    let keys = Keys::generate();
    let writer = client(relay.url(), &keys).await;
    let now = Timestamp::now();
    let expired = EventBuilder::text_note("gone")
        .tag(Tag::expiration(Timestamp::from(now.as_secs() - 10)))
        .sign_with_keys(&keys)
        .expect("sign");
    let out = writer.send_event(&expired).await.expect("send");
    assert_eq!(
        out.failed.get(relay.url()).map(String::as_str),
        Some("invalid: event has expired (NIP-40)")
    );
    let future = EventBuilder::text_note("too early")
        .custom_created_at(Timestamp::from(now.as_secs() + 3_600))
        .sign_with_keys(&keys)
        .expect("sign");
    let out = writer.send_event(&future).await.expect("send");
    assert!(out
        .failed
        .get(relay.url())
        .expect("reason")
        .starts_with("invalid: created_at"));
}

#[tokio::test]
async fn censoring_relay_drops_or_rejects_the_censored_kinds_only() {
    for mode in [CensorMode::SilentDrop, CensorMode::Reject] {
        let relay = relay(RelayConfig {
            censor: Some(Censor {
                kinds: BTreeSet::from([Kind::TextNote]),
                mode,
            }),
            ..RelayConfig::in_memory()
        })
        .await;
        let keys = Keys::generate();
        let writer = client(relay.url(), &keys).await;
        let censored = note(&keys, "censored");
        let out = writer.send_event(&censored).await.expect("send");
        match mode {
            CensorMode::SilentDrop => assert!(out.success.contains(relay.url()), "lies: {out:?}"),
            _ => assert!(out
                .failed
                .get(relay.url())
                .expect("reason")
                .starts_with("blocked: ")),
        }
        let fine = EventBuilder::new(Kind::Custom(1_111), "not censored")
            .sign_with_keys(&keys)
            .expect("sign");
        let out = writer.send_event(&fine).await.expect("send");
        assert!(out.success.contains(relay.url()));
        let db = relay.database();
        assert_eq!(
            db.count(Filter::new().id(censored.id))
                .await
                .expect("count"),
            0
        );
        assert_eq!(db.count(Filter::new().id(fine.id)).await.expect("count"), 1);
        assert_eq!(relay.stats().censored, 1);
    }
}
