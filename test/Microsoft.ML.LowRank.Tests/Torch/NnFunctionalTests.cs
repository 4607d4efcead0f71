using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;
using F = Microsoft.ML.LowRank.Torch.torch.nn.functional;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>
/// torch.nn.functional against naive float64 references written here. Tolerances: float64 results 1e-12 (absolute
/// plus relative) unless stated; float32 1e-5; float16 2e-3 relative.
/// </summary>
public class NnFunctionalTests
{
    // ---------------- reference helpers ----------------

    private static double[] Rand(int n, int seed, double scale = 1)
    {
        var r = new Random(seed);
        var a = new double[n];
        for (int i = 0; i < n; i++) a[i] = (r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    private static void Close(double[] expected, double[] actual, double atol = 1e-12, double rtol = 1e-12)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            var e = expected[i];
            var a = actual[i];
            if (double.IsNaN(e)) { Assert.True(double.IsNaN(a), $"element {i}: expected NaN, got {a}"); continue; }
            if (double.IsInfinity(e)) { Assert.Equal(e, a); continue; }
            Assert.True(Math.Abs(e - a) <= atol + rtol * Math.Abs(e), $"element {i}: expected {e:R}, got {a:R}");
        }
    }

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>erf by its Maclaurin series; for |x| &lt;= 3 the cancellation keeps the absolute error below ~1e-13.</summary>
    private static double Erf(double x)
    {
        if (Math.Abs(x) > 3) throw new ArgumentOutOfRangeException(nameof(x), "series used only for |x| <= 3");
        double sum = 0, term = x; // term = (-1)^n x^(2n+1) / n!
        for (int n = 0; n < 200; n++)
        {
            var t = term / (2 * n + 1);
            sum += t;
            if (Math.Abs(t) < 1e-18) break;
            term *= -x * x / (n + 1);
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    private static double[] RefSoftmaxRows(double[] x, int rows, int cols, bool log)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double m = double.NegativeInfinity;
            for (int c = 0; c < cols; c++) m = Math.Max(m, x[r * cols + c]);
            double s = 0;
            for (int c = 0; c < cols; c++) s += Math.Exp(x[r * cols + c] - m);
            for (int c = 0; c < cols; c++)
                y[r * cols + c] = log ? x[r * cols + c] - m - Math.Log(s) : Math.Exp(x[r * cols + c] - m) / s;
        }
        return y;
    }

    // ---------------- linear ----------------

    [Fact]
    public void LinearMatchesLoops()
    {
        using var scope = NewDisposeScope();
        var xd = Rand(2 * 3 * 4, 1);
        var wd = Rand(5 * 4, 2);
        var bd = Rand(5, 3);
        var expected = new double[2 * 3 * 5];
        var expectedNoBias = new double[2 * 3 * 5];
        for (int r = 0; r < 6; r++)
            for (int o = 0; o < 5; o++)
            {
                double s = 0;
                for (int i = 0; i < 4; i++) s += xd[r * 4 + i] * wd[o * 4 + i];
                expectedNoBias[r * 5 + o] = s;
                expected[r * 5 + o] = s + bd[o];
            }
        var x = tensor(xd, new long[] { 2, 3, 4 });
        var w = tensor(wd, new long[] { 5, 4 });
        var b = tensor(bd);
        var y = F.linear(x, w, b);
        Assert.Equal(new long[] { 2, 3, 5 }, y.shape);
        Close(expected, y.ToDoubleArray());
        Close(expectedNoBias, F.linear(x, w).ToDoubleArray());
        // float32: same numbers within single precision
        var y32 = F.linear(x.to_type(float32), w.to_type(float32), b.to_type(float32));
        Assert.Equal(ScalarType.Float32, y32.dtype);
        Close(expected, y32.ToDoubleArray(), 1e-5, 1e-5);
    }

    [Fact]
    public void LinearGradCheck()
    {
        using var scope = NewDisposeScope();
        var x = tensor(Rand(6, 4), new long[] { 2, 3 }, requires_grad: true);
        var w = tensor(Rand(6, 5), new long[] { 2, 3 }, requires_grad: true);
        var b = tensor(Rand(2, 6), requires_grad: true);
        GradCheck.Assert(t => F.linear(t[0], t[1], t[2]), new[] { x, w, b });
    }

