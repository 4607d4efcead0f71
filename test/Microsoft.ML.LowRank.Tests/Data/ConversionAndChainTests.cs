using Microsoft.ML.LowRank.Data;

namespace Microsoft.ML.LowRank.Tests.Data;

/// <summary>MapValueToKey / MapKeyToValue semantics, estimator contracts, chains and laziness.</summary>
public class ConversionAndChainTests
{
    private static readonly DataOperationsCatalog Data = new(seed: 1);
    private static readonly ConversionsCatalog Conversion = new();

    public sealed class Labeled
    {
        public string Label { get; set; } = "";
        public float Score { get; set; }
        public bool Flag { get; set; }
        public string[] Tokens { get; set; } = [];
    }

    private static IDataView Train() => Data.LoadFromEnumerable(new[]
    {
        new Labeled { Label = "pear", Score = 3, Flag = true, Tokens = ["b", "a"] },
        new Labeled { Label = "apple", Score = 1, Flag = false, Tokens = ["c"] },
        new Labeled { Label = "pear", Score = float.NaN, Flag = true, Tokens = [] },
        new Labeled { Label = "", Score = 2, Flag = true, Tokens = ["a", ""] },
        new Labeled { Label = "fig", Score = 1, Flag = false, Tokens = [] },
    });

    private static string[] KeyValues(DataViewSchema.Column column)
    {
        VBuffer<ReadOnlyMemory<char>> kv = default;
        column.GetKeyValues(ref kv);
        return [.. kv.DenseValues().Select(v => v.ToString())];
    }

    [Fact]
    public void ByOccurrenceKeysAreOneBasedInFirstSeenOrder()
    {
        var model = Conversion.MapValueToKey("Key", "Label").Fit(Train());
        var output = model.Transform(Train());
        var col = output.Schema["Key"];
        Assert.Equal(new KeyDataViewType(3), col.Type);
        Assert.Equal(["pear", "apple", "fig"], KeyValues(col));
        Assert.Equal([1u, 2u, 1u, 0u, 3u], output.GetColumn<uint>("Key")); // empty text is missing -> 0
        Assert.Equal(["pear", "apple", "fig"], model.GetKeyValuesAsText("Key"));
    }

