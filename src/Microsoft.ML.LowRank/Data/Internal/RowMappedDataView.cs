namespace Microsoft.ML.LowRank.Data;

/// <summary>A column computed from other columns of the same row.</summary>
/// <param name="Column">The name, type and annotations of the new column.</param>
/// <param name="Dependencies">The input columns (by index in the input schema) the value is computed from.</param>
/// <param name="MakeGetter">Given the input row, makes a getter (a ValueGetter of the column's raw type).</param>
internal sealed record MappedColumn(DataViewSchema.DetachedColumn Column, int[] Dependencies, Func<DataViewRow, Delegate> MakeGetter);

/// <summary>
/// The lazy output of a row-to-row transformer: the input columns followed by computed ones (a computed column hides
/// an input column of the same name). Values are computed per cursor, only for active columns, when a getter is called.
/// </summary>
internal sealed class RowMappedDataView : IDataView
{
    private readonly IDataView _source;
    private readonly MappedColumn[] _outputs;
    private readonly int _inputCount;

    public RowMappedDataView(IDataView source, IReadOnlyList<MappedColumn> outputs)
    {
        _source = source;
        _outputs = [.. outputs];
        _inputCount = source.Schema.Count;
        Schema = MakeSchema(source.Schema, outputs);
    }

    /// <summary>The input view.</summary>
    public IDataView Source => _source;

    /// <summary>The same computed columns over another source with the same schema (row selections commute with
    /// row-to-row mapping, so subsets and shuffles are applied below the mapping and keep random access).</summary>
    public RowMappedDataView WithSource(IDataView source) => new(source, _outputs);

    /// <summary>Applies a row selection (subset, shuffle, take, skip) below any row-to-row mappings of <paramref name="input"/>.</summary>
    public static IDataView SelectBelowMappings(IDataView input, Func<IDataView, IDataView> select) =>
        input is RowMappedDataView mapped ? mapped.WithSource(SelectBelowMappings(mapped._source, select)) : select(input);

    public static DataViewSchema MakeSchema(DataViewSchema input, IEnumerable<MappedColumn> outputs)
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(input);
        builder.AddColumns(outputs.Select(o => o.Column));
        return builder.ToSchema();
    }

    public bool CanShuffle => _source.CanShuffle;

    public DataViewSchema Schema { get; }

    public long? GetRowCount() => _source.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var active = GetterCast.ActiveFlags(Schema, columnsNeeded);
        var inputActive = new bool[_inputCount];
        for (int i = 0; i < _inputCount; i++)
            inputActive[i] = active[i];
        for (int j = 0; j < _outputs.Length; j++)
        {
            if (!active[_inputCount + j])
                continue;
            foreach (int d in _outputs[j].Dependencies)
                inputActive[d] = true;
        }
        var inputSchema = _source.Schema;
        var input = _source.GetRowCursor(inputSchema.Where(c => inputActive[c.Index]), rand);
        return new Cursor(this, input, active);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly RowMappedDataView _view;
        private readonly DataViewRowCursor _input;
        private readonly bool[] _active;
        private readonly Delegate?[] _getters;

        public Cursor(RowMappedDataView view, DataViewRowCursor input, bool[] active)
        {
            _view = view;
            _input = input;
            _active = active;
            _getters = new Delegate?[view._outputs.Length];
        }

        public override long Position => _input.Position;

        public override long Batch => _input.Batch;

        public override DataViewSchema Schema => _view.Schema;

        public override bool MoveNext() => _input.MoveNext();

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
            if (column.Index < _view._inputCount)
                return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            int j = column.Index - _view._inputCount;
            var getter = _getters[j] ??= _view._outputs[j].MakeGetter(_input);
            return GetterCast.Cast<TValue>(getter, column);
        }

        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                _input.Dispose();
            base.Dispose(disposing);
        }
    }
}
