using System.Reflection;

namespace Microsoft.ML.LowRank.Data;

/// <summary>Converts between a member type of a user row class and the raw type of its column.</summary>
internal interface IMemberConverter<TMember, TRaw>
{
    /// <summary>Writes the member's value into a getter's buffer (copying arrays).</summary>
    void ToRaw(TMember member, ref TRaw raw);

    /// <summary>Makes a member value from a raw value, reusing <paramref name="existing"/> when <paramref name="reuse"/> is set.</summary>
    TMember FromRaw(in TRaw raw, TMember existing, bool reuse);
}

/// <summary>Runs generic code for the (member type, raw type) pair of a member.</summary>
internal interface IMemberTypeVisitor<out TResult>
{
    TResult Visit<TMember, TRaw>(IMemberConverter<TMember, TRaw> converter, PrimitiveDataViewType itemType, bool isVector);
}

/// <summary>The member types that map to columns and their converters; dispatch without reflection-made generics.</summary>
internal static class MemberTypes
{
    public const string Supported =
        "string, ReadOnlyMemory<char>, float, double, int, long, uint, bool, arrays of these (vectors) and VBuffer<T>";

    /// <summary>Whether <paramref name="memberType"/> can be a column.</summary>
    public static bool IsSupported(Type memberType) => Visit(memberType, TypeOnly.Instance) is not null;

    /// <summary>The column type a member of <paramref name="memberType"/> gets by default (keys and fixed sizes come from attributes).</summary>
    public static DataViewType? DefaultColumnType(Type memberType) => Visit(memberType, TypeOnly.Instance);

    public static TResult? Visit<TResult>(Type t, IMemberTypeVisitor<TResult> v)
    {
        // Scalars.
        if (t == typeof(string)) return v.Visit(StringText.Instance, TextDataViewType.Instance, false);
        if (t == typeof(ReadOnlyMemory<char>)) return v.Visit(Identity<ReadOnlyMemory<char>>.Instance, TextDataViewType.Instance, false);
        if (t == typeof(float)) return v.Visit(Identity<float>.Instance, NumberDataViewType.Single, false);
        if (t == typeof(double)) return v.Visit(Identity<double>.Instance, NumberDataViewType.Double, false);
        if (t == typeof(int)) return v.Visit(Identity<int>.Instance, NumberDataViewType.Int32, false);
        if (t == typeof(long)) return v.Visit(Identity<long>.Instance, NumberDataViewType.Int64, false);
        if (t == typeof(uint)) return v.Visit(Identity<uint>.Instance, NumberDataViewType.UInt32, false);
        if (t == typeof(bool)) return v.Visit(Identity<bool>.Instance, BooleanDataViewType.Instance, false);
        // Arrays.
        if (t == typeof(string[])) return v.Visit(StringArrayVector.Instance, TextDataViewType.Instance, true);
        if (t == typeof(ReadOnlyMemory<char>[])) return v.Visit(ArrayVector<ReadOnlyMemory<char>>.Instance, TextDataViewType.Instance, true);
        if (t == typeof(float[])) return v.Visit(ArrayVector<float>.Instance, NumberDataViewType.Single, true);
        if (t == typeof(double[])) return v.Visit(ArrayVector<double>.Instance, NumberDataViewType.Double, true);
        if (t == typeof(int[])) return v.Visit(ArrayVector<int>.Instance, NumberDataViewType.Int32, true);
        if (t == typeof(long[])) return v.Visit(ArrayVector<long>.Instance, NumberDataViewType.Int64, true);
        if (t == typeof(uint[])) return v.Visit(ArrayVector<uint>.Instance, NumberDataViewType.UInt32, true);
        if (t == typeof(bool[])) return v.Visit(ArrayVector<bool>.Instance, BooleanDataViewType.Instance, true);
        // VBuffers.
        if (t == typeof(VBuffer<ReadOnlyMemory<char>>)) return v.Visit(BufferIdentity<ReadOnlyMemory<char>>.Instance, TextDataViewType.Instance, true);
        if (t == typeof(VBuffer<float>)) return v.Visit(BufferIdentity<float>.Instance, NumberDataViewType.Single, true);
        if (t == typeof(VBuffer<double>)) return v.Visit(BufferIdentity<double>.Instance, NumberDataViewType.Double, true);
        if (t == typeof(VBuffer<int>)) return v.Visit(BufferIdentity<int>.Instance, NumberDataViewType.Int32, true);
        if (t == typeof(VBuffer<long>)) return v.Visit(BufferIdentity<long>.Instance, NumberDataViewType.Int64, true);
        if (t == typeof(VBuffer<uint>)) return v.Visit(BufferIdentity<uint>.Instance, NumberDataViewType.UInt32, true);
        if (t == typeof(VBuffer<bool>)) return v.Visit(BufferIdentity<bool>.Instance, BooleanDataViewType.Instance, true);
        return default;
    }

