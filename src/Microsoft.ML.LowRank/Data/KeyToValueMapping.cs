namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// Maps key columns back to the values behind the keys, read from the column's
/// <see cref="AnnotationUtils.Kinds.KeyValues"/> annotation (as written by
/// <see cref="ValueToKeyMappingEstimator"/> or a trainer's predicted-label column). Key 0 (missing) and keys beyond
/// the key values map to the missing value: empty text, NaN, or 0/false. Nothing is learned: <see cref="Fit"/> only
/// checks the schema. Made by <see cref="ConversionsCatalog.MapKeyToValue(string, string)"/>.
/// </summary>
public sealed class KeyToValueMappingEstimator : IEstimator<KeyToValueMappingTransformer>
{
    private readonly InputOutputColumnPair[] _columns;

    internal KeyToValueMappingEstimator(InputOutputColumnPair[] columns)
    {
        ArgumentNullException.ThrowIfNull(columns);
        if (columns.Length == 0)
            throw new ArgumentException("At least one column is needed.", nameof(columns));
        _columns = columns;
    }

    /// <summary>Returns the transformer after checking that the input columns are keys with key values.</summary>
    /// <param name="input">The data (only its schema is used).</param>
    /// <returns>The transformer.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When an input column is missing, not a key, or has no key values.</exception>
    public KeyToValueMappingTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var transformer = new KeyToValueMappingTransformer(_columns);
        transformer.GetOutputSchema(input.Schema);
        return transformer;
    }

    /// <summary>The output shape: each output column has the item type of its input's key values.</summary>
    /// <param name="inputSchema">The input shape.</param>
    /// <returns>The output shape.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When an input column is missing, not a key, or has no key values.</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var result = inputSchema.ToList();
        foreach (var pair in _columns)
        {
            if (!inputSchema.TryFindColumn(pair.InputColumnName, out var col))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Could not find input column '{pair.InputColumnName}'.");
            if (!col.IsKey || !col.Annotations.TryFindColumn(AnnotationUtils.Kinds.KeyValues, out var kv))
                throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"Schema mismatch for input column '{pair.InputColumnName}': expected a key type with key values, got {col.GetTypeString()}{(col.IsKey ? " without key values" : "")}.");
            result.Add(new SchemaShape.Column(pair.OutputColumnName, col.Kind, kv.ItemType, false));
        }
        return new SchemaShape(result);
    }
}

/// <summary>Maps keys to their values (see <see cref="KeyToValueMappingEstimator"/>). Lazy and row to row.</summary>
public sealed class KeyToValueMappingTransformer : ITransformer
{
    private readonly InputOutputColumnPair[] _columns;

    internal KeyToValueMappingTransformer(InputOutputColumnPair[] columns)
    {
        _columns = columns;
    }

    /// <summary>Always true: each row is mapped on its own.</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>The (output column, input column) pairs.</summary>
    public IReadOnlyList<InputOutputColumnPair> Columns => _columns;

    /// <summary>The input schema plus one value column per mapped key column.</summary>
    /// <param name="inputSchema">The input schema.</param>
    /// <returns>The output schema.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When an input column is missing, not a key, or has no key values.</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => RowMappedDataView.MakeSchema(inputSchema, MakeColumns(inputSchema));

    /// <summary>Adds the value columns (computed lazily).</summary>
    /// <param name="input">The input data.</param>
    /// <returns>The transformed data.</returns>
    public IDataView Transform(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new RowMappedDataView(input, MakeColumns(input.Schema));
    }

    private List<MappedColumn> MakeColumns(DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var result = new List<MappedColumn>(_columns.Length);
        foreach (var pair in _columns)
        {
            var input = inputSchema.GetColumnOrNull(pair.InputColumnName)
                ?? throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Could not find input column '{pair.InputColumnName}'.");
            if (!input.HasKeyValues())
                throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"Schema mismatch for input column '{pair.InputColumnName}': expected a key type with key values, got {input.Type}{(input.Type.GetItemType() is KeyDataViewType ? " without key values" : "")}.");
            var kvType = (VectorDataViewType)input.Annotations.Schema[AnnotationUtils.Kinds.KeyValues].Type;
            var mapper = RawTypes.Visit(kvType.ItemType.RawType, new MapperFactory(input));
            DataViewType type = input.Type is VectorDataViewType v
                ? new VectorDataViewType(kvType.ItemType, [.. v.Dimensions])
                : kvType.ItemType;
            int index = input.Index;
            result.Add(new MappedColumn(new DataViewSchema.DetachedColumn(pair.OutputColumnName, type), [index],
                row => mapper.MakeGetter(row, row.Schema[index])));
        }
        return result;
    }

    private abstract class Mapper
    {
        public abstract Delegate MakeGetter(DataViewRow row, DataViewSchema.Column column);
    }

    private sealed class MapperFactory(DataViewSchema.Column keyColumn) : IRawTypeVisitor<Mapper>
    {
        public Mapper Visit<T>() where T : struct
        {
            VBuffer<T> buffer = default;
            keyColumn.GetKeyValues(ref buffer);
            var values = new T[buffer.Length];
            buffer.CopyTo(values);
            return new Mapper<T>(values);
        }
    }

    private sealed class Mapper<T>(T[] values) : Mapper
    {
        private readonly T _missing = RawTypes.Missing<T>();

        private T Lookup(uint key) => key >= 1 && key <= values.Length ? values[key - 1] : _missing;

        public override Delegate MakeGetter(DataViewRow row, DataViewSchema.Column column)
        {
            if (column.Type is VectorDataViewType)
            {
                var getter = row.GetGetter<VBuffer<uint>>(column);
                VBuffer<uint> keys = default;
                uint[] dense = [];
                return (ValueGetter<VBuffer<T>>)((ref VBuffer<T> dst) =>
                {
                    getter(ref keys);
                    int n = keys.Length;
                    if (dense.Length < n)
                        dense = new uint[n];
                    keys.CopyTo(dense);
                    var output = VBuffer<T>.DenseEditor(ref dst, n);
                    for (int i = 0; i < n; i++)
                        output[i] = Lookup(dense[i]);
                    VBuffer<T>.CommitDense(ref dst, output, n);
                });
            }
            var scalar = row.GetGetter<uint>(column);
            uint key = 0;
            return (ValueGetter<T>)((ref T dst) =>
            {
                scalar(ref key);
                dst = Lookup(key);
            });
        }
    }
}
