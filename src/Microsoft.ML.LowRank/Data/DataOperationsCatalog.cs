using System.Diagnostics.CodeAnalysis;

namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// Loading, saving-to-objects, splitting and sampling of data views (<c>ctx.Data</c>). Methods that draw random
/// numbers take a seed; without one they draw it from this catalog's own generator, which is seeded by the context.
/// </summary>
public sealed class DataOperationsCatalog
{
    private readonly Random _random;

    /// <summary>Creates the catalog (normally reached through the context's <c>Data</c> property).</summary>
    /// <param name="seed">Seeds the generator used when a method is called without a seed; <see langword="null"/> for a random seed.</param>
    public DataOperationsCatalog(int? seed = null)
        : this(seed is int s ? new Random(s) : new Random())
    {
    }

    /// <summary>Creates the catalog on a generator shared with its context.</summary>
    internal DataOperationsCatalog(Random random)
    {
        _random = random ?? throw new ArgumentNullException(nameof(random));
    }

    /// <summary>A train/test pair of views from <see cref="TrainTestSplit"/>.</summary>
    public sealed class TrainTestData
    {
        internal TrainTestData(IDataView trainSet, IDataView testSet)
        {
            TrainSet = trainSet;
            TestSet = testSet;
        }

        /// <summary>The training rows.</summary>
        public IDataView TrainSet { get; }

        /// <summary>The test rows.</summary>
        public IDataView TestSet { get; }
    }

    /// <summary>
    /// Wraps objects as a data view. Each public field and property of <typeparamref name="TRow"/> becomes a column
    /// (see <see cref="SchemaDefinition"/> for the mapping and attributes). The objects are read when cursors move, not
    /// copied: an <see cref="IList{T}"/> or array can be shuffled; another enumerable is re-enumerated by each cursor.
    /// </summary>
    /// <typeparam name="TRow">The row class.</typeparam>
    /// <param name="data">The objects.</param>
    /// <param name="schemaDefinition">A custom mapping, or <see langword="null"/> for the default one.</param>
    /// <returns>The data view.</returns>
    /// <exception cref="InvalidOperationException">When a member's type cannot be a column.</exception>
    public IDataView LoadFromEnumerable<[DynamicallyAccessedMembers(SchemaDefinition.Members)] TRow>(IEnumerable<TRow> data, SchemaDefinition? schemaDefinition = null)
        where TRow : class
    {
        ArgumentNullException.ThrowIfNull(data);
        var definition = schemaDefinition ?? SchemaDefinition.Create<TRow>(SchemaDefinition.Direction.Read);
        definition.Bind(typeof(TRow));
        return EnumerableDataView.Create(data, definition);
    }

    /// <summary>
    /// Reads the rows of a data view into objects, matching columns to public fields and properties by name. Rows are
    /// read lazily while enumerating.
    /// </summary>
    /// <typeparam name="TRow">The row class.</typeparam>
    /// <param name="data">The data.</param>
    /// <param name="reuseRowObject">Whether to fill the same object for every row (faster; do not keep the objects).</param>
    /// <param name="ignoreMissingColumns">Whether members without a matching column are left at their defaults instead of failing.</param>
    /// <param name="schemaDefinition">A custom mapping, or <see langword="null"/> for the default one.</param>
    /// <returns>The objects.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When a member has no column of its name in <paramref name="data"/>.</exception>
    /// <exception cref="InvalidOperationException">When a column's type does not fit its member's type.</exception>
    public IEnumerable<TRow> CreateEnumerable<[DynamicallyAccessedMembers(SchemaDefinition.MembersAndConstructor)] TRow>(
        IDataView data, bool reuseRowObject, bool ignoreMissingColumns = false, SchemaDefinition? schemaDefinition = null)
        where TRow : class, new() =>
        RowObjectReader.CreateEnumerable<TRow>(data, reuseRowObject, ignoreMissingColumns, schemaDefinition);

