using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Tests.Data;

/// <summary>LoadFromTextFile (TSV/CSV, header, RFC 4180 quoting, errors) and LoadFromJsonLines.</summary>
public sealed class FileLoaderTests : IDisposable
{
    private static readonly DataOperationsCatalog Data = new(seed: 1);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "lowrank-data-tests-" + Guid.NewGuid().ToString("N"));

    public FileLoaderTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    public sealed class Review
    {
        [LoadColumn(0)] public string Text { get; set; } = "";
        [LoadColumn(1)] public bool Label { get; set; }
    }

    public sealed class ByHeader
    {
        public string Text { get; set; } = "";
        [ColumnName("Label")] public float Score { get; set; }
        public int Count { get; set; }
    }

    public sealed class Numbers
    {
        [LoadColumn(0)] public string Id { get; set; } = "";
        [LoadColumn(1, 3)] public float[] Features { get; set; } = [];
        [LoadColumn(4)] public double D { get; set; }
        [LoadColumn(5)] public long L { get; set; }
        [LoadColumn(6), KeyType(3)] public uint K { get; set; }
        [LoadColumn([6, 3])] public int[] Picked { get; set; } = [];
    }

    [Fact]
    public void TsvWithLoadColumnIndices()
    {
        var path = Write("a.tsv", "great movie\t1\nawful\tfalse\r\n\nmeh\tno\n");
        var view = Data.LoadFromTextFile<Review>(path);
        Assert.Equal(3, view.GetRowCount());
        Assert.True(view.CanShuffle);
        Assert.Equal(["great movie", "awful", "meh"], view.GetColumn<string>("Text"));
        Assert.Equal([true, false, false], view.GetColumn<bool>("Label"));
    }

    [Fact]
    public void HeaderNamesMapColumnsCaseInsensitively()
    {
        var path = Write("h.csv", "count,LABEL,text,extra\n3,0.5,hello,x\n-1,,bye,y\n");
        var view = Data.LoadFromTextFile<ByHeader>(path, separatorChar: ',', hasHeader: true);
        Assert.Equal(["hello", "bye"], view.GetColumn<string>("Text"));
        var scores = view.GetColumn<float>("Label").ToArray();
        Assert.Equal(0.5f, scores[0]);
        Assert.True(float.IsNaN(scores[1])); // empty field -> missing
        Assert.Equal([3, -1], view.GetColumn<int>("Count"));
    }

    [Fact]
    public void MissingHeaderColumnIsNamed()
    {
        var path = Write("h2.csv", "text,label\nhi,1\n");
        var ex = Assert.Throws<InvalidOperationException>(() => Data.LoadFromTextFile<ByHeader>(path, ',', hasHeader: true));
        Assert.Contains("'Count'", ex.Message);
        Assert.Contains("'text'", ex.Message);
        var noHeader = Assert.Throws<InvalidOperationException>(() => Data.LoadFromTextFile<ByHeader>(path, ','));
        Assert.Contains("LoadColumn", noHeader.Message);
    }

    [Fact]
    public void RfcQuotingWithSeparatorsQuotesAndNewlines()
    {
        var content = "Text,Label\n" +
                      "\"Hello, world\",1\n" +
                      "\"She said \"\"hi\"\"\",0\n" +
                      "\"line one\nline two\r\nline three\",1\n" +
                      "\"\",0\n" +
                      "plain,1\n";
        var path = Write("q.csv", content);
        var view = Data.LoadFromTextFile<Review>(path, ',', hasHeader: true, allowQuoting: true);
        Assert.Equal(["Hello, world", "She said \"hi\"", "line one\nline two\r\nline three", "", "plain"], view.GetColumn<string>("Text"));
        Assert.Equal([true, false, true, false, true], view.GetColumn<bool>("Label"));
    }

    [Fact]
    public void WithoutQuotingQuotesAreLiteral()
    {
        var path = Write("nq.csv", "\"a\",1\n");
        var view = Data.LoadFromTextFile<Review>(path, ',');
        Assert.Equal(["\"a\""], view.GetColumn<string>("Text"));
    }

    [Fact]
    public void TrimWhitespaceAroundFieldsButNotInsideQuotes()
    {
        var path = Write("t.csv", "  padded text  ,  1 \n  \"  quoted  \"  , 0\n");
        var trimmed = Data.LoadFromTextFile<Review>(path, ',', allowQuoting: true, trimWhitespace: true);
        Assert.Equal(["padded text", "  quoted  "], trimmed.GetColumn<string>("Text"));
        Assert.Equal([true, false], trimmed.GetColumn<bool>("Label"));

        var path2 = Write("t2.csv", "  padded  ,1\n");
        Assert.Equal(["  padded  "], Data.LoadFromTextFile<Review>(path2, ',').GetColumn<string>("Text"));
    }

    [Fact]
    public void VectorsRangesListsKeysAndNumbers()
    {
        var path = Write("n.tsv", "a\t1\t2.5\t-3\t1e300\t9000000000\t3\nb\tNaN\t\t4\t-0.5\t-1\t0\n");
        var view = Data.LoadFromTextFile<Numbers>(path);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Single, 3), view.Schema["Features"].Type);
        Assert.Equal(new VectorDataViewType(NumberDataViewType.Int32, 2), view.Schema["Picked"].Type);
        Assert.Equal(new KeyDataViewType(3), view.Schema["K"].Type);
        var rows = Data.CreateEnumerable<Numbers>(view, false).ToArray();
        Assert.Equal([1f, 2.5f, -3f], rows[0].Features);
        Assert.True(float.IsNaN(rows[1].Features[0]) && float.IsNaN(rows[1].Features[1]));
        Assert.Equal(4f, rows[1].Features[2]);
        Assert.Equal(1e300, rows[0].D);
        Assert.Equal(9000000000L, rows[0].L);
        Assert.Equal(3u, rows[0].K);
        Assert.Equal(0u, rows[1].K);
        Assert.Equal([3, -3], rows[0].Picked);
        Assert.Equal([0, 4], rows[1].Picked);
    }

    [Fact]
    public void ParseErrorNamesFileLineFieldAndColumn()
    {
        var path = Write("bad.tsv", "ok\t1\nfine\t0\n\nbroken\tmaybe\n");
        var ex = Assert.Throws<FormatException>(() => Data.LoadFromTextFile<Review>(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains("line 4", ex.Message);
        Assert.Contains("field 2", ex.Message);
        Assert.Contains("'maybe'", ex.Message);
        Assert.Contains("'Label'", ex.Message);
    }

    [Fact]
    public void LineNumbersCountNewlinesInsideQuotes()
    {
        var path = Write("bad2.csv", "\"multi\nline\",1\n\"x\",oops\n");
        var ex = Assert.Throws<FormatException>(() => Data.LoadFromTextFile<Review>(path, ',', allowQuoting: true));
        Assert.Contains("line 3", ex.Message);
    }

    [Fact]
    public void KeyOutOfRangeAndBadNumbersAreErrors()
    {
        var path = Write("k.tsv", "a\t1\t2\t3\t4\t5\t4\n");
        var ex = Assert.Throws<FormatException>(() => Data.LoadFromTextFile<Numbers>(path));
        Assert.Contains("field 7", ex.Message);
        Assert.Contains("key", ex.Message);
        var path2 = Write("k2.tsv", "a\t1\t2\t3\t4\t5.5\t1\n");
        var ex2 = Assert.Throws<FormatException>(() => Data.LoadFromTextFile<Numbers>(path2));
        Assert.Contains("field 6", ex2.Message);
        Assert.Contains("Int64", ex2.Message);
    }

    [Fact]
    public void UnterminatedQuoteAndShortRecordsAreErrors()
    {
        var path = Write("u.csv", "a,1\n\"never closed,1\nmore\n");
        var ex = Assert.Throws<FormatException>(() => Data.LoadFromTextFile<Review>(path, ',', allowQuoting: true));
        Assert.Contains("line 2", ex.Message);
        Assert.Contains("not closed", ex.Message);

        var path2 = Write("s.tsv", "a\t1\nonly-one-field\n");
        var ex2 = Assert.Throws<FormatException>(() => Data.LoadFromTextFile<Review>(path2));
        Assert.Contains("line 2", ex2.Message);
        Assert.Contains("'Label'", ex2.Message);

        var path3 = Write("g.csv", "\"a\"b,1\n");
        var ex3 = Assert.Throws<FormatException>(() => Data.LoadFromTextFile<Review>(path3, ',', allowQuoting: true));
        Assert.Contains("after the closing quote", ex3.Message);
    }

    [Fact]
    public void HeaderOnlyFileGivesEmptyView()
    {
        var path = Write("e.csv", "Text,Label\n");
        var view = Data.LoadFromTextFile<Review>(path, ',', hasHeader: true);
        Assert.Equal(0, view.GetRowCount());
        Assert.Empty(view.GetColumn<string>("Text"));
    }

    public sealed class Chat
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
        public float Score { get; set; }
        public bool Ok { get; set; }
        public long[] Ids { get; set; } = [];
        [ColumnName("meta")] public string Meta { get; set; } = "";
    }

    [Fact]
    public void JsonLinesMatchesPropertiesCaseInsensitively()
    {
        var path = Write("c.jsonl",
            "{\"prompt\": \"Hi\", \"RESPONSE\": \"Hello!\", \"score\": 0.5, \"ok\": true, \"ids\": [1, 2, 3], \"meta\": {\"a\": 1}}\n" +
            "\n" +
            "{\"Prompt\": \"Q\\nA\", \"Response\": \"\", \"Score\": \"2.5\", \"Ok\": \"no\", \"Ids\": [], \"meta\": 7}\n" +
            "{\"prompt\": \"only prompt\", \"score\": null}\n");
        var view = Data.LoadFromJsonLines<Chat>(path);
        Assert.Equal(3, view.GetRowCount());
        var rows = Data.CreateEnumerable<Chat>(view, false).ToArray();
        Assert.Equal("Hi", rows[0].Prompt);
        Assert.Equal("Hello!", rows[0].Response);
        Assert.Equal(0.5f, rows[0].Score);
        Assert.True(rows[0].Ok);
        Assert.Equal([1L, 2L, 3L], rows[0].Ids);
        Assert.Equal("{\"a\": 1}", rows[0].Meta); // non-string values keep their JSON text
        Assert.Equal("Q\nA", rows[1].Prompt);
        Assert.Equal(2.5f, rows[1].Score);
        Assert.False(rows[1].Ok);
        Assert.Equal("7", rows[1].Meta);
        Assert.Equal("", rows[2].Response); // absent -> missing
        Assert.True(float.IsNaN(rows[2].Score)); // null -> missing
        Assert.Empty(rows[2].Ids);
    }

    [Fact]
    public void JsonLinesErrorsNameLineAndColumn()
    {
        var bad = Write("bad.jsonl", "{\"prompt\": \"a\", \"response\": \"b\", \"score\": 1, \"ok\": true, \"ids\": [], \"meta\": \"\"}\n{\"prompt\": \"a\", \"score\": \"high\"}\n");
        var ex = Assert.Throws<FormatException>(() => Data.LoadFromJsonLines<Chat>(bad));
        Assert.Contains("line 2", ex.Message);
        Assert.Contains("'Score'", ex.Message);
        Assert.Contains("high", ex.Message);

        var notJson = Write("nj.jsonl", "{\"prompt\": \"a\"}\n{oops\n");
        var ex2 = Assert.Throws<FormatException>(() => Data.LoadFromJsonLines<Chat>(notJson));
        Assert.Contains("line 2", ex2.Message);
        Assert.Contains(notJson, ex2.Message);

        var array = Write("arr.jsonl", "[1, 2]\n");
        Assert.Contains("line 1", Assert.Throws<FormatException>(() => Data.LoadFromJsonLines<Chat>(array)).Message);

        var vector = Write("vec.jsonl", "{\"prompt\": \"a\", \"ids\": 5}\n");
        Assert.Contains("'Ids'", Assert.Throws<FormatException>(() => Data.LoadFromJsonLines<Chat>(vector)).Message);

        var never = Write("never.jsonl", "{\"prompt\": \"a\", \"response\": \"b\", \"score\": 1, \"ok\": true, \"ids\": []}\n");
        var ex3 = Assert.Throws<InvalidOperationException>(() => Data.LoadFromJsonLines<Chat>(never));
        Assert.Contains("'meta'", ex3.Message);
    }

    [Fact]
    public void MissingFileThrowsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => Data.LoadFromTextFile<Review>(Path.Combine(_dir, "nope.tsv")));
        Assert.Throws<FileNotFoundException>(() => Data.LoadFromJsonLines<Chat>(Path.Combine(_dir, "nope.jsonl")));
    }
}
