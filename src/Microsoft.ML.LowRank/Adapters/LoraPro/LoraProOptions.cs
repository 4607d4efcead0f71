using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.LoraPro;

/// <summary>
/// LoRA-Pro (Wang et al., arXiv 2407.18242): a plain LoRA adapter trained by <see cref="optim.LoraPro"/>, which adjusts
/// the factor gradients so that the LoRA step follows Adam on the "equivalent gradient" s·(B·g_A + g_B·A) (full-size
/// Adam moments, 2·out·in floats per adapted matrix) with the Sylvester-optimal correction X, each layer with its own
/// scaling s. Forward, initialisation, merge and parameter count are LoRA's (r·(in + out) per matrix).
/// </summary>
public sealed class LoraProOptions : LoraOptimizerMethodOptions
{
    /// <inheritdoc/>
    public override string MethodName => "lorapro";

    /// <inheritdoc/>
    protected override string OptimizerFactoryName => nameof(optim.LoraPro);

    /// <summary><c>lorapro_sylvester</c>: use the Sylvester solution X in the final adjustment (the authors' code); false
    /// uses X = 0. Default true.</summary>
    public bool UseSylvester { get; set; } = true;

    /// <summary><c>lorapro_eps</c>: ε of the equivalent-gradient Adam (the authors' code). Default 1e-8.</summary>
    public double Epsilon { get; set; } = 1e-8;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (!(Epsilon >= 0) || !double.IsFinite(Epsilon)) throw new ArgumentException($"lorapro_eps must be a finite value >= 0, got {Epsilon}");
    }

    /// <inheritdoc/>
    public override optim.Optimizer CreateOptimizer(IReadOnlyList<optim.ParamGroup> groups, IReadOnlyList<optim.LoraPair> pairs, TrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return optim.LoraPro(groups, pairs, options.LearningRate, options.Beta1, options.Beta2, Epsilon, options.WeightDecay, UseSylvester);
    }

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["lorapro_sylvester"] = UseSylvester;
        o["lorapro_eps"] = Epsilon;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        UseSylvester = Bool(o, "lorapro_sylvester") ?? true;
        Epsilon = NumOr(o, "lorapro_eps", 1e-8);
    }
}
