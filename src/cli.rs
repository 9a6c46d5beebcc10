//! The `revgen` command line (clap derive). Each subcommand's arguments convert into the library's own config.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use revgen_jobs::demo::DemoConfig;
use revgen_pipeline::dump::JsonLayout;
use revgen_pipeline::output::OutputFormat;
use revgen_pipeline::prepare::PrepareConfig;
use revgen_pipeline::source::StoreOptions;
use revgen_pipeline::synth::SynthConfig;
use revgen_trainer::backend::Backend;
use revgen_trainer::schedule::Schedule;
use revgen_trainer::train::TrainConfig;

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
    /// Print the GPT-2 token ids of a text.
    Tokenize(TokenizeArgs),
    /// Score a text under a model: tokens, mean next-token loss in nats and perplexity, as JSON.
    Score(ScoreArgs),
    /// Write a model or checkpoint as an HF model directory that transformers loads.
    Export(ExportArgs),
    /// Stats of a dump: reviews and review length per star rating, for all and for helpful reviews (sql/stats.sql).
    Stats(StatsArgs),
    /// Run SQL over a dump, registered as the table `reviews`.
    Sql(SqlArgs),
    /// Helpful reviews as tagged training text: filter, template, train/val split, shards and manifest.json
    /// (sql/prepare.sql).
    Prepare(PrepareArgs),
    /// Fine-tune GPT-2 on prepared shards: checkpoints, samples and metrics.jsonl in --out (gpt-2-simple's
    /// finetune() defaults; AdamW, warmup + cosine, clipping and validation as in nanoGPT).
    Train(TrainArgs),
    /// Draw a training run's train and val loss by step (from its metrics.jsonl) to FILE.png or FILE.svg.
    Plot(PlotArgs),
    /// Run a Ballista scheduler for `--cluster df://HOST:PORT` jobs (gRPC and the REST API /api on one port).
    Scheduler(SchedulerArgs),
    /// Run a Ballista executor that takes tasks from a scheduler. Object-store credentials come from its
    /// environment (AWS_*, GOOGLE_*, AZURE_*).
    Executor(ExecutorArgs),
    /// Inspect a cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    #[arg(long, default_value_t = 50050)]
    pub port: u16,
    /// The name executors reach this scheduler by (such as a Kubernetes Service); default: --host.
    #[arg(long)]
    pub external_host: Option<String>,
    /// Seconds without a heartbeat after which an executor counts as lost and its tasks run elsewhere.
    #[arg(long, default_value_t = 180)]
    pub executor_timeout: u64,
    /// Failures of one task (I/O errors, lost executors) before its job fails.
    #[arg(long, default_value_t = 4)]
    pub task_max_failures: usize,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler, HOST:PORT.
    #[arg(long)]
    pub scheduler: String,
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// The name the scheduler, other executors and clients reach this executor by; default: its address.
    #[arg(long)]
    pub external_host: Option<String>,
    /// Arrow Flight port (shuffle data and results).
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// HTTP /healthz and /readyz.
    #[arg(long, default_value_t = 50053)]
    pub health_port: u16,
    /// Shuffle files and temporary data.
    #[arg(long, default_value = "/tmp/revgen-executor")]
    pub work_dir: String,
    /// Tasks at once (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Seconds between heartbeats to the scheduler.
    #[arg(long, default_value_t = 60)]
    pub heartbeat: u64,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The scheduler's executors and jobs.
    Status {
        /// The scheduler: df://HOST[:PORT].
        #[arg(long)]
        cluster: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where the dump is and how to read it.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Dump files: local paths, directories, globs, or file://, s3://, gs://, az://, https:// URLs. Repeat or
    /// comma-separate for several. Formats by name: .tsv, .tsv.gz, .parquet, .json/.jsonl(.gz) (McAuley layouts).
    #[arg(long, short, required = true, value_delimiter = ',')]
    pub input: Vec<String>,
    /// S3-compatible endpoint, such as http://127.0.0.1:9000. Credentials come from AWS_* variables.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// S3 region (else AWS_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Anonymous S3 requests, for public buckets.
    #[arg(long)]
    pub no_sign_request: bool,
    /// Write every malformed row here as JSON lines (object, line, reason, raw); it appears when the job ends.
    #[arg(long)]
    pub quarantine: Option<PathBuf>,
    /// Run the job on a Ballista cluster (`revgen scheduler`, `revgen executor`): df://HOST[:PORT].
    #[arg(long)]
    pub cluster: Option<String>,
    /// With --cluster: a directory the executors and this client both reach, for the objects' row counts and
    /// malformed rows (s3://bucket/tmp, or a shared path). Default: a local temporary directory, which works when
    /// the executors share this machine's filesystem. `prepare` uses its output's staging area instead.
    #[arg(long)]
    pub scratch: Option<String>,
}

