// Shape and indexing ops: views, joins and splits, slicing, Python-style indexing, gather/scatter, sorting,
// triangular masks, padding. Every export is lr_shape_<op>; see lr_common.h for the conventions.
#include "lr_common.h"
#include <ATen/TensorIndexing.h>
#include <cstdlib>

namespace {

std::vector<at::Tensor> tensor_list(lr_tensor* ts, int n) {
  if (n < 0) throw std::invalid_argument("negative tensor count");
  if (n > 0 && ts == nullptr) throw std::invalid_argument("null tensor list");
  std::vector<at::Tensor> v;
  v.reserve((size_t)n);
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}

// Moves a list of tensors into a heap array of handles the caller frees with lr_shape_free_array
// (after taking ownership of each handle).
lr_tensor* handle_array(const std::vector<at::Tensor>& v, int* count) {
  auto* arr = static_cast<lr_tensor*>(std::malloc(sizeof(lr_tensor) * (v.empty() ? 1 : v.size())));
  if (arr == nullptr) throw std::bad_alloc();
  size_t i = 0;
  try {
    for (; i < v.size(); i++) arr[i] = new at::Tensor(v[i]);
  } catch (...) {
    for (size_t j = 0; j < i; j++) delete arr[j];
    std::free(arr);
    throw;
  }
  *count = (int)v.size();
  return arr;
}

// Python-style index list. Each entry is 4 int64: kind, a, b, c.
//   kind 0 = integer a; 1 = slice a:b:c; 2 = ellipsis; 3 = None (new axis); 4 = tensor tensors[i]; 5 = bool a != 0.
std::vector<at::indexing::TensorIndex> index_list(const int64_t* spec, lr_tensor* tensors, int n) {
  using namespace at::indexing;
  if (n < 0) throw std::invalid_argument("negative index count");
  std::vector<TensorIndex> v;
  v.reserve((size_t)n);
  for (int i = 0; i < n; i++) {
    const int64_t* e = spec + 4 * i;
    switch (e[0]) {
      case 0: v.emplace_back(e[1]); break;
      case 1: v.emplace_back(Slice(e[1], e[2], e[3])); break;
      case 2: v.emplace_back(Ellipsis); break;
      case 3: v.emplace_back(None); break;
      case 4:
        if (tensors == nullptr || tensors[i] == nullptr) throw std::invalid_argument("tensor index " + std::to_string(i) + " is null");
        v.emplace_back(*tensors[i]);
        break;
      case 5: v.emplace_back(e[1] != 0); break;
      default: throw std::invalid_argument("unknown index kind " + std::to_string(e[0]));
    }
  }
  return v;
}

}  // namespace

LR_API void lr_shape_free_array(lr_tensor* arr) { std::free(arr); }

