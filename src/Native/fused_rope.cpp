// Rotary position embedding (rotate-half form, LLaMA/GPT-NeoX) as one autograd node: out = x·cos + rotate_half(x)·sin
// with rotate_half(x) = [−x₂, x₁]. The composed ops (narrow, neg, cat, two products, a sum) make three [.., D] temporaries
// in forward and as many in backward; here forward is x·cos plus two in-place addcmul on the halves, and backward the
// transpose of the rotation: ∂x₁ = g₁·cos₁ + g₂·sin₂, ∂x₂ = g₂·cos₂ − g₁·sin₁. cos and sin are constants (no gradient).
#include "lr_fused.h"
#include <torch/csrc/autograd/custom_function.h>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

struct RopeFn : public torch::autograd::Function<RopeFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    const int64_t h = x.size(-1) / 2;
    auto out = x.mul(cos);
    out.narrow(-1, 0, h).addcmul_(x.narrow(-1, h, h), sin.narrow(-1, 0, h), -1);
    out.narrow(-1, h, h).addcmul_(x.narrow(-1, 0, h), sin.narrow(-1, h, h), 1);
    ctx->save_for_backward({cos, sin});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &cos = saved[0], &sin = saved[1];
    variable_list result(3);
    if (!grads[0].defined()) return result;
    const auto& g = grads[0];
    const int64_t h = g.size(-1) / 2;
    auto dx = g.mul(cos);
    dx.narrow(-1, 0, h).addcmul_(g.narrow(-1, h, h), sin.narrow(-1, h, h), 1);
    dx.narrow(-1, h, h).addcmul_(g.narrow(-1, 0, h), sin.narrow(-1, 0, h), -1);
    result[0] = dx;
    return result;
  }
};

}  // namespace

// x [..., D] with D even; cos and sin broadcastable to x, of x's type, without gradient.
LR_API lr_tensor lr_nn_rope(lr_tensor x, lr_tensor cos, lr_tensor sin) {
  try {
    const auto &X = T(x), &C = T(cos), &S = T(sin);
    TORCH_CHECK(X.dim() >= 1 && X.size(-1) % 2 == 0, "rotary embedding: the last dimension must be even, got shape ", lr_fused::shape_of(X));
    TORCH_CHECK(C.size(-1) == X.size(-1) && S.size(-1) == X.size(-1), "rotary embedding: cos ", lr_fused::shape_of(C), " and sin ",
                lr_fused::shape_of(S), " must end in the input's last dimension ", X.size(-1));
    TORCH_CHECK(!C.requires_grad() && !S.requires_grad(), "rotary embedding: cos and sin must not require gradients");
    // The output must have x's shape (cos/sin broadcast to it, not beyond).
    bool fits = C.dim() <= X.dim() && S.dim() <= X.dim();
    for (int64_t i = 1; fits && i <= X.dim(); i++) {
      const int64_t n = X.size(-i);
      if (i <= C.dim() && C.size(-i) != n && C.size(-i) != 1) fits = false;
      if (i <= S.dim() && S.size(-i) != n && S.size(-i) != 1) fits = false;
    }
    TORCH_CHECK(fits, "rotary embedding: cos ", lr_fused::shape_of(C), " and sin ", lr_fused::shape_of(S),
                " must broadcast to the input's shape ", lr_fused::shape_of(X));
    return new at::Tensor(RopeFn::apply(X, C.to(X.scalar_type()), S.to(X.scalar_type())));
  } LR_CATCH_BLOCK(return nullptr)
}
