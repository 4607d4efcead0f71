// Fused LoRA paths with hand-written autograd (custom torch::autograd::Function):
//   lr_fused_lora_linear        y = x·W0ᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ in one call. The dropout mask is drawn once and
//                               reused in backward; only what the gradients need is saved (x when A or W trains, the
//                               r-wide z = drop(x)·Aᵀ when B trains, the 1-byte mask when dropout is active). With A
//                               frozen (LoRA-FA) x is not saved at all: the adapter's backward needs only z, and the
//                               frozen base matmul needs only W0 for ∂x.
//   lr_fused_lora_linear_shared up to three projections of one input (q/k/v, gate/up): one matmul for the stacked
//                               adapter down-projections, ∂x accumulated in one buffer.
// Compute order (RunLoRA, arXiv 2312.03415): the adapter path can run sequentially, x·W0ᵀ + s·(x·Aᵀ)·Bᵀ, or merged,
// x·(W0 + s·B·A)ᵀ; the backward's ∂x likewise as dy·W0 + s·(dy·B)·A or dy·(W0 + s·B·A). lr_lora_choose_order picks
// the cheaper one per direction from the shapes (multiply-adds plus a memory-pass term); merged forms are used only
// when they are numerically equivalent: no active dropout, base and adapter of the same float32/float64 type and no
// autocast.
#include "lr_common.h"
#include "lr_fused.h"
#include <torch/csrc/autograd/custom_function.h>
#include <ATen/autocast_mode.h>
#include <sstream>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace lr_fused {

bool autocast_enabled(const c10::Device& d) {
#if LR_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(d.type());
#else
  if (d.is_cpu()) return at::autocast::is_cpu_enabled();
  if (d.is_cuda()) return at::autocast::is_enabled();
  return false;
#endif
}

