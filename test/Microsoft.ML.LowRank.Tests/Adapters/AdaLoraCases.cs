using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.AdaLora;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>
/// AdaLoRA in float64 loops (methods.md §3.3, PEFT's SVDLinear): y = x·Wᵀ + b + s·(x·(A⊙E)ᵀ)·Bᵀ with
/// s = α / (r_init + 1e-5), and the analytic gradients: h = x·(A⊙E)ᵀ, dB = s·gyᵀ·h, gh = s·gy·B,
/// G = ghᵀ·x (the gradient of A⊙E), dA = G⊙E, dE_j = Σ_k G_jk·A_jk, dx = gy·W + gh·(A⊙E).
/// </summary>
public sealed class AdaLoraReference : AdapterReference
{
    private static IEnumerable<(string a, double s, int r)> Active(AdapterLayer layer)
    {
        var ada = (AdaLoraLayer)layer;
        foreach (var a in layer.ActiveAdapters)
            if (layer.HasAdapter(a))
            {
                // The formula's scaling, written independently of the layer's code: alpha / (r_init + 1e-5).
                double alpha = ada.Alpha(a) > 0 ? ada.Alpha(a) : ada.RankNum(a);
                yield return (a, alpha / (ada.RankNum(a) + 1e-5), ada.Rank(a));
            }
    }

    private static double[] AE(double[] A, double[] E, int r, int n)
    {
        var ae = new double[r * n];
        for (int j = 0; j < r; j++)
            for (int k = 0; k < n; k++) ae[j * n + k] = A[j * n + k] * E[j];
        return ae;
    }

    public override double[] Forward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
    {
        var y = BaseForward(layer, p, x, rows);
        int n = (int)layer.InFeatures, m = (int)layer.OutFeatures;
        foreach (var (a, s, r) in Active(layer))
        {
            var ae = AE(p[$"lora_A.{a}"], p[$"lora_E.{a}"], r, n);
            var B = p[$"lora_B.{a}"];
            for (int i = 0; i < rows; i++)
            {
                var h = new double[r];
                for (int j = 0; j < r; j++)
                    for (int k = 0; k < n; k++) h[j] += ae[j * n + k] * x[i * n + k];
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
            var A = p[$"lora_A.{a}"];
            var E = p[$"lora_E.{a}"];
            var B = p[$"lora_B.{a}"];
            var ae = AE(A, E, r, n);
            var G = new double[r * n];
            var dB = new double[m * r];
            for (int i = 0; i < rows; i++)
            {
                var h = new double[r];
                for (int j = 0; j < r; j++)
                    for (int k = 0; k < n; k++) h[j] += ae[j * n + k] * x[i * n + k];
                var gh = new double[r];
                for (int j = 0; j < r; j++)
                    for (int o = 0; o < m; o++) gh[j] += s * gy[i * m + o] * B[o * r + j];
                for (int o = 0; o < m; o++)
                    for (int j = 0; j < r; j++) dB[o * r + j] += s * gy[i * m + o] * h[j];
                for (int j = 0; j < r; j++)
                    for (int k = 0; k < n; k++)
                    {
                        G[j * n + k] += gh[j] * x[i * n + k];
                        dx[i * n + k] += gh[j] * ae[j * n + k];
                    }
            }
            var dA = new double[r * n];
            var dE = new double[r];
            for (int j = 0; j < r; j++)
                for (int k = 0; k < n; k++)
                {
                    dA[j * n + k] = G[j * n + k] * E[j];
                    dE[j] += G[j * n + k] * A[j * n + k];
                }
            dp[$"lora_A.{a}"] = dA;
            dp[$"lora_E.{a}"] = dE;
            dp[$"lora_B.{a}"] = dB;
        }
        foreach (var name in wrt) Assert.True(dp.ContainsKey(name), $"the AdaLoRA reference has no gradient for trainable '{name}'");
        return (dx, dp);
    }
}

/// <summary>The AdaLoRA configurations run through <see cref="AdapterInvariants"/>.</summary>
public static class AdaLoraCases
{
    private static readonly AdaLoraReference s_ref = new();

    public static readonly AdapterCase AdaLora = new()
    {
        Name = "adalora",
        Options = () => new AdaLoraOptions { InitR = 6, TargetR = 4, LoraAlpha = 8, LoraDropout = 0.1 },
        Reference = s_ref,
    };

    public static readonly AdapterCase AdaLoraAllLinear = new()
    {
        Name = "adalora_all_linear",
        Options = () => new AdaLoraOptions { InitR = 4, TargetR = 2, LoraAlpha = 32, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase[] All = { AdaLora, AdaLoraAllLinear };

    public static AdapterCase Get(string name) => All.Single(c => c.Name == name);

    public static TheoryData<string, string> Matrix()
    {
        var d = new TheoryData<string, string>();
        foreach (var c in All)
            foreach (var f in AdapterInvariants.Fixtures) d.Add(c.Name, f);
        return d;
    }
}

/// <summary>design.md's six invariants for AdaLoRA (default targets and all-linear) on gpt2 (Conv1D), llama_gqa and
/// bert_cls. No exceptions: E starts at 0, so the init is an exact no-op.</summary>
public class AdaLoraInvariantTests
{
    public static TheoryData<string, string> Matrix => AdaLoraCases.Matrix();

    [Theory, MemberData(nameof(Matrix))]
    public void InitEqualsBase(string method, string fixture) => AdapterInvariants.InitEqualsBase(AdaLoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void MergeEqualsUnmergedAndUnmergeRestores(string method, string fixture) => AdapterInvariants.MergeEqualsUnmerged(AdaLoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void DisableEqualsBase(string method, string fixture) => AdapterInvariants.DisableEqualsBase(AdaLoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void TrainingStepChangesOnlyAdapterParameters(string method, string fixture) => AdapterInvariants.TrainingStepTouchesOnlyAdapters(AdaLoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void SaveLoadGivesIdenticalOutputs(string method, string fixture) => AdapterInvariants.SaveLoadRoundTrip(AdaLoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void LayerForwardAndGradientsMatchFloat64Formula(string method, string fixture) => AdapterInvariants.LayerMatchesFormula(AdaLoraCases.Get(method), fixture);
}
