//! Pre-tokenized shards (`--tokenize`): the records of a text shard as u16 GPT-2 token ids, the trainer's fast path.
//!
//! The layout is llm.c's `.bin` shard, so its tools read ours: a header of 256 little-endian i32 values, then the
//! ids as little-endian u16.
//!
//! | header slot | value |
//! |---|---|
//! | 0 | magic 20240520 |
//! | 1 | version 1 (u16 ids) |
//! | 2 | number of tokens |
//! | 3 | vocabulary size (50257 for GPT-2); revgen's addition, llm.c leaves it 0 |
//! | 4 | id that ends each record (`<|endoftext|>`, 50256); revgen's addition |
//! | 5.. | 0 |
//!
//! The ids are exactly the tokenization of the text shard: each record line, newline included, encoded on its own
//! (GPT-2's pre-tokenizer never joins text across `<|endoftext|>\n`, so that equals encoding the whole file).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

pub const MAGIC: i32 = 20240520;
pub const VERSION: i32 = 1;
pub const HEADER_INTS: usize = 256;
pub const HEADER_BYTES: usize = HEADER_INTS * 4;

/// A tokenizer the shard writers call. The pipeline does not depend on a tokenizer; the CLI passes the trainer's.
pub trait Tokenize: Send + Sync {
    /// The ids of each text, in order. May use every core.
    fn encode_batch(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<u32>>, String>;
    /// Vocabulary size; every id must be below it, and it must fit u16.
    fn vocab_size(&self) -> u32;
    /// The id that ends each record.
    fn end_of_text(&self) -> u32;
    /// What the tokenizer is, for the manifest (such as `gpt2`).
    fn name(&self) -> String;
}

/// Writes one `.bin` shard: a placeholder header, the ids, then the real header once the count is known.
pub struct TokenWriter {
    path: PathBuf,
    file: BufWriter<File>,
    tokens: u64,
    vocab_size: u32,
    end_of_text: u32,
}

impl TokenWriter {
    pub fn create(path: &Path, vocab_size: u32, end_of_text: u32) -> Result<Self> {
        let mut file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(Error::io(path))?);
        file.write_all(&[0u8; HEADER_BYTES]).map_err(Error::io(path))?;
        Ok(TokenWriter { path: path.to_owned(), file, tokens: 0, vocab_size, end_of_text })
    }

    pub fn write(&mut self, ids: &[u32]) -> Result<()> {
        let mut bytes = Vec::with_capacity(ids.len() * 2);
        for &id in ids {
            let id = u16::try_from(id).ok().filter(|_| id < self.vocab_size).ok_or_else(|| Error::Tokenize {
                path: self.path.clone(),
                reason: format!("token id {id} does not fit the vocabulary of {} (u16 ids)", self.vocab_size),
            })?;
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        self.file.write_all(&bytes).map_err(Error::io(&self.path))?;
        self.tokens += ids.len() as u64;
        Ok(())
    }

    /// Writes the header. Returns the token count and the file, for the caller to sync.
    pub fn finish(self) -> Result<(u64, File)> {
        let path = self.path;
        let count = i32::try_from(self.tokens).map_err(|_| Error::Tokenize {
            path: path.clone(),
            reason: format!("{} tokens do not fit the header's i32 count; use more --shards", self.tokens),
        })?;
        let mut file = self.file.into_inner().map_err(|e| Error::Io { path: path.clone(), source: e.into_error() })?;
        let mut header = [0i32; HEADER_INTS];
        header[..5].copy_from_slice(&[MAGIC, VERSION, count, self.vocab_size as i32, self.end_of_text as i32]);
        let bytes: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
        file.seek(SeekFrom::Start(0)).map_err(Error::io(&path))?;
        file.write_all(&bytes).map_err(Error::io(&path))?;
        Ok((self.tokens, file))
    }
}

/// Reads a whole `.bin` shard, checking its header.
pub fn read(path: &Path) -> Result<Vec<u16>> {
    let bad = |reason: String| Error::Tokenize { path: path.to_owned(), reason };
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(Error::io(path))?;
    if bytes.len() < HEADER_BYTES {
        return Err(bad(format!("{} bytes is shorter than the {HEADER_BYTES}-byte header", bytes.len())));
    }
    let int = |i: usize| i32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    if int(0) != MAGIC || int(1) != VERSION {
        return Err(bad(format!("not a version {VERSION} token shard (magic {}, version {})", int(0), int(1))));
    }
    let count = int(2) as usize;
    let body = &bytes[HEADER_BYTES..];
    if body.len() != count * 2 {
        return Err(bad(format!("the header says {count} tokens but {} bytes follow it", body.len())));
    }
    Ok(body.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        let mut writer = TokenWriter::create(&path, 50257, 50256).unwrap();
        writer.write(&[1, 2, 50256]).unwrap();
        writer.write(&[]).unwrap();
        writer.write(&[7]).unwrap();
        assert_eq!(writer.finish().unwrap().0, 4);
        assert_eq!(read(&path).unwrap(), vec![1, 2, 50256, 7]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), (HEADER_BYTES + 8) as u64);

        let mut writer = TokenWriter::create(&path, 50257, 50256).unwrap();
        let err = writer.write(&[70000]).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");

        std::fs::write(&path, [0u8; 10]).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("shorter than"));
    }
}
