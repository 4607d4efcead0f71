using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tokenizers;
using Microsoft.ML.LowRank.Training;

namespace Microsoft.ML.LowRank.Pipeline;

/// <summary>
/// Fine-tunes a pretrained model with a low-rank adapter to tag every word of a sentence (named-entity recognition with
/// BIO tags, or any token classification; ML.NET's <c>NerTrainer</c>). Words are the space-separated parts of the
/// sentence (or the items of a text vector). Each word is tokenized into one or more sub-word tokens: the word's tag is
/// learned on its first token and predicted from it; later tokens of a word, and special tokens, take no loss (Hugging
/// Face's <c>label_all_tokens=False</c>). Words cut off by <see cref="LowRankTrainerOptions.MaxSequenceLength"/> are
/// predicted as "O" when the tags have an "O", else as the missing key 0.
/// Made by <see cref="MulticlassClassificationCatalog.MulticlassClassificationTrainers.NamedEntityRecognition(NamedEntityRecognitionTrainer.Options)"/>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Column | Type | Role |
/// | -- | -- | -- |
/// | `Label` | vector of Key&lt;UInt32&gt; (`MapValueToKey` on a string[] of tags) | one tag per word, training only |
/// | `Sentence` | String (words separated by spaces) or vector of String | the words |
/// | `PredictedLabel` | vector of Key&lt;UInt32&gt; with the label's key values | output: one tag per word |
/// ]]></format>
/// </remarks>
public sealed class NamedEntityRecognitionTrainer : LowRankTrainerBase<NamedEntityRecognitionTransformer>
{
    /// <summary>Options of <see cref="NamedEntityRecognitionTrainer"/>.</summary>
    public sealed class Options : LowRankTrainerOptions
    {
        /// <summary>The tag column: a vector of keys, one per word. Default "Label".</summary>
        public string LabelColumnName = DefaultColumnNames.Label;

        /// <summary>The words: a text column split on white space, or a vector of text. Default "Sentence".</summary>
        public string SentenceColumnName = DefaultColumnNames.Sentence;

        /// <summary>The output column of predicted tags. Default "PredictedLabel".</summary>
        public string PredictedLabelColumnName = DefaultColumnNames.PredictedLabel;
    }

    private readonly Options _options;

    internal NamedEntityRecognitionTrainer(LowRankContext context, Options options) : base(context, options)
    {
        _options = options;
    }

    private protected override string Source => nameof(NamedEntityRecognitionTrainer);

    private protected override ModelTask Task => ModelTask.TokenClassification;

    private protected override void CheckArchitecture(BaseModelInfo info)
    {
        base.CheckArchitecture(info);
        if (info.Config.Family == ModelFamily.Gpt2)
            throw new NotSupportedException($"{info.Folder}: GPT-2 has no token-classification head here; use a BERT, RoBERTa or LLaMA-family model");
    }

    private protected override IEnumerable<SchemaShape.Column> OutputColumns(SchemaShape inputSchema)
    {
        var o = _options;
        Columns.CheckKeyVector(inputSchema, "label", o.LabelColumnName);
        Columns.CheckWords(inputSchema, "sentence", o.SentenceColumnName);
        var label = Columns.Find(inputSchema, "label", o.LabelColumnName);
        return [new SchemaShape.Column(o.PredictedLabelColumnName, SchemaShape.Column.VectorKind.VariableVector, NumberDataViewType.UInt32, true, Columns.KeyValuesShape(label))];
    }

