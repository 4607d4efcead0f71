using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>
/// LoRA-FA, LoRA-Pro and LoRA-RITE against their update rules (methods.md §2.2-§2.4) written here in float64 with naive
/// matrix code (<see cref="Mat"/>), over three steps with random gradients, for two LoRA pairs with different shapes and
/// scalings plus a parameter outside any pair (which takes Hugging Face-form AdamW steps).
/// </summary>
public class LoraPairOptimizerTests
{
    private const double Tol = 1e-9;
    private const double Lr0 = 0.02, Lr1 = 0.03, Wd0 = 0.05, Beta1 = 0.8, Beta2 = 0.95;

    /// <summary>Two pairs (in, out, r, s) and a 1-D extra parameter; parameters are float64.</summary>
    private sealed class Setup : IDisposable
    {
        public readonly Mat[] A, B;
        public readonly double[] S = { 2.0, 0.7 };
        public Mat Extra;
        public readonly nn.Parameter[] PA, PB;
        public readonly nn.Parameter PExtra;

        public Setup(int seed, bool trainA)
        {
            var rng = new Random(seed);
            (int inF, int outF, int r)[] shapes = { (7, 5, 3), (4, 6, 2) };
            A = shapes.Select(x => Mat.Random(rng, x.r, x.inF)).ToArray();
            B = shapes.Select(x => Mat.Random(rng, x.outF, x.r, 0.5)).ToArray();
            Extra = Mat.Random(rng, 1, 5);
            PA = A.Select(a => new nn.Parameter(a.ToTensor(), requires_grad: trainA)).ToArray();
            PB = B.Select(b => new nn.Parameter(b.ToTensor())).ToArray();
            PExtra = new nn.Parameter(tensor((double[])Extra.Data.Clone()));
        }

        public optim.LoraPair[] Pairs => new[] { new optim.LoraPair(PA[0], PB[0], S[0], "p0"), new optim.LoraPair(PA[1], PB[1], S[1], "p1") };

        /// <summary>Group 0: pair 0 (and pair 1's A when trained), lr 0.02, decay 0.05; group 1: pair 1's B and the extra parameter, lr 0.03.</summary>
        public optim.ParamGroup[] Groups(bool trainA)
        {
            var g0 = new List<nn.Parameter> { PB[0] };
            if (trainA) { g0.Insert(0, PA[0]); g0.Add(PA[1]); }
            return new[]
            {
                new optim.ParamGroup(g0, lr: Lr0, weight_decay: Wd0),
                new optim.ParamGroup(new[] { PExtra, PB[1] }, lr: Lr1, weight_decay: 0.0),
            };
        }

        public void Dispose()
        {
            foreach (var p in PA.Concat(PB).Append(PExtra)) p.Dispose();
        }
    }

    /// <summary>Hugging Face AdamW in float64 (the reference for B under LoRA-FA and for parameters outside pairs).</summary>
    private sealed class HfAdamRef(double lr, double wd, double eps)
    {
        private Mat? _m, _v;
        private int _t;

        public Mat Step(Mat theta, Mat g)
        {
            _m ??= new Mat(g.Rows, g.Cols);
            _v ??= new Mat(g.Rows, g.Cols);
            _t++;
            _m = _m * Beta1 + g * (1 - Beta1);
            _v = _v * Beta2 + g.Map(x => x * x) * (1 - Beta2);
            var stepSize = lr * Math.Sqrt(1 - Math.Pow(Beta2, _t)) / (1 - Math.Pow(Beta1, _t));
            var next = theta - _m.Zip(_v, (m, v) => m / (Math.Sqrt(v) + eps)) * stepSize;
            return wd > 0 ? next * (1 - lr * wd) : next;
        }
    }

    private static Mat RandomGrad(Random rng, Mat like, double scale) => Mat.Random(rng, like.Rows, like.Cols, scale);

