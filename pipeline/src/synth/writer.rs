//! Rendering synthetic rows in the dump's formats, and writing the file atomically.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Date32Builder, Int32Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use serde::Serialize;
use serde_json::{Value, json};

use super::{Review, Row};
use crate::dump::{COLUMNS, Format, JsonLayout, Malformed, civil_from_days, iso_date};
use crate::{Error, Result};

/// Writes `rows` to a temporary file beside `out`, then renames it into place, so a killed run never leaves a
/// file that looks complete. Returns the file's size in bytes.
pub fn write_atomically(
    out: &Path,
    format: Format,
    layout: JsonLayout,
    rows: impl Iterator<Item = Row>,
) -> Result<u64> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let tmp = temp_path(out);
    let written = write_to(&tmp, format, layout, rows).and_then(|()| {
        fs::rename(&tmp, out).map_err(Error::io(out))?;
        Ok(fs::metadata(out).map_err(Error::io(out))?.len())
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn temp_path(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_to(tmp: &Path, format: Format, layout: JsonLayout, rows: impl Iterator<Item = Row>) -> Result<()> {
    let file = File::create(tmp).map_err(Error::io(tmp))?;
    match format {
        Format::Tsv => write_lines(tmp, BufWriter::new(file), Some(&TSV_HEADER), rows, tsv_line),
        Format::TsvGz => {
            let gz = GzEncoder::new(BufWriter::new(file), GzLevel::new(6));
            write_lines(tmp, gz, Some(&TSV_HEADER), rows, tsv_line)
        }
        Format::JsonLines => {
            write_lines(tmp, BufWriter::new(file), None, rows, |row, line| json_line(row, layout, line))
        }
        Format::Parquet => write_parquet(tmp, file, rows),
    }
}

/// The sinks of line formats; `finish` flushes everything down to the file and syncs it.
trait LineSink: Write {
    fn finish(self) -> std::io::Result<File>;
}

impl LineSink for BufWriter<File> {
    fn finish(self) -> std::io::Result<File> {
        self.into_inner().map_err(|e| e.into_error())
    }
}

impl LineSink for GzEncoder<BufWriter<File>> {
    fn finish(self) -> std::io::Result<File> {
        self.finish()?.finish()
    }
}

fn write_lines<W: LineSink>(
    path: &Path,
    mut sink: W,
    header: Option<&str>,
    rows: impl Iterator<Item = Row>,
    render: impl Fn(&Row, &mut String),
) -> Result<()> {
    let io = || Error::io(path);
    if let Some(header) = header {
        sink.write_all(header.as_bytes()).map_err(io())?;
        sink.write_all(b"\n").map_err(io())?;
    }
    let mut line = String::new();
    for row in rows {
        line.clear();
        render(&row, &mut line);
        line.push('\n');
        sink.write_all(line.as_bytes()).map_err(io())?;
    }
    sink.finish().map_err(io())?.sync_all().map_err(io())
}

/// One line of the AWS TSV: 15 fields, tab-separated, no quoting.
fn tsv_line(row: &Row, line: &mut String) {
    let r = &row.review;
    let mut fields: Vec<String> = vec![
        "US".to_owned(),
        r.customer_id.to_string(),
        r.review_id.clone(),
        r.product_id.clone(),
        r.product_parent.to_string(),
        r.product_title.clone(),
        r.product_category.clone(),
        r.star_rating.to_string(),
        r.helpful_votes.to_string(),
        r.total_votes.to_string(),
        yes_no(r.vine).to_owned(),
        yes_no(r.verified_purchase).to_owned(),
        r.review_headline.clone(),
        r.review_body.clone(),
        iso_date(r.review_date),
    ];
    debug_assert_eq!(fields.len(), COLUMNS.len());
    match row.malformed {
        None => {}
        // Half lose the last field, half have a stray tab in the body: 14 or 16 fields.
        Some(Malformed::FieldCount) if row.variant.is_multiple_of(2) => {
            fields.pop();
        }
        Some(Malformed::FieldCount) => fields[13] = fields[13].replacen(' ', "\t", 1) + "\tstray",
        Some(Malformed::StarRatingNotNumeric) => fields[7] = pick(row, &["five", "N/A", "4 stars", "★★★"]).to_owned(),
        Some(Malformed::VotesNotNumeric) => {
            let column = 8 + spoiled_vote_column(row);
            fields[column] = pick(row, &["one", "1,024", "NaN", "-"]).to_owned();
        }
        Some(Malformed::StarRatingOutOfRange) => fields[7] = out_of_range_rating(row).to_string(),
        Some(Malformed::InvalidUtf8) => unreachable!("synth plants only Malformed::PLANTED"),
    }
    line.push_str(&fields.join("\t"));
}

/// Header line of the TSV formats.
static TSV_HEADER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| COLUMNS.join("\t"));

/// The star rating a row spoiled with `StarRatingOutOfRange` carries, the same in every format.
fn out_of_range_rating(row: &Row) -> i32 {
    [0, 6, -1, 10][row.variant as usize % 4]
}

/// Which vote count a row spoiled with `VotesNotNumeric` loses: 0 for helpful_votes, 1 for total_votes.
fn spoiled_vote_column(row: &Row) -> usize {
    (row.variant as usize / 7) % 2
}

fn pick<'a>(row: &Row, choices: &[&'a str]) -> &'a str {
    choices[row.variant as usize % choices.len()]
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "Y" } else { "N" }
}

