//! Where a prepare job's output goes, and how it appears there all at once.
//!
//! Writers write into a staging directory: `DIR/.revgen-staging-PID/` for a local output, a local temporary
//! directory for an object-store output. Only when every shard is complete does [`Destination::commit`] move them
//! into place (a rename, or a completed upload: an object appears whole or not at all), and the manifest goes
//! last. A killed job leaves at most a hidden staging directory, which the next run into that directory removes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::cluster::RemoteDir;
use crate::source::{self, StoreOptions};
use crate::{Error, Result};

pub const MANIFEST: &str = "manifest.json";
pub const QUARANTINE: &str = "quarantine.jsonl";
const STAGING_PREFIX: &str = ".revgen-staging-";

/// Whether a name is one a prepare job writes (and so one `--overwrite` may replace).
pub fn is_output_name(name: &str) -> bool {
    if name == MANIFEST || name == QUARANTINE {
        return true;
    }
    // {split}-NNNNN-of-NNNNN.{txt,bin,parquet}
    let Some((split, rest)) = name.split_once('-') else { return false };
    let Some((numbers, ext)) = rest.split_once('.') else { return false };
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    matches!(split, "train" | "val")
        && matches!(ext, "txt" | "bin" | "parquet")
        && numbers.split_once("-of-").is_some_and(|(a, b)| digits(a) && digits(b))
}

enum Target {
    Local(PathBuf),
    Remote { store: Arc<dyn ObjectStore>, prefix: ObjectPath },
}

pub struct Destination {
    /// The output as the user named it.
    pub url: String,
    target: Target,
    staging: PathBuf,
    options: StoreOptions,
    /// A cluster job's staging prefix beside an object-store output, which executors upload shards to.
    remote_staging: Option<String>,
    /// Output files already there (with `--overwrite`): replaced or removed at commit.
    existing: Vec<String>,
    committed: bool,
}

impl Destination {
    /// Opens an output directory or prefix. Existing output is an error unless `overwrite`; nothing is removed
    /// until [`Destination::commit`].
    pub async fn open(spec: &str, options: &StoreOptions, overwrite: bool) -> Result<Self> {
        let (target, staging) = if spec.contains("://") && !spec.starts_with("file://") {
            let url =
                Url::parse(spec).map_err(|e| Error::InvalidInput { spec: spec.to_owned(), reason: e.to_string() })?;
            let (_, store) = source::open_store(&url, options, spec)?;
            let prefix = ObjectPath::from_url_path(url.path())
                .map_err(|e| Error::InvalidInput { spec: spec.to_owned(), reason: e.to_string() })?;
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let staging =
                std::env::temp_dir().join(format!("revgen-staging-{}-{}", std::process::id(), nanos.as_nanos()));
            (Target::Remote { store, prefix }, staging)
        } else {
            let dir = PathBuf::from(spec.strip_prefix("file://").unwrap_or(spec));
            fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
            // Absolute: a cluster's executors write into its staging directory from their own working directories.
            let dir = std::path::absolute(&dir).map_err(Error::io(&dir))?;
            remove_stale_staging(&dir);
            let staging = dir.join(format!("{STAGING_PREFIX}{}", std::process::id()));
            (Target::Local(dir), staging)
        };
        let mut destination = Destination {
            url: spec.to_owned(),
            target,
            staging,
            options: options.clone(),
            remote_staging: None,
            existing: Vec::new(),
            committed: false,
        };
        destination.existing = destination.list_outputs().await?;
        if !destination.existing.is_empty() && !overwrite {
            let shown: Vec<&str> = destination.existing.iter().take(3).map(String::as_str).collect();
            return Err(Error::OutputExists {
                url: spec.to_owned(),
                found: format!("{}{}", shown.join(", "), if destination.existing.len() > 3 { ", …" } else { "" }),
            });
        }
        if destination.staging.exists() {
            fs::remove_dir_all(&destination.staging).map_err(Error::io(&destination.staging))?;
        }
        fs::create_dir_all(&destination.staging).map_err(Error::io(&destination.staging))?;
        Ok(destination)
    }

    /// The local directory the writers write into.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Where a cluster job's executors write: for a local output its staging directory itself (so every machine
    /// of the cluster must mount the output's filesystem), for an object-store output a hidden staging prefix
    /// beside it. Returns that directory and, for object stores, the prefix that shard writers upload to.
    pub fn cluster_staging(&mut self) -> Result<(RemoteDir, Option<RemoteDir>)> {
        match &self.target {
            Target::Local(_) => Ok((RemoteDir::new(&self.staging.to_string_lossy(), self.options.clone())?, None)),
            Target::Remote { .. } => {
                let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let name = format!("{STAGING_PREFIX}{}-{}", std::process::id(), nanos.as_nanos());
                let dir = RemoteDir::new(&format!("{}/{name}", self.url.trim_end_matches('/')), self.options.clone())?;
                self.remote_staging = Some(name);
                Ok((dir.clone(), Some(dir)))
            }
        }
    }

