//! `ShardWriterExec`: the end of the prepare plan. It writes the records it receives into the staging directory,
//! each shard in record order (`row_position`): the text shard, and with the options the `.bin` token shard and
//! the Parquet shard. Its result is a small table of what it wrote and counted (see [`result_schema`]), which the
//! job turns into the manifest.
//!
//! How it does so is its [`Gather`] mode. Text shards whose records arrive in input order stream to segment files
//! as they arrive ([`super::segment`]). Otherwise the records are buffered per shard ([`ShardBuffer`]) and written
//! once the input has ended: locally the partitions buffer together and then write the shards between them,
//! largest first; on a cluster a repartition by shard in front gives each partition whole shards of its own.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, RecordBatch, StringArray, StringBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, UInt64Type};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tokio::sync::mpsc::Sender;

use super::buffer::{BufferedShard, Chunk, PREFETCH_AHEAD, ShardBuffer, prefetch};
use super::segment::SegmentWriter;
use super::tally::{COUNT, DROPPED};
use super::tokens::{TokenWriter, Tokenize};
use crate::batch::ROW_POSITION_NAME;
use crate::cluster::RemoteDir;
use crate::{Error, Result};

/// How the partitions of a [`ShardWriterExec`] share out the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gather {
    /// Each partition's input holds whole shards (a repartition by shard is in front): it writes them itself.
    PerPartition,
    /// Any partition may hold records of any shard: the partitions buffer them together and, once every input has
    /// ended, write the shards between them. Only for a plan whose partitions all run in this process.
    Shared,
    /// Each partition's input arrives in input order (see [`super::segment::preserves_input_order`]): records are
    /// written as they arrive, into segments that the job assembles into shards. Text shards only, in this process.
    Stream,
}

/// What to write besides the text shards.
#[derive(Clone)]
pub struct ShardOptions {
    pub gather: Gather,
    pub staging: PathBuf,
    /// Shards per split; names read `train-00003-of-00016.txt`.
    pub shards: u32,
    pub parquet: bool,
    pub tokenizer: Option<Arc<dyn Tokenize>>,
    /// On a cluster whose output is in object storage: each finished shard file is uploaded here (the job's
    /// staging prefix) and its local copy in `staging` removed.
    pub upload: Option<RemoteDir>,
}

impl fmt::Debug for ShardOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardOptions")
            .field("gather", &self.gather)
            .field("staging", &self.staging)
            .field("shards", &self.shards)
            .field("parquet", &self.parquet)
            .field("tokenize", &self.tokenizer.as_ref().map(|t| t.name()))
            .field("upload", &self.upload.as_ref().map(|u| &u.url))
            .finish()
    }
}

/// The file name of a shard.
pub fn shard_name(split: &str, shard: u32, shards: u32, ext: &str) -> String {
    format!("{split}-{shard:05}-of-{shards:05}.{ext}")
}

/// The writers' result: one row per file written (`file` set) and one per count (`file` NULL): kept records per
/// (split, star_rating), and dropped rows per (dropped, star_rating).
pub fn result_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("file", DataType::Utf8, true),
            Field::new("split", DataType::Utf8, true),
            Field::new("shard", DataType::Int32, true),
            Field::new(DROPPED, DataType::Utf8, true),
            Field::new("star_rating", DataType::Int32, true),
            Field::new("rows", DataType::UInt64, false),
            Field::new("bytes", DataType::UInt64, true),
            Field::new("tokens", DataType::UInt64, true),
            Field::new("sha256", DataType::Utf8, true),
            Field::new("object", DataType::UInt64, true),
        ]))
    });
    Arc::clone(&SCHEMA)
}

#[derive(Debug)]
pub struct ShardWriterExec {
    input: Arc<dyn ExecutionPlan>,
    options: ShardOptions,
    properties: Arc<PlanProperties>,
    /// With [`Gather::Shared`]: the buffer all partitions fill, made by the first one to start.
    shared: OnceLock<Arc<Gathering>>,
}

