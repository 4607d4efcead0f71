using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.LoraDrop;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>
/// A LoRA-shaped layer in float64 loops, y = m ⊙ (x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ), with an optional per-output mask m (all ones
/// unless given: LoRAPrune's mask) and analytic gradients (gy replaced by gy ⊙ m). Used for LoRA-drop and LoRAPrune.
/// </summary>
public sealed class MaskedLoraReference(Func<AdapterLayer, string, double> scaling, Func<AdapterLayer, string, double[]?> mask) : AdapterReference
{
    private IEnumerable<(string a, double s, int r, double[]? m)> Active(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p)
    {
        foreach (var a in layer.ActiveAdapters)
            if (layer.HasAdapter(a))
                yield return (a, scaling(layer, a), p[$"lora_A.{a}.weight"].Length / (int)layer.InFeatures, mask(layer, a));
    }

    public override double[] Forward(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p, double[] x, int rows)
    {
        var y = BaseForward(layer, p, x, rows);
        int n = (int)layer.InFeatures, m = (int)layer.OutFeatures;
        var masks = new List<double[]>();
        foreach (var (a, s, r, mk) in Active(layer, p))
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
            if (mk is not null) masks.Add(mk);
        }
        foreach (var mk in masks)
            for (int i = 0; i < rows; i++)
                for (int o = 0; o < m; o++) y[i * m + o] *= mk[o];
        return y;
    }

    public override (double[] dx, Dictionary<string, double[]> dp) Gradients(AdapterLayer layer, IReadOnlyDictionary<string, double[]> p,
        double[] x, int rows, double[] gy, IReadOnlyCollection<string> wrt)
    {
        int n = (int)layer.InFeatures, m = (int)layer.OutFeatures;
        var g = (double[])gy.Clone();
        var active = Active(layer, p).ToList();
        foreach (var (_, _, _, mk) in active)
            if (mk is not null)
                for (int i = 0; i < rows; i++)
                    for (int o = 0; o < m; o++) g[i * m + o] *= mk[o];
        var w = p["base_layer.weight"];
        var dx = new double[rows * n];
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < n; k++)
            {
                double t = 0;
                for (int o = 0; o < m; o++) t += g[i * m + o] * (layer.FanInFanOut ? w[k * m + o] : w[o * n + k]);
                dx[i * n + k] = t;
            }
        var dp = new Dictionary<string, double[]>();
        foreach (var (a, s, r, _) in active)
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
                    for (int o = 0; o < m; o++) gh[j] += s * g[i * m + o] * B[o * r + j];
                for (int o = 0; o < m; o++)
                    for (int j = 0; j < r; j++) dB[o * r + j] += s * g[i * m + o] * h[j];
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
        foreach (var name in wrt) Assert.True(dp.ContainsKey(name), $"the reference has no gradient for trainable '{name}'");
        return (dx, dp);
    }
}

/// <summary>The LoRA-drop configuration run through <see cref="AdapterInvariants"/>: all-linear, block 0's attention
/// modules keep their own LoRA, every other module shares its type's LoRA (so the MLP types are shared by both blocks).</summary>
public static class LoraDropCases
{
    public static readonly MaskedLoraReference Reference = new((l, a) => 8.0 / 4, (_, _) => null);

    public static LoraDropOptions Options() => new() { R = 4, LoraAlpha = 8, LoraDropout = 0.1, TargetModules = ModuleSelector.AllLinear };

    public static readonly AdapterCase LoraDrop = new()
    {
        Name = "loradrop",
        Options = Options,
        Reference = Reference,
        Build = model =>
        {
            var o = Options();
            o.KeptModules = model.named_modules().Select(m => m.name)
                .Where(n => (n.Contains(".0.attn.") || n.Contains(".0.self_attn.") || n.Contains(".0.attention.")) && AdapterLayer.IsSupportedBaseLayer(model.get_submodule(n))).ToList();
            return LowRankModel.Create(model, o);
        },
    };
}

