//! The GPT-2 byte-level BPE tokenizer, through HF's `tokenizers` crate. Encoding takes a faster path to the same ids
//! when the tokenizer is set up as GPT-2's (`encoder.rs`).
//!
//! How the tags are encoded (one rule for training, prompting, generation and decoding):
//! - `<|endoftext|>` is GPT-2's one special token, id 50256, as in HF transformers and nanoGPT. It ends every
//!   training record and stops generation.
//! - `<|startoftext|>` is not in GPT-2's vocabulary. It is encoded as the 7 ordinary tokens `<`, `|`, `start`, `of`,
//!   `text`, `|`, `>`, as both gpt-2-simple and HF do, so prompts written for gpt-2-simple work unchanged.
//!
//! gpt-2-simple also spells `<|endoftext|>` as 7 ordinary tokens, and a model fine-tuned there learned that spelling.
//! Both spellings decode to the same 13 characters, so generation stops on id 50256 or on that text.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::config::GPT2_VOCAB;
use crate::encoder::Encoder;
use crate::{Error, Result};

pub const END_OF_TEXT: &str = "<|endoftext|>";
pub const START_OF_TEXT: &str = "<|startoftext|>";
/// `<|endoftext|>`'s id in GPT-2's vocabulary.
pub const END_OF_TEXT_ID: u32 = 50256;

/// The vendored OpenAI files (assets/gpt2, MIT), so that presets and `tiny` work offline and from any directory.
pub const BUILTIN_TOKENIZER_JSON: &str = include_str!("../../assets/gpt2/tokenizer.json");
pub const BUILTIN_VOCAB_JSON: &str = include_str!("../../assets/gpt2/encoder.json");
pub const BUILTIN_MERGES_TXT: &str = include_str!("../../assets/gpt2/vocab.bpe");

/// The tokenizer files a model directory may hold, in the order they are tried. HF names first, then OpenAI's.
pub const TOKENIZER_FILES: [&str; 3] = ["tokenizer.json", "vocab.json + merges.txt", "encoder.json + vocab.bpe"];

pub struct Gpt2Tokenizer {
    inner: Tokenizer,
    /// Where it was read from, for messages; `None` for the built-in files.
    source: Option<PathBuf>,
    /// The fast path for encoding, when `inner` is set up as GPT-2's (see [`Encoder::applies_to`]).
    fast: Option<Encoder>,
}

impl Gpt2Tokenizer {
    /// OpenAI's GPT-2 tokenizer, compiled into the binary.
    pub fn builtin() -> Self {
        let inner = Tokenizer::from_str(BUILTIN_TOKENIZER_JSON).expect("the vendored tokenizer.json parses");
        Self::new(inner, None)
    }

    fn new(inner: Tokenizer, source: Option<PathBuf>) -> Self {
        let fast = Encoder::applies_to(&inner).then(Encoder::new);
        Gpt2Tokenizer { inner, source, fast }
    }

