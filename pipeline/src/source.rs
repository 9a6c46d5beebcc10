//! Where the dump is read from: local paths, directories and globs, and object-store URLs (`file://`, `s3://`,
//! `gs://`, `az://`, `https://`). Every input spec resolves to a list of objects, each with its size, etag and
//! format, before anything is read, so that reports can name every object and progress knows the total.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{Error, Result};

/// How to reach object stores. Credentials are never flags: they come from the usual environment variables
/// (`AWS_*`, `GOOGLE_*`, `AZURE_*`), so they never show up in a process list or a job spec.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoreOptions {
    /// An S3-compatible endpoint, such as `http://127.0.0.1:5000` for a local server. `AWS_ENDPOINT_URL` also works.
    pub endpoint: Option<String>,
    /// The S3 region; else `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Anonymous S3 requests, for public buckets (like the AWS CLI's `--no-sign-request`).
    pub no_sign_request: bool,
}

/// The file formats of the dump, told from an object's name. Gzip is separate: `.tsv.gz` and `.json.gz` are the
/// same formats, compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// AWS `amazon_reviews_us_*.tsv`: tab-separated, a header line, no quoting or escaping at all.
    Tsv,
    /// Parquet, typed or not, optionally in a hive layout (`product_category=X/part-….parquet`).
    Parquet,
    /// JSON lines in one of the McAuley layouts (2014, 2018, 2023), told apart per line by their keys.
    Json,
}

impl Kind {
    /// The kind and whether the object is gzipped, from its name; `None` for names that are not part of a dump.
    pub fn from_name(name: &str) -> Option<(Kind, bool)> {
        let name = name.to_ascii_lowercase();
        if name.ends_with(".parquet") {
            return Some((Kind::Parquet, false));
        }
        let (stem, gzip) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        let kind = if stem.ends_with(".tsv") {
            Kind::Tsv
        } else if stem.ends_with(".json") || stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
            Kind::Json
        } else {
            return None;
        };
        Some((kind, gzip))
    }
}

/// One object of the dump.
#[derive(Clone)]
pub struct Input {
    /// What users see: an absolute local path, or the object's URL.
    pub url: String,
    /// `scheme://authority` of the store, the key DataFusion registers the store under.
    pub store_url: Url,
    pub store: Arc<dyn ObjectStore>,
    pub location: ObjectPath,
    pub size: u64,
    pub e_tag: Option<String>,
    pub kind: Kind,
    pub gzip: bool,
    /// `key=value` directory names above the object (hive partitioning), such as `product_category=Books`.
    pub partition_values: Vec<(String, String)>,
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input").field("url", &self.url).field("size", &self.size).field("kind", &self.kind).finish()
    }
}

impl Input {
    /// The product category a file name says, for formats that carry none in their rows (McAuley files are named
    /// `Electronics_5.json`, `reviews_Musical_Instruments_5.json`, …).
    pub fn category_from_name(&self) -> Option<String> {
        let name = self.location.filename()?;
        let stem = name.split('.').next()?;
        let stem = stem.strip_prefix("reviews_").unwrap_or(stem);
        let stem = stem.strip_suffix("_5").unwrap_or(stem);
        (!stem.is_empty()).then(|| stem.to_owned())
    }
}

/// Resolves input specs (paths, directories, globs or URLs) into the objects they name, in a stable order.
/// A spec that names nothing is an error naming the spec: an empty dump is never read silently.
pub async fn resolve(specs: &[String], options: &StoreOptions) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for spec in specs {
        let found = resolve_one(spec, options).await?;
        if found.is_empty() {
            return Err(Error::NoInput { spec: spec.clone() });
        }
        inputs.extend(found);
    }
    inputs.sort_by(|a, b| a.url.cmp(&b.url));
    inputs.dedup_by(|a, b| a.url == b.url);
    Ok(inputs)
}

