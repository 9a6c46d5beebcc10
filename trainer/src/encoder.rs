//! A fast path for encoding text with GPT-2's tokenizer: the same ids as HF's `Tokenizer::encode`, for much less work.
//!
//! HF encodes GPT-2 in four steps: split out `<|endoftext|>`, cut each remaining segment into pieces with GPT-2's
//! pattern, map each piece's bytes to printable characters, and run BPE on each piece. Along the way it keeps
//! offsets and a normalized copy of every piece; a profile of `prepare --tokenize` had ~40% of its time in
//! malloc and free for that bookkeeping, which ids alone do not need. Here the first three steps are done
//! directly, the BPE step is still HF's model (so the vocabulary and merges are the ones the tokenizer loaded), and
//! a piece seen before costs one hash lookup: reviews repeat their words.
//!
//! [`Encoder::applies_to`] checks that the tokenizer is configured as GPT-2's (no normalizer, the byte-level
//! pre-tokenizer with GPT-2's pattern and no prefix space, BPE without dropout, `<|endoftext|>` as its one added
//! token); any other tokenizer is left to HF. Tests compare both on real and adversarial text.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use regex_automata::meta::{Cache as RegexCache, Regex};
use regex_automata::{Anchored, Input};
use rustc_hash::FxHashMap;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Model, ModelWrapper, Tokenizer};

use crate::tokenizer::{END_OF_TEXT, END_OF_TEXT_ID};

/// GPT-2's pattern without its lookahead alternative `\s+(?!\S)`, which regex-automata cannot express;
/// [`Encoder::pieces`] applies it by hand. Both engines take the first alternative that matches, in order. Every
/// character starts a match of one alternative, so pieces follow each other with no gaps, and each search is
/// anchored where the last piece ended (which spares the reverse search an unanchored one needs for its start).
const PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// Pieces cached per thread before the cache is emptied, to bound its memory (~100 MB at most).
const CACHE_LIMIT: usize = 1 << 20;

/// Tells caches of different encoders apart.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Each piece's ids.
type PieceIds = FxHashMap<Box<str>, Box<[u32]>>;

/// What one thread keeps for one encoder: its id with the pattern's search state, and each piece's ids.
/// Per thread, so that the parallel encoders never wait for each other.
#[derive(Default)]
struct ThreadCache {
    search: Option<(u64, RegexCache)>,
    pieces: PieceIds,
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = RefCell::default();
}

pub struct Encoder {
    pattern: Regex,
    /// GPT-2's printable character for each byte (its `bytes_to_unicode`).
    byte_chars: [char; 256],
    id: u64,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            pattern: Regex::new(PATTERN).expect("a valid pattern"),
            byte_chars: byte_chars(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Whether `tokenizer` is set up exactly as GPT-2's, so that [`Self::encode`] gives its ids.
    pub fn applies_to(tokenizer: &Tokenizer) -> bool {
        let pre_tokenizer = matches!(
            tokenizer.get_pre_tokenizer(),
            Some(PreTokenizerWrapper::ByteLevel(b)) if !b.add_prefix_space && b.use_regex
        );
        let model = matches!(tokenizer.get_model(), ModelWrapper::BPE(bpe) if bpe.dropout.is_none());
        let added = tokenizer.get_added_tokens_decoder();
        let added = added.len() == 1 && added.get(&END_OF_TEXT_ID).is_some_and(|t| t.content == END_OF_TEXT);
        tokenizer.get_normalizer().is_none() && pre_tokenizer && model && added
    }

    /// Appends the ids of `text` to `ids`. `model` is the tokenizer's, and [`Self::applies_to`] it.
    pub fn encode(&self, model: &ModelWrapper, text: &str, ids: &mut Vec<u32>) -> tokenizers::Result<()> {
        CACHE.with_borrow_mut(|ThreadCache { search, pieces: cache }| {
            if search.as_ref().is_none_or(|(owner, _)| *owner != self.id) {
                *search = Some((self.id, self.pattern.create_cache()));
                cache.clear();
            }
            if cache.len() > CACHE_LIMIT {
                cache.clear();
            }
            let (_, search) = search.as_mut().expect("made above");
            let mut mapped = String::new();
            let mut rest = text;
            loop {
                let (segment, special) = match rest.find(END_OF_TEXT) {
                    Some(at) => (&rest[..at], Some(at)),
                    None => (rest, None),
                };
                let mut failed = None;
                self.pieces(search, segment, |piece| {
                    if let Some(known) = cache.get(piece) {
                        ids.extend_from_slice(known);
                        return;
                    }
                    mapped.clear();
                    mapped.extend(piece.bytes().map(|b| self.byte_chars[b as usize]));
                    match model.tokenize(&mapped) {
                        Ok(tokens) => {
                            let known: Box<[u32]> = tokens.iter().map(|t| t.id).collect();
                            ids.extend_from_slice(&known);
                            cache.insert(piece.into(), known);
                        }
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                match special {
                    Some(at) => {
                        ids.push(END_OF_TEXT_ID);
                        rest = &rest[at + END_OF_TEXT.len()..];
                    }
                    None => return Ok(()),
                }
            }
        })
    }

    /// Calls `each` with the pieces of `text`, as GPT-2's pattern cuts it.
    fn pieces<'t>(&self, search: &mut RegexCache, text: &'t str, mut each: impl FnMut(&'t str)) {
        let mut at = 0;
        while at < text.len() {
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            let found = self.pattern.search_with(search, &input).map(|m| &text[m.range()]);
            let found = found.expect("every character starts a piece");
            let mut end = at + found.len();
            // Only the `\s+` alternative ends in whitespace. GPT-2's `\s+(?!\S)` comes before it and leaves the
            // last whitespace character of a run that more text follows to the next piece (so " word" stays one
            // piece); `\s+` itself then matches only runs of one such character.
            let last = found.chars().next_back().expect("a match is never empty");
            if last.is_whitespace() && end < text.len() && found.len() > last.len_utf8() {
                end -= last.len_utf8();
            }
            each(&text[at..end]);
            at = end;
        }
    }
}

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the others for the characters from U+0100 on.
fn byte_chars() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut chars = ['\0'; 256];
    let mut next = 256;
    for b in 0..=255u8 {
        chars[b as usize] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("below U+0200")
        };
    }
    chars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::Gpt2Tokenizer;
    use rand::{Rng, SeedableRng};

    fn hf_ids(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        tokenizer.encode(text, false).unwrap().get_ids().to_vec()
    }

    fn fast_ids(encoder: &Encoder, tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        encoder.encode(tokenizer.get_model(), text, &mut ids).unwrap();
        ids
    }

    #[test]
    fn the_builtin_tokenizer_takes_the_fast_path_and_a_changed_one_does_not() {
        let tokenizer = Gpt2Tokenizer::builtin().hf().clone();
        assert!(Encoder::applies_to(&tokenizer));
        let mut prefixed = tokenizer.clone();
        prefixed.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::byte_level::ByteLevel::default()));
        assert!(!Encoder::applies_to(&prefixed), "add_prefix_space is on by default");
        let mut added = tokenizer.clone();
        added.add_special_tokens([tokenizers::AddedToken::from("<|startoftext|>", true)]).unwrap();
        assert!(!Encoder::applies_to(&added));
    }

