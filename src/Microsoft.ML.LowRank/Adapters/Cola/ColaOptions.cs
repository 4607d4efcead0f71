using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Adapters.PeriodicLora;

namespace Microsoft.ML.LowRank.Adapters.Cola;

/// <summary>
/// Chain of LoRA, COLA (Xia, Qin and Hazan, 2401.04151; methods.md §4.2): the run's T optimizer steps are split into
/// <see cref="ChainLength"/> links of (nearly) equal length, boundaries after steps ⌊j·T/M⌋ for j = 1..M−1; at each
/// boundary the LoRA is merged into the base ("tie a knot": W ← W + s·B·A), re-initialised (A as at creation, B = 0) and
/// its optimizer state (moments, step counts) reset ("extend the chain"). The same machinery as PeriodicLoRA with λ = 1
/// (<see cref="MergeAndRestartOptions"/>), in links defined by their number rather than their length.
/// </summary>
/// <remarks>
/// Defaults are ours: 3 links, the trainer's learning-rate schedule over the whole run (the total step budget is shared by
/// the links, as in the paper). The paper's optional rank step-down (later links with smaller r) is not implemented. The
/// config is PEFT's LoRA config plus <c>cola_chain_length</c> and <c>stage_lr_schedule</c>. Trainable parameters per
/// adapted matrix: r·(in + out) per link; the deliverable is the base with every link merged plus the last live link.
/// </remarks>
public sealed class ColaOptions : MergeAndRestartOptions
{
    /// <summary><c>cola_chain_length</c>: the number M of LoRA links. Default 3.</summary>
    public int ChainLength { get; set; } = 3;

    /// <inheritdoc/>
    protected override string MethodName => "COLA";

    /// <inheritdoc/>
    public override IReadOnlyList<int> StageBoundaries(int totalSteps)
    {
        var list = new List<int>();
        for (int j = 1; j < ChainLength; j++)
        {
            int b = (int)((long)j * totalSteps / ChainLength);
            if (b >= 1 && b < totalSteps && (list.Count == 0 || b > list[^1])) list.Add(b);
        }
        return list;
    }

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (ChainLength < 1) throw new ArgumentException($"cola_chain_length must be >= 1, got {ChainLength}");
    }

    /// <inheritdoc/>
    public override bool Accepts(JsonObject config) => base.Accepts(config) && config.ContainsKey("cola_chain_length");

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["cola_chain_length"] = ChainLength;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        if (o["cola_chain_length"] is { } c) ChainLength = Int(c, "cola_chain_length");
    }
}
