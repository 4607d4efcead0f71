using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Models;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>
/// The float64 reference of one adapter layer, computed with naive loops from the layer's parameter values (so the
/// invariant fixture can perturb them for finite differences). Parameter names are the layer's own
/// (<c>base_layer.weight</c>, <c>lora_A.default.weight</c>, ...).
/// </summary>
public abstract class AdapterReference
{
    /// <summary>y [rows, out] for x [rows, in] (row-major), from the parameter values <paramref name="p"/>.</summary>
    public abstract double[] Forward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows);

    /// <summary>Gradients of Σ y∘gy with respect to x and to each parameter named in <paramref name="wrt"/>.
    /// Default: central finite differences of <see cref="Forward"/> in float64 (step 1e-6).</summary>
    public virtual (double[] dx, Dictionary<string, double[]> dp) Gradients(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p,
        double[] x, int rows, double[] gy, IReadOnlyCollection<string> wrt)
    {
        const double h = 1e-6;
        double Loss(IReadOnlyDictionary<string, double[]> pp, double[] xx)
        {
            var y = Forward(layer, pp, xx, rows);
            double s = 0;
            for (int i = 0; i < y.Length; i++) s += y[i] * gy[i];
            return s;
        }
        var dx = new double[x.Length];
        var xc = (double[])x.Clone();
        for (int i = 0; i < x.Length; i++)
        {
            var v = xc[i];
            xc[i] = v + h; var lp = Loss(p, xc);
            xc[i] = v - h; var lm = Loss(p, xc);
            xc[i] = v;
            dx[i] = (lp - lm) / (2 * h);
        }
        var dp = new Dictionary<string, double[]>();
        var copy = p.ToDictionary(kv => kv.Key, kv => (double[])kv.Value.Clone());
        foreach (var name in wrt)
        {
            var arr = copy[name];
            var g = new double[arr.Length];
            for (int i = 0; i < arr.Length; i++)
            {
                var v = arr[i];
                arr[i] = v + h; var lp = Loss(copy, x);
                arr[i] = v - h; var lm = Loss(copy, x);
                arr[i] = v;
                g[i] = (lp - lm) / (2 * h);
            }
            dp[name] = g;
        }
        return (dx, dp);
    }

    /// <summary>The base part x·Wᵀ + b in float64 loops (W stored [out, in], or [in, out] when FanInFanOut).</summary>
    protected static double[] BaseForward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
    {
        long n = layer.InFeatures, m = layer.OutFeatures;
        var w = p["base_layer.weight"];
        p.TryGetValue("base_layer.bias", out var b);
        var y = new double[rows * m];
        for (int i = 0; i < rows; i++)
            for (long o = 0; o < m; o++)
            {
                double s = b is null ? 0 : b[o];
                for (long k = 0; k < n; k++) s += x[i * n + k] * (layer.FanInFanOut ? w[k * m + o] : w[o * n + k]);
                y[i * m + o] = s;
            }
        return y;
    }
}

/// <summary>One adapter configuration the invariant fixture runs.</summary>
public sealed class AdapterCase
{
    /// <summary>Case name (test display).</summary>
    public required string Name { get; init; }

    /// <summary>The options (a fresh object per call).</summary>
    public required Func<LowRankAdapterOptions> Options { get; init; }

    /// <summary>The layer formula in float64.</summary>
    public required AdapterReference Reference { get; init; }

    /// <summary>Builds the adapted model from a freshly loaded base (default: <see cref="LowRankModel.Create"/> with
    /// <see cref="Options"/>).</summary>
    public Func<PretrainedModel, LowRankModel>? Build { get; init; }

    /// <summary>The init replaces base weights (PiSSA, OLoRA): the identity is checked against the original model
    /// within <see cref="InitTolerance"/>, and disable / reload use the residual base.</summary>
    public bool MutatesBase { get; init; }

    /// <summary>Tolerance of the init identity (0: bit-identical).</summary>
    public double InitTolerance { get; init; }

    /// <summary>Replaces check 1 (e.g. a weighted combination's identity). Arguments: fixture, adapted model, original base output.</summary>
    public Action<AdapterFixture, LowRankModel, float[]>? CheckInit { get; init; }

