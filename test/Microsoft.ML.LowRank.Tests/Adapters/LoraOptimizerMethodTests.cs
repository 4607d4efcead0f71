using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Adapters.LoraFa;
using Microsoft.ML.LowRank.Adapters.LoraPro;
using Microsoft.ML.LowRank.Adapters.LoraRite;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Cli;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Xunit.Abstractions;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>The LoRA-FA, LoRA-Pro and LoRA-RITE configurations for the invariant fixture (their forward is LoRA's).</summary>
public static class LoraOptimizerMethodCases
{
    private static readonly LoraReference s_ref = new();

    public static readonly AdapterCase LoraFa = new()
    {
        Name = "lorafa",
        Options = () => new LoraFaOptions { R = 4, LoraAlpha = 8, LoraDropout = 0.1 },
        Reference = s_ref,
    };

    public static readonly AdapterCase LoraPro = new()
    {
        Name = "lorapro",
        Options = () => new LoraProOptions { R = 4, LoraAlpha = 16, UseRsLora = true, TargetModules = ModuleSelector.AllLinear },
        Reference = s_ref,
    };

    public static readonly AdapterCase LoraRite = new()
    {
        Name = "lorarite",
        Options = () => new LoraRiteOptions { R = 2, LoraAlpha = 8 },
        Reference = s_ref,
    };

    public static readonly AdapterCase[] All = { LoraFa, LoraPro, LoraRite };

    public static AdapterCase Get(string name) => All.Single(c => c.Name == name);

    public static TheoryData<string, string> Matrix()
    {
        var d = new TheoryData<string, string>();
        foreach (var c in All)
            foreach (var f in AdapterInvariants.Fixtures) d.Add(c.Name, f);
        return d;
    }
}

/// <summary>
/// design.md's six invariants for the optimizer-side LoRA methods. Documented exception: LoRA-FA's A factors are adapter
/// parameters that do not train, so its check 4 is <see cref="LoraFaTrainingStepChangesOnlyB"/> (trainable = the adapter's
/// parameters minus lora_A; after a step A is bit-identical and has no gradient) instead of the shared one.
/// </summary>
public class LoraOptimizerMethodInvariantTests
{
    public static TheoryData<string, string> Matrix => LoraOptimizerMethodCases.Matrix();

    [Theory, MemberData(nameof(Matrix))]
    public void InitEqualsBase(string method, string fixture) => AdapterInvariants.InitEqualsBase(LoraOptimizerMethodCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void MergeEqualsUnmergedAndUnmergeRestores(string method, string fixture) => AdapterInvariants.MergeEqualsUnmerged(LoraOptimizerMethodCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void DisableEqualsBase(string method, string fixture) => AdapterInvariants.DisableEqualsBase(LoraOptimizerMethodCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void TrainingStepChangesOnlyAdapterParameters(string method, string fixture)
    {
        if (method == "lorafa") LoraFaTrainingStepChangesOnlyB(fixture);
        else AdapterInvariants.TrainingStepTouchesOnlyAdapters(LoraOptimizerMethodCases.Get(method), fixture);
    }

    [Theory, MemberData(nameof(Matrix))]
    public void SaveLoadGivesIdenticalOutputs(string method, string fixture) => AdapterInvariants.SaveLoadRoundTrip(LoraOptimizerMethodCases.Get(method), fixture);

    [Theory, MemberData(nameof(Matrix))]
    public void LayerForwardAndGradientsMatchFloat64Formula(string method, string fixture) => AdapterInvariants.LayerMatchesFormula(LoraOptimizerMethodCases.Get(method), fixture);

    /// <summary>Check 4 for LoRA-FA: the trainable set is the adapter's parameters minus every lora_A; one SGD step changes
    /// exactly those; A and the base are bit-identical and get no gradient.</summary>
    private static void LoraFaTrainingStepChangesOnlyB(string fixture)
    {
        using var scope = NewDisposeScope();
        var c = LoraOptimizerMethodCases.LoraFa;
        var f = new AdapterFixture(fixture);
        using var lm = AdapterInvariants.Build(c, f);
        AdapterInvariants.Perturb(lm);
        var adapterParams = new HashSet<string>();
        foreach (var (path, m) in lm.AdapterModules())
            foreach (var (n, _) in m.AdapterParameters("default")) adapterParams.Add("base_model.model." + path + "." + n);
        var expected = adapterParams.Where(n => !n.Contains(".lora_A.")).ToHashSet();
        Assert.Contains(adapterParams, n => n.Contains(".lora_A."));
        var all = lm.named_parameters().ToList();
        var trainable = all.Where(p => p.parameter.requires_grad).Select(p => p.name).ToHashSet();
        Assert.True(expected.SetEquals(trainable),
            $"trainable parameters differ: extra [{string.Join(", ", trainable.Except(expected))}], missing [{string.Join(", ", expected.Except(trainable))}]");
        var before = all.ToDictionary(p => p.name, p => p.parameter.clone());
        lm.forward(f.Inputs()).Loss!.backward();
        using (no_grad())
            foreach (var (_, p) in all)
                if (p.requires_grad) p.sub_(p.grad! * 0.05);
        foreach (var (n, p) in all)
        {
            if (trainable.Contains(n)) Assert.False(p.equal(before[n]), $"lorafa/{fixture}: {n} did not change");
            else
            {
                Assert.True(p.equal(before[n]), $"lorafa/{fixture}: {n} changed");
                Assert.Null(p.grad);
            }
        }
    }
}

/// <summary>Parameter counts, configs, the Trainer integration and training behaviour of LoRA-FA, LoRA-Pro and LoRA-RITE.</summary>
[Collection(SerialCollection.Name)]
public class LoraOptimizerMethodTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> MethodsAndModels
    {
        get
        {
            var d = new TheoryData<string, string>();
            foreach (var m in new[] { "lorafa", "lorapro", "lorarite" })
                foreach (var f in new[] { "gpt2", "llama", "bert_cls" }) d.Add(m, f);
            return d;
        }
    }

    /// <summary>
    /// methods.md §8: LoRA-FA trains r·out per adapted matrix (A frozen), LoRA-Pro and LoRA-RITE r·(in + out), on the
    /// default targets (gpt2: c_attn 32→96; llama: q_proj, v_proj 32→32; bert: query, value 32→32 plus the classifier
    /// head saved whole, hidden·labels + labels).
    /// </summary>
    [Theory, MemberData(nameof(MethodsAndModels))]
    public void ParamsCliCountsFollowTheFormula(string method, string fixture)
    {
        var c = ModelConfig.FromFile(Repo.Fixture("models", fixture));
        const long r = 4;
        long h = c.HiddenSize;
        (long inF, long outF)[] matrices = fixture switch
        {
            "gpt2" => new[] { (h, 3 * h) },
            "llama" => new[] { (h, c.NumAttentionHeads * c.HeadDim), (h, c.NumKeyValueHeads * c.HeadDim) },
            _ => new[] { (h, h), (h, h) },
        };
        long perLayer = matrices.Sum(m => method == "lorafa" ? r * m.outF : r * (m.inF + m.outF));
        long expected = perLayer * c.NumHiddenLayers + (fixture == "bert_cls" ? h * c.NumLabels + c.NumLabels : 0);
        var (code, text, err) = CliTests.Run("params", Repo.Fixture("models", fixture), "--method", method, "--rank", "4", "--json");
        Assert.True(code == 0, err);
        Assert.Equal(expected, JsonNode.Parse(text)!["trainable"]!.GetValue<long>());
    }

    [Theory]
    [InlineData("lorafa", typeof(LoraFaOptions))]
    [InlineData("lorapro", typeof(LoraProOptions))]
    [InlineData("lorarite", typeof(LoraRiteOptions))]
    public void ConfigIsAPeftLoraConfigThatReadsBackAsTheMethod(string method, Type type)
    {
        var options = AdapterMethods.Create(method);
        Assert.IsType(type, options);
        var json = JsonNode.Parse(options.ToJson())!.AsObject();
        Assert.Equal("LORA", json["peft_type"]!.GetValue<string>());
        Assert.Equal(method, json[LoraOptimizerMethodOptions.MethodKey]!.GetValue<string>());
        Assert.IsType(type, LowRankAdapterOptions.FromJson(json.ToJsonString()));
        // Without the key the same config is a plain LoRA config.
        json.Remove(LoraOptimizerMethodOptions.MethodKey);
        Assert.IsType<LoraOptions>(LowRankAdapterOptions.FromJson(json.ToJsonString()));
    }

    [Fact]
    public void MethodSettingsGoThroughTheConfigKeys()
    {
        var fa = (LoraFaOptions)AdapterMethods.WithSettings(new LoraFaOptions(), new Dictionary<string, string> { ["lorafa_gradient_projection"] = "false", ["r"] = "16" });
        Assert.False(fa.ProjectGradient);
        Assert.Equal(16, fa.R);
        var rite = (LoraRiteOptions)AdapterMethods.WithSettings(new LoraRiteOptions(), new Dictionary<string, string> { ["lorarite_update_skipping"] = "0", ["lorarite_balance_param"] = "true" });
        Assert.Equal(0, rite.UpdateSkipping);
        Assert.True(rite.BalanceParam);
        var pro = (LoraProOptions)AdapterMethods.WithSettings(new LoraProOptions(), new Dictionary<string, string> { ["lorapro_sylvester"] = "false" });
        Assert.False(pro.UseSylvester);
        var e = Assert.Throws<ArgumentException>(() => AdapterMethods.WithSettings(new LoraProOptions(), new Dictionary<string, string> { ["lorapro_eps"] = "-1" }));
        Assert.Contains("lorapro_eps", e.Message);
    }

    [Fact]
    public void ALoraFaAdapterLoadedForTrainingKeepsAFrozen()
    {
        using var scope = NewDisposeScope();
        var dir = Directory.CreateTempSubdirectory("lowrank-lorafa-").FullName;
        try
        {
            using (var lm = LowRankModel.Create(PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32), new LoraFaOptions { R = 4 }))
                lm.Save(dir);
            using var loaded = LowRankModel.Load(PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32), dir, isTrainable: true);
            Assert.IsType<LoraFaOptions>(loaded.PeftConfig["default"]);
            var trainable = loaded.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
            Assert.NotEmpty(trainable);
            Assert.All(trainable, n => Assert.Contains(".lora_B.", n));
            // A is still saved with the adapter.
            var keys = Safetensors.Load(Path.Combine(dir, AdapterFiles.WeightsName)).Keys;
            Assert.Contains(keys, k => k.EndsWith(".lora_A.weight", StringComparison.Ordinal));
        }
        finally { Directory.Delete(dir, true); }
    }

    private static Tensor Loss(LowRankModel peft, Batch b)
        => peft.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!;

    [Fact]
    public void TheTrainerInstallsTheMethodsOptimizerOverPairsFoundByModule()
    {
        using var scope = NewDisposeScope();
        using var peft = LowRankModel.Create(PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32),
            new LoraRiteOptions { R = 4, LoraAlpha = 8, RankPattern = new Dictionary<string, int> { ["v_proj"] = 2 }, UseRsLora = true });
        using var trainer = new Trainer(peft, b => Loss(peft, b), new TrainerOptions { LearningRate = 1e-3 });
        var opt = Assert.IsType<optim.LoraRiteOptimizer>(trainer.Optimizer);
        var pairs = LoraPairs.Find(peft);
        Assert.Equal(4, opt.pairs.Count); // q_proj and v_proj in 2 layers
        Assert.Equal(pairs.Select(p => p.Name), opt.pairs.Select(p => p.Name));
        foreach (var (path, layer) in peft.AdapterLayers())
        {
            var lora = (LoraLayer)layer;
            var pair = opt.pairs.Single(p => p.Name == path + "/default");
            Assert.Same(lora.LoraA("default").weight, pair.A);
            Assert.Same(lora.LoraB("default").weight, pair.B);
            Assert.Equal(lora.Scaling("default"), pair.Scaling); // each layer's own: α/√r with r = 4 or 2
        }
        Assert.Equal(2, opt.pairs.Select(p => p.Scaling).Distinct().Count());

        // A user-set factory conflicts with the method's.
        var e = Assert.Throws<InvalidOperationException>(() => new Trainer(peft, b => Loss(peft, b),
            new TrainerOptions { OptimizerFactory = (g, o) => optim.AdamW(g, o.LearningRate) }));
        Assert.Contains("OptimizerFactory", e.Message);
    }

    [Fact]
    public void OnlyTheActiveAdaptersPairsAreOptimizedAndMethodsDoNotMix()
    {
        using var scope = NewDisposeScope();
        using var peft = LowRankModel.Create(PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32), new LoraProOptions { R = 4 });
        peft.AddAdapter("other", new LoraProOptions { R = 2 });
        peft.AddAdapter("inactive_fa", new LoraFaOptions { R = 2 }); // inactive: neither trained nor installing its optimizer
        peft.SetAdapter("other");
        using (var trainer = new Trainer(peft, b => Loss(peft, b)))
        {
            var opt = Assert.IsType<optim.LoraProOptimizer>(trainer.Optimizer);
            Assert.Equal(4, opt.pairs.Count);
            Assert.All(opt.pairs, p => Assert.EndsWith("/other", p.Name));
            Assert.All(opt.pairs, p => Assert.Equal(2, p.Rank));
        }
        // A LoRA-FA adapter next to a LoRA-Pro one (both LoRA configs): the two optimizers cannot both be installed.
        peft.AddAdapter("fa", new LoraFaOptions { R = 2 });
        peft.SetAdapter("other", "fa");
        var e = Assert.Throws<InvalidOperationException>(() => new Trainer(peft, b => Loss(peft, b)));
        Assert.Contains("lorafa", e.Message);
    }

    [Theory]
    [InlineData("lorafa", 1e-2)]
    [InlineData("lorapro", 1e-2)]
    [InlineData("lorarite", 1e-2)]
    public void TrainingLowersHeldOutLossAndMovesOnlyTheTrainedFactors(string method, double lr)
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        var baseBefore = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var options = AdapterMethods.WithSettings(AdapterMethods.Create(method), new Dictionary<string, string>
        {
            ["r"] = "8", ["lora_alpha"] = "16", ["target_modules"] = "[\"q_proj\", \"v_proj\", \"down_proj\"]",
        });
        using var peft = LowRankModel.Create(model, options);
        var aBefore = peft.named_parameters().Where(p => p.name.Contains(".lora_A.")).ToDictionary(p => p.name, p => p.parameter.clone());
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(128, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(32, seed: 2, vocab));
        using var trainer = new Trainer(peft, b => Loss(peft, b), new TrainerOptions
        {
            LearningRate = lr, BatchSize = 8, MaxSteps = 30, WarmupSteps = 4, Schedule = LearningRateSchedule.Cosine, Seed = 3,
        });
        Assert.Equal(method switch { "lorafa" => typeof(optim.LoraFAOptimizer), "lorapro" => typeof(optim.LoraProOptimizer), _ => typeof(optim.LoraRiteOptimizer) },
            trainer.Optimizer.GetType());
        double before = trainer.Evaluate(heldOut);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        trainer.Train(train);
        double after = trainer.Evaluate(heldOut);
        output.WriteLine($"{method}: held-out loss {before:F4} -> {after:F4} in {clock.Elapsed.TotalSeconds:F1} s (30 steps)");
        Assert.True(after < 0.8 * before, $"{method}: held-out loss went from {before:F3} to {after:F3} (needs a 20% drop)");

        foreach (var (name, a) in aBefore)
        {
            var now = peft.get_parameter(name);
            if (method == "lorafa") Assert.True(now.equal(a), $"LoRA-FA changed the frozen {name}");
            else Assert.False(now.equal(a), $"{method} did not train {name}");
        }
        foreach (var (name, p) in peft.named_parameters())
        {
            if (name.Contains("lora_")) continue;
            var key = name.Replace("base_model.model.", "").Replace(".base_layer", "");
            Assert.True(baseBefore[key].equal(p), $"base weight {name} changed");
        }
    }

    [Theory]
    [InlineData("lorafa")]
    [InlineData("lorapro")]
    [InlineData("lorarite")]
    public void ATrainerCheckpointResumesBitIdentically(string method)
    {
        using var scope = NewDisposeScope();
        var dir = Path.Combine(Path.GetTempPath(), $"lowrank-{method}-resume-" + Guid.NewGuid().ToString("N"));
        try
        {
            var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(24, seed: 4, 97));
            TrainerOptions Options(string? folder) => new()
            {
                LearningRate = 1e-2, BatchSize = 4, MaxSteps = 6, WarmupSteps = 1, CheckpointFolder = folder, SaveSteps = 3, Seed = 11,
            };
            LowRankModel Build() => LowRankModel.Create(PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32),
                AdapterMethods.WithSettings(AdapterMethods.Create(method), new Dictionary<string, string> { ["r"] = "4" }));
            IReadOnlyList<double> full;
            using (var peft = Build())
            using (var t = new Trainer(peft, b => Loss(peft, b), Options(dir)))
                full = t.Train(train).StepLosses;
            using (var peft = Build())
            using (var t = new Trainer(peft, b => Loss(peft, b), Options(null)))
            {
                var resumed = t.Train(train, resumeFromCheckpoint: Path.Combine(dir, Checkpoints.FolderName(3)));
                Assert.Equal(full, resumed.StepLosses);
                var final = Safetensors.Load(Path.Combine(dir, Checkpoints.FolderName(6), Checkpoints.ParametersFileName));
                foreach (var (name, p) in t.TrainableParameters) Assert.Equal(final[name].ToArray<float>(), p.ToArray<float>());
            }
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, true);
        }
    }
}
