//! Where a `--model` comes from: a local HF model directory, a preset in the HF hub cache, a download from the hub,
//! or a random initialisation.
//!
//! The hub cache is the one transformers uses (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`), so models a user already downloaded with Python are found. Downloads are refused
//! when `HF_HUB_OFFLINE=1`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use burn::tensor::Device;

use crate::config::Config;
use crate::model::Gpt2;
use crate::tokenizer::Gpt2Tokenizer;
use crate::weights::{self, CONFIG_FILE, WEIGHTS_FILE};
use crate::{Error, Result};

/// What a model directory must hold.
pub const MODEL_FILES: [&str; 4] = [CONFIG_FILE, WEIGHTS_FILE, "vocab.json", "merges.txt"];

/// A resolved `--model`: the shape, where the weights are (none: random init) and the tokenizer.
pub struct ModelSource {
    pub config: Config,
    pub weights: Option<PathBuf>,
    pub tokenizer: Gpt2Tokenizer,
}

impl ModelSource {
    /// Resolves `spec`: a directory with `config.json` (+ `model.safetensors` + tokenizer files), or a preset
    /// (`tiny`, `gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl`). `tiny`, and any preset with `from_scratch`, needs no
    /// files: it is initialised randomly and uses the built-in tokenizer.
    pub fn resolve(spec: &str, from_scratch: bool) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::from_dir(path, from_scratch);
        }
        let Some(config) = Config::preset(spec) else { return Err(not_a_model(spec)) };
        if spec == "tiny" || from_scratch {
            return Ok(ModelSource { config, weights: None, tokenizer: Gpt2Tokenizer::builtin() });
        }
        let dir = match cached_snapshot(spec) {
            Some(dir) => dir,
            None => download(spec)?,
        };
        Self::from_dir(&dir, false)
    }

    /// Only the tokenizer of `spec`: a model directory's files, or the built-in one for a preset.
    pub fn tokenizer(spec: &str) -> Result<Gpt2Tokenizer> {
        let path = Path::new(spec);
        match (path.is_dir(), Config::preset(spec)) {
            (true, _) => Gpt2Tokenizer::from_dir_or_builtin(path),
            (false, Some(_)) => Ok(Gpt2Tokenizer::builtin()),
            (false, None) => Err(not_a_model(spec)),
        }
    }

    fn from_dir(dir: &Path, from_scratch: bool) -> Result<Self> {
        let config = Config::from_file(&dir.join(CONFIG_FILE))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = match (from_scratch, weights_path.is_file()) {
            (true, _) => None,
            (false, true) => Some(weights_path),
            (false, false) => {
                let hint = if dir.join("pytorch_model.bin").is_file() {
                    "; pytorch_model.bin is not read: convert it with transformers \
                     (`GPT2LMHeadModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`)"
                } else {
                    ""
                };
                return Err(Error::Weights { path: weights_path, reason: format!("not found{hint}") });
            }
        };
        let tokenizer = Gpt2Tokenizer::from_dir_or_builtin(dir)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::InvalidConfig {
                path: dir.join(CONFIG_FILE),
                reason: format!(
                    "vocab_size {} is smaller than the tokenizer's {} tokens",
                    config.vocab_size,
                    tokenizer.vocab_size()
                ),
            });
        }
        Ok(ModelSource { config, weights, tokenizer })
    }

    /// The model on `device`: the weights file, or GPT-2's random initialisation from `seed`.
    pub fn load(&self, device: &Device, seed: u64) -> Result<Gpt2> {
        match &self.weights {
            Some(path) => weights::load(path, &self.config, device),
            None => Gpt2::init(&self.config, device, seed),
        }
    }
}

fn not_a_model(spec: &str) -> Error {
    Error::InvalidModel(format!("{spec:?} is neither a model directory nor a preset ({})", Config::PRESETS.join(", ")))
}

/// The hub repositories a preset is published under; OpenAI's models moved to `openai-community/` in 2024, and
/// older caches hold the bare name.
fn repos(preset: &str) -> [String; 2] {
    [format!("openai-community/{preset}"), preset.to_owned()]
}

