//! `l402-sim heatmap`: the final held-out loss gap to the attack-free run over Byzantine share
//! (0, 10, 20, 30, 40 % of the workers) × attack type, in fast mode with the calibrated loss
//! model (`world::FakeLossModel`), averaged over seeds. Real-mode runs (`run --real
//! --compare-clean`) can be added as measured cells, and `--real-column <base>` measures one
//! share (30 % by default) for every attack real nodes can show, each against one shared
//! attack-free swarm ([`real_column`]).
//!
//! Each cell runs the base scenario with that share of its workers turned into the attack
//! (the honest peers are the rest, so the swarm keeps its size), once per seed, and compares
//! its final held-out loss with the same honest peers alone on the same seed (the attackers
//! removed, `Scenario::without_adversaries`, as real mode's `--compare-clean` does): the gap is
//! the damage the attackers do, not the work they did not contribute. The colluding-validators row also
//! turns that share of the validator pool into colluders, which accept the poisoners'
//! sign-flipped updates: the row where the defence is expected to give way once a committee
//! holds `k` of them.
//!
//! Spec: specs/L2T-12-sim.md#heatmap

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::invariants::{check, loss_gap, relative_gap, LOSS_GAP_MAX};
use crate::scenario::{PoisonKind, Scenario, ScenarioError};
use crate::sweep::run_threads;

/// Byzantine shares of the columns, in percent of the workers.
pub const SHARES: [u32; 5] = [0, 10, 20, 30, 40];

/// One attack type of the heatmap's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    /// Resubmit another peer's blob (A1).
    FreeRider,
    /// Copy a released blob and perturb it.
    Copycat,
    /// ALIE: mean − z·σ of the honest updates seen.
    Alie,
    /// Train on round r − 2's checkpoint.
    Stale,
    /// The negated honest update (A3).
    SignFlip,
    /// The honest update × 10 (A4).
    Scaled,
    /// Gaussian noise, σ = 3 honest norms (A4).
    Noise,
    /// Sybil identities submitting junk, half with a paid token (A6).
    Sybil,
    /// `mixed` attackers: each rotates through free-rider (a zero update), copycat, sign-flip
    /// and ALIE, one attack per round (real mode's `mixed`).
    Mixed,
    /// That share of the validator pool colludes, and that share of the workers sign-flips.
    ColludingValidators,
}

impl Attack {
    /// Every row, in order.
    pub const ALL: [Attack; 10] = [
        Attack::FreeRider,
        Attack::Copycat,
        Attack::Alie,
        Attack::Stale,
        Attack::SignFlip,
        Attack::Scaled,
        Attack::Noise,
        Attack::Sybil,
        Attack::Mixed,
        Attack::ColludingValidators,
    ];

    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Attack::FreeRider => "free-rider",
            Attack::Copycat => "copycat + noise",
            Attack::Alie => "ALIE",
            Attack::Stale => "stale (r − 2)",
            Attack::SignFlip => "sign-flip",
            Attack::Scaled => "scaled ×10",
            Attack::Noise => "noise σ = 3",
            Attack::Sybil => "Sybil junk",
            Attack::Mixed => "mixed",
            Attack::ColludingValidators => "colluding validators",
        }
    }
}

/// `base` with `pct` % of its workers (`peers.honest` of the base) turned into `attack`.
pub fn scenario_for(base: &Scenario, attack: Attack, pct: u32) -> Scenario {
    let mut s = base.without_adversaries();
    let workers = base.peers.honest;
    let a = (workers * pct as usize + 50) / 100;
    s.name = format!("{} · {} · {pct} %", base.name, attack.label());
    s.peers.honest = workers - a;
    let p = &mut s.peers;
    match attack {
        Attack::FreeRider => p.free_riders = a,
        Attack::Copycat => p.copycats = a,
        Attack::Alie => p.alie = a,
        Attack::Stale => p.stale = a,
        Attack::SignFlip => p.poisoners = a,
        Attack::Scaled => {
            p.poisoners = a;
            p.poison = PoisonKind::Scaled { lambda: 10.0 };
        }
        Attack::Noise => {
            p.poisoners = a;
            p.poison = PoisonKind::Noise { sigma: 3.0 };
        }
        Attack::Sybil => p.sybils = a,
        Attack::Mixed => p.mixed = a,
        Attack::ColludingValidators => {
            p.poisoners = a;
            let v = &mut s.validators;
            v.colluding = (v.pool * pct as usize + 50) / 100;
        }
    }
    s
}

