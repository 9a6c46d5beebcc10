//! `revgen stats` and `revgen sql`: real rows, synthetic dumps in every format, malformed rows, an S3 server.
//! Expected figures are computed here by independent code (a plain split on tab, serde_json), as well as stated.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::support::{revgen, run_err, run_ok, shared_data};

const ELECTRONICS: &str = "amazon-us-reviews-tsv/amazon_reviews_us_Electronics_v1_00.head10000.tsv";

/// Per rating 1..5: review_body lengths in characters, of all valid reviews and of helpful ones.
#[derive(Debug, Default)]
struct Lengths {
    all: [Vec<f64>; 5],
    helpful: [Vec<f64>; 5],
}

impl Lengths {
    fn add(&mut self, rating: usize, helpful_votes: u64, body: &str) {
        let chars = body.chars().count() as f64;
        self.all[rating - 1].push(chars);
        if helpful_votes >= 1 {
            self.helpful[rating - 1].push(chars);
        }
    }

    fn subset(&self, subset: &str) -> &[Vec<f64>; 5] {
        if subset == "all" { &self.all } else { &self.helpful }
    }
}

/// Mean, median and 90th percentile (linear interpolation between closest ranks, as percentile_cont).
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let quantile = |p: f64| {
        let pos = p * (sorted.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
    };
    (values.iter().sum::<f64>() / values.len() as f64, quantile(0.5), quantile(0.9))
}

/// The lengths of a plain AWS TSV, split on tab, skipping malformed lines.
fn tsv_lengths(text: &str) -> Lengths {
    let mut lengths = Lengths::default();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 15 {
            continue;
        }
        let (Ok(rating @ 1..=5), Ok(helpful), Ok(_)) =
            (fields[7].parse::<usize>(), fields[8].parse::<u64>(), fields[9].parse::<u64>())
        else {
            continue;
        };
        lengths.add(rating, helpful, fields[13]);
    }
    lengths
}

/// The `stats` rows of `revgen stats --format json`, keyed by (subset, rating).
fn stats_rows(report: &Value) -> BTreeMap<(String, i64), Value> {
    report["stats"]
        .as_array()
        .expect("stats array")
        .iter()
        .map(|row| ((row["subset"].as_str().unwrap().to_owned(), row["star_rating"].as_i64().unwrap()), row.clone()))
        .collect()
}

/// Asserts that a report's rows equal the independently computed lengths.
fn assert_matches(report: &Value, lengths: &Lengths) {
    let rows = stats_rows(report);
    for subset in ["all", "helpful"] {
        for rating in 1..=5 {
            let values = &lengths.subset(subset)[rating - 1];
            let Some(row) = rows.get(&(subset.to_owned(), rating as i64)) else {
                assert!(values.is_empty(), "{subset}/{rating} missing from {report}");
                continue;
            };
            let (mean, median, p90) = summary(values);
            // Exact: the report computes quantiles from a histogram of lengths, with no rounding of ranks.
            let quantile_tolerance = 1e-9;
            assert_eq!(row["reviews"].as_u64().unwrap(), values.len() as u64, "{subset}/{rating}");
            for (column, expected, tolerance) in [
                ("avg_review_length", mean, 1e-9),
                ("median_review_length", median, quantile_tolerance),
                ("p90_review_length", p90, quantile_tolerance),
            ] {
                let got = row[column].as_f64().unwrap();
                assert!((got - expected).abs() <= tolerance, "{subset}/{rating} {column}: {got} vs {expected}");
            }
        }
    }
}

fn stats_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["stats", "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&run_ok(&mut revgen(dir, &all))).expect("stats JSON")
}