async fn resolve_one(spec: &str, options: &StoreOptions) -> Result<Vec<Input>> {
    let url = if spec.contains("://") {
        Url::parse(spec).map_err(|e| Error::InvalidInput { spec: spec.to_owned(), reason: e.to_string() })?
    } else {
        local_url(spec)?
    };
    let (store_url, store) = open_store(&url, options, spec)?;
    let (scheme, path) = ObjectStoreScheme::parse(&url)
        .map_err(|e| Error::InvalidInput { spec: spec.to_owned(), reason: e.to_string() })?;
    // Already percent-decoded: object names as the store holds them.
    let decoded = path.as_ref().to_owned();
    let glob_at = decoded.find(['*', '?', '[']);
    let local = scheme == ObjectStoreScheme::Local;
    let describe = |location: &ObjectPath| display_url(&store_url, local, location);

    // A glob lists everything under its literal prefix and keeps the matches.
    if let Some(at) = glob_at {
        let prefix = decoded[..at].rsplit_once('/').map_or("", |(dir, _)| dir);
        let pattern = glob::Pattern::new(decoded.trim_start_matches('/'))
            .map_err(|e| Error::InvalidInput { spec: spec.to_owned(), reason: e.to_string() })?;
        let listed = list(&store, &ObjectPath::from(prefix), spec).await?;
        let matched = listed.into_iter().filter(|meta| pattern.matches(meta.location.as_ref()));
        return Ok(matched.filter_map(|meta| to_input(&store_url, &store, meta, None, &describe)).collect());
    }

    let location = ObjectPath::from(decoded.as_str());
    // A single object: it must be a dump file, or the user named the wrong thing.
    match store.head(&location).await {
        Ok(meta) => {
            let input = to_input(&store_url, &store, meta, None, &describe);
            return input.map(|i| vec![i]).ok_or_else(|| Error::InvalidInput {
                spec: spec.to_owned(),
                reason: "not a dump file: expected .tsv, .tsv.gz, .parquet, .json, .jsonl or .json.gz".into(),
            });
        }
        Err(object_store::Error::NotFound { .. }) => {}
        // Local directories answer head() with an error of their own; listing them below is what works.
        Err(_) if local && FsPath::new(&format!("/{decoded}")).is_dir() => {}
        Err(source) => return Err(Error::ObjectStore { url: spec.to_owned(), source }),
    }
    // A directory or prefix: every dump file under it, partition directories included.
    let listed = list(&store, &location, spec).await?;
    let prefix_len = location.as_ref().len();
    Ok(listed
        .into_iter()
        .filter_map(|meta| {
            let relative = meta.location.as_ref().get(prefix_len..).unwrap_or_default().trim_start_matches('/');
            let partitions = partition_values(relative);
            to_input(&store_url, &store, meta, Some(partitions), &describe)
        })
        .collect())
}

async fn list(store: &Arc<dyn ObjectStore>, prefix: &ObjectPath, spec: &str) -> Result<Vec<object_store::ObjectMeta>> {
    let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
    store.list(prefix).try_collect().await.map_err(|source| Error::ObjectStore { url: spec.to_owned(), source })
}

fn to_input(
    store_url: &Url,
    store: &Arc<dyn ObjectStore>,
    meta: object_store::ObjectMeta,
    partitions: Option<Vec<(String, String)>>,
    describe: &impl Fn(&ObjectPath) -> String,
) -> Option<Input> {
    let name = meta.location.filename()?;
    // Hidden files are temporaries of writers that have not finished (ours start with '.').
    if name.starts_with('.') || name.starts_with('_') {
        return None;
    }
    let (kind, gzip) = Kind::from_name(name)?;
    let partition_values = partitions.unwrap_or_else(|| partition_values(meta.location.as_ref()));
    Some(Input {
        url: describe(&meta.location),
        store_url: store_url.clone(),
        store: Arc::clone(store),
        location: meta.location,
        size: meta.size,
        e_tag: meta.e_tag,
        kind,
        gzip,
        partition_values,
    })
}

/// `key=value` directory names in a relative path.
fn partition_values(relative: &str) -> Vec<(String, String)> {
    let mut parts: Vec<&str> = relative.split('/').collect();
    parts.pop(); // the file name
    parts.into_iter().filter_map(|dir| dir.split_once('=')).map(|(k, v)| (k.to_owned(), percent_decode(v))).collect()
}

/// Hive writers escape special characters in partition values (`Home%20Improvement`). Malformed escapes are kept
/// as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn display_url(store_url: &Url, local: bool, location: &ObjectPath) -> String {
    if local { format!("/{location}") } else { format!("{}/{location}", store_url.as_str().trim_end_matches('/')) }
}

/// A local path as a `file://` URL, made absolute (the store addresses absolute paths only).
fn local_url(spec: &str) -> Result<Url> {
    let path = PathBuf::from(spec);
    let absolute = if path.is_absolute() {
        path
    } else {
        std::env::current_dir().map_err(Error::io(".")).map(|cwd| cwd.join(&path))?
    };
    let mut url = Url::from_directory_path("/").expect("root is a directory");
    // Build the path by hand: Url::from_file_path would percent-encode glob characters.
    url.set_path(&absolute.to_string_lossy());
    Ok(url)
}

