//! The discrete-event engine of the fast mode: a seeded queue of deliveries (relay pushes,
//! Lightning notifications, evaluation results, clock ticks) that drives every actor's protocol
//! state machines and executes the actions they return against the fake world.
//!
//! - `effects`: the simulator's side of the protocol's shared `Driver` (fake store, executor).
//! - `rounds`: opening rounds, creating each actor's machines, the work and tokens they submit.
//! - `exec`: executing actions (publish, hold invoices, claims, evaluations, aggregation).
//! - `audit`: the per-round audit (fraud proofs by deterministic replay, outliers, censoring
//!   relays).
//! - `facts`: what a finished run hands to the report and the invariant checker.
//!
//! Everything random comes from one ChaCha20 stream seeded by the run's seed; every map whose
//! order can reach the output is a `BTreeMap`; every processed item and executed action is
//! hashed into the event log, so a seed replays to the same event-log hash.
//!
//! Spec: specs/L2T-12-sim.md#engine

mod audit;
mod effects;
mod exec;
mod facts;
mod rounds;

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::rc::Rc;
use std::sync::Arc;

use l402_protocol::events::{
    validate_event, BlobHash, PaymentHash, RejectReason, RunId, Score, Submission, SubmissionId,
    VerifiedAny,
};
use l402_protocol::round::{Action, Driver, Input, Machine};
use nostr::{EventId, Keys, PublicKey, SecretKey, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::actors::{Actor, ActorId, ActorKind};
use crate::scenario::{kind_by_name, Scenario, ScenarioError};
use crate::world::{FakeBlobs, FakeEvaluator, FakeLedger, FakeRelays, SimClock};

use effects::SimEffects;

/// Simulated Unix time of the first round open.
pub const GENESIS_TIME: u64 = 1_700_000_000;

/// What the run's records keep about one round.
#[derive(Debug)]
pub(crate) struct RoundRecord {
    pub(crate) open: l402_protocol::events::Verified<l402_protocol::events::RoundOpen>,
    pub(crate) opened_at: u64,
    pub(crate) committee: Vec<ActorId>,
    pub(crate) committee_set: BTreeSet<ActorId>,
    pub(crate) k: usize,
    pub(crate) corruption: l402_protocol::escrow::Corruption,
    pub(crate) checkpoint: Option<BlobHash>,
    pub(crate) merged: Vec<SubmissionId>,
    pub(crate) retired: bool,
    pub(crate) audited: bool,
    /// Free-riders that saw the round open, and those that already copied.
    pub(crate) riders_ready: BTreeSet<ActorId>,
    pub(crate) riders_done: BTreeSet<ActorId>,
    /// Model loss after merging this round (a scalar stand-in for held-out loss).
    pub(crate) model_loss: f64,
}

/// What the run knows about one submission.
#[derive(Clone, Debug)]
pub(crate) struct SubInfo {
    pub(crate) author: ActorId,
    pub(crate) round: u64,
    pub(crate) blob: BlobHash,
}

/// What the run knows about one hold invoice.
#[derive(Clone, Debug)]
pub(crate) struct HtlcMeta {
    pub(crate) round: u64,
    pub(crate) submission: SubmissionId,
    pub(crate) tranche: u32,
    pub(crate) threshold: Score,
    pub(crate) holdback: bool,
}

/// A signed attestation a deterministic replay proves wrong.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FraudProof {
    /// Round.
    pub round: u64,
    /// Validator actor.
    pub validator: ActorId,
    /// Its kind.
    pub kind: ActorKind,
    /// Id of the signed attestation event.
    pub event: String,
    /// The signed attestation event as NIP-01 JSON: anyone can verify its signature and
    /// recompute the score from `(checkpoint, blob, eval seed)`.
    pub event_json: String,
    /// Score it signed.
    pub attested: i64,
    /// Whether it signed "accept".
    pub attested_accept: bool,
    /// Score the replay gives.
    pub replayed: i64,
    /// Whether the replay accepts.
    pub replayed_accept: bool,
}

/// Counters the engine keeps while running.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) processed: u64,
    /// Batches of machine deliveries run, and the deliveries in them (see `deliver_batch`).
    pub(crate) batches: u64,
    pub(crate) batched: u64,
    pub(crate) handled_inputs: u64,
    pub(crate) crashes: u64,
    /// Offers the coordinators' submissions got computed ahead, on the pool.
    pub(crate) offers_prepared: u64,
    pub(crate) restarts: u64,
    pub(crate) restore_errors: Vec<String>,
    pub(crate) merged_list_errors: Vec<String>,
    pub(crate) ignored: BTreeMap<String, u64>,
    pub(crate) published: u64,
    pub(crate) relay_dedupes: u64,
    pub(crate) relay_rejected: BTreeMap<String, u64>,
    pub(crate) censored_everywhere: u64,
    pub(crate) refused_claims: Vec<String>,
    pub(crate) ledger_errors: BTreeMap<String, u64>,
    pub(crate) evaluations: u64,
    pub(crate) tolls_msat: BTreeMap<ActorId, u64>,
    pub(crate) copies_submitted: u64,
    pub(crate) sybil_token_rejected: BTreeSet<EventId>,
    pub(crate) replays_injected: u64,
    pub(crate) replay_deliveries: u64,
    pub(crate) replays_accepted: Vec<String>,
    pub(crate) dealer_evidence: u64,
    pub(crate) other_evidence: u64,
    /// Validators named in equivocation evidence.
    pub(crate) equivocators_named: BTreeSet<PublicKey>,
    /// Replays of disputed evaluations the coordinator asked for (`Action::Audit`).
    pub(crate) audit_replays: u64,
    /// Validators named in the coordinator's wrong-score evidence.
    pub(crate) convicted: BTreeSet<PublicKey>,
    /// Conflicting attestations equivocating validators signed.
    pub(crate) equivocations_signed: u64,
    /// Transfers of a merged blob whose bytes failed verification (a corrupting provider).
    pub(crate) corrupt_transfers: u64,
    /// Merge fetches completed from another holder after a corrupt transfer.
    pub(crate) corrupt_recovered: u64,
    /// Merge fetches no holder completed.
    pub(crate) merge_unavailable: u64,
    /// Corrupt transfers per provider: the coordinator tries them last afterwards.
    pub(crate) strikes: BTreeMap<ActorId, u64>,
    /// Validators that signed a conflicting initial attestation before its attest deadline
    /// (the coordinator's tally sees both).
    pub(crate) equivocated_in_time: BTreeSet<PublicKey>,
    pub(crate) fraud_proofs: Vec<FraudProof>,
    pub(crate) excluded: Vec<(ActorId, u64)>,
    pub(crate) outlier_flags: BTreeMap<ActorKind, u64>,
    pub(crate) honest_dissent: u64,
    pub(crate) relay_flagged: BTreeMap<usize, u64>,
    pub(crate) open_errors: Vec<String>,
    pub(crate) validator_fees: u64,
    /// Tolls refunded to refused submissions (round full), by actor.
    pub(crate) tolls_refunded_msat: BTreeMap<ActorId, u64>,
    /// Refusals a worker's machine received.
    pub(crate) refusals_seen: u64,
    /// Refund invoices paid (a resumed coordinator asks again; paying is idempotent, as in the
    /// node, per invoice).
    pub(crate) refund_invoices_paid: BTreeSet<String>,
    /// The coordinator's own events that no relay accepted, with the rule that refused them
    /// (what stalls a round; first 16).
    pub(crate) coordinator_refused: Vec<String>,
}