#[test]
fn golden_electronics_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = shared_data(ELECTRONICS);
    let input = path.to_str().unwrap();
    let report = stats_json(dir.path(), &["--input", input]);

    // The stated figures for this file (../shared/data/README.md)...
    let rows = stats_rows(&report);
    let counts: Vec<u64> = (1..=5).map(|r| rows[&("all".into(), r)]["reviews"].as_u64().unwrap()).collect();
    assert_eq!(counts, [1170, 540, 639, 1448, 6203]);
    let helpful: u64 = (1..=5).map(|r| rows[&("helpful".into(), r)]["reviews"].as_u64().unwrap()).sum();
    assert_eq!(helpful, 1883);
    let means: Vec<String> =
        (1..=5).map(|r| format!("{:.2}", rows[&("all".into(), r)]["avg_review_length"].as_f64().unwrap())).collect();
    assert_eq!(means, ["231.12", "310.79", "336.14", "276.15", "185.47"]);
    assert_eq!(report["counts"]["rows_read"], 10_000);
    assert_eq!(report["counts"]["malformed"], 0);

    // ...and the same, with medians and p90s, computed here.
    assert_matches(&report, &tsv_lengths(&fs::read_to_string(&path).unwrap()));

    // CSV: exactly the documented columns, one row per subset and rating.
    let csv = run_ok(&mut revgen(dir.path(), &["stats", "--input", input, "--format", "csv"]));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("subset,star_rating,reviews,avg_review_length,median_review_length,p90_review_length")
    );
    assert_eq!(lines.clone().count(), 10);
    assert!(lines.next().unwrap().starts_with("all,1,1170,231.11"), "{csv}");

    // The default table and Markdown carry the counts line too.
    let table = run_ok(&mut revgen(dir.path(), &["stats", "--input", input]));
    assert!(table.contains("rows_read 10,000 = valid 10,000 + malformed 0"), "{table}");
    assert!(table.contains("231.12"), "{table}");
    let markdown = run_ok(&mut revgen(dir.path(), &["stats", "--input", input, "--format", "markdown"]));
    assert!(markdown.contains("| subset  | star_rating |"), "{markdown}");
}

#[test]
fn real_mcauley_2018_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = shared_data("amazon-reviews-2018-json/AMAZON_FASHION_5.json");
    let report = stats_json(dir.path(), &["--input", path.to_str().unwrap()]);

    let mut lengths = Lengths::default();
    let text = fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let rating = row["overall"].as_f64().unwrap() as usize;
        let votes = row["vote"].as_str().map_or(0, |v| v.replace(',', "").parse::<u64>().unwrap());
        lengths.add(rating, votes, row["reviewText"].as_str().unwrap_or_default());
    }
    assert_eq!(report["counts"]["rows_read"], 3176);
    assert_matches(&report, &lengths);
}

/// A synthetic dump in every format the readers take, with planted malformed rows and multibyte text: the
/// report equals what the generator says it wrote.
#[test]
fn synthetic_dumps_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for (name, layout) in [
        ("dump.tsv.gz", "2023"),
        ("dump.tsv", "2023"),
        ("dump.parquet", "2023"),
        ("dump-2014.jsonl", "2014"),
        ("dump-2018.jsonl", "2018"),
        ("dump-2023.jsonl", "2023"),
    ] {
        let out = dir.path().join(name);
        let args = ["synth", "--rows", "3000", "--malformed-rate", "0.02", "--seed", "7", "--json-layout", layout];
        let synth: Value = serde_json::from_str(&run_ok(revgen(dir.path(), &args).arg("--out").arg(&out))).unwrap();
        let quarantine = dir.path().join(format!("{name}.quarantine.jsonl"));
        let report =
            stats_json(dir.path(), &["--input", out.to_str().unwrap(), "--quarantine", quarantine.to_str().unwrap()]);
        let counts = &report["counts"];
        assert_eq!(counts["rows_read"], synth["rows"], "{name}");
        assert_eq!(counts["valid"], synth["valid"], "{name}");
        assert_eq!(counts["malformed"], synth["malformed"], "{name}");
        assert!(synth["malformed"].as_u64().unwrap() > 20, "{name}: too few malformed rows planted");
        assert_eq!(counts["malformed_by_reason"], synth["malformed_by_reason"], "{name}");

        let rows = stats_rows(&report);
        for rating in 1..=5i64 {
            let all = &rows[&("all".into(), rating)];
            let key = rating.to_string();
            assert_eq!(all["reviews"], synth["reviews_per_rating"][&key], "{name} rating {rating}");
            let (got, want) =
                (all["avg_review_length"].as_f64().unwrap(), synth["mean_body_chars"][&key].as_f64().unwrap());
            assert!((got - want).abs() < 1e-9, "{name} rating {rating}: mean {got} vs {want}");
            let helpful = &rows[&("helpful".into(), rating)];
            let (got, want) = (
                helpful["avg_review_length"].as_f64().unwrap(),
                synth["mean_body_chars_helpful"][&key].as_f64().unwrap(),
            );
            assert!((got - want).abs() < 1e-9, "{name} rating {rating}: helpful mean {got} vs {want}");
        }
        let helpful: u64 = (1..=5).map(|r| rows[&("helpful".into(), r)]["reviews"].as_u64().unwrap()).sum();
        assert_eq!(helpful, synth["helpful"].as_u64().unwrap(), "{name}");

        // A WHERE on the votes that the scan applies itself (pushed down) counts what DataFusion's own filter
        // counts, in every format.
        let count = |condition: &str| -> u64 {
            let query = format!("SELECT count(*) AS n FROM reviews WHERE {condition}");
            let csv = run_ok(&mut revgen(dir.path(), &["sql", "-i", out.to_str().unwrap(), "--format", "csv", &query]));
            csv.lines().nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{name}: {csv}"))
        };
        assert_eq!(count("helpful_votes >= 1"), helpful, "{name}");
        assert_eq!(count("helpful_votes + 0 >= 1"), helpful, "{name}");
        assert_eq!(count("star_rating = 5 AND 2 > total_votes"), count("star_rating + 0 = 5 AND total_votes + 0 < 2"));

        // Every malformed row is in the quarantine file, under its line and reason.
        let kept = fs::read_to_string(&quarantine).unwrap();
        assert_eq!(kept.lines().count() as u64, synth["malformed"].as_u64().unwrap(), "{name}");
        assert_eq!(report["quarantine"]["rows"], synth["malformed"], "{name}");
        if name.ends_with(".tsv") || name.ends_with(".jsonl") {
            let source = fs::read_to_string(&out).unwrap();
            let lines: Vec<&str> = source.lines().collect();
            for entry in kept.lines() {
                let entry: Value = serde_json::from_str(entry).unwrap();
                assert_eq!(entry["object"], out.to_str().unwrap());
                let line = entry["line"].as_u64().unwrap() as usize;
                assert_eq!(entry["raw"].as_str().unwrap(), lines[line - 1], "{name} line {line}");
            }
        }
    }
}

