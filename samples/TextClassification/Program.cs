// Text classification with a low-rank adapter, ML.NET style: map the label to a key, fine-tune a pretrained model with
// LoRA (or any method of AdapterMethods.Methods), evaluate, save the pipeline, load it back and predict.
//
//   dotnet run --project samples/TextClassification -- <model-folder> [epochs]
//
// <model-folder> is a Hugging Face folder (config.json, model.safetensors, tokenizer files) of a BERT, RoBERTa, LLaMA-family
// or GPT-2 model; LOWRANK_MODEL is used when no folder is given.
using Microsoft.ML.LowRank;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;

string modelFolder = args.Length > 0 ? args[0] : Environment.GetEnvironmentVariable("LOWRANK_MODEL")
    ?? throw new ArgumentException("usage: TextClassification <model-folder> [epochs] (or set LOWRANK_MODEL)");
int epochs = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 10;

var ctx = new LowRankContext(seed: 1);
ctx.Log += (_, e) =>
{
    if (e.Progress is { } p && (p.Step % 10 == 0 || p.Step == p.TotalSteps)) Console.WriteLine(e.RawMessage);
};

Review[] reviews =
[
    new("The food was wonderful and the staff were friendly", "positive"),
    new("Great value, I would come back any time", "positive"),
    new("Absolutely loved the atmosphere", "positive"),
    new("The best pasta I have had in years", "positive"),
    new("Quick service and a very clean room", "positive"),
    new("A lovely evening, thank you", "positive"),
    new("Excellent coffee and fresh pastries", "positive"),
    new("Everything was perfect from start to finish", "positive"),
    new("The waiter was rude and the soup was cold", "negative"),
    new("Terrible experience, never again", "negative"),
    new("Overpriced and bland", "negative"),
    new("We waited an hour for a burnt pizza", "negative"),
    new("The room was dirty and noisy", "negative"),
    new("Disappointing food and slow service", "negative"),
    new("My order was wrong twice", "negative"),
    new("Awful, the worst meal of the trip", "negative"),
];
var data = ctx.Data.LoadFromEnumerable(reviews);
var split = ctx.Data.TrainTestSplit(data, testFraction: 0.25, seed: 1);

var options = new TextClassificationTrainer.Options
{
    ModelFolder = modelFolder,
    Sentence1ColumnName = nameof(Review.Text),
    Method = new LoraOptions { R = 8, LoraAlpha = 16 },   // or AdapterMethods.Create("rslora"), ...
    MaxEpochs = epochs,
    BatchSize = 4,
    LearningRate = 5e-3,
};
var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", nameof(Review.Sentiment))
    .Append(ctx.MulticlassClassification.Trainers.TextClassification(options))
    .Append(ctx.Transforms.Conversion.MapKeyToValue("PredictedSentiment", "PredictedLabel"));

string zipPath = Path.Combine(Path.GetTempPath(), "sentiment-lora.zip");
using (var model = pipeline.Fit(split.TrainSet))
{
    var metrics = ctx.MulticlassClassification.Evaluate(model.Transform(split.TestSet));
    Console.WriteLine($"Micro accuracy {metrics.MicroAccuracy:F3}, macro accuracy {metrics.MacroAccuracy:F3}, log-loss {metrics.LogLoss:F3}");
    Console.WriteLine(metrics.ConfusionMatrix.GetFormattedConfusionTable());
    ctx.Model.Save(model, data.Schema, zipPath);
    Console.WriteLine($"saved {zipPath}");
}

// The zip holds the adapter (PEFT format), the pipeline and the base model's hash; the base model itself is reopened.
using var loaded = (IDisposable)ctx.Model.Load(zipPath, out var schema);
var newReviews = ctx.Data.LoadFromEnumerable(new[] { new Review("Friendly staff and delicious food", ""), new Review("Cold and tasteless", "") });
foreach (var p in ctx.Data.CreateEnumerable<Prediction>(((ITransformer)loaded).Transform(newReviews), reuseRowObject: false))
    Console.WriteLine($"{p.Text} -> {p.PredictedSentiment} ({string.Join(", ", p.Score.Select(s => s.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)))})");

/// <summary>A review and its sentiment.</summary>
public sealed record Review(string Text, string Sentiment);

/// <summary>A prediction.</summary>
public sealed class Prediction
{
    /// <summary>The review.</summary>
    public string Text { get; set; } = "";

    /// <summary>The predicted sentiment.</summary>
    public string PredictedSentiment { get; set; } = "";

    /// <summary>The class probabilities.</summary>
    public float[] Score { get; set; } = [];
}