#[derive(Debug)]
enum Item {
    /// A relay push of a stored event to a subscriber.
    Event {
        to: ActorId,
        ev: Rc<VerifiedAny>,
        dup: bool,
    },
    /// An old event served by a stale relay into the current round's machines.
    Replay {
        to: ActorId,
        round: u64,
        ev: Rc<VerifiedAny>,
    },
    /// A Lightning notification: the node persists these, so they survive a crash.
    Ln {
        to: ActorId,
        round: u64,
        input: Input,
    },
    /// A result of in-process work (evaluation, aggregation, invoice creation): lost if the
    /// actor crashed since it was requested (`epoch` = its crash count then).
    Compute {
        to: ActorId,
        round: u64,
        input: Input,
        epoch: u64,
    },
    Tick,
    OpenRound(u64),
    Restart(ActorId),
    ReplayTurn {
        replayer: ActorId,
        round: u64,
    },
}

#[derive(Debug)]
struct Entry {
    time: u64,
    order: u64,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.time, self.order, self.seq).cmp(&(o.time, o.order, o.seq))
    }
}

/// One seeded simulation of a scenario.
#[derive(Debug)]
pub struct Simulation {
    pub(crate) sc: Scenario,
    pub(crate) seed: u64,
    rng: ChaCha20Rng,
    pub(crate) clock: SimClock,
    pub(crate) relays: FakeRelays,
    pub(crate) ledger: FakeLedger,
    pub(crate) blobs: FakeBlobs,
    evaluator: FakeEvaluator,
    pub(crate) actors: Vec<Actor>,
    by_key: BTreeMap<PublicKey, ActorId>,
    pub(crate) coordinator: ActorId,
    free_riders: Vec<ActorId>,
    driver: Driver<(ActorId, u64)>,
    persisted: BTreeMap<(ActorId, u64), Vec<u8>>,
    ln_buffer: BTreeMap<ActorId, Vec<(u64, Input)>>,
    epochs: Vec<u64>,
    pub(crate) rounds: BTreeMap<u64, RoundRecord>,
    pub(crate) subs: BTreeMap<SubmissionId, SubInfo>,
    pub(crate) htlc_meta: BTreeMap<PaymentHash, HtlcMeta>,
    pub(crate) published: BTreeMap<EventId, Rc<VerifiedAny>>,
    /// Each submission's committee as the coordinator dealt it (its first offer), by actor.
    pub(crate) sub_committees: BTreeMap<SubmissionId, Vec<ActorId>>,
    /// Merged-list blobs the coordinator stored, by BLAKE3 hash (what a fetcher gets).
    pub(crate) merged_lists: BTreeMap<BlobHash, Vec<u8>>,
    /// The events of each round, in publication order.
    round_events: BTreeMap<u64, Vec<Rc<VerifiedAny>>>,
    /// Offers and attestations naming a worker, per (round, worker).
    peer_events: BTreeMap<(u64, ActorId), Vec<Rc<VerifiedAny>>>,
    /// The events of each live round an actor subscribes to (its relay filters, as
    /// [`Simulation::interested`] decides), per (round, actor), in publication order: what its
    /// catch-ups and re-syncs walk, instead of every event of the round.
    actor_events: BTreeMap<(u64, ActorId), Vec<Rc<VerifiedAny>>>,
    queue: BinaryHeap<Reverse<Entry>>,
    /// Per (actor, round): how far into its `actor_events` list its last complete catch-up went.
    synced: BTreeMap<(ActorId, u64), usize>,
    seq: u64,
    log: blake3::Hasher,
    /// While set, `log_bytes` appends here instead of hashing (the chained seconds log a
    /// wave's deliveries before the waves before it have executed; see `run_chained`). The
    /// hash of concatenated updates is the hash of the concatenation, so flushing the bytes
    /// later, in the old order, gives the same hash.
    log_deferred: Option<Vec<u8>>,
    pub(crate) stats: Stats,
    run_id: RunId,
    l402_secret: [u8; 32],
    token_uses: BTreeMap<String, u64>,
    last_checkpoint: BlobHash,
    prev_checkpoint: BlobHash,
    /// Held-out loss of the latest checkpoint (`world::FakeLossModel`).
    pub(crate) model_loss: f64,
    /// The loss model's progress: the merged rounds' steps added up.
    model_progress: f64,
    end_time: Option<u64>,
    hard_end: u64,
    next_resync: u64,
    /// Tick skipped machines on a copy and check they do nothing (`checking_wakes`).
    check_wakes: bool,
    /// Threads the machines' handling is spread over (`None`: this thread only).
    pool: Option<Arc<rayon::ThreadPool>>,
    /// Relay checks of the events a batch's machines are about to publish, done on the pool
    /// beside their `handle` (signature, schema): what `FakeRelays::publish` would compute.
    prevalidated: BTreeMap<EventId, Result<VerifiedAny, RejectReason>>,
    /// Submissions (coordinator, event) whose offer was prepared ahead, with the time it was
    /// prepared for (see [`Simulation::prepare_offers`]).
    offers_ahead: BTreeMap<(ActorId, EventId), u64>,
    /// Relay checks of those offers' events, with that time, taken by the batch that publishes
    /// each offer.
    checked_ahead: BTreeMap<EventId, (u64, Result<VerifiedAny, RejectReason>)>,
    /// Submissions queued for a coordinator since the last preparation: (due time, machine,
    /// submission).
    offer_backlog: Vec<(
        u64,
        (ActorId, u64),
        l402_protocol::events::Verified<Submission>,
    )>,
    /// Told the number of rounds with a checkpoint each time one more has one.
    progress: ProgressHook,
}

/// A caller's progress callback (see [`Simulation::with_progress`]).
#[derive(Default)]
struct ProgressHook(Option<Box<dyn FnMut(u64)>>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressHook(set)"
        } else {
            "ProgressHook(none)"
        })
    }
}

/// A delivery to one machine, logged and de-duplicated, waiting for its `handle`.
struct Pending {
    a: ActorId,
    r: u64,
    input: Input,
    crashable: bool,
    replay: Option<Rc<VerifiedAny>>,
    /// A new machine's first input: once it is handled, the actor catches up on the round's
    /// stored events (see [`Simulation::catch_up`]).
    then_catch_up: bool,
}

impl Pending {
    /// Its machine's input, and the rest: how the batch executes what the machine returns.
    fn split(self) -> (Input, Meta) {
        let meta = (
            self.a,
            self.r,
            self.crashable,
            self.replay,
            self.then_catch_up,
        );
        (self.input, meta)
    }
}

fn derive(seed: u64, label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"l402-sim/v1\0");
    h.update(&seed.to_be_bytes());
    h.update(label.as_bytes());
    h.update(&[0]);
    for p in parts {
        h.update(&(p.len() as u64).to_be_bytes());
        h.update(p);
    }
    *h.finalize().as_bytes()
}

fn actor_keys(seed: u64, id: ActorId) -> Keys {
    let mut ctr = 0u32;
    loop {
        let b = derive(seed, "key", &[&id.to_be_bytes(), &ctr.to_be_bytes()]);
        if let Ok(sk) = SecretKey::from_slice(&b) {
            return Keys::new(sk);
        }
        ctr += 1;
    }
}

/// A short label of an input for logs.
pub(crate) fn input_label(i: &Input) -> String {
    match i {
        Input::Event(ev) => format!("event {:?} {}", ev.kind(), ev.event().id),
        Input::HtlcHeld { payment_hash, .. } => {
            format!("htlc-held {}", &payment_hash.to_hex()[..12])
        }
        Input::HtlcClaimed { payment_hash } => {
            format!("htlc-claimed {}", &payment_hash.to_hex()[..12])
        }
        Input::HtlcFailed { payment_hash } => {
            format!("htlc-failed {}", &payment_hash.to_hex()[..12])
        }
        Input::InvoiceCreated { payment_hash, .. } => {
            format!("invoice-created {}", &payment_hash.to_hex()[..12])
        }
        other => format!("{other:?}"),
    }
}

