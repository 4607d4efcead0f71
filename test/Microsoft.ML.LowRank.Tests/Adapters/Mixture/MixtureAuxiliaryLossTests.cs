using Microsoft.ML.LowRank.Adapters.Mixture;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters.Mixture;

/// <summary>
/// Each auxiliary loss (value and gradient with respect to the router logits or expert outputs) against its reference
/// formula written here in float64 loops; the all-masked case gives 0, not NaN.
/// </summary>
public class MixtureAuxiliaryLossTests
{
    private const int E = 4, K = 2;

    private static double[] Probs(double[] logits, int row) => MoeMath.Softmax(MoeMath.Row(logits, row, E));

    /// <summary>A record built from logits [M, E] with top-k selection; gates are the dense softmax.</summary>
    private static RouterRecord Record(Tensor logits, double[]? mask = null, string group = "g", long batch = 0, long seq = 0, bool rowLevel = false,
        Tensor? outputs = null, long[]? outputExperts = null, long[]? outputRows = null)
    {
        long m = logits.size(0);
        var probs = nn.functional.softmax(logits, -1);
        var pd = probs.detach().ToDoubleArray();
        var sel = new double[m * E];
        for (int i = 0; i < m; i++)
        {
            var (_, s) = MoeMath.Gate(MoeMath.Row(pd, i, E), Microsoft.ML.LowRank.Adapters.Mixture.GatingMode.TopK, K, 1, true);
            for (int e = 0; e < E; e++) sel[i * E + e] = s[e] ? 1 : 0;
        }
        var selT = tensor(sel, new[] { m, (long)E }, ScalarType.Float64);
        return new RouterRecord
        {
            Path = group + ".proj", Group = group, Experts = E, TopK = K, RowLevel = rowLevel, Batch = batch, Seq = seq,
            Logits = logits, Probs = probs, Selected = selT, Dispatched = selT, Gates = probs,
            RowMask = mask is null ? null : tensor(mask, new[] { m }, ScalarType.Float64),
            Outputs = outputs, OutputExperts = outputExperts is null ? null : tensor(outputExperts), OutputRows = outputRows is null ? null : tensor(outputRows),
        };
    }

    private static double[] Randn(int n, ulong seed, double scale = 1)
    {
        using var g = new Generator(seed);
        return (randn(new long[] { n }, ScalarType.Float64, generator: g) * scale).ToDoubleArray();
    }

    /// <summary>Value and gradient of a library loss of leaf tensors against a float64 formula of their values.</summary>
    private static void Check(string what, double[][] leaves, long[][] shapes, Func<Tensor[], Tensor> library, Func<double[][], double> formula, double tol = 1e-8)
    {
        using var scope = NewDisposeScope();
        var ts = leaves.Select((d, i) => tensor(d, shapes[i], ScalarType.Float64).requires_grad_()).ToArray();
        var loss = library(ts);
        var expected = formula(leaves);
        AdapterInvariants.AssertClose(new[] { expected }, new[] { loss.ToDouble() }, tol, what + " value");
        if (loss.requires_grad) loss.backward();
        const double h = 1e-6;
        for (int li = 0; li < leaves.Length; li++)
        {
            var num = new double[leaves[li].Length];
            for (int j = 0; j < num.Length; j++)
            {
                var v = leaves[li][j];
                leaves[li][j] = v + h; var lp = formula(leaves);
                leaves[li][j] = v - h; var lm = formula(leaves);
                leaves[li][j] = v;
                num[j] = (lp - lm) / (2 * h);
            }
            var g = ts[li].grad?.ToDoubleArray() ?? new double[num.Length];
            AdapterInvariants.AssertClose(num, g, 1e-6, $"{what} gradient of leaf {li}");
        }
    }

    private static (double[] sel, double[] p) Selection(double[] logits, int m)
    {
        var sel = new double[m * E];
        var p = new double[m * E];
        for (int i = 0; i < m; i++)
        {
            var pr = Probs(logits, i);
            var (_, s) = MoeMath.Gate(pr, Microsoft.ML.LowRank.Adapters.Mixture.GatingMode.TopK, K, 1, true);
            for (int e = 0; e < E; e++) { sel[i * E + e] = s[e] ? 1 : 0; p[i * E + e] = pr[e]; }
        }
        return (sel, p);
    }

    [Fact]
    public void MixtralLoadBalanceConcatenatesRoutersAndMasksPadding()
    {
        var mask1 = new double[] { 1, 1, 0, 1, 1, 0 };
        var mask2 = new double[] { 1, 0, 1, 1, 1, 1 };
        Check("mixtral", new[] { Randn(24, 1), Randn(24, 2) }, new[] { new long[] { 6, E }, new long[] { 6, E } },
            ts => MixtureAuxiliaryLosses.MixtralLoadBalance(new[] { Record(ts[0], mask1), Record(ts[1], mask2) }),
            l =>
            {
                double den = 0;
                var f = new double[E];
                var pm = new double[E];
                foreach (var (logits, mask) in new[] { (l[0], mask1), (l[1], mask2) })
                {
                    var (sel, p) = Selection(logits, 6);
                    for (int i = 0; i < 6; i++)
                    {
                        den += mask[i];
                        for (int e = 0; e < E; e++) { f[e] += mask[i] * sel[i * E + e]; pm[e] += mask[i] * p[i * E + e]; }
                    }
                }
                return E * Enumerable.Range(0, E).Sum(e => f[e] / den * (pm[e] / den));
            });
    }

