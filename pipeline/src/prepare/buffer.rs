//! `ShardBuffer`: the records of the shards that a writer writes, held until its input ends, then handed out one
//! shard at a time in record order (see [`order`]). The writer uses it where records may arrive out of input order
//! (a cluster's shuffle, `--dedup`'s window, a plan that repartitions) or with token or Parquet shards; otherwise
//! the records stream straight to the files (see [`super::segment`]), in the same order.
//!
//! A shard's records may arrive in any order here, so nothing can be written before the input ends.
//! The buffer keeps the text and rating columns of the input batches as they are and, per shard, a small index entry
//! per record; at the end each shard's entries are sorted and the writer sends the texts straight from the batches
//! to the file. (A `SortExec` in front of the writer did the same job with two more copies of all the text: one
//! sorting each batch, one merging them.) Past its share of the memory pool, the buffer spills: it writes each
//! shard's records, sorted, to a run file, and merges the runs when the shard is written.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use datafusion::arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Int32Type, UInt64Type};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::disk_manager::DiskManager;
use datafusion::execution::memory_pool::MemoryReservation;
use datafusion::execution::spill_file::SpillFile;

use super::tally::DROPPED;
use super::udf::splitmix64;
use crate::batch::ROW_POSITION_NAME;
use crate::{Error, Result};

/// One buffered record: its position (`row_position`), and where its text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    key: u64,
    batch: u32,
    row: u32,
}

/// The order of records in a shard: by position in the inputs (`row_position`: object, then line), then records
/// of one position (only a `--sql` query that repeats rows makes them) by [`record_hash`] of their text and rating.
/// The hash is taken only for such ties; the result is the same in every run and every partitioning.
fn order(batches: &[Records], a: &Entry, b: &Entry) -> Ordering {
    a.key.cmp(&b.key).then_with(|| tie_break(batches, a).cmp(&tie_break(batches, b)))
}

fn tie_break(batches: &[Records], entry: &Entry) -> u64 {
    let (text, rating) = batches[entry.batch as usize].get(entry.row as usize);
    record_hash(text, rating)
}

/// A stable hash of a record's text and rating, eight bytes at a time (multiply-rotate, then SplitMix64's
/// finaliser), which orders records of the same key.
fn record_hash(text: &str, star_rating: i32) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes = text.as_bytes();
    let mut hash = (bytes.len() as u64) ^ (u64::from(star_rating as u32) << 32);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        hash = (hash ^ word).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    splitmix64(hash ^ u64::from_le_bytes(tail))
}

/// A shard, as the writer names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardName {
    pub split: String,
    pub shard: u32,
}

/// Dense shard indexes, `split * shards + shard`, with the split names learnt in order of first appearance.
pub struct ShardIndexes {
    shards: u32,
    splits: Vec<String>,
}

impl ShardIndexes {
    pub fn new(shards: u32) -> Self {
        ShardIndexes { shards, splits: Vec::new() }
    }

    /// The index of a shard (which the query gave: it is checked). A new split adds `shards` indexes: callers size
    /// what they keep per index to [`Self::count`].
    pub fn index(&mut self, split: &str, shard: i32) -> Result<usize> {
        let shard = u32::try_from(shard).ok().filter(|&s| s < self.shards).ok_or_else(|| Error::InvalidSetting {
            name: "shard",
            reason: format!("the prepare query gave shard {shard}, which is not in 0..{}", self.shards),
        })?;
        let split = match self.splits.iter().position(|s| s == split) {
            Some(at) => at,
            None => {
                self.splits.push(split.to_owned());
                self.splits.len() - 1
            }
        };
        Ok(split * self.shards as usize + shard as usize)
    }

    /// Shards per split.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// How many indexes there are so far.
    pub fn count(&self) -> usize {
        self.splits.len() * self.shards as usize
    }

    /// The split and shard of an index.
    pub fn name(&self, index: usize) -> ShardName {
        let shards = self.shards as usize;
        ShardName { split: self.splits[index / shards].clone(), shard: (index % shards) as u32 }
    }

    /// The split of an index.
    pub fn split(&self, index: usize) -> &str {
        &self.splits[index / self.shards as usize]
    }
}

