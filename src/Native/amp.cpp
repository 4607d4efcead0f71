// Mixed precision: autocast regions (libtorch's own per-device autocast state) and the loss scaler's unscale step.
#include "lr_fused.h"
#include <ATen/autocast_mode.h>

using namespace lr_fused;

namespace {

c10::DeviceType amp_device(int kind) {
  switch (kind) {
    case 0: return c10::DeviceType::CPU;
    case 1: return c10::DeviceType::CUDA;
    default: throw std::invalid_argument("autocast: device kind must be 0 (cpu) or 1 (cuda), got " + std::to_string(kind));
  }
}

bool get_enabled(c10::DeviceType d) {
#if LR_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(d);
#else
  return d == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}

void set_enabled(c10::DeviceType d, bool on) {
#if LR_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(d, on);
#else
  if (d == c10::DeviceType::CPU) at::autocast::set_cpu_enabled(on);
  else at::autocast::set_enabled(on);
#endif
}

at::ScalarType get_dtype(c10::DeviceType d) {
#if LR_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(d);
#else
  return d == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
#endif
}

void set_dtype(c10::DeviceType d, at::ScalarType t) {
#if LR_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_dtype(d, t);
#else
  if (d == c10::DeviceType::CPU) at::autocast::set_autocast_cpu_dtype(t);
  else at::autocast::set_autocast_gpu_dtype(t);
#endif
}

}  // namespace

// Enters an autocast region: writes the previous enabled flag and dtype (to restore with lr_amp_autocast_exit).
LR_API int lr_amp_autocast_enter(int device_kind, int dtype, int* prev_enabled, int* prev_dtype) {
  LR_STATUS({
    auto d = amp_device(device_kind);
    auto t = (at::ScalarType)dtype;
    TORCH_CHECK(t == at::kBFloat16 || t == at::kHalf, "autocast: the type must be bfloat16 or float16, got ", t);
    *prev_enabled = get_enabled(d) ? 1 : 0;
    *prev_dtype = (int)get_dtype(d);
    set_enabled(d, true);
    set_dtype(d, t);
    at::autocast::increment_nesting();
  });
}

// Leaves an autocast region, restoring the previous state; the cast cache is cleared when the outermost region ends.
LR_API int lr_amp_autocast_exit(int device_kind, int prev_enabled, int prev_dtype) {
  LR_STATUS({
    auto d = amp_device(device_kind);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set_enabled(d, prev_enabled != 0);
    set_dtype(d, (at::ScalarType)prev_dtype);
  });
}

LR_API int lr_amp_is_autocast_enabled(int device_kind) { LR_VALUE(-1, get_enabled(amp_device(device_kind)) ? 1 : 0); }
LR_API int lr_amp_autocast_dtype(int device_kind) { LR_VALUE(-1, (int)get_dtype(amp_device(device_kind))); }

// The loss scaler's unscale: every gradient *= inv_scale in place (null entries skipped); *found_inf = 1 when any
// gradient holds a NaN or an infinity (after unscaling), else 0.
LR_API int lr_amp_unscale_(lr_tensor* grads, int n, double inv_scale, int* found_inf) {
  LR_STATUS({
    at::NoGradGuard ng;
    bool bad = false;
    std::vector<at::Tensor> flags;
    for (int i = 0; i < n; i++) {
      if (grads[i] == nullptr) continue;
      auto g = *grads[i];
      g.mul_(inv_scale);
      flags.push_back(g.isfinite().all().logical_not().reshape({1}));
    }
    if (!flags.empty()) bad = at::cat(flags).any().item<bool>();
    *found_inf = bad ? 1 : 0;
  });
}
