//! Sampling text from the model: gpt-2-simple's `generate` (temperature 0.7, top-k 0 = off), with a key/value
//! cache so each new token runs through the model once.

use burn::tensor::Device;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::{Gpt2, KvCache, host_values, ids_tensor};
use crate::tokenizer::{END_OF_TEXT_ID, Gpt2Tokenizer};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleConfig {
    /// New tokens at most.
    pub length: usize,
    /// Softmax temperature; 0 picks the most likely token.
    pub temperature: f64,
    /// Sample among the k most likely tokens only; 0 = all.
    pub top_k: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        SampleConfig { length: 500, temperature: 0.7, top_k: 0 }
    }
}

/// Continues `prompt` by up to `config.length` tokens, stopping after `<|endoftext|>` or at the model's context.
/// Returns the prompt and its continuation as text.
pub fn generate(
    model: &Gpt2,
    tokenizer: &Gpt2Tokenizer,
    prompt: &str,
    config: &SampleConfig,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<String> {
    let mut ids = tokenizer.encode(prompt)?;
    if ids.is_empty() {
        ids.push(END_OF_TEXT_ID); // GPT-2's unconditional start
    }
    let context = model.n_positions();
    if ids.len() >= context {
        return Err(Error::ContextOverflow { tokens: ids.len() + 1, n_positions: context });
    }
    let prompt_len = ids.len();
    let mut cache = KvCache::new();
    let mut logits = model.forward_cached(ids_tensor(&ids, 1, device), &mut cache)?; // [1, t, vocab]
    for _ in 0..config.length {
        let [_, t, vocab] = logits.dims();
        let last = host_values(logits.slice([0..1, t - 1..t, 0..vocab])); // [vocab]
        let next = pick(&last, config, rng);
        ids.push(next);
        if next == END_OF_TEXT_ID || cache.len() >= context {
            break;
        }
        logits = model.forward_cached(ids_tensor(&[next], 1, device), &mut cache)?;
    }
    let start = if prompt.is_empty() { prompt_len } else { 0 };
    tokenizer.decode(&ids[start..])
}

/// Draws a token from `logits` with the temperature and top-k of `config`.
fn pick(logits: &[f32], config: &SampleConfig, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32);
    if config.temperature <= 0.0 {
        return argmax();
    }
    let mut candidates: Vec<(u32, f64)> =
        logits.iter().enumerate().map(|(i, &l)| (i as u32, f64::from(l) / config.temperature)).collect();
    if config.top_k > 0 && config.top_k < candidates.len() {
        candidates.select_nth_unstable_by(config.top_k - 1, |a, b| b.1.total_cmp(&a.1));
        candidates.truncate(config.top_k);
    }
    let max = candidates.iter().map(|c| c.1).fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = candidates.iter().map(|c| (c.1 - max).exp()).sum();
    let mut target = rng.random::<f64>() * total;
    for &(id, l) in &candidates {
        target -= (l - max).exp();
        if target <= 0.0 {
            return id;
        }
    }
    candidates.last().map_or_else(argmax, |c| c.0)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn top_k_and_temperature_restrict_the_draw() {
        let logits = [0.0f32, 5.0, 4.9, -3.0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let greedy = SampleConfig { temperature: 0.0, ..Default::default() };
        assert_eq!(pick(&logits, &greedy, &mut rng), 1);
        let top2 = SampleConfig { top_k: 2, ..Default::default() };
        let draws: Vec<u32> = (0..200).map(|_| pick(&logits, &top2, &mut rng)).collect();
        assert!(draws.iter().all(|&d| d == 1 || d == 2));
        assert!(draws.contains(&1) && draws.contains(&2));
    }

    #[test]
    fn generation_is_reproducible_from_the_rng_and_stops_at_the_length() {
        let config = crate::config::Config::preset("tiny").unwrap();
        let device = Device::flex();
        let model = Gpt2::init(&config, &device, 1).unwrap();
        let tokenizer = Gpt2Tokenizer::builtin();
        let sample = SampleConfig { length: 12, ..Default::default() };
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            generate(&model, &tokenizer, "<|startoftext|> 5|||", &sample, &mut rng, &device).unwrap()
        };
        let a = run(3);
        assert_eq!(a, run(3));
        assert!(a.starts_with("<|startoftext|> 5|||"));
        assert!(tokenizer.encode(&a).unwrap().len() <= 7 + 3 + 12 + 2, "{a:?}");
    }
}
