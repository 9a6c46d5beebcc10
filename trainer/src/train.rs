//! `revgen train`: fine-tuning GPT-2 on prepared shards, in the manner of gpt-2-simple's `finetune()` (its defaults)
//! with what nanoGPT users expect (AdamW with decoupled weight decay on matrices only, warmup + cosine, global
//! gradient-norm clipping, validation loss, checkpoints that resume exactly).
//!
//! One step is one optimizer update over `grad_accum` micro-batches of `batch_size` windows of `seq_len` tokens.
//! `--steps` counts updates in total (like nanoGPT's `max_iters`, unlike gpt-2-simple's "steps more"), so that
//! rerunning the same command after a crash continues to the same end with the same schedule.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adamw::Hyperparameters;
use crate::backend::Backend;
use crate::checkpoint::{self, State};
use crate::data::{Dataset, Position, TokenStream};
use crate::hub::ModelSource;
use crate::model::{Gpt2, host_values};
use crate::profile::{self, Profiler};
use crate::sample::{self, SampleConfig};
use crate::schedule::{LrSchedule, Schedule};
use crate::tokenizer::Gpt2Tokenizer;
use crate::weights::{self, WEIGHTS_FILE, write_atomic};
use crate::{Error, Result};

pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SAMPLES_DIR: &str = "samples";
/// The run's settings as last started, for people reading a run directory.
pub const RUN_FILE: &str = "train.json";

/// Every setting of a training run. The defaults are gpt-2-simple's (`finetune()`), except `--steps`, which counts
/// updates in total. A setting missing from a saved run (one older than the setting) takes its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// HF model directory or preset to start from (ignored when resuming: the checkpoint has the weights).
    pub model: String,
    pub from_scratch: bool,
    /// Optimizer updates in total.
    pub steps: u64,
    /// End this run after this many updates (the schedule still runs to `steps`); resume later.
    pub stop_at: Option<u64>,
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Tokens per window; 0 = the model's context.
    pub seq_len: usize,
    pub lr: f64,
    pub schedule: Schedule,
    pub warmup: u64,
    pub min_lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Global gradient-norm clip; 0 = off.
    pub grad_clip: f64,
    pub sample_every: u64,
    pub sample_length: usize,
    pub sample_prompt: String,
    pub temperature: f64,
    pub top_k: usize,
    pub save_every: u64,
    pub keep: usize,
    pub val_every: u64,
    pub val_batches: usize,
    pub backend: String,
    pub device: String,
    pub precision: Precision,
    pub seed: u64,
    pub only_transformer_layers: bool,
    /// Recompute activations in the backward pass instead of keeping them (burn's gradient checkpointing).
    pub gradient_checkpointing: bool,
    /// Record this many steps with PyTorch's profiler, after the run's first step ([`crate::profile`]); 0 = off.
    pub profile_steps: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "gpt2".to_owned(),
            from_scratch: false,
            steps: 2048,
            stop_at: None,
            batch_size: 1,
            grad_accum: 5,
            seq_len: 0,
            lr: 1e-4,
            schedule: Schedule::Constant,
            warmup: 0,
            min_lr: 0.0,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            grad_clip: 1.0,
            sample_every: 100,
            sample_length: 500,
            sample_prompt: "<|startoftext|> 5|||".to_owned(),
            temperature: 0.7,
            top_k: 0,
            save_every: 1000,
            keep: 2,
            val_every: 100,
            val_batches: 20,
            backend: "flex".to_owned(),
            device: "cpu".to_owned(),
            precision: Precision::F32,
            seed: 0,
            only_transformer_layers: false,
            gradient_checkpointing: false,
            profile_steps: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    /// Mixed precision like torch.autocast: matrix products in bf16 (tensor cores on CUDA), f32 parameters,
    /// optimizer state, LayerNorm and loss. LibTorch only (CUDA in production; CPU works, slowly).
    Bf16,
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(Error::InvalidTraining(format!("unknown precision {other:?}: expected f32 or bf16"))),
        }
    }
}

/// Where a run starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// From the run directory's newest checkpoint, or from `--model` when it has none (gpt-2-simple's default).
    Latest,
    /// From `--model`, discarding the run directory's checkpoints, metrics and samples.
    Fresh,
    /// From this checkpoint directory.
    Path(PathBuf),
}

impl FromStr for Resume {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "latest" => Resume::Latest,
            "fresh" => Resume::Fresh,
            path => Resume::Path(PathBuf::from(path)),
        })
    }
}

/// What a run reports as it goes.
#[derive(Clone, Debug)]
pub enum Event {
    Started { step: u64, steps: u64, resumed_from: Option<PathBuf>, params: usize, seq_len: usize, backend: String },
    Step(StepMetrics),
    Sample { step: u64, text: String, path: PathBuf },
    Saved { step: u64, path: PathBuf },
    Note(String),
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    pub steps: u64,
    pub loss: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub tokens: u64,
    pub elapsed_s: f64,
    /// The process's peak resident memory so far (Linux), in MB: with a GPU, the host side only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub peak_rss_mb: Option<f64>,
}

