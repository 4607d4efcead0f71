using Microsoft.ML.LowRank.Torch;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Models;

/// <summary>
/// A transformer feed-forward block (MLP) described by its projections, so adapters whose experts span the whole block
/// (mixture-of-experts adapters with FFN experts, e.g. MixLoRA) can run it with their own deltas:
/// <c>y = down(act(gate(x)) · up(x))</c> (gated, LLaMA family) or <c>y = down(act(up(x)))</c> (GPT-2: up = c_fc,
/// down = c_proj). The projections are the block's children, looked up by name (an adapter layer may have replaced them).
/// </summary>
public interface IFeedForwardBlock
{
    /// <summary>The gate projection's child name ("gate_proj"), or null for an ungated block.</summary>
    string? GateProjectionName { get; }

    /// <summary>The up projection's child name ("up_proj", GPT-2's "c_fc").</summary>
    string UpProjectionName { get; }

    /// <summary>The down projection's child name ("down_proj", GPT-2's "c_proj").</summary>
    string DownProjectionName { get; }

    /// <summary>A projection of the block by child name.</summary>
    /// <param name="name">The child name.</param>
    /// <returns>The module (a base layer or an adapter layer wrapping it).</returns>
    nn.Module<Tensor, Tensor> Projection(string name);

    /// <summary>The block's intermediate activation: act(gate)·up for a gated block, act(up) otherwise.</summary>
    /// <param name="gate">The gate projection's output (null for an ungated block).</param>
    /// <param name="up">The up projection's output.</param>
    /// <returns>The input of the down projection.</returns>
    Tensor Activate(Tensor? gate, Tensor up);
}

/// <summary>
/// Implemented by a projection layer that can take over its feed-forward block's whole forward pass (an adapter layer
/// holding experts that span the block). A block asks its first projection (the gate projection, or the up projection
/// of an ungated block) before running its own forward.
/// </summary>
public interface IFeedForwardBlockOverride
{
    /// <summary>The block's output computed by the adapter, or null to let the block run normally.</summary>
    /// <param name="block">The block.</param>
    /// <param name="x">The block input.</param>
    /// <returns>The output, or null.</returns>
    Tensor? ForwardBlock(IFeedForwardBlock block, Tensor x);
}
