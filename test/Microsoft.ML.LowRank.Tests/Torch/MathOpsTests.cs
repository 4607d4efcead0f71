using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>Independent float64 references for the math-op tests: plain loops over row-major arrays.</summary>
internal static class MathRef
{
    public static double[] Rand(int seed, long n, double lo = -2, double hi = 2)
    {
        var r = new Random(seed);
        var d = new double[n];
        for (long i = 0; i < n; i++) d[i] = lo + (hi - lo) * r.NextDouble();
        return d;
    }

    public static long Numel(long[] shape)
    {
        long n = 1;
        foreach (var s in shape) n *= s;
        return n;
    }

    public static long[] BroadcastShape(long[] a, long[] b)
    {
        int n = Math.Max(a.Length, b.Length);
        var r = new long[n];
        for (int i = 0; i < n; i++)
        {
            long x = i - (n - a.Length) >= 0 ? a[i - (n - a.Length)] : 1;
            long y = i - (n - b.Length) >= 0 ? b[i - (n - b.Length)] : 1;
            if (x != y && x != 1 && y != 1) throw new ArgumentException("shapes do not broadcast");
            r[i] = Math.Max(x, y);
        }
        return r;
    }

    /// <summary>Flat index into an input of shape <paramref name="inShape"/> for output element <paramref name="flat"/>
    /// of <paramref name="outShape"/> under right-aligned broadcasting.</summary>
    public static long Source(long flat, long[] outShape, long[] inShape)
    {
        long idx = 0, stride = 1;
        int off = outShape.Length - inShape.Length;
        for (int d = outShape.Length - 1; d >= 0; d--)
        {
            long coord = flat % outShape[d];
            flat /= outShape[d];
            int id = d - off;
            if (id < 0) continue;
            if (inShape[id] != 1) idx += coord * stride;
            stride *= inShape[id];
        }
        return idx;
    }

    public static double[] Binary(double[] a, long[] sa, double[] b, long[] sb, Func<double, double, double> f, out long[] shape)
    {
        shape = BroadcastShape(sa, sb);
        var n = Numel(shape);
        var r = new double[n];
        for (long i = 0; i < n; i++) r[i] = f(a[Source(i, shape, sa)], b[Source(i, shape, sb)]);
        return r;
    }

    public static double[] Expand(double[] a, long[] sa, long[] shape)
    {
        var n = Numel(shape);
        var r = new double[n];
        for (long i = 0; i < n; i++) r[i] = a[Source(i, shape, sa)];
        return r;
    }

    public static double[] Map(double[] a, Func<double, double> f)
    {
        var r = new double[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = f(a[i]);
        return r;
    }

    /// <summary>Groups the elements by their position outside <paramref name="dims"/> (row-major order of the
    /// output), giving the reduced shapes with and without keepdim.</summary>
    public static List<double>[] Groups(double[] a, long[] shape, long[] dims, out long[] keptShape, out long[] droppedShape)
    {
        var red = new bool[shape.Length];
        foreach (var d0 in dims) red[d0 < 0 ? d0 + shape.Length : d0] = true;
        keptShape = new long[shape.Length];
        var dropped = new List<long>();
        for (int d = 0; d < shape.Length; d++)
        {
            keptShape[d] = red[d] ? 1 : shape[d];
            if (!red[d]) dropped.Add(shape[d]);
        }
        droppedShape = dropped.ToArray();
        var groups = new List<double>[Numel(keptShape)];
        for (int g = 0; g < groups.Length; g++) groups[g] = new List<double>();
        for (long i = 0; i < a.Length; i++)
        {
            long rem = i, o = 0, ostride = 1;
            for (int d = shape.Length - 1; d >= 0; d--)
            {
                long c = rem % shape[d];
                rem /= shape[d];
                if (!red[d]) { o += c * ostride; ostride *= shape[d]; }
            }
            groups[o].Add(a[i]);
        }
        return groups;
    }

    public static double[] Reduce(double[] a, long[] shape, long[] dims, Func<List<double>, double> f, out long[] kept, out long[] dropped)
    {
        var g = Groups(a, shape, dims, out kept, out dropped);
        var r = new double[g.Length];
        for (int i = 0; i < g.Length; i++) r[i] = f(g[i]);
        return r;
    }

    /// <summary>[n, m] x [m, p] by the triple loop.</summary>
    public static double[] MatMul(double[] a, double[] b, int n, int m, int p, int aOff = 0, int bOff = 0)
    {
        var r = new double[n * p];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < p; j++)
            {
                double s = 0;
                for (int k = 0; k < m; k++) s += a[aOff + i * m + k] * b[bOff + k * p + j];
                r[i * p + j] = s;
            }
        return r;
    }

