//! `l402-node evidence`: the evidence events on the relays, each checked here. What a third
//! party runs to see who provably misbehaved: it holds no key of the run and trusts no node.
//!
//! Each event is parsed by the protocol's own pipeline (`l402_protocol::events::parse`): the
//! Nostr signature, then the proof itself, which needs no secret — a bad-share complaint carries
//! the validator's ECDH proof and the dealing the dealer signed, a wrong-preimage piece the
//! secret that does not open the signed payment hash, an equivocation both signed attestations.
//! Wrong-score evidence carries the accused validator's signed attestation and the publisher's
//! replay of the same evaluation: the signature and the contradiction are checked here; the
//! replay is re-run by anyone holding the checkpoint and the blob the attestation names.
//! Events that do not prove anything are listed as such, with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use l402_protocol::escrow::DealerFault;
use l402_protocol::events::{parse, tags, Evidence, L402Kind, Proven};
use l402_protocol::quorum::{Verdict, WrongScoreEvidence};
use nostr_sdk::prelude::{Filter, Timestamp, ToBech32};
use serde::Serialize;

use crate::discovery::listing::{reader, ListArgs};

/// Most evidence events read from the relays.
const EVIDENCE_FETCH_LIMIT: usize = 5_000;

/// One evidence event as checked here.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckedEvidence {
    /// The Nostr event id.
    pub event: String,
    /// Who published it (hex).
    pub author: String,
    /// Unix time of the event.
    pub created_at: u64,
    /// Run, round and submission tags, if any.
    pub run: Option<String>,
    /// Round.
    pub round: Option<u64>,
    /// Submission (event id, hex).
    pub submission: Option<String>,
    /// `bad_share`, `wrong_preimage`, `malformed_dealing`, `equivocation` or `wrong_score`;
    /// `None` if it did not parse.
    pub kind: Option<String>,
    /// Who it accuses (hex), if it proves something.
    pub accused: Option<String>,
    /// What it proves (`dealer: inconsistent`, `equivocation`, …), or why it proves nothing.
    pub proves: String,
    /// Whether the proof checked.
    pub verified: bool,
}

/// Checks one event as evidence.
pub fn check(ev: &nostr_sdk::prelude::Event) -> CheckedEvidence {
    let tag = |name: &str| tags::first(ev.tags.as_slice(), name).map(str::to_owned);
    let mut out = CheckedEvidence {
        event: ev.id.to_hex(),
        author: ev.pubkey.to_hex(),
        created_at: ev.created_at.as_secs(),
        run: tag(tags::RUN),
        round: tag(tags::ROUND).and_then(|r| r.parse().ok()),
        submission: tag(tags::SUBMISSION),
        kind: None,
        accused: None,
        proves: String::new(),
        verified: false,
    };
    match parse::<Evidence>(ev, None) {
        Ok(v) => {
            out.kind = Some(v.kind_name().to_owned());
            match v.verify() {
                Ok(p) => {
                    out.accused = Some(v.accused().to_hex());
                    out.verified = true;
                    out.proves = match p {
                        Proven::Dealer(f) => format!("dealer: {}", dealer_fault(f)),
                        Proven::Equivocation => "equivocation".into(),
                        Proven::WrongScore => match &*v {
                            Evidence::WrongScore(w) => wrong_score(w),
                            _ => "wrong score".into(),
                        },
                        _ => format!("{p:?}").to_lowercase(),
                    };
                }
                Err(e) => out.proves = e.to_string(),
            }
        }
        Err(e) => out.proves = e.to_string(),
    }
    out
}

/// A wrong-score piece in words: the signed score against the publisher's replay.
fn wrong_score(w: &WrongScoreEvidence) -> String {
    let verdict = |v: Verdict| match v {
        Verdict::Accept => "accept".to_owned(),
        Verdict::Reject(c) => format!("reject {c:?}"),
    };
    let b = w.attestation().body();
    let r = w.replay();
    format!(
        "wrong score: signed {} ({}), the publisher's replay {} ({}); re-run the evaluation of blob {} on checkpoint {} to confirm",
        b.score.0,
        verdict(b.verdict),
        r.score.0,
        verdict(r.verdict),
        &b.gradient.to_hex()[..16],
        &b.checkpoint.to_hex()[..16],
    )
}

/// What a proven dealer fault is, in words.
fn dealer_fault(f: DealerFault) -> String {
    match f {
        DealerFault::Undecryptable => "undecryptable share".into(),
        DealerFault::NotAScalar => "share not a scalar".into(),
        DealerFault::Inconsistent => "share fails the Feldman check".into(),
        DealerFault::WrongPreimage => "secret does not open the payment hash".into(),
        DealerFault::Malformed => "malformed dealing".into(),
        other => format!("{other:?}"),
    }
}

/// Runs `l402-node evidence`.
pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let checked = rt.block_on(async {
        let discovery = reader(&args).await?;
        let filter = Filter::new()
            .kind(L402Kind::Evidence.kind())
            .limit(EVIDENCE_FETCH_LIMIT);
        let events = discovery
            .client()
            .fetch_events(filter, Duration::from_secs(args.timeout_secs))
            .await;
        discovery.shutdown().await;
        let mut checked: Vec<CheckedEvidence> = events?.iter().map(check).collect();
        checked.sort_by(|a, b| (a.created_at, &a.event).cmp(&(b.created_at, &b.event)));
        anyhow::Ok(checked)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checked)?);
        return Ok(());
    }
    print!("{}", table(&checked, Timestamp::now()));
    Ok(())
}

