//! Training and validation benchmarks, each with a baseline measured in the same run.
//!
//! ```text
//! cargo bench -p l402-node --bench train --profile dev      # ~4 minutes on 2 loaded cores
//! L402_BENCH_ROUNDS=5 cargo bench -p l402-node --bench train --profile dev
//! ```
//!
//! `--profile dev` reuses the workspace's test build (dependencies at opt-level 3, our crates at
//! opt-level 1), so no separate release build of the whole dependency tree is needed; the codec
//! (our code, opt-level 1) is therefore measured pessimistically. Threads are pinned with
//! `RAYON_NUM_THREADS=1` (one core per peer) unless the variable is already set.
//!
//! 1. Inner-loop tokens/s; baseline: forward-only tokens/s of the same model and batches.
//! 2. Validation time per submission with the shared "before" pass; baseline: without it.
//! 3. SparseLoCo codec time (EF + encode + blob, parse + decode, aggregation) as a share of a
//!    peer's round time.
//! 4. Compute utilisation of a peer in a loopback swarm (two peers and a validator-aggregator
//!    on 127.0.0.1 TCP, real blobs and checkpoints), without and with the validator preparing
//!    the assigned batches while peers train; baseline: the same peer training alone.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use candle_core::Device;
use indicatif::ProgressBar;
use l402_node::train::codec::{aggregate_submissions, decode_submission};
use l402_node::train::*;
use l402_protocol::training::{EvalSeed, ModelSpec, ScoringPolicy, TrainingSpec};
use l402_protocol::wire::PseudoGradient;

const RUN: [u8; 32] = [7; 32];

fn key(i: u8) -> [u8; 32] {
    [10 + i; 32]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Before any candle call, so rayon's global pool and gemm see it.
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let rounds: u64 = std::env::var("L402_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let spec = ModelSpec::tiny();
    let training = TrainingSpec::default();
    println!(
        "model {} params, H={}, batch {}x{}, RAYON_NUM_THREADS={}",
        spec.param_count(),
        training.inner_steps,
        training.batch,
        spec.context,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default()
    );
    inner_loop_and_codec(&spec, &training, rounds)?;
    validation(&spec, &training)?;
    swarm(&spec, &training, rounds, false)?;
    swarm(&spec, &training, rounds, true)?;
    Ok(())
}

/// Benchmarks 1 and 3.
fn inner_loop_and_codec(
    spec: &ModelSpec,
    training: &TrainingSpec,
    rounds: u64,
) -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let corpus = Corpus::new(&RUN);
    let mut ckpt = Checkpoint::init(spec, &[1; 32])?;
    let mut trainer = InnerTrainer::new(RUN, key(0), &ckpt, training.clone(), &dev)?;
    let mut codec = PeerCodec::new(spec, training)?;
    let (mut train_s, mut tokens, mut round_s) = (0.0, 0usize, 0.0);
    let (mut enc_s, mut dec_s, mut agg_s) = (0.0, 0.0, 0.0);
    let mut blob_bytes = 0;
    for round in 0..rounds {
        let id = ckpt.id()?;
        let t_round = Instant::now();
        let (delta, report) = trainer.inner_loop(&ckpt, round, &corpus, &ProgressBar::hidden())?;
        let t = Instant::now();
        let blob = codec.compress(&delta, &RUN, round, id)?.to_blob()?;
        enc_s += secs(t.elapsed());
        let t = Instant::now();
        let v = Validator::new(
            RUN,
            ckpt.clone(),
            training.clone(),
            ScoringPolicy::default(),
            &dev,
        )?;
        let ctx = v.context(round);
        let setup = secs(t.elapsed());
        let t = Instant::now();
        let (g, _) = decode_submission(&blob, &ctx)?;
        dec_s += secs(t.elapsed());
        let t = Instant::now();
        let (next, _) = aggregate_submissions(&ckpt, &[&g], training.outer_lr)?;
        agg_s += secs(t.elapsed());
        round_s += secs(t_round.elapsed()) - setup;
        train_s += secs(report.train_time);
        tokens += report.tokens;
        blob_bytes = blob.len();
        ckpt = next;
    }
    // Baseline: forward passes only, over the same batches.
    let gpt = Gpt::new(spec, &dev)?;
    let w = ckpt.weights(&dev)?;
    let shard = trainer.shard(&corpus, 0);
    let batches: Vec<Batch> = (0..training.shard_batches)
        .map(|i| trainer.batch(&corpus, &shard, i))
        .collect();
    let t = Instant::now();
    let mut fwd_tokens = 0;
    for step in 0..training.inner_steps {
        let b = &batches[(step % training.shard_batches) as usize];
        gpt.loss_value(&w, b)?;
        fwd_tokens += b.tokens();
    }
    let fwd_s = secs(t.elapsed());
    let train_tps = tokens as f64 / train_s;
    let fwd_tps = fwd_tokens as f64 / fwd_s;
    println!(
        "\n## 1. Inner loop ({rounds} rounds x {} steps)",
        training.inner_steps
    );
    println!("train (forward+backward+AdamW): {train_tps:.0} tokens/s");
    println!("baseline forward only:          {fwd_tps:.0} tokens/s");
    println!("ratio train/forward:            {:.2}", train_tps / fwd_tps);
    let codec_s = enc_s + dec_s + agg_s;
    println!("\n## 3. Codec share of a peer's round ({rounds} rounds)");
    println!(
        "round (inner loop + codec + outer step): {:.3} s per round",
        round_s / rounds as f64
    );
    println!(
        "codec: EF+encode+blob {:.2} ms, parse+decode {:.2} ms, aggregate+outer step {:.2} ms per round",
        1e3 * enc_s / rounds as f64,
        1e3 * dec_s / rounds as f64,
        1e3 * agg_s / rounds as f64
    );
    println!(
        "codec share of round time: {:.3} %  (goal < 2 %)",
        100.0 * codec_s / round_s
    );
    let dense = spec.param_count() * 4;
    println!(
        "blob {blob_bytes} B vs dense f32 {dense} B: {:.1}x smaller",
        dense as f64 / blob_bytes as f64
    );
    Ok(())
}

