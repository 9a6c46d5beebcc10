//! Reading one object of the dump into canonical batches: bytes from its store, inflated when gzipped, split into
//! lines, and each line turned into a valid review or a quarantined malformed row.
//!
//! Reading runs on blocking threads, not on DataFusion's async workers. A gzipped object is inflated on a thread of
//! its own while the calling thread parses the previous chunk, because inflating one `.gz` is the floor of a scan
//! (one core, ~415 MB/s with flate2's zlib-rs backend) and everything else should hide behind it.

mod json;
mod parquet;
mod separators;
mod tsv;

use std::io::{self, Read};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use flate2::read::MultiGzDecoder;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{GetResultPayload, ObjectStoreExt};
use tokio::runtime::Handle;

use crate::batch::BatchBuilder;
use crate::dump::Malformed;
use crate::quarantine::{QuarantinedRow, RowCounts, RowLog};
use crate::row_filter::RowFilter;
use crate::source::{Input, Kind};
use crate::{Error, Result};
use separators::Tabs;

/// Decompressed bytes handed from the inflating thread to the parser at a time.
const CHUNK_BYTES: usize = 4 << 20;

/// Where a reader sends what it reads.
pub struct Sink<'a> {
    pub handle: &'a Handle,
    pub log: &'a RowLog,
    /// Bytes of the objects read so far (compressed, as stored), for progress.
    pub bytes_read: &'a BytesRead,
    /// Canonical column indexes to build.
    pub projection: &'a [usize],
    /// The object's index in the job's inputs, for `row_position`.
    pub object: usize,
    /// Rows that fail one of these are counted as skipped, not built.
    pub filters: &'a [RowFilter],
    /// Receives each finished batch; returns false when nobody wants more rows (a satisfied LIMIT).
    pub emit: &'a mut dyn FnMut(RecordBatch) -> bool,
}

/// Reads one object to the end (or until `emit` says stop), emitting its valid rows in batches.
pub fn read(input: &Input, sink: &mut Sink<'_>) -> Result<()> {
    sink.log.start_object(&input.url);
    match input.kind {
        Kind::Parquet => parquet::read(input, sink),
        Kind::Tsv | Kind::Json => {
            let raw = open(input, sink.handle, sink.bytes_read)?;
            let chunks: Box<dyn ChunkSource> =
                if input.gzip { Box::new(inflate(raw)) } else { Box::new(Chunked { reader: raw }) };
            let mut lines = LineReader::new(input, sink, chunks);
            match input.kind {
                Kind::Tsv => tsv::read(&mut lines),
                _ => json::read(&mut lines),
            }
        }
    }
}

/// The object's bytes as a blocking reader. Local files are read directly; other stores stream.
fn open(input: &Input, handle: &Handle, bytes_read: &BytesRead) -> Result<Box<dyn Read + Send>> {
    let store_err = |source| Error::ObjectStore { url: input.url.clone(), source };
    let got = handle.block_on(input.store.get(&input.location)).map_err(store_err)?;
    let counter = Arc::clone(bytes_read);
    Ok(match got.payload {
        GetResultPayload::File(file, _) => Box::new(CountingReader { inner: file, counter }),
        GetResultPayload::Stream(stream) => Box::new(CountingReader {
            inner: StreamReader { handle: handle.clone(), stream, current: Bytes::new() },
            counter,
        }),
    })
}