    [Fact]
    public void LinearWithMismatchedInFeaturesThrowsNamingShapes()
    {
        using var scope = NewDisposeScope();
        var x = ones(2, 3);
        var w = ones(4, 5);
        var ex = Assert.Throws<TorchException>(() => F.linear(x, w));
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4, 5]", ex.Message);
        Assert.Contains("in_features", ex.Message);
        // the process keeps working
        Assert.Equal(new long[] { 2, 4 }, F.linear(x, ones(4, 3)).shape);
    }

    // ---------------- layer_norm / rms_norm ----------------

    private static double[] RefLayerNorm(double[] x, int rows, int n, double[]? w, double[]? b, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double m = 0;
            for (int i = 0; i < n; i++) m += x[r * n + i];
            m /= n;
            double v = 0;
            for (int i = 0; i < n; i++) v += (x[r * n + i] - m) * (x[r * n + i] - m);
            v /= n;
            for (int i = 0; i < n; i++)
                y[r * n + i] = (x[r * n + i] - m) / Math.Sqrt(v + eps) * (w?[i] ?? 1) + (b?[i] ?? 0);
        }
        return y;
    }

    [Fact]
    public void LayerNormMatchesLoops()
    {
        using var scope = NewDisposeScope();
        var xd = Rand(2 * 3 * 4, 7, 3);
        var wd = Rand(4, 8);
        var bd = Rand(4, 9);
        var x = tensor(xd, new long[] { 2, 3, 4 });
        Close(RefLayerNorm(xd, 6, 4, wd, bd, 1e-5), F.layer_norm(x, new long[] { 4 }, tensor(wd), tensor(bd)).ToDoubleArray());
        Close(RefLayerNorm(xd, 6, 4, null, null, 1e-5), F.layer_norm(x, new long[] { 4 }).ToDoubleArray());
        // over the last two dims, eps 0.1
        var w2 = Rand(12, 10);
        Close(RefLayerNorm(xd, 2, 12, w2, null, 0.1), F.layer_norm(x, new long[] { 3, 4 }, tensor(w2, new long[] { 3, 4 }), eps: 0.1).ToDoubleArray());
        // bad normalized_shape
        var ex = Assert.Throws<TorchException>(() => F.layer_norm(x, new long[] { 5 }));
        Assert.Contains("normalized_shape", ex.Message);
    }

    [Fact]
    public void LayerNormGradCheck()
    {
        using var scope = NewDisposeScope();
        var x = tensor(Rand(6, 11, 2), new long[] { 2, 3 }, requires_grad: true);
        var w = tensor(Rand(3, 12), requires_grad: true);
        var b = tensor(Rand(3, 13), requires_grad: true);
        GradCheck.Assert(t => F.layer_norm(t[0], new long[] { 3 }, t[1], t[2]), new[] { x, w, b });
    }

    private static double[] RefRmsNorm(double[] x, int rows, int n, double[]? w, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            double ms = 0;
            for (int i = 0; i < n; i++) ms += x[r * n + i] * x[r * n + i];
            ms /= n;
            var inv = 1 / Math.Sqrt(ms + eps);
            for (int i = 0; i < n; i++) y[r * n + i] = x[r * n + i] * inv * (w?[i] ?? 1);
        }
        return y;
    }

    [Fact]
    public void RmsNormMatchesFormula()
    {
        using var scope = NewDisposeScope();
        var xd = Rand(2 * 3 * 4, 14, 2);
        var wd = Rand(4, 15);
        var x = tensor(xd, new long[] { 2, 3, 4 });
        Close(RefRmsNorm(xd, 6, 4, wd, 1e-6), F.rms_norm(x, new long[] { 4 }, tensor(wd), 1e-6).ToDoubleArray());
        Close(RefRmsNorm(xd, 6, 4, null, 0.5), F.rms_norm(x, new long[] { 4 }, eps: 0.5).ToDoubleArray());
        // default eps of a float64 input: double machine epsilon
        Close(RefRmsNorm(xd, 6, 4, null, Math.Pow(2, -52)), F.rms_norm(x, new long[] { 4 }).ToDoubleArray());
        // two trailing dims
        var w2 = Rand(12, 16);
        Close(RefRmsNorm(xd, 2, 12, w2, 1e-5), F.rms_norm(x, new long[] { 3, 4 }, tensor(w2, new long[] { 3, 4 }), 1e-5).ToDoubleArray());
        // float32
        var y32 = F.rms_norm(x.to_type(float32), new long[] { 4 }, tensor(wd).to_type(float32), 1e-6);
        Assert.Equal(ScalarType.Float32, y32.dtype);
        Close(RefRmsNorm(xd, 6, 4, wd, 1e-6), y32.ToDoubleArray(), 1e-5, 1e-5);
    }

    [Fact]
    public void RmsNormOfHalfComputesInFloat32AndCastsBack()
    {
        using var scope = NewDisposeScope();
        var x16 = tensor(Rand(3 * 8, 17, 4), new long[] { 3, 8 }).to_type(float16);
        var w16 = tensor(Rand(8, 18), new long[] { 8 }).to_type(float16);
        var xd = x16.ToDoubleArray(); // the half values themselves
        var wd = w16.ToDoubleArray();
        var y = F.rms_norm(x16, new long[] { 8 }, w16, 1e-6);
        Assert.Equal(ScalarType.Float16, y.dtype);
        // HF LLaMA: w * half(x * rsqrt(mean(x^2) + eps)) with the normalisation in float32
        var normed = RefRmsNorm(xd, 3, 8, null, 1e-6);
        var expected = new double[normed.Length];
        for (int i = 0; i < normed.Length; i++) expected[i] = (double)(Half)((double)(Half)normed[i] * wd[i % 8]);
        var got = y.ToDoubleArray();
        // one half ulp of slack for the float32 (not float64) normalisation rounding differently before the cast
        Close(expected, got, 1e-3, 2e-3);
        // a huge value squares beyond float16's range: computing in half would overflow to inf and give zeros
        var big = tensor(new double[] { 300, 400 }, new long[] { 1, 2 }).to_type(float16);
        Close(new[] { 300 / Math.Sqrt(125000.0), 400 / Math.Sqrt(125000.0) }, F.rms_norm(big, new long[] { 2 }, eps: 1e-6).ToDoubleArray(), 1e-3, 1e-3);
    }

    [Fact]
    public void RmsNormGradCheckAndBadShape()
    {
        using var scope = NewDisposeScope();
        var x = tensor(Rand(6, 19, 2), new long[] { 2, 3 }, requires_grad: true);
        var w = tensor(Rand(3, 20), requires_grad: true);
        GradCheck.Assert(t => F.rms_norm(t[0], new long[] { 3 }, t[1], 1e-5), new[] { x, w });
        var ex = Assert.Throws<TorchException>(() => F.rms_norm(ones(2, 3), new long[] { 4 }));
        Assert.Contains("[4]", ex.Message);
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Throws<TorchException>(() => F.rms_norm(ones(2, 3), new long[] { 3 }, ones(4)));
    }

    // ---------------- softmax ----------------

    [Fact]
    public void SoftmaxAndLogSoftmaxMatchLoops()
    {
        using var scope = NewDisposeScope();
        var xd = Rand(3 * 5, 21, 4);
        var x = tensor(xd, new long[] { 3, 5 });
        var p = F.softmax(x, 1).ToDoubleArray();
        Close(RefSoftmaxRows(xd, 3, 5, false), p);
        Close(RefSoftmaxRows(xd, 3, 5, true), F.log_softmax(x, -1).ToDoubleArray());
        for (int r = 0; r < 3; r++)
        {
            double s = 0;
            for (int c = 0; c < 5; c++) { s += p[r * 5 + c]; Assert.True(p[r * 5 + c] > 0); }
            Assert.True(Math.Abs(s - 1) < 1e-14, $"row {r} sums to {s:R}");
        }
        // dim 0: the reference on the transposed data
        var xt = new double[15];
        for (int r = 0; r < 3; r++) for (int c = 0; c < 5; c++) xt[c * 3 + r] = xd[r * 5 + c];
        var refT = RefSoftmaxRows(xt, 5, 3, false);
        var p0 = F.softmax(x, 0).ToDoubleArray();
        for (int r = 0; r < 3; r++) for (int c = 0; c < 5; c++) Assert.True(Math.Abs(refT[c * 3 + r] - p0[r * 5 + c]) < 1e-14);
        // large values stay finite
        var big = F.log_softmax(tensor(new double[] { 1000, 0, -1000 }), 0).ToDoubleArray();
        Close(new double[] { 0, -1000, -2000 }, big);
        // dtype argument
        var p64 = F.softmax(x.to_type(float32), 1, float64);
        Assert.Equal(ScalarType.Float64, p64.dtype);
        Close(RefSoftmaxRows(xd, 3, 5, false), p64.ToDoubleArray(), 1e-6, 1e-6);
        Assert.Throws<TorchException>(() => F.softmax(x, 2));
    }

    [Fact]
    public void SoftmaxGradCheck()
    {
        using var scope = NewDisposeScope();
        var x = tensor(Rand(6, 22, 2), new long[] { 2, 3 }, requires_grad: true);
        GradCheck.Assert(t => F.softmax(t[0], 1), new[] { x });
        GradCheck.Assert(t => F.log_softmax(t[0], 0), new[] { x });
    }

    // ---------------- activations ----------------

    [Fact]
    public void ErfReferenceHitsKnownValues()
    {
        Assert.True(Math.Abs(Erf(0.5) - 0.5204998778130465) < 1e-15);
        Assert.True(Math.Abs(Erf(1) - 0.8427007929497149) < 1e-15);
        Assert.True(Math.Abs(Erf(2) - 0.9953222650189527) < 1e-14);
        Assert.True(Math.Abs(Erf(-2.5) + 0.9995930479825550) < 1e-13);
    }

    private static readonly double[] ActPoints = { -4, -3, -2.5, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 1.7, 3, 4 };

    [Fact]
    public void GeluBothFormsMatchFormulas()
    {
        using var scope = NewDisposeScope();
        var x = tensor(ActPoints);
        var exact = ActPoints.Select(v => 0.5 * v * (1 + Erf(v / Math.Sqrt(2)))).ToArray();
        var approx = ActPoints.Select(v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))).ToArray();
        Close(exact, F.gelu(x).ToDoubleArray(), 1e-13, 1e-12);
        Close(approx, F.gelu(x, "tanh").ToDoubleArray(), 1e-13, 1e-12);
        Close(exact, F.gelu(x.to_type(float32)).ToDoubleArray(), 1e-6, 1e-6);
        // the two forms differ measurably (so each test above is checking its own form)
        Assert.True(Math.Abs(exact[3] - approx[3]) > 1e-5);
        var ex = Assert.Throws<ArgumentException>(() => F.gelu(x, "fast"));
        Assert.Contains("tanh", ex.Message);
    }

    [Fact]
    public void PointwiseActivationsMatchFormulas()
    {
        using var scope = NewDisposeScope();
        var x = tensor(ActPoints);
        Close(ActPoints.Select(v => v * Sigmoid(v)).ToArray(), F.silu(x).ToDoubleArray());
        Close(ActPoints.Select(v => Math.Max(v, 0)).ToArray(), F.relu(x).ToDoubleArray());
        Close(ActPoints.Select(Math.Tanh).ToArray(), F.tanh(x).ToDoubleArray());
        Close(ActPoints.Select(Sigmoid).ToArray(), F.sigmoid(x).ToDoubleArray());
        Close(ActPoints.Select(v => Math.Log(1 + Math.Exp(v))).ToArray(), F.softplus(x).ToDoubleArray());
        // beta and threshold: linear where beta x > threshold
        var pts = new double[] { -2, 0, 1, 1.4, 2, 25 };
        Close(pts.Select(v => 2 * v > 3 ? v : Math.Log(1 + Math.Exp(2 * v)) / 2).ToArray(), F.softplus(tensor(pts), 2, 3).ToDoubleArray());
        Assert.Equal(25.0, F.softplus(tensor(new double[] { 25 })).ToDoubleArray()[0]);
    }

    [Fact]
    public void ActivationGradChecks()
    {
        using var scope = NewDisposeScope();
        // keep away from relu's kink at 0
        var x = tensor(new double[] { -2.1, -0.7, 0.3, 1.9, 3.2, -0.05 }, new long[] { 2, 3 }, requires_grad: true);
        GradCheck.Assert(t => F.gelu(t[0]), new[] { x });
        GradCheck.Assert(t => F.gelu(t[0], "tanh"), new[] { x });
        GradCheck.Assert(t => F.silu(t[0]), new[] { x });
        GradCheck.Assert(t => F.softplus(t[0], 1.5, 20), new[] { x });
        GradCheck.Assert(t => F.relu(t[0]), new[] { x });
        GradCheck.Assert(t => F.tanh(t[0]), new[] { x });
        GradCheck.Assert(t => F.sigmoid(t[0]), new[] { x });
    }

    // ---------------- losses ----------------

    /// <summary>Per-row cross entropy by hand: (1 - s)(-lsm[t]) + s/C · Σ_c -lsm[c], 0 for ignored rows.</summary>
    private static (double[] perRow, int counted) RefCrossEntropy(double[] logits, int n, int c, long[] target, long ignore, double s)
    {
        var lsm = RefSoftmaxRows(logits, n, c, true);
        var loss = new double[n];
        int counted = 0;
        for (int i = 0; i < n; i++)
        {
            if (target[i] == ignore) continue;
            counted++;
            double smooth = 0;
            for (int k = 0; k < c; k++) smooth -= lsm[i * c + k];
            loss[i] = (1 - s) * -lsm[i * c + target[i]] + s / c * smooth;
        }
        return (loss, counted);
    }

    [Fact]
    public void CrossEntropyMatchesHandComputation()
    {
        using var scope = NewDisposeScope();
        const int N = 5, C = 4;
        var ld = Rand(N * C, 23, 3);
        var logits = tensor(ld, new long[] { N, C });
        var t = new long[] { 1, 0, 3, 2, 1 };
        var target = tensor(t);
        var (plain, _) = RefCrossEntropy(ld, N, C, t, -100, 0);
        Close(new[] { plain.Sum() / N }, F.cross_entropy(logits, target).ToDoubleArray());
        Close(new[] { plain.Sum() }, F.cross_entropy(logits, target, reduction: "sum").ToDoubleArray());
        Close(plain, F.cross_entropy(logits, target, reduction: "none").ToDoubleArray());

        // ignore_index: row 2 ignored, the mean divides by the 4 counted rows
        var ti = new long[] { 1, 0, -100, 2, 1 };
        var (ign, counted) = RefCrossEntropy(ld, N, C, ti, -100, 0);
        Assert.Equal(4, counted);
        Close(new[] { ign.Sum() / 4 }, F.cross_entropy(logits, tensor(ti)).ToDoubleArray());
        Close(ign, F.cross_entropy(logits, tensor(ti), reduction: "none").ToDoubleArray());
        // a custom ignore_index
        var t3 = new long[] { 1, 3, 3, 2, 0 };
        var (ign3, c3) = RefCrossEntropy(ld, N, C, t3, 3, 0);
        Close(new[] { ign3.Sum() / c3 }, F.cross_entropy(logits, tensor(t3), ignore_index: 3).ToDoubleArray());

        // label smoothing 0.1, with and without an ignored row
        var (sm, _) = RefCrossEntropy(ld, N, C, t, -100, 0.1);
        Close(new[] { sm.Sum() / N }, F.cross_entropy(logits, target, label_smoothing: 0.1).ToDoubleArray());
        var (smi, ci) = RefCrossEntropy(ld, N, C, ti, -100, 0.1);
        Close(new[] { smi.Sum() / ci }, F.cross_entropy(logits, tensor(ti), label_smoothing: 0.1).ToDoubleArray());
        Close(new[] { smi.Sum() }, F.cross_entropy(logits, tensor(ti), reduction: "sum", label_smoothing: 0.1).ToDoubleArray());

        // class weights (no smoothing): Σ w[t] · loss / Σ w[t]
        var wd = new double[] { 0.5, 2, 1, 3 };
        double num = 0, den = 0;
        for (int i = 0; i < N; i++) { num += wd[t[i]] * plain[i]; den += wd[t[i]]; }
        Close(new[] { num / den }, F.cross_entropy(logits, target, tensor(wd)).ToDoubleArray());

        var ex = Assert.Throws<ArgumentException>(() => F.cross_entropy(logits, target, reduction: "avg"));
        Assert.Contains("reduction", ex.Message);
    }

    [Fact]
    public void CrossEntropyOverSpatialDims()
    {
        using var scope = NewDisposeScope();
        // logits [N=2, C=3, d=4], targets [2, 4]
        var ld = Rand(2 * 3 * 4, 24, 2);
        var td = new long[] { 0, 2, 1, 1, 2, 0, -100, 1 };
        double total = 0;
        int counted = 0;
        for (int n = 0; n < 2; n++)
            for (int d = 0; d < 4; d++)
            {
                var tt = td[n * 4 + d];
                if (tt == -100) continue;
                var row = new double[3];
                for (int c = 0; c < 3; c++) row[c] = ld[n * 12 + c * 4 + d];
                total += -RefSoftmaxRows(row, 1, 3, true)[tt];
                counted++;
            }
        var loss = F.cross_entropy(tensor(ld, new long[] { 2, 3, 4 }), tensor(td, new long[] { 2, 4 }));
        Close(new[] { total / counted }, loss.ToDoubleArray());
        Assert.Equal(new long[] { 2, 4 }, F.cross_entropy(tensor(ld, new long[] { 2, 3, 4 }), tensor(td, new long[] { 2, 4 }), reduction: "none").shape);
    }

    [Fact]
    public void CrossEntropyGradCheckWithSmoothingAndIgnoredTarget()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(Rand(12, 25, 2), new long[] { 3, 4 }, requires_grad: true);
        var target = tensor(new long[] { 2, -100, 0 });
        GradCheck.Assert(t => F.cross_entropy(t[0], t[1], label_smoothing: 0.2), new[] { logits, target });
        GradCheck.Assert(t => F.cross_entropy(t[0], t[1], reduction: "none"), new[] { logits, target });
    }

    [Fact]
    public void CrossEntropyWithTargetOutOfRangeThrows()
    {
        using var scope = NewDisposeScope();
        var logits = zeros(2, 3);
        var ex = Assert.Throws<TorchException>(() => F.cross_entropy(logits, tensor(new long[] { 0, 3 })));
        Assert.Contains("out of bounds", ex.Message);
        Assert.Throws<TorchException>(() => F.cross_entropy(logits, tensor(new long[] { -1, 0 })));
        Assert.Throws<TorchException>(() => F.cross_entropy(logits, tensor(new long[] { 0, 1, 2 })));
        // still working
        Close(new[] { Math.Log(3) }, F.cross_entropy(logits, tensor(new long[] { 0, 2 })).ToDoubleArray(), 1e-6, 1e-6);
    }

    [Fact]
    public void NllLossMatchesHandComputation()
    {
        using var scope = NewDisposeScope();
        var ld = Rand(12, 26, 2);
        var lsm = RefSoftmaxRows(ld, 3, 4, true);
        var t = new long[] { 3, 0, 1 };
        var wd = new double[] { 1, 2, 3, 4 };
        var logp = tensor(lsm, new long[] { 3, 4 });
        Close(new[] { -(lsm[3] + lsm[4] + lsm[9]) / 3 }, F.nll_loss(logp, tensor(t)).ToDoubleArray());
        Close(new[] { -(4 * lsm[3] + 1 * lsm[4] + 2 * lsm[9]) / 7 }, F.nll_loss(logp, tensor(t), tensor(wd)).ToDoubleArray());
        Close(new[] { -(lsm[3] + lsm[9]) }, F.nll_loss(logp, tensor(new long[] { 3, 7, 1 }), ignore_index: 7, reduction: "sum").ToDoubleArray());
        var logits = tensor(Rand(8, 27), new long[] { 2, 4 }, requires_grad: true);
        GradCheck.Assert(x => F.nll_loss(F.log_softmax(x[0], 1), x[1]), new[] { logits, tensor(new long[] { 1, 3 }) });
    }

    [Fact]
    public void MseLossMatchesLoops()
    {
        using var scope = NewDisposeScope();
        var a = Rand(6, 28);
        var b = Rand(6, 29);
        var sq = a.Zip(b, (x, y) => (x - y) * (x - y)).ToArray();
        var ta = tensor(a, new long[] { 2, 3 });
        var tb = tensor(b, new long[] { 2, 3 });
        Close(new[] { sq.Average() }, F.mse_loss(ta, tb).ToDoubleArray());
        Close(new[] { sq.Sum() }, F.mse_loss(ta, tb, "sum").ToDoubleArray());
        Close(sq, F.mse_loss(ta, tb, "none").ToDoubleArray());
        var ex = Assert.Throws<TorchException>(() => F.mse_loss(ta, ones(new long[] { 3, 2 }, dtype: float64)));
        Assert.Contains("[2, 3]", ex.Message);
        GradCheck.Assert(t => F.mse_loss(t[0], t[1]), new[] { ta.requires_grad_(), tb.requires_grad_() });
    }

    [Fact]
    public void BinaryCrossEntropyWithLogitsMatchesFormula()
    {
        using var scope = NewDisposeScope();
        var x = new double[] { -3, -0.5, 0, 0.7, 2, 5 };
        var y = new double[] { 0, 1, 0.5, 1, 0, 1 };
        var pw = new double[] { 2, 0.5, 1, 3, 1, 1 };
        var plain = x.Select((v, i) => -(y[i] * Math.Log(Sigmoid(v)) + (1 - y[i]) * Math.Log(1 - Sigmoid(v)))).ToArray();
        var pos = x.Select((v, i) => -(pw[i] * y[i] * Math.Log(Sigmoid(v)) + (1 - y[i]) * Math.Log(1 - Sigmoid(v)))).ToArray();
        Close(new[] { plain.Average() }, F.binary_cross_entropy_with_logits(tensor(x), tensor(y)).ToDoubleArray());
        Close(pos, F.binary_cross_entropy_with_logits(tensor(x), tensor(y), reduction: "none", pos_weight: tensor(pw)).ToDoubleArray());
        Close(new[] { plain.Select((v, i) => v * pw[i]).Sum() }, F.binary_cross_entropy_with_logits(tensor(x), tensor(y), tensor(pw), "sum").ToDoubleArray());
        GradCheck.Assert(t => F.binary_cross_entropy_with_logits(t[0], t[1]), new[] { tensor(x, requires_grad: true), tensor(y) });
        Assert.Throws<TorchException>(() => F.binary_cross_entropy_with_logits(tensor(x), tensor(new double[] { 1, 0 })));
    }

    // ---------------- embedding ----------------

    [Fact]
    public void EmbeddingLooksUpRowsAndPaddingRowGetsNoGradient()
    {
        using var scope = NewDisposeScope();
        var wd = Rand(5 * 3, 30);
        var w = tensor(wd, new long[] { 5, 3 }, requires_grad: true);
        var idx = tensor(new long[] { 0, 2, 4, 2 }, new long[] { 2, 2 });
        var e = F.embedding(idx, w, padding_idx: 2);
        Assert.Equal(new long[] { 2, 2, 3 }, e.shape);
        var expected = new[] { 0, 2, 4, 2 }.SelectMany(r => wd.Skip(r * 3).Take(3)).ToArray();
        Assert.Equal(expected, e.ToDoubleArray()); // a lookup is exact
        e.backward(ones(new long[] { 2, 2, 3 }, dtype: float64));
        var g = w.grad!.ToDoubleArray();
        Assert.Equal(new double[] { 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1 }, g);
        // without padding_idx, row 2 collects both uses; negative padding_idx counts from the end (-3 -> 2)
        var w2 = tensor(wd, new long[] { 5, 3 }, requires_grad: true);
        F.embedding(idx, w2).backward(ones(new long[] { 2, 2, 3 }, dtype: float64));
        Assert.Equal(new double[] { 1, 1, 1, 0, 0, 0, 2, 2, 2, 0, 0, 0, 1, 1, 1 }, w2.grad!.ToDoubleArray());
        var w3 = tensor(wd, new long[] { 5, 3 }, requires_grad: true);
        F.embedding(idx, w3, padding_idx: -3).backward(ones(new long[] { 2, 2, 3 }, dtype: float64));
        Assert.Equal(g, w3.grad!.ToDoubleArray());
        // int32 indices work too
        Assert.Equal(expected, F.embedding(idx.to_type(int32), w).ToDoubleArray());
    }

    [Fact]
    public void EmbeddingGradCheckAndBadIndices()
    {
        using var scope = NewDisposeScope();
        var w = tensor(Rand(4 * 2, 31), new long[] { 4, 2 }, requires_grad: true);
        var idx = tensor(new long[] { 3, 1, 3 });
        // (with padding_idx the padding row's gradient is zero by definition, not the true derivative: that case is
        // checked directly in EmbeddingLooksUpRowsAndPaddingRowGetsNoGradient)
        GradCheck.Assert(t => F.embedding(t[1], t[0]), new[] { w, idx });
        GradCheck.Assert(t => F.embedding(t[1], t[0], padding_idx: 0), new[] { w, idx }); // row 0 unused: true gradient
        var ex = Assert.Throws<TorchException>(() => F.embedding(tensor(new long[] { 0, 4 }), w));
        Assert.Contains("out of range", ex.Message);
        Assert.Throws<TorchException>(() => F.embedding(idx, w, padding_idx: 4));
        Assert.Throws<TorchException>(() => F.embedding(tensor(new double[] { 0, 1 }), w));
        Assert.Equal(new long[] { 3, 2 }, F.embedding(idx, w).shape);
    }

    // ---------------- dropout ----------------

    [Fact]
    public void DropoutIdentityCasesAndStatistics()
    {
        using var scope = NewDisposeScope();
        var xd = Rand(100, 32);
        var x = tensor(xd);
        Assert.Equal(xd, F.dropout(x, 0.0).ToDoubleArray());
        Assert.Equal(xd, F.dropout(x, 0.5, training: false).ToDoubleArray());
        Assert.Equal(xd, F.dropout(x, 0.9, training: false, inplace: true).ToDoubleArray());

        const int n = 20000;
        var y = F.dropout(ones(new long[] { n }, dtype: float64), 0.5).ToDoubleArray();
        int zeros = 0;
        foreach (var v in y)
        {
            if (v == 0) zeros++;
            else Assert.Equal(2.0, v); // kept values scaled by 1 / (1 - p)
        }
        // Binomial(20000, 0.5): sd ~ 71; allow ~7 sd
        Assert.InRange(zeros, n / 2 - 500, n / 2 + 500);

        // p = 0.2 scales by 1.25
        foreach (var v in F.dropout(ones(new long[] { 1000 }, dtype: float64), 0.2).ToDoubleArray()) Assert.True(v == 0 || v == 1.25);
        // p = 1 zeroes everything
        Assert.All(F.dropout(ones(100), 1.0).ToDoubleArray(), v => Assert.Equal(0.0, v));
        Assert.Throws<TorchException>(() => F.dropout(x, 1.5));
        Assert.Throws<TorchException>(() => F.dropout(x, -0.1));
    }

    [Fact]
    public void DropoutWithGeneratorIsReproducibleAndInplaceReturnsInput()
    {
        using var scope = NewDisposeScope();
        using var g1 = new Generator(123);
        using var g2 = new Generator(123);
        var a = F.dropout(ones(new long[] { 1000 }), 0.3, generator: g1).ToSingleArray();
        var b = F.dropout(ones(new long[] { 1000 }), 0.3, generator: g2).ToSingleArray();
        Assert.Equal(a, b);
        Assert.All(a, v => Assert.True(v == 0 || Math.Abs(v - 1 / 0.7f) < 1e-6));
        int z = a.Count(v => v == 0);
        Assert.InRange(z, 200, 400);

        var x = ones(new long[] { 1000 }, dtype: float64);
        var same = F.dropout(x, 0.5, inplace: true, generator: g1);
        Assert.Same(x, same);
        var xs = x.ToDoubleArray();
        Assert.All(xs, v => Assert.True(v == 0 || v == 2));
        Assert.InRange(xs.Count(v => v == 0), 400, 600);
        var x2 = ones(new long[] { 1000 }, dtype: float64);
        F.dropout(x2, 0.5, inplace: true);
        Assert.InRange(x2.ToDoubleArray().Count(v => v == 0), 400, 600);
        // gradient flows through kept elements with the same scale
        var w = ones(new long[] { 200 }, dtype: float64, requires_grad: true);
        var yv = F.dropout(w, 0.5, generator: g1);
        yv.backward(ones(new long[] { 200 }, dtype: float64));
        Assert.Equal(yv.ToDoubleArray(), w.grad!.ToDoubleArray());
    }

    // ---------------- scaled dot-product attention ----------------

    /// <summary>softmax(q kᵀ · scale + bias) v per batch matrix; keep(b, i, j) false means -inf, bias(b, i, j) is added.</summary>
    private static double[] RefSdpa(double[] q, double[] k, double[] v, int B, int L, int S, int E, int Ev, double scale,
        Func<int, int, int, bool>? keep = null, Func<int, int, int, double>? bias = null)
    {
        var o = new double[B * L * Ev];
        var w = new double[S];
        for (int b = 0; b < B; b++)
            for (int i = 0; i < L; i++)
            {
                double m = double.NegativeInfinity;
                for (int j = 0; j < S; j++)
                {
                    double s = 0;
                    for (int e = 0; e < E; e++) s += q[(b * L + i) * E + e] * k[(b * S + j) * E + e];
                    s *= scale;
                    if (bias is not null) s += bias(b, i, j);
                    if (keep is not null && !keep(b, i, j)) s = double.NegativeInfinity;
                    w[j] = s;
                    m = Math.Max(m, s);
                }
                double z = 0;
                for (int j = 0; j < S; j++) { w[j] = Math.Exp(w[j] - m); z += w[j]; }
                for (int c = 0; c < Ev; c++)
                {
                    double acc = 0;
                    for (int j = 0; j < S; j++) acc += w[j] / z * v[(b * S + j) * Ev + c];
                    o[(b * L + i) * Ev + c] = acc;
                }
            }
        return o;
    }

    [Fact]
    public void SdpaMatchesFormulaWithoutMask()
    {
        using var scope = NewDisposeScope();
        const int B = 2, L = 3, S = 5, E = 4, Ev = 6;
        var qd = Rand(B * L * E, 33);
        var kd = Rand(B * S * E, 34);
        var vd = Rand(B * S * Ev, 35);
        var q = tensor(qd, new long[] { B, L, E });
        var k = tensor(kd, new long[] { B, S, E });
        var v = tensor(vd, new long[] { B, S, Ev });
        var y = F.scaled_dot_product_attention(q, k, v);
        Assert.Equal(new long[] { B, L, Ev }, y.shape);
        Close(RefSdpa(qd, kd, vd, B, L, S, E, Ev, 1 / Math.Sqrt(E)), y.ToDoubleArray());
        Close(RefSdpa(qd, kd, vd, B, L, S, E, Ev, 0.3), F.scaled_dot_product_attention(q, k, v, scale: 0.3).ToDoubleArray());
        // float32
        Close(RefSdpa(qd, kd, vd, B, L, S, E, Ev, 1 / Math.Sqrt(E)),
            F.scaled_dot_product_attention(q.to_type(float32), k.to_type(float32), v.to_type(float32)).ToDoubleArray(), 1e-5, 1e-5);
        // the 1.13 build uses the formula; 2.x calls libtorch's kernel
        Assert.Equal(!__version__.StartsWith("1."), F.sdpa_uses_fused_kernel);
    }

    [Fact]
    public void SdpaCausalAndMasks()
    {
        using var scope = NewDisposeScope();
        const int B = 2, L = 3, S = 5, E = 4, Ev = 2;
        var qd = Rand(B * L * E, 36);
        var kd = Rand(B * S * E, 37);
        var vd = Rand(B * S * Ev, 38);
        var q = tensor(qd, new long[] { B, L, E });
        var k = tensor(kd, new long[] { B, S, E });
        var v = tensor(vd, new long[] { B, S, Ev });
        double sc = 1 / Math.Sqrt(E);

        // causal, L != S: top-left aligned lower triangle (key j visible from query i when j <= i)
        Close(RefSdpa(qd, kd, vd, B, L, S, E, Ev, sc, keep: (b, i, j) => j <= i),
            F.scaled_dot_product_attention(q, k, v, is_causal: true).ToDoubleArray());
        // causal on square attention
        var q5 = tensor(Rand(B * S * E, 39), new long[] { B, S, E });
        Close(RefSdpa(q5.ToDoubleArray(), kd, vd, B, S, S, E, Ev, sc, keep: (b, i, j) => j <= i),
            F.scaled_dot_product_attention(q5, k, v, is_causal: true).ToDoubleArray());

        // bool key-padding mask [B, 1, S] (true = keep): batch 0 keeps all, batch 1 the first 3 keys
        var valid = new[] { 5, 3 };
        var mb = new bool[B * S];
        for (int b = 0; b < B; b++) for (int j = 0; j < S; j++) mb[b * S + j] = j < valid[b];
        var boolMask = tensor(mb, new long[] { B, 1, S });
        Close(RefSdpa(qd, kd, vd, B, L, S, E, Ev, sc, keep: (b, i, j) => j < valid[b]),
            F.scaled_dot_product_attention(q, k, v, boolMask).ToDoubleArray());

        // float mask [L, S] broadcast over the batch, added to the scores (with -inf entries)
        var md = Rand(L * S, 40);
        md[1 * S + 4] = double.NegativeInfinity;
        var floatMask = tensor(md, new long[] { L, S });
        Close(RefSdpa(qd, kd, vd, B, L, S, E, Ev, sc, bias: (b, i, j) => md[i * S + j]),
            F.scaled_dot_product_attention(q, k, v, floatMask).ToDoubleArray());

        // 4-D [B, H, L, E] with a bool mask [B, 1, 1, S] and explicit scale
        const int H = 2;
        var q4 = Rand(B * H * L * E, 41);
        var k4 = Rand(B * H * S * E, 42);
        var v4 = Rand(B * H * S * Ev, 43);
        var y4 = F.scaled_dot_product_attention(tensor(q4, new long[] { B, H, L, E }), tensor(k4, new long[] { B, H, S, E }),
            tensor(v4, new long[] { B, H, S, Ev }), tensor(mb, new long[] { B, 1, 1, S }), scale: 0.7);
        Close(RefSdpa(q4, k4, v4, B * H, L, S, E, Ev, 0.7, keep: (bh, i, j) => j < valid[bh / H]), y4.ToDoubleArray());
    }

    [Fact]
    public void SdpaDropoutZeroesOrRescalesAttentionWeights()
    {
        using var scope = NewDisposeScope();
        // with v = I the output rows are the attention weights themselves (after dropout)
        const int L = 20, S = 5, E = 4;
        const double p = 0.5;
        var qd = Rand(L * E, 48);
        var kd = Rand(S * E, 49);
        var eye = new double[S * S];
        for (int i = 0; i < S; i++) eye[i * S + i] = 1;
        var w = RefSdpa(qd, kd, eye, 1, L, S, E, S, 1 / Math.Sqrt(E));
        var y = F.scaled_dot_product_attention(tensor(qd, new long[] { 1, L, E }), tensor(kd, new long[] { 1, S, E }),
            tensor(eye, new long[] { 1, S, S }), dropout_p: p).ToDoubleArray();
        int dropped = 0;
        for (int i = 0; i < y.Length; i++)
        {
            if (y[i] == 0) { dropped++; continue; }
            Assert.True(Math.Abs(y[i] - w[i] / (1 - p)) < 1e-12, $"element {i}: {y[i]:R} is neither 0 nor {w[i] / (1 - p):R}");
        }
        Assert.InRange(dropped, 20, 80); // Binomial(100, 0.5)
    }

    [Fact]
    public void SdpaBadInputsThrow()
    {
        using var scope = NewDisposeScope();
        var q = ones(new long[] { 1, 2, 4 });
        var k = ones(new long[] { 1, 3, 4 });
        var v = ones(new long[] { 1, 3, 2 });
        Assert.Throws<TorchException>(() => F.scaled_dot_product_attention(q, k, v, ones(new long[] { 2, 3 }, dtype: @bool), is_causal: true));
        Assert.Throws<TorchException>(() => F.scaled_dot_product_attention(q, ones(new long[] { 1, 3, 5 }), v));
        Assert.Throws<TorchException>(() => F.scaled_dot_product_attention(q, k, ones(new long[] { 1, 4, 2 })));
        Assert.Equal(new long[] { 1, 2, 2 }, F.scaled_dot_product_attention(q, k, v).shape);
    }

    [Fact]
    public void SdpaGradCheck()
    {
        using var scope = NewDisposeScope();
        var q = tensor(Rand(2 * 3, 44), new long[] { 1, 2, 3 }, requires_grad: true);
        var k = tensor(Rand(3 * 3, 45), new long[] { 1, 3, 3 }, requires_grad: true);
        var v = tensor(Rand(3 * 2, 46), new long[] { 1, 3, 2 }, requires_grad: true);
        var fm = tensor(Rand(2 * 3, 47), new long[] { 2, 3 });
        var bm = tensor(new[] { true, true, false, true, false, true }, new long[] { 2, 3 });
        GradCheck.Assert(t => F.scaled_dot_product_attention(t[0], t[1], t[2], t[3]), new[] { q, k, v, fm });
        GradCheck.Assert(t => F.scaled_dot_product_attention(t[0], t[1], t[2], t[3]), new[] { q, k, v, bm });
        GradCheck.Assert(t => F.scaled_dot_product_attention(t[0], t[1], t[2], is_causal: true), new[] { q, k, v });
    }
}
