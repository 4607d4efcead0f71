// Activation (gradient) checkpointing: lr_checkpoint runs a managed function without recording a graph, keeps only its
// inputs (optionally offloaded to host memory), and in backward re-runs the function with the same random state and
// back-propagates through the recomputed graph. The function's trainable parameters are passed as extra inputs, so
// their gradients come back through this node (the outer engine accumulates them once) and the recomputation happens
// even when no activation input requires grad (the first block's input, from a frozen embedding).
#include "lr_fused.h"
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/autograd.h>
#include <mutex>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The managed function: receives n input handles (it owns them), writes up to max_out output handles (the shim owns
// them) and returns how many, or -1 after lr_checkpoint_set_error.
typedef int (*lr_checkpoint_fn)(void* state, lr_tensor* inputs, int n, lr_tensor* outputs, int max_out);

namespace {

thread_local std::string g_callback_error;

variable_list call_managed(lr_checkpoint_fn fn, void* state, const variable_list& inputs, int max_out) {
  std::vector<lr_tensor> in(inputs.size());
  for (size_t i = 0; i < inputs.size(); i++) in[i] = new at::Tensor(inputs[i]);
  std::vector<lr_tensor> out((size_t)max_out, nullptr);
  g_callback_error.clear();
  int k = fn(state, in.data(), (int)in.size(), out.data(), max_out);
  if (k < 0) throw std::runtime_error(g_callback_error.empty() ? "checkpointed function failed" : g_callback_error);
  if (k > max_out) throw std::runtime_error("checkpointed function returned more outputs than allowed");
  variable_list result;
  for (int i = 0; i < k; i++) {
    if (out[i] == nullptr) throw std::runtime_error("checkpointed function returned a null tensor");
    result.push_back(*out[i]);
    delete out[i];
  }
  return result;
}

struct RngState {
  at::Tensor cpu, cuda;
  int cuda_index = -1;
};

RngState capture_rng(const variable_list& inputs) {
  RngState s;
  {
    auto gen = at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CPU));
    std::lock_guard<std::mutex> lock(gen.mutex());
    s.cpu = gen.get_state();
  }
  for (const auto& t : inputs)
    if (t.defined() && t.is_cuda()) {
      auto gen = at::globalContext().defaultGenerator(t.device());
      std::lock_guard<std::mutex> lock(gen.mutex());
      s.cuda = gen.get_state();
      s.cuda_index = t.device().index();
      break;
    }
  return s;
}

void restore_rng(const RngState& s) {
  {
    auto gen = at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CPU));
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(s.cpu);
  }
  if (s.cuda.defined()) {
    auto gen = at::globalContext().defaultGenerator(c10::Device(c10::DeviceType::CUDA, (c10::DeviceIndex)s.cuda_index));
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(s.cuda);
  }
}

// States whose node is gone: the managed side frees them (lr_checkpoint_take_released). Nodes can be destroyed inside
// calls that must not re-enter managed code (a tensor free without a GC transition), so no callback is made here.
std::mutex g_released_mutex;
std::vector<void*> g_released;

// Owns the managed state; queues it for release when the last node referencing it goes.
struct ManagedState {
  lr_checkpoint_fn fn;
  void* state;
  ManagedState(lr_checkpoint_fn f, void* s) : fn(f), state(s) {}
  ManagedState(const ManagedState&) = delete;
  ManagedState& operator=(const ManagedState&) = delete;
  ~ManagedState() {
    try {
      std::lock_guard<std::mutex> lock(g_released_mutex);
      g_released.push_back(state);
    } catch (...) {
    }
  }
};

// Keeps the managed state alive inside an IValue capsule of the node's saved data.
struct Holder : torch::CustomClassHolder {
  std::shared_ptr<ManagedState> managed;
  explicit Holder(std::shared_ptr<ManagedState> m) : managed(std::move(m)) {}
};

