//! Streaming text shards: where the writer's input arrives in input order (a local plan that neither shuffles nor
//! sorts: see [`preserves_input_order`]), each record goes to its shard file as soon as it arrives, and nothing is
//! held until the input ends.
//!
//! A writer partition reads whole input objects, one after the other, so it writes one *segment* per (input object,
//! shard): `train-00003-of-00016.txt.000002.part` holds object 2's records of that shard, in line order. When the
//! job ends, [`assemble`] makes each shard from its segments in object order: a rename when there is one (a
//! single-object input), else a concatenation. That is the order [`super::buffer`] sorts into where records arrive
//! out of order, so a shard's bytes do not depend on which path wrote it, nor on the partitioning.
//!
//! Records are copied into a buffer per shard; full buffers go to an I/O thread, which hashes them (sha256) and
//! writes them, so that hashing and the copies into the page cache overlap the query.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int32Type, UInt64Type};
use datafusion::physical_plan::ExecutionPlan;
use sha2::{Digest, Sha256};

use super::buffer::{ShardIndexes, ShardName};
use super::shard::{WrittenFile, hex, shard_name};
use super::tally::DROPPED;
use crate::batch::{ROW_POSITION_NAME, position_object};
use crate::{Error, Result};

/// Whether every operator between the shard writer and the scan keeps each partition's rows in the scan's order:
/// only then may records be written as they arrive. Anything unknown counts as not (the buffered path is right
/// for any plan, only slower).
pub fn preserves_input_order(plan: &Arc<dyn ExecutionPlan>) -> bool {
    const KEEPS_ORDER: [&str; 6] =
        ["ProjectionExec", "FilterExec", "TallyExec", "CoalesceBatchesExec", "CooperativeExec", "ReviewsScan"];
    KEEPS_ORDER.contains(&plan.name()) && plan.children().into_iter().all(preserves_input_order)
}

/// The name of a segment file: its shard's file name and the input object.
fn segment_name(split: &str, shard: u32, shards: u32, object: usize) -> String {
    format!("{}.{object:06}.part", shard_name(split, shard, shards, "txt"))
}

/// Bytes buffered per shard before a write: 1 MiB, less with many shards (~64 MiB in all).
fn buffer_bytes(shard_files: usize) -> usize {
    ((64 << 20) / shard_files.max(1)).clamp(4 << 10, 1 << 20)
}

/// Shard files that the writers of one job may have open at once: above it, the job takes the buffered path,
/// which writes one shard at a time (a process may open 1,024 files by default).
pub const MAX_OPEN_SHARD_FILES: usize = 512;

/// One writer partition's segments while it streams.
pub struct SegmentWriter {
    staging: PathBuf,
    indexes: ShardIndexes,
    /// The input object whose records are arriving, and the last position seen (positions only increase).
    object: Option<usize>,
    last_position: Option<u64>,
    /// Per shard index: the current object's open segment.
    open: Vec<Option<Open>>,
    /// Every segment so far, by id.
    segments: Vec<Segment>,
    /// Kept records per shard index and star_rating 1..=5 (index 0 unused), and of any other rating (a `--sql`
    /// query's) per (split, rating).
    kept: Vec<[u64; 6]>,
    kept_other: BTreeMap<(String, i32), u64>,
    buffer_bytes: usize,
    io: Option<Io>,
}

struct Open {
    id: usize,
    buffer: Vec<u8>,
}

struct Segment {
    split: String,
    shard: u32,
    object: usize,
    path: Arc<Path>,
    rows: u64,
}

/// The I/O thread: it receives full buffers, hashes and writes them, and hands the buffers back.
struct Io {
    jobs: SyncSender<Job>,
    empty: Receiver<Vec<u8>>,
    thread: JoinHandle<Result<Vec<Hashed>>>,
}

enum Job {
    /// Append `bytes` to a segment (created at its first write).
    Write { segment: usize, path: Arc<Path>, bytes: Vec<u8> },
    /// The segment is complete.
    Close { segment: usize },
}

/// A segment as the I/O thread finished it.
struct Hashed {
    bytes: u64,
    sha256: String,
}

impl SegmentWriter {
    pub fn new(staging: &Path, shards: u32) -> Self {
        let (jobs, jobs_rx) = sync_channel::<Job>(8);
        let (empty_tx, empty) = sync_channel::<Vec<u8>>(16);
        let thread = std::thread::spawn(move || write_segments(jobs_rx, empty_tx));
        SegmentWriter {
            staging: staging.to_owned(),
            indexes: ShardIndexes::new(shards),
            object: None,
            last_position: None,
            open: Vec::new(),
            segments: Vec::new(),
            kept: Vec::new(),
            kept_other: BTreeMap::new(),
            buffer_bytes: buffer_bytes(2 * shards as usize),
            io: Some(Io { jobs, empty, thread }),
        }
    }

