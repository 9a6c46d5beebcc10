//! `revgen stats`: the stats query over a dump, with the row counts that make the report trustworthy
//! (`rows_read = valid + malformed`, by reason and by object).

use std::path::PathBuf;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::quarantine::RowCounts;
use crate::query::{InputSummary, Params, Reviews};
use crate::{Error, Result};

/// Settings of a stats run.
#[derive(Clone, Debug)]
pub struct StatsConfig {
    /// The query; [`crate::query::STATS_SQL`] unless `--sql` names another file.
    pub sql: String,
    /// A review is helpful when helpful_votes >= this.
    pub min_helpful: i32,
    /// Extra grouping columns (`--by product_category`).
    pub by: Vec<String>,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig { sql: crate::query::STATS_SQL.to_owned(), min_helpful: 1, by: Vec::new() }
    }
}

/// The report: the query's rows and the counts behind them.
#[derive(Clone, Debug, Serialize)]
pub struct StatsReport {
    pub inputs: Vec<InputSummary>,
    /// Totals over all inputs.
    pub counts: RowCounts,
    /// Counts per input, by URL, in the order of `inputs`.
    pub counts_per_input: Vec<RowCounts>,
    pub min_helpful: i32,
    pub by: Vec<String>,
    /// The query's result.
    #[serde(skip)]
    pub batches: Vec<RecordBatch>,
    /// Where malformed rows were written, and how many.
    pub quarantine: Option<(PathBuf, u64)>,
    pub elapsed_s: f64,
}

/// Runs the stats query over an opened dump. The quarantine file, if any, is completed here.
pub async fn run(reviews: &Reviews, config: &StatsConfig) -> Result<StatsReport> {
    let started = Instant::now();
    let params = Params::default().value("min_helpful", config.min_helpful).by(&config.by)?;
    let batches = reviews.sql(&params.render(&config.sql), &params).await?;
    let quarantine = reviews.log.finish()?;
    let per_object = reviews.log.per_object();
    Ok(StatsReport {
        inputs: reviews.inputs.clone(),
        counts: reviews.counts(),
        counts_per_input: reviews.inputs.iter().map(|i| per_object.get(&i.url).cloned().unwrap_or_default()).collect(),
        min_helpful: config.min_helpful,
        by: config.by.clone(),
        batches,
        quarantine,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// One row of the standard report, for charts and tests. Custom `--sql` results need not have these columns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsRow {
    pub subset: String,
    /// Values of the `--by` columns, in order.
    pub group: Vec<Option<String>>,
    pub star_rating: i32,
    pub reviews: i64,
    pub avg_review_length: f64,
    pub median_review_length: f64,
    pub p90_review_length: f64,
}

impl StatsReport {
    /// The result as standard rows; an error names the column that a custom query left out.
    pub fn rows(&self) -> Result<Vec<StatsRow>> {
        let mut rows = Vec::new();
        for batch in &self.batches {
            let column = |name: &str| {
                batch.column_by_name(name).ok_or_else(|| Error::InvalidSetting {
                    name: "stats query",
                    reason: format!("its result has no column {name:?}"),
                })
            };
            let text = |name: &str| -> Result<Vec<Option<String>>> {
                let array = datafusion::arrow::compute::cast(column(name)?, &DataType::Utf8)
                    .map_err(|source| Error::Arrow { path: name.into(), source })?;
                let array = array.as_string::<i32>();
                Ok((0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i).to_owned())).collect())
            };
            let float = |name: &str| -> Result<Vec<f64>> {
                let array = datafusion::arrow::compute::cast(column(name)?, &DataType::Float64)
                    .map_err(|source| Error::Arrow { path: name.into(), source })?;
                Ok(array.as_primitive::<Float64Type>().iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            };
            let int = |name: &str, to: DataType| -> Result<datafusion::arrow::array::ArrayRef> {
                datafusion::arrow::compute::cast(column(name)?, &to)
                    .map_err(|source| Error::Arrow { path: name.into(), source })
            };
            let subsets = text("subset")?;
            let groups: Vec<Vec<Option<String>>> = self.by.iter().map(|c| text(c)).collect::<Result<_>>()?;
            let ratings = int("star_rating", DataType::Int32)?;
            let reviews = int("reviews", DataType::Int64)?;
            let (avg, median, p90) =
                (float("avg_review_length")?, float("median_review_length")?, float("p90_review_length")?);
            for i in 0..batch.num_rows() {
                rows.push(StatsRow {
                    subset: subsets[i].clone().unwrap_or_default(),
                    group: groups.iter().map(|g| g[i].clone()).collect(),
                    star_rating: ratings.as_primitive::<Int32Type>().value(i),
                    reviews: reviews.as_primitive::<Int64Type>().value(i),
                    avg_review_length: avg[i],
                    median_review_length: median[i],
                    p90_review_length: p90[i],
                });
            }
        }
        Ok(rows)
    }
}
