//! Malformed rows: counted by reason and kept, never dropped silently.
//!
//! Every reader reports each row it reads to a [`RowLog`]: valid rows as a count, malformed rows with their object,
//! line number, reason and raw text. The log keeps the totals that every report prints (`rows_read = valid +
//! malformed`) and, with `--quarantine PATH`, writes each malformed row there as one JSON line. The file is written
//! under a temporary name and renamed into place when the job finishes, so a killed job never leaves a quarantine
//! file that looks complete.
//!
//! The file lists objects in URL order and each object's rows in line order, whatever order the partitions read
//! them in, so that a rerun, or the same job on a cluster, writes the same bytes (its sha256 is in the manifest).
//! Rows are kept per object in part files of a hidden directory next to the file until the job finishes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::dump::Malformed;
use crate::{Error, Result};

/// Row counts of one object, or of a whole job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub rows_read: u64,
    pub valid: u64,
    pub malformed: u64,
    /// Malformed rows by reason; reasons with no rows are left out.
    pub malformed_by_reason: BTreeMap<Malformed, u64>,
    /// Valid rows that a filter of the query dropped in the scan (see [`crate::row_filter`]); part of `valid`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RowCounts {
    pub fn add_valid(&mut self, rows: u64) {
        self.rows_read += rows;
        self.valid += rows;
    }

    pub fn add_skipped(&mut self, rows: u64) {
        self.add_valid(rows);
        self.skipped += rows;
    }

    pub fn add_malformed(&mut self, reason: Malformed) {
        self.rows_read += 1;
        self.malformed += 1;
        *self.malformed_by_reason.entry(reason).or_default() += 1;
    }

    pub fn merge(&mut self, other: &RowCounts) {
        self.rows_read += other.rows_read;
        self.valid += other.valid;
        self.malformed += other.malformed;
        self.skipped += other.skipped;
        for (reason, n) in &other.malformed_by_reason {
            *self.malformed_by_reason.entry(*reason).or_default() += n;
        }
    }
}

/// One malformed row as the quarantine file holds it.
#[derive(Debug, Serialize)]
pub struct QuarantinedRow<'a> {
    pub object: &'a str,
    /// 1-based line number in the (decompressed) object; for Parquet, the 1-based row number.
    pub line: u64,
    pub reason: Malformed,
    /// The row as read; bytes that are not UTF-8 are replaced by U+FFFD.
    pub raw: &'a str,
}

/// Totals of a whole job and the quarantine sink, shared by every reader of the job.
#[derive(Clone, Default)]
pub struct RowLog {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Default)]
struct LogInner {
    /// Counts per object, by URL. An object read twice (two scans in one job) counts once: the last read wins.
    per_object: BTreeMap<String, RowCounts>,
    sink: Option<Sink>,
    error: Option<String>,
}

struct Sink {
    path: PathBuf,
    tmp: PathBuf,
    /// Hidden directory of part files, one per object (numbered in the order the objects were first seen).
    parts_dir: PathBuf,
    parts: BTreeMap<String, Part>,
    /// How many part files are open.
    open: usize,
    /// Set once the file is in place; until then, dropping the sink removes the temporaries.
    done: bool,
}

/// The quarantined rows of one object.
struct Part {
    path: PathBuf,
    /// Open while rows arrive; closed when too many parts are open (many small objects), reopened to append.
    file: Option<BufWriter<File>>,
    rows: u64,
}

/// More open part files than this are closed (flushed) before another is opened.
const MAX_OPEN_PARTS: usize = 64;

impl Sink {
    /// Appends `bytes`, which hold `rows` quarantine lines, to the part file of `object`.
    fn append(&mut self, object: &str, bytes: &[u8], rows: u64) -> io::Result<()> {
        let is_open = self.parts.get(object).is_some_and(|part| part.file.is_some());
        if !is_open && self.open >= MAX_OPEN_PARTS {
            self.close_all()?;
        }
        let number = self.parts.len();
        let parts_dir = &self.parts_dir;
        let part = self.parts.entry(object.to_owned()).or_insert_with(|| Part {
            path: parts_dir.join(format!("{number:06}.jsonl")),
            file: None,
            rows: 0,
        });
        let file = match part.file.take() {
            Some(file) => file,
            None => {
                let file = fs::OpenOptions::new().create(true).append(true).open(&part.path)?;
                self.open += 1;
                BufWriter::new(file)
            }
        };
        part.file.insert(file).write_all(bytes)?;
        part.rows += rows;
        Ok(())
    }