/// Benchmark 2.
fn validation(spec: &ModelSpec, training: &TrainingSpec) -> anyhow::Result<()> {
    const SUBMISSIONS: usize = 4;
    let dev = Device::Cpu;
    let corpus = Corpus::new(&RUN);
    let ckpt = Checkpoint::init(spec, &[1; 32])?;
    let id = ckpt.id()?;
    let mut blobs = Vec::new();
    for i in 0..SUBMISSIONS as u8 {
        let mut t = InnerTrainer::new(
            RUN,
            key(i),
            &ckpt,
            TrainingSpec {
                inner_steps: 4,
                ..training.clone()
            },
            &dev,
        )?;
        let (delta, _) = t.inner_loop(&ckpt, 0, &corpus, &ProgressBar::hidden())?;
        blobs.push(
            PeerCodec::new(spec, training)?
                .compress(&delta, &RUN, 0, id)?
                .to_blob()?,
        );
    }
    let v = Validator::new(RUN, ckpt, training.clone(), ScoringPolicy::default(), &dev)?;
    let seed = EvalSeed([3; 32]);
    let reps = 3;
    let mut shared = f64::MAX;
    let mut alone = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let before = v.before_pass(seed)?;
        for (i, b) in blobs.iter().enumerate() {
            v.evaluate_blob(&before, &key(i as u8), 0, b)?;
        }
        shared = shared.min(secs(t.elapsed()) / SUBMISSIONS as f64);
        let t = Instant::now();
        for (i, b) in blobs.iter().enumerate() {
            let ctx = v.context(0);
            let (_, dense) = decode_submission(b, &ctx)?;
            v.evaluate_alone(seed, &key(i as u8), 0, &dense)?;
        }
        alone = alone.min(secs(t.elapsed()) / SUBMISSIONS as f64);
    }
    println!(
        "\n## 2. Validation per submission ({SUBMISSIONS} submissions per round, best of {reps})"
    );
    println!("with the shared before pass:       {:.1} ms", 1e3 * shared);
    println!("baseline without (before per sub): {:.1} ms", 1e3 * alone);
    println!("speed-up: {:.2}x", alone / shared);
    Ok(())
}

