using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Tests.Data;

/// <summary>LoadFromEnumerable / CreateEnumerable round trips, attributes, schema definitions, cursors and GetColumn.</summary>
public class EnumerableRoundTripTests
{
    private static readonly DataOperationsCatalog Data = new(seed: 1);

    public sealed class Row
    {
        public string Text { get; set; } = "";
        public ReadOnlyMemory<char> Memory { get; set; }
        public float Single { get; set; }
        public double Double { get; set; }
        public int Int { get; set; }
        public long Long { get; set; }
        public uint UInt { get; set; }
        public bool Bool { get; set; }
        [KeyType(5)] public uint Key { get; set; }
        public float[] Floats { get; set; } = [];
        public double[] Doubles { get; set; } = [];
        public int[] Ints { get; set; } = [];
        public long[] Longs { get; set; } = [];
        public bool[] Bools { get; set; } = [];
        public string[] Strings { get; set; } = [];
        [KeyType(3)] public uint[] Keys { get; set; } = [];
        [VectorType(2)] public float[] Fixed { get; set; } = [0, 0];
        public VBuffer<float> Buffer { get; set; }
        public double Field;
    }

    private static Row[] SampleRows() =>
    [
        new Row
        {
            Text = "hello, world", Memory = "mem".AsMemory(), Single = 1.5f, Double = -2.25, Int = -7, Long = 1L << 40, UInt = 4000000000,
            Bool = true, Key = 5, Floats = [1, 2, 3], Doubles = [0.5], Ints = [1, -1], Longs = [long.MaxValue], Bools = [true, false],
            Strings = ["a", "", "c"], Keys = [0, 3], Fixed = [9, 8], Buffer = new VBuffer<float>(4, 1, [6f], [2]), Field = 3.5,
        },
        new Row
        {
            Text = "", Memory = default, Single = float.NaN, Double = double.PositiveInfinity, Int = int.MinValue, Long = -1, UInt = 0,
            Bool = false, Key = 0, Floats = [], Doubles = [1, 2], Ints = [], Longs = [], Bools = [], Strings = [], Keys = [],
            Fixed = [1, 2], Buffer = new VBuffer<float>(2, [1f, 2f]), Field = -1,
        },
    ];

    [Fact]
    public void SchemaFromPocoHasEveryColumnType()
    {
        var view = Data.LoadFromEnumerable(SampleRows());
        var s = view.Schema;
        Assert.Equal(19, s.Count);
        Assert.Equal(TextDataViewType.Instance, s["Text"].Type);
        Assert.Equal(TextDataViewType.Instance, s["Memory"].Type);
        Assert.Equal(NumberDataViewType.Single, s["Single"].Type);
        Assert.Equal(NumberDataViewType.Double, s["Double"].Type);
        Assert.Equal(NumberDataViewType.Int32, s["Int"].Type);
        Assert.Equal(NumberDataViewType.Int64, s["Long"].Type);
        Assert.Equal(NumberDataViewType.UInt32, s["UInt"].Type);
        Assert.Equal(BooleanDataViewType.Instance, s["Bool"].Type);
        Assert.Equal(new KeyDataViewType(5), s["Key"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single), s["Floats"].Type);
        Assert.Equal(new VectorDataViewType(TextDataViewType.Instance), s["Strings"].Type);
        Assert.Equal(new VectorDataViewType(new KeyDataViewType(3)), s["Keys"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 2), s["Fixed"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single), s["Buffer"].Type);
        Assert.Equal(NumberDataViewType.Double, s["Field"].Type);
        Assert.Equal(2, view.GetRowCount());
        Assert.True(view.CanShuffle);
    }

