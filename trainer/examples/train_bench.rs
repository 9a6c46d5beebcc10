//! Training throughput of `revgen train`'s loop on a GPU (scripts/gpu-check.sh builds it here and runs it there).
//!
//!     train_bench PRESET|MODEL_DIR BATCH PRECISION STEPS [DEVICE] [--gradient-checkpointing] [--data DIR]
//!     e.g. train_bench gpt2-medium 8 bf16 20 cuda:0
//!
//! Without `--data`, writes a data directory of random GPT-2 token ids (one `.bin` shard, llm.c's layout, and a
//! manifest) to a temporary directory and trains PRESET from its random initialisation with seq 1024 (or the
//! preset's context, if shorter; `BENCH_SEQ` sets another), grad-accum 1, no sampling, validation or intermediate
//! checkpoints. With
//! `--data DIR` (shards from `revgen prepare --tokenize`) it is a whole run instead: validation and samples every
//! 50 steps, checkpoints every 100, and the run dir's samples and metrics go to `$BENCH_RUN_OUT` if set.
//! Prints one JSON object: tokens/s over the steps after the first 3, and MFU against the card's dense peak
//! given in `PEAK_TFLOPS` (989 for H100/H200 bf16; 0 = not computed). With `BENCH_PROFILE_OUT=DIR`, steps 2 and 3
//! (before the timed ones) are recorded with PyTorch's profiler and their trace is copied to DIR.

use std::io::Write;

use revgen_trainer::config::Config;
use revgen_trainer::train::{self, Precision, Resume, TrainConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: train_bench PRESET BATCH PRECISION STEPS [DEVICE] [--gradient-checkpointing] [--data DIR]");
        std::process::exit(2);
    }
    let (preset, batch, precision, steps) = (&args[1], args[2].parse().unwrap(), &args[3], args[4].parse().unwrap());
    let device = args.get(5).filter(|a| !a.starts_with("--")).cloned().unwrap_or_else(|| "cuda:0".to_owned());
    let checkpointing = args.iter().any(|a| a == "--gradient-checkpointing");
    let data = args.iter().position(|a| a == "--data").map(|i| std::path::PathBuf::from(&args[i + 1]));
    // A preset, or a directory with an HF config.json (other shapes, trained from scratch).
    let config = Config::preset(preset)
        .or_else(|| Config::from_file(&std::path::Path::new(preset).join("config.json")).ok())
        .expect("a preset or a directory with a config.json");
    // BENCH_SEQ shortens the windows (the CPU comparisons use 128).
    let seq = std::env::var("BENCH_SEQ").ok().and_then(|v| v.parse().ok()).unwrap_or(1024).min(config.n_positions);
    let dir = std::env::temp_dir().join(format!("revgen-train-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if data.is_none() {
        write_data(&dir, 4 << 20);
    }
    let every = if data.is_some() { 50 } else { 0 };
    let profile_out = std::env::var("BENCH_PROFILE_OUT").ok().map(std::path::PathBuf::from);

    let train_config = TrainConfig {
        model: preset.clone(),
        from_scratch: true,
        steps,
        batch_size: batch,
        grad_accum: 1,
        seq_len: seq,
        sample_every: every,
        val_every: every,
        save_every: 2 * every,
        sample_length: 64,
        backend: "tch".to_owned(),
        device: device.clone(),
        precision: precision.parse::<Precision>().unwrap(),
        gradient_checkpointing: checkpointing,
        profile_steps: if profile_out.is_some() { 2 } else { 0 },
        ..TrainConfig::default()
    };
    let run = dir.join("run");
    // The run's notes (such as where the profile went, or why it did not) go to stderr; the result to stdout.
    let mut notes = |event| {
        if let train::Event::Note(note) = event {
            eprintln!("{note}");
        }
    };
    let report =
        train::train(&train_config, data.as_deref().unwrap_or(&dir), &run, &Resume::Fresh, &mut notes).unwrap();
    let metrics = train::read_metrics(&run).unwrap();
    let timed = &metrics[3.min(metrics.len() - 1)..];
    let tokens = (batch * seq * timed.len()) as f64;
    let seconds: f64 = timed.iter().map(|m| (batch * seq) as f64 / m.tokens_per_s).sum();
    let tokens_per_s = tokens / seconds;
    let peak: f64 = std::env::var("PEAK_TFLOPS").ok().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    // nanoGPT's estimate: 6 N per token plus attention's 12 · layers · d · seq.
    let flops_per_token = 6.0 * config.num_params() as f64 + 12.0 * (config.n_layer * config.n_embd * seq) as f64;
    let mfu = if peak > 0.0 { tokens_per_s * flops_per_token / (peak * 1e12) } else { 0.0 };
    let line = serde_json::json!({
        "bench": "train", "preset": preset, "batch": batch, "seq": seq, "precision": precision, "device": device,
        "steps": report.step, "tokens_per_s": tokens_per_s, "mfu": mfu, "final_loss": report.train_loss,
        "peak_host_rss_mb": metrics.last().and_then(|m| m.peak_rss_mb), "gradient_checkpointing": checkpointing,
        "val_loss": report.val_loss,
    });
    println!("{line}");
    std::io::stdout().flush().unwrap();
    // No trace is no reason to fail the measurement (the note above says why there is none).
    if let (Some(out), Ok(traces)) = (profile_out, std::fs::read_dir(run.join("profile"))) {
        std::fs::create_dir_all(&out).unwrap();
        for entry in traces {
            let path = entry.unwrap().path();
            std::fs::copy(&path, out.join(path.file_name().unwrap())).unwrap();
        }
    }
    if let Ok(out) = std::env::var("BENCH_RUN_OUT") {
        let out = std::path::Path::new(&out);
        std::fs::create_dir_all(out).unwrap();
        std::fs::copy(run.join("metrics.jsonl"), out.join(format!("{preset}-{precision}-metrics.jsonl"))).unwrap();
        let last_sample = run.join("samples").join(format!("step-{}.txt", report.step));
        if last_sample.exists() {
            std::fs::copy(last_sample, out.join(format!("{preset}-{precision}-sample.txt"))).unwrap();
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tokens` random ids as `train-00000-of-00001.bin`, listed by a manifest.
fn write_data(dir: &std::path::Path, tokens: usize) {
    let mut header = [0i32; 256];
    header[..5].copy_from_slice(&[20240520, 1, tokens as i32, 50257, 50256]);
    let mut bytes: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..tokens {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend(((x % 50257) as u16).to_le_bytes());
    }
    std::fs::write(dir.join("train-00000-of-00001.bin"), bytes).unwrap();
    let manifest = r#"{"shards": [{"file": "train-00000-of-00001.bin", "split": "train", "format": "tokens"}]}"#;
    std::fs::write(dir.join("manifest.json"), manifest).unwrap();
}
