using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Dora;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>
/// DoRA (methods.md §3.1) in float64 loops, without dropout: V = W0 + s·B·A, n = ‖V‖_row (a constant for autograd),
/// k = m / n, y = k ⊙ (x·W0ᵀ + s·x·Aᵀ·Bᵀ) + b. Analytic gradients with n held constant:
/// dm_o = Σ gy_o·(u_o + s·l_o)/n_o, dB_oj = Σ gy_o·k_o·s·h_j, dA_jk = Σ (Σ_o gy_o·k_o·s·B_oj)·x_k, dx = (gy ⊙ k)·V.
/// </summary>
public sealed class DoraReference : AdapterReference
{
    private static IEnumerable<(string a, double s, int r)> Active(AdapterLayer layer)
    {
        var dora = (DoraLayer)layer;
        foreach (var a in layer.ActiveAdapters)
            if (layer.HasAdapter(a)) yield return (a, dora.Scaling(a), dora.Rank(a));
    }

    /// <summary>W0 in [out, in] layout from the stored weight.</summary>
    internal static double W(AdapterLayer layer, double[] w, long o, long k)
        => layer.FanInFanOut ? w[k * layer.OutFeatures + o] : w[o * layer.InFeatures + k];

    /// <summary>V = W0 + s·B·A [out, in] and its row norms.</summary>
    internal static (double[] v, double[] n) DirectionAndNorm(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, string a, double s, int r)
    {
        long n = layer.InFeatures, m = layer.OutFeatures;
        var w = p["base_layer.weight"];
        var A = p[$"lora_A.{a}.weight"];
        var B = p[$"lora_B.{a}.weight"];
        var v = new double[m * n];
        var norm = new double[m];
        for (long o = 0; o < m; o++)
        {
            double ss = 0;
            for (long k = 0; k < n; k++)
            {
                double ba = 0;
                for (int j = 0; j < r; j++) ba += B[o * r + j] * A[j * n + k];
                var val = W(layer, w, o, k) + s * ba;
                v[o * n + k] = val;
                ss += val * val;
            }
            norm[o] = Math.Sqrt(ss);
        }
        return (v, norm);
    }

    public override double[] Forward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
    {
        var y = BaseForward(layer, p, x, rows);
        long n = layer.InFeatures, m = layer.OutFeatures;
        var w = p["base_layer.weight"];
        foreach (var (a, s, r) in Active(layer))
        {
            var (v, norm) = DirectionAndNorm(layer, p, a, s, r);
            var mag = p[$"lora_magnitude_vector.{a}.weight"];
            for (int i = 0; i < rows; i++)
                for (long o = 0; o < m; o++)
                {
                    double u = 0, vx = 0;
                    for (long k = 0; k < n; k++)
                    {
                        u += x[i * n + k] * W(layer, w, o, k);
                        vx += x[i * n + k] * v[o * n + k];
                    }
                    // y already holds u + b: add k·(x·V) − u.
                    y[i * m + o] += mag[o] / norm[o] * vx - u;
                }
        }
        return y;
    }