// ---- views and reshapes ----
LR_API lr_tensor lr_shape_view(lr_tensor t, const int64_t* s, int n) { LR_TENSOR(T(t).view(dims(s, n))); }
LR_API lr_tensor lr_shape_view_as(lr_tensor t, lr_tensor o) { LR_TENSOR(T(t).view_as(T(o))); }
LR_API lr_tensor lr_shape_reshape(lr_tensor t, const int64_t* s, int n) { LR_TENSOR(T(t).reshape(dims(s, n))); }
LR_API lr_tensor lr_shape_reshape_as(lr_tensor t, lr_tensor o) { LR_TENSOR(T(t).reshape_as(T(o))); }
LR_API lr_tensor lr_shape_flatten(lr_tensor t, int64_t start, int64_t end) { LR_TENSOR(T(t).flatten(start, end)); }
LR_API lr_tensor lr_shape_unflatten(lr_tensor t, int64_t dim, const int64_t* s, int n) { LR_TENSOR(T(t).unflatten(dim, dims(s, n))); }
LR_API lr_tensor lr_shape_permute(lr_tensor t, const int64_t* d, int n) { LR_TENSOR(T(t).permute(dims(d, n))); }
LR_API lr_tensor lr_shape_movedim(lr_tensor t, const int64_t* src, const int64_t* dst, int n) {
  LR_TENSOR(T(t).movedim(dims(src, n), dims(dst, n)));
}
LR_API lr_tensor lr_shape_transpose(lr_tensor t, int64_t d0, int64_t d1) { LR_TENSOR(T(t).transpose(d0, d1)); }
LR_API lr_tensor lr_shape_t(lr_tensor t) { LR_TENSOR(T(t).t()); }
LR_API lr_tensor lr_shape_mT(lr_tensor t) {
  try {
    const auto& x = T(t);
    TORCH_CHECK(x.dim() >= 2, "tensor.mT is only supported on matrices or batches of matrices. Got ", x.dim(), "-D tensor.");
    return new at::Tensor(x.transpose(-2, -1));
  } LR_CATCH_BLOCK(return nullptr)
}
LR_API lr_tensor lr_shape_squeeze(lr_tensor t) { LR_TENSOR(T(t).squeeze()); }
LR_API lr_tensor lr_shape_squeeze_dim(lr_tensor t, int64_t d) { LR_TENSOR(T(t).squeeze(d)); }
LR_API lr_tensor lr_shape_unsqueeze(lr_tensor t, int64_t d) { LR_TENSOR(T(t).unsqueeze(d)); }
LR_API lr_tensor lr_shape_expand(lr_tensor t, const int64_t* s, int n) { LR_TENSOR(T(t).expand(dims(s, n))); }
LR_API lr_tensor lr_shape_expand_as(lr_tensor t, lr_tensor o) { LR_TENSOR(T(t).expand_as(T(o))); }
LR_API lr_tensor lr_shape_repeat(lr_tensor t, const int64_t* s, int n) { LR_TENSOR(T(t).repeat(dims(s, n))); }
// has_dim == 0: flatten first (PyTorch's dim=None).
LR_API lr_tensor lr_shape_repeat_interleave(lr_tensor t, int64_t repeats, int64_t dim, int has_dim) {
  LR_TENSOR(T(t).repeat_interleave(repeats, has_dim ? c10::optional<int64_t>(dim) : c10::nullopt));
}
LR_API lr_tensor lr_shape_repeat_interleave_t(lr_tensor t, lr_tensor repeats, int64_t dim, int has_dim) {
  LR_TENSOR(T(t).repeat_interleave(T(repeats), has_dim ? c10::optional<int64_t>(dim) : c10::nullopt));
}

// ---- joins and splits ----
LR_API lr_tensor lr_shape_cat(lr_tensor* ts, int n, int64_t dim) { LR_TENSOR(at::cat(tensor_list(ts, n), dim)); }
LR_API lr_tensor lr_shape_stack(lr_tensor* ts, int n, int64_t dim) { LR_TENSOR(at::stack(tensor_list(ts, n), dim)); }
LR_API lr_tensor* lr_shape_split(lr_tensor t, int64_t size, int64_t dim, int* count) {
  LR_VALUE(nullptr, handle_array(T(t).split(size, dim), count));
}
LR_API lr_tensor* lr_shape_split_sizes(lr_tensor t, const int64_t* sizes, int n, int64_t dim, int* count) {
  LR_VALUE(nullptr, handle_array(T(t).split_with_sizes(dims(sizes, n), dim), count));
}
LR_API lr_tensor* lr_shape_chunk(lr_tensor t, int64_t chunks, int64_t dim, int* count) {
  LR_VALUE(nullptr, handle_array(T(t).chunk(chunks, dim), count));
}
LR_API lr_tensor* lr_shape_unbind(lr_tensor t, int64_t dim, int* count) { LR_VALUE(nullptr, handle_array(T(t).unbind(dim), count)); }
// indexing: 0 = "ij", 1 = "xy".
LR_API lr_tensor* lr_shape_meshgrid(lr_tensor* ts, int n, int indexing, int* count) {
  LR_VALUE(nullptr, handle_array(at::meshgrid(tensor_list(ts, n), indexing == 1 ? "xy" : "ij"), count));
}

