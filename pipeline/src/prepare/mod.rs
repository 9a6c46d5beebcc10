//! `revgen prepare`: the helpful reviews of a dump as tagged training text, in shards, with a manifest.
//!
//! The whole job is one DataFusion plan with one scan:
//! ```text
//! ShardWriterExec            streams records to per-(object, shard) segments (see [`segment`]), or buffers them
//!                            per shard and writes each in row_position order; returns files and counts
//!   [RepartitionExec]        on a cluster: Hash(split, shard), so that every shard lands whole in one partition
//!     [FilterExec]           on a cluster: records and tally rows only
//!       TallyExec            counts dropped rows by reason and rating, passes its input on
//!         sql/prepare.sql    filters, review_key, template (ReviewsScan below)
//! ```
//! Split and shard come from `review_key(review_id, seed)`, a stable hash, and the order within a shard is input
//! order (`row_position`: object, then line), so shards are byte-identical from run to run and from machine to
//! machine, however the inputs are partitioned. The output appears only when complete (see [`destination`]).

pub(crate) mod buffer;
pub mod destination;
pub mod manifest;
pub(crate) mod segment;
pub(crate) mod shard;
pub(crate) mod tally;
pub mod template;
pub mod text;
pub mod tokens;
pub(crate) mod udf;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int32Type, UInt64Type};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::Partitioning;
use datafusion::physical_expr::expressions::{binary, col, is_not_null, is_null};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use serde::{Deserialize, Serialize};

pub use self::destination::Destination;
pub use self::manifest::Manifest;
use self::manifest::{Counts, ManifestInput, QuarantineFile, ShardFile, TokenizerInfo};
use self::shard::{Gather, ShardOptions, ShardWriterExec, WrittenFile, shard_name};
pub use self::template::DEFAULT_TEMPLATE;
pub use self::tokens::Tokenize;
pub use self::udf::review_key;
use crate::cluster::{Cluster, RemoteDir};
use crate::quarantine::RowLog;
use crate::query::{Params, Reviews};
use crate::source::StoreOptions;
use crate::{Error, Result};

/// `sql/prepare.sql`, built in; `--sql FILE` replaces it.
pub const PREPARE_SQL: &str = include_str!("../../../sql/prepare.sql");

/// Settings of a prepare job. All of it goes into the manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PrepareConfig {
    /// Kept only when helpful_votes >= this (the original project's filter: 1).
    pub min_helpful: i32,
    /// Kept only in these product categories (all when empty).
    pub categories: Vec<String>,
    /// Bounds on review_body's length in characters, as in the dump.
    pub min_chars: Option<u32>,
    pub max_chars: Option<u32>,
    /// Share of records in the val split, by review_key.
    pub val_fraction: f64,
    /// Shards per split.
    pub shards: u32,
    /// Seeds review_key: another seed gives another split and order.
    pub seed: u64,
    /// Drop repeated records (same text), keeping the one with the lowest key.
    pub dedup: bool,
    /// Keep `<br />` and entities as in the dump.
    pub raw_html: bool,
    pub template: String,
    /// Also write `.bin` token shards.
    pub tokenize: bool,
    /// Also write Parquet shards (text, star_rating).
    pub parquet: bool,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            min_helpful: 1,
            categories: Vec::new(),
            min_chars: None,
            max_chars: None,
            val_fraction: 0.01,
            shards: 16,
            seed: 0,
            dedup: false,
            raw_html: false,
            template: DEFAULT_TEMPLATE.to_owned(),
            tokenize: false,
            parquet: false,
        }
    }
}

/// How the key space splits: keys below `val_cut` are val; each split is cut into `shards` equal key ranges.
struct KeyRanges {
    val_cut: u64,
    val_width: u64,
    train_width: u64,
}

impl KeyRanges {
    fn new(val_fraction: f64, shards: u32) -> Self {
        const SPACE: u128 = 1 << 64;
        let val_cut = (val_fraction * SPACE as f64) as u128;
        let width = |range: u128| range.div_ceil(u128::from(shards)).clamp(1, u128::from(u64::MAX)) as u64;
        KeyRanges { val_cut: val_cut as u64, val_width: width(val_cut), train_width: width(SPACE - val_cut) }
    }
}

