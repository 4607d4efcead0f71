using System.Text;

namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// A vector value, dense or sparse, as produced by getters of <see cref="VectorDataViewType"/> columns.
/// A dense buffer holds all <see cref="Length"/> values; a sparse buffer holds only the values at
/// <see cref="GetIndices"/> and every other slot is <c>default(T)</c>.
/// </summary>
/// <remarks>
/// As in ML.NET, a getter may reuse the arrays of the buffer passed to it by reference, so a caller that wants
/// to keep a value past the next call must copy it (for example with <see cref="CopyTo(ref VBuffer{T})"/> into a
/// fresh buffer, or <see cref="DenseValues"/>).
/// </remarks>
/// <typeparam name="T">The item type.</typeparam>
public readonly struct VBuffer<T>
{
    internal readonly T[]? _values;
    internal readonly int[]? _indices;
    private readonly int _count;

    /// <summary>Creates a dense buffer over the first <paramref name="length"/> items of <paramref name="values"/>, or a
    /// sparse one when <paramref name="indices"/> is given (then the number of stored values is <paramref name="indices"/>' length).</summary>
    /// <param name="length">The logical length of the vector.</param>
    /// <param name="values">The values (not copied).</param>
    /// <param name="indices">For a sparse buffer, the strictly increasing slot indices of the values; otherwise <see langword="null"/>.</param>
    public VBuffer(int length, T[] values, int[]? indices = null)
        : this(length, indices is null ? length : indices.Length, values, indices)
    {
    }

    /// <summary>Creates a buffer with <paramref name="count"/> stored values; dense when <paramref name="count"/> equals <paramref name="length"/>.</summary>
    /// <param name="length">The logical length of the vector.</param>
    /// <param name="count">How many values are stored.</param>
    /// <param name="values">The values (not copied); at least <paramref name="count"/> long.</param>
    /// <param name="indices">The slot indices of the stored values when sparse (at least <paramref name="count"/> long, strictly increasing, within the length).</param>
    /// <exception cref="ArgumentException">When the arrays are too short or the indices are not valid.</exception>
    public VBuffer(int length, int count, T[] values, int[]? indices)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (count < 0 || count > length)
            throw new ArgumentOutOfRangeException(nameof(count), count, "count must be between 0 and length.");
        if (count > 0 && (values is null || values.Length < count))
            throw new ArgumentException("values is shorter than count.", nameof(values));
        if (count < length)
        {
            if (indices is null || indices.Length < count)
                throw new ArgumentException("A sparse buffer needs at least count indices.", nameof(indices));
            int prev = -1;
            for (int i = 0; i < count; i++)
            {
                if (indices[i] <= prev || indices[i] >= length)
                    throw new ArgumentException("Sparse indices must be strictly increasing and less than length.", nameof(indices));
                prev = indices[i];
            }
        }
        Length = length;
        _count = count;
        _values = values;
        _indices = indices;
    }

    // Used by getters that fill a buffer they own: no validation.
    private VBuffer(int length, int count, T[]? values, int[]? indices, bool _)
    {
        Length = length;
        _count = count;
        _values = values;
        _indices = indices;
    }

    /// <summary>The logical length of the vector.</summary>
    public int Length { get; }

    /// <summary>Whether every slot is stored explicitly.</summary>
    public bool IsDense => _count == Length;

    /// <summary>The stored values: all of them when dense, the explicitly stored ones when sparse.</summary>
    /// <returns>A span over the stored values.</returns>
    public ReadOnlySpan<T> GetValues() => _count == 0 ? ReadOnlySpan<T>.Empty : new ReadOnlySpan<T>(_values, 0, _count);

    /// <summary>The slot indices of the stored values; empty when dense.</summary>
    /// <returns>A span over the indices.</returns>
    public ReadOnlySpan<int> GetIndices() => IsDense ? ReadOnlySpan<int>.Empty : new ReadOnlySpan<int>(_indices, 0, _count);

    /// <summary>Enumerates all <see cref="Length"/> values, with <c>default(T)</c> in slots a sparse buffer does not store.</summary>
    /// <returns>The dense sequence of values.</returns>
    public IEnumerable<T> DenseValues()
    {
        var copy = new T[Length];
        CopyTo(copy);
        return copy;
    }

    /// <summary>The value at <paramref name="index"/>, or <c>default(T)</c> for a slot a sparse buffer does not store.</summary>
    /// <param name="index">The slot, between 0 and <see cref="Length"/> - 1.</param>
    /// <returns>The value.</returns>
    public T GetItemOrDefault(int index)
    {
        if ((uint)index >= (uint)Length)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"The vector has {Length} slots.");
        if (IsDense)
            return _values![index];
        int pos = GetIndices().BinarySearch(index);
        return pos >= 0 ? _values![pos] : default!;
    }

    /// <summary>Writes all <see cref="Length"/> values (densified) to <paramref name="destination"/>.</summary>
    /// <param name="destination">A span at least <see cref="Length"/> long.</param>
    public void CopyTo(Span<T> destination)
    {
        if (destination.Length < Length)
            throw new ArgumentException($"The destination needs {Length} items.", nameof(destination));
        if (IsDense)
        {
            GetValues().CopyTo(destination);
            return;
        }
        destination[..Length].Clear();
        var values = GetValues();
        var indices = GetIndices();
        for (int i = 0; i < values.Length; i++)
            destination[indices[i]] = values[i];
    }

    /// <summary>Copies this buffer into <paramref name="destination"/>, reusing its arrays when they are large enough.</summary>
    /// <param name="destination">The buffer to overwrite.</param>
    public void CopyTo(ref VBuffer<T> destination)
    {
        T[]? values = destination._values;
        int[]? indices = destination._indices;
        if (_count > 0 && (values is null || values.Length < _count))
            values = new T[_count];
        GetValues().CopyTo(values);
        if (!IsDense)
        {
            if (indices is null || indices.Length < _count)
                indices = new int[_count];
            GetIndices().CopyTo(indices);
        }
        destination = new VBuffer<T>(Length, _count, values, indices, false);
    }

    /// <summary>Enumerates (slot, value) pairs: the stored ones, or all slots when <paramref name="all"/> is set.</summary>
    /// <param name="all">Whether to include the slots a sparse buffer does not store (with <c>default(T)</c>).</param>
    /// <returns>The pairs in slot order.</returns>
    public IEnumerable<KeyValuePair<int, T>> Items(bool all = false)
    {
        var list = new List<KeyValuePair<int, T>>(all ? Length : _count);
        if (all || IsDense)
        {
            var dense = new T[Length];
            CopyTo(dense);
            for (int i = 0; i < Length; i++)
                list.Add(new(i, dense[i]));
            return list;
        }
        var values = GetValues();
        var indices = GetIndices();
        for (int i = 0; i < values.Length; i++)
            list.Add(new(indices[i], values[i]));
        return list;
    }

    /// <inheritdoc/>
    public override string ToString()
    {
        var sb = new StringBuilder("[");
        int shown = Math.Min(Length, 16);
        for (int i = 0; i < shown; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(GetItemOrDefault(i));
        }
        if (shown < Length)
            sb.Append(", ... (").Append(Length).Append(')');
        return sb.Append(']').ToString();
    }

    /// <summary>Fills <paramref name="destination"/> densely with <paramref name="source"/>, reusing its arrays when possible.</summary>
    internal static void CopyDense(ReadOnlySpan<T> source, ref VBuffer<T> destination)
    {
        T[]? values = destination._values;
        if (source.Length > 0 && (values is null || values.Length < source.Length))
            values = new T[source.Length];
        source.CopyTo(values);
        destination = new VBuffer<T>(source.Length, source.Length, values, destination._indices, false);
    }

    /// <summary>Gets an array of at least <paramref name="length"/> items to write a dense value into, reusing
    /// <paramref name="destination"/>'s; call <see cref="CommitDense"/> afterwards.</summary>
    internal static T[] DenseEditor(ref VBuffer<T> destination, int length)
    {
        T[]? values = destination._values;
        if (values is null || values.Length < length)
            values = new T[Math.Max(length, 1)];
        return values;
    }

    /// <summary>Sets <paramref name="destination"/> to the first <paramref name="length"/> items of <paramref name="values"/>.</summary>
    internal static void CommitDense(ref VBuffer<T> destination, T[] values, int length) =>
        destination = new VBuffer<T>(length, length, values, destination._indices, false);
}
