// Operator profiler (diagnostics for bench/): libtorch's legacy CPU profiler, reduced in the shim to a table of self
// time per operator (optionally per input shapes), so a training step can be broken down without Python.
#include "lr_common.h"
#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define LR_HAS_PROFILER 1
#endif

namespace {
std::string shape_text(const std::vector<std::vector<int64_t>>& shapes) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shapes.size(); i++) {
    if (i) s << ", ";
    s << "[";
    for (size_t j = 0; j < shapes[i].size(); j++) s << (j ? "," : "") << shapes[i][j];
    s << "]";
  }
  s << "]";
  return s.str();
}
}  // namespace

LR_API int lr_profiler_start(int record_shapes) {
#ifdef LR_HAS_PROFILER
  LR_STATUS(torch::autograd::profiler::enableProfilerLegacy(
      torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU, record_shapes != 0)));
#else
  lr_set_error("this libtorch has no legacy profiler header");
  return -1;
#endif
}

// Stops the profiler and writes "self_ms<TAB>total_ms<TAB>calls<TAB>name<TAB>shapes" lines, largest self time first.
LR_API int lr_profiler_stop(const char* path) {
#ifdef LR_HAS_PROFILER
  try {
    auto lists = torch::autograd::profiler::disableProfilerLegacy();
    struct Agg { double self = 0, total = 0; int64_t calls = 0; };
    std::map<std::string, Agg> agg;
    for (auto& list : lists) {
      // Ranges nest per thread (push/pop in order); self = elapsed − children.
      std::map<uint64_t, std::vector<std::pair<const torch::autograd::profiler::LegacyEvent*, double>>> stacks;
      for (auto& e : list) {
        auto& st = stacks[e.threadId()];
        if (e.kind() == torch::autograd::profiler::EventKind::PushRange) {
          st.emplace_back(&e, 0.0);
        } else if (e.kind() == torch::autograd::profiler::EventKind::PopRange && !st.empty()) {
          auto [start, child] = st.back();
          st.pop_back();
          double el = start->cpuElapsedUs(e) / 1000.0;
          std::string key = std::string(start->name()) + "\t" + shape_text(start->shapes());
          auto& a = agg[key];
          a.self += el - child;
          a.total += el;
          a.calls++;
          if (!st.empty()) st.back().second += el;
        }
      }
    }
    std::vector<std::pair<std::string, Agg>> rows(agg.begin(), agg.end());
    std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.self > b.second.self; });
    std::ofstream out(path);
    if (!out) throw std::runtime_error(std::string("cannot write ") + path);
    for (auto& [k, a] : rows) out << a.self << "\t" << a.total << "\t" << a.calls << "\t" << k << "\n";
    return 0;
  }
  LR_CATCH_BLOCK(return -1)
#else
  lr_set_error("this libtorch has no legacy profiler header");
  return -1;
#endif
}