impl PrepareConfig {
    fn check(&self) -> Result<()> {
        let invalid = |name, reason: String| Err(Error::InvalidSetting { name, reason });
        if !(1..=99_999).contains(&self.shards) {
            return invalid("--shards", format!("{} is not in 1..=99999", self.shards));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return invalid("--val-fraction", format!("{} is not in [0, 1)", self.val_fraction));
        }
        if let (Some(min), Some(max)) = (self.min_chars, self.max_chars)
            && min > max
        {
            return invalid("--min-chars", format!("{min} is above --max-chars {max}"));
        }
        Ok(())
    }

    /// The splits this config writes.
    pub fn splits(&self) -> Vec<&'static str> {
        if self.val_fraction > 0.0 { vec!["train", "val"] } else { vec!["train"] }
    }

    /// The query text and its parameters.
    pub fn query(&self, sql: &str) -> Result<(String, Params)> {
        self.check()?;
        let pieces = template::parse(&self.template)?;
        let function = if self.raw_html { "raw_record" } else { "review_record" };
        let text = template::to_sql(&pieces, function, "dropped IS NULL");
        let category_filter = if self.categories.is_empty() {
            "FALSE".to_owned()
        } else {
            let quoted: Vec<String> = self.categories.iter().map(|c| format!("'{}'", c.replace('\'', "''"))).collect();
            format!("product_category IS NULL OR product_category NOT IN ({})", quoted.join(", "))
        };
        let dedup = if self.dedup {
            "CASE WHEN dropped IS NULL AND row_number() OVER (PARTITION BY text ORDER BY key, star_rating) > 1 \
             THEN 'duplicate' ELSE dropped END"
        } else {
            "dropped"
        };
        let ranges = KeyRanges::new(self.val_fraction, self.shards);
        let params = Params::default()
            .value("min_helpful", self.min_helpful)
            // character_length() is Int32, and so are these.
            .value("min_chars", self.min_chars.map_or(0, |n| n.min(i32::MAX as u32) as i32))
            .value("max_chars", self.max_chars.map_or(i32::MAX, |n| n.min(i32::MAX as u32) as i32))
            // The seed is a bit pattern; review_key takes it as Int64.
            .value("seed", self.seed as i64)
            .value("val_cut", ranges.val_cut)
            .value("val_width", ranges.val_width)
            .value("train_width", ranges.train_width)
            .value("last_shard", u64::from(self.shards - 1))
            .splice("category_filter", &category_filter)
            .splice("text", &text)
            // Unset bounds are left out of the query rather than compared: the CASE that classifies rows then has
            // no branch that reads review_body, so it neither counts characters nor copies bodies around.
            .splice(
                "too_short",
                if self.min_chars.is_some() { "character_length(review_body) < $min_chars" } else { "FALSE" },
            )
            .splice(
                "too_long",
                if self.max_chars.is_some() { "character_length(review_body) > $max_chars" } else { "FALSE" },
            )
            .splice("dedup", dedup);
        Ok((params.render(sql), params))
    }
}

/// A prepare job, opened: inputs resolved, output checked, staging ready.
pub struct PrepareJob {
    pub reviews: Reviews,
    pub destination: Destination,
    config: PrepareConfig,
    sql: String,
    /// On a cluster with an object-store output: where the executors upload finished shards.
    shard_upload: Option<RemoteDir>,
}

/// What a job did.
#[derive(Clone, Debug)]
pub struct PrepareReport {
    pub output: String,
    pub manifest: Manifest,
    pub elapsed_s: f64,
}

impl PrepareJob {
    /// Resolves the inputs and opens the output (which must be new, or `overwrite`). `sql` is the query file's
    /// text, [`PREPARE_SQL`] unless the user gave one.
    pub async fn open(
        specs: &[String],
        store: &StoreOptions,
        output: &str,
        overwrite: bool,
        config: PrepareConfig,
        sql: String,
    ) -> Result<Self> {
        config.query(&sql)?;
        let destination = Destination::open(output, store, overwrite).await?;
        let log = RowLog::with_quarantine(&destination.staging().join(destination::QUARANTINE))?;
        let reviews = Reviews::open(specs, store, log).await?;
        udf::register(&reviews.ctx);
        Ok(PrepareJob { reviews, destination, config, sql, shard_upload: None })
    }