/// One cell: an attack at a share, over the seeds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    /// Attack.
    pub attack: Attack,
    /// Byzantine share, percent.
    pub share_pct: u32,
    /// Mean over the seeds of the final loss gap `(attacked − clean) / clean`.
    pub loss_gap: f64,
    /// Largest gap over the seeds.
    pub max_loss_gap: f64,
    /// Smallest honest share of the sats paid to workers, over the seeds.
    pub min_honest_share: f64,
    /// Largest attacker share.
    pub max_attacker_share: f64,
    /// Seeds whose run broke an invariant (the seeds are listed).
    pub failing_seeds: Vec<u64>,
}

/// A real-mode run's measured cell (from its `sim-report.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RealCell {
    /// The real scenario.
    pub scenario: String,
    /// The attack, when measured by [`real_column`].
    #[serde(default)]
    pub attack: Option<Attack>,
    /// Whether every real-mode invariant held in the run.
    #[serde(default = "yes")]
    pub invariants_hold: bool,
    /// Wall time of the attacked swarm, seconds.
    #[serde(default)]
    pub wall_secs: f64,
    /// Byzantine peers over all peers, percent.
    pub share_pct: u32,
    /// Final loss gap to its attack-free swarm.
    pub loss_gap: f64,
    /// Honest share of the sats paid to peers.
    pub honest_share: f64,
    /// Attacker share.
    pub attacker_share: f64,
}

/// The whole heatmap.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Heatmap {
    /// Base scenario.
    pub base: String,
    /// Seeds per cell (first seed `first_seed`).
    pub seeds: u64,
    /// First seed.
    pub first_seed: u64,
    /// Rounds per run.
    pub rounds: u64,
    /// Fast-mode cells, row by row.
    pub cells: Vec<Cell>,
    /// Real-mode cells.
    pub real: Vec<RealCell>,
    /// Wall time of the fast-mode runs, seconds.
    pub wall_secs: f64,
}

/// Run every cell: `seeds` seeds from `first_seed`, each attacked run against its honest peers
/// alone on the same seed. `progress` is called after each run.
pub fn run(
    base: &Scenario,
    first_seed: u64,
    seeds: u64,
    rounds: Option<u64>,
    threads: usize,
    mut progress: impl FnMut(),
) -> Result<Heatmap, ScenarioError> {
    let started = std::time::Instant::now();
    let rounds_n = rounds.unwrap_or(base.rounds);
    // The attack-free runs, by (share, seed): the honest peers of that share, alone.
    let mut clean = BTreeMap::new();
    for pct in SHARES {
        let sc = scenario_for(base, Attack::SignFlip, pct).without_adversaries();
        for seed in first_seed..first_seed + seeds {
            clean.insert((pct, seed), run_threads(&sc, seed, rounds, threads)?);
            progress();
        }
    }
    let mut cells = Vec::new();
    for attack in Attack::ALL {
        for pct in SHARES {
            let sc = scenario_for(base, attack, pct);
            let mut cell = Cell {
                attack,
                share_pct: pct,
                loss_gap: 0.0,
                max_loss_gap: f64::MIN,
                min_honest_share: 1.0,
                max_attacker_share: 0.0,
                failing_seeds: Vec::new(),
            };
            for seed in first_seed..first_seed + seeds {
                let c = &clean[&(pct, seed)];
                let r = if pct == 0 {
                    c.clone()
                } else {
                    progress();
                    run_threads(&sc, seed, rounds, threads)?
                };
                let gap = loss_gap(&r, c);
                cell.loss_gap += gap / seeds as f64;
                cell.max_loss_gap = cell.max_loss_gap.max(gap);
                let (h, a) = r.shares();
                cell.min_honest_share = cell.min_honest_share.min(h);
                cell.max_attacker_share = cell.max_attacker_share.max(a);
                if check(&r).is_err() {
                    cell.failing_seeds.push(seed);
                }
            }
            cells.push(cell);
        }
    }
    Ok(Heatmap {
        base: base.name.clone(),
        seeds,
        first_seed,
        rounds: rounds_n,
        cells,
        real: Vec::new(),
        wall_secs: started.elapsed().as_secs_f64(),
    })
}