    public static void Close(double[] expected, double[] actual, double rtol = 1e-12, double atol = 1e-12, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(e) && double.IsNaN(a)) continue;
            if (double.IsInfinity(e) && e == a) continue;
            if (!(Math.Abs(e - a) <= atol + rtol * Math.Abs(e)))
                throw new Xunit.Sdk.XunitException($"{what} element {i}: expected {e:R}, got {a:R}");
        }
    }

    public static double PyRemainder(double a, double b)
    {
        var r = a % b;
        if (r != 0 && (r < 0) != (b < 0)) r += b;
        return r;
    }

    /// <summary>erf by its Maclaurin series (accurate to ~1e-13 for |x| &lt;= 3).</summary>
    public static double Erf(double x)
    {
        double sum = 0, term = x;
        for (int n = 0; n < 200; n++)
        {
            sum += term / (2 * n + 1);
            term *= -x * x / (n + 1);
            if (Math.Abs(term) < 1e-18) break;
        }
        return 2 / Math.Sqrt(Math.PI) * sum;
    }
}

public class MathOpsTests
{
    private static readonly long[] SA = { 2, 1, 3 };
    private static readonly long[] SB = { 4, 3 };

    public static IEnumerable<object[]> BinaryOps() => new[]
    {
        new object[] { "add" }, new object[] { "add_alpha" }, new object[] { "sub" }, new object[] { "sub_alpha" }, new object[] { "mul" },
        new object[] { "div" }, new object[] { "div_trunc" }, new object[] { "div_floor" }, new object[] { "pow" }, new object[] { "remainder" },
        new object[] { "fmod" }, new object[] { "maximum" }, new object[] { "minimum" }, new object[] { "atan2" },
    };

