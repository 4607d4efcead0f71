// Common declarations of the lowrank native shim: the C ABI conventions and error capture.
// Every exported function is `extern "C"`, named lr_<area>_<op>, and never lets a C++ exception escape:
// failures store a thread-local message (read with lr_last_error) and return null / a non-zero status.
#pragma once
#include <torch/torch.h>
#include <ATen/ATen.h>
#include <torch/version.h>
#include <string>
#include <cstdint>
#include <vector>

#define LR_API extern "C" __attribute__((visibility("default")))

typedef at::Tensor* lr_tensor;

void lr_set_error(const char* msg);
void lr_clear_error();

#define LR_CATCH_BLOCK(fail)                                                        \
  catch (const c10::Error& e) { lr_set_error(e.what_without_backtrace()); fail; } \
  catch (const std::exception& e) { lr_set_error(e.what()); fail; }               \
  catch (...) { lr_set_error("unknown native exception"); fail; }

// Body returns an at::Tensor; the macro wraps it in an owned heap handle (null on failure).
#define LR_TENSOR(...)                                                             \
  try { return new at::Tensor(__VA_ARGS__); } LR_CATCH_BLOCK(return nullptr)

// Body is a statement list; returns 0 on success, -1 on failure.
#define LR_STATUS(...)                                                             \
  try { __VA_ARGS__; return 0; } LR_CATCH_BLOCK(return -1)

// Body returns a value; `fallback` is returned on failure (caller checks lr_has_error).
#define LR_VALUE(fallback, ...)                                                    \
  try { return __VA_ARGS__; } LR_CATCH_BLOCK(return fallback)

inline const at::Tensor& T(lr_tensor t) {
  if (t == nullptr) throw std::invalid_argument("null tensor handle");
  return *t;
}

inline at::IntArrayRef dims(const int64_t* p, int n) { return at::IntArrayRef(p, (size_t)n); }

// Device encoding shared with C#: kind 0 = cpu, 1 = cuda, 2 = meta; index -1 = default.
inline c10::Device lr_device(int kind, int index) {
  switch (kind) {
    case 0: return c10::Device(c10::DeviceType::CPU);
    case 1: return c10::Device(c10::DeviceType::CUDA, (c10::DeviceIndex)(index < 0 ? 0 : index));
    case 2: return c10::Device(c10::DeviceType::Meta);
    default: throw std::invalid_argument("unknown device kind " + std::to_string(kind));
  }
}

inline at::TensorOptions lr_options(int dtype, int devkind, int devindex, bool requires_grad = false) {
  return at::TensorOptions()
      .dtype((c10::ScalarType)dtype)
      .device(lr_device(devkind, devindex))
      .requires_grad(requires_grad);
}

// Optional tensor: null handle means "none".
inline c10::optional<at::Tensor> opt(lr_tensor t) {
  if (t == nullptr) return c10::nullopt;
  return *t;
}

#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
#define LR_TORCH2 1
#else
#define LR_TORCH2 0
#endif
