//! `revgen synth`, read back by parsers written here, independently of the generator.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use crate::support::{revgen, run_err, run_ok, shared_data};

const HEADER: &str = "marketplace\tcustomer_id\treview_id\tproduct_id\tproduct_parent\tproduct_title\t\
                      product_category\tstar_rating\thelpful_votes\ttotal_votes\tvine\tverified_purchase\t\
                      review_headline\treview_body\treview_date";

/// The Electronics star mix and the original project's tables (issue 2).
const STARS: [f64; 5] = [358_119.0, 179_180.0, 238_587.0, 536_819.0, 1_781_156.0];
const HELPFUL_SHARE: f64 = 0.324;
const MEAN_ALL: [f64; 5] = [367.0, 474.0, 476.0, 469.0, 325.0];
const MEAN_HELPFUL: [f64; 5] = [499.0, 690.0, 763.0, 818.0, 612.0];

/// What a plain split-on-tab reader finds in a TSV dump.
#[derive(Default, Debug)]
struct TsvStats {
    rows: u64,
    malformed: u64,
    per_rating: [u64; 5],
    helpful_per_rating: [u64; 5],
    chars: [u64; 5],
    helpful_chars: [u64; 5],
    /// Rows showing each quirk of the real dump.
    quirks: BTreeMap<&'static str, u64>,
}

fn read_tsv(path: &Path) -> TsvStats {
    let file = File::open(path).unwrap();
    let reader: Box<dyn Read> =
        if path.to_string_lossy().ends_with(".gz") { Box::new(MultiGzDecoder::new(file)) } else { Box::new(file) };
    let mut lines = BufReader::new(reader).lines();
    assert_eq!(lines.next().unwrap().unwrap(), HEADER);
    let mut stats = TsvStats::default();
    for line in lines {
        let line = line.unwrap();
        stats.rows += 1;
        let fields: Vec<&str> = line.split('\t').collect();
        let parsed = (fields.len() == 15)
            .then(|| {
                Some((fields[7].parse::<i64>().ok()?, fields[8].parse::<u64>().ok()?, fields[9].parse::<u64>().ok()?))
            })
            .flatten();
        let Some((rating @ 1..=5, helpful, total)) = parsed else {
            stats.malformed += 1;
            continue;
        };
        assert!(helpful <= total, "helpful_votes > total_votes: {line}");
        let i = rating as usize - 1;
        let (headline, body) = (fields[12], fields[13]);
        let chars = body.chars().count() as u64;
        stats.per_rating[i] += 1;
        stats.chars[i] += chars;
        if helpful >= 1 {
            stats.helpful_per_rating[i] += 1;
            stats.helpful_chars[i] += chars;
        }
        for (quirk, seen) in [
            ("<br />", body.contains("<br />")),
            ("&#34;", body.contains("&#34;")),
            ("quote", body.contains('"') || headline.contains('"')),
            ("leading quote", body.starts_with('"') || headline.starts_with('"')),
            ("backslash", body.contains('\\')),
            ("multibyte", !body.is_ascii()),
            ("empty headline", headline.is_empty()),
        ] {
            *stats.quirks.entry(quirk).or_default() += u64::from(seen);
        }
    }
    stats
}

fn synth(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["synth"];
    all.extend_from_slice(args);
    serde_json::from_str(&run_ok(&mut revgen(dir, &all))).expect("synth prints a JSON summary")
}

fn within(actual: f64, target: f64, tolerance: f64, what: &str) {
    let err = (actual - target).abs() / target;
    assert!(err <= tolerance, "{what}: {actual:.4} vs target {target:.4} ({:.2}% off)", 100.0 * err);
}

#[test]
fn tsv_gz_dump_matches_the_published_figures() {
    let dir = tempfile::tempdir().unwrap();
    let summary =
        synth(dir.path(), &["--rows", "100000", "--seed", "1", "--malformed-rate", "0.01", "--out", "x.tsv.gz"]);
    let stats = read_tsv(&dir.path().join("x.tsv.gz"));

    assert_eq!(stats.rows, 100_000);
    assert_eq!(summary["rows"], 100_000);
    assert_eq!(stats.malformed, summary["malformed"].as_u64().unwrap(), "malformed count differs from the summary");
    within(stats.malformed as f64, 1000.0, 0.2, "malformed rows");
    let by_reason: u64 =
        summary["malformed_by_reason"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(by_reason, stats.malformed);

    let valid = (stats.rows - stats.malformed) as f64;
    let star_total: f64 = STARS.iter().sum();
    for i in 0..5 {
        let rating = i + 1;
        within(stats.per_rating[i] as f64 / valid, STARS[i] / star_total, 0.01, &format!("share of {rating} stars"));
        within(stats.chars[i] as f64 / stats.per_rating[i] as f64, MEAN_ALL[i], 0.05, &format!("mean chars {rating}"));
        let helpful_mean = stats.helpful_chars[i] as f64 / stats.helpful_per_rating[i] as f64;
        within(helpful_mean, MEAN_HELPFUL[i], 0.05, &format!("helpful mean chars {rating}"));
        assert_eq!(summary["reviews_per_rating"][rating.to_string()], stats.per_rating[i]);
    }
    let helpful: u64 = stats.helpful_per_rating.iter().sum();
    within(helpful as f64 / valid, HELPFUL_SHARE, 0.01, "helpful share");
    assert_eq!(summary["helpful"], helpful);

    // Every quirk of the real dump is present, at a believable rate.
    for (quirk, &count) in &stats.quirks {
        let share = count as f64 / valid;
        assert!((0.0005..0.2).contains(&share), "{quirk}: {count} rows ({:.3}%)", 100.0 * share);
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for (out, seed) in [("a.tsv", "7"), ("b.tsv", "7"), ("c.tsv", "8")] {
        synth(dir.path(), &["--rows", "2000", "--seed", seed, "--malformed-rate", "0.05", "--out", out]);
    }
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("a.tsv"), read("b.tsv"));
    assert_ne!(read("a.tsv"), read("c.tsv"));
    // Nothing but the outputs: no temporary files left behind.
    let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["a.tsv", "b.tsv", "c.tsv"]);
}