impl ShardWriterExec {
    /// `input` must have the columns the writer reads, with their types: a query file given with `--sql` that
    /// lacks one is an error naming it, not a panic in the middle of the job.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, options: ShardOptions) -> DfResult<Self> {
        let schema = input.schema();
        for (name, ty) in [
            (DROPPED, DataType::Utf8),
            ("star_rating", DataType::Int32),
            ("split", DataType::Utf8),
            ("shard", DataType::Int32),
            (ROW_POSITION_NAME, DataType::UInt64),
            ("text", DataType::Utf8),
            (COUNT, DataType::UInt64),
        ] {
            let found = schema.field_with_name(name).map(|f| f.data_type().clone());
            if found.as_ref().ok() != Some(&ty) {
                let found = found.map_or_else(|_| "missing".to_owned(), |t| format!("of type {t}"));
                return Err(DataFusionError::Plan(format!(
                    "the prepare query's column {name} is {found}; the shard writer needs {name} of type {ty}"
                )));
            }
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(result_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(ShardWriterExec { input, options, properties: Arc::new(properties), shared: OnceLock::new() })
    }

    pub fn options(&self) -> &ShardOptions {
        &self.options
    }
}

impl DisplayAs for ShardWriterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        write!(f, "ShardWriterExec: gather={:?}, shards={}, parquet={}, tokenize={}", o.gather, o.shards, o.parquet, {
            o.tokenizer.is_some()
        })
    }
}

impl ExecutionPlan for ShardWriterExec {
    fn name(&self) -> &str {
        "ShardWriterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("ShardWriterExec has one child".into()))?;
        Ok(Arc::new(ShardWriterExec::try_new(input, self.options.clone())?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let new_gathering = |partitions: usize| {
            let reservation = MemoryConsumer::new(format!("ShardWriterExec[{partition}]"))
                .with_can_spill(true)
                .register(context.memory_pool());
            let disk = Arc::clone(&context.runtime_env().disk_manager);
            Arc::new(Gathering::new(partitions, ShardBuffer::new(self.options.shards, reservation, disk)))
        };
        let mut records = match self.options.gather {
            Gather::PerPartition => Records::Gather(new_gathering(1)),
            Gather::Shared => {
                let partitions = self.input.output_partitioning().partition_count();
                Records::Gather(Arc::clone(self.shared.get_or_init(|| new_gathering(partitions))))
            }
            Gather::Stream => Records::Stream(Box::new(SegmentWriter::new(&self.options.staging, self.options.shards))),
        };
        let mut input = self.input.execute(partition, context)?;
        let options = self.options.clone();
        let mut builder = RecordBatchReceiverStreamBuilder::new(result_schema(), 1);
        let tx = builder.tx();
        let handle = Handle::current();
        // Buffering, sorting and file writes block, so the writer runs on a blocking thread and pulls its input from
        // there.
        builder.spawn_blocking(move || {
            let mut writer = PartitionWriter::new(options);
            let written = (|| {
                while let Some(batch) = handle.block_on(input.next()) {
                    let batch = batch?;
                    if writer.count_dropped(&batch) > 0 {
                        match &mut records {
                            Records::Stream(segments) => segments.add(&batch),
                            Records::Gather(gathering) => gathering.add(batch),
                        }
                        .map_err(external)?;
                    }
                }
                match &mut records {
                    Records::Stream(segments) => {
                        writer.written = segments.finish().map_err(external)?;
                        writer.kept = segments.kept();
                    }
                    Records::Gather(gathering) => {
                        gathering.input_ended(&tx)?;
                        while let Some(shard) = gathering.next_shard() {
                            writer.write_shard(shard).map_err(external)?;
                        }
                    }
                }
                writer.finish(&handle).map_err(external)
            })();
            match written {
                Ok(result) => {
                    let _ = tx.blocking_send(Ok(result));
                    Ok(())
                }
                Err(e) => {
                    if let Records::Gather(gathering) = &records {
                        gathering.fail();
                    }
                    Err(e)
                }
            }
        });
        Ok(builder.build())
    }
}

/// Where a writer partition's records go: straight to segment files, or into the buffer the partitions share.
enum Records {
    Stream(Box<SegmentWriter>),
    Gather(Arc<Gathering>),
}

/// The buffer that the writer's partitions fill, and the shards they then write, handed out one at a time.
struct Gathering {
    state: Mutex<GatheringState>,
    /// Signalled when the last input ends, or a partition fails.
    changed: Condvar,
}

struct GatheringState {
    buffer: Option<ShardBuffer>,
    /// Partitions whose input has not ended yet.
    open_inputs: usize,
    /// Once every input has ended: the shards not yet taken.
    shards: VecDeque<BufferedShard>,
    failed: bool,
}

impl fmt::Debug for Gathering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gathering").field("open_inputs", &self.lock().open_inputs).finish_non_exhaustive()
    }
}

