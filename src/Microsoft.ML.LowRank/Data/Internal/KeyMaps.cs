namespace Microsoft.ML.LowRank.Data;

/// <summary>The dictionary of a value-to-key mapping: the values in key order (key 1 first) and a lookup.</summary>
internal abstract class KeyMap
{
    /// <summary>The number of keys.</summary>
    public abstract int Count { get; }

    /// <summary>The type of the values.</summary>
    public abstract PrimitiveDataViewType ItemType { get; }

    /// <summary>The key type of the mapped column.</summary>
    public KeyDataViewType KeyType => new((ulong)Count);

    /// <summary>The KeyValues annotation of the mapped column (values as text when <paramref name="asText"/>).</summary>
    public abstract DataViewSchema.Annotations KeyValueAnnotations(bool asText);

    /// <summary>A getter of keys (uint, or VBuffer of uint for a vector input) for the input column of a row.</summary>
    public abstract Delegate MakeGetter(DataViewRow input, DataViewSchema.Column column);

    /// <summary>The values as text, in key order.</summary>
    public abstract string[] ValuesAsText();

    /// <summary>Builds a key map from the values of columns of <paramref name="data"/>.</summary>
    public static KeyMap[] Train(IDataView data, DataViewSchema.Column[] columns, string[] outputNames, int maximumNumberOfKeys,
        ValueToKeyMappingEstimator.KeyOrdinality ordinality)
    {
        var builders = columns.Select(c => RawTypes.Visit(c.Type.GetItemType().RawType, new BuilderFactory(maximumNumberOfKeys))).ToArray();
        long rows = 0;
        using (var cursor = data.GetRowCursor(columns))
        {
            var feeders = columns.Select((c, i) => builders[i].Feeder(cursor, c)).ToArray();
            while (cursor.MoveNext())
            {
                // Stop reading once every dictionary is full.
                bool anyOpen = false;
                for (int i = 0; i < feeders.Length; i++)
                {
                    if (!builders[i].IsFull)
                    {
                        feeders[i]();
                        anyOpen = true;
                    }
                }
                rows++;
                if (!anyOpen)
                    break;
            }
        }
        var maps = new KeyMap[columns.Length];
        for (int i = 0; i < columns.Length; i++)
        {
            if (builders[i].Count == 0)
                throw new InvalidOperationException(rows == 0
                    ? $"Cannot build the key values of column '{outputNames[i]}': the data has no rows to read input column '{columns[i].Name}' from."
                    : $"Cannot build the key values of column '{outputNames[i]}': input column '{columns[i].Name}' has only missing values (NaN or empty text) in {rows} row(s).");
            maps[i] = builders[i].Build(ordinality);
        }
        return maps;
    }

    private sealed class BuilderFactory(int max) : IRawTypeVisitor<KeyMapBuilder>
    {
        public KeyMapBuilder Visit<T>() where T : struct => new KeyMapBuilder<T>(max);
    }
}

internal abstract class KeyMapBuilder
{
    public abstract int Count { get; }

    public abstract bool IsFull { get; }

    /// <summary>An action that adds the current value(s) of <paramref name="column"/>.</summary>
    public abstract Action Feeder(DataViewRow row, DataViewSchema.Column column);

    public abstract KeyMap Build(ValueToKeyMappingEstimator.KeyOrdinality ordinality);
}

