namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// Learns a dictionary of the values of input columns and maps each value to a 1-based key
/// (<see cref="KeyDataViewType"/>). Values not seen in training, NaN and empty text map to key 0 (missing).
/// The output columns carry the dictionary as <see cref="AnnotationUtils.Kinds.KeyValues"/>, which
/// <see cref="ConversionsCatalog.MapKeyToValue(string, string)"/> uses to map keys back.
/// Made by <see cref="ConversionsCatalog.MapValueToKey(string, string, int, KeyOrdinality, bool, IDataView)"/>.
/// </summary>
public sealed class ValueToKeyMappingEstimator : IEstimator<ValueToKeyMappingTransformer>
{
    private readonly InputOutputColumnPair[] _columns;
    private readonly int _maximumNumberOfKeys;
    private readonly KeyOrdinality _keyOrdinality;
    private readonly bool _addKeyValueAnnotationsAsText;
    private readonly IDataView? _keyData;

    /// <summary>How keys are numbered.</summary>
    public enum KeyOrdinality : byte
    {
        /// <summary>In the order values are first seen in the training data.</summary>
        ByOccurrence = 0,

        /// <summary>In ascending order of the values (ordinal order for text, numeric order for numbers, false before true).</summary>
        ByValue = 1,
    }

    /// <summary>The default parameter values.</summary>
    public static class Defaults
    {
        /// <summary>The default maximum number of keys.</summary>
        public const int MaximumNumberOfKeys = 1000000;

        /// <summary>The default key numbering.</summary>
        public const KeyOrdinality Ordinality = KeyOrdinality.ByOccurrence;

        /// <summary>By default the key values keep the input's type.</summary>
        public const bool AddKeyValueAnnotationsAsText = false;
    }

    internal ValueToKeyMappingEstimator(InputOutputColumnPair[] columns, int maximumNumberOfKeys, KeyOrdinality keyOrdinality,
        bool addKeyValueAnnotationsAsText, IDataView? keyData)
    {
        ArgumentNullException.ThrowIfNull(columns);
        if (columns.Length == 0)
            throw new ArgumentException("At least one column is needed.", nameof(columns));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maximumNumberOfKeys);
        if (!Enum.IsDefined(keyOrdinality))
            throw new ArgumentOutOfRangeException(nameof(keyOrdinality), keyOrdinality, "Unknown key ordinality.");
        if (keyData is not null && keyData.Schema.Count(c => !c.IsHidden) != 1)
            throw new ArgumentException("keyData must have exactly one column, holding the values to number.", nameof(keyData));
        _columns = columns;
        _maximumNumberOfKeys = maximumNumberOfKeys;
        _keyOrdinality = keyOrdinality;
        _addKeyValueAnnotationsAsText = addKeyValueAnnotationsAsText;
        _keyData = keyData;
    }

    /// <summary>Builds the dictionaries from <paramref name="input"/> (or from the key data given at construction).</summary>
    /// <param name="input">The training data.</param>
    /// <returns>The fitted transformer.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When an input column is missing or of an unsupported type.</exception>
    /// <exception cref="InvalidOperationException">When an input column has no non-missing value (for example the data is empty).</exception>
    public ValueToKeyMappingTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var inputColumns = _columns.Select(c => FindInput(input.Schema, c.InputColumnName)).ToArray();
        var outputNames = _columns.Select(c => c.OutputColumnName).ToArray();
        KeyMap[] maps;
        if (_keyData is not null)
        {
            var keyColumn = _keyData.Schema.First(c => !c.IsHidden);
            foreach (var c in inputColumns)
            {
                if (!keyColumn.Type.GetItemType().Equals(c.Type.GetItemType()))
                    throw new ArgumentOutOfRangeException(nameof(input),
                        $"Schema mismatch for input column '{c.Name}': the key data column '{keyColumn.Name}' holds {keyColumn.Type.GetItemType()}, the input holds {c.Type.GetItemType()}.");
            }
            var shared = KeyMap.Train(_keyData, [keyColumn], [outputNames[0]], _maximumNumberOfKeys, _keyOrdinality)[0];
            maps = [.. inputColumns.Select(_ => shared)];
        }
        else
        {
            maps = KeyMap.Train(input, inputColumns, outputNames, _maximumNumberOfKeys, _keyOrdinality);
        }
        return new ValueToKeyMappingTransformer(_columns, maps, _addKeyValueAnnotationsAsText);
    }

    /// <summary>The output shape: each output column is a key (scalar or vector like its input) with key values.</summary>
    /// <param name="inputSchema">The input shape.</param>
    /// <returns>The output shape.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When an input column is missing or of an unsupported type.</exception>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var result = inputSchema.ToList();
        foreach (var pair in _columns)
        {
            if (!inputSchema.TryFindColumn(pair.InputColumnName, out var col))
                throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Could not find input column '{pair.InputColumnName}'.");
            if (col.IsKey || !IsSupportedItem(col.ItemType))
                throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"Schema mismatch for input column '{pair.InputColumnName}': expected {SupportedTypes}, got {col.GetTypeString()}.");
            var itemType = _addKeyValueAnnotationsAsText ? TextDataViewType.Instance : col.ItemType;
            var annotations = new SchemaShape([new SchemaShape.Column(AnnotationUtils.Kinds.KeyValues, SchemaShape.Column.VectorKind.Vector, itemType, false)]);
            result.Add(new SchemaShape.Column(pair.OutputColumnName, col.Kind, NumberDataViewType.UInt32, true, annotations));
        }
        return new SchemaShape(result);
    }

    internal const string SupportedTypes = "text, Single, Double, Int32, Int64, UInt32 or Boolean values (or vectors of them)";

    internal static bool IsSupportedItem(DataViewType itemType) =>
        itemType is TextDataViewType or BooleanDataViewType or NumberDataViewType;

    internal static DataViewSchema.Column FindInput(DataViewSchema schema, string name)
    {
        var col = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException("inputSchema", $"Could not find input column '{name}'.");
        if (!IsSupportedItem(col.Type.GetItemType()))
            throw new ArgumentOutOfRangeException("inputSchema", $"Schema mismatch for input column '{name}': expected {SupportedTypes}, got {col.Type}.");
        return col;
    }
}

