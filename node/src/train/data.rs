//! Training data: a synthetic language generated from the run's seed. Nothing is downloaded.
//!
//! Spec: specs/L2T-10-training.md#data
//!
//! The language has [`TOPICS`] topics. Each topic has its own small set of consonants and
//! therefore its own words (nouns, verbs, adjectives), while the grammar, punctuation and
//! function words ("the", "in", "and", …) are shared. A sentence is
//! `Det [Adj] Noun Verb Det [Adj] Noun [Prep Det Noun].`, words drawn Zipf-like.
//!
//! A peer's shard for a round is one topic and [`TrainingSpec::shard_batches`] fixed batches of
//! that topic, all derived from `shard_seed(run, peer, round)`; the inner loop cycles through
//! them. Held-out and "random" batches mix all topics, one random topic per sequence.
//!
//! Why topical shards: the assigned-vs-random check needs an update to carry a fingerprint of
//! the data it was trained on, and the fingerprint must survive SparseLoCo's 1.56 % top-k.
//! Memorising exact sequences leaves too faint a trace in the top-k coordinates (measured: the
//! assigned advantage of honest and copied updates overlapped), while a topic's own words move
//! their own embedding and output rows, which top-k keeps. The shared grammar still makes every
//! honest update help the mixed held-out batch. A copy from a peer that drew the same topic in
//! that round is not caught by this check (1 in [`TOPICS`] pairs); exact copies are also caught
//! by blob-hash dedupe in the round protocol.
//!
//! [`TrainingSpec::shard_batches`]: l402_protocol::training::TrainingSpec

use candle_core::{Device, Tensor};
use l402_protocol::training::seeds::{derive, SeedDomain};

use super::rng::SeedRng;
use super::TrainError;

/// Number of topics of the synthetic language.
pub const TOPICS: usize = 16;
const CONSONANTS: &[u8] = b"bcdfghjklmnpqrstvwxz";
const VOWELS: &[u8] = b"aeiou";
const CONSONANTS_PER_TOPIC: usize = 5;
const NOUNS: usize = 24;
const VERBS: usize = 12;
const ADJECTIVES: usize = 12;
const DETERMINERS: &[&str] = &["the", "a", "one", "each", "my", "our", "that"];
const PREPOSITIONS: &[&str] = &["in", "on", "near", "under", "with", "over"];

/// A batch of `rows` byte sequences of `cols + 1` bytes each: inputs are the first `cols`
/// bytes of a row, targets the last `cols`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Number of sequences.
    pub rows: usize,
    /// Tokens per sequence (the model's input length).
    pub cols: usize,
    /// `rows × (cols + 1)` bytes, row-major.
    pub bytes: Vec<u8>,
}

impl Batch {
    /// Number of predicted tokens, `rows × cols`.
    pub fn tokens(&self) -> usize {
        self.rows * self.cols
    }

    /// `(inputs, targets)`, both u32 `[rows, cols]`, on `device`.
    pub fn tensors(&self, device: &Device) -> Result<(Tensor, Tensor), TrainError> {
        let w = self.cols + 1;
        let mut inputs = Vec::with_capacity(self.tokens());
        let mut targets = Vec::with_capacity(self.tokens());
        for row in self.bytes.chunks_exact(w) {
            inputs.extend(row[..self.cols].iter().map(|b| u32::from(*b)));
            targets.extend(row[1..].iter().map(|b| u32::from(*b)));
        }
        Ok((
            Tensor::from_vec(inputs, (self.rows, self.cols), device)?,
            Tensor::from_vec(targets, (self.rows, self.cols), device)?,
        ))
    }

    /// The rows of `parts` one after the other (all must have the same `cols`).
    pub fn concat(parts: &[&Batch]) -> Batch {
        let cols = parts.first().map_or(0, |b| b.cols);
        debug_assert!(parts.iter().all(|b| b.cols == cols));
        Batch {
            rows: parts.iter().map(|b| b.rows).sum(),
            cols,
            bytes: parts.iter().flat_map(|b| b.bytes.iter().copied()).collect(),
        }
    }

    /// The first `rows` sequences of this batch.
    pub fn head(&self, rows: usize) -> Batch {
        let rows = rows.min(self.rows);
        Batch {
            rows,
            cols: self.cols,
            bytes: self.bytes[..rows * (self.cols + 1)].to_vec(),
        }
    }

