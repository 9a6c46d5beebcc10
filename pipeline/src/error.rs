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
    #[error("{path}: writing JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting { name: &'static str, reason: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
