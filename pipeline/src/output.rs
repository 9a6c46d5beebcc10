//! Showing query results: a readable table (the default), Markdown, CSV or JSON.
//!
//! Table and Markdown round floats to two decimals for reading; CSV and JSON keep full precision for machines.
//! CSV holds the query's rows only, with its column names as the header, so that it loads as is.

use std::fmt::Write as _;
use std::str::FromStr;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value, json};

use crate::dump::Malformed;
use crate::prepare::PrepareReport;
use crate::quarantine::RowCounts;
use crate::stats::StatsReport;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Table,
    Markdown,
    Csv,
    Json,
}

impl FromStr for OutputFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "markdown" | "md" => Ok(OutputFormat::Markdown),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(Error::InvalidSetting {
                name: "--format",
                reason: format!("{other:?} is not one of table, markdown, csv, json"),
            }),
        }
    }
}

/// Query results in a format.
pub fn render_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String> {
    Ok(match format {
        OutputFormat::Table => grid(batches, false),
        OutputFormat::Markdown => grid(batches, true),
        OutputFormat::Csv => csv(batches)?,
        OutputFormat::Json => {
            serde_json::to_string_pretty(&Value::Array(json_rows(batches)?)).expect("JSON values") + "\n"
        }
    })
}

/// The stats report in a format: the table plus the counts behind it (CSV: the table only).
pub fn render_stats(report: &StatsReport, format: OutputFormat) -> Result<String> {
    let mut out = String::new();
    match format {
        OutputFormat::Csv => return csv(&report.batches),
        OutputFormat::Json => {
            let value = json!({
                "inputs": report.inputs,
                "counts": report.counts,
                "counts_per_input": report.counts_per_input,
                "min_helpful": report.min_helpful,
                "by": report.by,
                "stats": json_rows(&report.batches)?,
                "quarantine": report.quarantine.as_ref().map(|(path, rows)| json!({"path": path, "rows": rows})),
                "elapsed_s": report.elapsed_s,
            });
            return Ok(serde_json::to_string_pretty(&value).expect("JSON values") + "\n");
        }
        OutputFormat::Table | OutputFormat::Markdown => {}
    }
    let markdown = format == OutputFormat::Markdown;
    let bullet = if markdown { "- " } else { "" };
    let bytes: u64 = report.inputs.iter().map(|i| i.bytes).sum();
    let objects = report.inputs.len();
    let _ = writeln!(
        out,
        "{bullet}inputs: {objects} object{}, {}",
        if objects == 1 { "" } else { "s" },
        human_bytes(bytes)
    );
    let _ = writeln!(out, "{bullet}{}", counts_line(&report.counts));
    let _ = writeln!(
        out,
        "{bullet}helpful: helpful_votes >= {}{}",
        report.min_helpful,
        if report.by.is_empty() { String::new() } else { format!("; by {}", report.by.join(", ")) }
    );
    out.push('\n');
    out.push_str(&grid(&report.batches, markdown));
    match &report.quarantine {
        Some((path, rows)) => {
            let _ = writeln!(out, "\n{bullet}quarantine: {} ({rows} rows)", path.display());
        }
        None if report.counts.malformed > 0 => {
            let _ = writeln!(
                out,
                "\n{bullet}{} malformed rows were counted, not kept: pass --quarantine PATH to keep them",
                report.counts.malformed
            );
        }
        None => {}
    }
    let _ = writeln!(out, "{bullet}elapsed: {:.2} s", report.elapsed_s);
    Ok(out)
}

