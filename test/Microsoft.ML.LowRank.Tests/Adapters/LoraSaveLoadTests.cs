using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Adapters.Lora;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>PEFT-compatible adapter files: exact keys and config fields, loading PEFT-written files, load errors,
/// PiSSA/OLoRA conversion to plain LoRA.</summary>
public class LoraSaveLoadTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("lowrank-peft-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
        GC.SuppressFinalize(this);
    }

    private string Sub(string name)
    {
        var d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        return d;
    }

    // Every field this library writes into adapter_config.json, by PEFT's name.
    private static readonly string[] s_configFields =
    {
        "alpha_pattern", "auto_mapping", "base_model_name_or_path", "bias", "exclude_modules", "fan_in_fan_out",
        "inference_mode", "init_lora_weights", "layers_pattern", "layers_to_transform", "lora_alpha", "lora_bias",
        "lora_dropout", "modules_to_save", "peft_type", "r", "rank_pattern", "revision", "target_modules", "task_type",
        "use_dora", "use_rslora",
    };

    [Fact]
    public void LlamaAdapterFileHasPeftsKeysShapesAndConfigFields()
    {
        using var scope = NewDisposeScope();
        using var lm = LowRankModel.Create(new AdapterFixture("llama_gqa").LoadModel(),
            new LoraOptions { R = 4, LoraAlpha = 8, LoraDropout = 0.05, TargetModules = new[] { "q_proj", "v_proj" }, BaseModelNameOrPath = "tiny/llama" });
        var dir = Sub("llama");
        lm.Save(dir);
        Assert.Equal(new[] { "adapter_config.json", "adapter_model.safetensors" }, Directory.GetFiles(dir).Select(Path.GetFileName).Order().ToArray());
        using (var f = SafetensorsFile.Open(Path.Combine(dir, "adapter_model.safetensors")))
        {
            var expected = new Dictionary<string, long[]>
            {
                ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] = new long[] { 4, 32 },
                ["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"] = new long[] { 32, 4 },
                ["base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"] = new long[] { 4, 32 },
                ["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"] = new long[] { 16, 4 },
                ["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"] = new long[] { 4, 32 },
                ["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"] = new long[] { 32, 4 },
                ["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"] = new long[] { 4, 32 },
                ["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"] = new long[] { 16, 4 },
            };
            Assert.Equal(expected.Keys.Order(), f.Names.Order());
            foreach (var e in f.Entries)
            {
                Assert.Equal(expected[e.Name], e.Shape);
                Assert.Equal(ScalarType.Float32, e.DType);
            }
            Assert.Equal("pt", f.Metadata["format"]);
        }
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!.AsObject();
        Assert.Equal(s_configFields, cfg.Select(kv => kv.Key).ToArray());
        Assert.Equal("LORA", (string?)cfg["peft_type"]);
        Assert.Equal("CAUSAL_LM", (string?)cfg["task_type"]);
        Assert.Equal("tiny/llama", (string?)cfg["base_model_name_or_path"]);
        Assert.Equal(4, (int)cfg["r"]!);
        Assert.Equal("8", cfg["lora_alpha"]!.ToJsonString());
        Assert.Equal(0.05, (double)cfg["lora_dropout"]!);
        Assert.True((bool)cfg["inference_mode"]!);
        Assert.True((bool)cfg["init_lora_weights"]!);
        Assert.False((bool)cfg["use_rslora"]!);
        Assert.False((bool)cfg["fan_in_fan_out"]!);
        Assert.False((bool)cfg["use_dora"]!);
        Assert.Equal("none", (string?)cfg["bias"]);
        Assert.Equal("[\"q_proj\",\"v_proj\"]", cfg["target_modules"]!.ToJsonString());
        Assert.Equal("{}", cfg["rank_pattern"]!.ToJsonString());
        Assert.Null(cfg["modules_to_save"]);
        Assert.Null(cfg["layers_to_transform"]);
        // Sorted keys and two-space indentation, as PEFT's save_pretrained writes.
        Assert.StartsWith("{\n  \"alpha_pattern\": {},\n  \"auto_mapping\": null,", File.ReadAllText(Path.Combine(dir, "adapter_config.json")).ReplaceLineEndings("\n"));
    }

    [Fact]
    public void ClassifierAndGpt2FilesHavePeftsKeys()
    {
        using var scope = NewDisposeScope();
        using (var lm = LowRankModel.Create(new AdapterFixture("bert_cls").LoadModel(), new LoraOptions { R = 2 }))
        {
            var dir = Sub("bert");
            lm.Save(dir);
            using var f = SafetensorsFile.Open(Path.Combine(dir, "adapter_model.safetensors"));
            var expected = new List<string> { "base_model.model.classifier.bias", "base_model.model.classifier.weight" };
            foreach (var l in new[] { 0, 1 })
                foreach (var m in new[] { "query", "value" })
                    foreach (var ab in new[] { "A", "B" })
                        expected.Add($"base_model.model.bert.encoder.layer.{l}.attention.self.{m}.lora_{ab}.weight");
            Assert.Equal(expected.Order(StringComparer.Ordinal), f.Names.Order(StringComparer.Ordinal));
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
            Assert.Equal("[\"classifier\",\"score\"]", cfg["modules_to_save"]!.ToJsonString());
            Assert.Equal("SEQ_CLS", (string?)cfg["task_type"]);
            Assert.Equal("[\"query\",\"value\"]", cfg["target_modules"]!.ToJsonString());
        }
        using (var lm = LowRankModel.Create(new AdapterFixture("gpt2").LoadModel(), new LoraOptions { R = 2 }))
        {
            lm.AddAdapter("second", new LoraOptions { R = 3, TargetModules = ModuleSelector.AllLinear, InitLoraWeights = LoraInitialization.OLoRA, UseRsLora = true });
            var dir = Sub("gpt2");
            lm.Save(dir);
            using (var f = SafetensorsFile.Open(Path.Combine(dir, "adapter_model.safetensors")))
                Assert.Equal(new[]
                {
                    "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight",
                    "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight", "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight",
                }, f.Names.Order(StringComparer.Ordinal));
            var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "adapter_config.json")))!;
            Assert.True((bool)cfg["fan_in_fan_out"]!);
            // A second adapter goes to a subfolder named after it.
            var sub = Path.Combine(dir, "second");
            using (var f = SafetensorsFile.Open(Path.Combine(sub, "adapter_model.safetensors")))
            {
                Assert.Equal(16, f.Names.Count());
                Assert.Equal(new long[] { 3, 128 }, f.GetEntry("base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight").Shape);
            }
            var cfg2 = JsonNode.Parse(File.ReadAllText(Path.Combine(sub, "adapter_config.json")))!;
            Assert.Equal("\"olora\"", cfg2["init_lora_weights"]!.ToJsonString());
            Assert.True((bool)cfg2["use_rslora"]!);
            Assert.Equal("[\"c_attn\",\"c_proj\",\"c_fc\"]", cfg2["target_modules"]!.ToJsonString());
        }
    }

    /// <summary>An adapter folder written by hand exactly as PEFT writes one (extra fields of newer PEFT versions
    /// included) loads, and the model computes W + (α/r)·B·A, checked against a hand-merged plain model.</summary>
    [Fact]
    public void LoadsAFolderWrittenAsPeftWritesIt()
    {
        using var scope = NewDisposeScope();
        var dir = Sub("peft_written");
        File.WriteAllText(Path.Combine(dir, "adapter_config.json"), """
        {
          "alpha_pattern": {},
          "auto_mapping": null,
          "base_model_name_or_path": "tiny-llama",
          "bias": "none",
          "corda_config": null,
          "eva_config": null,
          "exclude_modules": null,
          "fan_in_fan_out": false,
          "inference_mode": true,
          "init_lora_weights": true,
          "layer_replication": null,
          "layers_pattern": null,
          "layers_to_transform": null,
          "loftq_config": {},
          "lora_alpha": 16,
          "lora_bias": false,
          "lora_dropout": 0.1,
          "megatron_config": null,
          "megatron_core": "megatron.core",
          "modules_to_save": null,
          "peft_type": "LORA",
          "r": 2,
          "rank_pattern": {},
          "revision": null,
          "target_modules": [
            "v_proj",
            "down_proj"
          ],
          "task_type": "CAUSAL_LM",
          "trainable_token_indices": null,
          "use_dora": false,
          "use_rslora": false
        }
        """);
        var g = new Generator(99);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var l in new[] { 0, 1 })
        {
            tensors[$"base_model.model.model.layers.{l}.self_attn.v_proj.lora_A.weight"] = randn(new long[] { 2, 32 }, generator: g);
            tensors[$"base_model.model.model.layers.{l}.self_attn.v_proj.lora_B.weight"] = randn(new long[] { 16, 2 }, generator: g) * 0.1;
            tensors[$"base_model.model.model.layers.{l}.mlp.down_proj.lora_A.weight"] = randn(new long[] { 2, 64 }, generator: g);
            tensors[$"base_model.model.model.layers.{l}.mlp.down_proj.lora_B.weight"] = randn(new long[] { 32, 2 }, generator: g) * 0.1;
        }
        Safetensors.Save(Path.Combine(dir, "adapter_model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var f = new AdapterFixture("llama_gqa");
        using var lm = LowRankModel.Load(f.LoadModel(), dir);
        lm.eval();
        var opts = (LoraOptions)lm.PeftConfig["default"];
        Assert.Equal(2, opts.R);
        Assert.Equal(16, opts.LoraAlpha);
        Assert.True(opts.InferenceMode);
        Assert.Equal(0, lm.GetNbTrainableParameters().trainable);
        using var plain = f.LoadModel();
        using (no_grad())
            foreach (var l in new[] { 0, 1 })
                foreach (var m in new[] { "self_attn.v_proj", "mlp.down_proj" })
                {
                    var w = ((Linear)plain.get_submodule($"model.layers.{l}.{m}")).weight;
                    var A = tensors[$"base_model.model.model.layers.{l}.{m}.lora_A.weight"].to_type(ScalarType.Float64);
                    var B = tensors[$"base_model.model.model.layers.{l}.{m}.lora_B.weight"].to_type(ScalarType.Float64);
                    w.copy_(w.to_type(ScalarType.Float64) + B.matmul(A) * (16.0 / 2));
                }
        AdapterInvariants.AssertClose(f.Logits(plain).Select(v => (double)v).ToList(), f.Logits(lm).Select(v => (double)v).ToList(), 1e-5, "PEFT-written adapter");
        // is_trainable keeps it trainable.
        using var trainable = LowRankModel.Load(f.LoadModel(), dir, isTrainable: true);
        // Per layer: v_proj A [2, 32] + B [16, 2], down_proj A [2, 64] + B [32, 2].
        Assert.Equal(2 * (64 + 32 + 128 + 64), trainable.GetNbTrainableParameters().trainable);
    }

    [Fact]
    public void LoadErrorsNameTheProblemAndLeaveTheModelUnchanged()
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture("llama_gqa");
        var good = Sub("good");
        using (var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4 })) lm.Save(good);
        float[] baseOut;
        using (var plain = f.LoadModel()) baseOut = f.Logits(plain);

        void Expect<TEx>(string folder, params string[] inMessage) where TEx : Exception
        {
            using var model = f.LoadModel();
            var ex = Assert.Throws<TEx>(() => LowRankModel.Load(model, folder));
            foreach (var s in inMessage) Assert.Contains(s, ex.Message);
            Assert.DoesNotContain(model.named_modules(), m => m.module is IAdapterModule);
            AdapterInvariants.AssertIdentical(baseOut, f.Logits(model), "model after a failed load");
        }

        Expect<DirectoryNotFoundException>(Path.Combine(_dir, "nope"), "nope");
        var noWeights = Sub("no_weights");
        File.Copy(Path.Combine(good, "adapter_config.json"), Path.Combine(noWeights, "adapter_config.json"));
        Expect<FileNotFoundException>(noWeights, "adapter_model.safetensors");
        var noConfig = Sub("no_config");
        File.Copy(Path.Combine(good, "adapter_model.safetensors"), Path.Combine(noConfig, "adapter_model.safetensors"));
        Expect<FileNotFoundException>(noConfig, "adapter_config.json");

        Dictionary<string, Tensor> Tensors() => Safetensors.Load(Path.Combine(good, "adapter_model.safetensors"));
        string Variant(string name, Action<Dictionary<string, Tensor>> edit)
        {
            var d = Sub(name);
            File.Copy(Path.Combine(good, "adapter_config.json"), Path.Combine(d, "adapter_config.json"));
            var t = Tensors();
            edit(t);
            Safetensors.Save(Path.Combine(d, "adapter_model.safetensors"), t);
            return d;
        }
        Expect<InvalidDataException>(Variant("extra", t => t["base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight"] = zeros(2, 2)),
            "unexpected", "base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight");
        Expect<InvalidDataException>(Variant("missing", t => t.Remove("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight")),
            "missing", "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
        Expect<InvalidDataException>(Variant("shape", t => t["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"] = zeros(32, 4)),
            "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", "file [32, 4], model [16, 4]");
        Expect<InvalidDataException>(Variant("other_arch", t => t["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"] = zeros(4, 32)),
            "model.layers.7.self_attn.q_proj", "do not exist");

        // An adapter for another architecture: its targets do not exist in GPT-2.
        using (var gpt2 = new AdapterFixture("gpt2").LoadModel())
        {
            var ex = Assert.Throws<ArgumentException>(() => LowRankModel.Load(gpt2, good));
            Assert.Contains("'q_proj'", ex.Message);
            Assert.Contains("c_attn", ex.Message);
        }
        // A DoRA config (read as DoRA) over LoRA-only weights: the magnitude vectors are missing.
        var dora = Sub("dora");
        File.Copy(Path.Combine(good, "adapter_model.safetensors"), Path.Combine(dora, "adapter_model.safetensors"));
        File.WriteAllText(Path.Combine(dora, "adapter_config.json"), """{"peft_type": "LORA", "use_dora": true, "r": 4, "target_modules": ["q_proj"]}""");
        Expect<InvalidDataException>(dora, "missing tensors", "lora_magnitude_vector");
        // A config for a method this library does not read.
        var ia3 = Sub("ia3");
        File.Copy(Path.Combine(good, "adapter_model.safetensors"), Path.Combine(ia3, "adapter_model.safetensors"));
        File.WriteAllText(Path.Combine(ia3, "adapter_config.json"), """{"peft_type": "IA3", "target_modules": ["q_proj"]}""");
        Expect<NotSupportedException>(ia3, "IA3", "supported: ", ", LORA");
    }

    [Fact]
    public void ConfigJsonRoundTripsEveryField()
    {
        var o = new LoraOptions
        {
            R = 6, LoraAlpha = 12.5, LoraDropout = 0.2, UseRsLora = true, InitLoraWeights = LoraInitialization.PiSSA, PissaNiter = 4,
            TargetModules = @".*\.(q|v)_proj", ExcludeModules = new[] { "lm_head" }, ModulesToSave = new[] { "score" },
            RankPattern = new Dictionary<string, int> { ["q_proj"] = 2 }, AlphaPattern = new Dictionary<string, double> { ["v_proj"] = 3 },
            TaskType = "SEQ_CLS", BaseModelNameOrPath = "x", FanInFanOut = true,
        };
        var json = o.ToJson();
        var node = JsonNode.Parse(json)!;
        Assert.Equal("\"pissa_niter_4\"", node["init_lora_weights"]!.ToJsonString());
        Assert.Equal("\".*\\\\.(q|v)_proj\"", node["target_modules"]!.ToJsonString());
        Assert.Equal("12.5", node["lora_alpha"]!.ToJsonString());
        var back = (LoraOptions)LowRankAdapterOptions.FromJson(json);
        Assert.Equal(json, back.ToJson());
        Assert.Equal(4, back.PissaNiter);
        Assert.Equal(LoraInitialization.PiSSA, back.InitLoraWeights);
        Assert.Equal(@".*\.(q|v)_proj", back.TargetModules!.Pattern);
        Assert.Equal(2, back.RankPattern["q_proj"]);
        foreach (var (text, init) in new[] { ("false", LoraInitialization.None), ("\"gaussian\"", LoraInitialization.Gaussian), ("\"olora\"", LoraInitialization.OLoRA), ("true", LoraInitialization.Default) })
            Assert.Equal(init, ((LoraOptions)LowRankAdapterOptions.FromJson($$"""{"peft_type":"LORA","init_lora_weights":{{text}}}""")).InitLoraWeights);
        Assert.Throws<NotSupportedException>(() => LowRankAdapterOptions.FromJson("""{"peft_type":"LORA","init_lora_weights":"loftq"}"""));
        Assert.Throws<FormatException>(() => LowRankAdapterOptions.FromJson("""{"peft_type":"LORA","r":"eight"}"""));
        Assert.Throws<FormatException>(() => LowRankAdapterOptions.FromJson("[1]"));
        Assert.Equal(new[] { 3 }, LowRankAdapterOptions.FromJson("""{"peft_type":"LORA","layers_to_transform":3,"target_modules":["q"]}""").LayersToTransform);
    }

    /// <summary>PEFT's path_initial_model_for_weight_conversion: a trained PiSSA/OLoRA adapter saved as a plain LoRA of
    /// rank 2r applies to the ORIGINAL base model and reproduces the trained model.</summary>
    [Theory]
    [InlineData("llama_gqa", LoraInitialization.PiSSA, false)]
    [InlineData("gpt2", LoraInitialization.OLoRA, true)]
    [InlineData("bert_cls", LoraInitialization.PiSSA, true)]
    public void MutatedInitConvertsToPlainLoraOnTheOriginalBase(string fixture, LoraInitialization init, bool rs)
    {
        using var scope = NewDisposeScope();
        var f = new AdapterFixture(fixture);
        using var lm = LowRankModel.Create(f.LoadModel(), new LoraOptions { R = 4, LoraAlpha = 8, UseRsLora = rs, InitLoraWeights = init, TargetModules = ModuleSelector.AllLinear });
        var initDir = Sub(fixture + "_init");
        lm.Save(initDir);
        AdapterInvariants.Perturb(lm, 8, 0.05);
        var trained = f.Logits(lm);
        var conv = Sub(fixture + "_converted");
        lm.Save(conv, new AdapterSaveOptions { PathInitialModelForWeightConversion = initDir });
        var cfg = (LoraOptions)LowRankAdapterOptions.Load(conv);
        Assert.Equal(8, cfg.R);
        Assert.Equal(rs ? 8 * Math.Sqrt(2) : 16, cfg.LoraAlpha, 12);
        Assert.Equal(LoraInitialization.Default, cfg.InitLoraWeights);
        using var onOriginal = LowRankModel.Load(f.LoadModel(), conv);
        onOriginal.eval();
        AdapterInvariants.AssertClose(trained.Select(v => (double)v).ToList(), f.Logits(onOriginal).Select(v => (double)v).ToList(), 1e-5, $"{fixture} converted adapter on the original base");
        // Without conversion the adapter needs the residual base.
        var raw = Sub(fixture + "_raw");
        lm.Save(raw);
        using var residual = f.LoadModel();
        residual.load_state_dict(lm.GetBaseStateDict());
        using var onResidual = LowRankModel.Load(residual, raw);
        onResidual.eval();
        AdapterInvariants.AssertIdentical(trained, f.Logits(onResidual), "unconverted adapter on the residual base");
        // The initial adapter must hold every converted tensor.
        Assert.Throws<FileNotFoundException>(() => lm.Save(Sub("x"), new AdapterSaveOptions { PathInitialModelForWeightConversion = Sub("empty") }));
    }
}
