//! `revgen demo`: the main job, end to end on data it makes itself, with no network.
//!
//! Stages so far:
//! 1. synthesise an Amazon Customer Reviews dump (`.tsv.gz`, the AWS format) and compare it with the published
//!    figures it reproduces;
//! 2. the stats report over that dump (sql/stats.sql), its malformed rows quarantined, with a chart;
//! 3. prepare (sql/prepare.sql): the helpful reviews as tagged training text in train/val shards, tokenized, with
//!    a manifest;
//! 4. train: a tiny GPT-2 (random start, pure-Rust backend) fine-tuned on those shards for a few hundred steps,
//!    with val loss, a sample, a checkpoint and the loss chart.
//!
//! Each later stage (stats, prepare, train, generate) is appended here, so the demo always runs the whole flow.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use std::sync::Arc;

use revgen_pipeline::output::{self, OutputFormat};
use revgen_pipeline::prepare::{PREPARE_SQL, PrepareConfig, PrepareJob, PrepareReport};
use revgen_pipeline::quarantine::RowLog;
use revgen_pipeline::query::Reviews;
use revgen_pipeline::source::StoreOptions;
use revgen_pipeline::stats::{self, StatsConfig, StatsReport};
use revgen_pipeline::synth::{self, MEAN_CHARS_ALL, MEAN_CHARS_HELPFUL, STAR_COUNTS, SynthConfig, SynthSummary};

use revgen_trainer::schedule::Schedule;
use revgen_trainer::train::{self, Resume, TrainConfig, TrainReport};

use crate::tokens::Gpt2Tokens;
use crate::{Error, Result};

/// Settings of a demo run.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Working directory; its demo outputs are replaced on every run.
    pub dir: PathBuf,
    /// Rows of the synthetic dump.
    pub rows: u64,
    pub seed: u64,
    /// Steps of the training stage.
    pub train_steps: u64,
}

/// What the demo made.
#[derive(Clone, Debug)]
pub struct DemoReport {
    pub dump: SynthSummary,
    pub stats: StatsReport,
    /// The stats as Markdown, and the chart.
    pub stats_file: PathBuf,
    pub chart_file: PathBuf,
    pub prepared: PrepareReport,
    pub trained: TrainReport,
    /// The last sample the run wrote, and the loss chart.
    pub sample: String,
    pub loss_chart: PathBuf,
}

/// The demo's training run: the `tiny` preset from its random start; 200 steps took 108 s on 2 cores.
pub fn train_config(steps: u64) -> TrainConfig {
    TrainConfig {
        model: "tiny".to_owned(),
        steps,
        batch_size: 4,
        grad_accum: 1,
        seq_len: 64,
        lr: 3e-3,
        schedule: Schedule::Cosine,
        warmup: 20,
        min_lr: 3e-4,
        weight_decay: 0.1,
        sample_every: steps,
        sample_length: 60,
        val_every: 50,
        val_batches: 8,
        save_every: 0,
        ..TrainConfig::default()
    }
}