/// The round an event belongs to (from its signed content).
pub(crate) fn round_of(ev: &VerifiedAny) -> Option<u64> {
    Some(match ev {
        VerifiedAny::RoundOpen(o) => o.round,
        VerifiedAny::Submission(s) => s.round,
        VerifiedAny::EscrowOffer(o) => o.round,
        VerifiedAny::EscrowLock(l) => l.round,
        VerifiedAny::Attestation(a) => a.attestation.body().round,
        VerifiedAny::Checkpoint(c) => c.round,
        VerifiedAny::SubmissionRefusal(r) => r.round,
        _ => return None,
    })
}

impl Simulation {
    /// Build the world for `scenario` with `seed` (checked with [`Scenario::validate`] first).
    pub fn new(scenario: &Scenario, seed: u64) -> Result<Self, ScenarioError> {
        scenario.validate()?;
        scenario.check_mode(crate::scenario::Mode::Fast)?;
        let sc = scenario.clone();
        let mut rng = ChaCha20Rng::from_seed(derive(seed, "world-rng", &[]));
        let mut kinds = vec![ActorKind::Coordinator];
        let p = &sc.peers;
        kinds.extend(std::iter::repeat_n(ActorKind::HonestPeer, p.honest));
        kinds.extend(std::iter::repeat_n(ActorKind::FreeRider, p.free_riders));
        kinds.extend(std::iter::repeat_n(ActorKind::Copycat, p.copycats));
        kinds.extend(std::iter::repeat_n(ActorKind::Alie, p.alie));
        kinds.extend(std::iter::repeat_n(ActorKind::StaleTrainer, p.stale));
        kinds.extend(std::iter::repeat_n(ActorKind::Poisoner, p.poisoners));
        kinds.extend(std::iter::repeat_n(ActorKind::Replayer, p.replayers));
        let paid = (p.sybils as f64 * p.sybil_paid_fraction).round() as usize;
        kinds.extend(std::iter::repeat_n(ActorKind::SybilPaid, paid));
        kinds.extend(std::iter::repeat_n(
            ActorKind::SybilForged,
            p.sybils.saturating_sub(paid),
        ));
        kinds.extend(std::iter::repeat_n(ActorKind::Mixed, p.mixed));
        kinds.extend(std::iter::repeat_n(
            ActorKind::CorruptingProvider,
            p.corrupting,
        ));
        let v = &sc.validators;
        kinds.extend(std::iter::repeat_n(ActorKind::LazyValidator, v.lazy));
        kinds.extend(std::iter::repeat_n(
            ActorKind::ColludingValidator,
            v.colluding,
        ));
        kinds.extend(std::iter::repeat_n(
            ActorKind::EquivocatingValidator,
            v.equivocating,
        ));
        kinds.extend(std::iter::repeat_n(
            ActorKind::HonestValidator,
            v.pool - v.lazy - v.colluding - v.equivocating,
        ));
        let mut ledger = FakeLedger::new();
        let pool_msat = sc.escrow.pool_sats * 1000;
        let workers = kinds.iter().filter(|k| k.is_worker()).count() as u64;
        let coordinator_funds = pool_msat
            .saturating_mul(workers + 1)
            .saturating_mul(sc.rounds + 2)
            .saturating_add(1_000_000_000);
        let mut actors = Vec::with_capacity(kinds.len());
        let mut by_key = BTreeMap::new();
        let mut free_riders = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            let id = i as ActorId;
            let keys = actor_keys(seed, id);
            let pubkey = keys.public_key();
            by_key.insert(pubkey, id);
            let balance = match kind {
                ActorKind::Coordinator => coordinator_funds,
                k if k.is_worker() => sc.escrow.worker_balance_sats * 1000,
                _ => 0,
            };
            ledger.open_account(id, balance);
            if kind.copies_others() {
                free_riders.push(id);
            }
            actors.push(Actor {
                id,
                kind,
                keys,
                pubkey,
                down_until: None,
                downtimes: Vec::new(),
                seen: BTreeMap::new(),
                excluded_from: None,
            });
        }
        let censor: BTreeSet<_> = sc
            .network
            .censor_kinds
            .iter()
            .filter_map(|k| kind_by_name(k))
            .collect();
        let n = &sc.network;
        let relays = FakeRelays::new(
            n.relays,
            n.censoring,
            &censor,
            n.drop,
            n.duplicate,
            n.max_delay_secs,
        );
        let t = &sc.timing;
        let per_round = t.attest_secs + 4 * t.tick_secs + 60;
        let tail =
            t.claim_secs.max(t.holdback_claim_secs) + (t.cltv_margin_blocks + 4) * t.block_secs;
        let hard_end = GENESIS_TIME + sc.rounds * per_round * 2 + tail;
        let epochs = vec![0; actors.len()];
        let l402_secret = rng.gen();
        let evaluator = FakeEvaluator { noise: v.noise };
        let mut sim = Self {
            clock: SimClock::new(GENESIS_TIME, t.block_secs),
            relays,
            ledger,
            blobs: FakeBlobs::default(),
            evaluator,
            actors,
            by_key,
            coordinator: 0,
            free_riders,
            driver: Driver::new(),
            persisted: BTreeMap::new(),
            ln_buffer: BTreeMap::new(),
            epochs,
            rounds: BTreeMap::new(),
            subs: BTreeMap::new(),
            htlc_meta: BTreeMap::new(),
            published: BTreeMap::new(),
            merged_lists: BTreeMap::new(),
            sub_committees: BTreeMap::new(),
            round_events: BTreeMap::new(),
            peer_events: BTreeMap::new(),
            actor_events: BTreeMap::new(),
            synced: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            log: blake3::Hasher::new(),
            log_deferred: None,
            stats: Stats::default(),
            run_id: RunId::new("l402-sim").expect("a valid run id"),
            l402_secret,
            token_uses: BTreeMap::new(),
            last_checkpoint: BlobHash(derive(seed, "genesis-checkpoint", &[])),
            prev_checkpoint: BlobHash([0; 32]),
            model_loss: sc.loss.genesis,
            model_progress: 0.0,
            end_time: None,
            hard_end,
            next_resync: GENESIS_TIME + n.resync_secs,
            pool: None,
            check_wakes: false,
            prevalidated: BTreeMap::new(),
            offers_ahead: BTreeMap::new(),
            checked_ahead: BTreeMap::new(),
            offer_backlog: Vec::new(),
            progress: ProgressHook::default(),
            sc,
            seed,
            rng,
        };
        sim.log.update(b"l402-sim event log v1\0");
        sim.log.update(&seed.to_be_bytes());
        sim.schedule(0, Item::OpenRound(1));
        sim.schedule(0, Item::Tick);
        Ok(sim)
    }

    fn schedule(&mut self, delay: u64, item: Item) {
        self.seq += 1;
        let order = self.rng.gen();
        self.queue.push(Reverse(Entry {
            time: self.clock.now + delay,
            order,
            seq: self.seq,
            item,
        }));
    }

    fn log_bytes(&mut self, tag: u8, actor: ActorId, round: u64, payload: &[u8]) {
        let parts: [&[u8]; 6] = [
            &self.clock.now.to_be_bytes(),
            &[tag],
            &actor.to_be_bytes(),
            &round.to_be_bytes(),
            &(payload.len() as u64).to_be_bytes(),
            payload,
        ];
        for part in parts {
            match &mut self.log_deferred {
                Some(buf) => buf.extend_from_slice(part),
                None => {
                    self.log.update(part);
                }
            }
        }
    }

    fn log_input(&mut self, tag: u8, actor: ActorId, round: u64, input: &Input) {
        match input {
            Input::Event(ev) => {
                let id = ev.event().id.to_bytes();
                self.log_bytes(tag, actor, round, &id);
            }
            Input::Tick => self.log_bytes(tag, actor, round, b"tick"),
            other => {
                let s = format!("{other:?}");
                self.log_bytes(tag, actor, round, s.as_bytes());
            }
        }
    }

    /// The event-log hash so far (hex).
    pub fn event_log_hash(&self) -> String {
        self.log.finalize().to_hex().to_string()
    }

    pub(crate) fn is_down(&self, a: ActorId) -> bool {
        self.actors[a as usize].down_until.is_some()
    }

    /// Spread the machines' handling over `threads` threads (1: all on this one). The outcome,
    /// and so the event-log hash, is the same for every thread count: batches are formed from
    /// the queue alone, handling is pure, and effects run on this thread in batch order.
    pub fn with_threads(mut self, threads: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        self.pool = if threads > 1 {
            Some(pool_of(threads)?)
        } else {
            None
        };
        Ok(self)
    }

    /// Check, at every tick, that each machine the tick skips (its
    /// [`Machine::next_wake`] has not come) would have done nothing: a test oracle, costly.
    pub fn checking_wakes(mut self) -> Self {
        self.check_wakes = true;
        self
    }

    /// Call `f` with the number of rounds that have a checkpoint each time a round gets one
    /// (for a progress bar). It reads nothing of the run but that count, so it changes nothing.
    pub fn with_progress(mut self, f: impl FnMut(u64) + 'static) -> Self {
        self.progress = ProgressHook(Some(Box::new(f)));
        self
    }

    /// Tell the progress callback how many rounds have a checkpoint.
    fn report_progress(&mut self) {
        if let Some(f) = &mut self.progress.0 {
            let done = self
                .rounds
                .values()
                .filter(|rec| rec.checkpoint.is_some())
                .count() as u64;
            f(done);
        }
    }

    /// Run to the end: every round opened, every deadline and HTLC expiry passed.
    ///
    /// The plain machine deliveries due at the same second (up to the first other item) run in
    /// waves: a wave takes each actor's first remaining one, in queue order; its deliveries are
    /// logged and checked in that order, their machines handle them (spread over the pool),
    /// then their actions execute in that order. Each actor sees its inputs in queue order;
    /// what a wave's actions schedule for the same second runs after the waves.
    pub fn run(mut self) -> crate::report::Report {
        while let Some(Reverse(entry)) = self.queue.pop() {
            let stop = self.end_time.unwrap_or(self.hard_end).min(self.hard_end);
            if entry.time > stop {
                break;
            }
            self.clock.now = self.clock.now.max(entry.time);
            self.stats.processed += 1;
            if self.batch_target(&entry.item).is_none() {
                self.process(entry.item);
                continue;
            }
            // Every plain delivery due this second, up to the first item that is not one.
            let mut due = vec![entry.item];
            while let Some(Reverse(e)) = self.queue.peek() {
                if e.time != entry.time || self.batch_target(&e.item).is_none() {
                    break;
                }
                let Some(Reverse(e)) = self.queue.pop() else {
                    break;
                };
                self.stats.processed += 1;
                due.push(e.item);
            }
            self.prepare_offers(&due);
            // In waves: each actor's first remaining delivery, in queue order. An item's wave
            // is the number of items before it for the same actor (formed in one pass: a
            // second with many deliveries to one coordinator has as many waves).
            let mut waves: Vec<Vec<Item>> = Vec::new();
            let mut per_actor: BTreeMap<ActorId, usize> = BTreeMap::new();
            for item in due {
                let a = self.batch_target(&item);
                let n = per_actor.entry(a.unwrap_or(ActorId::MAX)).or_insert(0);
                if waves.len() <= *n {
                    waves.push(Vec::new());
                }
                waves[*n].push(item);
                *n += 1;
            }
            if self.can_chain(&waves) {
                self.run_chained(waves);
                continue;
            }
            for wave in waves {
                let batch: Vec<Pending> =
                    wave.into_iter().filter_map(|i| self.prepare(i)).collect();
                self.deliver_batch(batch);
            }
        }
        tracing::debug!(
            seed = self.seed,
            items = self.stats.processed,
            inputs = self.stats.handled_inputs,
            batches = self.stats.batches,
            batched = self.stats.batched,
            offers_prepared = self.stats.offers_prepared,
            "queue drained"
        );
        self.finish()
    }

    /// Whether a second's waves may run chained ([`Simulation::run_chained`]): there is a pool,
    /// no node can crash (a crash drawn while executing one wave would keep the actor's later
    /// deliveries of the second from its machine), and no wave starts a machine (a new
    /// machine catches up on the round while its wave executes, and a free-rider that copies a
    /// submission starts one).
    fn can_chain(&self, waves: &[Vec<Item>]) -> bool {
        self.pool.is_some()
            && waves.len() > 1
            && self.sc.faults.crash == 0.0
            && !waves.iter().flatten().any(|i| match i {
                Item::Event { to, ev, dup } => match &**ev {
                    VerifiedAny::RoundOpen(_) => true,
                    VerifiedAny::Submission(s)
                        if self.actors[*to as usize].kind.copies_others() =>
                    {
                        self.first_sight(*to, ev, *dup) && self.would_copy(*to, s)
                    }
                    _ => false,
                },
                _ => false,
            })
    }

    /// A second's waves as one batch: the same outcome as running them one after another
    /// (prepare, handle, execute, then the next wave), with no barrier between the waves.
    ///
    /// Each machine handles its inputs of the second in order, as one job (a chain), and the
    /// chains run over the pool together. Then each wave's deliveries are logged and its
    /// actions executed, wave after wave, in the order the waves would have. This is exact
    /// because executing a wave changes nothing the next wave's preparation or handling
    /// reads, under [`Simulation::can_chain`]: what it publishes is queued for later, nobody
    /// crashes, and no machine is started or caught up; handling reads only the machine and
    /// its input. The logs of the preparation are kept aside and hashed in the old order.
    fn run_chained(&mut self, waves: Vec<Vec<Item>>) {
        let now = self.clock.now;
        let mut logs = Vec::with_capacity(waves.len());
        let mut metas: Vec<Vec<Meta>> = Vec::with_capacity(waves.len());
        let mut chains: BTreeMap<(ActorId, u64), Vec<ChainInput>> = BTreeMap::new();
        for (w, wave) in waves.into_iter().enumerate() {
            self.log_deferred = Some(Vec::new());
            let batch: Vec<Pending> = wave.into_iter().filter_map(|i| self.prepare(i)).collect();
            logs.push(self.log_deferred.take().unwrap_or_default());
            let mut wave_metas = Vec::with_capacity(batch.len());
            for (i, p) in batch.into_iter().enumerate() {
                let (input, meta) = p.split();
                chains
                    .entry((meta.0, meta.1))
                    .or_default()
                    .push((w, i, input));
                wave_metas.push(meta);
            }
            metas.push(wave_metas);
        }
        self.stats.batches += 1;
        self.stats.batched += metas.iter().map(Vec::len).sum::<usize>() as u64;
        let keys: BTreeSet<(ActorId, u64)> = chains.keys().copied().collect();
        let jobs: Vec<Chain> = self
            .driver
            .take_machines(&keys)
            .into_iter()
            .filter_map(|(k, m)| chains.remove(&k).map(|c| (k, m, c)))
            .collect();
        let ahead = &self.checked_ahead;
        let handle = |(k, mut m, chain): Chain| {
            let done: Vec<(usize, Handled)> = chain
                .into_iter()
                .map(|(w, i, input)| (w, handle_and_check(i, &mut m, now, input, ahead)))
                .collect();
            (done, (k, m))
        };
        // One job per piece (`with_max_len(1)`): chains differ in cost a hundredfold (the
        // coordinator's thousand inputs against a peer's one), and rayon otherwise hands each
        // thread a run of neighbouring jobs and splits it further only when the other steals,
        // which left one thread with the coordinator's chain and its neighbours.
        let (done, machines): (Vec<Vec<(usize, Handled)>>, Vec<_>) = match &self.pool {
            Some(pool) => {
                use rayon::prelude::*;
                pool.install(|| jobs.into_par_iter().with_max_len(1).map(handle).unzip())
            }
            None => jobs.into_iter().map(handle).unzip(),
        };
        self.driver.put_back(machines);
        let mut by_wave: Vec<Vec<Handled>> = metas.iter().map(|_| Vec::new()).collect();
        for (w, h) in done.into_iter().flatten() {
            if let Some(v) = by_wave.get_mut(w) {
                v.push(h);
            }
        }
        for ((mut handled, log), wave_metas) in by_wave.into_iter().zip(logs).zip(metas) {
            self.log.update(&log);
            handled.sort_by_key(|h| h.index);
            self.finish_handled(handled, &wave_metas);
        }
    }

    /// The machine a queued item hands a submission to, if that machine is a coordinator and
    /// the submission's offer was not prepared ahead.
    fn unprepared_offer<'i>(
        &self,
        item: &'i Item,
    ) -> Option<(
        (ActorId, u64),
        &'i l402_protocol::events::Verified<Submission>,
    )> {
        let Item::Event { to, ev, .. } = item else {
            return None;
        };
        let VerifiedAny::Submission(s) = &**ev else {
            return None;
        };
        let key = (*to, round_of(ev)?);
        let coordinator = matches!(self.driver.get(&key), Some(Machine::Coordinator(_)));
        let prepared = self.offers_ahead.contains_key(&(*to, s.event().id));
        (coordinator && !prepared).then_some((key, s))
    }

    /// Offers computed ahead, so that a coordinator's offers are not one serial chain.
    ///
    /// A coordinator handles its submissions one after another, and each offer (the VRF draw,
    /// a dealing per tranche, the relays' checks of the event: about 2 ms) is most of that
    /// work. When a submission due now reaches a coordinator with no offer prepared, every
    /// coordinator-bound submission waiting in the queue gets its offer computed at once on the
    /// pool, each for the time it is due (`Coordinator::prepare_offer`: pure, the offer `handle`
    /// would make), together with the relays' checks of the offer event. The machine's `handle`
    /// then takes the prepared offer (only for that same time). The outcome, and so the
    /// event-log hash, is the same for any thread count, including none.
    fn prepare_offers(&mut self, due: &[Item]) {
        let Some(pool) = &self.pool else {
            return;
        };
        if !due.iter().any(|i| self.unprepared_offer(i).is_some()) {
            return;
        }
        // Each (coordinator, submission) is in the backlog once: the relays store an event
        // once, and a relay's duplicate push is not added.
        let jobs = std::mem::take(&mut self.offer_backlog);
        let driver = &self.driver;
        let prepared: Vec<_> = {
            use rayon::prelude::*;
            pool.install(|| {
                jobs.into_par_iter()
                    .with_max_len(1)
                    .map(|(time, key, s)| {
                        let id = (key.0, s.event().id);
                        let p = match driver.get(&key) {
                            Some(Machine::Coordinator(c)) => c.prepare_offer(time, &s),
                            _ => None,
                        };
                        let check = p.as_ref().and_then(|p| p.event()).map(|ev| {
                            (
                                ev.id,
                                (time, validate_event(ev, Timestamp::from_secs(time))),
                            )
                        });
                        (id, time, key, p, check)
                    })
                    .collect()
            })
        };
        self.stats.offers_prepared += prepared.len() as u64;
        for (id, time, key, p, check) in prepared {
            self.offers_ahead.insert(id, time);
            if let Some(p) = p {
                self.driver.stash_offer(&key, p);
            }
            self.checked_ahead.extend(check);
        }
    }

    /// The actor a queued item is a machine delivery to (what can join a batch); `None` for the
    /// rest (ticks, round opens reaching a free-rider, restarts, replays), which run alone. A
    /// round open starts the actor's machine while the batch is formed, in queue order; its
    /// first input joins the batch. A submission reaching a free-rider joins the batch too: it
    /// is handled while the batch is formed (the free-rider may copy it and start its machine)
    /// and is no machine's input.
    fn batch_target(&self, item: &Item) -> Option<ActorId> {
        match item {
            Item::Event { to, ev, .. } => match &**ev {
                VerifiedAny::RoundOpen(_) if self.actors[*to as usize].kind.copies_others() => None,
                _ => Some(*to),
            },
            Item::Ln { to, .. } | Item::Compute { to, .. } => Some(*to),
            _ => None,
        }
    }

    /// Log a batchable item and decide whether it reaches a machine (the checks of
    /// [`Simulation::process`] up to the machine's `handle`).
    fn prepare(&mut self, item: Item) -> Option<Pending> {
        match item {
            Item::Event { to, ev, dup } => {
                self.log_bytes(2, to, 0, &ev.event().id.to_bytes());
                match &*ev {
                    VerifiedAny::RoundOpen(open) if self.first_sight(to, &ev, dup) => {
                        self.actors[to as usize].mark_seen(open.round, ev.event().id);
                        let r = self.start_machine(to, open.clone())?;
                        let mut p = self.pending(to, r, Input::Tick, true)?;
                        p.then_catch_up = true;
                        Some(p)
                    }
                    VerifiedAny::RoundOpen(_) => None,
                    // A free-rider's push of a submission: it may copy it (no machine input).
                    VerifiedAny::Submission(_) if self.actors[to as usize].kind.copies_others() => {
                        self.deliver_event(to, &ev, dup);
                        None
                    }
                    _ => self.event_delivery(to, &ev, dup),
                }
            }
            Item::Ln { to, round, input } => {
                self.log_input(4, to, round, &input);
                if self.is_down(to) {
                    self.ln_buffer.entry(to).or_default().push((round, input));
                    None
                } else {
                    self.pending(to, round, input, true)
                }
            }
            Item::Compute {
                to,
                round,
                input,
                epoch,
            } => {
                self.log_input(5, to, round, &input);
                if !self.is_down(to) && self.epochs[to as usize] == epoch {
                    self.pending(to, round, input, true)
                } else {
                    None
                }
            }
            other => {
                self.process(other);
                None
            }
        }
    }

    fn process(&mut self, item: Item) {
        match item {
            Item::Tick => self.on_tick(),
            Item::OpenRound(r) => {
                self.log_bytes(1, self.coordinator, r, b"open");
                self.open_round(r);
            }
            Item::Event { to, ev, dup } => {
                self.log_bytes(2, to, 0, &ev.event().id.to_bytes());
                self.deliver_event(to, &ev, dup);
            }
            Item::Replay { to, round, ev } => {
                self.log_bytes(3, to, round, &ev.event().id.to_bytes());
                self.deliver_replay(to, round, &ev);
            }
            item @ (Item::Ln { .. } | Item::Compute { .. }) => {
                if let Some(p) = self.prepare(item) {
                    self.deliver_batch(vec![p]);
                }
            }
            Item::Restart(a) => {
                self.log_bytes(6, a, 0, b"restart");
                self.restart(a);
            }
            Item::ReplayTurn { replayer, round } => {
                self.log_bytes(7, replayer, round, b"replay");
                self.replay_turn(replayer, round);
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.clock.now;
        self.log_bytes(0, 0, 0, b"tick");
        // The Lightning nodes fail back HTLCs that reached their expiry height.
        let height = self.clock.height();
        for (hash, payee) in self.ledger.expire(height, now) {
            let round = self.htlc_meta.get(&hash).map(|m| m.round).unwrap_or(0);
            self.schedule(
                0,
                Item::Ln {
                    to: payee,
                    round,
                    input: Input::HtlcFailed { payment_hash: hash },
                },
            );
        }
        self.offers_ahead.retain(|_, at| *at >= now);
        self.checked_ahead.retain(|_, (at, _)| *at >= now);
        // Ticks never crash a node, so the tick of every machine it can change is one batch.
        // The rest (a peer waiting for its validators) would leave the tick as it is.
        let keys = self.driver.tick_targets(now);
        if self.check_wakes {
            self.check_skipped_ticks(now, &keys);
        }
        let ticks: Vec<Pending> = keys
            .into_iter()
            .filter_map(|(a, r)| self.pending(a, r, Input::Tick, false))
            .collect();
        self.deliver_batch(ticks);
        if now >= self.next_resync {
            self.next_resync = now + self.sc.network.resync_secs;
            for a in 0..self.actors.len() as ActorId {
                if !self.is_down(a) {
                    self.resync(a, false);
                }
            }
        }
        self.retire_rounds();
        let stop = self.end_time.unwrap_or(self.hard_end).min(self.hard_end);
        if now < stop {
            self.schedule(self.sc.timing.tick_secs, Item::Tick);
        }
    }

    /// The check [`Simulation::checking_wakes`] asks for: each machine the tick at `now` skips
    /// (not in `ticked`), ticked on a copy restored from its persisted bytes, acts on nothing
    /// and ends in the same state. Panics, with the seed, on the first that does not.
    fn check_skipped_ticks(&self, now: u64, ticked: &[(ActorId, u64)]) {
        for (k, m) in self.driver.iter() {
            if ticked.binary_search(k).is_ok() {
                continue;
            }
            let bytes = m.to_bytes();
            let keys = self.actors[k.0 as usize].keys.clone();
            let mut copy = match Machine::from_bytes(m.role(), keys, &bytes) {
                Ok(copy) => copy,
                Err(e) => panic!(
                    "seed {}: actor {} round {}: restore: {e}",
                    self.seed, k.0, k.1
                ),
            };
            let actions = copy.handle(now, Input::Tick);
            assert!(
                actions.is_empty() && copy.to_bytes() == bytes,
                "seed {}: actor {} round {} at {now}: a tick before the machine's next wake \
                 ({:?}) acted: {actions:?}",
                self.seed,
                k.0,
                k.1,
                m.next_wake(),
            );
        }
    }

    /// Drop the machines of rounds whose every deadline and HTLC expiry has passed.
    fn retire_rounds(&mut self) {
        let t = &self.sc.timing;
        let slack = (t.cltv_margin_blocks + 2) * t.block_secs;
        let now = self.clock.now;
        let done: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| !r.retired && now > r.open.last_deadline() + slack)
            .map(|(n, _)| *n)
            .collect();
        let mut seen = Vec::new();
        for r in &done {
            if let Some(rec) = self.rounds.get_mut(r) {
                rec.retired = true;
            }
            seen.extend(self.actors.iter_mut().filter_map(|a| a.seen.remove(r)));
        }
        if !done.is_empty() {
            // Nothing of a retired round is delivered again (`first_sight`).
            self.actor_events.retain(|(r, _), _| !done.contains(r));
            self.synced.retain(|(_, r), _| !done.contains(r));
            let machines = self.with_driver(false, None, |d, fx| {
                d.retire_where(fx, |(_, round), _| done.contains(round))
            });
            self.discard((machines, seen));
        }
    }

    /// Drop `x` on the pool when there is one: freeing a retired round (a thousand machines
    /// and their seen-sets) is work no output depends on, so it runs on a core the engine's
    /// serial steps leave idle instead of on this thread.
    fn discard<T: Send + 'static>(&self, x: T) {
        match &self.pool {
            Some(pool) => pool.spawn(move || drop(x)),
            None => drop(x),
        }
    }

    /// Run `f` with the shared driver and this simulation as its effects.
    pub(crate) fn with_driver<T>(
        &mut self,
        crashable: bool,
        replay: Option<Rc<VerifiedAny>>,
        f: impl FnOnce(&mut Driver<(ActorId, u64)>, &mut SimEffects<'_>) -> T,
    ) -> T {
        // The effects borrow the whole simulation; the driver is lent out meanwhile (nothing the
        // executor does reaches the machines: it schedules their next inputs).
        let mut driver = std::mem::take(&mut self.driver);
        let out = f(
            &mut driver,
            &mut SimEffects {
                sim: self,
                crashable,
                replay,
            },
        );
        self.driver = driver;
        out
    }

    /// Hand `input` to actor `a`'s machine of round `r` through the driver; with the scenario's
    /// crash probability (not for ticks) the node crashes after executing a random prefix of
    /// the actions.
    pub(crate) fn deliver_input(&mut self, a: ActorId, r: u64, input: Input, crashable: bool) {
        self.deliver(a, r, input, crashable, None);
    }

    pub(crate) fn deliver(
        &mut self,
        a: ActorId,
        r: u64,
        input: Input,
        crashable: bool,
        replay: Option<Rc<VerifiedAny>>,
    ) {
        let p = Pending {
            a,
            r,
            input,
            crashable,
            replay,
            then_catch_up: false,
        };
        if let Some(p) = self.admit(p) {
            self.deliver_batch(vec![p]);
        }
    }

    /// A delivery of `input` to machine `(a, r)` that is not a stale relay's replay, if admitted.
    fn pending(&mut self, a: ActorId, r: u64, input: Input, crashable: bool) -> Option<Pending> {
        let replay = None;
        self.admit(Pending {
            a,
            r,
            input,
            crashable,
            replay,
            then_catch_up: false,
        })
    }

    /// `p`, unless its actor is down or has no machine for its round.
    fn admit(&mut self, p: Pending) -> Option<Pending> {
        let (a, r, input) = (p.a, p.r, &p.input);
        if self.is_down(a) || !self.driver.contains(&(a, r)) {
            return None; // crashed while handling an earlier input of the same batch, or no machine
        }
        self.stats.handled_inputs += 1;
        if !matches!(input, Input::Tick) {
            tracing::trace!(seed = self.seed, actor = a, round = r, now = self.clock.now, input = %input_label(input), "deliver");
        }
        Some(p)
    }

    /// Run a batch of deliveries to distinct machines (distinct actors, when crashable): the
    /// machines handle their inputs, spread over the pool, and the relays' checks of what they
    /// publish run beside them; then, on this thread and in batch order, the shared driver
    /// persists each machine and executes its actions.
    fn deliver_batch(&mut self, batch: Vec<Pending>) {
        let now = self.clock.now;
        if batch.is_empty() {
            return;
        }
        self.stats.batches += 1;
        self.stats.batched += batch.len() as u64;
        let keys: BTreeSet<(ActorId, u64)> = batch.iter().map(|p| (p.a, p.r)).collect();
        if keys.len() != batch.len() {
            // Two inputs for one machine: one after the other (the run loop never forms such a
            // batch; this keeps the order right if a caller does).
            for p in batch {
                self.deliver_batch(vec![p]);
            }
            return;
        }
        let mut metas = Vec::with_capacity(batch.len());
        let mut inputs: BTreeMap<(ActorId, u64), (usize, Input)> = BTreeMap::new();
        for (i, p) in batch.into_iter().enumerate() {
            let (input, meta) = p.split();
            inputs.insert((meta.0, meta.1), (i, input));
            metas.push(meta);
        }
        let jobs: Vec<Job> = self
            .driver
            .take_machines(&keys)
            .into_iter()
            .filter_map(|(k, m)| inputs.remove(&k).map(|(i, input)| (i, k, m, input)))
            .collect();
        let ahead = &self.checked_ahead;
        let handle = |(i, k, mut m, input): Job| {
            let h = handle_and_check(i, &mut m, now, input, ahead);
            (h, (k, m))
        };
        let (mut done, machines): (Vec<Handled>, Vec<_>) = match &self.pool {
            Some(pool) if jobs.len() > 1 => {
                use rayon::prelude::*;
                pool.install(|| jobs.into_par_iter().with_max_len(1).map(handle).unzip())
            }
            _ => jobs.into_iter().map(handle).unzip(),
        };
        self.driver.put_back(machines);
        done.sort_by_key(|h| h.index);
        self.finish_handled(done, &metas);
    }

    /// On this thread, in batch order: persist each handled machine through the shared driver
    /// and execute its actions (`metas[h.index]` says whose and how).
    fn finish_handled(&mut self, done: Vec<Handled>, metas: &[Meta]) {
        for h in done {
            let Some((a, r, crashable, replay, then_catch_up)) = metas.get(h.index).cloned() else {
                continue;
            };
            self.prevalidated = h.checked;
            self.with_driver(crashable, replay, |d, fx| d.finish(&(a, r), h.actions, fx));
            self.prevalidated.clear();
            if self.is_down(a) {
                self.snapshot(a);
            } else if then_catch_up {
                self.catch_up(a, r);
            }
        }
    }

    /// The fake store: the state of every machine of a crashed actor (see
    /// [`SimEffects::persist`]).
    fn snapshot(&mut self, a: ActorId) {
        let states: Vec<((ActorId, u64), Vec<u8>)> = self
            .driver
            .iter()
            .filter(|((x, _), _)| *x == a)
            .map(|(k, m)| (*k, m.to_bytes()))
            .collect();
        self.persisted.extend(states);
    }

    fn crash(&mut self, a: ActorId) {
        if self.is_down(a) {
            return;
        }
        let now = self.clock.now;
        self.stats.crashes += 1;
        self.epochs[a as usize] += 1;
        let d = self
            .rng
            .gen_range(1..=self.sc.faults.max_downtime_secs.max(1));
        let actor = &mut self.actors[a as usize];
        actor.down_until = Some(now + d);
        actor.downtimes.push((now, now + d));
        self.log_bytes(8, a, 0, b"crash");
        tracing::debug!(seed = self.seed, actor = a, now, down_secs = d, "crash");
        self.schedule(d, Item::Restart(a));
    }

    fn restart(&mut self, a: ActorId) {
        let now = self.clock.now;
        self.actors[a as usize].down_until = None;
        self.stats.restarts += 1;
        tracing::debug!(seed = self.seed, actor = a, now, "restart");
        let keys: Vec<(ActorId, u64)> = self
            .persisted
            .keys()
            .filter(|(x, _)| *x == a)
            .copied()
            .collect();
        for k in keys {
            let Some(bytes) = self.persisted.remove(&k) else {
                continue;
            };
            let Some(role) = self.driver.get(&k).map(|m| m.role()) else {
                continue;
            };
            let keys = self.actors[a as usize].keys.clone();
            match self.driver.restore(k, role, keys, &bytes) {
                Ok(()) => {
                    // The restored state must be exactly what was persisted.
                    if self.driver.get(&k).map(|m| m.to_bytes()) != Some(bytes) {
                        self.stats
                            .restore_errors
                            .push(format!("actor {a} round {}: state changed on restore", k.1));
                    }
                    self.with_driver(false, None, |d, fx| d.resume(now, &k, fx));
                }
                Err(e) => self
                    .stats
                    .restore_errors
                    .push(format!("actor {a} round {}: {e}", k.1)),
            }
        }
        // Lightning events the node persisted while down (ldk-node replays unhandled events); if
        // it crashes again meanwhile, the rest waits for the next restart.
        for (round, input) in self.ln_buffer.remove(&a).unwrap_or_default() {
            if self.is_down(a) {
                self.ln_buffer.entry(a).or_default().push((round, input));
            } else {
                self.deliver_input(a, round, input, true);
            }
        }
        // After a restart the node re-queries everything of its live rounds.
        self.resync(a, true);
    }

    /// Whether actor `a` subscribes to `ev` (its relay filters).
    fn interested(&self, a: ActorId, ev: &VerifiedAny) -> bool {
        let Some(r) = round_of(ev) else {
            return false;
        };
        let Some(rec) = self.rounds.get(&r) else {
            return false;
        };
        if rec.retired {
            return false;
        }
        let actor = &self.actors[a as usize];
        let coord = a == self.coordinator;
        let committee = rec.committee_set.contains(&a);
        match ev {
            VerifiedAny::RoundOpen(_) => !coord,
            VerifiedAny::Submission(_) => coord || committee || actor.kind.copies_others(),
            // Offers name their committee in `p` tags; a validator's filter selects its own, and
            // then the locks of those submissions.
            VerifiedAny::EscrowOffer(o) => {
                o.peer == actor.pubkey
                    || (committee
                        && o.dealings
                            .first()
                            .is_some_and(|d| d.body().validators.contains(&actor.pubkey)))
            }
            VerifiedAny::EscrowLock(l) => {
                coord
                    || (committee
                        && self
                            .sub_committees
                            .get(&l.submission)
                            .is_none_or(|c| c.contains(&a)))
            }
            VerifiedAny::Attestation(x) => coord || x.peer == actor.pubkey,
            VerifiedAny::SubmissionRefusal(r) => r.peer == actor.pubkey,
            _ => false,
        }
    }

    /// Note a new event of round `r` in the catch-up lists of its subscribers `to` and of its
    /// author, if the author's own filters select it.
    pub(crate) fn index_event(
        &mut self,
        r: u64,
        ev: &Rc<VerifiedAny>,
        from: ActorId,
        to: &[ActorId],
    ) {
        let author = self.interested(from, ev).then_some(from);
        for a in to.iter().copied().chain(author) {
            self.actor_events
                .entry((r, a))
                .or_default()
                .push(Rc::clone(ev));
        }
    }

    /// Subscribers of a new event (excluding its author).
    pub(crate) fn subscribers(&self, ev: &VerifiedAny, from: ActorId) -> Vec<ActorId> {
        let Some(r) = round_of(ev) else {
            return Vec::new();
        };
        let Some(rec) = self.rounds.get(&r) else {
            return Vec::new();
        };
        let mut out: Vec<ActorId> = match ev {
            VerifiedAny::RoundOpen(_) => (0..self.actors.len() as ActorId)
                .filter(|a| *a != self.coordinator)
                .collect(),
            VerifiedAny::Submission(_) => {
                let mut v = vec![self.coordinator];
                v.extend(rec.committee.iter().copied());
                v.extend(self.free_riders.iter().copied());
                v
            }
            VerifiedAny::EscrowOffer(o) => {
                let mut v: Vec<ActorId> = self.by_key.get(&o.peer).copied().into_iter().collect();
                let members = o.dealings.first().map(|d| d.body().validators.as_slice());
                v.extend(
                    members
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|pk| self.by_key.get(pk).copied())
                        .filter(|a| rec.committee_set.contains(a)),
                );
                v
            }
            VerifiedAny::EscrowLock(l) => {
                let mut v = vec![self.coordinator];
                match self.sub_committees.get(&l.submission) {
                    Some(c) => v.extend(c.iter().copied()),
                    None => v.extend(rec.committee.iter().copied()),
                }
                v
            }
            VerifiedAny::Attestation(x) => {
                let mut v = vec![self.coordinator];
                v.extend(self.by_key.get(&x.peer).copied());
                v
            }
            VerifiedAny::SubmissionRefusal(r) => {
                self.by_key.get(&r.peer).copied().into_iter().collect()
            }
            _ => Vec::new(),
        };
        out.retain(|a| *a != from);
        out.dedup();
        out
    }

    /// A relay push (or re-sync) of `ev` reaches actor `to`.
    fn deliver_event(&mut self, to: ActorId, ev: &Rc<VerifiedAny>, dup: bool) {
        if !self.first_sight(to, ev, dup) {
            return; // down (the re-sync after the restart fetches it), seen, or of no round
        }
        match &**ev {
            VerifiedAny::RoundOpen(open) => {
                self.actors[to as usize].mark_seen(open.round, ev.event().id);
                self.on_round_open(to, open.clone());
            }
            VerifiedAny::Submission(s) if self.actors[to as usize].kind.copies_others() => {
                self.actors[to as usize].mark_seen(s.round, ev.event().id);
                self.maybe_copy(to, s.clone());
            }
            _ => {
                if let Some(p) = self.event_delivery(to, ev, dup) {
                    self.deliver_batch(vec![p]);
                }
            }
        }
    }

    /// Whether `to` is up and has not seen `ev` (or this is a relay's duplicate push), and the
    /// event names a round that is not retired.
    fn first_sight(&self, to: ActorId, ev: &VerifiedAny, dup: bool) -> bool {
        let Some(r) = round_of(ev) else {
            return false;
        };
        !self.is_down(to)
            && (dup || !self.actors[to as usize].has_seen(r, &ev.event().id))
            && self.rounds.get(&r).is_none_or(|rec| !rec.retired)
    }

    /// The delivery of `ev` to `to`'s machine of the event's round, marking it seen.
    fn event_delivery(&mut self, to: ActorId, ev: &Rc<VerifiedAny>, dup: bool) -> Option<Pending> {
        if !self.first_sight(to, ev, dup) {
            return None; // down: the re-sync after the restart fetches it from the relays
        }
        let r = round_of(ev)?;
        if !self.driver.contains(&(to, r)) {
            return None; // not in this round (yet): a later re-sync delivers it
        }
        self.actors[to as usize].mark_seen(r, ev.event().id);
        self.pending(to, r, Input::Event((**ev).clone()), true)
    }

    /// Re-sync: actor `a` re-queries the relays for stored events of its live rounds it has not
    /// seen (what a client does after a reconnect or periodically, with `since`).
    fn resync(&mut self, a: ActorId, full: bool) {
        if full {
            self.synced.retain(|(x, _), _| *x != a);
        }
        let rounds: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, rec)| !rec.retired)
            .map(|(r, _)| *r)
            .collect();
        for r in rounds {
            self.resync_round(a, r);
        }
    }

    /// Deliver every stored event of round `r` that `a` subscribes to and has not seen.
    fn catch_up(&mut self, a: ActorId, r: u64) {
        self.catch_up_from(a, r, 0);
    }

    /// [`Simulation::catch_up`] over the events stored since `a`'s last complete pass of round
    /// `r` (what a client's `since` filter asks): the periodic re-sync. Everything before that
    /// was offered to `a` then, while it was up and had its machine, so only newer events can be
    /// unseen. Without this each re-sync rescans the whole round, quadratic in submissions.
    fn resync_round(&mut self, a: ActorId, r: u64) {
        let from = self.synced.get(&(a, r)).copied().unwrap_or(0);
        self.catch_up_from(a, r, from);
    }

    fn catch_up_from(&mut self, a: ActorId, r: u64, from: usize) {
        // The events `a` subscribes to, in publication order, and how far this pass reaches.
        let (evs, end): (Vec<Rc<VerifiedAny>>, usize) = {
            let all = self
                .actor_events
                .get(&(r, a))
                .map(Vec::as_slice)
                .unwrap_or_default();
            (all.get(from..).unwrap_or_default().to_vec(), all.len())
        };
        for ev in evs {
            if self.is_down(a) {
                return;
            }
            if self.actors[a as usize].has_seen(r, &ev.event().id) {
                continue;
            }
            if self.interested(a, &ev) {
                self.deliver_event(a, &ev, false);
            }
        }
        // A complete pass: the next re-sync starts here. (A machine created later gets a full
        // catch-up when it is created.)
        self.synced.insert((a, r), end);
    }
}

