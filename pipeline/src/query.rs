//! SQL over a dump: a DataFusion session with the job's inputs registered as the table `reviews`, and the query
//! files of `sql/` with their parameters.
//!
//! Query files take two kinds of parameters:
//! - values as DataFusion placeholders, such as `$min_helpful`, bound with their types checked by DataFusion;
//! - `{{by}}`: extra grouping columns (`--by`), spliced in as text, each one checked to be a column of `reviews`
//!   first. It is empty, or a list with a trailing comma (`product_category, `).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use serde::Serialize;

use crate::cluster::client::JobInfo;
use crate::cluster::{Cluster, RemoteDir};
use crate::decode::BytesRead;
use crate::dump::COLUMNS;
use crate::quarantine::{RowCounts, RowLog};
use crate::source::{self, Input, Kind, StoreOptions};
use crate::table::ReviewsTable;
use crate::{Error, Result};

/// `sql/stats.sql`, built in; `--sql FILE` replaces it.
pub const STATS_SQL: &str = include_str!("../../sql/stats.sql");

/// One input object as reports list it.
#[derive(Clone, Debug, Serialize)]
pub struct InputSummary {
    pub url: String,
    pub bytes: u64,
    pub e_tag: Option<String>,
    pub kind: Kind,
    pub gzip: bool,
}

/// A dump opened for queries.
pub struct Reviews {
    pub ctx: SessionContext,
    pub inputs: Vec<InputSummary>,
    pub log: RowLog,
    /// Bytes read so far over all inputs, against [`Reviews::total_bytes`].
    pub bytes_read: BytesRead,
    pub total_bytes: u64,
    table: ReviewsTable,
    cluster: Option<ClusterRun>,
}

/// A dump whose queries run on a cluster.
struct ClusterRun {
    cluster: Cluster,
    /// Where the executors report each object's rows.
    rows: RemoteDir,
}

impl Reviews {
    /// Resolves the input specs and registers them as `reviews`. Malformed rows go to `log`.
    pub async fn open(specs: &[String], options: &StoreOptions, log: RowLog) -> Result<Self> {
        let inputs = source::resolve(specs, options).await?;
        Self::from_inputs(inputs, log)
    }

    pub fn from_inputs(inputs: Vec<Input>, log: RowLog) -> Result<Self> {
        // Stable output: one target partition per core, and batches of the size our readers emit.
        let mut config = SessionConfig::new().with_batch_size(crate::batch::BATCH_ROWS).with_information_schema(true);
        // VARCHAR is Utf8, the type of every text column: concatenating it with Utf8View costs a copy of the text.
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        // Sorts, aggregations and prepare's shard buffers spill to disk past half of the machine's memory (or
        // REVGEN_MEMORY_LIMIT) instead of failing at its end.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(memory_limit()?)))
            .build_arc()
            .expect("a runtime with a memory pool and the default disk manager");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for input in &inputs {
            ctx.register_object_store(&input.store_url, Arc::clone(&input.store));
        }
        let summaries = inputs
            .iter()
            .map(|i| InputSummary {
                url: i.url.clone(),
                bytes: i.size,
                e_tag: i.e_tag.clone(),
                kind: i.kind,
                gzip: i.gzip,
            })
            .collect();
        let total_bytes = inputs.iter().map(|i| i.size).sum();
        let bytes_read = BytesRead::default();
        let table = ReviewsTable::new(inputs, log.clone(), Arc::clone(&bytes_read));
        ctx.register_table("reviews", Arc::new(table.clone())).expect("a fresh session has no table named reviews");
        Ok(Reviews { ctx, inputs: summaries, log, bytes_read, total_bytes, table, cluster: None })
    }