/// <summary>Maps values to keys with dictionaries learned by <see cref="ValueToKeyMappingEstimator"/>. Lazy and row to row.</summary>
public sealed class ValueToKeyMappingTransformer : ITransformer
{
    private readonly InputOutputColumnPair[] _columns;
    private readonly KeyMap[] _maps;
    private readonly bool _asText;

    internal ValueToKeyMappingTransformer(InputOutputColumnPair[] columns, KeyMap[] maps, bool addKeyValueAnnotationsAsText)
    {
        _columns = columns;
        _maps = maps;
        _asText = addKeyValueAnnotationsAsText;
    }

    /// <summary>Always true: each row is mapped on its own.</summary>
    public bool IsRowToRowMapper => true;

    /// <summary>The (output column, input column) pairs.</summary>
    public IReadOnlyList<InputOutputColumnPair> Columns => _columns;

    /// <summary>The learned dictionaries, one per column (for model persistence).</summary>
    internal IReadOnlyList<KeyMap> Maps => _maps;

    /// <summary>Whether the key values annotation holds the values as text (for model persistence).</summary>
    internal bool KeyValuesAsText => _asText;

    /// <summary>The learned values of an output column, as text, in key order (item 0 is key 1).</summary>
    /// <param name="outputColumnName">An output column of this transformer.</param>
    /// <returns>The values.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When the transformer has no such output column.</exception>
    public IReadOnlyList<string> GetKeyValuesAsText(string outputColumnName)
    {
        int i = Array.FindIndex(_columns, c => c.OutputColumnName == outputColumnName);
        if (i < 0)
            throw new ArgumentOutOfRangeException(nameof(outputColumnName), outputColumnName, "The transformer has no such output column.");
        return _maps[i].ValuesAsText();
    }

    /// <summary>The input schema plus one key column per mapped column.</summary>
    /// <param name="inputSchema">The input schema.</param>
    /// <returns>The output schema.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When an input column is missing or its values are not of the trained type.</exception>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => RowMappedDataView.MakeSchema(inputSchema, MakeColumns(inputSchema));

    /// <summary>Adds the key columns (computed lazily).</summary>
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
        for (int i = 0; i < _columns.Length; i++)
        {
            var map = _maps[i];
            var input = ValueToKeyMappingEstimator.FindInput(inputSchema, _columns[i].InputColumnName);
            if (!input.Type.GetItemType().Equals(map.ItemType))
                throw new ArgumentOutOfRangeException(nameof(inputSchema),
                    $"Schema mismatch for input column '{input.Name}': expected {map.ItemType} (the type the mapping was trained on), got {input.Type}.");
            DataViewType type = input.Type is VectorDataViewType v
                ? new VectorDataViewType(map.KeyType, [.. v.Dimensions])
                : map.KeyType;
            var column = new DataViewSchema.DetachedColumn(_columns[i].OutputColumnName, type, map.KeyValueAnnotations(_asText));
            result.Add(new MappedColumn(column, [input.Index], row => map.MakeGetter(row, row.Schema[input.Index])));
        }
        return result;
    }
}
