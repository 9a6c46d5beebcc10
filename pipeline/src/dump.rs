//! The Amazon Customer Reviews dump: its canonical columns and the file formats it comes in.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The 15 columns, in order, of the AWS `amazon_reviews_us_*.tsv` files. Every reader maps its format onto these.
pub const COLUMNS: [&str; 15] = [
    "marketplace",
    "customer_id",
    "review_id",
    "product_id",
    "product_parent",
    "product_title",
    "product_category",
    "star_rating",
    "helpful_votes",
    "total_votes",
    "vine",
    "verified_purchase",
    "review_headline",
    "review_body",
    "review_date",
];

/// Why a row of the dump is malformed. Readers quarantine such rows under these reasons; `synth` plants them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    /// Not 15 tab-separated fields (a TSV line), or not a complete JSON object (a JSON line).
    FieldCount,
    /// star_rating is not an integer.
    StarRatingNotNumeric,
    /// helpful_votes or total_votes is not a non-negative integer.
    VotesNotNumeric,
    /// star_rating is an integer outside 1..=5.
    StarRatingOutOfRange,
    /// The line is not valid UTF-8 (the dump is UTF-8 throughout).
    InvalidUtf8,
}

impl Malformed {
    /// Every reason, in the order reports list them.
    pub const ALL: [Malformed; 5] = [
        Malformed::FieldCount,
        Malformed::StarRatingNotNumeric,
        Malformed::VotesNotNumeric,
        Malformed::StarRatingOutOfRange,
        Malformed::InvalidUtf8,
    ];
    /// The reasons `synth` plants in its dumps (it never writes invalid UTF-8).
    pub const PLANTED: [Malformed; 4] = [
        Malformed::FieldCount,
        Malformed::StarRatingNotNumeric,
        Malformed::VotesNotNumeric,
        Malformed::StarRatingOutOfRange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::FieldCount => "field_count",
            Malformed::StarRatingNotNumeric => "star_rating_not_numeric",
            Malformed::VotesNotNumeric => "votes_not_numeric",
            Malformed::StarRatingOutOfRange => "star_rating_out_of_range",
            Malformed::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// A file format of the dump, told from the file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Tab-separated with a header and no quoting or escaping at all.
    Tsv,
    /// The same, gzipped: how AWS published the dump.
    TsvGz,
    /// Parquet with typed columns (ratings and votes as integers, review_date as a date).
    Parquet,
    /// JSON lines in one of the McAuley layouts.
    JsonLines,
}

impl Format {
    pub fn from_path(path: &Path) -> Result<Self> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_ascii_lowercase();
        let format = if name.ends_with(".tsv.gz") {
            Format::TsvGz
        } else if name.ends_with(".tsv") {
            Format::Tsv
        } else if name.ends_with(".parquet") {
            Format::Parquet
        } else if name.ends_with(".jsonl") || name.ends_with(".json") {
            Format::JsonLines
        } else {
            return Err(Error::UnknownFormat { path: path.to_owned() });
        };
        Ok(format)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Tsv => "tsv",
            Format::TsvGz => "tsv.gz",
            Format::Parquet => "parquet",
            Format::JsonLines => "jsonl",
        })
    }
}

/// The three JSON-lines layouts of Julian McAuley's Amazon review collections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum JsonLayout {
    /// 2014: `overall`, `reviewText`, `summary`, `helpful: [helpful, total]`.
    #[serde(rename = "2014")]
    Y2014,
    /// 2018: `overall`, `vote` (a string, absent when zero), `verified`, `style`.
    #[serde(rename = "2018")]
    Y2018,
    /// 2023: `rating`, `title`, `text`, `helpful_vote`.
    #[default]
    #[serde(rename = "2023")]
    Y2023,
}

impl std::str::FromStr for JsonLayout {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "2014" => Ok(JsonLayout::Y2014),
            "2018" => Ok(JsonLayout::Y2018),
            "2023" => Ok(JsonLayout::Y2023),
            other => Err(Error::InvalidSetting {
                name: "json layout",
                reason: format!("{other:?} is not one of 2014, 2018, 2023"),
            }),
        }
    }
}

/// `YYYY-MM-DD` for days since 1970-01-01.
pub fn iso_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Proleptic Gregorian date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_name() {
        assert_eq!(Format::from_path(Path::new("a/amazon_reviews_us_X.tsv.gz")).unwrap(), Format::TsvGz);
        assert_eq!(Format::from_path(Path::new("x.TSV")).unwrap(), Format::Tsv);
        assert_eq!(Format::from_path(Path::new("x.parquet")).unwrap(), Format::Parquet);
        assert_eq!(Format::from_path(Path::new("x.json")).unwrap(), Format::JsonLines);
        let err = Format::from_path(Path::new("dir/x.csv")).unwrap_err().to_string();
        assert!(err.contains("dir/x.csv"), "{err}");
    }
}
