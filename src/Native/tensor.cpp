// Tensor handles: creation, properties, data transfer, dtype/device moves.
#include "lr_common.h"
#include <cstring>

LR_API void lr_tensor_free(lr_tensor t) { try { delete t; } catch (...) {} }

LR_API lr_tensor lr_tensor_alias(lr_tensor t) { LR_TENSOR(T(t)); }

// ---- properties ----
LR_API int lr_tensor_ndim(lr_tensor t) { LR_VALUE(-1, (int)T(t).dim()); }
LR_API int lr_tensor_shape(lr_tensor t, int64_t* out, int cap) {
  LR_STATUS({
    auto s = T(t).sizes();
    if ((int)s.size() > cap) throw std::invalid_argument("shape buffer too small");
    for (size_t i = 0; i < s.size(); i++) out[i] = s[i];
  });
}
LR_API int lr_tensor_strides(lr_tensor t, int64_t* out, int cap) {
  LR_STATUS({
    auto s = T(t).strides();
    if ((int)s.size() > cap) throw std::invalid_argument("stride buffer too small");
    for (size_t i = 0; i < s.size(); i++) out[i] = s[i];
  });
}
LR_API int64_t lr_tensor_numel(lr_tensor t) { LR_VALUE(-1, T(t).numel()); }
LR_API int lr_tensor_dtype(lr_tensor t) { LR_VALUE(-1, (int)T(t).scalar_type()); }
LR_API int lr_tensor_device(lr_tensor t, int* kind, int* index) {
  LR_STATUS({
    auto d = T(t).device();
    *index = d.has_index() ? d.index() : -1;
    if (d.is_cpu()) *kind = 0;
    else if (d.is_cuda()) *kind = 1;
    else if (d.type() == c10::DeviceType::Meta) *kind = 2;
    else *kind = 99;
  });
}
LR_API int lr_tensor_is_contiguous(lr_tensor t) { LR_VALUE(-1, T(t).is_contiguous() ? 1 : 0); }
LR_API int lr_tensor_requires_grad(lr_tensor t) { LR_VALUE(-1, T(t).requires_grad() ? 1 : 0); }
LR_API int lr_tensor_set_requires_grad(lr_tensor t, int flag) { LR_STATUS(T(t).requires_grad_(flag != 0)); }
LR_API int lr_tensor_is_leaf(lr_tensor t) { LR_VALUE(-1, T(t).is_leaf() ? 1 : 0); }
LR_API int lr_tensor_defined(lr_tensor t) { LR_VALUE(-1, T(t).defined() ? 1 : 0); }
LR_API int64_t lr_tensor_data_ptr(lr_tensor t) { LR_VALUE(0, (int64_t)(intptr_t)T(t).data_ptr()); }
LR_API int64_t lr_tensor_element_size(lr_tensor t) { LR_VALUE(-1, (int64_t)T(t).element_size()); }

// ---- creation ----
LR_API lr_tensor lr_tensor_empty(const int64_t* shape, int n, int dtype, int dk, int di, int rg) {
  LR_TENSOR(torch::empty(dims(shape, n), lr_options(dtype, dk, di, rg)));
}
LR_API lr_tensor lr_tensor_zeros(const int64_t* shape, int n, int dtype, int dk, int di, int rg) {
  LR_TENSOR(torch::zeros(dims(shape, n), lr_options(dtype, dk, di, rg)));
}
LR_API lr_tensor lr_tensor_ones(const int64_t* shape, int n, int dtype, int dk, int di, int rg) {
  LR_TENSOR(torch::ones(dims(shape, n), lr_options(dtype, dk, di, rg)));
}
LR_API lr_tensor lr_tensor_full(const int64_t* shape, int n, double value, int dtype, int dk, int di, int rg) {
  LR_TENSOR(torch::full(dims(shape, n), value, lr_options(dtype, dk, di, rg)));
}
LR_API lr_tensor lr_tensor_arange(double start, double end, double step, int dtype, int dk, int di, int rg) {
  LR_TENSOR(torch::arange(start, end, step, lr_options(dtype, dk, di, rg)));
}
LR_API lr_tensor lr_tensor_linspace(double start, double end, int64_t steps, int dtype, int dk, int di, int rg) {
  LR_TENSOR(torch::linspace(start, end, steps, lr_options(dtype, dk, di, rg)));
}
LR_API lr_tensor lr_tensor_eye(int64_t n, int64_t m, int dtype, int dk, int di, int rg) {
  LR_TENSOR(torch::eye(n, m, lr_options(dtype, dk, di, rg)));
}
LR_API lr_tensor lr_tensor_zeros_like(lr_tensor t) { LR_TENSOR(at::zeros_like(T(t))); }
LR_API lr_tensor lr_tensor_ones_like(lr_tensor t) { LR_TENSOR(at::ones_like(T(t))); }
LR_API lr_tensor lr_tensor_empty_like(lr_tensor t) { LR_TENSOR(at::empty_like(T(t))); }

