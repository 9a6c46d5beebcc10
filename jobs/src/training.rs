//! `revgen train` with its data or its run directory in object storage (`s3://`, `gs://`, `az://`), and
//! `revgen plot` of a run's losses.
//!
//! The trainer reads and writes local directories. For a remote `--data`, the manifest and the shards the trainer
//! reads (the `.bin` shards when there are any, else the text shards) are downloaded once into a local cache
//! (`$REVGEN_CACHE/train-cache/…`; files already there with the same size are kept). For a remote `--out`, the run
//! is kept in a local directory of that cache and mirrored to the prefix: before training, the prefix's complete
//! checkpoints, metrics and samples are downloaded, so `--resume latest` works on a fresh machine (a Kubernetes
//! pod); after every checkpoint, new and changed files are uploaded and pruned checkpoints deleted. Uploads and
//! downloads stream between file and object (memory does not grow with a shard's or a checkpoint's size), each
//! object upload and each downloaded file is atomic, and a checkpoint's `state.json` goes last (and is deleted
//! first when a checkpoint of that name is replaced, as `best` is), so a checkpoint counts as complete remotely only
//! when it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use revgen_pipeline::chart::Series;
use revgen_pipeline::prepare::destination::{download, upload};
use revgen_pipeline::source::{self, StoreOptions};
use revgen_trainer::checkpoint::{CHECKPOINTS, STATE_FILE};
use revgen_trainer::data::MANIFEST;
use revgen_trainer::train::{
    self, Event, METRICS_FILE, RUN_FILE, Resume, SAMPLES_DIR, StepMetrics, TrainConfig, TrainReport,
};
use url::Url;

use crate::{Error, Result};

/// Whether `spec` names object storage rather than a local path.
pub fn is_remote(spec: &str) -> bool {
    spec.contains("://") && !spec.starts_with("file://")
}

/// Trains with `data` and `out` local paths or object-storage URLs.
pub fn run(
    config: &TrainConfig,
    data: &str,
    out: &str,
    resume: &Resume,
    options: &StoreOptions,
    observe: &mut dyn FnMut(Event),
) -> Result<TrainReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io { path: PathBuf::from(out), source })?;
    let data_dir = if is_remote(data) {
        let mirror = Mirror::open(data, options, "data")?;
        let n = runtime.block_on(mirror.pull_data())?;
        observe(Event::Note(format!("{data}: {n} files downloaded to {}", mirror.local.display())));
        mirror.local
    } else {
        PathBuf::from(data.strip_prefix("file://").unwrap_or(data))
    };
    if !is_remote(out) {
        let run = PathBuf::from(out.strip_prefix("file://").unwrap_or(out));
        return Ok(train::train(config, &data_dir, &run, resume, observe)?);
    }
    let mut mirror = Mirror::open(out, options, "runs")?;
    if *resume == Resume::Fresh {
        // Bad settings must not cost the run that is there.
        train::validate(config)?;
        runtime.block_on(mirror.delete_all())?;
        if mirror.local.exists() {
            std::fs::remove_dir_all(&mirror.local)
                .map_err(|source| Error::Io { path: mirror.local.clone(), source })?;
        }
    } else {
        runtime.block_on(mirror.pull_run())?;
    }
    let mut push_error: Option<Error> = None;
    let report = train::train(config, &data_dir, &mirror.local.clone(), resume, &mut |event| {
        let saved = matches!(event, Event::Saved { .. });
        observe(event);
        if saved && push_error.is_none() {
            push_error = runtime.block_on(mirror.push_run()).err();
        }
    });
    // Upload what the run has even when it failed, then report the first error.
    let pushed = runtime.block_on(mirror.push_run());
    let report = report?;
    if let Some(e) = push_error {
        return Err(e);
    }
    pushed?;
    Ok(TrainReport { run: PathBuf::from(out), ..report })
}

/// `revgen plot`: the train and val loss by step of the run in `run` (its `metrics.jsonl`), drawn to `out`
/// (`.png` or `.svg`).
pub fn plot(run: &Path, out: &Path, title: &str) -> Result<()> {
    let metrics = train::read_metrics(run)?;
    let series = |name: &str, value: fn(&StepMetrics) -> Option<f64>| Series {
        name: name.to_owned(),
        points: metrics.iter().filter_map(|m| Some((m.step as f64, value(m)?))).collect(),
    };
    let lines = [series("train", |m| Some(m.loss)), series("val", |m| m.val_loss)];
    Ok(revgen_pipeline::chart::draw_lines(&lines, title, "step", "loss (nats per token)", out)?)
}

