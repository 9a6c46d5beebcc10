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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
