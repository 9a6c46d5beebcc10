//! GPT-2's projections, `x · W + b` over rows of tokens, as one differentiable operation.
//!
//! burn's `linear` is a matmul and a broadcast addition under autodiff (its `Dispatch` backend has no `linear` of
//! its own in 0.22.1, and a 3-D input even became a batched matmul). PyTorch's GPT-2 calls `addmm`, which on CUDA
//! adds the bias in the GEMM's epilogue (cuBLASLt), so the separate addition was one more pass over every
//! projection's output, and one more kernel launch, per layer and micro-batch. Here the projection is a backend
//! extension: on LibTorch `addmm` forward and PyTorch's own backward (two matrix products and a column sum), on flex
//! written out.

// burn-tch is deprecated upstream after 0.22; it is still our production CUDA backend (DESIGN.md).
#![allow(deprecated)]

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;

use crate::backend::flex_primitive as flex;

/// x: `[rows, in]`, weight: `[in, out]`, bias: `[out]` → `[rows, out]`
pub fn affine(x: Tensor<2>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<2> {
    let out = <Dispatch as Affine>::affine(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch());
    Tensor::from_dispatch(out)
}

/// The extension: the projection on each backend that revgen trains on, and under autodiff.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait Affine: Backend {
    /// x: `[rows, in]`, weight: `[in, out]`, bias: `[out]` → `[rows, out]`
    fn affine(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The backward step of [`Affine`], on a backend without autodiff.
pub trait AffineBackward: Affine {
    /// The gradients of x, the weight and the bias, given the output's gradient `grad` (`[rows, out]`):
    /// `grad · Wᵀ`, `xᵀ · grad` and the column sums of `grad`.
    fn affine_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

impl Affine for Flex {
    fn affine(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let [x, weight] = [x, weight].map(Tensor::<2>::from_primitive::<Flex>);
        let bias = Tensor::<1>::from_primitive::<Flex>(bias);
        flex(x.matmul(weight) + bias.unsqueeze::<2>())
    }
}

impl AffineBackward for Flex {
    fn affine_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let [x, weight, grad] = [x, weight, grad].map(Tensor::<2>::from_primitive::<Flex>);
        let out = grad.dims()[1];
        let dx = grad.clone().matmul(weight.transpose()); // [rows, in]
        let dweight = x.transpose().matmul(grad.clone()); // [in, out]
        let dbias = grad.sum_dim(0).reshape([out]); // [out]
        [flex(dx), flex(dweight), flex(dbias)]
    }
}

#[cfg(feature = "tch")]
mod libtorch {
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;

    use super::{Affine, AffineBackward};

    impl Affine for LibTorch {
        fn affine(x: TchTensor, weight: TchTensor, bias: TchTensor) -> TchTensor {
            TchTensor::new(bias.tensor.addmm(&x.tensor, &weight.tensor))
        }
    }

    impl AffineBackward for LibTorch {
        /// What PyTorch's `AddmmBackward0` runs.
        fn affine_backward(x: TchTensor, weight: TchTensor, grad: TchTensor) -> [TchTensor; 3] {
            let dx = grad.tensor.mm(&weight.tensor.tr()); // [rows, in]
            let dweight = x.tensor.tr().mm(&grad.tensor); // [in, out]
            let dbias = grad.tensor.sum_dim_intlist([0i64].as_slice(), false, None); // [out]
            [dx, dweight, dbias].map(TchTensor::new)
        }
    }
}

impl<B: AffineBackward, C: CheckpointStrategy> Affine for Autodiff<B, C> {
    fn affine(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct AffineStep;

        impl<B: AffineBackward> Backward<B, 3> for AffineStep {
            /// x and the weight, as the checkpointer keeps them (the bias's gradient needs neither).
            type State = [NodeId; 2];

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let [x, weight] = ops.state.map(|id| checkpointer.retrieve_node_output(id));
                for (parent, input_grad) in ops.parents.into_iter().zip(B::affine_backward(x, weight, grad)) {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, input_grad);
                    }
                }
            }
        }

        match AffineStep.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = [prep.checkpoint(&x), prep.checkpoint(&weight)];
                prep.finish(state, B::affine(x.into_primitive(), weight.into_primitive(), bias.into_primitive()))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::affine(x.into_primitive(), weight.into_primitive(), bias.into_primitive()))
            }
        }
    }
}