struct CountingReader<R> {
    inner: R,
    counter: BytesRead,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An object store's byte stream as a blocking reader.
struct StreamReader {
    handle: Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Fills `chunk` with up to [`CHUNK_BYTES`] from `reader`; false at the end of the stream.
fn read_chunk(reader: &mut impl Read, chunk: &mut Vec<u8>) -> io::Result<bool> {
    // A recycled buffer keeps its bytes: only a new or short one is zeroed (a 4 MiB memset per chunk showed up).
    chunk.resize(CHUNK_BYTES, 0);
    let mut filled = 0;
    while filled < chunk.len() {
        match reader.read(&mut chunk[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    chunk.truncate(filled);
    Ok(filled > 0)
}

/// Chunks of an uncompressed object, read on the calling thread.
struct Chunked {
    reader: Box<dyn Read + Send>,
}

impl ChunkSource for Chunked {
    fn next_chunk(&mut self, chunk: &mut Vec<u8>) -> io::Result<bool> {
        read_chunk(&mut self.reader, chunk)
    }
}

/// Chunks of a gzipped object, inflated on a thread of its own a few chunks ahead of the parser. Buffers go back
/// to the inflating thread once parsed, so a scan allocates (and page-faults in) a handful of chunks, not one per
/// 4 MiB. The thread stops at the end, at an error (handed on to the parser), or as soon as the parser hangs up.
struct Inflated {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
}

fn inflate(raw: Box<dyn Read + Send>) -> Inflated {
    const IN_FLIGHT: usize = 4;
    let (full_tx, full) = sync_channel(IN_FLIGHT);
    let (empty, empty_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    std::thread::spawn(move || {
        // MultiGzDecoder: a .gz may hold several members (concatenated files), and all of them are the object.
        let mut gz = MultiGzDecoder::new(io::BufReader::with_capacity(1 << 20, raw));
        loop {
            let mut chunk = empty_rx.try_recv().unwrap_or_default();
            match read_chunk(&mut gz, &mut chunk) {
                Ok(true) => {
                    if full_tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Ok(false) => return,
                Err(e) => {
                    let _ = full_tx.send(Err(e));
                    return;
                }
            }
        }
    });
    Inflated { full, empty }
}

impl ChunkSource for Inflated {
    fn next_chunk(&mut self, chunk: &mut Vec<u8>) -> io::Result<bool> {
        match self.full.recv() {
            Ok(next) => {
                let used = std::mem::replace(chunk, next?);
                // The inflating thread may have stopped; then the buffer is simply dropped.
                let _ = self.empty.try_send(used);
                Ok(true)
            }
            // The thread ended after sending the last chunk.
            Err(_) => Ok(false),
        }
    }
}

/// Where a line reader's bytes come from.
trait ChunkSource {
    /// Replaces `chunk` with the next chunk of the object; false at the end.
    fn next_chunk(&mut self, chunk: &mut Vec<u8>) -> io::Result<bool>;
}

/// Splits chunks into lines and keeps the bookkeeping every line format shares: line numbers, counts, the
/// quarantine, and batches out.
pub struct LineReader<'s, 'a> {
    input: &'s Input,
    sink: &'s mut Sink<'a>,
    chunks: Box<dyn ChunkSource>,
    /// The start of a line that continues in the next chunk.
    carry: Vec<u8>,
    counts: RowCounts,
    batch: BatchBuilder,
    stopped: bool,
}

impl<'s, 'a> LineReader<'s, 'a> {
    fn new(input: &'s Input, sink: &'s mut Sink<'a>, chunks: Box<dyn ChunkSource>) -> Self {
        let batch = BatchBuilder::new(sink.projection);
        LineReader { input, sink, chunks, carry: Vec::new(), counts: RowCounts::default(), batch, stopped: false }
    }

    /// Calls `f` with each line (without its `\n` or `\r\n`), its tabs and its 1-based number, until the object
    /// ends or the consumer stops.
    fn for_each_line(&mut self, mut f: impl FnMut(&mut LineState<'_, 'a>, &[u8], &Tabs, u64)) -> Result<()> {
        let mut line_no = 0u64;
        let mut chunk = Vec::new();
        while self
            .chunks
            .next_chunk(&mut chunk)
            .map_err(|source| Error::Read { url: self.input.url.clone(), source })?
        {
            let mut carry = std::mem::take(&mut self.carry);
            let mut state = self.state();
            let rest = separators::lines(&chunk, |start, end, tabs| {
                line_no += 1;
                if carry.is_empty() {
                    f(&mut state, trim_cr(&chunk[start..end]), tabs, line_no);
                } else {
                    // The line began in the last chunk: its tabs are searched again, whole.
                    carry.extend_from_slice(&chunk[start..end]);
                    f(&mut state, trim_cr(&carry), &Tabs::of_line(&carry), line_no);
                    carry.clear();
                }
                if *state.stopped { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            });
            let Some(rest) = rest else { return Ok(()) };
            carry.extend_from_slice(&chunk[rest..]);
            self.carry = carry;
        }
        if !self.carry.is_empty() {
            let carry = std::mem::take(&mut self.carry);
            let mut state = self.state();
            f(&mut state, trim_cr(&carry), &Tabs::of_line(&carry), line_no + 1);
        }
        Ok(())
    }

    fn state(&mut self) -> LineState<'_, 'a> {
        LineState {
            input: self.input,
            sink: self.sink,
            counts: &mut self.counts,
            batch: &mut self.batch,
            stopped: &mut self.stopped,
        }
    }

    /// Emits the last batch and adds the object's counts to the log.
    fn finish(&mut self) -> Result<()> {
        if !self.batch.is_empty() && !self.stopped {
            let batch =
                self.batch.finish().map_err(|source| Error::Arrow { path: self.input.url.clone().into(), source })?;
            (self.sink.emit)(batch);
        }
        self.sink.log.add(&self.input.url, &self.counts);
        self.counts = RowCounts::default();
        Ok(())
    }
}

/// What a line handler may touch.
pub struct LineState<'s, 'a> {
    input: &'s Input,
    sink: &'s mut Sink<'a>,
    counts: &'s mut RowCounts,
    batch: &'s mut BatchBuilder,
    stopped: &'s mut bool,
}

impl LineState<'_, '_> {
    fn push(&mut self, mut review: crate::batch::Review<'_>, line_no: u64) {
        if !self.sink.filters.iter().all(|f| f.keeps_review(&review)) {
            self.counts.add_skipped(1);
            return;
        }
        review.position = crate::batch::position(self.sink.object, line_no);
        self.batch.push(&review);
        self.counts.add_valid(1);
        if self.batch.is_full() {
            match self.batch.finish() {
                Ok(batch) => *self.stopped = !(self.sink.emit)(batch),
                // Arrays built from the canonical schema always fit it.
                Err(e) => unreachable!("canonical batch: {e}"),
            }
        }
    }

    fn malformed(&mut self, reason: Malformed, line: &[u8], line_no: u64) {
        self.counts.add_malformed(reason);
        let raw = String::from_utf8_lossy(line);
        self.sink.log.quarantine(&QuarantinedRow { object: &self.input.url, line: line_no, reason, raw: &raw });
    }
}

/// A line without the `\r` of a `\r\n` ending; its tabs stay where they are.
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A star rating: an integer, in 1..=5.
fn parse_rating(field: &str) -> std::result::Result<i32, Malformed> {
    match field.trim().parse::<i64>() {
        Ok(r @ 1..=5) => Ok(r as i32),
        Ok(_) => Err(Malformed::StarRatingOutOfRange),
        Err(_) => Err(Malformed::StarRatingNotNumeric),
    }
}

/// A vote count: a non-negative integer.
fn parse_votes(field: &str) -> std::result::Result<i32, Malformed> {
    field.trim().parse::<u32>().ok().and_then(|v| i32::try_from(v).ok()).ok_or(Malformed::VotesNotNumeric)
}

/// A shared, thread-safe progress counter in bytes.
pub type BytesRead = Arc<AtomicU64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_and_votes() {
        assert_eq!(parse_rating("5"), Ok(5));
        assert_eq!(parse_rating("0"), Err(Malformed::StarRatingOutOfRange));
        assert_eq!(parse_rating("-1"), Err(Malformed::StarRatingOutOfRange));
        assert_eq!(parse_rating("five"), Err(Malformed::StarRatingNotNumeric));
        assert_eq!(parse_rating("★★★"), Err(Malformed::StarRatingNotNumeric));
        assert_eq!(parse_votes("1024"), Ok(1024));
        assert_eq!(parse_votes("1,024"), Err(Malformed::VotesNotNumeric));
        assert_eq!(parse_votes("-"), Err(Malformed::VotesNotNumeric));
        assert_eq!(parse_votes("-3"), Err(Malformed::VotesNotNumeric));
    }
}
