using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

public class MathOpsLinalgTests
{
    private const double Tol = 1e-12;

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 4, 5)]
    [InlineData(7, 2, 3)]
    [InlineData(16, 33, 9)]
    public void MatmulAndMmMatchTripleLoop(int n, int m, int p)
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(61 + n, n * m);
        var b = MathRef.Rand(62 + p, m * p);
        var ta = tensor(a, new long[] { n, m });
        var tb = tensor(b, new long[] { m, p });
        var expected = MathRef.MatMul(a, b, n, m, p);
        var r = ta.matmul(tb);
        Assert.Equal(new long[] { n, p }, r.shape);
        MathRef.Close(expected, r.ToArray<double>(), Tol, Tol, "matmul");
        MathRef.Close(expected, torch.mm(ta, tb).ToArray<double>(), Tol, Tol, "mm");
        MathRef.Close(expected, torch.matmul(ta, tb).ToArray<double>(), Tol, Tol, "torch.matmul");
        // float32 agrees to single precision
        var r32 = ta.@float().mm(tb.@float());
        Assert.Equal(ScalarType.Float32, r32.dtype);
        MathRef.Close(expected, r32.ToDoubleArray(), 1e-4, 1e-4, "mm f32");
    }

    [Fact]
    public void MatmulOneDimensionalCases()
    {
        using var scope = NewDisposeScope();
        var v = MathRef.Rand(63, 4);
        var w = MathRef.Rand(64, 4);
        var m = MathRef.Rand(65, 4 * 3);
        var mt = MathRef.Rand(66, 3 * 4);
        var tv = tensor(v);
        // vector · vector -> 0-d
        var dot = tv.matmul(tensor(w));
        Assert.Empty(dot.shape);
        double d = 0;
        for (int k = 0; k < 4; k++) d += v[k] * w[k];
        Assert.Equal(d, dot.item<double>(), 12);
        Assert.Equal(d, torch.dot(tv, tensor(w)).item<double>(), 12);
        // vector @ matrix [4] x [4,3] -> [3]
        var vm = tv.matmul(tensor(m, new long[] { 4, 3 }));
        Assert.Equal(new long[] { 3 }, vm.shape);
        MathRef.Close(MathRef.MatMul(v, m, 1, 4, 3), vm.ToArray<double>(), Tol, Tol, "vec @ mat");
        // matrix @ vector [3,4] x [4] -> [3]
        var mv = tensor(mt, new long[] { 3, 4 }).matmul(tv);
        Assert.Equal(new long[] { 3 }, mv.shape);
        MathRef.Close(MathRef.MatMul(mt, v, 3, 4, 1), mv.ToArray<double>(), Tol, Tol, "mat @ vec");
        MathRef.Close(MathRef.MatMul(mt, v, 3, 4, 1), torch.mv(tensor(mt, new long[] { 3, 4 }), tv).ToArray<double>(), Tol, Tol, "mv");
        // outer
        var o = tv.outer(tensor(w));
        Assert.Equal(new long[] { 4, 4 }, o.shape);
        MathRef.Close(MathRef.MatMul(v, w, 4, 1, 4), o.ToArray<double>(), Tol, Tol, "outer");
        MathRef.Close(MathRef.MatMul(v, w, 4, 1, 4), torch.outer(tv, tensor(w)).ToArray<double>(), Tol, Tol, "torch.outer");
    }

    [Fact]
    public void BatchedMatmulBroadcastsBatchDims()
    {
        using var scope = NewDisposeScope();
        // [2,1,3,4] @ [5,4,2] -> [2,5,3,2]
        var a = MathRef.Rand(67, 2 * 3 * 4);
        var b = MathRef.Rand(68, 5 * 4 * 2);
        var r = tensor(a, new long[] { 2, 1, 3, 4 }).matmul(tensor(b, new long[] { 5, 4, 2 }));
        Assert.Equal(new long[] { 2, 5, 3, 2 }, r.shape);
        var got = r.ToArray<double>();
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 5; j++)
            {
                var block = MathRef.MatMul(a, b, 3, 4, 2, aOff: i * 12, bOff: j * 8);
                MathRef.Close(block, got.Skip((i * 5 + j) * 6).Take(6).ToArray(), Tol, Tol, $"batch {i},{j}");
            }
        // [2,3,4] @ [4] -> [2,3]
        var v = MathRef.Rand(69, 4);
        var rv = tensor(a, new long[] { 2, 3, 4 }).matmul(tensor(v));
        Assert.Equal(new long[] { 2, 3 }, rv.shape);
        MathRef.Close(MathRef.MatMul(a, v, 6, 4, 1), rv.ToArray<double>(), Tol, Tol, "batched mat @ vec");
    }

    [Theory]
    [InlineData(1, 2, 3, 4)]
    [InlineData(3, 4, 5, 2)]
    public void BmmAndBaddbmmMatchTripleLoop(int batch, int n, int m, int p)
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(70, batch * n * m);
        var b = MathRef.Rand(71, batch * m * p);
        var c = MathRef.Rand(72, batch * n * p);
        var ta = tensor(a, new long[] { batch, n, m });
        var tb = tensor(b, new long[] { batch, m, p });
        var r = ta.bmm(tb);
        var rb = tensor(c, new long[] { batch, n, p }).baddbmm(ta, tb, beta: 0.5, alpha: -2);
        var rbs = torch.baddbmm(tensor(c, new long[] { batch, n, p }), ta, tb);
        Assert.Equal(new long[] { batch, n, p }, r.shape);
        var got = torch.bmm(ta, tb).ToArray<double>();
        var gotb = rb.ToArray<double>();
        var gotbs = rbs.ToArray<double>();
        for (int i = 0; i < batch; i++)
        {
            var block = MathRef.MatMul(a, b, n, m, p, aOff: i * n * m, bOff: i * m * p);
            var off = i * n * p;
            MathRef.Close(block, got.Skip(off).Take(n * p).ToArray(), Tol, Tol, "bmm");
            MathRef.Close(block.Select((x, k) => 0.5 * c[off + k] - 2 * x).ToArray(), gotb.Skip(off).Take(n * p).ToArray(), Tol, Tol, "baddbmm");
            MathRef.Close(block.Select((x, k) => c[off + k] + x).ToArray(), gotbs.Skip(off).Take(n * p).ToArray(), Tol, Tol, "baddbmm defaults");
        }
        MathRef.Close(r.ToArray<double>(), ta.matmul(tb).ToArray<double>(), Tol, Tol, "matmul 3-d");
    }

    [Fact]
    public void AddmmScalesAndBroadcastsInput()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(73, 3 * 4);
        var b = MathRef.Rand(74, 4 * 5);
        var bias = MathRef.Rand(75, 5);
        var cc = MathRef.Rand(76, 15);
        var ta = tensor(a, new long[] { 3, 4 });
        var tb = tensor(b, new long[] { 4, 5 });
        var prod = MathRef.MatMul(a, b, 3, 4, 5);
        var r = tensor(bias).addmm(ta, tb, beta: 2, alpha: 0.5);
        Assert.Equal(new long[] { 3, 5 }, r.shape);
        MathRef.Close(prod.Select((x, k) => 2 * bias[k % 5] + 0.5 * x).ToArray(), r.ToArray<double>(), Tol, Tol, "addmm bias");
        var r2 = torch.addmm(tensor(cc, new long[] { 3, 5 }), ta, tb);
        MathRef.Close(prod.Select((x, k) => cc[k] + x).ToArray(), r2.ToArray<double>(), Tol, Tol, "addmm");
        // beta = 0 ignores the input, even NaN
        var nan = full(new long[] { 3, 5 }, double.NaN, ScalarType.Float64);
        MathRef.Close(prod, torch.addmm(nan, ta, tb, beta: 0).ToArray<double>(), Tol, Tol, "addmm beta 0");
    }

    [Fact]
    public void EinsumMatchesLoops()
    {
        using var scope = NewDisposeScope();
        var a = MathRef.Rand(77, 2 * 3 * 4);
        var b = MathRef.Rand(78, 2 * 4 * 5);
        var ta = tensor(a, new long[] { 2, 3, 4 });
        var tb = tensor(b, new long[] { 2, 4, 5 });
        var bik = einsum("bij,bjk->bik", ta, tb);
        Assert.Equal(new long[] { 2, 3, 5 }, bik.shape);
        var got = bik.ToArray<double>();
        for (int i = 0; i < 2; i++)
            MathRef.Close(MathRef.MatMul(a, b, 3, 4, 5, i * 12, i * 20), got.Skip(i * 15).Take(15).ToArray(), Tol, Tol, "einsum bmm");
        // transpose, trace, sum of all, outer, dot
        var m = MathRef.Rand(79, 9);
        var tm = tensor(m, new long[] { 3, 3 });
        var tr = einsum("ij->ji", tm).ToArray<double>();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 3; j++) Assert.Equal(m[i * 3 + j], tr[j * 3 + i]);
        Assert.Equal(m[0] + m[4] + m[8], einsum("ii", tm).item<double>(), 12);
        Assert.Equal(new[] { m[0], m[4], m[8] }, einsum("ii->i", tm).ToArray<double>());
        Assert.Equal(m.Sum(), einsum("ij->", tm).item<double>(), 12);
        var v = new double[] { 1, 2, 3 };
        var w = new double[] { -1, 0.5, 4 };
        Assert.Equal(1 * -1 + 2 * 0.5 + 3 * 4.0, einsum("i,i->", tensor(v), tensor(w)).item<double>(), 12);
        MathRef.Close(MathRef.MatMul(v, w, 3, 1, 3), einsum("i,j->ij", tensor(v), tensor(w)).ToArray<double>(), Tol, Tol, "einsum outer");
        // three operands: x^T M y
        var xmy = einsum("i,ij,j->", tensor(v), tm, tensor(w)).item<double>();
        double e = 0;
        for (int i = 0; i < 3; i++) for (int j = 0; j < 3; j++) e += v[i] * m[i * 3 + j] * w[j];
        Assert.Equal(e, xmy, 12);
        // ellipsis
        var ell = einsum("...ij,...jk->...ik", ta, tb);
        Assert.Equal(bik.ToArray<double>(), ell.ToArray<double>());
    }

    [Fact]
    public void LinalgOpsWorkInFloat32AndInteger()
    {
        using var scope = NewDisposeScope();
        var a = tensor(new long[] { 1, 2, 3, 4 }, new long[] { 2, 2 });
        var b = tensor(new long[] { 5, 6, 7, 8 }, new long[] { 2, 2 });
        var r = a.matmul(b);
        Assert.Equal(ScalarType.Int64, r.dtype);
        Assert.Equal(new long[] { 19, 22, 43, 50 }, r.ToArray<long>());
        var f = tensor(new float[] { 1, 2, 3, 4 }, new long[] { 2, 2 });
        Assert.Equal(new float[] { 7, 10, 15, 22 }, f.mm(f).ToArray<float>());
    }
}