impl InputArgs {
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            no_sign_request: self.no_sign_request,
        }
    }
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// A query file to run instead of the built-in sql/stats.sql (same parameters: $min_helpful, {{by}}).
    #[arg(long)]
    pub sql: Option<PathBuf>,
    /// A review is helpful when helpful_votes >= this.
    #[arg(long, default_value_t = 1)]
    pub min_helpful: i32,
    /// Also group by these columns, such as product_category.
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// table, markdown, csv or json.
    #[arg(long, default_value = "table")]
    pub format: OutputFormat,
    /// Also draw average review length by rating, all vs helpful, to FILE.png or FILE.svg.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// table, markdown, csv or json.
    #[arg(long, default_value = "table")]
    pub format: OutputFormat,
    /// The query, over the table `reviews`.
    pub query: String,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output directory or object-store prefix (s3://bucket/prefix, gs://, az://). Shards and manifest.json appear
    /// only when all of them are complete.
    #[arg(long, short)]
    pub output: String,
    /// Replace the prepared output already at --output.
    #[arg(long)]
    pub overwrite: bool,
    /// Keep reviews with helpful_votes >= this (the original project's filter: 1).
    #[arg(long, default_value_t = 1)]
    pub min_helpful: i32,
    /// Keep only these product categories, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// Keep reviews whose body has at least this many characters.
    #[arg(long)]
    pub min_chars: Option<u32>,
    /// Keep reviews whose body has at most this many characters.
    #[arg(long)]
    pub max_chars: Option<u32>,
    /// Share of records in the val split, chosen by a stable hash of review_id.
    #[arg(long, default_value_t = 0.01)]
    pub val_fraction: f64,
    /// Shards per split: train-00000-of-000NN.txt, val-….
    #[arg(long, default_value_t = 16)]
    pub shards: u32,
    /// Seed of the review_id hash: another seed gives another split and record order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Drop repeated records (same text), keeping one.
    #[arg(long)]
    pub dedup: bool,
    /// Keep <br /> tags and HTML entities as in the dump (by default <br /> becomes \n and entities are decoded).
    #[arg(long)]
    pub raw_html: bool,
    /// The record template: {column} fields of reviews between literal text; {{ and }} are literal braces.
    #[arg(long, default_value = revgen_pipeline::prepare::DEFAULT_TEMPLATE)]
    pub template: String,
    /// Also write .bin shards of u16 GPT-2 token ids (llm.c's layout), tokenized on every core.
    #[arg(long)]
    pub tokenize: bool,
    /// Also write Parquet shards with the text and star_rating columns.
    #[arg(long)]
    pub parquet: bool,
    /// A query file to run instead of the built-in sql/prepare.sql (same parameters and output columns).
    #[arg(long)]
    pub sql: Option<PathBuf>,
    /// Print the manifest as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

impl PrepareArgs {
    pub fn config(&self) -> PrepareConfig {
        PrepareConfig {
            min_helpful: self.min_helpful,
            categories: self.categories.clone(),
            min_chars: self.min_chars,
            max_chars: self.max_chars,
            val_fraction: self.val_fraction,
            shards: self.shards,
            seed: self.seed,
            dedup: self.dedup,
            raw_html: self.raw_html,
            template: self.template.clone(),
            tokenize: self.tokenize,
            parquet: self.parquet,
        }
    }
}

/// Which model: an HF model directory or a preset, and how to start it.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// An HF model directory (config.json, model.safetensors, tokenizer files) or a preset: tiny, gpt2,
    /// gpt2-medium, gpt2-large, gpt2-xl. Presets are read from the HF hub cache or downloaded; `tiny` is random.
    #[arg(long, default_value = "gpt2")]
    pub model: String,
    /// Start from GPT-2's random initialisation instead of the pretrained weights.
    #[arg(long)]
    pub from_scratch: bool,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Compute backend: flex (pure Rust, always built) or tch (LibTorch; needs `--features tch`).
    #[arg(long, default_value_t = default_backend())]
    pub backend: Backend,
    /// cpu, cuda or cuda:N (cuda needs the tch backend).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// LibTorch when the binary has it, since that is why it was built that way.
fn default_backend() -> Backend {
    if Backend::Tch.is_built() { Backend::Tch } else { Backend::Flex }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "file"])))]
