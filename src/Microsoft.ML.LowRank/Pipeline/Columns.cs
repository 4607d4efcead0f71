using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>Column checks shared by the low-rank estimators and transformers, with ML.NET's error wording
/// ("Could not find input column 'X'", "Schema mismatch for input column 'X': expected ..., got ...").</summary>
internal static class Columns
{
    public static ArgumentOutOfRangeException Missing(string role, string name, IEnumerable<string> available) =>
        new("inputSchema", $"Could not find {role} column '{name}'. Columns: {string.Join(", ", available)}.");

    public static ArgumentOutOfRangeException Mismatch(string role, string name, string expected, string got) =>
        new("inputSchema", $"Schema mismatch for {role} column '{name}': expected {expected}, got {got}.");

    // ------------------------------------------------------------------ shapes (estimator side)

    public static SchemaShape.Column Find(SchemaShape shape, string role, string name)
    {
        if (string.IsNullOrEmpty(name)) throw new ArgumentException($"the {role} column name is empty", role);
        return shape.TryFindColumn(name, out var c) ? c : throw Missing(role, name, shape.Select(x => x.Name));
    }

    public static void CheckText(SchemaShape shape, string role, string name)
    {
        var c = Find(shape, role, name);
        if (c.Kind != SchemaShape.Column.VectorKind.Scalar || c.IsKey || c.ItemType is not TextDataViewType)
            throw Mismatch(role, name, "String", c.GetTypeString());
    }

    public static void CheckKey(SchemaShape shape, string role, string name)
    {
        var c = Find(shape, role, name);
        if (c.Kind != SchemaShape.Column.VectorKind.Scalar || !c.IsKey)
            throw Mismatch(role, name, "Key<UInt32> (map it with ctx.Transforms.Conversion.MapValueToKey)", c.GetTypeString());
    }

    public static void CheckNumber(SchemaShape shape, string role, string name)
    {
        var c = Find(shape, role, name);
        if (c.Kind != SchemaShape.Column.VectorKind.Scalar || c.IsKey || !(c.ItemType.Equals(NumberDataViewType.Single) || c.ItemType.Equals(NumberDataViewType.Double)))
            throw Mismatch(role, name, "Single or Double", c.GetTypeString());
    }

    public static void CheckWords(SchemaShape shape, string role, string name)
    {
        var c = Find(shape, role, name);
        if (c.IsKey || c.ItemType is not TextDataViewType)
            throw Mismatch(role, name, "String (words separated by spaces) or a vector of String (one word per item)", c.GetTypeString());
    }

    public static void CheckKeyVector(SchemaShape shape, string role, string name)
    {
        var c = Find(shape, role, name);
        if (c.Kind == SchemaShape.Column.VectorKind.Scalar || !c.IsKey)
            throw Mismatch(role, name, "a vector of Key<UInt32> (one tag per word; map the tags with ctx.Transforms.Conversion.MapValueToKey)", c.GetTypeString());
    }

    /// <summary>The annotations shape of a key column's key values (to pass on to a predicted-label column).</summary>
    public static SchemaShape? KeyValuesShape(SchemaShape.Column label) =>
        label.Annotations.TryFindColumn(AnnotationUtils.Kinds.KeyValues, out var kv) ? new SchemaShape([kv]) : null;

    // ------------------------------------------------------------------ schemas (transformer side)

    public static DataViewSchema.Column Find(DataViewSchema schema, string role, string name) =>
        schema.GetColumnOrNull(name) ?? throw Missing(role, name, schema.Where(c => !c.IsHidden).Select(c => c.Name));

    public static DataViewSchema.Column Text(DataViewSchema schema, string role, string name)
    {
        var c = Find(schema, role, name);
        if (c.Type is not TextDataViewType) throw Mismatch(role, name, "String", c.Type.ToString()!);
        return c;
    }

    public static DataViewSchema.Column Words(DataViewSchema schema, string role, string name)
    {
        var c = Find(schema, role, name);
        if (c.Type.GetItemType() is not TextDataViewType)
            throw Mismatch(role, name, "String (words separated by spaces) or a vector of String", c.Type.ToString()!);
        return c;
    }

