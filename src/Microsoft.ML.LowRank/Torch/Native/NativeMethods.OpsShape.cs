using System.Runtime.InteropServices;

namespace Microsoft.ML.LowRank.Torch.Native;

internal static partial class NativeMethods
{
    [LibraryImport(Lib)] internal static unsafe partial void lr_shape_free_array(IntPtr* arr);

    // views and reshapes
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_view(TensorHandle t, long* shape, int n);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_view_as(TensorHandle t, TensorHandle other);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_reshape(TensorHandle t, long* shape, int n);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_reshape_as(TensorHandle t, TensorHandle other);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_flatten(TensorHandle t, long start, long end);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_unflatten(TensorHandle t, long dim, long* sizes, int n);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_permute(TensorHandle t, long* dims, int n);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_movedim(TensorHandle t, long* source, long* destination, int n);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_transpose(TensorHandle t, long dim0, long dim1);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_t(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_mT(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_squeeze(TensorHandle t);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_squeeze_dim(TensorHandle t, long dim);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_unsqueeze(TensorHandle t, long dim);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_expand(TensorHandle t, long* sizes, int n);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_expand_as(TensorHandle t, TensorHandle other);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_repeat(TensorHandle t, long* repeats, int n);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_repeat_interleave(TensorHandle t, long repeats, long dim, int hasDim);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_repeat_interleave_t(TensorHandle t, TensorHandle repeats, long dim, int hasDim);

    // joins and splits
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_cat(IntPtr* tensors, int n, long dim);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_stack(IntPtr* tensors, int n, long dim);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr* lr_shape_split(TensorHandle t, long size, long dim, out int count);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr* lr_shape_split_sizes(TensorHandle t, long* sizes, int n, long dim, out int count);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr* lr_shape_chunk(TensorHandle t, long chunks, long dim, out int count);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr* lr_shape_unbind(TensorHandle t, long dim, out int count);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr* lr_shape_meshgrid(IntPtr* tensors, int n, int indexing, out int count);

    // slicing and indexing
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_narrow(TensorHandle t, long dim, long start, long length);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_slice(TensorHandle t, long dim, long start, long end, long step);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_select(TensorHandle t, long dim, long index);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_index(TensorHandle t, long* spec, IntPtr* tensors, int n);
    [LibraryImport(Lib)] internal static unsafe partial int lr_shape_index_put_(TensorHandle t, long* spec, IntPtr* tensors, int n, TensorHandle value);
    [LibraryImport(Lib)] internal static unsafe partial int lr_shape_index_put_scalar_(TensorHandle t, long* spec, IntPtr* tensors, int n, double value);

    // gather / scatter
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_index_select(TensorHandle t, long dim, TensorHandle index);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_gather(TensorHandle t, long dim, TensorHandle index, int sparseGrad);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_take_along_dim(TensorHandle t, TensorHandle index, long dim, int hasDim);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_scatter(TensorHandle t, long dim, TensorHandle index, TensorHandle src);
    [LibraryImport(Lib)] internal static partial int lr_shape_scatter_(TensorHandle t, long dim, TensorHandle index, TensorHandle src);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_scatter_value(TensorHandle t, long dim, TensorHandle index, double value);
    [LibraryImport(Lib)] internal static partial int lr_shape_scatter_value_(TensorHandle t, long dim, TensorHandle index, double value);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_scatter_add(TensorHandle t, long dim, TensorHandle index, TensorHandle src);
    [LibraryImport(Lib)] internal static partial int lr_shape_scatter_add_(TensorHandle t, long dim, TensorHandle index, TensorHandle src);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_index_add(TensorHandle t, long dim, TensorHandle index, TensorHandle src, double alpha);
    [LibraryImport(Lib)] internal static partial int lr_shape_index_add_(TensorHandle t, long dim, TensorHandle index, TensorHandle src, double alpha);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_index_copy(TensorHandle t, long dim, TensorHandle index, TensorHandle src);
    [LibraryImport(Lib)] internal static partial int lr_shape_index_copy_(TensorHandle t, long dim, TensorHandle index, TensorHandle src);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_index_fill(TensorHandle t, long dim, TensorHandle index, double value);
    [LibraryImport(Lib)] internal static partial int lr_shape_index_fill_(TensorHandle t, long dim, TensorHandle index, double value);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_masked_select(TensorHandle t, TensorHandle mask);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_masked_scatter(TensorHandle t, TensorHandle mask, TensorHandle src);
    [LibraryImport(Lib)] internal static partial int lr_shape_masked_scatter_(TensorHandle t, TensorHandle mask, TensorHandle src);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_nonzero(TensorHandle t);

    // triangles, diagonals
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_tril(TensorHandle t, long diagonal);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_triu(TensorHandle t, long diagonal);
    [LibraryImport(Lib)] internal static partial int lr_shape_tril_(TensorHandle t, long diagonal);
    [LibraryImport(Lib)] internal static partial int lr_shape_triu_(TensorHandle t, long diagonal);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_diag(TensorHandle t, long diagonal);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_diagonal(TensorHandle t, long offset, long dim1, long dim2);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_diag_embed(TensorHandle t, long offset, long dim1, long dim2);

    // sorting
    [LibraryImport(Lib)] internal static partial int lr_shape_topk(TensorHandle t, long k, long dim, int largest, int sorted, out IntPtr values, out IntPtr indices);
    [LibraryImport(Lib)] internal static partial int lr_shape_sort(TensorHandle t, long dim, int descending, int stable, out IntPtr values, out IntPtr indices);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_argsort(TensorHandle t, long dim, int descending, int stable);

    // reordering, encoding, padding
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_flip(TensorHandle t, long* dims, int n);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_roll(TensorHandle t, long* shifts, int nShifts, long* dims, int nDims);
    [LibraryImport(Lib)] internal static partial IntPtr lr_shape_one_hot(TensorHandle t, long numClasses);
    [LibraryImport(Lib)] internal static unsafe partial IntPtr lr_shape_constant_pad(TensorHandle t, long* pad, int n, double value);
}