fn send(s: &mut TcpStream, kind: u8, round: u64, body: &[u8]) -> std::io::Result<()> {
    let mut head = [0u8; 13];
    head[0] = kind;
    head[1..9].copy_from_slice(&round.to_le_bytes());
    head[9..13].copy_from_slice(&(body.len() as u32).to_le_bytes());
    s.write_all(&head)?;
    s.write_all(body)
}

/// Reads one frame, refusing bodies above 64 MiB before allocating.
fn recv(s: &mut TcpStream) -> std::io::Result<(u8, u64, Vec<u8>)> {
    let mut head = [0u8; 13];
    s.read_exact(&mut head)?;
    let round = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
    let len = u32::from_le_bytes(head[9..13].try_into().unwrap_or_default()) as usize;
    if len > 64 << 20 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((head[0], round, body))
}

const CHECKPOINT: u8 = 1;
const SUBMISSION: u8 = 2;
const DONE: u8 = 3;
const HELLO: u8 = 4;

/// One swarm peer: receive checkpoint, verify, train, compress, submit; repeat.
fn swarm_peer(
    addr: std::net::SocketAddr,
    i: u8,
    spec: ModelSpec,
    training: TrainingSpec,
) -> anyhow::Result<(f64, f64)> {
    let dev = Device::Cpu;
    let corpus = Corpus::new(&RUN);
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    send(&mut s, HELLO, u64::from(i), &[])?;
    let mut trainer: Option<InnerTrainer> = None;
    let mut codec = PeerCodec::new(&spec, &training)?;
    let (mut train_s, mut wall_s) = (0.0, 0.0);
    let mut last_ckpt_at: Option<Instant> = None;
    loop {
        let (kind, round, body) = recv(&mut s)?;
        let now = Instant::now();
        if let Some(t) = last_ckpt_at {
            wall_s += secs(now - t);
        }
        if kind == DONE {
            return Ok((train_s, wall_s));
        }
        anyhow::ensure!(kind == CHECKPOINT, "unexpected frame {kind}");
        last_ckpt_at = Some(now);
        let ckpt = Checkpoint::from_safetensors(&body, Some(spec.clone()))?;
        let id = CheckpointId(*blake3::hash(&body).as_bytes());
        let t = trainer.get_or_insert(InnerTrainer::new(
            RUN,
            key(i),
            &ckpt,
            training.clone(),
            &dev,
        )?);
        let (delta, report) = t.inner_loop(&ckpt, round, &corpus, &ProgressBar::hidden())?;
        train_s += secs(report.train_time);
        let blob = codec.compress(&delta, &RUN, round, id)?.to_blob()?;
        send(&mut s, SUBMISSION, round, &blob)?;
    }
}

