// Caching CPU allocator: large CPU tensor buffers (>= 256 KiB) are kept after they are freed and handed out again for
// the next request of the same size class, the way libtorch's CUDA caching allocator works. A training step allocates
// the same activation and gradient shapes every step; without the cache each multi-megabyte buffer is a fresh mmap
// whose pages the kernel faults in and zeroes on first touch (measured on the 2-core build machine: ~650 k minor faults
// and ~2 s of system time in six LoRA steps of the bench model). Size classes round up by at most 1/8 (≤ 12.5 % waste);
// the cache holds at most `limit` bytes of free blocks (older blocks are released past it) and is emptied on an
// allocation failure before retrying. Small buffers go straight to the underlying allocator (malloc's bins handle them).
#include "lr_fused.h"
#include <c10/core/CPUAllocator.h>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kMinCached = 256 * 1024;

struct CachingCpuAllocator final : public c10::Allocator {
  c10::Allocator* inner = nullptr;
  mutable std::mutex mutex;
  mutable std::unordered_map<size_t, std::vector<c10::DataPtr>> free_blocks;  // size class -> free inner blocks
  mutable std::unordered_map<void*, std::pair<c10::DataPtr, size_t>> live;   // data -> (inner block, size class)
  mutable std::vector<std::pair<size_t, void*>> free_order;                    // release order (oldest first)
  mutable size_t cached = 0, limit = 0;
  mutable int64_t hits = 0, misses = 0;
  bool enabled = false;

  static void Free(void* p);

  static size_t size_class(size_t n) {
    size_t step = 64 * 1024;
    for (size_t top = n >> 3; step * 2 <= top;) step <<= 1;  // the largest power of two ≤ n/8 (at least 64 KiB)
    return (n + step - 1) / step * step;
  }

  // Frees cached blocks (oldest first) until at most `keep` bytes stay; the inner deleters run outside the lock.
  void trim_locked(size_t keep, std::vector<c10::DataPtr>& out) const {
    size_t i = 0;
    while (cached > keep && i < free_order.size()) {
      auto [cls, data] = free_order[i++];
      auto& list = free_blocks[cls];
      for (size_t j = 0; j < list.size(); j++)
        if (list[j].get() == data) {
          out.push_back(std::move(list[j]));
          list.erase(list.begin() + (long)j);
          cached -= cls;
          break;
        }
    }
    free_order.erase(free_order.begin(), free_order.begin() + (long)i);
  }

  c10::DataPtr get(size_t n) const {
    if (!enabled || n < kMinCached) return inner->allocate(n);
    const size_t cls = size_class(n);
    c10::DataPtr block;
    bool from_cache = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      auto it = free_blocks.find(cls);
      if (it != free_blocks.end() && !it->second.empty()) {
        block = std::move(it->second.back());
        it->second.pop_back();
        cached -= cls;
        void* data = block.get();
        for (size_t j = free_order.size(); j-- > 0;)
          if (free_order[j].second == data) { free_order.erase(free_order.begin() + (long)j); break; }
        hits++;
        from_cache = true;
      }
    }
    if (!block) {
      try {
        block = inner->allocate(cls);
      } catch (const c10::Error&) {
        std::vector<c10::DataPtr> released;
        { std::lock_guard<std::mutex> lock(mutex); trim_locked(0, released); }
        released.clear();
        block = inner->allocate(cls);  // a second failure propagates as libtorch's out-of-memory error
      }
    }
    void* data = block.get();
    auto device = block.device();
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!from_cache) misses++;
      live.emplace(data, std::make_pair(std::move(block), cls));
    }
    return c10::DataPtr(data, data, &Free, device);
  }

  c10::DataPtr allocate(size_t n) const { return get(n); }
  c10::DataPtr allocate(size_t n) { return get(n); }
  // raw_allocate/raw_deallocate (oneDNN scratch buffers) need a deleter that works from the data pointer alone.
  c10::DeleterFnPtr raw_deleter() const override { return &Free; }
  void copy_data(void* dest, const void* src, std::size_t count_) const { std::memcpy(dest, src, count_); }
};

CachingCpuAllocator g_cache;
bool g_cache_installed = false;

void CachingCpuAllocator::Free(void* p) {
  std::vector<c10::DataPtr> released;
  {
    std::lock_guard<std::mutex> lock(g_cache.mutex);
    auto it = g_cache.live.find(p);
    if (it == g_cache.live.end()) {
      // A small pass-through block released through raw_deallocate: the allocator below frees it.
      if (auto d = g_cache.inner ? g_cache.inner->raw_deleter() : nullptr) d(p);
      return;
    }
    auto cls = it->second.second;
    auto block = std::move(it->second.first);
    g_cache.live.erase(it);
    if (!g_cache.enabled || cls > g_cache.limit) {
      released.push_back(std::move(block));
    } else {
      g_cache.free_blocks[cls].push_back(std::move(block));
      g_cache.free_order.emplace_back(cls, p);
      g_cache.cached += cls;
      if (g_cache.cached > g_cache.limit) g_cache.trim_locked(g_cache.limit / 2, released);
    }
  }
  // released goes out of scope here: the inner blocks are freed outside the lock.
}

}  // namespace

// enable 1: cache large CPU buffers (installs the allocator once, above the allocator in use; limit_bytes caps the
// free bytes kept); 0: stop caching and release the cached blocks (blocks in use are freed normally later).
LR_API int lr_memory_cpu_cache(int enable, int64_t limit_bytes) {
  LR_STATUS({
    std::vector<c10::DataPtr> released;
    if (enable && !g_cache_installed) {
      g_cache.inner = c10::GetCPUAllocator();
      c10::SetCPUAllocator(&g_cache, /*priority=*/100);
      g_cache_installed = true;
    }
    std::lock_guard<std::mutex> lock(g_cache.mutex);
    g_cache.enabled = enable != 0 && g_cache_installed;
    g_cache.limit = limit_bytes > 0 ? (size_t)limit_bytes : 0;
    if (!g_cache.enabled) g_cache.trim_locked(0, released);
    else g_cache.trim_locked(g_cache.limit, released);
  });
}

// Releases every cached free block (torch.cpu.empty_cache).
LR_API int lr_memory_cpu_cache_empty() {
  LR_STATUS({
    std::vector<c10::DataPtr> released;
    std::lock_guard<std::mutex> lock(g_cache.mutex);
    g_cache.trim_locked(0, released);
  });
}

// kind: 0 cached free bytes, 1 hits (requests served from the cache), 2 misses (new blocks), 3 whether caching is on,
// 4 the size class of `n` bytes (0 below the caching threshold).
LR_API int64_t lr_memory_cpu_cache_stat(int kind, int64_t n) {
  std::lock_guard<std::mutex> lock(g_cache.mutex);
  switch (kind) {
    case 0: return (int64_t)g_cache.cached;
    case 1: return g_cache.hits;
    case 2: return g_cache.misses;
    case 3: return g_cache.enabled ? 1 : 0;
    case 4: return n < (int64_t)kMinCached ? 0 : (int64_t)CachingCpuAllocator::size_class((size_t)n);
    default: lr_set_error("unknown cache statistic"); return -1;
  }
}
