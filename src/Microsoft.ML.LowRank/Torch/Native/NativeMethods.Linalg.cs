using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_linalg_svd(TensorHandle a, int fullMatrices, out IntPtr u, out IntPtr s, out IntPtr vh);
    [LibraryImport(Lib)] internal static partial IntPtr lr_linalg_svdvals(TensorHandle a);
    [LibraryImport(Lib)] internal static partial int lr_linalg_qr(TensorHandle a, int mode, out IntPtr q, out IntPtr r);
    [LibraryImport(Lib)] internal static partial int lr_linalg_eigh(TensorHandle a, int upper, out IntPtr w, out IntPtr v);
    [LibraryImport(Lib)] internal static partial IntPtr lr_linalg_eigvalsh(TensorHandle a, int upper);
    [LibraryImport(Lib)] internal static partial IntPtr lr_linalg_solve(TensorHandle a, TensorHandle b, int left);
    [LibraryImport(Lib)] internal static partial IntPtr lr_linalg_inv(TensorHandle a);
    [LibraryImport(Lib)] internal static partial IntPtr lr_linalg_pinv(TensorHandle a, double atol, int hasAtol, double rtol, int hasRtol, int hermitian);
    [LibraryImport(Lib)] internal static partial IntPtr lr_linalg_det(TensorHandle a);
    [LibraryImport(Lib)] internal static partial IntPtr lr_linalg_cholesky(TensorHandle a, int upper);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_linalg_matrix_norm_str(TensorHandle a, int kind, long* dim, int ndim, int keepdim, int dtype);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_linalg_matrix_norm(TensorHandle a, double ord, long* dim, int ndim, int keepdim, int dtype);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_linalg_vector_norm(TensorHandle x, double ord, long* dim, int ndim, int keepdim, int dtype);
}
