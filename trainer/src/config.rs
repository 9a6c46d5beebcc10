//! GPT-2 hyperparameters: HF `config.json` and the four OpenAI sizes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shape of a GPT-2 model. Field names follow HF's `GPT2Config`, so a model directory's `config.json` reads
/// directly; `n_ctx`, the older name of `n_positions`, is accepted too (the hub's files carry both).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    #[serde(default = "default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
}

fn default_layer_norm_epsilon() -> f64 {
    1e-5
}

/// GPT-2's vocabulary: 50,000 merges + 256 byte tokens + `<|endoftext|>`.
pub const GPT2_VOCAB: usize = 50257;

impl Config {
    fn gpt2(n_embd: usize, n_layer: usize, n_head: usize) -> Self {
        Config { vocab_size: GPT2_VOCAB, n_positions: 1024, n_embd, n_layer, n_head, layer_norm_epsilon: 1e-5 }
    }

    /// A preset by its HF hub name: `gpt2` (124M), `gpt2-medium` (355M), `gpt2-large` (774M), `gpt2-xl` (1558M),
    /// or `tiny` (2 layers, 4 heads, 64 dims, the real vocabulary; for tests and smoke runs).
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "tiny" => Config { n_positions: 256, ..Self::gpt2(64, 2, 4) },
            "gpt2" => Self::gpt2(768, 12, 12),
            "gpt2-medium" => Self::gpt2(1024, 24, 16),
            "gpt2-large" => Self::gpt2(1280, 36, 20),
            "gpt2-xl" => Self::gpt2(1600, 48, 25),
            _ => return None,
        })
    }

    pub const PRESETS: &'static [&'static str] = &["tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"];

    /// Reads an HF `config.json`. Keys that do not change the computation (architectures, dropout, token ids) are
    /// ignored; variants of GPT-2 that this model does not implement are refused rather than run wrongly.
    pub fn from_file(path: &Path) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidConfig { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
        let mut json: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_owned(), source })?;
        let fields = json.as_object_mut().ok_or_else(|| invalid("not a JSON object".to_owned()))?;
        match (fields.remove("n_ctx"), fields.get("n_positions")) {
            (Some(n_ctx), None) => {
                fields.insert("n_positions".to_owned(), n_ctx);
            }
            (Some(n_ctx), Some(n_positions)) if &n_ctx != n_positions => {
                return Err(invalid(format!("n_ctx {n_ctx} differs from n_positions {n_positions}")));
            }
            _ => {}
        }
        unsupported_variant(fields).map_or(Ok(()), |reason| Err(invalid(reason)))?;
        let config: Config =
            serde_json::from_value(json).map_err(|source| Error::Json { path: path.to_owned(), source })?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// The HF `config.json` that transformers' `GPT2LMHeadModel.from_pretrained` expects.
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "vocab_size": self.vocab_size,
            "n_positions": self.n_positions,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": null,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": 0.02,
            "attn_pdrop": 0.1,
            "embd_pdrop": 0.1,
            "resid_pdrop": 0.1,
            "scale_attn_weights": true,
            "tie_word_embeddings": true,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "torch_dtype": "float32",
        })
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!("n_embd {} is not a multiple of n_head {}", self.n_embd, self.n_head));
        }
        if self.vocab_size == 0 || self.n_layer == 0 {
            return Err("vocab_size and n_layer must be positive".to_owned());
        }
        if self.n_positions < 2 {
            return Err(format!("n_positions {} leaves no room to predict a token", self.n_positions));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Parameter count with `lm_head` tied to `wte` (counted once), as OpenAI and nanoGPT report it.
    pub fn num_params(&self) -> usize {
        let d = self.n_embd;
        let embeddings = self.vocab_size * d + self.n_positions * d;
        let block = 2 * (2 * d) // ln_1, ln_2
            + d * 3 * d + 3 * d // c_attn
            + d * d + d // attn.c_proj
            + d * 4 * d + 4 * d // c_fc
            + 4 * d * d + d; // mlp.c_proj
        embeddings + self.n_layer * block + 2 * d
    }
}

/// Why `config.json` describes a GPT-2 variant this model would compute differently, if it does.
fn unsupported_variant(fields: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    use serde_json::Value;
    let get = |key: &str| fields.get(key).filter(|v| !v.is_null());
    if let Some(act) = get("activation_function").and_then(Value::as_str) {
        if !matches!(act, "gelu_new" | "gelu_pytorch_tanh") {
            return Some(format!("activation_function {act:?} is not supported (GPT-2's tanh GELU: gelu_new)"));
        }
    }
    let n_embd = get("n_embd").and_then(Value::as_u64);
    if let (Some(inner), Some(d)) = (get("n_inner").and_then(Value::as_u64), n_embd) {
        if inner != 4 * d {
            return Some(format!("n_inner {inner} is not supported (GPT-2's MLP is 4 × n_embd = {})", 4 * d));
        }
    }
    if get("scale_attn_weights") == Some(&Value::Bool(false)) {
        return Some("scale_attn_weights false is not supported".to_owned());
    }
    if get("scale_attn_by_inverse_layer_idx") == Some(&Value::Bool(true)) {
        return Some("scale_attn_by_inverse_layer_idx true is not supported".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_sizes_match_the_published_parameter_counts() {
        let millions = |name| Config::preset(name).unwrap().num_params() as f64 / 1e6;
        // OpenAI's names are rounded; these are the exact counts with a tied lm_head.
        assert_eq!(Config::preset("gpt2").unwrap().num_params(), 124_439_808);
        assert!((millions("gpt2-medium") - 354.8).abs() < 0.1);
        assert!((millions("gpt2-large") - 774.0).abs() < 0.1);
        assert!((millions("gpt2-xl") - 1557.6).abs() < 0.1);
    }

    #[test]
    fn reads_hf_config_json_with_either_context_key() {
        let dir = std::env::temp_dir().join(format!("revgen-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            r#"{"n_ctx": 128, "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 50257,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}"#,
        )
        .unwrap();
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.n_positions, 128);
        // The hub's own files carry both keys.
        std::fs::write(
            &path,
            r#"{"n_ctx": 1024, "n_positions": 1024, "n_embd": 64, "n_layer": 2, "n_head": 4,
            "vocab_size": 50257, "n_inner": null}"#,
        )
        .unwrap();
        assert_eq!(Config::from_file(&path).unwrap().n_positions, 1024);
        for bad in [
            r#""n_ctx": 512, "n_positions": 1024"#,
            r#""n_positions": 1024, "activation_function": "relu""#,
            r#""n_positions": 1024, "n_inner": 100"#,
            r#""n_positions": 1024, "scale_attn_by_inverse_layer_idx": true"#,
        ] {
            let json = format!(r#"{{{bad}, "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 50257}}"#);
            std::fs::write(&path, json).unwrap();
            let err = Config::from_file(&path).unwrap_err().to_string();
            assert!(err.contains("config.json"), "{bad}: {err}");
        }
        std::fs::write(&path, r#"{"n_positions": 128, "n_embd": 66, "n_layer": 2, "n_head": 4, "vocab_size": 9}"#)
            .unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("n_head"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
