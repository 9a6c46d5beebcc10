//! AdamW and gradient clipping on LibTorch, as PyTorch's `fused=True` does them: one multi-tensor call per update.
//!
//! burn's optimizers work one parameter tensor at a time. PyTorch's single-tensor AdamW in place still makes ten
//! passes (272 ms per update at 124M on 2 cores, against 30 ms for the fused kernel), and on CUDA each pass is a
//! kernel launch per parameter tensor: ~1,500 launches per update at 124M. So [`FusedAdamW`] plugs into burn's
//! [`ModuleOptimizer`] (which keeps the parameter groups, the learning rate and the state records) but only queues
//! each parameter's update; [`step`] then applies the whole queue with LibTorch's `_fused_adamw_`, which also
//! divides the gradients by the clipping factor, and computes the global norm with `_foreach_norm`
//! (`csrc/operators.cpp`: tch binds neither). Nothing is read back to the host, so on a GPU the host keeps
//! queueing work.

#![allow(deprecated)] // burn-tch is deprecated upstream after 0.22; it is still our production backend.

use std::ffi::c_char;
use std::sync::{Arc, Mutex, PoisonError};

use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWState, GradientsParams, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};
use torch_sys::C_tensor;

use super::Hyperparameters;
use crate::libtorch::check;

/// AdamW for LibTorch: its settings, and the queue that [`step`] applies.
#[derive(Clone)]
pub struct FusedAdamW {
    pub hyperparameters: Hyperparameters,
    pub queue: Queue,
}

/// Parameter updates that [`FusedAdamW`] queued and [`Queue::apply`] has not run yet. Clones share the queue,
/// so the parameter groups' optimizers (with and without weight decay) fill one.
#[derive(Clone, Default)]
pub struct Queue(Arc<Mutex<Vec<Update>>>);

/// One parameter's update: handles on the storage that burn's tensors hold, which the kernel changes in place.
struct Update {
    param: tch::Tensor,
    grad: tch::Tensor,
    moment_1: tch::Tensor,
    moment_2: tch::Tensor,
    settings: Settings,
}

/// What one fused call has in common.
#[derive(Clone, Copy, PartialEq)]
struct Settings {
    lr: f64,
    time: usize,
    hyperparameters: Hyperparameters,
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    /// Queues the update and returns the parameter and moments that it will change in place.
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, m, v) = super::next_step(state, &grad);
        let (p, g, m, v) = (own(tensor), own(grad), own(m), own(v));
        let settings = Settings { lr, time, hyperparameters: self.hyperparameters };
        self.queue.lock().push(Update {
            param: p.tensor.shallow_clone(),
            grad: g.tensor.shallow_clone(),
            moment_1: m.tensor.shallow_clone(),
            moment_2: v.tensor.shallow_clone(),
            settings,
        });
        let wrap = |t: TchTensor| Tensor::<D>::from_primitive::<LibTorch>(t);
        (wrap(p), Some(super::state(time, wrap(m), wrap(v))))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        super::state_to_device(state, device)
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Update>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the queued updates: one fused call per set of settings (two in practice: the matrices, with weight
    /// decay, and the vectors, without). Every gradient is divided by `grad_scale` first, if given.
    pub fn apply(&self, grad_scale: Option<&tch::Tensor>) {
        let mut updates = std::mem::take(&mut *self.lock());
        while let Some(settings) = updates.first().map(|u| u.settings) {
            let (group, rest): (Vec<_>, Vec<_>) = updates.into_iter().partition(|u| u.settings == settings);
            updates = rest;
            fused_adamw(&group, settings, grad_scale);
        }
    }
}

/// One optimizer update on LibTorch: the global gradient norm, clipping to `max_norm` (0 = off) folded into AdamW,
/// and the update through `optimizer`, whose parameter optimizers must be [`FusedAdamW`]s sharing `queue`.
/// Returns the module and the norm before clipping, `[1]`, still on the device.
pub fn step<M: Module>(
    queue: &Queue,
    optimizer: &mut ModuleOptimizer,
    lr: LearningRate,
    module: M,
    grads: GradientsParams,
    max_norm: f64,
) -> (M, Tensor<1>) {
    let norm = {
        let mut collected = Grads { grads: &grads, tensors: Vec::new() };
        module.visit(&mut collected);
        global_norm(&collected.tensors)
    }; // []
    // PyTorch multiplies by min(1, max_norm / (norm + 1e-6)); the kernel divides by the inverse.
    let scale = (max_norm > 0.0).then(|| ((&norm + 1e-6) / max_norm).clamp_min(1.0)); // []
    let module = optimizer.step(lr, module, grads);
    queue.apply(scale.as_ref());
    (module, Tensor::<1>::from_primitive::<LibTorch>(TchTensor::new(norm.reshape([1]))))
}

