//! `revgen`: parse the command line, hand the work to the library crates, map the outcome to an exit code.

mod cli;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use revgen_trainer::backend::Backend;
use revgen_trainer::hub::ModelSource;

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
        Command::Tokenize(args) => {
            let tokenizer = ModelSource::tokenizer(&args.model)?;
            let join = |ids: &[u32]| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
            if let Some(path) = &args.file {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for line in text.lines() {
                    writeln!(out, "{}", join(&tokenizer.encode(line)?))?;
                }
                return Ok(out.flush()?);
            }
            let ids = tokenizer.encode(args.text.as_deref().expect("clap requires a text or --file"))?;
            if args.json {
                let tokens = ids
                    .iter()
                    .map(|&id| Ok(serde_json::json!({"id": id, "token": tokenizer.token_text(id)?})))
                    .collect::<revgen_trainer::Result<Vec<_>>>()?;
                println!("{}", serde_json::Value::Array(tokens));
            } else {
                println!("{}", join(&ids));
            }
        }
        Command::Score(args) => {
            let source = model_source(&args.model, args.checkpoint.as_deref())?;
            let device = args.device.backend.inference_device(&args.device.device)?;
            let model = source.load(&device, args.model.seed)?;
            let text = match (args.text, args.file) {
                (Some(text), _) => text,
                (None, Some(path)) => {
                    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
                }
                (None, None) => unreachable!("clap requires --text or --file"),
            };
            let score = revgen_trainer::score::score(&model, &source.tokenizer, &text, args.per_token, &device)?;
            println!("{}", serde_json::to_string(&score)?);
        }
        Command::Export(args) => {
            let source = model_source(&args.model, args.checkpoint.as_deref())?;
            let device = Backend::Flex.inference_device("cpu")?;
            let model = source.load(&device, args.model.seed)?;
            let files = revgen_trainer::weights::save(&model, &source.config, &source.tokenizer, &args.out)?;
            for file in files {
                println!("{}", file.display());
            }
        }
    }
    Ok(())
}

/// `--checkpoint` when given, else `--model`.
fn model_source(args: &cli::ModelArgs, checkpoint: Option<&Path>) -> anyhow::Result<ModelSource> {
    let source = match checkpoint {
        Some(dir) => ModelSource::resolve(&dir.to_string_lossy(), false)
            .with_context(|| format!("loading checkpoint {}", dir.display()))?,
        None => ModelSource::resolve(&args.model, args.from_scratch)?,
    };
    Ok(source)
}
