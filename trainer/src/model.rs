//! GPT-2 (Radford et al. 2019) in burn, in the spirit of nanoGPT's model.py: learned positional embeddings,
//! pre-LayerNorm blocks, tanh-approximated GELU, causal self-attention, a final LayerNorm and an output projection
//! tied to the token embedding. The same code runs on every burn backend (flex, LibTorch CPU or CUDA).
//!
//! Parameter names and layouts are HF's (`h.3.attn.c_attn.weight`, ...), so import and export are a name-for-name
//! copy. HF stores `Conv1D` weights as `[in, out]`, which is burn's `Linear` row layout: no weight is transposed.

use burn::module::{Module, Param, ParamId};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, FloatDType, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::affine::affine;
use crate::attention::{causal_attention, heads, merge_heads};
use crate::config::Config;
use crate::gelu::gelu_tanh;
use crate::layer_norm::layer_norm;
use crate::loss::token_losses;
use crate::{Error, Result};

/// Supplies each parameter by its HF name and shape: from a weights file, or from a random initialisation.
pub trait WeightSource {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
}

#[derive(Module, Debug)]
pub struct Gpt2 {
    /// Token embedding `[vocab, d]`, also the output projection (tied `lm_head`).
    pub wte: Embedding,
    /// Positional embedding `[n_positions, d]`.
    pub wpe: Embedding,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
    /// Mixed precision, as torch.autocast does it: when set, the matrix products (projections, attention, the
    /// output head) run in this dtype, while the parameters, the optimizer state, LayerNorm, the residual stream
    /// and the loss stay f32. burn has no autocast, so the casts are explicit (see [`Gpt2::autocast`]).
    #[module(skip)]
    pub compute_dtype: Option<FloatDType>,
    /// The LayerNorms' epsilon (burn's `LayerNorm` keeps its own private).
    #[module(skip)]
    pub layer_norm_epsilon: f64,
}

#[derive(Module, Debug)]
pub struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

#[derive(Module, Debug)]
pub struct Attention {
    /// Fused query/key/value projection `[d, 3d]`.
    pub c_attn: Linear,
    pub c_proj: Linear,
    pub n_head: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
}

/// One of GPT-2's parameters: its weights are matrices, its biases and LayerNorm scales vectors.
#[derive(Clone, Debug)]
pub enum Parameter {
    Matrix(Tensor<2>),
    Vector(Tensor<1>),
}

impl Parameter {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Parameter::Matrix(t) => t.dims().to_vec(),
            Parameter::Vector(t) => t.dims().to_vec(),
        }
    }

    /// Its values on the host, as f32.
    pub fn host_data(&self) -> TensorData {
        match self {
            Parameter::Matrix(t) => f32_data(t.clone()),
            Parameter::Vector(t) => f32_data(t.clone()),
        }
    }
}

