//! The files a fast-mode run writes with `--dir`, the same set real mode writes:
//! `sim-report.json` (the report, and the attack-free run's when compared), `sim-report.md`
//! (summary, detection table, held-out loss per round, invariants), `loss.svg` (held-out loss
//! per round, with and without the adversaries) and `sats.svg` (sats paid per actor type).
//!
//! Spec: specs/L2T-12-sim.md#report

use std::fmt::Write as _;
use std::path::Path;

use crate::invariants::{loss_gap, InvariantError};
use crate::report::{sats, Report};

/// Write the run's files into `dir` (created if missing).
pub fn write_fast(
    dir: &Path,
    report: &Report,
    clean: Option<&Report>,
    result: &Result<(), InvariantError>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::json!({ "report": report, "clean": clean });
    std::fs::write(
        dir.join("sim-report.json"),
        serde_json::to_vec_pretty(&json)?,
    )?;
    std::fs::write(dir.join("sim-report.md"), markdown(report, clean, result))?;
    let with = report.loss_curve();
    let without = clean.map(Report::loss_curve);
    let mut series: Vec<(&str, &[(u64, f64)])> = vec![("with adversaries", &with)];
    if let Some(c) = &without {
        series.push(("without adversaries", c));
    }
    let title = format!(
        "{} (seed {}): held-out loss per round (fast mode, loss model)",
        report.scenario, report.seed
    );
    crate::plot::loss_svg(&title, &series, &dir.join("loss.svg"))?;
    let bars: Vec<(String, u64)> = report
        .kinds
        .iter()
        .filter(|(_, k)| k.submissions > 0)
        .map(|(name, k)| (name.clone(), sats(k.earned_msat)))
        .collect();
    let title = format!(
        "{} (seed {}): sats paid per actor type (fast mode)",
        report.scenario, report.seed
    );
    crate::plot::sats_by_kind_svg(&title, &bars, &dir.join("sats.svg"))?;
    Ok(())
}

/// The Markdown report: summary, detection table per worker type, loss per round, invariants.
pub fn markdown(
    report: &Report,
    clean: Option<&Report>,
    result: &Result<(), InvariantError>,
) -> String {
    let r = report;
    let mut s = format!(
        "# l402-sim fast mode: {}\n\nseed {} · rounds {}/{} · {} simulated s · event-log hash `{}`\n\n",
        r.scenario, r.seed, r.rounds_completed, r.rounds_wanted, r.simulated_secs, r.event_log_hash
    );
    let (honest, attackers) = r.shares();
    let h = &r.htlc;
    let _ = writeln!(
        s,
        "honest share {:.2} % · attacker share {:.2} % of {} sats paid to workers · hold invoices \
         {} ({} settled, {} failed back, {} expired and refunded, {} stuck, {} still held)\n",
        honest * 100.0,
        attackers * 100.0,
        sats(r.honest_paid_msat + r.attacker_payout_msat),
        h.invoices,
        h.settled,
        h.failed_back,
        h.expired_refunded,
        h.stuck,
        h.still_held
    );
    s.push_str(
        "| actor type | actors | submitted | merged | not merged | paid sats | tolls sats | detected by |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (kind, k) in r.kinds.iter().filter(|(_, k)| k.submissions > 0) {
        let _ = writeln!(
            s,
            "| {kind} | {} | {} | {} | {} | {} | {} | {} |",
            k.actors,
            k.submissions,
            k.accepted,
            k.rejected,
            sats(k.earned_msat),
            sats(k.tolls_msat),
            k.detected_text()
        );
    }
    s.push_str("\n| round | submissions | merged | honest sats | attacker sats | held-out loss | without adversaries |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    let clean_curve = clean.map(Report::loss_curve);
    for (round, loss) in r.loss_curve() {
        let c = clean_curve
            .as_ref()
            .and_then(|c| c.iter().find(|(cr, _)| *cr == round))
            .map_or("–".to_owned(), |(_, l)| format!("{l:.4}"));
        let rr = r.rounds.iter().find(|x| x.round == round);
        let cell = |f: &dyn Fn(&crate::report::RoundReport) -> u64| {
            rr.map_or("–".to_owned(), |x| f(x).to_string())
        };
        let _ = writeln!(
            s,
            "| {round} | {} | {} | {} | {} | {loss:.4} | {c} |",
            cell(&|x| x.submissions),
            cell(&|x| x.merged),
            cell(&|x| sats(x.honest_paid_msat)),
            cell(&|x| sats(x.attacker_paid_msat)),
        );
    }
    if let Some(c) = clean {
        let _ = writeln!(
            s,
            "\nfinal held-out loss {:.4} vs {:.4} without adversaries ({:+.2} %)",
            r.final_loss(),
            c.final_loss(),
            loss_gap(r, c) * 100.0
        );
    }
    match result {
        Ok(()) => s.push_str("\ninvariants: all hold\n"),
        Err(e) => {
            s.push_str("\n**invariant violations**\n\n");
            for v in &e.violations {
                let _ = writeln!(s, "- {v}");
            }
            let _ = writeln!(
                s,
                "\nreplay: `l402-sim run <scenario> --seed {} --rounds {}`",
                e.seed, e.rounds
            );
        }
    }
    s
}
