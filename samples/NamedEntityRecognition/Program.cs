// Named-entity recognition with BIO tags and a low-rank adapter: one tag per word, learned on each word's first
// sub-word token; evaluated at the entity level (precision, recall, F1 per type), saved and reloaded.
//
//   dotnet run --project samples/NamedEntityRecognition -- <model-folder> [epochs]
using System.Globalization;
using Microsoft.ML.LowRank;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;

string modelFolder = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("LOWRANK_MODEL")
    ?? throw new ArgumentException("usage: NamedEntityRecognition <model-folder> [epochs] (or set LOWRANK_MODEL)");
int epochs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 10;

var ctx = new LowRankContext(seed: 3);

Sentence[] sentences =
[
    new("Alice flew to Paris on Monday", ["B-PER", "O", "O", "B-LOC", "O", "O"]),
    new("Bob Smith lives in New York", ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]),
    new("Carol met Dave in Berlin", ["B-PER", "O", "B-PER", "O", "B-LOC"]),
    new("The office in London opened", ["O", "O", "O", "B-LOC", "O"]),
    new("Erin visited Rome with Frank", ["B-PER", "O", "B-LOC", "O", "B-PER"]),
    new("Grace Hopper worked in Washington", ["B-PER", "I-PER", "O", "O", "B-LOC"]),
    new("Tokyo welcomed Heidi", ["B-LOC", "O", "B-PER"]),
    new("Ivan stayed in Madrid", ["B-PER", "O", "O", "B-LOC"]),
];
var data = ctx.Data.LoadFromEnumerable(sentences);

var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", nameof(Sentence.Tags))
    .Append(ctx.MulticlassClassification.Trainers.NamedEntityRecognition(new NamedEntityRecognitionTrainer.Options
    {
        ModelFolder = modelFolder,
        SentenceColumnName = nameof(Sentence.Text),
        Method = new LoraOptions { R = 8, LoraAlpha = 16 },
        MaxEpochs = epochs,
        BatchSize = 4,
        LearningRate = 5e-3,
    }))
    .Append(ctx.Transforms.Conversion.MapKeyToValue("PredictedTags", "PredictedLabel"));

string zipPath = Path.Combine(Path.GetTempPath(), "ner-lora.zip");
using (var model = pipeline.Fit(data))
{
    var metrics = ctx.MulticlassClassification.EvaluateNamedEntityRecognition(model.Transform(data));
    Console.WriteLine($"entity F1 {metrics.F1Score:F3} (precision {metrics.Precision:F3}, recall {metrics.Recall:F3}), word accuracy {metrics.TokenAccuracy:F3}");
    foreach (var (type, m) in metrics.PerEntityType) Console.WriteLine($"  {type}: F1 {m.F1Score:F3} ({m.Support} entities)");
    ctx.Model.Save(model, data.Schema, zipPath);
}

using var loaded = (IDisposable)ctx.Model.Load(zipPath, out _);
var probe = ctx.Data.LoadFromEnumerable(new[] { new Sentence("Alice met Bob in Rome", ["O", "O", "O", "O", "O"]) });
foreach (var p in ctx.Data.CreateEnumerable<Tagged>(((ITransformer)loaded).Transform(probe), reuseRowObject: false))
    Console.WriteLine(string.Join(" ", p.Text.Split(' ').Zip(p.PredictedTags, (w, t) => $"{w}/{t}")));

/// <summary>A sentence and one BIO tag per word.</summary>
public sealed record Sentence(string Text, string[] Tags);

/// <summary>A tagged sentence.</summary>
public sealed class Tagged
{
    /// <summary>The sentence.</summary>
    public string Text { get; set; } = "";

    /// <summary>The predicted tags, one per word.</summary>
    public string[] PredictedTags { get; set; } = [];
}
