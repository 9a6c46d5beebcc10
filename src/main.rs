//! `revgen`: parse the command line, hand the work to the library crates, map the outcome to an exit code.

mod cli;
mod process;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use revgen_jobs::tokens::Gpt2Tokens;
use revgen_pipeline::cluster::daemon::{self, ExecutorSettings, SchedulerSettings};
use revgen_pipeline::cluster::{Cluster, RemoteDir};
use revgen_pipeline::prepare::{PrepareJob, Tokenize};
use revgen_pipeline::progress::Progress;
use revgen_pipeline::quarantine::RowLog;
use revgen_pipeline::query::{Params, Reviews};
use revgen_pipeline::source::StoreOptions;
use revgen_pipeline::stats::StatsConfig;
use revgen_trainer::backend::Backend;
use revgen_trainer::hub::ModelSource;
use revgen_trainer::progress::TrainProgress;
use revgen_trainer::train::Resume;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    process::configure();
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
        Command::Stats(args) => runtime()?.block_on(stats(args))?,
        Command::Sql(args) => runtime()?.block_on(sql(args))?,
        Command::Prepare(args) => runtime()?.block_on(prepare(args))?,
        Command::Train(args) => return train(args),
        Command::Plot(args) => {
            let title = format!("Loss of {}", args.run.display());
            revgen_jobs::training::plot(&args.run, &args.out, &title)?;
            println!("{}", args.out.display());
        }
        Command::Scheduler(args) => {
            let settings = SchedulerSettings {
                host: args.host,
                port: args.port,
                external_host: args.external_host,
                executor_timeout_s: args.executor_timeout,
                task_max_failures: args.task_max_failures,
            };
            let tokenizer = Arc::new(Gpt2Tokens::builtin()) as Arc<dyn Tokenize>;
            daemon_runtime()?.block_on(daemon::run_scheduler(&settings, Some(tokenizer)))?;
        }
        Command::Executor(args) => {
            let (scheduler_host, scheduler_port) = match args.scheduler.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), port.parse().context("--scheduler HOST:PORT")?),
                None => (args.scheduler.clone(), 50050),
            };
            let settings = ExecutorSettings {
                scheduler_host,
                scheduler_port,
                host: args.host,
                external_host: args.external_host,
                port: args.port,
                grpc_port: args.grpc_port,
                health_port: args.health_port,
                work_dir: args.work_dir,
                concurrent_tasks: args.concurrent_tasks,
                heartbeat_s: args.heartbeat,
            };
            // Shard writers of `prepare --tokenize` tokenize on the executors.
            let tokenizer = Arc::new(Gpt2Tokens::builtin()) as Arc<dyn Tokenize>;
            daemon_runtime()?.block_on(daemon::run_executor(&settings, Some(tokenizer)))?;
        }
        Command::Cluster(cli::ClusterCommand::Status { cluster, json }) => {
            let status = runtime()?.block_on(Cluster::parse(&cluster)?.status())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", revgen_pipeline::output::render_cluster(&status));
            }
        }
    }
    Ok(())
}

/// Ballista's binaries run deep plans on threads with 32 MiB stacks; so do ours.
fn daemon_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().thread_stack_size(32 << 20).enable_all().build()?)
}