/// The gradients of a module's parameters, in the module's order.
struct Grads<'a> {
    grads: &'a GradientsParams,
    tensors: Vec<TchTensor>,
}

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.tensors.push(g.try_into_primitive::<LibTorch>().expect("LibTorch gradients"));
        }
    }
}

/// The L2 norm of all `tensors` together, a 0-d f32 tensor on their device (0 for none).
fn global_norm(tensors: &[TchTensor]) -> tch::Tensor {
    if tensors.is_empty() {
        return tch::Tensor::zeros([], (tch::Kind::Float, tch::Device::Cpu));
    }
    let handles: Vec<*const C_tensor> = tensors.iter().map(|t| t.tensor.as_ptr()).collect();
    let mut error = std::ptr::null_mut();
    // SAFETY: the handles are live tch tensors for the duration of the call; a non-null result is a new tensor
    // that the returned `tch::Tensor` owns (tch frees it with `delete`, as it was allocated).
    let norm = unsafe { revgen_global_norm(handles.as_ptr(), handles.len(), &mut error) };
    check(error, "the global gradient norm");
    unsafe { tch::Tensor::from_ptr(norm) }
}

/// LibTorch's fused AdamW over `group`, which share `settings`.
fn fused_adamw(group: &[Update], s: Settings, grad_scale: Option<&tch::Tensor>) {
    let handles = |f: fn(&Update) -> &tch::Tensor| group.iter().map(|u| f(u).as_ptr()).collect::<Vec<_>>();
    let (params, grads) = (handles(|u| &u.param), handles(|u| &u.grad));
    let (moments_1, moments_2) = (handles(|u| &u.moment_1), handles(|u| &u.moment_2));
    let step = tch::Tensor::full([], s.time as f64, (tch::Kind::Float, group[0].param.device()));
    let scale = grad_scale.map_or(std::ptr::null(), tch::Tensor::as_ptr);
    let h = s.hyperparameters;
    let mut error = std::ptr::null_mut();
    // SAFETY: every handle is a live tch tensor for the duration of the call, and the four lists have one entry
    // per update.
    unsafe {
        revgen_fused_adamw(
            params.as_ptr(),
            grads.as_ptr(),
            moments_1.as_ptr(),
            moments_2.as_ptr(),
            group.len(),
            step.as_ptr(),
            s.lr,
            h.beta_1,
            h.beta_2,
            h.weight_decay,
            h.epsilon,
            scale,
            &mut error,
        )
    };
    check(error, "AdamW");
}

// csrc/operators.cpp, compiled by build.rs.
unsafe extern "C" {
    fn revgen_global_norm(tensors: *const *const C_tensor, n: usize, error: *mut *mut c_char) -> *mut C_tensor;
    #[allow(clippy::too_many_arguments)]
    fn revgen_fused_adamw(
        params: *const *const C_tensor,
        grads: *const *const C_tensor,
        exp_avgs: *const *const C_tensor,
        exp_avg_sqs: *const *const C_tensor,
        n: usize,
        step: *const C_tensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        grad_scale: *const C_tensor,
        error: *mut *mut c_char,
    );
}

/// [`super::compare_with_burn`] for [`FusedAdamW`] on `device` (LibTorch, without autodiff).
pub fn matches_burn(device: &Device) -> super::Difference {
    let ours = FusedAdamW { hyperparameters: super::COMPARED, queue: Queue::default() };
    super::compare_with_burn(device, |lr, p, g, state| {
        let stepped = ours.step(lr, p, g, state);
        ours.queue.apply(None);
        stepped
    })
}

