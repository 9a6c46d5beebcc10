//! `revgen score`: how well a model predicts a text, as mean next-token cross-entropy (nats) and perplexity.

use burn::tensor::Device;
use serde::Serialize;

use crate::loss::token_losses;
use crate::model::{Gpt2, host_values, ids_tensor};
use crate::tokenizer::Gpt2Tokenizer;
use crate::{Error, Result};

#[derive(Clone, Debug, Serialize)]
pub struct Score {
    /// Tokens in the text. Every token but the first is predicted, so the mean is over `tokens - 1` losses.
    pub tokens: usize,
    /// Mean next-token cross-entropy in nats.
    pub loss: f64,
    pub perplexity: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_token: Option<Vec<TokenLoss>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TokenLoss {
    pub id: u32,
    pub token: String,
    pub loss: f64,
}

/// Scores `text`. A text longer than the context is scored in overlapping windows (HF's strided perplexity): the
/// first window is a full context, and each later one moves by half a context and scores only its new tokens, so
/// every token after the first is predicted exactly once and with at least half a context of history.
pub fn score(model: &Gpt2, tokenizer: &Gpt2Tokenizer, text: &str, per_token: bool, device: &Device) -> Result<Score> {
    let ids = tokenizer.encode(text)?;
    let losses = next_token_losses(model, &ids, device)?;
    let loss = losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len() as f64;
    let per_token = per_token
        .then(|| {
            ids[1..]
                .iter()
                .zip(&losses)
                .map(|(&id, &l)| Ok(TokenLoss { id, token: tokenizer.token_text(id)?, loss: f64::from(l) }))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(Score { tokens: ids.len(), loss, perplexity: loss.exp(), per_token })
}

/// The loss of predicting `ids[i]` from `ids[..i]`, for i in 1..len.
pub fn next_token_losses(model: &Gpt2, ids: &[u32], device: &Device) -> Result<Vec<f32>> {
    if ids.len() < 2 {
        return Err(Error::TooFewTokens(ids.len()));
    }
    let context = model.n_positions();
    let stride = (context / 2).max(1);
    let mut losses = Vec::with_capacity(ids.len() - 1);
    let mut next = 1; // the next target position
    while next < ids.len() {
        let end = if next == 1 { context + 1 } else { next + stride }.min(ids.len()); // targets next..end
        let begin = end.saturating_sub(context + 1); // window ids[begin..end], inputs ids[begin..end-1]
        let inputs = ids_tensor(&ids[begin..end - 1], 1, device);
        let targets = ids_tensor(&ids[begin + 1..end], 1, device);
        let window = host_values(token_losses(model.forward(inputs), targets)); // [end - begin - 1]
        losses.extend_from_slice(&window[next - begin - 1..]);
        next = end;
    }
    Ok(losses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn long_texts_are_scored_in_windows_that_predict_each_token_once() {
        let device = Device::flex();
        let config = Config { n_positions: 8, ..Config::preset("tiny").unwrap() };
        let model = Gpt2::init(&config, &device, 11).unwrap();
        let ids: Vec<u32> = (0..21).map(|i| (i * 37 % 500) as u32).collect();
        let losses = next_token_losses(&model, &ids, &device).unwrap();
        assert_eq!(losses.len(), 20);
        // Context 8, stride 4: targets 1..9 from ids[0..8], then 9..13 from ids[4..12], 13..17 from ids[8..16],
        // 17..21 from ids[12..20]. Each must equal a direct forward pass over its window.
        let direct = |begin: usize, end: usize| {
            let inputs = ids_tensor(&ids[begin..end - 1], 1, &device);
            host_values(token_losses(model.forward(inputs), ids_tensor(&ids[begin + 1..end], 1, &device)))
        };
        assert_eq!(losses[..8], direct(0, 9)[..]);
        for (first_target, begin) in [(9, 4), (13, 8), (17, 12)] {
            let window = direct(begin, first_target + 4);
            assert_eq!(
                losses[first_target - 1..first_target + 3],
                window[window.len() - 4..],
                "targets from {first_target}"
            );
        }
        assert!(matches!(next_token_losses(&model, &ids[..1], &device), Err(Error::TooFewTokens(1))));
    }

    #[test]
    fn an_untrained_model_scores_near_the_uniform_loss() {
        let device = Device::flex();
        let model = Gpt2::init(&Config::preset("tiny").unwrap(), &device, 0).unwrap();
        let s = score(
            &model,
            &Gpt2Tokenizer::builtin(),
            "<|startoftext|> 5|||Great|||Love it.<|endoftext|>",
            true,
            &device,
        )
        .unwrap();
        // ln(50257) = 10.82; GPT-2's small init keeps the logits near zero.
        assert!((s.loss - 50257f64.ln()).abs() < 0.1, "loss {}", s.loss);
        assert!((s.perplexity - s.loss.exp()).abs() < 1e-9);
        let per_token = s.per_token.unwrap();
        assert_eq!(per_token.len(), s.tokens - 1);
        assert_eq!(per_token.last().unwrap().token, "<|endoftext|>");
    }
}
