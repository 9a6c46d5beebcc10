//! The `revgen` command line (clap derive). Each subcommand's arguments convert into the library's own config.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use revgen_jobs::demo::DemoConfig;
use revgen_pipeline::dump::JsonLayout;
use revgen_pipeline::synth::SynthConfig;

/// Fine-tune GPT-2 to write product reviews conditioned on a star rating and a headline.
///
/// Data flows one way: Amazon reviews dump -> stats / prepare (SQL) -> shards -> train -> generate.
#[derive(Debug, Parser)]
#[command(name = "revgen", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the compute backends and devices in this build, and check that each one runs.
    Backends,
    /// Run the whole flow end to end on a small synthetic dump (no network).
    Demo(DemoArgs),
    /// Write a realistic synthetic Amazon Customer Reviews dump (.tsv, .tsv.gz, .parquet, .jsonl).
    Synth(SynthArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the demo's outputs (replaced on each run).
    #[arg(long, default_value = "revgen-demo")]
    pub dir: PathBuf,
    /// Rows in the synthetic dump.
    #[arg(long, default_value_t = 20_000)]
    pub rows: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl From<DemoArgs> for DemoConfig {
    fn from(a: DemoArgs) -> Self {
        DemoConfig { dir: a.dir, rows: a.rows, seed: a.seed }
    }
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Data rows to write, malformed ones included.
    #[arg(long, default_value_t = 10_000)]
    pub rows: u64,
    /// Output file; the extension picks the format: .tsv, .tsv.gz, .parquet, .jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// The same seed gives the same file, byte for byte.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of rows (0..1) written malformed: wrong field count, non-numeric rating or votes, rating outside 1..5.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// product_category values, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "Electronics")]
    pub categories: Vec<String>,
    /// Layout of .jsonl output: McAuley's 2014, 2018 or 2023 format.
    #[arg(long, default_value = "2023")]
    pub json_layout: JsonLayout,
}

impl From<SynthArgs> for (SynthConfig, PathBuf) {
    fn from(a: SynthArgs) -> Self {
        let config = SynthConfig {
            rows: a.rows,
            seed: a.seed,
            malformed_rate: a.malformed_rate,
            categories: a.categories,
            json_layout: a.json_layout,
        };
        (config, a.out)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn synth_args_parse() {
        let cli = Cli::try_parse_from([
            "revgen",
            "synth",
            "--rows",
            "5",
            "--out",
            "x.jsonl",
            "--categories",
            "Books,Toys",
            "--json-layout",
            "2014",
        ])
        .unwrap();
        let Command::Synth(args) = cli.command else { panic!("not synth") };
        let (config, out) = args.into();
        assert_eq!(out, PathBuf::from("x.jsonl"));
        assert_eq!(config.categories, ["Books", "Toys"]);
        assert_eq!(config.json_layout, JsonLayout::Y2014);
    }
}