at::ScalarType autocast_dtype(const c10::Device& d) {
#if LR_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(d.type());
#else
  return d.is_cuda() ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

// The type a matmul of a float tensor runs in: the autocast type when autocast is on for its device (float64
// excepted, as autocast does), else its own.
at::ScalarType compute_type(const at::Tensor& t, bool ac, at::ScalarType acdt) {
  if (ac && t.is_floating_point() && t.scalar_type() != at::kDouble) return acdt;
  return t.scalar_type();
}

at::Tensor as_type(const at::Tensor& t, at::ScalarType dt) { return t.scalar_type() == dt ? t : t.to(dt); }

std::string shape_of(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

// Cost of one element-wise pass in multiply-add units (reads and writes of an out×in matrix when forming W0 + s·B·A).
constexpr double kPassCost = 8.0;

int choose(int order, bool allowed, double sequential, double merged) {
  if (!allowed) return kSequential;
  if (order == kSequential || order == kMerged) return order;
  return merged < sequential ? kMerged : kSequential;
}

// Forward: sequential costs N·r·(in+out) (down and up projections); merged costs out·in·r + a pass over out×in to
// form W0 + s·B·A, plus N·in·r for z when B trains (needed for ∂B either way).
int choose_forward(int order, bool allowed, int64_t n, int64_t in, int64_t out, int64_t r, bool b_trains) {
  double seq = (double)n * r * (in + out);
  double mer = (double)out * in * r + kPassCost * out * in + (b_trains ? (double)n * in * r : 0.0);
  return choose(order, allowed, seq, mer);
}

// Backward ∂x: sequential adds (s·dy·B)·A, N·r·in; merged forms W0 + s·B·A again, out·in·r + a pass.
int choose_backward(int order, bool allowed, int64_t n, int64_t in, int64_t out, int64_t r) {
  double seq = (double)n * r * in;
  double mer = (double)out * in * r + kPassCost * out * in;
  return choose(order, allowed, seq, mer);
}

}  // namespace lr_fused

using namespace lr_fused;

namespace {

// Draws the keep-mask of dropout with probability p (true = kept), in the element order of the unfused path.
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

// Weight in Linear layout [out, in] (a GPT-2 Conv1D stores [in, out]).
inline at::Tensor lin(const at::Tensor& w, bool fifo) { return fifo ? w.t() : w; }

struct LoraLinearFn : public torch::autograd::Function<LoraLinearFn> {
  // needs: bit 0 x, 1 W, 2 b, 3 A, 4 B (which gradients the caller's graph will need). The bias is optional: an absent
  // bias is no autograd input, so the edge index of A and B depends on it.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& W, const c10::optional<at::Tensor>& bias,
                            const at::Tensor& A, const at::Tensor& B, double s, double p, bool training, at::Generator* gen, int64_t order,
                            bool fifo, int64_t needs) {
    const int64_t r = A.size(0), in = A.size(1), out = B.size(0);
    const bool gx = needs & 1, gW = needs & 2, gA = needs & 8, gB = needs & 16;
    const bool ac = autocast_enabled(x.device());
    const auto acdt = ac ? autocast_dtype(x.device()) : x.scalar_type();
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto bdt = compute_type(W, ac, acdt), adt = compute_type(A, ac, acdt);
    const bool has_b = bias.has_value() && bias->defined();
    auto x2 = x.reshape({-1, in});
    const int64_t n = x2.size(0);
    const bool drop = training && p > 0;
    auto xa = as_type(x2, adt);
    at::Tensor mask = drop ? draw_mask(xa, p, gen) : at::Tensor();
    auto xd = apply_mask(xa, mask, p);
    auto Wc = as_type(W, bdt), Ac = as_type(A, adt), Bc = as_type(B, adt);
    auto xb = as_type(x2, bdt);
    const bool exact = !drop && !ac && bdt == adt && (bdt == at::kFloat || bdt == at::kDouble);
    const int fwd = choose_forward((int)order, exact, n, in, out, r, gB);
    at::Tensor y, z;
    if (fwd == kMerged) {
      auto Wm = fifo ? at::addmm(Wc, Ac.t(), Bc.t(), 1, s) : at::addmm(Wc, Bc, Ac, 1, s);
      y = has_b ? at::addmm(as_type(*bias, bdt), xb, lin(Wm, fifo).t()) : at::mm(xb, lin(Wm, fifo).t());
      // z for ∂B: recomputed in backward from the saved x when A trains (x is saved anyway), else computed now.
      if (gB && !gA) z = at::mm(xd, Ac.t());
    } else {
      y = has_b ? at::addmm(as_type(*bias, bdt), xb, lin(Wc, fifo).t()) : at::mm(xb, lin(Wc, fifo).t());
      z = at::mm(xd, Ac.t());
      if (adt == bdt) y.addmm_(z, Bc.t(), 1, s);
      else y.add_(at::mm(z, Bc.t()), s);  // fp32 sum rounded once to the base type, as PEFT's promotion does
    }
    // Saved: x only where a gradient needs it (∂A, ∂W), z for ∂B, the mask for ∂x and ∂A through dropout.
    ctx->save_for_backward({(gA || gW) ? x2 : at::Tensor(), gB ? z : at::Tensor(), (drop && (gx || gA)) ? mask : at::Tensor(), W, A, B});
    ctx->saved_data["s"] = s;
    ctx->saved_data["p"] = drop ? p : 0.0;
    ctx->saved_data["order"] = order;
    ctx->saved_data["fifo"] = fifo;
    ctx->saved_data["ac"] = ac;
    ctx->saved_data["xdt"] = (int64_t)x.scalar_type();
    ctx->saved_data["bdt"] = (int64_t)bdt;
    ctx->saved_data["adt"] = (int64_t)adt;
    ctx->saved_data["bias_dt"] = (int64_t)(has_b ? bias->scalar_type() : W.scalar_type());
    ctx->saved_data["has_b"] = has_b;
    std::vector<int64_t> xs(x.sizes().begin(), x.sizes().end());
    ctx->saved_data["xshape"] = xs;
    std::vector<int64_t> ys(xs);
    ys.back() = out;
    return y.view(ys);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x2 = saved[0];
    auto z = saved[1];
    const auto& mask = saved[2];
    const auto& W = saved[3];
    const auto& A = saved[4];
    const auto& B = saved[5];
    const double s = ctx->saved_data["s"].toDouble(), p = ctx->saved_data["p"].toDouble();
    const int order = (int)ctx->saved_data["order"].toInt();
    const bool fifo = ctx->saved_data["fifo"].toBool(), has_b = ctx->saved_data["has_b"].toBool();
    const auto bdt = (at::ScalarType)ctx->saved_data["bdt"].toInt(), adt = (at::ScalarType)ctx->saved_data["adt"].toInt();
    const auto xdt = (at::ScalarType)ctx->saved_data["xdt"].toInt();
    const bool ac = ctx->saved_data["ac"].toBool();
    auto xshape = ctx->saved_data["xshape"].toIntVector();
    const int64_t r = A.size(0), in = A.size(1), out = B.size(0);
    size_t e = 0;
    const bool gx = ctx->needs_input_grad(e++), gW = ctx->needs_input_grad(e++);
    const bool gb = has_b && ctx->needs_input_grad(e++);
    const bool gA = ctx->needs_input_grad(e++), gB = ctx->needs_input_grad(e++);
    variable_list result(12);
    if (!grads[0].defined()) return result;
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    auto dy = grads[0].reshape({-1, out});
    const int64_t n = dy.size(0);
    auto dyb = as_type(dy, bdt), dya = as_type(dy, adt);
    auto Wc = as_type(W, bdt), Ac = as_type(A, adt), Bc = as_type(B, adt);
    at::Tensor xd;
    auto need_xd = [&]() {
      if (!xd.defined()) xd = apply_mask(as_type(x2, adt), mask, p);
      return xd;
    };
    at::Tensor gs;  // s·dy·B, [N, r]
    if (gx || gA) gs = at::mm(dya, Bc).mul_(s);
    if (gB) {
      if (!z.defined()) z = at::mm(need_xd(), Ac.t());
      result[4] = as_type(at::mm(dya.t(), z).mul_(s), B.scalar_type());
    }
    if (gA) result[3] = as_type(at::mm(gs.t(), need_xd()), A.scalar_type());
    if (gW) {
      auto dW = at::mm(dyb.t(), as_type(x2, bdt));
      result[1] = as_type(fifo ? dW.t() : dW, W.scalar_type());
    }
    if (gb) result[2] = as_type(dy.sum(0), (at::ScalarType)ctx->saved_data["bias_dt"].toInt());
    if (gx) {
      const bool exact = p == 0 && !ac && bdt == adt && (bdt == at::kFloat || bdt == at::kDouble);
      at::Tensor dx;
      if (choose_backward(order, exact, n, in, out, r) == kMerged) {
        auto Wm = fifo ? at::addmm(Wc, Ac.t(), Bc.t(), 1, s) : at::addmm(Wc, Bc, Ac, 1, s);
        dx = at::mm(dyb, lin(Wm, fifo));
      } else {
        dx = at::mm(dyb, lin(Wc, fifo));
        if (p == 0 && adt == bdt) dx.addmm_(gs, Ac);
        else {
          auto da = at::mm(gs, Ac);
          if (p > 0) da = apply_mask(da, mask, p);
          dx.add_(da);  // mixed-type add: computed in float32, rounded once into dx
        }
      }
      result[0] = as_type(dx, xdt).view(xshape);
    }
    return result;
  }
};

// Up to three projections of one shared input. params holds, per projection, W, [b], A, B (b only where has_b has
// its bit); every tensor in it is an autograd input, in that order after x.
struct LoraSharedFn : public torch::autograd::Function<LoraSharedFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList params, std::vector<double> s, int64_t k,
                               int64_t has_b, bool fifo) {
    const bool ac = autocast_enabled(x.device());
    const auto acdt = ac ? autocast_dtype(x.device()) : x.scalar_type();
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    std::vector<at::Tensor> W(k), b(k), A(k), B(k);
    size_t j = 0;
    for (int64_t i = 0; i < k; i++) {
      W[i] = params[j++];
      if (has_b & (1 << i)) b[i] = params[j++];
      A[i] = params[j++];
      B[i] = params[j++];
    }
    const auto bdt = compute_type(W[0], ac, acdt), adt = compute_type(A[0], ac, acdt);
    const int64_t in = A[0].size(1);
    auto x2 = x.reshape({-1, in});
    auto xa = as_type(x2, adt), xb = as_type(x2, bdt);
    std::vector<at::Tensor> acat;
    for (int64_t i = 0; i < k; i++) acat.push_back(as_type(A[i], adt));
    auto Acat = k == 1 ? acat[0] : at::cat(acat, 0);
    auto z = at::mm(xa, Acat.t());  // [N, Σr]
    variable_list outs;
    std::vector<int64_t> xs(x.sizes().begin(), x.sizes().end());
    int64_t off = 0;
    for (int64_t i = 0; i < k; i++) {
      const int64_t r = A[i].size(0), out = B[i].size(0);
      auto Wc = as_type(W[i], bdt), Bc = as_type(B[i], adt);
      auto y = b[i].defined() ? at::addmm(as_type(b[i], bdt), xb, lin(Wc, fifo).t()) : at::mm(xb, lin(Wc, fifo).t());
      auto zi = z.narrow(1, off, r);
      if (adt == bdt) y.addmm_(zi, Bc.t(), 1, s[i]);
      else y.add_(at::mm(zi, Bc.t()), s[i]);  // one rounding, no base-type temporary
      std::vector<int64_t> ys(xs);
      ys.back() = out;
      outs.push_back(y.view(ys));
      off += r;
    }
    // x only where a gradient needs it (∂A or ∂W of some projection): with every A and W frozen (LoRA-FA) only z stays.
    bool need_x = false;
    for (int64_t i = 0; i < k; i++) need_x = need_x || A[i].requires_grad() || W[i].requires_grad();
    variable_list to_save{need_x ? x2 : at::Tensor(), z};
    for (int64_t i = 0; i < k; i++) {
      to_save.push_back(W[i]);
      to_save.push_back(A[i]);
      to_save.push_back(B[i]);
    }
    ctx->save_for_backward(to_save);
    ctx->saved_data["s"] = s;
    ctx->saved_data["k"] = k;
    ctx->saved_data["has_b"] = has_b;
    ctx->saved_data["fifo"] = fifo;
    ctx->saved_data["xdt"] = (int64_t)x.scalar_type();
    ctx->saved_data["bdt"] = (int64_t)bdt;
    ctx->saved_data["adt"] = (int64_t)adt;
    ctx->saved_data["xshape"] = xs;
    std::vector<int64_t> bdts;
    for (int64_t i = 0; i < k; i++) bdts.push_back((int64_t)(b[i].defined() ? b[i].scalar_type() : W[i].scalar_type()));
    ctx->saved_data["bias_dt"] = bdts;
    return outs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x2 = saved[0];
    const auto& z = saved[1];
    const int64_t k = ctx->saved_data["k"].toInt(), has_b = ctx->saved_data["has_b"].toInt();
    auto s = ctx->saved_data["s"].toDoubleVector();
    auto bias_dt = ctx->saved_data["bias_dt"].toIntVector();
    const bool fifo = ctx->saved_data["fifo"].toBool();
    const auto bdt = (at::ScalarType)ctx->saved_data["bdt"].toInt(), adt = (at::ScalarType)ctx->saved_data["adt"].toInt();
    const auto xdt = (at::ScalarType)ctx->saved_data["xdt"].toInt();
    auto xshape = ctx->saved_data["xshape"].toIntVector();
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    size_t nparams = 0;
    for (int64_t i = 0; i < k; i++) nparams += (has_b & (1 << i)) ? 4 : 3;
    // One result per forward argument: x, each tensor of params, s, k, has_b, fifo.
    variable_list result(1 + nparams + 4);
    const bool gx = ctx->needs_input_grad(0);
    at::Tensor dx, xa, xb;
    std::vector<at::Tensor> gparts, aparts;
    int64_t off = 0;
    size_t e = 1;
    for (int64_t i = 0; i < k; i++) {
      const auto& W = saved[2 + 3 * i];
      const auto& A = saved[3 + 3 * i];
      const auto& B = saved[4 + 3 * i];
      const int64_t r = A.size(0), out = B.size(0);
      const bool hb = has_b & (1 << i);
      const size_t eW = e++, eb = hb ? e++ : 0, eA = e++, eB = e++;
      const bool gW = ctx->needs_input_grad(eW), gb = hb && ctx->needs_input_grad(eb), gA = ctx->needs_input_grad(eA),
                 gB = ctx->needs_input_grad(eB);
      if (!grads[i].defined()) {
        off += r;
        continue;
      }
      auto dy = grads[i].reshape({-1, out});
      auto dyb = as_type(dy, bdt), dya = as_type(dy, adt);
      auto Ac = as_type(A, adt), Bc = as_type(B, adt);
      if (gB) result[eB] = as_type(at::mm(dya.t(), z.narrow(1, off, r)).mul_(s[i]), B.scalar_type());
      if (gx || gA) {
        auto gs = at::mm(dya, Bc).mul_(s[i]);
        if (gA) {
          if (!xa.defined()) xa = as_type(x2, adt);
          result[eA] = as_type(at::mm(gs.t(), xa), A.scalar_type());
        }
        if (gx) {
          gparts.push_back(gs);
          aparts.push_back(Ac);
        }
      }
      if (gW) {
        if (!xb.defined()) xb = as_type(x2, bdt);
        auto dW = at::mm(dyb.t(), xb);
        result[eW] = as_type(fifo ? dW.t() : dW, W.scalar_type());
      }
      if (gb) result[eb] = as_type(dy.sum(0), (at::ScalarType)bias_dt[i]);
      if (gx) {
        auto Wc = as_type(W, bdt);
        if (!dx.defined()) dx = at::mm(dyb, lin(Wc, fifo));
        else dx.addmm_(dyb, lin(Wc, fifo));
      }
      off += r;
    }
    if (gx && dx.defined()) {
      if (!gparts.empty()) {
        auto G = gparts.size() == 1 ? gparts[0] : at::cat(gparts, 1);
        auto Acat = aparts.size() == 1 ? aparts[0] : at::cat(aparts, 0);
        if (adt == bdt) dx.addmm_(G, Acat);
        else dx.add_(at::mm(G, Acat));
      }
      result[0] = as_type(dx, xdt).view(xshape);
    }
    return result;
  }
};