    /// Reads the tokenizer of a model directory: `tokenizer.json`, or the vocabulary and merges under HF's names
    /// (`vocab.json`, `merges.txt`) or OpenAI's (`encoder.json`, `vocab.bpe`).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            let inner = Tokenizer::from_file(&json).map_err(|e| tokenizer_error(&json, e))?;
            return Self::new(inner, Some(json)).checked();
        }
        for (vocab, merges) in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")] {
            let (vocab, merges) = (dir.join(vocab), dir.join(merges));
            if vocab.is_file() && merges.is_file() {
                return Self::from_vocab_and_merges(&vocab, &merges);
            }
        }
        Err(Error::Tokenizer {
            path: dir.to_owned(),
            reason: format!("no tokenizer files; expected one of: {}", TOKENIZER_FILES.join(", ")),
        })
    }

    /// Like [`Self::from_dir`], but a directory with no tokenizer file at all (a bare `save_pretrained` of the model)
    /// gets GPT-2's built-in tokenizer. An incomplete set of files is still an error.
    pub fn from_dir_or_builtin(dir: &Path) -> Result<Self> {
        const NAMES: [&str; 5] = ["tokenizer.json", "vocab.json", "merges.txt", "encoder.json", "vocab.bpe"];
        if NAMES.iter().any(|name| dir.join(name).exists()) { Self::from_dir(dir) } else { Ok(Self::builtin()) }
    }

    fn from_vocab_and_merges(vocab: &Path, merges: &Path) -> Result<Self> {
        let (vocab_str, merges_str) = (vocab.to_string_lossy(), merges.to_string_lossy());
        let bpe = BPE::from_file(&vocab_str, &merges_str).build().map_err(|e| tokenizer_error(vocab, e))?;
        let mut inner = Tokenizer::new(bpe);
        // GPT-2: no prefix space, byte-level decoding, and <|endoftext|> as one special token.
        inner.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        inner.add_special_tokens([AddedToken::from(END_OF_TEXT, true)]).map_err(|e| tokenizer_error(vocab, e))?;
        Self::new(inner, Some(vocab.to_owned())).checked()
    }

    /// Refuses a tokenizer that is not GPT-2's: 50,257 tokens, `<|endoftext|>` the single id 50256.
    fn checked(self) -> Result<Self> {
        let (eot, size) = (self.inner.token_to_id(END_OF_TEXT), self.vocab_size());
        if eot == Some(END_OF_TEXT_ID) && size == GPT2_VOCAB {
            return Ok(self);
        }
        Err(Error::Tokenizer {
            path: self.source.clone().unwrap_or_default(),
            reason: format!(
                "{END_OF_TEXT} has id {eot:?} of {size} tokens, expected {END_OF_TEXT_ID} of {GPT2_VOCAB}: \
                 not GPT-2's tokenizer"
            ),
        })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(fast) = &self.fast {
            let mut ids = Vec::new();
            fast.encode(self.inner.get_model(), text, &mut ids).map_err(|e| self.error(e))?;
            return Ok(ids);
        }
        let encoding = self.inner.encode(text, false).map_err(|e| self.error(e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The ids of each text, encoded in parallel on every core (rayon's global pool, which HF's tokenizer uses too).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        if self.fast.is_some() {
            return texts.par_iter().map(|text| self.encode(text)).collect();
        }
        let encodings = self.inner.encode_batch(texts.to_vec(), false).map_err(|e| self.error(e))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// HF's tokenizer, for comparing the fast path with it.
    #[cfg(test)]
    pub(crate) fn hf(&self) -> &Tokenizer {
        &self.inner
    }

    /// Text for `ids`, with `<|endoftext|>` written out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| self.error(e))
    }

    /// The text of one token, as it appears in the decoded text.
    pub fn token_text(&self, id: u32) -> Result<String> {
        self.decode(&[id])
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The tokenizer in HF's layout (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json): the files
    /// `AutoTokenizer.from_pretrained` reads. [`Self::checked`] made sure the vocabulary is GPT-2's, so vocab.json
    /// and merges.txt are the vendored originals.
    pub fn hf_files(&self, model_max_length: usize) -> Result<Vec<(&'static str, Vec<u8>)>> {
        let json = self.inner.to_string(true).map_err(|e| self.error(e))?;
        let config = serde_json::json!({
            "tokenizer_class": "GPT2Tokenizer",
            "model_max_length": model_max_length,
            "bos_token": END_OF_TEXT,
            "eos_token": END_OF_TEXT,
            "unk_token": END_OF_TEXT,
            "add_prefix_space": false,
        });
        Ok(vec![
            ("tokenizer.json", json.into_bytes()),
            ("vocab.json", BUILTIN_VOCAB_JSON.as_bytes().to_vec()),
            ("merges.txt", BUILTIN_MERGES_TXT.as_bytes().to_vec()),
            ("tokenizer_config.json", serde_json::to_vec_pretty(&config).expect("static JSON")),
        ])
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Tokenizer { path: self.source.clone().unwrap_or_else(|| "built-in GPT-2".into()), reason: e.to_string() }
    }
}

fn tokenizer_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer { path: path.to_owned(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_documented_rule() {
        let tok = Gpt2Tokenizer::builtin();
        assert_eq!(tok.encode(END_OF_TEXT).unwrap(), [END_OF_TEXT_ID]);
        assert_eq!(tok.encode(START_OF_TEXT).unwrap(), [27, 91, 9688, 1659, 5239, 91, 29]);
        let record = "<|startoftext|> 5|||Great|||Works &amp; fits 👍<|endoftext|>";
        let ids = tok.encode(record).unwrap();
        assert_eq!(*ids.last().unwrap(), END_OF_TEXT_ID);
        assert_eq!(tok.decode(&ids).unwrap(), record);
        assert_eq!(tok.vocab_size(), 50257);
    }

    #[test]
    fn every_file_layout_gives_the_same_ids() {
        let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/gpt2");
        let openai = Gpt2Tokenizer::from_dir(&assets).unwrap(); // tokenizer.json is there
        let dir = std::env::temp_dir().join(format!("revgen-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(assets.join("encoder.json"), dir.join("encoder.json")).unwrap();
        std::fs::copy(assets.join("vocab.bpe"), dir.join("vocab.bpe")).unwrap();
        let from_bpe = Gpt2Tokenizer::from_dir(&dir).unwrap();
        let text = "It's 4\u{a0}stars —  \"great\"\n\nbattery<|endoftext|>naïve  ";
        assert_eq!(openai.encode(text).unwrap(), from_bpe.encode(text).unwrap());
        assert_eq!(openai.encode(text).unwrap(), Gpt2Tokenizer::builtin().encode(text).unwrap());
        std::fs::remove_file(dir.join("vocab.bpe")).unwrap();
        let err = Gpt2Tokenizer::from_dir(&dir).err().unwrap().to_string();
        assert!(err.contains("merges.txt") && err.contains(&dir.display().to_string()), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
