//! Running the `revgen` binary from tests.

use std::path::Path;
use std::process::{Command, Output};

/// A `revgen` command with the given arguments, run in `dir`.
pub fn revgen(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_revgen"));
    cmd.current_dir(dir).args(args);
    cmd
}

/// Runs the command and returns its stdout; panics with stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("start revgen");
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs the command, expecting failure; returns the output.
pub fn run_err(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("start revgen");
    assert!(!out.status.success(), "{cmd:?} should have failed:\n{}", String::from_utf8_lossy(&out.stdout));
    out
}

/// A file under the shared real-data directory (`$REVGEN_SHARED_DATA`, default `../shared/data`). Real rows are
/// read in place and never copied into the repo. A missing directory fails the test: it is not skipped.
pub fn shared_data(relative: &str) -> std::path::PathBuf {
    let root = std::env::var_os("REVGEN_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let path = root.join(relative);
    assert!(path.exists(), "{} is missing: set REVGEN_SHARED_DATA to the shared real-data directory", path.display());
    path
}

/// The torch venv's python with transformers (`REVGEN_PYTHON`, which scripts/test.sh exports). Missing fails the
/// test rather than skipping it.
pub fn hf_python(args: &[&str]) -> String {
    let python = std::env::var_os("REVGEN_PYTHON")
        .expect("REVGEN_PYTHON must name a python with torch and transformers (scripts/test.sh sets it)");
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hf_check.py"))
        .args(args)
        .output()
        .expect("run python");
    assert!(out.status.success(), "hf_check.py {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