/// How a run ended.
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    pub run: PathBuf,
    pub step: u64,
    pub steps: u64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub checkpoint: Option<PathBuf>,
    pub tokens: u64,
    pub elapsed_s: f64,
    /// Stopped by Ctrl-C (a checkpoint was saved first).
    pub interrupted: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (SIGINT) and SIGTERM end the run after the current step, with a checkpoint. A second signal ends
/// the process at once.
pub fn install_interrupt_handler() {
    extern "C" fn on_signal(_: libc::c_int) {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(130) };
        }
    }
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Trains on the shards in `data` and writes checkpoints, metrics and samples to `run`.
pub fn train(
    config: &TrainConfig,
    data: &Path,
    run: &Path,
    resume: &Resume,
    observe: &mut dyn FnMut(Event),
) -> Result<TrainReport> {
    validate(config)?;
    let dataset = Dataset::open(data)?;
    let backend: Backend = config.backend.parse()?;
    let mut device = backend.device(&config.device)?;
    let compute_dtype = match config.precision {
        Precision::F32 => None,
        Precision::Bf16 if backend == Backend::Tch => Some(FloatDType::BF16),
        Precision::Bf16 => {
            return Err(Error::InvalidTraining("--precision bf16 needs --backend tch (--device cuda:N)".to_owned()));
        }
    };
    if config.profile_steps > 0 && backend != Backend::Tch {
        return Err(Error::InvalidTraining(
            "--profile-steps needs --backend tch: it records LibTorch's operators".to_owned(),
        ));
    }
    if config.gradient_checkpointing {
        device = device.gradient_checkpointing();
    }
    std::fs::create_dir_all(run).map_err(Error::io(run))?;
    checkpoint::remove_partial(run)?;
    let from = match resume {
        Resume::Latest => checkpoint::latest(run)?,
        Resume::Fresh => None,
        Resume::Path(path) => Some(path.clone()),
    };

    // The model, its tokenizer and the optimizer: from a checkpoint, or from --model.
    let (mut model, tokenizer, mut state) = match &from {
        Some(dir) => {
            let state = checkpoint::load_state(dir)?;
            let model = weights::load(&dir.join(WEIGHTS_FILE), &state.model, &device)?;
            let tokenizer = Gpt2Tokenizer::from_dir(dir)?;
            (model, tokenizer, State { config: config.clone(), ..state })
        }
        None => {
            let source = ModelSource::resolve(&config.model, config.from_scratch)?;
            let model = source.load(&device, config.seed)?;
            if *resume == Resume::Fresh {
                // Only now that the model loads: a typo must not cost the run that is there.
                discard_run(run)?;
            }
            (model, source.tokenizer, State::new(source.config, config.clone()))
        }
    };
    let context = state.model.n_positions;
    let seq_len = match config.seq_len {
        0 => context,
        n if n > context => {
            return Err(Error::InvalidTraining(format!("--seq-len {n} exceeds the model's context of {context}")));
        }
        n => n,
    };
    model = model.autocast(compute_dtype);
    if config.only_transformer_layers {
        model.wte = model.wte.freeze();
        model.wpe = model.wpe.freeze();
        model.ln_f = model.ln_f.freeze();
    }
    if from.is_some() {
        // Resuming from an older checkpoint abandons the steps after it: their checkpoints would otherwise be
        // taken for this run's (by --resume latest, and by pruning).
        checkpoint::remove_after(run, state.step)?;
    }
    let mut optimizer = TrainOptimizer::new(config, &model, backend);
    if let Some(dir) = &from {
        optimizer.params = checkpoint::load_optimizer(dir, optimizer.params)?;
    }
    let tokenizer = Arc::new(tokenizer);
    write_atomic(&run.join(RUN_FILE), &serde_json::to_vec_pretty(config).expect("config serialises"))?;
    let mut metrics = Metrics::open(run, state.step, from.is_some())?;

    let mut train_stream = TokenStream::open(&dataset.train, tokenizer.clone(), config.seed, state.data, true);
    let val = if config.val_every > 0 {
        let windows = val_windows(&dataset, &tokenizer, seq_len, config.batch_size * config.val_batches)?;
        if windows.is_empty() {
            observe(Event::Note("the val split has too few tokens for one window: validation is off".to_owned()));
        }
        windows
    } else {
        Vec::new()
    };
    let mut sample_rng = ChaCha8Rng::seed_from_u64(config.seed);
    sample_rng.set_word_pos(state.sample_rng_word_pos);
    let schedule = LrSchedule {
        schedule: config.schedule,
        lr: config.lr,
        min_lr: config.min_lr,
        warmup: config.warmup,
        steps: config.steps,
    };
    let stop = config.stop_at.map_or(config.steps, |s| s.min(config.steps));
    observe(Event::Started {
        step: state.step,
        steps: config.steps,
        resumed_from: from.clone(),
        params: state.model.num_params(),
        seq_len,
        backend: format!("{} {}", config.backend, config.device),
    });

    let tokens_per_step = (config.batch_size * seq_len * config.grad_accum) as u64;
    let mut last_saved: Option<PathBuf> = from.clone();
    let mut saved_step = from.as_ref().map(|_| state.step);
    let mut interrupted = false;
    // --profile-steps: the steps after this run's first, which warms up the allocator and the kernel choices. A
    // profiler that fails is reported, and the run goes on without it.
    let profiled = (config.profile_steps > 0).then(|| (state.step + 2, state.step + 1 + config.profile_steps));
    let mut profiler: Option<Profiler> = None;
    let mut clock = Instant::now();
    while state.step < stop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let number = state.step + 1;
        if profiled.is_some_and(|(first, _)| number == first) {
            match Profiler::start(config.device.starts_with("cuda")) {
                Ok(started) => profiler = Some(started),
                Err(error) => observe(Event::Note(format!("--profile-steps: {error}; training goes on without it"))),
            }
        }
        let started = Instant::now();
        let lr = schedule.at(state.step);
        let stepped = catch_unwind(AssertUnwindSafe(|| {
            let _span = profile::scope(&format!("ProfilerStep#{number}"));
            train_step(model, &mut optimizer, &mut train_stream, config, seq_len, lr, &device)
        }));
        let (next, loss, grad_norm) = match stepped {
            Ok(result) => result?,
            Err(panic) => return Err(out_of_memory(panic, config, seq_len)),
        };
        model = next;
        if let Some((first, last)) = profiled
            && number == last
            && let Some(profiler) = profiler.take()
        {
            save_profile(profiler, run, first, last, observe);
        }
        if !loss.is_finite() {
            return Err(Error::Diverged { step: state.step + 1, loss, lr });
        }
        let step_s = started.elapsed().as_secs_f64();
        state.step += 1;
        state.tokens_seen += tokens_per_step;
        state.data = train_stream.position();
        state.train_loss = Some(loss);
        let step = state.step;

        // Also at the very end, but not at a --stop-at, so that a split run logs what a straight one does.
        let val_loss = (!val.is_empty() && (step % config.val_every == 0 || step == config.steps))
            .then(|| evaluate(&model, &val, config.batch_size))
            .transpose()?;
        if let Some(v) = val_loss {
            state.val_loss = Some(v);
        }
        state.elapsed_s += clock.elapsed().as_secs_f64();
        clock = Instant::now();
        let line = StepMetrics {
            step,
            steps: config.steps,
            loss,
            val_loss,
            lr,
            grad_norm,
            tokens_per_s: tokens_per_step as f64 / step_s,
            tokens: state.tokens_seen,
            elapsed_s: state.elapsed_s,
            peak_rss_mb: peak_rss_mb(),
        };
        metrics.write(&line)?;
        observe(Event::Step(line));

        if config.sample_every > 0 && step % config.sample_every == 0 {
            let sample_config =
                SampleConfig { length: config.sample_length, temperature: config.temperature, top_k: config.top_k };
            let eval = model.valid();
            let device = eval.wte.weight.val().device();
            let text =
                sample::generate(&eval, &tokenizer, &config.sample_prompt, &sample_config, &mut sample_rng, &device)?;
            let path = run.join(SAMPLES_DIR).join(format!("step-{step}.txt"));
            std::fs::create_dir_all(run.join(SAMPLES_DIR)).map_err(Error::io(run))?;
            write_atomic(&path, text.as_bytes())?;
            observe(Event::Sample { step, text, path });
        }
        state.sample_rng_word_pos = sample_rng.get_word_pos();

        if let Some(v) = val_loss.filter(|v| state.best_val_loss.is_none_or(|best| *v < best)) {
            state.best_val_loss = Some(v);
            checkpoint::save(run, checkpoint::BEST, &model, &optimizer.params, &tokenizer, &state)?;
        }
        if (config.save_every > 0 && step % config.save_every == 0) || step == stop {
            let path = save(run, &model, &optimizer.params, &tokenizer, &state, config.keep)?;
            saved_step = Some(step);
            last_saved = Some(path.clone());
            observe(Event::Saved { step, path });
        }
    }
    match (profiler.take(), profiled) {
        // Interrupted, or --stop-at or --steps came first.
        (Some(profiler), Some((first, _))) => save_profile(profiler, run, first, state.step, observe),
        (None, Some((first, _))) if state.step < first => observe(Event::Note(format!(
            "--profile-steps: nothing was profiled, as the run ended before step {first} (the first step warms up)"
        ))),
        _ => {}
    }
    if saved_step != Some(state.step) && state.step > 0 {
        let path = save(run, &model, &optimizer.params, &tokenizer, &state, config.keep)?;
        observe(Event::Saved { step: state.step, path: path.clone() });
        last_saved = Some(path);
    }
    Ok(TrainReport {
        run: run.to_owned(),
        step: state.step,
        steps: config.steps,
        train_loss: state.train_loss,
        val_loss: state.val_loss,
        best_val_loss: state.best_val_loss,
        checkpoint: last_saved,
        tokens: state.tokens_seen,
        elapsed_s: state.elapsed_s,
        interrupted,
    })
}

