namespace Microsoft.ML.LowRank.Data;

/// <summary>A cursor that passes some rows of an input cursor through unchanged (filters, position ranges).</summary>
internal abstract class SelectingCursor : DataViewRowCursor
{
    private readonly bool[] _active;
    private long _position = -1;
    private bool _done;

    protected SelectingCursor(DataViewRowCursor input, bool[] active)
    {
        Input = input;
        _active = active;
    }

    protected DataViewRowCursor Input { get; }

    public override long Position => _position;

    public override long Batch => Input.Batch;

    public override DataViewSchema Schema => Input.Schema;

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

    /// <summary>Moves the input to the next selected row; false at the end.</summary>
    protected abstract bool MoveNextCore();

    public override bool IsColumnActive(DataViewSchema.Column column)
    {
        GetterCast.CheckColumn(Schema, column);
        return _active[column.Index];
    }

    public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
    {
        GetterCast.CheckColumn(Schema, column);
        if (!_active[column.Index])
            throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor; include it in columnsNeeded when opening the cursor.");
        var inner = Input.GetGetter<TValue>(column);
        return (ref TValue value) =>
        {
            EnsureRow();
            inner(ref value);
        };
    }

    public override ValueGetter<DataViewRowId> GetIdGetter()
    {
        var inner = Input.GetIdGetter();
        return (ref DataViewRowId id) =>
        {
            EnsureRow();
            inner(ref id);
        };
    }

    private void EnsureRow()
    {
        if (_position < 0 || _done)
            throw new InvalidOperationException(_done ? "The cursor has moved past the last row." : "The cursor is not on a row yet; call MoveNext first.");
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            Input.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>Rows of a (streaming) view at selected positions, in order: Take/Skip and train/test subsets of views without random access.</summary>
internal sealed class PositionSubsetView : IDataView
{
    private readonly IDataView _source;
    private readonly Func<long, bool> _keep;
    private readonly long _end;
    private readonly long? _count;

    /// <param name="source">The input view.</param>
    /// <param name="keep">Whether the input row at a position is kept.</param>
    /// <param name="end">No input row at or after this position is kept (stops reading early).</param>
    /// <param name="count">The number of kept rows when known.</param>
    public PositionSubsetView(IDataView source, Func<long, bool> keep, long end, long? count)
    {
        _source = source;
        _keep = keep;
        _end = end;
        _count = count;
    }

    public bool CanShuffle => false;

    public DataViewSchema Schema => _source.Schema;

    public long? GetRowCount() => _count;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var active = GetterCast.ActiveFlags(Schema, columnsNeeded);
        return new Cursor(this, _source.GetRowCursor(columnsNeeded), active);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor(PositionSubsetView view, DataViewRowCursor input, bool[] active) : SelectingCursor(input, active)
    {
        protected override bool MoveNextCore()
        {
            while (Input.Position + 1 < view._end && Input.MoveNext())
            {
                if (view._keep(Input.Position))
                    return true;
            }
            return false;
        }
    }
}

/// <summary>Rows of a view for which a predicate on the current row holds (computed lazily per cursor).</summary>
internal sealed class PredicateFilterView : IDataView
{
    private readonly IDataView _source;
    private readonly DataViewSchema.Column _column;
    private readonly Func<DataViewRow, DataViewSchema.Column, Func<bool>> _makePredicate;

    public PredicateFilterView(IDataView source, DataViewSchema.Column column, Func<DataViewRow, DataViewSchema.Column, Func<bool>> makePredicate)
    {
        _source = source;
        _column = column;
        _makePredicate = makePredicate;
    }

    public bool CanShuffle => _source.CanShuffle;

    public DataViewSchema Schema => _source.Schema;

    public long? GetRowCount() => null;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var active = GetterCast.ActiveFlags(Schema, columnsNeeded);
        var needed = Schema.Where(c => active[c.Index] || c.Index == _column.Index).ToArray();
        var input = _source.GetRowCursor(needed, rand);
        return new Cursor(input, active, _makePredicate(input, _column));
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor(DataViewRowCursor input, bool[] active, Func<bool> predicate) : SelectingCursor(input, active)
    {
        protected override bool MoveNextCore()
        {
            while (Input.MoveNext())
            {
                if (predicate())
                    return true;
            }
            return false;
        }
    }
}

/// <summary>A view that reads its source into memory on first use (all columns) and then serves random access from memory.</summary>
internal sealed class CacheDataView : RandomAccessDataView
{
    private readonly IDataView _source;
    private readonly Lazy<InMemoryDataView> _cache;

    public CacheDataView(IDataView source)
    {
        _source = source;
        _cache = new Lazy<InMemoryDataView>(() => InMemoryDataView.Materialize(source), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public override DataViewSchema Schema => _source.Schema;

    public override int RowCount => _cache.Value.RowCount;

    /// <summary>Whether the rows have been read.</summary>
    public bool IsFilled => _cache.IsValueCreated;

    public override DataViewRowCursor GetRowCursor(bool[] active, int[]? rows) => _cache.Value.GetRowCursor(active, rows);
}
