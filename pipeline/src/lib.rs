//! revgen-pipeline: jobs over the Amazon Customer Reviews dump.
//!
//! - [`dump`]: the dump's canonical columns and file formats;
//! - [`synth`]: a realistic synthetic dump, the fixture maker for every test (no real review rows live in the repo).

pub mod dump;
mod error;
pub mod synth;

pub use error::{Error, Result};