/// huggingface_hub's order: `$HF_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
/// `~/.cache/huggingface/hub`.
fn hub_cache() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|home| home.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|cache| cache.join("huggingface/hub")))
        .or_else(|| var("HOME").map(|home| home.join(".cache/huggingface/hub")))
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// A complete snapshot of the preset in the hub cache: `refs/main`'s, else any snapshot holding every file.
fn cached_snapshot(preset: &str) -> Option<PathBuf> {
    let cache = hub_cache()?;
    let complete = |dir: &Path| MODEL_FILES.iter().all(|f| dir.join(f).is_file());
    for repo in repos(preset) {
        let root = repo_dir(&cache, &repo);
        if let Ok(commit) = std::fs::read_to_string(root.join("refs/main")) {
            let dir = root.join("snapshots").join(commit.trim());
            if complete(&dir) {
                return Some(dir);
            }
        }
        let mut snapshots: Vec<PathBuf> =
            std::fs::read_dir(root.join("snapshots")).into_iter().flatten().flatten().map(|e| e.path()).collect();
        snapshots.sort();
        if let Some(dir) = snapshots.into_iter().find(|d| complete(d)) {
            return Some(dir);
        }
    }
    None
}

/// Downloads the preset's files from the hub (`$HF_ENDPOINT`, default https://huggingface.co) into the hub cache,
/// each to a temporary name first, and returns the snapshot directory.
fn download(preset: &str) -> Result<PathBuf> {
    let unavailable =
        |reason: String| Error::ModelUnavailable { spec: preset.to_owned(), reason, files: MODEL_FILES.to_vec() };
    if offline() {
        return Err(unavailable("it is not in the HF hub cache and HF_HUB_OFFLINE is set".to_owned()));
    }
    let cache = hub_cache().ok_or_else(|| unavailable("no HF hub cache directory (set HF_HOME)".to_owned()))?;
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".to_owned());
    let endpoint = endpoint.trim_end_matches('/');
    // A stalled transfer fails instead of hanging: no read may wait longer than a minute.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let repo = &repos(preset)[0];
    let root = repo_dir(&cache, repo);
    let mut snapshot: Option<PathBuf> = None;
    for file in MODEL_FILES {
        let url = format!("{endpoint}/{repo}/resolve/main/{file}");
        let response = agent.get(&url).call().map_err(|e| {
            unavailable(format!(
                "it is not in the HF hub cache ({}) and the download failed: {url}: {e}",
                cache.display()
            ))
        })?;
        // The hub names snapshots by commit; a server that sends none (a plain mirror) gets `main`.
        let dir = snapshot.get_or_insert_with(|| {
            let commit = response.headers().get("x-repo-commit").and_then(|v| v.to_str().ok());
            let commit = commit.filter(|c| c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
            root.join("snapshots").join(commit.unwrap_or("main"))
        });
        std::fs::create_dir_all(&*dir).map_err(Error::io(dir))?;
        let target = dir.join(file);
        eprintln!("revgen: downloading {url}");
        let tmp = dir.join(format!(".{file}.{}.incomplete", std::process::id()));
        // ureq fails the read if the connection ends before Content-Length bytes, so a short file never lands.
        let copy = (|| -> io::Result<()> {
            let mut out = File::create(&tmp)?;
            io::copy(&mut response.into_body().into_reader(), &mut out)?;
            out.flush()?;
            out.sync_all()?;
            std::fs::rename(&tmp, &target)
        })();
        if let Err(e) = copy {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Download { url, reason: e.to_string() });
        }
    }
    let dir = snapshot.expect("MODEL_FILES is not empty");
    let commit = dir.file_name().expect("snapshot dir has a name").to_string_lossy().into_owned();
    let refs = root.join("refs");
    std::fs::create_dir_all(&refs).map_err(Error::io(&refs))?;
    weights::write_atomic(&refs.join("main"), commit.as_bytes())?;
    Ok(dir)
}