    /// <summary>Merge is exact for this method (check 2 runs).</summary>
    public bool Mergeable { get; init; } = true;

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>A model fixture (test/fixtures/models/&lt;name&gt;) with its inputs.</summary>
public sealed class AdapterFixture
{
    public AdapterFixture(string name)
    {
        Name = name;
        Dir = Repo.Fixture("models", name);
        Json = JsonNode.Parse(File.ReadAllText(Path.Combine(Dir, "inputs.json")))!;
    }

    public string Name { get; }
    public string Dir { get; }
    public JsonNode Json { get; }

    /// <summary>The fixture model in float32, evaluation mode.</summary>
    public PretrainedModel LoadModel()
    {
        var m = PretrainedModel.Load(Dir, dtype: ScalarType.Float32);
        m.eval();
        return m;
    }

    /// <summary>The fixture inputs (with labels for a loss).</summary>
    public ModelInputs Inputs(bool labels = true)
    {
        Tensor? y = null;
        if (labels && Json["labels"] is JsonArray la)
            y = la[0] is JsonArray ? ModelFixtureTests.Ids(la) : tensor(la.Select(v => v!.GetValue<long>()).ToArray());
        return new ModelInputs
        {
            InputIds = ModelFixtureTests.Ids(Json["input_ids"]),
            AttentionMask = ModelFixtureTests.Ids(Json["attention_mask"]),
            TokenTypeIds = Json["token_type_ids"] is JsonArray tt ? ModelFixtureTests.Ids(tt) : null,
            Labels = y,
        };
    }

    /// <summary>Logits of a plain model, as floats.</summary>
    public float[] Logits(PretrainedModel model)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        return model.forward(Inputs(false)).Logits!.ToArray<float>();
    }

    /// <summary>Logits of an adapted model, as floats.</summary>
    public float[] Logits(LowRankModel model, IReadOnlyList<string>? adapterNames = null)
    {
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        return model.forward(Inputs(false), adapterNames).Logits!.ToArray<float>();
    }

    public override string ToString() => Name;
}

/// <summary>
/// design.md's six invariants, for any adapter method: (1) init = base output, (2) merge = unmerged and unmerge
/// restores the base weights, (3) disable = base output, (4) one SGD step changes only adapter parameters, (5) save →
/// load gives identical outputs, (6) one adapted layer's forward and gradients equal the float64 formula. Checks 2-6
/// first perturb every trainable adapter parameter (so a zero-initialised B does not make them trivially true).
/// </summary>
public static class AdapterInvariants
{
    /// <summary>The fixtures every method runs on.</summary>
    public static readonly string[] Fixtures = { "gpt2", "llama_gqa", "bert_cls" };

    /// <summary>Loads the fixture and builds the adapted model.</summary>
    public static LowRankModel Build(AdapterCase c, AdapterFixture f)
    {
        var model = f.LoadModel();
        var lm = c.Build?.Invoke(model) ?? LowRankModel.Create(model, c.Options());
        lm.eval();
        return lm;
    }

    /// <summary>Adds N(0, std²) noise (seeded) to every trainable parameter (the active adapters').</summary>
    public static void Perturb(LowRankModel lm, ulong seed = 7, double std = 0.1)
    {
        using var g = new Generator(seed);
        using var scope = NewDisposeScope();
        using var ng = no_grad();
        foreach (var (_, p) in lm.named_parameters())
            if (p.requires_grad) p.add_(randn(p.shape, p.dtype, p.device, generator: g) * std);
    }