    /// The text of row `i`, for logs and examples.
    pub fn row_text(&self, i: usize) -> String {
        let w = self.cols + 1;
        String::from_utf8_lossy(self.bytes.get(i * w..(i + 1) * w).unwrap_or_default()).into_owned()
    }
}

#[derive(Debug, Clone)]
struct Topic {
    nouns: Vec<String>,
    verbs: Vec<String>,
    adjectives: Vec<String>,
}

/// The synthetic language of a run, generated from the run id.
#[derive(Debug, Clone)]
pub struct Corpus {
    topics: Vec<Topic>,
    zipf: Vec<Vec<f64>>,
}

/// One peer's data for one round: a topic and the seed of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// The shard's topic, `0..TOPICS`.
    pub topic: usize,
    seed: [u8; 32],
}

fn word(rng: &mut SeedRng, consonants: &[u8]) -> String {
    let syllables = 1 + rng.below(3) as usize;
    let mut w = String::new();
    for _ in 0..syllables {
        w.push(char::from(
            consonants[rng.below(consonants.len() as u64) as usize],
        ));
        w.push(char::from(VOWELS[rng.below(VOWELS.len() as u64) as usize]));
        if rng.below(3) == 0 {
            w.push(char::from(
                consonants[rng.below(consonants.len() as u64) as usize],
            ));
        }
    }
    w
}

