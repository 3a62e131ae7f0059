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

/// A named, coloured line of `(round, sats)` points.
type Series = (&'static str, RGBColor, Vec<(u64, u64)>);

/// Write the payouts-per-round plot of `report` to `path` (SVG).
pub fn payouts_svg(report: &Report, path: &Path) -> Result<(), PlotError> {
    let rounds = report.rounds.len().max(1) as u64;
    let series: [Series; 3] = [
        (
            "honest workers",
            RGBColor(0x1b, 0x9e, 0x77),
            report
                .rounds
                .iter()
                .map(|r| (r.round, sats(r.honest_paid_msat)))
                .collect(),
        ),
        (
            "adversaries",
            RGBColor(0xd9, 0x5f, 0x02),
            report
                .rounds
                .iter()
                .map(|r| (r.round, sats(r.attacker_paid_msat)))
                .collect(),
        ),
        (
            "refunded to payer",
            RGBColor(0x75, 0x70, 0xb3),
            report
                .rounds
                .iter()
                .map(|r| (r.round, sats(r.refunded_msat)))
                .collect(),
        ),
    ];
    let ymax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .max()
        .unwrap_or(1)
        .max(1);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!("{} (seed {}): sats per round", report.scenario, report.seed);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(1u64..rounds.max(2), 0u64..ymax + ymax / 10 + 1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("sats")
        .draw()
        .map_err(err)?;
    for (name, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(err)?
            .label(name)
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
