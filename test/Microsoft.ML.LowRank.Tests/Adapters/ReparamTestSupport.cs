using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters;
using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Tests.Helpers;
using Microsoft.ML.LowRank.Tests.Training;
using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>Shared pieces of the DoRA / VeRA / ResLoRA tests: the adapted shapes of the fixtures (from their configs,
/// independently of the injection code), a CLI parameter count, a short training run, and float64 helpers.</summary>
internal static class ReparamTestSupport
{
    /// <summary>The (in, out) of every module PEFT's default targets select in a fixture, from its config.json:
    /// GPT-2 c_attn (n_embd → 3·n_embd), LLaMA q_proj and v_proj (hidden → heads·head_dim, hidden → kv·head_dim),
    /// BERT query and value (hidden → hidden), per layer.</summary>
    public static List<(long inF, long outF)> DefaultTargetShapes(string fixture)
    {
        var c = ModelConfig.FromFile(Repo.Fixture("models", fixture));
        var list = new List<(long, long)>();
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            switch (c.ModelType)
            {
                case "gpt2": list.Add((c.HiddenSize, 3 * c.HiddenSize)); break;
                case "llama":
                    list.Add((c.HiddenSize, c.NumAttentionHeads * c.HeadDim));
                    list.Add((c.HiddenSize, c.NumKeyValueHeads * c.HeadDim));
                    break;
                case "bert":
                    list.Add((c.HiddenSize, c.HiddenSize));
                    list.Add((c.HiddenSize, c.HiddenSize));
                    break;
                default: throw new NotSupportedException(c.ModelType);
            }
        }
        return list;
    }

    /// <summary>Trainable parameters the CLI's params command adds besides the adapter for a fixture: BERT is counted as a
    /// sequence classifier whose head (hidden → labels, with bias) is trained as a module to save.</summary>
    public static long HeadParameters(string fixture)
    {
        var c = ModelConfig.FromFile(Repo.Fixture("models", fixture));
        return c.ModelType == "bert" ? c.HiddenSize * c.NumLabels + c.NumLabels : 0;
    }

    /// <summary>Runs <c>lowrank params &lt;fixture&gt; --method M ... --json</c> and returns the trainable count.</summary>
    public static long CliTrainable(string fixture, params string[] methodArgs)
    {
        var args = new[] { "params", Repo.Fixture("models", fixture) }.Concat(methodArgs).Append("--json").ToArray();
        var (code, output, error) = Cli.CliTests.Run(args);
        Assert.True(code == 0, error);
        return JsonNode.Parse(output)!["trainable"]!.GetValue<long>();
    }

    /// <summary>
    /// Fine-tunes the tiny LLaMA fixture with the given adapter options for a few AdamW steps on repeating token
    /// patterns and returns the held-out loss before and after; asserts that every base weight stayed bit-identical and
    /// every adapter parameter moved. Uses the process-wide generator: call it from the serial collection.
    /// </summary>
    public static (double before, double after, LowRankModel model) ShortTraining(LowRankAdapterOptions options, int steps = 25, double lr = 1e-2)
    {
        var model = PretrainedModel.Load(Repo.Fixture("models", "llama"), dtype: ScalarType.Float32);
        var baseBefore = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone().DetachFromDisposeScope());
        manual_seed(11); // the adapters' random init draws from the global generator
        var peft = LowRankModel.Create(model, options);
        var adapterBefore = peft.named_parameters().Where(p => p.parameter.requires_grad)
            .ToDictionary(p => p.name, p => p.parameter.clone().DetachFromDisposeScope());
        Assert.NotEmpty(adapterBefore);
        int vocab = (int)model.Config.VocabSize;
        var train = new TokenBatcher(FineTuneTests.RepeatingPatterns(128, seed: 1, vocab));
        var heldOut = new TokenBatcher(FineTuneTests.RepeatingPatterns(16, seed: 2, vocab));
        Tensor Loss(Batch b) => peft.forward(new ModelInputs { InputIds = b.InputIds, AttentionMask = b.AttentionMask, Labels = b.Labels }).Loss!;
        double before, after;
        using (var trainer = new Trainer(peft, Loss, new TrainerOptions { LearningRate = lr, BatchSize = 8, MaxSteps = steps, WarmupSteps = 2, Seed = 3 }))
        {
            before = trainer.Evaluate(heldOut);
            trainer.Train(train);
            after = trainer.Evaluate(heldOut);
        }
        foreach (var (name, p) in peft.named_parameters())
        {
            if (adapterBefore.TryGetValue(name, out var old))
            {
                Assert.False(old.equal(p), $"adapter parameter {name} did not change");
                continue;
            }
            var key = name.Replace("base_model.model.", "").Replace(".base_layer", "");
            Assert.True(baseBefore.ContainsKey(key), $"unexpected non-adapter parameter {name}");
            Assert.True(baseBefore[key].equal(p), $"base weight {name} changed");
            Assert.False(p.requires_grad, $"base weight {name} is trainable");
        }
        foreach (var t in baseBefore.Values.Concat(adapterBefore.Values)) t.Dispose();
        return (before, after, peft);
    }

    /// <summary>A tensor's values as doubles (any dtype).</summary>
    public static double[] D(Tensor t) => t.ToDoubleArray();

    /// <summary>max |a − b|.</summary>
    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return (a.to_type(ScalarType.Float64) - b.to_type(ScalarType.Float64)).abs().max().ToDouble();
    }
}
