//! Training data: the shards `revgen prepare` wrote, read as one endless token stream per split.
//!
//! The shards are listed by the data directory's `manifest.json`. Pre-tokenized `.bin` shards (llm.c's layout:
//! a 256 × i32 header, then u16 ids) are read as they are; text shards are tokenized on the fly, one record per
//! line with its newline, which gives exactly the ids `prepare --tokenize` writes.
//!
//! The stream is read sequentially, like llm.c's loader rather than gpt-2-simple's random windows: prepare already
//! orders each shard's records by a hash of review_id, so consecutive windows hold unrelated reviews, and reading
//! in order needs no index and never holds more than a few chunks in memory. Each pass over the data (an epoch)
//! visits the shards in an order shuffled from the seed and the epoch number. A [`Position`] (epoch, shard, token
//! offset) says where the stream is, so a resumed run continues with exactly the next token.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::tokenizer::Gpt2Tokenizer;
use crate::{Error, Result};

/// The file `revgen prepare` writes last, listing every shard.
pub const MANIFEST: &str = "manifest.json";

const BIN_MAGIC: i32 = 20240520;
const BIN_HEADER_BYTES: u64 = 256 * 4;
/// Tokens per chunk handed from the reader thread to the trainer.
const CHUNK_TOKENS: usize = 1 << 16;
/// Lines tokenized per call, so that the tokenizer's batch encoding can use several cores.
const LINES_PER_BATCH: usize = 256;

/// One shard file of a split.
#[derive(Clone, Debug)]
pub struct Shard {
    pub path: PathBuf,
    pub kind: ShardKind,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardKind {
    /// One record per line, tokenized while reading.
    Text,
    /// u16 GPT-2 ids with llm.c's header.
    Tokens,
}

/// A prepared data directory: its train and val shards.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub dir: PathBuf,
    pub train: Vec<Shard>,
    pub val: Vec<Shard>,
}

impl Dataset {
    /// Reads `dir/manifest.json` and checks that every shard it lists is there. `.bin` shards are used when the
    /// data was prepared with `--tokenize`, text shards otherwise.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::Data {
                path: path.clone(),
                reason: "not found: --data must be a directory written by `revgen prepare`".to_owned(),
            },
            _ => Error::Io { path: path.clone(), source },
        })?;
        let manifest: ManifestShards =
            serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), source })?;
        let tokenized = manifest.shards.iter().any(|s| s.format == "tokens");
        let wanted = if tokenized { "tokens" } else { "text" };
        let mut dataset = Dataset { dir: dir.to_owned(), train: Vec::new(), val: Vec::new() };
        for entry in manifest.shards.iter().filter(|s| s.format == wanted) {
            let shard_path = dir.join(&entry.file);
            let bytes = std::fs::metadata(&shard_path)
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => Error::Data {
                        path: shard_path.clone(),
                        reason: format!("listed in {} but missing", path.display()),
                    },
                    _ => Error::Io { path: shard_path.clone(), source },
                })?
                .len();
            let kind = if tokenized { ShardKind::Tokens } else { ShardKind::Text };
            let shard = Shard { path: shard_path, kind, bytes };
            match entry.split.as_str() {
                "train" => dataset.train.push(shard),
                "val" => dataset.val.push(shard),
                other => return Err(Error::Data { path, reason: format!("unknown split {other:?}") }),
            }
        }
        if dataset.train.is_empty() {
            return Err(Error::Data { path, reason: "lists no train shards".to_owned() });
        }
        Ok(dataset)
    }
}

#[derive(Deserialize)]
struct ManifestShards {
    shards: Vec<ManifestShard>,
}

#[derive(Deserialize)]
struct ManifestShard {
    file: String,
    split: String,
    format: String,
}

/// Where a token stream is: the next token is token `offset` of the `shard`-th shard in `epoch`'s order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: u64,
    pub shard: usize,
    pub offset: u64,
}

/// The order in which `epoch` visits the shards: a permutation drawn from `seed` and the epoch.
fn shard_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        order.shuffle(&mut rng);
    }
    order
}