/// A prefix in object storage and its local copy.
struct Mirror {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    local: PathBuf,
    /// Size and modification time of each file as last uploaded, by name relative to `local`.
    pushed: BTreeMap<String, (u64, std::time::SystemTime)>,
}

impl Mirror {
    fn open(spec: &str, options: &StoreOptions, kind: &str) -> Result<Self> {
        let invalid = |reason: String| revgen_pipeline::Error::InvalidInput { spec: spec.to_owned(), reason };
        let url = Url::parse(spec).map_err(|e| invalid(e.to_string()))?;
        let (_, store) = source::open_store(&url, options, spec)?;
        let prefix = ObjectPath::from_url_path(url.path()).map_err(|e| invalid(e.to_string()))?;
        // Readable, plus a hash of the exact URL so that `run-1` and `run_1` never share a directory.
        let readable: String =
            spec.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let hash = spec.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let name = format!("{readable}-{hash:016x}");
        let cache = std::env::var_os("REVGEN_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/revgen")))
            .unwrap_or_else(std::env::temp_dir);
        let local = cache.join("train-cache").join(kind).join(name);
        Ok(Mirror { url: spec.to_owned(), store, prefix, local, pushed: BTreeMap::new() })
    }

    fn key(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{name}", self.prefix))
    }

    fn error(&self, name: &str, source: object_store::Error) -> Error {
        Error::Pipeline(revgen_pipeline::Error::ObjectStore { url: format!("{}/{name}", self.url), source })
    }

    /// Objects under the prefix: name relative to it → size.
    async fn list(&self) -> Result<BTreeMap<String, u64>> {
        let objects: Vec<_> = self.store.list(Some(&self.prefix)).try_collect().await.map_err(|e| self.error("", e))?;
        let base = if self.prefix.as_ref().is_empty() { String::new() } else { format!("{}/", self.prefix) };
        Ok(objects
            .into_iter()
            .filter_map(|o| Some((o.location.as_ref().strip_prefix(&base)?.to_owned(), o.size)))
            .collect())
    }

    /// Downloads `name`; with `size`, only when the local copy has another size (for shards, which prepare never
    /// rewrites in place with the same size).
    async fn download(&self, name: &str, size: Option<u64>) -> Result<bool> {
        let path = self.local.join(name);
        if size.is_some_and(|size| std::fs::metadata(&path).is_ok_and(|m| m.len() == size)) {
            return Ok(false);
        }
        let parent = path.parent().expect("under the mirror");
        std::fs::create_dir_all(parent).map_err(|source| Error::Io { path: parent.to_owned(), source })?;
        download(&self.store, &self.key(name), &path, &format!("{}/{name}", self.url)).await?;
        Ok(true)
    }

    /// The manifest and the shards the trainer will read. Returns the number of files downloaded.
    async fn pull_data(&self) -> Result<usize> {
        let objects = self.list().await?;
        let Some(&size) = objects.get(MANIFEST) else {
            return Err(Error::Trainer(revgen_trainer::Error::Data {
                path: PathBuf::from(format!("{}/{MANIFEST}", self.url)),
                reason: "not found: --data must be a prefix written by `revgen prepare`".to_owned(),
            }));
        };
        let mut n = usize::from(self.download(MANIFEST, Some(size)).await?);
        let tokenized = objects.keys().any(|name| name.ends_with(".bin"));
        let wanted = if tokenized { ".bin" } else { ".txt" };
        for (name, size) in objects.iter().filter(|(name, _)| name.ends_with(wanted) && !name.contains('/')) {
            n += usize::from(self.download(name, Some(*size)).await?);
        }
        Ok(n)
    }

    /// Makes the local run directory a copy of the prefix's run files, leaving out checkpoints without a
    /// `state.json` (an upload cut short). Everything is downloaded again (checkpoint files keep their sizes from
    /// save to save), each checkpoint's `state.json` after its other files, and local run files that the prefix
    /// does not have are removed, so that a stale cache never wins over the bucket.
    async fn pull_run(&mut self) -> Result<()> {
        let objects = self.list().await?;
        let complete: BTreeSet<&str> = objects
            .keys()
            .filter_map(|name| name.strip_prefix(&format!("{CHECKPOINTS}/"))?.strip_suffix(&format!("/{STATE_FILE}")))
            .collect();
        let wanted: Vec<&String> = objects
            .keys()
            .filter(|name| is_run_file(name))
            .filter(|name| {
                let checkpoint = name.strip_prefix(&format!("{CHECKPOINTS}/")).and_then(|rest| rest.split('/').next());
                checkpoint.is_none_or(|c| complete.contains(c))
            })
            .collect();
        for (name, _) in local_files(&self.local)? {
            if is_run_file(&name) && !wanted.contains(&&name) {
                let path = self.local.join(&name);
                std::fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
            }
        }
        let (states, others): (Vec<&String>, Vec<&String>) = wanted.into_iter().partition(|n| n.ends_with(STATE_FILE));
        for name in others.into_iter().chain(states) {
            self.download(name, None).await?;
        }
        self.pushed = local_files(&self.local)?;
        Ok(())
    }

    /// Uploads new and changed files (a checkpoint's `state.json` last) and deletes remote checkpoint files that
    /// are gone locally.
    async fn push_run(&mut self) -> Result<()> {
        let files = local_files(&self.local)?;
        let changed: Vec<&String> =
            files.iter().filter(|(n, v)| self.pushed.get(*n) != Some(v)).map(|(n, _)| n).collect();
        let (states, others): (Vec<&String>, Vec<&String>) =
            changed.into_iter().partition(|n| n.starts_with(&format!("{CHECKPOINTS}/")) && n.ends_with(STATE_FILE));
        for state in &states {
            // A replaced checkpoint (`best`) is incomplete remotely while its other files change.
            let _ = self.store.delete(&self.key(state)).await;
        }
        for name in others.into_iter().chain(states) {
            // Streamed as a multipart upload: optimizer.bpk outgrows a single PUT (5 GB on S3) from gpt2-large up.
            let url = format!("{}/{name}", self.url);
            upload(&self.store, self.local.join(name), self.key(name), url).await?;
        }
        let gone = |n: &&String| n.starts_with(&format!("{CHECKPOINTS}/")) && !files.contains_key(*n);
        let gone: Vec<String> = self.list().await?.into_keys().filter(|n| gone(&n)).collect();
        self.delete(&gone).await?;
        self.pushed = files;
        Ok(())
    }

    /// `--resume fresh`: removes the run's objects (checkpoints, samples, metrics, settings), and nothing else
    /// that the prefix holds.
    async fn delete_all(&self) -> Result<()> {
        let ours: Vec<String> = self.list().await?.into_keys().filter(|n| is_run_file(n)).collect();
        self.delete(&ours).await
    }

    /// Deletes objects, every checkpoint's `state.json` first, so that a checkpoint cut short by a crash here
    /// no longer looks complete.
    async fn delete(&self, names: &[String]) -> Result<()> {
        let (states, others): (Vec<&String>, Vec<&String>) = names.iter().partition(|n| n.ends_with(STATE_FILE));
        for name in states.into_iter().chain(others) {
            self.store.delete(&self.key(name)).await.map_err(|e| self.error(name, e))?;
        }
        Ok(())
    }
}