    /// Adds the records of `batch` (rows whose `dropped` is NULL) to their segments.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = |name: &str| batch.column_by_name(name).expect("checked by the writer");
        let dropped = column(DROPPED).as_string::<i32>();
        let splits = column("split").as_string::<i32>();
        let shards = column("shard").as_primitive::<Int32Type>();
        let positions = column(ROW_POSITION_NAME).as_primitive::<UInt64Type>();
        let ratings = column("star_rating").as_primitive::<Int32Type>();
        let texts = column("text").as_string::<i32>();
        for row in (0..batch.num_rows()).filter(|&row| dropped.is_null(row)) {
            let position = positions.value(row);
            if self.last_position.is_some_and(|last| position <= last) {
                return Err(Error::InvalidSetting {
                    name: "plan",
                    reason: format!(
                        "records reached the streaming shard writer out of input order (row_position {position} \
                         after {}); this is a bug, please report it",
                        self.last_position.unwrap_or_default()
                    ),
                });
            }
            self.last_position = Some(position);
            let object = position_object(position);
            if self.object != Some(object) {
                self.flush_all()?;
                self.object = Some(object);
            }
            let index = self.index(splits.value(row), shards.value(row))?;
            if self.open[index].is_none() {
                let ShardName { split, shard } = self.indexes.name(index);
                let path: Arc<Path> =
                    self.staging.join(segment_name(&split, shard, self.indexes.shards(), object)).into();
                self.segments.push(Segment { split, shard, object, path, rows: 0 });
                let buffer = Vec::with_capacity(self.buffer_bytes);
                self.open[index] = Some(Open { id: self.segments.len() - 1, buffer });
            }
            let open = self.open[index].as_mut().expect("opened above");
            open.buffer.extend_from_slice(texts.value(row).as_bytes());
            open.buffer.push(b'\n');
            self.segments[open.id].rows += 1;
            let rating = ratings.value(row);
            match rating {
                1..=5 => self.kept[index][rating as usize] += 1,
                _ => *self.kept_other.entry((self.indexes.split(index).to_owned(), rating)).or_default() += 1,
            }
            if open.buffer.len() >= self.buffer_bytes {
                let id = open.id;
                self.send(id, index)?;
            }
        }
        Ok(())
    }

    /// The dense index of a shard, with room for it.
    fn index(&mut self, split: &str, shard: i32) -> Result<usize> {
        let index = self.indexes.index(split, shard)?;
        if self.open.len() < self.indexes.count() {
            self.open.resize_with(self.indexes.count(), || None);
            self.kept.resize(self.indexes.count(), [0; 6]);
        }
        Ok(index)
    }

    /// Hands the buffer of the open segment at `index` to the I/O thread, and takes an empty one back.
    fn send(&mut self, id: usize, index: usize) -> Result<()> {
        let io = self.io.as_ref().expect("open until finish");
        let fresh = io.empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(self.buffer_bytes));
        let open = self.open[index].as_mut().expect("an open segment");
        let bytes = std::mem::replace(&mut open.buffer, fresh);
        self.submit(Job::Write { segment: id, path: Arc::clone(&self.segments[id].path), bytes })
    }

    /// Hands a job to the I/O thread; if it has stopped, its error.
    fn submit(&mut self, job: Job) -> Result<()> {
        let io = self.io.as_ref().expect("open until finish");
        if io.jobs.send(job).is_ok() {
            return Ok(());
        }
        // The thread stopped at an error: report it.
        let io = self.io.take().expect("open until finish");
        match io.thread.join().expect("the segment I/O thread does not panic") {
            Err(e) => Err(e),
            Ok(_) => unreachable!("the I/O thread runs until its jobs end"),
        }
    }

    /// Sends every open segment's buffer and closes them (the input moved on to another object, or ended).
    fn flush_all(&mut self) -> Result<()> {
        for index in 0..self.open.len() {
            if let Some(open) = &self.open[index] {
                let id = open.id;
                if !open.buffer.is_empty() {
                    self.send(id, index)?;
                }
                self.open[index] = None;
                self.submit(Job::Close { segment: id })?;
            }
        }
        Ok(())
    }

    /// Kept records per (split, star_rating), so far.
    pub fn kept(&self) -> BTreeMap<(String, i32), u64> {
        let mut kept = self.kept_other.clone();
        for (index, per_rating) in self.kept.iter().enumerate() {
            let split = self.indexes.split(index);
            for (rating, &n) in per_rating.iter().enumerate().filter(|&(_, &n)| n > 0) {
                *kept.entry((split.to_owned(), rating as i32)).or_default() += n;
            }
        }
        kept
    }

    /// Writes what is buffered, waits for the files to reach the disk, and returns the segments written.
    pub fn finish(&mut self) -> Result<Vec<WrittenFile>> {
        self.flush_all()?;
        let Some(io) = self.io.take() else {
            return Err(Error::InvalidSetting { name: "plan", reason: "a segment writer finishes once".into() });
        };
        drop(io.jobs);
        let hashed = io.thread.join().expect("the segment I/O thread does not panic")?;
        Ok(self
            .segments
            .iter()
            .zip(hashed)
            .map(|(segment, hashed)| WrittenFile {
                file: segment.path.file_name().expect("a file").to_string_lossy().into_owned(),
                split: segment.split.clone(),
                shard: segment.shard,
                object: Some(segment.object),
                rows: segment.rows,
                bytes: hashed.bytes,
                tokens: None,
                sha256: hashed.sha256,
            })
            .collect())
    }
}

