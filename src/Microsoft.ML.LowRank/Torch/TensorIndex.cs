namespace Microsoft.ML.LowRank.Torch;

/// <summary>
/// One entry of a Python-style tensor index, as used by <c>tensor[...]</c>: an integer (<c>x[2]</c>), a slice
/// (<c>x[1:5:2]</c>), an ellipsis (<c>x[...]</c>), None (<c>x[None]</c>, a new axis of size 1), a bool, or a
/// tensor of indices or a boolean mask (advanced indexing). Longs, <see cref="Index"/> (<c>^1</c>),
/// <see cref="Range"/> (<c>1..^1</c>) and tensors convert implicitly.
/// </summary>
public readonly struct TensorIndex
{
    // Kind codes shared with the native shim (ops_shape.cpp), offset by one so that default(TensorIndex) is invalid.
    private const int KSingle = 1, KSlice = 2, KEllipsis = 3, KNone = 4, KTensor = 5, KBool = 6;

    private readonly int _kind;
    private readonly long _a, _b, _c;
    private readonly torch.Tensor? _tensor;

    private TensorIndex(int kind, long a = 0, long b = 0, long c = 0, torch.Tensor? tensor = null)
    {
        _kind = kind;
        _a = a;
        _b = b;
        _c = c;
        _tensor = tensor;
    }

    /// <summary>An integer index: selects one position and removes the dimension (negative counts from the end).</summary>
    /// <param name="index">The position.</param>
    /// <returns>The index.</returns>
    public static TensorIndex Single(long index) => new(KSingle, index);

    /// <summary>A slice <c>start:stop:step</c>; null bounds mean the start / end of the dimension, a null step means 1.
    /// Negative bounds count from the end; out-of-range bounds are clamped, as in Python. The step must be positive.</summary>
    /// <param name="start">First position (inclusive).</param>
    /// <param name="stop">End position (exclusive).</param>
    /// <param name="step">Stride (positive).</param>
    /// <returns>The index.</returns>
    public static TensorIndex Slice(long? start = null, long? stop = null, long? step = null)
    {
        var s = step ?? 1;
        return new(KSlice, start ?? (s < 0 ? long.MaxValue : 0), stop ?? (s < 0 ? long.MinValue : long.MaxValue), s);
    }

    /// <summary>The full slice <c>:</c>.</summary>
    public static TensorIndex Colon => new(KSlice, 0, long.MaxValue, 1);

    /// <summary>The ellipsis <c>...</c>: as many full slices as needed.</summary>
    public static TensorIndex Ellipsis => new(KEllipsis);

    /// <summary>None: inserts a new dimension of size 1.</summary>
    public static TensorIndex None => new(KNone);

    /// <summary>A bool index (<c>x[True]</c> adds a dimension of size 1, <c>x[False]</c> one of size 0).</summary>
    /// <param name="value">The bool.</param>
    /// <returns>The index.</returns>
    public static TensorIndex Bool(bool value) => new(KBool, value ? 1 : 0);

    /// <summary>A tensor index: an integer tensor of positions or a boolean mask (advanced indexing).</summary>
    /// <param name="index">The index tensor; it must stay alive while the index is used.</param>
    /// <returns>The index.</returns>
    public static TensorIndex Tensor(torch.Tensor index)
    {
        ArgumentNullException.ThrowIfNull(index);
        return new(KTensor, tensor: index);
    }

    /// <summary>An integer index.</summary>
    /// <param name="index">The position (negative counts from the end).</param>
    public static implicit operator TensorIndex(long index) => Single(index);

    /// <summary>An integer index from a <see cref="System.Index"/>: <c>^1</c> is the last position.</summary>
    /// <param name="index">The position.</param>
    public static implicit operator TensorIndex(Index index)
    {
        if (!index.IsFromEnd) return Single(index.Value);
        if (index.Value == 0) throw new ArgumentOutOfRangeException(nameof(index), "^0 is past the end: it cannot index a single element");
        return Single(-(long)index.Value);
    }

    /// <summary>A slice from a <see cref="System.Range"/>: <c>1..^1</c> is Python's <c>1:-1</c>, <c>..</c> is <c>:</c>.</summary>
    /// <param name="range">The range.</param>
    public static implicit operator TensorIndex(Range range)
    {
        var s = range.Start;
        var e = range.End;
        long start = !s.IsFromEnd ? s.Value : s.Value == 0 ? long.MaxValue : -(long)s.Value;
        long stop = !e.IsFromEnd ? e.Value : e.Value == 0 ? long.MaxValue : -(long)e.Value;
        return new(KSlice, start, stop, 1);
    }

    /// <summary>A tensor index (integer positions or a boolean mask).</summary>
    /// <param name="index">The index tensor.</param>
    public static implicit operator TensorIndex(torch.Tensor index) => Tensor(index);

    /// <summary>Python's spelling of this index, e.g. <c>1:5:2</c>.</summary>
    /// <returns>The text.</returns>
    public override string ToString() => _kind switch
    {
        KSingle => _a.ToString(System.Globalization.CultureInfo.InvariantCulture),
        KSlice => $"{(_a == 0 ? "" : _a.ToString(System.Globalization.CultureInfo.InvariantCulture))}:{(_b == long.MaxValue ? "" : _b.ToString(System.Globalization.CultureInfo.InvariantCulture))}{(_c == 1 ? "" : ":" + _c.ToString(System.Globalization.CultureInfo.InvariantCulture))}",
        KEllipsis => "...",
        KNone => "None",
        KBool => _a != 0 ? "True" : "False",
        KTensor => "tensor",
        _ => "(invalid)",
    };

    /// <summary>Writes the native encoding (4 longs: kind, a, b, c) and the tensor handle of each index.</summary>
    internal static unsafe void Encode(ReadOnlySpan<TensorIndex> indices, long* spec, IntPtr* tensors)
    {
        for (int i = 0; i < indices.Length; i++)
        {
            ref readonly var x = ref indices[i];
            if (x._kind == 0) throw new ArgumentException($"index {i} is an uninitialised TensorIndex", nameof(indices));
            long* e = spec + 4 * i;
            e[0] = x._kind - 1;
            e[1] = x._a;
            e[2] = x._b;
            e[3] = x._c;
            tensors[i] = x._tensor is null ? IntPtr.Zero : x._tensor.Handle.DangerousGetHandle();
        }
    }

    /// <summary>Keeps the index tensors reachable until after a native call that uses their raw handles.</summary>
    internal static void KeepAlive(ReadOnlySpan<TensorIndex> indices)
    {
        for (int i = 0; i < indices.Length; i++) GC.KeepAlive(indices[i]._tensor);
    }
}