/// Writes the profiler's trace of steps `first..=last` into the run directory, and says where (or why not).
fn save_profile(profiler: Profiler, run: &Path, first: u64, last: u64, observe: &mut dyn FnMut(Event)) {
    let path = profile::trace_path(run, first, last);
    observe(Event::Note(match profiler.save(&path) {
        Ok(()) => format!(
            "profile of steps {first}-{last}: {} (open it in https://ui.perfetto.dev; scripts/trace_summary.py sums \
             it up)",
            path.display()
        ),
        Err(error) => format!("--profile-steps: the profile of steps {first}-{last} was not saved: {error}"),
    }));
}

/// Checks the settings that need no model or data.
pub fn validate(config: &TrainConfig) -> Result<()> {
    let fail = |what: &str| Err(Error::InvalidTraining(what.to_owned()));
    if config.batch_size == 0 || config.grad_accum == 0 {
        return fail("--batch-size and --grad-accum must be at least 1");
    }
    if config.seq_len == 1 {
        return fail("--seq-len must be at least 2");
    }
    if !(config.lr > 0.0 && config.lr.is_finite()) || config.min_lr < 0.0 || config.min_lr > config.lr {
        return fail("--lr must be positive, and --min-lr between 0 and --lr");
    }
    if config.weight_decay < 0.0 || config.grad_clip < 0.0 {
        return fail("--weight-decay and --grad-clip cannot be negative");
    }
    if !(0.0..1.0).contains(&config.beta1) || !(0.0..1.0).contains(&config.beta2) {
        return fail("Adam betas must be in [0, 1)");
    }
    if config.val_every > 0 && config.val_batches == 0 {
        return fail("--val-batches must be at least 1 when --val-every is on");
    }
    Ok(())
}

