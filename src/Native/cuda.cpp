// CUDA queries. On a CPU-only libtorch these report "no CUDA" and the memory queries return 0.
#include "lr_common.h"
#include <torch/cuda.h>
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && defined(LR_WITH_CUDA_ALLOCATOR)
#include <c10/cuda/CUDACachingAllocator.h>
#define LR_HAS_CUDA_ALLOC 1
#else
#define LR_HAS_CUDA_ALLOC 0
#endif

LR_API int lr_cuda_is_available() { LR_VALUE(-1, torch::cuda::is_available() ? 1 : 0); }
LR_API int lr_cuda_device_count() { LR_VALUE(-1, (int)torch::cuda::device_count()); }
LR_API int lr_cuda_cudnn_is_available() { LR_VALUE(-1, torch::cuda::cudnn_is_available() ? 1 : 0); }
LR_API int lr_cuda_synchronize(int device) { LR_STATUS(torch::cuda::synchronize(device)); }
LR_API int lr_cuda_manual_seed_all(uint64_t seed) { LR_STATUS(torch::cuda::manual_seed_all(seed)); }

// kind: 0 = allocated now, 1 = peak allocated, 2 = reserved now, 3 = peak reserved.
LR_API int64_t lr_cuda_memory_stat(int device, int kind) {
  try {
#if LR_HAS_CUDA_ALLOC
    if (!torch::cuda::is_available()) return 0;
    auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
    const size_t agg = 0;  // StatType::AGGREGATE
    switch (kind) {
      case 0: return s.allocated_bytes[agg].current;
      case 1: return s.allocated_bytes[agg].peak;
      case 2: return s.reserved_bytes[agg].current;
      case 3: return s.reserved_bytes[agg].peak;
      default: throw std::invalid_argument("unknown memory statistic");
    }
#else
    return 0;
#endif
  } LR_CATCH_BLOCK(return -1)
}

LR_API int lr_cuda_reset_peak_memory_stats(int device) {
  LR_STATUS({
#if LR_HAS_CUDA_ALLOC
    if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::resetPeakStats(device);
#endif
  });
}

LR_API int lr_cuda_empty_cache() {
  LR_STATUS({
#if LR_HAS_CUDA_ALLOC
    if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  });
}

LR_API int lr_cuda_has_allocator_stats() { return LR_HAS_CUDA_ALLOC; }
