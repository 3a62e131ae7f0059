//! Criterion benchmark of the SparseLoCo codec on a 100M-element pseudo-gradient, with a NumPy
//! implementation of the same algorithm as the baseline, run in the same benchmark.
//!
//! Run it with `bash protocol/benches/codec.sh` (installs NumPy in a private virtualenv). Without
//! NumPy (`cargo bench -p l402-protocol --bench codec`) the baseline is skipped with a note.
//! Throughput is MB/s of fp32 input; everything runs on one thread.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use l402_protocol::sparseloco::{decode_into, encode, CodecParams, EncodedTensor};
use l402_protocol::wire::{BlobId, NamedTensor, PseudoGradient};

/// 24 × 2048 × 2048 = 100 663 296 elements (≈ 100 M, 403 MB of fp32).
const COUNT: usize = 24;
const ROWS: usize = 2048;
const COLS: usize = 2048;

/// Gaussian-like data (Irwin–Hall sum of 4 uniforms from an LCG), as gradients roughly are.
fn data() -> Vec<f32> {
    let mut s = 0x5EED_u64;
    let mut u = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32) / 16_777_216.0
    };
    (0..COUNT * ROWS * COLS)
        .map(|_| (u() + u() + u() + u() - 2.0) * 1e-3)
        .collect()
}

fn encode_all(values: &[f32], p: &CodecParams) -> Vec<EncodedTensor> {
    values
        .chunks_exact(ROWS * COLS)
        .map(|t| encode(t, &[ROWS as u64, COLS as u64], p).expect("bench data encodes"))
        .collect()
}

fn numpy_python() -> Option<String> {
    let py = std::env::var("L402_NUMPY_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then_some(py)
}

fn numpy_seconds(py: &str, file: &PathBuf, mode: &str, iters: u64) -> Duration {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/numpy_codec.py");
    let out = Command::new(py)
        .arg(script)
        .arg(file)
        .args([
            ROWS.to_string(),
            COLS.to_string(),
            COUNT.to_string(),
            mode.to_string(),
            iters.to_string(),
        ])
        .output()
        .expect("run numpy baseline");
    assert!(
        out.status.success(),
        "numpy baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds");
    Duration::from_secs_f64(secs)
}

fn bench(c: &mut Criterion) {
    let values = data();
    let p = CodecParams::default();
    let bytes = (values.len() * 4) as u64;
    let encoded = encode_all(&values, &p);
    let gradient = PseudoGradient::new(
        "bench",
        1,
        BlobId([0; 32]),
        p,
        encoded
            .iter()
            .enumerate()
            .map(|(i, t)| NamedTensor {
                name: format!("layer.{i:02}"),
                tensor: t.clone(),
                extensions: Default::default(),
            })
            .collect(),
    );
    let blob = gradient.to_blob().expect("blob");
    eprintln!(
        "pseudo-gradient: {} elements, {} bytes fp32, blob {} bytes, ratio {:.2}x",
        values.len(),
        bytes,
        blob.len(),
        bytes as f64 / blob.len() as f64
    );

    let mut g = c.benchmark_group("sparseloco-100M");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(bytes));
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    g.bench_function(BenchmarkId::new("encode", "rust"), |b| {
        b.iter(|| encode_all(&values, &p))
    });
    g.bench_function(BenchmarkId::new("encode+wire", "rust"), |b| {
        b.iter(|| {
            let mut g2 = gradient.clone();
            for (nt, t) in g2.tensors.iter_mut().zip(encode_all(&values, &p)) {
                nt.tensor = t;
            }
            g2.to_blob().expect("blob")
        })
    });
    let mut dense = vec![0f32; values.len()];
    g.bench_function(BenchmarkId::new("decode", "rust"), |b| {
        b.iter(|| {
            for (t, out) in encoded.iter().zip(dense.chunks_exact_mut(ROWS * COLS)) {
                decode_into(t, out).expect("decode");
            }
        })
    });
    g.bench_function(BenchmarkId::new("wire+decode", "rust"), |b| {
        b.iter(|| {
            let back = PseudoGradient::from_blob(&blob).expect("decode blob");
            for (t, out) in back.tensors.iter().zip(dense.chunks_exact_mut(ROWS * COLS)) {
                decode_into(&t.tensor, out).expect("decode");
            }
        })
    });
    match numpy_python() {
        Some(py) => {
            let file =
                std::env::temp_dir().join(format!("l402-codec-bench-{}.f32", std::process::id()));
            let mut f = std::fs::File::create(&file).expect("temp file");
            for v in &values {
                f.write_all(&v.to_le_bytes()).expect("write");
            }
            drop(f);
            g.measurement_time(Duration::from_secs(60));
            g.bench_function(BenchmarkId::new("encode", "numpy"), |b| {
                b.iter_custom(|iters| numpy_seconds(&py, &file, "encode", iters))
            });
            g.bench_function(BenchmarkId::new("encode", "numpy-chunk-loop"), |b| {
                b.iter_custom(|iters| numpy_seconds(&py, &file, "encode-loop", iters))
            });
            g.bench_function(BenchmarkId::new("decode", "numpy"), |b| {
                b.iter_custom(|iters| numpy_seconds(&py, &file, "decode", iters))
            });
            let _ = std::fs::remove_file(&file);
        }
        None => eprintln!("NumPy not found: baseline skipped (run benches/codec.sh to install it)"),
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
