using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>
/// Fine-tunes a pretrained encoder or decoder with a low-rank adapter to classify a text, or a pair of texts, into the
/// classes of a key-typed label (ML.NET's <c>TextClassificationTrainer</c>, with the adapter method as an option).
/// Made by <see cref="MulticlassClassificationCatalog.MulticlassClassificationTrainers.TextClassification(TextClassificationTrainer.Options)"/>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Column | Type | Role |
/// | -- | -- | -- |
/// | `Label` | Key&lt;UInt32&gt; (from `MapValueToKey`) | the class, training only |
/// | `Sentence1` | String | the text |
/// | `Sentence2` (optional) | String | the second text of a pair (BERT: segment 1) |
/// | `PredictedLabel` | Key&lt;UInt32&gt; with the label's key values | output: the most likely class |
/// | `Score` | Vector&lt;Single, classes&gt; | output: the class probabilities (softmax) |
///
/// ### Trainer characteristics
/// | | |
/// | -- | -- |
/// | Machine learning task | multiclass classification |
/// | Models | BERT, RoBERTa (pooled [CLS]); LLaMA family, GPT-2 (last real token) |
/// | Trained | the adapter and the classification head (PEFT's modules_to_save) |
/// ]]></format>
/// </remarks>
public sealed class TextClassificationTrainer : LowRankTrainerBase<TextClassificationTransformer>
{
    /// <summary>Options of <see cref="TextClassificationTrainer"/>.</summary>
    public sealed class Options : LowRankTrainerOptions
    {
        /// <summary>The key-typed label column. Default "Label".</summary>
        public string LabelColumnName = DefaultColumnNames.Label;

        /// <summary>The text column. Default "Sentence1".</summary>
        public string Sentence1ColumnName = DefaultColumnNames.Sentence1;

        /// <summary>The second text of a pair, or <see langword="null"/> for single texts. Default <see langword="null"/>.</summary>
        public string? Sentence2ColumnName;

        /// <summary>The output column of class probabilities. Default "Score".</summary>
        public string ScoreColumnName = DefaultColumnNames.Score;

        /// <summary>The output column of the predicted class. Default "PredictedLabel".</summary>
        public string PredictedLabelColumnName = DefaultColumnNames.PredictedLabel;
    }

    private readonly Options _options;

    internal TextClassificationTrainer(LowRankContext context, Options options) : base(context, options)
    {
        _options = options;
    }

    private protected override string Source => nameof(TextClassificationTrainer);

    private protected override ModelTask Task => ModelTask.SequenceClassification;

    private protected override IEnumerable<SchemaShape.Column> OutputColumns(SchemaShape inputSchema)
    {
        var o = _options;
        Columns.CheckKey(inputSchema, "label", o.LabelColumnName);
        Columns.CheckText(inputSchema, "sentence1", o.Sentence1ColumnName);
        if (o.Sentence2ColumnName is { } s2) Columns.CheckText(inputSchema, "sentence2", s2);
        var label = Columns.Find(inputSchema, "label", o.LabelColumnName);
        return
        [
            new SchemaShape.Column(o.ScoreColumnName, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false),
            new SchemaShape.Column(o.PredictedLabelColumnName, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.UInt32, true, Columns.KeyValuesShape(label)),
        ];
    }