/// A segment's file on the I/O thread.
struct SegmentFile {
    path: Arc<Path>,
    file: File,
    hash: Sha256,
    bytes: u64,
}

/// Bytes written between two early syncs (see [`write_segments`]).
const SYNC_EVERY: u64 = 64 << 20;

/// The I/O thread's loop: creates each segment's file at its first buffer, hashes and writes every buffer, and at
/// the end syncs the files (in parallel: each waits on the disk) and returns their sizes and hashes by segment id.
///
/// Every [`SYNC_EVERY`] bytes it also has a thread sync the files written since the last time, so that the disk
/// writes while the job runs: left to the end, the syncs of every shard at once were a tail of 0.15-0.7 s on this
/// machine's virtual disk, with nothing else to do.
fn write_segments(jobs: Receiver<Job>, empty: SyncSender<Vec<u8>>) -> Result<Vec<Hashed>> {
    let mut files: Vec<Option<SegmentFile>> = Vec::new();
    let mut hashed: Vec<Option<Hashed>> = Vec::new();
    let mut syncs: Vec<JoinHandle<Result<()>>> = Vec::new();
    let (early, early_rx) = sync_channel::<Vec<File>>(1);
    let syncer = std::thread::spawn(move || {
        for files in early_rx {
            // An early sync only starts the disk sooner; the final sync below is the one that counts.
            files.iter().for_each(|f| drop(f.sync_data()));
        }
    });
    let (mut since_sync, mut touched) = (0u64, Vec::new());
    for job in jobs {
        let (segment, path, mut bytes) = match job {
            Job::Write { segment, path, bytes } => (segment, path, bytes),
            Job::Close { segment } => {
                // Closed when the input moves on to another object, so a job over many objects keeps only one
                // object's files open. The sync runs on a thread of its own: each waits on the disk.
                let open = files[segment].take().expect("a segment closes once, after its writes");
                hashed[segment] = Some(Hashed { bytes: open.bytes, sha256: hex(&open.hash.finalize()) });
                syncs.push(std::thread::spawn(move || open.file.sync_data().map_err(Error::io(&*open.path))));
                continue;
            }
        };
        if segment >= files.len() {
            files.resize_with(segment + 1, || None);
            hashed.resize_with(segment + 1, || None);
        }
        let open = match &mut files[segment] {
            Some(open) => open,
            slot => {
                let file = File::create(&path).map_err(Error::io(&*path))?;
                slot.insert(SegmentFile { path, file, hash: Sha256::new(), bytes: 0 })
            }
        };
        open.hash.update(&bytes);
        open.file.write_all(&bytes).map_err(Error::io(&*open.path))?;
        open.bytes += bytes.len() as u64;
        since_sync += bytes.len() as u64;
        if !touched.contains(&segment) {
            touched.push(segment);
        }
        if since_sync >= SYNC_EVERY {
            let clones = touched.drain(..).filter_map(|i| files[i].as_ref().and_then(|f| f.file.try_clone().ok()));
            // Skipped while the last round is still syncing.
            let _ = early.try_send(clones.collect());
            since_sync = 0;
        }
        bytes.clear();
        let _ = empty.try_send(bytes);
    }
    drop(early);
    syncer.join().expect("the sync thread does not panic");
    for sync in syncs {
        sync.join().expect("a sync thread does not panic")?;
    }
    Ok(hashed.into_iter().map(|h| h.expect("every segment is written and closed")).collect())
}

