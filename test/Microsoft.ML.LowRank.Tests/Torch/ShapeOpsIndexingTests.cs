using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>Gather/scatter, masks, triangles, diagonals, sorting, flips, one-hot and padding against naive loops.</summary>
public class ShapeOpsIndexingTests
{
    private static Tensor T(double[] d, params long[] shape) => tensor(d, shape.Length == 0 ? null : shape);

    [Fact]
    public void IndexSelectAndGatherMatchLoops()
    {
        using var scope = NewDisposeScope();
        var shape = new long[] { 3, 4 };
        var d = ShapeRef.Data(12);
        var x = T(d, shape);

        var idx = new long[] { 3, 0, 3 };
        var s = x.index_select(1, tensor(idx));
        Assert.Equal(new long[] { 3, 3 }, s.shape);
        var sv = s.ToDoubleArray();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 3; j++) Assert.Equal(d[i * 4 + idx[j]], sv[i * 3 + j]);
        Assert.Equal(d.Skip(8).Take(4).Concat(d.Take(4)).ToArray(), index_select(x, 0, tensor(new long[] { 2, 0 })).ToDoubleArray());
        Assert.Equal(sv, x.index_select(1, tensor(new int[] { 3, 0, 3 })).ToDoubleArray());

        // gather along dim 1: out[i][j] = x[i][g[i][j]]
        var g = new long[] { 0, 2, 2, 1, 2, 1, 0, 0 }; // (2, 4), dim 0
        var g1 = new long[] { 1, 3, 0, 0, 2, 2 }; // shape (3, 2)
        var o1 = x.gather(1, tensor(g1, new long[] { 3, 2 }));
        Assert.Equal(new long[] { 3, 2 }, o1.shape);
        var o1v = o1.ToDoubleArray();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 2; j++) Assert.Equal(d[i * 4 + g1[i * 2 + j]], o1v[i * 2 + j]);
        // gather along dim 0: out[i][j] = x[g[i][j]][j], index shape (2, 4)
        var o0 = gather(x, 0, tensor(g, new long[] { 2, 4 }));
        var o0v = o0.ToDoubleArray();
        for (int i = 0; i < 2; i++) for (int j = 0; j < 4; j++) Assert.Equal(d[g[i * 4 + j] * 4 + j], o0v[i * 4 + j]);
        // take_along_dim broadcasts the index
        var tad = x.take_along_dim(tensor(new long[] { 2, 0 }, new long[] { 1, 2 }), 1);
        var tv = tad.ToDoubleArray();
        for (int i = 0; i < 3; i++) { Assert.Equal(d[i * 4 + 2], tv[i * 2]); Assert.Equal(d[i * 4], tv[i * 2 + 1]); }
        Assert.Equal(new[] { d[5], d[11] }, x.take_along_dim(tensor(new long[] { 5, 11 })).ToDoubleArray());
    }

    [Fact]
    public void ScatterFamilyMatchesLoops()
    {
        using var scope = NewDisposeScope();
        var baseData = ShapeRef.Data(12, 5);
        var src = ShapeRef.Data(6, 6);
        var idx = new long[] { 1, 1, 3, 0, 2, 0 }; // (3, 2), dim 1, duplicates in rows 0 and 2
        var x = T(baseData, 3, 4);
        var it = tensor(idx, new long[] { 3, 2 });
        var st = T(src, 3, 2);

        var add = (double[])baseData.Clone();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 2; j++) add[i * 4 + idx[i * 2 + j]] += src[i * 2 + j];
        var sa = x.scatter_add(1, it, st).ToDoubleArray();
        for (int k = 0; k < 12; k++) Assert.Equal(add[k], sa[k], 12);
        Assert.Equal(baseData, x.ToDoubleArray()); // out-of-place
        var y = x.clone();
        Assert.Same(y, y.scatter_add_(1, it, st));
        var ya = y.ToDoubleArray();
        for (int k = 0; k < 12; k++) Assert.Equal(add[k], ya[k], 12);
        Assert.Equal(sa, scatter_add(x, 1, it, st).ToDoubleArray());

        // scatter without duplicates: exact placement
        var uidx = new long[] { 3, 1, 0, 2, 2, 1 };
        var ut = tensor(uidx, new long[] { 3, 2 });
        var sc = (double[])baseData.Clone();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 2; j++) sc[i * 4 + uidx[i * 2 + j]] = src[i * 2 + j];
        Assert.Equal(sc, x.scatter(1, ut, st).ToDoubleArray());
        Assert.Equal(sc, x.clone().scatter_(1, ut, st).ToDoubleArray());
        var sv = (double[])baseData.Clone();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 2; j++) sv[i * 4 + uidx[i * 2 + j]] = -9;
        Assert.Equal(sv, x.scatter(1, ut, -9).ToDoubleArray());
        Assert.Equal(sv, x.clone().scatter_(1, ut, -9).ToDoubleArray());

        // index_add: rows index[i] += alpha * source[i]
        var rows = new long[] { 2, 0, 2 };
        var source = ShapeRef.Data(12, 7);
        var ia = (double[])baseData.Clone();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 4; j++) ia[rows[i] * 4 + j] += 0.5 * source[i * 4 + j];
        var iav = x.index_add(0, tensor(rows), T(source, 3, 4), 0.5).ToDoubleArray();
        for (int k = 0; k < 12; k++) Assert.Equal(ia[k], iav[k], 12);
        var z = x.clone();
        Assert.Same(z, z.index_add_(0, tensor(rows), T(source, 3, 4), 0.5));
        var zv = z.ToDoubleArray();
        for (int k = 0; k < 12; k++) Assert.Equal(ia[k], zv[k], 12);

        // index_copy / index_fill along columns
        var cols = new long[] { 3, 1 };
        var csrc = ShapeRef.Data(6, 8);
        var ic = (double[])baseData.Clone();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 2; j++) ic[i * 4 + cols[j]] = csrc[i * 2 + j];
        Assert.Equal(ic, x.index_copy(1, tensor(cols), T(csrc, 3, 2)).ToDoubleArray());
        Assert.Equal(ic, x.clone().index_copy_(1, tensor(cols), T(csrc, 3, 2)).ToDoubleArray());
        var ifl = (double[])baseData.Clone();
        for (int i = 0; i < 3; i++) foreach (var c in cols) ifl[i * 4 + c] = 4.5;
        Assert.Equal(ifl, x.index_fill(1, tensor(cols), 4.5).ToDoubleArray());
        Assert.Equal(ifl, x.clone().index_fill_(1, tensor(cols), 4.5).ToDoubleArray());
    }

    [Fact]
    public void MaskedSelectScatterAndNonzero()
    {
        using var scope = NewDisposeScope();
        var d = ShapeRef.Data(12, 9);
        var x = T(d, 3, 4);
        var mask = d.Select(v => v > 1).ToArray();
        var mt = tensor(mask, new long[] { 3, 4 });
        Assert.Equal(d.Where(v => v > 1).ToArray(), x.masked_select(mt).ToDoubleArray());
        // broadcast mask: a row mask selects those columns in every row
        var colMask = tensor(new[] { true, false, false, true });
        var expectCols = new List<double>();
        for (int i = 0; i < 3; i++) { expectCols.Add(d[i * 4]); expectCols.Add(d[i * 4 + 3]); }
        Assert.Equal(expectCols.ToArray(), masked_select(x, colMask).ToDoubleArray());

        var src = ShapeRef.Iota(12).Select(v => 100 + v).ToArray();
        var ms = (double[])d.Clone();
        int next = 0;
        for (int k = 0; k < 12; k++) if (mask[k]) ms[k] = src[next++];
        Assert.Equal(ms, x.masked_scatter(mt, T(src, 3, 4)).ToDoubleArray());
        var y = x.clone();
        Assert.Same(y, y.masked_scatter_(mt, T(src, 3, 4)));
        Assert.Equal(ms, y.ToDoubleArray());

        var nz = x.masked_select(mt).numel();
        var pos = tensor(mask.Select(b => b ? 1.0 : 0.0).ToArray(), new long[] { 3, 4 }).nonzero();
        Assert.Equal(ScalarType.Int64, pos.dtype);
        Assert.Equal(new long[] { nz, 2 }, pos.shape);
        var pv = pos.ToArray<long>();
        int r = 0;
        for (int k = 0; k < 12; k++)
            if (mask[k]) { Assert.Equal(k / 4, pv[r * 2]); Assert.Equal(k % 4, pv[r * 2 + 1]); r++; }
        Assert.Equal(pv, nonzero(mt).ToArray<long>());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(-1)]
    [InlineData(-3)]
    public void TrilTriuMatchLoops(long k)
    {
        using var scope = NewDisposeScope();
        var shape = new long[] { 2, 3, 4 };
        var d = ShapeRef.Data(24, 11);
        var x = T(d, shape);
        var lo = x.tril(k).ToDoubleArray();
        var up = x.triu(k).ToDoubleArray();
        for (int b = 0; b < 2; b++) for (int i = 0; i < 3; i++) for (int j = 0; j < 4; j++)
        {
            var o = ShapeRef.Off(shape, b, i, j);
            Assert.Equal(j - i <= k ? d[o] : 0, lo[o]);
            Assert.Equal(j - i >= k ? d[o] : 0, up[o]);
        }
        Assert.Equal(lo, tril(x, k).ToDoubleArray());
        Assert.Equal(up, triu(x, k).ToDoubleArray());
        var y = x.clone();
        Assert.Same(y, y.tril_(k));
        Assert.Equal(lo, y.ToDoubleArray());
        var z = x.clone();
        Assert.Same(z, z.triu_(k));
        Assert.Equal(up, z.ToDoubleArray());
    }

    [Fact]
    public void DiagDiagonalDiagEmbed()
    {
        using var scope = NewDisposeScope();
        var v = new double[] { 1, 2, 3 };
        var dm = T(v).diag(1);
        Assert.Equal(new long[] { 4, 4 }, dm.shape);
        var dv = dm.ToDoubleArray();
        for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) Assert.Equal(j == i + 1 ? v[i] : 0, dv[i * 4 + j]);

        var d = ShapeRef.Data(12, 4);
        var m = T(d, 3, 4);
        Assert.Equal(new[] { d[0], d[5], d[10] }, m.diag().ToDoubleArray());
        Assert.Equal(new[] { d[4], d[9] }, diag(m, -1).ToDoubleArray());
        Assert.Equal(new[] { d[2], d[7] }, m.diagonal(2).ToDoubleArray());

        var shape = new long[] { 2, 3, 3 };
        var b = ShapeRef.Data(18, 5);
        var bt = T(b, shape);
        var bd = bt.diagonal(0, 1, 2);
        Assert.Equal(new long[] { 2, 3 }, bd.shape);
        var bdv = bd.ToDoubleArray();
        for (int n = 0; n < 2; n++) for (int i = 0; i < 3; i++) Assert.Equal(b[ShapeRef.Off(shape, n, i, i)], bdv[n * 3 + i]);
        bd[0, 1] = 77.0; // a view
        Assert.Equal(77.0, bt.ToDoubleArray()[ShapeRef.Off(shape, 0, 1, 1)]);

        var emb = T(new double[] { 1, 2, 3, 4 }, 2, 2).diag_embed();
        Assert.Equal(new long[] { 2, 2, 2 }, emb.shape);
        Assert.Equal(new double[] { 1, 0, 0, 2, 3, 0, 0, 4 }, emb.ToDoubleArray());
    }

    [Fact]
    public void SortArgsortTopkMatchArraySort()
    {
        using var scope = NewDisposeScope();
        const int rows = 3, cols = 7;
        var d = ShapeRef.Data(rows * cols, 13);
        var x = T(d, rows, cols);
        var (sv, si) = x.sort();
        var (dv, di) = x.sort(dim: 1, descending: true);
        var svA = sv.ToDoubleArray(); var siA = si.ToArray<long>();
        var dvA = dv.ToDoubleArray(); var diA = di.ToArray<long>();
        var ag = x.argsort(descending: true).ToArray<long>();
        var (kv, ki) = x.topk(3);
        var (lv, li) = x.topk(2, largest: false);
        var kvA = kv.ToDoubleArray(); var kiA = ki.ToArray<long>();
        var lvA = lv.ToDoubleArray(); var liA = li.ToArray<long>();
        Assert.Equal(new long[] { rows, 3 }, kv.shape);
        for (int r = 0; r < rows; r++)
        {
            var row = d.Skip(r * cols).Take(cols).ToArray();
            var order = Enumerable.Range(0, cols).ToArray();
            var keys = (double[])row.Clone();
            Array.Sort(keys, order);
            for (int j = 0; j < cols; j++)
            {
                Assert.Equal(keys[j], svA[r * cols + j]);
                Assert.Equal(order[j], siA[r * cols + j]);
                Assert.Equal(keys[cols - 1 - j], dvA[r * cols + j]);
                Assert.Equal(order[cols - 1 - j], diA[r * cols + j]);
                Assert.Equal(order[cols - 1 - j], ag[r * cols + j]);
            }
            for (int j = 0; j < 3; j++) { Assert.Equal(keys[cols - 1 - j], kvA[r * 3 + j]); Assert.Equal(order[cols - 1 - j], kiA[r * 3 + j]); }
            for (int j = 0; j < 2; j++) { Assert.Equal(keys[j], lvA[r * 2 + j]); Assert.Equal(order[j], liA[r * 2 + j]); }
        }

        // along dim 0
        var (c0, c0i) = sort(x, 0);
        var c0v = c0.ToDoubleArray(); var c0iv = c0i.ToArray<long>();
        for (int c = 0; c < cols; c++)
        {
            var col = Enumerable.Range(0, rows).Select(r => d[r * cols + c]).ToArray();
            var order = Enumerable.Range(0, rows).ToArray();
            Array.Sort(col, order);
            for (int r = 0; r < rows; r++) { Assert.Equal(col[r], c0v[r * cols + c]); Assert.Equal(order[r], c0iv[r * cols + c]); }
        }

        // stable sort keeps ties in original order (ascending and descending)
        var ties = T(new double[] { 2, 1, 2, 1, 3, 2, 1, 3, 3, 1 });
        Assert.Equal(new long[] { 1, 3, 6, 9, 0, 2, 5, 4, 7, 8 }, ties.sort(stable: true).indices.ToArray<long>());
        Assert.Equal(new long[] { 4, 7, 8, 0, 2, 5, 1, 3, 6, 9 }, ties.sort(descending: true, stable: true).indices.ToArray<long>());
        Assert.Equal(new long[] { 1, 3, 6, 9, 0, 2, 5, 4, 7, 8 }, argsort(ties, stable: true).ToArray<long>());
        var (tk, _) = topk(ties, 4);
        Assert.Equal(new double[] { 3, 3, 3, 2 }, tk.ToDoubleArray());
    }

    [Fact]
    public void FlipAndRollMatchLoops()
    {
        using var scope = NewDisposeScope();
        var shape = new long[] { 3, 4 };
        var d = ShapeRef.Data(12, 21);
        var x = T(d, shape);
        var f1 = x.flip(1).ToDoubleArray();
        var f01 = flip(x, 0, 1).ToDoubleArray();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 4; j++)
        {
            Assert.Equal(d[i * 4 + 3 - j], f1[i * 4 + j]);
            Assert.Equal(d[(2 - i) * 4 + 3 - j], f01[i * 4 + j]);
        }
        Assert.Equal(f1, x.fliplr().ToDoubleArray());
        Assert.Equal(x.flip(0).ToDoubleArray(), x.flipud().ToDoubleArray());

        var r1 = x.roll(1, 1).ToDoubleArray();
        var rn = x.roll(-2, 0).ToDoubleArray();
        var rb = x.roll(new long[] { 1, 3 }, new long[] { 0, 1 }).ToDoubleArray();
        var rf = roll(x, 5).ToDoubleArray();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 4; j++)
        {
            Assert.Equal(d[i * 4 + (j - 1 + 4) % 4], r1[i * 4 + j]);
            Assert.Equal(d[((i + 2) % 3) * 4 + j], rn[i * 4 + j]);
            Assert.Equal(d[((i - 1 + 3) % 3) * 4 + (j - 3 + 4) % 4], rb[i * 4 + j]);
            var k = i * 4 + j;
            Assert.Equal(d[(k - 5 + 12) % 12], rf[k]);
        }
        Assert.Equal(shape, x.roll(5).shape);
    }

    [Fact]
    public void OneHotMatchesLoops()
    {
        using var scope = NewDisposeScope();
        var labels = new long[] { 2, 0, 3, 3, 1, 0 };
        var oh = one_hot(tensor(labels, new long[] { 2, 3 }), 5);
        Assert.Equal(new long[] { 2, 3, 5 }, oh.shape);
        Assert.Equal(ScalarType.Int64, oh.dtype);
        var v = oh.ToArray<long>();
        for (int i = 0; i < 6; i++) for (int c = 0; c < 5; c++) Assert.Equal(labels[i] == c ? 1 : 0, v[i * 5 + c]);
        Assert.Equal(new long[] { 6, 4 }, one_hot(tensor(labels)).shape); // inferred: max + 1
        var ex = Assert.Throws<TorchException>(() => one_hot(tensor(labels), 3));
        Assert.Contains("Class values must be smaller than num_classes", ex.Message);
        ex = Assert.Throws<TorchException>(() => one_hot(tensor(new long[] { -1 }), 3));
        Assert.Contains("non-negative", ex.Message);
    }

    [Fact]
    public void ConstantPadFollowsLastDimFirstConvention()
    {
        using var scope = NewDisposeScope();
        var d = ShapeRef.Data(6, 31);
        var x = T(d, 2, 3);
        // {left, right, top, bottom}
        var p = pad(x, new long[] { 1, 2, 0, 1 }, -1);
        Assert.Equal(new long[] { 3, 6 }, p.shape);
        var pv = p.ToDoubleArray();
        for (int i = 0; i < 3; i++) for (int j = 0; j < 6; j++)
        {
            int si = i, sj = j - 1;
            bool inside = si < 2 && sj >= 0 && sj < 3;
            Assert.Equal(inside ? d[si * 3 + sj] : -1, pv[i * 6 + j]);
        }
        var only = pad(x, new long[] { 2, 0 }).ToDoubleArray();
        for (int i = 0; i < 2; i++) for (int j = 0; j < 5; j++) Assert.Equal(j < 2 ? 0 : d[i * 3 + j - 2], only[i * 5 + j]);
        // negative amounts crop
        Assert.Equal(new[] { d[1], d[2], d[4], d[5] }, pad(x, new long[] { -1, 0 }).ToDoubleArray());
        var ex = Assert.Throws<TorchException>(() => pad(x, new long[] { 1, 1, 1 }));
        Assert.Contains("Length of pad must be even", ex.Message);
    }

    [Fact]
    public void MeshgridIjAndXy()
    {
        using var scope = NewDisposeScope();
        var a = T(new double[] { 1, 2, 3 });
        var b = T(new double[] { 10, 20 });
        var ij = meshgrid(new[] { a, b });
        Assert.Equal(2, ij.Length);
        Assert.Equal(new long[] { 3, 2 }, ij[0].shape);
        Assert.Equal(new double[] { 1, 1, 2, 2, 3, 3 }, ij[0].ToDoubleArray());
        Assert.Equal(new double[] { 10, 20, 10, 20, 10, 20 }, ij[1].ToDoubleArray());
        var xy = meshgrid(new[] { a, b }, "xy");
        Assert.Equal(new long[] { 2, 3 }, xy[0].shape);
        Assert.Equal(new double[] { 1, 2, 3, 1, 2, 3 }, xy[0].ToDoubleArray());
        Assert.Equal(new double[] { 10, 10, 10, 20, 20, 20 }, xy[1].ToDoubleArray());
        Assert.Throws<ArgumentException>(() => meshgrid(new[] { a }, "zz"));
    }

    [Fact]
    public void BadIndicesThrowAndProcessContinues()
    {
        using var scope = NewDisposeScope();
        var x = T(ShapeRef.Iota(12), 3, 4);
        var ex = Assert.Throws<TorchException>(() => x.index_select(0, tensor(new long[] { 0, 3 })));
        Assert.Contains("out of range", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.index_select(0, T(new double[] { 0 })));
        Assert.Contains("index_select(): Expected dtype int32 or int64 for index", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.gather(1, tensor(new long[] { 0, 4, 0 }, new long[] { 3, 1 })));
        Assert.Contains("out of bounds", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.gather(1, tensor(new long[] { 0, 1 })));
        Assert.Contains("Index tensor must have the same number of dimensions as input tensor", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.scatter_add(1, tensor(new long[] { 5, 0, 0 }, new long[] { 3, 1 }), T(new double[] { 1, 2, 3 }, 3, 1)));
        Assert.Contains("out of bounds", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.topk(5));
        Assert.Contains("selected index k out of range", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.masked_select(tensor(new[] { true, false })));
        Assert.Contains("must match the size", ex.Message);
        ex = Assert.Throws<TorchException>(() => x.sort(dim: 2));
        Assert.Contains("Dimension out of range", ex.Message);
        ex = Assert.Throws<TorchException>(() => T(new double[] { 1, 2 }).tril());
        Assert.True(ex.Message.Contains("at least 2 dimensions") || ex.Message.Contains("Dimension out of range"), ex.Message); // 2.x / 1.13 wording
        ex = Assert.Throws<TorchException>(() => x.flip(3));
        Assert.Contains("Dimension out of range", ex.Message);
        Assert.Equal(new double[] { 4, 5, 6, 7 }, x[1].ToDoubleArray());
    }
}
