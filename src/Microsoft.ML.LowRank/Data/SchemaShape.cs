using System.Collections;
using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank;

/// <summary>
/// A loose description of a schema, used by <see cref="IEstimator{TTransformer}.GetOutputSchema"/> before any data is
/// seen: each column has a name, a kind (scalar, known-size or variable-size vector), an item type, whether it is a key,
/// and the shape of its annotations. Sizes and key counts are not part of a shape.
/// </summary>
public sealed class SchemaShape : IReadOnlyList<SchemaShape.Column>
{
    private readonly Column[] _columns;

    /// <summary>Creates a shape from columns; a later column replaces an earlier one with the same name.</summary>
    /// <param name="columns">The columns.</param>
    public SchemaShape(IEnumerable<Column> columns)
    {
        ArgumentNullException.ThrowIfNull(columns);
        var list = new List<Column>();
        foreach (var c in columns)
        {
            if (!c.IsValid)
                throw new ArgumentException("A SchemaShape column needs a name and an item type.", nameof(columns));
            int existing = list.FindIndex(x => x.Name == c.Name);
            if (existing >= 0)
                list.RemoveAt(existing);
            list.Add(c);
        }
        _columns = [.. list];
    }

    /// <summary>The number of columns.</summary>
    public int Count => _columns.Length;

    /// <summary>The column at <paramref name="index"/>.</summary>
    /// <param name="index">The 0-based index.</param>
    /// <returns>The column.</returns>
    public Column this[int index] => _columns[index];

    /// <summary>The column named <paramref name="name"/>.</summary>
    /// <param name="name">The column name.</param>
    /// <returns>The column.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When there is no such column.</exception>
    public Column this[string name] => TryFindColumn(name, out var c)
        ? c
        : throw new ArgumentOutOfRangeException(nameof(name), name, $"Column '{name}' not found.");

    /// <summary>The shape of the visible columns of <paramref name="schema"/>.</summary>
    /// <param name="schema">The schema.</param>
    /// <returns>The shape.</returns>
    public static SchemaShape Create(DataViewSchema schema)
    {
        ArgumentNullException.ThrowIfNull(schema);
        return new SchemaShape(schema.Where(c => !c.IsHidden).Select(c => ColumnOf(c.Name, c.Type, c.Annotations)));
    }

    /// <summary>Finds a column by name.</summary>
    /// <param name="name">The column name.</param>
    /// <param name="column">The column, when found.</param>
    /// <returns>Whether the column exists.</returns>
    public bool TryFindColumn(string name, out Column column)
    {
        foreach (var c in _columns)
        {
            if (c.Name == name)
            {
                column = c;
                return true;
            }
        }
        column = default;
        return false;
    }

    /// <inheritdoc/>
    public IEnumerator<Column> GetEnumerator() => ((IEnumerable<Column>)_columns).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <inheritdoc/>
    public override string ToString() => string.Join(", ", _columns.Select(c => $"{c.Name}: {c.GetTypeString()}"));

    /// <summary>The shape of a column of a given type (keys report <see cref="NumberDataViewType.UInt32"/> with <see cref="Column.IsKey"/>).</summary>
    internal static Column ColumnOf(string name, DataViewType type, DataViewSchema.Annotations? annotations = null)
    {
        var kind = type switch
        {
            VectorDataViewType { IsKnownSize: true } => Column.VectorKind.Vector,
            VectorDataViewType => Column.VectorKind.VariableVector,
            _ => Column.VectorKind.Scalar,
        };
        var item = type.GetItemType();
        bool isKey = item is KeyDataViewType;
        if (isKey)
            item = NumberDataViewType.UInt32;
        SchemaShape? annotationShape = null;
        if (annotations is not null && annotations.Schema.Count > 0)
            annotationShape = new SchemaShape(annotations.Schema.Where(a => !a.IsHidden).Select(a => ColumnOf(a.Name, a.Type)));
        return new Column(name, kind, item, isKey, annotationShape);
    }