    /// <summary>Exact equality of two float arrays, reporting the worst difference.</summary>
    public static void AssertIdentical(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs((double)expected[i] - actual[i]));
        Assert.True(expected.AsSpan().SequenceEqual(actual), $"{what}: not bit-identical (max |diff| {worst:E3})");
    }

    /// <summary>|e − a| ≤ tol·max(1, |e|) everywhere.</summary>
    public static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double tol, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        double worst = 0;
        int at = -1;
        for (int i = 0; i < expected.Count; i++)
        {
            var err = Math.Abs(expected[i] - actual[i]) / Math.Max(1, Math.Abs(expected[i]));
            if (double.IsNaN(actual[i]) || double.IsNaN(expected[i])) err = double.PositiveInfinity;
            if (err > worst) { worst = err; at = i; }
        }
        Assert.True(worst <= tol, $"{what}: max error {worst:E3} > {tol:E1} at {at} (expected {(at >= 0 ? expected[at] : 0)}, got {(at >= 0 ? actual[at] : 0)})");
    }

    private static double[] D(float[] a) => a.Select(v => (double)v).ToArray();

    /// <summary>(1) With its init, the adapted model's output equals the original base output.</summary>
    public static void InitEqualsBase(AdapterCase c, string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        float[] baseOut;
        using (var plain = f.LoadModel()) baseOut = f.Logits(plain);
        using var lm = Build(c, f);
        if (c.CheckInit is not null) { c.CheckInit(f, lm, baseOut); return; }
        var outp = f.Logits(lm);
        if (c.InitTolerance == 0) AssertIdentical(baseOut, outp, $"{c}/{fixture} init vs base");
        else AssertClose(D(baseOut), D(outp), c.InitTolerance, $"{c}/{fixture} init vs base");
        Assert.True(lm.GetNbTrainableParameters().trainable > 0);
    }

    /// <summary>(2) Merged forward equals unmerged within 1e-5; unmerge restores every base weight within 1e-6.</summary>
    public static void MergeEqualsUnmerged(AdapterCase c, string fixture)
    {
        if (!c.Mergeable) return;
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = Build(c, f);
        Perturb(lm);
        var before = f.Logits(lm);
        var weights = lm.AdapterLayers().Select(l => (l.name, w: l.layer.BaseWeight.clone())).ToList();
        lm.Merge();
        Assert.All(lm.AdapterLayers(), l => Assert.True(l.layer.Merged || !l.layer.ActiveAdapters.Any(l.layer.HasAdapter), l.name + " not merged"));
        var merged = f.Logits(lm);
        AssertClose(D(before), D(merged), 1e-5, $"{c}/{fixture} merged vs unmerged");
        // Merging really changed the weights of layers holding the active adapter.
        Assert.Contains(weights, w => !w.w.equal(lm.Model.get_submodule(w.name) is AdapterLayer l ? l.BaseWeight : w.w));
        lm.Unmerge();
        foreach (var (name, w) in weights)
        {
            var now = ((AdapterLayer)lm.Model.get_submodule(name)).BaseWeight;
            var diff = (now - w).abs().max().ToDouble();
            Assert.True(diff <= 1e-6, $"{c}/{fixture} {name}: unmerge left the base weight {diff:E3} away");
        }
        AssertClose(D(before), D(f.Logits(lm)), 1e-5, $"{c}/{fixture} after unmerge");
    }

    /// <summary>(3) Disabled forward equals the base forward (for PiSSA/OLoRA: the residual base); also when merged.</summary>
    public static void DisableEqualsBase(AdapterCase c, string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        float[] expected;
        using var lm = Build(c, f);
        using (var plain = f.LoadModel())
        {
            if (c.MutatesBase) plain.load_state_dict(lm.GetBaseStateDict());
            expected = f.Logits(plain);
        }
        Perturb(lm);
        var adapted = f.Logits(lm);
        using (lm.DisableAdapter()) AssertIdentical(expected, f.Logits(lm), $"{c}/{fixture} disabled vs base");
        Assert.False(expected.AsSpan().SequenceEqual(f.Logits(lm)), "the adapters should be back on after the scope");
        AssertClose(D(adapted), D(f.Logits(lm)), 0, $"{c}/{fixture} after disable scope");
        if (!c.Mergeable) return;
        lm.Merge();
        using (lm.DisableAdapter()) AssertClose(D(expected), D(f.Logits(lm)), 1e-5, $"{c}/{fixture} merged then disabled vs base");
        AssertClose(D(adapted), D(f.Logits(lm)), 1e-5, $"{c}/{fixture} re-enabled after merge+disable");
    }

    /// <summary>(4) After one SGD step only the active adapters' parameters changed; base weights are bit-identical.</summary>
    public static void TrainingStepTouchesOnlyAdapters(AdapterCase c, string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = Build(c, f);
        Perturb(lm);
        var expectedTrainable = new HashSet<string>();
        foreach (var (path, m) in lm.AdapterModules())
            foreach (var a in lm.ActiveAdapters)
                foreach (var (n, _) in m.AdapterParameters(a)) expectedTrainable.Add("base_model.model." + path + "." + n);
        var all = lm.named_parameters().ToList();
        var trainable = all.Where(p => p.parameter.requires_grad).Select(p => p.name).ToHashSet();
        Assert.NotEmpty(trainable);
        Assert.True(expectedTrainable.SetEquals(trainable),
            $"trainable parameters differ: extra [{string.Join(", ", trainable.Except(expectedTrainable))}], missing [{string.Join(", ", expectedTrainable.Except(trainable))}]");
        var before = all.ToDictionary(p => p.name, p => p.parameter.clone());
        var output = lm.forward(f.Inputs());
        Assert.NotNull(output.Loss);
        output.Loss!.backward();
        using (no_grad())
            foreach (var (n, p) in all)
                if (p.requires_grad) p.sub_(p.grad! * 0.05);
        foreach (var (n, p) in all)
        {
            if (trainable.Contains(n))
                Assert.False(p.equal(before[n]), $"{c}/{fixture}: adapter parameter {n} did not change");
            else
            {
                Assert.True(p.equal(before[n]), $"{c}/{fixture}: base parameter {n} changed");
                Assert.Null(p.grad);
            }
        }
    }

    /// <summary>(5) Save (PEFT layout) → load into a fresh base (for PiSSA/OLoRA: the residual base) → identical outputs.</summary>
    public static void SaveLoadRoundTrip(AdapterCase c, string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = Build(c, f);
        Perturb(lm);
        var expected = f.Logits(lm);
        var dir = Directory.CreateTempSubdirectory("lowrank-adapter-").FullName;
        try
        {
            var active = lm.ActiveAdapter;
            lm.Save(dir, new AdapterSaveOptions { SelectedAdapters = new[] { active } });
            var folder = active == "default" ? dir : Path.Combine(dir, active);
            Assert.True(File.Exists(Path.Combine(folder, AdapterFiles.ConfigName)));
            var fresh = f.LoadModel();
            if (c.MutatesBase) fresh.load_state_dict(lm.GetBaseStateDict());
            using var loaded = LowRankModel.Load(fresh, folder, active);
            loaded.eval();
            AssertIdentical(expected, f.Logits(loaded), $"{c}/{fixture} reloaded");
            Assert.Equal(0, loaded.GetNbTrainableParameters().trainable);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>(6) The first adapter layer's forward and gradients (x and every trainable parameter) equal the float64
    /// reference within 1e-5 (relative to max(1, |value|)).</summary>
    public static void LayerMatchesFormula(AdapterCase c, string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = Build(c, f);
        Perturb(lm);
        var layer = lm.AdapterLayers().First(l => l.layer.ActiveAdapters.Any(l.layer.HasAdapter)).layer;
        using var g = new Generator(11);
        int rows = 6;
        var x = randn(new[] { 2L, 3, layer.InFeatures }, generator: g).requires_grad_();
        var gy = randn(new[] { 2L, 3, layer.OutFeatures }, generator: g);
        var y = layer.forward(x);
        (y * gy).sum().backward();
        var p = layer.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter.ToDoubleArray());
        var wrt = layer.named_parameters().Where(kv => kv.parameter.requires_grad).Select(kv => kv.name).ToList();
        Assert.NotEmpty(wrt);
        var xd = x.ToDoubleArray();
        var yRef = c.Reference.Forward(layer, p, xd, rows);
        AssertClose(yRef, y.ToDoubleArray(), 1e-5, $"{c}/{fixture} layer forward");
        var (dx, dp) = c.Reference.Gradients(layer, p, xd, rows, gy.ToDoubleArray(), wrt);
        AssertClose(dx, x.grad!.ToDoubleArray(), 1e-5, $"{c}/{fixture} d/dx");
        foreach (var (n, prm) in layer.named_parameters())
        {
            if (!prm.requires_grad) { Assert.Null(prm.grad); continue; }
            AssertClose(dp[n], prm.grad!.ToDoubleArray(), 1e-5, $"{c}/{fixture} d/d{n}");
        }
    }
}
