//! AdamW with its update in place on LibTorch.
//!
//! burn's AdamW is functional: each step writes the moments, the bias-corrected moments, the update and the new
//! parameter into fresh tensors, about fifteen passes over every parameter and eight temporaries. At 124M
//! parameters and short windows those element-wise passes were ~17% of a CPU step (MKL's matrix products ~58%).
//! This is PyTorch's single-tensor AdamW instead: decay, `lerp_` for the first moment, `addcmul_` for the second,
//! one temporary for the denominator, `addcdiv_`: ten passes, in place. Its state is burn's [`AdamWState`], so
//! checkpoints (`optimizer.bpk`) are the same whichever backend wrote them. The pure-Rust backend keeps burn's
//! AdamW.

#![allow(deprecated)] // burn-tch is deprecated upstream after 0.22; it is still our production backend.

use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::optim::{AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor};

/// The hyper-parameters of [`burn::optim::AdamWConfig`] that revgen sets.
#[derive(Clone, Debug)]
pub struct InPlaceAdamW {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

impl Optimizer for InPlaceAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // Zero moments before the first step give burn's first moments exactly: 0·β + g·(1−β).
        let (time, m, v) = match state {
            Some(s) => (s.momentum.time + 1, s.momentum.moment_1, s.momentum.moment_2),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let (mut p, mut g, mut m, mut v) = (own(tensor), own(grad), own(m), own(v));
        update(&mut p.tensor, &mut g.tensor, &mut m.tensor, &mut v.tensor, lr, time, self);
        let wrap = |t: TchTensor| Tensor::<D>::from_primitive::<LibTorch>(t);
        let momentum = AdaptiveMomentumState::new(time, wrap(m), wrap(v));
        (wrap(p), Some(AdamWState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

/// One AdamW step of `p` for the gradient `g` (which it scales), `t` steps in, moments `m` and `v` updated.
fn update(
    p: &mut tch::Tensor,
    g: &mut tch::Tensor,
    m: &mut tch::Tensor,
    v: &mut tch::Tensor,
    lr: f64,
    t: usize,
    h: &InPlaceAdamW,
) {
    let t = t as i32;
    let (bias_1, bias_2) = (1.0 - h.beta_1.powi(t), 1.0 - h.beta_2.powi(t));
    if h.weight_decay != 0.0 {
        let _ = p.g_mul_scalar_(1.0 - lr * h.weight_decay);
    }
    // m ← β₁·m + (1−β₁)·g
    let _ = m.lerp_(g, 1.0 - h.beta_1);
    // v ← β₂·v + (1−β₂)·g², as (√(1−β₂)·g)²: tch binds addcmul_ without its scale.
    let _ = v.g_mul_scalar_(h.beta_2);
    let _ = g.g_mul_scalar_((1.0 - h.beta_2).sqrt());
    let _ = v.addcmul_(g, g);
    if lr == 0.0 {
        return;
    }
    // p ← p − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε), as p + m / d with d = (√v / √(1−β₂ᵗ) + ε) · (−(1−β₁ᵗ)/lr)
    let mut d = v.sqrt();
    let _ = d.g_div_scalar_(bias_2.sqrt());
    let _ = d.g_add_scalar_(h.epsilon);
    let _ = d.g_mul_scalar_(-bias_1 / lr);
    let _ = p.addcdiv_(m, &d);
}

/// The LibTorch tensor, copied first if anything else shares its storage (an update in place would change it too).
fn own<const D: usize>(tensor: Tensor<D>) -> TchTensor {
    let t = tensor.try_into_primitive::<LibTorch>().expect("the LibTorch optimizer gets LibTorch tensors");
    if t.can_mut() { t } else { TchTensor::new(t.tensor.copy()) }
}

#[cfg(test)]
mod tests {
    use burn::optim::AdamWConfig;
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::backend::Backend;

    /// Ten steps on the same parameters and gradients: this optimizer against burn's AdamW.
    #[test]
    fn matches_burns_adamw() {
        let device = Backend::Tch.inference_device("cpu").unwrap();
        let h = InPlaceAdamW { beta_1: 0.9, beta_2: 0.95, epsilon: 1e-8, weight_decay: 0.1 };
        let burns = AdamWConfig::new()
            .with_beta_1(h.beta_1 as f32)
            .with_beta_2(h.beta_2 as f32)
            .with_epsilon(h.epsilon as f32)
            .with_weight_decay(h.weight_decay as f32)
            .build();
        let start = Tensor::<2>::random([64, 48], Distribution::Normal(0.0, 1.0), &device);
        let (mut ours, mut theirs) = (start.clone(), start);
        let (mut our_state, mut their_state) = (None, None);
        for step in 0..10 {
            let grad = Tensor::<2>::random([64, 48], Distribution::Normal(0.0, 0.1), &device);
            // A constant learning rate, then a warmup's first (zero) one.
            let lr = if step == 5 { 0.0 } else { 3e-3 };
            (ours, our_state) = h.step(lr, ours, grad.clone(), our_state);
            (theirs, their_state) = burns.step(lr, theirs, grad, their_state);
        }
        let (ours, theirs) = (ours.into_data(), theirs.into_data());
        ours.assert_approx_eq::<f32>(&theirs, Tolerance::absolute(1e-5));
        let state = our_state.unwrap().momentum;
        assert_eq!(state.time, 10);
        let expected = their_state.unwrap().momentum;
        let (moment_2, expected_2) = (state.moment_2.into_data(), expected.moment_2.into_data());
        moment_2.assert_approx_eq::<f32>(&expected_2, Tolerance::absolute(1e-7));
    }

    /// A parameter whose storage is shared keeps its value: the update works on a copy.
    #[test]
    fn leaves_shared_tensors_alone() {
        let device = Backend::Tch.inference_device("cpu").unwrap();
        let h = InPlaceAdamW { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: 0.0 };
        let p = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
        let kept = p.clone();
        let (updated, _) = h.step(0.1, p, Tensor::<1>::from_floats([1.0, 1.0, 1.0], &device), None);
        assert_eq!(kept.into_data().to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
        let updated = updated.into_data().to_vec::<f32>().unwrap();
        // The first step moves each weight by lr against the gradient's sign (Adam's unit step).
        for (u, p) in updated.iter().zip([1.0f32, 2.0, 3.0]) {
            assert!((u - (p - 0.1)).abs() < 1e-5, "{updated:?}");
        }
    }
}