/// Benchmark 4.
fn swarm(
    spec: &ModelSpec,
    training: &TrainingSpec,
    rounds: u64,
    prepare: bool,
) -> anyhow::Result<()> {
    const PEERS: u8 = 2;
    let dev = Device::Cpu;
    // Baseline: the same peer training alone (no swarm), H steps per round.
    let corpus = Corpus::new(&RUN);
    let ckpt0 = Checkpoint::init(spec, &[1; 32])?;
    let mut alone = InnerTrainer::new(RUN, key(0), &ckpt0, training.clone(), &dev)?;
    let t = Instant::now();
    let (_, rep) = alone.inner_loop(&ckpt0, 0, &corpus, &ProgressBar::hidden())?;
    let alone_util = secs(rep.train_time) / secs(t.elapsed());
    let alone_train = secs(rep.train_time);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let peers: Vec<_> = (0..PEERS)
        .map(|i| {
            let (spec, training) = (spec.clone(), training.clone());
            std::thread::spawn(move || swarm_peer(addr, i, spec, training))
        })
        .collect();
    // Each peer says which one it is; connections are kept in peer order.
    let mut conns: Vec<Option<TcpStream>> = (0..PEERS).map(|_| None).collect();
    for _ in 0..PEERS {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let (kind, i, _) = recv(&mut s)?;
        anyhow::ensure!(kind == HELLO && i < u64::from(PEERS), "bad hello");
        conns[i as usize] = Some(s);
    }
    let mut conns: Vec<TcpStream> = conns
        .into_iter()
        .map(|c| c.ok_or_else(|| anyhow::anyhow!("peer missing")))
        .collect::<Result<_, _>>()?;
    // One reader thread per connection feeds a channel, so submissions are validated in
    // arrival order.
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, c) in conns.iter().enumerate() {
        let mut r = c.try_clone()?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            while let Ok(frame) = recv(&mut r) {
                if tx.send((i, frame)).is_err() {
                    break;
                }
            }
        });
    }
    let mut ckpt = ckpt0;
    let (mut validate_s, mut idle_rounds) = (0.0, 0.0);
    for round in 0..rounds {
        let bytes = ckpt.to_safetensors()?;
        for c in &mut conns {
            send(c, CHECKPOINT, round, &bytes)?;
        }
        // While peers train, the validator prepares the round (shared before pass).
        let v = Validator::new(
            RUN,
            ckpt.clone(),
            training.clone(),
            ScoringPolicy::default(),
            &dev,
        )?;
        let mut before = v.before_pass(EvalSeed([round as u8; 32]))?;
        if prepare {
            for i in 0..PEERS {
                v.prepare(&mut before, &key(i), round)?;
            }
        }
        let mut passing: Vec<(usize, PseudoGradient)> = Vec::new();
        let mut first_at = None;
        for _ in 0..PEERS {
            let (i, (kind, r, blob)) = rx.recv()?;
            first_at.get_or_insert_with(Instant::now);
            anyhow::ensure!(kind == SUBMISSION && r == round, "bad submission");
            let t = Instant::now();
            let (e, g) = v.evaluate_blob(&before, &key(i as u8), round, &blob)?;
            validate_s += secs(t.elapsed());
            if e.score.passed() {
                passing.push((i, g));
            } else {
                println!("  swarm round {round}: peer {i} failed: {:?}", e.score);
            }
        }
        // Canonical order (by peer) before aggregating.
        passing.sort_by_key(|(i, _)| *i);
        let passing: Vec<PseudoGradient> = passing.into_iter().map(|(_, g)| g).collect();
        let round_start = first_at.unwrap_or_else(Instant::now);
        let refs: Vec<&PseudoGradient> = passing.iter().collect();
        if !refs.is_empty() {
            ckpt = aggregate_submissions(&ckpt, &refs, training.outer_lr)?.0;
        }
        idle_rounds += secs(round_start.elapsed());
        println!("  swarm round {round}: {} of {PEERS} passed", passing.len());
    }
    for c in &mut conns {
        send(c, DONE, rounds, &[])?;
    }
    println!(
        "\n## 4. Compute utilisation in a loopback swarm ({PEERS} peers + 1 validator, {rounds} rounds, assigned batches prepared ahead: {prepare})"
    );
    println!("validator time per round from first submission to new checkpoint: {:.0} ms (of which validation {:.0} ms)", 1e3 * idle_rounds / rounds as f64, 1e3 * validate_s / rounds as f64);
    for (i, p) in peers.into_iter().enumerate() {
        let (train_s, wall_s) = p
            .join()
            .map_err(|_| anyhow::anyhow!("peer thread panicked"))??;
        println!("peer {i}: training {train_s:.2} s of {wall_s:.2} s wall: utilisation {:.1} %  (goal >= 95 %)", 100.0 * train_s / wall_s);
    }
    println!(
        "baseline, the peer alone: {alone_train:.2} s training per round, utilisation {:.1} %",
        100.0 * alone_util
    );
    Ok(())
}