/// One JSON line in a McAuley layout. Malformed rows carry a non-numeric or out-of-range value where the layout
/// has a number, or are cut off halfway (the JSON counterpart of a wrong field count).
fn json_line(row: &Row, layout: JsonLayout, line: &mut String) {
    let r = &row.review;
    let mut rating = json!(r.star_rating as f64);
    let mut votes = json!(r.helpful_votes);
    match row.malformed {
        Some(Malformed::StarRatingNotNumeric) => rating = json!(pick(row, &["five", "N/A", "4 stars"])),
        Some(Malformed::StarRatingOutOfRange) => rating = json!(f64::from(out_of_range_rating(row))),
        Some(Malformed::VotesNotNumeric) => votes = json!(pick(row, &["one", "lots", "NaN"])),
        _ => {}
    }
    let reviewer_id = format!("A{:013X}", r.customer_id.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 12);
    let unix = i64::from(r.review_date) * 86_400 + i64::from(r.second_of_day);
    let value = match layout {
        JsonLayout::Y2014 => {
            let total = if row.malformed == Some(Malformed::VotesNotNumeric) { json!(1) } else { json!(r.total_votes) };
            serde_json::to_value(Y2014 {
                reviewer_id,
                asin: &r.product_id,
                reviewer_name: reviewer_name(r),
                helpful: [votes, total],
                review_text: &r.review_body,
                overall: rating,
                summary: &r.review_headline,
                unix_review_time: unix,
                review_time: us_date(r.review_date),
            })
        }
        JsonLayout::Y2018 => {
            // 2018 stores votes as a string ("1,234" above a thousand) and leaves the key out when there are none.
            let vote = match votes {
                Value::Number(_) if r.helpful_votes == 0 => None,
                Value::Number(_) => Some(Value::String(thousands(r.helpful_votes))),
                other => Some(other),
            };
            serde_json::to_value(Y2018 {
                overall: rating,
                verified: r.verified_purchase,
                review_time: us_date(r.review_date),
                reviewer_id,
                asin: &r.product_id,
                style: json!({ "Color:": " Black" }),
                reviewer_name: reviewer_name(r),
                review_text: &r.review_body,
                summary: &r.review_headline,
                unix_review_time: unix,
                vote,
            })
        }
        JsonLayout::Y2023 => serde_json::to_value(Y2023 {
            rating,
            title: &r.review_headline,
            text: &r.review_body,
            images: Vec::new(),
            asin: &r.product_id,
            parent_asin: format!("B{:09}", r.product_parent % 1_000_000_000),
            user_id: reviewer_id,
            timestamp: unix * 1000,
            helpful_vote: votes,
            verified_purchase: r.verified_purchase,
        }),
    };
    let text = value.map(|v| v.to_string()).unwrap_or_default();
    if row.malformed == Some(Malformed::FieldCount) {
        let half = text.char_indices().nth(text.chars().count() / 2).map_or(0, |(i, _)| i);
        line.push_str(&text[..half]);
    } else {
        line.push_str(&text);
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Y2014<'a> {
    #[serde(rename = "reviewerID")]
    reviewer_id: String,
    asin: &'a str,
    reviewer_name: &'static str,
    helpful: [Value; 2],
    review_text: &'a str,
    overall: Value,
    summary: &'a str,
    unix_review_time: i64,
    review_time: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Y2018<'a> {
    overall: Value,
    verified: bool,
    review_time: String,
    #[serde(rename = "reviewerID")]
    reviewer_id: String,
    asin: &'a str,
    style: Value,
    reviewer_name: &'static str,
    review_text: &'a str,
    summary: &'a str,
    unix_review_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    vote: Option<Value>,
}

#[derive(Serialize)]
struct Y2023<'a> {
    rating: Value,
    title: &'a str,
    text: &'a str,
    images: Vec<Value>,
    asin: &'a str,
    parent_asin: String,
    user_id: String,
    timestamp: i64,
    helpful_vote: Value,
    verified_purchase: bool,
}

