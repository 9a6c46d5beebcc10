//! The command line itself: help, and the demo (the README's first command).

use crate::support::{revgen, run_ok};

#[test]
fn help_lists_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let help = run_ok(&mut revgen(dir.path(), &["--help"]));
    for sub in ["backends", "demo", "synth"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(sub)), "{sub} missing from:\n{help}");
    }
}

#[test]
fn demo_runs_end_to_end_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    // Fewer training steps than the default 200, to keep the suite short; training is tested in train.rs.
    let args = ["demo", "--dir", "out", "--rows", "3000", "--train-steps", "30"];
    let first = run_ok(&mut revgen(dir.path(), &args));
    assert!(first.contains("3000 rows"), "{first}");
    assert!(first.contains("4. train") && first.contains("sample: <|startoftext|> 5|||"), "{first}");
    assert!(dir.path().join("out/run/checkpoints/step-000030/model.safetensors").exists());
    assert!(dir.path().join("out/dump/amazon_reviews_us_Synthetic_v1_00.tsv.gz").exists());
    // Idempotent: a second run over the same directory succeeds and reports the same thing.
    let second = run_ok(&mut revgen(dir.path(), &args));
    assert_eq!(first, second);
}

#[test]
fn backends_are_listed_and_each_built_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    // No LD_LIBRARY_PATH: a tch build must find libtorch through the rpath baked into the binary.
    let out = run_ok(revgen(dir.path(), &["backends"]).env_remove("LD_LIBRARY_PATH"));
    let row = |name: &str| out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {out}"));
    assert!(row("flex").contains("yes") && row("flex").ends_with("ok"), "{out}");
    if cfg!(feature = "tch") {
        assert!(row("tch").contains("yes") && row("tch").ends_with("ok"), "{out}");
    } else {
        assert!(row("tch").contains(" no ") && row("tch").contains("--features tch"), "{out}");
    }
}