pub struct ShardBuffer {
    indexes: ShardIndexes,
    batches: Vec<Records>,
    /// Per shard index: the records in memory.
    rows: Vec<Vec<Entry>>,
    /// Per shard index: its sorted runs on disk.
    runs: Vec<Vec<Arc<dyn SpillFile>>>,
    /// Per shard index: records added, in memory or spilled.
    records: Vec<usize>,
    reservation: MemoryReservation,
    disk: Arc<DiskManager>,
}

impl ShardBuffer {
    pub fn new(shards: u32, reservation: MemoryReservation, disk: Arc<DiskManager>) -> Self {
        ShardBuffer {
            indexes: ShardIndexes::new(shards),
            batches: Vec::new(),
            rows: Vec::new(),
            runs: Vec::new(),
            records: Vec::new(),
            reservation,
            disk,
        }
    }

    /// Adds the records of `batch` (the rows whose `dropped` is NULL), spilling first if the memory pool has no
    /// room for the batch.
    pub fn add(&mut self, batch: RecordBatch) -> Result<()> {
        let column = |name: &str| batch.column_by_name(name).expect("checked by the writer");
        let dropped = column(DROPPED).as_string::<i32>();
        let records = Records::new(&batch);
        // An index entry per record (rows dropped and counted get none).
        let size = records.memory_size() + dropped.null_count() * size_of::<Entry>();
        if self.reservation.try_grow(size).is_err() {
            self.spill()?;
            // Alone, the batch may still be over the share; it is held anyway, as a sort would.
            self.reservation.grow(size);
        }
        let splits = column("split").as_string::<i32>();
        let shards = column("shard").as_primitive::<Int32Type>();
        let keys = column(ROW_POSITION_NAME).as_primitive::<UInt64Type>();
        let batch_index = self.batches.len() as u32;
        for row in (0..batch.num_rows()).filter(|&row| dropped.is_null(row)) {
            let index = self.index(splits.value(row), shards.value(row))?;
            let entry = Entry { key: keys.value(row), batch: batch_index, row: row as u32 };
            self.rows[index].push(entry);
            self.records[index] += 1;
        }
        self.batches.push(records);
        Ok(())
    }

    /// The dense index of a shard, with room for it.
    fn index(&mut self, split: &str, shard: i32) -> Result<usize> {
        let index = self.indexes.index(split, shard)?;
        let total = self.indexes.count();
        if self.rows.len() < total {
            self.rows.resize_with(total, Vec::new);
            self.runs.resize_with(total, Vec::new);
            self.records.resize(total, 0);
        }
        Ok(index)
    }

    /// Writes every shard's records in memory to a sorted run file of its own, and lets go of the batches.
    fn spill(&mut self) -> Result<()> {
        let batches = &self.batches;
        for (index, rows) in self.rows.iter_mut().enumerate() {
            if rows.is_empty() {
                continue;
            }
            rows.sort_unstable_by(|a, b| order(batches, a, b));
            let file = self.disk.create_tmp_file("revgen prepare shard run").map_err(spill_err)?;
            let mut out = BufWriter::with_capacity(1 << 20, file.open_writer().map_err(spill_err)?);
            let io_err = |e: io::Error| spill_err(e.into());
            for entry in rows.drain(..) {
                let (text, rating) = batches[entry.batch as usize].get(entry.row as usize);
                let hash = record_hash(text, rating);
                write_run_record(&mut out, (entry.key, hash), rating, text).map_err(io_err)?;
            }
            out.into_inner().map_err(|e| io_err(e.into_error()))?.finish().map_err(spill_err)?;
            self.runs[index].push(file);
        }
        self.batches.clear();
        self.reservation.free();
        Ok(())
    }

    /// The buffered shards, largest first (so that writers sharing them finish together). Each is sorted by the
    /// writer that takes it, so that the sorting too runs on every writer.
    pub fn into_shards(self) -> Vec<BufferedShard> {
        let batches = Arc::new(self.batches);
        let mut shards: Vec<BufferedShard> = self
            .rows
            .into_iter()
            .zip(self.runs)
            .zip(self.records)
            .enumerate()
            .filter(|&(_, (_, records))| records > 0)
            .map(|(index, ((rows, runs), records))| BufferedShard {
                name: self.indexes.name(index),
                batches: Arc::clone(&batches),
                rows,
                runs,
                records,
            })
            .collect();
        shards.sort_by_key(|s| Reverse(s.records));
        shards
    }
}

