using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

public class MathOpsReductionTests
{
    private static readonly long[] S = { 2, 3, 4 };

    private static double Sum(List<double> g) { double s = 0; foreach (var v in g) s += v; return s; }
    private static double Prod(List<double> g) { double s = 1; foreach (var v in g) s *= v; return s; }
    private static double Mean(List<double> g) => Sum(g) / g.Count;
    private static double Var(List<double> g, double correction)
    {
        var m = Mean(g);
        double s = 0;
        foreach (var v in g) s += (v - m) * (v - m);
        return s / (g.Count - correction);
    }
    private static double Max(List<double> g) { var m = double.NegativeInfinity; foreach (var v in g) m = Math.Max(m, v); return m; }
    private static double Min(List<double> g) { var m = double.PositiveInfinity; foreach (var v in g) m = Math.Min(m, v); return m; }
    private static double Norm(List<double> g, double p)
    {
        if (double.IsPositiveInfinity(p)) { double m = 0; foreach (var v in g) m = Math.Max(m, Math.Abs(v)); return m; }
        double s = 0;
        foreach (var v in g) s += Math.Pow(Math.Abs(v), p);
        return Math.Pow(s, 1 / p);
    }
    private static double LogSumExp(List<double> g) { double s = 0; foreach (var v in g) s += Math.Exp(v); return Math.Log(s); }

    public static IEnumerable<object[]> DimCases() => new[]
    {
        new object[] { null!, false }, new object[] { null!, true },
        new object[] { new long[] { 0 }, false }, new object[] { new long[] { -1 }, true },
        new object[] { new long[] { 0, 2 }, false }, new object[] { new long[] { -3, -2 }, true }, new object[] { new long[] { 1 }, true },
    };

    private static void CheckReduction(Tensor r, double[] a, long[]? dims, bool keepdim, Func<List<double>, double> f, double rtol, string what)
    {
        var all = dims ?? new long[] { 0, 1, 2 };
        var expected = MathRef.Reduce(a, S, all, f, out var kept, out var dropped);
        Assert.Equal(keepdim ? kept : dropped, r.shape);
        MathRef.Close(expected, r.ToDoubleArray(), rtol: rtol, atol: 1e-12, what: what);
    }

