namespace Microsoft.ML.LowRank.Data;

/// <summary>Shared cursor plumbing: position and end state, active columns, getter type checks.</summary>
internal abstract class RowCursorBase : DataViewRowCursor
{
    private readonly DataViewSchema _schema;
    private readonly Delegate?[] _getters;
    private long _position = -1;
    private bool _done;

    protected RowCursorBase(DataViewSchema schema, bool[] active)
    {
        _schema = schema;
        Active = active;
        _getters = new Delegate?[schema.Count];
    }

    /// <summary>Which columns are active, by index.</summary>
    protected bool[] Active { get; }

    public override long Position => _position;

    public override long Batch => 0;

    public override DataViewSchema Schema => _schema;

    /// <summary>Whether the cursor is on a row.</summary>
    protected bool IsGood => _position >= 0 && !_done;

    /// <summary>The id of the current row (by default its position).</summary>
    protected virtual long CurrentRowId => _position;

    public sealed override bool MoveNext()
    {
        if (_done)
            return false;
        if (MoveNextCore())
        {
            _position++;
            return true;
        }
        _done = true;
        return false;
    }

    /// <summary>Moves the underlying source to the next row; false at the end.</summary>
    protected abstract bool MoveNextCore();

    /// <summary>Creates the raw-typed getter (a ValueGetter of the column's raw type) of an active column.</summary>
    protected abstract Delegate CreateGetter(int columnIndex);

    public override bool IsColumnActive(DataViewSchema.Column column)
    {
        GetterCast.CheckColumn(_schema, column);
        return Active[column.Index];
    }

    public sealed override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        GetterCast.CheckColumn(_schema, column);
        if (!Active[column.Index])
            throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor; include it in columnsNeeded when opening the cursor.");
        var getter = _getters[column.Index] ??= CreateGetter(column.Index);
        return GetterCast.Cast<TValue>(getter, column);
    }

    public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId id) =>
    {
        EnsureRow();
        id = new DataViewRowId((ulong)CurrentRowId, 0);
    };

    /// <summary>Throws unless the cursor is on a row.</summary>
    protected void EnsureRow()
    {
        if (!IsGood)
            throw new InvalidOperationException(_done
                ? "The cursor has moved past the last row."
                : "The cursor is not on a row yet; call MoveNext first.");
    }
}

/// <summary>A view whose rows can be read in any order by index; cursors visit a list of row indices.</summary>
internal abstract class RandomAccessDataView : IDataView
{
    public bool CanShuffle => true;

    public abstract DataViewSchema Schema { get; }

    /// <summary>The number of rows.</summary>
    public abstract int RowCount { get; }

    public long? GetRowCount() => RowCount;

    /// <summary>Opens a cursor that visits <paramref name="rows"/> (indices into this view) in order, or all rows when null.</summary>
    public abstract DataViewRowCursor GetRowCursor(bool[] active, int[]? rows);

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
        GetRowCursor(GetterCast.ActiveFlags(Schema, columnsNeeded), rand is null ? null : Permutation(RowCount, rand));

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    /// <summary>A uniformly random permutation of 0..n-1 (Fisher-Yates).</summary>
    public static int[] Permutation(int n, Random rand)
    {
        var p = new int[n];
        for (int i = 0; i < n; i++)
            p[i] = i;
        for (int i = n - 1; i > 0; i--)
        {
            int j = rand.Next(i + 1);
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }
}

/// <summary>A random-access view of selected rows of another random-access view, in a given order (subsets, shuffles).
/// The row map can be computed lazily, on first use.</summary>
internal sealed class IndexedSubsetView : RandomAccessDataView
{
    private readonly RandomAccessDataView _source;
    private readonly Lazy<int[]> _map;

    public IndexedSubsetView(RandomAccessDataView source, int[] map)
    {
        _source = source;
        _map = new Lazy<int[]>(map);
    }

    public IndexedSubsetView(RandomAccessDataView source, Func<int[]> map)
    {
        _source = source;
        _map = new Lazy<int[]>(map, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public override DataViewSchema Schema => _source.Schema;

    public override int RowCount => _map.Value.Length;

    public override DataViewRowCursor GetRowCursor(bool[] active, int[]? rows)
    {
        var map = _map.Value;
        if (rows is null)
            return _source.GetRowCursor(active, map);
        var sourceRows = new int[rows.Length];
        for (int i = 0; i < rows.Length; i++)
            sourceRows[i] = map[rows[i]];
        return _source.GetRowCursor(active, sourceRows);
    }
}