internal sealed class KeyMapBuilder<T>(int max) : KeyMapBuilder
    where T : struct
{
    private readonly KeyMap<T> _map = new();

    public override int Count => _map.Count;

    public override bool IsFull => _map.Count >= max;

    public override Action Feeder(DataViewRow row, DataViewSchema.Column column)
    {
        if (column.Type is VectorDataViewType)
        {
            var getter = row.GetGetter<VBuffer<T>>(column);
            VBuffer<T> buffer = default;
            T[] dense = [];
            return () =>
            {
                getter(ref buffer);
                if (dense.Length < buffer.Length)
                    dense = new T[buffer.Length];
                buffer.CopyTo(dense);
                for (int i = 0; i < buffer.Length && !IsFull; i++)
                    _map.TryAdd(dense[i]);
            };
        }
        var scalar = row.GetGetter<T>(column);
        T value = default!;
        return () =>
        {
            scalar(ref value);
            _map.TryAdd(value);
        };
    }

    public override KeyMap Build(ValueToKeyMappingEstimator.KeyOrdinality ordinality)
    {
        if (ordinality == ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
            _map.SortByValue();
        return _map;
    }
}

/// <summary>A key map over values of raw type <typeparamref name="T"/>. Missing values (NaN, empty text) are never added and map to key 0.</summary>
internal sealed class KeyMap<T> : KeyMap
    where T : struct
{
    private readonly List<T> _values = [];
    private Dictionary<T, uint>? _lookup;
    private Dictionary<string, uint>? _textLookup;
    private Dictionary<string, uint>.AlternateLookup<ReadOnlySpan<char>> _textSpanLookup;

    public KeyMap()
    {
        if (typeof(T) == typeof(ReadOnlyMemory<char>))
        {
            _textLookup = new Dictionary<string, uint>(StringComparer.Ordinal);
            _textSpanLookup = _textLookup.GetAlternateLookup<ReadOnlySpan<char>>();
        }
        else
        {
            _lookup = [];
        }
    }

    public override int Count => _values.Count;

    public override PrimitiveDataViewType ItemType => RawTypes.PrimitiveFor(typeof(T));

    public IReadOnlyList<T> Values => _values;

    /// <summary>Adds a value when it is new and not missing.</summary>
    public void TryAdd(in T value)
    {
        if (RawTypes.IsMissing(value))
            return;
        uint next = (uint)_values.Count + 1;
        if (_textLookup is not null)
        {
            var span = ((ReadOnlyMemory<char>)(object)value!).Span;
            if (_textSpanLookup.ContainsKey(span))
                return;
            string s = span.ToString();
            _textLookup.Add(s, next);
            _values.Add((T)(object)s.AsMemory());
            return;
        }
        if (_lookup!.TryAdd(value, next))
            _values.Add(value);
    }

    /// <summary>The key of a value: 1-based, 0 when missing or unknown.</summary>
    public uint GetKey(in T value)
    {
        if (_textLookup is not null)
            return _textSpanLookup.TryGetValue(((ReadOnlyMemory<char>)(object)value!).Span, out uint k) ? k : 0;
        if (RawTypes.IsMissing(value))
            return 0;
        return _lookup!.TryGetValue(value, out uint key) ? key : 0;
    }

    /// <summary>Renumbers the keys in ascending value order (ordinal for text).</summary>
    public void SortByValue()
    {
        if (typeof(T) == typeof(ReadOnlyMemory<char>))
            _values.Sort((a, b) => ((ReadOnlyMemory<char>)(object)a!).Span.SequenceCompareTo(((ReadOnlyMemory<char>)(object)b!).Span));
        else
            _values.Sort(Comparer<T>.Default);
        for (int i = 0; i < _values.Count; i++)
        {
            if (_textLookup is not null)
                _textLookup[((ReadOnlyMemory<char>)(object)_values[i]!).ToString()] = (uint)i + 1;
            else
                _lookup![_values[i]] = (uint)i + 1;
        }
    }

    public override string[] ValuesAsText() => [.. _values.Select(v => RawTypes.Format(v))];

    public override DataViewSchema.Annotations KeyValueAnnotations(bool asText)
    {
        if (asText && typeof(T) != typeof(ReadOnlyMemory<char>))
            return AnnotationUtils.ConstantKeyValues(TextDataViewType.Instance, ValuesAsText().Select(s => s.AsMemory()).ToArray());
        return AnnotationUtils.ConstantKeyValues(ItemType, _values.ToArray());
    }

    public override Delegate MakeGetter(DataViewRow input, DataViewSchema.Column column)
    {
        if (column.Type is VectorDataViewType)
        {
            var getter = input.GetGetter<VBuffer<T>>(column);
            VBuffer<T> buffer = default;
            T[] dense = [];
            return (ValueGetter<VBuffer<uint>>)((ref VBuffer<uint> keys) =>
            {
                getter(ref buffer);
                int n = buffer.Length;
                if (dense.Length < n)
                    dense = new T[n];
                buffer.CopyTo(dense);
                var values = VBuffer<uint>.DenseEditor(ref keys, n);
                for (int i = 0; i < n; i++)
                    values[i] = GetKey(dense[i]);
                VBuffer<uint>.CommitDense(ref keys, values, n);
            });
        }
        var scalar = input.GetGetter<T>(column);
        T value = default!;
        return (ValueGetter<uint>)((ref uint key) =>
        {
            scalar(ref value);
            key = GetKey(value);
        });
    }
}
