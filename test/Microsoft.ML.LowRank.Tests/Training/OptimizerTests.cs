using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>
/// Optimizers against naive float64 loops of their published update rules (written here, independent of the library),
/// over several steps with per-step random gradients.
/// </summary>
public class OptimizerTests
{
    private static double[] RandomArray(Random rng, int n, double scale = 1)
    {
        var a = new double[n];
        for (int i = 0; i < n; i++) a[i] = (rng.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private static void AssertRelClose(double[] expected, double[] actual, double rel, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            var tol = rel * Math.Max(Math.Abs(expected[i]), 1e-3);
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol, $"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (tolerance {tol:G3})");
        }
    }

    /// <summary>The AdamW rule in float64: decoupled decay, moments, bias corrections, optional AMSGrad and maximize.</summary>
    private sealed class NaiveAdamW(double[] theta, double lr, double b1, double b2, double eps, double wd, bool amsgrad, bool maximize)
    {
        private readonly double[] _m = new double[theta.Length], _v = new double[theta.Length], _vmax = new double[theta.Length];
        private int _t;
        public double[] Theta { get; } = (double[])theta.Clone();

        public void Step(double[] grad)
        {
            _t++;
            for (int i = 0; i < Theta.Length; i++)
            {
                double g = maximize ? -grad[i] : grad[i];
                Theta[i] *= 1 - lr * wd;
                _m[i] = b1 * _m[i] + (1 - b1) * g;
                _v[i] = b2 * _v[i] + (1 - b2) * g * g;
                double mHat = _m[i] / (1 - Math.Pow(b1, _t));
                double v = _v[i];
                if (amsgrad) { _vmax[i] = Math.Max(_vmax[i], _v[i]); v = _vmax[i]; }
                double vHat = v / (1 - Math.Pow(b2, _t));
                Theta[i] -= lr * mHat / (Math.Sqrt(vHat) + eps * 1.0);
            }
        }
    }

    [Theory]
    [InlineData(false, false, 0.0, true)]
    [InlineData(false, false, 0.1, true)]
    [InlineData(true, false, 0.05, true)]
    [InlineData(false, true, 0.02, true)]
    [InlineData(true, true, 0.0, true)]
    [InlineData(false, false, 0.1, false)]
    [InlineData(true, false, 0.05, false)]
    [InlineData(false, true, 0.02, false)]
    public void AdamWMatchesTheFloat64Rule(bool amsgrad, bool maximize, double wd, bool fused)
    {
        using var scope = NewDisposeScope();
        var rng = new Random(11);
        const int n = 12, steps = 8;
        const double lr = 0.05, b1 = 0.8, b2 = 0.95, eps = 1e-6;
        var init = RandomArray(rng, n);
        using var p = new nn.Parameter(tensor(init));
        using var opt = optim.AdamW(new[] { p }, lr, b1, b2, eps, wd, amsgrad, maximize, fused);
        var reference = new NaiveAdamW(init, lr, b1, b2, eps, wd, amsgrad, maximize);
        for (int t = 1; t <= steps; t++)
        {
            // Shrinking gradients make v decrease, so AMSGrad's running maximum matters.
            var g = RandomArray(rng, n, 2.0 / (t * t));
            p.grad = tensor(g);
            opt.step();
            reference.Step(g);
            AssertRelClose(reference.Theta, p.ToDoubleArray(), 1e-6, $"step {t} theta");
        }
        Assert.Equal(steps, (int)opt.state(p).Scalars["step"]);
        Assert.Equal(amsgrad, opt.state(p).Tensors.ContainsKey("max_exp_avg_sq"));
    }

