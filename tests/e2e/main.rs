//! End-to-end tests of the `revgen` binary. One test binary for the whole suite (each integration-test file
//! would otherwise link the full stack again); the modules below are its parts.

mod cli;
mod cluster;
mod model;
mod prepare;
mod stats;
mod support;
mod synth;
mod train;
