using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Cli;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tokenizers;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>The causal-LM pre-training pipeline on a tiny synthetic corpus (the real run is eng/make_default_model.sh).</summary>
[Collection(SerialCollection.Name)] // seeds the default generator; the CLI test redirects Console
public class PretrainingTests
{
    /// <summary>Sentences from a small grammar: learnable structure, so perplexity must fall well below the vocabulary size.</summary>
    internal static List<string> GrammarCorpus(int documents, int seed)
    {
        var rng = new Random(seed);
        string[] subjects = ["the cat", "the old sailor", "a whale", "the captain", "my friend"], verbs = ["sees", "follows", "likes", "fears", "finds"],
            objects = ["the ship", "a small boat", "the white whale", "the harbour", "the sea"];
        return Enumerable.Range(0, documents).Select(_ => string.Join(" ", Enumerable.Range(0, 4).Select(_ =>
        {
            string s = $"{subjects[rng.Next(subjects.Length)]} {verbs[rng.Next(verbs.Length)]} {objects[rng.Next(objects.Length)]}.";
            return char.ToUpperInvariant(s[0]) + s[1..];
        }))).ToList();
    }

    private static PretrainingOptions Tiny(int steps) => new()
    {
        VocabularySize = 300, HiddenSize = 32, Layers = 1, Heads = 2, IntermediateSize = 64, SequenceLength = 16, MaxPositionEmbeddings = 32,
        BatchSize = 8, Steps = steps, WarmupSteps = 5, LearningRate = 1e-2, LoggingSteps = 1000,
    };