/// A run of consecutive tokens of one shard.
struct Chunk {
    at: Position,
    ids: Vec<u32>,
}

/// Tokens of a split, read and tokenized on a background thread, consumed as training windows.
pub struct TokenStream {
    rx: Receiver<Result<Chunk>>,
    chunks: VecDeque<Chunk>,
    /// Tokens of the front chunk already consumed.
    cursor: usize,
    /// Where the stream is when no chunk is buffered.
    next: Position,
}

impl TokenStream {
    /// Streams `shards` from `start`. With `cycle`, epochs follow one another, each in its own shuffled shard
    /// order; without, the stream ends after one pass in file order (for validation).
    pub fn open(shards: &[Shard], tokenizer: Arc<Gpt2Tokenizer>, seed: u64, start: Position, cycle: bool) -> Self {
        let (tx, rx) = sync_channel(4);
        let shards = shards.to_vec();
        std::thread::Builder::new()
            .name("revgen-data".to_owned())
            .spawn(move || produce(&shards, &tokenizer, seed, start, cycle, &tx))
            .expect("spawn the data thread");
        TokenStream { rx, chunks: VecDeque::new(), cursor: 0, next: start }
    }

    /// Where the next token comes from.
    pub fn position(&self) -> Position {
        match self.chunks.front() {
            Some(chunk) => Position { offset: chunk.at.offset + self.cursor as u64, ..chunk.at },
            None => self.next,
        }
    }

    /// The next `len` tokens, after which the stream has moved on by `advance` (≤ `len`). Training windows take
    /// `seq + 1` tokens and advance `seq`, so that each token is a target once. `None` at the end of a stream
    /// that does not cycle.
    pub fn window(&mut self, len: usize, advance: usize) -> Result<Option<Vec<u32>>> {
        while self.buffered() < len {
            match self.rx.recv() {
                Ok(chunk) => self.chunks.push_back(chunk?),
                Err(_) => return Ok(None),
            }
        }
        let mut out = Vec::with_capacity(len);
        let mut skip = self.cursor;
        for chunk in &self.chunks {
            let take = (len - out.len()).min(chunk.ids.len() - skip);
            out.extend_from_slice(&chunk.ids[skip..skip + take]);
            skip = 0;
            if out.len() == len {
                break;
            }
        }
        let mut left = advance;
        while left > 0 {
            let front = self.chunks.front().expect("buffered ≥ advance");
            let step = left.min(front.ids.len() - self.cursor);
            self.cursor += step;
            left -= step;
            if self.cursor == front.ids.len() {
                self.next = Position { offset: front.at.offset + front.ids.len() as u64, ..front.at };
                self.chunks.pop_front();
                self.cursor = 0;
            }
        }
        Ok(Some(out))
    }

    fn buffered(&self) -> usize {
        self.chunks.iter().map(|c| c.ids.len()).sum::<usize>() - self.cursor
    }
}