/// The summary `revgen prepare` prints: the balance of counts, the splits and their shards.
pub fn render_prepare(report: &PrepareReport) -> String {
    let (m, c) = (&report.manifest, &report.manifest.counts);
    let mut out = String::new();
    let list = |map: &std::collections::BTreeMap<String, u64>, sep: &str| -> String {
        map.iter().map(|(k, n)| format!("{k}{sep}{}", thousands(*n))).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(out, "prepared {} in {:.2} s", report.output, report.elapsed_s);
    let _ = writeln!(
        out,
        "rows_read {} = malformed {} + filtered {} + kept {}",
        thousands(c.rows_read),
        thousands(c.malformed),
        thousands(c.filtered_total),
        thousands(c.kept)
    );
    if c.malformed > 0 {
        let _ = writeln!(out, "  malformed: {}", list(&c.malformed_by_reason, " "));
    }
    if c.filtered_total > 0 {
        let _ = writeln!(out, "  filtered: {}", list(&c.filtered, " "));
    }
    let _ = writeln!(out, "  kept by star rating: {}", list(&c.kept_by_rating, ": "));
    for split in m.config.splits() {
        for format in ["text", "tokens", "parquet"] {
            let files = m.files(split, format);
            if files.is_empty() {
                continue;
            }
            let bytes: u64 = files.iter().map(|f| f.bytes).sum();
            let tokens: u64 = files.iter().filter_map(|f| f.tokens).sum();
            let rows: u64 = files.iter().map(|f| f.rows).sum();
            let _ = write!(
                out,
                "{split:<5} {format:<7} {} records in {} shards, {}",
                thousands(rows),
                files.len(),
                if bytes >= 1_000_000 {
                    format!("{:.1} MB", bytes as f64 / 1e6)
                } else {
                    format!("{:.1} kB", bytes as f64 / 1e3)
                }
            );
            if format == "tokens" {
                let _ = write!(out, ", {} tokens", thousands(tokens));
            }
            let _ = writeln!(out);
        }
    }
    if let Some(q) = &m.quarantine {
        let _ = writeln!(out, "malformed rows: {} ({} rows)", q.file, thousands(q.rows));
    }
    let _ = writeln!(out, "manifest: {}/manifest.json", report.output.trim_end_matches('/'));
    out
}

/// `rows_read N = valid N + malformed N (reason N, …)`.
pub fn counts_line(counts: &RowCounts) -> String {
    let mut line = format!(
        "rows_read {} = valid {} + malformed {}",
        thousands(counts.rows_read),
        thousands(counts.valid),
        thousands(counts.malformed)
    );
    if counts.malformed > 0 {
        let reasons: Vec<String> = Malformed::ALL
            .iter()
            .filter_map(|r| counts.malformed_by_reason.get(r).map(|n| format!("{} {}", r.as_str(), thousands(*n))))
            .collect();
        let _ = write!(line, " ({})", reasons.join(", "));
    }
    line
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= 1024.0 * MIB {
        format!("{:.2} GiB", bytes as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

/// Every cell as display text; floats to two decimals.
fn cells(batches: &[RecordBatch]) -> (Vec<String>, Vec<bool>, Vec<Vec<String>>) {
    let Some(schema) = batches.first().map(|b| b.schema()) else { return (Vec::new(), Vec::new(), Vec::new()) };
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let numeric: Vec<bool> = schema.fields().iter().map(|f| f.data_type().is_numeric()).collect();
    let mut rows = Vec::new();
    let options = FormatOptions::default().with_null("NULL");
    for batch in batches {
        let formatters: Vec<Box<dyn Fn(usize) -> String + '_>> = batch
            .columns()
            .iter()
            .map(|array| -> Box<dyn Fn(usize) -> String + '_> {
                match array.data_type() {
                    DataType::Float64 => {
                        let a = array.as_primitive::<Float64Type>();
                        Box::new(move |i| if a.is_null(i) { "NULL".into() } else { format!("{:.2}", a.value(i)) })
                    }
                    DataType::Float32 => {
                        let a = array.as_primitive::<Float32Type>();
                        Box::new(move |i| if a.is_null(i) { "NULL".into() } else { format!("{:.2}", a.value(i)) })
                    }
                    _ => match ArrayFormatter::try_new(array.as_ref(), &options) {
                        Ok(f) => Box::new(move |i| f.value(i).to_string()),
                        Err(_) => Box::new(|_| "?".into()),
                    },
                }
            })
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f(i)).collect());
        }
    }
    (header, numeric, rows)
}

