using System.Text.Json.Nodes;
using Microsoft.ML.LowRank.Training;
using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Adapters.LoraFa;

/// <summary>
/// LoRA-FA (Zhang et al., arXiv 2308.03303; PEFT's <c>create_lorafa_optimizer</c>): a plain LoRA adapter whose down
/// projection A is frozen at its initialisation (Kaiming-uniform, as LoRA) and only B trains, so the trainable count is
/// r·out per adapted matrix (A, r·in, is still saved with the adapter). A Trainer built on the model uses
/// <see cref="optim.LoraFA"/>: AdamW (Hugging Face form) on B, whose gradient is first projected by
/// (A·Aᵀ + 1e-8·I)⁺/s² with each layer's own scaling s (<see cref="ProjectGradient"/>). Every other option is LoRA's.
/// </summary>
/// <remarks>
/// A is frozen by <c>requires_grad = false</c> whenever the adapter is active (also after loading it trainable); the
/// forward is LoRA's, so the activation-memory saving of the paper (keeping x·Aᵀ instead of x for backward) is only
/// what autograd gives a frozen A.
/// </remarks>
public sealed class LoraFaOptions : LoraOptimizerMethodOptions
{
    /// <inheritdoc/>
    public override string MethodName => "lorafa";

    /// <inheritdoc/>
    protected override string OptimizerFactoryName => nameof(optim.LoraFA);

    /// <summary><c>lorafa_gradient_projection</c>: replace B's gradient by (1/s²)·g_B·(A·Aᵀ + 1e-8·I)⁺ before AdamW (PEFT's
    /// LoRA-FA); false trains B on its raw gradient (the 2023 paper's version). Default true.</summary>
    public bool ProjectGradient { get; set; } = true;

    /// <summary><c>lorafa_eps</c>: AdamW's ε (PEFT's LoRA-FA default). Default 1e-6.</summary>
    public double Epsilon { get; set; } = 1e-6;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (!(Epsilon >= 0) || !double.IsFinite(Epsilon)) throw new ArgumentException($"lorafa_eps must be a finite value >= 0, got {Epsilon}");
    }

    /// <summary>LoRA-FA trains every adapter parameter except the A factors (<c>lora_A.*</c>).</summary>
    /// <param name="parameterName">The parameter's name inside its adapter module.</param>
    /// <returns>False for A factors.</returns>
    protected internal override bool IsTrainableParameter(string parameterName)
        => !parameterName.StartsWith("lora_A.", StringComparison.Ordinal);

    /// <inheritdoc/>
    public override optim.Optimizer CreateOptimizer(IReadOnlyList<optim.ParamGroup> groups, IReadOnlyList<optim.LoraPair> pairs, TrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return optim.LoraFA(groups, pairs, options.LearningRate, options.Beta1, options.Beta2, Epsilon, options.WeightDecay, ProjectGradient);
    }

    /// <inheritdoc/>
    public override void WriteJson(JsonObject o)
    {
        base.WriteJson(o);
        o["lorafa_gradient_projection"] = ProjectGradient;
        o["lorafa_eps"] = Epsilon;
    }

    /// <inheritdoc/>
    public override void ReadJson(JsonObject o)
    {
        base.ReadJson(o);
        ProjectGradient = Bool(o, "lorafa_gradient_projection") ?? true;
        Epsilon = NumOr(o, "lorafa_eps", 1e-6);
    }
}