/// Keys and values of the tokens seen so far, one entry per layer, so that generation runs each new token through
/// the model once instead of re-reading the whole prefix.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    /// Per layer: keys and values `[batch, n_head, len, head_dim]`.
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Gpt2 {
    /// Builds the model from `source`, asking for every parameter by its HF name.
    ///
    /// Parameter ids are the parameters' positions in this order, not random ones, so that an optimizer state
    /// saved by one process (it is keyed by id) applies to the same model built by another.
    pub fn build(config: &Config, device: &Device, source: &mut dyn WeightSource) -> Result<Self> {
        config.validate().map_err(Error::InvalidModel)?;
        let (d, v) = (config.n_embd, config.vocab_size);
        let mut param = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let values = source.tensor(name, shape)?;
            debug_assert_eq!(values.len(), shape.iter().product::<usize>());
            Ok(values)
        };
        let wte = embedding(param("wte.weight", &[v, d])?, [v, d], device);
        let wpe = embedding(param("wpe.weight", &[config.n_positions, d])?, [config.n_positions, d], device);
        let mut h = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let mut linear = |name: &str, d_in: usize, d_out: usize| -> Result<Linear> {
                let w = param(&format!("h.{i}.{name}.weight"), &[d_in, d_out])?;
                let b = param(&format!("h.{i}.{name}.bias"), &[d_out])?;
                Ok(linear(w, b, [d_in, d_out], device))
            };
            let attn = Attention {
                c_attn: linear("attn.c_attn", d, 3 * d)?,
                c_proj: linear("attn.c_proj", d, d)?,
                n_head: config.n_head,
            };
            let mlp = Mlp { c_fc: linear("mlp.c_fc", d, 4 * d)?, c_proj: linear("mlp.c_proj", 4 * d, d)? };
            let mut norm = |name: &str| -> Result<LayerNorm> {
                let g = param(&format!("h.{i}.{name}.weight"), &[d])?;
                let b = param(&format!("h.{i}.{name}.bias"), &[d])?;
                Ok(norm_from(g, b, config.layer_norm_epsilon, device))
            };
            let ln_1 = norm("ln_1")?;
            let ln_2 = norm("ln_2")?;
            h.push(Block { ln_1, attn, ln_2, mlp });
        }
        let ln_f = norm_from(param("ln_f.weight", &[d])?, param("ln_f.bias", &[d])?, config.layer_norm_epsilon, device);
        let layer_norm_epsilon = config.layer_norm_epsilon;
        Ok(Gpt2 { wte, wpe, h, ln_f, compute_dtype: None, layer_norm_epsilon }.map(&mut NumberParams(0)))
    }

    /// A randomly initialised model with GPT-2's initialisation (as in HF and nanoGPT): weights N(0, 0.02), the
    /// residual projections N(0, 0.02/sqrt(2·n_layer)), biases 0, LayerNorms 1 and 0. The values are drawn on the
    /// host from `seed`, so every backend starts from the same parameters.
    pub fn init(config: &Config, device: &Device, seed: u64) -> Result<Self> {
        Self::build(config, device, &mut RandomInit::new(config, seed))
    }

    /// Every parameter under its HF name and in HF's shape (vectors stay 1-D), in [`Self::build`]'s order, still on
    /// the device: handles, not copies, so that a writer can copy one at a time to the host.
    pub fn named_parameters(&self) -> Vec<(String, Parameter)> {
        let mut out = vec![
            ("wte.weight".to_owned(), Parameter::Matrix(self.wte.weight.val())),
            ("wpe.weight".to_owned(), Parameter::Matrix(self.wpe.weight.val())),
        ];
        let push_linear = |out: &mut Vec<_>, name: String, l: &Linear| {
            out.push((format!("{name}.weight"), Parameter::Matrix(l.weight.val())));
            let bias = l.bias.as_ref().expect("GPT-2 linears have a bias").val();
            out.push((format!("{name}.bias"), Parameter::Vector(bias)));
        };
        let push_norm = |out: &mut Vec<_>, name: String, n: &LayerNorm| {
            out.push((format!("{name}.weight"), Parameter::Vector(n.gamma.val())));
            let beta = n.beta.as_ref().expect("GPT-2 LayerNorms have a bias").val();
            out.push((format!("{name}.bias"), Parameter::Vector(beta)));
        };
        for (i, block) in self.h.iter().enumerate() {
            push_norm(&mut out, format!("h.{i}.ln_1"), &block.ln_1);
            push_linear(&mut out, format!("h.{i}.attn.c_attn"), &block.attn.c_attn);
            push_linear(&mut out, format!("h.{i}.attn.c_proj"), &block.attn.c_proj);
            push_norm(&mut out, format!("h.{i}.ln_2"), &block.ln_2);
            push_linear(&mut out, format!("h.{i}.mlp.c_fc"), &block.mlp.c_fc);
            push_linear(&mut out, format!("h.{i}.mlp.c_proj"), &block.mlp.c_proj);
        }
        push_norm(&mut out, "ln_f".to_owned(), &self.ln_f);
        out
    }

    /// The same model with its matrix products in `dtype` (bf16 on CUDA: tensor cores), or all f32 with `None`.
    pub fn autocast(self, dtype: Option<FloatDType>) -> Self {
        Gpt2 { compute_dtype: dtype, ..self }
    }

    pub fn n_positions(&self) -> usize {
        self.wpe.weight.dims()[0]
    }

    /// Logits for every position of `ids`. Callers keep `seq` within the context (score windows, train's
    /// `--seq-len` check); a longer input is a bug, not bad user data.
    ///
    /// ids: `[batch, seq]` → logits `[batch, seq, vocab]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, t] = ids.dims();
        assert!(t <= self.n_positions(), "{t} tokens exceed the context of {}", self.n_positions());
        self.forward_inner(ids, None)
    }

    /// Like [`Self::forward`] for the tokens that follow those already in `cache`, which it extends. Feeding a
    /// sequence in pieces gives the same logits as feeding it whole.
    pub fn forward_cached(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<3>> {
        let [_, t] = ids.dims();
        if cache.len + t > self.n_positions() {
            return Err(Error::ContextOverflow { tokens: cache.len + t, n_positions: self.n_positions() });
        }
        if cache.layers.is_empty() {
            cache.layers = vec![None; self.h.len()];
        }
        Ok(self.forward_inner(ids, Some(cache)))
    }

    fn forward_inner(&self, ids: Tensor<2, Int>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let past = cache.as_ref().map_or(0, |c| c.len);
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(past as i64..(past + t) as i64, &device).unsqueeze::<2>(); // [1, t]
        let mut x = self.wte.forward(ids) + self.wpe.forward(positions); // [b, t, d]
        for (i, block) in self.h.iter().enumerate() {
            let layer = cache.as_mut().map(|c| &mut c.layers[i]);
            x = block.forward(x, layer, self.compute_dtype, self.layer_norm_epsilon);
        }
        if let Some(cache) = cache {
            cache.len += t;
        }
        let x = layer_norm(&self.ln_f, x, self.layer_norm_epsilon); // [b, t, d]
        let [vocab, d] = self.wte.weight.dims();
        // Tied lm_head: [b·t, d] × [d, vocab], in the compute dtype; the logits go back to f32 for the softmax.
        let head = in_dtype(self.wte.weight.val(), self.compute_dtype).transpose();
        let logits = in_dtype(x.reshape([b * t, d]), self.compute_dtype).matmul(head);
        in_dtype(logits, self.compute_dtype.map(|_| FloatDType::F32)).reshape([b, t, vocab])
    }

    /// Mean next-token cross-entropy in nats: position i of `inputs` predicts position i of `targets`.
    ///
    /// inputs, targets: `[batch, seq]` → `[1]`
    pub fn loss(&self, inputs: Tensor<2, Int>, targets: Tensor<2, Int>) -> Tensor<1> {
        token_losses(self.forward(inputs), targets).mean()
    }
}

