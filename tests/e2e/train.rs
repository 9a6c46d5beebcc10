//! `revgen train` and `revgen plot` on shards prepared from synthetic dumps: learning, exact resume, Ctrl-C and
//! SIGKILL, fine-tuning imported HF weights (checked in transformers), and errors. The backend is LibTorch when the
//! binary is built with `--features tch` (scripts/test.sh runs the suite both ways), the pure-Rust one otherwise.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{hf_python, revgen, run_err, run_ok};

fn backend() -> &'static str {
    if cfg!(feature = "tch") { "tch" } else { "flex" }
}

/// A synthetic dump prepared into `dir/data`, with `.bin` shards when `tokenize`.
fn prepared(dir: &Path, rows: &str, tokenize: bool) -> PathBuf {
    let dump = dir.join("amazon_reviews_us_Toys_v1_00.tsv.gz");
    run_ok(revgen(dir, &["synth", "--rows", rows, "--seed", "11", "--categories", "Toys"]).arg("--out").arg(&dump));
    let data = dir.join("data");
    let mut args = vec!["prepare", "--shards", "2", "--val-fraction", "0.05", "--input"];
    if tokenize {
        args.insert(1, "--tokenize");
    }
    run_ok(revgen(dir, &args).arg(&dump).arg("--output").arg(&data));
    data
}

/// `revgen train` on `data` into `out` with the test's backend and the given extra flags.
fn train(dir: &Path, data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = revgen(dir, &["train", "--backend", backend()]);
    cmd.arg("--data").arg(data).arg("--out").arg(out).args(extra);
    cmd
}

