use std::path::{Path, PathBuf};

use thiserror::Error;

/// Everything the trainer can fail with.
#[derive(Debug, Error)]
pub enum Error {
    #[error("unknown backend {0:?}: expected one of {1}")]
    UnknownBackend(String, &'static str),
    #[error("backend {0} is not in this build: rebuild with `--features {0}` (see scripts/setup-libtorch.sh)")]
    BackendNotBuilt(&'static str),
    #[error("unknown device {device:?} for backend {backend}: expected `cpu` or `cuda:N`")]
    UnknownDevice { backend: &'static str, device: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: {reason}", path.display())]
    InvalidConfig { path: PathBuf, reason: String },
    #[error("invalid model configuration: {0}")]
    InvalidModel(String),

    #[error("{}: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
    #[error("{}: tensor {name}: {reason}", path.display())]
    Tensor { path: PathBuf, name: String, reason: String },
    #[error("{}: missing tensor {name} (expected shape {shape:?})", path.display())]
    MissingTensor { path: PathBuf, name: String, shape: Vec<usize> },

    #[error("model {spec:?} is not available offline: {reason}. Put these files in a directory and pass it as \
             --model DIR: {}", files.join(", "))]
    ModelUnavailable { spec: String, reason: String, files: Vec<&'static str> },
    #[error("downloading {url}: {reason}")]
    Download { url: String, reason: String },

    #[error("tokenizer {}: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },
    #[error("{tokens} tokens do not fit the model's context of {n_positions}")]
    ContextOverflow { tokens: usize, n_positions: usize },
    #[error("scoring needs at least 2 tokens, got {0}")]
    TooFewTokens(usize),

    #[error("training data {}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error("invalid training settings: {0}")]
    InvalidTraining(String),
    #[error(
        "the loss is {loss} at step {step} (lr {lr:e}): training diverged; lower --lr, raise --warmup, or keep \
             --grad-clip on, and resume from an earlier checkpoint with --resume DIR"
    )]
    Diverged { step: u64, loss: f64, lr: f64 },
    #[error("PyTorch's profiler: {0}")]
    Profiler(String),
    #[error("out of memory on {device}: {hint}")]
    OutOfMemory { device: String, hint: String },
}

impl Error {
    /// Wraps an `io::Error` with the path it concerns: `.map_err(Error::io(path))`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { path: path.to_owned(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