impl Block {
    /// x: `[batch, seq, d]` → `[batch, seq, d]`
    /// `dtype`: the products' dtype under autocast; the residual stream `x` stays f32 either way.
    fn forward(
        &self,
        x: Tensor<3>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
        dtype: Option<FloatDType>,
        epsilon: f64,
    ) -> Tensor<3> {
        let residual = dtype.map(|_| FloatDType::F32);
        let x = x.clone() + in_dtype(self.attn.forward(layer_norm(&self.ln_1, x, epsilon), cache, dtype), residual);
        x.clone() + in_dtype(self.mlp.forward(layer_norm(&self.ln_2, x, epsilon), dtype), residual)
    }
}

impl Mlp {
    /// x: `[batch, seq, d]` → `[batch, seq, d]` through `[batch, seq, 4d]`
    fn forward(&self, x: Tensor<3>, dtype: Option<FloatDType>) -> Tensor<3> {
        project(&self.c_proj, gelu_tanh(project(&self.c_fc, x, dtype)), dtype)
    }
}

impl Attention {
    /// x: `[batch, seq, d]` → `[batch, seq, d]`. With a cache, `x` holds only the new tokens.
    fn forward(
        &self,
        x: Tensor<3>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
        dtype: Option<FloatDType>,
    ) -> Tensor<3> {
        let qkv = project(&self.c_attn, x, dtype); // [b, t, 3d]
        let y = match cache {
            // Training and scoring: the whole sequence at once, as one operation that splits the heads itself
            // (SDPA on LibTorch), with a fused backward step.
            None => causal_attention(qkv, self.n_head),
            Some(cache) => self.cached(qkv, cache),
        }; // [b, t, d]
        project(&self.c_proj, y, dtype)
    }

    /// Attention of new tokens to the cached ones and themselves, extending the cache (generation).
    ///
    /// qkv: `[b, t, 3d]` of the new tokens → `[b, t, d]`
    fn cached(&self, qkv: Tensor<3>, cache: &mut Option<(Tensor<4>, Tensor<4>)>) -> Tensor<3> {
        let t = qkv.dims()[1];
        let [q, mut k, mut v] = heads(qkv.clone(), self.n_head); // [b, h, t, hd]
        let mut past = 0;
        if let Some((k_past, v_past)) = cache.take() {
            past = k_past.dims()[2];
            k = Tensor::cat(vec![k_past, k], 2); // [b, h, past + t, hd]
            v = Tensor::cat(vec![v_past, v], 2);
        }
        *cache = Some((k.clone(), v.clone()));
        match (past, t) {
            (0, _) => causal_attention(qkv, self.n_head),
            // One new token sees every cached one: no mask.
            (_, 1) => merge_heads(attention(q, k, v, None, None, AttentionModuleOptions::default())),
            // Several new tokens after a prefix: query i sees keys 0..=past+i. Written out, because backends
            // disagree on the alignment of `is_causal` when there are more keys than queries.
            _ => merge_heads(masked_attention(q, k, v, past)),
        }
    }
}