    [Fact]
    public void ByValueKeysFollowSortedValues()
    {
        var model = Conversion.MapValueToKey("Key", "Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(Train());
        var output = model.Transform(Train());
        Assert.Equal(["apple", "fig", "pear"], KeyValues(output.Schema["Key"]));
        Assert.Equal([3u, 1u, 3u, 0u, 2u], output.GetColumn<uint>("Key"));

        var numeric = Conversion.MapValueToKey("ScoreKey", "Score", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(Train());
        var scored = numeric.Transform(Train());
        VBuffer<float> values = default;
        scored.Schema["ScoreKey"].GetKeyValues(ref values);
        Assert.Equal([1f, 2f, 3f], values.DenseValues()); // NaN is missing, not a key
        Assert.Equal([3u, 1u, 0u, 2u, 1u], scored.GetColumn<uint>("ScoreKey"));

        var flags = Conversion.MapValueToKey("FlagKey", "Flag", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(Train()).Transform(Train());
        Assert.Equal([2u, 1u, 2u, 2u, 1u], flags.GetColumn<uint>("FlagKey"));
    }

    [Fact]
    public void UnseenValuesMapToMissingKey()
    {
        var model = Conversion.MapValueToKey("Key", "Label").Fit(Train());
        var test = Data.LoadFromEnumerable(new[] { new Labeled { Label = "kiwi" }, new Labeled { Label = "fig" }, new Labeled { Label = "Pear" } });
        Assert.Equal([0u, 3u, 0u], model.Transform(test).GetColumn<uint>("Key"));
    }

    [Fact]
    public void MapKeyToValueInvertsMapValueToKey()
    {
        var pipeline = Conversion.MapValueToKey("Key", "Label")
            .Append(Conversion.MapKeyToValue("Back", "Key"));
        var model = pipeline.Fit(Train());
        var output = model.Transform(Train());
        Assert.Equal(TextDataViewType.Instance, output.Schema["Back"].Type);
        Assert.Equal(Train().GetColumn<string>("Label"), output.GetColumn<string>("Back")); // "" -> 0 -> ""

        var numeric = Conversion.MapValueToKey("K", "Score").Append(Conversion.MapKeyToValue("S", "K")).Fit(Train()).Transform(Train());
        var scores = numeric.GetColumn<float>("S").ToArray();
        Assert.Equal(3f, scores[0]);
        Assert.True(float.IsNaN(scores[2])); // missing key -> NaN
        Assert.Equal([3f, 1f, 2f, 1f], scores.Where(s => !float.IsNaN(s)));
    }

    [Fact]
    public void VectorInputsMapItemByItem()
    {
        var model = Conversion.MapValueToKey("TokenKeys", "Tokens").Fit(Train());
        var output = model.Transform(Train());
        Assert.Equal(new VectorDataViewType(new KeyDataViewType(3)), output.Schema["TokenKeys"].Type);
        Assert.Equal(["b", "a", "c"], KeyValues(output.Schema["TokenKeys"]));
        Assert.Equal(new uint[][] { [1u, 2u], [3u], [], [2u, 0u], [] }, output.GetColumn<uint[]>("TokenKeys"));
        var back = Conversion.MapKeyToValue("Tokens2", "TokenKeys").Fit(output).Transform(output);
        Assert.Equal(new VectorDataViewType(TextDataViewType.Instance), back.Schema["Tokens2"].Type);
        Assert.Equal(Train().GetColumn<string[]>("Tokens"), back.GetColumn<string[]>("Tokens2"));
    }

    [Fact]
    public void KeyValuesAsTextAndInPlaceReplacement()
    {
        var model = Conversion.MapValueToKey("Score", addKeyValueAnnotationsAsText: true).Fit(Train());
        var output = model.Transform(Train());
        // The key column hides the input column of the same name.
        Assert.True(output.Schema[1].IsHidden);
        Assert.Equal(new KeyDataViewType(3), output.Schema["Score"].Type);
        Assert.Equal(["3", "1", "2"], KeyValues(output.Schema["Score"]));
        var back = Conversion.MapKeyToValue("Score").Fit(output).Transform(output);
        Assert.Equal(["3", "1", "", "2", "1"], back.GetColumn<string>("Score"));
    }

    [Fact]
    public void MaximumNumberOfKeysAndKeyData()
    {
        var capped = Conversion.MapValueToKey("Key", "Label", maximumNumberOfKeys: 2).Fit(Train()).Transform(Train());
        Assert.Equal(["pear", "apple"], KeyValues(capped.Schema["Key"]));
        Assert.Equal([1u, 2u, 1u, 0u, 0u], capped.GetColumn<uint>("Key"));

        var keyData = Data.LoadFromEnumerable(new[] { new OneColumn { V = "fig" }, new OneColumn { V = "pear" } });
        var fromKeyData = Conversion.MapValueToKey("Key", "Label", keyData: keyData).Fit(Train()).Transform(Train());
        Assert.Equal(["fig", "pear"], KeyValues(fromKeyData.Schema["Key"]));
        Assert.Equal([2u, 0u, 2u, 0u, 1u], fromKeyData.GetColumn<uint>("Key"));
    }

    public sealed class OneColumn
    {
        public string V { get; set; } = "";
    }

    [Fact]
    public void MissingInputColumnThrowsArgumentOutOfRangeNamingIt()
    {
        var estimator = Conversion.MapValueToKey("Key", "Sentiment");
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.Fit(Train()));
        Assert.Contains("Could not find input column 'Sentiment'", ex.Message);
        ex = Assert.Throws<ArgumentOutOfRangeException>(() => estimator.GetOutputSchema(SchemaShape.Create(Train().Schema)));
        Assert.Contains("'Sentiment'", ex.Message);

        var model = Conversion.MapValueToKey("Key", "Label").Fit(Train());
        var other = Data.LoadFromEnumerable(new[] { new OneColumn() });
        Assert.Contains("'Label'", Assert.Throws<ArgumentOutOfRangeException>(() => model.Transform(other)).Message);
        Assert.Contains("'Label'", Assert.Throws<ArgumentOutOfRangeException>(() => model.GetOutputSchema(other.Schema)).Message);

        Assert.Contains("'Nope'", Assert.Throws<ArgumentOutOfRangeException>(() => Conversion.MapKeyToValue("X", "Nope").Fit(Train())).Message);
    }

    [Fact]
    public void EmptyOrAllMissingDataThrowsNamingTheColumn()
    {
        var empty = Data.LoadFromEnumerable(Array.Empty<Labeled>());
        var ex = Assert.Throws<InvalidOperationException>(() => Conversion.MapValueToKey("Key", "Label").Fit(empty));
        Assert.Contains("'Label'", ex.Message);
        Assert.Contains("no rows", ex.Message);

        var allMissing = Data.LoadFromEnumerable(new[] { new Labeled { Label = "" }, new Labeled { Label = "" } });
        var ex2 = Assert.Throws<InvalidOperationException>(() => Conversion.MapValueToKey("Key", "Label").Fit(allMissing));
        Assert.Contains("'Label'", ex2.Message);
        Assert.Contains("missing", ex2.Message);
    }

    [Fact]
    public void WrongTypesAreSchemaMismatches()
    {
        // Trained on text, applied to numbers.
        var model = Conversion.MapValueToKey("Key", "Label").Fit(Train());
        var numbers = Data.LoadFromEnumerable(new[] { new NumberLabel { Label = 1 } });
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.Transform(numbers));
        Assert.Contains("Schema mismatch for input column 'Label'", ex.Message);

        // Key to value needs a key column with key values.
        var ex2 = Assert.Throws<ArgumentOutOfRangeException>(() => Conversion.MapKeyToValue("X", "Score").Fit(Train()));
        Assert.Contains("Schema mismatch for input column 'Score'", ex2.Message);
        var keyNoValues = Data.LoadFromEnumerable(new[] { new RawKey { K = 1 } });
        Assert.Contains("without key values", Assert.Throws<ArgumentOutOfRangeException>(() => Conversion.MapKeyToValue("X", "K").Fit(keyNoValues)).Message);

        // A key column cannot be mapped to keys again.
        var keyed = model.Transform(Train());
        Assert.Throws<ArgumentOutOfRangeException>(() => Conversion.MapValueToKey("Again", "Key").GetOutputSchema(SchemaShape.Create(keyed.Schema)));
    }

    public sealed class NumberLabel
    {
        public float Label { get; set; }
    }

    public sealed class RawKey
    {
        [KeyType(3)] public uint K { get; set; }
    }

    [Fact]
    public void EstimatorShapesMatchFittedSchemas()
    {
        var input = Train();
        var pipeline = Conversion.MapValueToKey("Key", "Label")
            .Append(Conversion.MapValueToKey("TokenKeys", "Tokens", addKeyValueAnnotationsAsText: true))
            .Append(Conversion.MapKeyToValue("Back", "Key"));
        var shape = pipeline.GetOutputSchema(SchemaShape.Create(input.Schema));
        var key = shape["Key"];
        Assert.True(key.IsKey);
        Assert.Equal(SchemaShape.Column.VectorKind.Scalar, key.Kind);
        Assert.Equal(NumberDataViewType.UInt32, key.ItemType);
        Assert.True(key.Annotations.TryFindColumn(AnnotationUtils.Kinds.KeyValues, out var kv));
        Assert.Equal(TextDataViewType.Instance, kv.ItemType);
        Assert.Equal(SchemaShape.Column.VectorKind.VariableVector, shape["TokenKeys"].Kind);
        Assert.Equal(TextDataViewType.Instance, shape["Back"].ItemType);
        Assert.False(shape["Back"].IsKey);

        using var model = pipeline.Fit(input);
        var fitted = SchemaShape.Create(model.GetOutputSchema(input.Schema));
        foreach (var c in shape)
        {
            Assert.True(fitted.TryFindColumn(c.Name, out var f), c.Name);
            Assert.True(c.IsCompatibleWith(f), c.Name);
        }
        Assert.Equal(model.GetOutputSchema(input.Schema).Select(c => c.Name), model.Transform(input).Schema.Select(c => c.Name));
    }

    /// <summary>An estimator that records the order of calls, for chain tests.</summary>
    private sealed class Recorder(string name, List<string> log) : IEstimator<Recorder.Transformer>
    {
        public Transformer Fit(IDataView input)
        {
            log.Add($"fit {name} cols={input.Schema.Count}");
            return new Transformer(name, log);
        }

        public SchemaShape GetOutputSchema(SchemaShape inputSchema)
        {
            log.Add($"shape {name}");
            return inputSchema;
        }

        public sealed class Transformer(string name, List<string> log) : ITransformer, IDisposable
        {
            public bool IsRowToRowMapper => true;

            public bool Disposed { get; private set; }

            public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => inputSchema;

            public IDataView Transform(IDataView input)
            {
                log.Add($"transform {name}");
                return input;
            }

            public void Dispose() => Disposed = true;
        }
    }

    [Fact]
    public void ChainsFitInOrderAfterCheckingTheWholeSchema()
    {
        var log = new List<string>();
        var chain = new Recorder("a", log)
            .Append(Conversion.MapValueToKey("Key", "Label"))
            .Append(new Recorder("b", log));
        Assert.Equal(3, chain.Estimators.Count);
        Assert.IsType<Recorder>(chain.LastEstimator);
        using var model = chain.Fit(Train());
        Assert.Equal(["shape a", "shape b", "fit a cols=4", "transform a", "fit b cols=5"], log);
        Assert.Equal(3, model.Count());
        Assert.IsType<Recorder.Transformer>(model.LastTransformer);
        Assert.True(model.IsRowToRowMapper);

        log.Clear();
        var output = model.Transform(Train());
        Assert.Equal(["transform a", "transform b"], log);
        Assert.Equal([1u, 2u, 1u, 0u, 3u], output.GetColumn<uint>("Key"));

        // A schema error anywhere in the chain stops Fit before any estimator trains.
        log.Clear();
        var broken = new Recorder("a", log).Append(Conversion.MapValueToKey("Key", "Nope"));
        Assert.Throws<ArgumentOutOfRangeException>(() => broken.Fit(Train()));
        Assert.DoesNotContain(log, l => l.StartsWith("fit", StringComparison.Ordinal));
    }

    [Fact]
    public void TransformerChainAppendAndDispose()
    {
        var log = new List<string>();
        var t1 = new Recorder("a", log).Fit(Train());
        var t2 = new Recorder("b", log).Fit(Train());
        var chain = t1.Append(t2);
        Assert.Same(t2, chain.LastTransformer);
        var longer = chain.Append(Conversion.MapValueToKey("Key", "Label").Fit(Train()));
        Assert.IsType<ValueToKeyMappingTransformer>(longer.LastTransformer);
        Assert.Equal([1u, 2u, 1u, 0u, 3u], longer.Transform(Train()).GetColumn<uint>("Key"));
        longer.Dispose();
        Assert.True(t1.Disposed);
        Assert.True(t2.Disposed);

        Assert.Throws<InvalidOperationException>(() => new TransformerChain<ITransformer>().LastTransformer);
        var empty = new EstimatorChain<ITransformer>().Fit(Train());
        Assert.Empty(empty);
        Assert.Equal(Train().Schema.Count, empty.Transform(Train()).Schema.Count);
    }

    [Fact]
    public void TransformIsLazyAndComputesOnlyActiveColumns()
    {
        int reads = 0;
        var rows = new[] { new Counted(() => reads++) { Label = "a" }, new Counted(() => reads++) { Label = "b" } };
        var data = Data.LoadFromEnumerable(rows);
        var model = Conversion.MapValueToKey("Key", "Label").Fit(data);
        reads = 0;
        var output = model.Transform(data);
        Assert.Equal(0, reads); // nothing read until a cursor moves

        // A cursor without the key column never reads the label.
        using (var c = output.GetRowCursor([output.Schema["Other"]]))
        {
            var g = c.GetGetter<float>(output.Schema["Other"]);
            float v = 0;
            while (c.MoveNext())
                g(ref v);
        }
        Assert.Equal(0, reads);
        Assert.Equal([1u, 2u], output.GetColumn<uint>("Key"));
        Assert.Equal(2, reads);
        Assert.True(output.CanShuffle);
        Assert.Equal(2, output.GetRowCount());
    }

    public sealed class Counted(Action onRead)
    {
        private string _label = "";

        public Counted() : this(() => { })
        {
        }

        public string Label
        {
            get
            {
                onRead();
                return _label;
            }
            set => _label = value;
        }

        public float Other { get; set; }
    }

    [Fact]
    public void ShuffledCursorOverTransformedViewKeepsRowsAligned()
    {
        var items = Enumerable.Range(0, 30).Select(i => new Labeled { Label = $"v{i % 4}", Score = i }).ToArray();
        var data = Data.LoadFromEnumerable(items);
        var output = Conversion.MapValueToKey("Key", "Label").Fit(data).Transform(data);
        var score = output.Schema["Score"];
        var key = output.Schema["Key"];
        using var cursor = output.GetRowCursor([score, key], new Random(4));
        var gs = cursor.GetGetter<float>(score);
        var gk = cursor.GetGetter<uint>(key);
        var order = new List<int>();
        float s = 0;
        uint k = 0;
        while (cursor.MoveNext())
        {
            gs(ref s);
            gk(ref k);
            Assert.Equal((uint)((int)s % 4) + 1, k);
            order.Add((int)s);
        }
        Assert.NotEqual(Enumerable.Range(0, 30), order);
        Assert.Equal(Enumerable.Range(0, 30), order.Order());
    }

    [Fact]
    public void RowSelectionsOfTransformedViewsKeepRandomAccess()
    {
        var items = Enumerable.Range(0, 40).Select(i => new Labeled { Label = $"v{i % 4}", Score = i }).ToArray();
        var data = Data.LoadFromEnumerable(items);
        var output = Conversion.MapValueToKey("Key", "Label").Fit(data).Transform(data);

        var split = Data.TrainTestSplit(output, 0.25, seed: 2);
        Assert.True(split.TrainSet.CanShuffle);
        Assert.Equal(30, split.TrainSet.GetRowCount());
        var plain = Data.TrainTestSplit(data, 0.25, seed: 2);
        Assert.Equal(plain.TestSet.GetColumn<float>("Score"), split.TestSet.GetColumn<float>("Score"));
        foreach (var (score, key) in split.TestSet.GetColumn<float>("Score").Zip(split.TestSet.GetColumn<uint>("Key")))
            Assert.Equal((uint)((int)score % 4) + 1, key);

        var shuffled = Data.ShuffleRows(output, seed: 3);
        Assert.Equal(Data.ShuffleRows(data, seed: 3).GetColumn<float>("Score"), shuffled.GetColumn<float>("Score"));
        Assert.Equal(shuffled.GetColumn<float>("Score").Select(s => (uint)((int)s % 4) + 1), shuffled.GetColumn<uint>("Key"));
        Assert.Equal([1u, 2u, 3u], Data.TakeRows(output, 3).GetColumn<uint>("Key"));
        Assert.Equal([3u, 4u], Data.SkipRows(output, 38).GetColumn<uint>("Key"));
    }

    public sealed class SentimentRow
    {
        [LoadColumn(0)] public string Text { get; set; } = "";
        [LoadColumn(1)] public bool Label { get; set; }
    }

    public sealed class SentimentPrediction
    {
        public string Text { get; set; } = "";
        public bool Label { get; set; }
        public uint LabelKey { get; set; }
        public bool LabelBack { get; set; }
    }

    [Fact]
    public void UciSentimentShapeEndToEnd()
    {
        var path = Path.Combine(Path.GetTempPath(), $"lowrank-sentiment-{Guid.NewGuid():N}.tsv");
        try
        {
            var lines = Enumerable.Range(0, 40).Select(i => $"Review number {i}, {(i % 3 == 0 ? "terrible" : "wonderful")}\t{(i % 3 == 0 ? 0 : 1)}");
            File.WriteAllLines(path, ["Text\tLabel", .. lines]);
            var data = Data.LoadFromTextFile<SentimentRow>(path, hasHeader: true);
            var split = Data.TrainTestSplit(data, testFraction: 0.25, seed: 0);
            Assert.Equal(10, split.TestSet.GetRowCount());

            var pipeline = Conversion.MapValueToKey("LabelKey", "Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
                .Append(Conversion.MapKeyToValue("LabelBack", "LabelKey"));
            using var model = pipeline.Fit(Data.Cache(split.TrainSet));
            var scored = model.Transform(split.TestSet);
            VBuffer<bool> kv = default;
            scored.Schema["LabelKey"].GetKeyValues(ref kv);
            Assert.Equal([false, true], kv.DenseValues());

            var predictions = Data.CreateEnumerable<SentimentPrediction>(scored, reuseRowObject: false).ToList();
            Assert.Equal(10, predictions.Count);
            foreach (var p in predictions)
            {
                Assert.Equal(p.Label ? 2u : 1u, p.LabelKey);
                Assert.Equal(p.Label, p.LabelBack);
                Assert.Equal(!p.Text.Contains("terrible", StringComparison.Ordinal), p.Label);
            }

            // A string label works the same way.
            var asText = Data.LoadFromEnumerable(predictions.Select(p => new Labeled { Label = p.Label ? "positive" : "negative" }));
            var textModel = Conversion.MapValueToKey("Key", "Label").Fit(asText);
            Assert.Equal(2ul, textModel.Transform(asText).Schema["Key"].Type.GetKeyCount());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
