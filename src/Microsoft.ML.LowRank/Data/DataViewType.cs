using System.Collections.Immutable;
using System.Text;

namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// The type of a column of an <see cref="IDataView"/>. Each type has a <see cref="RawType"/>: the .NET type that
/// <see cref="DataViewRow.GetGetter{TValue}"/> hands out for it (for example <see cref="ReadOnlyMemory{T}"/> of
/// <see cref="char"/> for text, <see cref="VBuffer{T}"/> for vectors, <see cref="uint"/> for keys).
/// </summary>
public abstract class DataViewType : IEquatable<DataViewType>
{
    /// <summary>Creates a type with the given raw (in-memory) representation.</summary>
    /// <param name="rawType">The .NET type that getters of columns of this type produce.</param>
    protected DataViewType(Type rawType)
    {
        ArgumentNullException.ThrowIfNull(rawType);
        RawType = rawType;
    }

    /// <summary>The .NET type that getters of columns of this type produce.</summary>
    public Type RawType { get; }

    /// <summary>Whether two types describe the same kind of column.</summary>
    /// <param name="other">The other type.</param>
    /// <returns><see langword="true"/> when the types are equal.</returns>
    public abstract bool Equals(DataViewType? other);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is DataViewType t && Equals(t);

    /// <inheritdoc/>
    public override int GetHashCode() => RawType.GetHashCode();
}

/// <summary>A type whose values are single items (not vectors): text, numbers, booleans and keys.</summary>
public abstract class PrimitiveDataViewType : DataViewType
{
    /// <summary>Creates a primitive type.</summary>
    /// <param name="rawType">The .NET type that getters of columns of this type produce.</param>
    protected PrimitiveDataViewType(Type rawType) : base(rawType) { }
}

/// <summary>The text type. Its raw type is <see cref="ReadOnlyMemory{T}"/> of <see cref="char"/>, as in ML.NET;
/// getters of text columns also accept <see cref="string"/> as a convenience.</summary>
public sealed class TextDataViewType : PrimitiveDataViewType
{
    private TextDataViewType() : base(typeof(ReadOnlyMemory<char>)) { }

    /// <summary>The single instance of the text type.</summary>
    public static TextDataViewType Instance { get; } = new();

    /// <inheritdoc/>
    public override bool Equals(DataViewType? other) => ReferenceEquals(other, this);

    /// <inheritdoc/>
    public override int GetHashCode() => RawType.GetHashCode();

    /// <inheritdoc/>
    public override string ToString() => "String";
}

/// <summary>The boolean type (raw type <see cref="bool"/>).</summary>
public sealed class BooleanDataViewType : PrimitiveDataViewType
{
    private BooleanDataViewType() : base(typeof(bool)) { }

    /// <summary>The single instance of the boolean type.</summary>
    public static BooleanDataViewType Instance { get; } = new();

    /// <inheritdoc/>
    public override bool Equals(DataViewType? other) => ReferenceEquals(other, this);

    /// <inheritdoc/>
    public override int GetHashCode() => RawType.GetHashCode();

    /// <inheritdoc/>
    public override string ToString() => "Boolean";
}

/// <summary>The numeric types. Each has one shared instance, e.g. <see cref="Single"/>.</summary>
public sealed class NumberDataViewType : PrimitiveDataViewType
{
    private NumberDataViewType(Type rawType) : base(rawType) { }

    /// <summary>32-bit floating point (<see cref="float"/>).</summary>
    public static NumberDataViewType Single { get; } = new(typeof(float));

    /// <summary>64-bit floating point (<see cref="double"/>).</summary>
    public static NumberDataViewType Double { get; } = new(typeof(double));

    /// <summary>32-bit signed integer (<see cref="int"/>).</summary>
    public static NumberDataViewType Int32 { get; } = new(typeof(int));

    /// <summary>64-bit signed integer (<see cref="long"/>).</summary>
    public static NumberDataViewType Int64 { get; } = new(typeof(long));

    /// <summary>32-bit unsigned integer (<see cref="uint"/>); also the item type that <see cref="SchemaShape"/> reports for key columns.</summary>
    public static NumberDataViewType UInt32 { get; } = new(typeof(uint));

    /// <inheritdoc/>
    public override bool Equals(DataViewType? other) => ReferenceEquals(other, this);

    /// <inheritdoc/>
    public override int GetHashCode() => RawType.GetHashCode();

    /// <inheritdoc/>
    public override string ToString() => RawType.Name;
}

/// <summary>
/// A key type: a categorical value stored as a 1-based <see cref="uint"/> index into a set of <see cref="Count"/> values,
/// where 0 means missing. Key columns usually carry the original values as a
/// <see cref="AnnotationUtils.Kinds.KeyValues"/> annotation (see <see cref="AnnotationUtils.GetKeyValues{TValue}"/>).
/// </summary>
public sealed class KeyDataViewType : PrimitiveDataViewType
{
    /// <summary>Creates a key type with <paramref name="count"/> possible values (keys 1 to <paramref name="count"/>).</summary>
    /// <param name="count">The number of distinct values; between 1 and <see cref="uint.MaxValue"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">When <paramref name="count"/> is 0 or too large for a <see cref="uint"/> key.</exception>
    public KeyDataViewType(ulong count) : base(typeof(uint))
    {
        if (count == 0 || count > uint.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(count), count, "A key type needs a count between 1 and UInt32.MaxValue.");
        Count = count;
    }