/// The store for a URL, and the URL of its root (`s3://bucket`, `file:///`).
pub fn open_store(url: &Url, options: &StoreOptions, spec: &str) -> Result<(Url, Arc<dyn ObjectStore>)> {
    let invalid = |reason: String| Error::InvalidInput { spec: spec.to_owned(), reason };
    let (scheme, _) = ObjectStoreScheme::parse(url).map_err(|e| invalid(e.to_string()))?;
    let root = Url::parse(&url[..url::Position::BeforePath]).map_err(|e| invalid(e.to_string()))?;
    let store_err = |source| Error::ObjectStore { url: spec.to_owned(), source };
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => Arc::new(LocalFileSystem::new()),
        ObjectStoreScheme::AmazonS3 => {
            let mut builder = AmazonS3Builder::from_env().with_url(url.as_str());
            if let Some(endpoint) = &options.endpoint {
                builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
            } else if std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://")) {
                builder = builder.with_allow_http(true);
            }
            if let Some(region) = &options.region {
                builder = builder.with_region(region);
            }
            if options.no_sign_request {
                builder = builder.with_skip_signature(true);
            }
            Arc::new(builder.build().map_err(store_err)?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            Arc::new(GoogleCloudStorageBuilder::from_env().with_url(url.as_str()).build().map_err(store_err)?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            Arc::new(MicrosoftAzureBuilder::from_env().with_url(url.as_str()).build().map_err(store_err)?)
        }
        ObjectStoreScheme::Http => Arc::new(HttpBuilder::new().with_url(root.as_str()).build().map_err(store_err)?),
        other => return Err(invalid(format!("unsupported location {other:?}"))),
    };
    Ok((root, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_names() {
        assert_eq!(Kind::from_name("amazon_reviews_us_Books_v1_00.tsv.gz"), Some((Kind::Tsv, true)));
        assert_eq!(Kind::from_name("x.TSV"), Some((Kind::Tsv, false)));
        assert_eq!(Kind::from_name("part-00000-abc.c000.snappy.parquet"), Some((Kind::Parquet, false)));
        assert_eq!(Kind::from_name("Electronics_5.json.gz"), Some((Kind::Json, true)));
        assert_eq!(Kind::from_name("x.jsonl"), Some((Kind::Json, false)));
        assert_eq!(Kind::from_name("_SUCCESS"), None);
        assert_eq!(Kind::from_name("index.txt"), None);
    }

    #[test]
    fn hive_partitions() {
        assert_eq!(
            partition_values("product_category=Home%20Improvement/part-0.parquet"),
            vec![("product_category".to_owned(), "Home Improvement".to_owned())]
        );
        assert!(partition_values("part-0.parquet").is_empty());
    }

    #[tokio::test]
    async fn resolves_files_directories_and_globs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("product_category=Books")).unwrap();
        for name in ["a.tsv", "b.tsv.gz", "notes.txt", ".b.tsv.gz.tmp-1", "product_category=Books/p.parquet"] {
            std::fs::write(root.join(name), b"x").unwrap();
        }
        let options = StoreOptions::default();
        let spec = |p: &str| vec![root.join(p).to_string_lossy().into_owned()];

        let all = resolve(&spec(""), &options).await.unwrap();
        let names: Vec<_> = all.iter().map(|i| i.location.filename().unwrap().to_owned()).collect();
        assert_eq!(names, ["a.tsv", "b.tsv.gz", "p.parquet"]);
        assert_eq!(all[2].partition_values, vec![("product_category".to_owned(), "Books".to_owned())]);
        assert_eq!(all[0].url, root.join("a.tsv").to_string_lossy());

        let globbed = resolve(&spec("*.tsv*"), &options).await.unwrap();
        assert_eq!(globbed.len(), 2);
        assert!(globbed[1].gzip);

        let missing = resolve(&spec("nope.tsv"), &options).await.unwrap_err().to_string();
        assert!(missing.contains("nope.tsv"), "{missing}");
        let wrong = resolve(&spec("notes.txt"), &options).await.unwrap_err().to_string();
        assert!(wrong.contains("not a dump file"), "{wrong}");
    }
}