    /// Moves the staged `files` into place, removes earlier output that this run did not replace, then writes the
    /// manifest. An earlier manifest is removed first, so that no manifest ever describes a mix of two runs.
    pub async fn commit(&mut self, files: &[String], manifest: &[u8]) -> Result<()> {
        let stale: Vec<&String> = self.existing.iter().filter(|name| !files.contains(name)).collect();
        match &self.target {
            Target::Local(dir) => {
                let staged_manifest = self.staging.join(MANIFEST);
                write_synced(&staged_manifest, manifest)?;
                remove_if_exists(&dir.join(MANIFEST))?;
                for name in files {
                    let to = dir.join(name);
                    fs::rename(self.staging.join(name), &to).map_err(Error::io(&to))?;
                }
                for name in stale.iter().filter(|n| n.as_str() != MANIFEST) {
                    remove_if_exists(&dir.join(name))?;
                }
                let to = dir.join(MANIFEST);
                fs::rename(&staged_manifest, &to).map_err(Error::io(&to))?;
                // The renames themselves must survive a crash, not only the files' contents.
                File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(dir))?;
            }
            Target::Remote { store, prefix } => {
                let key = |name: &str| prefix.clone().join(name);
                let url = |name: &str| format!("{}/{name}", self.url.trim_end_matches('/'));
                if self.existing.iter().any(|n| n == MANIFEST) {
                    store
                        .delete(&key(MANIFEST))
                        .await
                        .map_err(|source| Error::ObjectStore { url: url(MANIFEST), source })?;
                }
                // Files staged here are uploaded; the ones a cluster's executors staged beside the output are copied
                // within the store (a copy also appears whole or not at all).
                let staged_remotely = |name: &str| -> Option<ObjectPath> {
                    let dir = self.remote_staging.as_ref()?;
                    (!self.staging.join(name).exists()).then(|| prefix.clone().join(dir.as_str()).join(name))
                };
                let (staging, key, url, staged_remotely) = (&self.staging, &key, &url, &staged_remotely);
                futures::stream::iter(files)
                    .map(|name| async move {
                        match staged_remotely(name) {
                            Some(from) => store
                                .copy(&from, &key(name))
                                .await
                                .map_err(|source| Error::ObjectStore { url: url(name), source }),
                            None => upload(store, staging.join(name), key(name), url(name)).await,
                        }
                    })
                    .buffer_unordered(4)
                    .try_collect::<Vec<()>>()
                    .await?;
                for name in stale.iter().filter(|n| n.as_str() != MANIFEST) {
                    store.delete(&key(name)).await.map_err(|source| Error::ObjectStore { url: url(name), source })?;
                }
                store
                    .put(&key(MANIFEST), PutPayload::from(manifest.to_vec()))
                    .await
                    .map_err(|source| Error::ObjectStore { url: url(MANIFEST), source })?;
                if let Some(dir) = &self.remote_staging {
                    RemoteDir::new(&url(dir), self.options.clone())?.remove().await?;
                }
            }
        }
        self.committed = true;
        fs::remove_dir_all(&self.staging).map_err(Error::io(&self.staging))?;
        Ok(())
    }

    /// Output names already at the destination.
    async fn list_outputs(&self) -> Result<Vec<String>> {
        let mut names = match &self.target {
            Target::Local(dir) => fs::read_dir(dir)
                .map_err(Error::io(dir))?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| is_output_name(name))
                .collect(),
            Target::Remote { store, prefix } => {
                let listing = store
                    .list_with_delimiter(Some(prefix))
                    .await
                    .map_err(|source| Error::ObjectStore { url: self.url.clone(), source })?;
                listing
                    .objects
                    .iter()
                    .filter_map(|o| o.location.filename().map(str::to_owned))
                    .filter(|name| is_output_name(name))
                    .collect::<Vec<_>>()
            }
        };
        names.sort();
        Ok(names)
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        if !self.committed {
            // A failed job leaves nothing behind; a killed one leaves the staging directory to the next run.
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Streams a staged file into an object. The object store completes a multipart upload only at the end, so the
/// object never exists half written.
pub async fn upload(store: &Arc<dyn ObjectStore>, from: PathBuf, to: ObjectPath, url: String) -> Result<()> {
    let mut file = tokio::fs::File::open(&from).await.map_err(Error::io(&from))?;
    let mut writer = object_store::buffered::BufWriter::new(Arc::clone(store), to);
    let copied = tokio::io::copy(&mut file, &mut writer).await;
    let done = match copied {
        Ok(_) => writer.shutdown().await,
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    };
    done.map_err(|source| Error::Read { url, source })
}

/// Streams an object into the local file `to`: written at a hidden temporary name beside it, synced, then renamed
/// into place, so the file appears whole or not at all, and an object of any size (a gpt2-xl checkpoint's
/// `optimizer.bpk` is 12.5 GB) passes through memory a chunk at a time.
pub async fn download(store: &Arc<dyn ObjectStore>, from: &ObjectPath, to: &Path, url: &str) -> Result<()> {
    let store_error = |source| Error::ObjectStore { url: url.to_owned(), source };
    let mut chunks = store.get(from).await.map_err(store_error)?.into_stream();
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = to.with_file_name(format!(".{name}.part-{}", std::process::id()));
    let written = async {
        // The HTTP body arrives in small chunks, and each write to a tokio file is a trip to a blocking thread.
        let file = tokio::fs::File::create(&tmp).await.map_err(Error::io(&tmp))?;
        let mut file = tokio::io::BufWriter::with_capacity(8 << 20, file);
        while let Some(chunk) = chunks.next().await {
            file.write_all(&chunk.map_err(store_error)?).await.map_err(Error::io(&tmp))?;
        }
        file.flush().await.map_err(Error::io(&tmp))?;
        file.into_inner().sync_all().await.map_err(Error::io(&tmp))?;
        tokio::fs::rename(&tmp, to).await.map_err(Error::io(to))
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(Error::io(path))?;
    std::io::Write::write_all(&mut file, bytes).map_err(Error::io(path))?;
    file.sync_all().map_err(Error::io(path))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io { path: path.to_owned(), source: e }),
        _ => Ok(()),
    }
}