    public override (double[] dx, Dictionary<string, double[]> dp) Gradients(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p,
        double[] x, int rows, double[] gy, IReadOnlyCollection<string> wrt)
    {
        long n = layer.InFeatures, m = layer.OutFeatures;
        var dx = new double[rows * n];
        var dp = new Dictionary<string, double[]>();
        var w = p["base_layer.weight"];
        var active = Active(layer).ToList();
        if (active.Count == 0)
        {
            for (int i = 0; i < rows; i++)
                for (long k = 0; k < n; k++)
                    for (long o = 0; o < m; o++) dx[i * n + k] += gy[i * m + o] * W(layer, w, o, k);
        }
        foreach (var (a, s, r) in active)
        {
            var (v, norm) = DirectionAndNorm(layer, p, a, s, r);
            var mag = p[$"lora_magnitude_vector.{a}.weight"];
            var A = p[$"lora_A.{a}.weight"];
            var B = p[$"lora_B.{a}.weight"];
            var dA = new double[r * n];
            var dB = new double[m * r];
            var dm = new double[m];
            for (int i = 0; i < rows; i++)
            {
                var h = new double[r];
                for (int j = 0; j < r; j++)
                    for (long k = 0; k < n; k++) h[j] += A[j * n + k] * x[i * n + k];
                var gh = new double[r];
                for (long o = 0; o < m; o++)
                {
                    double kk = mag[o] / norm[o], g = gy[i * m + o];
                    double u = 0, l = 0;
                    for (long k = 0; k < n; k++) u += x[i * n + k] * W(layer, w, o, k);
                    for (int j = 0; j < r; j++) l += B[o * r + j] * h[j];
                    dm[o] += g * (u + s * l) / norm[o];
                    for (int j = 0; j < r; j++)
                    {
                        dB[o * r + j] += g * kk * s * h[j];
                        gh[j] += g * kk * s * B[o * r + j];
                    }
                    for (long k = 0; k < n; k++) dx[i * n + k] += g * kk * v[o * n + k];
                }
                for (int j = 0; j < r; j++)
                    for (long k = 0; k < n; k++) dA[j * n + k] += gh[j] * x[i * n + k];
            }
            dp[$"lora_A.{a}.weight"] = dA;
            dp[$"lora_B.{a}.weight"] = dB;
            dp[$"lora_magnitude_vector.{a}.weight"] = dm;
        }
        foreach (var name in wrt) Assert.True(dp.ContainsKey(name), $"the DoRA reference has no gradient for trainable '{name}'");
        return (dx, dp);
    }
}

/// <summary>The DoRA configurations run through <see cref="AdapterInvariants"/> (no documented exceptions: DoRA's
/// init is a no-op and its merge is exact).</summary>
public static class DoraCases
{
    private static readonly DoraReference s_ref = new();

    public static readonly AdapterCase Dora = new()
    {
        Name = "dora",
        Options = () => new DoraOptions { R = 4, LoraAlpha = 8, LoraDropout = 0.1 },
        Reference = s_ref,
    };