    /// <summary>
    /// Reads a delimited text file (TSV by default, CSV with <c>separatorChar: ','</c>) into memory. Members of
    /// <typeparamref name="TInput"/> read the fields named by their <see cref="LoadColumnAttribute"/>, or, when the
    /// file has a header, the field whose header matches the column name (case-insensitive). An empty field is the
    /// missing value (NaN for floating point, empty text, 0 or false otherwise). Booleans accept true/false, yes/no,
    /// 1/0 and their initials. Errors name the file, line and field.
    /// </summary>
    /// <typeparam name="TInput">The row class describing the columns.</typeparam>
    /// <param name="path">The file.</param>
    /// <param name="separatorChar">The field separator.</param>
    /// <param name="hasHeader">Whether the first record holds column names.</param>
    /// <param name="allowQuoting">Whether fields may be quoted (RFC 4180): a quoted field may contain separators, newlines and doubled quotes (<c>""</c>).</param>
    /// <param name="trimWhitespace">Whether spaces and tabs around unquoted fields are removed.</param>
    /// <returns>The data view (in memory; it can be shuffled).</returns>
    /// <exception cref="FormatException">When a value cannot be parsed, a record is too short, or a quote is not closed.</exception>
    /// <exception cref="InvalidOperationException">When a member's field cannot be determined.</exception>
    public IDataView LoadFromTextFile<[DynamicallyAccessedMembers(SchemaDefinition.Members)] TInput>(string path, char separatorChar = '\t',
        bool hasHeader = false, bool allowQuoting = false, bool trimWhitespace = false) =>
        TextFileLoader.Load<TInput>(path, separatorChar, hasHeader, allowQuoting, trimWhitespace);

    /// <summary>
    /// Reads a JSON Lines file (one JSON object per line; blank lines are skipped) into memory. Properties are matched
    /// to column names case-insensitively. A missing property or <c>null</c> is the missing value; a column that no
    /// object has is an error. Text columns take strings as they are and any other JSON value as its JSON text;
    /// numeric and boolean columns also accept numbers written as strings; vector columns take arrays.
    /// </summary>
    /// <typeparam name="TInput">The row class describing the columns.</typeparam>
    /// <param name="path">The file.</param>
    /// <returns>The data view (in memory; it can be shuffled).</returns>
    /// <exception cref="FormatException">When a line is not a JSON object or a value does not fit its column.</exception>
    public IDataView LoadFromJsonLines<[DynamicallyAccessedMembers(SchemaDefinition.Members)] TInput>(string path) =>
        JsonLinesLoader.Load<TInput>(path);

