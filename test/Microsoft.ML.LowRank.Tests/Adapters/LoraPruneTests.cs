using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.LoraPrune;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>The structures of the fixtures written out independently of <see cref="PruneStructure"/>: per block, the
/// attention and MLP members with the unit of each output row (or input column).</summary>
internal static class PruneReference
{
    public sealed record Member(string Path, bool Columns, Func<long, long> Unit, long Channels, bool Carrier);

    public sealed record Group(string Name, int Layer, int Units, bool Attention, List<Member> Members);

    public static List<Group> Groups(ModelConfig c)
    {
        long h = c.HiddenSize, d = c.HeadDim, I = c.IntermediateSize;
        int H = c.NumAttentionHeads, KV = c.NumKeyValueHeads;
        long rep = H / KV;
        var list = new List<Group>();
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            switch (c.Family)
            {
                case ModelFamily.Llama:
                {
                    var p = $"model.layers.{i}";
                    list.Add(new($"{p}.self_attn", i, KV, true, new()
                    {
                        new($"{p}.self_attn.q_proj", false, ch => ch / d / rep, H * d, true),
                        new($"{p}.self_attn.k_proj", false, ch => ch / d, KV * d, true),
                        new($"{p}.self_attn.v_proj", false, ch => ch / d, KV * d, true),
                        new($"{p}.self_attn.o_proj", true, ch => ch / d / rep, H * d, false),
                    }));
                    list.Add(new($"{p}.mlp", i, (int)I, false, new()
                    {
                        new($"{p}.mlp.gate_proj", false, ch => ch, I, true),
                        new($"{p}.mlp.up_proj", false, ch => ch, I, true),
                        new($"{p}.mlp.down_proj", true, ch => ch, I, false),
                    }));
                    break;
                }
                case ModelFamily.Gpt2:
                {
                    var p = $"transformer.h.{i}";
                    list.Add(new($"{p}.attn", i, H, true, new()
                    {
                        new($"{p}.attn.c_attn", false, ch => (ch % h) / d, 3 * h, true),
                        new($"{p}.attn.c_proj", true, ch => ch / d, h, false),
                    }));
                    list.Add(new($"{p}.mlp", i, (int)I, false, new()
                    {
                        new($"{p}.mlp.c_fc", false, ch => ch, I, true),
                        new($"{p}.mlp.c_proj", true, ch => ch, I, false),
                    }));
                    break;
                }
                default:
                {
                    var p = $"bert.encoder.layer.{i}";
                    list.Add(new($"{p}.attention", i, H, true, new()
                    {
                        new($"{p}.attention.self.query", false, ch => ch / d, h, true),
                        new($"{p}.attention.self.key", false, ch => ch / d, h, true),
                        new($"{p}.attention.self.value", false, ch => ch / d, h, true),
                        new($"{p}.attention.output.dense", true, ch => ch / d, h, false),
                    }));
                    list.Add(new($"{p}.intermediate", i, (int)I, false, new()
                    {
                        new($"{p}.intermediate.dense", false, ch => ch, I, true),
                        new($"{p}.output.dense", true, ch => ch, I, false),
                    }));
                    break;
                }
            }
        }
        return list;
    }

    /// <summary>Pruned blocks: not among the first ⌊0.1·L⌋ and not the last.</summary>
    public static bool Prunable(int layer, int layers) => layer >= (int)(0.1 * layers) && layer != layers - 1;

    /// <summary>The weight in Linear layout [out, in], row-major, in float64.</summary>
    public static double[] LinearWeight(AdapterLayer l)
    {
        var w = l.BaseWeight.ToDoubleArray();
        if (!l.FanInFanOut) return w;
        int n = (int)l.InFeatures, m = (int)l.OutFeatures;
        var t = new double[m * n];
        for (int k = 0; k < n; k++)
            for (int o = 0; o < m; o++) t[o * n + k] = w[k * m + o];
        return t;
    }

    /// <summary>LoRAPrune's importance of one group in float64 loops (methods.md §5.2): per adapted member,
    /// |Ĝ ⊙ (s·B·A + W₀)| with Ĝ = g_B·A + B·g_A − g_B·g_A, summed per row (column), per unit, divided by norm + 1e-8; summed.</summary>
    public static double[] Importance(Group g, IReadOnlyDictionary<string, LoraPruneLayer> layers, double s)
    {
        var total = new double[g.Units];
        foreach (var mem in g.Members)
        {
            if (!layers.TryGetValue(mem.Path, out var l)) continue;
            int n = (int)l.InFeatures, m = (int)l.OutFeatures, r = l.Rank("default");
            var A = l.LoraA("default").weight.ToDoubleArray();
            var B = l.LoraB("default").weight.ToDoubleArray();
            var gA = l.LoraA("default").weight.grad!.ToDoubleArray();
            var gB = l.LoraB("default").weight.grad!.ToDoubleArray();
            var W = LinearWeight(l);
            var unit = new double[g.Units];
            for (int o = 0; o < m; o++)
                for (int k = 0; k < n; k++)
                {
                    double gh = 0, ba = 0;
                    for (int j = 0; j < r; j++)
                    {
                        gh += gB[o * r + j] * A[j * n + k] + B[o * r + j] * gA[j * n + k] - gB[o * r + j] * gA[j * n + k];
                        ba += B[o * r + j] * A[j * n + k];
                    }
                    double e = Math.Abs(gh * (s * ba + W[o * n + k]));
                    unit[mem.Unit(mem.Columns ? k : o)] += e;
                }
            double norm = Math.Sqrt(unit.Sum(v => v * v));
            for (int u = 0; u < unit.Length; u++) total[u] += unit[u] / (norm + 1e-8);
        }
        return total;
    }
}

