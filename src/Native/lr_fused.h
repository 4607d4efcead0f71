// Shared declarations of the fused-op files (fused_lora.cpp, fused_loss.cpp, checkpoint.cpp, memory.cpp).
#pragma once
#include "lr_common.h"

// True when the libtorch being compiled against is at least major.minor.
#define LR_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace lr_fused {

// Compute orders of the LoRA adapter path (RunLoRA).
constexpr int kAuto = 0, kSequential = 1, kMerged = 2;

bool autocast_enabled(const c10::Device& d);
at::ScalarType autocast_dtype(const c10::Device& d);
at::ScalarType compute_type(const at::Tensor& t, bool autocast, at::ScalarType autocast_type);
at::Tensor as_type(const at::Tensor& t, at::ScalarType dt);
std::string shape_of(const at::Tensor& t);
int choose_forward(int order, bool allowed, int64_t n, int64_t in, int64_t out, int64_t r, bool b_trains);
int choose_backward(int order, bool allowed, int64_t n, int64_t in, int64_t out, int64_t r);

}  // namespace lr_fused