/// burn's module optimizer, and on LibTorch the queue of its fused AdamW ([`crate::adamw`]).
struct TrainOptimizer {
    params: ModuleOptimizer,
    fused: Option<Fused>,
}

#[cfg(feature = "tch")]
type Fused = crate::adamw::Queue;
/// Only LibTorch has a fused optimizer.
#[cfg(not(feature = "tch"))]
type Fused = std::convert::Infallible;

impl TrainOptimizer {
    /// AdamW with decay on matrices only: biases, LayerNorms and (as in nanoGPT) nothing 1-D is decayed, updating
    /// in place in one pass ([`crate::adamw`]): LibTorch's fused kernel, or its equivalent on the pure-Rust
    /// backend. Both keep burn's AdamW state, so a checkpoint resumes on either backend.
    fn new(config: &TrainConfig, model: &Gpt2, backend: Backend) -> Self {
        let hyperparameters = Hyperparameters {
            beta_1: config.beta1,
            beta_2: config.beta2,
            epsilon: 1e-8,
            weight_decay: config.weight_decay,
        };
        #[cfg(feature = "tch")]
        if backend == Backend::Tch {
            let queue = crate::adamw::Queue::default();
            let adamw = |hyperparameters| crate::adamw::FusedAdamW { hyperparameters, queue: queue.clone() };
            return Self { params: grouped(adamw, hyperparameters, model), fused: Some(queue) };
        }
        #[cfg(not(feature = "tch"))]
        let _ = backend;
        Self { params: grouped(crate::adamw::flex::FlexAdamW, hyperparameters, model), fused: None }
    }

    /// Clips the gradients to the global norm `max_norm` (0 = off) and updates `model`. Returns the model and the
    /// norm before clipping, `[1]`; on LibTorch nothing waits for the device.
    fn step(&mut self, lr: f64, model: Gpt2, grads: GradientsParams, max_norm: f64) -> (Gpt2, Tensor<1>) {
        match &self.fused {
            #[cfg(feature = "tch")]
            Some(queue) => crate::adamw::step(queue, &mut self.params, lr, model, grads, max_norm),
            _ => {
                let (grads, norm) = clip_grad_norm(&model, grads, max_norm);
                let device = model.wte.weight.device();
                (self.params.step(lr, model, grads), Tensor::from_floats([norm as f32], &device))
            }
        }
    }
}

/// `adamw(hyperparameters)` for the matrices of `model`, and for its vectors the same without weight decay.
fn grouped<O: Optimizer>(
    adamw: impl Fn(Hyperparameters) -> O,
    hyperparameters: Hyperparameters,
    model: &Gpt2,
) -> ModuleOptimizer {
    let mut vectors = VectorParams(Vec::new());
    model.visit(&mut vectors);
    let plain = adamw(hyperparameters.with_weight_decay(0.0));
    ModuleOptimizer::from(adamw(hyperparameters)).with_group(ParamGroup::from_ids(vectors.0), plain, None)
}

/// Ids of the 1-D parameters.
struct VectorParams(Vec<ParamId>);

impl ModuleVisitor for VectorParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == 1 {
            self.0.push(param.id);
        }
    }
}

