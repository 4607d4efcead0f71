using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Vera;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>
/// VeRA (methods.md §3.2) in float64 loops: with the frozen slices A_s = A[:, :in], B_s = B[:out, :],
/// h = x·A_sᵀ, z = (λ_d ⊙ h)·B_sᵀ, y = x·W0ᵀ + b + λ_b ⊙ z. Analytic gradients: dλ_b = Σ gy ⊙ z,
/// dλ_d_j = Σ (Σ_o gy_o·λ_b_o·B_oj)·h_j, dx = gy·W0 + ((gy ⊙ λ_b)·B_s ⊙ λ_d)·A_s.
/// </summary>
public sealed class VeraReference : AdapterReference
{
    private static IEnumerable<(string a, double[] A, double[] B, int r, long maxIn)> Active(AdapterLayer layer)
    {
        var vera = (VeraLayer)layer;
        foreach (var a in layer.ActiveAdapters)
        {
            if (!layer.HasAdapter(a)) continue;
            var (A, B) = vera.SharedProjections(a);
            yield return (a, A.ToDoubleArray(), B.ToDoubleArray(), vera.Rank(a), A.size(1));
        }
    }

    public override double[] Forward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
    {
        var y = BaseForward(layer, p, x, rows);
        long n = layer.InFeatures, m = layer.OutFeatures;
        foreach (var (a, A, B, r, maxIn) in Active(layer))
        {
            var lb = p[$"vera_lambda_b.{a}"];
            var ld = p[$"vera_lambda_d.{a}"];
            for (int i = 0; i < rows; i++)
            {
                var h = new double[r];
                for (int j = 0; j < r; j++)
                    for (long k = 0; k < n; k++) h[j] += A[j * maxIn + k] * x[i * n + k];
                for (long o = 0; o < m; o++)
                {
                    double z = 0;
                    for (int j = 0; j < r; j++) z += B[o * r + j] * ld[j] * h[j];
                    y[i * m + o] += lb[o] * z;
                }
            }
        }
        return y;
    }

    public override (double[] dx, Dictionary<string, double[]> dp) Gradients(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p,
        double[] x, int rows, double[] gy, IReadOnlyCollection<string> wrt)
    {
        long n = layer.InFeatures, m = layer.OutFeatures;
        var w = p["base_layer.weight"];
        var dx = new double[rows * n];
        for (int i = 0; i < rows; i++)
            for (long k = 0; k < n; k++)
                for (long o = 0; o < m; o++) dx[i * n + k] += gy[i * m + o] * DoraReference.W(layer, w, o, k);
        var dp = new Dictionary<string, double[]>();
        foreach (var (a, A, B, r, maxIn) in Active(layer))
        {
            var lb = p[$"vera_lambda_b.{a}"];
            var ld = p[$"vera_lambda_d.{a}"];
            var dlb = new double[m];
            var dld = new double[r];
            for (int i = 0; i < rows; i++)
            {
                var h = new double[r];
                for (int j = 0; j < r; j++)
                    for (long k = 0; k < n; k++) h[j] += A[j * maxIn + k] * x[i * n + k];
                var gz = new double[r]; // Σ_o gy_o·λ_b_o·B_oj
                for (long o = 0; o < m; o++)
                {
                    double z = 0;
                    for (int j = 0; j < r; j++)
                    {
                        z += B[o * r + j] * ld[j] * h[j];
                        gz[j] += gy[i * m + o] * lb[o] * B[o * r + j];
                    }
                    dlb[o] += gy[i * m + o] * z;
                }
                for (int j = 0; j < r; j++)
                {
                    dld[j] += gz[j] * h[j];
                    for (long k = 0; k < n; k++) dx[i * n + k] += gz[j] * ld[j] * A[j * maxIn + k];
                }
            }
            dp[$"vera_lambda_b.{a}"] = dlb;
            dp[$"vera_lambda_d.{a}"] = dld;
        }
        foreach (var name in wrt) Assert.True(dp.ContainsKey(name), $"the VeRA reference has no gradient for trainable '{name}'");
        return (dx, dp);
    }
}

