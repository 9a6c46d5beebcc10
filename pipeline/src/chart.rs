//! `--chart FILE.png|svg`: average review length by star rating, all reviews next to helpful ones, as grouped bars
//! (plotters). The font is compiled in (DejaVu Sans), so charts draw the same on machines without fonts.

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
        "png" => draw(BitMapBackend::new(&tmp, SIZE).into_drawing_area(), rows, title),
        "svg" => draw(SVGBackend::new(&tmp, SIZE).into_drawing_area(), rows, title),
        other => return Err(chart_err(format!("unknown chart type {other:?}: use .png or .svg"))),
    };
    let result = drawn.map_err(chart_err).and_then(|()| std::fs::rename(&tmp, path).map_err(Error::io(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
}
