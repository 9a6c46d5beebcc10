//! AdamW as PyTorch's `fused=True` runs it: one pass over each parameter, its gradient and its moments, in place.
//!
//! burn's AdamW is functional: about fifteen passes over every parameter, eight of them into fresh tensors. At
//! 124M parameters that was 1.36–1.51 s per update on the pure-Rust backend (2 cores; 0.13 s in one pass) and, on
//! LibTorch, ten kernel calls per parameter tensor. Both backends here keep burn's [`burn::optim::AdamWState`] as
//! their state, so `optimizer.bpk` keeps its format and a checkpoint resumes on either backend.
//! - [`flex`]: the pure-Rust backend, one parallel pass per parameter tensor over its storage.
//! - `libtorch` (feature `tch`): LibTorch's own fused multi-tensor kernel, one call per update, with the
//!   gradient clipping folded in and nothing read back to the host.

pub mod flex;
#[cfg(feature = "tch")]
mod libtorch;

#[cfg(feature = "tch")]
pub use libtorch::{FusedAdamW, Queue, matches_burn, step};

use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, Optimizer};
use burn::tensor::{Device, Distribution, Tensor};

/// The number of the update about to run (from 1) and the moments it starts from: zero moments shaped like
/// `grad` before the first update, which give burn's first moments exactly (0·β + g·(1−β)).
fn next_step<const D: usize>(state: Option<AdamWState<D>>, grad: &Tensor<D>) -> (usize, Tensor<D>, Tensor<D>) {
    match state {
        Some(s) => (s.momentum.time + 1, s.momentum.moment_1, s.momentum.moment_2),
        None => (1, grad.zeros_like(), grad.zeros_like()),
    }
}

/// burn's AdamW state after update `time`.
fn state<const D: usize>(time: usize, moment_1: Tensor<D>, moment_2: Tensor<D>) -> AdamWState<D> {
    AdamWState::new(AdaptiveMomentumState::new(time, moment_1, moment_2))
}

fn state_to_device<const D: usize>(mut state: AdamWState<D>, device: &Device) -> AdamWState<D> {
    state.momentum = state.momentum.to_device(device);
    state
}

/// AdamW's settings that revgen sets, for both backends' optimizers; the rest are PyTorch's defaults (no AMSGrad,
/// no maximising).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyperparameters {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

impl Hyperparameters {
    /// The same with another weight decay (the vectors' parameter group has none).
    pub fn with_weight_decay(self, weight_decay: f64) -> Self {
        Hyperparameters { weight_decay, ..self }
    }

    /// burn's AdamW with these settings: the reference the tests compare with.
    pub fn burns(self) -> AdamW {
        AdamWConfig::new()
            .with_beta_1(self.beta_1 as f32)
            .with_beta_2(self.beta_2 as f32)
            .with_epsilon(self.epsilon as f32)
            .with_weight_decay(self.weight_decay as f32)
            .build()
    }
}

/// The settings [`compare_with_burn`] runs both optimizers with.
pub const COMPARED: Hyperparameters = Hyperparameters { beta_1: 0.9, beta_2: 0.95, epsilon: 1e-8, weight_decay: 0.1 };

/// How far an AdamW ends from burn's after ten steps from the same parameters and gradients.
#[derive(Debug)]
pub struct Difference {
    /// Largest absolute difference of the parameters (values of order 1).
    pub params: f32,
    /// Largest absolute difference of the second moments (values of order 1e-2).
    pub moment_2: f32,
    /// The step count in the compared optimizer's state (10).
    pub steps: usize,
}

/// Runs `step` (an AdamW with the [`COMPARED`] settings) and burn's AdamW for ten steps on `device` (without
/// autodiff: optimizers see plain tensors), with a zero learning rate at the sixth step as a warmup starts, and
/// compares them. The unit tests run it on the CPU, `cuda_check` on a GPU.
pub fn compare_with_burn(
    device: &Device,
    mut step: impl FnMut(f64, Tensor<2>, Tensor<2>, Option<AdamWState<2>>) -> (Tensor<2>, Option<AdamWState<2>>),
) -> Difference {
    let burns = COMPARED.burns();
    let start = Tensor::<2>::random([64, 48], Distribution::Normal(0.0, 1.0), device);
    let (mut a, mut b) = (start.clone(), start);
    let (mut a_state, mut b_state) = (None, None);
    for i in 0..10 {
        let grad = Tensor::<2>::random([64, 48], Distribution::Normal(0.0, 0.1), device);
        let lr = if i == 5 { 0.0 } else { 3e-3 };
        (a, a_state) = step(lr, a, grad.clone(), a_state);
        (b, b_state) = burns.step(lr, b, grad, b_state);
    }
    let max_abs = |x: Tensor<2>, y: Tensor<2>| (x - y).abs().max().into_scalar::<f32>();
    let (a_state, b_state) = (a_state.expect("a state").momentum, b_state.expect("a state").momentum);
    Difference { params: max_abs(a, b), moment_2: max_abs(a_state.moment_2, b_state.moment_2), steps: a_state.time }
}
