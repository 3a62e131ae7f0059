//! The bounty lifecycle on real nodes: `l402-node demo --bounty` for 2 rounds. Every node is its
//! own `l402-node up` process (regtest chain and relay in the demo process, loopback only), with
//! its own ldk-node, iroh endpoint and relay connection; candidates run in bubblewrap.
//!
//! - The sponsor (the coordinator) posts the example bounty and sends each validator its
//!   held-out seeds NIP-44-encrypted.
//! - The sponsor's operator posts the bounty with `l402-node bounty post`.
//! - Round 1: the reference agent climbs on the public set and submits its diff; a copier's
//!   operator submits the same bytes later with `l402-node bounty submit` (handed over as a leak
//!   would be).
//! - Round 2: a follow-up submits one more training step on top of the new leader.
//! - The sponsor's bounty board is rendered by headless Chromium.

use std::process::Command;

use serde_json::Value;

/// The demo bounty's terms (`l402-node init --bounty`).
const MARGIN: i64 = 60_000;
const TARGET: i64 = 400_000;
const TRANCHES: i64 = 4;
const TRANCHE_SAT: u64 = 10_000;

#[test]
fn bounty_pays_the_agent_in_proportion_not_the_copy_nor_the_follow_up_below_the_margin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_l402-node"))
        .args(["demo", "--bounty", "--rounds", "2", "--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let mut shown = report.clone();
    shown["board"]["dom"] = Value::Null;
    // Shown only if an assertion below fails (libtest captures it otherwise).
    eprintln!("{stderr}\n{shown:#}");

    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    let sub = |r: usize, who: &str| -> Value {
        rounds[r]["submissions"]
            .as_array()
            .expect("submissions")
            .iter()
            .find(|s| s["behaviour"] == who)
            .cloned()
            .unwrap_or_else(|| panic!("{who} submitted in round {}", r + 1))
    };
    let median = |s: &Value| -> i64 {
        let mut v: Vec<i64> = s["evaluations"]
            .as_array()
            .expect("evaluations")
            .iter()
            .filter_map(|e| e["score"].as_i64())
            .collect();
        assert_eq!(v.len(), 3, "every committee member attested: {s}");
        v.sort_unstable();
        v[1]
    };

    // The agent: paid whole tranches in proportion to its held-out improvement, claimed with
    // the quorum's shares, and the holdback's share after the re-evaluation passed.
    let agent = sub(0, "agent");
    let m = median(&agent);
    assert!(m >= MARGIN, "the agent's improvement {m} beats the margin");
    let tranches = (m * TRANCHES / TARGET).min(TRANCHES) as u64;
    assert!(tranches >= 1, "improvement {m} earns a tranche");
    assert_eq!(
        agent["paid_sat"].as_u64(),
        Some(tranches * TRANCHE_SAT),
        "{tranches} tranches of {TRANCHE_SAT} sat, holdback included: {agent}"
    );
    assert_eq!(
        agent["refunded_sat"].as_u64(),
        Some((TRANCHES as u64 - tranches) * TRANCHE_SAT),
        "the tranches it did not earn went back to the sponsor"
    );
    assert_eq!(rounds[0]["merged"], 1, "the agent's diff leads");

    // The copier: same bytes, later: refused as a copy before any escrow, nothing paid.
    let copier = sub(0, "manual");
    assert_eq!(copier["paid_sat"].as_u64(), Some(0));
    assert!(
        copier["evaluations"]
            .as_array()
            .is_none_or(|e| e.iter().all(|x| x["score"].is_null())),
        "nobody evaluated the copy: {copier}"
    );

    // The follow-up, measured against the new leader: below the margin, not paid, not merged.
    let follow = sub(1, "follow-up");
    let f = median(&follow);
    assert!(
        f < MARGIN,
        "the follow-up's improvement {f} is below the margin"
    );
    assert_eq!(follow["paid_sat"].as_u64(), Some(0));
    assert_eq!(rounds[1]["merged"], 0);
    let loss = |r: usize| rounds[r]["heldout_loss"].as_f64().expect("loss");
    assert_eq!(loss(0), loss(1), "round 2 kept the leader's tree");

    // The sponsor's balance moved by exactly what the agent claimed, plus the tolls.
    let node = |name: &str| -> Value {
        report["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .expect("node")
    };
    assert_eq!(
        node("peer-0")["received_msat"].as_u64(),
        Some(tranches * TRANCHE_SAT * 1000),
        "the agent received its award over Lightning"
    );

    // An outsider buys the leader's tree from the sponsor's gateway over L402 (curl, paid from
    // another node's wallet): a 64 KiB tree blob whose BLAKE3 is the round's checkpoint.
    let gw = &report["gateway"];
    assert_eq!(gw["missing_credential"], 402, "{gw}");
    assert_eq!(gw["paid_l402"], 200);
    assert_eq!(gw["bytes"], 65_536);
    assert_eq!(gw["blake3_matches"], true);
    assert_eq!(gw["checkpoint"], rounds[1]["checkpoint"]);

    // The board, in headless Chromium.
    let board = &report["board"];
    assert!(
        board["chromium"].is_string(),
        "a Chromium is installed (.ci/run installs Debian's): {board}"
    );
    let png = std::fs::read(board["screenshot"].as_str().expect("screenshot")).expect("png");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dom = board["dom"].as_str().expect("DOM text");
    for want in [
        "l402 bounty board",
        "Lower the held-out loss of the tiny byte-GPT",
        "Leaderboard: demo",
        &format!("awarded {tranches} tranche(s)"),
        "copy of",
        "below the margin: not paid",
        "Exploit log",
    ] {
        assert!(dom.contains(want), "the board shows {want:?}");
    }
    // The same from the command line: `bounty list` (from the relay) and `bounty show`.
    let list = board["cli_list"].as_str().expect("bounty list");
    assert!(list.contains("demo") && list.contains("40000"), "{list}");
    let show = board["cli_show"].as_str().expect("bounty show");
    for want in ["demo:", "awarded", "below the margin", "copy of"] {
        assert!(show.contains(want), "`bounty show` prints {want:?}: {show}");
    }
    let b = &board["json"]["sponsored"]["demo"];
    assert_eq!(b["leaderboard"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        b["awarded_sat"].as_u64(),
        Some(tranches * TRANCHE_SAT),
        "the board's award matches the payment"
    );
}