/// Makes shard files of the segments among `files` (those with an object): each shard's segments in object order,
/// renamed when there is one, else concatenated (and hashed again) and removed. Other files pass through.
pub fn assemble(staging: &Path, shards: u32, files: Vec<WrittenFile>) -> Result<Vec<WrittenFile>> {
    let mut out = Vec::new();
    let mut by_shard: BTreeMap<(String, u32), Vec<WrittenFile>> = BTreeMap::new();
    for f in files {
        match f.object {
            Some(_) => by_shard.entry((f.split.clone(), f.shard)).or_default().push(f),
            None => out.push(f),
        }
    }
    for ((split, shard), mut segments) in by_shard {
        segments.sort_by_key(|s| s.object);
        let name = shard_name(&split, shard, shards, "txt");
        let target = staging.join(&name);
        let rows = segments.iter().map(|s| s.rows).sum();
        let (bytes, sha256) = if let [only] = segments.as_slice() {
            let from = staging.join(&only.file);
            std::fs::rename(&from, &target).map_err(Error::io(&from))?;
            (only.bytes, only.sha256.clone())
        } else {
            concatenate(staging, &segments, &target)?
        };
        out.push(WrittenFile { file: name, split, shard, object: None, rows, bytes, tokens: None, sha256 });
    }
    Ok(out)
}

/// Writes `segments` one after the other into `target`, hashing on the way, syncs it, and removes the segments.
fn concatenate(staging: &Path, segments: &[WrittenFile], target: &Path) -> Result<(u64, String)> {
    let mut out = File::create(target).map_err(Error::io(target))?;
    let (mut hash, mut buf, mut bytes) = (Sha256::new(), vec![0u8; 1 << 20], 0u64);
    for segment in segments {
        let path = staging.join(&segment.file);
        let mut file = File::open(&path).map_err(Error::io(&path))?;
        loop {
            let n = file.read(&mut buf).map_err(Error::io(&path))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(Error::io(target))?;
            bytes += n as u64;
        }
        std::fs::remove_file(&path).map_err(Error::io(&path))?;
    }
    out.sync_data().map_err(Error::io(target))?;
    Ok((bytes, hex(&hash.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::position;
    use crate::prepare::buffer::tests::batch as writer_input;

    /// Writer input rows (shard, row_position, text) of the train split.
    fn batch(rows: &[(u32, u64, &str)]) -> RecordBatch {
        writer_input(&rows.iter().map(|&(shard, position, text)| ("train", shard, position, text)).collect::<Vec<_>>())
    }

    #[test]
    fn segments_become_shards_in_object_order() {
        let dir = std::env::temp_dir().join(format!("revgen-segments-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Two writer partitions: one reads object 1, the other objects 0 and 2.
        let mut first = SegmentWriter::new(&dir, 2);
        first.add(&batch(&[(0, position(1, 2), "b1"), (1, position(1, 3), "x1")])).unwrap();
        let mut second = SegmentWriter::new(&dir, 2);
        second.add(&batch(&[(0, position(0, 2), "a0"), (0, position(0, 7), "a0'")])).unwrap();
        second.add(&batch(&[(0, position(2, 5), "c2")])).unwrap();
        let mut files = first.finish().unwrap();
        files.extend(second.finish().unwrap());
        assert_eq!(files.len(), 4, "segments: (1, 0), (1, 1), (0, 0), (2, 0)");
        assert_eq!(first.kept(), BTreeMap::from([(("train".to_owned(), 5), 2)]));

        let shards = assemble(&dir, 2, files).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(read("train-00000-of-00002.txt"), "a0\na0'\nb1\nc2\n");
        assert_eq!(read("train-00001-of-00002.txt"), "x1\n");
        for shard in &shards {
            let (bytes, sha256) = super::super::shard::hash_file(&dir.join(&shard.file)).unwrap();
            assert_eq!((shard.bytes, &shard.sha256), (bytes, &sha256), "{}", shard.file);
        }
        assert_eq!(shards.iter().map(|s| s.rows).sum::<u64>(), 5);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "only the shards are left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_out_of_input_order_are_refused() {
        let dir = std::env::temp_dir().join(format!("revgen-segments-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut writer = SegmentWriter::new(&dir, 1);
        let err = writer.add(&batch(&[(0, position(0, 5), "b"), (0, position(0, 4), "a")])).unwrap_err();
        assert!(err.to_string().contains("out of input order"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
