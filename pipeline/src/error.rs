use std::path::PathBuf;

use thiserror::Error;

/// Everything the pipeline can fail with. Each variant names the file or setting at fault.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot tell the dump format from the name; use .tsv, .tsv.gz, .parquet or .jsonl")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: writing parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error("{path}: building an arrow batch: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: datafusion::arrow::error::ArrowError,
    },
    #[error("{path}: JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{spec}: {reason}")]
    InvalidInput { spec: String, reason: String },
    #[error("{spec}: not found, or no dump files under it (.tsv, .tsv.gz, .parquet, .json, .jsonl, .json.gz)")]
    NoInput { spec: String },
    #[error("{url}: {source}")]
    ObjectStore {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{url}: {source}")]
    Read {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: line 1 is not the AWS TSV header; expected {expected:?}, found {found:?}")]
    BadHeader { url: String, expected: String, found: String },
    #[error("writing the quarantine file: {reason}")]
    Quarantine { reason: String },
    #[error("{context}: {source}")]
    DataFusion {
        context: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    #[error("{path}: {reason}")]
    Sql { path: PathBuf, reason: String },
    #[error("{path}: drawing the chart: {reason}")]
    Chart { path: PathBuf, reason: String },
    #[error("{path}: tokenizing: {reason}")]
    Tokenize { path: PathBuf, reason: String },
    #[error("{url} already holds prepared output ({found}); pass --overwrite to replace it")]
    OutputExists { url: String, found: String },
    #[error("the job's row counts do not balance ({reason}); this is a bug, please report it")]
    Unbalanced { reason: String },
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting { name: &'static str, reason: String },
    #[error("cluster {url}: {reason}")]
    Cluster { url: String, reason: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
