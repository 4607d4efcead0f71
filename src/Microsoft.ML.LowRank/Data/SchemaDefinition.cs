using System.Diagnostics.CodeAnalysis;
using System.Reflection;

namespace Microsoft.ML.LowRank.Data;

/// <summary>
/// How the public fields and properties of a row class map to columns. <see cref="Create{T}"/> builds the default
/// mapping from the class and its attributes (<see cref="ColumnNameAttribute"/>, <see cref="NoColumnAttribute"/>,
/// <see cref="KeyTypeAttribute"/>, <see cref="VectorTypeAttribute"/>); the result can be edited (renamed columns,
/// fixed vector sizes) and passed to <see cref="DataOperationsCatalog.LoadFromEnumerable{TRow}"/> or
/// <see cref="DataOperationsCatalog.CreateEnumerable{TRow}"/>.
/// </summary>
public sealed class SchemaDefinition : List<SchemaDefinition.Column>
{
    internal const DynamicallyAccessedMemberTypes Members = DynamicallyAccessedMemberTypes.PublicFields | DynamicallyAccessedMemberTypes.PublicProperties;
    internal const DynamicallyAccessedMemberTypes MembersAndConstructor = Members | DynamicallyAccessedMemberTypes.PublicParameterlessConstructor;

    /// <summary>Which way rows move between the class and the data view.</summary>
    [Flags]
    public enum Direction
    {
        /// <summary>Objects are read to make a data view (members need a public getter).</summary>
        Read = 1,

        /// <summary>Objects are written from a data view (members need a public setter or a writable field).</summary>
        Write = 2,

        /// <summary>Both ways.</summary>
        Both = Read | Write,
    }

    /// <summary>Creates an empty definition (add columns bound to members by <see cref="Column.MemberName"/>).</summary>
    public SchemaDefinition()
    {
    }

    /// <summary>The column named <paramref name="columnName"/>.</summary>
    /// <param name="columnName">The column name.</param>
    /// <returns>The column.</returns>
    /// <exception cref="ArgumentOutOfRangeException">When no column has that name.</exception>
    public Column this[string columnName] =>
        this.FirstOrDefault(c => c.ColumnName == columnName) ?? throw new ArgumentOutOfRangeException(nameof(columnName), columnName, $"No column named '{columnName}'.");

    /// <summary>The default mapping of <typeparamref name="T"/>'s public fields and properties.</summary>
    /// <typeparam name="T">The row class.</typeparam>
    /// <param name="direction">Which accessors members need.</param>
    /// <returns>The definition.</returns>
    public static SchemaDefinition Create<[DynamicallyAccessedMembers(Members)] T>(Direction direction = Direction.Both) => Create(typeof(T), direction);

    /// <summary>The default mapping of <paramref name="userType"/>'s public fields and properties.</summary>
    /// <param name="userType">The row class.</param>
    /// <param name="direction">Which accessors members need.</param>
    /// <returns>The definition.</returns>
    /// <exception cref="InvalidOperationException">When a member's type cannot be a column, two members map to the same column, or there is no member at all.</exception>
    public static SchemaDefinition Create([DynamicallyAccessedMembers(Members)] Type userType, Direction direction = Direction.Both)
    {
        ArgumentNullException.ThrowIfNull(userType);
        var def = new SchemaDefinition();
        foreach (var member in PublicMembers(userType))
        {
            if (member.GetCustomAttribute<NoColumnAttribute>() is not null)
                continue;
            if (!HasAccessors(member, direction))
                continue;
            def.Add(Column.FromMember(member));
        }
        if (def.Count == 0)
            throw new InvalidOperationException($"Type {userType.Name} has no public fields or properties to map to columns.");
        def.CheckUniqueNames(userType);
        return def;
    }

    /// <summary>Binds columns created by hand to the members of <paramref name="userType"/> and checks the definition.</summary>
    internal void Bind([DynamicallyAccessedMembers(Members)] Type userType)
    {
        var members = PublicMembers(userType).ToDictionary(m => m.Name, StringComparer.Ordinal);
        foreach (var c in this)
        {
            if (c.Member is not null && c.Member.DeclaringType!.IsAssignableFrom(userType))
                continue;
            if (!members.TryGetValue(c.MemberName, out var m))
                throw new InvalidOperationException($"Type {userType.Name} has no public field or property '{c.MemberName}' (for column '{c.ColumnName}').");
            c.BindTo(m);
        }
        CheckUniqueNames(userType);
    }