    [Fact]
    public void SwitchLoadBalanceUsesTopOneFractions()
    {
        Check("switch", new[] { Randn(32, 3) }, new[] { new long[] { 8, E } },
            ts => MixtureAuxiliaryLosses.SwitchLoadBalance(new[] { Record(ts[0]) }),
            l =>
            {
                var f = new double[E];
                var pm = new double[E];
                for (int i = 0; i < 8; i++)
                {
                    var p = Probs(l[0], i);
                    f[MoeMath.Order(p)[0]] += 1.0 / 8;
                    for (int e = 0; e < E; e++) pm[e] += p[e] / 8;
                }
                return E * Enumerable.Range(0, E).Sum(e => f[e] * pm[e]);
            });
    }

    [Fact]
    public void MolaLoadBalanceIsComputedPerModuleGroupOverAllSelections()
    {
        Check("mola", new[] { Randn(20, 4), Randn(20, 5), Randn(20, 6) }, new[] { new long[] { 5, E }, new long[] { 5, E }, new long[] { 5, E } },
            ts => MixtureAuxiliaryLosses.Compute(AuxiliaryLossKind.MolaLoadBalance, new MixtureOfLoraExpertsOptions(),
                new[] { Record(ts[0], group: "attn"), Record(ts[1], group: "attn"), Record(ts[2], group: "mlp") }, null),
            l =>
            {
                double Group(params double[][] members)
                {
                    var counts = new double[E];
                    var pm = new double[E];
                    int rows = 0;
                    foreach (var logits in members)
                    {
                        var (sel, p) = Selection(logits, 5);
                        for (int i = 0; i < 5; i++, rows++)
                            for (int e = 0; e < E; e++) { counts[e] += sel[i * E + e]; pm[e] += p[i * E + e]; }
                    }
                    var total = counts.Sum();
                    return E * Enumerable.Range(0, E).Sum(e => counts[e] / total * (pm[e] / rows));
                }
                return Group(l[0], l[1]) + Group(l[2]);
            });
    }

    [Fact]
    public void PescLoadBalanceIsTheConstantEOverK()
    {
        // PESC's copy of the early HF-Mixtral loss averages the renormalised top-k weights (always 1/k): E/k, no gradient.
        Check("pesc", new[] { Randn(24, 7) }, new[] { new long[] { 6, E } },
            ts => MixtureAuxiliaryLosses.PescLoadBalance(new[] { Record(ts[0]) }),
            _ => (double)E / K);
    }

    [Fact]
    public void ZLossIsTheMaskedMeanOfSquaredLogSumExp()
    {
        var mask = new double[] { 1, 0, 1, 1, 0 };
        Check("z", new[] { Randn(20, 8, 3) }, new[] { new long[] { 5, E } },
            ts => MixtureAuxiliaryLosses.ZLoss(new[] { Record(ts[0], mask) }),
            l =>
            {
                double s = 0, n = 0;
                for (int i = 0; i < 5; i++)
                {
                    var row = MoeMath.Row(l[0], i, E);
                    var mx = row.Max();
                    var lse = mx + Math.Log(row.Sum(v => Math.Exp(v - mx)));
                    s += mask[i] * lse * lse;
                    n += mask[i];
                }
                return s / n;
            });
    }

    [Fact]
    public void LocalizedBalancingConstraintWeightsTheTaskTypesHalves()
    {
        // Batch 3 × seq 2; types 1, 0, 1; δ = 0.3.
        var types = new long[] { 1, 0, 1 };
        const double delta = 0.3;
        Check("lbc", new[] { Randn(24, 9) }, new[] { new long[] { 6, E } },
            ts => MixtureAuxiliaryLosses.LocalizedBalance(Record(ts[0], batch: 3, seq: 2), tensor(types), delta),
            l =>
            {
                var v = new List<double>();
                for (int b = 0; b < 3; b++)
                    for (int e = 0; e < E; e++)
                    {
                        double q = Probs(l[0], 2 * b)[e] + Probs(l[0], 2 * b + 1)[e];
                        bool match = (e < E / 2) == (types[b] == 1);
                        v.Add(q * (match ? 1 + delta : 1 - delta));
                    }
                var mean = v.Average();
                var var = v.Sum(x => (x - mean) * (x - mean)) / (v.Count - 1);
                return var / (mean * mean + 1e-10);
            });
    }