    [Fact]
    public void RoundTripEveryColumnType()
    {
        var rows = SampleRows();
        var back = Data.CreateEnumerable<Row>(Data.LoadFromEnumerable(rows), reuseRowObject: false).ToArray();
        Assert.Equal(rows.Length, back.Length);
        for (int i = 0; i < rows.Length; i++)
        {
            var a = rows[i];
            var b = back[i];
            Assert.NotSame(a, b);
            Assert.Equal(a.Text, b.Text);
            Assert.Equal(a.Memory.ToString(), b.Memory.ToString());
            Assert.Equal(a.Single, b.Single);
            Assert.Equal(a.Double, b.Double);
            Assert.Equal(a.Int, b.Int);
            Assert.Equal(a.Long, b.Long);
            Assert.Equal(a.UInt, b.UInt);
            Assert.Equal(a.Bool, b.Bool);
            Assert.Equal(a.Key, b.Key);
            Assert.Equal(a.Floats, b.Floats);
            Assert.Equal(a.Doubles, b.Doubles);
            Assert.Equal(a.Ints, b.Ints);
            Assert.Equal(a.Longs, b.Longs);
            Assert.Equal(a.Bools, b.Bools);
            Assert.Equal(a.Strings, b.Strings);
            Assert.Equal(a.Keys, b.Keys);
            Assert.Equal(a.Fixed, b.Fixed);
            Assert.NotSame(a.Floats, b.Floats);
            Assert.Equal(a.Buffer.DenseValues(), b.Buffer.DenseValues());
            Assert.Equal(a.Field, b.Field);
        }
    }

    [Fact]
    public void ViewReadsObjectsLazily()
    {
        var rows = new List<Row> { new() { Text = "before" } };
        var view = Data.LoadFromEnumerable(rows);
        rows[0].Text = "after";
        rows.Add(new Row { Text = "added" });
        Assert.Equal(["after", "added"], view.GetColumn<string>("Text"));
    }

    public sealed class Renamed
    {
        [ColumnName("Label")] public bool Sentiment { get; set; }
        [LoadColumn(0)] public string Text { get; set; } = "";
        [NoColumn] public string Ignored { get; set; } = "x";
        public string ReadOnly => "computed";
    }

    public sealed class RenamedBack
    {
        public bool Label { get; set; }
        public string Text { get; set; } = "";
    }

    [Fact]
    public void AttributesRenameAndSkipMembers()
    {
        var view = Data.LoadFromEnumerable(new[] { new Renamed { Sentiment = true, Text = "good" } });
        Assert.Equal(["Label", "ReadOnly", "Text"], view.Schema.Select(c => c.Name).Order());
        Assert.Null(view.Schema.GetColumnOrNull("Ignored"));
        Assert.Null(view.Schema.GetColumnOrNull("Sentiment"));
        var back = Assert.Single(Data.CreateEnumerable<RenamedBack>(view, reuseRowObject: false));
        Assert.True(back.Label);
        Assert.Equal("good", back.Text);
        // Read-only members are columns when reading objects, but not targets when writing them.
        var again = Assert.Single(Data.CreateEnumerable<Renamed>(Data.LoadFromEnumerable(new[] { new RenamedBack { Label = true, Text = "t" } }), false));
        Assert.True(again.Sentiment);
        Assert.Equal("x", again.Ignored);
    }

    public sealed class Missing
    {
        public string Text { get; set; } = "";
        public float Score { get; set; }
    }

    public sealed class WrongType
    {
        public string Text { get; set; } = "";
        public double Label { get; set; }
    }

    [Fact]
    public void CreateEnumerableNamesMissingOrMistypedColumns()
    {
        var view = Data.LoadFromEnumerable(new[] { new RenamedBack { Label = true, Text = "t" } });
        var missing = Assert.Throws<ArgumentOutOfRangeException>(() => Data.CreateEnumerable<Missing>(view, false));
        Assert.Contains("'Score'", missing.Message);
        Assert.Contains("Label", missing.Message); // lists available columns

        var wrong = Assert.Throws<InvalidOperationException>(() => Data.CreateEnumerable<WrongType>(view, false));
        Assert.Contains("'Label'", wrong.Message);
        Assert.Contains("Boolean", wrong.Message);
        Assert.Contains("Double", wrong.Message);

        var partial = Assert.Single(Data.CreateEnumerable<Missing>(view, false, ignoreMissingColumns: true));
        Assert.Equal("t", partial.Text);
        Assert.Equal(0f, partial.Score);
    }

