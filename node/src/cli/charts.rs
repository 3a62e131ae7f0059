//! The demo report's SVG charts, with plotters' SVG backend (text is emitted as SVG `<text>`,
//! no font files needed): held-out loss per round, and each node's Lightning balance change.

use std::path::Path;

use plotters::prelude::*;

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("chart: {e}")
}

/// Held-out loss of each round's checkpoint (round 0: genesis) as a line chart.
pub fn loss_svg(points: &[(u64, f64)], path: &Path) -> anyhow::Result<()> {
    let last = points.iter().map(|p| p.0).max().unwrap_or(1).max(1);
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("held-out loss per round", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0u64..last, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("round (0 = genesis)")
        .y_desc("loss")
        .x_labels(points.len().max(2))
        .draw()
        .map_err(err)?;
    let color = RGBColor(0x1b, 0x9e, 0x77);
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))
        .map_err(err)?;
    chart
        .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Each node's Lightning balance change over the run (sats, positive = earned), as bars.
pub fn sats_svg(nodes: &[(String, i64)], path: &Path) -> anyhow::Result<()> {
    let n = nodes.len().max(1) as f64;
    let lo = nodes.iter().map(|x| x.1).min().unwrap_or(0).min(0) as f64;
    let hi = nodes.iter().map(|x| x.1).max().unwrap_or(0).max(0) as f64;
    let pad = ((hi - lo) * 0.1).max(1.0);
    let root = SVGBackend::new(path, (820, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let names: Vec<String> = nodes.iter().map(|x| x.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "sats per node (Lightning balance change)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..n - 0.5, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(nodes.len().max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("sats")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(nodes.iter().enumerate().map(|(i, (_, v))| {
            let color = if *v >= 0 {
                RGBColor(0x1b, 0x9e, 0x77)
            } else {
                RGBColor(0xd9, 0x5f, 0x02)
            };
            let x = i as f64;
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *v as f64)], color.filled())
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (loss, sats) = (dir.path().join("loss.svg"), dir.path().join("sats.svg"));
        loss_svg(&[(0, 5.6), (1, 5.4), (2, 5.1)], &loss)?;
        sats_svg(
            &[("coordinator".into(), -400_000), ("peer-0".into(), 200_000)],
            &sats,
        )?;
        let l = std::fs::read_to_string(&loss)?;
        let s = std::fs::read_to_string(&sats)?;
        assert!(l.starts_with("<svg") && l.contains("held-out loss"));
        assert!(s.contains("peer-0") && s.contains("coordinator"));
        Ok(())
    }
}
