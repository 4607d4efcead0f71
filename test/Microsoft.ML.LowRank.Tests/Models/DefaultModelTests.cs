using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Microsoft.ML.LowRank.Data;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Models;

/// <summary>The embedded default base model: extraction, held-out perplexity, generation, a classification head, zero-shot.</summary>
public class DefaultModelTests
{
    [Fact]
    public void ExtractsTheEmbeddedFilesOnceIntoAHashNamedCacheFolder()
    {
        string folder = DefaultModel.EnsureCached();
        Assert.Matches("^[0-9a-f]{12}$", DefaultModel.ContentHash);
        Assert.Equal($"{DefaultModel.Name}-{DefaultModel.ContentHash}", Path.GetFileName(folder));
        Assert.Equal(["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"], DefaultModel.Files);
        var resources = Path.Combine(Repo.Root, "src", "Microsoft.ML.LowRank", "Resources", "DefaultModel");
        foreach (var f in DefaultModel.Files)
            Assert.Equal(SHA256.HashData(File.ReadAllBytes(Path.Combine(resources, f))), SHA256.HashData(File.ReadAllBytes(Path.Combine(folder, f))));
        var written = File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors"));
        Assert.Equal(folder, DefaultModel.EnsureCached());
        Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors")));
        Assert.True(new FileInfo(Path.Combine(folder, "model.safetensors")).Length < 10_000_000, "the weights stay under 10 MB");
    }

    [Fact]
    public void HeldOutPerplexityIsFarBelowTheUniformBaseline()
    {
        using var model = DefaultModel.Load();
        var tok = DefaultModel.LoadTokenizer();
        Assert.Equal(4096, tok.VocabularySize);
        Assert.Equal(4096, model.Config.VocabSize);
        Assert.Equal(ScalarType.Float32, model.get_parameter("model.embed_tokens.weight").dtype);
        // The 14 documents held out of pre-training (EnglishCorpus.Split: 5 Moby Dick chapters, 9 addresses), up to 8 chunks each.
        var (_, validation) = EnglishCorpus.Split(EnglishCorpus.Load());
        Assert.Equal(14, validation.Count);
        var chunks = validation.SelectMany(d => CausalLMPretrainer.Chunk(CausalLMPretrainer.TokenStream(tok, [d.Text], 0), 128).Take(8)).ToList();
        Assert.InRange(chunks.Count, 80, 14 * 8); // a few chapters are shorter than 8 chunks
        double ppl = CausalLMPretrainer.Perplexity(model, chunks);
        Assert.True(ppl < MaxHeldOutPerplexity, $"held-out perplexity {ppl:F1} (uniform: 4096)");
        // The same sentences in the sentiment data (other domains: reviews) are still far below uniform.
        var reviews = string.Join(" ", UciSentiment.Load("yelp").Take(200).Select(s => s.Text));
        double reviewPpl = CausalLMPretrainer.Perplexity(model, CausalLMPretrainer.Chunk(CausalLMPretrainer.TokenStream(tok, [reviews], 0), 128));
        Assert.True(reviewPpl < 4096 / 8.0, $"review perplexity {reviewPpl:F1}");
    }

    /// <summary>Measured 0.0 on the committed model (docs/default-model.md); the bound leaves room for other CPUs' float rounding.</summary>
    private const double MaxHeldOutPerplexity = 4096 / 10.0;

    [Fact]
    public void GreedyGenerationProducesEnglishWords()
    {
        using var model = DefaultModel.Load();
        var tok = DefaultModel.LoadTokenizer();
        var words = new HashSet<string>(EnglishCorpus.MobyDick().SelectMany(d => Regex.Matches(d.Text.ToLowerInvariant(), "[a-z]+").Select(m => m.Value)));
        foreach (var prompt in new[] { "The whale", "It is the duty of the government to" })
        {
            var ids = tok.EncodeToIds(prompt, addSpecialTokens: false).Select(i => (long)i).ToArray();
            var output = TextGenerator.Generate(model, [ids], new GenerationOptions { MaxNewTokens = 24 })[0];
            string text = tok.Decode(output.Select(i => (int)i));
            var generated = Regex.Matches(text.ToLowerInvariant(), "[a-z]+").Select(m => m.Value).ToList();
            Assert.True(generated.Count >= 8, $"'{text}' has too few words");
            double known = generated.Count(words.Contains) / (double)generated.Count;
            Assert.True(known >= 0.9, $"only {known:P0} of the words of '{text}' are English words of the corpus");
        }
    }

