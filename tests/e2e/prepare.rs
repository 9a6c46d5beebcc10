//! `revgen prepare`: the real Electronics head, synthetic dumps with malformed rows, determinism, a killed run and
//! output to an S3 server. Expected records are rebuilt here from the TSV with a plain split on tab.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use revgen_pipeline::source::StoreOptions;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{revgen, run_err, run_ok, shared_data};

const ELECTRONICS: &str = "amazon-us-reviews-tsv/amazon_reviews_us_Electronics_v1_00.head10000.tsv";

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).expect("manifest.json")).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every text record of a split, in shard order.
fn records(dir: &Path, m: &Value, split: &str) -> Vec<String> {
    let mut shards: Vec<&Value> =
        m["shards"].as_array().unwrap().iter().filter(|s| s["split"] == split && s["format"] == "text").collect();
    shards.sort_by_key(|s| s["shard"].as_u64());
    shards
        .iter()
        .flat_map(|s| {
            fs::read_to_string(dir.join(s["file"].as_str().unwrap()))
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The counts balance, and every shard's size and sha256 are those of its file.
fn assert_consistent(dir: &Path, m: &Value) {
    let c = &m["counts"];
    let n = |v: &Value| v.as_u64().unwrap();
    let filtered: u64 = c["filtered"].as_object().unwrap().values().map(n).sum();
    assert_eq!(n(&c["rows_read"]), n(&c["malformed"]) + filtered + n(&c["kept"]), "{c}");
    assert_eq!(n(&c["kept"]), n(&c["train"]) + n(&c["val"]), "{c}");
    let by_rating: u64 = c["kept_by_rating"].as_object().unwrap().values().map(n).sum();
    assert_eq!(by_rating, n(&c["kept"]));
    for shard in m["shards"].as_array().unwrap() {
        let bytes = fs::read(dir.join(shard["file"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, n(&shard["bytes"]), "{shard}");
        assert_eq!(sha256(&bytes), shard["sha256"], "{shard}");
    }
}

/// Helpful reviews of an AWS TSV, formatted with the default template and `--raw-html`: the original project's
/// raw output.
fn expected_raw_records(tsv: &str) -> Vec<String> {
    let mut out: Vec<String> = tsv
        .lines()
        .skip(1)
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .filter(|f| f.len() == 15 && f[8].parse::<u64>().is_ok_and(|v| v >= 1))
        .map(|f| format!("<|startoftext|> {}|||{}|||{}<|endoftext|>", f[7], f[12], f[13]))
        .collect();
    out.sort();
    out
}

#[test]
fn real_electronics_head() {
    let dir = tempfile::tempdir().unwrap();
    let input = shared_data(ELECTRONICS);
    let input = input.to_str().unwrap();
    let out = dir.path().join("prepared");
    let summary = run_ok(&mut revgen(dir.path(), &["prepare", "-i", input, "-o", out.to_str().unwrap()]));
    assert!(summary.contains("kept 1,883"), "{summary}");
    let m = manifest(&out);
    assert_consistent(&out, &m);
    assert_eq!(m["counts"]["rows_read"], 10_000);
    assert_eq!(m["counts"]["kept"], 1883, "the original project's filter keeps 1883 of these rows");
    assert_eq!(m["counts"]["filtered"]["not_helpful"], 10_000 - 1883);
    assert_eq!(m["counts"]["malformed"], 0);
    assert_eq!(m["inputs"][0]["bytes"], fs::metadata(input).unwrap().len());
    assert!(m["sql"].as_str().unwrap().contains("review_record(dropped IS NULL, '<|startoftext|> ', star_rating"));

    // 16 shards per split, every record one line of the template.
    let (train, val) = (records(&out, &m, "train"), records(&out, &m, "val"));
    assert_eq!(m["shards"].as_array().unwrap().len(), 32);
    assert!(out.join("train-00015-of-00016.txt").is_file() && out.join("val-00000-of-00016.txt").is_file());
    assert_eq!(train.len() + val.len(), 1883);
    assert!((5..=45).contains(&val.len()), "about 1% val: {}", val.len());
    for record in train.iter().chain(&val) {
        let body = record.strip_prefix("<|startoftext|> ").and_then(|r| r.strip_suffix("<|endoftext|>"));
        let fields: Vec<&str> = body.expect(record).splitn(3, "|||").collect();
        assert!(fields.len() == 3 && ["1", "2", "3", "4", "5"].contains(&fields[0]), "{record}");
        assert!(!record.contains("<br />") && !record.contains("&#34;"), "{record}");
    }
    assert!(train.iter().any(|r| r.contains("\\n")), "<br /> became the \\n escape");

    // --raw-html: byte for byte the original project's raw output.
    let raw = dir.path().join("raw");
    run_ok(&mut revgen(dir.path(), &["prepare", "-i", input, "-o", raw.to_str().unwrap(), "--raw-html"]));
    let m = manifest(&raw);
    let mut all = records(&raw, &m, "train");
    all.extend(records(&raw, &m, "val"));
    all.sort();
    assert_eq!(all, expected_raw_records(&fs::read_to_string(input).unwrap()));
}

#[test]
fn synthetic_dump_with_malformed_rows_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("amazon_reviews_us_Mixed_v1_00.tsv.gz");
    run_ok(
        revgen(
            dir.path(),
            &["synth", "--rows", "4000", "--seed", "3", "--malformed-rate", "0.02", "--categories", "Books,Toys,Music"],
        )
        .arg("--out")
        .arg(&dump),
    );
    let out = dir.path().join("out");
    let args = [
        "--categories",
        "Books,Toys",
        "--min-chars",
        "40",
        "--max-chars",
        "2000",
        "--dedup",
        "--shards",
        "3",
        "--val-fraction",
        "0.1",
        "--parquet",
        "--tokenize",
        "--json",
    ];
    let printed: Value = serde_json::from_str(&run_ok(
        revgen(dir.path(), &["prepare", "-i", dump.to_str().unwrap(), "-o", out.to_str().unwrap()]).args(args),
    ))
    .unwrap();
    let m = manifest(&out);
    assert_eq!(printed, m, "--json prints the manifest");
    assert_consistent(&out, &m);
    let c = &m["counts"];
    assert_eq!(c["rows_read"], 4000);
    let malformed = c["malformed"].as_u64().unwrap();
    assert!((40..=120).contains(&malformed), "{c}");
    for reason in ["not_helpful", "category", "too_short", "too_long"] {
        assert!(c["filtered"][reason].as_u64().unwrap() > 0, "{reason}: {c}");
    }
    // Every malformed row is in the quarantine file, with its line number.
    let quarantine = fs::read_to_string(out.join("quarantine.jsonl")).unwrap();
    assert_eq!(quarantine.lines().count() as u64, malformed);
    assert_eq!(m["quarantine"]["rows"], malformed);

    // Text, token and Parquet shards of each split agree on their records.
    assert_eq!(m["shards"].as_array().unwrap().len(), 2 * 3 * 3);
    let tokenizer = revgen_trainer::tokenizer::Gpt2Tokenizer::builtin();
    for split in ["train", "val"] {
        for shard in 0..3 {
            let name = |ext: &str| out.join(format!("{split}-{shard:05}-of-00003.{ext}"));
            let text = fs::read_to_string(name("txt")).unwrap();
            let ids = revgen_pipeline::prepare::tokens::read(&name("bin")).unwrap();
            let expected: Vec<u16> = tokenizer.encode(&text).unwrap().iter().map(|&id| id as u16).collect();
            assert_eq!(ids, expected, "{split} {shard}: the .bin shard is the text shard's tokenization");
            let parquet = SerializedFileReader::new(fs::File::open(name("parquet")).unwrap()).unwrap();
            let rows: Vec<String> =
                parquet.get_row_iter(None).unwrap().map(|row| row.unwrap().get_string(0).unwrap().clone()).collect();
            assert_eq!(rows, text.lines().collect::<Vec<_>>(), "{split} {shard}: Parquet shard");
        }
    }
    assert_eq!(m["tokenizer"]["end_of_text"], 50256);
}

#[test]
fn reruns_and_partitionings_give_identical_shards() {
    let dir = tempfile::tempdir().unwrap();
    // Three inputs (three partitions), and the same rows as one file (one partition).
    let mut combined = String::new();
    let mut parts = Vec::new();
    for seed in 0..3 {
        let path = dir.path().join(format!("amazon_reviews_us_P{seed}_v1_00.tsv"));
        run_ok(revgen(dir.path(), &["synth", "--rows", "1500", "--seed", &seed.to_string(), "--out"]).arg(&path));
        let text = fs::read_to_string(&path).unwrap();
        let (header, rows) = text.split_once('\n').unwrap();
        if combined.is_empty() {
            combined.push_str(header);
            combined.push('\n');
        }
        combined.push_str(rows);
        parts.push(path.to_str().unwrap().to_owned());
    }
    let whole = dir.path().join("amazon_reviews_us_All_v1_00.tsv");
    fs::write(&whole, combined).unwrap();

    let prepare = |input: &str, out: &str| {
        run_ok(&mut revgen(dir.path(), &["prepare", "-i", input, "-o", out, "--shards", "4", "--seed", "9"]));
        manifest(&dir.path().join(out))
    };
    let shards = |m: &Value| m["shards"].clone();
    let first = prepare(&parts.join(","), "a");
    let again = prepare(&parts.join(","), "b");
    let whole = prepare(whole.to_str().unwrap(), "c");
    assert_eq!(shards(&first), shards(&again));
    assert_eq!(shards(&first), shards(&whole), "the order of records does not depend on the partitioning");
    assert_eq!(first["counts"], whole["counts"]);
    // Text shards alone stream to their files; with Parquet shards the writers buffer the records and sort them
    // by row_position. Here with a memory pool too small for one batch: every batch spills its records to disk as
    // sorted runs, which the writers merge. The same text bytes.
    run_ok(
        revgen(dir.path(), &["prepare", "-i", &parts.join(","), "-o", "spilled", "--shards", "4", "--seed", "9"])
            .args(["--parquet"])
            .env("REVGEN_MEMORY_LIMIT", "16K"),
    );
    let text_shards = |m: &Value| {
        m["shards"].as_array().unwrap().iter().filter(|s| s["format"] == "text").cloned().collect::<Vec<_>>()
    };
    let spilled = manifest(&dir.path().join("spilled"));
    assert_eq!(text_shards(&spilled).len(), 8);
    assert_eq!(text_shards(&first), text_shards(&spilled), "buffering and spilling write what streaming writes");
    let out = run_err(
        revgen(dir.path(), &["prepare", "-i", &parts[0], "-o", "bad-limit"]).env("REVGEN_MEMORY_LIMIT", "lots"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REVGEN_MEMORY_LIMIT") && stderr.contains("\"lots\""), "{stderr}");
    assert_eq!(
        fs::read(dir.path().join("a/manifest.json")).unwrap(),
        fs::read(dir.path().join("b/manifest.json")).unwrap()
    );

    // Another seed: another split, the same records.
    let reseeded = dir.path().join("d");
    run_ok(&mut revgen(dir.path(), &["prepare", "-i", &parts.join(","), "-o", "d", "--shards", "4", "--seed", "10"]));
    let other = manifest(&reseeded);
    assert_ne!(shards(&first), shards(&other));
    let sorted = |d: &str, m: &Value| {
        let mut all = records(&dir.path().join(d), m, "train");
        all.extend(records(&dir.path().join(d), m, "val"));
        all.sort();
        all
    };
    assert_eq!(sorted("a", &first), sorted("d", &other));

    // Existing output needs --overwrite, which replaces it (fewer shards: the old ones go).
    let out = run_err(&mut revgen(dir.path(), &["prepare", "-i", &parts[0], "-o", "a"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"), "{}", String::from_utf8_lossy(&out.stderr));
    run_ok(&mut revgen(dir.path(), &["prepare", "-i", &parts[0], "-o", "a", "--overwrite", "--shards", "2"]));
    let names: Vec<String> =
        fs::read_dir(dir.path().join("a")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2 * 2 + 1, "{names:?}");
}

#[test]
fn a_killed_run_leaves_nothing_that_looks_complete() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("amazon_reviews_us_Big_v1_00.tsv.gz");
    run_ok(revgen(dir.path(), &["synth", "--rows", "150000", "--seed", "5", "--out"]).arg(&dump));
    let out = dir.path().join("out");
    let mut child = revgen(dir.path(), &["prepare", "-i", dump.to_str().unwrap(), "-o", "out", "--tokenize"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the writers have files open in the staging directory.
    let staging = out.join(format!(".revgen-staging-{}", child.id()));
    let started = Instant::now();
    while !fs::read_dir(&staging).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".bin")))
    {
        assert!(child.try_wait().unwrap().is_none(), "prepare finished before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(300), "no shard was started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let visible: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(visible.is_empty(), "a killed run left {visible:?}");

    // The next run needs no --overwrite, and clears the dead run's staging directory.
    run_ok(&mut revgen(dir.path(), &["prepare", "-i", dump.to_str().unwrap(), "-o", "out"]));
    assert!(!staging.exists());
    assert_consistent(&out, &manifest(&out));
}

/// Output to a real S3-compatible server (moto_server, started by scripts/test.sh): the same objects, byte for
/// byte, as a local run.
#[test]
fn output_to_s3() {
    let endpoint = std::env::var("REVGEN_TEST_S3_ENDPOINT")
        .expect("REVGEN_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts moto_server");
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("revgen-prepare-{}", std::process::id());
    let agent = ureq::Agent::new_with_defaults();
    agent.put(&format!("{endpoint}/{bucket}")).send_empty().expect("create bucket");
    let dump = dir.path().join("amazon_reviews_us_S3_v1_00.tsv.gz");
    run_ok(revgen(dir.path(), &["synth", "--rows", "3000", "--malformed-rate", "0.01", "--out"]).arg(&dump));
    let dump = dump.to_str().unwrap();

    run_ok(&mut revgen(dir.path(), &["prepare", "-i", dump, "-o", "local", "--shards", "2", "--tokenize"]));
    let prefix = format!("s3://{bucket}/prepared");
    let s3 = ["prepare", "-i", dump, "-o", &prefix, "--shards", "2", "--tokenize", "--endpoint", &endpoint];
    let summary = run_ok(&mut revgen(dir.path(), &s3));
    assert!(summary.contains(&format!("{prefix}/manifest.json")), "{summary}");

    // Read back with credentials, through the same object-store client a user's tools would use.
    let url = url::Url::parse(&format!("s3://{bucket}/")).unwrap();
    let options = StoreOptions { endpoint: Some(endpoint.clone()), ..Default::default() };
    let (_, store) = revgen_pipeline::source::open_store(&url, &options, &prefix).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let get = |name: &str| -> Vec<u8> {
        let key = object_store::path::Path::from(format!("prepared/{name}"));
        runtime
            .block_on(async { store.get(&key).await?.bytes().await })
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .to_vec()
    };
    let local = dir.path().join("local");
    let m: Value = serde_json::from_slice(&get("manifest.json")).unwrap();
    assert_eq!(m["shards"], manifest(&local)["shards"]);
    let mut files: BTreeMap<String, u64> = BTreeMap::new();
    for shard in m["shards"].as_array().unwrap() {
        let name = shard["file"].as_str().unwrap();
        let bytes = get(name);
        assert_eq!(bytes, fs::read(local.join(name)).unwrap(), "{name}");
        files.insert(name.to_owned(), bytes.len() as u64);
    }
    assert_eq!(get("quarantine.jsonl"), fs::read(local.join("quarantine.jsonl")).unwrap());
    assert_eq!(files.len(), 2 * 2 * 2);

    // A second run into the same prefix needs --overwrite.
    let out = run_err(&mut revgen(dir.path(), &s3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"), "{}", String::from_utf8_lossy(&out.stderr));
}
