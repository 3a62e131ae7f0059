//! A serialisable view of the machines, for the status page, `l402-node status` and the demo's
//! per-round table.

use l402_protocol::events::SubmissionId;
use l402_protocol::quorum::Verdict;
use l402_protocol::round::peer::HtlcState;
use l402_protocol::round::validator::EvalState;
use l402_protocol::round::{Driver, Machine, MachineKey};
use nostr_sdk::prelude::PublicKey;
use serde::Serialize;

/// One tranche of a peer's escrow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrancheStatus {
    /// Tranche index.
    pub index: u32,
    /// Amount, msat.
    pub amount_msat: u64,
    /// Payment hash (hex).
    pub payment_hash: String,
    /// HTLC state: requested, issued, held, claiming, claimed, failing, refunded.
    pub state: &'static str,
}

/// A validator's evaluation of one submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluationStatus {
    /// Submission id (hex).
    pub submission: String,
    /// Its worker (Nostr key, hex).
    pub peer: String,
    /// Initial evaluation: not started, requested, attested or missed.
    pub state: &'static str,
    /// Attested score, millionths of the loss reduction.
    pub score: Option<i64>,
    /// Attested verdict (`accept` or the reject code).
    pub verdict: Option<String>,
}

/// One machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineStatus {
    /// `run/round/role`.
    pub machine: String,
    /// Run.
    pub run: String,
    /// Round.
    pub round: u64,
    /// Role.
    pub role: String,
    /// Coordinator: the published checkpoint (hex) and how many submissions it merged.
    pub checkpoint: Option<String>,
    /// Coordinator: submissions merged.
    pub merged: Option<usize>,
    /// Peer: its submission id (hex).
    pub submission: Option<String>,
    /// Peer: its tranches.
    pub tranches: Vec<TrancheStatus>,
    /// Validator: its evaluations.
    pub evaluations: Vec<EvaluationStatus>,
    /// Coordinator: the round's committee (validators' Nostr keys, hex), drawn from the nodes
    /// that opted in.
    pub committee: Vec<String>,
    /// Coordinator: validators whose signed scores the round's audit replay contradicted
    /// (wrong-score evidence published; left out of the run's later pools), Nostr keys, hex.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub convicted: Vec<String>,
    /// Coordinator: the submissions it took (ids, hex); a copy of an earlier blob is not one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<String>,
}

fn htlc(s: &HtlcState) -> &'static str {
    match s {
        HtlcState::InvoiceRequested => "requested",
        HtlcState::InvoiceIssued { .. } => "issued",
        HtlcState::Held { .. } => "held",
        HtlcState::ClaimRequested { .. } => "claiming",
        HtlcState::Claimed => "claimed",
        HtlcState::FailRequested => "failing",
        HtlcState::FailedBack => "refunded",
    }
}

fn evaluation(id: SubmissionId, peer: PublicKey, e: EvalState) -> EvaluationStatus {
    let (state, score, verdict) = match e {
        EvalState::NotStarted => ("not started", None, None),
        EvalState::Requested => ("requested", None, None),
        EvalState::Attested { score, verdict } => (
            "attested",
            Some(score.0),
            Some(match verdict {
                Verdict::Accept => "accept".to_owned(),
                Verdict::Reject(code) => format!("reject: {code:?}"),
            }),
        ),
        EvalState::Missed => ("missed", None, None),
    };
    EvaluationStatus {
        submission: id.to_string(),
        peer: peer.to_hex(),
        state,
        score,
        verdict,
    }
}

/// The status of every machine, in key order.
pub fn machines(driver: &Driver<MachineKey>) -> Vec<MachineStatus> {
    driver
        .iter()
        .map(|(k, m)| {
            let mut s = MachineStatus {
                machine: k.to_string(),
                run: k.run.to_string(),
                round: k.round,
                role: k.role.to_string(),
                checkpoint: None,
                merged: None,
                submission: None,
                tranches: Vec::new(),
                evaluations: Vec::new(),
                committee: Vec::new(),
                convicted: Vec::new(),
                accepted: Vec::new(),
            };
            match m {
                Machine::Coordinator(c) => {
                    s.committee = c
                        .round_open()
                        .validators
                        .iter()
                        .map(|v| v.to_hex())
                        .collect();
                    s.convicted = c.convicted().iter().map(|v| v.to_hex()).collect();
                    s.accepted = c.accepted().map(|id| id.to_string()).collect();
                    if let Some(ck) = c.checkpoint() {
                        s.checkpoint = Some(ck.checkpoint.to_hex());
                        s.merged = usize::try_from(ck.merged_count).ok();
                    }
                }
                Machine::Peer(p) => {
                    s.submission = p.submission_id().map(|id| id.to_string());
                    s.tranches = p
                        .tranches()
                        .iter()
                        .map(|t| TrancheStatus {
                            index: t.index,
                            amount_msat: t.spec.amount_msat,
                            payment_hash: t.payment_hash.to_hex(),
                            state: htlc(&t.htlc),
                        })
                        .collect();
                }
                Machine::Validator(v) => {
                    s.evaluations = v
                        .evaluations()
                        .map(|(id, peer, initial, _)| evaluation(id, peer, initial))
                        .collect();
                }
            }
            s
        })
        .collect()
}
