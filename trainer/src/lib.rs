//! revgen-trainer: GPT-2 in burn. It holds the model, HF weight import and export, the GPT-2 tokenizer, the data
//! loader, the training loop, checkpoints and generation. The CLI only picks a backend and a device here.

pub mod backend;
pub mod config;
mod error;
pub mod hub;
pub mod model;
pub mod parity;
pub mod score;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
