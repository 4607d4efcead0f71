// torch.nn.functional: linear layers, normalisation, activations, dropout, embeddings, losses and attention.
// Reductions are libtorch's codes (0 none, 1 mean, 2 sum); an optional dtype is -1 for none.
#include "lr_common.h"
#include <cmath>
#include <limits>
#include <sstream>

static std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

static c10::optional<at::ScalarType> opt_dtype(int dtype) {
  if (dtype < 0) return c10::nullopt;
  return (at::ScalarType)dtype;
}

static c10::optional<at::Generator> opt_gen(at::Generator* g) {
  if (g == nullptr) return c10::nullopt;
  return *g;
}

static void check_reduction(int64_t r) {
  TORCH_CHECK(r >= 0 && r <= 2, "unknown reduction code ", r, " (0 none, 1 mean, 2 sum)");
}

// ---- linear and normalisation ----

LR_API lr_tensor lr_nn_linear(lr_tensor input, lr_tensor weight, lr_tensor bias) {
  try {
    const auto& x = T(input);
    const auto& w = T(weight);
    TORCH_CHECK(w.dim() == 1 || w.dim() == 2, "linear: weight must be 1-D or 2-D [out_features, in_features], got shape ", shape_str(w.sizes()));
    TORCH_CHECK(x.dim() >= 1, "linear: input must have at least one dimension");
    TORCH_CHECK(x.size(-1) == w.size(-1), "linear: input's last dimension (in_features) is ", x.size(-1), " but weight expects ",
                w.size(-1), "; input shape ", shape_str(x.sizes()), ", weight shape ", shape_str(w.sizes()));
    return new at::Tensor(at::linear(x, w, opt(bias)));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_nn_layer_norm(lr_tensor input, const int64_t* shape, int n, lr_tensor weight, lr_tensor bias, double eps) {
  LR_TENSOR(at::layer_norm(T(input), dims(shape, n), opt(weight), opt(bias), eps, true));
}

at::Tensor lr_fused_rms_norm_impl(const at::Tensor& x, const c10::optional<at::Tensor>& weight, int n, double eps);

// RMS normalisation over the trailing dims of normalized_shape: x * rsqrt(mean(x^2) + eps) [* weight].
// Half and bfloat16 inputs are normalised in float32 and cast back before the weight is applied (as HF LLaMA's
// RMSNorm). has_eps = 0: eps is the machine epsilon of the computation type. The same formula runs on every
// libtorch version, so results do not depend on which one the shim was built against.
LR_API lr_tensor lr_nn_rms_norm(lr_tensor input, const int64_t* shape, int n, lr_tensor weight, double eps, int has_eps) {
  try {
    const auto& x = T(input);
    auto ns = dims(shape, n);
    TORCH_CHECK(n >= 1, "rms_norm: normalized_shape must not be empty");
    TORCH_CHECK(x.dim() >= n, "rms_norm: input of shape ", shape_str(x.sizes()), " has fewer dimensions than normalized_shape ", shape_str(ns));
    for (int i = 0; i < n; i++)
      TORCH_CHECK(x.size(x.dim() - n + i) == ns[i], "rms_norm: normalized_shape ", shape_str(ns),
                  " does not match the trailing dimensions of input shape ", shape_str(x.sizes()));
    if (weight) TORCH_CHECK(weight->sizes() == ns, "rms_norm: weight shape ", shape_str(weight->sizes()), " must equal normalized_shape ", shape_str(ns));
    TORCH_CHECK(c10::isFloatingType(x.scalar_type()), "rms_norm: input must be floating point, got ", x.scalar_type());
    const bool low = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
    const bool dbl = x.scalar_type() == at::kDouble;
    double e = has_eps ? eps : (dbl ? std::numeric_limits<double>::epsilon() : (double)std::numeric_limits<float>::epsilon());
    // With autograd recording, the fused node (fused_norm.cpp) computes the same values but saves only x and r.
    if (at::GradMode::is_enabled() && (x.requires_grad() || (weight && weight->requires_grad())))
      return new at::Tensor(lr_fused_rms_norm_impl(x, opt(weight), n, e));
    std::vector<int64_t> red(n);
    for (int i = 0; i < n; i++) red[i] = x.dim() - n + i;
    auto xc = low ? x.to(at::kFloat) : x;
    auto r = xc.pow(2).mean(red, /*keepdim=*/true).add(e).rsqrt();
    auto y = xc.mul(r);
    if (low) y = y.to(x.scalar_type());
    if (weight) y = weight->mul(y);
    return new at::Tensor(std::move(y));
  } LR_CATCH_BLOCK(return nullptr)
}

// ---- softmax ----

LR_API lr_tensor lr_nn_softmax(lr_tensor input, int64_t dim, int dtype) { LR_TENSOR(at::softmax(T(input), dim, opt_dtype(dtype))); }
LR_API lr_tensor lr_nn_log_softmax(lr_tensor input, int64_t dim, int dtype) { LR_TENSOR(at::log_softmax(T(input), dim, opt_dtype(dtype))); }

// ---- dropout ----

static at::Tensor dropout_with(const at::Tensor& x, double p, at::Generator* g) {
  if (p == 1) return x.mul(at::zeros({}, x.options()));
  auto mask = at::empty_like(x).bernoulli_(1 - p, opt_gen(g));
  mask.div_(1 - p);
  return x.mul(mask);
}

LR_API lr_tensor lr_nn_dropout(lr_tensor input, double p, int training, at::Generator* g) {
  try {
    const auto& x = T(input);
    TORCH_CHECK(p >= 0 && p <= 1, "dropout probability has to be between 0 and 1, but got ", p);
    if (!training || p == 0) return new at::Tensor(x);
    if (g == nullptr) return new at::Tensor(at::dropout(x, p, true));
    return new at::Tensor(dropout_with(x, p, g));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API int lr_nn_dropout_(lr_tensor input, double p, int training, at::Generator* g) {
  LR_STATUS({
    auto x = T(input);
    TORCH_CHECK(p >= 0 && p <= 1, "dropout probability has to be between 0 and 1, but got ", p);
    if (training && p > 0) {
      if (g == nullptr) at::dropout_(x, p, true);
      else if (p == 1) x.zero_();
      else {
        auto mask = at::empty_like(x).bernoulli_(1 - p, opt_gen(g));
        mask.div_(1 - p);
        x.mul_(mask);
      }
    }
  });
}

// ---- embedding ----

LR_API lr_tensor lr_nn_embedding(lr_tensor indices, lr_tensor weight, int64_t padding_idx, int has_padding, int scale_grad_by_freq, int sparse) {
  try {
    const auto& w = T(weight);
    const auto& idx = T(indices);
    TORCH_CHECK(w.dim() == 2, "embedding: weight must be 2-D [num_embeddings, embedding_dim], got shape ", shape_str(w.sizes()));
    int64_t pi = -1;
    if (has_padding) {
      int64_t n = w.size(0);
      TORCH_CHECK(padding_idx >= -n && padding_idx < n, "embedding: padding_idx ", padding_idx, " must be within num_embeddings (", n, ")");
      pi = padding_idx < 0 ? padding_idx + n : padding_idx;
    }
    return new at::Tensor(at::embedding(w, idx, pi, scale_grad_by_freq != 0, sparse != 0));
  } LR_CATCH_BLOCK(return nullptr)
}

// ---- activations ----

// approximate: 0 = exact (erf), 1 = tanh.
LR_API lr_tensor lr_nn_gelu(lr_tensor input, int approximate) {
  try {
    TORCH_CHECK(approximate == 0 || approximate == 1, "gelu: unknown approximation code ", approximate);
    return new at::Tensor(at::gelu(T(input), approximate == 1 ? "tanh" : "none"));
  } LR_CATCH_BLOCK(return nullptr)
}
LR_API lr_tensor lr_nn_silu(lr_tensor input) { LR_TENSOR(at::silu(T(input))); }
LR_API lr_tensor lr_nn_relu(lr_tensor input) { LR_TENSOR(at::relu(T(input))); }
LR_API lr_tensor lr_nn_tanh(lr_tensor input) { LR_TENSOR(at::tanh(T(input))); }
LR_API lr_tensor lr_nn_sigmoid(lr_tensor input) { LR_TENSOR(at::sigmoid(T(input))); }
LR_API lr_tensor lr_nn_softplus(lr_tensor input, double beta, double threshold) { LR_TENSOR(at::softplus(T(input), beta, threshold)); }

// ---- losses ----

LR_API lr_tensor lr_nn_cross_entropy(lr_tensor input, lr_tensor target, lr_tensor weight, int64_t reduction, int64_t ignore_index, double label_smoothing) {
  try {
    check_reduction(reduction);
    TORCH_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy: label_smoothing must be between 0.0 and 1.0, got ", label_smoothing);
    return new at::Tensor(at::cross_entropy_loss(T(input), T(target), opt(weight), reduction, ignore_index, label_smoothing));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_nn_nll_loss(lr_tensor input, lr_tensor target, lr_tensor weight, int64_t reduction, int64_t ignore_index) {
  try {
    check_reduction(reduction);
    return new at::Tensor(at::nll_loss_nd(T(input), T(target), opt(weight), reduction, ignore_index));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_nn_mse_loss(lr_tensor input, lr_tensor target, int64_t reduction) {
  try {
    check_reduction(reduction);
    const auto& a = T(input);
    const auto& b = T(target);
    TORCH_CHECK(a.sizes() == b.sizes(), "mse_loss: input shape ", shape_str(a.sizes()), " and target shape ", shape_str(b.sizes()), " differ");
    return new at::Tensor(at::mse_loss(a, b, reduction));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_nn_binary_cross_entropy_with_logits(lr_tensor input, lr_tensor target, lr_tensor weight, lr_tensor pos_weight, int64_t reduction) {
  try {
    check_reduction(reduction);
    const auto& a = T(input);
    const auto& b = T(target);
    TORCH_CHECK(a.sizes() == b.sizes(), "binary_cross_entropy_with_logits: target shape ", shape_str(b.sizes()),
                " must equal input shape ", shape_str(a.sizes()));
    return new at::Tensor(at::binary_cross_entropy_with_logits(a, b, opt(weight), opt(pos_weight), reduction));
  } LR_CATCH_BLOCK(return nullptr)
}

// ---- attention ----

at::Tensor lr_attention_bias(const at::Tensor& q, int64_t L, int64_t S, const c10::optional<at::Tensor>& mask, bool causal);

// The reference formula: softmax(q k^T * scale + bias) v, with dropout on the attention weights. The causal
// mask keeps the lower triangle (top-left aligned for L != S); a bool mask keeps true positions; a float
// mask is added.
[[maybe_unused]] static at::Tensor sdpa_math(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask,
                            double p, bool causal, c10::optional<double> scale) {
  TORCH_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, "scaled_dot_product_attention: query, key and value need at least 2 dimensions");
  TORCH_CHECK(q.size(-1) == k.size(-1), "scaled_dot_product_attention: query's last dimension ", q.size(-1), " differs from key's ", k.size(-1),
              "; query shape ", shape_str(q.sizes()), ", key shape ", shape_str(k.sizes()));
  TORCH_CHECK(k.size(-2) == v.size(-2), "scaled_dot_product_attention: key has ", k.size(-2), " positions but value has ", v.size(-2));
  TORCH_CHECK(!(causal && mask.has_value()), "scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True");
  const int64_t L = q.size(-2), S = k.size(-2);
  const double sc = scale.has_value() ? *scale : 1.0 / std::sqrt((double)q.size(-1));
  const at::Tensor bias = lr_attention_bias(q, L, S, mask, causal);  // the mask as an addend of the scores
  at::Tensor attn;
  const bool batched = q.dim() >= 3 && q.dim() == k.dim() && q.sizes().slice(0, q.dim() - 2) == k.sizes().slice(0, k.dim() - 2);
  if (batched && (!bias.defined() || (bias.scalar_type() == q.scalar_type() && !bias.requires_grad() && bias.dim() <= q.dim()))) {
    // scores = bias + scale·q·kᵀ in one batched GEMM (baddbmm): no separate scale and mask passes, forward or backward.
    auto lead = q.sizes().slice(0, q.dim() - 2).vec();
    auto q3 = q.reshape({-1, L, q.size(-1)}), k3 = k.reshape({-1, S, k.size(-1)});
    const int64_t n = q3.size(0);
    auto full = lead;
    full.push_back(L);
    full.push_back(S);
    at::Tensor add = bias.defined() ? (bias.dim() <= 2 ? bias.expand({n, L, S}) : bias.expand(full).reshape({n, L, S}))
                                    : at::Tensor();
    attn = add.defined() ? at::baddbmm(add, q3, k3.transpose(1, 2), 1, sc) : at::bmm(q3, k3.transpose(1, 2)).mul_(sc);
    attn = attn.view(full);
  } else {
    attn = at::matmul(q, k.transpose(-2, -1)).mul(sc);
    if (bias.defined()) attn = attn.add(bias);
  }
  attn = at::softmax(attn, -1);
  if (p > 0) attn = at::dropout(attn, p, true);
  return at::matmul(attn, v);
}

bool lr_attention_cpu_applies(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask, double p);
at::Tensor lr_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& mask, bool causal,
                            double scale);

// 1 when lr_nn_sdpa calls libtorch's at::scaled_dot_product_attention (which picks a fused kernel where one
// applies); 0 when it runs the reference formula above (libtorch 1.13).
LR_API int lr_nn_sdpa_native() { return LR_TORCH2 ? 1 : 0; }

LR_API lr_tensor lr_nn_sdpa(lr_tensor q, lr_tensor k, lr_tensor v, lr_tensor mask, double dropout_p, int is_causal, double scale, int has_scale) {
  try {
    TORCH_CHECK(dropout_p >= 0 && dropout_p <= 1, "scaled_dot_product_attention: dropout_p must be between 0 and 1, got ", dropout_p);
    c10::optional<double> sc = has_scale ? c10::optional<double>(scale) : c10::nullopt;
#if LR_TORCH2
#if TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1
    return new at::Tensor(at::scaled_dot_product_attention(T(q), T(k), T(v), opt(mask), dropout_p, is_causal != 0, sc));
#else
    if (!has_scale) return new at::Tensor(at::scaled_dot_product_attention(T(q), T(k), T(v), opt(mask), dropout_p, is_causal != 0));
    return new at::Tensor(sdpa_math(T(q), T(k), T(v), opt(mask), dropout_p, is_causal != 0, sc));
#endif
#else
    // libtorch 1.13: the CPU attention kernel (fused_attention.cpp) where it applies, else the formula.
    if (lr_attention_cpu_applies(T(q), T(k), T(v), opt(mask), dropout_p)) {
      TORCH_CHECK(!(is_causal && opt(mask).has_value()), "scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True");
      return new at::Tensor(lr_attention_cpu(T(q), T(k), T(v), opt(mask), is_causal != 0, has_scale ? scale : 1.0 / std::sqrt((double)T(q).size(-1))));
    }
    return new at::Tensor(sdpa_math(T(q), T(k), T(v), opt(mask), dropout_p, is_causal != 0, sc));
#endif
  } LR_CATCH_BLOCK(return nullptr)
}