    #[test]
    fn byte_chars_are_gpt2s() {
        let chars = byte_chars();
        assert_eq!((chars[b'a' as usize], chars[b' ' as usize], chars[b'\n' as usize]), ('a', 'Ġ', 'Ċ'));
        assert_eq!((chars[0], chars[0x7F], chars[0xAD], chars[0xFF]), ('Ā', 'ġ', 'Ń', 'ÿ'));
    }

    /// Text where the pattern's alternatives and the whitespace rule meet.
    const EDGES: &[&str] = &[
        "",
        " ",
        "   ",
        "a  b",
        "a\n b",
        "a \nb",
        "a\n\n\nb",
        "end   ",
        " \t\r\n\u{a0}\u{3000}x",
        "I'm, you're, they've; it'll: he'd 'S 'LL ''s",
        "!!'s 's 'sgood ' s",
        "100% of 2,000,000 and ½ ² Ⅻ ٣",
        "naïve café — “quotes” … déjà vu",
        "日本語のレビュー、とても良い！",
        "emoji 👍🏽 and ZWJ 👩‍👩‍👧 and flags 🇩🇪",
        "combining e\u{301} and a\u{308}\u{301}x",
        "<|startoftext|> 5|||Great!|||Works<br />fine.<|endoftext|>\n",
        "<|endoftext|><|endoftext|>text<|endoftext|>",
        "<|endoftext|",
        "tabs\tand\u{0}nul\u{7f}del\u{ad}soft",
    ];

    #[test]
    fn matches_hf_on_edge_cases() {
        let tokenizer = Gpt2Tokenizer::builtin().hf().clone();
        let encoder = Encoder::new();
        for text in EDGES {
            assert_eq!(fast_ids(&encoder, &tokenizer, text), hf_ids(&tokenizer, text), "{text:?}");
        }
    }

    /// Real reviews: the first 3,000 rows of the shared Electronics head (`$REVGEN_SHARED_DATA`, default
    /// `../shared/data`; read in place, and a missing file fails the test), as training records.
    #[test]
    fn matches_hf_on_real_reviews() {
        let root = std::env::var_os("REVGEN_SHARED_DATA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
        let path = root.join("amazon-us-reviews-tsv/amazon_reviews_us_Electronics_v1_00.head10000.tsv");
        let tsv = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tokenizer = Gpt2Tokenizer::builtin();
        let records: Vec<String> = tsv
            .lines()
            .skip(1)
            .take(3000)
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                format!("<|startoftext|> {}|||{}|||{}<|endoftext|>\n", fields[7], fields[12], fields[13])
            })
            .collect();
        let texts: Vec<&str> = records.iter().map(String::as_str).collect();
        let hf: Vec<Vec<u32>> = texts.iter().map(|text| hf_ids(tokenizer.hf(), text)).collect();
        assert_eq!(tokenizer.encode_batch(&texts).unwrap(), hf);
    }

    #[test]
    fn matches_hf_on_random_text() {
        // Characters from every class the pattern tells apart, in random runs.
        const ALPHABET: &[char] = &[
            'a', 'Z', 'é', 'ß', 'ж', '日', '0', '7', '½', '٣', ' ', ' ', ' ', '\n', '\t', '\r', '\u{a0}', '\u{2009}',
            '\'', 's', 't', 'l', 'd', 'm', 'v', 'r', 'e', '!', '.', ',', '<', '|', '>', '—', '👍', '\u{301}', '\u{0}',
        ];
        let tokenizer = Gpt2Tokenizer::builtin().hf().clone();
        let encoder = Encoder::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..5000 {
            let len = rng.random_range(0..60);
            let text: String = (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]).collect();
            assert_eq!(fast_ids(&encoder, &tokenizer, &text), hf_ids(&tokenizer, &text), "{text:?}");
        }
    }
}
