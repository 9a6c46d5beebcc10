//! GPT-2's GELU (the tanh approximation) as one differentiable operation.
//!
//! `gelu_approximate` is eight tensor operations (power, scale, add, scale, tanh, add, multiply, scale), and burn's
//! autodiff keeps and differentiates each of them: about two dozen passes over the MLP's `[batch, seq, 4·d]`
//! activations per layer and step. Here it is a backend extension with its own backward step, which keeps only the
//! input: on LibTorch its fused `gelu(approximate="tanh")` kernel and `gelu_backward`, on flex written out.

// burn-tch is deprecated upstream after 0.22; it is still our production CUDA backend (DESIGN.md).
#![allow(deprecated)]

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::activation::gelu_approximate;
use burn::tensor::{Shape, Tensor};

use crate::backend::flex_primitive;

/// √(2/π), the tanh approximation's scale.
const SQRT_2_OVER_PI: f64 = core::f64::consts::FRAC_2_SQRT_PI * core::f64::consts::FRAC_1_SQRT_2;
const CUBIC: f64 = 0.044715;

/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`, element-wise: HF's `gelu_new`.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as TanhGelu>::gelu_tanh(x.into_dispatch()))
}

/// The extension: the activation on each backend that revgen trains on, and under autodiff.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait TanhGelu: Backend {
    /// Element-wise; any shape.
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The backward step of [`TanhGelu`], on a backend without autodiff.
pub trait TanhGeluBackward: TanhGelu {
    /// The input's gradient, given the output's gradient `grad` (both the input's shape).
    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// d/dx of the activation: `0.5 · (1 + tanh u) + 0.5 · x · (1 − tanh² u) · √(2/π) · (1 + 3 · 0.044715 · x²)`
/// with `u = √(2/π) · (x + 0.044715 · x³)`, times `grad`.
fn written_out_backward<const D: usize>(x: Tensor<D>, grad: Tensor<D>) -> Tensor<D> {
    let squared = x.clone() * x.clone();
    let tanh = ((x.clone() + x.clone() * squared.clone() * CUBIC) * SQRT_2_OVER_PI).tanh();
    let slope = (squared * (3.0 * CUBIC) + 1.0) * SQRT_2_OVER_PI;
    let derivative = (tanh.clone() + 1.0) * 0.5 + x * (tanh.clone() * tanh).neg().add_scalar(1.0) * slope * 0.5;
    derivative * grad
}

impl TanhGelu for Flex {
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = x.shape();
        unflatten(gelu_approximate(flatten(x)), shape)
    }
}

impl TanhGeluBackward for Flex {
    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = x.shape();
        unflatten(written_out_backward(flatten(x), flatten(grad)), shape)
    }
}

/// An element-wise function does not care about the rank: flex's tensors go through it flattened.
fn flatten(x: FloatTensor<Flex>) -> Tensor<1> {
    let n = x.shape().num_elements();
    Tensor::from_primitive::<Flex>(Flex::float_reshape(x, Shape::new([n])))
}

fn unflatten(x: Tensor<1>, shape: Shape) -> FloatTensor<Flex> {
    Flex::float_reshape(flex_primitive(x), shape)
}

#[cfg(feature = "tch")]
mod libtorch {
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;

    use super::{TanhGelu, TanhGeluBackward};

    impl TanhGelu for LibTorch {
        fn gelu_tanh(x: TchTensor) -> TchTensor {
            TchTensor::new(x.tensor.gelu("tanh"))
        }
    }

    impl TanhGeluBackward for LibTorch {
        fn gelu_tanh_backward(x: TchTensor, grad: TchTensor) -> TchTensor {
            TchTensor::new(x.tensor.gelu_backward(&grad.tensor, "tanh"))
        }
    }
}

impl<B: TanhGeluBackward, C: CheckpointStrategy> TanhGelu for Autodiff<B, C> {
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct GeluStep;

        impl<B: TanhGeluBackward> Backward<B, 1> for GeluStep {
            /// The input, as the checkpointer keeps it.
            type State = NodeId;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let x = checkpointer.retrieve_node_output(ops.state);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| B::gelu_tanh_backward(x, grad));
            }
        }

        match GeluStep.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::gelu_tanh(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_tanh(x.into_primitive())),
        }
    }
}
