using System.Collections;

namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// The columns of an <see cref="IDataView"/>, in order. A column added with the name of an earlier one hides it:
/// the earlier column stays in the schema (<see cref="Column.IsHidden"/>) but lookups by name find the later one.
/// </summary>
public sealed class DataViewSchema : IReadOnlyList<DataViewSchema.Column>
{
    private readonly Column[] _columns;
    private readonly Dictionary<string, int> _byName;

    private DataViewSchema(IReadOnlyList<DetachedColumn> columns)
    {
        _columns = new Column[columns.Count];
        _byName = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = columns.Count - 1; i >= 0; i--)
        {
            var c = columns[i];
            bool hidden = _byName.ContainsKey(c.Name);
            if (!hidden)
                _byName[c.Name] = i;
            _columns[i] = new Column(c.Name, i, hidden, c.Type, c.Annotations);
        }
    }

    /// <summary>A schema with no columns.</summary>
    public static DataViewSchema Empty { get; } = new([]);

    /// <summary>The number of columns, hidden ones included.</summary>
    public int Count => _columns.Length;

    /// <summary>The column at <paramref name="columnIndex"/>.</summary>
    /// <param name="columnIndex">The 0-based index.</param>
    /// <returns>The column.</returns>
    public Column this[int columnIndex]
    {
        get
        {
            if ((uint)columnIndex >= (uint)_columns.Length)
                throw new ArgumentOutOfRangeException(nameof(columnIndex), columnIndex, $"The schema has {_columns.Length} columns.");
            return _columns[columnIndex];
        }
    }

    /// <summary>The visible column named <paramref name="columnName"/>.</summary>
    /// <param name="columnName">The column name (case-sensitive).</param>
    /// <returns>The column.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When there is no such column.</exception>
    public Column this[string columnName] =>
        GetColumnOrNull(columnName) ?? throw new ArgumentOutOfRangeException(nameof(columnName), columnName,
            $"Column '{columnName}' not found. Columns: {string.Join(", ", VisibleNames())}.");

    /// <summary>The visible column named <paramref name="columnName"/>, or <see langword="null"/>.</summary>
    /// <param name="columnName">The column name (case-sensitive).</param>
    /// <returns>The column or <see langword="null"/>.</returns>
    public Column? GetColumnOrNull(string columnName)
    {
        ArgumentNullException.ThrowIfNull(columnName);
        return _byName.TryGetValue(columnName, out int i) ? _columns[i] : null;
    }

    /// <inheritdoc/>
    public IEnumerator<Column> GetEnumerator() => ((IEnumerable<Column>)_columns).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <inheritdoc/>
    public override string ToString() => string.Join(", ", _columns.Select(c => c.ToString()));

    private IEnumerable<string> VisibleNames() => _columns.Where(c => !c.IsHidden).Select(c => c.Name);

    /// <summary>Creates a schema from a list of columns.</summary>
    internal static DataViewSchema Create(IReadOnlyList<DetachedColumn> columns) => columns.Count == 0 ? Empty : new DataViewSchema(columns);

    /// <summary>A column of a schema.</summary>
    public readonly struct Column
    {
        internal Column(string name, int index, bool isHidden, DataViewType type, Annotations annotations)
        {
            Name = name;
            Index = index;
            IsHidden = isHidden;
            Type = type;
            Annotations = annotations;
        }

        /// <summary>The name.</summary>
        public string Name { get; }

        /// <summary>The 0-based position in the schema.</summary>
        public int Index { get; }

        /// <summary>Whether a later column with the same name hides this one.</summary>
        public bool IsHidden { get; }

        /// <summary>The type of the values.</summary>
        public DataViewType Type { get; }

        /// <summary>Extra information about the column, such as the values behind a key type.</summary>
        public Annotations Annotations { get; }

        /// <inheritdoc/>
        public override string ToString() => $"{Name}: {Type}{(IsHidden ? " (hidden)" : "")}";
    }

    /// <summary>A column description that belongs to no schema yet (used to build one).</summary>
    public readonly struct DetachedColumn
    {
        /// <summary>Creates a detached column.</summary>
        /// <param name="name">The name.</param>
        /// <param name="type">The type.</param>
        /// <param name="annotations">The annotations, or <see langword="null"/> for none.</param>
        public DetachedColumn(string name, DataViewType type, Annotations? annotations = null)
        {
            ArgumentException.ThrowIfNullOrEmpty(name);
            ArgumentNullException.ThrowIfNull(type);
            Name = name;
            Type = type;
            Annotations = annotations ?? Annotations.Empty;
        }

        /// <summary>Copies a column of a schema.</summary>
        /// <param name="column">The column.</param>
        public DetachedColumn(Column column) : this(column.Name, column.Type, column.Annotations) { }

        /// <summary>The name.</summary>
        public string Name { get; }

        /// <summary>The type.</summary>
        public DataViewType Type { get; }

        /// <summary>The annotations.</summary>
        public Annotations Annotations { get; }
    }

    /// <summary>Builds a <see cref="DataViewSchema"/>.</summary>
    public sealed class Builder
    {
        private readonly List<DetachedColumn> _columns = [];

        /// <summary>Adds a column.</summary>
        /// <param name="name">The name; hides an earlier column with the same name.</param>
        /// <param name="type">The type.</param>
        /// <param name="annotations">The annotations, or <see langword="null"/> for none.</param>
        public void AddColumn(string name, DataViewType type, Annotations? annotations = null) =>
            _columns.Add(new DetachedColumn(name, type, annotations));

        /// <summary>Adds copies of columns (hidden ones included, so indices line up with their schema).</summary>
        /// <param name="source">The columns.</param>
        public void AddColumns(IEnumerable<Column> source)
        {
            foreach (var c in source)
                _columns.Add(new DetachedColumn(c));
        }

        /// <summary>Adds detached columns.</summary>
        /// <param name="source">The columns.</param>
        public void AddColumns(IEnumerable<DetachedColumn> source) => _columns.AddRange(source);

        /// <summary>Creates the schema.</summary>
        /// <returns>The schema.</returns>
        public DataViewSchema ToSchema() => Create([.. _columns]);
    }

    /// <summary>
    /// Named values attached to a column ("annotations", formerly metadata), for example the
    /// <see cref="AnnotationUtils.Kinds.KeyValues"/> of a key column. Each annotation is itself a column of
    /// <see cref="Schema"/> with a single value.
    /// </summary>
    public sealed class Annotations
    {
        private readonly Delegate[] _getters;

        private Annotations(DataViewSchema schema, Delegate[] getters)
        {
            Schema = schema;
            _getters = getters;
        }

        /// <summary>No annotations.</summary>
        public static Annotations Empty { get; } = new(DataViewSchema.Empty, []);

        /// <summary>The annotations as columns: one per kind, with the annotation's type.</summary>
        public DataViewSchema Schema { get; }

        /// <summary>Gets a getter for the annotation <paramref name="column"/> of <see cref="Schema"/>.</summary>
        /// <typeparam name="TValue">The annotation's raw type.</typeparam>
        /// <param name="column">A column of <see cref="Schema"/>.</param>
        /// <returns>The getter.</returns>
        public ValueGetter<TValue> GetGetter<TValue>(Column column)
        {
            if ((uint)column.Index >= (uint)_getters.Length || Schema[column.Index].Name != column.Name)
                throw new ArgumentOutOfRangeException(nameof(column), column.Name, "The column is not an annotation of this set.");
            return GetterCast.Cast<TValue>(_getters[column.Index], Schema[column.Index]);
        }

        /// <summary>Reads the annotation named <paramref name="kind"/>.</summary>
        /// <typeparam name="TValue">The annotation's raw type.</typeparam>
        /// <param name="kind">The annotation kind, e.g. <see cref="AnnotationUtils.Kinds.KeyValues"/>.</param>
        /// <param name="value">Receives the value.</param>
        /// <exception cref="InvalidOperationException">When there is no such annotation.</exception>
        public void GetValue<TValue>(string kind, ref TValue value)
        {
            var column = Schema.GetColumnOrNull(kind) ?? throw new InvalidOperationException($"There is no '{kind}' annotation.");
            GetGetter<TValue>(column)(ref value);
        }

        /// <inheritdoc/>
        public override string ToString() => Schema.ToString();

        /// <summary>Builds an <see cref="Annotations"/> set.</summary>
        public sealed class Builder
        {
            private readonly List<DetachedColumn> _columns = [];
            private readonly List<Delegate> _getters = [];

            /// <summary>Adds an annotation read through a getter.</summary>
            /// <typeparam name="TValue">The raw type of <paramref name="type"/>.</typeparam>
            /// <param name="kind">The annotation kind (its name).</param>
            /// <param name="type">The annotation's type.</param>
            /// <param name="getter">Reads the value.</param>
            /// <exception cref="ArgumentException">When <typeparamref name="TValue"/> is not the raw type of <paramref name="type"/>.</exception>
            public void Add<TValue>(string kind, DataViewType type, ValueGetter<TValue> getter)
            {
                ArgumentNullException.ThrowIfNull(getter);
                ArgumentNullException.ThrowIfNull(type);
                if (type.RawType != typeof(TValue))
                    throw new ArgumentException($"The getter produces {typeof(TValue).Name} but the type {type} needs {type.RawType.Name}.", nameof(getter));
                _columns.Add(new DetachedColumn(kind, type));
                _getters.Add(getter);
            }

            /// <summary>Adds the <see cref="AnnotationUtils.Kinds.KeyValues"/> annotation: the values behind keys 1 to <paramref name="size"/>.</summary>
            /// <typeparam name="TValue">The raw type of <paramref name="valueType"/>.</typeparam>
            /// <param name="size">The number of key values.</param>
            /// <param name="valueType">The type of the values (for example text).</param>
            /// <param name="getter">Reads the values.</param>
            public void AddKeyValues<TValue>(int size, PrimitiveDataViewType valueType, ValueGetter<VBuffer<TValue>> getter) =>
                Add(AnnotationUtils.Kinds.KeyValues, new VectorDataViewType(valueType, size), getter);

            /// <summary>Adds the <see cref="AnnotationUtils.Kinds.SlotNames"/> annotation: a name for each slot of a vector column.</summary>
            /// <param name="size">The vector size.</param>
            /// <param name="getter">Reads the names.</param>
            public void AddSlotNames(int size, ValueGetter<VBuffer<ReadOnlyMemory<char>>> getter) =>
                Add(AnnotationUtils.Kinds.SlotNames, new VectorDataViewType(TextDataViewType.Instance, size), getter);

            /// <summary>Adds every annotation of <paramref name="annotations"/> (or those <paramref name="selector"/> accepts).</summary>
            /// <param name="annotations">The source set.</param>
            /// <param name="selector">Filters by kind; <see langword="null"/> keeps all.</param>
            public void Add(Annotations annotations, Func<string, bool>? selector = null)
            {
                ArgumentNullException.ThrowIfNull(annotations);
                foreach (var c in annotations.Schema)
                {
                    if (c.IsHidden || (selector is not null && !selector(c.Name)))
                        continue;
                    _columns.Add(new DetachedColumn(c.Name, c.Type));
                    _getters.Add(annotations._getters[c.Index]);
                }
            }

            /// <summary>Creates the annotation set.</summary>
            /// <returns>The annotations.</returns>
            public Annotations ToAnnotations() => _columns.Count == 0 ? Empty : new Annotations(Create([.. _columns]), [.. _getters]);
        }
    }
}