/// <summary>LoRA-drop: the invariants, shared factors and the §8 count, the importance and selection against an
/// independent float64 computation, the two-stage procedure with falling loss, stratified sampling.</summary>
[Collection(SerialCollection.Name)]
public class LoraDropTests(ITestOutputHelper output)
{
    public static TheoryData<string> Fixtures => new(AdapterInvariants.Fixtures);

    private static AdapterCase Case => LoraDropCases.LoraDrop;

    [Theory, MemberData(nameof(Fixtures))]
    public void InitEqualsBase(string fixture) => AdapterInvariants.InitEqualsBase(Case, fixture);

    [Theory, MemberData(nameof(Fixtures))]
    public void MergeEqualsUnmergedAndUnmergeRestores(string fixture) => AdapterInvariants.MergeEqualsUnmerged(Case, fixture);

    [Theory, MemberData(nameof(Fixtures))]
    public void DisableEqualsBase(string fixture) => AdapterInvariants.DisableEqualsBase(Case, fixture);

    [Theory, MemberData(nameof(Fixtures))]
    public void SaveLoadGivesIdenticalOutputs(string fixture) => AdapterInvariants.SaveLoadRoundTrip(Case, fixture);

    [Theory, MemberData(nameof(Fixtures))]
    public void LayerForwardAndGradientsMatchFloat64Formula(string fixture) => AdapterInvariants.LayerMatchesFormula(Case, fixture);