fn metrics(run: &Path) -> Vec<Value> {
    fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn checkpoints(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(run.join("checkpoints"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Entropy (nats) of the token distribution of the train `.bin` shards: the loss of the best model that ignores
/// context.
fn unigram_entropy(data: &Path) -> f64 {
    let mut counts: HashMap<u16, u64> = HashMap::new();
    for entry in fs::read_dir(data).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("train-") && name.ends_with(".bin") {
            let bytes = fs::read(&path).unwrap();
            for pair in bytes[1024..].chunks_exact(2) {
                *counts.entry(u16::from_le_bytes([pair[0], pair[1]])).or_default() += 1;
            }
        }
    }
    let total: u64 = counts.values().sum();
    counts.values().map(|&c| c as f64 / total as f64).map(|p| -p * p.ln()).sum()
}

#[test]
fn a_tiny_model_learns_well_below_the_unigram_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path(), "3000", true);
    let run = dir.path().join("run");
    let args = [
        "--model",
        "tiny",
        "--steps",
        "200",
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--grad-accum",
        "1",
        "--lr",
        "3e-3",
        "--schedule",
        "cosine",
        "--warmup",
        "15",
        "--min-lr",
        "3e-4",
        "--weight-decay",
        "0.1",
        "--sample-every",
        "100",
        "--sample-length",
        "40",
        "--val-every",
        "50",
        "--val-batches",
        "4",
        "--save-every",
        "0",
        "--json",
    ];
    let report: Value = serde_json::from_str(&run_ok(&mut train(dir.path(), &data, &run, &args))).unwrap();
    assert_eq!(report["step"], 200);
    let baseline = unigram_entropy(&data);
    let m = metrics(&run);
    assert_eq!(m.len(), 200);
    let last: f64 = m[180..].iter().map(|l| l["loss"].as_f64().unwrap()).sum::<f64>() / 20.0;
    let first = m[0]["loss"].as_f64().unwrap();
    assert!(first > baseline, "an untrained model starts above the unigram entropy: {first} vs {baseline}");
    assert!(last < baseline - 0.75, "train loss {last:.3} is not well below the unigram baseline {baseline:.3}");
    let val = report["val_loss"].as_f64().unwrap();
    assert!(val < baseline - 0.5, "val loss {val:.3} vs unigram baseline {baseline:.3}");
    // Samples in the tagged format, and a loss chart.
    let sample = fs::read_to_string(run.join("samples/step-200.txt")).unwrap();
    assert!(sample.starts_with("<|startoftext|> 5|||"), "{sample}");
    let out = run_ok(&mut revgen(dir.path(), &["plot", "--run", "run", "--out", "loss.png"]));
    assert_eq!(out.trim(), "loss.png");
    assert_eq!(&fs::read(dir.path().join("loss.png")).unwrap()[..4], b"\x89PNG");
    // The final checkpoint is a model directory that `score` reads.
    let ckpt = report["checkpoint"].as_str().unwrap();
    assert!(ckpt.ends_with("step-000200"), "{ckpt}");
    let score: Value = serde_json::from_str(&run_ok(&mut revgen(
        dir.path(),
        &["score", "--checkpoint", ckpt, "--text", "<|startoftext|> 5|||Great toy|||My kids love it.<|endoftext|>"],
    )))
    .unwrap();
    assert!(score["loss"].as_f64().unwrap() < baseline, "{score}");
}

#[test]
fn a_run_stopped_and_resumed_equals_a_straight_run() {
    let dir = tempfile::tempdir().unwrap();
    // Text shards: tokenized on the fly, so resuming also re-finds its place inside a text shard.
    let data = prepared(dir.path(), "1500", false);
    let args = [
        "--model",
        "tiny",
        "--steps",
        "20",
        "--seq-len",
        "32",
        "--batch-size",
        "2",
        "--grad-accum",
        "2",
        "--lr",
        "1e-3",
        "--schedule",
        "cosine",
        "--warmup",
        "4",
        "--weight-decay",
        "0.1",
        "--sample-every",
        "5",
        "--sample-length",
        "8",
        "--val-every",
        "5",
        "--val-batches",
        "2",
        "--save-every",
        "5",
        "--keep",
        "2",
    ];
    let straight = dir.path().join("straight");
    run_ok(&mut train(dir.path(), &data, &straight, &args));
    let split = dir.path().join("split");
    run_ok(train(dir.path(), &data, &split, &args).args(["--stop-at", "10"]));
    assert_eq!(checkpoints(&split), ["best", "step-000005", "step-000010"]);
    let out = train(dir.path(), &data, &split, &args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("resuming from") && log.contains("at step 10"), "{log}");

    let losses = |run: &Path| {
        metrics(run).iter().map(|m| (m["step"].clone(), m["loss"].clone(), m["val_loss"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(losses(&straight), losses(&split), "the loss sequences differ");
    assert_eq!(checkpoints(&straight), ["best", "step-000015", "step-000020"]);
    // Bit-identical parameters. (optimizer.bpk holds the same state, but burn writes it in hash-map order.)
    let a = fs::read(straight.join("checkpoints/step-000020/model.safetensors")).unwrap();
    let b = fs::read(split.join("checkpoints/step-000020/model.safetensors")).unwrap();
    assert!(a == b, "the parameters differ between the straight and the resumed run");
    assert_eq!(
        fs::read_to_string(straight.join("samples/step-20.txt")).unwrap(),
        fs::read_to_string(split.join("samples/step-20.txt")).unwrap()
    );
}

/// Waits until `run` has the checkpoint `name`, or the process ends.
fn wait_for_checkpoint(child: &mut Child, run: &Path, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !run.join("checkpoints").join(name).join("state.json").exists() {
        assert!(child.try_wait().unwrap().is_none(), "training ended before {name}");
        assert!(Instant::now() < deadline, "no {name} after 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_saves_and_sigkill_leaves_the_last_checkpoint_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path(), "1500", true);
    let run = dir.path().join("run");
    let args = [
        "--model",
        "tiny",
        "--steps",
        "100000",
        "--seq-len",
        "32",
        "--batch-size",
        "2",
        "--grad-accum",
        "1",
        "--sample-every",
        "0",
        "--val-every",
        "0",
        "--save-every",
        "5",
        "--keep",
        "1",
    ];
    // Ctrl-C: the run saves the step it reached and exits with 130.
    let mut child =
        train(dir.path(), &data, &run, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_checkpoint(&mut child, &run, "step-000005");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let reached = metrics(&run).last().unwrap()["step"].as_u64().unwrap();
    assert_eq!(checkpoints(&run), [format!("step-{reached:06}")], "keep 1: only the interrupted step's checkpoint");

    // SIGKILL mid-run: whatever the moment, every visible checkpoint is complete and loads.
    let mut child = train(dir.path(), &data, &run, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let next = (reached / 5 + 2) * 5;
    wait_for_checkpoint(&mut child, &run, &format!("step-{next:06}"));
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap();
    child.wait().unwrap();
    let names = checkpoints(&run);
    let visible: Vec<&String> = names.iter().filter(|n| !n.starts_with('.')).collect();
    assert!(!visible.is_empty());
    for name in &visible {
        let ckpt = run.join("checkpoints").join(name);
        for file in ["model.safetensors", "optimizer.bpk", "state.json", "config.json", "tokenizer.json"] {
            assert!(ckpt.join(file).is_file(), "{name} lacks {file}");
        }
        run_ok(&mut revgen(dir.path(), &["score", "--checkpoint", ckpt.to_str().unwrap(), "--text", "It works well."]));
    }
    // The run resumes from the newest one and finishes; metrics hold every step once.
    let latest: u64 = visible.last().unwrap().trim_start_matches("step-").parse().unwrap();
    let end = (latest + 3).to_string();
    let resume_args: Vec<&str> = args.iter().map(|a| if *a == "100000" { end.as_str() } else { a }).collect();
    let out = train(dir.path(), &data, &run, &resume_args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("at step {latest}")));
    let steps: Vec<u64> = metrics(&run).iter().map(|m| m["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=latest + 3).collect::<Vec<_>>());
    assert!(!checkpoints(&run).iter().any(|n| n.starts_with('.')), "partial checkpoints are cleaned up");
}

#[test]
fn fine_tuning_imported_weights_lowers_the_val_loss_and_exports_to_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path(), "2000", true);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("trainer/tests/fixtures/tiny-gpt2");
    let val_text = dir.path().join("val.txt");
    let val: String = fs::read_to_string(data.join("val-00000-of-00002.txt")).unwrap();
    fs::write(&val_text, &val).unwrap();
    let loss = |model: &[&str]| -> f64 {
        let mut cmd = revgen(dir.path(), &["score", "--backend", backend(), "--file", "val.txt"]);
        let score: Value = serde_json::from_str(&run_ok(cmd.args(model))).unwrap();
        score["loss"].as_f64().unwrap()
    };
    let before = loss(&["--model", fixture.to_str().unwrap()]);
    let run = dir.path().join("run");
    let args = [
        "--model",
        fixture.to_str().unwrap(),
        "--steps",
        "30",
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--grad-accum",
        "1",
        "--lr",
        "2e-3",
        "--sample-every",
        "0",
        "--val-every",
        "15",
        "--val-batches",
        "4",
        "--save-every",
        "0",
    ];
    run_ok(&mut train(dir.path(), &data, &run, &args));
    let ckpt = run.join("checkpoints/step-000030");
    let after = loss(&["--checkpoint", ckpt.to_str().unwrap()]);
    assert!(after < before - 0.1, "val loss {before:.4} -> {after:.4}");

    // Exported, the fine-tuned model loads in transformers and computes the loss revgen computes.
    run_ok(&mut revgen(dir.path(), &["export", "--checkpoint", ckpt.to_str().unwrap(), "--out", "exported"]));
    let record: String = val.lines().next().unwrap().chars().take(200).collect();
    fs::write(dir.path().join("record.txt"), &record).unwrap();
    let hf: Value = serde_json::from_str(&hf_python(&[
        "loss",
        dir.path().join("exported").to_str().unwrap(),
        dir.path().join("record.txt").to_str().unwrap(),
    ]))
    .unwrap();
    let ours: Value = serde_json::from_str(&run_ok(&mut revgen(
        dir.path(),
        &["score", "--backend", backend(), "--checkpoint", "exported", "--file", "record.txt"],
    )))
    .unwrap();
    let (a, b) = (hf["loss"].as_f64().unwrap(), ours["loss"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-4, "transformers {a} vs revgen {b}");
}

#[test]
fn bad_training_input_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path(), "300", true);
    let err = |args: &[&str], data: &Path| {
        let out = run_err(&mut train(dir.path(), data, &dir.path().join("run"), args));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["--model", "tiny", "--seq-len", "4096"], &data);
    assert!(e.contains("--seq-len 4096") && e.contains("256"), "{e}");
    let e = err(&["--model", "tiny"], dir.path());
    assert!(e.contains("manifest.json") && e.contains("revgen prepare"), "{e}");
    let e = err(&["--model", "tiny", "--resume", "/nonexistent/ckpt"], &data);
    assert!(e.contains("/nonexistent/ckpt/state.json") && e.contains("not a revgen training checkpoint"), "{e}");
    fs::remove_file(data.join("train-00001-of-00002.bin")).unwrap();
    let e = err(&["--model", "tiny"], &data);
    assert!(e.contains("train-00001-of-00002.bin") && e.contains("missing"), "{e}");
}

/// Data and run directory on the S3 test server (moto_server, started by scripts/test.sh); the run resumes on a
/// "fresh machine" (an empty local cache) from the checkpoint in the bucket.
#[test]
fn trains_from_and_to_s3_and_resumes_from_the_bucket() {
    let endpoint = std::env::var("REVGEN_TEST_S3_ENDPOINT")
        .expect("REVGEN_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts moto_server");
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("revgen-train-{}", std::process::id());
    ureq::Agent::new_with_defaults().put(&format!("{endpoint}/{bucket}")).send_empty().expect("create bucket");
    let dump = dir.path().join("amazon_reviews_us_Toys_v1_00.tsv.gz");
    run_ok(revgen(dir.path(), &["synth", "--rows", "1500", "--seed", "4", "--out"]).arg(&dump));
    let data = format!("s3://{bucket}/data");
    let prepare = ["prepare", "--shards", "2", "--tokenize", "--endpoint", &endpoint, "-o", &data, "-i"];
    run_ok(revgen(dir.path(), &prepare).arg(&dump));

    let run = format!("s3://{bucket}/run");
    let train = |cache: &str, steps: &str| {
        let args = [
            "train",
            "--backend",
            backend(),
            "--model",
            "tiny",
            "--data",
            &data,
            "--out",
            &run,
            "--endpoint",
            &endpoint,
            "--steps",
            steps,
            "--seq-len",
            "32",
            "--batch-size",
            "2",
            "--grad-accum",
            "1",
            "--sample-every",
            "3",
            "--sample-length",
            "5",
            "--val-every",
            "3",
            "--val-batches",
            "2",
            "--save-every",
            "3",
            "--keep",
            "1",
        ];
        let out = revgen(dir.path(), &args).env("REVGEN_CACHE", dir.path().join(cache)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    train("cache-1", "6");

    let url = url::Url::parse(&format!("s3://{bucket}/")).unwrap();
    let options = revgen_pipeline::source::StoreOptions { endpoint: Some(endpoint.clone()), ..Default::default() };
    let (_, store) = revgen_pipeline::source::open_store(&url, &options, &run).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let list = || -> Vec<String> {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from("run");
        let objects: Vec<_> = runtime.block_on(store.list(Some(&prefix)).try_collect()).unwrap();
        objects.into_iter().map(|o| o.location.to_string()).collect()
    };
    let get = |key: &str| -> String {
        use object_store::ObjectStoreExt;
        let key = object_store::path::Path::from(key);
        let bytes = runtime.block_on(async { store.get(&key).await?.bytes().await }).unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    };
    let objects = list();
    for key in [
        "run/checkpoints/step-000006/state.json",
        "run/checkpoints/step-000006/model.safetensors",
        "run/checkpoints/best/optimizer.bpk",
        "run/samples/step-6.txt",
        "run/train.json",
    ] {
        assert!(objects.iter().any(|o| o == key), "{key} not in {objects:?}");
    }
    assert!(!objects.iter().any(|o| o.contains("step-000003")), "--keep 1: step 3 is pruned remotely too");
    assert_eq!(get("run/metrics.jsonl").lines().count(), 6);

    // A new machine: nothing cached locally; the run continues from the bucket's step 6.
    let log = train("cache-2", "9");
    assert!(log.contains("at step 6"), "{log}");
    assert_eq!(get("run/metrics.jsonl").lines().count(), 9);
    assert!(list().iter().any(|o| o == "run/checkpoints/step-000009/state.json"));
}

/// `--profile-steps`: on LibTorch, a trace of the steps after the first in the run directory, in PyTorch's
/// profiler format; on the pure-Rust backend, an error that says why not.
#[test]
fn profile_steps_traces_libtorch_steps() {
    let dir = tempfile::tempdir().unwrap();
    let data = prepared(dir.path(), "300", true);
    let run = dir.path().join("run");
    let args = ["--model", "tiny", "--from-scratch", "--steps", "3", "--seq-len", "32", "--grad-accum", "1"];
    let mut cmd = train(dir.path(), &data, &run, &args);
    cmd.args(["--sample-every", "0", "--val-every", "0", "--profile-steps", "1"]);
    if backend() == "tch" {
        let out = cmd.output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{said}");
        let trace = run.join("profile/steps-2-2.pt.trace.json");
        assert!(said.contains("profile of steps 2-2") && said.contains(&*trace.to_string_lossy()), "{said}");
        let trace: Value = serde_json::from_slice(&fs::read(&trace).unwrap()).unwrap();
        let names: Vec<&str> =
            trace["traceEvents"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
        assert!(names.contains(&"ProfilerStep#2") && !names.contains(&"ProfilerStep#3"));
        assert!(names.contains(&"aten::_fused_adamw_"), "LibTorch's operators are in the trace");
        assert_eq!(metrics(&run).len(), 3);
    } else {
        let e = String::from_utf8_lossy(&run_err(&mut cmd).stderr).into_owned();
        assert!(e.contains("--profile-steps needs --backend tch"), "{e}");
    }
}
