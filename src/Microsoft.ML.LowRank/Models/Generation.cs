using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Models;

/// <summary>Options of text generation (Hugging Face's GenerationConfig names, PascalCase).</summary>
public sealed class GenerationOptions
{
    /// <summary>Maximum number of new tokens per prompt. Default 32.</summary>
    public int MaxNewTokens { get; set; } = 32;
    /// <summary>Sample (true) or take the most likely token (false, greedy). Default false.</summary>
    public bool DoSample { get; set; }
    /// <summary>Softmax temperature when sampling. Default 1.</summary>
    public double Temperature { get; set; } = 1.0;
    /// <summary>Keep only the k most likely tokens when sampling (0: off). Default 0.</summary>
    public int TopK { get; set; }
    /// <summary>Keep the smallest set of tokens whose probability reaches p when sampling (1: off). Default 1.</summary>
    public double TopP { get; set; } = 1.0;
    /// <summary>CTRL's repetition penalty: divide positive (multiply negative) logits of tokens already present (1: off).</summary>
    public double RepetitionPenalty { get; set; } = 1.0;
    /// <summary>Token ids that end a row (default: the config's eos_token_id).</summary>
    public IReadOnlyList<long>? StopTokenIds { get; set; }
    /// <summary>Strings that end a row when the decoded completion contains them (needs <see cref="Decoder"/>); the string is kept.</summary>
    public IReadOnlyList<string> StopStrings { get; set; } = Array.Empty<string>();
    /// <summary>Turns generated ids into text, for stop strings.</summary>
    public Func<IReadOnlyList<long>, string>? Decoder { get; set; }
    /// <summary>Use the key/value cache (true) or recompute the whole sequence every step (false). Default true.</summary>
    public bool UseCache { get; set; } = true;
    /// <summary>Seed of the sampler. Default 0.</summary>
    public int Seed { get; set; }
    /// <summary>Padding id for left padding (default: pad_token_id, else the first eos id, else 0).</summary>
    public long? PadTokenId { get; set; }
}