thread_local! {
    /// The pools this thread's simulations spread their work over, by thread count (kept for
    /// the next run: a sweep runs many seeds).
    static POOLS: RefCell<BTreeMap<usize, Arc<rayon::ThreadPool>>> =
        const { RefCell::new(BTreeMap::new()) };
}

/// A pool of `threads` threads for this thread's simulations. The first one this thread builds
/// counts this thread among its `threads` (rayon's `use_current_thread`): the engine's thread
/// handles its share of each batch instead of sleeping while `threads` others do, so on a
/// machine with `threads` cores no third thread competes for them. A thread can be part of one
/// pool only; a pool of another count, or one built from a rayon worker, has its own threads.
fn pool_of(threads: usize) -> Result<Arc<rayon::ThreadPool>, rayon::ThreadPoolBuildError> {
    POOLS.with(|pools| {
        if let Some(pool) = pools.borrow().get(&threads) {
            return Ok(Arc::clone(pool));
        }
        let builder = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("l402-sim-{i}"));
        let on_a_worker = rayon::current_thread_index().is_some();
        let builder = if pools.borrow().is_empty() && !on_a_worker {
            builder.use_current_thread()
        } else {
            builder
        };
        let pool = Arc::new(builder.build()?);
        pools.borrow_mut().insert(threads, Arc::clone(&pool));
        Ok(pool)
    })
}

