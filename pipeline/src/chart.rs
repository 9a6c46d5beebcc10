//! Charts (plotters): `stats --chart FILE.png|svg`, average review length by star rating, all reviews next to
//! helpful ones, as grouped bars; and `revgen plot`, a training run's loss curves as lines. The font is compiled in (DejaVu Sans), so charts draw the same on machines without fonts.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::stats::StatsRow;
use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

const SIZE: (u32, u32) = (900, 540);
const ALL: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const HELPFUL: RGBColor = RGBColor(0xdd, 0x84, 0x52);

/// Draws the chart to `path`; the extension picks PNG or SVG. The file appears complete or not at all.
pub fn draw_lengths(rows: &[StatsRow], title: &str, path: &Path) -> Result<()> {
    save(
        path,
        |tmp| draw(BitMapBackend::new(tmp, SIZE).into_drawing_area(), rows, title),
        |tmp| draw(SVGBackend::new(tmp, SIZE).into_drawing_area(), rows, title),
    )
}

/// A named line of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws `series` as lines (a marker on each point of short series), such as a run's train and val loss by step.
/// The extension of `path` picks PNG or SVG; the file appears complete or not at all.
pub fn draw_lines(series: &[Series], title: &str, x_desc: &str, y_desc: &str, path: &Path) -> Result<()> {
    let labels = Labels { title, x_desc, y_desc };
    save(
        path,
        |tmp| draw_series(BitMapBackend::new(tmp, SIZE).into_drawing_area(), series, &labels),
        |tmp| draw_series(SVGBackend::new(tmp, SIZE).into_drawing_area(), series, &labels),
    )
}

/// Runs the PNG or SVG drawing (chosen by the extension) into a temporary file beside `path`, then renames it.
fn save(
    path: &Path,
    png: impl FnOnce(&Path) -> Result<(), String>,
    svg: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<()> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bytes are a valid font compiled in; a failure here would be a build error in disguise.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let chart_err = |reason: String| Error::Chart { path: path.to_owned(), reason };
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    // The backends pick the encoding from the extension, so the temporary keeps it.
    let tmp = path.with_file_name(format!(".tmp-{}-{name}", std::process::id()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let drawn = match extension.as_str() {
        "png" => png(&tmp),
        "svg" => svg(&tmp),
        other => return Err(chart_err(format!("unknown chart type {other:?}: use .png or .svg"))),
    };
    let result = drawn.map_err(chart_err).and_then(|()| std::fs::rename(&tmp, path).map_err(Error::io(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

struct Labels<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
}

const LINE_COLORS: [RGBColor; 4] = [ALL, HELPFUL, RGBColor(0x55, 0xa8, 0x68), RGBColor(0xc4, 0x4e, 0x52)];

fn draw_series<DB: DrawingBackend>(
    area: DrawingArea<DB, Shift>,
    series: &[Series],
    labels: &Labels,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let points = || series.iter().flat_map(|s| s.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
    if points().next().is_none() {
        return Err("nothing to draw: no points".to_owned());
    }
    let (x0, x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };

    area.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&area)
        .caption(labels.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(labels.x_desc)
        .y_desc(labels.y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = LINE_COLORS[i % LINE_COLORS.len()];
        let line = s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite());
        // A plain path element: plotters' LineSeries needs a feature this workspace does not build.
        chart
            .draw_series(std::iter::once(PathElement::new(line.clone().collect::<Vec<_>>(), color.stroke_width(2))))
            .map_err(err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        if s.points.len() <= 50 {
            chart.draw_series(line.map(|p| Circle::new(p, 3, color.filled()))).map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    area.present().map_err(err)
}

fn draw<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, rows: &[StatsRow], title: &str) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mean = |subset: &str, rating: i32| {
        rows.iter()
            .filter(|r| r.subset == subset && r.star_rating == rating && r.group.is_empty())
            .map(|r| r.avg_review_length)
            .next()
    };
    let top = rows.iter().map(|r| r.avg_review_length).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let top = (top * 1.15).max(1.0);

    area.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..5.5f64, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| format!("{x:.0}★"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc("star rating")
        .y_desc("average review length (characters)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for (subset, color, offset) in [("all", ALL, -0.2), ("helpful", HELPFUL, 0.2)] {
        let bars = (1..=5).filter_map(|rating| {
            let value = mean(subset, rating)?;
            let x = f64::from(rating) + offset;
            Some(Rectangle::new([(x - 0.18, 0.0), (x + 0.18, value)], color.filled()))
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(subset)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    area.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<StatsRow> {
        let mut rows = Vec::new();
        for (subset, scale) in [("all", 1.0), ("helpful", 1.5)] {
            for rating in 1..=5 {
                rows.push(StatsRow {
                    subset: subset.into(),
                    group: Vec::new(),
                    star_rating: rating,
                    reviews: 10,
                    avg_review_length: scale * f64::from(100 + 40 * rating),
                    median_review_length: 0.0,
                    p90_review_length: 0.0,
                });
            }
        }
        rows
    }

    #[test]
    fn draws_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("lengths.png");
        draw_lengths(&rows(), "Review length by rating", &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let svg = dir.path().join("lengths.svg");
        draw_lengths(&rows(), "Review length by rating", &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("helpful") && text.contains("star rating"), "{text}");
        // Ten bars, plus the two legend swatches.
        assert!(text.matches("<rect").count() >= 12, "{text}");
        let err = draw_lengths(&rows(), "x", &dir.path().join("x.gif")).unwrap_err().to_string();
        assert!(err.contains("x.gif"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporaries left");
    }

    #[test]
    fn draws_loss_lines() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("loss.svg");
        let train = Series { name: "train".into(), points: (1..=40).map(|s| (s as f64, 5.0 / s as f64)).collect() };
        let val = Series { name: "val".into(), points: vec![(10.0, 0.9), (20.0, 0.5), (40.0, 0.4)] };
        draw_lines(&[train, val], "Loss", "step", "loss (nats)", &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<polyline") && text.contains("val") && text.contains("step"), "{text}");
        let empty = Series { name: "train".into(), points: Vec::new() };
        let err = draw_lines(&[empty], "Loss", "step", "loss", &dir.path().join("e.png")).unwrap_err().to_string();
        assert!(err.contains("e.png") && err.contains("no points"), "{err}");
    }
}