fn yes() -> bool {
    true
}

/// The cells of the real column: each attack whose scenario real mode runs, with it.
pub fn real_attacks(base: &Scenario, pct: u32) -> Vec<(Attack, Scenario)> {
    Attack::ALL
        .into_iter()
        .map(|a| (a, scenario_for(base, a, pct)))
        .filter(|(_, sc)| sc.check_mode(crate::scenario::Mode::Real).is_ok())
        .collect()
}

impl Attack {
    /// The attack's name in JSON and on the command line (`free-rider`, `copycat`, …).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// The real-mode column: `pct` % of `base`'s workers turned into each attack real nodes can show
/// (the scaled and noise poisons and Sybils have no real-mode injection point and are skipped),
/// each run as a real swarm of `rounds` rounds and compared with one attack-free swarm of the
/// same honest peers, run first. Each swarm's data dirs and `sim-report.{json,md}` go under
/// `dir/<attack>/` (the baseline's under `dir/clean/`); `only` (attack names, empty: all)
/// picks cells; `progress` is told each swarm's name before it starts.
pub fn real_column(
    base: &Scenario,
    pct: u32,
    rounds: Option<u64>,
    dir: &Path,
    exe: l402_node::cli::demo::NodeExe,
    only: &[String],
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Vec<RealCell>> {
    let rounds = rounds.unwrap_or(base.rounds);
    let attacks: Vec<(Attack, Scenario)> = real_attacks(base, pct)
        .into_iter()
        .filter(|(a, _)| only.is_empty() || only.contains(&a.name()))
        .collect();
    if attacks.is_empty() {
        anyhow::bail!("{}: no attack runs in real mode on this base", base.name);
    }
    progress("attack-free baseline");
    let clean_sc = scenario_for(base, Attack::SignFlip, pct).without_adversaries();
    let clean = crate::real::swarm(
        &clean_sc,
        rounds,
        &dir.join("clean").join("swarm"),
        exe.clone(),
    )?;
    let clean_report = crate::real::figures(&clean_sc, rounds, &clean, None);
    std::fs::create_dir_all(dir.join("clean"))?;
    clean_report.write(&dir.join("clean"))?;
    let mut cells = Vec::new();
    for (attack, sc) in attacks {
        progress(attack.label());
        let d = dir.join(format!("{attack:?}").to_lowercase());
        let demo = crate::real::swarm(&sc, rounds, &d.join("swarm"), exe.clone())?;
        let report = crate::real::figures(&sc, rounds, &demo, Some(&clean));
        report.write(&d)?;
        // The same reading as a `--real-report` file's.
        let mut cell = real_cell(&serde_json::to_value(&report)?)
            .ok_or_else(|| anyhow::anyhow!("{}: the report has no loss comparison", sc.name))?;
        cell.attack = Some(attack);
        cells.push(cell);
    }
    Ok(cells)
}

/// Read a real-mode `sim-report.json` (written by `run --real --compare-clean`) as a cell.
pub fn real_cell(report: &serde_json::Value) -> Option<RealCell> {
    let last = |key: &str| {
        report[key]
            .as_array()?
            .iter()
            .filter_map(|p| Some((p[0].as_u64()?, p[1].as_f64()?)))
            .max_by_key(|p| p.0)
            .map(|p| p.1)
    };
    let (a, c) = (last("heldout_loss")?, last("clean_heldout_loss")?);
    // A `mixed` node's submissions are split per attack (`mixed:<attack>`), each row
    // counting all its nodes: count a behaviour's nodes once.
    let mut nodes: BTreeMap<&str, u64> = BTreeMap::new();
    for (behaviour, t) in report["by_behaviour"].as_object()? {
        let n = t["nodes"].as_u64().unwrap_or(0);
        let kind = behaviour.split(':').next().unwrap_or(behaviour);
        let e = nodes.entry(kind).or_insert(0);
        *e = (*e).max(n);
    }
    let peers: u64 = nodes.values().sum();
    let byz = peers - nodes.get("honest").copied().unwrap_or(0);
    let invariants_hold = report["invariants"].as_array().is_some_and(|v| {
        v.iter()
            .all(|i| i["holds"] == serde_json::Value::Bool(true))
    });
    Some(RealCell {
        scenario: report["scenario"].as_str()?.to_owned(),
        attack: None,
        invariants_hold,
        wall_secs: report["wall_secs"].as_f64().unwrap_or(0.0),
        share_pct: (byz * 100).checked_div(peers)? as u32,
        loss_gap: relative_gap(a, c).unwrap_or(0.0),
        honest_share: report["honest_share"].as_f64()?,
        attacker_share: report["attacker_share"].as_f64()?,
    })
}

impl Heatmap {
    /// The cell of `attack` at `pct`.
    pub fn cell(&self, attack: Attack, pct: u32) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.attack == attack && c.share_pct == pct)
    }