// Copies `nbytes` of host data into a new CPU tensor of the given dtype and shape.
LR_API lr_tensor lr_tensor_from_data(const void* data, const int64_t* shape, int n, int dtype, int rg) {
  try {
    auto t = at::empty(dims(shape, n), at::TensorOptions().dtype((c10::ScalarType)dtype));
    if (t.numel() > 0) std::memcpy(t.data_ptr(), data, (size_t)t.numel() * t.element_size());
    if (rg) t.requires_grad_(true);
    return new at::Tensor(t);
  } LR_CATCH_BLOCK(return nullptr)
}

// Copies the tensor's elements (converted to a contiguous CPU tensor of its own dtype) into `dst`.
LR_API int lr_tensor_copy_to(lr_tensor t, void* dst, int64_t nbytes) {
  LR_STATUS({
    auto c = T(t).detach().to(c10::Device(c10::DeviceType::CPU)).contiguous();
    int64_t need = c.numel() * (int64_t)c.element_size();
    if (need != nbytes) throw std::invalid_argument("copy_to: buffer has " + std::to_string(nbytes) + " bytes, tensor needs " + std::to_string(need));
    if (need > 0) std::memcpy(dst, c.data_ptr(), (size_t)need);
  });
}

LR_API double lr_tensor_item(lr_tensor t) { LR_VALUE(0.0, T(t).item<double>()); }

// ---- moves ----
LR_API lr_tensor lr_tensor_to(lr_tensor t, int dtype, int dk, int di, int copy, int non_blocking) {
  try {
    const auto& x = T(t);
    auto dt = dtype < 0 ? x.scalar_type() : (c10::ScalarType)dtype;
    if (dk < 0) return new at::Tensor(x.to(dt, non_blocking != 0, copy != 0));
    return new at::Tensor(x.to(lr_device(dk, di), dt, non_blocking != 0, copy != 0));
  } LR_CATCH_BLOCK(return nullptr)
}
LR_API lr_tensor lr_tensor_clone(lr_tensor t) { LR_TENSOR(T(t).clone()); }
LR_API lr_tensor lr_tensor_contiguous(lr_tensor t) { LR_TENSOR(T(t).contiguous()); }

LR_API const char* lr_tensor_to_string(lr_tensor t) {
  static thread_local std::string s;
  try { std::ostringstream os; os << T(t); s = os.str(); return s.c_str(); } LR_CATCH_BLOCK(return nullptr)
}

// Replaces the data of `t` with `src` (same autograd identity; used to move/convert parameters in place).
LR_API int lr_tensor_set_data(lr_tensor t, lr_tensor src) {
  LR_STATUS({ auto x = T(t); x.set_data(T(src)); });
}

// Whether two handles alias the same tensor implementation.
LR_API int lr_tensor_is_same(lr_tensor a, lr_tensor b) { LR_VALUE(-1, T(a).is_same(T(b)) ? 1 : 0); }
