//! Training checkpoints: `RUN/checkpoints/step-NNNNNN/` and `RUN/checkpoints/best/`.
//!
//! A checkpoint directory is an HF model directory (`model.safetensors`, `config.json`, tokenizer files), so
//! `score`, `export` and transformers load it as it is, plus what resuming needs: `optimizer.bpk` (burn's AdamW
//! moments, keyed by parameter id) and `state.json` (step, data position, sampling RNG, best val loss, the run's
//! config). A checkpoint is written under a hidden temporary name and renamed into place when complete, so a
//! killed run leaves either the whole checkpoint or none of it.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::data::Position;
use crate::model::Gpt2;
use crate::tokenizer::Gpt2Tokenizer;
use crate::train::TrainConfig;
use crate::weights::{self, write_atomic};
use crate::{Error, Result};

pub const CHECKPOINTS: &str = "checkpoints";
pub const STATE_FILE: &str = "state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub const BEST: &str = "best";
const FORMAT: &str = "revgen.checkpoint.v1";

/// Everything besides the weights and the optimizer that a resumed run needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub format: String,
    /// Optimizer updates done.
    pub step: u64,
    /// Where the train stream continues.
    pub data: Position,
    /// Position of the sampling RNG's stream (ChaCha8, seeded from the run's seed).
    pub sample_rng_word_pos: u128,
    pub best_val_loss: Option<f64>,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens_seen: u64,
    /// Training time so far, over all resumed runs.
    pub elapsed_s: f64,
    pub model: Config,
    pub config: TrainConfig,
}

impl State {
    pub fn new(model: Config, config: TrainConfig) -> Self {
        State {
            format: FORMAT.to_owned(),
            step: 0,
            data: Position::default(),
            sample_rng_word_pos: 0,
            best_val_loss: None,
            train_loss: None,
            val_loss: None,
            tokens_seen: 0,
            elapsed_s: 0.0,
            model,
            config,
        }
    }
}

/// The name of the checkpoint taken after `step` updates.
pub fn step_name(step: u64) -> String {
    format!("step-{step:06}")
}

/// Writes a checkpoint as `RUN/checkpoints/NAME`, replacing one of that name only once the new one is complete.
pub fn save(
    run: &Path,
    name: &str,
    model: &Gpt2,
    optimizer: &ModuleOptimizer,
    tokenizer: &Gpt2Tokenizer,
    state: &State,
) -> Result<PathBuf> {
    release_free_heap();
    let root = run.join(CHECKPOINTS);
    std::fs::create_dir_all(&root).map_err(Error::io(&root))?;
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    weights::save(model, &state.model, tokenizer, &tmp)?;
    // burnpack streams the moments to a scratch file, syncs it and renames it: no second, serialised copy of them.
    let optimizer_file = tmp.join(OPTIMIZER_FILE);
    optimizer.save(&optimizer_file).map_err(|e| checkpoint_error(&optimizer_file, e))?;
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    write_atomic(&tmp.join(STATE_FILE), &json)?;
    sync_dir(&tmp)?;
    let dest = root.join(name);
    if dest.exists() {
        // A directory cannot be renamed over a non-empty one: move the old one aside first.
        let old = root.join(format!(".old-{name}-{}", std::process::id()));
        std::fs::rename(&dest, &old).map_err(Error::io(&dest))?;
        std::fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
        std::fs::remove_dir_all(&old).map_err(Error::io(&old))?;
    } else {
        std::fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
    }
    sync_dir(&root)?;
    Ok(dest)
}

/// Reads a checkpoint's `state.json`.
pub fn load_state(dir: &Path) -> Result<State> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Checkpoint { path: path.clone(), reason: "not found: not a revgen training checkpoint".to_owned() }
        }
        _ => Error::Io { path: path.clone(), source },
    })?;
    let state: State = serde_json::from_str(&text).map_err(|source| Error::Json { path: path.clone(), source })?;
    if state.format != FORMAT {
        return Err(Error::Checkpoint { path, reason: format!("format {:?}, expected {FORMAT:?}", state.format) });
    }
    Ok(state)
}

/// Restores the optimizer state saved in checkpoint `dir` into `optimizer`.
pub fn load_optimizer(dir: &Path, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = dir.join(OPTIMIZER_FILE);
    if !path.is_file() {
        return Err(checkpoint_error(&path, "not found"));
    }
    // Read from the file as each moment is restored, not all of it into memory first.
    optimizer.load(&path).map_err(|e| checkpoint_error(&path, e))
}