void check_lora_args(const at::Tensor& x, const at::Tensor& W, const at::Tensor& b, const at::Tensor& A, const at::Tensor& B, bool fifo,
                     const char* what) {
  TORCH_CHECK(A.dim() == 2 && B.dim() == 2, what, ": lora_A must be [r, in] and lora_B [out, r], got ", shape_of(A), " and ", shape_of(B));
  TORCH_CHECK(A.size(0) == B.size(1), what, ": lora_A has rank ", A.size(0), " but lora_B has rank ", B.size(1));
  TORCH_CHECK(W.dim() == 2, what, ": the base weight must be 2-D, got ", shape_of(W));
  const int64_t in = fifo ? W.size(0) : W.size(1), out = fifo ? W.size(1) : W.size(0);
  TORCH_CHECK(A.size(1) == in, what, ": lora_A ", shape_of(A), " does not match the base weight's in_features ", in,
              fifo ? " (weight stored [in, out])" : " (weight stored [out, in])");
  TORCH_CHECK(B.size(0) == out, what, ": lora_B ", shape_of(B), " does not match the base weight's out_features ", out);
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == in, what, ": input's last dimension is ", x.dim() >= 1 ? x.size(-1) : 0, " but in_features is ", in,
              "; input shape ", shape_of(x));
  TORCH_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == out), what, ": bias must be [", out, "], got ", shape_of(b));
  TORCH_CHECK(x.is_floating_point() && W.is_floating_point() && A.is_floating_point() && B.is_floating_point(), what,
              ": input, weight and adapter must be floating point");
  TORCH_CHECK(x.device() == W.device() && W.device() == A.device() && A.device() == B.device(), what,
              ": input, weight and adapter must be on one device");
}

