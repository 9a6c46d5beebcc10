// PyTorch's profiler (Kineto) for `revgen train --profile-steps`: the same trace that `torch.profiler` writes
// (every ATen operator on the host with its input shapes, and on CUDA every kernel and copy on the device, linked
// to the operator that launched it), so that a revgen step and a PyTorch step can be read side by side in
// Perfetto, chrome://tracing or TensorBoard. tch binds none of it.
//
// The profiler records the thread that starts it (revgen's training loop runs on one) and the threads LibTorch's
// autograd engine hands work to. Errors come back as a malloc'ed message in `*error`, which the caller frees.

#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstring>
#include <exception>
#include <memory>
#include <set>
#include <string>

namespace {

using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// What `torch.profiler.profile(record_shapes=True)` records.
ProfilerConfig config() { return ProfilerConfig(ProfilerState::KINETO, /*report_input_shapes=*/true); }

std::set<ActivityType> activities(bool cuda) {
    std::set<ActivityType> set{ActivityType::CPU};
    if (cuda) set.insert(ActivityType::CUDA);
    return set;
}

}  // namespace

extern "C" {

// Starts recording the host's operators, and the device's kernels when `cuda`.
void revgen_profiler_start(bool cuda, char **error) {
    try {
        torch::autograd::profiler::prepareProfiler(config(), activities(cuda));
        torch::autograd::profiler::enableProfiler(config(), activities(cuda));
    } catch (const std::exception &e) {
        *error = strdup(e.what());
    }
}

// Stops recording and writes the Chrome trace (JSON) to `path`.
void revgen_profiler_stop(const char *path, char **error) {
    try {
        torch::autograd::profiler::disableProfiler()->save(path);
    } catch (const std::exception &e) {
        *error = strdup(e.what());
    }
}

// Opens a named span in the trace (a user annotation, like `torch.profiler.record_function`) and returns it for
// `revgen_scope_end`; null when nothing records.
at::RecordFunction *revgen_scope_begin(const char *name) {
    auto scope = std::make_unique<at::RecordFunction>(at::RecordScope::USER_SCOPE);
    if (!scope->isActive()) return nullptr;
    scope->before(std::string_view(name));
    return scope.release();
}

// Closes a span from `revgen_scope_begin` (its destructor records the end); null is ignored.
void revgen_scope_end(at::RecordFunction *scope) { delete scope; }

}  // extern "C"
