//! Checks the test vectors in `specs/vectors/sparseloco-v1.json` (spec: specs/L2T-02-wire.md).
//!
//! Regenerate them (after a deliberate format change only) with
//! `L402_BLESS_VECTORS=1 cargo test -p l402-protocol --test vectors`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use l402_protocol::sparseloco::{decode, encode, CodecParams};
use l402_protocol::wire::{self, BlobId, NamedTensor, PseudoGradient};
use serde_json::{json, Value};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../specs/vectors/sparseloco-v1.json"
);

/// The generator the vector file names: exact in every language with u64 arithmetic.
fn lcg_values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 40) as f32) / 16_777_216.0 - 0.5) * scale
        })
        .collect()
}

struct Spec {
    name: &'static str,
    run: &'static str,
    round: u64,
    tensors: Vec<(&'static str, Vec<u64>, u64, f32)>,
}

fn specs() -> Vec<Spec> {
    vec![
        Spec {
            name: "bias-10",
            run: "spec-run",
            round: 7,
            tensors: vec![("bias", vec![10], 1, 1.0)],
        },
        Spec {
            name: "prime-67",
            run: "spec-run",
            round: 8,
            tensors: vec![("odd", vec![67], 2, 0.5)],
        },
        Spec {
            name: "ragged-3x67",
            run: "spec-run",
            round: 9,
            tensors: vec![("ragged", vec![3, 67], 3, 2.0)],
        },
        Spec {
            name: "two-tensors-128x64",
            run: "r",
            round: 1,
            tensors: vec![
                ("a.weight", vec![128, 64], 4, 0.01),
                ("b.bias", vec![64], 5, 0.01),
            ],
        },
    ]
}

fn build(spec: &Spec) -> (PseudoGradient, BTreeMap<String, Vec<f32>>) {
    let p = CodecParams::default();
    let mut decoded = BTreeMap::new();
    let tensors = spec
        .tensors
        .iter()
        .map(|(name, shape, seed, scale)| {
            let n = shape.iter().product::<u64>() as usize;
            let t = encode(&lcg_values(*seed, n, *scale), shape, &p).expect("vector input encodes");
            decoded.insert(name.to_string(), decode(&t));
            NamedTensor {
                name: name.to_string(),
                tensor: t,
                extensions: Default::default(),
            }
        })
        .collect();
    (
        PseudoGradient::new(spec.run, spec.round, BlobId([0; 32]), p, tensors),
        decoded,
    )
}

/// Hostile variants of the first vector, with the error a decoder must give.
fn rejects(valid: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let len = u32::from_be_bytes(valid[4..8].try_into().expect("4 bytes")) as usize;
    let head: BTreeMap<serde_cbor::Value, serde_cbor::Value> =
        serde_cbor::from_slice(&valid[8..8 + len]).expect("valid header");
    let (_, payload) = wire::open(valid).expect("valid blob");
    let reseal = |h: &BTreeMap<serde_cbor::Value, serde_cbor::Value>, payload: &[u8]| {
        let h = serde_cbor::to_vec(h).expect("cbor");
        let mut out = wire::MAGIC.to_vec();
        out.extend_from_slice(&(h.len() as u32).to_be_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&zstd::bulk::compress(payload, wire::ZSTD_LEVEL).expect("zstd"));
        out
    };
    let int = |i: i128| serde_cbor::Value::Integer(i);
    let mut v2 = head.clone();
    v2.insert(int(0), int(2));
    let mut even = head.clone();
    even.insert(int(12), int(0));
    let mut dup = payload.clone();
    dup[0..3].copy_from_slice(&[1, 0x10, 0]); // indices (1, 1)
    vec![
        ("truncated", valid[..valid.len() - 1].to_vec()),
        ("version-2", reseal(&v2, &payload)),
        ("unknown-even-key", reseal(&even, &payload)),
        ("duplicate-index", reseal(&head, &dup)),
    ]
}

#[test]
fn vectors_match_spec() {
    let mut produced = Vec::new();
    let mut produced_rejects = Vec::new();
    for spec in specs() {
        let (g, decoded) = build(&spec);
        let blob = g.to_blob().expect("encodes");
        let back = PseudoGradient::from_blob(&blob).expect("decodes");
        assert_eq!(back, g);
        let tensors: Vec<Value> = spec
            .tensors
            .iter()
            .map(|(n, s, seed, scale)| json!({"name": n, "shape": s, "seed": seed, "scale": scale}))
            .collect();
        produced.push(json!({
            "name": spec.name,
            "run": spec.run,
            "round": spec.round,
            "base_checkpoint": hex::encode([0u8; 32]),
            "tensors": tensors,
            "blob_hex": hex::encode(&blob),
            "blob_len": blob.len(),
            "blake3": BlobId::of(&blob).to_hex(),
            "decoded": decoded,
        }));
        if spec.name == "bias-10" {
            for (name, bad) in rejects(&blob) {
                let err = PseudoGradient::from_blob(&bad).expect_err("hostile vector rejected");
                produced_rejects.push(json!({"name": name, "blob_hex": hex::encode(&bad), "error": format!("{err:?}")}));
            }
        }
    }
    let doc = json!({
        "description": "SparseLoCo pseudo-gradient wire format v1 (specs/L2T-02-wire.md, specs/L2T-06-sparseloco.md)",
        "generator": "inputs: s = s * 6364136223846793005 + 1442695040888963407 (wrapping u64, starting from seed); x = ((s >> 40) / 2^24 - 0.5) * scale, as f32, row-major",
        "codec": {"target_chunk": 64, "topk": 64, "bins": 4, "range_sigmas": 6},
        "vectors": produced,
        "rejects": produced_rejects,
    });
    if std::env::var_os("L402_BLESS_VECTORS").is_some() {
        std::fs::write(
            PATH,
            serde_json::to_string_pretty(&doc).expect("json") + "\n",
        )
        .expect("write vectors");
        return;
    }
    let text = std::fs::read_to_string(PATH).expect("vector file present");
    let want: Value = serde_json::from_str(&text).expect("vector file is JSON");
    for (w, g) in want["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .zip(doc["vectors"].as_array().expect("vectors"))
    {
        // Compare field by field: JSON floats are compared after parsing back to f32.
        for field in [
            "name",
            "run",
            "round",
            "base_checkpoint",
            "blob_hex",
            "blob_len",
            "blake3",
        ] {
            assert_eq!(
                w[field], g[field],
                "vector {}: {field} differs from the spec",
                w["name"]
            );
        }
        let floats = |v: &Value| -> BTreeMap<String, Vec<f32>> {
            serde_json::from_value(v.clone()).expect("floats")
        };
        assert_eq!(
            floats(&w["decoded"]),
            floats(&g["decoded"]),
            "vector {}: decoded values",
            w["name"]
        );
        // And the committed bytes decode, independently of our encoder.
        let blob = hex::decode(w["blob_hex"].as_str().expect("hex")).expect("hex");
        assert_eq!(
            BlobId::of(&blob).to_hex(),
            w["blake3"].as_str().expect("id")
        );
        let g = PseudoGradient::from_blob(&blob).expect("committed vector decodes");
        for t in &g.tensors {
            let want: Vec<f32> =
                serde_json::from_value(w["decoded"][&t.name].clone()).expect("floats");
            assert_eq!(decode(&t.tensor), want, "decoded values of {}", t.name);
        }
    }
    assert_eq!(
        want["vectors"].as_array().map(Vec::len),
        Some(specs().len())
    );
    for r in want["rejects"].as_array().expect("rejects") {
        let blob = hex::decode(r["blob_hex"].as_str().expect("hex")).expect("hex");
        let err = PseudoGradient::from_blob(&blob).expect_err("hostile vector rejected");
        assert_eq!(
            format!("{err:?}"),
            r["error"].as_str().expect("error"),
            "reject vector {}",
            r["name"]
        );
    }
    assert_eq!(want["rejects"], doc["rejects"]);
}