    // ------------------------------------------------------------------ LoRA-FA

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LoraFAMatchesTheFloat64Rule(bool project)
    {
        using var scope = NewDisposeScope();
        using var x = new Setup(1, trainA: false);
        const double eps = 1e-6;
        using var opt = optim.LoraFA(x.Groups(false), x.Pairs, beta1: Beta1, beta2: Beta2, eps: eps, project_gradient: project);
        Assert.Equal(2, opt.pairs.Count);
        var refB = new[] { new HfAdamRef(Lr0, Wd0, eps), new HfAdamRef(Lr1, 0, eps) };
        var refExtra = new HfAdamRef(Lr1, 0, eps);
        var rng = new Random(2);
        var a0 = x.A.Select(a => a.Clone()).ToArray();
        for (int step = 1; step <= 3; step++)
        {
            for (int i = 0; i < 2; i++)
            {
                var gB = RandomGrad(rng, x.B[i], 1);
                x.PB[i].grad = gB.ToTensor();
                x.PA[i].grad = RandomGrad(rng, x.A[i], 1).ToTensor(); // a stray A gradient must be ignored
                var g = project ? gB * (x.A[i] * x.A[i].T() + Mat.Eye(x.A[i].Rows) * 1e-8).Inverse() / (x.S[i] * x.S[i]) : gB;
                x.B[i] = refB[i].Step(x.B[i], g);
            }
            var gE = RandomGrad(rng, x.Extra, 1);
            x.PExtra.grad = gE.ToTensor().reshape(5);
            opt.step();
            for (int i = 0; i < 2; i++)
            {
                Mat.AssertClose(x.B[i], Mat.From(x.PB[i]), Tol, $"step {step} B{i}");
                Assert.True(x.PA[i].equal(a0[i].ToTensor()), $"step {step}: A{i} changed");
            }
            x.Extra = refExtra.Step(x.Extra, gE);
            Mat.AssertClose(x.Extra, new Mat(1, 5, x.PExtra.ToDoubleArray()), Tol, $"step {step} extra");
        }
        Assert.Equal(3.0, opt.state(x.PB[0]).Scalars["step"]);
        Assert.Equal(x.PB[0].shape, opt.state(x.PB[0]).Tensors["exp_avg"].shape);
        Assert.False(opt.has_state(x.PA[0]));
    }

    [Fact]
    public void LoraFARejectsATrainedAAndMalformedPairs()
    {
        using var scope = NewDisposeScope();
        using var x = new Setup(3, trainA: true);
        var e = Assert.Throws<ArgumentException>(() => optim.LoraFA(x.Groups(true), x.Pairs));
        Assert.Contains("frozen", e.Message);
        e = Assert.Throws<ArgumentException>(() => optim.LoraFA(x.Groups(false), new[] { new optim.LoraPair(x.PA[0], x.PB[1], 1.0) }));
        Assert.Contains("same r", e.Message);
        e = Assert.Throws<ArgumentException>(() => optim.LoraFA(x.Groups(false), new[] { new optim.LoraPair(x.PA[0], x.PB[0], 0.0) }));
        Assert.Contains("scaling", e.Message);
        e = Assert.Throws<ArgumentException>(() => optim.LoraPro(new[] { new optim.ParamGroup(new[] { x.PA[0] }) }, new[] { new optim.LoraPair(x.PA[0], x.PB[0], 1.0) }));
        Assert.Contains("B is not", e.Message);
    }

    // ------------------------------------------------------------------ LoRA-Pro

    /// <summary>The authors' procedure (methods.md §2.3) in float64; inverses of the regularised Gram matrices by
    /// Gauss-Jordan, X by the Kronecker form of the Sylvester equation.</summary>
    private sealed class LoraProRef(double eps, bool sylvester)
    {
        private readonly Dictionary<int, (Mat m, Mat v, int t)> _state = new();

