//! Causal self-attention as one differentiable operation.
//!
//! burn's autodiff records `attention()` as matmul → softmax → matmul, so a training step kept the
//! `[batch, heads, seq, seq]` scores and probabilities of every layer until the backward pass (48 MB a layer for
//! GPT-2 small at 1 × 1024 in f32), and never ran a fused kernel. Here causal attention is a backend extension with
//! its own backward step. On LibTorch the forward is SDPA (flash attention on CUDA in bf16, its fused CPU kernel
//! otherwise) and the backward asks LibTorch's autograd for the gradients of the same SDPA call, so that no score
//! matrix outlives its kernel. On flex the backward is written out.

// burn-tch is deprecated upstream after 0.22; it is still our production CUDA backend (DESIGN.md).
#![allow(deprecated)]

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::activation::softmax;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Tensor};

use crate::backend::flex_primitive as flex;

/// Causal self-attention with `n_head` heads on the packed output of GPT-2's fused query/key/value projection,
/// with the heads merged back: query i sees keys 0..=i, scaled by 1/√head_dim. Differentiable on every backend,
/// with one backward step of its own, which returns the gradient of `qkv` whole.
///
/// Splitting the heads inside the operation matters for the backward pass: split outside (burn's `chunk`), each
/// of q, k and v sent its gradient back as a zero-filled `[batch, seq, 3·d]` tensor with its part assigned, and
/// the three were summed, about 11 passes over that size where one concatenation (2 passes) does.
///
/// qkv: `[batch, seq, 3·d]` (q, k and v side by side, each `[batch, seq, n_head·head_dim]`) → `[batch, seq, d]`
pub fn causal_attention(qkv: Tensor<3>, n_head: usize) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as CausalAttention>::causal_attention(qkv.into_dispatch(), n_head))
}

/// The heads of packed queries, keys and values.
///
/// qkv: `[b, t, 3·d]` → q, k, v: `[b, n_head, t, d / n_head]`
pub(crate) fn heads(qkv: Tensor<3>, n_head: usize) -> [Tensor<4>; 3] {
    let mut parts = qkv.chunk(3, 2).into_iter().map(|x| split_heads(x, n_head));
    [(); 3].map(|_| parts.next().expect("three parts"))
}

/// One of queries, keys, values (or their gradient) split into heads.
///
/// x: `[b, t, d]` → `[b, n_head, t, d / n_head]`
fn split_heads(x: Tensor<3>, n_head: usize) -> Tensor<4> {
    let [b, t, d] = x.dims();
    x.reshape([b, t, n_head, d / n_head]).swap_dims(1, 2)
}

/// The heads side by side again.
///
/// y: `[b, h, t, head_dim]` → `[b, t, h·head_dim]`
pub(crate) fn merge_heads(y: Tensor<4>) -> Tensor<3> {
    let [b, h, t, head_dim] = y.dims();
    y.swap_dims(1, 2).reshape([b, t, h * head_dim])
}

/// The extension: causal attention on each backend that revgen trains on, and under autodiff.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait CausalAttention: Backend {
    /// qkv: `[batch, seq, 3·d]` → `[batch, seq, d]`
    fn causal_attention(qkv: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self>;
}