/// <summary>The LoRAPrune configurations run through <see cref="AdapterInvariants"/>.</summary>
public static class LoraPruneCases
{
    public static readonly MaskedLoraReference Reference = new((_, _) => 8.0 / 4, (l, a) => ((LoraPruneLayer)l).Mask(a).ToDoubleArray());

    public static LoraPruneOptions Options() => new() { R = 4, LoraAlpha = 8, LoraDropout = 0.1 };

    /// <summary>Every prunable group keeps the units u with u % 3 != 1.</summary>
    public static bool[] Kept(int units) => Enumerable.Range(0, units).Select(u => u % 3 != 1).ToArray();

    public static readonly AdapterCase Unmasked = new()
    {
        Name = "loraprune",
        Options = Options,
        Reference = Reference,
    };

    public static readonly AdapterCase Masked = new()
    {
        Name = "loraprune_masked",
        Options = Options,
        Reference = Reference,
        Build = model =>
        {
            var lm = LowRankModel.Create(model, Options());
            var pruner = new LoraPruner(lm, "default");
            foreach (var (g, prunable) in pruner.Groups)
                if (prunable) pruner.SetKeptUnits(g.Name, Kept(g.Units));
            return lm;
        },
        CheckInit = CheckMaskedInit,
    };

    public static readonly AdapterCase[] All = { Unmasked, Masked };

    public static AdapterCase Get(string name) => All.Single(c => c.Name == name);

    public static TheoryData<string, string> Matrix()
    {
        var d = new TheoryData<string, string>();
        foreach (var c in All)
            foreach (var f in AdapterInvariants.Fixtures) d.Add(c.Name, f);
        return d;
    }

    /// <summary>
    /// The masked model's output equals the plain model whose weights the test prunes itself: W' = W + s·B·A (float64),
    /// then the rows (and bias entries) of the carriers' channels of pruned units zeroed, with the unit mapping of
    /// <see cref="PruneReference"/>.
    /// </summary>
    public static float[] IndependentMaskedLogits(AdapterFixture f, LowRankModel lm)
    {
        using var scope = NewDisposeScope();
        var c = lm.Model.Config;
        var layers = lm.AdapterLayers().ToDictionary(l => l.name, l => (LoraPruneLayer)l.layer);
        var sd = new Dictionary<string, Tensor>();
        foreach (var (path, l) in layers)
        {
            int n = (int)l.InFeatures, m = (int)l.OutFeatures, r = l.Rank("default");
            var W = PruneReference.LinearWeight(l);
            var A = l.LoraA("default").weight.ToDoubleArray();
            var B = l.LoraB("default").weight.ToDoubleArray();
            for (int o = 0; o < m; o++)
                for (int k = 0; k < n; k++)
                    for (int j = 0; j < r; j++) W[o * n + k] += 2.0 * B[o * r + j] * A[j * n + k];
            sd[path] = tensor(W, new long[] { m, n });
        }
        var biases = new Dictionary<string, double[]>();
        foreach (var g in PruneReference.Groups(c))
        {
            if (!PruneReference.Prunable(g.Layer, c.NumHiddenLayers)) continue;
            var kept = Kept(g.Units);
            foreach (var mem in g.Members.Where(x => x.Carrier))
            {
                var W = sd[mem.Path].ToDoubleArray();
                int n = (int)layers[mem.Path].InFeatures;
                var b = layers[mem.Path].BaseBias?.ToDoubleArray();
                for (long ch = 0; ch < mem.Channels; ch++)
                {
                    if (kept[mem.Unit(ch)]) continue;
                    for (int k = 0; k < n; k++) W[ch * n + k] = 0;
                    if (b is not null) b[ch] = 0;
                }
                sd[mem.Path] = tensor(W, new long[] { mem.Channels, n });
                if (b is not null) biases[mem.Path] = b;
            }
        }
        using var plain = f.LoadModel();
        using (no_grad())
            foreach (var (path, w) in sd)
            {
                var module = plain.get_submodule(path);
                var (weight, bias) = module is Linear lin ? ((Tensor)lin.weight, (Tensor?)lin.bias) : (((Conv1D)module).weight, ((Conv1D)module).bias);
                weight.copy_(module is Conv1D ? w.t() : w);
                if (biases.TryGetValue(path, out var bb)) bias!.copy_(tensor(bb));
            }
        // A trained classification head (modules_to_save) replaces the original one.
        using (no_grad())
            foreach (var (path, m) in lm.AdapterModules())
                if (m is ModulesToSaveWrapper w)
                    foreach (var (n, p) in w.Copy("default").named_parameters()) plain.get_submodule(path).get_parameter(n).copy_(p);
        return f.Logits(plain);
    }

