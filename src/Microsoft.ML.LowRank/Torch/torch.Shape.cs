using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    private const int StackTensorList = 32;

    private static unsafe IntPtr JoinCore(IList<Tensor> tensors, long dim, bool stack)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        int n = tensors.Count;
        IntPtr[]? heap = n > StackTensorList ? new IntPtr[n] : null;
        IntPtr* stackBuf = stackalloc IntPtr[heap is null ? n : 0];
        IntPtr r;
        fixed (IntPtr* h = heap)
        {
            IntPtr* p = heap is null ? stackBuf : h;
            for (int i = 0; i < n; i++)
            {
                var t = tensors[i] ?? throw new ArgumentNullException(nameof(tensors), $"tensor {i} of the list is null");
                p[i] = t.Handle.DangerousGetHandle();
            }
            r = stack ? NativeMethods.lr_shape_stack(p, n, dim) : NativeMethods.lr_shape_cat(p, n, dim);
        }
        GC.KeepAlive(tensors);
        return r;
    }

    /// <summary>Joins tensors along an existing dimension; all other sizes must match.</summary>
    /// <param name="tensors">The tensors (at least one).</param>
    /// <param name="dim">The dimension to join along.</param>
    /// <returns>The joined tensor.</returns>
    public static Tensor cat(IList<Tensor> tensors, long dim = 0) => Tensor.Wrap(JoinCore(tensors, dim, stack: false));

    /// <summary>Same as <see cref="cat"/>.</summary>
    /// <param name="tensors">The tensors.</param>
    /// <param name="dim">The dimension.</param>
    /// <returns>The joined tensor.</returns>
    public static Tensor concat(IList<Tensor> tensors, long dim = 0) => cat(tensors, dim);

    /// <summary>Same as <see cref="cat"/>.</summary>
    /// <param name="tensors">The tensors.</param>
    /// <param name="dim">The dimension.</param>
    /// <returns>The joined tensor.</returns>
    public static Tensor concatenate(IList<Tensor> tensors, long dim = 0) => cat(tensors, dim);

    /// <summary>Joins equally shaped tensors along a new dimension inserted at <paramref name="dim"/>.</summary>
    /// <param name="tensors">The tensors (at least one).</param>
    /// <param name="dim">Where the new dimension goes.</param>
    /// <returns>The stacked tensor.</returns>
    public static Tensor stack(IList<Tensor> tensors, long dim = 0) => Tensor.Wrap(JoinCore(tensors, dim, stack: true));

    /// <summary>Coordinate grids from 1-D tensors: result i varies along dimension i ("ij") or with the first two swapped ("xy").</summary>
    /// <param name="tensors">1-D tensors.</param>
    /// <param name="indexing">"ij" (matrix) or "xy" (Cartesian).</param>
    /// <returns>One grid per input.</returns>
    public static unsafe Tensor[] meshgrid(IList<Tensor> tensors, string indexing = "ij")
    {
        ArgumentNullException.ThrowIfNull(tensors);
        int mode = indexing switch
        {
            "ij" => 0,
            "xy" => 1,
            _ => throw new ArgumentException($"meshgrid: indexing must be \"ij\" or \"xy\", got \"{indexing}\"", nameof(indexing)),
        };
        var p = new IntPtr[tensors.Count];
        for (int i = 0; i < p.Length; i++) p[i] = tensors[i].Handle.DangerousGetHandle();
        IntPtr* arr;
        int n;
        fixed (IntPtr* pp = p) arr = NativeMethods.lr_shape_meshgrid(pp, p.Length, mode, out n);
        GC.KeepAlive(tensors);
        return Tensor.TakeArray(arr, n);
    }

    /// <summary>Splits into views of <paramref name="split_size"/> elements along <paramref name="dim"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="split_size">Size of each piece (the last may be smaller).</param>
    /// <param name="dim">The dimension.</param>
    /// <returns>The pieces.</returns>
    public static Tensor[] split(Tensor tensor, long split_size, long dim = 0) => tensor.split(split_size, dim);

    /// <summary>Splits into views of the given sizes along <paramref name="dim"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="split_sizes">Size of each piece.</param>
    /// <param name="dim">The dimension.</param>
    /// <returns>The pieces.</returns>
    public static Tensor[] split(Tensor tensor, long[] split_sizes, long dim = 0) => tensor.split(split_sizes, dim);

    /// <summary>Splits into at most <paramref name="chunks"/> views along <paramref name="dim"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="chunks">Number of chunks.</param>
    /// <param name="dim">The dimension.</param>
    /// <returns>The chunks.</returns>
    public static Tensor[] chunk(Tensor tensor, long chunks, long dim = 0) => tensor.chunk(chunks, dim);

    /// <summary>The slices along <paramref name="dim"/>, each without that dimension.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <returns>The slices.</returns>
    public static Tensor[] unbind(Tensor tensor, long dim = 0) => tensor.unbind(dim);

    /// <summary>The same elements with another shape (a view when possible).</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="shape">The new shape (one entry may be -1).</param>
    /// <returns>The reshaped tensor.</returns>
    public static Tensor reshape(Tensor tensor, params ReadOnlySpan<long> shape) => tensor.reshape(shape);

    /// <summary>Merges dimensions <paramref name="start_dim"/>..<paramref name="end_dim"/> into one.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="start_dim">First dimension.</param>
    /// <param name="end_dim">Last dimension.</param>
    /// <returns>The flattened tensor.</returns>
    public static Tensor flatten(Tensor tensor, long start_dim = 0, long end_dim = -1) => tensor.flatten(start_dim, end_dim);

    /// <summary>Splits dimension <paramref name="dim"/> into <paramref name="sizes"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="sizes">The new sizes.</param>
    /// <returns>The view.</returns>
    public static Tensor unflatten(Tensor tensor, long dim, params ReadOnlySpan<long> sizes) => tensor.unflatten(dim, sizes);

    /// <summary>Reorders the dimensions.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dims">A permutation of the dimensions.</param>
    /// <returns>The view.</returns>
    public static Tensor permute(Tensor tensor, params ReadOnlySpan<long> dims) => tensor.permute(dims);

    /// <summary>Moves dimension <paramref name="source"/> to <paramref name="destination"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="source">The dimension.</param>
    /// <param name="destination">Its new position.</param>
    /// <returns>The view.</returns>
    public static Tensor movedim(Tensor tensor, long source, long destination) => tensor.movedim(source, destination);

    /// <summary>Swaps two dimensions.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim0">First dimension.</param>
    /// <param name="dim1">Second dimension.</param>
    /// <returns>The view.</returns>
    public static Tensor transpose(Tensor tensor, long dim0, long dim1) => tensor.transpose(dim0, dim1);

    /// <summary>Transpose of a matrix (at most 2 dimensions).</summary>
    /// <param name="tensor">The tensor.</param>
    /// <returns>The view.</returns>
    public static Tensor t(Tensor tensor) => tensor.t();

    /// <summary>Removes dimensions of size 1 (all, or only <paramref name="dim"/>).</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension (null: all).</param>
    /// <returns>The view.</returns>
    public static Tensor squeeze(Tensor tensor, long? dim = null) => tensor.squeeze(dim);

    /// <summary>Inserts a dimension of size 1.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">Where.</param>
    /// <returns>The view.</returns>
    public static Tensor unsqueeze(Tensor tensor, long dim) => tensor.unsqueeze(dim);

    /// <summary>Repeats each element along <paramref name="dim"/> (null: of the flattened tensor).</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="repeats">Repetitions.</param>
    /// <param name="dim">The dimension.</param>
    /// <returns>The tensor.</returns>
    public static Tensor repeat_interleave(Tensor tensor, long repeats, long? dim = null) => tensor.repeat_interleave(repeats, dim);

    /// <summary>A view of <paramref name="length"/> positions of <paramref name="dim"/> from <paramref name="start"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="start">First position.</param>
    /// <param name="length">Number of positions.</param>
    /// <returns>The view.</returns>
    public static Tensor narrow(Tensor tensor, long dim, long start, long length) => tensor.narrow(dim, start, length);

    /// <summary>The view at position <paramref name="index"/> of <paramref name="dim"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="index">The position.</param>
    /// <returns>The view.</returns>
    public static Tensor select(Tensor tensor, long dim, long index) => tensor.select(dim, index);

    /// <summary>The entries at positions <paramref name="index"/> along <paramref name="dim"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="index">1-D int64 positions.</param>
    /// <returns>The selected entries.</returns>
    public static Tensor index_select(Tensor tensor, long dim, Tensor index) => tensor.index_select(dim, index);

    /// <summary>Gathers along <paramref name="dim"/>: out[i][j] = input[index[i][j]][j] for dim 0.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="index">int64 positions.</param>
    /// <param name="sparse_grad">Produce a sparse gradient.</param>
    /// <returns>The gathered tensor.</returns>
    public static Tensor gather(Tensor tensor, long dim, Tensor index, bool sparse_grad = false) => tensor.gather(dim, index, sparse_grad);

    /// <summary>Gathers with an index broadcast against the input.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="indices">int64 positions.</param>
    /// <param name="dim">The dimension (null: flattened).</param>
    /// <returns>The gathered tensor.</returns>
    public static Tensor take_along_dim(Tensor tensor, Tensor indices, long? dim = null) => tensor.take_along_dim(indices, dim);

    /// <summary>A copy of <paramref name="tensor"/> with <paramref name="src"/> scattered into it.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="index">int64 positions.</param>
    /// <param name="src">The values.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor scatter(Tensor tensor, long dim, Tensor index, Tensor src) => tensor.scatter(dim, index, src);

    /// <summary>A copy of <paramref name="tensor"/> with <paramref name="src"/> scatter-added into it.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="index">int64 positions.</param>
    /// <param name="src">The values to add.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor scatter_add(Tensor tensor, long dim, Tensor index, Tensor src) => tensor.scatter_add(dim, index, src);

    /// <summary>A copy of <paramref name="tensor"/> with alpha·source added at the indexed slices.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="index">1-D int64 positions.</param>
    /// <param name="source">The values.</param>
    /// <param name="alpha">Scale of source.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor index_add(Tensor tensor, long dim, Tensor index, Tensor source, double alpha = 1) => tensor.index_add(dim, index, source, alpha);

    /// <summary>The entries where <paramref name="mask"/> is true, as 1-D.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="mask">A bool tensor broadcastable to it.</param>
    /// <returns>The selected entries.</returns>
    public static Tensor masked_select(Tensor tensor, Tensor mask) => tensor.masked_select(mask);

    /// <summary>The positions of the non-zero entries, shape (count, dimensions).</summary>
    /// <param name="tensor">The tensor.</param>
    /// <returns>int64 positions.</returns>
    public static Tensor nonzero(Tensor tensor) => tensor.nonzero();

    /// <summary>The lower triangle of the last two dimensions.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="diagonal">Bounding diagonal.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor tril(Tensor tensor, long diagonal = 0) => tensor.tril(diagonal);

    /// <summary>The upper triangle of the last two dimensions.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="diagonal">Bounding diagonal.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor triu(Tensor tensor, long diagonal = 0) => tensor.triu(diagonal);

    /// <summary>Diagonal matrix from a vector, or diagonal vector of a matrix.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="diagonal">Which diagonal.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor diag(Tensor tensor, long diagonal = 0) => tensor.diag(diagonal);

    /// <summary>A view of a diagonal of dimensions <paramref name="dim1"/>, <paramref name="dim2"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="offset">Which diagonal.</param>
    /// <param name="dim1">First dimension.</param>
    /// <param name="dim2">Second dimension.</param>
    /// <returns>The view.</returns>
    public static Tensor diagonal(Tensor tensor, long offset = 0, long dim1 = 0, long dim2 = 1) => tensor.diagonal(offset, dim1, dim2);

    /// <summary>Matrices with the last dimension on their diagonal.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="offset">Which diagonal.</param>
    /// <param name="dim1">First matrix dimension of the result.</param>
    /// <param name="dim2">Second matrix dimension of the result.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor diag_embed(Tensor tensor, long offset = 0, long dim1 = -2, long dim2 = -1) => tensor.diag_embed(offset, dim1, dim2);

    /// <summary>The <paramref name="k"/> largest (or smallest) entries along <paramref name="dim"/> and their positions.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="k">How many.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="largest">Largest or smallest.</param>
    /// <param name="sorted">In sorted order.</param>
    /// <returns>Values and int64 positions.</returns>
    public static (Tensor values, Tensor indices) topk(Tensor tensor, long k, long dim = -1, bool largest = true, bool sorted = true)
        => tensor.topk(k, dim, largest, sorted);

    /// <summary>Sorts along <paramref name="dim"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="descending">Largest first.</param>
    /// <param name="stable">Keep the order of equal entries.</param>
    /// <returns>Sorted values and their int64 positions.</returns>
    public static (Tensor values, Tensor indices) sort(Tensor tensor, long dim = -1, bool descending = false, bool stable = false)
        => tensor.sort(dim, descending, stable);

    /// <summary>The positions that sort along <paramref name="dim"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dim">The dimension.</param>
    /// <param name="descending">Largest first.</param>
    /// <param name="stable">Keep the order of equal entries.</param>
    /// <returns>int64 positions.</returns>
    public static Tensor argsort(Tensor tensor, long dim = -1, bool descending = false, bool stable = false) => tensor.argsort(dim, descending, stable);

    /// <summary>Reverses the entries along <paramref name="dims"/>.</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="dims">The dimensions.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor flip(Tensor tensor, params ReadOnlySpan<long> dims) => tensor.flip(dims);

    /// <summary>Rotates entries by <paramref name="shifts"/> along <paramref name="dims"/> (null: flattened).</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="shifts">The shift.</param>
    /// <param name="dims">The dimension.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor roll(Tensor tensor, long shifts, long? dims = null) => tensor.roll(shifts, dims);

    /// <summary>Rotates entries by shifts[i] along dims[i].</summary>
    /// <param name="tensor">The tensor.</param>
    /// <param name="shifts">The shifts.</param>
    /// <param name="dims">The dimensions.</param>
    /// <returns>The new tensor.</returns>
    public static Tensor roll(Tensor tensor, long[] shifts, long[] dims) => tensor.roll(shifts, dims);

    /// <summary>One-hot encoding of an int64 tensor: a new last dimension of <paramref name="num_classes"/> entries, 1 at each value.</summary>
    /// <param name="tensor">Non-negative int64 class indices.</param>
    /// <param name="num_classes">Number of classes (-1: one more than the largest value).</param>
    /// <returns>An int64 tensor.</returns>
    public static Tensor one_hot(Tensor tensor, long num_classes = -1) => Tensor.Wrap(NativeMethods.lr_shape_one_hot(tensor.Handle, num_classes));

    /// <summary>Constant padding with PyTorch's convention: <paramref name="pad"/> lists (before, after) pairs starting from
    /// the LAST dimension, e.g. {left, right, top, bottom} pads the last two. Negative amounts crop.</summary>
    /// <param name="input">The tensor.</param>
    /// <param name="pad">An even number of amounts, at most two per dimension.</param>
    /// <param name="value">The fill value.</param>
    /// <returns>The padded tensor.</returns>
    public static unsafe Tensor pad(Tensor input, long[] pad, double value = 0)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(pad);
        fixed (long* p = pad) return Tensor.Wrap(NativeMethods.lr_shape_constant_pad(input.Handle, p, pad.Length, value));
    }
}