/// <summary>Autoregressive generation for causal-LM models: batched prompts with left padding and a KV cache.</summary>
public static class TextGenerator
{
    /// <summary>Generates continuations of each prompt.</summary>
    /// <param name="model">A causal-LM model.</param>
    /// <param name="prompts">Token ids of each prompt (not empty).</param>
    /// <param name="options">Options.</param>
    /// <returns>The new token ids of each prompt (stop token included when one ended the row).</returns>
    public static List<long[]> Generate(PretrainedModel model, IReadOnlyList<long[]> prompts, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        if (model.Task != ModelTask.CausalLM) throw new InvalidOperationException($"generation needs a causal-LM model; this one is {model.Task}");
        if (prompts.Count == 0) return new List<long[]>();
        if (prompts.Any(p => p.Length == 0)) throw new ArgumentException("every prompt needs at least one token", nameof(prompts));
        var o = options ?? new GenerationOptions();
        var stops = new HashSet<long>(o.StopTokenIds ?? model.Config.EosTokenIds);
        long pad = o.PadTokenId ?? model.Config.PadTokenId ?? (model.Config.EosTokenIds.Count > 0 ? model.Config.EosTokenIds[0] : 0);
        int b = prompts.Count, maxLen = prompts.Max(p => p.Length);
        var device = model.parameters().First().device;
        var rng = new Random(o.Seed);
        var generated = Enumerable.Range(0, b).Select(_ => new List<long>()).ToArray();
        var done = new bool[b];
        // Left-padded ids and mask.
        var ids = new long[b * maxLen];
        var mask = new long[b * maxLen];
        for (int r = 0; r < b; r++)
        {
            var off = maxLen - prompts[r].Length;
            for (int j = 0; j < maxLen; j++)
            {
                ids[r * maxLen + j] = j < off ? pad : prompts[r][j - off];
                mask[r * maxLen + j] = j < off ? 0 : 1;
            }
        }
        var seqs = Enumerable.Range(0, b).Select(r => ids.AsSpan(r * maxLen, maxLen).ToArray().ToList()).ToArray();
        var masks = Enumerable.Range(0, b).Select(r => mask.AsSpan(r * maxLen, maxLen).ToArray().ToList()).ToArray();
        using var cache = o.UseCache ? new KVCache(model.Config.NumHiddenLayers) : null;
        using var ng = no_grad();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            for (int step = 0; step < o.MaxNewTokens && !done.All(d => d); step++)
            {
                using var scope = NewDisposeScope();
                int total = seqs[0].Count;
                bool incremental = cache is not null && step > 0;
                int q = incremental ? 1 : total;
                var stepIds = new long[b * q];
                var fullMask = new long[b * total];
                var pos = new long[b * q];
                for (int r = 0; r < b; r++)
                {
                    long running = -1;
                    var p = new long[total];
                    for (int j = 0; j < total; j++)
                    {
                        fullMask[r * total + j] = masks[r][j];
                        if (masks[r][j] != 0) running++;
                        p[j] = masks[r][j] != 0 ? running : 1; // HF: cumsum(mask) - 1, padding positions set to 1
                    }
                    for (int j = 0; j < q; j++)
                    {
                        stepIds[r * q + j] = seqs[r][total - q + j];
                        pos[r * q + j] = p[total - q + j];
                    }
                }
                var output = model.forward(new ModelInputs
                {
                    InputIds = tensor(stepIds, new long[] { b, q }, device: device),
                    AttentionMask = tensor(fullMask, new long[] { b, total }, device: device),
                    PositionIds = tensor(pos, new long[] { b, q }, device: device),
                    Cache = cache,
                });
                var last = output.Logits!.select(1, q - 1).to_type(ScalarType.Float32).ToArray<float>();
                long vocab = output.Logits!.size(2);
                for (int r = 0; r < b; r++)
                {
                    long next;
                    if (done[r]) next = pad;
                    else
                    {
                        var row = new float[vocab];
                        Array.Copy(last, r * vocab, row, 0, vocab);
                        next = Choose(row, seqs[r], masks[r], o, rng);
                        generated[r].Add(next);
                        if (stops.Contains(next)) done[r] = true;
                        else if (o.StopStrings.Count > 0 && o.Decoder is not null)
                        {
                            var text = o.Decoder(generated[r]);
                            if (o.StopStrings.Any(s => text.Contains(s, StringComparison.Ordinal))) done[r] = true;
                        }
                    }
                    seqs[r].Add(next);
                    masks[r].Add(1);
                }
            }
        }
        finally
        {
            model.train(wasTraining);
        }
        return generated.Select(g => g.ToArray()).ToList();
    }

    private static long Choose(float[] logits, List<long> seq, List<long> mask, GenerationOptions o, Random rng)
    {
        if (o.RepetitionPenalty != 1.0)
        {
            var seen = new HashSet<long>();
            for (int j = 0; j < seq.Count; j++) if (mask[j] != 0) seen.Add(seq[j]);
            foreach (var t in seen)
                if (t >= 0 && t < logits.Length)
                    logits[t] = logits[t] > 0 ? (float)(logits[t] / o.RepetitionPenalty) : (float)(logits[t] * o.RepetitionPenalty);
        }
        if (!o.DoSample)
        {
            int best = 0;
            for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
            return best;
        }
        if (o.Temperature <= 0) throw new ArgumentException("temperature must be positive when sampling");
        var n = logits.Length;
        var order = Enumerable.Range(0, n).ToArray();
        Array.Sort(order, (x, y) => logits[y].CompareTo(logits[x]));
        int keep = o.TopK > 0 ? Math.Min(o.TopK, n) : n;
        var max = logits[order[0]] / o.Temperature;
        var probs = new double[keep];
        double sum = 0;
        for (int i = 0; i < keep; i++) { probs[i] = Math.Exp(logits[order[i]] / o.Temperature - max); sum += probs[i]; }
        for (int i = 0; i < keep; i++) probs[i] /= sum;
        if (o.TopP < 1.0)
        {
            double cum = 0;
            int cut = keep;
            for (int i = 0; i < keep; i++) { cum += probs[i]; if (cum >= o.TopP) { cut = i + 1; break; } }
            keep = Math.Max(1, cut);
            sum = 0;
            for (int i = 0; i < keep; i++) sum += probs[i];
            for (int i = 0; i < keep; i++) probs[i] /= sum;
        }
        var u = rng.NextDouble();
        double acc = 0;
        for (int i = 0; i < keep; i++) { acc += probs[i]; if (u < acc) return order[i]; }
        return order[keep - 1];
    }
}