    /// Runs this dump's queries on `cluster` from now on. `scratch` is a directory that the executors write each
    /// object's row counts and quarantined rows to, and this process reads them from.
    pub fn on_cluster(&mut self, cluster: Cluster, scratch: RemoteDir) -> Result<()> {
        let rows = scratch.join("rows");
        let table = self.table.clone().reporting_rows(rows.clone());
        self.ctx.deregister_table("reviews").map_err(df_err("replacing the reviews table"))?;
        self.ctx.register_table("reviews", Arc::new(table)).map_err(df_err("replacing the reviews table"))?;
        // One task per input object at least: the first stage of a job is the scan, and objects are its unit.
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        options.execution.target_partitions = options.execution.target_partitions.max(self.inputs.len());
        drop(state);
        self.cluster = Some(ClusterRun { cluster, rows });
        Ok(())
    }

    /// Whether queries run on a cluster (their progress is the job's, not the bytes read here).
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref().map(|c| &c.cluster)
    }

    /// Runs a physical plan of this session, here or on the cluster, and collects its result. On a cluster the
    /// row counts of the objects read come back into [`Reviews::log`] before this returns.
    pub async fn collect(&self, plan: Arc<dyn ExecutionPlan>, job: &str) -> Result<Vec<RecordBatch>> {
        let Some(run) = &self.cluster else {
            return datafusion::physical_plan::collect(plan, self.ctx.task_ctx())
                .await
                .map_err(df_err(&format!("running the {job} job")));
        };
        let mut progress = |p: &JobInfo| {
            eprintln!(
                "{}: job {} {} (stages {}/{}, {}%)",
                run.cluster.url, p.job_id, p.status, p.completed_stages, p.num_stages, p.percent_complete
            );
        };
        let started = std::time::Instant::now();
        let result = run.cluster.collect(plan, &self.ctx.copied_config(), job, &mut progress).await;
        let (batches, last) = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = run.rows.remove().await;
                return Err(e);
            }
        };
        let objects: Vec<String> = self.inputs.iter().map(|i| i.url.clone()).collect();
        run.rows.gather(&objects, &self.log).await?;
        if let Some(job) = last {
            eprintln!(
                "{}: job {} done in {:.1} s: {} stages, {} objects read, {} result rows",
                run.cluster.url,
                job.job_id,
                started.elapsed().as_secs_f64(),
                job.num_stages,
                objects.len(),
                batches.iter().map(RecordBatch::num_rows).sum::<usize>()
            );
        }
        Ok(batches)
    }

    /// Runs one SQL statement and collects its result.
    pub async fn sql(&self, sql: &str, params: &Params) -> Result<Vec<RecordBatch>> {
        let frame = self.dataframe(sql, params).await?;
        let plan = frame.create_physical_plan().await.map_err(df_err("planning the query"))?;
        self.collect(plan, "sql").await
    }

    /// Plans one SQL statement with its parameters bound.
    pub async fn dataframe(&self, sql: &str, params: &Params) -> Result<DataFrame> {
        let frame = self.ctx.sql(sql).await.map_err(df_err("planning the query"))?;
        if params.values.is_empty() {
            return Ok(frame);
        }
        frame
            .with_param_values(ParamValues::Map(
                params.values.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect(),
            ))
            .map_err(df_err("binding parameters"))
    }

    /// Row counts over every input read so far.
    pub fn counts(&self) -> RowCounts {
        self.log.totals()
    }
}

fn df_err(context: &str) -> impl FnOnce(datafusion::error::DataFusionError) -> Error {
    let context = context.to_owned();
    move |source| Error::DataFusion { context, source: Box::new(source) }
}

/// Parameters of a query file.
#[derive(Clone, Debug, Default)]
pub struct Params {
    values: HashMap<String, ScalarValue>,
    by: Vec<String>,
    /// `{{name}}` texts that the job itself builds (never user text as such).
    splices: Vec<(String, String)>,
}

impl Params {
    pub fn value(mut self, name: &str, value: impl Into<ScalarValue>) -> Self {
        self.values.insert(name.to_owned(), value.into());
        self
    }

    /// Text for `{{name}}`. Only for fragments the job builds itself, with literals quoted.
    pub fn splice(mut self, name: &str, text: &str) -> Self {
        self.splices.push((name.to_owned(), text.to_owned()));
        self
    }

