// Random numbers: global seed, explicit generators (with state save/restore), random factories and in-place fills.
#include "lr_common.h"
#include <ATen/CPUGeneratorImpl.h>
#include <mutex>

typedef at::Generator* lr_generator;

static c10::optional<at::Generator> G(lr_generator g) {
  if (g == nullptr) return c10::nullopt;
  return *g;
}

LR_API int lr_random_manual_seed(uint64_t seed) { LR_STATUS(torch::manual_seed(seed)); }

LR_API lr_generator lr_random_generator_new(uint64_t seed, int dk, int di) {
  try {
    auto dev = lr_device(dk, di);
    if (dev.is_cuda()) {
      // CUDA generators come from the CUDA hooks so that this file needs no CUDA headers.
      auto gen = at::globalContext().defaultGenerator(dev).clone();
      gen.set_current_seed(seed);
      return new at::Generator(gen);
    }
    return new at::Generator(at::detail::createCPUGenerator(seed));
  } LR_CATCH_BLOCK(return nullptr)
}

// The process-wide default generator of a device (a new handle aliasing it).
LR_API lr_generator lr_random_default_generator(int dk, int di) {
  try { return new at::Generator(at::globalContext().defaultGenerator(lr_device(dk, di))); } LR_CATCH_BLOCK(return nullptr)
}

LR_API void lr_random_generator_free(lr_generator g) { try { delete g; } catch (...) {} }

LR_API int lr_random_generator_manual_seed(lr_generator g, uint64_t seed) {
  LR_STATUS({
    std::lock_guard<std::mutex> lock(g->mutex());
    g->set_current_seed(seed);
  });
}
LR_API uint64_t lr_random_generator_initial_seed(lr_generator g) { LR_VALUE(0, g->current_seed()); }

LR_API lr_tensor lr_random_generator_get_state(lr_generator g) {
  try {
    std::lock_guard<std::mutex> lock(g->mutex());
    return new at::Tensor(g->get_state());
  } LR_CATCH_BLOCK(return nullptr)
}
LR_API int lr_random_generator_set_state(lr_generator g, lr_tensor state) {
  LR_STATUS({
    std::lock_guard<std::mutex> lock(g->mutex());
    g->set_state(T(state));
  });
}

LR_API lr_tensor lr_random_rand(const int64_t* shape, int n, lr_generator g, int dtype, int dk, int di, int rg) {
  LR_TENSOR(at::rand(dims(shape, n), G(g), lr_options(dtype, dk, di, false)).requires_grad_(rg != 0));
}
LR_API lr_tensor lr_random_randn(const int64_t* shape, int n, lr_generator g, int dtype, int dk, int di, int rg) {
  LR_TENSOR(at::randn(dims(shape, n), G(g), lr_options(dtype, dk, di, false)).requires_grad_(rg != 0));
}
LR_API lr_tensor lr_random_randint(int64_t low, int64_t high, const int64_t* shape, int n, lr_generator g, int dtype, int dk, int di) {
  LR_TENSOR(at::randint(low, high, dims(shape, n), G(g), lr_options(dtype, dk, di, false)));
}
LR_API lr_tensor lr_random_randperm(int64_t n, lr_generator g, int dtype, int dk, int di) {
  LR_TENSOR(at::randperm(n, G(g), lr_options(dtype, dk, di, false)));
}
LR_API lr_tensor lr_random_multinomial(lr_tensor probs, int64_t num_samples, int replacement, lr_generator g) {
  LR_TENSOR(at::multinomial(T(probs), num_samples, replacement != 0, G(g)));
}
LR_API lr_tensor lr_random_bernoulli(lr_tensor probs, lr_generator g) { LR_TENSOR(at::bernoulli(T(probs), G(g))); }

// In-place fills; they run without recording autograd history (like torch.nn.init).
LR_API int lr_random_normal_(lr_tensor t, double mean, double std, lr_generator g) {
  LR_STATUS({ at::NoGradGuard ng; auto x = T(t); x.normal_(mean, std, G(g)); });
}
LR_API int lr_random_uniform_(lr_tensor t, double from, double to, lr_generator g) {
  LR_STATUS({ at::NoGradGuard ng; auto x = T(t); x.uniform_(from, to, G(g)); });
}
LR_API int lr_random_bernoulli_(lr_tensor t, double p, lr_generator g) {
  LR_STATUS({ at::NoGradGuard ng; auto x = T(t); x.bernoulli_(p, G(g)); });
}