/// `revgen train`. Ctrl-C saves a checkpoint and exits with 130, as a shell expects of an interrupted command.
fn train(args: cli::TrainArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let resume: Resume = args.resume.parse()?;
    revgen_trainer::train::install_interrupt_handler();
    let mut progress = TrainProgress::new();
    let store = StoreOptions { endpoint: args.endpoint.clone(), region: args.region.clone(), no_sign_request: false };
    let report =
        revgen_jobs::training::run(&config, &args.data, &args.out, &resume, &store, &mut |e| progress.event(e))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
        println!(
            "step {}/{}: train loss {}, val loss {} (best {}), {} tokens in {}",
            report.step,
            report.steps,
            fmt(report.train_loss),
            fmt(report.val_loss),
            fmt(report.best_val_loss),
            report.tokens,
            revgen_trainer::progress::duration(report.elapsed_s)
        );
        if let Some(dir) = &report.checkpoint {
            println!("checkpoint: {}", dir.display());
        }
    }
    if report.interrupted {
        eprintln!("interrupted: resume with the same command (--resume latest)");
        std::process::exit(130);
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Opens the dump named by the input flags, with its quarantine, on the cluster if one is named.
async fn open_reviews(args: &cli::InputArgs) -> anyhow::Result<Reviews> {
    let log = match &args.quarantine {
        Some(path) => RowLog::with_quarantine(path)?,
        None => RowLog::counting(),
    };
    let mut reviews = Reviews::open(&args.input, &args.store_options(), log).await?;
    if let Some(url) = &args.cluster {
        let scratch = match &args.scratch {
            Some(dir) => RemoteDir::new(dir, args.store_options())?,
            None => {
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
                let dir = std::env::temp_dir().join(format!("revgen-scratch-{}-{nanos}", std::process::id()));
                RemoteDir::new(&dir.to_string_lossy(), args.store_options())?
            }
        };
        reviews.on_cluster(Cluster::parse(url)?, scratch)?;
    }
    Ok(reviews)
}

/// A byte-count progress bar for local jobs; on a cluster the job's own progress is shown instead.
fn scan_progress(reviews: &Reviews, what: &str) -> Option<Progress> {
    reviews.cluster().is_none().then(|| Progress::start(what, reviews.bytes_read.clone(), reviews.total_bytes))
}

async fn stats(args: cli::StatsArgs) -> anyhow::Result<()> {
    let reviews = open_reviews(&args.input).await?;
    let mut config = StatsConfig { min_helpful: args.min_helpful, by: args.by, ..Default::default() };
    if let Some(path) = &args.sql {
        config.sql = revgen_pipeline::query::read_sql(path)?;
    }
    let progress = scan_progress(&reviews, "scanning");
    let report = revgen_pipeline::stats::run(&reviews, &config).await;
    if let Some(progress) = progress {
        progress.finish();
    }
    let report = report?;
    if let Some(path) = &args.chart {
        let title = format!("Average review length by rating (helpful: >= {} helpful votes)", report.min_helpful);
        revgen_pipeline::chart::draw_lengths(&report.rows()?, &title, path)?;
    }
    print!("{}", revgen_pipeline::output::render_stats(&report, args.format)?);
    Ok(())
}

async fn sql(args: cli::SqlArgs) -> anyhow::Result<()> {
    let reviews = open_reviews(&args.input).await?;
    let progress = scan_progress(&reviews, "scanning");
    let batches = reviews.sql(&args.query, &Params::default()).await;
    if let Some(progress) = progress {
        progress.finish();
    }
    let batches = batches?;
    let quarantine = reviews.log.finish()?;
    print!("{}", revgen_pipeline::output::render_batches(&batches, args.format)?);
    // The counts go to stderr, so that stdout stays the result alone (CSV and JSON load as they are).
    eprintln!("{}", revgen_pipeline::output::counts_line(&reviews.counts()));
    if let Some((path, rows)) = quarantine {
        eprintln!("quarantine: {} ({rows} rows)", path.display());
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

async fn prepare(args: cli::PrepareArgs) -> anyhow::Result<()> {
    if args.input.quarantine.is_some() {
        anyhow::bail!(
            "prepare writes malformed rows to quarantine.jsonl in --output; --quarantine is for stats and sql"
        );
    }
    let sql = match &args.sql {
        Some(path) => revgen_pipeline::query::read_sql(path)?,
        None => revgen_pipeline::prepare::PREPARE_SQL.to_owned(),
    };
    let store = args.input.store_options();
    let mut job = PrepareJob::open(&args.input.input, &store, &args.output, args.overwrite, args.config(), sql).await?;
    if let Some(url) = &args.input.cluster {
        if args.input.scratch.is_some() {
            anyhow::bail!("prepare on a cluster uses its output's staging area; --scratch is for stats and sql");
        }
        job.on_cluster(Cluster::parse(url)?)?;
    }
    let tokenizer = args.tokenize.then(|| Arc::new(Gpt2Tokens::builtin()) as Arc<dyn Tokenize>);
    let progress = scan_progress(&job.reviews, "preparing");
    let report = job.run(tokenizer).await;
    if let Some(progress) = progress {
        progress.finish();
    }
    let report = report?;
    if args.json {
        std::io::stdout().write_all(&report.manifest.to_json())?;
    } else {
        print!("{}", revgen_pipeline::output::render_prepare(&report));
    }
    Ok(())
}