    private void CheckUniqueNames(Type userType)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var c in this)
        {
            if (!seen.Add(c.ColumnName))
                throw new InvalidOperationException($"Type {userType.Name} maps more than one member to column '{c.ColumnName}'.");
        }
    }

    private static IEnumerable<MemberInfo> PublicMembers([DynamicallyAccessedMembers(Members)] Type type)
    {
        foreach (var f in type.GetFields(BindingFlags.Public | BindingFlags.Instance))
            yield return f;
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.GetIndexParameters().Length == 0)
                yield return p;
        }
    }

    private static bool HasAccessors(MemberInfo member, Direction direction) => member switch
    {
        FieldInfo f => (direction & Direction.Write) == 0 || !f.IsInitOnly,
        PropertyInfo p => ((direction & Direction.Read) == 0 || p.GetMethod is { IsPublic: true })
                          && ((direction & Direction.Write) == 0 || p.SetMethod is { IsPublic: true }),
        _ => false,
    };

    /// <summary>One column: a member of the row class, the column's name and its type.</summary>
    public sealed class Column
    {
        private DataViewType? _columnType;

        /// <summary>Creates a column bound to the member named <paramref name="memberName"/> (bound when the definition is used).</summary>
        /// <param name="memberName">The public field or property.</param>
        /// <param name="columnName">The column name; the member name when <see langword="null"/>.</param>
        /// <param name="columnType">The column type; inferred from the member type when <see langword="null"/>.</param>
        public Column(string memberName, string? columnName = null, DataViewType? columnType = null)
        {
            ArgumentException.ThrowIfNullOrEmpty(memberName);
            MemberName = memberName;
            ColumnName = columnName ?? memberName;
            _columnType = columnType;
        }

        /// <summary>The name of the public field or property.</summary>
        public string MemberName { get; }

        /// <summary>The column name.</summary>
        public string ColumnName { get; set; }

        /// <summary>The column type (for example a <see cref="VectorDataViewType"/> with a fixed size, or a <see cref="KeyDataViewType"/>).</summary>
        /// <exception cref="InvalidOperationException">When read before the column is bound to a member and no type was set.</exception>
        [AllowNull]
        public DataViewType ColumnType
        {
            get => _columnType ?? throw new InvalidOperationException($"Column '{ColumnName}' has no type until it is bound to member '{MemberName}'.");
            set => _columnType = value;
        }

        /// <summary>The field indices read by the text loader, from <see cref="LoadColumnAttribute"/>.</summary>
        internal LoadColumnAttribute? LoadColumn { get; private set; }

        internal MemberInfo? Member { get; private set; }

        internal Type? MemberType => Member switch
        {
            FieldInfo f => f.FieldType,
            PropertyInfo p => p.PropertyType,
            _ => null,
        };

        internal static Column FromMember(MemberInfo member)
        {
            var name = member.GetCustomAttribute<ColumnNameAttribute>()?.Name ?? member.Name;
            var column = new Column(member.Name, name);
            column.BindTo(member);
            return column;
        }

        internal void BindTo(MemberInfo member)
        {
            Member = member;
            LoadColumn ??= member.GetCustomAttribute<LoadColumnAttribute>();
            var memberType = MemberType!;
            var type = MemberTypes.DefaultColumnType(memberType)
                ?? throw new InvalidOperationException(
                    $"Member '{member.Name}' of type {memberType.Name} cannot be a column; supported types: {MemberTypes.Supported}.");
            var key = member.GetCustomAttribute<KeyTypeAttribute>();
            var vector = member.GetCustomAttribute<VectorTypeAttribute>();
            if (key is not null)
            {
                if (type.GetItemType().RawType != typeof(uint))
                    throw new InvalidOperationException($"[KeyType] needs a uint member (or uint array), but '{member.Name}' is {memberType.Name}.");
                var keyType = new KeyDataViewType(key.Count);
                type = type is VectorDataViewType ? new VectorDataViewType(keyType) : keyType;
            }
            if (vector is not null)
            {
                if (type is not VectorDataViewType v)
                    throw new InvalidOperationException($"[VectorType] needs an array or VBuffer member, but '{member.Name}' is {memberType.Name}.");
                type = new VectorDataViewType(v.ItemType, [.. vector.Dimensions]);
            }
            else if (LoadColumn is { IsVector: true } lc && type is VectorDataViewType lv)
            {
                type = new VectorDataViewType(lv.ItemType, lc.FieldIndices.Length);
            }
            _columnType ??= type;
            if (_columnType.RawType != type.RawType)
                throw new InvalidOperationException($"Column '{ColumnName}' has type {_columnType}, which member '{member.Name}' of type {memberType.Name} cannot hold.");
        }

        /// <inheritdoc/>
        public override string ToString() => $"{ColumnName} ({MemberName}): {_columnType?.ToString() ?? "?"}";
    }
}
