using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Speed;

/// <summary>Autocast, the float16 loss scaler, float32 master weights, and bfloat16 bases with float32 adapters.</summary>
[Collection(SerialCollection.Name)]
public class MixedPrecisionTests(ITestOutputHelper output)
{
    [Fact]
    public void AutocastRunsMatmulsInBfloat16AndRestoresTheState()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(1);
        var x = randn(new long[] { 4, 8 }, generator: g);
        var w = randn(new long[] { 6, 8 }, generator: g);
        var a = randn(new long[] { 2, 8 }, generator: g);
        var b = randn(new long[] { 6, 2 }, generator: g);
        Assert.False(is_autocast_enabled(Device.CPU));
        using (autocast(Device.CPU))
        {
            Assert.True(is_autocast_enabled(Device.CPU));
            Assert.Equal(ScalarType.BFloat16, nn.functional.linear(x, w).dtype);
            Assert.Equal(ScalarType.BFloat16, nn.functional.lora_linear(x, w, null, a, b, 0.5).dtype);
            using (autocast(Device.CPU)) Assert.True(is_autocast_enabled(Device.CPU));
            Assert.True(is_autocast_enabled(Device.CPU));
            // Softmax is on libtorch's float32 list.
            Assert.Equal(ScalarType.Float32, nn.functional.softmax(nn.functional.linear(x, w), -1, ScalarType.Float32).dtype);
        }
        Assert.False(is_autocast_enabled(Device.CPU));
        Assert.Equal(ScalarType.Float32, nn.functional.linear(x, w).dtype);
        Assert.Throws<TorchException>(() => autocast(Device.CPU, ScalarType.Float32));
    }

    [Fact]
    public void FusedLoraUnderAutocastMatchesTheFloat64FormulaToBfloat16Precision()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(2);
        var x = randn(new long[] { 16, 32 }, generator: g).requires_grad_(true);
        var w = randn(new long[] { 24, 32 }, generator: g).div(6);
        var a = randn(new long[] { 4, 32 }, generator: g).div(6).requires_grad_(true);
        var b = randn(new long[] { 24, 4 }, generator: g).requires_grad_(true);
        var gy = randn(new long[] { 16, 24 }, generator: g);
        Tensor y;
        using (autocast(Device.CPU)) y = nn.functional.lora_linear(x, w, null, a, b, 2.0);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        y.backward(gy.to_type(ScalarType.BFloat16));
        Assert.Equal(ScalarType.Float32, a.grad!.dtype);
        Assert.Equal(ScalarType.Float32, x.grad!.dtype);
        using var ng = no_grad();
        var (xd, wd, ad, bd, gd) = (x.to_type(ScalarType.Float64), w.to_type(ScalarType.Float64), a.to_type(ScalarType.Float64), b.to_type(ScalarType.Float64), gy.to_type(ScalarType.Float64));
        var z = xd.matmul(ad.t());
        var yRef = xd.matmul(wd.t()) + z.matmul(bd.t()) * 2.0;
        var gb = gd.matmul(bd) * 2.0;
        // bfloat16 keeps 8 bits of mantissa: about 0.4% relative error per rounding; absolute tolerance scaled by the
        // typical magnitude of each quantity.
        SpeedAssert.Close(yRef, y, 0.05 * yRef.abs().mean().ToDouble(), 0.02, "y");
        var dA = gb.t().matmul(xd);
        SpeedAssert.Close(dA, a.grad, 0.05 * dA.abs().mean().ToDouble(), 0.02, "dA");
        var dB = gd.t().matmul(z) * 2.0;
        SpeedAssert.Close(dB, b.grad, 0.05 * dB.abs().mean().ToDouble(), 0.02, "dB");
        var dx = gd.matmul(wd) + gb.matmul(ad);
        SpeedAssert.Close(dx, x.grad, 0.05 * dx.abs().mean().ToDouble(), 0.02, "dx");
    }

    [Fact]
    public void GradScalerUnscalesDetectsOverflowAndAdaptsTheScale()
    {
        using var scope = NewDisposeScope();
        var p1 = randn(3).requires_grad_(true);
        var p2 = randn(2).requires_grad_(true);
        var p3 = randn(2).requires_grad_(true); // no gradient: skipped
        p1.grad = tensor(new float[] { 8, -16, 4 });
        p2.grad = tensor(new float[] { 2, 6 });
        var s = new GradScaler(initScale: 4, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2);
        Assert.False(s.Unscale(new[] { p1, p2, p3 }));
        Assert.Equal(new float[] { 2, -4, 1 }, p1.grad!.ToArray<float>());
        Assert.Equal(new float[] { 0.5f, 1.5f }, p2.grad!.ToArray<float>());
        s.Update(false);
        Assert.Equal(4, s.Scale);
        s.Update(false);
        Assert.Equal(8, s.Scale); // grows after 2 clean steps
        p2.grad = tensor(new float[] { float.PositiveInfinity, 1 });
        Assert.True(s.Unscale(new[] { p1, p2 }));
        s.Update(true);
        Assert.Equal(4, s.Scale);
        Assert.Equal(0, s.GrowthTracker);
        Assert.Equal(1, s.SkippedSteps);
        p2.grad = tensor(new float[] { float.NaN, 1 });
        Assert.True(s.Unscale(new[] { p2 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradScaler(backoffFactor: 1.5));
    }

    /// <summary>A float16 parameter vector fitted to a target: loss = mean((x·w − t)²) computed in float32.</summary>
    private sealed class HalfFit : nn.Module
    {
        public HalfFit() : base(nameof(HalfFit))
        {
            register_parameter("w", new nn.Parameter(zeros(new long[] { 4 }, ScalarType.Float16), true));
        }

        public nn.Parameter W => get_parameter("w");

        public Tensor Loss(Batch b)
        {
            var x = b.InputIds.to_type(ScalarType.Float16);
            var y = (x * W).to_type(ScalarType.Float32).sum(1);
            return (y - b.Labels!.to_type(ScalarType.Float32)).square().mean();
        }
    }

    [Fact]
    public void Float16TrainingSkipsOverflowingStepsBacksOffAndStillFits()
    {
        using var scope = NewDisposeScope();
        using var model = new HalfFit();
        // Inputs x ∈ {−1, 1} per coordinate; target t = x·[1, −1, 0.5, 2].
        var rng = new Random(3);
        var xs = new long[64, 4];
        var ts = new long[64];
        for (int i = 0; i < 64; i++)
        {
            double t = 0;
            double[] wTrue = { 1, -1, 0.5, 2 };
            for (int j = 0; j < 4; j++) { xs[i, j] = 2 * rng.Next(2) - 1; t += xs[i, j] * wTrue[j]; }
            ts[i] = (long)Math.Round(t * 2); // labels carry 2·t (integers); the loss compares with t
        }
        var source = new DelegateBatchSource(64, idx =>
        {
            var ids = new long[idx.Count * 4];
            var labels = new long[idx.Count];
            for (int k = 0; k < idx.Count; k++)
            {
                for (int j = 0; j < 4; j++) ids[k * 4 + j] = xs[idx[k], j];
                labels[k] = ts[idx[k]];
            }
            return new Batch(tensor(ids, new long[] { idx.Count, 4 }), labels: tensor(labels));
        });
        using var trainer = new Trainer(model, b => model.Loss(new Batch(b.InputIds, labels: b.Labels!.to_type(ScalarType.Float32).div(2).to_type(ScalarType.Float32))), new TrainerOptions
        {
            LearningRate = 0.05, BatchSize = 8, MaxSteps = 150, Schedule = LearningRateSchedule.Constant, MaxGradNorm = null,
            InitialLossScale = 1e12, LossScaleGrowthInterval = 1000, Seed = 1,
        });
        Assert.NotNull(trainer.Scaler);
        var result = trainer.Train(source);
        output.WriteLine($"skipped {result.SkippedSteps.Count} steps, final scale {trainer.Scaler!.Scale:G4}, w = [{string.Join(", ", model.W.to_type(ScalarType.Float32).ToArray<float>())}]");
        // 1e12·grad overflows float16 (max 65504) until the scale has halved enough: those steps are skipped, not errors.
        Assert.True(result.SkippedSteps.Count >= 20, $"only {result.SkippedSteps.Count} overflow steps were skipped");
        Assert.All(result.SkippedSteps, s => Assert.Contains("overflow", s.Reason));
        Assert.Equal(1e12 * Math.Pow(0.5, result.SkippedSteps.Count), trainer.Scaler.Scale, 6);
        Assert.Equal(150, result.GlobalStep);
        var w = model.W.to_type(ScalarType.Float64).ToArray<double>();
        double[] expected = { 1, -1, 0.5, 2 };
        for (int j = 0; j < 4; j++) Assert.True(Math.Abs(w[j] - expected[j]) < 0.15, $"w[{j}] = {w[j]} (expected {expected[j]})");
        Assert.Equal(ScalarType.Float16, model.W.dtype);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void MasterWeightsKeepUpdatesSmallerThanBfloat16Resolution(bool masters)
    {
        using var scope = NewDisposeScope();
        using var bag = new ParamBag(("w", ones(new long[] { 3 }, ScalarType.BFloat16), true));
        var w = bag.get_parameter("w");
        var source = new DelegateBatchSource(8, idx => new Batch(zeros(new long[] { idx.Count, 1 }, ScalarType.Int64)));
        // AdamW's step is ≈ lr per step; 1 − 1e-3 rounds back to 1 in bfloat16 (spacing 2⁻⁷ below 1).
        using var trainer = new Trainer(bag, _ => w.to_type(ScalarType.Float32).sum(), new TrainerOptions
        {
            LearningRate = 1e-3, BatchSize = 8, MaxSteps = 30, Schedule = LearningRateSchedule.Constant, MasterWeights = masters, Seed = 1,
        });
        trainer.Train(source);
        var after = w.to_type(ScalarType.Float32).ToArray<float>();
        if (masters)
        {
            // The float32 masters moved by ≈ 30·1e-3 = 0.03; the model holds them rounded to bfloat16.
            Assert.All(after, v => Assert.True(v < 0.98f && v > 0.96f, $"w = {v}"));
            Assert.Equal(ScalarType.Float32, trainer.Optimizer.param_groups[0].Parameters[0].dtype);
        }
        else Assert.All(after, v => Assert.Equal(1f, v));
    }

    [Fact]
    public void Bfloat16BaseWithFloat32AdaptersTrainsUnderAutocastAndLeavesTheBaseUntouched()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.BFloat16);
        var baseBefore = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var peft = LowRankModel.Create(model, new LoraOptions { R = 8, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear });
        Assert.All(peft.named_parameters().Where(p => p.parameter.requires_grad), p => Assert.Equal(ScalarType.Float32, p.parameter.dtype));
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(128, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(32, seed: 2, vocab));
        Tensor Loss(Batch b) => peft.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!;
        using var trainer = new Trainer(peft, Loss, new TrainerOptions
        {
            LearningRate = 1e-2, BatchSize = 8, MaxSteps = 40, WarmupSteps = 4, Schedule = LearningRateSchedule.Cosine, Seed = 3,
            Autocast = ScalarType.BFloat16, ChunkedCrossEntropy = true, GradientCheckpointing = true,
        });
        Assert.Null(trainer.Scaler); // bfloat16 needs no loss scaling
        Assert.True(model.ChunkedCrossEntropy && model.Backbone.GradientCheckpointing);
        double before = trainer.Evaluate(heldOut);
        trainer.Train(train);
        double after = trainer.Evaluate(heldOut);
        output.WriteLine($"bf16 base + fp32 LoRA under autocast: held-out loss {before:F4} -> {after:F4}");
        Assert.True(after < 0.8 * before, $"held-out loss went from {before:F3} to {after:F3}");
        foreach (var (name, p) in peft.named_parameters())
        {
            if (name.Contains("lora_")) continue;
            var key = name.Replace("base_model.model.", "").Replace(".base_layer", "");
            Assert.Equal(ScalarType.BFloat16, p.dtype);
            Assert.True(baseBefore[key].equal(p), $"base weight {name} changed");
        }
    }
}