fn reviewer_name(r: &Review) -> &'static str {
    const NAMES: &[&str] = &["Amazon Customer", "John D.", "Zoë", "José García", "K. Smith", "Mike", "Sarah L."];
    NAMES[(r.customer_id % NAMES.len() as u64) as usize]
}

fn thousands(n: u32) -> String {
    if n < 1000 { n.to_string() } else { format!("{},{:03}", n / 1000, n % 1000) }
}

/// Typed Parquet, like the AWS Parquet dump: integers for ratings and votes, a date for review_date. Non-numeric
/// values become nulls there, the typed form of the TSV's spoiled fields.
fn write_parquet(path: &Path, file: File, rows: impl Iterator<Item = Row>) -> Result<()> {
    const BATCH_ROWS: usize = 8192;
    let parquet_err = |source| Error::Parquet { path: path.to_owned(), source };
    let schema = parquet_schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(parquet_err)?;
    let mut batch = ParquetBatch::default();
    for row in rows {
        batch.push(&row);
        if batch.len == BATCH_ROWS {
            writer.write(&batch.finish(path, &schema)?).map_err(parquet_err)?;
        }
    }
    if batch.len > 0 {
        writer.write(&batch.finish(path, &schema)?).map_err(parquet_err)?;
    }
    let file = writer.into_inner().map_err(parquet_err)?;
    file.sync_all().map_err(Error::io(path))
}

fn parquet_schema() -> SchemaRef {
    let fields = COLUMNS.iter().map(|&name| {
        let data_type = match name {
            "star_rating" | "helpful_votes" | "total_votes" => DataType::Int32,
            "review_date" => DataType::Date32,
            _ => DataType::Utf8,
        };
        Field::new(name, data_type, true)
    });
    Arc::new(Schema::new(fields.collect::<Vec<_>>()))
}

#[derive(Default)]
struct ParquetBatch {
    len: usize,
    strings: [StringBuilder; 11],
    ints: [Int32Builder; 3],
    date: Date32Builder,
}

impl ParquetBatch {
    fn push(&mut self, row: &Row) {
        let r = &row.review;
        let texts = [
            "US",
            &r.customer_id.to_string(),
            &r.review_id,
            &r.product_id,
            &r.product_parent.to_string(),
            &r.product_title,
            &r.product_category,
            yes_no(r.vine),
            yes_no(r.verified_purchase),
            &r.review_headline,
            &r.review_body,
        ];
        for (builder, text) in self.strings.iter_mut().zip(texts) {
            builder.append_value(text);
        }
        let mut ints = [Some(i32::from(r.star_rating)), Some(r.helpful_votes as i32), Some(r.total_votes as i32)];
        match row.malformed {
            Some(Malformed::StarRatingNotNumeric) => ints[0] = None,
            Some(Malformed::StarRatingOutOfRange) => ints[0] = Some(out_of_range_rating(row)),
            Some(Malformed::VotesNotNumeric) => ints[1 + spoiled_vote_column(row)] = None,
            Some(Malformed::FieldCount) | None => {}
            Some(Malformed::InvalidUtf8) => unreachable!("synth plants only Malformed::PLANTED"),
        }
        for (builder, value) in self.ints.iter_mut().zip(ints) {
            builder.append_option(value);
        }
        self.date.append_value(r.review_date);
        self.len += 1;
    }

    fn finish(&mut self, path: &Path, schema: &SchemaRef) -> Result<RecordBatch> {
        let [marketplace, customer, review, product, parent, title, category, vine, verified, headline, body] =
            &mut self.strings;
        let [rating, helpful, total] = &mut self.ints;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(marketplace.finish()),
            Arc::new(customer.finish()),
            Arc::new(review.finish()),
            Arc::new(product.finish()),
            Arc::new(parent.finish()),
            Arc::new(title.finish()),
            Arc::new(category.finish()),
            Arc::new(rating.finish()),
            Arc::new(helpful.finish()),
            Arc::new(total.finish()),
            Arc::new(vine.finish()),
            Arc::new(verified.finish()),
            Arc::new(headline.finish()),
            Arc::new(body.finish()),
            Arc::new(self.date.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(|source| Error::Arrow { path: path.to_owned(), source })
    }
}

/// `MM DD, YYYY`, the McAuley `reviewTime` format.
fn us_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{m:02} {d:02}, {y}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(16_678), "2015-08-31");
        assert_eq!(iso_date(11_016), "2000-02-29");
        assert_eq!(us_date(16_678), "08 31, 2015");
    }

    #[test]
    fn vote_strings() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1234), "1,234");
    }
}
