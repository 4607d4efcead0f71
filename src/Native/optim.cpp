// Optimizer kernels: one call updates a whole list of parameters with AdamW.
// CPU float32/float64 contiguous tensors take a single pass per element (at::parallel_for, each element independent,
// so results do not depend on the thread count); any other tensor (CUDA, half types, strided) takes the reference
// sequence of in-place ATen ops, the same as the managed implementation.
#include "lr_common.h"
#include <ATen/Parallel.h>
#include <cmath>
#include <limits>

namespace {

template <typename S>
inline S lr_lerp(S a, S b, S w) {
  // ATen's formula (accurate at both ends).
  return std::abs(w) < S(0.5) ? a + w * (b - a) : b - (b - a) * (S(1) - w);
}

template <typename S>
inline S lr_maximum(S a, S b) {
  // torch.maximum propagates NaN.
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<S>::quiet_NaN();
  return a > b ? a : b;
}

template <typename S>
void adamw_cpu(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, at::Tensor* vmax, double lr, double beta1,
               double beta2, double eps, double wd, double step, bool maximize) {
  const double bc1 = 1.0 - std::pow(beta1, step);
  const double bc2 = 1.0 - std::pow(beta2, step);
  const S step_size = (S)(lr / bc1);
  const S bc2_sqrt = (S)std::sqrt(bc2);
  const S decay = (S)(1.0 - lr * wd);
  const bool has_decay = wd != 0;
  const S w1 = (S)(1.0 - beta1), b2 = (S)beta2, w2 = (S)(1.0 - beta2), e = (S)eps;
  S* pp = p.data_ptr<S>();
  const S* gp = g.data_ptr<S>();
  S* mp = m.data_ptr<S>();
  S* vp = v.data_ptr<S>();
  S* xp = vmax ? vmax->data_ptr<S>() : nullptr;
  at::parallel_for(0, p.numel(), 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      const S grad = maximize ? -gp[i] : gp[i];
      const S x = has_decay ? pp[i] * decay : pp[i];
      const S mi = lr_lerp(mp[i], grad, w1);
      const S vi = vp[i] * b2 + w2 * grad * grad;
      mp[i] = mi;
      vp[i] = vi;
      S vv = vi;
      if (xp) {
        vv = lr_maximum(xp[i], vi);
        xp[i] = vv;
      }
      const S denom = std::sqrt(vv) / bc2_sqrt + e;
      pp[i] = x + (-step_size) * mi / denom;
    }
  });
  // Raw writes bypass ATen: mark the tensors as modified in place, as the ops would.
  p.unsafeGetTensorImpl()->bump_version();
  m.unsafeGetTensorImpl()->bump_version();
  v.unsafeGetTensorImpl()->bump_version();
  if (vmax) vmax->unsafeGetTensorImpl()->bump_version();
}

void adamw_ops(at::Tensor& p, const at::Tensor& g, at::Tensor& m, at::Tensor& v, at::Tensor* vmax, double lr, double beta1,
               double beta2, double eps, double wd, double step, bool maximize) {
  const double bc1 = 1.0 - std::pow(beta1, step);
  const double bc2 = 1.0 - std::pow(beta2, step);
  const at::Tensor grad = maximize ? g.neg() : g;
  if (wd != 0) p.mul_(1.0 - lr * wd);
  m.lerp_(grad, 1.0 - beta1);
  v.mul_(beta2).addcmul_(grad, grad, 1.0 - beta2);
  at::Tensor denom;
  if (vmax) {
    at::maximum_out(*vmax, *vmax, v);
    denom = vmax->sqrt().div_(std::sqrt(bc2)).add_(eps);
  } else {
    denom = v.sqrt().div_(std::sqrt(bc2)).add_(eps);
  }
  p.addcdiv_(m, denom, -(lr / bc1));
}

bool same_cpu_layout(const at::Tensor& t, const at::Tensor& p) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == p.scalar_type() && t.is_contiguous() &&
         t.sizes().equals(p.sizes()) && !t.is_neg() && !t.is_conj();
}

}  // namespace

// AdamW over n parameters (PyTorch's single-tensor algorithm, decoupled weight decay). steps[i] is parameter i's step
// count including this step (>= 1). max_exp_avg_sqs is null unless amsgrad. Returns 0, or -1 with the error set.
LR_API int lr_optim_adamw_(lr_tensor* params, lr_tensor* grads, lr_tensor* exp_avgs, lr_tensor* exp_avg_sqs,
                           lr_tensor* max_exp_avg_sqs, const double* steps, int n, double lr, double beta1, double beta2,
                           double eps, double weight_decay, int amsgrad, int maximize) {
  LR_STATUS({
    at::NoGradGuard no_grad;
    if (amsgrad && max_exp_avg_sqs == nullptr) throw std::invalid_argument("amsgrad needs max_exp_avg_sq tensors");
    for (int i = 0; i < n; i++) {
      at::Tensor* vmax = amsgrad ? max_exp_avg_sqs[i] : nullptr;
      if (params[i] == nullptr || grads[i] == nullptr || exp_avgs[i] == nullptr || exp_avg_sqs[i] == nullptr || (amsgrad && vmax == nullptr))
        throw std::invalid_argument("null tensor handle in the AdamW update of parameter " + std::to_string(i));
      at::Tensor& p = *params[i];
      const at::Tensor& g = *grads[i];
      at::Tensor& m = *exp_avgs[i];
      at::Tensor& v = *exp_avg_sqs[i];
      TORCH_CHECK(g.sizes().equals(p.sizes()), "gradient of parameter ", i, " has shape ", g.sizes(), " but the parameter has ", p.sizes());
      TORCH_CHECK(steps[i] >= 1, "step count of parameter ", i, " must be >= 1");
      const bool fast = (p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble) && p.device().is_cpu() &&
                        p.is_contiguous() && same_cpu_layout(g, p) && same_cpu_layout(m, p) && same_cpu_layout(v, p) &&
                        (vmax == nullptr || same_cpu_layout(*vmax, p));
      if (fast) {
        if (p.scalar_type() == at::kFloat)
          adamw_cpu<float>(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, steps[i], maximize != 0);
        else
          adamw_cpu<double>(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, steps[i], maximize != 0);
      } else {
        adamw_ops(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, steps[i], maximize != 0);
      }
    }
  });
}