/// One optimizer update: `grad_accum` micro-batches, global-norm clipping, AdamW. Returns the updated model, the
/// mean loss of the micro-batches and the gradient norm before clipping.
///
/// The host reads the loss and the norm once, at the end: on a GPU every read waits for the device to finish
/// what it was given, so a read between the forward and the backward pass (or before AdamW) would leave the GPU
/// idle while the host queues the next pass. For the same reason all micro-batches go to the device up front
/// (LibTorch's copy from pageable host memory waits for the device too).
fn train_step(
    model: Gpt2,
    optimizer: &mut TrainOptimizer,
    stream: &mut TokenStream,
    config: &TrainConfig,
    seq_len: usize,
    lr: f64,
    device: &Device,
) -> Result<(Gpt2, f64, f64)> {
    let mut batches = Vec::with_capacity(config.grad_accum);
    for _ in 0..config.grad_accum {
        let mut ids = Vec::with_capacity(config.batch_size * (seq_len + 1));
        for _ in 0..config.batch_size {
            let window = stream.window(seq_len + 1, seq_len)?.expect("the train stream cycles");
            ids.extend(window.into_iter().map(i64::from));
        }
        batches.push(shifted(ids, config.batch_size, seq_len, device));
    }
    let mut accumulator = GradientsAccumulator::new();
    let mut loss_sum: Option<Tensor<1>> = None; // [1]
    for (inputs, targets) in batches {
        let forward = profile::scope("forward");
        let loss = model.loss(inputs, targets).div_scalar(config.grad_accum as f64); // [1]
        let detached = loss.clone().detach();
        loss_sum = Some(match loss_sum.take() {
            Some(sum) => sum + detached,
            None => detached,
        });
        drop(forward);
        let _backward = profile::scope("backward");
        accumulator.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
    }
    let optimizer_span = profile::scope("optimizer");
    let (model, norm) = optimizer.step(lr, model, accumulator.grads(), config.grad_clip);
    drop(optimizer_span);
    // On a GPU this is where the host waits for the device to finish the step.
    let _read = profile::scope("read loss and norm");
    let loss = loss_sum.map_or(0.0, |sum| f64::from(host_values(sum)[0]));
    Ok((model, loss, f64::from(host_values(norm)[0])))
}

/// Windows of `seq + 1` ids as inputs (all but the last) and targets (all but the first).
///
/// ids: `batch·(seq+1)` → inputs, targets: `[batch, seq]`
fn shifted(ids: Vec<i64>, batch: usize, seq: usize, device: &Device) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let all = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq + 1]), device); // [batch, seq+1]
    (all.clone().slice([0..batch, 0..seq]), all.slice([0..batch, 1..seq + 1]))
}

/// Scales all gradients together so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`, as nanoGPT uses; burn's own clipping works per tensor). Returns the norm before clipping.
fn clip_grad_norm(model: &Gpt2, mut grads: GradientsParams, max_norm: f64) -> (GradientsParams, f64) {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.powi_scalar(2).sum(); // [1]
                self.sum = Some(match self.sum.take() {
                    Some(acc) => acc + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut squares = SumSquares { grads: &grads, sum: None };
    model.visit(&mut squares);
    let norm = squares.sum.map_or(0.0, |s| f64::from(host_values(s)[0]).sqrt());
    if max_norm > 0.0 && norm > max_norm {
        model.visit(&mut Scale { grads: &mut grads, factor: max_norm / (norm + 1e-6) });
    }
    (grads, norm)
}

/// The first `windows` windows of the val split (the same ones at every evaluation, so val losses compare).
fn val_windows(dataset: &Dataset, tokenizer: &Arc<Gpt2Tokenizer>, seq: usize, windows: usize) -> Result<Vec<Vec<i64>>> {
    let mut stream = TokenStream::open(&dataset.val, tokenizer.clone(), 0, Position::default(), false);
    let mut out = Vec::new();
    while out.len() < windows {
        match stream.window(seq + 1, seq)? {
            Some(w) => out.push(w.into_iter().map(i64::from).collect()),
            None => break,
        }
    }
    Ok(out)
}

/// Mean loss over the val windows, without recording a graph.
fn evaluate(model: &Gpt2, windows: &[Vec<i64>], batch: usize) -> Result<f64> {
    let eval = model.valid();
    let device = eval.wte.weight.val().device();
    let seq = windows[0].len() - 1;
    let (mut sum, mut n) = (0.0, 0usize);
    for group in windows.chunks(batch) {
        let ids: Vec<i64> = group.iter().flatten().copied().collect();
        let (inputs, targets) = shifted(ids, group.len(), seq, &device);
        sum += f64::from(host_values(eval.loss(inputs, targets))[0]) * group.len() as f64;
        n += group.len();
    }
    Ok(sum / n as f64)
}

fn save(
    run: &Path,
    model: &Gpt2,
    optimizer: &ModuleOptimizer,
    tokenizer: &Gpt2Tokenizer,
    state: &State,
    keep: usize,
) -> Result<PathBuf> {
    let path = checkpoint::save(run, &checkpoint::step_name(state.step), model, optimizer, tokenizer, state)?;
    checkpoint::prune(run, keep)?;
    Ok(path)
}

/// `--resume fresh`: removes what an earlier run left in `run`.
fn discard_run(run: &Path) -> Result<()> {
    for dir in [checkpoint::CHECKPOINTS, SAMPLES_DIR] {
        let path = run.join(dir);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(Error::io(&path))?;
        }
    }
    let metrics = run.join(METRICS_FILE);
    if metrics.exists() {
        std::fs::remove_file(&metrics).map_err(Error::io(&metrics))?;
    }
    Ok(())
}

/// Turns a panic inside a training step into an error: out-of-memory names the settings to lower, anything else
/// is a bug and keeps unwinding.
fn out_of_memory(panic: Box<dyn std::any::Any + Send>, config: &TrainConfig, seq_len: usize) -> Error {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    let lower = message.to_ascii_lowercase();
    if lower.contains("out of memory") || lower.contains("memory allocation") || lower.contains("failed to allocate") {
        return Error::OutOfMemory {
            device: config.device.clone(),
            hint: format!(
                "lower --batch-size (now {}) or --seq-len (now {seq_len}), raise --grad-accum (now {}) to keep the \
                 tokens per step, or add --gradient-checkpointing",
                config.batch_size, config.grad_accum
            ),
        };
    }
    std::panic::resume_unwind(panic)
}

/// `metrics.jsonl`, one JSON object per step. A resumed run first drops the lines after its checkpoint's step,
/// which the killed run wrote after saving, so that every step appears once.
struct Metrics {
    path: PathBuf,
    file: File,
}

impl Metrics {
    fn open(run: &Path, step: u64, resumed: bool) -> Result<Self> {
        let path = run.join(METRICS_FILE);
        let mut kept = Vec::new();
        if resumed && let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(Error::io(&path))?;
                let at = serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v["step"].as_u64());
                if at.is_some_and(|s| s <= step) {
                    kept.extend_from_slice(line.as_bytes());
                    kept.push(b'\n');
                }
            }
        }
        write_atomic(&path, &kept)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(Error::io(&path))?;
        Ok(Metrics { path, file })
    }

    fn write(&mut self, line: &StepMetrics) -> Result<()> {
        let mut bytes = serde_json::to_vec(line).expect("metrics serialise");
        bytes.push(b'\n');
        self.file.write_all(&bytes).map_err(Error::io(&self.path))
    }
}

