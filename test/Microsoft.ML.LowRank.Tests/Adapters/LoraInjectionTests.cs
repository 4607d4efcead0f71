using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>Injection by PEFT's target rules, freezing, parameter accounting, modules_to_save, several adapters.</summary>
public class LoraInjectionTests
{
    private static PretrainedModel Load(string name) => new AdapterFixture(name).LoadModel();

    private static string[] Adapted(LowRankModel lm) => lm.AdapterLayers().Select(l => l.name).ToArray();

    [Fact]
    public void NamesMatchExactlyOrAsDottedSuffix()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = new[] { "q_proj", "self_attn.v_proj", "model.layers.1.mlp.down_proj" } });
        Assert.Equal(new[]
        {
            "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
            "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj",
        }, Adapted(lm));
        // "proj" is not a dotted suffix of "q_proj".
        Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = new[] { "proj" } }));
    }

    [Fact]
    public void DefaultTargetsArePeftsTablePerModelType()
    {
        using var scope = NewDisposeScope();
        using (var lm = LowRankModel.Create(Load("gpt2"), new LoraOptions()))
            Assert.Equal(new[] { "transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn" }, Adapted(lm));
        using (var lm = LowRankModel.Create(Load("bert_cls"), new LoraOptions()))
            Assert.Equal(new[]
            {
                "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.value",
                "bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.1.attention.self.value",
            }, Adapted(lm));
        using (var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions()))
        {
            Assert.Equal(4, Adapted(lm).Length);
            Assert.Equal(new[] { "q_proj", "v_proj" }, lm.PeftConfig["default"].TargetModules!.Names);
        }
    }

    [Fact]
    public void RegexMustMatchTheWholeName()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = @"model\.layers\.0\.self_attn\.(q|k)_proj" });
        Assert.Equal(new[] { "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj" }, Adapted(lm));
        // A partial match is not enough (Python re.fullmatch).
        var ex = Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = "q_proj" }));
        Assert.Contains("matches no module", ex.Message);
    }

    [Fact]
    public void AllLinearTakesEveryLinearAndConv1DButTheHead()
    {
        using var scope = NewDisposeScope();
        using (var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = ModuleSelector.AllLinear }))
        {
            Assert.Equal(14, Adapted(lm).Length);
            Assert.DoesNotContain("lm_head", Adapted(lm));
            Assert.Equal(new[] { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj" }, lm.PeftConfig["default"].TargetModules!.Names);
        }
        using (var lm = LowRankModel.Create(Load("gpt2"), new LoraOptions { TargetModules = "all-linear" }))
        {
            Assert.Equal(new[] { "transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj",
                                 "transformer.h.1.attn.c_attn", "transformer.h.1.attn.c_proj", "transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj" }, Adapted(lm));
            Assert.True(((LoraOptions)lm.PeftConfig["default"]).FanInFanOut, "targeting Conv1D sets fan_in_fan_out, as PEFT does");
            Assert.All(lm.AdapterLayers(), l => Assert.True(l.layer.FanInFanOut));
        }
        using (var lm = LowRankModel.Create(Load("bert_cls"), new LoraOptions { TargetModules = ModuleSelector.AllLinear }))
        {
            Assert.Equal(13, Adapted(lm).Length);
            Assert.Contains("bert.pooler.dense", Adapted(lm));
            Assert.DoesNotContain(Adapted(lm), n => n.StartsWith("classifier", StringComparison.Ordinal));
        }
        using (var lm = LowRankModel.Create(Load("roberta_cls"), new LoraOptions { TargetModules = ModuleSelector.AllLinear }))
        {
            Assert.Equal(12, Adapted(lm).Length);
            // The RoBERTa head (classifier.dense, classifier.out_proj) is a module to save instead.
            Assert.Equal(new[] { "classifier.dense", "classifier.out_proj" }, lm.AdapterModules().Where(m => m.module is ModulesToSaveWrapper).Select(m => m.name));
        }
    }

    [Fact]
    public void ExcludeModulesAndLayersToTransform()
    {
        using var scope = NewDisposeScope();
        using (var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = ModuleSelector.AllLinear, ExcludeModules = new[] { "down_proj", "model.layers.0.self_attn.q_proj" } }))
        {
            Assert.Equal(11, Adapted(lm).Length);
            Assert.DoesNotContain(Adapted(lm), n => n.EndsWith("down_proj", StringComparison.Ordinal) || n == "model.layers.0.self_attn.q_proj");
        }
        using (var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = ModuleSelector.AllLinear, ExcludeModules = @".*\.mlp\..*" }))
            Assert.Equal(8, Adapted(lm).Length);
        using (var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = new[] { "q_proj", "v_proj" }, LayersToTransform = new[] { 1 } }))
            Assert.Equal(new[] { "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj" }, Adapted(lm));
        using (var lm = LowRankModel.Create(Load("gpt2"), new LoraOptions { TargetModules = new[] { "c_proj" }, LayersToTransform = new[] { 0 }, LayersPattern = new[] { "h" } }))
            Assert.Equal(new[] { "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_proj" }, Adapted(lm));
        // A pattern that names no block list selects nothing.
        Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("gpt2"), new LoraOptions { TargetModules = new[] { "c_proj" }, LayersToTransform = new[] { 0 }, LayersPattern = new[] { "layers" } }));
        // PEFT's validation: layers_to_transform needs the list form, layers_pattern needs layers_to_transform.
        Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("gpt2"), new LoraOptions { TargetModules = ".*c_attn", LayersToTransform = new[] { 0 } }));
        Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("gpt2"), new LoraOptions { TargetModules = new[] { "c_attn" }, LayersPattern = new[] { "h" } }));
    }

    [Fact]
    public void RankAndAlphaPatternsFollowPeft()
    {
        using var scope = NewDisposeScope();
        var opts = new LoraOptions
        {
            R = 4,
            LoraAlpha = 8,
            TargetModules = new[] { "q_proj", "v_proj", "o_proj" },
            RankPattern = new Dictionary<string, int> { ["q_proj"] = 2, ["^model.layers.1.self_attn.v_proj"] = 6 },
            AlphaPattern = new Dictionary<string, double> { [@"layers\.0\.self_attn\.v_proj"] = 3 },
        };
        using var lm = LowRankModel.Create(Load("llama_gqa"), opts);
        LoraLayer L(string p) => (LoraLayer)lm.Model.get_submodule(p);
        Assert.Equal(2, L("model.layers.0.self_attn.q_proj").Rank("default"));
        Assert.Equal(2, L("model.layers.1.self_attn.q_proj").Rank("default"));
        Assert.Equal(4, L("model.layers.0.self_attn.v_proj").Rank("default"));
        Assert.Equal(6, L("model.layers.1.self_attn.v_proj").Rank("default"));
        Assert.Equal(4, L("model.layers.0.self_attn.o_proj").Rank("default"));
        Assert.Equal(8.0 / 2, L("model.layers.0.self_attn.q_proj").Scaling("default"));
        Assert.Equal(3.0 / 4, L("model.layers.0.self_attn.v_proj").Scaling("default"));
        Assert.Equal(8.0 / 6, L("model.layers.1.self_attn.v_proj").Scaling("default"));
        Assert.Equal(new long[] { 6, 32 }, L("model.layers.1.self_attn.v_proj").LoraA("default").weight.shape);
        Assert.Equal(new long[] { 16, 6 }, L("model.layers.1.self_attn.v_proj").LoraB("default").weight.shape);
    }

    [Fact]
    public void ScalingIsAlphaOverROrOverSqrtRWithRsLora()
    {
        using var scope = NewDisposeScope();
        using (var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { R = 16, LoraAlpha = 32 }))
            Assert.All(lm.AdapterLayers(), l => Assert.Equal(2.0, ((LoraLayer)l.layer).Scaling("default")));
        using (var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { R = 16, LoraAlpha = 32, UseRsLora = true }))
            Assert.All(lm.AdapterLayers(), l => Assert.Equal(8.0, ((LoraLayer)l.layer).Scaling("default")));
    }

    [Fact]
    public void DefaultInitIsKaimingUniformAAndZeroB()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { R = 8, TargetModules = ModuleSelector.AllLinear });
        foreach (var (_, l) in lm.AdapterLayers())
        {
            var lora = (LoraLayer)l;
            var a = lora.LoraA("default").weight.ToDoubleArray();
            var bound = 1 / Math.Sqrt(l.InFeatures);
            Assert.All(a, v => Assert.InRange(v, -bound, bound));
            Assert.True(a.Max() > 0.8 * bound && a.Min() < -0.8 * bound, "A should fill U(-1/sqrt(in), 1/sqrt(in))");
            Assert.All(lora.LoraB("default").weight.ToDoubleArray(), v => Assert.Equal(0.0, v));
        }
        using var g = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { R = 8, InitLoraWeights = LoraInitialization.Gaussian, TargetModules = ModuleSelector.AllLinear });
        var all = g.AdapterLayers().SelectMany(l => ((LoraLayer)l.layer).LoraA("default").weight.ToDoubleArray()).ToArray();
        var mean = all.Average();
        var std = Math.Sqrt(all.Select(v => (v - mean) * (v - mean)).Average());
        Assert.InRange(std, 0.9 / 8, 1.1 / 8);
    }

    [Fact]
    public void UnknownOrUnsupportedTargetsFailListingTheModules()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = new[] { "q_proj", "qproj" } }));
        Assert.Contains("'qproj'", ex.Message);
        Assert.Contains("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj", ex.Message);
        Assert.DoesNotContain("'q_proj'", ex.Message);
        var ns = Assert.Throws<NotSupportedException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = new[] { "mlp" } }));
        Assert.Contains("model.layers.0.mlp", ns.Message);
        Assert.Contains("LlamaMlp", ns.Message);
        // A failed injection leaves the model as it was.
        using var model = Load("llama_gqa");
        Assert.Throws<NotSupportedException>(() => LowRankModel.Create(model, new LoraOptions { TargetModules = new[] { "q_proj", "input_layernorm" } }));
        Assert.IsType<Linear>(model.get_submodule("model.layers.0.self_attn.q_proj"));
        // Bad options.
        Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { R = 0 }));
        Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { LoraDropout = 1 }));
        Assert.Throws<NotSupportedException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { Bias = "all" }));
        Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { R = 40, InitLoraWeights = LoraInitialization.PiSSA }));
    }

    [Fact]
    public void OnlyAdapterParametersTrainAndNamesArePefts()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { R = 4 });
        var trainable = lm.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).ToList();
        Assert.Equal(8, trainable.Count);
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", trainable);
        Assert.Contains("base_model.model.model.layers.1.self_attn.v_proj.lora_B.default.weight", trainable);
        var keys = lm.Model.state_dict().Keys.ToList();
        Assert.Contains("model.layers.0.self_attn.q_proj.base_layer.weight", keys);
        Assert.Contains("model.layers.0.self_attn.q_proj.lora_A.default.weight", keys);
        Assert.Contains("model.layers.0.self_attn.k_proj.weight", keys);
        Assert.DoesNotContain(keys, k => k.Contains("lora_dropout", StringComparison.Ordinal));
    }

    [Fact]
    public void ParameterAccountingMatchesPeftOnLlama2_7BOnTheMetaDevice()
    {
        var config = ModelConfig.Parse(ModelConfigTests.Llama2_7B);
        using var model = new PretrainedModel(config, ModelTask.CausalLM, Device.META);
        using var lm = LowRankModel.Create(model, new LoraOptions { R = 8, LoraAlpha = 16 });
        // PEFT prints exactly this for get_peft_model(Llama-2-7b, LoraConfig(r=8, target_modules=["q_proj", "v_proj"])).
        Assert.Equal("trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622", lm.TrainableParametersSummary());
        var report = lm.CountParameters();
        Assert.Equal(4_194_304, report.PerAdapter["default"]);
        Assert.Equal(64, report.PerModule.Count);
        var q0 = report.PerModule.Single(m => m.Path == "model.layers.0.self_attn.q_proj");
        Assert.Equal(8 * (4096 + 4096), q0.Trainable);
        Assert.Equal(4096L * 4096 + 8 * (4096 + 4096), q0.Total);
        Assert.Equal(DeviceType.META, ((LoraLayer)lm.Model.get_submodule("model.layers.0.self_attn.q_proj")).LoraA("default").weight.device.type);
        var w = new StringWriter();
        lm.PrintTrainableParameters(w);
        Assert.Equal(lm.TrainableParametersSummary() + Environment.NewLine, w.ToString());
    }

    [Fact]
    public void ParameterAccountingOnTinyModelsCountsRTimesInPlusOut()
    {
        using var scope = NewDisposeScope();
        using var plain = Load("gpt2");
        var total = plain.num_parameters();
        using var lm = LowRankModel.Create(Load("gpt2"), new LoraOptions { R = 4, TargetModules = ModuleSelector.AllLinear });
        // Per block: c_attn 32→96, attn.c_proj 32→32, c_fc 32→128, mlp.c_proj 128→32.
        long perBlock = 4 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32));
        var (t, all) = lm.GetNbTrainableParameters();
        Assert.Equal(2 * perBlock, t);
        Assert.Equal(total + 2 * perBlock, all);
        using var cls = LowRankModel.Create(Load("bert_cls"), new LoraOptions { R = 2 });
        // query/value 32→32 in two layers, plus the classifier copy (3×32 + 3).
        Assert.Equal(4 * 2 * 64 + 99, cls.GetNbTrainableParameters().trainable);
        Assert.Equal(99, cls.CountParameters().PerModule.Single(m => m.Path == "classifier").Trainable);
    }

    [Fact]
    public void ModulesToSaveWrapsAndTrainsACopy()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(Load("bert_cls"), new LoraOptions { R = 2 });
        Assert.Equal(new[] { "classifier", "score" }, lm.PeftConfig["default"].ModulesToSave);
        Assert.Equal("SEQ_CLS", lm.PeftConfig["default"].TaskType);
        var names = lm.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.False(names["base_model.model.classifier.original_module.weight"].requires_grad);
        Assert.True(names["base_model.model.classifier.modules_to_save.default.weight"].requires_grad);
        Assert.True(names["base_model.model.classifier.modules_to_save.default.bias"].requires_grad);
        Assert.True(names["base_model.model.classifier.modules_to_save.default.weight"].equal(names["base_model.model.classifier.original_module.weight"]));
        // Explicit modules_to_save on a causal LM; unknown names fail.
        using var lm2 = LowRankModel.Create(Load("llama_gqa"), new LoraOptions { ModulesToSave = new[] { "lm_head" } });
        Assert.IsType<ModulesToSaveWrapper>(lm2.Model.get_submodule("lm_head"));
        var ex = Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { ModulesToSave = new[] { "head" } }));
        Assert.Contains("'head'", ex.Message);
        Assert.Throws<ArgumentException>(() => LowRankModel.Create(Load("llama_gqa"), new LoraOptions { TargetModules = new[] { "q_proj", "lm_head" }, ModulesToSave = new[] { "lm_head" } }));
    }

    [Fact]
    public void SeveralAdaptersActivateDisableAndDelete()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        float[] baseOut;
        using (var plain = f.LoadModel()) baseOut = f.Logits(plain);
        using var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4 });
        AdapterInvariants.Perturb(lm, 1);
        var outA = f.Logits(lm);
        lm.AddAdapter("b", new LoraOptions { R = 2, TargetModules = new[] { "q_proj", "o_proj" } });
        Assert.Equal(new[] { "default" }, lm.ActiveAdapters);
        AdapterInvariants.AssertIdentical(outA, f.Logits(lm), "adding an adapter does not activate it");
        Assert.All(lm.named_parameters().Where(p => p.name.Contains(".b.", StringComparison.Ordinal)), p => Assert.False(p.parameter.requires_grad));
        lm.SetAdapter("b");
        Assert.All(lm.named_parameters(), p => Assert.Equal(p.name.Contains("lora_", StringComparison.Ordinal) && p.name.Contains(".b.", StringComparison.Ordinal), p.parameter.requires_grad));
        AdapterInvariants.Perturb(lm, 2);
        var outB = f.Logits(lm);
        // Both active: the deltas add up (compare with merging both).
        lm.SetAdapter("default", "b");
        var both = f.Logits(lm);
        lm.Merge();
        AdapterInvariants.AssertClose(both.Select(v => (double)v).ToList(), f.Logits(lm).Select(v => (double)v).ToList(), 1e-5, "both merged");
        Assert.Equal(new[] { "default", "b" }, ((AdapterLayer)lm.Model.get_submodule("model.layers.0.self_attn.q_proj")).MergedAdapters);
        lm.Unmerge();
        Assert.False(both.AsSpan().SequenceEqual(outA) || both.AsSpan().SequenceEqual(outB));
        // Nested disable scopes restore the previous state (unmerge restores the weights up to float32 rounding).
        static List<double> D(float[] a) => a.Select(v => (double)v).ToList();
        using (lm.DisableAdapter())
        {
            using (lm.DisableAdapter()) AdapterInvariants.AssertClose(D(baseOut), D(f.Logits(lm)), 1e-5, "inner");
            AdapterInvariants.AssertClose(D(baseOut), D(f.Logits(lm)), 1e-5, "outer");
        }
        AdapterInvariants.AssertClose(D(both), D(f.Logits(lm)), 1e-5, "enabled again");
        // Deleting b: the o_proj layers (b only) become plain Linear again; default stays active.
        lm.DeleteAdapter("b");
        Assert.Equal(new[] { "default" }, lm.ActiveAdapters);
        Assert.IsType<Linear>(lm.Model.get_submodule("model.layers.0.self_attn.o_proj"));
        Assert.DoesNotContain(lm.Model.state_dict().Keys, k => k.Contains(".b.", StringComparison.Ordinal));
        AdapterInvariants.AssertClose(D(outA), D(f.Logits(lm)), 1e-5, "after deleting b");
        lm.DeleteAdapter("default");
        Assert.Empty(lm.AdapterModules());
        AdapterInvariants.AssertClose(D(baseOut), D(f.Logits(lm)), 1e-5, "after deleting every adapter");
        Assert.Throws<KeyNotFoundException>(() => lm.SetAdapter("default"));
        Assert.Throws<ArgumentException>(() => lm.AddAdapter("a.b", new LoraOptions()));
        Assert.Throws<ArgumentException>(() => lm.AddAdapter(AdapterLayer.BaseAdapterName, new LoraOptions()));
    }

    [Fact]
    public void DropoutOnlyTouchesTheAdapterPath()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        float[] baseOut;
        using (var plain = f.LoadModel()) baseOut = f.Logits(plain);
        using var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4, LoraDropout = 0.5 });
        lm.train();
        // B = 0: whatever the dropout mask, the output is the base output (the base path is never dropped).
        AdapterInvariants.AssertIdentical(baseOut, f.Logits(lm), "train mode, B = 0");
        AdapterInvariants.Perturb(lm, 3);
        var t1 = f.Logits(lm);
        var t2 = f.Logits(lm);
        Assert.False(t1.AsSpan().SequenceEqual(t2), "dropout should make training-mode outputs random");
        lm.eval();
        AdapterInvariants.AssertIdentical(f.Logits(lm), f.Logits(lm), "eval mode is deterministic");
        // At the layer: with the adapter input dropped to zero the layer is its base (p close to 1 drops nearly all).
        var layer = (LoraLayer)lm.Model.get_submodule("model.layers.0.self_attn.q_proj");
        var x = randn(4, 32);
        using var ng = no_grad();
        layer.eval();
        var yEval = layer.forward(x);
        var expected = layer.BaseLayer.call(x) + layer.LoraB("default").call(layer.LoraA("default").call(x)) * layer.Scaling("default");
        Assert.True(yEval.allclose(expected, 1e-6, 1e-6));
    }

    [Fact]
    public void HalfPrecisionBaseKeepsFloat32AdaptersAndMergesExactly()
    {
        using var scope = NewDisposeScope();
        var dir = Repo.Fixture("models", "llama_bf16");
        using var lm = LowRankModel.Create(PretrainedModel.Load(dir), new LoraOptions { R = 4, TargetModules = ModuleSelector.AllLinear });
        var layer = (LoraLayer)lm.Model.get_submodule("model.layers.0.self_attn.q_proj");
        Assert.Equal(ScalarType.BFloat16, layer.BaseWeight.dtype);
        Assert.Equal(ScalarType.Float32, layer.LoraA("default").weight.dtype);
        AdapterInvariants.Perturb(lm, 4);
        var w0 = layer.BaseWeight.clone();
        var delta = layer.GetDeltaWeight("default");
        lm.Merge();
        // Merged in float32, then rounded once to bfloat16.
        Assert.True(layer.BaseWeight.equal((w0.to_type(ScalarType.Float32) + delta).to_type(ScalarType.BFloat16)));
        lm.Unmerge();
        Assert.True(layer.BaseWeight.equal(w0), "unmerge restores the bfloat16 weight bit for bit");
        using var lm2 = LowRankModel.Create(PretrainedModel.Load(dir), new LoraOptions { R = 4 }, context: new AdapterCreationContext { AutocastAdapterDtype = false });
        Assert.Equal(ScalarType.BFloat16, ((LoraLayer)lm2.Model.get_submodule("model.layers.0.self_attn.q_proj")).LoraA("default").weight.dtype);
        var f = new AdapterFixture("llama_bf16");
        using var ng = no_grad();
        var logits = lm2.forward(f.Inputs(false)).Logits!;
        Assert.Equal(ScalarType.BFloat16, logits.dtype);
    }

    [Fact]
    public void MergeAndUnloadGivesAPlainModelWithTheAdaptedOutput()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("bert_cls");
        var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4, TargetModules = ModuleSelector.AllLinear });
        AdapterInvariants.Perturb(lm, 5);
        var adapted = f.Logits(lm);
        var model = lm.MergeAndUnload();
        Assert.DoesNotContain(model.named_modules(), m => m.module is IAdapterModule);
        Assert.IsType<Linear>(model.get_submodule("classifier"));
        AdapterInvariants.AssertClose(adapted.Select(v => (double)v).ToList(), f.Logits(model).Select(v => (double)v).ToList(), 1e-5, "merge_and_unload");
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("lora_", StringComparison.Ordinal) || k.Contains("base_layer", StringComparison.Ordinal));
        Assert.Throws<InvalidOperationException>(() => lm.Merge());
        lm.Dispose();
        // The model survives disposing the unloaded wrapper.
        Assert.NotEmpty(f.Logits(model));
        model.Dispose();
        // Unload without merging gives the base model back.
        float[] baseOut;
        using (var plain = f.LoadModel()) baseOut = f.Logits(plain);
        var lm2 = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4 });
        AdapterInvariants.Perturb(lm2, 6);
        using var back = lm2.Unload();
        AdapterInvariants.AssertIdentical(baseOut, f.Logits(back), "unload");
    }
}
