//! revgen-pipeline: jobs over the Amazon Customer Reviews dump.
//!
//! - [`dump`]: the dump's canonical columns and file formats;
//! - [`source`]: where a dump is read from (local paths, globs, s3/gs/az/http object stores);
//! - [`table`]: all inputs as one DataFusion table, `reviews`, read by the [`decode`] readers, which count and
//!   quarantine malformed rows ([`quarantine`]);
//! - [`query`]: running the SQL files of `sql/` and ad-hoc SQL over that table;
//! - [`stats`]: the stats report, and [`output`] / [`chart`] to show it;
//! - [`prepare`]: the helpful reviews as tagged training text in shards, with a manifest;
//! - [`synth`]: a realistic synthetic dump, the fixture maker for every test (no real review rows live in the repo).

pub mod batch;
pub mod chart;
pub mod cluster;
mod decode;
pub mod dump;
mod error;
pub mod output;
pub mod prepare;
pub mod progress;
pub mod quarantine;
pub mod query;
pub mod row_filter;
pub mod source;
pub mod stats;
pub mod synth;
pub mod table;

pub use error::{Error, Result};