        public (Mat newA, Mat newB) Adjust(int pair, Mat a, Mat b, Mat gA, Mat gB, double s)
        {
            var (m, v, t) = _state.TryGetValue(pair, out var st) ? st : (new Mat(b.Rows, a.Cols), new Mat(b.Rows, a.Cols), 0);
            t++;
            double s2 = s * s;
            var aatInv = (a * a.T() + Mat.Eye(a.Rows) * 1e-8).Inverse();
            Mat? btbInv = t == 1 ? null : (b.T() * b + Mat.Eye(b.Cols) * 1e-8).Inverse();
            Mat P(Mat x) => x - b * btbInv! * b.T() * x;
            Mat ga, gb;
            if (t == 1) { ga = gA; gb = gB * aatInv / s2; }
            else { ga = btbInv! * gA / s2; gb = P(gB * aatInv) / s2; }
            var equiv = (b * ga + gb * a) * s;
            m = m * Beta1 + equiv * (1 - Beta1);
            v = v * Beta2 + equiv.Map(z => z * z) * (1 - Beta2);
            double bc1 = 1 - Math.Pow(Beta1, t), bc2 = 1 - Math.Pow(Beta2, t);
            var d = m.Zip(v, (mm, vv) => (mm / bc1) / (Math.Sqrt(vv) / Math.Sqrt(bc2) + eps));
            _state[pair] = (m, v, t);
            var aP = b.T() * d * s;
            var bP = d * a.T() * s;
            if (t == 1) return (aP, bP * aatInv / s2);
            var newA = btbInv! * aP / s2;
            var newB = P(bP * aatInv) / s2;
            if (!sylvester) return (newA, newB);
            var xm = Mat.SolveSylvester(b.T() * b, a * a.T(), -(btbInv! * aP * a.T()) / s2);
            return (newA + xm * a, newB - b * xm);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LoraProMatchesTheFloat64Rule(bool sylvester)
    {
        using var scope = NewDisposeScope();
        using var x = new Setup(4, trainA: true);
        const double eps = 1e-8;
        using var opt = optim.LoraPro(x.Groups(true), x.Pairs, beta1: Beta1, beta2: Beta2, eps: eps, sylvester: sylvester);
        var reference = new LoraProRef(eps, sylvester);
        var refExtra = new HfAdamRef(Lr1, 0, eps);
        var rng = new Random(5);
        for (int step = 1; step <= 3; step++)
        {
            var expected = new (Mat a, Mat b)[2];
            for (int i = 0; i < 2; i++)
            {
                // Gradients of a random full-weight gradient G through the factors: g_A = s·Bᵀ·G, g_B = s·G·Aᵀ.
                var g = Mat.Random(rng, x.B[i].Rows, x.A[i].Cols);
                var gA = x.B[i].T() * g * x.S[i];
                var gB = g * x.A[i].T() * x.S[i];
                x.PA[i].grad = gA.ToTensor();
                x.PB[i].grad = gB.ToTensor();
                var (da, db) = reference.Adjust(i, x.A[i], x.B[i], gA, gB, x.S[i]);
                // Pair 0's factors: lr 0.02 with decay 0.05 (decoupled, before the SGD step); pair 1: A in group 0, B in group 1.
                double lrA = Lr0, wdA = Wd0, lrB = i == 0 ? Lr0 : Lr1, wdB = i == 0 ? Wd0 : 0;
                expected[i] = (x.A[i] * (1 - lrA * wdA) - da * lrA, x.B[i] * (1 - lrB * wdB) - db * lrB);
            }
            var gE = RandomGrad(rng, x.Extra, 1);
            x.PExtra.grad = gE.ToTensor().reshape(5);
            opt.step();
            for (int i = 0; i < 2; i++)
            {
                (x.A[i], x.B[i]) = expected[i];
                Mat.AssertClose(x.A[i], Mat.From(x.PA[i]), Tol, $"step {step} A{i}");
                Mat.AssertClose(x.B[i], Mat.From(x.PB[i]), Tol, $"step {step} B{i}");
            }
            x.Extra = refExtra.Step(x.Extra, gE);
            Mat.AssertClose(x.Extra, new Mat(1, 5, x.PExtra.ToDoubleArray()), Tol, $"step {step} extra");
        }
        // Full-size moments ([out, in]) on B; nothing on A.
        Assert.Equal(new long[] { 5, 7 }, opt.state(x.PB[0]).Tensors["equiv_exp_avg"].shape);
        Assert.Equal(new long[] { 6, 4 }, opt.state(x.PB[1]).Tensors["equiv_exp_avg_sq"].shape);
        Assert.False(opt.has_state(x.PA[0]));
    }

    [Fact]
    public void LoraProSylvesterSolverSolvesTheEquation()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(9);
        var b = Mat.Random(rng, 6, 3);
        var a = Mat.Random(rng, 3, 8);
        var c = Mat.Random(rng, 3, 3);
        var x = Mat.From(optim.LoraProOptimizer.SolveSylvester((b.T() * b).ToTensor(), (a * a.T()).ToTensor(), c.ToTensor()));
        Mat.AssertClose(c, b.T() * b * x + x * (a * a.T()), 1e-10, "S·X + X·T");
        Mat.AssertClose(Mat.SolveSylvester(b.T() * b, a * a.T(), c), x, 1e-10, "X vs the Kronecker solution");
    }

