//! An SVG plot of a run's payouts per round (honest workers, adversaries, refunds), with
//! plotters' SVG backend (text is emitted as SVG `<text>`, no font files needed).
//!
//! Spec: specs/L2T-12-sim.md#report

use std::path::Path;

use plotters::prelude::*;

use crate::report::{sats, Report};

/// Error writing the plot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// plotters failed (drawing or writing the file).
    #[error("plot: {0}")]
    Draw(String),
}

fn err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// A named, coloured line of `(round, value)` points.
type Series<'a> = (&'a str, RGBColor, Vec<(u64, f64)>);

/// Write the payouts-per-round plot of `report` to `path` (SVG).
pub fn payouts_svg(report: &Report, path: &Path) -> Result<(), PlotError> {
    let rounds = report.rounds.len().max(1) as u64;
    let line = |f: &dyn Fn(&crate::report::RoundReport) -> u64| -> Vec<(u64, f64)> {
        report
            .rounds
            .iter()
            .map(|r| (r.round, sats(f(r)) as f64))
            .collect()
    };
    let series: Vec<Series> = vec![
        (
            "honest workers",
            RGBColor(0x1b, 0x9e, 0x77),
            line(&|r| r.honest_paid_msat),
        ),
        (
            "adversaries",
            RGBColor(0xd9, 0x5f, 0x02),
            line(&|r| r.attacker_paid_msat),
        ),
        (
            "refunded to payer",
            RGBColor(0x75, 0x70, 0xb3),
            line(&|r| r.refunded_msat),
        ),
    ];
    let ymax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(1f64, f64::max);
    let title = format!("{} (seed {}): sats per round", report.scenario, report.seed);
    lines_svg(
        &title,
        ("sats", 0),
        1..rounds.max(2),
        0.0..ymax * 1.1 + 1.0,
        &series,
        path,
    )
}

/// Write a plot of held-out loss per round (round 0 = genesis) to `path` (SVG): one line per
/// named series, e.g. a run with its attackers and the same swarm without them.
pub fn loss_svg(
    title: &str,
    series: &[(&str, &[(u64, f64)])],
    path: &Path,
) -> Result<(), PlotError> {
    const COLORS: [RGBColor; 3] = [
        RGBColor(0xd9, 0x5f, 0x02),
        RGBColor(0x1b, 0x9e, 0x77),
        RGBColor(0x75, 0x70, 0xb3),
    ];
    let lines: Vec<Series> = series
        .iter()
        .enumerate()
        .map(|(i, (name, pts))| (*name, COLORS[i % COLORS.len()], pts.to_vec()))
        .collect();
    let points = || series.iter().flat_map(|s| s.1.iter());
    let rounds = points().map(|p| p.0).max().unwrap_or(1).max(1);
    let ymax = points().map(|p| p.1).fold(0f64, f64::max);
    let ymin = points().map(|p| p.1).fold(ymax, f64::min);
    let pad = ((ymax - ymin) * 0.1).max(0.01);
    lines_svg(
        title,
        ("held-out loss", 2),
        0..rounds,
        (ymin - pad)..(ymax + pad),
        &lines,
        path,
    )
}

/// One line per series over rounds, with a legend; `y` names the axis and its label decimals.
fn lines_svg(
    title: &str,
    (y_desc, decimals): (&str, usize),
    x: std::ops::Range<u64>,
    y: std::ops::Range<f64>,
    series: &[Series],
    path: &Path,
) -> Result<(), PlotError> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v:.decimals$}"))
        .draw()
        .map_err(err)?;
    for (name, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Write a bar chart of sats paid per actor type to `path` (SVG).
pub fn sats_by_kind_svg(title: &str, bars: &[(String, u64)], path: &Path) -> Result<(), PlotError> {
    let ymax = bars.iter().map(|b| b.1).max().unwrap_or(1).max(1);
    let n = bars.len().max(1) as u32;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(0u32..n, 0u64..ymax + ymax / 10 + 1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc("sats paid")
        .draw()
        .map_err(err)?;
    let color = RGBColor(0x1b, 0x9e, 0x77);
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let i = i as u32;
            Rectangle::new([(i, 0), (i + 1, *v)], color.filled())
        }))
        .map_err(err)?;
    // The actor type under each bar, and its value on top.
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (name, v))| {
            Text::new(
                format!("{name}: {v}"),
                (i as u32, *v + ymax / 40 + 1),
                ("sans-serif", 14),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