int needs_mask(const at::Tensor& x, const at::Tensor& W, const at::Tensor& b, const at::Tensor& A, const at::Tensor& B) {
  if (!at::GradMode::is_enabled()) return 0;
  return (x.requires_grad() ? 1 : 0) | (W.requires_grad() ? 2 : 0) | (b.defined() && b.requires_grad() ? 4 : 0) |
         (A.requires_grad() ? 8 : 0) | (B.requires_grad() ? 16 : 0);
}

inline at::Tensor U(lr_tensor t) { return t ? *t : at::Tensor(); }

}  // namespace

// order: 0 auto (cheaper of sequential and merged), 1 sequential, 2 merged (where exact; else sequential).
// fan_in_fan_out: the base weight is stored [in, out] (GPT-2 Conv1D).
LR_API lr_tensor lr_fused_lora_linear(lr_tensor x, lr_tensor weight, lr_tensor bias, lr_tensor lora_a, lr_tensor lora_b, double scaling,
                                      double dropout_p, int training, at::Generator* generator, int order, int fan_in_fan_out) {
  try {
    const auto& X = T(x);
    const auto& W = T(weight);
    const auto& A = T(lora_a);
    const auto& B = T(lora_b);
    c10::optional<at::Tensor> b;
    if (bias) b = *bias;
    TORCH_CHECK(dropout_p >= 0 && dropout_p <= 1, "lora_linear: dropout probability has to be between 0 and 1, but got ", dropout_p);
    TORCH_CHECK(order >= 0 && order <= 2, "lora_linear: unknown compute order ", order, " (0 auto, 1 sequential, 2 merged)");
    check_lora_args(X, W, U(bias), A, B, fan_in_fan_out != 0, "lora_linear");
    int needs = needs_mask(X, W, U(bias), A, B);
    return new at::Tensor(LoraLinearFn::apply(X, W, b, A, B, scaling, dropout_p, training != 0, generator, (int64_t)order,
                                              fan_in_fan_out != 0, (int64_t)needs));
  } LR_CATCH_BLOCK(return nullptr)
}