    [Fact]
    public void AmsGradChangesTheUpdateWhenTheSecondMomentShrinks()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(5);
        var init = RandomArray(rng, 6);
        var grads = Enumerable.Range(1, 6).Select(t => RandomArray(rng, 6, 3.0 / (t * t))).ToList();
        double[] Run(bool ams)
        {
            using var p = new nn.Parameter(tensor(init));
            using var opt = optim.AdamW(new[] { p }, 0.1, beta2: 0.5, amsgrad: ams, fused: true);
            foreach (var g in grads) { p.grad = tensor(g); opt.step(); }
            return p.ToDoubleArray();
        }
        var plain = Run(false);
        var ams = Run(true);
        Assert.True(plain.Zip(ams).Any(x => Math.Abs(x.First - x.Second) > 1e-4), "AMSGrad made no difference");
    }

    [Fact]
    public void AdamWFloat32MatchesTheFloat64RuleWithinFloat32Precision()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(21);
        const int n = 64;
        var init = RandomArray(rng, n);
        using var p = new nn.Parameter(tensor(init, dtype: ScalarType.Float32));
        using var opt = optim.AdamW(new[] { p }, 1e-2, weight_decay: 0.01);
        var reference = new NaiveAdamW(init.Select(v => (double)(float)v).ToArray(), 1e-2, 0.9, 0.999, 1e-8, 0.01, false, false);
        for (int t = 1; t <= 5; t++)
        {
            var g = RandomArray(rng, n).Select(v => (double)(float)v).ToArray();
            p.grad = tensor(g, dtype: ScalarType.Float32);
            opt.step();
            reference.Step(g);
        }
        AssertRelClose(reference.Theta, p.ToDoubleArray(), 1e-5, "theta");
    }

    [Fact]
    public void FusedAndOpByOpAdamWAgree()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(8);
        // float32 contiguous takes the single-pass kernel; bfloat16 and a transposed (strided) parameter take the native
        // op sequence, which must equal the managed op sequence bit for bit.
        foreach (var (dtype, transposed, exact) in new[] { (ScalarType.Float32, false, false), (ScalarType.BFloat16, false, true), (ScalarType.Float32, true, true), (ScalarType.Float64, false, false) })
        {
            var init = RandomArray(rng, 40 * 30);
            var grads = Enumerable.Range(0, 5).Select(_ => RandomArray(rng, 40 * 30)).ToList();
            Tensor Make(double[] d)
            {
                var t = tensor(d, new long[] { 40, 30 }, dtype);
                return transposed ? t.t() : t;
            }
            float[] Run(bool fused, bool amsgrad)
            {
                using var p = new nn.Parameter(Make(init));
                Assert.Equal(!transposed, p.is_contiguous());
                using var opt = optim.AdamW(new[] { p }, 1e-2, weight_decay: 0.1, amsgrad: amsgrad, fused: fused);
                foreach (var g in grads) { p.grad = Make(g); opt.step(); }
                return p.ToSingleArray();
            }
            foreach (var ams in new[] { false, true })
            {
                var a = Run(true, ams);
                var b = Run(false, ams);
                if (exact) Assert.Equal(b, a);
                else for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - b[i]) <= 1e-6 * Math.Max(1, Math.Abs(b[i])), $"{dtype} [{i}]: {a[i]} vs {b[i]}");
            }
        }
    }

    [Fact]
    public void ParameterGroupsUseTheirOwnHyperParametersAndDefaultsFillTheRest()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(2);
        var a0 = RandomArray(rng, 4);
        var b0 = RandomArray(rng, 3);
        using var a = new nn.Parameter(tensor(a0));
        using var b = new nn.Parameter(tensor(b0));
        var groups = new[]
        {
            new optim.ParamGroup(new[] { a }, lr: 0.2, weight_decay: 0.1, name: "fast"),
            new optim.ParamGroup(new[] { b }, beta1: 0.5),
        };
        using var opt = optim.AdamW(groups, lr: 0.01, weight_decay: 0.0);
        Assert.Equal(0.2, opt.param_groups[0].LearningRate);
        Assert.Equal(0.9, opt.param_groups[0].Beta1);
        Assert.Equal(0.01, opt.param_groups[1].LearningRate);
        Assert.Equal(0.5, opt.param_groups[1].Beta1);
        Assert.Equal(0.0, opt.param_groups[1].WeightDecay);
        var ra = new NaiveAdamW(a0, 0.2, 0.9, 0.999, 1e-8, 0.1, false, false);
        var rb = new NaiveAdamW(b0, 0.01, 0.5, 0.999, 1e-8, 0.0, false, false);
        for (int t = 0; t < 4; t++)
        {
            var ga = RandomArray(rng, 4);
            var gb = RandomArray(rng, 3);
            a.grad = tensor(ga);
            b.grad = tensor(gb);
            opt.step();
            ra.Step(ga);
            rb.Step(gb);
        }
        AssertRelClose(ra.Theta, a.ToDoubleArray(), 1e-6, "group 0");
        AssertRelClose(rb.Theta, b.ToDoubleArray(), 1e-6, "group 1");
    }

    [Fact]
    public void ParametersWithoutGradientAreLeftUntouched()
    {
        using var scope = NewDisposeScope();
        using var a = new nn.Parameter(tensor(new[] { 1.0, 2.0 }));
        using var b = new nn.Parameter(tensor(new[] { 3.0 }));
        using var opt = optim.AdamW(new[] { a, b }, 0.1, weight_decay: 0.5);
        a.grad = tensor(new[] { 1.0, -1.0 });
        opt.step();
        Assert.Equal(new[] { 3.0 }, b.ToDoubleArray());
        Assert.False(opt.has_state(b));
        Assert.True(opt.has_state(a));
    }

    /// <summary>SGD in float64: L2 decay added to the gradient, momentum buffer seeded with the first gradient, dampening, Nesterov.</summary>
    private static double[] NaiveSgd(double[] theta, IReadOnlyList<double[]> grads, double lr, double mu, double dampening, double wd, bool nesterov, bool maximize)
    {
        var x = (double[])theta.Clone();
        double[]? buf = null;
        foreach (var grad in grads)
        {
            var d = new double[x.Length];
            for (int i = 0; i < x.Length; i++) d[i] = (maximize ? -grad[i] : grad[i]) + wd * x[i];
            if (mu != 0)
            {
                if (buf is null) buf = (double[])d.Clone();
                else for (int i = 0; i < x.Length; i++) buf[i] = mu * buf[i] + (1 - dampening) * d[i];
                for (int i = 0; i < x.Length; i++) d[i] = nesterov ? d[i] + mu * buf[i] : buf[i];
            }
            for (int i = 0; i < x.Length; i++) x[i] -= lr * d[i];
        }
        return x;
    }

    [Theory]
    [InlineData(0.0, 0.0, 0.0, false, false)]
    [InlineData(0.9, 0.0, 0.0, false, false)]
    [InlineData(0.9, 0.0, 0.01, true, false)]
    [InlineData(0.8, 0.3, 0.05, false, false)]
    [InlineData(0.5, 0.0, 0.0, true, true)]
    [InlineData(0.0, 0.0, 0.1, false, true)]
    public void SgdMatchesTheFloat64Rule(double momentum, double dampening, double wd, bool nesterov, bool maximize)
    {
        using var scope = NewDisposeScope();
        var rng = new Random(9);
        var init = RandomArray(rng, 10);
        var grads = Enumerable.Range(0, 7).Select(_ => RandomArray(rng, 10)).ToList();
        using var p = new nn.Parameter(tensor(init));
        using var opt = optim.SGD(new[] { p }, 0.1, momentum, dampening, wd, nesterov, maximize);
        for (int t = 0; t < grads.Count; t++)
        {
            p.grad = tensor(grads[t]);
            opt.step();
            AssertRelClose(NaiveSgd(init, grads.Take(t + 1).ToList(), 0.1, momentum, dampening, wd, nesterov, maximize), p.ToDoubleArray(), 1e-9, $"step {t + 1}");
        }
        Assert.Equal(momentum != 0, opt.has_state(p));
    }

    [Fact]
    public void StateDictRoundTripContinuesBitIdentically()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(4);
        var init = RandomArray(rng, 8).Select(v => (double)(float)v).ToArray();
        var grads = Enumerable.Range(0, 6).Select(_ => RandomArray(rng, 8)).ToList();
        foreach (var kind in new[] { "adamw", "adamw-ams", "sgd" })
        {
            optim.Optimizer Make(nn.Parameter p) => kind switch
            {
                "adamw" => optim.AdamW(new[] { new optim.ParamGroup(new[] { p }, lr: 0.03, weight_decay: 0.1) }),
                "adamw-ams" => optim.AdamW(new[] { p }, 0.02, amsgrad: true),
                _ => optim.SGD(new[] { p }, 0.05, momentum: 0.9, nesterov: true),
            };
            using var a = new nn.Parameter(tensor(init, dtype: ScalarType.Float32));
            using var optA = Make(a);
            foreach (var g in grads) { a.grad = tensor(g, dtype: ScalarType.Float32); optA.step(); }

            using var b = new nn.Parameter(tensor(init, dtype: ScalarType.Float32));
            using var optB = Make(b);
            for (int t = 0; t < 3; t++) { b.grad = tensor(grads[t], dtype: ScalarType.Float32); optB.step(); }
            using var saved = optB.state_dict();
            using var c = new nn.Parameter(b.detach().clone());
            using var optC = Make(c);
            optC.load_state_dict(saved);
            optB.Dispose(); // the restored state must not share storage with the old optimizer
            for (int t = 3; t < grads.Count; t++) { c.grad = tensor(grads[t], dtype: ScalarType.Float32); optC.step(); }
            Assert.Equal(a.ToArray<float>(), c.ToArray<float>());
        }
    }

    [Fact]
    public void LoadStateDictRejectsAMismatchedOptimizer()
    {
        using var scope = NewDisposeScope();
        using var a = new nn.Parameter(randn(3));
        using var b = new nn.Parameter(randn(2, 2));
        using var opt = optim.AdamW(new[] { a, b }, 0.1);
        a.grad = ones(3);
        b.grad = ones(2, 2);
        opt.step();
        using var saved = opt.state_dict();
        using var other = optim.AdamW(new[] { new optim.ParamGroup(new[] { a }), new optim.ParamGroup(new[] { b }) }, 0.1);
        var e = Assert.Throws<ArgumentException>(() => other.load_state_dict(saved));
        Assert.Contains("parameter group", e.Message);
        using var c = new nn.Parameter(randn(3));
        using var d = new nn.Parameter(randn(4));
        using var wrongShape = optim.AdamW(new[] { c, d }, 0.1);
        var e2 = Assert.Throws<ArgumentException>(() => wrongShape.load_state_dict(saved));
        Assert.Contains("shape", e2.Message);
    }

    [Fact]
    public void ResetStateMakesTheNextStepAFirstStep()
    {
        using var scope = NewDisposeScope();
        using var p = new nn.Parameter(tensor(new[] { 1.0, -2.0, 0.5 }));
        using var q = new nn.Parameter(tensor(new[] { 1.0, -2.0, 0.5 }));
        using var opt = optim.AdamW(new[] { p }, 0.1);
        using var fresh = optim.AdamW(new[] { q }, 0.1);
        p.grad = tensor(new[] { 5.0, 5.0, 5.0 });
        opt.step();
        opt.reset_state(p);
        Assert.False(opt.has_state(p));
        using (no_grad()) q.copy_(p);
        p.grad = tensor(new[] { 0.1, -0.2, 0.3 });
        q.grad = tensor(new[] { 0.1, -0.2, 0.3 });
        opt.step();
        fresh.step();
        Assert.Equal(q.ToDoubleArray(), p.ToDoubleArray());
    }

    [Fact]
    public void ZeroGradClearsOrZeroes()
    {
        using var scope = NewDisposeScope();
        using var p = new nn.Parameter(randn(3));
        using var opt = optim.SGD(new[] { p }, 0.1);
        p.grad = ones(3);
        opt.zero_grad(set_to_none: false);
        Assert.Equal(new float[3], p.grad!.ToArray<float>());
        opt.zero_grad();
        Assert.Null(p.grad);
    }

    [Fact]
    public void BadHyperParametersAndDuplicateParametersThrow()
    {
        using var scope = NewDisposeScope();
        using var p = new nn.Parameter(randn(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => optim.AdamW(new[] { p }, lr: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => optim.AdamW(new[] { p }, beta1: 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => optim.AdamW(new[] { p }, weight_decay: -0.1));
        var e = Assert.Throws<ArgumentException>(() => optim.SGD(new[] { p }, 0.1, nesterov: true));
        Assert.Contains("Nesterov", e.Message);
        var dup = Assert.Throws<ArgumentException>(() => optim.SGD(new[] { new optim.ParamGroup(new[] { p }), new optim.ParamGroup(new[] { p }) }, 0.1));
        Assert.Contains("more than one group", dup.Message);
        var unresolved = new optim.ParamGroup(new[] { p });
        Assert.Throws<InvalidOperationException>(() => unresolved.LearningRate);
        Assert.Throws<ArgumentException>(() => optim.AdamW(Array.Empty<optim.ParamGroup>()));
    }
}
