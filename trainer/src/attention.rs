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

/// q, k, v: `[batch, heads, seq, head_dim]` → `[batch, heads, seq, head_dim]`, where query i sees keys 0..=i,
/// scaled by 1/√head_dim. Differentiable on every backend, with one backward step of its own.
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let out = <Dispatch as CausalAttention>::causal_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch());
    Tensor::from_dispatch(out)
}

/// The extension: causal attention on each backend that revgen trains on, and under autodiff.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait CausalAttention: Backend {
    /// q, k, v: `[batch, heads, seq, head_dim]` → `[batch, heads, seq, head_dim]`
    fn causal_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The backward step of [`CausalAttention`], on a backend without autodiff.
pub trait CausalAttentionBackward: CausalAttention {
    /// The gradients of q, k and v, given the output's gradient `grad`; all `[batch, heads, seq, head_dim]`.
    fn causal_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

impl CausalAttention for Flex {
    fn causal_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::attention(q, k, v, None, None, AttentionModuleOptions { is_causal: true, ..Default::default() })
    }
}

impl CausalAttentionBackward for Flex {
    fn causal_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let wrap = Tensor::<4>::from_primitive::<Flex>;
        let grads = decomposed_backward(wrap(q), wrap(k), wrap(v), wrap(grad));
        grads.map(|g| g.try_into_primitive::<Flex>().expect("flex tensors in, flex tensors out"))
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

    /// LibTorch's SDPA, causal: it picks flash attention (CUDA, bf16/f16), memory-efficient attention (CUDA, f32)
    /// or its fused CPU kernel.
    fn sdpa(q: &tch::Tensor, k: &tch::Tensor, v: &tch::Tensor) -> tch::Tensor {
        tch::Tensor::scaled_dot_product_attention(q, k, v, None::<tch::Tensor>, 0.0, true, None, false)
    }

    impl CausalAttention for LibTorch {
        fn causal_attention(q: TchTensor, k: TchTensor, v: TchTensor) -> TchTensor {
            TchTensor::new(sdpa(&q.tensor, &k.tensor, &v.tensor))
        }
    }

    impl CausalAttentionBackward for LibTorch {
        /// LibTorch's autograd differentiates its own SDPA ([`vjp`]; tch binds no SDPA backward that takes the
        /// forward's saved state on every device). The forward runs once more: a fused kernel keeps no
        /// probabilities, and its backward needs the output and the log-sum-exp. That costs about a third of
        /// attention's FLOPs, what flash attention's backward spends on recomputing the probabilities anyway.
        fn causal_attention_backward(q: TchTensor, k: TchTensor, v: TchTensor, grad: TchTensor) -> [TchTensor; 3] {
            vjp([&q, &k, &v], &grad, |[q, k, v]| sdpa(q, k, v))
        }
    }
}

impl<B: CausalAttentionBackward, C: CheckpointStrategy> CausalAttention for Autodiff<B, C> {
    fn causal_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct AttentionStep;

        impl<B: CausalAttentionBackward> Backward<B, 3> for AttentionStep {
            /// q, k and v, as the checkpointer keeps them; nothing of size seq².
            type State = [NodeId; 3];

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let [q, k, v] = ops.state.map(|id| checkpointer.retrieve_node_output(id));
                for (parent, input_grad) in ops.parents.into_iter().zip(B::causal_attention_backward(q, k, v, grad)) {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, input_grad);
                    }
                }
            }
        }

        match AttentionStep.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = [prep.checkpoint(&q), prep.checkpoint(&k), prep.checkpoint(&v)];
                prep.finish(state, B::causal_attention(q.into_primitive(), k.into_primitive(), v.into_primitive()))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::causal_attention(q.into_primitive(), k.into_primitive(), v.into_primitive()))
            }
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
            let [q, k, v] = [(); 3].map(|_| {
                let values: Vec<f32> = (0..80).map(|_| rng.random_range(-1.0..1.0)).collect();
                Tensor::<4>::from_data(TensorData::new(values, [1, 2, 5, 8]), &device)
            });
            let fused = causal_attention(q.clone(), k.clone(), v.clone());
            let difference = (fused - masked_attention(q, k, v, 0)).abs().max().into_scalar::<f32>();
            assert!(difference < 1e-5, "differs by {difference} on {device:?}");
        }
    }
}