/// `VmHWM` of /proc/self/status, in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

/// Reads a run's `metrics.jsonl`.
pub fn read_metrics(run: &Path) -> Result<Vec<StepMetrics>> {
    let path = run.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::Data { path: path.clone(), reason: format!("line {}: {e}", i + 1) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_clipping_scales_every_gradient_by_one_factor() {
        let device = Backend::Flex.device("cpu").unwrap();
        let config =
            crate::config::Config { n_positions: 8, vocab_size: 50, ..crate::config::Config::preset("tiny").unwrap() };
        let model = Gpt2::init(&config, &device, 1).unwrap();
        let (inputs, targets) = shifted((0..18).map(|i| i % 50).collect(), 2, 8, &device);
        let grads = GradientsParams::from_grads(model.loss(inputs, targets).backward(), &model);
        let before = host_values(grads.get::<2>(model.wte.weight.id).unwrap());
        let (grads, norm) = clip_grad_norm(&model, grads, 1e-3);
        assert!(norm > 1e-3, "norm {norm}");
        let after = host_values(grads.get::<2>(model.wte.weight.id).unwrap());
        let ratio = 1e-3 / (norm + 1e-6);
        for (a, b) in before.iter().zip(&after) {
            assert!((a * ratio as f32 - b).abs() <= 1e-9 + 1e-5 * b.abs(), "{a} * {ratio} vs {b}");
        }
        let mut again = SumCheck(0.0, &grads);
        model.visit(&mut again);
        assert!((again.0.sqrt() - 1e-3).abs() < 1e-6, "clipped norm {}", again.0.sqrt());
    }

    /// On LibTorch, the fused update (norm and clipping on the device, one AdamW call) moves the model as burn's
    /// AdamW does after clipping on the host, over two steps, with weight decay on the matrices only.
    #[cfg(feature = "tch")]
    #[test]
    fn the_fused_update_equals_burns_adamw_after_clipping() {
        let device = Backend::Tch.device("cpu").unwrap();
        let config = TrainConfig { weight_decay: 0.1, ..TrainConfig::default() };
        let model_config =
            crate::config::Config { n_positions: 8, vocab_size: 50, ..crate::config::Config::preset("tiny").unwrap() };
        let start = Gpt2::init(&model_config, &device, 1).unwrap();
        let (inputs, targets) = shifted((0..18).map(|i| i % 50).collect(), 2, 8, &device);
        let grads =
            |model: &Gpt2| GradientsParams::from_grads(model.loss(inputs.clone(), targets.clone()).backward(), model);
        let mut fused = TrainOptimizer::new(&config, &start, Backend::Tch);
        let hyperparameters = Hyperparameters { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: 0.1 };
        let mut burns =
            TrainOptimizer { params: grouped(Hyperparameters::burns, hyperparameters, &start), fused: None };
        assert!(fused.fused.is_some());
        let (mut ours, mut theirs) = (start.clone(), start.clone());
        for _ in 0..2 {
            let (our_grads, their_grads) = (grads(&ours), grads(&theirs));
            let (next, our_norm) = fused.step(1e-2, ours, our_grads, 1e-3);
            ours = next;
            let (next, their_norm) = burns.step(1e-2, theirs, their_grads, 1e-3);
            theirs = next;
            let (ours, theirs) = (host_values(our_norm)[0], host_values(their_norm)[0]);
            assert!(ours > 1e-3 && (ours - theirs).abs() < 1e-5 * theirs, "norms {ours} vs {theirs}");
        }
        let (mut a, mut b) = (Values(Vec::new()), Values(Vec::new()));
        ours.visit(&mut a);
        theirs.visit(&mut b);
        let mut moved = Values(Vec::new());
        start.visit(&mut moved);
        assert_eq!(a.0.len(), b.0.len());
        for ((a, b), before) in a.0.iter().zip(&b.0).zip(&moved.0) {
            for (a, b) in a.iter().zip(b) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
            let moved = a.iter().zip(before).map(|(a, before)| (a - before).abs()).fold(0.0, f32::max);
            assert!(moved > 5e-3, "a tensor moved by {moved} at most");
        }
    }

    #[cfg(feature = "tch")]
    struct Values(Vec<Vec<f32>>);

    #[cfg(feature = "tch")]
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(host_values(param.val()));
        }
    }

    struct SumCheck<'a>(f64, &'a GradientsParams);

    impl ModuleVisitor for SumCheck<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.1.get::<D>(param.id) {
                self.0 += host_values(g).iter().map(|x| f64::from(*x).powi(2)).sum::<f64>();
            }
        }
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;

    /// A data dir with one train and one val `.bin` shard of a simple repeating token pattern.
    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, n: usize| {
            let ids: Vec<u16> =
                (0..n).map(|i| [464, 3797, 318, 922, 13, 50256][i % 6] + (i / 600 % 3) as u16).collect();
            crate::data::tests::write_bin(&dir.path().join(name), &ids);
        };
        write("train-00000-of-00001.bin", 5000);
        write("val-00000-of-00001.bin", 400);
        let manifest = r#"{"shards": [
            {"file": "train-00000-of-00001.bin", "split": "train", "format": "tokens"},
            {"file": "val-00000-of-00001.bin", "split": "val", "format": "tokens"}]}"#;
        std::fs::write(dir.path().join(crate::data::MANIFEST), manifest).unwrap();
        dir
    }

    fn config() -> TrainConfig {
        TrainConfig {
            model: "tiny".to_owned(),
            steps: 6,
            batch_size: 2,
            grad_accum: 2,
            seq_len: 16,
            lr: 1e-3,
            schedule: Schedule::Cosine,
            warmup: 2,
            weight_decay: 0.1,
            sample_every: 2,
            sample_length: 4,
            val_every: 2,
            val_batches: 2,
            save_every: 0,
            ..TrainConfig::default()
        }
    }

    /// Both backends keep the same optimizer state (burn's `AdamWState`, whichever AdamW runs): a run that one
    /// backend stops and the other resumes ends where a straight run ends. Rounding differs between backends
    /// (~1e-6); losing the moments at the switch would move the weights by about the learning rate (1e-3).
    #[cfg(feature = "tch")]
    #[test]
    fn a_checkpoint_resumes_on_the_other_backend() {
        let data = data_dir();
        let on = |backend: &str| TrainConfig { backend: backend.to_owned(), sample_every: 0, ..config() };
        let weights = |run: &Path| {
            let bytes = std::fs::read(run.join("checkpoints/step-000006").join(WEIGHTS_FILE)).unwrap();
            let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut names = tensors.names();
            names.sort();
            names
                .into_iter()
                .flat_map(|name| {
                    let data = tensors.tensor(name).unwrap().data().to_vec();
                    data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        let straight = tempfile::tempdir().unwrap();
        train(&on("tch"), data.path(), straight.path(), &Resume::Latest, &mut |_| {}).unwrap();
        let expected = weights(straight.path());
        for (first, second) in [("tch", "flex"), ("flex", "tch")] {
            let split = tempfile::tempdir().unwrap();
            let stop = TrainConfig { stop_at: Some(3), ..on(first) };
            train(&stop, data.path(), split.path(), &Resume::Latest, &mut |_| {}).unwrap();
            let report = train(&on(second), data.path(), split.path(), &Resume::Latest, &mut |_| {}).unwrap();
            assert_eq!(report.step, 6);
            let got = weights(split.path());
            assert_eq!(got.len(), expected.len());
            let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-4, "{first} then {second}: weights differ by up to {worst}");
        }
    }

    /// `--profile-steps 2` records steps 2 and 3 (step 1 warms up) as PyTorch's Chrome trace: the steps and their
    /// phases are spans, LibTorch's operators are events (the fused attention and AdamW among them), the other
    /// steps are not in it, and the run learns what it learns without the profiler.
    #[cfg(feature = "tch")]
    #[test]
    fn profiled_steps_are_traced_operator_by_operator() {
        let data = data_dir();
        let on = |profile_steps| TrainConfig { backend: "tch".to_owned(), sample_every: 0, profile_steps, ..config() };
        let run = tempfile::tempdir().unwrap();
        let mut notes = Vec::new();
        let mut observe = |e| {
            if let Event::Note(note) = e {
                notes.push(note)
            }
        };
        train(&on(2), data.path(), run.path(), &Resume::Latest, &mut observe).unwrap();
        let path = run.path().join("profile/steps-2-3.pt.trace.json");
        assert!(notes.iter().any(|n| n.contains(&path.display().to_string())), "{notes:?}");
        let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let events = trace["traceEvents"].as_array().unwrap();
        let names: std::collections::HashSet<&str> = events.iter().filter_map(|e| e["name"].as_str()).collect();
        for name in [
            "ProfilerStep#2",
            "ProfilerStep#3",
            "forward",
            "backward",
            "optimizer",
            "read loss and norm",
            "aten::scaled_dot_product_attention",
            "aten::_fused_adamw_",
            "aten::_foreach_norm",
        ] {
            assert!(names.contains(name), "{name} is not in the trace");
        }
        assert!(!names.contains("ProfilerStep#1") && !names.contains("ProfilerStep#4"));
        // Each profiled step runs its 2 micro-batches' forward and backward passes and one update.
        let count = |name: &str| events.iter().filter(|e| e["name"] == name).count();
        assert_eq!((count("forward"), count("backward"), count("optimizer")), (4, 4, 2));
        assert!(!run.path().join("profile/steps-2-3.pt.trace.partial").exists());

        let plain = tempfile::tempdir().unwrap();
        train(&on(0), data.path(), plain.path(), &Resume::Latest, &mut |_| {}).unwrap();
        let losses = |run: &Path| read_metrics(run).unwrap().iter().map(|m| m.loss).collect::<Vec<_>>();
        assert_eq!(losses(run.path()), losses(plain.path()));
        assert!(!plain.path().join("profile").exists());
    }

    /// A checkpoint's `state.json` from before a setting existed still loads (the setting takes its default).
    #[test]
    fn a_config_saved_before_a_setting_existed_loads() {
        let mut saved = serde_json::to_value(TrainConfig { steps: 7, ..TrainConfig::default() }).unwrap();
        let fields = saved.as_object_mut().unwrap();
        fields.remove("profile_steps");
        fields.remove("gradient_checkpointing");
        let loaded: TrainConfig = serde_json::from_value(saved).unwrap();
        assert_eq!(loaded, TrainConfig { steps: 7, ..TrainConfig::default() });
    }

    #[test]
    fn profiling_needs_libtorch() {
        let data = data_dir();
        let run = tempfile::tempdir().unwrap();
        let config = TrainConfig { profile_steps: 2, ..config() };
        let error = train(&config, data.path(), run.path(), &Resume::Latest, &mut |_| {}).unwrap_err();
        assert!(error.to_string().contains("--profile-steps needs --backend tch"), "{error}");
    }

    #[test]
    fn a_stopped_and_resumed_run_equals_a_straight_one() {
        let data = data_dir();
        let straight = tempfile::tempdir().unwrap();
        let report = train(&config(), data.path(), straight.path(), &Resume::Latest, &mut |_| {}).unwrap();
        assert_eq!(report.step, 6);
        let split = tempfile::tempdir().unwrap();
        let first = TrainConfig { stop_at: Some(3), ..config() };
        assert_eq!(train(&first, data.path(), split.path(), &Resume::Latest, &mut |_| {}).unwrap().step, 3);
        let mut resumed_from = None;
        let report = train(&config(), data.path(), split.path(), &Resume::Latest, &mut |e| {
            if let Event::Started { resumed_from: from, step, .. } = e {
                resumed_from = from.map(|p| (p, step));
            }
        })
        .unwrap();
        assert_eq!(report.step, 6);
        assert_eq!(resumed_from.unwrap().1, 3);

        let losses =
            |run: &Path| read_metrics(run).unwrap().iter().map(|m| (m.step, m.loss, m.val_loss)).collect::<Vec<_>>();
        assert_eq!(losses(straight.path()), losses(split.path()));
        let weights = |run: &Path| std::fs::read(run.join("checkpoints/step-000006").join(WEIGHTS_FILE)).unwrap();
        assert!(weights(straight.path()) == weights(split.path()), "parameters differ after resuming");
        let sample = |run: &Path| std::fs::read_to_string(run.join("samples/step-6.txt")).unwrap();
        assert_eq!(sample(straight.path()), sample(split.path()));
        // The loss went down on this easy pattern.
        let m = read_metrics(straight.path()).unwrap();
        assert!(m[5].loss < m[0].loss - 0.5, "{m:?}");
    }

    /// bf16 autocast on LibTorch: the products run in bf16 (the first loss moves, a little), the model still
    /// learns, and what is saved is f32.
    #[cfg(feature = "tch")]
    #[test]
    fn bf16_autocast_learns_and_keeps_f32_weights() {
        let data = data_dir();
        let run = |precision| {
            let dir = tempfile::tempdir().unwrap();
            let config = TrainConfig { backend: "tch".to_owned(), precision, ..config() };
            train(&config, data.path(), dir.path(), &Resume::Latest, &mut |_| {}).unwrap();
            dir
        };
        let (f32_run, bf16_run) = (run(Precision::F32), run(Precision::Bf16));
        let (full, mixed) = (read_metrics(f32_run.path()).unwrap(), read_metrics(bf16_run.path()).unwrap());
        assert_ne!(full[0].loss, mixed[0].loss, "the bf16 run computed in f32");
        assert!((full[0].loss - mixed[0].loss).abs() < 0.02 * full[0].loss, "{} vs {}", full[0].loss, mixed[0].loss);
        assert!(mixed[5].loss < mixed[0].loss - 0.5, "{mixed:?}");
        let bytes = std::fs::read(bf16_run.path().join("checkpoints/step-000006").join(WEIGHTS_FILE)).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert!(file.iter().all(|(_, t)| t.dtype() == safetensors::Dtype::F32));
    }
}
