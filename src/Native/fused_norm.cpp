// RMS normalisation with a hand-written backward: the same forward as the composed ops (float32 computation for
// half/bfloat16 inputs, cast back before the weight), but the node saves only the float32 input and the row scale r
// (composed ops also keep x² for the mean's backward): ∂x = r·ĝ − x·r³·mean(ĝ·x) with ĝ = g·w.
#include "lr_fused.h"
#include <torch/csrc/autograd/custom_function.h>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

struct RmsNormFn : public torch::autograd::Function<RmsNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const c10::optional<at::Tensor>& weight, std::vector<int64_t> red,
                            double eps) {
    const bool low = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
    auto xc = low ? x.to(at::kFloat) : x;
    auto r = xc.pow(2).mean(red, /*keepdim=*/true).add(eps).rsqrt();
    auto y = xc.mul(r);
    if (low) y = y.to(x.scalar_type());
    const bool has_w = weight.has_value() && weight->defined();
    const bool w_grad = has_w && weight->requires_grad();
    ctx->save_for_backward({xc, r, has_w ? *weight : at::Tensor(), w_grad ? y : at::Tensor()});
    ctx->saved_data["red"] = red;
    ctx->saved_data["xdt"] = (int64_t)x.scalar_type();
    ctx->saved_data["has_w"] = has_w;
    return has_w ? weight->mul(y) : y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& r = saved[1];
    const auto& w = saved[2];
    const auto& y = saved[3];
    auto red = ctx->saved_data["red"].toIntVector();
    const auto xdt = (at::ScalarType)ctx->saved_data["xdt"].toInt();
    const bool has_w = ctx->saved_data["has_w"].toBool();
    variable_list result(4);
    if (!grads[0].defined()) return result;
    const auto& g = grads[0];
    const bool gx = ctx->needs_input_grad(0), gw = has_w && ctx->needs_input_grad(1);
    if (gw) {
      // ∂w = Σ over the non-normalised dims of g·y.
      std::vector<int64_t> lead;
      for (int64_t d = 0; d < g.dim() - (int64_t)red.size(); d++) lead.push_back(d);
      auto gy = g.mul(y);
      result[1] = lead.empty() ? gy : gy.sum(lead);
      result[1] = result[1].to(w.scalar_type());
    }
    if (gx) {
      auto gh = has_w ? g.mul(w) : g;  // gradient with respect to y (in y's type), then float32
      gh = gh.to(xc.scalar_type());
      auto dot = gh.mul(xc).mean(red, /*keepdim=*/true);
      auto dx = gh.mul(r).sub_(xc.mul(r.pow(3)).mul_(dot));
      result[0] = dx.to(xdt);
    }
    return result;
  }
};

}  // namespace

// Same contract as lr_nn_rms_norm (normalized over the last n dims, optional weight, eps or the type's epsilon).
at::Tensor lr_fused_rms_norm_impl(const at::Tensor& x, const c10::optional<at::Tensor>& weight, int n, double eps) {
  std::vector<int64_t> red(n);
  for (int i = 0; i < n; i++) red[i] = x.dim() - n + i;
  return RmsNormFn::apply(x, weight, red, eps);
}
