//! GPT-2 weights in HF format: `model.safetensors` + `config.json` + tokenizer files, read and written.
//!
//! Layout facts that matter here (DESIGN.md):
//! - HF's `Conv1D` stores weights `[in, out]`, the same as burn's `Linear`, so weights are copied as they are. A
//!   blanket "PyTorch linear" adapter would transpose them, and the square `attn.c_proj` would load transposed
//!   without any error; names and shapes are therefore checked one by one against the model.
//! - The hub's original files have no `transformer.` prefix and carry `attn.bias` / `attn.masked_bias` buffers;
//!   files saved by recent transformers have the prefix and no buffers. Both read. `lm_head.weight`, when present,
//!   must equal `wte.weight` (GPT-2 ties them).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

use crate::config::Config;
use crate::model::{Gpt2, Parameter, WeightSource};
use crate::tokenizer::Gpt2Tokenizer;
use crate::{Error, Result};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";

/// Loads the weights in `path` into a model of shape `config`.
pub fn load(path: &Path, config: &Config, device: &Device) -> Result<Gpt2> {
    let file = File::open(path).map_err(Error::io(path))?;
    // SAFETY: the map is read-only and lives only for this call; a concurrent truncation of the file by another
    // process could fault, as with any mmap reader (safetensors' own loaders do the same).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(Error::io(path))?;
    let tensors = SafeTensors::deserialize(&map)
        .map_err(|e| Error::Weights { path: path.to_owned(), reason: format!("not a safetensors file: {e}") })?;
    let mut source = FileSource::new(path, &tensors, &map)?;
    let model = Gpt2::build(config, device, &mut source)?;
    source.finish()?;
    Ok(model)
}

/// Writes `model` as an HF model directory that `GPT2LMHeadModel.from_pretrained(dir)` and
/// `AutoTokenizer.from_pretrained(dir)` load. Each file appears whole or not at all.
///
/// The weights go out one parameter at a time (safetensors asks each [`HostCopy`] for its bytes as it writes them),
/// so a save holds one parameter's host copy, not the whole model's two or three times over.
pub fn save(model: &Gpt2, config: &Config, tokenizer: &Gpt2Tokenizer, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let tensors: Vec<(String, HostCopy)> = model
        .named_parameters()
        .into_iter()
        .map(|(name, param)| (format!("transformer.{name}"), HostCopy { shape: param.shape(), param }))
        .collect();
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let weights = write_atomic_with(&dir.join(WEIGHTS_FILE), |tmp| {
        safetensors::serialize_to_file(tensors, Some(metadata), tmp).map_err(std::io::Error::other)
    })?;
    let mut files = vec![(CONFIG_FILE, serde_json::to_vec_pretty(&config.to_hf_json()).expect("static JSON"))];
    files.extend(tokenizer.hf_files(config.n_positions)?);
    let mut written = vec![weights];
    for (name, bytes) in files {
        written.push(write_atomic(&dir.join(name), &bytes)?);
    }
    Ok(written)
}

/// Writes `bytes` to a temporary name beside `path`, syncs it, then renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    write_atomic_with(path, |tmp| File::create(tmp)?.write_all(bytes))
}

/// Has `write` create the file at a temporary name beside `path`, syncs it, then renames it into place.
fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        write(&tmp)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path)(e));
    }
    Ok(path.to_owned())
}

/// A parameter that safetensors copies to the host when it writes it.
struct HostCopy {
    shape: Vec<usize>,
    param: Parameter,
}

impl safetensors::View for HostCopy {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let data = self.param.host_data();
        let values = data.as_slice::<f32>().expect("host_data gives f32");
        let mut bytes = Vec::with_capacity(self.data_len());
        values.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        bytes.into()
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * size_of::<f32>()
    }
}

/// Serves the model's parameters out of one safetensors file, by HF name.
struct FileSource<'a> {
    path: &'a Path,
    /// Normalised name (no `transformer.` prefix) → tensor; entries are removed as they are used.
    tensors: BTreeMap<String, TensorView<'a>>,
    lm_head: Option<TensorView<'a>>,
    wte: Option<Vec<u8>>,
    /// The mapping the views point into; each tensor's pages are released once copied, so that loading peaks at
    /// about one copy of the weights instead of two.
    map: &'a memmap2::Mmap,
}