struct CheckpointFn : public torch::autograd::Function<CheckpointFn> {
  // inputs: activations first (n_act of them), then trainable parameters.
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, int64_t n_act, std::shared_ptr<ManagedState> managed, bool offload,
                               int64_t max_out) {
    variable_list ins(inputs.begin(), inputs.end());
    auto rng = capture_rng(ins);
    auto outs = call_managed(managed->fn, managed->state, variable_list(ins.begin(), ins.begin() + n_act), (int)max_out);
    variable_list to_save;
    std::vector<bool> offloaded;
    for (int64_t i = 0; i < n_act; i++) {
      const auto& t = ins[i];
      bool off = offload && t.defined() && !t.device().is_cpu();
      to_save.push_back(off ? t.to(c10::Device(c10::DeviceType::CPU), /*non_blocking=*/false, /*copy=*/true) : t);
      offloaded.push_back(off);
    }
    ctx->save_for_backward(to_save);
    std::vector<int64_t> devs;
    for (int64_t i = 0; i < n_act; i++) devs.push_back(ins[i].defined() && ins[i].is_cuda() ? ins[i].device().index() : -1);
    ctx->saved_data["devs"] = devs;
    ctx->saved_data["offloaded"] = offloaded;
    std::vector<bool> rg;
    for (int64_t i = 0; i < n_act; i++) rg.push_back(ins[i].requires_grad());
    ctx->saved_data["requires_grad"] = rg;
    ctx->saved_data["rng_cpu"] = rng.cpu;
    if (rng.cuda.defined()) {
      ctx->saved_data["rng_cuda"] = rng.cuda;
      ctx->saved_data["rng_cuda_index"] = (int64_t)rng.cuda_index;
    }
    ctx->saved_data["n_params"] = (int64_t)(ins.size() - n_act);
    ctx->saved_data["max_out"] = max_out;
    // The managed state lives as long as this node: a capsule IValue keeps the shared pointer.
    ctx->saved_data["managed"] = at::IValue::make_capsule(c10::make_intrusive<Holder>(managed));
    ctx->saved_data["params"] = std::vector<at::Tensor>(ins.begin() + n_act, ins.end());
    return outs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto devs = ctx->saved_data["devs"].toIntVector();
    auto rg = ctx->saved_data["requires_grad"].toBoolList();
    const int64_t n_params = ctx->saved_data["n_params"].toInt();
    const int64_t max_out = ctx->saved_data["max_out"].toInt();
    auto holder = ctx->saved_data["managed"].toCapsule();
    auto managed = static_cast<Holder*>(holder.get())->managed;
    const size_t n_act = saved.size();
    variable_list acts;
    for (size_t i = 0; i < n_act; i++) {
      auto t = saved[i];
      if (t.defined() && devs[i] >= 0 && t.device().is_cpu()) t = t.to(c10::Device(c10::DeviceType::CUDA, (c10::DeviceIndex)devs[i]));
      if (t.defined()) {
        t = t.detach();
        if (rg.get(i)) t.requires_grad_(true);
      }
      acts.push_back(t);
    }
    RngState recorded;
    recorded.cpu = ctx->saved_data["rng_cpu"].toTensor();
    if (ctx->saved_data.count("rng_cuda")) {
      recorded.cuda = ctx->saved_data["rng_cuda"].toTensor();
      recorded.cuda_index = (int)ctx->saved_data["rng_cuda_index"].toInt();
    }
    auto now = capture_rng(acts);
    variable_list outs;
    restore_rng(recorded);
    try {
      at::AutoGradMode enable(true);
      outs = call_managed(managed->fn, managed->state, acts, (int)max_out);
    } catch (...) {
      restore_rng(now);
      throw;
    }
    restore_rng(now);
    // Differentiate the recomputed outputs with respect to the activations that require grad and the parameters.
    variable_list roots, root_grads, wrt;
    std::vector<int64_t> wrt_index;
    for (size_t i = 0; i < outs.size() && i < grads.size(); i++)
      if (outs[i].requires_grad() && grads[i].defined()) {
        roots.push_back(outs[i]);
        root_grads.push_back(grads[i]);
      }
    for (size_t i = 0; i < n_act; i++)
      if (acts[i].defined() && acts[i].requires_grad()) {
        wrt.push_back(acts[i]);
        wrt_index.push_back((int64_t)i);
      }
    // Parameters: the graph's own inputs after the activations.
    std::vector<at::Tensor> params;
    {
      auto p = ctx->saved_data["params"].toTensorVector();
      params.assign(p.begin(), p.end());
    }
    for (size_t j = 0; j < params.size(); j++)
      if (params[j].requires_grad()) {
        wrt.push_back(params[j]);
        wrt_index.push_back((int64_t)(n_act + j));
      }
    variable_list result(n_act + n_params + 4);
    if (roots.empty() || wrt.empty()) return result;
    auto g = torch::autograd::grad(roots, wrt, root_grads, /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
    for (size_t i = 0; i < wrt.size(); i++) result[wrt_index[i]] = g[i];
    return result;
  }
};

}  // namespace

// Sets the message the shim reports when the managed function returns -1 (called by the managed callback).
LR_API void lr_checkpoint_set_error(const char* message) { g_callback_error = message ? message : "checkpointed function failed"; }

// Moves up to cap states whose nodes are gone (fn will not be called with them again) into out; returns how many.
LR_API int lr_checkpoint_take_released(void** out, int cap) {
  std::lock_guard<std::mutex> lock(g_released_mutex);
  int k = 0;
  while (k < cap && !g_released.empty()) {
    out[k++] = g_released.back();
    g_released.pop_back();
  }
  return k;
}

// Runs fn(inputs[0..n_act)) without a graph and returns its outputs (at most max_out) through one autograd node that
// recomputes it in backward. inputs[n_act..n) are the trainable parameters fn uses. When nothing can call fn any more,
// state is queued for lr_checkpoint_take_released. offload: keep CUDA inputs in host memory until backward.
LR_API int lr_checkpoint(lr_checkpoint_fn fn, void* state, lr_tensor* inputs, int n, int n_act, int offload, lr_tensor* outputs, int max_out) {
  auto managed = std::make_shared<ManagedState>(fn, state);
  LR_STATUS({
    TORCH_CHECK(fn != nullptr, "checkpoint: null function");
    TORCH_CHECK(n_act >= 1 && n_act <= n, "checkpoint: needs at least one activation input");
    TORCH_CHECK(max_out >= 1, "checkpoint: max_out must be >= 1");
    std::vector<at::Tensor> ins;
    for (int i = 0; i < n; i++) ins.push_back(T(inputs[i]));
    auto outs = CheckpointFn::apply(at::TensorList(ins), (int64_t)n_act, managed, offload != 0, (int64_t)max_out);
    for (size_t i = 0; i < outs.size(); i++) outputs[i] = new at::Tensor(outs[i]);
    for (size_t i = outs.size(); i < (size_t)max_out; i++) outputs[i] = nullptr;
  });
}
