//! The README's first command, as CI runs it: `l402-node demo` for 2 rounds. Every node is its
//! own `l402-node up` process (regtest chain and relay in the demo process, loopback only).
//! One peer submits a zero update, another a copy of an honest peer's blob (handed over as a
//! leak would). The checks read what each node's own ldk-node reports through its gateway.

use std::process::Command;

use serde_json::Value;

#[test]
fn demo_pays_honest_peers_refunds_the_free_rider_and_the_copier_and_the_model_improves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_l402-node"))
        .args([
            "demo",
            "--rounds",
            "2",
            "--copiers",
            "1",
            "--kill-peer",
            "--kill-coordinator",
        ])
        .args(["--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed: {stderr}\nthe nodes' last warnings:\n{}",
        last_warnings(dir.path())
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    // Shown only if an assertion below fails (libtest captures it otherwise).
    eprintln!("{stderr}\n{report:#}");
    assert!(dir.path().join("report.json").exists());
    for c in ["heldout_loss", "sats_per_node"] {
        let svg = std::fs::read_to_string(report["charts"][c].as_str().expect("chart path"))
            .expect("chart written");
        assert!(svg.starts_with("<svg"), "{c}");
    }

    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2);
    for r in rounds {
        let subs = r["submissions"].as_array().expect("submissions");
        assert_eq!(
            subs.len(),
            4,
            "every peer submitted in round {}",
            r["round"]
        );
        for s in subs {
            let (paid, refunded) = (s["paid_sat"].as_u64(), s["refunded_sat"].as_u64());
            let killed = report["restarts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["node"] == s["peer"] && k["round"] == r["round"]);
            // What the validators attested (the copy is refused before any escrow, so nobody
            // evaluates it).
            let verdicts: Vec<&str> = s["evaluations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["verdict"].as_str())
                .collect();
            match s["behaviour"].as_str() {
                Some("honest") => assert!(
                    verdicts.iter().filter(|v| **v == "accept").count() >= 2,
                    "{s}"
                ),
                Some("free-rider") => assert!(
                    verdicts.iter().filter(|v| v.starts_with("reject")).count() >= 2,
                    "{s}"
                ),
                _ => {}
            }
            match s["behaviour"].as_str() {
                // Killed while its HTLCs were held: it claims after the restart, or the
                // escrow refunds; either way nothing is left held (checked below).
                Some("honest") if killed => {
                    assert!(paid.unwrap_or(0) + refunded.unwrap_or(0) > 0, "{s}")
                }
                Some("honest") => {
                    assert!(
                        paid > Some(0) && refunded == Some(0),
                        "honest peer unpaid: {s}"
                    )
                }
                Some("free-rider") => {
                    assert!(
                        paid == Some(0) && refunded > Some(0),
                        "free-rider paid: {s}"
                    )
                }
                // The copy names a blob already submitted: refused before any escrow.
                Some("copier") => assert_eq!(paid, Some(0), "copier paid: {s}"),
                other => panic!("unexpected behaviour {other:?}"),
            }
        }
        assert_eq!(
            r["merged"].as_u64(),
            Some(2),
            "exactly the honest updates merged"
        );
    }
    // Opt-in: every committee is drawn from the nodes that announced the validator role; no
    // peer or coordinator (which never opted in) is ever in one.
    let key_of = |kind: &str| -> Vec<String> {
        report["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| (n["kind"] == "validator") == (kind == "validator"))
            .filter_map(|n| n["nostr"].as_str().map(str::to_owned))
            .collect()
    };
    let (opted_in, others) = (key_of("validator"), key_of("other"));
    let committees = report["committees"].as_array().expect("committees");
    assert_eq!(committees.len(), 2, "{committees:?}");
    for c in committees {
        let members: Vec<&str> = c["committee"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(members.len(), 3, "{c}");
        assert!(
            members.iter().all(|m| opted_in.iter().any(|o| o == m)),
            "{c}"
        );
        assert!(
            members.iter().all(|m| !others.iter().any(|o| o == m)),
            "{c}"
        );
    }
    // Held-out loss went down.
    let genesis = report["genesis_heldout_loss"]
        .as_f64()
        .expect("genesis loss");
    let last = rounds[1]["heldout_loss"].as_f64().expect("loss");
    assert!(last < genesis, "held-out loss {genesis} -> {last}");
    // Every hold invoice on every node ended claimed or failed back.
    for n in report["nodes"].as_array().expect("nodes") {
        for h in n["holds"].as_array().into_iter().flatten() {
            assert_eq!(h["terminal"], Value::Bool(true), "{}: {h}", n["name"]);
        }
    }
    let delta = |name: &str| {
        report["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["name"] == name))
            .and_then(|n| n["delta_sat"].as_i64())
            .expect("node")
    };
    assert!(delta("peer-0") > 0 && delta("peer-1") > 0);
    // Validators whose scores agreed with the quorum were paid their fees. (Read from the
    // payments their ldk-node received: a few sats are below the dust limit, so ldk-node's
    // channel balance, which counts what a force-close could claim, does not show them.)
    for n in report["nodes"].as_array().expect("nodes") {
        if n["kind"] != "validator" {
            continue;
        }
        let fees: u64 = n["payments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["direction"] == "received" && p["status"] == "succeeded")
            .filter_map(|p| p["amount_msat"].as_u64())
            .sum();
        assert!(fees > 0, "{} earned no fee", n["name"]);
    }
    // Every payment a node sent shows the BOLT11 it paid, and nothing is left pending.
    for n in report["nodes"].as_array().expect("nodes") {
        for p in n["payments"].as_array().into_iter().flatten() {
            if p["direction"] == "sent" {
                assert!(
                    p["bolt11"]
                        .as_str()
                        .is_some_and(|b| b.starts_with("lnbcrt")),
                    "{p}"
                );
            }
            assert_ne!(p["status"], "pending", "{}: {p}", n["name"]);
        }
    }
    assert!(
        delta("peer-2") <= 0 && delta("peer-3") <= 0,
        "attackers earned nothing"
    );
    // Both crashes happened, and every balance reconciles: what the coordinator paid is what
    // the peers received, tokens included (direct channels: no routing fees).
    let restarts = report["restarts"].as_array().expect("restarts");
    assert_eq!(restarts.len(), 2, "{restarts:?}");
    let total: i64 = report["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["delta_sat"].as_i64())
        .sum();
    // (ldk-node's channel balances exclude the commitment fee the opener pays, which moves by a
    // few hundred sats while an HTLC is in flight; everything is settled here, so this is 0 in
    // practice — the bound only keeps fee rounding from failing the run.)
    assert!(total.abs() <= 1_000, "sats appeared or vanished: {total}");
    // The L402 gateway: bad or missing credentials never get the checkpoint; paying the
    // invoice from another node's wallet and retrying does, in both header forms.
    let g = &report["gateway"];
    assert_eq!(g["missing_credential"], 402, "{g}");
    assert!(
        matches!(g["malformed_credential"].as_u64(), Some(401 | 402)),
        "{g}"
    );
    assert_eq!(g["wrong_preimage"], 401, "{g}");
    assert_eq!(g["paid_l402"], 200, "{g}");
    assert_eq!(g["paid_lsat_token_form"], 200, "{g}");
    assert_eq!(g["blake3_matches"], true, "{g}");
    // Every validator recomputed each published checkpoint from its merged list.
    let checks = report["checkpoint_checks"].as_array().expect("checks");
    assert!(
        checks.len() >= 2 * 2,
        "each round checked by at least k validators: {checks:?}"
    );
    assert!(
        checks.iter().all(|c| c["ok"] == Value::Bool(true)),
        "{checks:?}"
    );
}

/// The last warnings and errors of each node's log under `dir` (the data dir goes with the
/// tempdir, so a failed CI run shows them here or nowhere).
fn last_warnings(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut logs: Vec<_> = entries
        .flatten()
        .map(|e| e.path().join("node.log"))
        .filter(|p| p.exists())
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("no route"))
            .collect();
        out.push_str(&format!("== {}\n", log.display()));
        for l in &lines[lines.len().saturating_sub(12)..] {
            out.push_str(&l.chars().take(300).collect::<String>());
            out.push('\n');
        }
    }
    out
}