/// <summary>The VeRA configurations run through <see cref="AdapterInvariants"/> (no documented exceptions: λ_b = 0
/// makes the init a no-op, and the merge is exact).</summary>
public static class VeraCases
{
    private static readonly VeraReference s_ref = new();

    public static readonly AdapterCase Vera = new()
    {
        Name = "vera",
        Options = () => new VeraOptions { R = 16, VeraDropout = 0.1 },
        Reference = s_ref,
    };

    /// <summary>All linears: layers of different shapes slice one pair of projections sized for the largest.</summary>
    public static readonly AdapterCase VeraAllLinear = new()
    {
        Name = "vera_all_linear",
        Options = () => new VeraOptions { R = 8, ProjectionPrngKey = 3, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase[] All = { Vera, VeraAllLinear };

    public static AdapterCase Get(string name) => All.Single(c => c.Name == name);

    public static TheoryData<string, string> Matrix()
    {
        var d = new TheoryData<string, string>();
        foreach (var c in All)
            foreach (var f in AdapterInvariants.Fixtures) d.Add(c.Name, f);
        return d;
    }
}

/// <summary>design.md's six invariants for VeRA on the gpt2 (Conv1D), llama_gqa and bert_cls fixtures.</summary>
public class VeraInvariantTests
{
    public static TheoryData<string, string> Matrix => VeraCases.Matrix();

    [Theory, MemberData(nameof(Matrix))]
    public void InitEqualsBase(string method, string fixture) => AdapterInvariants.InitEqualsBase(VeraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void MergeEqualsUnmergedAndUnmergeRestores(string method, string fixture) => AdapterInvariants.MergeEqualsUnmerged(VeraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void DisableEqualsBase(string method, string fixture) => AdapterInvariants.DisableEqualsBase(VeraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void TrainingStepChangesOnlyAdapterParameters(string method, string fixture) => AdapterInvariants.TrainingStepTouchesOnlyAdapters(VeraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void SaveLoadGivesIdenticalOutputs(string method, string fixture) => AdapterInvariants.SaveLoadRoundTrip(VeraCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void LayerForwardAndGradientsMatchFloat64Formula(string method, string fixture) => AdapterInvariants.LayerMatchesFormula(VeraCases.Get(method), fixture);
}

/// <summary>VeRA specifics: shared projections (shape, init, sharing, persistence), trainable count, PEFT keys.</summary>
public class VeraTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama_gqa")]
    [InlineData("bert_cls")]
    public void EveryLayerSlicesOneFrozenPairDrawnLikePeftsKaimingInit(string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = LowRankModel.Create(f.LoadModel(), new VeraOptions { R = 8, ProjectionPrngKey = 5, TargetModules = ModuleSelector.AllLinear });
        var layers = lm.AdapterLayers().Select(l => (VeraLayer)l.layer).ToList();
        long maxIn = layers.Max(l => l.InFeatures), maxOut = layers.Max(l => l.OutFeatures);
        var holderA = (SharedAdapterTensors)lm.SharedModules.Single(s => s.name == "vera_A").module;
        var A = holderA["default"];
        var B = ((SharedAdapterTensors)lm.SharedModules.Single(s => s.name == "vera_B").module)["default"];
        Assert.Equal(new[] { 8L, maxIn }, A.shape);
        Assert.Equal(new[] { maxOut, 8L }, B.shape);
        Assert.False(A.requires_grad);
        Assert.DoesNotContain(lm.named_parameters(), p => p.name.Contains("vera_A") || p.name.Contains("vera_B"));
        Assert.Contains(lm.named_buffers(), b => b.name == "base_model.vera_A.default");
        foreach (var l in layers)
        {
            var (a, b) = l.SharedProjections("default");
            Assert.Same(A, a);
            Assert.Same(B, b);
        }
        Assert.True(layers.Select(l => (l.InFeatures, l.OutFeatures)).Distinct().Count() > 1 || fixture == "bert_cls", "the fixture should have layers of different shapes");
        // PEFT's _kaiming_init: U(±√(6/fan_in)), fan_in = max_in for A and r for B, from one generator seeded with the key, A first.
        var a64 = A.ToDoubleArray();
        var b64 = B.ToDoubleArray();
        Assert.True(a64.Max(Math.Abs) <= Math.Sqrt(6.0 / maxIn) && a64.Max(Math.Abs) > 0.9 * Math.Sqrt(6.0 / maxIn));
        Assert.True(b64.Max(Math.Abs) <= Math.Sqrt(6.0 / 8) && b64.Max(Math.Abs) > 0.8 * Math.Sqrt(6.0 / 8));
        using var g = new Generator(5);
        var expectA = empty(new[] { 8L, maxIn }).uniform_(-Math.Sqrt(6.0 / maxIn), Math.Sqrt(6.0 / maxIn), g).ToDoubleArray();
        var expectB = empty(new[] { maxOut, 8L }).uniform_(-Math.Sqrt(6.0 / 8), Math.Sqrt(6.0 / 8), g).ToDoubleArray();
        AdapterInvariants.AssertClose(expectA, a64, 1e-6, "vera_A vs a fresh draw with the key");
        AdapterInvariants.AssertClose(expectB, b64, 1e-6, "vera_B vs the next draw");
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama_gqa")]
    [InlineData("bert_cls")]
    public void TrainableCountIsLayersTimesOutPlusR(string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        const int r = 32;
        using var lm = LowRankModel.Create(f.LoadModel(), new VeraOptions { R = r });
        var shapes = ReparamTestSupport.DefaultTargetShapes(fixture);
        var report = lm.CountParameters();
        Assert.Equal(shapes.Sum(s => s.outF + r), report.PerAdapter["default"] - ReparamTestSupport.HeadParameters(fixture));
        Assert.Equal(shapes.Sum(s => s.outF + r) + ReparamTestSupport.HeadParameters(fixture), lm.GetNbTrainableParameters().trainable);
    }

    [Fact]
    public void SavedFileHoldsTheProjectionsUnderPeftsKeysAndLoadingRestoresThemFromTheFile()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        var dir = Directory.CreateTempSubdirectory("lowrank-vera-").FullName;
        try
        {
            using var lm = LowRankModel.Create(f.LoadModel(), new VeraOptions { R = 16, ProjectionPrngKey = 9 });
            AdapterInvariants.Perturb(lm);
            var A = ((SharedAdapterTensors)lm.SharedModules.Single(s => s.name == "vera_A").module)["default"];
            // Make the in-memory projections differ from what the seed regenerates: loading must take the file's.
            using (no_grad()) A.mul_(-0.5);
            var expected = f.Logits(lm);
            lm.Save(dir);
            using (var file = SafetensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsName)))
            {
                var keys = file.Names.ToHashSet();
                Assert.Contains("base_model.vera_A", keys);
                Assert.Contains("base_model.vera_B", keys);
                Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.vera_lambda_b", keys);
                Assert.Contains("base_model.model.model.layers.1.self_attn.v_proj.vera_lambda_d", keys);
                Assert.Equal(2 + 2 * 2 * 2, keys.Count);
                Assert.Equal(A.shape, file.GetEntry("base_model.vera_A").Shape);
            }
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigName)))!;
            Assert.Equal("VERA", (string?)cfg["peft_type"]);
            Assert.True(cfg["save_projection"]!.GetValue<bool>());
            Assert.Equal(9, cfg["projection_prng_key"]!.GetValue<int>());
            using var loaded = LowRankModel.Load(f.LoadModel(), dir);
            loaded.eval();
            var loadedA = ((SharedAdapterTensors)loaded.SharedModules.Single(s => s.name == "vera_A").module)["default"];
            Assert.True(loadedA.equal(A), "the loaded vera_A is not the saved one");
            AdapterInvariants.AssertIdentical(expected, f.Logits(loaded), "reloaded VeRA");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void WithoutSaveProjectionTheFileHasNoProjectionsAndLoadingRegeneratesThemFromTheKey()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("gpt2");
        var dir = Directory.CreateTempSubdirectory("lowrank-vera-").FullName;
        try
        {
            using var lm = LowRankModel.Create(f.LoadModel(), new VeraOptions { R = 16, ProjectionPrngKey = 4, SaveProjection = false });
            AdapterInvariants.Perturb(lm);
            var expected = f.Logits(lm);
            lm.Save(dir);
            using (var file = SafetensorsFile.Open(Path.Combine(dir, AdapterFiles.WeightsName)))
                Assert.DoesNotContain(file.Names, k => k.Contains("vera_A") || k.Contains("vera_B"));
            using var loaded = LowRankModel.Load(f.LoadModel(), dir);
            loaded.eval();
            AdapterInvariants.AssertIdentical(expected, f.Logits(loaded), "reloaded VeRA (regenerated projections)");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void EachAdapterHasItsOwnProjectionsSoALargerRankCanComeSecond()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        using var lm = LowRankModel.Create(f.LoadModel(), new VeraOptions { R = 4 });
        lm.AddAdapter("wide", new VeraOptions { R = 12, TargetModules = ModuleSelector.AllLinear });
        var holder = (SharedAdapterTensors)lm.SharedModules.Single(s => s.name == "vera_A").module;
        Assert.Equal(4, holder["default"].size(0));
        Assert.Equal(12, holder["wide"].size(0));
        lm.SetAdapter("wide");
        AdapterInvariants.Perturb(lm);
        var layer = lm.AdapterLayers().Single(l => l.name.EndsWith("layers.1.mlp.down_proj", StringComparison.Ordinal)).layer;
        using var g = new Generator(2);
        var x = randn(new long[] { 3, layer.InFeatures }, generator: g);
        var p = layer.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter.ToDoubleArray());
        using (no_grad())
            AdapterInvariants.AssertClose(new VeraReference().Forward(layer, p, x.ToDoubleArray(), 3), layer.forward(x).ToDoubleArray(), 1e-5, "second adapter");
        lm.DeleteAdapter("wide");
        Assert.False(holder.Contains("wide"));
        Assert.True(holder.Contains("default"));
    }

    [Fact]
    public void Float64LayerMatchesTheFormulaWithSlicedProjections()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(8);
        foreach (var conv1d in new[] { false, true })
        {
            nn.Module baseLayer = conv1d ? new Conv1D(6, 4, dtype: ScalarType.Float64) : new Linear(6, 4, true, dtype: ScalarType.Float64);
            using (no_grad())
                foreach (var prm in baseLayer.parameters()) { prm.copy_(randn(prm.shape, ScalarType.Float64, generator: g)); prm.requires_grad = false; }
            using var layer = new VeraLayer(baseLayer);
            var A = randn(new long[] { 5, 9 }, ScalarType.Float64, generator: g);  // max_in 9 > in 6
            var B = randn(new long[] { 7, 5 }, ScalarType.Float64, generator: g);  // max_out 7 > out 4
            layer.UpdateLayer("default", A, B, 5, 0, false, 0.1, new AdapterCreationContext { Generator = g });
            layer.SetActiveAdapters(new[] { "default" });
            var x = randn(new long[] { 3, 6 }, ScalarType.Float64, generator: g).requires_grad_();
            var gy = randn(new long[] { 3, 4 }, ScalarType.Float64, generator: g);
            var y = layer.forward(x);
            (y * gy).sum().backward();
            var p = layer.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter.ToDoubleArray());
            var reference = new VeraReference();
            AdapterInvariants.AssertClose(reference.Forward(layer, p, x.ToDoubleArray(), 3), y.ToDoubleArray(), 1e-12, $"VeRA float64 forward (conv1d {conv1d})");
            var (dx, dp) = reference.Gradients(layer, p, x.ToDoubleArray(), 3, gy.ToDoubleArray(), new[] { "vera_lambda_b.default", "vera_lambda_d.default" });
            AdapterInvariants.AssertClose(dx, x.grad!.ToDoubleArray(), 1e-12, "d/dx");
            AdapterInvariants.AssertClose(dp["vera_lambda_b.default"], layer.LambdaB("default").grad!.ToDoubleArray(), 1e-12, "d/dλ_b");
            AdapterInvariants.AssertClose(dp["vera_lambda_d.default"], layer.LambdaD("default").grad!.ToDoubleArray(), 1e-12, "d/dλ_d");
            // Merge is exact: W0 + diag(λ_b)·B_s·diag(λ_d)·A_s.
            var before = y.detach().clone();
            layer.Merge();
            using (no_grad()) AdapterInvariants.AssertClose(before.ToDoubleArray(), layer.forward(x).ToDoubleArray(), 1e-12, "merged");
            layer.Unmerge();
        }
        output.WriteLine("float64 VeRA layer: forward, gradients and merge match the formula to 1e-12");
    }