/// The columns of a batch that the shard files need: all the buffer keeps of it.
struct Records {
    texts: StringArray,
    ratings: Int32Array,
}

impl Records {
    fn new(batch: &RecordBatch) -> Self {
        let column = |name: &str| batch.column_by_name(name).expect("checked by the writer");
        Records { texts: column("text").as_string().clone(), ratings: column("star_rating").as_primitive().clone() }
    }

    fn get(&self, row: usize) -> (&str, i32) {
        (self.texts.value(row), self.ratings.value(row))
    }

    /// Starts loading what [`Records::get`] will read of a row: the shard writer visits rows in position order, which
    /// jumps around the buffered batches, so each lookup would otherwise wait on a cache and TLB miss.
    fn prefetch(&self, row: usize) {
        prefetch(std::slice::from_ref(&self.texts.value_offsets()[row]));
        prefetch(std::slice::from_ref(&self.ratings.values()[row]));
    }

    fn memory_size(&self) -> usize {
        self.texts.get_array_memory_size() + self.ratings.get_array_memory_size()
    }
}

/// A run record: its order (position, record_hash), rating, text length (little-endian), then the text.
fn write_run_record(out: &mut impl Write, (key, hash): (u64, u64), rating: i32, text: &str) -> io::Result<()> {
    out.write_all(&key.to_le_bytes())?;
    out.write_all(&hash.to_le_bytes())?;
    out.write_all(&rating.to_le_bytes())?;
    out.write_all(&(text.len() as u32).to_le_bytes())?;
    out.write_all(text.as_bytes())
}

/// One shard's records, sorted in memory and on disk.
pub struct BufferedShard {
    pub name: ShardName,
    batches: Arc<Vec<Records>>,
    rows: Vec<Entry>,
    runs: Vec<Arc<dyn SpillFile>>,
    records: usize,
}

/// Records in order, a chunk at a time.
#[derive(Default)]
pub struct Chunk<'a> {
    /// Each record's text, without the newline that ends it in a shard file.
    pub texts: Vec<&'a str>,
    pub ratings: Vec<i32>,
}

/// Records per chunk: enough to make each write and tokenizer call worth it.
const CHUNK_RECORDS: usize = 8192;

/// How many records ahead of the one being read the writer asks the CPU to load: a few hide the latency of a
/// miss (a microbenchmark of hashing 700 MB of records in review_key order: 1.4 s with none, 0.83-0.87 s with 1 to 8).
pub const PREFETCH_AHEAD: usize = 4;

