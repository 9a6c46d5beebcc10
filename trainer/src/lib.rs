//! revgen-trainer: GPT-2 in burn. It holds the model, HF weight import and export, the GPT-2 tokenizer, the data
//! loader, the training loop, checkpoints and generation. The CLI only picks a backend and a device here.

pub mod adamw;
pub mod affine;
pub mod attention;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
mod encoder;
mod error;
pub mod gelu;
pub mod gradcheck;
pub mod hub;
pub mod layer_norm;
#[cfg(feature = "tch")]
mod libtorch;
pub mod loss;
pub mod model;
pub mod parity;
pub mod profile;
pub mod progress;
pub mod sample;
pub mod schedule;
pub mod score;
pub mod tokenizer;
pub mod train;
pub mod weights;

pub use error::{Error, Result};