    /// <summary>Invariant 4, adapted (documented exception): a shared factor is one parameter registered under every
    /// sharing layer, so the shared fixture's name-based comparison does not apply; here trainable parameters are
    /// compared by identity. After one SGD step every adapter parameter changed and every base parameter is
    /// bit-identical.</summary>
    [Theory, MemberData(nameof(Fixtures))]
    public void TrainingStepChangesOnlyAdapterParameters(string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = AdapterInvariants.Build(Case, f);
        AdapterInvariants.Perturb(lm);
        var expected = new HashSet<nn.Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var (_, m) in lm.AdapterModules())
            foreach (var (_, p) in m.AdapterParameters("default")) expected.Add(p);
        var all = lm.named_parameters().ToList();
        var trainable = all.Where(p => p.parameter.requires_grad).Select(p => p.parameter).ToHashSet(ReferenceEqualityComparer.Instance);
        Assert.True(expected.SetEquals(trainable.Cast<nn.Parameter>()), "the trainable parameters are not exactly the adapter's");
        var before = all.ToDictionary(p => p.name, p => p.parameter.clone());
        lm.forward(f.Inputs()).Loss!.backward();
        using (no_grad())
            foreach (var (_, p) in all)
                if (p.requires_grad) p.sub_(p.grad! * 0.05);
        foreach (var (n, p) in all)
        {
            if (p.requires_grad) Assert.False(p.equal(before[n]), $"adapter parameter {n} did not change");
            else Assert.True(p.equal(before[n]), $"base parameter {n} changed");
        }
    }

    /// <summary>Per module type: dropped layers use one pair of factors (the same objects), and the trainable count is
    /// (kept + 1)·r·(in + out) when a layer is dropped, kept·r·(in + out) otherwise (methods.md §8), in memory and
    /// through <c>lowrank params</c>.</summary>
    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("bert_cls")]
    public void DroppedLayersShareOneLoraPerTypeAndTheCountFollowsTheFormula(string fixture)
    {
        using var scope = NewDisposeScope();
        var c = ModelConfig.FromFile(Repo.Fixture("models", fixture));
        const int r = 4;
        // Keep block 1's modules of the first type (and nothing else): that type has 1 kept + 1 shared, every other type only shared.
        var shapes = PruneTestUtil.AllLinearShapes(c);
        using var model = PretrainedModel.Load(Repo.Fixture("models", fixture), dtype: ScalarType.Float32);
        var firstType = shapes[0].name;
        var kept = model.named_modules().Select(m => m.name).Where(n => n.EndsWith("." + firstType, StringComparison.Ordinal) && LoraDropOptions.ModuleType(n) != n && n.Contains(".1.")).ToList();
        Assert.Single(kept);
        long expected = 0;
        foreach (var (name, i, o) in shapes)
        {
            int keptOfType = name == firstType ? 1 : 0, dropped = c.NumHiddenLayers - keptOfType;
            expected += (keptOfType + (dropped > 0 ? 1 : 0)) * r * (i + o);
        }
        foreach (var (i, o) in PruneTestUtil.AllLinearExtra(c)) expected += r * (i + o); // the pooler: one layer, shared
        expected += PruneTestUtil.HeadParameters(c);
        using var lm = LowRankModel.Create(model, new LoraDropOptions { R = r, LoraAlpha = 8, TargetModules = ModuleSelector.AllLinear, KeptModules = kept });
        Assert.Equal(expected, lm.GetNbTrainableParameters().trainable);
        foreach (var type in lm.AdapterLayers().GroupBy(l => LoraDropOptions.ModuleType(l.name)))
        {
            var dropped = type.Where(l => !kept.Contains(l.name)).Select(l => (LoraDropLayer)l.layer).ToList();
            Assert.All(dropped, l => Assert.True(l.IsShared("default")));
            Assert.All(dropped, l => Assert.Same(dropped[0].LoraA("default"), l.LoraA("default")));
            Assert.All(type.Where(l => kept.Contains(l.name)), l => Assert.False(((LoraDropLayer)l.layer).IsShared("default")));
        }
        var (code, outp, err) = Cli.CliTests.Run("params", Repo.Fixture("models", fixture), "--method", "loradrop", "--rank", "4", "--targets", "all-linear",
            "--set", "lora_drop_kept_modules=[\"" + kept[0] + "\"]", "--json");
        Assert.True(code == 0, err);
        Assert.Equal(expected, JsonNode.Parse(outp)!["trainable"]!.GetValue<long>());
    }

    /// <summary>Records a module's inputs (to compute the importance independently of the layer's own accounting).</summary>
    private sealed class InputRecorder(nn.Module<Tensor, Tensor> inner) : nn.Module<Tensor, Tensor>("InputRecorder")
    {
        public List<double[]> Inputs { get; } = new();
        public nn.Module<Tensor, Tensor> Inner => inner;

        public override Tensor forward(Tensor input)
        {
            Inputs.Add(input.ToDoubleArray());
            return inner.call(input);
        }
    }

    private static List<TokenExample> VariableLengthExamples(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => new TokenExample(Enumerable.Range(0, rng.Next(4, 13)).Select(_ => (long)rng.Next(3, 97)).ToArray())).ToList();
    }

    [Fact]
    public void ImportanceAndSelectionMatchAnIndependentFloat64Computation()
    {
        using var scope = NewDisposeScope();
        manual_seed(17);
        var config = ModelConfig.FromFile(Repo.Fixture("models", "llama"));
        config.NumHiddenLayers = 4;
        using var model = new PretrainedModel(config, ModelTask.CausalLM, dtype: ScalarType.Float32);
        using var lm = LowRankModel.Create(model, new LoraDropOptions { R = 4, LoraAlpha = 8, TargetModules = ModuleSelector.FromNames("q_proj", "v_proj", "down_proj") });
        // Trained-looking factors whose size grows with the block, so that the selection is not trivial.
        using (no_grad())
            foreach (var (path, l) in lm.AdapterLayers())
            {
                var layer = (LoraDropLayer)l;
                int block = int.Parse(path.Split('.')[2]);
                layer.LoraB("default").weight.copy_(randn(layer.LoraB("default").weight.shape) * (0.1 * (1 + 2 * block)));
            }
        var data = new TokenBatcher(VariableLengthExamples(20, seed: 3));
        var measured = LoraDropProcedure.MeasureImportance(lm, data, batchSize: 6);

        // Independent: record every adapted layer's inputs, then g = Σ over non-padding tokens of ||s·B·A·x||² in float64.
        var recorders = new Dictionary<string, InputRecorder>();
        foreach (var (path, l) in lm.AdapterLayers().ToList())
        {
            var rec = new InputRecorder(l);
            lm.Model.set_submodule(path, rec);
            recorders[path] = rec;
        }
        var masks = new List<double[]>();
        lm.eval();
        foreach (var batch in DataOrder.Batches(data, 6))
        {
            using var s = NewDisposeScope();
            using var ng = no_grad();
            masks.Add(batch.AttentionMask!.ToDoubleArray());
            lm.forward(new ModelInputs { InputIds = batch.InputIds, AttentionMask = batch.AttentionMask });
        }
        var independent = new Dictionary<string, double>();
        foreach (var (path, rec) in recorders)
        {
            var layer = (LoraDropLayer)rec.Inner;
            int n = (int)layer.InFeatures, m = (int)layer.OutFeatures, r = 4;
            double sc = 8.0 / 4;
            var A = layer.LoraA("default").weight.ToDoubleArray();
            var B = layer.LoraB("default").weight.ToDoubleArray();
            double g = 0;
            for (int b = 0; b < rec.Inputs.Count; b++)
            {
                var x = rec.Inputs[b];
                int tokens = x.Length / n;
                for (int t = 0; t < tokens; t++)
                {
                    if (masks[b][t] == 0) continue;
                    var h = new double[r];
                    for (int j = 0; j < r; j++)
                        for (int k = 0; k < n; k++) h[j] += A[j * n + k] * x[t * n + k];
                    for (int o = 0; o < m; o++)
                    {
                        double y = 0;
                        for (int j = 0; j < r; j++) y += B[o * r + j] * h[j];
                        g += sc * sc * y * y;
                    }
                }
            }
            independent[path] = g;
            lm.Model.set_submodule(path, layer);
        }
        Assert.Equal(independent.Keys.Order(), measured.Keys.Order());
        foreach (var (path, g) in independent)
            Assert.True(Math.Abs(measured[path] - g) <= 1e-5 * g, $"{path}: importance {measured[path]} vs float64 {g}");

        // Selection, written independently: per module type, normalise, sort descending, keep until the sum reaches T.
        const double T = 0.7;
        var expectedKept = new List<string>();
        foreach (var type in independent.GroupBy(kv => System.Text.RegularExpressions.Regex.Replace(kv.Key, @"\.\d+\.", ".#.")))
        {
            double total = type.Sum(kv => kv.Value), cum = 0;
            foreach (var kv in type.OrderByDescending(kv => kv.Value))
            {
                expectedKept.Add(kv.Key);
                cum += kv.Value / total;
                if (cum >= T) break;
            }
        }
        var kept = LoraDropProcedure.SelectKeptModules(measured, T);
        Assert.Equal(expectedKept.Order(), kept);
        Assert.True(kept.Count < independent.Count, "the selection should drop some layers");
        output.WriteLine($"kept {kept.Count} of {independent.Count}: {string.Join(", ", kept)}");
    }

    [Fact]
    public void TwoStageRunTrainsOnASampleKeepsTheBaseAndStage2LossFalls()
    {
        using var scope = NewDisposeScope();
        manual_seed(23);
        // The tiny llama fixture with its two blocks stacked twice (4 blocks), so that layers can be dropped.
        var config = ModelConfig.FromFile(Repo.Fixture("models", "llama"));
        config.NumHiddenLayers = 4;
        var model = new PretrainedModel(config, ModelTask.CausalLM, dtype: ScalarType.Float32);
        using (var two = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32))
        {
            var sd = two.state_dict();
            foreach (var (k, v) in sd.ToList())
                if (k.StartsWith("model.layers.", StringComparison.Ordinal))
                    sd[k.Replace("model.layers.0.", "model.layers.2.").Replace("model.layers.1.", "model.layers.3.")] = v;
            model.load_state_dict(sd);
        }
        var baseWeights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(256, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(32, seed: 2, vocab));
        var options = new LoraDropOptions { R = 4, LoraAlpha = 16, TargetModules = ModuleSelector.AllLinear, Threshold = 0.5, SampleRatio = 0.25 };
        var result = LoraDropProcedure.Run(model, options, train, new TrainerOptions { LearningRate = 1e-2, BatchSize = 8, MaxSteps = 8, Seed = 5 });
        using var lm = result.Model;
        Assert.Equal(64, result.SampleIndices.Count);
        Assert.Equal(8, result.Stage1.GlobalStep);
        Assert.Equal(28, result.Importance.Count);
        Assert.All(result.Importance.Values, g => Assert.True(g > 0));
        Assert.Equal(LoraDropProcedure.SelectKeptModules(result.Importance, 0.5), result.KeptModules);
        Assert.InRange(result.KeptModules.Count, 7, 20);
        Assert.Equal(result.KeptModules, ((LoraDropOptions)lm.PeftConfig["default"]).KeptModules);
        // Stage 1 never touched the base; stage 2 starts from scratch (B = 0: the model equals the base).
        foreach (var (k, v) in lm.GetBaseStateDict()) Assert.True(baseWeights[k].equal(v), $"base weight {k} changed");
        Assert.All(lm.AdapterLayers(), l => Assert.Equal(0, ((LoraDropLayer)l.layer).LoraB("default").weight.abs().sum().ToDouble()));
        long expected = 0;
        foreach (var type in lm.AdapterLayers().GroupBy(l => LoraDropOptions.ModuleType(l.name)))
        {
            int keptOfType = type.Count(l => result.KeptModules.Contains(l.name)), dropped = type.Count() - keptOfType;
            var any = type.First().layer;
            expected += (keptOfType + (dropped > 0 ? 1 : 0)) * 4 * (any.InFeatures + any.OutFeatures);
        }
        Assert.Equal(expected, lm.GetNbTrainableParameters().trainable);

        Tensor Loss(Batch b) => lm.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!;
        using var trainer = new Trainer(lm, Loss, new TrainerOptions { LearningRate = 2e-2, BatchSize = 8, MaxSteps = 30, WarmupSteps = 3, Seed = 3 });
        double before = trainer.Evaluate(heldOut);
        trainer.Train(train);
        double after = trainer.Evaluate(heldOut);
        long plainLora = lm.AdapterLayers().Sum(l => 4 * (l.layer.InFeatures + l.layer.OutFeatures));
        output.WriteLine($"LoRA-drop: kept {result.KeptModules.Count} of 28 modules, {expected} trainable parameters ({100.0 * expected / plainLora:F1}% of LoRA's {plainLora}); stage-2 held-out loss {before:F4} -> {after:F4}");
        Assert.True(after < 0.8 * before, $"stage-2 held-out loss went from {before:F3} to {after:F3}");
    }

    [Fact]
    public void StratifiedSampleKeepsEachStratumsShare()
    {
        var strata = Enumerable.Range(0, 100).Select(i => i < 30 ? 1 : i < 90 ? 0 : 2).ToArray();
        var s = LoraDropProcedure.StratifiedSample(100, 0.2, strata, seed: 4);
        Assert.Equal(20, s.Length);
        Assert.Equal(s.Length, s.Distinct().Count());
        Assert.Equal(6, s.Count(i => strata[i] == 1));
        Assert.Equal(12, s.Count(i => strata[i] == 0));
        Assert.Equal(2, s.Count(i => strata[i] == 2));
        Assert.Equal(s, LoraDropProcedure.StratifiedSample(100, 0.2, strata, seed: 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => LoraDropProcedure.StratifiedSample(100, 0, strata));
    }
}