    [Fact]
    public void ReuseRowObjectFillsOneInstance()
    {
        var rows = SampleRows();
        var objects = Data.CreateEnumerable<Row>(Data.LoadFromEnumerable(rows), reuseRowObject: true).ToList();
        Assert.Same(objects[0], objects[1]);
        var texts = new List<string>();
        foreach (var r in Data.CreateEnumerable<Row>(Data.LoadFromEnumerable(rows), reuseRowObject: true))
            texts.Add(r.Text);
        Assert.Equal(["hello, world", ""], texts);
    }

    public sealed class Fixed3
    {
        [VectorType(3)] public float[] V { get; set; } = [];
    }

    [Fact]
    public void FixedSizeVectorRejectsWrongLength()
    {
        var view = Data.LoadFromEnumerable(new[] { new Fixed3 { V = [1, 2] } });
        var ex = Assert.Throws<InvalidOperationException>(() => view.GetColumn<float[]>("V").ToList());
        Assert.Contains("size 3", ex.Message);
        Assert.Contains("'V'", ex.Message);
    }

    [Fact]
    public void KeyValueAboveCountIsRejected()
    {
        var view = Data.LoadFromEnumerable(new[] { new Row { Key = 6 } });
        var ex = Assert.Throws<InvalidOperationException>(() => view.GetColumn<uint>("Key").ToList());
        Assert.Contains("key count 5", ex.Message);
    }

    public sealed class Unsupported
    {
        public decimal Money { get; set; }
    }

