//! GPU check for the device machine (scripts/gpu-check.sh builds it here and runs it there).
//!
//! 1. Parity: the tiny fixture's logits, KV-cache logits and loss on `cuda:0` against transformers' reference.
//! 2. Gradients: the backward steps of attention, the loss, GELU and LayerNorm on `cuda:0` against burn's
//!    autodiff of their written-out forms (`revgen_trainer::gradcheck`), in f32 and with bf16 products.
//! 3. AdamW: the fused multi-tensor update (`revgen_trainer::adamw`) against burn's AdamW over ten steps.
//! 4. Throughput of the same model code on CUDA, f32: forward (inference device) and forward+backward (training
//!    device) in tokens/s for GPT-2 124M and 355M at batch × 1024 tokens, and KV-cache decoding in tokens/s.
//!
//! Prints one JSON object per line.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, FloatDType, Tensor};
use revgen_trainer::backend::Backend;
use revgen_trainer::config::Config;
use revgen_trainer::model::{Gpt2, KvCache, host_values, ids_tensor};
use revgen_trainer::parity::TextParity;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    host_values(t)
}

fn parity(fixture: &Path, device: &Device) {
    let texts = revgen_trainer::parity::compare(fixture, device).unwrap();
    let max = |f: fn(&TextParity) -> f64| texts.iter().map(f).fold(0.0, f64::max);
    let logit_diff = max(|t| f64::from(t.logit_diff.max(t.last_position_diff)));
    let kv_diff = max(|t| f64::from(t.kv_cache_diff));
    let loss_rel = max(|t| t.loss_rel_diff.unwrap_or(0.0));
    let ok = texts.iter().all(|t| t.ids_match) && logit_diff <= 1e-4 && kv_diff <= 1e-4 && loss_rel <= 1e-5;
    println!(
        "{}",
        serde_json::json!({"check": "parity", "device": format!("{device:?}"), "max_logit_diff": logit_diff,
            "max_kv_cache_diff": kv_diff, "max_loss_rel_diff": loss_rel, "ok": ok})
    );
}

/// Differences are absolute on values of order 1: f32 should agree to ~1e-5 (the CPU test's bound); bf16 products
/// round to 8 bits of mantissa on both sides but in different places (0.04 on LibTorch CPU), so their bound only
/// catches a wrong backward step.
fn gradients(device: &Device) {
    for (dtype, name, bound) in [(None, "f32", 1e-4), (Some(FloatDType::BF16), "bf16", 1e-1)] {
        let differences = revgen_trainer::gradcheck::compare(device, dtype);
        let worst = differences.iter().map(|d| d.max_abs).fold(0.0, f32::max);
        let all: serde_json::Map<String, serde_json::Value> = differences
            .iter()
            .map(|d| (format!("{} {}", d.operation, d.quantity), serde_json::json!(d.max_abs)))
            .collect();
        println!(
            "{}",
            serde_json::json!({"check": "gradients", "device": format!("{device:?}"), "dtype": name,
                "max_abs_diff": worst, "differences": all, "ok": worst < bound})
        );
    }
}

/// The bounds are the CPU unit test's: the kernels compute in f32 either way.
fn optimizer(device: &Device) {
    let d = revgen_trainer::adamw::matches_burn(device);
    println!(
        "{}",
        serde_json::json!({"check": "adamw", "device": format!("{device:?}"), "max_param_diff": d.params,
            "max_moment_2_diff": d.moment_2, "steps": d.steps,
            "ok": d.params < 1e-5 && d.moment_2 < 1e-7 && d.steps == 10})
    );
}

/// Tokens/s of `f` over `iters` runs after one warm-up; `f` must block until the device is done.
fn time<F: FnMut()>(iters: usize, tokens_per_iter: usize, mut f: F) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    (iters * tokens_per_iter) as f64 / start.elapsed().as_secs_f64()
}

fn throughput(preset: &str, batch: usize, cuda: &str) {
    let config = Config::preset(preset).unwrap();
    let seq = config.n_positions;
    let ids: Vec<u32> = (0..batch * seq).map(|i| (i * 7919 % 50000) as u32).collect();

    let device = Backend::Tch.inference_device(cuda).unwrap();
    let model = Gpt2::init(&config, &device, 0).unwrap();
    let forward = time(5, batch * seq, || {
        let logits = model.forward(ids_tensor(&ids, batch, &device));
        let _ = values(logits.slice([0..1, 0..1, 0..1])); // sync
    });
    let prompt = &ids[..16];
    let decode = time(1, 128, || {
        let mut cache = KvCache::new();
        let mut logits = model.forward_cached(ids_tensor(prompt, 1, &device), &mut cache).unwrap();
        for _ in 0..128 {
            let [_, t, _] = logits.dims();
            let next = logits.slice([0..1, t - 1..t]).argmax(2).reshape([1, 1]); // [1, 1]
            logits = model.forward_cached(next, &mut cache).unwrap();
        }
        let _ = values(logits.slice([0..1, 0..1, 0..1]));
    });
    drop(model);

    let train_device = Backend::Tch.device(cuda).unwrap();
    let model = Gpt2::init(&config, &train_device, 0).unwrap();
    let inputs = ids_tensor(&ids, batch, &train_device);
    let train = time(5, batch * seq, || {
        let loss = model.loss(inputs.clone(), inputs.clone());
        let grads = loss.backward();
        let g = model.wte.weight.grad(&grads).expect("wte grad");
        let _ = values(g.slice([0..1, 0..1])); // sync
    });
    println!(
        "{}",
        serde_json::json!({"check": "throughput", "model": preset, "params": config.num_params(), "batch": batch,
            "seq": seq, "dtype": "f32", "forward_tokens_per_s": forward.round(),
            "forward_backward_tokens_per_s": train.round(), "kv_decode_tokens_per_s": decode.round()})
    );
}

/// `cuda_check [FIXTURE_DIR] [DEVICE] [PRESET...]`, by default the tiny fixture, `cuda:0`, gpt2 and gpt2-medium.
/// `cuda_check trainer/tests/fixtures/tiny-gpt2 cpu tiny` tries the whole flow on a machine without a GPU.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let fixture = Path::new(args.get(1).map(String::as_str).unwrap_or("trainer/tests/fixtures/tiny-gpt2"));
    let device = args.get(2).map(String::as_str).unwrap_or("cuda:0");
    let presets: Vec<&str> =
        if args.len() > 3 { args[3..].iter().map(String::as_str).collect() } else { vec!["gpt2", "gpt2-medium"] };
    parity(fixture, &Backend::Tch.inference_device(device).unwrap());
    parity(fixture, &Backend::Tch.device(device).unwrap());
    gradients(&Backend::Tch.device(device).unwrap());
    optimizer(&Backend::Tch.inference_device(device).unwrap());
    for preset in presets {
        throughput(preset, 8, device);
    }
}
