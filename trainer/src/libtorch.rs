//! What revgen's backend extensions share on LibTorch.

// burn-tch is deprecated upstream after 0.22; it is still our production CUDA backend (DESIGN.md).
#![allow(deprecated)]

use std::ffi::{CStr, c_char};

use burn::backend::libtorch::TchTensor;

/// The message of a failed call into revgen's C++ (`csrc/`), which reports errors as a `strdup`ed string in an
/// out-parameter; `None` when it is null. Frees it.
pub(crate) fn take_error(error: *mut c_char) -> Option<String> {
    if error.is_null() {
        return None;
    }
    // SAFETY: a non-null error is a NUL-terminated string from strdup, freed once here.
    let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { libc::free(error.cast()) };
    Some(message)
}

/// Panics with LibTorch's message if `error` is set, as tch does: the training loop turns an out-of-memory panic
/// into an error that names the settings to lower.
pub(crate) fn check(error: *mut c_char, what: &str) {
    if let Some(message) = take_error(error) {
        panic!("LibTorch failed in {what}: {message}");
    }
}

/// The gradients of `inputs` for the output gradient `grad` (a vector-Jacobian product), computed by LibTorch's
/// autograd through `forward`, which it runs once more on the inputs as leaves of a fresh graph. For operations
/// that LibTorch differentiates with fused kernels but whose backward functions tch does not bind; the product
/// Σ(out ⊙ grad) pulls `grad` back through them.
pub(crate) fn vjp<const N: usize>(
    inputs: [&TchTensor; N],
    grad: &TchTensor,
    forward: impl FnOnce(&[tch::Tensor; N]) -> tch::Tensor,
) -> [TchTensor; N] {
    tch::with_grad(|| {
        let leaves = inputs.map(|t| t.tensor.detach().set_requires_grad(true));
        let objective = (forward(&leaves) * &grad.tensor).sum(None);
        let mut grads = tch::Tensor::run_backward(&[objective], &leaves, false, false).into_iter();
        [(); N].map(|_| TchTensor::new(grads.next().expect("one gradient per input")))
    })
}