/// An aligned text table, or a Markdown table.
fn grid(batches: &[RecordBatch], markdown: bool) -> String {
    let (header, numeric, rows) = cells(batches);
    if header.is_empty() {
        return "(no rows)\n".into();
    }
    let width = |c: usize| rows.iter().map(|r: &Vec<String>| r[c].chars().count()).chain([header[c].len()]).max();
    let widths: Vec<usize> = (0..header.len()).map(|c| width(c).unwrap_or(0)).collect();
    let cell = |text: &str, c: usize| {
        if numeric[c] { format!("{text:>w$}", w = widths[c]) } else { format!("{text:<w$}", w = widths[c]) }
    };
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<String>| {
        if markdown {
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        } else {
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
    };
    line(&mut out, header.iter().enumerate().map(|(c, h)| cell(h, c)).collect());
    let rule = widths
        .iter()
        .zip(&numeric)
        .map(|(&w, &num)| if markdown && num { format!("{}:", "-".repeat(w.max(2) - 1)) } else { "-".repeat(w) })
        .collect();
    line(&mut out, rule);
    for row in &rows {
        line(&mut out, row.iter().enumerate().map(|(c, v)| cell(v, c)).collect());
    }
    if rows.is_empty() {
        out.push_str("(no rows)\n");
    }
    out
}

fn csv(batches: &[RecordBatch]) -> Result<String> {
    let mut bytes = Vec::new();
    {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut bytes);
        for batch in batches {
            writer.write(batch).map_err(|source| Error::Arrow { path: "csv output".into(), source })?;
        }
    }
    Ok(String::from_utf8(bytes).expect("arrow writes UTF-8 CSV"))
}

fn json_rows(batches: &[RecordBatch]) -> Result<Vec<Value>> {
    let mut bytes = Vec::new();
    {
        let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut bytes);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        writer.write_batches(&refs).map_err(|source| Error::Arrow { path: "json output".into(), source })?;
        writer.finish().map_err(|source| Error::Arrow { path: "json output".into(), source })?;
    }
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Array(rows)) => Ok(rows),
        _ => Ok(vec![Value::Object(Map::new())]),
    }
}

/// `revgen cluster status` as text: the executors, then the jobs.
pub fn render_cluster(status: &crate::cluster::ClusterStatus) -> String {
    use std::fmt::Write;
    let mut out = format!("scheduler {} (Ballista {})\n", status.scheduler, status.version);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let _ = writeln!(out, "executors: {}", status.executors.len());
    for e in &status.executors {
        let seen = e.last_seen.map_or_else(
            || "never".to_owned(),
            |t| format!("{:.0} s ago", now_ms.saturating_sub(u128::from(t)) as f64 / 1000.0),
        );
        let slots = e.task_slots.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let _ = writeln!(out, "  {:<38} {}:{:<6} slots {slots:<4} heartbeat {seen}", e.id, e.host, e.port);
    }
    let _ = writeln!(out, "jobs: {}", status.jobs.len());
    for j in &status.jobs {
        let _ = writeln!(
            out,
            "  {:<10} {:<10} stages {}/{} {:>3}%  {}",
            j.job_id, j.status, j.completed_stages, j.num_stages, j.percent_complete, j.job_name
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int32Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("subset", DataType::Utf8, false),
            Field::new("star_rating", DataType::Int32, false),
            Field::new("avg_review_length", DataType::Float64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["all", "helpful"])),
                Arc::new(Int32Array::from(vec![1, 5])),
                Arc::new(Float64Array::from(vec![Some(231.119_658), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn formats() {
        let table = render_batches(&[batch()], OutputFormat::Table).unwrap();
        assert!(table.starts_with("subset   star_rating  avg_review_length\n"), "{table}");
        assert!(table.contains("all                1             231.12"), "{table}");
        assert!(table.contains("NULL"), "{table}");
        let md = render_batches(&[batch()], OutputFormat::Markdown).unwrap();
        assert!(md.contains("| all     |           1 |            231.12 |"), "{md}");
        let csv = render_batches(&[batch()], OutputFormat::Csv).unwrap();
        assert_eq!(csv.lines().next(), Some("subset,star_rating,avg_review_length"));
        assert!(csv.contains("all,1,231.119658"), "{csv}");
        let json: Value = serde_json::from_str(&render_batches(&[batch()], OutputFormat::Json).unwrap()).unwrap();
        assert_eq!(json[0]["avg_review_length"], 231.119_658);
        assert_eq!(json[1]["star_rating"], 5);
    }

    #[test]
    fn counts_line_balances() {
        let mut counts = RowCounts::default();
        counts.add_valid(1_234_567);
        counts.add_malformed(Malformed::VotesNotNumeric);
        assert_eq!(counts_line(&counts), "rows_read 1,234,568 = valid 1,234,567 + malformed 1 (votes_not_numeric 1)");
    }
}
