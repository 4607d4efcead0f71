using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>
/// A small dense row-major float64 matrix with naive loops, for the optimizer references: products, Gauss-Jordan
/// inverse, Jacobi symmetric eigen-decomposition, Gram-Schmidt QR and a Kronecker-form Sylvester solver. Written here,
/// independent of libtorch.
/// </summary>
public sealed class Mat
{
    public Mat(int rows, int cols, double[]? data = null)
    {
        Rows = rows;
        Cols = cols;
        Data = data ?? new double[rows * cols];
        if (Data.Length != rows * cols) throw new ArgumentException("size mismatch");
    }

    public int Rows { get; }
    public int Cols { get; }
    public double[] Data { get; }

    public double this[int i, int j]
    {
        get => Data[i * Cols + j];
        set => Data[i * Cols + j] = value;
    }

    public static Mat From(Tensor t)
    {
        if (t.dim() != 2) throw new ArgumentException("2-D only");
        return new Mat((int)t.size(0), (int)t.size(1), t.to_type(ScalarType.Float64).ToDoubleArray());
    }

    public Tensor ToTensor() => tensor((double[])Data.Clone(), new long[] { Rows, Cols }, ScalarType.Float64);

    public static Mat Random(Random rng, int rows, int cols, double scale = 1)
    {
        var m = new Mat(rows, cols);
        for (int i = 0; i < m.Data.Length; i++) m.Data[i] = (rng.NextDouble() * 2 - 1) * scale;
        return m;
    }

    public static Mat Eye(int n)
    {
        var m = new Mat(n, n);
        for (int i = 0; i < n; i++) m[i, i] = 1;
        return m;
    }

    public Mat Clone() => new(Rows, Cols, (double[])Data.Clone());

    public Mat T()
    {
        var m = new Mat(Cols, Rows);
        for (int i = 0; i < Rows; i++)
            for (int j = 0; j < Cols; j++) m[j, i] = this[i, j];
        return m;
    }

    public static Mat operator *(Mat a, Mat b)
    {
        if (a.Cols != b.Rows) throw new ArgumentException($"[{a.Rows}x{a.Cols}] * [{b.Rows}x{b.Cols}]");
        var m = new Mat(a.Rows, b.Cols);
        for (int i = 0; i < a.Rows; i++)
            for (int k = 0; k < a.Cols; k++)
            {
                var v = a[i, k];
                for (int j = 0; j < b.Cols; j++) m.Data[i * m.Cols + j] += v * b[k, j];
            }
        return m;
    }

    public static Mat operator *(Mat a, double s) => a.Map(v => v * s);
    public static Mat operator *(double s, Mat a) => a.Map(v => v * s);
    public static Mat operator /(Mat a, double s) => a.Map(v => v / s);
    public static Mat operator +(Mat a, Mat b) => a.Zip(b, (x, y) => x + y);
    public static Mat operator -(Mat a, Mat b) => a.Zip(b, (x, y) => x - y);
    public static Mat operator -(Mat a) => a.Map(v => -v);

    public Mat Map(Func<double, double> f)
    {
        var m = new Mat(Rows, Cols);
        for (int i = 0; i < Data.Length; i++) m.Data[i] = f(Data[i]);
        return m;
    }

    public Mat Zip(Mat b, Func<double, double, double> f)
    {
        if (Rows != b.Rows || Cols != b.Cols) throw new ArgumentException($"[{Rows}x{Cols}] vs [{b.Rows}x{b.Cols}]");
        var m = new Mat(Rows, Cols);
        for (int i = 0; i < Data.Length; i++) m.Data[i] = f(Data[i], b.Data[i]);
        return m;
    }

    public double SumSquares() => Data.Sum(v => v * v);

    public double Norm() => Math.Sqrt(SumSquares());

    public double Rms() => Math.Sqrt(SumSquares() / Data.Length);

    public Mat Sym() => (this + T()) * 0.5;

    /// <summary>Columns [0, k).</summary>
    public Mat LeftColumns(int k)
    {
        var m = new Mat(Rows, k);
        for (int i = 0; i < Rows; i++)
            for (int j = 0; j < k; j++) m[i, j] = this[i, j];
        return m;
    }

    /// <summary>Gauss-Jordan inverse with partial pivoting.</summary>
    public Mat Inverse()
    {
        if (Rows != Cols) throw new ArgumentException("square only");
        int n = Rows;
        var a = Clone();
        var inv = Eye(n);
        for (int c = 0; c < n; c++)
        {
            int piv = c;
            for (int r = c + 1; r < n; r++) if (Math.Abs(a[r, c]) > Math.Abs(a[piv, c])) piv = r;
            if (a[piv, c] == 0) throw new InvalidOperationException("singular");
            if (piv != c)
                for (int j = 0; j < n; j++)
                {
                    (a[c, j], a[piv, j]) = (a[piv, j], a[c, j]);
                    (inv[c, j], inv[piv, j]) = (inv[piv, j], inv[c, j]);
                }
            var d = a[c, c];
            for (int j = 0; j < n; j++) { a[c, j] /= d; inv[c, j] /= d; }
            for (int r = 0; r < n; r++)
            {
                if (r == c) continue;
                var f = a[r, c];
                if (f == 0) continue;
                for (int j = 0; j < n; j++) { a[r, j] -= f * a[c, j]; inv[r, j] -= f * inv[c, j]; }
            }
        }
        return inv;
    }

