using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>Shared helpers: deterministic data and row-major index arithmetic, independent of the ops under test.</summary>
internal static class ShapeRef
{
    public static double[] Data(int n, int seed = 1)
    {
        var r = new Random(seed);
        var d = new double[n];
        for (int i = 0; i < n; i++) d[i] = Math.Round(r.NextDouble() * 20 - 10, 6);
        return d;
    }

    public static double[] Iota(int n)
    {
        var d = new double[n];
        for (int i = 0; i < n; i++) d[i] = i;
        return d;
    }

    /// <summary>Row-major offset of a multi-index in a contiguous tensor of the given shape.</summary>
    public static long Off(long[] shape, params long[] idx)
    {
        long o = 0;
        for (int i = 0; i < shape.Length; i++) o = o * shape[i] + idx[i];
        return o;
    }

    /// <summary>Multi-index of a row-major offset.</summary>
    public static long[] Unravel(long[] shape, long off)
    {
        var idx = new long[shape.Length];
        for (int i = shape.Length - 1; i >= 0; i--) { idx[i] = off % shape[i]; off /= shape[i]; }
        return idx;
    }

    public static long Numel(long[] shape)
    {
        long n = 1;
        foreach (var s in shape) n *= s;
        return n;
    }
}

public class ShapeOpsTests
{
    private static Tensor T(double[] d, params long[] shape) => tensor(d, shape.Length == 0 ? null : shape);

    [Fact]
    public void ViewReshapeFlattenKeepRowMajorOrder()
    {
        using var scope = NewDisposeScope();
        var d = ShapeRef.Data(24);
        var x = T(d, 2, 3, 4);
        Assert.Equal(new long[] { 6, 4 }, x.view(6, 4).shape);
        Assert.Equal(new long[] { 4, 6 }, x.view(-1, 6).shape);
        Assert.Equal(d, x.view(4, -1).ToDoubleArray());
        Assert.Equal(new long[] { 3, 8 }, x.reshape(3, 8).shape);
        Assert.Equal(d, x.reshape(new long[] { 24 }).ToDoubleArray());
        Assert.Equal(new long[] { 24 }, x.flatten().shape);
        Assert.Equal(new long[] { 2, 12 }, x.flatten(1).shape);
        Assert.Equal(new long[] { 6, 4 }, x.flatten(0, 1).shape);
        Assert.Equal(d, x.flatten(0, 1).ToDoubleArray());
        Assert.Equal(new long[] { 2, 3, 2, 2 }, x.unflatten(2, 2, 2).shape);
        Assert.Equal(new long[] { 2, 3, 2, 2 }, x.unflatten(-1, 2, -1).shape);
        Assert.Equal(d, x.unflatten(2, 2, 2).ToDoubleArray());
        Assert.Equal(new long[] { 2, 3, 4 }, x.view(24).view_as(x).shape);
        Assert.Equal(new long[] { 2, 3, 4 }, x.flatten().reshape_as(x).shape);
        Assert.Equal(new long[] { 4, 6 }, reshape(x, 4, 6).shape);
        Assert.Equal(new long[] { 2, 12 }, flatten(x, 1).shape);
        // reshape of a transposed (non-viewable) tensor copies, in the transposed logical order.
        var m = T(ShapeRef.Iota(6), 2, 3);
        Assert.Equal(new double[] { 0, 3, 1, 4, 2, 5 }, m.t().reshape(6).ToDoubleArray());
    }

    [Fact]
    public void ViewsShareStorage()
    {
        using var scope = NewDisposeScope();
        var x = T(ShapeRef.Iota(12), 3, 4);
        var v = x.view(12);
        v[5] = 100.0;
        Assert.Equal(100.0, x.ToDoubleArray()[5]);
        var tr = x.transpose(0, 1);
        tr[3, 2] = -7.0; // tr[3,2] is x[2,3]
        Assert.Equal(-7.0, x.ToDoubleArray()[ShapeRef.Off(new long[] { 3, 4 }, 2, 3)]);
        var row = x.select(0, 1);
        row[0] = 42.0;
        Assert.Equal(42.0, x.ToDoubleArray()[4]);
        var nar = x.narrow(1, 1, 2);
        nar[0, 0] = 9.5;
        Assert.Equal(9.5, x.ToDoubleArray()[1]);
        var sl = x[.., TensorIndex.Slice(0, null, 2)];
        sl[2, 1] = 3.25; // column 2 of row 2
        Assert.Equal(3.25, x.ToDoubleArray()[ShapeRef.Off(new long[] { 3, 4 }, 2, 2)]);
        Assert.Equal(x.data_ptr(), x.view(4, 3).data_ptr());
        Assert.Equal(x.data_ptr(), x.permute(1, 0).data_ptr());
        Assert.Equal(x.data_ptr(), x.unsqueeze(0).data_ptr());
        var e = T(new double[] { 1, 2, 3 }, 3, 1).expand(3, 4);
        Assert.Equal(new long[] { 1, 0 }, e.stride());
    }

