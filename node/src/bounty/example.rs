//! The example bounty shipped with the repo (`node/bounties/tiny-lm`): lower the held-out loss
//! of the small candle byte-GPT by editing its training config. Its candidate phase is
//! `l402-node bounty train` ([`train_candidate`]); its harness is [`TinyLmHarness`]. An
//! evaluation takes about a second on one CPU core.
//!
//! Spec: specs/L2T-13-bounties.md#example-bounty

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use l402_protocol::training::ModelSpec;
use serde::Deserialize;

use super::harness::{ArtifactError, Harness};
use crate::train::{Batch, Checkpoint, Corpus, Gpt, TrainError};

/// The baseline tree: (path, contents).
pub const BASELINE_FILES: [(&str, &str); 3] = [
    (
        "README.md",
        include_str!("../../bounties/tiny-lm/README.md"),
    ),
    ("run.sh", include_str!("../../bounties/tiny-lm/run.sh")),
    (
        "train.toml",
        include_str!("../../bounties/tiny-lm/train.toml"),
    ),
];
/// Files agents may change.
pub const MUTABLE_FILES: [&str; 2] = ["run.sh", "train.toml"];
/// The candidate phase's command (run in the sandbox, in the candidate's tree).
pub const EVAL_COMMAND: &str = "sh run.sh";
/// Where the candidate phase finds the `l402-node` binary inside the sandbox.
pub const SANDBOX_NODE_BIN: &str = "/opt/l402/bin/l402-node";
/// The artifact the harness scores, relative to the candidate's tree.
pub const ARTIFACT: &str = "out/model.safetensors";
/// Largest artifact the harness reads.
pub const MAX_ARTIFACT_BYTES: u64 = 16 << 20;
/// Context length every candidate model must have (the held-out rows' length).
pub const CONTEXT: u32 = 64;
/// Held-out and public eval rows.
pub const EVAL_ROWS: u32 = 96;
/// Slices the held-out set is scored in; the metric is their median.
pub const SLICES: usize = 3;

/// The corpus id of the example bounty (its language; public).
pub fn corpus_id() -> [u8; 32] {
    *blake3::hash(b"l402 example bounty tiny-lm v1").as_bytes()
}

/// The public eval seed (agents score their own attempts on it).
pub fn public_seed() -> [u8; 32] {
    *blake3::hash(b"l402 example bounty tiny-lm v1 public eval").as_bytes()
}

fn train_seed(step: u32) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("l402 example bounty tiny-lm v1 train");
    h.update(&step.to_le_bytes());
    *h.finalize().as_bytes()
}

/// Write the baseline tree into `dir`.
pub fn write_baseline(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in BASELINE_FILES {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// `train.toml`: what the candidate may tune, each within a cap that keeps an evaluation short.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// AdamW steps (1..=300).
    pub steps: u32,
    /// Learning rate (0, 0.1].
    pub lr: f64,
    /// Sequences per step (1..=32).
    pub batch: u32,
    /// Transformer blocks (1..=4).
    pub layers: u32,
    /// Residual width (16..=128).
    pub width: u32,
    /// Attention heads (divide `width`).
    pub heads: u32,
    /// Decoupled weight decay [0, 1].
    pub weight_decay: f64,
    /// Initial-weights seed.
    pub seed: u64,
}

impl TrainConfig {
    /// Parse and check the caps.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let c: Self = toml::from_str(text)?;
        anyhow::ensure!((1..=300).contains(&c.steps), "steps must be 1..=300");
        anyhow::ensure!(c.lr > 0.0 && c.lr <= 0.1, "lr must be in (0, 0.1]");
        anyhow::ensure!((1..=32).contains(&c.batch), "batch must be 1..=32");
        anyhow::ensure!((1..=4).contains(&c.layers), "layers must be 1..=4");
        anyhow::ensure!((16..=128).contains(&c.width), "width must be 16..=128");
        anyhow::ensure!(
            c.heads >= 1 && c.width % c.heads == 0,
            "heads must divide width"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&c.weight_decay),
            "weight_decay must be in [0, 1]"
        );
        Ok(c)
    }

    /// The model this config trains.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec::byte_gpt(self.layers, self.width, self.heads, CONTEXT)
    }
}

