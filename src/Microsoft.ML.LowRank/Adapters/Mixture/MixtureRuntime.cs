using System.Runtime.CompilerServices;
using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.Mixture;

/// <summary>
/// Per-batch inputs of mixture-of-experts routers that are not the adapted layer's input, set on a
/// <see cref="LowRankModel"/> with <see cref="MixtureOfLoraExperts.UseRouting"/> around a forward pass (like a mixed-adapter
/// batch). Every tensor has the batch as its first dimension and lives on the model's device; the caller owns them.
/// </summary>
public sealed class MixtureRoutingInputs
{
    /// <summary>Task (or instruction-cluster, domain) id per example, int64 [batch], in [0, num_tasks): task routing
    /// (Polytropon, MOELoRA, MoCLE).</summary>
    public Tensor? TaskIds { get; init; }

    /// <summary>Instance embedding per example [batch, instance_dim]: instance routing (Octavius: the mean frozen token
    /// embedding of the instruction, see <see cref="MixtureOfLoraExperts.InstructionEmbedding"/>).</summary>
    public Tensor? InstanceFeatures { get; init; }

    /// <summary>1 for tokens that count, 0 for padding, [batch, seq]: masks padding out of the load-balance statistics
    /// (as MixLoRA does with the attention mask) and out of sequence pooling.</summary>
    public Tensor? TokenMask { get; init; }

    /// <summary>Task type per example (0 or 1), int64 [batch]: LoRAMoE's localized balancing constraint (1 favours the first
    /// half of the experts).</summary>
    public Tensor? TaskTypes { get; init; }

    /// <summary>The expert (domain) each example belongs to, int64 [batch]: MoA's router cross-entropy.</summary>
    public Tensor? RouterLabels { get; init; }
}

/// <summary>One router decision kept for the auxiliary losses and routing statistics (training only).</summary>
internal sealed class RouterRecord : IDisposable
{
    public required string Path { get; init; }
    public required string Group { get; init; }
    public required int Experts { get; init; }
    public required int TopK { get; init; }
    public required bool RowLevel { get; init; }
    public required long Batch { get; init; }
    public required long Seq { get; init; }
    /// <summary>Router logits [M, E] (router type, with gradient).</summary>
    public required Tensor Logits { get; init; }
    /// <summary>softmax(logits/τ) [M, E].</summary>
    public required Tensor Probs { get; init; }
    /// <summary>1 where the gating rule selected an expert, before capacity (top-k, top-p, top-1; all for dense) [M, E].</summary>
    public required Tensor Selected { get; init; }
    /// <summary>1 where the row was dispatched to the expert, after capacity [M, E].</summary>
    public required Tensor Dispatched { get; init; }
    /// <summary>The final gate weights [M, E] (zero for unselected experts).</summary>
    public required Tensor Gates { get; init; }
    /// <summary>1 for rows that count (token routing with a token mask), else null [M].</summary>
    public Tensor? RowMask { get; init; }
    /// <summary>Un-gated outputs of the selected experts [M', out] (only for the contrastive loss).</summary>
    public Tensor? Outputs { get; init; }
    /// <summary>The expert of each output [M'].</summary>
    public Tensor? OutputExperts { get; init; }
    /// <summary>The row of each output [M'].</summary>
    public Tensor? OutputRows { get; init; }

    public void Dispose()
    {
        foreach (var t in new[] { Logits, Probs, Selected, Dispatched, Gates, RowMask, Outputs, OutputExperts, OutputRows })
            t?.Dispose();
    }
}

/// <summary>The routing state shared by the mixture-of-experts layers of one model: the current routing inputs and, while
/// recording, the router decisions of the forward passes since they were last taken.</summary>
internal sealed class MixtureRuntime
{
    private static readonly ConditionalWeakTable<LowRankModel, MixtureRuntime> s_runtimes = new();
    private readonly Dictionary<string, List<RouterRecord>> _records = new(StringComparer.Ordinal);
    private readonly object _lock = new();

    public MixtureRoutingInputs? Inputs { get; set; }

    public int RecordingCount { get; set; }

    public bool Recording => RecordingCount > 0;

    /// <summary>The runtime of a model, attached to every mixture-of-experts layer it holds now.</summary>
    public static MixtureRuntime Of(LowRankModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var rt = s_runtimes.GetValue(model, _ => new MixtureRuntime());
        foreach (var (_, l) in model.AdapterLayers())
            if (l is MixtureOfLoraExpertsLayer m) m.Runtime = rt;
        return rt;
    }

    public void Add(string adapter, RouterRecord record)
    {
        lock (_lock)
        {
            if (!_records.TryGetValue(adapter, out var list)) _records[adapter] = list = new List<RouterRecord>();
            list.Add(record);
        }
    }

    public List<RouterRecord> Take(string adapter)
    {
        lock (_lock)
        {
            if (!_records.Remove(adapter, out var list)) return new List<RouterRecord>();
            return list;
        }
    }

    public void Clear(string adapter)
    {
        foreach (var r in Take(adapter)) r.Dispose();
    }
}
