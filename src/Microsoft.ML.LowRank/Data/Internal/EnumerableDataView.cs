namespace Microsoft.ML.LowRank.Data;

/// <summary>Views over user objects: members are read when a getter is called, never copied up front.</summary>
internal static class EnumerableDataView
{
    public static IDataView Create<TRow>(IEnumerable<TRow> data, SchemaDefinition definition)
    {
        var accessors = definition.Select(MemberAccessor<TRow>.Create).ToArray();
        var builder = new DataViewSchema.Builder();
        foreach (var a in accessors)
            builder.AddColumn(a.Column.ColumnName, a.Column.ColumnType);
        var schema = builder.ToSchema();
        return data switch
        {
            IReadOnlyList<TRow> list => new ListView<TRow>(list, schema, accessors),
            IList<TRow> list => new ListView<TRow>(new ListAdapter<TRow>(list), schema, accessors),
            _ => new StreamingView<TRow>(data, schema, accessors),
        };
    }

    private static TRow CheckRow<TRow>(TRow row, long position) =>
        row is null ? throw new InvalidOperationException($"Row {position} of the enumerable is null.") : row;

    private sealed class ListAdapter<TRow>(IList<TRow> list) : IReadOnlyList<TRow>
    {
        public TRow this[int index] => list[index];

        public int Count => list.Count;

        public IEnumerator<TRow> GetEnumerator() => list.GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    private sealed class ListView<TRow> : RandomAccessDataView
    {
        private readonly IReadOnlyList<TRow> _list;
        private readonly MemberAccessor<TRow>[] _accessors;

        public ListView(IReadOnlyList<TRow> list, DataViewSchema schema, MemberAccessor<TRow>[] accessors)
        {
            _list = list;
            Schema = schema;
            _accessors = accessors;
        }

        public override DataViewSchema Schema { get; }

        public override int RowCount => _list.Count;

        public override DataViewRowCursor GetRowCursor(bool[] active, int[]? rows) => new Cursor(this, active, rows);

        private sealed class Cursor : RowCursorBase
        {
            private readonly ListView<TRow> _view;
            private readonly int[]? _rows;
            private readonly int _count;
            private int _next;
            private int _currentIndex = -1;
            private TRow _current = default!;

            public Cursor(ListView<TRow> view, bool[] active, int[]? rows) : base(view.Schema, active)
            {
                _view = view;
                _rows = rows;
                _count = rows?.Length ?? view.RowCount;
            }

            protected override long CurrentRowId => _currentIndex;

            protected override bool MoveNextCore()
            {
                if (_next >= _count)
                    return false;
                _currentIndex = _rows is null ? _next : _rows[_next];
                _current = CheckRow(_view._list[_currentIndex], _currentIndex);
                _next++;
                return true;
            }

            protected override Delegate CreateGetter(int columnIndex) => _view._accessors[columnIndex].MakeGetter(() =>
            {
                EnsureRow();
                return _current;
            });
        }
    }

    private sealed class StreamingView<TRow> : IDataView
    {
        private readonly IEnumerable<TRow> _data;
        private readonly MemberAccessor<TRow>[] _accessors;

        public StreamingView(IEnumerable<TRow> data, DataViewSchema schema, MemberAccessor<TRow>[] accessors)
        {
            _data = data;
            Schema = schema;
            _accessors = accessors;
        }

        public bool CanShuffle => false;

        public DataViewSchema Schema { get; }

        public long? GetRowCount() => _data switch
        {
            ICollection<TRow> c => c.Count,
            IReadOnlyCollection<TRow> c => c.Count,
            _ => null,
        };

        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
            new Cursor(this, GetterCast.ActiveFlags(Schema, columnsNeeded));

        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
            [GetRowCursor(columnsNeeded, rand)];

        private sealed class Cursor : RowCursorBase
        {
            private readonly StreamingView<TRow> _view;
            private readonly IEnumerator<TRow> _enumerator;
            private long _index = -1;
            private TRow _current = default!;

            public Cursor(StreamingView<TRow> view, bool[] active) : base(view.Schema, active)
            {
                _view = view;
                _enumerator = view._data.GetEnumerator();
            }

            protected override bool MoveNextCore()
            {
                if (!_enumerator.MoveNext())
                    return false;
                _index++;
                _current = CheckRow(_enumerator.Current, _index);
                return true;
            }

            protected override Delegate CreateGetter(int columnIndex) => _view._accessors[columnIndex].MakeGetter(() =>
            {
                EnsureRow();
                return _current;
            });

            protected override void Dispose(bool disposing)
            {
                if (disposing)
                    _enumerator.Dispose();
                base.Dispose(disposing);
            }
        }
    }
}