/// The LibTorch tensor, contiguous and not shared: copied first if anything else shares its storage (an update in
/// place would change it too), or if its elements are not in row-major order. The fused kernel walks the four
/// tensors of a parameter in memory order, so a transposed gradient (as a tied or transposed weight's can be)
/// would pair the wrong elements: on the CPU silently (checked with PyTorch 2.9), on CUDA as an error.
fn own<const D: usize>(tensor: Tensor<D>) -> TchTensor {
    let t = tensor.try_into_primitive::<LibTorch>().expect("the LibTorch optimizer gets LibTorch tensors");
    match (t.tensor.is_contiguous(), t.can_mut()) {
        (true, true) => t,
        (true, false) => TchTensor::new(t.tensor.copy()),
        (false, _) => TchTensor::new(t.tensor.contiguous()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;

    fn adamw(beta_2: f64, weight_decay: f64) -> FusedAdamW {
        let hyperparameters = Hyperparameters { beta_1: 0.9, beta_2, epsilon: 1e-8, weight_decay };
        FusedAdamW { hyperparameters, queue: Queue::default() }
    }

    /// Ten steps on the same parameters and gradients: this optimizer against burn's AdamW.
    #[test]
    fn matches_burns_adamw() {
        let difference = matches_burn(&Backend::Tch.inference_device("cpu").unwrap());
        assert!(difference.params < 1e-5 && difference.moment_2 < 1e-7, "{difference:?}");
        assert_eq!(difference.steps, 10);
    }

    /// Nothing changes until the queue is applied; then every queued parameter does, in one call per setting.
    #[test]
    fn updates_wait_for_the_queue() {
        let device = Backend::Tch.inference_device("cpu").unwrap();
        let (decayed, plain) = (adamw(0.999, 0.5), adamw(0.999, 0.0));
        let plain = FusedAdamW { queue: decayed.queue.clone(), ..plain };
        let ones = || Tensor::<1>::from_floats([1.0, 1.0], &device);
        let (a, _) = decayed.step(0.1, Tensor::<1>::from_floats([1.0, 2.0], &device), ones(), None);
        let (b, _) = plain.step(0.1, Tensor::<1>::from_floats([3.0, 4.0], &device), ones(), None);
        assert_eq!(a.clone().into_data().to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
        decayed.queue.apply(None);
        // Adam's first step moves each weight by lr against the gradient's sign; decay first takes lr·λ·p.
        let (a, b) = (a.into_data().to_vec::<f32>().unwrap(), b.into_data().to_vec::<f32>().unwrap());
        for (got, want) in a.iter().zip([1.0 * 0.95 - 0.1, 2.0 * 0.95 - 0.1]).chain(b.iter().zip([2.9, 3.9])) {
            assert!((got - want).abs() < 1e-6, "{a:?} {b:?}");
        }
        assert!(decayed.queue.lock().is_empty());
    }

    /// A transposed gradient updates each weight with its own element, as its row-major copy does.
    #[test]
    fn transposed_gradients_pair_the_right_elements() {
        let device = Backend::Tch.inference_device("cpu").unwrap();
        let values: Vec<f32> = (0..12).map(|i| i as f32 - 5.5).collect();
        let transposed = Tensor::<1>::from_floats(values.as_slice(), &device).reshape([4, 3]).swap_dims(0, 1);
        let view = transposed.clone().try_into_primitive::<LibTorch>().unwrap();
        assert!(!view.tensor.is_contiguous(), "the test needs a strided gradient");
        drop(view);
        let start = || Tensor::<2>::zeros([3, 4], &device);
        let h = adamw(0.999, 0.0);
        let (a, _) = h.step(0.1, start(), transposed.clone(), None);
        let (b, _) = h.step(0.1, start(), Tensor::from_data(transposed.into_data(), &device), None);
        h.queue.apply(None);
        let (a, b) = (a.into_data().to_vec::<f32>().unwrap(), b.into_data().to_vec::<f32>().unwrap());
        assert_eq!(a, b);
        // Adam's first step: −lr · sign(g), and g[0][1] is the source's element 3 (−2.5).
        assert!((a[1] - 0.1).abs() < 1e-6, "{a:?}");
    }

    /// A parameter whose storage is shared keeps its value: the update works on a copy.
    #[test]
    fn leaves_shared_tensors_alone() {
        let device = Backend::Tch.inference_device("cpu").unwrap();
        let h = adamw(0.999, 0.0);
        let p = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
        let kept = p.clone();
        let (updated, _) = h.step(0.1, p, Tensor::<1>::from_floats([1.0, 1.0, 1.0], &device), None);
        h.queue.apply(None);
        assert_eq!(kept.into_data().to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
        let updated = updated.into_data().to_vec::<f32>().unwrap();
        for (u, p) in updated.iter().zip([1.0f32, 2.0, 3.0]) {
            assert!((u - (p - 0.1)).abs() < 1e-5, "{updated:?}");
        }
    }

    /// The norm of several tensors together, as `torch.nn.utils.clip_grad_norm_` computes it.
    #[test]
    fn global_norm_spans_all_tensors() {
        let device = Backend::Tch.inference_device("cpu").unwrap();
        let tensors = [vec![3.0f32, 0.0], vec![0.0, 4.0, 12.0]]
            .map(|v| Tensor::<1>::from_floats(v.as_slice(), &device).try_into_primitive::<LibTorch>().unwrap());
        assert_eq!(global_norm(&tensors).double_value(&[]), 13.0);
        assert_eq!(global_norm(&[]).double_value(&[]), 0.0);
    }
}