    private protected override PreparedData Prepare(LowRankRuntime runtime, IDataView data, object? trainingState)
    {
        var o = _options;
        var labelColumn = Columns.Find(data.Schema, "label", o.LabelColumnName);
        int classes = (int)labelColumn.Type.GetKeyCount();
        if (trainingState is TextClassificationTrainer.LabelState train && classes != train.Classes)
            throw Columns.Mismatch("label", o.LabelColumnName, $"a vector of Key<UInt32, {train.Classes}> (as in the training data)", labelColumn.Type.ToString()!);
        var keyValues = KeyValueSet.FromColumn(labelColumn);
        var sentence = Columns.Words(data.Schema, "sentence", o.SentenceColumnName);
        var examples = new List<LabeledExample>();
        var seen = new HashSet<uint>();
        int skipped = 0;
        var routing = RoutingRows.Open(runtime, data.Schema, trainingState is null);
        using (var cursor = data.GetRowCursor(routing.With(labelColumn, sentence)))
        {
            var addRouting = routing.Reader(cursor);
            var labels = cursor.GetGetter<VBuffer<uint>>(labelColumn);
            var words = Columns.WordsGetter(cursor, sentence);
            VBuffer<uint> buffer = default;
            long row = -1;
            while (cursor.MoveNext())
            {
                row++;
                Context.CheckAlive();
                labels(ref buffer);
                var w = words();
                var tags = new uint[buffer.Length];
                buffer.CopyTo(tags);
                if (tags.Length != w.Length)
                    throw new InvalidOperationException($"{Source}: row {row} has {w.Length} word(s) in column '{o.SentenceColumnName}' but {tags.Length} tag(s) in column '{o.LabelColumnName}'; give one tag per word");
                if (w.Length == 0 || tags.All(t => t == 0 || t > classes))
                {
                    skipped++;
                    continue;
                }
                var aligned = WordAlignment.Encode(runtime, w);
                var tokenLabels = WordAlignment.TokenLabels(aligned, tags, classes);
                foreach (var l in tokenLabels) if (l >= 0) seen.Add((uint)l + 1);
                examples.Add(new LabeledExample(aligned.Text, TokenLabels: tokenLabels));
                addRouting(aligned.Text.Ids, aligned.Text.Ids.Length);
            }
        }
        if (trainingState is null && examples.Count > 0 && seen.Count < 2)
            throw new InvalidOperationException($"{Source}: label column '{o.LabelColumnName}' has only one tag ({(keyValues is null ? $"key {seen.First()}" : $"'{keyValues.Values[seen.First() - 1]}'")}) in the training data; token classification needs at least two");
        var state = trainingState ?? new TextClassificationTrainer.LabelState(classes, keyValues);
        return new PreparedData(new ExampleBatchSource(examples, TargetKind.Tokens, runtime.PadId, runtime.UsesTokenTypes), state, classes, skipped, routing);
    }

    private protected override NamedEntityRecognitionTransformer CreateTransformer(LowRankRuntime runtime, PreparedData training, TrainingResult result)
    {
        var state = (TextClassificationTrainer.LabelState)training.State!;
        return new NamedEntityRecognitionTransformer(Context, runtime, ModelTask.TokenClassification, state.Classes, result,
            _options.SentenceColumnName, _options.PredictedLabelColumnName, state.KeyValues);
    }
}

/// <summary>Tags the words of sentences with a model trained by <see cref="NamedEntityRecognitionTrainer"/>: adds
/// <c>PredictedLabel</c>, a vector of keys (one per word) with the tags as key values.</summary>
public sealed class NamedEntityRecognitionTransformer : LowRankTransformerBase
{
    internal const string Kind = "NamedEntityRecognition";
    private readonly string _sentence;
    private readonly string _predicted;
    private readonly KeyValueSet? _keyValues;
    private readonly int _classes;

    internal NamedEntityRecognitionTransformer(LowRankContext context, LowRankRuntime runtime, ModelTask task, int classes, TrainingResult? result,
        string sentence, string predicted, KeyValueSet? keyValues)
        : base(context, runtime, task, classes, result)
    {
        _classes = classes;
        _sentence = sentence;
        _predicted = predicted;
        _keyValues = keyValues;
    }

    /// <summary>The tags (as text) behind the predicted keys, in key order, or <see langword="null"/>.</summary>
    public IReadOnlyList<string>? LabelValues => _keyValues?.Values;

    internal override string PersistKind => Kind;

    private protected override void SaveTask(JsonObject o)
    {
        o["sentence"] = _sentence;
        o["predicted_label"] = _predicted;
        o["classes"] = _classes;
        if (_keyValues is not null)
            o["label_key_values"] = new JsonObject { ["type"] = SchemaCodec.Format(_keyValues.ItemType), ["values"] = new JsonArray(_keyValues.Values.Select(v => (JsonNode?)v).ToArray()) };
    }

    internal static NamedEntityRecognitionTransformer Create(LowRankContext context, LowRankRuntime runtime, ModelTask task, int? numLabels, JsonObject o) =>
        new(context, runtime, task, o["classes"]?.GetValue<int>() ?? numLabels ?? 2, null, (string)o["sentence"]!, (string)o["predicted_label"]!,
            TextClassificationTransformer.ReadKeyValues(o["label_key_values"]));

