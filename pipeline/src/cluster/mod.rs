//! Running the jobs on a Ballista cluster.
//!
//! - [`daemon`]: `revgen scheduler` and `revgen executor`, Ballista's own scheduler and executor with our codec;
//! - [`codec`]: how our plan nodes (the `reviews` scan, the prepare tally and shard writer) and SQL functions
//!   travel to the executors;
//! - [`client`]: submitting a job's physical plan, its progress, and `revgen cluster status`;
//! - [`rows`]: row counts and quarantined rows of scans that run in executor processes.
//!
//! A job is planned by the client exactly as it is locally, and the same physical plan is submitted to the
//! scheduler (Ballista's physical-plan submission), which cuts it into stages at its repartitions. So a cluster
//! run computes what a local run computes, with one task per input object in the first stage.

pub mod client;
pub mod codec;
pub mod daemon;
pub mod rows;

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use url::Url;

pub use client::{Cluster, ClusterStatus};

use crate::source::{self, StoreOptions};
use crate::{Error, Result};

/// A directory in object storage (or on a filesystem that every machine mounts) that executors write to and the
/// client reads: `s3://bucket/prefix`, `file:///shared/dir`. Credentials come from each process's environment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteDir {
    pub url: String,
    pub options: StoreOptions,
}

impl RemoteDir {
    /// `url` may also be a local path, made absolute.
    pub fn new(url: &str, options: StoreOptions) -> Result<Self> {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            let path = std::path::absolute(url).map_err(Error::io(url))?;
            Url::from_directory_path(&path)
                .map_err(|()| Error::InvalidInput { spec: url.to_owned(), reason: "not a directory path".into() })?
                .to_string()
        };
        Ok(RemoteDir { url: url.trim_end_matches('/').to_owned(), options })
    }

    /// A directory below this one.
    pub fn join(&self, name: &str) -> RemoteDir {
        RemoteDir { url: format!("{}/{name}", self.url), options: self.options.clone() }
    }

    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    /// The store and this directory's path in it.
    pub fn store(&self) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        let url =
            Url::parse(&self.url).map_err(|e| Error::InvalidInput { spec: self.url.clone(), reason: e.to_string() })?;
        let (_, store) = source::open_store(&url, &self.options, &self.url)?;
        let prefix = ObjectPath::from_url_path(url.path())
            .map_err(|e| Error::InvalidInput { spec: self.url.clone(), reason: e.to_string() })?;
        Ok((store, prefix))
    }

    /// Streams the local file `from` to `name` in this directory.
    pub async fn upload(&self, from: &Path, name: &str) -> Result<()> {
        let (store, prefix) = self.store()?;
        crate::prepare::destination::upload(&store, from.to_owned(), prefix.join(name), self.url_of(name)).await
    }

    /// Removes everything under this directory.
    pub async fn remove(&self) -> Result<()> {
        let (store, prefix) = self.store()?;
        let err = |source| Error::ObjectStore { url: self.url.clone(), source };
        let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.map_err(err)?;
        for meta in listed {
            store
                .delete(&meta.location)
                .await
                .map_err(|source| Error::ObjectStore { url: self.url.clone(), source })?;
        }
        if let Ok(url) = Url::parse(&self.url)
            && url.scheme() == "file"
        {
            // A local store leaves the emptied directories behind.
            let _ = std::fs::remove_dir_all(url.path());
        }
        Ok(())
    }
}
