//! `revgen demo`: the main job, end to end on data it makes itself, with no network.
//!
//! Stages so far:
//! 1. synthesise an Amazon Customer Reviews dump (`.tsv.gz`, the AWS format) and compare it with the published
//!    figures it reproduces.
//!
//! Each later stage (stats, prepare, train, generate) is appended here, so the demo always runs the whole flow.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use revgen_pipeline::synth::{self, MEAN_CHARS_ALL, MEAN_CHARS_HELPFUL, STAR_COUNTS, SynthConfig, SynthSummary};

use crate::{Error, Result};

/// Settings of a demo run.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Working directory; its demo outputs are replaced on every run.
    pub dir: PathBuf,
    /// Rows of the synthetic dump.
    pub rows: u64,
    pub seed: u64,
}

/// What the demo made.
#[derive(Clone, Debug)]
pub struct DemoReport {
    pub dump: SynthSummary,
}

pub fn run(config: &DemoConfig) -> Result<DemoReport> {
    fs::create_dir_all(&config.dir).map_err(|source| Error::Io { path: config.dir.clone(), source })?;
    let dump_path = config.dir.join("dump").join("amazon_reviews_us_Synthetic_v1_00.tsv.gz");
    let synth_config =
        SynthConfig { rows: config.rows, seed: config.seed, malformed_rate: 0.001, ..Default::default() };
    let dump = synth::write_dump(&synth_config, &dump_path)?;
    Ok(DemoReport { dump })
}

impl DemoReport {
    /// A readable account of each stage, for the terminal.
    pub fn render(&self) -> String {
        let d = &self.dump;
        let mut out = String::new();
        let _ = writeln!(out, "1. synthetic dump: {}", d.path.display());
        let _ = writeln!(
            out,
            "   {} rows ({} valid, {} malformed), {:.1} MiB {}",
            d.rows,
            d.valid,
            d.malformed,
            d.bytes as f64 / (1024.0 * 1024.0),
            d.format
        );
        let total_target: u64 = STAR_COUNTS.iter().sum();
        let row = |out: &mut String, cells: [&str; 4]| {
            let _ = writeln!(out, "   {:<6}  {:<15}  {:<20}  {}", cells[0], cells[1], cells[2], cells[3]);
        };
        row(&mut out, ["rating", "share (target)", "mean chars (target)", "helpful mean chars (target)"]);
        for rating in 1..=5u8 {
            let i = rating as usize - 1;
            let share = d.reviews_per_rating[&rating] as f64 / d.valid.max(1) as f64;
            let target_share = STAR_COUNTS[i] as f64 / total_target as f64;
            row(
                &mut out,
                [
                    &rating.to_string(),
                    &format!("{:.1}% ({:.1}%)", 100.0 * share, 100.0 * target_share),
                    &format!("{:.1} ({:.0})", d.mean_body_chars[&rating], MEAN_CHARS_ALL[i]),
                    &format!("{:.1} ({:.0})", d.mean_body_chars_helpful[&rating], MEAN_CHARS_HELPFUL[i]),
                ],
            );
        }
        let _ = writeln!(
            out,
            "   helpful (>= 1 vote): {:.1}% (target {:.1}%)",
            100.0 * d.helpful as f64 / d.valid.max(1) as f64,
            100.0 * synth::HELPFUL_OVERALL
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_writes_the_dump_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = DemoConfig { dir: dir.path().to_owned(), rows: 2_000, seed: 3 };
        let report = run(&config).unwrap();
        assert_eq!(report.dump.rows, 2_000);
        assert!(report.dump.path.exists());
        let text = report.render();
        assert!(text.contains("2000 rows"), "{text}");
        // A second run replaces the outputs instead of failing or appending.
        let again = run(&config).unwrap();
        assert_eq!(again.dump.bytes, report.dump.bytes);
    }
}
