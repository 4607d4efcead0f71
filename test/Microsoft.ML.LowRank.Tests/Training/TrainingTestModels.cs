using Microsoft.ML.LowRank.Training;
using Microsoft.ML.LowRank.Torch;
using Microsoft.ML.LowRank.Torch.Modules;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Tests.Training;

/// <summary>A module that only holds parameters, registered under the given leaf names.</summary>
internal sealed class ParamBag : nn.Module
{
    public ParamBag(params (string name, Tensor value, bool trainable)[] items) : base(nameof(ParamBag))
    {
        foreach (var (name, value, trainable) in items) register_parameter(name, new nn.Parameter(value, trainable));
    }
}

/// <summary>A module tree built from dotted names, e.g. "layer.lora_B" -> child "layer" holding parameter "lora_B".</summary>
internal sealed class NamedTree : nn.Module
{
    public NamedTree(IEnumerable<(string path, long[] shape, bool trainable)> items) : base(nameof(NamedTree))
    {
        using var scope = NewDisposeScope();
        foreach (var group in items.GroupBy(i => i.path.Contains('.') ? i.path[..i.path.IndexOf('.')] : ""))
        {
            if (group.Key.Length == 0)
            {
                foreach (var (path, shape, trainable) in group) register_parameter(path, new nn.Parameter(randn(shape), trainable));
            }
            else
            {
                register_module(group.Key, new NamedTree(group.Select(g => (g.path[(group.Key.Length + 1)..], g.shape, g.trainable))));
            }
        }
    }
}

/// <summary>
/// A tiny next-token model: embedding -> tanh(linear) -> dropout -> head, with the causal-LM loss (shifted labels,
/// -100 ignored). Fast enough for many training steps in a unit test.
/// </summary>
internal sealed class TinyLM : nn.Module
{
    private readonly Embedding _embed;
    private readonly Linear _hidden;
    private readonly Dropout _drop;
    private readonly Linear _head;

    public TinyLM(int vocab, int dim, double dropout = 0.0, long seed = 1) : base(nameof(TinyLM))
    {
        manual_seed(seed);
        _embed = register_module("embed", new Embedding(vocab, dim));
        _hidden = register_module("hidden", new Linear(dim, dim));
        _drop = register_module("drop", new Dropout(dropout));
        _head = register_module("lm_head", new Linear(dim, vocab));
    }

    public Tensor Logits(Tensor ids) => _head.call(_drop.call(_hidden.call(_embed.call(ids)).tanh()));

    public Tensor Loss(Batch b)
    {
        var logits = Logits(b.InputIds);
        long t = logits.size(1);
        var shifted = logits.narrow(1, 0, t - 1).reshape(-1, logits.size(2));
        var target = b.Labels!.narrow(1, 1, t - 1).reshape(-1);
        return nn.functional.cross_entropy(shifted, target, ignore_index: -100);
    }
}

internal static class TrainingData
{
    /// <summary>Sequences following x[i+1] = (a*x[i] + c) mod vocab, with varying lengths when asked.</summary>
    public static List<TokenExample> Affine(int count, int vocab, int length, int seed, bool varyLength = false, int promptLength = 0)
    {
        var rng = new Random(seed);
        var list = new List<TokenExample>();
        for (int i = 0; i < count; i++)
        {
            int n = varyLength ? 3 + rng.Next(length - 2) : length;
            var ids = new long[n];
            ids[0] = rng.Next(vocab);
            for (int k = 1; k < n; k++) ids[k] = (3 * ids[k - 1] + 1) % vocab;
            list.Add(new TokenExample(ids, Math.Min(promptLength, n)));
        }
        return list;
    }

    public static TrainerOptions Options(Action<TrainerOptions>? configure = null)
    {
        var o = new TrainerOptions
        {
            LearningRate = 1e-2,
            BatchSize = 4,
            MaxEpochs = 2,
            Schedule = LearningRateSchedule.Linear,
            WarmupSteps = 2,
            LoggingSteps = 1,
            Seed = 7,
        };
        configure?.Invoke(o);
        return o;
    }
}
