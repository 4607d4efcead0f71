using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Pipeline;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tokenizers;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Pipeline;

/// <summary>The method as an option (every registered method through one estimator), the context's cancellation, device
/// choice and reporting, validation with early stopping, checkpoints, and the word/sub-word alignment of NER.</summary>
[Collection(SerialCollection.Name)]
public class ContextAndMethodTests
{
    private static TextClassificationTrainer.Options Quick(string fixture = "llama_cls") => new()
    {
        ModelFolder = PipelineFixtures.Model(fixture), Sentence1ColumnName = "Text", BatchSize = 8, MaxSteps = 2, LearningRate = 1e-2, WarmupRatio = 0,
    };

    [Fact]
    public void EveryRegisteredMethodPlugsIntoOneEstimator()
    {
        var ctx = new LowRankContext(seed: 21);
        var data = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Fit(ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(16, 3)))
            .Transform(ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(16, 3)));
        Assert.Contains(ctx.Transforms.LowRank.Methods, m => m.Name == "lora");
        Assert.Contains(ctx.Transforms.LowRank.Methods, m => m.Name == "rslora");
        var scores = new Dictionary<string, float[]>();
        var readsTaskColumn = new List<string>();
        foreach (var method in ctx.Transforms.LowRank.Methods)
        {
            var options = Quick();
            options.Method = AdapterMethods.Create(method.Name);
            options.Seed = 5;
            // The same options for every method: the topic is each row's task. Task-routed mixtures read it (MOELoRA,
            // Polytropon, MoCLE: task ids; MoA: the domain labels of its router), Octavius derives its instance embedding
            // from the model, every other method ignores the column.
            options.TaskColumnName = "Topic";
            // Polytropon's PEFT default is one task; the toy data has three.
            if (options.Method is MixtureOfLoraExpertsOptions { RouterInput: RouterInput.Task, NumTasks: < 3 } few) few.NumTasks = 3;
            using var model = ctx.Transforms.LowRank.TextClassification(options).Fit(data);
            if (model.TaskColumnName is not null) readsTaskColumn.Add(method.Name);
            Assert.Equal(options.Method.PeftType, model.Method.PeftType);
            // The adapter trained: some adapter weight moved away from its initial value (B starts at zero for LoRA).
            var (trainable, total) = model.ParameterCounts;
            Assert.InRange(trainable, 1, total - 1);
            Assert.Equal(2, model.TrainingResult!.GlobalStep);
            scores[method.Name] = model.Transform(data).GetColumn<float[]>("Score").SelectMany(s => s).ToArray();
            Assert.All(scores[method.Name], p => Assert.True(float.IsFinite(p) && p >= 0 && p <= 1, $"{method.Name}: probability {p}"));
        }
        Assert.Equal(ctx.Transforms.LowRank.Methods.Count, scores.Count);
        Assert.Equal(new[] { "mmoelora", "moa", "mocle", "poly" }, readsTaskColumn.ToArray());
        // rsLoRA scales by α/√r, LoRA by α/r: same seed, same data, different models.
        Assert.NotEqual(scores["lora"], scores["rslora"]);
        // The generic settings path gives the same options class.
        var rs = (LoraOptions)ctx.Transforms.LowRank.CreateMethod("rslora", ("r", "4"), ("lora_alpha", "8"));
        Assert.True(rs.UseRsLora);
        Assert.Equal(4, rs.R);
    }

    [Fact]
    public void CancellationStopsFitAtTheNextStep()
    {
        var ctx = new LowRankContext(seed: 22);
        var data = ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(32, 4));
        int stepsSeen = 0;
        var options = Quick("bert_cls");
        options.MaxSteps = 20;
        options.MetricsCallback = m =>
        {
            stepsSeen = m.Step;
            if (m.Step == 2) ctx.CancelExecution();
        };
        var pipeline = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Append(ctx.MulticlassClassification.Trainers.TextClassification(options));
        Assert.Throws<OperationCanceledException>(() => pipeline.Fit(data));
        Assert.Equal(2, stepsSeen);
        Assert.True(ctx.IsCancellationRequested);

        // An outside token works the same way, and is checked before anything loads.
        var ctx2 = new LowRankContext(seed: 23) { CancellationToken = new CancellationToken(canceled: true) };
        var o2 = Quick("bert_cls");
        Assert.Throws<OperationCanceledException>(() => ctx2.Transforms.Conversion.MapValueToKey("Label", "Topic")
            .Append(ctx2.MulticlassClassification.Trainers.TextClassification(o2)).Fit(ctx2.Data.LoadFromEnumerable(PipelineFixtures.Topics(8, 4))));
    }

    [Fact]
    public void GpuRequestFallsBackToTheCpuOrFailsWhenFallbackIsOff()
    {
        var ctx = new LowRankContext(seed: 24) { GpuDeviceId = 0, FallbackToCpu = false };
        var data = ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(8, 5));
        if (cuda.is_available())
        {
            // With a GPU the same request trains there.
            using var onGpu = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Append(ctx.MulticlassClassification.Trainers.TextClassification(Quick())).Fit(data);
            Assert.Equal("cuda:0", onGpu.LastTransformer.AdaptedModel.parameters().First().device.ToString());
            return;
        }
        var ex = Assert.Throws<InvalidOperationException>(() => ctx.Transforms.Conversion.MapValueToKey("Label", "Topic")
            .Append(ctx.MulticlassClassification.Trainers.TextClassification(Quick())).Fit(data));
        Assert.Contains("GpuDeviceId is 0", ex.Message);
        Assert.Contains("FallbackToCpu is false", ex.Message);

        ctx.FallbackToCpu = true;
        var warnings = new List<string>();
        ctx.Log += (_, e) => { if (e.Kind == ChannelMessageKind.Warning) warnings.Add(e.RawMessage); };
        using var model = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Append(ctx.MulticlassClassification.Trainers.TextClassification(Quick())).Fit(data);
        Assert.Contains(warnings, w => w.Contains("using the CPU"));
        Assert.Equal("cpu", model.LastTransformer.AdaptedModel.parameters().First().device.ToString());
    }

    [Fact]
    public void ValidationEarlyStoppingCheckpointsAndMetricsCallback()
    {
        var ctx = new LowRankContext(seed: 25);
        var keys = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Fit(ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(24, 6)));
        var train = keys.Transform(ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(24, 6)));
        var valid = keys.Transform(ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(9, 7)));
        var checkpoints = Directory.CreateTempSubdirectory("lowrank-ckpt-").FullName;
        try
        {
            var reports = new List<LowRankTrainingMetrics>();
            var options = Quick("bert_cls");
            options.MaxSteps = 0;
            options.MaxEpochs = 6;
            options.ValidationSet = valid;
            // Nothing improves by 100: the first evaluation sets the best loss, the second ends training.
            options.EarlyStopping = new EarlyStoppingOptions { Patience = 1, MinDelta = 100 };
            options.CheckpointFolder = checkpoints;
            options.MetricsCallback = reports.Add;
            using var model = ctx.MulticlassClassification.Trainers.TextClassification(options).Fit(train);
            var result = model.TrainingResult!;
            Assert.Equal(StopReason.EarlyStopping, result.StopReason);
            Assert.Equal(2, result.Evaluations.Count);
            Assert.Equal(2 * 3, result.GlobalStep); // two epochs of 24 / 8 batches
            var evaluations = reports.Where(r => r.Kind == TrainingProgressKind.Evaluation).ToList();
            Assert.Equal(result.Evaluations.Select(e => e.Loss), evaluations.Select(e => e.ValidationLoss!.Value));
            Assert.Equal(result.GlobalStep, reports.Count(r => r.Kind == TrainingProgressKind.Step));
            Assert.All(reports.Where(r => r.Kind == TrainingProgressKind.Step), r => Assert.True(double.IsFinite(r.TrainingLoss) && r.TokensPerSecond > 0));
            Assert.True(Directory.Exists(Path.Combine(checkpoints, $"checkpoint-{result.GlobalStep}")), "a checkpoint of the last step");
        }
        finally
        {
            Directory.Delete(checkpoints, recursive: true);
        }
    }

    [Fact]
    public void WordsMapToTheirSubwordTokens()
    {
        var tokenizer = Tokenizer.FromJson(PipelineFixtures.WordPieceJson());
        string[] words = ["Alice", "visited", "amsterdam", "with", "bobby"];
        var enc = tokenizer.Encode(string.Join(' ', words));
        Assert.Equal(["[CLS]", "alice", "visited", "am", "##ster", "##dam", "with", "bob", "##by", "[SEP]"], enc.Tokens);
        var aligned = WordAlignment.Encode(new EncodedText(enc.Ids.Select(i => (long)i).ToArray(), new long[enc.Length], enc), words);
        Assert.Equal([null, 0, 1, 2, 2, 2, 3, 4, 4, null], aligned.WordOfToken);
        Assert.Equal([1, 2, 3, 6, 7], aligned.FirstToken);
        // Only a word's first sub-word is learned; a missing key (0) is not learned at all.
        Assert.Equal([-100L, 0, 4, 1, -100, -100, 4, -100, -100, -100], WordAlignment.TokenLabels(aligned, [1, 5, 2, 5, 0], classes: 5));

        // Truncation drops the last words: they get no token (-1) and are predicted as "O".
        var cut = tokenizer.Encode(string.Join(' ', words), truncation: new TruncationOptions { MaxLength = 6 });
        var alignedCut = WordAlignment.Encode(new EncodedText(cut.Ids.Select(i => (long)i).ToArray(), new long[cut.Length], cut), words);
        Assert.Equal([1, 2, 3, -1, -1], alignedCut.FirstToken);
    }

    public sealed class NerInput
    {
        public string Sentence { get; set; } = "";
        public string[] Tags { get; set; } = [];
    }

    [Fact]
    public void NerLearnsOnFirstSubwordsAndPredictsOneTagPerWord()
    {
        var ctx = new LowRankContext(seed: 26);
        var rows = PipelineFixtures.Ner(8, 9);
        var data = ctx.Data.LoadFromEnumerable(rows);
        using var model = ctx.Transforms.Conversion.MapValueToKey("Label", "Tags")
            .Append(ctx.MulticlassClassification.Trainers.NamedEntityRecognition(new NamedEntityRecognitionTrainer.Options
            {
                ModelFolder = PipelineFixtures.Model("bert_token_cls"), MaxSteps = 1, BatchSize = 8, MaxSequenceLength = 6,
            })).Fit(data);
        var ner = model.LastTransformer;
        // With six positions ([CLS] + 4 tokens + [SEP]) the words after the fourth token have no prediction: they are "O".
        var keys = ner.Predict(["amsterdam", "visited", "bob", "alice", "rome"]);
        Assert.Equal(5, keys.Length);
        Assert.Equal("O", ner.LabelValues![(int)keys[2] - 1]);
        Assert.Equal("O", ner.LabelValues![(int)keys[3] - 1]);
        Assert.Equal("O", ner.LabelValues![(int)keys[4] - 1]);
        Assert.All(keys, k => Assert.InRange(k, 1u, (uint)ner.LabelValues!.Count));
    }
}

