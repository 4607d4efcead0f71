namespace Microsoft.ML.LowRank.Data;

/// <summary>Well-known annotation kinds and helpers to read them from a column.</summary>
public static class AnnotationUtils
{
    /// <summary>The names of the well-known annotation kinds.</summary>
    public static class Kinds
    {
        /// <summary>On a key column (or vector of keys): a vector with the value behind each key, key 1 first.</summary>
        public const string KeyValues = "KeyValues";

        /// <summary>On a known-size vector column: a text vector with a name for each slot.</summary>
        public const string SlotNames = "SlotNames";
    }

    /// <summary>Whether the column is a key (or vector of keys) with a <see cref="Kinds.KeyValues"/> annotation of matching size.</summary>
    /// <param name="column">The column.</param>
    /// <returns><see langword="true"/> when the key values can be read.</returns>
    public static bool HasKeyValues(this DataViewSchema.Column column)
    {
        ulong count = column.Type.GetKeyCount();
        if (count == 0)
            return false;
        var kv = column.Annotations.Schema.GetColumnOrNull(Kinds.KeyValues);
        return kv is { Type: VectorDataViewType v } && (ulong)v.Size == count;
    }

    /// <summary>Reads the values behind the keys of a key column: item <c>i</c> is the value of key <c>i + 1</c>.</summary>
    /// <typeparam name="TValue">The raw item type of the annotation (e.g. <see cref="ReadOnlyMemory{T}"/> of <see cref="char"/> for text).</typeparam>
    /// <param name="column">The key column.</param>
    /// <param name="keyValues">Receives the values.</param>
    /// <exception cref="InvalidOperationException">When the column has no key values.</exception>
    public static void GetKeyValues<TValue>(this DataViewSchema.Column column, ref VBuffer<TValue> keyValues)
    {
        if (column.Annotations.Schema.GetColumnOrNull(Kinds.KeyValues) is not { } kv)
            throw new InvalidOperationException($"Column '{column.Name}' has no {Kinds.KeyValues} annotation.");
        column.Annotations.GetGetter<VBuffer<TValue>>(kv)(ref keyValues);
    }

    /// <summary>Whether the column is a known-size vector with a <see cref="Kinds.SlotNames"/> annotation of matching size.</summary>
    /// <param name="column">The column.</param>
    /// <returns><see langword="true"/> when slot names can be read.</returns>
    public static bool HasSlotNames(this DataViewSchema.Column column)
    {
        if (column.Type is not VectorDataViewType { IsKnownSize: true } vec)
            return false;
        var sn = column.Annotations.Schema.GetColumnOrNull(Kinds.SlotNames);
        return sn is { Type: VectorDataViewType v } && v.ItemType is TextDataViewType && v.Size == vec.Size;
    }

    /// <summary>Reads the slot names of a vector column.</summary>
    /// <param name="column">The vector column.</param>
    /// <param name="slotNames">Receives the names.</param>
    /// <exception cref="InvalidOperationException">When the column has no slot names.</exception>
    public static void GetSlotNames(this DataViewSchema.Column column, ref VBuffer<ReadOnlyMemory<char>> slotNames)
    {
        if (column.Annotations.Schema.GetColumnOrNull(Kinds.SlotNames) is not { } sn)
            throw new InvalidOperationException($"Column '{column.Name}' has no {Kinds.SlotNames} annotation.");
        column.Annotations.GetGetter<VBuffer<ReadOnlyMemory<char>>>(sn)(ref slotNames);
    }

    /// <summary>An annotation set holding constant key values.</summary>
    internal static DataViewSchema.Annotations ConstantKeyValues<TValue>(PrimitiveDataViewType valueType, TValue[] values)
    {
        var b = new DataViewSchema.Annotations.Builder();
        b.AddKeyValues<TValue>(values.Length, valueType, (ref VBuffer<TValue> dst) => VBuffer<TValue>.CopyDense(values, ref dst));
        return b.ToAnnotations();
    }
}