    [Fact]
    public void PermuteAndTransposeMatchIndexArithmetic()
    {
        using var scope = NewDisposeScope();
        var shape = new long[] { 2, 3, 4 };
        var d = ShapeRef.Data(24);
        var x = T(d, shape);

        var p = x.permute(2, 0, 1);
        Assert.Equal(new long[] { 4, 2, 3 }, p.shape);
        Assert.False(p.is_contiguous());
        var pv = p.ToDoubleArray();
        for (long c = 0; c < 4; c++) for (long a = 0; a < 2; a++) for (long b = 0; b < 3; b++)
            Assert.Equal(d[ShapeRef.Off(shape, a, b, c)], pv[ShapeRef.Off(p.shape, c, a, b)]);

        var t02 = x.transpose(0, 2);
        Assert.Equal(new long[] { 4, 3, 2 }, t02.shape);
        Assert.False(t02.is_contiguous());
        Assert.Equal(new long[] { 1, 4, 12 }, t02.stride());
        var tv = t02.ToDoubleArray();
        for (long a = 0; a < 2; a++) for (long b = 0; b < 3; b++) for (long c = 0; c < 4; c++)
            Assert.Equal(d[ShapeRef.Off(shape, a, b, c)], tv[ShapeRef.Off(t02.shape, c, b, a)]);
        var tc = t02.contiguous();
        Assert.True(tc.is_contiguous());
        Assert.Equal(tv, tc.ToDoubleArray());
        Assert.Equal(tv, x.transpose(-1, 0).ToDoubleArray());
        Assert.Equal(tv, x.swapaxes(0, 2).ToDoubleArray());
        Assert.Equal(tv, transpose(x, 2, 0).ToDoubleArray());

        var mt = x.mT;
        Assert.Equal(new long[] { 2, 4, 3 }, mt.shape);
        var mv = mt.ToDoubleArray();
        for (long a = 0; a < 2; a++) for (long b = 0; b < 3; b++) for (long c = 0; c < 4; c++)
            Assert.Equal(d[ShapeRef.Off(shape, a, b, c)], mv[ShapeRef.Off(mt.shape, a, c, b)]);

        var m = T(ShapeRef.Data(6, 3), 2, 3);
        var mtv = m.t().ToDoubleArray();
        var md = m.ToDoubleArray();
        for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) Assert.Equal(md[i * 3 + j], mtv[j * 2 + i]);
        Assert.Equal(new long[] { 3 }, T(new double[] { 1, 2, 3 }).t().shape);