    /// The values as JSON, for manifests.
    pub fn json_values(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.values
            .iter()
            .map(|(name, value)| {
                let json = match value {
                    ScalarValue::Int32(Some(v)) => serde_json::json!(v),
                    ScalarValue::Int64(Some(v)) => serde_json::json!(v),
                    ScalarValue::UInt64(Some(v)) => serde_json::json!(v),
                    ScalarValue::Float64(Some(v)) => serde_json::json!(v),
                    other => serde_json::json!(other.to_string()),
                };
                (name.clone(), json)
            })
            .collect()
    }

    /// Extra grouping columns, each a column of `reviews`.
    pub fn by(mut self, columns: &[String]) -> Result<Self> {
        for column in columns {
            if !COLUMNS.contains(&column.as_str()) || column == "star_rating" {
                return Err(Error::InvalidSetting {
                    name: "--by",
                    reason: format!("{column:?} is not a column of reviews to group by; try product_category"),
                });
            }
        }
        self.by = columns.to_vec();
        Ok(self)
    }

    pub fn by_columns(&self) -> &[String] {
        &self.by
    }

    /// The query text with `{{by}}` and the splices filled in.
    pub fn render(&self, sql: &str) -> String {
        let by: String = self.by.iter().map(|c| format!("{c}, ")).collect();
        let mut sql = sql.replace("{{by}}", &by);
        for (name, text) in &self.splices {
            sql = sql.replace(&format!("{{{{{name}}}}}"), text);
        }
        sql
    }
}

/// The memory pool's size: `REVGEN_MEMORY_LIMIT` (bytes, or with a K, M or G suffix), else half of the machine's
/// memory (MemTotal), or 4 GiB where that cannot be read.
fn memory_limit() -> Result<usize> {
    if let Some(value) = std::env::var_os("REVGEN_MEMORY_LIMIT") {
        let value = value.to_string_lossy();
        return parse_size(&value).ok_or_else(|| Error::InvalidSetting {
            name: "REVGEN_MEMORY_LIMIT",
            reason: format!("{value:?} is not a size in bytes, such as 1048576, 512K, 64M or 2G"),
        });
    }
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<usize>().ok()
    });
    Ok(total_kib.map_or(4 << 30, |kib| kib * 1024 / 2))
}

/// `1048576`, `512K`, `64M`, `2G`.
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (number, shift) = match text.as_bytes().last()?.to_ascii_uppercase() {
        b'K' => (&text[..text.len() - 1], 10),
        b'M' => (&text[..text.len() - 1], 20),
        b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    number.trim().parse::<usize>().ok()?.checked_mul(1 << shift)
}