    /// <summary>Solves M·x = b (Gaussian elimination, partial pivoting).</summary>
    public static double[] Solve(Mat m, double[] b)
    {
        var inv = m.Inverse();
        var x = new double[b.Length];
        for (int i = 0; i < b.Length; i++)
            for (int j = 0; j < b.Length; j++) x[i] += inv[i, j] * b[j];
        return x;
    }

    /// <summary>Cyclic Jacobi eigen-decomposition of a symmetric matrix: eigenvalues ascending, eigenvectors as columns.</summary>
    public (double[] values, Mat vectors) SymEig()
    {
        int n = Rows;
        var a = Sym();
        var v = Eye(n);
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++) off += a[p, q] * a[p, q];
            if (off < 1e-30) break;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++)
                {
                    if (Math.Abs(a[p, q]) < 1e-300) continue;
                    double theta = (a[q, q] - a[p, p]) / (2 * a[p, q]);
                    double t = Math.Sign(theta == 0 ? 1 : theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < n; k++)
                    {
                        double akp = a[k, p], akq = a[k, q];
                        a[k, p] = c * akp - s * akq;
                        a[k, q] = s * akp + c * akq;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        double apk = a[p, k], aqk = a[q, k];
                        a[p, k] = c * apk - s * aqk;
                        a[q, k] = s * apk + c * aqk;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        double vkp = v[k, p], vkq = v[k, q];
                        v[k, p] = c * vkp - s * vkq;
                        v[k, q] = s * vkp + c * vkq;
                    }
                }
        }
        var order = Enumerable.Range(0, n).OrderBy(i => a[i, i]).ToArray();
        var values = order.Select(i => a[i, i]).ToArray();
        var vectors = new Mat(n, n);
        for (int j = 0; j < n; j++)
            for (int k = 0; k < n; k++) vectors[k, j] = v[k, order[j]];
        return (values, vectors);
    }

    /// <summary>f(M) = V·diag(f(w))·Vᵀ for a symmetric M.</summary>
    public Mat SymFunction(Func<double, double> f)
    {
        var (w, v) = SymEig();
        var d = new Mat(Rows, Rows);
        for (int i = 0; i < Rows; i++) d[i, i] = f(w[i]);
        return v * d * v.T();
    }

    /// <summary>Modified Gram-Schmidt QR of an [n, r] matrix (n ≥ r, full column rank): Q [n, r], R [r, r] with positive diagonal.</summary>
    public (Mat Q, Mat R) Qr()
    {
        int n = Rows, r = Cols;
        var q = Clone();
        var rr = new Mat(r, r);
        for (int j = 0; j < r; j++)
        {
            for (int k = 0; k < j; k++)
            {
                double dot = 0;
                for (int i = 0; i < n; i++) dot += q[i, k] * q[i, j];
                rr[k, j] = dot;
                for (int i = 0; i < n; i++) q[i, j] -= dot * q[i, k];
            }
            double norm = 0;
            for (int i = 0; i < n; i++) norm += q[i, j] * q[i, j];
            norm = Math.Sqrt(norm);
            rr[j, j] = norm;
            for (int i = 0; i < n; i++) q[i, j] /= norm;
        }
        return (q, rr);
    }

    /// <summary>Solves S·X + X·T = C through the Kronecker form (I ⊗ S + Tᵀ ⊗ I)·vec(X) = vec(C) (column-major vec).</summary>
    public static Mat SolveSylvester(Mat s, Mat t, Mat c)
    {
        int r = s.Rows, q = t.Rows;
        var k = new Mat(r * q, r * q);
        // vec index of X[i, j] is j·r + i.
        for (int j = 0; j < q; j++)
            for (int i = 0; i < r; i++)
            {
                int row = j * r + i;
                for (int l = 0; l < r; l++) k[row, j * r + l] += s[i, l];       // (S·X)[i, j] = Σ_l S[i, l]·X[l, j]
                for (int l = 0; l < q; l++) k[row, l * r + i] += t[l, j];       // (X·T)[i, j] = Σ_l X[i, l]·T[l, j]
            }
        var b = new double[r * q];
        for (int j = 0; j < q; j++)
            for (int i = 0; i < r; i++) b[j * r + i] = c[i, j];
        var x = Solve(k, b);
        var m = new Mat(r, q);
        for (int j = 0; j < q; j++)
            for (int i = 0; i < r; i++) m[i, j] = x[j * r + i];
        return m;
    }

    /// <summary>Largest |a − b| / max(1, |a|) over the elements.</summary>
    public static double MaxRelDiff(Mat expected, Mat actual)
    {
        if (expected.Rows != actual.Rows || expected.Cols != actual.Cols) throw new ArgumentException("shape mismatch");
        double worst = 0;
        for (int i = 0; i < expected.Data.Length; i++)
        {
            var d = Math.Abs(expected.Data[i] - actual.Data[i]) / Math.Max(1, Math.Abs(expected.Data[i]));
            if (double.IsNaN(d)) return double.PositiveInfinity;
            worst = Math.Max(worst, d);
        }
        return worst;
    }

    public static void AssertClose(Mat expected, Mat actual, double tol, string what)
    {
        var d = MaxRelDiff(expected, actual);
        Assert.True(d <= tol, $"{what}: max relative difference {d:E3} > {tol:E1}");
    }
}
