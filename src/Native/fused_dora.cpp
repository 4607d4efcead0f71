// Fused DoRA linear (arXiv 2402.09353, PEFT's form): with W' = W0 + s·B·A, n = ‖W'‖_row (detached), k = m / n,
//   y = x·W0ᵀ + b + (k − 1) ⊙ (x̃·W0ᵀ) + k ⊙ s·(x̃·Aᵀ)·Bᵀ        (x̃ = dropout(x); without dropout y = k ⊙ (x·W'ᵀ) + b).
// The row norm is computed without forming W' (an out×in temporary):
//   ‖W'_i‖² = ‖W0_i‖² + 2s·⟨W0_i·Aᵀ, B_i⟩ + s²·B_i·(A·Aᵀ)·B_iᵀ,
// in float32 (float64 for float64 weights), at out·in·r multiply-adds. Backward: ∂m = Σ_rows dy ⊙ (x̃·W0ᵀ + s·z·Bᵀ) / n,
// ∂B = s·(dy ⊙ k)ᵀ·z, ∂A = s·((dy ⊙ k)·B)ᵀ·x̃, ∂x = dy·W0 + mask ⊙ ((dy ⊙ (k − 1))·W0 + s·((dy ⊙ k)·B)·A)/(1 − p).
#include "lr_fused.h"
#include <torch/csrc/autograd/custom_function.h>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using namespace lr_fused;

namespace {

inline at::Tensor lin(const at::Tensor& w, bool fifo) { return fifo ? w.t() : w; }

at::Tensor draw_mask(const at::Tensor& like, double p, at::Generator* gen) {
  auto mask = at::empty(like.sizes(), like.options().dtype(at::kBool));
  if (p >= 1) return mask.zero_();
  if (gen) mask.bernoulli_(1 - p, *gen);
  else mask.bernoulli_(1 - p);
  return mask;
}

at::Tensor apply_mask(const at::Tensor& x, const at::Tensor& mask, double p) {
  if (!mask.defined()) return x;
  if (p >= 1) return at::zeros_like(x);
  return x.mul(mask).mul_(1.0 / (1.0 - p));
}

}  // namespace

// ‖W0 + s·B·A‖ per output row, without forming the sum. W in Linear layout [out, in].
at::Tensor lr_dora_weight_norm(const at::Tensor& W, const at::Tensor& A, const at::Tensor& B, double s) {
  at::NoGradGuard ng;
  const auto nt = W.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto Wf = as_type(W, nt), Af = as_type(A, nt), Bf = as_type(B, nt);
  auto w2 = Wf.mul(Wf).sum(1);                  // ‖W0_i‖²
  auto cross = at::mm(Wf, Af.t()).mul_(Bf).sum(1);  // ⟨W0_i·Aᵀ, B_i⟩
  auto gram = at::mm(Af, Af.t());                // A·Aᵀ [r, r]
  auto ba2 = at::mm(Bf, gram).mul_(Bf).sum(1);   // ‖(B·A)_i‖²
  return w2.add_(cross, 2 * s).add_(ba2, s * s).clamp_min_(0).sqrt_();
}