    [Fact]
    public void ContrastiveLossPullsTogetherOutputsOfTheSameExpert()
    {
        // 7 outputs of dimension 3 from experts [0, 1, 0, 2, 1, 0, 2] at rows [3, 0, 1, 2, 2, 0, 1]; max 6 samples (row order).
        var experts = new long[] { 0, 1, 0, 2, 1, 0, 2 };
        var rows = new long[] { 3, 0, 1, 2, 2, 0, 1 };
        const double tau = 0.5;
        var logits0 = tensor(Randn(16, 10), new long[] { 4, E }, ScalarType.Float64);
        Check("contrastive", new[] { Randn(21, 11) }, new[] { new long[] { 7, 3 } },
            ts => MixtureAuxiliaryLosses.Contrastive(Record(logits0, outputs: ts[0], outputExperts: experts, outputRows: rows), tau, 6),
            l =>
            {
                var order = Enumerable.Range(0, 7).OrderBy(i => rows[i]).ThenBy(i => i).Take(6).ToArray();
                var z = order.Select(i =>
                {
                    var v = MoeMath.Row(l[0], i, 3);
                    var n = Math.Sqrt(v.Sum(x => x * x));
                    return v.Select(x => x / n).ToArray();
                }).ToArray();
                var ex = order.Select(i => experts[i]).ToArray();
                double total = 0;
                int anchors = 0;
                for (int a = 0; a < 6; a++)
                {
                    var sims = Enumerable.Range(0, 6).Select(j => z[a].Zip(z[j], (p, q) => p * q).Sum() / tau).ToArray();
                    var others = Enumerable.Range(0, 6).Where(j => j != a).ToArray();
                    var mx = others.Max(j => sims[j]);
                    var lse = mx + Math.Log(others.Sum(j => Math.Exp(sims[j] - mx)));
                    var pos = others.Where(j => ex[j] == ex[a]).ToArray();
                    if (pos.Length == 0) continue;
                    total += -pos.Average(j => sims[j] - lse);
                    anchors++;
                }
                return total / anchors;
            });
    }

    [Fact]
    public void GateBalanceIsMinusTheSumOfLogMeanGates()
    {
        Check("gate balance", new[] { Randn(20, 12) }, new[] { new long[] { 5, E } },
            ts => MixtureAuxiliaryLosses.GateBalance(Record(ts[0])),
            l => -Enumerable.Range(0, E).Sum(e => Math.Log(Enumerable.Range(0, 5).Average(i => Probs(l[0], i)[e]) + 1e-9)));
    }

    [Fact]
    public void RouterCrossEntropySupervisesTheSequenceRouter()
    {
        var labels = new long[] { 3, 0, 2 };
        Check("router ce", new[] { Randn(12, 13) }, new[] { new long[] { 3, E } },
            ts => MixtureAuxiliaryLosses.RouterCrossEntropy(Record(ts[0], rowLevel: true), tensor(labels)),
            l => Enumerable.Range(0, 3).Average(i => -Math.Log(Probs(l[0], i)[labels[i]])));
    }

    [Fact]
    public void AllMaskedRowsGiveZeroNotNaN()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(Randn(12, 14), new long[] { 3, E }, ScalarType.Float64).requires_grad_();
        var zeros3 = new double[3];
        foreach (var kind in new[] { AuxiliaryLossKind.MixtralLoadBalance, AuxiliaryLossKind.SwitchLoadBalance, AuxiliaryLossKind.ZLoss })
        {
            var l = MixtureAuxiliaryLosses.Compute(kind, new MixtureOfLoraExpertsOptions(), new[] { Record(logits, zeros3) }, null);
            Assert.Equal(0.0, l.ToDouble());
            l.backward();
            Assert.True(logits.grad!.isfinite().all().item<bool>(), $"{kind}: non-finite gradient");
            Assert.Equal(0.0, logits.grad!.abs().sum().ToDouble());
            logits.grad = null;
        }
        // Gate balance over masked rows: finite (q = 0 everywhere, −E·log 1e-9).
        var gb = MixtureAuxiliaryLosses.GateBalance(Record(logits, zeros3)).ToDouble();
        Assert.Equal(-E * Math.Log(1e-9), gb, 6);
    }

    [Fact]
    public void TotalAppliesEachCoefficientAndSkipsZeroOnes()
    {
        using var scope = NewDisposeScope();
        var logits = tensor(Randn(16, 15), new long[] { 4, E }, ScalarType.Float64);
        var recs = new[] { Record(logits) };
        var o = new MixtureOfLoraExpertsOptions
        {
            AuxLosses = new[] { new AuxiliaryLoss(AuxiliaryLossKind.MixtralLoadBalance, 0.25), new AuxiliaryLoss(AuxiliaryLossKind.ZLoss, 0.5), new AuxiliaryLoss(AuxiliaryLossKind.LocalizedBalance, 0) },
        };
        var total = MixtureAuxiliaryLosses.Total(o, recs, null)!.ToDouble();
        var expected = 0.25 * MixtureAuxiliaryLosses.MixtralLoadBalance(recs).ToDouble() + 0.5 * MixtureAuxiliaryLosses.ZLoss(recs).ToDouble();
        Assert.Equal(expected, total, 12);
        Assert.Null(MixtureAuxiliaryLosses.Total(new MixtureOfLoraExpertsOptions(), recs, null));
    }
}