    /// <summary>
    /// Splits the rows into a training and a test set, both in the original row order. The test set gets
    /// <paramref name="testFraction"/> of the rows (rounded); with <paramref name="samplingKeyColumnName"/>, rows with the
    /// same key value always land in the same set (the fraction is then approximate). Reads the data once (the key
    /// column only, or nothing but the row count).
    /// </summary>
    /// <param name="data">The data.</param>
    /// <param name="testFraction">The fraction of rows for the test set, strictly between 0 and 1.</param>
    /// <param name="samplingKeyColumnName">A scalar column whose equal values are kept together, or <see langword="null"/>.</param>
    /// <param name="seed">The seed of the split; the same seed gives the same split.</param>
    /// <returns>The two sets.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When the fraction is out of range or the key column is missing or a vector.</exception>
    public TrainTestData TrainTestSplit(IDataView data, double testFraction = 0.1, string? samplingKeyColumnName = null, int? seed = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (!(testFraction > 0 && testFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(testFraction), testFraction, "The test fraction must be strictly between 0 and 1.");
        int splitSeed = seed ?? NextSeed();

        int[] groupOfRow;
        int groupCount;
        if (samplingKeyColumnName is not null)
        {
            var column = data.Schema.GetColumnOrNull(samplingKeyColumnName)
                ?? throw new ArgumentOutOfRangeException(nameof(samplingKeyColumnName), samplingKeyColumnName, $"Could not find sampling key column '{samplingKeyColumnName}'.");
            if (column.Type is VectorDataViewType)
                throw new ArgumentOutOfRangeException(nameof(samplingKeyColumnName), samplingKeyColumnName,
                    $"The sampling key column '{samplingKeyColumnName}' must be a scalar column, not {column.Type}.");
            groupOfRow = RawTypes.Visit(column.Type.RawType, new GroupReader(data, column));
            groupCount = groupOfRow.Length == 0 ? 0 : groupOfRow.Max() + 1;
        }
        else
        {
            long rows = data.GetRowCount() ?? CountRows(data);
            if (rows > int.MaxValue)
                throw new InvalidOperationException("Too many rows to split.");
            groupOfRow = [.. Enumerable.Range(0, (int)rows)];
            groupCount = (int)rows;
        }

        var groupSizes = new int[groupCount];
        foreach (int g in groupOfRow)
            groupSizes[g]++;
        double target = testFraction * groupOfRow.Length;
        var isTest = new bool[groupCount];
        long testRows = 0;
        foreach (int g in RandomAccessDataView.Permutation(groupCount, new Random(splitSeed)))
        {
            // Take a group when that brings the test size closer to the target (round half up for single rows).
            if (testRows + groupSizes[g] / 2.0 <= target)
            {
                isTest[g] = true;
                testRows += groupSizes[g];
            }
        }
        var train = new List<int>(groupOfRow.Length - (int)testRows);
        var test = new List<int>((int)testRows);
        for (int r = 0; r < groupOfRow.Length; r++)
            (isTest[groupOfRow[r]] ? test : train).Add(r);
        int[] trainRows = [.. train], testRowIndices = [.. test];
        return new TrainTestData(
            RowMappedDataView.SelectBelowMappings(data, d => Subset(d, trainRows)),
            RowMappedDataView.SelectBelowMappings(data, d => Subset(d, testRowIndices)));
    }

    /// <summary>Returns the rows in a random order drawn from <paramref name="seed"/> (the same seed, the same order).
    /// A view without random access is read into memory on first use.</summary>
    /// <param name="input">The data.</param>
    /// <param name="seed">The seed of the order.</param>
    /// <returns>The shuffled view.</returns>
    public IDataView ShuffleRows(IDataView input, int? seed = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        int s = seed ?? NextSeed();
        return RowMappedDataView.SelectBelowMappings(input, data =>
        {
            var source = data as RandomAccessDataView ?? new CacheDataView(data);
            return new IndexedSubsetView(source, () => RandomAccessDataView.Permutation(source.RowCount, new Random(s)));
        });
    }

    /// <summary>Keeps the first <paramref name="count"/> rows.</summary>
    /// <param name="input">The data.</param>
    /// <param name="count">The number of rows to keep.</param>
    /// <returns>The view (lazy).</returns>
    public IDataView TakeRows(IDataView input, long count)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return RowMappedDataView.SelectBelowMappings(input, data =>
        {
            if (data is RandomAccessDataView ra)
                return new IndexedSubsetView(ra, () => [.. Enumerable.Range(0, (int)Math.Min(count, ra.RowCount))]);
            long? total = data.GetRowCount();
            return new PositionSubsetView(data, _ => true, count, total is long t ? Math.Min(t, count) : null);
        });
    }