    /// A Markdown table with a row per attack and a column per share, each cell `cell(c)`.
    fn table(&self, s: &mut String, cell: impl Fn(&Cell) -> String) {
        s.push_str("| attack |");
        for p in SHARES {
            let _ = write!(s, " {p} % |");
        }
        s.push_str("\n|---|");
        for _ in SHARES {
            s.push_str("---:|");
        }
        s.push('\n');
        for attack in Attack::ALL {
            let _ = write!(s, "| {} |", attack.label());
            for p in SHARES {
                match self.cell(attack, p) {
                    Some(c) => {
                        let _ = write!(s, " {} |", cell(c));
                    }
                    None => s.push_str(" – |"),
                }
            }
            s.push('\n');
        }
    }

    /// Markdown: the gap table, the pay table, the real-mode cells.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "# Final held-out loss gap over Byzantine share × attack ({}, fast mode)\n\n\
             {} seeds from {} · {} rounds · gap = (attacked − attack-free) / attack-free of the \
             final held-out loss, the attack-free run being the same honest peers alone on the \
             same seed; mean over the seeds (largest in brackets) · {:.1} s\n\n",
            self.base, self.seeds, self.first_seed, self.rounds, self.wall_secs
        );
        self.table(&mut s, |c| {
            let mark = if c.max_loss_gap > LOSS_GAP_MAX {
                " **>5 %**"
            } else {
                ""
            };
            format!(
                "{:+.2} % ({:+.2}){mark}",
                c.loss_gap * 100.0,
                c.max_loss_gap * 100.0
            )
        });
        s.push_str("\nHonest share of the sats paid to workers (lowest over the seeds) / attacker share (highest):\n\n");
        self.table(&mut s, |c| {
            let broken = if c.failing_seeds.is_empty() {
                String::new()
            } else {
                format!(" (invariant broken, seeds {:?})", c.failing_seeds)
            };
            format!(
                "{:.1} / {:.1} %{broken}",
                c.min_honest_share * 100.0,
                c.max_attacker_share * 100.0
            )
        });
        if !self.real.is_empty() {
            s.push_str("\nReal mode (one run each against an attack-free swarm of the same honest peers):\n\n| scenario | Byzantine share | loss gap | honest share | attacker share | invariants | swarm wall |\n|---|---:|---:|---:|---:|---|---:|\n");
            for r in &self.real {
                let _ = writeln!(
                    s,
                    "| {} | {} % | {:+.2} % | {:.2} % | {:.2} % | {} | {:.0} s |",
                    r.scenario,
                    r.share_pct,
                    r.loss_gap * 100.0,
                    r.honest_share * 100.0,
                    r.attacker_share * 100.0,
                    if r.invariants_hold {
                        "hold"
                    } else {
                        "**broken**"
                    },
                    r.wall_secs
                );
            }
        }
        s
    }

    /// Write the heatmap as SVG: one coloured square per cell (white at 0, red at +10 % and
    /// above, blue below 0), labelled with its mean gap; real-mode cells in a last column.
    pub fn to_svg(&self, path: &Path) -> anyhow::Result<()> {
        let rows = Attack::ALL.len() as i32;
        let cols = SHARES.len() as i32 + i32::from(!self.real.is_empty());
        let root = SVGBackend::new(path, (220 + 120 * cols as u32, 120 + 44 * rows as u32))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "final held-out loss gap, {} ({} seeds, {} rounds)",
            self.base, self.seeds, self.rounds
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(180)
            // Cells are centred on integer coordinates, so the axis ticks label them.
            .build_cartesian_2d(-0.5..cols as f64 - 0.5, -0.5..rows as f64 - 0.5)?;
        let at = |v: f64| (v - v.round()).abs() < 1e-6;
        let x_label = |x: &f64| match SHARES.get(x.round() as usize) {
            Some(p) if at(*x) => format!("{p} % Byzantine"),
            None if at(*x) => "real mode".into(),
            _ => String::new(),
        };
        let y_label = |y: &f64| {
            Attack::ALL
                .get((rows - 1 - y.round() as i32) as usize)
                .filter(|_| at(*y))
                .map_or(String::new(), |a| a.label().to_owned())
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(cols as usize)
            .y_labels(rows as usize)
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .draw()?;
        let colour = |gap: f64| {
            let t = (gap.abs() / 0.10).min(1.0);
            let fade = (255.0 * (1.0 - t)) as u8;
            if gap >= 0.0 {
                RGBColor(255, fade, fade)
            } else {
                RGBColor(fade, fade, 255)
            }
        };
        let mut squares = Vec::new();
        for (row, attack) in Attack::ALL.iter().enumerate() {
            let y = rows - 1 - row as i32;
            for (col, p) in SHARES.iter().enumerate() {
                if let Some(c) = self.cell(*attack, *p) {
                    squares.push((col as i32, y, c.loss_gap));
                }
            }
            if let Some(r) = self.real.iter().find(|r| match (r.attack, attack) {
                (Some(a), b) => a == *b,
                (None, Attack::Mixed) => r.scenario.contains("mixed"),
                _ => false,
            }) {
                squares.push((SHARES.len() as i32, y, r.loss_gap));
            }
        }
        chart.draw_series(squares.iter().map(|(x, y, g)| {
            let (x, y) = (f64::from(*x), f64::from(*y));
            Rectangle::new(
                [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                colour(*g).filled(),
            )
        }))?;
        chart.draw_series(squares.iter().map(|(x, y, g)| {
            Text::new(
                format!("{:+.1} %", g * 100.0),
                (f64::from(*x) - 0.2, f64::from(*y) + 0.1),
                ("sans-serif", 15),
            )
        }))?;
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn base() -> Scenario {
        Scenario::from_toml(
            "name = \"h\"\nrounds = 3\n[peers]\nhonest = 10\n[validators]\npool = 5\ncommittee = 5\nk = 3",
        )
        .unwrap()
    }

    #[test]
    fn a_cell_keeps_the_swarm_size_and_sets_the_share() {
        let b = base();
        let s = scenario_for(&b, Attack::Mixed, 40);
        let p = &s.peers;
        assert_eq!(p.honest, 6);
        assert_eq!((p.mixed, p.free_riders, p.poisoners), (4, 0, 0));
        let c = scenario_for(&b, Attack::ColludingValidators, 40);
        assert_eq!((c.peers.poisoners, c.validators.colluding), (4, 2));
        let z = scenario_for(&b, Attack::Scaled, 0);
        assert_eq!((z.peers.honest, z.peers.poisoners), (10, 0));
        // A failing cell's scenario is written out as TOML: it must load back the same.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Scenario::from_toml(&text).unwrap(), c);
    }

    #[test]
    fn the_heatmap_measures_a_gap_where_merged_work_is_worse() {
        let b = base();
        let h = run(&b, 1, 1, None, 1, || {}).unwrap();
        assert_eq!(h.cells.len(), Attack::ALL.len() * SHARES.len());
        for a in Attack::ALL {
            assert_eq!(h.cell(a, 0).unwrap().loss_gap, 0.0, "{a:?} at 0 %");
        }
        // Sign-flips are rejected: no gap beyond noise. Stale updates are merged and slow the
        // loss down: a positive gap that grows with their share.
        assert!(h.cell(Attack::SignFlip, 40).unwrap().max_loss_gap < LOSS_GAP_MAX);
        let s20 = h.cell(Attack::Stale, 20).unwrap().loss_gap;
        let s40 = h.cell(Attack::Stale, 40).unwrap().loss_gap;
        assert!(0.0 < s20 && s20 < s40, "stale {s20} {s40}");
        let md = h.to_markdown();
        assert!(md.contains("| colluding validators |"), "{md}");
        let dir = tempfile::tempdir().unwrap();
        h.to_svg(&dir.path().join("h.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("h.svg")).unwrap();
        assert!(
            svg.contains("real mode") || svg.contains("Byzantine"),
            "labels"
        );
    }

    #[test]
    fn a_real_report_becomes_a_cell() {
        let v = serde_json::json!({
            "scenario": "real-mixed",
            "heldout_loss": [[0, 5.5], [5, 3.1]],
            "clean_heldout_loss": [[0, 5.5], [5, 3.0]],
            "by_behaviour": {"honest": {"nodes": 7}, "mixed:alie": {"nodes": 3}, "mixed:sign-flip": {"nodes": 3}},
            "honest_share": 1.0,
            "attacker_share": 0.0
        });
        let c = real_cell(&v).unwrap();
        assert_eq!(c.share_pct, 30);
        assert!((c.loss_gap - 0.1 / 3.0).abs() < 1e-9);
        assert!(real_cell(&serde_json::json!({"scenario": "x"})).is_none());
    }

    #[test]
    fn the_real_column_runs_what_real_nodes_can_show_and_reports_a_broken_cell() {
        let mut b = base();
        b.modes = vec![crate::scenario::Mode::Real];
        let attacks: Vec<Attack> = real_attacks(&b, 30).into_iter().map(|(a, _)| a).collect();
        assert_eq!(Attack::Copycat.name(), "copycat");
        assert_eq!(Attack::ColludingValidators.name(), "colluding-validators");
        // Scaled and noise poisons and Sybils have no real-mode injection point.
        assert_eq!(
            attacks,
            vec![
                Attack::FreeRider,
                Attack::Copycat,
                Attack::Alie,
                Attack::Stale,
                Attack::SignFlip,
                Attack::Mixed,
                Attack::ColludingValidators
            ]
        );
        let mut h = run(&base(), 1, 1, Some(1), 1, || {}).unwrap();
        h.real.push(RealCell {
            scenario: "h · stale (r − 2) · 30 %".into(),
            attack: Some(Attack::Stale),
            invariants_hold: false,
            wall_secs: 200.0,
            share_pct: 30,
            loss_gap: 0.02,
            honest_share: 0.7,
            attacker_share: 0.3,
        });
        let md = h.to_markdown();
        assert!(
            md.contains("| +2.00 % | 70.00 % | 30.00 % | **broken** | 200 s |"),
            "{md}"
        );
        let dir = tempfile::tempdir().unwrap();
        h.to_svg(&dir.path().join("h.svg")).unwrap();
    }
}
