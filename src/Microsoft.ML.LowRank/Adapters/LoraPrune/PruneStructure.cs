using Microsoft.ML.LowRank.Models;
using Microsoft.ML.LowRank.Torch;

namespace Microsoft.ML.LowRank.Adapters.LoraPrune;

/// <summary>What a pruning group removes.</summary>
public enum PruneGroupKind
{
    /// <summary>Attention heads: one unit per key/value head together with the query heads that read it (a plain head
    /// for multi-head attention, a whole group under grouped-query attention).</summary>
    Attention,
    /// <summary>MLP channels: one unit per intermediate channel.</summary>
    Mlp,
}

/// <summary>How a module takes part in a pruning group.</summary>
/// <param name="Path">The module's full name in the model.</param>
/// <param name="Columns">False: the module's output rows belong to units (q, k, v, gate, up, c_attn, c_fc, intermediate);
/// true: its input columns do (o_proj, down_proj, c_proj, output.dense), so its importance is summed over columns.</param>
/// <param name="UnitOfChannel">The unit of each output row (or input column, for <paramref name="Columns"/>).</param>
/// <param name="MaskCarrier">Whether the pruning mask is applied to this module's output (row members only).</param>
/// <param name="RemovesUnit">Whether masking this module's output alone removes a unit's contribution exactly (v for
/// attention, any MLP row member).</param>
public sealed record PruneMember(string Path, bool Columns, long[] UnitOfChannel, bool MaskCarrier, bool RemovesUnit);

/// <summary>One structure of a block whose units are pruned together (a block's attention or its MLP).</summary>
/// <param name="Name">The owning module's name (e.g. "model.layers.0.self_attn").</param>
/// <param name="Kind">Heads or channels.</param>
/// <param name="Layer">The block index.</param>
/// <param name="Units">Number of units.</param>
/// <param name="Members">The modules the units span.</param>
public sealed record PruneGroup(string Name, PruneGroupKind Kind, int Layer, int Units, IReadOnlyList<PruneMember> Members);

/// <summary>
/// The prunable structures of the supported architectures (LLaMA family, GPT-2, BERT/RoBERTa), LoRAPrune's
/// <c>pruning_groups</c>: per block, the attention (q, k, v rows and o columns by head; GPT-2's fused c_attn rows by head
/// within each of its q, k, v thirds) and the MLP (gate/up or c_fc or intermediate rows, down/c_proj/output columns by
/// channel).
/// </summary>
public static class PruneStructure
{
    /// <summary>The groups of a model (every block, in order).</summary>
    /// <param name="model">The model.</param>
    /// <returns>The groups.</returns>
    /// <exception cref="NotSupportedException">An architecture without a structure description.</exception>
    public static List<PruneGroup> For(PretrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var c = model.Config;
        var names = new HashSet<string>(model.named_modules().Select(m => m.name), StringComparer.Ordinal);
        string Find(params string[] candidates) => candidates.FirstOrDefault(names.Contains)
            ?? throw new NotSupportedException($"LoRAPrune cannot find module {candidates[0]} in {model.name}");
        int L = c.NumHiddenLayers, H = c.NumAttentionHeads, KV = c.NumKeyValueHeads;
        long d = c.HeadDim, I = c.IntermediateSize, hidden = c.HiddenSize;
        long rep = H / KV;
        long[] ByHead(long channels, Func<long, long> unit) => Enumerable.Range(0, (int)channels).Select(ch => unit(ch)).ToArray();
        long[] Identity(long n) => Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray();
        var groups = new List<PruneGroup>();
        for (int i = 0; i < L; i++)
        {
            switch (c.Family)
            {
                case ModelFamily.Llama:
                {
                    var p = Find($"model.layers.{i}", $"layers.{i}");
                    var qUnit = ByHead(H * d, ch => ch / d / rep);
                    var kvUnit = ByHead(KV * d, ch => ch / d);
                    groups.Add(new PruneGroup(p + ".self_attn", PruneGroupKind.Attention, i, KV, new[]
                    {
                        new PruneMember(p + ".self_attn.q_proj", false, qUnit, true, false),
                        new PruneMember(p + ".self_attn.k_proj", false, kvUnit, true, false),
                        new PruneMember(p + ".self_attn.v_proj", false, kvUnit, true, true),
                        new PruneMember(p + ".self_attn.o_proj", true, qUnit, false, false),
                    }));
                    var ch = Identity(I);
                    groups.Add(new PruneGroup(p + ".mlp", PruneGroupKind.Mlp, i, (int)I, new[]
                    {
                        new PruneMember(p + ".mlp.gate_proj", false, ch, true, true),
                        new PruneMember(p + ".mlp.up_proj", false, ch, true, true),
                        new PruneMember(p + ".mlp.down_proj", true, ch, false, false),
                    }));
                    break;
                }
                case ModelFamily.Gpt2:
                {
                    var p = Find($"transformer.h.{i}", $"h.{i}");
                    var qkvUnit = ByHead(3L * hidden, ch => ch % hidden / d);
                    groups.Add(new PruneGroup(p + ".attn", PruneGroupKind.Attention, i, H, new[]
                    {
                        new PruneMember(p + ".attn.c_attn", false, qkvUnit, true, true),
                        new PruneMember(p + ".attn.c_proj", true, ByHead(hidden, ch => ch / d), false, false),
                    }));
                    var ch = Identity(I);
                    groups.Add(new PruneGroup(p + ".mlp", PruneGroupKind.Mlp, i, (int)I, new[]
                    {
                        new PruneMember(p + ".mlp.c_fc", false, ch, true, true),
                        new PruneMember(p + ".mlp.c_proj", true, ch, false, false),
                    }));
                    break;
                }
                case ModelFamily.Bert:
                case ModelFamily.Roberta:
                {
                    var p = Find($"bert.encoder.layer.{i}", $"roberta.encoder.layer.{i}", $"encoder.layer.{i}");
                    var head = ByHead(hidden, ch => ch / d);
                    groups.Add(new PruneGroup(p + ".attention", PruneGroupKind.Attention, i, H, new[]
                    {
                        new PruneMember(p + ".attention.self.query", false, head, true, false),
                        new PruneMember(p + ".attention.self.key", false, head, true, false),
                        new PruneMember(p + ".attention.self.value", false, head, true, true),
                        new PruneMember(p + ".attention.output.dense", true, head, false, false),
                    }));
                    var ch = Identity(I);
                    groups.Add(new PruneGroup(p + ".intermediate", PruneGroupKind.Mlp, i, (int)I, new[]
                    {
                        new PruneMember(p + ".intermediate.dense", false, ch, true, true),
                        new PruneMember(p + ".output.dense", true, ch, false, false),
                    }));
                    break;
                }
                default:
                    throw new NotSupportedException($"LoRAPrune has no structure description for {c.Family} models");
            }
        }
        return groups;
    }

    /// <summary>LoRAPrune's protected blocks: the first ⌊0.1·L⌋ (rounded down, as in the reference) and the last.</summary>
    /// <param name="layer">Block index.</param>
    /// <param name="numLayers">L.</param>
    /// <param name="protectedFraction">The protected leading fraction (0.1).</param>
    /// <returns>True when the block is never pruned.</returns>
    public static bool IsProtected(int layer, int numLayers, double protectedFraction)
        => layer < (int)(numLayers * protectedFraction) || layer == numLayers - 1;
}
