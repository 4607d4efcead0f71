using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Cola;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Adapters.PeriodicLora;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;
using static Microsoft.ML.LowRank.Tests.Adapters.ScheduleTraining;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>PeriodicLoRA and COLA in the trainer: at every stage boundary W grows by exactly s·B·A (float64 check), the
/// adapter restarts (B = 0, fresh A) with an empty optimizer state, the model's output does not change at that instant,
/// and nothing happens between boundaries; momentum unloading; per-stage learning-rate restarts; stage plans.</summary>
[Collection(SerialCollection.Name)]
public class PeriodicLoraTests(ITestOutputHelper output)
{
    /// <summary>Runs a merge-and-restart method for <paramref name="steps"/> steps with observers around its hook and
    /// checks every step: returns the steps at which an unload was observed.</summary>
    private List<int> RunAndCheckBoundaries(MergeAndRestartOptions options, int steps, double lambda)
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var lm = LowRankModel.Create(LoadModel(), options);
        var layers = Layers(lm);
        using var trainer = new Trainer(lm, Loss(lm), Options(steps, o => { o.WarmupSteps = 0; o.WarmupRatio = 0; }));
        var hook = trainer.Hooks.OfType<MergeAndRestartHook>().Single();
        var opt = trainer.Optimizer;

        float[]? logitsBefore = null;
        List<double[]> wBefore = new(), deltas = new(), bBefore = new(), aBefore = new();
        var unloadsSeen = new List<int>();
        var before = new ObserverHook
        {
            After = ctx =>
            {
                logitsBefore = Probe(lm);
                wBefore = layers.Select(l => W(l.layer)).ToList();
                aBefore = layers.Select(l => Factors(l.layer).a).ToList();
                bBefore = layers.Select(l => Factors(l.layer).b).ToList();
                deltas = layers.Select((l, i) => ScaledProduct(bBefore[i], aBefore[i], l.layer.OutFeatures, l.layer.InFeatures,
                    l.layer.Rank("default"), l.layer.Scaling("default"))).ToList();
                foreach (var (_, l) in layers)
                    Assert.True(opt.has_state(l.LoraA("default").weight) && opt.has_state(l.LoraB("default").weight), "the step left no optimizer state");
            },
        };
        var after = new ObserverHook
        {
            After = ctx =>
            {
                bool boundary = hook.Boundaries.Contains(ctx.Step);
                var logits = Probe(lm);
                AdapterInvariants.AssertClose(logitsBefore!.Select(v => (double)v).ToList(), logits.Select(v => (double)v).ToList(), 1e-5, $"output across step {ctx.Step}'s hook");
                for (int i = 0; i < layers.Count; i++)
                {
                    var l = layers[i].layer;
                    var w = W(l);
                    var (a, b) = Factors(l);
                    if (!boundary)
                    {
                        Assert.Equal(wBefore[i], w); // bit-identical between boundaries
                        Assert.Equal(bBefore[i], b);
                        continue;
                    }
                    var expected = wBefore[i].Zip(deltas[i], (x, d) => x + lambda * d).ToArray();
                    var err = MaxDiff(expected, w);
                    Assert.True(err <= 2e-7 * Math.Max(1, MaxAbs(expected)), $"{layers[i].path} step {ctx.Step}: W − (W₀ + λ·s·B·A) = {err:E2}");
                    Assert.True(MaxAbs(deltas[i]) > 1e-4, "the unloaded delta should not be negligible");
                    if (lambda == 1)
                    {
                        Assert.All(b, v => Assert.Equal(0.0, v));
                        Assert.NotEqual(aBefore[i], a);
                        double bound = 1 / Math.Sqrt(l.InFeatures);
                        Assert.All(a, v => Assert.InRange(v, -bound, bound)); // Kaiming-uniform(a = √5) re-init
                        Assert.False(opt.has_state(l.LoraA("default").weight), "A's optimizer state was not reset");
                        Assert.False(opt.has_state(l.LoraB("default").weight), "B's optimizer state was not reset");
                    }
                    else
                    {
                        Assert.Equal(aBefore[i], a);
                        var scaled = bBefore[i].Select(v => v * (1 - lambda)).ToArray();
                        Assert.True(MaxDiff(scaled, b) <= 1e-7, "B should be scaled by 1 − λ");
                        Assert.True(opt.has_state(l.LoraA("default").weight), "momentum unloading keeps the optimizer state");
                    }
                }
                if (boundary) unloadsSeen.Add(ctx.Step);
            },
        };
        trainer.Hooks.Insert(0, before);
        trainer.Hooks.Add(after);
        var result = trainer.Train(TrainData());
        output.WriteLine($"{options.GetType().Name}: losses {string.Join(" ", result.StepLosses.Select(v => v.ToString("F3")))}; unloads at {string.Join(",", unloadsSeen)}");
        Assert.Equal(unloadsSeen.Count, hook.Unloads);
        Assert.True(result.StepLosses[^1] < result.StepLosses[0], "training should lower the loss");
        return unloadsSeen;
    }

    [Fact]
    public void PeriodicLoraMergesResetsAndRestartsAtEveryStageBoundary()
    {
        var seen = RunAndCheckBoundaries(new PeriodicLoraOptions { R = 4, LoraAlpha = 8, StageSteps = 3, TargetModules = ModuleSelector.AllLinear }, 10, 1.0);
        Assert.Equal(new[] { 3, 6, 9 }, seen);
    }

    [Fact]
    public void MomentumUnloadingMovesAFractionIntoTheBaseAndKeepsTheOutput()
    {
        var seen = RunAndCheckBoundaries(new PeriodicLoraOptions { R = 4, LoraAlpha = 8, StageSteps = 1, UnloadRatio = 0.25, TargetModules = new[] { "q_proj", "v_proj" } }, 5, 0.25);
        Assert.Equal(new[] { 1, 2, 3, 4 }, seen); // every step but the last
    }

    [Fact]
    public void ColaMergesEachLinkOfTheChain()
    {
        var seen = RunAndCheckBoundaries(new ColaOptions { R = 4, LoraAlpha = 8, ChainLength = 3, TargetModules = new[] { "q_proj", "v_proj", "down_proj" } }, 11, 1.0);
        Assert.Equal(new[] { 3, 7 }, seen); // ⌊11/3⌋, ⌊22/3⌋
    }

    [Theory]
    [InlineData(10, 3, new[] { 3, 6, 9 })]
    [InlineData(9, 3, new[] { 3, 6 })]
    [InlineData(3, 5, new int[0])]
    [InlineData(5, 1, new[] { 1, 2, 3, 4 })]
    public void PeriodicLoraStagePlan(int total, int stage, int[] expected)
        => Assert.Equal(expected, new PeriodicLoraOptions { StageSteps = stage }.StageBoundaries(total));

    [Theory]
    [InlineData(12, 3, new[] { 4, 8 })]
    [InlineData(10, 4, new[] { 2, 5, 7 })]
    [InlineData(2, 5, new[] { 1 })]
    [InlineData(100, 1, new int[0])]
    public void ColaChainPlan(int total, int links, int[] expected)
        => Assert.Equal(expected, new ColaOptions { ChainLength = links }.StageBoundaries(total));

    [Fact]
    public void PerStageScheduleRestartsWarmupAndDecayInEveryStage()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var lm = LowRankModel.Create(LoadModel(), new PeriodicLoraOptions
        {
            R = 4, LoraAlpha = 8, StageSteps = 4, StageLearningRate = StageLearningRate.PerStage, TargetModules = new[] { "q_proj", "v_proj" },
        });
        using var trainer = new Trainer(lm, Loss(lm), Options(10, o => { o.WarmupSteps = 0; o.WarmupRatio = 0.25; o.LoraPlusRatio = 4; }));
        var bRates = new List<double>();
        trainer.Hooks.Add(new ObserverHook
        {
            After = ctx =>
            {
                var g = ctx.Optimizer.param_groups;
                Assert.Equal(2, g.Count);
                bRates.Add(g[1].LearningRate / 4);
            },
        });
        var result = trainer.Train(TrainData());
        // Stages [0,4), [4,8), [8,10): warmup ⌈0.25·len⌉, then linear decay over the stage (HF's formula, per stage).
        static double Factor(int k, int len)
        {
            int warm = (int)Math.Ceiling(0.25 * len);
            return k < warm ? (double)k / Math.Max(1, warm) : Math.Max(0, (double)(len - k) / Math.Max(1, len - warm));
        }
        var expected = new List<double>();
        foreach (var (start, len) in new[] { (0, 4), (4, 4), (8, 2) })
            for (int k = 0; k < len; k++) expected.Add(1e-2 * Factor(k, len));
        Assert.Equal(expected.Count, result.LearningRates.Count);
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i], result.LearningRates[i], 12);
        // The LoRA+ B group (λ = 4) follows the same stage schedule at 4 times the rate.
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i], bRates[i], 12);
    }

    [Fact]
    public void GlobalScheduleIsTheTrainersOwn()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var lm = LowRankModel.Create(LoadModel(), new ColaOptions { R = 4, LoraAlpha = 8, ChainLength = 2, TargetModules = new[] { "q_proj" } });
        using var trainer = new Trainer(lm, Loss(lm), Options(6));
        var result = trainer.Train(TrainData());
        var expected = Enumerable.Range(0, 6).Select(s => 1e-2 * (s < 1 ? 0 : (6.0 - s) / 5)).ToArray();
        for (int i = 0; i < 6; i++) Assert.Equal(expected[i], result.LearningRates[i], 12);
    }

    [Fact]
    public void BadSettingsAreRejectedWithTheirName()
    {
        Assert.Contains("plora_stage_steps", Assert.Throws<ArgumentException>(() => new PeriodicLoraOptions { StageSteps = 0 }.Validate()).Message);
        Assert.Contains("plora_unload_ratio", Assert.Throws<ArgumentException>(() => new PeriodicLoraOptions { UnloadRatio = 1.5 }.Validate()).Message);
        Assert.Contains("cola_chain_length", Assert.Throws<ArgumentException>(() => new ColaOptions { ChainLength = 0 }.Validate()).Message);
        Assert.Contains("PiSSA", Assert.Throws<NotSupportedException>(() => new ColaOptions { InitLoraWeights = LoraInitialization.PiSSA }.Validate()).Message);
        var e = Assert.Throws<ArgumentException>(() => AdapterMethods.WithSettings(new PeriodicLoraOptions(), new Dictionary<string, string> { ["stage_lr_schedule"] = "sometimes" }));
        Assert.Contains("stage_lr_schedule", e.Message);
    }

    [Fact]
    public void ConfigRoundTripsAndPicksTheMethod()
    {
        var p = new PeriodicLoraOptions { R = 6, LoraAlpha = 12, StageSteps = 7, UnloadRatio = 0.5, StageLearningRate = StageLearningRate.PerStage };
        var back = Assert.IsType<PeriodicLoraOptions>(LowRankAdapterOptions.FromJson(p.ToJson()));
        Assert.Equal((6, 12.0, 7, 0.5, StageLearningRate.PerStage), (back.R, back.LoraAlpha, back.StageSteps, back.UnloadRatio, back.StageLearningRate));
        Assert.Equal("LORA", back.PeftType);
        var c = Assert.IsType<ColaOptions>(LowRankAdapterOptions.FromJson(new ColaOptions { ChainLength = 5 }.ToJson()));
        Assert.Equal(5, c.ChainLength);
        // A plain LoRA config still reads as LoRA.
        Assert.IsType<LoraOptions>(LowRankAdapterOptions.FromJson(new LoraOptions().ToJson()));
        Assert.IsType<PeriodicLoraOptions>(AdapterMethods.Create("plora"));
        Assert.IsType<ColaOptions>(AdapterMethods.Create("cola"));
    }
}