    private protected override PreparedData Prepare(LowRankRuntime runtime, IDataView data, object? trainingState)
    {
        var o = _options;
        var labelColumn = Columns.Find(data.Schema, "label", o.LabelColumnName);
        int classes = (int)labelColumn.Type.GetKeyCount();
        var keyValues = KeyValueSet.FromColumn(labelColumn);
        if (trainingState is LabelState train && classes != train.Classes)
            throw Columns.Mismatch("label", o.LabelColumnName, $"Key<UInt32, {train.Classes}> (as in the training data)", labelColumn.Type.ToString()!);
        var s1 = Columns.Text(data.Schema, "sentence1", o.Sentence1ColumnName);
        DataViewSchema.Column? s2 = o.Sentence2ColumnName is { } n2 ? Columns.Text(data.Schema, "sentence2", n2) : null;
        var examples = new List<LabeledExample>();
        var seen = new HashSet<uint>();
        int skipped = 0;
        var routing = RoutingRows.Open(runtime, data.Schema, trainingState is null);
        using (var cursor = data.GetRowCursor(routing.With(s2 is { } c2 ? [labelColumn, s1, c2] : [labelColumn, s1])))
        {
            var label = cursor.GetGetter<uint>(labelColumn);
            var text1 = Columns.TextGetter(cursor, s1);
            var text2 = s2 is { } col2 ? Columns.TextGetter(cursor, col2) : null;
            var addRouting = routing.Reader(cursor);
            uint key = 0;
            while (cursor.MoveNext())
            {
                Context.CheckAlive();
                label(ref key);
                if (key == 0 || key > classes)
                {
                    skipped++;
                    continue;
                }
                seen.Add(key);
                var encoded = runtime.Encode(text1(), text2?.Invoke());
                examples.Add(new LabeledExample(encoded, ClassLabel: key - 1));
                addRouting(encoded.Ids, encoded.Ids.Length);
            }
        }
        if (trainingState is null && examples.Count > 0 && seen.Count < 2)
            throw new InvalidOperationException($"{Source}: label column '{o.LabelColumnName}' has only one class ({(keyValues is null ? $"key {seen.First()}" : $"'{keyValues.Values[seen.First() - 1]}'")}) in the training data; classification needs at least two");
        var state = trainingState ?? new LabelState(classes, keyValues);
        return new PreparedData(new ExampleBatchSource(examples, TargetKind.Class, runtime.PadId, runtime.UsesTokenTypes), state, classes, skipped, routing);
    }

    private protected override TextClassificationTransformer CreateTransformer(LowRankRuntime runtime, PreparedData training, TrainingResult result)
    {
        var state = (LabelState)training.State!;
        var o = _options;
        return new TextClassificationTransformer(Context, runtime, ModelTask.SequenceClassification, state.Classes, result,
            o.Sentence1ColumnName, o.Sentence2ColumnName, o.ScoreColumnName, o.PredictedLabelColumnName, state.KeyValues);
    }

    internal sealed record LabelState(int Classes, KeyValueSet? KeyValues);
}

/// <summary>Classifies texts (or pairs of texts) with a model trained by <see cref="TextClassificationTrainer"/>: adds the
/// class probabilities (<c>Score</c>) and the most likely class (<c>PredictedLabel</c>, a key with the label's key values).</summary>
public sealed class TextClassificationTransformer : LowRankTransformerBase
{
    internal const string Kind = "TextClassification";
    private readonly string _sentence1;
    private readonly string? _sentence2;
    private readonly string _score;
    private readonly string _predicted;
    private readonly KeyValueSet? _keyValues;
    private readonly int _classes;

    internal TextClassificationTransformer(LowRankContext context, LowRankRuntime runtime, ModelTask task, int classes, TrainingResult? result,
        string sentence1, string? sentence2, string score, string predicted, KeyValueSet? keyValues)
        : base(context, runtime, task, classes, result)
    {
        _classes = classes;
        _sentence1 = sentence1;
        _sentence2 = sentence2;
        _score = score;
        _predicted = predicted;
        _keyValues = keyValues;
    }

    /// <summary>The number of classes.</summary>
    public int NumberOfClasses => _classes;

    /// <summary>The label values (as text) behind the predicted keys, in key order, or <see langword="null"/> when the label had none.</summary>
    public IReadOnlyList<string>? LabelValues => _keyValues?.Values;

    internal override string PersistKind => Kind;

    private protected override void SaveTask(JsonObject o)
    {
        o["sentence1"] = _sentence1;
        o["sentence2"] = _sentence2;
        o["score"] = _score;
        o["predicted_label"] = _predicted;
        o["classes"] = _classes;
        if (_keyValues is not null)
            o["label_key_values"] = new JsonObject { ["type"] = SchemaCodec.Format(_keyValues.ItemType), ["values"] = new JsonArray(_keyValues.Values.Select(v => (JsonNode?)v).ToArray()) };
    }

