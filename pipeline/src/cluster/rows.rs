//! Row counts and quarantined rows of a scan that runs on a cluster.
//!
//! Locally every reader reports to the job's one [`RowLog`]. On a cluster the readers run in executor processes,
//! so each object's counts and malformed rows are written, when the object is done, to a scratch prefix that the
//! executors and the client both reach (`<prefix>/000003.json`, `<prefix>/000003.quarantine.jsonl`, by input
//! index). The client gathers them into its own log after the job. A retried task rewrites the same objects, so an
//! object counts once however often it was read, as in the local log.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::RemoteDir;
use crate::quarantine::{RowCounts, RowLog};
use crate::{Error, Result};

/// Where a cluster scan reports its rows.
pub type RowsReport = RemoteDir;

/// One object's report.
#[derive(Debug, Serialize, Deserialize)]
struct ObjectRows {
    object: String,
    counts: RowCounts,
}

impl RemoteDir {
    fn object_name(index: usize) -> String {
        format!("{index:06}.json")
    }

    fn quarantine_name(index: usize) -> String {
        format!("{index:06}.quarantine.jsonl")
    }

    /// A fresh log for input `index`, quarantining into a local temporary file.
    pub fn object_log(&self, index: usize) -> Result<(RowLog, PathBuf)> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("revgen-rows-{}-{index}-{}.jsonl", std::process::id(), nanos.as_nanos()));
        Ok((RowLog::with_quarantine(&path)?, path))
    }

    /// Writes the counts (and malformed rows, if any) of input `index` from its finished `log`.
    pub fn put_object(&self, handle: &Handle, index: usize, object: &str, log: &RowLog) -> Result<()> {
        let (store, prefix) = self.store()?;
        let counts = log.per_object().remove(object).unwrap_or_default();
        let quarantined = log.finish()?;
        let put = |name: String, bytes: Vec<u8>| {
            handle
                .block_on(store.put(&prefix.clone().join(name.as_str()), PutPayload::from(bytes)))
                .map(|_| ())
                .map_err(|source| Error::ObjectStore { url: self.url_of(&name), source })
        };
        if let Some((path, rows)) = &quarantined {
            if *rows > 0 {
                let bytes = std::fs::read(path).map_err(Error::io(path))?;
                put(Self::quarantine_name(index), bytes)?;
            }
            let _ = std::fs::remove_file(path);
        }
        // The counts go last: a reader that finds them finds the quarantine too.
        let report = ObjectRows { object: object.to_owned(), counts };
        put(Self::object_name(index), serde_json::to_vec(&report).expect("counts serialise"))
    }

    /// Adds the reports of `objects` (by input index) to `log`, then removes them. Every object must have one: a
    /// missing report means the executors could not reach the scratch location that this client reads.
    pub async fn gather(&self, objects: &[String], log: &RowLog) -> Result<()> {
        let (store, prefix) = self.store()?;
        let read = |name: String| {
            let store = Arc::clone(&store);
            let key = prefix.clone().join(name.as_str());
            let url = self.url_of(&name);
            async move {
                let bytes = store.get(&key).await.map_err(|source| Error::ObjectStore { url: url.clone(), source })?;
                bytes.bytes().await.map_err(|source| Error::ObjectStore { url, source })
            }
        };
        for (index, object) in objects.iter().enumerate() {
            let report = match read(Self::object_name(index)).await {
                Ok(bytes) => bytes,
                Err(Error::ObjectStore { source: object_store::Error::NotFound { .. }, .. }) => {
                    return Err(Error::Cluster {
                        url: self.url.clone(),
                        reason: format!(
                            "no row counts arrived for {object}: the executors must write to a scratch location \
                             that this client reads too (--scratch s3://bucket/prefix, or a shared filesystem)"
                        ),
                    });
                }
                Err(e) => return Err(e),
            };
            let report: ObjectRows = serde_json::from_slice(&report)
                .map_err(|source| Error::Json { path: Self::object_name(index).into(), source })?;
            log.start_object(object);
            log.add(object, &report.counts);
            if report.counts.malformed > 0 {
                log.append_quarantined(object, &read(Self::quarantine_name(index)).await?);
            }
        }
        self.remove().await
    }
}