/// Whether `name` (relative to the run's prefix) is one of the files a training run writes; mirroring never
/// touches anything else under the prefix.
fn is_run_file(name: &str) -> bool {
    [CHECKPOINTS, SAMPLES_DIR].iter().any(|dir| name.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/')))
        || [METRICS_FILE, RUN_FILE].contains(&name)
}

/// Files under `dir` (relative names with `/`), with size and modification time; hidden entries (partial
/// checkpoints, temporaries) are left out.
fn local_files(dir: &Path) -> Result<BTreeMap<String, (u64, std::time::SystemTime)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        let entries = match std::fs::read_dir(&at) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Io { path: at, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| Error::Io { path: at.clone(), source })?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let meta = entry.metadata().map_err(|source| Error::Io { path: entry.path(), source })?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let name = entry.path().strip_prefix(dir).expect("under dir").to_string_lossy().replace('\\', "/");
                out.insert(
                    name,
                    (meta.len(), meta.modified().map_err(|source| Error::Io { path: entry.path(), source })?),
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_run_files_are_mirrored() {
        for name in ["checkpoints/step-000010/state.json", "samples/step-10.txt", "metrics.jsonl", "train.json"] {
            assert!(is_run_file(name), "{name}");
        }
        for name in ["checkpoints_old/x", "data/train-00000-of-00016.bin", "notes.txt", "samplesX/a"] {
            assert!(!is_run_file(name), "{name}");
        }
        assert!(is_remote("s3://bucket/run") && is_remote("gs://b/r") && !is_remote("file:///tmp/run"));
        assert!(!is_remote("runs/a"));
    }
}
