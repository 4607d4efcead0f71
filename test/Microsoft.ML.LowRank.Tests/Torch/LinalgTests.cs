using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;
using F = Microsoft.ML.LowRank.Torch.torch.nn.functional;

namespace Microsoft.ML.LowRank.Tests.Torch;

/// <summary>
/// torch.linalg checked through identities computed with naive float64 matrix loops here. Tolerance: 1e-12 times
/// the size of the entries for well-conditioned float64 inputs (stated per check), 1e-4 for float32.
/// </summary>
public class LinalgTests
{
    private static double[] Rand(int n, int seed)
    {
        var r = new Random(seed);
        var a = new double[n];
        for (int i = 0; i < n; i++) a[i] = r.NextDouble() * 2 - 1;
        return a;
    }

    /// <summary>[m, k] x [k, n].</summary>
    private static double[] MatMul(double[] a, double[] b, int m, int k, int n)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int t = 0; t < k; t++) s += a[i * k + t] * b[t * n + j];
                c[i * n + j] = s;
            }
        return c;
    }

    private static double[] Tr(double[] a, int m, int n)
    {
        var t = new double[a.Length];
        for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
        return t;
    }

    private static double[] Eye(int n)
    {
        var e = new double[n * n];
        for (int i = 0; i < n; i++) e[i * n + i] = 1;
        return e;
    }

    private static double MaxAbsDiff(double[] a, double[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    private static void Near(double[] expected, double[] actual, double tol, string what)
    {
        var d = MaxAbsDiff(expected, actual);
        Assert.True(d <= tol, $"{what}: max abs difference {d:E3} exceeds {tol:E1}");
    }

    /// <summary>Columns of the [m, n] matrix are orthonormal: QᵀQ = I_n.</summary>
    private static void OrthonormalColumns(double[] q, int m, int n, double tol, string what)
        => Near(Eye(n), MatMul(Tr(q, m, n), q, n, m, n), tol, what);

    /// <summary>Determinant by Laplace expansion along the first row.</summary>
    private static double Det(double[] a, int n)
    {
        if (n == 1) return a[0];
        double s = 0;
        for (int c = 0; c < n; c++)
        {
            var minor = new double[(n - 1) * (n - 1)];
            for (int i = 1; i < n; i++)
                for (int j = 0, jj = 0; j < n; j++)
                    if (j != c) minor[(i - 1) * (n - 1) + jj++] = a[i * n + j];
            s += (c % 2 == 0 ? 1 : -1) * a[c] * Det(minor, n - 1);
        }
        return s;
    }

    private static double[] Spd(int n, int seed)
    {
        var m = Rand(n * n, seed);
        var a = MatMul(m, Tr(m, n, n), n, n, n);
        for (int i = 0; i < n; i++) a[i * n + i] += 1;
        return a;
    }

    // ---------------- SVD ----------------

    [Theory]
    [InlineData(5, 3)]
    [InlineData(3, 5)]
    [InlineData(4, 4)]
    public void SvdReconstructsWithOrthonormalFactorsAndDescendingValues(int m, int n)
    {
        using var scope = NewDisposeScope();
        var ad = Rand(m * n, 1 + m * 10 + n);
        var a = tensor(ad, new long[] { m, n });
        int k = Math.Min(m, n);
        var (U, S, Vh) = linalg.svd(a);
        Assert.Equal(new long[] { m, k }, U.shape);
        Assert.Equal(new long[] { k }, S.shape);
        Assert.Equal(new long[] { k, n }, Vh.shape);
        var u = U.ToDoubleArray();
        var s = S.ToDoubleArray();
        var vh = Vh.ToDoubleArray();
        var us = new double[m * k];
        for (int i = 0; i < m; i++) for (int j = 0; j < k; j++) us[i * k + j] = u[i * k + j] * s[j];
        Near(ad, MatMul(us, vh, m, k, n), 1e-13, "U diag(S) Vh = A");
        OrthonormalColumns(u, m, k, 1e-13, "UᵀU = I");
        OrthonormalColumns(Tr(vh, k, n), n, k, 1e-13, "Vh Vhᵀ = I");
        for (int j = 0; j < k; j++)
        {
            Assert.True(s[j] >= 0);
            if (j > 0) Assert.True(s[j - 1] >= s[j], "singular values descend");
        }
        Near(s, linalg.svdvals(a).ToDoubleArray(), 1e-13, "svdvals = S");

        // full matrices: square orthogonal U [m, m] and Vh [n, n]
        var (Uf, Sf, Vhf) = linalg.svd(a, full_matrices: true);
        Assert.Equal(new long[] { m, m }, Uf.shape);
        Assert.Equal(new long[] { n, n }, Vhf.shape);
        OrthonormalColumns(Uf.ToDoubleArray(), m, m, 1e-13, "full U orthogonal");
        OrthonormalColumns(Vhf.ToDoubleArray(), n, n, 1e-13, "full Vh orthogonal");
        Near(s, Sf.ToDoubleArray(), 1e-13, "same singular values");
    }

    [Fact]
    public void SvdBatchedAndFloat32()
    {
        using var scope = NewDisposeScope();
        var ad = Rand(2 * 4 * 3, 3);
        var a = tensor(ad, new long[] { 2, 4, 3 }).to_type(float32);
        var (U, S, Vh) = linalg.svd(a);
        Assert.Equal(new long[] { 2, 4, 3 }, U.shape);
        Assert.Equal(new long[] { 2, 3 }, S.shape);
        Assert.Equal(new long[] { 2, 3, 3 }, Vh.shape);
        Assert.Equal(ScalarType.Float32, S.dtype);
        var u = U.ToDoubleArray();
        var s = S.ToDoubleArray();
        var vh = Vh.ToDoubleArray();
        for (int b = 0; b < 2; b++)
        {
            var ub = u.Skip(b * 12).Take(12).ToArray();
            for (int i = 0; i < 4; i++) for (int j = 0; j < 3; j++) ub[i * 3 + j] *= s[b * 3 + j];
            Near(ad.Skip(b * 12).Take(12).ToArray(), MatMul(ub, vh.Skip(b * 9).Take(9).ToArray(), 4, 3, 3), 1e-5, $"batch {b} reconstruction (float32)");
        }
    }

    // ---------------- QR ----------------

    [Fact]
    public void QrFactorsWithOrthonormalQAndUpperTriangularR()
    {
        using var scope = NewDisposeScope();
        const int m = 5, n = 3;
        var ad = Rand(m * n, 4);
        var a = tensor(ad, new long[] { m, n });
        var (Q, R) = linalg.qr(a);
        Assert.Equal(new long[] { m, n }, Q.shape);
        Assert.Equal(new long[] { n, n }, R.shape);
        var q = Q.ToDoubleArray();
        var r = R.ToDoubleArray();
        Near(ad, MatMul(q, r, m, n, n), 1e-13, "QR = A");
        OrthonormalColumns(q, m, n, 1e-13, "QᵀQ = I");
        for (int i = 0; i < n; i++) for (int j = 0; j < i; j++) Assert.Equal(0.0, r[i * n + j]);

        var (Qc, Rc) = linalg.qr(a, "complete");
        Assert.Equal(new long[] { m, m }, Qc.shape);
        Assert.Equal(new long[] { m, n }, Rc.shape);
        var rc = Rc.ToDoubleArray();
        Near(ad, MatMul(Qc.ToDoubleArray(), rc, m, m, n), 1e-13, "complete QR = A");
        OrthonormalColumns(Qc.ToDoubleArray(), m, m, 1e-13, "complete Q orthogonal");
        for (int i = 0; i < m; i++) for (int j = 0; j < Math.Min(i, n); j++) Assert.Equal(0.0, rc[i * n + j]);

        var (Qr, Rr) = linalg.qr(a, "r");
        Assert.Equal(0, Qr.numel());
        Near(r, Rr.ToDoubleArray(), 1e-14, "mode r gives the same R");
        Assert.Throws<ArgumentException>(() => linalg.qr(a, "full"));
    }

    // ---------------- eigh ----------------

    [Fact]
    public void EighSatisfiesAVEqualsVDiagW()
    {
        using var scope = NewDisposeScope();
        const int n = 4;
        var ad = Spd(n, 5);
        for (int i = 0; i < n; i++) ad[i * n + i] -= 2; // indefinite: some negative eigenvalues
        var (W, V) = linalg.eigh(tensor(ad, new long[] { n, n }));
        var w = W.ToDoubleArray();
        var v = V.ToDoubleArray();
        var vw = new double[n * n];
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) vw[i * n + j] = v[i * n + j] * w[j];
        Near(MatMul(ad, v, n, n, n), vw, 1e-12, "A V = V diag(w)");
        OrthonormalColumns(v, n, n, 1e-13, "VᵀV = I");
        for (int j = 1; j < n; j++) Assert.True(w[j - 1] <= w[j], "eigenvalues ascend");
        Near(w, linalg.eigvalsh(tensor(ad, new long[] { n, n })).ToDoubleArray(), 1e-12, "eigvalsh = w");

        // UPLO: only the named triangle is read
        var lowerJunk = (double[])ad.Clone();
        for (int i = 0; i < n; i++) for (int j = 0; j < i; j++) lowerJunk[i * n + j] = 99;
        Near(w, linalg.eigh(tensor(lowerJunk, new long[] { n, n }), "U").eigenvalues.ToDoubleArray(), 1e-12, "upper triangle");
        var upperJunk = (double[])ad.Clone();
        for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) upperJunk[i * n + j] = -99;
        Near(w, linalg.eigvalsh(tensor(upperJunk, new long[] { n, n })).ToDoubleArray(), 1e-12, "lower triangle (default)");
        Assert.Throws<ArgumentException>(() => linalg.eigh(tensor(ad, new long[] { n, n }), "X"));
        Assert.Throws<TorchException>(() => linalg.eigh(ones(new long[] { 2, 3 }, dtype: float64)));
    }

    // ---------------- solve / inv / pinv / det / cholesky ----------------

    private static double[] WellConditioned(int n, int seed)
    {
        var a = Rand(n * n, seed);
        for (int i = 0; i < n; i++) a[i * n + i] += n;
        return a;
    }

    [Fact]
    public void SolveSatisfiesAXEqualsB()
    {
        using var scope = NewDisposeScope();
        const int n = 4;
        var ad = WellConditioned(n, 6);
        var bd = Rand(n * 2, 7);
        var A = tensor(ad, new long[] { n, n });
        var X = linalg.solve(A, tensor(bd, new long[] { n, 2 }));
        Assert.Equal(new long[] { n, 2 }, X.shape);
        Near(bd, MatMul(ad, X.ToDoubleArray(), n, n, 2), 1e-13, "A X = B");
        // vector right-hand side
        var bv = Rand(n, 8);
        var xv = linalg.solve(A, tensor(bv));
        Assert.Equal(new long[] { n }, xv.shape);
        Near(bv, MatMul(ad, xv.ToDoubleArray(), n, n, 1), 1e-13, "A x = b");
        // left = false: X A = B
        var bl = Rand(2 * n, 9);
        var xl = linalg.solve(A, tensor(bl, new long[] { 2, n }), left: false);
        Near(bl, MatMul(xl.ToDoubleArray(), ad, 2, n, n), 1e-13, "X A = B");
        // bad shapes and singular systems throw; the process keeps running
        Assert.Throws<TorchException>(() => linalg.solve(A, tensor(Rand(3, 10))));
        Assert.Throws<TorchException>(() => linalg.solve(tensor(Rand(6, 11), new long[] { 2, 3 }), tensor(Rand(2, 12))));
        Assert.Throws<TorchException>(() => linalg.solve(zeros(new long[] { 2, 2 }, dtype: float64), tensor(Rand(2, 12))));
        Assert.Equal(new long[] { n }, linalg.solve(A, tensor(bv)).shape);
    }

    [Fact]
    public void InvTimesAIsIdentity()
    {
        using var scope = NewDisposeScope();
        const int n = 5;
        var ad = WellConditioned(n, 13);
        var inv = linalg.inv(tensor(ad, new long[] { n, n })).ToDoubleArray();
        Near(Eye(n), MatMul(ad, inv, n, n, n), 1e-13, "A inv(A) = I");
        Near(Eye(n), MatMul(inv, ad, n, n, n), 1e-13, "inv(A) A = I");
        var ex = Assert.Throws<TorchException>(() => linalg.inv(tensor(new double[] { 1, 2, 2, 4 }, new long[] { 2, 2 })));
        Assert.Contains("singular", ex.Message);
        Assert.Throws<TorchException>(() => linalg.inv(ones(new long[] { 2, 3 })));
    }

    [Fact]
    public void PinvOfRankDeficientMatrixSatisfiesMoorePenrose()
    {
        using var scope = NewDisposeScope();
        const int m = 4, n = 3;
        // rank 2: A = B C with B [4, 2], C [2, 3]
        var ad = MatMul(Rand(m * 2, 14), Rand(2 * n, 15), m, 2, n);
        var p = linalg.pinv(tensor(ad, new long[] { m, n }));
        Assert.Equal(new long[] { n, m }, p.shape);
        var pd = p.ToDoubleArray();
        var ap = MatMul(ad, pd, m, n, m);
        var pa = MatMul(pd, ad, n, m, n);
        Near(ad, MatMul(ap, ad, m, m, n), 1e-12, "A P A = A");
        Near(pd, MatMul(pa, pd, n, n, m), 1e-12, "P A P = P");
        Near(ap, Tr(ap, m, m), 1e-12, "A P symmetric");
        Near(pa, Tr(pa, n, n), 1e-12, "P A symmetric");
        // rank 2: A P is a projector of trace 2 (a plain inverse of a rank-deficient matrix would blow up)
        Assert.True(Math.Abs(ap[0] + ap[5] + ap[10] + ap[15] - 2) < 1e-12);
        // hermitian path on a symmetric rank-deficient matrix
        var sd = MatMul(ad, Tr(ad, m, n), m, n, m);
        var ps = linalg.pinv(tensor(sd, new long[] { m, m }), hermitian: true).ToDoubleArray();
        Near(sd, MatMul(MatMul(sd, ps, m, m, m), sd, m, m, m), 1e-10, "hermitian: A P A = A");
    }

    [Fact]
    public void DetMatchesLaplaceExpansion()
    {
        using var scope = NewDisposeScope();
        foreach (var n in new[] { 1, 2, 3, 4 })
        {
            var ad = Rand(n * n, 16 + n);
            var d = linalg.det(tensor(ad, new long[] { n, n })).ToDoubleArray();
            Assert.Single(d);
            Assert.True(Math.Abs(Det(ad, n) - d[0]) < 1e-13, $"n={n}: {Det(ad, n):R} vs {d[0]:R}");
        }
        // batched, and a singular matrix
        var bd = Rand(2 * 9, 21);
        bd[9 + 6] = bd[9 + 0] + bd[9 + 3]; bd[9 + 7] = bd[9 + 1] + bd[9 + 4]; bd[9 + 8] = bd[9 + 2] + bd[9 + 5];
        var db = linalg.det(tensor(bd, new long[] { 2, 3, 3 })).ToDoubleArray();
        Assert.True(Math.Abs(Det(bd.Take(9).ToArray(), 3) - db[0]) < 1e-13);
        Assert.True(Math.Abs(db[1]) < 1e-14);
        Assert.Throws<TorchException>(() => linalg.det(ones(new long[] { 2, 3 })));
    }

    [Fact]
    public void CholeskyReconstructs()
    {
        using var scope = NewDisposeScope();
        const int n = 4;
        var ad = Spd(n, 22);
        var L = linalg.cholesky(tensor(ad, new long[] { n, n })).ToDoubleArray();
        for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) Assert.Equal(0.0, L[i * n + j]);
        Near(ad, MatMul(L, Tr(L, n, n), n, n, n), 1e-13, "L Lᵀ = A");
        var U = linalg.cholesky(tensor(ad, new long[] { n, n }), upper: true).ToDoubleArray();
        Near(ad, MatMul(Tr(U, n, n), U, n, n, n), 1e-13, "Uᵀ U = A");
        Assert.Throws<TorchException>(() => linalg.cholesky(tensor(new double[] { 1, 2, 2, 1 }, new long[] { 2, 2 })));
    }

    // ---------------- norms ----------------

    [Fact]
    public void MatrixNormsMatchKnownValues()
    {
        using var scope = NewDisposeScope();
        // A = [[3, 0], [4, 5]]: AᵀA = [[25, 20], [20, 25]] has eigenvalues 45 and 5
        var a = tensor(new double[] { 3, 0, 4, 5 }, new long[] { 2, 2 });
        Assert.True(Math.Abs(Math.Sqrt(50) - linalg.matrix_norm(a).ToDouble()) < 1e-14);
        Assert.True(Math.Abs(Math.Sqrt(45) + Math.Sqrt(5) - linalg.matrix_norm(a, "nuc").ToDouble()) < 1e-13);
        Assert.True(Math.Abs(Math.Sqrt(45) - linalg.matrix_norm(a, 2).ToDouble()) < 1e-13);
        Assert.True(Math.Abs(Math.Sqrt(5) - linalg.matrix_norm(a, -2).ToDouble()) < 1e-13);
        Assert.Equal(7.0, linalg.matrix_norm(a, 1).ToDouble());               // max column abs-sum
        Assert.Equal(9.0, linalg.matrix_norm(a, double.PositiveInfinity).ToDouble()); // max row abs-sum
        Assert.Equal(3.0, linalg.matrix_norm(a, double.NegativeInfinity).ToDouble()); // min row abs-sum
        // batched Frobenius over chosen dims, keepdim
        var bd = Rand(2 * 3 * 4, 23);
        var b = tensor(bd, new long[] { 2, 3, 4 });
        var fro = linalg.matrix_norm(b).ToDoubleArray();
        for (int k = 0; k < 2; k++)
            Assert.True(Math.Abs(Math.Sqrt(bd.Skip(k * 12).Take(12).Sum(x => x * x)) - fro[k]) < 1e-14);
        var fro02 = linalg.matrix_norm(b, dim: new long[] { 0, 2 }, keepdim: true);
        Assert.Equal(new long[] { 1, 3, 1 }, fro02.shape);
        var f02 = fro02.ToDoubleArray();
        for (int j = 0; j < 3; j++)
        {
            double s = 0;
            for (int i = 0; i < 2; i++) for (int l = 0; l < 4; l++) s += bd[i * 12 + j * 4 + l] * bd[i * 12 + j * 4 + l];
            Assert.True(Math.Abs(Math.Sqrt(s) - f02[j]) < 1e-14);
        }
        Assert.Throws<ArgumentException>(() => linalg.matrix_norm(a, "max"));
        Assert.Throws<TorchException>(() => linalg.matrix_norm(a, 3));
        Assert.Throws<TorchException>(() => linalg.matrix_norm(tensor(new double[] { 1, 2 })));
    }

    [Fact]
    public void VectorNormsMatchLoops()
    {
        using var scope = NewDisposeScope();
        var xd = Rand(2 * 3, 24);
        xd[4] = 0;
        var x = tensor(xd, new long[] { 2, 3 });
        double P(double ord) => ord switch
        {
            double.PositiveInfinity => xd.Max(Math.Abs),
            double.NegativeInfinity => xd.Min(Math.Abs),
            0 => xd.Count(v => v != 0),
            _ => Math.Pow(xd.Sum(v => Math.Pow(Math.Abs(v), ord)), 1 / ord),
        };
        foreach (var ord in new[] { 2.0, 1.0, 3.0, 0.5, 0.0, double.PositiveInfinity, double.NegativeInfinity })
            Assert.True(Math.Abs(P(ord) - linalg.vector_norm(x, ord).ToDouble()) < 1e-13, $"ord {ord}");
        // along a dim, keepdim
        var r = linalg.vector_norm(x, 2, new long[] { 1 }, keepdim: true);
        Assert.Equal(new long[] { 2, 1 }, r.shape);
        var rd = r.ToDoubleArray();
        for (int i = 0; i < 2; i++)
            Assert.True(Math.Abs(Math.Sqrt(xd.Skip(i * 3).Take(3).Sum(v => v * v)) - rd[i]) < 1e-14);
        var c = linalg.vector_norm(x, 1, new long[] { 0 }).ToDoubleArray();
        for (int j = 0; j < 3; j++) Assert.True(Math.Abs(Math.Abs(xd[j]) + Math.Abs(xd[3 + j]) - c[j]) < 1e-14);
        // dtype: a float32 input reduced in float64
        Assert.Equal(ScalarType.Float64, linalg.vector_norm(x.to_type(float32), dtype: float64).dtype);
        Assert.Throws<TorchException>(() => linalg.vector_norm(x, 2, new long[] { 2 }));
    }

    // ---------------- gradients ----------------

    [Fact]
    public void DecompositionGradChecks()
    {
        using var scope = NewDisposeScope();
        var a = tensor(Rand(3 * 2, 25), new long[] { 3, 2 }, requires_grad: true);
        GradCheck.Assert(t => linalg.svd(t[0]).S, new[] { a });
        GradCheck.Assert(t => linalg.svdvals(t[0]), new[] { a });
        GradCheck.Assert(t => linalg.qr(t[0]).Q, new[] { a });
        GradCheck.Assert(t => linalg.qr(t[0]).R, new[] { a });
        // eigh reads one triangle; feed it the symmetric M Mᵀ (= linear(M, M)) so every element of M matters
        var m = tensor(Rand(3 * 3, 26), new long[] { 3, 3 }, requires_grad: true);
        GradCheck.Assert(t => linalg.eigh(F.linear(t[0], t[0])).eigenvalues, new[] { m });
        GradCheck.Assert(t => linalg.eigvalsh(F.linear(t[0], t[0])), new[] { m });
        GradCheck.Assert(t => linalg.cholesky(F.linear(t[0], t[0])), new[] { m });
    }

    [Fact]
    public void SolveInvDetPinvNormGradChecks()
    {
        using var scope = NewDisposeScope();
        var a = tensor(WellConditioned(3, 27), new long[] { 3, 3 }, requires_grad: true);
        var b = tensor(Rand(3 * 2, 28), new long[] { 3, 2 }, requires_grad: true);
        GradCheck.Assert(t => linalg.solve(t[0], t[1]), new[] { a, b });
        GradCheck.Assert(t => linalg.inv(t[0]), new[] { a });
        GradCheck.Assert(t => linalg.det(t[0]), new[] { a });
        var r = tensor(Rand(3 * 2, 29), new long[] { 3, 2 }, requires_grad: true);
        GradCheck.Assert(t => linalg.pinv(t[0]), new[] { r });
        GradCheck.Assert(t => linalg.matrix_norm(t[0]), new[] { r });
        GradCheck.Assert(t => linalg.matrix_norm(t[0], "nuc"), new[] { r });
        GradCheck.Assert(t => linalg.vector_norm(t[0], 3, new long[] { 1 }), new[] { r });
    }
}