/// Whose a delivery of a batch is and how to execute it: actor, round, crashable, the stale
/// relay's replayed event, catch up after.
type Meta = (ActorId, u64, bool, Option<Rc<VerifiedAny>>, bool);

/// One machine's deliveries of a chained second ([`Simulation::run_chained`]), taken to the
/// pool: the machine's key, the machine, and each input with its wave and place in the wave.
type Chain = ((ActorId, u64), Box<Machine>, Vec<ChainInput>);

/// An input of a chain, with its wave and its place in the wave.
type ChainInput = (usize, usize, Input);

/// One delivery of a batch, taken to the pool: its place in the batch, the machine's key, the
/// machine (taken out of the driver until the batch is handled) and the input.
type Job = (usize, (ActorId, u64), Box<Machine>, Input);

/// One machine's `handle` in a batch, with the relays' checks of what it publishes.
struct Handled {
    index: usize,
    actions: Vec<Action>,
    checked: BTreeMap<EventId, Result<VerifiedAny, RejectReason>>,
}

/// The pure part of a delivery, safe to run on any thread: the machine's `handle`, then the
/// relays' acceptance checks (`validate_event` at `now`) of each event it asks to publish,
/// unless `ahead` has them already.
fn handle_and_check(
    index: usize,
    m: &mut Machine,
    now: u64,
    input: Input,
    ahead: &BTreeMap<EventId, (u64, Result<VerifiedAny, RejectReason>)>,
) -> Handled {
    let actions = m.handle(now, input);
    let checked = actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(ev) => Some((
                ev.id,
                match ahead.get(&ev.id) {
                    Some((at, checked)) if *at == now => checked.clone(),
                    _ => validate_event(ev, Timestamp::from_secs(now)),
                },
            )),
            _ => None,
        })
        .collect();
    Handled {
        index,
        actions,
        checked,
    }
}