    [Fact]
    public void ConfigRoundTripsThroughPeftJson()
    {
        var json = new VeraOptions { R = 64, ProjectionPrngKey = 7, SaveProjection = false, VeraDropout = 0.05, DInitial = 0.2 }.ToJson();
        var back = Assert.IsType<VeraOptions>(LowRankAdapterOptions.FromJson(json));
        Assert.Equal(64, back.R);
        Assert.Equal(7, back.ProjectionPrngKey);
        Assert.False(back.SaveProjection);
        Assert.Equal(0.05, back.VeraDropout);
        Assert.Equal(0.2, back.DInitial);
        Assert.IsType<VeraOptions>(AdapterMethods.Create("vera"));
        Assert.Throws<ArgumentException>(() => AdapterMethods.WithSettings(new VeraOptions(), new[] { new KeyValuePair<string, string>("r", "0") }));
    }
}

/// <summary>VeRA tests that use process-wide state (console, trainer seeds, the live tensor count; the leak test covers DoRA too).</summary>
[Collection(SerialCollection.Name)]
public class VeraSerialTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("bert_cls")]
    public void CliParamsEqualTheFormula(string fixture)
    {
        const int r = 16;
        long expected = ReparamTestSupport.DefaultTargetShapes(fixture).Sum(t => t.outF + r) + ReparamTestSupport.HeadParameters(fixture);
        Assert.Equal(expected, ReparamTestSupport.CliTrainable(fixture, "--method", "vera", "--rank", "16"));
    }

    [Fact]
    public void DoraAndVeraTrainMergeSaveLoadDeleteCyclesLeaveTheLiveCountUnchanged()
    {
        var f = new AdapterFixture("gpt2");
        var dir = Directory.CreateTempSubdirectory("lowrank-leak-").FullName;
        try
        {
            using var dora = LowRankModel.Create(f.LoadModel(), new Microsoft.ML.LowRank.Adapters.Dora.DoraOptions { R = 2, LoraDropout = 0.1 });
            using var vera = LowRankModel.Create(f.LoadModel(), new VeraOptions { R = 8, VeraDropout = 0.1 });
            void Cycle()
            {
                using var scope = NewDisposeScope();
                foreach (var (lm, extra) in new[] { (dora, (LowRankAdapterOptions)new Microsoft.ML.LowRank.Adapters.Dora.DoraOptions { R = 3 }), (vera, new VeraOptions { R = 4 }) })
                {
                    lm.train();
                    lm.forward(f.Inputs()).Loss!.backward();
                    lm.zero_grad();
                    lm.eval();
                    lm.Merge();
                    _ = f.Logits(lm);
                    lm.Unmerge();
                    lm.AddAdapter("extra", extra);
                    _ = f.Logits(lm, new[] { "extra", "default" });
                    lm.Save(dir);
                    using (var again = LowRankModel.Load(f.LoadModel(), dir)) _ = f.Logits(again);
                    lm.DeleteAdapter("extra");
                }
            }
            Cycle();
            var before = LiveTensors.Count();
            for (int i = 0; i < 3; i++) Cycle();
            Assert.Equal(before, LiveTensors.Count());
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ShortTrainingLowersTheLossAndMovesOnlyTheAdapter()
    {
        using var scope = NewDisposeScope();
        var (before, after, model) = ReparamTestSupport.ShortTraining(new VeraOptions { R = 64, TargetModules = ModuleSelector.AllLinear }, lr: 5e-2);
        using (model)
        {
            output.WriteLine($"VeRA: held-out loss {before:F4} -> {after:F4}");
            Assert.True(after < 0.8 * before, $"held-out loss went from {before:F3} to {after:F3}");
        }
    }
}
