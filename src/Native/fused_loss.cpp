// Chunked linear cross-entropy: loss = CE(h·Wᵀ + b, target) without materialising the [N, V] logits. Rows are taken
// chunk by chunk: logits of the chunk (in the matmul's type, then float32), log-sum-exp, the picked logit, and, when a
// gradient is needed, the chunk's gradient (softmax − one-hot)/count · W right away, so backward only scales stored
// gradients by the incoming scalar. Peak extra memory: one [chunk, V] float32 block plus ∂h [N, H].
#include "lr_fused.h"
#include <torch/csrc/autograd/custom_function.h>
#include <limits>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using namespace lr_fused;

namespace {

struct LinearCrossEntropyFn : public torch::autograd::Function<LinearCrossEntropyFn> {
  // reduction: 1 mean over non-ignored rows, 2 sum. needs: bit 0 h, 1 W, 2 b.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& h, const at::Tensor& W, const c10::optional<at::Tensor>& bias,
                            const at::Tensor& target, int64_t ignore_index, int64_t chunk, int64_t reduction, int64_t needs) {
    const bool gh = needs & 1, gW = needs & 2, gb = needs & 4;
    const bool has_b = bias.has_value() && bias->defined();
    const bool ac = autocast_enabled(h.device());
    const auto acdt = ac ? autocast_dtype(h.device()) : h.scalar_type();
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto cdt = compute_type(W, ac, acdt);
    const auto ldt = cdt == at::kDouble ? at::kDouble : at::kFloat;  // logits and loss: float32, float64 for float64
    const int64_t n = h.size(0), V = W.size(0);
    auto hc = as_type(h, cdt);
    auto Wc = as_type(W, cdt);
    auto valid = target.ne(ignore_index);
    const int64_t count = valid.sum().item<int64_t>();
    const double denom = reduction == 1 ? (double)count : 1.0;
    auto loss = at::zeros({}, h.options().dtype(ldt));
    at::Tensor dh, dW, db;
    if (gh) dh = at::empty({n, h.size(1)}, h.options().dtype(cdt));
    if (gW) dW = at::zeros({V, W.size(1)}, W.options().dtype(ldt));
    if (gb) db = at::zeros({V}, W.options().dtype(ldt));
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
      const int64_t len = std::min(chunk, n - c0);
      auto hx = hc.narrow(0, c0, len);
      auto logits = has_b ? at::addmm(as_type(*bias, cdt), hx, Wc.t()) : at::mm(hx, Wc.t());
      logits = logits.to(ldt);
      auto t = target.narrow(0, c0, len);
      auto v = valid.narrow(0, c0, len);
      const int64_t chunk_valid = v.sum().item<int64_t>();
      auto safe_t = chunk_valid == len ? t.unsqueeze(1) : t.masked_fill(v.logical_not(), 0).unsqueeze(1);
      // log-softmax in place: one vectorised kernel (max, sum of exp, subtract), no [chunk, V] temporaries.
      at::_log_softmax_out(logits, logits, 1, false);
      auto picked = logits.gather(1, safe_t).squeeze(1);
      loss.sub_(chunk_valid == len ? picked.sum() : (picked * v).sum());
      if (gh || gW || gb) {
        // ∂loss/∂logits = (softmax − onehot)·valid / denom, in place in the logits block; the 1/denom is applied by
        // the gradient products (their alpha) rather than by a pass over the block.
        auto g = logits.exp_();
        g.scatter_add_(1, safe_t, at::full({len, 1}, -1.0, g.options()));
        if (chunk_valid != len) g.mul_(v.unsqueeze(1).to(ldt));
        if (gb) db.add_(g.sum(0), 1.0 / denom);
        auto gc = as_type(g, cdt);
        if (gh) {
          auto rows = dh.narrow(0, c0, len);
          at::addmm_out(rows, rows, gc, Wc, 0, 1.0 / denom);
        }
        if (gW) dW.addmm_(g.t(), as_type(hx, ldt), 1, 1.0 / denom);
      }
    }
    if (reduction == 1) loss.div_((double)count);  // count 0 gives NaN, as cross_entropy's mean does
    ctx->save_for_backward({dh, dW, db});
    ctx->saved_data["hdt"] = (int64_t)h.scalar_type();
    ctx->saved_data["wdt"] = (int64_t)W.scalar_type();
    ctx->saved_data["bdt"] = (int64_t)(has_b ? bias->scalar_type() : W.scalar_type());
    ctx->saved_data["has_b"] = has_b;
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const bool has_b = ctx->saved_data["has_b"].toBool();
    variable_list result(8);
    if (!grads[0].defined()) return result;
    auto g = grads[0];
    size_t e = 0;
    const bool gh = ctx->needs_input_grad(e++), gW = ctx->needs_input_grad(e++);
    const bool gb = has_b && ctx->needs_input_grad(e++);
    if (gh && saved[0].defined()) result[0] = saved[0].mul(g.to(saved[0].scalar_type())).to((at::ScalarType)ctx->saved_data["hdt"].toInt());
    if (gW && saved[1].defined()) result[1] = saved[1].mul(g).to((at::ScalarType)ctx->saved_data["wdt"].toInt());
    if (gb && saved[2].defined()) result[2] = saved[2].mul(g).to((at::ScalarType)ctx->saved_data["bdt"].toInt());
    return result;
  }
};

}  // namespace

