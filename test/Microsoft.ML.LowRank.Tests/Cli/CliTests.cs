using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Cli;

[Collection(SerialCollection.Name)] // redirects Console
public class CliTests
{
    private static (int code, string output, string error) Run(params string[] args)
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
    private static string WordLevelTokenizerJson()
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