    /// <summary>The shape of one column.</summary>
    public readonly struct Column
    {
        /// <summary>Whether a column holds one value or a vector.</summary>
        public enum VectorKind
        {
            /// <summary>One value per row.</summary>
            Scalar,

            /// <summary>A vector of the same known size in every row.</summary>
            Vector,

            /// <summary>A vector whose size varies from row to row.</summary>
            VariableVector,
        }

        /// <summary>Creates a column shape.</summary>
        /// <param name="name">The column name.</param>
        /// <param name="vecKind">Scalar, vector or variable vector.</param>
        /// <param name="itemType">The item type; for keys, <see cref="NumberDataViewType.UInt32"/>.</param>
        /// <param name="isKey">Whether the items are keys.</param>
        /// <param name="annotations">The shape of the annotations, or <see langword="null"/> for none.</param>
        public Column(string name, VectorKind vecKind, DataViewType itemType, bool isKey, SchemaShape? annotations = null)
        {
            ArgumentException.ThrowIfNullOrEmpty(name);
            ArgumentNullException.ThrowIfNull(itemType);
            if (itemType is KeyDataViewType)
                throw new ArgumentException("Give a key column's item type as its raw number type (UInt32) with isKey: true.", nameof(itemType));
            if (itemType is VectorDataViewType)
                throw new ArgumentException("The item type of a column shape cannot be a vector.", nameof(itemType));
            Name = name;
            Kind = vecKind;
            ItemType = itemType;
            IsKey = isKey;
            Annotations = annotations ?? Empty;
        }

        private static readonly SchemaShape Empty = new([]);

        /// <summary>The column name.</summary>
        public string Name { get; }

        /// <summary>Scalar, vector or variable vector.</summary>
        public VectorKind Kind { get; }

        /// <summary>The item type (for keys, the raw number type).</summary>
        public DataViewType ItemType { get; }

        /// <summary>Whether the items are keys.</summary>
        public bool IsKey { get; }

        /// <summary>The shape of the column's annotations.</summary>
        public SchemaShape Annotations { get; }

        /// <summary>Whether this is a real column (not <c>default</c>).</summary>
        public bool IsValid => Name is not null;

        /// <summary>
        /// Whether a column shaped like <paramref name="source"/> satisfies this shape as a requirement: same kind
        /// (a known-size vector also satisfies a variable-vector requirement), item type and keyness, and every
        /// annotation this shape names is present in <paramref name="source"/>.
        /// </summary>
        /// <param name="source">The column that is offered.</param>
        /// <returns>Whether it is compatible.</returns>
        public bool IsCompatibleWith(Column source)
        {
            if (!IsValid || !source.IsValid)
                return false;
            bool kindOk = Kind == source.Kind || (Kind == VectorKind.VariableVector && source.Kind == VectorKind.Vector);
            if (!kindOk || !ItemType.Equals(source.ItemType) || IsKey != source.IsKey)
                return false;
            foreach (var a in Annotations)
            {
                if (!source.Annotations.TryFindColumn(a.Name, out var sa) || !a.IsCompatibleWith(sa))
                    return false;
            }
            return true;
        }

        /// <summary>A short text form of the type, e.g. <c>Vector&lt;Single&gt;</c> or <c>Key&lt;UInt32&gt;</c>.</summary>
        /// <returns>The text.</returns>
        public string GetTypeString()
        {
            string item = IsKey ? $"Key<{ItemType}>" : ItemType.ToString()!;
            return Kind switch
            {
                VectorKind.Vector => $"Vector<{item}>",
                VectorKind.VariableVector => $"VarVector<{item}>",
                _ => item,
            };
        }

        /// <inheritdoc/>
        public override string ToString() => IsValid ? $"{Name}: {GetTypeString()}" : "(invalid)";
    }
}
