using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Cli;

[Collection(SerialCollection.Name)] // redirects Console
public class CliTests
{
    internal static (int code, string output, string error) Run(params string[] args)
    {
        var oldOut = Console.Out;
        var oldErr = Console.Error;
        var o = new StringWriter();
        var e = new StringWriter();
        Console.SetOut(o);
        Console.SetError(e);
        try { return (Microsoft.ML.LowRank.Cli.Program.Main(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }

    /// <summary>A word-level tokenizer over "t0".."t96" (the fixtures' vocabulary size), split on whitespace.</summary>
    internal static string WordLevelTokenizerJson()
    {
        var vocab = new JsonObject();
        for (int i = 0; i < 97; i++) vocab["t" + i] = i;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
            ["post_processor"] = null,
            ["decoder"] = null,
            ["model"] = new JsonObject { ["type"] = "WordLevel", ["vocab"] = vocab, ["unk_token"] = "t0" },
        }.ToJsonString();
    }

    [Fact]
    public void InfoWorksFromConfigAloneAndAsJson()
    {
        var dir = Directory.CreateTempSubdirectory().FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"), Models.ModelConfigTests.Llama2_7B);
        var (code, output, _) = Run("info", dir, "--json");
        Assert.Equal(0, code);
        var o = JsonNode.Parse(output)!;
        Assert.Equal(6_738_415_616L, o["parameters"]!.GetValue<long>());
        Assert.Equal("LlamaForCausalLM", o["architecture"]!.GetValue<string>());
        Assert.Equal("float16", o["dtype"]!.GetValue<string>());
        Assert.Equal("none (config only)", o["weights"]!.GetValue<string>());
        (code, output, _) = Run("info", Repo.Fixture("models", "gpt2"));
        Assert.Equal(0, code);
        Assert.Contains("GPT2LMHeadModel", output);
    }

    [Fact]
    public void TokenizePrintsIds()
    {
        var dir = Directory.CreateTempSubdirectory().FullName;
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), WordLevelTokenizerJson());
        var (code, output, _) = Run("tokenize", dir, "--text", "t5 t17 t96");
        Assert.Equal(0, code);
        Assert.Equal("5 17 96", output.Trim());
        (code, output, _) = Run("tokenize", Path.Combine(dir, "tokenizer.json"), "--text", "t3", "--json");
        Assert.Equal(3, JsonNode.Parse(output)!["ids"]![0]!.GetValue<int>());
    }

    [Fact]
    public void GenerateMatchesTheLibraryAndErrorsAreReadable()
    {
        var dir = Directory.CreateTempSubdirectory().FullName;
        foreach (var f in Directory.GetFiles(Repo.Fixture("models", "llama"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), WordLevelTokenizerJson());
        var (code, output, _) = Run("generate", dir, "--prompt", "t5 t17 t3", "--max-new-tokens", "5", "--json");
        Assert.Equal(0, code);
        var ids = JsonNode.Parse(output)!["ids"]!.AsArray().Select(n => n!.GetValue<long>()).ToArray();
        using var model = PretrainedModel.Load(dir);
        var expected = TextGenerator.Generate(model, new[] { new long[] { 5, 17, 3 } }, new GenerationOptions { MaxNewTokens = 5 })[0];
        Assert.Equal(expected, ids);

        (code, _, var err) = Run("generate", Path.Combine(dir, "missing"), "--prompt", "x");
        Assert.Equal(1, code);
        Assert.Contains("missing", err);
        (code, _, err) = Run("bogus");
        Assert.Equal(2, code);
        Assert.Contains("unknown command 'bogus'", err);
    }

    [Fact]
    public void SmokeRunsAMatmul()
    {
        var (code, output, _) = Run("smoke");
        Assert.Equal(0, code);
        Assert.Contains("[[19,22],[43,50]]", output);
        Assert.Contains(__version__, output);
    }
}

[Collection(SerialCollection.Name)]
public class CliAdapterTests
{
    private static (int code, string output, string error) Run(params string[] args) => CliTests.Run(args);

    [Fact]
    public void ParamsMatchPeftsCountForLlama2_7B()
    {
        var dir = Directory.CreateTempSubdirectory().FullName;
        File.WriteAllText(Path.Combine(dir, "config.json"), Models.ModelConfigTests.Llama2_7B);
        var (code, output, err) = Run("params", dir, "--method", "lora", "--rank", "8", "--alpha", "16", "--json");
        Assert.True(code == 0, err);
        var o = JsonNode.Parse(output)!;
        // PEFT's print_trainable_parameters for LoRA r=8 on q_proj,v_proj (its default targets for llama).
        Assert.Equal(4_194_304L, o["trainable"]!.GetValue<long>());
        Assert.Equal(6_742_609_920L, o["total"]!.GetValue<long>());
    }

