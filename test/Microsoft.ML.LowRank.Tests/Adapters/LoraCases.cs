using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>
/// LoRA in float64 loops: y = x·Wᵀ + b + Σ_active s·(x·Aᵀ)·Bᵀ, with analytic gradients
/// dB = s·gyᵀ·(x·Aᵀ), dA = (s·gy·B)ᵀ·x, dx = gy·W + (s·gy·B)·A.
/// </summary>
public sealed class LoraReference : AdapterReference
{
    private static IEnumerable<(string a, double s, int r)> Active(AdapterLayer layer)
    {
        var lora = (LoraLayer)layer;
        foreach (var a in layer.ActiveAdapters)
            if (layer.HasAdapter(a)) yield return (a, lora.Scaling(a), lora.Rank(a));
    }

    public override double[] Forward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
    {
        var y = BaseForward(layer, p, x, rows);
        int n = (int)layer.InFeatures, m = (int)layer.OutFeatures;
        foreach (var (a, s, r) in Active(layer))
        {
            var A = p[$"lora_A.{a}.weight"];
            var B = p[$"lora_B.{a}.weight"];
            for (int i = 0; i < rows; i++)
            {
                var h = new double[r];
                for (int j = 0; j < r; j++)
                    for (int k = 0; k < n; k++) h[j] += A[j * n + k] * x[i * n + k];
                for (int o = 0; o < m; o++)
                {
                    double t = 0;
                    for (int j = 0; j < r; j++) t += B[o * r + j] * h[j];
                    y[i * m + o] += s * t;
                }
            }
        }
        return y;
    }

    public override (double[] dx, Dictionary<string, double[]> dp) Gradients(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p,
        double[] x, int rows, double[] gy, IReadOnlyCollection<string> wrt)
    {
        int n = (int)layer.InFeatures, m = (int)layer.OutFeatures;
        var w = p["base_layer.weight"];
        var dx = new double[rows * n];
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < n; k++)
            {
                double t = 0;
                for (int o = 0; o < m; o++) t += gy[i * m + o] * (layer.FanInFanOut ? w[k * m + o] : w[o * n + k]);
                dx[i * n + k] = t;
            }
        var dp = new Dictionary<string, double[]>();
        foreach (var (a, s, r) in Active(layer))
        {
            var A = p[$"lora_A.{a}.weight"];
            var B = p[$"lora_B.{a}.weight"];
            var dA = new double[r * n];
            var dB = new double[m * r];
            for (int i = 0; i < rows; i++)
            {
                var h = new double[r];
                for (int j = 0; j < r; j++)
                    for (int k = 0; k < n; k++) h[j] += A[j * n + k] * x[i * n + k];
                var gh = new double[r];
                for (int j = 0; j < r; j++)
                    for (int o = 0; o < m; o++) gh[j] += s * gy[i * m + o] * B[o * r + j];
                for (int o = 0; o < m; o++)
                    for (int j = 0; j < r; j++) dB[o * r + j] += s * gy[i * m + o] * h[j];
                for (int j = 0; j < r; j++)
                    for (int k = 0; k < n; k++)
                    {
                        dA[j * n + k] += gh[j] * x[i * n + k];
                        dx[i * n + k] += gh[j] * A[j * n + k];
                    }
            }
            dp[$"lora_A.{a}.weight"] = dA;
            dp[$"lora_B.{a}.weight"] = dB;
        }
        foreach (var name in wrt) Assert.True(dp.ContainsKey(name), $"the LoRA reference has no gradient for trainable '{name}'");
        return (dx, dp);
    }
}

/// <summary>The LoRA configurations run through <see cref="AdapterInvariants"/>.</summary>
public static class LoraCases
{
    private static readonly LoraReference s_ref = new();

    public static readonly AdapterCase Lora = new()
    {
        Name = "lora",
        Options = () => new LoraOptions { R = 4, LoraAlpha = 8, LoraDropout = 0.1 },
        Reference = s_ref,
    };