    [Fact]
    public void LoraProFirstStepWithZeroBIsFinite()
    {
        // Step 0 of real training: B = 0, so BᵀB is singular and g_A = s·Bᵀ·G = 0; the first step must not use (BᵀB)⁻¹.
        using var scope = NewDisposeScope();
        var rng = new Random(12);
        var a = Mat.Random(rng, 3, 7);
        using var pa = new nn.Parameter(a.ToTensor());
        using var pb = new nn.Parameter(zeros(new long[] { 5, 3 }, ScalarType.Float64));
        using var opt = optim.LoraPro(new[] { new optim.ParamGroup(new[] { pa, pb }) }, new[] { new optim.LoraPair(pa, pb, 2.0) }, lr: 0.01);
        // The first step runs at learning rate 0 (a warmup schedule's first step), so B is still exactly 0 at the second
        // step, which takes the t > 1 branch: (BᵀB + 1e-8·I)⁺ = 1e8·I then only multiplies exact zeros.
        for (int step = 0; step < 4; step++)
        {
            opt.param_groups[0].LearningRate = step == 0 ? 0 : 0.01;
            var g = Mat.Random(rng, 5, 7);
            pa.grad = (Mat.From(pb).T() * g * 2.0).ToTensor();
            pb.grad = (g * Mat.From(pa).T() * 2.0).ToTensor();
            opt.step();
            Assert.True(pa.isfinite().all().item<bool>() && pb.isfinite().all().item<bool>(), $"non-finite factors after step {step + 1}");
            if (step == 0) Assert.Equal(0.0, pb.abs().max().ToDouble());
            if (step == 1) Assert.True(pa.equal(a.ToTensor()), "with B = 0 the A update (s·Bᵀ·D adjusted) must be exactly 0");
        }
        Assert.True(pb.abs().max().ToDouble() > 1e-4, "B did not move away from 0");
        Assert.False(pa.equal(a.ToTensor()), "A never moved");
    }

    // ------------------------------------------------------------------ LoRA-RITE

    /// <summary>The port's algorithm (methods.md §2.4) in float64; QR by Gram-Schmidt (the result does not depend on
    /// the QR's sign convention, which is the point of the method), V^(-1/2) by Jacobi.</summary>
    private sealed class LoraRiteRef(double eps, double clip, double skip, double cap, bool escape, bool balance)
    {
        private sealed class F
        {
            public Mat? V, M, Basis;
            public double Escape;
        }

        private readonly Dictionary<(int, char), F> _f = new();
        private readonly Dictionary<int, int> _t = new();

        private F Get(int pair, char which) => _f.TryGetValue((pair, which), out var f) ? f : _f[(pair, which)] = new F();

