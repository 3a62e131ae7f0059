//! Real mode as CI runs it (issue 13): `l402-sim run --real sim/scenarios/real-small.toml`, 2
//! rounds of 6 real nodes (a regtest chain and a relay in the sim process; a coordinator, 3
//! validators with k = 2, an honest peer and a Byzantine one rotating through the peer attacks,
//! each its own `l402-sim node up` process with its own ldk-node and iroh endpoint). The
//! assertions read what the nodes themselves reported.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

#[test]
fn real_mode_pays_the_honest_peer_and_every_hold_invoice_ends() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/real-small.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_l402-sim"))
        .args(["run", "--real", scenario, "--json", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    eprintln!("{stderr}\n{report:#}");
    assert!(out.status.success(), "an invariant broke");
    for i in report["invariants"].as_array().unwrap() {
        assert_eq!(i["holds"], Value::Bool(true), "{i}");
    }
    // The figures behind the invariants, asserted directly too.
    let honest = &report["by_behaviour"]["honest"];
    assert_eq!(honest["submitted"], 2);
    assert_eq!(honest["accepted"], 2);
    assert!(honest["paid_sat"].as_u64().unwrap() > 0);
    let attacks: Vec<(&String, &Value)> = report["by_behaviour"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(b, _)| b.starts_with("mixed:"))
        .collect();
    assert_eq!(
        attacks
            .iter()
            .map(|(_, t)| t["submitted"].as_u64().unwrap())
            .sum::<u64>(),
        2,
        "the Byzantine peer submitted in both rounds: {attacks:?}"
    );
    for (b, t) in &attacks {
        assert_eq!(t["paid_sat"], 0, "{b} was paid");
    }
    let holds = report["holds"].as_array().unwrap();
    assert!(holds[0].as_u64().unwrap() > 0);
    assert_eq!(holds[0], holds[1], "a hold invoice did not end");
    for m in report["merges"].as_array().unwrap() {
        assert_eq!(m["merged"], m["attested"]);
        assert!(m["recomputed"].as_u64().unwrap() >= 1);
    }
    assert!(dir.path().join("sim-report.md").exists());
    // The held-out loss fell from the genesis.
    let loss = report["heldout_loss"].as_array().unwrap();
    let (first, last) = (loss[0][1].as_f64().unwrap(), loss[2][1].as_f64().unwrap());
    assert!(last < first, "held-out loss {first} → {last}");
}