impl Gathering {
    fn new(partitions: usize, buffer: ShardBuffer) -> Self {
        let state =
            GatheringState { buffer: Some(buffer), open_inputs: partitions, shards: VecDeque::new(), failed: false };
        Gathering { state: Mutex::new(state), changed: Condvar::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GatheringState> {
        // A partition that panicked fails the job anyway; the others only need the state to stop waiting.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, batch: RecordBatch) -> Result<()> {
        match self.lock().buffer.as_mut() {
            Some(buffer) => buffer.add(batch),
            None => Err(Error::InvalidSetting { name: "plan", reason: "a ShardWriterExec plan runs once".into() }),
        }
    }

    /// Marks this partition's input as ended and waits for the others (returning early if the job is cancelled,
    /// which closes `tx`). The last one hands the shards out.
    fn input_ended(&self, tx: &Sender<DfResult<RecordBatch>>) -> DfResult<()> {
        let mut state = self.lock();
        let Some(open) = state.open_inputs.checked_sub(1) else {
            return Err(DataFusionError::Execution("a ShardWriterExec plan runs once".into()));
        };
        state.open_inputs = open;
        if open == 0 {
            let buffer = state.buffer.take().expect("the buffer until every input ends");
            state.shards = buffer.into_shards().into();
            self.changed.notify_all();
        }
        while state.open_inputs > 0 && !state.failed {
            if tx.is_closed() {
                return Err(DataFusionError::Execution("the prepare job was cancelled".into()));
            }
            state = match self.changed.wait_timeout(state, Duration::from_millis(100)) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        if state.failed {
            return Err(DataFusionError::Execution("another shard writer failed".into()));
        }
        Ok(())
    }

    fn next_shard(&self) -> Option<BufferedShard> {
        let mut state = self.lock();
        if state.failed { None } else { state.shards.pop_front() }
    }

    fn fail(&self) {
        self.lock().failed = true;
        self.changed.notify_all();
    }
}

fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One written file, as the result reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    pub file: String,
    pub split: String,
    pub shard: u32,
    /// For a segment of a streamed shard (see [`super::segment`]): its input object.
    pub object: Option<usize>,
    pub rows: u64,
    pub bytes: u64,
    pub tokens: Option<u64>,
    pub sha256: String,
}

struct PartitionWriter {
    options: ShardOptions,
    written: Vec<WrittenFile>,
    kept: BTreeMap<(String, i32), u64>,
    dropped: BTreeMap<(String, i32), u64>,
    syncs: Vec<std::thread::JoinHandle<Result<()>>>,
}

impl PartitionWriter {
    fn new(options: ShardOptions) -> Self {
        PartitionWriter {
            options,
            written: Vec::new(),
            kept: BTreeMap::new(),
            dropped: BTreeMap::new(),
            syncs: Vec::new(),
        }
    }

    /// Adds up the tally rows of `batch` (rows with a `count`: dropped rows, by reason and rating); returns how many
    /// records it holds (rows not dropped). Dropped rows without a count are counted in a tally row already.
    fn count_dropped(&mut self, batch: &RecordBatch) -> usize {
        let column = |name: &str| batch.column_by_name(name).expect("checked in try_new");
        let dropped = column(DROPPED).as_string::<i32>();
        let ratings = column("star_rating").as_primitive::<Int32Type>();
        let counts = column(COUNT).as_primitive::<UInt64Type>();
        if counts.null_count() < counts.len() {
            for i in (0..batch.num_rows()).filter(|&i| counts.is_valid(i)) {
                *self.dropped.entry((dropped.value(i).to_owned(), ratings.value(i))).or_default() += counts.value(i);
            }
        }
        dropped.null_count()
    }

    /// Writes one shard's files, in record order. They sync on a thread of their own: waiting for the disk here
    /// would hold up the next shard.
    fn write_shard(&mut self, shard: BufferedShard) -> Result<()> {
        let mut files = ShardFiles::create(&self.options, &shard.name.split, shard.name.shard)?;
        let mut per_rating: BTreeMap<i32, u64> = BTreeMap::new();
        shard.for_each_chunk(|chunk| {
            for &rating in &chunk.ratings {
                *per_rating.entry(rating).or_default() += 1;
            }
            files.write(chunk)
        })?;
        for (rating, n) in per_rating {
            *self.kept.entry((files.split.clone(), rating)).or_default() += n;
        }
        let (written, files) = files.finish()?;
        self.written.extend(written);
        self.syncs.push(std::thread::spawn(move || sync(files)));
        Ok(())
    }

    fn finish(mut self, runtime: &Handle) -> Result<RecordBatch> {
        for handle in self.syncs.drain(..) {
            handle.join().expect("a sync thread does not panic")?;
        }
        if let Some(dir) = &self.options.upload {
            for f in &self.written {
                let local = self.options.staging.join(&f.file);
                runtime.block_on(dir.upload(&local, &f.file))?;
                std::fs::remove_file(&local).map_err(Error::io(&local))?;
            }
        }
        let mut rows = ResultRows::default();
        for f in &self.written {
            rows.push(Some(&f.file), Some(&f.split), Some(f.shard as i32), None, None, f.rows);
            rows.last_file(f.bytes, f.tokens, &f.sha256, f.object);
        }
        for ((split, rating), n) in &self.kept {
            rows.push(None, Some(split), None, None, Some(*rating), *n);
        }
        for ((reason, rating), n) in &self.dropped {
            rows.push(None, None, None, Some(reason), Some(*rating), *n);
        }
        rows.finish()
    }
}

/// Builds the result table row by row.
#[derive(Default)]
struct ResultRows {
    file: StringBuilder,
    split: StringBuilder,
    shard: Vec<Option<i32>>,
    dropped: StringBuilder,
    star_rating: Vec<Option<i32>>,
    rows: UInt64Builder,
    bytes: UInt64Builder,
    tokens: UInt64Builder,
    sha256: StringBuilder,
    object: UInt64Builder,
}

impl ResultRows {
    fn push(
        &mut self,
        file: Option<&str>,
        split: Option<&str>,
        shard: Option<i32>,
        dropped: Option<&str>,
        star_rating: Option<i32>,
        rows: u64,
    ) {
        self.file.append_option(file);
        self.split.append_option(split);
        self.shard.push(shard);
        self.dropped.append_option(dropped);
        self.star_rating.push(star_rating);
        self.rows.append_value(rows);
        if file.is_none() {
            self.bytes.append_null();
            self.tokens.append_null();
            self.sha256.append_null();
            self.object.append_null();
        }
    }

    fn last_file(&mut self, bytes: u64, tokens: Option<u64>, sha256: &str, object: Option<usize>) {
        self.bytes.append_value(bytes);
        self.tokens.append_option(tokens);
        self.sha256.append_value(sha256);
        self.object.append_option(object.map(|o| o as u64));
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.file.finish()),
            Arc::new(self.split.finish()),
            Arc::new(Int32Array::from(self.shard)),
            Arc::new(self.dropped.finish()),
            Arc::new(Int32Array::from(self.star_rating)),
            Arc::new(self.rows.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.tokens.finish()),
            Arc::new(self.sha256.finish()),
            Arc::new(self.object.finish()),
        ];
        RecordBatch::try_new(result_schema(), columns)
            .map_err(|source| Error::Arrow { path: "shard writer result".into(), source })
    }
}