    [Fact]
    public void PretrainingLearnsTheCorpusAndSavesALoadableHfFolder()
    {
        var docs = GrammarCorpus(160, 1);
        var validation = GrammarCorpus(12, 2);
        string folder = Directory.CreateTempSubdirectory("lowrank-pretrain-").FullName;
        try
        {
            var lines = new List<string>();
            var report = CausalLMPretrainer.Run(docs, validation, folder, Tiny(60), lines.Add);
            Assert.Equal(60, report.Steps);
            Assert.Equal(60L * 8 * 16, report.TokensSeen);
            Assert.InRange(report.InitialValidationPerplexity, 150, 450);    // ~uniform over 300 tokens at initialisation
            Assert.True(report.ValidationPerplexity < 12, $"validation perplexity {report.ValidationPerplexity}"); // the grammar has ~5 choices per slot
            Assert.Equal(report.ValidationPerplexity, report.SavedValidationPerplexity, report.ValidationPerplexity * 0.02); // bfloat16 rounding
            Assert.Contains(lines, l => l.StartsWith("tokenizer:", StringComparison.Ordinal));
            foreach (var f in new[] { "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "pretraining_report.json" })
                Assert.True(File.Exists(Path.Combine(folder, f)), f);

            // The folder is a HF causal LM + tokenizer that our loaders read; the report's perplexity is recomputed here.
            var tok = Tokenizer.FromDirectory(folder);
            Assert.Equal(300, tok.VocabularySize);
            using var model = PretrainedModel.Load(folder, dtype: ScalarType.Float32);
            Assert.Equal(report.Parameters, model.num_parameters());
            Assert.Equal(300 * 32 + 4 * 32 * 32 + 3 * 32 * 64 + 3 * 32, report.Parameters); // tied embedding, q/k/v/o, MLP, 3 norms
            Assert.Equal(0, model.Config.EosTokenIds[0]);
            Assert.Equal(1, model.Config.PadTokenId);
            Assert.Equal(2, model.Config.BosTokenId);
            var chunks = CausalLMPretrainer.Chunk(CausalLMPretrainer.TokenStream(tok, validation, 0), 16);
            Assert.Equal(report.SavedValidationPerplexity, CausalLMPretrainer.Perplexity(model, chunks), 1e-3);
            Assert.Equal(report.ValidationTokens, chunks.Count * 15L);
            var reportJson = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "pretraining_report.json")))!;
            Assert.Equal(60, reportJson["steps"]!.GetValue<int>());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void AnInterruptedRunResumesFromItsCheckpointAndEndsIdentically()
    {
        var docs = GrammarCorpus(80, 5);
        var validation = GrammarCorpus(8, 6);
        string root = Directory.CreateTempSubdirectory("lowrank-pretrain-resume-").FullName;
        try
        {
            PretrainingOptions Options(string name) => new()
            {
                VocabularySize = 300, HiddenSize = 32, Layers = 1, Heads = 2, IntermediateSize = 64, SequenceLength = 16, MaxPositionEmbeddings = 32,
                BatchSize = 4, Steps = 12, WarmupSteps = 2, LearningRate = 1e-2, LoggingSteps = 1,
                CheckpointFolder = Path.Combine(root, name + ".checkpoints"), CheckpointSteps = 4,
            };
            var whole = CausalLMPretrainer.Run(docs, validation, Path.Combine(root, "whole"), Options("whole"));

            // Stop the second run after step 6 (checkpoint-4 exists), then run it again with the same folders.
            using var cts = new CancellationTokenSource();
            Assert.Throws<OperationCanceledException>(() => CausalLMPretrainer.Run(docs, validation, Path.Combine(root, "cut"), Options("cut"),
                line => { if (line.StartsWith("step 6/", StringComparison.Ordinal)) cts.Cancel(); }, cts.Token));
            Assert.True(Directory.Exists(Path.Combine(root, "cut.checkpoints", "checkpoint-4")));
            var lines = new List<string>();
            var resumed = CausalLMPretrainer.Run(docs, validation, Path.Combine(root, "cut"), Options("cut"), lines.Add);
            Assert.Contains(lines, l => l.StartsWith("resuming from", StringComparison.Ordinal));
            Assert.Equal(12, resumed.Steps);
            Assert.Equal(whole.ValidationPerplexity, resumed.ValidationPerplexity); // bit-identical on the CPU
            Assert.Equal(File.ReadAllBytes(Path.Combine(root, "whole", "model.safetensors")), File.ReadAllBytes(Path.Combine(root, "cut", "model.safetensors")));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void PerplexityIsExpOfTheMeanTokenNll()
    {
        using var scope = NewDisposeScope();
        using var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float64);
        var rng = new Random(9);
        var chunks = Enumerable.Range(0, 40).Select(_ => Enumerable.Range(0, 6).Select(_ => (long)rng.Next(0, 97)).ToArray()).ToList();
        double nll = 0;
        foreach (var c in chunks)
        {
            var logp = nn.functional.log_softmax(model.forward(new ModelInputs { InputIds = tensor(c, new long[] { 1, 6 }) }).Logits!, -1).select(0, 0);
            for (int t = 0; t + 1 < c.Length; t++) nll -= logp[t, c[t + 1]].item<double>();
        }
        // The model computes its loss in float32 (logits are cast before the cross-entropy): agreement to float32 precision.
        double expected = Math.Exp(nll / (40 * 5));
        Assert.Equal(expected, CausalLMPretrainer.Perplexity(model, chunks), expected * 1e-6);
    }

    [Fact]
    public void InitialisationFollowsTheRecipe()
    {
        var o = new PretrainingOptions { VocabularySize = 300, HiddenSize = 64, Layers = 2, Heads = 2, IntermediateSize = 128 };
        var config = ModelConfig.Parse(CausalLMPretrainer.BuildConfigJson(o, 0, 1, 2));
        manual_seed(3);
        using var model = new PretrainedModel(config);
        CausalLMPretrainer.Initialize(model, o);
        double Std(string name) => model.get_parameter(name).to_type(ScalarType.Float64).std().item<double>();
        Assert.Equal(0.02, Std("model.embed_tokens.weight"), 0.001);
        Assert.Equal(0.02, Std("model.layers.0.self_attn.q_proj.weight"), 0.001);
        Assert.Equal(0.02 / Math.Sqrt(4), Std("model.layers.1.mlp.down_proj.weight"), 0.001);
        Assert.Equal(0.02 / Math.Sqrt(4), Std("model.layers.0.self_attn.o_proj.weight"), 0.001);
        Assert.Equal(1.0, model.get_parameter("model.norm.weight").min().item<float>());
        Assert.True(config.TieWordEmbeddings);
        Assert.Equal(256, config.MaxPositionEmbeddings);
    }

    [Fact]
    public void CliPretrainWritesTheFolderAndReportsJson()
    {
        string dir = Directory.CreateTempSubdirectory("lowrank-cli-pretrain-").FullName;
        try
        {
            string corpus = Path.Combine(dir, "corpus.txt");
            File.WriteAllLines(corpus, GrammarCorpus(60, 4));
            string output = Path.Combine(dir, "model");
            var (code, stdout, err) = CliTests.Run("pretrain", "--output", output, "--corpus", corpus, "--vocab", "300", "--hidden", "32", "--layers", "1",
                "--heads", "2", "--intermediate", "64", "--seq", "16", "--steps", "4", "--batch-size", "4", "--warmup", "1", "--json");
            Assert.True(code == 0, err);
            var report = JsonNode.Parse(stdout)!;
            Assert.Equal(4, report["steps"]!.GetValue<int>());
            Assert.Equal(300, report["vocabulary_size"]!.GetValue<int>());
            Assert.Equal(58, report["train_documents"]!.GetValue<int>()); // positions 12 and 37 are held out
            Assert.True(File.Exists(Path.Combine(output, "model.safetensors")));
            Assert.Equal("bfloat16", JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!["torch_dtype"]!.GetValue<string>());
            var (badCode, _, badErr) = CliTests.Run("pretrain", "--output", output, "--corpus", corpus, "--heads", "3");
            Assert.Equal(1, badCode);
            Assert.Contains("Heads", badErr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
