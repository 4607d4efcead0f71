using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

internal static partial class NativeMethods
{
    // Freeing an alias is short and never calls back into .NET, so it skips the GC transition (it is called once per
    // tensor, so the saving matters for small ops). Large storages go back to the allocator, still well under a millisecond.
    [LibraryImport(Lib), SuppressGCTransition] internal static partial void lr_tensor_free(IntPtr t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_alias(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int lr_tensor_ndim(TensorHandle t);
    [LibraryImport(Lib)] internal static unsafe partial int lr_tensor_shape(TensorHandle t, long* output, int cap);
    [LibraryImport(Lib)] internal static unsafe partial int lr_tensor_strides(TensorHandle t, long* output, int cap);
    [LibraryImport(Lib)] internal static partial long lr_tensor_numel(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int lr_tensor_dtype(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int lr_tensor_device(TensorHandle t, out int kind, out int index);
    [LibraryImport(Lib)] internal static partial int lr_tensor_is_contiguous(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int lr_tensor_requires_grad(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int lr_tensor_set_requires_grad(TensorHandle t, int flag);
    [LibraryImport(Lib)] internal static partial int lr_tensor_is_leaf(TensorHandle t);
    [LibraryImport(Lib)] internal static partial int lr_tensor_defined(TensorHandle t);
    [LibraryImport(Lib)] internal static partial long lr_tensor_data_ptr(TensorHandle t);
    [LibraryImport(Lib)] internal static partial long lr_tensor_element_size(TensorHandle t);

    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_tensor_empty(long* shape, int n, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_tensor_zeros(long* shape, int n, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_tensor_ones(long* shape, int n, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_tensor_full(long* shape, int n, double value, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_arange(double start, double end, double step, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_linspace(double start, double end, long steps, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_eye(long n, long m, int dtype, int dk, int di, int rg);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_zeros_like(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_ones_like(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_empty_like(TensorHandle t);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_tensor_from_data(void* data, long* shape, int n, int dtype, int rg);
    [LibraryImport(Lib)] internal static unsafe partial int lr_tensor_copy_to(TensorHandle t, void* dst, long nbytes);
    [LibraryImport(Lib)] internal static partial double lr_tensor_item(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_to(TensorHandle t, int dtype, int dk, int di, int copy, int nonBlocking);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_clone(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_contiguous(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_tensor_to_string(TensorHandle t);
}

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static partial int lr_tensor_set_data(TensorHandle t, TensorHandle src);
    [LibraryImport(Lib)] internal static partial int lr_tensor_is_same(TensorHandle a, TensorHandle b);
}