/// Asks the CPU to start loading `bytes` into the cache; a hint, with no effect on results.
#[inline]
pub fn prefetch<T>(bytes: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let (start, len) = (bytes.as_ptr() as usize, std::mem::size_of_val(bytes));
        // One prefetch per cache line of 64 bytes.
        for line in (start & !63..start + len).step_by(64) {
            // SAFETY: SSE is part of the x86_64 baseline, and a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

impl BufferedShard {
    /// Calls `write` with the records in order, [`CHUNK_RECORDS`] at a time.
    pub fn for_each_chunk(mut self, mut write: impl FnMut(&Chunk<'_>) -> Result<()>) -> Result<()> {
        let batches = &self.batches;
        self.rows.sort_unstable_by(|a, b| order(batches, a, b));
        let record = |entry: &Entry| batches[entry.batch as usize].get(entry.row as usize);
        if self.runs.is_empty() {
            let mut chunk = Chunk::default();
            for (i, group) in self.rows.chunks(CHUNK_RECORDS).enumerate() {
                chunk.texts.clear();
                chunk.ratings.clear();
                for (j, entry) in group.iter().enumerate() {
                    if let Some(next) = self.rows.get(i * CHUNK_RECORDS + j + PREFETCH_AHEAD) {
                        batches[next.batch as usize].prefetch(next.row as usize);
                    }
                    let (text, rating) = record(entry);
                    chunk.texts.push(text);
                    chunk.ratings.push(rating);
                }
                write(&chunk)?;
            }
            return Ok(());
        }
        // Spilled: a k-way merge of the runs and the records still in memory. Texts read back from runs are
        // gathered in `arena` until the chunk is full.
        enum Text<'a> {
            Memory(&'a str),
            Arena(std::ops::Range<usize>),
        }
        let mut runs = self.runs.iter().map(RunReader::open).collect::<Result<Vec<_>>>()?;
        let mut memory = self.rows.iter().peekable();
        let mut heads = BinaryHeap::new();
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some((key, hash)) = run.next()? {
                heads.push(Reverse((key, hash, i)));
            }
        }
        let memory_source = runs.len();
        // Records in memory join the merge by the same order as the runs': (position, record_hash).
        if let Some(entry) = memory.peek() {
            heads.push(Reverse((entry.key, tie_break(batches, entry), memory_source)));
        }
        let (mut arena, mut texts, mut ratings) = (Vec::<u8>::new(), Vec::new(), Vec::new());
        let mut flush = |arena: &mut Vec<u8>, texts: &mut Vec<Text<'_>>, ratings: &mut Vec<i32>| -> Result<()> {
            let arena_text = std::str::from_utf8(arena).expect("texts of str");
            let texts = texts.drain(..).map(|t| match t {
                Text::Memory(text) => text,
                Text::Arena(range) => &arena_text[range],
            });
            write(&Chunk { texts: texts.collect(), ratings: std::mem::take(ratings) })?;
            arena.clear();
            Ok(())
        };
        while let Some(Reverse((_, _, source))) = heads.pop() {
            if source == memory_source {
                let entry = memory.next().expect("a head of memory");
                let (text, rating) = record(entry);
                texts.push(Text::Memory(text));
                ratings.push(rating);
                if let Some(next) = memory.peek() {
                    heads.push(Reverse((next.key, tie_break(batches, next), memory_source)));
                }
            } else {
                let run = &mut runs[source];
                texts.push(Text::Arena(arena.len()..arena.len() + run.text.len()));
                arena.extend_from_slice(&run.text);
                ratings.push(run.rating);
                if let Some((key, hash)) = run.next()? {
                    heads.push(Reverse((key, hash, source)));
                }
            }
            if texts.len() == CHUNK_RECORDS {
                flush(&mut arena, &mut texts, &mut ratings)?;
            }
        }
        if !texts.is_empty() {
            flush(&mut arena, &mut texts, &mut ratings)?;
        }
        Ok(())
    }
}

/// Reads a run file back, a record at a time.
struct RunReader {
    input: BufReader<SpillReader>,
    rating: i32,
    text: Vec<u8>,
}

impl RunReader {
    fn open(file: &Arc<dyn SpillFile>) -> Result<Self> {
        // A file on local disk (the default disk manager's) is read directly; another backend through its stream.
        let input = match file.path() {
            Some(path) => SpillReader::File(std::fs::File::open(path).map_err(|e| spill_err(e.into()))?),
            None => SpillReader::Stream {
                chunks: futures::executor::block_on_stream(file.read_stream().map_err(spill_err)?),
                current: Bytes::new(),
            },
        };
        Ok(RunReader { input: BufReader::with_capacity(1 << 20, input), rating: 0, text: Vec::new() })
    }

    /// Reads the next record into `rating` and `text`; returns its order, or None at the end.
    fn next(&mut self) -> Result<Option<(u64, u64)>> {
        let mut header = [0u8; 24];
        match self.input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(spill_err(e.into())),
        }
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let (key, hash) = (word(0), word(8));
        self.rating = i32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes")) as usize;
        self.text.resize(len, 0);
        self.input.read_exact(&mut self.text).map_err(|e| spill_err(e.into()))?;
        Ok(Some((key, hash)))
    }
}

/// A spill file as a blocking reader (the writers run on blocking threads).
enum SpillReader {
    File(std::fs::File),
    Stream { chunks: futures::executor::BlockingStream<SpillStream>, current: Bytes },
}

type SpillStream = std::pin::Pin<Box<dyn futures::Stream<Item = DfResult<Bytes>> + Send>>;

