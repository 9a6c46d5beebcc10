//! The command line itself: help, and the demo (the README's first command).

use crate::support::{revgen, run_ok};

#[test]
fn help_lists_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let help = run_ok(&mut revgen(dir.path(), &["--help"]));
    for sub in ["demo", "synth"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(sub)), "{sub} missing from:\n{help}");
    }
}

#[test]
fn demo_runs_end_to_end_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["demo", "--dir", "out", "--rows", "3000"];
    let first = run_ok(&mut revgen(dir.path(), &args));
    assert!(first.contains("3000 rows"), "{first}");
    assert!(dir.path().join("out/dump/amazon_reviews_us_Synthetic_v1_00.tsv.gz").exists());
    // Idempotent: a second run over the same directory succeeds and reports the same thing.
    let second = run_ok(&mut revgen(dir.path(), &args));
    assert_eq!(first, second);
}
