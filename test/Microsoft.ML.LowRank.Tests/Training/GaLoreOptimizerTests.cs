using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>
/// GaLore's AdamW (methods.md §2.5) against its rule written here in float64: projector from the top-r singular vectors
/// of the gradient (computed here by a Jacobi eigen-decomposition of GᵀG or GGᵀ; singular vectors are defined up to sign,
/// so the reference takes the implementation's signs after checking the vectors agree), Adam on the projected gradient,
/// moments kept across projector refreshes, projection back with the scale, decay after the step.
/// </summary>
public class GaLoreOptimizerTests
{
    private const double Lr = 0.05, Beta1 = 0.8, Beta2 = 0.95, Eps = 1e-6, Wd = 0.1;

    /// <summary>The top-k singular vectors of G: right ones as rows [k, n], or left ones as columns [m, k].</summary>
    private static Mat TopSingularVectors(Mat g, int k, bool right)
    {
        var gram = right ? g.T() * g : g * g.T();
        var (w, v) = gram.SymEig();
        int n = gram.Rows;
        var top = new Mat(n, k);
        for (int j = 0; j < k; j++)
            for (int i = 0; i < n; i++) top[i, j] = v[i, n - 1 - j]; // eigenvalues ascending: take the largest
        Assert.True(k == n || w[n - 1 - k + 1] - w[n - 1 - k] > 1e-6, "degenerate singular values make the subspace ambiguous");
        return right ? top.T() : top;
    }

    /// <summary>Flips the reference's vectors to the implementation's signs, after checking each agrees up to sign.</summary>
    private static Mat AlignSigns(Mat reference, Mat actual, bool right)
    {
        var aligned = reference.Clone();
        int k = right ? reference.Rows : reference.Cols, len = right ? reference.Cols : reference.Rows;
        for (int j = 0; j < k; j++)
        {
            double dot = 0;
            for (int i = 0; i < len; i++) dot += right ? reference[j, i] * actual[j, i] : reference[i, j] * actual[i, j];
            Assert.True(Math.Abs(Math.Abs(dot) - 1) < 1e-9, $"singular vector {j} differs from the reference (|dot| = {Math.Abs(dot):R})");
            if (dot < 0)
                for (int i = 0; i < len; i++)
                {
                    if (right) aligned[j, i] = -aligned[j, i];
                    else aligned[i, j] = -aligned[i, j];
                }
        }
        return aligned;
    }

    private sealed class GaLoreRef(int rank, int gap, double scale, bool right)
    {
        private Mat? _proj, _m, _v;
        private int _t;

        public Mat Step(Mat w, Mat g, Func<Mat> implementationProjector)
        {
            if (_t % gap == 0) _proj = AlignSigns(TopSingularVectors(g, rank, right), implementationProjector(), right);
            var low = right ? g * _proj!.T() : _proj!.T() * g;
            _m ??= new Mat(low.Rows, low.Cols);
            _v ??= new Mat(low.Rows, low.Cols);
            _t++;
            _m = _m * Beta1 + low * (1 - Beta1);
            _v = _v * Beta2 + low.Map(x => x * x) * (1 - Beta2);
            var n = _m.Zip(_v, (m, v) => m / (Math.Sqrt(v) + Eps));
            var stepSize = Lr * Math.Sqrt(1 - Math.Pow(Beta2, _t)) / (1 - Math.Pow(Beta1, _t));
            var back = right ? n * _proj : _proj * n;
            return (w - back * (stepSize * scale)) * (1 - Lr * Wd);
        }
    }

