using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>Learning-rate schedules against their closed forms; gradient clipping against hand-computed norms.</summary>
public class ScheduleAndClipTests
{
    private const double BaseLr = 0.3;

    private static (nn.Parameter p, optim.Optimizer opt) Setup()
    {
        var p = new nn.Parameter(zeros(2));
        return (p, optim.SGD(new[] { p }, BaseLr));
    }

    /// <summary>Walks a scheduler for <paramref name="steps"/> steps and returns the rate in force at each step counter.</summary>
    private static double[] Walk(optim.lr_scheduler.LRScheduler s, int steps)
    {
        var lrs = new double[steps];
        for (int i = 0; i < steps; i++)
        {
            lrs[i] = s.optimizer.param_groups[0].LearningRate;
            Assert.Equal(lrs[i], s.get_last_lr()[0]);
            s.step();
        }
        return lrs;
    }

    private static void AssertSchedule(Func<int, double> factor, double[] lrs)
    {
        for (int k = 0; k < lrs.Length; k++)
            Assert.True(Math.Abs(BaseLr * factor(k) - lrs[k]) <= 1e-15, $"step {k}: expected {BaseLr * factor(k):R}, got {lrs[k]:R}");
    }

    [Fact]
    public void LinearWithWarmupRampsThenDecaysToZero()
    {
        var (p, opt) = Setup();
        using (p) using (opt)
        {
            const int w = 4, total = 10;
            var lrs = Walk(optim.lr_scheduler.get_linear_schedule_with_warmup(opt, w, total), 14);
            // Warmup: k/w; decay: a straight line from 1 at k = w to 0 at k = total; nothing below 0 afterwards.
            AssertSchedule(k => k < w ? k / 4.0 : Math.Max(0, 1 - (k - w) / 6.0), lrs);
            Assert.Equal(0.0, lrs[0]);
            Assert.Equal(BaseLr, lrs[w]);
            Assert.Equal(0.0, lrs[total]);
            Assert.Equal(0.0, lrs[13]);
        }
    }

    [Fact]
    public void LinearWithoutWarmupStartsAtTheBaseRate()
    {
        var (p, opt) = Setup();
        using (p) using (opt)
        {
            var lrs = Walk(optim.lr_scheduler.get_linear_schedule_with_warmup(opt, 0, 5), 6);
            AssertSchedule(k => (5 - k) / 5.0, lrs);
        }
    }

    [Fact]
    public void CosineWithWarmupFollowsHalfACosine()
    {
        var (p, opt) = Setup();
        using (p) using (opt)
        {
            const int w = 3, total = 13;
            var lrs = Walk(optim.lr_scheduler.get_cosine_schedule_with_warmup(opt, w, total), total + 1);
            AssertSchedule(k => k < w ? k / 3.0 : (1 + Math.Cos(Math.PI * (k - w) / 10.0)) / 2, lrs);
            Assert.True(Math.Abs(lrs[total]) < 1e-16, "the rate reaches 0 at the last step");
            Assert.True(Math.Abs(lrs[8] - BaseLr / 2) < 1e-15, "the midpoint of the decay is half the peak");
        }
    }

    [Fact]
    public void CosineWithMoreCyclesRisesAgain()
    {
        var (p, opt) = Setup();
        using (p) using (opt)
        {
            var lrs = Walk(optim.lr_scheduler.get_cosine_schedule_with_warmup(opt, 0, 8, num_cycles: 1.0), 9);
            // One full cosine wave: 1 at 0, 0 at the middle, back to 1 at the end.
            AssertSchedule(k => (1 + Math.Cos(2 * Math.PI * k / 8.0)) / 2, lrs);
        }
    }

    [Fact]
    public void ConstantSchedules()
    {
        var (p, opt) = Setup();
        using (p) using (opt)
        {
            AssertSchedule(k => k < 5 ? k / 5.0 : 1.0, Walk(optim.lr_scheduler.get_constant_schedule_with_warmup(opt, 5), 9));
        }
        var (p2, opt2) = Setup();
        using (p2) using (opt2)
        {
            AssertSchedule(_ => 1.0, Walk(optim.lr_scheduler.get_constant_schedule(opt2), 4));
        }
    }

    [Fact]
    public void LambdaLRScalesEveryGroupFromItsOwnBaseRate()
    {
        using var scope = NewDisposeScope();
        using var a = new nn.Parameter(zeros(1));
        using var b = new nn.Parameter(zeros(1));
        using var opt = optim.AdamW(new[] { new optim.ParamGroup(new[] { a }, lr: 0.1), new optim.ParamGroup(new[] { b }, lr: 1.6) });
        var s = optim.lr_scheduler.LambdaLR(opt, k => 1.0 / (k + 1));
        for (int k = 0; k < 5; k++)
        {
            Assert.Equal(0.1 / (k + 1), opt.param_groups[0].LearningRate, 15);
            Assert.Equal(1.6 / (k + 1), opt.param_groups[1].LearningRate, 15);
            Assert.Equal(16.0, opt.param_groups[1].LearningRate / opt.param_groups[0].LearningRate, 12);
            s.step();
        }
        Assert.Equal(5, s.last_epoch);
        Assert.Equal(new[] { 0.1, 1.6 }, s.base_lrs);
    }

