// Math ops: elementwise arithmetic (tensor and scalar forms), unary functions, in-place updates used by optimizers,
// comparisons and selection, reductions, and basic linear algebra. Every export is lr_math_<op>.
//
// Conventions local to this file:
//  - Scalars arrive as doubles. An integral-valued double becomes an integer at::Scalar (like Python's `t + 1`), so
//    integer tensors keep their dtype; other values stay floating (like `t + 0.5`, which promotes).
//  - Optional dim lists arrive as (pointer, count) with count < 0 meaning "none"; optional dtypes as -1 for "none".
//  - Rounding modes for div: 0 = none (true division), 1 = "trunc", 2 = "floor".
#include "lr_common.h"
#include <ATen/ScalarOps.h>
#include <algorithm>
#include <cmath>

// Double -> Scalar: integral values (except -0.0 and huge magnitudes) become integer scalars.
static inline at::Scalar S(double v) {
  if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 9007199254740992.0 && !(v == 0.0 && std::signbit(v)))
    return at::Scalar((int64_t)v);
  return at::Scalar(v);
}

// A 0-d CPU tensor marked as a wrapped number: it takes part in type promotion like a Python scalar and may be
// combined with tensors on any device.
static inline at::Tensor W(double v) { return at::native::wrapped_scalar_tensor(S(v)); }

static inline c10::optional<at::ScalarType> DT(int dtype) {
  if (dtype < 0) return c10::nullopt;
  return (c10::ScalarType)dtype;
}

static inline c10::optional<c10::string_view> RM(int mode) {
  switch (mode) {
    case 0: return c10::nullopt;
    case 1: return c10::string_view("trunc");
    case 2: return c10::string_view("floor");
    default: throw std::invalid_argument("div: unknown rounding mode code " + std::to_string(mode));
  }
}

// All dimensions of t, for "reduce everything but keep the dims" calls.
static inline std::vector<int64_t> all_dims(const at::Tensor& t) {
  std::vector<int64_t> d((size_t)t.dim());
  for (size_t i = 0; i < d.size(); i++) d[i] = (int64_t)i;
  return d;
}

// ======================= elementwise binary =======================
LR_API lr_tensor lr_math_add(lr_tensor a, lr_tensor b, double alpha) { LR_TENSOR(at::add(T(a), T(b), S(alpha))); }
LR_API lr_tensor lr_math_add_scalar(lr_tensor a, double b, double alpha) { LR_TENSOR(at::add(T(a), S(b), S(alpha))); }
LR_API lr_tensor lr_math_sub(lr_tensor a, lr_tensor b, double alpha) { LR_TENSOR(at::sub(T(a), T(b), S(alpha))); }
LR_API lr_tensor lr_math_sub_scalar(lr_tensor a, double b, double alpha) { LR_TENSOR(at::sub(T(a), S(b), S(alpha))); }
// s - alpha * a
LR_API lr_tensor lr_math_rsub_scalar(lr_tensor a, double s, double alpha) { LR_TENSOR(at::rsub(T(a), S(s), S(alpha))); }
LR_API lr_tensor lr_math_mul(lr_tensor a, lr_tensor b) { LR_TENSOR(at::mul(T(a), T(b))); }
LR_API lr_tensor lr_math_mul_scalar(lr_tensor a, double b) { LR_TENSOR(at::mul(T(a), S(b))); }
LR_API lr_tensor lr_math_div(lr_tensor a, lr_tensor b, int mode) { LR_TENSOR(at::div(T(a), T(b), RM(mode))); }
LR_API lr_tensor lr_math_div_scalar(lr_tensor a, double b, int mode) { LR_TENSOR(at::div(T(a), S(b), RM(mode))); }
// s / a
LR_API lr_tensor lr_math_rdiv_scalar(double s, lr_tensor a, int mode) { LR_TENSOR(at::div(W(s), T(a), RM(mode))); }
LR_API lr_tensor lr_math_pow(lr_tensor a, lr_tensor b) { LR_TENSOR(at::pow(T(a), T(b))); }
LR_API lr_tensor lr_math_pow_scalar(lr_tensor a, double e) { LR_TENSOR(at::pow(T(a), S(e))); }
// s ** a
LR_API lr_tensor lr_math_rpow_scalar(double s, lr_tensor a) { LR_TENSOR(at::pow(S(s), T(a))); }
LR_API lr_tensor lr_math_remainder(lr_tensor a, lr_tensor b) { LR_TENSOR(at::remainder(T(a), T(b))); }
LR_API lr_tensor lr_math_remainder_scalar(lr_tensor a, double b) { LR_TENSOR(at::remainder(T(a), S(b))); }
LR_API lr_tensor lr_math_rremainder_scalar(double s, lr_tensor a) { LR_TENSOR(at::remainder(W(s), T(a))); }
LR_API lr_tensor lr_math_fmod(lr_tensor a, lr_tensor b) { LR_TENSOR(at::fmod(T(a), T(b))); }
LR_API lr_tensor lr_math_fmod_scalar(lr_tensor a, double b) { LR_TENSOR(at::fmod(T(a), S(b))); }
LR_API lr_tensor lr_math_maximum(lr_tensor a, lr_tensor b) { LR_TENSOR(at::maximum(T(a), T(b))); }
LR_API lr_tensor lr_math_maximum_scalar(lr_tensor a, double b) { LR_TENSOR(at::maximum(T(a), W(b))); }
LR_API lr_tensor lr_math_minimum(lr_tensor a, lr_tensor b) { LR_TENSOR(at::minimum(T(a), T(b))); }
LR_API lr_tensor lr_math_minimum_scalar(lr_tensor a, double b) { LR_TENSOR(at::minimum(T(a), W(b))); }
LR_API lr_tensor lr_math_atan2(lr_tensor a, lr_tensor b) { LR_TENSOR(at::atan2(T(a), T(b))); }
LR_API lr_tensor lr_math_atan2_scalar(lr_tensor a, double b) { LR_TENSOR(at::atan2(T(a), W(b))); }

