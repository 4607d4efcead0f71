// Error capture, version and threading.
#include "lr_common.h"
#include <ATen/Parallel.h>

static thread_local std::string g_last_error;
static thread_local bool g_has_error = false;

void lr_set_error(const char* msg) { g_last_error = msg ? msg : "(null)"; g_has_error = true; }
void lr_clear_error() { g_last_error.clear(); g_has_error = false; }

// Returns the last error message of this thread, or null when none. The pointer stays valid until the
// next failing call on this thread; the message is cleared by lr_core_clear_error.
LR_API const char* lr_core_last_error() { return g_has_error ? g_last_error.c_str() : nullptr; }
LR_API void lr_core_clear_error() { lr_clear_error(); }

LR_API const char* lr_core_torch_version() {
  static std::string v = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                         std::to_string(TORCH_VERSION_PATCH);
  return v.c_str();
}

LR_API int lr_core_get_num_threads() { LR_VALUE(-1, at::get_num_threads()); }
LR_API int lr_core_set_num_threads(int n) { LR_STATUS(at::set_num_threads(n)); }
LR_API int lr_core_get_num_interop_threads() { LR_VALUE(-1, at::get_num_interop_threads()); }

LR_API const char* lr_core_parallel_info() {
  static thread_local std::string s;
  try { s = at::get_parallel_info(); return s.c_str(); } LR_CATCH_BLOCK(return nullptr)
}

// Raises a C++ exception of the given kind; used by tests to prove that no exception escapes the ABI.
LR_API int lr_core_throw_test(int kind) {
  LR_STATUS({
    if (kind == 0) TORCH_CHECK(false, "test c10::Error");
    if (kind == 1) throw std::runtime_error("test std::runtime_error");
    throw 42;
  });
}