[Collection(SerialCollection.Name)]
public class PrecisionTests
{
    [Fact]
    public void BFloat16KeepsTheBaseInBf16AndTheAdapterInFloat32()
    {
        var ctx = new LowRankContext(seed: 27);
        var data = ctx.Data.LoadFromEnumerable(PipelineFixtures.Topics(16, 8));
        using var model = ctx.Transforms.Conversion.MapValueToKey("Label", "Topic").Append(ctx.MulticlassClassification.Trainers.TextClassification(new TextClassificationTrainer.Options
        {
            ModelFolder = PipelineFixtures.Model("llama_cls"), Sentence1ColumnName = "Text", BatchSize = 8, MaxSteps = 2, LearningRate = 1e-2,
            Precision = TrainingPrecision.BFloat16,
        })).Fit(data);
        var peft = model.LastTransformer.AdaptedModel;
        var named = peft.named_parameters().ToDictionary(p => p.name, p => p.parameter.dtype);
        Assert.Equal(Microsoft.ML.LowRank.Torch.ScalarType.BFloat16, named.First(kv => kv.Key.EndsWith("embed_tokens.weight")).Value);
        Assert.Equal(Microsoft.ML.LowRank.Torch.ScalarType.Float32, named.First(kv => kv.Key.Contains("lora_A")).Value);
        Assert.All(model.LastTransformer.TrainingResult!.StepLosses, l => Assert.True(double.IsFinite(l)));
        var scores = model.Transform(data).GetColumn<float[]>("Score").ToArray();
        Assert.All(scores, s => Assert.Equal(1.0, s.Sum(), 3));
    }
}