        /// <summary>One step over all pairs; lrs/wds per factor; returns the new (A, B) of each pair.</summary>
        public (Mat a, Mat b)[] Step(Mat[] A, Mat[] B, Mat[] gA, Mat[] gB, (double lr, double wd)[] aHp, (double lr, double wd)[] bHp)
        {
            int n = A.Length;
            var work = new (Mat ga, Mat gb, Mat riA, Mat riB, Mat pA, Mat pB)[n];
            double normSq = 0;
            for (int i = 0; i < n; i++)
            {
                var (uA, rA) = A[i].T().Qr();
                var (uB, rB) = B[i].Qr();
                var riA = rA.Inverse();
                var riB = rB.Inverse();
                var fa = Get(i, 'A');
                var fb = Get(i, 'B');
                int r = rA.Rows;
                var pA = fb.Basis is null ? new Mat(r, r) : uB.T() * fb.Basis;
                var pB = fa.Basis is null ? new Mat(r, r) : uA.T() * fa.Basis;
                var ga = gA[i].T() * riB;
                var gb = gB[i] * riA;
                if (skip > 0 && ga.Rms() > skip) ga = new Mat(ga.Rows, ga.Cols);
                if (skip > 0 && gb.Rms() > skip) gb = new Mat(gb.Rows, gb.Cols);
                fa.Basis = uA;
                fb.Basis = uB;
                normSq += ga.SumSquares() + gb.SumSquares();
                work[i] = (ga, gb, riA, riB, pA, pB);
            }
            double norm = Math.Sqrt(normSq);
            double factor = clip > 0 && norm > clip ? clip / norm : 1;
            var result = new (Mat, Mat)[n];
            for (int i = 0; i < n; i++)
            {
                int t = _t.GetValueOrDefault(i);
                double b1 = Beta1 * (1 - Math.Pow(Beta1, t)) / (1 - Math.Pow(Beta1, t + 1));
                double b2 = Beta2 * (1 - Math.Pow(Beta2, t)) / (1 - Math.Pow(Beta2, t + 1));
                var w = work[i];
                var mA = Moment(Get(i, 'A'), w.ga * factor, w.pA, b1, b2);
                var mB = Moment(Get(i, 'B'), w.gb * factor, w.pB, b1, b2);
                var aHat = A[i].T();
                var upA = mA * w.riB.T();
                var upB = mB * w.riA.T();
                if (aHp[i].wd > 0) upA = upA + aHat * aHp[i].wd;
                if (bHp[i].wd > 0) upB = upB + B[i] * bHp[i].wd;
                var dA = upA * -aHp[i].lr;
                var dB = upB * -bHp[i].lr;
                if (balance)
                {
                    double nA = (aHat + dA).Norm() + 1e-6, nB = (B[i] + dB).Norm() + 1e-6, bal = Math.Sqrt(nA * nB);
                    dA = dA * (bal / nA) + aHat * (bal / nA - 1);
                    dB = dB * (bal / nB) + B[i] * (bal / nB - 1);
                }
                result[i] = (A[i] + dA.T(), B[i] + dB);
                _t[i] = t + 1;
            }
            return result;
        }

        private Mat Moment(F f, Mat g, Mat p, double b1, double b2)
        {
            int r = g.Cols;
            var second = (g.T() * g / g.Rows).Sym();
            var vOld = f.V ?? new Mat(r, r);
            var vT = (p * vOld * p.T()).Sym();
            double e = 0;
            if (escape)
            {
                var eo = vOld.SymEig().values;
                var en = vT.SymEig().values;
                double eigDiff = Math.Max(eo.Zip(en, (x, y) => x - y).Max(), 0);
                double traceDiff = 0;
                for (int k = 0; k < r; k++) traceDiff += vOld[k, k] - vT[k, k];
                e = b2 * (Math.Min(eigDiff, Math.Max(traceDiff, 0)) + f.Escape);
                f.Escape = e;
            }
            var v = (second * (1 - b2) + vT * b2).Sym();
            var qir = v.SymFunction(w => 1 / (Math.Sqrt(Math.Max(w, 0) + e) + eps));
            var u = g * qir;
            var m = u * (1 - b1) + (f.M ?? new Mat(g.Rows, r)) * p.T() * b1;
            f.V = v;
            f.M = m;
            if (cap > 0) return m / Math.Max(1, m.Rms() / cap);
            return m;
        }
    }

    public static TheoryData<double, double, double, bool, bool> RiteSettings => new()
    {
        { 1.0, 1.0, 0.0, false, false },  // the port's defaults
        { 0.05, 0.0, 0.0, false, false }, // the global clip is active every step
        { 1.0, 0.12, 0.0, false, false }, // update skipping zeroes some factors
        { 0.0, 0.0, 0.05, true, true },   // capping, escape mass, balancing
    };

