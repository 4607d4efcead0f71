using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.DeltaLora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;
using static Microsoft.ML.LowRank.Tests.Adapters.ScheduleTraining;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>Delta-LoRA in the trainer: after each step past the start step, W changes by exactly
/// λ·s·(B_t·A_t − B_{t−1}·A_{t−1}) (computed here in float64 from the observed factors); before it, W is bit-identical;
/// a half-precision base accumulates in a float32 master copy; dropout is refused.</summary>
[Collection(SerialCollection.Name)]
public class DeltaLoraTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("llama", 2)]
    [InlineData("gpt2", 0)] // Conv1D: W stored [in, out]
    public void BaseWeightMovesByTheScaledChangeOfTheAdapterProduct(string fixture, int startStep)
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        const double ratio = 2.0;
        using var lm = LowRankModel.Create(PretrainedModel.Load(Repo.Fixture("models", fixture), dtype: ScalarType.Float32),
            new DeltaLoraOptions { R = 4, LoraAlpha = 8, UpdateRatio = ratio, StartStep = startStep, TargetModules = ModuleSelector.AllLinear });
        var layers = Layers(lm);
        const int steps = 6;
        using var trainer = new Trainer(lm, Loss(lm), Options(steps, o => { o.WarmupSteps = 0; o.WarmupRatio = 0; }));
        var hook = trainer.Hooks.OfType<DeltaLoraHook>().Single();

        List<(double[] a, double[] b)> previous = new(), current = new();
        List<double[]> wBefore = new();
        var before = new ObserverHook
        {
            Begin = _ => previous = layers.Select(l => Factors(l.layer)).ToList(),
            After = _ =>
            {
                current = layers.Select(l => Factors(l.layer)).ToList();
                wBefore = layers.Select(l => W(l.layer)).ToList();
            },
        };
        int checkedUpdates = 0;
        var after = new ObserverHook
        {
            After = ctx =>
            {
                for (int i = 0; i < layers.Count; i++)
                {
                    var l = layers[i].layer;
                    var w = W(l);
                    if (ctx.Step <= startStep)
                    {
                        Assert.Equal(wBefore[i], w);
                        continue;
                    }
                    int r = l.Rank("default");
                    double s = l.Scaling("default");
                    var now = ScaledProduct(current[i].b, current[i].a, l.OutFeatures, l.InFeatures, r, s);
                    var then = ScaledProduct(previous[i].b, previous[i].a, l.OutFeatures, l.InFeatures, r, s);
                    var expected = wBefore[i].Select((x, k) => x + ratio * (now[k] - then[k])).ToArray();
                    var err = MaxDiff(expected, w);
                    Assert.True(err <= 2e-7 * Math.Max(1, MaxAbs(expected)), $"{layers[i].path} step {ctx.Step}: W − (W + λ·s·ΔBA) = {err:E2}");
                    Assert.True(MaxDiff(wBefore[i], w) > 1e-5, $"{layers[i].path} step {ctx.Step}: W did not move");
                    checkedUpdates++;
                }
                previous = current;
            },
        };
        trainer.Hooks.Insert(0, before);
        trainer.Hooks.Add(after);
        var result = trainer.Train(TrainData());
        output.WriteLine($"{fixture}: losses {string.Join(" ", result.StepLosses.Select(v => v.ToString("F3")))}");
        Assert.Equal(steps - startStep, hook.Updates);
        Assert.Equal((steps - startStep) * layers.Count, checkedUpdates);
        Assert.True(result.StepLosses[^1] < result.StepLosses[0]);
    }

    [Fact]
    public void HalfPrecisionBaseAccumulatesInFloat32()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama_bf16"));
        using var lm = LowRankModel.Create(model, new DeltaLoraOptions { R = 4, LoraAlpha = 8, StartStep = 0, TargetModules = new[] { "q_proj" } });
        var layers = Layers(lm);
        Assert.Equal(ScalarType.BFloat16, layers[0].layer.BaseWeight.dtype);
        var w0 = layers.Select(l => W(l.layer)).ToList();
        var start = layers.Select(l => Factors(l.layer)).ToList();
        using var trainer = new Trainer(lm, Loss(lm), Options(8, o => { o.WarmupSteps = 0; o.WarmupRatio = 0; o.LearningRate = 1e-3; }));
        // What rounding to bfloat16 after every update would give (the drift the master copy avoids).
        var naive = w0.Select(w => (double[])w.Clone()).ToList();
        var prev = start;
        trainer.Hooks.Add(new ObserverHook
        {
            After = _ =>
            {
                var now = layers.Select(l => Factors(l.layer)).ToList();
                for (int i = 0; i < layers.Count; i++)
                {
                    var l = layers[i].layer;
                    var d1 = ScaledProduct(now[i].b, now[i].a, l.OutFeatures, l.InFeatures, l.Rank("default"), l.Scaling("default"));
                    var d0 = ScaledProduct(prev[i].b, prev[i].a, l.OutFeatures, l.InFeatures, l.Rank("default"), l.Scaling("default"));
                    for (int k = 0; k < d1.Length; k++) naive[i][k] = RoundToBFloat16(naive[i][k] + 2.0 * (d1[k] - d0[k]));
                }
                prev = now;
            },
        });
        trainer.Train(TrainData());
        for (int i = 0; i < layers.Count; i++)
        {
            // The deltas telescope: W_T = bf16(W_0 + λ·s·(B_T·A_T − B_0·A_0)) when accumulated in float32 (one rounding),
            // whereas rounding to bfloat16 after every step would drift by up to a bf16 ulp per step.
            var l = layers[i].layer;
            var (a, b) = Factors(l);
            int r = l.Rank("default");
            double s = l.Scaling("default");
            var end = ScaledProduct(b, a, l.OutFeatures, l.InFeatures, r, s);
            var begin = ScaledProduct(start[i].b, start[i].a, l.OutFeatures, l.InFeatures, r, s);
            var exact = w0[i].Select((x, k) => x + 2.0 * (end[k] - begin[k])).ToArray();
            var w = W(l);
            double worst = 0, naiveWorst = 0;
            for (int k = 0; k < w.Length; k++)
            {
                double half = Math.Max(Math.Abs(exact[k]), 1e-30) * Math.Pow(2, -8); // bf16 has 8 significant bits: |x − bf16(x)| ≤ |x|·2⁻⁸
                worst = Math.Max(worst, Math.Abs(w[k] - exact[k]) / half);
                naiveWorst = Math.Max(naiveWorst, Math.Abs(naive[i][k] - exact[k]) / half);
            }
            output.WriteLine($"{layers[i].path}: worst error {worst:F3} half-spacings (per-step bf16 rounding would give {naiveWorst:F1})");
            Assert.True(worst <= 1.01, $"{layers[i].path}: W is {worst:F2} half-spacings from the float32-accumulated update");
            Assert.True(naiveWorst > 2, "the test should separate float32 accumulation from per-step rounding");
        }
    }

    private static double RoundToBFloat16(double x)
    {
        uint bits = BitConverter.SingleToUInt32Bits((float)x);
        bits += 0x7FFFu + ((bits >> 16) & 1u); // round to nearest, ties to even
        return BitConverter.UInt32BitsToSingle(bits & 0xFFFF0000u);
    }

    [Fact]
    public void DropoutIsRefusedAndConfigRoundTrips()
    {
        var e = Assert.Throws<ArgumentException>(() => new DeltaLoraOptions { LoraDropout = 0.05 }.Validate());
        Assert.Contains("lora_dropout", e.Message);
        Assert.Contains("delta_lora_start_step", Assert.Throws<ArgumentException>(() => new DeltaLoraOptions { StartStep = -1 }.Validate()).Message);
        var back = Assert.IsType<DeltaLoraOptions>(LowRankAdapterOptions.FromJson(new DeltaLoraOptions { UpdateRatio = 1.5, StartStep = 7 }.ToJson()));
        Assert.Equal((1.5, 7), (back.UpdateRatio, back.StartStep));
        Assert.IsType<DeltaLoraOptions>(AdapterMethods.Create("deltalora"));
        var d = new DeltaLoraOptions();
        Assert.Equal((2.0, 500, 0.0), (d.UpdateRatio, d.StartStep, d.LoraDropout));
    }
}
