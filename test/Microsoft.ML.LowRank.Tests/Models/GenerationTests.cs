using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Models;

public class GenerationTests
{
    private static readonly long[][] Prompts = { new long[] { 5, 17, 3, 44 }, new long[] { 9 }, new long[] { 60, 61, 62, 63, 64, 65 } };

    [Theory]
    [InlineData("llama_gqa")]
    [InlineData("gpt2")]
    [InlineData("gemma")]
    public void CachedGreedyGenerationEqualsRecomputingEveryStep(string name)
    {
        using var model = PretrainedModel.Load(Repo.Fixture("models", name));
        var opts = new GenerationOptions { MaxNewTokens = 12, StopTokenIds = Array.Empty<long>() };
        var cached = TextGenerator.Generate(model, Prompts, opts);
        opts.UseCache = false;
        var recomputed = TextGenerator.Generate(model, Prompts, opts);
        Assert.Equal(recomputed, cached);
        Assert.All(cached, g => Assert.Equal(12, g.Length));
    }

    [Fact]
    public void BatchedLeftPaddedGenerationEqualsOnePromptAtATime()
    {
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"));
        var opts = new GenerationOptions { MaxNewTokens = 8, StopTokenIds = Array.Empty<long>() };
        var batched = TextGenerator.Generate(model, Prompts, opts);
        for (int i = 0; i < Prompts.Length; i++)
            Assert.Equal(TextGenerator.Generate(model, new[] { Prompts[i] }, opts)[0], batched[i]);
    }

    [Fact]
    public void GreedyTokenIsTheArgmaxOfTheFullForward()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "qwen2"));
        var g = TextGenerator.Generate(model, new[] { Prompts[0] }, new GenerationOptions { MaxNewTokens = 1, StopTokenIds = Array.Empty<long>() });
        using var ng = no_grad();
        var logits = model.forward(new ModelInputs { InputIds = tensor(Prompts[0], new long[] { 1, 4 }) }).Logits!;
        Assert.Equal(logits.select(1, 3).argmax(-1).ToInt64(), g[0][0]);
    }

    [Fact]
    public void StopTokensAndStopStringsEndRows()
    {
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"));
        var free = TextGenerator.Generate(model, Prompts, new GenerationOptions { MaxNewTokens = 10, StopTokenIds = Array.Empty<long>() });
        var stopAt = free[0][3];
        var stopped = TextGenerator.Generate(model, Prompts, new GenerationOptions { MaxNewTokens = 10, StopTokenIds = new[] { stopAt } });
        var first = Array.IndexOf(free[0], stopAt);
        Assert.Equal(free[0][..(first + 1)], stopped[0]);
        // Stop string over a decoder that spells ids as "<id>".
        var opts = new GenerationOptions
        {
            MaxNewTokens = 10, StopTokenIds = Array.Empty<long>(),
            Decoder = ids => string.Concat(ids.Select(i => $"<{i}>")), StopStrings = new[] { $"<{free[1][2]}>" },
        };
        var s = TextGenerator.Generate(model, Prompts, opts);
        Assert.Equal(free[1][..(Array.IndexOf(free[1], free[1][2]) + 1)], s[1]);
    }

    [Fact]
    public void SamplingIsSeededAndTopKOneIsGreedy()
    {
        using var model = PretrainedModel.Load(Repo.Fixture("models", "mistral"));
        var sample = new GenerationOptions { MaxNewTokens = 10, DoSample = true, Temperature = 1.5, TopP = 0.9, Seed = 7, StopTokenIds = Array.Empty<long>() };
        Assert.Equal(TextGenerator.Generate(model, Prompts, sample), TextGenerator.Generate(model, Prompts, sample));
        var greedy = TextGenerator.Generate(model, Prompts, new GenerationOptions { MaxNewTokens = 10, StopTokenIds = Array.Empty<long>() });
        var topk1 = TextGenerator.Generate(model, Prompts, new GenerationOptions { MaxNewTokens = 10, DoSample = true, TopK = 1, Seed = 3, StopTokenIds = Array.Empty<long>() });
        Assert.Equal(greedy, topk1);
        // A strong repetition penalty changes a greedy continuation that repeats itself.
        var penalised = TextGenerator.Generate(model, Prompts, new GenerationOptions { MaxNewTokens = 10, RepetitionPenalty = 50, StopTokenIds = Array.Empty<long>() });
        foreach (var row in penalised) Assert.Equal(row.Length, row.Distinct().Count());
    }
}