namespace {

struct DoraLinearFn : public torch::autograd::Function<DoraLinearFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& W, const c10::optional<at::Tensor>& bias,
                            const at::Tensor& A, const at::Tensor& B, const at::Tensor& m, double s, double p, bool training, at::Generator* gen,
                            bool fifo) {
    const int64_t in = A.size(1), out = B.size(0);
    const bool ac = autocast_enabled(x.device());
    const auto acdt = ac ? autocast_dtype(x.device()) : x.scalar_type();
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto bdt = compute_type(W, ac, acdt), adt = compute_type(A, ac, acdt);
    const bool has_b = bias.has_value() && bias->defined();
    auto x2 = x.reshape({-1, in});
    const bool drop = training && p > 0;
    auto Wl = lin(W, fifo);
    auto n = lr_dora_weight_norm(Wl, A, B, s);           // float32/64, detached
    auto k = as_type(m, n.scalar_type()).div(n);           // m / n
    auto Wc = as_type(Wl, bdt), Ac = as_type(A, adt), Bc = as_type(B, adt);
    auto xb = as_type(x2, bdt);
    auto xa = as_type(x2, adt);
    at::Tensor mask = drop ? draw_mask(xa, p, gen) : at::Tensor();
    auto xd = apply_mask(xa, mask, p);
    auto z = at::mm(xd, Ac.t());                           // [N, r]
    auto q = at::mm(z, Bc.t()).mul_(s);                    // s·z·Bᵀ, adapter type
    auto v = drop ? at::mm(as_type(xd, bdt), Wc.t()) : at::mm(xb, Wc.t());  // x̃·W0ᵀ
    auto u = v.to(n.scalar_type()).add(as_type(q, n.scalar_type()));        // x̃·W'ᵀ, float32 (v stays intact)
    at::Tensor y;
    if (drop) {
      auto base = at::mm(xb, Wc.t()).to(n.scalar_type());
      y = base.add_(u.mul(k)).sub_(v.to(n.scalar_type()));  // x·W0ᵀ + (k−1)⊙v + k⊙q
    } else {
      y = u.mul(k);
    }
    if (has_b) y.add_(as_type(*bias, n.scalar_type()));
    y = y.to(bdt);
    ctx->save_for_backward({x2, z, mask, W, A, B, m, n, u});
    ctx->saved_data["s"] = s;
    ctx->saved_data["p"] = drop ? p : 0.0;
    ctx->saved_data["fifo"] = fifo;
    ctx->saved_data["has_b"] = has_b;
    ctx->saved_data["bias_dt"] = (int64_t)(has_b ? bias->scalar_type() : W.scalar_type());
    ctx->saved_data["bdt"] = (int64_t)bdt;
    ctx->saved_data["adt"] = (int64_t)adt;
    std::vector<int64_t> xs(x.sizes().begin(), x.sizes().end());
    ctx->saved_data["xshape"] = xs;
    std::vector<int64_t> ys(xs);
    ys.back() = out;
    return y.view(ys);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto sv = ctx->get_saved_variables();
    const auto &x2 = sv[0], &z = sv[1], &mask = sv[2], &W = sv[3], &A = sv[4], &B = sv[5], &m = sv[6], &n = sv[7], &u = sv[8];
    const double s = ctx->saved_data["s"].toDouble(), p = ctx->saved_data["p"].toDouble();
    const bool fifo = ctx->saved_data["fifo"].toBool(), has_b = ctx->saved_data["has_b"].toBool();
    const auto bdt = (at::ScalarType)ctx->saved_data["bdt"].toInt(), adt = (at::ScalarType)ctx->saved_data["adt"].toInt();
    auto xshape = ctx->saved_data["xshape"].toIntVector();
    size_t e = 0;
    const bool gx = ctx->needs_input_grad(e++), gW = ctx->needs_input_grad(e++);
    const bool gb = has_b && ctx->needs_input_grad(e++);
    const bool gA = ctx->needs_input_grad(e++), gB = ctx->needs_input_grad(e++), gm = ctx->needs_input_grad(e++);
    variable_list result(11);
    if (!grads[0].defined()) return result;
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    TORCH_CHECK(!gW, "dora_linear: the base weight must be frozen (DoRA's norm is detached; a trainable W0 is not supported)");
    const int64_t out = B.size(0);
    const auto nt = n.scalar_type();
    auto g = grads[0].reshape({-1, out}).to(nt);
    auto k = as_type(m, nt).div(n);
    auto Wl = lin(W, fifo);
    auto Wc = as_type(Wl, bdt), Ac = as_type(A, adt), Bc = as_type(B, adt);
    if (gm) result[5] = g.mul(u).sum(0).div_(n).to(m.scalar_type());
    if (gb) result[2] = g.sum(0).to((at::ScalarType)ctx->saved_data["bias_dt"].toInt());
    auto gk = g.mul(k);                                      // ∂/∂(x̃·W'ᵀ) through k ⊙ (·)
    auto gka = as_type(gk, adt);
    at::Tensor gs;
    if (gx || gA) gs = at::mm(gka, Bc).mul_(s);              // s·(dy⊙k)·B  [N, r]
    if (gB) result[4] = as_type(at::mm(gka.t(), z).mul_(s), B.scalar_type());
    at::Tensor xd;
    if (gA) {
      xd = apply_mask(as_type(x2, adt), mask, p);
      result[3] = as_type(at::mm(gs.t(), xd), A.scalar_type());
    }
    if (gx) {
      at::Tensor dx;
      if (p == 0) {
        dx = at::mm(as_type(gk, bdt), Wc);                   // (dy⊙k)·W0
        dx = dx.to(nt).add_(as_type(at::mm(gs, Ac), nt));
      } else {
        auto dbase = at::mm(as_type(g, bdt), Wc).to(nt);     // dy·W0 (the undropped base)
        auto dv = at::mm(as_type(g.mul(k.sub(1)), bdt), Wc).to(nt).add_(as_type(at::mm(gs, Ac), nt));
        dx = dbase.add_(apply_mask(dv, mask, p));
      }
      result[0] = dx.to(x2.scalar_type()).view(xshape);
    }
    return result;
  }
};

}  // namespace