    private static void CheckMaskedInit(AdapterFixture f, LowRankModel lm, float[] baseOut)
    {
        var expected = IndependentMaskedLogits(f, lm);
        var got = f.Logits(lm);
        AdapterInvariants.AssertClose(expected.Select(v => (double)v).ToList(), got.Select(v => (double)v).ToList(), 1e-5, $"masked init on {f}");
        Assert.False(got.AsSpan().SequenceEqual(baseOut), "the masks should change the output");
    }
}

/// <summary>design.md's six invariants for LoRAPrune without and with pruning masks (the masked case's init check is
/// the masked base computed independently; disabling gives the unpruned base).</summary>
public class LoraPruneInvariantTests
{
    public static TheoryData<string, string> Matrix => LoraPruneCases.Matrix();

    [Theory, MemberData(nameof(Matrix))]
    public void InitEqualsBase(string method, string fixture) => AdapterInvariants.InitEqualsBase(LoraPruneCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void MergeEqualsUnmergedAndUnmergeRestores(string method, string fixture) => AdapterInvariants.MergeEqualsUnmerged(LoraPruneCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void DisableEqualsBase(string method, string fixture) => AdapterInvariants.DisableEqualsBase(LoraPruneCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void TrainingStepChangesOnlyAdapterParameters(string method, string fixture) => AdapterInvariants.TrainingStepTouchesOnlyAdapters(LoraPruneCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void SaveLoadGivesIdenticalOutputs(string method, string fixture) => AdapterInvariants.SaveLoadRoundTrip(LoraPruneCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void LayerForwardAndGradientsMatchFloat64Formula(string method, string fixture) => AdapterInvariants.LayerMatchesFormula(LoraPruneCases.Get(method), fixture);
}

/// <summary>LoRAPrune: importance vs float64, masks remove exactly the lowest units, the pruned model equals the masked
/// computation, the schedule during training (with falling loss), the §8 count, and bad targets.</summary>
[Collection(SerialCollection.Name)]
public class LoraPruneTests(ITestOutputHelper output)
{
    public static TheoryData<string> Fixtures => new(AdapterInvariants.Fixtures);

    [Theory, MemberData(nameof(Fixtures))]
    public void ImportanceMatchesFloat64AndPruningMasksExactlyTheLowestUnits(string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = LowRankModel.Create(f.LoadModel(), LoraPruneCases.Options());
        AdapterInvariants.Perturb(lm, seed: 9);
        lm.eval();
        lm.forward(f.Inputs()).Loss!.backward();
        var pruner = new LoraPruner(lm, "default");
        var layers = lm.AdapterLayers().Where(l => l.layer is LoraPruneLayer).ToDictionary(l => l.name, l => (LoraPruneLayer)l.layer);
        var c = lm.Model.Config;
        var fresh = pruner.ComputeImportance();
        var groups = PruneReference.Groups(c);
        Assert.Equal(groups.Select(g => g.Name).Order(), fresh.Keys.Order());
        foreach (var g in groups)
            AdapterInvariants.AssertClose(PruneReference.Importance(g, layers, 2.0), fresh[g.Name].ToDoubleArray(), 1e-5, $"{fixture} {g.Name} importance");

        // One EMA update (S = 0.1·S_new from zero), then prune half: exactly the floor(U/2) lowest units of each prunable group.
        Assert.True(pruner.UpdateImportance());
        pruner.Prune(0.5, 0.5);
        foreach (var g in groups)
        {
            var scores = PruneReference.Importance(g, layers, 2.0).Select(v => 0.1 * v).ToArray();
            AdapterInvariants.AssertClose(scores, pruner.Scores(g.Name), 1e-5, $"{g.Name} smoothed");
            bool prunable = PruneReference.Prunable(g.Layer, c.NumHiddenLayers);
            var lowest = Enumerable.Range(0, g.Units).OrderBy(u => scores[u]).Take(prunable ? g.Units / 2 : 0).ToHashSet();
            var kept = pruner.KeptUnits(g.Name);
            for (int u = 0; u < g.Units; u++) Assert.True(kept[u] == !lowest.Contains(u), $"{g.Name} unit {u} (score {scores[u]:E3}) kept={kept[u]}");
            foreach (var mem in g.Members)
            {
                var mask = layers[mem.Path].Mask("default").ToDoubleArray();
                for (long ch = 0; ch < mask.Length; ch++)
                {
                    double want = mem.Carrier && !mem.Columns && lowest.Contains((int)mem.Unit(ch)) ? 0 : 1;
                    Assert.True(mask[ch] == want, $"{mem.Path} channel {ch}: mask {mask[ch]}, expected {want}");
                }
            }
        }
        Assert.Equal(0.5, pruner.PrunedFraction, 3);

        // A non-finite gradient skips the whole update (the reference's NaN guard).
        var snapshot = groups.ToDictionary(g => g.Name, g => pruner.Scores(g.Name));
        using (no_grad()) layers.Values.First().LoraA("default").weight.grad!.fill_(double.NaN);
        Assert.False(pruner.UpdateImportance());
        foreach (var g in groups) Assert.Equal(snapshot[g.Name], pruner.Scores(g.Name));
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void MergeAndPruneEqualsTheMaskedComputationAndShrinksTheMlp(string fixture)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        var lm = AdapterInvariants.Build(LoraPruneCases.Masked, f);
        AdapterInvariants.Perturb(lm, seed: 12);
        var masked = f.Logits(lm);
        var independent = LoraPruneCases.IndependentMaskedLogits(f, lm);
        AdapterInvariants.AssertClose(independent.Select(v => (double)v).ToList(), masked.Select(v => (double)v).ToList(), 1e-5, $"{fixture} masked model vs independent masked computation");
        var c = lm.Model.Config;
        using var pruned = LoraPruner.MergeAndPrune(lm);
        pruned.eval();
        AdapterInvariants.AssertClose(masked.Select(v => (double)v).ToList(), f.Logits(pruned).Select(v => (double)v).ToList(), 1e-5, $"{fixture} pruned model vs masked");
        foreach (var g in PruneReference.Groups(c).Where(g => !g.Attention))
        {
            long keptUnits = PruneReference.Prunable(g.Layer, c.NumHiddenLayers) ? LoraPruneCases.Kept(g.Units).Count(k => k) : g.Units;
            foreach (var mem in g.Members)
            {
                var module = pruned.get_submodule(mem.Path);
                long size = module switch
                {
                    Linear l => mem.Columns ? l.in_features : l.out_features,
                    Conv1D cv => mem.Columns ? cv.in_features : cv.out_features,
                    _ => -1,
                };
                Assert.Equal(keptUnits, size);
            }
        }
        output.WriteLine($"{fixture}: {lm.Model.parameters().Sum(p => p.numel())} parameters after merge-and-prune");
    }

    private sealed class AfterPrune(Action<TrainingContext> act) : ITrainingHook
    {
        public void AfterBackward(TrainingContext context) => act(context);
    }

    /// <summary>The reference's schedule written independently.</summary>
    private static double ExpectedRatio(int t, int T, double warm, double cool, double init, double final)
    {
        if (t <= warm * T) return init;
        if (t > T - cool * T) return final;
        double mul = 1 - (t - warm * T) / (T - (warm + cool) * T);
        return final + (init - final) * Math.Pow(mul, 3);
    }

    [Fact]
    public void TrainingPrunesOnScheduleToTheTargetAndTheLossFalls()
    {
        using var scope = NewDisposeScope();
        const int T = 40, freq = 4;
        manual_seed(7);
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        using var lm = LowRankModel.Create(model, new LoraPruneOptions { R = 8, LoraAlpha = 16, LoraDropout = 0, PruneFreq = freq });
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(256, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(32, seed: 2, vocab));
        Tensor Loss(Batch b) => lm.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!;
        using var trainer = new Trainer(lm, Loss, new TrainerOptions { LearningRate = 1e-2, BatchSize = 8, MaxSteps = T, WarmupSteps = 3, Seed = 3 });
        var pruner = trainer.Hooks.OfType<LoraPruner>().Single();
        var prunable = pruner.Groups.Where(g => g.prunable).Select(g => g.group).ToList();
        Assert.Equal(new[] { "model.layers.0.self_attn", "model.layers.0.mlp" }, prunable.Select(g => g.Name));
        int events = 0;
        trainer.Hooks.Add(new AfterPrune(ctx =>
        {
            int t = ctx.GlobalStep;
            double ratio = t == T - 1 ? 0.5 : ExpectedRatio(t, T, 0.1, 0.1, 0, 0.5);
            bool expectPrune = t == T - 1 || (t % freq == 0 && ratio > 0);
            Assert.Equal(expectPrune, pruner.PruneEvents.Count > events);
            if (!expectPrune) return;
            events = pruner.PruneEvents.Count;
            Assert.Equal((t, ratio), (pruner.PruneEvents[^1].step, pruner.PruneEvents[^1].ratio));
            foreach (var g in prunable)
                Assert.Equal((int)(g.Units * ratio), pruner.KeptUnits(g.Name).Count(k => !k));
        }));
        double before = trainer.Evaluate(heldOut);
        trainer.Train(train);
        double after = trainer.Evaluate(heldOut);
        output.WriteLine($"LoRAPrune: {events} pruning steps ({string.Join(", ", pruner.PruneEvents.Select(e => $"{e.step}:{e.ratio:F3}"))}); pruned fraction {pruner.PrunedFraction:F2}; held-out loss {before:F4} -> {after:F4}");
        Assert.Equal(0.5, pruner.PrunedFraction);
        foreach (var g in prunable) Assert.Equal(g.Units / 2, pruner.KeptUnits(g.Name).Count(k => !k));
        Assert.True(after < 0.8 * before, $"held-out loss went from {before:F3} to {after:F3}");
        // The masks travel with the adapter: a reload reproduces the pruned model's loss.
        var dir = Directory.CreateTempSubdirectory("lowrank-loraprune-").FullName;
        try
        {
            lm.Save(dir);
            using var fresh = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
            using var reloaded = LowRankModel.Load(fresh, dir, isTrainable: true);
            using var evalTrainer = new Trainer(reloaded, b => reloaded.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!,
                new TrainerOptions { BatchSize = 8 });
            Assert.Equal(after, evalTrainer.Evaluate(heldOut), 6);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ValueProjectionsMustBeAdaptedToPruneHeads()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(new AdapterFixture("llama").LoadModel(), new LoraPruneOptions { TargetModules = ModuleSelector.FromNames("q_proj", "up_proj") });
        var e = Assert.Throws<ArgumentException>(() => new Trainer(lm, b => lm.forward(b.ToModelInputs()).Loss!, new TrainerOptions()));
        Assert.Contains("model.layers.0.self_attn.v_proj", e.Message);
    }

    /// <summary>§8: LoRAPrune trains r·(in + out) per adapted matrix (masks are buffers), on every linear of the blocks
    /// by default (+ BERT's pooler, + the classification head PEFT saves).</summary>
    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("bert_cls")]
    public void ParamsCountFollowsTheFormula(string fixture)
    {
        var c = ModelConfig.FromFile(Repo.Fixture("models", fixture));
        long r = 8;
        long expected = c.NumHiddenLayers * PruneTestUtil.AllLinearShapes(c).Sum(s => r * (s.@in + s.@out))
            + PruneTestUtil.AllLinearExtra(c).Sum(s => r * (s.@in + s.@out)) + PruneTestUtil.HeadParameters(c);
        var (code, outp, err) = Cli.CliTests.Run("params", Repo.Fixture("models", fixture), "--method", "loraprune", "--rank", "8", "--json");
        Assert.True(code == 0, err);
        Assert.Equal(expected, JsonNode.Parse(outp)!["trainable"]!.GetValue<long>());
    }
}