#[test]
fn jsonl_layouts_carry_their_keys_and_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (layout, rating_key, votes_key) in
        [("2014", "overall", "helpful"), ("2018", "overall", "vote"), ("2023", "rating", "helpful_vote")]
    {
        let out = format!("r{layout}.jsonl");
        let summary = synth(
            dir.path(),
            &["--rows", "3000", "--seed", "2", "--malformed-rate", "0.05", "--json-layout", layout, "--out", &out],
        );
        assert_eq!(summary["json_layout"], layout);
        let (mut valid, mut malformed, mut with_votes) = (0u64, 0u64, 0u64);
        for line in BufReader::new(File::open(dir.path().join(&out)).unwrap()).lines() {
            let Ok(row) = serde_json::from_str::<Value>(&line.unwrap()) else {
                malformed += 1;
                continue;
            };
            let rating = row[rating_key].as_f64();
            // 2018 stores votes as strings like "1,234", and omits the key when there are none.
            let votes_ok = match &row[votes_key] {
                Value::Null => layout == "2018",
                Value::String(s) => layout == "2018" && s.replace(',', "").parse::<u64>().is_ok(),
                Value::Array(pair) => pair.iter().all(Value::is_u64),
                other => other.is_u64(),
            };
            if !votes_ok || !matches!(rating, Some(r) if (1.0..=5.0).contains(&r)) {
                malformed += 1;
                continue;
            }
            valid += 1;
            with_votes += u64::from(!row[votes_key].is_null());
        }
        assert_eq!(valid + malformed, 3000, "{layout}");
        assert_eq!(malformed, summary["malformed"].as_u64().unwrap(), "{layout}");
        assert!(with_votes > 0, "{layout}");
    }
}

#[test]
fn parquet_dump_is_typed_and_complete() {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = tempfile::tempdir().unwrap();
    let summary =
        synth(dir.path(), &["--rows", "20000", "--seed", "4", "--malformed-rate", "0.01", "--out", "d.parquet"]);
    let reader = SerializedFileReader::new(File::open(dir.path().join("d.parquet")).unwrap()).unwrap();
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows(), 20_000);
    let schema = meta.file_metadata().schema_descr();
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names.join("\t"), HEADER);
    // A typed file cannot hold a wrong field count.
    assert!(summary["malformed_by_reason"].get("field_count").is_none(), "{summary}");
    assert!(summary["malformed"].as_u64().unwrap() > 100);
}

#[test]
fn bad_settings_name_the_flag_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["synth", "--out", "x.csv"], "x.csv"),
        (&["synth", "--out", "x.tsv", "--malformed-rate", "1.5"], "--malformed-rate"),
        (&["synth", "--out", "/proc/no/such/dir/x.tsv"], "/proc/no/such/dir"),
    ];
    for (args, named) in cases {
        let out = run_err(&mut revgen(dir.path(), args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}

#[test]
fn header_and_field_shapes_match_the_real_dump() {
    let real = shared_data("amazon-us-reviews-tsv/amazon_reviews_us_Electronics_v1_00.head10000.tsv");
    let real_lines: Vec<String> =
        BufReader::new(File::open(real).unwrap()).lines().take(200).map(Result::unwrap).collect();
    assert_eq!(real_lines[0], HEADER, "the real dump's header changed?");

    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), &["--rows", "200", "--seed", "5", "--out", "s.tsv"]);
    let synth_text = std::fs::read_to_string(dir.path().join("s.tsv")).unwrap();
    let synth_lines: Vec<&str> = synth_text.lines().collect();
    assert_eq!(synth_lines[0], real_lines[0]);
    // Each column has the real dump's shape: same marketplace, id prefixes and lengths, flag values, date form.
    let shape = |line: &str| -> Vec<String> {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 15, "{line}");
        vec![
            f[0].to_owned(),
            f[1].chars().all(|c| c.is_ascii_digit()).to_string(),
            format!("{}{}", &f[2][..1], f[2].len()),
            format!("{}{}", &f[3][..1], f[3].len()),
            f[4].chars().all(|c| c.is_ascii_digit()).to_string(),
            ["Y", "N"].contains(&f[10]).to_string(),
            ["Y", "N"].contains(&f[11]).to_string(),
            (f[14].len() == 10 && f[14].as_bytes()[4] == b'-' && f[14].as_bytes()[7] == b'-').to_string(),
        ]
    };
    let real_shapes: std::collections::BTreeSet<_> = real_lines[1..].iter().map(|l| shape(l)).collect();
    for line in &synth_lines[1..] {
        assert!(real_shapes.contains(&shape(line)), "unlike any real row: {:?}", shape(line));
    }
}