/// The newest complete `step-*` checkpoint of a run (one with its `state.json`), if any.
pub fn latest(run: &Path) -> Result<Option<PathBuf>> {
    Ok(steps(run)?.into_iter().rev().map(|(_, path)| path).find(|p| p.join(STATE_FILE).is_file()))
}

/// Removes the step checkpoints after `step`.
pub fn remove_after(run: &Path, step: u64) -> Result<()> {
    for (_, path) in steps(run)?.into_iter().filter(|(s, _)| *s > step) {
        std::fs::remove_dir_all(&path).map_err(Error::io(&path))?;
    }
    Ok(())
}

/// Removes all but the newest `keep` step checkpoints (`best` stays), and temporary directories that a killed
/// run left behind.
pub fn prune(run: &Path, keep: usize) -> Result<()> {
    let all = steps(run)?;
    let drop = all.len().saturating_sub(keep.max(1));
    for (_, path) in &all[..drop] {
        std::fs::remove_dir_all(path).map_err(Error::io(path))?;
    }
    Ok(())
}

/// Cleans up after a killed run: a checkpoint caught between its two renames (replacing one of the same name,
/// as `best` is) is put back, the complete new one if it got that far, else the old one; the rest of the hidden
/// `.tmp-*` and `.old-*` directories are removed.
pub fn remove_partial(run: &Path) -> Result<()> {
    let root = run.join(CHECKPOINTS);
    let Ok(entries) = std::fs::read_dir(&root) else { return Ok(()) };
    let mut hidden: Vec<(String, PathBuf)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name.starts_with(".tmp-") || name.starts_with(".old-"))
        .collect();
    // `.tmp-` sorts before `.old-`: a complete new checkpoint is restored before the old one is considered.
    hidden.sort_by_key(|(name, _)| !name.starts_with(".tmp-"));
    for (name, path) in hidden {
        let target = name[5..].rsplit_once('-').map(|(target, _pid)| root.join(target));
        let restorable = name.starts_with(".old-") || path.join(STATE_FILE).is_file();
        match target {
            Some(target) if restorable && !target.exists() => {
                std::fs::rename(&path, &target).map_err(Error::io(&target))?;
            }
            _ => std::fs::remove_dir_all(&path).map_err(Error::io(&path))?,
        }
    }
    Ok(())
}

/// Step checkpoints, oldest first.
fn steps(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = run.join(CHECKPOINTS);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&root)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(&root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn checkpoint_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint { path: path.to_owned(), reason: e.to_string() }
}

/// Hands the heap's free pages back to the kernel before a checkpoint copies the model and the optimizer state to
/// the host. The binary keeps freed memory in the heap (`src/process.rs`), so after training steps the heap holds
/// the activations' freed pages, and the checkpoint's copies grew it past them: 355M at 1 × 1024 on LibTorch CPU
/// peaked at 13.0 GB saving, 7.0 GB training; with this the save peaks at 7.5 GB. The next step faults its pages
/// in again, once per checkpoint.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the kernel; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_and_prune_follow_step_numbers() {
        let run = tempfile::tempdir().unwrap();
        for step in [5, 100, 20] {
            std::fs::create_dir_all(run.path().join(CHECKPOINTS).join(step_name(step))).unwrap();
        }
        let root = run.path().join(CHECKPOINTS);
        for step in [5, 20] {
            std::fs::write(root.join(step_name(step)).join(STATE_FILE), "{}").unwrap();
        }
        // A `best` caught between its renames: the old one moved aside, the new one complete.
        std::fs::create_dir_all(root.join(".old-best-7")).unwrap();
        std::fs::create_dir_all(root.join(".tmp-best-7")).unwrap();
        std::fs::write(root.join(".tmp-best-7").join(STATE_FILE), "new").unwrap();
        std::fs::create_dir_all(root.join(".tmp-step-000200-1")).unwrap();
        // step-000100 has no state.json: not complete.
        assert_eq!(latest(run.path()).unwrap().unwrap().file_name().unwrap(), "step-000020");
        prune(run.path(), 2).unwrap();
        remove_partial(run.path()).unwrap();
        assert_eq!(std::fs::read_to_string(root.join(BEST).join(STATE_FILE)).unwrap(), "new");
        let mut left: Vec<String> = std::fs::read_dir(run.path().join(CHECKPOINTS))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["best", "step-000020", "step-000100"]);
    }
}
