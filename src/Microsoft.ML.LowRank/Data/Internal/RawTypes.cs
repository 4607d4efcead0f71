using System.Globalization;

namespace Microsoft.ML.LowRank.Data;

/// <summary>A generic operation run for one raw item type chosen at run time (see <see cref="RawTypes.Visit{TResult}"/>).</summary>
internal interface IRawTypeVisitor<out TResult>
{
    TResult Visit<T>() where T : struct;
}

/// <summary>The closed set of raw item types the data layer stores, and generic dispatch over them without reflection.</summary>
internal static class RawTypes
{
    /// <summary>Calls <paramref name="visitor"/>.Visit&lt;T&gt; with T = <paramref name="itemRawType"/>.</summary>
    public static TResult Visit<TResult>(Type itemRawType, IRawTypeVisitor<TResult> visitor)
    {
        if (itemRawType == typeof(ReadOnlyMemory<char>)) return visitor.Visit<ReadOnlyMemory<char>>();
        if (itemRawType == typeof(float)) return visitor.Visit<float>();
        if (itemRawType == typeof(double)) return visitor.Visit<double>();
        if (itemRawType == typeof(int)) return visitor.Visit<int>();
        if (itemRawType == typeof(long)) return visitor.Visit<long>();
        if (itemRawType == typeof(uint)) return visitor.Visit<uint>();
        if (itemRawType == typeof(bool)) return visitor.Visit<bool>();
        throw new NotSupportedException($"Values of type {itemRawType.Name} are not supported.");
    }

    /// <summary>The missing value of a type: NaN for floating point, empty for text, 0/false otherwise.</summary>
    public static T Missing<T>()
    {
        if (typeof(T) == typeof(float)) return (T)(object)float.NaN;
        if (typeof(T) == typeof(double)) return (T)(object)double.NaN;
        return default!;
    }

    /// <summary>Whether a value counts as missing for building a key dictionary: NaN, or empty text.</summary>
    public static bool IsMissing<T>(in T value)
    {
        if (typeof(T) == typeof(float)) return float.IsNaN((float)(object)value!);
        if (typeof(T) == typeof(double)) return double.IsNaN((double)(object)value!);
        if (typeof(T) == typeof(ReadOnlyMemory<char>)) return ((ReadOnlyMemory<char>)(object)value!).IsEmpty;
        return false;
    }

    /// <summary>The invariant text form of a value.</summary>
    public static string Format<T>(in T value) => value switch
    {
        ReadOnlyMemory<char> m => m.ToString(),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        null => "",
        _ => value.ToString() ?? "",
    };

    /// <summary>The primitive data view type for an item raw type (keys map to <see cref="NumberDataViewType.UInt32"/>).</summary>
    public static PrimitiveDataViewType PrimitiveFor(Type itemRawType)
    {
        if (itemRawType == typeof(ReadOnlyMemory<char>)) return TextDataViewType.Instance;
        if (itemRawType == typeof(float)) return NumberDataViewType.Single;
        if (itemRawType == typeof(double)) return NumberDataViewType.Double;
        if (itemRawType == typeof(int)) return NumberDataViewType.Int32;
        if (itemRawType == typeof(long)) return NumberDataViewType.Int64;
        if (itemRawType == typeof(uint)) return NumberDataViewType.UInt32;
        if (itemRawType == typeof(bool)) return BooleanDataViewType.Instance;
        throw new NotSupportedException($"Values of type {itemRawType.Name} are not supported.");
    }

    /// <summary>Copies a value out of a getter's buffer so it can be stored (vectors get fresh arrays, foreign text becomes a string).</summary>
    public static T Detach<T>(in T value)
    {
        if (typeof(T) == typeof(ReadOnlyMemory<char>))
            return (T)(object)DetachText((ReadOnlyMemory<char>)(object)value!);
        return value;
    }

    /// <summary>Makes text independent of any buffer a cursor may reuse.</summary>
    public static ReadOnlyMemory<char> DetachText(ReadOnlyMemory<char> text) =>
        text.IsEmpty || System.Runtime.InteropServices.MemoryMarshal.TryGetString(text, out _, out _, out _) ? text : text.ToString().AsMemory();
}

/// <summary>Checks getter types and columns for cursor implementations.</summary>
internal static class GetterCast
{
    /// <summary>Returns <paramref name="getter"/> as a <see cref="ValueGetter{TValue}"/>, converting text to <see cref="string"/> when asked.</summary>
    public static ValueGetter<TValue> Cast<TValue>(Delegate getter, DataViewSchema.Column column)
    {
        if (getter is ValueGetter<TValue> typed)
            return typed;
        if (typeof(TValue) == typeof(string) && getter is ValueGetter<ReadOnlyMemory<char>> text)
        {
            ReadOnlyMemory<char> buffer = default;
            ValueGetter<string> s = (ref string value) =>
            {
                text(ref buffer);
                value = buffer.ToString();
            };
            return (ValueGetter<TValue>)(object)s;
        }
        throw new InvalidOperationException(
            $"Invalid TValue in GetGetter for column '{column.Name}': '{typeof(TValue).Name}', expected '{column.Type.RawType.Name}' (column type {column.Type}).");
    }

    /// <summary>Checks that <paramref name="column"/> is column <c>column.Index</c> of <paramref name="schema"/>.</summary>
    public static void CheckColumn(DataViewSchema schema, DataViewSchema.Column column)
    {
        if ((uint)column.Index >= (uint)schema.Count || schema[column.Index].Name != column.Name || !schema[column.Index].Type.Equals(column.Type))
            throw new ArgumentOutOfRangeException(nameof(column), column.Name, $"Column '{column.Name}' (index {column.Index}) does not belong to this schema.");
    }

    /// <summary>The active flags for a schema from a columnsNeeded argument.</summary>
    public static bool[] ActiveFlags(DataViewSchema schema, IEnumerable<DataViewSchema.Column> columnsNeeded)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var active = new bool[schema.Count];
        foreach (var c in columnsNeeded)
        {
            CheckColumn(schema, c);
            active[c.Index] = true;
        }
        return active;
    }
}