/// The files of one shard while it is written.
struct ShardFiles {
    split: String,
    shard: u32,
    text_path: PathBuf,
    text: File,
    hash: Sha256,
    rows: u64,
    bytes: u64,
    tokens: Option<(Arc<dyn Tokenize>, PathBuf, TokenWriter)>,
    parquet: Option<(PathBuf, ArrowWriter<File>)>,
}

/// The Parquet shard's columns.
fn parquet_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("text", DataType::Utf8, false),
        Field::new("star_rating", DataType::Int32, false),
    ]))
}

impl ShardFiles {
    fn create(options: &ShardOptions, split: &str, shard: u32) -> Result<Self> {
        let path = |ext: &str| options.staging.join(shard_name(split, shard, options.shards, ext));
        let text_path = path("txt");
        let text = File::create(&text_path).map_err(Error::io(&text_path))?;
        let tokens = match &options.tokenizer {
            Some(tokenizer) => {
                let bin = path("bin");
                let writer = TokenWriter::create(&bin, tokenizer.vocab_size(), tokenizer.end_of_text())?;
                Some((Arc::clone(tokenizer), bin, writer))
            }
            None => None,
        };
        let parquet = match options.parquet {
            true => {
                let file_path = path("parquet");
                let file = File::create(&file_path).map_err(Error::io(&file_path))?;
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(64 * 1024))
                    .build();
                let writer = ArrowWriter::try_new(file, parquet_schema(), Some(props))
                    .map_err(|source| Error::Parquet { path: file_path.clone(), source })?;
                Some((file_path, writer))
            }
            false => None,
        };
        Ok(ShardFiles {
            split: split.to_owned(),
            shard,
            text_path,
            text,
            hash: Sha256::new(),
            rows: 0,
            bytes: 0,
            tokens,
            parquet,
        })
    }

    /// Writes a chunk of records, in order: one record per line. The text goes from the buffered batches
    /// straight to the file, with no copy in between: one `writev` per 512 records (the kernel takes 1,024 slices
    /// a call), each group hashed just before, while it is in the cache. Key order visits the buffer at random,
    /// so each record's bytes are prefetched a few records ahead.
    fn write(&mut self, chunk: &Chunk<'_>) -> Result<()> {
        let mut slices = Vec::with_capacity(1024);
        for (i, group) in chunk.texts.chunks(512).enumerate() {
            slices.clear();
            for (j, text) in group.iter().enumerate() {
                if let Some(next) = chunk.texts.get(i * 512 + j + PREFETCH_AHEAD) {
                    prefetch(next.as_bytes());
                }
                self.hash.update(text.as_bytes());
                self.hash.update(b"\n");
                self.bytes += text.len() as u64 + 1;
                slices.push(IoSlice::new(text.as_bytes()));
                slices.push(IoSlice::new(b"\n"));
            }
            write_all_vectored(&mut self.text, &mut slices).map_err(Error::io(&self.text_path))?;
        }
        self.rows += chunk.texts.len() as u64;
        if let Some((tokenizer, bin, writer)) = &mut self.tokens {
            // A record's tokens end with its newline, as the text shard has it.
            let records: Vec<String> = chunk.texts.iter().map(|t| format!("{t}\n")).collect();
            let records: Vec<&str> = records.iter().map(String::as_str).collect();
            let ids =
                tokenizer.encode_batch(&records).map_err(|reason| Error::Tokenize { path: bin.clone(), reason })?;
            for record in &ids {
                writer.write(record)?;
            }
        }
        if let Some((path, writer)) = &mut self.parquet {
            let texts = StringArray::from(chunk.texts.clone());
            let columns: Vec<ArrayRef> = vec![Arc::new(texts), Arc::new(Int32Array::from(chunk.ratings.clone()))];
            let batch = RecordBatch::try_new(parquet_schema(), columns)
                .map_err(|source| Error::Arrow { path: path.clone(), source })?;
            writer.write(&batch).map_err(|source| Error::Parquet { path: path.clone(), source })?;
        }
        Ok(())
    }

    /// Flushes every file; returns what was written, and the files, which the caller syncs.
    fn finish(self) -> Result<(Vec<WrittenFile>, UnsyncedFiles)> {
        let name = |path: &Path| path.file_name().expect("a file").to_string_lossy().into_owned();
        let mut files = vec![(self.text_path.clone(), self.text)];
        let entry = |file: String, bytes: u64, tokens: Option<u64>, sha256: String| WrittenFile {
            file,
            split: self.split.clone(),
            shard: self.shard,
            object: None,
            rows: self.rows,
            bytes,
            tokens,
            sha256,
        };
        let mut written = vec![entry(name(&self.text_path), self.bytes, None, hex(&self.hash.finalize()))];
        if let Some((_, bin, writer)) = self.tokens {
            let (tokens, file) = writer.finish()?;
            let (bytes, sha256) = hash_file(&bin)?;
            written.push(entry(name(&bin), bytes, Some(tokens), sha256));
            files.push((bin, file));
        }
        if let Some((path, writer)) = self.parquet {
            let file = writer.into_inner().map_err(|source| Error::Parquet { path: path.clone(), source })?;
            let (bytes, sha256) = hash_file(&path)?;
            written.push(entry(name(&path), bytes, None, sha256));
            files.push((path, file));
        }
        Ok((written, files))
    }
}

/// Writes all of `slices`, however many calls it takes.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Files written and flushed, but not yet synced to disk.
type UnsyncedFiles = Vec<(PathBuf, File)>;

/// Syncs files to disk, so that the renames at commit never expose a file whose data a crash could lose.
fn sync(files: UnsyncedFiles) -> Result<()> {
    files.into_iter().try_for_each(|(path, file)| file.sync_data().map_err(Error::io(&path)))
}

/// Writes the files of a shard that received no records: an empty text file, and the empty token and Parquet
/// shards, so that every shard of `-of-N` exists.
pub fn write_empty(options: &ShardOptions, split: &str, shard: u32) -> Result<Vec<WrittenFile>> {
    let (written, files) = ShardFiles::create(options, split, shard)?.finish()?;
    sync(files)?;
    Ok(written)
}

/// Size and sha256 of a file.
pub(super) fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = File::open(path).map_err(Error::io(path))?;
    let (mut hash, mut buf, mut bytes) = (Sha256::new(), vec![0u8; 1 << 20], 0u64);
    loop {
        let n = file.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hash.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