impl Read for SpillReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (chunks, current) = match self {
            SpillReader::File(file) => return file.read(buf),
            SpillReader::Stream { chunks, current } => (chunks, current),
        };
        while current.is_empty() {
            match chunks.next() {
                Some(chunk) => *current = chunk.map_err(io::Error::other)?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(current.len());
        current.copy_to_slice(&mut buf[..n]);
        Ok(n)
    }
}

fn spill_err(e: DataFusionError) -> Error {
    Error::DataFusion { context: "spilling shard records".into(), source: Box::new(e) }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use datafusion::arrow::array::UInt64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::disk_manager::DiskManagerBuilder;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryPool};

    /// Writer input rows (split, shard, row_position, text), all kept, rated 5.
    pub(in crate::prepare) fn batch(rows: &[(&str, u32, u64, &str)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(DROPPED, DataType::Utf8, true),
            Field::new("star_rating", DataType::Int32, false),
            Field::new("split", DataType::Utf8, true),
            Field::new("shard", DataType::Int32, true),
            Field::new(ROW_POSITION_NAME, DataType::UInt64, true),
            Field::new("text", DataType::Utf8, true),
        ]);
        let n = rows.len();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(Int32Array::from(vec![5; n])),
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(Int32Array::from(rows.iter().map(|r| r.1 as i32).collect::<Vec<_>>())),
                Arc::new(UInt64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
                Arc::new(StringArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    fn written(buffer: ShardBuffer) -> Vec<(String, u32, String)> {
        let mut out = Vec::new();
        for shard in buffer.into_shards() {
            let name = shard.name.clone();
            shard
                .for_each_chunk(|chunk| {
                    let lines: String = chunk.texts.iter().map(|t| format!("{t}\n")).collect();
                    out.push((name.split.clone(), name.shard, lines));
                    Ok(())
                })
                .unwrap();
        }
        out.sort();
        out
    }

    fn buffer(pool_bytes: usize) -> ShardBuffer {
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(pool_bytes));
        let reservation = MemoryConsumer::new("test").with_can_spill(true).register(&pool);
        ShardBuffer::new(2, reservation, Arc::new(DiskManagerBuilder::default().build().unwrap()))
    }

    #[test]
    fn shards_come_out_in_position_order_spilled_or_not() {
        let batches = [
            batch(&[("train", 0, 30, "c"), ("train", 1, 5, "x"), ("val", 0, 1, "v")]),
            batch(&[("train", 0, 10, "a"), ("train", 0, 20, "b")]),
            batch(&[("train", 0, 15, "ab"), ("train", 1, 4, "w"), ("train", 0, 20, "bb")]),
        ];
        // Two records at position 20: by record_hash.
        let (first, second) = if record_hash("b", 5) < record_hash("bb", 5) { ("b", "bb") } else { ("bb", "b") };
        let expected = vec![
            ("train".to_owned(), 0, format!("a\nab\n{first}\n{second}\nc\n")),
            ("train".to_owned(), 1, "w\nx\n".to_owned()),
            ("val".to_owned(), 0, "v\n".to_owned()),
        ];
        // Room for everything, and room for no batch at all (every add spills what came before).
        for pool in [1 << 30, 1] {
            let mut buffer = buffer(pool);
            for b in &batches {
                buffer.add(b.clone()).unwrap();
            }
            let spilled = buffer.runs.iter().map(Vec::len).sum::<usize>();
            assert_eq!(spilled > 0, pool == 1);
            assert_eq!(written(buffer), expected, "pool {pool}");
        }
    }

    #[test]
    fn record_hashes_see_every_byte_and_the_rating() {
        let text = "<|startoftext|> 5|||Great|||Works.<|endoftext|>";
        assert_eq!(record_hash(text, 5), record_hash(text, 5));
        assert_ne!(record_hash(text, 5), record_hash(text, 4));
        assert_ne!(record_hash(text, 5), record_hash(&text.replace("Works.", "Works!"), 5));
        assert_ne!(record_hash("abcdefgh", 1), record_hash("abcdefgh\0", 1), "the length counts");
    }

    #[test]
    fn a_shard_out_of_range_is_an_error() {
        let err = buffer(1 << 30).add(batch(&[("train", 2, 1, "x")])).unwrap_err().to_string();
        assert!(err.contains("shard 2"), "{err}");
    }
}
