using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Tests.Data;

/// <summary>Column types, schemas, annotations, VBuffer and SchemaShape.</summary>
public class SchemaAndTypesTests
{
    [Fact]
    public void TypesHaveRawTypesEqualityAndNames()
    {
        Assert.Equal(typeof(ReadOnlyMemory<char>), TextDataViewType.Instance.RawType);
        Assert.Equal(typeof(float), NumberDataViewType.Single.RawType);
        Assert.Equal(typeof(double), NumberDataViewType.Double.RawType);
        Assert.Equal(typeof(int), NumberDataViewType.Int32.RawType);
        Assert.Equal(typeof(long), NumberDataViewType.Int64.RawType);
        Assert.Equal(typeof(bool), BooleanDataViewType.Instance.RawType);
        Assert.Equal(typeof(uint), new KeyDataViewType(3).RawType);
        Assert.Equal(typeof(VBuffer<float>), new VectorDataViewType(NumberDataViewType.Single, 4).RawType);
        Assert.Equal(typeof(VBuffer<uint>), new VectorDataViewType(new KeyDataViewType(2)).RawType);

        Assert.Equal(new KeyDataViewType(3), new KeyDataViewType(3));
        Assert.NotEqual(new KeyDataViewType(3), new KeyDataViewType(4));
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 2, 3), new VectorDataViewType(NumberDataViewType.Single, 2, 3));
        Assert.NotEqual(new VectorDataViewType(NumberDataViewType.Single, 6), new VectorDataViewType(NumberDataViewType.Single, 2, 3));
        Assert.NotEqual<DataViewType>(new VectorDataViewType(NumberDataViewType.Single), NumberDataViewType.Single);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single), new VectorDataViewType(NumberDataViewType.Single, 0));

        Assert.Equal("String", TextDataViewType.Instance.ToString());
        Assert.Equal("Single", NumberDataViewType.Single.ToString());
        Assert.Equal("Key<UInt32, 0-2>", new KeyDataViewType(3).ToString());
        Assert.Equal("Vector<Single, 2, 3>", new VectorDataViewType(NumberDataViewType.Single, 2, 3).ToString());
        Assert.Equal("Vector<Int64>", new VectorDataViewType(NumberDataViewType.Int64).ToString());

        var v = new VectorDataViewType(NumberDataViewType.Double, 2, 3);
        Assert.Equal(6, v.Size);
        Assert.True(v.IsKnownSize);
        Assert.False(new VectorDataViewType(NumberDataViewType.Double).IsKnownSize);
        Assert.Equal(3ul, new VectorDataViewType(new KeyDataViewType(3), 5).GetKeyCount());
        Assert.Equal(NumberDataViewType.Double, v.GetItemType());
    }

    [Fact]
    public void BadTypeArgumentsThrow()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new KeyDataViewType(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new KeyDataViewType((ulong)uint.MaxValue + 1));
        Assert.Throws<ArgumentException>(() => new KeyDataViewType(typeof(ulong), 3));
        Assert.Throws<ArgumentException>(() => new VectorDataViewType(NumberDataViewType.Single, 2, 0));
        Assert.Throws<ArgumentException>(() => new VectorDataViewType(NumberDataViewType.Single, -1));
    }

    [Fact]
    public void SchemaLooksUpByNameAndHidesEarlierColumns()
    {
        var b = new DataViewSchema.Builder();
        b.AddColumn("A", NumberDataViewType.Single);
        b.AddColumn("B", TextDataViewType.Instance);
        b.AddColumn("A", NumberDataViewType.Double);
        var schema = b.ToSchema();

        Assert.Equal(3, schema.Count);
        Assert.True(schema[0].IsHidden);
        Assert.False(schema[2].IsHidden);
        Assert.Equal(2, schema["A"].Index);
        Assert.Equal(NumberDataViewType.Double, schema["A"].Type);
        Assert.Equal(1, schema["B"].Index);
        Assert.Null(schema.GetColumnOrNull("a")); // case-sensitive
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => schema["Missing"]);
        Assert.Contains("'Missing'", ex.Message);
        Assert.Contains("B, A", ex.Message); // visible columns, in schema order
        Assert.Throws<ArgumentOutOfRangeException>(() => schema[3]);
    }

    [Fact]
    public void AnnotationsCarryKeyValuesAndSlotNames()
    {
        var ab = new DataViewSchema.Annotations.Builder();
        var names = new[] { "neg".AsMemory(), "pos".AsMemory() };
        ab.AddKeyValues(2, TextDataViewType.Instance, (ref VBuffer<ReadOnlyMemory<char>> v) => v = new VBuffer<ReadOnlyMemory<char>>(2, names));
        var b = new DataViewSchema.Builder();
        b.AddColumn("Label", new KeyDataViewType(2), ab.ToAnnotations());

        var sb = new DataViewSchema.Annotations.Builder();
        sb.AddSlotNames(3, (ref VBuffer<ReadOnlyMemory<char>> v) => v = new VBuffer<ReadOnlyMemory<char>>(3, ["x".AsMemory(), "y".AsMemory(), "z".AsMemory()]));
        b.AddColumn("Features", new VectorDataViewType(NumberDataViewType.Single, 3), sb.ToAnnotations());
        b.AddColumn("Plain", NumberDataViewType.Single);
        var schema = b.ToSchema();

        Assert.True(schema["Label"].HasKeyValues());
        Assert.False(schema["Plain"].HasKeyValues());
        VBuffer<ReadOnlyMemory<char>> kv = default;
        schema["Label"].GetKeyValues(ref kv);
        Assert.Equal(["neg", "pos"], kv.DenseValues().Select(m => m.ToString()));

        Assert.True(schema["Features"].HasSlotNames());
        VBuffer<ReadOnlyMemory<char>> slots = default;
        schema["Features"].GetSlotNames(ref slots);
        Assert.Equal(["x", "y", "z"], slots.DenseValues().Select(m => m.ToString()));

        Assert.Throws<InvalidOperationException>(() => schema["Plain"].GetKeyValues(ref kv));
        // A getter of the wrong raw type is rejected when the annotation is added.
        Assert.Throws<ArgumentException>(() => new DataViewSchema.Annotations.Builder().Add("X", NumberDataViewType.Single, (ref double d) => d = 1));
    }

    [Fact]
    public void VBufferDenseAndSparse()
    {
        var dense = new VBuffer<float>(3, [1f, 2f, 3f]);
        Assert.True(dense.IsDense);
        Assert.Equal([1f, 2f, 3f], dense.DenseValues());
        Assert.Equal(2f, dense.GetItemOrDefault(1));

        var sparse = new VBuffer<float>(5, 2, [7f, 9f], [1, 3]);
        Assert.False(sparse.IsDense);
        Assert.Equal([0f, 7f, 0f, 9f, 0f], sparse.DenseValues());
        Assert.Equal(9f, sparse.GetItemOrDefault(3));
        Assert.Equal(0f, sparse.GetItemOrDefault(4));
        Assert.Equal([1, 3], sparse.GetIndices().ToArray());
        Assert.Equal([new KeyValuePair<int, float>(1, 7f), new KeyValuePair<int, float>(3, 9f)], sparse.Items());
        Assert.Equal(5, sparse.Items(all: true).Count());

        // CopyTo into a buffer reuses its arrays when they are large enough.
        var arr = new float[8];
        var dst = new VBuffer<float>(8, arr);
        dense.CopyTo(ref dst);
        Assert.Equal(3, dst.Length);
        Assert.Equal([1f, 2f, 3f], dst.DenseValues());
        Assert.Equal(1f, arr[0]);

        Assert.Throws<ArgumentException>(() => new VBuffer<float>(5, 2, [1f, 2f], [3, 1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => dense.GetItemOrDefault(3));
        Assert.Equal(0, default(VBuffer<int>).Length);
        Assert.True(default(VBuffer<int>).IsDense);
    }

    private sealed class AllTypes
    {
        public string Text { get; set; } = "";
        public float F { get; set; }
        public double D { get; set; }
        public int I { get; set; }
        public long L { get; set; }
        public bool B { get; set; }
        [KeyType(4)] public uint K { get; set; }
        public float[] Vf { get; set; } = [];
        [VectorType(3)] public double[] Vd { get; set; } = [0, 0, 0];
        [KeyType(9)] public uint[] Vk { get; set; } = [];
    }

    [Fact]
    public void SchemaShapeOfEveryColumnKind()
    {
        var data = new DataOperationsCatalog(1).LoadFromEnumerable(new[] { new AllTypes() });
        var shape = SchemaShape.Create(data.Schema);
        Assert.Equal(10, shape.Count);

        void Check(string name, SchemaShape.Column.VectorKind kind, DataViewType item, bool isKey)
        {
            Assert.True(shape.TryFindColumn(name, out var c), name);
            Assert.Equal(kind, c.Kind);
            Assert.Equal(item, c.ItemType);
            Assert.Equal(isKey, c.IsKey);
        }

        Check("Text", SchemaShape.Column.VectorKind.Scalar, TextDataViewType.Instance, false);
        Check("F", SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false);
        Check("D", SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Double, false);
        Check("I", SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Int32, false);
        Check("L", SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Int64, false);
        Check("B", SchemaShape.Column.VectorKind.Scalar, BooleanDataViewType.Instance, false);
        Check("K", SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.UInt32, true);
        Check("Vf", SchemaShape.Column.VectorKind.VariableVector, NumberDataViewType.Single, false);
        Check("Vd", SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Double, false);
        Check("Vk", SchemaShape.Column.VectorKind.VariableVector, NumberDataViewType.UInt32, true);

        Assert.Equal("Key<UInt32>", shape["K"].GetTypeString());
        Assert.Equal("Vector<Double>", shape["Vd"].GetTypeString());
        Assert.Equal("VarVector<Single>", shape["Vf"].GetTypeString());
        Assert.Throws<ArgumentOutOfRangeException>(() => shape["Nope"]);

        // A known-size vector satisfies a variable-vector requirement, not the reverse.
        var varReq = new SchemaShape.Column("X", SchemaShape.Column.VectorKind.VariableVector, NumberDataViewType.Double, false);
        Assert.True(varReq.IsCompatibleWith(shape["Vd"]));
        var fixedReq = new SchemaShape.Column("X", SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false);
        Assert.False(fixedReq.IsCompatibleWith(shape["Vf"]));
        Assert.Throws<ArgumentException>(() => new SchemaShape.Column("X", SchemaShape.Column.VectorKind.Scalar, new KeyDataViewType(2), true));
    }

    [Fact]
    public void SchemaShapeSkipsHiddenColumnsAndKeepsAnnotationShapes()
    {
        var ab = new DataViewSchema.Annotations.Builder();
        ab.AddKeyValues(1, TextDataViewType.Instance, (ref VBuffer<ReadOnlyMemory<char>> v) => v = new VBuffer<ReadOnlyMemory<char>>(1, ["a".AsMemory()]));
        var b = new DataViewSchema.Builder();
        b.AddColumn("A", NumberDataViewType.Single);
        b.AddColumn("A", new KeyDataViewType(1), ab.ToAnnotations());
        var shape = SchemaShape.Create(b.ToSchema());
        var col = Assert.Single(shape);
        Assert.True(col.IsKey);
        Assert.True(col.Annotations.TryFindColumn(AnnotationUtils.Kinds.KeyValues, out var kv));
        Assert.Equal(SchemaShape.Column.VectorKind.Vector, kv.Kind);
        Assert.Equal(TextDataViewType.Instance, kv.ItemType);
    }
}