    /// Runs the job on `cluster`: the executors write the shards (see [`Destination::cluster_staging`]).
    pub fn on_cluster(&mut self, cluster: Cluster) -> Result<()> {
        let (staging, upload) = self.destination.cluster_staging()?;
        self.reviews.on_cluster(cluster, staging)?;
        self.shard_upload = upload;
        Ok(())
    }

    /// Runs the job and commits its output. `tokenizer` is required with `tokenize`.
    pub async fn run(mut self, tokenizer: Option<Arc<dyn Tokenize>>) -> Result<PrepareReport> {
        let started = Instant::now();
        let tokenizer = match (self.config.tokenize, tokenizer) {
            (true, None) => {
                return Err(Error::InvalidSetting { name: "--tokenize", reason: "no tokenizer was given".into() });
            }
            (tokenize, tokenizer) => tokenizer.filter(|_| tokenize),
        };
        let (sql, params) = self.config.query(&self.sql)?;
        let options = ShardOptions {
            // The plan picks the mode.
            gather: Gather::PerPartition,
            staging: self.destination.staging().to_owned(),
            shards: self.config.shards,
            parquet: self.config.parquet,
            tokenizer: tokenizer.clone(),
            upload: self.shard_upload.clone(),
        };
        let plan = self.plan(&sql, &params, options.clone()).await?;
        let batches = self.reviews.collect(plan, "prepare").await?;
        let mut result = WriterResult::read(&batches);
        result.files = segment::assemble(&options.staging, self.config.shards, result.files)?;

        // Every shard of `-of-N` exists, empty or not.
        let written: BTreeSet<(String, u32)> = result.files.iter().map(|f| (f.split.clone(), f.shard)).collect();
        for split in self.config.splits() {
            for shard in 0..self.config.shards {
                if !written.contains(&(split.to_owned(), shard)) {
                    result.files.extend(shard::write_empty(&options, split, shard)?);
                }
            }
        }

        let quarantine = match self.reviews.log.finish()? {
            Some((path, rows)) if rows > 0 => Some(QuarantineFile {
                file: destination::QUARANTINE.to_owned(),
                rows,
                sha256: shard::hash_file(&path)?.1,
            }),
            Some((path, _)) => {
                std::fs::remove_file(&path).map_err(Error::io(&path))?;
                None
            }
            None => None,
        };

        let manifest = self.manifest(sql, &params, result, quarantine, tokenizer.as_deref())?;
        let mut files: Vec<String> = manifest.shards.iter().map(|s| s.file.clone()).collect();
        files.extend(manifest.quarantine.as_ref().map(|q| q.file.clone()));
        self.destination.commit(&files, &manifest.to_json()).await?;
        Ok(PrepareReport { output: self.destination.url.clone(), manifest, elapsed_s: started.elapsed().as_secs_f64() })
    }