    /// <summary>Drops the first <paramref name="count"/> rows.</summary>
    /// <param name="input">The data.</param>
    /// <param name="count">The number of rows to drop.</param>
    /// <returns>The view (lazy).</returns>
    public IDataView SkipRows(IDataView input, long count)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return RowMappedDataView.SelectBelowMappings(input, data =>
        {
            if (data is RandomAccessDataView ra)
            {
                return new IndexedSubsetView(ra, () =>
                {
                    int start = (int)Math.Min(count, ra.RowCount);
                    return [.. Enumerable.Range(start, ra.RowCount - start)];
                });
            }
            long? total = data.GetRowCount();
            return new PositionSubsetView(data, p => p >= count, long.MaxValue, total is long t ? Math.Max(0, t - count) : null);
        });
    }

    /// <summary>
    /// Keeps the rows whose value in a numeric column lies in [<paramref name="lowerBound"/>, <paramref name="upperBound"/>)
    /// (NaN never does). For a key column the raw key is compared. Lazy.
    /// </summary>
    /// <param name="input">The data.</param>
    /// <param name="columnName">A scalar Single, Double, Int32, Int64, UInt32 or key column.</param>
    /// <param name="lowerBound">The inclusive lower bound.</param>
    /// <param name="upperBound">The exclusive upper bound.</param>
    /// <returns>The filtered view.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When the column is missing or not numeric, or the bounds are reversed.</exception>
    public IDataView FilterRowsByColumn(IDataView input, string columnName, double lowerBound = double.NegativeInfinity, double upperBound = double.PositiveInfinity)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(columnName);
        if (!(lowerBound < upperBound))
            throw new ArgumentOutOfRangeException(nameof(upperBound), upperBound, "upperBound must be greater than lowerBound.");
        var column = input.Schema.GetColumnOrNull(columnName)
            ?? throw new ArgumentOutOfRangeException(nameof(columnName), columnName, $"Could not find input column '{columnName}'.");
        var raw = column.Type.RawType;
        if (column.Type is VectorDataViewType || !(raw == typeof(float) || raw == typeof(double) || raw == typeof(int) || raw == typeof(long) || raw == typeof(uint)))
            throw new ArgumentOutOfRangeException(nameof(columnName), columnName,
                $"Schema mismatch for input column '{columnName}': expected a scalar numeric or key column, got {column.Type}.");
        bool InRange(double v) => v >= lowerBound && v < upperBound;
        return new PredicateFilterView(input, column, (row, col) => RawTypes.Visit(raw, new RangePredicate(row, col, InRange)));
    }

    /// <summary>Reads the data into memory on first use, so later passes (epochs, evaluation) do not recompute it.</summary>
    /// <param name="input">The data.</param>
    /// <param name="columnsToPrefetch">Accepted for compatibility: every column is cached; names are checked.</param>
    /// <returns>The cached view (random access).</returns>
    /// <exception cref="ArgumentOutOfRangeException">When a named column does not exist.</exception>
    public IDataView Cache(IDataView input, params string[] columnsToPrefetch)
    {
        ArgumentNullException.ThrowIfNull(input);
        foreach (var name in columnsToPrefetch ?? [])
            _ = input.Schema[name];
        return input is InMemoryDataView or CacheDataView ? input : new CacheDataView(input);
    }

    private int NextSeed()
    {
        lock (_random)
            return _random.Next();
    }

    private static long CountRows(IDataView data)
    {
        long n = 0;
        using var cursor = data.GetRowCursor([]);
        while (cursor.MoveNext())
            n++;
        return n;
    }

    private static IDataView Subset(IDataView data, int[] rows)
    {
        if (data is RandomAccessDataView ra)
            return new IndexedSubsetView(ra, rows);
        var keep = new HashSet<long>(rows.Select(r => (long)r));
        long end = rows.Length == 0 ? 0 : rows[^1] + 1L;
        return new PositionSubsetView(data, keep.Contains, end, rows.Length);
    }

    /// <summary>Assigns each row a group number by its sampling key value (in order of first occurrence).</summary>
    private sealed class GroupReader(IDataView data, DataViewSchema.Column column) : IRawTypeVisitor<int[]>
    {
        public int[] Visit<T>() where T : struct
        {
            var groups = new List<int>();
            var ids = new Dictionary<string, int>(StringComparer.Ordinal);
            var valueIds = new Dictionary<T, int>();
            using var cursor = data.GetRowCursor([column]);
            var getter = cursor.GetGetter<T>(column);
            T value = default!;
            while (cursor.MoveNext())
            {
                getter(ref value);
                int id;
                if (value is ReadOnlyMemory<char> text)
                {
                    string s = text.ToString();
                    if (!ids.TryGetValue(s, out id))
                        ids[s] = id = ids.Count;
                }
                else if (!valueIds.TryGetValue(value, out id))
                {
                    valueIds[value] = id = valueIds.Count;
                }
                groups.Add(id);
            }
            return [.. groups];
        }
    }

    private sealed class RangePredicate(DataViewRow row, DataViewSchema.Column column, Func<double, bool> inRange) : IRawTypeVisitor<Func<bool>>
    {
        public Func<bool> Visit<T>() where T : struct
        {
            var getter = row.GetGetter<T>(column);
            T value = default!;
            return () =>
            {
                getter(ref value);
                double v = value switch
                {
                    float f => f,
                    double d => d,
                    int i => i,
                    long l => l,
                    uint u => u,
                    _ => double.NaN,
                };
                return inRange(v);
            };
        }
    }
}