/// The backward step of [`CausalAttention`], on a backend without autodiff.
pub trait CausalAttentionBackward: CausalAttention {
    /// The gradient of `qkv` (`[batch, seq, 3·d]`), given the output's gradient `grad` (`[batch, seq, d]`).
    fn causal_attention_backward(qkv: FloatTensor<Self>, n_head: usize, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl CausalAttention for Flex {
    fn causal_attention(qkv: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        let [q, k, v] = heads(Tensor::from_primitive::<Flex>(qkv), n_head).map(flex);
        let causal = AttentionModuleOptions { is_causal: true, ..Default::default() };
        let y = Tensor::<4>::from_primitive::<Flex>(Self::attention(q, k, v, None, None, causal));
        flex(merge_heads(y))
    }
}

impl CausalAttentionBackward for Flex {
    fn causal_attention_backward(qkv: FloatTensor<Self>, n_head: usize, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let [q, k, v] = heads(Tensor::from_primitive::<Flex>(qkv), n_head);
        let grad = split_heads(Tensor::from_primitive::<Flex>(grad), n_head); // [b, h, t, hd]
        let [dq, dk, dv] = decomposed_backward(q, k, v, grad);
        flex(Tensor::cat(vec![merge_heads(dq), merge_heads(dk), merge_heads(dv)], 2))
    }
}

/// The gradients of causal attention, written out (the probabilities are recomputed from q and k).
///
/// q, k, v, grad: `[b, h, t, hd]` → `[dq, dk, dv]`, each `[b, h, t, hd]`
fn decomposed_backward(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, grad: Tensor<4>) -> [Tensor<4>; 3] {
    let [b, h, t, hd] = q.dims();
    let scale = 1.0 / (hd as f64).sqrt();
    // Key j is hidden from query i when j > i (`tril_mask` is true outside the lower triangle).
    let hidden = Tensor::<2, Bool>::tril_mask([t, t], 0, &q.device()).unsqueeze::<4>().expand([b, h, t, t]);
    let scores = q.clone().matmul(k.clone().swap_dims(2, 3)) * scale; // [b, h, t, t]
    let probs = softmax(scores.mask_fill(hidden, -1e9), 3); // [b, h, t, t]
    let dv = probs.clone().swap_dims(2, 3).matmul(grad.clone()); // [b, h, t, hd]
    let dprobs = grad.matmul(v.swap_dims(2, 3)); // [b, h, t, t]
    // Through the softmax: ds = p ⊙ (dp − Σⱼ dp ⊙ p); hidden keys have p = 0 and get no gradient.
    let row = (dprobs.clone() * probs.clone()).sum_dim(3); // [b, h, t, 1]
    let dscores = probs * (dprobs - row); // [b, h, t, t]
    let dq = dscores.clone().matmul(k) * scale; // [b, h, t, hd]
    let dk = dscores.swap_dims(2, 3).matmul(q) * scale; // [b, h, t, hd]
    [dq, dk, dv]
}

#[cfg(feature = "tch")]
mod libtorch {
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;

    use super::{CausalAttention, CausalAttentionBackward};
    use crate::libtorch::vjp;

    /// Splits the heads (views, as transformers' GPT-2 does it), runs LibTorch's SDPA, causal, and merges them:
    /// SDPA picks flash attention (CUDA, bf16/f16), memory-efficient attention (CUDA, f32) or its fused CPU
    /// kernel. Under LibTorch's autograd the split's backward is one concatenation.
    ///
    /// qkv: `[b, t, 3·d]` → `[b, t, d]`
    fn forward(qkv: &tch::Tensor, n_head: usize) -> tch::Tensor {
        let (b, t, packed) = qkv.size3().expect("qkv is [batch, seq, 3·d]");
        let (d, h) = (packed / 3, n_head as i64);
        let heads = qkv.split(d, 2).into_iter().map(|x| x.view([b, t, h, d / h]).transpose(1, 2)).collect::<Vec<_>>();
        let y = tch::Tensor::scaled_dot_product_attention(
            &heads[0],
            &heads[1],
            &heads[2],
            None::<tch::Tensor>,
            0.0,
            true,
            None,
            false,
        ); // [b, h, t, hd]
        y.transpose(1, 2).reshape([b, t, d])
    }

    impl CausalAttention for LibTorch {
        fn causal_attention(qkv: TchTensor, n_head: usize) -> TchTensor {
            TchTensor::new(forward(&qkv.tensor, n_head))
        }
    }

    impl CausalAttentionBackward for LibTorch {
        /// LibTorch's autograd differentiates its own SDPA ([`vjp`]; tch binds no SDPA backward that takes the
        /// forward's saved state on every device). The forward runs once more: a fused kernel keeps no
        /// probabilities, and its backward needs the output and the log-sum-exp. That costs about a third of
        /// attention's FLOPs, what flash attention's backward spends on recomputing the probabilities anyway.
        fn causal_attention_backward(qkv: TchTensor, n_head: usize, grad: TchTensor) -> TchTensor {
            let [dqkv] = vjp([&qkv], &grad, |[qkv]| forward(qkv, n_head));
            dqkv
        }
    }
}

impl<B: CausalAttentionBackward, C: CheckpointStrategy> CausalAttention for Autodiff<B, C> {
    fn causal_attention(qkv: FloatTensor<Self>, n_head: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct AttentionStep;

        impl<B: CausalAttentionBackward> Backward<B, 1> for AttentionStep {
            /// qkv, as the checkpointer keeps it (nothing of size seq²), and the number of heads.
            type State = (NodeId, usize);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (id, n_head) = ops.state;
                let [parent] = ops.parents;
                if let Some(node) = parent {
                    let qkv = checkpointer.retrieve_node_output(id);
                    grads.register::<B>(node.id, B::causal_attention_backward(qkv, n_head, grad));
                }
            }
        }

        match AttentionStep.prepare::<C>([qkv.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&qkv), n_head);
                prep.finish(state, B::causal_attention(qkv.into_primitive(), n_head))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::causal_attention(qkv.into_primitive(), n_head)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::model::masked_attention;

    /// Without autodiff the extension is the backend's own fused attention; gradients: see `gradcheck`.
    #[test]
    fn inference_devices_run_the_same_attention() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut devices = vec![Device::flex()];
        if cfg!(feature = "tch") {
            devices.push(crate::backend::Backend::Tch.inference_device("cpu").unwrap());
        }
        for device in devices {
            let values: Vec<f32> = (0..5 * 48).map(|_| rng.random_range(-1.0..1.0)).collect();
            let qkv = Tensor::<3>::from_data(TensorData::new(values, [1, 5, 48]), &device); // 2 heads of 8
            let fused = causal_attention(qkv.clone(), 2);
            let [q, k, v] = heads(qkv, 2);
            let difference = (fused - merge_heads(masked_attention(q, k, v, 0))).abs().max().into_scalar::<f32>();
            assert!(difference < 1e-5, "differs by {difference} on {device:?}");
        }
    }
}
