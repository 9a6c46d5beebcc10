//! `revgen`: parse the command line, hand the work to the library crates, map the outcome to an exit code.

mod cli;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => {
            let report = revgen_jobs::demo::run(&args.into()).context("demo failed")?;
            print!("{}", report.render());
        }
        Command::Synth(args) => {
            let (config, out) = args.into();
            let summary = revgen_pipeline::synth::write_dump(&config, &out)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
    }
    Ok(())
}
