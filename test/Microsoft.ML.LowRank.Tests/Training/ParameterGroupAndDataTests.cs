using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>Parameter grouping (weight decay, LoRA+), token batching with prompt masking, and the seeded data order.</summary>
public class ParameterGroupAndDataTests
{
    private static NamedTree LoraLikeModel() => new(new (string, long[], bool)[]
    {
        ("embed.weight", new long[] { 10, 4 }, false),
        ("q.base_layer.weight", new long[] { 4, 4 }, false),
        ("q.lora_A", new long[] { 2, 4 }, true),
        ("q.lora_B", new long[] { 4, 2 }, true),
        ("q.bias", new long[] { 4 }, true),
        ("emb.lora_embedding_A", new long[] { 2, 10 }, true),
        ("emb.lora_embedding_B", new long[] { 4, 2 }, true),
        ("norm.weight", new long[] { 4 }, true),
        ("head.weight", new long[] { 3, 4 }, true),
    });

    private static Dictionary<string, (string group, double lr, double wd)> Assignment(IReadOnlyList<optim.ParamGroup> groups)
    {
        var d = new Dictionary<string, (string, double, double)>();
        foreach (var g in groups)
            for (int i = 0; i < g.Parameters.Count; i++) d[g.ParameterNames![i]] = (g.Name!, g.LearningRate, g.WeightDecay);
        return d;
    }

    [Fact]
    public void WeightDecayGoesToMatricesOnly()
    {
        using var scope = NewDisposeScope();
        using var model = LoraLikeModel();
        var groups = ParameterGroups.Build(model.named_parameters(), 1e-3, 0.1);
        var a = Assignment(groups);
        Assert.Equal(new[] { ParameterGroups.Decay, ParameterGroups.NoDecay }, groups.Select(g => g.Name));
        Assert.DoesNotContain("embed.weight", a.Keys);          // frozen
        Assert.DoesNotContain("q.base_layer.weight", a.Keys);   // frozen
        foreach (var n in new[] { "q.lora_A", "q.lora_B", "emb.lora_embedding_A", "emb.lora_embedding_B", "head.weight" })
            Assert.Equal((ParameterGroups.Decay, 1e-3, 0.1), a[n]);
        foreach (var n in new[] { "q.bias", "norm.weight" })
            Assert.Equal((ParameterGroups.NoDecay, 1e-3, 0.0), a[n]);
        // The optimizer keeps the groups' values.
        using var opt = optim.AdamW(groups, 5e-1, weight_decay: 0.7);
        Assert.Equal(0.1, opt.param_groups[0].WeightDecay);
        Assert.Equal(0.0, opt.param_groups[1].WeightDecay);
        Assert.Equal(1e-3, opt.param_groups[1].LearningRate);
    }

    [Fact]
    public void LoraPlusGivesBParametersAndOneDimensionalParametersTheRatio()
    {
        using var scope = NewDisposeScope();
        using var model = LoraLikeModel();
        var groups = ParameterGroups.Build(model.named_parameters(), 2e-4, 0.01, loraPlusRatio: 16);
        var a = Assignment(groups);
        Assert.Equal((ParameterGroups.LoraPlusA, 2e-4, 0.01), a["q.lora_A"]);
        Assert.Equal((ParameterGroups.LoraPlusA, 2e-4, 0.01), a["emb.lora_embedding_A"]);
        Assert.Equal((ParameterGroups.LoraPlusA, 2e-4, 0.01), a["head.weight"]);
        Assert.Equal((ParameterGroups.LoraPlusB, 2e-4 * 16, 0.01), a["q.lora_B"]);
        Assert.Equal((ParameterGroups.LoraPlusB, 2e-4 * 16, 0.01), a["emb.lora_embedding_B"]);
        // PEFT: every 1-D parameter goes with B; here it also never decays.
        Assert.Equal((ParameterGroups.LoraPlusBNoDecay, 2e-4 * 16, 0.0), a["q.bias"]);
        Assert.Equal((ParameterGroups.LoraPlusBNoDecay, 2e-4 * 16, 0.0), a["norm.weight"]);
        Assert.Equal(7, a.Count);
    }