    private static (Func<Tensor, Tensor, Tensor> op, Func<double, double, double> reference) Binary(string name) => name switch
    {
        "add" => ((a, b) => a.add(b), (x, y) => x + y),
        "add_alpha" => ((a, b) => torch.add(a, b, alpha: 2.5), (x, y) => x + 2.5 * y),
        "sub" => ((a, b) => a.sub(b), (x, y) => x - y),
        "sub_alpha" => ((a, b) => torch.sub(a, b, alpha: -0.5), (x, y) => x + 0.5 * y),
        "mul" => ((a, b) => torch.mul(a, b), (x, y) => x * y),
        "div" => ((a, b) => a.div(b), (x, y) => x / y),
        "div_trunc" => ((a, b) => a.div(b, rounding_mode: "trunc"), (x, y) => Math.Truncate(x / y)),
        "div_floor" => ((a, b) => torch.div(a, b, "floor"), (x, y) => Math.Floor(x / y)),
        "pow" => ((a, b) => a.abs().pow(b), (x, y) => Math.Pow(Math.Abs(x), y)),
        "remainder" => ((a, b) => a.remainder(b), MathRef.PyRemainder),
        "fmod" => ((a, b) => torch.fmod(a, b), (x, y) => x % y),
        "maximum" => ((a, b) => a.maximum(b), Math.Max),
        "minimum" => ((a, b) => torch.minimum(a, b), Math.Min),
        "atan2" => ((a, b) => a.atan2(b), Math.Atan2),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(BinaryOps))]
    public void BinaryOpBroadcastsLikeReference(string name)
    {
        using var scope = NewDisposeScope();
        var (op, reference) = Binary(name);
        var a = MathRef.Rand(1, 6, -3, 3);
        var b = MathRef.Rand(2, 12, 0.5, 2.5);
        for (int i = 0; i < b.Length; i += 2) b[i] = -b[i]; // mixed signs, away from zero
        var r = op(tensor(a, SA), tensor(b, SB));
        var expected = MathRef.Binary(a, SA, b, SB, reference, out var shape);
        Assert.Equal(new long[] { 2, 4, 3 }, shape);
        Assert.Equal(shape, r.shape);
        Assert.Equal(ScalarType.Float64, r.dtype);
        MathRef.Close(expected, r.ToArray<double>(), what: name);
        // operand order reversed broadcasts the other way round too
        var r2 = op(tensor(b, SB), tensor(a, SA));
        MathRef.Close(MathRef.Binary(b, SB, a, SA, reference, out _), r2.ToArray<double>(), what: name + " (swapped)");
    }

    [Fact]
    public void ScalarFormsMatchReference()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(3, 6, 0.5, 3);
        a[1] = -a[1];
        var t = tensor(a, new long[] { 2, 3 });
        void Check(Tensor r, Func<double, double> f, string what)
        {
            Assert.Equal(new long[] { 2, 3 }, r.shape);
            MathRef.Close(MathRef.Map(a, f), r.ToArray<double>(), what: what);
        }
        Check(t.add(1.5), x => x + 1.5, "add");
        Check(t.add(1.5, alpha: 2), x => x + 3, "add alpha");
        Check(t.sub(0.25), x => x - 0.25, "sub");
        Check(t.sub(2, alpha: 3), x => x - 6, "sub alpha");
        Check(t.mul(-2.5), x => x * -2.5, "mul");
        Check(t.div(4), x => x / 4, "div");
        Check(t.div(0.7, "trunc"), x => Math.Truncate(x / 0.7), "div trunc");
        Check(t.div(0.7, "floor"), x => Math.Floor(x / 0.7), "div floor");
        Check(t.abs().pow(2.5), x => Math.Pow(Math.Abs(x), 2.5), "pow");
        Check(t.pow(2), x => x * x, "pow 2");
        Check(torch.pow(2.0, t), x => Math.Pow(2, x), "rpow");
        Check(t.remainder(0.8), x => MathRef.PyRemainder(x, 0.8), "remainder");
        Check(t.remainder(-0.8), x => MathRef.PyRemainder(x, -0.8), "remainder neg");
        Check(t.fmod(0.8), x => x % 0.8, "fmod");
        Check(t.maximum(1.0), x => Math.Max(x, 1.0), "maximum");
        Check(t.minimum(1.0), x => Math.Min(x, 1.0), "minimum");
        Check(t.atan2(-1.5), x => Math.Atan2(x, -1.5), "atan2");
        Check(torch.div(3.0, t), x => 3 / x, "rdiv");
    }

    [Fact]
    public void OperatorsMatchReference()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(4, 6, 0.5, 2);
        var b = MathRef.Rand(5, 3, 0.5, 2);
        var ta = tensor(a, new long[] { 2, 3 });
        var tb = tensor(b, new long[] { 3 });
        void Check(Tensor r, Func<double, double, double> f, string what)
            => MathRef.Close(MathRef.Binary(a, new long[] { 2, 3 }, b, new long[] { 3 }, f, out _), r.ToArray<double>(), what: what);
        Check(ta + tb, (x, y) => x + y, "+");
        Check(ta - tb, (x, y) => x - y, "-");
        Check(ta * tb, (x, y) => x * y, "*");
        Check(ta / tb, (x, y) => x / y, "/");
        Check(ta % tb, MathRef.PyRemainder, "%");
        Check(ta + 2, (x, y) => x + 2, "t+s");
        Check(2 + ta, (x, y) => 2 + x, "s+t");
        Check(ta - 0.5, (x, y) => x - 0.5, "t-s");
        Check(0.5 - ta, (x, y) => 0.5 - x, "s-t");
        Check(ta * 3, (x, y) => x * 3, "t*s");
        Check(3 * ta, (x, y) => 3 * x, "s*t");
        Check(ta / 4, (x, y) => x / 4, "t/s");
        Check(4 / ta, (x, y) => 4 / x, "s/t");
        Check(ta % 0.3, (x, y) => MathRef.PyRemainder(x, 0.3), "t%s");
        Check(5.0 % ta, (x, y) => MathRef.PyRemainder(5, x), "s%t");
        Check(-ta, (x, y) => -x, "neg");
        Check(-(ta * tb) + ta / 2, (x, y) => -(x * y) + x / 2, "chain");
        // float32 stays float32 with scalars
        var f = tensor(new float[] { 1, 2, 3 });
        Assert.Equal(ScalarType.Float32, (f * 2.5).dtype);
        Assert.Equal(ScalarType.Float32, (1 - f).dtype);
        Assert.Equal(new float[] { 2.5f, 5, 7.5f }, (f * 2.5).ToArray<float>());
    }

    [Fact]
    public void TypePromotionFollowsLibtorch()
    {
        using var scope = NewDisposeScope();
        var i = tensor(new long[] { -7, -2, 0, 5, 9 });
        var j = tensor(new long[] { 2, 3, 4, -2, 4 });
        // integral scalars keep integer tensors integral; fractional ones promote to the default float type
        Assert.Equal(ScalarType.Int64, (i + 1).dtype);
        Assert.Equal(new long[] { -6, -1, 1, 6, 10 }, (i + 1).ToArray<long>());
        Assert.Equal(ScalarType.Int64, (i * 2).dtype);
        Assert.Equal(ScalarType.Float32, (i + 0.5).dtype);
        Assert.Equal(new float[] { -6.5f, -1.5f, 0.5f, 5.5f, 9.5f }, (i + 0.5).ToArray<float>());
        // true division of integers is floating; trunc / floor stay integral
        Assert.Equal(ScalarType.Float32, (i / j).dtype);
        var trunc = i.div(j, "trunc");
        var floor = i.div(j, "floor");
        Assert.Equal(ScalarType.Int64, trunc.dtype);
        var ia = i.ToArray<long>();
        var ja = j.ToArray<long>();
        for (int k = 0; k < ia.Length; k++)
        {
            Assert.Equal((long)Math.Truncate((double)ia[k] / ja[k]), trunc.ToArray<long>()[k]);
            Assert.Equal((long)Math.Floor((double)ia[k] / ja[k]), floor.ToArray<long>()[k]);
        }
        Assert.Equal(new long[] { 1, 1, 0, -1, 1 }, i.remainder(j).ToArray<long>());
        Assert.Equal(new long[] { -1, -2, 0, 1, 1 }, i.fmod(j).ToArray<long>());
        // int32 with float64 tensor promotes to float64; int32 with int64 to int64
        var i32 = tensor(new int[] { 1, 2, 3 });
        Assert.Equal(ScalarType.Float64, (i32 + tensor(new double[] { 0.5, 0.5, 0.5 })).dtype);
        Assert.Equal(ScalarType.Int64, (i32 + tensor(new long[] { 1, 1, 1 })).dtype);
        // -0.0 keeps its sign (it is not turned into the integer 0)
        var z = tensor(new double[] { 1.0 }) * -0.0;
        Assert.True(double.IsNegative(z.ToArray<double>()[0]));
        // float16 and bfloat16 arithmetic
        var h = tensor(new float[] { 1, 2, 3 }).half();
        Assert.Equal(ScalarType.Float16, (h * 2 + h).dtype);
        Assert.Equal(new float[] { 3, 6, 9 }, (h * 2 + h).@float().ToArray<float>());
        var bf = tensor(new float[] { 1, 2, 3 }).bfloat16();
        Assert.Equal(new float[] { 0.5f, 1, 1.5f }, (bf / 2).@float().ToArray<float>());
    }

    [Fact]
    public void BadRoundingModeIsRejected()
    {
        using var scope = NewDisposeScope();
        var t = ones(3);
        var ex = Assert.Throws<ArgumentException>(() => t.div(2, "round"));
        Assert.Contains("rounding_mode", ex.Message);
        Assert.Equal(new float[] { 0.5f, 0.5f, 0.5f }, t.div(2).ToArray<float>());
    }

    public static IEnumerable<object[]> UnaryOps() => new[]
    {
        "neg", "abs", "exp", "exp2", "log", "log2", "log10", "log1p", "expm1", "sqrt", "rsqrt", "square", "sin", "cos", "tan", "tanh",
        "sigmoid", "relu", "sign", "floor", "ceil", "round", "trunc", "reciprocal", "erf",
    }.Select(n => new object[] { n });

    private static (Func<Tensor, Tensor> op, Func<double, double> reference, bool positive) Unary(string name) => name switch
    {
        "neg" => (t => t.neg(), x => -x, false),
        "abs" => (t => torch.abs(t), Math.Abs, false),
        "exp" => (t => t.exp(), Math.Exp, false),
        "exp2" => (t => t.exp2(), x => Math.Pow(2, x), false),
        "log" => (t => torch.log(t), Math.Log, true),
        "log2" => (t => t.log2(), Math.Log2, true),
        "log10" => (t => t.log10(), Math.Log10, true),
        "log1p" => (t => t.log1p(), x => Math.Log(1 + x), true),
        "expm1" => (t => t.expm1(), x => Math.Exp(x) - 1, false),
        "sqrt" => (t => t.sqrt(), Math.Sqrt, true),
        "rsqrt" => (t => t.rsqrt(), x => 1 / Math.Sqrt(x), true),
        "square" => (t => t.square(), x => x * x, false),
        "sin" => (t => t.sin(), Math.Sin, false),
        "cos" => (t => torch.cos(t), Math.Cos, false),
        "tan" => (t => t.tan(), Math.Tan, false),
        "tanh" => (t => t.tanh(), Math.Tanh, false),
        "sigmoid" => (t => t.sigmoid(), x => 1 / (1 + Math.Exp(-x)), false),
        "relu" => (t => torch.relu(t), x => Math.Max(x, 0), false),
        "sign" => (t => t.sign(), x => Math.Sign(x), false),
        "floor" => (t => t.floor(), Math.Floor, false),
        "ceil" => (t => t.ceil(), Math.Ceiling, false),
        "round" => (t => t.round(), x => Math.Round(x, MidpointRounding.ToEven), false),
        "trunc" => (t => t.trunc(), Math.Truncate, false),
        "reciprocal" => (t => t.reciprocal(), x => 1 / x, false),
        "erf" => (t => t.erf(), MathRef.Erf, false),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(UnaryOps))]
    public void UnaryOpMatchesReference(string name)
    {
        using var scope = NewDisposeScope();
        var (op, reference, positive) = Unary(name);
        var a = positive ? MathRef.Rand(7, 12, 0.05, 4) : MathRef.Rand(7, 12, -2.5, 2.5);
        if (!positive) { a[0] = 0; a[1] = 1.5; a[2] = -2.5; a[3] = 0.5; } // ties for round, zero for sign/relu
        var r = op(tensor(a, new long[] { 3, 4 }));
        Assert.Equal(new long[] { 3, 4 }, r.shape);
        Assert.Equal(ScalarType.Float64, r.dtype);
        MathRef.Close(MathRef.Map(a, reference), r.ToArray<double>(), rtol: 1e-11, atol: 1e-12, what: name);
        // float32 keeps its dtype and agrees to single precision
        var a32 = MathRef.Map(a, x => (float)x); // the reference sees the same rounded inputs
        var r32 = op(tensor(a, new long[] { 3, 4 }).@float());
        Assert.Equal(ScalarType.Float32, r32.dtype);
        MathRef.Close(MathRef.Map(a32, reference), r32.ToDoubleArray(), rtol: 2e-6, atol: 2e-6, what: name + " f32");
    }

    [Fact]
    public void UnaryOpsOnIntegersAndSpecialValues()
    {
        using var scope = NewDisposeScope();
        var i = tensor(new long[] { -3, 0, 4 });
        Assert.Equal(new long[] { 3, 0, 4 }, i.abs().ToArray<long>());
        Assert.Equal(new long[] { -1, 0, 1 }, i.sign().ToArray<long>());
        Assert.Equal(new long[] { 9, 0, 16 }, i.square().ToArray<long>());
        Assert.Equal(ScalarType.Float32, i.sqrt().dtype); // integer inputs of float functions give float
        Assert.Equal(new bool[] { false, true, false }, i.logical_not().ToArray<bool>());

        var s = tensor(new double[] { double.NaN, double.PositiveInfinity, double.NegativeInfinity, 1.5, 0, -0.0 });
        Assert.Equal(new bool[] { true, false, false, false, false, false }, s.isnan().ToArray<bool>());
        Assert.Equal(new bool[] { false, true, true, false, false, false }, torch.isinf(s).ToArray<bool>());
        Assert.Equal(new bool[] { false, false, false, true, true, true }, s.isfinite().ToArray<bool>());
        Assert.Equal(new bool[] { false, false, false, false, true, true }, s.logical_not().ToArray<bool>());
        Assert.Equal(new double[] { 0, double.MaxValue, double.MinValue, 1.5, 0, 0 }, s.nan_to_num().ToArray<double>());
        Assert.Equal(new double[] { -1, 10, -10, 1.5, 0, 0 }, torch.nan_to_num(s, nan: -1, posinf: 10, neginf: -10).ToArray<double>());
        var sf = s.@float().nan_to_num(2);
        Assert.Equal(new float[] { 2, float.MaxValue, float.MinValue, 1.5f, 0, 0 }, sf.ToArray<float>());

        var d = tensor(new double[] { 1.2345, -2.5551, 125.5 } /* 12.55 rounds to 13 */);
        MathRef.Close(new[] { 1.23, -2.56, 125.5 }, d.round(2).ToArray<double>(), rtol: 1e-12, what: "round(2)");
        MathRef.Close(new[] { 0, -0.0, 130 }, torch.round(d, -1).ToArray<double>(), what: "round(-1)");
    }

    // ---------------- in-place ----------------

    private static void AssertSameStorage(Tensor t, IntPtr before, Tensor returned)
    {
        Assert.Same(t, returned);
        Assert.Equal(before, t.data_ptr());
    }

    [Fact]
    public void InPlaceArithmeticModifiesInPlace()
    {
        using var scope = NewDisposeScope();
        var s = new long[] { 2, 3 };
        var a = MathRef.Rand(11, 6, 0.5, 2);
        var b = MathRef.Rand(12, 3, 0.5, 2);
        var c = MathRef.Rand(13, 6, 0.5, 2);
        var tb = tensor(b);         // [3], broadcast over rows
        var tc = tensor(c, s);

        void Run(Func<Tensor, Tensor> op, Func<int, double, double> reference, string what)
        {
            var t = tensor(a, s);
            var p = t.data_ptr();
            var r = op(t);
            AssertSameStorage(t, p, r);
            Assert.Equal(s, t.shape);
            var expected = new double[6];
            for (int k = 0; k < 6; k++) expected[k] = reference(k, a[k]);
            MathRef.Close(expected, t.ToArray<double>(), what: what);
        }
        Run(t => t.add_(tb), (k, x) => x + b[k % 3], "add_");
        Run(t => t.add_(tb, alpha: -2), (k, x) => x - 2 * b[k % 3], "add_ alpha");
        Run(t => t.add_(1.25), (k, x) => x + 1.25, "add_ scalar");
        Run(t => t.add_(1.25, alpha: 2), (k, x) => x + 2.5, "add_ scalar alpha");
        Run(t => t.sub_(tc), (k, x) => x - c[k], "sub_");
        Run(t => t.sub_(tc, alpha: 0.5), (k, x) => x - 0.5 * c[k], "sub_ alpha");
        Run(t => t.sub_(3), (k, x) => x - 3, "sub_ scalar");
        Run(t => t.mul_(tb), (k, x) => x * b[k % 3], "mul_");
        Run(t => t.mul_(0.9), (k, x) => x * 0.9, "mul_ scalar");
        Run(t => t.div_(tc), (k, x) => x / c[k], "div_");
        Run(t => t.div_(tc, "floor"), (k, x) => Math.Floor(x / c[k]), "div_ floor");
        Run(t => t.div_(0.3), (k, x) => x / 0.3, "div_ scalar");
        Run(t => t.div_(0.3, "trunc"), (k, x) => Math.Truncate(x / 0.3), "div_ scalar trunc");
        Run(t => t.addcmul_(tb, tc, value: 0.5), (k, x) => x + 0.5 * b[k % 3] * c[k], "addcmul_");
        Run(t => t.addcdiv_(tc, tb, value: -2), (k, x) => x - 2 * c[k] / b[k % 3], "addcdiv_");
        Run(t => t.lerp_(tc, 0.25), (k, x) => x + 0.25 * (c[k] - x), "lerp_ scalar");
        Run(t => t.lerp_(tc, tb), (k, x) => x + b[k % 3] * (c[k] - x), "lerp_ tensor");
        Run(t => t.copy_(tb), (k, x) => b[k % 3], "copy_ broadcast");
        Run(t => t.zero_(), (k, x) => 0, "zero_");
        Run(t => t.fill_(-4.5), (k, x) => -4.5, "fill_");
        Run(t => t.clamp_(min: 1), (k, x) => Math.Max(x, 1), "clamp_ min");
        Run(t => t.clamp_(max: 1), (k, x) => Math.Min(x, 1), "clamp_ max");
        Run(t => t.clamp_(0.8, 1.2), (k, x) => Math.Clamp(x, 0.8, 1.2), "clamp_ both");
        Run(t => t.clamp_(tb, null), (k, x) => Math.Max(x, b[k % 3]), "clamp_ tensor min");
        Run(t => t.clamp_min_(1.1), (k, x) => Math.Max(x, 1.1), "clamp_min_");
        Run(t => t.clamp_max_(1.1), (k, x) => Math.Min(x, 1.1), "clamp_max_");
        Run(t => t.sqrt_(), (k, x) => Math.Sqrt(x), "sqrt_");
        Run(t => t.exp_(), (k, x) => Math.Exp(x), "exp_");
        Run(t => t.neg_(), (k, x) => -x, "neg_");
        Run(t => t.pow_(3), (k, x) => x * x * x, "pow_ scalar");
        Run(t => t.pow_(0.5), (k, x) => Math.Sqrt(x), "pow_ half");
        Run(t => t.pow_(tb), (k, x) => Math.Pow(x, b[k % 3]), "pow_ tensor");
        var mask = tensor(new bool[] { true, false, true }, new long[] { 1, 3 });
        Run(t => t.masked_fill_(mask, -1), (k, x) => k % 3 == 1 ? x : -1, "masked_fill_");
        Run(t => t.masked_fill_(mask, scalar_tensor(7, ScalarType.Float64)), (k, x) => k % 3 == 1 ? x : 7, "masked_fill_ tensor");
    }

    [Fact]
    public void InPlaceUnaryOpsMatchOutOfPlace()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(21, 8, 0.1, 3);
        a[0] = 1.5;
        var ops = new (Func<Tensor, Tensor> inplace, Func<Tensor, Tensor> outOfPlace)[]
        {
            (t => t.neg_(), t => t.neg()), (t => t.abs_(), t => t.abs()), (t => t.exp_(), t => t.exp()), (t => t.log_(), t => t.log()),
            (t => t.sqrt_(), t => t.sqrt()), (t => t.rsqrt_(), t => t.rsqrt()), (t => t.square_(), t => t.square()),
            (t => t.tanh_(), t => t.tanh()), (t => t.sigmoid_(), t => t.sigmoid()), (t => t.relu_(), t => t.relu()),
            (t => t.sign_(), t => t.sign()), (t => t.floor_(), t => t.floor()), (t => t.ceil_(), t => t.ceil()),
            (t => t.round_(), t => t.round()), (t => t.trunc_(), t => t.trunc()), (t => t.reciprocal_(), t => t.reciprocal()),
            (t => torch.exp_(t), t => t.exp()),
        };
        foreach (var (inplace, outOfPlace) in ops)
        {
            var t = tensor(a, new long[] { 2, 4 });
            var expected = outOfPlace(t).ToArray<double>();
            var p = t.data_ptr();
            AssertSameStorage(t, p, inplace(t));
            Assert.Equal(expected, t.ToArray<double>());
        }
    }

    [Fact]
    public void InPlaceOpsRespectDtypeAndShape()
    {
        using var scope = NewDisposeScope();
        // copy_ converts into the destination's dtype
        var f = zeros(new long[] { 3 });
        f.copy_(tensor(new double[] { 1.5, -2.25, 3 }));
        Assert.Equal(ScalarType.Float32, f.dtype);
        Assert.Equal(new float[] { 1.5f, -2.25f, 3 }, f.ToArray<float>());
        // integer tensors: integral scalars are fine, a fractional factor cannot be stored back
        var i = tensor(new long[] { 1, 2, 3 });
        i.mul_(3).add_(1);
        Assert.Equal(new long[] { 4, 7, 10 }, i.ToArray<long>());
        var ex = Assert.Throws<TorchException>(() => i.mul_(0.5));
        Assert.Contains("Long", ex.Message);
        // the result of an in-place op must keep this tensor's shape
        var small = zeros(new long[] { 3 });
        var ex2 = Assert.Throws<TorchException>(() => small.add_(ones(2, 3)));
        Assert.Contains("[2, 3]", ex2.Message);
        Assert.Equal(new long[] { 3 }, small.shape);
        // in-place on a leaf that requires grad is refused
        var leaf = ones(new long[] { 2 }, requires_grad: true);
        Assert.Throws<TorchException>(() => leaf.mul_(2));
        using (no_grad()) leaf.mul_(2);
        Assert.Equal(new float[] { 2, 2 }, leaf.ToArray<float>());
    }

    // ---------------- clamp / lerp / addcmul / addcdiv ----------------

    [Fact]
    public void MultiOperandOpsMatchReference()
    {
        using var scope = NewDisposeScope();
        var s = new long[] { 2, 3 };
        var a = MathRef.Rand(31, 6, -2, 2);
        var b = MathRef.Rand(32, 3, 0.5, 2);
        var c = MathRef.Rand(33, 6, 0.5, 2);
        var ta = tensor(a, s);
        var tb = tensor(b);
        var tc = tensor(c, s);
        double[] Ref(Func<int, double, double> f) { var r = new double[6]; for (int k = 0; k < 6; k++) r[k] = f(k, a[k]); return r; }
        MathRef.Close(Ref((k, x) => Math.Clamp(x, -0.5, 0.7)), ta.clamp(-0.5, 0.7).ToArray<double>(), what: "clamp");
        MathRef.Close(Ref((k, x) => Math.Max(x, -0.5)), torch.clamp(ta, min: -0.5).ToArray<double>(), what: "clamp min");
        MathRef.Close(Ref((k, x) => Math.Min(x, 0.7)), ta.clamp(max: 0.7).ToArray<double>(), what: "clamp max");
        MathRef.Close(Ref((k, x) => Math.Min(x, 0.7)), ta.clamp_max(0.7).ToArray<double>(), what: "clamp_max");
        MathRef.Close(Ref((k, x) => Math.Max(x, -0.5)), torch.clip(ta, -0.5).ToArray<double>(), what: "clip");
        MathRef.Close(Ref((k, x) => Math.Min(Math.Max(x, -b[k % 3]), b[k % 3])), ta.clamp(-tb, tb).ToArray<double>(), what: "clamp tensor");
        MathRef.Close(Ref((k, x) => x + 0.3 * (c[k] - x)), ta.lerp(tc, 0.3).ToArray<double>(), what: "lerp");
        MathRef.Close(Ref((k, x) => x + b[k % 3] * (c[k] - x)), torch.lerp(ta, tc, tb).ToArray<double>(), what: "lerp tensor");
        MathRef.Close(Ref((k, x) => x + 2 * b[k % 3] * c[k]), ta.addcmul(tb, tc, 2).ToArray<double>(), what: "addcmul");
        MathRef.Close(Ref((k, x) => x + 0.5 * c[k] / b[k % 3]), torch.addcdiv(ta, tc, tb, 0.5).ToArray<double>(), what: "addcdiv");
        var i = tensor(new long[] { -5, 0, 5 });
        Assert.Equal(ScalarType.Int64, i.clamp(-2, 2).dtype);
        Assert.Equal(new long[] { -2, 0, 2 }, i.clamp(-2, 2).ToArray<long>());
    }

    // ---------------- comparisons and selection ----------------

    [Fact]
    public void ComparisonsBroadcastAndReturnBool()
    {
        using var scope = NewDisposeScope();
        var a = new double[] { 1, 2, 3, 4, 5, 6 };
        var b = new double[] { 2, 2, 5, 4, 4, 4 };
        var ta = tensor(a, SA);          // [2,1,3]
        var tb = tensor(b, new long[] { 2, 3 });
        var ops = new (Func<Tensor, Tensor, Tensor> t, Func<Tensor, double, Tensor> s, Func<double, double, bool> f, string name)[]
        {
            ((x, y) => x.eq(y), (x, y) => x.eq(y), (x, y) => x == y, "eq"),
            ((x, y) => torch.ne(x, y), (x, y) => torch.ne(x, y), (x, y) => x != y, "ne"),
            ((x, y) => x.lt(y), (x, y) => x.lt(y), (x, y) => x < y, "lt"),
            ((x, y) => x.le(y), (x, y) => x.le(y), (x, y) => x <= y, "le"),
            ((x, y) => torch.gt(x, y), (x, y) => torch.gt(x, y), (x, y) => x > y, "gt"),
            ((x, y) => x.ge(y), (x, y) => x.ge(y), (x, y) => x >= y, "ge"),
        };
        foreach (var (t, s, f, name) in ops)
        {
            var r = t(ta, tb);
            Assert.Equal(ScalarType.Bool, r.dtype);
            Assert.Equal(new long[] { 2, 2, 3 }, r.shape);
            var expected = MathRef.Binary(a, SA, b, new long[] { 2, 3 }, (x, y) => f(x, y) ? 1 : 0, out _);
            Assert.Equal(expected.Select(v => v != 0).ToArray(), r.ToArray<bool>());
            var rs = s(ta, 3);
            Assert.Equal(ScalarType.Bool, rs.dtype);
            Assert.Equal(a.Select(v => f(v, 3)).ToArray(), rs.ToArray<bool>());
        }
        // integer tensor against a fractional scalar compares exactly
        var i = tensor(new long[] { 1, 2, 3 });
        Assert.Equal(new[] { false, false, true }, i.gt(2.5).ToArray<bool>());
        Assert.Equal(new[] { false, false, false }, i.eq(2.5).ToArray<bool>());
    }

    [Fact]
    public void EqualAllcloseAndLogicalOps()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new double[] { 1, 2, 3 });
        Assert.True(a.equal(tensor(new double[] { 1, 2, 3 })));
        Assert.False(a.equal(tensor(new double[] { 1, 2, 3.0000001 })));
        Assert.False(torch.equal(a, tensor(new double[] { 1, 2, 3 }, new long[] { 3, 1 }))); // shape differs
        Assert.True(a.allclose(tensor(new double[] { 1, 2, 3.00001 })));          // within rtol 1e-5 × 3 + 1e-8
        Assert.False(a.allclose(tensor(new double[] { 1, 2, 3.0001 })));
        Assert.True(a.allclose(tensor(new double[] { 1.05, 2, 3 }), rtol: 0, atol: 0.06));
        Assert.False(a.allclose(tensor(new double[] { 1.05, 2, 3 }), rtol: 0, atol: 0.04));
        var n = tensor(new double[] { double.NaN, 1 });
        Assert.False(n.allclose(n));
        Assert.True(torch.allclose(n, n, equal_nan: true));

        var p = tensor(new bool[] { true, true, false, false });
        var q = tensor(new bool[] { true, false, true, false });
        Assert.Equal(new[] { true, false, false, false }, p.logical_and(q).ToArray<bool>());
        Assert.Equal(new[] { true, true, true, false }, torch.logical_or(p, q).ToArray<bool>());
        Assert.Equal(new[] { false, true, true, false }, p.logical_xor(q).ToArray<bool>());
        Assert.Equal(new[] { false, false, true, true }, torch.logical_not(p).ToArray<bool>());
        // nonzero numbers count as true, with broadcasting
        var x = tensor(new double[] { 0, 2, -1, 0 }, new long[] { 2, 2 });
        var y = tensor(new long[] { 1, 0 });
        Assert.Equal(new[] { false, false, true, false }, x.logical_and(y).ToArray<bool>());
    }

    [Fact]
    public void WhereAndMaskedFillMatchReference()
    {
        using var scope = NewDisposeScope();
        var c = new bool[] { true, false, false, true, true, false };
        var a = MathRef.Rand(41, 6);
        var b = MathRef.Rand(42, 3);
        var tc = tensor(c, new long[] { 2, 3 });
        var ta = tensor(a, new long[] { 2, 3 });
        var tb = tensor(b);
        var r = where(tc, ta, tb);
        var expected = new double[6];
        for (int k = 0; k < 6; k++) expected[k] = c[k] ? a[k] : b[k % 3];
        Assert.Equal(expected, r.ToArray<double>());
        Assert.Equal(expected, ta.where(tc, tb).ToArray<double>());
        // condition broadcasts too: [2,1] against [3]
        var c2 = tensor(new bool[] { true, false }, new long[] { 2, 1 });
        Assert.Equal(new long[] { 2, 3 }, where(c2, tb, tb.neg()).shape);
        Assert.Equal(b.Concat(b.Select(v => -v)).ToArray(), where(c2, tb, tb.neg()).ToArray<double>());
        // scalar branches
        for (int k = 0; k < 6; k++) expected[k] = c[k] ? 0.5 : a[k];
        Assert.Equal(expected, where(tc, 0.5, ta).ToArray<double>());
        for (int k = 0; k < 6; k++) expected[k] = c[k] ? a[k] : -1;
        Assert.Equal(expected, where(tc, ta, -1).ToArray<double>());
        Assert.Equal(expected, ta.where(tc, -1).ToArray<double>());
        var both = where(tc, 1.5, -2);
        Assert.Equal(ScalarType.Float32, both.dtype);
        Assert.Equal(c.Select(v => v ? 1.5f : -2f).ToArray(), both.ToArray<float>());
        var ints = where(tc, 1, 0);
        Assert.Equal(ScalarType.Int64, ints.dtype);
        Assert.Equal(c.Select(v => v ? 1L : 0L).ToArray(), ints.ToArray<long>());
        Assert.Equal(ScalarType.Float64, where(tc, 1, 0, ScalarType.Float64).dtype);
        // float32 tensor with a scalar branch stays float32
        Assert.Equal(ScalarType.Float32, where(tc, ta.@float(), 0.25).dtype);

        // masked_fill: mask broadcast over rows
        var mask = tensor(new bool[] { false, true, false });
        var mf = ta.masked_fill(mask, 9);
        for (int k = 0; k < 6; k++) expected[k] = k % 3 == 1 ? 9 : a[k];
        Assert.Equal(expected, mf.ToArray<double>());
        Assert.Equal(expected, torch.masked_fill(ta, mask, 9).ToArray<double>());
        Assert.Equal(a, ta.ToArray<double>()); // out-of-place left the input alone
        Assert.Equal(expected, ta.masked_fill(mask, scalar_tensor(9, ScalarType.Float64)).ToArray<double>());
        var neg = ta.masked_fill(ta.lt(0), double.NegativeInfinity);
        Assert.Equal(a.Select(v => v < 0 ? double.NegativeInfinity : v).ToArray(), neg.ToArray<double>());
    }
}
