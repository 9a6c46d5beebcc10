//! revgen-jobs: jobs composed from the pipeline and the trainer. It holds no pipeline or training logic of its own.
//!
//! - [`demo`]: the whole flow that exists, end to end on synthetic data, with no network;
//! - [`tokens`]: the trainer's tokenizer for the pipeline's `prepare --tokenize`;
//! - [`training`]: `revgen train` with data or run directory in object storage.

pub mod demo;
mod error;
pub mod tokens;
pub mod training;

pub use error::{Error, Result};
