//! The backend extensions with backward steps of their own (projections, attention, the loss, GELU, LayerNorm)
//! against burn's autodiff of their written-out forms, on any training device. The unit tests run it on flex and on
//! LibTorch's CPU, with and without gradient checkpointing; `examples/cuda_check.rs` runs it on CUDA, in f32 and
//! bf16.

use burn::nn::LayerNormConfig;
use burn::tensor::activation::gelu_approximate;
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::affine::affine;
use crate::attention::{causal_attention, heads, merge_heads};
use crate::gelu::gelu_tanh;
use crate::layer_norm::layer_norm;
use crate::loss::{token_losses, written_out_losses};
use crate::model::{in_dtype, masked_attention};

/// How far one output or input gradient of an extension is from that of the written-out form.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub operation: &'static str,
    pub quantity: &'static str,
    /// The largest absolute difference over all elements.
    pub max_abs: f32,
}

/// Every extension's output and input gradients on `device`, an autodiff device. `dtype` is the products' dtype
/// under autocast: attention and GELU run in it, as in the model, while the loss and LayerNorm stay f32.
pub fn compare(device: &Device, dtype: Option<FloatDType>) -> Vec<Difference> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut out = projection(device, dtype, &mut rng);
    out.extend(attention(device, dtype, &mut rng));
    out.extend(loss(device, &mut rng));
    out.extend(gelu(device, dtype, &mut rng));
    out.extend(norm(device, &mut rng));
    out
}