/// Reads a query file.
pub fn read_sql(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{DataType, Float64Type};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size(" 64M "), Some(64 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size(""), None);
    }

    fn sql_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql")
    }

    /// The `reviews` session as a sqllogictest database.
    struct Db {
        reviews: Reviews,
        params: Params,
    }

    #[async_trait::async_trait]
    impl AsyncDB for Db {
        type Error = Error;
        type ColumnType = DefaultColumnType;

        async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>> {
            let batches = self.reviews.sql(sql, &self.params).await?;
            let Some(schema) = batches.first().map(|b| b.schema()) else {
                return Ok(DBOutput::StatementComplete(0));
            };
            let types = schema
                .fields()
                .iter()
                .map(|f| match f.data_type() {
                    t if t.is_integer() => DefaultColumnType::Integer,
                    t if t.is_floating() => DefaultColumnType::FloatingPoint,
                    _ => DefaultColumnType::Text,
                })
                .collect();
            let mut rows = Vec::new();
            for batch in &batches {
                let options = FormatOptions::default().with_null("NULL");
                for i in 0..batch.num_rows() {
                    let row = batch
                        .columns()
                        .iter()
                        .map(|array| match array.data_type() {
                            DataType::Float64 if array.is_valid(i) => {
                                let v = array.as_primitive::<Float64Type>().value(i);
                                let text = format!("{v:.4}");
                                text.trim_end_matches('0').trim_end_matches('.').to_owned()
                            }
                            _ => ArrayFormatter::try_new(array.as_ref(), &options).unwrap().value(i).to_string(),
                        })
                        .collect();
                    rows.push(row);
                }
            }
            Ok(DBOutput::Rows { types, rows })
        }

        async fn shutdown(&mut self) {}

        fn engine_name(&self) -> &str {
            "revgen"
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slt() {
        let fixture = sql_dir().join("testdata/reviews.tsv").to_string_lossy().into_owned();
        let params = Params::default().value("min_helpful", 1i32);
        let stats = params.render(STATS_SQL);
        let mut files: Vec<PathBuf> = std::fs::read_dir(sql_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "slt"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no .slt files in sql/");
        for file in files {
            // The placeholder line becomes the query file, so the .slt tests the file itself.
            let text = std::fs::read_to_string(&file).unwrap();
            let lines: Vec<&str> =
                text.lines().map(|line| if line.trim() == "{{stats.sql}}" { stats.trim_end() } else { line }).collect();
            let script = lines.join("\n");
            let (fixture, params) = (fixture.clone(), params.clone());
            let mut runner = sqllogictest::Runner::new(move || {
                let (fixture, params) = (fixture.clone(), params.clone());
                async move {
                    let reviews = Reviews::open(&[fixture], &StoreOptions::default(), RowLog::counting()).await?;
                    Ok(Db { reviews, params })
                }
            });
            if let Err(e) = runner.run_script_async(&script).await {
                panic!("{}: {}", file.display(), e.display(true));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fixture_counts_balance() {
        let fixture = sql_dir().join("testdata/reviews.tsv").to_string_lossy().into_owned();
        let reviews = Reviews::open(&[fixture], &StoreOptions::default(), RowLog::counting()).await.unwrap();
        reviews.sql("SELECT count(*) FROM reviews", &Params::default()).await.unwrap();
        let counts = reviews.counts();
        assert_eq!((counts.rows_read, counts.valid, counts.malformed), (11, 7, 4));
        for reason in crate::dump::Malformed::PLANTED {
            assert_eq!(counts.malformed_by_reason[&reason], 1, "{reason:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn integer_comparisons_run_in_the_scan() {
        let fixture = sql_dir().join("testdata/reviews.tsv").to_string_lossy().into_owned();
        let count = |condition: &'static str| {
            let fixture = fixture.clone();
            async move {
                let reviews = Reviews::open(&[fixture], &StoreOptions::default(), RowLog::counting()).await.unwrap();
                let sql = format!("SELECT count(*) AS n FROM reviews WHERE {condition}");
                let plan = reviews.sql(&format!("EXPLAIN {sql}"), &Params::default()).await.unwrap();
                let plan = datafusion::arrow::util::pretty::pretty_format_batches(&plan).unwrap().to_string();
                let batches = reviews.sql(&sql, &Params::default()).await.unwrap();
                let n = batches[0].column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0);
                (n, reviews.counts(), plan)
            }
        };
        // The same rows whether the scan filters (pushed down) or DataFusion does (an expression it cannot push).
        let (pushed, counts, plan) = count("coalesce(helpful_votes, CAST(0 AS INT)) >= 1 AND 3 <= total_votes").await;
        let (computed, _, computed_plan) = count("helpful_votes + 0 >= 1 AND total_votes + 0 >= 3").await;
        assert_eq!(pushed, computed);
        assert!(pushed > 0 && pushed < 7, "{pushed}");
        assert!(plan.contains("filters=[coalesce(helpful_votes, 0) >= 1, total_votes >= 3]"), "{plan}");
        assert!(!plan.contains("FilterExec") && computed_plan.contains("FilterExec"), "{plan}\n{computed_plan}");
        // Rows the scan drops are counted, as valid rows.
        assert_eq!((counts.rows_read, counts.valid, counts.skipped), (11, 7, 7 - pushed as u64));
    }

    #[test]
    fn by_columns_are_checked() {
        let params = Params::default().by(&["product_category".into()]).unwrap();
        assert_eq!(params.render("SELECT {{by}} star_rating"), "SELECT product_category,  star_rating");
        let err = Params::default().by(&["1; DROP TABLE x".into()]).unwrap_err().to_string();
        assert!(err.contains("not a column"), "{err}");
    }
}