    internal static TextClassificationTransformer Create(LowRankContext context, LowRankRuntime runtime, ModelTask task, int? numLabels, JsonObject o) =>
        new(context, runtime, task, o["classes"]?.GetValue<int>() ?? numLabels ?? 2, null,
            (string)o["sentence1"]!, (string?)o["sentence2"], (string)o["score"]!, (string)o["predicted_label"]!, ReadKeyValues(o["label_key_values"]));

    internal static KeyValueSet? ReadKeyValues(JsonNode? node) => node is JsonObject kv
        ? new KeyValueSet((PrimitiveDataViewType)SchemaCodec.Parse((string)kv["type"]!, "model"), kv["values"]!.AsArray().Select(v => (string)v!).ToArray())
        : null;

    private protected override List<MappedColumn> MakeColumns(DataViewSchema inputSchema)
    {
        var s1 = Columns.Text(inputSchema, "sentence1", _sentence1);
        DataViewSchema.Column? s2 = _sentence2 is { } n2 ? Columns.Text(inputSchema, "sentence2", n2) : null;
        var routing = RowRouting(inputSchema);
        int[] deps = routing.Dependencies(s2 is { } c2 ? [s1.Index, c2.Index] : [s1.Index]);
        var caches = new RowCaches<float[]>(row =>
        {
            var text1 = Columns.TextGetter(row, row.Schema[s1.Index]);
            var text2 = s2 is { } c ? Columns.TextGetter(row, row.Schema[c.Index]) : null;
            var route = routing.For(row);
            return new RowCache<float[]>(Context, row, () =>
            {
                var encoded = Runtime.Encode(text1(), text2?.Invoke());
                return Softmax(Runtime.Logits(encoded, routing: route(encoded.Ids.Length)).Values);
            });
        });
        var scoreType = new VectorDataViewType(NumberDataViewType.Single, _classes);
        var keyType = new KeyDataViewType((ulong)_classes);
        return
        [
            new MappedColumn(new DataViewSchema.DetachedColumn(_score, scoreType), deps, row =>
            {
                var cache = caches.For(row);
                return (ValueGetter<VBuffer<float>>)((ref VBuffer<float> dst) => VBuffer<float>.CopyDense(cache.Get(), ref dst));
            }),
            new MappedColumn(new DataViewSchema.DetachedColumn(_predicted, keyType, _keyValues?.ToAnnotations()), deps, row =>
            {
                var cache = caches.For(row);
                return (ValueGetter<uint>)((ref uint dst) => dst = (uint)ArgMax(cache.Get()) + 1);
            }),
        ];
    }

    /// <summary>Softmax in float64 (stable), returned as float32.</summary>
    internal static float[] Softmax(float[] logits)
    {
        double max = double.NegativeInfinity;
        foreach (var v in logits) max = Math.Max(max, v);
        var e = new double[logits.Length];
        double sum = 0;
        for (int i = 0; i < e.Length; i++)
        {
            e[i] = Math.Exp(logits[i] - max);
            sum += e[i];
        }
        var p = new float[e.Length];
        for (int i = 0; i < p.Length; i++) p[i] = (float)(e[i] / sum);
        return p;
    }

    internal static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }
}

/// <summary>The default column names of the low-rank trainers (ML.NET's <c>DefaultColumnNames</c>, which is internal there).</summary>
public static class DefaultColumnNames
{
    /// <summary>"Label".</summary>
    public const string Label = "Label";

    /// <summary>"Score".</summary>
    public const string Score = "Score";

    /// <summary>"PredictedLabel".</summary>
    public const string PredictedLabel = "PredictedLabel";

    /// <summary>"Sentence1".</summary>
    public const string Sentence1 = "Sentence1";

    /// <summary>"Sentence2".</summary>
    public const string Sentence2 = "Sentence2";

    /// <summary>"Sentence" (named-entity recognition input).</summary>
    public const string Sentence = "Sentence";

    /// <summary>"Prompt" (causal LM input).</summary>
    public const string Prompt = "Prompt";

    /// <summary>"Response" (causal LM target).</summary>
    public const string Response = "Response";

    /// <summary>"Completion" (causal LM output).</summary>
    public const string Completion = "Completion";
}
