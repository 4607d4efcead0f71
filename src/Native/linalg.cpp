// torch.linalg: decompositions, solves, inverses, determinants and norms. Functions with several results write
// owned handles into the out pointers only once every result has been computed (nothing leaks on failure).
#include "lr_common.h"

LR_API int lr_linalg_svd(lr_tensor a, int full_matrices, lr_tensor* u, lr_tensor* s, lr_tensor* vh) {
  LR_STATUS({
    auto r = at::linalg_svd(T(a), full_matrices != 0);
    *u = new at::Tensor(std::get<0>(r));
    *s = new at::Tensor(std::get<1>(r));
    *vh = new at::Tensor(std::get<2>(r));
  });
}

LR_API lr_tensor lr_linalg_svdvals(lr_tensor a) { LR_TENSOR(at::linalg_svdvals(T(a))); }

// mode: 0 = reduced, 1 = complete, 2 = r (Q is empty).
LR_API int lr_linalg_qr(lr_tensor a, int mode, lr_tensor* q, lr_tensor* r) {
  LR_STATUS({
    TORCH_CHECK(mode >= 0 && mode <= 2, "qr: unknown mode code ", mode);
    auto res = at::linalg_qr(T(a), mode == 0 ? "reduced" : mode == 1 ? "complete" : "r");
    *q = new at::Tensor(std::get<0>(res));
    *r = new at::Tensor(std::get<1>(res));
  });
}

// upper: 0 = use the lower triangle ("L"), 1 = the upper ("U").
LR_API int lr_linalg_eigh(lr_tensor a, int upper, lr_tensor* w, lr_tensor* v) {
  LR_STATUS({
    auto res = at::linalg_eigh(T(a), upper ? "U" : "L");
    *w = new at::Tensor(std::get<0>(res));
    *v = new at::Tensor(std::get<1>(res));
  });
}

LR_API lr_tensor lr_linalg_eigvalsh(lr_tensor a, int upper) { LR_TENSOR(at::linalg_eigvalsh(T(a), upper ? "U" : "L")); }
LR_API lr_tensor lr_linalg_solve(lr_tensor a, lr_tensor b, int left) { LR_TENSOR(at::linalg_solve(T(a), T(b), left != 0)); }
LR_API lr_tensor lr_linalg_inv(lr_tensor a) { LR_TENSOR(at::linalg_inv(T(a))); }

LR_API lr_tensor lr_linalg_pinv(lr_tensor a, double atol, int has_atol, double rtol, int has_rtol, int hermitian) {
  LR_TENSOR(at::linalg_pinv(T(a), has_atol ? c10::optional<double>(atol) : c10::nullopt,
                            has_rtol ? c10::optional<double>(rtol) : c10::nullopt, hermitian != 0));
}

LR_API lr_tensor lr_linalg_det(lr_tensor a) { LR_TENSOR(at::linalg_det(T(a))); }
LR_API lr_tensor lr_linalg_cholesky(lr_tensor a, int upper) { LR_TENSOR(at::linalg_cholesky(T(a), upper != 0)); }

// kind: 0 = "fro", 1 = "nuc". ndim < 0: the last two dimensions.
LR_API lr_tensor lr_linalg_matrix_norm_str(lr_tensor a, int kind, const int64_t* dim, int ndim, int keepdim, int dtype) {
  try {
    TORCH_CHECK(kind == 0 || kind == 1, "matrix_norm: unknown norm code ", kind);
    static const int64_t last2[2] = {-2, -1};
    at::IntArrayRef d = ndim >= 0 ? dims(dim, ndim) : at::IntArrayRef(last2, 2);
    c10::optional<at::ScalarType> dt = dtype < 0 ? c10::nullopt : c10::optional<at::ScalarType>((at::ScalarType)dtype);
    return new at::Tensor(at::linalg_matrix_norm(T(a), kind == 0 ? "fro" : "nuc", d, keepdim != 0, dt));
  } LR_CATCH_BLOCK(return nullptr)
}

LR_API lr_tensor lr_linalg_matrix_norm(lr_tensor a, double ord, const int64_t* dim, int ndim, int keepdim, int dtype) {
  try {
    static const int64_t last2[2] = {-2, -1};
    at::IntArrayRef d = ndim >= 0 ? dims(dim, ndim) : at::IntArrayRef(last2, 2);
    c10::optional<at::ScalarType> dt = dtype < 0 ? c10::nullopt : c10::optional<at::ScalarType>((at::ScalarType)dtype);
    return new at::Tensor(at::linalg_matrix_norm(T(a), at::Scalar(ord), d, keepdim != 0, dt));
  } LR_CATCH_BLOCK(return nullptr)
}

// ndim < 0: all elements (the tensor is flattened).
LR_API lr_tensor lr_linalg_vector_norm(lr_tensor x, double ord, const int64_t* dim, int ndim, int keepdim, int dtype) {
  try {
    c10::optional<at::ScalarType> dt = dtype < 0 ? c10::nullopt : c10::optional<at::ScalarType>((at::ScalarType)dtype);
    at::OptionalIntArrayRef d = ndim >= 0 ? at::OptionalIntArrayRef(dims(dim, ndim)) : at::OptionalIntArrayRef(c10::nullopt);
    return new at::Tensor(at::linalg_vector_norm(T(x), at::Scalar(ord), d, keepdim != 0, dt));
  } LR_CATCH_BLOCK(return nullptr)
}
