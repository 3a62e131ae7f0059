//! The bounty board a sponsor's gateway serves (`GET /bounties`, `GET /bounties.json`): its
//! bounties with metric, pool, deadline and current best, a leaderboard per bounty built from
//! the signed submissions and attestations it saw, completed bounties with the sats awarded,
//! the submissions the quorum refused, and this node's exploit log; then the bounties other
//! sponsors announced.
//!
//! Spec: specs/L2T-13-bounties.md#the-board

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bounty::harness::ExploitEntry;

/// One submission on a bounty's leaderboard.
#[derive(Debug, Clone, Serialize)]
pub struct BoardEntry {
    /// Round.
    pub round: u64,
    /// The agent's Nostr key (hex).
    pub agent: String,
    /// The diff's BLAKE3 (hex), the commitment.
    pub diff: String,
    /// When its signed submission was created (unix seconds).
    pub committed_at: u64,
    /// The committee's attested improvements (millionths of the metric).
    pub scores: Vec<i64>,
    /// Their median, once attested.
    pub median: Option<i64>,
    /// What happened: awarded, below the margin, below a tranche, refused by the quorum, copy…
    pub outcome: String,
    /// Regular tranches the median releases, in sats (the holdback's share follows the
    /// re-evaluation).
    pub award_sat: u64,
    /// Holdback share of those tranches, in sats.
    pub holdback_sat: u64,
}

/// One round of a bounty: its leader's tree and the tree's held-out metric.
#[derive(Debug, Clone, Serialize)]
pub struct BoardRound {
    /// Round (0: the baseline).
    pub round: u64,
    /// The tree the round took diffs against (hex).
    pub tree: String,
    /// Its held-out metric (millionths), as the sponsor measured it.
    pub metric: i64,
}

/// A bounty this node sponsors, as the board shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BoardBounty {
    /// Bounty id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Metric name.
    pub metric: String,
    /// `minimize` or `maximize`.
    pub direction: String,
    /// Whole pool, in sats.
    pub pool_sat: u64,
    /// Awarded so far (regular and holdback of every award), in sats.
    pub awarded_sat: u64,
    /// Improvement that earns the whole pool (millionths).
    pub target: i64,
    /// A diff must beat the leader by this much (millionths).
    pub margin: i64,
    /// Submissions close at (unix seconds).
    pub deadline: u64,
    /// `active` or `completed`.
    pub status: String,
    /// The baseline's held-out metric.
    pub baseline_metric: Option<i64>,
    /// The current leader's held-out metric.
    pub best_metric: Option<i64>,
    /// Leaders by round.
    pub rounds: Vec<BoardRound>,
    /// Submissions, in commitment order.
    pub leaderboard: Vec<BoardEntry>,
}

/// Everything the board page shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Board {
    /// This node's bounties, by id.
    pub sponsored: BTreeMap<String, BoardBounty>,
    /// Bounties other sponsors announced (id, title, pool sats, deadline, gateway).
    pub listed: Vec<(String, String, u64, u64, Option<String>)>,
    /// This node's exploit log (as a validator).
    pub exploits: Vec<ExploitEntry>,
}

/// HTML-escape text for the gateway's pages.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn short(s: &str) -> String {
    s.chars().take(12).collect::<String>() + "…"
}

fn nats(m: Option<i64>) -> String {
    m.map(|m| format!("{:.6}", m as f64 / 1e6))
        .unwrap_or_else(|| "—".into())
}

fn when(deadline: u64, now: u64) -> String {
    if deadline >= now {
        format!("{deadline} (in {} min)", (deadline - now) / 60)
    } else {
        format!("{deadline} (passed)")
    }
}

/// The board as an HTML page at `now` (unix seconds).
pub fn html(b: &Board, now: u64) -> String {
    let mut active = String::new();
    let mut completed = String::new();
    let mut boards = String::new();
    for x in b.sponsored.values() {
        let row = format!(
            "<tr><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&x.id),
            esc(&x.title),
            esc(&x.metric),
            esc(&x.direction),
            x.pool_sat,
            x.awarded_sat,
            when(x.deadline, now),
            nats(x.baseline_metric),
            nats(x.best_metric),
        );
        if x.status == "active" {
            active.push_str(&row);
        } else {
            completed.push_str(&row);
        }
        let mut rows = String::new();
        for (i, e) in x.leaderboard.iter().enumerate() {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i + 1,
                e.round,
                esc(&short(&e.agent)),
                esc(&short(&e.diff)),
                e.committed_at,
                e.median.map(|m| m.to_string()).unwrap_or_else(|| "—".into()),
                esc(&e.outcome),
                e.award_sat,
                e.holdback_sat,
            ));
        }
        boards.push_str(&format!(
            "<h3>Leaderboard: {}</h3><p>margin {} · target {} (millionths of {})</p>\
             <table><tr><th>#</th><th>round</th><th>agent</th><th>diff</th><th>committed</th><th>improvement</th><th>outcome</th><th>award sat</th><th>holdback sat</th></tr>{rows}</table>",
            esc(&x.id),
            x.margin,
            x.target,
            esc(&x.metric),
        ));
    }
    let mut listed = String::new();
    for (id, title, pool, deadline, gw) in &b.listed {
        listed.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(id),
            esc(title),
            pool,
            when(*deadline, now),
            esc(gw.as_deref().unwrap_or("")),
        ));
    }
    let mut exploits = String::new();
    for e in &b.exploits {
        let classes: Vec<String> = e
            .classes
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v["class"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        exploits.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
            e.time,
            esc(&e.bounty),
            esc(&short(e.agent.as_deref().unwrap_or(""))),
            esc(&short(&e.diff_hash)),
            esc(&classes.join(", ")),
        ));
    }
    let head = "<tr><th>bounty</th><th>title</th><th>metric</th><th>pool sat</th><th>awarded sat</th><th>deadline</th><th>baseline (nats/byte)</th><th>current best</th></tr>";
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>l402 bounty board</title>\
         <style>body{{font-family:sans-serif;margin:1em}}td,th{{padding:2px 8px;text-align:left}}table{{border-collapse:collapse}}tr:nth-child(even){{background:#f3f3f3}}</style></head><body>\
         <h1>l402 bounty board</h1>\
         <h2>Active bounties</h2><table>{head}{active}</table>\
         {boards}\
         <h2>Completed bounties</h2><table>{head}{completed}</table>\
         <h2>Bounties announced by other sponsors</h2><table><tr><th>bounty</th><th>title</th><th>pool sat</th><th>deadline</th><th>gateway</th></tr>{listed}</table>\
         <h2>Exploit log</h2><p>Diffs this node's sandbox contained and refused.</p>\
         <table><tr><th>time</th><th>bounty</th><th>agent</th><th>diff</th><th>what it tried</th></tr>{exploits}</table>\
         </body></html>"
    )
}