// ---- slicing ----
LR_API lr_tensor lr_shape_narrow(lr_tensor t, int64_t dim, int64_t start, int64_t length) { LR_TENSOR(T(t).narrow(dim, start, length)); }
LR_API lr_tensor lr_shape_slice(lr_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step) {
  LR_TENSOR(T(t).slice(dim, c10::optional<int64_t>(start), c10::optional<int64_t>(end), step));
}
LR_API lr_tensor lr_shape_select(lr_tensor t, int64_t dim, int64_t index) { LR_TENSOR(T(t).select(dim, index)); }
LR_API lr_tensor lr_shape_index(lr_tensor t, const int64_t* spec, lr_tensor* tensors, int n) {
  LR_TENSOR(T(t).index(index_list(spec, tensors, n)));
}
// self[indices] = value; the value is converted to self's dtype and device first (as Python's setitem does).
LR_API int lr_shape_index_put_(lr_tensor t, const int64_t* spec, lr_tensor* tensors, int n, lr_tensor value) {
  LR_STATUS({
    auto self = T(t);
    const auto& v = T(value);
    auto idx = index_list(spec, tensors, n);
    if (v.scalar_type() != self.scalar_type() || v.device() != self.device())
      self.index_put_(idx, v.to(self.device(), self.scalar_type()));
    else
      self.index_put_(idx, v);
  });
}
LR_API int lr_shape_index_put_scalar_(lr_tensor t, const int64_t* spec, lr_tensor* tensors, int n, double value) {
  LR_STATUS({
    auto self = T(t);
    auto idx = index_list(spec, tensors, n);
    self.index_put_(idx, at::Scalar(value));
  });
}

// ---- gather / scatter ----
LR_API lr_tensor lr_shape_index_select(lr_tensor t, int64_t dim, lr_tensor idx) { LR_TENSOR(T(t).index_select(dim, T(idx))); }
LR_API lr_tensor lr_shape_gather(lr_tensor t, int64_t dim, lr_tensor idx, int sparse_grad) {
  LR_TENSOR(T(t).gather(dim, T(idx), sparse_grad != 0));
}
LR_API lr_tensor lr_shape_take_along_dim(lr_tensor t, lr_tensor idx, int64_t dim, int has_dim) {
  LR_TENSOR(T(t).take_along_dim(T(idx), has_dim ? c10::optional<int64_t>(dim) : c10::nullopt));
}
LR_API lr_tensor lr_shape_scatter(lr_tensor t, int64_t dim, lr_tensor idx, lr_tensor src) { LR_TENSOR(T(t).scatter(dim, T(idx), T(src))); }
LR_API int lr_shape_scatter_(lr_tensor t, int64_t dim, lr_tensor idx, lr_tensor src) { LR_STATUS(T(t).scatter_(dim, T(idx), T(src))); }
LR_API lr_tensor lr_shape_scatter_value(lr_tensor t, int64_t dim, lr_tensor idx, double value) {
  LR_TENSOR(T(t).scatter(dim, T(idx), at::Scalar(value)));
}
LR_API int lr_shape_scatter_value_(lr_tensor t, int64_t dim, lr_tensor idx, double value) {
  LR_STATUS(T(t).scatter_(dim, T(idx), at::Scalar(value)));
}
LR_API lr_tensor lr_shape_scatter_add(lr_tensor t, int64_t dim, lr_tensor idx, lr_tensor src) { LR_TENSOR(T(t).scatter_add(dim, T(idx), T(src))); }
LR_API int lr_shape_scatter_add_(lr_tensor t, int64_t dim, lr_tensor idx, lr_tensor src) { LR_STATUS(T(t).scatter_add_(dim, T(idx), T(src))); }
LR_API lr_tensor lr_shape_index_add(lr_tensor t, int64_t dim, lr_tensor idx, lr_tensor src, double alpha) {
  LR_TENSOR(T(t).index_add(dim, T(idx), T(src), at::Scalar(alpha)));
}
LR_API int lr_shape_index_add_(lr_tensor t, int64_t dim, lr_tensor idx, lr_tensor src, double alpha) {
  LR_STATUS(T(t).index_add_(dim, T(idx), T(src), at::Scalar(alpha)));
}
LR_API lr_tensor lr_shape_index_copy(lr_tensor t, int64_t dim, lr_tensor idx, lr_tensor src) { LR_TENSOR(T(t).index_copy(dim, T(idx), T(src))); }
LR_API int lr_shape_index_copy_(lr_tensor t, int64_t dim, lr_tensor idx, lr_tensor src) { LR_STATUS(T(t).index_copy_(dim, T(idx), T(src))); }
LR_API lr_tensor lr_shape_index_fill(lr_tensor t, int64_t dim, lr_tensor idx, double value) {
  LR_TENSOR(T(t).index_fill(dim, T(idx), at::Scalar(value)));
}
LR_API int lr_shape_index_fill_(lr_tensor t, int64_t dim, lr_tensor idx, double value) {
  LR_STATUS(T(t).index_fill_(dim, T(idx), at::Scalar(value)));
}
LR_API lr_tensor lr_shape_masked_select(lr_tensor t, lr_tensor mask) { LR_TENSOR(T(t).masked_select(T(mask))); }
LR_API lr_tensor lr_shape_masked_scatter(lr_tensor t, lr_tensor mask, lr_tensor src) { LR_TENSOR(T(t).masked_scatter(T(mask), T(src))); }
LR_API int lr_shape_masked_scatter_(lr_tensor t, lr_tensor mask, lr_tensor src) { LR_STATUS(T(t).masked_scatter_(T(mask), T(src))); }
LR_API lr_tensor lr_shape_nonzero(lr_tensor t) { LR_TENSOR(T(t).nonzero()); }