    [Fact]
    public void LoraPlusRatioReachesTheOptimizerThroughTheTrainerAndSurvivesTheSchedule()
    {
        using var scope = NewDisposeScope();
        using var model = LoraLikeModel();
        var options = new TrainerOptions { LearningRate = 1e-3, LoraPlusRatio = 8, Schedule = LearningRateSchedule.Linear, WarmupSteps = 1, MaxSteps = 3, BatchSize = 1 };
        using var trainer = new Trainer(model, _ => model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.parameter.sum()).Aggregate((x, y) => x + y), options);
        var byName = trainer.Optimizer.param_groups.ToDictionary(g => g.Name!, g => g);
        Assert.Equal(8e-3, byName[ParameterGroups.LoraPlusB].LearningRate, 15);
        var lrs = new List<(double a, double b)>();
        trainer.Hooks.Add(new LambdaHook { AfterOptimizer = _ => lrs.Add((byName[ParameterGroups.LoraPlusA].LearningRate, byName[ParameterGroups.LoraPlusB].LearningRate)) });
        var data = new DelegateBatchSource(4, idx => new Batch(zeros(new long[] { idx.Count, 1 }, ScalarType.Int64)));
        trainer.Train(data);
        Assert.Equal(3, lrs.Count);
        Assert.All(lrs.Skip(1), x => Assert.Equal(8.0, x.b / x.a, 12));
    }

    [Fact]
    public void TokenBatcherPadsRightAndMasksPromptsAndPadding()
    {
        using var scope = NewDisposeScope();
        var examples = new[]
        {
            TokenExample.FromPromptAndResponse(new long[] { 5, 6, 7 }, new long[] { 8, 9 }),
            new TokenExample(new long[] { 11, 12 }),
            new TokenExample(new long[] { 21, 22, 23 }, labels: new long[] { -100, 40, 41 }),
        };
        var batcher = new TokenBatcher(examples, padTokenId: 3);
        using var b = batcher.GetBatch(new[] { 0, 1, 2 });
        Assert.Equal(new long[] { 3, 5 }, b.InputIds.shape);
        Assert.Equal(new long[] { 5, 6, 7, 8, 9, 11, 12, 3, 3, 3, 21, 22, 23, 3, 3 }, b.InputIds.ToArray<long>());
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0 }, b.AttentionMask!.ToArray<long>());
        Assert.Equal(new long[] { -100, -100, -100, 8, 9, 11, 12, -100, -100, -100, -100, 40, 41, -100, -100 }, b.Labels!.ToArray<long>());
        Assert.Equal(10, b.TokenCount);
        // Targets after the causal shift (column 0 never predicted): 8, 9 | 12 | 40, 41.
        Assert.Equal(5, b.TargetCount);
        Assert.Equal(new[] { 0, 1, 2 }, b.ExampleIndices);
    }

    [Fact]
    public void TokenBatcherTruncatesAndCanLearnPrompts()
    {
        using var scope = NewDisposeScope();
        var examples = new[] { TokenExample.FromPromptAndResponse(new long[] { 1, 2 }, new long[] { 3, 4, 5, 6 }) };
        using var t = new TokenBatcher(examples, maxLength: 4).GetBatch(new[] { 0 });
        Assert.Equal(new long[] { 1, 2, 3, 4 }, t.InputIds.ToArray<long>());
        Assert.Equal(new long[] { -100, -100, 3, 4 }, t.Labels!.ToArray<long>());
        using var u = new TokenBatcher(examples, maskPrompt: false).GetBatch(new[] { 0 });
        Assert.Equal(new long[] { 1, 2, 3, 4, 5, 6 }, u.Labels!.ToArray<long>());
        Assert.Equal(5, u.TargetCount);
    }

    [Fact]
    public void TokenBatcherRejectsBadInput()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TokenExample(new long[] { 1, 2 }, promptLength: 3));
        Assert.Throws<ArgumentException>(() => new TokenExample(Array.Empty<long>()));
        Assert.Throws<ArgumentException>(() => new TokenExample(new long[] { 1, 2 }, labels: new long[] { 1 }));
        var b = TokenBatcher.FromSequences(new[] { new long[] { 1, 2 } });
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => b.GetBatch(new[] { 1 }));
        Assert.Contains("out of range", e.Message);
        Assert.Throws<ArgumentException>(() => b.GetBatch(Array.Empty<int>()));
    }

    [Fact]
    public void DataOrderIsASeededPermutationPerEpoch()
    {
        var p0 = DataOrder.Permutation(50, seed: 3, epoch: 0);
        Assert.Equal(Enumerable.Range(0, 50), p0.OrderBy(x => x));
        Assert.Equal(p0, DataOrder.Permutation(50, 3, 0));
        Assert.NotEqual(p0, DataOrder.Permutation(50, 3, 1));
        Assert.NotEqual(p0, DataOrder.Permutation(50, 4, 0));
        Assert.NotEqual(Enumerable.Range(0, 50), p0);
        Assert.Equal(Enumerable.Range(0, 7), DataOrder.Permutation(7, 3, 0, shuffle: false));
        // Fixed values: the order must not change between versions (checkpoints store positions in it).
        Assert.Equal(new[] { 1, 9, 2, 3, 7, 8, 4, 5, 0, 6 }, DataOrder.Permutation(10, 42, 0)); // also checked with a Python replica of SplitMix64 + Fisher–Yates

        var plan = DataOrder.Plan(10, 4, 1, 0, shuffle: true, dropLast: false);
        Assert.Equal(new[] { 4, 4, 2 }, plan.Select(b => b.Length));
        Assert.Equal(DataOrder.Permutation(10, 1, 0), plan.SelectMany(b => b));
        Assert.Equal(2, DataOrder.Plan(10, 4, 1, 0, shuffle: true, dropLast: true).Count);
    }

    [Fact]
    public void EveryEpochVisitsEveryExampleOnce()
    {
        var counts = new int[23];
        for (int e = 0; e < 3; e++)
            foreach (var b in DataOrder.Plan(23, 5, 9, e, true, false))
                foreach (var i in b) counts[i]++;
        Assert.All(counts, c => Assert.Equal(3, c));
    }
}

/// <summary>A hook made of delegates.</summary>
internal sealed class LambdaHook : ITrainingHook
{
    public Action<TrainingContext>? Begin, Before, AfterBwd, AfterOptimizer, EpochEnd, End;
    public void OnTrainBegin(TrainingContext c) => Begin?.Invoke(c);
    public void BeforeStep(TrainingContext c) => Before?.Invoke(c);
    public void AfterBackward(TrainingContext c) => AfterBwd?.Invoke(c);
    public void AfterOptimizerStep(TrainingContext c) => AfterOptimizer?.Invoke(c);
    public void OnEpochEnd(TrainingContext c) => EpochEnd?.Invoke(c);
    public void OnTrainEnd(TrainingContext c) => End?.Invoke(c);
}
