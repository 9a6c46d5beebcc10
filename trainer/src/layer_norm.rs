//! LayerNorm with a scale and a bias as one differentiable operation.
//!
//! burn's `layer_norm` is fused on LibTorch for inference, but under autodiff it is the backend trait's default: mean,
//! subtract, square, mean, add, square root, divide, scale and shift, each recorded and differentiated on its own
//! (about two dozen kernels per LayerNorm and step, 25 LayerNorms in GPT-2 small). Here it is a backend extension
//! with its own backward step that keeps only the input: on LibTorch the fused kernels in both directions (the
//! backward one after the fused forward has recomputed the row statistics), on flex written out.

// burn-tch is deprecated upstream after 0.22; it is still our production CUDA backend (DESIGN.md).
#![allow(deprecated)]

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{FloatTensorOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::LayerNorm;
use burn::tensor::{Shape, Tensor};

use crate::backend::flex_primitive;

/// `norm` applied to `x` with `epsilon` (burn keeps a LayerNorm's epsilon private, so the model passes it).
///
/// x: `[batch, seq, d]` → `[batch, seq, d]`
pub fn layer_norm(norm: &LayerNorm, x: Tensor<3>, epsilon: f64) -> Tensor<3> {
    let beta = norm.beta.as_ref().expect("GPT-2's LayerNorms have a bias").val();
    let out = <Dispatch as AffineLayerNorm>::layer_norm_affine(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    Tensor::from_dispatch(out)
}

/// The extension: the normalisation on each backend that revgen trains on, and under autodiff.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait AffineLayerNorm: Backend {
    /// x: `[..., d]`, gamma and beta: `[d]` → `[..., d]`
    fn layer_norm_affine(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// The backward step of [`AffineLayerNorm`], on a backend without autodiff.
pub trait AffineLayerNormBackward: AffineLayerNorm {
    /// The gradients of x, gamma and beta, given the output's gradient `grad` (x's shape).
    fn layer_norm_affine_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// With x̂ = (x − mean) · rstd over each row: dγ = Σ_rows grad ⊙ x̂, dβ = Σ_rows grad, and with g = grad ⊙ γ,
/// dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)).
///
/// x, grad: `[rows, d]`, gamma: `[d]` → `(dx [rows, d], dgamma [d], dbeta [d])`
fn written_out_backward(
    x: Tensor<2>,
    gamma: Tensor<1>,
    epsilon: f64,
    grad: Tensor<2>,
) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    let [_, d] = x.dims();
    let centered = x.clone() - x.mean_dim(1); // [rows, d]
    let variance = (centered.clone() * centered.clone()).mean_dim(1); // [rows, 1]
    let rstd = (variance + epsilon).sqrt().recip(); // [rows, 1]
    let normalized = centered * rstd.clone(); // [rows, d]
    let dgamma = (grad.clone() * normalized.clone()).sum_dim(0).reshape([d]);
    let dbeta = grad.clone().sum_dim(0).reshape([d]);
    let scaled = grad * gamma.unsqueeze::<2>(); // [rows, d]
    let projection = (scaled.clone() * normalized.clone()).mean_dim(1); // [rows, 1]
    let dx = (scaled.clone() - scaled.mean_dim(1) - normalized * projection) * rstd;
    (dx, dgamma, dbeta)
}

impl AffineLayerNorm for Flex {
    fn layer_norm_affine(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }
}

impl AffineLayerNormBackward for Flex {
    fn layer_norm_affine_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let shape = x.shape();
        let d = gamma.shape().num_elements();
        // Any leading shape: the rows are normalised independently.
        let rows = |t: FloatTensor<Flex>| {
            let n = t.shape().num_elements();
            Tensor::<2>::from_primitive::<Flex>(Flex::float_reshape(t, Shape::new([n / d, d])))
        };
        let (dx, dgamma, dbeta) =
            written_out_backward(rows(x), Tensor::from_primitive::<Flex>(gamma), epsilon, rows(grad));
        [Flex::float_reshape(flex_primitive(dx), shape), flex_primitive(dgamma), flex_primitive(dbeta)]
    }
}

#[cfg(feature = "tch")]
mod libtorch {
    use std::ffi::c_char;

    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;
    use torch_sys::C_tensor;

    use super::{AffineLayerNorm, AffineLayerNormBackward};
    use crate::libtorch::check;

    // csrc/operators.cpp, compiled by build.rs.
    unsafe extern "C" {
        fn revgen_layer_norm_backward(
            grad: *const C_tensor,
            x: *const C_tensor,
            gamma: *const C_tensor,
            beta: *const C_tensor,
            eps: f64,
            out: *mut *mut C_tensor,
            error: *mut *mut c_char,
        );
    }

    impl AffineLayerNorm for LibTorch {
        fn layer_norm_affine(x: TchTensor, gamma: TchTensor, beta: TchTensor, epsilon: f64) -> TchTensor {
            let d = *x.tensor.size().last().expect("a LayerNorm input has a last dimension");
            TchTensor::new(x.tensor.layer_norm([d], Some(&gamma.tensor), Some(&beta.tensor), epsilon, true))
        }
    }

    impl AffineLayerNormBackward for LibTorch {
        /// LibTorch's fused backward kernel, the one PyTorch's autograd runs (`native_layer_norm_backward`, which
        /// tch does not bind: csrc/operators.cpp), after its fused forward has recomputed each row's mean and
        /// 1/std.
        fn layer_norm_affine_backward(
            x: TchTensor,
            gamma: TchTensor,
            beta: TchTensor,
            epsilon: f64,
            grad: TchTensor,
        ) -> [TchTensor; 3] {
            let mut out = [std::ptr::null_mut(); 3];
            let mut error = std::ptr::null_mut();
            // SAFETY: the four handles are live tch tensors for the duration of the call; on success `out` holds
            // three new tensors, which the returned `tch::Tensor`s own.
            unsafe {
                revgen_layer_norm_backward(
                    grad.tensor.as_ptr(),
                    x.tensor.as_ptr(),
                    gamma.tensor.as_ptr(),
                    beta.tensor.as_ptr(),
                    epsilon,
                    out.as_mut_ptr(),
                    &mut error,
                )
            };
            check(error, "LayerNorm's backward step");
            out.map(|t| TchTensor::new(unsafe { tch::Tensor::from_ptr(t) }))
        }
    }
}

impl<B: AffineLayerNormBackward, C: CheckpointStrategy> AffineLayerNorm for Autodiff<B, C> {
    fn layer_norm_affine(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct NormStep;

        impl<B: AffineLayerNormBackward> Backward<B, 3> for NormStep {
            /// x, gamma and beta, as the checkpointer keeps them, and epsilon.
            type State = ([NodeId; 3], f64);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (ids, epsilon) = ops.state;
                let [x, gamma, beta] = ids.map(|id| checkpointer.retrieve_node_output(id));
                let input_grads = B::layer_norm_affine_backward(x, gamma, beta, epsilon, grad);
                for (parent, input_grad) in ops.parents.into_iter().zip(input_grads) {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, input_grad);
                    }
                }
            }
        }

        match NormStep.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = ([prep.checkpoint(&x), prep.checkpoint(&gamma), prep.checkpoint(&beta)], epsilon);
                prep.finish(
                    state,
                    B::layer_norm_affine(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_affine(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            )),
        }
    }
}