impl<'a> FileSource<'a> {
    fn new(path: &'a Path, file: &'a SafeTensors<'a>, map: &'a memmap2::Mmap) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        let mut lm_head = None;
        for (name, view) in file.iter() {
            let short = name.strip_prefix("transformer.").unwrap_or(name);
            if short.ends_with(".attn.bias") || short.ends_with(".attn.masked_bias") {
                continue; // causal-mask buffers, not parameters
            }
            if short == "lm_head.weight" {
                lm_head = Some(view);
                continue;
            }
            if tensors.insert(short.to_owned(), view).is_some() {
                return Err(tensor_error(path, name, "appears both with and without the transformer. prefix"));
            }
        }
        Ok(FileSource { path, tensors, lm_head, wte: None, map })
    }

    /// Fails on tensors the model did not ask for, and on an `lm_head` that is not tied to `wte`.
    fn finish(self) -> Result<()> {
        if let Some(name) = self.tensors.keys().next() {
            return Err(tensor_error(self.path, name, "is not a GPT-2 parameter (unexpected tensor)"));
        }
        if let (Some(lm_head), Some(wte)) = (self.lm_head, self.wte) {
            if lm_head.data() != wte.as_slice() {
                return Err(tensor_error(self.path, "lm_head.weight", "differs from wte.weight; GPT-2 ties them"));
            }
        }
        Ok(())
    }
}

impl WeightSource for FileSource<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self.tensors.remove(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.to_owned(),
            name: name.to_owned(),
            shape: shape.to_vec(),
        })?;
        // Vectors may be stored as [n] (HF) or [1, n].
        let found: Vec<usize> = view.shape().iter().copied().filter(|&d| d != 1 || shape.len() == 2).collect();
        if found != shape {
            return Err(tensor_error(
                self.path,
                name,
                &format!("shape {:?} does not match the model's {shape:?} (check config.json)", view.shape()),
            ));
        }
        if name == "wte.weight" && self.lm_head.is_some() {
            self.wte = Some(view.data().to_vec());
        }
        let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            tensor_error(self.path, name, &format!("dtype {:?} is not supported (F32, F16, BF16)", view.dtype()))
        })?;
        let offset = view.data().as_ptr() as usize - self.map.as_ptr() as usize;
        // SAFETY: the map is a read-only file mapping, so dropping its pages loses nothing: a later read of this
        // range (say, the tied lm_head check) faults them back in from the file. Failure only costs memory.
        let _ =
            unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, view.data().len()) };
        Ok(values)
    }
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => return None,
    })
}

