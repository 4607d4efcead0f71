using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>
/// Fine-tunes a pretrained model with a low-rank adapter to predict a number from a pair of texts, for example a
/// similarity score (ML.NET's <c>SentenceSimilarityTrainer</c>): a one-output regression head trained with squared
/// error. Made by <see cref="RegressionCatalog.RegressionTrainers.SentenceSimilarity(SentenceSimilarityTrainer.Options)"/>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Column | Type | Role |
/// | -- | -- | -- |
/// | `Label` | Single or Double | the target, training only |
/// | `Sentence1` | String | the first text |
/// | `Sentence2` | String | the second text (set `Sentence2ColumnName` to null for single texts) |
/// | `Score` | Single | output: the predicted value |
/// ]]></format>
/// </remarks>
public sealed class SentenceSimilarityTrainer : LowRankTrainerBase<SentenceSimilarityTransformer>
{
    /// <summary>Options of <see cref="SentenceSimilarityTrainer"/>.</summary>
    public sealed class Options : LowRankTrainerOptions
    {
        /// <summary>The numeric label column (Single or Double). Default "Label".</summary>
        public string LabelColumnName = DefaultColumnNames.Label;

        /// <summary>The first text column. Default "Sentence1".</summary>
        public string Sentence1ColumnName = DefaultColumnNames.Sentence1;

        /// <summary>The second text column, or <see langword="null"/> to regress on single texts. Default "Sentence2".</summary>
        public string? Sentence2ColumnName = DefaultColumnNames.Sentence2;

        /// <summary>The output column. Default "Score".</summary>
        public string ScoreColumnName = DefaultColumnNames.Score;
    }

    private readonly Options _options;

    internal SentenceSimilarityTrainer(LowRankContext context, Options options) : base(context, options)
    {
        _options = options;
    }

    private protected override string Source => nameof(SentenceSimilarityTrainer);

    private protected override ModelTask Task => ModelTask.Regression;

    private protected override IEnumerable<SchemaShape.Column> OutputColumns(SchemaShape inputSchema)
    {
        var o = _options;
        Columns.CheckNumber(inputSchema, "label", o.LabelColumnName);
        Columns.CheckText(inputSchema, "sentence1", o.Sentence1ColumnName);
        if (o.Sentence2ColumnName is { } s2) Columns.CheckText(inputSchema, "sentence2", s2);
        return [new SchemaShape.Column(o.ScoreColumnName, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false)];
    }

    private protected override PreparedData Prepare(LowRankRuntime runtime, IDataView data, object? trainingState)
    {
        var o = _options;
        var labelColumn = Columns.Find(data.Schema, "label", o.LabelColumnName);
        var s1 = Columns.Text(data.Schema, "sentence1", o.Sentence1ColumnName);
        DataViewSchema.Column? s2 = o.Sentence2ColumnName is { } n2 ? Columns.Text(data.Schema, "sentence2", n2) : null;
        var examples = new List<LabeledExample>();
        int skipped = 0;
        var routing = RoutingRows.Open(runtime, data.Schema, trainingState is null);
        using (var cursor = data.GetRowCursor(routing.With(s2 is { } c2 ? [labelColumn, s1, c2] : [labelColumn, s1])))
        {
            var addRouting = routing.Reader(cursor);
            Func<double> label;
            if (labelColumn.Type.RawType == typeof(float))
            {
                var g = cursor.GetGetter<float>(labelColumn);
                float f = 0;
                label = () => { g(ref f); return f; };
            }
            else
            {
                var g = cursor.GetGetter<double>(labelColumn);
                double d = 0;
                label = () => { g(ref d); return d; };
            }
            var text1 = Columns.TextGetter(cursor, s1);
            var text2 = s2 is { } col2 ? Columns.TextGetter(cursor, col2) : null;
            while (cursor.MoveNext())
            {
                Context.CheckAlive();
                double y = label();
                if (!double.IsFinite(y))
                {
                    skipped++;
                    continue;
                }
                var encoded = runtime.Encode(text1(), text2?.Invoke());
                examples.Add(new LabeledExample(encoded, Value: (float)y));
                addRouting(encoded.Ids, encoded.Ids.Length);
            }
        }
        return new PreparedData(new ExampleBatchSource(examples, TargetKind.Value, runtime.PadId, runtime.UsesTokenTypes), null, 1, skipped, routing);
    }

    private protected override SentenceSimilarityTransformer CreateTransformer(LowRankRuntime runtime, PreparedData training, TrainingResult result) =>
        new(Context, runtime, ModelTask.Regression, result, _options.Sentence1ColumnName, _options.Sentence2ColumnName, _options.ScoreColumnName);
}

/// <summary>Scores texts or pairs of texts with a model trained by <see cref="SentenceSimilarityTrainer"/> (adds <c>Score</c>, Single).</summary>
public sealed class SentenceSimilarityTransformer : LowRankTransformerBase
{
    internal const string Kind = "SentenceSimilarity";
    private readonly string _sentence1;
    private readonly string? _sentence2;
    private readonly string _score;

    internal SentenceSimilarityTransformer(LowRankContext context, LowRankRuntime runtime, ModelTask task, TrainingResult? result,
        string sentence1, string? sentence2, string score)
        : base(context, runtime, task, 1, result)
    {
        _sentence1 = sentence1;
        _sentence2 = sentence2;
        _score = score;
    }

    internal override string PersistKind => Kind;

    private protected override void SaveTask(JsonObject o)
    {
        o["sentence1"] = _sentence1;
        o["sentence2"] = _sentence2;
        o["score"] = _score;
    }

    internal static SentenceSimilarityTransformer Create(LowRankContext context, LowRankRuntime runtime, ModelTask task, int? numLabels, JsonObject o) =>
        new(context, runtime, task, null, (string)o["sentence1"]!, (string?)o["sentence2"], (string)o["score"]!);

    private protected override List<MappedColumn> MakeColumns(DataViewSchema inputSchema)
    {
        var s1 = Columns.Text(inputSchema, "sentence1", _sentence1);
        DataViewSchema.Column? s2 = _sentence2 is { } n2 ? Columns.Text(inputSchema, "sentence2", n2) : null;
        var routing = RowRouting(inputSchema);
        int[] deps = routing.Dependencies(s2 is { } c2 ? [s1.Index, c2.Index] : [s1.Index]);
        return
        [
            new MappedColumn(new DataViewSchema.DetachedColumn(_score, NumberDataViewType.Single), deps, row =>
            {
                var text1 = Columns.TextGetter(row, row.Schema[s1.Index]);
                var text2 = s2 is { } c ? Columns.TextGetter(row, row.Schema[c.Index]) : null;
                var route = routing.For(row);
                var cache = new RowCache<float[]>(Context, row, () =>
                {
                    var encoded = Runtime.Encode(text1(), text2?.Invoke());
                    return Runtime.Logits(encoded, routing: route(encoded.Ids.Length)).Values;
                });
                return (ValueGetter<float>)((ref float dst) => dst = cache.Get()[0]);
            }),
        ];
    }
}
