// Host-memory accounting: a counting wrapper around libtorch's CPU allocator (bytes live now, peak since the last
// reset, allocation count), so tests and benchmarks can measure what a forward pass keeps alive for backward (the
// saved activations) and the peak of a training step on the CPU. Installed on demand; tensors allocated before keep
// their own deleters, tensors allocated through the wrapper stay valid after it is uninstalled.
#include "lr_fused.h"
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <c10/core/CPUAllocator.h>

namespace {

struct CountingAllocator final : public c10::Allocator {
  c10::Allocator* inner = nullptr;
  mutable std::atomic<int64_t> current{0}, peak{0}, count{0};
  // The data pointer is the context (so raw_allocate/raw_deallocate work, as oneDNN's scratch buffers use them); the
  // inner allocation and its size are found by address.
  mutable std::mutex mutex;
  mutable std::unordered_map<void*, std::pair<c10::DataPtr, size_t>> live;

  static void Free(void* p);

  c10::DataPtr wrap(size_t n) const {
    c10::DataPtr d = inner->allocate(n);
    void* data = d.get();
    auto device = d.device();
    if (data == nullptr) return d;  // zero-byte allocations: nothing to count
    {
      std::lock_guard<std::mutex> lock(mutex);
      live.emplace(data, std::make_pair(std::move(d), n));
    }
    int64_t now = current.fetch_add((int64_t)n) + (int64_t)n;
    int64_t p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    count.fetch_add(1);
    return c10::DataPtr(data, data, &Free, device);
  }

  // libtorch 1.x declares allocate const, 2.x non-const; defining both compiles against either (one overrides).
  c10::DataPtr allocate(size_t n) const { return wrap(n); }
  c10::DataPtr allocate(size_t n) { return wrap(n); }
  c10::DeleterFnPtr raw_deleter() const override { return &Free; }
  // Pure virtual in libtorch 2.x (used by Allocator::clone); an extra method on 1.x.
  void copy_data(void* dest, const void* src, std::size_t count_) const { std::memcpy(dest, src, count_); }
};

CountingAllocator g_counting;

void CountingAllocator::Free(void* p) {
  c10::DataPtr inner;
  {
    std::lock_guard<std::mutex> lock(g_counting.mutex);
    auto it = g_counting.live.find(p);
    if (it == g_counting.live.end()) return;
    g_counting.current.fetch_sub((int64_t)it->second.second);
    inner = std::move(it->second.first);
    g_counting.live.erase(it);
  }
  // inner goes out of scope here and frees the allocation through its own deleter, outside the lock.
}
bool g_installed = false;

}  // namespace

// enable 1: route CPU allocations through the counter (resets the counters); 0: restore the previous allocator.
LR_API int lr_memory_track_cpu(int enable) {
  LR_STATUS({
    if (enable && !g_installed) {
      g_counting.inner = c10::GetCPUAllocator();
      g_counting.current = 0;
      g_counting.peak = 0;
      g_counting.count = 0;
      c10::SetCPUAllocator(&g_counting, /*priority=*/100);
      g_installed = true;
    } else if (!enable && g_installed) {
      c10::SetCPUAllocator(g_counting.inner, /*priority=*/100);
      g_installed = false;
    }
  });
}

// kind: 0 bytes live now (allocated through the counter and not yet freed), 1 peak since the last reset, 2 number
// of allocations, 3 whether the counter is installed.
LR_API int64_t lr_memory_cpu_stat(int kind) {
  switch (kind) {
    case 0: return g_counting.current.load();
    case 1: return g_counting.peak.load();
    case 2: return g_counting.count.load();
    case 3: return g_installed ? 1 : 0;
    default: lr_set_error("unknown memory statistic"); return -1;
  }
}

// Sets the peak to the bytes live now.
LR_API void lr_memory_reset_cpu_peak() { g_counting.peak = g_counting.current.load(); }