    private sealed class TypeOnly : IMemberTypeVisitor<DataViewType>
    {
        public static readonly TypeOnly Instance = new();

        public DataViewType Visit<TMember, TRaw>(IMemberConverter<TMember, TRaw> converter, PrimitiveDataViewType itemType, bool isVector) =>
            isVector ? new VectorDataViewType(itemType) : itemType;
    }

    private sealed class Identity<T> : IMemberConverter<T, T>
    {
        public static readonly Identity<T> Instance = new();

        public void ToRaw(T member, ref T raw) => raw = member;

        public T FromRaw(in T raw, T existing, bool reuse) => RawTypes.Detach(raw);
    }

    private sealed class StringText : IMemberConverter<string, ReadOnlyMemory<char>>
    {
        public static readonly StringText Instance = new();

        public void ToRaw(string member, ref ReadOnlyMemory<char> raw) => raw = member is null ? ReadOnlyMemory<char>.Empty : member.AsMemory();

        public string FromRaw(in ReadOnlyMemory<char> raw, string existing, bool reuse) =>
            System.Runtime.InteropServices.MemoryMarshal.TryGetString(raw, out var s, out int start, out int length) && start == 0 && length == s.Length
                ? s
                : raw.ToString();
    }

    private sealed class ArrayVector<T> : IMemberConverter<T[], VBuffer<T>>
    {
        public static readonly ArrayVector<T> Instance = new();

        public void ToRaw(T[] member, ref VBuffer<T> raw) => VBuffer<T>.CopyDense(member ?? [], ref raw);

        public T[] FromRaw(in VBuffer<T> raw, T[] existing, bool reuse)
        {
            var array = reuse && existing is not null && existing.Length == raw.Length ? existing : new T[raw.Length];
            raw.CopyTo(array);
            if (typeof(T) == typeof(ReadOnlyMemory<char>))
            {
                var texts = (ReadOnlyMemory<char>[])(object)array;
                for (int i = 0; i < texts.Length; i++)
                    texts[i] = RawTypes.DetachText(texts[i]);
            }
            return array;
        }
    }

    private sealed class StringArrayVector : IMemberConverter<string[], VBuffer<ReadOnlyMemory<char>>>
    {
        public static readonly StringArrayVector Instance = new();

        public void ToRaw(string[] member, ref VBuffer<ReadOnlyMemory<char>> raw)
        {
            member ??= [];
            var values = VBuffer<ReadOnlyMemory<char>>.DenseEditor(ref raw, member.Length);
            for (int i = 0; i < member.Length; i++)
                values[i] = member[i] is null ? ReadOnlyMemory<char>.Empty : member[i].AsMemory();
            VBuffer<ReadOnlyMemory<char>>.CommitDense(ref raw, values, member.Length);
        }

        public string[] FromRaw(in VBuffer<ReadOnlyMemory<char>> raw, string[] existing, bool reuse)
        {
            var array = reuse && existing is not null && existing.Length == raw.Length ? existing : new string[raw.Length];
            for (int i = 0; i < array.Length; i++)
                array[i] = raw.GetItemOrDefault(i).ToString();
            return array;
        }
    }

    private sealed class BufferIdentity<T> : IMemberConverter<VBuffer<T>, VBuffer<T>>
    {
        public static readonly BufferIdentity<T> Instance = new();

        public void ToRaw(VBuffer<T> member, ref VBuffer<T> raw) => member.CopyTo(ref raw);

        public VBuffer<T> FromRaw(in VBuffer<T> raw, VBuffer<T> existing, bool reuse)
        {
            // A fresh buffer unless reusing: the object may be kept while the cursor moves on.
            VBuffer<T> result = reuse ? existing : default;
            raw.CopyTo(ref result);
            return result;
        }
    }
}

/// <summary>Reads and writes one member of a user row type, as a column.</summary>
internal abstract class MemberAccessor<TRow>
{
    protected MemberAccessor(SchemaDefinition.Column column)
    {
        Column = column;
    }

    public SchemaDefinition.Column Column { get; }

    /// <summary>A raw-typed getter reading the member of <c>row()</c>.</summary>
    public abstract Delegate MakeGetter(Func<TRow> row);

    /// <summary>An action that copies the current value of <paramref name="column"/> of <paramref name="source"/> into the member of a row object.</summary>
    public abstract Action<TRow> MakeSetter(DataViewRow source, DataViewSchema.Column column, bool reuse);

    /// <summary>Creates the accessor for a schema definition column.</summary>
    public static MemberAccessor<TRow> Create(SchemaDefinition.Column column)
    {
        var member = column.Member ?? throw new InvalidOperationException($"Column '{column.ColumnName}' is not bound to a member.");
        return MemberTypes.Visit(column.MemberType!, new Factory(column))
            ?? throw new InvalidOperationException($"Member '{member.Name}' of type {column.MemberType!.Name} cannot be a column; supported types: {MemberTypes.Supported}.");
    }

