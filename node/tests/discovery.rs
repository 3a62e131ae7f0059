//! Discovery over real relays on loopback: the embedded relay, censoring and dead relays,
//! rejections, expiry, and interoperability with clients that know nothing of l402.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use l402_node::discovery::{samples, Discovery, DiscoveryConfig, PublishError};
use l402_protocol::events::{self, EventContent, L402Kind};
use l402_relay_kit::{AnyKind, Censor, CensorMode, EmbeddedRelay, ForeignKinds, RelayConfig};
use nostr_sdk::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// Generous: the machine is shared and loaded. Waits end as soon as their condition holds.
const WAIT: Duration = Duration::from_secs(60);
const HOUR: Option<Duration> = Some(Duration::from_secs(3_600));
const SEED: u64 = 0x5eed;

fn loopback0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config(relays: Vec<RelayUrl>) -> DiscoveryConfig {
    DiscoveryConfig {
        relays,
        ..DiscoveryConfig::default()
    }
}

async fn start(relays: Vec<RelayUrl>, keys: &Keys) -> Discovery {
    Discovery::start(config(relays), keys.clone())
        .await
        .expect("discovery starts")
}

/// A loopback port with nothing listening on it (bound, then released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind(loopback0())
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn run_id_of(d: &l402_node::discovery::Directory, id: &str) -> bool {
    d.runs(now())
        .any(|r| r.verified.value().run_id.as_str() == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_discover_each_other_and_a_run_through_the_embedded_relay() {
    let data = tempfile::tempdir().expect("tempdir");
    let (ka, kb, kc) = (
        samples::keys(SEED, 0),
        samples::keys(SEED, 1),
        samples::keys(SEED, 2),
    );
    // Node A has no relay configured: it runs the embedded relay ("no server").
    let a = Discovery::start(
        DiscoveryConfig {
            embedded: RelayConfig::persistent(loopback0(), data.path()),
            ..config(Vec::new())
        },
        ka.clone(),
    )
    .await
    .expect("node A starts");
    let url = a
        .embedded_relay()
        .expect("A runs the embedded relay")
        .url()
        .clone();
    assert_eq!(a.relays(), std::slice::from_ref(&url));
    let b = start(vec![url.clone()], &kb).await;
    let c = start(vec![url.clone()], &kc).await;

    a.announce(&samples::coordinator_announcement(&ka, SEED, 0), HOUR)
        .await
        .expect("A announces");
    b.announce(&samples::node_announcement(&kb, SEED, 1, true), HOUR)
        .await
        .expect("B announces");
    c.announce(&samples::node_announcement(&kc, SEED, 2, true), HOUR)
        .await
        .expect("C announces");
    let report = a
        .announce(&samples::run_announcement("run-1", "tiny byte-gpt"), HOUR)
        .await
        .expect("A announces its run");
    assert_eq!(report.accepted, BTreeSet::from([url.clone()]));

    for node in [&a, &b, &c] {
        assert!(
            node.wait_for(WAIT, |d| {
                d.nodes(now()).count() == 3
                    && d.validators(now()).count() == 2
                    && run_id_of(d, "run-1")
            })
            .await,
            "{} sees everyone and the run: {}",
            node.public_key(),
            node.directory().summary(now())
        );
    }
    // C sees B's bound keys exactly as B's iroh and Lightning keys are.
    let dir = c.directory();
    let vb = dir.node(&kb.public_key(), now()).expect("B listed");
    assert_eq!(
        vb.verified.value().iroh_node_id,
        samples::iroh_key(SEED, 1).verifying_key().to_bytes()
    );
    assert_eq!(vb.verified.value().ln_node_id, samples::ln_node_id(SEED, 1));
    assert_eq!(vb.relays, BTreeSet::from([url.clone()]));
    // The coordinator of run-1 is A, and its node announcement is attached.
    let coords = dir.coordinators(now());
    assert_eq!(coords.len(), 1);
    assert_eq!(coords[0].author, ka.public_key());
    assert!(coords[0].node.is_some());
    assert_eq!(coords[0].runs[0].verified.value().title, "tiny byte-gpt");
    assert!(dir.rejections().is_empty());

    // Replacing the run announcement updates every directory.
    let newer = events::build(
        &samples::run_announcement("run-1", "tiny byte-gpt, round 2"),
        Timestamp::from(now().as_secs() + 1),
    )
    .tag(Tag::expiration(Timestamp::from(now().as_secs() + 3_600)))
    .sign_with_keys(&ka)
    .expect("sign");
    a.publish(&newer).await.expect("replacement accepted");
    for node in [&a, &b, &c] {
        assert!(
            node.wait_for(WAIT, |d| d.runs(now()).any(|r| r.verified.id() == newer.id))
                .await
        );
        assert_eq!(
            node.directory().runs(now()).count(),
            1,
            "replaced, not added"
        );
    }
    for n in [b, c, a] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_discovered_through_the_honest_relay_when_the_other_censors() {
    let honest = l402_relay_kit::spawn_relay(RelayConfig::in_memory())
        .await
        .expect("relay");
    let censor = l402_relay_kit::spawn_relay(RelayConfig {
        censor: Some(Censor {
            kinds: l402_relay_kit::kinds::l402_kinds().into_iter().collect(),
            mode: CensorMode::SilentDrop,
        }),
        ..RelayConfig::in_memory()
    })
    .await
    .expect("relay");
    let both = vec![censor.url().clone(), honest.url().clone()];
    let kp = samples::keys(SEED, 10);
    let publisher = start(both.clone(), &kp).await;
    assert!(publisher.wait_connected(WAIT).await);
    let report = publisher
        .announce(&samples::run_announcement("censored-run", "t"), HOUR)
        .await
        .expect("published");
    // The censor lies: it answers OK true and stores nothing.
    assert_eq!(report.accepted, both.iter().cloned().collect());

    let reader = start(both, &samples::keys(SEED, 11)).await;
    assert!(
        reader
            .wait_for(WAIT, |d| run_id_of(d, "censored-run"))
            .await
    );
    let dir = reader.directory();
    let run = dir.runs(now()).next().expect("listed");
    assert_eq!(
        run.relays,
        BTreeSet::from([honest.url().clone()]),
        "came through the honest relay"
    );

    // Control: a reader of the censoring relay alone sees nothing.
    let only_censor = start(vec![censor.url().clone()], &samples::keys(SEED, 12)).await;
    assert!(only_censor.wait_connected(WAIT).await);
    let dir = only_censor
        .fetch_directory(Duration::from_secs(5))
        .await
        .expect("fetch");
    assert_eq!(dir.runs(now()).count(), 0);
    assert_eq!(censor.stats().censored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_discovered_while_one_relay_is_down_and_reaches_it_when_it_comes_back() {
    let honest = l402_relay_kit::spawn_relay(RelayConfig::in_memory())
        .await
        .expect("relay");
    let port = dead_port();
    let down = RelayUrl::parse(&format!("ws://127.0.0.1:{port}")).expect("url");
    let both = vec![down.clone(), honest.url().clone()];
    let kp = samples::keys(SEED, 20);
    let publisher = start(both.clone(), &kp).await;
    let reader = start(both, &samples::keys(SEED, 21)).await;

    let report = publisher
        .announce(&samples::run_announcement("outage-run", "t"), HOUR)
        .await
        .expect("accepted by the live relay");
    assert_eq!(report.accepted, BTreeSet::from([honest.url().clone()]));
    assert!(report.queued.contains_key(&down), "{report}");
    assert!(reader.wait_for(WAIT, |d| run_id_of(d, "outage-run")).await);

    // Everything down: publish fails loudly (no silent Ok), and the event stays queued.
    let lonely = start(vec![down.clone()], &samples::keys(SEED, 22)).await;
    let lonely_ev = lonely
        .sign(&samples::run_announcement("lonely-run", "t"), HOUR)
        .expect("sign");
    match lonely.publish(&lonely_ev).await {
        Err(PublishError::NotAccepted { report }) => {
            assert!(report.accepted.is_empty());
            assert!(report.queued.contains_key(&down));
        }
        other => panic!("expected NotAccepted, got {other:?}"),
    }

    // The relay comes back on the same address: the outboxes deliver what it missed.
    let back = l402_relay_kit::spawn_relay(RelayConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        ..RelayConfig::in_memory()
    })
    .await
    .expect("relay comes back on its port");
    let late_reader = start(vec![down.clone()], &samples::keys(SEED, 23)).await;
    assert!(
        late_reader
            .wait_for(WAIT, |d| run_id_of(d, "outage-run")
                && run_id_of(d, "lonely-run"))
            .await,
        "after reconnect the relay got both events: {}",
        late_reader.directory().summary(now())
    );
    // The acknowledgement is recorded just after the relay stores the event: poll, don't race it.
    let acked = tokio::time::timeout(WAIT, async {
        while !publisher.pending(&report.id).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        acked.is_ok(),
        "publisher's outbox still owes {:?}",
        publisher.pending(&report.id)
    );

    // The reader, subscribed since before the outage, is subscribed on the returned relay too:
    // with the honest relay gone, a new event still reaches it, through `back` alone.
    assert!(
        reader.wait_connected(WAIT).await,
        "reader reconnected to the returned relay"
    );
    honest.shutdown().await;
    let after = publisher
        .announce(&samples::run_announcement("after-outage", "t"), HOUR)
        .await
        .expect("accepted by the returned relay");
    assert_eq!(after.accepted, BTreeSet::from([down.clone()]));
    assert!(
        reader
            .wait_for(WAIT, |d| run_id_of(d, "after-outage"))
            .await
    );
    let dir = reader.directory();
    let run = dir
        .runs(now())
        .find(|r| r.verified.value().run_id.as_str() == "after-outage")
        .expect("listed");
    assert_eq!(run.relays, BTreeSet::from([down.clone()]));
    drop(back);
}

/// Sends one raw `["EVENT", …]` text and returns the relay's answer.
async fn raw_event<S>(ws: &mut S, text: String) -> serde_json::Value
where
    S: SinkExt<Message>
        + StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
    <S as futures::Sink<Message>>::Error: std::fmt::Debug,
{
    ws.send(Message::Text(text.into())).await.expect("send");
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("answer in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).expect("json");
        }
    }
}

fn event_msg(ev: &Event) -> String {
    format!(r#"["EVENT",{}]"#, ev.as_json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_announcements_are_rejected_with_a_reason_and_never_enter_the_directory() {
    let relay = l402_relay_kit::spawn_relay(RelayConfig::in_memory())
        .await
        .expect("relay");
    let (k, other) = (samples::keys(SEED, 30), samples::keys(SEED, 31));
    let t = now();
    let sign = |c: &dyn Fn() -> EventBuilder, keys: &Keys| c().sign_with_keys(keys).expect("sign");
    let good = samples::node_announcement(&k, SEED, 30, true);
    let good_ev = sign(&|| events::build(&good, t), &k);
    // Each bad announcement has its own author: announcements of one author share one address
    // (kind, author, d) and would replace each other on a relay.
    let (k_wrong, k_malformed) = (samples::keys(SEED, 34), samples::keys(SEED, 35));
    // Wrongly bound: its iroh signature binds `other`'s Nostr key.
    let bound_to_other = samples::node_announcement(&other, SEED, 31, true);
    let wrong = sign(&|| events::build(&bound_to_other, t), &k_wrong);
    // Malformed content (not the schema), oversized, foreign kind.
    let malformed = sign(
        &|| {
            EventBuilder::new(
                L402Kind::NodeAnnouncement.kind(),
                r#"{"v":1,"roles":"all"}"#,
            )
            .tags(good.tags())
        },
        &k_malformed,
    );
    let oversized = sign(
        &|| events::build(&samples::run_announcement("big", &"x".repeat(70_000)), t),
        &k,
    );
    let foreign = sign(&|| EventBuilder::text_note("hello"), &k);
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.url().as_str())
        .await
        .expect("raw websocket");
    // Unsigned: the event object without its signature.
    let mut unsigned: serde_json::Value = serde_json::from_str(&good_ev.as_json()).expect("json");
    unsigned.as_object_mut().expect("object").remove("sig");
    let unsigned_msg = serde_json::json!(["EVENT", unsigned]).to_string();

    let cases: Vec<(&str, String, EventId, &str)> = vec![
        (
            "unsigned",
            unsigned_msg,
            good_ev.id,
            "invalid: malformed message",
        ),
        (
            "wrongly bound",
            event_msg(&wrong),
            wrong.id,
            "invalid: iroh key binding signature does not verify",
        ),
        (
            "malformed",
            event_msg(&malformed),
            malformed.id,
            "invalid: bad content",
        ),
        (
            "oversized",
            event_msg(&oversized),
            oversized.id,
            "invalid: message is",
        ),
        (
            "foreign kind",
            event_msg(&foreign),
            foreign.id,
            "blocked: kind 1 is not an l402 kind",
        ),
    ];
    for (name, msg, id, want) in cases {
        let ok = raw_event(&mut ws, msg).await;
        assert_eq!(ok[0], "OK", "{name}: {ok}");
        assert_eq!(ok[1], id.to_hex(), "{name}");
        assert_eq!(ok[2], false, "{name}: {ok}");
        let reason = ok[3].as_str().expect("reason");
        assert!(
            reason.starts_with(want),
            "{name}: got {reason:?}, want {want:?}…"
        );
    }
    // Control: the good announcement is accepted on the same connection.
    assert_eq!(raw_event(&mut ws, event_msg(&good_ev)).await[2], true);

    // A reader of the l402 relay lists exactly the good one.
    let reader = start(vec![relay.url().clone()], &samples::keys(SEED, 32)).await;
    assert!(reader.wait_for(WAIT, |d| d.nodes(now()).count() == 1).await);
    let dir = reader.directory();
    assert!(dir.contains(&good_ev.id));
    for id in [wrong.id, malformed.id, oversized.id] {
        assert!(!dir.contains(&id));
    }

    // A permissive relay (any kind, 1 MiB events) serves the bad events anyway: the directory
    // refuses them itself, each with its reason.
    let permissive = EmbeddedRelay::start(
        RelayConfig {
            max_event_bytes: 1 << 20,
            foreign_kinds: ForeignKinds::Accept,
            ..RelayConfig::in_memory()
        },
        Arc::new(AnyKind),
    )
    .await
    .expect("relay");
    let feeder = Client::new(k.clone());
    feeder
        .add_relay(permissive.url().as_str())
        .await
        .expect("add");
    feeder.connect().await;
    feeder.wait_for_connection(WAIT).await;
    for ev in [&wrong, &malformed, &oversized, &good_ev] {
        let out = feeder.send_event(ev).await.expect("send");
        assert!(
            out.success.contains(permissive.url()),
            "permissive relay stores it: {out:?}"
        );
    }
    let reader = start(vec![permissive.url().clone()], &samples::keys(SEED, 33)).await;
    assert!(
        reader
            .wait_for(WAIT, |d| d.nodes(now()).count() == 1
                && d.rejections().values().sum::<u64>() == 3)
            .await,
        "{}",
        reader.directory().summary(now())
    );
    let dir = reader.directory();
    let keys: Vec<&str> = dir.rejections().keys().map(String::as_str).collect();
    assert_eq!(keys, ["BadBinding", "BadContent", "TooLarge"]);
    assert!(dir.contains(&good_ev.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_leaves_the_directory_when_its_announcement_expires() {
    let relay = l402_relay_kit::spawn_relay(RelayConfig::in_memory())
        .await
        .expect("relay");
    let k = samples::keys(SEED, 40);
    let node = start(vec![relay.url().clone()], &k).await;
    node.announce(
        &samples::node_announcement(&k, SEED, 40, true),
        Some(Duration::from_secs(3)),
    )
    .await
    .expect("announce");
    node.announce(
        &samples::bounty("b-1", "lower the loss", now().as_secs() + 86_400),
        HOUR,
    )
    .await
    .expect("bounty");
    assert!(
        node.wait_for(WAIT, |d| d.validators(now()).count() == 1
            && d.bounties(now()).count() == 1)
            .await
    );
    // The supervisor sweeps expired entries out; the bounty (1 h) stays.
    assert!(
        node.wait_for(WAIT, |d| d.validators(Timestamp::now()).count() == 0
            && d.len() == 1)
            .await,
        "{}",
        node.directory().summary(now())
    );
    assert_eq!(node.directory().bounties(now()).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_standard_nip01_readable_by_clients_without_l402_code() {
    let relay = l402_relay_kit::spawn_relay(RelayConfig::in_memory())
        .await
        .expect("relay");
    let k = samples::keys(SEED, 50);
    let node = start(vec![relay.url().clone()], &k).await;
    node.announce(&samples::node_announcement(&k, SEED, 50, true), HOUR)
        .await
        .expect("announce");
    node.announce(&samples::run_announcement("interop-run", "t"), HOUR)
        .await
        .expect("announce");

    // 1. A plain nostr-sdk client with standard filters: kind + d tag, hashtag, custom tag.
    let plain = Client::default();
    plain.add_relay(relay.url().as_str()).await.expect("add");
    plain.connect().await;
    plain.wait_for_connection(WAIT).await;
    let by_d = plain
        .fetch_events(
            Filter::new()
                .kind(Kind::Custom(34021))
                .identifier("interop-run"),
            WAIT,
        )
        .await
        .expect("fetch");
    assert_eq!(by_d.len(), 1);
    let by_tag = plain
        .fetch_events(
            Filter::new()
                .kind(Kind::Custom(34021))
                .custom_tag(SingleLetterTag::lowercase(Alphabet::N), "interop-run"),
            WAIT,
        )
        .await
        .expect("fetch");
    assert_eq!(by_tag.len(), 1);
    let validators = plain
        .fetch_events(Filter::new().hashtag("l402-validator"), WAIT)
        .await
        .expect("fetch");
    assert_eq!(validators.len(), 1);
    for ev in by_d.iter().chain(validators.iter()) {
        ev.verify().expect("standard BIP-340 signature and id");
        assert_eq!(ev.pubkey, k.public_key());
        let content: serde_json::Value = serde_json::from_str(&ev.content).expect("JSON content");
        assert_eq!(content["v"], 1);
        assert!(ev.tags.expiration().is_some(), "NIP-40 expiration tag");
    }

    // 2. A raw websocket REQ, parsed as plain JSON.
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.url().as_str())
        .await
        .expect("raw websocket");
    ws.send(Message::Text(
        r##"["REQ","raw",{"kinds":[34020,34021],"#t":["l402"]}]"##.into(),
    ))
    .await
    .expect("send");
    let mut got = Vec::new();
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("answer")
            .expect("open")
            .expect("ok");
        let Message::Text(t) = m else { continue };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
        if v[0] == "EOSE" {
            break;
        }
        assert_eq!(v[0], "EVENT");
        got.push(v[2].clone());
    }
    assert_eq!(got.len(), 2);
    for ev in got {
        let keys: BTreeSet<&str> = ev
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "content",
                "created_at",
                "id",
                "kind",
                "pubkey",
                "sig",
                "tags"
            ])
        );
        let tags = ev["tags"].as_array().expect("tags array");
        assert!(tags.iter().all(|t| t
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x.is_string()))));
        let names: BTreeSet<&str> = tags.iter().filter_map(|t| t[0].as_str()).collect();
        assert!(
            names.is_superset(&BTreeSet::from(["d", "t", "expiration"])),
            "{names:?}"
        );
        assert!(
            serde_json::from_str::<serde_json::Value>(ev["content"].as_str().expect("string"))
                .is_ok()
        );
    }
}