#[test]
fn sql_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump.tsv.gz");
    let synth: Value = serde_json::from_str(&run_ok(
        revgen(
            dir.path(),
            &["synth", "--rows", "2000", "--malformed-rate", "0.01", "--categories", "Books,Toys", "--out"],
        )
        .arg(&out),
    ))
    .unwrap();
    let input = out.to_str().unwrap();

    // Ad-hoc SQL over the same table; counts go to stderr so the CSV stays clean.
    let query = "SELECT star_rating, count(*) AS n FROM reviews GROUP BY star_rating ORDER BY star_rating";
    let output = revgen(dir.path(), &["sql", "--input", input, "--format", "csv", query]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let csv = String::from_utf8(output.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("star_rating,n"));
    for (rating, line) in (1..=5).zip(lines) {
        assert_eq!(line, format!("{rating},{}", synth["reviews_per_rating"][rating.to_string()]));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("malformed {}", synth["malformed"])), "{stderr}");

    // A LIMIT stops the scan early and still answers.
    let limited =
        run_ok(&mut revgen(dir.path(), &["sql", "-i", input, "--format", "json", "SELECT * FROM reviews LIMIT 3"]));
    let rows: Value = serde_json::from_str(&limited).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    // The 15 columns of the dump, and where each row is: object 0 (the top bits), a line after the header.
    assert_eq!(rows[0].as_object().unwrap().len(), 16);
    let position = rows[0]["row_position"].as_u64().unwrap();
    assert!((2..1 << 40).contains(&position), "{position}");

    // --by product_category: the groups add up to the whole.
    let by = stats_json(dir.path(), &["--input", input, "--by", "product_category", "--min-helpful", "2"]);
    let mut per_rating = [0u64; 5];
    for row in by["stats"].as_array().unwrap().iter().filter(|r| r["subset"] == "all") {
        assert!(["Books", "Toys"].contains(&row["product_category"].as_str().unwrap()), "{row}");
        per_rating[row["star_rating"].as_u64().unwrap() as usize - 1] += row["reviews"].as_u64().unwrap();
    }
    let expected: Vec<u64> = (1..=5).map(|r| synth["reviews_per_rating"][r.to_string()].as_u64().unwrap()).collect();
    assert_eq!(per_rating.to_vec(), expected);
    assert_eq!(by["min_helpful"], 2);

    // A custom query file, and a chart.
    let sql = dir.path().join("count.sql");
    fs::write(
        &sql,
        "SELECT 'all' AS subset, star_rating, count(*) AS reviews FROM reviews GROUP BY star_rating ORDER BY 2",
    )
    .unwrap();
    let custom =
        run_ok(&mut revgen(dir.path(), &["stats", "-i", input, "--sql", sql.to_str().unwrap(), "--format", "csv"]));
    assert!(custom.starts_with("subset,star_rating,reviews\n"), "{custom}");
    let chart = dir.path().join("charts/lengths.svg");
    run_ok(&mut revgen(dir.path(), &["stats", "-i", input, "--chart", chart.to_str().unwrap()]));
    let svg = fs::read_to_string(&chart).unwrap();
    assert!(svg.contains("<svg") && svg.contains("helpful"), "{svg}");
}

