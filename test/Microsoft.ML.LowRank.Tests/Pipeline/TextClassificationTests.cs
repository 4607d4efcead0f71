using System.Diagnostics;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Tests.Helpers;
using Xunit.Abstractions;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary>Text classification end to end on the tiny BERT and LLaMA fixtures, through the ML.NET-style surface.</summary>
[Collection(SerialCollection.Name)]
public class TextClassificationTests(ITestOutputHelper output)
{
    public sealed class Prediction
    {
        public string Topic { get; set; } = "";
        public string PredictedTopic { get; set; } = "";
        public float[] Score { get; set; } = [];
    }

    [Fact]
    public void BertLearnsTopicsWithLoraAndPredictsThroughKeyMapping()
    {
        var ctx = new LowRankContext(seed: 1);
        var logs = new List<LoggingEventArgs>();
        ctx.Log += (_, e) => logs.Add(e);
        var train = ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(96, seed: 1));
        var test = ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(30, seed: 2));
        var options = new TextClassificationTrainer.Options
        {
            ModelFolder = PipelineFixtures.Model("bert_cls"),
            LabelColumnName = "Label",
            Sentence1ColumnName = "Text",
            Method = new LoraOptions { R = 8, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear },
            BatchSize = 16,
            MaxEpochs = 8,
            LearningRate = 1e-2,
            WarmupRatio = 0,
        };
        var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic")
            .Append(ctx.MulticlassClassification.Trainers.TextClassification(options))
            .Append(ctx.Transforms.Conversion.MapKeyToValue("PredictedTopic", "PredictedLabel"));
        var clock = Stopwatch.StartNew();
        using var model = pipeline.Fit(train);
        var scored = model.Transform(test);
        var metrics = ctx.MulticlassClassification.Evaluate(scored);
        output.WriteLine($"fit+eval {clock.Elapsed.TotalSeconds:F1} s; {metrics}");
        output.WriteLine(metrics.ConfusionMatrix.GetFormattedConfusionTable());

        // Chance is 1/3; the keyword decides the topic.
        Assert.True(metrics.MicroAccuracy > 0.8, $"accuracy {metrics.MicroAccuracy:F3}");
        Assert.True(metrics.LogLossReduction > 0.3, $"log-loss reduction {metrics.LogLossReduction:F3}");

        // The predicted label maps back to the topic names, and agrees with the evaluator's count.
        var rows = ctx.Data.CreateEnumerable<Prediction>(scored, reuseRowObject: false).ToList();
        Assert.Equal(30, rows.Count);
        Assert.All(rows, r => Assert.Contains(r.PredictedTopic, new[] { "sports", "politics", "tech" }));
        Assert.All(rows, r => Assert.Equal(1.0, r.Score.Sum(), 4));
        Assert.Equal(metrics.MicroAccuracy, rows.Count(r => r.PredictedTopic == r.Topic) / 30.0, 12);

        // One progress message per optimizer step, with loss, lr, tokens/s and ETA.
        var steps = logs.Where(l => l.Progress is { Kind: Microsoft.ML.LowRank.Training.TrainingProgressKind.Step }).ToList();
        int expectedSteps = 8 * (96 / 16);
        Assert.Equal(expectedSteps, steps.Count);
        Assert.Contains("tok/s", steps[0].RawMessage);
        Assert.Contains("ETA", steps[0].RawMessage);
        Assert.Equal("TextClassificationTrainer", steps[0].Source);
        Assert.StartsWith("[Source=TextClassificationTrainer, Kind=Info]", steps[0].Message);
        Assert.True(steps[^1].Progress!.Loss < steps[0].Progress!.Loss, "the training loss should fall");
    }
}

/// <summary>The other tasks end to end: sentence pairs (classification and regression), named entities, instruction tuning.</summary>
[Collection(SerialCollection.Name)]
public class PipelineTaskTests(ITestOutputHelper output)
{
    [Fact]
    public void BertClassifiesSentencePairsWithRsLora()
    {
        var ctx = new LowRankContext(seed: 2);
        var train = ctx.Data.LoadFromEnumerable(PipelineFixtures.Pairs(240, seed: 3));
        var test = ctx.Data.LoadFromEnumerable(PipelineFixtures.Pairs(40, seed: 4));
        var options = new TextClassificationTrainer.Options
        {
            ModelFolder = PipelineFixtures.Model("bert_cls"),
            Sentence1ColumnName = "Sentence1",
            Sentence2ColumnName = "Sentence2",
            Method = AdapterMethods.WithSettings(AdapterMethods.Create("rslora"), [new("r", "8"), new("lora_alpha", "6"), new("target_modules", "\"all-linear\"")]),
            BatchSize = 16,
            MaxEpochs = 4,
            LearningRate = 1e-2,
            WarmupRatio = 0,
        };
        var clock = Stopwatch.StartNew();
        using var model = ctx.Transforms.Conversion.MapValueToKey("Label", "Relation")
            .Append(ctx.MulticlassClassification.Trainers.TextClassification(options))
            .Fit(train);
        var metrics = ctx.MulticlassClassification.Evaluate(model.Transform(test));
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s; {metrics}");
        Assert.True(((LoraOptions)model.LastTransformer.Method).UseRsLora);
        Assert.True(metrics.MicroAccuracy > 0.8, $"accuracy {metrics.MicroAccuracy:F3} (chance 1/3; at most 2/3 when ignoring either sentence)");
    }

