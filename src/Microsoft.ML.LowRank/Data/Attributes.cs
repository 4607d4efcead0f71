using System.Collections.Immutable;

namespace Microsoft.ML.LowRank.Data;

/// <summary>Gives the column a member of a row class maps to a name other than the member's own.</summary>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class ColumnNameAttribute : Attribute
{
    /// <summary>Maps the member to the column <paramref name="name"/>.</summary>
    /// <param name="name">The column name.</param>
    public ColumnNameAttribute(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
    }

    /// <summary>The column name.</summary>
    public string Name { get; }
}

/// <summary>Keeps a public member of a row class out of the schema.</summary>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class NoColumnAttribute : Attribute
{
}

/// <summary>
/// Says which field(s) of a delimited text file a member is read from (0-based), for
/// <see cref="DataOperationsCatalog.LoadFromTextFile{TInput}"/>. A range or a list of fields makes a vector.
/// </summary>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class LoadColumnAttribute : Attribute
{
    /// <summary>Reads the member from one field.</summary>
    /// <param name="fieldIndex">The 0-based field index.</param>
    public LoadColumnAttribute(int fieldIndex) : this([fieldIndex], isVector: false)
    {
    }

    /// <summary>Reads a vector member from the fields <paramref name="start"/> to <paramref name="end"/>, both included.</summary>
    /// <param name="start">The first field (0-based).</param>
    /// <param name="end">The last field (0-based, included).</param>
    public LoadColumnAttribute(int start, int end) : this(Range(start, end), isVector: true)
    {
    }

    /// <summary>Reads a vector member from the listed fields, in that order.</summary>
    /// <param name="columnIndexes">The 0-based field indices.</param>
    public LoadColumnAttribute(int[] columnIndexes) : this(columnIndexes ?? throw new ArgumentNullException(nameof(columnIndexes)), isVector: true)
    {
    }

    private LoadColumnAttribute(int[] indices, bool isVector)
    {
        if (indices.Length == 0)
            throw new ArgumentException("At least one field index is needed.", nameof(indices));
        foreach (int i in indices)
            ArgumentOutOfRangeException.ThrowIfNegative(i, nameof(indices));
        FieldIndices = [.. indices];
        IsVector = isVector;
    }

    /// <summary>The 0-based field indices, in order.</summary>
    public ImmutableArray<int> FieldIndices { get; }

    /// <summary>Whether the attribute was given a range or a list (a vector member).</summary>
    public bool IsVector { get; }

    private static int[] Range(int start, int end)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        if (end < start)
            throw new ArgumentOutOfRangeException(nameof(end), end, "end must not be less than start.");
        return [.. Enumerable.Range(start, end - start + 1)];
    }
}

/// <summary>Marks a <see cref="uint"/> member (or <see cref="uint"/> array) as a key column with a given number of values.</summary>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class KeyTypeAttribute : Attribute
{
    /// <summary>A key type with <paramref name="count"/> values (keys 1 to <paramref name="count"/>; 0 is missing).</summary>
    /// <param name="count">The number of values.</param>
    public KeyTypeAttribute(ulong count)
    {
        if (count == 0 || count > uint.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(count), count, "A key count must be between 1 and UInt32.MaxValue.");
        Count = count;
    }

    /// <summary>The number of key values.</summary>
    public ulong Count { get; }
}

/// <summary>Gives an array member a fixed vector size (without it, array members are variable-size vectors).</summary>
[AttributeUsage(AttributeTargets.Field | AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class VectorTypeAttribute : Attribute
{
    /// <summary>A variable-size vector.</summary>
    public VectorTypeAttribute()
    {
        Dimensions = [];
    }

    /// <summary>A vector with the given dimensions (their product is the size).</summary>
    /// <param name="dimensions">The positive dimensions.</param>
    public VectorTypeAttribute(params int[] dimensions)
    {
        ArgumentNullException.ThrowIfNull(dimensions);
        foreach (int d in dimensions)
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(d, nameof(dimensions));
        Dimensions = [.. dimensions];
    }

    /// <summary>The dimensions; empty for a variable-size vector.</summary>
    public ImmutableArray<int> Dimensions { get; }
}