/// `x` in `dtype` (a no-op for `None` or when it already is). Under autodiff the gradient is cast back.
pub(crate) fn in_dtype<const D: usize>(x: Tensor<D>, dtype: Option<FloatDType>) -> Tensor<D> {
    match dtype {
        Some(dtype) => x.cast(dtype),
        None => x,
    }
}

/// `layer` applied to `x` with the product in `dtype`: the f32 weight and bias are cast for it (their gradients
/// come back f32), and the output stays in `dtype`, as under torch.autocast.
///
/// The tokens of all sequences go through as the rows of one `[b·t, in] × [in, out]` product with the bias added
/// in the same operation ([`affine`]), as torch's `Linear` does it.
///
/// x: `[b, t, in]` → `[b, t, out]`
fn project(layer: &Linear, x: Tensor<3>, dtype: Option<FloatDType>) -> Tensor<3> {
    let [b, t, d_in] = x.dims();
    let bias = layer.bias.as_ref().expect("GPT-2's projections have a bias").val();
    let rows = in_dtype(x.reshape([b * t, d_in]), dtype); // [b·t, in]
    let y = affine(rows, in_dtype(layer.weight.val(), dtype), in_dtype(bias, dtype)); // [b·t, out]
    let d_out = y.dims()[1];
    y.reshape([b, t, d_out])
}

/// q: `[b, h, t, hd]`, k and v: `[b, h, past + t, hd]` → `[b, h, t, hd]`
pub(crate) fn masked_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, past: usize) -> Tensor<4> {
    let [b, h, t, hd] = q.dims();
    let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt(); // [b, h, t, past + t]
    // Key j is hidden from query i when j > past + i. `tril_mask` is true outside the lower triangle.
    let mask = Tensor::<2, Bool>::tril_mask([t, past + t], past as i64, &scores.device()) // [t, past + t]
        .unsqueeze::<4>()
        .expand([b, h, t, past + t]);
    // A large finite value, not -inf: some backends fill masks arithmetically, and -inf·0 is NaN.
    softmax(scores.mask_fill(mask, -1e9), 3).matmul(v)
}

fn embedding(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Embedding {
    Embedding { weight: Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device)) }
}

fn linear(weight: Vec<f32>, bias: Vec<f32>, shape: [usize; 2], device: &Device) -> Linear {
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, shape), device)),
        bias: Some(Param::from_tensor(Tensor::from_data(TensorData::new(bias, [shape[1]]), device))),
    }
}

fn norm_from(gamma: Vec<f32>, beta: Vec<f32>, epsilon: f64, device: &Device) -> LayerNorm {
    let d = gamma.len();
    // LayerNorm's epsilon is private: build through the config, then set the values.
    let mut norm = LayerNormConfig::new(d).with_epsilon(epsilon).init(device);
    norm.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [d]), device));
    norm.beta = Some(Param::from_tensor(Tensor::from_data(TensorData::new(beta, [d]), device)));
    norm
}

/// Gives parameters the ids 0, 1, 2, … in visiting order.
struct NumberParams(u64);

impl burn::module::ModuleMapper for NumberParams {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = ParamId::from(self.0);
        self.0 += 1;
        param
    }
}

/// GPT-2's initialisation, drawn from a seeded ChaCha stream in [`Gpt2::build`]'s order.
struct RandomInit {
    rng: ChaCha8Rng,
    residual_std: f64,
}

impl RandomInit {
    const STD: f64 = 0.02;

    fn new(config: &Config, seed: u64) -> Self {
        RandomInit {
            rng: ChaCha8Rng::seed_from_u64(seed),
            residual_std: Self::STD / (2.0 * config.n_layer as f64).sqrt(),
        }
    }