fn words(
    rng: &mut SeedRng,
    consonants: &[u8],
    n: usize,
    suffix: &str,
    taken: &mut std::collections::BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let w = format!("{}{suffix}", word(rng, consonants));
        if taken.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

impl Corpus {
    /// The language of run `run`.
    pub fn new(run: &[u8; 32]) -> Self {
        let mut rng = SeedRng::new(derive(SeedDomain::Corpus, &[run]));
        let mut taken = std::collections::BTreeSet::new();
        let topics = (0..TOPICS)
            .map(|_| {
                // A partial Fisher–Yates shuffle picks this topic's consonants.
                let mut pool = CONSONANTS.to_vec();
                for i in 0..CONSONANTS_PER_TOPIC {
                    let j = i + rng.below((pool.len() - i) as u64) as usize;
                    pool.swap(i, j);
                }
                let cs = &pool[..CONSONANTS_PER_TOPIC];
                Topic {
                    nouns: words(&mut rng, cs, NOUNS, "", &mut taken),
                    verbs: words(&mut rng, cs, VERBS, "s", &mut taken),
                    adjectives: words(&mut rng, cs, ADJECTIVES, "y", &mut taken),
                }
            })
            .collect();
        let zipf = [
            NOUNS,
            VERBS,
            ADJECTIVES,
            DETERMINERS.len(),
            PREPOSITIONS.len(),
        ]
        .iter()
        .map(|n| {
            let mut acc = 0.0;
            (0..*n)
                .map(|i| {
                    acc += 1.0 / (i as f64 + 1.0);
                    acc
                })
                .collect()
        })
        .collect();
        Self { topics, zipf }
    }

    fn pick<'a>(&self, rng: &mut SeedRng, list: &'a [String], kind: usize) -> &'a str {
        &list[rng.weighted(&self.zipf[kind])]
    }

    fn pick_static(
        &self,
        rng: &mut SeedRng,
        list: &'static [&'static str],
        kind: usize,
    ) -> &'static str {
        list[rng.weighted(&self.zipf[kind])]
    }

    fn noun_phrase(&self, rng: &mut SeedRng, t: &Topic, out: &mut String) {
        out.push_str(self.pick_static(rng, DETERMINERS, 3));
        out.push(' ');
        if rng.below(2) == 0 {
            out.push_str(self.pick(rng, &t.adjectives, 2));
            out.push(' ');
        }
        out.push_str(self.pick(rng, &t.nouns, 0));
    }

    fn sentence(&self, rng: &mut SeedRng, topic: usize, out: &mut String) {
        let t = &self.topics[topic];
        let start = out.len();
        self.noun_phrase(rng, t, out);
        out.push(' ');
        out.push_str(self.pick(rng, &t.verbs, 1));
        out.push(' ');
        self.noun_phrase(rng, t, out);
        if rng.below(3) == 0 {
            out.push(' ');
            out.push_str(self.pick_static(rng, PREPOSITIONS, 4));
            out.push(' ');
            self.noun_phrase(rng, t, out);
        }
        out.push_str(". ");
        if let Some(first) = out.get(start..start + 1) {
            let up = first.to_ascii_uppercase();
            out.replace_range(start..start + 1, &up);
        }
    }

    /// A sequence of exactly `len` bytes of topic `topic`, starting at a sentence boundary.
    pub fn sequence(&self, rng: &mut SeedRng, topic: usize, len: usize) -> Vec<u8> {
        let mut s = String::with_capacity(len + 64);
        while s.len() < len {
            self.sentence(rng, topic % TOPICS, &mut s);
        }
        s.into_bytes()[..len].to_vec()
    }

    /// The shard of a shard seed (`l402_protocol::training::seeds::shard_seed`).
    pub fn shard(&self, seed: [u8; 32]) -> Shard {
        let topic = SeedRng::sub(&seed, b"topic", 0).below(TOPICS as u64) as usize;
        Shard { topic, seed }
    }

    /// Batch `index` of `shard`: `rows` sequences of `cols + 1` bytes of the shard's topic.
    pub fn shard_batch(&self, shard: &Shard, index: u32, rows: usize, cols: usize) -> Batch {
        let mut rng = SeedRng::sub(&shard.seed, b"batch", u64::from(index));
        let bytes = (0..rows)
            .flat_map(|_| self.sequence(&mut rng, shard.topic, cols + 1))
            .collect();
        Batch { rows, cols, bytes }
    }

    /// A batch mixing all topics, for held-out and random batches: row `i` has topic
    /// `i mod TOPICS` (stratified, so every topic has the same share and an update's score does
    /// not depend on how many rows of its topic a small batch happened to draw). Validators
    /// derive `seed` from the eval seed, a domain no shard uses.
    pub fn mixed_batch(&self, seed: &[u8; 32], rows: usize, cols: usize) -> Batch {
        let mut rng = SeedRng::sub(seed, b"mixed", 0);
        let bytes = (0..rows)
            .flat_map(|i| self.sequence(&mut rng, i % TOPICS, cols + 1))
            .collect();
        Batch { rows, cols, bytes }
    }

    /// `rows` sequences of `shard` taken in order from its batches `start`, `start + 1`, …
    /// (wrapping at `shard_batches`), each batch holding `batch_rows` rows: the sequences the
    /// peer trained on, for the assigned-data check.
    pub fn assigned_rows(
        &self,
        shard: &Shard,
        start: u32,
        shard_batches: u32,
        batch_rows: usize,
        rows: usize,
        cols: usize,
    ) -> Batch {
        let mut bytes = Vec::with_capacity(rows * (cols + 1));
        let mut index = start;
        while bytes.len() < rows * (cols + 1) {
            let b = self.shard_batch(shard, index % shard_batches.max(1), batch_rows.max(1), cols);
            let need = rows * (cols + 1) - bytes.len();
            bytes.extend_from_slice(&b.bytes[..need.min(b.bytes.len())]);
            index += 1;
        }
        Batch { rows, cols, bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_topic_specific() {
        let c = Corpus::new(&[5; 32]);
        let c2 = Corpus::new(&[5; 32]);
        let s = c.shard([1; 32]);
        assert_eq!(c.shard_batch(&s, 0, 2, 63), c2.shard_batch(&s, 0, 2, 63));
        assert_ne!(c.shard_batch(&s, 0, 2, 63), c.shard_batch(&s, 1, 2, 63));
        let b = c.shard_batch(&s, 0, 3, 63);
        assert_eq!(b.bytes.len(), 3 * 64);
        assert!(b.bytes.iter().all(|x| x.is_ascii()));
        assert!(
            b.row_text(0)
                .chars()
                .next()
                .is_some_and(|ch| ch.is_ascii_uppercase()),
            "{}",
            b.row_text(0)
        );
        let other = Corpus::new(&[6; 32]);
        assert_ne!(c.shard_batch(&s, 0, 2, 63), other.shard_batch(&s, 0, 2, 63));
        let h = c.mixed_batch(&[2; 32], 4, 31);
        let a = c.assigned_rows(&s, 5, 6, 2, 3, 63);
        assert_eq!(&a.bytes[..128], &c.shard_batch(&s, 5, 2, 63).bytes[..]);
        assert_eq!(&a.bytes[128..], &c.shard_batch(&s, 0, 2, 63).bytes[..64]);
        assert_eq!(h.tokens(), 4 * 31);
        assert_eq!(h.head(2).rows, 2);
    }
}
