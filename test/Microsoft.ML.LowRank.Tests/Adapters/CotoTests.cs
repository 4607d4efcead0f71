using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Coto;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;
using static Microsoft.ML.LowRank.Tests.Adapters.ScheduleTraining;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>CoTo: the activation probability schedule, the per-step draw of active layer groups (replayed here from the
/// seed with the rule written independently), skipped layers getting no gradient and no update, evaluation using every
/// layer, flags cleared after training, and the draw's statistics.</summary>
[Collection(SerialCollection.Name)]
public class CotoTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(0, 100, 0.1)]
    [InlineData(1, 100, 0.112)]
    [InlineData(38, 100, 0.556)]
    [InlineData(75, 100, 1.0)]
    [InlineData(90, 100, 1.0)]
    [InlineData(3, 10, 0.1 + 0.9 * 3 / 8.0)] // ⌈0.75·10⌉ = 8
    public void ProbabilityGrowsLinearlyOverThreeQuartersOfTraining(int step, int total, double expected)
        => Assert.Equal(expected, new CotoOptions().Probability(step, total), 12);

    [Fact]
    public void DrawActivatesEachGroupWithProbabilityPAndNeverNone()
    {
        using var g = new Generator(17);
        foreach (var p in new[] { 0.05, 0.3, 0.8 })
        {
            long active = 0, total = 0;
            for (int i = 0; i < 400; i++)
            {
                var d = CotoHook.Draw(50, p, g);
                Assert.Contains(true, d);
                active += d.Count(x => x);
                total += d.Length;
            }
            double frac = (double)active / total, sd = Math.Sqrt(p * (1 - p) / total);
            output.WriteLine($"p = {p}: active fraction {frac:F4} (±{4 * sd:F4})");
            Assert.InRange(frac, p - 4 * sd, p + 4 * sd);
        }
        for (int i = 0; i < 20; i++) Assert.All(CotoHook.Draw(3, 1.0, g), Assert.True);
        // With one group the "at least one active" rule makes it always active, whatever p.
        for (int i = 0; i < 20; i++) Assert.True(CotoHook.Draw(1, 0.01, g)[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => CotoHook.Draw(3, 0, g));
    }

    [Fact]
    public void ActiveLayersFollowTheScheduleAndSkippedLayersDoNotTrain()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var lm = LowRankModel.Create(LoadModel(), new CotoOptions { R = 4, LoraAlpha = 8, InitialProbability = 0.1, TargetModules = ModuleSelector.AllLinear });
        var layers = Layers(lm);
        const int steps = 12, seed = 5;
        using var trainer = new Trainer(lm, Loss(lm), Options(steps, o => { o.Seed = seed; o.WarmupSteps = 0; o.WarmupRatio = 0; }));
        var hook = trainer.Hooks.OfType<CotoHook>().Single();
        Assert.Equal(new[] { "model.layers.0", "model.layers.1" }, hook.GroupKeys);
        int GroupOf(string path) => path.StartsWith("model.layers.0.", StringComparison.Ordinal) ? 0 : 1;

        var observed = new List<bool[]>();
        Dictionary<string, double[]> weightsBefore = new();
        trainer.Hooks.Add(new ObserverHook
        {
            Before = ctx =>
            {
                var flags = new[] { true, true };
                foreach (var (path, l) in layers) if (l.SkipAdaptersInTraining) flags[GroupOf(path)] = false;
                foreach (var (path, l) in layers) Assert.Equal(!flags[GroupOf(path)], l.SkipAdaptersInTraining); // whole groups
                observed.Add(flags);
                weightsBefore = layers.ToDictionary(l => l.path, l => l.layer.LoraB("default").weight.ToDoubleArray());
            },
            Backward = ctx =>
            {
                foreach (var (path, l) in layers)
                {
                    bool active = observed[^1][GroupOf(path)];
                    Assert.Equal(active, l.LoraA("default").weight.grad is not null);
                    Assert.Equal(active, l.LoraB("default").weight.grad is not null);
                }
            },
            After = ctx =>
            {
                foreach (var (path, l) in layers)
                    if (!observed[^1][GroupOf(path)])
                        Assert.Equal(weightsBefore[path], l.LoraB("default").weight.ToDoubleArray()); // a skipped layer is not updated
            },
        });
        var result = trainer.Train(TrainData());
        Assert.Equal(steps, observed.Count);

        // Replay: u ~ U(0,1) per group from the hook's seed; active iff u ≤ p(t); redraw while none is active.
        using var g = new Generator(CotoHook.SeedOf(seed));
        int end = (int)Math.Ceiling(0.75 * steps);
        for (int t = 0; t < steps; t++)
        {
            double p = Math.Min(1, 0.1 + 0.9 * t / end);
            bool[] expected;
            do
            {
                using var u = rand(new long[] { 2 }, ScalarType.Float32, generator: g);
                var v = u.ToArray<float>();
                expected = v.Select(x => x <= p).ToArray();
            } while (!expected.Contains(true));
            Assert.True(expected.SequenceEqual(observed[t]), $"step {t + 1}: active groups [{string.Join(",", observed[t])}], expected [{string.Join(",", expected)}] (p = {p:F3})");
            if (t >= end) Assert.All(observed[t], Assert.True);
        }
        output.WriteLine("active groups per step: " + string.Join(" ", observed.Select(f => f.Count(x => x))));
        Assert.Contains(observed.Take(end / 2), f => f.Count(x => x) == 1); // some layer was dropped early on
        // Training ended: no layer is left skipping.
        Assert.All(layers, l => Assert.False(l.layer.SkipAdaptersInTraining));
        Assert.True(result.StepLosses[^1] < result.StepLosses[0]);
    }

    [Fact]
    public void EvaluationUsesEveryLayer()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var lm = LowRankModel.Create(LoadModel(), new CotoOptions { R = 4, LoraAlpha = 8, InitialProbability = 0.05, TargetModules = ModuleSelector.AllLinear });
        AdapterInvariants.Perturb(lm, std: 0.05); // every B non-zero, so a dropped layer changes the output
        var layers = Layers(lm);
        int evalCalls = 0, evalWithSkips = 0;
        Tensor LossCheckingEval(Batch b)
        {
            var loss = Loss(lm)(b);
            if (lm.training) return loss;
            evalCalls++;
            var skipping = layers.Where(l => l.layer.SkipAdaptersInTraining).Select(l => l.layer).ToList();
            if (skipping.Count > 0)
            {
                evalWithSkips++;
                lm.train();
                using (var dropped = Loss(lm)(b)) Assert.NotEqual(dropped.ToDouble(), loss.ToDouble()); // in training mode the flags would matter
                lm.eval();
                foreach (var l in skipping) l.SkipAdaptersInTraining = false;
                using (var all = Loss(lm)(b)) Assert.Equal(all.ToDouble(), loss.ToDouble()); // eval ignores the flags
                foreach (var l in skipping) l.SkipAdaptersInTraining = true;
            }
            return loss;
        }
        using var trainer = new Trainer(lm, LossCheckingEval, Options(6, o => { o.EvaluationSteps = 1; o.WarmupSteps = 0; o.WarmupRatio = 0; }));
        trainer.Train(TrainData(), TrainData(16, seed: 9));
        Assert.True(evalCalls >= 6);
        Assert.True(evalWithSkips > 0, "no evaluation ran while a layer was dropped: the check did not happen");
    }

    [Fact]
    public void SkipFlagGivesTheBaseOutputInTrainingModeOnly()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(LoadModel(), new CotoOptions { R = 4, LoraAlpha = 8, TargetModules = new[] { "q_proj" } });
        AdapterInvariants.Perturb(lm);
        var layer = Layers(lm)[0].layer;
        using var g = new Generator(2);
        var x = randn(new long[] { 3, layer.InFeatures }, generator: g);
        using var ng = no_grad();
        var baseOut = layer.BaseLayer.call(x).ToArray<float>();
        lm.train();
        var full = layer.forward(x).ToArray<float>();
        Assert.NotEqual(baseOut, full);
        layer.SkipAdaptersInTraining = true;
        Assert.Equal(baseOut, layer.forward(x).ToArray<float>());
        lm.eval();
        Assert.Equal(full, layer.forward(x).ToArray<float>());
    }

    [Fact]
    public void ConfigRoundTripsAndRejectsBadProbabilities()
    {
        var back = Assert.IsType<CotoOptions>(LowRankAdapterOptions.FromJson(new CotoOptions { InitialProbability = 0.25, Stage1Ratio = 0.5 }.ToJson()));
        Assert.Equal((0.25, 0.5), (back.InitialProbability, back.Stage1Ratio));
        Assert.Contains("coto_initial_probability", Assert.Throws<ArgumentException>(() => new CotoOptions { InitialProbability = 0 }.Validate()).Message);
        Assert.Contains("coto_stage1_ratio", Assert.Throws<ArgumentException>(() => new CotoOptions { Stage1Ratio = 1.5 }.Validate()).Message);
        Assert.IsType<CotoOptions>(AdapterMethods.Create("coto"));
    }
}
