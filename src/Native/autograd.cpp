// Autograd: backward, gradients, grad mode, detach.
#include "lr_common.h"
#include <torch/csrc/autograd/autograd.h>

LR_API int lr_autograd_backward(lr_tensor t, lr_tensor grad, int retain_graph, int create_graph) {
  LR_STATUS({
    const auto& x = T(t);
    at::Tensor g = grad ? *grad : at::Tensor();
    x.backward(g, retain_graph != 0, create_graph != 0);
  });
}

// Writes a new handle of t.grad into *out, or null when the gradient is undefined.
LR_API int lr_autograd_get_grad(lr_tensor t, lr_tensor* out) {
  LR_STATUS({
    const auto& g = T(t).grad();
    *out = g.defined() ? new at::Tensor(g) : nullptr;
  });
}

// Sets t.grad (null clears it, as PyTorch's zero_grad(set_to_none=True)).
LR_API int lr_autograd_set_grad(lr_tensor t, lr_tensor g) {
  LR_STATUS({
    auto x = T(t);
    x.mutable_grad() = g ? *g : at::Tensor();
  });
}

LR_API int lr_autograd_zero_grad(lr_tensor t) {
  LR_STATUS({
    auto x = T(t);
    auto& g = x.mutable_grad();
    if (g.defined()) {
      g = g.detach();
      g.zero_();
    }
  });
}

LR_API int lr_autograd_retain_grad(lr_tensor t) { LR_STATUS(T(t).retain_grad()); }
LR_API lr_tensor lr_autograd_detach(lr_tensor t) { LR_TENSOR(T(t).detach()); }
LR_API lr_tensor lr_autograd_detach_(lr_tensor t) { LR_TENSOR(T(t).detach_()); }

LR_API int lr_autograd_is_grad_enabled() { LR_VALUE(-1, at::GradMode::is_enabled() ? 1 : 0); }
LR_API int lr_autograd_set_grad_enabled(int enabled) { LR_STATUS(at::GradMode::set_enabled(enabled != 0)); }

// torch.autograd.grad: gradients of sum(outputs * grad_outputs) with respect to inputs.
// results must have room for ninputs handles; an unused input yields null when allow_unused.
LR_API int lr_autograd_grad(lr_tensor* outputs, int noutputs, lr_tensor* grad_outputs, lr_tensor* inputs, int ninputs,
                            int retain_graph, int create_graph, int allow_unused, lr_tensor* results) {
  LR_STATUS({
    std::vector<at::Tensor> outs, gouts, ins;
    for (int i = 0; i < noutputs; i++) {
      outs.push_back(T(outputs[i]));
      gouts.push_back(grad_outputs && grad_outputs[i] ? *grad_outputs[i] : at::Tensor());
    }
    for (int i = 0; i < ninputs; i++) ins.push_back(T(inputs[i]));
    auto r = torch::autograd::grad(outs, ins, gouts, retain_graph < 0 ? c10::optional<bool>() : c10::optional<bool>(retain_graph != 0),
                                   create_graph != 0, allow_unused != 0);
    for (int i = 0; i < ninputs; i++) results[i] = r[i].defined() ? new at::Tensor(r[i]) : nullptr;
  });
}