    [Theory]
    [InlineData(6, 4, optim.GaLoreProjectionType.Std, true)]
    [InlineData(4, 6, optim.GaLoreProjectionType.Std, false)]
    [InlineData(6, 4, optim.GaLoreProjectionType.ReverseStd, false)]
    [InlineData(4, 6, optim.GaLoreProjectionType.Right, true)]
    [InlineData(6, 4, optim.GaLoreProjectionType.Left, false)]
    public void GaLoreMatchesTheFloat64Rule(int m, int n, optim.GaLoreProjectionType type, bool right)
    {
        using var scope = NewDisposeScope();
        const int rank = 2, gap = 2;
        const double scale = 0.25;
        var rng = new Random(m * 10 + n + (int)type);
        var w = Mat.Random(rng, m, n);
        var bias = Mat.Random(rng, 1, m);
        using var pw = new nn.Parameter(w.ToTensor());
        using var pb = new nn.Parameter(tensor((double[])bias.Data.Clone()));
        // The bias sits in the GaLore group: 1-D parameters there take plain AdamW steps.
        using var opt = optim.GaLoreAdamW(new[] { new optim.GaLoreParamGroup(new optim.ParamGroup(new[] { pw, pb }),
            new optim.GaLoreSettings(rank, gap, scale, type)) }, Lr, Beta1, Beta2, Eps, Wd);
        Assert.Equal(right, optim.GaLoreAdamWOptimizer.ProjectsRight(m, n, type));
        Assert.True(opt.is_projected(pw));
        Assert.False(opt.is_projected(pb));
        var reference = new GaLoreRef(rank, gap, scale, right);
        Mat bm = new(1, m, new double[m]), bv = new(1, m, new double[m]);
        for (int step = 1; step <= 3; step++) // refreshes at steps 1 and 3: the moments carry over the second one
        {
            var g = Mat.Random(rng, m, n);
            var gb = Mat.Random(rng, 1, m);
            pw.grad = g.ToTensor();
            pb.grad = tensor((double[])gb.Data.Clone());
            opt.step();
            w = reference.Step(w, g, () => Mat.From(opt.state(pw).Tensors["projector"]));
            Mat.AssertClose(w, Mat.From(pw), 1e-9, $"step {step} W");
            bm = bm * Beta1 + gb * (1 - Beta1);
            bv = bv * Beta2 + gb.Map(x => x * x) * (1 - Beta2);
            var ss = Lr * Math.Sqrt(1 - Math.Pow(Beta2, step)) / (1 - Math.Pow(Beta1, step));
            bias = (bias - bm.Zip(bv, (a, b) => a / (Math.Sqrt(b) + Eps)) * ss) * (1 - Lr * Wd);
            Mat.AssertClose(bias, new Mat(1, m, pb.ToDoubleArray()), 1e-9, $"step {step} bias");
        }
        // Optimizer state of the matrix is rank-sized: moments [m, r] or [r, n], projector [r, n] or [m, r].
        var st = opt.state(pw);
        var low = right ? new long[] { m, rank } : new long[] { rank, n };
        Assert.Equal(low, st.Tensors["projected_exp_avg"].shape);
        Assert.Equal(low, st.Tensors["projected_exp_avg_sq"].shape);
        Assert.Equal(right ? new long[] { rank, n } : new long[] { m, rank }, st.Tensors["projector"].shape);
        Assert.False(st.Tensors.ContainsKey("exp_avg"));
        Assert.Equal(new long[] { m }, opt.state(pb).Tensors["exp_avg"].shape);
    }

    [Fact]
    public void TheProjectorRefreshesExactlyEveryUpdateProjGapSteps()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(3);
        using var p = new nn.Parameter(Mat.Random(rng, 8, 5).ToTensor());
        using var opt = optim.GaLoreAdamW(new[] { new optim.GaLoreParamGroup(new optim.ParamGroup(new[] { p }), new optim.GaLoreSettings(rank: 2, update_proj_gap: 3)) });
        Tensor? previous = null;
        var refreshed = new List<int>();
        for (int step = 1; step <= 10; step++)
        {
            p.grad = Mat.Random(rng, 8, 5).ToTensor();
            opt.step();
            var proj = opt.state(p).Tensors["projector"].clone();
            if (previous is null || !previous.equal(proj)) refreshed.Add(step);
            previous = proj;
        }
        Assert.Equal(new[] { 1, 4, 7, 10 }, refreshed);
    }

    [Fact]
    public void NamedOverloadProjectsTheSelected2DParametersOnly()
    {
        using var scope = NewDisposeScope();
        using var w1 = new nn.Parameter(randn(6, 4));
        using var w2 = new nn.Parameter(randn(5, 3));
        using var b = new nn.Parameter(randn(6));
        using var frozen = new nn.Parameter(randn(4, 4), requires_grad: false);
        var named = new[] { ("layer.mlp.weight", w1), ("embed.weight", w2), ("layer.mlp.bias", b), ("frozen.weight", frozen) };
        using var opt = optim.GaLoreAdamW(named, new optim.GaLoreSettings(rank: 2), (name, _) => name.Contains("mlp"));
        Assert.True(opt.is_projected(w1));
        Assert.False(opt.is_projected(w2));
        Assert.False(opt.is_projected(b));
        Assert.DoesNotContain(opt.parameters(), p => ReferenceEquals(p, frozen));
        Assert.Throws<ArgumentOutOfRangeException>(() => optim.GaLoreAdamW(named, new optim.GaLoreSettings(rank: 0)));
    }
}