    /// <summary>Predicts the tag keys (1-based) of each word.</summary>
    internal uint[] Predict(string[] words, Func<int, RowRouting?>? routing = null)
    {
        if (words.Length == 0) return [];
        var aligned = WordAlignment.Encode(Runtime, words);
        var (values, shape) = Runtime.Logits(aligned.Text, routing: routing?.Invoke(aligned.Text.Ids.Length));
        int k = (int)shape[^1];
        uint fallback = _keyValues?.KeyOf("O") ?? 0;
        var keys = new uint[words.Length];
        for (int w = 0; w < words.Length; w++)
        {
            int t = aligned.FirstToken[w];
            keys[w] = t < 0 ? fallback : (uint)TextClassificationTransformer.ArgMax(values.AsSpan(t * k, k)) + 1;
        }
        return keys;
    }

    private protected override List<MappedColumn> MakeColumns(DataViewSchema inputSchema)
    {
        var sentence = Columns.Words(inputSchema, "sentence", _sentence);
        var type = new VectorDataViewType(new KeyDataViewType((ulong)_classes));
        var routing = RowRouting(inputSchema);
        return
        [
            new MappedColumn(new DataViewSchema.DetachedColumn(_predicted, type, _keyValues?.ToAnnotations()), routing.Dependencies(sentence.Index), row =>
            {
                var words = Columns.WordsGetter(row, row.Schema[sentence.Index]);
                var route = routing.For(row);
                var cache = new RowCache<uint[]>(Context, row, () => Predict(words(), route));
                return (ValueGetter<VBuffer<uint>>)((ref VBuffer<uint> dst) => VBuffer<uint>.CopyDense(cache.Get(), ref dst));
            }),
        ];
    }
}

/// <summary>Tokenizes a list of words as one text and maps tokens back to words (Hugging Face's <c>word_ids()</c>).</summary>
internal static class WordAlignment
{
    /// <summary>The encoding of the words joined by single spaces; <c>FirstToken[w]</c> is the index of word w's first
    /// token (-1 when the word has no token, e.g. it was truncated away); <c>WordOfToken[t]</c> is the word of token t
    /// (null for special tokens).</summary>
    internal sealed record Aligned(EncodedText Text, int[] FirstToken, int?[] WordOfToken);

    public static Aligned Encode(LowRankRuntime runtime, string[] words) => Encode(runtime.Encode(string.Join(' ', words)), words);

    public static Aligned Encode(EncodedText text, string[] words)
    {
        var spans = new (int Start, int End)[words.Length];
        int pos = 0;
        for (int w = 0; w < words.Length; w++)
        {
            spans[w] = (pos, pos + words[w].Length);
            pos += words[w].Length + 1;
        }
        var wordOf = WordIds(text.Encoding, spans);
        var first = new int[words.Length];
        Array.Fill(first, -1);
        for (int t = 0; t < wordOf.Length; t++)
            if (wordOf[t] is int w && first[w] < 0) first[w] = t;
        return new Aligned(text, first, wordOf);
    }

    /// <summary>The training labels of the tokens: the class (key − 1) of its word on a word's first token, -100 on the
    /// other tokens of the word, on special tokens, and for words with a missing key (0 or beyond <paramref name="classes"/>).</summary>
    public static long[] TokenLabels(Aligned aligned, uint[] wordKeys, int classes)
    {
        var labels = new long[aligned.Text.Ids.Length];
        Array.Fill(labels, TokenBatcher.IgnoreIndex);
        for (int w = 0; w < wordKeys.Length; w++)
        {
            int t = aligned.FirstToken[w];
            uint key = wordKeys[w];
            if (t >= 0 && key >= 1 && key <= classes) labels[t] = key - 1;
        }
        return labels;
    }

    /// <summary>For each token of <paramref name="encoding"/>, the index of the word span its characters overlap (the first
    /// such word), or null for special and padding tokens.</summary>
    public static int?[] WordIds(Encoding? encoding, IReadOnlyList<(int Start, int End)> spans)
    {
        if (encoding is null) return [null];
        var result = new int?[encoding.Length];
        int w = 0;
        for (int t = 0; t < encoding.Length; t++)
        {
            if (encoding.SequenceIds[t] is null || encoding.SpecialTokensMask[t] == 1) continue;
            var (s, e) = encoding.Offsets[t];
            if (e <= s) continue;
            // Offsets increase through the text: move forward to the first word that ends after the token starts.
            while (w < spans.Count && spans[w].End <= s) w++;
            int k = w;
            while (k < spans.Count && !(spans[k].Start < e && s < spans[k].End) && spans[k].Start < e) k++;
            if (k < spans.Count && spans[k].Start < e && s < spans[k].End) result[t] = k;
        }
        return result;
    }
}