    /// The physical plan: the query, then tally, (on a cluster) repartition by shard, and write.
    async fn plan(&self, sql: &str, params: &Params, options: ShardOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let df_err = |context: &'static str| {
            move |source| Error::DataFusion { context: context.to_owned(), source: Box::new(source) }
        };
        // Text shards stream to their files when the records arrive in input order (see `segment`). `--dedup`'s
        // window repartitions by text, and token and Parquet shards are written from the buffered path.
        let local = self.reviews.cluster().is_none();
        let partitions = self.reviews.ctx.state().config().target_partitions().max(1);
        let open_files = self.config.splits().len() * self.config.shards as usize * partitions;
        let may_stream = local
            && options.tokenizer.is_none()
            && !options.parquet
            && !self.config.dedup
            && open_files <= segment::MAX_OPEN_SHARD_FILES;
        if may_stream {
            // A round-robin repartition behind the scan would deal its batches out to the query's partitions, and
            // the records would reach the writers out of input order. Objects are still read in parallel, one
            // partition each.
            let state = self.reviews.ctx.state_ref();
            state.write().config_mut().options_mut().optimizer.enable_round_robin_repartition = false;
        }
        let frame = self.reviews.dataframe(sql, params).await?;
        let query = frame.create_physical_plan().await.map_err(df_err("planning the prepare query"))?;
        let tally: Arc<dyn ExecutionPlan> =
            Arc::new(tally::TallyExec::try_new(query).map_err(df_err("the prepare query"))?);
        let writer = |input, gather| -> Result<Arc<dyn ExecutionPlan>> {
            let options = ShardOptions { gather, ..options.clone() };
            Ok(Arc::new(ShardWriterExec::try_new(input, options).map_err(df_err("the prepare query's columns"))?))
        };
        if local {
            // Otherwise the writer's partitions share one buffer: no repartition, and shards go to whichever writer
            // is free.
            let gather =
                if may_stream && segment::preserves_input_order(&tally) { Gather::Stream } else { Gather::Shared };
            return writer(tally, gather);
        }
        // On a cluster each writer task gets whole shards: Ballista shuffles the records by shard. Rows that the
        // tally has counted are left out of the shuffle first (only records and tally rows cross the network).
        let schema = tally.schema();
        let column = |name: &str| col(name, &schema).map_err(df_err("the prepare query's columns"));
        let to_shuffle = binary(
            is_null(column(tally::DROPPED)?).map_err(df_err("filtering"))?,
            Operator::Or,
            is_not_null(column(tally::COUNT)?).map_err(df_err("filtering"))?,
            &schema,
        )
        .map_err(df_err("filtering"))?;
        let filter = Arc::new(FilterExec::try_new(to_shuffle, tally).map_err(df_err("filtering"))?);
        let by_shard = Partitioning::Hash(vec![column("split")?, column("shard")?], partitions);
        let repartition = Arc::new(RepartitionExec::try_new(filter, by_shard).map_err(df_err("repartitioning"))?);
        writer(repartition, Gather::PerPartition)
    }

    fn manifest(
        &self,
        sql: String,
        params: &Params,
        result: WriterResult,
        quarantine: Option<QuarantineFile>,
        tokenizer: Option<&dyn Tokenize>,
    ) -> Result<Manifest> {
        let totals = self.reviews.counts();
        let per_object = self.reviews.log.per_object();
        let inputs = self
            .reviews
            .inputs
            .iter()
            .map(|i| {
                let counts = per_object.get(&i.url).cloned().unwrap_or_default();
                ManifestInput {
                    url: i.url.clone(),
                    bytes: i.bytes,
                    e_tag: i.e_tag.clone(),
                    format: serde_json::to_value(i.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    gzip: i.gzip,
                    rows_read: counts.rows_read,
                    malformed: counts.malformed,
                }
            })
            .collect();
        let split_total = |split: &str| result.kept.iter().filter(|((s, _), _)| s == split).map(|(_, n)| n).sum();
        // The scan drops the rows that fail the query's WHERE clause, which in sql/prepare.sql is the helpful
        // filter, and counts them; the query's CASE gives the other reasons.
        let mut filtered = result.dropped;
        if totals.skipped > 0 {
            *filtered.entry("not_helpful".to_owned()).or_default() += totals.skipped;
        }
        let mut kept_by_rating = BTreeMap::new();
        for ((_, rating), n) in &result.kept {
            *kept_by_rating.entry(rating.to_string()).or_default() += n;
        }
        let counts = Counts {
            rows_read: totals.rows_read,
            malformed: totals.malformed,
            malformed_by_reason: totals
                .malformed_by_reason
                .iter()
                .map(|(reason, n)| {
                    (
                        serde_json::to_value(reason)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        *n,
                    )
                })
                .collect(),
            filtered_total: filtered.values().sum(),
            filtered,
            kept: result.kept.values().sum(),
            kept_by_rating,
            train: split_total("train"),
            val: split_total("val"),
        };
        counts.balance().map_err(|reason| Error::Unbalanced { reason })?;
        let mut shards: Vec<ShardFile> = result
            .files
            .into_iter()
            .map(|f| ShardFile {
                format: match Path::new(&f.file).extension().and_then(|e| e.to_str()) {
                    Some("bin") => "tokens",
                    Some("parquet") => "parquet",
                    _ => "text",
                }
                .to_owned(),
                file: f.file,
                split: f.split,
                shard: f.shard,
                rows: f.rows,
                bytes: f.bytes,
                tokens: f.tokens,
                sha256: f.sha256,
            })
            .collect();
        shards.sort_by(|a, b| (&a.split, a.shard, &a.format).cmp(&(&b.split, b.shard, &b.format)));
        debug_assert!(
            shards.iter().all(|s| s.file == shard_name(&s.split, s.shard, self.config.shards, extension(&s.format)))
        );
        Ok(Manifest {
            format: manifest::FORMAT.to_owned(),
            revgen: env!("CARGO_PKG_VERSION").to_owned(),
            inputs,
            config: self.config.clone(),
            sql,
            parameters: params.json_values(),
            counts,
            shards,
            tokenizer: tokenizer.map(|t| TokenizerInfo {
                name: t.name(),
                vocab_size: t.vocab_size(),
                end_of_text: t.end_of_text(),
                layout: "llm.c .bin: 256 x i32 LE header (magic 20240520, version 1, tokens, vocab, eot), u16 LE ids"
                    .to_owned(),
            }),
            quarantine,
        })
    }
}