    private sealed class Factory(SchemaDefinition.Column column) : IMemberTypeVisitor<MemberAccessor<TRow>>
    {
        public MemberAccessor<TRow> Visit<TMember, TRaw>(IMemberConverter<TMember, TRaw> converter, PrimitiveDataViewType itemType, bool isVector) =>
            new Typed<TMember, TRaw>(column, converter);
    }

    private sealed class Typed<TMember, TRaw> : MemberAccessor<TRow>
    {
        private readonly IMemberConverter<TMember, TRaw> _converter;
        private readonly Func<TRow, TMember>? _get;
        private readonly Action<TRow, TMember>? _set;
        private readonly DataViewType _type;

        public Typed(SchemaDefinition.Column column, IMemberConverter<TMember, TRaw> converter) : base(column)
        {
            _converter = converter;
            _type = column.ColumnType;
            if (_type.RawType != typeof(TRaw))
                throw new InvalidOperationException(
                    $"Column '{column.ColumnName}' has type {_type}, which member '{column.MemberName}' of type {typeof(TMember).Name} cannot hold.");
            (_get, _set) = Accessors(column.Member!);
        }

        public override Delegate MakeGetter(Func<TRow> row)
        {
            var get = _get ?? throw new InvalidOperationException($"Member '{Column.MemberName}' cannot be read.");
            return (ValueGetter<TRaw>)((ref TRaw raw) =>
            {
                _converter.ToRaw(get(row()), ref raw);
                Validate(raw);
            });
        }

        public override Action<TRow> MakeSetter(DataViewRow source, DataViewSchema.Column column, bool reuse)
        {
            var set = _set ?? throw new InvalidOperationException($"Member '{Column.MemberName}' cannot be written.");
            var get = _get;
            var getter = source.GetGetter<TRaw>(column);
            TRaw buffer = default!;
            return obj =>
            {
                getter(ref buffer);
                TMember existing = reuse && get is not null ? get(obj) : default!;
                set(obj, _converter.FromRaw(buffer, existing, reuse));
            };
        }

        private void Validate(in TRaw raw)
        {
            switch (_type)
            {
                case KeyDataViewType key when raw is uint k && k > key.Count:
                    throw new InvalidOperationException($"Value {k} of key column '{Column.ColumnName}' is larger than its key count {key.Count}.");
                case VectorDataViewType vec:
                    int length = VectorLength(raw);
                    if (vec.IsKnownSize && length != vec.Size)
                        throw new InvalidOperationException($"Column '{Column.ColumnName}' is a vector of size {vec.Size}, but member '{Column.MemberName}' holds {length} values.");
                    if (vec.ItemType is KeyDataViewType vkey && raw is VBuffer<uint> keys)
                    {
                        foreach (uint k in keys.GetValues())
                        {
                            if (k > vkey.Count)
                                throw new InvalidOperationException($"Value {k} of key column '{Column.ColumnName}' is larger than its key count {vkey.Count}.");
                        }
                    }
                    break;
            }
        }

        private static int VectorLength(in TRaw raw) => raw switch
        {
            VBuffer<float> b => b.Length,
            VBuffer<double> b => b.Length,
            VBuffer<int> b => b.Length,
            VBuffer<long> b => b.Length,
            VBuffer<uint> b => b.Length,
            VBuffer<bool> b => b.Length,
            VBuffer<ReadOnlyMemory<char>> b => b.Length,
            _ => 0,
        };

        private static (Func<TRow, TMember>?, Action<TRow, TMember>?) Accessors(MemberInfo member)
        {
            switch (member)
            {
                case FieldInfo f:
                    return (row => (TMember)f.GetValue(row)!,
                            f.IsInitOnly ? null : (row, value) => f.SetValue(row, value));
                case PropertyInfo p:
                    Func<TRow, TMember>? get = null;
                    Action<TRow, TMember>? set = null;
                    if (p.GetMethod is { IsPublic: true } gm)
                    {
                        get = !typeof(TRow).IsValueType && p.PropertyType == typeof(TMember)
                            ? (Func<TRow, TMember>)Delegate.CreateDelegate(typeof(Func<TRow, TMember>), gm)
                            : row => (TMember)p.GetValue(row)!;
                    }
                    if (p.SetMethod is { IsPublic: true } sm)
                    {
                        set = !typeof(TRow).IsValueType && p.PropertyType == typeof(TMember)
                            ? (Action<TRow, TMember>)Delegate.CreateDelegate(typeof(Action<TRow, TMember>), sm)
                            : (row, value) => p.SetValue(row, value);
                    }
                    return (get, set);
                default:
                    throw new InvalidOperationException($"Member '{member.Name}' is neither a field nor a property.");
            }
        }
    }
}