pub struct TokenizeArgs {
    /// A model directory with tokenizer files, or a preset (all presets share GPT-2's tokenizer).
    #[arg(long, default_value = "gpt2")]
    pub model: String,
    /// Print a JSON array of {id, token} instead of space-separated ids.
    #[arg(long, conflicts_with = "file")]
    pub json: bool,
    /// Tokenize each line of this file (without its newline): one line of ids per line.
    #[arg(long)]
    pub file: Option<PathBuf>,
    pub text: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "file"])))]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A checkpoint or HF model directory to score with, instead of --model.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The text to score.
    #[arg(long)]
    pub text: Option<String>,
    /// A file whose whole content is scored as one text.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Also list each predicted token with its loss.
    #[arg(long)]
    pub per_token: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A checkpoint or HF model directory to export instead of --model.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Output directory; files in it with the same names are replaced.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the demo's outputs (replaced on each run).
    #[arg(long, default_value = "revgen-demo")]
    pub dir: PathBuf,
    /// Rows in the synthetic dump.
    #[arg(long, default_value_t = 20_000)]
    pub rows: u64,
    /// Training steps of the demo's tiny GPT-2.
    #[arg(long, default_value_t = 200)]
    pub train_steps: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl From<DemoArgs> for DemoConfig {
    fn from(a: DemoArgs) -> Self {
        DemoConfig { dir: a.dir, rows: a.rows, seed: a.seed, train_steps: a.train_steps }
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

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A directory or object-store prefix (s3://, gs://, az://) written by `revgen prepare` (manifest.json +
    /// shards). Uses the .bin shards when it has them. Remote shards are downloaded once into $REVGEN_CACHE.
    #[arg(long)]
    pub data: String,
    /// Model to start from: an HF model directory or a preset (tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl).
    #[arg(long, default_value = "gpt2")]
    pub model: String,
    /// Start from GPT-2's random initialisation instead of the pretrained weights.
    #[arg(long)]
    pub from_scratch: bool,
    /// Run directory or object-store prefix: checkpoints/, samples/, metrics.jsonl, train.json. A remote run is
    /// kept in $REVGEN_CACHE and uploaded after every checkpoint.
    #[arg(long)]
    pub out: String,
    /// S3-compatible endpoint for s3:// data or output, such as http://127.0.0.1:9000. Credentials come from
    /// AWS_* variables.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// S3 region (else AWS_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Optimizer updates in total (a resumed run continues to this count).
    #[arg(long, default_value_t = 2048)]
    pub steps: u64,
    /// End this run after this many updates, with a checkpoint, keeping the schedule of --steps; resume later.
    #[arg(long)]
    pub stop_at: Option<u64>,
    /// Windows per micro-batch.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Micro-batches per update.
    #[arg(long, default_value_t = 5)]
    pub grad_accum: usize,
    /// Tokens per window; default: the model's context (1024 for GPT-2).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// constant or cosine (decays to --min-lr at --steps).
    #[arg(long, default_value = "constant")]
    pub schedule: Schedule,
    /// Steps of linear warmup.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Learning rate at the end of the cosine schedule.
    #[arg(long, default_value_t = 0.0)]
    pub min_lr: f64,
    /// AdamW's decoupled weight decay, applied to weight matrices only.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// Clip the global gradient norm to this; 0 = off.
    #[arg(long, default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Write a sample to samples/step-N.txt every N steps; 0 = off.
    #[arg(long, default_value_t = 100)]
    pub sample_every: u64,
    /// Tokens per sample.
    #[arg(long, default_value_t = 500)]
    pub sample_length: usize,
    /// The text samples continue.
    #[arg(long, default_value = "<|startoftext|> 5|||")]
    pub sample_prompt: String,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f64,
    /// Sample among the k most likely tokens; 0 = all.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Save a checkpoint every N steps (and always at the end); 0 = only at the end.
    #[arg(long, default_value_t = 1000)]
    pub save_every: u64,
    /// Step checkpoints to keep (plus `best`, the one with the lowest val loss).
    #[arg(long, default_value_t = 2)]
    pub keep: usize,
    /// Compute the val loss every N steps; 0 = off.
    #[arg(long, default_value_t = 100)]
    pub val_every: u64,
    /// Micro-batches of the val split per evaluation (the same ones each time).
    #[arg(long, default_value_t = 20)]
    pub val_batches: usize,
    /// latest (the run's newest checkpoint, else --model), fresh (discard the run's checkpoints), or a checkpoint
    /// directory.
    #[arg(long, default_value = "latest")]
    pub resume: String,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// f32, or bf16: mixed precision as torch.autocast does it (LibTorch; bf16 products, f32 weights and optimizer).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Seed of the data order, the sampling and a random initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train only the transformer blocks (gpt-2-simple's only_train_transformer_layers): embeddings and the final
    /// LayerNorm stay as they are.
    #[arg(long)]
    pub only_transformer_layers: bool,
    /// Recompute activations in the backward pass to save memory (burn's gradient checkpointing).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Record N steps, after the run's first, with PyTorch's profiler (LibTorch): profile/steps-A-B.pt.trace.json
    /// in the run directory, every operator and, on CUDA, every kernel; 0 = off.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub profile_steps: u64,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        Ok(TrainConfig {
            model: self.model.clone(),
            from_scratch: self.from_scratch,
            steps: self.steps,
            stop_at: self.stop_at,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            seq_len: self.seq_len.unwrap_or(0),
            lr: self.lr,
            schedule: self.schedule,
            warmup: self.warmup,
            min_lr: self.min_lr,
            weight_decay: self.weight_decay,
            beta1: self.beta1,
            beta2: self.beta2,
            grad_clip: self.grad_clip,
            sample_every: self.sample_every,
            sample_length: self.sample_length,
            sample_prompt: self.sample_prompt.clone(),
            temperature: self.temperature,
            top_k: self.top_k,
            save_every: self.save_every,
            keep: self.keep,
            val_every: self.val_every,
            val_batches: self.val_batches,
            backend: self.device.backend.name().to_owned(),
            device: self.device.device.clone(),
            precision: self.precision.parse()?,
            seed: self.seed,
            only_transformer_layers: self.only_transformer_layers,
            gradient_checkpointing: self.gradient_checkpointing,
            profile_steps: self.profile_steps,
        })
    }
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// A run directory of `revgen train` (its metrics.jsonl).
    #[arg(long)]
    pub run: PathBuf,
    /// FILE.png or FILE.svg.
    #[arg(long)]
    pub out: PathBuf,
}