    fn normal(&mut self, n: usize, std: f64) -> Vec<f32> {
        // Box–Muller, two values per pair of uniforms.
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let u1: f64 = 1.0 - self.rng.random::<f64>(); // (0, 1]
            let u2: f64 = self.rng.random();
            let r = (-2.0 * u1.ln()).sqrt() * std;
            let theta = std::f64::consts::TAU * u2;
            out.push((r * theta.cos()) as f32);
            out.push((r * theta.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}

impl WeightSource for RandomInit {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let n = shape.iter().product();
        let is_norm = name.contains(".ln_") || name.starts_with("ln_");
        Ok(match () {
            _ if is_norm && name.ends_with(".weight") => vec![1.0; n],
            _ if name.ends_with(".bias") => vec![0.0; n],
            _ if name.ends_with("c_proj.weight") => self.normal(n, self.residual_std),
            _ => self.normal(n, Self::STD),
        })
    }
}

/// A float tensor's data on the host, as f32.
fn f32_data<const D: usize>(t: Tensor<D>) -> TensorData {
    t.into_data().convert::<f32>()
}

/// A float tensor's values on the host, in row-major order.
pub fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    f32_data(t).try_into_vec::<f32>().expect("converted to f32")
}

/// Ids as a `[batch, seq]` tensor.
pub fn ids_tensor(ids: &[u32], batch: usize, device: &Device) -> Tensor<2, Int> {
    let values: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    Tensor::from_data(TensorData::new(values, [batch, ids.len() / batch]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Config {
        Config { vocab_size: 97, n_positions: 32, n_embd: 16, n_layer: 2, n_head: 4, layer_norm_epsilon: 1e-5 }
    }

    fn values(t: Tensor<3>) -> Vec<f32> {
        host_values(t)
    }

    #[test]
    fn init_follows_gpt2_statistics_and_the_seed() {
        let config = Config::preset("gpt2").unwrap();
        let mut a = RandomInit::new(&config, 7);
        let w = a.tensor("h.0.attn.c_attn.weight", &[768, 2304]).unwrap();
        let std = (w.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!((std - 0.02).abs() < 2e-4, "std {std}");
        let proj = a.tensor("h.0.attn.c_proj.weight", &[768, 768]).unwrap();
        let std = (proj.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / proj.len() as f64).sqrt();
        assert!((std - 0.02 / 24f64.sqrt()).abs() < 1e-4, "c_proj std {std}");
        assert!(a.tensor("h.0.ln_1.weight", &[4]).unwrap().iter().all(|&x| x == 1.0));
        assert!(a.tensor("ln_f.bias", &[4]).unwrap().iter().all(|&x| x == 0.0));
        let mut b = RandomInit::new(&config, 7);
        assert_eq!(w, b.tensor("h.0.attn.c_attn.weight", &[768, 2304]).unwrap());
    }

    #[test]
    fn logits_have_the_right_shape_and_causality() {
        let device = Device::flex();
        let model = Gpt2::init(&tiny(), &device, 1).unwrap();
        let logits = values(model.forward(ids_tensor(&[1, 2, 3, 4, 5], 1, &device)));
        assert_eq!(logits.len(), 5 * 97);
        // Changing the last token must not change the logits of earlier positions.
        let other = values(model.forward(ids_tensor(&[1, 2, 3, 4, 60], 1, &device)));
        assert_eq!(logits[..4 * 97], other[..4 * 97]);
        assert_ne!(logits[4 * 97..], other[4 * 97..]);
    }

    #[test]
    fn cached_forward_equals_full_forward() {
        let device = Device::flex();
        let model = Gpt2::init(&tiny(), &device, 3).unwrap();
        let ids = [5u32, 9, 14, 2, 77, 31, 8];
        let full = values(model.forward(ids_tensor(&ids, 1, &device)));
        // Prefix of 3, then a chunk of 2 (masked path), then one token at a time.
        let mut cache = KvCache::new();
        let mut pieces = Vec::new();
        for chunk in [&ids[..3], &ids[3..5], &ids[5..6], &ids[6..]] {
            pieces.extend(values(model.forward_cached(ids_tensor(chunk, 1, &device), &mut cache).unwrap()));
        }
        assert_eq!(cache.len(), ids.len());
        for (i, (a, b)) in full.iter().zip(&pieces).enumerate() {
            assert!((a - b).abs() < 1e-5, "logit {i}: {a} vs {b}");
        }
        let too_long = ids_tensor(&[1; 26], 1, &device);
        assert!(matches!(model.forward_cached(too_long, &mut cache), Err(Error::ContextOverflow { .. })));
    }

    #[test]
    fn named_parameters_round_trip_through_build() {
        struct FromModel(std::collections::HashMap<String, Vec<f32>>);
        impl WeightSource for FromModel {
            fn tensor(&mut self, name: &str, _shape: &[usize]) -> Result<Vec<f32>> {
                Ok(self.0.remove(name).expect(name))
            }
        }
        let device = Device::flex();
        let model = Gpt2::init(&tiny(), &device, 5).unwrap();
        let named: std::collections::HashMap<_, _> = model
            .named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.host_data().try_to_vec::<f32>().unwrap()))
            .collect();
        assert_eq!(named.len(), 2 + 2 * 12 + 2);
        let mut source = FromModel(named);
        let copy = Gpt2::build(&tiny(), &device, &mut source).unwrap();
        assert!(source.0.is_empty());
        let ids = ids_tensor(&[3, 1, 4, 1, 5], 1, &device);
        assert_eq!(values(model.forward(ids.clone())), values(copy.forward(ids)));
    }
}