    fn close_all(&mut self) -> io::Result<()> {
        for part in self.parts.values_mut() {
            if let Some(mut file) = part.file.take() {
                file.flush()?;
            }
        }
        self.open = 0;
        Ok(())
    }

    /// Forgets the rows of `object` written so far (it is being read again).
    fn restart(&mut self, object: &str) -> io::Result<()> {
        let Some(part) = self.parts.get_mut(object) else { return Ok(()) };
        if part.file.take().is_some() {
            self.open -= 1;
        }
        part.rows = 0;
        File::create(&part.path).map(drop)
    }

    /// Concatenates the parts, by object URL, into the temporary file.
    fn assemble(&mut self) -> Result<()> {
        self.close_all().map_err(Error::io(&self.parts_dir))?;
        let mut out = BufWriter::new(File::create(&self.tmp).map_err(Error::io(&self.tmp))?);
        for part in self.parts.values() {
            let mut file = File::open(&part.path).map_err(Error::io(&part.path))?;
            io::copy(&mut file, &mut out).map_err(Error::io(&self.tmp))?;
        }
        out.flush().map_err(Error::io(&self.tmp))?;
        out.get_ref().sync_all().map_err(Error::io(&self.tmp))
    }
}

impl RowLog {
    /// A log that only counts.
    pub fn counting() -> Self {
        RowLog::default()
    }

    /// A log that also writes malformed rows to `path` (JSON lines), which appears when [`RowLog::finish`] runs.
    pub fn with_quarantine(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let parts_dir = path.with_file_name(format!(".{name}.parts-{}", std::process::id()));
        // A dead run with the same pid (a container restarts with pid 1) may have left one behind.
        let _ = fs::remove_dir_all(&parts_dir);
        fs::create_dir_all(&parts_dir).map_err(Error::io(&parts_dir))?;
        let sink = Sink { path: path.to_owned(), tmp, parts_dir, parts: BTreeMap::new(), open: 0, done: false };
        Ok(RowLog { inner: Arc::new(Mutex::new(LogInner { sink: Some(sink), ..Default::default() })) })
    }

    /// Starts the counts and quarantined rows of one object afresh (a re-read of the same object replaces them).
    pub fn start_object(&self, object: &str) {
        self.lock().per_object.insert(object.to_owned(), RowCounts::default());
        self.with_sink(|sink| sink.restart(object));
    }

    /// Adds a reader's counts for an object.
    pub fn add(&self, object: &str, counts: &RowCounts) {
        self.lock().per_object.entry(object.to_owned()).or_default().merge(counts);
    }

    /// Writes one malformed row to the quarantine file, if there is one. Counting is the caller's job (through
    /// [`RowLog::add`]), so that readers can count without taking the lock on every row.
    pub fn quarantine(&self, row: &QuarantinedRow<'_>) {
        self.with_sink(|sink| {
            let mut line = serde_json::to_vec(row)?;
            line.push(b'\n');
            sink.append(row.object, &line, 1)
        });
    }

    /// Appends quarantine lines of `object` that another process wrote (JSON lines, as [`RowLog::quarantine`]
    /// writes them): the rows that a cluster's executors quarantined, gathered by the client.
    pub fn append_quarantined(&self, object: &str, jsonl: &[u8]) {
        let rows = jsonl.iter().filter(|&&b| b == b'\n').count() as u64;
        self.with_sink(|sink| sink.append(object, jsonl, rows));
    }