    [Theory, MemberData(nameof(RiteSettings))]
    public void LoraRiteMatchesTheFloat64Rule(double clip, double skip, double cap, bool escape, bool balance)
    {
        using var scope = NewDisposeScope();
        using var x = new Setup(6, trainA: true);
        const double eps = 1e-6;
        using var opt = optim.LoraRite(x.Groups(true), x.Pairs, beta1: Beta1, beta2: Beta2, eps: eps, clip_unmagnified_grad: clip,
            update_skipping: skip, update_capping: cap, apply_escape: escape, balance_param: balance);
        var reference = new LoraRiteRef(eps, clip, skip, cap, escape, balance);
        var refExtra = new HfAdamRef(Lr1, 0, eps);
        var rng = new Random(7);
        int skipped = 0;
        for (int step = 1; step <= 3; step++)
        {
            var gA = new Mat[2];
            var gB = new Mat[2];
            for (int i = 0; i < 2; i++)
            {
                var g = Mat.Random(rng, x.B[i].Rows, x.A[i].Cols, 0.3);
                gA[i] = x.B[i].T() * g * x.S[i];
                gB[i] = g * x.A[i].T() * x.S[i];
                x.PA[i].grad = gA[i].ToTensor();
                x.PB[i].grad = gB[i].ToTensor();
                if (skip > 0) skipped += (gA[i].T() * x.B[i].Qr().R.Inverse()).Rms() > skip ? 1 : 0;
            }
            var expected = reference.Step(x.A, x.B, gA, gB, new[] { (Lr0, Wd0), (Lr0, Wd0) }, new[] { (Lr0, Wd0), (Lr1, 0.0) });
            var gE = RandomGrad(rng, x.Extra, 1);
            x.PExtra.grad = gE.ToTensor().reshape(5);
            opt.step();
            for (int i = 0; i < 2; i++)
            {
                (x.A[i], x.B[i]) = expected[i];
                Mat.AssertClose(x.A[i], Mat.From(x.PA[i]), Tol, $"step {step} A{i}");
                Mat.AssertClose(x.B[i], Mat.From(x.PB[i]), Tol, $"step {step} B{i}");
            }
            x.Extra = refExtra.Step(x.Extra, gE);
            Mat.AssertClose(x.Extra, new Mat(1, 5, x.PExtra.ToDoubleArray()), Tol, $"step {step} extra");
        }
        if (skip > 0 && skip < 1) Assert.InRange(skipped, 1, 5); // the setting really skipped some (not all) A updates
        var st = opt.state(x.PA[0]);
        Assert.Equal(new long[] { 3, 3 }, st.Tensors["rite_v"].shape);
        Assert.Equal(new long[] { 7, 3 }, st.Tensors["rite_m"].shape);
        Assert.Equal(3.0, st.Scalars["step"]);
    }

    [Fact]
    public void LoraRiteUpdateIsInvariantToTheFactorization()
    {
        // A → M·A, B → B·M⁻¹ leaves ΔW = s·B·A unchanged; so must the first step's change of ΔW (gradients follow the chain rule).
        using var scope = NewDisposeScope();
        var rng = new Random(31);
        var a = Mat.Random(rng, 3, 7);
        var b = Mat.Random(rng, 5, 3, 0.5);
        var mix = Mat.Random(rng, 3, 3) + Mat.Eye(3) * 2;
        var g = Mat.Random(rng, 5, 7, 0.3);
        Mat DeltaAfterStep(Mat a0, Mat b0)
        {
            using var pa = new nn.Parameter(a0.ToTensor());
            using var pb = new nn.Parameter(b0.ToTensor());
            using var opt = optim.LoraRite(new[] { new optim.ParamGroup(new[] { pa, pb }) }, new[] { new optim.LoraPair(pa, pb, 1.0) }, lr: 1e-4,
                clip_unmagnified_grad: 0, update_skipping: 0);
            pa.grad = (b0.T() * g).ToTensor();
            pb.grad = (g * a0.T()).ToTensor();
            opt.step();
            return Mat.From(pb) * Mat.From(pa) - b0 * a0;
        }
        var d1 = DeltaAfterStep(a, b);
        var d2 = DeltaAfterStep(mix * a, b * mix.Inverse());
        Assert.True(d1.Norm() > 1e-5);
        // Equal to first order in lr (the lr²·ΔB·ΔA term differs between factorizations).
        var rel = (d1 - d2).Norm() / d1.Norm();
        Assert.True(rel < 1e-3, $"ΔW after one step differs between factorizations by {rel:E2} (relative)");
        // Plain Adam on the factors is not invariant: the same comparison fails for it.
        Mat AdamDelta(Mat a0, Mat b0)
        {
            using var pa = new nn.Parameter(a0.ToTensor());
            using var pb = new nn.Parameter(b0.ToTensor());
            using var opt = optim.AdamW(new[] { pa, pb }, lr: 1e-4);
            pa.grad = (b0.T() * g).ToTensor();
            pb.grad = (g * a0.T()).ToTensor();
            opt.step();
            return Mat.From(pb) * Mat.From(pa) - b0 * a0;
        }
        var e1 = AdamDelta(a, b);
        var e2 = AdamDelta(mix * a, b * mix.Inverse());
        Assert.True((e1 - e2).Norm() / e1.Norm() > 0.05, "the check cannot tell an invariant optimizer from Adam");
    }
}