/// The reader thread: sends chunks until the receiver goes away (or, without `cycle`, after one epoch).
fn produce(
    shards: &[Shard],
    tokenizer: &Gpt2Tokenizer,
    seed: u64,
    start: Position,
    cycle: bool,
    tx: &SyncSender<Result<Chunk>>,
) {
    let mut at = start;
    loop {
        let order = shard_order(shards.len(), seed, at.epoch, cycle);
        let mut sent_any = false;
        while at.shard < order.len() {
            let shard = &shards[order[at.shard]];
            let mut send = |chunk: Chunk| {
                sent_any |= !chunk.ids.is_empty();
                tx.send(Ok(chunk)).is_ok()
            };
            let result = match shard.kind {
                ShardKind::Tokens => read_bin(shard, at, &mut send),
                ShardKind::Text => read_text(shard, tokenizer, at, &mut send),
            };
            match result {
                Ok(true) => {}
                Ok(false) => return, // the trainer is gone
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
            at = Position { shard: at.shard + 1, offset: 0, ..at };
        }
        if !cycle {
            return;
        }
        if !sent_any && at.epoch > start.epoch {
            let path = shards[0].path.parent().unwrap_or(Path::new(".")).to_owned();
            let _ = tx.send(Err(Error::Data { path, reason: "the train shards hold no tokens".to_owned() }));
            return;
        }
        at = Position { epoch: at.epoch + 1, shard: 0, offset: 0 };
    }
}

/// Sends the tokens of a `.bin` shard from `at.offset`. Returns false when the receiver is gone.
fn read_bin(shard: &Shard, at: Position, send: &mut dyn FnMut(Chunk) -> bool) -> Result<bool> {
    let path = &shard.path;
    let bad = |reason: String| Error::Data { path: path.clone(), reason };
    let mut file = File::open(path).map_err(Error::io(path))?;
    let mut header = [0u8; BIN_HEADER_BYTES as usize];
    file.read_exact(&mut header).map_err(|_| bad("shorter than the 1024-byte .bin header".to_owned()))?;
    let int = |i: usize| i32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    if int(0) != BIN_MAGIC || int(1) != 1 {
        return Err(bad(format!("not an llm.c token shard (magic {}, version {})", int(0), int(1))));
    }
    let tokens = u64::try_from(int(2)).map_err(|_| bad(format!("negative token count {}", int(2))))?;
    if shard.bytes != BIN_HEADER_BYTES + 2 * tokens {
        return Err(bad(format!("header says {tokens} tokens but the file has {} bytes", shard.bytes)));
    }
    file.seek(SeekFrom::Start(BIN_HEADER_BYTES + 2 * at.offset.min(tokens))).map_err(Error::io(path))?;
    let mut reader = BufReader::new(file);
    let mut offset = at.offset.min(tokens);
    let mut bytes = vec![0u8; CHUNK_TOKENS * 2];
    while offset < tokens {
        let n = (CHUNK_TOKENS as u64).min(tokens - offset) as usize;
        reader.read_exact(&mut bytes[..2 * n]).map_err(Error::io(path))?;
        let ids = bytes[..2 * n].chunks_exact(2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))).collect();
        if !send(Chunk { at: Position { offset, ..at }, ids }) {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

/// Tokenizes a text shard line by line and sends its tokens from `at.offset` (the tokens before it are
/// recomputed and dropped, so a resumed run reads the same ids). Returns false when the receiver is gone.
fn read_text(
    shard: &Shard,
    tokenizer: &Gpt2Tokenizer,
    at: Position,
    send: &mut dyn FnMut(Chunk) -> bool,
) -> Result<bool> {
    let path = &shard.path;
    let mut reader = BufReader::new(File::open(path).map_err(Error::io(path))?);
    let mut offset = 0u64; // tokens of this shard produced so far
    let mut pending: Vec<u32> = Vec::with_capacity(CHUNK_TOKENS);
    let mut pending_at = at.offset;
    let mut lines: Vec<String> = Vec::with_capacity(LINES_PER_BATCH);
    let mut line_no = 0usize;
    loop {
        lines.clear();
        for _ in 0..LINES_PER_BATCH {
            let mut line = String::new();
            let n = reader.read_line(&mut line).map_err(|e| Error::Data {
                path: path.clone(),
                reason: format!("line {}: {e}", line_no + lines.len() + 1),
            })?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                line.push('\n');
            }
            lines.push(line);
        }
        if lines.is_empty() {
            break;
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let encoded = tokenizer.encode_batch(&refs).map_err(|e| Error::Data {
            path: path.clone(),
            reason: format!("lines {}..{}: {e}", line_no + 1, line_no + lines.len()),
        })?;
        line_no += lines.len();
        for ids in encoded {
            let n = ids.len() as u64;
            let skip = at.offset.saturating_sub(offset).min(n) as usize;
            pending.extend_from_slice(&ids[skip..]);
            offset += n;
        }
        if pending.len() >= CHUNK_TOKENS {
            let ids = std::mem::replace(&mut pending, Vec::with_capacity(CHUNK_TOKENS));
            let chunk = Chunk { at: Position { offset: pending_at, ..at }, ids };
            pending_at = offset;
            if !send(chunk) {
                return Ok(false);
            }
        }
    }
    if !pending.is_empty() && !send(Chunk { at: Position { offset: pending_at, ..at }, ids: pending }) {
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `ids` as an llm.c token shard (also used by the training loop's tests).
    pub(crate) fn write_bin(path: &Path, ids: &[u16]) -> Shard {
        let mut header = [0i32; 256];
        header[0] = BIN_MAGIC;
        header[1] = 1;
        header[2] = ids.len() as i32;
        let mut bytes: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.extend(ids.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(path, &bytes).unwrap();
        Shard { path: path.to_owned(), kind: ShardKind::Tokens, bytes: bytes.len() as u64 }
    }

    fn tokenizer() -> Arc<Gpt2Tokenizer> {
        Arc::new(Gpt2Tokenizer::builtin())
    }

    #[test]
    fn windows_overlap_by_one_and_cycle_through_shuffled_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_bin(&dir.path().join("a.bin"), &[1, 2, 3, 4, 5]);
        let b = write_bin(&dir.path().join("b.bin"), &[10, 11, 12]);
        let shards = [a, b];
        let mut stream = TokenStream::open(&shards, tokenizer(), 7, Position::default(), true);
        let mut all = Vec::new();
        for _ in 0..8 {
            let w = stream.window(3, 2).unwrap().unwrap();
            all.push(w);
        }
        // Each window starts where the last one's final token was.
        for pair in all.windows(2) {
            assert_eq!(pair[0][2], pair[1][0]);
        }
        // 8 tokens per epoch, 2 per window: epochs end after 4 windows; every token comes once per epoch.
        let firsts: Vec<u32> = all[..4].iter().flat_map(|w| w[..2].to_vec()).collect();
        let mut sorted = firsts.clone();
        sorted.sort();
        assert_eq!(sorted, [1, 2, 3, 4, 5, 10, 11, 12]);
        assert_eq!(stream.position().epoch, 2);
    }

    #[test]
    fn a_stream_resumed_at_its_position_continues_with_the_same_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "<|startoftext|> 5|||Great|||Works well.<|endoftext|>\n<|startoftext|> 1|||Bad|||Broke.<|endoftext|>\n";
        let shards: Vec<Shard> = (0..3)
            .map(|i| {
                let path = dir.path().join(format!("train-{i}.txt"));
                std::fs::write(&path, text.repeat(i + 1)).unwrap();
                Shard { bytes: text.len() as u64, path, kind: ShardKind::Text }
            })
            .collect();
        let mut straight = TokenStream::open(&shards, tokenizer(), 3, Position::default(), true);
        let mut first = Vec::new();
        for _ in 0..7 {
            first.push(straight.window(9, 8).unwrap().unwrap());
        }
        let at = straight.position();
        let expected: Vec<_> = (0..20).map(|_| straight.window(9, 8).unwrap().unwrap()).collect();
        let mut resumed = TokenStream::open(&shards, tokenizer(), 3, at, true);
        let got: Vec<_> = (0..20).map(|_| resumed.window(9, 8).unwrap().unwrap()).collect();
        assert_eq!(got, expected);
        // The text path gives the whole text's tokenization.
        let whole = tokenizer().encode(text).unwrap();
        let mut once = TokenStream::open(&shards[..1], tokenizer(), 0, Position::default(), false);
        assert_eq!(once.window(whole.len(), whole.len()).unwrap().unwrap(), whole);
        assert!(once.window(1, 1).unwrap().is_none());
    }

    #[test]
    fn bad_shards_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        std::fs::write(&path, [0u8; 1100]).unwrap();
        let shard = Shard { path: path.clone(), kind: ShardKind::Tokens, bytes: 1100 };
        let mut stream = TokenStream::open(&[shard], tokenizer(), 0, Position::default(), true);
        let err = stream.window(2, 1).map(|_| ()).expect_err("an error").to_string();
        assert!(err.contains("x.bin") && err.contains("magic"), "{err}");
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json") && err.contains("revgen prepare"), "{err}");
        std::fs::write(
            dir.path().join(MANIFEST),
            r#"{"shards": [{"file": "train-00000-of-00001.bin", "split": "train", "format": "tokens"}]}"#,
        )
        .unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("train-00000-of-00001.bin") && err.contains("missing"), "{err}");
    }
}