    [Fact]
    public void BertRegressesSentenceSimilarity()
    {
        var ctx = new LowRankContext(seed: 3);
        var train = ctx.Data.LoadFromEnumerable(PipelineFixtures.Pairs(240, seed: 5, allowBoth: true));
        var test = ctx.Data.LoadFromEnumerable(PipelineFixtures.Pairs(40, seed: 6, allowBoth: true));
        var trainer = ctx.Regression.Trainers.SentenceSimilarity(new SentenceSimilarityTrainer.Options
        {
            ModelFolder = PipelineFixtures.Model("bert_cls"),
            LabelColumnName = "Similarity",
            Method = new LoraOptions { R = 8, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear },
            BatchSize = 16,
            MaxEpochs = 4,
            LearningRate = 1e-2,
            WarmupRatio = 0,
        });
        var clock = Stopwatch.StartNew();
        using var model = trainer.Fit(train);
        var metrics = ctx.Regression.Evaluate(model.Transform(test), labelColumnName: "Similarity");
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s; {metrics}");
        Assert.True(metrics.PearsonCorrelation > 0.5, $"Pearson {metrics.PearsonCorrelation:F3}");
        Assert.True(metrics.RSquared > 0.2, $"R² {metrics.RSquared:F3}");
    }

    [Fact]
    public void BertTagsNamedEntitiesAcrossSubwords()
    {
        var ctx = new LowRankContext(seed: 4);
        var train = ctx.Data.LoadFromEnumerable(PipelineFixtures.Ner(96, seed: 7));
        var test = ctx.Data.LoadFromEnumerable(PipelineFixtures.Ner(30, seed: 8));
        var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "Tags", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
            .Append(ctx.MulticlassClassification.Trainers.NamedEntityRecognition(new NamedEntityRecognitionTrainer.Options
            {
                ModelFolder = PipelineFixtures.Model("bert_token_cls"),
                Method = new LoraOptions { R = 8, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear },
                BatchSize = 16,
                MaxEpochs = 12,
                LearningRate = 1e-2,
                WarmupRatio = 0,
            }));
        var clock = Stopwatch.StartNew();
        using var model = pipeline.Fit(train);
        var metrics = ctx.MulticlassClassification.EvaluateNamedEntityRecognition(model.Transform(test));
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s; {metrics}; " + string.Join(", ", metrics.PerEntityType.Select(kv => $"{kv.Key} {kv.Value}")));
        Assert.True(metrics.F1Score > 0.7, $"entity F1 {metrics.F1Score:F3}");
    }

    [Fact]
    public void LlamaLearnsInstructionsAndGeneratesCompletions()
    {
        var ctx = new LowRankContext(seed: 5);
        var data = ctx.Data.LoadFromEnumerable(PipelineFixtures.Instructions());
        var trainer = ctx.TextGeneration.Trainers.CausalLM(new CausalLMTrainer.Options
        {
            ModelFolder = PipelineFixtures.Model("llama"),
            Method = new LoraOptions { R = 8, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear },
            BatchSize = 8,
            MaxEpochs = 30,
            LearningRate = 1e-2,
            WarmupRatio = 0,
            Generation = new Microsoft.ML.LowRank.Models.GenerationOptions { MaxNewTokens = 3 },
        });
        var clock = Stopwatch.StartNew();
        using var model = trainer.Fit(data);
        var scored = model.Transform(data);
        var metrics = ctx.TextGeneration.Evaluate(scored, completionColumnName: "Completion");
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s; {metrics}; first: {model.Generate("opposite of hot")}");
        Assert.True(metrics.ExactMatch > 0.5, $"exact match {metrics.ExactMatch:F3}");
        Assert.True(metrics.Perplexity < 3, $"perplexity {metrics.Perplexity:F3}");
    }
}
