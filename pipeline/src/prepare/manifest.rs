//! `manifest.json`: everything needed to trust, reproduce and consume a prepare job's output.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::PrepareConfig;
use crate::{Error, Result};

/// The manifest's `format` value; readers refuse others.
pub const FORMAT: &str = "revgen.prepare.v1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    /// The revgen version that wrote it.
    pub revgen: String,
    pub inputs: Vec<ManifestInput>,
    pub config: PrepareConfig,
    /// The query as it ran: sql/prepare.sql with the template, categories and dedup spliced in.
    pub sql: String,
    /// The values of its `$` parameters.
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub counts: Counts,
    /// Every file of the output but the manifest, by split and shard.
    pub shards: Vec<ShardFile>,
    /// The tokenizer of the `.bin` shards, with `--tokenize`.
    pub tokenizer: Option<TokenizerInfo>,
    /// The malformed rows, when there were any: a file of the output.
    pub quarantine: Option<QuarantineFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ManifestInput {
    pub url: String,
    pub bytes: u64,
    pub e_tag: Option<String>,
    /// tsv, parquet or json.
    pub format: String,
    pub gzip: bool,
    pub rows_read: u64,
    pub malformed: u64,
}

/// The row counts. They balance: `rows_read = malformed + filtered_total + kept` and `kept = train + val`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub rows_read: u64,
    pub malformed: u64,
    pub malformed_by_reason: BTreeMap<String, u64>,
    /// Valid rows the filters dropped, by reason: not_helpful, category, too_short, too_long, duplicate.
    pub filtered: BTreeMap<String, u64>,
    pub filtered_total: u64,
    pub kept: u64,
    /// Kept records by star rating ("1".."5").
    pub kept_by_rating: BTreeMap<String, u64>,
    pub train: u64,
    pub val: u64,
}

impl Counts {
    /// Whether the counts add up; a job whose counts do not is an error, never a manifest.
    pub fn balance(&self) -> std::result::Result<(), String> {
        let filtered: u64 = self.filtered.values().sum();
        let by_reason: u64 = self.malformed_by_reason.values().sum();
        let by_rating: u64 = self.kept_by_rating.values().sum();
        let checks = [
            (self.rows_read, self.malformed + filtered + self.kept, "rows_read = malformed + filtered + kept"),
            (self.filtered_total, filtered, "filtered_total = sum(filtered)"),
            (self.malformed, by_reason, "malformed = sum(malformed_by_reason)"),
            (self.kept, self.train + self.val, "kept = train + val"),
            (self.kept, by_rating, "kept = sum(kept_by_rating)"),
        ];
        match checks.iter().find(|(a, b, _)| a != b) {
            Some((a, b, rule)) => Err(format!("{rule} does not hold: {a} != {b}")),
            None => Ok(()),
        }
    }
}

/// One file of the output.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardFile {
    pub file: String,
    pub split: String,
    pub shard: u32,
    /// text, tokens or parquet.
    pub format: String,
    pub rows: u64,
    pub bytes: u64,
    /// Token ids in a `.bin` shard.
    pub tokens: Option<u64>,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenizerInfo {
    pub name: String,
    pub vocab_size: u32,
    pub end_of_text: u32,
    /// The `.bin` layout (see `pipeline/src/prepare/tokens.rs`).
    pub layout: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct QuarantineFile {
    pub file: String,
    pub rows: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        bytes.push(b'\n');
        bytes
    }

    /// Reads a local manifest, refusing other formats.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(Error::io(path))?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json { path: path.to_owned(), source })?;
        if manifest.format != FORMAT {
            return Err(Error::InvalidInput {
                spec: path.display().to_string(),
                reason: format!("manifest format {:?}, expected {FORMAT:?}", manifest.format),
            });
        }
        Ok(manifest)
    }

    /// The files of one split and format, in shard order.
    pub fn files(&self, split: &str, format: &str) -> Vec<&ShardFile> {
        let mut files: Vec<&ShardFile> =
            self.shards.iter().filter(|s| s.split == split && s.format == format).collect();
        files.sort_by_key(|s| s.shard);
        files
    }
}
