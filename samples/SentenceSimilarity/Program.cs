// Sentence-pair regression with a low-rank adapter: predict how similar two sentences are (0 to 1), evaluate with R²,
// RMSE and Pearson/Spearman correlations, save and reload.
//
//   dotnet run --project samples/SentenceSimilarity -- <model-folder> [epochs]
using System.Globalization;
using Microsoft.ML.LowRank;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;

string modelFolder = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("LOWRANK_MODEL")
    ?? throw new ArgumentException("usage: SentenceSimilarity <model-folder> [epochs] (or set LOWRANK_MODEL)");
int epochs = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 10;

var ctx = new LowRankContext(seed: 2);
ctx.Log += (_, e) => { if (e.Progress is { } p && p.Step == p.TotalSteps) Console.WriteLine(e.RawMessage); };

Pair[] pairs =
[
    new("A man is playing a guitar", "A person plays the guitar", 0.95f),
    new("A man is playing a guitar", "A woman is cutting onions", 0.05f),
    new("The cat sleeps on the sofa", "A cat is sleeping on a couch", 0.9f),
    new("The cat sleeps on the sofa", "The stock market fell today", 0.0f),
    new("Kids are playing football", "Children play soccer in the park", 0.8f),
    new("Kids are playing football", "A chef prepares a meal", 0.1f),
    new("It is raining in the city", "Rain is falling downtown", 0.85f),
    new("It is raining in the city", "The sun is shining on the beach", 0.2f),
    new("She is reading a book", "A woman reads a novel", 0.85f),
    new("She is reading a book", "A dog runs across the field", 0.05f),
    new("The train leaves at noon", "The train departs at twelve", 0.9f),
    new("The train leaves at noon", "He bought a new phone", 0.0f),
];
var data = ctx.Data.LoadFromEnumerable(pairs);
var split = ctx.Data.TrainTestSplit(data, testFraction: 0.25, seed: 2);

// The method is an option: here rsLoRA by name, with PEFT's setting names.
var method = AdapterMethods.WithSettings(AdapterMethods.Create("rslora"), [new("r", "8"), new("lora_alpha", "16")]);
var trainer = ctx.Regression.Trainers.SentenceSimilarity(new SentenceSimilarityTrainer.Options
{
    ModelFolder = modelFolder,
    LabelColumnName = nameof(Pair.Similarity),
    Method = method,
    MaxEpochs = epochs,
    BatchSize = 4,
    LearningRate = 5e-3,
});

string zipPath = Path.Combine(Path.GetTempPath(), "similarity-rslora.zip");
using (var model = trainer.Fit(split.TrainSet))
{
    var metrics = ctx.Regression.Evaluate(model.Transform(split.TestSet), labelColumnName: nameof(Pair.Similarity));
    Console.WriteLine($"R² {metrics.RSquared:F3}, RMSE {metrics.RootMeanSquaredError:F3}, Pearson {metrics.PearsonCorrelation:F3}, Spearman {metrics.SpearmanCorrelation:F3}");
    ctx.Model.Save(model, data.Schema, zipPath);
}

using var loaded = (IDisposable)ctx.Model.Load(zipPath, out _);
var probe = ctx.Data.LoadFromEnumerable(new[] { new Pair("A dog is barking", "A dog barks loudly", 0) });
float score = ((ITransformer)loaded).Transform(probe).GetColumn<float>("Score").First();
Console.WriteLine($"similarity(\"A dog is barking\", \"A dog barks loudly\") = {score:F3}");

/// <summary>Two sentences and how similar they are.</summary>
public sealed record Pair(string Sentence1, string Sentence2, float Similarity);
