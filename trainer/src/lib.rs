//! revgen-trainer: GPT-2 in burn. It holds the model, HF weight import and export, the GPT-2 tokenizer, the data
//! loader, the training loop, checkpoints and generation. The CLI only picks a backend and a device here.

pub mod backend;
mod error;

pub use error::{Error, Result};
