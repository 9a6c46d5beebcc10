//! Next-token cross-entropy as one differentiable operation.
//!
//! Written with tensor operations, the loss is `log_softmax` (max, subtract, exp, sum, log, subtract) and a gather,
//! and burn's autodiff differentiates each step, keeping several `[tokens, vocab]` intermediates until the backward
//! pass: 50,257 columns a token, 1.6 GB each in f32 at 8 × 1024 tokens. Here the loss is a backend extension with
//! its own backward step, `softmax(logits) − onehot(target)` scaled by each token's gradient, which keeps only the
//! logits. On LibTorch the forward is its fused `cross_entropy` kernel.

// burn-tch is deprecated upstream after 0.22; it is still our production CUDA backend (DESIGN.md).
#![allow(deprecated)]

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{IndexingUpdateOp, Int, Tensor};

use crate::backend::flex_primitive;

/// Cross-entropy of each target under `logits`: −log softmax(logits)[target], per position.
///
/// logits: `[batch, seq, vocab]`, targets: `[batch, seq]` → `[batch·seq]`
pub fn token_losses(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    let [b, t, v] = logits.dims();
    let logits = logits.reshape([b * t, v]).into_dispatch();
    let targets = targets.reshape([b * t]).into_dispatch();
    Tensor::from_dispatch(<Dispatch as TokenLosses>::token_losses(logits, targets))
}

/// The extension: the loss on each backend that revgen trains on, and under autodiff.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait TokenLosses: Backend {
    /// logits: `[n, vocab]`, targets: `[n]` → `[n]`
    fn token_losses(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self>;
}

/// The backward step of [`TokenLosses`], on a backend without autodiff.
pub trait TokenLossesBackward: TokenLosses {
    /// The logits' gradient, given each loss's gradient `grad`.
    ///
    /// logits: `[n, vocab]`, targets: `[n]`, grad: `[n]` → `[n, vocab]`
    fn token_losses_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// logits: `[n, vocab]`, targets: `[n]` → `[n]`
pub(crate) fn written_out_losses(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    log_softmax(logits, 1).gather(1, targets.reshape([n, 1])).reshape([n]).neg()
}

/// d(−log pₜ)/d logits = softmax(logits) − onehot(t), times each position's gradient.
///
/// logits: `[n, vocab]`, targets: `[n]`, grad: `[n]` → `[n, vocab]`
fn written_out_backward(logits: Tensor<2>, targets: Tensor<1, Int>, grad: Tensor<1>) -> Tensor<2> {
    let [n, _] = logits.dims();
    let grad = grad.reshape([n, 1]);
    (softmax(logits, 1) * grad.clone()).scatter(1, targets.reshape([n, 1]), grad.neg(), IndexingUpdateOp::Add)
}

impl TokenLosses for Flex {
    fn token_losses(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        let losses =
            written_out_losses(Tensor::from_primitive::<Flex>(logits), Tensor::from_primitive::<Flex>(targets));
        flex_primitive(losses)
    }
}

impl TokenLossesBackward for Flex {
    fn token_losses_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let grad = written_out_backward(
            Tensor::from_primitive::<Flex>(logits),
            Tensor::from_primitive::<Flex>(targets),
            Tensor::from_primitive::<Flex>(grad),
        );
        flex_primitive(grad)
    }
}

#[cfg(feature = "tch")]
mod libtorch {
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;
    use tch::{Kind, Reduction};

    use super::{TokenLosses, TokenLossesBackward};

    impl TokenLosses for LibTorch {
        /// LibTorch's fused `cross_entropy` (log_softmax and the pick in one kernel each).
        fn token_losses(logits: TchTensor, targets: TchTensor) -> TchTensor {
            let targets = targets.tensor.to_kind(Kind::Int64);
            TchTensor::new(logits.tensor.cross_entropy_loss::<tch::Tensor>(&targets, None, Reduction::None, -100, 0.0))
        }
    }

    impl TokenLossesBackward for LibTorch {
        /// Two passes over `[n, vocab]` (softmax, then scale in place) and one element per row for the target.
        fn token_losses_backward(logits: TchTensor, targets: TchTensor, grad: TchTensor) -> TchTensor {
            let grad = grad.tensor.unsqueeze(1); // [n, 1]
            let targets = targets.tensor.to_kind(Kind::Int64).unsqueeze(1); // [n, 1]
            let mut out = logits.tensor.softmax(1, logits.tensor.kind()); // [n, vocab]
            let _ = out.g_mul_(&grad);
            let _ = out.scatter_add_(1, &targets, &grad.neg());
            TchTensor::new(out)
        }
    }
}

impl<B: TokenLossesBackward, C: CheckpointStrategy> TokenLosses for Autodiff<B, C> {
    fn token_losses(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LossStep;

        impl<B: TokenLossesBackward> Backward<B, 1> for LossStep {
            /// The logits, as the checkpointer keeps them, and the targets.
            type State = (NodeId, IntTensor<B>);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let (logits, targets) = ops.state;
                let logits = checkpointer.retrieve_node_output(logits);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| B::token_losses_backward(logits, targets, grad));
            }
        }

        match LossStep.prepare::<C>([logits.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&logits), targets.clone());
                prep.finish(state, B::token_losses(logits.into_primitive(), targets))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::token_losses(logits.into_primitive(), targets)),
        }
    }
}