// ======================= unary =======================
#define LR_MATH_UNARY(name) \
  LR_API lr_tensor lr_math_##name(lr_tensor a) { LR_TENSOR(at::name(T(a))); }
#define LR_MATH_UNARY_(name) \
  LR_API int lr_math_##name##_(lr_tensor a) { LR_STATUS(T(a).name##_()); }

LR_MATH_UNARY(neg) LR_MATH_UNARY(abs) LR_MATH_UNARY(exp) LR_MATH_UNARY(exp2) LR_MATH_UNARY(log) LR_MATH_UNARY(log2)
LR_MATH_UNARY(log10) LR_MATH_UNARY(log1p) LR_MATH_UNARY(expm1) LR_MATH_UNARY(sqrt) LR_MATH_UNARY(rsqrt)
LR_MATH_UNARY(square) LR_MATH_UNARY(sin) LR_MATH_UNARY(cos) LR_MATH_UNARY(tan) LR_MATH_UNARY(tanh)
LR_MATH_UNARY(sigmoid) LR_MATH_UNARY(relu) LR_MATH_UNARY(sign) LR_MATH_UNARY(floor) LR_MATH_UNARY(ceil)
LR_MATH_UNARY(round) LR_MATH_UNARY(trunc) LR_MATH_UNARY(reciprocal) LR_MATH_UNARY(erf) LR_MATH_UNARY(logical_not)
LR_MATH_UNARY(isnan) LR_MATH_UNARY(isinf) LR_MATH_UNARY(isfinite)

LR_MATH_UNARY_(neg) LR_MATH_UNARY_(abs) LR_MATH_UNARY_(exp) LR_MATH_UNARY_(log) LR_MATH_UNARY_(sqrt)
LR_MATH_UNARY_(rsqrt) LR_MATH_UNARY_(square) LR_MATH_UNARY_(tanh) LR_MATH_UNARY_(sigmoid) LR_MATH_UNARY_(relu)
LR_MATH_UNARY_(sign) LR_MATH_UNARY_(floor) LR_MATH_UNARY_(ceil) LR_MATH_UNARY_(round) LR_MATH_UNARY_(trunc)
LR_MATH_UNARY_(reciprocal)

LR_API lr_tensor lr_math_round_decimals(lr_tensor a, int64_t decimals) { LR_TENSOR(at::round(T(a), decimals)); }

// has_x = 0 means "use libtorch's default" (nan -> 0, +inf -> max finite, -inf -> lowest finite).
LR_API lr_tensor lr_math_nan_to_num(lr_tensor a, int has_nan, double nan, int has_pos, double posinf, int has_neg, double neginf) {
  LR_TENSOR(at::nan_to_num(T(a), has_nan ? c10::optional<double>(nan) : c10::nullopt,
                           has_pos ? c10::optional<double>(posinf) : c10::nullopt,
                           has_neg ? c10::optional<double>(neginf) : c10::nullopt));
}