// hidden [N, H], weight [V, H], bias [V] or null, target [N] int64. reduction 1 mean (over targets != ignore_index),
// 2 sum. chunk: rows per block (<= 0: about 2^24 / V rows, at least 1).
LR_API lr_tensor lr_fused_linear_cross_entropy(lr_tensor hidden, lr_tensor weight, lr_tensor bias, lr_tensor target, int64_t ignore_index,
                                               int64_t chunk, int64_t reduction) {
  try {
    const auto& h = T(hidden);
    const auto& W = T(weight);
    const auto& t = T(target);
    c10::optional<at::Tensor> b;
    if (bias) b = *bias;
    TORCH_CHECK(reduction == 1 || reduction == 2, "linear_cross_entropy: reduction must be mean or sum");
    TORCH_CHECK(h.dim() == 2 && W.dim() == 2 && h.size(1) == W.size(1), "linear_cross_entropy: hidden must be [N, H] and weight [V, H], got ",
                shape_of(h), " and ", shape_of(W));
    TORCH_CHECK(t.dim() == 1 && t.size(0) == h.size(0), "linear_cross_entropy: target must be [N] = [", h.size(0), "], got ", shape_of(t));
    TORCH_CHECK(t.scalar_type() == at::kLong, "linear_cross_entropy: target must be int64, got ", t.scalar_type());
    TORCH_CHECK(!b || (b->dim() == 1 && b->size(0) == W.size(0)), "linear_cross_entropy: bias must be [", W.size(0), "]");
    const int64_t V = W.size(0);
    if (chunk <= 0) chunk = std::max<int64_t>(1, ((int64_t)1 << 24) / std::max<int64_t>(1, V));
    auto tm = t.masked_fill(t.eq(ignore_index), 0);
    const auto tmax = t.numel() > 0 ? tm.max().item<int64_t>() : 0;
    const auto tmin = t.numel() > 0 ? tm.min().item<int64_t>() : 0;
    TORCH_CHECK(tmax < V && tmin >= 0, "linear_cross_entropy: target values must be in [0, ", V, ") or ignore_index ",
                ignore_index);
    int64_t needs = 0;
    if (at::GradMode::is_enabled()) needs = (h.requires_grad() ? 1 : 0) | (W.requires_grad() ? 2 : 0) | (b && b->requires_grad() ? 4 : 0);
    return new at::Tensor(LinearCrossEntropyFn::apply(h, W, b, t, ignore_index, chunk, reduction, needs));
  } LR_CATCH_BLOCK(return nullptr)
}