/// The candidate phase of the example bounty: train per `config` on the public corpus and write
/// the model to `out/` (`model.safetensors`, `config.json`). Returns the last training loss.
pub fn train_candidate(config: &TrainConfig, out: &Path) -> Result<f32, TrainError> {
    let device = Device::Cpu;
    let spec = config.spec();
    let init = Checkpoint::init(&spec, blake3::hash(&config.seed.to_le_bytes()).as_bytes())?;
    let gpt = Gpt::new(&spec, &device)?;
    let mut vars = BTreeMap::new();
    for (name, t) in init.weights(&device)? {
        vars.insert(name, Var::from_tensor(&t)?);
    }
    let view = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let mut opt = AdamW::new(
        vars.values().cloned().collect(),
        ParamsAdamW {
            lr: config.lr,
            weight_decay: config.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let corpus = Corpus::new(&corpus_id());
    let mut last = f32::NAN;
    for step in 0..config.steps {
        let batch = corpus.mixed_batch(&train_seed(step), config.batch as usize, CONTEXT as usize);
        let loss = gpt.loss(&view, &batch)?;
        opt.backward_step(&loss)?;
        last = loss.to_scalar::<f32>()?;
    }
    let mut tensors = BTreeMap::new();
    for (name, var) in &vars {
        tensors.insert(
            name.clone(),
            var.as_tensor().flatten_all()?.to_vec1::<f32>()?,
        );
    }
    Checkpoint::from_tensors(spec, tensors)?.save_dir(out)?;
    Ok(last)
}

/// An evaluation set: `rows` sequences of `CONTEXT + 1` bytes. On disk: `L402EVv1`, rows and
/// columns as u32 LE, then the bytes. Held-out sets reach validators NIP-44-encrypted; the
/// bounty commits to the SHA-256 of this encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalSet(Batch);

const EVAL_MAGIC: &[u8; 8] = b"L402EVv1";
/// Largest eval set accepted (rows × columns).
pub const MAX_EVAL_BYTES: usize = 4 << 20;

impl EvalSet {
    /// The set drawn from `seed` (the sponsor's secret for the held-out set).
    pub fn generate(seed: &[u8; 32], rows: u32) -> Self {
        Self(Corpus::new(&corpus_id()).mixed_batch(seed, rows as usize, CONTEXT as usize))
    }

    /// Its encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + self.0.bytes.len());
        v.extend_from_slice(EVAL_MAGIC);
        v.extend_from_slice(&(self.0.rows as u32).to_le_bytes());
        v.extend_from_slice(&(self.0.cols as u32).to_le_bytes());
        v.extend_from_slice(&self.0.bytes);
        v
    }

    /// Decode, checking the size before anything is allocated.
    pub fn decode(b: &[u8]) -> Result<Self, ArtifactError> {
        let bad = |w: &str| ArtifactError::Malformed(format!("eval set: {w}"));
        if b.len() < 16 || &b[..8] != EVAL_MAGIC {
            return Err(bad("magic"));
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let (rows, cols) = (u(8), u(12));
        let need = rows
            .checked_mul(cols + 1)
            .filter(|n| *n <= MAX_EVAL_BYTES)
            .ok_or_else(|| bad("too large"))?;
        if rows < SLICES || cols != CONTEXT as usize || b.len() - 16 != need {
            return Err(bad("shape"));
        }
        Ok(Self(Batch {
            rows,
            cols,
            bytes: b[16..].to_vec(),
        }))
    }

    /// The batch.
    pub fn batch(&self) -> &Batch {
        &self.0
    }
}

/// The example bounty's harness: the model in `out/model.safetensors` must be a byte-GPT of
/// context [`CONTEXT`]; its metric is the median of its mean loss (in millionths of a nat per
/// byte) over [`SLICES`] slices of the eval set.
#[derive(Debug, Clone, Copy, Default)]
pub struct TinyLmHarness;

impl Harness for TinyLmHarness {
    fn artifact(&self) -> &str {
        ARTIFACT
    }

    fn max_artifact_bytes(&self) -> u64 {
        MAX_ARTIFACT_BYTES
    }

    fn score(&self, artifact: &[u8], eval: &[u8]) -> Result<Vec<i64>, ArtifactError> {
        let set = EvalSet::decode(eval)?;
        let ck = Checkpoint::from_safetensors(artifact, None)
            .map_err(|e| ArtifactError::Malformed(format!("model: {e}")))?;
        let spec = ck.spec();
        if spec.context != CONTEXT || spec.vocab != 256 {
            return Err(ArtifactError::Malformed(format!(
                "model must have context {CONTEXT} and vocabulary 256, has {} and {}",
                spec.context, spec.vocab
            )));
        }
        let device = Device::Cpu;
        let gpt = Gpt::new(spec, &device).map_err(|e| ArtifactError::Malformed(e.to_string()))?;
        let w = ck
            .weights(&device)
            .map_err(|e| ArtifactError::Malformed(e.to_string()))?;
        let rows = set.batch().rows;
        let per = rows / SLICES;
        let mut out = Vec::with_capacity(SLICES);
        for s in 0..SLICES {
            let slice = slice_rows(set.batch(), s * per, per);
            let loss = gpt
                .loss_value(&w, &slice)
                .map_err(|e| ArtifactError::Malformed(e.to_string()))?;
            if !loss.is_finite() {
                return Err(ArtifactError::Malformed("loss is not finite".into()));
            }
            out.push((f64::from(loss) * 1e6).round() as i64);
        }
        Ok(out)
    }
}

fn slice_rows(b: &Batch, start: usize, rows: usize) -> Batch {
    let w = b.cols + 1;
    Batch {
        rows,
        cols: b.cols,
        bytes: b.bytes[start * w..(start + rows) * w].to_vec(),
    }
}

/// `l402-node bounty train`: the example bounty's candidate phase (what `run.sh` runs).
#[derive(Debug, Clone, clap::Args)]
pub struct TrainCandidateArgs {
    /// The training config.
    #[arg(long, default_value = "train.toml")]
    pub config: std::path::PathBuf,
    /// Output directory for the model.
    #[arg(long, default_value = "out")]
    pub out: std::path::PathBuf,
}

/// Runs `l402-node bounty train`.
pub fn run_train(args: &TrainCandidateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)?;
    let config = TrainConfig::parse(&text)?;
    let loss = train_candidate(&config, &args.out)?;
    println!(
        "trained {} steps, last training loss {loss:.4}",
        config.steps
    );
    Ok(())
}