    [Theory]
    [MemberData(nameof(DimCases))]
    public void SumMeanProdVarStdOverDims(long[]? dims, bool keepdim)
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(51, 24, 0.5, 1.5);
        var t = tensor(a, S);
        CheckReduction(t.sum(dims, keepdim), a, dims, keepdim, Sum, 1e-12, "sum");
        CheckReduction(torch.sum(t, dims, keepdim), a, dims, keepdim, Sum, 1e-12, "torch.sum");
        CheckReduction(t.mean(dims, keepdim), a, dims, keepdim, Mean, 1e-12, "mean");
        CheckReduction(t.prod(dims, keepdim), a, dims, keepdim, Prod, 1e-12, "prod");
        CheckReduction(t.var(dims, keepdim: keepdim), a, dims, keepdim, g => Var(g, 1), 1e-10, "var");
        CheckReduction(t.var(dims, unbiased: false, keepdim: keepdim), a, dims, keepdim, g => Var(g, 0), 1e-10, "var biased");
        CheckReduction(torch.var(t, dims, correction: 0, keepdim: keepdim), a, dims, keepdim, g => Var(g, 0), 1e-10, "var correction 0");
        CheckReduction(t.std(dims, keepdim: keepdim), a, dims, keepdim, g => Math.Sqrt(Var(g, 1)), 1e-10, "std");
        CheckReduction(torch.std(t, dims, unbiased: false, keepdim: keepdim), a, dims, keepdim, g => Math.Sqrt(Var(g, 0)), 1e-10, "std biased");
        CheckReduction(t.amax(dims, keepdim), a, dims, keepdim, Max, 0, "amax");
        CheckReduction(torch.amin(t, dims, keepdim), a, dims, keepdim, Min, 0, "amin");
        CheckReduction(t.norm(dim: dims, keepdim: keepdim), a, dims, keepdim, g => Norm(g, 2), 1e-12, "norm");
        CheckReduction(t.norm(1, dims, keepdim), a, dims, keepdim, g => Norm(g, 1), 1e-12, "norm 1");
        CheckReduction(torch.norm(t, 3, dims, keepdim), a, dims, keepdim, g => Norm(g, 3), 1e-12, "norm 3");
        CheckReduction(t.norm(double.PositiveInfinity, dims, keepdim), a, dims, keepdim, g => Norm(g, double.PositiveInfinity), 0, "norm inf");
        CheckReduction(t.logsumexp(dims, keepdim), a, dims, keepdim, LogSumExp, 1e-12, "logsumexp");
    }

    [Fact]
    public void SingleDimOverloadsMatchArrayForms()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(52, 24, 0.5, 1.5);
        var t = tensor(a, S);
        var pairs = new (Tensor single, Tensor array)[]
        {
            (t.sum(1), t.sum(new long[] { 1 })), (t.sum(-1, keepdim: true), t.sum(new long[] { 2 }, true)),
            (t.mean(0), t.mean(new long[] { 0 })), (torch.mean(t, 2, true), t.mean(new long[] { 2 }, true)),
            (t.prod(1), t.prod(new long[] { 1 })), (torch.sum(t, 0), t.sum(new long[] { 0 })),
            (t.var(2), t.var(new long[] { 2 })), (t.std(-2, false, true), t.std(new long[] { 1 }, false, true)),
            (t.amax(1), t.amax(new long[] { 1 })), (t.amin(-1, true), t.amin(new long[] { 2 }, true)),
            (t.logsumexp(0), t.logsumexp(new long[] { 0 })), (torch.logsumexp(t, 1, true), t.logsumexp(new long[] { 1 }, true)),
        };
        foreach (var (single, array) in pairs)
        {
            Assert.Equal(array.shape, single.shape);
            Assert.Equal(array.ToArray<double>(), single.ToArray<double>());
        }
    }

    [Fact]
    public void ReductionDtypes()
    {
        using var scope = NewDisposeScope();
        var i = tensor(new int[] { 1, 2, 3, 4, 5, 6 }, new long[] { 2, 3 });
        Assert.Equal(ScalarType.Int64, i.sum().dtype); // integer sums accumulate in int64
        Assert.Equal(21L, i.sum().item<long>());
        Assert.Equal(ScalarType.Float64, i.sum(dtype: ScalarType.Float64).dtype);
        Assert.Equal(new double[] { 5, 7, 9 }, i.sum(0, dtype: ScalarType.Float64).ToArray<double>());
        Assert.Equal(720L, i.prod().item<long>());
        Assert.Equal(new long[] { 6, 120 }, i.prod(1).ToArray<long>());
        Assert.Equal(new double[] { 2.5, 3.5, 4.5 }, i.mean(new long[] { 0 }, dtype: ScalarType.Float64).ToArray<double>());
        var f = tensor(new float[] { 1e8f, 1, -1e8f, 1 });
        Assert.Equal(2.0, f.sum(dtype: ScalarType.Float64).item<double>());
        var b = tensor(new bool[] { true, false, true });
        Assert.Equal(2L, b.sum().item<long>());
        // 0-d result of a full reduction; keepdim keeps every dim
        Assert.Empty(i.sum().shape);
        Assert.Equal(new long[] { 1, 1 }, i.sum(keepdim: true).shape);
        Assert.Equal(new long[] { 1, 1 }, i.prod(keepdim: true).shape);
        Assert.Equal(new long[] { 1, 1 }, i.amax(keepdim: true).shape);
    }

    [Fact]
    public void CorrectionOtherThanZeroOrOne()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(53, 24);
        var t = tensor(a, S);
        CheckReduction(t.var(new long[] { 2 }, correction: 2), a, new long[] { 2 }, false, g => Var(g, 2), 1e-10, "var correction 2");
        CheckReduction(t.std(null, correction: 3, keepdim: true), a, null, true, g => Math.Sqrt(Var(g, 3)), 1e-10, "std correction 3");
    }

    [Fact]
    public void MaxMinAlongDimGiveValuesAndIndices()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(54, 24);
        var t = tensor(a, S);
        Assert.Equal(a.Max(), t.max().item<double>());
        Assert.Equal(a.Min(), torch.min(t).item<double>());
        Assert.Empty(t.max().shape);
        foreach (var dim in new long[] { 0, 1, 2, -1, -3 })
            foreach (var keepdim in new[] { false, true })
            {
                var groups = MathRef.Groups(a, S, new[] { dim }, out var kept, out var dropped);
                var (values, indices) = t.max(dim, keepdim);
                var (minValues, minIndices) = torch.min(t, dim, keepdim);
                Assert.Equal(keepdim ? kept : dropped, values.shape);
                Assert.Equal(keepdim ? kept : dropped, indices.shape);
                Assert.Equal(ScalarType.Int64, indices.dtype);
                var v = values.ToArray<double>();
                var ix = indices.ToArray<long>();
                var mv = minValues.ToArray<double>();
                var mix = minIndices.ToArray<long>();
                var am = t.argmax(dim, keepdim).ToArray<long>();
                var an = torch.argmin(t, dim, keepdim).ToArray<long>();
                Assert.Equal(keepdim ? kept : dropped, t.argmax(dim, keepdim).shape);
                for (int g = 0; g < groups.Length; g++)
                {
                    var list = groups[g];
                    Assert.Equal(list.Max(), v[g]);
                    Assert.Equal(list.IndexOf(list.Max()), ix[g]);
                    Assert.Equal(list.Min(), mv[g]);
                    Assert.Equal(list.IndexOf(list.Min()), mix[g]);
                    Assert.Equal(ix[g], am[g]);
                    Assert.Equal(mix[g], an[g]);
                }
            }
        // flattened argmax/argmin
        Assert.Equal((long)Array.IndexOf(a, a.Max()), t.argmax().item<long>());
        Assert.Equal((long)Array.IndexOf(a, a.Min()), argmin(t).item<long>());
        Assert.Equal(new long[] { 1, 1, 1 }, t.argmax(keepdim: true).shape);
        // the elementwise overloads
        var u = tensor(new double[] { 1, 5, 3 });
        var w = tensor(new double[] { 4, 2, 3 });
        Assert.Equal(new double[] { 4, 5, 3 }, u.max(w).ToArray<double>());
        Assert.Equal(new double[] { 1, 2, 3 }, torch.min(u, w).ToArray<double>());
        // ties: the first position wins for argmax
        var tie = tensor(new double[] { 2, 7, 7, 1 });
        Assert.Equal(1L, tie.argmax().item<long>());
    }

    [Fact]
    public void CumsumAlongDims()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(55, 24);
        var t = tensor(a, S);
        foreach (var dim in new long[] { 0, 1, 2, -1, -2 })
        {
            var d = dim < 0 ? dim + 3 : dim;
            var r = t.cumsum(dim).ToArray<double>();
            var expected = new double[24];
            var strides = new long[] { 12, 4, 1 };
            for (int i = 0; i < 24; i++)
            {
                long coord = i / strides[d] % S[d];
                double s = 0;
                for (long k = 0; k <= coord; k++) s += a[i - (coord - k) * strides[d]];
                expected[i] = s;
            }
            MathRef.Close(expected, r, rtol: 1e-12, what: $"cumsum dim {dim}");
            Assert.Equal(S, t.cumsum(dim).shape);
        }
        var i32 = tensor(new int[] { 1, 2, 3 });
        Assert.Equal(ScalarType.Int64, i32.cumsum(0).dtype);
        Assert.Equal(new long[] { 1, 3, 6 }, i32.cumsum(0).ToArray<long>());
        Assert.Equal(new double[] { 1, 3, 6 }, torch.cumsum(i32, 0, ScalarType.Float64).ToArray<double>());
    }

    [Fact]
    public void AnyAndAll()
    {
        using var scope = NewDisposeScope();
        var b = tensor(new bool[] { true, false, false, true, true, true }, new long[] { 2, 3 });
        Assert.True(b.any().item<bool>());
        Assert.False(torch.all(b).item<bool>());
        Assert.Equal(new[] { true, true, true }, b.any(0).ToArray<bool>());
        Assert.Equal(new[] { true, false, false }, b.all(0).ToArray<bool>());
        Assert.Equal(new[] { false, true }, torch.all(b, 1).ToArray<bool>());
        Assert.Equal(new long[] { 2, 1 }, b.any(-1, keepdim: true).shape);
        Assert.Equal(new[] { true, true }, torch.any(b, 1, true).ToArray<bool>());
        var z = zeros(new long[] { 3 });
        Assert.False(z.any().item<bool>());
        Assert.True(z.eq(0).all().item<bool>());
        Assert.True(tensor(new double[] { 0.5, -1 }).all().item<bool>());
    }
}