    [Fact]
    public void SchedulerStateRestoresTheRateAndTheContinuation()
    {
        var (p, opt) = Setup();
        var (q, opt2) = Setup();
        using (p) using (opt) using (q) using (opt2)
        {
            var s = optim.lr_scheduler.get_cosine_schedule_with_warmup(opt, 2, 20);
            for (int i = 0; i < 7; i++) s.step();
            var state = s.state_dict();
            var s2 = optim.lr_scheduler.get_cosine_schedule_with_warmup(opt2, 2, 20);
            s2.load_state_dict(state);
            Assert.Equal(opt.param_groups[0].LearningRate, opt2.param_groups[0].LearningRate);
            for (int i = 0; i < 5; i++)
            {
                s.step();
                s2.step();
                Assert.Equal(opt.param_groups[0].LearningRate, opt2.param_groups[0].LearningRate);
            }
            Assert.Throws<ArgumentException>(() => s2.load_state_dict(new optim.lr_scheduler.SchedulerState(3, new[] { 0.1, 0.2 })));
        }
    }

    // ---------------------------------------------------------------- clip_grad_norm_

    private static nn.Parameter WithGrad(double[] value, long[] shape, ScalarType dtype = ScalarType.Float64)
    {
        var p = new nn.Parameter(zeros(shape, dtype));
        p.grad = tensor(value, shape, dtype);
        return p;
    }

    [Fact]
    public void ClipGradNormScalesByMaxNormOverTotalNormPlusEps()
    {
        using var scope = NewDisposeScope();
        using var a = WithGrad(new[] { 3.0, 4.0 }, new long[] { 2 });
        using var b = WithGrad(new[] { 12.0 }, new long[] { 1, 1 });
        using var c = new nn.Parameter(ones(new long[] { 3 }, ScalarType.Float64)); // no gradient: ignored
        double total = nn.utils.clip_grad_norm_(new Tensor[] { a, b, c }, 6.5);
        Assert.Equal(13.0, total, 12); // sqrt(3² + 4² + 12²)
        double coef = 6.5 / (13.0 + 1e-6);
        var ga = a.grad!.ToDoubleArray();
        var gb = b.grad!.ToDoubleArray();
        Assert.Equal(3 * coef, ga[0], 12);
        Assert.Equal(4 * coef, ga[1], 12);
        Assert.Equal(12 * coef, gb[0], 12);
        Assert.Null(c.grad);
    }

    [Fact]
    public void ClipGradNormLeavesSmallGradientsExactlyAlone()
    {
        using var scope = NewDisposeScope();
        using var a = WithGrad(new[] { 0.3, -0.4 }, new long[] { 2 }, ScalarType.Float32);
        var before = a.grad!.ToArray<float>();
        double total = nn.utils.clip_grad_norm_(new Tensor[] { a }, 1.0);
        Assert.Equal(0.5, total, 6);
        Assert.Equal(before, a.grad!.ToArray<float>());
    }

    [Fact]
    public void ClipGradNormOtherOrders()
    {
        using var scope = NewDisposeScope();
        using var a = WithGrad(new[] { 3.0, -4.0 }, new long[] { 2 });
        using var b = WithGrad(new[] { -12.0 }, new long[] { 1 });
        Assert.Equal(12.0, nn.utils.clip_grad_norm_(new Tensor[] { a, b }, 100, double.PositiveInfinity), 12);
        Assert.Equal(19.0, nn.utils.clip_grad_norm_(new Tensor[] { a, b }, 100, 1.0), 12);
        double t = nn.utils.clip_grad_norm_(new Tensor[] { a, b }, 1.0, 1.0);
        Assert.Equal(19.0, t, 12);
        Assert.Equal(-12.0 / (19.0 + 1e-6), b.grad!.ToDoubleArray()[0], 12);
    }

    [Fact]
    public void ClipGradNormEdgeCases()
    {
        using var scope = NewDisposeScope();
        using var none = new nn.Parameter(ones(2));
        Assert.Equal(0.0, nn.utils.clip_grad_norm_(new Tensor[] { none }, 1.0));
        using var bad = WithGrad(new[] { double.NaN, 1.0 }, new long[] { 2 });
        Assert.True(double.IsNaN(nn.utils.clip_grad_norm_(new Tensor[] { bad }, 1.0)));
        bad.grad = tensor(new[] { double.PositiveInfinity, 1.0 });
        var e = Assert.Throws<ArgumentException>(() => nn.utils.clip_grad_norm_(new Tensor[] { bad }, 1.0, error_if_nonfinite: true));
        Assert.Contains("Infinity", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => nn.utils.clip_grad_norm_(new Tensor[] { bad }, -1.0));
    }

    [Fact]
    public void ClipGradNormMixedPrecisionGradients()
    {
        using var scope = NewDisposeScope();
        using var a = WithGrad(new[] { 3.0, 4.0 }, new long[] { 2 }, ScalarType.Float32);
        using var b = WithGrad(new[] { 12.0 }, new long[] { 1 }, ScalarType.BFloat16);
        Assert.Equal(13.0, nn.utils.clip_grad_norm_(new Tensor[] { a, b }, 1e9), 5);
    }
}