pub fn run(config: &DemoConfig) -> Result<DemoReport> {
    fs::create_dir_all(&config.dir).map_err(|source| Error::Io { path: config.dir.clone(), source })?;
    let dump_path = config.dir.join("dump").join("amazon_reviews_us_Synthetic_v1_00.tsv.gz");
    let synth_config =
        SynthConfig { rows: config.rows, seed: config.seed, malformed_rate: 0.001, ..Default::default() };
    let dump = synth::write_dump(&synth_config, &dump_path)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io { path: config.dir.clone(), source })?;
    let dump_spec = [dump_path.to_string_lossy().into_owned()];
    let stats = runtime.block_on(async {
        let log = RowLog::with_quarantine(&config.dir.join("quarantine.jsonl"))?;
        let reviews = Reviews::open(&dump_spec, &StoreOptions::default(), log).await?;
        stats::run(&reviews, &StatsConfig::default()).await
    })?;
    let stats_file = config.dir.join("stats.md");
    let markdown = output::render_stats(&stats, OutputFormat::Markdown)?;
    std::fs::write(&stats_file, markdown).map_err(|source| Error::Io { path: stats_file.clone(), source })?;
    let chart_file = config.dir.join("stats.svg");
    revgen_pipeline::chart::draw_lengths(&stats.rows()?, "Average review length by rating", &chart_file)?;

    let prepared = runtime.block_on(async {
        let out = config.dir.join("prepared").to_string_lossy().into_owned();
        let prepare = PrepareConfig { tokenize: true, shards: 4, ..Default::default() };
        let job =
            PrepareJob::open(&dump_spec, &StoreOptions::default(), &out, true, prepare, PREPARE_SQL.into()).await?;
        job.run(Some(Arc::new(Gpt2Tokens::builtin()))).await
    })?;
    drop(runtime);

    let run = config.dir.join("run");
    let data = config.dir.join("prepared");
    let trained = train::train(&train_config(config.train_steps), &data, &run, &Resume::Fresh, &mut |_| {})?;
    let sample_path = run.join(train::SAMPLES_DIR).join(format!("step-{}.txt", trained.step));
    let sample = fs::read_to_string(&sample_path).map_err(|source| Error::Io { path: sample_path, source })?;
    let loss_chart = config.dir.join("loss.svg");
    crate::training::plot(&run, &loss_chart, "Loss of the demo run")?;
    Ok(DemoReport { dump, stats, stats_file, chart_file, prepared, trained, sample, loss_chart })
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
        let s = &self.stats;
        let _ = writeln!(out, "2. stats (sql/stats.sql): {}", self.stats_file.display());
        let _ = writeln!(out, "   {}", output::counts_line(&s.counts));
        if let Some((path, rows)) = &s.quarantine {
            let _ = writeln!(out, "   quarantine: {} ({rows} rows)", path.display());
        }
        let _ = writeln!(out, "   chart: {}", self.chart_file.display());
        if let Ok(table) = output::render_batches(&s.batches, OutputFormat::Table) {
            for line in table.lines() {
                let _ = writeln!(out, "   {line}");
            }
        }
        let _ = writeln!(out, "3. prepare (sql/prepare.sql): tagged training text, train/val shards, GPT-2 tokens");
        // Without the summary's first line, which has the elapsed time: the demo's report is the same on every run.
        let _ = writeln!(out, "   output: {}", self.prepared.output);
        for line in output::render_prepare(&self.prepared).lines().skip(1) {
            let _ = writeln!(out, "   {line}");
        }
        let t = &self.trained;
        let loss = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        let _ = writeln!(out, "4. train: tiny GPT-2 (random start, flex backend), {} steps", t.step);
        let _ = writeln!(out, "   run: {}", t.run.display());
        let _ = writeln!(
            out,
            "   train loss {}, val loss {} (an untrained model: ln 50257 = 10.825 nats)",
            loss(t.train_loss),
            loss(t.val_loss)
        );
        let _ = writeln!(out, "   loss chart: {}", self.loss_chart.display());
        if let Some(dir) = &t.checkpoint {
            let _ = writeln!(out, "   checkpoint: {}", dir.display());
        }
        let _ = writeln!(out, "   sample: {}", self.sample.lines().next().unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_writes_the_dump_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = DemoConfig { dir: dir.path().to_owned(), rows: 2_000, seed: 3, train_steps: 40 };
        let report = run(&config).unwrap();
        assert_eq!(report.dump.rows, 2_000);
        assert!(report.dump.path.exists());
        let text = report.render();
        assert!(text.contains("2000 rows"), "{text}");
        // The stats stage read every row the dump has, and kept its malformed ones.
        assert_eq!(report.stats.counts.rows_read, 2_000);
        assert_eq!(report.stats.counts.malformed, report.dump.malformed);
        assert!(text.contains("rows_read 2,000"), "{text}");
        assert!(report.stats_file.exists() && report.chart_file.exists());
        // A second run replaces the outputs instead of failing or appending.
        // The prepare stage kept the helpful valid rows, in balanced counts, with token shards.
        let counts = &report.prepared.manifest.counts;
        assert_eq!(counts.rows_read, 2_000);
        assert_eq!(counts.kept, report.dump.helpful);
        assert!(report.prepared.manifest.shards.iter().any(|s| s.format == "tokens" && s.tokens.unwrap() > 0));
        assert!(text.contains("3. prepare"), "{text}");
        // The train stage learned something and left a loadable checkpoint and a chart.
        let t = &report.trained;
        assert_eq!(t.step, 40);
        assert!(t.val_loss.unwrap() < 8.0, "{text}");
        assert!(report.sample.starts_with("<|startoftext|> 5|||"), "{}", report.sample);
        assert!(report.loss_chart.exists() && t.checkpoint.as_ref().unwrap().join("model.safetensors").exists());
        let again = run(&config).unwrap();
        assert_eq!(again.dump.bytes, report.dump.bytes);
        assert_eq!(again.prepared.manifest.shards, report.prepared.manifest.shards);
    }
}