    [Fact]
    public void LoadsWithANewSequenceClassificationHead()
    {
        using var scope = NewDisposeScope();
        using var lm = DefaultModel.Load();
        using var cls = DefaultModel.Load(ModelTask.SequenceClassification, numLabels: 2);
        Assert.Equal(["score.weight"], cls.LoadReport.InitializedKeys);
        Assert.Empty(cls.LoadReport.IgnoredKeys);
        Assert.Equal(new long[] { 2, 256 }, cls.get_parameter("score.weight").shape);
        Assert.True(lm.get_parameter("model.layers.3.mlp.down_proj.weight").equal(cls.get_parameter("model.layers.3.mlp.down_proj.weight")));
        var tok = DefaultModel.LoadTokenizer();
        var batch = tok.EncodeBatch(["A great little phone.", "Terrible."], padding: new Microsoft.ML.LowRank.Tokenizers.PaddingOptions { PadId = (int)cls.Config.PadTokenId!.Value, PadToken = "<pad>" });
        var ids = tensor(batch.Encodings.SelectMany(e => e.Ids.Select(i => (long)i)).ToArray(), new long[] { 2, batch.Encodings[0].Length });
        var output = cls.forward(new ModelInputs { InputIds = ids, Labels = tensor(new long[] { 1, 0 }) });
        Assert.Equal(new long[] { 2, 2 }, output.Logits!.shape);
        Assert.True(double.IsFinite(output.Loss!.item<float>()));
        // The head reads the last real token of each row (pad_token_id is set), so padding does not change row 1's logits.
        var terrible = tok.EncodeToIds("Terrible.", addSpecialTokens: false).Select(i => (long)i).ToArray();
        Assert.True(terrible.Length < batch.Encodings[0].Length, "row 1 is padded");
        var alone = cls.forward(new ModelInputs { InputIds = tensor(terrible, new long[] { 1, terrible.Length }) });
        Assert.True(alone.Logits!.allclose(output.Logits!.narrow(0, 1, 1), 1e-5, 1e-5));
    }

    [Fact]
    public void ZeroShotAndProbeBaselinesRunOnTheTestSplit()
    {
        using var model = DefaultModel.Load();
        var tok = DefaultModel.LoadTokenizer();
        var split = SentimentTask.Load();
        Assert.Single(tok.EncodeToIds(" good", addSpecialTokens: false));
        Assert.Single(tok.EncodeToIds(" poor", addSpecialTokens: false));
        var calibrated = SentimentTask.EvaluateZeroShot(model, tok, split.Test);
        var raw = SentimentTask.EvaluateZeroShot(model, tok, split.Test, new ZeroShotOptions { Calibrate = false });
        Assert.Equal(600, calibrated.Scores.Count);
        Assert.Equal(0, raw.ContentFreeScore);
        for (int i = 0; i < 600; i++) Assert.Equal(raw.Scores[i] - calibrated.ContentFreeScore, calibrated.Scores[i], 1e-9);
        Assert.Equal(split.Test.Where((s, i) => calibrated.Scores[i] > 0 == s.Label).Count() / 600.0, calibrated.Accuracy.Overall, 12);
        var probe = SentimentTask.EvaluateLinearProbe(model, tok, split.Train, split.Test);
        Assert.InRange(probe.Test.Overall, 0.5, 1.0);
        Assert.True(probe.Train.Overall >= probe.Test.Overall - 0.05);
    }
}