fn random<const D: usize>(shape: [usize; D], bound: f32, rng: &mut ChaCha8Rng, device: &Device) -> Tensor<D> {
    let values: Vec<f32> = (0..shape.iter().product()).map(|_| rng.random_range(-bound..bound)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Pairs up the fused and the written-out results, named by `quantities`.
fn differences<const D: usize>(
    operation: &'static str,
    quantities: &[&'static str],
    fused: Vec<Tensor<D>>,
    reference: Vec<Tensor<D>>,
) -> Vec<Difference> {
    let pairs = quantities.iter().zip(fused.into_iter().zip(reference));
    pairs
        .map(|(&quantity, (a, b))| {
            let max_abs = (a.cast(FloatDType::F32) - b.cast(FloatDType::F32)).abs().max().into_scalar::<f32>();
            Difference { operation, quantity, max_abs }
        })
        .collect()
}

/// x `[5, 7]`, weight `[7, 3]`, bias `[3]`, against burn's matmul and broadcast addition.
fn projection(device: &Device, dtype: Option<FloatDType>, rng: &mut ChaCha8Rng) -> Vec<Difference> {
    let (x, w, b) = (random([5, 7], 1.0, rng, device), random([7, 3], 1.0, rng, device), random([3], 1.0, rng, device));
    let weight = random([5, 3], 1.0, rng, device);
    let run = |fused: bool| {
        let leaves = (x.clone().require_grad(), w.clone().require_grad(), b.clone().require_grad());
        // The inputs come out of an operation, as in the model, so that a checkpointing device recomputes them.
        let [xe, we] = [&leaves.0, &leaves.1].map(|t| in_dtype(t.clone().exp(), dtype));
        let be = in_dtype(leaves.2.clone().exp(), dtype);
        let out = if fused { affine(xe, we, be) } else { xe.matmul(we) + be.unsqueeze::<2>() };
        let out = out.cast(FloatDType::F32);
        let grads = (out.clone() * weight.clone()).sum().backward();
        let grad = |t: &Tensor<2>| t.grad(&grads).expect("a gradient for every input");
        let dbias = leaves.2.grad(&grads).expect("a gradient for the bias").unsqueeze::<2>();
        vec![out.detach(), grad(&leaves.0), grad(&leaves.1), dbias]
    };
    differences("projection", &["output", "dx", "dweight", "dbias"], run(true), run(false))
}

/// qkv: `[2, 6, 36]` (3 heads of 4), weighted by a random tensor so that every output element gets its own
/// gradient.
fn attention(device: &Device, dtype: Option<FloatDType>, rng: &mut ChaCha8Rng) -> Vec<Difference> {
    let (shape, n_head) = ([2, 6, 36], 3);
    let qkv = random(shape, 1.0, rng, device);
    let weight = random([2, 6, 12], 1.0, rng, device);
    let run = |fused: bool| {
        let leaf = qkv.clone().require_grad();
        // The input comes out of an operation, as in the model, so that a checkpointing device recomputes it.
        let input = in_dtype(leaf.clone().exp(), dtype);
        let out = if fused {
            causal_attention(input, n_head)
        } else {
            let [q, k, v] = heads(input, n_head);
            merge_heads(masked_attention(q, k, v, 0))
        };
        let out = out.cast(FloatDType::F32);
        let grads = (out.clone() * weight.clone()).sum().backward();
        vec![out.detach(), leaf.grad(&grads).expect("a gradient for the input")]
    };
    differences("attention", &["output", "dqkv"], run(true), run(false))
}

/// logits `[2, 5, 11]` and their targets; each position's loss weighted.
fn loss(device: &Device, rng: &mut ChaCha8Rng) -> Vec<Difference> {
    let (b, t, v) = (2, 5, 11);
    let logits = random([b, t, v], 3.0, rng, device);
    let targets: Vec<i64> = (0..b * t).map(|_| rng.random_range(0..v as i64)).collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [b, t]), device);
    let weights = random([b * t], 1.0, rng, device);
    let run = |fused: bool| {
        let leaf = logits.clone().require_grad();
        let input = leaf.clone() * 1.5;
        let losses = if fused {
            token_losses(input, targets.clone())
        } else {
            written_out_losses(input.reshape([b * t, v]), targets.clone().reshape([b * t]))
        };
        let grads = (losses.clone() * weights.clone()).sum().backward();
        let grad = leaf.grad(&grads).expect("a gradient for the logits").reshape([b * t * v]);
        vec![losses.detach(), grad]
    };
    differences("cross-entropy", &["losses", "dlogits"], run(true), run(false))
}

/// x: `[2, 3, 40]` over [-7.5, 7.5], wide enough to reach both tails, where tanh saturates.
fn gelu(device: &Device, dtype: Option<FloatDType>, rng: &mut ChaCha8Rng) -> Vec<Difference> {
    let shape = [2, 3, 40];
    let (x, weights) = (random(shape, 6.0, rng, device), random(shape, 1.0, rng, device));
    let run = |fused: bool| {
        let leaf = x.clone().require_grad();
        let input = in_dtype(leaf.clone() * 1.25, dtype);
        let out = if fused { gelu_tanh(input) } else { gelu_approximate(input) }.cast(FloatDType::F32);
        let grads = (out.clone() * weights.clone()).sum().backward();
        vec![out.detach(), leaf.grad(&grads).expect("a gradient for the input")]
    };
    differences("gelu", &["output", "dx"], run(true), run(false))
}

/// x: `[2, 3, 8]` against burn's own `LayerNorm`, with random scale and bias.
fn norm(device: &Device, rng: &mut ChaCha8Rng) -> Vec<Difference> {
    let (shape, d, epsilon) = ([2, 3, 8], 8, 1e-5);
    let (x, weights) = (random(shape, 2.0, rng, device), random(shape, 1.0, rng, device));
    let [gamma, beta] = [(); 2].map(|_| random([d], 2.0, rng, device));
    let run = |fused: bool| {
        let mut norm = LayerNormConfig::new(d).with_epsilon(epsilon).init(device);
        norm.gamma = norm.gamma.map(|_| gamma.clone().require_grad());
        norm.beta = norm.beta.map(|b| b.map(|_| beta.clone().require_grad()));
        let leaf = x.clone().require_grad();
        let input = leaf.clone() * 1.5;
        let out = if fused { layer_norm(&norm, input, epsilon) } else { norm.forward(input) };
        let grads = (out.clone() * weights.clone()).sum().backward();
        let flat = |t: Tensor<3>| t.reshape([2 * 3 * d]);
        vec![
            flat(out.detach()),
            flat(leaf.grad(&grads).expect("a gradient for x")),
            norm.gamma.val().grad(&grads).expect("a gradient for gamma"),
            norm.beta.as_ref().expect("a bias").val().grad(&grads).expect("a gradient for beta"),
        ]
    };
    differences("layer norm", &["output", "dx", "dgamma", "dbeta"], run(true), run(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    /// On flex and, when built, LibTorch's CPU, each with and without gradient checkpointing. A wrong backward
    /// step (a dropped term, a swapped gradient) fails this by 1e-2 or more.
    #[test]
    fn extensions_match_their_written_out_forms() {
        let built = [Backend::Flex, Backend::Tch].into_iter().filter(|b| b.is_built());
        for backend in built {
            let device = backend.device("cpu").unwrap();
            for device in [device.clone(), device.gradient_checkpointing()] {
                let differences = compare(&device, None);
                assert_eq!(differences.len(), 14);
                for difference in differences {
                    assert!(difference.max_abs < 1e-5, "{difference:?} on {device:?}");
                }
            }
        }
    }
}
