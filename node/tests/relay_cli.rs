//! The standalone relay (`l402-node relay`) as a separate process, killed with SIGKILL and
//! restarted on its data dir; and the `runs`, `validators` and `bounties` listings read from it,
//! from the command line, with and without a relay running ("no server").

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use l402_node::discovery::samples;
use l402_protocol::events::{self, L402Kind};
use nostr_sdk::prelude::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);
const SEED: u64 = 0xc11;
const VALIDATORS: u64 = 40;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_l402-node")
}

/// Starts `l402-node relay` on a free port over `data_dir`; returns the process and its URL.
async fn relay_process(data_dir: &Path) -> (Child, RelayUrl) {
    let mut child = Command::new(bin())
        .args(["relay", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn l402-node relay");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = tokio::time::timeout(WAIT, BufReader::new(stdout).lines().next_line())
        .await
        .expect("relay starts in time")
        .expect("read stdout")
        .expect("a line");
    let url = line
        .strip_prefix("relay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, RelayUrl::parse(url).expect("relay URL"))
}

async fn plain_client(url: &RelayUrl) -> Client {
    let c = Client::default();
    c.add_relay(url.as_str()).await.expect("add relay");
    c.connect().await;
    c.wait_for_connection(WAIT).await;
    c
}

fn all_l402_kinds() -> Filter {
    Filter::new()
        .kinds(L402Kind::ALL.iter().map(|k| k.kind()))
        .limit(10_000)
}

async fn cli(args: &[&str]) -> String {
    let out = tokio::time::timeout(
        WAIT,
        Command::new(bin())
            .args(args)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit())
            .output(),
    )
    .await
    .expect("listing finishes in time")
    .expect("run l402-node");
    assert!(out.status.success(), "l402-node {args:?} failed");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn signed(b: EventBuilder, k: &Keys, expires: u64) -> Event {
    b.tag(Tag::expiration(Timestamp::from(expires)))
        .sign_with_keys(k)
        .expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_loses_no_stored_event_and_the_cli_lists_them() {
    let data = tempfile::tempdir().expect("tempdir");
    let (mut relay, url) = relay_process(data.path()).await;
    let client = plain_client(&url).await;
    let t = Timestamp::now().as_secs();
    let expires = t + 3_600;

    let mut expected: BTreeSet<EventId> = BTreeSet::new();
    let publish = |ev: Event| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let out = client.send_event(&ev).await.expect("send");
            assert!(
                out.success.contains(&url),
                "relay acknowledged {}: {out:?}",
                ev.id
            );
            ev.id
        }
    };
    for i in 0..VALIDATORS {
        let k = samples::keys(SEED, i);
        let ann = samples::node_announcement(&k, SEED, i, true);
        expected
            .insert(publish(signed(events::build(&ann, Timestamp::from(t)), &k, expires)).await);
    }
    let coordinator = samples::keys(SEED, 1_000);
    let mut first_run0 = None;
    for r in 0..5 {
        let run = samples::run_announcement(&format!("run-{r}"), &format!("run number {r}"));
        let id = publish(signed(
            events::build(&run, Timestamp::from(t)),
            &coordinator,
            expires,
        ))
        .await;
        if r == 0 {
            first_run0 = Some(id);
        } else {
            expected.insert(id);
        }
    }
    // run-0 is replaced by a newer announcement: only the newer one may survive.
    let replaced = samples::run_announcement("run-0", "run number 0, updated");
    let newer = signed(
        events::build(&replaced, Timestamp::from(t + 1)),
        &coordinator,
        expires,
    );
    expected.insert(publish(newer).await);
    let sponsor = samples::keys(SEED, 2_000);
    for b in 0..3 {
        let bounty = samples::bounty(&format!("bounty-{b}"), "lower val loss", t + 86_400);
        expected.insert(
            publish(signed(
                events::build(&bounty, Timestamp::from(t)),
                &sponsor,
                expires,
            ))
            .await,
        );
    }
    let before: BTreeSet<EventId> = client
        .fetch_events(all_l402_kinds(), WAIT)
        .await
        .expect("fetch")
        .iter()
        .map(|e| e.id)
        .collect();
    // The relay applied the replacement: the first run-0 is gone, everything else is there.
    assert!(!before.contains(&first_run0.expect("published")));
    assert_eq!(before, expected);
    assert_eq!(before.len() as u64, VALIDATORS + 5 + 3);
    client.shutdown().await;

    // Crash: SIGKILL, no shutdown path at all. Then restart on the same data dir.
    relay.kill().await.expect("SIGKILL the relay");
    let (mut relay2, url2) = relay_process(data.path()).await;
    let client2 = plain_client(&url2).await;
    let after: BTreeSet<EventId> = client2
        .fetch_events(all_l402_kinds(), WAIT)
        .await
        .expect("fetch")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        after, expected,
        "every acknowledged event survived the crash"
    );
    client2.shutdown().await;

    // The listings, from the command line, against the restarted relay.
    let json = cli(&[
        "validators",
        "--relay",
        url2.as_str(),
        "--json",
        "--timeout-secs",
        "20",
    ])
    .await;
    let listed: serde_json::Value = serde_json::from_str(&json).expect("JSON output");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len() as u64, VALIDATORS);
    let k7 = samples::keys(SEED, 7);
    let v7 = listed
        .iter()
        .find(|v| v["author"] == k7.public_key().to_hex())
        .expect("validator 7 listed");
    assert_eq!(
        v7["announcement"]["iroh_node_id"],
        hex::encode(samples::iroh_key(SEED, 7).verifying_key().to_bytes())
    );
    assert_eq!(
        v7["announcement"]["ln_node_id"],
        hex::encode(samples::ln_node_id(SEED, 7))
    );
    assert_eq!(v7["npub"], k7.public_key().to_bech32().expect("npub"));

    let runs = cli(&["runs", "--relay", url2.as_str(), "--timeout-secs", "20"]).await;
    assert!(runs.starts_with("RUN "), "{runs}");
    assert_eq!(runs.lines().count(), 1 + 5, "{runs}");
    assert!(runs.contains("run number 0, updated"), "{runs}");
    assert!(!runs.contains("run number 0 "), "{runs}");
    assert!(runs.contains("2-of-3"), "{runs}");

    let bounties = cli(&[
        "bounties",
        "--relay",
        url2.as_str(),
        "--json",
        "--timeout-secs",
        "20",
    ])
    .await;
    let bounties: serde_json::Value = serde_json::from_str(&bounties).expect("JSON");
    assert_eq!(bounties.as_array().map(Vec::len), Some(3));

    // No relay running and none configured: the listing reads the node's relay store itself.
    relay2.kill().await.expect("stop the relay");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let data_dir = data.path().to_str().expect("utf-8 path");
    let offline = cli(&[
        "runs",
        "--data-dir",
        data_dir,
        "--local-relay",
        &dead.to_string(),
        "--json",
    ])
    .await;
    let offline: serde_json::Value = serde_json::from_str(&offline).expect("JSON");
    assert_eq!(offline.as_array().map(Vec::len), Some(5), "{offline}");
}