    /// <summary>A getter of the text of a column as a string.</summary>
    public static Func<string> TextGetter(DataViewRow row, DataViewSchema.Column column)
    {
        var getter = row.GetGetter<ReadOnlyMemory<char>>(column);
        ReadOnlyMemory<char> value = default;
        return () =>
        {
            getter(ref value);
            return value.ToString();
        };
    }

    /// <summary>A getter of the words of a text column (split on white space) or of a text-vector column (one word per item).</summary>
    public static Func<string[]> WordsGetter(DataViewRow row, DataViewSchema.Column column)
    {
        if (column.Type is VectorDataViewType)
        {
            var getter = row.GetGetter<VBuffer<ReadOnlyMemory<char>>>(column);
            VBuffer<ReadOnlyMemory<char>> buffer = default;
            return () =>
            {
                getter(ref buffer);
                var items = new ReadOnlyMemory<char>[buffer.Length];
                buffer.CopyTo(items);
                return [.. items.Select(m => m.ToString())];
            };
        }
        var text = TextGetter(row, column);
        return () => SplitWords(text());
    }

    public static string[] SplitWords(string text) => text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The key values of a key column as text (item i is key i + 1), or null without key values.</summary>
    public static string[]? KeyValuesAsText(DataViewSchema.Column column)
    {
        if (!column.HasKeyValues()) return null;
        var type = (VectorDataViewType)column.Annotations.Schema[AnnotationUtils.Kinds.KeyValues].Type;
        return RawTypes.Visit(type.ItemType.RawType, new KeyValueReader(column));
    }

    private sealed class KeyValueReader(DataViewSchema.Column column) : IRawTypeVisitor<string[]>
    {
        public string[] Visit<T>() where T : struct
        {
            VBuffer<T> buffer = default;
            column.GetKeyValues(ref buffer);
            var values = new T[buffer.Length];
            buffer.CopyTo(values);
            return [.. values.Select(v => RawTypes.Format(v))];
        }
    }

    /// <summary>Key-values annotations holding text values.</summary>
    public static DataViewSchema.Annotations TextKeyValues(IReadOnlyList<string> values) =>
        AnnotationUtils.ConstantKeyValues(TextDataViewType.Instance, values.Select(v => v.AsMemory()).ToArray());
}

/// <summary>The values behind the keys of a label column (item i is key i + 1), kept as text with their item type so they
/// can be saved and turned back into a KeyValues annotation.</summary>
internal sealed record KeyValueSet(PrimitiveDataViewType ItemType, string[] Values)
{
    public int Count => Values.Length;

    /// <summary>The key values of a key column, or null when it has none.</summary>
    public static KeyValueSet? FromColumn(DataViewSchema.Column column)
    {
        var values = Columns.KeyValuesAsText(column);
        if (values is null) return null;
        var type = ((VectorDataViewType)column.Annotations.Schema[AnnotationUtils.Kinds.KeyValues].Type).ItemType;
        return new KeyValueSet(type, values);
    }

    /// <summary>The KeyValues annotation.</summary>
    public DataViewSchema.Annotations ToAnnotations() => RawTypes.Visit(ItemType.RawType, new Builder(Values));

    /// <summary>The key (1-based) whose value is <paramref name="text"/>, or 0.</summary>
    public uint KeyOf(string text)
    {
        int i = Array.IndexOf(Values, text);
        return i < 0 ? 0 : (uint)(i + 1);
    }

    private sealed class Builder(string[] values) : IRawTypeVisitor<DataViewSchema.Annotations>
    {
        public DataViewSchema.Annotations Visit<T>() where T : struct
        {
            var typed = new T[values.Length];
            for (int i = 0; i < values.Length; i++)
            {
                if (!ValueParsing.TryParse(values[i], out typed[i]))
                    throw new InvalidDataException($"key value '{values[i]}' is not a valid {RawTypes.PrimitiveFor(typeof(T))}");
            }
            return AnnotationUtils.ConstantKeyValues(RawTypes.PrimitiveFor(typeof(T)), typed);
        }
    }
}