    public static readonly AdapterCase DoraRsAllLinear = new()
    {
        Name = "dora_rslora_all_linear",
        Options = () => new DoraOptions { R = 2, LoraAlpha = 4, UseRsLora = true, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase[] All = { Dora, DoraRsAllLinear };

    public static AdapterCase Get(string name) => All.Single(c => c.Name == name);

    public static TheoryData<string, string> Matrix()
    {
        var d = new TheoryData<string, string>();
        foreach (var c in All)
            foreach (var f in AdapterInvariants.Fixtures) d.Add(c.Name, f);
        return d;
    }
}

/// <summary>design.md's six invariants for DoRA on the gpt2 (Conv1D), llama_gqa and bert_cls fixtures.</summary>
public class DoraInvariantTests
{
    public static TheoryData<string, string> Matrix => DoraCases.Matrix();

    [Theory, MemberData(nameof(Matrix))]
    public void InitEqualsBase(string method, string fixture) => AdapterInvariants.InitEqualsBase(DoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void MergeEqualsUnmergedAndUnmergeRestores(string method, string fixture) => AdapterInvariants.MergeEqualsUnmerged(DoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void DisableEqualsBase(string method, string fixture) => AdapterInvariants.DisableEqualsBase(DoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void TrainingStepChangesOnlyAdapterParameters(string method, string fixture) => AdapterInvariants.TrainingStepTouchesOnlyAdapters(DoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void SaveLoadGivesIdenticalOutputs(string method, string fixture) => AdapterInvariants.SaveLoadRoundTrip(DoraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void LayerForwardAndGradientsMatchFloat64Formula(string method, string fixture) => AdapterInvariants.LayerMatchesFormula(DoraCases.Get(method), fixture);
}

/// <summary>DoRA specifics: magnitude init, PEFT config and keys, exact unmerge, the dropout path, CLI counts, training.</summary>
public class DoraTests(ITestOutputHelper output)
{
    /// <summary>A float64 DoRA layer over a Linear (or GPT-2 Conv1D) with random base weights and a perturbed adapter.</summary>
    internal static DoraLayer Float64Layer(bool conv1d, double dropout, int r = 3, double alpha = 6, ulong seed = 5)
    {
        using var g = new Generator(seed);
        nn.Module baseLayer = conv1d ? new Conv1D(7, 5, dtype: ScalarType.Float64) : new Linear(7, 5, true, dtype: ScalarType.Float64);
        using (no_grad())
            foreach (var p in baseLayer.parameters())
            {
                p.copy_(randn(p.shape, ScalarType.Float64, generator: g));
                p.requires_grad = false; // frozen, as LowRankModel leaves it
            }
        var layer = new DoraLayer(baseLayer);
        layer.UpdateLayer("default", r, alpha, dropout, false, LoraInitialization.Default, new AdapterCreationContext { Generator = g });
        layer.SetActiveAdapters(new[] { "default" });
        using (no_grad())
        {
            layer.LoraB("default").weight.copy_(randn(new long[] { 5, r }, ScalarType.Float64, generator: g) * 0.5);
            layer.Magnitude("default").add_(randn(new long[] { 5 }, ScalarType.Float64, generator: g) * 0.3);
        }
        return layer;
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("bert_cls")]
    public void MagnitudeStartsAsTheRowNormsOfTheBaseWeight(string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = LowRankModel.Create(f.LoadModel(), new DoraOptions { R = 4 });
        int checkedLayers = 0;
        foreach (var (path, layer) in lm.AdapterLayers())
        {
            var dora = (DoraLayer)layer;
            var w = layer.BaseWeight.ToDoubleArray();
            var m = dora.Magnitude("default").ToDoubleArray();
            Assert.Equal(layer.OutFeatures, m.Length);
            for (long o = 0; o < layer.OutFeatures; o++)
            {
                double ss = 0;
                for (long k = 0; k < layer.InFeatures; k++) ss += Math.Pow(DoraReference.W(layer, w, o, k), 2);
                Assert.True(Math.Abs(Math.Sqrt(ss) - m[o]) <= 1e-6 * Math.Sqrt(ss), $"{path} row {o}: m {m[o]} vs ‖W0‖ {Math.Sqrt(ss)}");
            }
            Assert.Equal(fixture == "gpt2", layer.FanInFanOut);
            checkedLayers++;
        }
        Assert.Equal(ReparamTestSupport.DefaultTargetShapes(fixture).Count, checkedLayers);
    }

    [Fact]
    public void PeftConfigWithUseDoraLoadsAsDoraAndPlainLoraStaysLora()
    {
        var json = new DoraOptions { R = 16, LoraAlpha = 32, LoraDropout = 0.05, UseRsLora = true }.ToJson();
        var o = JsonNode.Parse(json)!.AsObject();
        Assert.Equal("LORA", (string?)o["peft_type"]);
        Assert.True(o["use_dora"]!.GetValue<bool>());
        Assert.Equal(16, o["r"]!.GetValue<int>());
        Assert.Equal(32, o["lora_alpha"]!.GetValue<double>());
        Assert.True(o["use_rslora"]!.GetValue<bool>());
        var back = Assert.IsType<DoraOptions>(LowRankAdapterOptions.FromJson(json));
        Assert.Equal(16, back.R);
        Assert.Equal(0.05, back.LoraDropout);
        Assert.True(back.UseRsLora);

        var loraJson = new LoraOptions { R = 4 }.ToJson();
        Assert.False(JsonNode.Parse(loraJson)!["use_dora"]!.GetValue<bool>());
        Assert.IsType<LoraOptions>(LowRankAdapterOptions.FromJson(loraJson));
        Assert.IsType<DoraOptions>(AdapterMethods.Create("dora"));
        // A config as PEFT writes it for LoraConfig(use_dora=True) (keys this library does not use are ignored).
        const string peft = """
            {"alpha_pattern": {}, "auto_mapping": null, "base_model_name_or_path": "m", "bias": "none", "fan_in_fan_out": false,
             "inference_mode": true, "init_lora_weights": true, "layer_replication": null, "layers_pattern": null,
             "layers_to_transform": null, "loftq_config": {}, "lora_alpha": 16, "lora_dropout": 0.05, "megatron_config": null,
             "megatron_core": "megatron.core", "modules_to_save": null, "peft_type": "LORA", "r": 8, "rank_pattern": {},
             "revision": null, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM", "use_dora": true, "use_rslora": false}
            """;
        var fromPeft = Assert.IsType<DoraOptions>(LowRankAdapterOptions.FromJson(peft));
        Assert.Equal(8, fromPeft.R);
        Assert.Equal(16, fromPeft.LoraAlpha);
        Assert.True(fromPeft.InferenceMode);
        Assert.Equal(new[] { "q_proj", "v_proj" }, fromPeft.TargetModules!.Names);
        Assert.IsType<LoraOptions>(LowRankAdapterOptions.FromJson(peft.Replace("\"use_dora\": true", "\"use_dora\": false")));
        var ex = Assert.Throws<NotSupportedException>(() => LowRankAdapterOptions.FromJson(new DoraOptions { InitLoraWeights = LoraInitialization.PiSSA }.ToJson()));
        Assert.Contains("DoRA", ex.Message);
    }

    [Fact]
    public void SavedFileUsesPeftsKeysWithTheMagnitudeUnderLoraMagnitudeVector()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("gpt2");
        using var lm = LowRankModel.Create(f.LoadModel(), new DoraOptions { R = 4 });
        var dir = Directory.CreateTempSubdirectory("lowrank-dora-").FullName;
        try
        {
            lm.Save(dir);
            using var file = SafetensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsName));
            var keys = file.Names.OrderBy(k => k, StringComparer.Ordinal).ToList();
            var expected = new List<string>();
            for (int l = 0; l < 2; l++)
                foreach (var k in new[] { "lora_A.weight", "lora_B.weight", "lora_magnitude_vector" })
                    expected.Add($"base_model.model.transformer.h.{l}.attn.c_attn.{k}");
            Assert.Equal(expected.OrderBy(k => k, StringComparer.Ordinal), keys);
            Assert.Equal(new long[] { 96 }, file.GetEntry("base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector").Shape);
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigName)))!;
            Assert.True(cfg["use_dora"]!.GetValue<bool>());
            Assert.True(cfg["fan_in_fan_out"]!.GetValue<bool>());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MergeIsTheFormulaAndUnmergeRestoresW0WithTheCachedNorm(bool conv1d)
    {
        using var scope = NewDisposeScope();
        // float64 layer: merge equals k ⊙ (W0 + ΔW) computed here in loops; unmerge gives W0 back to 1e-12.
        using (var layer = Float64Layer(conv1d, 0))
        {
            var p = layer.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter.ToDoubleArray());
            var (v, norm) = DoraReference.DirectionAndNorm(layer, p, "default", layer.Scaling("default"), layer.Rank("default"));
            var mag = p["lora_magnitude_vector.default.weight"];
            var w0 = layer.BaseWeight.clone();
            layer.Merge();
            var merged = layer.BaseWeight.ToDoubleArray();
            for (long o = 0; o < 5; o++)
                for (long k = 0; k < 7; k++)
                {
                    var want = mag[o] / norm[o] * v[o * 7 + k];
                    Assert.True(Math.Abs(want - DoraReference.W(layer, merged, o, k)) <= 1e-12 * Math.Max(1, Math.Abs(want)));
                }
            var cached = layer.CachedMergeNorm("default")!.ToDoubleArray();
            for (int o = 0; o < 5; o++) Assert.True(Math.Abs(cached[o] - norm[o]) <= 1e-12 * norm[o]);
            layer.Unmerge();
            Assert.Null(layer.CachedMergeNorm("default"));
            Assert.True(ReparamTestSupport.MaxAbsDiff(w0, layer.BaseWeight) <= 1e-12);
        }
        // float32 fixture layers (after perturbation): unmerge lands within float32 rounding of W0.
        var f = new AdapterFixture(conv1d ? "gpt2" : "llama");
        using var lm = LowRankModel.Create(f.LoadModel(), new DoraOptions { R = 4, TargetModules = ModuleSelector.AllLinear });
        AdapterInvariants.Perturb(lm);
        var before = lm.AdapterLayers().Select(l => l.layer.BaseWeight.clone()).ToList();
        lm.Merge();
        lm.Unmerge();
        var after = lm.AdapterLayers().Select(l => l.layer.BaseWeight).ToList();
        long elements = 0, identical = 0;
        double worst = 0;
        for (int i = 0; i < before.Count; i++)
        {
            var a = before[i].ToArray<float>();
            var b = after[i].ToArray<float>();
            // Relative to the largest |W0| of the matrix: float32 rounding of the merged weight is ~6e-8 of it.
            double scale = a.Max(v => Math.Abs((double)v));
            for (int j = 0; j < a.Length; j++)
            {
                elements++;
                if (a[j] == b[j]) identical++;
                worst = Math.Max(worst, Math.Abs((double)a[j] - b[j]) / scale);
            }
        }
        output.WriteLine($"DoRA float32 unmerge ({f}): {identical}/{elements} weights bit-identical to W0, worst |ΔW0| {worst:E2} of max |W0|");
        Assert.True(worst <= 2.5e-7, $"unmerge left W0 {worst:E3} (relative to max |W0|) away");
        Assert.True(identical >= elements * 3 / 4, $"only {identical}/{elements} weights restored bit for bit");
    }

    [Fact]
    public void MergingASecondDoraAdapterIntoTheSameLayerIsRefused()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(new AdapterFixture("llama").LoadModel(), new DoraOptions { R = 2 });
        lm.AddAdapter("other", new DoraOptions { R = 2 });
        var ex = Assert.Throws<NotSupportedException>(() => lm.Merge(new[] { "default", "other" }));
        Assert.Contains("one adapter", ex.Message);
        Assert.All(lm.AdapterLayers(), l => Assert.False(l.layer.Merged));
    }
}

/// <summary>DoRA tests that use process-wide state (the global generator for dropout masks and trainer seeds, the
/// console for the CLI).</summary>
[Collection(SerialCollection.Name)]
public class DoraSerialTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WithActiveDropoutTheOutputAndGradientsFollowTheFormulaOnTheDroppedInput(bool conv1d)
    {
        using var scope = NewDisposeScope();
        const double pDrop = 0.5;
        using var layer = DoraTests.Float64Layer(conv1d, pDrop);
        layer.train();
        using var g = new Generator(3);
        int rows = 4;
        var x = randn(new long[] { rows, 7 }, ScalarType.Float64, generator: g).requires_grad_();
        var gy = randn(new long[] { rows, 5 }, ScalarType.Float64, generator: g);
        manual_seed(1234);
        var y = layer.forward(x);
        (y * gy).sum().backward();
        // The same seed reproduces the dropout mask (the layer's only random draw): mask = dropout(1).
        manual_seed(1234);
        var mask = nn.functional.dropout(ones(new long[] { rows, 7 }, ScalarType.Float64), pDrop, true).ToDoubleArray();
        Assert.Contains(mask, v => v == 0);
        var p = layer.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter.ToDoubleArray());
        var (v, norm) = DoraReference.DirectionAndNorm(layer, p, "default", layer.Scaling("default"), layer.Rank("default"));
        double s = layer.Scaling("default");
        var w = p["base_layer.weight"];
        var b = p["base_layer.bias"];
        var A = p["lora_A.default.weight"];
        var B = p["lora_B.default.weight"];
        var mag = p["lora_magnitude_vector.default.weight"];
        var xd = x.ToDoubleArray();
        var gyd = gy.ToDoubleArray();
        var yRef = new double[rows * 5];
        var reuse = new double[rows * 5];
        var dx = new double[rows * 7];
        var dA = new double[3 * 7];
        var dB = new double[5 * 3];
        var dm = new double[5];
        for (int i = 0; i < rows; i++)
        {
            var xt = Enumerable.Range(0, 7).Select(k => xd[i * 7 + k] * mask[i * 7 + k]).ToArray();
            var h = new double[3];
            for (int j = 0; j < 3; j++) for (int k = 0; k < 7; k++) h[j] += A[j * 7 + k] * xt[k];
            var gh = new double[3];
            for (int o = 0; o < 5; o++)
            {
                double kk = mag[o] / norm[o], u = 0, ut = 0, l = 0, g0 = gyd[i * 5 + o];
                for (int k = 0; k < 7; k++) { u += xd[i * 7 + k] * DoraReference.W(layer, w, o, k); ut += xt[k] * DoraReference.W(layer, w, o, k); }
                for (int j = 0; j < 3; j++) l += B[o * 3 + j] * h[j];
                // y = x·W0ᵀ + b + (k − 1)·x̃·W0ᵀ + k·s·x̃·Aᵀ·Bᵀ
                yRef[i * 5 + o] = u + b[o] + (kk - 1) * ut + kk * s * l;
                // What reusing the undropped base output would give (PEFT's no-dropout shortcut): k·(x·W0ᵀ) + k·s·x̃·Aᵀ·Bᵀ + b.
                reuse[i * 5 + o] = kk * u + kk * s * l + b[o];
                dm[o] += g0 * (ut + s * l) / norm[o];
                for (int j = 0; j < 3; j++) { dB[o * 3 + j] += g0 * kk * s * h[j]; gh[j] += g0 * kk * s * B[o * 3 + j]; }
                for (int k = 0; k < 7; k++)
                    dx[i * 7 + k] += g0 * DoraReference.W(layer, w, o, k) + g0 * (kk - 1) * DoraReference.W(layer, w, o, k) * mask[i * 7 + k];
            }
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 7; k++)
                {
                    dA[j * 7 + k] += gh[j] * xt[k];
                    dx[i * 7 + k] += gh[j] * A[j * 7 + k] * mask[i * 7 + k];
                }
        }
        AdapterInvariants.AssertClose(yRef, y.ToDoubleArray(), 1e-12, "DoRA forward with dropout");
        AdapterInvariants.AssertClose(dx, x.grad!.ToDoubleArray(), 1e-12, "d/dx");
        AdapterInvariants.AssertClose(dA, layer.LoraA("default").weight.grad!.ToDoubleArray(), 1e-12, "d/dA");
        AdapterInvariants.AssertClose(dB, layer.LoraB("default").weight.grad!.ToDoubleArray(), 1e-12, "d/dB");
        AdapterInvariants.AssertClose(dm, layer.Magnitude("default").grad!.ToDoubleArray(), 1e-12, "d/dm");
        Assert.Null(layer.BaseWeight.grad);
        // Reusing the base output would be a different function.
        Assert.True(yRef.Zip(reuse).Max(t => Math.Abs(t.First - t.Second)) > 1e-3);
        // In evaluation mode dropout is off and y = k ⊙ (x·Vᵀ) + b.
        layer.eval();
        using var ng = no_grad();
        var ye = layer.forward(x).ToDoubleArray();
        var yeRef = new double[rows * 5];
        for (int i = 0; i < rows; i++)
            for (int o = 0; o < 5; o++)
            {
                double vx = 0;
                for (int k = 0; k < 7; k++) vx += xd[i * 7 + k] * v[o * 7 + k];
                yeRef[i * 5 + o] = mag[o] / norm[o] * vx + b[o];
            }
        AdapterInvariants.AssertClose(yeRef, ye, 1e-12, "DoRA forward in eval");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("bert_cls")]
    public void CliParamsEqualTheFormula(string fixture)
    {
        const int r = 4;
        long expected = ReparamTestSupport.DefaultTargetShapes(fixture).Sum(t => r * (t.inF + t.outF) + t.outF) + ReparamTestSupport.HeadParameters(fixture);
        Assert.Equal(expected, ReparamTestSupport.CliTrainable(fixture, "--method", "dora", "--rank", "4"));
    }

    [Fact]
    public void ShortTrainingLowersTheLossAndMovesOnlyTheAdapter()
    {
        using var scope = NewDisposeScope();
        var (before, after, model) = ReparamTestSupport.ShortTraining(new DoraOptions { R = 4, LoraAlpha = 8, LoraDropout = 0.1, TargetModules = ModuleSelector.AllLinear });
        using (model)
        {
            output.WriteLine($"DoRA: held-out loss {before:F4} -> {after:F4}");
            Assert.True(after < 0.8 * before, $"held-out loss went from {before:F3} to {after:F3}");
        }
    }
}