// k (1..3) projections of one input: arrays of k handles each (bias entries may be null); outputs receives k handles.
LR_API int lr_fused_lora_linear_shared(lr_tensor x, int k, lr_tensor* weights, lr_tensor* biases, lr_tensor* lora_a, lr_tensor* lora_b,
                                       const double* scalings, int fan_in_fan_out, lr_tensor* outputs) {
  LR_STATUS({
    TORCH_CHECK(k >= 1 && k <= 3, "lora_linear_shared: between 1 and 3 projections, got ", k);
    const auto& X = T(x);
    std::vector<at::Tensor> params;
    std::vector<double> s;
    int64_t has_b = 0;
    for (int i = 0; i < k; i++) {
      const auto& W = T(weights[i]);
      auto b = biases ? U(biases[i]) : at::Tensor();
      const auto& A = T(lora_a[i]);
      const auto& B = T(lora_b[i]);
      check_lora_args(X, W, b, A, B, fan_in_fan_out != 0, "lora_linear_shared");
      TORCH_CHECK(W.scalar_type() == T(weights[0]).scalar_type() && A.scalar_type() == T(lora_a[0]).scalar_type() &&
                      B.scalar_type() == A.scalar_type(),
                  "lora_linear_shared: every projection needs the same base type and the same adapter type");
      params.push_back(W);
      if (b.defined()) {
        params.push_back(b);
        has_b |= 1 << i;
      }
      params.push_back(A);
      params.push_back(B);
      s.push_back(scalings[i]);
    }
    auto outs = LoraSharedFn::apply(X, at::TensorList(params), s, (int64_t)k, has_b, fan_in_fan_out != 0);
    for (int i = 0; i < k; i++) outputs[i] = new at::Tensor(outs[i]);
  });
}

// The order lr_fused_lora_linear would use: bit 0..1 forward (1 sequential, 2 merged), bits 2..3 backward ∂x.
LR_API int lr_fused_lora_choose_order(int64_t tokens, int64_t in, int64_t out, int64_t r, int order, int exact, int b_trains) {
  LR_VALUE(-1, choose_forward(order, exact != 0, tokens, in, out, r, b_trains != 0) | (choose_backward(order, exact != 0, tokens, in, out, r) << 2));
}