    [Fact]
    public void ParamsForAllLinearFollowTheFormula()
    {
        // r * (in + out) summed over every block linear of the tiny GQA llama (hidden 32, kv dim 16, intermediate from config).
        var c = ModelConfig.FromFile(Repo.Fixture("models", "llama_gqa"));
        long h = c.HiddenSize, kv = c.NumKeyValueHeads * c.HeadDim, i = c.IntermediateSize, r = 4;
        long perLayer = r * ((h + h) + (h + kv) + (h + kv) + (h + h) + (h + i) + (h + i) + (i + h));
        var (code, output, err) = Run("params", Repo.Fixture("models", "llama_gqa"), "--rank", "4", "--targets", "all-linear", "--json");
        Assert.True(code == 0, err);
        Assert.Equal(perLayer * c.NumHiddenLayers, JsonNode.Parse(output)!["trainable"]!.GetValue<long>());
        (code, _, err) = Run("params", Repo.Fixture("models", "llama_gqa"), "--targets", "qq_proj");
        Assert.Equal(1, code);
        Assert.Contains("q_proj", err); // the error lists the available module names
    }

    [Fact]
    public void MergeWritesAModelFolderEqualToTheAdaptedModel()
    {
        using var scope = NewDisposeScope();
        var src = Repo.Fixture("models", "llama");
        var adapterDir = Directory.CreateTempSubdirectory().FullName;
        var outDir = Path.Combine(Directory.CreateTempSubdirectory().FullName, "merged");
        float[] expected;
        var ids = tensor(new long[] { 5, 9, 33, 2, 71 }, new long[] { 1, 5 });
        using (var model = PretrainedModel.Load(src))
        using (var peft = Microsoft.ML.LowRank.Adapters.LowRankModel.Create(model, new Microsoft.ML.LowRank.Adapters.Lora.LoraOptions { R = 4, LoraAlpha = 8, TargetModules = Microsoft.ML.LowRank.Adapters.ModuleSelector.AllLinear }))
        {
            manual_seed(11);
            using (no_grad())
                foreach (var (name, p) in peft.named_parameters())
                    if (name.Contains("lora_B")) p.copy_(randn(p.shape) * 0.1);
            peft.Save(adapterDir);
            using var ng = no_grad();
            expected = peft.forward(new ModelInputs { InputIds = ids }).Logits!.ToArray<float>();
        }
        var (code, _, err) = Run("merge", src, adapterDir, "--output", outDir);
        Assert.True(code == 0, err);
        using var merged = PretrainedModel.Load(outDir);
        using var ng2 = no_grad();
        var actual = merged.forward(new ModelInputs { InputIds = ids }).Logits!.ToArray<float>();
        for (int k = 0; k < expected.Length; k++) Assert.InRange(actual[k] - expected[k], -1e-4, 1e-4);
        Assert.False(File.Exists(Path.Combine(outDir, "adapter_config.json")));
    }

    [Fact]
    public void FinetuneTrainsAPeftAdapterFromJsonl()
    {
        var model = Directory.CreateTempSubdirectory().FullName;
        foreach (var f in Directory.GetFiles(Repo.Fixture("models", "llama"))) File.Copy(f, Path.Combine(model, Path.GetFileName(f)));
        File.WriteAllText(Path.Combine(model, "tokenizer.json"), CliTests.WordLevelTokenizerJson());
        var data = Path.Combine(Directory.CreateTempSubdirectory().FullName, "train.jsonl");
        var rng = new Random(1);
        File.WriteAllLines(data, Enumerable.Range(0, 64).Select(_ =>
        {
            var a = rng.Next(10, 40);
            return new JsonObject { ["prompt"] = $"t{a} t{a + 1}", ["response"] = $"t{a + 2} t{a + 3} t{a + 4}" }.ToJsonString();
        }));
        var adapter = Path.Combine(Directory.CreateTempSubdirectory().FullName, "adapter");
        var (code, output, err) = Run("finetune", model, "--data", data, "--output", adapter, "--rank", "8", "--alpha", "16",
            "--targets", "all-linear", "--lr", "1e-2", "--max-steps", "30", "--batch-size", "8", "--json");
        Assert.True(code == 0, err);
        var o = JsonNode.Parse(output.Trim().Split('\n')[^1])!;
        Assert.Equal(30, o["steps"]!.GetValue<int>());
        Assert.True(o["loss_after"]!.GetValue<double>() < 0.7 * o["loss_before"]!.GetValue<double>(), output);
        Assert.True(File.Exists(Path.Combine(adapter, "adapter_config.json")));
        Assert.True(File.Exists(Path.Combine(adapter, "adapter_model.safetensors")));
        // Packed: each batch of 8 examples (6-7 tokens each) in rows of 32 tokens; it still learns.
        (code, output, err) = Run("finetune", model, "--data", data, "--output", adapter + "-packed", "--rank", "8", "--alpha", "16",
            "--targets", "all-linear", "--lr", "1e-2", "--max-steps", "30", "--batch-size", "8", "--pack-length", "32", "--json");
        Assert.True(code == 0, err);
        o = JsonNode.Parse(output.Trim().Split('\n')[^1])!;
        Assert.Equal(32, o["packed_length"]!.GetValue<int>());
        Assert.True(o["loss_after"]!.GetValue<double>() < 0.7 * o["loss_before"]!.GetValue<double>(), output);
        (code, _, err) = Run("finetune", model, "--data", data + ".missing", "--output", adapter);
        Assert.Equal(1, code);
        Assert.Contains("data file not found", err);
    }
}
