// LibTorch operations the trainer needs that tch does not bind. Two multi-tensor ones (its generator skips every
// `_foreach*` and `_fused_adam*` operator): the global gradient norm and AdamW over all parameters at once, one
// call each per optimizer update instead of one small kernel per parameter tensor and operation: ~1,500 launches
// per update at 124M on CUDA, and on the CPU one vectorised pass instead of ten (trainer/src/adamw/libtorch.rs).
// And LayerNorm's fused backward kernel (trainer/src/layer_norm.rs).
//
// Tensors cross as tch's handles (`tensor` in torch-sys's torch_api.h is a `torch::Tensor *`). Errors come back
// as a malloc'ed message in `*error`, which the caller frees.

#include <ATen/core/Tensor.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/native_layer_norm.h>
#include <ATen/ops/native_layer_norm_backward.h>
#include <ATen/ops/stack.h>

#include <cstring>
#include <exception>
#include <vector>

namespace {

std::vector<at::Tensor> tensor_list(const at::Tensor *const *tensors, size_t n) {
    std::vector<at::Tensor> list;
    list.reserve(n);
    for (size_t i = 0; i < n; ++i) list.push_back(*tensors[i]);
    return list;
}

char *message(const std::exception &e) { return strdup(e.what()); }

}  // namespace

extern "C" {

// The L2 norm of all `n` tensors together (`torch.nn.utils.clip_grad_norm_`'s total norm), as a new 0-d f32 tensor
// on their device: no copy to the host, so nothing waits for the device. `n` must be at least 1.
at::Tensor *revgen_global_norm(const at::Tensor *const *tensors, size_t n, char **error) {
    try {
        auto norms = at::_foreach_norm(tensor_list(tensors, n), 2);
        return new at::Tensor(at::linalg_vector_norm(at::stack(norms), 2));
    } catch (const std::exception &e) {
        *error = message(e);
        return nullptr;
    }
}

// One AdamW update of `n` parameters in place (PyTorch's `fused=True`): the parameters, their moments and the
// gradients (which it divides by `grad_scale` first, if given) are updated; `step` is the update's number (from 1),
// a 0-d f32 tensor on the parameters' device, and the same for all of them.
void revgen_fused_adamw(const at::Tensor *const *params, const at::Tensor *const *grads,
                        const at::Tensor *const *exp_avgs, const at::Tensor *const *exp_avg_sqs, size_t n,
                        const at::Tensor *step, double lr, double beta1, double beta2, double weight_decay,
                        double eps, const at::Tensor *grad_scale, char **error) {
    try {
        std::vector<at::Tensor> steps(n, *step);
        std::optional<at::Tensor> scale;
        if (grad_scale != nullptr) scale = *grad_scale;
        at::_fused_adamw_(tensor_list(params, n), tensor_list(grads, n), tensor_list(exp_avgs, n),
                          tensor_list(exp_avg_sqs, n), {}, steps, lr, beta1, beta2, weight_decay, eps,
                          /*amsgrad=*/false, /*maximize=*/false, scale, /*found_inf=*/std::nullopt);
    } catch (const std::exception &e) {
        *error = message(e);
    }
}

// The gradients of LayerNorm over the last dimension of `x` (with scale `gamma` and shift `beta`) for the output
// gradient `grad`, by LibTorch's fused backward kernel, into `out` (dx, dgamma, dbeta: new tensors). The kernel
// needs each row's mean and 1/std, which the fused forward recomputes (one pass over `x`).
void revgen_layer_norm_backward(const at::Tensor *grad, const at::Tensor *x, const at::Tensor *gamma,
                                const at::Tensor *beta, double eps, at::Tensor **out, char **error) {
    try {
        std::vector<int64_t> normalized{x->size(-1)};
        auto stats = at::native_layer_norm(*x, normalized, *gamma, *beta, eps);
        auto grads = at::native_layer_norm_backward(grad->to(x->scalar_type()), *x, normalized, std::get<1>(stats),
                                                    std::get<2>(stats), *gamma, *beta, {true, true, true});
        out[0] = new at::Tensor(std::get<0>(grads));
        out[1] = new at::Tensor(std::get<1>(grads));
        out[2] = new at::Tensor(std::get<2>(grads));
    } catch (const std::exception &e) {
        *error = message(e);
    }
}

}  // extern "C"