fn short(hex: &str) -> String {
    nostr_sdk::prelude::PublicKey::from_hex(hex)
        .ok()
        .and_then(|k| k.to_bech32().ok())
        .map_or_else(|| hex.chars().take(16).collect(), |b| b[..20].to_owned())
}

/// A human table: one row per event, then the count per accused key.
fn table(checked: &[CheckedEvidence], now: Timestamp) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if checked.is_empty() {
        s.push_str("no evidence on the relays\n");
        return s;
    }
    let _ = writeln!(
        s,
        "{:<10} {:<18} {:>5} {:<22} {:<22} {:<8} proves",
        "age", "kind", "round", "accused", "published by", "checked"
    );
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for c in checked {
        if let (true, Some(a)) = (c.verified, &c.accused) {
            *per.entry(a.clone()).or_default() += 1;
        }
        let _ = writeln!(
            s,
            "{:<10} {:<18} {:>5} {:<22} {:<22} {:<8} {}",
            format!("{}s", now.as_secs().saturating_sub(c.created_at)),
            c.kind.as_deref().unwrap_or("?"),
            c.round.map_or("-".into(), |r| r.to_string()),
            c.accused.as_deref().map_or("-".into(), short),
            short(&c.author),
            if c.verified { "proven" } else { "NOT" },
            c.proves
        );
    }
    for (a, n) in per {
        let _ = writeln!(s, "{} proven misbehaviour(s) by {}", n, short(&a));
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use l402_protocol::events::{sign_event, BlobHash, RunId, Score, Seed32, SubmissionId};
    use l402_protocol::quorum::{
        AttestationBody, EquivocationEvidence, Phase, RejectCode, Replay, Tolerance,
    };
    use nostr_sdk::prelude::{EventBuilder, Keys, SecretKey, Timestamp};
    use rand::SeedableRng;

    use super::*;

    fn keys(i: u8) -> Keys {
        Keys::new(SecretKey::from_slice(&[i; 32]).unwrap())
    }

    #[test]
    fn a_proof_is_checked_and_anything_else_is_listed_as_unproven() {
        let validator = keys(7);
        let body = |verdict| AttestationBody {
            run_id: RunId::new("run").unwrap(),
            round: 4,
            phase: Phase::Initial,
            submission: SubmissionId([1; 32]),
            checkpoint: BlobHash([2; 32]),
            gradient: BlobHash([3; 32]),
            eval_seed: Seed32([4; 32]),
            score: Score(10),
            verdict,
            validator: validator.public_key(),
        };
        let a = body(Verdict::Accept).sign(&validator, &[5; 32]).unwrap();
        let b = body(Verdict::Reject(RejectCode::LossIncreased))
            .sign(&validator, &[6; 32])
            .unwrap();
        let ev = Evidence::Equivocation(EquivocationEvidence::new(a, b).unwrap());
        let coordinator = keys(8);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let signed = sign_event(&ev, &coordinator, Timestamp::from_secs(1_000), &mut rng).unwrap();
        let c = check(&signed);
        assert!(c.verified, "{c:?}");
        assert_eq!(c.kind.as_deref(), Some("equivocation"));
        assert_eq!(c.accused, Some(validator.public_key().to_hex()));
        assert_eq!(c.author, coordinator.public_key().to_hex());
        assert_eq!((c.run.as_deref(), c.round), (Some("run"), Some(4)));

        // A colluder's inflated score against the coordinator's replay.
        let inflated = AttestationBody {
            score: Score(1_000_000),
            ..body(Verdict::Accept)
        }
        .sign(&validator, &[7; 32])
        .unwrap();
        let replay = Replay {
            score: Score(10),
            verdict: Verdict::Accept,
        };
        let w = WrongScoreEvidence::new(inflated, replay, Tolerance::default()).unwrap();
        let signed_w = sign_event(
            &Evidence::WrongScore(w),
            &coordinator,
            Timestamp::from_secs(1_000),
            &mut rng,
        )
        .unwrap();
        let c = check(&signed_w);
        assert!(c.verified, "{c:?}");
        assert_eq!(c.kind.as_deref(), Some("wrong_score"));
        assert_eq!(c.accused, Some(validator.public_key().to_hex()));
        assert!(c.proves.contains("signed 1000000 (accept)"), "{c:?}");

        // An evidence-kind event whose content proves nothing.
        let junk = EventBuilder::new(L402Kind::Evidence.kind(), "{\"v\":1}")
            .sign_with_keys(&coordinator)
            .unwrap();
        let c = check(&junk);
        assert!(
            !c.verified && c.accused.is_none() && !c.proves.is_empty(),
            "{c:?}"
        );
        let table = table(&[check(&signed), c], Timestamp::from_secs(1_010));
        assert!(table.contains("proven") && table.contains("NOT"), "{table}");
        assert!(table.contains("1 proven misbehaviour(s)"), "{table}");
    }
}