    public static readonly AdapterCase RsLora = new()
    {
        Name = "rslora",
        Options = () => new LoraOptions { R = 8, LoraAlpha = 16, UseRsLora = true, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase Gaussian = new()
    {
        Name = "gaussian",
        Options = () => new LoraOptions { R = 4, LoraAlpha = 4, InitLoraWeights = LoraInitialization.Gaussian, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase Pissa = new()
    {
        Name = "pissa",
        Options = () => new LoraOptions { R = 4, LoraAlpha = 8, InitLoraWeights = LoraInitialization.PiSSA, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
        MutatesBase = true,
        InitTolerance = 1e-5,
    };

    public static readonly AdapterCase PissaFast = new()
    {
        Name = "pissa_niter",
        Options = () => new LoraOptions { R = 4, LoraAlpha = 4, InitLoraWeights = LoraInitialization.PiSSA, PissaNiter = 4, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
        MutatesBase = true,
        InitTolerance = 1e-5,
    };

    public static readonly AdapterCase OLora = new()
    {
        Name = "olora",
        Options = () => new LoraOptions { R = 4, LoraAlpha = 8, InitLoraWeights = LoraInitialization.OLoRA, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
        MutatesBase = true,
        InitTolerance = 1e-5,
    };

    /// <summary>Two trained (perturbed) adapters combined with weights 0.7 / 0.3 by "cat"; the combination is active.</summary>
    public static readonly AdapterCase Weighted = new()
    {
        Name = "weighted_cat",
        Options = () => new LoraOptions { R = 4, LoraAlpha = 8 },
        Reference = s_ref,
        Build = model =>
        {
            var lm = LowRankModel.Create(model, new LoraOptions { R = 4, LoraAlpha = 8 });
            lm.AddAdapter("other", new LoraOptions { R = 2, LoraAlpha = 6, UseRsLora = true });
            AdapterInvariants.Perturb(lm, seed: 21);
            lm.SetAdapter("other");
            AdapterInvariants.Perturb(lm, seed: 22);
            lm.AddWeightedAdapter(new[] { "default", "other" }, new[] { 0.7, 0.3 }, "combined", LoraCombination.Cat);
            lm.SetAdapter("combined");
            return lm;
        },
        CheckInit = CheckWeightedIdentity,
    };

    public static readonly AdapterCase[] All = { Lora, RsLora, Gaussian, Pissa, PissaFast, OLora, Weighted };

    public static AdapterCase Get(string name) => All.Single(c => c.Name == name);

    public static TheoryData<string, string> Matrix()
    {
        var d = new TheoryData<string, string>();
        foreach (var c in All)
            foreach (var f in AdapterInvariants.Fixtures) d.Add(c.Name, f);
        return d;
    }

    /// <summary>
    /// The combined adapter's model equals a plain model whose adapted weights are W + 0.7·s₁B₁A₁ + 0.3·s₂B₂A₂ (computed
    /// here in float64 from the source adapters) and whose saved modules are original + Σ wᵢ(copyᵢ − original).
    /// </summary>
    private static void CheckWeightedIdentity(AdapterFixture f, LowRankModel lm, float[] baseOut)
    {
        using var scope = NewDisposeScope();
        var weights = new Dictionary<string, double> { ["default"] = 0.7, ["other"] = 0.3 };
        var sd = lm.GetBaseStateDict();
        var expected = new Dictionary<string, Tensor>(sd);
        foreach (var (path, layer) in lm.AdapterLayers())
        {
            var lora = (LoraLayer)layer;
            var w = layer.BaseWeight.to_type(ScalarType.Float64);
            if (layer.FanInFanOut) w = w.t();
            foreach (var (a, wt) in weights)
            {
                if (!lora.HasAdapter(a)) continue;
                var A = lora.LoraA(a).weight.to_type(ScalarType.Float64);
                var B = lora.LoraB(a).weight.to_type(ScalarType.Float64);
                w = w + B.matmul(A) * (wt * lora.Scaling(a));
            }
            expected[path + ".weight"] = (layer.FanInFanOut ? w.t() : w).to_type(ScalarType.Float32).contiguous();
        }
        foreach (var (path, m) in lm.AdapterModules())
        {
            if (m is not ModulesToSaveWrapper wrap) continue;
            foreach (var (n, orig) in wrap.OriginalModule.named_parameters())
            {
                var acc = orig.to_type(ScalarType.Float64);
                foreach (var (a, wt) in weights)
                    if (wrap.AdapterNames.Contains(a))
                        acc = acc + (wrap.Copy(a).get_parameter(n).to_type(ScalarType.Float64) - orig.to_type(ScalarType.Float64)) * wt;
                expected[path + "." + n] = acc.to_type(ScalarType.Float32);
            }
        }
        using var plain = f.LoadModel();
        plain.load_state_dict(expected);
        var want = f.Logits(plain);
        var got = f.Logits(lm);
        AdapterInvariants.AssertClose(want.Select(v => (double)v).ToList(), got.Select(v => (double)v).ToList(), 1e-5, $"weighted cat on {f}");
        // The combination is not a no-op.
        Assert.False(want.AsSpan().SequenceEqual(baseOut));
    }
}
