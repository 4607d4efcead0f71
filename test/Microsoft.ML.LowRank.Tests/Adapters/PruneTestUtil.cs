using Microsoft.ML.LowRank.Models;

namespace Microsoft.ML.LowRank.Tests.Adapters;

/// <summary>Shapes of the adapted matrices of the fixture configs, written out from the architectures (for the §8
/// parameter-count formulas of AdaLoRA, LoRA-drop and LoRAPrune).</summary>
internal static class PruneTestUtil
{
    /// <summary>(name, in, out) per block for PEFT's default targets: GPT-2 c_attn; LLaMA q_proj, v_proj; BERT query, value.</summary>
    public static List<(string name, long @in, long @out)> DefaultTargetShapes(ModelConfig c)
    {
        long h = c.HiddenSize, q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim;
        return c.Family switch
        {
            ModelFamily.Gpt2 => new() { ("c_attn", h, 3 * h) },
            ModelFamily.Llama => new() { ("q_proj", h, q), ("v_proj", h, kv) },
            _ => new() { ("query", h, h), ("value", h, h) },
        };
    }

    /// <summary>(name, in, out) per block for "all-linear" (every linear of a block; BERT's pooler is counted by
    /// <see cref="AllLinearExtra"/>).</summary>
    public static List<(string name, long @in, long @out)> AllLinearShapes(ModelConfig c)
    {
        long h = c.HiddenSize, q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim, i = c.IntermediateSize;
        return c.Family switch
        {
            ModelFamily.Gpt2 => new() { ("attn.c_attn", h, 3 * h), ("attn.c_proj", h, h), ("mlp.c_fc", h, i), ("mlp.c_proj", i, h) },
            ModelFamily.Llama => new() { ("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h), ("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h) },
            _ => new() { ("query", h, h), ("key", h, h), ("value", h, h), ("attention.output.dense", h, h), ("intermediate.dense", h, i), ("output.dense", i, h) },
        };
    }

    /// <summary>Linears outside the blocks that "all-linear" adapts (BERT's pooler.dense), as (in, out).</summary>
    public static List<(long @in, long @out)> AllLinearExtra(ModelConfig c)
        => c.Family is ModelFamily.Bert or ModelFamily.Roberta ? new() { (c.HiddenSize, c.HiddenSize) } : new();

    /// <summary>The trainable head the CLI's params command adds (PEFT trains and saves the classifier of a
    /// sequence-classification model): BERT's classifier Linear(hidden, labels) with bias; nothing for causal LMs.</summary>
    public static long HeadParameters(ModelConfig c)
        => c.Family is ModelFamily.Bert or ModelFamily.Roberta ? c.HiddenSize * c.NumLabels + c.NumLabels : 0;
}