    /// Runs `write` on the quarantine sink, if there is one; its first error fails [`RowLog::finish`].
    fn with_sink(&self, write: impl FnOnce(&mut Sink) -> io::Result<()>) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(sink) = inner.sink.as_mut() else { return };
        if let Err(e) = write(sink) {
            inner.error.get_or_insert_with(|| format!("{}: {e}", sink.parts_dir.display()));
        }
    }

    /// The totals over every object read so far.
    pub fn totals(&self) -> RowCounts {
        let inner = self.lock();
        let mut totals = RowCounts::default();
        for counts in inner.per_object.values() {
            totals.merge(counts);
        }
        totals
    }

    /// Counts per object URL.
    pub fn per_object(&self) -> BTreeMap<String, RowCounts> {
        self.lock().per_object.clone()
    }

    /// Flushes the quarantine file and moves it into place. Returns its path and row count, if there is one.
    pub fn finish(&self) -> Result<Option<(PathBuf, u64)>> {
        let mut inner = self.lock();
        if let Some(error) = inner.error.take() {
            return Err(Error::Quarantine { reason: error });
        }
        let Some(mut sink) = inner.sink.take() else { return Ok(None) };
        sink.assemble()?;
        fs::rename(&sink.tmp, &sink.path).map_err(Error::io(&sink.path))?;
        sink.done = true;
        let _ = fs::remove_dir_all(&sink.parts_dir);
        let rows = sink.parts.values().map(|part| part.rows).sum();
        Ok(Some((sink.path.clone(), rows)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        // A reader that panicked mid-update leaves counts that are still consistent per call.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.parts.clear(); // closes the part files
        let _ = fs::remove_dir_all(&self.parts_dir);
        if !self.done {
            // The job did not finish: leave no temporary behind.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_balance_and_quarantine_appears_on_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q/malformed.jsonl");
        let log = RowLog::with_quarantine(&path).unwrap();
        let mut counts = RowCounts::default();
        counts.add_valid(10);
        counts.add_malformed(Malformed::FieldCount);
        log.quarantine(&QuarantinedRow { object: "a.tsv", line: 3, reason: Malformed::FieldCount, raw: "x\ty" });
        log.add("a.tsv", &counts);
        assert!(!path.exists(), "the quarantine file must not look complete before the job ends");

        let totals = log.totals();
        assert_eq!(totals.rows_read, totals.valid + totals.malformed);
        assert_eq!(totals.malformed_by_reason[&Malformed::FieldCount], 1);

        let (written, rows) = log.finish().unwrap().unwrap();
        assert_eq!((written.as_path(), rows), (path.as_path(), 1));
        let line: serde_json::Value = serde_json::from_str(fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(line["object"], "a.tsv");
        assert_eq!(line["line"], 3);
        assert_eq!(line["reason"], "field_count");
        assert_eq!(fs::read_dir(dir.path().join("q")).unwrap().count(), 1, "no temporary left behind");
    }

    #[test]
    fn rows_come_out_by_object_then_line_whatever_the_read_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        let log = RowLog::with_quarantine(&path).unwrap();
        let row = |object, line| QuarantinedRow { object, line, reason: Malformed::FieldCount, raw: "x" };
        // Two partitions interleave their objects; "c" is read twice (its first rows must go).
        log.start_object("c.tsv");
        log.quarantine(&row("c.tsv", 9));
        log.start_object("b.tsv");
        log.quarantine(&row("b.tsv", 2));
        log.start_object("c.tsv");
        log.quarantine(&row("c.tsv", 1));
        log.quarantine(&row("b.tsv", 5));
        log.append_quarantined("a.tsv", b"{\"object\":\"a.tsv\",\"line\":7}\n");
        log.quarantine(&row("c.tsv", 4));

        let (_, rows) = log.finish().unwrap().unwrap();
        assert_eq!(rows, 5);
        let order: Vec<(String, u64)> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["object"].as_str().unwrap().to_owned(), v["line"].as_u64().unwrap()))
            .collect();
        let expected = [("a.tsv", 7), ("b.tsv", 2), ("b.tsv", 5), ("c.tsv", 1), ("c.tsv", 4)];
        assert_eq!(order, expected.map(|(o, l)| (o.to_owned(), l)));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no part file left behind");
    }

    #[test]
    fn many_objects_do_not_keep_a_file_open_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        let log = RowLog::with_quarantine(&path).unwrap();
        let objects: Vec<String> = (0..3 * MAX_OPEN_PARTS).map(|i| format!("part-{i:04}.parquet")).collect();
        for round in 1..=2 {
            for object in &objects {
                log.quarantine(&QuarantinedRow { object, line: round, reason: Malformed::FieldCount, raw: "" });
            }
            assert!(log.lock().sink.as_ref().unwrap().open <= MAX_OPEN_PARTS);
        }
        let (_, rows) = log.finish().unwrap().unwrap();
        assert_eq!(rows, 2 * objects.len() as u64);
        let text = fs::read_to_string(&path).unwrap();
        let first: Vec<&str> = text.lines().take(2).collect();
        assert!(first[0].contains("part-0000") && first[0].contains("\"line\":1"), "{first:?}");
        assert!(first[1].contains("part-0000") && first[1].contains("\"line\":2"), "{first:?}");
    }
}