#[test]
fn unreadable_inputs_fail_naming_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.tsv.gz");
    let out = run_err(&mut revgen(dir.path(), &["stats", "--input", missing.to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope.tsv.gz"), "{stderr}");

    // A gzip stream cut off halfway.
    let dump = dir.path().join("dump.tsv.gz");
    run_ok(revgen(dir.path(), &["synth", "--rows", "3000", "--out"]).arg(&dump));
    let mut bytes = Vec::new();
    fs::File::open(&dump).unwrap().read_to_end(&mut bytes).unwrap();
    let corrupt = dir.path().join("corrupt.tsv.gz");
    fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let out = run_err(&mut revgen(dir.path(), &["stats", "--input", corrupt.to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt.tsv.gz"), "{stderr}");

    // Not the AWS header.
    let headerless = dir.path().join("headerless.tsv");
    fs::write(&headerless, "a\tb\n").unwrap();
    let out = run_err(&mut revgen(dir.path(), &["stats", "--input", headerless.to_str().unwrap()]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("headerless.tsv") && stderr.contains("header"), "{stderr}");

    // A quarantine file only appears for a job that finished.
    let quarantine = dir.path().join("q.jsonl");
    run_err(&mut revgen(
        dir.path(),
        &["stats", "-i", corrupt.to_str().unwrap(), "--quarantine", quarantine.to_str().unwrap()],
    ));
    assert!(!quarantine.exists());
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The same stats through a real S3-compatible server (moto_server on loopback, started by scripts/test.sh; its
/// address is in REVGEN_TEST_S3_ENDPOINT) equal the local result.
#[test]
fn s3_equals_local() {
    let endpoint = std::env::var("REVGEN_TEST_S3_ENDPOINT")
        .expect("REVGEN_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts moto_server");
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("revgen-stats-{}", std::process::id());
    let agent = ureq::Agent::new_with_defaults();
    agent.put(&format!("{endpoint}/{bucket}")).send_empty().expect("create bucket");
    let mut local = Vec::new();
    for (i, malformed) in ["0.0", "0.01"].iter().enumerate() {
        let path = dir.path().join(format!("amazon_reviews_us_Part{i}_v1_00.tsv.gz"));
        run_ok(
            revgen(
                dir.path(),
                &["synth", "--rows", "1500", "--seed", &i.to_string(), "--malformed-rate", malformed, "--out"],
            )
            .arg(&path),
        );
        let key = format!("dump/{}", path.file_name().unwrap().to_str().unwrap());
        agent.put(&format!("{endpoint}/{bucket}/{key}")).send(&fs::read(&path).unwrap()).expect("upload");
        local.push(path.to_str().unwrap().to_owned());
    }
    let local_csv = run_ok(&mut revgen(dir.path(), &["stats", "--format", "csv", "-i", &local.join(",")]));
    let s3_input = format!("s3://{bucket}/dump/");
    let s3_csv =
        run_ok(&mut revgen(dir.path(), &["stats", "--format", "csv", "-i", &s3_input, "--endpoint", &endpoint]));
    assert_eq!(s3_csv, local_csv);
    let s3_json = stats_json(dir.path(), &["-i", &s3_input, "--endpoint", &endpoint]);
    let local_json = stats_json(dir.path(), &["-i", &local.join(",")]);
    assert_eq!(s3_json["counts"], local_json["counts"]);
    assert_eq!(s3_json["inputs"].as_array().unwrap().len(), 2);
    assert!(s3_json["inputs"][0]["url"].as_str().unwrap().starts_with(&format!("s3://{bucket}/dump/")));

    // A glob, and a missing object, named in the error.
    let globbed = run_ok(&mut revgen(
        dir.path(),
        &["stats", "--format", "csv", "-i", &format!("s3://{bucket}/dump/*Part1*"), "--endpoint", &endpoint],
    ));
    assert_ne!(globbed, s3_csv);
    let missing = format!("s3://{bucket}/dump/nope.tsv.gz");
    let out = run_err(&mut revgen(dir.path(), &["stats", "-i", &missing, "--endpoint", &endpoint]));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing), "{}", String::from_utf8_lossy(&out.stderr));
}