fn tensor_error(path: &Path, name: &str, reason: &str) -> Error {
    Error::Tensor { path: path.to_owned(), name: name.to_owned(), reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;

    use super::*;
    use crate::backend::Backend;
    use crate::hub::ModelSource;
    use crate::model::host_values;
    use crate::model::ids_tensor;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gpt2")
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        host_values(t)
    }

    /// revgen's logits, loss and KV-cache logits equal transformers' on `device`.
    fn assert_parity(device: &Device) {
        let mut scored = 0;
        for (i, text) in crate::parity::compare(&fixture(), device).unwrap().iter().enumerate() {
            eprintln!("{device:?} text {i}: {text:?}");
            assert!(text.ids_match, "token ids of text {i}");
            assert!(text.logit_diff <= 1e-4, "text {i}: logits differ by {}", text.logit_diff);
            assert!(
                text.last_position_diff <= 1e-4,
                "text {i}: last-position logits differ by {}",
                text.last_position_diff
            );
            assert!(text.kv_cache_diff <= 1e-4, "text {i}: KV-cache logits differ by {}", text.kv_cache_diff);
            // A one-token text has nothing to predict and no reference loss.
            if let (Some(loss), Some(per_token)) = (text.loss_rel_diff, text.per_token_loss_diff) {
                assert!(loss <= 1e-5, "text {i}: loss differs by {loss} (relative)");
                assert!(per_token <= 1e-4, "text {i}: a token's loss differs by {per_token}");
                scored += 1;
            }
        }
        assert_eq!(scored, 3, "the fixture has three texts with a reference loss");
    }

    #[test]
    fn flex_matches_transformers() {
        assert_parity(&Backend::Flex.inference_device("cpu").unwrap());
        // The training device (autodiff) computes attention differently; it must agree too.
        assert_parity(&Backend::Flex.device("cpu").unwrap());
    }

    #[cfg(feature = "tch")]
    #[test]
    fn tch_cpu_matches_transformers() {
        assert_parity(&Backend::Tch.inference_device("cpu").unwrap());
        assert_parity(&Backend::Tch.device("cpu").unwrap());
    }

    /// A tensor as it sits in a file: name, dtype, shape, bytes.
    type RawTensor = (String, Dtype, Vec<usize>, Vec<u8>);
    type Edit = fn(&mut Vec<RawTensor>);

    /// The fixture's tensors, renamed or changed by `edit`, written to a temporary model directory.
    fn edited_fixture(tag: &str, edit: impl Fn(&mut Vec<RawTensor>)) -> PathBuf {
        let bytes = std::fs::read(fixture().join(WEIGHTS_FILE)).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<_> =
            file.iter().map(|(n, v)| (n.to_owned(), v.dtype(), v.shape().to_vec(), v.data().to_vec())).collect();
        edit(&mut tensors);
        let dir = std::env::temp_dir().join(format!("revgen-weights-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture().join(CONFIG_FILE), dir.join(CONFIG_FILE)).unwrap();
        let views: Vec<_> =
            tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
        std::fs::write(dir.join(WEIGHTS_FILE), safetensors::serialize(views, None).unwrap()).unwrap();
        dir
    }

    fn load_dir(dir: &Path) -> Result<Gpt2> {
        let device = Device::flex();
        ModelSource::resolve(&dir.to_string_lossy(), false)?.load(&device, 0)
    }

    #[test]
    fn hub_layout_without_prefix_and_with_buffers_loads_the_same_model() {
        let dir = edited_fixture("hub", |tensors| {
            let mut extra = Vec::new();
            for (name, dtype, shape, data) in tensors.iter_mut() {
                *name = name.trim_start_matches("transformer.").to_owned();
                if name == "wte.weight" {
                    extra.push(("lm_head.weight".to_owned(), *dtype, shape.clone(), data.clone()));
                }
            }
            extra.push(("h.0.attn.bias".to_owned(), Dtype::F32, vec![1, 1, 2, 2], vec![0; 16]));
            extra.push(("h.1.attn.masked_bias".to_owned(), Dtype::F32, vec![], vec![0; 4]));
            tensors.extend(extra);
        });
        let device = Device::flex();
        let ids = ids_tensor(&[464, 3290, 318], 1, &device);
        let a = values(load_dir(&dir).unwrap().forward(ids.clone()));
        let b = values(load_dir(&fixture()).unwrap().forward(ids));
        assert_eq!(a, b);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_weights_name_the_tensor() {
        let cases: [(&str, Edit, &str); 4] = [
            ("missing", |t| t.retain(|(n, ..)| n != "transformer.h.1.mlp.c_fc.bias"), "h.1.mlp.c_fc.bias"),
            (
                "shape",
                |t| {
                    let proj = t.iter_mut().find(|(n, ..)| n == "transformer.h.0.mlp.c_proj.weight").unwrap();
                    proj.2 = vec![proj.2[1], proj.2[0]]; // [256, 64] stored as [64, 256]
                },
                "h.0.mlp.c_proj.weight",
            ),
            (
                "extra",
                |t| t.push(("transformer.h.9.attn.c_attn.weight".into(), Dtype::F32, vec![1], vec![0; 4])),
                "h.9.attn.c_attn.weight",
            ),
            (
                "untied",
                |t| {
                    let (_, d, s, mut b) = t.iter().find(|(n, ..)| n == "transformer.wte.weight").unwrap().clone();
                    b[0] ^= 1;
                    t.push(("lm_head.weight".into(), d, s, b));
                },
                "lm_head.weight",
            ),
        ];
        for (tag, edit, tensor) in cases {
            let dir = edited_fixture(tag, edit);
            let err = load_dir(&dir).err().unwrap_or_else(|| panic!("{tag}: loaded")).to_string();
            assert!(err.contains(tensor) && err.contains(WEIGHTS_FILE), "{tag}: {err}");
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn export_then_import_gives_the_same_model() {
        let device = Device::flex();
        let source = ModelSource::resolve(&fixture().to_string_lossy(), false).unwrap();
        let model = source.load(&device, 0).unwrap();
        let out = std::env::temp_dir().join(format!("revgen-export-{}", std::process::id()));
        let files = save(&model, &source.config, &source.tokenizer, &out).unwrap();
        assert_eq!(files.len(), 6);
        let again = ModelSource::resolve(&out.to_string_lossy(), false).unwrap();
        assert_eq!(again.config, source.config);
        let ids = ids_tensor(&[50256, 27, 91, 9688], 1, &device);
        assert_eq!(values(model.forward(ids.clone())), values(again.load(&device, 0).unwrap().forward(ids)));
        std::fs::remove_dir_all(out).unwrap();
    }
}
