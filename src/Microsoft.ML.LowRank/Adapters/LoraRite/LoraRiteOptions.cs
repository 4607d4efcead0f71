using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.LoraRite;

/// <summary>
/// LoRA-RITE (Yen et al., arXiv 2410.20625): a plain LoRA adapter trained by <see cref="optim.LoraRite"/>, the
/// transformation-invariant optimizer with r×r matrix preconditioners on unmagnified gradients per (A, B) pair.
/// Forward, initialisation, merge and parameter count are LoRA's (r·(in + out) per matrix). Defaults are the first
/// author's PyTorch port's.
/// </summary>
public sealed class LoraRiteOptions : LoraOptimizerMethodOptions
{
    /// <inheritdoc/>
    public override string MethodName => "lorarite";

    /// <inheritdoc/>
    protected override string OptimizerFactoryName => nameof(optim.LoraRite);

    /// <summary><c>lorarite_eps</c>: added after the square root of the preconditioner's eigenvalues. Default 1e-6.</summary>
    public double Epsilon { get; set; } = 1e-6;

    /// <summary><c>lorarite_clip_unmagnified_grad</c>: global norm clip of the unmagnified gradients (0: off). Default 1.0.</summary>
    public double ClipUnmagnifiedGrad { get; set; } = 1.0;

    /// <summary><c>lorarite_update_skipping</c>: zero a factor's unmagnified gradient with a larger RMS (0: off). Default 1.0.</summary>
    public double UpdateSkipping { get; set; } = 1.0;

    /// <summary><c>lorarite_update_capping</c>: RMS cap of the first moment (0: off). Default 0.</summary>
    public double UpdateCapping { get; set; }

    /// <summary><c>lorarite_apply_escape</c>: add the second-moment mass lost by basis changes to the eigenvalues. Default false.</summary>
    public bool ApplyEscape { get; set; }

    /// <summary><c>lorarite_balance_param</c>: rescale A and B to the geometric mean of their norms after each step. Default false.</summary>
    public bool BalanceParam { get; set; }

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        static void NonNegative(double v, string key)
        {
            if (!(v >= 0) || !double.IsFinite(v)) throw new ArgumentException($"{key} must be a finite value >= 0, got {v}");
        }
        NonNegative(Epsilon, "lorarite_eps");
        NonNegative(ClipUnmagnifiedGrad, "lorarite_clip_unmagnified_grad");
        NonNegative(UpdateSkipping, "lorarite_update_skipping");
        NonNegative(UpdateCapping, "lorarite_update_capping");
    }

    /// <inheritdoc/>
    public override optim.Optimizer CreateOptimizer(IReadOnlyList<optim.ParamGroup> groups, IReadOnlyList<optim.LoraPair> pairs, TrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return optim.LoraRite(groups, pairs, options.LearningRate, options.Beta1, options.Beta2, Epsilon, options.WeightDecay,
            ClipUnmagnifiedGrad, UpdateSkipping, UpdateCapping, ApplyEscape, BalanceParam);
    }

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["lorarite_eps"] = Epsilon;
        o["lorarite_clip_unmagnified_grad"] = ClipUnmagnifiedGrad;
        o["lorarite_update_skipping"] = UpdateSkipping;
        o["lorarite_update_capping"] = UpdateCapping;
        o["lorarite_apply_escape"] = ApplyEscape;
        o["lorarite_balance_param"] = BalanceParam;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        Epsilon = NumOr(o, "lorarite_eps", 1e-6);
        ClipUnmagnifiedGrad = NumOr(o, "lorarite_clip_unmagnified_grad", 1.0);
        UpdateSkipping = NumOr(o, "lorarite_update_skipping", 1.0);
        UpdateCapping = NumOr(o, "lorarite_update_capping", 0);
        ApplyEscape = Bool(o, "lorarite_apply_escape") ?? false;
        BalanceParam = Bool(o, "lorarite_balance_param") ?? false;
    }
}