        var mv2 = x.movedim(0, 2);
        Assert.Equal(new long[] { 3, 4, 2 }, mv2.shape);
        Assert.Equal(x.permute(1, 2, 0).ToDoubleArray(), mv2.ToDoubleArray());
        Assert.Equal(x.permute(2, 1, 0).ToDoubleArray(), x.movedim(new long[] { 0, 2 }, new long[] { 2, 0 }).ToDoubleArray());
    }

    [Fact]
    public void SqueezeUnsqueezeExpandRepeat()
    {
        using var scope = NewDisposeScope();
        var x = zeros(new long[] { 1, 3, 1, 2 }, float64);
        Assert.Equal(new long[] { 3, 2 }, x.squeeze().shape);
        Assert.Equal(new long[] { 3, 1, 2 }, x.squeeze(0).shape);
        Assert.Equal(new long[] { 1, 3, 2 }, x.squeeze(-2).shape);
        Assert.Equal(new long[] { 1, 3, 1, 2 }, x.squeeze(1).shape); // size 3: kept
        Assert.Equal(new long[] { 1, 1, 3, 1, 2 }, x.unsqueeze(0).shape);
        Assert.Equal(new long[] { 1, 3, 1, 2, 1 }, x.unsqueeze(-1).shape);
        Assert.Equal(new long[] { 3, 1, 2 }, squeeze(x, 0).shape);

        var col = T(new double[] { 1, 2, 3 }, 3, 1);
        var e = col.expand(3, 4);
        Assert.Equal(new long[] { 3, 4 }, e.shape);
        var ev = e.ToDoubleArray();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 4; j++) Assert.Equal(i + 1.0, ev[i * 4 + j]);
        Assert.Equal(new long[] { 2, 3, 4 }, col.expand(2, -1, 4).shape);
        Assert.Equal(ev, col.expand_as(zeros(3, 4)).ToDoubleArray());

        var d = ShapeRef.Data(6);
        var m = T(d, 2, 3);
        var r = m.repeat(2, 3);
        Assert.Equal(new long[] { 4, 9 }, r.shape);
        var rv = r.ToDoubleArray();
        for (int i = 0; i < 4; i++) for (int j = 0; j < 9; j++) Assert.Equal(d[(i % 2) * 3 + j % 3], rv[i * 9 + j]);
        var r3 = m.repeat(2, 1, 1);
        Assert.Equal(new long[] { 2, 2, 3 }, r3.shape);
        Assert.Equal(d.Concat(d).ToArray(), r3.ToDoubleArray());

        var ri = m.repeat_interleave(2, 1);
        Assert.Equal(new long[] { 2, 6 }, ri.shape);
        var riv = ri.ToDoubleArray();
        for (int i = 0; i < 2; i++) for (int j = 0; j < 6; j++) Assert.Equal(d[i * 3 + j / 2], riv[i * 6 + j]);
        var flat = m.repeat_interleave(3);
        Assert.Equal(new long[] { 18 }, flat.shape);
        var fv = flat.ToDoubleArray();
        for (int j = 0; j < 18; j++) Assert.Equal(d[j / 3], fv[j]);
        var rt = m.repeat_interleave(tensor(new long[] { 1, 0, 2 }), 1);
        Assert.Equal(new double[] { d[0], d[2], d[2], d[3], d[5], d[5] }, rt.ToDoubleArray());
    }

    [Fact]
    public void CatStackSplitChunkUnbindRoundTrip()
    {
        using var scope = NewDisposeScope();
        var a = T(ShapeRef.Data(6, 1), 2, 3);
        var b = T(ShapeRef.Data(8, 2), 2, 4);
        var c = cat(new[] { a, b }, 1);
        Assert.Equal(new long[] { 2, 7 }, c.shape);
        var av = a.ToDoubleArray();
        var bv = b.ToDoubleArray();
        var cv = c.ToDoubleArray();
        for (int i = 0; i < 2; i++) for (int j = 0; j < 7; j++) Assert.Equal(j < 3 ? av[i * 3 + j] : bv[i * 4 + j - 3], cv[i * 7 + j]);
        Assert.Equal(cv, cat(new[] { a, b }, -1).ToDoubleArray());
        Assert.Equal(av.Concat(av).ToArray(), concat(new List<Tensor> { a, a }).ToDoubleArray());

        var parts = c.split(new long[] { 3, 4 }, 1);
        Assert.Equal(2, parts.Length);
        Assert.Equal(av, parts[0].ToDoubleArray());
        Assert.Equal(bv, parts[1].ToDoubleArray());

        var s = stack(new[] { a, a.neg_for_test() }, 1);
        Assert.Equal(new long[] { 2, 2, 3 }, s.shape);
        var sv = s.ToDoubleArray();
        for (int i = 0; i < 2; i++) for (int k = 0; k < 2; k++) for (int j = 0; j < 3; j++)
            Assert.Equal((k == 0 ? 1 : -1) * av[i * 3 + j], sv[ShapeRef.Off(s.shape, i, k, j)]);
        Assert.Equal(new long[] { 2, 3, 2 }, stack(new[] { a, a }, -1).shape);
        var ub = s.unbind(1);
        Assert.Equal(2, ub.Length);
        Assert.Equal(av, ub[0].ToDoubleArray());
        Assert.Equal(new long[] { 2, 3 }, ub[1].shape);

        var x = T(ShapeRef.Data(10, 3), 10);
        var pieces = x.split(3);
        Assert.Equal(new long[] { 3, 3, 3, 1 }, pieces.Select(p => p.shape[0]).ToArray());
        Assert.Equal(x.ToDoubleArray(), cat(pieces).ToDoubleArray());
        var chunks = x.chunk(3);
        Assert.Equal(new long[] { 4, 4, 2 }, chunks.Select(p => p.shape[0]).ToArray());
        Assert.Equal(x.ToDoubleArray(), cat(chunks).ToDoubleArray());
        Assert.Equal(5, chunk(x, 5).Length);
        Assert.Equal(10, unbind(x).Length);
        Assert.Equal(x.ToDoubleArray()[7], x.unbind()[7].ToDouble());

        // many tensors: more than the stack buffer.
        var many = Enumerable.Range(0, 40).Select(i => full(new long[] { 1 }, i, float64)).ToArray();
        Assert.Equal(ShapeRef.Iota(40), cat(many).ToDoubleArray());
        Assert.Equal(new long[] { 40, 1 }, stack(many).shape);
    }

    [Fact]
    public void NarrowSliceSelect()
    {
        using var scope = NewDisposeScope();
        var shape = new long[] { 4, 5 };
        var d = ShapeRef.Data(20);
        var x = T(d, shape);
        var n = x.narrow(1, 1, 3);
        Assert.Equal(new long[] { 4, 3 }, n.shape);
        var nv = n.ToDoubleArray();
        for (int i = 0; i < 4; i++) for (int j = 0; j < 3; j++) Assert.Equal(d[i * 5 + j + 1], nv[i * 3 + j]);
        Assert.Equal(x.narrow(1, 2, 3).ToDoubleArray(), x.narrow(1, -3, 3).ToDoubleArray());

        var s = x.slice(1, 0, 5, 2);
        Assert.Equal(new long[] { 4, 3 }, s.shape);
        var sv = s.ToDoubleArray();
        for (int i = 0; i < 4; i++) for (int j = 0; j < 3; j++) Assert.Equal(d[i * 5 + 2 * j], sv[i * 3 + j]);
        Assert.Equal(new long[] { 2, 5 }, x.slice(0, 1, 100, 2).shape); // clamped
        Assert.Equal(new long[] { 2, 5 }, x.slice(0, -2, long.MaxValue).shape);

        var r = x.select(0, 2);
        Assert.Equal(new long[] { 5 }, r.shape);
        Assert.Equal(d.Skip(10).Take(5).ToArray(), r.ToDoubleArray());
        var c = x.select(1, -1);
        Assert.Equal(new[] { d[4], d[9], d[14], d[19] }, c.ToDoubleArray());
    }

    [Fact]
    public void IndexerReadsMatchManualIndexing()
    {
        using var scope = NewDisposeScope();
        var shape = new long[] { 3, 4, 5 };
        var d = ShapeRef.Data(60);
        var x = T(d, shape);
        double At(long a, long b, long c) => d[ShapeRef.Off(shape, a, b, c)];

        Assert.Equal(At(1, 2, 3), x[1, 2, 3].ToDouble());
        Assert.Equal(0, x[1, 2, 3].dim());
        Assert.Equal(At(2, 3, 4), x[-1, -1, -1].ToDouble());
        Assert.Equal(At(2, 0, 1), x[^1, 0, ^4].ToDouble());

        var row = x[1];
        Assert.Equal(new long[] { 4, 5 }, row.shape);
        Assert.Equal(d.Skip(20).Take(20).ToArray(), row.ToDoubleArray());

        var col = x[.., 2];
        Assert.Equal(new long[] { 3, 5 }, col.shape);
        var cv = col.ToDoubleArray();
        for (int a = 0; a < 3; a++) for (int c = 0; c < 5; c++) Assert.Equal(At(a, 2, c), cv[a * 5 + c]);

        var rng = x[1..3, ..^1, 1..];
        Assert.Equal(new long[] { 2, 3, 4 }, rng.shape);
        var rv = rng.ToDoubleArray();
        for (int a = 0; a < 2; a++) for (int b = 0; b < 3; b++) for (int c = 0; c < 4; c++)
            Assert.Equal(At(a + 1, b, c + 1), rv[ShapeRef.Off(rng.shape, a, b, c)]);

        var step = x[TensorIndex.Ellipsis, TensorIndex.Slice(null, null, 2)];
        Assert.Equal(new long[] { 3, 4, 3 }, step.shape);
        var stv = step.ToDoubleArray();
        for (int a = 0; a < 3; a++) for (int b = 0; b < 4; b++) for (int c = 0; c < 3; c++)
            Assert.Equal(At(a, b, 2 * c), stv[ShapeRef.Off(step.shape, a, b, c)]);

        var step2 = x[0, TensorIndex.Slice(1, -1, 2), TensorIndex.Slice(-3)];
        Assert.Equal(new long[] { 1, 3 }, step2.shape); // rows 1 (3 excluded by -1), cols 2,3,4
        Assert.Equal(new[] { At(0, 1, 2), At(0, 1, 3), At(0, 1, 4) }, step2.ToDoubleArray());

        var last = x[TensorIndex.Ellipsis, -1];
        Assert.Equal(new long[] { 3, 4 }, last.shape);
        var lv = last.ToDoubleArray();
        for (int a = 0; a < 3; a++) for (int b = 0; b < 4; b++) Assert.Equal(At(a, b, 4), lv[a * 4 + b]);

        Assert.Equal(new long[] { 1, 3, 4, 5 }, x[TensorIndex.None].shape);
        Assert.Equal(new long[] { 3, 1, 4, 5 }, x[.., TensorIndex.None].shape);
        Assert.Equal(new long[] { 3, 4, 5 }, x[..].shape);
        Assert.Equal(new long[] { 3, 4, 5 }, x[TensorIndex.Colon, TensorIndex.Ellipsis].shape);
        Assert.Equal(new long[] { 0, 4, 5 }, x[^0..].shape);
        Assert.Equal(new long[] { 1, 3, 4, 5 }, x[TensorIndex.Bool(true)].shape);

        // advanced: integer tensor (with repeats and negatives) and boolean mask.
        var idx = tensor(new long[] { 2, 0, 2, -1 });
        var g = x[idx];
        Assert.Equal(new long[] { 4, 4, 5 }, g.shape);
        var gv = g.ToDoubleArray();
        long[] rows = { 2, 0, 2, 2 };
        for (int i = 0; i < 4; i++) for (int b = 0; b < 4; b++) for (int c = 0; c < 5; c++)
            Assert.Equal(At(rows[i], b, c), gv[ShapeRef.Off(g.shape, i, b, c)]);
        var pair = x[tensor(new long[] { 0, 2 }), .., tensor(new long[] { 1, 4 })];
        Assert.Equal(new long[] { 2, 4 }, pair.shape);
        var pv = pair.ToDoubleArray();
        for (int b = 0; b < 4; b++) { Assert.Equal(At(0, b, 1), pv[b]); Assert.Equal(At(2, b, 4), pv[4 + b]); }

        var maskData = d.Select(v => v > 0).ToArray();
        var m = x[tensor(maskData, shape)];
        Assert.Equal(d.Where(v => v > 0).ToArray(), m.ToDoubleArray());
        var rowMask = tensor(new[] { true, false, true });
        Assert.Equal(d.Take(20).Concat(d.Skip(40)).ToArray(), x[rowMask].ToDoubleArray());
    }

    [Fact]
    public void IndexerWritesMatchManualUpdates()
    {
        using var scope = NewDisposeScope();
        var shape = new long[] { 3, 4 };
        var d = ShapeRef.Data(12);
        var x = T(d, shape);
        var expected = (double[])d.Clone();

        x[1] = T(new double[] { 1, 2, 3, 4 });
        for (int j = 0; j < 4; j++) expected[4 + j] = j + 1;
        Assert.Equal(expected, x.ToDoubleArray());

        x[.., 0] = 5.0;
        for (int i = 0; i < 3; i++) expected[i * 4] = 5;
        Assert.Equal(expected, x.ToDoubleArray());

        x[-1, TensorIndex.Slice(1, null, 2)] = T(new double[] { -1, -3 });
        expected[9] = -1; expected[11] = -3;
        Assert.Equal(expected, x.ToDoubleArray());

        x[0..2, 2..] = T(new double[] { 7, 8 }, 1, 2); // broadcast over rows
        expected[2] = 7; expected[3] = 8; expected[6] = 7; expected[7] = 8;
        Assert.Equal(expected, x.ToDoubleArray());

        var mask = x.ToDoubleArray().Select(v => v < 0).ToArray();
        x[tensor(mask, shape)] = 0.0;
        for (int k = 0; k < 12; k++) if (expected[k] < 0) expected[k] = 0;
        Assert.Equal(expected, x.ToDoubleArray());

        x[tensor(new long[] { 2, 0 }), tensor(new long[] { 1, 3 })] = T(new double[] { 11, 12 });
        expected[9] = 11; expected[3] = 12;
        Assert.Equal(expected, x.ToDoubleArray());

        x.index_put_(-2.5, 2, -1);
        expected[11] = -2.5;
        Assert.Equal(expected, x.ToDoubleArray());
        x.index_put_(T(new double[] { 30, 31, 32 }), .., 1);
        expected[1] = 30; expected[5] = 31; expected[9] = 32;
        Assert.Equal(expected, x.ToDoubleArray());

        // values of another dtype are converted; float32 target.
        var f = zeros(new long[] { 2, 2 }, float32);
        f[0, 1] = 1.5;
        f[1] = T(new double[] { 2.25, -4 });
        Assert.Equal(new float[] { 0, 1.5f, 2.25f, -4 }, f.ToArray<float>());
        var l = zeros(new long[] { 3 }, int64);
        l[1] = 7;
        Assert.Equal(new long[] { 0, 7, 0 }, l.ToArray<long>());
    }

    [Fact]
    public void BadShapesAndIndicesThrowClearErrors()
    {
        using var scope = NewDisposeScope();
        var x = T(ShapeRef.Iota(6), 2, 3);

        var ex = Assert.Throws<TorchException>(() => x.view(4, 4));
        Assert.Contains("shape '[4, 4]' is invalid for input of size 6", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.t().view(6));
        Assert.Contains("view size is not compatible", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.reshape(5));
        Assert.Contains("invalid for input of size 6", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.permute(0));
        Assert.Contains("number of dim", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.transpose(0, 2));
        Assert.Contains("Dimension out of range", ex.Message);
        ex = Assert.Throws<TorchException>(() => T(new double[] { 1, 2 }).mT);
        Assert.Contains("mT", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.expand(3, 3));
        Assert.Contains("expanded size", ex.Message);

        ex = Assert.Throws<TorchException>(() => x.select(0, 2));
        Assert.Contains("out of range", ex.Message);
        ex = Assert.Throws<TorchException>(() => x[2]);
        Assert.Contains("index 2 is out of bounds for dimension 0 with size 2", ex.Message);
        ex = Assert.Throws<TorchException>(() => x[0, -4]);
        Assert.Contains("out of bounds", ex.Message);
        ex = Assert.Throws<TorchException>(() => x[0, 0, 0]);
        Assert.Contains("too many indices", ex.Message);
        ex = Assert.Throws<TorchException>(() => x[tensor(new long[] { 0, 5 })]);
        Assert.Contains("out of bounds", ex.Message);
        ex = Assert.Throws<TorchException>(() => x[TensorIndex.Slice(0, 2, -1)]);
        Assert.Contains("step must be greater than zero", ex.Message);
        ex = Assert.Throws<TorchException>(() => x[TensorIndex.Slice(0, 2, 0)]);
        Assert.Contains("step cannot be zero", ex.Message);
        ex = Assert.Throws<TorchException>(() => { x[0] = T(new double[] { 1, 2 }); });
        Assert.Contains("The expanded size of the tensor (3) must match the existing size (2)", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => x[^0]);
        Assert.Throws<ArgumentException>(() => x[default(TensorIndex)]);
        var disposed = tensor(new long[] { 0 });
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => x[disposed]);

        ex = Assert.Throws<TorchException>(() => cat(new[] { x, T(ShapeRef.Iota(4), 2, 2) }, 0));
        Assert.Contains("Sizes of tensors must match except in dimension 0", ex.Message);
        ex = Assert.Throws<TorchException>(() => cat(Array.Empty<Tensor>()));
        Assert.Contains("non-empty", ex.Message);
        ex = Assert.Throws<TorchException>(() => stack(new[] { x, T(ShapeRef.Iota(4), 2, 2) }));
        Assert.Contains("stack expects each tensor to be equal size", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.split(new long[] { 1, 1 }, 1));
        Assert.Contains("split_with_sizes expects split_sizes to sum exactly to 3", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.narrow(1, 2, 2));
        Assert.Contains("exceeds dimension size", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.chunk(0));
        Assert.Contains("chunk expects `chunks` to be greater than 0", ex.Message);

        // the process keeps working
        Assert.Equal(new double[] { 0, 3, 1, 4, 2, 5 }, x.t().contiguous().ToDoubleArray());
    }
}

internal static class ShapeTestExtensions
{
    /// <summary>Negation without the math ops (owned elsewhere): a new tensor built from negated data.</summary>
    public static torch.Tensor neg_for_test(this torch.Tensor t)
        => tensor(t.ToDoubleArray().Select(v => -v).ToArray(), t.shape);
}