/// Removes staging directories of jobs that are no longer running (killed ones).
fn remove_stale_staging(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(STAGING_PREFIX) else { continue };
        let alive = pid.parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names() {
        for name in
            ["manifest.json", "train-00000-of-00016.txt", "val-00015-of-00016.bin", "train-00001-of-00002.parquet"]
        {
            assert!(is_output_name(name), "{name}");
        }
        for name in ["notes.txt", "train-0-of-16.txt", "test-00000-of-00016.txt", "train-00000-of-00016.csv"] {
            assert!(!is_output_name(name), "{name}");
        }
    }

    #[tokio::test]
    async fn existing_output_needs_overwrite_and_is_replaced_at_commit() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().to_string_lossy().into_owned();
        fs::write(dir.path().join("train-00000-of-00002.txt"), "old\n").unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let err = Destination::open(&spec, &StoreOptions::default(), false).await.err().unwrap().to_string();
        assert!(err.contains("--overwrite") && err.contains("train-00000-of-00002.txt"), "{err}");

        let mut out = Destination::open(&spec, &StoreOptions::default(), true).await.unwrap();
        assert!(dir.path().join("train-00000-of-00002.txt").exists(), "nothing is removed before commit");
        fs::write(out.staging().join("train-00000-of-00001.txt"), "new\n").unwrap();
        out.commit(&["train-00000-of-00001.txt".into()], b"{}").await.unwrap();
        let mut names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["manifest.json", "notes.txt", "train-00000-of-00001.txt"]);
    }

    #[tokio::test]
    async fn an_abandoned_job_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().to_string_lossy().into_owned();
        // A staging directory of a process that no longer runs is removed by the next job.
        fs::create_dir_all(dir.path().join(".revgen-staging-4000000000")).unwrap();
        let out = Destination::open(&spec, &StoreOptions::default(), false).await.unwrap();
        fs::write(out.staging().join("train-00000-of-00001.txt"), "half").unwrap();
        drop(out);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn download_writes_the_whole_object_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        // Larger than the write buffer, so that it is written in several pieces.
        let body: Vec<u8> = (0..(20 << 20)).map(|i: u32| (i % 251) as u8).collect();
        store.put(&ObjectPath::from("run/optimizer.bpk"), PutPayload::from(body.clone())).await.unwrap();
        let to = dir.path().join("optimizer.bpk");
        download(&store, &ObjectPath::from("run/optimizer.bpk"), &to, "memory:///run/optimizer.bpk").await.unwrap();
        assert!(fs::read(&to).unwrap() == body);

        let missing = dir.path().join("state.json");
        let err = download(&store, &ObjectPath::from("run/state.json"), &missing, "memory:///run/state.json").await;
        assert!(err.unwrap_err().to_string().contains("memory:///run/state.json"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no partial or temporary file");
    }
}
