// Device memory size for the memory planner. Needs a CUDA build of libtorch (the same condition as the allocator
// statistics in cuda.cpp); elsewhere it reports 0.
#include "lr_fused.h"
#include <torch/cuda.h>
#if defined(LR_WITH_CUDA_ALLOCATOR) && __has_include(<ATen/cuda/CUDAContext.h>)
#include <ATen/cuda/CUDAContext.h>
#define LR_HAS_CUDA_PROPS 1
#else
#define LR_HAS_CUDA_PROPS 0
#endif

// Total memory of a CUDA device in bytes (0 without CUDA).
LR_API int64_t lr_cuda_total_memory(int device) {
  try {
#if LR_HAS_CUDA_PROPS
    if (!torch::cuda::is_available()) return 0;
    return (int64_t)at::cuda::getDeviceProperties(device)->totalGlobalMem;
#else
    (void)device;
    return 0;
#endif
  } LR_CATCH_BLOCK(return -1)
}
