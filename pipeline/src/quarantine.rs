//! Malformed rows: counted by reason and kept, never dropped silently.
//!
//! Every reader reports each row it reads to a [`RowLog`]: valid rows as a count, malformed rows with their object,
//! line number, reason and raw text. The log keeps the totals that every report prints (`rows_read = valid +
//! malformed`) and, with `--quarantine PATH`, writes each malformed row there as one JSON line. The file is written
//! under a temporary name and renamed into place when the job finishes, so a killed job never leaves a quarantine
//! file that looks complete.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
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
}

impl RowCounts {
    pub fn add_valid(&mut self, rows: u64) {
        self.rows_read += rows;
        self.valid += rows;
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
    file: BufWriter<File>,
    rows: u64,
    /// Set once the file is in place; until then, dropping the sink removes the temporary.
    done: bool,
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
        let file = BufWriter::new(File::create(&tmp).map_err(Error::io(&tmp))?);
        let sink = Sink { path: path.to_owned(), tmp, file, rows: 0, done: false };
        Ok(RowLog { inner: Arc::new(Mutex::new(LogInner { sink: Some(sink), ..Default::default() })) })
    }

    /// Starts the counts of one object afresh (a re-read of the same object replaces its counts).
    pub fn start_object(&self, object: &str) {
        self.lock().per_object.insert(object.to_owned(), RowCounts::default());
    }

    /// Adds a reader's counts for an object.
    pub fn add(&self, object: &str, counts: &RowCounts) {
        self.lock().per_object.entry(object.to_owned()).or_default().merge(counts);
    }

    /// Writes one malformed row to the quarantine file, if there is one. Counting is the caller's job (through
    /// [`RowLog::add`]), so that readers can count without taking the lock on every row.
    pub fn quarantine(&self, row: &QuarantinedRow<'_>) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(sink) = inner.sink.as_mut() else { return };
        let written = serde_json::to_writer(&mut sink.file, row)
            .map_err(std::io::Error::from)
            .and_then(|()| sink.file.write_all(b"\n"));
        match written {
            Ok(()) => sink.rows += 1,
            Err(e) if inner.error.is_none() => inner.error = Some(format!("{}: {e}", sink.tmp.display())),
            Err(_) => {}
        }
    }

    /// Appends quarantine lines that another process wrote (JSON lines, as [`RowLog::quarantine`] writes them):
    /// the rows that a cluster's executors quarantined, gathered by the client.
    pub fn append_quarantined(&self, jsonl: &[u8]) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(sink) = inner.sink.as_mut() else { return };
        let rows = jsonl.iter().filter(|&&b| b == b'\n').count() as u64;
        match sink.file.write_all(jsonl) {
            Ok(()) => sink.rows += rows,
            Err(e) if inner.error.is_none() => inner.error = Some(format!("{}: {e}", sink.tmp.display())),
            Err(_) => {}
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
        sink.file.flush().map_err(Error::io(&sink.tmp))?;
        sink.file.get_ref().sync_all().map_err(Error::io(&sink.tmp))?;
        fs::rename(&sink.tmp, &sink.path).map_err(Error::io(&sink.path))?;
        sink.done = true;
        Ok(Some((sink.path.clone(), sink.rows)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        // A reader that panicked mid-update leaves counts that are still consistent per call.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
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
}
