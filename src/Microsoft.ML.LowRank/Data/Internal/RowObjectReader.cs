using System.Diagnostics.CodeAnalysis;

namespace Microsoft.ML.LowRank.Data;

/// <summary>Reads rows of a data view into objects of a user class (CreateEnumerable) and single columns (GetColumn).</summary>
internal static class RowObjectReader
{
    public static IEnumerable<TRow> CreateEnumerable<[DynamicallyAccessedMembers(SchemaDefinition.MembersAndConstructor)] TRow>(
        IDataView data, bool reuseRowObject, bool ignoreMissingColumns, SchemaDefinition? schemaDefinition)
        where TRow : class, new()
    {
        ArgumentNullException.ThrowIfNull(data);
        var definition = schemaDefinition ?? SchemaDefinition.Create<TRow>(SchemaDefinition.Direction.Write);
        definition.Bind(typeof(TRow));
        var bindings = new List<(MemberAccessor<TRow> Accessor, DataViewSchema.Column Column)>();
        foreach (var def in definition)
        {
            var column = data.Schema.GetColumnOrNull(def.ColumnName);
            if (column is null)
            {
                if (ignoreMissingColumns)
                    continue;
                throw new ArgumentOutOfRangeException(nameof(data),
                    $"Column '{def.ColumnName}' (for member '{def.MemberName}' of {typeof(TRow).Name}) not found in the data. Columns: {string.Join(", ", data.Schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
            }
            CheckCompatible(def, column.Value, typeof(TRow));
            bindings.Add((MemberAccessor<TRow>.Create(def), column.Value));
        }
        return Enumerate(data, bindings, reuseRowObject);
    }

    private static void CheckCompatible(SchemaDefinition.Column def, DataViewSchema.Column column, Type rowType)
    {
        var wanted = def.ColumnType;
        bool ok = wanted.RawType == column.Type.RawType;
        if (ok && wanted is VectorDataViewType { IsKnownSize: true } wv && column.Type is VectorDataViewType cv && cv.Size != wv.Size)
            ok = false;
        if (!ok)
            throw new InvalidOperationException(
                $"Cannot bind column '{column.Name}' of type {column.Type} to member '{def.MemberName}' of {rowType.Name}, of type {def.MemberType?.Name} ({wanted}).");
    }

    private static IEnumerable<TRow> Enumerate<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)] TRow>(
        IDataView data, List<(MemberAccessor<TRow> Accessor, DataViewSchema.Column Column)> bindings, bool reuse)
        where TRow : class, new()
    {
        using var cursor = data.GetRowCursor(bindings.Select(b => b.Column));
        var setters = bindings.Select(b => b.Accessor.MakeSetter(cursor, b.Column, reuse)).ToArray();
        TRow? shared = reuse ? new TRow() : null;
        while (cursor.MoveNext())
        {
            var row = shared ?? new TRow();
            foreach (var set in setters)
                set(row);
            yield return row;
        }
    }

    public static IEnumerable<T> GetColumn<T>(IDataView data, DataViewSchema.Column column)
    {
        ArgumentNullException.ThrowIfNull(data);
        GetterCast.CheckColumn(data.Schema, column);
        var reader = MemberTypes.Visit(typeof(T), new ColumnReaderFactory<T>(data, column))
            ?? throw new InvalidOperationException($"Cannot read column '{column.Name}' of type {column.Type} as {typeof(T).Name}; supported types: {MemberTypes.Supported}.");
        return reader;
    }

    private sealed class ColumnReaderFactory<T>(IDataView data, DataViewSchema.Column column) : IMemberTypeVisitor<IEnumerable<T>>
    {
        public IEnumerable<T> Visit<TMember, TRaw>(IMemberConverter<TMember, TRaw> converter, PrimitiveDataViewType itemType, bool isVector)
        {
            if (typeof(TRaw) != column.Type.RawType)
                throw new InvalidOperationException($"Cannot read column '{column.Name}' of type {column.Type} as {typeof(T).Name}.");
            return (IEnumerable<T>)(object)Read(converter);
        }

        private IEnumerable<TMember> Read<TMember, TRaw>(IMemberConverter<TMember, TRaw> converter)
        {
            using var cursor = data.GetRowCursor([column]);
            var getter = cursor.GetGetter<TRaw>(column);
            TRaw raw = default!;
            while (cursor.MoveNext())
            {
                getter(ref raw);
                yield return converter.FromRaw(raw, default!, false);
            }
        }
    }
}
