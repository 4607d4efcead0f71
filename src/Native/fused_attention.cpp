// Attention on the CPU for libtorch without scaled_dot_product_attention (1.13): one autograd node that runs
// softmax(q kᵀ·scale + mask) v per (batch, head) in parallel, each product a single-threaded GEMM on one core.
// libtorch 1.13 (without MKL) runs a float32 bmm as a serial loop of small BLAS calls, each split over the threads
// (measured: 44 GFLOP/s for [32,256,256]×[32,256,64] on the 2-core build machine, a quarter of the machine's GEMM
// peak), and the composed formula adds separate scale, mask and softmax passes over the [B,H,L,S] scores. Here each
// (batch, head) does scale and mask inside its first GEMM (the mask is the GEMM's addend), the softmax in place while
// the block is in cache, and backward saves only the weights P:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = scale·dS K,  dK = scale·dSᵀ Q.
// Used for float32/float64 CPU inputs of shape [B,H,L,E] without dropout or autocast; anything else keeps the formula
// (bfloat16 too: per-head oneDNN bf16 products measured 20 % slower per training step than its batched bmm).
#include "lr_fused.h"
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <atomic>
#include <limits>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

std::atomic<bool> g_enabled{true};

struct AttentionFn : public torch::autograd::Function<AttentionFn> {
  // bias: the additive mask (causal pattern and/or the caller's mask) expanded to [B,H,L,S], or none.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const c10::optional<at::Tensor>& bias_opt, double scale) {
    const at::Tensor bias = bias_opt.has_value() ? *bias_opt : at::Tensor();
    const int64_t B = q.size(0), H = q.size(1), L = q.size(2), S = k.size(2), Ev = v.size(3);
    auto P = at::empty({B, H, L, S}, q.options());
    auto O = at::empty({B, H, L, Ev}, q.options());
    const bool has_bias = bias.defined();
    at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) {
        const int64_t b = i / H, h = i % H;
        auto Pi = P[b][h], Oi = O[b][h];
        // scores = bias + scale·q kᵀ in one GEMM (beta 0 ignores Pi's contents), softmax in place, then P v.
        at::addmm_out(Pi, has_bias ? bias[b][h] : Pi, q[b][h], k[b][h].t(), has_bias ? 1 : 0, scale);
        at::_softmax_out(Pi, Pi, 1, false);
        at::mm_out(Oi, Pi, v[b][h]);
      }
    });
    ctx->save_for_backward({q, k, v, P});
    ctx->saved_data["scale"] = scale;
    return O;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &P = saved[3];
    const double scale = ctx->saved_data["scale"].toDouble();
    variable_list result(5);
    if (!grads[0].defined()) return result;
    const auto dO = grads[0];
    const int64_t B = q.size(0), H = q.size(1), L = q.size(2), S = k.size(2);
    const bool gq = ctx->needs_input_grad(0), gk = ctx->needs_input_grad(1), gv = ctx->needs_input_grad(2);
    auto dq = gq ? at::empty(q.sizes(), q.options()) : at::Tensor();
    auto dk = gk ? at::empty(k.sizes(), k.options()) : at::Tensor();
    auto dv = gv ? at::empty(v.sizes(), v.options()) : at::Tensor();
    auto dS = (gq || gk) ? at::empty({B, H, L, S}, q.options()) : at::Tensor();
    at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) {
        const int64_t b = i / H, h = i % H;
        auto Pi = P[b][h], dOi = dO[b][h];
        if (gv) { auto o = dv[b][h]; at::mm_out(o, Pi.t(), dOi); }                       // dV = Pᵀ dO
        if (!gq && !gk) continue;
        auto dSi = dS[b][h];
        at::mm_out(dSi, dOi, v[b][h].t());                                               // dP = dO Vᵀ
        at::_softmax_backward_data_out(dSi, dSi, Pi, 1, Pi.scalar_type());               // P ⊙ (dP − rowsum(dP ⊙ P))
        if (gq) { auto o = dq[b][h]; at::addmm_out(o, o, dSi, k[b][h], 0, scale); }      // dQ = scale·dS K
        if (gk) { auto o = dk[b][h]; at::addmm_out(o, o, dSi.t(), q[b][h], 0, scale); }  // dK = scale·dSᵀ Q
      }
    });
    if (gq) result[0] = dq;
    if (gk) result[1] = dk;
    if (gv) result[2] = dv;
    return result;
  }
};

}  // namespace

// The attention kernel applies (else the caller runs the composed formula): CPU, float32/float64, 4-D [B,H,L,E] with
// equal B and H, no dropout, no autocast, and a mask (if any) without gradient, broadcastable to [B,H,L,S].
bool lr_attention_cpu_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask, double p) {
  if (!g_enabled.load() || p > 0) return false;
  if (!q.device().is_cpu() || !k.device().is_cpu() || !v.device().is_cpu()) return false;
  const auto dt = q.scalar_type();
  if ((dt != at::kFloat && dt != at::kDouble) || k.scalar_type() != dt || v.scalar_type() != dt) return false;
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return false;
  if (k.size(0) != q.size(0) || v.size(0) != q.size(0) || k.size(1) != q.size(1) || v.size(1) != q.size(1)) return false;
  if (q.size(3) != k.size(3) || k.size(2) != v.size(2) || q.size(2) == 0 || k.size(2) == 0) return false;
  if (lr_fused::autocast_enabled(q.device())) return false;
  if (mask.has_value() && mask->defined()) {
    if (mask->requires_grad() || !mask->device().is_cpu()) return false;
    if (mask->scalar_type() != at::kBool && !mask->is_floating_point()) return false;
    if (mask->dim() > 4) return false;
  }
  return true;
}

// The mask as an addend of the scores, shared with the formula in nn.cpp: the causal pattern (−inf above the diagonal,
// top-left aligned: row r sees keys ≤ r), 0/−inf for a bool mask (true = keep), a float mask as given; undefined: none.
at::Tensor lr_attention_bias(const at::Tensor& q, int64_t L, int64_t S, const c10::optional<at::Tensor>& mask, bool causal) {
  const double ninf = -std::numeric_limits<double>::infinity();
  if (causal) return at::zeros({L, S}, q.options()).masked_fill(at::ones({L, S}, q.options().dtype(at::kBool)).triu(1), ninf);
  if (!mask.has_value() || !mask->defined()) return at::Tensor();
  if (mask->scalar_type() == at::kBool) return at::where(*mask, at::zeros({}, q.options()), at::full({}, ninf, q.options()));
  return *mask;
}

at::Tensor lr_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask, bool causal,
                            double scale) {
  const int64_t L = q.size(2), S = k.size(2);
  auto b = lr_attention_bias(q, L, S, mask, causal);
  c10::optional<at::Tensor> bias;
  if (b.defined()) bias = b.to(q.scalar_type()).expand({q.size(0), q.size(1), L, S});
  return AttentionFn::apply(q, k, v, bias, scale);
}

// Test and bench switch: 0 makes lr_nn_sdpa use the composed formula on libtorch 1.13 even where the kernel applies.
LR_API int lr_nn_attention_cpu_kernel(int enable) {
  if (enable >= 0) g_enabled = enable != 0;
  return g_enabled.load() ? 1 : 0;
}