    [Fact]
    public void UnsupportedMemberTypeIsNamed()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Data.LoadFromEnumerable(new[] { new Unsupported() }));
        Assert.Contains("'Money'", ex.Message);
        Assert.Contains("Decimal", ex.Message);
    }

    [Fact]
    public void SchemaDefinitionCanRenameAndFixSizes()
    {
        var def = SchemaDefinition.Create<Fixed3>();
        def["V"].ColumnName = "Features";
        def["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 2);
        var view = Data.LoadFromEnumerable(new[] { new Fixed3 { V = [1, 2] } }, def);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 2), view.Schema["Features"].Type);
        var back = Assert.Single(Data.CreateEnumerable<Fixed3>(view, false, schemaDefinition: def));
        Assert.Equal([1f, 2f], back.V);

        // A hand-made definition binds to members by name.
        var manual = new SchemaDefinition { new SchemaDefinition.Column("V", "Vec") };
        var view2 = Data.LoadFromEnumerable(new[] { new Fixed3 { V = [4, 5, 6] } }, manual);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 3), view2.Schema["Vec"].Type);
        var bad = new SchemaDefinition { new SchemaDefinition.Column("Nope") };
        Assert.Throws<InvalidOperationException>(() => Data.LoadFromEnumerable(new[] { new Fixed3() }, bad));
        var badType = SchemaDefinition.Create<Fixed3>();
        badType["V"].ColumnType = NumberDataViewType.Single;
        Assert.Throws<InvalidOperationException>(() => Data.LoadFromEnumerable(new[] { new Fixed3() }, badType));
    }

    [Fact]
    public void CursorHonoursActiveColumnsAndTypes()
    {
        var view = Data.LoadFromEnumerable(SampleRows());
        var text = view.Schema["Text"];
        var single = view.Schema["Single"];
        var floats = view.Schema["Floats"];
        using var cursor = view.GetRowCursor([text, floats]);
        Assert.True(cursor.IsColumnActive(text));
        Assert.False(cursor.IsColumnActive(single));
        var inactive = Assert.Throws<InvalidOperationException>(() => cursor.GetGetter<float>(single));
        Assert.Contains("'Single'", inactive.Message);
        var wrongType = Assert.Throws<InvalidOperationException>(() => cursor.GetGetter<int>(text));
        Assert.Contains("'Text'", wrongType.Message);

        var getText = cursor.GetGetter<ReadOnlyMemory<char>>(text);
        var getString = cursor.GetGetter<string>(text);
        var getFloats = cursor.GetGetter<VBuffer<float>>(floats);
        ReadOnlyMemory<char> t = default;
        string s = "";
        VBuffer<float> f = default;
        Assert.Equal(-1, cursor.Position);
        Assert.Throws<InvalidOperationException>(() => getText(ref t)); // before MoveNext
        Assert.True(cursor.MoveNext());
        Assert.Equal(0, cursor.Position);
        getText(ref t);
        getString(ref s);
        getFloats(ref f);
        Assert.Equal("hello, world", t.ToString());
        Assert.Equal("hello, world", s);
        Assert.Equal([1f, 2f, 3f], f.DenseValues());
        Assert.True(cursor.MoveNext());
        Assert.Equal(1, cursor.Position);
        getFloats(ref f);
        Assert.Equal(0, f.Length);
        Assert.False(cursor.MoveNext());
        Assert.False(cursor.MoveNext());
        Assert.Throws<InvalidOperationException>(() => getText(ref t)); // past the end

        // A column from another schema is rejected.
        var other = Data.LoadFromEnumerable(new[] { new Missing() }).Schema["Score"];
        Assert.Throws<ArgumentOutOfRangeException>(() => cursor.IsColumnActive(other));
    }

    [Fact]
    public void StreamingEnumerableIsReEnumeratedPerCursor()
    {
        int enumerations = 0;
        IEnumerable<Missing> Rows()
        {
            enumerations++;
            for (int i = 0; i < 3; i++)
                yield return new Missing { Text = $"r{i}", Score = i };
        }

        var view = Data.LoadFromEnumerable(Rows());
        Assert.False(view.CanShuffle);
        Assert.Null(view.GetRowCount());
        Assert.Equal([0f, 1f, 2f], view.GetColumn<float>("Score"));
        Assert.Equal(["r0", "r1", "r2"], view.GetColumn<string>("Text"));
        Assert.Equal(2, enumerations);
        // A rand is ignored when the view cannot shuffle.
        using var c = view.GetRowCursor(view.Schema, new Random(3));
        Assert.True(c.MoveNext());
    }

    [Fact]
    public void ListViewShufflesWithRand()
    {
        var rows = Enumerable.Range(0, 50).Select(i => new Missing { Score = i }).ToArray();
        var view = Data.LoadFromEnumerable(rows);
        List<float> Read(Random? rand)
        {
            var result = new List<float>();
            using var c = view.GetRowCursor([view.Schema["Score"]], rand);
            var g = c.GetGetter<float>(view.Schema["Score"]);
            float v = 0;
            while (c.MoveNext())
            {
                g(ref v);
                result.Add(v);
            }
            return result;
        }

        var a = Read(new Random(5));
        var b = Read(new Random(5));
        Assert.Equal(a, b);
        Assert.NotEqual(Read(null), a);
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (float)i), a.OrderBy(x => x));
    }

    [Fact]
    public void GetColumnSupportsRawFriendlyAndArrayTypes()
    {
        var view = Data.LoadFromEnumerable(SampleRows());
        Assert.Equal(["hello, world", ""], view.GetColumn<string>("Text"));
        Assert.Equal(["hello, world", ""], view.GetColumn<ReadOnlyMemory<char>>("Text").Select(m => m.ToString()));
        Assert.Equal(new float[][] { [1f, 2f, 3f], [] }, view.GetColumn<float[]>("Floats"));
        Assert.Equal([3, 0], view.GetColumn<VBuffer<float>>("Floats").Select(b => b.Length));
        Assert.Equal([5u, 0u], view.GetColumn<uint>("Key"));
        Assert.Throws<InvalidOperationException>(() => view.GetColumn<double>("Single"));
        Assert.Throws<ArgumentOutOfRangeException>(() => view.GetColumn<double>("Nope"));
    }

    [Fact]
    public void NullRowIsReported()
    {
        var view = Data.LoadFromEnumerable(new Missing[] { new(), null! });
        var ex = Assert.Throws<InvalidOperationException>(() => view.GetColumn<float>("Score").ToList());
        Assert.Contains("Row 1", ex.Message);
    }
}