    /// <summary>Creates a key type; only <see cref="uint"/> keys are supported.</summary>
    /// <param name="type">The raw key type; must be <see cref="uint"/>.</param>
    /// <param name="count">The number of distinct values.</param>
    /// <exception cref="ArgumentException">When <paramref name="type"/> is not <see cref="uint"/>.</exception>
    public KeyDataViewType(Type type, ulong count) : this(count)
    {
        if (type != typeof(uint))
            throw new ArgumentException($"Only UInt32 keys are supported, not {type.Name}.", nameof(type));
    }

    /// <summary>The number of distinct values; valid keys are 1 to <see cref="Count"/>, 0 is missing.</summary>
    public ulong Count { get; }

    /// <inheritdoc/>
    public override bool Equals(DataViewType? other) => other is KeyDataViewType k && k.Count == Count;

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(RawType, Count);

    /// <inheritdoc/>
    public override string ToString() => $"Key<UInt32, 0-{Count - 1}>";
}

/// <summary>
/// A vector of a primitive item type, of known size (<see cref="Size"/> &gt; 0) or variable size (<see cref="Size"/> 0).
/// Its raw type is <see cref="VBuffer{T}"/> of the item's raw type.
/// </summary>
public sealed class VectorDataViewType : DataViewType
{
    /// <summary>Creates a vector type.</summary>
    /// <param name="itemType">The type of the items: a number, boolean, key or text type.</param>
    /// <param name="dimensions">The dimensions; none, or a single 0, means a variable-size vector.</param>
    /// <exception cref="ArgumentException">When a dimension is negative, or 0 in a multi-dimensional shape.</exception>
    public VectorDataViewType(PrimitiveDataViewType itemType, params int[] dimensions) : base(RawVectorType(itemType))
    {
        ItemType = itemType;
        dimensions ??= [];
        if (dimensions.Length == 1 && dimensions[0] == 0)
            dimensions = [];
        long size = dimensions.Length == 0 ? 0 : 1;
        foreach (int d in dimensions)
        {
            if (d <= 0)
                throw new ArgumentException("Vector dimensions must be positive (use no dimensions for a variable-size vector).", nameof(dimensions));
            size *= d;
        }
        if (size > int.MaxValue)
            throw new ArgumentException("The vector size does not fit in an Int32.", nameof(dimensions));
        Dimensions = [.. dimensions];
        Size = (int)size;
    }

    /// <summary>The type of each item.</summary>
    public PrimitiveDataViewType ItemType { get; }

    /// <summary>The dimensions (empty for a variable-size vector).</summary>
    public ImmutableArray<int> Dimensions { get; }

    /// <summary>The total number of items, or 0 when the size varies from row to row.</summary>
    public int Size { get; }

    /// <summary>Whether every row has exactly <see cref="Size"/> items.</summary>
    public bool IsKnownSize => Size > 0;

    /// <inheritdoc/>
    public override bool Equals(DataViewType? other)
    {
        if (other is not VectorDataViewType v || !v.ItemType.Equals(ItemType) || v.Dimensions.Length != Dimensions.Length)
            return false;
        for (int i = 0; i < Dimensions.Length; i++)
        {
            if (Dimensions[i] != v.Dimensions[i])
                return false;
        }
        return true;
    }

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(ItemType, Size, Dimensions.Length);

    /// <inheritdoc/>
    public override string ToString()
    {
        var sb = new StringBuilder("Vector<").Append(ItemType);
        foreach (int d in Dimensions)
            sb.Append(", ").Append(d);
        return sb.Append('>').ToString();
    }

    private static Type RawVectorType(PrimitiveDataViewType itemType)
    {
        ArgumentNullException.ThrowIfNull(itemType);
        Type t = itemType.RawType;
        if (t == typeof(float)) return typeof(VBuffer<float>);
        if (t == typeof(double)) return typeof(VBuffer<double>);
        if (t == typeof(int)) return typeof(VBuffer<int>);
        if (t == typeof(long)) return typeof(VBuffer<long>);
        if (t == typeof(uint)) return typeof(VBuffer<uint>);
        if (t == typeof(bool)) return typeof(VBuffer<bool>);
        if (t == typeof(ReadOnlyMemory<char>)) return typeof(VBuffer<ReadOnlyMemory<char>>);
        throw new ArgumentException($"Vectors of {itemType} are not supported.", nameof(itemType));
    }
}

/// <summary>Helpers on <see cref="DataViewType"/>, as in ML.NET.</summary>
public static class DataViewTypeExtensions
{
    /// <summary>The item type of a vector type, or the type itself for a primitive type.</summary>
    /// <param name="type">The column type.</param>
    /// <returns>The item type.</returns>
    public static DataViewType GetItemType(this DataViewType type) => type is VectorDataViewType v ? v.ItemType : type;

    /// <summary>The key count of a key type or of a vector of keys, or 0 for any other type.</summary>
    /// <param name="type">The column type.</param>
    /// <returns>The number of key values, or 0.</returns>
    public static ulong GetKeyCount(this DataViewType type) => type.GetItemType() is KeyDataViewType k ? k.Count : 0;

    /// <summary>The number of items of a known-size vector, 1 for a primitive type, 0 for a variable-size vector.</summary>
    /// <param name="type">The column type.</param>
    /// <returns>The value count.</returns>
    public static int GetValueCount(this DataViewType type) => type is VectorDataViewType v ? v.Size : 1;
}
