//! `l402-node train`: the whole training round on one machine — peers train and compress,
//! a validator scores, passing updates are aggregated into the next checkpoint — with real
//! candle compute and no networking or payments (those join in the end-to-end round).
//!
//! Spec: specs/L2T-10-training.md

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use l402_protocol::training::{EvalSeed, ModelSpec, ScoringPolicy, TrainingSpec, Verdict};
use l402_protocol::wire::PseudoGradient;

use super::codec::{aggregate_submissions, PeerCodec};
use super::{
    select_device, Checkpoint, CheckpointId, Corpus, DeviceChoice, InnerTrainer, TrainError,
    Validator,
};

/// Arguments of `l402-node train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Number of simulated peers.
    #[arg(long, env = "L402_TRAIN_PEERS", default_value_t = 3)]
    pub peers: u8,
    /// Number of rounds.
    #[arg(long, env = "L402_TRAIN_ROUNDS", default_value_t = 5)]
    pub rounds: u64,
    /// Start from this model directory (model.safetensors + config.json) instead of a fresh tiny model.
    #[arg(long, env = "L402_TRAIN_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// Directory to write each round's checkpoint into (round-N/ and final/).
    #[arg(long, env = "L402_TRAIN_OUT")]
    pub out: Option<PathBuf>,
    /// Device: cpu, auto, cuda[:N] or metal[:N].
    #[arg(long, env = "L402_TRAIN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Seed of the run id, peer keys, initial weights and eval seeds.
    #[arg(long, env = "L402_TRAIN_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Inner AdamW steps per round (H).
    #[arg(long, env = "L402_TRAIN_INNER_STEPS", default_value_t = 30)]
    pub inner_steps: u32,
}

/// What one round produced.
#[derive(Debug, Clone)]
pub struct RoundSummary {
    /// The round.
    pub round: u64,
    /// Checkpoint the round started from.
    pub base: CheckpointId,
    /// Each peer's score value and verdict, in peer order.
    pub scores: Vec<(f32, Verdict)>,
    /// Held-out loss of the round's resulting checkpoint (fixed evaluation seed).
    pub heldout_after: f32,
    /// The resulting checkpoint.
    pub next: CheckpointId,
}

fn derive32(tag: &str, seed: u64, i: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("l402 local train run v1");
    h.update(tag.as_bytes());
    h.update(&seed.to_le_bytes());
    h.update(&i.to_le_bytes());
    *h.finalize().as_bytes()
}

/// Runs `args.rounds` rounds, calling `on_round` after each, and returns the final checkpoint.
pub fn run_local(
    args: &TrainArgs,
    progress: &ProgressBar,
    mut on_round: impl FnMut(&RoundSummary),
) -> Result<Checkpoint, TrainError> {
    let device = select_device(args.device.parse::<DeviceChoice>()?)?;
    let run = derive32("run", args.seed, 0);
    let mut checkpoint = match &args.model_dir {
        Some(dir) => Checkpoint::load_dir(dir)?,
        None => Checkpoint::init(&ModelSpec::tiny(), &derive32("init", args.seed, 0))?,
    };
    let training = TrainingSpec {
        inner_steps: args.inner_steps,
        ..TrainingSpec::default()
    };
    training.validate()?;
    let keys: Vec<[u8; 32]> = (0..args.peers)
        .map(|i| derive32("peer", args.seed, u64::from(i)))
        .collect();
    let corpus = Corpus::new(&run);
    let mut trainers = keys
        .iter()
        .map(|k| InnerTrainer::new(run, *k, &checkpoint, training.clone(), &device))
        .collect::<Result<Vec<_>, _>>()?;
    let mut codecs = keys
        .iter()
        .map(|_| PeerCodec::new(checkpoint.spec(), &training))
        .collect::<Result<Vec<_>, _>>()?;
    let final_seed = EvalSeed(derive32("final eval", args.seed, 0));
    progress.set_length(args.rounds * u64::from(args.peers) * u64::from(training.inner_steps));
    for round in 0..args.rounds {
        let base = checkpoint.id()?;
        let span =
            tracing::info_span!("round", run = %hex::encode(&run[..8]), round, checkpoint = %base);
        let _enter = span.enter();
        let mut blobs = Vec::with_capacity(keys.len());
        for (t, c) in trainers.iter_mut().zip(codecs.iter_mut()) {
            let (delta, _) = t.inner_loop(&checkpoint, round, &corpus, progress)?;
            let blob = c
                .compress(&delta, &run, round, base)?
                .to_blob()
                .map_err(|e| TrainError::Codec(e.to_string()))?;
            blobs.push(blob);
        }
        let validator = Validator::new(
            run,
            checkpoint.clone(),
            training.clone(),
            ScoringPolicy::default(),
            &device,
        )?;
        let before = validator.before_pass(EvalSeed(derive32("eval", args.seed, round)))?;
        let mut scores = Vec::new();
        let mut passing: Vec<PseudoGradient> = Vec::new();
        for (key, blob) in keys.iter().zip(&blobs) {
            let (e, g) = validator.evaluate_blob(&before, key, round, blob)?;
            tracing::info!(peer = %hex::encode(&key[..8]), blob = %blake3::hash(blob), score = e.score.value, verdict = ?e.score.verdict, "scored");
            scores.push((e.score.value, e.score.verdict));
            if e.score.passed() {
                passing.push(g);
            }
        }
        let refs: Vec<&PseudoGradient> = passing.iter().collect();
        if !refs.is_empty() {
            checkpoint = aggregate_submissions(&checkpoint, &refs, training.outer_lr)?.0;
        }
        if let Some(out) = &args.out {
            checkpoint.save_dir(&out.join(format!("round-{round}")))?;
        }
        let heldout_after = Validator::new(
            run,
            checkpoint.clone(),
            training.clone(),
            ScoringPolicy::default(),
            &device,
        )?
        .before_pass(final_seed)?
        .heldout_loss;
        let summary = RoundSummary {
            round,
            base,
            scores,
            heldout_after,
            next: checkpoint.id()?,
        };
        tracing::info!(next = %summary.next, heldout = heldout_after, merged = refs.len(), "round done");
        on_round(&summary);
    }
    if let Some(out) = &args.out {
        checkpoint.save_dir(&out.join("final"))?;
    }
    Ok(checkpoint)
}

/// The `train` subcommand: runs [`run_local`] with a progress bar and prints one line per round.
pub fn run_cli(args: TrainArgs) -> anyhow::Result<()> {
    let progress = ProgressBar::new(0);
    progress.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} inner steps ({eta})",
    )?);
    let pb = progress.clone();
    let last = run_local(&args, &progress, move |s| {
        let scores: Vec<String> = s
            .scores
            .iter()
            .map(|(v, verdict)| match verdict {
                Verdict::Pass => format!("{v:+.4}"),
                Verdict::Fail(why) => format!("{v:+.4} ({why:?})"),
            })
            .collect();
        // `suspend`, not `println`: a hidden bar (output not a terminal) drops `println`.
        let line = format!(
            "round {}: scores [{}] -> held-out loss {:.4}, checkpoint {}",
            s.round,
            scores.join(", "),
            s.heldout_after,
            s.next
        );
        pb.suspend(|| println!("{line}"));
    })?;
    progress.finish_and_clear();
    println!("final checkpoint {}", last.id()?);
    if let Some(out) = &args.out {
        println!("written to {}", out.join("final").display());
    }
    Ok(())
}