fn extension(format: &str) -> &'static str {
    match format {
        "tokens" => "bin",
        "parquet" => "parquet",
        _ => "txt",
    }
}

/// The shard writers' result tables, gathered.
#[derive(Default)]
struct WriterResult {
    files: Vec<WrittenFile>,
    kept: BTreeMap<(String, i32), u64>,
    dropped: BTreeMap<String, u64>,
}

impl WriterResult {
    fn read(batches: &[RecordBatch]) -> Self {
        let mut result = WriterResult::default();
        for batch in batches {
            let column = |name: &str| batch.column_by_name(name).expect("the writer's result schema");
            let (file, split, shard) = (
                column("file").as_string::<i32>(),
                column("split").as_string::<i32>(),
                column("shard").as_primitive::<Int32Type>(),
            );
            let (dropped, rating) =
                (column(tally::DROPPED).as_string::<i32>(), column("star_rating").as_primitive::<Int32Type>());
            let (rows, bytes, tokens, sha256) = (
                column("rows").as_primitive::<UInt64Type>(),
                column("bytes").as_primitive::<UInt64Type>(),
                column("tokens").as_primitive::<UInt64Type>(),
                column("sha256").as_string::<i32>(),
            );
            let object = column("object").as_primitive::<UInt64Type>();
            for i in 0..batch.num_rows() {
                if file.is_valid(i) {
                    result.files.push(WrittenFile {
                        file: file.value(i).to_owned(),
                        split: split.value(i).to_owned(),
                        shard: shard.value(i) as u32,
                        object: object.is_valid(i).then(|| object.value(i) as usize),
                        rows: rows.value(i),
                        bytes: bytes.value(i),
                        tokens: tokens.is_valid(i).then(|| tokens.value(i)),
                        sha256: sha256.value(i).to_owned(),
                    });
                } else if dropped.is_valid(i) {
                    *result.dropped.entry(dropped.value(i).to_owned()).or_default() += rows.value(i);
                } else {
                    *result.kept.entry((split.value(i).to_owned(), rating.value(i))).or_default() += rows.value(i);
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture() -> String {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sql/testdata/reviews.tsv").to_string_lossy().into_owned()
    }

    async fn prepare(out: &Path, config: PrepareConfig) -> Result<PrepareReport> {
        let out = out.to_string_lossy();
        let job =
            PrepareJob::open(&[fixture()], &StoreOptions::default(), &out, true, config, PREPARE_SQL.into()).await?;
        job.run(None).await
    }

    fn lines(dir: &Path, manifest: &Manifest, split: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for file in manifest.files(split, "text") {
            let text = std::fs::read_to_string(dir.join(&file.file)).unwrap();
            lines.extend(text.lines().map(str::to_owned));
        }
        lines
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fixture_records_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let config = PrepareConfig { val_fraction: 0.0, shards: 2, ..Default::default() };
        let report = prepare(dir.path(), config).await.unwrap();
        let m = &report.manifest;
        let mut records = lines(dir.path(), m, "train");
        records.sort();
        assert_eq!(
            records,
            [
                "<|startoftext|> 1|||Bad|||\u{1f600} bad<|endoftext|>",
                "<|startoftext|> 5|||Héllo|||héllo<|endoftext|>",
                "<|startoftext|> 5|||日本|||日本語です<|endoftext|>",
            ]
        );
        let c = &m.counts;
        assert_eq!((c.rows_read, c.malformed, c.filtered_total, c.kept, c.train, c.val), (11, 4, 4, 3, 3, 0));
        assert_eq!(c.filtered["not_helpful"], 4);
        assert_eq!(c.kept_by_rating, BTreeMap::from([("1".into(), 1), ("5".into(), 2)]));
        assert_eq!(m.shards.len(), 2, "train only, 2 shards, text only: {:?}", m.shards);
        assert_eq!(m.quarantine.as_ref().unwrap().rows, 4);
        assert!(dir.path().join("quarantine.jsonl").is_file() && dir.path().join("manifest.json").is_file());
        assert_eq!(Manifest::read(&dir.path().join("manifest.json")).unwrap(), *m);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn filters_dedup_and_template() {
        let dir = tempfile::tempdir().unwrap();
        let config = PrepareConfig {
            min_helpful: 0,
            min_chars: Some(1),
            dedup: true,
            val_fraction: 0.5,
            shards: 1,
            // Few distinct records: one per rating.
            template: "{{{star_rating}}} stars".into(),
            ..Default::default()
        };
        let report = prepare(dir.path(), config).await.unwrap();
        let c = &report.manifest.counts;
        // 7 valid rows: RSYNTH0006's empty body is too short; of the other six (ratings 5, 5, 5, 5, 1, 1), one
        // record per rating stays.
        let filtered = |reason: &str| c.filtered.get(reason).copied().unwrap_or(0);
        assert_eq!((filtered("too_short"), filtered("duplicate"), c.kept), (1, 4, 2), "{c:?}");
        let mut records = lines(dir.path(), &report.manifest, "train");
        records.extend(lines(dir.path(), &report.manifest, "val"));
        records.sort();
        assert_eq!(records, ["{1} stars", "{5} stars"]);
        assert!(report.manifest.sql.contains("row_number() OVER"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn text_shards_stream_unless_a_setting_needs_the_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let gather = |config: PrepareConfig| {
            let out = dir.path().join("out").to_string_lossy().into_owned();
            async move {
                let job =
                    PrepareJob::open(&[fixture()], &StoreOptions::default(), &out, true, config, PREPARE_SQL.into())
                        .await
                        .unwrap();
                let (sql, params) = job.config.query(&job.sql).unwrap();
                let options = ShardOptions {
                    gather: Gather::PerPartition,
                    staging: job.destination.staging().to_owned(),
                    shards: job.config.shards,
                    parquet: job.config.parquet,
                    tokenizer: None,
                    upload: None,
                };
                let plan = job.plan(&sql, &params, options).await.unwrap();
                plan.downcast_ref::<ShardWriterExec>().unwrap().options().gather
            }
        };
        assert_eq!(gather(PrepareConfig::default()).await, Gather::Stream);
        assert_eq!(gather(PrepareConfig { parquet: true, ..Default::default() }).await, Gather::Shared);
        assert_eq!(gather(PrepareConfig { dedup: true, ..Default::default() }).await, Gather::Shared);
        // More shard files than may be open at once.
        let many = (segment::MAX_OPEN_SHARD_FILES / 2 + 1) as u32;
        assert_eq!(gather(PrepareConfig { shards: many, ..Default::default() }).await, Gather::Shared);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_file_without_the_text_column_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let sql = PREPARE_SQL.replace("    row_position,\n    text\n", "    row_position\n");
        assert_ne!(sql, PREPARE_SQL);
        let out = dir.path().to_string_lossy();
        let job = PrepareJob::open(&[fixture()], &StoreOptions::default(), &out, true, PrepareConfig::default(), sql)
            .await
            .unwrap();
        let err = job.run(None).await.unwrap_err().to_string();
        assert!(err.contains("column text is missing"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_settings_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        for (config, says) in [
            (PrepareConfig { shards: 0, ..Default::default() }, "--shards"),
            (PrepareConfig { val_fraction: 1.0, ..Default::default() }, "--val-fraction"),
            (PrepareConfig { template: "{nope}".into(), ..Default::default() }, "not a column"),
        ] {
            let err = prepare(dir.path(), config).await.unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
