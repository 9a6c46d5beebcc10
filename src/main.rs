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
        Command::Backends => {
            let reports = revgen_trainer::backend::probe();
            println!("{:<8} {:<6} {:<24} check", "backend", "built", "devices");
            for r in &reports {
                let check = match &r.check {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("failed: {e}"),
                };
                let built = if r.built { "yes" } else { "no" };
                println!("{:<8} {:<6} {:<24} {check}", r.backend, built, r.devices.join(", "));
            }
            // A backend that is built but broken (say, a missing libtorch) is an error; one left out of the build is not.
            if let Some(r) = reports.iter().find(|r| r.built && r.check.is_err()) {
                anyhow::bail!("backend {} is built but does not work", r.backend);
            }
        }
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