// ======================= in-place updates (return status) =======================
LR_API int lr_math_add_(lr_tensor a, lr_tensor b, double alpha) { LR_STATUS(T(a).add_(T(b), S(alpha))); }
LR_API int lr_math_add_scalar_(lr_tensor a, double b, double alpha) { LR_STATUS(T(a).add_(S(b), S(alpha))); }
LR_API int lr_math_sub_(lr_tensor a, lr_tensor b, double alpha) { LR_STATUS(T(a).sub_(T(b), S(alpha))); }
LR_API int lr_math_sub_scalar_(lr_tensor a, double b, double alpha) { LR_STATUS(T(a).sub_(S(b), S(alpha))); }
LR_API int lr_math_mul_(lr_tensor a, lr_tensor b) { LR_STATUS(T(a).mul_(T(b))); }
LR_API int lr_math_mul_scalar_(lr_tensor a, double b) { LR_STATUS(T(a).mul_(S(b))); }
LR_API int lr_math_div_(lr_tensor a, lr_tensor b, int mode) { LR_STATUS(T(a).div_(T(b), RM(mode))); }
LR_API int lr_math_div_scalar_(lr_tensor a, double b, int mode) { LR_STATUS(T(a).div_(S(b), RM(mode))); }
LR_API int lr_math_pow_(lr_tensor a, lr_tensor e) { LR_STATUS(T(a).pow_(T(e))); }
LR_API int lr_math_pow_scalar_(lr_tensor a, double e) { LR_STATUS(T(a).pow_(S(e))); }
LR_API int lr_math_addcmul_(lr_tensor a, lr_tensor t1, lr_tensor t2, double value) { LR_STATUS(T(a).addcmul_(T(t1), T(t2), S(value))); }
LR_API int lr_math_addcdiv_(lr_tensor a, lr_tensor t1, lr_tensor t2, double value) { LR_STATUS(T(a).addcdiv_(T(t1), T(t2), S(value))); }
LR_API int lr_math_lerp_scalar_(lr_tensor a, lr_tensor end, double w) { LR_STATUS(T(a).lerp_(T(end), at::Scalar(w))); }
LR_API int lr_math_lerp_(lr_tensor a, lr_tensor end, lr_tensor w) { LR_STATUS(T(a).lerp_(T(end), T(w))); }
LR_API int lr_math_copy_(lr_tensor a, lr_tensor src, int non_blocking) { LR_STATUS(T(a).copy_(T(src), non_blocking != 0)); }
LR_API int lr_math_zero_(lr_tensor a) { LR_STATUS(T(a).zero_()); }
LR_API int lr_math_fill_(lr_tensor a, double v) { LR_STATUS(T(a).fill_(S(v))); }
LR_API int lr_math_clamp_(lr_tensor a, int has_min, double mn, int has_max, double mx) {
  LR_STATUS(T(a).clamp_(has_min ? c10::optional<at::Scalar>(S(mn)) : c10::optional<at::Scalar>(),
                        has_max ? c10::optional<at::Scalar>(S(mx)) : c10::optional<at::Scalar>()));
}
LR_API int lr_math_clamp_tensor_(lr_tensor a, lr_tensor mn, lr_tensor mx) { LR_STATUS(T(a).clamp_(opt(mn), opt(mx))); }
LR_API int lr_math_masked_fill_(lr_tensor a, lr_tensor mask, double v) { LR_STATUS(T(a).masked_fill_(T(mask), S(v))); }
LR_API int lr_math_masked_fill_tensor_(lr_tensor a, lr_tensor mask, lr_tensor v) { LR_STATUS(T(a).masked_fill_(T(mask), T(v))); }

// ======================= out-of-place multi-operand =======================
LR_API lr_tensor lr_math_clamp(lr_tensor a, int has_min, double mn, int has_max, double mx) {
  LR_TENSOR(at::clamp(T(a), has_min ? c10::optional<at::Scalar>(S(mn)) : c10::optional<at::Scalar>(),
                      has_max ? c10::optional<at::Scalar>(S(mx)) : c10::optional<at::Scalar>()));
}
LR_API lr_tensor lr_math_clamp_tensor(lr_tensor a, lr_tensor mn, lr_tensor mx) { LR_TENSOR(at::clamp(T(a), opt(mn), opt(mx))); }
LR_API lr_tensor lr_math_lerp_scalar(lr_tensor a, lr_tensor end, double w) { LR_TENSOR(at::lerp(T(a), T(end), at::Scalar(w))); }
LR_API lr_tensor lr_math_lerp(lr_tensor a, lr_tensor end, lr_tensor w) { LR_TENSOR(at::lerp(T(a), T(end), T(w))); }
LR_API lr_tensor lr_math_addcmul(lr_tensor a, lr_tensor t1, lr_tensor t2, double value) { LR_TENSOR(at::addcmul(T(a), T(t1), T(t2), S(value))); }
LR_API lr_tensor lr_math_addcdiv(lr_tensor a, lr_tensor t1, lr_tensor t2, double value) { LR_TENSOR(at::addcdiv(T(a), T(t1), T(t2), S(value))); }

