//! Comparison with a transformers reference fixture (made by scripts/gen_reference.py): the parity tests and the
//! GPU check (examples/cuda_check.rs) both measure revgen against it here.

use std::path::Path;

use burn::tensor::Device;
use safetensors::SafeTensors;
use serde::Deserialize;

use crate::hub::ModelSource;
use crate::model::{KvCache, host_values, ids_tensor};
use crate::score::next_token_losses;
use crate::{Error, Result};

#[derive(Deserialize)]
struct Reference {
    column_step: usize,
    texts: Vec<ReferenceText>,
}

#[derive(Deserialize)]
struct ReferenceText {
    text: String,
    ids: Vec<u32>,
    loss: Option<f64>,
    per_token_loss: Option<Vec<f64>>,
}

/// How far revgen is from transformers on one reference text.
#[derive(Clone, Debug)]
pub struct TextParity {
    /// revgen's tokenizer gives transformers' ids.
    pub ids_match: bool,
    /// Max |logit difference| on every `column_step`-th vocabulary column at every position.
    pub logit_diff: f32,
    /// Max |logit difference| on the whole vocabulary at the last position.
    pub last_position_diff: f32,
    /// Max |difference| between logits fed through the KV cache (a 3-token prefix, then one token at a time) and
    /// the full-sequence logits.
    pub kv_cache_diff: f32,
    /// |mean loss − transformers'| / transformers'; `None` for a one-token text.
    pub loss_rel_diff: Option<f64>,
    /// Max |per-token loss difference|.
    pub per_token_loss_diff: Option<f64>,
}

/// Loads the fixture model in `dir` on `device` and compares it with the reference stored beside it.
pub fn compare(dir: &Path, device: &Device) -> Result<Vec<TextParity>> {
    let json_path = dir.join("reference.json");
    let text = std::fs::read_to_string(&json_path).map_err(Error::io(&json_path))?;
    let reference: Reference =
        serde_json::from_str(&text).map_err(|source| Error::Json { path: json_path.clone(), source })?;
    let tensors_path = dir.join("reference.safetensors");
    let bytes = std::fs::read(&tensors_path).map_err(Error::io(&tensors_path))?;
    let expected = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Weights { path: tensors_path.clone(), reason: e.to_string() })?;
    let get = |name: &str| -> Result<Vec<f32>> {
        let view = expected.tensor(name).map_err(|_| Error::MissingTensor {
            path: tensors_path.clone(),
            name: name.to_owned(),
            shape: Vec::new(),
        })?;
        Ok(view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    };

    let source = ModelSource::resolve(&dir.to_string_lossy(), false)?;
    let model = source.load(device, 0)?;
    let vocab = source.config.vocab_size;
    let mut report = Vec::with_capacity(reference.texts.len());
    for (i, text) in reference.texts.iter().enumerate() {
        let logits = host_values(model.forward(ids_tensor(&text.ids, 1, device))); // [tokens, vocab]
        let columns: Vec<f32> =
            logits.chunks(vocab).flat_map(|row| row.iter().step_by(reference.column_step).copied()).collect();
        let mut cache = KvCache::new();
        let split = text.ids.len().min(3);
        let mut incremental = host_values(model.forward_cached(ids_tensor(&text.ids[..split], 1, device), &mut cache)?);
        for &id in &text.ids[split..] {
            incremental.extend(host_values(model.forward_cached(ids_tensor(&[id], 1, device), &mut cache)?));
        }
        let (loss_rel_diff, per_token_loss_diff) = match (text.loss, &text.per_token_loss) {
            (Some(loss), Some(per_token)) => {
                let losses = next_token_losses(&model, &text.ids, device)?;
                let mean = losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len() as f64;
                let worst = losses.iter().zip(per_token).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
                (Some(((mean - loss) / loss).abs()), Some(worst))
            }
            _ => (None, None),
        };
        report.push(TextParity {
            ids_match: source.tokenizer.encode(&text.text)? == text.ids,
            logit_diff: max_abs_diff(&columns, &get(&format!("logits.{i}"))?),
            last_position_diff: max_abs_diff(&logits[logits.len() - vocab..], &get(&format!("last.{i}"))?),
            kv_cache_diff: max_abs_diff(&incremental, &logits),
            loss_rel_diff,
            per_token_loss_diff,
        });
    }
    Ok(report)
}

/// Max |a − b|; a length mismatch counts as infinitely far.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