// weight [out, in] ([in, out] with fan_in_fan_out), bias [out] or null, lora_a [r, in], lora_b [out, r], magnitude [out].
LR_API lr_tensor lr_fused_dora_linear(lr_tensor x, lr_tensor weight, lr_tensor bias, lr_tensor lora_a, lr_tensor lora_b, lr_tensor magnitude,
                                      double scaling, double dropout_p, int training, at::Generator* generator, int fan_in_fan_out) {
  try {
    const auto& X = T(x);
    const auto& W = T(weight);
    const auto& A = T(lora_a);
    const auto& B = T(lora_b);
    const auto& M = T(magnitude);
    c10::optional<at::Tensor> b;
    if (bias) b = *bias;
    TORCH_CHECK(dropout_p >= 0 && dropout_p <= 1, "dora_linear: dropout probability has to be between 0 and 1, but got ", dropout_p);
    TORCH_CHECK(A.dim() == 2 && B.dim() == 2 && A.size(0) == B.size(1), "dora_linear: lora_A must be [r, in] and lora_B [out, r], got ",
                shape_of(A), " and ", shape_of(B));
    const int64_t in = fan_in_fan_out ? W.size(0) : W.size(1), out = fan_in_fan_out ? W.size(1) : W.size(0);
    TORCH_CHECK(W.dim() == 2 && A.size(1) == in && B.size(0) == out, "dora_linear: adapter ", shape_of(A), "/", shape_of(B),
                " does not match the base weight ", shape_of(W));
    TORCH_CHECK(M.dim() == 1 && M.size(0) == out, "dora_linear: the magnitude must be [", out, "], got ", shape_of(M));
    TORCH_CHECK(X.dim() >= 1 && X.size(-1) == in, "dora_linear: input's last dimension is ", X.dim() >= 1 ? X.size(-1) : 0,
                " but in_features is ", in);
    TORCH_CHECK(!(at::GradMode::is_enabled() && W.requires_grad()), "dora_linear: the base weight must be frozen (requires_grad = false)");
    return new at::Tensor(DoraLinearFn::apply(X, W, b, A, B, M, scaling, dropout_p, training != 0, generator, fan_in_fan_out != 0));
  } LR_CATCH_BLOCK(return nullptr)
}

// The detached row norm ‖W0 + s·B·A‖ (float32, float64 for float64 weights), e.g. to initialise or cache DoRA's magnitude.
LR_API lr_tensor lr_fused_dora_weight_norm(lr_tensor weight, lr_tensor lora_a, lr_tensor lora_b, double scaling, int fan_in_fan_out) {
  try {
    const auto& W = T(weight);
    return new at::Tensor(lr_dora_weight_norm(fan_in_fan_out ? W.t() : W, T(lora_a), T(lora_b), scaling));
  } LR_CATCH_BLOCK(return nullptr)
}
