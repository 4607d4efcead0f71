namespace Microsoft.ML.LowRank.Data;

/// <summary>The stored values of one column of an <see cref="InMemoryDataView"/>.</summary>
internal abstract class InMemoryColumn
{
    public abstract int Count { get; }

    /// <summary>A getter reading row <c>row()</c>; <paramref name="check"/> runs first (cursor state check).</summary>
    public abstract Delegate MakeGetter(Func<int> row, Action check);

    /// <summary>Creates an empty column builder for values of <paramref name="type"/>.</summary>
    public static InMemoryColumnBuilder CreateBuilder(DataViewType type) =>
        type is VectorDataViewType v
            ? RawTypes.Visit(v.ItemType.RawType, VectorBuilderFactory.Instance)
            : RawTypes.Visit(type.RawType, ScalarBuilderFactory.Instance);

    private sealed class ScalarBuilderFactory : IRawTypeVisitor<InMemoryColumnBuilder>
    {
        public static readonly ScalarBuilderFactory Instance = new();
        public InMemoryColumnBuilder Visit<T>() where T : struct => new ScalarColumnBuilder<T>();
    }

    private sealed class VectorBuilderFactory : IRawTypeVisitor<InMemoryColumnBuilder>
    {
        public static readonly VectorBuilderFactory Instance = new();
        public InMemoryColumnBuilder Visit<T>() where T : struct => new VectorColumnBuilder<T>();
    }
}

/// <summary>Accumulates the values of one column.</summary>
internal abstract class InMemoryColumnBuilder
{
    /// <summary>Returns an action that appends the current value of <paramref name="column"/> of <paramref name="row"/> (copied).</summary>
    public abstract Action AppendFrom(DataViewRow row, DataViewSchema.Column column);

    public abstract InMemoryColumn Build();
}

internal sealed class ScalarColumnBuilder<T> : InMemoryColumnBuilder
{
    private readonly List<T> _values = [];

    public void Add(T value) => _values.Add(value);

    public override Action AppendFrom(DataViewRow row, DataViewSchema.Column column)
    {
        var getter = row.GetGetter<T>(column);
        T value = default!;
        return () =>
        {
            getter(ref value);
            _values.Add(RawTypes.Detach(value));
        };
    }

    public override InMemoryColumn Build() => new ScalarColumn<T>([.. _values]);
}

internal sealed class VectorColumnBuilder<T> : InMemoryColumnBuilder
{
    private readonly List<VBuffer<T>> _values = [];

    /// <summary>Adds a value; its arrays must not be reused by the caller.</summary>
    public void Add(VBuffer<T> value) => _values.Add(value);

    public override Action AppendFrom(DataViewRow row, DataViewSchema.Column column)
    {
        var getter = row.GetGetter<VBuffer<T>>(column);
        VBuffer<T> buffer = default;
        return () =>
        {
            getter(ref buffer);
            VBuffer<T> copy = default;
            buffer.CopyTo(ref copy);
            if (typeof(T) == typeof(ReadOnlyMemory<char>) && copy._values is ReadOnlyMemory<char>[] texts)
            {
                for (int i = 0; i < texts.Length; i++)
                    texts[i] = RawTypes.DetachText(texts[i]);
            }
            _values.Add(copy);
        };
    }

    public override InMemoryColumn Build() => new VectorColumn<T>([.. _values]);
}

internal sealed class ScalarColumn<T>(T[] values) : InMemoryColumn
{
    public override int Count => values.Length;

    public T this[int row] => values[row];

    public override Delegate MakeGetter(Func<int> row, Action check) => (ValueGetter<T>)((ref T value) =>
    {
        check();
        value = values[row()];
    });
}

internal sealed class VectorColumn<T>(VBuffer<T>[] values) : InMemoryColumn
{
    public override int Count => values.Length;

    public override Delegate MakeGetter(Func<int> row, Action check) => (ValueGetter<VBuffer<T>>)((ref VBuffer<T> value) =>
    {
        check();
        values[row()].CopyTo(ref value);
    });
}

/// <summary>A view over columns held in memory (loaded files, caches). Random access, so it can shuffle.</summary>
internal sealed class InMemoryDataView : RandomAccessDataView
{
    private readonly InMemoryColumn[] _columns;
    private readonly int _rowCount;

    public InMemoryDataView(DataViewSchema schema, InMemoryColumn[] columns, int rowCount)
    {
        if (columns.Length != schema.Count)
            throw new ArgumentException("One stored column per schema column is needed.");
        foreach (var c in columns)
        {
            if (c.Count != rowCount)
                throw new ArgumentException("All columns need the same number of rows.");
        }
        Schema = schema;
        _columns = columns;
        _rowCount = rowCount;
    }

    public override DataViewSchema Schema { get; }

    public override int RowCount => _rowCount;

    /// <summary>Reads every row of <paramref name="source"/> (all columns) into memory.</summary>
    public static InMemoryDataView Materialize(IDataView source)
    {
        var schema = source.Schema;
        var builders = new InMemoryColumnBuilder[schema.Count];
        var appenders = new Action[schema.Count];
        int rows = 0;
        using (var cursor = source.GetRowCursor(schema))
        {
            for (int i = 0; i < schema.Count; i++)
            {
                builders[i] = InMemoryColumn.CreateBuilder(schema[i].Type);
                appenders[i] = builders[i].AppendFrom(cursor, schema[i]);
            }
            while (cursor.MoveNext())
            {
                if (rows == int.MaxValue)
                    throw new InvalidOperationException("Too many rows to hold in memory.");
                foreach (var append in appenders)
                    append();
                rows++;
            }
        }
        return new InMemoryDataView(schema, [.. builders.Select(b => b.Build())], rows);
    }

    public override DataViewRowCursor GetRowCursor(bool[] active, int[]? rows) => new Cursor(this, active, rows);

    private sealed class Cursor : RowCursorBase
    {
        private readonly InMemoryDataView _view;
        private readonly int[]? _rows;
        private readonly int _count;
        private int _next;
        private int _current = -1;

        public Cursor(InMemoryDataView view, bool[] active, int[]? rows) : base(view.Schema, active)
        {
            _view = view;
            _rows = rows;
            _count = rows?.Length ?? view._rowCount;
        }

        protected override long CurrentRowId => _current;

        protected override bool MoveNextCore()
        {
            if (_next >= _count)
                return false;
            _current = _rows is null ? _next : _rows[_next];
            _next++;
            return true;
        }

        protected override Delegate CreateGetter(int columnIndex) =>
            _view._columns[columnIndex].MakeGetter(() => _current, EnsureRow);
    }
}