// ======================= comparisons and selection =======================
#define LR_MATH_CMP(name)                                                                              \
  LR_API lr_tensor lr_math_##name(lr_tensor a, lr_tensor b) { LR_TENSOR(at::name(T(a), T(b))); }       \
  LR_API lr_tensor lr_math_##name##_scalar(lr_tensor a, double b) { LR_TENSOR(at::name(T(a), S(b))); }
LR_MATH_CMP(eq) LR_MATH_CMP(ne) LR_MATH_CMP(lt) LR_MATH_CMP(le) LR_MATH_CMP(gt) LR_MATH_CMP(ge)

LR_API lr_tensor lr_math_logical_and(lr_tensor a, lr_tensor b) { LR_TENSOR(at::logical_and(T(a), T(b))); }
LR_API lr_tensor lr_math_logical_or(lr_tensor a, lr_tensor b) { LR_TENSOR(at::logical_or(T(a), T(b))); }
LR_API lr_tensor lr_math_logical_xor(lr_tensor a, lr_tensor b) { LR_TENSOR(at::logical_xor(T(a), T(b))); }

LR_API int lr_math_equal(lr_tensor a, lr_tensor b) { LR_VALUE(-1, at::equal(T(a), T(b)) ? 1 : 0); }
LR_API int lr_math_allclose(lr_tensor a, lr_tensor b, double rtol, double atol, int equal_nan) {
  LR_VALUE(-1, at::allclose(T(a), T(b), rtol, atol, equal_nan != 0) ? 1 : 0);
}

