using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    public partial class Tensor
    {
        // ---------------- views and reshapes ----------------

        /// <summary>A view with another shape over the same storage (one entry may be -1: inferred). Fails when the
        /// strides do not allow a view; use <see cref="reshape"/> then.</summary>
        /// <param name="shape">The new shape.</param>
        /// <returns>The view.</returns>
        public unsafe Tensor view(params ReadOnlySpan<long> shape)
        {
            fixed (long* p = shape) return Wrap(NativeMethods.lr_shape_view(Handle, p, shape.Length));
        }

        /// <summary>A view with the shape of <paramref name="other"/>.</summary>
        /// <param name="other">The tensor whose shape to take.</param>
        /// <returns>The view.</returns>
        public Tensor view_as(Tensor other) => Wrap(NativeMethods.lr_shape_view_as(Handle, other.Handle));

        /// <summary>The same elements with another shape (one entry may be -1): a view when possible, else a copy.</summary>
        /// <param name="shape">The new shape.</param>
        /// <returns>The reshaped tensor.</returns>
        public unsafe Tensor reshape(params ReadOnlySpan<long> shape)
        {
            fixed (long* p = shape) return Wrap(NativeMethods.lr_shape_reshape(Handle, p, shape.Length));
        }

        /// <summary>Reshapes to the shape of <paramref name="other"/>.</summary>
        /// <param name="other">The tensor whose shape to take.</param>
        /// <returns>The reshaped tensor.</returns>
        public Tensor reshape_as(Tensor other) => Wrap(NativeMethods.lr_shape_reshape_as(Handle, other.Handle));

        /// <summary>Merges dimensions <paramref name="start_dim"/>..<paramref name="end_dim"/> (inclusive) into one.</summary>
        /// <param name="start_dim">First dimension to merge.</param>
        /// <param name="end_dim">Last dimension to merge.</param>
        /// <returns>The flattened tensor (a view when possible).</returns>
        public Tensor flatten(long start_dim = 0, long end_dim = -1) => Wrap(NativeMethods.lr_shape_flatten(Handle, start_dim, end_dim));

        /// <summary>Splits dimension <paramref name="dim"/> into <paramref name="sizes"/> (one may be -1).</summary>
        /// <param name="dim">The dimension to split.</param>
        /// <param name="sizes">The new sizes; their product must equal the dimension's size.</param>
        /// <returns>The view.</returns>
        public unsafe Tensor unflatten(long dim, params ReadOnlySpan<long> sizes)
        {
            fixed (long* p = sizes) return Wrap(NativeMethods.lr_shape_unflatten(Handle, dim, p, sizes.Length));
        }

        /// <summary>A view with the dimensions reordered: dimension i of the result is dimension dims[i] of this tensor.</summary>
        /// <param name="dims">A permutation of the dimensions.</param>
        /// <returns>The view.</returns>
        public unsafe Tensor permute(params ReadOnlySpan<long> dims)
        {
            fixed (long* p = dims) return Wrap(NativeMethods.lr_shape_permute(Handle, p, dims.Length));
        }

        /// <summary>Moves dimension <paramref name="source"/> to position <paramref name="destination"/>.</summary>
        /// <param name="source">The dimension to move.</param>
        /// <param name="destination">Its new position.</param>
        /// <returns>The view.</returns>
        public unsafe Tensor movedim(long source, long destination)
            => Wrap(NativeMethods.lr_shape_movedim(Handle, &source, &destination, 1));

        /// <summary>Moves several dimensions to new positions; the others keep their order.</summary>
        /// <param name="source">The dimensions to move.</param>
        /// <param name="destination">Their new positions (same count).</param>
        /// <returns>The view.</returns>
        public unsafe Tensor movedim(long[] source, long[] destination)
        {
            ArgumentNullException.ThrowIfNull(source);
            ArgumentNullException.ThrowIfNull(destination);
            if (source.Length != destination.Length)
                throw new ArgumentException($"movedim: {source.Length} source dimensions but {destination.Length} destinations", nameof(destination));
            fixed (long* s = source, d = destination) return Wrap(NativeMethods.lr_shape_movedim(Handle, s, d, source.Length));
        }

        /// <summary>Same as <see cref="movedim(long, long)"/>.</summary>
        /// <param name="source">The dimension to move.</param>
        /// <param name="destination">Its new position.</param>
        /// <returns>The view.</returns>
        public Tensor moveaxis(long source, long destination) => movedim(source, destination);

        /// <summary>A view with dimensions <paramref name="dim0"/> and <paramref name="dim1"/> swapped.</summary>
        /// <param name="dim0">First dimension.</param>
        /// <param name="dim1">Second dimension.</param>
        /// <returns>The view.</returns>
        public Tensor transpose(long dim0, long dim1) => Wrap(NativeMethods.lr_shape_transpose(Handle, dim0, dim1));

        /// <summary>Same as <see cref="transpose"/>.</summary>
        /// <param name="dim0">First dimension.</param>
        /// <param name="dim1">Second dimension.</param>
        /// <returns>The view.</returns>
        public Tensor swapaxes(long dim0, long dim1) => transpose(dim0, dim1);

        /// <summary>Same as <see cref="transpose"/>.</summary>
        /// <param name="dim0">First dimension.</param>
        /// <param name="dim1">Second dimension.</param>
        /// <returns>The view.</returns>
        public Tensor swapdims(long dim0, long dim1) => transpose(dim0, dim1);

        /// <summary>Transpose of a matrix (tensors of at most 2 dimensions; 0-d and 1-d are returned as is).</summary>
        /// <returns>The view.</returns>
        public Tensor t() => Wrap(NativeMethods.lr_shape_t(Handle));

        /// <summary>Transpose of the last two dimensions (a batch of matrices); needs at least 2 dimensions.</summary>
        public Tensor mT => Wrap(NativeMethods.lr_shape_mT(Handle));

        /// <summary>Removes dimensions of size 1: all of them, or only <paramref name="dim"/> (kept if its size is not 1).</summary>
        /// <param name="dim">The dimension to remove (null: every size-1 dimension).</param>
        /// <returns>The view.</returns>
        public Tensor squeeze(long? dim = null)
            => Wrap(dim is { } d ? NativeMethods.lr_shape_squeeze_dim(Handle, d) : NativeMethods.lr_shape_squeeze(Handle));

        /// <summary>Inserts a dimension of size 1 at <paramref name="dim"/> (negative counts from the end of the result).</summary>
        /// <param name="dim">Where to insert.</param>
        /// <returns>The view.</returns>
        public Tensor unsqueeze(long dim) => Wrap(NativeMethods.lr_shape_unsqueeze(Handle, dim));

        /// <summary>A broadcast view to a larger shape (size-1 dimensions repeat without copying; -1 keeps a size).</summary>
        /// <param name="sizes">The target shape.</param>
        /// <returns>The view.</returns>
        public unsafe Tensor expand(params ReadOnlySpan<long> sizes)
        {
            fixed (long* p = sizes) return Wrap(NativeMethods.lr_shape_expand(Handle, p, sizes.Length));
        }

        /// <summary>A broadcast view to the shape of <paramref name="other"/>.</summary>
        /// <param name="other">The tensor whose shape to take.</param>
        /// <returns>The view.</returns>
        public Tensor expand_as(Tensor other) => Wrap(NativeMethods.lr_shape_expand_as(Handle, other.Handle));

        /// <summary>Tiles the tensor: dimension i is repeated repeats[i] times (copies the data).</summary>
        /// <param name="repeats">Repetitions per dimension (at least as many as the tensor has dimensions).</param>
        /// <returns>The tiled tensor.</returns>
        public unsafe Tensor repeat(params ReadOnlySpan<long> repeats)
        {
            fixed (long* p = repeats) return Wrap(NativeMethods.lr_shape_repeat(Handle, p, repeats.Length));
        }

        /// <summary>Repeats each element <paramref name="repeats"/> times along <paramref name="dim"/> (null: of the flattened tensor).</summary>
        /// <param name="repeats">Repetitions of each element.</param>
        /// <param name="dim">The dimension (null: flatten first).</param>
        /// <returns>The tensor.</returns>
        public Tensor repeat_interleave(long repeats, long? dim = null)
            => Wrap(NativeMethods.lr_shape_repeat_interleave(Handle, repeats, dim ?? 0, dim.HasValue ? 1 : 0));

        /// <summary>Repeats element i repeats[i] times along <paramref name="dim"/> (null: of the flattened tensor).</summary>
        /// <param name="repeats">An int64 tensor of repetitions, one per element along the dimension (or a single one).</param>
        /// <param name="dim">The dimension (null: flatten first).</param>
        /// <returns>The tensor.</returns>
        public Tensor repeat_interleave(Tensor repeats, long? dim = null)
            => Wrap(NativeMethods.lr_shape_repeat_interleave_t(Handle, repeats.Handle, dim ?? 0, dim.HasValue ? 1 : 0));

        // ---------------- splits ----------------

        internal static unsafe Tensor[] TakeArray(IntPtr* arr, int count)
        {
            if (arr == null) torch.ThrowLastError();
            try
            {
                var result = new Tensor[count];
                for (int i = 0; i < count; i++) result[i] = new Tensor(arr[i]);
                return result;
            }
            finally
            {
                NativeMethods.lr_shape_free_array(arr);
            }
        }

        /// <summary>Splits into views of <paramref name="split_size"/> elements along <paramref name="dim"/> (the last may be smaller).</summary>
        /// <param name="split_size">Size of each piece.</param>
        /// <param name="dim">The dimension.</param>
        /// <returns>The pieces.</returns>
        public unsafe Tensor[] split(long split_size, long dim = 0)
        {
            var arr = NativeMethods.lr_shape_split(Handle, split_size, dim, out var n);
            return TakeArray(arr, n);
        }

        /// <summary>Splits into views of the given sizes along <paramref name="dim"/>; the sizes must add up to the dimension's size.</summary>
        /// <param name="split_sizes">Size of each piece.</param>
        /// <param name="dim">The dimension.</param>
        /// <returns>The pieces.</returns>
        public unsafe Tensor[] split(long[] split_sizes, long dim = 0)
        {
            ArgumentNullException.ThrowIfNull(split_sizes);
            IntPtr* arr;
            int n;
            fixed (long* p = split_sizes) arr = NativeMethods.lr_shape_split_sizes(Handle, p, split_sizes.Length, dim, out n);
            return TakeArray(arr, n);
        }

        /// <summary>Splits into at most <paramref name="chunks"/> views of equal size (the last may be smaller) along <paramref name="dim"/>.</summary>
        /// <param name="chunks">Number of chunks.</param>
        /// <param name="dim">The dimension.</param>
        /// <returns>The chunks.</returns>
        public unsafe Tensor[] chunk(long chunks, long dim = 0)
        {
            var arr = NativeMethods.lr_shape_chunk(Handle, chunks, dim, out var n);
            return TakeArray(arr, n);
        }

        /// <summary>The slices along <paramref name="dim"/>, each without that dimension.</summary>
        /// <param name="dim">The dimension.</param>
        /// <returns>The slices (views).</returns>
        public unsafe Tensor[] unbind(long dim = 0)
        {
            var arr = NativeMethods.lr_shape_unbind(Handle, dim, out var n);
            return TakeArray(arr, n);
        }

        // ---------------- slicing and indexing ----------------

        /// <summary>A view of <paramref name="length"/> positions of <paramref name="dim"/> from <paramref name="start"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="start">First position (negative counts from the end).</param>
        /// <param name="length">Number of positions.</param>
        /// <returns>The view.</returns>
        public Tensor narrow(long dim, long start, long length) => Wrap(NativeMethods.lr_shape_narrow(Handle, dim, start, length));

        /// <summary>A view of positions start, start+step, ... before <paramref name="end"/> along <paramref name="dim"/> (Python's
        /// <c>x[..., start:end:step]</c>; bounds are clamped, negative ones count from the end).</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="start">First position.</param>
        /// <param name="end">End position (exclusive).</param>
        /// <param name="step">Stride (positive).</param>
        /// <returns>The view.</returns>
        public Tensor slice(long dim, long start, long end, long step = 1) => Wrap(NativeMethods.lr_shape_slice(Handle, dim, start, end, step));

        /// <summary>The view at position <paramref name="index"/> of <paramref name="dim"/>, without that dimension.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">The position (negative counts from the end).</param>
        /// <returns>The view.</returns>
        public Tensor select(long dim, long index) => Wrap(NativeMethods.lr_shape_select(Handle, dim, index));

        /// <summary>Python-style indexing: <c>x[1, .., TensorIndex.None, 2..^1, mask]</c>. Reads return views for basic
        /// indices (integers, slices, ellipsis, None) and copies for tensor indices. Assigning writes into this tensor
        /// (the value is broadcast and converted to this tensor's type).</summary>
        /// <param name="indices">The indices, one per dimension (fewer: the rest are full slices).</param>
        /// <returns>The indexed tensor.</returns>
        public Tensor this[params ReadOnlySpan<TensorIndex> indices]
        {
            get => index(indices);
            set => index_put_(value, indices);
        }

        private const int MaxIndices = 64;

        /// <summary>Python-style indexing (the getter of this[...]).</summary>
        /// <param name="indices">The indices.</param>
        /// <returns>The indexed tensor.</returns>
        public unsafe Tensor index(params ReadOnlySpan<TensorIndex> indices)
        {
            if (indices.Length > MaxIndices) throw new ArgumentException($"too many indices ({indices.Length})", nameof(indices));
            long* spec = stackalloc long[4 * indices.Length];
            IntPtr* ts = stackalloc IntPtr[indices.Length];
            TensorIndex.Encode(indices, spec, ts);
            var r = NativeMethods.lr_shape_index(Handle, spec, ts, indices.Length);
            TensorIndex.KeepAlive(indices);
            return Wrap(r);
        }

        /// <summary>Writes <paramref name="value"/> (broadcast, converted to this tensor's type) at the indexed positions.</summary>
        /// <param name="value">The values.</param>
        /// <param name="indices">The indices.</param>
        /// <returns>This tensor.</returns>
        public unsafe Tensor index_put_(Tensor value, params ReadOnlySpan<TensorIndex> indices)
        {
            ArgumentNullException.ThrowIfNull(value);
            if (indices.Length > MaxIndices) throw new ArgumentException($"too many indices ({indices.Length})", nameof(indices));
            long* spec = stackalloc long[4 * indices.Length];
            IntPtr* ts = stackalloc IntPtr[indices.Length];
            TensorIndex.Encode(indices, spec, ts);
            var r = NativeMethods.lr_shape_index_put_(Handle, spec, ts, indices.Length, value.Handle);
            TensorIndex.KeepAlive(indices);
            CheckStatus(r);
            return this;
        }

        /// <summary>Writes <paramref name="value"/> at every indexed position.</summary>
        /// <param name="value">The value.</param>
        /// <param name="indices">The indices.</param>
        /// <returns>This tensor.</returns>
        public unsafe Tensor index_put_(double value, params ReadOnlySpan<TensorIndex> indices)
        {
            if (indices.Length > MaxIndices) throw new ArgumentException($"too many indices ({indices.Length})", nameof(indices));
            long* spec = stackalloc long[4 * indices.Length];
            IntPtr* ts = stackalloc IntPtr[indices.Length];
            TensorIndex.Encode(indices, spec, ts);
            var r = NativeMethods.lr_shape_index_put_scalar_(Handle, spec, ts, indices.Length, value);
            TensorIndex.KeepAlive(indices);
            CheckStatus(r);
            return this;
        }

        /// <summary>A 0-d float64 tensor holding <paramref name="value"/>, so that <c>x[...] = 2.5</c> works (the indexer
        /// converts it to the target's type).</summary>
        /// <param name="value">The value.</param>
        public static implicit operator Tensor(double value) => torch.scalar_tensor(value, ScalarType.Float64);

        // ---------------- gather / scatter ----------------

        /// <summary>The entries at positions <paramref name="index"/> (1-D int64) along <paramref name="dim"/> (a copy).</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">1-D int64 (or int32) positions.</param>
        /// <returns>The selected entries.</returns>
        public Tensor index_select(long dim, Tensor index) => Wrap(NativeMethods.lr_shape_index_select(Handle, dim, index.Handle));

        /// <summary>out[i][j] = self[index[i][j]][j] for dim 0 (and likewise for other dims); index has the output's shape.</summary>
        /// <param name="dim">The dimension to index along.</param>
        /// <param name="index">int64 positions, same number of dimensions as this tensor.</param>
        /// <param name="sparse_grad">Produce a sparse gradient.</param>
        /// <returns>The gathered tensor.</returns>
        public Tensor gather(long dim, Tensor index, bool sparse_grad = false)
            => Wrap(NativeMethods.lr_shape_gather(Handle, dim, index.Handle, sparse_grad ? 1 : 0));

        /// <summary>Gathers along <paramref name="dim"/> with an index broadcast against this tensor (null: of the flattened tensor).</summary>
        /// <param name="indices">int64 positions.</param>
        /// <param name="dim">The dimension (null: flatten first).</param>
        /// <returns>The gathered tensor.</returns>
        public Tensor take_along_dim(Tensor indices, long? dim = null)
            => Wrap(NativeMethods.lr_shape_take_along_dim(Handle, indices.Handle, dim ?? 0, dim.HasValue ? 1 : 0));

        /// <summary>A copy with self[index[i][j]][j] = src[i][j] for dim 0 (and likewise for other dims).</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">int64 positions.</param>
        /// <param name="src">The values to write.</param>
        /// <returns>The new tensor.</returns>
        public Tensor scatter(long dim, Tensor index, Tensor src) => Wrap(NativeMethods.lr_shape_scatter(Handle, dim, index.Handle, src.Handle));

        /// <summary>A copy with <paramref name="value"/> written at the scattered positions.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">int64 positions.</param>
        /// <param name="value">The value.</param>
        /// <returns>The new tensor.</returns>
        public Tensor scatter(long dim, Tensor index, double value) => Wrap(NativeMethods.lr_shape_scatter_value(Handle, dim, index.Handle, value));

        /// <summary>In-place <see cref="scatter(long, Tensor, Tensor)"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">int64 positions.</param>
        /// <param name="src">The values to write.</param>
        /// <returns>This tensor.</returns>
        public Tensor scatter_(long dim, Tensor index, Tensor src)
        {
            CheckStatus(NativeMethods.lr_shape_scatter_(Handle, dim, index.Handle, src.Handle));
            return this;
        }

        /// <summary>In-place <see cref="scatter(long, Tensor, double)"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">int64 positions.</param>
        /// <param name="value">The value.</param>
        /// <returns>This tensor.</returns>
        public Tensor scatter_(long dim, Tensor index, double value)
        {
            CheckStatus(NativeMethods.lr_shape_scatter_value_(Handle, dim, index.Handle, value));
            return this;
        }

        /// <summary>A copy with self[index[i][j]][j] += src[i][j] for dim 0 (and likewise for other dims); repeated positions accumulate.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">int64 positions.</param>
        /// <param name="src">The values to add.</param>
        /// <returns>The new tensor.</returns>
        public Tensor scatter_add(long dim, Tensor index, Tensor src) => Wrap(NativeMethods.lr_shape_scatter_add(Handle, dim, index.Handle, src.Handle));

        /// <summary>In-place <see cref="scatter_add"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">int64 positions.</param>
        /// <param name="src">The values to add.</param>
        /// <returns>This tensor.</returns>
        public Tensor scatter_add_(long dim, Tensor index, Tensor src)
        {
            CheckStatus(NativeMethods.lr_shape_scatter_add_(Handle, dim, index.Handle, src.Handle));
            return this;
        }

        /// <summary>A copy with alpha·source[i] added to slice index[i] of <paramref name="dim"/>; repeated positions accumulate.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">1-D int64 positions, one per slice of source.</param>
        /// <param name="source">The values to add.</param>
        /// <param name="alpha">Scale of source.</param>
        /// <returns>The new tensor.</returns>
        public Tensor index_add(long dim, Tensor index, Tensor source, double alpha = 1)
            => Wrap(NativeMethods.lr_shape_index_add(Handle, dim, index.Handle, source.Handle, alpha));

        /// <summary>In-place <see cref="index_add"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">1-D int64 positions.</param>
        /// <param name="source">The values to add.</param>
        /// <param name="alpha">Scale of source.</param>
        /// <returns>This tensor.</returns>
        public Tensor index_add_(long dim, Tensor index, Tensor source, double alpha = 1)
        {
            CheckStatus(NativeMethods.lr_shape_index_add_(Handle, dim, index.Handle, source.Handle, alpha));
            return this;
        }

        /// <summary>A copy with slice index[i] of <paramref name="dim"/> replaced by source[i].</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">1-D int64 positions.</param>
        /// <param name="source">The values.</param>
        /// <returns>The new tensor.</returns>
        public Tensor index_copy(long dim, Tensor index, Tensor source) => Wrap(NativeMethods.lr_shape_index_copy(Handle, dim, index.Handle, source.Handle));

        /// <summary>In-place <see cref="index_copy"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">1-D int64 positions.</param>
        /// <param name="source">The values.</param>
        /// <returns>This tensor.</returns>
        public Tensor index_copy_(long dim, Tensor index, Tensor source)
        {
            CheckStatus(NativeMethods.lr_shape_index_copy_(Handle, dim, index.Handle, source.Handle));
            return this;
        }

        /// <summary>A copy with the slices at <paramref name="index"/> of <paramref name="dim"/> set to <paramref name="value"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">1-D int64 positions.</param>
        /// <param name="value">The fill value.</param>
        /// <returns>The new tensor.</returns>
        public Tensor index_fill(long dim, Tensor index, double value) => Wrap(NativeMethods.lr_shape_index_fill(Handle, dim, index.Handle, value));

        /// <summary>In-place <see cref="index_fill"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="index">1-D int64 positions.</param>
        /// <param name="value">The fill value.</param>
        /// <returns>This tensor.</returns>
        public Tensor index_fill_(long dim, Tensor index, double value)
        {
            CheckStatus(NativeMethods.lr_shape_index_fill_(Handle, dim, index.Handle, value));
            return this;
        }

        /// <summary>The entries where the (broadcast) bool <paramref name="mask"/> is true, as a 1-D copy in row-major order.</summary>
        /// <param name="mask">A bool tensor broadcastable to this one.</param>
        /// <returns>The selected entries.</returns>
        public Tensor masked_select(Tensor mask) => Wrap(NativeMethods.lr_shape_masked_select(Handle, mask.Handle));

        /// <summary>A copy where the positions with mask true take consecutive elements of <paramref name="source"/> (row-major).</summary>
        /// <param name="mask">A bool tensor broadcastable to this one.</param>
        /// <param name="source">At least as many elements as mask has true entries.</param>
        /// <returns>The new tensor.</returns>
        public Tensor masked_scatter(Tensor mask, Tensor source) => Wrap(NativeMethods.lr_shape_masked_scatter(Handle, mask.Handle, source.Handle));

        /// <summary>In-place <see cref="masked_scatter"/>.</summary>
        /// <param name="mask">A bool tensor broadcastable to this one.</param>
        /// <param name="source">The values.</param>
        /// <returns>This tensor.</returns>
        public Tensor masked_scatter_(Tensor mask, Tensor source)
        {
            CheckStatus(NativeMethods.lr_shape_masked_scatter_(Handle, mask.Handle, source.Handle));
            return this;
        }

        /// <summary>The positions of the non-zero entries: an int64 tensor of shape (count, dimensions), row-major order.</summary>
        /// <returns>The positions.</returns>
        public Tensor nonzero() => Wrap(NativeMethods.lr_shape_nonzero(Handle));

        // ---------------- triangles, diagonals ----------------

        /// <summary>The lower triangle of the last two dimensions: entries with column - row &lt;= <paramref name="diagonal"/>, others zero.</summary>
        /// <param name="diagonal">Which diagonal bounds the triangle (0: main; positive: above).</param>
        /// <returns>The new tensor.</returns>
        public Tensor tril(long diagonal = 0) => Wrap(NativeMethods.lr_shape_tril(Handle, diagonal));

        /// <summary>The upper triangle of the last two dimensions: entries with column - row &gt;= <paramref name="diagonal"/>, others zero.</summary>
        /// <param name="diagonal">Which diagonal bounds the triangle (0: main; positive: above).</param>
        /// <returns>The new tensor.</returns>
        public Tensor triu(long diagonal = 0) => Wrap(NativeMethods.lr_shape_triu(Handle, diagonal));

        /// <summary>In-place <see cref="tril"/>.</summary>
        /// <param name="diagonal">Which diagonal bounds the triangle.</param>
        /// <returns>This tensor.</returns>
        public Tensor tril_(long diagonal = 0)
        {
            CheckStatus(NativeMethods.lr_shape_tril_(Handle, diagonal));
            return this;
        }

        /// <summary>In-place <see cref="triu"/>.</summary>
        /// <param name="diagonal">Which diagonal bounds the triangle.</param>
        /// <returns>This tensor.</returns>
        public Tensor triu_(long diagonal = 0)
        {
            CheckStatus(NativeMethods.lr_shape_triu_(Handle, diagonal));
            return this;
        }

        /// <summary>For a 1-D tensor, a square matrix with it on diagonal <paramref name="diagonal"/>; for a matrix, that diagonal as 1-D.</summary>
        /// <param name="diagonal">0: main; positive: above; negative: below.</param>
        /// <returns>The new tensor.</returns>
        public Tensor diag(long diagonal = 0) => Wrap(NativeMethods.lr_shape_diag(Handle, diagonal));

        /// <summary>A view of the diagonal of dimensions <paramref name="dim1"/> and <paramref name="dim2"/>, appended as the last dimension.</summary>
        /// <param name="offset">0: main; positive: above; negative: below.</param>
        /// <param name="dim1">First dimension of the matrices.</param>
        /// <param name="dim2">Second dimension of the matrices.</param>
        /// <returns>The view.</returns>
        public Tensor diagonal(long offset = 0, long dim1 = 0, long dim2 = 1) => Wrap(NativeMethods.lr_shape_diagonal(Handle, offset, dim1, dim2));

        /// <summary>Matrices (in dimensions <paramref name="dim1"/>, <paramref name="dim2"/>) with the last dimension on their diagonal.</summary>
        /// <param name="offset">Which diagonal.</param>
        /// <param name="dim1">First dimension of the matrices in the result.</param>
        /// <param name="dim2">Second dimension of the matrices in the result.</param>
        /// <returns>The new tensor.</returns>
        public Tensor diag_embed(long offset = 0, long dim1 = -2, long dim2 = -1) => Wrap(NativeMethods.lr_shape_diag_embed(Handle, offset, dim1, dim2));

        // ---------------- sorting ----------------

        /// <summary>The <paramref name="k"/> largest (or smallest) entries along <paramref name="dim"/> and their positions.</summary>
        /// <param name="k">How many.</param>
        /// <param name="dim">The dimension.</param>
        /// <param name="largest">Largest (true) or smallest.</param>
        /// <param name="sorted">Return them in sorted order.</param>
        /// <returns>The values and their int64 positions.</returns>
        public (Tensor values, Tensor indices) topk(long k, long dim = -1, bool largest = true, bool sorted = true)
        {
            CheckStatus(NativeMethods.lr_shape_topk(Handle, k, dim, largest ? 1 : 0, sorted ? 1 : 0, out var v, out var i));
            return (new Tensor(v), new Tensor(i));
        }

        /// <summary>The entries sorted along <paramref name="dim"/> and, for each, its original position.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="descending">Largest first.</param>
        /// <param name="stable">Keep the order of equal entries.</param>
        /// <returns>The sorted values and their int64 positions.</returns>
        public (Tensor values, Tensor indices) sort(long dim = -1, bool descending = false, bool stable = false)
        {
            CheckStatus(NativeMethods.lr_shape_sort(Handle, dim, descending ? 1 : 0, stable ? 1 : 0, out var v, out var i));
            return (new Tensor(v), new Tensor(i));
        }

        /// <summary>The positions that sort the entries along <paramref name="dim"/>.</summary>
        /// <param name="dim">The dimension.</param>
        /// <param name="descending">Largest first.</param>
        /// <param name="stable">Keep the order of equal entries.</param>
        /// <returns>int64 positions.</returns>
        public Tensor argsort(long dim = -1, bool descending = false, bool stable = false)
            => Wrap(NativeMethods.lr_shape_argsort(Handle, dim, descending ? 1 : 0, stable ? 1 : 0));

        // ---------------- reordering ----------------

        /// <summary>Reverses the order of entries along each of <paramref name="dims"/> (a copy).</summary>
        /// <param name="dims">The dimensions.</param>
        /// <returns>The new tensor.</returns>
        public unsafe Tensor flip(params ReadOnlySpan<long> dims)
        {
            fixed (long* p = dims) return Wrap(NativeMethods.lr_shape_flip(Handle, p, dims.Length));
        }

        /// <summary>Reverses the columns (dimension 1).</summary>
        /// <returns>The new tensor.</returns>
        public Tensor fliplr() => flip(1);

        /// <summary>Reverses the rows (dimension 0).</summary>
        /// <returns>The new tensor.</returns>
        public Tensor flipud() => flip(0);

        /// <summary>Rotates entries by <paramref name="shifts"/> positions along <paramref name="dims"/> (null: of the flattened
        /// tensor, keeping the shape); entries shifted past the end come back at the start.</summary>
        /// <param name="shifts">The shift.</param>
        /// <param name="dims">The dimension (null: flattened).</param>
        /// <returns>The new tensor.</returns>
        public unsafe Tensor roll(long shifts, long? dims = null)
        {
            long d = dims ?? 0;
            return Wrap(NativeMethods.lr_shape_roll(Handle, &shifts, 1, &d, dims.HasValue ? 1 : 0));
        }

        /// <summary>Rotates entries by shifts[i] positions along dims[i] for each i.</summary>
        /// <param name="shifts">The shifts.</param>
        /// <param name="dims">The dimensions (same count as shifts).</param>
        /// <returns>The new tensor.</returns>
        public unsafe Tensor roll(long[] shifts, long[] dims)
        {
            ArgumentNullException.ThrowIfNull(shifts);
            ArgumentNullException.ThrowIfNull(dims);
            fixed (long* s = shifts, d = dims) return Wrap(NativeMethods.lr_shape_roll(Handle, s, shifts.Length, d, dims.Length));
        }
    }
}