// ---- triangles, diagonals ----
LR_API lr_tensor lr_shape_tril(lr_tensor t, int64_t k) { LR_TENSOR(T(t).tril(k)); }
LR_API lr_tensor lr_shape_triu(lr_tensor t, int64_t k) { LR_TENSOR(T(t).triu(k)); }
LR_API int lr_shape_tril_(lr_tensor t, int64_t k) { LR_STATUS(T(t).tril_(k)); }
LR_API int lr_shape_triu_(lr_tensor t, int64_t k) { LR_STATUS(T(t).triu_(k)); }
LR_API lr_tensor lr_shape_diag(lr_tensor t, int64_t k) { LR_TENSOR(T(t).diag(k)); }
LR_API lr_tensor lr_shape_diagonal(lr_tensor t, int64_t offset, int64_t d1, int64_t d2) { LR_TENSOR(T(t).diagonal(offset, d1, d2)); }
LR_API lr_tensor lr_shape_diag_embed(lr_tensor t, int64_t offset, int64_t d1, int64_t d2) { LR_TENSOR(T(t).diag_embed(offset, d1, d2)); }

// ---- sorting ----
LR_API int lr_shape_topk(lr_tensor t, int64_t k, int64_t dim, int largest, int sorted, lr_tensor* values, lr_tensor* indices) {
  LR_STATUS({
    auto r = T(t).topk(k, dim, largest != 0, sorted != 0);
    auto* v = new at::Tensor(std::get<0>(r));
    *indices = new at::Tensor(std::get<1>(r));
    *values = v;
  });
}
LR_API int lr_shape_sort(lr_tensor t, int64_t dim, int descending, int stable, lr_tensor* values, lr_tensor* indices) {
  LR_STATUS({
    auto r = at::sort(T(t), c10::optional<bool>(stable != 0), dim, descending != 0);
    auto* v = new at::Tensor(std::get<0>(r));
    *indices = new at::Tensor(std::get<1>(r));
    *values = v;
  });
}
LR_API lr_tensor lr_shape_argsort(lr_tensor t, int64_t dim, int descending, int stable) {
  LR_TENSOR(at::argsort(T(t), stable != 0, dim, descending != 0));
}

// ---- reordering ----
LR_API lr_tensor lr_shape_flip(lr_tensor t, const int64_t* d, int n) { LR_TENSOR(T(t).flip(dims(d, n))); }
LR_API lr_tensor lr_shape_roll(lr_tensor t, const int64_t* shifts, int ns, const int64_t* d, int nd) {
  LR_TENSOR(T(t).roll(dims(shifts, ns), dims(d, nd)));
}

// ---- encoding, padding ----
LR_API lr_tensor lr_shape_one_hot(lr_tensor t, int64_t num_classes) { LR_TENSOR(at::one_hot(T(t), num_classes)); }
LR_API lr_tensor lr_shape_constant_pad(lr_tensor t, const int64_t* pad, int n, double value) {
  LR_TENSOR(at::constant_pad_nd(T(t), dims(pad, n), at::Scalar(value)));
}