LR_API lr_tensor lr_math_where(lr_tensor c, lr_tensor a, lr_tensor b) { LR_TENSOR(at::where(T(c), T(a), T(b))); }
LR_API lr_tensor lr_math_where_scalar_self(lr_tensor c, double a, lr_tensor b) { LR_TENSOR(at::where(T(c), S(a), T(b))); }
LR_API lr_tensor lr_math_where_scalar_other(lr_tensor c, lr_tensor a, double b) { LR_TENSOR(at::where(T(c), T(a), S(b))); }
// Both branches scalars: the result has the default floating type when either is fractional, else int64 (as Python
// scalars would); `dtype` >= 0 forces the type.
LR_API lr_tensor lr_math_where_scalars(lr_tensor c, double a, double b, int dtype) {
  try {
    const auto& cond = T(c);
    at::ScalarType st;
    if (dtype >= 0) st = (c10::ScalarType)dtype;
    else {
      auto sa = S(a), sb = S(b);
      st = (sa.isFloatingPoint() || sb.isFloatingPoint()) ? c10::typeMetaToScalarType(at::get_default_dtype()) : at::kLong;
    }
    auto opts = cond.options().dtype(st);
    return new at::Tensor(at::where(cond, at::scalar_tensor(S(a), opts), at::scalar_tensor(S(b), opts)));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_math_masked_fill(lr_tensor a, lr_tensor mask, double v) { LR_TENSOR(at::masked_fill(T(a), T(mask), S(v))); }
LR_API lr_tensor lr_math_masked_fill_tensor(lr_tensor a, lr_tensor mask, lr_tensor v) { LR_TENSOR(at::masked_fill(T(a), T(mask), T(v))); }

// ======================= reductions =======================
// n < 0: no dims (reduce everything; with keepdim every dim is kept with size 1).
LR_API lr_tensor lr_math_sum(lr_tensor a, const int64_t* d, int n, int keepdim, int dtype) {
  try {
    const auto& x = T(a);
    if (n < 0 && !keepdim) return new at::Tensor(at::sum(x, DT(dtype)));
    if (n < 0) { auto all = all_dims(x); return new at::Tensor(at::sum(x, at::OptionalIntArrayRef(all), true, DT(dtype))); }
    return new at::Tensor(at::sum(x, at::OptionalIntArrayRef(dims(d, n)), keepdim != 0, DT(dtype)));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_math_mean(lr_tensor a, const int64_t* d, int n, int keepdim, int dtype) {
  try {
    const auto& x = T(a);
    if (n < 0 && !keepdim) return new at::Tensor(at::mean(x, DT(dtype)));
    if (n < 0) { auto all = all_dims(x); return new at::Tensor(at::mean(x, at::OptionalIntArrayRef(all), true, DT(dtype))); }
    return new at::Tensor(at::mean(x, at::OptionalIntArrayRef(dims(d, n)), keepdim != 0, DT(dtype)));
  } LR_CATCH_BLOCK(return nullptr)
}

// libtorch's prod reduces one dim at a time: several dims are reduced from the highest (after wrapping) down.
LR_API lr_tensor lr_math_prod(lr_tensor a, const int64_t* d, int n, int keepdim, int dtype) {
  try {
    const auto& x = T(a);
    if (n < 0 && !keepdim) return new at::Tensor(at::prod(x, DT(dtype)));
    std::vector<int64_t> ds = n < 0 ? all_dims(x) : std::vector<int64_t>(d, d + n);
    int64_t nd = x.dim();
    for (auto& v : ds) v = c10::maybe_wrap_dim(v, nd);
    std::sort(ds.begin(), ds.end());
    for (size_t i = 1; i < ds.size(); i++)
      if (ds[i] == ds[i - 1]) throw std::invalid_argument("prod: dim " + std::to_string(ds[i]) + " appears multiple times in the list of dims");
    if (ds.empty()) return new at::Tensor(at::prod(x, DT(dtype)));
    at::Tensor r = x;
    bool first = true;
    for (auto it = ds.rbegin(); it != ds.rend(); ++it) {
      r = first ? at::prod(r, *it, keepdim != 0, DT(dtype)) : at::prod(r, *it, keepdim != 0);
      first = false;
    }
    return new at::Tensor(r);
  } LR_CATCH_BLOCK(return nullptr)
}

// kind 0 = var, 1 = std. correction: the divisor is N - correction (unbiased = 1).
LR_API lr_tensor lr_math_var_std(lr_tensor a, const int64_t* d, int n, double correction, int keepdim, int kind) {
  try {
    const auto& x = T(a);
    std::vector<int64_t> all;
    at::OptionalIntArrayRef od = c10::nullopt;
    if (n >= 0) od = dims(d, n);
    else if (keepdim) { all = all_dims(x); od = at::IntArrayRef(all); }
#if LR_TORCH2
    c10::optional<at::Scalar> corr(at::Scalar(correction));
#else
    if (correction != std::trunc(correction))
      throw std::invalid_argument("var/std: a fractional correction needs libtorch 2.x (got " + std::to_string(correction) + ")");
    c10::optional<int64_t> corr((int64_t)correction);
#endif
    return new at::Tensor(kind == 0 ? at::var(x, od, corr, keepdim != 0) : at::std(x, od, corr, keepdim != 0));
  } LR_CATCH_BLOCK(return nullptr)
}

// max/min over all elements, or along one dim as (values, indices).
LR_API lr_tensor lr_math_max_all(lr_tensor a) { LR_TENSOR(at::max(T(a))); }
LR_API lr_tensor lr_math_min_all(lr_tensor a) { LR_TENSOR(at::min(T(a))); }
LR_API int lr_math_max_dim(lr_tensor a, int64_t dim, int keepdim, lr_tensor* values, lr_tensor* indices) {
  *values = nullptr; *indices = nullptr;
  LR_STATUS({
    auto r = at::max(T(a), dim, keepdim != 0);
    *values = new at::Tensor(std::get<0>(r));
    *indices = new at::Tensor(std::get<1>(r));
  });
}
LR_API int lr_math_min_dim(lr_tensor a, int64_t dim, int keepdim, lr_tensor* values, lr_tensor* indices) {
  *values = nullptr; *indices = nullptr;
  LR_STATUS({
    auto r = at::min(T(a), dim, keepdim != 0);
    *values = new at::Tensor(std::get<0>(r));
    *indices = new at::Tensor(std::get<1>(r));
  });
}

// amax/amin: an empty (or absent) dim list reduces every dim.
LR_API lr_tensor lr_math_amax(lr_tensor a, const int64_t* d, int n, int keepdim) {
  LR_TENSOR(at::amax(T(a), n < 0 ? at::IntArrayRef() : dims(d, n), keepdim != 0));
}
LR_API lr_tensor lr_math_amin(lr_tensor a, const int64_t* d, int n, int keepdim) {
  LR_TENSOR(at::amin(T(a), n < 0 ? at::IntArrayRef() : dims(d, n), keepdim != 0));
}

// has_dim = 0: over the flattened tensor.
LR_API lr_tensor lr_math_argmax(lr_tensor a, int has_dim, int64_t dim, int keepdim) {
  LR_TENSOR(at::argmax(T(a), has_dim ? c10::optional<int64_t>(dim) : c10::nullopt, keepdim != 0));
}
LR_API lr_tensor lr_math_argmin(lr_tensor a, int has_dim, int64_t dim, int keepdim) {
  LR_TENSOR(at::argmin(T(a), has_dim ? c10::optional<int64_t>(dim) : c10::nullopt, keepdim != 0));
}

LR_API lr_tensor lr_math_norm(lr_tensor a, double p, const int64_t* d, int n, int keepdim) {
  try {
    const auto& x = T(a);
    if (n < 0 && !keepdim) return new at::Tensor(at::norm(x, at::Scalar(p)));
    std::vector<int64_t> all;
    at::IntArrayRef ds = n < 0 ? at::IntArrayRef(all = all_dims(x)) : dims(d, n);
    return new at::Tensor(at::norm(x, c10::optional<at::Scalar>(at::Scalar(p)), ds, keepdim != 0));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_math_logsumexp(lr_tensor a, const int64_t* d, int n, int keepdim) {
  try {
    const auto& x = T(a);
    std::vector<int64_t> all;
    at::IntArrayRef ds = n < 0 ? at::IntArrayRef(all = all_dims(x)) : dims(d, n);
    return new at::Tensor(at::logsumexp(x, ds, keepdim != 0));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_math_cumsum(lr_tensor a, int64_t dim, int dtype) { LR_TENSOR(at::cumsum(T(a), dim, DT(dtype))); }

LR_API lr_tensor lr_math_any(lr_tensor a) { LR_TENSOR(at::any(T(a))); }
LR_API lr_tensor lr_math_all(lr_tensor a) { LR_TENSOR(at::all(T(a))); }
LR_API lr_tensor lr_math_any_dim(lr_tensor a, int64_t dim, int keepdim) { LR_TENSOR(at::any(T(a), dim, keepdim != 0)); }
LR_API lr_tensor lr_math_all_dim(lr_tensor a, int64_t dim, int keepdim) { LR_TENSOR(at::all(T(a), dim, keepdim != 0)); }

// ======================= linear algebra =======================
LR_API lr_tensor lr_math_matmul(lr_tensor a, lr_tensor b) { LR_TENSOR(at::matmul(T(a), T(b))); }
LR_API lr_tensor lr_math_mm(lr_tensor a, lr_tensor b) { LR_TENSOR(at::mm(T(a), T(b))); }
LR_API lr_tensor lr_math_bmm(lr_tensor a, lr_tensor b) { LR_TENSOR(at::bmm(T(a), T(b))); }
LR_API lr_tensor lr_math_mv(lr_tensor a, lr_tensor v) { LR_TENSOR(at::mv(T(a), T(v))); }
LR_API lr_tensor lr_math_addmm(lr_tensor input, lr_tensor m1, lr_tensor m2, double beta, double alpha) {
  LR_TENSOR(at::addmm(T(input), T(m1), T(m2), S(beta), S(alpha)));
}
LR_API lr_tensor lr_math_baddbmm(lr_tensor input, lr_tensor b1, lr_tensor b2, double beta, double alpha) {
  LR_TENSOR(at::baddbmm(T(input), T(b1), T(b2), S(beta), S(alpha)));
}
LR_API lr_tensor lr_math_outer(lr_tensor a, lr_tensor b) { LR_TENSOR(at::outer(T(a), T(b))); }
LR_API lr_tensor lr_math_dot(lr_tensor a, lr_tensor b) { LR_TENSOR(at::dot(T(a), T(b))); }
LR_API lr_tensor lr_math_einsum(const char* equation, lr_tensor* ts, int n) {
  try {
    if (equation == nullptr) throw std::invalid_argument("einsum: null equation");
    std::vector<at::Tensor> v;
    v.reserve((size_t)n);
    for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
    return new at::Tensor(at::einsum(equation, v));
  } LR_CATCH_BLOCK(return nullptr)
}
