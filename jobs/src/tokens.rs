//! The trainer's GPT-2 tokenizer as the pipeline's [`Tokenize`], for `prepare --tokenize`.

use revgen_pipeline::prepare::Tokenize;
use revgen_trainer::config::GPT2_VOCAB;
use revgen_trainer::tokenizer::{END_OF_TEXT_ID, Gpt2Tokenizer};

/// GPT-2's tokenizer, as the pipeline's shard writers call it.
pub struct Gpt2Tokens(pub Gpt2Tokenizer);

impl Gpt2Tokens {
    /// OpenAI's GPT-2 tokenizer, built in.
    pub fn builtin() -> Self {
        Gpt2Tokens(Gpt2Tokenizer::builtin())
    }
}

impl Tokenize for Gpt2Tokens {
    fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, String> {
        self.0.encode_batch(texts).map_err(|e| e.to_string())
    }

    fn vocab_size(&self) -> u32 {
        GPT2_VOCAB as u32
    }

    fn end_of_text(&self) -> u32 {
        END_OF_TEXT_ID
    }

    fn name(&self) -> String {
        "gpt2".to_owned()
    }
}
